//! The public traits: [`Extractor`] (with [`Acker`]), [`BatchSink`]/[`BatchWriter`],
//! [`Sink`]/[`SinkWriter`], [`Validator`], [`BatchValidator`].

mod ack;
mod batch_sink;
mod extractor;
mod forward;
mod sink;
mod validator;

pub use ack::{Acker, Extraction, NoAck};
pub(crate) use batch_sink::same_schema;
pub use batch_sink::{
    BatchSink, BatchTarget, BatchWriter, Leftover, ObjectReport, SinkCapabilities,
};
pub use extractor::{ExtractContext, Extractor, ExtractorCapabilities, ExtractorExt, Plan};
pub(crate) use forward::forward_impls;
pub use sink::{ObjectTarget, Receipt, Sink, SinkWriter};
pub(crate) use validator::applies_to;
pub use validator::{BatchValidator, Severity, ValidationOutcome, Validator};
