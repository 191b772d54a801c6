//! `/settings/nodes`: the nodes of the cluster, as `GET /api/nodes` shows them (one node
//! on SQLite). Rendered on the server: a reload shows the newest heartbeats.

use super::{ErrorNote, error_text};
use crate::api::list_nodes;
use leptos::prelude::*;
use protocol::NodeInfo;

#[component]
pub fn NodesPage() -> impl IntoView {
    let nodes = Resource::new(|| (), |_| list_nodes());
    view! {
        <section aria-labelledby="nodes-heading" class="max-w-3xl">
            <h1 id="nodes-heading" class="text-2xl font-semibold">"Nodes"</h1>
            <p class="mt-2 text-sm text-slate-400">
                "Every Slipway server on this database. A node unheard for longer than its lease is lost: "
                "another node ends its deployments."
            </p>
            {move || Suspend::new(async move {
                match nodes.await {
                    Ok(nodes) => view! { <NodeTable nodes /> }.into_any(),
                    Err(e) => view! { <ErrorNote message=error_text(&e) /> }.into_any(),
                }
            })}
        </section>
    }
}

#[component]
fn NodeTable(nodes: Vec<NodeInfo>) -> impl IntoView {
    let cell = "px-3 py-2 text-left";
    view! {
        <div class="mt-6 overflow-x-auto rounded border border-slate-800">
            <table class="w-full text-sm" aria-label="Nodes">
                <thead class="bg-slate-900 text-slate-400">
                    <tr>
                        <th scope="col" class=cell>"Name"</th>
                        <th scope="col" class=cell>"Address"</th>
                        <th scope="col" class=cell>"State"</th>
                        <th scope="col" class=cell>"Running"</th>
                        <th scope="col" class=cell>"Last seen"</th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-800">
                    {nodes.into_iter().map(|node| {
                        let (state, class) = if node.alive {
                            ("alive", "rounded px-2 py-0.5 text-xs font-medium bg-emerald-500/15 text-emerald-300")
                        } else {
                            ("lost", "rounded px-2 py-0.5 text-xs font-medium bg-rose-500/15 text-rose-300")
                        };
                        view! {
                            <tr data-testid="node">
                                <td class=cell>{node.name}</td>
                                <td class=cell><code>{node.addr}</code></td>
                                <td class=cell><span class=class>{state}</span></td>
                                <td class=cell>{node.running}</td>
                                <td class=cell><time datetime=node.last_seen.clone()>{node.last_seen.clone()}</time></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
