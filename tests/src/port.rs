//! Picking free loopback ports.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Offset of the Redis Cluster bus port from the client port.
pub(crate) const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// Ports are drawn from `[LOW, HIGH)`. Both the port and its cluster bus port
/// (`+10000`, i.e. `[25000, 32000)`) stay below the kernel's ephemeral range on Linux
/// (32768+) and macOS (49152+), so outgoing client connections cannot grab them between
/// the check and `redis-server` binding them.
const LOW: u16 = 15_000;
const HIGH: u16 = 22_000;

/// Ports already handed out by this process (never handed out twice, even after the
/// server is gone, so parallel tests in one binary cannot collide).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn usable(port: u16) -> bool {
    port != 0
        && port
            .checked_add(CLUSTER_BUS_OFFSET)
            .is_some_and(|bus| bindable(port) && bindable(bus))
}

/// Returns a port on `127.0.0.1` that is currently free, and whose cluster bus port
/// (`port + 10000`) is free as well, so the result is usable for cluster nodes too.
///
/// Ports are picked randomly from 15000..22000 (below the OS ephemeral range), checked by
/// binding, and never returned twice by the same process. There is an unavoidable race
/// with other processes; [`crate::ServerBuilder::start`] retries with a fresh port if
/// `redis-server` fails to bind.
///
/// # Panics
///
/// Panics if no free port can be found at all.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    let span = u64::from(HIGH - LOW);
    for _ in 0..20_000 {
        let port = LOW + u16::try_from(random_u64() % span).expect("span fits in u16");
        if !handed_out.contains(&port) && usable(port) {
            handed_out.insert(port);
            return port;
        }
    }
    // Fall back to OS-assigned ports.
    for _ in 0..1_000 {
        let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        drop(listener);
        let port = addr.port();
        if !handed_out.contains(&port) && usable(port) {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("could not find a free loopback port (with port+10000 also free)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for p in ports {
            assert!(bindable(p) && bindable(p + CLUSTER_BUS_OFFSET));
        }
    }
}
