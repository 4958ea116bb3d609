//! Unit tests of `jwt`: the HMAC key from `SECRET_KEY`, stored HMAC keys, and stored
//! asymmetric keys ([`SigningKeyPair`]) signing and verifying as the service uses them.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const ISS: &str = "authctl";
const TTL: Duration = Duration::from_secs(60);

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with an arbitrary header and payload and an empty or given signature.
fn forged(header: &Value, claims: &AccessClaims, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string()),
        b64(serde_json::to_string(claims).unwrap())
    )
}

fn generated(alg: KeyAlgorithm) -> SigningKeyPair {
    SigningKeyPair::generate(alg).unwrap()
}

/// A key pair as the `signing_keys` table keeps it.
fn stored(pair: &SigningKeyPair, current: bool) -> StoredKey<'_> {
    StoredKey {
        kid: pair.kid(),
        alg: pair.algorithm().jwt(),
        private_key: pair.expose_pkcs8_der(),
        current,
    }
}

/// The set the service loads: `current` signs, `others` only verify.
fn loaded(current: &SigningKeyPair, others: &[&SigningKeyPair]) -> JwtKeys {
    let rows =
        std::iter::once(stored(current, true)).chain(others.iter().map(|p| stored(p, false)));
    JwtKeys::from_stored(rows, ISS, TTL).unwrap()
}

/// The pair's private key as jsonwebtoken takes it, to sign under headers that
/// [`SigningKeyPair::sign`] never writes.
fn encoding(pair: &SigningKeyPair) -> EncodingKey {
    match pair.algorithm() {
        KeyAlgorithm::EdDsa => EncodingKey::from_ed_der(pair.expose_pkcs8_der()),
        KeyAlgorithm::Es256 => EncodingKey::from_ec_der(pair.expose_pkcs8_der()),
    }
}

/// Claims of every member `issue` writes, expiring `exp_in` seconds from now.
fn claims(exp_in: i64) -> AccessClaims {
    let now = Utc::now().timestamp();
    AccessClaims {
        sub: "42".into(),
        iat: now,
        exp: now + exp_in,
        jti: Uuid::new_v4().to_string(),
        iss: ISS.into(),
        sid: FamilyId::new().0.to_string(),
        amr: vec!["pwd".into()],
        roles: Vec::new(),
        aud: None,
        scope: None,
    }
}

fn issue(set: &JwtKeys) -> String {
    set.issue(UserId(42), FamilyId::new(), Utc::now()).unwrap()
}

/// Verifies as a resource server does, with nothing but a public key and its algorithm.
fn verify_elsewhere(token: &str, key: &DecodingKey, alg: Algorithm) -> AccessClaims {
    let mut v = Validation::new(alg);
    v.set_issuer(&[ISS]);
    jsonwebtoken::decode::<AccessClaims>(token, key, &v)
        .unwrap()
        .claims
}

fn keys() -> JwtKeys {
    let key = SecretKey::parse("0123456789abcdef0123456789abcdef-test").unwrap();
    JwtKeys::new(&key, Algorithm::HS256, "authctl", Duration::from_secs(60))
}

#[test]
fn a_verified_token_is_remembered_but_its_expiry_is_checked_on_every_use() {
    use sha2::Digest;
    let k = keys();
    let t = k.issue(UserId(7), FamilyId::new(), Utc::now()).unwrap();
    let first = k.verify(&t).unwrap();
    assert_eq!(k.verify(&t).unwrap(), first);
    assert_eq!(k.verified.read().unwrap().len(), 1);
    // A remembered token past its expiry (and the leeway) is expired all the same.
    let digest: [u8; 32] = sha2::Sha256::digest(t.as_bytes()).into();
    let mut stale = first.clone();
    stale.0.exp = Utc::now().timestamp() - LEEWAY_SECS as i64 - 1;
    k.verified.write().unwrap().insert(digest, stale);
    assert_eq!(k.verify(&t), Err(JwtFailure::Expired));
    // Anything else is verified in full: a tampered token is not a cache hit.
    let tampered = format!("{t}x");
    assert_eq!(k.verify(&tampered), Err(JwtFailure::Invalid));
}

#[test]
fn issued_tokens_verify_and_carry_every_claim() {
    let k = keys();
    let fam = FamilyId::new();
    let t = k.issue(UserId(7), fam, Utc::now()).unwrap();
    let (c, kid) = k.verify(&t).unwrap();
    assert_eq!(kid, None);
    assert_eq!(c.user_id().unwrap(), UserId(7));
    assert_eq!(c.family_id().unwrap(), fam);
    assert_eq!(c.iss, "authctl");
    assert_eq!(c.exp - c.iat, 60);
    assert!(!c.jti.is_empty());
}

