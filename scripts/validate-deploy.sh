#!/usr/bin/env bash
# Checks the deployment files without a Docker engine (CI has none): Dockerfile,
# docker-compose.yml and everything under deploy/. scripts/test.sh runs it.
#
#   scripts/validate-deploy.sh
#
# 1. docker-compose.yml is a valid Compose file (`docker-compose config -q`).
# 2. Every JSON file under deploy/ parses; so does every TOML file (Python 3.11+ tomllib).
# 3. Every YAML file under deploy/ (and docker-compose.yml) parses (PyYAML); Prometheus scrapes
#    every Brook service of docker-compose.yml, on the port that service serves /metrics on,
#    and the compose file's bind mounts exist.
# 4. Every metric name (brook_...) used under deploy/ (the Grafana dashboard, the Prometheus
#    config) is a metric broker/src/server/metrics.rs or connectors/src/metrics.rs registers,
#    so renaming a metric fails here until the dashboard follows.
# 5. Every `-p CRATE` the Dockerfile builds is a workspace member and every binary it copies
#    is a binary of those crates.
#
# Missing tools (docker-compose, PyYAML): under CI=true they are installed with apt-get and the
# check fails if that fails; otherwise the check is SKIPPED with a loud warning.
# Exit status: 0 when every check that ran passed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

failures=0
fail() {
    printf 'error: %s\n' "$*" >&2
    failures=$((failures + 1))
}
ok() { printf 'ok: %s\n' "$*"; }
skips=0
skipped() {
    skips=$((skips + 1))
    cat >&2 <<WARN
******************************************************************************
* WARNING: SKIPPED: $*
******************************************************************************
WARN
}
in_ci() { [ "${CI:-}" = true ]; }

# apt-get install PACKAGE... (as root, or through sudo); runs apt-get update first when the
# package lists do not know a package yet.
apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "error: installing $* needs root or sudo" >&2
            return 1
        fi
        sudo=(sudo -n)
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: installing $* needs apt-get" >&2
        return 1
    fi
    echo "installing $* with apt-get" >&2
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >&2; then
        "${sudo[@]}" apt-get update -qq >&2 || return 1
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$@" >&2 || return 1
    fi
}

