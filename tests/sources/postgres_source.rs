//! The PostgreSQL extractor against a real server: every type, lossless, compared with
//! the server's own rendering; the COPY path; bad input. What both servers share
//! (incremental runs, a killed connection, the extractor suite, dry runs) is in
//! `sql_backends.rs`.

use crate::common;

use sqlx::{Connection, Executor, PgConnection};
use tributary::format::Format;
use tributary::sources::postgres::PostgresExtractor;
use tributary::sources::sql::{Cursor, SqlSource};
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::*;

async fn setup(sql: &str) -> Option<(String, PgConnection)> {
    let url = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL")?;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    conn.execute(sql).await.unwrap();
    Some((url, conn))
}

const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
                       SET extra_float_digits = 1; SET bytea_output = 'hex';";

fn schema_name() -> String {
    common::unique("trib").replace('-', "_")
}

const ALL_TYPES: &str = "
  id int4 primary key, i2 int2, i8 int8, num numeric(12,2), num_big numeric(50,10), num_free numeric,
  r4 real, r8 double precision, t text, vc varchar(20), c char(5), b bytea, bo boolean, d date, tm time,
  tmtz timetz, ts timestamp, tstz timestamptz, iv interval, u uuid, j json, jb jsonb, ia int4[], ta text[],
  m mood, ip inet, cd cidr, mac macaddr, bits bit(5), o oid, ch \"char\", nm name, dom positive_int";

const ALL_VALUES: &str = r#"
  (1, -32768, 9223372036854775807, -1234567890.12, 12345678901234567890123456789012345678.0123456789,
   3.14159265358979323846264338327950288419716939937510, 3.4e38, -1.5e-300, 'plain | "quoted", and
  newline', '', 'ab', '\x00ff7c', true, '2020-06-01', '12:00:00.5', '12:00:00+05:30',
   '2020-06-01 12:00:00.123456', '2020-06-01 12:00:00+09', '1 year 2 mons 3 days 04:05:06.5',
   '12345678-9abc-def0-1234-56789abcdef0', '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2], "s": "x|y"}',
   '{1,2,NULL}', '{"a b","x\"y","",NULL,"NULL",plain}', 'happy', '192.168.0.1/24', '10.0.0.0/8',
   '08:00:2b:01:02:03', B'10101', 4294967295, 'x', 'a_name', 7),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, 0, -1, 0, -0.0000000001, 'NaN', 'NaN', 'Infinity', '\.', ' ', 'a|b  ', '', false, '0001-01-01',
   '23:59:59.999999', '00:00:00-08', '1970-01-01 00:00:00', '1999-12-31 23:59:59.999999-05', '-1 days -04:05:06',
   '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}', 'sad', '::1', '2001:db8::/32',
   'ff:ff:ff:ff:ff:ff', B'00000', 0, '', '', 1)"#;

async fn extract_csv(url: &str, source: SqlSource) -> (RunReport, String) {
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("pg")
        .extractor(PostgresExtractor::connect_lazy(url, source).unwrap())
        .sink(sink.clone())
        .build()
        .unwrap();
    let r = p.run().await.into_result().unwrap();
    let mut text = String::new();
    for o in &r.objects {
        text.push_str(std::str::from_utf8(&sink.read(&o.key).await.unwrap()).unwrap());
    }
    (r, text)
}

