//! The MySQL/MariaDB extractor against a real MariaDB: every type lossless (each value of
//! our CSV compared with the stored value by the server itself), bad input, partitions,
//! keyset positions. What both servers share (incremental runs, a killed connection,
//! the extractor suite, dry runs) is in `sql_backends.rs`.

use crate::common;

use sqlx::{Connection, Executor, MySqlConnection};
use tributary::format::{Format, JsonLines};
use tributary::sources::mysql::MySqlExtractor;
use tributary::sources::sql::{Cursor, SqlSource};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

fn table() -> String {
    common::unique("my").replace('-', "_")
}

async fn setup(sql: &str) -> Option<(String, MySqlConnection)> {
    let url = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB")?;
    let mut conn = MySqlConnection::connect(&url).await.unwrap();
    conn.execute("SET time_zone = '+00:00'").await.unwrap();
    for stmt in sql.split(";\n") {
        if !stmt.trim().is_empty() {
            conn.execute(stmt).await.unwrap();
        }
    }
    Some((url, conn))
}

/// How to compare our CSV text (bound as a parameter) with a column, per column.
const COLUMNS: &[(&str, &str, &str)] = &[
    ("id", "INT PRIMARY KEY", "{c} <=> ?"),
    ("ti", "TINYINT", "{c} <=> ?"),
    ("si", "SMALLINT", "{c} <=> ?"),
    ("mi", "MEDIUMINT", "{c} <=> ?"),
    ("i", "INT", "{c} <=> ?"),
    ("bi", "BIGINT", "{c} <=> ?"),
    ("tu", "TINYINT UNSIGNED", "{c} <=> ?"),
    ("su", "SMALLINT UNSIGNED", "{c} <=> ?"),
    ("mu", "MEDIUMINT UNSIGNED", "{c} <=> ?"),
    ("iu", "INT UNSIGNED", "{c} <=> ?"),
    ("bu", "BIGINT UNSIGNED", "{c} <=> CAST(? AS UNSIGNED)"),
    ("bo", "BOOLEAN", "{c} <=> ?"),
    ("dec1", "DECIMAL(12,2)", "{c} <=> CAST(? AS DECIMAL(12,2))"),
    (
        "dec2",
        "DECIMAL(65,30)",
        "{c} <=> CAST(? AS DECIMAL(65,30))",
    ),
    ("f", "FLOAT", "{c} <=> CAST(? AS FLOAT)"),
    ("d", "DOUBLE", "{c} <=> CAST(? AS DOUBLE)"),
    ("c", "CHAR(5)", "BINARY {c} <=> BINARY ?"),
    ("vc", "VARCHAR(50)", "BINARY {c} <=> BINARY ?"),
    ("t", "TEXT", "BINARY {c} <=> BINARY ?"),
    ("bl", "BLOB", "HEX({c}) <=> UPPER(SUBSTRING(?, 3))"),
    ("bn", "BINARY(3)", "HEX({c}) <=> UPPER(SUBSTRING(?, 3))"),
    ("vb", "VARBINARY(10)", "HEX({c}) <=> UPPER(SUBSTRING(?, 3))"),
    ("dt", "DATE", "{c} <=> ?"),
    ("dtm", "DATETIME", "{c} <=> ?"),
    ("dtm6", "DATETIME(6)", "{c} <=> ?"),
    ("ts", "TIMESTAMP(3) NULL", "{c} <=> ?"),
    ("tm", "TIME", "{c} <=> ?"),
    ("tm6", "TIME(6)", "{c} <=> ?"),
    ("y", "YEAR", "{c} <=> ?"),
    (
        "j",
        "JSON",
        "CASE WHEN {c} IS NULL THEN ? IS NULL ELSE JSON_EQUALS({c}, ?) END",
    ),
    ("e", "ENUM('a','b c')", "BINARY {c} <=> BINARY ?"),
    ("st", "SET('x','y','z')", "BINARY {c} <=> BINARY ?"),
    ("b", "BIT(5)", "{c} + 0 <=> ?"),
];

