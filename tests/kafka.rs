//! Kafka against the tansu broker `scripts/services.sh` starts: our WAL CDC published
//! through `KafkaSink` and read back by `KafkaExtractor` lands the same rows as the CDC
//! source landed directly; offsets reach the group only after the landing committed.
mod common;

use common::wal;
use tributary::format::{Csv, Format};
use tributary::kafka::KafkaClientConfig;
use tributary::sources::kafka::{KafkaConfig, KafkaExtractor};
use tributary::sources::postgres_cdc::PostgresCdcConfig;
use tributary::stores::kafka::{KafkaSink, KafkaSinkConfig};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::{Batch, Checkpoint, Extractor, Outcome, Pipeline};

fn bootstrap() -> Option<String> {
    common::service(
        "TRIBUTARY_TEST_KAFKA_BOOTSTRAP",
        "Kafka-protocol broker (tansu)",
    )
}

/// Each table's rows as book CSV lines, in order.
fn lines(batches: &[Batch]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let mut enc = Csv::default().encoder(&b.records.schema()).unwrap();
        let mut bytes = Vec::new();
        enc.encode(&b.records, &mut bytes).unwrap();
        let t = b.table.clone().unwrap_or_default();
        out.extend(
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| (t.clone(), l.to_string())),
        );
    }
    out
}

async fn drain(e: &dyn Extractor, from: Option<Checkpoint>) -> Vec<Batch> {
    let mut s = e.extract(from).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = futures::StreamExt::next(&mut s).await {
        out.push(b.unwrap());
    }
    out
}

fn last_checkpoint(batches: &[Batch]) -> Option<Checkpoint> {
    batches.iter().rev().find_map(|b| b.checkpoint.clone())
}

const TYPES: &str = "id int PRIMARY KEY, name text, amount numeric(12,2), big bigint, small smallint, \
    flag boolean, ratio double precision, born date, seen timestamp, seen_tz timestamptz, \
    doc jsonb, uid uuid, raw bytea, at time";

async fn publish(
    url: &str,
    slot: &str,
    table: &str,
    servers: &str,
    prefix: &str,
    state: &ObjectSink,
) {
    let report = Pipeline::builder("publish")
        .extractor(wal::reader(url, slot, &[table], |c: PostgresCdcConfig| {
            c.with_publication(slot)
        }))
        .batch_sink(
            KafkaSink::new(KafkaSinkConfig::new(
                KafkaClientConfig::new(servers),
                prefix,
            ))
            .unwrap(),
        )
        .state(ObjectStateStore::new(state.clone(), "_state"))
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.error);
}

#[tokio::test]
async fn our_wal_cdc_through_kafka_lands_what_the_cdc_source_lands() {
    let Some(servers) = bootstrap() else { return };
    let Some((url, mut conn)) = wal::connect().await else {
        return;
    };
    let t = wal::name("kt");
    let qualified = format!("public.{t}");
    wal::exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} ({TYPES});\n\
             ALTER TABLE {t} REPLICA IDENTITY FULL;\n\
             INSERT INTO {t} VALUES (1, 'Backordered', 12.34, 9007199254740993, -3, true, 0.1, '2020-06-01', \
               '2020-06-01 12:00:00.123456', '2020-06-01 12:00:00.5+02', '{{\"a\": [1, 2]}}', \
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', '23:59:59.999999'), \
               (2, NULL, -0.01, NULL, NULL, false, -1e300, '0001-01-01', NULL, NULL, 'null', NULL, '\\x', '00:00')"
        ),
    )
    .await;
    // One slot per path, so both read the same snapshot and the same changes.
    let (direct_slot, kafka_slot) = (format!("{t}_d"), format!("{t}_k"));
    let direct = wal::reader(&url, &direct_slot, &[&qualified], |c| {
        c.with_publication(&direct_slot)
    });
    let state = ObjectSink::memory();
    let snapshot = drain(&direct, None).await;
    publish(&url, &kafka_slot, &qualified, &servers, &t, &state).await;
    wal::exec(
        &mut conn,
        &format!(
            "UPDATE {t} SET name = 'Shipped', amount = 99999999.99 WHERE id = 1;\n\
             DELETE FROM {t} WHERE id = 2;\n\
             INSERT INTO {t} (id, name) VALUES (3, 'pipe|and \"quote\"')"
        ),
    )
    .await;
    let changes = drain(&direct, last_checkpoint(&snapshot)).await;
    publish(&url, &kafka_slot, &qualified, &servers, &t, &state).await;
    let mut want = lines(&snapshot);
    want.extend(lines(&changes));
    assert_eq!(want.len(), 5, "{want:#?}");

    let topic = format!("{t}.{qualified}");
    let reader = |group: &str| {
        KafkaExtractor::new(
            KafkaConfig::new(KafkaClientConfig::new(&servers), group, [topic.as_str()])
                .with_stop_at_end(true),
        )
        .unwrap()
    };
    let got_batches = drain(&reader(&format!("{t}-g")), None).await;
    let got = lines(&got_batches);
    assert_eq!(got, want);
    // The schema of the rows too, not only their text: same Arrow types both ways.
    let direct_schema = changes
        .iter()
        .find(|b| b.num_rows() > 0)
        .unwrap()
        .records
        .schema();
    for b in got_batches.iter().filter(|b| b.num_rows() > 0) {
        for (g, w) in b
            .records
            .schema()
            .fields()
            .iter()
            .zip(direct_schema.fields())
        {
            assert_eq!((g.name(), g.data_type()), (w.name(), w.data_type()));
        }
    }
    // Two snapshot rows, an update, a delete and its tombstone, an insert: 6 offsets.
    assert_eq!(
        last_checkpoint(&got_batches),
        Some(Checkpoint::Offsets {
            offsets: [(format!("{topic}/0"), 6)].into()
        })
    );
    wal::cleanup(&mut conn, &direct_slot).await;
    wal::cleanup(&mut conn, &kafka_slot).await;
}

