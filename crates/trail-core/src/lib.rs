//! Trail's pure core.
//!
//! Everything here is a function of its inputs: the event model and its validation, the
//! versioned canonical encoding whose SHA-256 is an event's Merkle leaf, the query language
//! behind `q=` and the filter parameters, the paging cursor, and the credential scopes.
//!
//! Architecture invariant: this crate does no I/O. It knows nothing of HTTP, SQL, tokio or
//! the clock: callers pass "now" in.

pub mod archive;
pub mod batch;
pub mod canonical;
pub mod checkpoint;
pub mod collapse;
pub mod event;
pub mod export;
pub mod histogram;
pub mod merkle;
pub mod perf;
pub mod query;
pub mod scope;
pub mod time;
pub mod verify;

pub use event::{Actor, ActorType, Event, EventBody, Object, RequestInfo, ValidationError};
pub use query::{Cursor, ExportCursor, Filter, QueryError};
pub use scope::{Role, Scope};
pub use time::Timestamp;
