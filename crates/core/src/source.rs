//! Reading YAML or JSON documents into typed structs, with errors that name the file,
//! the line, the column and the field.
//!
//! JSON goes through `serde_json` (fast, for fleets of a million links); YAML through
//! `serde-saphyr`. Both are wrapped in `serde_path_to_error` so a type error names the
//! field. Errors found after parsing (duplicate ids, unknown references) are located by
//! [`Locator`], which re-reads the document with spans only when an error is reported.

use serde::Deserializer;
use serde::de::{DeserializeOwned, Visitor};

use crate::error::{CoreError, InputError};

/// The syntax of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2 (JSON is a subset, but goes the JSON way when recognised).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// Guess from the file name, then from the first non-blank character.
    pub fn detect(origin: &str, text: &str) -> Format {
        let lower = origin.to_ascii_lowercase();
        if lower.ends_with(".json") {
            return Format::Json;
        }
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            return Format::Yaml;
        }
        match text.trim_start().chars().next() {
            Some('{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// A document being read: its text and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    /// Where the text came from (a path, or `<request>` for RPC input).
    pub origin: &'a str,
    /// The full text.
    pub text: &'a str,
    /// Its syntax.
    pub format: Format,
}

impl<'a> Document<'a> {
    /// A document whose format is detected from its origin and text.
    pub fn new(origin: &'a str, text: &'a str) -> Self {
        Document {
            origin,
            text,
            format: Format::detect(origin, text),
        }
    }

    /// Deserialize the whole document into `T`, naming the failing field.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, CoreError> {
        match self.format {
            Format::Json => self.parse_json(),
            Format::Yaml => self.parse_yaml(),
        }
    }

    fn parse_json<T: DeserializeOwned>(&self) -> Result<T, CoreError> {
        let mut de = serde_json::Deserializer::from_str(self.text);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = strip_json_position(&inner.to_string());
            self.error_at(
                Some(inner.line() as u64),
                Some(inner.column() as u64),
                field_of(&path, &message),
                message,
            )
        })?;
        de.end().map_err(|e| {
            self.error_at(
                Some(e.line() as u64),
                Some(e.column() as u64),
                String::new(),
                strip_json_position(&e.to_string()),
            )
        })?;
        Ok(value)
    }

    fn parse_yaml<T: DeserializeOwned>(&self) -> Result<T, CoreError> {
        let mut path = String::new();
        let options = serde_saphyr::options! { with_snippet: false };
        let result =
            serde_saphyr::with_deserializer_from_str_with_options(self.text, options, |de| {
                serde_path_to_error::deserialize(de).map_err(|e| {
                    path = e.path().to_string();
                    e.into_inner()
                })
            });
        result.map_err(|e| {
            let location = e.location();
            let message = strip_yaml_position(&e.to_string());
            self.error_at(
                location.map(|l| l.line()),
                location.map(|l| l.column()),
                field_of(&path, &message),
                message,
            )
        })
    }

    /// An input error at a known position.
    pub fn error_at(
        &self,
        line: Option<u64>,
        column: Option<u64>,
        field: String,
        message: String,
    ) -> CoreError {
        InputError {
            file: self.origin.to_string(),
            line: line.filter(|l| *l > 0),
            column: column.filter(|c| *c > 0),
            field,
            message,
        }
        .into()
    }

    /// An input error about a field found by path (see [`Locator`]).
    pub fn error_in(&self, path: &[PathPart<'_>], message: impl Into<String>) -> CoreError {
        let position = Locator::new(self.text).find(path);
        let field = render_path(path);
        self.error_at(
            position.map(|p| p.0),
            position.map(|p| p.1),
            field,
            message.into(),
        )
    }
}

/// Deserialize a field that must be a string in YAML as in JSON: ids, CA names,
/// addresses. YAML would otherwise read `{id: 12}` or `{id: true}` as the string
/// `"12"`/`"true"` while JSON rejects `{"id": 12}`; a plain scalar that YAML types as a
/// number, a boolean or null is refused here, at its line, and quoting it (`"12"`)
/// makes it a string. Use with `#[serde(deserialize_with = "...")]`.
pub fn string_only<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StringOnly)
}

/// [`string_only`] for an optional field: absent or `null` is `None`.
pub fn optional_string_only<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(OptionalStringOnly)
}

