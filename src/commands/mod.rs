//! One module per verb. Each exposes its clap arguments and a `run` taking the resolved
//! [`crate::cli::Settings`].

pub mod attached;
pub mod config;
pub mod container;
pub mod container_ops;
pub mod daemon;
pub mod down;
pub mod events;
pub mod follow;
pub mod image;
pub mod images;
pub mod login;
pub mod logs;
pub mod network;
pub mod project_logs;
pub mod ps;
pub mod pull;
pub mod run;
pub mod service_verbs;
pub mod up;
pub mod version;
pub mod volume;
pub mod volumes;

/// docker's tabwriter layout: every column but the last padded to its widest cell plus
/// `padding`, and to at least `min_width`.
pub fn tabwrite<R: AsRef<[String]>>(rows: &[R], min_width: usize, padding: usize) -> String {
    let cols = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(c))
                .map(|s| (s.chars().count() + padding).max(min_width))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let row = row.as_ref();
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < row.len() {
                out.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}
