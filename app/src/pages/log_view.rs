//! The build log (`role="log"`): virtualised, so only the rows in view (plus a margin) are
//! in the DOM whatever the log's length; ANSI colours and `\r` progress rendered as a
//! terminal would; line numbers from `seq`; follow mode that pauses when the reader
//! scrolls up; search with highlighting; the full log as a download; a wrap toggle.
//!
//! Lines come from two places: the newest lines the server rendered into the page, and the
//! live monitor, which catches up from the first line. Row `seq` shows the live line once
//! it has arrived and the server's line until then, so a late join shows the newest line
//! at once and the older ones fill in as the catch-up streams.

use super::now_ms;
use crate::ansi;
use leptos::html::Div;
use leptos::prelude::*;
use protocol::{DeploymentId, LogLine};

/// Height of one unwrapped row, in CSS pixels (`leading-5`).
const ROW_PX: f64 = 20.0;
/// Rows rendered above and below the visible ones.
const OVERSCAN: u64 = 30;
/// The log's height before it can be measured (server rendering, first paint).
const VIEWPORT_PX: f64 = 560.0;

#[derive(Clone, PartialEq)]
struct Row {
    seq: u64,
    /// `None` while the line has not arrived yet.
    line: Option<String>,
    /// The search text to highlight (lower case).
    needle: String,
}

