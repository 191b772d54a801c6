//! `SLIPWAY_RUNTIME=swarm`: every app is a Docker Swarm service, so its tasks may run on
//! any node of the swarm (PROTOCOL.md, "Docker Swarm").
//!
//! Images are built on this engine (the classic builder), pushed to `SLIPWAY_REGISTRY`
//! and pinned by digest, so every node runs exactly the image that was built. Each app
//! is one service with one replica, updated `start-first` (the new task must pass the
//! image's health check before the old one stops) and rolled back by Swarm when it does
//! not; the outcome is read from the service's `UpdateStatus` (`docker service update`
//! exits 0 even after a rollback). Services publish nothing: the routing mesh and
//! virtual IPs need the kernel's IPVS, so apps use DNS round-robin on one attachable
//! overlay network, and the edge, a Swarm service on that network, dials them by
//! service name.

use crate::runtime::docker::DockerRuntime;
use crate::runtime::{
    BuildRequest, ContainerSpec, ContainerState, LogChunk, Runtime, RuntimeError, StartedContainer,
};
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    Limit, Mount, MountType, NetworkAttachmentConfig, NetworkCreateRequest, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    BuildImageOptions, InspectServiceOptions, ListTasksOptionsBuilder, PushImageOptions,
    TagImageOptions, UpdateServiceOptions,
};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// Between looks at a service while it converges (the engine's state, not a viewer-facing
/// poll: viewers get each change as a log line the moment it is seen).
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// After the new task is healthy, Swarm watches it this long before the update counts as
/// completed (a task that dies at once still rolls back).
const UPDATE_MONITOR: Duration = Duration::from_secs(2);
/// A new service whose tasks failed this many times is given up.
const MAX_FAILED_TASKS: usize = 3;

/// The overlay network of apps and edges.
pub const NETWORK: &str = "slipway";

/// A node's edge service: `slipway-edge-` and its name in the letters services take.
pub fn edge_service(node_name: &str) -> String {
    let mut name: String = node_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    name = name.trim_matches('-').to_owned();
    format!("slipway-edge-{name}")
}

fn nanos(duration: Duration) -> i64 {
    duration.as_nanos() as i64
}

pub struct SwarmRuntime {
    engine: DockerRuntime,
    registry: String,
    /// The overlay network apps and the edge share.
    network: String,
    /// This manager node: the edge runs here, where its directory is.
    node: String,
    /// This Slipway node's edge service.
    edge: String,
}

/// What a deployment asks of its app's service.
pub struct ServiceRequest {
    pub name: String,
    /// Pinned by digest.
    pub image: String,
    pub env: BTreeMap<String, String>,
    pub labels: HashMap<String, String>,
    pub limits: crate::runtime::Limits,
}

impl SwarmRuntime {
    /// Checks that the engine is a swarm manager and makes the shared overlay network.
    /// Names are the same from every Slipway node of a cluster (one installation per
    /// swarm): service `slipway-<app>`, network `slipway`; each node runs its own edge,
    /// `slipway-edge-<node>`.
    pub async fn connect(
        engine: DockerRuntime,
        registry: &str,
        node_name: &str,
    ) -> Result<SwarmRuntime, RuntimeError> {
        let info = engine.client().info().await.map_err(|e| engine.error(e))?;
        let swarm = info.swarm.unwrap_or_default();
        let node = swarm.node_id.filter(|id| !id.is_empty());
        let (Some(node), Some(true)) = (node, swarm.control_available) else {
            return Err(RuntimeError::Other(
                "SLIPWAY_RUNTIME=swarm: this Docker engine is not a swarm manager (run scripts/swarm.sh up, or docker swarm init)".into(),
            ));
        };
        let runtime = SwarmRuntime {
            engine,
            registry: registry.trim_end_matches('/').to_owned(),
            network: NETWORK.to_owned(),
            node,
            edge: edge_service(node_name),
        };
        runtime.ensure_overlay().await?;
        Ok(runtime)
    }

