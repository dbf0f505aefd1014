//! `--color`: read before clap parses the command line, so that help and
//! usage errors follow it too.

/// When output is colored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless the NO_COLOR environment variable is set.
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// What `--color` says in `args`, read before clap parses them, so
    /// that help and usage errors follow it too.
    pub fn from_args(args: &[std::ffi::OsString]) -> ColorWhen {
        let mut chosen = ColorWhen::Auto;
        let mut args = args.iter().filter_map(|a| a.to_str());
        while let Some(arg) = args.next() {
            let value = match arg.strip_prefix("--color") {
                Some("") => args.next(),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            };
            match value {
                Some("always") => chosen = ColorWhen::Always,
                Some("never") => chosen = ColorWhen::Never,
                Some(_) => chosen = ColorWhen::Auto,
                None => {}
            }
        }
        chosen
    }

    /// Whether to color what goes to stderr.
    pub fn for_stderr(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::IsTerminal::is_terminal(&std::io::stderr())
            }
        }
    }

    /// The same for clap's help and errors.
    pub fn for_clap(self) -> clap::ColorChoice {
        match self {
            ColorWhen::Always => clap::ColorChoice::Always,
            ColorWhen::Never => clap::ColorChoice::Never,
            ColorWhen::Auto => clap::ColorChoice::Auto,
        }
    }
}
