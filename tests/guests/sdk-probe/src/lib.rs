//! The SDK's edges, for the end-to-end tests (tests/all/sdk.rs): how it writes responses of
//! each kind to the node, headers the host refuses, and handler errors.
use edge::http::{HeaderValue, StatusCode, header};
use edge::{Body, Request, Response};

fn handle(request: Request) -> edge::Result<Response> {
    Ok(match request.uri().path() {
        // A header wasi:http forbids: left out (and logged), the rest of the response kept.
        "/forbidden-header" => {
            let mut response = edge::text("kept\n");
            let headers = response.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            headers.insert("x-kept", HeaderValue::from_static("yes"));
            response
        }
        // Bytes past one host write (4 KiB): through io::Write, with their length declared.
        "/big" => {
            let body: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
            Response::new(Body::from(body))
        }
        "/created" => {
            let mut response = edge::text("made\n");
            *response.status_mut() = StatusCode::CREATED;
            response
        }
        "/no-content" => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        // A length the handler declared itself is the one sent.
        "/own-length" => {
            let mut response = Response::new(Body::from("12345"));
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
            response
        }
        "/fail" => return Err("the database is down".into()),
        _ => edge::text("sdk probe\n"),
    })
}

edge::export!(handle);
