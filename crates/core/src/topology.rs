//! The topology file of MODEL §7: which CA rotates, which nodes hold it (and in which
//! mode), who is client of whom, and whether the executor's control channel is anchored
//! in the rotated CA.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::ids::check_node_id;
use crate::source::{Document, PathPart};
use crate::state::{Identity, Mode, Profile};

/// The id of the virtual node that stands for the executor when the control channel is
/// anchored in the rotated CA (MODEL §6).
pub const EXECUTOR_ID: &str = "@executor";

/// A fleet's link graph, as written in a topology file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The CA being rotated.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub ca: String,
    /// Nodes that hold the CA, with their modes.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Links `client -> server`.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// The executor's control channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
}

/// A node listed in the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique id, valid by [`crate::ids::check_node_id`] and not starting with `@`.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub id: String,
    /// How many roots the node can hold.
    #[serde(default)]
    pub mode: Mode,
    /// Where the node's agent listens (`host:port`), for rotations with real agents.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::source::optional_string_only"
    )]
    pub address: Option<String>,
    /// Whether the node can send bridges and verify a peer through one (MODEL §11;
    /// default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub chains: bool,
    /// Whether the node presents one certificate as client and server (MODEL §12;
    /// default `multi`).
    #[serde(default, skip_serializing_if = "Identity::is_multi")]
    pub identity: Identity,
    /// The workload's own TLS endpoint (`host:port`) that link probes dial instead of
    /// the agent's data plane (MODEL §12).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::source::optional_string_only"
    )]
    pub probe: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl NodeSpec {
    /// A node with the given id and mode and every other field at its default.
    pub fn new(id: impl Into<String>, mode: Mode) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            mode,
            address: None,
            chains: true,
            identity: Identity::Multi,
            probe: None,
        }
    }

    /// The node's mode, identity and chain support.
    pub fn profile(&self) -> Profile {
        Profile {
            mode: self.mode,
            identity: self.identity,
            chains: self.chains,
        }
    }
}

/// A link `client -> server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The node that connects.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub client: String,
    /// The node that serves.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub server: String,
    /// The CA the link is anchored in; defaults to the topology's `ca`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::source::optional_string_only"
    )]
    pub ca: Option<String>,
}

/// The executor's control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The CA anchoring executor-to-agent mTLS.
    #[serde(deserialize_with = "crate::source::string_only")]
    pub ca: String,
}

impl Topology {
    /// Parse and check a topology document (YAML or JSON, detected from `origin` and
    /// the text). Errors name the file, line, column and field.
    pub fn parse(origin: &str, text: &str) -> Result<Topology, CoreError> {
        Topology::parse_document(&Document::new(origin, text))
    }

    /// Parse and check a document whose format is already known.
    pub fn parse_document(doc: &Document<'_>) -> Result<Topology, CoreError> {
        let topology: Topology = doc.parse()?;
        topology.check(doc)?;
        Ok(topology)
    }

    /// Check what the serde types cannot express, locating errors in `doc`.
    pub fn check(&self, doc: &Document<'_>) -> Result<(), CoreError> {
        use PathPart::{Index, Key};
        if self.ca.trim().is_empty() {
            return Err(doc.error_in(&[Key("ca")], "the rotated CA must have a name"));
        }
        let mut seen: FxHashMap<&str, usize> = FxHashMap::default();
        for (i, node) in self.nodes.iter().enumerate() {
            let at = [Key("nodes"), Index(i), Key("id")];
            check_id(doc, &at, &node.id)?;
            if let Some(probe) = &node.probe
                && let Err(why) = check_host_port(probe)
            {
                return Err(doc.error_in(&[Key("nodes"), Index(i), Key("probe")], why.to_string()));
            }
            if let Some(first) = seen.insert(node.id.as_str(), i) {
                return Err(doc.error_in(
                    &at,
                    format!(
                        "duplicate node id `{}` (first listed as nodes[{first}])",
                        node.id
                    ),
                ));
            }
        }
        for (i, link) in self.links.iter().enumerate() {
            check_id(doc, &[Key("links"), Index(i), Key("client")], &link.client)?;
            check_id(doc, &[Key("links"), Index(i), Key("server")], &link.server)?;
            if let Some(ca) = &link.ca
                && ca.trim().is_empty()
            {
                return Err(doc.error_in(
                    &[Key("links"), Index(i), Key("ca")],
                    "a link's CA must have a name (omit it to use the topology's)",
                ));
            }
        }
        if let Some(control) = &self.control
            && control.ca.trim().is_empty()
        {
            return Err(doc.error_in(
                &[Key("control"), Key("ca")],
                "the control channel's CA must have a name",
            ));
        }
        Ok(())
    }

