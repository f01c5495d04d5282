#!/usr/bin/env bash
# Checks the Debian package the way an administrator meets it, in a fresh Debian 12 chroot:
#
#   1. build it (deploy/build-deb.sh) from the binaries CI has already built, and a second
#      one with a higher version and a changed conffile; lintian with no errors;
#   2. `apt install ./fwd_*.deb` in a clean bookworm chroot (debootstrap minbase + systemd,
#      Debian's mirror resolves the DPDK dependencies): every file, conffile, unit,
#      enablement symlink, the user and group, the token (0640 root:fwd); the binaries'
#      libraries all found; `systemd-analyze verify` on the installed units; the units'
#      start condition fails until /etc/fwd/fwd.yaml exists; `fwd check` on every shipped
#      example from its installed path; `fwd --demo` starts and stops with the DPDK
#      drivers apt installed;
#   3. upgrade to the second package with the administrator's changes in place (a
#      conffile, /etc/default/fwd, fwd.yaml, the state directory): all kept;
#   4. remove (configuration and state stay), purge (the file list of the chroot is what it
#      was before the installation; no user, group or unit state is left).
#
#   deploy/ci/deb-check.sh                      # binaries from target/debug (built by CI)
#   FWD_DEB_PROFILE=release deploy/ci/deb-check.sh
#
# Needs root, debootstrap and lintian (`make deb-tools`). The chroot's base system is made
# once and kept in $FWD_DEB_CACHE (default /var/cache/fwd-deb-check), with apt's downloads;
# everything else lives in a temporary directory that is removed at the end.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cache=${FWD_DEB_CACHE:-/var/cache/fwd-deb-check}
mirror=${FWD_DEB_MIRROR:-http://deb.debian.org/debian}
security=${FWD_DEB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
profile=${FWD_DEB_PROFILE:-dev}
if [ "$(id -u)" -ne 0 ]; then echo "deb-check.sh: run as root (debootstrap, chroot)" >&2; exit 1; fi
for t in debootstrap lintian; do
    command -v "$t" > /dev/null || { echo "deb-check.sh: $t missing: make deb-tools" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/fwd-deb-check.XXXXXX)
root=$tmp/root
mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[i]}" 2> /dev/null || umount -l "${mounts[i]}"
    done
    # Never recurse into a bind mount of the host's /dev or of the cache.
    if findmnt -rn -o TARGET | grep -q "^$tmp/"; then echo "deb-check.sh: $tmp still has mounts; left in place" >&2
    else rm -rf --one-file-system "$tmp"; fi
}
trap cleanup EXIT
failed=0
ok() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; failed=1; }
check() { # check WHAT COMMAND...: passes when the command exits 0
    local what=$1; shift
    if "$@" > "$tmp/out" 2>&1; then ok "$what"; else fail "$what"; sed 's/^/      /' "$tmp/out" | tail -20; fi
}
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
apt_root() { in_root apt-get -y -q -o Dpkg::Use-Pty=0 "$@"; }
phase_start=$SECONDS
phase() { echo "--- $* ($((SECONDS - phase_start)) s so far)"; }

# --- 1. the packages ---------------------------------------------------------------------
phase "building the packages"
deb=$tmp/deb
version=$(dpkg-parsechangelog -l deploy/debian/changelog -S Version)
upgrade_version=$version+ci1
# The debug build's symbols make a large -dbgsym package nobody installs here, and xz's
# default level spends ~15 s on the debug-build binaries (they compress the same way).
export DEB_BUILD_OPTIONS="noautodbgsym ${DEB_BUILD_OPTIONS:-}" DPKG_DEB_COMPRESSOR_LEVEL=1
if ! deploy/build-deb.sh --profile "$profile" --no-build --out "$deb" > "$tmp/build.out" 2>&1; then
    cat "$tmp/build.out"; echo "deb-check.sh: FAILED (package build)"; exit 1
fi
# The upgrade: the same tree with a changed conffile, one version higher.
mkdir -p "$tmp/src/docs"
cp -a deploy "$tmp/src/" && cp -a docs/deploy.md "$tmp/src/docs/" && cp -a README.md "$tmp/src/"
echo "# changed in $upgrade_version" >> "$tmp/src/deploy/examples/router.nft"
if ! deploy/build-deb.sh --profile "$profile" --no-build --out "$deb" --source "$tmp/src" \
    --version "$upgrade_version" > "$tmp/build.out" 2>&1; then
    cat "$tmp/build.out"; echo "deb-check.sh: FAILED (upgrade package build)"; exit 1
