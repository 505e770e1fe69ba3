//! `[store]`, `[warehouse]` and `[pipeline]`: where data lands, in what format, and how
//! the pipeline runs.

use super::PipelineConfig;
use crate::format::{Compression, Csv, CsvDialect, Format, JsonLines};
use crate::stores::ObjectSink;
use crate::{Error, Result};

/// A `zstd` (level 3) or `zstd:LEVEL` setting: `None` if `v` is neither, `Some(None)` for a
/// level outside 1 to 22.
fn zstd_level(v: &str) -> Option<Option<i32>> {
    if v == "zstd" {
        return Some(Some(3));
    }
    let level = v.strip_prefix("zstd:")?;
    Some(level.parse().ok().filter(|l| (1..=22).contains(l)))
}

impl PipelineConfig {
    /// Where data lands: `[store] url`, or else `s3://<bucket_name>` from
    /// `[aws_boto_credentials]` as the book's scripts do.
    pub fn store_url(&self) -> Result<String> {
        if let Some(u) = self.get("store", "url") {
            return Ok(u.to_string());
        }
        if let Some(b) = self.aws().and_then(|a| a.bucket_name) {
            return Ok(format!("s3://{b}"));
        }
        Err(Error::config(
            "pipeline.conf",
            format!(
                "{}: no [store] url (and no bucket_name in [aws_boto_credentials])",
                self.origin
            ),
        ))
    }

    /// The [`ObjectSink`] for `[store]`, with S3 credentials from
    /// `[aws_boto_credentials]` when the URL is `s3://`.
    pub fn store(&self) -> Result<ObjectSink> {
        let url = self.store_url()?;
        let mut opts = Vec::new();
        if url.starts_with("s3://")
            && let Some(a) = self.aws()
        {
            if !a.access_key.expose().is_empty() {
                opts.push((
                    "aws_access_key_id".to_string(),
                    a.access_key.expose().to_string(),
                ));
                opts.push((
                    "aws_secret_access_key".to_string(),
                    a.secret_key.expose().to_string(),
                ));
            }
            if let Some(r) = a.region {
                opts.push(("aws_region".to_string(), r));
            }
            if let Some(e) = a.endpoint {
                if e.starts_with("http://") {
                    opts.push(("aws_allow_http".to_string(), "true".to_string()));
                }
                opts.push(("aws_endpoint".to_string(), e));
            }
        }
        let sink = ObjectSink::from_url_with_options(&url, &opts)?;
        Ok(match self.get("store", "prefix") {
            Some(p) => sink.with_prefix(p),
            None => sink,
        })
    }

    /// The output format from `[store] format` (`csv`, default, `jsonl`, or `parquet`
    /// with the `parquet` feature) and `dialect` (`book`, default, `postgres`, `redshift`,
    /// `snowflake`). For Parquet, `[store] compression` names the page compression:
    /// `snappy` (default), `zstd`, `zstd:LEVEL` or `none`.
    pub fn format(&self) -> Result<Box<dyn Format>> {
        let dialect = match self.get("store", "dialect").unwrap_or("book") {
            "book" => CsvDialect::book(),
            "postgres" => CsvDialect::postgres(),
            "redshift" => CsvDialect::redshift(),
            "snowflake" => CsvDialect::snowflake(),
            other => {
                return Err(Error::config(
                    "pipeline.conf",
                    format!(
                        "[store] dialect {other:?}: expected book, postgres, redshift or snowflake"
                    ),
                ));
            }
        };
        match self.get("store", "format").unwrap_or("csv") {
            "csv" => Ok(Box::new(Csv::new(dialect))),
            "jsonl" | "json" => Ok(Box::new(JsonLines::new())),
            "parquet" => self.parquet(),
            other => Err(Error::config(
                "pipeline.conf",
                format!("[store] format {other:?}: expected csv, jsonl or parquet"),
            )),
        }
    }

    #[cfg(feature = "parquet")]
    fn parquet(&self) -> Result<Box<dyn Format>> {
        let compression = self.parquet_compression()?;
        Ok(Box::new(
            crate::format::Parquet::new().with_compression(compression),
        ))
    }

    #[cfg(not(feature = "parquet"))]
    fn parquet(&self) -> Result<Box<dyn Format>> {
        Err(Error::config(
            "pipeline.conf",
            "[store] format \"parquet\": this build lacks the `parquet` feature",
        ))
    }

    fn is_parquet(&self) -> bool {
        self.get("store", "format") == Some("parquet")
    }

