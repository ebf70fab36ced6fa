//! A [`CredentialSet`] checked and turned into what handshakes read: signing keys with
//! the chain each sends (the leaf, then the bridges of MODEL §11), issuer names for
//! client-certificate selection, CA hints and webpki verifiers.
//!
//! Compilation happens once per swap, so a handshake does no parsing or building.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{DistinguishedName, RootCertStore};

use crate::bridge::check_bridge;
use crate::credentials::{issuer_dn, subject_dn};
use crate::{CredentialSet, PkiError};

/// A held leaf ready to sign, with its issuer's DER name.
#[derive(Debug)]
pub(crate) struct ClientKey {
    pub(crate) issuer: Vec<u8>,
    /// Issuers of the sent bridges whose subject is `issuer`: the roots a server can
    /// verify this leaf under only through a bridge.
    pub(crate) bridged_issuers: Vec<Vec<u8>>,
    /// The leaf followed by the bridges the node sends.
    pub(crate) key: Arc<CertifiedKey>,
}

/// The validated, pre-built form of one [`CredentialSet`].
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) set: Arc<CredentialSet>,
    /// The presented leaf, if any.
    pub(crate) server_key: Option<Arc<CertifiedKey>>,
    /// Every held leaf, in `held` order.
    pub(crate) client_keys: Vec<ClientKey>,
    /// Subjects of `server_roots`, sent as CertificateRequest CA hints.
    pub(crate) hint_subjects: Vec<DistinguishedName>,
    /// Verifies clients against `server_roots`; `None` when there are none.
    pub(crate) client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// Verifies servers against `client_roots`; `None` when there are none.
    pub(crate) server_verifier: Option<Arc<dyn ServerCertVerifier>>,
    /// The provider handshake signatures are checked with.
    pub(crate) provider: Arc<CryptoProvider>,
    /// Whether peers may be verified through the intermediates they send.
    pub(crate) chains: bool,
}

impl Compiled {
    /// Checks `set` (roots usable as trust anchors, keys matching their leaves,
    /// `presents` in range) and pre-builds everything a handshake needs.
    pub(crate) fn build(
        set: CredentialSet,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, PkiError> {
        let server_store = root_store(&set.server_roots)?;
        let client_store = root_store(&set.client_roots)?;
        let hint_subjects = server_store.subjects();

        for (index, bridge) in set.sends.iter().enumerate() {
            check_bridge(bridge).map_err(|e| e.in_bridge(&format!("sends #{index}")))?;
        }
        // A node that cannot build chains sends nothing after its leaf.
        let sends = match set.chains {
            true => set.sends.as_slice(),
            false => &[],
        };
        let bridges = sends
            .iter()
            .map(|b| match (subject_dn(b), issuer_dn(b)) {
                (Some(subject), Some(issuer)) => Ok((subject, issuer)),
                _ => Err(PkiError::Certificate("a sent bridge does not parse".into())),
            })
            .collect::<Result<Vec<_>, PkiError>>()?;

        let client_keys = set
            .held
            .iter()
            .enumerate()
            .map(|(index, leaf)| {
                let chain = std::iter::once(leaf.cert.clone())
                    .chain(sends.iter().cloned())
                    .collect();
                let key = CertifiedKey::from_der(chain, leaf.key.private_key_der(), provider)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(_) => PkiError::KeyMismatch { index },
                        other => PkiError::Tls(other),
                    })?;
                let issuer = issuer_dn(&leaf.cert).ok_or_else(|| {
                    PkiError::Certificate(format!("held leaf #{index} does not parse"))
                })?;
                let bridged_issuers = bridges
                    .iter()
                    .filter(|(subject, _)| *subject == issuer)
                    .map(|(_, bridge_issuer)| bridge_issuer.clone())
                    .collect();
                Ok(ClientKey {
                    issuer,
                    bridged_issuers,
                    key: Arc::new(key),
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;

        let server_key = match set.presents {
            None => None,
            Some(index) => Some(
                client_keys
                    .get(index)
                    .ok_or(PkiError::PresentsOutOfRange {
                        index,
                        held: client_keys.len(),
                    })?
                    .key
                    .clone(),
            ),
        };

        let client_verifier = match server_store.is_empty() {
            true => None,
            false => Some(
                WebPkiClientVerifier::builder_with_provider(
                    Arc::new(server_store),
                    provider.clone(),
                )
                .build()
                .map_err(|e| PkiError::Verifier(e.to_string()))?,
            ),
        };
        let server_verifier: Option<Arc<dyn ServerCertVerifier>> = match client_store.is_empty() {
            true => None,
            false => Some(
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(client_store),
                    provider.clone(),
                )
                .build()
                .map_err(|e| PkiError::Verifier(e.to_string()))?,
            ),
        };

        Ok(Self {
            server_key,
            client_keys,
            hint_subjects,
            client_verifier,
            server_verifier,
            provider: provider.clone(),
            chains: set.chains,
            set: Arc::new(set),
        })
    }
}

/// A trust store holding every root, refusing any that is not a usable trust anchor.
fn root_store(
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<RootCertStore, PkiError> {
    let mut store = RootCertStore::empty();
    for (index, root) in roots.iter().enumerate() {
        store.add(root.clone()).map_err(|e| PkiError::TrustRoot {
            index,
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}
