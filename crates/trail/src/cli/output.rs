//! How results are printed: `-o table` (aligned, colored unless NO_COLOR; the default on a
//! terminal), `-o json` (one JSON document) or `-o ndjson` (one JSON value a line; the
//! default when piped).

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

/// Prints rows as a table with a header, columns aligned to their widest cell. A row's
/// style (an ANSI code) applies to the whole row.
pub fn table(headers: &[&str], rows: &[(Vec<String>, Option<&str>)]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for (cells, _) in rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let on = color();
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        paint(
            &line(headers.iter().map(|h| h.to_string()).collect()),
            "1",
            on
        )
    );
    for (cells, style) in rows {
        let text = line(cells.clone());
        let _ = writeln!(
            out,
            "{}",
            match style {
                Some(code) => paint(&text, code, on),
                None => text,
            }
        );
    }
}

/// Prints values as one JSON array or as NDJSON.
pub fn json_values(format: Format, values: &[Value]) {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(values).expect("serializes")
            );
        }
        _ => {
            for v in values {
                let _ = writeln!(out, "{v}");
            }
        }
    }
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
