//! Unit tests of `signing`. Signing and verifying tokens with these keys is tested
//! against the verifier the service uses, in `jwt/tests.rs`.

use super::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn the_kid_of_the_rfc_8037_example_key_is_its_published_thumbprint() {
    // RFC 8037 Appendix A.1 (private key d), A.2 (public key x), A.3 (thumbprint).
    let d = URL_SAFE_NO_PAD
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .unwrap();
    let seed: [u8; 32] = d.try_into().unwrap();
    let der = ed25519_dalek::SigningKey::from_bytes(&seed)
        .to_pkcs8_der()
        .unwrap();
    let key = SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, der.as_bytes()).unwrap();
    let jwk: Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
    assert_eq!(jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn the_es256_kid_is_the_sha256_of_the_canonical_members_in_lexical_order() {
    let key = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
    let jwk: Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
    // RFC 7638 §3.2: required members only, sorted, no whitespace.
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    assert_eq!(key.kid(), b64(Sha256::digest(canonical.as_bytes())));
}

#[test]
fn pkcs8_der_round_trips_to_the_same_key() {
    for alg in KeyAlgorithm::ALL {
        let original = SigningKeyPair::generate(alg).unwrap();
        let reloaded = SigningKeyPair::from_pkcs8_der(alg, original.expose_pkcs8_der()).unwrap();
        assert_eq!(reloaded.public_jwk(), original.public_jwk());
        assert_eq!(reloaded.kid(), original.kid());
    }
    let ed = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
    let ec = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
    assert!(SigningKeyPair::from_pkcs8_der(KeyAlgorithm::Es256, ed.expose_pkcs8_der()).is_err());
    assert!(SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, ec.expose_pkcs8_der()).is_err());
    assert!(SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, b"not a key").is_err());
    // Two generated keys are different keys.
    let other = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
    assert_ne!(other.kid(), ed.kid());
}

#[test]
fn a_stored_jwk_parses_back_and_a_tampered_one_is_refused() {
    for alg in KeyAlgorithm::ALL {
        let key = SigningKeyPair::generate(alg).unwrap();
        let json = key.public_jwk().to_json();
        assert_eq!(&PublicJwk::parse(&json).unwrap(), key.public_jwk());

        let other = SigningKeyPair::generate(alg).unwrap();
        let mut swapped: Value = serde_json::from_str(&json).unwrap();
        swapped["kid"] = other.kid().into();
        assert!(PublicJwk::parse(&swapped.to_string()).is_err(), "{alg} kid");

        let mut wrong_use: Value = serde_json::from_str(&json).unwrap();
        wrong_use["use"] = "enc".into();
        assert!(
            PublicJwk::parse(&wrong_use.to_string()).is_err(),
            "{alg} use"
        );

        let mut short: Value = serde_json::from_str(&json).unwrap();
        short["x"] = "AAAA".into();
        assert!(PublicJwk::parse(&short.to_string()).is_err(), "{alg} x");
    }
    let ed = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
    let mut as_ec: Value = serde_json::from_str(&ed.public_jwk().to_json()).unwrap();
    as_ec["alg"] = "ES256".into();
    assert!(PublicJwk::parse(&as_ec.to_string()).is_err());
}

#[test]
fn a_previous_key_expires_one_ttl_plus_leeway_after_its_rotation() {
    let rotated = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let expiry = previous_key_expiry(rotated, Duration::from_secs(1800));
    assert_eq!((expiry - rotated).num_seconds(), 1800 + 5);
    assert_eq!(
        previous_key_expiry(rotated, Duration::MAX),
        DateTime::<Utc>::MAX_UTC
    );
}

#[test]
fn the_reload_gate_opens_at_most_once_a_second() {
    let gate = ReloadGate::new();
    assert!(gate.try_acquire());
    assert!(!gate.try_acquire());
    assert!(!gate.try_acquire());
    std::thread::sleep(Duration::from_millis(1100));
    assert!(gate.try_acquire());
}

#[test]
fn grace_secrets_are_fresh_256_bit_values() {
    let a = generate_grace_secret();
    let b = generate_grace_secret();
    assert_eq!(a.expose_secret().len(), 43);
    assert_eq!(URL_SAFE_NO_PAD.decode(a.expose_secret()).unwrap().len(), 32);
    assert_ne!(a.expose_secret(), b.expose_secret());
}

#[test]
fn names_parse_back_and_hmac_algorithms_are_not_asymmetric() {
    for alg in KeyAlgorithm::ALL {
        assert_eq!(alg.as_str().parse::<KeyAlgorithm>().unwrap(), alg);
        assert_eq!(KeyAlgorithm::try_from(alg.jwt()).unwrap(), alg);
    }
    assert!(matches!(
        KeyAlgorithm::try_from(Algorithm::HS256),
        Err(KeyError::NotAsymmetric(Algorithm::HS256))
    ));
    assert!("RS256".parse::<KeyAlgorithm>().is_err());
    for state in [KeyState::Current, KeyState::Previous, KeyState::Retired] {
        assert_eq!(state.as_str().parse::<KeyState>().unwrap(), state);
    }
    assert!("active".parse::<KeyState>().is_err());
}

#[test]
fn debug_output_shows_the_kid_but_no_key_material() {
    let key = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
    let kid = key.kid().to_owned();
    assert_eq!(
        format!("{key:?}"),
        format!("SigningKeyPair {{ alg: EdDsa, kid: {kid:?}, .. }}")
    );
}
