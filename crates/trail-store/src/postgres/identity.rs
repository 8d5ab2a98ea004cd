//! Orgs, users, members, instances, credentials, sessions, settings and retention.
//!
//! Reads take any client (a pooled connection or a transaction); writes take the caller's
//! transaction, which then appends the change's audit events and commits: nothing here
//! commits. A failed statement aborts a PostgreSQL transaction, so where the SQLite backend
//! goes on after a refusal, this module checks first (or uses `ON CONFLICT`) instead.
//! Several servers may share the database: what SQLite's single writer serializes is
//! serialized here by row locks (`FOR UPDATE`), or by an advisory lock for the bootstrap.

use postgres::types::FromSql;
use postgres::{GenericClient, Row, Transaction};
use trail_core::Timestamp;
use trail_core::scope::{Role, Scope};

use super::{constraint, unavailable};
use crate::{
    Acceptance, Bootstrap, Instance, Member, Org, Reach, Result, Session, StoreError, Token,
    TokenKind, User,
};

/// The transaction-level advisory lock that bootstraps take, so that of two servers seeding
/// an empty database at once, one seeds it and the other finds it seeded (ASCII "trailboo").
const BOOTSTRAP_LOCK: i64 = 0x7472_6169_6c62_6f6f;

/// Column `i` of `row`; a value that does not decode is an error, not a panic.
fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(unavailable)
}

/// `Ok` if `org` exists; `UnknownOrg` if not.
fn known_org(c: &mut impl GenericClient, org: &str) -> Result<()> {
    c.query_opt("SELECT 1 FROM orgs WHERE id = $1", &[&org])
        .map_err(unavailable)?
        .map(|_| ())
        .ok_or_else(|| StoreError::UnknownOrg(org.to_owned()))
}

/// Seeds an empty database: the org, its owner, the owner's token, and the org as the
/// platform org. Writes nothing and answers `false` if any org exists, also when another
/// server seeds it at the same time.
pub(super) fn bootstrap(tx: &mut Transaction<'_>, b: &Bootstrap) -> Result<bool> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK])
        .map_err(unavailable)?;
    let seeded: bool = get(
        &tx.query_one("SELECT EXISTS (SELECT 1 FROM orgs)", &[])
            .map_err(unavailable)?,
        0,
    )?;
    if seeded {
        return Ok(false);
    }
    insert_org(tx, &b.org)?;
    insert_user(tx, &b.owner)?;
    insert_member(tx, &b.org.id, &b.owner.id, Role::Owner)?;
    insert_token(tx, &b.token)?;
    tx.execute(
        "INSERT INTO settings (key, value) VALUES ('platform_org', $1)",
        &[&b.org.id],
    )
    .map_err(unavailable)?;
    Ok(true)
}

/// A setting of the store, if set.
pub(super) fn setting(c: &mut impl GenericClient, key: &str) -> Result<Option<String>> {
    c.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
        .map_err(unavailable)?
        .map(|r| get(&r, 0))
        .transpose()
}

