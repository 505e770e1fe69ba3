//! [`extractor_suite`]: any bounded extractor, resumed from each checkpoint it emitted,
//! yields exactly the rest, and accepts its acknowledgements in order.

use crate::model::row_fingerprints;
use crate::{Batch, Checkpoint, ExtractContext, Extractor};
use arrow_schema::SchemaRef;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What [`extractor_suite`] exercised, so a test can check it was not vacuous.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractorSuiteReport {
    /// Batches of the full extraction.
    pub batches: usize,
    /// Rows of the full extraction.
    pub rows: usize,
    /// Distinct checkpoints the extraction emitted.
    pub checkpoints: usize,
    /// Resumptions checked (at most `max_resumes`, spread over the checkpoints).
    pub resumes: usize,
}

/// A row's identity for the suite: its table and the fingerprint of its values.
type Row = (Option<String>, u64);

fn rows_of(batches: &[Batch]) -> Vec<Row> {
    batches
        .iter()
        .flat_map(|b| {
            row_fingerprints(b.records.columns())
                .expect("rows can be fingerprinted")
                .into_iter()
                .map(|fp| (b.table.clone(), fp))
        })
        .collect()
}

fn multiset(rows: &[Row]) -> HashMap<&Row, usize> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r).or_insert(0) += 1;
    }
    m
}

async fn extract_all<E: Extractor + ?Sized>(
    e: &E,
    from: ExtractContext,
    what: &str,
) -> (Vec<Batch>, Box<dyn crate::Acker>) {
    let ex = tokio::time::timeout(Duration::from_secs(120), e.open(from))
        .await
        .unwrap_or_else(|_| panic!("{what}: open took over 120 s"))
        .unwrap_or_else(|err| panic!("{what}: open failed: {err}"));
    let mut batches = Vec::new();
    let mut stream = ex.batches;
    loop {
        match tokio::time::timeout(Duration::from_secs(120), stream.next()).await {
            Err(_) => panic!("{what}: no batch for 120 s (is the extractor bounded?)"),
            Ok(None) => break,
            Ok(Some(Ok(b))) => batches.push(b),
            Ok(Some(Err(err))) => panic!("{what}: the stream failed: {err}"),
        }
    }
    (batches, ex.acker)
}

