//! Binlog CDC against the project's own MariaDB: the same values as the typed SQL path
//! for every type (snapshot and stream), ops and before-images, positions only at
//! transaction ends, resume without loss or repeat, DDL mid-stream, bad input.

use crate::common;

use common::assert_same_values;
use common::binlog::{connect, end, exec, table};

use arrow_array::{Array, RecordBatch, StringArray};
use futures::StreamExt;
use tributary::model::ChangeOptions;
use tributary::sources::mysql::MySqlExtractor;
use tributary::sources::mysql_cdc::{MySqlCdcConfig, MySqlCdcExtractor, SnapshotMode};
use tributary::sources::sql::SqlSource;
use tributary::*;

/// Every batch of a bounded extraction.
async fn drain(e: &MySqlCdcExtractor, from: Option<Checkpoint>) -> Result<Vec<Batch>> {
    let mut s = e.extract(from).await?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.push(b?);
    }
    Ok(out)
}

/// The rows of `table` in the batches, change columns dropped, as one batch.
fn rows_of(batches: &[Batch], table: &str) -> (Vec<String>, RecordBatch) {
    let mine: Vec<&Batch> = batches
        .iter()
        .filter(|b| {
            b.table
                .as_deref()
                .is_some_and(|t| t.ends_with(&format!(".{table}")))
        })
        .collect();
    assert!(!mine.is_empty(), "no batch for {table}");
    let schema = mine[0].records.schema();
    let all =
        arrow_select::concat::concat_batches(&schema, mine.iter().map(|b| &b.records)).unwrap();
    let ops: Vec<String> = all
        .column_by_name("_op")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !schema.field(*i).name().starts_with('_'))
        .collect();
    (ops, all.project(&keep).unwrap())
}

const TYPES: &str = "id INT PRIMARY KEY, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, \
  tu TINYINT UNSIGNED, su SMALLINT UNSIGNED, mu MEDIUMINT UNSIGNED, iu INT UNSIGNED, bu BIGINT UNSIGNED, \
  bo BOOLEAN, dec1 DECIMAL(12,2), dec2 DECIMAL(65,30), dec3 DECIMAL(38,0), f FLOAT, d DOUBLE, \
  c CHAR(5), vc VARCHAR(50), vl VARCHAR(300), t TEXT, lt LONGTEXT, cb VARCHAR(20) COLLATE utf8mb4_bin, \
  l1 VARCHAR(20) CHARACTER SET latin1, bl BLOB, bn BINARY(3), vb VARBINARY(10), \
  dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME, tm1 TIME(1), tm3 TIME(3), tm6 TIME(6), \
  y YEAR, b5 BIT(5), b64 BIT(64), e ENUM('small','medium','large'), st SET('a','b','c'), j JSON";

const ROWS: &str = "(1, -128, -32768, -8388608, -2147483648, -9223372036854775808, \
   255, 65535, 16777215, 4294967295, 18446744073709551615, 1, -1234567890.12, \
   -12345678901234567890123456789012345.123456789012345678901234567891, 99999999999999999999999999999999999999, \
   1.5, -2.25e-300, 'ab', 'héllo wörld ✓', REPEAT('x', 300), 'text\\nwith|pipe', 'long', 'Bin', 'café', \
   X'00FF10', X'0001', X'00FFFE', '2020-02-29', '1000-01-01 00:00:00', '9999-12-31 23:59:59.999999', \
   '2038-01-19 03:14:07.499', '-838:59:59', '-00:00:01.5', '-12:34:56.789', '838:59:58.999999', \
   2155, b'10101', b'1111111111111111111111111111111111111111111111111111111111111111', 'large', 'a,c', \
   '{\"k\": [1, 2.50, \"x\"]}'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
   NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '', '', '', '', '', '', '', '', X'', '', \
   '1970-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00.000001', '1970-01-01 00:00:01', '00:00:00', \
   '00:00:00.1', '-00:00:00.001', '00:00:00.000001', 1901, b'0', b'0', 'small', '', '[]')";

#[tokio::test]
async fn binlog_and_snapshot_values_equal_the_typed_path_for_every_type() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdc");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} ({TYPES}) DEFAULT CHARSET = utf8mb4"),
    )
    .await;
    let start = end(&mut conn).await;
    exec(&mut conn, &format!("INSERT INTO {t} VALUES {ROWS}")).await;

    let typed = common::extract_all(
        &MySqlExtractor::connect_lazy(&url, SqlSource::table(t.clone())).unwrap(),
    )
    .await;
    assert_eq!(typed.num_rows(), 3);

    // The stream: the three inserts, from the position before them.
    let cdc = MySqlCdcExtractor::connect_lazy(
        &url,
        MySqlCdcConfig::new()
            .with_tables([t.clone()])
            .with_snapshot(SnapshotMode::Never)
            .with_start_at(start)
            .until_current_end(),
    )
    .unwrap();
    let batches = drain(&cdc, None).await.unwrap();
    let (ops, streamed) = rows_of(&batches, &t);
    assert_eq!(ops, ["insert"; 3]);
    assert_same_values(&typed, &streamed);

    // The snapshot of the same table.
    let snap = MySqlCdcExtractor::connect_lazy(
        &url,
        MySqlCdcConfig::new()
            .with_tables([t.clone()])
            .with_snapshot(SnapshotMode::InitialOnly),
    )
    .unwrap();
    let batches = drain(&snap, None).await.unwrap();
    let (ops, snapped) = rows_of(&batches, &t);
    assert_eq!(ops, ["snapshot"; 3]);
    assert_same_values(&typed, &snapped);
    // One schema for both, so snapshot and stream rows land in one kind of object.
    assert_eq!(
        batches
            .iter()
            .find(|b| b.table.is_some())
            .unwrap()
            .records
            .schema(),
        drain(&cdc, None)
            .await
            .unwrap()
            .iter()
            .find(|b| b.table.is_some())
            .unwrap()
            .records
            .schema()
    );
    // The last batch carries the snapshot's position, at which streaming would start.
    assert!(matches!(
        batches.last().unwrap().checkpoint,
        Some(Checkpoint::Binlog { .. })
    ));
}

