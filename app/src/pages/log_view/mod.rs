//! The build log (`role="log"`). It only renders: the lines come from the monitor hook,
//! which owns them (filed by `seq`). Its pieces:
//!
//! - [`rows`]: the virtual list (only the rows in view plus a margin are in the DOM,
//!   whatever the log's length) and one row's rendering (ANSI colours, `\r` progress,
//!   line numbers from `seq`, search marks);
//! - [`follow`]: follow mode, which pauses when the reader scrolls up;
//! - [`search`]: search over the whole log, on the server.
//!
//! Rows not loaded yet show `…` and ask the hook for their page.

mod follow;
mod rows;
mod search;

use crate::monitor::{DeploymentMonitor, LogSource};
use follow::Follow;
use leptos::html::Div;
use leptos::prelude::*;
use rows::{LogRow, ROW_PX, Row, VIEWPORT_PX};
use search::{LogSearch, Search};

#[component]
pub fn LogView(live: DeploymentMonitor) -> impl IntoView {
    let total = Memo::new(move |_| live.lines.with(|book| book.total()));
    // Rows are the lines still kept: seq in (gone, total].
    let gone = Memo::new(move |_| live.lines.with(|book| book.gone()));
    let count = move || total.get() - gone.get();
    let container = NodeRef::<Div>::new();
    let follow = Follow::new();
    let search = Search::new();
    let (scroll_top, set_scroll_top) = signal(0.0f64);
    let (viewport, set_viewport) = signal(VIEWPORT_PX);
    let (wrap, set_wrap) = signal(false);

    // The rows to render: seq in (gone + start, gone + end].
    let window = Memo::new(move |_| {
        rows::window(count(), viewport.get(), scroll_top.get(), follow.on.get())
    });
    // Rows about to be shown are loaded if they are not yet.
    Effect::new(move |_| {
        let (start, end) = window.get();
        let gone = gone.get_untracked();
        live.want(gone + start + 1, gone + end);
    });
    let rows = move || {
        let (start, end) = window.get();
        let needle = search.needle.get();
        live.lines.with(|book| {
            (book.gone() + start + 1..=book.gone() + end)
                .map(|seq| Row {
                    seq,
                    line: book.get(seq).cloned(),
                    needle: needle.clone(),
                })
                .collect::<Vec<_>>()
        })
    };

    // Follow mode keeps the newest line in view as lines arrive.
    Effect::new(move |_| {
        let _ = total.get();
        let _ = wrap.get();
        if follow.on.get() {
            request_animation_frame(move || {
                if let Some(el) = container.get_untracked() {
                    el.set_scroll_top(el.scroll_height());
                    follow.scrolled_by_us(el.scroll_top() as f64);
                }
            });
        }
    });
    // Measure the real height once mounted; the page may have scrolled the log to its end
    // before hydration.
    Effect::new(move |_| {
        if let Some(el) = container.get() {
            follow.scrolled_by_us(el.scroll_top() as f64);
            let height = el.client_height() as f64;
            if height > 0.0 {
                set_viewport.set(height);
            }
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = container.get_untracked() {
            let top = el.scroll_top() as f64;
            follow.scrolled(top, el.client_height() as f64, el.scroll_height() as f64);
            set_scroll_top.set(top);
        }
    };
    // Brings line `seq` to the middle of the log (a search match).
    let show = move |seq: u64| {
        follow.pause();
        if let Some(el) = container.get_untracked() {
            let row = seq.saturating_sub(gone.get_untracked() + 1);
            let target = row as f64 * ROW_PX - el.client_height() as f64 / 2.0;
            el.set_scroll_top(target.max(0.0) as i32);
        }
    };
    let jump_to_latest = move |_| {
        follow.resume();
        if let Some(el) = container.get_untracked() {
            el.set_scroll_top(el.scroll_height());
        }
    };

    let button =
        "rounded border border-slate-700 px-2 py-1 text-xs text-slate-200 hover:bg-slate-800";
    let (download, file_name) = live.source.download();
    // Search runs on the server over a deployment's whole log; a runtime log is read as
    // it comes (and downloaded whole).
    let (label, searchable) = match live.source {
        LogSource::Deployment(id) => ("Build log", Some(id)),
        LogSource::App(_) => ("Runtime log", None),
    };
    view! {
        <div class="mt-4">
            <div class="flex flex-wrap items-center gap-2">
                {searchable.map(|id| view! { <LogSearch id search show /> })}
                <span class="grow"></span>
                <button
                    type="button"
                    class=button
                    aria-pressed=move || wrap.get().to_string()
                    on:click=move |_| set_wrap.update(|w| *w = !*w)
                >
                    "Wrap lines"
                </button>
                <a class=button href=download download=file_name>
                    "Download log"
                </a>
            </div>
            <div class="relative mt-2">
                <div
                    role="log"
                    aria-label=label
                    tabindex="0"
                    aria-live="polite"
                    node_ref=container
                    on:scroll=on_scroll
                    on:wheel=move |_| follow.input()
                    on:touchstart=move |_| follow.input()
                    on:keydown=move |_| follow.input()
                    on:pointerdown=move |_| follow.input()
                    data-total=move || total.get()
                    data-follow=move || follow.on.get().to_string()
                    class="h-[65vh] overflow-auto [overflow-anchor:none] focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-500 rounded border border-slate-800 bg-black/60 py-2 font-mono text-xs leading-5 text-slate-200"
                >
                    <div style=move || format!("height:{}px;position:relative", count() * ROW_PX as u64)>
                        <div style=move || format!("transform:translateY({}px)", window.get().0 * ROW_PX as u64)>
                            <For
                                each=rows
                                key=|row| (row.seq, row.line.is_some(), row.needle.clone())
                                children=move |row| {
                                    let seq = row.seq;
                                    let current = Signal::derive(move || search.current_seq() == Some(seq));
                                    view! { <LogRow row wrap current /> }
                                }
                            />
                        </div>
                    </div>
                </div>
                <Show when=move || !follow.on.get()>
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
