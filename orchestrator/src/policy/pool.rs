//! The checkers: [`check`] runs each check on a thread of its own (with a large
//! stack), at most [`CHECKERS`] at once, and waits for it at most [`CHECK_BUDGET`];
//! a check that overruns is refused at once but keeps its checker until it ends
//! ([`checker_status`] counts those).
//!
//! Uses `super::verdict` and `super::rules` (the check it runs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::{ErrorType, RunError};

use super::rules::check_here;
use super::verdict::{Approved, Scope, not_allowed, refusal};

/// How long a caller waits for its query's check, a free checker included.
pub const CHECK_BUDGET: Duration = Duration::from_millis(500);
/// Checks that may run at once (each on a thread of its own).
pub const CHECKERS: usize = 2;
/// Stack of the thread a check runs on.
const CHECK_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Checks `sql` against the policy for `scope`, within [`CHECK_BUDGET`].
///
/// Blocks the calling thread for at most the budget (call it off the async
/// runtime, e.g. with `spawn_blocking`).
pub fn check(sql: &str, scope: &Scope) -> Result<Approved, RunError> {
    CHECKER_POOL.run(CHECK_BUDGET, sql.to_string(), scope.clone(), check_here)
}

/// The state of the policy's checkers, for readiness reports and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerStatus {
    /// Checkers in all ([`CHECKERS`]).
    pub checkers: usize,
    /// Checkers running a check now, overrunning ones included.
    pub busy: usize,
    /// Checks still running whose caller was refused because they overran the
    /// budget. While every checker is held by one, every query is refused.
    pub overrunning: usize,
}

/// How the policy's checkers are doing.
pub fn checker_status() -> CheckerStatus {
    CHECKER_POOL.status()
}

static CHECKER_POOL: CheckerPool = CheckerPool::new(CHECKERS);

/// At most `size` checks at once, each on a thread of its own. A check whose
/// caller stopped waiting keeps its place until it ends: a thread cannot be killed,
/// and the place it holds is what bounds the CPU that overrunning checks take.
struct CheckerPool {
    size: usize,
    busy: Mutex<usize>,
    freed: Condvar,
    overrunning: AtomicUsize,
}

/// One check, shared by its caller and its thread.
struct Job {
    state: Mutex<JobState>,
    done: Condvar,
}

enum JobState {
    Running,
    Finished(Result<Approved, RunError>),
    /// The caller stopped waiting; the thread still runs.
    Abandoned,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can be left half-updated by a panic.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CheckerPool {
    const fn new(size: usize) -> CheckerPool {
        CheckerPool { size, busy: Mutex::new(0), freed: Condvar::new(), overrunning: AtomicUsize::new(0) }
    }

    fn status(&self) -> CheckerStatus {
        CheckerStatus {
            checkers: self.size,
            busy: *lock(&self.busy),
            overrunning: self.overrunning.load(Ordering::SeqCst),
        }
    }

    /// Runs `work(sql, scope)` on a checker thread and waits for it at most `budget`.
    fn run(
        &'static self,
        budget: Duration,
        sql: String,
        scope: Scope,
        work: fn(&str, &Scope) -> Result<Approved, RunError>,
    ) -> Result<Approved, RunError> {
        let deadline = Instant::now() + budget;
        let too_complex = || not_allowed(format!("the query is too complex to check within {} ms", budget.as_millis()));
        if !self.take_place(deadline) {
            let overrunning = self.overrunning.load(Ordering::SeqCst);
            return Err(not_allowed(format!(
                "the query could not be checked within {} ms: the SQL checkers are busy \
                 ({overrunning} of {} with queries too complex to check); try again later",
                budget.as_millis(),
                self.size
            )));
        }
        let job = Arc::new(Job { state: Mutex::new(JobState::Running), done: Condvar::new() });
        let thread_job = job.clone();
        let spawned =
            std::thread::Builder::new().name("sql-policy".into()).stack_size(CHECK_STACK_BYTES).spawn(move || {
                let result = std::panic::catch_unwind(|| work(&sql, &scope))
                    .unwrap_or_else(|_| Err(refusal(ErrorType::Internal, "the SQL policy check panicked")));
                let mut state = lock(&thread_job.state);
                let abandoned = matches!(*state, JobState::Abandoned);
                if abandoned {
                    self.overrunning.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!("an SQL policy check that overran its budget has ended");
                }
                // Freed before the caller hears back, so a caller that got its answer
                // never sees its own check still holding a checker.
                self.free_place();
                if !abandoned {
                    *state = JobState::Finished(result);
                    thread_job.done.notify_all();
                }
            });
        if let Err(e) = spawned {
            self.free_place();
            return Err(refusal(ErrorType::Internal, format!("cannot start the policy check: {e}")));
        }
        let state = lock(&job.state);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (mut state, _) = job
            .done
            .wait_timeout_while(state, timeout, |s| matches!(s, JobState::Running))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match std::mem::replace(&mut *state, JobState::Abandoned) {
            JobState::Finished(result) => result,
            JobState::Running => {
                self.overrunning.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(budget_ms = budget.as_millis() as u64, "an SQL policy check overran its budget");
                Err(too_complex())
            }
            JobState::Abandoned => Err(too_complex()),
        }
    }

    /// Waits until `deadline` for a free place; false if none came.
    fn take_place(&self, deadline: Instant) -> bool {
        let busy = lock(&self.busy);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (mut busy, _) = self
            .freed
            .wait_timeout_while(busy, timeout, |busy| *busy >= self.size)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *busy >= self.size {
            return false;
        }
        *busy += 1;
        true
    }

    fn free_place(&self) {
        *lock(&self.busy) -= 1;
        self.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            dataset_id: "ecommerce".into(),
            tables: vec!["orders".into(), "order_items".into(), "inventory".into()],
        }
    }

