//! Helpers shared by the integration tests: finding the test services.
#![allow(dead_code)]

#[cfg(feature = "mysql-cdc")]
pub mod binlog;
pub mod changes;
#[cfg(feature = "postgres-cdc")]
pub mod wal;

/// Whether we run in CI, where a missing service is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The value of `var`, which `scripts/services.sh` sets. Missing: panics in CI, else
/// prints why the test is skipped and returns `None`.
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if in_ci() => {
            panic!("{what} is required in CI but {var} is not set: run scripts/services.sh")
        }
        _ => {
            eprintln!(
                "SKIPPED: {what} not available ({var} not set; run scripts/services.sh first)"
            );
            None
        }
    }
}

/// Options for the S3-compatible test server, or `None` (see [`service`]).
pub fn s3_options() -> Option<(String, Vec<(String, String)>)> {
    let endpoint = service("TRIBUTARY_TEST_S3_ENDPOINT", "S3-compatible server")?;
    let bucket =
        std::env::var("TRIBUTARY_TEST_S3_BUCKET").unwrap_or_else(|_| "tributary-test".into());
    let key = std::env::var("TRIBUTARY_TEST_S3_ACCESS_KEY").unwrap_or_default();
    let secret = std::env::var("TRIBUTARY_TEST_S3_SECRET_KEY").unwrap_or_default();
    Some((
        bucket,
        vec![
            ("aws_endpoint".into(), endpoint),
            ("aws_allow_http".into(), "true".into()),
            ("aws_access_key_id".into(), key),
            ("aws_secret_access_key".into(), secret),
            ("aws_region".into(), "us-east-1".into()),
            ("aws_virtual_hosted_style_request".into(), "false".into()),
        ],
    ))
}

/// The cloud object stores `scripts/services.sh` runs: an S3-compatible server, Azurite
/// and fake-gcs-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    S3,
    Azure,
    Gcs,
}

impl Cloud {
    pub const ALL: [Cloud; 3] = [Cloud::S3, Cloud::Azure, Cloud::Gcs];

    pub fn name(self) -> &'static str {
        match self {
            Cloud::S3 => "s3",
            Cloud::Azure => "azure",
            Cloud::Gcs => "gcs",
        }
    }

    pub fn from_name(name: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The store's URL (without prefix) and the options that reach the test server, or
    /// `None` (see [`service`]). The options are the ones a user sets for any
    /// S3-compatible, Azure-compatible or GCS-compatible endpoint.
    pub fn options(self) -> Option<(String, Vec<(String, String)>)> {
        match self {
            Cloud::S3 => s3_options().map(|(bucket, o)| (format!("s3://{bucket}"), o)),
            Cloud::Azure => {
                let endpoint = service("TRIBUTARY_TEST_AZURE_ENDPOINT", "Azurite (Azure Blob)")?;
                let container = std::env::var("TRIBUTARY_TEST_AZURE_CONTAINER")
                    .unwrap_or_else(|_| "tributary-test".into());
                Some((
                    format!("az://{container}"),
                    vec![
                        ("azure_storage_account_name".into(), "devstoreaccount1".into()),
                        // Azurite's published development key, not a secret.
                        (
                            "azure_storage_account_key".into(),
                            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==".into(),
                        ),
                        ("azure_storage_endpoint".into(), endpoint),
                        ("azure_allow_http".into(), "true".into()),
                    ],
                ))
            }
            Cloud::Gcs => {
                let endpoint = service("TRIBUTARY_TEST_GCS_ENDPOINT", "fake-gcs-server (GCS)")?;
                let bucket = std::env::var("TRIBUTARY_TEST_GCS_BUCKET")
                    .unwrap_or_else(|_| "tributary-test".into());
                // A service account key that points the client at the emulator and turns
                // OAuth off (object_store's documented emulator setting).
                let key = serde_json::json!({
                    "gcs_base_url": endpoint,
                    "disable_oauth": true,
                    "client_email": "",
                    "private_key": "",
                    "private_key_id": "",
                });
                Some((
                    format!("gs://{bucket}"),
                    vec![
                        ("google_service_account_key".into(), key.to_string()),
                        ("allow_http".into(), "true".into()),
                    ],
                ))
            }
        }
    }

    /// A sink on this store under `prefix`, or `None` (see [`service`]).
    pub fn sink(self, prefix: &str) -> Option<tributary::stores::ObjectSink> {
        let (url, opts) = self.options()?;
        Some(
            tributary::stores::ObjectSink::from_url_with_options(&format!("{url}/{prefix}"), &opts)
                .unwrap_or_else(|e| panic!("{} sink: {e}", self.name())),
        )
    }
}

