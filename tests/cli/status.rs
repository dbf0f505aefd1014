//! What `status` shows of channels at work (who runs, who waits, rates
//! and time left) and which days `report --last` covers.

use std::time::Duration;

use crate::common::{Server, noise, run, spawn, spawn_printing_to, succeeded, wait, write};
use crate::{T, kill, terminate, wait_for_status, wait_for_text};

#[test]
fn status_tells_running_stopped_and_never_connected_apart_and_hides_finished_channels() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let small = write(work.path(), "small/a.log", b"done soon");
    let old = spawn(server.send("old").receivers(1).path(&small));
    succeeded(&run(server.receive("old", 0).stdout(), T));
    succeeded(&wait(old, T));

    let big = write(work.path(), "big.bin", &noise(4 << 20, 3));
    let mut sender = spawn(
        server
            .send("busy")
            .receivers("a,b")
            .limit("1MiB")
            .compress("none")
            .path(&big),
    );
    let mut a = spawn(server.receive("busy", "a").stdout());
    wait_for_status(&server, "busy", "receiver a reading", |s| {
        let a = &s["receivers"][0];
        a["process"].is_string()
            && s["sender"].is_string()
            && a["current_file"] == "big.bin"
            && a["bytes_into_current"].as_u64() > Some(0)
            && a["last_seen_ms"].as_u64() <= s["time_ms"].as_u64()
    });
    kill(&mut a);
    wait_for_status(&server, "busy", "receiver a stopped", |s| {
        let receivers = &s["receivers"];
        receivers[0]["id"] == "a"
            && receivers[0]["joined"] == true
            && receivers[0]["process"].is_null()
            && receivers[1]["id"] == "b"
            && receivers[1]["joined"] == false
    });
    // The budget is full of what b must read: the sender waits for room.
    wait_for_status(&server, "busy", "the sender waiting for room", |s| {
        s["sender_waiting_since_ms"].as_u64() <= s["time_ms"].as_u64()
            && s["sender_waiting_since_ms"].is_u64()
    });
    let text = run(server.command().args(["status", "--channel", "busy"]), T);
    succeeded(&text);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("sender running: pid"), "{text}");
    assert!(
        text.contains("waiting for room for") && text.contains("b (never connected)"),
        "{text}"
    );
    assert!(
        text.contains("reading big.bin (") && text.contains("s ago"),
        "{text}"
    );
    for (id, state) in [("a", "stopped"), ("b", "never connected")] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(id) && l.contains(state)),
            "{id} not {state}: {text}"
        );
    }

    let all = run(server.command().args(["status", "--json"]), T);
    succeeded(&all);
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let active = run(server.command().args(["status", "--json", "--active"]), T);
    succeeded(&active);
    let active: serde_json::Value = serde_json::from_slice(&active.stdout).unwrap();
    let names: Vec<&str> = active
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["channel"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["busy"]);

    let watching = spawn(
        server
            .command()
            .args(["status", "--watch", "--channel", "busy"]),
    );
    std::thread::sleep(Duration::from_millis(2500));
    terminate(&watching);
    let watched = wait(watching, T);
    succeeded(&watched);
    let shown = String::from_utf8_lossy(&watched.stdout);
    assert!(shown.matches("channel busy:").count() >= 2, "{shown}");
    // Killed -9 while it waits: its mark stays in Redis, yet status shows
    // neither a sender nor a wait.
    kill(&mut sender);
    wait_for_status(&server, "busy", "the killed sender gone", |s| {
        s["sender"].is_null() && s["sender_waiting_since_ms"].is_null()
    });
}

#[test]
fn status_shows_the_channels_rates_in_and_out_and_how_long_is_left() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    // 16 MiB of 8 KiB lines through a 1 MiB budget, read by a consumer that
    // naps between lines: a steady trickle for several seconds.
    let line = [vec![b'x'; 8191], vec![b'\n']].concat();
    let logs = write(work.path(), "slow.log", &line.repeat(2048));
    let mut sender = spawn(
        server
            .send("slow")
            .receivers("a")
            .limit("1MiB")
            .compress("none")
            .path(&logs),
    );
    let mut receiver = spawn(
        server
            .receive("slow", "a")
            .exec("while IFS= read -r line; do sleep 0.004; done"),
    );
    wait_for_status(&server, "slow", "rates in and out and a time left", |s| {
        s["rate_in"].as_u64() > Some(0)
            && s["rate_out"].as_u64() > Some(0)
            && s["eta_seconds"].is_u64()
    });
    let text = run(server.command().args(["status", "--channel", "slow"]), T);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("rate in ") && text.contains(" left for what was uploaded"),
        "{text}"
    );
    // The receiver dies: nothing moves out, and no time left is promised.
    kill(&mut receiver);
    wait_for_status(&server, "slow", "no rate out once the receiver died", |s| {
        s["rate_out"] == 0 && s["eta_seconds"].is_null()
    });
    kill(&mut sender);
    wait_for_status(&server, "slow", "no rate in once the sender died", |s| {
        s["rate_in"] == 0
    });
}

#[test]
fn report_last_counts_days_back_from_today_or_from_either_end() {
    let server = Server::start();
    let today = jiff::ZonedDateTime::now().date();
    let day = |back: i64| {
        today
            .checked_sub(jiff::Span::new().days(back))
            .unwrap()
            .to_string()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut con = server.connection().await;
        for (key, member) in [
            ("daily:country:2024-02-29", "DE"),
            ("daily:country:2024-03-01", "FR"),
            ("daily:country:2024-03-02", "JP"),
            ("daily:country:2024-03-03", "US"),
            (&*format!("daily:country:{}", day(0)), "AU"),
            (&*format!("daily:country:{}", day(6)), "NZ"),
            (&*format!("daily:country:{}", day(7)), "CA"),
        ] {
            let _: () = redis::cmd("ZADD")
                .arg(key)
                .arg(1)
                .arg(member)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    });
    let days = |args: &[&str]| -> Vec<String> {
        let output = run(server.command().args(["report", "--json"]).args(args), T);
        succeeded(&output);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|day| day["day"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        days(&["--last", "2d", "--to", "2024-03-02"]),
        ["2024-03-01", "2024-03-02"]
    );
    assert_eq!(
        days(&["--from", "2024-02-29", "--last", "2"]),
        ["2024-02-29", "2024-03-01"]
    );
    let last_week = days(&["--last", "1w"]);
    // "Today" is read by the test and by the tool: across midnight they differ.
    if jiff::ZonedDateTime::now().date() == today {
        assert_eq!(last_week, [day(6), day(0)]);
    }
}

/// `status --watch` started before the sender: it waits for the channel
/// and shows it once the sender made it, instead of failing.
#[test]
fn status_watch_waits_for_a_channel_made_later() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let shown = work.path().join("shown");
    let watching = spawn_printing_to(
        server
            .command()
            .args(["status", "--watch", "--channel", "later"]),
        &shown,
    );
    wait_for_text(
        &shown,
        "no channel named \"later\" under prefix \"rd\" yet; waiting for a sender",
    );
    let source = work.path().join("in");
    write(&source, "a.log", b"one line\n");
    let sender = spawn(server.send("later").receivers(1).path(&source));
    wait_for_text(&shown, "channel later:");
    terminate(&watching);
    succeeded(&wait(watching, T));
    let out = work.path().join("out");
    let receiver = spawn(server.receive("later", 0).out(&out));
    succeeded(&wait(sender, T));
    succeeded(&wait(receiver, T));
    assert_eq!(std::fs::read(out.join("a.log")).unwrap(), b"one line\n");
}
