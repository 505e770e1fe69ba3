//! REST API source (feature `rest`): JSON flattened to rows, pagination, auth, retries,
//! rate limits, incremental runs. The book's REST job, with what real APIs need.

mod config;
mod extractor;
mod http;
mod plan;
mod types;

pub use config::{Auth, Incremental, Method, Pagination, RestSource};
pub use extractor::RestExtractor;
