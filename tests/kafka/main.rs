//! Kafka: Debezium envelopes in and out against a real broker.

#[path = "../common/mod.rs"]
mod common;

#[cfg(all(feature = "kafka", feature = "postgres-cdc"))]
mod kafka;
#[cfg(all(feature = "kafka", feature = "mysql-cdc", feature = "postgres-cdc"))]
mod kafka_example;