deploy_files() { # deploy_files EXT...: the files under deploy/ with these extensions, sorted
    local args=() ext
    for ext in "$@"; do
        [ ${#args[@]} -eq 0 ] || args+=(-o)
        args+=(-name "*.$ext")
    done
    find deploy -type f \( "${args[@]}" \) | LC_ALL=C sort
}

if ! command -v python3 >/dev/null 2>&1; then
    if in_ci; then
        apt_install python3 || { echo "error: python3 is needed and could not be installed" >&2; exit 1; }
    else
        echo "error: python3 is needed" >&2
        exit 1
    fi
fi

# --- 1. docker-compose.yml --------------------------------------------------------------------
compose=()
if command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif in_ci; then
    if apt_install docker-compose && command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    else
        fail "docker-compose is needed to check docker-compose.yml and could not be installed"
    fi
fi
if [ ${#compose[@]} -gt 0 ]; then
    # `config` only reads the files: no Docker engine needed.
    if out=$("${compose[@]}" -f docker-compose.yml config -q 2>&1); then
        ok "docker-compose.yml (${compose[*]} config -q)"
    else
        fail "docker-compose.yml is not a valid Compose file (${compose[*]} config -q):"
        printf '%s\n' "$out" >&2
    fi
elif ! in_ci; then
    skipped "docker-compose.yml was not checked: docker-compose is not installed
*          (apt-get install docker-compose; CI installs it itself)"
fi

# --- 2. JSON and TOML ---------------------------------------------------------------------------
mapfile -t json_files < <(deploy_files json)
[ ${#json_files[@]} -gt 0 ] || fail "no JSON file under deploy/ (the Grafana dashboard is missing)"
for f in "${json_files[@]}"; do
    if out=$(python3 -m json.tool "$f" 2>&1 >/dev/null); then
        ok "$f parses as JSON"
    else
        fail "$f is not valid JSON: $out"
    fi
done

mapfile -t toml_files < <(deploy_files toml)
if [ ${#toml_files[@]} -gt 0 ]; then
    if python3 -c 'import tomllib' 2>/dev/null; then
        for f in "${toml_files[@]}"; do
            if out=$(python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f" 2>&1); then
                ok "$f parses as TOML"
            else
                fail "$f is not valid TOML: $out"
            fi
        done
    else
        skipped "TOML files under deploy/ were not parsed: python3 has no tomllib (needs 3.11+)"
    fi
fi

# --- 3. YAML, Prometheus targets, bind mounts --------------------------------------------------
yaml_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml; yaml.safe_load' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    return 1
}
py=$(yaml_python) || py=
if [ -z "$py" ] && in_ci; then
    # Debian's PyYAML lands in the system python3 (/usr/bin/python3).
    if apt_install python3-yaml; then
        py=$(yaml_python) || py=
    fi
    [ -n "$py" ] || fail "PyYAML is needed to check the YAML files and could not be installed"
fi

if [ -n "$py" ]; then
    mapfile -t yaml_files < <(deploy_files yml yaml)
    if ! "$py" - docker-compose.yml "${yaml_files[@]}" <<'PY'; then
import os
import re
import sys

import yaml

failed = False


def fail(msg):
    global failed
    print(f"error: {msg}", file=sys.stderr)
    failed = True


docs = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            docs[path] = yaml.safe_load(f)
        print(f"ok: {path} parses as YAML")
    except (OSError, yaml.YAMLError) as e:
        fail(f"{path} is not valid YAML: {e}")

compose = docs.get("docker-compose.yml")
prom = docs.get("deploy/prometheus.yml")
if not isinstance(compose, dict) or not isinstance(compose.get("services"), dict):
    fail("docker-compose.yml has no services")
    sys.exit(1)
if not isinstance(prom, dict):
    fail("deploy/prometheus.yml is missing or empty")
    sys.exit(1)
services = compose["services"]


def listen_port(text, pattern, what):
    m = re.search(pattern, text, re.M)
    if not m:
        fail(f"cannot find {what}")
        return None
    return int(m.group(1))


# The ports /metrics is served on: the image's BROOK_SERVER_HTTP_LISTEN for the brokers, the
# connector config's [http] listen for brook-connect.
with open("Dockerfile") as f:
    broker_port = listen_port(f.read(), r"BROOK_SERVER_HTTP_LISTEN=\S*:(\d+)",
                              "BROOK_SERVER_HTTP_LISTEN in the Dockerfile")
with open("deploy/brook-connect.toml") as f:
    connect_port = listen_port(f.read(), r'^\s*listen\s*=\s*"[^"]*:(\d+)"',
                               "[http] listen in deploy/brook-connect.toml")


def command_of(svc):
    cmd = svc.get("command")
    if isinstance(cmd, str):
        cmd = cmd.split()
    return cmd or []


def metrics_port(name):
    """The port service `name` serves /metrics on, or None if it is no Brook service."""
    svc = services[name]
    if not str(svc.get("image", "")).startswith("brook"):
        return None
    cmd = command_of(svc)
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env if "=" in e)
    if not cmd or cmd[0] == "brook-broker":
        if "--http-listen" in cmd:
            return int(cmd[cmd.index("--http-listen") + 1].rsplit(":", 1)[1])
        if "BROOK_SERVER_HTTP_LISTEN" in env:
            return int(str(env["BROOK_SERVER_HTTP_LISTEN"]).rsplit(":", 1)[1])
        return broker_port
    if cmd[0] == "brook-connect":
        if "--http-listen" in cmd:
            return int(cmd[cmd.index("--http-listen") + 1].rsplit(":", 1)[1])
        return connect_port
    return None  # a one-shot `brook` CLI run


expected = {n for n in services if metrics_port(n) is not None}
scraped = set()
for job in prom.get("scrape_configs") or []:
    name = job.get("job_name")
    path = job.get("metrics_path", "/metrics")
    if path != "/metrics":
        fail(f"Prometheus job {name}: metrics_path {path}, Brook serves /metrics")
    for sc in job.get("static_configs") or []:
        for target in sc.get("targets") or []:
            host, _, port = str(target).rpartition(":")
            if host not in services:
                fail(f"Prometheus job {name}: target {target}: no service {host!r} in docker-compose.yml")
                continue
            want = metrics_port(host)
            if want is None:
                fail(f"Prometheus job {name}: target {target}: {host} serves no Brook /metrics")
            elif port != str(want):
                fail(f"Prometheus job {name}: target {target}: {host} serves /metrics on port {want}")
            else:
                scraped.add(host)
for name in sorted(expected - scraped):
    fail(f"deploy/prometheus.yml does not scrape the Brook service {name} (:{metrics_port(name)}/metrics)")
if expected and expected <= scraped:
    print(f"ok: Prometheus scrapes every Brook service: {', '.join(sorted(expected))}")

# Bind mounts (./path:...) must exist, else Docker creates empty directories in their place.
for name, svc in services.items():
    for vol in svc.get("volumes") or []:
        src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
        if src.startswith((".", "/")) and not os.path.exists(src):
            fail(f"docker-compose.yml: service {name} mounts {src}, which does not exist")

sys.exit(1 if failed else 0)
PY
        failures=$((failures + 1))
    fi
elif ! in_ci; then
    skipped "YAML files and Prometheus targets were not checked: PyYAML is not importable
*          (apt-get install python3-yaml; CI installs it itself)"
fi

# --- 4. metric names ---------------------------------------------------------------------------
metric_sources=(broker/src/server/metrics.rs connectors/src/metrics.rs)
for f in "${metric_sources[@]}"; do
    [ -f "$f" ] || fail "$f is missing (the metric names are checked against it)"
done
# A metric is registered as a string literal, e.g. "brook_bytes_in_total"; a histogram's series
# add _bucket, _sum and _count.
registered() { grep -qF "\"$1\"" "${metric_sources[@]}" 2>/dev/null; }
mapfile -t used < <(find deploy -type f -print0 | xargs -0 grep -ohE '\bbrook_[a-z0-9_]+' | LC_ALL=C sort -u)
[ ${#used[@]} -gt 0 ] || fail "no brook_ metric is used under deploy/"
unknown=0
for name in "${used[@]}"; do
    base="$name"
    if ! registered "$name"; then
        for suffix in _bucket _sum _count; do
            base="${base%"$suffix"}"
        done
    fi
    if ! registered "$base"; then
        where=$(grep -rlF "$name" deploy | tr '\n' ' ')
        fail "metric $name (used in ${where% }) is not registered in ${metric_sources[*]}"
        unknown=$((unknown + 1))
    fi
done
[ "$unknown" -ne 0 ] || ok "all ${#used[@]} metric names used under deploy/ are registered by the broker or brook-connect"

# --- 5. the Dockerfile's crates and binaries ----------------------------------------------------
# The crates: the -p flags of the `cargo build` line (not the `docker run -p` examples).
mapfile -t crates < <(grep -E '^[^#]*cargo build' Dockerfile |
    grep -oE '(^|[[:space:]])-p[[:space:]]+[A-Za-z0-9_-]+' | awk '{print $2}')
mapfile -t binaries < <(grep -E '^[^#]*target/release/' Dockerfile |
    grep -oE 'target/release/[A-Za-z0-9_-]+' | sed 's|.*/||' | LC_ALL=C sort -u)
[ ${#crates[@]} -gt 0 ] || fail "the Dockerfile builds no crate (-p CRATE)"
if metadata=$(cargo metadata --no-deps --format-version 1 2>/dev/null); then
    if ! METADATA="$metadata" python3 - "${crates[*]}" "${binaries[*]}" <<'PY'; then
import json
import os
import sys

meta = json.loads(os.environ["METADATA"])
crates, binaries = sys.argv[1].split(), sys.argv[2].split()
members = {p["name"]: p for p in meta["packages"] if p["id"] in meta["workspace_members"]}
failed = False
bins = set()
for c in crates:
    if c not in members:
        known = ", ".join(sorted(members))
        print(f"error: the Dockerfile builds -p {c}, which is not a workspace member ({known})",
              file=sys.stderr)
        failed = True
        continue
    bins |= {t["name"] for t in members[c]["targets"] if "bin" in t["kind"]}
for b in binaries:
    if b not in bins:
        built = ", ".join(sorted(bins))
        print(f"error: the Dockerfile copies target/release/{b}, which is no binary of the "
              f"crates it builds ({built})", file=sys.stderr)
        failed = True
if not failed:
    print(f"ok: the Dockerfile builds workspace members {', '.join(crates)} "
          f"and copies their binaries {', '.join(binaries)}")
sys.exit(1 if failed else 0)
PY
        failures=$((failures + 1))
    fi
else
    fail "cargo metadata failed: cannot list the workspace members"
fi

if [ "$failures" -ne 0 ]; then
    echo "validate-deploy: FAILED ($failures failing check(s), see the errors above)" >&2
    exit 1
fi
if [ "$skips" -ne 0 ]; then
    echo "validate-deploy: the checks that ran passed; $skips SKIPPED (see the warnings above)"
else
    echo "validate-deploy: all checks passed"
fi
