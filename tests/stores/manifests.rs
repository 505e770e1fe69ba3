//! Manifests as an API: read back typed, listed by run, with units in field names; and
//! the Redshift `COPY ... MANIFEST` file beside them, in its documented shape.

use crate::common;

use std::sync::Arc;
use tributary::arrow_array::{Int64Array, RecordBatch};
use tributary::arrow_schema::{DataType, Field, Schema};
use tributary::format::{Compression, CsvDialect};
use tributary::sources::MemoryExtractor;
use tributary::stores::ObjectSink;
use tributary::*;

fn batches() -> Vec<Batch> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    (0..5i64)
        .map(|i| {
            let rb = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(
                    (i * 10..i * 10 + 10).collect::<Vec<_>>(),
                ))],
            )
            .unwrap();
            Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: i as u64 + 1 })
        })
        .collect()
}

async fn check_redshift(sink: &ObjectSink, base: &str) {
    let r = Pipeline::builder("rs")
        .extractor(MemoryExtractor::new("m", "orders", batches()))
        .batch_sink(
            tributary::stores::ObjectBatchSink::new(
                sink.clone(),
                format::Csv::new(CsvDialect::redshift()),
            )
            .with_compression(Compression::Gzip)
            .unwrap()
            .with_redshift_manifest(true),
        )
        .options(
            PipelineOptions::new()
                .with_run_id("r1")
                .with_part_max_rows(20),
        )
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.objects.len(), 3);
    // Our manifest, typed: units in the field names, objects with their schemas.
    let key = r.manifest.clone().unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&sink.read(&key).await.unwrap()).unwrap();
    assert!(raw.get("duration_ms").is_some() && raw.get("duration").is_none());
    let m = sink.read_manifest(&key).await.unwrap();
    assert_eq!(
        (m.outcome, m.rows, m.objects.len()),
        (Outcome::Succeeded, 50, 3)
    );
    assert_eq!(
        m.checkpoint_to,
        Some(serde_json::json!({"kind": "lsn", "lsn": 5}))
    );
    assert_eq!(
        sink.list_runs("m/").await.unwrap(),
        std::slice::from_ref(&key)
    );
    // The Redshift manifest: {"entries": [{"url", "mandatory", "meta": {"content_length"}}]}.
    let rkey = key.replace(".manifest.json", ".redshift-manifest.json");
    let rm: serde_json::Value = serde_json::from_slice(&sink.read(&rkey).await.unwrap()).unwrap();
    let obj = rm.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["entries"]);
    let entries = rm["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for (e, o) in entries.iter().zip(&r.objects) {
        let e = e.as_object().unwrap();
        let mut fields: Vec<&String> = e.keys().collect();
        fields.sort();
        assert_eq!(fields, ["mandatory", "meta", "url"]);
        assert_eq!(e["mandatory"], true);
        assert_eq!(e["meta"]["content_length"], o.bytes);
        let url = e["url"].as_str().unwrap();
        assert_eq!(url, format!("{base}/{}", o.key));
        assert!(o.key.ends_with(".csv.gz"));
        // The URL names an object that is there, of that length.
        assert_eq!(sink.read(&o.key).await.unwrap().len() as u64, o.bytes);
    }
    assert!(
        CsvDialect::redshift()
            .redshift_copy_options_with(Compression::Gzip)
            .ends_with(" GZIP")
    );

    // A leftover removed as a resuming run removes it: out of both manifests first
    // (Redshift's COPY would fail on a mandatory entry that is gone), then deleted.
    let last = r.objects[2].key.clone();
    let objects = tributary::stores::ObjectBatchSink::new(sink.clone(), format::Csv::default())
        .with_redshift_manifest(true);
    objects
        .discard(&Leftover::new(vec![last.clone()], Some(key.clone())))
        .await
        .unwrap();
    assert!(matches!(
        sink.read(&last).await,
        Err(Error::NotFound { .. })
    ));
    let rm: serde_json::Value = serde_json::from_slice(&sink.read(&rkey).await.unwrap()).unwrap();
    let urls: Vec<&str> = rm["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    let want: Vec<String> = r.objects[..2]
        .iter()
        .map(|o| format!("{base}/{}", o.key))
        .collect();
    assert_eq!(urls, want);
    let m = sink.read_manifest(&key).await.unwrap();
    assert_eq!(m.objects.len(), 2);
    assert_eq!(m.rows, 50 - r.objects[2].rows);
}

#[tokio::test]
async fn a_redshift_manifest_in_its_documented_shape_in_memory() {
    let sink = ObjectSink::memory();
    let base = sink.describe();
    check_redshift(&sink, base.trim_end_matches('/')).await;
}

#[tokio::test]
async fn a_redshift_manifest_on_the_s3_compatible_server_names_s3_urls() {
    let Some((bucket, opts)) = common::s3_options() else {
        return;
    };
    let prefix = common::unique("redshift");
    let sink =
        ObjectSink::from_url_with_options(&format!("s3://{bucket}/{prefix}"), &opts).unwrap();
    assert_eq!(sink.describe(), format!("s3://{bucket}/{prefix}"));
    check_redshift(&sink, &format!("s3://{bucket}/{prefix}")).await;
}

#[tokio::test]
async fn something_that_is_not_a_manifest_is_a_typed_error_naming_it() {
    let sink = ObjectSink::memory();
    sink.put_if_absent(
        "x/not.manifest.json",
        bytes::Bytes::from_static(b"{\"a\":1}"),
    )
    .await
    .unwrap();
    let e = sink.read_manifest("x/not.manifest.json").await.unwrap_err();
    assert!(matches!(e, Error::Type { .. }));
    assert!(e.to_string().contains("x/not.manifest.json"), "{e}");
}