#[tokio::test]
async fn every_type_matches_the_servers_own_rendering_and_round_trips() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; SET search_path = {s}; CREATE TYPE mood AS ENUM ('sad','ok','happy');
         CREATE DOMAIN positive_int AS int4 CHECK (VALUE > 0);
         CREATE TABLE all_types ({ALL_TYPES}); INSERT INTO all_types VALUES {ALL_VALUES};
         CREATE TABLE reloaded (LIKE all_types);"
    ))
    .await
    else {
        return;
    };
    let (report, ours) = extract_csv(
        &format!("{url}?options=-csearch_path%3D{s}"),
        SqlSource::table("all_types")
            .columns([
                "id", "i2", "i8", "num", "num_big", "num_free", "r4", "r8", "t", "vc", "c", "b",
                "bo", "d", "tm", "tmtz", "ts", "tstz", "iv", "u", "j", "jb", "ia", "ta", "m", "ip",
                "cd", "mac", "bits", "o", "ch", "nm", "dom",
            ])
            .with_stream_name("all_types"),
    )
    .await;
    assert_eq!(report.rows, 3);

    // 1. Byte for byte what PostgreSQL's own COPY prints.
    conn.execute(SESSION).await.unwrap();
    let dialect = tributary::format::CsvDialect::book();
    let mut out = conn
        .copy_out_raw(&format!(
            "COPY (SELECT * FROM {s}.all_types ORDER BY id) TO STDOUT WITH ({})",
            dialect.postgres_copy_options()
        ))
        .await
        .unwrap();
    let mut theirs = Vec::new();
    while let Some(chunk) = futures::TryStreamExt::try_next(&mut out).await.unwrap() {
        theirs.extend_from_slice(&chunk);
    }
    drop(out);
    let theirs = String::from_utf8(theirs).unwrap();
    assert_eq!(
        ours, theirs,
        "our CSV differs from PostgreSQL's own rendering"
    );

    // 2. Loaded back with COPY, every value's text is identical.
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {s}.reloaded FROM STDIN WITH ({})",
            dialect.postgres_copy_options()
        ))
        .await
        .unwrap();
    copy.send(ours.as_bytes()).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), 3);
    let diff: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM ((SELECT row_a::text FROM {s}.all_types row_a EXCEPT ALL SELECT row_b::text FROM {s}.reloaded row_b)
          UNION ALL (SELECT row_b::text FROM {s}.reloaded row_b EXCEPT ALL SELECT row_a::text FROM {s}.all_types row_a)) d"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    if diff != 0 {
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT row_a::text, row_b::text FROM {s}.all_types row_a JOIN {s}.reloaded row_b USING (id) ORDER BY id"
        ))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        panic!("values changed through extract + COPY: {rows:#?}");
    }
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn arrow_types_are_exact() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.n (a numeric(12,2), b numeric(50,10), c numeric, d timestamptz, e int4[]);
         INSERT INTO {s}.n VALUES (-1234567890.12, 12345678901234567890123456789012345678.0123456789, 1.5, '2020-06-01 12:00:00+09', '{{1,NULL}}')"
    ))
    .await
    else {
        return;
    };
    let ex = PostgresExtractor::connect_lazy(&url, SqlSource::table(format!("{s}.n"))).unwrap();
    let batches = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap();
    let schema = batches[0].records.schema();
    use arrow_schema::{DataType, TimeUnit};
    assert_eq!(schema.field(0).data_type(), &DataType::Decimal128(12, 2));
    assert_eq!(schema.field(1).data_type(), &DataType::Decimal256(50, 10));
    assert_eq!(
        schema.field(2).data_type(),
        &DataType::Utf8,
        "unconstrained numeric stays exact text"
    );
    assert_eq!(
        schema.field(3).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
    );
    assert!(matches!(schema.field(4).data_type(), DataType::List(_)));
    let jsonl = {
        let mut out = Vec::new();
        tributary::format::JsonLines::new()
            .encoder(&schema)
            .unwrap()
            .encode(&batches[0].records, &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        jsonl,
        "{\"a\":-1234567890.12,\"b\":12345678901234567890123456789012345678.0123456789,\"c\":1.5,\
         \"d\":\"2020-06-01T03:00:00+00:00\",\"e\":[1,null]}\n"
    );
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn numeric_values_are_exact_and_nan_is_a_typed_error() {
    // The typed path turns a binary numeric(p <= 38, s), and a wide one's values that fit
    // 38 digits, into its unscaled value without text: every digit group, sign, weight
    // and scale padding must come out as the server's own text says.
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.m (id int, a numeric(12,2), b numeric(38,0), c numeric(20,6), d numeric(50,10));
         INSERT INTO {s}.m VALUES (1, 0, 0, 0, 0), (2, -0.05, 10000, 0.5, -0.0000000001),
           (3, 9999999999.99, 99999999999999999999999999999999999999, -12345678.000001, 1234567890123456789012345678901234567890.0123456789),
           (4, -1, -100000000, 10000000000000, -9999999999999999999999999999.9999999999), (5, 10.10, 1, 0.000001, 42.5), (6, NULL, NULL, NULL, NULL);
         CREATE TABLE {s}.nan (id int, a numeric(12,2)); INSERT INTO {s}.nan VALUES (1, 'NaN')"
    ))
    .await
    else {
        return;
    };
    let ex = PostgresExtractor::connect_lazy(&url, SqlSource::table(format!("{s}.m"))).unwrap();
    let batches = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap();
    let mut out = Vec::new();
    let schema = batches[0].records.schema();
    use tributary::format::Format;
    let mut enc = tributary::format::Csv::new(tributary::format::CsvDialect::book())
        .encoder(&schema)
        .unwrap();
    for b in &batches {
        enc.encode(&b.records, &mut out).unwrap();
    }
    let mut got: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    got.sort();
    // The server's text of the same rows.
    type Row = (
        i32,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let want: Vec<Row> = sqlx::query_as(&format!(
        "SELECT id, a::text, b::text, c::text, d::text FROM {s}.m ORDER BY id"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut want: Vec<String> = want
        .into_iter()
        .map(|(id, a, b, c, d)| {
            let t = |v: Option<String>| v.unwrap_or_default();
            format!("{id}|{}|{}|{}|{}", t(a), t(b), t(c), t(d))
        })
        .collect();
    want.sort();
    assert_eq!(got, want);

    let ex = PostgresExtractor::connect_lazy(&url, SqlSource::table(format!("{s}.nan"))).unwrap();
    let e = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, tributary::Error::Type { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("column a: value NaN does not fit numeric(12,2); cast it to text"),
        "{e}"
    );
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn unsupported_types_name_the_column_and_how_to_cast() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.g (id int, span int4range, p point)"
    ))
    .await
    else {
        return;
    };
    let ex = PostgresExtractor::connect_lazy(&url, SqlSource::table(format!("{s}.g"))).unwrap();
    let err = ex.extract(None).await.err().unwrap();
    assert!(matches!(err, Error::Type { .. }), "{err}");
    assert!(
        err.to_string().contains("column span has type INT4RANGE"),
        "{err}"
    );
    assert!(err.to_string().contains("span::text"), "{err}");
    // The documented way out works.
    let ex = PostgresExtractor::connect_lazy(
        &url,
        SqlSource::query(format!(
            "SELECT id, span::text AS span, p::text AS p FROM {s}.g"
        )),
    )
    .unwrap();
    assert!(ex.extract(None).await.is_ok());
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_input_gives_typed_errors() {
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let ex = PostgresExtractor::connect_lazy(&url, SqlSource::table("no_such_table")).unwrap();
    let e = ex.extract(None).await.err().unwrap();
    assert!(
        matches!(e, Error::NotFound { .. }) && e.to_string().contains("no_such_table"),
        "{e}"
    );
    let ex = PostgresExtractor::connect_lazy(
        &url,
        SqlSource::table("pg_class").columns(["no_such_column"]),
    )
    .unwrap();
    assert!(matches!(ex.check().await, Err(Error::NotFound { .. })));
    let ex = PostgresExtractor::connect_lazy(
        "postgres://postgres@127.0.0.1:1/test",
        SqlSource::table("t"),
    )
    .unwrap();
    let e = ex.extract(None).await.err().unwrap();
    assert!(e.is_retryable(), "{e:?}");
}

/// The COPY fast path writes exactly the bytes of the typed path, parts and row counts
/// included.
#[tokio::test]
async fn copy_path_writes_the_same_bytes_as_the_typed_path() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; SET search_path = {s}; CREATE TYPE mood AS ENUM ('sad','ok','happy');
         CREATE DOMAIN positive_int AS int4 CHECK (VALUE > 0);
         CREATE TABLE all_types ({ALL_TYPES}); INSERT INTO all_types VALUES {ALL_VALUES};
         CREATE TABLE orders AS SELECT i::bigint AS id, ((i::bigint*7919)%100000)::int AS customer_id,
           (ARRAY['Backordered','Shipped','Pending','Cancelled'])[1+i%4]::varchar(30) AS status,
           (((i::bigint*31)%1000000)/100.0)::numeric(12,2) AS amount, (ARRAY['USD','EUR','KRW'])[1+i%3]::char(3) AS currency,
           CASE WHEN i%3=0 THEN NULL ELSE 'note for order '||i||' with | pipe, \"quote\" and comma' END AS note,
           i%10=0 AS is_gift, timestamp '2020-01-01' + (i||' seconds')::interval AS created_at,
           timestamptz '2020-06-01 00:00:00+00' + (i||' seconds')::interval AS last_updated,
           CASE WHEN i%5=0 THEN NULL ELSE jsonb_build_object('sku','SKU-'||(i%997),'qty',1+i%9,'tags',jsonb_build_array('a','b')) END AS payload
         FROM generate_series(1, 20000) AS g(i);"
    ))
    .await
    else {
        return;
    };
    for (table, max_rows) in [("all_types", None), ("orders", Some(7_000u64))] {
        let mut outputs = vec![];
        for copy in [false, true] {
            let sink = ObjectSink::memory();
            let mut opts = PipelineOptions::new()
                .with_encoded_path(copy)
                .with_run_id("same");
            if let Some(m) = max_rows {
                opts = opts.with_part_max_rows(m);
            }
            let r = Pipeline::builder("copy")
                .extractor(
                    PostgresExtractor::connect_lazy(
                        &url,
                        SqlSource::table(format!("{s}.{table}")).with_batch_rows(1000),
                    )
                    .unwrap(),
                )
                .sink(sink.clone())
                .options(opts)
                .build()
                .unwrap()
                .run()
                .await
                .into_result()
                .unwrap();
            assert_eq!(r.source_encoded, copy, "{table}: which path ran");
            let mut objects = vec![];
            for o in &r.objects {
                objects.push((o.rows, sink.read(&o.key).await.unwrap()));
            }
            outputs.push((r.rows, objects));
        }
        assert_eq!(outputs[0].0, outputs[1].0, "{table}: row counts");
        assert_eq!(
            outputs[0].1.len(),
            outputs[1].1.len(),
            "{table}: number of parts"
        );
        for (i, (typed, copied)) in outputs[0].1.iter().zip(&outputs[1].1).enumerate() {
            assert_eq!(typed.0, copied.0, "{table} part {i}: rows");
            assert!(
                typed.1 == copied.1,
                "{table} part {i}: bytes differ:\n{}\n---\n{}",
                String::from_utf8_lossy(&typed.1[..typed.1.len().min(2000)]),
                String::from_utf8_lossy(&copied.1[..copied.1.len().min(2000)])
            );
        }
    }
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn partitioned_full_extraction() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.p AS SELECT i AS id, timestamptz '2020-01-01 00:00:00+00' + i * interval '1 minute' AS at,
           md5(i::text) AS v FROM generate_series(1, 10000) i;
         INSERT INTO {s}.p VALUES (NULL, NULL, 'no key')"
    ))
    .await
    else {
        return;
    };
    let run = |column: &'static str, n: u32| {
        let url = url.clone();
        let s = s.clone();
        async move {
            let sink = ObjectSink::memory();
            let r = Pipeline::builder("p")
                .extractor(
                    PostgresExtractor::connect_lazy(
                        &url,
                        SqlSource::table(format!("{s}.p"))
                            .partition_on(column, n)
                            .with_batch_rows(500),
                    )
                    .unwrap(),
                )
                .sink(sink.clone())
                .options(PipelineOptions::new().with_run_id("parts"))
                .build()
                .unwrap()
                .run()
                .await
                .into_result()
                .unwrap();
            let mut rows = vec![];
            for o in &r.objects {
                rows.extend(
                    String::from_utf8(sink.read(&o.key).await.unwrap().to_vec())
                        .unwrap()
                        .lines()
                        .map(str::to_string),
                );
            }
            rows.sort();
            (r, rows)
        }
    };
    let (r, rows) = run("id", 4).await;
    assert!(!r.source_encoded, "partitions use the typed path");
    let mut keys: Vec<String> = r
        .objects
        .iter()
        .map(|o| o.key.rsplit('-').next().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["00000.csv", "00001.csv", "00002.csv", "00003.csv"],
        "one object per range, numbered by range"
    );
    assert_eq!(rows.len(), 10_001);
    let mut ids: Vec<i64> = rows
        .iter()
        .filter_map(|l| l.split('|').next().unwrap().parse().ok())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=10_000).collect::<Vec<_>>(),
        "every id exactly once"
    );
    assert!(
        rows.iter().any(|l| l == "||no key"),
        "the NULL-key row lands in the first range"
    );
    let (again, rows_again) = run("id", 4).await;
    let k1: Vec<&String> = r.objects.iter().map(|o| &o.key).collect();
    let k2: Vec<&String> = again.objects.iter().map(|o| &o.key).collect();
    assert_eq!(k1, k2, "the same run id gives the same keys");
    assert_eq!(rows, rows_again);
    let (r, rows_t) = run("at", 3).await;
    assert_eq!(r.objects.len(), 3);
    assert_eq!(rows_t, rows, "partitioning by time gives the same rows");
    let e = PostgresExtractor::connect_lazy(
        &url,
        SqlSource::table(format!("{s}.p")).partition_on("v", 2),
    )
    .unwrap()
    .extract(None)
    .await
    .err()
    .unwrap();
    assert!(
        matches!(e, Error::Config { .. }) && e.to_string().contains("partition column v"),
        "{e}"
    );
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