#[test]
fn stored_keys_sign_with_their_kid_and_only_the_legacy_key_takes_kid_less_tokens() {
    let secret = b"0123456789abcdef0123456789abcdef-stored";
    let stored = |kid: &'static str, current: bool| StoredKey {
        kid,
        alg: Algorithm::HS256,
        private_key: secret,
        current,
    };
    let ttl = Duration::from_secs(60);
    let set = JwtKeys::from_stored([stored("k1", true)], "authctl", ttl).unwrap();
    let t = set.issue(UserId(3), FamilyId::new(), Utc::now()).unwrap();
    assert_eq!(set.verify(&t).unwrap().1.as_deref(), Some("k1"));
    assert_eq!(set.current_kid(), Some("k1"));
    assert!(set.jwks().keys.is_empty(), "an HMAC key is never published");

    // The same secret without kid (a token from before rotation existed) verifies
    // only where that secret was imported as the legacy key.
    let static_set = JwtKeys::new(
        &SecretKey::parse(std::str::from_utf8(secret).unwrap()).unwrap(),
        Algorithm::HS256,
        "authctl",
        ttl,
    );
    let old = static_set
        .issue(UserId(3), FamilyId::new(), Utc::now())
        .unwrap();
    assert_eq!(set.verify(&old), Err(JwtFailure::Invalid));
    let legacy = JwtKeys::from_stored([stored(LEGACY_HMAC_KID, true)], "authctl", ttl).unwrap();
    // A kid-less token of the imported key is that key's token, under its kid, so
    // `/me`'s retired check finds the key's row.
    assert_eq!(
        legacy.verify(&old).unwrap().1.as_deref(),
        Some(LEGACY_HMAC_KID)
    );

    // A kid this set does not hold is reported distinctly, so the caller can reload.
    let other = JwtKeys::from_stored([stored("k2", true)], "authctl", ttl).unwrap();
    let t2 = other.issue(UserId(3), FamilyId::new(), Utc::now()).unwrap();
    assert_eq!(set.verify(&t2), Err(JwtFailure::UnknownKid("k2".into())));

    // A verify-only set (no current key) cannot sign.
    let verify_only = JwtKeys::from_stored([stored("k1", false)], "authctl", ttl).unwrap();
    assert!(verify_only.verify(&t).is_ok());
    assert!(
        verify_only
            .issue(UserId(3), FamilyId::new(), Utc::now())
            .is_err()
    );
}

#[test]
fn expired_tokens_are_refused_beyond_the_leeway() {
    let k = keys();
    let t = k
        .issue(
            UserId(1),
            FamilyId::new(),
            Utc::now() - chrono::Duration::seconds(70),
        )
        .unwrap();
    assert_eq!(k.verify(&t), Err(JwtFailure::Expired));
    assert!(k.verify_ignoring_expiry(&t).is_ok());
}

#[test]
fn alg_none_and_other_algorithms_are_refused() {
    let k = keys();
    let t = k.issue(UserId(1), FamilyId::new(), Utc::now()).unwrap();
    let parts: Vec<&str> = t.split('.').collect();
    let none_header = b64(r#"{"alg":"none","typ":"JWT"}"#);
    assert!(k.verify(&format!("{none_header}.{}.", parts[1])).is_err());
    let other = JwtKeys::new(
        &SecretKey::parse("0123456789abcdef0123456789abcdef-test").unwrap(),
        Algorithm::HS512,
        "authctl",
        Duration::from_secs(60),
    );
    let t512 = other.issue(UserId(1), FamilyId::new(), Utc::now()).unwrap();
    assert_eq!(k.verify(&t512), Err(JwtFailure::Invalid));
}

#[test]
fn tokens_from_another_issuer_or_key_are_refused() {
    let k = keys();
    let key = SecretKey::parse("0123456789abcdef0123456789abcdef-test").unwrap();
    let other_iss = JwtKeys::new(&key, Algorithm::HS256, "someone-else", TTL);
    assert_eq!(k.verify(&issue(&other_iss)), Err(JwtFailure::Invalid));
    let other_secret = SecretKey::parse("ffffffffffffffffffffffffffffffff-other").unwrap();
    let other_key = JwtKeys::new(&other_secret, Algorithm::HS256, ISS, TTL);
    assert_eq!(k.verify(&issue(&other_key)), Err(JwtFailure::Invalid));
}

#[test]
fn asymmetric_tokens_of_both_algorithms_round_trip_and_name_their_key() {
    for alg in KeyAlgorithm::ALL {
        let pair = generated(alg);
        let set = loaded(&pair, &[]);
        assert_eq!(set.current_kid(), Some(pair.kid()));
        let family = FamilyId::new();
        let token = set.issue(UserId(42), family, Utc::now()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, alg.jwt());
        assert_eq!(header.kid.as_deref(), Some(pair.kid()));
        let (c, kid) = set.verify(&token).unwrap();
        assert_eq!(kid.as_deref(), Some(pair.kid()), "{alg}");
        assert_eq!(c.user_id().unwrap(), UserId(42));
        assert_eq!(c.family_id().unwrap(), family);
        assert_eq!(c.exp - c.iat, 60);
    }
}

#[test]
fn an_independent_verifier_accepts_tokens_with_nothing_but_the_jwks_json() {
    for alg in KeyAlgorithm::ALL {
        let set = loaded(&generated(alg), &[]);
        let token = issue(&set);
        let published = serde_json::to_string(set.jwks()).unwrap();

        // What a resource server does: fetch the JSON, pick the key by kid, verify.
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&published).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).expect("the token's kid is in the JWKS");
        let alg_of_jwk = Algorithm::try_from(jwk.common.key_algorithm.unwrap()).unwrap();
        assert_eq!(alg_of_jwk, alg.jwt());
        let key = DecodingKey::from_jwk(jwk).unwrap();
        assert_eq!(verify_elsewhere(&token, &key, alg_of_jwk).sub, "42");
    }
}