/// Splits `text` around (ASCII) case-insensitive occurrences of `needle` (already lower case):
/// `(text, is_match)` pieces.
fn split_matches(text: &str, needle: &str) -> Vec<(String, bool)> {
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

#[component]
pub fn LogView(
    id: DeploymentId,
    live: ReadSignal<Vec<LogLine>>,
    recent: Vec<LogLine>,
) -> impl IntoView {
    let recent_first = recent.first().map(|l| l.seq).unwrap_or(1);
    let recent_last = recent.last().map(|l| l.seq).unwrap_or(0);
    let recent = StoredValue::new(recent);
    let total = Memo::new(move |_| live.with(|l| l.len() as u64).max(recent_last));

    let container = NodeRef::<Div>::new();
    let (follow, set_follow) = signal(true);
    let (scroll_top, set_scroll_top) = signal(0.0f64);
    let (viewport, set_viewport) = signal(VIEWPORT_PX);
    let (wrap, set_wrap) = signal(false);
    let (query, set_query) = signal(String::new());
    let (matches, set_matches) = signal(Vec::<u64>::new());
    let (current, set_current) = signal(0usize);

    // The rows to render: seq in (start, end].
    let window = Memo::new(move |_| {
        let total = total.get();
        let visible = (viewport.get() / ROW_PX).ceil() as u64 + 1;
        if follow.get() {
            (total.saturating_sub(visible + OVERSCAN), total)
        } else {
            let first = (scroll_top.get() / ROW_PX) as u64;
            let start = first.saturating_sub(OVERSCAN).min(total);
            (start, (first + visible + OVERSCAN).min(total))
        }
    });
    let rows = move || {
        let (start, end) = window.get();
        let needle = query.get();
        live.with(|lines| {
            recent.with_value(|recent| {
                (start + 1..=end)
                    .map(|seq| {
                        let index = (seq - 1) as usize;
                        let line = match lines.get(index) {
                            Some(line) => Some(line.line.clone()),
                            None if seq >= recent_first => recent
                                .get((seq - recent_first) as usize)
                                .map(|l| l.line.clone()),
                            None => None,
                        };
                        Row {
                            seq,
                            line,
                            needle: needle.clone(),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
    };

    let scroll_to_row = move |seq: u64| {
        if let Some(el) = container.get_untracked() {
            let target = (seq.saturating_sub(1) as f64) * ROW_PX - el.client_height() as f64 / 2.0;
            el.set_scroll_top(target.max(0.0) as i32);
        }
    };
    // Where the last scroll event (or our own scrolling) left the log; the page may have
    // scrolled it to the end before hydration.
    let last_top = StoredValue::new(0.0f64);
    // Follow mode keeps the newest line in view as lines arrive.
    Effect::new(move |_| {
        let _ = total.get();
        let _ = wrap.get();
        if follow.get() {
            request_animation_frame(move || {
                if let Some(el) = container.get_untracked() {
                    el.set_scroll_top(el.scroll_height());
                    last_top.set_value(el.scroll_top() as f64);
                }
            });
        }
    });
    // Measure the real height once mounted.
    Effect::new(move |_| {
        if let Some(el) = container.get() {
            last_top.set_value(el.scroll_top() as f64);
            let height = el.client_height() as f64;
            if height > 0.0 {
                set_viewport.set(height);
            }
        }
    });
    // Follow pauses only when the reader scrolls away from the bottom (wheel, touch, keys,
    // the scrollbar: input in the last second), or jumps up by more than a screen (a script
    // or Home); a scroll caused by the log growing never turns it off. Reaching the bottom
    // turns it back on.
    let last_input = StoredValue::new(f64::NEG_INFINITY);
    let on_input = move || last_input.set_value(now_ms().unwrap_or_default());
    let on_scroll = move |_| {
        if let Some(el) = container.get_untracked() {
            let top = el.scroll_top() as f64;
            let height = el.client_height() as f64;
            let at_bottom = top + height >= el.scroll_height() as f64 - ROW_PX * 1.5;
            let jumped_up = top < last_top.get_value() - height;
            let by_reader = now_ms().unwrap_or_default() - last_input.get_value() < 1000.0;
            last_top.set_value(top);
            if at_bottom && !follow.get_untracked() {
                set_follow.set(true);
            } else if !at_bottom && (by_reader || jumped_up) && follow.get_untracked() {
                set_follow.set(false);
            }
            set_scroll_top.set(top);
        }
    };
    let search = move |text: String| {
        let needle = text.trim().to_ascii_lowercase();
        let found = if needle.is_empty() {
            Vec::new()
        } else {
            let total = total.get_untracked();
            live.with_untracked(|lines| {
                recent.with_value(|recent| {
                    (1..=total)
                        .filter(|&seq| {
                            let line =
                                lines.get((seq - 1) as usize).map(|l| &l.line).or_else(|| {
                                    seq.checked_sub(recent_first)
                                        .and_then(|i| recent.get(i as usize))
                                        .map(|l| &l.line)
                                });
                            line.is_some_and(|l| {
                                ansi::plain(l).to_ascii_lowercase().contains(&needle)
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
        };
        set_query.set(needle);
        set_current.set(0);
        if let Some(&first) = found.first() {
            set_follow.set(false);
            scroll_to_row(first);
        }
        set_matches.set(found);
    };
    let step = move |forward: bool| {
        let n = matches.with_untracked(Vec::len);
        if n == 0 {
            return;
        }
        let next = if forward {
            (current.get_untracked() + 1) % n
        } else {
            (current.get_untracked() + n - 1) % n
        };
        set_current.set(next);
        set_follow.set(false);
        if let Some(seq) = matches.with_untracked(|m| m.get(next).copied()) {
            scroll_to_row(seq);
        }
    };
    let jump_to_latest = move |_| {
        set_follow.set(true);
        if let Some(el) = container.get_untracked() {
            el.set_scroll_top(el.scroll_height());
        }
    };

    let render_row = move |row: Row| {
        let needle = row.needle;
        let seq = row.seq;
        let is_current = move || matches.with(|m| m.get(current.get()) == Some(&seq));
        let body = match row.line {
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
                    let current = if is_current() { " bg-amber-500/10" } else { "" };
                    format!("{base}{wrap}{current}")
                }
            >
                <span class="min-w-0">{body}</span>
            </div>
        }
    };

    let button =
        "rounded border border-slate-700 px-2 py-1 text-xs text-slate-200 hover:bg-slate-800";
    view! {
        <div class="mt-4">
            <div class="flex flex-wrap items-center gap-2">
                <LogSearch on_search=search />
                <span class="text-xs text-slate-400" data-testid="matches" aria-live="polite">
                    {move || {
                        let n = matches.with(Vec::len);
                        if query.with(String::is_empty) {
                            String::new()
                        } else if n == 0 {
                            "no matches".to_owned()
                        } else {
                            format!("{} of {n}", current.get() + 1)
                        }
                    }}
                </span>
                <button type="button" class=button aria-label="Previous match" on:click=move |_| step(false)>"↑"</button>
                <button type="button" class=button aria-label="Next match" on:click=move |_| step(true)>"↓"</button>
                <span class="grow"></span>
                <button
                    type="button"
                    class=button
                    aria-pressed=move || wrap.get().to_string()
                    on:click=move |_| set_wrap.update(|w| *w = !*w)
                >
                    "Wrap lines"
                </button>
                <a class=button href=format!("/api/deployments/{id}/logs") download=format!("deployment-{id}.log")>
                    "Download log"
                </a>
            </div>
            <div class="relative mt-2">
                <div
                    role="log"
                    aria-label="Build log"
                    tabindex="0"
                    aria-live="polite"
                    node_ref=container
                    on:scroll=on_scroll
                    on:wheel=move |_| on_input()
                    on:touchstart=move |_| on_input()
                    on:keydown=move |_| on_input()
                    on:pointerdown=move |_| on_input()
                    data-total=move || total.get()
                    data-follow=move || follow.get().to_string()
                    class="h-[65vh] overflow-auto [overflow-anchor:none] focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-500 rounded border border-slate-800 bg-black/60 py-2 font-mono text-xs leading-5 text-slate-200"
                >
                    <div style=move || format!("height:{}px;position:relative", total.get() * ROW_PX as u64)>
                        <div style=move || format!("transform:translateY({}px)", window.get().0 * ROW_PX as u64)>
                            <For each=rows key=|row| (row.seq, row.line.is_some(), row.needle.clone()) children=render_row />
                        </div>
                    </div>
                </div>
                <Show when=move || !follow.get()>
                    <button
                        type="button"
                        on:click=jump_to_latest
                        class="absolute bottom-3 right-5 rounded-full bg-sky-600 px-3 py-1 text-xs font-medium text-white shadow hover:bg-sky-500"
                    >
                        "Jump to latest"
                    </button>
                </Show>
            </div>
        </div>
    }
}

/// The search box: searches when submitted (Enter or the button).
#[component]
fn LogSearch(on_search: impl Fn(String) + Copy + Send + Sync + 'static) -> impl IntoView {
    let input = NodeRef::<leptos::html::Input>::new();
    view! {
        <form
            class="flex items-center gap-2"
            role="search"
            on:submit=move |ev| {
                ev.prevent_default();
                if let Some(input) = input.get_untracked() {
                    on_search(input.value());
                }
            }
        >
            <input
                node_ref=input
                type="search"
                aria-label="Search the log"
                placeholder="Search the log"
                class="w-48 rounded border border-slate-700 bg-slate-900 px-2 py-1 text-xs text-slate-100 placeholder:text-slate-500 focus:border-sky-500 focus:outline-none"
            />
            <button type="submit" class="rounded border border-slate-700 px-2 py-1 text-xs text-slate-200 hover:bg-slate-800">"Find"</button>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::split_matches;

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
}
