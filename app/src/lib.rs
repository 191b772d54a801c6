//! Slipway's dashboard, rendered on the server; only its interactive parts (islands: the
//! live monitor, the forms) are hydrated in the browser.
//!
//! - [`shell`] and [`App`]: the HTML document and the router, which runs on the server
//!   only: links are plain page loads, and the WebAssembly carries no router and none of
//!   the pages' static markup.
//! - [`api`]: server functions; on the server they call the engine, in the browser they
//!   are HTTP calls.
//! - [`monitor`]: `use_deployment_monitor`, the reactive hook behind the live monitor; it
//!   owns the deployment's lines, filed by `seq` in a [`log_book::LogBook`].
//! - [`feed`]: `use_event_feed`, the installation's event feed behind the live lists.
//! - [`pages`]: the apps list, the app page and the deployment monitor.

pub mod api;
pub mod feed;
pub mod log_book;
pub mod monitor;
pub mod pages;

use leptos::prelude::*;
use leptos_router::SsrMode;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

pub use monitor::{Connection, DeploymentMonitor, use_deployment_monitor};

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let stylesheet = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="dark light" />
                <link rel="icon" href="/favicon.ico" />
                <AutoReload options=options.clone() />
                <HydrationScripts options islands=true />
                <title>"Slipway"</title>
                <link rel="stylesheet" id="slipway-css" href=stylesheet />
            </head>
            <body class="min-h-screen bg-slate-950 text-slate-100 antialiased">
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <header class="border-b border-slate-800 bg-slate-900/80">
                <nav class="mx-auto flex max-w-5xl flex-wrap items-center gap-x-6 gap-y-2 px-4 py-3">
                    <A href="/" attr:class="text-lg font-semibold tracking-tight text-sky-300">
                        "Slipway"
                    </A>
                    <span class="hidden text-sm text-slate-400 sm:inline">"deploy from git, watch it live"</span>
                    <pages::account::AccountMenu />
                </nav>
            </header>
            <main class="mx-auto max-w-5xl px-4 py-6">
                <Routes fallback=|| view! { <p class="text-slate-400">"Page not found."</p> }>
                    <Route path=path!("/") view=pages::apps::AppsPage ssr=SsrMode::Async />
                    <Route path=path!("/apps/:id") view=pages::app::AppPage ssr=SsrMode::Async />
                    <Route path=path!("/apps/:id/logs") view=pages::app_logs::AppLogsPage ssr=SsrMode::Async />
                    <Route path=path!("/deployments/:id") view=pages::deployment::DeploymentPage ssr=SsrMode::Async />
                    <Route path=path!("/login") view=pages::account::LoginPage ssr=SsrMode::Async />
                    <Route path=path!("/setup") view=pages::account::SetupPage ssr=SsrMode::Async />
                    <Route path=path!("/settings/tokens") view=pages::account::TokensPage ssr=SsrMode::Async />
                    <Route path=path!("/settings/notifications") view=pages::notifications::NotificationsPage ssr=SsrMode::Async />
                    <Route path=path!("/settings/account") view=pages::account::AccountPage ssr=SsrMode::Async />
                    <Route path=path!("/settings/nodes") view=pages::nodes::NodesPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
