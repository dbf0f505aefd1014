//! What the sender decides to do again after a Redis restart, against a
//! real redis-server; the uploads themselves are tested end to end in
//! `tests/` (rollback, faults, cluster).

use std::collections::HashSet;
use std::path::PathBuf;

use super::driver::Task;
use super::*;
use crate::redis::{LocalRedis, LocalRedisOptions};

async fn sender(server: &LocalRedis) -> Sender {
    let options = SendOptions::new("t", Audience::Workers);
    Sender::open(&server.url(), options).await.unwrap()
}

/// Records `name` in `sent` as an earlier upload of this run left it.
async fn record(sender: &Sender, name: &str, state: &str) {
    let command = redis::cmd("HSET")
        .arg(sender.channel.keys.sent())
        .arg(name)
        .arg(format!("1 10:1 {state}"))
        .clone();
    sender
        .channel
        .redis
        .query::<()>("testing", &command)
        .await
        .unwrap();
}

/// What the tasks are, in order: a file's name or `end`.
fn described(tasks: &[Task<'_>]) -> Vec<String> {
    tasks
        .iter()
        .map(|task| match task {
            Task::Start(job) | Task::Resume(job, _) => job.name.clone(),
            Task::MarkEnd => "end".to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_redis_lost_go_again_in_their_first_order_except_those_queued() {
    let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
    let sender = sender(&server).await;
    for name in ["d", "a", "b", "c", "e"] {
        sender.remember(name, Origin::File(PathBuf::from(name)));
    }
    // Sent again later: its place is now the last.
    sender.remember("d", Origin::File(PathBuf::from("d")));
    record(&sender, "a", "sent").await;
    record(&sender, "c", "uploading").await;
    let queued = HashSet::from(["e".to_owned()]);
    let work = sender.restart_work(&queued).await.unwrap();
    assert_eq!(described(&work), ["b", "c", "d"]);

    sender.finish().await.unwrap();
    let work = sender.restart_work(&HashSet::new()).await.unwrap();
    assert_eq!(described(&work), ["b", "c", "e", "d", "end"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_redis_lost_cannot_go_again() {
    let server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
    let sender = sender(&server).await;
    sender.remember("piped", Origin::Stream);
    let lost = sender.restart_work(&HashSet::new()).await;
    assert!(
        matches!(&lost, Err(Error::UploadLost { name }) if name == "piped"),
        "{:?}",
        lost.map(|work| described(&work))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_noticed_once_by_its_run_id() {
    let mut server = LocalRedis::start(LocalRedisOptions::default()).unwrap();
    let sender = sender(&server).await;
    assert!(!sender.restarted().await.unwrap(), "nothing happened yet");
    server.stop().unwrap();
    server.start_again().unwrap();
    // A command on a fresh connection, as any step would send.
    sender.channel.meta().await.unwrap();
    assert!(sender.restarted().await.unwrap());
    assert!(!sender.restarted().await.unwrap(), "noticed already");
}
