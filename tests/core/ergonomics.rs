//! Extending the crate: every public trait works through `Arc<dyn _>` and `Box<dyn _>`,
//! implementors get `async_trait` and `futures` from the crate, and an own connector's
//! errors need no variant spelled out.

use std::sync::Arc;
use tributary::arrow_array::{Int64Array, RecordBatch};
use tributary::arrow_schema::{ArrowError, DataType, Field, Schema};
use tributary::format::{Csv, Format};
use tributary::futures::StreamExt;
use tributary::sources::MemoryExtractor;
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::validate::NotNull;
use tributary::*;

/// An own extractor written with the crate's re-exports only.
#[derive(Debug)]
struct Own;

#[tributary::async_trait]
impl Extractor for Own {
    fn source(&self) -> &str {
        "own"
    }
    fn stream(&self) -> &str {
        "numbers"
    }
    async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
        let _ = cx.checkpoint;
        let batches: Result<BatchStream> = async {
            let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
            let rb = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))])?;
            Ok(tributary::futures::stream::iter(vec![Ok(
                Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: 1 })
            )])
            .boxed())
        }
        .await;
        Ok(Extraction::new(batches?))
    }
}

#[tokio::test]
async fn every_trait_works_through_arc_and_box() {
    let sink = ObjectSink::memory();
    let extractor: Box<dyn Extractor> = Box::new(Own);
    let objects: Arc<dyn Sink> = Arc::new(sink.clone());
    let format: Box<dyn Format> = Box::new(Csv::default());
    let state: Arc<dyn StateStore> = Arc::new(ObjectStateStore::new(sink.clone(), "_state"));
    let boxed_state: Box<dyn StateStore> = Box::new(ObjectStateStore::new(sink.clone(), "_s2"));
    let check: Box<dyn BatchValidator> = Box::new(NotNull::new(["n"]));
    let arc_check: Arc<dyn BatchValidator> = Arc::new(NotNull::new(["n"]));
    let r = Pipeline::builder("own")
        .extractor(extractor)
        .sink(objects)
        .format(format)
        .state(state)
        .validator(check)
        .validator(arc_check)
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.rows, 2);
    assert_eq!(&sink.read(&r.objects[0].key).await.unwrap()[..], b"1\n2\n");
    assert!(boxed_state.load("own").await.unwrap().is_none());
    // Row-level sinks too.
    let rows: Box<dyn BatchSink> = Box::new(tributary::stores::MemoryBatchSink::new());
    let r = Pipeline::builder("own2")
        .extractor(Arc::new(MemoryExtractor::new("m", "s", vec![])) as Arc<dyn Extractor>)
        .batch_sink(rows)
        .build()
        .unwrap()
        .run()
        .await;
    assert!(r.succeeded());
}

/// A format means nothing to a batch sink, which encodes its own output: `build` says
/// so instead of ignoring it.
#[test]
fn a_format_with_a_batch_sink_is_refused() {
    let build = |options: PipelineOptions, format: bool| {
        let mut b = Pipeline::builder("rows")
            .extractor(MemoryExtractor::new("m", "s", vec![]))
            .batch_sink(tributary::stores::MemoryBatchSink::new())
            .options(options);
        if format {
            b = b.format(tributary::format::JsonLines::default());
        }
        b.build()
    };
    let err = build(PipelineOptions::new().with_part_max_rows(10), true).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "pipeline: invalid configuration: PipelineBuilder::format applies to objects \
         written through .sink(...); a .batch_sink(...) encodes its own output, so give \
         the format to the sink itself (ObjectBatchSink::new(sink, format))"
    );
    // Run knobs are the pipeline's, whatever the sink.
    build(PipelineOptions::new().with_part_max_rows(10), false).unwrap();
}

#[test]
fn an_own_connectors_errors_need_no_variant() {
    let e: Error = ArrowError::SchemaError("column n is missing".into()).into();
    assert!(matches!(e, Error::Type { .. }));
    assert!(e.to_string().contains("column n is missing"));
    // The cause is kept, as Arrow's own error.
    let cause = std::error::Error::source(&e).expect("a source");
    assert!(matches!(
        cause.downcast_ref::<ArrowError>(),
        Some(ArrowError::SchemaError(m)) if m == "column n is missing"
    ));
    let io = std::io::Error::other("postgres://u:hunter2@db/x refused");
    let e = Error::connector("own", io, true);
    assert!(e.is_retryable());
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = Error::connector("own", "syntax error at or near FROM", false);
    assert!(matches!(
        e,
        Error::Query {
            retryable: false,
            ..
        }
    ));
}
