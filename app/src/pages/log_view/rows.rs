//! The virtual list: which rows are in the DOM (those in view plus [`OVERSCAN`] either
//! side, whatever the log's length) and how one row renders (ANSI colours and `\r`
//! progress as a terminal shows them, or the plain text with search matches marked).

use leptos::prelude::*;
use protocol::ansi;
use std::sync::Arc;

/// Height of one unwrapped row, in CSS pixels (`leading-5`).
pub const ROW_PX: f64 = 20.0;
/// Rows rendered above and below the visible ones.
pub const OVERSCAN: u64 = 30;
/// The log's height before it can be measured (server rendering, first paint).
pub const VIEWPORT_PX: f64 = 560.0;

/// The rows to render, as seqs `start + 1 ..= end`, for a log of `total` lines scrolled
/// to `scroll_top` in a viewport `viewport_px` high; following, the last ones.
pub fn window(total: u64, viewport_px: f64, scroll_top: f64, follow: bool) -> (u64, u64) {
    let visible = (viewport_px / ROW_PX).ceil() as u64 + 1;
    if follow {
        (total.saturating_sub(visible + OVERSCAN), total)
    } else {
        let first = (scroll_top.max(0.0) / ROW_PX) as u64;
        let start = first.saturating_sub(OVERSCAN).min(total);
        (start, (first + visible + OVERSCAN).min(total))
    }
}

#[derive(Clone, PartialEq)]
pub struct Row {
    pub seq: u64,
    /// `None` while the line is not loaded yet.
    pub line: Option<Arc<str>>,
    /// The search text to mark (lower case).
    pub needle: String,
}

/// Splits `text` around (ASCII) case-insensitive occurrences of `needle` (already lower
/// case): `(text, is_match)` pieces.
pub fn split_matches(text: &str, needle: &str) -> Vec<(String, bool)> {
    if needle.is_empty() {
        return vec![(text.to_owned(), false)];
    }
    // ASCII case folding keeps byte offsets (and no Unicode tables in the bundle).
    let lower = text.to_ascii_lowercase();
    let mut pieces = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(needle) {
        let start = at + found;
        let end = start + needle.len();
        if start > at {
            pieces.push((text[at..start].to_owned(), false));
        }
        pieces.push((text[start..end].to_owned(), true));
        at = end;
    }
    if at < text.len() {
        pieces.push((text[at..].to_owned(), false));
    }
    pieces
}

/// One row: its `seq` as the line number, then the line.
#[component]
pub fn LogRow(
    row: Row,
    wrap: ReadSignal<bool>,
    /// Whether this row holds the search match in focus.
    current: Signal<bool>,
) -> impl IntoView {
    let Row { seq, line, needle } = row;
    let body = match line {
        None => view! { <span class="text-slate-600">"…"</span> }.into_any(),
        Some(line) => {
            let plain = ansi::plain(&line);
            if !needle.is_empty() && plain.to_ascii_lowercase().contains(&needle) {
                split_matches(&plain, &needle)
                    .into_iter()
                    .map(|(text, hit)| {
                        if hit {
                            view! { <mark class="rounded-sm bg-amber-300 text-slate-950">{text}</mark> }.into_any()
                        } else {
                            view! { <span>{text}</span> }.into_any()
                        }
                    })
                    .collect_view()
                    .into_any()
            } else {
                ansi::spans(&line)
                    .into_iter()
                    .map(|span| {
                        if span.style.is_empty() {
                            view! { <span>{span.text}</span> }.into_any()
                        } else {
                            view! { <span style=span.style>{span.text}</span> }.into_any()
                        }
                    })
                    .collect_view()
                    .into_any()
            }
        }
    };
    view! {
        <div
            data-seq=seq
            class=move || {
                let base = "log-row flex min-h-5 px-3 before:mr-3 before:inline-block before:w-14 before:shrink-0 before:select-none before:text-right before:text-slate-600 before:content-[attr(data-seq)]";
                let wrap = if wrap.get() { " whitespace-pre-wrap break-all" } else { " h-5 whitespace-pre" };
                let current = if current.get() { " bg-amber-500/10" } else { "" };
                format!("{base}{wrap}{current}")
            }
        >
            <span class="min-w-0">{body}</span>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::{split_matches, window};

    #[test]
    fn matches_are_split_out_case_insensitively() {
        assert_eq!(
            split_matches("Step 1/3 : RUN step", "step"),
            vec![
                ("Step".to_owned(), true),
                (" 1/3 : RUN ".to_owned(), false),
                ("step".to_owned(), true),
            ]
        );
        assert_eq!(split_matches("abc", ""), vec![("abc".to_owned(), false)]);
    }

    #[test]
    fn the_window_is_bounded_whatever_the_log() {
        // 29 visible rows in 560 px, plus 30 either side.
        assert_eq!(window(100_000, 560.0, 0.0, true), (100_000 - 59, 100_000));
        assert_eq!(window(100_000, 560.0, 0.0, false), (0, 59));
        assert_eq!(window(100_000, 560.0, 20_000.0, false), (970, 1059));
        assert_eq!(window(10, 560.0, 0.0, true), (0, 10));
        assert_eq!(window(10, 560.0, 900.0, false), (10, 10));
    }
}
