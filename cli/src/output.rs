//! Output for people: aligned tables, times, coloured statuses. Colours go through
//! [`anstream`], which drops them when stdout is not a terminal or `NO_COLOR` is set.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentgraph_engine::RunStatus;
use anstyle::{AnsiColor, Style};
use serde::Serialize;

/// Standard output, with colours when they make sense.
pub(crate) type Out = anstream::AutoStream<io::Stdout>;

/// A new handle on standard output.
pub(crate) fn stdout() -> Out {
    anstream::AutoStream::auto(io::stdout())
}

/// Prints `value` as one JSON document.
pub(crate) fn json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// The colour of a status.
pub(crate) fn status_style(status: RunStatus) -> Style {
    let colour = match status {
        RunStatus::Completed => AnsiColor::Green,
        RunStatus::Failed => AnsiColor::Red,
        RunStatus::Running => AnsiColor::Yellow,
        RunStatus::Interrupted => AnsiColor::Magenta,
        RunStatus::Pending => AnsiColor::Blue,
        RunStatus::RetryScheduled => AnsiColor::Cyan,
        RunStatus::BudgetExceeded => AnsiColor::BrightYellow,
        _ => return Style::new().dimmed(),
    };
    Style::new().fg_color(Some(colour.into()))
}

/// Headers and labels.
pub(crate) const BOLD: Style = Style::new().bold();

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long before `now_ms` the instant `ms` was: `12s ago`, `5m ago`, `3h ago`, `2d ago`;
/// `just now` under a second (or in the future, for clocks that disagree).
pub(crate) fn ago(ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(ms) / 1000;
    match secs {
        0 => "just now".to_owned(),
        1..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// How long after `now_ms` the instant `ms` is: `in 12s`, `in 5m`, `in 3h`, `in 2d`;
/// `expired` when it is not after `now_ms`.
pub(crate) fn until(ms: u64, now_ms: u64) -> String {
    if ms <= now_ms {
        return "expired".to_owned();
    }
    let secs = (ms - now_ms) / 1000;
    match secs {
        0 => "in <1s".to_owned(),
        1..60 => format!("in {secs}s"),
        60..3600 => format!("in {}m", secs / 60),
        3600..86_400 => format!("in {}h", secs / 3600),
        _ => format!("in {}d", secs / 86_400),
    }
}

/// The instant `ms` (milliseconds since the Unix epoch) in RFC 3339, UTC, to the millisecond.
pub(crate) fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A byte count for people: `812 B`, `4.2 KiB`, `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else if f < KIB * KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else {
        format!("{:.1} GiB", f / (KIB * KIB * KIB))
    }
}

/// The first line of `text`, cut to `max` characters with `…` when longer.
pub(crate) fn summary(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max && line.len() == text.trim_end().len() {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// A table printed with its columns aligned; a cell may have a style, applied after padding
/// so that colours do not upset the alignment. Headings between rows (a thread's
/// invocations) are printed whole, outside the columns.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Row>,
}

/// A line of a [`Table`] under its header.
#[derive(Debug)]
enum Row {
    Cells(Vec<(String, Style)>),
    Heading(String),
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub(crate) fn row(&mut self, cells: Vec<String>) -> &mut Self {
        self.styled_row(cells.into_iter().map(|c| (c, Style::new())).collect())
    }

    /// Adds a row of styled cells.
    pub(crate) fn styled_row(&mut self, cells: Vec<(String, Style)>) -> &mut Self {
        self.rows.push(Row::Cells(cells));
        self
    }

    /// Adds a heading: a bold line of its own between rows, which does not widen the columns.
    pub(crate) fn heading(&mut self, text: String) -> &mut Self {
        self.rows.push(Row::Heading(text));
        self
    }

    /// Prints the table: a bold header, then the rows, two spaces between columns, no
    /// trailing spaces.
    pub(crate) fn print(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            let Row::Cells(row) = row else { continue };
            for (i, (text, _)) in row.iter().enumerate() {
                let w = text.chars().count();
                match widths.get_mut(i) {
                    Some(width) => *width = (*width).max(w),
                    None => widths.push(w),
                }
            }
        }
        let header: Vec<(String, Style)> =
            self.header.iter().map(|h| (h.to_string(), BOLD)).collect();
        print_cells(out, &header, &widths)?;
        for row in &self.rows {
            match row {
                Row::Cells(cells) => print_cells(out, cells, &widths)?,
                Row::Heading(text) => writeln!(out, "{BOLD}{text}{BOLD:#}")?,
            }
        }
        Ok(())
    }
}

/// One line of a table's cells, padded to `widths`, without trailing spaces.
fn print_cells(out: &mut impl Write, row: &[(String, Style)], widths: &[usize]) -> io::Result<()> {
    let mut line = String::new();
    let last = row.iter().rposition(|(t, _)| !t.is_empty());
    for (i, (text, style)) in row.iter().enumerate() {
        if Some(i) > last {
            break;
        }
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(&format!("{style}{text}{style:#}"));
        if Some(i) != last {
            let pad = widths[i] - text.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = 10_000_000_000;
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now + 5_000, now), "just now");
        assert_eq!(ago(now - 42_000, now), "42s ago");
        assert_eq!(ago(now - 5 * 60_000 - 1, now), "5m ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3h ago");
        assert_eq!(ago(now - 2 * 86_400_000, now), "2d ago");
    }

    #[test]
    fn times_to_come() {
        let now = 10_000_000_000;
        assert_eq!(until(now, now), "expired");
        assert_eq!(until(now - 1, now), "expired");
        assert_eq!(until(now + 500, now), "in <1s");
        assert_eq!(until(now + 42_000, now), "in 42s");
        assert_eq!(until(now + 5 * 60_000 + 1, now), "in 5m");
        assert_eq!(until(now + 3 * 3_600_000, now), "in 3h");
        assert_eq!(until(now + 2 * 86_400_000, now), "in 2d");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(4300), "4.2 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn summaries_keep_one_line() {
        assert_eq!(summary("short", 10), "short");
        assert_eq!(summary("first\nsecond", 10), "first…");
        assert_eq!(summary("abcdefghijkl", 5), "abcd…");
    }

    #[test]
    fn tables_align_without_trailing_spaces() {
        let mut t = Table::new(vec!["RUN", "STATUS", "ERROR"]);
        t.row(vec!["a".into(), "completed".into(), String::new()])
            .row(vec!["long-run".into(), "failed".into(), "boom".into()]);
        let mut out = Vec::new();
        t.print(&mut out).unwrap();
        let text = anstream::adapter::strip_str(std::str::from_utf8(&out).unwrap()).to_string();
        assert_eq!(
            text,
            "RUN       STATUS     ERROR\n\
             a         completed\n\
             long-run  failed     boom\n"
        );
    }

    #[test]
    fn headings_stand_outside_the_columns() {
        let mut t = Table::new(vec!["STEP", "NEXT"]);
        t.heading("invocation 1, a long heading".into())
            .row(vec!["0".into(), "reply".into()])
            .heading("invocation 2".into())
            .row(vec!["12".into(), "reply".into()]);
        let mut out = Vec::new();
        t.print(&mut out).unwrap();
        let text = anstream::adapter::strip_str(std::str::from_utf8(&out).unwrap()).to_string();
        assert_eq!(
            text,
            "STEP  NEXT\n\
             invocation 1, a long heading\n\
             0     reply\n\
             invocation 2\n\
             12    reply\n"
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
