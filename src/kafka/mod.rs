//! Kafka, in one place (feature `kafka`): topics of Debezium change events read as change
//! rows ([`KafkaExtractor`] with [`KafkaConfig`]), change rows published to topics as
//! Debezium change events ([`KafkaSink`] with [`KafkaSinkConfig`]), the client settings
//! both share ([`KafkaClientConfig`], secrets redacted) and their `[kafka]` section of
//! `pipeline.conf`.
//!
//! Both sides speak Debezium's envelope vocabulary: the Connect schema names and value
//! encodings are read by the source and written by the sink as this table says.
//!
//! | Connect schema (`type`, `name`) | Arrow |
//! |---|---|
//! | `boolean`, `int8`…`int64`, `float`, `double`, `string`, `bytes` | Boolean, Int8…Int64, Float32, Float64, Utf8, Binary |
//! | `bytes` `org.apache.kafka.connect.data.Decimal` (`scale`, `connect.decimal.precision`) | Decimal128(p,s) (Decimal256 above 38 digits) |
//! | `struct` `io.debezium.data.VariableScaleDecimal` (`scale`, `value`) | Utf8, exact decimal text (`tributary.numeric`) |
//! | `int32` `io.debezium.time.Date`, `org.apache.kafka.connect.data.Date` | Date32 |
//! | `int32` `io.debezium.time.Time`, `org.apache.kafka.connect.data.Time` | Time32(ms) |
//! | `int64` `io.debezium.time.MicroTime` / `NanoTime` | Time64(µs) / Time64(ns) |
//! | `int64` `io.debezium.time.Timestamp` / `MicroTimestamp` / `NanoTimestamp` | Timestamp(ms / µs / ns), no zone |
//! | `int64` `org.apache.kafka.connect.data.Timestamp` | Timestamp(ms, +00:00) |
//! | `string` `io.debezium.time.ZonedTimestamp` | Timestamp(µs, +00:00) |
//! | `string` `io.debezium.time.ZonedTime` | Time64(µs), as UTC |
//! | `int64` `io.debezium.time.MicroDuration` | Duration(µs) |
//! | `string` `io.debezium.data.Json` | Utf8 marked `arrow.json` |
//! | `string` `io.debezium.data.Uuid` | FixedSizeBinary(16) marked `arrow.uuid` |
//! | `string` `io.debezium.data.Enum` / `EnumSet` | Utf8 |
//! | `bytes` `io.debezium.data.Bits` | Binary |
//! | anything else (arrays, maps, structs, geometry) | Utf8 holding the JSON value |
pub(crate) mod client;
mod conf;
mod consume;
pub(crate) mod debezium;
mod publish;

pub use client::KafkaClientConfig;
pub use consume::{KafkaConfig, KafkaExtractor, Tombstones};
pub use publish::{KafkaSink, KafkaSinkConfig};
