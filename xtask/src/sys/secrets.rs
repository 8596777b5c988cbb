//! Secrets: passwords generated per session from the OS's random source, and never
//! shown: in what xtask prints or writes, passwords in database URLs are replaced by
//! `***`, in single URLs and in free text such as log tails.

use std::io::Read as _;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

/// `bytes` random bytes from the OS.
pub fn random_bytes(bytes: usize) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| anyhow::anyhow!("reading /dev/urandom: {e}"))?;
    Ok(buf)
}

/// `bytes` random bytes from the OS, as lowercase hex (safe in URLs and shell words).
pub fn random_token(bytes: usize) -> anyhow::Result<String> {
    Ok(random_bytes(bytes)?.iter().map(|b| format!("{b:02x}")).collect())
}

/// The SCRAM-SHA-256 secret PostgreSQL keeps for `password` (RFC 5802, RFC 7677), in the
/// form `ALTER ROLE .. PASSWORD` takes in place of the password itself:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, each part base64.
/// `password` must be ASCII without control characters, which SASLprep leaves as it is
/// (xtask's passwords are hex).
pub fn scram_sha256_secret(password: &str, salt: &[u8], iterations: u32) -> String {
    debug_assert!(password.bytes().all(|b| b.is_ascii_graphic()), "not printable ASCII");
    let hmac = |key: &[u8], data: &[&[u8]]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        for part in data {
            mac.update(part);
        }
        mac.finalize().into_bytes()
    };
    // Hi(): PBKDF2-HMAC-SHA-256, one block.
    let mut block = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()]);
    let mut salted = block;
    for _ in 1..iterations {
        block = hmac(password.as_bytes(), &[&block]);
        salted.iter_mut().zip(block.iter()).for_each(|(acc, b)| *acc ^= b);
    }
    let stored_key = Sha256::digest(hmac(&salted, &[b"Client Key"]));
    let server_key = hmac(&salted, &[b"Server Key"]);
    let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        base64(salt),
        base64(&stored_key),
        base64(&server_key)
    )
}

/// The password in a URL's userinfo, if it has one.
pub fn password_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let at = url[start..].rfind('@')?;
    let userinfo = &url[start..start + at];
    userinfo.split_once(':').map(|(_, password)| password).filter(|p| !p.is_empty())
}

/// The URL with its password (in the userinfo or a `password=` parameter) replaced by `***`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        // The userinfo ends at the last `@`, not at the first `/`: a password may hold an
        // unencoded `/`, `?` or `@`, and hiding too much beats showing a password.
        if let Some(at) = out[start..].rfind('@')
            && let Some(colon) = out[start..start + at].find(':')
        {
            out.replace_range(start + colon + 1..start + at, "***");
        }
    }
    if let Some(query_start) = out.find('?') {
        let query: Vec<String> = out[query_start + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.replace_range(query_start + 1.., &query.join("&"));
    }
    out
}

/// Redacts every URL password in free text (log tails we print may quote URLs).
pub fn redact_text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match word.find("://") {
            Some(at) => {
                let start = word[..at]
                    .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '+')
                    .map(|i| i + 1)
                    .unwrap_or(0);
                out.push_str(&word[..start]);
                out.push_str(&redact(&word[start..]));
            }
            None => out.push_str(word),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_url_is_found() {
        assert_eq!(password_of("postgres://u:s3cret@h:5432/db"), Some("s3cret"));
        assert_eq!(password_of("postgres://u@h/db"), None);
        assert_eq!(password_of("http://127.0.0.1:8080"), None);
    }

    #[test]
    fn tokens_are_hex_of_the_asked_length_and_differ() {
        let a = random_token(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_token(16).unwrap());
    }

    /// Expected values from another implementation (Python's `hashlib.pbkdf2_hmac` and
    /// `hmac`); the salt is RFC 7677's example.
    #[test]
    fn scram_secrets_match_an_independent_implementation() {
        let salt = base64::engine::general_purpose::STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==");
        let salt = salt.unwrap();
        assert_eq!(
            scram_sha256_secret("pencil", &salt, 4096),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==\
             $WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=\
             :wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        assert_eq!(
            scram_sha256_secret("pencil", &salt, 1),
            "SCRAM-SHA-256$1:W22ZaJ0SNY7soEsUEjb6gQ==\
             $bzcn5wYzlcMpEXczzDM1iuyLhni5BVbqsm82vjMHWXI=\
             :fg/vS0Y425LcbLGWSqdzrFlRn9451QblzgpwLQYoXCI="
        );
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            scram_sha256_secret("0123456789abcdef0123456789abcdef", &salt, 1),
            "SCRAM-SHA-256$1:AAECAwQFBgcICQoLDA0ODw==\
             $u7IM7xH8q9rwPHGqXrjqUgqWN69neo+1jPUuE5YUUlQ=\
             :QTiSC4TdmjFR32/ogjSoUqlV08On3pAQdlgAhJ7Svbc="
        );
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(redact("postgres://u:s3cret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=x&sslmode=off"),
            "postgres://h/db?user=u&password=***&sslmode=off"
        );
        assert_eq!(redact("postgresql://u:p@ss@h/db"), "postgresql://u:***@h/db");
        assert_eq!(redact("postgres://u:se/cr?et@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://h:5432/db?sslmode=off"), "postgres://h:5432/db?sslmode=off");
        assert_eq!(
            redact_text(
                "connecting to database=\"postgres://app:pw@db:5432/x\" failed\nnext http://h/"
            ),
            "connecting to database=\"postgres://app:***@db:5432/x\" failed\nnext http://h/"
        );
    }
}
