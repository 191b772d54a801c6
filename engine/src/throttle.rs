//! Limits on password checks, so a flood of sign-in attempts can neither exhaust memory
//! nor guess passwords quickly.
//!
//! - [`Throttle::hash`]: argon2 computations (each takes 19 MiB and a core for a while)
//!   run on [`HASHES_AT_ONCE`] threads of their own, off the blocking pool that log writes
//!   use; up to [`MAX_WAITING`] more wait for their turn, and anything beyond that is
//!   refused at once with a short `Retry-After`. Two threads also mean at most two
//!   allocator arenas ever hold a hash's memory.
//! - [`Throttle::check`] and [`Throttle::failed`]: after [`FREE_FAILURES`] failures from
//!   one address or for one username, each further failure makes the next attempt wait:
//!   4 s, 8 s, 16 s, ... up to [`MAX_BACKOFF`]. Attempts made while one must wait are refused before any hash
//!   is computed. A successful sign-in clears both.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// argon2 computations at once: two cores' worth, 38 MiB at most.
pub const HASHES_AT_ONCE: usize = 2;
/// Attempts queued for a hash; more are refused instead of piling up.
pub const MAX_WAITING: usize = 16;
/// Failures allowed before attempts must wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A key with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Most addresses and usernames remembered at once: bounds memory whatever the flood.
const MAX_KEYS: usize = 10_000;
/// Longest username remembered (longer ones are cut: no account has such a name).
const MAX_KEY_NAME: usize = 64;

/// Why an attempt is refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// An IPv4 address, or the /64 network of an IPv6 address (one host usually holds a
    /// whole /64).
    Address(IpAddr),
    User(String),
}

impl Key {
    fn address(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::Address(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Key::Address(IpAddr::V6(bits.into()))
                }
            },
            v4 => Key::Address(v4),
        }
    }

    fn user(name: &str) -> Key {
        let mut end = name.len().min(MAX_KEY_NAME);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        Key::User(name[..end].to_owned())
    }
}

struct Record {
    failures: u32,
    last: Instant,
    wait_until: Instant,
}

type Job = Box<dyn FnOnce() + Send>;

pub struct Throttle {
    /// The queue of the hashing threads: bounded, so a flood is refused, not queued.
    jobs: SyncSender<Job>,
    /// A std mutex: held for a map operation, never across an await.
    records: Mutex<HashMap<Key, Record>>,
}

impl Default for Throttle {
    fn default() -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(MAX_WAITING);
        // The threads share the queue's receiver; they end when the throttle is dropped.
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for n in 0..HASHES_AT_ONCE {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("slipway-argon2-{n}"))
                .spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Throttle {
            jobs,
            records: Mutex::new(HashMap::new()),
        }
    }
}

/// The wait after `failures` failures: none for the free ones, then doubling from 4 s.
fn backoff(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        Some(extra) => Duration::from_secs(4u64 << extra.min(20)).min(MAX_BACKOFF),
    }
}

/// Whole seconds, rounded up, at least one: what `Retry-After` says.
pub fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

impl Throttle {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses an attempt from `from` for `user` while either must wait.
    pub fn check(&self, from: IpAddr, user: &str) -> Result<(), Refused> {
        let now = Instant::now();
        let records = self.records();
        let wait = [Key::address(from), Key::user(user)]
            .iter()
            .filter_map(|key| records.get(key))
            .map(|r| r.wait_until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() {
            Ok(())
        } else {
            Err(Refused { retry_after: wait })
        }
    }

    /// Counts a failed attempt against the address and the username.
    pub fn failed(&self, from: IpAddr, user: &str) {
        let now = Instant::now();
        let mut records = self.records();
        for key in [Key::address(from), Key::user(user)] {
            if !records.contains_key(&key) && records.len() >= MAX_KEYS {
                make_room(&mut records, now);
            }
            let record = records.entry(key).or_insert(Record {
                failures: 0,
                last: now,
                wait_until: now,
            });
            if now.duration_since(record.last) >= FORGET_AFTER {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last = now;
            record.wait_until = now + backoff(record.failures);
        }
    }

    /// A successful sign-in: the address and the username start afresh.
    pub fn succeeded(&self, from: IpAddr, user: &str) {
        let mut records = self.records();
        records.remove(&Key::address(from));
        records.remove(&Key::user(user));
    }

    /// Runs `f` (an argon2 hash or check) on one of the [`HASHES_AT_ONCE`] hashing
    /// threads; refused at once when [`MAX_WAITING`] attempts already wait. If the caller
    /// goes away, `f` still runs to its end: the threads are never more than that busy.
    pub async fn hash<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Result<T, Gone>, Refused> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => Ok(rx.await.map_err(|_| Gone)),
            Err(TrySendError::Full(_)) => Err(Refused {
                retry_after: Duration::from_secs(1),
            }),
            Err(TrySendError::Disconnected(_)) => Ok(Err(Gone)),
        }
    }
}

