//! Crash trials (issue 8, item 13): a child process runs a 200k-row incremental extract
//! with small parts and is killed with SIGKILL at seeded random moments, then rerun to
//! completion. After every kill and at the end the parent checks what a loader relies on:
//!
//! - every final object parses whole and matches its manifest entry (rows, bytes, sha256);
//! - the saved checkpoint is never ahead of the objects that manifests list;
//! - after the rerun, the objects hold every source row, and duplicates are bounded by one
//!   part per kill (the part between its commit and its checkpoint) and the rows of one
//!   batch (a part closed mid-batch carries the checkpoint of the batch before);
//! - no staged or partial file is where a folder reader would look;
//! - after the rerun no data object is outside every manifest (an object committed past
//!   the saved checkpoint is removed by the run that resumes), and the state lists no
//!   leftover.
//!
//! On a local folder, the S3-compatible server and Azurite, with a key column and without one
//! (on a table whose rows repeat: groups of identical rows at each cursor value).

use crate::common;

use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tributary::sources::sql::{Cursor, SqlSource};
use tributary::sources::sqlite::SqliteExtractor;
use tributary::stores::{ObjectSink, ObjectStateStore, STAGING_DIR, StateStore};
use tributary::*;

const ROWS: usize = 200_000;
const PART_ROWS: u64 = 10_000;
/// Rows per source batch. A part closed mid-batch (exact rotation) carries the checkpoint
/// of the batch before, so a rerun re-reads that batch's first rows too.
const BATCH_ROWS: u64 = 1000;
/// Rows sharing one cursor value, so checkpoints often fall inside a group: under the
/// seen-list limit without a key, past it with one (a keyset position).
fn group(keyed: bool) -> usize {
    if keyed {
        tributary::testing::KEYED_SEEN_LIMIT * 5 / 2
    } else {
        700
    }
}

/// The source rows as the CSV lines the pipeline writes. Without a key the table is
/// `(user_id, event, ts)` and rows repeat within a group; with one, `id` comes first.
fn source_lines(keyed: bool) -> Vec<(String, String)> {
    let group = group(keyed);
    (0..ROWS)
        .map(|i| {
            let ts = format!(
                "2020-01-01 {:02}:{:02}:{:02}",
                i / group / 3600,
                i / group / 60 % 60,
                i / group % 60
            );
            let user = i % 5;
            let line = if keyed {
                format!("{i}|{user}|click|{ts}")
            } else {
                format!("{user}|click|{ts}")
            };
            (ts, line)
        })
        .collect()
}

