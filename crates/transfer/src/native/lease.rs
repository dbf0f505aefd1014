//! One owner per role: a channel's sender, each broadcast receiver id and
//! each worker id. A role is held through an expiring lease key that its
//! holder renews every few seconds; a second process asking for a held
//! role is refused with the holder named. The lease of a killed process
//! lapses after [`TTL`], at once when the same host sees its process gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::files::incoming::AbortOnDrop;
use crate::host;
use crate::native::protocol::Audience;
use crate::native::protocol::channel::Channel;
use crate::native::protocol::lease::{Renewal, RoleClaim, Take};

/// How long a lease outlives its last renewal.
pub const TTL: Duration = Duration::from_secs(15);

/// How often a holder renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(3);

/// A role held by this process, renewed in the background until dropped.
pub(crate) struct Lease {
    channel: Channel,
    held: Held,
    lost: Arc<AtomicBool>,
    /// The renewal task, stopped when the role is given back.
    renewing: AbortOnDrop,
}

/// What renewing a role takes: which role, who holds it, and as which of
/// its holders (see [`Take::Taken`]).
#[derive(Clone)]
struct Held {
    role: String,
    holder: String,
    generation: u64,
}

impl Held {
    fn claim(&self) -> RoleClaim<'_> {
        RoleClaim {
            role: &self.role,
            holder: &self.holder,
            ttl: TTL,
        }
    }
}

impl Lease {
    /// Takes `role` (`sender`, `r:ID`, `w:ID`) of the channel, described as
    /// `shown` in messages.
    ///
    /// # Errors
    ///
    /// [`Error::RoleTaken`] when another live process holds it.
    pub(crate) async fn take(channel: &Channel, role: &str, shown: &str) -> Result<Lease> {
        let holder = Holder::this_process().encode();
        let claim = RoleClaim {
            role,
            holder: &holder,
            ttl: TTL,
        };
        let mut replaceable = String::new();
        let generation = loop {
            let current = match channel.take_lease(&claim, &replaceable).await? {
                Take::Taken { generation } => break generation,
                Take::HeldBy(current) => current,
            };
            let other = Holder::decode(&current);
            if replaceable != current && other.as_ref().is_some_and(Holder::is_gone) {
                // Its process died on this host: no need to wait for expiry.
                replaceable = current;
                continue;
            }
            return Err(Error::RoleTaken {
                role: shown.to_owned(),
                channel: channel.keys.channel().to_owned(),
                holder: other.map_or(current, |h| h.to_string()),
            });
        };
        let held = Held {
            role: role.to_owned(),
            holder,
            generation,
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewing = AbortOnDrop(tokio::spawn(renew(
            channel.clone(),
            held.clone(),
            lost.clone(),
        )));
        Ok(Lease {
            channel: channel.clone(),
            held,
            lost,
            renewing,
        })
    }

    /// Fails once the lease lapsed and another process took the role.
    pub(crate) fn check(&self, shown: &str) -> Result<()> {
        if self.lost.load(Ordering::Acquire) {
            return Err(Error::RoleLost {
                role: shown.to_owned(),
                channel: self.channel.keys.channel().to_owned(),
            });
        }
        Ok(())
    }

    /// Like [`Lease::check`], but asks Redis now instead of trusting the
    /// last renewal: a process that was paused (SIGSTOP, a frozen VM)
    /// wakes before its renewal runs, and must not take what another
    /// holder did meanwhile for a fault of Redis or of the file.
    pub(crate) async fn confirm(&self, shown: &str) -> Result<()> {
        let renewal = self
            .channel
            .renew_lease(&self.held.claim(), self.held.generation)
            .await?;
        if renewal == Renewal::Lost {
            self.lost.store(true, Ordering::Release);
        }
        self.check(shown)
    }

    /// Gives the role back, for the next process to take at once; the
    /// renewal stops first, or it would take the role back.
    pub(crate) async fn release(&self) -> Result<()> {
        self.renewing.0.abort();
        self.channel
            .drop_lease(&self.held.role, &self.held.holder)
            .await
    }
}

/// Renews a held role every few seconds until it is found lost.
async fn renew(channel: Channel, held: Held, lost: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if let Ok(Renewal::Lost) = channel.renew_lease(&held.claim(), held.generation).await {
            lost.store(true, Ordering::Release);
            return;
        }
    }
}

/// The lease name of a receiver's or worker's role, and how messages
/// name it.
pub(crate) fn role_of(audience: &Audience, id: &str) -> (String, String) {
    match audience {
        Audience::Broadcast(_) => (format!("r:{id}"), format!("receiver {id}")),
        Audience::Workers => (format!("w:{id}"), format!("worker {id}")),
    }
}

/// Who holds `role` of the channel, described for people, if anyone alive
/// does.
pub(crate) async fn holder_of(channel: &Channel, role: &str) -> Result<Option<String>> {
    let current = channel.lease_holder(role).await?;
    Ok(current.and_then(|text| match Holder::decode(&text) {
        Some(holder) if holder.is_gone() => None,
        Some(holder) => Some(holder.to_string()),
        None => Some(text),
    }))
}

/// Every role of the channel a live process holds, described for people
/// (`the sender (pid 12 on host a, for 40 s)`).
pub(crate) async fn holders(channel: &Channel) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for role in channel.leased_roles().await? {
        if let Some(holder) = holder_of(channel, &role).await? {
            found.push(format!("{} ({holder})", shown_role(&role)));
        }
    }
    Ok(found)
}

/// A role as messages name it: `receiver 0`, `worker w1`, `the sender`.
fn shown_role(role: &str) -> String {
    match role.split_once(':') {
        Some(("r", id)) => format!("receiver {id}"),
        Some(("w", id)) => format!("worker {id}"),
        _ => format!("the {role}"),
    }
}

/// Who holds a lease: enough to name it, and to tell on its own host
/// whether its process still runs.
struct Holder {
    host: String,
    pid: u32,
    since_ms: u128,
    nonce: u64,
}

impl Holder {
    fn this_process() -> Self {
        Holder {
            host: host::name(),
            pid: std::process::id(),
            since_ms: now_ms(),
            nonce: fastrand::u64(..),
        }
    }

    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.host, self.pid, self.since_ms, self.nonce
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut fields = text.split(' ');
        Some(Holder {
            host: fields.next()?.to_owned(),
            pid: fields.next()?.parse().ok()?,
            since_ms: fields.next()?.parse().ok()?,
            nonce: fields.next()?.parse().ok()?,
        })
    }

    /// Whether it ran on this host in a process that no longer exists, or
    /// in this very process (an earlier holder the program dropped: one
    /// process is trusted to hold a role once at a time).
    fn is_gone(&self) -> bool {
        self.host == host::name()
            && (self.pid == std::process::id() || !host::process_exists(self.pid))
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = now_ms().saturating_sub(self.since_ms) / 1000;
        write!(f, "pid {} on host {}, for {seconds} s", self.pid, self.host)
    }
}

/// The time as Unix milliseconds.
pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