#[tokio::test]
async fn updates_and_deletes_carry_their_images_and_positions_sit_at_transaction_ends() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdc");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, status VARCHAR(20), n INT)"),
    )
    .await;
    let start = end(&mut conn).await;
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {t} VALUES (1, 'new', 10), (2, 'new', 20);\n\
             START TRANSACTION;\n\
             UPDATE {t} SET status = 'shipped', n = n + 1 WHERE id = 1;\n\
             DELETE FROM {t} WHERE id = 2;\n\
             COMMIT"
        ),
    )
    .await;
    let cdc = MySqlCdcExtractor::connect_lazy(
        &url,
        MySqlCdcConfig::new()
            .with_tables([t.clone()])
            .with_snapshot(SnapshotMode::Never)
            .with_start_at(start)
            .with_change_options(ChangeOptions::new().with_all_metadata().with_before_image())
            .until_current_end(),
    )
    .unwrap();
    let batches = drain(&cdc, None).await.unwrap();
    let (ops, rows) = rows_of(&batches, &t);
    assert_eq!(ops, ["insert", "insert", "update", "delete"]);
    let all = arrow_select::concat::concat_batches(
        &batches
            .iter()
            .find(|b| b.table.is_some())
            .unwrap()
            .records
            .schema(),
        batches
            .iter()
            .filter(|b| b.table.is_some())
            .map(|b| &b.records),
    )
    .unwrap();
    let text = |b: &RecordBatch, c: &str| arrow_cast_string(b.column_by_name(c).unwrap());
    assert_eq!(
        text(&rows, "status"),
        [
            Some("new".into()),
            Some("new".into()),
            Some("shipped".into()),
            Some("new".into())
        ]
    );
    // The update's before-image; a delete's row is its before-image.
    assert_eq!(
        text(&all, "_before_status"),
        [None, None, Some("new".into()), None]
    );
    assert_eq!(
        text(&all, "_before_n"),
        [None, None, Some("10".into()), None]
    );
    assert_eq!(
        text(&rows, "n"),
        [
            Some("10".into()),
            Some("20".into()),
            Some("11".into()),
            Some("20".into())
        ]
    );
    // One transaction id for the update and the delete, sequence from 0 within each.
    let txid = text(&all, "_txid");
    assert!(txid.iter().all(Option::is_some), "{txid:?}");
    assert_eq!(txid[2], txid[3]);
    assert_ne!(txid[1], txid[2]);
    assert_eq!(
        text(&all, "_seq"),
        [
            Some("0".into()),
            Some("1".into()),
            Some("0".into()),
            Some("1".into())
        ]
    );
    // Checkpoints only where a transaction ended: after the insert, after the commit.
    let cps: Vec<&Checkpoint> = batches
        .iter()
        .filter_map(|b| b.checkpoint.as_ref())
        .collect();
    assert!(!cps.is_empty());
    for cp in &cps {
        let Checkpoint::Binlog { gtid, server, .. } = cp else {
            panic!("{cp:?}")
        };
        assert!(gtid.is_some() && server.is_some(), "{cp:?}");
    }
}

fn arrow_cast_string(a: &arrow_array::ArrayRef) -> Vec<Option<String>> {
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                None
            } else {
                Some(
                    arrow_cast::display::ArrayFormatter::try_new(a.as_ref(), &Default::default())
                        .unwrap()
                        .value(i)
                        .to_string(),
                )
            }
        })
        .collect()
}

#[tokio::test]
async fn a_dry_run_says_what_it_would_snapshot_or_stream_from() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdc");
    exec(&mut conn, &format!("CREATE TABLE {t} (id INT PRIMARY KEY)")).await;
    exec(&mut conn, &format!("INSERT INTO {t} VALUES (1), (2), (3)")).await;
    let cdc = MySqlCdcExtractor::connect_lazy(
        &url,
        MySqlCdcConfig::new()
            .with_tables([t.clone()])
            .until_current_end(),
    )
    .unwrap();
    let plan = cdc
        .plan(&ExtractContext::from_checkpoint(None))
        .await
        .unwrap()
        .unwrap();
    assert!(
        plan.query.contains(&format!(
            "snapshot of test.{t}, then the binlog until binlog."
        )),
        "{}",
        plan.query
    );
    assert!(plan.estimated_rows.is_some());
    let cp = Checkpoint::Binlog {
        file: "binlog.000001".into(),
        pos: 4,
        gtid: None,
        server: None,
    };
    let plan = cdc
        .plan(&ExtractContext::from_checkpoint(Some(cp)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        plan.query
            .starts_with("the binlog from binlog.000001:4 until"),
        "{}",
        plan.query
    );
}