fi
arch=$(dpkg --print-architecture)
pkg1=$deb/fwd_${version}_$arch.deb pkg2=$deb/fwd_${upgrade_version}_$arch.deb
ok "built $(basename "$pkg1") ($(du -k "$pkg1" | cut -f1) KiB) and $(basename "$pkg2")"

phase "lintian"
# Errors and warnings fail; infos are printed. Each tag the package keeps is overridden with
# its reason in deploy/debian/fwd.lintian-overrides (shown as O:).
# (lintian's own --fail-on counts overridden warnings once --show-overrides is given.)
lintian --display-info --pedantic --show-overrides "$deb/fwd_${version}_$arch.changes" > "$tmp/lintian" 2>&1
grep -E '^[A-Z]: ' "$tmp/lintian" | sed 's/^/      /'
n() { grep -c "^$1: " "$tmp/lintian"; }
summary="$(n E) errors, $(n W) warnings, $(n I) infos, $(n P) pedantic, $(n O) overridden"
if grep -qvE '^(running with root privileges|N:|[A-Z]: )' "$tmp/lintian"; then fail "lintian failed to run"; cat "$tmp/lintian"
elif grep -qE '^[EW]: ' "$tmp/lintian"; then fail "lintian: $summary"
else ok "lintian: $summary"; fi

