#!/usr/bin/env bash
# Installs fwd, fwmgmt and fwctl with their systemd units, scripts and a config skeleton.
#
#   deploy/install.sh                  # build (release) and install under /usr/local, as root
#   deploy/install.sh --dry-run        # print every step, change nothing
#   deploy/install.sh --no-build --bin-dir target/release
#   DESTDIR=/tmp/stage deploy/install.sh --no-build   # stage into a tree (packaging, CI)
#   deploy/install.sh --uninstall      # remove what was installed (keeps /etc/fwd, /var/lib/fwd)
#   deploy/install.sh --uninstall --purge              # ... and the config, state and users
#
# Then: edit /etc/fwd/fwd.yaml (and /etc/default/fwd for hugepages and NICs), and
#   systemctl enable --now fwd fwmgmt
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
bindir="" build=1 dry=0 uninstall=0 purge=0
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run|-n) dry=1; shift ;;
        --no-build) build=0; shift ;;
        --bin-dir) bindir=${2:?--bin-dir needs a directory}; shift 2 ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --uninstall) uninstall=1; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
done
bindir=${bindir:-$repo/target/release}
unitdir=/etc/systemd/system
libexec=$prefix/libexec/fwd
docdir=$prefix/share/doc/fwd
manifest=$prefix/share/fwd/installed-files
say() { echo "install.sh: $*"; }
run() { if [ "$dry" = 1 ]; then echo "would run: $*"; else "$@"; fi; }
# Users, groups and systemctl only act on the live system, not on a DESTDIR tree.
live() { if [ -n "$destdir" ]; then echo "skipped under DESTDIR: $*"; else run "$@"; fi; }

if [ "$dry" = 0 ] && [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or with --dry-run, or with DESTDIR=...)" >&2
    exit 1
fi

if [ "$uninstall" = 1 ]; then
    live systemctl disable --now fwmgmt.service fwd.service fwd-hugepages.service fwd-bind-nics.service
    if [ -f "$destdir$manifest" ]; then
        while IFS= read -r f; do
            [ -n "$f" ] && run rm -f "$destdir$f"
        done < "$destdir$manifest"
        run rm -f "$destdir$manifest"
        for d in "$libexec" "$docdir" "$prefix/share/fwd"; do
            [ -d "$destdir$d" ] && run rmdir --ignore-fail-on-non-empty "$destdir$d"
        done
    else
        say "no manifest at $destdir$manifest: nothing installed by this script"
    fi
    live systemctl daemon-reload
    if [ "$purge" = 1 ]; then
        run rm -rf "$destdir/etc/fwd" "$destdir/var/lib/fwd" "$destdir/var/lib/fwmgmt" \
            "$destdir/etc/default/fwd" "$destdir/etc/default/fwmgmt" \
            "$destdir/etc/sysctl.d/80-fwd-hugepages.conf"
        if [ -z "$destdir" ]; then
            id fwmgmt > /dev/null 2>&1 && run userdel fwmgmt
            getent group fwd > /dev/null && run groupdel fwd
        fi
    else
        say "kept /etc/fwd, /etc/default/fwd{,mgmt} and /var/lib/fwd (--purge removes them)"
    fi
    say "uninstalled"
    exit 0
fi

if [ "$build" = 1 ]; then
    say "building release binaries (cargo build --release)"
    run cargo build --release --manifest-path "$repo/Cargo.toml" -p dataplane --bin fwd
    run cargo build --release --manifest-path "$repo/Cargo.toml" -p mgmt --bins
fi

installed=()
put() { # put MODE SRC DST (DST absolute, without DESTDIR)
    run install -D -m "$1" "$2" "$destdir$3"
    installed+=("$3")
}
# Units and scripts name /usr/local; rewrite for another prefix.
put_unit() {
    local tmp
    tmp=$(mktemp)
    sed "s#/usr/local/#$prefix/#g" "$1" > "$tmp"
    put 0644 "$tmp" "$unitdir/$(basename "$1")"
    rm -f "$tmp"
}
keep() { # keep MODE SRC DST: config, never overwritten
    if [ -e "$destdir$3" ]; then say "kept existing $3"; else run install -D -m "$1" "$2" "$destdir$3"; fi
}

for b in fwd:sbin fwmgmt:bin fwctl:bin; do
    name=${b%%:*}
    src=$bindir/$name
    if [ ! -x "$src" ] && [ "$dry" = 0 ]; then
        echo "install.sh: $src not built (run without --no-build, or pass --bin-dir)" >&2
        exit 1
    fi
    put 0755 "$src" "$prefix/${b##*:}/$name"
done
put 0755 "$repo/deploy/scripts/hugepages.sh" "$libexec/hugepages.sh"
put 0755 "$repo/deploy/scripts/bind-nics.sh" "$libexec/bind-nics.sh"
for u in fwd.service fwmgmt.service fwd-hugepages.service fwd-bind-nics.service; do
    put_unit "$repo/deploy/systemd/$u"
done
put 0644 "$repo/docs/deploy.md" "$docdir/deploy.md"
for f in "$repo"/deploy/examples/*.yaml "$repo"/deploy/examples/*.nft; do
    [ -e "$f" ] && put 0644 "$f" "$docdir/examples/$(basename "$f")"
done

# Configuration skeleton: never overwrites what the operator has.
keep 0644 "$repo/deploy/systemd/fwd.default" /etc/default/fwd
keep 0644 "$repo/deploy/systemd/fwmgmt.default" /etc/default/fwmgmt
run install -d -m 0750 "$destdir/etc/fwd"
# The skeleton (PCI ports, hugepages, the default control socket the units expect); the
# examples (virtual ports, their own sockets) go to the doc directory.
keep 0640 "$repo/deploy/skeleton/fwd.yaml" /etc/fwd/fwd.yaml
for r in router.nft; do
    [ -e "$repo/deploy/examples/$r" ] && keep 0640 "$repo/deploy/examples/$r" "/etc/fwd/$r"
done
if [ ! -e "$destdir/etc/fwd/fwmgmt.token" ]; then
    say "generating the API token /etc/fwd/fwmgmt.token"
    if [ "$dry" = 1 ]; then
        echo "would write 32 random bytes (hex) > $destdir/etc/fwd/fwmgmt.token"
    else
        (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$destdir/etc/fwd/fwmgmt.token")
    fi
fi

# The fwd group opens the control socket and reads the token; fwmgmt is a system user in it.
getent group fwd > /dev/null 2>&1 || live groupadd --system fwd
id fwmgmt > /dev/null 2>&1 || live useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --user-group --groups fwd fwmgmt
live chgrp fwd /etc/fwd
live chown root:fwd /etc/fwd/fwmgmt.token
run chmod 0640 "$destdir/etc/fwd/fwmgmt.token"

if [ "$dry" = 1 ]; then
    echo "would write the list of installed files to $destdir$manifest"
else
    mkdir -p "$(dirname "$destdir$manifest")"
    printf '%s\n' "${installed[@]}" > "$destdir$manifest"
fi
live systemctl daemon-reload
say "installed ${#installed[@]} files under ${destdir:-/}. Next: edit /etc/fwd/fwd.yaml and /etc/default/fwd, then"
say "  $prefix/sbin/fwd check /etc/fwd/fwd.yaml && systemctl enable --now fwd fwmgmt"
