//! Which peer addresses an allocation may reach.
//!
//! Denied by default: every address that reaches the relay host itself or a network behind it
//! (loopback, unspecified, RFC 1918, CGNAT, link-local including the cloud metadata address,
//! multicast, broadcast and reserved IPv4, IPv6 ULA and link-local), including IPv6 forms that
//! embed such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4). An explicit
//! allow-list in the configuration overrides the deny-list (tests allow loopback).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::Error;

/// An IP network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A network from an address and a prefix length; host bits are ignored.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, Error> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::Config("prefix length longer than the address"));
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside this network (same family only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| Error::Config("not an ip network"))?;
        let prefix = match prefix {
            Some(p) => p
                .parse()
                .map_err(|_| Error::Config("not a prefix length"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix)
    }
}

/// Why a peer address was denied; also the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// 127.0.0.0/8 or ::1.
    Loopback,
    /// 0.0.0.0/8 or ::.
    Unspecified,
    /// RFC 1918 private networks.
    Private,
    /// 100.64.0.0/10.
    SharedAddressSpace,
    /// 169.254.0.0/16 (including 169.254.169.254) or fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255 and the rest of 240.0.0.0/4.
    BroadcastOrReserved,
    /// fc00::/7 and the deprecated site-local fec0::/10.
    UniqueLocal,
    /// 192.0.0.0/24, 198.18.0.0/15 and the documentation ranges.
    SpecialPurpose,
}

impl DenyReason {
    /// A short stable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Unspecified => "unspecified",
            Self::Private => "private",
            Self::SharedAddressSpace => "cgnat",
            Self::LinkLocal => "link_local",
            Self::Multicast => "multicast",
            Self::BroadcastOrReserved => "reserved",
            Self::UniqueLocal => "unique_local",
            Self::SpecialPurpose => "special_purpose",
        }
    }
}

/// The peer-address policy.
#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    allow: Vec<IpNet>,
}

impl PeerPolicy {
    /// The default policy plus an explicit allow-list.
    pub fn with_allowed(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// `Ok` if the relay may send to `ip`, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), DenyReason> {
        if self.allow.iter().any(|net| net.contains(ip)) {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => check_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => {
                    if self.allow.iter().any(|net| net.contains(IpAddr::V4(v4))) {
                        return Ok(());
                    }
                    check_v4(v4)
                }
                None => check_v6(v6),
            },
        }
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), DenyReason> {
    let [a, b, c, _] = ip.octets();
    Err(match (a, b, c) {
        (0, ..) => DenyReason::Unspecified,
        (127, ..) => DenyReason::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => DenyReason::Private,
        (100, 64..=127, _) => DenyReason::SharedAddressSpace,
        (169, 254, _) => DenyReason::LinkLocal,
        (224..=239, ..) => DenyReason::Multicast,
        (240..=255, ..) => DenyReason::BroadcastOrReserved,
        (192, 0, 0) | (192, 0, 2) | (198, 18..=19, _) | (198, 51, 100) | (203, 0, 113) => {
            DenyReason::SpecialPurpose
        }
        _ => return Ok(()),
    })
}

fn check_v6(ip: Ipv6Addr) -> Result<(), DenyReason> {
    let bits = u128::from(ip);
    let first = (bits >> 112) as u16;
    Err(if bits == 0 {
        DenyReason::Unspecified
    } else if bits == 1 {
        DenyReason::Loopback
    } else if first & 0xFE00 == 0xFC00 || first & 0xFFC0 == 0xFEC0 {
        DenyReason::UniqueLocal
    } else if first & 0xFFC0 == 0xFE80 {
        DenyReason::LinkLocal
    } else if first & 0xFF00 == 0xFF00 {
        DenyReason::Multicast
    } else if first == 0x2001 && (bits >> 96) as u16 == 0x0db8 {
        DenyReason::SpecialPurpose
    } else {
        return Ok(());
    })
}

