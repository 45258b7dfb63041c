//! Which addresses a pairing QR names for the direct listener.
//!
//! A listener bound to a concrete address (`192.168.1.20:47100`, `127.0.0.1:0` in tests) is
//! named as bound. One bound to the unspecified address (`0.0.0.0` / `::`, "every
//! interface") cannot be dialled as such: the offer names this machine's LAN addresses
//! instead, with the bound port. Which ones: interfaces that are up, not loopback, not the
//! usual container or VM bridges (`docker*`, `br-*`, `virbr*`, `podman*`, `veth*`: a phone on the
//! LAN cannot reach them and would wait on each), IPv4 first, then global or unique-local
//! IPv6 (a link-local `fe80::` address needs a scope the phone cannot know). At most
//! [`MAX_LAN_ENDPOINTS`], so the QR stays easy to scan.

use std::net::{IpAddr, SocketAddr};

/// The most LAN addresses one offer names for an unspecified bind.
pub const MAX_LAN_ENDPOINTS: usize = 4;

/// One interface address, as the OS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// The interface's name (`eth0`, `wlan0`).
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Whether the interface is up (unknown counts as up).
    pub up: bool,
}

/// This machine's interface addresses (empty when the OS cannot list them).
pub fn interface_addrs() -> Vec<InterfaceAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|i| InterfaceAddr {
                up: !matches!(i.oper_status, if_addrs::IfOperStatus::Down | if_addrs::IfOperStatus::LowerLayerDown),
                ip: i.ip(),
                name: i.name,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the network interfaces");
            Vec::new()
        }
    }
}

/// The addresses an offer names for listeners bound to `bound`, given the machine's
/// `interfaces`: concrete binds as they are, unspecified ones expanded (module docs).
pub fn advertised(bound: &[SocketAddr], interfaces: &[InterfaceAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let push = |a: SocketAddr, out: &mut Vec<SocketAddr>| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for b in bound {
        if !b.ip().is_unspecified() {
            push(*b, &mut out);
            continue;
        }
        // `::` also takes IPv4 where the OS binds dual stack (Linux's default): name both
        // families for it, IPv4 only for `0.0.0.0`.
        let v6_ok = b.is_ipv6();
        let mut lan: Vec<IpAddr> = interfaces
            .iter()
            .filter(|i| i.up && usable_interface(&i.name))
            .map(|i| i.ip)
            .filter(|ip| match ip {
                IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
                IpAddr::V6(v6) => {
                    v6_ok && !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified() && !v6.is_multicast()
                }
            })
            .collect();
        lan.sort_by_key(|ip| (ip.is_ipv6(), !is_private(ip)));
        lan.dedup();
        for ip in lan.into_iter().take(MAX_LAN_ENDPOINTS) {
            push(SocketAddr::new(ip, b.port()), &mut out);
        }
    }
    out
}

fn usable_interface(name: &str) -> bool {
    !["docker", "br-", "virbr", "podman", "veth"].iter().any(|p| name.starts_with(p))
}

/// RFC 1918 / RFC 4193: where a phone on the same Wi-Fi is.
fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifa(name: &str, ip: &str, up: bool) -> InterfaceAddr {
        InterfaceAddr { name: name.into(), ip: ip.parse().unwrap(), up }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn concrete_binds_are_named_as_bound() {
        let ifs = [ifa("eth0", "192.168.1.20", true)];
        assert_eq!(advertised(&[sa("127.0.0.1:4000"), sa("[::1]:4001")], &ifs), [sa("127.0.0.1:4000"), sa("[::1]:4001")]);
    }

    #[test]
    fn an_unspecified_bind_names_the_lan_addresses_private_ipv4_first() {
        let ifs = [
            ifa("lo", "127.0.0.1", true),
            ifa("lo", "::1", true),
            ifa("docker0", "172.17.0.1", true),
            ifa("br-1a2b", "172.18.0.1", true),
            ifa("wlan0", "fe80::1", true),
            ifa("wlan0", "fd00::20", true),
            ifa("wlan0", "2001:db8::20", true),
            ifa("eth1", "10.0.0.5", false),
            ifa("eth0", "203.0.113.9", true),
            ifa("wlan0", "192.168.1.20", true),
            ifa("eth0", "169.254.3.3", true),
        ];
        assert_eq!(advertised(&[sa("0.0.0.0:4000")], &ifs), [sa("192.168.1.20:4000"), sa("203.0.113.9:4000")]);
        assert_eq!(
            advertised(&[sa("[::]:4000")], &ifs),
            [sa("192.168.1.20:4000"), sa("203.0.113.9:4000"), sa("[fd00::20]:4000"), sa("[2001:db8::20]:4000")]
        );
    }

    #[test]
    fn at_most_four_lan_addresses_and_no_duplicates() {
        let ifs: Vec<InterfaceAddr> = (1..=9).map(|i| ifa(&format!("eth{i}"), &format!("192.168.{i}.2"), true)).collect();
        let got = advertised(&[sa("0.0.0.0:4000"), sa("0.0.0.0:4000")], &ifs);
        assert_eq!(got.len(), MAX_LAN_ENDPOINTS);
        assert_eq!(got[0], sa("192.168.1.2:4000"));
    }

    #[test]
    fn a_machine_without_a_lan_names_nothing_for_an_unspecified_bind() {
        assert!(advertised(&[sa("0.0.0.0:4000")], &[ifa("lo", "127.0.0.1", true)]).is_empty());
    }

    #[test]
    fn the_os_lists_its_interfaces() {
        // Every Linux machine (and network namespace) has a loopback interface.
        assert!(interface_addrs().iter().any(|i| i.ip.is_loopback()), "{:?}", interface_addrs());
    }
}
