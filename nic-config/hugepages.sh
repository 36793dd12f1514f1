#!/bin/sh
# Reserves hugepages for DPDK with dpdk-hugepages.py and mounts hugetlbfs, or says that the
# node must run with --no-huge. Exit status: 0 pages reserved, 2 use --no-huge, 1 usage.
#
#   hugepages.sh [PAGES [SIZE]]     SIZE is 2M (default) or 1G; PAGES defaults to 256
#   hugepages.sh --show
#   hugepages.sh --clear
#
# 1G pages usually need the kernel command line (hugepagesz=1G hugepages=N) as memory
# fragments after boot.
set -eu

pages=${1:-256}
size=${2:-2M}
tool=$(command -v dpdk-hugepages.py || true)

if [ -z "$tool" ]; then
    echo "hugepages: dpdk-hugepages.py not found (apt-get install dpdk); run with --no-huge" >&2
    exit 2
fi
case "$pages" in
    --show) exec "$tool" --show ;;
    --clear) exec "$tool" --clear --unmount ;;
    ''|*[!0-9]*) echo "usage: $0 [PAGES [2M|1G]] | --show | --clear" >&2; exit 1 ;;
esac
case "$size" in
    2M|1G) ;;
    *) echo "hugepages: SIZE must be 2M or 1G" >&2; exit 1 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
    echo "hugepages: needs root to reserve pages; run with --no-huge instead" >&2
    exit 2
fi

mb=$(( pages * $( [ "$size" = 1G ] && echo 1024 || echo 2 ) ))
# Reserve and mount (--setup = clear, unmount, reserve, mount); a machine that cannot give
# the pages falls through to --no-huge.
"$tool" --pagesize "$size" --setup "${mb}M" >/dev/null 2>&1 || true
kb=$( [ "$size" = 1G ] && echo 1048576 || echo 2048 )
got=$(cat "/sys/kernel/mm/hugepages/hugepages-${kb}kB/nr_hugepages" 2>/dev/null || echo 0)
if [ "$got" -lt "$pages" ]; then
    echo "hugepages: asked for $pages x $size, the kernel gave $got; run with --no-huge" >&2
    exit 2
fi
# Pages held by files left in hugetlbfs (a DPDK process without --huge-unlink keeps its
# files after it ends) are reserved but not free.
free=$(awk -v k="$kb" '$1 == "HugePages_Free:" && k == 2048 { print $2 }' /proc/meminfo)
if [ -n "$free" ] && [ "$free" -lt "$pages" ]; then
    echo "hugepages: $got x $size reserved but only $free free (files left in hugetlbfs:" \
        "see 'hugepages.sh --show'); run with --no-huge" >&2
    exit 2
fi
if ! grep -qs hugetlbfs /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs -o "pagesize=$size" nodev /dev/hugepages
fi
echo "hugepages: $got x $size reserved, hugetlbfs mounted"
"$tool" --show
