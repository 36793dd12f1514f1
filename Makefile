# shake: the two commands are `make demo` and `make test`. Both install what they need on a
# fresh Debian 12 machine (as root), build, and run. See README.md.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build and the tests need: DPDK 22.11 and its pkg-config file, libclang
# for bindgen (and, with libbpf-dev's headers, the AF_XDP filter program), libpcap for net_pcap
# captures, iproute2/ethtool/ping for the veth tests, g++ for the
# fuzzers' libFuzzer, protoc for etcd's gRPC client; the fleet's engines (etcd, NATS with
# JetStream, Prometheus) for the fleet tests and `make demo-fleet` (`make demo` needs none);
# tshark for the SHAKE/1 dissector's tests (dpdk-dumpcap, for the live capture test, is in
# dpdk-dev); dpkg-dev for `make deb` (dpkg-shlibdeps, dpkg-architecture) and its test.
APT_PACKAGES := dpdk dpdk-dev libdpdk-dev pkg-config libclang-dev clang libbpf-dev libpcap-dev iproute2 ethtool iputils-ping python3 valgrind g++ \
	protobuf-compiler etcd-server nats-server prometheus tshark dpkg-dev
BUILD := build

.PHONY: all deps build release test lint fmt-check demo demo-fleet bench bench-datapath bench-seeds bench-fleet bench-afxdp bench-steering bench-worker-ir bench-page-walk xdp-filter hugepages clean \
	fuzz fuzz-deps fuzz-build fuzz-smoke fuzz-seeds

all: build

# Install what is missing, once. Quiet when everything is there.
deps:
	@missing=""; \
	pkg-config --exists libdpdk 2>/dev/null || missing="yes"; \
	ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing="yes"; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="yes"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: missing Debian packages ($(APT_PACKAGES)); run as root or install them" >&2; exit 1; fi; \
	  echo "make: installing $(APT_PACKAGES)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi; \
	pkg-config --modversion libdpdk | sed 's/^/make: DPDK /'
	@command -v $(CARGO) >/dev/null || { echo "make: cargo (Rust) is required" >&2; exit 1; }

build: deps
	$(CARGO) build --release --workspace

release: build

fmt-check:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

lint: deps fmt-check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

# `make test` lints while it builds: clippy-driver compiles the workspace's own crates for
# the tests (RUSTC_WORKSPACE_WRAPPER, as `cargo clippy` runs it, with its -D warnings in
# CLIPPY_ARGS), so every target gets the lints of `make lint` and the dependencies compile
# once, not a second time in check mode: 3 of the 19 minutes `make test` took from a clean
# clone on the 2-core machine. Every `cargo test` of the target runs with these variables
# (the workspace's fingerprint includes the wrapper).
CLIPPY_DRIVER ?= $(shell command -v clippy-driver)
LINTED := RUSTC_WORKSPACE_WRAPPER="$(CLIPPY_DRIVER)" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

# Everything: formatting, lints, unit, property, integration and DPDK tests, and a short run
# of every fuzz target.
test: deps fmt-check
	@test -n "$(CLIPPY_DRIVER)" || { echo "make: clippy-driver is required (rustup component add clippy)" >&2; exit 1; }
	$(LINTED) $(CARGO) test --workspace --all-targets --no-run
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	$(LINTED) $(CARGO) test --workspace
	$(MAKE) --no-print-directory fuzz-smoke

# --- Fuzzing (fuzz/: its own crate and workspace, see README "Fuzzing"). cargo-fuzz on the
# stable toolchain: `-s none` needs no sanitizer, so no nightly. `make fuzz` runs every target
# FUZZ_SECONDS; `make test` runs each FUZZ_SMOKE_SECONDS. Findings land in fuzz/artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
CARGO_FUZZ_VERSION := 0.13.2

fuzz-deps:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)

# 16 codegen units: both cores compile the large crates. The fuzz crate builds shake without
# its default features (no DPDK, no fleet engine clients): 74 crates, about 3 minutes of CPU
# from clean.
fuzz-build: fuzz-deps
	cd fuzz && $(CARGO) fuzz build -s none --codegen-units 16

fuzz: fuzz-build
	bash fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	bash fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# Rewrites the committed seed inputs (fuzz/seeds/) from the project's writers and test shapes.
fuzz-seeds:
	cd fuzz && $(CARGO) run --release --example gen_seeds

hugepages:
	bash nic-config/hugepages.sh

# --- The Debian package (nic-config/debian/; README "Installing the Debian package"):
# $(BUILD)/shake_<version>_<arch>.deb, built with dpkg-deb from the DEB_PROFILE build
# (release; `dev` packages the debug build). DEB_BIN packages that binary as it is, without
# running cargo (tests/deb_package.rs gives the one `cargo test` built); DEB_VERSION
# overrides Cargo.toml's version; DEB_COMPRESS is dpkg-deb's compressor (none is fastest).
DEB_PROFILE ?= release
DEB_BIN ?=
DEB_VERSION ?=
DEB_COMPRESS ?= xz
.PHONY: deb
deb: deps
	@bin="$(DEB_BIN)"; \
	if [ -z "$$bin" ]; then \
	  $(CARGO) build --profile $(DEB_PROFILE) --workspace || exit 1; \
	  bin="$${CARGO_TARGET_DIR:-target}/$(if $(filter dev test,$(DEB_PROFILE)),debug,$(DEB_PROFILE))/shake"; \
	fi; \
	DEB_VERSION="$(DEB_VERSION)" DEB_COMPRESS="$(DEB_COMPRESS)" bash nic-config/debian/build-deb.sh "$$bin" $(BUILD)

