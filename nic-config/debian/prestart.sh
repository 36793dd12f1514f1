#!/bin/sh
# /usr/lib/shake/prestart: runs as root before every start of shake.service
# (ExecStartPre=+), with /etc/default/shake's variables:
# - SHAKE_HUGEPAGES="PAGES SIZE": reserves the hugepages and mounts hugetlbfs at
#   /dev/hugepages (hugepages.sh, which fails the start when the kernel cannot give them);
# - where hugetlbfs is mounted at /dev/hugepages, makes /dev/hugepages/shake, the shake
#   user's own directory, where a DPDK node run as that user creates its hugepage files
#   (EAL --huge-dir=/dev/hugepages/shake): the mount itself is root's;
# - lets the shake user through /run/dpdk to its runtime directory, /run/dpdk/shake
#   (RuntimeDirectory=): a DPDK process run as root (dpdk-testpmd, a capture) that comes
#   first makes /run/dpdk with mode 0700.
set -eu

if [ -n "${SHAKE_HUGEPAGES:-}" ]; then
    # Two words: PAGES and SIZE.
    # shellcheck disable=SC2086
    /usr/lib/shake/hugepages.sh $SHAKE_HUGEPAGES
fi
if awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
    install -d -o shake -g shake -m 0700 /dev/hugepages/shake
fi
if [ -d /run/dpdk ]; then
    chmod go+x /run/dpdk
fi
