//! Strict JSON: documents whose objects repeat no key, at any depth.
//!
//! serde_json keeps the last of two repeated keys, while other readers keep
//! the first: a body checked one way and read the other (a proxy, a log, a
//! later reader of the same bytes) would be a document nobody checked. The
//! first repeat ends the parse, and its path (`scopes`,
//! `outline.dependencies.x`, `items[2].name`) says where it is. Bundles
//! ([`crate::bundle`]) and the API's JSON bodies are read through [`Strict`].

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

/// Where a value is in the document, for messages: `outline.dependencies`.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Top,
    Member(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Top => Ok(()),
            Path::Member(parent, key) => {
                if !matches!(parent, Path::Top) {
                    write!(f, "{parent}.")?;
                }
                // Keys may be long; the start is enough to find them.
                f.write_str(&key.chars().take(80).collect::<String>())
            }
            Path::Item(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Why a document was not read.
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    /// `path` is where the second occurrence of the key is.
    #[error("the key {path:?} is repeated")]
    RepeatedKey { path: String },
    #[error(transparent)]
    Syntax(serde_json::Error),
}

/// Parses `bytes` as one JSON document, refusing repeated keys.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictError> {
    let repeated = RefCell::new(None);
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict::new(&Path::Top, &repeated)
        .deserialize(&mut json)
        .and_then(|value| json.end().map(|()| value));
    parsed.map_err(|err| match repeated.into_inner() {
        Some(path) => StrictError::RepeatedKey { path },
        None => StrictError::Syntax(err),
    })
}

/// Any JSON value at `path`, refusing repeated keys at every depth. serde
/// errors carry only a message, so the path of the first repeat waits in
/// `repeated` for the caller to make its own error of it.
#[derive(Clone, Copy)]
pub struct Strict<'p, 'r> {
    path: &'p Path<'p>,
    repeated: &'r RefCell<Option<String>>,
}

impl<'p, 'r> Strict<'p, 'r> {
    pub fn new(path: &'p Path<'p>, repeated: &'r RefCell<Option<String>>) -> Strict<'p, 'r> {
        Strict { path, repeated }
    }

    fn at<'q>(&self, path: &'q Path<'q>) -> Strict<'q, 'r> {
        Strict {
            path,
            repeated: self.repeated,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.at(&Path::Item(self.path, items.len())))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Member(self.path, &key);
            if object.contains_key(&key) {
                let path = path.to_string();
                let message = format!("the key {path:?} is repeated");
                self.repeated.borrow_mut().get_or_insert(path);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self.at(&path))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repeated(text: &str) -> Option<String> {
        match from_slice(text.as_bytes()) {
            Err(StrictError::RepeatedKey { path }) => Some(path),
            Err(StrictError::Syntax(err)) => panic!("{text}: {err}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn a_repeated_key_is_refused_with_its_path_at_every_depth() {
        assert_eq!(
            repeated(r#"{"scopes":["a"],"scopes":["b"]}"#).as_deref(),
            Some("scopes")
        );
        assert_eq!(repeated(r#"{"a":{"b":1,"b":2}}"#).as_deref(), Some("a.b"));
        assert_eq!(repeated(r#"{"a":[{"x":1},{"x":1,"x":1}]}"#).as_deref(), Some("a[1].x"));
        assert_eq!(repeated(r#"[[{"k":0,"k":0}]]"#).as_deref(), Some("[0][0].k"));
        assert_eq!(
            repeated(r#"{"a":1,"b":{"a":1},"c":[{"a":1}]}"#),
            None,
            "the same key in different objects"
        );
    }

    #[test]
    fn a_document_without_repeats_reads_as_serde_json_reads_it() {
        let text = r#"{"name":"ci","n":-1,"big":18446744073709551615,"f":1.5,"ok":true,"none":null,"list":[1,"x"]}"#;
        assert_eq!(
            from_slice(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(from_slice(b" [] ").unwrap(), json!([]));
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_syntax_errors() {
        for bad in [&b"{"[..], b"{}{}", b"{\"a\":}", b"", b"{\"a\":1,}"] {
            assert!(matches!(from_slice(bad), Err(StrictError::Syntax(_))), "{bad:?}");
        }
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(
            matches!(from_slice(deep.as_bytes()), Err(StrictError::Syntax(_))),
            "nesting is bounded"
        );
    }
}
