# nlproxy: a kube-proxy replacement that programs the kernel over netlink.
# `make deps` (root) installs what a fresh Debian machine lacks; `make demo`
# and `make check` call it when a library or tool is missing.

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

PKGS := libnl-3.0 libnl-genl-3.0 libmnl libnftnl libcurl jansson yajl yaml-0.1 libmicrohttpd
TEST_PKGS := cmocka
DEB_BUILD := build-essential pkg-config libnl-3-dev libnl-genl-3-dev libmnl-dev libnftnl-dev \
	libcurl4-openssl-dev libjansson-dev libyajl-dev libyaml-dev libcmocka-dev libmicrohttpd-dev
DEB_TOOLS := nftables iproute2 python3 ipvsadm curl
# tests/nft_encode.sh sorts the JSON listings it compares.
DEB_TOOLS += jq
# tests/watch.sh: a throwaway CA for the fake API server; tests/fuzz.sh: libFuzzer.
DEB_TOOLS += openssl clang libclang-rt-14-dev
# The demo's pods (examples/demo.sh part 2).
DEB_TOOLS += redis-server redis-tools
# tests/packaging_k8s.sh parses packaging/kubernetes.
DEB_TOOLS += python3-yaml
# tests/install.sh checks the man page.
DEB_TOOLS += groff-base
# tests/packaging.sh: the .deb and the image's root filesystem.
DEB_TOOLS += dpkg-dev debhelper fakeroot debootstrap
# tests/ipvs_vm.sh: Debian's kernel (with IPVS) under QEMU.
DEB_TOOLS += qemu-system-x86
# make bench: the plot of sync times (bench/plot.gp).
DEB_TOOLS += gnuplot-nox
# tests/watch_apiserver.sh (tests/cluster/apiserver.sh): etcd and etcdctl under the v1.26
# kube-apiserver of ../shared/kubernetes, whose binaries are xz-compressed.
DEB_TOOLS += etcd-server etcd-client xz-utils
# tests/cluster/images.sh: the real cluster's images without a registry (buildah, a static
# pause, busybox and conntrack in images), imported with containerd's ctr; runc runs them.
DEB_TOOLS += buildah containerd runc busybox-static conntrack

# make e2e (tests/cluster): a real cluster's nodes (containerd + runc, the CNI bridge, host-local,
# portmap and loopback plugins, iptables for the kubelet's and portmap's rules in the node's
# namespace) and its DNS (dnsmasq).
DEB_TOOLS += containerd runc containernetworking-plugins iptables dnsmasq-base

HAVE_PKGS := $(shell pkg-config --exists $(PKGS) $(TEST_PKGS) 2>/dev/null && command -v nft >/dev/null && echo yes)

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wno-format-nonliteral -Wundef -Wvla
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE -DNLPROXY_VERSION='"$(VERSION)"' -Iproxy -Inetlink -Iipvs $(WARN) \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS ?= -O2 -g
LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
TEST_LIBS := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