    /// `[store] compression` for Parquet: `snappy` (default), `zstd`, `zstd:LEVEL` or `none`.
    #[cfg(feature = "parquet")]
    fn parquet_compression(&self) -> Result<crate::format::ParquetCompression> {
        use crate::format::ParquetCompression as P;
        let v = self.get("store", "compression").unwrap_or("snappy");
        let bad = || {
            Error::config(
                "pipeline.conf",
                format!(
                    "[store] compression {v:?} with format parquet: expected snappy, zstd, \
                     zstd:LEVEL (1-22) or none"
                ),
            )
        };
        match v {
            "snappy" | "" => Ok(P::Snappy),
            "none" => Ok(P::None),
            z => match zstd_level(z) {
                Some(Some(level)) => Ok(P::Zstd(level)),
                _ => Err(bad()),
            },
        }
    }

    /// The objects `[store]` describes: [`store`](Self::store) in
    /// [`format`](Self::format), compressed as [`compression`](Self::compression) says,
    /// with the default key and manifest templates.
    ///
    /// ```
    /// use tributary::config::PipelineConfig;
    /// let c = PipelineConfig::parse("[store]\nurl = memory:///\ncompression = gzip\n", "t", |_| None)
    ///     .unwrap();
    /// assert!(format!("{:?}", c.object_batch_sink().unwrap()).contains("Gzip"));
    /// let bad = PipelineConfig::parse("[store]\nurl = memory:///\ncompression = lz9\n", "t", |_| None)
    ///     .unwrap();
    /// assert!(bad.object_batch_sink().unwrap_err().to_string().contains("lz9"));
    /// ```
    pub fn object_batch_sink(&self) -> Result<crate::stores::ObjectBatchSink> {
        crate::stores::ObjectBatchSink::new(self.store()?, self.format()?)
            .with_compression(self.compression()?)
    }

    /// `[store] compression` of whole objects: `none` (default), `gzip`, or `zstd` /
    /// `zstd:LEVEL` (feature `zstd`). With
    /// `format = parquet` the setting is Parquet's own (see [`PipelineConfig::format`]) and
    /// objects are not compressed again.
    pub fn compression(&self) -> Result<Compression> {
        if self.is_parquet() {
            return Ok(Compression::None);
        }
        let lacks = |v: &str| {
            Error::config(
                "pipeline.conf",
                format!("[store] compression {v:?}: this build lacks the `zstd` feature"),
            )
        };
        let zstd = crate::stores::compress::ZSTD;
        match self.get("store", "compression").unwrap_or("none") {
            "none" | "" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zst" if !zstd => Err(lacks("zst")),
            "zst" => Ok(Compression::Zstd(3)),
            other => match zstd_level(other) {
                Some(_) if !zstd => Err(lacks(other)),
                Some(Some(level)) => Ok(Compression::Zstd(level)),
                Some(None) => Err(Error::config(
                    "pipeline.conf",
                    format!("[store] compression {other:?}: the zstd level must be 1 to 22"),
                )),
                None => Err(Error::config(
                    "pipeline.conf",
                    format!(
                        "[store] compression {other:?}: expected none, gzip, zstd or zstd:LEVEL"
                    ),
                )),
            },
        }
    }

