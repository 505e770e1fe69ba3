//! The MongoDB extractor against a MongoDB wire-protocol server on loopback (nx-27017,
//! installed by scripts/services.sh; no real mongod can be installed here): the book's
//! time-window job, incremental runs without loss or duplicates, flattening and type
//! inference, bad input.
#![cfg(feature = "mongodb")]

use crate::common;

use chrono::{Duration, TimeZone, Utc};
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use tributary::format::Format;
use tributary::sources::mongo::{MongoExtractor, MongoSource};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

async fn setup(docs: Vec<Document>) -> Option<(String, String, mongodb::Collection<Document>)> {
    let url = common::service("TRIBUTARY_TEST_MONGO_URL", "MongoDB wire-protocol server")?;
    let client = mongodb::Client::with_uri_str(&url).await.unwrap();
    let name = common::unique("c").replace('-', "_");
    let coll = client
        .database("tributary_test")
        .collection::<Document>(&name);
    if !docs.is_empty() {
        coll.insert_many(docs).await.unwrap();
    }
    Some((url, name, coll))
}

async fn run_csv(
    url: &str,
    source: MongoSource,
    sink: &ObjectSink,
    state: Option<&ObjectStateStore>,
) -> (RunReport, Vec<String>) {
    let mut b = Pipeline::builder("mongo")
        .extractor(MongoExtractor::connect(url, source).await.unwrap())
        .sink(sink.clone());
    if let Some(s) = state {
        b = b.state(s.clone());
    }
    let r = b.build().unwrap().run().await.into_result().unwrap();
    let mut lines = vec![];
    for o in &r.objects {
        let text = String::from_utf8(sink.read(&o.key).await.unwrap().to_vec()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    (r, lines)
}

#[tokio::test]
async fn the_books_time_window_job() {
    let day = Utc.with_ymd_and_hms(2020, 6, 2, 0, 0, 0).unwrap();
    let mut docs = vec![];
    for (i, hours) in [-30i64, -24, -23, -1, 0, 5].iter().enumerate() {
        let at = day + Duration::hours(*hours);
        docs.push(doc! {
            "event_id": i as i32 + 1,
            "event_timestamp": mongodb::bson::DateTime::from_millis(at.timestamp_millis()),
            "event_name": format!("event | {i}"),
            "extra": { "ignored": true },
        });
    }
    let Some((url, coll, _)) = setup(docs).await else {
        return;
    };
    // Yesterday relative to 2020-06-02: [2020-06-01 00:00, 2020-06-02 00:00).
    let source = MongoSource::collection("tributary_test", &coll)
        .fields(["event_id", "event_timestamp", "event_name"])
        .time_window("event_timestamp", day - Duration::days(1), day);
    let sink = ObjectSink::memory();
    let (r, lines) = run_csv(&url, source.clone(), &sink, None).await;
    assert_eq!(r.rows, 3);
    // Picking the fields client-side gives the same rows.
    let (_, whole) = run_csv(
        &url,
        source.server_projection(false),
        &ObjectSink::memory(),
        None,
    )
    .await;
    assert_eq!(whole, lines);
    assert_eq!(
        lines,
        vec![
            "2|2020-06-01 00:00:00+00|event | 1",
            "3|2020-06-01 01:00:00+00|event | 2",
            "4|2020-06-01 23:00:00+00|event | 3",
        ]
        .into_iter()
        .map(|l| {
            // `|` inside a value is quoted.
            let mut parts: Vec<String> = l.splitn(3, '|').map(str::to_string).collect();
            parts[2] = format!("\"{}\"", parts[2]);
            parts.join("|")
        })
        .collect::<Vec<_>>()
    );
    assert!(
        r.objects[0].key.starts_with("mongodb/"),
        "{}",
        r.objects[0].key
    );
}

#[tokio::test]
async fn incremental_runs_lose_and_duplicate_nothing() {
    let t0 = Utc.with_ymd_and_hms(2020, 6, 1, 12, 0, 0).unwrap();
    let at = |s: i64| {
        mongodb::bson::DateTime::from_millis((t0 + Duration::seconds(s)).timestamp_millis())
    };
    // Repeated order ids and equal timestamps, as in the book's Orders table.
    let first = vec![
        doc! { "OrderId": 1, "OrderStatus": "Backordered", "LastUpdated": at(0) },
        doc! { "OrderId": 2, "OrderStatus": "Shipped", "LastUpdated": at(10) },
        doc! { "OrderId": 1, "OrderStatus": "Shipped", "LastUpdated": at(20) },
        doc! { "OrderId": 3, "OrderStatus": "Pending", "LastUpdated": at(20) },
    ];
    let Some((url, name, coll)) = setup(first).await else {
        return;
    };
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let source = || {
        MongoSource::collection("tributary_test", &name)
            .fields(["OrderId", "OrderStatus", "LastUpdated"])
            .incremental("LastUpdated")
            .with_batch_rows(2)
    };
    let (r1, mut all) = run_csv(&url, source(), &sink, Some(&state)).await;
    assert_eq!(r1.rows, 4);
    // Late rows: one sharing the last timestamp, one later; nothing else changed.
    coll.insert_many(vec![
        doc! { "OrderId": 4, "OrderStatus": "Pending", "LastUpdated": at(20) },
        doc! { "OrderId": 3, "OrderStatus": "Shipped", "LastUpdated": at(30) },
    ])
    .await
    .unwrap();
    let (r2, second) = run_csv(&url, source(), &sink, Some(&state)).await;
    assert_eq!(r2.rows, 2, "{second:?}");
    all.extend(second.iter().cloned());
    let mut all_sorted = all.clone();
    all_sorted.sort();
    all_sorted.dedup();
    assert_eq!(all_sorted.len(), 6, "no duplicates: {all:?}");
    assert!(second.contains(&"4|Pending|2020-06-01 12:00:20+00".to_string()));
    assert!(second.contains(&"3|Shipped|2020-06-01 12:00:30+00".to_string()));
    // A third run with nothing new reads nothing.
    let (r3, _) = run_csv(&url, source(), &sink, Some(&state)).await;
    assert_eq!(r3.rows, 0);
}

#[tokio::test]
async fn incremental_by_object_id() {
    let ids: Vec<ObjectId> = (0..5).map(|_| ObjectId::new()).collect();
    let docs = ids
        .iter()
        .enumerate()
        .map(|(i, id)| doc! { "_id": *id, "n": i as i64 })
        .collect();
    let Some((url, name, coll)) = setup(docs).await else {
        return;
    };
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let source = || {
        MongoSource::collection("tributary_test", &name)
            .fields(["_id", "n"])
            .incremental("_id")
    };
    let (r1, lines) = run_csv(&url, source(), &sink, Some(&state)).await;
    assert_eq!(r1.rows, 5);
    assert_eq!(lines[0], format!("{}|0", ids[0].to_hex()));
    let saved = tributary::stores::StateStore::load(&state, "mongo")
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&saved.value.checkpoint, Some(Checkpoint::Watermark(w)) if w.cursor == CursorValue::ObjectId(ids[4].to_hex())),
        "{saved:?}"
    );
    let newer = ObjectId::new();
    coll.insert_one(doc! { "_id": newer, "n": 5i64 })
        .await
        .unwrap();
    let (r2, lines) = run_csv(&url, source(), &sink, Some(&state)).await;
    assert_eq!(r2.rows, 1);
    assert_eq!(lines, vec![format!("{}|5", newer.to_hex())]);
}

