//! The one error type of the library, and its mapping to `tether_status`.

/// The status every C entry point returns.
///
/// The values are part of the ABI: never renumber them, only add new ones.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The call succeeded.
    Ok = 0,
    /// The key is absent (read, update, delete).
    NotFound = 1,
    /// NULL where not allowed, bad UTF-8, empty key, ':' in a bucket, page_size 0, unknown flag.
    InvalidArgument = 2,
    /// The configuration is unreadable or invalid.
    Config = 3,
    /// That backend is not configured in this handle.
    UnknownBackend = 4,
    /// The backend is unreachable or timed out; the call may be retried.
    Unavailable = 5,
    /// The key or value is over the backend's limit.
    TooLarge = 6,
    /// A queued write while the worker is stopped.
    NotRunning = 7,
    /// A condition on the stored value failed.
    Conflict = 8,
    /// Storage failed: the local store, or a remote backend refused the
    /// request for a reason none of the other statuses covers.
    Io = 9,
    /// A bug, including a panic caught at the boundary.
    Internal = 10,
    /// This backend cannot do that, or this version of the library does not
    /// yet: the capability table of docs/engines.md says which.
    Unsupported = 11,
}

impl Status {
    /// The name of the status as the C header spells it, e.g. `"TETHER_NOT_FOUND"`.
    pub fn name(self) -> &'static str {
        let name = self.name_nul();
        &name[..name.len() - 1]
    }

    /// [`Status::name`] with a NUL at its end, for C.
    pub(crate) const fn name_nul(self) -> &'static str {
        match self {
            Status::Ok => "TETHER_OK\0",
            Status::NotFound => "TETHER_NOT_FOUND\0",
            Status::InvalidArgument => "TETHER_INVALID_ARGUMENT\0",
            Status::Config => "TETHER_CONFIG\0",
            Status::UnknownBackend => "TETHER_UNKNOWN_BACKEND\0",
            Status::Unavailable => "TETHER_UNAVAILABLE\0",
            Status::TooLarge => "TETHER_TOO_LARGE\0",
            Status::NotRunning => "TETHER_NOT_RUNNING\0",
            Status::Conflict => "TETHER_CONFLICT\0",
            Status::Io => "TETHER_IO\0",
            Status::Internal => "TETHER_INTERNAL\0",
            Status::Unsupported => "TETHER_UNSUPPORTED\0",
        }
    }
}

/// Everything that can go wrong. Each message names the backend, the stored
/// key and the cause where they apply, since it is what `tether_last_error()`
/// shows a C programmer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{backend}: key {} not found", Quoted(key))]
    NotFound { backend: String, key: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("configuration: {0}")]
    Config(String),

    #[error("{0}")]
    UnknownBackend(String),

    #[error("{backend}: {}unavailable: {cause}", about_key(key))]
    Unavailable {
        backend: String,
        key: String,
        cause: String,
    },

    #[error("{backend}: {}too large: {cause}", about_key(key))]
    TooLarge {
        backend: String,
        key: String,
        cause: String,
    },

    #[error(
        "{backend}: key {}: queued write refused: the worker is stopped (call tether_start)",
        Quoted(key)
    )]
    NotRunning { backend: String, key: String },

    #[error("{backend}: {}conflict: {cause}", about_key(key))]
    Conflict {
        backend: String,
        key: String,
        cause: String,
    },

    #[error("{backend}: {}storage failed: {cause}", about_key(key))]
    Io {
        backend: String,
        key: String,
        cause: String,
    },

    /// The disk is full: TETHER_IO for the call, but queued writes wait
    /// and are retried, since space may come back.
    #[error("{backend}: {}storage full: {cause}", about_key(key))]
    Full {
        backend: String,
        key: String,
        cause: String,
    },

    #[error("internal error: {0}")]
    Internal(String),

    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Queued writes that could not be applied, reported by the next
    /// flush, stop or close. The status is that of the first failure.
    #[error("{count} queued write(s) failed; the first: {first}")]
    QueuedWritesFailed { count: u64, first: Box<Error> },
}

/// "key "k": ", or nothing for an error about no key in particular.
fn about_key(key: &str) -> String {
    match key {
        "" => String::new(),
        key => format!("key {}: ", Quoted(key)),
    }
}

/// How many bytes of a key, or of other input, a message quotes.
const QUOTED_BYTES: usize = 256;

/// How long the subject an argument error is about may be: a key and a
/// bucket quoted in part, with room to spare.
const SUBJECT_BYTES: usize = 1024;

