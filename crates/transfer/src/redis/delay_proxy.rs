//! A TCP proxy that holds every segment for a fixed time in each
//! direction and can cap the bandwidth: Redis "on another host" for the
//! tests and the benchmarks, on one machine (the kernel here has no
//! `netem`). A fixture like [`super::LocalRedis`], not part of a transfer.
//!
//! Delay is latency, not lost throughput: each direction reads as fast as
//! its peer writes, stamps every read with the time it is due (the time it
//! was read plus the delay) and queues it; a second task writes each
//! segment, in order, when it is due. Segments read one after another are
//! written one after another a delay later, pipelined, as on a long link.
//! The cap is a token bucket at the writing end, which holds each piece
//! until the link would have carried it, so queueing behind a busy link
//! adds to the delay as it does on a real one. The end of a stream (or a
//! read error) travels the same way: the other side sees it a delay later.
//! Opening a connection is not delayed; its first request is.
//!
//! Waits use a `timerfd`, not tokio's timer: tokio sleeps at millisecond
//! granularity, which would turn a 0.25 ms delay into 1-2 ms.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The most one read takes in; a segment is whatever one read returns.
const READ_SIZE: usize = 64 << 10;
/// Segments queued in one direction before reading waits for writing:
/// the proxy's own buffer, bounded so a capped link pushes back on its
/// sender as a real one does.
const QUEUE: usize = 1024;
/// The largest piece written at once under a cap, so a big read does not
/// leave as one burst.
const PIECE: usize = 16 << 10;
/// The least a capped link may send at once after being idle (the bucket's
/// depth is this or a millisecond's worth, whichever is more).
const LEAST_BURST: f64 = PIECE as f64;

/// How a [`DelayProxy`] shapes its link.
#[derive(Clone, Copy, Debug, Default)]
pub struct DelayProxyOptions {
    /// How long every segment is held in each direction: the one-way
    /// latency it adds (a round trip costs twice this, plus the proxy's
    /// own cost, which is worth measuring: `redis-benchmark -t ping`).
    pub delay: Duration,
    /// Bytes per second each direction may carry, if capped.
    pub rate: Option<u64>,
}

