//! Trusted proxies (TRUSTED_PROXIES): the only peers whose `X-Forwarded-For`,
//! `x-client-id` and TRUSTED_PROXY_HEADER are believed. From anyone else those
//! headers are whatever the client chose, and are ignored.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::parse_cidr;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn parse(cidrs: &[String]) -> Result<TrustedProxies, String> {
        Ok(TrustedProxies(cidrs.iter().map(|c| parse_cidr(c)).collect::<Result<_, _>>()?))
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy with an
    /// `X-Forwarded-For`; then the rightmost address in it that is not a trusted
    /// proxy (the leftmost entries are the client's to write, so are never taken
    /// past an untrusted one).
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return canonical(peer);
        }
        let Some(header) = forwarded_for else { return canonical(peer) };
        let mut chain = header.split(',').map(str::trim).rev();
        let mut last = canonical(peer);
        for hop in chain.by_ref() {
            let Ok(ip) = hop.parse::<IpAddr>() else { return last };
            let ip = canonical(ip);
            if !self.trusts(ip) {
                return ip;
            }
            last = ip;
        }
        last
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(proxies.client_address(ip("192.0.2.9"), Some("1.2.3.4")), ip("192.0.2.9"));
        assert_eq!(proxies.client_address(ip("10.1.1.1"), Some("6.6.6.6, 1.2.3.4, 10.2.2.2")), ip("1.2.3.4"));
        assert_eq!(proxies.client_address(ip("10.1.1.1"), Some("garbage, 1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(proxies.client_address(ip("10.1.1.1"), Some("10.3.3.3, garbage")), ip("10.1.1.1"));
        assert_eq!(proxies.client_address(ip("10.1.1.1"), None), ip("10.1.1.1"));
        assert!(proxies.trusts(ip("::ffff:127.0.0.1")) && !proxies.trusts(ip("127.0.0.2")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }
}