/// The book's strategy: the watermark comes from the rows already in the warehouse —
/// here without losing the rows that share the last value.
#[tokio::test]
async fn watermark_from_the_warehouse() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.Orders (OrderId int, OrderStatus varchar(30), LastUpdated timestamp);
         INSERT INTO {s}.Orders VALUES (1,'Backordered','2020-06-01 12:00:00'), (1,'Shipped','2020-06-09 12:00:25'),
           (2,'Shipped','2020-07-11 03:05:00'), (3,'Shipped','2020-07-12 12:00:00');
         CREATE TABLE {s}.loaded (OrderId int, OrderStatus varchar(30), LastUpdated timestamp);"
    ))
    .await
    else {
        return;
    };
    let cursor = Cursor::new("LastUpdated").with_key(["OrderId", "OrderStatus"]);
    let warehouse = tributary::warehouse::Warehouse::connect(&url)
        .await
        .unwrap();
    let load = |start: Option<Checkpoint>| {
        let (url, s, cursor) = (url.clone(), s.clone(), cursor.clone());
        async move {
            let sink = ObjectSink::memory();
            let mut opts = PipelineOptions::new();
            if let Some(cp) = start {
                opts = opts.with_start_from(cp);
            }
            let r = Pipeline::builder("wh")
                .extractor(
                    PostgresExtractor::connect_lazy(
                        &url,
                        SqlSource::table(format!("{s}.Orders")).incremental(cursor),
                    )
                    .unwrap(),
                )
                .sink(sink.clone())
                .options(opts)
                .build()
                .unwrap()
                .run()
                .await
                .into_result()
                .unwrap();
            // Load what landed into the warehouse table, as a loader would.
            let mut c = PgConnection::connect(&url).await.unwrap();
            let mut lines = vec![];
            for o in &r.objects {
                let bytes = sink.read(&o.key).await.unwrap();
                lines.extend(
                    String::from_utf8(bytes.to_vec())
                        .unwrap()
                        .lines()
                        .map(str::to_string),
                );
                let mut copy = c
                    .copy_in_raw(&format!(
                        "COPY {s}.loaded FROM STDIN WITH (FORMAT csv, DELIMITER '|')"
                    ))
                    .await
                    .unwrap();
                copy.send(bytes.as_ref()).await.unwrap();
                copy.finish().await.unwrap();
            }
            lines.sort();
            lines
        }
    };
    assert!(
        warehouse
            .watermark(&format!("{s}.loaded"), &cursor)
            .await
            .unwrap()
            .is_none(),
        "empty warehouse"
    );
    assert_eq!(load(None).await.len(), 4);
    conn.execute(
        format!("INSERT INTO {s}.Orders VALUES (4,'Late','2020-07-12 12:00:00'), (3,'Returned','2020-07-13 09:00:00')").as_str(),
    )
    .await
    .unwrap();
    let cp = warehouse
        .watermark(&format!("{s}.loaded"), &cursor)
        .await
        .unwrap();
    assert_eq!(
        load(cp).await,
        vec![
            "3|Returned|2020-07-13 09:00:00",
            "4|Late|2020-07-12 12:00:00"
        ],
        "the late row at the old maximum is not lost, the loaded one not duplicated"
    );
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {s}.loaded"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let distinct: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM (SELECT DISTINCT * FROM {s}.loaded) d"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((n, distinct), (6, 6));
    assert!(matches!(
        warehouse
            .watermark(&format!("{s}.loaded"), &Cursor::new("LastUpdated"))
            .await,
        Err(Error::Config { .. })
    ));
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn permission_denied_is_typed() {
    let s = schema_name();
    let role = format!("{s}_reader");
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.secret (id int); CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA {s} TO {role};"
    ))
    .await
    else {
        return;
    };
    // The test cluster trusts local connections, so the role logs in without a password.
    let as_role = url.replacen("postgres@", &format!("{role}@"), 1);
    let e = PostgresExtractor::connect_lazy(&as_role, SqlSource::table(format!("{s}.secret")))
        .unwrap()
        .extract(None)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("permission denied"), "{e}");
    assert!(!e.is_retryable());
    conn.execute(format!("DROP SCHEMA {s} CASCADE; DROP ROLE {role}").as_str())
        .await
        .unwrap();
}

