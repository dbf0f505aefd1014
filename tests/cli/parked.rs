//! Files set aside: parked after failing three times or when their data
//! is gone, reported by the sender, and offered again by `retry`.

use std::time::{Duration, Instant};

use crate::common::{
    Server, assert_same_tree, last_line_of_failure, noise, run, spawn, succeeded, wait, write,
};
use crate::{T, kill, wait_for_status};

#[test]
fn a_file_that_fails_three_times_is_parked_and_reported_not_retried_forever() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "poison", b"bad\n");
    write(&source, "fine", b"good\n");
    let tries = work.path().join("tries");
    let exec = format!(
        "echo \"$REDISTRIBUTE_NAME\" >> {}; if [ \"$REDISTRIBUTE_NAME\" = poison ]; then exit 3; fi; cat > /dev/null",
        tries.display()
    );
    let sender = spawn(server.send("pz").workers().path(&source));
    let output = run(server.receive("pz", "w").exec(&exec), T);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .contains("1 file failed and was parked"),
        "{stderr}"
    );
    // The sender finishes, and says which file was parked by whom.
    let sent = wait(sender, T);
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let line = last_line_of_failure(&sent);
    assert!(line.contains("poison (by w: "), "{line}");
    let tries = std::fs::read_to_string(tries).unwrap();
    assert_eq!(
        tries.lines().filter(|l| *l == "poison").count(),
        3,
        "{tries}"
    );
    assert_eq!(tries.lines().filter(|l| *l == "fine").count(), 1, "{tries}");
    let status = run(
        server
            .command()
            .args(["status", "--json", "--channel", "pz"]),
        T,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["parked"][0]["file"], "poison");
    assert!(
        status[0]["parked"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("exited with exit status: 3")
    );
}

#[test]
fn a_stream_whose_data_left_redis_before_a_restarted_receiver_read_it_is_parked_saying_why() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = noise(1 << 20, 21);
    let input = write(work.path(), "input", &data);
    let sender = spawn(
        server
            .send("st")
            .receivers(2)
            .chunk_size("16KiB")
            .limit("64KiB")
            .stdin_as("stream.bin")
            .stdin(std::fs::File::open(&input).unwrap()),
    );
    let out = work.path().join("out");
    let steady = spawn(server.receive("st", 0).out(&out));
    // Receiver 1 reads part of the stream, then stalls until killed.
    let mut stalled = spawn(
        server
            .receive("st", 1)
            .exec("head -c 300000 > /dev/null; sleep 60"),
    );
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + T;
    while redis::cmd("HGET")
        .arg("rd:{st}:f:1")
        .arg("freed")
        .query::<Option<u64>>(&mut con)
        .unwrap()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no chunk was ever released");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(&mut stalled);
    let again = run(server.receive("st", 1).out(work.path().join("out1")), T);
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    succeeded(&wait(steady, T));
    assert_eq!(std::fs::read(out.join("stream.bin")).unwrap(), data);
    let sent = wait(sender, T);
    assert_eq!(sent.status.code(), Some(3), "{sent:?}");
    let line = last_line_of_failure(&sent);
    assert!(
        line.contains("stream.bin (by 1: ")
            && line.contains("it was read from a stream, which cannot be read again"),
        "{line}"
    );
}

#[test]
fn retry_offers_parked_files_again_and_the_next_sender_uploads_them_from_their_source() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    write(&source, "flaky", &noise(100_000, 5));
    write(&source, "fine", b"good\n");
    let send = || {
        server
            .send("rt")
            .receivers("a,b")
            .chunk_size("16KiB")
            .path(&source)
    };
    let receive = |id: &str, exec: &str| server.receive("rt", id).exec(exec);
    let (out_a, out_b) = (work.path().join("a"), work.path().join("b"));
    std::fs::create_dir_all(&out_a).unwrap();
    std::fs::create_dir_all(&out_b).unwrap();
    let keep = |dir: &std::path::Path| format!("cat > '{}'/\"$REDISTRIBUTE_NAME\"", dir.display());
    // Receiver b's service is down for "flaky": parked after three tries.
    let failing = format!(
        "if [ \"$REDISTRIBUTE_NAME\" = flaky ]; then exit 1; fi; {}",
        keep(&out_b)
    );
    let sender = spawn(send());
    succeeded(&run(receive("a", &keep(&out_a)), T));
    assert_eq!(run(receive("b", &failing), T).status.code(), Some(3));
    assert_eq!(wait(sender, T).status.code(), Some(3));
    assert!(!out_b.join("flaky").exists());

    let unknown = run(
        server
            .command()
            .args(["retry", "--channel", "rt", "nosuch"]),
        T,
    );
    assert!(
        last_line_of_failure(&unknown).contains("not parked in channel \"rt\": nosuch"),
        "{unknown:?}"
    );
    let retried = succeeded(&run(
        server.command().args(["retry", "--channel", "rt", "flaky"]),
        T,
    ));
    assert!(
        retried.contains("flaky: offered again to b") && retried.contains("no sender is running"),
        "{retried}"
    );
    // The same send again: nothing new, but "flaky" uploaded again for b only.
    let sender = spawn(send());
    let received = succeeded(&run(receive("b", &keep(&out_b)), T));
    assert!(received.contains("received flaky"), "{received}");
    let sent = succeeded(&wait(sender, T));
    assert!(
        sent.contains("flaky: uploading it again for receivers b"),
        "{sent}"
    );
    assert_same_tree(&source, &out_a);
    assert_same_tree(&source, &out_b);
    wait_for_status(&server, "rt", "nothing parked, held or behind", |s| {
        s["parked"].as_array().is_some_and(Vec::is_empty)
            && s["bytes_held"] == 0
            && s["receivers"]
                .as_array()
                .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["files_behind"] == 0))
    });
}
