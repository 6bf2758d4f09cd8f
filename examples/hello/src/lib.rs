//! The smallest useful function: answers every request with a fixed greeting. Used by the tests
//! and by the benchmarks, so keep it minimal.
use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain".to_vec(),
        )])
        .unwrap();
        let resp = OutgoingResponse::new(headers);
        let body = resp.body().unwrap();
        ResponseOutparam::set(response_out, Ok(resp));
        let mut out = body.write().unwrap();
        out.write_all(b"hello from the edge\n").unwrap();
        out.flush().unwrap();
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasip2::http::proxy::export!(Hello);
