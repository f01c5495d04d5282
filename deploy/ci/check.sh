#!/usr/bin/env bash
# Checks everything in deploy/: configs and rulesets (fwd check), scripts (bash -n, dry
# runs), systemd units (systemd-analyze verify on an install staged in a temp DESTDIR),
# Prometheus rules and config (promtool), Grafana dashboard (jq). Exits non-zero on the
# first class of failure, after running every check.
#
#   deploy/ci/check.sh                   # fwd from $FWD, target/debug or target/release
#   FWD_CHECK_STRICT=1 deploy/ci/check.sh   # fail (not skip) when fwd check is unavailable
#
# Installs Debian's `prometheus` package (for promtool) when promtool is missing and the
# script runs as root; changes nothing else on the host.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
tmp=$(mktemp -d /tmp/fwd-deploy-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failed=0
ok() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; failed=1; }
skip() { echo "skip  $*"; }
# Runs a command; passes only when it exits 0 and prints nothing on stderr (systemd-analyze
# reports unknown keys as warnings with exit status 0).
quiet() {
    local what=$1; shift
    if "$@" > "$tmp/out" 2> "$tmp/err" && [ ! -s "$tmp/err" ]; then ok "$what"; else
        fail "$what"; sed 's/^/      /' "$tmp/out" "$tmp/err"; fi
}

# --- configs and rulesets: fwd check -------------------------------------------------
fwd=${FWD:-}
if [ -z "$fwd" ]; then
    for c in target/debug/fwd target/release/fwd; do
        [ -x "$c" ] && { [ -z "$fwd" ] || [ "$c" -nt "$fwd" ]; } && fwd=$c
    done
fi
configs=()
while IFS= read -r f; do configs+=("$f"); done < <( { find deploy -type f \( -name '*.yaml' -o -name '*.nft' \) \
    ! -path 'deploy/prometheus/*'; find perf/rulesets -name '*.nft' 2> /dev/null; } | sort)
# A generated ruleset of the rule-count scenario, as the perf scripts feed it to fwd.
perf/gen-rules.sh 100 > "$tmp/rules-100.nft" && configs+=("$tmp/rules-100.nft")
# A file fwd must refuse: proves `fwd check` really checks (the placeholder binary exits 0).
printf 'ports: [{name: "x", device: "not a device"}]\nbogus_field: 1\n' > "$tmp/bad.yaml"
if [ -z "$fwd" ]; then
    why="fwd is not built (cargo build -p dataplane --bin fwd)"
elif "$fwd" check "$tmp/bad.yaml" > /dev/null 2>&1; then
    why="$fwd accepts an invalid config: it does not implement 'fwd check' yet"
else
    why=""
fi
if [ -n "$why" ]; then
    if [ "${FWD_CHECK_STRICT:-0}" = 1 ]; then fail "configs: $why"
    else skip "${#configs[@]} configs/rulesets not checked: $why"; fi
else
    for f in "${configs[@]}"; do quiet "fwd check $f" "$fwd" check "$f"; done
fi

