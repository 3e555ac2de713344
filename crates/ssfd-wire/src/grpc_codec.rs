//! The gRPC codec of every ssfd service: prost, except that a request that does not
//! decode answers `INVALID_ARGUMENT` (SPEC 3.3; tonic's default says `INTERNAL`) and
//! is counted as `ssfd_rejected_total{listener="grpc",reason="decode"}` (`forward` for
//! Veneur's forward import).

use prost::Message;
use prost::bytes::BufMut;
use ssfd_telemetry::{Listener, Protocol, Reason};
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes `T`, decodes `U`.
#[derive(Debug)]
pub struct SsfdCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SsfdCodec<T, U> {
    fn default() -> Self {
        SsfdCodec(PhantomData)
    }
}

impl<T, U> Codec for SsfdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SsfdEncoder<T>;
    type Decoder = SsfdDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SsfdEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        SsfdDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct SsfdEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SsfdEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        if buf.remaining_mut() < item.encoded_len() {
            buf.reserve(item.encoded_len());
        }
        item.encode(buf)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[derive(Debug)]
pub struct SsfdDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SsfdDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use prost::bytes::Buf;
        // Decoding from one contiguous slice avoids a `BytesMut::advance` per field.
        let len = buf.remaining();
        let result = if buf.chunk().len() >= len {
            let decoded = U::decode(&buf.chunk()[..len]);
            buf.advance(len);
            decoded
        } else {
            U::decode(buf)
        };
        match result {
            Ok(message) => Ok(Some(message)),
            Err(error) => {
                let listener = listener_of::<U>();
                ssfd_telemetry::received(listener, Protocol::Grpc, 1);
                ssfd_telemetry::rejected(listener, Protocol::Grpc, Reason::Decode, 1);
                Err(Status::invalid_argument(format!(
                    "message does not decode: {error}"
                )))
            }
        }
    }
}

/// A request kept as its wire bytes, for services that read it in place.
pub trait FromWire: Sized {
    fn from_wire(bytes: prost::bytes::Bytes) -> Self;
}

/// An `SSFSpan` as it came off the wire; ingest reads it with
/// [`crate::ssf_view::SpanView`] instead of decoding it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawSpan(pub prost::bytes::Bytes);

impl FromWire for RawSpan {
    fn from_wire(bytes: prost::bytes::Bytes) -> Self {
        RawSpan(bytes)
    }
}

/// Encodes `T` with prost, hands `U` its request bytes undecoded. The servers of
/// [`crate::raw`] use it.
#[derive(Debug)]
pub struct RawCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for RawCodec<T, U> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

impl<T, U> Codec for RawCodec<T, U>
where
    T: Message + Send + 'static,
    U: FromWire + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SsfdEncoder<T>;
    type Decoder = RawDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SsfdEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct RawDecoder<U>(PhantomData<U>);

impl<U: FromWire> Decoder for RawDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use prost::bytes::Buf;
        let len = buf.remaining();
        Ok(Some(U::from_wire(buf.copy_to_bytes(len))))
    }
}

/// The listener a request of type `U` came to: Veneur's forward import (`metricpb`,
/// `forwardrpc`) is the forward listener, every other service the gRPC one.
fn listener_of<U>() -> Listener {
    let name = std::any::type_name::<U>();
    if name.contains("metricpb") || name.contains("forwardrpc") {
        Listener::Forward
    } else {
        Listener::Grpc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_import_that_does_not_decode_counts_as_forward() {
        assert_eq!(listener_of::<crate::metricpb::Metric>(), Listener::Forward);
        assert_eq!(
            listener_of::<crate::forwardrpc::MetricList>(),
            Listener::Forward
        );
        assert_eq!(listener_of::<crate::ssf::SsfSpan>(), Listener::Grpc);
        assert_eq!(
            listener_of::<crate::dogstatsd::DogstatsdPacket>(),
            Listener::Grpc
        );
    }
}
