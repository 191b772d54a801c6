//! HTTP requests to Slipway, and the errors a user of the CLI reads.

use super::credentials::{Target, TokenFrom};
use protocol::{ApiError, App};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long connecting may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a JSON answer may take. Log downloads stream and have no total limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a command did not work. Every variant exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line, the environment or the saved credentials are wrong.
    #[error("{0}")]
    Usage(String),
    /// Slipway could not be reached, or the connection was lost for good.
    #[error(
        "cannot reach Slipway at {url}: {reason}. Is the server running there? Set SLIPWAY_URL, or run `slipway login --url URL --token TOKEN`."
    )]
    Unreachable { url: String, reason: String },
    /// The server refused the credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The server refused the request; `message` is its own (PROTOCOL.md error body).
    #[error("{message} ({code})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered something that is not PROTOCOL.md.
    #[error("unexpected answer from {url}: {what}")]
    Protocol { url: String, what: String },
    /// Nobody reads stdout any more (`slipway logs 7 | head`). `quiet` when that ends the
    /// command's work anyway: nothing is printed and the exit code is 0.
    #[error(
        "stdout was closed before the log ended; the deployment goes on (see `slipway status`)"
    )]
    StdoutClosed { quiet: bool },
}

/// A client of one Slipway server.
pub struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    pub fn new(target: Target) -> Result<Client, CliError> {
        if let Some(token) = &target.token
            && !token.0.bytes().all(|b| b.is_ascii_graphic())
        {
            let from = match &target.token_from {
                TokenFrom::Env => "SLIPWAY_TOKEN".to_owned(),
                TokenFrom::File(path) => path.display().to_string(),
                TokenFrom::Login | TokenFrom::None => "--token".to_owned(),
            };
            return Err(CliError::Usage(format!(
                "{from}: a token is printable ASCII without spaces; copy it again from the API tokens page"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("slipway-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client { http, target })
    }

    /// The server's base URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A request for `path` (which starts with `/`), with the token when there is one.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.target.url));
        match &self.target.token {
            Some(token) => request.bearer_auth(&token.0),
            None => request,
        }
    }

    /// Sends a request; any answer but 2xx becomes the error it describes.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CliError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(self.refusal(status.as_u16(), &body))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let request = self.request(Method::GET, path).timeout(REQUEST_TIMEOUT);
        self.json(path, self.send(request).await?).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, CliError> {
        let request = self
            .request(Method::POST, path)
            .timeout(REQUEST_TIMEOUT)
            .json(body);
        self.json(path, self.send(request).await?).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        response: reqwest::Response,
    ) -> Result<T, CliError> {
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| CliError::Protocol {
            url: format!("{}{path}", self.target.url),
            what: format!("the JSON does not match PROTOCOL.md: {e}"),
        })
    }

    /// Copies a text answer to stdout as it arrives.
    pub async fn download(
        &self,
        path: &str,
        out: &mut super::output::Stdout,
    ) -> Result<(), CliError> {
        let mut response = self.send(self.request(Method::GET, path)).await?;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            out.write(&chunk)?;
        }
        out.flush()
    }

    /// The app `name_or_id` names: an app of that name, else (when it is a number) the
    /// app with that id.
    pub async fn app(&self, name_or_id: &str) -> Result<App, CliError> {
        let apps: Vec<App> = self.get("/api/apps").await?;
        let id = super::app_id_from_arg(name_or_id);
        if let Some(app) = apps
            .iter()
            .find(|app| app.name == name_or_id)
            .or_else(|| apps.iter().find(|app| Some(app.id) == id))
        {
            return Ok(app.clone());
        }
        let names: Vec<&str> = apps.iter().map(|app| app.name.as_str()).collect();
        Err(CliError::Refused {
            status: StatusCode::NOT_FOUND.as_u16(),
            code: "not_found".into(),
            message: if names.is_empty() {
                format!(
                    "no app is named {name_or_id:?}: there are no apps yet; create one with `slipway apps create NAME --repo URL`"
                )
            } else {
                format!(
                    "no app is named {name_or_id:?} (apps: {}); `slipway apps` lists them",
                    names.join(", ")
                )
            },
        })
    }

    /// The error an answer with `status` and `body` describes.
    pub fn refusal(&self, status: u16, body: &[u8]) -> CliError {
        let (code, message) = match serde_json::from_slice::<ApiError>(body) {
            Ok(error) => (
                serde_json::to_value(error.error.code)
                    .ok()
                    .and_then(|code| code.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                error.error.message,
            ),
            Err(_) => (
                format!("HTTP {status}"),
                format!(
                    "the server at {} answered HTTP {status} without a Slipway error; is SLIPWAY_URL the address of a Slipway server?",
                    self.target.url
                ),
            ),
        };
        if status == StatusCode::UNAUTHORIZED.as_u16() {
            return self.unauthorized(&message);
        }
        CliError::Refused {
            status,
            code,
            message,
        }
    }

    /// A refused token, said plainly, with what to do about it.
    pub fn unauthorized(&self, server_says: &str) -> CliError {
        let url = &self.target.url;
        let tokens = format!("{url}/settings/tokens");
        CliError::Unauthorized(match &self.target.token_from {
            TokenFrom::Env => format!(
                "Slipway at {url} refused the token in SLIPWAY_TOKEN ({server_says}). Check the \
                 variable, or create a new token on the API tokens page ({tokens})."
            ),
            TokenFrom::File(path) => format!(
                "Slipway at {url} refused the token saved in {} ({server_says}). Create a new \
                 token on the API tokens page ({tokens}) and run `slipway login --url {url} --token TOKEN`.",
                path.display()
            ),
            TokenFrom::Login => format!(
                "Slipway at {url} refused this token ({server_says}); nothing was saved. Copy a \
                 token from the API tokens page ({tokens})."
            ),
            TokenFrom::None => format!(
                "Slipway at {url} needs an API token ({server_says}). Create one on the API \
                 tokens page ({tokens}), then set SLIPWAY_TOKEN or run `slipway login --url {url} --token TOKEN`."
            ),
        })
    }

    pub fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> CliError {
        CliError::Unreachable {
            url: self.target.url.clone(),
            reason: causes(error),
        }
    }
}

/// What went wrong, in the words of the innermost cause: reqwest's own message ("error
/// sending request for url (...)") says little, its cause ("Connection refused") says
/// what happened.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}