# --- 2. a clean Debian 12 and the installation --------------------------------------------
phase "chroot"
mkdir -p "$cache/archives/partial"
(
    flock 9
    if [ ! -e "$cache/base/.complete" ]; then
        echo "making the bookworm base system in $cache/base (once; debootstrap)"
        rm -rf "$cache/base"
        debootstrap --variant=minbase --include=systemd --cache-dir="$cache/archives" \
            bookworm "$cache/base" "$mirror" > "$cache/debootstrap.log" 2>&1 \
            || { tail -20 "$cache/debootstrap.log"; exit 1; }
        printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
            "$mirror" "$mirror" "$security" > "$cache/base/etc/apt/sources.list"
        rm -f "$cache"/base/var/cache/apt/archives/*.deb
        touch "$cache/base/.complete"
    fi
) 9> "$cache/lock" || { echo "deb-check.sh: FAILED (debootstrap; log in $cache/debootstrap.log)"; exit 1; }
cp -a "$cache/base" "$root"
rm -f "$root/.complete"
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
mount -t sysfs -o ro sysfs "$root/sys" && mounts+=("$root/sys")
mount --bind /dev "$root/dev" && mounts+=("$root/dev")
# An empty /run: no /run/systemd/system, so the maintainer scripts start nothing.
mount -t tmpfs tmpfs "$root/run" && mounts+=("$root/run")
mount --bind "$cache/archives" "$root/var/cache/apt/archives" && mounts+=("$root/var/cache/apt/archives")
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The dependencies' init scripts stay stopped too (invoke-rc.d runs them without systemd).
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d" && chmod 0755 "$root/usr/sbin/policy-rc.d"
apt_root update > "$tmp/apt" 2>&1 || { cat "$tmp/apt"; fail "apt-get update in the chroot"; }
# What is on the system before the package: compared with what is left after the purge
# (the cache of the dynamic linker and adduser's backups of the account files aside).
snapshot() {
    in_root find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
        -o -path /var/cache -o -path /var/log -o -path /var/lib/apt -o -path /var/lib/dpkg \) -prune \
        -o -print | grep -vxE '/etc/ld.so.cache|/etc/(passwd|group|shadow|gshadow)-' | sort
}
cp "$pkg1" "$pkg2" "$root/tmp/"
install1="apt -y -q -o Dpkg::Use-Pty=0 install ./$(basename "$pkg1")"

phase "$install1"
# apt resolves the dependencies (DPDK libraries and drivers, recommended packages
# included, as a plain `apt install` does) and installs them first; the snapshot of the
# system is taken between them and fwd, so that the purge can be compared with it exactly.
t=$SECONDS
deps=$(in_root sh -c "cd /tmp && $install1 --simulate" 2> "$tmp/apt" | awk '/^Inst / && $2 != "fwd" {print $2}')
if [ -z "$deps" ]; then cat "$tmp/apt"; echo "deb-check.sh: FAILED (apt could not resolve the dependencies)"; exit 1; fi
apt_root install $deps > "$tmp/apt" 2>&1 || { cat "$tmp/apt"; echo "deb-check.sh: FAILED (dependencies)"; exit 1; }
echo "      apt resolved $(echo $deps | wc -w) packages; DPDK: $(echo $deps | tr ' ' '\n' | grep '^librte-' | tr '\n' ' ')"
snapshot > "$tmp/before"
if in_root sh -c "cd /tmp && $install1" > "$tmp/apt" 2>&1; then
    ok "$install1 ($((SECONDS - t)) s with the dependencies)"
else
    cat "$tmp/apt"; echo "deb-check.sh: FAILED (installation)"; exit 1
fi

check "dpkg --verify fwd (every packaged file as shipped)" in_root dpkg --verify fwd
missing=""
for f in /usr/sbin/fwd /usr/bin/fwmgmt /usr/bin/fwctl /usr/libexec/fwd/hugepages.sh /usr/libexec/fwd/bind-nics.sh \
    /lib/systemd/system/{fwd,fwmgmt,fwd-hugepages,fwd-bind-nics}.service \
    /lib/systemd/system/{fwd,fwmgmt,fwd-hugepages,fwd-bind-nics}.service.d/wait-for-config.conf \
    /etc/default/fwd /etc/default/fwmgmt /etc/fwd/router.nft /etc/fwd/fwmgmt.token /usr/share/fwd/fwd.yaml \
    /usr/share/fwd/prometheus/alerts.yml /usr/share/fwd/prometheus/prometheus.yml /usr/share/fwd/grafana/fwd-dashboard.json \
    /usr/share/doc/fwd/{copyright,deploy.md,README.Debian,crate-licenses.txt} \
    /usr/share/doc/fwd/examples/{demo,router,edge-filter}.yaml /usr/share/doc/fwd/examples/{router,edge-filter}.nft \
    /usr/share/man/man8/{fwd,fwd-check,fwmgmt}.8.gz /usr/share/man/man1/{fwctl,fwctl-conntrack-list}.1.gz; do
    [ -e "$root$f" ] || missing="$missing $f"
done
[ -z "$missing" ] && ok "installed files in place" || fail "not installed:$missing"
conffiles=$(in_root dpkg-query -W -f='${Conffiles}\n' fwd | awk 'NF {print $1}' | sort | tr '\n' ' ')
[ "$conffiles" = "/etc/default/fwd /etc/default/fwmgmt /etc/fwd/router.nft " ] && ok "conffiles: $conffiles" \
    || fail "conffiles: '$conffiles'"
! grep -rn /usr/local "$root"/lib/systemd/system/fwd*.service "$root"/lib/systemd/system/fwmgmt.service \
    "$root/usr/share/fwd/fwd.yaml" > "$tmp/out" && ok "no /usr/local path in the units" || fail "units name /usr/local: $(cat "$tmp/out")"
for b in /usr/sbin/fwd /usr/bin/fwmgmt /usr/bin/fwctl; do
    if in_root ldd "$b" | grep -q 'not found'; then fail "$b: libraries not found: $(in_root ldd "$b" | grep 'not found' | tr -s ' \n' ' ')"
    else ok "$b: every library found"; fi
    name=${b##*/}
    got=$(in_root "$b" --version 2>&1)
    [ "$got" = "$name ${version%-*}" ] && ok "$name --version: $got" || fail "$name --version: '$got', want '$name ${version%-*}'"
done

# The user, the group and the token.
pw=$(in_root getent passwd fwmgmt)
IFS=: read -r _ _ uid _ _ home shell <<< "$pw"
[ -n "$pw" ] && [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "$shell" = /usr/sbin/nologin ] \
    && ok "system user fwmgmt ($pw)" || fail "user fwmgmt: '$pw'"
