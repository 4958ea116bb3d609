//! Unit tests of `filters`.

use super::*;

/// A body like register's: one free field, one with a content rule.
#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    #[serde(deserialize_with = "parsed")]
    email: Email,
}

impl Body for Sample {
    const FIELDS: &'static [Field] = &[Field::of::<String>("name"), Field::of::<Email>("email")];
}

/// The 422 of a body, whoever answers it.
fn refused(parsed: Result<Fields<Sample>, Error>) -> Error {
    match parsed {
        Ok(Ok(body)) => panic!("expected a 422, got {body:?}"),
        Ok(Err(e)) | Err(e) => e,
    }
}

fn fields(err: Error) -> Vec<(String, String)> {
    match err {
        Error::Validation(errors) => errors.into_iter().map(|e| (e.field, e.message)).collect(),
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[test]
fn a_valid_json_body_becomes_its_type_and_ignores_other_fields() {
    let body = br#"{"name": "n", "email": "a@example.com", "extra": 1}"#;
    let sample = parse_json::<Sample>(body).unwrap().unwrap();
    assert_eq!(sample.name, "n");
    assert_eq!(sample.email.as_str(), "a@example.com");
}

#[test]
fn a_mistyped_or_missing_field_is_reported_with_every_invalid_one() {
    let err = refused(parse_json::<Sample>(br#"{"name": 42, "email": "nope"}"#));
    let got = fields(err);
    assert_eq!(got[0], ("name".into(), "must be a string".into()));
    assert_eq!(got[1].0, "email");
    assert!(got[1].1.contains("valid email"), "{got:?}");
    let err = refused(parse_json::<Sample>(br#"{"email": null}"#));
    assert_eq!(
        fields(err),
        [
            ("name".into(), "field required".into()),
            ("email".into(), "must be a string".into())
        ]
    );
}

#[test]
fn malformed_json_is_400_and_a_non_object_422_on_the_body() {
    assert!(matches!(
        parse_json::<Sample>(b"{\"name\":"),
        Err(Error::MalformedBody(_))
    ));
    assert_eq!(
        fields(refused(parse_json::<Sample>(b"[1]"))),
        [("body".into(), "must be a JSON object".into())]
    );
}

fn parse_form_as<T: Body>(body: &[u8]) -> Result<Fields<T>, Error> {
    parse_form(body).map(|form| form.and_then(|f| f.body::<T>()))
}

#[test]
fn a_form_refuses_a_repeated_field_and_names_missing_ones() {
    let sample = parse_form_as::<Sample>(b"email=a%40example.com&name=x&scope=s")
        .unwrap()
        .unwrap();
    assert_eq!(sample.name, "x");
    assert_eq!(
        fields(refused(parse_form_as::<Sample>(
            b"email=a%40example.com&name=x&name=y&name=z&scope=1&scope=2"
        ))),
        [
            ("name".into(), "must be given once".into()),
            ("scope".into(), "must be given once".into())
        ]
    );
    assert_eq!(
        fields(refused(parse_form_as::<Sample>(b"grant_type=password"))),
        [
            ("name".into(), "field required".into()),
            ("email".into(), "field required".into())
        ]
    );
}

#[test]
fn invalid_content_is_the_endpoints_422_and_a_wrong_shape_the_filters() {
    // The endpoint answers (with its headers) when every field is a string...
    assert!(matches!(
        parse_json::<Sample>(br#"{"name": "n", "email": "nope"}"#),
        Ok(Err(Error::Validation(_)))
    ));
    assert!(matches!(
        parse_form_as::<Sample>(b"name=n"),
        Ok(Err(Error::Validation(_)))
    ));
    // ...the filter refuses a JSON field that is missing or not a string.
    assert!(matches!(
        parse_json::<Sample>(br#"{"name": "n"}"#),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        parse_json::<Sample>(br#"{"name": 1, "email": "a@example.com"}"#),
        Err(Error::Validation(_))
    ));
}

#[tokio::test]
async fn bearer_takes_the_token_of_the_bearer_scheme_only() {
    let presented = |header: Option<&'static str>| async move {
        let mut req = warp::test::request();
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        req.filter(&bearer())
            .await
            .unwrap()
            .map(|t| t.as_str().to_owned())
    };
    assert_eq!(presented(Some("Bearer abc")).await.as_deref(), Some("abc"));
    assert_eq!(
        presented(Some(" bEaReR   abc ")).await.as_deref(),
        Some("abc")
    );
    assert_eq!(presented(Some("Basic abc")).await, None);
    assert_eq!(presented(Some("Bearer ")).await, None);
    assert_eq!(presented(Some("Bearer")).await, None);
    assert_eq!(presented(None).await, None);
}

#[tokio::test]
async fn bearer_never_refuses_a_header_that_is_not_text() {
    let presented = |header: &'static [u8]| async move {
        warp::test::request()
            .header("authorization", HeaderValue::from_bytes(header).unwrap())
            .filter(&bearer())
            .await
            .unwrap()
            .map(|t| t.as_str().to_owned())
    };
    assert_eq!(presented(b"B\xe9arer abc").await, None);
    assert_eq!(presented(b"Basic \xff\xfe").await, None);
    // A Bearer token with such bytes is still a presented token, refused later.
    assert_eq!(
        presented(b"Bearer t\xc3\xb6k").await.as_deref(),
        Some("t\u{f6}k")
    );
}
