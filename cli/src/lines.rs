//! The JSON Lines of `export` and `import` (docs/cli.md): one object a
//! key, `{"key": K, "value": TEXT}` for a value that is UTF-8, else
//! `{"key": K, "value_base64": B64}`, and `"ttl_ms": N` for a key that
//! expires. Byte for byte: importing what an export wrote stores the same
//! values.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// One line's key, value and remaining ttl.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    pub ttl_ms: Option<u64>,
}

pub fn encode(key: &str, value: &[u8], ttl_ms: Option<u64>) -> String {
    let mut line = Map::new();
    line.insert("key".into(), json!(key));
    match std::str::from_utf8(value) {
        Ok(text) => line.insert("value".into(), json!(text)),
        Err(_) => line.insert("value_base64".into(), json!(BASE64.encode(value))),
    };
    if let Some(ttl_ms) = ttl_ms {
        line.insert("ttl_ms".into(), json!(ttl_ms));
    }
    Value::Object(line).to_string()
}

pub fn decode(line: &str) -> Result<Record, String> {
    let Value::Object(mut line) = serde_json::from_str(line).map_err(|e| e.to_string())? else {
        return Err("not a JSON object".into());
    };
    let key = match line.remove("key") {
        Some(Value::String(key)) => key,
        _ => return Err("no \"key\" string".into()),
    };
    let value = match (line.remove("value"), line.remove("value_base64")) {
        (Some(Value::String(text)), None) => text.into_bytes(),
        (None, Some(Value::String(b64))) => BASE64
            .decode(b64)
            .map_err(|e| format!("{key}: value_base64: {e}"))?,
        _ => {
            return Err(format!(
                "{key}: one of \"value\" or \"value_base64\", a string"
            ))
        }
    };
    let ttl_ms = match line.remove("ttl_ms") {
        None | Some(Value::Null) => None,
        Some(ttl) => Some(
            ttl.as_u64()
                .filter(|&ms| ms > 0)
                .ok_or_else(|| format!("{key}: ttl_ms is not a positive integer"))?,
        ),
    };
    if let Some(unknown) = line.keys().next() {
        return Err(format!("{key}: unknown member {unknown:?}"));
    }
    Ok(Record { key, value, ttl_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_text_bytes_and_ttls() {
        for (value, ttl) in [
            (&b"plain text"[..], None),
            (&b""[..], Some(5)),
            (&[0xff, 0, b'"', 0x80][..], None),
            ("é \n \" \\".as_bytes(), Some(u64::MAX)),
        ] {
            let line = encode("k:ey", value, ttl);
            let record = decode(&line).unwrap();
            assert_eq!(
                record,
                Record {
                    key: "k:ey".into(),
                    value: value.to_vec(),
                    ttl_ms: ttl
                }
            );
        }
        assert!(encode("k", &[0xff], None).contains("value_base64"));
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, why) in [
            ("[1]", "not a JSON object"),
            (r#"{"value": "v"}"#, "no \"key\""),
            (r#"{"key": "k"}"#, "one of"),
            (
                r#"{"key": "k", "value": "v", "value_base64": "dg=="}"#,
                "one of",
            ),
            (r#"{"key": "k", "value_base64": "!"}"#, "value_base64"),
            (r#"{"key": "k", "value": "v", "ttl_ms": -1}"#, "ttl_ms"),
            (r#"{"key": "k", "value": "v", "ttl_ms": 0}"#, "ttl_ms"),
            (r#"{"key": "k", "value": "v", "extra": 1}"#, "unknown"),
        ] {
            let err = decode(line).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}
