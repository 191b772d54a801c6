//! `/apps/{id}/logs`: what the app's running containers print, live, in the same log viewer
//! as a build (rendered on the server with the newest lines; the monitor hook takes over
//! once the WebAssembly loads, on the app's runtime-log socket).

use super::log_view::LogView;
use super::{ErrorNote, error_text};
use crate::api::{AppError, AppLogsView, get_app_logs};
use crate::monitor::{LogSource, use_log_monitor_from};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
pub fn AppLogsPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let data = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_app_logs(id).await,
            None => Err(AppError::new(protocol::ErrorCode::NotFound, "no such app")),
        }
    });
    move || {
        Suspend::new(async move {
            match data.await {
                Ok(view) => view! {
                    <div class="flex flex-wrap items-center gap-4">
                        <h1 class="break-all text-2xl font-semibold">{view.app.name.clone()}</h1>
                    </div>
                    <super::app::AppTabs app_id=view.app.id logs=true />
                    <RuntimeLog view />
                }
                .into_any(),
                Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
            }
        })
    }
}

/// The live runtime log (an island).
#[island]
fn RuntimeLog(view: AppLogsView) -> impl IntoView {
    let live = use_log_monitor_from(
        LogSource::App(view.app.id),
        view.kept_from,
        view.recent_lines,
    );
    let connection = move || live.connection.get().label();
    view! {
        <p class="mt-4 text-sm text-slate-400">
            "stdout and stderr of the app's running container, newest last; kept up to the newest "
            <code>"SLIPWAY_RUNTIME_LOG_MB"</code>
            " per app. "
            <span data-testid="connection">{connection}</span>
        </p>
        <LogView live />
    }
}
