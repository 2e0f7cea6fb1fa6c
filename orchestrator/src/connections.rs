//! The accept loop's connection budget: how many connections the service holds
//! open at once (MAX_CONNECTIONS), how many of them one client address may hold
//! (MAX_CONNECTIONS_PER_ADDRESS), and a small reserve past MAX_CONNECTIONS that
//! serves only the probe routes, so `/healthz` and `/readyz` still answer while a
//! wave of clients holds every connection (each waiting out the header timeout).
//!
//! Deciding happens at accept, before a byte is read: a connection is served in
//! full, served for the probes only, or closed at once.
//!
//! A leaf: uses nothing of this crate (the server asks it, and counts and logs
//! what it refuses).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections past MAX_CONNECTIONS that are still served, for the probe routes only
/// (one request each, with a short header timeout).
pub const PROBE_RESERVE: usize = 16;
/// Reserve connections one address may hold, so a wave from a few addresses cannot
/// take the whole reserve.
pub const PROBE_RESERVE_PER_ADDRESS: usize = 2;

/// What connections are counted under: an IPv4 address, or the /64 prefix of an
/// IPv6 one (a single host is routinely given a whole /64). An IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`, a dual-stack listener's view of an IPv4 client) is
/// its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => AddressKey(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX))))),
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// How an accepted connection is served.
#[derive(Debug)]
pub enum Admitted {
    /// Every route, within the budget.
    Full(ConnectionGuard),
    /// The budget is spent: the probe routes only, from the reserve.
    ProbesOnly(ConnectionGuard),
}

/// Why an accepted connection is closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already holds MAX_CONNECTIONS_PER_ADDRESS connections.
    AddressLimit,
    /// MAX_CONNECTIONS are open and the probe reserve is full (or this address holds
    /// its share of it).
    ConnectionLimit,
}

impl Refusal {
    /// The `reason` label of `csv_analyst_connections_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AddressLimit => "address_limit",
            Refusal::ConnectionLimit => "connection_limit",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Open connections of the address, the reserve's included.
    open: usize,
    /// Of those, in the probe reserve.
    reserve: usize,
}

type CountMap = Arc<Mutex<HashMap<AddressKey, Counts>>>;

fn lock(counts: &CountMap) -> MutexGuard<'_, HashMap<AddressKey, Counts>> {
    // Counting cannot be left half-done by a panic: take the map as it is.
    counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One listener's budget. Cloning shares it.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    connections: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    reserve_per_address: usize,
    /// `None`: no per-address cap.
    per_address: Option<usize>,
    counts: CountMap,
}

impl ConnectionBudget {
    /// `max_connections` in full; of them at most `per_address` from one address
    /// (0: no cap); past them, `reserve` probe-only connections, at most
    /// `reserve_per_address` from one address.
    pub fn new(
        max_connections: usize,
        per_address: usize,
        reserve: usize,
        reserve_per_address: usize,
    ) -> ConnectionBudget {
        ConnectionBudget {
            connections: Arc::new(Semaphore::new(max_connections)),
            reserve: Arc::new(Semaphore::new(reserve)),
            reserve_per_address,
            per_address: (per_address > 0).then_some(per_address),
            counts: Arc::default(),
        }
    }

    /// The main listener's budget: MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS and
    /// the probe reserve.
    pub fn main(max_connections: usize, per_address: usize) -> ConnectionBudget {
        ConnectionBudget::new(max_connections, per_address, PROBE_RESERVE, PROBE_RESERVE_PER_ADDRESS)
    }

    /// Decides how a connection from `ip`, just accepted, is served; the guard gives
    /// its place back when the connection ends.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, Refusal> {
        let key = AddressKey::of(ip);
        let mut counts = lock(&self.counts);
        let counted = counts.get(&key).map_or((0, 0), |c| (c.open, c.reserve));
        if self.per_address.is_some_and(|cap| counted.0 >= cap) {
            return Err(Refusal::AddressLimit);
        }
        let (permit, reserve) = match self.connections.clone().try_acquire_owned() {
            Ok(permit) => (permit, false),
            Err(_) if counted.1 < self.reserve_per_address => match self.reserve.clone().try_acquire_owned() {
                Ok(permit) => (permit, true),
                Err(_) => return Err(Refusal::ConnectionLimit),
            },
            Err(_) => return Err(Refusal::ConnectionLimit),
        };
        let entry = counts.entry(key).or_default();
        entry.open += 1;
        entry.reserve += usize::from(reserve);
        let guard = ConnectionGuard { _permit: permit, key, reserve, counts: self.counts.clone() };
        Ok(if reserve { Admitted::ProbesOnly(guard) } else { Admitted::Full(guard) })
    }

    /// Open connections of `ip`'s address (the reserve's included).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        lock(&self.counts).get(&AddressKey::of(ip)).map_or(0, |c| c.open)
    }
}

