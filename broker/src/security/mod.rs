//! Security: TLS on the listeners and between brokers (docs/security.md).
//!
//! - [`tls`]: the `[tls]` files as rustls configurations, reloaded on change or SIGHUP.
//! - [`peer_endpoint`]: how this broker reaches another one (plain or TLS, by the same
//!   settings).

pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

pub use tls::{Tls, TlsError};

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

/// Reloads the TLS files when they change (checked every `interval`, `tls.reload_interval_ms`)
/// and on each `hangup`, until `stop` is cancelled.
pub async fn reload_loop(
    tls: Arc<Tls>,
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
            tls.reload().map(|()| true)
        } else {
            tls.reload_if_changed()
        };
        match outcome {
            Ok(true) => tracing::info!(sighup = forced, "TLS certificate and key reloaded"),
            Ok(false) => {}
            Err(e) => {
                metrics::counter!("brook_tls_reload_failures_total").increment(1);
                tracing::error!(cause = %e, "TLS reload failed: new connections keep the previous certificate");
            }
        }
    }
}
