//! The smallest useful function, written with the SDK.
use edge::{Request, Response};

fn hello(_request: Request) -> Response {
    edge::text("hello from the edge\n")
}

edge::export!(hello);
