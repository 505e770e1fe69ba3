//! What the Kafka source and the Kafka sink share (feature `kafka`): the client settings
//! ([`KafkaClientConfig`], secrets redacted), and Debezium's envelope vocabulary
//! ([`debezium`]): the Connect schema names and value encodings both sides speak.
pub(crate) mod client;
pub mod debezium;

pub use client::KafkaClientConfig;