/// Sets a setting, whether or not it was set.
pub(super) fn set_setting(tx: &mut Transaction<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// Sets a setting if it is not set yet (by this or another server); answers the value in
/// force.
pub(super) fn init_setting(tx: &mut Transaction<'_>, key: &str, value: &str) -> Result<String> {
    tx.execute(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        &[&key, &value],
    )
    .map_err(unavailable)?;
    get(
        &tx.query_one("SELECT value FROM settings WHERE key = $1", &[&key])
            .map_err(unavailable)?,
        0,
    )
}

/// Creates an org (and its log) with, if given, its first owner (the stored user with the
/// owner's email, or the owner inserted) and an invitation. `Conflict` if the org exists.
pub(super) fn create_org(
    tx: &mut Transaction<'_>,
    org: &Org,
    owner: Option<&User>,
    invitation: Option<&Token>,
) -> Result<()> {
    insert_org(tx, org)?;
    if let Some(owner) = owner {
        let user = user_or_insert(tx, owner)?;
        insert_member(tx, &org.id, &user.id, Role::Owner)?;
    }
    if let Some(invitation) = invitation {
        insert_invitation(tx, invitation)?;
    }
    Ok(())
}

/// Inserts an org and its log's row (what appends to it lock); `Conflict` if it exists.
fn insert_org(tx: &mut Transaction<'_>, org: &Org) -> Result<()> {
    tx.execute(
        "INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)",
        &[&org.id, &org.name, &org.created_at.micros()],
    )
    .map_err(|e| constraint(e, || format!("org {:?}", org.id)))?;
    tx.execute("INSERT INTO logs (org) VALUES ($1)", &[&org.id])
        .map_err(unavailable)?;
    Ok(())
}

const ORG_COLUMNS: &str = "id, name, created_at";

fn org_from_row(r: &Row) -> Result<Org> {
    Ok(Org {
        id: get(r, 0)?,
        name: get(r, 1)?,
        created_at: Timestamp(get(r, 2)?),
    })
}

pub(super) fn org(c: &mut impl GenericClient, id: &str) -> Result<Option<Org>> {
    c.query_opt(
        &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = $1"),
        &[&id],
    )
    .map_err(unavailable)?
    .map(|r| org_from_row(&r))
    .transpose()
}

/// Every org, by slug (in byte order, as the SQLite backend lists them).
pub(super) fn orgs(c: &mut impl GenericClient) -> Result<Vec<Org>> {
    c.query(
        &format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY id COLLATE \"C\""),
        &[],
    )
    .map_err(unavailable)?
    .iter()
    .map(org_from_row)
    .collect()
}

const USER_COLUMNS: &str = "id, email, password_hash, platform_admin, created_at";

fn user_from_row(r: &Row) -> Result<User> {
    Ok(User {
        id: get(r, 0)?,
        email: get(r, 1)?,
        password_hash: get(r, 2)?,
        platform_admin: get(r, 3)?,
        created_at: Timestamp(get(r, 4)?),
    })
}

pub(super) fn user(c: &mut impl GenericClient, id: &str) -> Result<Option<User>> {
    c.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
        &[&id],
    )
    .map_err(unavailable)?
    .map(|r| user_from_row(&r))
    .transpose()
}

/// The user with this email, whatever its case (an email names one account: the unique
/// index is on `ascii_lower(email)`: ASCII letters only, as SQLite's NOCASE and the
/// server's `eq_ignore_ascii_case`, whatever the database's locale).
pub(super) fn user_by_email(c: &mut impl GenericClient, email: &str) -> Result<Option<User>> {
    c.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE ascii_lower(email) = ascii_lower($1)"),
        &[&email],
    )
    .map_err(unavailable)?
    .map(|r| user_from_row(&r))
    .transpose()
}

/// Inserts a user; `Conflict` if its id or its email (whatever the case) is taken.
fn insert_user(tx: &mut Transaction<'_>, user: &User) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
        &[
            &user.id,
            &user.email,
            &user.password_hash,
            &user.platform_admin,
            &user.created_at.micros(),
        ],
    )
    .map_err(|e| constraint(e, || format!("user {:?}", user.email)))?;
    Ok(())
}

/// The stored user with `user`'s email (whatever the case), or `user` inserted; also when
/// another server inserts that email at the same time.
fn user_or_insert(tx: &mut Transaction<'_>, user: &User) -> Result<User> {
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT ((ascii_lower(email))) DO NOTHING"
            ),
            &[
                &user.id,
                &user.email,
                &user.password_hash,
                &user.platform_admin,
                &user.created_at.micros(),
            ],
        )
        .map_err(|e| constraint(e, || format!("user {:?}", user.email)))?;
    if inserted == 1 {
        return Ok(user.clone());
    }
    user_by_email(tx, &user.email)?
        .ok_or_else(|| StoreError::Conflict(format!("user {:?}", user.email)))
}

