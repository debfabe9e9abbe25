//! `berth version`: as `docker compose version` (`--short`, `--format pretty|json`).

use clap::{Args, ValueEnum};

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How `version` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VersionFormat {
    Pretty,
    Json,
}

/// `berth version` flags.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format the output
    #[arg(long, value_enum, default_value = "pretty")]
    pub format: VersionFormat,
    /// Shows only berth's version number
    #[arg(long)]
    pub short: bool,
}

/// The text `version` prints (with its final newline).
pub fn render(args: &VersionArgs) -> String {
    if args.short {
        return format!("{VERSION}\n");
    }
    match args.format {
        VersionFormat::Pretty => pretty(),
        VersionFormat::Json => format!("{{\"version\":\"v{VERSION}\"}}\n"),
    }
}

/// `berth version vX.Y.Z` (also what `berth --version` prints).
pub fn pretty() -> String {
    format!("berth version v{VERSION}\n")
}

/// Prints the version.
pub fn run(args: &VersionArgs) {
    print!("{}", render(args));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let a = |format, short| VersionArgs { format, short };
        assert_eq!(
            render(&a(VersionFormat::Pretty, false)),
            format!("berth version v{VERSION}\n")
        );
        assert_eq!(
            render(&a(VersionFormat::Json, false)),
            format!("{{\"version\":\"v{VERSION}\"}}\n")
        );
        assert_eq!(
            render(&a(VersionFormat::Json, true)),
            format!("{VERSION}\n")
        );
    }
}
