//! One HTTP/2 channel to one broker, with the `Broker` and `Admin` gRPC clients over it.

use std::task::{Context, Poll};
use std::time::Duration;

use brook_proto::v1::admin_client::AdminClient;
use brook_proto::v1::broker_client::BrokerClient;
use brook_proto::v1::groups_client::GroupsClient;
use http::HeaderValue;
use tonic::transport::channel::ResponseFuture;
use tonic::transport::{Channel, Endpoint};

use crate::{ClientError, Security};

/// The broker address used when none is given: the broker's default gRPC listener.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:7400";

/// The port assumed for an address without one.
pub const DEFAULT_PORT: u16 = 7400;

/// How long [`Connection::connect`] waits for the TCP and HTTP/2 handshakes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest gRPC message sent or accepted (a produce request or a fetch response).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control window per stream (bytes): how much of a fetch answer the broker may
/// send before the client acknowledges it. hyper's default (2 MiB) is below one default
/// fetch answer (up to 1 MiB per partition), so the broker would stall mid-answer waiting
/// for window updates.
pub const HTTP2_STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 flow-control window per connection (bytes), shared by concurrent fetches.
pub const HTTP2_CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame the client accepts (bytes): fewer, larger DATA frames for big
/// fetch answers than the protocol's default 16 KiB.
pub const HTTP2_MAX_FRAME: u32 = 1 << 20;

/// What the gRPC clients send over: the HTTP/2 channel, with the connection's bearer token
/// (if any) added to every request as `authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Transport {
    channel: Channel,
    authorization: Option<HeaderValue>,
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Transport {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::poll_ready(&mut self.channel, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(value) = &self.authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
        }
        self.channel.call(request)
    }
}

/// A connection to one broker: cheap to clone, every clone shares the same channel (HTTP/2
/// multiplexes concurrent requests over it), and the channel reconnects by itself after the
/// broker restarts.
#[derive(Debug, Clone)]
pub struct Connection {
    addr: String,
    security: Security,
    transport: Transport,
    broker: BrokerClient<Transport>,
    admin: AdminClient<Transport>,
    groups: GroupsClient<Transport>,
}

impl Connection {
    /// Connects to the broker at `addr` (`host:port`, `host` for port 7400, or
    /// `http://host:port`), waiting at most [`CONNECT_TIMEOUT`].
    ///
    /// Fails with [`ClientError::InvalidAddress`] for an address that cannot be parsed and
    /// [`ClientError::Connect`] when nothing answers.
    pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
        Connection::connect_with(addr, &Security::plaintext()).await
    }

    /// [`Connection::connect`] with TLS (and a client certificate) as `security` says. A TLS
    /// handshake that fails (an unknown CA, an expired certificate, a broker that does not
    /// speak TLS) is a [`ClientError::Connect`] whose source says why.
    pub async fn connect_with(addr: &str, security: &Security) -> Result<Connection, ClientError> {
        let uri = endpoint_uri(addr)?;
        let uri = match uri.strip_prefix("http://") {
            Some(rest) => format!("{}://{rest}", security.scheme()),
            None => uri,
        };
        let invalid = |err: tonic::transport::Error| ClientError::InvalidAddress {
            addr: addr.to_owned(),
            reason: format!("{uri} is not a valid URI: {}", error_chain(&err)),
        };
        let mut endpoint = Endpoint::from_shared(uri.clone()).map_err(invalid)?;
        if let Some(tls) = security.client_tls_config() {
            endpoint = endpoint.tls_config(tls).map_err(invalid)?;
        }
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .initial_stream_window_size(HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
            .max_frame_size(HTTP2_MAX_FRAME)
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Connection::with_transport(addr, channel, security.clone()))
    }

    /// A connection to another broker at `addr`, with this one's security settings (for
    /// brokers found in metadata).
    pub async fn sibling(&self, addr: &str) -> Result<Connection, ClientError> {
        Connection::connect_with(addr, &self.security).await
    }

    /// This connection's security settings.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// Wraps an existing channel (for example one built by a test around an in-process
    /// server). `addr` is only used in messages and to recognise the broker in metadata.
    pub fn from_channel(addr: impl Into<String>, channel: Channel) -> Connection {
        Connection::with_transport(addr, channel, Security::plaintext())
    }

    fn with_transport(addr: impl Into<String>, channel: Channel, security: Security) -> Connection {
        let transport = Transport {
            channel,
            authorization: security.authorization().cloned(),
        };
        Connection {
            addr: addr.into(),
            security,
            transport: transport.clone(),
            broker: BrokerClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            admin: AdminClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            groups: GroupsClient::new(transport),
        }
    }

    /// The address this connection was made to, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A client for the consumer-group service (heartbeats, offsets, group admin).
    pub fn groups(&self) -> GroupsClient<Transport> {
        self.groups.clone()
    }

    /// A client for the data-plane service (produce, fetch, offsets, metadata). Clones are
    /// cheap and share the channel.
    pub fn broker(&self) -> BrokerClient<Transport> {
        self.broker.clone()
    }

    /// The Produce RPC, with each record batch handed to HTTP/2 as it is rather than copied
    /// into one encoded message (the generated [`BrokerClient::produce`] copies it). Requests
    /// and answers are bounded by [`MAX_MESSAGE_BYTES`].
    pub async fn produce(
        &self,
        request: &brook_proto::v1::ProduceRequest,
    ) -> Result<brook_proto::v1::ProduceResponse, tonic::Status> {
        let mut transport = self.transport.clone();
        crate::produce_rpc::produce(&mut transport, request, MAX_MESSAGE_BYTES).await
    }

    /// A client for the control-plane service (topics and their configs).
    pub fn admin(&self) -> AdminClient<Transport> {
        self.admin.clone()
    }
}