/// A connection's place in the budget, given back on drop.
#[derive(Debug)]
pub struct ConnectionGuard {
    _permit: OwnedSemaphorePermit,
    key: AddressKey,
    reserve: bool,
    counts: CountMap,
}

impl ConnectionGuard {
    /// The address this connection is counted under.
    pub fn key(&self) -> AddressKey {
        self.key
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(entry) = counts.get_mut(&self.key) {
            entry.open = entry.open.saturating_sub(1);
            if self.reserve {
                entry.reserve = entry.reserve.saturating_sub(1);
            }
            if entry.open == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn full(admitted: Result<Admitted, Refusal>) -> ConnectionGuard {
        match admitted {
            Ok(Admitted::Full(guard)) => guard,
            other => panic!("expected a full connection, got {other:?}"),
        }
    }

    #[test]
    fn one_address_is_capped_and_others_still_get_in() {
        let budget = ConnectionBudget::new(10, 3, 0, 0);
        let held: Vec<ConnectionGuard> = (0..3).map(|_| full(budget.admit(ip("10.0.0.1")))).collect();
        assert_eq!(budget.admit(ip("10.0.0.1")).unwrap_err(), Refusal::AddressLimit);
        let other = full(budget.admit(ip("10.0.0.2")));
        assert_eq!(budget.open_from(ip("10.0.0.1")), 3);
        drop(held);
        assert_eq!(budget.open_from(ip("10.0.0.1")), 0, "closed connections give their place back");
        let _again = full(budget.admit(ip("10.0.0.1")));
        drop(other);
        assert_eq!(budget.open_from(ip("10.0.0.2")), 0);
    }

    #[test]
    fn zero_means_no_per_address_cap() {
        let budget = ConnectionBudget::new(50, 0, 0, 0);
        let _held: Vec<ConnectionGuard> = (0..50).map(|_| full(budget.admit(ip("10.0.0.1")))).collect();
        assert_eq!(budget.admit(ip("10.0.0.1")).unwrap_err(), Refusal::ConnectionLimit);
    }

    #[test]
    fn past_the_budget_the_reserve_serves_probes_a_few_per_address() {
        let budget = ConnectionBudget::new(2, 0, 3, 2);
        let _a = full(budget.admit(ip("10.0.0.1")));
        let _b = full(budget.admit(ip("10.0.0.2")));
        let mut reserved = Vec::new();
        for _ in 0..2 {
            match budget.admit(ip("10.0.0.1")) {
                Ok(Admitted::ProbesOnly(guard)) => reserved.push(guard),
                other => panic!("expected the reserve, got {other:?}"),
            }
        }
        assert_eq!(budget.admit(ip("10.0.0.1")).unwrap_err(), Refusal::ConnectionLimit, "its share of the reserve");
        let third = budget.admit(ip("10.0.0.3"));
        assert!(matches!(third, Ok(Admitted::ProbesOnly(_))), "{third:?}");
        assert_eq!(budget.admit(ip("10.0.0.4")).unwrap_err(), Refusal::ConnectionLimit, "the reserve is full");
        drop(reserved);
        assert!(matches!(budget.admit(ip("10.0.0.4")), Ok(Admitted::ProbesOnly(_))));
    }

    #[test]
    fn reserve_connections_count_against_the_address_cap() {
        let budget = ConnectionBudget::new(1, 2, 4, 4);
        let _a = full(budget.admit(ip("10.0.0.1")));
        let _b = budget.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(budget.admit(ip("10.0.0.1")).unwrap_err(), Refusal::AddressLimit);
    }

    #[test]
    fn ipv6_counts_by_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(AddressKey::of(ip("2001:db8:1:2::1")), AddressKey::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(AddressKey::of(ip("2001:db8:1:2::1")), AddressKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(AddressKey::of(ip("::ffff:10.0.0.1")), AddressKey::of(ip("10.0.0.1")));
        assert_eq!(AddressKey::of(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
        let budget = ConnectionBudget::new(10, 2, 0, 0);
        let _a = full(budget.admit(ip("2001:db8::1")));
        let _b = full(budget.admit(ip("2001:db8::2")));
        assert_eq!(budget.admit(ip("2001:db8::3")).unwrap_err(), Refusal::AddressLimit);
        let _c = full(budget.admit(ip("2001:db8:0:1::1")));
    }
}