    fn slow_check(sql: &str, _scope: &Scope) -> Result<Approved, RunError> {
        let ms: u64 = sql.parse().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        Ok(Approved { tables: vec![], explain: false })
    }

    fn pool(size: usize) -> &'static CheckerPool {
        Box::leak(Box::new(CheckerPool::new(size)))
    }

    #[test]
    fn a_check_past_the_budget_is_refused_at_once_and_keeps_its_checker_until_it_ends() {
        let pool = pool(2);
        let budget = Duration::from_millis(200);
        let started = Instant::now();
        let r = pool.run(budget, "1500".into(), scope(), slow_check).expect_err("overran");
        let waited = started.elapsed();
        assert_eq!(r.error_type, ErrorType::SqlNotAllowed);
        assert_eq!(r.message, "the query is too complex to check within 200 ms");
        assert!(waited >= budget && waited < budget + Duration::from_millis(300), "{waited:?}");
        assert_eq!(pool.status(), CheckerStatus { checkers: 2, busy: 1, overrunning: 1 });

        // The other checker still serves.
        assert!(pool.run(budget, "0".into(), scope(), slow_check).is_ok());
        // With both held by overrunning checks, callers are refused within the budget.
        let _ = pool.run(budget, "1500".into(), scope(), slow_check).expect_err("overran");
        assert_eq!(pool.status(), CheckerStatus { checkers: 2, busy: 2, overrunning: 2 });
        let started = Instant::now();
        let r = pool.run(budget, "0".into(), scope(), slow_check).expect_err("busy");
        assert!(started.elapsed() < budget + Duration::from_millis(300));
        assert_eq!(r.error_type, ErrorType::SqlNotAllowed);
        assert_eq!(
            r.message,
            "the query could not be checked within 200 ms: the SQL checkers are busy \
             (2 of 2 with queries too complex to check); try again later"
        );

        // Once the overrunning checks end, their checkers are free again.
        std::thread::sleep(Duration::from_millis(1_800));
        assert_eq!(pool.status(), CheckerStatus { checkers: 2, busy: 0, overrunning: 0 });
        assert!(pool.run(budget, "0".into(), scope(), slow_check).is_ok());
    }

    #[test]
    fn a_waiting_caller_gets_a_checker_as_soon_as_one_is_free() {
        let pool = pool(1);
        let first = std::thread::spawn(|| pool.run(Duration::from_secs(2), "300".into(), scope(), slow_check));
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        assert!(pool.run(Duration::from_secs(2), "0".into(), scope(), slow_check).is_ok());
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(first.join().unwrap().is_ok());
        assert_eq!(pool.status(), CheckerStatus { checkers: 1, busy: 0, overrunning: 0 });
    }

    #[test]
    fn the_real_check_is_bounded_by_the_budget_too() {
        // A large query (18 000 tokens) cannot be parsed in a millisecond.
        let big = format!("SELECT {} FROM orders", vec!["1"; 9_000].join(" + "));
        let pool = pool(1);
        let started = Instant::now();
        let r = pool.run(Duration::from_millis(1), big.clone(), scope(), check_here).expect_err("overran");
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        assert_eq!(r.message, "the query is too complex to check within 1 ms");
        // Given time, the same check answers.
        let approved = pool.run(Duration::from_secs(5), big, scope(), check_here).unwrap();
        assert_eq!(approved.tables, vec!["orders"]);
    }

    #[test]
    fn a_panicking_check_is_an_internal_error_and_frees_its_checker() {
        fn panics(_: &str, _: &Scope) -> Result<Approved, RunError> {
            panic!("boom")
        }
        let pool = pool(1);
        let r = pool.run(Duration::from_secs(1), String::new(), scope(), panics).expect_err("panicked");
        assert_eq!(r, refusal(ErrorType::Internal, "the SQL policy check panicked"));
        assert_eq!(pool.status().busy, 0);
    }
}
