//! Who may call which Executor method: operators steer, readers read.
//!
//! The caller is the verified client certificate's CN ([`peer_node_id`]); only an
//! mTLS server has one. The policy, chosen so that a misconfiguration fails closed:
//!
//! * [`Access::Open`]: every caller may do everything. Only for plaintext, which
//!   serves loopback alone (any local process could reach it anyway), and for
//!   in-process tests.
//! * [`Access::Roles`]: the callers named as operators may call every method; those
//!   named as readers only GetRotation, ListRotations and WatchRotation; everyone else
//!   (and a certificate without exactly one CN) is PERMISSION_DENIED, naming the
//!   caller and the role the method needs. An mTLS executor with neither list refuses
//!   to start (see `rollover serve executor --help`): it would otherwise let any
//!   holder of a certificate from the client CA start rotations.

use std::collections::BTreeSet;

use rollover_proto::status::excerpt;
use rollover_transport::peer_node_id;
use tonic::{Request, Status};

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read rotations: GetRotation, ListRotations, WatchRotation; pre-flight a fleet
    /// (CheckFleet, which changes nothing).
    Reader,
    /// Start and steer rotations: StartRotation, Pause, Resume, Abort, Rollback
    /// (and everything a reader may).
    Operator,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
        }
    }
}

/// Who may call the Executor API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Access {
    /// Everyone may call everything (plaintext on loopback, tests).
    #[default]
    Open,
    /// Only the named identities, by role.
    Roles {
        /// Identities (certificate CNs) that may call every method.
        operators: BTreeSet<String>,
        /// Identities that may only read.
        readers: BTreeSet<String>,
    },
}

/// An identity of an `--operators` / `--readers` list, trimmed (`"alice, bob"` names
/// `bob`, not `" bob"`), or why it cannot be one: a certificate CN the executor
/// compares byte for byte, so an empty entry, or one with blanks or control
/// characters inside, would name nobody, or somebody else than meant.
pub fn identity(entry: &str) -> Result<&str, &'static str> {
    let id = entry.trim();
    if id.is_empty() {
        return Err("an empty identity");
    }
    if id.chars().any(char::is_control) {
        return Err("a control character in the identity");
    }
    if id.chars().any(char::is_whitespace) {
        return Err("blank space inside the identity");
    }
    Ok(id)
}

impl Access {
    /// Roles from `--operators` and `--readers` lists (each entry trimmed; check
    /// entries with [`identity`] first to refuse bad ones).
    pub fn roles<I, J, S, T>(operators: I, readers: J) -> Access
    where
        I: IntoIterator<Item = S>,
        J: IntoIterator<Item = T>,
        S: Into<String>,
        T: Into<String>,
    {
        let trimmed = |s: String| s.trim().to_string();
        Access::Roles {
            operators: operators.into_iter().map(Into::into).map(trimmed).collect(),
            readers: readers.into_iter().map(Into::into).map(trimmed).collect(),
        }
    }

    /// Whether anybody is named.
    pub fn names_anyone(&self) -> bool {
        match self {
            Access::Open => true,
            Access::Roles { operators, readers } => !operators.is_empty() || !readers.is_empty(),
        }
    }

    /// The role of `caller` (None: not allowed anything).
    fn role_of(&self, caller: &str) -> Option<Role> {
        match self {
            Access::Open => Some(Role::Operator),
            Access::Roles { operators, readers } => {
                if operators.contains(caller) {
                    Some(Role::Operator)
                } else if readers.contains(caller) {
                    Some(Role::Reader)
                } else {
                    None
                }
            }
        }
    }

    /// `Ok` if the caller of `request` may call `method`, which needs `needs`;
    /// PERMISSION_DENIED naming the caller otherwise.
    pub fn check<T>(&self, request: &Request<T>, method: &str, needs: Role) -> Result<(), Status> {
        if *self == Access::Open {
            return Ok(());
        }
        let Some(caller) = peer_node_id(request) else {
            tracing::warn!(method, "executor call refused: no client identity");
            return Err(Status::permission_denied(format!(
                "{method}: the caller has no identity (a verified client certificate \
                 with exactly one CN) and this executor admits only named operators \
                 and readers"
            )));
        };
        let has = self.role_of(&caller);
        let allowed = matches!(
            (has, needs),
            (Some(Role::Operator), _) | (Some(Role::Reader), Role::Reader)
        );
        if allowed {
            return Ok(());
        }
        let shown = excerpt(&caller);
        tracing::warn!(caller = %shown, method, needs = needs.as_str(), "executor call refused");
        Err(Status::permission_denied(match has {
            None => format!(
                "{method}: caller `{shown}` is neither an operator nor a reader of this \
                 executor (--operators / --readers)"
            ),
            Some(role) => format!(
                "{method}: caller `{shown}` is a {}, and {method} needs an {}",
                role.as_str(),
                needs.as_str()
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        let access = Access::roles(["ops"], ["audit"]);
        assert_eq!(access.role_of("ops"), Some(Role::Operator));
        assert_eq!(access.role_of("audit"), Some(Role::Reader));
        assert_eq!(access.role_of("stranger"), None);
        assert!(access.names_anyone());
        assert!(!Access::roles(Vec::<String>::new(), Vec::<String>::new()).names_anyone());
        assert_eq!(Access::Open.role_of("anyone"), Some(Role::Operator));
    }

    #[test]
    fn identities_are_trimmed_and_checked() {
        assert_eq!(identity(" bob "), Ok("bob"));
        assert_eq!(identity("deploy-bot"), Ok("deploy-bot"));
        assert_eq!(identity("@executor"), Ok("@executor"));
        assert!(identity("").is_err());
        assert!(identity("  ").is_err());
        assert!(identity("al ice").unwrap_err().contains("blank"));
        assert!(identity("al\tice").unwrap_err().contains("control"));
        assert!(identity("alice\u{7f}").unwrap_err().contains("control"));
        assert!(identity("al\u{a0}ice").unwrap_err().contains("blank"));
        let access = Access::roles(["alice", " bob"], [" audit "]);
        assert_eq!(access.role_of("bob"), Some(Role::Operator));
        assert_eq!(access.role_of("audit"), Some(Role::Reader));
        assert_eq!(access.role_of(" bob"), None);
    }

    #[test]
    fn without_tls_there_is_no_caller_to_admit() {
        let access = Access::roles(["ops"], ["audit"]);
        let status = access
            .check(&Request::new(()), "Pause", Role::Operator)
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("no identity"), "{status:?}");
        assert!(
            Access::Open
                .check(&Request::new(()), "Pause", Role::Operator)
                .is_ok()
        );
    }
}
