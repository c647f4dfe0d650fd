//! Rayon thread pools, one per requested size, safe across `fork()`.
//!
//! A pool created before a fork has no threads in the child (fork copies only
//! the calling thread), so work sent to it would wait forever: the classic
//! DataLoader-worker deadlock. Pools remember the PID that built them and a
//! child builds fresh ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// Environment variable that sets the default thread count.
pub const THREADS_ENV: &str = "FASTPREP_NUM_THREADS";

struct Pools {
    pid: u32,
    by_size: HashMap<usize, Arc<ThreadPool>>,
}

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

/// `$FASTPREP_NUM_THREADS`, else the CPUs this process may use (affinity and
/// cgroup quotas included).
pub fn default_threads() -> usize {
    std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn pool(threads: usize) -> Arc<ThreadPool> {
    let pid = std::process::id();
    let mut guard = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.as_ref().is_some_and(|p| p.pid != pid) {
        // Forked: the old pools' threads do not exist here. Dropping them would
        // touch their (copied, possibly locked) internals, so leak them instead.
        std::mem::forget(guard.take());
    }
    let pools = guard.get_or_insert_with(|| Pools {
        pid,
        by_size: HashMap::new(),
    });
    pools
        .by_size
        .entry(threads)
        .or_insert_with(|| {
            Arc::new(
                ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("fastprep-{i}"))
                    .build()
                    .expect("cannot start fastprep worker threads"),
            )
        })
        .clone()
}

/// Runs `work` inside a pool of `threads` (default: [`default_threads`]).
pub fn run_in_pool<R: Send>(threads: Option<usize>, work: impl FnOnce() -> R + Send) -> R {
    let threads = threads.filter(|&n| n > 0).unwrap_or_else(default_threads);
    pool(threads).install(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_the_requested_number_of_threads() {
        assert_eq!(run_in_pool(Some(3), rayon::current_num_threads), 3);
        assert_eq!(run_in_pool(Some(1), rayon::current_num_threads), 1);
    }
}
