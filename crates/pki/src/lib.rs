//! The PKI layer of rollover: root CA generations, node keys and CSRs, leaf issuance,
//! and rustls configs whose trust and certificates follow a live-swappable
//! [`CredentialSet`] (MODEL §2).
//!
//! Private keys are generated where they are used: a node's key ([`NodeKey`]) on the
//! node, a root's key ([`RootCa`]) with the issuer. Only CSRs and certificates travel.

mod bridge;
mod ca;
mod compiled;
mod credentials;
mod csr;
mod error;
mod handshake;
mod live;
mod names;
mod node_key;
mod params;
mod resolvers;
mod verifiers;

#[cfg(test)]
mod bridge_rule;
#[cfg(test)]
mod testutil;

pub use bridge::{Bridges, check_bridge};
pub use ca::{RootCa, fingerprint};
pub use credentials::{CredentialSet, HeldLeaf};
pub use error::PkiError;
pub use handshake::{HandshakeError, HandshakeOutcome, handshake_in_memory};
pub use live::LiveCredentials;
pub use names::{NODE_DNS_SUFFIX, node_dns_name, node_id_from_cert};
pub use node_key::NodeKey;
pub use params::{KeyAlg, Validity};
pub use rustls::pki_types::CertificateDer;
