//! The codes of the second factor, without state: RFC 6238 checks (which step a
//! code matched, for the replay rule), recovery codes (60 random bits, Crockford
//! base32, as typed and as stored), the digests, and the `otpauth://` URI's encoding.

use chrono::Utc;
use sha2::{Digest as _, Sha256};

use super::RECOVERY_CODES;
use crate::error::{Error, Result};
use crate::store::mfa::Digest;

const STEP_SECONDS: u64 = 30;
/// Crockford's base32: no I, L, O, U.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RECOVERY_CHARS: usize = 12;

pub(super) fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

pub(super) fn totp(secret: &[u8]) -> Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|e| Error::Internal(anyhow::anyhow!("a stored TOTP secret is unusable: {e}")))
}

/// The step a 6-digit `code` matches (previous, current or next), if any.
pub(super) fn matched_step(secret: &[u8], code: &str) -> Result<Option<i64>> {
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
    let step = totp(secret)?.check(code.trim(), now);
    Ok(step.and_then(|s| i64::try_from(s).ok()))
}

pub(super) fn is_totp_code(code: &str) -> bool {
    let code = code.trim();
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// A recovery code as typed (any case, dashes and spaces, O for 0, I/L for 1) in its
/// canonical form; `None` if it cannot be one.
pub(super) fn normalize_recovery(code: &str) -> Option<String> {
    let canonical: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    (canonical.len() == RECOVERY_CHARS && canonical.bytes().all(|b| CROCKFORD.contains(&b)))
        .then_some(canonical)
}

/// A new set of recovery codes and their digests.
pub(super) fn new_recovery_codes() -> (Vec<String>, Vec<Digest>) {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 8];
            rand::fill(&mut bytes);
            let bits = u64::from_le_bytes(bytes);
            let chars: String = (0..RECOVERY_CHARS)
                .map(|i| char::from(CROCKFORD[((bits >> (5 * i)) & 31) as usize]))
                .collect();
            let digest = sha256(chars.as_bytes());
            let shown = format!("{}-{}-{}", &chars[..4], &chars[4..8], &chars[8..]);
            (shown, digest)
        })
        .unzip()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub(super) fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn base32(bytes: &[u8]) -> String {
    totp_rs::Secret::from(bytes.to_vec()).to_base32()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (the 8-digit vectors, read as 6 digits: the last 6).
    #[test]
    fn codes_match_the_rfc_6238_vectors() {
        let t = totp(b"12345678901234567890").unwrap();
        for (time, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(t.generate(time).to_string(), code[2..], "at {time}");
            assert_eq!(t.check(&code[2..], time), Some(time / 30));
        }
    }

    #[test]
    fn recovery_codes_are_ten_distinct_12_char_codes_that_normalize_back() {
        let (codes, digests) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for (code, digest) in codes.iter().zip(&digests) {
            assert_eq!(code.len(), 14);
            let canonical = normalize_recovery(&code.to_lowercase()).unwrap();
            assert_eq!(sha256(canonical.as_bytes()), *digest);
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        assert_eq!(normalize_recovery("123456"), None);
        assert_eq!(
            normalize_recovery("OOOO-IIII-LLLL").unwrap(),
            "000011111111"
        );
    }

    #[test]
    fn the_uri_encodes_issuer_and_username() {
        assert_eq!(uri_encode("https://a.b/c d"), "https%3A%2F%2Fa.b%2Fc%20d");
        assert_eq!(uri_encode("alice.b-c_d"), "alice.b-c_d");
    }
}
