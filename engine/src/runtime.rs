//! The container runtime behind a small trait: the real Docker engine through bollard,
//! and (in tests) a fake that drives the worker deterministically.

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine cannot be reached.
    #[error("Docker engine unavailable at {endpoint}: {detail}")]
    Unavailable { endpoint: String, detail: String },
    /// A Dockerfile step failed.
    #[error("Docker build failed with exit code {code}: {detail}")]
    BuildFailed { code: i64, detail: String },
    /// Swarm rolled a service update back: the previous version still serves.
    #[error("Swarm rolled the update back and the previous version still serves: {0}")]
    RolledBack(String),
    #[error("{0}")]
    Other(String),
}

/// The build context: a tar archive of the checkout, read as it is written (a bounded
/// channel of pieces), never whole in memory.
pub struct BuildContext {
    rx: mpsc::Receiver<std::io::Result<bytes::Bytes>>,
}

impl BuildContext {
    pub fn new(rx: mpsc::Receiver<std::io::Result<bytes::Bytes>>) -> BuildContext {
        BuildContext { rx }
    }

    /// The archive, piece by piece, as its writer produces it.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
        futures_util::stream::unfold(self.rx, |mut rx| async move {
            rx.recv().await.map(|piece| (piece, rx))
        })
    }

    /// The whole archive in memory: for runtimes that only read a small script from it
    /// (the synthetic one), refused past `max` bytes.
    pub async fn read_all(mut self, max: usize) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(piece) = self.rx.recv().await {
            all.extend_from_slice(&piece?);
            if all.len() > max {
                return Err(std::io::Error::other(format!(
                    "the build context is larger than {max} bytes"
                )));
            }
        }
        Ok(all)
    }
}

/// What to build: a tar of the checkout and the Dockerfile's path inside it.
pub struct BuildRequest {
    pub context: BuildContext,
    pub dockerfile: String,
    pub tag: String,
    pub labels: HashMap<String, String>,
}

pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub env: BTreeMap<String, String>,
    pub port: Option<u16>,
    pub labels: HashMap<String, String>,
    /// The app's own network; the container joins no other.
    pub network: Option<String>,
    pub limits: Limits,
}

/// What a container may use (PROTOCOL.md, "Apps on the web").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub memory_mb: u32,
    pub cpus: f64,
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 512,
            cpus: 1.0,
            pids: 512,
        }
    }
}

/// Which of a container's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn name(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }

    /// The byte a stored runtime line starts with.
    pub fn marker(self) -> char {
        match self {
            OutputStream::Stdout => 'o',
            OutputStream::Stderr => 'e',
        }
    }

    /// A stored line: its stream and its text.
    pub fn split(stored: &str) -> (OutputStream, &str) {
        match stored.strip_prefix('e') {
            Some(text) => (OutputStream::Stderr, text),
            None => (
                OutputStream::Stdout,
                stored.strip_prefix('o').unwrap_or(stored),
            ),
        }
    }
}

/// A piece of a running container's output.
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub stream: OutputStream,
    /// When the engine received it (RFC 3339 with nanoseconds).
    pub timestamp: String,
    pub text: Vec<u8>,
}

/// Something the runtime tells the engine without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// The engine's event stream (re)connected: anything may have changed meanwhile (the
    /// engine restarted and restarted containers on new ports).
    Connected,
    /// A container of this installation started (again), e.g. after a restart.
    Started { container: String },
}

pub struct StartedContainer {
    pub id: String,
    /// The host port on 127.0.0.1 the app's port is published on.
    pub host_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    Exited { code: i64 },
    Missing,
}