#[tokio::test]
async fn offsets_reach_the_group_only_after_the_landing_committed() {
    let Some(servers) = bootstrap() else { return };
    let Some((url, mut conn)) = wal::connect().await else {
        return;
    };
    let t = wal::name("kg");
    let qualified = format!("public.{t}");
    wal::exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, note text);\n\
             INSERT INTO {t} SELECT g, 'row ' || g FROM generate_series(1, 50) g"
        ),
    )
    .await;
    let state = ObjectSink::memory();
    publish(&url, &t, &qualified, &servers, &t, &state).await;
    let topic = format!("{t}.{qualified}");
    let group = format!("{t}-land");
    let land = |landing: &ObjectSink, state: &ObjectSink| {
        Pipeline::builder("land")
            .extractor(
                KafkaExtractor::new(
                    KafkaConfig::new(
                        KafkaClientConfig::new(&servers),
                        group.clone(),
                        [topic.as_str()],
                    )
                    .with_stop_at_end(true),
                )
                .unwrap(),
            )
            .sink(landing.clone())
            .state(ObjectStateStore::new(state.clone(), "_state"))
            .build()
            .unwrap()
    };
    let (landing, land_state) = (ObjectSink::memory(), ObjectSink::memory());
    let first = land(&landing, &land_state).run().await;
    assert_eq!(first.outcome, Outcome::Succeeded, "{:?}", first.error);
    assert_eq!(first.rows, 50);
    // A rerun with the same state reads nothing new.
    let again = land(&landing, &land_state).run().await;
    assert_eq!(
        (again.outcome, again.rows),
        (Outcome::Succeeded, 0),
        "{:?}",
        again.error
    );
    // A member with no state of its own starts from the group's committed offsets,
    // which the first run's acknowledgement moved: nothing is read twice.
    let fresh = land(&ObjectSink::memory(), &ObjectSink::memory())
        .run()
        .await;
    assert_eq!(
        (fresh.outcome, fresh.rows),
        (Outcome::Succeeded, 0),
        "{:?}",
        fresh.error
    );
    // More changes: the next run lands only those.
    wal::exec(
        &mut conn,
        &format!("UPDATE {t} SET note = 'changed' WHERE id <= 5"),
    )
    .await;
    publish(&url, &t, &qualified, &servers, &t, &state).await;
    let next = land(&landing, &land_state).run().await;
    assert_eq!(
        (next.outcome, next.rows),
        (Outcome::Succeeded, 5),
        "{:?}",
        next.error
    );
    wal::cleanup(&mut conn, &t).await;
}

#[tokio::test]
async fn a_run_resumes_in_the_middle_of_a_producer_batch() {
    let Some(servers) = bootstrap() else { return };
    let Some((url, mut conn)) = wal::connect().await else {
        return;
    };
    let t = wal::name("km");
    wal::exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY);\nINSERT INTO {t} SELECT generate_series(1, 10)"
        ),
    )
    .await;
    let qualified = format!("public.{t}");
    publish(&url, &t, &qualified, &servers, &t, &ObjectSink::memory()).await;
    let topic = format!("{t}.{qualified}");
    let reader = KafkaExtractor::new(
        KafkaConfig::new(
            KafkaClientConfig::new(&servers),
            format!("{t}-g"),
            [topic.as_str()],
        )
        .with_stop_at_end(true),
    )
    .unwrap();
    let from = Checkpoint::Offsets {
        offsets: [(format!("{topic}/0"), 4)].into(),
    };
    let got = lines(&drain(&reader, Some(from)).await);
    let ids: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        ids,
        [
            "snapshot|5",
            "snapshot|6",
            "snapshot|7",
            "snapshot|8",
            "snapshot|9",
            "snapshot|10"
        ]
    );
    wal::cleanup(&mut conn, &t).await;
}
