#!/usr/bin/env bash
# The live-subscription benchmark of issue #3, turnkey: subscribers watch live charging sessions while
# the shared OCPP harness's S1 load runs against the same csms, and both result lines are printed.
#
#   simulators/live_bench.sh                       # 100 sessions x 10 subscribers, with S1
#   SESSIONS=1 simulators/live_bench.sh            # all 1,000 subscribers on one session
#   S1=0 simulators/live_bench.sh                  # the subscriptions alone
#   LIVE=0 simulators/live_bench.sh                # S1 alone on the same setup, for comparison
#   LIVE=0 SCENARIOS=S2 S2_CONNS=10000 simulators/live_bench.sh   # any harness scenario against this setup
#
# Layout (as the harness expects): csms pinned to core 0; the harness's load generator, this benchmark's
# clients and csms's embedded PostgreSQL on core 1 (a database is a separate service: it must not take
# the server's core; PG_CORES=0-1 leaves it unpinned). With LIVE=0, csms's own read-to-answer p50/p99
# (from GET /metrics, boots included) is printed as a SERVER line under the harness's. Run from a fresh
# clone after `./dev test` (or any command that created .venv). Everything it starts is stopped at the
# end. About 90 s per run.
#
# Knobs (defaults): BENCH=<a set-up copy of shared/bench> SESSIONS=100 SUBSCRIBERS=1000 INTERVAL=1
#   WARMUP=6 DURATION=18 S1=1 OCPP_PORT=9300 HTTP_PORT=8300 DATA=<new temp dir> EXTRA_ENV=<env for csms>
#   PG_CORES=1 LOG_LEVEL=WARNING (csms's, into $DATA/csms.log) SCENARIOS=S1 (with LIVE=0)
#   PROFILE=<file>: record csms with py-spy during the run (collapsed stacks; `pip install py-spy`;
#     PROFILE_RATE samples per second, default 100)
#   KEEP_DATA=1: keep the database in $DATA/var (csms.log, live.txt and live.log are always kept)
#   CLIENT=python: run the subscribers in Python (default: Node, with the `ws` package of $BENCH)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BENCH=${BENCH:-}
SESSIONS=${SESSIONS:-100}; SUBSCRIBERS=${SUBSCRIBERS:-1000}; INTERVAL=${INTERVAL:-1}
WARMUP=${WARMUP:-6}; DURATION=${DURATION:-18}; S1=${S1:-1}; LIVE=${LIVE:-1}
OCPP_PORT=${OCPP_PORT:-9300}; HTTP_PORT=${HTTP_PORT:-8300}
DATA=${DATA:-$(mktemp -d /tmp/csms-livebench.XXXXXX)}
PY=$REPO/.venv/bin/python
CSMS=$REPO/.venv/bin/csms

if [[ $S1 == 1 && ( -z $BENCH || ! -x $BENCH/run.sh || ! -d $BENCH/node_modules ) ]]; then
  echo "set BENCH to a set-up copy of shared/bench:" >&2
  echo "  d=\$(mktemp -d) && cp -r /work/shared/bench \"\$d\" && (cd \"\$d/bench\" && ./setup.sh) && BENCH=\$d/bench" >&2
  exit 2
fi
for port in "$OCPP_PORT" "$HTTP_PORT"; do
  if ss -ltnH "sport = :$port" | grep -q .; then echo "port $port is in use (set OCPP_PORT/HTTP_PORT)" >&2; exit 2; fi
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # a socket per subscriber

export CSMS_DATA_DIR=$DATA/var
mkdir -p "$CSMS_DATA_DIR"
CSMS_PID=""
cleanup() {
  # csms stops its embedded PostgreSQL on the way out; the database is then thrown away (the logs stay).
  if [[ -n $CSMS_PID ]]; then kill -TERM "$CSMS_PID" 2>/dev/null || true; wait "$CSMS_PID" 2>/dev/null || true; fi
  [[ ${KEEP_DATA:-0} == 1 ]] || rm -rf "$CSMS_DATA_DIR"
}
trap cleanup EXIT

# An admin API key for the setup (created before the server, each command runs its own database).
"$CSMS" --log-level WARNING migrate
"$CSMS" --log-level WARNING apikey create --name live-bench --role admin > "$DATA/api-key" 2>/dev/null
chmod 600 "$DATA/api-key"
# The embedded PostgreSQL is started unpinned first, so csms (pinned to core 0) does not pin it too;
# forgetting the starter as an owner lets the csms that adopts it stop it at the end.
taskset -c "${PG_CORES:-1}" "$PY" -c "from pathlib import Path; from csms.store.embedded import start_embedded; start_embedded(Path('$CSMS_DATA_DIR/pg'))" 2>/dev/null
echo '[]' > "$CSMS_DATA_DIR/pg/csms-owners.json"

