//! `/deployments/{id}`: the live monitor. Rendered on the server from the stored state
//! and the last lines; `use_deployment_monitor` takes over once the WebAssembly loads.

use super::log_view::LogView;
use super::{ErrorNote, StatusBadge, error_text, now_ms};
use crate::api::{CancelDeployment, DeploymentView, deployment_url, get_deployment};
use crate::monitor::{Connection, DeploymentMonitor, use_deployment_monitor};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use protocol::{Plan, Status, StatusData};

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let initial = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_deployment(id).await,
            None => Err(crate::api::AppError::new(
                protocol::ErrorCode::NotFound,
                "no such deployment",
            )),
        }
    });
    // No <Suspense> around the island: its rows would be resolved after the island's owner
    // had gone (a panic in leptos 0.8). The route renders in async mode, so the page is sent
    // once this has resolved anyway.
    move || {
        Suspend::new(async move {
            match initial.await {
                Ok(view) => view! {
                    <Monitor view />
                    // Until the WebAssembly takes over (or without it), show the log's end:
                    // the newest lines are what a late joiner came for. It carries the
                    // page's CSP nonce, like Leptos' own scripts.
                    <script nonce=use_nonce() inner_html=SCROLL_LOG_TO_END></script>
                }
                .into_any(),
                Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
            }
        })
    }
}

/// Runs as the page is parsed, before any WebAssembly.
const SCROLL_LOG_TO_END: &str =
    "(l=>{if(l)l.scrollTop=l.scrollHeight})(document.querySelector('[role=log]'))";

/// The monitor island: rendered on the server from the stored state and the newest lines,
/// then live in the browser.
#[island]
fn Monitor(view: DeploymentView) -> impl IntoView {
    let live = use_deployment_monitor(view.deployment.id, view.recent_lines.clone());
    view! { <MonitorView view live /> }
}

fn parse_ms(timestamp: &str) -> Option<f64> {
    #[cfg(feature = "hydrate")]
    {
        let ms = js_sys::Date::parse(timestamp);
        (!ms.is_nan()).then_some(ms)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = timestamp;
        None
    }
}

/// The stages this deployment's plan runs (a redeploy skips cloning and building), then
/// how it ended.
#[component]
fn Stepper(status: Signal<StatusData>, plan: Plan) -> impl IntoView {
    let stages = plan.stages();
    let step = move |stage: Status| {
        let s = status.get();
        let reached = s.failed_stage.unwrap_or(s.stage);
        let position = |st: Status| stages.iter().position(|x| *x == st);
        let (now, this) = (
            position(reached).unwrap_or(stages.len()),
            position(stage).unwrap_or(0),
        );
        if s.status == Status::Success || this < now {
            "done"
        } else if this == now && s.status == Status::Failed {
            "failed"
        } else if this == now && s.status == Status::Cancelled {
            "cancelled"
        } else if this == now {
            "current"
        } else {
            "todo"
        }
    };
    let class = |state: &str| match state {
        "done" => "border-emerald-500 bg-emerald-500/15 text-emerald-200",
        "current" => "border-sky-400 bg-sky-500/20 text-sky-100 animate-pulse",
        "failed" => "border-rose-500 bg-rose-500/20 text-rose-100",
        "cancelled" => "border-slate-400 bg-slate-500/20 text-slate-200",
        _ => "border-slate-700 text-slate-500",
    };
    let end_label = move || match status.get().status {
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
        _ => "success",
    };
    let end_state = move || match status.get().status {
        Status::Success => "done",
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
        _ => "todo",
    };
    view! {
        <ol aria-label="Stages" class=format!("mt-4 grid {} gap-1 text-center text-xs sm:text-sm", if stages.len() == 4 { "grid-cols-5" } else { "grid-cols-3" })>
            {stages.iter().copied().map(|stage| view! {
                <li
                    data-stage=stage.as_str()
                    data-state=move || step(stage)
                    aria-current=move || (step(stage) == "current").then_some("step")
                    class=move || format!("rounded border px-1 py-1.5 {}", class(step(stage)))
                >
                    {stage.as_str()}
                </li>
            }).collect_view()}
            <li
                data-stage="end"
                data-state=end_state
                class=move || format!("rounded border px-1 py-1.5 {}", class(end_state()))
            >
                {end_label}
            </li>
        </ol>
    }
}