LIB_SRCS := $(filter-out proxy/main.c,$(sort $(wildcard proxy/*.c netlink/*.c ipvs/*.c)))
HDRS := $(wildcard proxy/*.h netlink/*.h ipvs/*.h)
TEST_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TEST_NAMES := $(patsubst tests/unit/%.c,%,$(TEST_SRCS))

OBJS := $(patsubst %.c,build/obj/%.o,$(LIB_SRCS))
SAN_OBJS := $(patsubst %.c,build/asan/obj/%.o,$(LIB_SRCS))
TESTS := $(addprefix build/tests/,$(TEST_NAMES))
SAN_TESTS := $(addprefix build/asan/tests/,$(TEST_NAMES))

.PHONY: all deps ensure-deps check unit unit-asan demo bench clean install e2e e2e-disruption e2e-crossnode
.DELETE_ON_ERROR:

all: build/nlproxy

build/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c -o $@ $<

build/asan/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN_FLAGS) -c -o $@ $<

build/libnlproxy.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

build/asan/libnlproxy.a: $(SAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/nlproxy: build/obj/proxy/main.o build/libnlproxy.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

build/asan/nlproxy: build/asan/obj/proxy/main.o build/asan/libnlproxy.a
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LIBS)

build/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) build/libnlproxy.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itests/unit -o $@ $< build/libnlproxy.a $(LIBS) $(TEST_LIBS)

build/asan/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) build/asan/libnlproxy.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN_FLAGS) -Itests/unit -o $@ $< build/asan/libnlproxy.a $(LIBS) $(TEST_LIBS)

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (apt-get install)"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_BUILD) $(DEB_TOOLS)

ensure-deps:
ifneq ($(HAVE_PKGS),yes)
	$(MAKE) deps
endif

# Unit tests run from the project root: they read tests/data/.
unit: $(TESTS)
	@set -e; for t in $(TESTS); do echo "== $$t"; $$t; done

unit-asan: $(SAN_TESTS)
	@set -e; for t in $(SAN_TESTS); do echo "== $$t (ASan+UBSan)"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $$t; done

check: ensure-deps
	$(MAKE) all unit unit-asan build/asan/nlproxy build/tests/nlp_steps
	@set -e; for t in $(sort $(wildcard tests/*.sh)); do echo "== $$t"; bash $$t; done

# Kubernetes' sig-network e2e specs against nlproxy deployed by its DaemonSet in a real cluster,
# then the disruption and cross-node checks below (root; tests/cluster/README.md). E2E_FOCUS,
# E2E_SKIP, KUBE_BIN_DIR as there; NODES (or E2E_NODES) the node count; E2E_DISRUPTION=0 and
# E2E_CROSSNODE=0 leave those checks out. MODE=ipvs: IPVS mode, its node a
# QEMU guest (tests/vm), the Services conformance specs, no disruption or cross-node checks.
e2e: ensure-deps
	@if [ "$$(id -u)" = 0 ] && ! command -v containerd >/dev/null; then $(MAKE) deps; fi
	$(MAKE) all
	@rc=0; $(if $(NODES),E2E_NODES=$(NODES)) $(if $(MODE),E2E_MODE=$(MODE)) bash tests/cluster/e2e.sh || rc=1; \
	if [ -n "$(MODE)" ] && [ "$(MODE)" != nftables ]; then \
		echo "e2e: disruption and cross-node checks left out (they run in nftables mode)"; exit $$rc; fi; \
	if [ "$(E2E_DISRUPTION)" = 0 ]; then echo "e2e: disruption checks left out (E2E_DISRUPTION=0)"; \
	else bash tests/cluster/disruption.sh || rc=1; fi; \
	if [ "$(E2E_CROSSNODE)" = 0 ]; then echo "e2e: cross-node checks left out (E2E_CROSSNODE=0)"; \
	else bash tests/cluster/crossnode.sh || rc=1; fi; exit $$rc

# Disruption checks in a real cluster (root; tests/cluster/disruption.sh): a rolling update,
# kill -9 of nlproxy, API server and kubelet restarts, a Service made while nlproxy is away.
e2e-disruption: ensure-deps
	@if [ "$$(id -u)" = 0 ] && ! command -v containerd >/dev/null; then $(MAKE) deps; fi
	$(MAKE) all
	bash tests/cluster/disruption.sh

# Cross-node checks in a two-node cluster (root; tests/cluster/crossnode.sh): externalTrafficPolicy
# Local and Cluster NodePorts from an external client (source address, drop, healthCheckNodePort),
# a UDP endpoint moving between nodes under a client's traffic.
e2e-crossnode: ensure-deps
	@if [ "$$(id -u)" = 0 ] && ! command -v containerd >/dev/null; then $(MAKE) deps; fi
	$(MAKE) all
	bash tests/cluster/crossnode.sh

# Part 2 of the demo (root) runs Debian's redis-server in network namespaces.
demo: ensure-deps
	@if [ "$$(id -u)" = 0 ] && ! command -v redis-server >/dev/null; then $(MAKE) deps; fi
	$(MAKE) all
	bash examples/demo.sh

bench: ensure-deps
	$(MAKE) all
	bash bench/run.sh

# PREFIX and DESTDIR as usual; SYSTEMDUNITDIR for distributions that keep
# units elsewhere (the Debian package: /lib/systemd/system).
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man

install: build/nlproxy
	install -D -m 0755 build/nlproxy $(DESTDIR)$(PREFIX)/sbin/nlproxy
	install -D -m 0644 docs/nlproxy.8 $(DESTDIR)$(MANDIR)/man8/nlproxy.8
	install -d -m 0755 $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' packaging/systemd/nlproxy.service >$(DESTDIR)$(SYSTEMDUNITDIR)/nlproxy.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/nlproxy.service

clean:
	rm -rf build

# The pod sandbox's process of the real-cluster tests (tests/cluster/images.sh):
# static, the only file of its from-scratch image.
build/cluster/pause: tests/cluster/pause.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE $(WARN) -O2 -static -s -o $@ $<

# Test and benchmark drivers linked against the library (not installed).
build/tests/nlp_steps: tests/tools/nlp_steps.c build/libnlproxy.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< build/libnlproxy.a $(LIBS)
