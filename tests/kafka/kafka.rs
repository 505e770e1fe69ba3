//! Kafka against the tansu broker `scripts/services.sh` starts: our WAL CDC published
//! through `KafkaSink` and read back by `KafkaExtractor` lands the same rows as the CDC
//! source landed directly; offsets reach the group only after the landing committed.
use crate::common;

use common::wal;
use tributary::ExtractorExt;
use tributary::format::{Csv, Format};
use tributary::kafka::KafkaClientConfig;
use tributary::kafka::{KafkaConfig, KafkaExtractor};
use tributary::kafka::{KafkaSink, KafkaSinkConfig};
use tributary::sources::postgres_cdc::PostgresCdcConfig;
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
    publish_tables(url, slot, &[table], servers, prefix, state).await
}

/// Publish the WAL changes of `tables` (from where `state` left off) to topics
/// `<prefix>.<table>`.
async fn publish_tables(
    url: &str,
    slot: &str,
    tables: &[&str],
    servers: &str,
    prefix: &str,
    state: &ObjectSink,
) {
    let report = Pipeline::builder("publish")
        .extractor(wal::reader(url, slot, tables, |c: PostgresCdcConfig| {
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
                .until_current_end(),
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
                    .until_current_end(),
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
        .until_current_end(),
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

/// `testing::extractor_suite` on the Kafka source: Debezium events of two tables, with an
/// `ALTER TABLE` between them (so later envelopes carry another schema), read back until
/// the topics' current end; resumed from every checkpoint it yields exactly the rest,
/// and its acknowledgements (offsets committed to the group) are accepted in order.
#[tokio::test(flavor = "multi_thread")]
async fn the_extractor_suite_passes_on_kafka_across_a_ddl() {
    let Some(servers) = bootstrap() else { return };
    let Some((url, mut conn)) = wal::connect().await else {
        return;
    };
    let (slot, a, b) = (wal::name("ks"), wal::name("ks_a"), wal::name("ks_b"));
    wal::exec(
        &mut conn,
        &format!(
            "CREATE TABLE {a} (id int PRIMARY KEY, v text);\n\
             CREATE TABLE {b} (id int PRIMARY KEY, n int)"
        ),
    )
    .await;
    let (qa, qb) = (format!("public.{a}"), format!("public.{b}"));
    let state = ObjectSink::memory();
    // The first run snapshots the (empty) tables and creates the slot; the second
    // publishes what follows.
    publish_tables(&url, &slot, &[&qa, &qb], &servers, &slot, &state).await;
    wal::exec(
        &mut conn,
        &format!(
            "INSERT INTO {a} VALUES (1, 'x'), (2, 'y');\n\
             INSERT INTO {b} VALUES (1, 10);\n\
             UPDATE {a} SET v = 'z' WHERE id = 1;\n\
             ALTER TABLE {a} ADD COLUMN w int;\n\
             INSERT INTO {a} VALUES (3, 'w', 7);\n\
             DELETE FROM {b} WHERE id = 1;\n\
             BEGIN;\n\
             INSERT INTO {a} VALUES (4, 'q', 1);\n\
             INSERT INTO {b} VALUES (2, 20);\n\
             COMMIT"
        ),
    )
    .await;
    publish_tables(&url, &slot, &[&qa, &qb], &servers, &slot, &state).await;
    let (ta, tb) = (format!("{slot}.{qa}"), format!("{slot}.{qb}"));
    let reader = KafkaExtractor::new(
        KafkaConfig::new(
            KafkaClientConfig::new(&servers),
            format!("{slot}-suite"),
            [ta.as_str(), tb.as_str()],
        )
        .until_current_end(),
    )
    .unwrap();
    let r = tributary::testing::extractor_suite(&reader, 32).await;
    wal::cleanup(&mut conn, &slot).await;
    // 2 + 1 inserts, 1 update, 1 insert after the DDL, 1 delete (its tombstone is
    // skipped), 2 in the last transaction.
    assert_eq!(r.rows, 8, "{r:?}");
    assert!(r.checkpoints >= 2, "{r:?}");
    assert_eq!(r.resumes, r.checkpoints.min(32));
}

/// Every `id` column value landed in `sink` (CSV objects), with repeats.
async fn landed_ids(sink: &ObjectSink) -> Vec<i64> {
    let mut ids = Vec::new();
    for key in sink.list("").await.unwrap() {
        if !key.ends_with(".csv") {
            continue;
        }
        let text = String::from_utf8(sink.read(&key).await.unwrap().to_vec()).unwrap();
        ids.extend(
            text.lines()
                .map(|l| l.split('|').nth(1).unwrap().parse::<i64>().unwrap()),
        );
    }
    ids
}

#[tokio::test]
async fn a_rebalance_mid_run_loses_nothing() {
    use std::time::Duration;
    use tributary::PipelineOptions;
    let Some(servers) = bootstrap() else { return };
    let Some((url, mut conn)) = wal::connect().await else {
        return;
    };
    let t = wal::name("kr");
    let qualified = format!("public.{t}");
    wal::exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id int PRIMARY KEY);\nINSERT INTO {t} SELECT generate_series(1, 1000)"),
    )
    .await;
    // Two partitions, the key spreading the rows over both.
    let publish_state = ObjectSink::memory();
    let publish = || {
        Pipeline::builder("publish")
            .extractor(wal::reader(
                &url,
                &t,
                &[&qualified],
                |c: PostgresCdcConfig| c.with_publication(&t),
            ))
            .batch_sink(
                KafkaSink::new(
                    KafkaSinkConfig::new(KafkaClientConfig::new(&servers), &t)
                        .with_topic_creation(Some((2, 1))),
                )
                .unwrap(),
            )
            .state(ObjectStateStore::new(publish_state.clone(), "_state"))
            .build()
            .unwrap()
    };
    let report = publish().run().await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.error);
    let topic = format!("{t}.{qualified}");
    let member = |id: &str, landing: &ObjectSink| {
        let e = KafkaExtractor::new(
            KafkaConfig::new(
                KafkaClientConfig::new(&servers),
                format!("{t}-g"),
                [topic.as_str()],
            )
            .with_instance_id(id)
            .with_batching(50, Duration::from_millis(50)),
        )
        .unwrap();
        let stop = tributary::CancellationToken::new();
        let p = Pipeline::builder(format!("land-{id}"))
            .extractor(e)
            .stop(stop.clone())
            .sink(landing.clone())
            .state(ObjectStateStore::new(landing.clone(), "_state"))
            .options(PipelineOptions::new().with_commit_interval(Duration::from_millis(100)))
            .build()
            .unwrap();
        (tokio::spawn(async move { p.run().await }), stop)
    };
    let (a_sink, b_sink) = (ObjectSink::memory(), ObjectSink::memory());
    let (a, a_stop) = member("a", &a_sink);
    // The first member owns both partitions and lands the first half; then a second
    // member joins, the group rebalances, and the second half arrives.
    for _ in 0..300 {
        if landed_ids(&a_sink).await.len() >= 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (b, b_stop) = member("b", &b_sink);
    tokio::time::sleep(Duration::from_secs(8)).await;
    wal::exec(
        &mut conn,
        &format!("INSERT INTO {t} SELECT generate_series(1001, 2000)"),
    )
    .await;
    let report = publish().run().await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.error);
    let everything = || async {
        let mut all = landed_ids(&a_sink).await;
        all.extend(landed_ids(&b_sink).await);
        all.sort();
        all
    };
    for _ in 0..600 {
        let mut all = everything().await;
        all.dedup();
        if all.len() >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a_stop.cancel();
    b_stop.cancel();
    let (ra, rb) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(ra.outcome, Outcome::Succeeded, "{:?}", ra.error);
    assert_eq!(rb.outcome, Outcome::Succeeded, "{:?}", rb.error);
    let mut all = everything().await;
    let total = all.len();
    all.dedup();
    assert_eq!(
        all,
        (1..=2000).collect::<Vec<i64>>(),
        "every row landed by one member or the other"
    );
    eprintln!(
        "a: {} rows, b: {} rows, {} read twice around the rebalance",
        ra.rows,
        rb.rows,
        total - all.len()
    );
    assert!(
        rb.rows > 0 && ra.rows > 1000,
        "the rebalance gave the second member a partition: a {} b {}",
        ra.rows,
        rb.rows
    );
    // Each run ends with the checkpoint of what it committed: its rows are its landing's.
    assert_eq!(ra.rows as usize, landed_ids(&a_sink).await.len());
    assert_eq!(rb.rows as usize, landed_ids(&b_sink).await.len());
    assert!(
        matches!(ra.checkpoint_to, Some(Checkpoint::Offsets { .. })),
        "{:?}",
        ra.checkpoint_to
    );
    wal::cleanup(&mut conn, &t).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_a_timely_typed_error_without_the_password() {
    use std::time::{Duration, Instant};
    // A port where nothing listens, and credentials that must never be shown.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = KafkaClientConfig::new(format!("127.0.0.1:{port}"))
        .with_sasl_plain("app", "sentinel-pw-8c1f")
        .with_timeout(Duration::from_secs(2));
    assert!(!format!("{client:?}").contains("sentinel-pw-8c1f"));
    let e = KafkaExtractor::new(KafkaConfig::new(client.clone(), "g", ["t"]).until_current_end())
        .unwrap();
    assert!(!format!("{e:?}").contains("sentinel-pw-8c1f"));
    let started = Instant::now();
    let err = e.check().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("sentinel-pw-8c1f"), "{shown}");
    let sink = KafkaSink::new(KafkaSinkConfig::new(client, "p")).unwrap();
    assert!(!format!("{sink:?}").contains("sentinel-pw-8c1f"));
    let err = tributary::BatchSink::check(&sink).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("sentinel-pw-8c1f"));
    // A stop-at-end run against it ends with the same kind of error, not a hang.
    let started = Instant::now();
    let mut s = e.extract(None).await.unwrap();
    let r = futures::StreamExt::next(&mut s).await;
    assert!(matches!(r, Some(Err(ref e)) if e.is_retryable()), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// A broker that requires SASL (SCRAM-SHA-512) over TLS (`scripts/services.sh`: a
/// second tansu with `--authentication` behind a TLS terminator, its certificate from a
/// CA the client is given): our WAL CDC published and read back through it lands the
/// rows; a wrong password, no TLS, or an unknown CA is refused with a typed error that
/// never shows the password.
#[tokio::test]
async fn sasl_scram_over_tls_round_trip_and_bad_credentials_are_refused() {
    use std::time::Duration;
    use tributary::BatchSink;
    let Some(servers) = common::service(
        "TRIBUTARY_TEST_KAFKA_SECURE_BOOTSTRAP",
        "Kafka-protocol broker with SASL and TLS",
    ) else {
        return;
    };
    let ca = std::env::var("TRIBUTARY_TEST_KAFKA_SECURE_CA").unwrap();
    let user = std::env::var("TRIBUTARY_TEST_KAFKA_USER").unwrap();
    let password = std::env::var("TRIBUTARY_TEST_KAFKA_PASSWORD").unwrap();
    let Some((url, mut conn)) = wal::connect().await else {
        return;
    };
    let client = |pw: &str, ca: Option<&str>| {
        KafkaClientConfig::new(&servers)
            .with_sasl_plain(&user, pw)
            .with_setting("sasl.mechanisms", "SCRAM-SHA-512")
            .with_tls(ca)
            .with_timeout(Duration::from_secs(5))
    };
    let pw = password.clone();
    let refused = move |c: KafkaClientConfig, what: &'static str| {
        let pw = pw.clone();
        async move {
            let sink = KafkaSink::new(KafkaSinkConfig::new(c, "x")).unwrap();
            let e = sink.check().await.expect_err(what);
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("wrong-pw-5d2e"), "{what}: {shown}");
            assert!(!shown.contains(&pw), "{what}: {shown}");
        }
    };
    refused(client("wrong-pw-5d2e", Some(&ca)), "a wrong password").await;
    refused(
        KafkaClientConfig::new(&servers)
            .with_sasl_plain(&user, &password)
            .with_setting("sasl.mechanisms", "SCRAM-SHA-512")
            .with_timeout(Duration::from_secs(5)),
        "SASL without TLS to a TLS port",
    )
    .await;
    refused(client(&password, None), "a certificate from an unknown CA").await;

    // SASL/PLAIN, with_sasl_plain's own mechanism, reaches the broker, which offers only
    // SCRAM (tansu logs `NoSharedMechanism`): a typed error, not a hang or a leak.
    refused(
        KafkaClientConfig::new(&servers)
            .with_sasl_plain(&user, &password)
            .with_tls(Some(&ca))
            .with_timeout(Duration::from_secs(5)),
        "a mechanism the broker does not offer",
    )
    .await;

    // The same settings from pipeline.conf's [kafka] section reach the broker.
    let conf = tributary::config::PipelineConfig::parse(
        &format!(
            "[kafka]\nbootstrap_servers = {servers}\nsecurity_protocol = sasl_ssl\n\
             sasl_mechanism = scram-sha-512\nsasl_username = {user}\nsasl_password = {password}\n\
             ssl_ca_location = {ca}\ntimeout = 5s\n"
        ),
        "pipeline.conf",
        |_| None,
    )
    .unwrap();
    let from_conf =
        KafkaSink::new(KafkaSinkConfig::new(conf.kafka_client().unwrap(), "x")).unwrap();
    from_conf
        .check()
        .await
        .expect("pipeline.conf's SASL_SSL settings connect");
    assert!(!format!("{conf:?} {from_conf:?}").contains(&password));

    let good = client(&password, Some(&ca));
    let t = wal::name("ksec");
    wal::exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, v text);
INSERT INTO {t} VALUES (1, 'one'), (2, 'two')"
        ),
    )
    .await;
    let state = ObjectSink::memory();
    let report = Pipeline::builder("publish-secure")
        .extractor(wal::reader(
            &url,
            &t,
            &[t.as_str()],
            |c: PostgresCdcConfig| c.with_publication(&t),
        ))
        .batch_sink(KafkaSink::new(KafkaSinkConfig::new(good.clone(), &t)).unwrap())
        .state(ObjectStateStore::new(state.clone(), "_state"))
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.error);
    let reader = KafkaExtractor::new(
        KafkaConfig::new(good, format!("{t}-g"), [format!("{t}.public.{t}")]).until_current_end(),
    )
    .unwrap();
    let mut got = lines(&drain(&reader, None).await);
    got.sort();
    assert_eq!(
        got,
        [
            (format!("public.{t}"), "snapshot|1|one".to_string()),
            (format!("public.{t}"), "snapshot|2|two".to_string()),
        ]
    );
    wal::cleanup(&mut conn, &t).await;
    wal::exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[test]
