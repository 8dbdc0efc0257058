//! Human output: aligned tables, sizes, and colour only on a terminal and never with NO_COLOR.

use std::io::IsTerminal;

/// True when stdout may carry colour.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Bold text when colour is on.
pub fn bold(text: &str) -> String {
    if colour() {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A size in bytes as people read it.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Text from the network made safe for a terminal: every control character (escape sequences,
/// carriage returns, bells, and the C1 range) and every invisible or text-direction character
/// (which can make one name look like another) is shown as `\u{..}` instead of acting.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || shoal_index::is_invisible(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints rows under a header, columns padded to their widest cell. Cells are made
/// [`printable`]: they may hold what peers said.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|c| printable(c)).collect()).collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { format!("{c:<width$}", width = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = bold(&line(header.iter().map(|h| h.to_string()).collect()));
    out.push('\n');
    for row in rows {
        out.push_str(line(row.clone()).trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_tables() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        let t = table(
            &["NAME", "SIZE"],
            &[vec!["a".into(), "1 B".into()], vec!["longer".into(), "2 B".into()]],
        );
        assert!(t.contains("a       1 B\n"), "{t:?}");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let shown = printable("a\u{1b}[2Jb\rc\u{7}d\u{9b}e");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.starts_with("a\\u{1b}[2Jb"), "{shown:?}");
        let t = table(&["NAME"], &[vec!["x\u{1b}]0;owned\u{7}".into()]]);
        assert!(!t.contains('\u{1b}') || t.starts_with("\u{1b}[1m"), "{t:?}");
        assert!(!t.contains('\u{7}'), "{t:?}");
        // A peer's fault text that turns the terminal's writing direction around.
        assert_eq!(printable("evil\u{202e}cod.exe"), "evil\\u{202e}cod.exe");
    }
}
