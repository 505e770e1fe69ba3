//! The public traits: [`Extractor`], [`Sink`]/[`SinkWriter`], [`Validator`], [`BatchValidator`].

mod extractor;
mod sink;
mod validator;

pub use extractor::Extractor;
pub use sink::{ObjectTarget, Receipt, Sink, SinkWriter};
pub use validator::{BatchValidator, Severity, ValidationOutcome, Validator};
