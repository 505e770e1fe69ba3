//! [`batch_sink_suite`]: the visibility rules of [`BatchSink`], for any implementation.

use crate::model::{ChangeOptions, ChangeSchema, SchemaSummary};
use crate::stores::{MemoryBatchSink, ObjectSink};
use crate::{BatchSink, BatchTarget, Error, Leftover, Result};
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use std::sync::Arc;

/// Whether a committed unit is visible, so the suite can check the rules.
#[async_trait]
pub trait BatchProbe: Send + Sync {
    /// Whether anything is visible at `id` (an object's key).
    async fn visible(&self, id: &str) -> Result<bool>;
}

#[async_trait]
impl BatchProbe for ObjectSink {
    async fn visible(&self, id: &str) -> Result<bool> {
        match self.read(id).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl BatchProbe for MemoryBatchSink {
    async fn visible(&self, id: &str) -> Result<bool> {
        Ok(self.committed(id).is_some())
    }
}

/// Change rows (an `_op` column, then the table's): what every batch sink takes, a
/// change-stream sink such as a topic included.
fn schema() -> SchemaRef {
    let row = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    ChangeSchema::new(row, ChangeOptions::new())
        .expect("no column named like a change column")
        .schema()
        .clone()
}

fn batch(from: i64, n: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec!["insert"; n as usize])),
            Arc::new(Int64Array::from((from..from + n).collect::<Vec<_>>())),
            Arc::new(StringArray::from(
                (from..from + n)
                    .map(|i| format!("v{i}"))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("valid batch")
}

fn target(run: &str, table: &str, part: u32) -> BatchTarget {
    BatchTarget::new("suite", "suite", table, run, part, Some(schema()))
}

/// Every check, each under its own run id starting with `run`, on change rows (an `_op`
/// column and the table's `id` and `v`); panics on the first violation:
///
/// - rows written are invisible until commit, then visible; the report names the unit
///   (`key` = the writer's id), its table, rows and schema;
/// - an abort, or a dropped writer, leaves nothing visible;
/// - an empty unit commits with 0 rows;
/// - a batch of another schema than the target's is an [`Error::Type`];
/// - writers of two tables can be open at once, and parts of one table have distinct ids;
/// - what the sink's [`capabilities`](BatchSink::capabilities) declare: with
///   `atomic_visibility` the invisibility checks above (without it they are skipped: a
///   topic shows a message once sent); with `discard`, a discarded unit is no longer
///   visible, its neighbours are, and discarding it again is no error; with
///   `transactional_checkpoint`, a committed unit stays invisible (staged) until
///   [`commit_state`](BatchSink::commit_state) publishes it with a state, which
///   [`load_state`](BatchSink::load_state) then reads back, and
///   [`delete_state`](BatchSink::delete_state) forgets.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use tributary::stores::MemoryBatchSink;
/// let sink = MemoryBatchSink::new();
/// tributary::testing::batch_sink_suite(&sink, &sink, "suite").await;
/// # });
/// ```
pub async fn batch_sink_suite<S: BatchSink + ?Sized, P: BatchProbe + ?Sized>(
    sink: &S,
    probe: &P,
    run: &str,
) {
    let name = sink.describe();
    let caps = sink.capabilities();
    // Visible only on commit, whole.
    let t = target(&format!("{run}-commit"), "t1", 0);
    let mut w = sink.begin(&t).await.expect("begin");
    let id = w.id().to_string();
    for i in 0..3 {
        w.write(&batch(i * 10, 10)).await.expect("write");
    }
    assert_eq!(w.rows(), 30, "{name}: rows() counts what was written");
    assert!(
        !caps.atomic_visibility || !probe.visible(&id).await.expect("probe"),
        "{name}: {id} visible before commit"
    );
    let report = w.commit().await.expect("commit");
    publish(sink, probe, std::slice::from_ref(&report), 1).await;
    assert_eq!(report.key, id, "{name}: the report names the writer's id");
    assert_eq!((report.rows, report.table.as_str()), (30, "t1"), "{name}");
    assert_eq!(report.schema, Some(SchemaSummary::of(&schema())), "{name}");
    assert!(
        probe.visible(&id).await.expect("probe"),
        "{name}: {id} not visible after commit"
    );

    // Abort and drop leave nothing.
    let mut w = sink
        .begin(&target(&format!("{run}-abort"), "t1", 0))
        .await
        .expect("begin");
    let id = w.id().to_string();
    w.write(&batch(0, 5)).await.expect("write");
    w.abort().await.expect("abort");
    assert!(
        !caps.atomic_visibility || !probe.visible(&id).await.expect("probe"),
        "{name}: {id} visible after abort"
    );
    let mut w = sink
        .begin(&target(&format!("{run}-drop"), "t1", 0))
        .await
        .expect("begin");
    let id = w.id().to_string();
    w.write(&batch(0, 5)).await.expect("write");
    drop(w);
    assert!(
        !caps.atomic_visibility || !probe.visible(&id).await.expect("probe"),
        "{name}: {id} visible after drop"
    );

    // Empty.
    let w = sink
        .begin(&target(&format!("{run}-empty"), "t1", 0))
        .await
        .expect("begin");
    assert_eq!(w.commit().await.expect("commit").rows, 0, "{name}");

    // Another schema is refused.
    let mut w = sink
        .begin(&target(&format!("{run}-schema"), "t1", 0))
        .await
        .expect("begin");
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["a"]))],
    )
    .expect("valid batch");
    let err = w.write(&other).await.expect_err("another schema accepted");
    assert!(matches!(err, Error::Type { .. }), "{name}: {err}");
    w.abort().await.expect("abort");

    // Two tables at once; two parts of one table.
    let r = format!("{run}-tables");
    let mut a = sink.begin(&target(&r, "t1", 0)).await.expect("begin");
    let mut b = sink.begin(&target(&r, "t2", 1)).await.expect("begin");
    let mut c = sink.begin(&target(&r, "t1", 2)).await.expect("begin");
    a.write(&batch(0, 2)).await.expect("write");
    b.write(&batch(2, 3)).await.expect("write");
    c.write(&batch(5, 1)).await.expect("write");
    let (ra, rb, rc) = (
        a.commit().await.expect("commit"),
        b.commit().await.expect("commit"),
        c.commit().await.expect("commit"),
    );
    assert!(
        ra.key != rb.key && ra.key != rc.key && rb.key != rc.key,
        "{name}: ids collide: {} {} {}",
        ra.key,
        rb.key,
        rc.key
    );
    publish(sink, probe, &[ra.clone(), rb.clone(), rc.clone()], 2).await;
    assert_eq!(
        (ra.rows, ra.table.as_str(), rb.rows, rb.table.as_str()),
        (2, "t1", 3, "t2")
    );
    for k in [&ra.key, &rb.key, &rc.key] {
        assert!(
            probe.visible(k).await.expect("probe"),
            "{name}: {k} not visible"
        );
    }

    // Committed units removed again, as a resuming run removes a stopped run's.
    if caps.discard {
        let left = Leftover::new(vec![ra.key.clone(), rc.key.clone()], None);
        sink.discard(&left).await.expect("discard");
        for k in [&ra.key, &rc.key] {
            assert!(
                !probe.visible(k).await.expect("probe"),
                "{name}: {k} visible after discard"
            );
        }
        assert!(
            probe.visible(&rb.key).await.expect("probe"),
            "{name}: {} gone with its neighbours",
            rb.key
        );
        sink.discard(&left)
            .await
            .unwrap_or_else(|e| panic!("{name}: discarding what is gone again: {e}"));
    }
}

