#!/usr/bin/env bash
# Builds the Debian package fwd_VERSION_ARCH.deb (with fwd-dbgsym) into target/deb/.
#
#   deploy/build-deb.sh                          # cargo build --release, then package
#   deploy/build-deb.sh --profile dev --no-build # package target/debug's binaries (CI)
#   deploy/build-deb.sh --version 0.1.0-1+ci1    # add a changelog entry for that version
#   deploy/build-deb.sh --out DIR                # write the package elsewhere
#   deploy/build-deb.sh --source DIR             # deploy/ (debian/ included), docs/, README.md from DIR
#
# cargo (rustup's toolchain) builds fwd, fwmgmt and fwctl and runs the man-page generators
# (dataplane/examples/fwd-man.rs, mgmt/examples/mgmt-man.rs); then a tree is staged in
# OUT/fwd-UPSTREAM/ with deploy/debian as debian/, the binaries under bin/, the pages under
# man/ and the deploy/ files as they are in the repository, and dpkg-buildpackage packages
# it (debhelper: conffiles, maintainer scripts, dh_shlibdeps, dh_strip). Needs debhelper
# and dpkg-dev (`make deb-tools`). See docs/deploy.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
profile=release build=1 version="" out=$repo/target/deb src=$repo
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=${2:?--profile needs a cargo profile}; shift 2 ;;
        --no-build) build=0; shift ;;
        --version) version=${2:?--version needs a Debian version}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --source) src=${2:?--source needs a directory}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "build-deb.sh: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
done
say() { echo "build-deb.sh: $*"; }
for t in dpkg-buildpackage dh dpkg-parsechangelog; do
    command -v "$t" > /dev/null || { echo "build-deb.sh: $t missing: make deb-tools (debhelper, dpkg-dev)" >&2; exit 1; }
done
case "$profile" in dev|debug) profile=dev bindir=target/debug ;; *) bindir=target/$profile ;; esac

# The changelog's upstream version is the crates' version.
upstream=$(dpkg-parsechangelog -l deploy/debian/changelog -S Version | sed 's/-[^-]*$//')
for c in proto dataplane mgmt; do
    v=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$c/Cargo.toml" | head -1)
    [ "$v" = "$upstream" ] || { echo "build-deb.sh: $c/Cargo.toml is $v, deploy/debian/changelog $upstream" >&2; exit 1; }
done

if [ "$build" = 1 ]; then
    say "cargo build --profile $profile (fwd, fwmgmt, fwctl)"
    cargo build --locked --profile "$profile" -p dataplane --bin fwd -p mgmt --bin fwmgmt --bin fwctl
fi
for b in fwd fwmgmt fwctl; do
    [ -x "$bindir/$b" ] || { echo "build-deb.sh: $bindir/$b not built (drop --no-build)" >&2; exit 1; }
done

stage=$out/fwd-$upstream
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/man" "$stage/docs"
# The generators compile the binaries' sources: in the release profile fat LTO would take
# minutes for two throw-away programs, so they always use the dev profile (the one CI and
# development builds already have).
say "man pages from the clap definitions"
cargo run --locked -q -p dataplane --example fwd-man -- "$stage/man"
cargo run --locked -q -p mgmt --example mgmt-man -- "$stage/man"
# The crates linked into the binaries, with their licenses (debian/copyright points here).
cargo tree --locked -q -e normal -p dataplane -p mgmt --prefix none -f '{p} {l}' \
    | sed 's/ (\/[^)]*)//; s/ (\*)$//' | sort -u > "$stage/crate-licenses.txt"

cp -a "$src/deploy/debian" "$stage/debian"
for b in fwd fwmgmt fwctl; do cp -l "$bindir/$b" "$stage/bin/" 2> /dev/null || cp "$bindir/$b" "$stage/bin/"; done
mkdir -p "$stage/deploy"
for d in systemd scripts skeleton examples prometheus grafana; do cp -a "$src/deploy/$d" "$stage/deploy/"; done
cp -a "$src/docs/deploy.md" "$stage/docs/"
cp -a "$src/README.md" "$stage/"

if [ -n "$version" ]; then
    maint=$(dpkg-parsechangelog -l deploy/debian/changelog -S Maintainer)
    dist=$(dpkg-parsechangelog -l deploy/debian/changelog -S Distribution)
    { printf 'fwd (%s) %s; urgency=medium\n\n  * Build of %s.\n\n -- %s  %s\n\n' \
        "$version" "$dist" "$(git rev-parse --short HEAD 2> /dev/null || echo 'a work tree')" "$maint" "$(date -R)"
      cat deploy/debian/changelog; } > "$stage/debian/changelog"
fi

say "dpkg-buildpackage in $stage"
(cd "$stage" && dpkg-buildpackage --build=binary --no-sign) > "$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log"; echo "build-deb.sh: dpkg-buildpackage failed (log: $out/build.log)" >&2; exit 1; }
[ -n "${FWD_DEB_KEEP_STAGE:-}" ] || rm -rf "$stage"
full=$(dpkg-parsechangelog -l deploy/debian/changelog -S Version)
[ -z "$version" ] || full=$version
say "built:"
ls -1 "$out"/fwd*_"$full"_*.deb