/// Turns a user-given broker address into the URI tonic connects to: adds `http://` and the
/// default port when missing, brackets a bare IPv6 address. The scheme is `http`; TLS is
/// chosen by [`Security`], not by the address.
pub fn endpoint_uri(addr: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidAddress {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = addr.trim();
    let rest = match trimmed.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(invalid(&format!(
                "unsupported scheme {scheme:?}: use host:port or http://host:port (TLS is set by the TLS options)"
            )));
        }
        None => trimmed,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(invalid("the address is empty"));
    }
    if authority.contains('/') {
        return Err(invalid("a broker address has no path: use host:port"));
    }
    let with_port = if let Some(bracketed) = authority.strip_prefix('[') {
        // [v6] or [v6]:port
        match bracketed.split_once(']') {
            Some((_, "")) => format!("{authority}:{DEFAULT_PORT}"),
            Some((_, port)) if port.starts_with(':') => authority.to_owned(),
            _ => return Err(invalid("malformed IPv6 address: use [addr]:port")),
        }
    } else {
        match authority.matches(':').count() {
            0 => format!("{authority}:{DEFAULT_PORT}"),
            1 => authority.to_owned(),
            // A bare IPv6 address: it cannot carry a port without brackets.
            _ => format!("[{authority}]:{DEFAULT_PORT}"),
        }
    };
    if let Some((_, port)) = with_port.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(invalid(&format!(
            "port {port:?} is not a number from 0 to 65535"
        )));
    }
    Ok(format!("http://{with_port}"))
}

/// An error and its sources joined with `": "`, skipping a source whose text the previous
/// one already contains (transport errors often repeat their cause).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut last = text.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        let piece = cause.to_string();
        if !piece.is_empty() && !last.contains(&piece) {
            text.push_str(": ");
            text.push_str(&piece);
        }
        last = piece;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_uri_accepts_the_usual_forms() {
        let ok = |a: &str| endpoint_uri(a).unwrap();
        assert_eq!(ok("127.0.0.1:7400"), "http://127.0.0.1:7400");
        assert_eq!(ok("http://127.0.0.1:7400"), "http://127.0.0.1:7400");
        assert_eq!(ok("http://broker-1:9000/"), "http://broker-1:9000");
        assert_eq!(ok("localhost"), "http://localhost:7400");
        assert_eq!(ok(" localhost:1 "), "http://localhost:1");
        assert_eq!(ok("[::1]:7500"), "http://[::1]:7500");
        assert_eq!(ok("[::1]"), "http://[::1]:7400");
        assert_eq!(ok("::1"), "http://[::1]:7400");
    }

    #[test]
    fn endpoint_uri_rejects_what_cannot_work() {
        for bad in [
            "",
            "https://b:7400",
            "grpc://b",
            "b:7400/x",
            "b:port",
            "b:70000",
            "[::1",
        ] {
            let err = endpoint_uri(bad).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidAddress { ref addr, .. } if addr == bad),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(
            endpoint_uri("https://b").unwrap_err().to_string(),
            "invalid broker address \"https://b\": unsupported scheme \"https\": use host:port \
             or http://host:port (TLS is set by the TLS options)"
        );
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_is_a_connect_error() {
        // Bind then drop a listener to find a port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Connection::connect(&addr).await.unwrap_err();
        match &err {
            ClientError::Connect { addr: a, .. } => assert_eq!(a, &addr),
            other => panic!("expected Connect, got {other:?}"),
        }
        let chain = error_chain(&err);
        assert!(
            chain.starts_with(&format!("cannot connect to {addr}: ")),
            "{chain}"
        );
        assert!(chain.contains("refused"), "{chain}");
    }
}
