//! Change rows → Kafka topics as Debezium change events (feature `kafka`): [`KafkaSink`]
//! with [`KafkaSinkConfig`].
mod config;
mod envelope;
mod sink;
mod types;

pub use config::KafkaSinkConfig;
pub use sink::KafkaSink;
