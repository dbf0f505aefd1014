//! `report` against a real redis-server: sorted sets written with ZADD, as
//! the aggregation job leaves them, read back through the library API.

mod common;

use common::Server;
use redistribute_job::report::{DaySelection, Dimension, Report, ReportQuery, gather};
use redistribute_transfer::Error;
use redistribute_transfer::redis::Redis;

/// Writes one day's visits for a dimension, as `member → visits` pairs.
async fn visits(server: &Server, by: &str, day: &str, members: &[(&str, u64)]) {
    let mut con = server.connection().await;
    let mut command = redis::cmd("ZADD");
    command.arg(format!("daily:{by}:{day}"));
    for (member, count) in members {
        command.arg(*count).arg(*member);
    }
    let _: () = command.query_async(&mut con).await.unwrap();
}

async fn report(server: &Server, by: Dimension, days: DaySelection, top: usize) -> Report {
    let redis = Redis::connect(&server.url()).await.unwrap();
    gather(
        &redis,
        &ReportQuery {
            by,
            days,
            top,
            namespace: String::new(),
        },
    )
    .await
    .unwrap()
}

fn one(day: &str) -> DaySelection {
    DaySelection::One(day.into())
}

fn range(from: &str, to: &str) -> DaySelection {
    DaySelection::Range {
        from: from.into(),
        to: to.into(),
    }
}

fn day_names(report: &Report) -> Vec<&str> {
    report.days.iter().map(|day| day.day.as_str()).collect()
}

fn members(report: &Report, index: usize) -> Vec<(&str, u64)> {
    report.days[index]
        .rows
        .iter()
        .map(|row| (row.member.as_str(), row.visits))
        .collect()
}

#[tokio::test]
async fn a_day_shows_its_top_members_with_the_total_of_all() {
    let server = Server::start();
    let day = [("DE", 50), ("FR", 30), ("US", 70), ("IT", 10), ("ES", 40)];
    visits(&server, "country", "2024-01-01", &day).await;
    visits(&server, "country", "2024-01-02", &[("DE", 999)]).await;

    let report = report(&server, Dimension::Country, one("2024-01-01"), 3).await;

    assert_eq!(day_names(&report), ["2024-01-01"]);
    assert_eq!(members(&report, 0), [("US", 70), ("DE", 50), ("ES", 40)]);
    let day = &report.days[0];
    assert_eq!((day.total, day.members), (200, 5));
    let ranks: Vec<usize> = day.rows.iter().map(|row| row.rank).collect();
    assert_eq!(ranks, [1, 2, 3]);
    assert_eq!(day.rows[0].share, 35.0);
}

#[tokio::test]
async fn top_zero_shows_every_member() {
    let server = Server::start();
    visits(
        &server,
        "region",
        "2024-01-01",
        &[("DE/BY", 2), ("DE/BE", 3), ("FR/IDF", 1)],
    )
    .await;

    let report = report(&server, Dimension::Region, one("2024-01-01"), 0).await;

    assert_eq!(
        members(&report, 0),
        [("DE/BE", 3), ("DE/BY", 2), ("FR/IDF", 1)]
    );
}

#[tokio::test]
async fn a_day_without_visits_asked_for_by_name_is_reported_empty() {
    let server = Server::start();

    let report = report(&server, Dimension::Country, one("2024-01-01"), 10).await;

    assert_eq!(day_names(&report), ["2024-01-01"]);
    assert_eq!((report.days[0].total, report.days[0].members), (0, 0));
    assert!(report.to_table().contains("all 0 countries"));
}

#[tokio::test]
async fn a_range_includes_both_ends_and_skips_days_without_visits() {
    let server = Server::start();
    for day in [
        "2024-01-01",
        "2024-01-02",
        "2024-01-04",
        "2024-01-05",
        "2024-01-06",
    ] {
        visits(&server, "country", day, &[("DE", 1)]).await;
    }

    let report = report(
        &server,
        Dimension::Country,
        range("2024-01-02", "2024-01-05"),
        5,
    )
    .await;

    assert_eq!(
        day_names(&report),
        ["2024-01-02", "2024-01-04", "2024-01-05"]
    );
}