fn bad_settings_are_configuration_errors() {
    let c = KafkaClientConfig::new("127.0.0.1:9092");
    let e =
        KafkaExtractor::new(KafkaConfig::new(c.clone(), "g", Vec::<String>::new())).unwrap_err();
    assert!(e.to_string().contains("no topics"), "{e}");
    let e = KafkaExtractor::new(KafkaConfig::new(c.clone(), " ", ["t"])).unwrap_err();
    assert!(e.to_string().contains("group id"), "{e}");
    let e =
        KafkaSink::new(KafkaSinkConfig::new(c, "p").with_compression("snappy-ish")).unwrap_err();
    assert!(e.to_string().contains("compression"), "{e}");
}

#[tokio::test]
async fn many_tables_on_one_topic_or_by_pattern_and_tombstones_as_deletes() {
    use tributary::kafka::Tombstones;
    let Some(servers) = bootstrap() else { return };
    let Some((url, mut conn)) = wal::connect().await else {
        return;
    };
    let (a, b) = (wal::name("ka"), wal::name("kb"));
    wal::exec(
        &mut conn,
        &format!(
            "CREATE TABLE {a} (id int PRIMARY KEY, v text);\nCREATE TABLE {b} (id int PRIMARY KEY);\n\
             INSERT INTO {a} VALUES (1, 'one'), (2, 'two');\nINSERT INTO {b} VALUES (10)"
        ),
    )
    .await;
    let slot = wal::name("kab");
    let tables = [format!("public.{a}"), format!("public.{b}")];
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    let state = ObjectSink::memory();
    // Every table on one topic, and again one topic per table.
    let publish = |template: &'static str| {
        Pipeline::builder(format!("publish-{template}"))
            .extractor(wal::reader(&url, &slot, &tables, |c: PostgresCdcConfig| {
                c.with_publication(&slot)
            }))
            .batch_sink(
                KafkaSink::new(
                    KafkaSinkConfig::new(KafkaClientConfig::new(&servers), &slot)
                        .with_topic_template(template),
                )
                .unwrap(),
            )
            .state(ObjectStateStore::new(state.clone(), "_state"))
            .build()
            .unwrap()
    };
    let r = publish("{prefix}.all").run().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    wal::exec(&mut conn, &format!("DELETE FROM {a} WHERE id = 2")).await;
    let r = publish("{prefix}.all").run().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let read = |topics: Vec<String>, group: &str, t: Tombstones| {
        KafkaExtractor::new(
            KafkaConfig::new(KafkaClientConfig::new(&servers), group, topics)
                .until_current_end()
                .with_tombstones(t),
        )
        .unwrap()
    };
    let one = lines(
        &drain(
            &read(
                vec![format!("{slot}.all")],
                &format!("{slot}-1"),
                Tombstones::Skip,
            ),
            None,
        )
        .await,
    );
    let mut sorted = one.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            // REPLICA IDENTITY DEFAULT: a delete carries the key only.
            (format!("public.{a}"), "delete|2|".to_string()),
            (format!("public.{a}"), "snapshot|1|one".to_string()),
            (format!("public.{a}"), "snapshot|2|two".to_string()),
            (format!("public.{b}"), "snapshot|10".to_string()),
        ]
    );
    // The tombstone after the delete, read as a delete of its key.
    let with = lines(
        &drain(
            &read(
                vec![format!("{slot}.all")],
                &format!("{slot}-2"),
                Tombstones::AsDelete,
            ),
            None,
        )
        .await,
    );
    assert_eq!(with.len(), 5, "{with:#?}");
    assert_eq!(
        with.last().unwrap(),
        &(format!("public.{a}"), "delete|2|".to_string())
    );
    // One topic per table, read by a pattern.
    wal::exec(&mut conn, &format!("INSERT INTO {b} VALUES (11)")).await;
    let r = publish("{prefix}.per.{table}").run().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let by_pattern = read(
        vec![format!("^{slot}\\.per\\..*")],
        &format!("{slot}-3"),
        Tombstones::Skip,
    );
    // (A pipeline of another name: its own checkpoint, so a new snapshot.)
    let mut got = lines(&drain(&by_pattern, None).await);
    got.sort();
    assert_eq!(
        got,
        [
            (format!("public.{a}"), "snapshot|1|one".to_string()),
            (format!("public.{b}"), "snapshot|10".to_string()),
            (format!("public.{b}"), "snapshot|11".to_string()),
        ]
    );
    wal::cleanup(&mut conn, &slot).await;
}

