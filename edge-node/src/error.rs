//! Request failures, classified by origin, and the ONE place they become HTTP responses.
//!
//! The body names the problem and the request id, never internals: a trap's message and wasm
//! backtrace go to the node's log under the same request id, not to the client.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};

use crate::ResponseBody;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something we will not serve.
    Client,
    /// The node is at a capacity limit; the client may retry.
    Overload,
    /// The function misbehaved: trapped, overran a limit, or answered with an error.
    Guest,
    /// The node itself failed.
    Internal,
}

/// Why a request did not get the function's own answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No route matches the host and path.
    #[error("no function is routed for {host}{path}")]
    NoRoute {
        /// The request's host.
        host: String,
        /// The request's path.
        path: String,
    },
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request body is over the function's limit.
    #[error("the request body is larger than this function's limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// Every instance slot of the function is taken.
    #[error("function `{function}` is running its maximum of {limit} instances; retry shortly")]
    Busy {
        /// The function.
        function: String,
        /// Its concurrency limit.
        limit: u32,
    },
    /// The node's instance pool is full.
    #[error("this node is running its maximum number of instances; retry shortly")]
    PoolExhausted,
    /// The guest trapped (a panic, `unreachable`, a failed host call).
    #[error("the function failed while handling this request")]
    Trap,
    /// The guest ran past its time limit and was killed.
    #[error("the function did not finish within its time limit of {} ms", .0.as_millis())]
    TimeLimit(Duration),
    /// The guest tried to grow its memory past its limit.
    #[error("the function went past its memory limit of {} MiB", .0 >> 20)]
    MemoryLimit(u64),
    /// The guest returned without setting a response.
    #[error("the function returned without sending a response")]
    NoResponse,
    /// The guest answered with a wasi:http error code instead of a response.
    #[error("the function answered with an error")]
    GuestError,
    /// An origin the function fetched from could not be reached or broke off.
    #[error("the origin {0} could not be reached")]
    Unreachable(String),
    /// Something in the node failed; the log has the details.
    #[error("internal error")]
    Internal,
}

impl RequestError {
    /// Who is to blame.
    pub fn origin(&self) -> Origin {
        match self {
            Self::NoRoute { .. } | Self::BadRequest(_) | Self::BodyTooLarge { .. } => {
                Origin::Client
            }
            Self::Busy { .. } | Self::PoolExhausted => Origin::Overload,
            Self::Trap
            | Self::TimeLimit(_)
            | Self::MemoryLimit(_)
            | Self::NoResponse
            | Self::GuestError
            | Self::Unreachable(_) => Origin::Guest,
            Self::Internal => Origin::Internal,
        }
    }

    /// The status sent for this failure. A time-limit kill is 504 (the function, the node's
    /// upstream, did not answer in time); every other guest failure is 500.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy { .. } | Self::PoolExhausted => StatusCode::SERVICE_UNAVAILABLE,
            Self::TimeLimit(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Trap | Self::MemoryLimit(_) | Self::NoResponse | Self::GuestError => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Unreachable(_) => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response for this failure: status, a short text body with the request id, and
    /// `Retry-After` when the client should retry.
    pub fn into_response(self, request_id: &str) -> Response<ResponseBody> {
        let status = self.status();
        let body = format!("{self}\nrequest id: {request_id}\n");
        let mut response = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.origin() == Origin::Overload {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_origin() {
        assert_eq!(RequestError::Trap.status(), 500);
        assert_eq!(
            RequestError::TimeLimit(Duration::from_secs(1)).status(),
            504
        );
        assert_eq!(RequestError::MemoryLimit(1 << 20).status(), 500);
        assert_eq!(RequestError::PoolExhausted.status(), 503);
        assert_eq!(RequestError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(RequestError::Internal.origin(), Origin::Internal);
    }

    #[test]
    fn overload_says_when_to_retry_and_nothing_leaks() {
        let busy = RequestError::Busy {
            function: "f".into(),
            limit: 2,
        }
        .into_response("abc");
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let trap = RequestError::Trap.into_response("abc");
        assert!(trap.headers().get(header::RETRY_AFTER).is_none());
    }
}