# The main job: the night of the event on one node, in about a minute (bench/demo.sh): the
# appliance on DPDK virtual devices, 100k phones from the bundled generator through a
# countdown, the round's opening, a live config change and the close; then the stop, the
# money reconciled, and the charts in build/demo.
demo: build
	bash bench/demo.sh

# A fleet on this machine: etcd, nats-server, Prometheus, 4 socket nodes with their claim
# shippers, the generator across them, a live push, a node killed and restarted, and the
# fund flow reconciled from the stream (bench/demo-fleet.sh).
demo-fleet: build
	bash bench/demo-fleet.sh

# The datapath micro-benchmark: ns per request over 32-frame bursts from 10M users.
bench-datapath: deps
	$(CARGO) bench --bench datapath

# Seedgen rate, start-up with 10M claims, and the user table's memory at 100M users.
bench-seeds: deps
	$(CARGO) bench --bench seeds_startup
	$(CARGO) bench --bench user_table

# Live config across a fleet: push to applied on 8 socket nodes and on 640 simulated control
# planes, with etcd's load (bench/fleet.rs; results in bench/results/fleet.txt).
bench-fleet: deps
	$(CARGO) bench --bench fleet

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# The fund flow: claims/s one shipper sustains into a local nats-server, and its lag at a
# given win rate (bench/ship.rs; results in bench/results/ship.txt). Needs nats-server.
.PHONY: bench-ship
bench-ship: deps
	$(CARGO) bench --bench ship

# --- End-to-end benchmark (bench/e2e.sh): testpmd, the appliance on DPDK and on sockets, side
# by side in one run, as ratios; results in build/bench/e2e.md and e2e.json. dpdk-testpmd is in
# Debian's dpdk-dev package. PHASE_S=10 seconds per phase by default.
.PHONY: bench-e2e
bench-e2e: deps
	bash bench/e2e.sh

# IPv4 beside IPv6 on net_pcap (bench/pcap6.sh): alternating phases, rx rates and ratios;
# results in build/bench-ipv6/result.txt.
.PHONY: bench-ipv6
bench-ipv6: deps
	bash bench/pcap6.sh

# The cost curve (bench/cost_curve.sh): ns and instructions (callgrind) per request at 1K, 1M,
# 10M and 100M users, memory per user, and start-up with 1M, 10M and 100M claims; results in
# build/bench-curve/result.txt. 100M needs ~13 GB of free memory and ~16 GB of disk under TMPDIR.
.PHONY: bench-curve
bench-curve: deps
	bash bench/cost_curve.sh

# What address translation costs this host (bench/page_walk.rs, ~30 s, part of bench-curve):
# dependent loads one per 4 KiB page against the same lines packed, up to the 100M-user
# table's span; its verdict says whether the guest's huge pages reach the TLB.
.PHONY: bench-page-walk
bench-page-walk: deps
	$(CARGO) bench --bench page_walk

# Instructions per frame of the whole DPDK worker (PMD, worker loop, decisions) beside
# dpdk-testpmd 5tswap, both on net_pcap under callgrind (bench/worker_ir.sh, ~2 min): the
# end-to-end phase counted instead of timed; results in build/bench-worker-ir/result.txt.
.PHONY: bench-worker-ir
bench-worker-ir: deps
	bash bench/worker_ir.sh

# AF_XDP beside the socket backend on one veth, driven by the same generator from a network
# namespace (bench/afxdp.sh): answers/s of each and the ratio per round; results in
# bench/results/afxdp.txt.
.PHONY: bench-afxdp
bench-afxdp: deps
	bash bench/afxdp.sh

# The cost of steering a user to its owning worker: instructions per frame (callgrind) and a
# two-worker run on a ring port (bench/steering.sh; results in bench/results/steering.txt).
.PHONY: bench-steering
bench-steering: deps
	bash bench/steering.sh

# The XDP program of an AF_XDP node that shares its NIC with the kernel
# (nic-config/afxdp-filter.c): only UDP to XDP_PORT goes to the node.
XDP_PORT ?= 7000
.PHONY: xdp-filter
xdp-filter: deps
	mkdir -p $(BUILD)
	clang -O2 -g -target bpf -DSHAKE_PORT=$(XDP_PORT) -I/usr/include/$$(uname -m)-linux-gnu \
		-c nic-config/afxdp-filter.c -o $(BUILD)/afxdp-filter.o

# Everything, in one run: the micro-benchmarks, then the end-to-end phases, whose table takes
# (d) from the datapath run just made.
bench: bench-datapath bench-seeds bench-fleet bench-ship bench-ipv6 bench-curve bench-afxdp \
	bench-steering bench-worker-ir
	SKIP_MICRO=1 bash bench/e2e.sh

# --- Soak (bench/soak.sh, not in `make test`): SOAK_SECONDS (300) of phones obeying
# retry_after_ms at a few-ms throttle floor, so nearly every request is a full decision;
# answer rate and anonymous memory sampled every 5 s; 0 invalid, journal verify, reconcile
# exact. Results in bench/results/soak.md.
.PHONY: soak
soak: deps
	bash bench/soak.sh
