//! Resident memory of the server under test, from `/proc` (Linux): its
//! `VmRSS`, and its pid found from the port it listens on when not given.

use std::fs;

use anyhow::{Context, Result, bail};

/// A `Vm*` line of `/proc/<pid>/status`, KiB.
pub fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    vm_line(&text, key).with_context(|| format!("no {key} in {path}"))
}

fn vm_line(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The pid of the process listening on TCP `port` (v4 or v6), looked up
/// through the socket's inode; only processes this user may inspect.
pub fn pid_listening_on(port: u16) -> Result<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(
                text.lines()
                    .skip(1)
                    .filter_map(|l| listening_inode(l, port)),
            );
        }
    }
    if inodes.is_empty() {
        bail!("nothing listens on port {port}");
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").context("reading /proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                return Ok(pid);
            }
        }
    }
    bail!("no process of this user holds the socket listening on port {port} (give --pid)")
}

/// The inode of a `/proc/net/tcp{,6}` row in state LISTEN on `port`.
fn listening_inode(row: &str, port: u16) -> Option<u64> {
    let f: Vec<&str> = row.split_whitespace().collect();
    let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
    // State 0A is TCP_LISTEN.
    (local_port == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_lines() {
        let s = "Name:\ttessera\nVmHWM:\t   91234 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(vm_line(s, "VmRSS"), Some(20480));
        assert_eq!(vm_line(s, "VmHWM"), Some(91234));
        assert_eq!(vm_line(s, "VmSwap"), None);
    }

    #[test]
    fn finds_the_listening_row_of_a_port() {
        let listen = "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0";
        let established = "   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 434343 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(listening_inode(listen, 8080), Some(424242));
        assert_eq!(listening_inode(listen, 8081), None);
        assert_eq!(listening_inode(established, 8080), None);
    }

    #[test]
    fn finds_this_process_by_its_listening_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port).unwrap(), std::process::id());
        assert!(status_kib(std::process::id(), "VmRSS").unwrap() > 0);
    }
}
