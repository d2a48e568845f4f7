//! Which errors say the server cannot take writes now, so that another server may.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Whether `e` says the server cannot take writes now (so another server may).
pub(super) fn refuses_writes(e: &RedisError) -> bool {
    let unwritable = |k: ServerErrorKind| {
        matches!(
            k,
            ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading
        )
    };
    if let ErrorKind::Server(k) = e.kind() {
        if unwritable(k) {
            return true;
        }
    }
    // A transaction or pipeline carries its commands' errors inside.
    e.clone()
        .into_server_errors()
        .is_some_and(|errs| errs.iter().any(|(_, s)| s.kind().is_some_and(unwritable)))
}

#[cfg(test)]
mod tests {
    use super::refuses_writes;
    use redis::{ErrorKind, RedisError};

    fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    #[test]
    fn only_servers_that_refuse_writes_call_for_a_new_connection() {
        for refusal in [
            "READONLY You can't write against a read only replica.",
            "MASTERDOWN Link with MASTER is down",
            "LOADING Redis is loading the dataset in memory",
        ] {
            assert!(refuses_writes(&server_error(refusal)), "{refusal}");
        }
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let client = RedisError::from((ErrorKind::Client, "no"));
        let wrong_type = server_error("WRONGTYPE Operation against a key");
        assert!(!refuses_writes(&io) && !refuses_writes(&client) && !refuses_writes(&wrong_type));
    }
}
