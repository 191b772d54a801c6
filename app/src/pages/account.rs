//! Signing in and out, the first-visit admin account, the account's password and
//! sessions, and API tokens.
//!
//! The account forms are plain HTML forms posting to the server's `/auth/*` handlers, so
//! they work before (and without) the WebAssembly. What went wrong comes back in the query
//! string as a [`FormProblem`] key, and the page shows that problem's own message: a link
//! cannot make the page show text of its choosing.

use super::{BUTTON, ErrorNote, INPUT, error_text, when};
use crate::api::{NewToken, RevokeToken, current_user, list_tokens, setup_allowed};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use protocol::ApiToken;

/// What an account form can go wrong with: its key travels in `?error=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormProblem {
    Credentials,
    Throttled,
    SetupCode,
    Confirm,
    Username,
    Password,
    CurrentPassword,
    Failed,
}

impl FormProblem {
    const ALL: [FormProblem; 8] = [
        FormProblem::Credentials,
        FormProblem::Throttled,
        FormProblem::SetupCode,
        FormProblem::Confirm,
        FormProblem::Username,
        FormProblem::Password,
        FormProblem::CurrentPassword,
        FormProblem::Failed,
    ];

    pub fn key(self) -> &'static str {
        match self {
            FormProblem::Credentials => "credentials",
            FormProblem::Throttled => "throttled",
            FormProblem::SetupCode => "code",
            FormProblem::Confirm => "confirm",
            FormProblem::Username => "username",
            FormProblem::Password => "password",
            FormProblem::CurrentPassword => "current_password",
            FormProblem::Failed => "failed",
        }
    }

    /// The problem a key names; unknown keys name none (and show nothing).
    pub fn from_key(key: &str) -> Option<FormProblem> {
        FormProblem::ALL.into_iter().find(|p| p.key() == key)
    }

    pub fn message(self) -> &'static str {
        match self {
            FormProblem::Credentials => "wrong username or password",
            FormProblem::Throttled => "too many attempts: wait a little, then try again",
            FormProblem::SetupCode => {
                "the setup code is missing or wrong: open the setup link that Slipway printed when it started"
            }
            FormProblem::Confirm => "confirm: the passwords differ",
            FormProblem::Username => "username: must be 1 to 64 letters, digits, '.', '_' or '-'",
            FormProblem::Password => "password: must be 10 characters to 1024 bytes long",
            FormProblem::CurrentPassword => "current password: that is not your current password",
            FormProblem::Failed => "that did not work: the server log has the details",
        }
    }
}

/// The message of the `?error=` key, if it is one of ours.
fn form_problem() -> impl Fn() -> Option<String> + Copy + Send + Sync + 'static {
    let error = query_param("error");
    move || {
        error()
            .and_then(|key| FormProblem::from_key(&key))
            .map(|p| p.message().to_owned())
    }
}

