//! IPv4 networks in CIDR notation (`10.42.0.0/24`): parsing, membership and the
//! addresses IPAM hands out. Small on purpose: skiff's pod network is IPv4 only.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: its first address and a prefix length (0–32). The address is
/// always the network address (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// A CIDR string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {input:?}: {reason}")]
pub struct CidrError {
    pub input: String,
    pub reason: &'static str,
}

impl Ipv4Cidr {
    /// The network of `addr/prefix_len`; host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError {
                input: format!("{addr}/{prefix_len}"),
                reason: "prefix length above 32",
            });
        }
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix_len));
        Ok(Ipv4Cidr {
            network,
            prefix_len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The last address of the network (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix_len))
    }

    /// How many addresses the network spans (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix_len) == u32::from(self.network)
    }

    /// Whether `other` lies entirely inside this network.
    pub fn contains_net(&self, other: &Ipv4Cidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.network)
    }

    /// The `n`-th address of the network (0 is the network address), if it exists.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + n as u32))
    }

    /// The gateway skiff puts on the node's bridge: the first host address (`.1`).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        (self.size() >= 4).then(|| Ipv4Addr::from(u32::from(self.network) + 1))
    }
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = |reason| CidrError {
            input: s.to_string(),
            reason,
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| err("missing /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("prefix is not a number"))?;
        if prefix > 32 {
            return Err(err("prefix length above 32"));
        }
        if u32::from(addr) & !mask(prefix) != 0 {
            return Err(err("host bits are set"));
        }
        Ipv4Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let c: Ipv4Cidr = "10.42.3.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 42, 3, 255));
        assert_eq!(c.gateway(), Some(Ipv4Addr::new(10, 42, 3, 1)));
        assert_eq!(c.size(), 256);
        assert!(c.contains(Ipv4Addr::new(10, 42, 3, 77)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 4, 1)));
        let cluster: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert!(cluster.contains_net(&c));
        assert!(!c.contains_net(&cluster));
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().size(), 1 << 32);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "10.42.0.0",
            "10.42.0.1/24",
            "10.42.0.0/33",
            "x/24",
            "10.42.0.0/a",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad} parsed");
        }
    }
}
