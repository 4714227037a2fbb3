#!/usr/bin/env bash
# Runs the ETSI NGSI-LD API conformance test suite (ETSI ISG CIM, Robot Framework)
# against a fresh `polity serve` and prints passed/failed for each test group.
#
#   scripts/etsi-conformance.sh SUITE_DIR [TEST_DIR_OR_FILE ...]
#
# SUITE_DIR is a local checkout of the suite (e.g. of marek-mraz/ngsi-ld-test-suite at
# its first commit, ETSI's own tree). It is copied, never modified, and never belongs
# in this repository. With no further arguments every group of TP/NGSI-LD runs; with
# arguments, only those paths (relative to SUITE_DIR), e.g.
# TP/NGSI-LD/ContextInformation/Provision/Entities/CreateEntity.
#
# Environment:
#   POLITY_BIN    the polity binary (default: build the release binary with cargo)
#   ETSI_WORK     working directory (default: $HOME/.cache/polity-etsi); holds the venv,
#                 the rewritten copy of the suite, the node's data dir and the results
#   ETSI_PORT     the node's HTTP port (default 9090)
#   ETSI_CTX_PORT the port serving the suite's @context files (default 9091)
#   MQTT_HOST     the MQTT broker the notification tests use (default 127.0.0.1; port 1883)
#
# What it does:
#   1. creates a Python venv and installs the suite's requirements from PyPI;
#   2. copies the suite, serves its @context files on a local port and rewrites their
#      remote URLs to that port (the node never reaches the internet);
#   3. starts `polity serve --insecure-no-auth` on an empty data dir;
#   4. runs the suite with robot, one output directory per group;
#   5. prints passed/failed for each group, and writes every failing case with its
#      message to $ETSI_WORK/results/failures.txt.
set -euo pipefail

