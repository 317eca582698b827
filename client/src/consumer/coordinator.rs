//! [`CoordinatorLink`]: the connection to a group's coordinator, found with FindCoordinator
//! and found again when it moves.
//!
//! A group's coordinator is the broker that leads the group's partition of
//! `__consumer_offsets`; in a cluster it moves with that leadership (a broker failure, a
//! restart, a preferred-leader election). Every group request goes through
//! [`CoordinatorLink::call`], which finds the coordinator (asking the bootstrap broker, then
//! any other broker it knows), sends the request, and on NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE, a retriable error or a broken connection forgets the
//! coordinator, backs off and tries again, for up to its patience.

use std::future::Future;
use std::time::Duration;

use brook_proto::v1::{ErrorCode, FindCoordinatorRequest};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::check_code;
use crate::producer::metadata::MetadataCache;
use crate::{ClientError, Connection};

/// First and longest pause between attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// The way to one group's coordinator. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct CoordinatorLink {
    group: String,
    /// How long [`CoordinatorLink::call`] keeps trying.
    patience: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    metadata: MetadataCache,
    current: Option<Connection>,
}

/// Whether a failure means "ask again, maybe elsewhere".
fn retriable(err: &ClientError) -> bool {
    err.is_retriable()
        || matches!(
            err.error_code(),
            Some(ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)
        )
}

impl CoordinatorLink {
    pub fn new(bootstrap: Connection, group: String, patience: Duration) -> Self {
        CoordinatorLink {
            group,
            patience,
            inner: Mutex::new(Inner {
                metadata: MetadataCache::new(bootstrap, Duration::from_secs(10)),
                current: None,
            }),
        }
    }

    /// The coordinator's connection, found first if it is not known.
    async fn connection(&self) -> Result<Connection, ClientError> {
        let mut inner = self.inner.lock().await;
        if let Some(conn) = &inner.current {
            return Ok(conn.clone());
        }
        let group_id = self.group.clone();
        let found = (inner.metadata)
            .ask_any("FindCoordinator", |conn| {
                let group_id = group_id.clone();
                async move {
                    let res = (conn.groups())
                        .find_coordinator(FindCoordinatorRequest { group_id })
                        .await?;
                    Ok(res.into_inner())
                }
            })
            .await?;
        check_code(&self.group, None, found.error_code, &found.error_message)?;
        if !inner.metadata.knows_broker(found.node_id) {
            inner.metadata.refresh_brokers().await?;
        }
        let conn = inner.metadata.connection(found.node_id).await?;
        tracing::debug!(group = %self.group, node = found.node_id, addr = %conn.addr(), "found the group coordinator");
        inner.current = Some(conn.clone());
        Ok(conn)
    }

    /// Sends `request` to the coordinator until it is answered by the coordinator, or a
    /// failure is not about finding it, or the patience runs out. `code` reads the answer's
    /// error code: NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE answers are retried too.
    pub async fn call<T, F, Fut>(
        &self,
        mut request: F,
        code: impl Fn(&T) -> (i32, &str),
    ) -> Result<T, ClientError>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + self.patience;
        let mut backoff = BACKOFF.0;
        loop {
            let failure = match self.connection().await {
                Ok(conn) => match request(conn).await {
                    Ok(answer) => {
                        let (c, message) = code(&answer);
                        match check_code(&self.group, None, c, message) {
                            Err(e) if retriable(&e) => e,
                            _ => return Ok(answer),
                        }
                    }
                    Err(status) => ClientError::Rpc(status),
                },
                Err(e) => e,
            };
            if !retriable(&failure) || Instant::now() + backoff > deadline {
                return Err(failure);
            }
            tracing::debug!(group = %self.group, cause = %failure, "group coordinator unavailable; finding it again");
            self.inner.lock().await.current = None;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }
}