/// Accepts strings only; every other `visit_*` keeps serde's default, an
/// "invalid type: integer `12`, expected ..." error.
struct StringOnly;

impl Visitor<'_> for StringOnly {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string (in YAML, quote a value that reads as a number or boolean)")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

struct OptionalStringOnly;

impl<'de> Visitor<'de> for OptionalStringOnly {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        StringOnly.expecting(f)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Option<String>, E> {
        Ok(Some(v))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        string_only(d).map(Some)
    }
}

/// One component of a path into a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPart<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence index.
    Index(usize),
}

fn render_path(path: &[PathPart<'_>]) -> String {
    let mut out = String::new();
    for part in path {
        match part {
            PathPart::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathPart::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn clean_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

fn strip_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn strip_yaml_position(message: &str) -> String {
    let message = message.trim();
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    message.trim_start_matches("error: ").to_string()
}

/// The field a serde error is about: the path, plus the missing field's name when the
/// error is "missing field `x`" (serde reports it at the enclosing object).
fn field_of(path: &str, message: &str) -> String {
    let path = clean_path(path);
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match missing {
        Some(name) if path.is_empty() => name.to_string(),
        Some(name) => format!("{path}.{name}"),
        None => path,
    }
}

/// Finds the line and column of a path in a YAML or JSON text, by a small span-aware
/// walk. Used only to place errors, so it favours simplicity over speed.
pub struct Locator<'a> {
    text: &'a str,
}

/// A document tree that keeps the position of every value (serde-saphyr's `Spanned`
/// only works when driven directly by its deserializer, hence the hand-written visitor).
enum SpanTree {
    Map(std::collections::BTreeMap<String, serde_saphyr::Spanned<SpanTree>>),
    Seq(Vec<serde_saphyr::Spanned<SpanTree>>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for SpanTree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SpanTreeVisitor)
    }
}

struct SpanTreeVisitor;

impl<'de> serde::de::Visitor<'de> for SpanTreeVisitor {
    type Value = SpanTree;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SpanTree, A::Error> {
        let mut out = std::collections::BTreeMap::new();
        while let Some(key) = map.next_key::<KeyText>()? {
            let value = map.next_value::<serde_saphyr::Spanned<SpanTree>>()?;
            out.entry(key.0).or_insert(value);
        }
        Ok(SpanTree::Map(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SpanTree, A::Error> {
        let mut out = Vec::new();
        while let Some(value) = seq.next_element::<serde_saphyr::Spanned<SpanTree>>()? {
            out.push(value);
        }
        Ok(SpanTree::Seq(out))
    }

    fn visit_bool<E>(self, _: bool) -> Result<SpanTree, E> {
        Ok(SpanTree::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<SpanTree, E> {
        Ok(SpanTree::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<SpanTree, E> {
        Ok(SpanTree::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<SpanTree, E> {
        Ok(SpanTree::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<SpanTree, E> {
        Ok(SpanTree::Leaf)
    }
    fn visit_unit<E>(self) -> Result<SpanTree, E> {
        Ok(SpanTree::Leaf)
    }
    fn visit_none<E>(self) -> Result<SpanTree, E> {
        Ok(SpanTree::Leaf)
    }
}

/// A mapping key of any scalar kind, as text.
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> Locator<'a> {
    /// A locator over `text`.
    pub fn new(text: &'a str) -> Self {
        Locator { text }
    }

    /// The (line, column) where the value at `path` starts, or the deepest known parent.
    pub fn find(&self, path: &[PathPart<'_>]) -> Option<(u64, u64)> {
        if self.text.trim().is_empty() {
            return None;
        }
        let root: serde_saphyr::Spanned<SpanTree> = serde_saphyr::from_str(self.text).ok()?;
        let mut node = &root;
        let mut found = (node.referenced.line(), node.referenced.column());
        for part in path {
            let next = match (part, &node.value) {
                (PathPart::Key(k), SpanTree::Map(map)) => map.get(*k),
                (PathPart::Index(i), SpanTree::Seq(seq)) => seq.get(*i),
                _ => None,
            };
            match next {
                Some(n) => {
                    node = n;
                    found = (node.referenced.line(), node.referenced.column());
                }
                None => break,
            }
        }
        Some(found)
    }
}
