//! What the `brook` process exits with, and how it prints an error.

use std::io::Write;

use crate::ClientError;
use crate::connection::error_chain;

/// The `brook` tool's exit codes: stable, scripts rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command succeeded.
    Success,
    /// 1: the broker reported an error for a topic or partition, failed the request, answered
    /// nonsense, or the input or output failed.
    Failed,
    /// 2: a usage error or an invalid argument (clap uses 2 for its own usage errors too).
    Usage,
    /// 3: the broker could not be reached, or the connection to it was lost.
    Unreachable,
    /// 4: the broker refused who the request came from (UNAUTHENTICATED) or what it asked
    /// (PERMISSION_DENIED).
    Denied,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Unreachable => 3,
            Exit::Denied => 4,
        }
    }

    /// The exit for a failed command. Output closed by the reader (`brook consume t | head`)
    /// is a success: the reader got what it wanted.
    pub fn for_error(err: &ClientError) -> Exit {
        match err {
            ClientError::Connect { .. } => Exit::Unreachable,
            ClientError::Rpc(status)
                if status.code() == tonic::Code::Unavailable
                    || crate::error::is_broken_connection(status) =>
            {
                Exit::Unreachable
            }
            ClientError::Rpc(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                Exit::Denied
            }
            ClientError::InvalidAddress { .. } | ClientError::InvalidArgument(_) => Exit::Usage,
            ClientError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe => {
                Exit::Success
            }
            ClientError::Multiple(errors) => errors
                .iter()
                .map(Exit::for_error)
                .max_by_key(|e| e.code())
                .unwrap_or(Exit::Failed),
            ClientError::Rpc(_)
            | ClientError::Broker { .. }
            | ClientError::Protocol(_)
            | ClientError::CorruptBatch { .. }
            | ClientError::Timeout { .. }
            | ClientError::Io { .. } => Exit::Failed,
        }
    }
}

/// Writes `err` as `error: ...` lines: one per error of a [`ClientError::Multiple`], each
/// with its causes joined by `": "`. Writes nothing for an error whose exit is
/// [`Exit::Success`] (a closed output pipe).
pub fn report(err: &ClientError, out: &mut impl Write) -> std::io::Result<()> {
    match err {
        ClientError::Multiple(errors) => {
            for err in errors {
                report(err, out)?;
            }
            Ok(())
        }
        _ if Exit::for_error(err) == Exit::Success => Ok(()),
        _ => writeln!(out, "error: {}", error_chain(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_proto::v1::ErrorCode;

    fn broker(code: ErrorCode, message: &str) -> ClientError {
        ClientError::Broker {
            topic: "t".into(),
            partition: None,
            code,
            message: message.into(),
        }
    }

    #[test]
    fn exit_codes_by_error_kind() {
        assert_eq!(
            Exit::for_error(&broker(ErrorCode::TopicAlreadyExists, "")).code(),
            1
        );
        assert_eq!(
            Exit::for_error(&ClientError::InvalidArgument("x".into())).code(),
            2
        );
        assert_eq!(
            Exit::for_error(&ClientError::Rpc(tonic::Status::unavailable("down"))).code(),
            3
        );
        assert_eq!(
            Exit::for_error(&ClientError::Rpc(tonic::Status::internal("bug"))).code(),
            1
        );
        let not_http2 = tonic::Status::internal("h2 protocol error: http2 error");
        assert_eq!(Exit::for_error(&ClientError::Rpc(not_http2)).code(), 3);
        for denied in [
            tonic::Status::unauthenticated("token expired"),
            tonic::Status::permission_denied("User:a may not write topic \"t\""),
        ] {
            assert_eq!(Exit::for_error(&ClientError::Rpc(denied)).code(), 4);
        }
        let pipe = ClientError::Io {
            context: "cannot write the output",
            source: std::io::ErrorKind::BrokenPipe.into(),
        };
        assert_eq!(Exit::for_error(&pipe), Exit::Success);
        let mut out = Vec::new();
        report(&pipe, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn report_prints_one_line_per_error() {
        let err = ClientError::Multiple(vec![
            broker(ErrorCode::UnknownTopicOrPartition, "no topic a"),
            broker(ErrorCode::InvalidTopic, ""),
        ]);
        assert_eq!(Exit::for_error(&err), Exit::Failed);
        let mut out = Vec::new();
        report(&err, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "error: UNKNOWN_TOPIC_OR_PARTITION: no topic a (topic t)\n\
             error: INVALID_TOPIC: the topic name breaks the naming rules (topic t)\n"
        );
    }
}