#[tokio::test]
async fn documents_flatten_and_types_widen() {
    let docs = vec![
        doc! { "_id": 1, "name": "a", "n": 1i32, "f": 1.5, "ok": true,
        "customer": { "id": 7i64, "address": { "city": "Seoul", "geo": { "lat": 1.0 } } },
        "tags": ["x", "y"], "raw": Bson::Binary(mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![0, 255] }) },
        doc! { "_id": 2, "name": Bson::Null, "n": 9_007_199_254_740_993i64, "f": 2i32,
        "customer": { "id": 8i64 } },
        doc! { "_id": 3, "name": "c", "mixed": "text", "n": 3i32 },
        doc! { "_id": 4, "mixed": 5i32, "late": "new column" },
    ];
    let Some((url, name, _)) = setup(docs).await else {
        return;
    };
    let extractor = MongoExtractor::connect(
        &url,
        MongoSource::collection("tributary_test", &name).with_batch_rows(3),
    )
    .await
    .unwrap();
    extractor.check().await.unwrap();
    let batches = tributary::model::collect(extractor.extract(None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(batches.len(), 2);
    let first = &batches[0].records;
    let schema = first.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "_id",
            "name",
            "n",
            "f",
            "ok",
            "customer.id",
            "customer.address.city",
            "customer.address.geo",
            "tags",
            "raw",
            "mixed"
        ]
    );
    use arrow_schema::DataType as D;
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("_id"), D::Int32);
    // An int64 beyond 2^53 next to int32s: Int64, exact.
    assert_eq!(ty("n"), D::Int64);
    assert_eq!(ty("f"), D::Float64);
    assert_eq!(ty("ok"), D::Boolean);
    // nx-27017 hands back a small int64 as an int32 (the unit tests in src/ check int64
    // and the types it cannot store with documents built in Rust).
    assert!(matches!(ty("customer.id"), D::Int32 | D::Int64));
    assert_eq!(ty("raw"), D::Binary);
    // Depth 3: the fourth level stays a JSON document; arrays are JSON.
    assert!(tributary::model::is_json_field(
        schema.field_with_name("customer.address.geo").unwrap()
    ));
    assert!(tributary::model::is_json_field(
        schema.field_with_name("tags").unwrap()
    ));
    let mut csv = Vec::new();
    tributary::format::Csv::default()
        .encoder(&schema)
        .unwrap()
        .encode(first, &mut csv)
        .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        r#"1|a|1|1.5|t|7|Seoul|"{""lat"":1.0}"|"[""x"",""y""]"|\x00ff|"#
    );
    assert_eq!(lines[1], "2||9007199254740993|2||8|||||");
    assert_eq!(lines[2], "3|c|3||||||||text");
    // A field first seen later is a new column from the batch it appears in; the column
    // that mixed a string with a number became text.
    let second = &batches[1].records;
    let s2 = second.schema();
    assert_eq!(s2.fields().last().unwrap().name(), "late");
    assert_eq!(s2.field_with_name("mixed").unwrap().data_type(), &D::Utf8);
    let mixed = second
        .column(s2.index_of("mixed").unwrap())
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap()
        .value(0)
        .to_string();
    assert_eq!(mixed, "5");
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let Some((url, name, _)) = setup(vec![doc! { "a": 1 }]).await else {
        return;
    };
    // A collection that does not exist.
    let e = MongoExtractor::connect(&url, MongoSource::collection("tributary_test", "no_such"))
        .await
        .unwrap()
        .extract(None)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("tributary_test.no_such"), "{e}");
    // A failed run lands nothing and records the error.
    let sink = ObjectSink::memory();
    let r = Pipeline::builder("mongo")
        .extractor(
            MongoExtractor::connect(&url, MongoSource::collection("tributary_test", "no_such"))
                .await
                .unwrap(),
        )
        .sink(sink.clone())
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(r.outcome, Outcome::Failed);
    // Only the run's manifest (which records the failure); no data object.
    let left = sink.list("").await.unwrap();
    assert!(
        left.iter().all(|k| k.ends_with(".manifest.json")),
        "{left:?}"
    );
    // Nobody listening: a retryable connection error, quickly.
    let e = MongoExtractor::connect(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&directConnection=true",
        MongoSource::collection("x", "y"),
    )
    .await
    .unwrap()
    .check()
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::Connection { .. }) && e.is_retryable(),
        "{e:?}"
    );
    // A malformed URI, with the password kept out of the message.
    let e = MongoExtractor::connect(
        "mongodb://user:hunter2@127.0.0.1:27017/?notAnOption=zzz&w=-5",
        MongoSource::collection("x", "y"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // An empty window and a checkpoint of another source are configuration errors.
    let now = Utc::now();
    let e = MongoExtractor::connect(
        &url,
        MongoSource::collection("tributary_test", &name).time_window("a", now, now),
    )
    .await
    .unwrap()
    .extract(None)
    .await
    .err()
    .unwrap();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    let e = MongoExtractor::connect(&url, MongoSource::collection("tributary_test", &name))
        .await
        .unwrap()
        .extract(Some(Checkpoint::Lsn { lsn: 1 }))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
}

#[tokio::test]
async fn a_lag_leaves_the_newest_documents_for_the_next_run() {
    let now = Utc::now();
    let at = |d: Duration| mongodb::bson::DateTime::from_millis((now - d).timestamp_millis());
    let Some((url, name, _)) = setup(vec![
        doc! { "n": 1, "updated_at": at(Duration::hours(3)) },
        doc! { "n": 2, "updated_at": at(Duration::hours(2)) },
        // Written just now: perhaps others with an earlier date are still in flight.
        doc! { "n": 3, "updated_at": at(Duration::seconds(5)) },
    ])
    .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let source = |lag: u64| {
        MongoSource::collection("tributary_test", &name)
            .fields(["n"])
            .incremental("updated_at")
            .lag(std::time::Duration::from_secs(lag))
    };
    let (_, first) = run_csv(&url, source(3600), &sink, Some(&state)).await;
    assert_eq!(first, ["1", "2"]);
    let (_, second) = run_csv(&url, source(0), &sink, Some(&state)).await;
    assert_eq!(second, ["3"]);
    // A lag without a cursor field is a configuration error.
    let e = MongoExtractor::connect(
        &url,
        MongoSource::collection("tributary_test", &name).lag(std::time::Duration::from_secs(1)),
    )
    .await
    .unwrap()
    .extract(None)
    .await
    .err()
    .unwrap();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
}

#[cfg(feature = "test-util")]
#[tokio::test]
async fn the_extractor_suite_passes_by_time_and_by_object_id() {
    let t0 = Utc.with_ymd_and_hms(2020, 6, 1, 12, 0, 0).unwrap();
    // Groups of five documents per timestamp, batches of two.
    let docs: Vec<Document> = (0..37)
        .map(|i: i64| {
            let at = mongodb::bson::DateTime::from_millis(
                (t0 + Duration::seconds(i / 5)).timestamp_millis(),
            );
            doc! { "OrderId": i % 4, "OrderStatus": "Shipped", "LastUpdated": at }
        })
        .collect();
    let Some((url, name, _coll)) = setup(docs).await else {
        return;
    };
    for source in [
        MongoSource::collection("tributary_test", &name)
            .fields(["OrderId", "OrderStatus", "LastUpdated"])
            .incremental("LastUpdated")
            .with_batch_rows(2),
        MongoSource::collection("tributary_test", &name)
            .fields(["_id", "OrderId"])
            .incremental("_id")
            .with_batch_rows(3),
    ] {
        let e = MongoExtractor::connect(&url, source).await.unwrap();
        let r = tributary::testing::extractor_suite(&e, 10).await;
        assert!(r.rows == 37 && r.resumes > 0, "{r:?}");
    }
}