#[tokio::test]
async fn all_days_are_found_in_date_order_among_unrelated_keys() {
    let server = Server::start();
    let mut con = server.connection().await;
    // Enough unrelated keys that SCAN needs several rounds.
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.set(format!("other:{i}"), i).ignore();
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();
    visits(&server, "city", "2024-02-01", &[("DE/BE/Berlin", 3)]).await;
    visits(&server, "city", "2023-12-31", &[("FR/IDF/Paris", 4)]).await;
    visits(&server, "country", "2024-01-15", &[("DE", 5)]).await; // another dimension
    visits(&server, "city", "not-a-day", &[("X", 1)]).await;
    let marker = "{daily:city:2024-02-01}:applied"; // the aggregation job's
    let _: () = redis::cmd("SADD")
        .arg(marker)
        .arg("token")
        .query_async(&mut con)
        .await
        .unwrap();

    let report = report(&server, Dimension::City, DaySelection::All, 10).await;

    assert_eq!(day_names(&report), ["2023-12-31", "2024-02-01"]);
    assert_eq!(members(&report, 1), [("DE/BE/Berlin", 3)]);
}

#[tokio::test]
async fn unknown_addresses_are_ranked_like_any_member() {
    let server = Server::start();
    visits(
        &server,
        "country",
        "2024-01-01",
        &[("unknown", 9), ("DE", 4), ("FR", 12)],
    )
    .await;

    let report = report(&server, Dimension::Country, one("2024-01-01"), 10).await;

    assert_eq!(members(&report, 0), [("FR", 12), ("unknown", 9), ("DE", 4)]);
    let table = report.to_table();
    let line = table.lines().find(|line| line.contains("unknown")).unwrap();
    assert!(line.contains("  2  ") && line.contains("36.0%"), "{table}");
}

