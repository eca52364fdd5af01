//! What the agent reads off its machine: capacity (CPUs, memory, disk of the data dir),
//! identity (hostname, kernel, OS image, machine and boot ids) and the node's address
//! (the live pressure signals are [`super::eviction`]'s). Parsers are pure and unit-tested;
//! the readers around them only open files under /proc, /sys and /etc.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::AgentError;

/// Capacity and identity, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Size of the filesystem holding the data dir (kubelet's `ephemeral-storage`).
    pub storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

fn read(path: &str) -> Result<String, AgentError> {
    std::fs::read_to_string(path).map_err(AgentError::io(format!("reading {path}")))
}

/// `/proc/meminfo` → (MemTotal, MemAvailable) in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// `PRETTY_NAME` of an os-release file, as kubelet reports it in `osImage`.
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// The number of running processes from `/proc/loadavg` ("0.1 0.2 0.3 2/345 6789").
pub fn parse_loadavg_processes(text: &str) -> Option<u64> {
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The interface of the default route in `/proc/net/route`.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|l| {
        let mut cols = l.split_whitespace();
        let iface = cols.next()?;
        (cols.next()? == "00000000").then(|| iface.to_string())
    })
}

/// Total and available bytes of the filesystem holding `path`.
pub fn filesystem(path: &Path) -> Result<(u64, u64), AgentError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| AgentError::Host(format!("{} contains a NUL byte", path.display())))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(AgentError::io(format!("statfs {}", path.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize;
    Ok((st.f_blocks * frsize, st.f_bavail * frsize))
}

/// The machine's hostname, lowercased (k3s's default node name).
pub fn hostname() -> Result<String, AgentError> {
    Ok(read("/proc/sys/kernel/hostname")?.trim().to_lowercase())
}

impl HostFacts {
    pub fn read(data_dir: &Path) -> Result<HostFacts, AgentError> {
        let (memory_bytes, _) = parse_meminfo(&read("/proc/meminfo")?)
            .ok_or_else(|| AgentError::Host("/proc/meminfo has no MemTotal/MemAvailable".into()))?;
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32;
        let (storage_bytes, _) = filesystem(data_dir)?;
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| parse_os_release(&t))
            .unwrap_or_else(|| "Linux".into());
        Ok(HostFacts {
            hostname: hostname()?,
            cpus,
            memory_bytes,
            storage_bytes,
            kernel_version: read("/proc/sys/kernel/osrelease")?.trim().to_string(),
            os_image,
            machine_id: std::fs::read_to_string("/etc/machine-id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            boot_id: read("/proc/sys/kernel/random/boot_id")?.trim().to_string(),
        })
    }
}

/// The IPv4 addresses of this network namespace's interfaces that are up, by interface.
fn interface_addresses() -> Vec<(String, Ipv4Addr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        if !up || ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of its family.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: the family is AF_INET, so the address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        // SAFETY: ifa_name is a NUL-terminated interface name.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push((name, ip));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The node's address when `--node-ip` is not given: the address of the interface
/// holding the default route (as k3s picks it), else the first non-loopback address that
/// is up, else 127.0.0.1.
pub fn detect_node_ip() -> IpAddr {
    let addresses = interface_addresses();
    let default_iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_route_interface(&t));
    let on_default = default_iface.and_then(|iface| {
        addresses
            .iter()
            .find(|(n, _)| *n == iface)
            .map(|(_, ip)| *ip)
    });
    let any = addresses
        .iter()
        .map(|(_, ip)| *ip)
        .find(|ip| !ip.is_loopback());
    IpAddr::V4(on_default.or(any).unwrap_or(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_total_and_available_in_bytes() {
        let text =
            "MemTotal:       24600000 kB\nMemFree:         100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some((24_600_000 * 1024, 20_000_000 * 1024))
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn os_release_pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(parse_os_release("NAME=x\n"), None);
    }

    #[test]
    fn loadavg_and_route_table() {
        assert_eq!(
            parse_loadavg_processes("0.10 0.20 0.30 3/412 9999\n"),
            Some(412)
        );
        let routes = "Iface\tDestination\tGateway\tFlags\n\
                      eth1\t0011A8C0\t00000000\t0001\n\
                      eth0\t00000000\t0100A8C0\t0003\n";
        assert_eq!(default_route_interface(routes).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn this_machine_can_be_read() {
        let facts = HostFacts::read(Path::new("/")).expect("host facts");
        assert!(facts.cpus >= 1 && facts.memory_bytes > 0 && facts.storage_bytes > 0);
        assert!(!facts.hostname.is_empty() && !facts.kernel_version.is_empty());
    }
}
