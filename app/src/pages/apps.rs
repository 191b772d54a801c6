//! `/`: the apps, and a form to add one.

use super::{
    ErrorNote, INPUT, SessionEnded, StatusBadge, error_text, field_error, go_to, live_age,
    precheck, ticking, when,
};
use crate::api::{AppError, CreateApp, list_apps};
use crate::feed::use_event_feed;
use leptos::prelude::*;
use protocol::{AppAction, DeploymentSummary, FeedEvent, FeedId, Status};
use serde::{Deserialize, Serialize};

/// The list is rendered on the server (with each last deployment's age as of the
/// request), then kept live in the browser by the event feed; the form is an island too.
#[component]
pub fn AppsPage() -> impl IntoView {
    let apps = Resource::new(|| (), |_| list_apps());
    view! {
        <section aria-labelledby="apps-heading">
            <h1 id="apps-heading" class="text-2xl font-semibold">"Apps"</h1>
            <Suspense fallback=|| view! { <p class="mt-4 text-slate-400">"Loading apps…"</p> }>
                {move || Suspend::new(async move {
                    match apps.await {
                        Ok(list) => view! { <LiveApps since=list.since rows=list.apps.iter().map(AppRow::from).collect() /> }.into_any(),
                        Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
        <AddAppForm />
    }
}

/// One app of the list, as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRow {
    id: i64,
    name: String,
    source: String,
    url: Option<String>,
    domains: String,
    last: Option<DeploymentSummary>,
}

impl From<&protocol::App> for AppRow {
    fn from(app: &protocol::App) -> AppRow {
        AppRow {
            id: app.id,
            name: app.name.clone(),
            source: format!("{} · {}", app.repo_url, app.branch),
            url: app.url.clone(),
            domains: app.domains.join(", "),
            last: app.last_deployment.as_ref().map(DeploymentSummary::from),
        }
    }
}

/// The apps, live: a deployment started anywhere (the API, a webhook, the CLI) appears
/// and moves through its statuses here; apps added or deleted elsewhere come and go.
#[island]
fn LiveApps(since: FeedId, rows: Vec<AppRow>) -> impl IntoView {
    let (rows, set_rows) = signal(rows);
    let session_ended = use_event_feed(since, move |event| match event {
        FeedEvent::Deployment { data, .. } => set_rows.update(|rows| {
            if let Some(row) = rows.iter_mut().find(|r| r.id == data.app_id)
                && row.last.as_ref().is_none_or(|last| last.id <= data.id)
            {
                row.last = Some(data);
            }
        }),
        FeedEvent::App { data, .. } => set_rows.update(|rows| match data.action {
            AppAction::Created if rows.iter().all(|r| r.id != data.id) => rows.push(AppRow {
                id: data.id,
                name: data.name,
                source: String::new(),
                url: None,
                domains: String::new(),
                last: None,
            }),
            AppAction::Deleted => rows.retain(|r| r.id != data.id),
            _ => {}
        }),
        FeedEvent::Error { .. } => {}
    });
    let tick = ticking();
    view! {
        <SessionEnded ended=session_ended />
        <Show
            when=move || rows.with(|r| !r.is_empty())
            fallback=|| view! { <p class="mt-4 text-slate-400">"No apps yet. Add one below."</p> }
        >
            <ul class="mt-4 divide-y divide-slate-800 rounded border border-slate-800">
                <For each=move || rows.get() key=|row| (row.id, row.last.as_ref().map(|d| (d.id, d.status))) let:app>
                    <li class="flex flex-wrap items-center gap-x-3 gap-y-1 px-4 py-3" data-app=app.name.clone()>
                        <a href=format!("/apps/{}", app.id) class="font-medium text-sky-300 hover:underline">
                            {app.name.clone()}
                        </a>
                        <span class="min-w-0 break-all text-sm text-slate-400">{app.source.clone()}</span>
                        {app.last.clone().map(|d| {
                            let created = d.created_at.clone();
                            view! {
                                <a href=format!("/deployments/{}", d.id) class="flex items-center gap-2" aria-label=format!("Last deployment: {}", d.status.as_str())>
                                    <StatusBadge status=d.status />
                                </a>
                                <time class="text-xs text-slate-500" datetime=d.created_at.clone() title=when(&d.created_at) data-testid="age">
                                    {move || { tick.get(); live_age(&created) }}
                                </time>
                                {(d.status == Status::Failed && !d.error_message.is_empty()).then(|| view! {
                                    <span class="basis-full text-xs text-rose-300" data-testid="failure">{d.error_message.clone()}</span>
                                })}
                            }
                        })}
                        {app.url.clone().map(|url| view! {
                            <a href=url.clone() class="ml-auto text-sm text-emerald-300 hover:underline" data-testid="public-url">{url.clone()}</a>
                        })}
                        {(!app.domains.is_empty()).then(|| view! {
                            <span class="basis-full text-xs text-slate-500">{format!("also {}", app.domains)}</span>
                        })}
                    </li>
                </For>
            </ul>
        </Show>
    }
}

/// Adds an app; the API's objections appear next to their field. Once added, the page
/// loads again with the app in the list.
#[island]
fn AddAppForm() -> impl IntoView {
    let create = ServerAction::<CreateApp>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            go_to("/");
        }
    });
    // Found in the browser before sending, or answered by the server.
    let (checked, set_checked) = signal(None::<AppError>);
    let on_submit = precheck(CreateApp::check, set_checked);
    let problem = move || {
        checked
            .get()
            .or_else(|| create.value().get().and_then(|result| result.err()))
    };
    let field_error = field_error(problem, "");
    let other_error = move || {
        problem()
            .filter(|e| e.field.is_none())
            .map(|e| view! { <ErrorNote message=error_text(&e) /> })
    };
    view! {
        <section aria-labelledby="add-heading" class="mt-10 max-w-xl">
            <h2 id="add-heading" class="text-xl font-semibold">"Add an app"</h2>
            <div on:submit:capture=on_submit>
            <ActionForm action=create attr:class="mt-4 space-y-4" attr:aria-label="Add an app">
                <div>
                    <label for="name" class="text-sm text-slate-300">"Name"</label>
                    <input id="name" name="name" required placeholder="hello" class=INPUT />
                    {field_error("name")}
                </div>
                <div>
                    <label for="repo_url" class="text-sm text-slate-300">"Repository URL"</label>
                    <input id="repo_url" name="repo_url" required placeholder="https://git.example.com/hello.git" class=INPUT />
                    {field_error("repo_url")}
                </div>
                <div class="grid grid-cols-1 gap-4 sm:grid-cols-3">
                    <div>
                        <label for="branch" class="text-sm text-slate-300">"Branch"</label>
                        <input id="branch" name="branch" placeholder="main" class=INPUT />
                        {field_error("branch")}
                    </div>
                    <div>
                        <label for="dockerfile" class="text-sm text-slate-300">"Dockerfile"</label>
                        <input id="dockerfile" name="dockerfile" placeholder="Dockerfile" class=INPUT />
                        {field_error("dockerfile")}
                    </div>
                    <div>
                        <label for="port" class="text-sm text-slate-300">"Port"</label>
                        <input id="port" name="port" inputmode="numeric" placeholder="8080" class=INPUT />
                        {field_error("port")}
                    </div>
                </div>
                <div>
                    <label for="env" class="text-sm text-slate-300">"Environment (NAME=value per line)"</label>
                    <textarea id="env" name="env" rows="3" placeholder="GREETING=hi" class=INPUT></textarea>
                    {field_error("env")}
                </div>
                {other_error}
                <button type="submit" class="rounded bg-sky-600 px-4 py-2 text-sm font-medium text-white hover:bg-sky-500">
                    "Add app"
                </button>
            </ActionForm>
            </div>
        </section>
    }
}
