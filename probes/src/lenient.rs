//! Tolerant readers for fields of OONI's data that vary between versions.
//!
//! OONI's probes wrote the same keys in different shapes over the years: Go
//! marshals empty slices and maps as `null`, older probes left keys out, and
//! header values or bodies that are not UTF-8 are written as
//! `{"format":"base64","data":...}`. These helpers are used with
//! `#[serde(default, deserialize_with = ...)]` so one model reads them all.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::records::BinaryData;

/// Reads `null` as the type's default (an empty list, map or string, zero).
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One value as OONI may write it where text is expected.
#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Text(String),
    // Before `Binary`: a struct also deserialises from a sequence.
    List(Vec<Loose>),
    Binary(BinaryData),
    Number(serde_json::Number),
    Bool(bool),
    Null(()),
}

impl Loose {
    /// The value as text: base64 decoded (lossy UTF-8), numbers and
    /// booleans written out, a list's first value; `None` for null.
    fn into_text(self) -> Option<String> {
        match self {
            Loose::Text(s) => Some(s),
            Loose::Binary(b) => Some(String::from_utf8_lossy(&b.decode()).into_owned()),
            Loose::Number(n) => Some(n.to_string()),
            Loose::Bool(b) => Some(b.to_string()),
            Loose::List(v) => v.into_iter().find_map(Loose::into_text),
            Loose::Null(()) => None,
        }
    }
}

/// A map of names to text (headers, annotations): `null` is empty; values
/// may be strings, base64 objects, numbers, booleans or lists (first value);
/// null values are left out.
pub fn text_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<BTreeMap<String, Loose>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| v.into_text().map(|v| (k, v)))
        .collect())
}

/// HTTP headers as a map: like [`text_map`], with names lower-cased (as
/// hyper gives them to our probe), so `Location` and `location` are one.
pub fn header_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<BTreeMap<String, Loose>>::deserialize(d)?.unwrap_or_default();
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        if let Some(v) = v.into_text() {
            out.entry(k.to_ascii_lowercase()).or_insert(v);
        }
    }
    Ok(out)
}

/// OONI's `headers_list`: `[[name, value], ...]` where a value may be a
/// base64 object; `null` is empty; malformed pairs are left out.
pub fn header_pairs<'de, D>(d: D) -> Result<Vec<(String, String)>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<Vec<Vec<Loose>>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|pair| {
            let mut it = pair.into_iter();
            let name = it.next()?.into_text()?;
            let value = it.next().and_then(Loose::into_text).unwrap_or_default();
            Some((name, value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    struct T {
        #[serde(default, deserialize_with = "null_as_default")]
        list: Vec<u32>,
        #[serde(default, deserialize_with = "text_map")]
        map: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "header_pairs")]
        pairs: Vec<(String, String)>,
    }

    #[test]
    fn reads_nulls_missing_keys_and_base64_values() {
        let t: T = serde_json::from_str(r#"{"list":null,"map":null,"pairs":null}"#).unwrap();
        assert!(t.list.is_empty() && t.map.is_empty() && t.pairs.is_empty());
        let t: T = serde_json::from_str("{}").unwrap();
        assert!(t.list.is_empty());
        let t: T = serde_json::from_str(
            r#"{"map":{"a":"x","b":{"format":"base64","data":"eHl6"},"c":null,"d":["1","2"],"e":3},
                "pairs":[["a","x"],["b",{"format":"base64","data":"eHl6"}],["c"],[]]}"#,
        )
        .unwrap();
        let want: BTreeMap<String, String> = [("a", "x"), ("b", "xyz"), ("d", "1"), ("e", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(t.map, want);
        assert_eq!(
            t.pairs,
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "xyz".into()),
                ("c".into(), String::new())
            ]
        );
    }
}
