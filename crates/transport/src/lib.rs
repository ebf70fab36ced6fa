//! gRPC over mutually authenticated TLS whose credentials are swapped while serving.
//!
//! Every server and client in rollover talks tonic over tokio-rustls with the rustls
//! configs of a [`rollover_pki::LiveCredentials`]: a swap of the node's credential set
//! applies to every handshake that starts afterwards, while established connections
//! keep what they negotiated.
//!
//! * Servers: [`serve_tls`] (or [`TlsIncoming`] with tonic's `serve_with_incoming*`)
//!   accepts TCP, runs the TLS handshake off the accept loop, and hands tonic
//!   [`ServerTlsStream`]s (tokio-rustls streams with tonic's TLS connection info, which
//!   a [`ConnectionCloser`] can cut off): a handler reads the caller's verified
//!   identity with [`peer_node_id`].
//!   [`base_router`] starts every server with gRPC health and reflection;
//!   [`ServerLimits`] bounds what one caller may cost it.
//! * Clients: [`tls_channel`] makes a lazy tonic `Channel` whose connector dials TCP
//!   and runs the TLS handshake with the credentials current at connect time,
//!   verifying the server as `node_dns_name(server_node_id)`. [`connect_tls`] is the
//!   same handshake for raw (non-gRPC) connections; [`ping`] (or [`ping_pong`] on a
//!   connected stream) is the data plane's `ping`/`pong` exchange over it, and
//!   [`answer_ping`] its server half, failing with a [`ProbeError`] of a kind.
//! * Shared listeners: a server accepts from a [`Listener`], its own TCP listener or
//!   the connections an [`SniRouter`] routes to it by TLS server name (a simulator's
//!   thousands of servers in one process).
//! * Loopback only: [`serve_plain`] and [`plain_channel`] refuse other addresses.

mod client;
mod error;
mod limits;
mod listener;
mod ping;
mod probe_error;
mod server;
mod services;

pub use client::{CONNECT_TIMEOUT, connect_tls, plain_channel, tls_channel};
pub use error::TransportError;
pub use limits::{Guarded, ServerLimits};
pub use listener::{Listener, RoutedListener, SniRouter};
pub use ping::{MAX_LINE, PING, PONG, answer_ping, ask_line, ping, ping_pong};
pub use probe_error::ProbeError;
pub use server::{
    ConnectionCloser, HANDSHAKE_TIMEOUT, HandshakeStats, ServerTlsStream, TlsIncoming,
    peer_node_id, serve_plain, serve_tls,
};
pub use services::{COMMON_SERVICES, base_router, reflection_routes};

/// The ALPN protocol id of HTTP/2, offered by [`tls_channel`] and [`serve_tls`].
pub const ALPN_H2: &[u8] = b"h2";
