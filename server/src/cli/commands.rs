//! What each client command does.

use super::client::Client;
use super::credentials::{self, Saved, Target, TokenFrom};
use super::follow::{Feed, Sink, follow};
use super::output::{Progress, Stdout, describe};
use super::{AppsAction, AppsArgs, CliError, Command, Outcome};
use engine::config::Secret;
use protocol::{App, Deployment, DeploymentId, LogLine, LogPage, NewApp, Seq, StatusData};
use std::io::{IsTerminal, Write};

/// Lines asked per `GET /api/deployments/{id}/lines` (the server's maximum).
const PAGE_LINES: Seq = 5000;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The server and token from the environment and the saved credentials.
pub fn target() -> Result<Target, CliError> {
    let saved = match credentials::path(&env) {
        Some(path) => credentials::load(&path)?.map(|saved| (path, saved)),
        None => None,
    };
    credentials::resolve(&env, saved)
}

/// Runs every command but `login` and `serve`.
pub async fn execute(command: Command, target: Target) -> Result<Outcome, CliError> {
    let client = Client::new(target)?;
    match command {
        Command::Serve | Command::Login { .. } => Err(CliError::Usage(
            "`serve` and `login` are not client requests".into(),
        )),
        Command::Apps(AppsArgs { json, action: None }) => apps(&client, json).await,
        Command::Apps(AppsArgs {
            action:
                Some(AppsAction::Create {
                    name,
                    repo,
                    branch,
                    dockerfile,
                    port,
                    env,
                    json,
                }),
            ..
        }) => {
            let new = NewApp {
                name,
                repo_url: repo,
                branch,
                dockerfile,
                port: port.map(i64::from),
                env: env.into_iter().collect(),
                ..NewApp::default()
            };
            create_app(&client, &new, json).await
        }
        Command::Deploy {
            app,
            commit,
            follow,
        } => deploy(&client, &app, commit, follow).await,
        Command::Logs {
            deployment,
            follow: true,
            since,
        } => watch(&client, deployment, since.unwrap_or(0)).await,
        Command::Logs {
            deployment,
            follow: false,
            since,
        } => logs(&client, deployment, since).await,
        Command::Status { deployment, json } => status(&client, deployment, json).await,
        Command::Cancel { deployment } => cancel(&client, deployment).await,
        Command::Rollback { app, to, follow } => rollback(&client, &app, to, follow).await,
        Command::AppLogs { app, follow } => app_logs(&client, &app, follow).await,
    }
}

/// `slipway login`: checks the token against the server, then saves both. Runs the one
/// request on `runtime` and writes the file outside it.
pub fn login(
    runtime: &tokio::runtime::Runtime,
    url: Option<String>,
    token: String,
) -> Result<Outcome, CliError> {
    let url = url
        .or_else(|| env("SLIPWAY_URL").filter(|url| !url.trim().is_empty()))
        .unwrap_or_else(|| credentials::DEFAULT_URL.to_owned());
    let url =
        credentials::normalize_url(&url).map_err(|e| CliError::Usage(format!("--url: {e}")))?;
    let token = if token == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::Usage(format!("cannot read the token from stdin: {e}")))?;
        line
    } else {
        token
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(CliError::Usage(
            "--token is empty: copy a token from the dashboard's API tokens page".into(),
        ));
    }
    let path = credentials::path(&env).ok_or_else(|| {
        CliError::Usage(
            "cannot tell where to save the credentials: set HOME or XDG_CONFIG_HOME".into(),
        )
    })?;
    let client = Client::new(Target {
        url: url.clone(),
        token: Some(Secret(token.clone())),
        token_from: TokenFrom::Login,
    })?;
    let apps: Vec<App> = runtime.block_on(client.get("/api/apps"))?;
    credentials::save(
        &path,
        &Saved {
            url: url.clone(),
            token,
        },
    )?;
    println!(
        "Logged in to {url} ({} apps). Saved in {}, readable only by you.",
        apps.len(),
        path.display()
    );
    if env("SLIPWAY_TOKEN").is_some_and(|token| !token.trim().is_empty()) {
        eprintln!("note: SLIPWAY_TOKEN is set, and wins over the saved token while it is.");
    }
    Ok(Outcome::Done)
}

