//! The two files every pod gets from the node, rendered as the kubelet renders them:
//! `/etc/resolv.conf` (from the pod's `dnsPolicy` and `dnsConfig`, the cluster DNS
//! address and the host's own resolv.conf) and the "Kubernetes-managed" `/etc/hosts`
//! (localhost boilerplate, the pod's own name, `hostAliases`). Pure text in, text out;
//! the agent writes them into the pod's directory and bind-mounts them.

use std::net::IpAddr;

/// At most this many nameservers reach a pod (the resolver reads no more).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains, and at most this many characters in the search
/// line, as the kubelet limits them.
pub const MAX_SEARCH_PATHS: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;

/// A pod's `spec.dnsPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsPolicy {
    /// The cluster DNS, with the namespace's search path (the default).
    #[default]
    ClusterFirst,
    /// As `ClusterFirst`, also for `hostNetwork` pods.
    ClusterFirstWithHostNet,
    /// The node's own resolv.conf.
    Default,
    /// Only what `dnsConfig` says.
    None,
}

impl DnsPolicy {
    /// The policy named by `spec.dnsPolicy` (absent or unknown: `ClusterFirst`).
    pub fn parse(s: Option<&str>) -> DnsPolicy {
        match s {
            Some("ClusterFirstWithHostNet") => DnsPolicy::ClusterFirstWithHostNet,
            Some("Default") => DnsPolicy::Default,
            Some("None") => DnsPolicy::None,
            _ => DnsPolicy::ClusterFirst,
        }
    }
}

/// A pod's `spec.dnsConfig`: merged on top of what the policy gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `(name, value)`; rendered `name:value`, or `name` without a value.
    pub options: Vec<(String, Option<String>)>,
}

/// Everything [`resolv_conf`] needs to know about a pod and its node.
#[derive(Debug, Clone)]
pub struct PodDns<'a> {
    pub namespace: &'a str,
    pub policy: DnsPolicy,
    pub host_network: bool,
    pub dns_config: Option<&'a DnsConfig>,
    /// The cluster DNS service address(es) (skiff's default: 10.43.0.10).
    pub cluster_dns: &'a [IpAddr],
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: &'a str,
    /// The node's `/etc/resolv.conf` text.
    pub host_resolv_conf: &'a str,
}

/// The parts of a resolv.conf that the kubelet carries over: nameservers, the search
/// list and options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Reads a resolv.conf: `nameserver` lines accumulate, the last `search` line wins (as
/// in glibc), `options` accumulate; comments and other keywords are ignored.
pub fn parse_resolv_conf(text: &str) -> Resolv {
    let mut out = Resolv::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(ns) = fields.next() {
                    out.nameservers.push(ns.to_string());
                }
            }
            Some("search") => {
                out.searches = fields.map(trim_dot).filter(|s| !s.is_empty()).collect();
            }
            Some("options") => out.options.extend(fields.map(str::to_string)),
            _ => {}
        }
    }
    out
}

fn trim_dot(s: &str) -> String {
    s.strip_suffix('.').unwrap_or(s).to_string()
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Options merged by name: a later value for the same name replaces the earlier one in
/// its place.
fn merge_options(existing: Vec<String>, extra: &[(String, Option<String>)]) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> = Vec::new();
    let parsed = existing.into_iter().map(|o| match o.split_once(':') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (o, None),
    });
    for (name, value) in parsed.chain(extra.iter().cloned()) {
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => merged.push((name, value)),
        }
    }
    merged
        .into_iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{n}:{v}"),
            None => n,
        })
        .collect()
}

