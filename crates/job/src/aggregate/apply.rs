//! Adding a file's counts into Redis exactly once: each sorted set gets
//! the file's increments in one script that first adds the file's token
//! to a marker set beside it.

use std::sync::LazyLock;

use redis::Script;

use super::{AggregateOptions, FileCounts};
use crate::geo::GeoTable;
use redistribute_transfer::error::Result;
use redistribute_transfer::redis::Redis;

/// Adds increments to one sorted set unless this file already did, and
/// sets both keys to expire at a time (Unix seconds) unless it is 0.
/// KEYS: sorted set, its marker set. ARGV: token, expiry, then
/// member/increment pairs.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
for i = 3, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i])
end
if ARGV[2] ~= '0' then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
  redis.call('EXPIREAT', KEYS[2], ARGV[2])
end
return 1
"#,
    )
});

impl FileCounts {
    /// Adds this file's counts into Redis, once per `token` whatever
    /// happens: a repeated call adds nothing to a set it already reached.
    pub async fn apply(
        &self,
        redis: &Redis,
        table: &GeoTable,
        options: &AggregateOptions,
        token: &str,
    ) -> Result<()> {
        for &dimension in &options.dimensions {
            for (day, members) in self.by(table, dimension) {
                let day = String::from_utf8_lossy(day);
                let key = dimension.day_key(&options.namespace, &day);
                let marker = format!("{{{key}}}:applied");
                let expiry = expiry(&day, options.keep);
                redis
                    .keep_trying("adding counts", |mut con| {
                        let mut invocation = APPLY.prepare_invoke();
                        invocation.key(&key).key(&marker).arg(token).arg(expiry);
                        for (member, count) in &members {
                            invocation.arg(member).arg(*count);
                        }
                        async move { invocation.invoke_async::<i64>(&mut con).await }
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// When a day's counts expire with `--keep`: `keep` after the day's end
/// (UTC), in Unix seconds; 0 for never. A day already past it expires at
/// once, so a backfill of old logs keeps nothing the retention would not.
fn expiry(day: &str, keep: Option<std::time::Duration>) -> i64 {
    let Some(keep) = keep else { return 0 };
    let Ok(date) = day.parse::<jiff::civil::Date>() else {
        return 0;
    };
    let start = date
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map_or(0, |zoned| zoned.timestamp().as_second());
    // At least 1: 0 would mean never.
    (start + 86_400 + keep.as_secs() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_day_is_kept_for_the_given_time_after_its_end() {
        // 2026-11-20T00:00:00Z is 1795132800.
        let day = 1_795_132_800;
        assert_eq!(super::expiry("2026-11-20", None), 0);
        assert_eq!(
            super::expiry("2026-11-20", Some(Duration::from_secs(400 * 86_400))),
            day + 86_400 + 400 * 86_400
        );
        assert_eq!(super::expiry("unknown", Some(Duration::from_secs(1))), 0);
    }
}
