//! Service ClusterIP and NodePort allocation, done by the API server while it writes a
//! Service (as kube-apiserver's service storage does, not a controller).
//!
//! There is no separate allocation record: the addresses and ports in use are whatever
//! the stored Services hold, read from the store (not the watch cache, which may lag)
//! under one lock that is held until the Service write is durable. Concurrent creates
//! therefore never get the same IP or port, a deleted Service releases its values by being
//! gone, and a restart cannot hand out what is in use.
//!
//! [`ServiceAllocator::allocate`] is pure: given the Service being written, the stored
//! one (on update) and the values in use, it fills in `clusterIP`/`clusterIPs`, node
//! ports and `healthCheckNodePort`, or returns kube-apiserver's errors.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

use crate::registry::defaults;
use crate::registry::validation::{BadValue, ErrorKind, FieldError};
use crate::store::{Store, StoreError};

/// k3s's defaults.
pub const DEFAULT_SERVICE_CIDR: Ipv4Cidr = Ipv4Cidr::new_unchecked([10, 43, 0, 0], 16);
pub const DEFAULT_NODE_PORTS: (i64, i64) = (30000, 32767);

/// Parse `--service-node-port-range` (`30000-32767`).
pub fn parse_node_port_range(range: &str) -> Result<(i64, i64), ConfigError> {
    let bad = || ConfigError::PortRange(range.to_string());
    let (a, b) = range.trim().split_once('-').ok_or_else(bad)?;
    let (a, b): (i64, i64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a < 1 || b > 65535 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Where Services are stored.
pub const SERVICES_PREFIX: &str = "/registry/services/";

/// Why the allocator configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("service CIDR {0:?} is not an IPv4 CIDR with a prefix of at most /30")]
    Cidr(String),
    #[error("service node port range {0:?} is not of the form FIRST-LAST")]
    PortRange(String),
}

/// Why an allocation failed.
#[derive(Debug)]
pub enum AllocError {
    /// A requested value is outside the range or taken (422 with these causes).
    Invalid(Vec<FieldError>),
    /// A range is exhausted (500, as upstream).
    Internal(String),
}

/// An IPv4 service network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: u32,
    bits: u8,
}

impl Ipv4Cidr {
    pub const fn new_unchecked(network: [u8; 4], bits: u8) -> Ipv4Cidr {
        Ipv4Cidr {
            network: u32::from_be_bytes(network),
            bits,
        }
    }

    pub fn parse(s: &str) -> Result<Ipv4Cidr, ConfigError> {
        let bad = || ConfigError::Cidr(s.to_string());
        let (ip, bits) = s.trim().split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        if !(1..=30).contains(&bits) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - bits);
        Ok(Ipv4Cidr {
            network: u32::from(ip) & mask,
            bits,
        })
    }

    /// Usable addresses (the network and broadcast addresses are not).
    fn size(&self) -> u32 {
        (1u32 << (32 - self.bits)) - 2
    }

    /// The `i`-th usable address (0 is the network address + 1).
    fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1 + i)
    }

    fn index_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let v = u32::from(ip);
        (v > self.network && v - self.network <= self.size()).then(|| v - self.network - 1)
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        self.nth(0)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.bits)
    }
}

/// The cluster IPs and node ports held by stored Services.
#[derive(Debug, Default, Clone)]
pub struct Used {
    pub ips: HashSet<Ipv4Addr>,
    pub ports: HashSet<i64>,
}

impl Used {
    /// Count what `svc` holds.
    pub fn add(&mut self, svc: &Value) {
        let spec = &svc["spec"];
        let mut ips: Vec<&str> = spec["clusterIPs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(ip) = spec["clusterIP"].as_str() {
            ips.push(ip);
        }
        self.ips
            .extend(ips.into_iter().filter_map(|s| s.parse::<Ipv4Addr>().ok()));
        for p in spec["ports"].as_array().into_iter().flatten() {
            if let Some(np) = p["nodePort"].as_i64().filter(|n| *n != 0) {
                self.ports.insert(np);
            }
        }
        if let Some(hc) = spec["healthCheckNodePort"].as_i64().filter(|n| *n != 0) {
            self.ports.insert(hc);
        }
    }
}

