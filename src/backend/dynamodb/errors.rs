//! What a failed DynamoDB request becomes: `Unavailable` where the same
//! request may succeed later, `TooLarge`, or `Io`, with the cause said once.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::NAME;
use crate::error::Error;

/// Error codes after which the same request may succeed later.
pub(super) const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    "TransactionConflictException",
];

/// The error of a failed request: throttling, server errors, timeouts and
/// an unreachable endpoint are `Unavailable` (the call may be retried); an
/// item over DynamoDB's limits is `TooLarge`; anything else is `Io`.
pub(super) fn failure<E>(table: &str, key: &str, error: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let code = error.code().unwrap_or_default();
            let message = error.message().unwrap_or_default();
            let cause = match code {
                // An answer without an error type, such as a load
                // balancer's 503: its status says what happened.
                "" => http_cause(
                    service.raw().status().as_u16(),
                    service.raw().body().bytes().unwrap_or_default(),
                ),
                code if message.is_empty() => code.to_owned(),
                code => format!("{code}: {message}"),
            };
            if TRANSIENT_CODES.contains(&code) || service.raw().status().is_server_error() {
                Error::unavailable(NAME, key, cause)
            } else if code == "ResourceNotFoundException" {
                Error::io(
                    NAME,
                    key,
                    format!("table {table:?} does not exist (deleted since the handle opened?): {message}"),
                )
            } else if code == "ItemCollectionSizeLimitExceededException"
                || (code == "ValidationException" && message.contains("size"))
            {
                Error::too_large(NAME, key, cause)
            } else {
                Error::io(NAME, key, cause)
            }
        }
        // A request that could not be built is a bug, or a configuration
        // the SDK refuses; not worth retrying.
        SdkError::ConstructionFailure(_) => Error::io(NAME, key, causes(&error)),
        // Timeouts, connections refused or dropped, an answer that could
        // not be read, credentials not (yet) available.
        _ => Error::unavailable(NAME, key, causes(&error)),
    }
}

/// "HTTP 503 Service Unavailable", and the start of the body where there is
/// one: the cause of an error answer that names no error type.
pub(super) fn http_cause(status: u16, body: &[u8]) -> String {
    let reason = match status {
        400 => " Bad Request",
        403 => " Forbidden",
        404 => " Not Found",
        413 => " Payload Too Large",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    };
    let body = String::from_utf8_lossy(body);
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match body.char_indices().nth(200) {
        None if body.is_empty() => format!("HTTP {status}{reason}"),
        None => format!("HTTP {status}{reason}: {body}"),
        Some((end, _)) => format!("HTTP {status}{reason}: {}...", &body[..end]),
    }
}

/// An error and its sources, `a: b: c`, each said once: the SDK's errors
/// often repeat their source's message.
pub(super) fn causes(error: &dyn std::error::Error) -> String {
    let mut said = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        let message = error.to_string();
        if !said.contains(&message) {
            said += ": ";
            said += &message;
        }
        source = error.source();
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_without_a_type_is_told_by_its_status() {
        assert_eq!(http_cause(503, b""), "HTTP 503 Service Unavailable");
        assert_eq!(
            http_cause(502, b"<html>\n  <h1>Bad   gateway</h1>\n</html>\n"),
            "HTTP 502 Bad Gateway: <html> <h1>Bad gateway</h1> </html>"
        );
        let long = http_cause(599, "\u{e9}".repeat(300).as_bytes());
        assert_eq!(long, format!("HTTP 599: {}...", "\u{e9}".repeat(200)));
    }
}