    async fn ensure_overlay(&self) -> Result<(), RuntimeError> {
        let docker = self.engine.client();
        match docker.inspect_network(&self.network, None).await {
            Ok(_) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.engine.error(e)),
        }
        let request = NetworkCreateRequest {
            name: self.network.clone(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(HashMap::from([(
                "slipway.managed".to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(self.engine.error(e)),
        }
    }

    /// The service of an app.
    pub fn service_name(&self, app: &str) -> String {
        format!("slipway-{app}")
    }

    /// Where the edge reaches a service's port: its name on the overlay network.
    pub fn dial(&self, service: &str, port: u16) -> String {
        format!("{service}:{port}")
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Pushes a built image to the registry, sending what the push reports to `output`;
    /// answers the image pinned by digest (`registry/repository@sha256:...`).
    pub async fn push(
        &self,
        local: &str,
        output: &mpsc::Sender<String>,
    ) -> Result<String, RuntimeError> {
        let docker = self.engine.client();
        let (name, tag) = local.rsplit_once(':').unwrap_or((local, "latest"));
        let repository = format!("{}/{name}", self.registry);
        docker
            .tag_image(
                local,
                Some(TagImageOptions {
                    repo: Some(repository.clone()),
                    tag: Some(tag.to_owned()),
                }),
            )
            .await
            .map_err(|e| self.engine.error(e))?;
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let mut pushing = docker.push_image(&repository, Some(options), None);
        let mut reported = std::collections::HashSet::new();
        while let Some(info) = pushing.next().await {
            let info = info.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => RuntimeError::Other(
                    format!("pushing to the registry {} failed: {error}", self.registry),
                ),
                other => self.engine.error(other),
            })?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Other(format!(
                    "pushing to the registry {} failed: {detail}",
                    self.registry
                )));
            }
            // What the push does ("Pushed", "Layer already exists", the digest), each
            // once, not the byte counts in between.
            let counting = info.progress_detail.is_some_and(|p| p.current.is_some());
            if let Some(status) = info.status
                && !counting
                && reported.insert(status.clone())
            {
                let _ = output.send(format!("{status}\n")).await;
            }
        }
        let inspected = docker
            .inspect_image(&format!("{repository}:{tag}"))
            .await
            .map_err(|e| self.engine.error(e))?;
        let prefix = format!("{repository}@");
        let pinned = inspected
            .repo_digests
            .unwrap_or_default()
            .into_iter()
            .find(|d| d.starts_with(&prefix))
            .ok_or_else(|| {
                RuntimeError::Other(format!(
                    "the registry {} answered no digest for {repository}:{tag}",
                    self.registry
                ))
            })?;
        Ok(pinned)
    }

    /// One replica of `task` on the overlay network, reached by DNS round-robin, started
    /// again `restart_delay` after it exits; a `force_update` above the current one makes
    /// Swarm start a new task even for the same spec.
    fn one_replica(
        &self,
        name: String,
        labels: HashMap<String, String>,
        task: TaskSpec,
        restart_delay: Duration,
        force_update: u64,
        ports: Option<Vec<EndpointPortConfig>>,
    ) -> ServiceSpec {
        ServiceSpec {
            name: Some(name),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                    delay: Some(nanos(restart_delay)),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(self.network.clone()),
                    ..Default::default()
                }]),
                force_update: Some(force_update),
                ..task
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports,
            }),
            ..Default::default()
        }
    }

    fn spec(&self, request: ServiceRequest, force_update: u64) -> ServiceSpec {
        let limits = request.limits;
        let task = TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(request.image),
                env: Some(
                    request
                        .env
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect(),
                ),
                capability_drop: Some(vec!["ALL".into()]),
                capability_add: Some(vec!["NET_BIND_SERVICE".into()]),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some((limits.cpus * 1e9) as i64),
                    memory_bytes: Some(i64::from(limits.memory_mb) * 1024 * 1024),
                    pids: Some(limits.pids),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let skeleton = self.one_replica(
            request.name,
            request.labels,
            task,
            Duration::from_secs(1),
            force_update,
            None,
        );
        ServiceSpec {
            update_config: Some(ServiceSpecUpdateConfig {
                parallelism: Some(1),
                delay: Some(0),
                failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
                monitor: Some(nanos(UPDATE_MONITOR)),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
            }),
            rollback_config: Some(ServiceSpecRollbackConfig {
                parallelism: Some(1),
                delay: Some(0),
                failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
                monitor: Some(nanos(UPDATE_MONITOR)),
                max_failure_ratio: Some(0.0),
                order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
            }),
            ..skeleton
        }
    }

    async fn inspect(&self, name: &str) -> Result<Option<bollard::models::Service>, RuntimeError> {
        match self
            .engine
            .client()
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(service) => Ok(Some(service)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.engine.error(e)),
        }
    }

    /// Creates the app's service, or updates it to the new image (always a new task, even
    /// for the image it runs already: a redeploy restarts it), and waits until Swarm says
    /// how it ended, telling `output` what the tasks do meanwhile. `Ok(true)`: the service
    /// was created (nothing served before).
    pub async fn deploy(
        &self,
        request: ServiceRequest,
        deadline: Duration,
        output: &mpsc::Sender<String>,
    ) -> Result<bool, RuntimeError> {
        let docker = self.engine.client();
        let name = request.name.clone();
        let began = tokio::time::Instant::now();
        let mut tasks = TaskWatch::default();
        match self.inspect(&name).await? {
            None => {
                docker
                    .create_service(self.spec(request, 0), None)
                    .await
                    .map_err(|e| self.engine.error(e))?;
                let _ = output
                    .send(format!(
                        "Created service {name}: 1 replica, start-first updates, rolled back on failure\n"
                    ))
                    .await;
                loop {
                    let listed = self.tasks(&name).await?;
                    self.name_nodes(&listed, &mut tasks).await;
                    tasks.report(&listed, output).await;
                    if tasks.serving(&listed) {
                        return Ok(true);
                    }
                    let failed = tasks.failed();
                    if failed.len() >= MAX_FAILED_TASKS || began.elapsed() >= deadline {
                        let last = failed.last().cloned().unwrap_or_else(|| {
                            format!("no task was healthy within {} s", deadline.as_secs())
                        });
                        return Err(RuntimeError::Other(format!(
                            "the service {name} did not start: {last}"
                        )));
                    }
                    tokio::time::sleep(LOOK_EVERY).await;
                }
            }
            Some(current) => {
                let previous = current
                    .update_status
                    .as_ref()
                    .and_then(|s| s.started_at.clone());
                let force = force_update_of(&current);
                tasks.know(&self.tasks(&name).await?);
                let options = UpdateServiceOptions {
                    version: version_of(&current),
                    ..Default::default()
                };
                docker
                    .update_service(&name, self.spec(request, force + 1), options, None)
                    .await
                    .map_err(|e| self.engine.error(e))?;
                let _ = output
                    .send(format!(
                        "Updating service {name}: the new task starts first and takes over once healthy\n"
                    ))
                    .await;
                let mut said = None;
                // Why Swarm rolled back, as it says when it starts to.
                let mut reason = None;
                loop {
                    let listed = self.tasks(&name).await?;
                    self.name_nodes(&listed, &mut tasks).await;
                    tasks.report(&listed, output).await;
                    let status = self
                        .inspect(&name)
                        .await?
                        .and_then(|s| s.update_status)
                        .filter(|s| s.started_at.is_some() && s.started_at != previous);
                    if let Some(status) = status {
                        let message = status.message.clone().unwrap_or_default();
                        let state = status.state.unwrap_or(ServiceUpdateStatusStateEnum::EMPTY);
                        if said.as_ref() != Some(&(state, message.clone())) {
                            let _ = output.send(format!("Swarm: {state}: {message}\n")).await;
                            said = Some((state, message.clone()));
                        }
                        if state == ServiceUpdateStatusStateEnum::ROLLBACK_STARTED {
                            reason.get_or_insert_with(|| message.clone());
                        }
                        let why = || {
                            let message = reason.clone().unwrap_or_else(|| message.clone());
                            match tasks.failed().last() {
                                Some(task) => format!("{message} (the new task: {task})"),
                                None => message,
                            }
                        };
                        match state {
                            ServiceUpdateStatusStateEnum::COMPLETED => return Ok(false),
                            ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => {
                                return Err(RuntimeError::RolledBack(why()));
                            }
                            ServiceUpdateStatusStateEnum::PAUSED
                            | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED => {
                                return Err(RuntimeError::Other(format!(
                                    "Swarm paused the update of {name}: {}",
                                    why()
                                )));
                            }
                            _ => {}
                        }
                    }
                    if began.elapsed() >= deadline {
                        self.roll_back(&name).await?;
                        return Err(RuntimeError::Other(format!(
                            "the new task of {name} was not healthy within {} s; Slipway asked Swarm to roll the update back",
                            deadline.as_secs()
                        )));
                    }
                    tokio::time::sleep(LOOK_EVERY).await;
                }
            }
        }
    }

    /// Asks Swarm to go back to the service's previous spec (start-first, as updates) if
    /// an update is under way: a deployment that stops before its update ended leaves
    /// what served before. An update that ended is left as it ended (after a rollback the
    /// previous spec is the failed one).
    pub async fn roll_back(&self, name: &str) -> Result<(), RuntimeError> {
        let Some(current) = self.inspect(name).await? else {
            return Ok(());
        };
        let updating = current.update_status.as_ref().and_then(|s| s.state)
            == Some(ServiceUpdateStatusStateEnum::UPDATING);
        if !updating {
            return Ok(());
        }
        let options = UpdateServiceOptions {
            version: version_of(&current),
            rollback: Some("previous".into()),
            ..Default::default()
        };
        let Some(spec) = current.spec else {
            return Ok(());
        };
        self.engine
            .client()
            .update_service(name, spec, options, None)
            .await
            .map_err(|e| self.engine.error(e))?;
        Ok(())
    }

    /// Learns the host names of the nodes `tasks` run on (once each), for the log.
    async fn name_nodes(&self, tasks: &[bollard::models::Task], watch: &mut TaskWatch) {
        for node in tasks.iter().filter_map(|t| t.node_id.as_deref()) {
            if watch.nodes.contains_key(node) {
                continue;
            }
            let name = match self.engine.client().inspect_node(node).await {
                Ok(found) => found
                    .description
                    .and_then(|d| d.hostname)
                    .unwrap_or_else(|| short(node).to_owned()),
                Err(_) => short(node).to_owned(),
            };
            watch.nodes.insert(node.to_owned(), name);
        }
    }

    async fn tasks(&self, service: &str) -> Result<Vec<bollard::models::Task>, RuntimeError> {
        let filters = HashMap::from([("service".to_owned(), vec![service.to_owned()])]);
        let options = ListTasksOptionsBuilder::new().filters(&filters).build();
        self.engine
            .client()
            .list_tasks(Some(options))
            .await
            .map_err(|e| self.engine.error(e))
    }

    /// Runs the edge (Caddy from `caddy`, started with `caddy run --config <config>`) as a
    /// service on this node, its directory `dir` mounted at the same path, its ports
    /// published on the node itself (host mode). A service already there is updated in
    /// place; it keeps serving while Slipway restarts.
    pub async fn run_edge(
        &self,
        caddy: &Path,
        dir: &Path,
        config: &Path,
        ports: &[u16],
    ) -> Result<(), RuntimeError> {
        let image = self.edge_image(caddy).await?;
        let name = self.edge.clone();
        let dir = dir.display().to_string();
        let env = [
            format!("HOME={dir}"),
            format!("XDG_DATA_HOME={dir}/xdg-data"),
            format!("XDG_CONFIG_HOME={dir}/xdg-config"),
        ];
        // The node's own ports: the routing mesh does not answer everywhere.
        let published: Vec<EndpointPortConfig> = ports
            .iter()
            .map(|port| EndpointPortConfig {
                target_port: Some(i64::from(*port)),
                published_port: Some(i64::from(*port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            })
            .collect();
        let spec = |force_update| {
            let task = TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.clone()),
                    args: Some(vec![
                        "run".into(),
                        "--config".into(),
                        config.display().to_string(),
                    ]),
                    env: Some(env.to_vec()),
                    mounts: Some(vec![Mount {
                        target: Some(dir.clone()),
                        source: Some(dir.clone()),
                        typ: Some(MountType::BIND),
                        ..Default::default()
                    }]),
                    // In-flight requests get the drain time when it stops.
                    stop_grace_period: Some(nanos(Duration::from_secs(15))),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(vec![format!("node.id=={}", self.node)]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.one_replica(
                name.clone(),
                HashMap::from([("slipway.managed".to_owned(), "true".to_owned())]),
                task,
                Duration::from_millis(250),
                force_update,
                Some(published.clone()),
            )
        };
        let docker = self.engine.client();
        match self.inspect(&name).await? {
            None => {
                docker
                    .create_service(spec(0), None)
                    .await
                    .map_err(|e| self.engine.error(e))?;
            }
            Some(current) => {
                let options = UpdateServiceOptions {
                    version: version_of(&current),
                    ..Default::default()
                };
                // The same spec changes nothing: a running edge keeps its connections.
                docker
                    .update_service(&name, spec(force_update_of(&current)), options, None)
                    .await
                    .map_err(|e| self.engine.error(e))?;
            }
        }
        Ok(())
    }

    /// The edge's image: the Caddy binary alone, built here and pushed, pinned by digest.
    async fn edge_image(&self, caddy: &Path) -> Result<String, RuntimeError> {
        let binary = tokio::fs::read(caddy).await.map_err(|e| {
            RuntimeError::Other(format!(
                "the edge's Caddy binary {}: {e} (SLIPWAY_CADDY)",
                caddy.display()
            ))
        })?;
        let dockerfile = "FROM scratch\nCOPY caddy /caddy\nENTRYPOINT [\"/caddy\"]\n";
        let context = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut archive = tar::Builder::new(Vec::new());
            for (path, data, mode) in [
                ("Dockerfile", dockerfile.as_bytes(), 0o644),
                ("caddy", binary.as_slice(), 0o755),
            ] {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(mode);
                header.set_cksum();
                archive.append_data(&mut header, path, data)?;
            }
            archive.into_inner()
        })
        .await
        .map_err(|e| RuntimeError::Other(e.to_string()))?
        .map_err(|e| RuntimeError::Other(e.to_string()))?;
        let tag = format!("{}:latest", self.edge.replacen('-', "/", 1));
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.clone()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut building = self.engine.client().build_image(
            options,
            None,
            Some(bollard::body_full(context.into())),
        );
        while let Some(step) = building.next().await {
            let step = step.map_err(|e| self.engine.error(e))?;
            if let Some(detail) = step.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Other(format!(
                    "building the edge's image failed: {detail}"
                )));
            }
        }
        let (quiet, _) = mpsc::channel(1);
        self.push(&tag, &quiet).await
    }

    /// An app's service: is a task of it running (and, with a health check, healthy)?
    async fn service_state(&self, service: &str) -> Result<ContainerState, RuntimeError> {
        if self.inspect(service).await?.is_none() {
            return Ok(ContainerState::Missing);
        }
        let tasks = self.tasks(service).await?;
        Ok(if tasks.iter().any(serves) {
            ContainerState::Running
        } else {
            ContainerState::Exited { code: -1 }
        })
    }
}

