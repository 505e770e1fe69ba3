//! Small shared helpers.

/// Serialize a `Duration` as whole milliseconds.
pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A duration written as whole seconds (`30`) or with a unit: `500ms`, `30s`, `5m`, `2h`.
pub(crate) fn parse_duration(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    let (num, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (v, 1000)
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(unit_ms).map(std::time::Duration::from_millis)
}

/// A size in bytes: `1000`, or with a binary unit `64KiB`, `256MiB`, `1GiB` (also `K`,
/// `M`, `G`).
pub(crate) fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A value that must never be printed: passwords, secret keys, tokens.
///
/// ```
/// let s = tributary::Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A URL with any password replaced by `***`. Text that is not a valid URL is redacted
/// too: in every `scheme://user:password@` inside it the password becomes `***`, so a
/// malformed URL in an error message never carries its password.
///
/// ```
/// assert_eq!(tributary::redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
/// assert_eq!(tributary::redact_url("mysql://root:pw@[bad/test"), "mysql://root:***@[bad/test");
/// assert_eq!(tributary::redact_url("no url here"), "no url here");
/// ```
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => redact_text(url),
    }
}

/// `text` with the password of every `scheme://user:password@host` in it replaced by
/// `***`, whether or not the URL is valid.
pub(crate) fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority runs to the first blank; its userinfo to the last `@` in it
        // (a password may hold an unencoded `@` or `/`).
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(c) => {
                        out.push_str(&userinfo[..c]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}
