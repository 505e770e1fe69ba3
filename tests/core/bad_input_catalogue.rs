//! The bad-input catalogue (issue 8, item 14): one table of bad configurations, URLs,
//! credentials, unreachable and silent servers, missing databases/tables/columns,
//! unsupported types, extreme values, and unwritable or full stores. For each case:
//! the error variant, a message that names the cause, no secret in the message, its
//! `Debug` form or any log line, and nothing left at a final key by a run that failed.
//!
//! Every password, secret key and credential in these inputs is [`SENTINEL`].

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tributary::config::PipelineConfig;
use tributary::sources::mysql::MySqlExtractor;
use tributary::sources::postgres::PostgresExtractor;
use tributary::sources::sql::{Cursor, SqlSource, Timeouts};
use tributary::sources::sqlite::SqliteExtractor;
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::*;

const SENTINEL: &str = "Sentinel-pw-8Xq2";

fn no_env(_: &str) -> Option<String> {
    None
}

fn variant(e: &Error) -> &'static str {
    match e {
        Error::Config { .. } => "Config",
        Error::Connection { .. } => "Connection",
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::NotFound { .. } => "NotFound",
        Error::Prerequisite { .. } => "Prerequisite",
        Error::PositionLost { .. } => "PositionLost",
        Error::Type { .. } => "Type",
        Error::Query { .. } => "Query",
        Error::Storage { .. } => "Storage",
        Error::Conflict { .. } => "Conflict",
        Error::Validation { .. } => "Validation",
        Error::Cancelled => "Cancelled",
        _ => "other",
    }
}

/// Log lines written by the code under test, to search for secrets.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A TCP port that accepts connections and never says a word.
async fn silent_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn short() -> Timeouts {
    Timeouts::new().with_connect(Duration::from_secs(2))
}

fn parse(text: &str) -> Result<PipelineConfig> {
    PipelineConfig::parse(&text.replace("$PW", SENTINEL), "p.conf", no_env)
}

/// A run of `e` into a fresh local folder: its error, after checking that nothing is at a
/// final key, nothing is staged, and no checkpoint was saved.
async fn via_pipeline(e: impl Extractor) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let report = Pipeline::builder("bad")
        .extractor(e)
        .sink(sink.clone())
        .state(state.clone())
        .build()
        .unwrap()
        .run()
        .await;
    let data: Vec<String> = sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| !k.ends_with(".manifest.json"))
        .collect();
    assert!(data.is_empty(), "a failed run left {data:?}");
    assert!(sink.list_staged().await.unwrap().is_empty());
    assert!(state.load("bad").await.unwrap().is_none());
    assert_eq!(report.outcome, Outcome::Failed);
    report.error.expect("a failed run has an error")
}