/// Sets a user's password, and revokes at `at` the open tokens made by signing in with the
/// old one. `NotFound` if there is no such user.
pub(super) fn set_password(
    tx: &mut Transaction<'_>,
    user_id: &str,
    hash: &str,
    at: Timestamp,
) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            &[&user_id, &hash],
        )
        .map_err(unavailable)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("user {user_id:?}")));
    }
    tx.execute(
        "UPDATE tokens SET revoked_at = $2 \
         WHERE user_id = $1 AND from_password AND revoked_at IS NULL",
        &[&user_id, &at.micros()],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// Adds the stored user with `user`'s email (or `user`, inserted) to the org as `role`.
/// `UnknownOrg` if there is no such org; `Conflict` if the user is a member already.
pub(super) fn add_member(
    tx: &mut Transaction<'_>,
    org: &str,
    user: &User,
    role: Role,
) -> Result<Member> {
    known_org(tx, org)?;
    let user = user_or_insert(tx, user)?;
    insert_member(tx, org, &user.id, role)?;
    Ok(Member {
        user_id: user.id,
        email: user.email,
        role,
    })
}

/// Makes a user a member of an org (which the caller knows exists); `Conflict` if they are
/// one already, `NotFound` if there is no such user.
fn insert_member(tx: &mut Transaction<'_>, org: &str, user_id: &str, role: Role) -> Result<()> {
    tx.execute(
        "INSERT INTO members (org, user_id, role) VALUES ($1, $2, $3)",
        &[&org, &user_id, &role.as_str()],
    )
    .map_err(|e| constraint(e, || format!("member {user_id:?} of org {org:?}")))?;
    Ok(())
}

/// Stores an invitation (made out to an email, with a role) in place of the email's open
/// invitations to the org; refuses one for a member (`Conflict`). It changes no account:
/// only its acceptance does.
pub(super) fn insert_invitation(tx: &mut Transaction<'_>, invitation: &Token) -> Result<()> {
    debug_assert!(invitation.kind == TokenKind::Invitation && invitation.role.is_some());
    known_org(tx, &invitation.org)?;
    let member: bool = get(
        &tx.query_one(
            "SELECT EXISTS (SELECT 1 FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.org = $1 AND ascii_lower(u.email) = ascii_lower($2))",
            &[&invitation.org, &invitation.owner],
        )
        .map_err(unavailable)?,
        0,
    )?;
    if member {
        return Err(StoreError::Conflict(format!(
            "member {:?} of org {:?}",
            invitation.owner, invitation.org
        )));
    }
    tx.execute(
        "UPDATE tokens SET revoked_at = $3 WHERE kind = 'invitation' AND org = $1 \
         AND ascii_lower(owner) = ascii_lower($2) AND revoked_at IS NULL",
        &[
            &invitation.org,
            &invitation.owner,
            &invitation.created_at.micros(),
        ],
    )
    .map_err(unavailable)?;
    insert_token(tx, invitation)
}

/// Locks the org's memberships until the transaction ends: a change that could leave the org
/// without an owner then sees every other such change committed (two servers demoting the
/// last two owners at once cannot both succeed).
fn lock_members(tx: &mut Transaction<'_>, org: &str) -> Result<()> {
    tx.query(
        "SELECT user_id FROM members WHERE org = $1 ORDER BY user_id FOR UPDATE",
        &[&org],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// Refuses a change of `user_id`'s membership (to `new_role`, or removal) that would leave
/// the org without an owner. The org's members must be locked ([`lock_members`]).
fn keeps_an_owner(
    tx: &mut Transaction<'_>,
    org: &str,
    user_id: &str,
    new_role: Option<Role>,
) -> Result<()> {
    if new_role == Some(Role::Owner) {
        return Ok(());
    }
    let row = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE user_id <> $2), count(*) FILTER (WHERE user_id = $2) \
             FROM members WHERE org = $1 AND role = 'owner'",
            &[&org, &user_id],
        )
        .map_err(unavailable)?;
    let (other_owners, is_owner): (i64, i64) = (get(&row, 0)?, get(&row, 1)?);
    if is_owner > 0 && other_owners == 0 {
        return Err(StoreError::Conflict(format!(
            "org {org:?} would be left without an owner; make another member owner first"
        )));
    }
    Ok(())
}

/// Changes a member's role; refuses to leave the org without an owner. `UnknownOrg`, or
/// `NotFound` if the user is not a member.
pub(super) fn set_role(
    tx: &mut Transaction<'_>,
    org: &str,
    user_id: &str,
    role: Role,
) -> Result<()> {
    known_org(tx, org)?;
    lock_members(tx, org)?;
    keeps_an_owner(tx, org, user_id, Some(role))?;
    let n = tx
        .execute(
            "UPDATE members SET role = $3 WHERE org = $1 AND user_id = $2",
            &[&org, &user_id, &role.as_str()],
        )
        .map_err(unavailable)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "member {user_id:?} of org {org:?}"
        )));
    }
    Ok(())
}