#[test]
fn the_jwks_holds_exactly_the_published_members_and_no_private_part() {
    for alg in KeyAlgorithm::ALL {
        let pair = generated(alg);
        let doc: Value = serde_json::to_value(loaded(&pair, &[]).jwks()).unwrap();
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
        assert_eq!(key["kid"], pair.kid());
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
fn the_jwks_lists_the_current_key_first_then_the_others_by_kid() {
    let current = generated(KeyAlgorithm::Es256);
    let others: Vec<SigningKeyPair> = (0..4)
        .map(|i| generated(KeyAlgorithm::ALL[i % 2]))
        .collect();
    let hmac = StoredKey {
        kid: "hmac-key",
        alg: Algorithm::HS256,
        private_key: b"0123456789abcdef0123456789abcdef-hmac",
        current: false,
    };
    // The current key comes last from the table here, and an HMAC key is among them.
    let rows = others
        .iter()
        .map(|p| stored(p, false))
        .chain([hmac, stored(&current, true)]);
    let set = JwtKeys::from_stored(rows, ISS, TTL).unwrap();
    let mut expected: Vec<&str> = others.iter().map(SigningKeyPair::kid).collect();
    expected.sort_unstable();
    expected.insert(0, current.kid());
    let kids: Vec<&str> = set.jwks().keys.iter().map(|k| k.kid()).collect();
    assert_eq!(kids, expected);
}

#[test]
fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    for alg in KeyAlgorithm::ALL {
        let pair = generated(alg);
        let set = loaded(&pair, &[]);
        let jwk = pair.public_jwk();
        let json: Value = serde_json::to_value(jwk).unwrap();
        let x = json["x"].as_str().unwrap();
        let mut raw_public = URL_SAFE_NO_PAD.decode(x).unwrap();
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
            x.as_bytes().to_vec(),
        ];
        for hmac_key in candidates {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(pair.kid().to_owned());
            let secret = EncodingKey::from_secret(&hmac_key);
            let token = jsonwebtoken::encode(&header, &claims(60), &secret).unwrap();
            assert_eq!(set.verify(&token), Err(JwtFailure::Invalid), "{alg}");
        }
    }
}

#[test]
fn alg_none_is_refused_with_or_without_a_signature() {
    for alg in KeyAlgorithm::ALL {
        let pair = generated(alg);
        let set = loaded(&pair, &[]);
        let genuine = issue(&set);
        let signature = genuine.rsplit('.').next().unwrap();
        for header_alg in ["none", "None", "NONE"] {
            let header = serde_json::json!({"alg": header_alg, "typ": "JWT", "kid": pair.kid()});
            for sig in ["", signature] {
                let token = forged(&header, &claims(60), sig);
                assert_eq!(set.verify(&token), Err(JwtFailure::Invalid), "{alg}");
            }
        }
    }
}

#[test]
fn a_token_claiming_the_other_algorithm_for_a_known_kid_is_refused() {
    let ed = generated(KeyAlgorithm::EdDsa);
    let ec = generated(KeyAlgorithm::Es256);
    let set = loaded(&ed, &[&ec]);
    // Signed with the Ed25519 key but naming the P-256 key: the P-256 key only
    // accepts ES256, so the EdDSA header is refused before any signature check.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(ec.kid().to_owned());
    let token = jsonwebtoken::encode(&header, &claims(60), &encoding(&ed)).unwrap();
    assert_eq!(set.verify(&token), Err(JwtFailure::Invalid));
    // Claiming ES256 for that kid while carrying an Ed25519 signature fails too.
    let parts: Vec<&str> = token.split('.').collect();
    let es_header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": ec.kid()});
    let token = forged(&es_header, &claims(60), parts[2]);
    assert_eq!(set.verify(&token), Err(JwtFailure::Invalid));
}