/// The service IP and node port ranges, and the lock that serializes Service writes.
#[derive(Debug)]
pub struct ServiceAllocator {
    pub cidr: Ipv4Cidr,
    /// Inclusive node port range.
    pub node_ports: (i64, i64),
    /// Kept free for the cluster DNS Service unless asked for by address.
    pub dns_ip: Option<Ipv4Addr>,
    lock: tokio::sync::Mutex<()>,
}

impl ServiceAllocator {
    /// From `--service-cidr` and `--service-node-port-range` (`30000-32767`).
    pub fn new(cidr: &str, node_port_range: &str) -> Result<ServiceAllocator, ConfigError> {
        Ok(Self::from_parts(
            Ipv4Cidr::parse(cidr)?,
            parse_node_port_range(node_port_range)?,
        ))
    }

    pub fn from_parts(cidr: Ipv4Cidr, node_ports: (i64, i64)) -> ServiceAllocator {
        // The DNS address is the 10th usable one (10.43.0.10), as k3s's --cluster-dns.
        let dns_ip = (cidr.size() > 10).then(|| cidr.nth(9));
        ServiceAllocator {
            cidr,
            node_ports,
            dns_ip,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Held from reading the used set until the Service write is durable.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// What the stored Services hold, except the one at `except_key` (being updated).
    pub fn used(&self, store: &dyn Store, except_key: Option<&str>) -> Result<Used, StoreError> {
        let list = store.list(SERVICES_PREFIX, None, 0, None)?;
        let mut used = Used::default();
        for kv in list.items {
            if Some(kv.key.as_str()) == except_key {
                continue;
            }
            if let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) {
                used.add(&svc);
            }
        }
        Ok(used)
    }

    /// Fill in the cluster IP and node ports `svc` needs (carrying over what `old`, the
    /// stored Service, already holds; releasing what a type change no longer needs).
    pub fn allocate(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
        used: &Used,
    ) -> Result<(), AllocError> {
        if !svc.get("spec").is_some_and(Value::is_object) {
            return Ok(());
        }
        if let Some(old) = old {
            patch_allocated_values(svc, old);
            drop_type_dependent_fields(svc, old);
        }
        let new_view = defaulted(svc);
        let old_view = old.map(defaulted);
        let mut errs = Vec::new();

        // Cluster IP.
        if needs_cluster_ip(&new_view) {
            let requested = new_view["spec"]["clusterIPs"][0]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let old_ip = old_view
                .as_ref()
                .filter(|o| needs_cluster_ip(o))
                .and_then(|o| o["spec"]["clusterIPs"][0].as_str().map(str::to_string));
            if old_ip.is_some() {
                // Already allocated; a change is validation's "may not change once set".
            } else if requested.is_empty() {
                let ip = self.next_ip(used).ok_or_else(|| {
                    AllocError::Internal("failed to allocate a serviceIP: range is full".into())
                })?;
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            } else if let Ok(ip) = requested.parse::<Ipv4Addr>() {
                let problem = if self.cidr.index_of(ip).is_none() {
                    Some(format!(
                        "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                        self.cidr
                    ))
                } else if used.ips.contains(&ip) {
                    Some("provided IP is already allocated".to_string())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    errs.push(FieldError {
                        field: "spec.clusterIPs".into(),
                        kind: ErrorKind::Invalid,
                        detail: format!("failed to allocate IP {requested}: {problem}"),
                        value: BadValue::Go(go_strings(&new_view["spec"]["clusterIPs"])),
                    });
                }
            }
            // An unparsable address is left to validation.
        }

        // Node ports.
        let mut taken_here: HashSet<i64> = HashSet::new();
        if needs_node_port(&new_view) || has_requested_node_ports(&new_view) {
            let old_ports: HashSet<i64> = old_view
                .as_ref()
                .map(|o| {
                    let mut u = Used::default();
                    u.add(o);
                    u.ports
                })
                .unwrap_or_default();
            let allocate_missing = needs_node_port(&new_view);
            let n = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
            // Ports with the same number (other protocols) share one node port.
            let mut by_port: HashMap<i64, i64> = HashMap::new();
            for i in 0..n {
                let p = &svc["spec"]["ports"][i];
                if let (Some(port), Some(np)) = (p["port"].as_i64(), p["nodePort"].as_i64()) {
                    if np != 0 {
                        by_port.entry(port).or_insert(np);
                    }
                }
            }
            for i in 0..n {
                let np = svc["spec"]["ports"][i]["nodePort"].as_i64().unwrap_or(0);
                let port = svc["spec"]["ports"][i]["port"].as_i64().unwrap_or(0);
                if np != 0 {
                    if old_ports.contains(&np) || taken_here.contains(&np) {
                        taken_here.insert(np);
                        continue;
                    }
                    if let Some(e) = self.check_port(np, used, &format!("spec.ports[{i}].nodePort"))
                    {
                        errs.push(e);
                    } else {
                        taken_here.insert(np);
                    }
                } else if allocate_missing {
                    let np = match by_port.get(&port) {
                        Some(np) => *np,
                        None => self.next_port(used, &taken_here).ok_or_else(|| {
                            AllocError::Internal(
                                "failed to allocate a nodePort: range is full".into(),
                            )
                        })?,
                    };
                    by_port.insert(port, np);
                    taken_here.insert(np);
                    svc["spec"]["ports"][i]["nodePort"] = json!(np);
                }
            }
        }

        // Health check node port (LoadBalancer with externalTrafficPolicy Local).
        if needs_hc_node_port(&new_view) {
            let hc = svc["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0);
            let old_hc = old_view
                .as_ref()
                .and_then(|o| o["spec"]["healthCheckNodePort"].as_i64())
                .unwrap_or(0);
            if hc == 0 {
                let np = self.next_port(used, &taken_here).ok_or_else(|| {
                    AllocError::Internal(
                        "failed to allocate a healthCheck nodePort: range is full".into(),
                    )
                })?;
                svc["spec"]["healthCheckNodePort"] = json!(np);
            } else if hc != old_hc {
                if let Some(e) = self.check_port(hc, used, "spec.healthCheckNodePort") {
                    errs.push(e);
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(AllocError::Invalid(errs))
        }
    }

    fn check_port(&self, np: i64, used: &Used, field: &str) -> Option<FieldError> {
        let (lo, hi) = self.node_ports;
        let detail = if !(lo..=hi).contains(&np) {
            format!(
                "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
            )
        } else if used.ports.contains(&np) {
            "provided port is already allocated".to_string()
        } else {
            return None;
        };
        Some(FieldError {
            field: field.into(),
            kind: ErrorKind::Invalid,
            detail,
            value: BadValue::Int(np),
        })
    }

    /// A free cluster IP: a random one from the upper part of the range first (kube's
    /// offset keeps the lower band for addresses chosen by hand), then the lower band,
    /// with the DNS address last.
    pub fn next_ip(&self, used: &Used) -> Option<Ipv4Addr> {
        let size = self.cidr.size();
        let offset = range_offset(size, 16, 256, 16);
        let free = |i: u32| {
            let ip = self.cidr.nth(i);
            !used.ips.contains(&ip) && Some(ip) != self.dns_ip
        };
        scan(offset, size, free)
            .or_else(|| scan(0, offset, free))
            .map(|i| self.cidr.nth(i))
            .or_else(|| self.dns_ip.filter(|ip| !used.ips.contains(ip)))
    }

    /// A free node port, the upper part of the range first as kube's port allocator does.
    pub fn next_port(&self, used: &Used, also_taken: &HashSet<i64>) -> Option<i64> {
        let (lo, hi) = self.node_ports;
        let size = (hi - lo + 1) as u32;
        let offset = range_offset(size, 16, 128, 32).min(size);
        let free = |i: u32| {
            let p = lo + i as i64;
            !used.ports.contains(&p) && !also_taken.contains(&p)
        };
        scan(offset, size, free)
            .or_else(|| scan(0, offset, free))
            .map(|i| lo + i as i64)
    }
}

/// kube's split of a range into a lower band (for static picks) and an upper one.
fn range_offset(size: u32, min: u32, max: u32, step: u32) -> u32 {
    if size <= min {
        return 0;
    }
    (size / step).clamp(min, max)
}

/// The first free index in `[from, to)`, starting at a random place and wrapping.
fn scan(from: u32, to: u32, free: impl Fn(u32) -> bool) -> Option<u32> {
    if from >= to {
        return None;
    }
    let n = to - from;
    let start = rand::thread_rng().gen_range(0..n);
    (0..n).map(|k| from + (start + k) % n).find(|&i| free(i))
}

fn defaulted(svc: &Value) -> Value {
    let mut v = svc.clone();
    defaults::apply_defaults("", "Service", &mut v);
    v
}

fn ty(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    ty(svc) != "ExternalName" && svc["spec"]["clusterIP"].as_str() != Some("None")
}

fn needs_node_port(svc: &Value) -> bool {
    match ty(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc["spec"]["allocateLoadBalancerNodePorts"].as_bool() != Some(false),
        _ => false,
    }
}

/// A LoadBalancer that does not allocate node ports still holds the ones it names.
fn has_requested_node_ports(svc: &Value) -> bool {
    ty(svc) == "LoadBalancer"
        && svc["spec"]["ports"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["nodePort"].as_i64().unwrap_or(0) != 0))
}

fn needs_hc_node_port(svc: &Value) -> bool {
    ty(svc) == "LoadBalancer" && svc["spec"]["externalTrafficPolicy"].as_str() == Some("Local")
}

fn node_ports(svc: &Value) -> Vec<i64> {
    svc["spec"]["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["nodePort"].as_i64())
                .filter(|n| *n != 0)
                .collect()
        })
        .unwrap_or_default()
}

/// An update that leaves allocated values out keeps them (kube's `patchAllocatedValues`:
/// the cluster IP, node ports matched by port name, the health check port).
fn patch_allocated_values(svc: &mut Value, old: &Value) {
    let (new_view, old_view) = (defaulted(svc), defaulted(old));
    if needs_cluster_ip(&old_view) && needs_cluster_ip(&new_view) {
        let spec = &mut svc["spec"];
        if spec["clusterIP"].as_str().unwrap_or_default().is_empty() {
            if let Some(ip) = old["spec"].get("clusterIP").cloned() {
                spec["clusterIP"] = ip;
            }
        }
        if spec["clusterIPs"].as_array().is_none_or(Vec::is_empty) {
            if let Some(ips) = old["spec"].get("clusterIPs").cloned() {
                spec["clusterIPs"] = ips;
            }
        }
    }
    if needs_node_port(&old_view) && needs_node_port(&new_view) {
        let old_used: HashSet<i64> = node_ports(old).into_iter().collect();
        let new_used: HashSet<i64> = node_ports(svc).into_iter().collect();
        let in_both: HashSet<i64> = old_used.intersection(&new_used).copied().collect();
        let by_name: HashMap<String, i64> = old["spec"]["ports"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap_or_default().to_string(),
                            p["nodePort"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for p in ports {
                if p["nodePort"].as_i64().unwrap_or(0) == 0 {
                    let name = p["name"].as_str().unwrap_or_default();
                    if let Some(np) = by_name.get(name).filter(|n| **n != 0) {
                        if !in_both.contains(np) {
                            p["nodePort"] = json!(np);
                        }
                    }
                }
            }
        }
    }
    if needs_hc_node_port(&old_view)
        && needs_hc_node_port(&new_view)
        && svc["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0) == 0
    {
        if let Some(hc) = old["spec"].get("healthCheckNodePort").cloned() {
            svc["spec"]["healthCheckNodePort"] = hc;
        }
    }
}

/// A type change releases what the new type does not use, when the user left those
/// fields as they were (kube's `dropTypeDependentFields`).
fn drop_type_dependent_fields(svc: &mut Value, old: &Value) {
    let (new_view, old_view) = (defaulted(svc), defaulted(old));
    let spec_eq = |f: &str, a: &Value, b: &Value| a["spec"].get(f) == b["spec"].get(f);
    if needs_cluster_ip(&old_view)
        && !needs_cluster_ip(&new_view)
        && ty(&new_view) == "ExternalName"
        && spec_eq("clusterIP", svc, old)
        && spec_eq("clusterIPs", svc, old)
    {
        if let Some(spec) = svc["spec"].as_object_mut() {
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(f);
            }
        }
    }
    if needs_node_port(&old_view)
        && !needs_node_port(&new_view)
        && node_ports(svc) == node_ports(old)
    {
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for p in ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
            }
        }
    }
    if needs_hc_node_port(&old_view)
        && !needs_hc_node_port(&new_view)
        && spec_eq("healthCheckNodePort", svc, old)
    {
        if let Some(spec) = svc["spec"].as_object_mut() {
            spec.remove("healthCheckNodePort");
        }
    }
    if !matches!(ty(&new_view), "NodePort" | "LoadBalancer")
        && matches!(ty(&old_view), "NodePort" | "LoadBalancer")
        && svc["spec"]["externalIPs"]
            .as_array()
            .is_none_or(Vec::is_empty)
        && spec_eq("externalTrafficPolicy", svc, old)
    {
        if let Some(spec) = svc["spec"].as_object_mut() {
            spec.remove("externalTrafficPolicy");
        }
    }
}

/// Go's `%#v` of a `[]string`.
fn go_strings(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => format!(
            "[]string{{{}}}",
            a.iter()
                .map(|s| format!("{:?}", s.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "[]string(nil)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> ServiceAllocator {
        ServiceAllocator::new("10.43.0.0/16", "30000-32767").expect("valid config")
    }

    fn svc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": spec})
    }

    fn messages(e: AllocError) -> Vec<String> {
        match e {
            AllocError::Invalid(errs) => errs.iter().map(ToString::to_string).collect(),
            AllocError::Internal(m) => vec![m],
        }
    }

    #[test]
    fn dynamic_ip_comes_from_the_upper_band_and_never_dot_one_or_dns() {
        let a = alloc();
        let mut used = Used::default();
        used.ips.insert("10.43.0.1".parse().unwrap());
        for _ in 0..200 {
            let mut s = svc(json!({"ports": [{"port": 80}]}));
            a.allocate(&mut s, None, &used).expect("allocates");
            let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            assert_eq!(s["spec"]["clusterIPs"], json!([ip.to_string()]));
            let idx = a.cidr.index_of(ip).unwrap();
            assert!(idx >= 256, "{ip} is in the static band");
            assert!(used.ips.insert(ip), "{ip} handed out twice");
        }
    }

    #[test]
    fn small_range_fills_up_with_dns_last_then_reports_full() {
        let a = ServiceAllocator::new("10.0.0.0/28", "30000-30001").unwrap();
        let mut used = Used::default();
        let mut order = Vec::new();
        for _ in 0..14 {
            let mut s = svc(json!({"ports": [{"port": 80}]}));
            a.allocate(&mut s, None, &used).expect("room left");
            let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            used.ips.insert(ip);
            order.push(ip);
        }
        assert_eq!(order.last().unwrap().to_string(), "10.0.0.10");
        let mut s = svc(json!({"ports": [{"port": 80}]}));
        let err = a.allocate(&mut s, None, &used).unwrap_err();
        assert_eq!(
            messages(err),
            vec!["failed to allocate a serviceIP: range is full"]
        );
    }

    #[test]
    fn requested_ip_taken_or_outside_gives_upstream_messages() {
        let a = alloc();
        let mut used = Used::default();
        used.ips.insert("10.43.0.1".parse().unwrap());
        let mut s = svc(json!({"clusterIP": "10.43.0.1", "ports": [{"port": 80}]}));
        assert_eq!(
            messages(a.allocate(&mut s, None, &used).unwrap_err()),
            vec!["spec.clusterIPs: Invalid value: []string{\"10.43.0.1\"}: failed to allocate IP 10.43.0.1: provided IP is already allocated"]
        );
        let mut s = svc(json!({"clusterIP": "10.44.0.5", "ports": [{"port": 80}]}));
        assert_eq!(
            messages(a.allocate(&mut s, None, &used).unwrap_err()),
            vec!["spec.clusterIPs: Invalid value: []string{\"10.44.0.5\"}: failed to allocate IP 10.44.0.5: the provided IP (10.44.0.5) is not in the valid range. The range of valid IPs is 10.43.0.0/16"]
        );
        let mut s = svc(json!({"clusterIP": "10.43.0.10", "ports": [{"port": 53}]}));
        a.allocate(&mut s, None, &used)
            .expect("DNS IP may be requested");
        assert_eq!(s["spec"]["clusterIP"], "10.43.0.10");
    }

    #[test]
    fn headless_and_external_name_get_nothing() {
        let a = alloc();
        let used = Used::default();
        let mut h = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        a.allocate(&mut h, None, &used).unwrap();
        assert_eq!(h["spec"]["clusterIP"], "None");
        let mut e = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        a.allocate(&mut e, None, &used).unwrap();
        assert!(e["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn node_ports_for_nodeport_and_loadbalancer_shared_by_protocols() {
        let a = alloc();
        let used = Used::default();
        let mut s = svc(json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "web", "port": 80}]}));
        a.allocate(&mut s, None, &used).unwrap();
        let nps = node_ports(&s);
        assert_eq!(nps.len(), 3);
        assert_eq!(nps[0], nps[1]);
        assert_ne!(nps[0], nps[2]);
        assert!(nps.iter().all(|n| (30000..=32767).contains(n)));
        let mut lb = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
        );
        a.allocate(&mut lb, None, &used).unwrap();
        assert!(lb["spec"]["ports"][0]["nodePort"].as_i64().is_some());
        assert!(lb["spec"]["healthCheckNodePort"].as_i64().is_some());
        let mut c = svc(json!({"ports": [{"port": 80}]}));
        a.allocate(&mut c, None, &used).unwrap();
        assert!(c["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn requested_node_port_taken_or_outside() {
        let a = alloc();
        let mut used = Used::default();
        used.ports.insert(30080);
        let mut s = svc(
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 80}]}),
        );
        assert_eq!(
            messages(a.allocate(&mut s, None, &used).unwrap_err()),
            vec![
                "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated",
                "spec.ports[1].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ]
        );
    }

    #[test]
    fn update_keeps_allocations_and_type_changes_allocate_or_release() {
        let a = alloc();
        let used = Used::default();
        let mut old = svc(json!({"type": "NodePort", "ports": [{"name": "web", "port": 80}]}));
        a.allocate(&mut old, None, &used).unwrap();
        // An update that leaves the IP and node port out (kubectl apply) keeps both.
        let mut new = svc(json!({"type": "NodePort", "ports": [{"name": "web", "port": 80}]}));
        a.allocate(&mut new, Some(&old), &used).unwrap();
        assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert_eq!(node_ports(&new), node_ports(&old));
        // NodePort -> ClusterIP releases the node port.
        let mut to_cip = old.clone();
        to_cip["spec"]["type"] = json!("ClusterIP");
        a.allocate(&mut to_cip, Some(&old), &used).unwrap();
        assert!(node_ports(&to_cip).is_empty());
        assert_eq!(to_cip["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        // ClusterIP -> LoadBalancer allocates one.
        let mut to_lb = to_cip.clone();
        to_lb["spec"]["type"] = json!("LoadBalancer");
        a.allocate(&mut to_lb, Some(&to_cip), &used).unwrap();
        assert_eq!(node_ports(&to_lb).len(), 1);
        // -> ExternalName releases the cluster IP.
        let mut to_en = to_cip.clone();
        to_en["spec"]["type"] = json!("ExternalName");
        to_en["spec"]["externalName"] = json!("example.com");
        a.allocate(&mut to_en, Some(&to_cip), &used).unwrap();
        assert!(to_en["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn used_counts_ips_and_ports() {
        let mut u = Used::default();
        u.add(&svc(
            json!({"clusterIP": "10.43.5.5", "clusterIPs": ["10.43.5.5"], "type": "NodePort",
            "ports": [{"port": 80, "nodePort": 31000}], "healthCheckNodePort": 31001}),
        ));
        assert!(u.ips.contains(&"10.43.5.5".parse().unwrap()));
        assert_eq!(u.ports, HashSet::from([31000, 31001]));
    }

    #[test]
    fn config_parsing() {
        assert!(ServiceAllocator::new("10.43.0.0/16", "30000-32767").is_ok());
        assert!(ServiceAllocator::new("nope", "30000-32767").is_err());
        assert!(ServiceAllocator::new("10.43.0.0/16", "32767-30000").is_err());
        assert_eq!(alloc().cidr.first().to_string(), "10.43.0.1");
        assert_eq!(alloc().dns_ip.unwrap().to_string(), "10.43.0.10");
    }
}
