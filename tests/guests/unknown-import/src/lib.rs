//! An HTTP function that imports an interface no WASI 0.2 host provides (`acme:nope/thing`), so
//! the node must refuse it at load with an error that names that interface.
use wasip2::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({
    inline: "
        package acme:nope;
        interface thing { poke: func(); }
        world imports { import thing; }
    ",
});

struct Guest;

impl wasip2::exports::http::incoming_handler::Guest for Guest {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        acme::nope::thing::poke();
        ResponseOutparam::set(response_out, Ok(OutgoingResponse::new(Fields::new())));
    }
}

wasip2::http::proxy::export!(Guest);
