//! Scopes, roles and presets: what each credential may do.
//!
//! This module is the one place where a role or a preset turns into scopes; the server
//! checks scopes only.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    LogsRead,
    LogsWrite,
    ArchivesRead,
    KeysManage,
    MembersManage,
    InstancesManage,
    RetentionManage,
    OrgsAdmin,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::LogsRead,
        Scope::LogsWrite,
        Scope::ArchivesRead,
        Scope::KeysManage,
        Scope::MembersManage,
        Scope::InstancesManage,
        Scope::RetentionManage,
        Scope::OrgsAdmin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::LogsRead => "logs:read",
            Scope::LogsWrite => "logs:write",
            Scope::ArchivesRead => "archives:read",
            Scope::KeysManage => "keys:manage",
            Scope::MembersManage => "members:manage",
            Scope::InstancesManage => "instances:manage",
            Scope::RetentionManage => "retention:manage",
            Scope::OrgsAdmin => "orgs:admin",
        }
    }

    /// Parses a space- or comma-separated list, rejecting unknown names.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, UnknownScope> {
        let mut out: Vec<Scope> = s
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope {0:?} (known: logs:read, logs:write, archives:read, keys:manage, members:manage, instances:manage, retention:manage, orgs:admin)"
)]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// A member's role in an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// The role → scope table. Only owners read the audit log (seed 000).
    pub fn scopes(self) -> &'static [Scope] {
        use Scope::*;
        match self {
            Role::Owner => &[
                LogsRead,
                LogsWrite,
                ArchivesRead,
                KeysManage,
                MembersManage,
                InstancesManage,
                RetentionManage,
            ],
            Role::Admin => &[LogsWrite, KeysManage, MembersManage, InstancesManage],
            Role::Member => &[LogsWrite],
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(format!("unknown role {s:?} (known: owner, admin, member)")),
        }
    }
}

/// Token presets (seed 001).
pub fn preset(name: &str) -> Option<&'static [Scope]> {
    use Scope::*;
    match name {
        "support-readonly" => Some(&[LogsRead, ArchivesRead]),
        "admin-full" => Some(&[
            LogsRead,
            LogsWrite,
            ArchivesRead,
            KeysManage,
            MembersManage,
            InstancesManage,
            RetentionManage,
        ]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), s);
        }
        assert_eq!(
            Scope::parse_list("logs:write, logs:read logs:read").unwrap(),
            vec![Scope::LogsRead, Scope::LogsWrite]
        );
        assert!(Scope::parse_list("logs:read logs:delete").is_err());
    }

    #[test]
    fn only_owners_read_logs() {
        assert!(Role::Owner.scopes().contains(&Scope::LogsRead));
        assert!(!Role::Admin.scopes().contains(&Scope::LogsRead));
        assert!(!Role::Member.scopes().contains(&Scope::LogsRead));
        assert!(
            preset("support-readonly")
                .unwrap()
                .contains(&Scope::LogsRead)
        );
        assert!(
            !preset("support-readonly")
                .unwrap()
                .contains(&Scope::LogsWrite)
        );
    }
}

/// Scopes and roles are strings on the wire: their schemas list the names this module
/// gives them, so the API description cannot name one that does not exist.
#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    use super::{Role, Scope};

    fn names(description: &str, names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .enum_values(Some(names))
            .into()
    }

    impl utoipa::PartialSchema for Scope {
        fn schema() -> RefOr<Schema> {
            names("A scope.", Scope::ALL.iter().map(|s| s.as_str()))
        }
    }
    impl utoipa::ToSchema for Scope {}

    impl utoipa::PartialSchema for Role {
        fn schema() -> RefOr<Schema> {
            names(
                "A member's role in an org.",
                [Role::Owner, Role::Admin, Role::Member].map(Role::as_str),
            )
        }
    }
    impl utoipa::ToSchema for Role {}
}
