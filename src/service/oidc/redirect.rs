//! Redirect URIs (SPEC §18): registered ones are checked when a client is added, and a
//! requested one matches a registered one only as the exact same string — no prefix,
//! no wildcard, no added port, slash, query or case change — except that a loopback
//! `http://127.0.0.1/…` or `http://[::1]/…` registration matches any port (RFC 8252
//! §7.3), and only the port.

use url::Url;

/// Checks a URI an operator registers: absolute, no fragment, no userinfo; `https`,
/// a loopback `http`, or a private-use scheme with a dot (RFC 8252 §7.1, `com.example.app:/cb`).
pub fn check_registered(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment (RFC 6749 §3.1.2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{uri:?} has userinfo"));
    }
    if url.as_str() != uri && url.as_str() != format!("{uri}/") {
        // Registered as the parser reads it, so what is compared is what a browser sends.
        return Err(format!(
            "{uri:?} is not in normal form (it reads as {:?})",
            url.as_str()
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "{uri:?}: plain http is only for a loopback host (127.0.0.1, [::1], localhost)"
        )),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(format!(
            "{uri:?}: the scheme must be https, http on loopback, or a reverse-domain private scheme"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Whether `requested` matches one of `registered` (see the module comment).
pub fn matches(registered: &[String], requested: &str) -> bool {
    registered
        .iter()
        .any(|r| r == requested || loopback_any_port(r, requested))
}

/// RFC 8252 §7.3: for `http://127.0.0.1/…` and `http://[::1]/…` (IP literals, not
/// `localhost`, §8.3) the port may differ; everything else must be the same.
fn loopback_any_port(registered: &str, requested: &str) -> bool {
    let (Ok(reg), Ok(mut req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    let ip_loopback = matches!(
        reg.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(reg.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    if reg.scheme() != "http" || !ip_loopback || reg.port().is_some() {
        return false;
    }
    // The requested string itself must be in normal form: no tricks the parser hides.
    if req.as_str() != requested || !req.username().is_empty() || req.password().is_some() {
        return false;
    }
    if req.set_port(None).is_err() {
        return false;
    }
    req.as_str() == reg.as_str()
}

/// The origin a form may send the browser on to (the CSP `form-action` source).
pub fn origin_source(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    match url.scheme() {
        "http" | "https" => {
            let host = url.host_str()?;
            let loopback_any = url.scheme() == "http" && host != "localhost" && is_loopback(&url);
            Some(match url.port() {
                _ if loopback_any => format!("http://{host}:*"),
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            })
        }
        scheme => Some(format!("{scheme}:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(uris: &[&str]) -> Vec<String> {
        uris.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_the_exact_string_matches() {
        let r = reg(&["https://app.example/cb"]);
        assert!(matches(&r, "https://app.example/cb"));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb/evil",
            "https://app.example/cbx",
            "https://app.example:443/cb",
            "https://app.example:444/cb",
            "https://APP.example/cb",
            "https://app.example/cb?x=1",
            "https://app.example/cb#f",
            "https://app.example@evil.example/cb",
            "https://evil.example/?https://app.example/cb",
            "http://app.example/cb",
            "https://app.example.evil.example/cb",
            "https://app.example/CB",
            "https://app.example/./cb",
            "https://app.example/%63b",
        ] {
            assert!(!matches(&r, bad), "{bad} must not match");
        }
    }

    #[test]
    fn loopback_ip_registrations_match_any_port_and_nothing_else() {
        let r = reg(&["http://127.0.0.1/cb", "http://[::1]/cb"]);
        assert!(matches(&r, "http://127.0.0.1:51234/cb"));
        assert!(matches(&r, "http://127.0.0.1/cb"));
        assert!(matches(&r, "http://[::1]:8080/cb"));
        for bad in [
            "http://127.0.0.1:51234/cb/",
            "http://127.0.0.1:51234/cb?x",
            "http://127.0.0.2:5/cb",
            "http://localhost:5/cb",
            "https://127.0.0.1:5/cb",
            "http://user@127.0.0.1:5/cb",
            "http://127.0.0.1:5/other",
            "http://127.0.0.1:05/cb",
        ] {
            assert!(!matches(&r, bad), "{bad} must not match");
        }
        // A registration with a port is exact, port included.
        let r = reg(&["http://127.0.0.1:8080/cb"]);
        assert!(!matches(&r, "http://127.0.0.1:8081/cb"));
    }

    #[test]
    fn registration_refuses_what_cannot_be_matched_safely() {
        assert!(check_registered("https://app.example/cb").is_ok());
        assert!(check_registered("http://127.0.0.1/cb").is_ok());
        assert!(check_registered("com.example.app:/cb").is_ok());
        for bad in [
            "/cb",
            "https://app.example/cb#x",
            "https://u:p@app.example/cb",
            "http://app.example/cb",
            "javascript:alert(1)",
            "https://APP.example/cb",
            "https://app.example:443/cb",
        ] {
            assert!(check_registered(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn form_action_sources() {
        assert_eq!(
            origin_source("https://app.example/cb").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(
            origin_source("http://127.0.0.1/cb").as_deref(),
            Some("http://127.0.0.1:*")
        );
        assert_eq!(
            origin_source("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
    }
}