/// The IPv4 address an IPv6 address stands for, when it has one of the forms that routes to it:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4
/// `2002:aabb:ccdd::`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    let high96 = bits >> 32;
    if high96 == 0xFFFF || (high96 == 0 && bits > 1) || high96 == 0x0064_FF9B_0000_0000_0000_0000 {
        return Some(low);
    }
    if (bits >> 112) as u16 == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(policy: &PeerPolicy, ip: &str) -> Option<DenyReason> {
        policy.check(ip.parse().unwrap()).err()
    }

    #[test]
    fn every_denied_class_is_denied_in_every_form() {
        let policy = PeerPolicy::default();
        let cases = [
            ("127.0.0.1", DenyReason::Loopback),
            ("127.255.255.254", DenyReason::Loopback),
            ("0.0.0.0", DenyReason::Unspecified),
            ("0.1.2.3", DenyReason::Unspecified),
            ("10.0.0.1", DenyReason::Private),
            ("172.16.0.1", DenyReason::Private),
            ("172.31.255.255", DenyReason::Private),
            ("192.168.1.1", DenyReason::Private),
            ("100.64.0.1", DenyReason::SharedAddressSpace),
            ("100.127.255.255", DenyReason::SharedAddressSpace),
            ("169.254.169.254", DenyReason::LinkLocal),
            ("169.254.0.1", DenyReason::LinkLocal),
            ("224.0.0.251", DenyReason::Multicast),
            ("239.255.255.250", DenyReason::Multicast),
            ("255.255.255.255", DenyReason::BroadcastOrReserved),
            ("240.0.0.1", DenyReason::BroadcastOrReserved),
            ("192.0.0.8", DenyReason::SpecialPurpose),
            ("198.18.0.1", DenyReason::SpecialPurpose),
        ];
        for (v4, reason) in cases {
            assert_eq!(denied(&policy, v4), Some(reason), "{v4}");
            let ip: Ipv4Addr = v4.parse().unwrap();
            let mapped = ip.to_ipv6_mapped().to_string();
            assert_eq!(denied(&policy, &mapped), Some(reason), "{mapped}");
            let [a, b, c, d] = ip.octets();
            let nat64 = format!("64:ff9b::{a}.{b}.{c}.{d}");
            assert_eq!(denied(&policy, &nat64), Some(reason), "{nat64}");
            let six_to_four = format!("2002:{:02x}{:02x}:{:02x}{:02x}::1", a, b, c, d);
            assert_eq!(denied(&policy, &six_to_four), Some(reason), "{six_to_four}");
            if u32::from(ip) > 1 {
                let compatible = ip.to_ipv6_compatible().to_string();
                assert_eq!(denied(&policy, &compatible), Some(reason), "{compatible}");
            }
        }
        let v6 = [
            ("::", DenyReason::Unspecified),
            ("::1", DenyReason::Loopback),
            ("fc00::1", DenyReason::UniqueLocal),
            ("fd12:3456::1", DenyReason::UniqueLocal),
            ("fec0::1", DenyReason::UniqueLocal),
            ("fe80::1", DenyReason::LinkLocal),
            ("febf::1", DenyReason::LinkLocal),
            ("ff02::1", DenyReason::Multicast),
            ("2001:db8::1", DenyReason::SpecialPurpose),
        ];
        for (ip, reason) in v6 {
            assert_eq!(denied(&policy, ip), Some(reason), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let policy = PeerPolicy::default();
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.1.1",
            "223.255.255.255",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert_eq!(denied(&policy, ip), None, "{ip}");
        }
    }

    #[test]
    fn allow_list_overrides_including_mapped_forms() {
        let policy = PeerPolicy::with_allowed(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(denied(&policy, "127.0.0.1"), None);
        assert_eq!(denied(&policy, "::ffff:127.0.0.1"), None);
        assert_eq!(denied(&policy, "::1"), Some(DenyReason::Loopback));
        assert_eq!(denied(&policy, "10.0.0.1"), Some(DenyReason::Private));
    }

    #[test]
    fn networks_parse_and_match() {
        let net: IpNet = "100.64.0.0/10".parse().unwrap();
        assert!(net.contains("100.127.1.1".parse().unwrap()));
        assert!(!net.contains("100.128.0.0".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let host: IpNet = "::1".parse().unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense/8".parse::<IpNet>().is_err());
    }
}
