use super::*;

/// `line` parsed in `format`, with itself as the file's first lines.
fn parse(format: LogFormat, line: &[u8]) -> Option<Visit> {
    let options = options(FormatChoice::Named(format), ClientIp::Remote);
    LineParser::for_file(&options, line).ok()?.parse(line)
}

fn day(visit: &Visit) -> &str {
    std::str::from_utf8(&visit.day).unwrap()
}

fn options(format: FormatChoice, client_ip: ClientIp) -> LineOptions {
    LineOptions {
        format,
        client_ip,
        ..LineOptions::default()
    }
}

#[test]
fn book_lines_give_address_and_day() {
    let visit = parse(LogFormat::Book, b"10.1.2.3 2026-11-24 GET /index.html").unwrap();
    assert_eq!(visit.address, Address::V4(0x0a01_0203));
    assert_eq!(day(&visit), "2026-11-24");
}

#[test]
fn combined_lines_give_the_day_of_their_timestamp() {
    let line = br#"2001:db8::1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "-""#;
    let visit = parse(LogFormat::Combined, line).unwrap();
    assert_eq!(
        visit.address,
        Address::V6(0x2001_0db8_0000_0000_0000_0000_0000_0001)
    );
    assert_eq!(day(&visit), "2000-10-10");
}

/// nginx's `$time_iso8601` in place of `$time_local`: `--log-format auto`
/// takes it for combined, and the day is the timestamp's own.
#[test]
fn combined_lines_with_iso_times_in_the_brackets_are_combined() {
    let lines: Vec<&[u8]> = vec![
        br#"192.0.2.7 - - [2026-11-20T00:00:00+00:00] "GET / HTTP/1.1" 200 512 "-" "curl/8.5""#,
        br#"192.0.2.8 - - [2026-11-20T23:59:59+01:00] "GET /a HTTP/1.1" 404 0 "https://example.com/" "Mozilla/5.0""#,
    ];
    let auto = options(FormatChoice::Auto, ClientIp::Remote);
    assert_eq!(
        detect::detect(&lines, &auto).map(|(format, _)| format),
        Some(LogFormat::Combined)
    );
    let visit = parse(LogFormat::Combined, lines[1]).unwrap();
    assert_eq!(visit.address, Address::V4(0xc000_0208));
    assert_eq!(day(&visit), "2026-11-20");
    // Not a date: not a line of this format.
    assert_eq!(
        parse(
            LogFormat::Combined,
            br#"192.0.2.7 - - [2026-13-20T00:00:00Z] "GET / HTTP/1.1" 200 1 "-" "-""#
        ),
        None
    );
}

#[test]
fn vhost_combined_lines_start_with_host_and_port() {
    let line = br#"www.example.com:443 192.0.2.7 - - [01/Mar/2024:00:00:01 +0100] "GET / HTTP/1.1" 200 512 "-" "curl""#;
    let visit = parse(LogFormat::VhostCombined, line).unwrap();
    assert_eq!(visit.address, Address::V4(0xc000_0207));
    assert_eq!(day(&visit), "2024-03-01");
    assert_eq!(parse(LogFormat::VhostCombined, &line[20..]), None);
}

#[test]
fn ipv4_mapped_ipv6_counts_as_ipv4() {
    assert_eq!(
        parse_address(b"::ffff:1.2.3.4"),
        Some(Address::V4(0x0102_0304))
    );
}