    /// The [`PipelineOptions`](crate::PipelineOptions) `pipeline.conf` sets:
    /// `[store] part_max_rows`, `part_max_bytes` (bytes, or `64MiB`, `1GiB`),
    /// and `[pipeline] commit_interval` (`30s`, `5m`), `retries`, `retry_backoff`,
    /// `channel_capacity`, `on_schema_change` (`new_object` or `fail`). Unset keys keep the
    /// defaults.
    ///
    /// ```
    /// use tributary::config::PipelineConfig;
    /// let c = PipelineConfig::parse(
    ///     "[store]\nurl = file:///tmp/x\npart_max_rows = 50000\n[pipeline]\ncommit_interval = 30s\n",
    ///     "test", |_| None).unwrap();
    /// let o = c.pipeline_options().unwrap();
    /// assert!(format!("{o:?}").contains("part_max_rows: Some(50000)"));
    /// assert!(PipelineConfig::parse("[pipeline]\nretries = many\n", "t", |_| None)
    ///     .unwrap().pipeline_options().is_err());
    /// let c = PipelineConfig::parse("[pipeline]\non_schema_change = fail\n", "t", |_| None).unwrap();
    /// assert!(format!("{:?}", c.pipeline_options().unwrap()).contains("on_schema_change: Fail"));
    /// let bad = PipelineConfig::parse("[pipeline]\non_schema_change = ignore\n", "t", |_| None).unwrap();
    /// assert!(bad.pipeline_options().unwrap_err().to_string().contains("new_object or fail"));
    /// ```
    pub fn pipeline_options(&self) -> Result<crate::PipelineOptions> {
        let mut o = crate::PipelineOptions::new();
        if let Some(n) = self.parsed("store", "part_max_rows", "a number of rows", |v| {
            v.parse::<u64>().ok().filter(|n| *n > 0)
        })? {
            o = o.with_part_max_rows(n);
        }
        if let Some(n) = self.parsed("store", "part_max_bytes", "a size such as 64MiB", |v| {
            crate::util::parse_size(v).filter(|n| *n > 0)
        })? {
            o = o.with_part_max_bytes(n);
        }
        if let Some(d) = self.parsed(
            "pipeline",
            "commit_interval",
            "a duration such as 30s",
            |v| crate::util::parse_duration(v).filter(|d| !d.is_zero()),
        )? {
            o = o.with_commit_interval(d);
        }
        let retries = self.parsed("pipeline", "retries", "a whole number", |v| v.parse().ok())?;
        let backoff = self.parsed(
            "pipeline",
            "retry_backoff",
            "a duration such as 1s",
            crate::util::parse_duration,
        )?;
        if retries.is_some() || backoff.is_some() {
            o = o.with_retry(
                crate::RetryPolicy::new(retries.unwrap_or(0))
                    .with_base(backoff.unwrap_or(std::time::Duration::from_secs(1))),
            );
        }
        if let Some(n) =
            self.parsed("pipeline", "channel_capacity", "a number of batches", |v| {
                v.parse::<usize>().ok().filter(|n| *n > 0)
            })?
        {
            o = o.with_channel_capacity(n);
        }
        if let Some(w) =
            self.parsed(
                "pipeline",
                "on_schema_change",
                "new_object or fail",
                |v| match v {
                    "new_object" => Some(crate::OnSchemaChange::NewObject),
                    "fail" => Some(crate::OnSchemaChange::Fail),
                    _ => None,
                },
            )?
        {
            o = o.with_on_schema_change(w);
        }
        Ok(o)
    }

    /// `connect_timeout` and `read_timeout` of a database section (`30s`, `10m`; see
    /// [`Timeouts`](crate::sources::sql::Timeouts)), defaults where unset.
    #[cfg(feature = "sql")]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
    )]
    pub fn timeouts(&self, section: &str) -> Result<crate::sources::sql::Timeouts> {
        let mut t = crate::sources::sql::Timeouts::new();
        let dur = |v: &str| crate::util::parse_duration(v).filter(|d| !d.is_zero());
        if let Some(d) = self.parsed(section, "connect_timeout", "a duration such as 30s", dur)? {
            t = t.with_connect(d);
        }
        if let Some(d) = self.parsed(section, "read_timeout", "a duration such as 10m", dur)? {
            t = t.with_read(d);
        }
        Ok(t)
    }

    /// `[warehouse] url`.
    pub fn warehouse_url(&self) -> Result<String> {
        self.require("warehouse", "url")
    }

    /// A [`PipelineBuilder`](crate::PipelineBuilder) named `name` with everything
    /// `pipeline.conf` says: the sink from `[store]`, its format and compression, and
    /// checkpoints and run history in the warehouse when `[warehouse] url` is set, else
    /// checkpoints in the store under `_state/`. Add an extractor and build.
    #[cfg(feature = "sql")]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
    )]
    pub async fn pipeline_builder(&self, name: &str) -> Result<crate::PipelineBuilder> {
        let mut b = crate::Pipeline::builder(name)
            .batch_sink(self.object_batch_sink()?)
            .options(self.pipeline_options()?);
        if self.get("warehouse", "url").is_some() {
            let wh = self.warehouse().await?;
            b = b.state(wh.state_store()).run_log(wh.run_log());
        } else {
            // No warehouse: checkpoints live beside the data, so a rerun resumes.
            b = b.state(crate::stores::ObjectStateStore::new(
                self.store()?,
                "_state",
            ));
        }
        Ok(b)
    }

    /// Connect to `[warehouse] url`.
    #[cfg(feature = "sql")]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
    )]
    pub async fn warehouse(&self) -> Result<crate::warehouse::Warehouse> {
        crate::warehouse::Warehouse::connect(&self.warehouse_url()?).await
    }
}