# Registering a thousand drivers from one address would hit the per-IP limit of a production setup.
env ${EXTRA_ENV:-} CSMS_ACCEPT_UNKNOWN_STATIONS=1 CSMS_OCPP_PORT="$OCPP_PORT" CSMS_HTTP_PORT="$HTTP_PORT" \
  CSMS_REGISTER_RATE_LIMIT=100000 CSMS_CRITICAL_RATE_LIMIT=100000 CSMS_MUTATION_RATE_LIMIT=100000 \
  taskset -c 0 "$CSMS" --log-level "${LOG_LEVEL:-WARNING}" serve > "$DATA/csms.log" 2>&1 &
CSMS_PID=$!
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$OCPP_PORT") 2>/dev/null && break
  kill -0 "$CSMS_PID" 2>/dev/null || { echo "csms did not start; see $DATA/csms.log" >&2; exit 1; }
  sleep 0.1
done

echo "# $(date -u +%FT%TZ) csms pid $CSMS_PID, data $DATA; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [[ $LIVE == 0 ]]; then
  if [[ -n ${PROFILE:-} ]]; then
    "$REPO/.venv/bin/py-spy" record --pid "$CSMS_PID" --rate "${PROFILE_RATE:-100}" --format raw --output "$PROFILE" \
      --duration 20 > /dev/null 2>&1 &
  fi
  "$PY" -m simulators.ocpp_latency snapshot "http://127.0.0.1:$HTTP_PORT" > "$DATA/metrics-before.txt"
  (cd "$BENCH" && SCENARIOS=${SCENARIOS:-S1} SERVER_PID=$CSMS_PID QUIET_WAIT_S=0 RETRIES=0 \
     ./run.sh "ws://127.0.0.1:$OCPP_PORT/ocpp/" 2>/dev/null | grep -E '^S[0-9]' || echo "${SCENARIOS:-S1} failed")
  # csms's own read-to-answer latency over the same calls (connections and boots included).
  "$PY" -m simulators.ocpp_latency report "http://127.0.0.1:$HTTP_PORT" "$DATA/metrics-before.txt"
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  exit 0
fi
# The subscribers run in Node when the harness copy has its `ws` package (simulators/live_bench_node.py):
# the Python client took 16-21% of core 1, which this layout shares with PostgreSQL. CLIENT=python keeps it.
CLIENT_ARGS=()
if [[ ${CLIENT:-node} == node && -n $BENCH && -d $BENCH/node_modules/ws ]]; then
  CLIENT_ARGS=(--node-modules "$BENCH/node_modules")
fi
taskset -c 1 "$PY" -m simulators.live_bench --api "http://127.0.0.1:$HTTP_PORT" \
  --ocpp "ws://127.0.0.1:$OCPP_PORT/ocpp/" --api-key-file "$DATA/api-key" --sessions "$SESSIONS" \
  --subscribers "$SUBSCRIBERS" --meter-interval "$INTERVAL" --warmup-s "$WARMUP" --duration-s "$DURATION" \
  --ready-file "$DATA/ready" ${CLIENT_ARGS[@]+"${CLIENT_ARGS[@]}"} > "$DATA/live.txt" 2> "$DATA/live.log" &
LIVE_PID=$!
while [[ ! -f $DATA/ready ]]; do
  kill -0 "$LIVE_PID" 2>/dev/null || { cat "$DATA/live.log" >&2; echo "live_bench failed" >&2; exit 1; }
  sleep 0.2
done
if [[ -n ${PROFILE:-} ]]; then
  "$REPO/.venv/bin/py-spy" record --pid "$CSMS_PID" --rate "${PROFILE_RATE:-100}" --format raw --output "$PROFILE" \
    --duration "$(awk "BEGIN{printf \"%d\", $WARMUP + $DURATION}")" > /dev/null 2>&1 &
fi
if [[ $S1 == 1 ]]; then
  # No quiet wait: the subscriptions are already running, which is the point.
  (cd "$BENCH" && SCENARIOS=S1 SERVER_PID=$CSMS_PID QUIET_WAIT_S=0 RETRIES=0 \
     ./run.sh "ws://127.0.0.1:$OCPP_PORT/ocpp/" 2>/dev/null | grep -E '^S1' || echo "S1 failed")
fi
wait "$LIVE_PID" || { cat "$DATA/live.log" >&2; echo "live_bench failed" >&2; exit 1; }
cat "$DATA/live.txt"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