#[tokio::test]
async fn bad_days_are_refused_before_reading_redis() {
    let server = Server::start();
    let redis = Redis::connect(&server.url()).await.unwrap();
    for days in [
        one("2024-02-30"),
        range("2024-01-01", "24-01-02"),
        range("2024-01-02", "2024-01-01"),
    ] {
        let query = ReportQuery {
            by: Dimension::Country,
            days: days.clone(),
            top: 3,
            namespace: String::new(),
        };
        let result = gather(&redis, &query).await;
        assert!(
            matches!(result, Err(Error::Usage(_))),
            "{days:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_day_key_that_is_not_a_sorted_set_names_the_key() {
    let server = Server::start();
    let mut con = server.connection().await;
    let _: () = redis::cmd("SET")
        .arg("daily:country:2024-01-01")
        .arg("oops")
        .query_async(&mut con)
        .await
        .unwrap();
    let redis = Redis::connect(&server.url()).await.unwrap();
    let query = ReportQuery {
        by: Dimension::Country,
        days: DaySelection::All,
        top: 3,
        namespace: String::new(),
    };

    let error = gather(&redis, &query).await.unwrap_err();

    assert!(
        matches!(&error, Error::Protocol { key, .. } if key == "daily:country:2024-01-01"),
        "{error}"
    );
}

#[tokio::test]
async fn csv_quotes_members_with_commas_and_quotes() {
    let server = Server::start();
    let tricky = [
        ("US/DC/Washington, D.C.", 5),
        ("FR/IDF/Le \"Bourget\"", 3),
        ("DE/BE/Berlin", 2),
    ];
    visits(&server, "city", "2024-01-01", &tricky).await;

    let csv_text = report(&server, Dimension::City, one("2024-01-01"), 10)
        .await
        .to_csv();

    assert!(
        csv_text.starts_with("day,rank,member,visits,share\n"),
        "{csv_text}"
    );
    assert!(
        csv_text.contains(r#""FR/IDF/Le ""Bourget""""#),
        "{csv_text}"
    );
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let records: Vec<Vec<String>> = reader
        .records()
        .map(|record| record.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        records,
        [
            ["2024-01-01", "1", "US/DC/Washington, D.C.", "5", "50.00"],
            ["2024-01-01", "2", "FR/IDF/Le \"Bourget\"", "3", "30.00"],
            ["2024-01-01", "3", "DE/BE/Berlin", "2", "20.00"],
        ]
    );
}

#[tokio::test]
async fn json_is_an_array_of_days_with_their_rows() {
    let server = Server::start();
    visits(&server, "country", "2024-01-01", &[("DE", 3), ("FR", 1)]).await;
    visits(&server, "country", "2024-01-02", &[("unknown", 2)]).await;

    let json = report(&server, Dimension::Country, DaySelection::All, 1)
        .await
        .to_json();

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value,
        serde_json::json!([
            {"day": "2024-01-01", "total": 4, "members": 2,
             "rows": [{"rank": 1, "member": "DE", "name": "Germany", "visits": 3, "share": 75.0}]},
            {"day": "2024-01-02", "total": 2, "members": 1,
             "rows": [{"rank": 1, "member": "unknown", "visits": 2, "share": 100.0}]},
        ])
    );
}

#[tokio::test]
async fn the_chart_is_valid_svg_with_a_labelled_bar_per_row() {
    let server = Server::start();
    let hostile = "XX/<script>&\"quoted\"/it's";
    let first = [
        ("US/CA/San Francisco", 120),
        ("unknown", 80),
        ("DE/BE/Berlin", 95),
        (hostile, 30),
        ("FR/IDF/Paris", 10),
    ];
    visits(&server, "city", "2024-03-01", &first).await;
    let second = [
        ("DE/BE/Berlin", 140),
        ("US/CA/San Francisco", 60),
        ("JP/13/Tōkyō", 75),
        ("unknown", 20),
    ];
    visits(&server, "city", "2024-03-02", &second).await;
    visits(
        &server,
        "city",
        "2024-03-04",
        &[("FR/IDF/Paris", 40), ("US/DC/Washington, D.C.", 33)],
    )
    .await;

    let report = report(&server, Dimension::City, DaySelection::All, 4).await;
    let svg = report.to_svg();
    // Kept for a person to look at: `rsvg-convert` turns it into a PNG.
    let sample = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-sample.svg");
    std::fs::write(&sample, &svg).unwrap();

    let document = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let with_class = |class: &str| {
        document
            .descendants()
            .filter(|node| node.attribute("class") == Some(class))
            .collect::<Vec<_>>()
    };
    let bars = with_class("bar");
    assert_eq!(bars.len(), 4 + 4 + 2);
    let labels: Vec<&str> = with_class("label")
        .iter()
        .map(|node| node.text().unwrap())
        .collect();
    let expected: Vec<&str> = report
        .days
        .iter()
        .flat_map(|day| day.rows.iter().map(|row| row.member.as_str()))
        .collect();
    assert_eq!(labels, expected);
    assert!(labels.contains(&hostile));
    let headings: Vec<String> = with_class("day")
        .iter()
        .map(|node| node.descendants().filter_map(|n| n.text()).collect())
        .collect();
    assert!(
        headings[0].starts_with("2024-03-01") && headings[0].contains("Friday"),
        "{headings:?}"
    );
    assert_eq!(headings.len(), 3);

    // A member keeps its colour on every day; unknown is the odd one out.
    let fill_of = |member: &str| {
        let fills: Vec<&str> = labels
            .iter()
            .zip(&bars)
            .filter(|(label, _)| **label == member)
            .map(|(_, bar)| bar.attribute("fill").unwrap())
            .collect();
        assert!(
            fills.windows(2).all(|pair| pair[0] == pair[1]),
            "{member}: {fills:?}"
        );
        fills[0]
    };
    let colours = [
        "US/CA/San Francisco",
        "DE/BE/Berlin",
        "JP/13/Tōkyō",
        "FR/IDF/Paris",
        hostile,
    ]
    .map(fill_of);
    let mut distinct = colours.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), colours.len(), "{colours:?}");
    assert!(!colours.contains(&fill_of("unknown")));
}