if [[ $# -lt 1 || ! -d "$1/TP/NGSI-LD" ]]; then
  echo "usage: $0 SUITE_DIR [TEST_PATH ...]   (SUITE_DIR must contain TP/NGSI-LD)" >&2
  exit 2
fi
SUITE_SRC=$(cd "$1" && pwd)
shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${ETSI_WORK:-$HOME/.cache/polity-etsi}
PORT=${ETSI_PORT:-9090}
CTX_PORT=${ETSI_CTX_PORT:-9091}
MQTT_HOST=${MQTT_HOST:-127.0.0.1}
mkdir -p "$WORK"

step() { printf '==> %s\n' "$*" >&2; }

# 1. The venv, reinstalled only when the requirements change.
if [[ ! -x "$WORK/venv/bin/robot" ]] || ! cmp -s "$SUITE_SRC/requirements.txt" "$WORK/venv/.requirements"; then
  step "creating the Python venv in $WORK/venv"
  rm -rf "$WORK/venv"
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check -r "$SUITE_SRC/requirements.txt"
  # The suite ships its own fork of the HttpCtrl mock server (it records the requests
  # its stubs answer, which the distributed-operations tests read); use it.
  if [[ -d "$SUITE_SRC/libraries/robotframework-httpctrl" ]]; then
    "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check "$SUITE_SRC/libraries/robotframework-httpctrl"
  fi
  cp "$SUITE_SRC/requirements.txt" "$WORK/venv/.requirements"
fi

# 2. A rewritten copy of the suite.
step "copying the suite to $WORK/suite"
rm -rf "$WORK/suite"
mkdir -p "$WORK/suite"
(cd "$SUITE_SRC" && tar --exclude=.git --exclude='results*' -cf - .) | (cd "$WORK/suite" && tar -xf -)
CTX_URL="http://127.0.0.1:$CTX_PORT"
FORGE='https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts'
grep -rlF "$FORGE" "$WORK/suite" | while read -r f; do
  sed -i "s#$FORGE#$CTX_URL#g" "$f"
done
# Some payloads name Easy Global Market's copy of the suite context (the same terms,
# compounded with the core context). It is not in the suite's tree: serve an
# equivalent built from the suite's own context file.
EGM='https://easy-global-market.github.io/ngsild-api-data-models/ngsildTestSuite'
CTX_DIR="$WORK/suite/resources/jsonld-contexts"
mkdir -p "$CTX_DIR/egm"
cp "$CTX_DIR/ngsi-ld-test-suite.jsonld" "$CTX_DIR/egm/ngsildTestSuite.jsonld"
cat > "$CTX_DIR/egm/ngsildTestSuiteV1.8-compound.jsonld" <<EOF
{"@context": ["$CTX_URL/egm/ngsildTestSuite.jsonld", "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]}
EOF
grep -rlF "$EGM" "$WORK/suite" | while read -r f; do
  sed -i "s#$EGM#$CTX_URL/egm#g" "$f"
done
# The jsonldContext tests name three public contexts only to see them cached; their
# terms are never used. This machine has no internet, so they are served as empty
# stand-ins ({"@context": {}}) at local URLs.
for remote in \
  'http://smartdatamodels.org/context.jsonld' \
  'https://fiware.github.io/data-models/context.jsonld' \
  'https://fiware.github.io/NGSI-LD_TestSuite/ldContext/testContext.jsonld'; do
  local_path="offline/$(echo "$remote" | sed 's#^https\?://##')"
  mkdir -p "$CTX_DIR/$(dirname "$local_path")"
  echo '{"@context": {}}' > "$CTX_DIR/$local_path"
  grep -rlF "$remote" "$WORK/suite" | while read -r f; do
    sed -i "s#$remote#$CTX_URL/$local_path#g" "$f"
  done
done
cat > "$WORK/suite/resources/variables.py" <<EOF
url = 'http://127.0.0.1:$PORT/ngsi-ld/v1'
temporal_api_url = 'http://127.0.0.1:$PORT/ngsi-ld/v1'
ngsild_test_suite_context = '$CTX_URL/ngsi-ld-test-suite-compound.jsonld'
notification_server_host = '127.0.0.1'
notification_server_port = 8085
mqtt_broker_host = '$MQTT_HOST'
mqtt_broker_non_default_port = 8085
context_source_host = '127.0.0.1'
context_source_port = 8086
context_server_host = '127.0.0.1'
context_server_port = 8087
core_context = 'https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld'
delete_temporal_on_core_delete = True
EOF

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

step "serving the suite's @context files at $CTX_URL"
"$WORK/venv/bin/python" -m http.server "$CTX_PORT" --bind 127.0.0.1 \
  --directory "$CTX_DIR" >"$WORK/ctx-server.log" 2>&1 &
PIDS+=($!)

# 3. A node on an empty data dir.
if [[ -z "${POLITY_BIN:-}" ]]; then
  step "building polity (release)"
  (cd "$REPO" && cargo build --release --quiet -p polity)
  TARGET=${CARGO_TARGET_DIR:-$REPO/target}
  POLITY_BIN="$TARGET/release/polity"
fi
DATA="$WORK/data"
rm -rf "$DATA" "$DATA-keys"
cat > "$WORK/node.toml" <<EOF
[node]
http = "127.0.0.1:$PORT"
data_dir = "$DATA"

[subscriptions]
# The suite's notification endpoint listens on loopback.
allow_private_endpoints = true

[contexts]
# The suite's @context files are served on loopback.
allow_private = true

[temporal]
# The pagination tests (020_13, 021_15) store 20 instances on each of two attributes
# and expect the broker to cut the answer (206 + Content-Range): set the cut below 40.
max_instances = 30
EOF
step "starting $POLITY_BIN serve on 127.0.0.1:$PORT"
"$POLITY_BIN" serve --config "$WORK/node.toml" --insecure-no-auth --log "${POLITY_LOG:-warn}" \
  >"$WORK/polity.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { cat "$WORK/polity.log" >&2; echo "polity did not start" >&2; exit 1; }

# 4. The suite, one output directory per group.
GROUPS_ALL=(
  CommonBehaviours
  ContextInformation/Consumption
  ContextInformation/Provision
  ContextInformation/Subscription
  ContextSource/Discovery
  ContextSource/Registration
  ContextSource/RegistrationSubscription
  DistributedOperations/Consumption
  DistributedOperations/LoopDetection
  DistributedOperations/Provision
  jsonldContext/Consumption
  jsonldContext/Provision
)
TARGETS=()
if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  for g in "${GROUPS_ALL[@]}"; do TARGETS+=("TP/NGSI-LD/$g"); done
fi
RESULTS="$WORK/results"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
cd "$WORK/suite"
for t in "${TARGETS[@]}"; do
  name=$(echo "${t#TP/NGSI-LD/}" | tr '/' '+')
  step "robot $t"
  "$WORK/venv/bin/robot" --outputdir "$RESULTS/$name" --output output.xml --log NONE --report NONE \
    --console dotted "$t" >"$RESULTS/$name.console" 2>&1 || true
done

# 5. The table.
"$WORK/venv/bin/python" - "$RESULTS" <<'EOF'
import os, sys
from robot.api import ExecutionResult, ResultVisitor

results = sys.argv[1]

class Cases(ResultVisitor):
    def __init__(self):
        self.cases = []
    def visit_test(self, test):
        self.cases.append(test)

rows, failures = [], []
for name in sorted(os.listdir(results)):
    out = os.path.join(results, name, "output.xml")
    if not os.path.isfile(out):
        continue
    v = Cases()
    ExecutionResult(out).visit(v)
    passed = sum(1 for c in v.cases if c.status == "PASS")
    failed = sum(1 for c in v.cases if c.status == "FAIL")
    skipped = sum(1 for c in v.cases if c.status == "SKIP")
    rows.append((name.replace("+", "/"), passed, failed, skipped))
    for c in v.cases:
        if c.status == "FAIL":
            msg = " ".join(c.message.split())[:300]
            failures.append(f"{c.longname}\t{c.source}\t{msg}")

print("| group | passed | failed | skipped | pass rate |")
print("|---|---:|---:|---:|---:|")
tp = tf = ts = 0
for g, p, f, s in rows:
    tp, tf, ts = tp + p, tf + f, ts + s
    total = p + f
    print(f"| {g} | {p} | {f} | {s} | {100.0 * p / total if total else 0:.1f}% |")
total = tp + tf
print(f"| **all** | {tp} | {tf} | {ts} | {100.0 * tp / total if total else 0:.1f}% |")
with open(os.path.join(results, "failures.txt"), "w") as fh:
    fh.write("\n".join(failures) + ("\n" if failures else ""))
print(f"\n{len(failures)} failing cases listed in {os.path.join(results, 'failures.txt')}", file=sys.stderr)
EOF
