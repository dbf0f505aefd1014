//! Location tables stored in and loaded from a real redis-server.

mod common;

use std::time::Instant;

use redistribute_job::geo::{self, GeoTable};
use redistribute_transfer::Error;
use redistribute_transfer::redis::Redis;

const PREFIX: &str = "test";

fn small_table(dir: &std::path::Path, country: &str) -> GeoTable {
    let path = common::write(
        dir,
        "ranges.csv",
        format!("1.0.0.0,1.0.0.255,{country}\n2001:200::,2001:200::ffff,{country}\n").as_bytes(),
    );
    GeoTable::from_files(&[path]).unwrap()
}

#[tokio::test]
async fn nothing_imported_loads_as_nothing() {
    let server = common::Server::start();
    let redis = Redis::connect(&server.url()).await.unwrap();
    assert_eq!(geo::current_version(&redis, PREFIX).await.unwrap(), None);
    assert!(geo::load(&redis, PREFIX).await.unwrap().is_none());
}

#[tokio::test]
async fn the_built_in_table_loads_back_unchanged_and_quickly() {
    let server = common::Server::start();
    let redis = Redis::connect(&server.url()).await.unwrap();
    let table = GeoTable::builtin().unwrap();
    let version = geo::store(&redis, PREFIX, &table).await.unwrap();
    assert_eq!(version, 1);

    let started = Instant::now();
    let (loaded_version, loaded) = geo::load(&redis, PREFIX).await.unwrap().unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "loading a {} byte table took {elapsed:?}",
        table.to_bytes().len()
    );
    assert_eq!(loaded_version, 1);
    assert_eq!(loaded, table);
    let au = loaded.lookup("1.0.0.1".parse().unwrap()).unwrap();
    assert_eq!(au.country, "AU");
    // The target is 1 s in release builds; debug builds are several times
    // slower, so this only catches something far off.
    assert!(elapsed.as_secs() < 5, "loading took {elapsed:?}");
}

#[tokio::test]
async fn a_new_import_keeps_the_previous_version_and_deletes_older_ones() {
    let server = common::Server::start();
    let redis = Redis::connect(&server.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (expected_version, country) in [(1, "AU"), (2, "FR"), (3, "JP")] {
        let table = small_table(dir.path(), country);
        assert_eq!(
            geo::store(&redis, PREFIX, &table).await.unwrap(),
            expected_version
        );
    }
    assert_eq!(
        server.keys("test:geo:*").await,
        [
            "test:geo:current",
            "test:geo:table:2",
            "test:geo:table:3",
            "test:geo:version"
        ]
    );
    let (version, table) = geo::load(&redis, PREFIX).await.unwrap().unwrap();
    assert_eq!(version, 3);
    let place = table.lookup("2001:200::1".parse().unwrap()).unwrap();
    assert_eq!(place.country, "JP");
}

#[tokio::test]
async fn an_older_import_finishing_late_does_not_replace_a_newer_one() {
    let server = common::Server::start();
    let redis = Redis::connect(&server.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Another import already made version 5 current.
    let mut con = server.connection().await;
    let _: () = redis::cmd("SET")
        .arg("test:geo:current")
        .arg(5)
        .query_async(&mut con)
        .await
        .unwrap();
    let table = small_table(dir.path(), "AU");
    assert_eq!(geo::store(&redis, PREFIX, &table).await.unwrap(), 1);
    assert_eq!(geo::current_version(&redis, PREFIX).await.unwrap(), Some(5));
}

#[tokio::test]
async fn a_damaged_table_in_redis_is_reported_with_its_key() {
    let server = common::Server::start();
    let redis = Redis::connect(&server.url()).await.unwrap();
    let mut con = server.connection().await;
    let _: () = redis::cmd("MSET")
        .arg("test:geo:current")
        .arg(7)
        .arg("test:geo:table:7")
        .arg("RDGEOTBL but not really")
        .query_async(&mut con)
        .await
        .unwrap();
    let error = geo::load(&redis, PREFIX).await.unwrap_err();
    assert!(
        matches!(&error, Error::Protocol { key, .. } if key == "test:geo:table:7"),
        "{error}"
    );

    let _: () = redis::cmd("SET")
        .arg("test:geo:current")
        .arg("seven")
        .query_async(&mut con)
        .await
        .unwrap();
    let error = geo::current_version(&redis, PREFIX).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("\"seven\" is not a version number"),
        "{error}"
    );
}