/// What a pod's resolv.conf says, before rendering.
pub fn pod_resolv(pod: &PodDns<'_>) -> Resolv {
    let host = parse_resolv_conf(pod.host_resolv_conf);
    let policy = match pod.policy {
        // The cluster DNS is for pods on the pod network; hostNetwork pods keep the
        // node's view unless they ask with ClusterFirstWithHostNet.
        DnsPolicy::ClusterFirst if pod.host_network => DnsPolicy::Default,
        DnsPolicy::ClusterFirstWithHostNet if !pod.host_network => DnsPolicy::ClusterFirst,
        p => p,
    };
    let policy = match policy {
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet
            if pod.cluster_dns.is_empty() =>
        {
            DnsPolicy::Default
        }
        p => p,
    };
    let mut out = match policy {
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet => {
            let d = pod.cluster_domain;
            let mut searches = vec![
                format!("{}.svc.{d}", pod.namespace),
                format!("svc.{d}"),
                d.to_string(),
            ];
            searches.extend(host.searches);
            Resolv {
                nameservers: pod.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
        DnsPolicy::Default => host,
        DnsPolicy::None => Resolv::default(),
    };
    if let Some(cfg) = pod.dns_config {
        out.nameservers.extend(cfg.nameservers.iter().cloned());
        out.searches
            .extend(cfg.searches.iter().map(|s| trim_dot(s)));
        out.options = merge_options(out.options, &cfg.options);
    }
    out.nameservers = dedup(out.nameservers);
    out.nameservers.truncate(MAX_NAMESERVERS);
    out.searches = dedup(out.searches);
    out.searches.truncate(MAX_SEARCH_PATHS);
    while out.searches.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_SEARCH_CHARS {
        out.searches.pop();
    }
    out
}

/// The pod's `/etc/resolv.conf`, e.g. for `ClusterFirst` in namespace `default`:
///
/// ```text
/// search default.svc.cluster.local svc.cluster.local cluster.local
/// nameserver 10.43.0.10
/// options ndots:5
/// ```
pub fn resolv_conf(pod: &PodDns<'_>) -> String {
    render_resolv(&pod_resolv(pod))
}

/// Renders [`Resolv`] as resolv.conf text (empty sections are left out).
pub fn render_resolv(r: &Resolv) -> String {
    let mut out = String::new();
    if !r.searches.is_empty() {
        out.push_str(&format!("search {}\n", r.searches.join(" ")));
    }
    for ns in &r.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !r.options.is_empty() {
        out.push_str(&format!("options {}\n", r.options.join(" ")));
    }
    out
}

/// One `spec.hostAliases` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// The pod's own names in its hosts file: `hostname`, and with `spec.subdomain` also
/// `<hostname>.<subdomain>.<namespace>.svc.<domain>`.
#[derive(Debug, Clone)]
pub struct PodHostname<'a> {
    pub hostname: &'a str,
    pub subdomain: Option<&'a str>,
    pub namespace: &'a str,
    pub cluster_domain: &'a str,
}

/// The pod's `/etc/hosts`, as the kubelet writes it for a pod on the pod network.
pub fn hosts_file(pod_ip: IpAddr, name: &PodHostname<'_>, host_aliases: &[HostAlias]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    match name.subdomain.filter(|s| !s.is_empty()) {
        Some(sub) => out.push_str(&format!(
            "{pod_ip}\t{h}.{sub}.{ns}.svc.{d}\t{h}\n",
            h = name.hostname,
            ns = name.namespace,
            d = name.cluster_domain
        )),
        None => out.push_str(&format!("{pod_ip}\t{}\n", name.hostname)),
    }
    if !host_aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in host_aliases {
            out.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n\
                        search corp.example. lab.example\noptions edns0 timeout:2\n";

    fn pod<'a>(policy: DnsPolicy, cfg: Option<&'a DnsConfig>, dns: &'a [IpAddr]) -> PodDns<'a> {
        PodDns {
            namespace: "shop",
            policy,
            host_network: false,
            dns_config: cfg,
            cluster_dns: dns,
            cluster_domain: "cluster.local",
            host_resolv_conf: HOST,
        }
    }

    fn cluster_dns() -> Vec<IpAddr> {
        vec!["10.43.0.10".parse().unwrap()]
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_namespace_search() {
        let dns = cluster_dns();
        assert_eq!(
            resolv_conf(&pod(DnsPolicy::ClusterFirst, None, &dns)),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n\
             nameserver 10.43.0.10\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn default_policy_copies_the_host() {
        let dns = cluster_dns();
        assert_eq!(
            resolv_conf(&pod(DnsPolicy::Default, None, &dns)),
            "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n\
             options edns0 timeout:2\n"
        );
        // A hostNetwork pod with the default policy also gets the host's resolver...
        let mut p = pod(DnsPolicy::ClusterFirst, None, &dns);
        p.host_network = true;
        assert_eq!(pod_resolv(&p).nameservers, ["192.0.2.53", "192.0.2.54"]);
        // ...unless it asks for the cluster's.
        p.policy = DnsPolicy::ClusterFirstWithHostNet;
        assert_eq!(pod_resolv(&p).nameservers, ["10.43.0.10"]);
    }

    #[test]
    fn none_policy_takes_only_dns_config_and_config_merges() {
        let dns = cluster_dns();
        let cfg = DnsConfig {
            nameservers: vec!["1.1.1.1".into(), "1.1.1.1".into()],
            searches: vec!["my.example.".into()],
            options: vec![("ndots".into(), Some("2".into())), ("rotate".into(), None)],
        };
        assert_eq!(
            resolv_conf(&pod(DnsPolicy::None, Some(&cfg), &dns)),
            "search my.example\nnameserver 1.1.1.1\noptions ndots:2 rotate\n"
        );
        let merged = pod_resolv(&pod(DnsPolicy::ClusterFirst, Some(&cfg), &dns));
        assert_eq!(merged.nameservers, ["10.43.0.10", "1.1.1.1"]);
        assert_eq!(
            merged.searches.last().map(String::as_str),
            Some("my.example")
        );
        // ndots from dnsConfig replaces the default 5 in its place.
        assert_eq!(merged.options, ["ndots:2", "rotate"]);
        assert_eq!(resolv_conf(&pod(DnsPolicy::None, None, &dns)), "");
    }

    #[test]
    fn limits_nameservers_and_search_paths() {
        let cfg = DnsConfig {
            nameservers: (1..=5).map(|i| format!("10.0.0.{i}")).collect(),
            searches: (0..40).map(|i| format!("d{i}.example")).collect(),
            options: vec![],
        };
        let r = pod_resolv(&pod(DnsPolicy::None, Some(&cfg), &[]));
        assert_eq!(r.nameservers.len(), MAX_NAMESERVERS);
        assert_eq!(r.searches.len(), MAX_SEARCH_PATHS);
        // Without a cluster DNS address ClusterFirst falls back to the host's.
        let r = pod_resolv(&pod(DnsPolicy::ClusterFirst, None, &[]));
        assert_eq!(r.nameservers, ["192.0.2.53", "192.0.2.54"]);
    }

    #[test]
    fn hosts_file_as_the_kubelet_writes_it() {
        let ip: IpAddr = "10.42.0.7".parse().unwrap();
        let name = PodHostname {
            hostname: "web-0",
            subdomain: None,
            namespace: "shop",
            cluster_domain: "cluster.local",
        };
        let plain = hosts_file(ip, &name, &[]);
        assert!(plain.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(plain.ends_with("fe00::2\tip6-allrouters\n10.42.0.7\tweb-0\n"));
        let with = hosts_file(
            ip,
            &PodHostname {
                subdomain: Some("web"),
                ..name
            },
            &[HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: vec!["foo.local".into(), "bar.local".into()],
            }],
        );
        assert!(with.ends_with(
            "10.42.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n\n\
             # Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n"
        ));
    }
}
