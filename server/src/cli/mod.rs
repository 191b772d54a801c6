//! `slipway <command>`: the command line. `serve` (or no command) runs the server; every
//! other command is a client of the HTTP API and the monitor WebSocket of PROTOCOL.md.
//!
//! - this file: the commands as clap parses them, and the exit codes.
//! - [`credentials`]: where the client finds the server and its token (`SLIPWAY_URL`,
//!   `SLIPWAY_TOKEN`, or what `slipway login` saved).
//! - [`client`]: HTTP requests, and the errors a user reads.
//! - [`follow`]: a monitor or runtime-log WebSocket read to its end, resumed with
//!   `since=` after a dropped connection.
//! - [`output`]: stdout (log lines, byte for byte) and stderr (status lines, or a progress
//!   bar on a terminal).
//! - [`commands`]: what each command does.
//!
//! Exit codes (PROTOCOL.md): 0 the command worked (with `--follow`: the deployment
//! succeeded), 1 the deployment failed, 3 it was cancelled, 2 a usage, connection or
//! authentication error, or a request the server refused, with a message on stderr.

pub mod client;
pub mod commands;
pub mod credentials;
pub mod follow;
pub mod output;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use protocol::{AppId, DeploymentId, Seq, Status};
use std::process::ExitCode;

pub use client::CliError;

/// Exit code of a usage, connection or authentication error (and of clap's own errors).
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about = "Slipway: deploy apps from git. `slipway serve` (or no command) runs the server; \
             the other commands are its client.",
    after_help = "The client reads SLIPWAY_URL (default http://127.0.0.1:3000) and \
                  SLIPWAY_TOKEN, or what `slipway login` saved.\n\
                  Exit codes: 0 success, 1 the deployment failed, 3 it was cancelled, \
                  2 a usage, connection or authentication error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server (also what `slipway` with no command does). It is configured by
    /// environment variables, listed below.
    Serve,
    /// Checks a token against the server and saves both for the other commands, in a file
    /// only you can read.
    Login {
        /// The server, e.g. https://deploy.example.com [default: SLIPWAY_URL, or
        /// http://127.0.0.1:3000]
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// An API token (create one on the dashboard's API tokens page); `-` reads it
        /// from standard input, which keeps it out of the process list.
        #[arg(long, value_name = "TOKEN")]
        token: String,
    },
    /// Lists apps with their last deployment.
    Apps(AppsArgs),
    /// Queues a deployment of an app and prints its id.
    Deploy {
        /// The app's name or id.
        app: String,
        /// Build this commit instead of the head of the app's branch.
        #[arg(long, value_name = "SHA")]
        commit: Option<String>,
        /// Watch it: the log on stdout, its progress on stderr, until it ends; the exit
        /// code tells how it ended.
        #[arg(long, short)]
        follow: bool,
    },
    /// Prints a deployment's log.
    Logs {
        #[arg(value_name = "DEPLOYMENT", value_parser = id_parser())]
        deployment: DeploymentId,
        /// Keep printing lines until the deployment ends; the exit code tells how it ended.
        #[arg(long, short)]
        follow: bool,
        /// Only the lines after line N.
        #[arg(long, value_name = "N")]
        since: Option<Seq>,
    },
    /// Shows one deployment.
    Status {
        #[arg(value_name = "DEPLOYMENT", value_parser = id_parser())]
        deployment: DeploymentId,
        /// The API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancels a pending or running deployment.
    Cancel {
        #[arg(value_name = "DEPLOYMENT", value_parser = id_parser())]
        deployment: DeploymentId,
    },
    /// Starts an earlier successful deployment's image again (no clone, no build) and
    /// prints the new deployment's id.
    Rollback {
        /// The app's name or id.
        app: String,
        /// The deployment whose image to start [default: the successful deployment before
        /// the current one].
        #[arg(long, value_name = "DEPLOYMENT", value_parser = id_parser())]
        to: Option<DeploymentId>,
        /// Watch the rollback as `deploy --follow` does.
        #[arg(long, short)]
        follow: bool,
    },
    /// Prints what the app's running containers write (stdout lines to stdout, stderr
    /// lines to stderr).
    #[command(name = "app-logs")]
    AppLogs {
        /// The app's name or id.
        app: String,
        /// Keep printing as the app writes, across redeploys, until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AppsArgs {
    /// The API's JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<AppsAction>,
}

#[derive(Debug, Subcommand)]
pub enum AppsAction {
    /// Registers an app.
    Create {
        /// 1 to 63 characters of a-z, 0-9 and -.
        name: String,
        /// The git repository: https://, http://, ssh:// or git@host:path.
        #[arg(long, value_name = "URL")]
        repo: String,
        /// [default: main]
        #[arg(long, value_name = "B")]
        branch: Option<String>,
        /// The Dockerfile's path in the repository [default: Dockerfile].
        #[arg(long, value_name = "F")]
        dockerfile: Option<String>,
        /// The port the app listens on; a deployment is healthy once it answers there.
        #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
        /// A variable for the app's container; repeat for more.
        #[arg(long = "env", value_name = "K=V", value_parser = env_pair)]
        env: Vec<(String, String)>,
        /// Print the created app as the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Ids are positive 64-bit integers (PROTOCOL.md).
fn id_parser() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(1..)
}

/// `K=V`: the name must be non-empty; the value may be empty or hold `=`.
fn env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not NAME=value")),
    }
}

/// What the command line asks for.
pub enum Invocation {
    Serve,
    Client(Command),
}

