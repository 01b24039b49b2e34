//! A strict JSON reading for untrusted headers and indexes: objects keep their key order, a key
//! that appears twice in one object is an error (serde_json's maps, and so the safetensors
//! crate, silently keep one of them), and nesting is bounded.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;

/// A JSON value with object members in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<JsonValue>),
    Object(Vec<(String, JsonValue)>),
}

impl JsonValue {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "a boolean",
            JsonValue::Number(_) => "a number",
            JsonValue::String(_) => "a string",
            JsonValue::Array(_) => "an array",
            JsonValue::Object(_) => "an object",
        }
    }

    /// The value as a `u64`, if it is a non-negative integer.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            JsonValue::Number(n) => n.as_u64(),
            _ => None,
        }
    }
}

/// Why the text was refused; offsets are byte offsets into the text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StrictJsonError {
    Syntax { offset: u64, what: String },
    Duplicate { key: String, offset: u64 },
    Depth { offset: u64, limit: u64 },
}

#[derive(Default)]
struct SideChannel {
    duplicate: Option<String>,
    too_deep: bool,
}

struct Seed<'s> {
    depth: u64,
    max_depth: u64,
    side: &'s RefCell<SideChannel>,
}

impl<'s> Seed<'s> {
    fn child(&self) -> Seed<'s> {
        Seed {
            depth: self.depth + 1,
            max_depth: self.max_depth,
            side: self.side,
        }
    }

    /// Arrays and objects count as one level each; the root is level 1.
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth > self.max_depth {
            self.side.borrow_mut().too_deep = true;
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = JsonValue;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<JsonValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
        serde_json::Number::from_f64(v)
            .map(JsonValue::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child())? {
            items.push(v);
        }
        Ok(JsonValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        self.enter()?;
        let mut members: Vec<(String, JsonValue)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                self.side.borrow_mut().duplicate = Some(key);
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(self.child())?;
            members.push((key, value));
        }
        Ok(JsonValue::Object(members))
    }
}

/// Byte offset of serde_json's 1-based line and (byte) column in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> u64 {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)) as u64
}

/// Parses `text` as exactly one JSON value (surrounding whitespace allowed).
pub(crate) fn parse(text: &str, max_depth: u64) -> Result<JsonValue, StrictJsonError> {
    let side = RefCell::new(SideChannel::default());
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Seed {
        depth: 1,
        max_depth,
        side: &side,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    result.map_err(|e| {
        let offset = offset_of(text, e.line(), e.column());
        let side = side.into_inner();
        if let Some(key) = side.duplicate {
            StrictJsonError::Duplicate { key, offset }
        } else if side.too_deep {
            StrictJsonError::Depth {
                offset,
                limit: max_depth,
            }
        } else {
            // serde_json appends " at line L column C"; the offset replaces it.
            let msg = e.to_string();
            let what = msg
                .rsplit_once(" at line ")
                .map_or(msg.as_str(), |(m, _)| m)
                .to_owned();
            StrictJsonError::Syntax { offset, what }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_refuses_duplicates() {
        let v = parse(r#" {"b": 1, "a": [true, null, "x", -2, 1.5]} "#, 8).unwrap();
        let JsonValue::Object(m) = v else { panic!() };
        assert_eq!(m[0].0, "b");
        assert_eq!(m[1].0, "a");
        let e = parse(r#"{"w": 1, "v": {"x": 1, "x": 2}}"#, 8).unwrap_err();
        assert!(
            matches!(e, StrictJsonError::Duplicate { ref key, offset } if key == "x" && offset > 20),
            "{e:?}"
        );
    }

    #[test]
    fn depth_and_syntax() {
        let deep = format!("{}{}", "[".repeat(10), "]".repeat(10));
        assert!(parse(&deep, 10).is_ok());
        assert!(matches!(
            parse(&deep, 9).unwrap_err(),
            StrictJsonError::Depth { limit: 9, .. }
        ));
        let e = parse("{\n  \"a\": 1,\n  \"b\": x}", 8).unwrap_err();
        assert!(
            matches!(e, StrictJsonError::Syntax { offset: 19, .. }),
            "{e:?}"
        );
        assert!(parse("{} {}", 8).is_err());
    }
}