/// Removes a member, withdrawing at `at` their open invitation to the org; refuses to leave
/// the org without an owner. `UnknownOrg`, or `NotFound` if the user is not a member.
pub(super) fn remove_member(
    tx: &mut Transaction<'_>,
    org: &str,
    user_id: &str,
    at: Timestamp,
) -> Result<()> {
    known_org(tx, org)?;
    lock_members(tx, org)?;
    keeps_an_owner(tx, org, user_id, None)?;
    let n = tx
        .execute(
            "DELETE FROM members WHERE org = $1 AND user_id = $2",
            &[&org, &user_id],
        )
        .map_err(unavailable)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "member {user_id:?} of org {org:?}"
        )));
    }
    // An invitation to an org one is no longer in is withdrawn with the membership.
    tx.execute(
        "UPDATE tokens SET revoked_at = $3 WHERE kind = 'invitation' AND org = $1 \
         AND user_id = $2 AND revoked_at IS NULL",
        &[&org, &user_id, &at.micros()],
    )
    .map_err(unavailable)?;
    Ok(())
}

fn role(s: &str) -> Result<Role> {
    s.parse()
        .map_err(|e: String| StoreError::Corrupt(format!("member role: {e}")))
}

/// An org's members, by email (in byte order, as the SQLite backend lists them).
pub(super) fn members(c: &mut impl GenericClient, org: &str) -> Result<Vec<Member>> {
    known_org(c, org)?;
    c.query(
        "SELECT u.id, u.email, m.role FROM members m JOIN users u ON u.id = m.user_id \
         WHERE m.org = $1 ORDER BY u.email COLLATE \"C\"",
        &[&org],
    )
    .map_err(unavailable)?
    .iter()
    .map(|r| {
        Ok(Member {
            user_id: get(r, 0)?,
            email: get(r, 1)?,
            role: role(get(r, 2)?)?,
        })
    })
    .collect()
}

/// The orgs a user belongs to and their role in each, in the order they joined them.
pub(super) fn memberships(
    c: &mut impl GenericClient,
    user_id: &str,
) -> Result<Vec<(String, Role)>> {
    c.query(
        "SELECT org, role FROM members WHERE user_id = $1 ORDER BY n",
        &[&user_id],
    )
    .map_err(unavailable)?
    .iter()
    .map(|r| Ok((get(r, 0)?, role(get(r, 1)?)?)))
    .collect()
}

/// Creates an instance; `UnknownOrg`, or `Conflict` if the org has one with its id.
pub(super) fn create_instance(tx: &mut Transaction<'_>, i: &Instance) -> Result<()> {
    known_org(tx, &i.org)?;
    tx.execute(
        "INSERT INTO instances (org, id, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[&i.org, &i.id, &i.name, &i.kind, &i.created_at.micros()],
    )
    .map_err(|e| constraint(e, || format!("instance {:?} of org {:?}", i.id, i.org)))?;
    Ok(())
}

/// An org's instances, by id (in byte order, as the SQLite backend lists them).
pub(super) fn instances(c: &mut impl GenericClient, org: &str) -> Result<Vec<Instance>> {
    known_org(c, org)?;
    c.query(
        "SELECT id, name, kind, created_at FROM instances WHERE org = $1 \
         ORDER BY id COLLATE \"C\"",
        &[&org],
    )
    .map_err(unavailable)?
    .iter()
    .map(|r| {
        Ok(Instance {
            org: org.to_owned(),
            id: get(r, 0)?,
            name: get(r, 1)?,
            kind: get(r, 2)?,
            created_at: Timestamp(get(r, 3)?),
        })
    })
    .collect()
}

const TOKEN_COLUMNS: &str = "id, kind, org, owner, user_id, name, description, scopes, \
     instance, secret_hash, created_by, created_at, expires_at, revoked_at, reach, \
     from_password, role, made_with";

/// Newest first; tokens made at the same time by id (in byte order, as the SQLite backend
/// lists them).
const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id COLLATE \"C\"";