fn query_param(name: &'static str) -> impl Fn() -> Option<String> + Copy + Send + Sync + 'static {
    let query = use_query_map();
    move || query.read().get(name).filter(|v| !v.is_empty())
}

/// A labelled password input; `new` ones ask for 10 characters or more.
#[component]
fn PasswordField(id: &'static str, label: &'static str, new: bool) -> impl IntoView {
    let autocomplete = if new {
        "new-password"
    } else {
        "current-password"
    };
    view! {
        <div>
            <label for=id class="text-sm text-slate-300">{label}</label>
            <input id=id name=id type="password" required minlength=new.then_some("10")
                autocomplete=autocomplete class=INPUT />
        </div>
    }
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
    let error = form_problem();
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
                <PasswordField id="password" label="Password" new=false />
                {move || view! { <FormError message=error() /> }}
                <button type="submit" class=BUTTON>"Sign in"</button>
            </form>
        </section>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let error = form_problem();
    let username = query_param("username");
    let code = query_param("code");
    // Only the setup link printed at start opens the form: a page that rebinds its name
    // to this server, or a stranger behind a proxy, cannot know the code.
    let allowed = Resource::new(code, |code| setup_allowed(code.unwrap_or_default()));
    view! {
        <section aria-labelledby="setup-heading" class="mx-auto mt-10 max-w-sm">
            <h1 id="setup-heading" class="text-2xl font-semibold">"Create the admin account"</h1>
            {move || {
                let (error, username, code) = (error(), username(), code());
                Suspend::new(async move {
                    if allowed.await.unwrap_or(false) {
                        view! {
                            <p class="mt-2 text-sm text-slate-400">
                                "Slipway has no account yet. The first one is the administrator's."
                            </p>
                            <form method="post" action="/auth/setup" class="mt-6 space-y-4" aria-label="Create the admin account">
                                <input type="hidden" name="code" value=code.unwrap_or_default() />
                                <div>
                                    <label for="username" class="text-sm text-slate-300">"Username"</label>
                                    <input id="username" name="username" required autocomplete="username"
                                        value=username.unwrap_or_else(|| "admin".into()) class=INPUT />
                                </div>
                                <PasswordField id="password" label="Password (10 characters or more)" new=true />
                                <PasswordField id="confirm" label="Password again" new=true />
                                <FormError message=error />
                                <button type="submit" class=BUTTON>"Create account"</button>
                            </form>
                        }
                        .into_any()
                    } else {
                        view! {
                            <p class="mt-2 text-sm text-slate-300" data-testid="setup-needs-code">
                                "Slipway has no account yet. To create the administrator's, open the setup link that \
                                 Slipway printed when it started (the code is also in the file setup-code in its data \
                                 directory, readable only by the user Slipway runs as)."
                            </p>
                            <FormError message=error.or_else(|| code.is_some().then(|| FormProblem::SetupCode.message().to_owned())) />
                        }
                        .into_any()
                    }
                })
            }}
        </section>
    }
}

/// `/settings/account`: a new password, and signing out every session.
#[component]
pub fn AccountPage() -> impl IntoView {
    let error = form_problem();
    let done = query_param("done");
    let done = move || {
        done().and_then(|d| match d.as_str() {
            "password" => Some("Password changed. Every other session was signed out."),
            _ => None,
        })
    };
    view! {
        <section aria-labelledby="account-heading" class="max-w-md">
            <h1 id="account-heading" class="text-2xl font-semibold">"Account"</h1>
            {move || done().map(|text| view! {
                <p role="status" class="mt-4 rounded border border-emerald-800 bg-emerald-950/40 px-3 py-2 text-sm text-emerald-200">{text}</p>
            })}
            <h2 class="mt-6 text-lg font-medium">"Change the password"</h2>
            <form method="post" action="/auth/password" class="mt-3 space-y-4" aria-label="Change the password">
                <PasswordField id="current_password" label="Current password" new=false />
                <PasswordField id="new_password" label="New password (10 characters or more)" new=true />
                <PasswordField id="confirm" label="New password again" new=true />
                {move || view! { <FormError message=error() /> }}
                <button type="submit" class=BUTTON>"Change password"</button>
            </form>
            <h2 class="mt-8 text-lg font-medium">"Sessions"</h2>
            <p class="mt-1 text-sm text-slate-400">
                "Signs out every browser signed in to this account, this one included. API tokens keep working."
            </p>
            <form method="post" action="/auth/logout-everywhere" class="mt-3">
                <button type="submit" class="rounded border border-rose-800 px-3 py-2 text-sm text-rose-200 hover:bg-rose-950">
                    "Sign out everywhere"
                </button>
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
                    <div class="ml-auto flex flex-wrap items-center justify-end gap-x-3 gap-y-1 text-sm">
                        <span class="text-slate-400" data-testid="user">{name}</span>
                        <a href="/settings/account" class="text-sky-300 hover:underline">"Account"</a>
                        <a href="/settings/tokens" class="text-sky-300 hover:underline">"API tokens"</a>
                        <a href="/settings/notifications" class="text-sky-300 hover:underline">"Notifications"</a>
                        <a href="/settings/nodes" class="text-sky-300 hover:underline">"Nodes"</a>
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

#[cfg(test)]
mod tests {
    use super::FormProblem;

    #[test]
    fn problem_keys_round_trip_and_unknown_ones_show_nothing() {
        for problem in FormProblem::ALL {
            assert_eq!(FormProblem::from_key(problem.key()), Some(problem));
        }
        assert_eq!(FormProblem::from_key("<script>alert(1)</script>"), None);
        assert_eq!(FormProblem::from_key("wrong username or password"), None);
    }
}