#[test]
fn garbage_and_days_off_the_calendar_do_not_parse() {
    for line in [
        &b""[..],
        b"   ",
        b"999.1.1.1 2026-11-24",
        b"1.2.3 day",
        b"hello world",
        b"1.2.3.4",
        b"1.2.3.4 -",
        b"1.2.3.4 2026-02-30",
        b"1.2.3.4 2026-11-24x",
        b"1.2.3.4 \x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c",
        // Ten NULs: no day a parser remembers may stand for "none yet".
        b"1.2.3.4 \0\0\0\0\0\0\0\0\0\0",
    ] {
        assert_eq!(
            parse(LogFormat::Book, line),
            None,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    for line in [
        &b"1.2.3.4 - - [32/Foo/2000:1] x"[..],
        b"1.2.3.4 - - no bracket",
        b"1.2.3.4 - - [31/Nov/2026:10:00:00 +0000] \"GET /\"",
    ] {
        assert_eq!(parse(LogFormat::Combined, line), None);
    }
}

#[test]
fn a_leading_ipv4_address_ends_at_whitespace_and_nowhere_else() {
    assert_eq!(leading_v4(b"1.2.3.4 x"), Some((0x0102_0304, 7)));
    assert_eq!(leading_v4(b"1.2.3.4\tx"), Some((0x0102_0304, 7)));
    assert_eq!(leading_v4(b"1.2.3.4\r"), Some((0x0102_0304, 7)));
    assert_eq!(leading_v4(b"1.2.3.4"), Some((0x0102_0304, 7)));
    for text in [
        &b"1.2.3.4x"[..],
        b"1.2.3.4:80",
        b"1.2.3.4.5",
        b"1.2.3.1234 x",
        b"1.2.3",
    ] {
        assert_eq!(
            leading_v4(text),
            None,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    let visit = parse(LogFormat::Book, b"  1.2.3.4  2026-11-24\r").unwrap();
    assert_eq!(day(&visit), "2026-11-24");
}

#[test]
fn the_fast_ipv4_parser_agrees_with_std() {
    for text in [
        "0.0.0.0",
        "255.255.255.255",
        "1.2.3.4",
        "01.2.3.4",
        "256.1.1.1",
        "1..2.3",
        "1.2.3.4.5",
        "1.2.3.",
    ] {
        let ours = leading_v4(text.as_bytes())
            .filter(|&(_, length)| length == text.len())
            .map(|(value, _)| value);
        let std = text.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
        if text == "01.2.3.4" {
            // Deliberately lenient: std refuses leading zeros, logs do not have them.
            assert_eq!((ours, std), (Some(0x0102_0304), None));
        } else {
            assert_eq!(ours, std, "{text}");
        }
    }
}

#[test]
fn json_lines_find_their_fields_by_the_usual_names_or_the_given_ones() {
    let line = br#"{"time_iso8601":"2024-03-01T23:59:59+01:00","remote_addr":"192.0.2.1","request":"GET / \"x\"","status":200,"nested":{"ip":"9.9.9.9"}}"#;
    let visit = parse(LogFormat::Json, line).unwrap();
    assert_eq!(visit.address, Address::V4(0xc000_0201));
    assert_eq!(day(&visit), "2024-03-01");
    // Epoch numbers, and an escaped string that cannot be borrowed.
    let line = br#"{"ts":1700000000.5,"client_ip":"2001:db8::\u0031"}"#;
    let visit = parse(LogFormat::Json, line).unwrap();
    assert_eq!(day(&visit), "2023-11-14");
    assert_eq!(visit.address, parse_address(b"2001:db8::1").unwrap());
    // Names given on the command line.
    let given = LineOptions {
        format: FormatChoice::Named(LogFormat::Json),
        ip_field: Some("peer".into()),
        time_field: Some("when".into()),
        ..LineOptions::default()
    };
    let line =
        br#"{"peer":"10.0.0.1","when":"10/Oct/2000:13:55:36 -0700","remote_addr":"1.1.1.1"}"#;
    let parser = LineParser::for_file(&given, line).unwrap();
    assert_eq!(parser.describe(), "json (peer, when)");
    assert_eq!(
        parser.parse(line).unwrap().address,
        Address::V4(0x0a00_0001)
    );
    let missing = LineOptions {
        ip_field: Some("nope".into()),
        ..given
    };
    let error = LineParser::for_file(&missing, line).unwrap_err();
    assert!(
        error.contains("--ip-field") && error.contains("peer"),
        "{error}"
    );
    for bad in [
        &br#"{"remote_addr":"1.2.3.4"}"#[..],
        br#"["x"]"#,
        b"{",
        br#"{"remote_addr":"1.2.3.4","time":"2024-02-30"}"#,
    ] {
        assert_eq!(
            parse(LogFormat::Json, bad),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn an_nginx_layout_reads_lines_written_with_it() {
    let layout: NginxLayout =
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time"#
            .parse()
            .unwrap();
    let format = FormatChoice::Nginx(layout);
    let parser = LineParser::for_file(&options(format, ClientIp::Remote), b"").unwrap();
    let line = br#"203.0.113.9 - - [29/Feb/2024:10:00:00 +0000] "GET /a b" 200 12 "-" "Mozilla/5.0 (X11)" rt=0.001"#;
    let visit = parser.parse(line).unwrap();
    assert_eq!(visit.address, Address::V4(0xcb00_7109));
    assert_eq!(day(&visit), "2024-02-29");
    assert_eq!(
        parser.parse(b"203.0.113.9 [29/Feb/2024:10:00:00 +0000]"),
        None
    );

    for (bad, says) in [
        ("$remote_addr$time_local", "no text between"),
        ("$remote_addr [$request]", "needs $remote_addr and one of"),
        ("${remote_addr [$time_local]", "without }"),
        ("$ $remote_addr [$time_local]", "without a variable name"),
    ] {
        let error = bad.parse::<NginxLayout>().unwrap_err();
        assert!(error.contains(says), "{bad}: {error}");
    }
    let braced: NginxLayout = "${remote_addr}|${msec}".parse().unwrap();
    let parser =
        LineParser::for_file(&options(FormatChoice::Nginx(braced), ClientIp::Remote), b"").unwrap();
    assert_eq!(
        day(&parser.parse(b"10.0.0.1|1700000000.123").unwrap()),
        "2023-11-14"
    );
}

#[test]
fn the_client_behind_proxies_is_the_first_untrusted_hop_from_the_server() {
    let net = |text: &str| text.parse::<IpNet>().unwrap();
    let line = |remote: &str, list: &str| {
        format!(
            r#"{remote} - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "{list}""#
        )
    };
    let client_of = |trusted: Vec<IpNet>, remote: &str, list: &str| {
        let forwarded = options(
            FormatChoice::Named(LogFormat::Combined),
            ClientIp::Forwarded { trusted },
        );
        let parser = LineParser::for_file(&forwarded, b"").unwrap();
        let visit = parser.parse(line(remote, list).as_bytes()).unwrap();
        visit.address.to_ip().to_string()
    };
    let proxies = || vec![net("10.0.0.0/8"), net("2001:db8::/32")];
    // No trusted proxies: the one that connected forwarded the client.
    assert_eq!(
        client_of(vec![], "10.0.0.1", "198.51.100.1, 203.0.113.5"),
        "203.0.113.5"
    );
    assert_eq!(client_of(vec![], "10.0.0.1", "-"), "10.0.0.1");
    // Trusted proxies are walked past, from the server back.
    assert_eq!(
        client_of(proxies(), "10.0.0.1", "198.51.100.1, 203.0.113.5, 10.1.1.1"),
        "203.0.113.5"
    );
    assert_eq!(
        client_of(proxies(), "10.0.0.1", "203.0.113.5:4711, [2001:db8::7]:443"),
        "203.0.113.5"
    );
    // A spoofed list from an untrusted peer is ignored.
    assert_eq!(
        client_of(proxies(), "198.51.100.9", "1.1.1.1"),
        "198.51.100.9"
    );
    // All trusted: the furthest hop; garbage ends the walk.
    assert_eq!(
        client_of(proxies(), "10.0.0.1", "10.2.2.2, 10.3.3.3"),
        "10.2.2.2"
    );
    assert_eq!(
        client_of(proxies(), "10.0.0.1", "203.0.113.5, junk, 10.3.3.3"),
        "10.3.3.3"
    );
    // Without the option, the list is not even looked at.
    let plain = parse(
        LogFormat::Combined,
        line("10.0.0.1", "203.0.113.5").as_bytes(),
    )
    .unwrap();
    assert_eq!(plain.address, Address::V4(0x0a00_0001));
    // JSON names its list.
    let json = br#"{"remote_addr":"10.0.0.1","http_x_forwarded_for":"203.0.113.5","time":"2024-03-01T00:00:00Z"}"#;
    let forwarded = options(FormatChoice::Auto, ClientIp::Forwarded { trusted: vec![] });
    let parser = LineParser::for_file(&forwarded, json).unwrap();
    assert_eq!(
        parser.parse(json).unwrap().address,
        Address::V4(0xcb00_7105)
    );
}

#[test]
fn auto_recognises_each_format_from_the_first_lines() {
    let cases: [(&str, &str); 6] = [
        ("1.2.3.4 2024-03-01 GET /", "book"),
        (
            r#"1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5"#,
            "common",
        ),
        (
            r#"1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8""#,
            "combined",
        ),
        (
            r#"example.com:80 1.2.3.4 - - [01/Mar/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8""#,
            "vhost_combined",
        ),
        (
            r#"{"@timestamp":"2024-03-01T00:00:00Z","client_ip":"1.2.3.4"}"#,
            "json (client_ip, @timestamp)",
        ),
        (r#"{"ts":1709251200,"ip":"1.2.3.4"}"#, "json (ip, ts)"),
    ];
    for (line, expected) in cases {
        let start = format!("{line}\n{line}\n\n{line}\n");
        let parser = LineParser::for_file(&LineOptions::default(), start.as_bytes()).unwrap();
        assert_eq!(parser.describe(), expected, "{line}");
        assert_eq!(day(&parser.parse(line.as_bytes()).unwrap()), "2024-03-01");
    }
    let error = LineParser::for_file(&LineOptions::default(), b"\x00\x01binary\nhello world\n")
        .unwrap_err();
    assert!(
        error.contains("no known log format") && error.contains("--log-format"),
        "{error}"
    );
    // One garbage line in a few good ones does not throw detection off.
    let mixed = "garbage\n1.2.3.4 2024-03-01 x\n1.2.3.4 2024-03-02 y\n";
    let parser = LineParser::for_file(&LineOptions::default(), mixed.as_bytes()).unwrap();
    assert_eq!(parser.describe(), "book");
}

#[test]
fn json_fields_may_sit_inside_objects_as_the_elastic_schema_puts_them() {
    let parse_auto = |line: &str| {
        let parser = LineParser::for_file(&LineOptions::default(), line.as_bytes()).unwrap();
        let visit = parser.parse(line.as_bytes()).unwrap();
        (
            parser.describe().to_owned(),
            visit.address,
            day(&visit).to_owned(),
        )
    };
    let ecs = r#"{"@timestamp":"2024-03-01T00:00:00Z","source":{"port":443,"ip":"1.2.3.4"},"http":{"request":{"method":"GET"}}}"#;
    assert_eq!(
        parse_auto(ecs),
        (
            "json (source.ip, @timestamp)".into(),
            Address::V4(0x0102_0304),
            "2024-03-01".into()
        )
    );
    // A key with a dot in it is a name of its own.
    let flat = r#"{"client.ip":"1.2.3.5","ts":1709251200}"#;
    assert_eq!(parse_auto(flat).1, Address::V4(0x0102_0305));
    // Deeper, by name, and a line whose object is not where the name says.
    let given = LineOptions {
        format: FormatChoice::Named(LogFormat::Json),
        ip_field: Some("req.peer.addr".into()),
        ..LineOptions::default()
    };
    let deep =
        r#"{"time":"2024-03-02T10:00:00Z","req":{"peer":{"addr":"2001:db8::1"},"path":"/"}}"#;
    let parser = LineParser::for_file(&given, deep.as_bytes()).unwrap();
    assert_eq!(parser.describe(), "json (req.peer.addr, time)");
    assert_eq!(
        parser.parse(deep.as_bytes()).unwrap().address,
        parse_address(b"2001:db8::1").unwrap()
    );
    assert_eq!(
        parser.parse(br#"{"time":"2024-03-02T10:00:00Z","req":"GET /"}"#),
        None
    );
}
