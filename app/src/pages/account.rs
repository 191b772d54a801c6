//! Signing in and out, the first-visit admin account, and API tokens.
//!
//! The sign-in forms are plain HTML forms posting to the server's `/auth/*` handlers, so
//! they work before (and without) the WebAssembly; errors come back in the query string.

use super::{BUTTON, ErrorNote, INPUT, error_text, when};
use crate::api::{NewToken, RevokeToken, current_user, list_tokens};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use protocol::ApiToken;

fn query_param(name: &'static str) -> impl Fn() -> Option<String> {
    let query = use_query_map();
    move || query.read().get(name).filter(|v| !v.is_empty())
}

#[component]
fn FormError(message: Option<String>) -> impl IntoView {
    message.map(|message| {
        view! {
            <p role="alert" id="form-error" class="rounded border border-rose-800 bg-rose-950/50 px-3 py-2 text-sm text-rose-200">
                {message}
            </p>
        }
    })
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let error = query_param("error");
    let next = query_param("next");
    view! {
        <section aria-labelledby="login-heading" class="mx-auto mt-10 max-w-sm">
            <h1 id="login-heading" class="text-2xl font-semibold">"Sign in"</h1>
            <form method="post" action="/auth/login" class="mt-6 space-y-4" aria-label="Sign in">
                <input type="hidden" name="next" value=move || next().unwrap_or_else(|| "/".into()) />
                <div>
                    <label for="username" class="text-sm text-slate-300">"Username"</label>
                    <input id="username" name="username" required autocomplete="username" class=INPUT />
                </div>
                <div>
                    <label for="password" class="text-sm text-slate-300">"Password"</label>
                    <input id="password" name="password" type="password" required autocomplete="current-password" class=INPUT />
                </div>
                {move || view! { <FormError message=error() /> }}
                <button type="submit" class=BUTTON>"Sign in"</button>
            </form>
        </section>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let error = query_param("error");
    let username = query_param("username");
    view! {
        <section aria-labelledby="setup-heading" class="mx-auto mt-10 max-w-sm">
            <h1 id="setup-heading" class="text-2xl font-semibold">"Create the admin account"</h1>
            <p class="mt-2 text-sm text-slate-400">
                "Slipway has no account yet. The first one is the administrator's."
            </p>
            <form method="post" action="/auth/setup" class="mt-6 space-y-4" aria-label="Create the admin account">
                <div>
                    <label for="username" class="text-sm text-slate-300">"Username"</label>
                    <input id="username" name="username" required autocomplete="username"
                        value=move || username().unwrap_or_else(|| "admin".into()) class=INPUT />
                </div>
                <div>
                    <label for="password" class="text-sm text-slate-300">"Password (10 characters or more)"</label>
                    <input id="password" name="password" type="password" required minlength="10" autocomplete="new-password" class=INPUT />
                </div>
                <div>
                    <label for="confirm" class="text-sm text-slate-300">"Password again"</label>
                    <input id="confirm" name="confirm" type="password" required minlength="10" autocomplete="new-password" class=INPUT />
                </div>
                {move || view! { <FormError message=error() /> }}
                <button type="submit" class=BUTTON>"Create account"</button>
            </form>
        </section>
    }
}

/// The header's account corner: who is signed in, the tokens page, sign out.
#[component]
pub fn AccountMenu() -> impl IntoView {
    let user = Resource::new(|| (), |_| current_user());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                user.await.ok().flatten().map(|name| view! {
                    <div class="ml-auto flex items-center gap-3 text-sm">
                        <span class="text-slate-400" data-testid="user">{name}</span>
                        <a href="/settings/tokens" class="text-sky-300 hover:underline">"API tokens"</a>
                        <a href="/settings/notifications" class="text-sky-300 hover:underline">"Notifications"</a>
                        <form method="post" action="/auth/logout">
                            <button type="submit" class="rounded border border-slate-700 px-2 py-1 text-slate-200 hover:bg-slate-800">
                                "Sign out"
                            </button>
                        </form>
                    </div>
                })
            })}
        </Suspense>
    }
}

