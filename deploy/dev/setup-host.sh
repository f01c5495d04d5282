#!/usr/bin/env bash
# Prepares a Debian 12 machine to build, test and run the appliance on virtual ports:
# Debian packages (DPDK 22.11 and its PMDs, clang for bindgen, the Linux tools the
# end-to-end tests use as reference hosts) and 2 MiB hugepages. Idempotent; needs root.
#
#   deploy/dev/setup-host.sh            # install what is missing, reserve hugepages
#   HUGEPAGES=2048 deploy/dev/setup-host.sh
#   deploy/dev/setup-host.sh --only PACKAGE...   # just these packages (make deb-tools)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host.sh: run as root (DPDK needs hugepages and raw device access)" >&2
    exit 1
fi

packages=(
    # DPDK 22.11 headers, libraries, PMDs (net_memif, net_null, net_ring, net_af_packet,
    # net_tap, mempool ring) and dpdk-testpmd
    libdpdk-dev dpdk-dev pkg-config
    # bindgen needs libclang
    clang libclang-dev
    # reference hosts and the kernel as semantic reference in tests
    iproute2 ethtool nftables iptables conntrack iputils-ping netcat-openbsd tcpdump python3-scapy
    # the FTP server of the FTP helper e2e test (curl is its client)
    python3-pyftpdlib
    # deploy checks, perf plots
    systemd jq curl python3-matplotlib
    # the API fuzzer (schemathesis from PyPI) lives in a virtual environment (make api-fuzz)
    python3-venv python3-pip
)
only=0
if [ "${1:-}" = --only ]; then
    only=1
    shift
    packages=("$@")
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-host.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ "$only" = 0 ] || exit 0

# Hugepages: DPDK allocates mbufs and tables from them.
want=${HUGEPAGES:-1024}
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
have=$(cat "$nr")
if [ "$have" -lt "$want" ]; then
    echo "$want" > "$nr"
    have=$(cat "$nr")
    if [ "$have" -lt "$want" ]; then
        echo "setup-host.sh: only $have of $want hugepages could be reserved (memory fragmented?)" >&2
    fi
fi
mkdir -p /dev/hugepages
if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
    mount -t hugetlbfs nodev /dev/hugepages
fi
echo "setup-host.sh: ok ($(pkg-config --modversion libdpdk) DPDK, $have hugepages of 2 MiB)"
