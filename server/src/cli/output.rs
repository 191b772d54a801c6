//! What the CLI prints: log lines on stdout, byte for byte, and a deployment's progress on
//! stderr (a line per change, or an indicatif progress bar when stderr is a terminal).

use super::CliError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use protocol::{DeploymentId, Status, StatusData};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Output is written out once this much is waiting, or when no message is ready.
const FLUSH_AT: usize = 64 * 1024;

/// Standard output, buffered between socket reads: a burst of catch-up lines goes out in
/// a few writes, and a quiet stream is flushed at once.
pub struct Stdout {
    buffer: Vec<u8>,
    /// The progress bar on the same terminal: lines are written while it is hidden.
    bar: Option<ProgressBar>,
    quiet_on_close: bool,
}

impl Stdout {
    /// `quiet_on_close`: a closed stdout ends the command silently with code 0 (a plain
    /// `logs | head`); otherwise it is an error, since a followed deployment's outcome
    /// is then unknown.
    pub fn new(quiet_on_close: bool) -> Stdout {
        Stdout {
            buffer: Vec::with_capacity(FLUSH_AT),
            bar: None,
            quiet_on_close,
        }
    }

    /// Shares the terminal with `bar` when stdout is that terminal too.
    pub fn share_with(&mut self, bar: Option<&ProgressBar>) {
        if std::io::stdout().is_terminal() {
            self.bar = bar.cloned();
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), CliError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let write = || {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&self.buffer)?;
            stdout.flush()
        };
        let written = match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        self.buffer.clear();
        written.map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed {
                quiet: self.quiet_on_close,
            },
            _ => CliError::Usage(format!("cannot write to stdout: {e}")),
        })
    }
}

/// A deployment's status on stderr: a line for each change, or, on a terminal, a progress
/// bar with a line for each new stage.
pub struct Progress {
    deployment: DeploymentId,
    bar: Option<ProgressBar>,
    shown: Option<StatusData>,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(deployment: DeploymentId) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
            bar.set_style(style(RUNNING));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            deployment,
            bar,
            shown: None,
        }
    }

    pub fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }

    /// A line on stderr, above the bar if there is one.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Shows `status` if it differs from what is shown (a resumed connection repeats it).
    pub fn show(&mut self, status: &StatusData) {
        let new_stage = match &self.shown {
            Some(shown) if !status.differs_from(shown) => return,
            Some(shown) => {
                shown.status != status.status || shown.error_message != status.error_message
            }
            None => true,
        };
        match &self.bar {
            None => eprintln!("{}", describe(self.deployment, status)),
            Some(bar) => {
                if new_stage && !status.status.is_terminal() {
                    bar.println(describe(self.deployment, status));
                }
                bar.set_prefix(status.status.as_str());
                bar.set_message(status.message.clone());
                bar.set_position(u64::from(status.progress));
                if status.status.is_terminal() {
                    let (template, position) = match status.status {
                        Status::Success => (SUCCEEDED, 100),
                        _ => (ENDED, bar.position()),
                    };
                    bar.set_style(style(template));
                    bar.set_position(position);
                    bar.set_message(match status.status {
                        Status::Success => match status.duration {
                            Some(secs) => format!("{} in {secs:.1} s", status.message),
                            None => status.message.clone(),
                        },
                        _ => status.message.clone(),
                    });
                    bar.abandon();
                    if status.status != Status::Success {
                        eprintln!("{}", describe(self.deployment, status));
                    }
                }
            }
        }
        self.shown = Some(status.clone());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A stream that ended without a terminal status (an error) leaves no spinner.
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

const RUNNING: &str =
    "{spinner:.cyan} {prefix:<9.bold} [{bar:32.cyan/blue}] {pos:>3}%  {msg}  {elapsed:.dim}";
const SUCCEEDED: &str = "✔ {prefix:<9.bold.green} [{bar:32.green}] {pos:>3}%  {msg}";
const ENDED: &str = "✘ {prefix:<9.bold.red} [{bar:32.red}] {pos:>3}%  {msg}  {elapsed:.dim}";

fn style(template: &str) -> ProgressStyle {
    // The templates are constants; a typo would show in every test run on a terminal.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// One status as a line: `deployment 12: building (50%) Building Docker image`.
pub fn describe(deployment: DeploymentId, status: &StatusData) -> String {
    match status.status {
        Status::Success => match status.duration {
            Some(secs) => format!("deployment {deployment}: success in {secs:.1} s"),
            None => format!("deployment {deployment}: success"),
        },
        Status::Failed => {
            let stage = status
                .failed_stage
                .map(|stage| format!(" in {}", stage.as_str()))
                .unwrap_or_default();
            let why = if status.error_message.is_empty() {
                status.message.as_str()
            } else {
                status.error_message.as_str()
            };
            format!("deployment {deployment}: failed{stage}: {why}")
        }
        Status::Cancelled => format!("deployment {deployment}: cancelled"),
        _ => format!(
            "deployment {deployment}: {} ({}%) {}",
            status.status.as_str(),
            status.progress,
            status.message
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_say_what_happened() {
        let mut status = StatusData::new(12, Status::Building, 58, String::new(), None, None);
        assert_eq!(
            describe(12, &status),
            "deployment 12: building (58%) Building Docker image"
        );
        status = StatusData::new(
            12,
            Status::Failed,
            0,
            "Docker build failed with exit code 3: RUN exit 3".into(),
            Some(2.0),
            Some(Status::Building),
        );
        assert_eq!(
            describe(12, &status),
            "deployment 12: failed in building: Docker build failed with exit code 3: RUN exit 3"
        );
        status = StatusData::new(12, Status::Success, 100, String::new(), Some(7.26), None);
        assert_eq!(describe(12, &status), "deployment 12: success in 7.3 s");
    }

    #[test]
    fn the_bar_templates_parse() {
        for template in [RUNNING, SUCCEEDED, ENDED] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