/// The service's version, which an update must name (Swarm refuses a stale one).
fn version_of(service: &bollard::models::Service) -> i32 {
    service.version.as_ref().and_then(|v| v.index).unwrap_or(0) as i32
}

/// How many times the service's tasks were forced to restart so far.
fn force_update_of(service: &bollard::models::Service) -> u64 {
    service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.force_update)
        .unwrap_or(0)
}

/// The task runs (after its health check, when the image has one) and should.
fn serves(task: &bollard::models::Task) -> bool {
    task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
        && task.desired_state == Some(TaskState::RUNNING)
}

/// What the tasks of a service did, so each change is told once.
#[derive(Default)]
struct TaskWatch {
    seen: HashMap<String, (Option<TaskState>, String)>,
    failed: Vec<String>,
    /// Node ids and their host names.
    nodes: HashMap<String, String>,
}

impl TaskWatch {
    /// Tasks that existed before: only their changes from now on are told.
    fn know(&mut self, tasks: &[bollard::models::Task]) {
        for task in tasks {
            if let Some(id) = &task.id {
                let status = task.status.clone().unwrap_or_default();
                self.seen.insert(
                    id.clone(),
                    (status.state, status.err.clone().unwrap_or_default()),
                );
            }
        }
    }

    async fn report(&mut self, tasks: &[bollard::models::Task], output: &mpsc::Sender<String>) {
        let mut tasks: Vec<_> = tasks.iter().collect();
        tasks.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        for task in tasks {
            let Some(id) = &task.id else { continue };
            let status = task.status.clone().unwrap_or_default();
            let err = status.err.clone().unwrap_or_default();
            let now = (status.state, err.clone());
            if self.seen.get(id) == Some(&now) {
                continue;
            }
            let state = status.state.map(|s| s.to_string()).unwrap_or_default();
            let node = match task.node_id.as_deref() {
                Some(id) => self.nodes.get(id).map_or(short(id), String::as_str),
                None => "-",
            };
            let mut line = format!("Task {} on node {node}: {state}", short(id));
            if let Some(message) = status.message.filter(|m| !m.is_empty()) {
                line.push_str(&format!(" ({message})"));
            }
            if !err.is_empty() {
                line.push_str(&format!(": {err}"));
            }
            if matches!(status.state, Some(TaskState::FAILED | TaskState::REJECTED))
                && self.seen.get(id).map(|s| s.0) != Some(status.state)
            {
                self.failed
                    .push(if err.is_empty() { state.clone() } else { err });
            }
            self.seen.insert(id.clone(), now);
            let _ = output.send(format!("{line}\n")).await;
        }
    }

