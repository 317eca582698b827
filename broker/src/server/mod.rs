//! The broker process: gRPC services, the HTTP listener, retention, graceful shutdown.
//!
//! ```text
//! start(config, shutdown) ─► Registry::open (recovery of every partition)
//!                          ├► gRPC  (Broker, Admin, grpc.health.v1) on server.listen
//!                          ├► HTTP  (/health, /ready, /metrics)      on server.http_listen
//!                          └► retention pass every retention.check_interval_ms
//! shutdown.cancel() ─► stop accepting ─► in-flight requests finish (bounded by
//!                      server.shutdown_timeout_ms) ─► every log synced and closed
//! ```
//!
//! [`start`] takes its shutdown signal as an argument, so tests run brokers in-process on
//! port 0 and stop them at will; the binary wires it to SIGINT and SIGTERM.

mod access;
pub mod cluster;
pub mod grpc;
mod http;
pub(crate) mod incoming;
pub mod metrics;
mod replica_fetcher;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brook_proto::v1::admin_server::AdminServer;
use brook_proto::v1::broker_server::BrokerServer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::controller::ControllerError;
use crate::config::{BrokerConfig, BrokerConfigError};
use crate::group::{Coordinator, GroupConfig, OffsetStoreError};
use crate::log::LogError;
use crate::partition::{ProducerIds, Registry, RegistryError};
use crate::security::acl::Operation;
use crate::security::authz::AclStoreError;
use crate::security::tls::Listener;
use crate::security::{self, AuthError, Authenticator, Authorizer, LocalAcls, Tls, TlsError};
use brook_proto::v1::groups_server::GroupsServer;
use cluster::ClusterRole;
use grpc::{AdminService, BrokerService, GroupsService};
use tonic::service::interceptor::InterceptedService;

/// HTTP/2 flow-control window per stream (bytes).
pub const HTTP2_STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 flow-control window per connection (bytes).
pub const HTTP2_CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame the broker accepts (bytes; the protocol's ceiling is 16 MiB - 1).
pub const HTTP2_MAX_FRAME: u32 = 1 << 20;

/// What the services share.
#[derive(Debug)]
pub struct BrokerContext {
    /// The configuration the broker started with.
    pub config: BrokerConfig,
    /// Topics and partitions.
    pub registry: Registry,
    /// Idempotent producers' ids.
    pub producer_ids: ProducerIds,
    /// Consumer groups and committed offsets.
    pub coordinator: Coordinator,
    /// The bound gRPC address (advertised in metadata).
    pub grpc_addr: SocketAddr,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    /// True once both listeners serve.
    pub ready: AtomicBool,
    /// Prometheus rendering.
    pub metrics: PrometheusHandle,
    /// This broker's part in a cluster; `None` for a single broker.
    pub cluster: Option<Arc<ClusterRole>>,
    /// TLS material; `None` when `[tls]` is off.
    pub tls: Option<Arc<Tls>>,
    /// Turns each request's credentials into its principal.
    pub authenticator: Arc<Authenticator>,
    /// Decides what each principal may do.
    pub authorizer: Arc<Authorizer>,
    /// The ACLs of a broker that runs alone; `None` in a cluster (they are in its metadata).
    pub local_acls: Option<LocalAcls>,
}

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] BrokerConfigError),
    /// The data directory could not be opened.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The `[auth]` key files could not be loaded.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The ACL file could not be read.
    #[error(transparent)]
    Acls(#[from] AclStoreError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// The group coordinator could not load committed offsets.
    #[error(transparent)]
    Offsets(#[from] OffsetStoreError),
    /// The controller quorum could not start.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The data directory holds topics made by this broker alone, and it is joining a cluster.
    #[error(
        "the data directory holds topics created outside a cluster ({}): a broker joins a cluster with a data directory of its own, or without such topics",
        topics.join(", ")
    )]
    StandaloneTopics {
        /// The topics.
        topics: Vec<String>,
    },
    /// Closing the logs failed (the next start recovers them).
    #[error("closing logs: {0}")]
    Close(#[from] LogError),
}