#[tokio::test]
async fn an_empty_chart_is_still_a_valid_document() {
    let server = Server::start();

    let svg = report(&server, Dimension::Country, DaySelection::All, 10)
        .await
        .to_svg();

    let document = roxmltree::Document::parse(&svg).unwrap();
    let text: String = document
        .descendants()
        .filter_map(|node| node.text())
        .collect();
    assert!(text.contains("No visits"), "{svg}");
}

#[tokio::test]
async fn country_names_stand_beside_codes() {
    let server = Server::start();
    let day = [("GB", 5), ("KR", 4), ("AP", 2), ("unknown", 1)];
    visits(&server, "country", "2024-01-01", &day).await;

    let report = report(&server, Dimension::Country, DaySelection::All, 0).await;

    let names: Vec<(&str, Option<&str>)> = report.days[0]
        .rows
        .iter()
        .map(|row| (row.member.as_str(), row.name))
        .collect();
    assert_eq!(
        names,
        [
            ("GB", Some("United Kingdom")),
            ("KR", Some("South Korea")),
            ("AP", None),
            ("unknown", None)
        ]
    );
    let table = report.to_table();
    assert!(table.contains("GB United Kingdom"), "{table}");
    assert!(table.contains(" AP "), "{table}");
    let svg = report.to_svg();
    assert!(svg.contains(">KR South Korea</text>"), "{svg}");
}

#[tokio::test]
async fn a_range_follows_the_top_members_on_every_day_even_outside_the_top() {
    let server = Server::start();
    visits(
        &server,
        "country",
        "2024-03-01",
        &[("DE", 50), ("FR", 40), ("US", 1)],
    )
    .await;
    visits(&server, "country", "2024-03-02", &[("FR", 30), ("DE", 20)]).await;
    // No visits on the 3rd: the lines must still place the 4th correctly.
    visits(&server, "country", "2024-03-04", &[("US", 90), ("FR", 10)]).await;

    let top1 = report(
        &server,
        Dimension::Country,
        range("2024-03-01", "2024-03-04"),
        1,
    )
    .await;

    // Top 1 a day: DE (50), FR (30), US (90); followed: at most `top`
    // members, chosen by their visits over the rows shown.
    let series: Vec<(&str, &[u64])> = top1
        .series
        .iter()
        .map(|series| (series.member.as_str(), series.visits.as_slice()))
        .collect();
    assert_eq!(series, [("US", &[1, 0, 90][..])]);

    let report3 = report(
        &server,
        Dimension::Country,
        range("2024-03-01", "2024-03-04"),
        3,
    )
    .await;
    let series: Vec<(&str, &[u64])> = report3
        .series
        .iter()
        .map(|series| (series.member.as_str(), series.visits.as_slice()))
        .collect();
    assert_eq!(
        series,
        [
            ("US", &[1, 0, 90][..]),
            ("FR", &[40, 30, 10][..]),
            ("DE", &[50, 20, 0][..])
        ]
    );
    assert_eq!(report3.series[1].name, Some("France"));

    let one_day = report(&server, Dimension::Country, one("2024-03-01"), 3).await;
    assert!(one_day.series.is_empty());
}

