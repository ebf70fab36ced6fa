//! [`ProbeError`]: a failed probe's kind ([`v1::ProbeFailure`], carried on the wire)
//! and its text, so that readers (the executor's pause decision, the simulator's
//! excuses) decide on the kind rather than on words in the message.

use std::fmt;

use rollover_proto::v1;

/// A probe that failed: why (its kind) and what happened (the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// What kind of failure it was.
    pub kind: v1::ProbeFailure,
    /// The TLS, I/O or answer error, as text.
    pub message: String,
}

impl ProbeError {
    /// A failure of this kind.
    pub fn new(kind: v1::ProbeFailure, message: impl Into<String>) -> Self {
        ProbeError {
            kind,
            message: message.into(),
        }
    }

    /// A handshake or I/O failure, classified from its cause: TLS refused a peer when
    /// a `rustls::Error` is somewhere in the chain (a local verification failure or
    /// the peer's alert), else the connection failed.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let kind = if is_tls(error) {
            v1::ProbeFailure::TlsRefused
        } else {
            v1::ProbeFailure::Connection
        };
        ProbeError::new(kind, error.to_string())
    }

    /// The failure as a probe response or event carries it (`failure`, `error`).
    pub fn from_wire(failure: i32, error: String) -> Self {
        ProbeError::new(
            v1::ProbeFailure::try_from(failure).unwrap_or_default(),
            error,
        )
    }

    /// Whether TLS or the peer refused (the trust is wrong): never an outage. A kind
    /// the prober did not say counts as a refusal, so that nothing is excused blindly.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self.kind,
            v1::ProbeFailure::Connection | v1::ProbeFailure::NotRun
        )
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProbeError {}

/// Whether a `rustls::Error` is in `error`'s chain. `io::Error` hides its payload from
/// `source()` (it returns the payload's own source), so it is looked into directly.
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && is_tls(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_are_refusals_wherever_they_sit() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        let e = ProbeError::from_error(&io);
        assert_eq!(e.kind, v1::ProbeFailure::TlsRefused);
        assert!(e.is_refusal());
        let wrapped = crate::TransportError::Handshake {
            addr: "127.0.0.1:4".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
        };
        assert_eq!(
            ProbeError::from_error(&wrapped).kind,
            v1::ProbeFailure::TlsRefused
        );
    }

    #[test]
    fn connection_errors_are_not_refusals() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = ProbeError::from_error(&refused);
        assert_eq!(e.kind, v1::ProbeFailure::Connection);
        assert!(!e.is_refusal());
        assert!(!ProbeError::new(v1::ProbeFailure::NotRun, "agent down").is_refusal());
        assert!(ProbeError::from_wire(0, "old agent".into()).is_refusal());
    }
}