/// The hashing threads are gone (they could not start, or one panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the password hashing threads are not running")]
pub struct Gone;

/// Forgets keys idle for [`FORGET_AFTER`]; if none is, the one idle longest.
fn make_room(records: &mut HashMap<Key, Record>, now: Instant) {
    records.retain(|_, r| now.duration_since(r.last) < FORGET_AFTER);
    if records.len() >= MAX_KEYS
        && let Some(oldest) = records
            .iter()
            .min_by_key(|(_, r)| r.last)
            .map(|(k, _)| k.clone())
    {
        records.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_per_address_and_per_user() {
        let throttle = Throttle::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.check(a, "root"), Ok(()));
            throttle.failed(a, "root");
        }
        assert_eq!(throttle.check(a, "root"), Ok(()), "the free failures");
        throttle.failed(a, "root");
        let refused = throttle.check(a, "other").expect_err("the address waits");
        assert!(refused.retry_after <= Duration::from_secs(4));
        assert!(throttle.check(b, "root").is_err(), "the user waits too");
        assert_eq!(throttle.check(b, "other"), Ok(()));
        throttle.succeeded(a, "root");
        assert_eq!(throttle.check(a, "root"), Ok(()));
    }

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        assert_eq!(backoff(FREE_FAILURES), Duration::ZERO);
        assert_eq!(backoff(FREE_FAILURES + 1), Duration::from_secs(4));
        assert_eq!(backoff(FREE_FAILURES + 4), Duration::from_secs(32));
        assert_eq!(backoff(FREE_FAILURES + 60), MAX_BACKOFF);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(2500)), 3);
        assert_eq!(retry_secs(Duration::ZERO), 1);
    }

    #[test]
    fn ipv6_neighbours_share_a_key_and_memory_is_bounded() {
        let one: IpAddr = "2001:db8::1".parse().expect("ip");
        let two: IpAddr = "2001:db8::ffff:2".parse().expect("ip");
        assert_eq!(Key::address(one), Key::address(two));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(
            Key::address(mapped),
            Key::address("192.0.2.1".parse().expect("ip"))
        );
        let throttle = Throttle::default();
        for n in 0..(MAX_KEYS as u32 + 500) {
            throttle.failed(IpAddr::V4(n.into()), &format!("user{n}"));
        }
        assert!(throttle.records().len() <= MAX_KEYS + 1);
        assert_eq!(Key::user(&"é".repeat(100)), Key::User("é".repeat(32)));
    }

    #[tokio::test]
    async fn hashes_run_a_few_at_a_time_and_the_queue_is_bounded() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let throttle = Arc::new(Throttle::default());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(Mutex::new(hold));
        let attempt = || {
            let (throttle, running, most, hold) = (
                throttle.clone(),
                running.clone(),
                most.clone(),
                hold.clone(),
            );
            tokio::spawn(async move {
                throttle
                    .hash(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let _ = hold.lock().map(|rx| rx.recv());
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .is_ok()
            })
        };
        // Both threads busy (one holds the lock the other waits for)...
        let mut tasks: Vec<_> = (0..HASHES_AT_ONCE).map(|_| attempt()).collect();
        while running.load(Ordering::SeqCst) < HASHES_AT_ONCE {
            tokio::task::yield_now().await;
        }
        // ... then the queue fills, and the rest is refused at once.
        tasks.extend((0..MAX_WAITING + 10).map(|_| attempt()));
        // On this single-threaded runtime, yielding lets every new task try to queue.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // Release every hash: each accepted attempt ends true, each refused one false.
        let mut refused = 0;
        for _ in 0..HASHES_AT_ONCE + MAX_WAITING + 10 {
            let _ = release.send(());
        }
        let mut accepted = 0;
        for task in tasks {
            if task.await.expect("task") {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(most.load(Ordering::SeqCst) <= HASHES_AT_ONCE);
        assert_eq!(accepted, HASHES_AT_ONCE + MAX_WAITING);
        assert_eq!(refused, 10);
    }
}