/// Stores a credential (or an invitation). `UnknownOrg`; `Conflict` if its id is taken;
/// `NotFound` if its user does not exist.
pub(super) fn insert_token(tx: &mut Transaction<'_>, t: &Token) -> Result<()> {
    known_org(tx, &t.org)?;
    let reach = match &t.reach {
        Reach::Own => None,
        Reach::All => Some("*".to_owned()),
        Reach::Orgs(orgs) => Some(orgs.join(" ")),
    };
    tx.execute(
        &format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ),
        &[
            &t.id,
            &t.kind.as_str(),
            &t.org,
            &t.owner,
            &t.user_id,
            &t.name,
            &t.description,
            &Scope::join(&t.scopes),
            &t.instance,
            &t.secret_hash.as_slice(),
            &t.created_by,
            &t.created_at.micros(),
            &t.expires_at.map(Timestamp::micros),
            &t.revoked_at.map(Timestamp::micros),
            &reach,
            &t.from_password,
            &t.role.map(Role::as_str),
            &t.made_with,
        ],
    )
    .map_err(|e| constraint(e, || format!("token {:?}", t.id)))?;
    Ok(())
}

/// A token from a row of [`TOKEN_COLUMNS`]; a row that does not read back as one is
/// `Corrupt`, naming the credential.
fn token_from_row(r: &Row) -> Result<Token> {
    let id: String = get(r, 0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("credential {id}: {what}"));
    let kind = TokenKind::parse(get(r, 1)?).ok_or_else(|| corrupt("bad kind"))?;
    let scopes = Scope::parse_list(get(r, 7)?).map_err(|e| corrupt(&e.to_string()))?;
    let secret_hash = get::<Vec<u8>>(r, 9)?
        .try_into()
        .map_err(|_| corrupt("bad secret hash"))?;
    let role = get::<Option<&str>>(r, 16)?
        .map(str::parse::<Role>)
        .transpose()
        .map_err(|e| corrupt(&e))?;
    let reach = match get::<Option<&str>>(r, 14)? {
        None => Reach::Own,
        Some("*") => Reach::All,
        Some(list) => Reach::Orgs(list.split(' ').map(str::to_owned).collect()),
    };
    Ok(Token {
        kind,
        org: get(r, 2)?,
        owner: get(r, 3)?,
        user_id: get(r, 4)?,
        name: get(r, 5)?,
        description: get(r, 6)?,
        scopes,
        instance: get(r, 8)?,
        secret_hash,
        created_by: get(r, 10)?,
        created_at: Timestamp(get(r, 11)?),
        expires_at: get::<Option<i64>>(r, 12)?.map(Timestamp),
        revoked_at: get::<Option<i64>>(r, 13)?.map(Timestamp),
        reach,
        from_password: get(r, 15)?,
        role,
        made_with: get(r, 17)?,
        id,
    })
}

pub(super) fn token(c: &mut impl GenericClient, id: &str) -> Result<Option<Token>> {
    c.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
        &[&id],
    )
    .map_err(unavailable)?
    .map(|r| token_from_row(&r))
    .transpose()
}

/// A user's personal access tokens, in every org, newest first.
pub(super) fn personal_tokens(c: &mut impl GenericClient, user_id: &str) -> Result<Vec<Token>> {
    c.query(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND kind = 'pat' {NEWEST_FIRST}"
        ),
        &[&user_id],
    )
    .map_err(unavailable)?
    .iter()
    .map(token_from_row)
    .collect()
}

/// An org's credentials of one kind, newest first; of one user if `user_id` is given.
/// `UnknownOrg` if there is no such org.
pub(super) fn tokens(
    c: &mut impl GenericClient,
    org: &str,
    kind: TokenKind,
    user_id: Option<&str>,
) -> Result<Vec<Token>> {
    known_org(c, org)?;
    c.query(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens \
             WHERE org = $1 AND kind = $2 AND ($3::TEXT IS NULL OR user_id = $3) {NEWEST_FIRST}"
        ),
        &[&org, &kind.as_str(), &user_id],
    )
    .map_err(unavailable)?
    .iter()
    .map(token_from_row)
    .collect()
}

/// Revokes a credential at `at`; one revoked already keeps its time. `NotFound` if there is
/// no such credential.
pub(super) fn revoke_token(tx: &mut Transaction<'_>, id: &str, at: Timestamp) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
            &[&id, &at.micros()],
        )
        .map_err(unavailable)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("credential {id:?}")));
    }
    Ok(())
}