fn err<T: std::fmt::Debug>(r: Result<T>) -> Error {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn pg_url() -> Option<String> {
    common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL")
}

fn my_url() -> Option<String> {
    common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB")
}

/// `url` with its user and password replaced.
fn with_user(url: &str, user: &str, password: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username(user).unwrap();
    u.set_password(Some(password)).unwrap();
    u.to_string()
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap()
}

fn pg(url: &str, source: SqlSource) -> PostgresExtractor {
    PostgresExtractor::connect_lazy(url, source)
        .unwrap()
        .with_timeouts(short())
}

fn my(url: &str, source: SqlSource) -> MySqlExtractor {
    MySqlExtractor::connect_lazy(url, source)
        .unwrap()
        .with_timeouts(short())
}

async fn pg_exec(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    c.execute(sql).await.unwrap();
}

/// A tmpfs of 256 KiB, unmounted on drop.
struct TinyDisk(tempfile::TempDir);

impl TinyDisk {
    fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(TinyDisk(dir))
        } else if common::in_ci() {
            panic!("cannot mount a tmpfs for the full-store case (CI runs as root)");
        } else {
            eprintln!("SKIPPED: the full-store case needs root to mount a tmpfs");
            None
        }
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

struct Case {
    name: &'static str,
    variant: &'static str,
    /// Lowercase fragments the message must contain (it names the cause).
    needles: Vec<String>,
    error: Error,
}

fn case(name: &'static str, variant: &'static str, needles: &[&str], error: Error) -> Case {
    Case {
        name,
        variant,
        needles: needles.iter().map(|n| n.to_lowercase()).collect(),
        error,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_input_is_a_typed_error_naming_its_cause_without_secrets() {
    let logs = Logs::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let (Some(pg_url), Some(my_url)) = (pg_url(), my_url()) else {
        return;
    };
    let s3 = common::s3_options();
    let mut cases = vec![];

    // ---------------------------------------------------------------- pipeline.conf
    cases.push(case(
        "unknown section",
        "Config",
        &["unknown section [mysql]"],
        err(parse("[mysql]\nhost = h\npassword = $PW\n")),
    ));
    cases.push(case(
        "unknown key",
        "Config",
        &["unknown key \"pasword\"", "[mysql_config]"],
        err(parse("[mysql_config]\nhostname = h\npasword = $PW\n")),
    ));
    cases.push(case(
        "duplicate key",
        "Config",
        &["\"password\" is given twice"],
        err(parse(
            "[mysql_config]\nhostname = h\npassword = a\npassword = $PW\n",
        )),
    ));
    cases.push(case(
        "key outside a section",
        "Config",
        &["outside any section"],
        err(parse("password = $PW\n[store]\nurl = file:///tmp/x\n")),
    ));
    cases.push(case(
        "unclosed section header swallowing a password",
        "Config",
        &["section header that is not closed"],
        err(parse(
            "[mysql_config\nhostname = h\npassword = $PW\n[store]\nurl = file:///tmp/x\n",
        )),
    ));
    cases.push(case(
        "unclosed section header at the end",
        "Config",
        &["not valid ini"],
        err(parse(
            "[store]\nurl = file:///tmp/x\n[mysql_config\npassword = $PW\n",
        )),
    ));
    cases.push(case(
        "port not a number",
        "Config",
        &["port \"54x\""],
        err(
            parse("[postgres_config]\nhost=h\nport=54x\nusername=u\npassword=$PW\ndatabase=d\n")
                .unwrap()
                .postgres(),
        ),
    ));
    cases.push(case(
        "port out of range",
        "Config",
        &["port \"70000\""],
        err(
            parse("[postgres_config]\nhost=h\nport=70000\nusername=u\npassword=$PW\ndatabase=d\n")
                .unwrap()
                .postgres(),
        ),
    ));
    cases.push(case(
        "host with a port in it",
        "Config",
        &["host \"127.0.0.1:5432\"", "port ="],
        err(parse(
            "[postgres_config]\nhost=127.0.0.1:5432\nusername=u\npassword=$PW\ndatabase=d\n",
        )
        .unwrap()
        .postgres()),
    ));
    cases.push(case("host with a path and query in it", "Config", &["hostname", "not a host name"],
        err(parse("[mysql_config]\nhostname=127.0.0.1:5432/test?application_name=x#\nusername=u\npassword=$PW\ndatabase=d\n").unwrap().mysql())));
    cases.push(case(
        "missing key",
        "Config",
        &["missing key \"database\""],
        err(
            parse("[postgres_config]\nhost=h\nusername=u\npassword=$PW\n")
                .unwrap()
                .postgres(),
        ),
    ));
    cases.push(case(
        "missing section",
        "Config",
        &["missing section [mysql_config]"],
        err(parse("[store]\nurl=file:///tmp/x\n").unwrap().mysql()),
    ));
    cases.push(case(
        "store URL of an unknown scheme, with a password",
        "Config",
        &["ftp"],
        err(parse("[store]\nurl = ftp://u:$PW@files.example/x\n")
            .unwrap()
            .store()),
    ));
    cases.push(case(
        "store URL naming a host",
        "Config",
        &["host \"tmp\""],
        err(parse("[store]\nurl = file://tmp/x\n").unwrap().store()),
    ));
    cases.push(case(
        "unknown format",
        "Config",
        &["format \"xml\""],
        err(parse("[store]\nformat = xml\n").unwrap().format()),
    ));
    cases.push(case(
        "zstd level out of range",
        "Config",
        &["zstd:99"],
        err(parse("[store]\ncompression = zstd:99\n")
            .unwrap()
            .compression()),
    ));
    cases.push(case(
        "part_max_rows not a number",
        "Config",
        &["part_max_rows \"lots\""],
        err(parse("[store]\npart_max_rows = lots\n")
            .unwrap()
            .pipeline_options()),
    ));
    cases.push(case(
        "commit_interval not a duration",
        "Config",
        &["commit_interval \"soon\""],
        err(parse("[pipeline]\ncommit_interval = soon\n")
            .unwrap()
            .pipeline_options()),
    ));
    cases.push(case(
        "read_timeout not a duration",
        "Config",
        &["read_timeout \"-5\""],
        err(parse("[postgres_config]\nread_timeout = -5\n")
            .unwrap()
            .timeouts("postgres_config")),
    ));
    cases.push(case(
        "warehouse URL of an unknown kind, with a password",
        "Config",
        &["oracle"],
        err(parse("[warehouse]\nurl = oracle://u:$PW@db.example/x\n")
            .unwrap()
            .warehouse()
            .await),
    ));
    cases.push(case(
        "empty SQL file for the validator",
        "Config",
        &["is empty"],
        {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), "  ;\n").unwrap();
            err(validate::Script::file(f.path()))
        },
    ));

    // ---------------------------------------------------------------- URLs
    cases.push(case(
        "malformed MySQL URL",
        "Config",
        &["invalid url"],
        err(MySqlExtractor::connect_lazy(
            &format!("mysql://root:{SENTINEL}@[bad/test"),
            SqlSource::table("t"),
        )),
    ));
    cases.push(case(
        "PostgreSQL URL with a bad port",
        "Config",
        &["invalid url"],
        err(PostgresExtractor::connect_lazy(
            &format!("postgres://u:{SENTINEL}@h:99999/db"),
            SqlSource::table("t"),
        )),
    ));
    cases.push(case(
        "unknown S3 option",
        "Config",
        &["aws_endpiont"],
        err(ObjectSink::from_url_with_options(
            "s3://bucket",
            &[("aws_endpiont".into(), SENTINEL.into())],
        )),
    ));

    // ---------------------------------------------------------------- credentials
    cases.push(case(
        "MySQL wrong password",
        "PermissionDenied",
        &["access denied"],
        via_pipeline(my(
            &with_user(&my_url, "tributary", SENTINEL),
            SqlSource::table("t"),
        ))
        .await,
    ));
    cases.push(case(
        "MySQL unknown user",
        "PermissionDenied",
        &["access denied", "nobody"],
        via_pipeline(my(
            &with_user(&my_url, "nobody", SENTINEL),
            SqlSource::table("t"),
        ))
        .await,
    ));
    cases.push(case(
        "PostgreSQL unknown role",
        "PermissionDenied",
        &["nobody"],
        via_pipeline(pg(
            &with_user(&pg_url, "nobody", SENTINEL),
            SqlSource::table("t"),
        ))
        .await,
    ));

    // ---------------------------------------------------------------- unreachable, silent, wrong server
    let closed = closed_port();
    cases.push(case(
        "PostgreSQL port closed",
        "Connection",
        &[&format!("127.0.0.1:{closed}")],
        via_pipeline(pg(
            &format!("postgres://u:{SENTINEL}@127.0.0.1:{closed}/db"),
            SqlSource::table("t"),
        ))
        .await,
    ));
    cases.push(case(
        "MySQL port closed",
        "Connection",
        &[&format!("127.0.0.1:{closed}")],
        via_pipeline(my(
            &format!("mysql://u:{SENTINEL}@127.0.0.1:{closed}/db"),
            SqlSource::table("t"),
        ))
        .await,
    ));
    let silent = silent_server().await;
    cases.push(case(
        "PostgreSQL server that never answers",
        "Connection",
        &[&format!("no answer from 127.0.0.1:{silent}"), "postgresql"],
        via_pipeline(pg(
            &format!("postgres://u:{SENTINEL}@127.0.0.1:{silent}/db"),
            SqlSource::table("t"),
        ))
        .await,
    ));
    cases.push(case(
        "MySQL server that never answers",
        "Connection",
        &[&format!("no answer from 127.0.0.1:{silent}"), "mysql"],
        via_pipeline(my(
            &format!("mysql://u:{SENTINEL}@127.0.0.1:{silent}/db"),
            SqlSource::table("t"),
        ))
        .await,
    ));
    let pg_port = port_of(&pg_url);
    let my_port = port_of(&my_url);
    cases.push(case(
        "MySQL config pointed at PostgreSQL",
        "Connection",
        &[&format!("no answer from 127.0.0.1:{pg_port}")],
        via_pipeline(my(
            &format!("mysql://u:{SENTINEL}@127.0.0.1:{pg_port}/test"),
            SqlSource::table("t"),
        ))
        .await,
    ));
    cases.push(case(
        "PostgreSQL config pointed at MySQL",
        "Connection",
        &["not a postgresql server", &format!("127.0.0.1:{my_port}")],
        via_pipeline(pg(
            &format!("postgres://u:{SENTINEL}@127.0.0.1:{my_port}/test"),
            SqlSource::table("t"),
        ))
        .await,
    ));

    // ---------------------------------------------------------------- missing things
    let schema = common::unique("bad").replace('-', "_");
    pg_exec(&pg_url, &format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int, f float8, b bytea);
         INSERT INTO {schema}.t VALUES (1, 'NaN', '\\x00');
         CREATE TABLE {schema}.inf (id int, ts timestamp); INSERT INTO {schema}.inf VALUES (1, 'infinity')")).await;
    let t = format!("{schema}.t");
    let mut missing_db = url::Url::parse(&pg_url).unwrap();
    missing_db.set_path("/no_such_database");
    cases.push(case(
        "PostgreSQL database missing",
        "NotFound",
        &["no_such_database"],
        via_pipeline(pg(missing_db.as_str(), SqlSource::table("t"))).await,
    ));
    cases.push(case(
        "PostgreSQL table missing",
        "NotFound",
        &["no_such_table"],
        via_pipeline(pg(&pg_url, SqlSource::table("no_such_table"))).await,
    ));
    cases.push(case(
        "PostgreSQL column missing",
        "NotFound",
        &["no_such_column"],
        via_pipeline(pg(
            &pg_url,
            SqlSource::table(&t).columns(["id", "no_such_column"]),
        ))
        .await,
    ));
    cases.push(case(
        "PostgreSQL cursor column missing",
        "NotFound",
        &["no_such_cursor"],
        via_pipeline(pg(
            &pg_url,
            SqlSource::table(&t).incremental(Cursor::new("no_such_cursor")),
        ))
        .await,
    ));
    let mut my_missing_db = url::Url::parse(&my_url).unwrap();
    my_missing_db.set_path("/no_such_database");
    cases.push(case(
        "MySQL database missing",
        "NotFound",
        &["no_such_database"],
        via_pipeline(my(my_missing_db.as_str(), SqlSource::table("t"))).await,
    ));
    cases.push(case(
        "MySQL table missing",
        "NotFound",
        &["no_such_table"],
        via_pipeline(my(&my_url, SqlSource::table("no_such_table"))).await,
    ));
    cases.push(case(
        "SQLite table missing",
        "NotFound",
        &["no_such_table"],
        via_pipeline(
            SqliteExtractor::connect_lazy("sqlite::memory:", SqlSource::table("no_such_table"))
                .unwrap(),
        )
        .await,
    ));

    // ---------------------------------------------------------------- types and extreme values
    cases.push(case(
        "NaN float cursor",
        "Type",
        &["cursor column f is nan", "finite"],
        via_pipeline(pg(
            &pg_url,
            SqlSource::table(&t).incremental(Cursor::new("f")),
        ))
        .await,
    ));
    cases.push(case(
        "cursor of a type that cannot be one",
        "Type",
        &["cursor column b", "cannot be a cursor"],
        via_pipeline(pg(
            &pg_url,
            SqlSource::table(&t).incremental(Cursor::new("b")),
        ))
        .await,
    ));
    cases.push(case(
        "infinite timestamp cursor",
        "Type",
        &["column ts", "infinity"],
        via_pipeline(pg(
            &pg_url,
            SqlSource::table(format!("{schema}.inf")).incremental(Cursor::new("ts")),
        ))
        .await,
    ));

    // ---------------------------------------------------------------- stores
    cases.push(case(
        "local store under a file",
        "Storage",
        &["/etc/passwd/tributary"],
        err(ObjectSink::local("/etc/passwd/tributary")),
    ));
    if let Some(disk) = TinyDisk::new() {
        let sink = ObjectSink::local(disk.0.path()).unwrap();
        let rows: Vec<i64> = (0..200_000).collect();
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "id",
            arrow_schema::DataType::Int64,
            false,
        )]));
        let rb = arrow_array::RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow_array::Int64Array::from(rows))],
        )
        .unwrap();
        let report = Pipeline::builder("full")
            .extractor(sources::MemoryExtractor::new(
                "t",
                "s",
                vec![Batch::new(rb)],
            ))
            .sink(sink.clone())
            .build()
            .unwrap()
            .run()
            .await;
        let keys = sink.list("").await.unwrap();
        assert!(
            keys.iter().all(|k| !k.ends_with(".csv")),
            "a full disk left {keys:?}"
        );
        cases.push(case(
            "full local disk",
            "Storage",
            &["no space left"],
            report.error.unwrap(),
        ));
    }
    if let Some((bucket, opts)) = s3.clone() {
        let mut wrong = opts.clone();
        for (k, v) in wrong.iter_mut() {
            if k == "aws_secret_access_key" {
                *v = SENTINEL.into();
            }
        }
        let sink = ObjectSink::from_url_with_options(&format!("s3://{bucket}/x"), &wrong).unwrap();
        cases.push(case(
            "S3 wrong secret key",
            "PermissionDenied",
            &["s3"],
            err(sink.check().await),
        ));
        let sink =
            ObjectSink::from_url_with_options("s3://no-such-bucket-tributary/x", &opts).unwrap();
        cases.push(case(
            "S3 bucket missing",
            "NotFound",
            &["s3"],
            err(sink.check().await),
        ));
        let mut unreachable = opts.clone();
        for (k, v) in unreachable.iter_mut() {
            if k == "aws_endpoint" {
                *v = format!("http://127.0.0.1:{closed}");
            }
        }
        unreachable.push(("max_retries".into(), "0".into()));
        let sink =
            ObjectSink::from_url_with_options(&format!("s3://{bucket}/x"), &unreachable).unwrap();
        cases.push(case(
            "S3 endpoint unreachable",
            "Connection",
            &["s3"],
            err(sink.check().await),
        ));
    }

    // ---------------------------------------------------------------- pipeline composition
    cases.push(case(
        "pipeline name with a slash",
        "Config",
        &["invalid pipeline name"],
        err(Pipeline::builder("a/b")
            .extractor(sources::MemoryExtractor::new("t", "s", vec![]))
            .sink(ObjectSink::memory())
            .build()),
    ));
    cases.push(case(
        "key template without a run id",
        "Config",
        &["{run_id}"],
        err(stores::KeyTemplate::new("{source}/{part}.{ext}")),
    ));

    // ---------------------------------------------------------------- the checks
    let mut failures = vec![];
    for c in &cases {
        let shown = c.error.to_string();
        let debug = format!("{:?}", c.error);
        let lower = shown.to_lowercase();
        if variant(&c.error) != c.variant {
            failures.push(format!("{}: expected {}, got {debug}", c.name, c.variant));
        }
        for n in &c.needles {
            if !lower.contains(n.as_str()) {
                failures.push(format!("{}: message does not say {n:?}: {shown}", c.name));
            }
        }
        if shown.contains(SENTINEL) || debug.contains(SENTINEL) {
            failures.push(format!("{}: the secret is in the error: {debug}", c.name));
        }
        if matches!(variant(&c.error), "Connection") && !c.error.is_retryable() {
            failures.push(format!(
                "{}: a connection error should be retryable",
                c.name
            ));
        }
    }
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    if logged.contains(SENTINEL) {
        let line = logged
            .lines()
            .find(|l| l.contains(SENTINEL))
            .unwrap_or_default();
        failures.push(format!("the secret is in a log line: {line}"));
    }
    pg_exec(&pg_url, &format!("DROP SCHEMA {schema} CASCADE")).await;
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} bad inputs checked", cases.len());
}

/// A parsed pipeline.conf holding every kind of secret shows none of them, in `Debug`
/// (what `{:?}` in a user's log line prints) or `Display`.
#[test]
fn a_parsed_config_never_shows_its_secrets() {
    let c = parse(
        "[postgres_config]\nhost = h\nport = 5432\nusername = u\npassword = $PW\ndatabase = d\n\
         [mysql_config]\nhostname = h\nport = 3306\nusername = u\npassword = $PW\ndatabase = d\n\
         [aws_boto_credentials]\naccess_key = $PW\nsecret_key = $PW\nbucket_name = b\n\
         [kafka]\nbootstrap_servers = h:9092\nsecurity_protocol = sasl_ssl\nsasl_username = u\nsasl_password = $PW\n\
         [warehouse]\nurl = postgres://u:$PW@h/d\n",
    )
    .unwrap();
    for shown in [format!("{c:?}"), format!("{c:#?}"), c.to_string()] {
        assert!(!shown.contains(SENTINEL), "{shown}");
        assert!(shown.contains("bootstrap_servers"), "{shown}");
    }
}