const VALUES: &str = r#"
 (1, -128, -32768, -8388608, -2147483648, -9223372036854775808, 255, 65535, 16777215, 4294967295,
  18446744073709551615, 1, -1234567890.12, 12345678901234567890123456789012345.123456789012345678901234567890,
  3.4e38, -1.5e-300, 'ab', 'plain | "quoted", and
 newline', '', X'00FF7C', X'00FF', X'', '2020-06-01', '2020-06-01 12:00:00', '2020-06-01 12:00:00.123456',
  '2020-06-01 12:00:00.5', '-838:59:59', '12:00:00.5', 2020, '{"b": 1, "a": [1, 2], "s": "x|y"}', 'b c', 'x,z', b'10101'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 127, 0, 0, 0, 9223372036854775807, 0, 0, 0, 0, 0, 0, 0.00, -0.000000000000000000000000000001, 0, 0.1, '\\.', ' ',
  'x', X'', X'000000', X'7C', '1000-01-01', '9999-12-31 23:59:59', '1970-01-01 00:00:01.000001', '2038-01-19 03:14:07.999',
  '838:59:59', '-00:00:00.000001', 1901, '[]', 'a', '', b'00000')"#;

#[tokio::test]
async fn every_type_is_lossless() {
    let t = table();
    let ddl: Vec<String> = COLUMNS
        .iter()
        .map(|(c, ty, _)| format!("`{c}` {ty}"))
        .collect();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE TABLE {t} ({});\nINSERT INTO {t} VALUES {VALUES}",
        ddl.join(", ")
    ))
    .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let r = Pipeline::builder("all")
        .extractor(MySqlExtractor::connect_lazy(&url, SqlSource::table(t.clone())).unwrap())
        .sink(sink.clone())
        .format(tributary::format::Csv::new(
            tributary::format::CsvDialect::book().with_null("\\N"),
        ))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    let csv = sink.read(&r.objects[0].key).await.unwrap();
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'|')
        .has_headers(false)
        .from_reader(&csv[..]);
    let raw = String::from_utf8(csv.to_vec()).unwrap();
    let mut checked = 0;
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let id = &rec[0];
        for (i, (c, _, cmp)) in COLUMNS.iter().enumerate() {
            let field = &rec[i];
            // NULL is written as \N here (no value in this table is that text).
            let is_null = field == "\\N";
            let sql = format!(
                "SELECT CAST(({}) AS SIGNED) FROM {t} WHERE id = ?",
                cmp.replace("{c}", &format!("`{c}`"))
            );
            let value = if is_null {
                None
            } else {
                Some(field.to_string())
            };
            let mut q = sqlx::query_scalar::<_, Option<i64>>(&sql);
            for _ in 0..cmp.matches('?').count() {
                q = q.bind(value.clone());
            }
            let same: Option<i64> = q.bind(id.to_string()).fetch_one(&mut conn).await.unwrap();
            assert_eq!(
                same,
                Some(1),
                "row {id} column {c}: our {field:?} differs from the stored value"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * COLUMNS.len());
    assert!(raw.contains("|-838:59:59|"), "negative TIME: {raw}");
    conn.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn arrow_types_and_mariadb_json() {
    let t = table();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE TABLE {t} (a DECIMAL(12,2), b DECIMAL(65,30), j JSON, bu BIGINT UNSIGNED, tm TIME(6), ts TIMESTAMP(6) NULL);\n\
         INSERT INTO {t} VALUES (1.50, 1.5, '{{\"k\": [1, 2]}}', 18446744073709551615, '-01:00:00.5', '2020-06-01 12:00:00')"
    ))
    .await
    else {
        return;
    };
    let ex = MySqlExtractor::connect_lazy(&url, SqlSource::table(t.clone())).unwrap();
    let batches = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap();
    let rb = &batches[0].records;
    use arrow_schema::{DataType, TimeUnit};
    assert_eq!(
        rb.schema().field(0).data_type(),
        &DataType::Decimal128(12, 2)
    );
    assert_eq!(
        rb.schema().field(1).data_type(),
        &DataType::Decimal256(65, 30)
    );
    assert!(
        model::is_json_field(rb.schema().field(2)),
        "MariaDB's JSON (LONGTEXT + json_valid) is recognised"
    );
    assert_eq!(rb.schema().field(3).data_type(), &DataType::UInt64);
    assert_eq!(
        rb.schema().field(4).data_type(),
        &DataType::Duration(TimeUnit::Microsecond)
    );
    let mut out = Vec::new();
    JsonLines::new()
        .encoder(&rb.schema())
        .unwrap()
        .encode(rb, &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"a\":1.50,\"b\":1.500000000000000000000000000000,\"j\":{\"k\": [1, 2]},\"bu\":18446744073709551615,\
         \"tm\":\"-01:00:00.5\",\"ts\":\"2020-06-01T12:00:00+00:00\"}\n"
    );
    // A query source has no table metadata: DECIMAL stays exact as text.
    let ex = MySqlExtractor::connect_lazy(
        &url,
        SqlSource::query(format!("SELECT a * 2 AS a2 FROM {t}")),
    )
    .unwrap();
    let batches = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        batches[0].records.schema().field(0).data_type(),
        &DataType::Utf8
    );
    conn.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_input_gives_typed_errors() {
    let Some(url) = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB") else {
        return;
    };
    let e = MySqlExtractor::connect_lazy(&url, SqlSource::table("no_such_table"))
        .unwrap()
        .extract(None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::NotFound { .. }) && e.to_string().contains("no_such_table"),
        "{e}"
    );
    let e = MySqlExtractor::connect_lazy(&url, SqlSource::table("no_such_table").columns(["x"]))
        .unwrap()
        .check()
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let t = table();
    let mut conn = MySqlConnection::connect(&url).await.unwrap();
    conn.execute(format!("CREATE TABLE {t} (id int, shape POINT)").as_str())
        .await
        .unwrap();
    let e = MySqlExtractor::connect_lazy(&url, SqlSource::table(t.clone()).columns(["id", "nope"]))
        .unwrap()
        .check()
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::NotFound { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
    let e = MySqlExtractor::connect_lazy(&url, SqlSource::table(t.clone()))
        .unwrap()
        .extract(None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::Type { .. })
            && e.to_string().contains("column shape")
            && e.to_string().contains("ST_AsText(shape)"),
        "{e}"
    );
    let ok = MySqlExtractor::connect_lazy(
        &url,
        SqlSource::query(format!("SELECT id, ST_AsText(shape) AS shape FROM {t}")),
    )
    .unwrap();
    assert!(ok.extract(None).await.is_ok());
    conn.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
    let bad = url.replace("tributary:tributary@", "tributary:nope@");
    let e = MySqlExtractor::connect_lazy(&bad, SqlSource::table("t"))
        .unwrap()
        .check()
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    assert!(!e.to_string().contains("nope@"), "password leaked: {e}");
    let e = MySqlExtractor::connect_lazy("mysql://u:p@127.0.0.1:1/test", SqlSource::table("t"))
        .unwrap()
        .check()
        .await
        .err()
        .unwrap();
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn partitioned_full_extraction() {
    let t = table();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE TABLE {t} (id int, at datetime, v varchar(40));\n\
         INSERT INTO {t} SELECT seq, TIMESTAMPADD(MINUTE, seq, '2020-01-01'), MD5(seq) FROM seq_1_to_10000;\n\
         INSERT INTO {t} VALUES (NULL, NULL, 'no key')"
    ))
    .await
    else {
        return;
    };
    for (column, n) in [("id", 4u32), ("at", 3)] {
        let sink = ObjectSink::memory();
        let r = Pipeline::builder("p")
            .extractor(
                MySqlExtractor::connect_lazy(
                    &url,
                    SqlSource::table(t.clone())
                        .partition_on(column, n)
                        .with_batch_rows(500),
                )
                .unwrap(),
            )
            .sink(sink.clone())
            .build()
            .unwrap()
            .run()
            .await
            .into_result()
            .unwrap();
        assert_eq!(
            r.objects.len(),
            n as usize,
            "{column}: one object per range"
        );
        let mut ids = vec![];
        let mut nulls = 0;
        for o in &r.objects {
            for l in String::from_utf8(sink.read(&o.key).await.unwrap().to_vec())
                .unwrap()
                .lines()
            {
                match l.split('|').next().unwrap().parse::<i64>() {
                    Ok(id) => ids.push(id),
                    Err(_) => nulls += 1,
                }
            }
        }
        ids.sort();
        assert_eq!(
            ids,
            (1..=10_000).collect::<Vec<_>>(),
            "{column}: every id exactly once"
        );
        assert_eq!(nulls, 1, "{column}: the NULL-key row once");
    }
    conn.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[cfg(feature = "parquet")]
