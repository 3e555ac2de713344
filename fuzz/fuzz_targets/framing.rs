//! Fuzzes SSF stream framing: the input is fed in two chunks, as a socket would, and
//! every complete body is decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssfd_wire::{framing, normalize};

fuzz_target!(|input: &[u8]| {
    let split = input.first().map_or(0, |&b| b as usize % (input.len() + 1));
    let mut buffer = input[..split].to_vec();
    let mut rest = &input[split..];
    loop {
        let (bodies, used, error) = framing::split_frames(&buffer);
        for body in &bodies {
            assert!(body.len() <= framing::MAX_FRAME_LEN);
            let _ = normalize::decode_span(body);
        }
        assert!(used <= buffer.len());
        if error.is_some() {
            return;
        }
        buffer.drain(..used);
        if rest.is_empty() {
            return;
        }
        buffer.extend_from_slice(rest);
        rest = &[];
    }
});
