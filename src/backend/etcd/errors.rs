//! What a failed etcd request becomes, and whether it may be sent again.

use tonic::Code;

use super::NAME;
use crate::error::Error;

/// The error of a failed request: a server that cannot be reached or does
/// not answer is `Unavailable` (the call may be retried); a request over
/// its limits is `TooLarge`.
pub(super) fn failure(key: &str, error: etcd_client::Error) -> Error {
    use etcd_client::Error as E;
    let cause = causes(&error);
    match &error {
        E::GRpcStatus(status) => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Unknown => Error::unavailable(NAME, key, cause),
            Code::InvalidArgument if status.message().contains("too large") => {
                Error::too_large(NAME, key, cause)
            }
            Code::ResourceExhausted | Code::OutOfRange => Error::too_large(NAME, key, cause),
            _ => Error::io(NAME, key, cause),
        },
        E::TransportError(_) | E::IoError(_) | E::EndpointError(_) => {
            Error::unavailable(NAME, key, cause)
        }
        _ => Error::io(NAME, key, cause),
    }
}

/// Whether the request failed connecting to a member, before any of it was
/// sent: then sending it again cannot apply it twice.
pub(super) fn never_sent(error: &etcd_client::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = match error {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        other => Some(other),
    };
    while let Some(error) = next {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// The message of a gRPC status or error with the errors behind it:
/// "tcp connect error: Connection refused (os error 111)".
pub(super) fn causes(error: &etcd_client::Error) -> String {
    let (mut text, mut source) = match error {
        etcd_client::Error::GRpcStatus(status) => (
            status.message().to_owned(),
            std::error::Error::source(status),
        ),
        etcd_client::Error::TransportError(e) => (e.to_string(), std::error::Error::source(e)),
        other => (other.to_string(), std::error::Error::source(other)),
    };
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_failures_count_as_never_sent() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = tonic::Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(never_sent(&etcd_client::Error::GRpcStatus(status)));
        // Sent, perhaps applied: the connection broke, or etcd answered.
        for status in [
            tonic::Status::unavailable("transport error: connection reset"),
            tonic::Status::unavailable("etcdserver: leader changed"),
        ] {
            assert!(!never_sent(&etcd_client::Error::GRpcStatus(status)));
        }
    }
}
