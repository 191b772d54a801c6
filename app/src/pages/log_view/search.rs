//! Search over the whole log: the server finds the matching lines (the browser may hold
//! only some of them), the box steps through them, and the rows mark the text found.

use leptos::prelude::*;
use protocol::{DeploymentId, Seq};

/// What the search found, shared with the rows that mark it.
#[derive(Clone, Copy)]
pub struct Search {
    /// The text searched for, lower case (empty: no search).
    pub needle: ReadSignal<String>,
    set_needle: WriteSignal<String>,
    pub matches: ReadSignal<Vec<Seq>>,
    set_matches: WriteSignal<Vec<Seq>>,
    pub current: ReadSignal<usize>,
    set_current: WriteSignal<usize>,
}

impl Search {
    pub fn new() -> Search {
        let (needle, set_needle) = signal(String::new());
        let (matches, set_matches) = signal(Vec::new());
        let (current, set_current) = signal(0usize);
        Search {
            needle,
            set_needle,
            matches,
            set_matches,
            current,
            set_current,
        }
    }

    /// The line of the match in focus.
    pub fn current_seq(&self) -> Option<Seq> {
        self.matches.with(|m| m.get(self.current.get()).copied())
    }

    fn found(&self, needle: String, seqs: Vec<Seq>) {
        self.set_needle.set(needle);
        self.set_current.set(0);
        self.set_matches.set(seqs);
    }

    /// Moves to the next (or previous) match; answers its line.
    fn step(&self, forward: bool) -> Option<Seq> {
        let n = self.matches.with_untracked(Vec::len);
        if n == 0 {
            return None;
        }
        let at = self.current.get_untracked();
        let next = if forward {
            (at + 1) % n
        } else {
            (at + n - 1) % n
        };
        self.set_current.set(next);
        self.matches.with_untracked(|m| m.get(next).copied())
    }
}

/// The search box, the count, and previous / next. `show` brings a line into view.
#[component]
pub fn LogSearch(
    id: DeploymentId,
    search: Search,
    show: impl Fn(Seq) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let input = NodeRef::<leptos::html::Input>::new();
    let run = move |text: String| {
        let needle = text.trim().to_ascii_lowercase();
        if needle.is_empty() {
            search.found(needle, Vec::new());
            return;
        }
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let seqs = find(id, &needle).await.unwrap_or_default();
            if let Some(&first) = seqs.first() {
                show(first);
            }
            search.found(needle, seqs);
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (id, show);
    };
    let step = move |forward: bool| {
        if let Some(seq) = search.step(forward) {
            show(seq);
        }
    };
    let button =
        "rounded border border-slate-700 px-2 py-1 text-xs text-slate-200 hover:bg-slate-800";
    view! {
        <form
            class="flex items-center gap-2"
            role="search"
            on:submit=move |ev| {
                ev.prevent_default();
                if let Some(input) = input.get_untracked() {
                    run(input.value());
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
            <button type="submit" class=button>"Find"</button>
        </form>
        <span class="text-xs text-slate-400" data-testid="matches" aria-live="polite">
            {move || {
                let n = search.matches.with(Vec::len);
                if search.needle.with(String::is_empty) {
                    String::new()
                } else if n == 0 {
                    "no matches".to_owned()
                } else {
                    format!("{} of {n}", search.current.get() + 1)
                }
            }}
        </span>
        <button type="button" class=button aria-label="Previous match" on:click=move |_| step(false)>"↑"</button>
        <button type="button" class=button aria-label="Next match" on:click=move |_| step(true)>"↓"</button>
    }
}

/// Asks the server which lines contain `needle`.
#[cfg(feature = "hydrate")]
async fn find(id: DeploymentId, needle: &str) -> Option<Vec<Seq>> {
    crate::api::search_log(id, needle.to_owned()).await.ok()
}
