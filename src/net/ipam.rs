//! IP address management for the node's pod CIDR, and the on-disk record of every pod
//! sandbox (`<state_dir>/sandboxes.json`, one JSON file replaced atomically: written to a
//! temporary file, fsynced, renamed over the old one, directory fsynced). The record is
//! what survives a restart of skiff: which uid holds which IP and which hostPorts.
//!
//! Allocation hands out the lowest free address of the pod CIDR and never the network
//! address (`.0`), the gateway (`.1`, on the bridge) or the broadcast address.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cidr::Ipv4Cidr;
use super::{HostPort, NetError, PodKey};

/// The name of the state file under the state dir.
pub const STATE_FILE: &str = "sandboxes.json";

/// One pod's allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxRecord {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
}

/// Everything skiff remembers about the node's pod network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetState {
    /// The pod CIDR the allocations were made from.
    pub pod_cidr: Option<Ipv4Cidr>,
    /// Pod uid → its allocation.
    #[serde(default)]
    pub sandboxes: BTreeMap<String, SandboxRecord>,
}

impl NetState {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<NetState, NetError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetError::State {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NetState::default()),
            Err(e) => Err(NetError::io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Replaces the state file atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), NetError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| NetError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        let ctx = |what: &str| NetError::io(format!("{what} {}", tmp.display()));
        let mut f = std::fs::File::create(&tmp).map_err(ctx("creating"))?;
        f.write_all(&bytes).map_err(ctx("writing"))?;
        f.sync_all().map_err(ctx("syncing"))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(NetError::io(format!(
            "renaming {} into place",
            tmp.display()
        )))?;
        if let Some(dir) = path.parent() {
            // The rename is durable once the directory is.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(NetError::io(format!("syncing {}", dir.display())))?;
        }
        Ok(())
    }

    /// The lowest address of `cidr` that no pod holds, skipping the network address,
    /// the gateway and the broadcast address.
    pub fn free_ip(&self, cidr: &Ipv4Cidr) -> Option<Ipv4Addr> {
        let used: std::collections::HashSet<Ipv4Addr> =
            self.sandboxes.values().map(|r| r.ip).collect();
        let last = cidr.size().checked_sub(1)?;
        (2..last)
            .filter_map(|n| cidr.nth(n))
            .find(|ip| !used.contains(ip))
    }

    /// The record of `pod`: the existing one for its uid (same IP as before), or a new
    /// one with the lowest free IP. hostPorts are checked against every other pod.
    pub fn allocate(
        &mut self,
        cidr: &Ipv4Cidr,
        pod: &PodKey,
        host_ports: &[HostPort],
    ) -> Result<SandboxRecord, NetError> {
        for hp in host_ports {
            let clash = self.sandboxes.iter().find(|(uid, r)| {
                *uid != &pod.uid && r.host_ports.iter().any(|other| other.conflicts(hp))
            });
            if let Some((_, owner)) = clash {
                return Err(NetError::HostPortConflict {
                    port: hp.to_string(),
                    owner: format!("{}/{}", owner.namespace, owner.name),
                });
            }
        }
        let ip = match self.sandboxes.get(&pod.uid) {
            Some(existing) => existing.ip,
            None => self
                .free_ip(cidr)
                .ok_or(NetError::Exhausted { cidr: *cidr })?,
        };
        let record = SandboxRecord {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            ip,
            host_ports: host_ports.to_vec(),
        };
        self.pod_cidr = Some(*cidr);
        self.sandboxes.insert(pod.uid.clone(), record.clone());
        Ok(record)
    }

    /// Forgets `uid`; its IP is free again. Returns what it held.
    pub fn release(&mut self, uid: &str) -> Option<SandboxRecord> {
        self.sandboxes.remove(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Protocol;

    fn key(uid: &str) -> PodKey {
        PodKey {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
        }
    }

    fn hp(port: u16) -> HostPort {
        HostPort {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: port,
            container_port: 80,
        }
    }

    #[test]
    fn allocates_lowest_free_and_is_stable_per_uid() {
        let cidr: Ipv4Cidr = "10.42.0.0/24".parse().unwrap();
        let mut s = NetState::default();
        assert_eq!(
            s.allocate(&cidr, &key("a"), &[]).unwrap().ip,
            Ipv4Addr::new(10, 42, 0, 2)
        );
        assert_eq!(
            s.allocate(&cidr, &key("b"), &[]).unwrap().ip,
            Ipv4Addr::new(10, 42, 0, 3)
        );
        // Same uid: same address.
        assert_eq!(
            s.allocate(&cidr, &key("a"), &[]).unwrap().ip,
            Ipv4Addr::new(10, 42, 0, 2)
        );
        assert!(s.release("a").is_some());
        assert_eq!(
            s.allocate(&cidr, &key("c"), &[]).unwrap().ip,
            Ipv4Addr::new(10, 42, 0, 2)
        );
        assert_eq!(
            s.allocate(&cidr, &key("d"), &[]).unwrap().ip,
            Ipv4Addr::new(10, 42, 0, 4)
        );
    }

    #[test]
    fn never_hands_out_network_gateway_or_broadcast() {
        // A /29 has 8 addresses: .0 network, .1 gateway, .7 broadcast, so 5 for pods.
        let cidr: Ipv4Cidr = "10.42.9.0/29".parse().unwrap();
        let mut s = NetState::default();
        let ips: Vec<Ipv4Addr> = (0..5)
            .map(|i| s.allocate(&cidr, &key(&i.to_string()), &[]).unwrap().ip)
            .collect();
        assert_eq!(ips.first(), Some(&Ipv4Addr::new(10, 42, 9, 2)));
        assert_eq!(ips.last(), Some(&Ipv4Addr::new(10, 42, 9, 6)));
        let err = s.allocate(&cidr, &key("full"), &[]).unwrap_err();
        assert!(matches!(err, NetError::Exhausted { .. }), "{err}");
        assert!(err.to_string().contains("10.42.9.0/29"), "{err}");
    }

    #[test]
    fn host_port_conflicts_name_the_owner() {
        let cidr: Ipv4Cidr = "10.42.0.0/24".parse().unwrap();
        let mut s = NetState::default();
        s.allocate(&cidr, &key("a"), &[hp(8080)]).unwrap();
        // The same pod may ask again.
        s.allocate(&cidr, &key("a"), &[hp(8080)]).unwrap();
        let err = s.allocate(&cidr, &key("b"), &[hp(8080)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hostPort 8080/TCP is already used by pod default/pod-a"
        );
        // Another protocol or another hostIP is no conflict.
        let udp = HostPort {
            protocol: Protocol::Udp,
            ..hp(8080)
        };
        s.allocate(&cidr, &key("b"), &[udp]).unwrap();
        let other_ip = HostPort {
            host_ip: Some(Ipv4Addr::new(192, 0, 2, 9)),
            ..hp(9090)
        };
        let any_ip = hp(9090);
        s.allocate(&cidr, &key("c"), &[other_ip]).unwrap();
        assert!(s.allocate(&cidr, &key("d"), &[any_ip]).is_err());
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        assert_eq!(NetState::load(&path).unwrap(), NetState::default());
        let cidr: Ipv4Cidr = "10.42.0.0/24".parse().unwrap();
        let mut s = NetState::default();
        s.allocate(&cidr, &key("a"), &[hp(80)]).unwrap();
        s.allocate(&cidr, &key("b"), &[]).unwrap();
        s.save(&path).unwrap();
        let back = NetState::load(&path).unwrap();
        assert_eq!(back, s);
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, b"{not json").unwrap();
        let err = NetState::load(&path).unwrap_err();
        assert!(err.to_string().contains(STATE_FILE), "{err}");
    }
}