in_root id -nG fwmgmt | grep -qw fwd && ok "fwmgmt is in group fwd" || fail "fwmgmt groups: $(in_root id -nG fwmgmt)"
st=$(in_root stat -c '%a %U %G %s' /etc/fwd/fwmgmt.token 2>&1)
[ "$st" = "640 root fwd 64" ] && grep -qxE '[0-9a-f]{64}' "$root/etc/fwd/fwmgmt.token" \
    && ok "token /etc/fwd/fwmgmt.token: 64 hex digits, mode 640 root:fwd" || fail "token: $st"
check "fwmgmt can read the token" in_root runuser -u fwmgmt -- cat /etc/fwd/fwmgmt.token
in_root runuser -u nobody -- cat /etc/fwd/fwmgmt.token > /dev/null 2>&1 && fail "nobody can read the token" \
    || ok "other users cannot read the token"
token=$(cat "$root/etc/fwd/fwmgmt.token")

# The units: valid, enabled, not started before the configuration exists.
units=(fwd.service fwmgmt.service fwd-hugepages.service fwd-bind-nics.service)
if in_root systemd-analyze verify "${units[@]}" > "$tmp/out" 2>&1 && [ ! -s "$tmp/out" ]; then
    ok "systemd-analyze verify ${units[*]} (installed files and drop-ins)"
else fail "systemd-analyze verify"; sed 's/^/      /' "$tmp/out"; fi
for u in "${units[@]}"; do
    st=$(in_root systemctl is-enabled "$u" 2>&1)
    [ "$st" = enabled ] && ok "$u is enabled" || fail "$u is-enabled: $st"
    [ -e "$root/var/lib/systemd/deb-systemd-helper-enabled/$u.dsh-also" ] || fail "$u: no deb-systemd-helper state"
done
for l in multi-user.target.wants/fwd.service multi-user.target.wants/fwmgmt.service \
    fwd.service.wants/fwd-hugepages.service fwd.service.wants/fwd-bind-nics.service; do
    [ "$(readlink "$root/etc/systemd/system/$l")" = "/lib/systemd/system/${l#*/}" ] || fail "symlink /etc/systemd/system/$l: $(readlink "$root/etc/systemd/system/$l")"
done
conditions() { # the condition every unit's drop-in adds, evaluated in the chroot
    in_root systemd-analyze condition "$(sed -n 's/^\(ConditionPathExists=.*\)/\1/p' \
        "$root/lib/systemd/system/fwd.service.d/wait-for-config.conf")" > /dev/null 2>&1
}
conditions && fail "the units would start without /etc/fwd/fwd.yaml" || ok "the units' start condition fails without /etc/fwd/fwd.yaml"

# Every shipped example through `fwd check`, from where the package put it.
for f in "$root"/usr/share/doc/fwd/examples/*.yaml "$root"/usr/share/doc/fwd/examples/*.nft \
    "$root/usr/share/fwd/fwd.yaml" "$root/etc/fwd/router.nft"; do
    check "fwd check ${f#"$root"}" in_root fwd check "${f#"$root"}"
done
# The DPDK runtime apt installed: EAL starts, the memif driver makes both ports, SIGTERM
# stops cleanly (own network namespace: memif's abstract sockets; 4 s).
unshare --net chroot "$root" env -i PATH=/usr/sbin:/usr/bin timeout -s TERM 4 fwd --demo > "$tmp/demo" 2>&1
if grep -q '^fwd: running: 1 workers, 2 ports' "$tmp/demo" && grep -q '^fwd: stopped' "$tmp/demo"; then
    ok "fwd --demo ran on the installed DPDK and stopped"
else fail "fwd --demo"; sed 's/^/      /' "$tmp/demo" | tail -20; fi

# --- 3. upgrade with the administrator's changes -------------------------------------------
phase "upgrade to $upgrade_version"
echo "# the administrator's line" >> "$root/etc/fwd/router.nft"
sed -i 's/^FWD_NICS=.*/FWD_NICS=0000:03:00.0/' "$root/etc/default/fwd"
cp "$root/usr/share/fwd/fwd.yaml" "$root/etc/fwd/fwd.yaml"
echo "# the administrator's fwd.yaml" >> "$root/etc/fwd/fwd.yaml"
mkdir -p "$root/var/lib/fwd" && echo "persisted state" > "$root/var/lib/fwd/ruleset.nft"
conditions && ok "the units' start condition holds once /etc/fwd/fwd.yaml exists" || fail "condition with /etc/fwd/fwd.yaml"
cp -a "$root/etc/fwd" "$tmp/etc-fwd-before"
# As unattended upgrades run it: keep a changed conffile without asking.
if in_root sh -c "cd /tmp && apt -y -q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confold install ./$(basename "$pkg2")" > "$tmp/apt" 2>&1; then
    ok "upgraded to $upgrade_version"
