//! `redistribute man`: manual pages from the command definition, one per
//! command, each with its examples, the environment it reads and its exit
//! status (clap_mangen renders the rest).

use std::io::Write;
use std::path::Path;

use redistribute_transfer::{Error, Result};

/// Variables the tool reads, and those it sets for `receive --exec`.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("REDIS_URL", "the Redis to use, as --redis (which wins)"),
    (
        "REDIS_TLS_CA_CERT, REDIS_TLS_CERT, REDIS_TLS_KEY",
        "as --tls-ca-cert, --tls-cert and --tls-key",
    ),
    (
        "REDISTRIBUTE_LOG",
        "what to log, in tracing's filter syntax (e.g. redistribute=debug); overrides -q and -v",
    ),
    (
        "NO_COLOR",
        "when set and not empty, no colours with --color auto",
    ),
    (
        "REDISTRIBUTE_NAME, REDISTRIBUTE_PIECE, REDISTRIBUTE_PIECES",
        "set for a receive --exec command: the file's name, and for a piece of a file sent with --split its number and how many there are",
    ),
];

/// The exit codes, as docs/operations.md lists them.
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "success; also after SIGTERM (the file in progress is abandoned, never acknowledged, and delivered again to the next run)",
    ),
    (
        "1",
        "failure; the last line on stderr says what failed and why",
    ),
    ("2", "invalid command line or option values"),
    (
        "3",
        "the work is done, but not everything was delivered: files were parked (or, with --protocol classic, refused for their names), or receivers wait for files this send was not given",
    ),
    ("101", "internal error (a bug; please report it)"),
    ("130", "interrupted with Ctrl-C"),
];

/// Writes the top-level page to standard output, or with `dir` one page
/// per command into it (`redistribute.1`, `redistribute-send.1`, ...).
pub fn run(dir: Option<&Path>) -> Result<()> {
    let mut command =
        <super::args::Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    command.build();
    match dir {
        None => page(&command, &mut std::io::stdout()).map_err(|e| Error::io("standard output", e)),
        Some(dir) => pages(&command, dir),
    }
}

/// `command`'s page and those of its commands, into `dir`.
fn pages(command: &clap::Command, dir: &Path) -> Result<()> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        pages(sub, dir)?;
    }
    let name = command.get_display_name().unwrap_or(command.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    page(command, &mut file).map_err(|e| Error::io(&path, e))
}

/// One page: clap_mangen's sections, then examples, environment and exit
/// status.
fn page(command: &clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone())
        .source(concat!("redistribute ", env!("CARGO_PKG_VERSION")));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(out)?;
    }
    if let Some(after) = command.get_after_help() {
        examples(&after.to_string(), out)?;
    }
    table(out, "ENVIRONMENT", ENVIRONMENT)?;
    table(out, "EXIT STATUS", EXIT_STATUS)?;
    if command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// The examples of a command's help, kept as they are laid out.
fn examples(after_help: &str, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, ".SH EXAMPLES\n.nf")?;
    for line in after_help.lines().filter(|line| *line != "Examples:") {
        writeln!(out, "{}", escaped(line))?;
    }
    writeln!(out, ".fi")
}

/// A section of tagged paragraphs.
fn table(out: &mut dyn Write, title: &str, rows: &[(&str, &str)]) -> std::io::Result<()> {
    writeln!(out, ".SH \"{title}\"")?;
    for (tag, text) in rows {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", escaped(tag), escaped(text))?;
    }
    Ok(())
}

/// `text` as roff reads it literally: backslashes escaped, and a line
/// that starts with a control character made plain text.
fn escaped(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text
    }
}