# --- shell scripts -------------------------------------------------------------------
for s in deploy/install.sh deploy/scripts/*.sh deploy/ci/*.sh deploy/dev/*.sh perf/*.sh; do
    [ -e "$s" ] && quiet "bash -n $s" bash -n "$s"
done
quiet "hugepages.sh --dry-run" deploy/scripts/hugepages.sh --pages 64 --size 2M --dry-run --persist
quiet "bind-nics.sh --dry-run (no device)" deploy/scripts/bind-nics.sh --dry-run
if deploy/scripts/bind-nics.sh --dry-run 00:zz.0 > /dev/null 2>&1; then
    fail "bind-nics.sh accepted a malformed PCI address"
else ok "bind-nics.sh refuses a malformed PCI address"; fi
# The scripts against a fake sysfs (SYSFS=...): they must change exactly the right files.
fs=$tmp/sys
mkdir -p "$fs/kernel/mm/hugepages/hugepages-2048kB"
echo 0 > "$fs/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
quiet "hugepages.sh on a fake sysfs" env SYSFS="$fs" deploy/scripts/hugepages.sh --pages 16 --no-mount
[ "$(cat "$fs/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" = 16 ] && ok "hugepages.sh reserved 16 pages" \
    || fail "hugepages.sh: nr_hugepages is $(cat "$fs/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), want 16"
for n in 0 1; do
    mkdir -p "$fs/devices/system/node/node$n/hugepages/hugepages-2048kB"
    echo 0 > "$fs/devices/system/node/node$n/hugepages/hugepages-2048kB/nr_hugepages"
done
quiet "hugepages.sh on a fake 2-node sysfs" env SYSFS="$fs" deploy/scripts/hugepages.sh --pages 16 --no-mount
got=$(cat "$fs"/devices/system/node/node{0,1}/hugepages/hugepages-2048kB/nr_hugepages | tr '\n' ' ')
[ "$got" = "8 8 " ] && ok "hugepages.sh split 16 pages over 2 nodes" || fail "hugepages.sh per node: $got, want 8 8"
dev=$fs/bus/pci/devices/0000:03:00.0
mkdir -p "$dev/net/eth9" "$fs/bus/pci/drivers/ixgbe"
ln -s ../../../bus/pci/drivers/ixgbe "$dev/driver"
echo up > "$dev/net/eth9/operstate"
if env SYSFS="$fs" PATH=/usr/bin:/bin deploy/scripts/bind-nics.sh --dry-run 03:00.0 > "$tmp/out" 2>&1; then
    fail "bind-nics.sh would take interface eth9 that is up"
elif grep -q "kernel interface eth9 and it is up" "$tmp/out"; then ok "bind-nics.sh refuses a NIC whose interface is up"
else fail "bind-nics.sh failed for another reason: $(cat "$tmp/out")"; fi
echo down > "$dev/net/eth9/operstate"
env SYSFS="$fs" PATH=/usr/bin:/bin deploy/scripts/bind-nics.sh --dry-run 03:00.0 > "$tmp/out" 2>&1
grep -q "0000:03:00.0: ixgbe -> vfio-pci (kernel interface eth9 goes away)" "$tmp/out" \
    && ok "bind-nics.sh --dry-run names the driver change" || { fail "bind-nics.sh --dry-run output"; cat "$tmp/out"; }
quiet "install.sh --dry-run" env DESTDIR="$tmp/dry" deploy/install.sh --dry-run --no-build
[ ! -e "$tmp/dry" ] && ok "install.sh --dry-run wrote nothing" || fail "install.sh --dry-run wrote $tmp/dry"

# --- install into a staging tree, verify the units, uninstall --------------------------
mkdir -p "$tmp/bin"
for b in fwd fwmgmt fwctl; do
    if [ -x "target/release/$b" ]; then cp "target/release/$b" "$tmp/bin/"
    else printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/$b"; chmod +x "$tmp/bin/$b"; fi
done
stage=$tmp/stage
quiet "install.sh into DESTDIR" env DESTDIR="$stage" deploy/install.sh --no-build --bin-dir "$tmp/bin"
for f in /usr/local/sbin/fwd /usr/local/bin/fwmgmt /usr/local/bin/fwctl /etc/systemd/system/fwd.service \
    /etc/fwd/fwd.yaml /etc/fwd/fwmgmt.token /etc/default/fwd /usr/local/share/fwd/installed-files; do
    [ -e "$stage$f" ] || fail "install.sh did not install $f"
done
# The units name /usr/local; point them into the staging tree so the commands exist.
mkdir -p "$tmp/units"
for u in "$stage"/etc/systemd/system/*.service; do
    sed "s#/usr/local/#$stage/usr/local/#g" "$u" > "$tmp/units/${u##*/}"
