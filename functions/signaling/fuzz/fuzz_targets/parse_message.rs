//! The client message parser on arbitrary bytes: it must never panic, and what it accepts must
//! satisfy the checks it promises.

#![no_main]

use bedside_signaling::wire::{self, ClientMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match wire::parse(text) {
        Ok(ClientMessage::Offer { sdp } | ClientMessage::Answer { sdp }) => {
            assert!(sdp.starts_with("v=0"));
            assert!(sdp.contains("a=fingerprint:") && sdp.contains("a=setup:"));
        }
        Ok(ClientMessage::Candidate(candidate)) => {
            assert!(candidate.candidate.starts_with("candidate:"));
            assert!(candidate.candidate.len() <= wire::MAX_CANDIDATE_BYTES);
        }
        Ok(ClientMessage::Hello { token, .. }) => assert!(!token.is_empty()),
        Ok(ClientMessage::Chat { text }) => assert!(!text.is_empty()),
        Ok(_) => {}
        Err(e) => {
            assert!(!e.code().as_str().is_empty());
            // Messages are built from fixed text: they never echo the input.
            assert!(e.to_string().len() < 128);
        }
    }
});