    /// The CA a link is anchored in.
    pub fn link_ca<'a>(&'a self, link: &'a LinkSpec) -> &'a str {
        link.ca.as_deref().unwrap_or(&self.ca)
    }

    /// Whether the executor is a planned node (MODEL §6).
    pub fn control_in_rotated_ca(&self) -> bool {
        self.control.as_ref().is_some_and(|c| c.ca == self.ca)
    }

    /// Render as JSON (the form sent over the wire and used by benchmarks).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Checks `host:port` syntax: a non-empty host name or address (IPv6 in brackets)
/// and a port in 1..=65535.
pub fn check_host_port(text: &str) -> Result<(), CoreError> {
    let bad = |reason: String| CoreError::HostPort {
        text: text.to_string(),
        reason,
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing `]`".into()))?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(format!("`{inside}` is not an IPv6 address")));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("expected `:port` after the address".into()))?;
        (inside, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected `host:port` (e.g. `127.0.0.1:8443`)".into()))?;
        if host.contains(':') {
            return Err(bad(
                "write an IPv6 address in brackets, e.g. `[::1]:8443`".into()
            ));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
        if host.is_empty() || !host.chars().all(valid) {
            return Err(bad(format!("`{host}` is not a host name or address")));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("the host is empty".into()));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad(format!("`{port}` is not a port (1-65535)"))),
    }
}

/// The node id rule of [`crate::ids`], plus the topology's own: `@` ids are reserved.
fn check_id(doc: &Document<'_>, at: &[PathPart<'_>], id: &str) -> Result<(), CoreError> {
    check_node_id(id).map_err(|bad| doc.error_in(at, bad.to_string()))?;
    if id.starts_with('@') {
        return Err(doc.error_in(
            at,
            format!("`{id}`: ids starting with `@` are reserved (e.g. {EXECUTOR_ID})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(origin: &str, text: &str) -> crate::error::InputError {
        match Topology::parse(origin, text) {
            Ok(t) => panic!("accepted bad input: {t:?}"),
            Err(e) => e.as_input().expect("an input error").clone(),
        }
    }

    #[test]
    fn parses_yaml_with_defaults() {
        let t = Topology::parse(
            "t.yaml",
            "ca: r\nnodes:\n  - {id: a, mode: atomic}\nlinks:\n  - {client: b, server: a}\ncontrol: {ca: r}\n",
        )
        .unwrap();
        assert_eq!(t.nodes[0].mode, Mode::Atomic);
        assert_eq!(t.links[0].ca, None);
        assert!(t.control_in_rotated_ca());
    }

    #[test]
    fn unknown_mode_names_line_and_field() {
        let e = err(
            "bad.yaml",
            "ca: r\nnodes:\n  - {id: a, mode: atomic}\n  - {id: b, mode: quantum}\n",
        );
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.field, "nodes[1].mode", "{e}");
        assert!(e.message.contains("quantum"), "{e}");
        assert!(e.to_string().starts_with("bad.yaml:4:"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let e = err(
            "t.yaml",
            "ca: r\nlinks:\n  - {client: a, server: b}\n  - {client: a, sever: c}\n",
        );
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.field.starts_with("links[1]"), "{e}");
        assert!(e.message.contains("sever"), "{e}");
        let e = err("t.json", "{\"ca\": \"r\",\n \"colour\": 1}");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn missing_ca_is_named() {
        let e = err("t.yaml", "nodes:\n  - {id: a}\n");
        assert!(e.message.contains("ca"), "{e}");
        assert!(e.line.is_some(), "{e}");
        assert_eq!(e.field, "ca", "{e}");
        let e = err("t.json", "{\"nodes\": []}");
        assert!(e.message.contains("`ca`"), "{e}");
        assert_eq!(e.field, "ca", "{e}");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn duplicate_and_empty_ids_name_their_line() {
        let e = err(
            "t.yaml",
            "ca: r\nnodes:\n  - {id: a}\n  - {id: b}\n  - {id: a}\n",
        );
        assert_eq!((e.line, e.field.as_str()), (Some(5), "nodes[2].id"), "{e}");
        assert!(e.message.contains("duplicate"), "{e}");
        let e = err(
            "t.json",
            "{\"ca\": \"r\",\n\"nodes\": [\n {\"id\": \"a\"},\n {\"id\": \"\"}]}",
        );
        assert_eq!((e.line, e.field.as_str()), (Some(4), "nodes[1].id"), "{e}");
        assert!(e.message.contains("empty"), "{e}");
    }

    /// The id rule of [`crate::ids`] is applied to node ids and to both ends of a link,
    /// naming the line and the field, and the message does not repeat the bad id.
    #[test]
    fn unprintable_and_overlong_ids_name_their_line() {
        let long = "a".repeat(254);
        for (text, line, field, says) in [
            (
                "ca: r\nnodes:\n  - {id: a}\n  - {id: \"b\\e]0;title\\a\"}\n".to_string(),
                4,
                "nodes[1].id",
                "U+001B",
            ),
            (
                "ca: r\nlinks:\n  - {client: \"a\\nb\", server: c}\n".to_string(),
                3,
                "links[0].client",
                "U+000A",
            ),
            (
                format!("ca: r\nlinks:\n  - {{client: a, server: {long}}}\n"),
                3,
                "links[0].server",
                "at most 253 bytes",
            ),
        ] {
            let e = err("t.yaml", &text);
            assert_eq!((e.line, e.field.as_str()), (Some(line), field), "{e}");
            assert!(e.message.contains(says), "{e}");
            assert!(
                !e.message.contains("title") && !e.message.contains(&long),
                "{e}"
            );
        }
        let ok = format!("ca: r\nnodes:\n  - {{id: {}}}\n", "a".repeat(253));
        assert!(Topology::parse("t.yaml", &ok).is_ok());
    }

    #[test]
    fn non_string_id_is_a_type_error() {
        let e = err("t.yaml", "ca: r\nnodes:\n  - {id: [1, 2]}\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.field, "nodes[0].id", "{e}");
        let e = err("t.json", "{\"ca\": \"r\", \"nodes\": [{\"id\": 7}]}");
        assert_eq!(e.field, "nodes[0].id", "{e}");
    }

    /// YAML types a plain `12` or `true` as a number or a boolean; such ids and CA names
    /// are refused as JSON refuses them, at their line, rather than read as text.
    #[test]
    fn yaml_numbers_and_booleans_are_not_ids_or_ca_names() {
        let cases = [
            (
                "ca: r\nnodes:\n  - {id: a}\n  - {id: 12}\n",
                4,
                "nodes[1].id",
                "12",
            ),
            ("ca: r\nnodes:\n  - {id: true}\n", 3, "nodes[0].id", "true"),
            ("ca: 7\nnodes:\n  - {id: a}\n", 1, "ca", "7"),
            (
                "ca: r\nlinks:\n  - {client: a, server: b}\n  - {client: 5, server: b}\n",
                4,
                "links[1].client",
                "5",
            ),
            (
                "ca: r\nlinks:\n  - {client: a, server: 1.5}\n",
                3,
                "links[0].server",
                "1.5",
            ),
            (
                "ca: r\nlinks:\n  - {client: a, server: b, ca: 9}\n",
                3,
                "links[0].ca",
                "9",
            ),
            ("ca: r\ncontrol: {ca: false}\n", 2, "control.ca", "false"),
            (
                "ca: r\nnodes:\n  - {id: a, address: 7443}\n",
                3,
                "nodes[0].address",
                "7443",
            ),
        ];
        for (text, line, field, value) in cases {
            let e = err("t.yaml", text);
            assert_eq!(
                (e.line, e.field.as_str()),
                (Some(line), field),
                "{text}: {e}"
            );
            assert!(e.message.contains(value), "{text}: {e}");
            assert!(e.message.contains("expected a string"), "{text}: {e}");
        }
    }

    #[test]
    fn quoted_yaml_scalars_are_strings() {
        let t = Topology::parse(
            "t.yaml",
            "ca: \"7\"\nnodes:\n  - {id: \"12\", address: '10.0.0.1:7443'}\n  - {id: 'true'}\nlinks:\n  - {client: \"12\", server: \"true\", ca: \"7\"}\n  - {client: \"12\", server: x, ca: ~}\n",
        )
        .unwrap();
        assert_eq!(t.ca, "7");
        assert_eq!(t.nodes[0].id, "12");
        assert_eq!(t.nodes[0].address.as_deref(), Some("10.0.0.1:7443"));
        assert_eq!(t.nodes[1].id, "true");
        assert_eq!(t.links[0].ca.as_deref(), Some("7"));
        assert_eq!(t.links[1].ca, None);
        let j = Topology::parse("t.json", &t.to_json()).unwrap();
        assert_eq!(j, t);
    }

    #[test]
    fn chains_identity_and_probe_parse_with_defaults() {
        let t = Topology::parse(
            "t.yaml",
            "ca: r\nnodes:\n  - {id: a}\n  - {id: b, chains: false, identity: single, probe: \"127.0.0.1:8443\"}\n  - {id: c, identity: multi, probe: \"[::1]:1\"}\n",
        )
        .unwrap();
        assert!(t.nodes[0].chains);
        assert_eq!(t.nodes[0].identity, Identity::Multi);
        assert_eq!(t.nodes[0].probe, None);
        assert!(!t.nodes[1].chains);
        assert_eq!(t.nodes[1].identity, Identity::Single);
        assert_eq!(t.nodes[1].probe.as_deref(), Some("127.0.0.1:8443"));
        let j = Topology::parse(
            "t.json",
            "{\"ca\": \"r\", \"nodes\": [{\"id\": \"a\", \"chains\": false, \"identity\": \"single\", \"probe\": \"web-1:443\"}]}",
        )
        .unwrap();
        assert_eq!(j.nodes[0].profile().identity, Identity::Single);
        // Written back without the defaults, and read back the same.
        let again = Topology::parse("again.json", &t.to_json()).unwrap();
        assert_eq!(again, t);
        assert!(!t.to_json().contains("\"chains\": true"));
    }

    #[test]
    fn bad_chains_identity_and_probe_name_their_line() {
        let e = err(
            "t.yaml",
            "ca: r\nnodes:\n  - {id: a}\n  - {id: b, identity: dual}\n",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "nodes[1].identity"),
            "{e}"
        );
        assert!(e.message.contains("dual"), "{e}");
        let e = err("t.yaml", "ca: r\nnodes:\n  - {id: a, chains: sometimes}\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "nodes[0].chains"),
            "{e}"
        );
        let e = err(
            "t.json",
            "{\"ca\": \"r\",\n\"nodes\": [\n {\"id\": \"a\", \"chains\": \"no\"}]}",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "nodes[0].chains"),
            "{e}"
        );
        for bad in [
            "web",
            "web:",
            ":80",
            "web:0",
            "web:99999",
            "a b:80",
            "::1:80",
            "[::1]80",
            "[zz]:80",
        ] {
            let text = format!("ca: r\nnodes:\n  - {{id: a}}\n  - {{id: b, probe: \"{bad}\"}}\n");
            let e = err("t.yaml", &text);
            assert_eq!(
                (e.line, e.field.as_str()),
                (Some(4), "nodes[1].probe"),
                "{bad}: {e}"
            );
            assert!(e.message.contains("host:port"), "{e}");
        }
        let e = err(
            "t.json",
            "{\"ca\": \"r\",\n\"nodes\": [\n {\"id\": \"a\",\n \"probe\": \"nope\"}]}",
        );
        assert_eq!(e.field, "nodes[0].probe", "{e}");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "[",
            "{",
            "ca: [",
            "- a\n- b",
            "ca: r\nnodes: 3",
            "\u{0}\u{1}",
            "{\"ca\":\"r\"} trailing",
        ] {
            let _ = Topology::parse("x.yaml", text);
            let _ = Topology::parse("x.json", text);
        }
    }
}
