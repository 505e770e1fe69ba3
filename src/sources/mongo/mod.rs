//! MongoDB source (feature `mongodb`): documents flattened to rows, a whole collection, a
//! time window (the book's chapter 4 job) or incremental by a cursor field, on the official
//! `mongodb` driver.
//!
//! ```no_run
//! use chrono::{Duration, Utc};
//! use tributary::sources::mongo::{MongoExtractor, MongoSource};
//! # async fn run() -> tributary::Result<()> {
//! // The book's extract_mongodb.py: yesterday's events, three fields, as `|` CSV.
//! let end = Utc::now();
//! let source = MongoSource::collection("events_db", "events")
//!     .fields(["event_id", "event_timestamp", "event_name"])
//!     .time_window("event_timestamp", end - Duration::days(1), end);
//! let extractor = MongoExtractor::connect("mongodb://127.0.0.1:27017", source).await?;
//! # Ok(()) }
//! ```
//!
//! TLS (`tls=true`, and every `mongodb+srv://` URI) verifies the server's certificate;
//! unlike the book's script, nothing here turns that off.
//!
//! ## Types
//!
//! | BSON | Arrow |
//! |---|---|
//! | boolean | Boolean |
//! | int32 | Int32 |
//! | int64 | Int64 |
//! | double | Float64 |
//! | decimal128 | Utf8, exact digits, marked `tributary.numeric` (JSON Lines writes a number) |
//! | string, symbol | Utf8 |
//! | ObjectId | Utf8, 24 hex digits |
//! | date | Timestamp(ms, `+00:00`) |
//! | binary subtype 4 (UUID) | FixedSizeBinary(16) marked `arrow.uuid` |
//! | other binary | Binary |
//! | arrays, documents deeper than the flattening depth, timestamps, regexes, code, min/max keys | Utf8 marked `arrow.json` (relaxed Extended JSON) |
//!
//! A field whose values have several types widens: int32 and int64 → Int64; integers and
//! doubles → Float64 (decimal text if an int64 beyond 2^53 is among them); numbers and
//! decimals → decimal text; UUID and other binary → Binary; anything with an array or
//! document → JSON; other mixes → Utf8 holding each value's text (strings as they are,
//! dates in RFC 3339, ObjectIds in hex). Kinds widen across the batches of a run, so a
//! widened column changes the schema (and starts a new part) from the next batch on.
//!
//! Behaviour verified against `nx-27017` (a MongoDB wire-protocol server over SQLite; no
//! real `mongod` can be installed on the machine that runs our tests): find with filter,
//! projection, sort and `getMore`, collection listing, authentication-free access. The BSON
//! types it cannot store (decimal128, timestamps, regexes) are tested with documents built
//! in Rust.

mod config;
mod extractor;
mod types;

pub use config::MongoSource;
pub use extractor::MongoExtractor;
