//! The STUN/TURN wire parsers on arbitrary bytes: no panic, and what parses is consistent.
#![no_main]

use bedside_relay::proto::codec::{self, ChannelData, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::parse(data) {
        assert_eq!(msg.as_bytes().len(), data.len());
        assert_eq!(data.len() % 4, 0);
        let _ = msg.verify_integrity(b"key");
    }
    if let Ok(cd) = ChannelData::parse(data) {
        assert!(cd.payload.len() + codec::CHANNEL_HEADER_LEN <= data.len());
    }
    if let Ok(Some(len)) = codec::stream_frame_len(data) {
        assert!(len <= data.len());
    }
});
