#!/usr/bin/env bash
# Reserves hugepages for fwd now and, with --persist, at every boot.
#
#   hugepages.sh --pages 1024 --size 2M            # reserve 1024 x 2 MiB now, mount hugetlbfs
#   hugepages.sh --pages 4 --size 1G --persist     # + sysctl.d (2M) or a kernel-arg hint (1G)
#   hugepages.sh --pages 1024 --dry-run            # print what would change, change nothing
#   hugepages.sh --pages 1024 --no-mount           # reserve only (systemd mounts /dev/hugepages)
#
# Uses dpdk-hugepages.py (Debian package `dpdk`) when it is installed, else sysfs directly.
# Pages are reserved on every NUMA node evenly unless --node N is given (fwd's workers and
# NICs should share a node; see docs/deploy.md). 1 GiB pages can rarely be reserved after
# boot: --persist prints the kernel command line for them instead.
set -euo pipefail

pages=1024 size=2M node="" persist=0 dry=0 mnt=/dev/hugepages mount=1
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --pages) pages=${2:?--pages needs a number}; shift 2 ;;
        --size) size=${2:?--size needs 2M or 1G}; shift 2 ;;
        --node) node=${2:?--node needs a NUMA node number}; shift 2 ;;
        --mount) mnt=${2:?--mount needs a directory}; shift 2 ;;
        --persist) persist=1; shift ;;
        --no-mount) mount=0; shift ;;
        --dry-run|-n) dry=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "hugepages.sh: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
done
case "$pages" in ''|*[!0-9]*) echo "hugepages.sh: --pages '$pages' is not a number" >&2; exit 2 ;; esac
case "$size" in
    2M|2m|2048kB) kb=2048 size=2M ;;
    1G|1g|1048576kB) kb=1048576 size=1G ;;
    *) echo "hugepages.sh: --size '$size': use 2M or 1G" >&2; exit 2 ;;
esac
sysfs=${SYSFS:-/sys}
say() { echo "hugepages.sh: $*"; }
run() {
    if [ "$dry" = 1 ]; then echo "would run: $*"; else "$@"; fi
}
write() { # write VALUE FILE
    if [ "$dry" = 1 ]; then echo "would write $1 > $2"; else echo "$1" > "$2"; fi
}

if [ "$dry" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "hugepages.sh: run as root (or with --dry-run)" >&2
    exit 1
fi

# NUMA nodes to spread the pages over.
if [ -n "$node" ]; then
    nodes=("$node")
elif compgen -G "$sysfs/devices/system/node/node[0-9]*" > /dev/null; then
    nodes=()
    for d in "$sysfs"/devices/system/node/node[0-9]*; do nodes+=("${d##*node}"); done
else
    nodes=()
fi

if [ "${#nodes[@]}" -gt 1 ] || [ -n "$node" ]; then
    per=$(( (pages + ${#nodes[@]} - 1) / ${#nodes[@]} ))
    for n in "${nodes[@]}"; do
        f="$sysfs/devices/system/node/node$n/hugepages/hugepages-${kb}kB/nr_hugepages"
        [ -e "$f" ] || { echo "hugepages.sh: $f missing (node $n, size $size unsupported?)" >&2; exit 1; }
        have=$(cat "$f")
        say "node $n: $have -> $per pages of $size"
        [ "$have" = "$per" ] || write "$per" "$f"
    done
elif command -v dpdk-hugepages.py > /dev/null && [ -z "${SYSFS:-}" ]; then
    say "reserving $pages pages of $size with dpdk-hugepages.py"
    run dpdk-hugepages.py --pagesize "$size" --reserve "$((pages * kb))K"
else
    f="$sysfs/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages"
    [ -e "$f" ] || { echo "hugepages.sh: $f missing (size $size unsupported by this CPU/kernel?)" >&2; exit 1; }
    have=$(cat "$f")
    say "$have -> $pages pages of $size"
    [ "$have" = "$pages" ] || write "$pages" "$f"
fi

# The hugetlbfs mount (systemd's dev-hugepages.mount provides /dev/hugepages for the
# default size; 1 GiB pages need their own mount when the default is 2 MiB).
if [ "$mount" = 0 ]; then
    :
elif ! grep -qs " $mnt hugetlbfs " /proc/mounts; then
    run mkdir -p "$mnt"
    run mount -t hugetlbfs -o "pagesize=$size" nodev "$mnt"
else
    say "$mnt already mounted"
fi

if [ "$dry" = 0 ] && [ -z "${SYSFS:-}" ]; then
    total=$(cat "$sysfs/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages")
    if [ "$total" -lt "$pages" ]; then
        echo "hugepages.sh: only $total of $pages pages of $size reserved (memory fragmented: reserve them at boot, see --persist)" >&2
        exit 1
    fi
    say "ok: $total pages of $size"
fi

if [ "$persist" = 1 ]; then
    if [ "$size" = 2M ]; then
        conf=${SYSCTL_DIR:-/etc/sysctl.d}/80-fwd-hugepages.conf
        say "persisting in $conf (applied early at boot by systemd-sysctl)"
        if [ "$dry" = 1 ]; then
            echo "would write vm.nr_hugepages = $pages > $conf"
        else
            printf '# fwd: 2 MiB hugepages (deploy/scripts/hugepages.sh)\nvm.nr_hugepages = %s\n' "$pages" > "$conf"
        fi
    fi
    say "for reliable reservation add to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub):"
    echo "    default_hugepagesz=$size hugepagesz=$size hugepages=$pages"
fi