#[test]
fn an_unknown_kid_is_reported_distinctly_and_a_missing_one_is_refused() {
    let current = generated(KeyAlgorithm::EdDsa);
    let set = loaded(&current, &[]);
    let stranger = generated(KeyAlgorithm::EdDsa);
    let token = stranger.sign(&claims(60)).unwrap();
    let unknown = |kid: &str| Err(JwtFailure::UnknownKid(kid.to_owned()));
    assert_eq!(set.verify(&token), unknown(stranger.kid()));
    assert!(!set.holds(Some(stranger.kid())));

    // Without kid a token can only be an HMAC one from before rotation existed; with
    // no legacy key in the set it is refused outright, without a reload.
    let no_kid = Header::new(Algorithm::EdDSA);
    let no_kid = jsonwebtoken::encode(&no_kid, &claims(60), &encoding(&current)).unwrap();
    assert_eq!(set.verify(&no_kid), Err(JwtFailure::Invalid));
    assert!(!set.holds(None));

    // The set does not judge a kid's shape or the header's algorithm (HMAC kids are
    // not thumbprints): any kid of at most 64 characters that it lacks may be a key
    // another replica has just made, so the caller may reload (the ReloadGate bounds
    // that). A longer kid is refused outright, as is what is no JWT at all.
    let with_kid = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims(60), key).unwrap()
    };
    let ed = encoding(&current);
    let odd = with_kid(Algorithm::EdDSA, "../../etc/passwd", &ed);
    assert_eq!(set.verify(&odd), unknown("../../etc/passwd"));
    let hmac = with_kid(
        Algorithm::HS256,
        stranger.kid(),
        &EncodingKey::from_secret(b"k"),
    );
    assert_eq!(set.verify(&hmac), unknown(stranger.kid()));
    let longest = "k".repeat(64);
    let at_limit = with_kid(Algorithm::EdDSA, &longest, &ed);
    assert_eq!(set.verify(&at_limit), unknown(&longest));
    let too_long = with_kid(Algorithm::EdDSA, &"k".repeat(65), &ed);
    assert_eq!(set.verify(&too_long), Err(JwtFailure::Invalid));
    assert_eq!(set.verify("not.a.jwt"), Err(JwtFailure::Invalid));
}

#[test]
fn tokens_of_the_previous_key_verify_after_a_rotation_until_it_is_dropped() {
    let old = generated(KeyAlgorithm::Es256);
    let old_token = issue(&loaded(&old, &[]));

    let new = generated(KeyAlgorithm::EdDsa);
    let after = loaded(&new, &[&old]);
    assert_eq!(
        after.verify(&old_token).unwrap().1.as_deref(),
        Some(old.kid())
    );
    let new_token = issue(&after);
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some(new.kid())
    );
    let kids: Vec<&str> = after.jwks().keys.iter().map(|k| k.kid()).collect();
    assert_eq!(kids, [new.kid(), old.kid()]);

    let dropped = loaded(&new, &[]);
    assert_eq!(
        dropped.verify(&old_token),
        Err(JwtFailure::UnknownKid(old.kid().to_owned()))
    );
    assert!(dropped.verify(&new_token).is_ok());
}

#[test]
fn a_key_loaded_from_its_pkcs8_row_verifies_what_the_generated_key_signed() {
    for alg in KeyAlgorithm::ALL {
        let original = generated(alg);
        // `from_stored` re-derives the key from the stored PKCS#8 bytes alone.
        let set = loaded(&original, &[]);
        let sent = claims(60);
        let token = original.sign(&sent).unwrap();
        assert_eq!(set.verify(&token).unwrap().0, sent, "{alg}");
        // And what the loaded key signs verifies against the original's JWK.
        let key = original.public_jwk().decoding_key().unwrap();
        assert_eq!(verify_elsewhere(&issue(&set), &key, alg.jwt()).sub, "42");
    }
}

#[test]
fn expired_asymmetric_tokens_are_reported_as_expired_and_still_inspectable() {
    for alg in KeyAlgorithm::ALL {
        let set = loaded(&generated(alg), &[]);
        let issued_ago = |secs| {
            let at = Utc::now() - chrono::Duration::seconds(secs);
            set.issue(UserId(42), FamilyId::new(), at).unwrap()
        };
        // Issued 120 s ago with a 60 s TTL: expired 60 s ago, beyond the leeway.
        let token = issued_ago(120);
        assert_eq!(set.verify(&token), Err(JwtFailure::Expired), "{alg}");
        assert_eq!(set.verify_ignoring_expiry(&token).unwrap().sub, "42");
        // Expired 2 s ago: within the leeway it still verifies.
        assert!(set.verify(&issued_ago(62)).is_ok(), "{alg}");
    }
}