/// A delay proxy listening on a free loopback port, forwarding every
/// connection to one upstream address; stops (and drops its connections)
/// when dropped. It runs on a thread of its own, so it works from
/// synchronous tests as well as asynchronous ones.
pub struct DelayProxy {
    address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl DelayProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream`.
    pub fn start(upstream: SocketAddr, options: DelayProxyOptions) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("delay-proxy")
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let listener = {
            let _inside = runtime.enter();
            TcpListener::from_std(listener)?
        };
        runtime.spawn(Self::serve(listener, upstream, options));
        Ok(DelayProxy {
            address,
            runtime: Some(runtime),
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port clients connect to on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Accepts connections on `listener` for ever, relaying each to a
    /// connection of its own to `upstream` (a client whose upstream
    /// connection fails is closed). For a proxy in a runtime of the
    /// caller's, such as a process of its own.
    pub async fn serve(listener: TcpListener, upstream: SocketAddr, options: DelayProxyOptions) {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                // Out of file descriptors, most likely: try again soon.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(upstream).await {
                    relay(client, server, options);
                }
            });
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Relays both directions of one connection, each on tasks of its own.
fn relay(client: TcpStream, server: TcpStream, options: DelayProxyOptions) {
    // Small segments go out at once, as they came in.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    tokio::spawn(one_way(client_in, server_out, options));
    tokio::spawn(one_way(server_in, client_out, options));
}

/// One direction: reads are stamped and queued here, written when due by
/// [`write_when_due`]. An empty segment stands for the end of the stream.
async fn one_way(mut from: OwnedReadHalf, to: OwnedWriteHalf, options: DelayProxyOptions) {
    let (queue, queued) = mpsc::channel::<(Instant, Bytes)>(QUEUE);
    let writer = tokio::spawn(write_when_due(queued, to, options));
    let mut buffer = BytesMut::with_capacity(READ_SIZE);
    loop {
        buffer.reserve(READ_SIZE);
        // A reset ends the stream like an end of file would.
        let read = from.read_buf(&mut buffer).await.unwrap_or(0);
        let due = Instant::now() + options.delay;
        let segment = buffer.split().freeze();
        if queue.send((due, segment)).await.is_err() || read == 0 {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
}

/// Writes every queued segment when it is due (and, under a cap, when the
/// bucket allows), in order; shuts the stream down when its end is due.
/// Dropping `to` on a failed write lets the reading side stop too.
async fn write_when_due(
    mut queued: mpsc::Receiver<(Instant, Bytes)>,
    mut to: OwnedWriteHalf,
    options: DelayProxyOptions,
) -> io::Result<()> {
    let alarm = Alarm::new()?;
    let mut bucket = options.rate.map(Bucket::new);
    while let Some((due, segment)) = queued.recv().await {
        alarm.sleep_until(due).await?;
        if segment.is_empty() {
            break;
        }
        match bucket.as_mut() {
            None => to.write_all(&segment).await?,
            Some(bucket) => {
                for piece in segment.chunks(PIECE) {
                    alarm.sleep_until(bucket.take(piece.len())).await?;
                    to.write_all(piece).await?;
                }
            }
        }
    }
    to.shutdown().await
}

/// A token bucket in bytes. Taking more than it holds runs into debt,
/// repaid at the rate before the bytes may go: a piece leaves when the
/// link would have finished carrying it.
struct Bucket {
    rate: f64,
    depth: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        let rate = rate.max(1) as f64;
        let depth = (rate / 1000.0).max(LEAST_BURST);
        Bucket {
            rate,
            depth,
            tokens: depth,
            last: Instant::now(),
        }
    }

    /// Takes `bytes` and returns when they may be written.
    fn take(&mut self, bytes: usize) -> Instant {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.depth) - bytes as f64;
        self.last = now;
        if self.tokens >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A sleep with microsecond precision: a `timerfd` the runtime watches.
struct Alarm(AsyncFd<OwnedFd>);

impl Alarm {
    fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the alarm owns the descriptor, which is neither closed
        // nor replaced while the runtime watches it.
        let watched = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Alarm(watched))
    }

    /// Returns at `due` (at once when it has passed). `Instant` is the
    /// monotonic clock the timer counts on, so a relative time suffices.
    async fn sleep_until(&self, due: Instant) -> io::Result<()> {
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let value = Timespec::try_from(left).map_err(io::Error::other)?;
        timerfd_settime(
            self.0.get_ref(),
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: zero,
                it_value: value,
            },
        )?;
        loop {
            let mut ready = self.0.readable().await?;
            let expired = ready.try_io(|fd| {
                let mut count = [0u8; 8];
                rustix::io::read(fd.get_ref(), &mut count).map_err(io::Error::from)
            });
            if let Ok(result) = expired {
                return result.map(drop);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::{DelayProxy, DelayProxyOptions};

    /// A server that echoes every byte back on each connection.
    fn echo_server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut back = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut stream, &mut back);
                });
            }
        });
        address
    }

    fn delayed(delay: Duration, rate: Option<u64>) -> (DelayProxy, TcpStream) {
        let options = DelayProxyOptions { delay, rate };
        let proxy = DelayProxy::start(echo_server(), options).unwrap();
        let stream = TcpStream::connect(proxy.address()).unwrap();
        stream.set_nodelay(true).unwrap();
        (proxy, stream)
    }

    /// Writes `bytes` on a thread of its own (so a full socket buffer
    /// cannot stall the test) and reads as many back.
    fn echoed(stream: &TcpStream, bytes: Vec<u8>) -> Vec<u8> {
        let mut writing = stream.try_clone().unwrap();
        let len = bytes.len();
        let writer = std::thread::spawn(move || writing.write_all(&bytes).unwrap());
        let mut back = vec![0; len];
        (&*stream).read_exact(&mut back).unwrap();
        writer.join().unwrap();
        back
    }

    #[test]
    fn a_round_trip_takes_at_least_twice_the_delay_and_bytes_arrive_unchanged() {
        let delay = Duration::from_millis(20);
        let (_proxy, stream) = delayed(delay, None);
        for _ in 0..3 {
            let start = Instant::now();
            assert_eq!(echoed(&stream, b"PING\r\n".to_vec()), b"PING\r\n");
            let took = start.elapsed();
            assert!(took >= 2 * delay, "a round trip took only {took:?}");
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let noise: Vec<u8> = (0..(3 << 20)).map(|_| rng.u8(..)).collect();
        assert!(echoed(&stream, noise.clone()) == noise, "bytes changed");
    }

    #[test]
    fn segments_are_pipelined_not_each_delayed_in_turn() {
        let delay = Duration::from_millis(50);
        let (_proxy, stream) = delayed(delay, None);
        let mut writing = stream.try_clone().unwrap();
        let start = Instant::now();
        let writer = std::thread::spawn(move || {
            for i in 0..40u8 {
                writing.write_all(&[i]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut back = [0u8; 40];
        (&stream).read_exact(&mut back).unwrap();
        writer.join().unwrap();
        let took = start.elapsed();
        assert_eq!(back.to_vec(), (0..40).collect::<Vec<u8>>(), "order kept");
        // Held in turn, 40 segments would take 40 round trips (4 s); the
        // margin is wide so a busy machine cannot fail this.
        assert!(took < 20 * 2 * delay, "40 segments took {took:?}");
    }

    #[test]
    fn a_capped_link_carries_no_more_than_its_rate() {
        let rate = 2 << 20;
        let (_proxy, stream) = delayed(Duration::from_millis(1), Some(rate));
        let bytes = vec![b'x'; 1 << 20];
        let start = Instant::now();
        assert!(echoed(&stream, bytes.clone()) == bytes, "bytes changed");
        let took = start.elapsed().as_secs_f64();
        // 1 MiB each way, the directions in parallel: half a second, less
        // the bucket's depth.
        assert!(took >= 0.45, "1 MiB at 2 MiB/s took only {took:.3} s");
    }
}
