//! Kafka topics of Debezium change events → change rows (feature `kafka`):
//! [`KafkaExtractor`] with [`KafkaConfig`].
mod config;
mod envelope;
mod extractor;
mod rows;
mod types;

pub use config::{KafkaConfig, Tombstones};
pub use extractor::KafkaExtractor;

#[cfg(test)]
mod tests;
