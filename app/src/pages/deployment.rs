//! `/deployments/{id}`: the live monitor. Rendered on the server from the stored state
//! and the last lines; `use_deployment_monitor` takes over once the WebAssembly loads.

use super::{ErrorNote, StatusBadge, error_text};
use crate::api::{DeploymentView, get_deployment};
use crate::monitor::{Connection, DeploymentMonitor, use_deployment_monitor};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use protocol::DeploymentId;

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    move || match id() {
        Some(id) => view! { <Monitor id /> }.into_any(),
        None => view! { <ErrorNote message="no such deployment".to_owned() /> }.into_any(),
    }
}

#[component]
fn Monitor(id: DeploymentId) -> impl IntoView {
    let initial = Resource::new(move || id, get_deployment);
    let live = use_deployment_monitor(id);
    view! {
        <Suspense fallback=|| view! { <p class="text-slate-400">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match initial.await {
                    Ok(view) => view! { <MonitorView view live /> }.into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn MonitorView(view: DeploymentView, live: DeploymentMonitor) -> impl IntoView {
    let DeploymentView {
        deployment,
        app_name,
        recent_lines,
    } = view;
    let initial_status = deployment.status_data();
    let status =
        Signal::derive(move || live.status.get().unwrap_or_else(|| initial_status.clone()));
    let lines = move || {
        if live.lines.with(|l| l.is_empty()) {
            recent_lines.clone()
        } else {
            live.lines.get()
        }
    };
    let url = deployment.url.clone();
    let connection = move || live.connection.get();
    view! {
        <div class="flex flex-wrap items-center gap-3">
            <h1 class="text-2xl font-semibold">{format!("Deployment #{}", deployment.id)}</h1>
            <A href=format!("/apps/{}", deployment.app_id) attr:class="text-sky-300 hover:underline">{app_name}</A>
            <span class="ml-auto flex items-center gap-2 text-sm text-slate-400" aria-label="connection">
                <span class=move || match connection() {
                    Connection::Live => "h-2 w-2 rounded-full bg-emerald-400",
                    Connection::Reconnecting => "h-2 w-2 rounded-full bg-amber-400",
                    _ => "h-2 w-2 rounded-full bg-slate-500",
                }></span>
                <span data-testid="connection">{move || connection().label()}</span>
            </span>
        </div>
        <div class="mt-4 flex items-center gap-3">
            <span data-testid="status" class="text-lg font-medium">
                {move || { let s = status.get(); view! { <StatusBadge status=s.status /> } }}
            </span>
            <span class="text-slate-300" data-testid="message">{move || status.get().message}</span>
            {move || status.get().duration.map(|d| view! { <span class="text-sm text-slate-400">{format!("{d:.1} s")}</span> })}
        </div>
        <div
            role="progressbar"
            aria-label="Deployment progress"
            aria-valuemin="0"
            aria-valuemax="100"
            aria-valuenow=move || status.get().progress
            class="mt-3 h-2 w-full overflow-hidden rounded bg-slate-800"
        >
            <div
                class="h-full bg-sky-500 transition-all duration-300"
                style=move || format!("width: {}%", status.get().progress)
            ></div>
        </div>
        {move || {
            let s = status.get();
            (!s.error_message.is_empty()).then(|| view! {
                <div role="alert" class="mt-4 rounded border border-rose-800 bg-rose-950/50 px-3 py-2 text-sm text-rose-200">
                    <p class="font-medium">{format!("Failed during {}", s.failed_stage.map(|f| f.as_str()).unwrap_or("?"))}</p>
                    <pre class="mt-1 whitespace-pre-wrap font-mono">{s.error_message}</pre>
                </div>
            })
        }}
        {url.map(|url| view! { <p class="mt-3"><a href=url.clone() class="text-emerald-300 hover:underline">{url.clone()}</a></p> })}
        <div
            role="log"
            aria-label="Build log"
            aria-live="polite"
            class="mt-4 max-h-[65vh] overflow-auto rounded border border-slate-800 bg-black/60 p-3 font-mono text-xs leading-5"
        >
            <For each=lines key=|line| line.seq let:line>
                <div class="whitespace-pre-wrap break-all" data-seq=line.seq>{line.line.trim_end_matches('\n').to_owned()}</div>
            </For>
        </div>
    }
}