#[component]
fn MonitorView(view: DeploymentView, live: DeploymentMonitor) -> impl IntoView {
    let DeploymentView {
        deployment,
        app_name,
        ..
    } = view;
    let id = deployment.id;
    let plan = deployment.plan();
    let initial_status = deployment.status_data();
    let status =
        Signal::derive(move || live.status.get().unwrap_or_else(|| initial_status.clone()));
    // Where the app answers: known at render time for a finished deployment; for one that
    // succeeds while watched, asked for once it has (in the browser only).
    let (url, set_url) = signal(deployment.url.clone());
    Effect::new(move |_| {
        if status.get().status == Status::Success && url.get_untracked().is_none() {
            leptos::task::spawn_local(async move {
                if let Ok(Some(found)) = deployment_url(id).await {
                    set_url.set(Some(found));
                }
            });
        }
    });
    let connection = move || live.connection.get();
    let running = move || !status.get().status.is_terminal();

    // Elapsed time: ticks every second in the browser while the deployment runs.
    let started = deployment
        .started_at
        .clone()
        .unwrap_or_else(|| deployment.created_at.clone());
    let (now, set_now) = signal(None::<f64>);
    Effect::new(move |_| {
        set_now.set(now_ms());
        #[cfg(feature = "hydrate")]
        if let Ok(handle) = set_interval_with_handle(
            move || set_now.set(now_ms()),
            std::time::Duration::from_secs(1),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let elapsed = move || {
        let s = status.get();
        if let Some(duration) = s.duration {
            return super::seconds_text(duration);
        }
        match (now.get(), parse_ms(&started)) {
            (Some(now), Some(start)) if !s.status.is_terminal() => {
                super::seconds_text((now - start) / 1000.0)
            }
            _ => String::new(),
        }
    };

    let cancel = ServerAction::<CancelDeployment>::new();
    let cancel_error = move || {
        cancel
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <ErrorNote message=error_text(&e) /> })
    };

    // The last lines of output, for the error panel.
    let last_lines = move || {
        live.lines.with(|book| {
            book.last_lines(8)
                .iter()
                .map(|l| protocol::ansi::plain(l))
                .collect::<Vec<_>>()
                .join("\n")
        })
    };

    view! {
        <div class="flex flex-wrap items-center gap-3">
            <h1 class="text-2xl font-semibold">{format!("Deployment #{}", deployment.id)}</h1>
            <a href=format!("/apps/{}", deployment.app_id) class="text-sky-300 hover:underline">{app_name}</a>
            {deployment.commit.clone().map(|c| view! { <code class="text-xs text-slate-400">{c.chars().take(12).collect::<String>()}</code> })}
            <span class="ml-auto flex items-center gap-2 text-sm text-slate-400" aria-label="connection">
                <span class=move || match connection() {
                    Connection::Live => "h-2 w-2 rounded-full bg-emerald-400",
                    Connection::Reconnecting => "h-2 w-2 rounded-full bg-amber-400 animate-pulse",
                    _ => "h-2 w-2 rounded-full bg-slate-500",
                }></span>
                <span data-testid="connection">{move || connection().label()}</span>
            </span>
        </div>
        <Stepper status plan />
        <div class="mt-4 flex flex-wrap items-center gap-3">
            <span data-testid="status" class="text-lg font-medium">
                {move || { let s = status.get(); view! { <StatusBadge status=s.status /> } }}
            </span>
            <span class="text-slate-300" data-testid="message">{move || status.get().message}</span>
            <span class="text-sm tabular-nums text-slate-400" data-testid="elapsed" aria-label="Elapsed time">{elapsed}</span>
            <span class="grow"></span>
            {move || url.get().map(|url| view! {
                <a href=url class="rounded border border-emerald-700 px-3 py-1 text-sm text-emerald-300 hover:bg-emerald-950">"Open app"</a>
            })}
            <Show when=running>
                <ActionForm action=cancel>
                    <input type="hidden" name="id" value=id />
                    <button type="submit" class="rounded border border-rose-700 px-3 py-1 text-sm text-rose-200 hover:bg-rose-950">
                        "Cancel deployment"
                    </button>
                </ActionForm>
            </Show>
        </div>
        {cancel_error}
        // The stream ended because the session did (4401/4403): say so, offer to sign in.
        {move || live.error.get().and_then(|e| {
            let ended = matches!(e.code, protocol::ErrorCode::Unauthorized | protocol::ErrorCode::Forbidden);
            ended.then(|| view! {
                <p role="alert" data-testid="session-ended" class="mt-3 rounded border border-amber-500/40 bg-amber-500/10 px-3 py-2 text-sm text-amber-200">
                    {format!("No longer live: {} ", e.message)}
                    <a href=move || format!("/login?next=%2Fdeployments%2F{id}") class="underline">"Sign in again"</a>
                </p>
            })
        })}
        <div
            role="progressbar"
            aria-label="Deployment progress"
            aria-valuemin="0"
            aria-valuemax="100"
            aria-valuenow=move || status.get().progress
            class="mt-3 h-2 w-full overflow-hidden rounded bg-slate-800"
        >
            <div
                class=move || {
                    let color = match status.get().status {
                        Status::Failed => "bg-rose-500",
                        Status::Cancelled => "bg-slate-500",
                        Status::Success => "bg-emerald-500",
                        _ => "bg-sky-500",
                    };
                    format!("h-full transition-all duration-300 {color}")
                }
                style=move || format!("width: {}%", status.get().progress)
            ></div>
        </div>
        {move || {
            let s = status.get();
            (s.status == Status::Failed).then(|| view! {
                <section role="alert" aria-label="Why the deployment failed" data-testid="error-panel" class="mt-4 rounded border border-rose-800 bg-rose-950/50 px-3 py-2 text-sm text-rose-200">
                    <p class="font-medium">{format!("Failed during {}", s.failed_stage.map(|f| f.as_str()).unwrap_or("an unknown stage"))}</p>
                    <pre class="mt-1 whitespace-pre-wrap font-mono">{s.error_message}</pre>
                    <p class="mt-2 text-xs text-rose-300">"Last lines of output:"</p>
                    <pre class="mt-1 max-h-48 overflow-auto whitespace-pre-wrap font-mono text-xs text-rose-100/80">{last_lines}</pre>
                </section>
            })
        }}
        <LogView live />
    }
}
