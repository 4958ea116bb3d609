//! Who a request came from (SPEC §6, "Client IP, precisely"), from the socket peer
//! and the `X-Forwarded-For` lines that trusted proxies added: the client's full
//! address ([`client_addr`]), which the audit log and the sessions list record (SPEC
//! §10), and the rate-limit key derived from it ([`client_key`]), which counts every
//! address of an IPv6 network as one client.
//!
//! Pure functions, so that every rule is tested with a table and with arbitrary
//! input: the lines count in order as if comma-joined; an entry may carry a port
//! (`203.0.113.7:5678`, `[2001:db8::1]:443`); IPv4-mapped IPv6 addresses are IPv4
//! addresses; the walk goes from the right and stops at the first hop that is not a
//! trusted proxy; an IPv6 client is keyed by its network (`/ipv6_prefix`), since
//! anyone with a /64 has 2^64 addresses. An entry that is not an address stops the
//! walk at the nearest trusted hop, so garbage can never mint a fresh key per value.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// The key `peer`'s request is limited under: [`client_addr`], an IPv6 address cut
/// to its `/ipv6_prefix` network.
pub fn client_key<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str, IntoIter: DoubleEndedIterator>,
    trusted: &[IpNet],
    ipv6_prefix: u8,
) -> IpAddr {
    key_of(client_addr(peer, forwarded_for, trusted), ipv6_prefix)
}