    /// A task of `tasks` serves.
    fn serving(&self, tasks: &[bollard::models::Task]) -> bool {
        tasks.iter().any(serves)
    }

    fn failed(&self) -> &[String] {
        &self.failed
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Builds on the engine; everything that runs is a service.
impl Runtime for SwarmRuntime {
    fn build(
        &self,
        request: BuildRequest,
        output: mpsc::Sender<String>,
    ) -> BoxFuture<'_, Result<String, RuntimeError>> {
        self.engine.build(request, output)
    }

    fn start(&self, _spec: ContainerSpec) -> BoxFuture<'_, Result<StartedContainer, RuntimeError>> {
        Box::pin(async {
            Err(RuntimeError::Other(
                "with SLIPWAY_RUNTIME=swarm apps run as services, not containers".into(),
            ))
        })
    }

    fn state<'a>(
        &'a self,
        container: &'a str,
    ) -> BoxFuture<'a, Result<ContainerState, RuntimeError>> {
        Box::pin(self.service_state(container))
    }

    fn tail<'a>(
        &'a self,
        service: &'a str,
        lines: usize,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            let options = DockerRuntime::tail_options(lines);
            let output = self.engine.client().service_logs(service, Some(options));
            self.engine.text_of(output).await
        })
    }

    /// Removes an app's service (or a container a single-engine run left).
    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            match self.engine.client().delete_service(name).await {
                Ok(()) => Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => self.engine.remove(name).await,
                Err(e) => Err(self.engine.error(e)),
            }
        })
    }

    fn remove_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.engine.remove_image(image)
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        self.engine.ping()
    }

    /// The output of all the service's tasks, on whichever nodes they run.
    fn follow_logs(
        &self,
        service: &str,
        since: Option<String>,
    ) -> futures_util::stream::BoxStream<'static, Result<LogChunk, RuntimeError>> {
        let output = self
            .engine
            .client()
            .service_logs(service, Some(self.engine.follow_options(since)));
        self.engine.chunks(output)
    }

    fn swarm(&self) -> Option<&SwarmRuntime> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_names_its_edge_in_the_letters_services_take() {
        assert_eq!(edge_service("vm:3000"), "slipway-edge-vm-3000");
        assert_eq!(
            edge_service("Node_B.example"),
            "slipway-edge-node-b-example"
        );
        let long = edge_service(&"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
    }

    fn task(id: &str, state: TaskState, err: Option<&str>) -> bollard::models::Task {
        bollard::models::Task {
            id: Some(id.into()),
            node_id: Some("node0123456789".into()),
            desired_state: Some(TaskState::RUNNING),
            status: Some(bollard::models::TaskStatus {
                state: Some(state),
                err: err.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn each_task_change_is_told_once_and_failures_are_kept() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut watch = TaskWatch::default();
        watch.know(&[task("old", TaskState::RUNNING, None)]);
        watch
            .nodes
            .insert("node0123456789".into(), "server-2".into());
        watch
            .report(
                &[
                    task("old", TaskState::RUNNING, None),
                    task("new", TaskState::STARTING, None),
                ],
                &tx,
            )
            .await;
        let unhealthy = "task: non-zero exit (137): dockerexec: unhealthy container";
        let now = [
            task("old", TaskState::RUNNING, None),
            task("new", TaskState::FAILED, Some(unhealthy)),
        ];
        watch.report(&now, &tx).await;
        watch.report(&now, &tx).await;
        drop(tx);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        assert_eq!(
            lines,
            [
                "Task new on node server-2: starting\n".to_owned(),
                format!("Task new on node server-2: failed: {unhealthy}\n"),
            ]
        );
        assert_eq!(watch.failed(), [unhealthy.to_owned()]);
        assert!(watch.serving(&now), "the old task still serves");
    }
}
