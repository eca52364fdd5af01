//! Subject alternative names of the API server's serving certificate and
//! discovery of the host's own names and addresses (no network calls).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// DNS names every API server certificate carries (in-cluster service names).
pub const FIXED_DNS_SANS: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Default first IP of the service CIDR (10.43.0.0/16), the `kubernetes` service.
pub const DEFAULT_FIRST_SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1));

/// The SANs requested for the serving certificate. DNS names are kept
/// lower-case and both lists are free of duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingSans {
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl ServingSans {
    /// The standard set: the fixed Kubernetes names, the host name, 127.0.0.1,
    /// ::1, the host's interface addresses, `first_service_ip`, and each entry
    /// of `extra` (like k3s's `--tls-san`: an IP literal becomes an IP SAN,
    /// anything else a DNS SAN).
    pub fn defaults(first_service_ip: IpAddr, extra: &[String]) -> ServingSans {
        let mut sans = ServingSans::default();
        for name in FIXED_DNS_SANS {
            sans.add_dns(name);
        }
        if let Some(host) = hostname() {
            sans.add_dns(&host);
        }
        sans.add_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        sans.add_ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        for ip in host_addresses() {
            sans.add_ip(ip);
        }
        sans.add_ip(first_service_ip);
        for entry in extra {
            sans.add(entry);
        }
        sans
    }

    /// Adds an IP literal as IP SAN, anything else (trimmed, lower-cased) as DNS SAN.
    pub fn add(&mut self, entry: &str) {
        let entry = entry.trim();
        let unbracketed = entry.trim_start_matches('[').trim_end_matches(']');
        match unbracketed.parse::<IpAddr>() {
            Ok(ip) => self.add_ip(ip),
            Err(_) => self.add_dns(entry),
        }
    }

    /// Adds a DNS SAN unless empty or already present.
    pub fn add_dns(&mut self, name: &str) {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !self.dns.contains(&name) {
            self.dns.push(name);
        }
    }

    /// Adds an IP SAN unless already present.
    pub fn add_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// The union of `self` and `other` (order: self first).
    pub fn union(&self, other: &ServingSans) -> ServingSans {
        let mut out = self.clone();
        for d in &other.dns {
            out.add_dns(d);
        }
        for ip in &other.ips {
            out.add_ip(*ip);
        }
        out
    }
}

/// The host's name from gethostname(2), if it is set and valid UTF-8.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is a valid writable buffer of the given length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "gethostname failed");
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..len]).ok()?.trim().to_string();
    (!name.is_empty() && name != "(none)").then_some(name)
}

/// Addresses configured on the host's interfaces (getifaddrs(3)), except
/// loopback, unspecified, multicast and IPv6 link-local addresses, which a
/// certificate cannot usefully name. Sorted and de-duplicated.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = BTreeSet::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into ifap; freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "getifaddrs failed");
        return Vec::new();
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur is a non-null node of the list returned by getifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr whose family
            // field tells which concrete struct it is.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            let ip = if family == libc::AF_INET {
                // SAFETY: family AF_INET means ifa_addr points to a sockaddr_in;
                // read_unaligned makes no alignment assumption.
                let sin =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6 means ifa_addr points to a sockaddr_in6;
                // read_unaligned makes no alignment assumption.
                let sin6 =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in6>()) };
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            } else {
                None
            };
            if let Some(ip) = ip.filter(usable_san_ip) {
                out.insert(ip);
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: ifap came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    out.into_iter().collect()
}

fn usable_san_ip(ip: &IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(_) => true,
        // fe80::/10 link-local addresses need a zone and are not routable.
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}
