#!/usr/bin/env bash
# Benchmarks side by side with the tools a user would otherwise use, in one run:
#   1. Arrow -> CSV/JSONL encoding (benches/csv_encode.rs, with arrow-csv and Python csv anchors)
#   2. Full extraction of `orders` (N rows, default 1,000,000) from the machine's PostgreSQL
#      (5432) and MariaDB (3306): psql \copy, mariadb --quick, ConnectorX, the book's Python,
#      and tributary's COPY path, typed PostgreSQL path and MySQL path.
#   3. REST (100k items on loopback) beside Python requests.
#   4. MongoDB (the book's time-window job) beside the book's pymongo script.
#   5. Kafka: Debezium envelopes published and landed, beside the Python confluent-kafka client.
#   6. The cost of a commit as a change stream ages (benches/streaming.rs).
# Every bench is built with --all-features, so one release build serves them all.
# Usage: scripts/bench.sh [N]     Needs ../shared/bench (seed and anchors) beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
BENCH=${TRIBUTARY_BENCH_DIR:-../shared/bench}
VENV=${ANCHORS_VENV:-$HOME/.cache/tributary-anchors-venv}
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import psycopg2, pymysql, connectorx, pyarrow, requests, confluent_kafka' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q psycopg2-binary pymysql mysql-replication connectorx pyarrow requests confluent-kafka
fi
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%FT%TZ)"
echo "== encoding"
cargo bench --quiet --all-features --bench csv_encode 2>/dev/null
echo "== seeding $N rows"
bash "$BENCH/seed.sh" "$N"
echo "== anchors"
bash "$BENCH/anchors.sh" "$VENV"
echo "== tributary"
cargo bench --quiet --all-features --bench extract 2>/dev/null
echo "== binlog CDC (350k changes and a 1M-row transaction; MariaDB from scripts/services.sh)"
scripts/services.sh start >/dev/null
cargo bench --quiet --all-features --bench binlog 2>/dev/null
echo "== WAL CDC (350k changes, a 1M-row transaction, the initial load; PostgreSQL from scripts/services.sh)"
cargo bench --quiet --all-features --bench wal 2>/dev/null
echo "== REST (100k items, 1,000 per page, loopback)"
ANCHORS_VENV=$VENV cargo bench --quiet --all-features --bench rest 2>/dev/null
echo "== MongoDB (200k documents, the book's time-window job; server from scripts/services.sh)"
scripts/services.sh start >/dev/null
cargo bench --quiet --all-features --bench mongo 2>/dev/null
echo "== Kafka (200k change rows as Debezium envelopes; tansu from scripts/services.sh; Python confluent-kafka anchors)"
ANCHORS_VENV=$VENV cargo bench --quiet --all-features --bench kafka 2>/dev/null
echo "== streaming (a commit's cost at part 10 and part 10,000)"
cargo bench --quiet --all-features --bench streaming 2>/dev/null
