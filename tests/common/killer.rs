//! A fault for any test: every client connection dropped every few
//! hundred milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::Server;

/// Kills every client connection but its own every 50-250 ms until
/// stopped, as a flaky network or a proxy restart would. Returns how many
/// kills found connections to cut.
pub struct ConnectionKiller {
    stop: Arc<AtomicBool>,
    kills: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl ConnectionKiller {
    pub fn start(server: &Server, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicU64::new(0));
        let url = server.url();
        let thread = std::thread::spawn({
            let (stop, kills) = (stop.clone(), kills.clone());
            move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
                // Bounded: at most 800 rounds (about two minutes).
                for _ in 0..800 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(rng.u64(50..250)));
                    let cut: u64 = redis::cmd("CLIENT")
                        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
                        .query(&mut con)
                        .unwrap_or(0);
                    if cut > 0 {
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        ConnectionKiller {
            stop,
            kills,
            thread,
        }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.kills.load(Ordering::Relaxed)
    }
}
