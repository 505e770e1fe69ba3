//! The SQL extraction, written once for every [`SqlDriver`]: resume from a watermark,
//! read in one snapshot transaction, drop the rows already extracted at the boundary,
//! or read a full extraction in parallel ranges; and the dry run's plan.

use super::driver::{KeyKind, Out, SqlDriver};
use super::{
    BuiltQuery, Emitter, SqlSource, build_query, channel_stream, partition_query, resume_from,
    split_bounds,
};
use crate::{Batch, BatchStream, Checkpoint, Error, Plan, Result};

/// Whether `source` can be read: connect and describe its query.
pub(crate) async fn check<D: SqlDriver>(driver: &D, source: &SqlSource) -> Result<()> {
    let mut conn = driver.connect().await?;
    driver.prepare(&mut conn, source, None).await.map(|_| ())
}

/// The query an extraction after `from` would run, and the server's row estimate.
pub(crate) async fn plan<D: SqlDriver>(
    driver: &D,
    source: &SqlSource,
    from: Option<&Checkpoint>,
) -> Result<Plan> {
    let watermark = resume_from(D::COMPONENT, source, from)?;
    let mut conn = driver.connect().await?;
    let prep = driver
        .prepare(&mut conn, source, watermark.as_ref())
        .await?;
    let estimate = driver.estimate(&mut conn, &prep).await?;
    Ok(Plan::new(
        prep.sql,
        prep.binds.iter().map(ToString::to_string).collect(),
        estimate,
    ))
}

/// The batches of `source` after `from`.
pub(crate) async fn batches<D: SqlDriver>(
    driver: &D,
    source: &SqlSource,
    from: Option<Checkpoint>,
) -> Result<BatchStream> {
    let partition = source.partition.as_ref().filter(|_| driver.partitions());
    if let (Some((column, n)), None) = (partition, &source.cursor) {
        if from.is_some() {
            return Err(Error::config(
                D::COMPONENT,
                "a partitioned full extraction cannot resume from a checkpoint",
            ));
        }
        return partitioned(driver, source, column, *n).await;
    }
    let watermark = resume_from(D::COMPONENT, source, from.as_ref())?;
    let mut conn = driver.connect().await?;
    let prep = driver
        .prepare(&mut conn, source, watermark.as_ref())
        .await?;
    let batch_rows = source.batch_rows;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2);
    // The prepared source: its cursor may have the table's primary key as its key.
    let mut emitter = Emitter::new(&prep.source, watermark.as_ref(), tx);
    let driver = driver.clone();
    tokio::spawn(async move {
        let result: Result<()> = async {
            driver.begin(&mut conn, None).await?;
            let mut out = Out::Emitter(&mut emitter);
            let query = (prep.sql.as_str(), prep.binds.as_slice());
            driver
                .read_and_commit(&mut conn, query, &prep, batch_rows, &mut out)
                .await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            emitter.fail(e).await;
        }
    });
    Ok(channel_stream(rx))
}

