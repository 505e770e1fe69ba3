//! The public traits: [`Extractor`], [`Sink`]/[`SinkWriter`], [`Validator`], [`BatchValidator`].

mod ack;
mod extractor;
mod sink;
mod validator;

pub use ack::{Acker, Extraction, NoAck, Resume};
pub use extractor::Extractor;
pub use sink::{ObjectTarget, Receipt, Sink, SinkWriter};
pub use validator::{BatchValidator, Severity, ValidationOutcome, Validator};