/// Uses open invitation `id` at `at`, once, even with several servers: its row stays locked
/// until the transaction ends, and another acceptance then finds it used. See
/// [`crate::Store::accept_invitation`] for what it answers.
pub(super) fn accept_invitation(
    tx: &mut Transaction<'_>,
    id: &str,
    acceptance: &Acceptance,
    at: Timestamp,
) -> Result<Member> {
    let open = tx
        .query_opt(
            "SELECT org, owner, user_id, role FROM tokens WHERE id = $1 AND kind = 'invitation' \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) FOR UPDATE",
            &[&id, &at.micros()],
        )
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::NotFound(format!("invitation {id:?}")))?;
    let org: String = get(&open, 0)?;
    let email: String = get(&open, 1)?;
    let invitee: Option<String> = get(&open, 2)?;
    let role = get::<Option<&str>>(&open, 3)?
        .map(str::parse::<Role>)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("invitation {id}: {e}")))?;
    let no_account = || StoreError::Conflict(format!("an account for invitation {id:?}"));
    let member = match (acceptance, invitee, role) {
        // From before invitations carried a role: it completes the account it made.
        (Acceptance::FirstPassword(hash), Some(user_id), None) => {
            let n = tx
                .execute(
                    "UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash IS NULL",
                    &[&user_id, hash],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "a password for the user of invitation {id:?}"
                )));
            }
            let row = tx
                .query_opt(
                    "SELECT u.id, u.email, m.role FROM members m JOIN users u ON u.id = m.user_id \
                     WHERE m.org = $1 AND m.user_id = $2",
                    &[&org, &user_id],
                )
                .map_err(unavailable)?
                .ok_or_else(|| StoreError::NotFound(format!("invitation {id:?}")))?;
            Member {
                user_id: get(&row, 0)?,
                email: get(&row, 1)?,
                role: self::role(get(&row, 2)?)?,
            }
        }
        (Acceptance::NewAccount(user), None, Some(role))
            if user.email.eq_ignore_ascii_case(&email) =>
        {
            // Fails (Conflict) if the email has an account by now.
            insert_user(tx, user)?;
            insert_member(tx, &org, &user.id, role)?;
            Member {
                user_id: user.id.clone(),
                email: user.email.clone(),
                role,
            }
        }
        (Acceptance::Account { user_id }, None, Some(role)) => {
            let user = self::user(tx, user_id)?
                .filter(|u| u.email.eq_ignore_ascii_case(&email))
                .ok_or_else(no_account)?;
            insert_member(tx, &org, &user.id, role)?;
            Member {
                user_id: user.id,
                email: user.email,
                role,
            }
        }
        _ => return Err(no_account()),
    };
    tx.execute(
        "UPDATE tokens SET revoked_at = $2 WHERE id = $1",
        &[&id, &at.micros()],
    )
    .map_err(unavailable)?;
    Ok(member)
}

/// Starts a session; `Conflict` if its id is taken, `NotFound` if its user does not exist.
pub(super) fn create_session(tx: &mut Transaction<'_>, s: &Session) -> Result<()> {
    tx.execute(
        "INSERT INTO sessions (id, user_id, secret_hash, created_at, last_seen_at, expires_at, \
         ended_at, token_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &s.id,
            &s.user_id,
            &s.secret_hash.as_slice(),
            &s.created_at.micros(),
            &s.last_seen_at.micros(),
            &s.expires_at.micros(),
            &s.ended_at.map(Timestamp::micros),
            &s.token_id,
        ],
    )
    .map_err(|e| constraint(e, || format!("session {:?}", s.id)))?;
    Ok(())
}

pub(super) fn session(c: &mut impl GenericClient, id: &str) -> Result<Option<Session>> {
    let Some(r) = c
        .query_opt(
            "SELECT user_id, secret_hash, created_at, last_seen_at, expires_at, ended_at, \
             token_id FROM sessions WHERE id = $1",
            &[&id],
        )
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    Ok(Some(Session {
        id: id.to_owned(),
        user_id: get(&r, 0)?,
        secret_hash: get::<Vec<u8>>(&r, 1)?
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("session {id}: bad secret hash")))?,
        created_at: Timestamp(get(&r, 2)?),
        last_seen_at: Timestamp(get(&r, 3)?),
        expires_at: Timestamp(get(&r, 4)?),
        ended_at: get::<Option<i64>>(&r, 5)?.map(Timestamp),
        token_id: get(&r, 6)?,
    }))
}

