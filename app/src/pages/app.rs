//! `/apps/{id}`: the app, its Deploy button and its deployment history.

use super::{ErrorNote, StatusBadge, error_text};
use crate::api::{Deploy, get_app};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

#[component]
pub fn AppPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let deploy = ServerAction::<Deploy>::new();
    let data = Resource::new(
        move || (id(), deploy.version().get()),
        |(id, _)| async move {
            match id {
                Some(id) => get_app(id).await,
                None => Err(ServerFnError::new("no such app")),
            }
        },
    );
    // With WebAssembly loaded, go to the new deployment's monitor.
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(deployment)) = deploy.value().get() {
            navigate(
                &format!("/deployments/{}", deployment.id),
                Default::default(),
            );
        }
    });
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
                            <dl class="mt-4 grid grid-cols-1 gap-x-6 gap-y-2 text-sm sm:grid-cols-2">
                                <div><dt class="text-slate-400">"Repository"</dt><dd class="break-all">{app.repo_url.clone()}</dd></div>
                                <div><dt class="text-slate-400">"Branch"</dt><dd>{app.branch.clone()}</dd></div>
                                <div><dt class="text-slate-400">"Dockerfile"</dt><dd>{app.dockerfile.clone()}</dd></div>
                                <div><dt class="text-slate-400">"Port"</dt><dd>{app.port.map(|p| p.to_string()).unwrap_or_else(|| "none".into())}</dd></div>
                                <div class="sm:col-span-2"><dt class="text-slate-400">"Environment"</dt>
                                    <dd>{if app.env_keys.is_empty() { "none".to_owned() } else { app.env_keys.join(", ") }}</dd></div>
                            </dl>
                            <h2 class="mt-8 text-xl font-semibold">"Deployments"</h2>
                            {if view.deployments.is_empty() {
                                view! { <p class="mt-2 text-slate-400">"No deployments yet."</p> }.into_any()
                            } else {
                                view! {
                                    <table class="mt-2 w-full text-left text-sm">
                                        <thead class="text-slate-400">
                                            <tr><th class="py-1">"#"</th><th>"Status"</th><th>"Commit"</th><th>"Duration"</th><th>"Created"</th></tr>
                                        </thead>
                                        <tbody>
                                            {view.deployments.into_iter().map(|d| view! {
                                                <tr class="border-t border-slate-800">
                                                    <td class="py-1"><A href=format!("/deployments/{}", d.id) attr:class="text-sky-300 hover:underline">{d.id}</A></td>
                                                    <td><StatusBadge status=d.status /></td>
                                                    <td class="font-mono">{d.commit.map(|c| c.chars().take(10).collect::<String>()).unwrap_or_default()}</td>
                                                    <td>{d.duration.map(|s| format!("{s:.1} s")).unwrap_or_default()}</td>
                                                    <td class="text-slate-400">{d.created_at}</td>
                                                </tr>
                                            }).collect_view()}
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
