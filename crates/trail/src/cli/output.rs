//! How results are printed: `-o table` (aligned, colored unless NO_COLOR; the default on a
//! terminal), `-o json` (one JSON document) or `-o ndjson` (one JSON value a line; the
//! default when piped).
//!
//! Everything a command prints on stdout goes through [`write`]: a reader that goes away
//! (`trail ... | head -1`) turns into [`StdoutClosed`], and the command stops quietly
//! (exit 141, as a Unix tool killed by SIGPIPE) instead of panicking or writing on.
//!
//! A table is for a terminal, so every cell in it shows control characters escaped
//! ([`escape`]): an event cannot move the cursor, color the screen or fake a row. JSON and
//! NDJSON stay exact (JSON escapes control characters itself).

use std::io::{IsTerminal, Write};

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Ndjson,
}

impl Format {
    /// `-o`, or `--json`, or the default for where stdout goes.
    pub fn choose(output: Option<Format>, json: bool) -> Format {
        match (output, json) {
            (Some(f), _) => f,
            (None, true) => Format::Json,
            (None, false) if std::io::stdout().is_terminal() => Format::Table,
            (None, false) => Format::Ndjson,
        }
    }
}

/// Whether to color: a terminal, and NO_COLOR unset.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// The reader of standard output went away: the command stops, quietly.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Writes to standard output and flushes; a closed pipe becomes [`StdoutClosed`].
pub fn write(f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match f(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// Prints one line.
pub fn line(text: &str) -> anyhow::Result<()> {
    write(|out| writeln!(out, "{text}"))
}

/// A string as a terminal may show it: control characters (C0, DEL, C1), bidirectional
/// overrides and the backslash itself escaped (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`,
/// `\\`), so what is shown is unambiguous and cannot act on the terminal.
pub fn escape(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// How wide a table may be: `COLUMNS` if set, else the terminal's width when standard
/// output is one; `None` (no limit) when it goes to a pipe or a file.
pub fn width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| usize::from(cols))
}

/// Column widths for a table `avail` columns wide (two spaces between columns): the
/// widest columns give way first, none below its minimum; the last column takes what is
/// left. With no limit, the natural widths.
pub fn fit(natural: &[usize], min: &[usize], avail: Option<usize>) -> Vec<usize> {
    let mut w = natural.to_vec();
    let Some(avail) = avail else { return w };
    let gaps = 2 * w.len().saturating_sub(1);
    let mut total = w.iter().sum::<usize>() + gaps;
    while total > avail {
        let widest = (0..w.len())
            .filter(|&i| w[i] > min[i])
            .max_by_key(|&i| (w[i] - min[i], i));
        match widest {
            Some(i) => {
                w[i] -= 1;
                total -= 1;
            }
            None => break,
        }
    }
    if let Some(last) = w.last_mut() {
        *last += avail.saturating_sub(total);
    }
    w
}

/// One table line: each cell padded to its width (by display width); when the table has a
/// width limit, a longer cell is cut to it with an ellipsis (the last cell is only cut).
pub fn fit_line(cells: &[String], widths: &[usize], limited: bool) -> String {
    let last = cells.len().saturating_sub(1);
    cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(i, (c, &w))| {
            if i < last {
                let cut = limited.then_some("…");
                console::pad_str(c, w, console::Alignment::Left, cut).into_owned()
            } else if limited {
                console::truncate_str(c, w, "…").into_owned()
            } else {
                c.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Prints rows as a table with a header, columns aligned to their widest cell and cut (with
/// an ellipsis) to fit the terminal's [`width`]. A row's style (an ANSI code) applies to the
/// whole row. Cells are [`escape`]d.
pub fn table(headers: &[&str], rows: &[(Vec<String>, Option<&str>)]) -> anyhow::Result<()> {
    let rows: Vec<(Vec<String>, Option<&str>)> = rows
        .iter()
        .map(|(cells, style)| (cells.iter().map(|c| escape(c)).collect(), *style))
        .collect();
    let mut natural: Vec<usize> = headers
        .iter()
        .map(|h| console::measure_text_width(h))
        .collect();
    for (cells, _) in &rows {
        for (w, c) in natural.iter_mut().zip(cells) {
            *w = (*w).max(console::measure_text_width(c));
        }
    }
    let min: Vec<usize> = headers
        .iter()
        .zip(&natural)
        .map(|(h, n)| (*n).min(h.len().max(8)))
        .collect();
    let avail = width();
    let widths = fit(&natural, &min, avail);
    let on = color();
    let line = |cells: Vec<String>| fit_line(&cells, &widths, avail.is_some());
    write(|out| {
        writeln!(
            out,
            "{}",
            paint(
                &line(headers.iter().map(|h| h.to_string()).collect()),
                "1",
                on
            )
        )?;
        for (cells, style) in rows {
            let text = line(cells);
            writeln!(
                out,
                "{}",
                match style {
                    Some(code) => paint(&text, code, on),
                    None => text,
                }
            )?;
        }
        Ok(())
    })
}

/// Prints values as one JSON array or as NDJSON.
pub fn json_values(format: Format, values: &[Value]) -> anyhow::Result<()> {
    write(|out| match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(values).expect("serializes")
        ),
        _ => {
            for v in values {
                writeln!(out, "{v}")?;
            }
            Ok(())
        }
    })
}

/// Prints one value as pretty JSON.
pub fn json(value: &Value) -> anyhow::Result<()> {
    line(&serde_json::to_string_pretty(value).expect("serializes"))
}

/// A JSON value as a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{escape, fit, fit_line};

    #[test]
    fn a_table_fits_its_width_the_widest_column_giving_way_first() {
        assert_eq!(fit(&[10, 40, 5], &[4, 8, 5], None), vec![10, 40, 5]);
        // 10 + 40 + 5 + 4 = 59 into 40: the 40 gives 19.
        assert_eq!(fit(&[10, 40, 5], &[4, 8, 5], Some(40)), vec![10, 21, 5]);
        // No narrower than the minimums.
        assert_eq!(fit(&[10, 40, 5], &[4, 8, 5], Some(10)), vec![4, 8, 5]);
        // Room to spare goes to the last column.
        assert_eq!(fit(&[3, 3], &[3, 3], Some(20)), vec![3, 15]);
        let line = fit_line(
            &["abcdef".into(), "é".into(), "long tail".into()],
            &[4, 3, 5],
            true,
        );
        assert_eq!(line, "abc…  é    long…");
    }

    #[test]
    fn a_table_cell_cannot_act_on_the_terminal() {
        assert_eq!(escape("plain café"), "plain café");
        assert_eq!(
            escape("a\nb\r\x1b[31mred\t\\"),
            "a\\nb\\r\\x1b[31mred\\t\\\\"
        );
        assert_eq!(escape("\u{9b}2J\u{202e}"), "\\u{009b}2J\\u{202e}");
        assert_eq!(escape("\x7f\0"), "\\x7f\\x00");
    }
}