/// On a sink with a transactional checkpoint: the staged `units` are invisible until
/// published with state number `n`, which then reads back. Elsewhere nothing to do.
async fn publish<S: BatchSink + ?Sized, P: BatchProbe + ?Sized>(
    sink: &S,
    probe: &P,
    units: &[crate::ObjectReport],
    n: u64,
) {
    if !sink.capabilities().transactional_checkpoint {
        return;
    }
    let name = sink.describe();
    for u in units {
        assert!(
            !probe.visible(&u.key).await.expect("probe"),
            "{name}: {} visible before its state was committed",
            u.key
        );
    }
    let state = crate::stores::PipelineState {
        checkpoint: Some(crate::Checkpoint::Lsn { lsn: n }),
        run_id: "suite".into(),
        ..Default::default()
    };
    sink.commit_state("suite", units, &state)
        .await
        .expect("commit_state");
    assert_eq!(
        sink.load_state("suite").await.expect("load_state"),
        Some(state),
        "{name}: the state committed with the data does not read back"
    );
    sink.delete_state("suite").await.expect("delete_state");
    assert_eq!(
        sink.load_state("suite").await.expect("load_state"),
        None,
        "{name}: a deleted state still reads back"
    );
    // The data stays.
    for u in units {
        assert!(
            probe.visible(&u.key).await.expect("probe"),
            "{name}: {} not visible after its state was committed",
            u.key
        );
    }
}