/// Every check on a bounded extractor; panics on the first violation:
///
/// - two extractions from the start yield the same rows (as a multiset);
/// - resumed from a checkpoint it emitted (with the schemas of the rows up to it, as
///   the pipeline hands them over), it yields exactly the rows after that batch: none
///   lost, none repeated; up to `max_resumes` checkpoints, spread evenly, the last one
///   included;
/// - the [`Acker`](crate::Acker) of the extraction resumed from the last checkpoint
///   accepts every checkpoint, in the order emitted;
/// - what its [`capabilities`](crate::Extractor::capabilities) declare holds: a source
///   that `plans` returns a plan, one that does not returns `Ok(None)`; a source with a
///   `graceful_stop`, opened already asked to stop, ends by itself, having handed on
///   only whole rows of the full extraction and a checkpoint after the last of them.
///
/// The source must not change while the suite runs.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::{Batch, Checkpoint, sources::MemoryExtractor};
/// let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// let batches = (0..4).map(|i| {
///     let rb = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![i]))]).unwrap();
///     Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: i as u64 })
/// }).collect();
/// let r = tributary::testing::extractor_suite(&MemoryExtractor::new("m", "s", batches), 10).await;
/// assert_eq!((r.rows, r.checkpoints, r.resumes), (4, 4, 4));
/// # });
/// ```
pub async fn extractor_suite<E: Extractor + ?Sized>(
    extractor: &E,
    max_resumes: usize,
) -> ExtractorSuiteReport {
    let name = format!("{}/{}", extractor.source(), extractor.stream());
    assert!(
        extractor.capabilities().bounded,
        "{name}: the suite needs a bounded extractor"
    );
    // Each extraction's acker is dropped at once: one may hold a session with the source
    // (a consumer group's membership) that would stall the next open.
    let (batches, _) = extract_all(extractor, ExtractContext::new(), &name).await;
    let all = rows_of(&batches);
    let (again, _) = extract_all(extractor, ExtractContext::new(), &name).await;
    assert_eq!(
        multiset(&rows_of(&again)),
        multiset(&all),
        "{name}: two extractions from the start differ"
    );

    // Where each checkpoint falls: rows before it, and the schemas landed up to it.
    let mut marks: Vec<(Checkpoint, usize, BTreeMap<String, SchemaRef>)> = Vec::new();
    let mut schemas = BTreeMap::new();
    let mut seen_rows = 0;
    for b in &batches {
        seen_rows += b.num_rows();
        if b.num_rows() > 0 {
            let table = b
                .table
                .clone()
                .unwrap_or_else(|| extractor.stream().to_string());
            schemas.insert(table, b.records.schema());
        }
        if let Some(cp) = &b.checkpoint {
            match marks.last_mut() {
                Some(last) if &last.0 == cp => {
                    last.1 = seen_rows;
                    last.2 = schemas.clone();
                }
                _ => marks.push((cp.clone(), seen_rows, schemas.clone())),
            }
        }
    }
    let picks: Vec<usize> = if marks.len() <= max_resumes {
        (0..marks.len()).collect()
    } else {
        let mut p: Vec<usize> = (0..max_resumes.max(1))
            .map(|i| i * (marks.len() - 1) / (max_resumes.max(2) - 1))
            .collect();
        p.dedup();
        p
    };
    let mut last_acker = None;
    for &i in &picks {
        let (cp, before, schemas) = &marks[i];
        let what = format!("{name} resumed from {cp:?}");
        let from = ExtractContext::from_checkpoint(Some(cp.clone())).with_schemas(schemas.clone());
        let (rest, acker) = extract_all(extractor, from, &what).await;
        // Kept only from the last resumption (see the acknowledgements below).
        last_acker = (i + 1 == marks.len()).then_some(acker);
        let got = rows_of(&rest);
        let want = &all[*before..];
        assert_eq!(
            multiset(&got),
            multiset(want),
            "{what}: expected the {} rows after it, got {}",
            want.len(),
            got.len()
        );
    }
    // Acknowledged last (an acknowledgement may move where an extraction without a
    // checkpoint starts: a slot, a group's offsets), by the extraction that resumed from
    // the last checkpoint, as a pipeline's next run acknowledges what the one before it
    // committed.
    if let Some(mut acker) = last_acker {
        for (cp, _, _) in &marks {
            if let Err(err) = acker.committed(cp).await {
                panic!("{name}: acknowledging {cp:?} failed: {err}");
            }
        }
    }
    declared(extractor, &name, &all).await;
    ExtractorSuiteReport {
        batches: batches.len(),
        rows: all.len(),
        checkpoints: marks.len(),
        resumes: picks.len(),
    }
}

/// The checks on what an extractor's capabilities declare.
async fn declared<E: Extractor + ?Sized>(extractor: &E, name: &str, all: &[Row]) {
    let caps = extractor.capabilities();
    let plan = extractor
        .plan(&ExtractContext::new())
        .await
        .unwrap_or_else(|err| panic!("{name}: plan failed: {err}"));
    assert_eq!(
        plan.is_some(),
        caps.plans,
        "{name}: declares plans = {} but plan returned {plan:?}",
        caps.plans
    );
    if caps.graceful_stop {
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();
        let what = format!("{name} opened asked to stop");
        let (stopped, _) =
            extract_all(extractor, ExtractContext::new().with_stop(stop), &what).await;
        let got = rows_of(&stopped);
        let want = multiset(all);
        for (row, n) in multiset(&got) {
            assert!(
                want.get(row).is_some_and(|w| *w >= n),
                "{what}: a row the full extraction does not have (or has fewer times)"
            );
        }
        if let Some(last) = stopped.iter().rposition(|b| b.num_rows() > 0) {
            assert!(
                stopped[last..].iter().any(|b| b.checkpoint.is_some()),
                "{what}: rows after the last checkpoint it handed on"
            );
        }
    }
}