else cat "$tmp/apt"; fail "upgrade"; fi
got=$(in_root dpkg-query -W -f='${Version}' fwd)
[ "$got" = "$upgrade_version" ] || fail "installed version $got, want $upgrade_version"
grep -q "the administrator's line" "$root/etc/fwd/router.nft" && ! grep -q "changed in $upgrade_version" "$root/etc/fwd/router.nft" \
    && ok "the changed conffile /etc/fwd/router.nft is kept" || fail "router.nft after the upgrade: $(tail -2 "$root/etc/fwd/router.nft")"
grep -q "changed in $upgrade_version" "$root/etc/fwd/router.nft.dpkg-dist" 2> /dev/null \
    && ok "the new version of it is beside it (router.nft.dpkg-dist)" || fail "no router.nft.dpkg-dist with the new version"
rm -f "$root/etc/fwd/router.nft.dpkg-dist"
diff -r "$tmp/etc-fwd-before" "$root/etc/fwd" > "$tmp/out" && ok "/etc/fwd (fwd.yaml, token) unchanged by the upgrade" \
    || fail "/etc/fwd changed: $(cat "$tmp/out")"
grep -qx 'FWD_NICS=0000:03:00.0' "$root/etc/default/fwd" && ok "/etc/default/fwd kept" || fail "/etc/default/fwd lost the change"
[ "$(cat "$root/var/lib/fwd/ruleset.nft" 2>&1)" = "persisted state" ] && ok "state directory /var/lib/fwd kept" || fail "/var/lib/fwd lost"
[ "$(cat "$root/etc/fwd/fwmgmt.token")" = "$token" ] || fail "the token changed"
for u in "${units[@]}"; do [ "$(in_root systemctl is-enabled "$u" 2>&1)" = enabled ] || fail "$u not enabled after the upgrade"; done

# --- 4. remove, purge ----------------------------------------------------------------------
phase "remove and purge"
apt_root remove fwd > "$tmp/apt" 2>&1 || { cat "$tmp/apt"; fail "apt-get remove fwd"; }
left=""
for f in /usr/sbin/fwd /usr/bin/fwmgmt /lib/systemd/system/fwd.service /usr/share/doc/fwd; do [ -e "$root$f" ] && left="$left $f"; done
[ -z "$left" ] && ok "remove: programs, units and documentation gone" || fail "remove left:$left"
kept=""
for f in /etc/fwd/router.nft /etc/fwd/fwd.yaml /etc/fwd/fwmgmt.token /etc/default/fwd /var/lib/fwd/ruleset.nft; do
    [ -e "$root$f" ] || kept="$kept $f"
done
[ -z "$kept" ] && in_root getent passwd fwmgmt > /dev/null && ok "remove: configuration, token, state and user kept" \
    || fail "remove deleted:$kept"
apt_root purge fwd > "$tmp/apt" 2>&1 || { cat "$tmp/apt"; fail "apt-get purge fwd"; }
in_root dpkg-query -W -f='${Status}' fwd 2> /dev/null | grep -q installed && fail "dpkg still knows fwd"
snapshot > "$tmp/after"
if diff "$tmp/before" "$tmp/after" > "$tmp/out"; then ok "purge: the chroot's files are those before the installation"
else fail "purge left or removed:"; sed 's/^/      /' "$tmp/out" | head -30; fi
left=$(in_root getent passwd fwmgmt; in_root getent group fwd fwmgmt
    cd "$root" && find var/lib/systemd/deb-systemd-helper-* etc/systemd 2> /dev/null | grep -E 'fwd|fwmgmt')
[ -z "$left" ] && ok "purge: no user, group or unit state left" || fail "purge left: $left"

echo "deb-check.sh: $((SECONDS - phase_start)) s"
if [ "$failed" = 0 ]; then echo "deb-check.sh: all checks passed"; else echo "deb-check.sh: FAILED"; fi
exit "$failed"
