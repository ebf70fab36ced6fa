//! The chaos SPEC: which faults to inject and how often, e.g.
//! `agent-crash=0.05,executor-crash=3,drop=0.02,delay=50ms,partition=0.01,duplicate=0.02`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The fault kinds a SPEC may name, in canonical order.
pub const KINDS: [&str; 11] = [
    "agent-crash",
    "strand",
    "executor-crash",
    "leader-crash",
    "postgres-cut",
    "postgres-blip",
    "postgres-slow",
    "drop",
    "delay",
    "partition",
    "duplicate",
];

/// Which faults a chaotic run injects. Probabilities are in `0..=1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChaosSpec {
    /// `agent-crash=p`: after a step is applied to an agent, with probability `p` the
    /// agent is killed and restarted shortly after on the same state directory and
    /// ports (the answer to the executor is lost half of the time).
    pub agent_crash: f64,
    /// `strand=p`: before a step is sent to an agent, with probability `p` the agent
    /// goes down for longer than the executor keeps retrying, so the rotation pauses
    /// naming it; the simulator resumes it once the agent is back.
    pub strand: f64,
    /// `executor-crash=N`: the executor is killed N times at seeded moments of the
    /// rotation and opened again on its journal.
    pub executor_crash: u32,
    /// `leader-crash=N` (an executor group on PostgreSQL, `--journal`): the leading
    /// executor is killed N times at seeded moments (its lease left to expire) and
    /// started again as a follower; another member takes the lease and resumes.
    pub leader_crash: u32,
    /// `postgres-cut=N` (an executor group on PostgreSQL): the leader's database
    /// connections are cut N times at seeded moments, for longer than its lease, so
    /// it steps down and another member takes over.
    pub postgres_cut: u32,
    /// `postgres-blip=N` (an executor group on PostgreSQL): the leader's database
    /// connections are dropped N times at seeded moments for a seeded 0.2 to 3 s,
    /// shorter than its lease: it keeps leading, and must neither lose nor invent a
    /// transition while its journal cannot be written.
    pub postgres_blip: u32,
    /// `postgres-slow=D` (an executor group on PostgreSQL): everything each executor
    /// sends its database waits a seeded time in `0..=D` first.
    pub postgres_slow: Duration,
    /// `drop=p`: a control call is lost with probability `p`: half of the time before
    /// it reaches the agent, half of the time after (the agent acted, the answer is
    /// lost).
    pub drop: f64,
    /// `delay=D`: every control call waits a seeded time in `0..=D` before it is sent
    /// (which also reorders concurrent calls).
    pub delay: Duration,
    /// `partition=p`: with probability `p` per call, the executor is cut off from that
    /// agent for a seeded while (its calls fail UNAVAILABLE until it heals).
    pub partition: f64,
    /// `duplicate=p`: a control call is sent twice at once with probability `p`.
    pub duplicate: f64,
}

/// A SPEC that does not parse; the message names the bad term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chaos spec: {0}")]
pub struct ChaosSpecError(pub String);

impl ChaosSpec {
    /// Whether the spec injects nothing.
    pub fn is_empty(&self) -> bool {
        *self == ChaosSpec::default()
    }

    /// Whether a fault needs an executor group on PostgreSQL (`--journal`).
    pub fn needs_group(&self) -> bool {
        self.leader_crash > 0
            || self.postgres_cut > 0
            || self.postgres_blip > 0
            || !self.postgres_slow.is_zero()
    }
}

fn probability(term: &str, value: &str) -> Result<f64, ChaosSpecError> {
    let p: f64 = value.parse().map_err(|_| {
        ChaosSpecError(format!(
            "term `{term}`: `{value}` is not a probability (a number from 0 to 1)"
        ))
    })?;
    if !(0.0..=1.0).contains(&p) {
        return Err(ChaosSpecError(format!(
            "term `{term}`: the probability {value} is not within 0..=1"
        )));
    }
    Ok(p)
}

fn duration(term: &str, value: &str) -> Result<Duration, ChaosSpecError> {
    let bad = || {
        ChaosSpecError(format!(
            "term `{term}`: `{value}` is not a duration (e.g. 50ms, 1s, 500us)"
        ))
    };
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = value.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(bad());
    };
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n * scale > 60.0 {
        return Err(ChaosSpecError(format!(
            "term `{term}`: the delay must be between 0 and 60 s"
        )));
    }
    Ok(Duration::from_secs_f64(n * scale))
}

fn count(term: &str, value: &str) -> Result<u32, ChaosSpecError> {
    value.parse().ok().filter(|n| *n <= 1000).ok_or_else(|| {
        ChaosSpecError(format!(
            "term `{term}`: `{value}` is not a number of times (0 to 1000)"
        ))
    })
}

