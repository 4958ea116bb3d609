//! Property tests for every parser of outside input (issue 12): arbitrary input never
//! panics, and valid values round-trip. The database URL's redaction has its own in
//! `src/store/url.rs`, the client-IP function in `src/http/client_ip.rs`.

use authctl::config::{dotenv, parse_duration, types::parse_origin};
use authctl::domain::{Email, Password, UserId, UserRef, Username};
use authctl::http::filters::{self, Body, Field, parsed};
use authctl::tokens::RefreshToken;
use base64::Engine;
use proptest::prelude::*;

/// A body like register's: free text and two fields with content rules.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    #[serde(deserialize_with = "parsed")]
    email: Email,
    #[serde(deserialize_with = "parsed")]
    username: Username,
}

impl Body for Sample {
    const FIELDS: &'static [Field] = &[
        Field::of::<String>("name"),
        Field::of::<Email>("email"),
        Field::of::<Username>("username"),
    ];
}

fn valid_email() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,12}(\\.[a-z0-9+]{1,8})?@[a-z0-9]{1,12}(-[a-z0-9]{1,5})?\\.[a-z]{2,6}"
}

fn valid_username() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{3,32}".prop_filter("not all digits", |s| !s.bytes().all(|b| b.is_ascii_digit()))
}

/// Runs a body filter on `body` as a POST with `content_type`.
fn run_filter(json: bool, body: Vec<u8>) -> Option<Result<Sample, authctl::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let request = warp::test::request()
            .method("POST")
            .header("content-length", body.len().to_string())
            .body(body);
        if json {
            request
                .header("content-type", "application/json")
                .filter(&filters::json::<Sample>())
                .await
                .ok()
        } else {
            request
                .header("content-type", "application/x-www-form-urlencoded")
                .filter(&filters::form::<Sample>())
                .await
                .ok()
        }
    })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_a_parser(raw in "\\PC{0,300}|.{0,40}") {
        let _ = Email::parse(&raw);
        let _ = Username::parse(&raw);
        let _ = Password::parse(&raw);
        let _ = RefreshToken::parse(&raw);
        let _ = raw.parse::<UserRef>();
        let _ = parse_duration(&raw);
        let _ = parse_origin(&raw);
        let _ = dotenv::parse(&raw);
    }

    #[test]
    fn valid_emails_round_trip(raw in valid_email()) {
        let email = Email::parse(&raw).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        prop_assert_eq!(email.as_str(), raw.as_str());
        prop_assert_eq!(email.normalized(), raw.to_lowercase());
    }

    #[test]
    fn valid_usernames_round_trip_and_all_digit_ones_are_refused(
        raw in valid_username(),
        digits in "[0-9]{3,32}",
    ) {
        let name = Username::parse(&raw).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        prop_assert_eq!(name.as_str(), raw.as_str());
        prop_assert_eq!(name.normalized(), raw.to_ascii_lowercase());
        prop_assert!(Username::parse(&digits).is_err());
        // A username is never read as an id on the command line.
        prop_assert_eq!(raw.parse::<UserRef>().ok(), Some(UserRef::Username(raw.to_ascii_lowercase())));
    }

    #[test]
    fn passwords_of_8_characters_to_256_bytes_round_trip(raw in "[^\\x00]{8,72}") {
        // The parser takes up to Argon2id's 256 bytes; bcrypt's 72-byte limit is the
        // policy's (SPEC §16), applied where the configured algorithm is known.
        match Password::parse(&raw) {
            Ok(p) => {
                prop_assert!(raw.len() <= Password::MAX_BYTES);
                prop_assert_eq!(p.expose(), raw.as_str());
            }
            Err(_) => prop_assert!(raw.len() > Password::MAX_BYTES, "{:?} refused", raw),
        }
    }

    #[test]
    fn ids_round_trip_as_user_refs(id in 0i64..=i64::MAX) {
        prop_assert_eq!(id.to_string().parse::<UserRef>(), Ok(UserRef::Id(UserId(id))));
    }

    #[test]
    fn refresh_tokens_of_32_bytes_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let token = RefreshToken::parse(&raw).ok_or_else(|| TestCaseError::fail(raw.clone()))?;
        prop_assert_eq!(token.expose(), raw.as_str());
        // One character more or less is no token.
        prop_assert!(RefreshToken::parse(&raw[1..]).is_none());
        let longer = format!("{}A", raw);
        prop_assert!(RefreshToken::parse(&longer).is_none());
    }

    #[test]
    fn durations_round_trip_through_their_text(secs in 1u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
        let d = std::time::Duration::new(secs, nanos);
        let text = humantime::format_duration(d).to_string();
        prop_assert_eq!(parse_duration(&text), Ok(d));
    }

    #[test]
    fn origins_round_trip_lower_cased(
        scheme in "https?",
        host in "[A-Za-z0-9]{1,20}(\\.[A-Za-z]{2,6}){0,2}",
        port in proptest::option::of(1u16..),
    ) {
        let raw = match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        };
        prop_assert_eq!(parse_origin(&raw), Ok(raw.to_ascii_lowercase()));
    }

    #[test]
    fn arbitrary_bodies_never_panic_the_body_filters(body in proptest::collection::vec(any::<u8>(), 0..300), json in any::<bool>()) {
        let _ = run_filter(json, body);
    }

    #[test]
    fn arbitrary_json_objects_never_panic_and_valid_ones_round_trip(
        name in "\\PC{0,20}",
        email in valid_email(),
        username in valid_username(),
        noise in "\\PC{0,20}",
    ) {
        let body = serde_json::json!({"name": name, "email": email, "username": username, "x": noise});
        let got = run_filter(true, body.to_string().into_bytes());
        let sample = match got {
            Some(Ok(s)) => s,
            other => return Err(TestCaseError::fail(format!("{body}: {other:?}"))),
        };
        prop_assert_eq!(&sample.name, &name);
        prop_assert_eq!(sample.email.as_str(), email.as_str());
        prop_assert_eq!(sample.username.as_str(), username.as_str());
    }

    #[test]
    fn valid_forms_round_trip(
        name in "\\PC{0,20}",
        email in valid_email(),
        username in valid_username(),
    ) {
        let body = serde_urlencoded::to_string([("name", &name), ("email", &email), ("username", &username)])
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = run_filter(false, body.clone().into_bytes());
        let sample = match got {
            Some(Ok(s)) => s,
            other => return Err(TestCaseError::fail(format!("{body}: {other:?}"))),
        };
        prop_assert_eq!(&sample.name, &name);
        prop_assert_eq!(sample.email.as_str(), email.as_str());
        prop_assert_eq!(sample.username.as_str(), username.as_str());
    }
}