/// Whether a unit's messages are in its topic: any message there whose
/// `tributary.unit` header is the unit's id (`<topic>@<run>/<part>`).
struct TopicProbe {
    servers: String,
}

#[tributary::async_trait]
impl tributary::testing::BatchProbe for TopicProbe {
    async fn visible(&self, id: &str) -> tributary::Result<bool> {
        use rdkafka::Message;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Headers;
        let topic = id.split('@').next().unwrap_or_default().to_string();
        let (servers, id) = (self.servers.clone(), id.to_string());
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("group.id", format!("probe-{}", std::process::id()))
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let timeout = std::time::Duration::from_secs(10);
            let (_, high) = c.fetch_watermarks(&topic, 0, timeout).unwrap();
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let mut read = 0;
            while read < high {
                let m = c
                    .poll(timeout)
                    .expect("a message before the high watermark")
                    .unwrap();
                read = m.offset() + 1;
                let unit = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "tributary.unit")
                        .and_then(|h| h.value.map(<[u8]>::to_vec))
                });
                if unit.as_deref() == Some(id.as_bytes()) {
                    return true;
                }
            }
            false
        })
        .await
        .map_err(|e| tributary::Error::connector("probe", e, false))
    }
}

/// `testing::batch_sink_suite` on the Kafka sink: a topic shows messages before the
/// commit (it declares no atomic visibility), so the suite checks that each committed
/// unit's messages are in its topic, ids are distinct, and another schema is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_batch_sink_suite_passes_on_the_kafka_sink() {
    let Some(servers) = bootstrap() else { return };
    let prefix = wal::name("bss");
    let config = KafkaSinkConfig::new(KafkaClientConfig::new(&servers), &prefix);
    let topic = config.topic_for("t1");
    let sink = KafkaSink::new(config).unwrap();
    assert!(!tributary::BatchSink::capabilities(&sink).atomic_visibility);
    let probe = TopicProbe { servers };
    tributary::testing::batch_sink_suite(&sink, &probe, "suite").await;
    // The probe tells units apart: one no writer published is not in the topic.
    let none = format!("{topic}@none/0");
    assert!(
        !tributary::testing::BatchProbe::visible(&probe, &none)
            .await
            .unwrap()
    );
}
