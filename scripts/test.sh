#!/usr/bin/env bash
# Start every service the tests need, then run the whole suite with all features,
# doctests included, plus the checks CI enforces (fmt, clippy, each feature alone, docs).
# With CI=true a test whose service is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh start >/dev/null
# shellcheck disable=SC1091
source "${TRIBUTARY_SERVICES_HOME:-/var/tmp/tributary-services}/env.sh"

step() { printf '\n== %s\n' "$*"; }

# The build takes several GB: say how much, before and after, so a full disk is plain.
disk() { printf '\n== disk: target %s; %s\n' "$(du -sh target 2>/dev/null | cut -f1)" "$(df -h . | tail -1)"; }
disk
trap disk EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features)"
cargo clippy --all-targets --all-features -- -D warnings

step "each feature on its own"
for f in fs sqlite postgres mysql mysql-cdc postgres-cdc kafka rest airflow parquet mongodb zstd s3 gcs azure test-util; do
  echo "-- --no-default-features --features $f"
  cargo check --quiet --no-default-features --features "$f"
done
cargo check --quiet --no-default-features

step "cargo doc (all features, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps --all-features

step "cargo test (all features, doctests included)"
cargo test --all-features --no-fail-fast