pub trait Runtime: Send + Sync + 'static {
    /// How long a container with no port must stay up to count as started.
    fn settle_time(&self) -> std::time::Duration {
        std::time::Duration::from_secs(3)
    }

    /// Builds the image, sending every chunk of output to `output` as it arrives.
    /// Returns the image id.
    fn build(
        &self,
        request: BuildRequest,
        output: mpsc::Sender<String>,
    ) -> BoxFuture<'_, Result<String, RuntimeError>>;
    fn start(&self, spec: ContainerSpec) -> BoxFuture<'_, Result<StartedContainer, RuntimeError>>;
    fn state<'a>(
        &'a self,
        container: &'a str,
    ) -> BoxFuture<'a, Result<ContainerState, RuntimeError>>;
    /// The container serves now: restart it whenever it stops (or the engine restarts)
    /// until it is removed; Slipway then points the edge at the container's new port.
    fn keep_running<'a>(&'a self, _container: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    /// The container's last `lines` lines of output.
    fn tail<'a>(
        &'a self,
        container: &'a str,
        lines: usize,
    ) -> BoxFuture<'a, Result<String, RuntimeError>>;
    /// Stops and removes a container; a missing one is not an error.
    fn remove<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Removes an image; a missing one is not an error.
    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Whether the engine answers: `Unavailable` when it does not (within a few seconds).
    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    /// The host port (on 127.0.0.1) the container's `port` is published on now: it can
    /// change when the engine restarts the container.
    fn host_port<'a>(
        &'a self,
        _container: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, Result<Option<u16>, RuntimeError>> {
        Box::pin(async { Ok(None) })
    }
    /// Creates the network `name` unless it exists.
    fn ensure_network<'a>(
        &'a self,
        _name: &'a str,
        _labels: HashMap<String, String>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    /// Removes the network `name`; a missing one is not an error.
    fn remove_network<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    /// A running container's output from now on (after `since`, an engine timestamp, when
    /// given), until the container stops or the engine goes away.
    fn follow_logs(
        &self,
        _container: &str,
        _since: Option<String>,
    ) -> futures_util::stream::BoxStream<'static, Result<LogChunk, RuntimeError>> {
        Box::pin(futures_util::stream::empty())
    }
    /// Events about the containers labelled `slipway.instance=<instance>`, for as long as
    /// the engine is up; reconnects are reported as `Connected`.
    fn events(&self, _instance: &str) -> futures_util::stream::BoxStream<'static, RuntimeEvent> {
        Box::pin(futures_util::stream::pending())
    }
    /// With `SLIPWAY_RUNTIME=swarm`: apps are services, deployed through it.
    fn swarm(&self) -> Option<&crate::swarm::SwarmRuntime> {
        None
    }
}

pub mod docker {
    //! The real Docker engine.

    use super::*;
    use bollard::Docker;
    use bollard::models::{
        ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding, RestartPolicy,
        RestartPolicyNameEnum,
    };
    use bollard::query_parameters::{
        BuildImageOptions, CreateContainerOptionsBuilder, EventsOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    };

    #[derive(Clone)]
    pub struct DockerRuntime {
        docker: Docker,
        endpoint: String,
    }