done
if command -v systemd-analyze > /dev/null; then
    quiet "systemd-analyze verify $(cd "$tmp/units" && echo *.service)" systemd-analyze verify "$tmp"/units/*.service
    # The hardening must not regress (exposure on systemd's 0-10 scale, x10 here; the
    # figures are in docs/deploy.md).
    for u in fwd.service:35 fwmgmt.service:20; do
        quiet "systemd-analyze security ${u%%:*} <= ${u##*:}/10" \
            systemd-analyze security --offline=true --threshold="${u##*:}" --no-pager "$tmp/units/${u%%:*}"
    done
else fail "systemd-analyze missing (apt-get install systemd)"; fi
quiet "install.sh --uninstall from DESTDIR" env DESTDIR="$stage" deploy/install.sh --uninstall
left=$(cd "$stage" && find . -type f ! -path './etc/*' | sort)
[ -z "$left" ] && ok "uninstall left only /etc" || fail "uninstall left: $left"
quiet "install.sh --uninstall --purge" env DESTDIR="$stage" deploy/install.sh --uninstall --purge
left=$(cd "$stage" && find . -type f | sort)
[ -z "$left" ] && ok "purge left nothing" || fail "purge left: $left"

# --- Prometheus ----------------------------------------------------------------------
if ! command -v promtool > /dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
    echo "installing promtool (Debian package prometheus)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus > "$tmp/apt" 2>&1 \
        || { apt-get update -qq > /dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus > "$tmp/apt" 2>&1; } \
        || tail -5 "$tmp/apt"
fi
if command -v promtool > /dev/null; then
    quiet "promtool check rules alerts.yml" promtool check rules deploy/prometheus/alerts.yml
    quiet "promtool test rules alerts_test.yml" promtool test rules deploy/prometheus/alerts_test.yml
    # check config opens the token file: point it at a temporary one.
    mkdir -p "$tmp/prom" && cp deploy/prometheus/alerts.yml "$tmp/prom/" && echo token > "$tmp/prom/token"
    sed "s#credentials_file: .*#credentials_file: $tmp/prom/token#" deploy/prometheus/prometheus.yml > "$tmp/prom/prometheus.yml"
    quiet "promtool check config prometheus.yml" promtool check config "$tmp/prom/prometheus.yml"
else fail "promtool missing (apt-get install prometheus)"; fi

# --- Grafana ---------------------------------------------------------------------------
d=deploy/grafana/fwd-dashboard.json
quiet "jq: $d is valid JSON with panels" jq -e '(.panels | length > 0) and (.uid | type == "string")' "$d"
dup=$(jq -r '[.panels[].id] | group_by(.) | map(select(length > 1)[0]) | .[]' "$d")
[ -z "$dup" ] && ok "dashboard panel ids unique" || fail "dashboard duplicate panel ids: $dup"
if python3 deploy/grafana/make-dashboard.py | cmp -s - "$d"; then ok "dashboard matches make-dashboard.py"
else fail "$d differs from make-dashboard.py output (regenerate it)"; fi

# --- metric names against mgmt's list, once it exists -------------------------------------
if [ -f mgmt/docs/metrics.md ] || [ -f docs/metrics.md ]; then
    doc=$(ls mgmt/docs/metrics.md docs/metrics.md 2>/dev/null | head -1)
    used=$( { grep -ohE 'fwd_[a-z_]+' deploy/prometheus/alerts.yml; python3 deploy/grafana/make-dashboard.py | grep -oE 'fwd_[a-z_]+'; } | sort -u)
    missing=$(for m in $used; do grep -qF "\`$m\`" "$doc" || echo "$m"; done)
    [ -z "$missing" ] && ok "every metric used is in $doc" || fail "metrics not in $doc: $(echo $missing)"
else
    skip "metric names not compared: mgmt's docs/metrics.md does not exist yet"
fi

if [ "$failed" = 0 ]; then echo "deploy/ci/check.sh: all checks passed"; else echo "deploy/ci/check.sh: FAILED"; fi
exit "$failed"
