//! The dashboard's pages and the small pieces they share.

pub mod account;
pub mod app;
pub mod app_logs;
pub mod apps;
pub mod deployment;
pub mod log_view;
pub mod nodes;
pub mod notifications;

use leptos::prelude::*;
use protocol::Status;

/// Tailwind classes of a text input.
pub const INPUT: &str = "mt-1 w-full rounded border border-slate-700 bg-slate-900 px-3 py-2 text-sm text-slate-100 \
    placeholder:text-slate-500 focus:border-sky-500 focus:outline-none";

/// Tailwind classes of a primary button.
pub const BUTTON: &str = "rounded bg-sky-600 px-4 py-2 text-sm font-medium text-white hover:bg-sky-500 disabled:opacity-50";

/// Tailwind classes of a status badge.
pub fn badge_class(status: Status) -> &'static str {
    match status {
        Status::Success => {
            "rounded px-2 py-0.5 text-xs font-medium bg-emerald-500/15 text-emerald-300"
        }
        Status::Failed => "rounded px-2 py-0.5 text-xs font-medium bg-rose-500/15 text-rose-300",
        Status::Cancelled => {
            "rounded px-2 py-0.5 text-xs font-medium bg-slate-500/20 text-slate-300"
        }
        Status::Pending => "rounded px-2 py-0.5 text-xs font-medium bg-amber-500/15 text-amber-300",
        _ => "rounded px-2 py-0.5 text-xs font-medium bg-sky-500/15 text-sky-300",
    }
}

#[component]
pub fn StatusBadge(status: Status) -> impl IntoView {
    view! { <span class=badge_class(status)>{status.as_str()}</span> }
}

/// A timestamp of ours (`2026-11-28T03:21:08.123Z`) as `2026-11-28 03:21 UTC`: the same on
/// the server and in the browser.
pub fn when(timestamp: &str) -> String {
    match (timestamp.get(..10), timestamp.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => timestamp.to_owned(),
    }
}

/// How long ago `timestamp` was, as of now: `just now`, `5 min ago`, `3 h ago`,
/// `2 days ago`. Rendered on the server only (the pages that show it are not islands), so
/// the browser never needs a clock or a date parser for it.
pub fn age(timestamp: &str) -> String {
    #[cfg(feature = "ssr")]
    {
        engine::time::seconds_between(timestamp, &engine::time::now())
            .map(age_text)
            .unwrap_or_else(|| when(timestamp))
    }
    #[cfg(not(feature = "ssr"))]
    {
        when(timestamp)
    }
}

