//! The protobuf codec of every generated client and server: prost's, except that a
//! message that does not decode is INVALID_ARGUMENT instead of INTERNAL.
//!
//! tonic-prost maps every decode error to INTERNAL (gRPC's guidance for a peer that
//! sent garbage it should not have). For a server the garbage is the caller's input,
//! which every other check of this contract answers with INVALID_ARGUMENT; this codec
//! keeps that promise for bytes that are not a message at all. The same codec runs in
//! clients, where an undecodable response also reads INVALID_ARGUMENT: the message
//! says which side's bytes did not decode.
//!
//! Message size limits are not the codec's: tonic checks them first
//! (RESOURCE_EXHAUSTED / OUT_OF_RANGE with the sizes).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// prost encoding, with decode errors as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder { _pd: PhantomData }
    }
}

/// Decodes `U` with prost; an undecodable message is INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "the message is not a valid {}: {e}",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message")
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
