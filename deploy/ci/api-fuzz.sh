#!/bin/bash
# Property-based fuzzing of fwmgmt's API from its OpenAPI document (schemathesis), against
# a real fwd (two net_null ports, no hugepages, its own state directory) and fwmgmt.
# Bounded: MAX_EXAMPLES per operation, FUZZ_SECONDS of wall time. Checks: no 5xx (502/503/
# 504 only while fwd is away, which it never is here), status codes and content types and
# response bodies as declared, schema-valid requests accepted and schema-invalid ones
# refused, authentication enforced where declared. Usage (root, from the repository root):
#   ST=path/to/st FWD=target/debug/fwd FWMGMT=target/debug/fwmgmt deploy/ci/api-fuzz.sh
set -euo pipefail
ST=${ST:-target/api-fuzz-venv/bin/st}
FWD=${FWD:-target/debug/fwd}
FWMGMT=${FWMGMT:-target/debug/fwmgmt}
MAX_EXAMPLES=${MAX_EXAMPLES:-25}
FUZZ_SECONDS=${FUZZ_SECONDS:-150}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/api-fuzz.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${keep:-0}" = 1 ]; then echo "api-fuzz: logs kept in $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$dir/fwd.yaml" <<YAML
eal:
  main_core: 0
  hugepages: false
  in_memory: true
  memory_mb: 256
  file_prefix: api-fuzz-$$
ports:
  - {name: lan, device: net_null0, addresses: [198.18.1.1/24], rx_descriptors: 256, tx_descriptors: 256}
  - {name: wan, device: net_null1, addresses: [198.18.2.1/24], rx_descriptors: 256, tx_descriptors: 256}
workers:
  cores: [1]
conntrack:
  max: 65536
control_socket: $dir/control.sock
state_dir: $dir/state
YAML
head -c 24 /dev/urandom | base64 > "$dir/token"
"$FWD" --config "$dir/fwd.yaml" > "$dir/fwd.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -S "$dir/control.sock" ] && break; sleep 0.1; done
[ -S "$dir/control.sock" ] || { keep=1; cat "$dir/fwd.log" >&2; echo "api-fuzz: fwd did not start" >&2; exit 1; }
"$FWMGMT" --listen "127.0.0.1:$port" --control-socket "$dir/control.sock" \
    --token-file "$dir/token" > "$dir/fwmgmt.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
set +e
timeout --signal=INT "$FUZZ_SECONDS" "$ST" --config-file "$here/schemathesis.toml" run \
    "http://127.0.0.1:$port/api/v1/openapi.json" \
    --header "Authorization: Bearer $(cat "$dir/token")" \
    --max-examples "$MAX_EXAMPLES" --seed 1 --request-timeout 20 \
    --phases examples,coverage,fuzzing
rc=$?
set -e
if ! kill -0 "${pids[0]}" 2>/dev/null || ! kill -0 "${pids[1]}" 2>/dev/null; then
    keep=1; echo "api-fuzz: fwd or fwmgmt died during the run" >&2; rc=1
fi
[ $rc = 0 ] || keep=1
exit $rc