#[tokio::test]
async fn every_type_round_trips_through_parquet() {
    let t = table();
    let ddl: Vec<String> = COLUMNS
        .iter()
        .map(|(c, ty, _)| format!("`{c}` {ty}"))
        .collect();
    let Some((url, _conn)) = setup(&format!(
        "CREATE TABLE {t} ({});\nINSERT INTO {t} VALUES {VALUES}",
        ddl.join(", ")
    ))
    .await
    else {
        return;
    };
    let source = || MySqlExtractor::connect_lazy(&url, SqlSource::table(t.clone())).unwrap();
    let expected = common::extract_all(&source()).await;
    let (_, got) = common::through_parquet(source()).await;
    assert_eq!(got.num_rows(), expected.num_rows());
    // Every MySQL type (TIME as a duration, unsigned BIGINT, DECIMAL(65,30), BIT, JSON)
    // comes back as the same Arrow type, metadata and values.
    assert_eq!(got.schema(), expected.schema());
    for i in 0..expected.num_columns() {
        assert_eq!(
            got.column(i).to_data(),
            expected.column(i).to_data(),
            "values of {}",
            expected.schema().field(i).name()
        );
    }
}

#[tokio::test]
async fn a_composite_key_keeps_a_keyset_position_past_the_limit() {
    // Issue 8.10 on MySQL/MariaDB: `(a, b) > (?, ?)` with text-bound values.
    let t = table();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE TABLE {t} (a int, b varchar(10), at datetime, PRIMARY KEY (a, b));\n\
         INSERT INTO {t} SELECT seq DIV 10, CONCAT('k', seq MOD 10), '2020-01-01 00:00:00' FROM seq_0_to_2499"
    ))
    .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("keyset")
        .extractor(
            MySqlExtractor::connect_lazy(
                &url,
                SqlSource::table(t.clone())
                    .incremental(Cursor::new("at").with_key(["a", "b"]))
                    .with_batch_rows(500),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .build()
        .unwrap();
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, 2500);
    let Some(Checkpoint::Watermark(w)) = &first.checkpoint_to else {
        panic!()
    };
    assert_eq!(
        w.after,
        Some(vec![CursorValue::Int(249), CursorValue::Text("k9".into())])
    );
    conn.execute(
        format!("INSERT INTO {t} VALUES (249, 'k99', '2020-01-01 00:00:00'), (250, 'k0', '2020-01-01 00:00:00')")
            .as_str(),
    )
    .await
    .unwrap();
    let second = p.run().await.into_result().unwrap();
    let got = common::read_text(&sink, &second.objects[0].key)
        .await
        .lines()
        .collect::<Vec<_>>()
        .join(";");
    assert_eq!(
        got,
        "249|k99|2020-01-01 00:00:00;250|k0|2020-01-01 00:00:00"
    );
    conn.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cursor_without_a_key_reads_the_primary_key_from_the_catalog() {
    // Issue 8.10 with no `with_key`: 2,500 rows at one value keep a keyset position over
    // the table's primary key. The keys are past 2^53, where a comparison through a
    // double would confuse neighbours.
    let t = table();
    let base: i64 = 9_007_199_254_740_992;
    let Some((url, mut conn)) = setup(&format!(
        "CREATE TABLE {t} (note VARCHAR(10), id BIGINT PRIMARY KEY, at DATETIME(6));
         INSERT INTO {t} SELECT 'bulk', {base} + seq, '2020-01-01' FROM seq_1_to_2500"
    ))
    .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let source = SqlSource::table(t.clone())
        .incremental(Cursor::new("at"))
        .with_batch_rows(400);
    let p = common::pipeline(
        "bulk",
        MySqlExtractor::connect_lazy(&url, source).unwrap(),
        &sink,
    );
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, 2500);
    let Some(Checkpoint::Watermark(w)) = &first.checkpoint_to else {
        panic!("{:?}", first.checkpoint_to)
    };
    assert_eq!(w.key, Some(vec!["id".to_string()]));
    assert!(w.seen.is_empty(), "{w:?}");
    assert_eq!(w.after, Some(vec![CursorValue::Int(base + 2500)]));
    conn.execute(
        format!(
            "INSERT INTO {t} VALUES ('late', {}, '2020-01-01'), ('next', 1, '2020-01-02')",
            base + 2501
        )
        .as_str(),
    )
    .await
    .unwrap();
    let second = p.run().await.into_result().unwrap();
    let text = common::read_text(&sink, &second.objects[0].key).await;
    let notes: Vec<&str> = text.lines().map(|l| l.split('|').next().unwrap()).collect();
    assert_eq!(notes, vec!["late", "next"], "{text}");
    assert_eq!(p.run().await.into_result().unwrap().rows, 0);
    conn.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}