/// Seconds as an age: the largest whole unit.
pub fn age_text(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..45 => "just now".to_owned(),
        45..3_600 => format!("{} min ago", ((s + 30) / 60).clamp(1, 59)),
        3_600..86_400 => format!("{} h ago", s / 3_600),
        86_400..172_800 => "yesterday".to_owned(),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// How long ago `timestamp` was: on the server as [`age`]; in the browser from its clock,
/// so ages rendered once keep ticking (with [`ticking`]).
pub fn live_age(timestamp: &str) -> String {
    #[cfg(feature = "hydrate")]
    {
        let at = js_sys::Date::parse(timestamp);
        if at.is_nan() {
            return when(timestamp);
        }
        age_text((js_sys::Date::now() - at) / 1000.0)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        age(timestamp)
    }
}

/// A signal that changes every 30 s in the browser: read it to be rendered again.
pub fn ticking() -> ReadSignal<u32> {
    let (tick, set_tick) = signal(0u32);
    #[cfg(feature = "hydrate")]
    {
        if let Ok(handle) = set_interval_with_handle(
            move || set_tick.update(|t| *t = t.wrapping_add(1)),
            std::time::Duration::from_secs(30),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = set_tick;
    tick
}

/// Says that the session ended (signed out or revoked elsewhere) and offers to sign in
/// again, instead of a list or monitor that silently stopped being live.
#[component]
pub fn SessionEnded(ended: ReadSignal<bool>) -> impl IntoView {
    view! {
        <Show when=move || ended.get()>
            <p role="alert" class="mt-4 rounded border border-amber-500/40 bg-amber-500/10 px-3 py-2 text-sm text-amber-200">
                "Your session ended (signed out or revoked): this page is no longer live. "
                <a href="/login" class="underline">"Sign in again"</a>
            </p>
        </Show>
    }
}

/// Milliseconds since the epoch, in the browser; `None` on the server.
pub fn now_ms() -> Option<f64> {
    #[cfg(feature = "hydrate")]
    {
        Some(js_sys::Date::now())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        None
    }
}

/// The message under a form field, when `problem` names that field; its id is
/// `{prefix}{field}-error`.
pub fn field_error(
    problem: impl Fn() -> Option<crate::api::AppError> + Copy + Send + Sync + 'static,
    prefix: &'static str,
) -> impl Fn(&'static str) -> Box<dyn Fn() -> Option<AnyView> + Send + Sync> + Copy {
    move |field| {
        Box::new(move || {
            problem()
                .filter(|p| p.field.as_deref() == Some(field))
                .map(|p| view! { <p class="mt-1 text-sm text-rose-300" id=format!("{prefix}{field}-error")>{p.message}</p> }.into_any())
        })
    }
}

/// A submit handler (for the capture phase, before `ActionForm` sends) that checks the
/// form with the server's own rules: a field the server would refuse is shown next to
/// its input at once and nothing is sent. `problem` holds what was found (or `None`).
pub fn precheck<F>(
    check: fn(&F) -> Result<(), crate::api::AppError>,
    problem: WriteSignal<Option<crate::api::AppError>>,
) -> impl Fn(leptos::ev::SubmitEvent) + Copy + 'static
where
    F: serde::de::DeserializeOwned + 'static,
{
    move |ev| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::form::FromFormData;
            use leptos::wasm_bindgen::JsCast;
            let Ok(form) = F::from_event(ev.unchecked_ref::<leptos::web_sys::Event>()) else {
                return;
            };
            match check(&form) {
                Ok(()) => problem.set(None),
                Err(found) => {
                    // `ActionForm` sends nothing once the default is prevented.
                    ev.prevent_default();
                    problem.set(Some(found));
                }
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, check, problem);
    }
}

/// Opens `path` as a new page load: the router runs on the server only.
pub fn go_to(path: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}

/// A duration as `12.3 s` or `4m 05s`, without float formatting (which would add its
/// tables to the browser bundle).
pub fn seconds_text(seconds: f64) -> String {
    let tenths = (seconds.max(0.0) * 10.0).round() as u64;
    if tenths < 600 {
        format!("{}.{} s", tenths / 10, tenths % 10)
    } else {
        let whole = tenths / 10;
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

/// Shown when a server function fails.
#[component]
pub fn ErrorNote(message: String) -> impl IntoView {
    view! {
        <p role="alert" class="rounded border border-rose-800 bg-rose-950/50 px-3 py-2 text-rose-200">
            {message}
        </p>
    }
}

pub fn error_text(e: &crate::api::AppError) -> String {
    e.message.clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_well() {
        assert_eq!(super::seconds_text(0.04), "0.0 s");
        assert_eq!(super::seconds_text(12.34), "12.3 s");
        assert_eq!(super::seconds_text(59.94), "59.9 s");
        assert_eq!(super::seconds_text(245.0), "4m 05s");
        assert_eq!(
            super::when("2026-11-28T03:21:08.123Z"),
            "2026-11-28 03:21 UTC"
        );
    }

    #[test]
    fn ages_read_well() {
        let ages: Vec<String> = [
            0.0, 44.0, 45.0, 89.0, 90.0, 3_599.0, 3_600.0, 86_399.0, 86_400.0, 172_800.0, 1e7,
        ]
        .into_iter()
        .map(super::age_text)
        .collect();
        assert_eq!(
            ages,
            [
                "just now",
                "just now",
                "1 min ago",
                "1 min ago",
                "2 min ago",
                "59 min ago",
                "1 h ago",
                "23 h ago",
                "yesterday",
                "2 days ago",
                "115 days ago"
            ]
        );
    }
}
