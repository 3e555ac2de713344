//! SSF stream framing, as Veneur's (SPEC 3.1): 1 byte version (0), a 4-byte big-endian
//! length, then that many bytes of `SSFSpan`.

/// The largest frame body accepted.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Bytes before the body.
pub const HEADER_LEN: usize = 5;

/// A framing error closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("frame version {0} is not 0")]
    Version(u8),
    #[error("frame length {0} is above 16 MiB")]
    TooLarge(u32),
}

/// Reads a header. `Ok(Some(n))` is the body length; `Ok(None)` means more bytes are
/// needed for the header.
pub fn body_len(buffer: &[u8]) -> Result<Option<usize>, FramingError> {
    let Some(&version) = buffer.first() else {
        return Ok(None);
    };
    if version != 0 {
        return Err(FramingError::Version(version));
    }
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]);
    if len as usize > MAX_FRAME_LEN {
        return Err(FramingError::TooLarge(len));
    }
    Ok(Some(len as usize))
}

/// Splits complete frames off the front of `buffer`. Returns the bodies found and how
/// many bytes they used; the rest waits for more input.
pub fn split_frames(buffer: &[u8]) -> (Vec<&[u8]>, usize, Option<FramingError>) {
    let mut bodies = Vec::new();
    let mut offset = 0;
    loop {
        match body_len(&buffer[offset..]) {
            Ok(Some(len)) if buffer.len() - offset >= HEADER_LEN + len => {
                bodies.push(&buffer[offset + HEADER_LEN..offset + HEADER_LEN + len]);
                offset += HEADER_LEN + len;
            }
            Ok(_) => return (bodies, offset, None),
            Err(error) => return (bodies, offset, Some(error)),
        }
    }
}

/// Writes one frame around `body`.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}
