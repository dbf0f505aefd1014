//! Adding a file's counts into Redis exactly once: each sorted set gets
//! the file's increments in one script that first adds the file's token
//! to a marker set beside it.

use std::sync::LazyLock;

use redis::Script;

use super::{AggregateOptions, FileCounts};
use crate::geo::GeoTable;
use redistribute_transfer::error::Result;
use redistribute_transfer::redis::Redis;

/// Adds increments to one sorted set unless this file already did.
/// KEYS: sorted set, its marker set. ARGV: token, then member/increment pairs.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i])
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
                redis
                    .keep_trying("adding counts", |mut con| {
                        let mut invocation = APPLY.prepare_invoke();
                        invocation.key(&key).key(&marker).arg(token);
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