#[component]
pub fn TokensPage() -> impl IntoView {
    let tokens = Resource::new(|| (), |_| list_tokens());
    view! {
        <section aria-labelledby="tokens-heading" class="max-w-3xl">
            <h1 id="tokens-heading" class="text-2xl font-semibold">"API tokens"</h1>
            <p class="mt-2 text-sm text-slate-400">
                "Scripts and the CLI send a token as " <code>"Authorization: Bearer <token>"</code>
                ". Only a hash is stored: a token is shown once, when it is created."
            </p>
            {move || Suspend::new(async move {
                    match tokens.await {
                        Ok(tokens) => view! { <Tokens tokens /> }.into_any(),
                        Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                    }
                })}
        </section>
    }
}

/// Creating and revoking tokens (an island): the list starts as the server rendered it and
/// is asked for again after each change.
#[island]
fn Tokens(tokens: Vec<ApiToken>) -> impl IntoView {
    let create = ServerAction::<NewToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let (tokens, set_tokens) = signal(tokens);
    Effect::new(move |_| {
        let changes = create.version().get() + revoke.version().get();
        if changes > 0 {
            leptos::task::spawn_local(async move {
                if let Ok(list) = list_tokens().await {
                    set_tokens.set(list);
                }
            });
        }
    });
    let created = move || create.value().get().and_then(|r| r.ok());
    let problem = move || {
        create
            .value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text(&e))
    };
    view! {
        <ActionForm action=create attr:class="mt-6 flex flex-wrap items-end gap-3" attr:aria-label="Create a token">
            <div class="grow">
                <label for="token-name" class="text-sm text-slate-300">"Name"</label>
                <input id="token-name" name="name" required placeholder="ci" class=INPUT />
            </div>
            <button type="submit" class=BUTTON>"Create token"</button>
        </ActionForm>
        {move || problem().map(|message| view! { <div class="mt-3"><ErrorNote message /></div> })}
        {move || created().map(|c| view! {
            <div class="mt-4 rounded border border-emerald-800 bg-emerald-950/40 p-3 text-sm" role="status">
                <p class="text-emerald-200">{format!("Token \u{201c}{}\u{201d} created. Copy it now: it is not shown again.", c.info.name)}</p>
                <code data-testid="new-token" class="mt-2 block break-all rounded bg-slate-900 px-2 py-1 text-slate-100">{c.token}</code>
            </div>
        })}
        {move || {
            let list = tokens.get();
            if list.is_empty() {
                view! { <p class="mt-6 text-slate-400">"No tokens yet."</p> }.into_any()
            } else {
                view! {
                    <div class="mt-6 overflow-x-auto">
                    <table class="w-full text-left text-sm">
                        <thead class="text-slate-400">
                            <tr><th class="py-2">"Name"</th><th>"Starts with"</th><th>"Created"</th><th><span class="sr-only">"Actions"</span></th></tr>
                        </thead>
                        <tbody class="divide-y divide-slate-800">
                            {list.into_iter().map(|t| {
                                let label = format!("Revoke {}", t.name);
                                view! {
                                    <tr>
                                        <td class="py-2 pr-2">{t.name.clone()}</td>
                                        <td class="pr-2"><code>{format!("{}…", t.prefix)}</code></td>
                                        <td class="pr-2 text-slate-400">{format!("{} by {}", when(&t.created_at), t.created_by)}</td>
                                        <td class="text-right">
                                            <ActionForm action=revoke>
                                                <input type="hidden" name="id" value=t.id />
                                                <button type="submit" aria-label=label class="rounded border border-rose-800 px-2 py-1 text-rose-200 hover:bg-rose-950">
                                                    "Revoke"
                                                </button>
                                            </ActionForm>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                }.into_any()
            }
        }}
    }
}