async fn apps(client: &Client, json: bool) -> Result<Outcome, CliError> {
    if json {
        let apps: serde_json::Value = client.get("/api/apps").await?;
        print_json(&apps)?;
        return Ok(Outcome::Done);
    }
    let apps: Vec<App> = client.get("/api/apps").await?;
    if apps.is_empty() {
        eprintln!("No apps yet: create one with `slipway apps create NAME --repo URL`.");
        return Ok(Outcome::Done);
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "ID".to_owned(),
        "STATUS".to_owned(),
        "DEPLOYMENT".to_owned(),
        "URL".to_owned(),
    ]];
    for app in &apps {
        let (status, deployment) = match &app.last_deployment {
            Some(last) => (last.status.as_str().to_owned(), last.id.to_string()),
            None => ("never deployed".to_owned(), "-".to_owned()),
        };
        rows.push([
            app.name.clone(),
            app.id.to_string(),
            status,
            deployment,
            app.url.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    print_table(&rows)?;
    Ok(Outcome::Done)
}

async fn create_app(client: &Client, new: &NewApp, json: bool) -> Result<Outcome, CliError> {
    let app: serde_json::Value = client.post("/api/apps", new).await?;
    if json {
        print_json(&app)?;
    } else {
        let id = app.get("id").map(ToString::to_string).unwrap_or_default();
        println!("Created app {} (id {id}).", new.name);
        if std::io::stderr().is_terminal() {
            eprintln!("Deploy it with `slipway deploy {} --follow`.", new.name);
        }
    }
    Ok(Outcome::Done)
}

async fn deploy(
    client: &Client,
    app: &str,
    commit: Option<String>,
    follow: bool,
) -> Result<Outcome, CliError> {
    let app = client.app(app).await?;
    let app_id = u64::try_from(app.id)
        .ok()
        .and_then(std::num::NonZeroU64::new)
        .ok_or_else(|| CliError::Protocol {
            url: client.url().to_owned(),
            what: format!("app {} has id {}, not a positive integer", app.name, app.id),
        })?;
    // PROTOCOL.md v2, "Webhooks": `POST /api/deployments` accepts a commit to build.
    let body = serde_json::to_value(protocol::NewDeployment { app_id, commit })
        .map_err(|e| CliError::Usage(format!("cannot encode the request: {e}")))?;
    let deployment: Deployment = client.post("/api/deployments", &body).await?;
    started(client, &app, &deployment, follow).await
}

async fn rollback(
    client: &Client,
    app: &str,
    to: Option<DeploymentId>,
    follow: bool,
) -> Result<Outcome, CliError> {
    let app = client.app(app).await?;
    // PROTOCOL.md, "Rollback": `deployment_id` is optional.
    let body = match to {
        Some(id) => serde_json::json!({ "deployment_id": id }),
        None => serde_json::json!({}),
    };
    let deployment: Deployment = client
        .post(&format!("/api/apps/{}/rollback", app.id), &body)
        .await?;
    started(client, &app, &deployment, follow).await
}

/// A deployment was queued: print its id, or watch it.
async fn started(
    client: &Client,
    app: &App,
    deployment: &Deployment,
    follow: bool,
) -> Result<Outcome, CliError> {
    let id = deployment.id;
    let monitor = format!("{}/deployments/{id}", client.url());
    if !follow {
        // stdout holds the id alone, for scripts: `id=$(slipway deploy hello)`.
        println!("{id}");
        if std::io::stderr().is_terminal() {
            eprintln!(
                "Deployment {id} of {} queued: `slipway logs {id} --follow` or {monitor}",
                app.name
            );
        }
        return Ok(Outcome::Done);
    }
    eprintln!("Deployment {id} of {} queued: {monitor}", app.name);
    watch(client, id, 0).await
}

/// The log on stdout and the status on stderr until the deployment ends; its status is
/// the outcome.
async fn watch(client: &Client, id: DeploymentId, since: Seq) -> Result<Outcome, CliError> {
    let progress = Progress::new(id);
    let mut out = Stdout::new(false);
    out.share_with(progress.bar());
    let mut view = DeploymentView { out, progress };
    let last = follow(client, Feed::Deployment(id), since, &mut view).await?;
    let Some(status) = last.filter(|status| status.status.is_terminal()) else {
        return Err(CliError::Protocol {
            url: client.url().to_owned(),
            what: format!("the monitor of deployment {id} ended before its terminal status"),
        });
    };
    if status.status == protocol::Status::Success {
        // Where it runs, if the server says; the outcome does not depend on it.
        if let Ok(Deployment { url: Some(url), .. }) = client
            .get::<Deployment>(&format!("/api/deployments/{id}"))
            .await
        {
            view.progress.note(&format!("Live at {url}"));
        }
    }
    Ok(Outcome::Ended(status.status))
}

struct DeploymentView {
    out: Stdout,
    progress: Progress,
}

impl Sink for DeploymentView {
    fn status(&mut self, status: &StatusData) -> Result<(), CliError> {
        // Lines before a status change reach the terminal before it.
        self.out.flush()?;
        self.progress.show(status);
        Ok(())
    }

    fn line(&mut self, line: &LogLine, _stream: Option<&str>) -> Result<(), CliError> {
        self.out.write(line.line.as_bytes())
    }

    fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush()
    }

    fn note(&mut self, text: &str) {
        self.progress.note(text);
    }
}

async fn logs(client: &Client, id: DeploymentId, since: Option<Seq>) -> Result<Outcome, CliError> {
    let mut out = Stdout::new(true);
    let Some(since) = since else {
        client
            .download(&format!("/api/deployments/{id}/logs"), &mut out)
            .await?;
        return Ok(Outcome::Done);
    };
    // The lines after `since`, a page at a time, as stored.
    let mut from = since + 1;
    loop {
        let page: LogPage = client
            .get(&format!(
                "/api/deployments/{id}/lines?from={from}&to={}",
                from + PAGE_LINES - 1
            ))
            .await?;
        for line in &page.lines {
            out.write(line.line.as_bytes())?;
        }
        out.flush()?;
        match page.lines.last() {
            Some(last) if last.seq < page.total => from = last.seq + 1,
            _ => return Ok(Outcome::Done),
        }
    }
}

async fn status(client: &Client, id: DeploymentId, json: bool) -> Result<Outcome, CliError> {
    let path = format!("/api/deployments/{id}");
    if json {
        let deployment: serde_json::Value = client.get(&path).await?;
        print_json(&deployment)?;
        return Ok(Outcome::Done);
    }
    let d: Deployment = client.get(&path).await?;
    let none = || "-".to_owned();
    let mut rows = vec![
        ("deployment", d.id.to_string()),
        ("app", d.app_id.to_string()),
        ("status", d.status.as_str().to_owned()),
        ("progress", format!("{}%", d.progress)),
        ("message", d.message.clone()),
    ];
    if !d.error_message.is_empty() {
        let stage = d.failed_stage.map(|s| s.as_str()).unwrap_or("-");
        rows.push(("failed in", stage.to_owned()));
        rows.push(("error", d.error_message.clone()));
    }
    rows.extend([
        ("commit", d.commit.clone().unwrap_or_else(none)),
        ("image", d.image.clone().unwrap_or_else(none)),
        ("url", d.url.clone().unwrap_or_else(none)),
        ("created", d.created_at.clone()),
        ("started", d.started_at.clone().unwrap_or_else(none)),
        ("finished", d.finished_at.clone().unwrap_or_else(none)),
        (
            "duration",
            d.duration.map(|s| format!("{s:.1} s")).unwrap_or_else(none),
        ),
    ]);
    let mut text = String::new();
    for (name, value) in rows {
        text.push_str(&format!("{name:<11} {value}\n"));
    }
    print(&text)?;
    Ok(Outcome::Done)
}

async fn cancel(client: &Client, id: DeploymentId) -> Result<Outcome, CliError> {
    let request = client
        .request(
            reqwest::Method::POST,
            &format!("/api/deployments/{id}/cancel"),
        )
        .timeout(std::time::Duration::from_secs(60));
    let response = client.send(request).await?;
    let bytes = response.bytes().await.map_err(|e| client.unreachable(&e))?;
    match serde_json::from_slice::<Deployment>(&bytes) {
        Ok(deployment) => print(&format!(
            "{}\n",
            describe(deployment.id, &deployment.status_data())
        ))?,
        Err(_) => print(&format!("deployment {id}: cancelled\n"))?,
    }
    Ok(Outcome::Done)
}

async fn app_logs(client: &Client, app: &str, follow_it: bool) -> Result<Outcome, CliError> {
    let app = client.app(app).await?;
    let mut out = Stdout::new(true);
    if !follow_it {
        client
            .download(&format!("/api/apps/{}/logs", app.id), &mut out)
            .await?;
        return Ok(Outcome::Done);
    }
    let mut view = AppLogView { out, shown: None };
    follow(client, Feed::App(app.id), 0, &mut view).await?;
    Ok(Outcome::Done)
}

/// Runtime logs: the container's stdout lines to stdout, its stderr lines to stderr, and
/// a line on stderr when the app's current deployment changes.
struct AppLogView {
    out: Stdout,
    shown: Option<StatusData>,
}

impl Sink for AppLogView {
    fn status(&mut self, status: &StatusData) -> Result<(), CliError> {
        let changed = self.shown.as_ref().is_none_or(|shown| {
            shown.deployment_id != status.deployment_id || shown.status != status.status
        });
        if changed {
            self.out.flush()?;
            eprintln!("{}", describe(status.deployment_id, status));
            self.shown = Some(status.clone());
        }
        Ok(())
    }

    fn line(&mut self, line: &LogLine, stream: Option<&str>) -> Result<(), CliError> {
        if stream == Some("stderr") {
            // Keep the order of the two streams as the server numbered them.
            self.out.flush()?;
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(line.line.as_bytes());
            return Ok(());
        }
        self.out.write(line.line.as_bytes())
    }

    fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush()
    }

    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = Stdout::new(true);
    out.write(text.as_bytes())?;
    out.flush()
}

fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?;
    print(&format!("{text}\n"))
}

/// Columns padded to their widest cell; the last one is not padded.
fn print_table<const N: usize>(rows: &[[String; N]]) -> Result<(), CliError> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    print(&text)
}
