//! The SSRF guard: which addresses webhookd may connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::Uri;
use ipnet::IpNet;

use crate::secure::error::SecureError;

pub(crate) const MAX_URL_LEN: usize = 2048;

/// Refuses internal addresses unless an operator allowed their range.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    allowed: Vec<IpNet>,
}

impl Guard {
    pub(crate) fn new(allowed: Vec<IpNet>) -> Self {
        Guard { allowed }
    }

    /// `Err(kind)` when the address is internal and not allowed (`internal`'s kind).
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match internal(ip) {
            Some(kind) => Err(kind),
            None => Ok(()),
        }
    }
}

/// What kind of internal address this is, if any, with its article as refusals say it
/// ("an unspecified" address).
pub(crate) fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback")
    } else if ip.is_private() {
        Some("a private")
    } else if ip.is_link_local() {
        Some("a link-local")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("a CGNAT")
    } else if ip.is_multicast() {
        Some("a multicast")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("an unspecified")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("a reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol assignment")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    if ip.is_loopback() {
        Some("a loopback")
    } else if ip.is_unspecified() {
        Some("an unspecified")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a unique local (ULA)")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("a site-local")
    } else if ip.is_multicast() {
        Some("a multicast")
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 embeds an IPv4 address in the last 32 bits.
        internal_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else if s[0] == 0x2002 {
        // 6to4 embeds an IPv4 address in bits 16..48.
        internal_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else if s[..6] == [0, 0, 0, 0, 0, 0] {
        Some("an IPv4-compatible")
    } else {
        None
    }
}

/// Checks a URL's form: scheme, no user-info, a host, the length, and literal-IP targets.
pub(crate) fn check_url(raw: &str, allow_http: bool, guard: &Guard) -> Result<Uri, SecureError> {
    if raw.len() > MAX_URL_LEN {
        return Err(SecureError::UrlTooLong(MAX_URL_LEN));
    }
    let uri: Uri = raw
        .parse()
        .map_err(|_| SecureError::UrlInvalid(raw.to_string()))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => return Err(SecureError::UrlHttp),
        _ => return Err(SecureError::UrlNotHttps),
    }
    let authority = uri.authority().ok_or(SecureError::UrlNoHost)?;
    if authority.as_str().contains('@') {
        return Err(SecureError::UrlUserInfo);
    }
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(SecureError::UrlNoHost);
    }
    if let Some(ip) = literal_ip(host) {
        guard.check(ip).map_err(SecureError::UrlBlocked)?;
    }
    Ok(uri)
}

/// The IP of a URL host that is an address literal (`1.2.3.4` or `[::1]`).
pub(crate) fn literal_ip(host: &str) -> Option<std::net::IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        Guard::default().check(s.parse().unwrap()).is_err()
    }

    #[test]
    fn a_refusal_names_the_kind_with_its_article() {
        let said = |url: &str| {
            check_url(url, true, &Guard::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            said("http://0.0.0.0/"),
            "url targets an unspecified address, which is not allowed"
        );
        assert_eq!(
            said("http://[::127.0.0.1]/"),
            "url targets an IPv4-compatible address, which is not allowed"
        );
        assert_eq!(
            said("http://192.0.0.1/"),
            "url targets an IETF protocol assignment address, which is not allowed"
        );
        assert_eq!(
            said("http://[fd00::1]/"),
            "url targets a unique local (ULA) address, which is not allowed"
        );
        assert_eq!(
            said("http://127.0.0.1/"),
            "url targets a loopback address, which is not allowed"
        );
    }

    #[test]
    fn internal_targets_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(blocked(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_targets_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
        ] {
            assert!(!blocked(ip), "{ip} should pass");
        }
    }

    #[test]
    fn allowed_cidrs_open_a_range() {
        let g = Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(g.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.check("10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn urls_must_be_https_without_userinfo() {
        let g = Guard::default();
        assert!(check_url("https://example.com/hook", false, &g).is_ok());
        assert!(check_url("http://example.com/hook", false, &g).is_err());
        assert!(check_url("http://example.com/hook", true, &g).is_ok());
        assert!(check_url("https://u:p@example.com/", false, &g).is_err());
        assert!(check_url("ftp://example.com/", false, &g).is_err());
        assert!(check_url("/relative", false, &g).is_err());
        assert!(check_url("https://127.0.0.1/", false, &g).is_err());
        assert!(check_url("https://[::1]/", false, &g).is_err());
        assert!(check_url("https://169.254.169.254/latest", false, &g).is_err());
    }
}
