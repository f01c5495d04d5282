#!/usr/bin/env bash
# Binds NICs to a DPDK-capable driver (vfio-pci by default) for fwd.
#
#   bind-nics.sh --dry-run 0000:03:00.0 0000:03:00.1   # print what would change
#   bind-nics.sh 0000:03:00.0 0000:03:00.1             # bind them to vfio-pci
#   bind-nics.sh --driver ixgbe 0000:03:00.0           # give one back to the kernel
#   bind-nics.sh --status                               # list network devices and drivers
#
# Uses dpdk-devbind.py (Debian package `dpdk`) when installed, else sysfs driver_override.
# Refuses to take a NIC whose kernel interface is up (it may be the SSH path) unless --force.
set -euo pipefail

driver=vfio-pci dry=0 force=0 status=0 devs=()
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --driver) driver=${2:?--driver needs a name}; shift 2 ;;
        --dry-run|-n) dry=1; shift ;;
        --force) force=1; shift ;;
        --status) status=1; shift ;;
        -h|--help) usage 0 ;;
        -*) echo "bind-nics.sh: unknown option '$1'" >&2; usage 2 >&2 ;;
        *) devs+=("$1"); shift ;;
    esac
done
sysfs=${SYSFS:-/sys}
pci=$sysfs/bus/pci/devices
devbind=$(command -v dpdk-devbind.py || true)

current_driver() { # PCI address -> driver name or "none"
    local l="$pci/$1/driver"
    if [ -L "$l" ]; then basename "$(readlink "$l")"; else echo none; fi
}
kernel_ifaces() { # PCI address -> kernel interface names, if any
    local d="$pci/$1/net"
    [ -d "$d" ] && ls "$d" || true
}

if [ "$status" = 1 ]; then
    if [ -n "$devbind" ]; then exec "$devbind" --status-dev net; fi
    for d in "$pci"/*; do
        [ "$(cat "$d/class" 2>/dev/null)" = 0x020000 ] || continue  # Ethernet controllers
        a=${d##*/}
        echo "$a driver=$(current_driver "$a") if=$(kernel_ifaces "$a" | tr '\n' ' ')"
    done
    exit 0
fi

[ ${#devs[@]} -gt 0 ] || { echo "bind-nics.sh: no PCI address given (nothing to do)"; exit 0; }
if [ "$dry" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "bind-nics.sh: run as root (or with --dry-run)" >&2
    exit 1
fi

# Normalise BB:DD.F to 0000:BB:DD.F and check every address before changing anything.
todo=()
for a in "${devs[@]}"; do
    [[ "$a" =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] && a="0000:$a"
    if ! [[ "$a" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
        echo "bind-nics.sh: '$a' is not a PCI address (DDDD:BB:DD.F)" >&2; exit 2
    fi
    [ -d "$pci/$a" ] || { echo "bind-nics.sh: no PCI device $a" >&2; exit 1; }
    cur=$(current_driver "$a")
    if [ "$cur" = "$driver" ]; then
        echo "bind-nics.sh: $a already on $driver (unchanged)"
        continue
    fi
    for i in $(kernel_ifaces "$a"); do
        if [ "$(cat "$pci/$a/net/$i/operstate" 2>/dev/null)" = up ] && [ "$force" = 0 ]; then
            echo "bind-nics.sh: $a is kernel interface $i and it is up; take it down first or pass --force" >&2
            exit 1
        fi
    done
    echo "bind-nics.sh: $a: $cur -> $driver$(i=$(kernel_ifaces "$a" | tr '\n' ' '); [ -n "$i" ] && echo " (kernel interface ${i% } goes away)")"
    todo+=("$a")
done
[ ${#todo[@]} -gt 0 ] || exit 0

if [ "$driver" = vfio-pci ]; then
    if [ -z "$(ls -A "$sysfs/kernel/iommu_groups" 2>/dev/null)" ]; then
        echo "bind-nics.sh: warning: no IOMMU groups: enable the IOMMU (intel_iommu=on iommu=pt or amd_iommu=on) on the kernel command line, see docs/deploy.md" >&2
    fi
    if [ "$dry" = 1 ]; then echo "would run: modprobe vfio-pci"; else modprobe vfio-pci; fi
fi

if [ "$dry" = 1 ]; then
    if [ -n "$devbind" ]; then
        echo "would run: $devbind --bind=$driver ${todo[*]}"
    else
        for a in "${todo[@]}"; do
            echo "would write $driver > $pci/$a/driver_override, unbind from $(current_driver "$a"), probe"
        done
    fi
    exit 0
fi

if [ -n "$devbind" ]; then
    extra=()
    [ "$force" = 1 ] && extra+=(--force)
    "$devbind" "${extra[@]}" --bind="$driver" "${todo[@]}"
else
    for a in "${todo[@]}"; do
        echo "$driver" > "$pci/$a/driver_override"
        if [ -L "$pci/$a/driver" ]; then echo "$a" > "$pci/$a/driver/unbind"; fi
        echo "$a" > "$sysfs/bus/pci/drivers_probe"
    done
fi
for a in "${todo[@]}"; do
    got=$(current_driver "$a")
    [ "$got" = "$driver" ] || { echo "bind-nics.sh: $a is on $got, not $driver" >&2; exit 1; }
    echo "bind-nics.sh: $a on $driver"
done
