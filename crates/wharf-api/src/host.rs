//! Host names and node addresses as nodes declare them when they join: what the cluster
//! records and shows, so nothing else gets in (no escape sequences, no spaces, no empty host).

use std::net::IpAddr;

/// Whether `name` is an RFC 1123 host name: dot-separated labels of 1-63 ASCII letters,
/// digits and hyphens that neither start nor end with a hyphen, 253 characters at most.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not HOST:PORT")]
    Shape(String),
    #[error("{0:?} has no valid port (1-65535)")]
    Port(String),
    #[error("{0:?} names neither an IP address nor a valid host name")]
    Host(String),
    #[error("{0:?} is an unspecified address (0.0.0.0 or ::) that no other node can reach")]
    Unspecified(String),
}

/// The host and port of an address a node advertises: `IPv4:PORT`, `[IPv6]:PORT` or
/// `HOSTNAME:PORT` (RFC 1123), with a port from 1 to 65535 and a host others can reach.
pub fn parse_advertise(addr: &str) -> Result<(String, u16), AddressError> {
    let shown = || addr.chars().take(100).collect::<String>();
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| AddressError::Shape(shown()))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| AddressError::Port(shown()))?;
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => {
            Some(inner.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).map_err(|_| AddressError::Host(shown()))?)
        }
        None if host.contains(':') => return Err(AddressError::Shape(shown())),
        None => host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    };
    match ip {
        Some(ip) if ip.is_unspecified() => Err(AddressError::Unspecified(shown())),
        Some(_) => Ok((host.to_owned(), port)),
        None if valid_hostname(host) && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            Ok((host.to_owned(), port))
        }
        None => Err(AddressError::Host(shown())),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn host_names_follow_rfc_1123() {
        for good in ["a", "node-1", "worker7.example.com", "A1", "x".repeat(63).as_str()] {
            assert!(valid_hostname(good), "{good}");
        }
        let long = vec!["a".repeat(63); 4].join(".");
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a_b",
            "\u{1b}[31mred",
            "x".repeat(64).as_str(),
            long.as_str(),
            "é",
        ] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
    }

    #[test]
    fn advertised_addresses_name_a_reachable_host_and_a_port() {
        assert_eq!(parse_advertise("10.0.0.1:5000"), Ok(("10.0.0.1".into(), 5000)));
        assert_eq!(parse_advertise("[fd00::1]:443"), Ok(("[fd00::1]".into(), 443)));
        assert_eq!(parse_advertise("node-1.example:1"), Ok(("node-1.example".into(), 1)));
        for bad in [
            "not an address",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "host:+5",
            ":5000",
            "0.0.0.0:5000",
            "[::]:5000",
            "fd00::1:5000",
            "[fd00::zz]:1",
            "bad_host:5000",
            "999.1.1.1:5000",
            "\u{1b}[2J:5000",
        ] {
            assert!(parse_advertise(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_names_hold_no_control_or_space(s in "(?s).{0,40}") {
            if valid_hostname(&s) {
                prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
            }
            if let Ok((host, _)) = parse_advertise(&s) {
                prop_assert!(!host.chars().any(|c| c.is_control() || c.is_whitespace()));
            }
        }
    }
}