    /// Capabilities every app container keeps: binding a port below 1024.
    const KEPT_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];
    /// Waits between reconnects of the event stream while the engine is away.
    const EVENTS_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

    impl DockerRuntime {
        /// Connects to `DOCKER_HOST` or the local socket and agrees on an API version.
        pub async fn connect(docker_host: Option<&str>) -> Result<DockerRuntime, RuntimeError> {
            let endpoint = docker_host
                .unwrap_or("unix:///var/run/docker.sock")
                .to_owned();
            let unavailable = |e: bollard::errors::Error| RuntimeError::Unavailable {
                endpoint: endpoint.clone(),
                detail: e.to_string(),
            };
            let docker = match docker_host {
                Some(host) if host.starts_with("unix://") => {
                    Docker::connect_with_unix(host, 120, bollard::API_DEFAULT_VERSION)
                }
                Some(host) => Docker::connect_with_http(host, 120, bollard::API_DEFAULT_VERSION),
                None => Docker::connect_with_local_defaults(),
            }
            .map_err(unavailable)?;
            let docker = docker.negotiate_version().await.map_err(unavailable)?;
            Ok(DockerRuntime { docker, endpoint })
        }

        /// The engine's API, for what the trait does not say (Swarm's services).
        pub(crate) fn client(&self) -> &Docker {
            &self.docker
        }

        pub(crate) fn error(&self, e: bollard::errors::Error) -> RuntimeError {
            use bollard::errors::Error as E;
            match e {
                E::HyperResponseError { .. }
                | E::HyperLegacyError { .. }
                | E::IOError { .. }
                | E::RequestTimeoutError => RuntimeError::Unavailable {
                    endpoint: self.endpoint.clone(),
                    detail: e.to_string(),
                },
                other => RuntimeError::Other(other.to_string()),
            }
        }
    }

    impl DockerRuntime {
        /// Following output from now on (after `since`, an engine timestamp, when given),
        /// each frame with its time.
        pub(crate) fn follow_options(
            &self,
            since: Option<String>,
        ) -> bollard::query_parameters::LogsOptions {
            let mut options = LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .follow(true)
                .timestamps(true);
            // The engine takes whole seconds: the caller skips what it has seen in the
            // second it asked from.
            if let Some(seconds) = since
                .as_deref()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .and_then(|at| i32::try_from(at.timestamp()).ok())
            {
                options = options.since(seconds);
            }
            options.build()
        }

        /// The last `lines` lines of output, both streams.
        pub(crate) fn tail_options(lines: usize) -> bollard::query_parameters::LogsOptions {
            LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .tail(&lines.to_string())
                .build()
        }

        /// The whole of a finite log stream, as text.
        pub(crate) async fn text_of(
            &self,
            output: impl futures_util::Stream<
                Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
            >,
        ) -> Result<String, RuntimeError> {
            let mut output = std::pin::pin!(output);
            let mut text = String::new();
            while let Some(chunk) = output.next().await {
                let chunk = chunk.map_err(|e| self.error(e))?;
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            Ok(text)
        }

        /// The engine's log frames (asked with timestamps) as chunks of output.
        pub(crate) fn chunks(
            &self,
            output: impl futures_util::Stream<
                Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
            > + Send
            + 'static,
        ) -> futures_util::stream::BoxStream<'static, Result<LogChunk, RuntimeError>> {
            let runtime = self.clone();
            Box::pin(output.filter_map(move |chunk| {
                let runtime = runtime.clone();
                async move {
                    let (stream, bytes) = match chunk {
                        Ok(bollard::container::LogOutput::StdOut { message }) => {
                            (OutputStream::Stdout, message)
                        }
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            (OutputStream::Stderr, message)
                        }
                        Ok(_) => return None,
                        Err(e) => return Some(Err(runtime.error(e))),
                    };
                    // With timestamps, every frame starts with the engine's RFC 3339
                    // time and a space.
                    let space = bytes.iter().position(|b| *b == b' ')?;
                    let timestamp = String::from_utf8_lossy(&bytes[..space]).into_owned();
                    Some(Ok(LogChunk {
                        stream,
                        timestamp,
                        text: bytes[space + 1..].to_vec(),
                    }))
                }
            }))
        }

        /// The host port `port/tcp` of `container` is published on.
        async fn published(&self, container: &str, port: u16) -> Result<Option<u16>, RuntimeError> {
            let inspected = match self.docker.inspect_container(container, None).await {
                Ok(inspected) => inspected,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(None),
                Err(e) => return Err(self.error(e)),
            };
            Ok(inspected
                .network_settings
                .and_then(|n| n.ports)
                .and_then(|mut ports| ports.remove(&format!("{port}/tcp")))
                .flatten()
                .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
                .and_then(|p| p.parse().ok()))
        }
    }

    /// The engine's events about this installation's containers, as a stream that outlives
    /// the engine: when the engine goes away it waits, reconnects, and says `Connected`.
    fn async_stream_events(
        runtime: DockerRuntime,
        label: String,
    ) -> impl futures_util::Stream<Item = RuntimeEvent> + Send + 'static {
        futures_util::stream::unfold(
            (
                runtime,
                label,
                None::<futures_util::stream::BoxStream<'static, _>>,
            ),
            |(runtime, label, mut current)| async move {
                loop {
                    match current.as_mut() {
                        None => {
                            if runtime.docker.ping().await.is_err() {
                                tokio::time::sleep(EVENTS_RETRY).await;
                                continue;
                            }
                            let filters = HashMap::from([
                                ("type".to_owned(), vec!["container".to_owned()]),
                                ("event".to_owned(), vec!["start".to_owned()]),
                                ("label".to_owned(), vec![label.clone()]),
                            ]);
                            let options = EventsOptionsBuilder::new().filters(&filters).build();
                            current = Some(Box::pin(runtime.docker.events(Some(options))));
                            return Some((RuntimeEvent::Connected, (runtime, label, current)));
                        }
                        Some(stream) => match stream.next().await {
                            Some(Ok(event)) => {
                                let container = event.actor.and_then(|a| a.id).unwrap_or_default();
                                return Some((
                                    RuntimeEvent::Started { container },
                                    (runtime, label, current),
                                ));
                            }
                            // The engine went away: wait for it to come back.
                            Some(Err(_)) | None => {
                                current = None;
                                tokio::time::sleep(EVENTS_RETRY).await;
                            }
                        },
                    }
                }
            },
        )
    }

    /// "The command '/bin/sh -c exit 3' returned a non-zero code: 3" -> 3.
    pub(crate) fn exit_code_of(message: &str) -> Option<i64> {
        let (_, tail) = message.rsplit_once("non-zero code:")?;
        tail.trim().parse().ok()
    }

    /// How long a ping may take before the engine counts as unavailable.
    const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    impl Runtime for DockerRuntime {
        fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
            Box::pin(async move {
                match tokio::time::timeout(PING_TIMEOUT, self.docker.ping()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(RuntimeError::Unavailable {
                        endpoint: self.endpoint.clone(),
                        detail: e.to_string(),
                    }),
                    Err(_) => Err(RuntimeError::Unavailable {
                        endpoint: self.endpoint.clone(),
                        detail: format!("no answer within {} s", PING_TIMEOUT.as_secs()),
                    }),
                }
            })
        }

        fn build(
            &self,
            request: BuildRequest,
            output: mpsc::Sender<String>,
        ) -> BoxFuture<'_, Result<String, RuntimeError>> {
            Box::pin(async move {
                let options = BuildImageOptions {
                    dockerfile: request.dockerfile,
                    t: Some(request.tag),
                    rm: true,
                    forcerm: true,
                    labels: Some(request.labels),
                    ..Default::default()
                };
                let body = bollard::body_try_stream(request.context.into_stream());
                let mut stream = self.docker.build_image(options, None, Some(body));
                let mut image = None;
                while let Some(item) = stream.next().await {
                    let info = match item {
                        Ok(info) => info,
                        // The classic builder reports a failed step as a stream error.
                        Err(bollard::errors::Error::DockerStreamError { error }) => {
                            let code = exit_code_of(&error).unwrap_or(1);
                            return Err(RuntimeError::BuildFailed {
                                code,
                                detail: error,
                            });
                        }
                        Err(e) => return Err(self.error(e)),
                    };
                    if let Some(text) = info.stream
                        && output.send(text).await.is_err()
                    {
                        return Err(RuntimeError::Other("build output closed".into()));
                    }
                    if let Some(detail) = info.error_detail {
                        let message = detail.message.unwrap_or_default();
                        let code = exit_code_of(&message).or(detail.code).unwrap_or(1);
                        return Err(RuntimeError::BuildFailed {
                            code,
                            detail: message,
                        });
                    }
                    if let Some(id) = info.aux {
                        image = id.id;
                    }
                }
                image.ok_or_else(|| RuntimeError::Other("the build ended without an image".into()))
            })
        }

        fn start(
            &self,
            spec: ContainerSpec,
        ) -> BoxFuture<'_, Result<StartedContainer, RuntimeError>> {
            Box::pin(async move {
                let exposed = spec.port.map(|p| format!("{p}/tcp"));
                let port_bindings = exposed.as_ref().map(|key| {
                    HashMap::from([(
                        key.clone(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            // Empty: Docker picks a free port; fixed ports collide.
                            host_port: Some(String::new()),
                        }]),
                    )])
                });
                let limits = spec.limits;
                let body = ContainerCreateBody {
                    image: Some(spec.image),
                    env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    exposed_ports: exposed.clone().map(|key| vec![key]),
                    labels: Some(spec.labels),
                    host_config: Some(HostConfig {
                        port_bindings,
                        memory: Some(i64::from(limits.memory_mb) * 1024 * 1024),
                        nano_cpus: Some((limits.cpus * 1e9) as i64),
                        pids_limit: Some(limits.pids),
                        cap_drop: Some(vec!["ALL".into()]),
                        cap_add: Some(KEPT_CAPABILITIES.iter().map(|c| (*c).into()).collect()),
                        security_opt: Some(vec!["no-new-privileges".into()]),
                        network_mode: spec.network.clone(),
                        // Not restarted while its health is checked: a container that
                        // exits then is reported with its exit code. `keep_running` sets
                        // `unless-stopped` once it serves.
                        restart_policy: Some(RestartPolicy {
                            name: Some(RestartPolicyNameEnum::NO),
                            maximum_retry_count: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let options = CreateContainerOptionsBuilder::new()
                    .name(&spec.name)
                    .build();
                let created = self
                    .docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| self.error(e))?;
                let id = created.id;
                if let Err(e) = self.docker.start_container(&id, None).await {
                    let _ = self.remove(&id).await;
                    return Err(self.error(e));
                }
                let host_port = match spec.port {
                    Some(port) => self.published(&id, port).await?,
                    None => None,
                };
                Ok(StartedContainer { id, host_port })
            })
        }

        fn host_port<'a>(
            &'a self,
            container: &'a str,
            port: u16,
        ) -> BoxFuture<'a, Result<Option<u16>, RuntimeError>> {
            Box::pin(self.published(container, port))
        }

        fn ensure_network<'a>(
            &'a self,
            name: &'a str,
            labels: HashMap<String, String>,
        ) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move {
                match self.docker.inspect_network(name, None).await {
                    Ok(_) => return Ok(()),
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => {}
                    Err(e) => return Err(self.error(e)),
                }
                let request = NetworkCreateRequest {
                    name: name.to_owned(),
                    driver: Some("bridge".into()),
                    labels: Some(labels),
                    ..Default::default()
                };
                match self.docker.create_network(request).await {
                    Ok(_) => Ok(()),
                    // Created meanwhile by another deployment of the same app.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 409,
                        ..
                    }) => Ok(()),
                    Err(e) => Err(self.error(e)),
                }
            })
        }

        fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move {
                match self.docker.remove_network(name).await {
                    Ok(())
                    | Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(()),
                    Err(e) => Err(self.error(e)),
                }
            })
        }

        fn events(&self, instance: &str) -> futures_util::stream::BoxStream<'static, RuntimeEvent> {
            let runtime = self.clone();
            let label = format!("slipway.instance={instance}");
            Box::pin(async_stream_events(runtime, label))
        }

        fn keep_running<'a>(
            &'a self,
            container: &'a str,
        ) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move {
                let update = bollard::models::ContainerUpdateBody {
                    restart_policy: Some(RestartPolicy {
                        name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                        maximum_retry_count: None,
                    }),
                    ..Default::default()
                };
                self.docker
                    .update_container(container, update)
                    .await
                    .map_err(|e| self.error(e))
            })
        }

        fn state<'a>(
            &'a self,
            container: &'a str,
        ) -> BoxFuture<'a, Result<ContainerState, RuntimeError>> {
            Box::pin(async move {
                match self.docker.inspect_container(container, None).await {
                    Ok(inspected) => {
                        // Restarted by its restart policy: it exited at least once.
                        let restarted = inspected.restart_count.unwrap_or(0) > 0;
                        let state = inspected.state.unwrap_or_default();
                        if state.running.unwrap_or(false) && !restarted {
                            Ok(ContainerState::Running)
                        } else {
                            Ok(ContainerState::Exited {
                                code: state.exit_code.unwrap_or(-1),
                            })
                        }
                    }
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(ContainerState::Missing),
                    Err(e) => Err(self.error(e)),
                }
            })
        }

        fn tail<'a>(
            &'a self,
            container: &'a str,
            lines: usize,
        ) -> BoxFuture<'a, Result<String, RuntimeError>> {
            Box::pin(async move {
                let options = DockerRuntime::tail_options(lines);
                let output = self.docker.logs(container, Some(options));
                self.text_of(output).await
            })
        }

        fn follow_logs(
            &self,
            container: &str,
            since: Option<String>,
        ) -> futures_util::stream::BoxStream<'static, Result<LogChunk, RuntimeError>> {
            let output = self
                .docker
                .logs(container, Some(self.follow_options(since)));
            self.chunks(output)
        }

        fn remove<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move {
                let options = RemoveContainerOptionsBuilder::new().force(true).build();
                match self.docker.remove_container(container, Some(options)).await {
                    Ok(())
                    | Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(()),
                    Err(e) => Err(self.error(e)),
                }
            })
        }

        fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move {
                let options = RemoveImageOptionsBuilder::new().force(true).build();
                match self.docker.remove_image(image, Some(options), None).await {
                    Ok(_)
                    | Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(()),
                    Err(e) => Err(self.error(e)),
                }
            })
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn exit_codes_are_read_from_docker_messages() {
            assert_eq!(
                super::exit_code_of("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
                Some(3)
            );
            assert_eq!(super::exit_code_of("something else"), None);
        }
    }
}