/// Marks a session seen at `at`; its last-seen time never goes back.
pub(super) fn touch_session(tx: &mut Transaction<'_>, id: &str, at: Timestamp) -> Result<()> {
    tx.execute(
        "UPDATE sessions SET last_seen_at = greatest(last_seen_at, $2) WHERE id = $1",
        &[&id, &at.micros()],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// Ends a session at `at`; one ended already keeps its end.
pub(super) fn end_session(tx: &mut Transaction<'_>, id: &str, at: Timestamp) -> Result<()> {
    tx.execute(
        "UPDATE sessions SET ended_at = coalesce(ended_at, $2) WHERE id = $1",
        &[&id, &at.micros()],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// Ends every session of a user but `except` at `at`; those ended already keep their end.
pub(super) fn end_user_sessions(
    tx: &mut Transaction<'_>,
    user_id: &str,
    except: Option<&str>,
    at: Timestamp,
) -> Result<()> {
    tx.execute(
        "UPDATE sessions SET ended_at = coalesce(ended_at, $3) \
         WHERE user_id = $1 AND id IS DISTINCT FROM $2",
        &[&user_id, &except, &at.micros()],
    )
    .map_err(unavailable)?;
    Ok(())
}

fn retention_from_row(org: &str, r: &Row) -> Result<crate::Retention> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("retention of org {org:?}: {what}"));
    Ok(crate::Retention {
        days: get::<Option<i32>>(r, 0)?
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("negative days"))?,
        legal_hold: get(r, 1)?,
        pruned_below: u64::try_from(get::<i64>(r, 2)?).map_err(|_| corrupt("negative seq"))?,
    })
}

/// The org's retention and how far its log was pruned; `UnknownOrg` if there is no such org.
pub(super) fn retention(c: &mut impl GenericClient, org: &str) -> Result<crate::Retention> {
    let row = c
        .query_opt(
            "SELECT retention_days, legal_hold, pruned_below FROM logs WHERE org = $1",
            &[&org],
        )
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::UnknownOrg(org.to_owned()))?;
    retention_from_row(org, &row)
}

/// Sets the org's retention days (`Some(None)`: back to the default) and legal hold, each
/// only if given; answers the retention now. `UnknownOrg` if there is no such org.
pub(super) fn set_retention(
    tx: &mut Transaction<'_>,
    org: &str,
    days: Option<Option<u32>>,
    legal_hold: Option<bool>,
) -> Result<crate::Retention> {
    let new_days = match days.flatten() {
        Some(d) => Some(
            i32::try_from(d)
                .map_err(|_| StoreError::Refused(format!("a retention of {d} days is too long")))?,
        ),
        None => None,
    };
    let row = tx
        .query_opt(
            "UPDATE logs SET \
             retention_days = CASE WHEN $2::BOOLEAN THEN $3::INTEGER ELSE retention_days END, \
             legal_hold = coalesce($4::BOOLEAN, legal_hold) \
             WHERE org = $1 RETURNING retention_days, legal_hold, pruned_below",
            &[&org, &days.is_some(), &new_days, &legal_hold],
        )
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::UnknownOrg(org.to_owned()))?;
    retention_from_row(org, &row)
}

/// Takes in what another store holds besides its logs, into a database without orgs (see
/// [`crate::Store::restore_identity`]).
pub(super) fn restore(tx: &mut Transaction<'_>, id: &crate::Identity) -> Result<()> {
    let any: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM orgs)", &[])
        .map_err(unavailable)?
        .get(0);
    if any {
        return Err(StoreError::Refused(
            "the database already holds orgs: a copy goes into an empty one".into(),
        ));
    }
    for (key, value) in &id.settings {
        set_setting(tx, key, value)?;
    }
    for (org, retention) in &id.orgs {
        insert_org(tx, org)?;
        tx.execute(
            "UPDATE logs SET retention_days = $2, legal_hold = $3 WHERE org = $1",
            &[
                &org.id,
                &retention.days.map(|d| d as i32),
                &retention.legal_hold,
            ],
        )
        .map_err(unavailable)?;
        if retention.pruned_below > 0 {
            // The copy of a pruned log starts where it was pruned to.
            tx.execute(
                "SELECT trail_import_start($1, $2)",
                &[&org.id, &(retention.pruned_below as i64)],
            )
            .map_err(unavailable)?;
        }
    }
    for user in &id.users {
        insert_user(tx, user)?;
    }
    for (org, user, role) in &id.members {
        insert_member(tx, org, user, *role)?;
    }
    for instance in &id.instances {
        create_instance(tx, instance)?;
    }
    for token in &id.tokens {
        insert_token(tx, token)?;
    }
    Ok(())
}

