//! The steps of a role's lease, `P:{C}:lease:ROLE` and `P:{C}:leasegen`:
//! taking it, renewing it, giving it back, and reading who holds it.
//! `native::lease` decides when to call them; this module alone names
//! the keys.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::script;
use crate::error::{Error, Result};
use crate::native::protocol::channel::Channel;

/// Takes the lease of a role, `P:{C}:lease:ROLE`, unless someone else
/// holds it. KEYS: meta. ARGV: base, role, holder, ttl (ms), a holder it may
/// replace ('' for none: one whose process is known to be gone).
/// Returns `{'', generation}` when taken (or already ours), else
/// `{current holder, ''}`. The generation, field ROLE of `P:{C}:leasegen`, counts
/// the holders a role had: a holder that finds it moved on lost the role,
/// even once its successor gave the role back.
static LEASE_TAKE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/lease_take.lua")));

/// Renews a lease we hold, or takes it back when nobody holds it and
/// nobody else held it since (Redis restarted without it).
/// KEYS: meta. ARGV: base, role, holder, ttl (ms), generation.
/// Returns 1, or 0 when it is no longer ours (it lapsed and was taken).
static LEASE_RENEW: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/lease_renew.lua")));

/// Gives a lease back if it is still ours. KEYS: meta. ARGV: base, role, holder.
static LEASE_DROP: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/lease_drop.lua")));

/// What asking for a role gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// The role is ours, as its `generation`-th holder.
    Taken { generation: u64 },
    /// Someone else holds it: their holder text, as they wrote it.
    HeldBy(String),
}

/// What renewing a role gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Still ours, for another lease period.
    Renewed,
    /// It lapsed and another holder took it since.
    Lost,
}

/// A role as one holder asks for it.
#[derive(Clone, Debug)]
pub(crate) struct RoleClaim<'a> {
    /// `sender`, `r:ID` or `w:ID`.
    pub role: &'a str,
    /// This holder's text (`host pid since_ms nonce`).
    pub holder: &'a str,
    /// How long the lease outlives this step.
    pub ttl: Duration,
}

impl Channel {
    /// Takes `claim`'s role, replacing `replaceable` (a holder known to be
    /// gone; '' for none) if that is who holds it.
    pub(crate) async fn take_lease(
        &self,
        claim: &RoleClaim<'_>,
        replaceable: &str,
    ) -> Result<Take> {
        let (current, generation): (String, String) = self
            .run(
                "taking a lease",
                &LEASE_TAKE,
                &[
                    claim.role.to_owned(),
                    claim.holder.to_owned(),
                    claim.ttl.as_millis().to_string(),
                    replaceable.to_owned(),
                ],
            )
            .await?;
        if !current.is_empty() {
            return Ok(Take::HeldBy(current));
        }
        let generation = generation.parse().map_err(|_| Error::Protocol {
            key: self.lease_key(claim.role),
            reason: format!("bad lease generation {generation:?}"),
        })?;
        Ok(Take::Taken { generation })
    }

    /// Renews `claim`'s role, held as its `generation`-th holder.
    pub(crate) async fn renew_lease(
        &self,
        claim: &RoleClaim<'_>,
        generation: u64,
    ) -> Result<Renewal> {
        let renewed: i64 = self
            .run(
                "renewing a lease",
                &LEASE_RENEW,
                &[
                    claim.role.to_owned(),
                    claim.holder.to_owned(),
                    claim.ttl.as_millis().to_string(),
                    generation.to_string(),
                ],
            )
            .await?;
        Ok(if renewed == 0 {
            Renewal::Lost
        } else {
            Renewal::Renewed
        })
    }

    /// Gives `role` back if `holder` still holds it.
    pub(crate) async fn drop_lease(&self, role: &str, holder: &str) -> Result<()> {
        self.run::<i64, String>(
            "giving a lease back",
            &LEASE_DROP,
            &[role.to_owned(), holder.to_owned()],
        )
        .await?;
        Ok(())
    }

    /// The holder text of `role`, if its lease has not lapsed.
    pub(crate) async fn lease_holder(&self, role: &str) -> Result<Option<String>> {
        self.redis
            .query(
                "reading a lease",
                redis::cmd("GET").arg(self.lease_key(role)),
            )
            .await
    }

    /// The roles whose leases have not lapsed, sorted.
    pub(crate) async fn leased_roles(&self) -> Result<Vec<String>> {
        let prefix = self.lease_key("");
        let mut roles: Vec<String> = self
            .redis
            .scan("looking for processes at work", &format!("{prefix}*"))
            .await?
            .into_iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        roles.sort();
        Ok(roles)
    }

    fn lease_key(&self, role: &str) -> String {
        format!("{}lease:{role}", self.keys.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::protocol::Keys;
    use crate::redis::{LocalRedis, LocalRedisOptions, Redis};

    const TTL: Duration = Duration::from_secs(60);

    fn claim<'a>(role: &'a str, holder: &'a str) -> RoleClaim<'a> {
        RoleClaim {
            role,
            holder,
            ttl: TTL,
        }
    }

    async fn channel(server: &LocalRedis) -> Channel {
        let redis = Redis::connect(&server.url()).await.unwrap();
        Channel::new(redis, Keys::new("rd", "t"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_role_is_taken_once_and_refused_to_others_naming_the_holder() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel(&server).await;
        let a = claim("sender", "a");
        let first = channel.take_lease(&a, "").await.unwrap();
        assert_eq!(first, Take::Taken { generation: 1 });
        assert_eq!(channel.take_lease(&a, "").await.unwrap(), first, "ours");
        let b = claim("sender", "b");
        assert_eq!(
            channel.take_lease(&b, "").await.unwrap(),
            Take::HeldBy("a".into())
        );
        assert_eq!(
            channel.take_lease(&b, "a").await.unwrap(),
            Take::Taken { generation: 2 },
            "a holder known to be gone is replaced"
        );
        assert_eq!(
            channel.lease_holder("sender").await.unwrap(),
            Some("b".into())
        );
        assert_eq!(channel.lease_holder("w:1").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_keeps_the_role_until_another_holder_took_it() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel(&server).await;
        let a = claim("r:1", "a");
        let Take::Taken { generation } = channel.take_lease(&a, "").await.unwrap() else {
            panic!("a free role was refused");
        };
        assert_eq!(
            channel.renew_lease(&a, generation).await.unwrap(),
            Renewal::Renewed
        );
        channel.drop_lease("r:1", "a").await.unwrap();
        assert_eq!(channel.lease_holder("r:1").await.unwrap(), None);
        assert_eq!(
            channel.renew_lease(&a, generation).await.unwrap(),
            Renewal::Lost,
            "given back: a renewal on its way must not take it back"
        );
        let b = claim("r:1", "b");
        assert!(matches!(
            channel.take_lease(&b, "").await.unwrap(),
            Take::Taken { .. }
        ));
        assert_eq!(
            channel.renew_lease(&a, generation).await.unwrap(),
            Renewal::Lost
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_roles_at_work_are_listed_and_a_dropped_one_is_not() {
        let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
        let channel = channel(&server).await;
        for role in ["w:b", "sender", "w:a"] {
            channel.take_lease(&claim(role, "h"), "").await.unwrap();
        }
        channel.drop_lease("w:b", "someone else").await.unwrap();
        channel.drop_lease("w:a", "h").await.unwrap();
        assert_eq!(channel.leased_roles().await.unwrap(), ["sender", "w:b"]);
    }
}
