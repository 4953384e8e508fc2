//! A reviewer that would phone home: it imports `wasi:http/outgoing-handler`, so uploading it
//! must be refused.

wit_bindgen::generate!({
    world: "reviewer",
    path: "../../../wit/hook",
});

use agnes::hook::types::{Report, Verdict};

struct Reviewer;
export!(Reviewer);

impl exports::agnes::hook::review::Guest for Reviewer {
    fn review() -> Report {
        let request = wasi::http::types::OutgoingRequest::new(wasi::http::types::Fields::new());
        let _ = wasi::http::outgoing_handler::handle(request, None);
        Report {
            verdict: Verdict::Allow,
            findings: Vec::new(),
        }
    }
}