#[cfg(feature = "parquet")]
#[tokio::test]
async fn every_type_round_trips_through_parquet() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; SET search_path = {s}; CREATE TYPE mood AS ENUM ('sad','ok','happy');
         CREATE DOMAIN positive_int AS int4 CHECK (VALUE > 0);
         CREATE TABLE all_types ({ALL_TYPES}); INSERT INTO all_types VALUES {ALL_VALUES};"
    ))
    .await
    else {
        return;
    };
    let url = format!("{url}?options=-csearch_path%3D{s}");
    let source = || SqlSource::table("all_types").with_stream_name("all_types");
    // What the typed path reads, as Arrow, and the same table landed as Parquet, read back.
    let expected =
        common::extract_all(&PostgresExtractor::connect_lazy(&url, source()).unwrap()).await;
    let (rows, got) =
        common::through_parquet(PostgresExtractor::connect_lazy(&url, source()).unwrap()).await;
    assert_eq!(rows, 3);
    assert_eq!(got.num_columns(), expected.num_columns());
    for (i, f) in expected.schema().fields().iter().enumerate() {
        let back = got.schema().field(i).clone();
        if f.name() == "iv" {
            // Parquet has no interval type: ISO 8601 text, as PostgreSQL prints it.
            conn.execute("SET IntervalStyle = 'iso_8601'")
                .await
                .unwrap();
            let theirs: Vec<Option<String>> =
                sqlx::query_scalar(&format!("SELECT iv::text FROM {s}.all_types ORDER BY id"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let ours: Vec<Option<String>> = got
                .column(i)
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect();
            assert_eq!(ours, theirs);
            continue;
        }
        assert_eq!(back.data_type(), f.data_type(), "type of {}", f.name());
        assert_eq!(back.metadata(), f.metadata(), "metadata of {}", f.name());
        // Float columns hold NaN, which is not equal to itself: compare the Arrow data.
        assert_eq!(
            got.column(i).to_data(),
            expected.column(i).to_data(),
            "values of {} ({})",
            f.name(),
            f.data_type()
        );
    }
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

/// The CSV of a full extraction of `table`, on the COPY path or the typed path.
async fn both_paths(url: &str, table: &str) -> [Result<String>; 2] {
    let mut out = [Ok(String::new()), Ok(String::new())];
    for (i, encoded) in [true, false].into_iter().enumerate() {
        let sink = ObjectSink::memory();
        let r = Pipeline::builder("pg")
            .extractor(PostgresExtractor::connect_lazy(url, SqlSource::table(table)).unwrap())
            .sink(sink.clone())
            .options(PipelineOptions::new().with_encoded_path(encoded))
            .build()
            .unwrap()
            .run()
            .await;
        assert_eq!(r.source_encoded, encoded, "the path asked for was taken");
        out[i] = match r.into_result() {
            Ok(r) => {
                let mut text = String::new();
                for o in &r.objects {
                    text.push_str(std::str::from_utf8(&sink.read(&o.key).await.unwrap()).unwrap());
                }
                Ok(text)
            }
            Err(e) => Err(e),
        };
    }
    out
}

#[tokio::test]
async fn bc_dates_and_infinities_are_the_same_on_both_paths() {
    // Issue 8.9: BC dates were `4713-01-01 BC` on the COPY path and `-4712-01-01` on the
    // typed path (which COPY FROM rejects); ±infinity succeeded on one and failed on the other.
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.bc (id int, d date, ts timestamp, tz timestamptz);
         INSERT INTO {s}.bc VALUES
           (1, '4713-01-01 BC', '4713-01-01 00:00:00 BC', '4713-11-24 12:30:00.25+00 BC'),
           (2, '0001-12-31 BC', '0001-12-31 23:59:59.999999 BC', '0044-03-15 12:00:00+00 BC'),
           (3, '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00');
         CREATE TABLE {s}.bc_back (LIKE {s}.bc);
         CREATE TABLE {s}.inf_d (id int, d date); INSERT INTO {s}.inf_d VALUES (1, '2020-01-01'), (2, 'infinity');
         CREATE TABLE {s}.inf_ts (id int, note text, ts timestamptz);
         INSERT INTO {s}.inf_ts VALUES (1, 'infinity', '2020-01-01'), (2, 'x', '-infinity');
         CREATE TABLE {s}.inf_text (id int, note text, ts timestamp); INSERT INTO {s}.inf_text VALUES (1, 'infinity', '2020-01-01');"
    ))
    .await
    else {
        return;
    };
    let [copy, typed] = both_paths(&url, &format!("{s}.bc")).await;
    let (copy, typed) = (copy.unwrap(), typed.unwrap());
    assert_eq!(copy, typed, "the two paths differ");
    assert_eq!(
        typed,
        "1|4713-01-01 BC|4713-01-01 00:00:00 BC|4713-11-24 12:30:00.25+00 BC\n\
         2|0001-12-31 BC|0001-12-31 23:59:59.999999 BC|0044-03-15 12:00:00+00 BC\n\
         3|0001-01-01|0001-01-01 00:00:00|0001-01-01 00:00:00+00\n"
    );
    // PostgreSQL loads the typed path's bytes back to the same values.
    let dialect = tributary::format::CsvDialect::book();
    let mut copy_in = conn
        .copy_in_raw(&format!(
            "COPY {s}.bc_back FROM STDIN WITH ({})",
            dialect.postgres_copy_options()
        ))
        .await
        .unwrap();
    copy_in.send(typed.as_bytes()).await.unwrap();
    assert_eq!(copy_in.finish().await.unwrap(), 3);
    let diff: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM (SELECT * FROM {s}.bc EXCEPT ALL SELECT * FROM {s}.bc_back) d"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(diff, 0);
    // ±infinity: the same typed error on both paths, naming the column.
    for (table, column) in [("inf_d", "d"), ("inf_ts", "ts")] {
        let [copy, typed] = both_paths(&url, &format!("{s}.{table}")).await;
        let (copy, typed) = (copy.unwrap_err(), typed.unwrap_err());
        assert!(matches!(copy, Error::Type { .. }), "{copy:?}");
        assert_eq!(copy.to_string(), typed.to_string());
        assert!(
            copy.to_string().contains(&format!("column {column}:")),
            "{copy}"
        );
    }
    // The word in a text column is data, not an infinite timestamp.
    let [copy, typed] = both_paths(&url, &format!("{s}.inf_text")).await;
    assert_eq!(copy.unwrap(), typed.unwrap());
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_million_rows_at_one_cursor_value_keep_a_small_checkpoint() {
    // Issue 8.10, as reported: `CREATE TABLE t AS SELECT g id, now() loaded_at FROM
    // generate_series(1,1000000) g`, two incremental runs. It made a 19 MB checkpoint, a
    // 26 MB manifest and took 941 MB to land one new row.
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.t AS SELECT g id, now() loaded_at FROM generate_series(1, 1000000) g"
    ))
    .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let source =
        SqlSource::table(format!("{s}.t")).incremental(Cursor::new("loaded_at").with_key(["id"]));
    let p = common::pipeline(
        "million",
        PostgresExtractor::connect_lazy(&url, source).unwrap(),
        &sink,
    );
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, 1_000_000);
    let state = ObjectStateStore::new(sink.clone(), "_state")
        .load("million")
        .await
        .unwrap()
        .unwrap();
    // The position stays small; the table's schema saved beside it is one per table.
    let checkpoint = serde_json::to_string(&state.value.checkpoint).unwrap();
    assert_eq!(state.value.schemas.len(), 1);
    assert!(
        checkpoint.len() < 500,
        "{} bytes: {checkpoint}",
        checkpoint.len()
    );
    let manifest = sink.read(first.manifest.as_ref().unwrap()).await.unwrap();
    assert!(manifest.len() < 10_000, "{} byte manifest", manifest.len());
    conn.execute(format!("INSERT INTO {s}.t SELECT 1000001, max(loaded_at) FROM {s}.t").as_str())
        .await
        .unwrap();
    let second = p.run().await.into_result().unwrap();
    assert_eq!(second.rows, 1, "only the new row");
    let text = sink.read(&second.objects[0].key).await.unwrap();
    assert!(
        text.starts_with(b"1000001|"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cursor_without_a_key_reads_the_primary_key_from_the_catalog() {
    // The same bulk load as above, with a primary key and no `with_key`: the checkpoint is
    // a keyset position over the key, found in the catalog (a two-column key, declared
    // in an order unlike the columns', to show the key's own order is used).
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.\"Bulk\" (b int, a text, loaded_at timestamptz, PRIMARY KEY (a, b));
         INSERT INTO {s}.\"Bulk\" SELECT g, 'k' || (g % 7), '2020-01-01Z' FROM generate_series(1, 3000) g"
    ))
    .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let source = SqlSource::table(format!("{s}.Bulk"))
        .incremental(Cursor::new("loaded_at"))
        .with_batch_rows(500);
    let p = common::pipeline(
        "bulk",
        PostgresExtractor::connect_lazy(&url, source).unwrap(),
        &sink,
    );
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, 3000);
    let Some(Checkpoint::Watermark(w)) = &first.checkpoint_to else {
        panic!("{:?}", first.checkpoint_to)
    };
    assert_eq!(w.key, Some(vec!["a".to_string(), "b".to_string()]));
    assert!(w.seen.is_empty(), "{w:?}");
    assert_eq!(
        w.after,
        Some(vec![CursorValue::Text("k6".into()), CursorValue::Int(2995)])
    );
    // A late row at the same value (after the position) and a later one.
    conn.execute(
        format!(
            "INSERT INTO {s}.\"Bulk\" VALUES (5001, 'k9', '2020-01-01Z'), (1, 'z', '2020-01-02Z')"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let second = p.run().await.into_result().unwrap();
    let text = common::read_text(&sink, &second.objects[0].key).await;
    let ids: Vec<&str> = text.lines().map(|l| l.split('|').next().unwrap()).collect();
    assert_eq!(ids, vec!["5001", "1"], "{text}");
    assert_eq!(p.run().await.into_result().unwrap().rows, 0);
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_widened_numeric_between_two_incremental_runs_is_noticed() {
    let s = schema_name();
    let Some((url, mut conn)) = setup(&format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.pay (id int, amount numeric(12,2), at timestamp);
         INSERT INTO {s}.pay VALUES (1, 10.25, '2020-01-01')"
    ))
    .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let run = |on: OnSchemaChange| {
        Pipeline::builder("pay")
            .extractor(
                PostgresExtractor::connect_lazy(
                    &url,
                    // Keyed: a key-less watermark recognises landed rows by their values,
                    // and 10.25 now reads 10.250, so row 1 would come again.
                    SqlSource::table(format!("{s}.pay"))
                        .incremental(Cursor::new("at").with_key(["id"])),
                )
                .unwrap(),
            )
            .sink(sink.clone())
            .state(ObjectStateStore::new(sink.clone(), "_state"))
            .options(PipelineOptions::new().with_on_schema_change(on))
            .build()
            .unwrap()
    };
    let first = run(OnSchemaChange::Fail).run().await.into_result().unwrap();
    assert!(first.warnings.is_empty());
    conn.execute(
        format!(
            "ALTER TABLE {s}.pay ALTER COLUMN amount TYPE numeric(14,3);
             INSERT INTO {s}.pay VALUES (2, 7.125, '2020-01-02')"
        )
        .as_str(),
    )
    .await
    .unwrap();
    // Set to fail: a typed error naming table, column, old and new type; nothing landed.
    let failed = run(OnSchemaChange::Fail).run().await;
    assert!(matches!(failed.error, Some(Error::SchemaChanged { .. })));
    assert_eq!(
        failed.error_message.as_deref(),
        Some(
            format!(
                "table {s}.pay: schema changed: column amount changed type from \
                 Decimal128(12, 2) to Decimal128(14, 3)"
            )
            .as_str()
        )
    );
    assert!(failed.objects.is_empty());
    // By default: a warning, and the new object's manifest entry has the new type.
    let second = run(OnSchemaChange::NewObject)
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(second.rows, 1);
    assert!(second.warnings[0].contains("Decimal128(12, 2) to Decimal128(14, 3)"));
    let schema = second.objects[0].schema.as_ref().unwrap();
    assert_eq!(schema.fields[1].data_type, "Decimal128(14, 3)");
}