/// A unique name for this test run, so tests never see each other's objects or tables.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Everything `e` reads from the start, as one batch.
pub async fn extract_all(e: &dyn tributary::Extractor) -> arrow_array::RecordBatch {
    use tributary::ExtractorExt;
    let batches = e.collect(None).await.unwrap();
    arrow_select::concat::concat_batches(
        &batches[0].records.schema(),
        batches.iter().map(|b| &b.records),
    )
    .unwrap()
}

/// Concatenate the batches of one Parquet object.
#[cfg(feature = "parquet")]
pub fn read_parquet(bytes: bytes::Bytes) -> arrow_array::RecordBatch {
    let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Run `e` through a pipeline writing Parquet to memory; its rows and the object read back.
#[cfg(feature = "parquet")]
pub async fn through_parquet(e: impl tributary::Extractor) -> (u64, arrow_array::RecordBatch) {
    let sink = tributary::stores::ObjectSink::memory();
    let report = tributary::Pipeline::builder("parquet")
        .extractor(e)
        .sink(sink.clone())
        .format(tributary::format::Parquet::new())
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(report.objects.len(), 1, "{:?}", report.objects);
    let got = read_parquet(sink.read(&report.objects[0].key).await.unwrap());
    (report.rows, got)
}

/// xorshift64*: seeded, so kill moments are the same on every run of a crash trial.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// A built example's binary (`cargo test --all-features` builds them).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo test --all-features`",
        p.display()
    );
    p
}

/// Run an example to its end; its stdout, panicking with both outputs if it failed.
pub fn run_example(name: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(example(name))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every `.csv` file under `dir`, in path order.
pub fn csv_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The lines of files, file by file.
pub fn lines_of(files: &[std::path::PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Equal values and Arrow types, column by column (field metadata and nullability aside:
/// change rows are all nullable and mark the key).
pub fn assert_same_values(a: &arrow_array::RecordBatch, b: &arrow_array::RecordBatch) {
    assert_eq!(a.num_columns(), b.num_columns());
    assert_eq!(a.num_rows(), b.num_rows());
    for i in 0..a.num_columns() {
        let name = a.schema().field(i).name().clone();
        assert_eq!(&name, b.schema().field(i).name());
        assert_eq!(
            a.column(i).data_type(),
            b.column(i).data_type(),
            "type of {name}"
        );
        assert_eq!(
            a.column(i).to_data(),
            b.column(i).to_data(),
            "values of {name}"
        );
    }
}

/// A pipeline from `extractor` into `sink`, its state saved in the same sink under
/// `_state`, with default options.
pub fn pipeline(
    name: &str,
    extractor: impl tributary::Extractor,
    sink: &tributary::stores::ObjectSink,
) -> tributary::Pipeline {
    tributary::Pipeline::builder(name)
        .extractor(extractor)
        .sink(sink.clone())
        .state(tributary::stores::ObjectStateStore::new(
            sink.clone(),
            "_state",
        ))
        .build()
        .unwrap()
}

/// The values of the first column of `batches`, an `Int64` column.
pub fn first_column_i64(batches: &[tributary::Batch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.records
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .expect("an Int64 first column")
                .values()
                .to_vec()
        })
        .collect()
}

/// The text of the object at `key`.
pub async fn read_text(sink: &tributary::stores::ObjectSink, key: &str) -> String {
    String::from_utf8(sink.read(key).await.unwrap().to_vec()).expect("UTF-8 text")
}
