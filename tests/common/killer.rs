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
        Self::on(vec![server.url()], seed)
    }

    /// Cuts client connections on every server of `urls` (the nodes of a
    /// cluster) at once.
    pub fn on(urls: Vec<String>, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, kills) = (stop.clone(), kills.clone());
            move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut cons: Vec<redis::Connection> = urls
                    .iter()
                    .map(|url| {
                        redis::Client::open(url.as_str())
                            .unwrap()
                            .get_connection()
                            .unwrap()
                    })
                    .collect();
                // Bounded: at most 800 rounds (about two minutes).
                for _ in 0..800 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(rng.u64(50..250)));
                    let mut cut = 0u64;
                    for con in &mut cons {
                        cut += redis::cmd("CLIENT")
                            .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
                            .query::<u64>(con)
                            .unwrap_or(0);
                    }
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
