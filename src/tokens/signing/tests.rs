//! Unit tests of `signing`.

use super::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    iat: i64,
    exp: i64,
}

fn claims(ttl_secs: i64) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        sub: "42".into(),
        iss: "authctl".into(),
        iat: now,
        exp: now + ttl_secs,
    }
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = LEEWAY_SECS;
    v.validate_aud = false;
    v.set_issuer(&["authctl"]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    v
}

fn ring(alg: KeyAlgorithm) -> KeyRing {
    KeyRing::new(SigningKeyPair::generate(alg).unwrap(), [], &validation()).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with an arbitrary header and payload and an empty or given signature.
fn forged(header: &Value, claims: &Claims, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string()),
        b64(serde_json::to_string(claims).unwrap())
    )
}

#[test]
fn tokens_of_both_algorithms_round_trip_and_name_their_key() {
    for alg in KeyAlgorithm::ALL {
        let ring = ring(alg);
        let sent = claims(60);
        let token = ring.sign(&sent).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, alg.jwt());
        assert_eq!(header.kid.as_deref(), Some(ring.current().kid()));
        assert_eq!(ring.verify::<Claims>(&token).unwrap(), sent, "{alg}");
    }
}

#[test]
fn an_independent_verifier_accepts_tokens_with_nothing_but_the_jwks_json() {
    for alg in KeyAlgorithm::ALL {
        let ring = ring(alg);
        let token = ring.sign(&claims(60)).unwrap();
        let published = serde_json::to_string(&ring.jwks()).unwrap();

        // What a resource server does: fetch the JSON, pick the key by kid, verify.
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&published).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let jwk = set.find(&kid).expect("the token's kid is in the JWKS");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let alg_of_jwk = Algorithm::try_from(jwk.common.key_algorithm.unwrap()).unwrap();
        assert_eq!(alg_of_jwk, alg.jwt());
        let mut v = Validation::new(alg_of_jwk);
        v.set_issuer(&["authctl"]);
        let data = jsonwebtoken::decode::<Claims>(&token, &key, &v).unwrap();
        assert_eq!(data.claims.sub, "42");
    }
}

#[test]
fn the_jwks_holds_exactly_the_published_members_and_no_private_part() {
    for alg in KeyAlgorithm::ALL {
        let ring = ring(alg);
        let doc: Value = serde_json::to_value(ring.jwks()).unwrap();
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0].as_object().unwrap();
        let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
        members.sort_unstable();
        let expected: &[&str] = match alg {
            KeyAlgorithm::EdDsa => &["alg", "crv", "kid", "kty", "use", "x"],
            KeyAlgorithm::Es256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
        };
        assert_eq!(members, expected, "{alg}");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], alg.as_str());
        assert_eq!(key["kid"], ring.current().kid());
        let (kty, crv) = match alg {
            KeyAlgorithm::EdDsa => ("OKP", "Ed25519"),
            KeyAlgorithm::Es256 => ("EC", "P-256"),
        };
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some(kty), Some(crv))
        );
    }
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
fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    for alg in KeyAlgorithm::ALL {
        let ring = ring(alg);
        let jwk = ring.current().public_jwk();
        let json: Value = serde_json::to_value(jwk).unwrap();
        let mut raw_public = URL_SAFE_NO_PAD.decode(json["x"].as_str().unwrap()).unwrap();
        if let Some(y) = json["y"].as_str() {
            // The SEC1 uncompressed point, as a confused verifier might hold it.
            let mut point = vec![4u8];
            point.extend(&raw_public);
            point.extend(URL_SAFE_NO_PAD.decode(y).unwrap());
            raw_public = point;
        }
        let candidates = [
            raw_public,
            jwk.to_json().into_bytes(),
            jwk.x.clone().into_bytes(),
        ];
        for hmac_key in candidates {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(jwk.kid().to_owned());
            let token =
                jsonwebtoken::encode(&header, &claims(60), &EncodingKey::from_secret(&hmac_key))
                    .unwrap();
            assert_eq!(
                ring.verify::<Claims>(&token),
                Err(VerifyError::Invalid),
                "{alg}"
            );
        }
    }
}

#[test]
fn alg_none_is_refused_with_or_without_a_signature() {
    for alg in KeyAlgorithm::ALL {
        let ring = ring(alg);
        let kid = ring.current().kid();
        let genuine = ring.sign(&claims(60)).unwrap();
        let signature = genuine.rsplit('.').next().unwrap();
        for header_alg in ["none", "None", "NONE"] {
            let header = serde_json::json!({"alg": header_alg, "typ": "JWT", "kid": kid});
            for sig in ["", signature] {
                let token = forged(&header, &claims(60), sig);
                assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Invalid));
            }
        }
    }
}

