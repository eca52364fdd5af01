//! The node's nftables table `ip skiff`: masquerade for pod traffic that leaves the
//! cluster CIDR, and the DNAT rules of hostPorts. The whole table is rendered as text
//! and handed to Debian's `nft -f -` in one transaction (create-if-missing, delete,
//! re-create), so the kernel swaps old rules for new atomically and a restart converges
//! to the same table. Rules in other tables are never touched.
//!
//! Why the `nft` binary and not a crate: the Rust crates that speak nftables either
//! wrap libnftables through C bindings (an extra C library to build) or generate nft's
//! JSON and still run the binary; a table this small is clearer as nft's own syntax,
//! and the rendered text is what the unit tests check.

use std::net::Ipv4Addr;

use tokio::io::AsyncWriteExt as _;

use super::cidr::Ipv4Cidr;
use super::{NetError, Protocol};

/// The table's family and name.
pub const TABLE: &str = "skiff";

/// Packet mark bit set on hostPort DNAT so that postrouting masquerades the hairpin
/// case (a pod reaching a hostPort served on its own node by a pod on the same bridge).
pub const HOSTPORT_MARK: u32 = 0x2000;

/// One hostPort mapping to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPortRule {
    pub protocol: Protocol,
    /// Only traffic to this node address; `None`: any local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
    /// `namespace/name` of the pod, kept as the rule's comment.
    pub pod: String,
}

/// The ruleset the node needs, as one `nft -f` transaction.
/// `no_masquerade`: destinations that pods reach with their own address (the cluster
/// and service CIDRs); multicast is never masqueraded either.
pub fn render(pod_cidr: &Ipv4Cidr, no_masquerade: &[Ipv4Cidr], rules: &[HostPortRule]) -> String {
    let keep: Vec<String> = no_masquerade
        .iter()
        .map(|c| c.to_string())
        .chain(["224.0.0.0/4".to_string()])
        .collect();
    let keep = keep.join(", ");
    let mut hostports = String::new();
    for r in rules {
        let daddr = r
            .host_ip
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        hostports.push_str(&format!(
            "\t\t{daddr}{proto} dport {hp} meta mark set meta mark | {mark:#06x} \
             dnat to {ip}:{cp} comment \"{comment}\"\n",
            proto = r.protocol.nft_name(),
            hp = r.host_port,
            mark = HOSTPORT_MARK,
            ip = r.pod_ip,
            cp = r.container_port,
            comment = sanitize_comment(&r.pod),
        ));
    }
    format!(
        "table ip {TABLE} {{}}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain hostports {{\n\
         {hostports}\
         \t}}\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tfib daddr type local jump hostports\n\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tip daddr != 127.0.0.0/8 fib daddr type local jump hostports\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & {mark:#06x} == {mark:#06x} ip saddr {pod_cidr} masquerade \
         comment \"hostPort hairpin\"\n\
         \t\tip saddr {pod_cidr} ip daddr != {{ {keep} }} \
         masquerade comment \"pods to outside the cluster\"\n\
         \t}}\n\
         }}\n",
        mark = HOSTPORT_MARK,
    )
}

/// The transaction that removes skiff's table (for uninstalling a node).
pub fn render_delete() -> String {
    format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")
}

fn sanitize_comment(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_'))
        .take(120)
        .collect()
}

/// Feeds `ruleset` to `nft -f -` (in the network namespace of this process).
pub async fn apply(nft: &std::path::Path, ruleset: &str) -> Result<(), NetError> {
    let mut child = tokio::process::Command::new(nft)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NetError::io(format!("running {} -f -", nft.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .await
            .map_err(NetError::io("writing the ruleset to nft"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(NetError::io("waiting for nft"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Nft {
            message: format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_masquerade_and_hostports() {
        let pod: Ipv4Cidr = "10.42.0.0/24".parse().unwrap();
        let cluster: [Ipv4Cidr; 2] = [
            "10.42.0.0/16".parse().unwrap(),
            "10.43.0.0/16".parse().unwrap(),
        ];
        let rules = [
            HostPortRule {
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 8080,
                pod_ip: Ipv4Addr::new(10, 42, 0, 2),
                container_port: 80,
                pod: "default/web\"; flush ruleset".into(),
            },
            HostPortRule {
                protocol: Protocol::Udp,
                host_ip: Some(Ipv4Addr::new(192, 0, 2, 7)),
                host_port: 53,
                pod_ip: Ipv4Addr::new(10, 42, 0, 3),
                container_port: 5353,
                pod: "kube-system/dns".into(),
            },
        ];
        let text = render(&pod, &cluster[..], &rules);
        assert!(text.starts_with("table ip skiff {}\ndelete table ip skiff\ntable ip skiff {\n"));
        assert!(
            text.contains(
                "\t\ttcp dport 8080 meta mark set meta mark | 0x2000 dnat to 10.42.0.2:80 \
             comment \"default/webflushruleset\"\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\t\tip daddr 192.0.2.7 udp dport 53 meta mark set meta mark | 0x2000 \
             dnat to 10.42.0.3:5353 comment \"kube-system/dns\"\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "\t\tip saddr 10.42.0.0/24 ip daddr != { 10.42.0.0/16, 10.43.0.0/16, 224.0.0.0/4 } masquerade"
        ), "{text}");
        assert!(text.contains("meta mark & 0x2000 == 0x2000 ip saddr 10.42.0.0/24 masquerade"));
        assert!(text.contains("type nat hook prerouting priority dstnat;"));
        // nft names the priority dstnat only in prerouting; output says it in numbers.
        assert!(text.contains("type nat hook output priority -100;"));
        assert!(text.contains("ip daddr != 127.0.0.0/8 fib daddr type local jump hostports"));
        // Without hostPorts the chain is empty but present.
        let empty = render(&pod, &cluster[..], &[]);
        assert!(empty.contains("\tchain hostports {\n\t}\n"), "{empty}");
        assert_eq!(
            render_delete(),
            "table ip skiff {}\ndelete table ip skiff\n"
        );
    }
}
