//! `/apps/{id}`: the app, its Deploy button and its deployment history.

use super::{BUTTON, ErrorNote, INPUT, StatusBadge, error_text, when};
use crate::api::{Deploy, Redeploy, UpdateApp, get_app};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

#[component]
pub fn AppPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let deploy = ServerAction::<Deploy>::new();
    let redeploy = ServerAction::<Redeploy>::new();
    let update = ServerAction::<UpdateApp>::new();
    let data = Resource::new(
        move || (id(), deploy.version().get(), update.version().get()),
        |(id, _, _)| async move {
            match id {
                Some(id) => get_app(id).await,
                None => Err(ServerFnError::new("no such app")),
            }
        },
    );
    // With WebAssembly loaded, go to the new deployment's monitor.
    let navigate = use_navigate();
    Effect::new(move |_| {
        let started = deploy
            .value()
            .get()
            .and_then(|r| r.ok())
            .or_else(|| redeploy.value().get().and_then(|r| r.ok()));
        if let Some(deployment) = started {
            navigate(
                &format!("/deployments/{}", deployment.id),
                Default::default(),
            );
        }
    });
    let redeploy_error = move || {
        redeploy
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <ErrorNote message=error_text(&e) /> })
    };
    let update_problem = move || {
        update.value().get().and_then(|r| match r {
            Ok(Err(problem)) => Some(problem),
            Err(e) => Some(crate::api::FieldProblem {
                field: None,
                message: error_text(&e),
            }),
            Ok(Ok(_)) => None,
        })
    };
    let field_error = move |field: &'static str| {
        move || {
            update_problem()
                .filter(|p| p.field.as_deref() == Some(field))
                .map(|p| view! { <p class="mt-1 text-sm text-rose-300" id=format!("settings-{field}-error")>{p.message}</p> })
        }
    };
    let other_error = move || {
        update_problem()
            .filter(|p| {
                !matches!(
                    p.field.as_deref(),
                    Some("repo_url" | "branch" | "dockerfile" | "port" | "env_set")
                )
            })
            .map(|p| view! { <ErrorNote message=p.message /> })
    };
    let saved = move || {
        matches!(update.value().get(), Some(Ok(Ok(_))))
            .then(|| view! { <p role="status" class="text-sm text-emerald-300">"Saved. The next deployment uses these settings."</p> })
    };
    let deploy_error = move || {
        deploy
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| view! { <ErrorNote message=error_text(&e) /> })
    };

    view! {
        <Suspense fallback=|| view! { <p class="text-slate-400">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => {
                        let app = view.app;
                        view! {
                            <div class="flex flex-wrap items-center gap-4">
                                <h1 class="text-2xl font-semibold">{app.name.clone()}</h1>
                                <ActionForm action=deploy>
                                    <input type="hidden" name="app_id" value=app.id />
                                    <button type="submit" class="rounded bg-emerald-600 px-4 py-2 text-sm font-medium text-white hover:bg-emerald-500">
                                        "Deploy"
                                    </button>
                                </ActionForm>
                                {app.url.clone().map(|url| view! {
                                    <a href=url.clone() class="text-sm text-emerald-300 hover:underline">{url.clone()}</a>
                                })}
                            </div>
                            {deploy_error}
                            {redeploy_error}
                            <section aria-labelledby="settings-heading" class="mt-6 max-w-3xl">
                                <h2 id="settings-heading" class="text-xl font-semibold">"Settings"</h2>
                                <ActionForm action=update attr:class="mt-3 space-y-3" attr:aria-label="Settings">
                                    <input type="hidden" name="id" value=app.id />
                                    <div>
                                        <label for="repo_url" class="text-sm text-slate-300">"Repository URL"</label>
                                        <input id="repo_url" name="repo_url" required value=app.repo_url.clone() class=INPUT />
                                        {field_error("repo_url")}
                                    </div>
                                    <div class="grid grid-cols-1 gap-3 sm:grid-cols-3">
                                        <div>
                                            <label for="branch" class="text-sm text-slate-300">"Branch"</label>
                                            <input id="branch" name="branch" value=app.branch.clone() class=INPUT />
                                            {field_error("branch")}
                                        </div>
                                        <div>
                                            <label for="dockerfile" class="text-sm text-slate-300">"Dockerfile"</label>
                                            <input id="dockerfile" name="dockerfile" value=app.dockerfile.clone() class=INPUT />
                                            {field_error("dockerfile")}
                                        </div>
                                        <div>
                                            <label for="port" class="text-sm text-slate-300">"Port"</label>
                                            <input id="port" name="port" inputmode="numeric" value=app.port.map(|p| p.to_string()).unwrap_or_default() class=INPUT />
                                            {field_error("port")}
                                        </div>
                                    </div>
                                    <fieldset class="rounded border border-slate-800 p-3">
                                        <legend class="px-1 text-sm text-slate-300">"Environment variables"</legend>
                                        <p class="text-xs text-slate-400">"Values are write-only: they are stored and passed to the container, never shown again."</p>
                                        <ul class="mt-2 flex flex-wrap gap-2 text-xs" aria-label="Variables set">
                                            {if app.env_keys.is_empty() {
                                                view! { <li class="text-slate-500">"none"</li> }.into_any()
                                            } else {
                                                app.env_keys.iter().map(|k| view! {
                                                    <li class="rounded bg-slate-800 px-2 py-1 font-mono" data-env-key=k.clone()>{format!("{k}=••••••")}</li>
                                                }).collect_view().into_any()
                                            }}
                                        </ul>
                                        <label for="env_set" class="mt-3 block text-sm text-slate-300">"Add or change (NAME=value per line)"</label>
                                        <textarea id="env_set" name="env_set" rows="3" placeholder="GREETING=hi" autocomplete="off" class=INPUT></textarea>
                                        {field_error("env_set")}
                                        <label for="env_remove" class="mt-3 block text-sm text-slate-300">"Remove (names, separated by spaces)"</label>
                                        <input id="env_remove" name="env_remove" autocomplete="off" class=INPUT />
                                    </fieldset>
                                    {other_error}
                                    {saved}
                                    <button type="submit" class=BUTTON>"Save settings"</button>
                                </ActionForm>
                            </section>
                            <h2 class="mt-8 text-xl font-semibold">"Deployments"</h2>
                            {if view.deployments.is_empty() {
                                view! { <p class="mt-2 text-slate-400">"No deployments yet."</p> }.into_any()
                            } else {
                                view! {
                                    <table class="mt-2 w-full text-left text-sm">
                                        <thead class="text-slate-400">
                                            <tr><th class="py-1">"#"</th><th>"Status"</th><th>"Commit"</th><th>"Duration"</th><th>"When"</th><th><span class="sr-only">"Actions"</span></th></tr>
                                        </thead>
                                        <tbody>
                                            {view.deployments.into_iter().map(|d| {
                                                let can_redeploy = d.status == protocol::Status::Success && d.image.is_some();
                                                view! {
                                                <tr class="border-t border-slate-800" data-deployment=d.id>
                                                    <td class="py-1"><A href=format!("/deployments/{}", d.id) attr:class="text-sky-300 hover:underline">{d.id}</A></td>
                                                    <td><StatusBadge status=d.status /></td>
                                                    <td class="font-mono">{d.commit.map(|c| c.chars().take(10).collect::<String>()).unwrap_or_default()}</td>
                                                    <td>{d.duration.map(super::seconds_text).unwrap_or_default()}</td>
                                                    <td class="text-slate-400"><time datetime=d.created_at.clone()>{when(&d.created_at)}</time></td>
                                                    <td class="text-right">
                                                        {can_redeploy.then(|| view! {
                                                            <ActionForm action=redeploy>
                                                                <input type="hidden" name="id" value=d.id />
                                                                <button type="submit" aria-label=format!("Redeploy #{}", d.id) class="rounded border border-slate-700 px-2 py-0.5 text-xs text-slate-200 hover:bg-slate-800">
                                                                    "Redeploy"
                                                                </button>
                                                            </ActionForm>
                                                        })}
                                                    </td>
                                                </tr>
                                            }}).collect_view()}
                                        </tbody>
                                    </table>
                                }.into_any()
                            }}
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </Suspense>
    }
}
