//! `/apps/{id}`: the app, its Deploy button, its settings and its deployment history.
//!
//! Rendered on the server; the Deploy button, the settings form and each Redeploy button
//! are islands.

use super::{
    BUTTON, ErrorNote, INPUT, SessionEnded, StatusBadge, age, error_text, field_error, live_age,
    precheck, ticking, when,
};
use crate::api::{AppError, Deploy, Redeploy, Rollback, RotateWebhook, UpdateApp, get_app};
use crate::feed::use_event_feed;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::hooks::use_params_map;
use protocol::{App, DeploymentId};
use protocol::{DeploymentSummary, FeedEvent, FeedId, Status};
use serde::{Deserialize, Serialize};

#[component]
pub fn AppPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let data = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_app(id).await,
            None => Err(AppError::new(protocol::ErrorCode::NotFound, "no such app")),
        }
    });

    view! {
        {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => {
                        let app = view.app;
                        let view_newest = view
                            .deployments
                            .iter()
                            .find(|d| d.status == protocol::Status::Success && d.image.is_some())
                            .map(|d| d.id);
                        view! {
                            <div class="flex flex-wrap items-center gap-4">
                                <h1 class="break-all text-2xl font-semibold">{app.name.clone()}</h1>
                                <DeployButton app_id=app.id />
                                {app.url.clone().map(|url| view! {
                                    <a href=url.clone() class="text-sm text-emerald-300 hover:underline">{url.clone()}</a>
                                })}
                            </div>
                            {(!app.domains.is_empty()).then(|| view! {
                                <p class="mt-2 text-sm text-slate-400" data-testid="domains">
                                    "Also at: "
                                    {app.domains.iter().map(|d| view! { <code class="mr-2 text-slate-300">{d.clone()}</code> }).collect_view()}
                                </p>
                            })}
                            <AppTabs app_id=app.id logs=false />
                            // Formatted here, on the server: float formatting stays out of the WebAssembly.
                            <SettingsForm app=app.clone() cpus=app.cpus.to_string() />
                            <section aria-labelledby="webhook-heading" class="mt-8 max-w-3xl">
                                <h2 id="webhook-heading" class="text-xl font-semibold">"Deploy on git push"</h2>
                                <p class="mt-1 text-sm text-slate-400">
                                    "Add a webhook to the repository on GitHub, Gitea, Forgejo or GitLab (push events, content type JSON) with this URL and secret: a push to "
                                    <code>{app.branch.clone()}</code>
                                    " deploys the pushed commit."
                                </p>
                                {view.webhook_url.clone().map(|url| view! {
                                    <p class="mt-2 text-sm">"Webhook URL: " <code data-testid="webhook-url" class="break-all text-slate-200">{url}</code></p>
                                })}
                                <WebhookSecret app_id=app.id has_secret=view.webhook_url.is_some() />
                                {(!view.deliveries.is_empty()).then(|| view! {
                                    <div class="mt-3 overflow-x-auto">
                                    <table class="w-full text-left text-sm" aria-label="Recent deliveries">
                                        <thead class="text-slate-400">
                                            <tr><th class="py-1 pr-2">"Received"</th><th class="pr-2">"From"</th><th class="pr-2">"Event"</th><th>"What it did"</th></tr>
                                        </thead>
                                        <tbody>
                                            {view.deliveries.iter().map(|d| view! {
                                                <tr class="border-t border-slate-800" data-delivery=d.delivery.clone()>
                                                    <td class="py-1 pr-2 whitespace-nowrap text-slate-400"><time datetime=d.received_at.clone() title=when(&d.received_at)>{age(&d.received_at)}</time></td>
                                                    <td class="pr-2">{d.forge.clone()}</td>
                                                    <td class="pr-2">{d.event.clone()}</td>
                                                    <td>{match (d.deployment_id, d.ignored.clone()) {
                                                        (Some(id), _) => view! { <a href=format!("/deployments/{id}") class="text-sky-300 hover:underline">{format!("deployed #{id}")}</a> }.into_any(),
                                                        (None, why) => view! { <span class="text-slate-400">{format!("ignored: {}", why.unwrap_or_default())}</span> }.into_any(),
                                                    }}</td>
                                                </tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                    </div>
                                })}
                            </section>
                            <h2 class="mt-8 text-xl font-semibold">"Deployments"</h2>
                            <LiveHistory
                                app_id=app.id
                                since=view.since
                                rows=view.deployments.iter().map(|d| HistoryRow::new(d, view_newest)).collect()
                            />
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
    }
}

/// One deployment of the history, as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    summary: DeploymentSummary,
    /// Formatted on the server: float formatting stays out of the WebAssembly.
    duration: String,
    /// A success whose image is kept: the newest can be started again, older ones
    /// rolled back to.
    startable: bool,
    newest: bool,
}

impl HistoryRow {
    fn new(d: &protocol::Deployment, newest: Option<DeploymentId>) -> HistoryRow {
        HistoryRow {
            summary: DeploymentSummary::from(d),
            duration: d.duration.map(super::seconds_text).unwrap_or_default(),
            startable: d.status == Status::Success && d.image.is_some(),
            newest: newest == Some(d.id),
        }
    }
}

/// The app's deployments, live: one started anywhere appears at the top and moves
/// through its statuses (its buttons come with the next page load).
#[island]
fn LiveHistory(app_id: i64, since: FeedId, rows: Vec<HistoryRow>) -> impl IntoView {
    let (rows, set_rows) = signal(rows);
    let session_ended = use_event_feed(since, move |event| {
        let FeedEvent::Deployment { data, .. } = event else {
            return;
        };
        if data.app_id != app_id {
            return;
        }
        set_rows.update(
            |rows| match rows.iter_mut().find(|r| r.summary.id == data.id) {
                Some(row) => row.summary = data,
                None => {
                    let at = rows
                        .iter()
                        .position(|r| r.summary.id < data.id)
                        .unwrap_or(rows.len());
                    rows.insert(
                        at,
                        HistoryRow {
                            summary: data,
                            duration: String::new(),
                            startable: false,
                            newest: false,
                        },
                    );
                }
            },
        );
    });
    let tick = ticking();
    view! {
        <SessionEnded ended=session_ended />
        <Show
            when=move || rows.with(|r| !r.is_empty())
            fallback=|| view! { <p class="mt-2 text-slate-400">"No deployments yet."</p> }
        >
            <div class="mt-2 overflow-x-auto">
            <table class="w-full text-left text-sm">
                <thead class="text-slate-400">
                    <tr><th class="py-1 pr-2">"#"</th><th class="pr-2">"Status"</th><th class="pr-2">"Commit"</th><th class="pr-2">"Duration"</th><th class="pr-2">"When"</th><th><span class="sr-only">"Actions"</span></th></tr>
                </thead>
                <tbody>
                    <For each=move || rows.get() key=|row| (row.summary.id, row.summary.status) let:row>
                        {
                            let d = row.summary.clone();
                            let created = d.created_at.clone();
                            view! {
                                <tr class="border-t border-slate-800" data-deployment=d.id>
                                    <td class="py-1 pr-2"><a href=format!("/deployments/{}", d.id) class="text-sky-300 hover:underline">{d.id}</a></td>
                                    <td class="pr-2"><StatusBadge status=d.status /></td>
                                    <td class="pr-2 font-mono">{d.commit.clone().map(|c| c.chars().take(10).collect::<String>()).unwrap_or_default()}</td>
                                    <td class="pr-2 whitespace-nowrap">{row.duration.clone()}</td>
                                    <td class="pr-2 whitespace-nowrap text-slate-400"><time datetime=d.created_at.clone() title=when(&d.created_at)>{move || { tick.get(); live_age(&created) }}</time></td>
                                    <td class="text-right">
                                        {(row.startable && row.newest).then(|| view! { <RedeployButton id=d.id /> })}
                                        {(row.startable && !row.newest).then(|| view! { <RollbackButton app_id=d.app_id id=d.id /> })}
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            </div>
        </Show>
    }
}

/// The app's two pages: its overview and its runtime logs.
#[component]
pub fn AppTabs(app_id: i64, logs: bool) -> impl IntoView {
    let tab = |current: bool| {
        if current {
            "border-b-2 border-sky-400 px-1 pb-1 text-slate-100"
        } else {
            "px-1 pb-1 text-slate-400 hover:text-slate-200"
        }
    };
    view! {
        <nav aria-label="App" class="mt-4 flex gap-4 border-b border-slate-800 text-sm">
            <a href=format!("/apps/{app_id}") class=tab(!logs) aria-current=(!logs).then_some("page")>"Overview"</a>
            <a href=format!("/apps/{app_id}/logs") class=tab(logs) aria-current=logs.then_some("page")>"Runtime logs"</a>
        </nav>
    }
}

/// A button that posts to a server function which answers by opening a deployment's
/// monitor (a redirect). A plain form, not an island: it needs no WebAssembly, and the
/// page it leads to is a page load anyway.
#[component]
fn StartButton(
    /// The server function's URL.
    action: &'static str,
    /// Its arguments, as hidden fields.
    fields: Vec<(&'static str, i64)>,
    label: String,
    text: &'static str,
    class: &'static str,
) -> impl IntoView {
    view! {
        <form method="post" action=action>
            {fields.into_iter().map(|(name, value)| view! { <input type="hidden" name=name value=value /> }).collect_view()}
            <button type="submit" aria-label=label class=class>{text}</button>
        </form>
    }
}

/// Queues a deployment; the server opens its monitor.
#[component]
fn DeployButton(app_id: i64) -> impl IntoView {
    view! {
        <StartButton
            action=Deploy::PATH
            fields=vec![("app_id", app_id)]
            label="Deploy".into()
            text="Deploy"
            class="rounded bg-emerald-600 px-4 py-2 text-sm font-medium text-white hover:bg-emerald-500"
        />
    }
}

/// Deploys the newest successful deployment's image again.
#[component]
fn RedeployButton(id: DeploymentId) -> impl IntoView {
    view! {
        <StartButton
            action=Redeploy::PATH
            fields=vec![("id", id)]
            label=format!("Redeploy #{id}")
            text="Redeploy"
            class="rounded border border-slate-700 px-2 py-0.5 text-xs text-slate-200 hover:bg-slate-800"
        />
    }
}

/// Starts an older successful deployment's image again (its image is kept): a rollback.
#[component]
fn RollbackButton(app_id: i64, id: DeploymentId) -> impl IntoView {
    view! {
        <StartButton
            action=Rollback::PATH
            fields=vec![("app_id", app_id), ("id", id)]
            label=format!("Roll back to #{id}")
            text="Roll back"
            class="rounded border border-amber-700 px-2 py-0.5 text-xs text-amber-200 hover:bg-amber-950"
        />
    }
}

/// Creates or rotates the app's webhook secret; the new secret is shown once.
#[island]
fn WebhookSecret(app_id: i64, has_secret: bool) -> impl IntoView {
    let rotate = ServerAction::<RotateWebhook>::new();
    let created = move || rotate.value().get().and_then(|r| r.ok());
    let error = move || {
        rotate
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <ErrorNote message=error_text(&e) /> })
    };
    view! {
        <ActionForm action=rotate attr:class="mt-3">
            <input type="hidden" name="app_id" value=app_id />
            <button type="submit" class="rounded border border-slate-700 px-3 py-1 text-sm text-slate-200 hover:bg-slate-800">
                {if has_secret { "Rotate the webhook secret" } else { "Create a webhook secret" }}
            </button>
        </ActionForm>
        {error}
        {move || created().map(|hook| view! {
            <div role="status" class="mt-3 rounded border border-emerald-800 bg-emerald-950/40 p-3 text-sm">
                <p class="text-emerald-200">"Copy the secret now: it is not shown again. The previous secret no longer works."</p>
                <p class="mt-2">"URL: " <code class="break-all">{hook.url}</code></p>
                <p class="mt-1">"Secret: " <code data-testid="webhook-secret" class="break-all">{hook.secret}</code></p>
            </div>
        })}
    }
}

/// The app's settings. Environment values are write-only: the form shows which names are
/// set, takes new `NAME=value` lines, and never receives a value back.
#[island]
fn SettingsForm(app: App, cpus: String) -> impl IntoView {
    let update = ServerAction::<UpdateApp>::new();
    let (env_keys, set_env_keys) = signal(app.env_keys.clone());
    let env_set = NodeRef::<leptos::html::Textarea>::new();
    let env_remove = NodeRef::<leptos::html::Input>::new();
    // Saved: show the names now set, and clear the values typed (they are stored).
    Effect::new(move |_| {
        if let Some(Ok(keys)) = update.value().get() {
            set_env_keys.set(keys);
            if let Some(area) = env_set.get_untracked() {
                area.set_value("");
            }
            if let Some(input) = env_remove.get_untracked() {
                input.set_value("");
            }
        }
    });
    // Found in the browser before sending, or answered by the server.
    let (checked, set_checked) = signal(None::<AppError>);
    let on_submit = precheck(UpdateApp::check, set_checked);
    let problem = move || {
        checked
            .get()
            .or_else(|| update.value().get().and_then(|r| r.err()))
    };
    let field_error = field_error(problem, "settings-");
    let other_error = move || {
        problem()
            .filter(|p| {
                !matches!(
                    p.field.as_deref(),
                    Some(
                        "repo_url"
                            | "branch"
                            | "dockerfile"
                            | "port"
                            | "env_set"
                            | "domains"
                            | "memory_mb"
                            | "cpus"
                    )
                )
            })
            .map(|p| view! { <ErrorNote message=p.message /> })
    };
    let saved = move || {
        (checked.get().is_none() && matches!(update.value().get(), Some(Ok(_))))
            .then(|| view! { <p role="status" class="text-sm text-emerald-300">"Saved. The next deployment uses these settings."</p> })
    };
    view! {
        <section aria-labelledby="settings-heading" class="mt-6 max-w-3xl">
            <h2 id="settings-heading" class="text-xl font-semibold">"Settings"</h2>
            <div on:submit:capture=on_submit>
            <ActionForm action=update attr:class="mt-3 space-y-3" attr:aria-label="Settings">
                <input type="hidden" name="id" value=app.id />
                <div>
                    <label for="repo_url" class="text-sm text-slate-300">"Repository URL"</label>
                    <input id="repo_url" name="repo_url" required value=app.repo_url class=INPUT />
                    {field_error("repo_url")}
                </div>
                <div class="grid grid-cols-1 gap-3 sm:grid-cols-3">
                    <div>
                        <label for="branch" class="text-sm text-slate-300">"Branch"</label>
                        <input id="branch" name="branch" value=app.branch class=INPUT />
                        {field_error("branch")}
                    </div>
                    <div>
                        <label for="dockerfile" class="text-sm text-slate-300">"Dockerfile"</label>
                        <input id="dockerfile" name="dockerfile" value=app.dockerfile class=INPUT />
                        {field_error("dockerfile")}
                    </div>
                    <div>
                        <label for="port" class="text-sm text-slate-300">"Port"</label>
                        <input id="port" name="port" inputmode="numeric" value=app.port.map(|p| p.to_string()).unwrap_or_default() class=INPUT />
                        {field_error("port")}
                    </div>
                </div>
                <div>
                    <label for="domains" class="text-sm text-slate-300">"Extra domains (one per line)"</label>
                    <textarea id="domains" name="domains" rows="2" placeholder="www.example.com" class=INPUT>{app.domains.join("\n")}</textarea>
                    {field_error("domains")}
                </div>
                <div class="grid grid-cols-1 gap-3 sm:grid-cols-3">
                    <div>
                        <label for="memory_mb" class="text-sm text-slate-300">"Memory (MB)"</label>
                        <input id="memory_mb" name="memory_mb" inputmode="numeric" value=app.memory_mb.to_string() class=INPUT />
                        {field_error("memory_mb")}
                    </div>
                    <div>
                        <label for="cpus" class="text-sm text-slate-300">"CPUs"</label>
                        <input id="cpus" name="cpus" inputmode="decimal" value=cpus class=INPUT />
                        {field_error("cpus")}
                    </div>
                </div>
                <fieldset class="rounded border border-slate-800 p-3">
                    <legend class="px-1 text-sm text-slate-300">"Environment variables"</legend>
                    <p class="text-xs text-slate-400">"Values are write-only: they are stored and passed to the container, never shown again."</p>
                    <ul class="mt-2 flex flex-wrap gap-2 text-xs" aria-label="Variables set">
                        {move || {
                            let keys = env_keys.get();
                            if keys.is_empty() {
                                view! { <li class="text-slate-500">"none"</li> }.into_any()
                            } else {
                                keys.into_iter().map(|k| view! {
                                    <li class="break-all rounded bg-slate-800 px-2 py-1 font-mono" data-env-key=k.clone()>{format!("{k}=••••••")}</li>
                                }).collect_view().into_any()
                            }
                        }}
                    </ul>
                    <label for="env_set" class="mt-3 block text-sm text-slate-300">"Add or change (NAME=value per line)"</label>
                    <textarea node_ref=env_set id="env_set" name="env_set" rows="3" placeholder="GREETING=hi" autocomplete="off" class=INPUT></textarea>
                    {field_error("env_set")}
                    <label for="env_remove" class="mt-3 block text-sm text-slate-300">"Remove (names, separated by spaces)"</label>
                    <input node_ref=env_remove id="env_remove" name="env_remove" autocomplete="off" class=INPUT />
                </fieldset>
                {other_error}
                {saved}
                <button type="submit" class=BUTTON>"Save settings"</button>
            </ActionForm>
            </div>
        </section>
    }
}