/// A started broker.
#[derive(Debug)]
pub struct RunningBroker {
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Shared state (tests inspect the registry through it).
    pub context: Arc<BrokerContext>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningBroker {
    /// Asks the broker to stop (same as cancelling the token given to [`start`]).
    pub fn shutdown(&self) {
        self.context.shutdown.cancel();
    }

    /// Waits until the broker stopped and its logs are closed.
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await.expect("broker task panicked")
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

/// Opens the data directory, binds both listeners and serves until `shutdown` is cancelled.
pub async fn start(
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> Result<RunningBroker, ServerError> {
    config.validate()?;
    let registry = Registry::open(
        config.server.data_dir.clone(),
        config.log.clone(),
        config.server.max_partitions_per_topic,
    )
    .await?;
    let mut producer_ids =
        ProducerIds::open(&config.server.data_dir).map_err(RegistryError::from)?;
    if !config.cluster.voters()?.is_empty() {
        producer_ids = producer_ids.in_cluster(config.server.node_id);
    }
    let groups = &config.groups;
    let group_config = GroupConfig {
        session_timeout: Duration::from_millis(groups.session_timeout_ms),
        rebalance_timeout: Duration::from_millis(groups.rebalance_timeout_ms),
        heartbeat_interval: Duration::from_millis(groups.heartbeat_interval_ms),
        ..GroupConfig::default()
    };
    let alone = config.cluster.voters()?.is_empty();
    let commit_timeout = Duration::from_millis(config.server.produce_timeout_ms);
    let coordinator = Coordinator::open(&registry, group_config, commit_timeout, alone).await?;
    let tls = Tls::load(&config.tls)?.map(Arc::new);
    let authenticator = Arc::new(Authenticator::load(&config.auth)?);
    let data_dir = &config.server.data_dir;
    let authorizer = Arc::new(Authorizer::new(&config.authorization, data_dir)?);
    let local_acls = match alone {
        true => Some(LocalAcls::open(data_dir)?),
        false => None,
    };
    let cluster = match ClusterRole::start(&config, tls.clone()).await? {
        Some(role) => {
            let topics = cluster::standalone_topics(&registry);
            if !topics.is_empty() {
                role.stop().await;
                return Err(ServerError::StandaloneTopics { topics });
            }
            Some(Arc::new(role))
        }
        None => None,
    };
    let grpc_listener = bind("gRPC", config.server.listen).await?;
    let http_listener = bind("HTTP", config.server.http_listen).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            what: "gRPC",
            addr: config.server.listen,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            what: "HTTP",
            addr: config.server.http_listen,
            source,
        })?;
    let ctx = Arc::new(BrokerContext {
        config,
        registry,
        producer_ids,
        coordinator,
        grpc_addr,
        shutdown: shutdown.clone(),
        ready: AtomicBool::new(false),
        metrics: metrics::prometheus(),
        cluster,
        tls,
        authenticator,
        authorizer,
        local_acls,
    });
    let task = tokio::spawn(serve(ctx.clone(), grpc_listener, http_listener));
    tracing::info!(grpc = %grpc_addr, http = %http_addr, cluster_id = ctx.registry.cluster_id(), tls = ctx.tls.is_some(), "broker started");
    Ok(RunningBroker {
        grpc_addr,
        http_addr,
        context: ctx,
        task,
    })
}

async fn serve(
    ctx: Arc<BrokerContext>,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
) -> Result<(), ServerError> {
    let server = &ctx.config.server;
    let shutdown = ctx.shutdown.clone();
    let http_addr = (http_listener.local_addr()).map_err(ServerError::Http)?;
    let grpc_conns = incoming::accept(
        grpc_listener,
        Listener::Grpc,
        server.max_connections,
        ctx.tls.clone(),
    );
    let http_tls = ctx.tls.clone().filter(|_| ctx.config.tls.http);
    let http_conns = incoming::accept(
        http_listener,
        Listener::Http,
        server.max_connections,
        http_tls,
    );
    // SIGHUP is caught before the broker reports ready, so one from then on reloads.
    let reload_tls = ctx.tls.clone().map(|tls| {
        let every = Duration::from_millis(ctx.config.tls.reload_interval_ms);
        let hangups = security::hangups();
        tokio::spawn(security::reload_loop(tls, every, hangups, shutdown.clone()))
    });
    let reload_keys = (ctx.authenticator.takes_tokens()).then(|| {
        let every = Duration::from_millis(ctx.config.auth.reload_interval_ms);
        let (keys, hangups) = (ctx.authenticator.clone(), security::hangups());
        tokio::spawn(security::reload_loop(
            keys,
            every,
            hangups,
            shutdown.clone(),
        ))
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<BrokerServer<BrokerService>>().await;
    health.set_serving::<AdminServer<AdminService>>().await;
    let broker = BrokerServer::new(BrokerService::new(ctx.clone()))
        .max_decoding_message_size(server.max_request_bytes)
        .max_encoding_message_size(usize::MAX);
    let groups = GroupsServer::new(GroupsService::new(ctx.clone()))
        .max_decoding_message_size(server.max_request_bytes);
    let admin = AdminServer::new(AdminService::new(ctx.clone()))
        .max_decoding_message_size(server.max_request_bytes);
    // Every service but health (probes) authenticates its requests first.
    let authn = security::authenticate(ctx.authenticator.clone());
    // The quorum, heartbeats and forwarded commands: ClusterAction, which brokers have.
    let brokers_only = {
        let (ctx, mut authn) = (ctx.clone(), authn.clone());
        move |request: tonic::Request<()>| {
            let request = authn(request)?;
            let caller = security::Caller::of(&request);
            ctx.authorize_cluster(&caller, "ControllerQuorum", Operation::ClusterAction)?;
            Ok(request)
        }
    };
    // Batches are large: big HTTP/2 windows and frames keep a 1 MB produce from crawling
    // through 64 KiB windows and 16 KiB frames.
    let grpc =
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(HTTP2_STREAM_WINDOW))
            .initial_connection_window_size(Some(HTTP2_CONNECTION_WINDOW))
            .max_frame_size(Some(HTTP2_MAX_FRAME))
            .add_service(health_service)
            .add_service(InterceptedService::new(broker, authn.clone()))
            .add_service(InterceptedService::new(admin, authn.clone()))
            .add_service(InterceptedService::new(groups, authn.clone()))
            .add_optional_service((ctx.cluster.as_ref()).map(|c| {
                InterceptedService::new(c.controller().service().into_server(), brokers_only)
            }))
            .serve_with_incoming_shutdown(
                incoming::stream(grpc_conns),
                shutdown.clone().cancelled_owned(),
            );
    let http = axum::serve(
        incoming::HttpListener::new(http_conns, http_addr),
        http::router(ctx.clone()),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .into_future();
    let retention = tokio::spawn(retention_loop(ctx.clone()));
    let expiry = tokio::spawn(group_expiry_loop(ctx.clone()));
    let cluster_tasks = (ctx.cluster.as_ref()).map_or_else(Vec::new, |c| c.spawn(ctx.clone()));
    // A clean stop first asks the controller to move this broker's leaderships away.
    let leaving = async {
        shutdown.cancelled().await;
        if let Some(cluster) = &ctx.cluster {
            cluster.leave().await;
        }
    };
    ctx.ready.store(true, Ordering::Release);

    // In-flight requests get shutdown_timeout_ms to finish once shutdown begins.
    let grace = Duration::from_millis(server.shutdown_timeout_ms);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let served = tokio::select! {
        r = async { tokio::join!(grpc, http, leaving) } => Some((r.0, r.1)),
        _ = deadline => None,
    };
    health
        .set_not_serving::<BrokerServer<BrokerService>>()
        .await;
    retention.abort();
    expiry.abort();
    for reload in [reload_tls, reload_keys].into_iter().flatten() {
        reload.abort();
    }
    for task in cluster_tasks {
        task.abort();
    }
    if let Some(cluster) = &ctx.cluster {
        cluster.stop().await;
    }
    let closed = ctx.registry.close().await;
    tracing::info!("broker stopped");
    match served {
        Some((grpc, http)) => {
            grpc?;
            http.map_err(ServerError::Http)?;
        }
        None => tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "in-flight requests did not finish in time"
        ),
    }
    closed?;
    Ok(())
}

async fn group_expiry_loop(ctx: Arc<BrokerContext>) {
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(grpc::EXPIRY_INTERVAL) => {}
        }
        for (group, eviction) in ctx.coordinator.expire().await {
            tracing::info!(group, ?eviction, "evicted group member");
        }
    }
}

async fn retention_loop(ctx: Arc<BrokerContext>) {
    let every = Duration::from_millis(ctx.config.retention.check_interval_ms);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for topic in ctx.registry.topics().values() {
            for p in &topic.partitions {
                if let Err(e) = p.log().enforce_retention().await {
                    tracing::error!(topic = %topic.name, partition = p.id(), cause = %e, "retention pass failed");
                }
            }
        }
    }
}
