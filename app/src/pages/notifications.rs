//! `/settings/notifications`: where Slipway posts when a deployment ends (signed JSON or
//! a Slack-compatible message), as `POST /api/notifications` does.

use super::{BUTTON, ErrorNote, INPUT, error_text, when};
use crate::api::{AddNotification, DeleteNotification, list_notifications};
use leptos::prelude::*;
use protocol::{Notification, NotificationFormat};

#[component]
pub fn NotificationsPage() -> impl IntoView {
    let list = Resource::new(|| (), |_| list_notifications());
    view! {
        <section aria-labelledby="notifications-heading" class="max-w-3xl">
            <h1 id="notifications-heading" class="text-2xl font-semibold">"Notifications"</h1>
            <p class="mt-2 text-sm text-slate-400">
                "When a deployment ends, Slipway posts to each URL listening for its status: JSON signed with "
                <code>"X-Slipway-Signature: sha256=<HMAC-SHA256 of the body>"</code>
                ", or a Slack-compatible message. A receiver that fails is tried again for an hour."
            </p>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(list) => view! { <Notifications list /> }.into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </section>
    }
}

#[island]
fn Notifications(list: Vec<Notification>) -> impl IntoView {
    let add = ServerAction::<AddNotification>::new();
    let remove = ServerAction::<DeleteNotification>::new();
    let (list, set_list) = signal(list);
    Effect::new(move |_| {
        if add.version().get() + remove.version().get() > 0 {
            leptos::task::spawn_local(async move {
                if let Ok(fresh) = list_notifications().await {
                    set_list.set(fresh);
                }
            });
        }
    });
    let created = move || add.value().get().and_then(|r| r.ok());
    let problem = move || {
        add.value()
            .get()
            .and_then(|r| r.err())
            .map(|e| error_text(&e))
    };
    let check = "mr-4 inline-flex items-center gap-1 text-sm text-slate-300";
    view! {
        <ActionForm action=add attr:class="mt-6 space-y-3" attr:aria-label="Add a notification">
            <div>
                <label for="notification-url" class="text-sm text-slate-300">"URL"</label>
                <input id="notification-url" name="url" required placeholder="https://hooks.example.com/slipway" class=INPUT />
            </div>
            <fieldset>
                <legend class="text-sm text-slate-300">"When a deployment"</legend>
                <label class=check><input type="checkbox" name="success" checked /> "succeeds"</label>
                <label class=check><input type="checkbox" name="failed" checked /> "fails"</label>
                <label class=check><input type="checkbox" name="cancelled" /> "is cancelled"</label>
            </fieldset>
            <div>
                <label for="notification-format" class="text-sm text-slate-300">"Format"</label>
                <select id="notification-format" name="format" class=INPUT>
                    <option value="json">"JSON, signed"</option>
                    <option value="slack">"Slack"</option>
                </select>
            </div>
            <button type="submit" class=BUTTON>"Add notification"</button>
        </ActionForm>
        {move || problem().map(|message| view! { <div class="mt-3"><ErrorNote message /></div> })}
        {move || created().map(|c| view! {
            <div class="mt-4 rounded border border-emerald-800 bg-emerald-950/40 p-3 text-sm" role="status">
                <p class="text-emerald-200">"Notification added. Its signing secret, shown only now:"</p>
                <code data-testid="notification-secret" class="mt-2 block break-all rounded bg-slate-900 px-2 py-1 text-slate-100">{c.secret}</code>
            </div>
        })}
        <ul class="mt-6 divide-y divide-slate-800 rounded border border-slate-800" aria-label="Notifications">
            <For each=move || list.get() key=|n| n.id let:n>
                <li class="flex flex-wrap items-center gap-3 px-4 py-2 text-sm" data-notification=n.id>
                    <span class="break-all text-slate-200">{n.url.clone()}</span>
                    <span class="text-slate-400">{n.events.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")}</span>
                    <span class="text-slate-500">{match n.format { NotificationFormat::Json => "JSON", NotificationFormat::Slack => "Slack" }}</span>
                    <span class="text-xs text-slate-500">{when(&n.created_at)}</span>
                    <ActionForm action=remove attr:class="ml-auto">
                        <input type="hidden" name="id" value=n.id />
                        <button type="submit" class="rounded border border-rose-700 px-2 py-0.5 text-xs text-rose-200 hover:bg-rose-950">"Remove"</button>
                    </ActionForm>
                </li>
            </For>
        </ul>
    }
}
