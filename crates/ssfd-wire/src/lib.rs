//! ssfd's wire formats: the SSF and Veneur protobuf types (generated, checked in), the
//! DogStatsD text grammar, SSF stream framing and SSF normalisation. Pure code: no I/O.

pub mod dogstatsd_text;
pub mod framing;
#[cfg(feature = "grpc")]
pub mod grpc_codec;
pub mod ids;
pub mod normalize;
pub mod ssf_view;

#[allow(clippy::all, missing_docs)]
pub mod ssf {
    include!("gen/ssf.rs");
}
#[allow(clippy::all, missing_docs)]
pub mod dogstatsd {
    include!("gen/dogstatsd.rs");
}
#[allow(clippy::all, missing_docs)]
pub mod tdigest {
    include!("gen/tdigest.rs");
}
#[allow(clippy::all, missing_docs)]
pub mod metricpb {
    include!("gen/metricpb.rs");
}
#[allow(clippy::all, missing_docs)]
pub mod forwardrpc {
    include!("gen/forwardrpc.rs");
}
pub mod ssfd {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        include!("gen/ssfd.v1.rs");
    }
}

/// Server halves of `ssf.SSFGRPC` and `ssfd.v1.Ingest` whose `SSFSpan` requests arrive
/// as raw bytes ([`grpc_codec::RawSpan`]), so ingest reads them in place. Same service
/// names and wire format as the generated clients.
#[cfg(feature = "grpc")]
pub mod raw {
    #[allow(clippy::all, missing_docs)]
    pub mod ssf {
        include!("gen/raw/ssf.rs");
    }
    #[allow(clippy::all, missing_docs)]
    pub mod ssfd_v1 {
        include!("gen/raw/ssfd.v1.rs");
    }
}
