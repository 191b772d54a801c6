//! Build output as a terminal would show it: `\r` progress collapsed to its last state and
//! ANSI SGR colours turned into styled spans. The escape sequences are parsed by
//! `anstyle-parse` (the parser of the anstyle family, a VTE state machine); this module
//! keeps the text and interprets SGR (`ESC [ … m`); other sequences are dropped.

use anstyle_parse::{DefaultCharAccumulator, Params, Parser, Perform};

/// A run of text with one style, as an inline CSS declaration ("" when plain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub style: String,
}

/// A terminal line `\r` rewrote: what it finally shows. Each `\r` returns to the start of
/// the line and the following text overwrites what was there.
pub fn collapse_cr(line: &str) -> std::borrow::Cow<'_, str> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if !line.contains('\r') {
        return line.into();
    }
    let mut screen: Vec<char> = Vec::new();
    for segment in line.split('\r') {
        // Escape sequences take no columns: with colours in play, the last segment wins.
        if segment.contains('\u{1b}') {
            screen = segment.chars().collect();
            continue;
        }
        for (i, c) in segment.chars().enumerate() {
            if i < screen.len() {
                screen[i] = c;
            } else {
                screen.push(c);
            }
        }
    }
    screen.into_iter().collect::<String>().into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Color {
    #[default]
    Default,
    Indexed(u8),
    Rgb(u8, u8, u8),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    fg: Color,
    bg: Color,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
}

/// The 16 basic colours, readable on the log's dark background.
const BASIC: [&str; 16] = [
    "#4b5563", "#f87171", "#4ade80", "#facc15", "#60a5fa", "#e879f9", "#22d3ee", "#e5e7eb",
    "#9ca3af", "#fca5a5", "#86efac", "#fde047", "#93c5fd", "#f0abfc", "#67e8f9", "#ffffff",
];

fn css_color(color: Color) -> Option<String> {
    match color {
        Color::Default => None,
        Color::Indexed(n) if n < 16 => Some(BASIC[n as usize].to_owned()),
        Color::Indexed(n) if n >= 232 => {
            let v = 8 + 10 * (n - 232);
            Some(format!("rgb({v},{v},{v})"))
        }
        Color::Indexed(n) => {
            let n = n - 16;
            let level = |x: u8| if x == 0 { 0 } else { 55 + 40 * x };
            Some(format!(
                "rgb({},{},{})",
                level(n / 36),
                level((n / 6) % 6),
                level(n % 6)
            ))
        }
        Color::Rgb(r, g, b) => Some(format!("rgb({r},{g},{b})")),
    }
}

impl Style {
    fn css(&self) -> String {
        let mut css = String::new();
        if let Some(fg) = css_color(self.fg) {
            css.push_str(&format!("color:{fg};"));
        }
        if let Some(bg) = css_color(self.bg) {
            css.push_str(&format!("background-color:{bg};"));
        }
        if self.bold {
            css.push_str("font-weight:600;");
        }
        if self.dim {
            css.push_str("opacity:.7;");
        }
        if self.italic {
            css.push_str("font-style:italic;");
        }
        if self.underline {
            css.push_str("text-decoration:underline;");
        }
        css
    }

    /// Applies one SGR sequence's parameters.
    fn apply(&mut self, params: &[u16]) {
        if params.is_empty() {
            *self = Style::default();
            return;
        }
        let mut i = 0;
        while i < params.len() {
            match params[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                n @ 30..=37 => self.fg = Color::Indexed((n - 30) as u8),
                39 => self.fg = Color::Default,
                n @ 40..=47 => self.bg = Color::Indexed((n - 40) as u8),
                49 => self.bg = Color::Default,
                n @ 90..=97 => self.fg = Color::Indexed((n - 90 + 8) as u8),
                n @ 100..=107 => self.bg = Color::Indexed((n - 100 + 8) as u8),
                n @ (38 | 48) => {
                    let channel = |k: usize| params.get(i + k).map(|&c| c.min(255) as u8);
                    let color = match params.get(i + 1) {
                        Some(5) => {
                            let c = channel(2).map(Color::Indexed);
                            i += 2;
                            c
                        }
                        Some(2) => {
                            let c = match (channel(2), channel(3), channel(4)) {
                                (Some(r), Some(g), Some(b)) => Some(Color::Rgb(r, g, b)),
                                _ => None,
                            };
                            i += 4;
                            c
                        }
                        _ => None,
                    };
                    if let Some(color) = color {
                        if n == 38 {
                            self.fg = color;
                        } else {
                            self.bg = color;
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

#[derive(Default)]
struct Spans {
    spans: Vec<Span>,
    text: String,
    style: Style,
}

impl Spans {
    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.spans.push(Span {
                text: std::mem::take(&mut self.text),
                style: self.style.css(),
            });
        }
    }
}

impl Perform for Spans {
    fn print(&mut self, c: char) {
        self.text.push(c);
    }

    fn execute(&mut self, byte: u8) {
        if byte == b'\t' {
            self.text.push('\t');
        }
    }

    fn csi_dispatch(&mut self, params: &Params, _intermediates: &[u8], ignore: bool, action: u8) {
        if action != b'm' || ignore {
            return;
        }
        self.flush();
        // `38;5;n` and `38:5:n` both become [38, 5, n].
        let flat: Vec<u16> = params.iter().flatten().copied().collect();
        self.style.apply(&flat);
    }
}

/// One log line as styled spans, after collapsing `\r`.
pub fn spans(line: &str) -> Vec<Span> {
    let line = collapse_cr(line);
    if !line.contains('\u{1b}') {
        return vec![Span {
            text: line.into_owned(),
            style: String::new(),
        }];
    }
    let mut parser = Parser::<DefaultCharAccumulator>::new();
    let mut out = Spans::default();
    for byte in line.bytes() {
        parser.advance(&mut out, byte);
    }
    out.flush();
    out.spans
}

/// The text a line shows, without escape sequences: what search looks at.
pub fn plain(line: &str) -> String {
    spans(line).into_iter().map(|s| s.text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(text: &str, style: &str) -> Span {
        Span {
            text: text.into(),
            style: style.into(),
        }
    }

    #[test]
    fn carriage_returns_keep_the_last_state() {
        assert_eq!(collapse_cr("plain\n"), "plain");
        assert_eq!(
            collapse_cr("progress 10%\rprogress 55%\rprogress 100%\n"),
            "progress 100%"
        );
        assert_eq!(collapse_cr("abcdef\rXY\n"), "XYcdef");
        assert_eq!(collapse_cr("windows line\r\n"), "windows line");
    }

    #[test]
    fn sgr_colours_become_styles() {
        let s = spans(
            "\u{1b}[1;31merror\u{1b}[0m: \u{1b}[38;5;46mok\u{1b}[39m \u{1b}[38;2;1;2;3mrgb\n",
        );
        assert_eq!(
            s,
            vec![
                span("error", "color:#f87171;font-weight:600;"),
                span(": ", ""),
                span("ok", "color:rgb(0,255,0);"),
                span(" ", ""),
                span("rgb", "color:rgb(1,2,3);"),
            ]
        );
    }

    #[test]
    fn other_sequences_are_dropped_and_text_kept() {
        assert_eq!(
            plain("\u{1b}[2K\u{1b}[1Gdone \u{1b}[32m✓\u{1b}[0m\n"),
            "done ✓"
        );
        assert_eq!(plain("tab\there\n"), "tab\there");
        assert_eq!(plain("\u{1b}[32m 10%\r\u{1b}[32m100%\u{1b}[0m\n"), "100%");
    }
}