/// A full extraction in parallel ranges of `column`: in one snapshot the coordinator
/// exports where the database can share one, each range consistent on its own otherwise.
async fn partitioned<D: SqlDriver>(
    driver: &D,
    source: &SqlSource,
    column: &str,
    n: u32,
) -> Result<BatchStream> {
    let mut coord = driver.connect().await?;
    let prep = driver.prepare(&mut coord, source, None).await?;
    let fields = prep.schema.fields().iter().zip(&prep.decoders);
    let (field, dec) = fields
        .clone()
        .find(|(f, _)| f.name() == column)
        .or_else(|| {
            fields
                .clone()
                .find(|(f, _)| f.name().eq_ignore_ascii_case(column))
        })
        .ok_or_else(|| Error::NotFound {
            component: D::COMPONENT.into(),
            message: format!("partition column {column:?} is not in the result"),
            source: None,
        })?;
    let (kind, cast): (KeyKind, Option<&str>) = D::partition_kind(dec).ok_or_else(|| {
        Error::config(
            D::COMPONENT,
            format!("partition column {column} must be an integer, date or timestamp column"),
        )
    })?;
    let column = field.name().clone();
    let snapshot = driver.share_snapshot(&mut coord).await?;
    let plain = build_query(&prep.source, D::DIALECT, None, None)?;
    let (lo, hi) = driver.range(&mut coord, &column, &plain.sql).await?;
    let bounds = match (lo, hi) {
        (Some(l), Some(h)) => split_bounds(kind, &l, &h, n, &column)?,
        _ => Vec::new(),
    };
    let parts = bounds.len() + 1;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2 * parts);
    let prep = std::sync::Arc::new(prep);
    let mut joined = Vec::with_capacity(parts);
    for i in 0..parts {
        let BuiltQuery { sql, binds } =
            partition_query(&prep.source, D::DIALECT, &column, &bounds, i, cast)?;
        let (ready, ready_rx) = tokio::sync::oneshot::channel::<()>();
        joined.push(ready_rx);
        let (driver, tx, snapshot, prep) =
            (driver.clone(), tx.clone(), snapshot.clone(), prep.clone());
        let batch_rows = source.batch_rows;
        tokio::spawn(async move {
            let result: Result<()> = async {
                let mut conn = driver.connect().await?;
                driver.begin(&mut conn, snapshot.as_deref()).await?;
                let _ = ready.send(());
                let part = i as u32;
                let wrap = move |rb| Ok(Batch::new(rb).with_partition(part));
                let mut out = Out::Wrap(tx.clone(), &wrap);
                let query = (sql.as_str(), binds.as_slice());
                driver
                    .read_and_commit(&mut conn, query, &prep, batch_rows, &mut out)
                    .await?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
    }
    // An exported snapshot lives as long as the exporting transaction: end it once every
    // range has imported it (or failed to).
    if snapshot.is_some() {
        let driver = driver.clone();
        tokio::spawn(async move {
            for r in joined {
                let _ = r.await;
            }
            let _ = driver.commit(&mut coord).await;
        });
    }
    drop(tx);
    Ok(channel_stream(rx))
}

/// The place in `columns` of `source`'s cursor column (`None` for a full extraction), or
/// [`Error::NotFound`] naming it. An exact name wins over a case-insensitive match.
pub(crate) fn cursor_column<C>(
    component: &'static str,
    source: &SqlSource,
    columns: &[C],
    name: impl Fn(&C) -> &str,
) -> Result<Option<usize>> {
    let Some(c) = &source.cursor else {
        return Ok(None);
    };
    columns
        .iter()
        .position(|x| name(x) == c.column)
        .or_else(|| {
            columns
                .iter()
                .position(|x| name(x).eq_ignore_ascii_case(&c.column))
        })
        .map(Some)
        .ok_or_else(|| Error::NotFound {
            component: component.into(),
            message: format!("cursor column {:?} is not in the result", c.column),
            source: None,
        })
}

/// The [`Extractor`](crate::Extractor) impl of a SQL extractor (a struct with `driver`
/// and `source` fields), written once: every method is the shared extraction's.
/// `sql_extractor!(Type, "name")` declares bounded reads with plans;
/// `sql_extractor!(Type, "name", capabilities, { more methods })` declares other
/// capabilities and adds the methods they need (PostgreSQL's encoded `COPY` path). The
/// whole impl comes from the macro, not a nested call, because `async_trait` rewrites an
/// impl before a macro inside it would expand.
macro_rules! sql_extractor {
    ($ty:ty, $name:literal) => {
        $crate::sources::sql::extract::sql_extractor!(
            $ty,
            $name,
            $crate::ExtractorCapabilities::bounded().with_plans(true),
            {}
        );
    };
    ($ty:ty, $name:literal, $caps:expr, { $($more:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::Extractor for $ty {
            fn source(&self) -> &str {
                $name
            }

            fn stream(&self) -> &str {
                self.source.stream_name()
            }

            async fn check(&self) -> $crate::Result<()> {
                $crate::sources::sql::extract::check(&self.driver, &self.source).await
            }

            async fn plan(
                &self,
                cx: &$crate::ExtractContext,
            ) -> $crate::Result<Option<$crate::Plan>> {
                $crate::sources::sql::extract::plan(
                    &self.driver,
                    &self.source,
                    cx.checkpoint.as_ref(),
                )
                .await
                .map(Some)
            }

            fn capabilities(&self) -> $crate::ExtractorCapabilities {
                $caps
            }

            async fn open(
                &self,
                cx: $crate::ExtractContext,
            ) -> $crate::Result<$crate::Extraction> {
                let batches = $crate::sources::sql::extract::batches(
                    &self.driver,
                    &self.source,
                    cx.checkpoint,
                )
                .await?;
                Ok($crate::Extraction::new(batches))
            }

            $($more)*
        }
    };
}

pub(crate) use sql_extractor;
