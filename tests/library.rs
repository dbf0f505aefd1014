//! Round trips through the library API against a real redis-server.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Server, assert_same_tree, noise, write};
use redistribute_transfer::native::protocol::Keys;

use redistribute_transfer::files::inputs;
use redistribute_transfer::{
    Audience, Decode, FileSource, ReceiveOptions, Receiver, SendOptions, Sender, Sink,
};
use tokio::io::AsyncReadExt;

const KIB: usize = 1024;

fn options(channel: &str, receivers: &[&str], limit: usize, chunk: usize) -> SendOptions {
    let mut options = SendOptions::new(
        channel,
        Audience::Broadcast(receivers.iter().map(|r| r.to_string()).collect()),
    );
    options.limit = limit as u64;
    options.chunk_size = chunk as u64;
    options
}

/// Sends every file under `dir` and marks the end of input.
async fn send_dir(url: &str, options: SendOptions, dir: &Path) -> Sender {
    let sender = Sender::open(url, options).await.unwrap();
    for input in inputs::collect(&[dir.to_owned()], None).unwrap() {
        sender
            .send_file(input.path.as_deref().unwrap(), &input.name)
            .await
            .unwrap();
    }
    sender.finish().await.unwrap();
    sender
}

/// A receiver writing copies under `out` until the end of input.
fn receive_into(
    url: &str,
    channel: &str,
    id: &str,
    out: PathBuf,
) -> tokio::task::JoinHandle<redistribute_transfer::Result<()>> {
    let (url, options) = (url.to_owned(), ReceiveOptions::new(channel, id));
    tokio::spawn(async move {
        let mut receiver = Receiver::connect(&url, options).await?;
        let sink = Sink::Dir(out);
        while let Some(mut file) = receiver.next_file().await? {
            sink.process(&mut file, Decode::None).await?;
            receiver.ack(file).await?;
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_every_awkward_size_arrive_byte_identical_and_leave_no_data_behind() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    let chunk = 64 * KIB;
    let limit = 256 * KIB;
    write(&source, "empty", b"");
    write(&source, "one-byte", b"x");
    write(&source, "exactly-one-chunk", &noise(chunk, 1));
    write(&source, "one-chunk-plus-one", &noise(chunk + 1, 2));
    write(&source, "three-times-the-limit", &noise(3 * limit + 17, 3));

    let receiver = receive_into(&server.url(), "sizes", "0", out.clone());
    let sender = send_dir(
        &server.url(),
        options("sizes", &["0"], limit, chunk),
        &source,
    )
    .await;
    sender.wait_until_done().await.unwrap();
    receiver.await.unwrap().unwrap();

    assert_same_tree(&source, &out);
    assert_eq!(
        server.keys(&Keys::new("rd", "sizes").chunk_pattern()).await,
        Vec::<String>::new(),
        "chunks left behind"
    );
    assert_eq!(
        server.keys("rd:{sizes}:f:*").await,
        Vec::<String>::new(),
        "file records left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_spaces_and_utf8_in_subdirectories_keep_their_paths() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "città/día 1/naïve file ☃.log", b"snow\n");
    write(&source, "top level.txt", b"top\n");
    write(&source, "a/b/c/deep.bin", &noise(10_000, 4));

    let receiver = receive_into(&server.url(), "names", "r", out.clone());
    send_dir(
        &server.url(),
        options("names", &["r"], 1 << 20, 4096),
        &source,
    )
    .await;
    receiver.await.unwrap().unwrap();
    assert_same_tree(&source, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_with_several_members_and_zstd_are_decoded_for_processing() {
    use std::io::Write;
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let (first, second) = (
        "first member\n".repeat(1000),
        "second member\n".repeat(1000),
    );
    let mut gzip = Vec::new();
    for part in [&first, &second] {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(part.as_bytes()).unwrap();
        gzip.extend(encoder.finish().unwrap());
    }
    write(&source, "a.log.gz", &gzip);
    write(
        &source,
        "b.log.zst",
        &zstd::encode_all(first.as_bytes(), 3).unwrap(),
    );
    write(&source, "c.log", second.as_bytes());

    send_dir(
        &server.url(),
        options("decode", &["0"], 1 << 20, 1000),
        &source,
    )
    .await;
    let mut receiver = Receiver::connect(&server.url(), ReceiveOptions::new("decode", "0"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(mut file) = receiver.next_file().await.unwrap() {
        let mut text = String::new();
        file.decoded(Decode::Auto)
            .read_to_string(&mut text)
            .await
            .unwrap();
        seen.push((file.name().to_owned(), text));
        receiver.ack(file).await.unwrap();
    }
    assert_eq!(
        seen,
        vec![
            ("a.log.gz".to_owned(), format!("{first}{second}")),
            ("b.log.zst".to_owned(), first.clone()),
            ("c.log".to_owned(), second.clone()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_come_out_split_and_decoded() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let text: String = (0..5000)
        .map(|i| format!("10.0.0.{} line {i}\n", i % 256))
        .collect();
    write(&source, "log", text.as_bytes());
    send_dir(
        &server.url(),
        options("lines", &["0"], 1 << 20, 777),
        &source,
    )
    .await;

    let mut receiver = Receiver::connect(&server.url(), ReceiveOptions::new("lines", "0"))
        .await
        .unwrap();
    let mut file = receiver.next_file().await.unwrap().unwrap();
    let mut lines = file.lines(Decode::Auto);
    let mut count = 0;
    while let Some(line) = lines.next_segment().await.unwrap() {
        assert_eq!(
            line,
            format!("10.0.0.{} line {count}", count % 256).as_bytes()
        );
        count += 1;
    }
    drop(lines);
    receiver.ack(file).await.unwrap();
    assert_eq!(count, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_receiver_and_memory_stays_under_the_limit() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let (chunk, limit) = (32 * KIB, 256 * KIB);
    write(&source, "big", &noise(8 * limit, 5));
    write(&source, "small", &noise(1000, 6));

    // Slow receivers keep the budget full while we watch Redis.
    let url = server.url();
    let mut receivers = Vec::new();
    for id in ["a", "b", "c"] {
        let (url, out) = (url.clone(), work.path().join(id));
        receivers.push(tokio::spawn(async move {
            let mut receiver = Receiver::connect(&url, ReceiveOptions::new("wide", id)).await?;
            while let Some(mut file) = receiver.next_file().await? {
                let mut copy = Vec::new();
                let mut buffer = vec![0; 16 * KIB];
                loop {
                    let n = file
                        .read(&mut buffer)
                        .await
                        .map_err(|e| redistribute_transfer::Error::io("read", e))?;
                    if n == 0 {
                        break;
                    }
                    copy.extend_from_slice(&buffer[..n]);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                write(&out, file.name(), &copy);
                receiver.ack(file).await?;
            }
            Ok::<(), redistribute_transfer::Error>(())
        }));
    }
    let watcher = {
        let server_url = url.clone();
        tokio::spawn(async move {
            let client = redis::Client::open(server_url).unwrap();
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            let mut peak = 0u64;
            loop {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg("rd:c:4:wide:*")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                let mut held = 0;
                for key in keys {
                    held += redis::cmd("STRLEN")
                        .arg(key)
                        .query_async::<u64>(&mut con)
                        .await
                        .unwrap();
                }
                peak = peak.max(held);
                let done: Option<String> = redis::cmd("HGET")
                    .arg("rd:{wide}:meta")
                    .arg("finished")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                if done.as_deref() == Some("2") {
                    return peak;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let sender = send_dir(
        &url,
        options("wide", &["a", "b", "c"], limit, chunk),
        &source,
    )
    .await;
    sender.wait_until_done().await.unwrap();
    for receiver in receivers {
        receiver.await.unwrap().unwrap();
    }
    let peak = watcher.await.unwrap();
    for id in ["a", "b", "c"] {
        assert_same_tree(&source, &work.path().join(id));
    }
    assert!(peak > 0, "the watcher never saw data in Redis");
    assert!(
        peak <= limit as u64,
        "Redis held {peak} bytes of chunks, over the {limit} limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chunk_is_detected_and_never_acknowledged() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (source, out) = (work.path().join("in"), work.path().join("out"));
    write(&source, "victim", &noise(100_000, 7));
    send_dir(
        &server.url(),
        options("bad", &["0"], 1 << 20, 16 * KIB),
        &source,
    )
    .await;
    let mut con = server.connection().await;
    let _: () = redis::cmd("SETRANGE")
        .arg("rd:c:3:bad:1:2")
        .arg(5)
        .arg("X")
        .query_async(&mut con)
        .await
        .unwrap();

    let mut receiver = Receiver::connect(&server.url(), ReceiveOptions::new("bad", "0"))
        .await
        .unwrap();
    let mut file = receiver.next_file().await.unwrap().unwrap();
    let error = Sink::Dir(out.clone())
        .process(&mut file, Decode::None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("victim") && error.to_string().contains("digest"),
        "{error}"
    );
    assert!(
        !out.join("victim").exists(),
        "a damaged copy was put in place"
    );
    let refused = receiver.ack(file).await.unwrap_err();
    assert!(
        refused.to_string().contains("not read to its verified end"),
        "{refused}"
    );
    // Its announcement stays pending (the end mark, read with it, too).
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg("rd:{bad}:files")
        .arg("r:0")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut con)
        .await
        .unwrap();
    let announced: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("rd:{bad}:files")
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let file = announced
        .iter()
        .find(|(_, fields)| fields.get("fid").map(String::as_str) == Some("1"))
        .map(|(id, _)| id.clone());
    assert!(
        pending.iter().any(|(id, ..)| Some(id) == file.as_ref()),
        "the file must stay unacknowledged: {pending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_acknowledged_once_is_neither_handed_out_again_nor_counted_twice() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "f", b"data");
    send_dir(
        &server.url(),
        options("twice", &["0", "1"], 1 << 20, 1024),
        &source,
    )
    .await;

    // Receiver 0 finishes the file, and its group forgets that (as if XACK
    // were lost, or Redis rolled back): after a restart it must not get the
    // file again, and the file must still wait for receiver 1.
    let mut receiver = Receiver::connect(&server.url(), ReceiveOptions::new("twice", "0"))
        .await
        .unwrap();
    let mut file = receiver.next_file().await.unwrap().unwrap();
    tokio::io::copy(&mut file, &mut tokio::io::sink())
        .await
        .unwrap();
    receiver.ack(file).await.unwrap();
    assert!(receiver.next_file().await.unwrap().is_none());
    let mut con = server.connection().await;
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg("rd:{twice}:files")
        .arg("r:0")
        .arg("0")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut restarted = Receiver::connect(&server.url(), ReceiveOptions::new("twice", "0"))
        .await
        .unwrap();
    assert!(
        restarted.next_file().await.unwrap().is_none(),
        "a settled file was handed out again"
    );
    let mut con = server.connection().await;
    let acks: Option<String> = redis::cmd("HGET")
        .arg("rd:{twice}:f:1")
        .arg("acks")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(acks.as_deref(), Some("1"));
    // A file this small travels in its record.
    let data: bool = redis::cmd("HEXISTS")
        .arg("rd:{twice}:f:1")
        .arg("data")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(data, "the data must stay until receiver 1 is done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_processes_the_first_chunk_before_the_upload_has_finished() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start();
    let url = server.url();
    let (mut input, pipe) = tokio::io::duplex(1 << 16);
    let sender = Sender::open(&url, options("stream", &["0"], 1 << 20, 1000))
        .await
        .unwrap();
    let upload = tokio::spawn(async move {
        sender
            .send_reader("growing.log", pipe)
            .await
            .map(|_| sender)
    });

    input.write_all(&[b'a'; 1000]).await.unwrap();
    let mut receiver = Receiver::connect(&url, ReceiveOptions::new("stream", "0"))
        .await
        .unwrap();
    let mut file = receiver.next_file().await.unwrap().unwrap();
    let mut first = [0u8; 1000];
    file.read_exact(&mut first).await.unwrap();
    assert_eq!(first, [b'a'; 1000]);
    assert!(
        !upload.is_finished(),
        "the upload ended before the receiver got its first chunk"
    );

    input.write_all(b"tail").await.unwrap();
    drop(input);
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"tail");
    receiver.ack(file).await.unwrap();
    upload.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_capped_at_half_of_redis_maxmemory() {
    let server = Server::with(redistribute_transfer::redis::LocalRedisOptions {
        maxmemory: Some(8 << 20),
        ..Default::default()
    });
    let sender = Sender::open(&server.url(), options("capped", &["0"], 1 << 30, 1 << 20))
        .await
        .unwrap();
    assert_eq!(sender.limit(), 4 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_chunk_is_an_error_naming_the_file() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "holey", &noise(50_000, 11));
    send_dir(
        &server.url(),
        options("holes", &["0"], 1 << 20, 16 * KIB),
        &source,
    )
    .await;
    let mut con = server.connection().await;
    let _: () = redis::cmd("DEL")
        .arg(Keys::new("rd", "holes").chunk(1, 1))
        .query_async(&mut con)
        .await
        .unwrap();

    let mut receiver = Receiver::connect(&server.url(), ReceiveOptions::new("holes", "0"))
        .await
        .unwrap();
    let mut file = receiver.next_file().await.unwrap().unwrap();
    let error = tokio::io::copy(&mut file, &mut tokio::io::sink())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("holey") && message.contains("chunk 1 is missing"),
        "{message}"
    );
    assert!(receiver.ack(file).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_under_way_are_all_recorded_once_the_source_is_closed() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..40 {
        write(
            &source,
            &format!("f{i:02}"),
            format!("line {i}\n").as_bytes(),
        );
    }
    send_dir(
        &server.url(),
        options("background", &["0"], 1 << 20, 4096),
        &source,
    )
    .await;
    // Through a slow link, so acknowledgements are still under way when the
    // loop ends; dropping the receiver would stop them.
    let remote = server.behind_delay(Duration::from_millis(20));
    let mut receiver = Receiver::connect(&remote.url(), ReceiveOptions::new("background", "0"))
        .await
        .unwrap();
    for _ in 0..40 {
        let mut file = receiver.next_file().await.unwrap().unwrap();
        tokio::io::copy(&mut file, &mut tokio::io::sink())
            .await
            .unwrap();
        receiver.ack(file).await.unwrap();
    }
    receiver.close().await.unwrap();
    drop(receiver);
    let mut con = server.connection().await;
    let settled: u64 = redis::cmd("HGET")
        .arg("rd:{background}:r:0")
        .arg("files")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(settled, 40);
}
