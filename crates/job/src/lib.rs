//! The location job: count visits per day by country, region and city from
//! log lines as files stream in, exactly once per file, and report them.
//!
//! [`logline`] takes the address and day out of a line; [`geo`] maps an
//! address to a place; [`aggregate`] counts a file and adds its counts to
//! Redis once; [`report`] reads the counts back as tables and charts.

pub mod aggregate;
pub mod geo;
pub mod logline;
pub mod report;
pub mod telemetry;