#[test]
fn a_token_claiming_the_other_algorithm_for_a_known_kid_is_refused() {
    let ed = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
    let ec = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
    let ec_jwk = ec.public_jwk().clone();
    let ring = KeyRing::new(ed, [ec_jwk.clone()], &validation()).unwrap();
    // Signed with the Ed25519 key but naming the P-256 key: the P-256 key only
    // accepts ES256, so the EdDSA header is refused before any signature check.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(ec_jwk.kid().to_owned());
    let token = jsonwebtoken::encode(&header, &claims(60), &ring.current().encoding).unwrap();
    assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Invalid));
    // Claiming ES256 for that kid while carrying an Ed25519 signature fails too.
    let parts: Vec<&str> = token.split('.').collect();
    let es_header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": ec_jwk.kid()});
    let token = forged(&es_header, &claims(60), parts[2]);
    assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Invalid));
}

#[test]
fn an_unknown_kid_is_reported_distinctly_and_a_missing_one_is_refused() {
    let ring = ring(KeyAlgorithm::EdDsa);
    let stranger = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
    let token = stranger.sign(&claims(60)).unwrap();
    assert_eq!(
        ring.verify::<Claims>(&token),
        Err(VerifyError::UnknownKid(stranger.kid().to_owned()))
    );
    assert!(!ring.contains(stranger.kid()));

    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims(60),
        &ring.current().encoding,
    )
    .unwrap();
    assert_eq!(ring.verify::<Claims>(&no_kid), Err(VerifyError::MissingKid));

    // A kid that cannot be a thumbprint, or an HMAC token, never asks for a reload.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("../../etc/passwd".into());
    let odd = jsonwebtoken::encode(&header, &claims(60), &ring.current().encoding).unwrap();
    assert_eq!(ring.verify::<Claims>(&odd), Err(VerifyError::Invalid));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(stranger.kid().to_owned());
    let hmac = jsonwebtoken::encode(&header, &claims(60), &EncodingKey::from_secret(b"k")).unwrap();
    assert_eq!(ring.verify::<Claims>(&hmac), Err(VerifyError::Invalid));
    assert_eq!(
        ring.verify::<Claims>("not.a.jwt"),
        Err(VerifyError::Invalid)
    );
}

#[test]
fn tokens_of_the_previous_key_verify_after_a_rotation_until_it_is_dropped() {
    let old = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
    let old_jwk = old.public_jwk().clone();
    let before = KeyRing::new(old, [], &validation()).unwrap();
    let old_token = before.sign(&claims(60)).unwrap();

    let new = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
    let new_der = new.expose_pkcs8_der().to_vec();
    let after = KeyRing::new(new, [old_jwk.clone()], &validation()).unwrap();
    assert!(after.verify::<Claims>(&old_token).is_ok());
    let new_token = after.sign(&claims(60)).unwrap();
    let new_kid = after.current().kid().to_owned();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token).unwrap().kid,
        Some(new_kid.clone())
    );
    let kids: Vec<String> = after.jwks().keys.iter().map(|k| k.kid.clone()).collect();
    assert_eq!(kids, vec![new_kid, old_jwk.kid().to_owned()]);

    let new = SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, &new_der).unwrap();
    let dropped = KeyRing::new(new, [], &validation()).unwrap();
    assert_eq!(
        dropped.verify::<Claims>(&old_token),
        Err(VerifyError::UnknownKid(old_jwk.kid().to_owned()))
    );
    assert!(dropped.verify::<Claims>(&new_token).is_ok());
}

#[test]
fn pkcs8_der_round_trips_to_the_same_key() {
    for alg in KeyAlgorithm::ALL {
        let original = SigningKeyPair::generate(alg).unwrap();
        let reloaded = SigningKeyPair::from_pkcs8_der(alg, original.expose_pkcs8_der()).unwrap();
        assert_eq!(reloaded.public_jwk(), original.public_jwk());
        assert_eq!(reloaded.kid(), original.kid());
        // A token signed by the reloaded key verifies against the original's JWK.
        let ring = KeyRing::new(original, [], &validation()).unwrap();
        let token = reloaded.sign(&claims(60)).unwrap();
        assert!(ring.verify::<Claims>(&token).is_ok(), "{alg}");
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
fn expired_tokens_are_reported_as_expired_and_still_inspectable() {
    let ring = ring(KeyAlgorithm::EdDsa);
    let token = ring.sign(&claims(-60)).unwrap();
    assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Expired));
    assert_eq!(
        ring.verify_ignoring_expiry::<Claims>(&token).unwrap().sub,
        "42"
    );
    // Within the leeway it still verifies.
    let token = ring.sign(&claims(-2)).unwrap();
    assert!(ring.verify::<Claims>(&token).is_ok());
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
    let ring = KeyRing::new(key, [], &validation()).unwrap();
    assert_eq!(
        format!("{ring:?}"),
        format!(
            "KeyRing {{ current: SigningKeyPair {{ alg: EdDsa, kid: {kid:?}, .. }}, verifies: [{kid:?}] }}"
        )
    );
}