async fn make_db(path: &std::path::Path, keyed: bool) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let cols = if keyed {
        "id INTEGER PRIMARY KEY, user_id INTEGER, event TEXT, ts TEXT"
    } else {
        "user_id INTEGER, event TEXT, ts TEXT"
    };
    sqlx::query(&format!("CREATE TABLE events ({cols})"))
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for (i, (ts, _)) in source_lines(keyed).into_iter().enumerate() {
        let q = if keyed {
            sqlx::query("INSERT INTO events VALUES (?1, ?2, 'click', ?3)")
                .bind(i as i64)
                .bind((i % 5) as i64)
                .bind(ts)
        } else {
            sqlx::query("INSERT INTO events VALUES (?1, 'click', ?2)")
                .bind((i % 5) as i64)
                .bind(ts)
        };
        q.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

/// A target is a local folder or `<cloud>:<prefix>` (`s3:`, `azure:`, `gcs:`).
fn sink_for(target: &str) -> ObjectSink {
    if let Some((name, prefix)) = target.split_once(':')
        && let Some(cloud) = common::Cloud::from_name(name)
    {
        return cloud
            .sink(prefix)
            .expect("the store is configured in the parent");
    }
    ObjectSink::local(target).unwrap()
}

fn pipeline(db: &str, target: &str, keyed: bool) -> Pipeline {
    let mut cursor = Cursor::new("ts");
    if keyed {
        cursor = cursor.with_key(["id"]);
    }
    let sink = sink_for(target);
    Pipeline::builder("events")
        .extractor(
            SqliteExtractor::connect_lazy(
                &format!("sqlite://{db}?mode=ro"),
                SqlSource::table("events")
                    .incremental(cursor)
                    .with_batch_rows(BATCH_ROWS as usize),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink, "_state"))
        .options(PipelineOptions::new().with_part_max_rows(PART_ROWS))
        .build()
        .unwrap()
}

/// The child: one run to the end (or until killed).
#[tokio::test]
#[ignore = "run as a child process by the crash trials"]
async fn crash_trial_child() {
    let db = std::env::var("TRIBUTARY_TRIAL_DB").expect("set by the parent");
    let target = std::env::var("TRIBUTARY_TRIAL_TARGET").expect("set by the parent");
    let keyed = std::env::var("TRIBUTARY_TRIAL_KEYED").is_ok_and(|v| v == "1");
    let report = pipeline(&db, &target, keyed)
        .run()
        .await
        .into_result()
        .unwrap();
    assert!(report.succeeded());
}

fn spawn_child(db: &str, target: &str, keyed: bool) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_trials::crash_trial_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("TRIBUTARY_TRIAL_DB", db)
        .env("TRIBUTARY_TRIAL_TARGET", target)
        .env("TRIBUTARY_TRIAL_KEYED", if keyed { "1" } else { "0" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

type Multiset = HashMap<String, i64>;

fn count(lines: impl IntoIterator<Item = String>) -> Multiset {
    let mut m = Multiset::new();
    for l in lines {
        *m.entry(l).or_insert(0) += 1;
    }
    m
}

/// What the store holds: the lines of every final data object, and those of the objects
/// some manifest lists (each checked whole against its entry).
struct Landed {
    all: Vec<String>,
    listed: Vec<String>,
    /// Data objects no manifest lists (orphans).
    unlisted: Vec<String>,
}

async fn inspect(sink: &ObjectSink, keyed: bool) -> Landed {
    let keys = sink.list("").await.unwrap();
    let mut entries: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for k in keys.iter().filter(|k| k.ends_with(".manifest.json")) {
        let m: serde_json::Value = serde_json::from_slice(&sink.read(k).await.unwrap())
            .unwrap_or_else(|e| panic!("manifest {k} does not parse: {e}"));
        for o in m["objects"].as_array().unwrap() {
            entries.insert(o["key"].as_str().unwrap().to_string(), o.clone());
        }
    }
    let fields = if keyed { 4 } else { 3 };
    let (mut all, mut listed, mut unlisted) = (vec![], vec![], vec![]);
    for k in &keys {
        assert!(
            k.ends_with(".csv") || k.ends_with(".json"),
            "a file that is neither data nor manifest nor state: {k}"
        );
        if !k.ends_with(".csv") {
            continue;
        }
        let body = sink.read(k).await.unwrap();
        assert!(body.ends_with(b"\n"), "{k} does not end with a whole line");
        let text = String::from_utf8(body.to_vec()).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        for l in &lines {
            assert_eq!(l.split('|').count(), fields, "{k}: broken line {l:?}");
        }
        if let Some(e) = entries.get(k) {
            assert_eq!(
                e["rows"],
                lines.len() as u64,
                "{k} rows differ from its manifest"
            );
            assert_eq!(
                e["bytes"],
                body.len() as u64,
                "{k} size differs from its manifest"
            );
            assert_eq!(
                e["sha256"].as_str().unwrap(),
                hex::encode(sha2::Sha256::digest(&body)),
                "{k} checksum differs from its manifest"
            );
            listed.extend(lines.iter().cloned());
        } else {
            unlisted.push(k.clone());
        }
        all.extend(lines);
    }
    for k in entries.keys() {
        assert!(
            keys.contains(k),
            "a manifest lists {k}, which is not in the store"
        );
    }
    Landed {
        all,
        listed,
        unlisted,
    }
}

/// `have` holds every row of `want` at least as often.
fn covers(have: &Multiset, want: &Multiset) -> Result<(), String> {
    for (line, n) in want {
        let h = have.get(line).copied().unwrap_or(0);
        if h < *n {
            return Err(format!("{line:?}: {h} landed, {n} in the source"));
        }
    }
    Ok(())
}

/// The saved checkpoint is not ahead of the objects manifests list: every source row
/// before its cursor value (or its keyset position) is listed, and at least as many rows
/// at its value as its seen list says.
async fn check_checkpoint(sink: &ObjectSink, source: &[(String, String)], landed: &Landed) -> bool {
    let saved = ObjectStateStore::new(sink.clone(), "_state")
        .load("events")
        .await
        .unwrap();
    // Nothing saved yet, or only the record of a first commit under way.
    let Some(saved) = saved.filter(|s| s.value.checkpoint.is_some()) else {
        return false;
    };
    let Some(Checkpoint::Watermark(w)) = saved.value.checkpoint else {
        panic!("unexpected checkpoint {:?}", saved.value.checkpoint)
    };
    let CursorValue::Text(at) = &w.cursor else {
        panic!("unexpected cursor {:?}", w.cursor)
    };
    // With a keyset position, the rows at the value up to its key are landed too.
    let upto = match w.after.as_deref() {
        Some([CursorValue::Int(k)]) => Some(*k),
        None => None,
        Some(other) => panic!("unexpected keyset position {other:?}"),
    };
    let id = |l: &str| l.split('|').next().unwrap().parse::<i64>().unwrap();
    let before = count(
        source
            .iter()
            .filter(|(ts, l)| ts < at || (ts == at && upto.is_some_and(|k| id(l) <= k)))
            .map(|(_, l)| l.clone()),
    );
    let listed = count(landed.listed.iter().cloned());
    if let Err(e) = covers(&listed, &before) {
        panic!("checkpoint at {at} is ahead of the manifests: {e}");
    }
    let at_value = landed
        .listed
        .iter()
        .filter(|l| l.ends_with(at.as_str()))
        .count();
    assert!(
        at_value >= w.seen.len(),
        "checkpoint says {} rows at {at} are landed, manifests list {at_value}",
        w.seen.len()
    );
    upto.is_some()
}

/// No partial or staged file where a folder reader would look.
fn check_folder(dir: &std::path::Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.ends_with(STAGING_DIR) {
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                !name.contains('#') && !name.starts_with('.'),
                "a staged file beside the data: {p:?}"
            );
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
}

/// Trials on a local folder (`cloud` = `None`) or on one of the cloud servers.
async fn trials(cloud: Option<common::Cloud>, keyed: bool, seed: u64) {
    if cloud.is_some_and(|c| c.options().is_none()) {
        return;
    }
    let store = cloud.map_or("local", |c| c.name());
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("source.db");
    make_db(&db, keyed).await;
    let db = db.display().to_string();
    let source = source_lines(keyed);
    let want = count(source.iter().map(|(_, l)| l.clone()));

    let mut rng = common::Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut kills, mut trial, mut keysets, mut unfinished) = (0u64, 0, 0, 0);
    // Objects no manifest listed right after a kill (committed past the saved
    // checkpoint), all of which the next run must remove.
    let mut orphans_after_kills = 0;
    while kills < 20 && Instant::now() < deadline {
        trial += 1;
        let local = work.path().join(format!("out-{trial}"));
        let target = match cloud {
            Some(c) => format!("{}:{}", c.name(), common::unique("trial")),
            None => local.display().to_string(),
        };
        let sink = sink_for(&target);
        let mut trial_kills = 0;
        // Up to three kills into the same target, each resuming the previous one.
        for _ in 0..3 {
            let mut child = spawn_child(&db, &target, keyed);
            std::thread::sleep(Duration::from_millis(150 + rng.below(1500)));
            if child.try_wait().unwrap().is_some() {
                break; // finished before the kill
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            trial_kills += 1;
            let landed = inspect(&sink, keyed).await;
            orphans_after_kills += landed.unlisted.len();
            if check_checkpoint(&sink, &source, &landed).await {
                keysets += 1;
            }
            if cloud.is_none() {
                check_folder(&local);
            }
        }
        // The rerun lands the rest.
        let status = spawn_child(&db, &target, keyed).wait().unwrap();
        assert!(status.success(), "the rerun failed: {status}");
        let mut landed = inspect(&sink, keyed).await;
        check_checkpoint(&sink, &source, &landed).await;
        if cloud.is_none() {
            check_folder(&local);
        } else {
            // The killed children's unfinished uploads are listed (at most the part
            // being written and the one committing, per kill), and cleaning them
            // touches no committed object.
            let staged = sink.list_staged().await.unwrap();
            assert!(
                staged.len() as u64 <= 2 * trial_kills,
                "{} unfinished uploads after {trial_kills} kills",
                staged.len()
            );
            assert_eq!(
                sink.clean_staged(Duration::ZERO).await.unwrap(),
                staged.len()
            );
            unfinished += staged.len();
            assert!(sink.list_staged().await.unwrap().is_empty());
            landed = inspect(&sink, keyed).await;
        }
        // Crash-complete manifests: after the rerun every data object is in a manifest,
        // so a reader of the folder counts what a reader of the manifests counts.
        assert_eq!(
            landed.unlisted,
            Vec::<String>::new(),
            "trial {trial}: objects in no manifest after {trial_kills} kills and a rerun"
        );
        let state = ObjectStateStore::new(sink.clone(), "_state")
            .load("events")
            .await
            .unwrap()
            .unwrap();
        assert!(
            state.value.leftover.is_empty(),
            "{:?}",
            state.value.leftover
        );
        for (name, lines) in [("manifest-listed", &landed.listed), ("all", &landed.all)] {
            if let Err(e) = covers(&count(lines.iter().cloned()), &want) {
                panic!(
                    "trial {trial} ({trial_kills} kills): a row was lost in {name} objects: {e}"
                );
            }
            let extra = lines.len() as u64 - ROWS as u64;
            assert!(
                extra <= trial_kills * (PART_ROWS + BATCH_ROWS),
                "trial {trial}: {extra} duplicate rows in {name} objects after {trial_kills} kills"
            );
        }
    }
    eprintln!(
        "crash trials ({store}, keyed={keyed}): {kills} SIGKILLs over {trial} trials, \
         {keysets} checkpoints at a keyset position, {unfinished} unfinished uploads \
         found and aborted, {orphans_after_kills} objects in no manifest right after a kill \
         and 0 after the reruns, every check held"
    );
    if cloud.is_some() {
        assert!(unfinished > 0, "no kill left an unfinished upload to find");
    }
    if keyed {
        assert!(keysets > 0, "no kill found a keyset position to check");
    }
    assert!(
        kills >= 20,
        "only {kills} kills landed mid-run in the time allowed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_local_folder_without_a_key_on_identical_rows() {
    trials(None, false, 0x9e37_79b9_7f4a_7c15).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_local_folder_with_a_key() {
    trials(None, true, 0xd1b5_4a32_d192_ed03).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_s3_without_a_key_on_identical_rows() {
    trials(Some(common::Cloud::S3), false, 0x8cb9_2ba7_2f3d_8dd7).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_s3_with_a_key() {
    trials(Some(common::Cloud::S3), true, 0x2545_f491_4f6c_dd1d).await;
}

#[cfg(feature = "azure")]
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_azurite_without_a_key_on_identical_rows() {
    trials(Some(common::Cloud::Azure), false, 0x94d0_49bb_1331_11eb).await;
}

#[cfg(feature = "azure")]
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_azurite_with_a_key() {
    trials(Some(common::Cloud::Azure), true, 0xbf58_476d_1ce4_e5b9).await;
}
