//! Reaching Redis: passwords kept out of what is printed, a wrong one
//! refused in one line, a unix socket, TLS with a private CA.

use std::process::Command;

use redistribute_transfer::redis::LocalRedisOptions;

use crate::common::{
    self, SendCommand, Server, assert_same_tree, failed_with_one_line, noise, run, spawn,
    succeeded, wait, write,
};
use crate::{T, kill, wait_for_status};

#[test]
fn passwords_stay_out_of_help_and_errors_even_with_a_raw_at_sign() {
    let server = Server::start();
    let mut help = server.command();
    help.env("REDIS_URL", "redis://:hunter2@127.0.0.1:1")
        .args(["send", "--help"]);
    let output = run(&mut help, T);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("REDIS_URL") && !text.contains("hunter2"),
        "{text}"
    );

    let mut status = server.command();
    status
        .env("REDIS_URL", "redis://:top@secret@127.0.0.1:1")
        .arg("status");
    let line = failed_with_one_line(&run(&mut status, T));
    assert!(!line.contains("top") && !line.contains("secret"), "{line}");
}

#[test]
fn a_wrong_password_and_an_unknown_receiver_are_one_line_errors() {
    let server = Server::with(LocalRedisOptions {
        password: Some("right".into()),
        ..LocalRedisOptions::default()
    });
    let port = server.0.port();
    let mut command = server.command();
    command
        .env("REDIS_URL", format!("redis://:wrong@127.0.0.1:{port}"))
        .arg("status");
    let line = failed_with_one_line(&run(&mut command, T));
    assert!(
        line.contains("refused the credentials") && !line.contains("wrong"),
        "{line}"
    );

    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", b"x");
    let mut sender = spawn(
        server
            .send("u")
            .receivers("a,b")
            .path(work.path().join("f")),
    );
    wait_for_status(&server, "u", "the channel", |s| s["files_announced"] == 1);
    let line = failed_with_one_line(&run(server.receive("u", "zed").stdout(), T));
    assert!(
        line.contains("\"zed\" is not a receiver") && line.contains("a, b"),
        "{line}"
    );
    kill(&mut sender);
}

#[test]
fn a_unix_socket_url_works() {
    let server = Server::with(LocalRedisOptions {
        unix_socket: true,
        ..LocalRedisOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    write(work.path(), "f", b"over a socket\n");
    let url = format!("unix://{}", server.0.socket_path().display());
    let sender = spawn(
        server
            .send("u")
            .receivers(1)
            .path(work.path().join("f"))
            .env("REDIS_URL", &url),
    );
    let output = run(server.receive("u", 0).stdout().env("REDIS_URL", &url), T);
    succeeded(&output);
    assert_eq!(output.stdout, b"over a socket\n");
    succeeded(&wait(sender, T));
}

#[test]
fn tls_with_a_private_ca_and_client_certificates_works_and_its_errors_say_what_to_check() {
    let work = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, client_cert, client_key] = common::certificates(work.path());
    let server = Server::with(LocalRedisOptions {
        tls: Some(redistribute_transfer::redis::LocalTls {
            cert: server_cert,
            key: server_key,
            ca: ca.clone(),
        }),
        ..LocalRedisOptions::default()
    });
    let source = work.path().join("in");
    for i in 0..3 {
        write(&source, &format!("f{i}"), &noise(200_000 * i + 1, i as u64));
    }
    let tls = |command: &mut Command| {
        common::with_tls(command, &ca, &client_cert, &client_key);
    };
    let mut send = server.command();
    tls(&mut send);
    let sender = spawn(SendCommand::new(send, "t").receivers(1).path(&source));
    // The same files through environment variables instead of options.
    let out = work.path().join("out");
    succeeded(&run(
        server
            .receive("t", 0)
            .out(&out)
            .env("REDIS_TLS_CA_CERT", &ca)
            .env("REDIS_TLS_CERT", &client_cert)
            .env("REDIS_TLS_KEY", &client_key),
        T,
    ));
    succeeded(&wait(sender, T));
    assert_same_tree(&source, &out);

    // Without the CA the server is a stranger; without a client
    // certificate the server hangs up.
    let line = failed_with_one_line(&run(server.command().arg("status"), T));
    assert!(
        line.contains("TLS") && line.contains("--tls-ca-cert"),
        "{line}"
    );
    let mut anonymous = server.command();
    anonymous.arg("--tls-ca-cert").arg(&ca).arg("status");
    let line = failed_with_one_line(&run(&mut anonymous, T));
    assert!(line.contains("--tls-cert"), "{line}");
}
