//! The JSON documents the commands print. Built from structs of their own
//! (not the library's types), so each document has exactly its contract's
//! fields, in a readable order (`run_id` first).

use std::io::Write;

use runonce::{Record, Triggered};
use serde::Serialize;

/// A document ready to print: compact JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doc(String);

impl Doc {
    /// Serializes `v` compactly.
    pub(crate) fn new<T: Serialize + ?Sized>(v: &T) -> Doc {
        Doc(serde_json::to_string(v).expect("output documents always serialize"))
    }

    /// A human-readable text, printed as is (for `stats` and `inspect`).
    pub(crate) fn text(s: String) -> Doc {
        Doc(s)
    }

    /// Prints the document and a newline on stdout.
    pub(crate) fn print(&self) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(self.0.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// `{"run_id","cached","key","expires_in_ms"}`; `key` and `expires_in_ms`
/// are `null` for a trigger without a key.
#[derive(Debug, Serialize)]
pub(crate) struct TriggerOut {
    run_id: String,
    cached: bool,
    key: Option<String>,
    expires_in_ms: Option<u64>,
}

impl From<&Triggered> for TriggerOut {
    fn from(t: &Triggered) -> Self {
        TriggerOut {
            run_id: t.run_id.clone(),
            cached: t.cached,
            key: t.key.map(|k| k.to_hex()),
            expires_in_ms: t.expires_in_ms,
        }
    }
}

/// `{"run_id","state","expires_in_ms","has_fingerprint"}`.
#[derive(Debug, Serialize)]
pub(crate) struct RecordOut {
    run_id: String,
    state: &'static str,
    expires_in_ms: u64,
    has_fingerprint: bool,
}

impl From<&Record> for RecordOut {
    fn from(r: &Record) -> Self {
        RecordOut {
            run_id: r.run_id.clone(),
            state: r.state.as_str(),
            expires_in_ms: r.expires_in_ms,
            has_fingerprint: r.has_fingerprint,
        }
    }
}

/// `{"changed":bool}`.
#[derive(Debug, Serialize)]
pub(crate) struct Changed {
    /// Whether the record changed.
    pub(crate) changed: bool,
}

/// One answer of `runonce batch`: like `trigger`'s, or
/// `{"error":{"kind","message"}}`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum BatchItemOut {
    /// The item was triggered.
    Ok(TriggerOut),
    /// The item failed alone.
    Err {
        /// What went wrong.
        error: ItemError,
    },
}

/// Why a batch item failed.
#[derive(Debug, Serialize)]
pub(crate) struct ItemError {
    /// A machine-readable kind, e.g. `invalid_key`.
    pub(crate) kind: String,
    /// What went wrong and what to do.
    pub(crate) message: String,
}

impl BatchItemOut {
    /// A failed item.
    pub(crate) fn error(kind: &str, message: &str) -> Self {
        BatchItemOut::Err {
            error: ItemError {
                kind: kind.to_owned(),
                message: message.to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_order_and_nulls() {
        let t = TriggerOut {
            run_id: "run_1".into(),
            cached: false,
            key: None,
            expires_in_ms: None,
        };
        assert_eq!(
            Doc::new(&t).0,
            r#"{"run_id":"run_1","cached":false,"key":null,"expires_in_ms":null}"#
        );
        assert_eq!(
            Doc::new(&[BatchItemOut::error("invalid_ttl", "bad")]).0,
            r#"[{"error":{"kind":"invalid_ttl","message":"bad"}}]"#
        );
        assert_eq!(Doc::new(&Option::<RecordOut>::None).0, "null");
    }
}
