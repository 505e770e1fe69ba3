#!/usr/bin/env bash
# Alternating pairs of one table extraction and its anchor, for a ratio steadier than one
# run gives on a shared machine: `mariadb --batch --quick` (the command of
# ../shared/bench/anchors.sh) then the extract bench's MySQL case, N times.
# Usage: scripts/bench_pairs.sh [N] [CASE]   (CASE: my_typed_path, my_typed_path_nosync)
# Needs the machine's MariaDB on 3306 seeded by ../shared/bench/seed.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
CASE=${2:-my_typed_path}
cargo bench --quiet --all-features --bench extract --no-run 2>/dev/null
BIN=$(ls -t target/release/deps/extract-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# secs OUT CMD...: run CMD with its stdout to OUT, print the seconds it took.
secs() { local o=$1 s e; shift; s=$(date +%s.%N); "$@" > "$o"; e=$(date +%s.%N); echo "$e - $s" | bc; }
for i in $(seq 1 "$N"); do
  a=$(secs "$out/anchor.out" mariadb --batch --quick --skip-column-names -h 127.0.0.1 -uroot test -e 'SELECT * FROM orders')
  t=$(secs "$out/tributary.out" env TRIBUTARY_BENCH_CASE="$CASE" "$BIN")
  echo "pair $i: mariadb --quick ${a} s, tributary $CASE ${t} s, ratio $(echo "scale=3; $t / $a" | bc)"
done
