#!/usr/bin/env bash
# The whole test suite: the README's test command. CI (.ci/run) runs exactly this.
#
# One debug build shared by every step (same target dir); the slow multi-process suite runs
# beside the rest where that is safe.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# One run builds once: incremental caches would only add GiBs of disk (CI starts clean).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Disk is the scarce resource of a full build; say how much there is before and after.
disk() { printf 'disk: %s free where the build goes\n' "$(df -h --output=avail "${CARGO_TARGET_DIR:-target}" 2>/dev/null | tail -1 || echo '?')"; }

step() { printf '\n==> %s\n' "$*"; }

mkdir -p "${CARGO_TARGET_DIR:-target}"
disk

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "deployment files"
scripts/validate-deploy.sh

step "Kafka jars (for the Kafka interop tests)"
if ! scripts/kafka.sh fetch; then
    if [ "${CI:-}" = true ]; then
        echo "error: the Kafka interop tests need Java 17+ and the Kafka jars; CI must provide them" >&2
        exit 1
    fi
    cat >&2 <<'WARN'
******************************************************************************
* WARNING: could not fetch Kafka's jars (see above): the Kafka interop tests
* will be SKIPPED. Install Java 17+ and Maven, then run scripts/kafka.sh fetch.
******************************************************************************
WARN
fi

step "build tests"
cargo test --workspace --all-targets --locked --no-run

step "tests (unit, integration, property, fuzz, SIGKILL crash; benches once in test mode)"
cargo test --workspace --all-targets --locked

step "doc tests"
cargo test --workspace --doc --locked

step "done"
disk
du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null || true