impl FromStr for ChaosSpec {
    type Err = ChaosSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut spec = ChaosSpec::default();
        let mut seen = Vec::new();
        if text.trim().is_empty() {
            return Err(ChaosSpecError(format!(
                "empty (give terms like `drop=0.02,delay=50ms`; kinds: {})",
                KINDS.join(", ")
            )));
        }
        for term in text.split(',') {
            let term = term.trim();
            if term.is_empty() {
                return Err(ChaosSpecError(format!("empty term in `{text}`")));
            }
            let Some((kind, value)) = term.split_once('=') else {
                return Err(ChaosSpecError(format!(
                    "term `{term}`: expected KIND=VALUE (kinds: {})",
                    KINDS.join(", ")
                )));
            };
            let (kind, value) = (kind.trim(), value.trim());
            if seen.contains(&kind) {
                return Err(ChaosSpecError(format!(
                    "term `{term}`: `{kind}` is given twice"
                )));
            }
            match kind {
                "agent-crash" => spec.agent_crash = probability(term, value)?,
                "strand" => spec.strand = probability(term, value)?,
                "executor-crash" => spec.executor_crash = count(term, value)?,
                "leader-crash" => spec.leader_crash = count(term, value)?,
                "postgres-cut" => spec.postgres_cut = count(term, value)?,
                "postgres-blip" => spec.postgres_blip = count(term, value)?,
                "postgres-slow" => spec.postgres_slow = duration(term, value)?,
                "drop" => spec.drop = probability(term, value)?,
                "delay" => spec.delay = duration(term, value)?,
                "partition" => spec.partition = probability(term, value)?,
                "duplicate" => spec.duplicate = probability(term, value)?,
                other => {
                    return Err(ChaosSpecError(format!(
                        "term `{term}`: unknown fault kind `{other}` (known: {})",
                        KINDS.join(", ")
                    )));
                }
            }
            seen.push(kind);
        }
        Ok(spec)
    }
}

impl fmt::Display for ChaosSpec {
    /// The canonical SPEC (every kind, in a fixed order): it parses back to the same
    /// spec, so a logged run can be replayed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agent-crash={},strand={},executor-crash={},leader-crash={},postgres-cut={},postgres-blip={},postgres-slow={}ms,drop={},delay={}ms,partition={},duplicate={}",
            self.agent_crash,
            self.strand,
            self.executor_crash,
            self.leader_crash,
            self.postgres_cut,
            self.postgres_blip,
            self.postgres_slow.as_secs_f64() * 1000.0,
            self.drop,
            self.delay.as_secs_f64() * 1000.0,
            self.partition,
            self.duplicate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let spec: ChaosSpec =
            "agent-crash=0.05,executor-crash=3,drop=0.02,delay=50ms,partition=0.01,duplicate=0.02"
                .parse()
                .unwrap();
        assert_eq!(spec.agent_crash, 0.05);
        assert_eq!(spec.executor_crash, 3);
        assert_eq!(spec.drop, 0.02);
        assert_eq!(spec.delay, Duration::from_millis(50));
        assert_eq!(spec.partition, 0.01);
        assert_eq!(spec.duplicate, 0.02);
        assert_eq!(spec.strand, 0.0);
        assert_eq!(spec.leader_crash, 0);
        let again: ChaosSpec = spec.to_string().parse().unwrap();
        assert_eq!(again, spec);
        assert_eq!(
            " strand = 0.1 , delay=1s".parse::<ChaosSpec>().unwrap(),
            ChaosSpec {
                strand: 0.1,
                delay: Duration::from_secs(1),
                ..ChaosSpec::default()
            }
        );
        let ha: ChaosSpec = "leader-crash=3,postgres-cut=1".parse().unwrap();
        assert_eq!((ha.leader_crash, ha.postgres_cut), (3, 1));
        assert_eq!(ha.to_string().parse::<ChaosSpec>().unwrap(), ha);
        let db: ChaosSpec = "postgres-blip=3,postgres-slow=500ms".parse().unwrap();
        assert_eq!(db.postgres_blip, 3);
        assert_eq!(db.postgres_slow, Duration::from_millis(500));
        assert_eq!(db.to_string().parse::<ChaosSpec>().unwrap(), db);
    }

    #[test]
    fn bad_terms_are_named() {
        for (text, needle) in [
            ("drop=2", "term `drop=2`"),
            ("drop=x", "term `drop=x`"),
            ("agent-crash=0.1,fire=0.2", "unknown fault kind `fire`"),
            ("delay=50", "term `delay=50`"),
            ("delay=-5ms", "term `delay=-5ms`"),
            ("executor-crash=0.5", "term `executor-crash=0.5`"),
            ("leader-crash=-1", "term `leader-crash=-1`"),
            ("postgres-cut=x", "not a number of times"),
            ("postgres-blip=0.5", "term `postgres-blip=0.5`"),
            ("postgres-slow=5", "term `postgres-slow=5`"),
            ("drop", "term `drop`"),
            ("drop=0.1,,delay=1ms", "empty term"),
            ("drop=0.1,drop=0.2", "given twice"),
            ("", "empty"),
        ] {
            let e = text.parse::<ChaosSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
