//! `/apps/{id}`: the app, its Deploy button, its settings and its deployment history.
//!
//! Rendered on the server; the Deploy button, the settings form and each Redeploy button
//! are islands.

use super::{
    BUTTON, ErrorNote, INPUT, StatusBadge, age, error_text, field_error, go_to, precheck, when,
};
use crate::api::{AppError, Deploy, Redeploy, UpdateApp, get_app};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use protocol::{App, DeploymentId};

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
                            // Formatted here, on the server: float formatting stays out of the WebAssembly.
                            <SettingsForm app=app.clone() cpus=app.cpus.to_string() />
                            <h2 class="mt-8 text-xl font-semibold">"Deployments"</h2>
                            {if view.deployments.is_empty() {
                                view! { <p class="mt-2 text-slate-400">"No deployments yet."</p> }.into_any()
                            } else {
                                view! {
                                    <div class="mt-2 overflow-x-auto">
                                    <table class="w-full text-left text-sm">
                                        <thead class="text-slate-400">
                                            <tr><th class="py-1 pr-2">"#"</th><th class="pr-2">"Status"</th><th class="pr-2">"Commit"</th><th class="pr-2">"Duration"</th><th class="pr-2">"When"</th><th><span class="sr-only">"Actions"</span></th></tr>
                                        </thead>
                                        <tbody>
                                            {view.deployments.into_iter().map(|d| {
                                                let can_redeploy = d.status == protocol::Status::Success && d.image.is_some();
                                                view! {
                                                <tr class="border-t border-slate-800" data-deployment=d.id>
                                                    <td class="py-1 pr-2"><a href=format!("/deployments/{}", d.id) class="text-sky-300 hover:underline">{d.id}</a></td>
                                                    <td class="pr-2"><StatusBadge status=d.status /></td>
                                                    <td class="pr-2 font-mono">{d.commit.map(|c| c.chars().take(10).collect::<String>()).unwrap_or_default()}</td>
                                                    <td class="pr-2 whitespace-nowrap">{d.duration.map(super::seconds_text).unwrap_or_default()}</td>
                                                    <td class="pr-2 whitespace-nowrap text-slate-400"><time datetime=d.created_at.clone() title=when(&d.created_at)>{age(&d.created_at)}</time></td>
                                                    <td class="text-right">
                                                        {can_redeploy.then(|| view! { <RedeployButton id=d.id /> })}
                                                    </td>
                                                </tr>
                                            }}).collect_view()}
                                        </tbody>
                                    </table>
                                    </div>
                                }.into_any()
                            }}
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
    }
}

/// Once `started` (a Deploy or Redeploy action's answer) has an id, opens that deployment's
/// monitor; answers the error to show when it failed.
fn open_monitor(
    started: impl Fn() -> Option<Result<DeploymentId, AppError>> + Copy + Send + Sync + 'static,
) -> impl Fn() -> Option<String> + Copy + Send + Sync + 'static {
    Effect::new(move |_| {
        if let Some(Ok(id)) = started() {
            go_to(&format!("/deployments/{id}"));
        }
    });
    move || started().and_then(|r| r.err()).map(|e| error_text(&e))
}

/// Queues a deployment and opens its monitor. Without WebAssembly the form posts and the
/// server redirects to the monitor.
#[island]
fn DeployButton(app_id: i64) -> impl IntoView {
    let deploy = ServerAction::<Deploy>::new();
    let error = open_monitor(move || deploy.value().get());
    let error = move || error().map(|message| view! { <ErrorNote message /> });
    view! {
        <ActionForm action=deploy>
            <input type="hidden" name="app_id" value=app_id />
            <button type="submit" class="rounded bg-emerald-600 px-4 py-2 text-sm font-medium text-white hover:bg-emerald-500">
                "Deploy"
            </button>
        </ActionForm>
        {error}
    }
}

/// Deploys an earlier deployment's image again and opens the new monitor.
#[island]
fn RedeployButton(id: DeploymentId) -> impl IntoView {
    let redeploy = ServerAction::<Redeploy>::new();
    let error = open_monitor(move || redeploy.value().get());
    let error = move || {
        error().map(|message| view! { <p role="alert" class="text-xs text-rose-300">{message}</p> })
    };
    view! {
        <ActionForm action=redeploy>
            <input type="hidden" name="id" value=id />
            <button type="submit" aria-label=format!("Redeploy #{id}") class="rounded border border-slate-700 px-2 py-0.5 text-xs text-slate-200 hover:bg-slate-800">
                "Redeploy"
            </button>
        </ActionForm>
        {error}
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