/// The client's full address: the peer, or the nearest hop of `X-Forwarded-For` that
/// is not a trusted proxy. `forwarded_for` holds every `X-Forwarded-For` header line
/// in the order received; it is read only when the peer is in `trusted`. An
/// IPv4-mapped address comes back as the IPv4 address.
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str, IntoIter: DoubleEndedIterator>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let mut client = canonical(peer);
    if is_trusted(client) {
        // Right to left over the lines, and within each line over its entries: the
        // same order as one comma-joined line.
        let hops = forwarded_for
            .into_iter()
            .rev()
            .flat_map(|line| line.rsplit(','));
        for hop in hops {
            let Some(ip) = parse_hop(hop) else {
                // Not an address: the nearest trusted hop answers for it.
                break;
            };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` entry as an address: bare (`203.0.113.7`, `2001:db8::1`),
/// with a port (`203.0.113.7:5678`, `[2001:db8::1]:443`) or bracketed without one.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|sa| sa.ip()))
        .or_else(|| {
            hop.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(canonical(ip))
}

/// `::ffff:10.0.0.1` is `10.0.0.1`: it must match IPv4 CIDRs and share the IPv4 key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// IPv4 addresses are their own key; IPv6 ones are keyed by their network.
pub fn key_of(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let prefix = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_key_follows_the_spec_table() {
        let proxies = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // (peer, header lines, expected key)
        let cases: &[(&str, &[&str], &str)] = &[
            // Untrusted peers are the client, whatever they claim.
            ("198.51.100.9", &["203.0.113.7"], "198.51.100.9"),
            // A trusted peer's header names the client.
            ("10.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            ("10.0.0.1", &[], "10.0.0.1"),
            // Every line counts, in order: a proxy that adds its own line wins over
            // the line the client sent itself.
            ("10.0.0.1", &["6.6.6.6", "203.0.113.7"], "203.0.113.7"),
            (
                "10.0.0.1",
                &["6.6.6.6", "203.0.113.7, 10.0.0.2"],
                "203.0.113.7",
            ),
            (
                "10.0.0.1",
                &["6.6.6.6, 5.5.5.5", "10.0.0.3", "10.0.0.2"],
                "5.5.5.5",
            ),
            // Ports and brackets.
            ("10.0.0.1", &["203.0.113.7:5678"], "203.0.113.7"),
            ("10.0.0.1", &["[2001:db8::1]:443"], "2001:db8::"),
            ("10.0.0.1", &["[2001:db8::1]"], "2001:db8::"),
            ("10.0.0.1", &["10.0.0.2:80, 198.51.100.1:1"], "198.51.100.1"),
            // IPv4-mapped peers and hops match IPv4 CIDRs and share the IPv4 key.
            ("::ffff:10.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            ("::ffff:198.51.100.9", &[], "198.51.100.9"),
            ("10.0.0.1", &["::ffff:203.0.113.7"], "203.0.113.7"),
            ("10.0.0.1", &["203.0.113.7, ::ffff:10.0.0.9"], "203.0.113.7"),
            // IPv6 clients are keyed by their /64.
            ("2001:db8:1:2:3:4:5:6", &[], "2001:db8:1:2::"),
            ("2001:db8:ffff::1", &["2001:db8:7:8::9"], "2001:db8:7:8::"),
            // Garbage stops the walk at the nearest trusted hop.
            ("10.0.0.1", &["garbage"], "10.0.0.1"),
            ("10.0.0.1", &["203.0.113.7, garbage, 10.0.0.2"], "10.0.0.2"),
            ("10.0.0.1", &["unknown"], "10.0.0.1"),
            ("10.0.0.1", &["203.0.113.7,"], "10.0.0.1"),
            ("10.0.0.1", &["1.2.3.4.5"], "10.0.0.1"),
            ("10.0.0.1", &["[10.0.0.5]"], "10.0.0.1"),
        ];
        for (peer, lines, want) in cases {
            let got = client_key(ip(peer), lines.iter().copied(), &proxies, 64);
            assert_eq!(got, ip(want), "peer {peer}, lines {lines:?}");
        }
    }

    #[test]
    fn the_full_address_is_the_key_before_the_ipv6_network_cut() {
        let proxies = nets(&["10.0.0.0/8"]);
        let cases: &[(&str, &[&str], &str)] = &[
            ("10.0.0.1", &["2001:db8::1234"], "2001:db8::1234"),
            ("10.0.0.1", &["[2001:db8:7:8::9]:443"], "2001:db8:7:8::9"),
            ("2001:db8:1:2:3:4:5:6", &[], "2001:db8:1:2:3:4:5:6"),
            ("10.0.0.1", &["203.0.113.7:5678"], "203.0.113.7"),
            ("::ffff:198.51.100.9", &[], "198.51.100.9"),
            ("198.51.100.9", &["2001:db8::1"], "198.51.100.9"),
        ];
        for (peer, lines, want) in cases {
            let full = client_addr(ip(peer), lines.iter().copied(), &proxies);
            assert_eq!(full, ip(want), "peer {peer}, lines {lines:?}");
            assert_eq!(
                key_of(full, 64),
                client_key(ip(peer), lines.iter().copied(), &proxies, 64)
            );
        }
    }

    #[test]
    fn the_ipv6_prefix_is_configurable_and_clamped() {
        let peer = ip("2001:db8:1:2:3:4:5:6");
        assert_eq!(client_key(peer, [], &[], 48), ip("2001:db8:1::"));
        assert_eq!(client_key(peer, [], &[], 128), peer);
        assert_eq!(client_key(peer, [], &[], 200), peer);
        assert_eq!(client_key(peer, [], &[], 0), ip("::"));
    }

    /// An `X-Forwarded-For` entry: often an address, sometimes anything at all.
    fn hop() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
            any::<Ipv6Addr>().prop_map(|a| a.to_string()),
            (any::<Ipv6Addr>(), any::<u16>()).prop_map(|(a, p)| format!("[{a}]:{p}")),
            (any::<std::net::Ipv4Addr>(), any::<u16>()).prop_map(|(a, p)| format!("{a}:{p}")),
            ".{0,40}",
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            peer in any::<IpAddr>(),
            lines in proptest::collection::vec(".{0,80}", 0..5),
            structured in proptest::collection::vec(hop(), 0..6),
            prefix in any::<u8>(),
        ) {
            let proxies = nets(&["0.0.0.0/0", "::/0"]);
            let joined = structured.join(",");
            let all: Vec<&str> = lines.iter().map(String::as_str).chain([joined.as_str()]).collect();
            let _ = client_key(peer, all.iter().copied(), &proxies, prefix);
            let _ = client_key(peer, all.iter().copied(), &[], prefix);
        }

        #[test]
        fn garbage_entries_never_create_a_fresh_key(
            garbage in proptest::collection::vec("[^,]{0,30}", 1..50),
        ) {
            // Behind a trusted proxy, a client sending anything that is not an address
            // ends up under the proxy's key: one key, however many values it tries.
            let proxies = nets(&["10.0.0.0/8"]);
            let keys: HashSet<IpAddr> = garbage
                .iter()
                .filter(|g| parse_hop(g).is_none())
                .map(|g| client_key(ip("10.0.0.1"), [g.as_str(), "10.0.0.2"], &proxies, 64))
                .collect();
            prop_assert!(keys.len() <= 1, "{keys:?}");
            prop_assert!(keys.iter().all(|k| *k == ip("10.0.0.2")));
        }
    }
}