pub mod synthetic {
    //! A runtime that builds nothing: it reads the "Dockerfile" from the build context as
    //! a script of output to produce, so benchmarks and tests measure Slipway alone.
    //!
    //! ```text
    //! lines 100000      # output lines to print
    //! interval_us 500   # pause between lines (0: as fast as the log takes them)
    //! burst 300         # the first 300 lines without a pause, then at the interval
    //! steps 10          # "Step k/n" lines spread over the output
    //! size 80           # pad lines to about this many bytes
    //! delay_ms 2000     # wait before the first line
    //! hold              # never finish (until cancelled)
    //! ```
    //!
    //! Every line carries `t=<microseconds since the Unix epoch>` of the moment it was
    //! produced, so a client can measure the latency of each line.

    use super::*;
    use std::io::Read;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Script {
        pub lines: u64,
        pub interval_us: u64,
        pub burst: u64,
        pub steps: u64,
        pub size: usize,
        pub delay_ms: u64,
        pub hold: bool,
    }

    impl Script {
        pub fn parse(text: &str) -> Script {
            let mut script = Script::default();
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or_default();
                let mut words = line.split_whitespace();
                let (Some(key), value) = (words.next(), words.next()) else {
                    continue;
                };
                let number = value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                match key {
                    "lines" => script.lines = number,
                    "interval_us" => script.interval_us = number,
                    "burst" => script.burst = number,
                    "steps" => script.steps = number,
                    "size" => script.size = number as usize,
                    "delay_ms" => script.delay_ms = number,
                    "hold" => script.hold = true,
                    _ => {}
                }
            }
            script
        }
    }

    pub fn now_us() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    }

    /// Reads `t=<micros>` from a line of synthetic output.
    pub fn produced_at(line: &str) -> Option<u128> {
        let rest = &line[line.find("t=")? + 2..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// The largest build context the synthetic runtime reads (it holds it in memory).
    const MAX_CONTEXT: usize = 64 * 1024 * 1024;

    #[derive(Default)]
    pub struct SyntheticRuntime {
        containers: std::sync::atomic::AtomicU64,
        /// Containers settle at once (otherwise in the engine's usual 3 s).
        instant: bool,
    }

    impl SyntheticRuntime {
        /// One whose containers need no time to settle: `SLIPWAY_RUNTIME=synthetic`,
        /// where only Slipway's own work is measured (the cluster's tests).
        pub fn instant() -> SyntheticRuntime {
            SyntheticRuntime {
                instant: true,
                ..SyntheticRuntime::default()
            }
        }
    }

    fn script_from_tar(tar_bytes: &[u8], path: &str) -> Result<Script, RuntimeError> {
        let mut archive = tar::Archive::new(tar_bytes);
        let entries = archive
            .entries()
            .map_err(|e| RuntimeError::Other(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| RuntimeError::Other(e.to_string()))?;
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().trim_start_matches("./").to_owned())
                .unwrap_or_default();
            if name == path.trim_start_matches("./") {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| RuntimeError::Other(e.to_string()))?;
                return Ok(Script::parse(&text));
            }
        }
        Err(RuntimeError::Other(format!(
            "no {path} in the build context"
        )))
    }

    impl Runtime for SyntheticRuntime {
        fn settle_time(&self) -> std::time::Duration {
            if self.instant {
                std::time::Duration::ZERO
            } else {
                std::time::Duration::from_secs(3)
            }
        }

        fn build(
            &self,
            request: BuildRequest,
            output: mpsc::Sender<String>,
        ) -> BoxFuture<'_, Result<String, RuntimeError>> {
            Box::pin(async move {
                let context = request
                    .context
                    .read_all(MAX_CONTEXT)
                    .await
                    .map_err(|e| RuntimeError::Other(e.to_string()))?;
                let script = script_from_tar(&context, &request.dockerfile)?;
                tokio::time::sleep(Duration::from_millis(script.delay_ms)).await;
                let start = tokio::time::Instant::now();
                // No steps: never print a Step line.
                let every = script
                    .lines
                    .checked_div(script.steps)
                    .map_or(u64::MAX, |e| e.max(1));
                let closed = || RuntimeError::Other("build output closed".into());
                for n in 1..=script.lines {
                    if script.interval_us > 0 && n > script.burst {
                        // tokio's timer ticks in milliseconds: lines due within one tick
                        // go out together, on schedule on average.
                        let paced = n - script.burst;
                        tokio::time::sleep_until(
                            start + Duration::from_micros(script.interval_us * paced),
                        )
                        .await;
                    }
                    if n % every == 1 || every == 1 {
                        let k = n / every + 1;
                        output
                            .send(format!(
                                "Step {k}/{} : synthetic t={}\n",
                                script.steps,
                                now_us()
                            ))
                            .await
                            .map_err(|_| closed())?;
                    }
                    let mut line = format!("synthetic line {n} t={}", now_us());
                    if line.len() < script.size {
                        line.push(' ');
                        line.extend(std::iter::repeat_n('.', script.size - line.len()));
                    }
                    line.push('\n');
                    output.send(line).await.map_err(|_| closed())?;
                }
                if script.hold {
                    std::future::pending::<()>().await;
                }
                Ok("sha256:synthetic".into())
            })
        }

        fn start(
            &self,
            _spec: ContainerSpec,
        ) -> BoxFuture<'_, Result<StartedContainer, RuntimeError>> {
            let n = self
                .containers
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                Ok(StartedContainer {
                    id: format!("synthetic-{n}"),
                    host_port: None,
                })
            })
        }

        fn state<'a>(
            &'a self,
            _container: &'a str,
        ) -> BoxFuture<'a, Result<ContainerState, RuntimeError>> {
            Box::pin(async { Ok(ContainerState::Running) })
        }

        fn tail<'a>(
            &'a self,
            _container: &'a str,
            _lines: usize,
        ) -> BoxFuture<'a, Result<String, RuntimeError>> {
            Box::pin(async { Ok(String::new()) })
        }

        fn remove<'a>(&'a self, _container: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async { Ok(()) })
        }

        fn remove_image<'a>(&'a self, _image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn scripts_parse_and_lines_carry_their_time() {
            let script = Script::parse(
                "# bench\nlines 10\ninterval_us 5 # fast\nsteps 2\nhold\nunknown 3\n",
            );
            assert_eq!(
                script,
                Script {
                    lines: 10,
                    interval_us: 5,
                    steps: 2,
                    hold: true,
                    ..Script::default()
                }
            );
            assert_eq!(
                produced_at("synthetic line 3 t=1795844872334716 ...\n"),
                Some(1_795_844_872_334_716)
            );
            assert_eq!(produced_at("no time here"), None);
        }
    }
}