/// Input as messages quote it, `{:?}`, but only its first 256 bytes when
/// longer, with its length: `"kkk"… (104857600 bytes)`. A message that
/// copied a 100 MB key would cost 100 MB, for no reader's benefit.
pub struct Quoted<'a>(pub &'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.len() {
            len if len <= QUOTED_BYTES => write!(f, "{:?}", self.0),
            len => write!(
                f,
                "{:?}… ({len} bytes)",
                &self.0[..char_floor(self.0, QUOTED_BYTES)]
            ),
        }
    }
}

/// The largest char boundary of `text` at or below `at`.
fn char_floor(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// `display` as text of at most `limit` bytes and a note of what was cut:
/// for text built from input of any length.
pub(crate) fn bounded(display: impl std::fmt::Display, limit: usize) -> String {
    struct Capped {
        text: String,
        limit: usize,
        cut: usize,
    }
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.limit.saturating_sub(self.text.len());
            let kept = match self.cut {
                0 => char_floor(s, room),
                _ => 0,
            };
            self.text.push_str(&s[..kept]);
            self.cut += s.len() - kept;
            Ok(())
        }
    }
    let mut capped = Capped {
        text: String::new(),
        limit,
        cut: 0,
    };
    let _ = std::fmt::write(&mut capped, format_args!("{display}"));
    if capped.cut > 0 {
        capped.text += &format!("… ({} more bytes)", capped.cut);
    }
    capped.text
}

impl Error {
    /// Says which call an argument error is about: `subject` names the
    /// backend and key. Other errors name them already.
    pub(crate) fn about(self, subject: impl std::fmt::Display) -> Error {
        // The subject quotes the caller's key and bucket, of any length.
        let about = |cause: String| {
            format!(
                "{}: {}",
                bounded(&subject, SUBJECT_BYTES),
                bounded(cause, SUBJECT_BYTES)
            )
        };
        match self {
            Error::InvalidArgument(cause) => Error::InvalidArgument(about(cause)),
            Error::Unsupported(cause) => Error::Unsupported(about(cause)),
            Error::UnknownBackend(cause) => Error::UnknownBackend(about(cause)),
            other => other,
        }
    }

    /// The same error, its cause preceded by `done`: what the call had
    /// changed before it failed, since a caller who retries must know.
    pub(crate) fn after(mut self, done: impl std::fmt::Display) -> Error {
        match &mut self {
            Error::Unavailable { cause, .. }
            | Error::TooLarge { cause, .. }
            | Error::Conflict { cause, .. }
            | Error::Io { cause, .. }
            | Error::Full { cause, .. }
            | Error::Internal(cause) => *cause = format!("{done}; then {cause}"),
            _ => {}
        }
        self
    }

    /// The same error, naming the backend `name` where it named the
    /// engine `engine`: an engine reports under its engine's name, and a
    /// backend configured under a name of its own
    /// (`crate::backend::layer::Renamed`) is known by that name.
    pub(crate) fn renamed(mut self, engine: &str, name: &str) -> Error {
        match &mut self {
            Error::NotFound { backend, .. }
            | Error::Unavailable { backend, .. }
            | Error::TooLarge { backend, .. }
            | Error::NotRunning { backend, .. }
            | Error::Conflict { backend, .. }
            | Error::Io { backend, .. }
            | Error::Full { backend, .. }
                if backend == engine =>
            {
                *backend = name.to_owned()
            }
            Error::QueuedWritesFailed { first, .. } => {
                let inner = std::mem::replace(&mut **first, Error::Internal(String::new()));
                **first = inner.renamed(engine, name);
            }
            _ => {}
        }
        self
    }

    /// The C status this error is reported as.
    pub fn status(&self) -> Status {
        match self {
            Error::NotFound { .. } => Status::NotFound,
            Error::InvalidArgument(_) => Status::InvalidArgument,
            Error::Config(_) => Status::Config,
            Error::UnknownBackend(_) => Status::UnknownBackend,
            Error::Unavailable { .. } => Status::Unavailable,
            Error::TooLarge { .. } => Status::TooLarge,
            Error::NotRunning { .. } => Status::NotRunning,
            Error::Conflict { .. } => Status::Conflict,
            Error::Io { .. } | Error::Full { .. } => Status::Io,
            Error::Internal(_) => Status::Internal,
            Error::Unsupported(_) => Status::Unsupported,
            Error::QueuedWritesFailed { first, .. } => first.status(),
        }
    }

    /// What went wrong, without the backend and key the message names.
    pub(crate) fn cause(&self) -> String {
        match self {
            Error::Unavailable { cause, .. }
            | Error::TooLarge { cause, .. }
            | Error::Conflict { cause, .. }
            | Error::Io { cause, .. }
            | Error::Full { cause, .. } => cause.clone(),
            other => other.to_string(),
        }
    }

    /// Whether trying the same call again later may succeed: the backend
    /// was unreachable or timed out, or its disk was full. The worker
    /// retries exactly these.
    pub fn is_transient(&self) -> bool {
        self.status() == Status::Unavailable || matches!(self, Error::Full { .. })
    }

