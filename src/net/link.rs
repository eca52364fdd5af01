//! Links, addresses and routes over rtnetlink: the node's bridge, a pod's veth pair and
//! the pod side's configuration. Every function acts in the namespace of the netlink
//! socket behind the handle it is given ([`super::netns::netlink_in`] for a pod's).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use futures::TryStreamExt as _;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::NetError;

fn nl_err(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Netlink { context, source }
}

/// The errno of a netlink error answer, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The index of link `name`, or `None` if there is none.
pub async fn index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl_err(format!("looking up link {name}"))(e)),
    }
}

/// Deletes link `index`; already gone is fine.
pub async fn delete(handle: &Handle, index: u32, name: &str) -> Result<(), NetError> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl_err(format!("deleting link {name}"))(e)),
    }
}

/// The bridge `name` exists, is up, has the MTU and holds `gateway/prefix_len` as its
/// only IPv4 address. Returns its index.
pub async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    mtu: u32,
    gateway: Ipv4Addr,
    prefix_len: u8,
) -> Result<u32, NetError> {
    let idx = match index(handle, name).await? {
        Some(idx) => idx,
        None => {
            // A fixed MAC: a bridge otherwise takes the lowest MAC of its ports, and
            // the gateway's MAC would change as pods come and go.
            let o = gateway.octets();
            let msg = LinkBridge::new(name)
                .mtu(mtu)
                .address(vec![0x02, 0x73, 0x6b, o[1], o[2], o[3]])
                .build();
            match handle.link().add(msg).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl_err(format!("creating bridge {name}"))(e)),
            }
            index(handle, name).await?.ok_or_else(|| NetError::Config {
                message: format!("bridge {name} vanished right after it was created"),
            })?
        }
    };
    handle
        .link()
        .set(LinkUnspec::new_with_index(idx).mtu(mtu).up().build())
        .execute()
        .await
        .map_err(nl_err(format!("setting bridge {name} up")))?;
    ensure_only_address(handle, idx, name, gateway, prefix_len).await?;
    Ok(idx)
}

/// `addr/prefix_len` is on link `idx`, and no other IPv4 address is.
async fn ensure_only_address(
    handle: &Handle,
    idx: u32,
    name: &str,
    addr: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), NetError> {
    let mut present = false;
    let mut addrs = handle.address().get().set_link_index_filter(idx).execute();
    let mut stale = Vec::new();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(nl_err(format!("listing addresses of {name}")))?
    {
        let v4 = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        match v4 {
            Some(ip) if ip == addr && msg.header.prefix_len == prefix_len => present = true,
            Some(_) => stale.push(msg),
            None => {}
        }
    }
    for msg in stale {
        handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(nl_err(format!("removing an old address from {name}")))?;
    }
    if !present {
        handle
            .address()
            .add(idx, IpAddr::V4(addr), prefix_len)
            .replace()
            .execute()
            .await
            .map_err(nl_err(format!("adding {addr}/{prefix_len} to {name}")))?;
    }
    Ok(())
}

/// A veth pair: `host_name` in the handle's namespace, on bridge `bridge` and up, and
/// its peer `pod_name` created directly inside the namespace open at `netns_fd`.
pub async fn create_veth(
    handle: &Handle,
    host_name: &str,
    pod_name: &str,
    netns_fd: RawFd,
    bridge: u32,
    mtu: u32,
) -> Result<(), NetError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(pod_name.to_string())
        .mtu(mtu)
        .setns_by_fd(netns_fd)
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_name.to_string())
        .mtu(mtu)
        .controller(bridge)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(nl_err(format!("creating veth pair {host_name}/{pod_name}")))
}

/// The host end of a pod's veth: on the bridge, up, with hairpin mode so that a pod can
/// reach itself through a hostPort.
pub async fn attach_host_end(
    handle: &Handle,
    idx: u32,
    name: &str,
    bridge: u32,
) -> Result<(), NetError> {
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(idx)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("attaching {name} to the bridge")))?;
    handle
        .link()
        .set_port(LinkBridgePort::new(idx).hairpin(true).build())
        .execute()
        .await
        .map_err(nl_err(format!("setting hairpin mode on {name}")))
}

/// Inside a pod's namespace: `lo` up; `eth0` (index `eth0`) up with `ip/prefix_len` and
/// a default route via `gateway`.
pub async fn configure_pod_side(
    handle: &Handle,
    eth0: u32,
    ip: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    if let Some(lo) = index(handle, "lo").await? {
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(nl_err("setting lo up in the pod"))?;
    }
    ensure_only_address(handle, eth0, "the pod's eth0", ip, prefix_len).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(eth0).up().build())
        .execute()
        .await
        .map_err(nl_err("setting the pod's eth0 up"))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(eth0)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(nl_err(format!(
            "adding the pod's default route via {gateway}"
        )))
}
