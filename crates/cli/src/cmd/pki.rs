//! `rollover pki`: roots and leaves for demos and bootstrap (a real fleet enrols with
//! its own PKI).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use rollover_pki::{KeyAlg, NodeKey, RootCa, Validity};

use super::net;
use crate::output;
use crate::status::{BadInput, Status};

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Make roots and leaves for demos and bootstrap.

`init` writes a new self-signed root CA (certificate and private key in one PEM file,
mode 0600): the old root a fleet's agents and the executor are enrolled with
(--bootstrap-ca), before the first rotation. `issue` writes a leaf for a service (the
planner, the executor's API, an operator) from a root, for the --tls-cert/--tls-key
flags. A real fleet enrols with its own PKI; the root's key belongs with the issuer.

Exit status: 0 when the files were written, 1 when they could not be, 2 on bad input
(e.g. an existing file without --force, an unreadable CA).";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover pki init --ca demo-root --out demo-root.pem
  rollover pki init --ca ops-ca --key-type ed25519 --out ops-ca.pem
  rollover pki issue --ca ops-ca.pem --id planner --cert-out planner.pem --key-out planner-key.pem";

const INIT_LONG_ABOUT: &str = "\
Write a new self-signed root CA: its certificate and private key, PEM, mode 0600.

The root's subject is `CN=<NAME> gen <N>`, the naming the executor continues: a
rotation of the CA NAME makes `<NAME> gen <N+1>`. Give the file to `rollover agent
--bootstrap-ca` and `rollover serve executor --bootstrap-ca` to enrol a demo fleet. An
existing file is not replaced unless --force.

Exit status: 0 when written, 1 when the file cannot be written, 2 on bad input (e.g.
an existing file without --force).";

const INIT_EXAMPLES: &str = "\
Examples:
  rollover pki init --ca demo-root --out demo-root.pem
  rollover pki init --ca plant-device-ca --generation 7 --key-type ed25519 --out ca.pem";

const ISSUE_LONG_ABOUT: &str = "\
Write a leaf certificate (CN and DNS name for ID) and its fresh private key (mode 0600),
issued by a root written by `pki init`.

For the mTLS flags of services and clients outside the rotated fleet: `serve planner` /
`serve executor --tls-cert --tls-key --client-ca`, `serve executor --planner https://...`
and `rotate`/`status --tls-cert --tls-key --ca`. The key is made here; in a real
deployment it is made where it is used and only a CSR travels.

Exit status: 0 when written, 1 when the files cannot be written, 2 on bad input (e.g.
an unreadable CA, an existing file without --force).";

const ISSUE_EXAMPLES: &str = "\
Examples:
  rollover pki issue --ca ops-ca.pem --id planner --cert-out planner.pem --key-out planner-key.pem
  rollover pki issue --ca ops-ca.pem --id executor --cert-out executor.pem --key-out executor-key.pem";

/// What to make.
#[derive(Debug, Subcommand)]
pub enum PkiArgs {
    /// Write a new root CA (certificate and key, PEM, mode 0600).
    #[command(long_about = INIT_LONG_ABOUT, after_help = INIT_EXAMPLES)]
    Init(InitArgs),
    /// Write a leaf for a service or an operator, issued by a root.
    #[command(long_about = ISSUE_LONG_ABOUT, after_help = ISSUE_EXAMPLES)]
    Issue(IssueArgs),
}

/// Arguments of `rollover pki init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The CA's name: the topology's `ca`.
    #[arg(long = "ca", value_name = "NAME")]
    pub name: String,
    /// The root's generation, in its subject `CN=<NAME> gen <N>`.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub generation: u32,
    /// The root's key algorithm.
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    pub key_type: KeyType,
    /// Days the root is valid (from one hour ago, for clock skew).
    #[arg(long, value_name = "DAYS", default_value_t = 3650)]
    pub days: u32,
    /// Where to write the root (certificate and key).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `rollover pki issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The issuing root (certificate and key, as `pki init` writes it).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// The leaf's id: its CN, and its DNS name `<id>.node.rollover` clients verify.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert_out: PathBuf,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key_out: PathBuf,
    /// The leaf's key algorithm.
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    pub key_type: KeyType,
    /// Days the leaf is valid.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub days: u32,
    /// Replace the output files if they exist.
    #[arg(long)]
    pub force: bool,
}

/// `--key-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256.
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl From<KeyType> for KeyAlg {
    fn from(k: KeyType) -> KeyAlg {
        match k {
            KeyType::EcdsaP256 => KeyAlg::EcdsaP256,
            KeyType::Ed25519 => KeyAlg::Ed25519,
        }
    }
}

fn validity(days: u32) -> anyhow::Result<Validity> {
    if days == 0 {
        return Err(BadInput("--days must be at least 1".into()).into());
    }
    Ok(Validity::for_duration(Duration::from_secs(
        u64::from(days) * 24 * 3600,
    )))
}

/// Run `rollover pki`.
pub fn run(args: &PkiArgs) -> anyhow::Result<Status> {
    match args {
        PkiArgs::Init(args) => init(args),
        PkiArgs::Issue(args) => issue(args),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<Status> {
    if args.name.trim().is_empty() {
        return Err(BadInput("--ca: the CA name must not be empty".into()).into());
    }
    let root = RootCa::generate(
        &args.name,
        args.generation,
        args.key_type.into(),
        validity(args.days)?,
    )
    .map_err(|e| anyhow::anyhow!("cannot generate the root: {e}"))?;
    net::write_private(&args.out, &root.to_pem(), args.force)?;
    output::write(
        None,
        &format!(
            "wrote root `{} gen {}` ({}, sha256 {}) with its private key to {} (mode 0600)\n",
            args.name,
            args.generation,
            args.key_type
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string()),
            root.fingerprint(),
            args.out.display()
        ),
    )?;
    Ok(Status::Success)
}

fn issue(args: &IssueArgs) -> anyhow::Result<Status> {
    let text = net::read_text(&args.ca)?;
    let root = RootCa::from_pem(&text).map_err(|e| {
        BadInput(format!(
            "{}: not a root with its key (as `rollover pki init` writes it): {e}",
            args.ca.display()
        ))
    })?;
    for out in [&args.cert_out, &args.key_out] {
        if !args.force && out.exists() {
            return Err(BadInput(format!(
                "{}: already exists (pass --force to replace it)",
                out.display()
            ))
            .into());
        }
    }
    let key = NodeKey::generate(args.key_type.into())
        .map_err(|e| anyhow::anyhow!("cannot generate a key: {e}"))?;
    let csr = key
        .csr_der(&args.id)
        .map_err(|e| BadInput(format!("--id {}: {e}", args.id)))?;
    let cert = root
        .issue_leaf(&csr, &args.id, validity(args.days)?)
        .map_err(|e| BadInput(format!("--id {}: {e}", args.id)))?;
    let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec()));
    net::write_private(&args.key_out, &key.to_pem(), args.force)?;
    net::write_public(&args.cert_out, &cert_pem, args.force)?;
    output::write(
        None,
        &format!(
            "wrote leaf `{}` ({}) issued by {} to {}, its key to {} (mode 0600)\n",
            args.id,
            rollover_pki::node_dns_name(&args.id),
            args.ca.display(),
            args.cert_out.display(),
            args.key_out.display()
        ),
    )?;
    Ok(Status::Success)
}
