//! The crate's one error type, [`TransportError`].

use std::io;

/// Everything that can go wrong setting up or running a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// An address that is not `host:port` (or `http://host:port`).
    #[error("invalid address {addr:?}: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A node id that has no valid DNS name (see `rollover_pki::node_dns_name`).
    #[error("node id {0:?} has no valid DNS name to verify the server against")]
    ServerName(String),

    /// A plaintext server or channel on an address that is not loopback.
    #[error("{addr}: plaintext gRPC is only allowed on loopback addresses")]
    NotLoopback {
        /// The refused address.
        addr: String,
    },

    /// Connecting the TCP socket failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },

    /// The TLS handshake failed (the error names rustls' reason or the peer's alert).
    #[error("tls handshake with {addr}: {source}")]
    Handshake {
        /// The peer's address.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },

    /// A connect or handshake did not finish in time.
    #[error("{what} with {addr} timed out")]
    Timeout {
        /// What timed out ("connect", "tls handshake").
        what: &'static str,
        /// The peer's address.
        addr: String,
    },

    /// A local socket operation failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),

    /// tonic's server or endpoint failed.
    #[error("grpc transport: {0}")]
    Grpc(#[from] tonic::transport::Error),

    /// The reflection service could not be built from the descriptor sets.
    #[error("grpc reflection: {0}")]
    Reflection(String),
}
