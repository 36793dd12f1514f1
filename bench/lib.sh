# Shell functions the benchmark scripts share; sourced (`source "$ROOT/bench/lib.sh"`) after
# the script has set ROOT to the repository.

# The head of a benchmark node's config, on stdout: the [node] table (node 0 of 1 on IPV4,
# and IPV6 if given, UDP port 7000, sized for 1M users), the demo activity from now with a
# fixed random seed, and the demo keys; a blank line after them, for the script's own tables.
demo_node_head() { # ipv4, [ipv6]
  local ipv4=$1 ipv6=${2:-}
  cat <<TOML
[node]
index = 0
count = 1
ipv4 = "$ipv4"
TOML
  if [ -n "$ipv6" ]; then
    echo "ipv6 = \"$ipv6\""
  fi
  cat <<TOML
port = 7000
planned_users = 1000000

[activity]
file = "${ROOT:?}/seeds/demo.toml"
epoch = "now"
random_seed = 2015

[keys]
token_key = "$ROOT/nic-config/keys/demo-token.key"
claim_key = "$ROOT/nic-config/keys/demo-claim.key"

TOML
}

# The [dpdk] and [[port]] sections of a node with one worker lcore (CPU 1) on one virtual
# device, the port named as the vdev: huge pages (true/false), file prefix, the vdev, memory
# in MB, then any more [[port]] lines (mbufs = N).
one_worker_dpdk() {
  cat <<TOML
[dpdk]
lcores = "0@0,1@1"
main_lcore = 0
memory_mb = $4
huge = $1
file_prefix = "$2"
vdevs = ["$3"]
log_level = "notice"
telemetry = false
idle_sleep_us = 0

[[port]]
name = "${3%%,*}"
rx_desc = 1024
tx_desc = 1024
rss = false
${5:-}
TOML
}
