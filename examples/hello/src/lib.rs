//! The smallest useful function, written with the SDK. It needs nothing of the request, so it
//! takes none (and the SDK reads none from the node); `fn hello(request: edge::Request)` would
//! work too.
use edge::Response;

fn hello() -> Response {
    edge::text("hello from the edge\n")
}

edge::export!(hello);