#[tokio::test]
async fn over_a_range_the_chart_draws_a_line_per_followed_member_on_a_calendar() {
    let server = Server::start();
    let days = [
        ("2024-03-01", [("DE", 50), ("FR", 40), ("unknown", 5)]),
        ("2024-03-02", [("DE", 60), ("FR", 35), ("unknown", 6)]),
        ("2024-03-05", [("DE", 90), ("FR", 20), ("unknown", 9)]),
    ];
    for (day, members) in &days {
        visits(&server, "country", day, members).await;
    }

    let report = report(&server, Dimension::Country, DaySelection::All, 3).await;
    let svg = report.to_svg();
    let sample = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-lines.svg");
    std::fs::write(&sample, &svg).unwrap();
    let document = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let with_class = |class: &str| {
        document
            .descendants()
            .filter(|node| node.attribute("class") == Some(class))
            .collect::<Vec<_>>()
    };
    let points = |node: &roxmltree::Node| -> Vec<(f64, f64)> {
        node.attribute("points")
            .unwrap()
            .split(' ')
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    };

    let lines = with_class("series");
    let members: Vec<&str> = lines
        .iter()
        .map(|line| line.attribute("data-member").unwrap())
        .collect();
    assert_eq!(members.len(), 3, "{members:?}");
    for member in ["DE", "FR", "unknown"] {
        assert!(
            members.contains(&member),
            "{member} has no line: {members:?}"
        );
    }
    let mut all: Vec<((f64, f64), u64)> = Vec::new();
    for line in &lines {
        let member = line.attribute("data-member").unwrap();
        let series = report.series.iter().find(|s| s.member == member).unwrap();
        let xy = points(line);
        assert_eq!(xy.len(), 3, "{member}");
        // Days sit on the calendar: Mar 2 to Mar 5 is three times Mar 1 to 2.
        let (first, second) = (xy[1].0 - xy[0].0, xy[2].0 - xy[1].0);
        assert!((second / first - 3.0).abs() < 0.01, "{xy:?}");
        all.extend(xy.into_iter().zip(series.visits.iter().copied()));
    }
    // One scale for all lines: more visits is always higher on the page.
    for &((_, y1), v1) in &all {
        for &((_, y2), v2) in &all {
            if v1 > v2 {
                assert!(y1 < y2, "{v1} at {y1} is not above {v2} at {y2}");
            }
        }
    }
    let colour_of_line = |member: &str| {
        lines
            .iter()
            .find(|l| l.attribute("data-member") == Some(member))
            .unwrap()
            .attribute("stroke")
            .unwrap()
    };
    let bar_colour = |member: &str| {
        with_class("bar")
            .iter()
            .find(|bar| {
                bar.descendants()
                    .filter_map(|n| n.text())
                    .any(|t| t.starts_with(&format!("{member} ")))
            })
            .unwrap()
            .attribute("fill")
            .unwrap()
    };
    assert_eq!(colour_of_line("DE"), bar_colour("DE"));
    assert_ne!(colour_of_line("DE"), colour_of_line("FR"));

    let labels: Vec<&str> = with_class("series-label")
        .iter()
        .map(|node| node.text().unwrap())
        .collect();
    assert_eq!(labels.len(), 3);
    assert!(labels.contains(&"DE Germany"), "{labels:?}");

    // The totals: 95, 101, 119 rise, and so does their trend.
    let totals = points(&with_class("trend-total")[0]);
    assert_eq!(totals.len(), 3);
    let fit = &with_class("trend-fit")[0];
    let y = |name: &str| fit.attribute(name).unwrap().parse::<f64>().unwrap();
    assert!(y("y2") < y("y1"), "the trend of rising totals points up");
    let trend: String = with_class("trend")[0].text().unwrap().into();
    assert!(trend.starts_with("trend +"), "{trend}");
    let x_labels: Vec<&str> = with_class("x-label")
        .iter()
        .map(|node| node.text().unwrap())
        .collect();
    assert_eq!(x_labels.first(), Some(&"Mar 1"), "{x_labels:?}");
}
