//! Security: TLS on the listeners and between brokers, and who each request comes from
//! (docs/security.md).
//!
//! - [`tls`]: the `[tls]` files as rustls configurations, reloaded on change or SIGHUP.
//! - [`auth`]: a request's [`Principal`] from its bearer token or client certificate;
//!   [`authenticate`] runs it in front of every gRPC service.
//! - [`authz`]: what each principal may do, by the ACLs; denials counted and audited.
//! - [`peer_endpoint`]: how this broker reaches another one (plain or TLS, by the same
//!   settings).

pub mod acl;
pub mod auth;
pub mod authz;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

pub use auth::{AuthError, Authenticator, Principal, Rejection};
pub use authz::{Authorizer, Caller, LocalAcls};
pub use tls::{Tls, TlsError};

use crate::server::incoming::PeerInfo;

/// The gRPC interceptor in front of every service: authenticates the request and puts its
/// [`Principal`] into the request's extensions, or refuses it with `UNAUTHENTICATED`.
pub fn authenticate(
    authenticator: Arc<Authenticator>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        let header = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        let certificate = (request.extensions().get::<PeerInfo>())
            .and_then(|peer| peer.certificate_principal.as_deref());
        match authenticator.authenticate(header, certificate) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Ok(request)
            }
            Err(rejection) => {
                metrics::counter!("brook_authentication_failures_total", "reason" => rejection.reason())
                    .increment(1);
                let peer = request
                    .extensions()
                    .get::<PeerInfo>()
                    .map(|p| p.remote_addr);
                tracing::info!(
                    ?peer,
                    reason = rejection.reason(),
                    "request refused: not authenticated"
                );
                Err(tonic::Status::unauthenticated(rejection.to_string()))
            }
        }
    }
}

/// The endpoint for another broker's gRPC listener at `addr` (`host:port`): `https` with this
/// broker's certificate and CA when TLS is on, `http` otherwise.
pub fn peer_endpoint(addr: &str, tls: Option<&Tls>) -> Result<Endpoint, tonic::transport::Error> {
    match tls {
        Some(tls) => {
            Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.peer_config())
        }
        None => Endpoint::from_shared(format!("http://{addr}")),
    }
}

/// SIGHUP, from now on (it no longer ends the process); `None` if it cannot be caught.
pub fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::warn!(cause = %e, "cannot listen for SIGHUP: TLS files reload only on change");
            None
        }
    }
}

/// Files the broker reads at start and reloads while it runs: the TLS material, the JWT keys.
pub trait Reloadable: Send + Sync + 'static {
    /// What is reloaded, for the log (`TLS certificate and key`, `JWT keys`).
    const WHAT: &'static str;
    /// The counter of failed reloads.
    const FAILURES: &'static str;
    /// Reads the files again, whether they changed or not.
    fn reload_now(&self) -> Result<(), String>;
    /// Reads them again if they changed; whether it did.
    fn reload_changed(&self) -> Result<bool, String>;
}

impl Reloadable for Tls {
    const WHAT: &'static str = "TLS certificate and key";
    const FAILURES: &'static str = "brook_tls_reload_failures_total";
    fn reload_now(&self) -> Result<(), String> {
        self.reload().map_err(|e| e.to_string())
    }
    fn reload_changed(&self) -> Result<bool, String> {
        self.reload_if_changed().map_err(|e| e.to_string())
    }
}

impl Reloadable for Authenticator {
    const WHAT: &'static str = "JWT keys";
    const FAILURES: &'static str = "brook_auth_reload_failures_total";
    fn reload_now(&self) -> Result<(), String> {
        self.reload().map_err(|e| e.to_string())
    }
    fn reload_changed(&self) -> Result<bool, String> {
        self.reload_if_changed().map_err(|e| e.to_string())
    }
}

/// Reloads `files` when they change (checked every `interval`; zero: never by polling) and
/// on each `hangup`, until `stop` is cancelled. A failed reload keeps what is in force, is
/// logged and counted.
pub async fn reload_loop<R: Reloadable>(
    files: Arc<R>,
    interval: Duration,
    mut hangup: Option<Signal>,
    stop: CancellationToken,
) {
    let polling = !interval.is_zero();
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval), if polling => false,
            Some(()) = async { hangup.as_mut()?.recv().await } => true,
        };
        let outcome = if forced {
            files.reload_now().map(|()| true)
        } else {
            files.reload_changed()
        };
        match outcome {
            Ok(true) => tracing::info!(sighup = forced, "{} reloaded", R::WHAT),
            Ok(false) => {}
            Err(e) => {
                metrics::counter!(R::FAILURES).increment(1);
                tracing::error!(cause = %e, "{} reload failed: the previous ones stay in force", R::WHAT);
            }
        }
    }
}