    /// Queued writes that wait for their backend, saying `cause`, with the
    /// status of the `last` error that held them up: TETHER_IO for a full
    /// disk, TETHER_UNAVAILABLE for an unreachable backend.
    pub(crate) fn still_waiting(last: Option<&Error>, backend: &str, cause: String) -> Error {
        match last {
            Some(Error::Full { .. }) => Error::Full {
                backend: backend.to_owned(),
                key: String::new(),
                cause,
            },
            _ => Error::unavailable(backend, "", cause),
        }
    }

    /// An I/O error as the library reports it: [`Error::Full`] when the
    /// disk or the quota is full, [`Error::Io`] otherwise.
    pub(crate) fn storage(
        backend: &str,
        key: &str,
        cause: impl std::fmt::Display,
        error: &std::io::Error,
    ) -> Error {
        let full = matches!(
            error.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        match full {
            true => Error::Full {
                backend: backend.to_owned(),
                key: key.to_owned(),
                cause: cause.to_string(),
            },
            false => Error::io(backend, key, cause),
        }
    }

    pub(crate) fn not_found(backend: &str, key: &str) -> Error {
        Error::NotFound {
            backend: backend.to_owned(),
            key: key.to_owned(),
        }
    }

    pub(crate) fn io(backend: &str, key: &str, cause: impl std::fmt::Display) -> Error {
        Error::Io {
            backend: backend.to_owned(),
            key: key.to_owned(),
            cause: cause.to_string(),
        }
    }

    pub(crate) fn unavailable(backend: &str, key: &str, cause: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            backend: backend.to_owned(),
            key: key.to_owned(),
            cause: cause.to_string(),
        }
    }

    #[cfg_attr(not(any(feature = "etcd", feature = "dynamodb")), allow(dead_code))]
    pub(crate) fn too_large(backend: &str, key: &str, cause: impl std::fmt::Display) -> Error {
        Error::TooLarge {
            backend: backend.to_owned(),
            key: key.to_owned(),
            cause: cause.to_string(),
        }
    }

    pub(crate) fn conflict(backend: &str, key: &str, cause: impl std::fmt::Display) -> Error {
        Error::Conflict {
            backend: backend.to_owned(),
            key: key.to_owned(),
            cause: cause.to_string(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument(message.into())
    }
}

/// `url` with its user name and password shown as `user:***@`: a password
/// must never be repeated in a message or log line.
pub fn redacted_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(info) = url_userinfo(url) else {
        return url.into();
    };
    let shown = match url[info.clone()].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".into(),
    };
    format!("{}{shown}{}", &url[..info.start], &url[info.end..]).into()
}

/// Where the `user:password` of `url` (with or without a scheme) is, the
/// `@` after it excluded; `None` when it has none.
pub fn url_userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://").map_or(0, |i| i + "://".len());
    let authority = url[start..]
        .find(['/', '?', '#'])
        .map_or(&url[start..], |end| &url[start..start + end]);
    let at = authority.rfind('@')?;
    Some(start..start + at)
}

/// The result type of the safe Rust API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_failures_keep_the_status_of_the_first() {
        let first = Error::io("local", "b:k", "disk full");
        let report = Error::QueuedWritesFailed {
            count: 3,
            first: Box::new(first),
        };
        assert_eq!(report.status(), Status::Io);
        assert_eq!(
            report.to_string(),
            "3 queued write(s) failed; the first: local: key \"b:k\": storage failed: disk full"
        );
        let open = Error::io("local", "", "cannot open x");
        assert_eq!(open.to_string(), "local: storage failed: cannot open x");
    }

    #[test]
    fn long_input_is_quoted_in_part() {
        assert_eq!(Quoted("k").to_string(), "\"k\"");
        let long = format!("{}é{}", "k".repeat(255), "x".repeat(1000));
        assert_eq!(
            Quoted(&long).to_string(),
            format!("\"{}\"… (1257 bytes)", "k".repeat(255))
        );
        let err = Error::not_found("local", &"k".repeat(1 << 20));
        assert!(
            err.to_string().ends_with("… (1048576 bytes) not found"),
            "{err}"
        );
        assert_eq!(bounded("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("aé", 2), "a… (2 more bytes)");
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        for (url, shown) in [
            ("http://127.0.0.1:1", "http://127.0.0.1:1"),
            ("http://u:pw@h:1/p@q", "http://u:***@h:1/p@q"),
            ("u:p:w@h:1", "u:***@h:1"),
            ("https://token@h", "https://***@h"),
            ("http://a@b:c@h:1", "http://a@b:***@h:1"),
            ("h:1/x@y", "h:1/x@y"),
        ] {
            assert_eq!(redacted_url(url), shown);
        }
    }
}
