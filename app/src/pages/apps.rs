//! `/`: the apps, and a form to add one.

use super::{ErrorNote, INPUT, StatusBadge, age, error_text, field_error, go_to, precheck, when};
use crate::api::{AppError, CreateApp, list_apps};
use leptos::prelude::*;

/// The list is rendered on the server (with each last deployment's age as of the
/// request); only the form is an island.
#[component]
pub fn AppsPage() -> impl IntoView {
    let apps = Resource::new(|| (), |_| list_apps());
    view! {
        <section aria-labelledby="apps-heading">
            <h1 id="apps-heading" class="text-2xl font-semibold">"Apps"</h1>
            <Suspense fallback=|| view! { <p class="mt-4 text-slate-400">"Loading apps…"</p> }>
                {move || Suspend::new(async move {
                    match apps.await {
                        Ok(apps) if apps.is_empty() => view! {
                            <p class="mt-4 text-slate-400">"No apps yet. Add one below."</p>
                        }.into_any(),
                        Ok(apps) => view! {
                            <ul class="mt-4 divide-y divide-slate-800 rounded border border-slate-800">
                                {apps.into_iter().map(|app| view! {
                                    <li class="flex flex-wrap items-center gap-x-3 gap-y-1 px-4 py-3" data-app=app.name.clone()>
                                        <a href=format!("/apps/{}", app.id) class="font-medium text-sky-300 hover:underline">
                                            {app.name.clone()}
                                        </a>
                                        <span class="min-w-0 break-all text-sm text-slate-400">{format!("{} · {}", app.repo_url, app.branch)}</span>
                                        {app.last_deployment.map(|d| view! {
                                            <a href=format!("/deployments/{}", d.id) class="flex items-center gap-2" aria-label=format!("Last deployment: {}", d.status.as_str())>
                                                <StatusBadge status=d.status />
                                            </a>
                                            <time class="text-xs text-slate-500" datetime=d.created_at.clone() title=when(&d.created_at) data-testid="age">
                                                {age(&d.created_at)}
                                            </time>
                                        })}
                                        {app.url.map(|url| view! {
                                            <a href=url.clone() class="ml-auto text-sm text-emerald-300 hover:underline" data-testid="public-url">{url.clone()}</a>
                                        })}
                                        {(!app.domains.is_empty()).then(|| view! {
                                            <span class="basis-full text-xs text-slate-500">{format!("also {}", app.domains.join(", "))}</span>
                                        })}
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
        <AddAppForm />
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