/// The command tree, with the server's variables listed under `slipway serve --help`.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("serve", |serve| serve.after_help(serve_help()))
}

/// Parses the process's arguments. A usage error exits with code 2 and clap's message;
/// `--help` and `--version` exit 0.
pub fn parse() -> Invocation {
    let cli = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match cli {
        Ok(Cli {
            command: None | Some(Command::Serve),
        }) => Invocation::Serve,
        Ok(Cli {
            command: Some(command),
        }) => Invocation::Client(command),
        // clap's usage errors exit with 2, `--help` and `--version` with 0.
        Err(e) => e.exit(),
    }
}

/// Runs a client command and answers the process's exit code.
pub fn run(command: Command) -> ExitCode {
    // One thread: the client does one thing at a time. Writing to stdout blocks this
    // thread when the reader is slow (`| less`), which is the backpressure we want: the
    // socket is not read meanwhile and the server catches us up from its store.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the client: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = match command {
        Command::Login { url, token } => commands::login(&runtime, url, token),
        command => commands::target()
            .and_then(|target| runtime.block_on(commands::execute(command, target))),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(CliError::StdoutClosed { quiet: true }) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// How a command ended, when it worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command did what it was asked (a followed deployment succeeded).
    Done,
    /// A followed deployment ended with this status.
    Ended(Status),
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done | Outcome::Ended(Status::Success) => 0,
            Outcome::Ended(Status::Cancelled) => 3,
            Outcome::Ended(Status::Failed) => 1,
            // A stream ends only at a terminal status; anything else is not an answer.
            Outcome::Ended(_) => EXIT_ERROR,
        }
    }
}

/// App names may be all digits (`a-z`, `0-9`, `-`), so `APP` is first looked up as a name.
pub fn app_id_from_arg(text: &str) -> Option<AppId> {
    text.parse::<AppId>().ok().filter(|id| *id > 0)
}

/// The server's variables, from the one declaration in `engine::config`: name, meaning and
/// default of each.
fn serve_help() -> String {
    let config = engine::Config::command();
    let mut rows = Vec::new();
    for arg in config.get_arguments() {
        let Some(name) = arg.get_env().and_then(|name| name.to_str()) else {
            continue;
        };
        let mut help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() {
            help.push_str(&format!(" [default: {}]", defaults.join(",")));
        }
        rows.push((name.to_owned(), help));
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut text = String::from("Environment variables (an empty one counts as unset):\n");
    for (name, help) in rows {
        text.push_str(&format!("  {name:width$}  {help}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Cli, clap::Error> {
        command()
            .try_get_matches_from(args)
            .and_then(|matches| Cli::from_arg_matches(&matches))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn no_command_and_serve_both_serve() -> Result<(), clap::Error> {
        assert!(parse_args(&["slipway"])?.command.is_none());
        assert!(matches!(
            parse_args(&["slipway", "serve"])?.command,
            Some(Command::Serve)
        ));
        Ok(())
    }

    #[test]
    fn serve_help_lists_the_variables() {
        let help = command()
            .find_subcommand_mut("serve")
            .map(|serve| serve.render_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("SLIPWAY_ADDR"), "{help}");
        assert!(help.contains("[default: 127.0.0.1:3000]"), "{help}");
        assert!(help.contains("SLIPWAY_EDGE_HTTP_ADDR"), "{help}");
    }

    #[test]
    fn apps_create_takes_repeated_env_pairs() -> Result<(), clap::Error> {
        let cli = parse_args(&[
            "slipway",
            "apps",
            "create",
            "hello",
            "--repo",
            "/srv/git/hello",
            "--port",
            "8080",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--env",
            "EMPTY=",
        ])?;
        let Some(Command::Apps(AppsArgs {
            action: Some(AppsAction::Create {
                name, env, port, ..
            }),
            ..
        })) = cli.command
        else {
            panic!("not apps create: {cli:?}");
        };
        assert_eq!(name, "hello");
        assert_eq!(port, Some(8080));
        assert_eq!(
            env,
            [("A", "1"), ("B", "x=y"), ("EMPTY", "")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        Ok(())
    }

    #[test]
    fn usage_errors_are_clap_errors_with_exit_code_2() {
        for args in [
            &["slipway", "deploy"][..],
            &["slipway", "logs", "abc"],
            &["slipway", "logs", "0"],
            &["slipway", "status", "-4"],
            &["slipway", "apps", "create", "x"],
            &[
                "slipway", "apps", "create", "x", "--repo", "r", "--env", "=v",
            ],
            &[
                "slipway", "apps", "create", "x", "--repo", "r", "--port", "70000",
            ],
            &["slipway", "apps", "--json", "create", "x", "--repo", "r"],
            &["slipway", "nonsense"],
            &["slipway", "serve", "--addr", "0.0.0.0:1"],
        ] {
            let error = parse_args(args).err();
            assert_eq!(
                error.as_ref().map(|e| e.exit_code()),
                Some(i32::from(EXIT_ERROR)),
                "{args:?}: {error:?}"
            );
        }
    }

    #[test]
    fn outcomes_map_to_the_protocol_exit_codes() {
        assert_eq!(Outcome::Done.code(), 0);
        assert_eq!(Outcome::Ended(Status::Success).code(), 0);
        assert_eq!(Outcome::Ended(Status::Failed).code(), 1);
        assert_eq!(Outcome::Ended(Status::Cancelled).code(), 3);
        assert_eq!(Outcome::Ended(Status::Building).code(), 2);
    }
}
