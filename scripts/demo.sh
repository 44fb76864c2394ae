#!/usr/bin/env bash
# `make demo`: the whole loop on this machine in under a minute.
#
#   resmon serve (temporary SQLite file, generated secrets, free loopback port)
#   -> resmon token (push token for the demo job's scope)
#   -> resmon collect -- <a 10 s workload>   (measures it, pushes the run summary)
#   -> resmon query runs / resmon query show  (reads it back as tables)
#
# Leaves nothing behind: the server is stopped and the temporary directory removed
# on every exit path (trap), including Ctrl-C.
#
# BIN points at the virtualenv's bin directory (the Makefile passes it).
set -euo pipefail

BIN="${BIN:-.venv/bin}"
PY="$BIN/python"
RESMON="$BIN/resmon"
DURATION="${DEMO_SECONDS:-10}"
started=$SECONDS

work="$(mktemp -d "${TMPDIR:-/tmp}/resmon-demo.XXXXXX")"
server_pid=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        # The server runs in its own process group (setsid): arbiter and workers go together.
        kill -TERM -- "-$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$work/serve.log" ]]; then
        echo "--- server log ---" >&2
        tail -n 20 "$work/serve.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
server="http://127.0.0.1:$port"
read_token="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
hmac_key="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"

step "resmon serve on $server (database $work/demo.db, secrets generated for this demo)"
RECEIVER_READ_TOKEN="$read_token" RECEIVER_HMAC_KEY="$hmac_key" \
    setsid "$RESMON" serve --addr "127.0.0.1:$port" --db "$work/demo.db" \
    --workers 1 --threads 2 --log-level warning >"$work/serve.log" 2>&1 &
server_pid=$!
"$PY" - "$server" "$server_pid" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("resmon serve exited during start-up")
    time.sleep(0.1)
sys.exit("resmon serve not ready after 30 s")
EOF
echo "ready"

# The scope of the demo job, as a CI system would set it.
export GITHUB_REPOSITORY_OWNER=demo GITHUB_REPOSITORY=demo/app GITHUB_WORKFLOW=ci.yml GITHUB_JOB=build
export GITHUB_RUN_ID="$(date +%s)"

step "resmon token --org demo --repo demo/app --workflow ci.yml --job build"
push_token="$(RECEIVER_HMAC_KEY="$hmac_key" "$RESMON" token --org demo --repo demo/app --workflow ci.yml --job build)"
echo "${push_token:0:12}... (HMAC-SHA256 of the scope; the server checks it on push)"

step "resmon collect -- a ${DURATION} s workload: two CPU-bound processes and 200 MiB of memory"
# The workload's limits, so `query show` can say how close it came to them.
COLLECTOR_PUSH_TOKEN="$push_token" CGROUP_LIMITS='{"workload": {"cpu": "2", "memory": "512Mi"}}' \
    "$RESMON" collect --interval 500ms --name workload --log-format text \
    --push-endpoint "$server/api/v1/metrics" --push-timeout 10s \
    --spool-dir "$work/spool" --output "$work/records.log" \
    -- "$PY" -c '
import multiprocessing, sys, time

def burn(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

if __name__ == "__main__":
    seconds = float(sys.argv[1])
    workers = [multiprocessing.Process(target=burn, args=(seconds * 0.8,)) for _ in range(2)]
    for w in workers:
        w.start()
    memory = bytearray(200 * 1024 * 1024)  # touched below, so it is resident
    for i in range(0, len(memory), 4096):
        memory[i] = 1
    for w in workers:
        w.join()
    time.sleep(seconds * 0.2)
    print(f"workload done: 2 processes x {seconds * 0.8:.0f} s of CPU, 200 MiB resident")
' "$DURATION"

export RESMON_SERVER="$server" RESMON_READ_TOKEN="$read_token"
step "resmon query runs demo demo/app ci.yml build"
"$RESMON" query runs demo demo/app ci.yml build

run_pk="$("$RESMON" query runs demo demo/app ci.yml build --limit 1 --output json |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["runs"][0]["id"])')"
step "resmon query show $run_pk"
"$RESMON" query show "$run_pk"

step "done in $((SECONDS - started)) s: stopping the server and removing $work"