/// Everything but the logs and the sessions, in the order it was made (see
/// [`crate::Store::identity`]); texts in byte order where times tie, as SQLite lists them.
pub(super) fn snapshot(c: &mut impl GenericClient) -> Result<crate::Identity> {
    let settings = c
        .query(
            "SELECT key, value FROM settings WHERE key <> 'schema_version' \
             ORDER BY key COLLATE \"C\"",
            &[],
        )
        .map_err(unavailable)?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
        .collect::<Result<_>>()?;
    let orgs = c
        .query(
            &format!(
                "SELECT l.retention_days, l.legal_hold, l.pruned_below, {} FROM orgs o \
                 JOIN logs l ON l.org = o.id ORDER BY o.n",
                ORG_COLUMNS
                    .split(", ")
                    .map(|col| format!("o.{col}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[],
        )
        .map_err(unavailable)?
        .iter()
        .map(|r| {
            let org = Org {
                id: get(r, 3)?,
                name: get(r, 4)?,
                created_at: Timestamp(get(r, 5)?),
            };
            let retention = retention_from_row(&org.id, r)?;
            Ok((org, retention))
        })
        .collect::<Result<_>>()?;
    let users = c
        .query(
            &format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id COLLATE \"C\""),
            &[],
        )
        .map_err(unavailable)?
        .iter()
        .map(user_from_row)
        .collect::<Result<_>>()?;
    let members = c
        .query("SELECT org, user_id, role FROM members ORDER BY n", &[])
        .map_err(unavailable)?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?, role(&get::<String>(r, 2)?)?)))
        .collect::<Result<_>>()?;
    let instances = c
        .query(
            "SELECT i.org, i.id, i.name, i.kind, i.created_at FROM instances i \
             JOIN orgs o ON o.id = i.org ORDER BY i.created_at, o.n, i.id COLLATE \"C\"",
            &[],
        )
        .map_err(unavailable)?
        .iter()
        .map(|r| {
            Ok(Instance {
                org: get(r, 0)?,
                id: get(r, 1)?,
                name: get(r, 2)?,
                kind: get(r, 3)?,
                created_at: Timestamp(get(r, 4)?),
            })
        })
        .collect::<Result<_>>()?;
    let tokens = c
        .query(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id COLLATE \"C\""),
            &[],
        )
        .map_err(unavailable)?
        .iter()
        .map(token_from_row)
        .collect::<Result<_>>()?;
    Ok(crate::Identity {
        settings,
        orgs,
        users,
        members,
        instances,
        tokens,
    })
}

/// The stored tiles of the org's first `below` seqs (see [`crate::Store::tiles_below`]).
pub(super) fn tiles_below(
    c: &mut impl GenericClient,
    org: &str,
    below: u64,
) -> Result<Vec<(u32, u64, [u8; 32])>> {
    known_org(c, org)?;
    c.query(
        "SELECT level, idx, hash FROM tiles WHERE org = $1 AND (idx + 1) << level <= $2 \
         ORDER BY level, idx",
        &[&org, &(below.min(i64::MAX as u64) as i64)],
    )
    .map_err(unavailable)?
    .iter()
    .map(|r| {
        let (level, idx): (i32, i64) = (get(r, 0)?, get(r, 1)?);
        let hash: Vec<u8> = get(r, 2)?;
        let hash = hash.try_into().map_err(|_| {
            StoreError::Corrupt(format!("tile {idx} of level {level} of org {org:?}"))
        })?;
        Ok((level as u32, idx as u64, hash))
    })
    .collect()
}
