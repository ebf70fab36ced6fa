//! The process limits a large simulation runs into: open files (every connection
//! has both of its ends in this process) and, for agents on ports of their own,
//! loopback ports. The soft open-files limit is raised to the hard one; what is still
//! short is refused up front with the figures and how to raise them, rather than
//! found out as accept errors and timeouts halfway through a rotation.

use crate::error::SimError;
use crate::services::CHANNELS_KEPT;

/// Files the process holds besides the fleet's: the runtime, the services and their
/// listeners, the probes and final checks in flight, the state files being written.
const BASE_FILES: u64 = 4096;

/// Where the simulated agents listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// Two ports per agent, as deployed (chaos runs: a crashed agent's ports refuse).
    OwnPorts,
    /// One data-plane and one control listener for the whole fleet, routing by TLS
    /// server name.
    Shared,
}

/// The open-files limit after raising the soft limit as far as the hard one allows:
/// (soft, hard); `None` where there is no such limit.
pub fn raise_open_files() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let soft = rlimit::increase_nofile_limit(u64::MAX).ok()?;
        let (_, hard) = rlimit::Resource::NOFILE.get().ok()?;
        Some((soft, hard))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Open files a fleet of `agents` needs, about.
pub fn files_needed(agents: usize, listening: Listening) -> u64 {
    let listeners = match listening {
        Listening::OwnPorts => 2 * agents as u64,
        Listening::Shared => 2,
    };
    // A connection from the executor to an agent is two files in this process.
    let channels = 2 * (agents.min(CHANNELS_KEPT) as u64);
    BASE_FILES + listeners + channels
}

/// Raise what can be raised; an error naming the limit and the figure needed if
/// `agents` cannot fit.
pub fn check(agents: usize, listening: Listening) -> Result<(), SimError> {
    let needed = files_needed(agents, listening);
    if let Some((soft, hard)) = raise_open_files() {
        tracing::debug!(soft, hard, needed, "open files limit");
        if needed > soft {
            return Err(SimError::Limit(format!(
                "simulating {agents} agents needs about {needed} open files, but this process \
                 may open {soft} (hard limit {hard}); raise the limit (e.g. `ulimit -Hn {needed}; \
                 ulimit -n {needed}` as root, or LimitNOFILE= in a systemd unit) or simulate \
                 fewer nodes"
            )));
        }
    }
    if listening == Listening::OwnPorts
        && let Some((low, high)) = local_port_range()
    {
        let ports = u64::from(high.saturating_sub(low)) + 1;
        // Half the range at most: connections need ephemeral ports too.
        if 2 * agents as u64 > ports / 2 {
            return Err(SimError::Limit(format!(
                "{agents} agents on ports of their own need {} loopback ports, but only {ports} \
                 ephemeral ports exist ({low}-{high} in /proc/sys/net/ipv4/ip_local_port_range) \
                 and connections need them too; widen the range or simulate fewer nodes",
                2 * agents
            )));
        }
    }
    Ok(())
}

/// The kernel's ephemeral port range (Linux).
fn local_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_listeners_need_no_file_per_agent_beyond_the_kept_channels() {
        assert_eq!(
            files_needed(10_000, Listening::Shared),
            files_needed(1_000_000, Listening::Shared)
        );
        assert!(files_needed(10_000, Listening::OwnPorts) > 20_000);
    }

    #[test]
    fn raising_keeps_soft_within_hard() {
        if let Some((soft, hard)) = raise_open_files() {
            assert!(soft <= hard);
            assert!(soft > 0);
        }
    }

    #[test]
    fn too_many_own_ports_is_an_error_naming_the_limit() {
        let err = check(10_000_000, Listening::OwnPorts).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("open files") || text.contains("ports"),
            "{text}"
        );
    }
}
