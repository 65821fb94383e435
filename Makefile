# fcmd - push-notification gateway.  `make help` lists the targets.

PREFIX ?= /usr/local
DESTDIR ?=
# Where make install puts the alert rules and the Grafana dashboard: data
# operators point Prometheus and Grafana at (or copy), so a reinstall never
# overwrites an edited copy in /etc.
DATADIR ?= $(PREFIX)/share/fcmd
MANDIR ?= $(PREFIX)/share/man
CC ?= cc
PKGS = libh2o libuv libcurl openssl inih libsystemd hiredis
CFLAGS ?= -O2 -g
FCMD_CFLAGS = -std=gnu11 -Wall -Wextra -Wpedantic -Werror -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
PYTHON = /usr/bin/python3

# Debian packages fcmd builds with and tests with.
DEPS = build-essential pkg-config libh2o-dev libuv1-dev libcurl4-openssl-dev libjsmn-dev libssl-dev \
       libinih-dev libsystemd-dev libcmocka-dev libjansson-dev clang libclang-rt-14-dev python3 python3-pytest python3-requests python3-prometheus-client python3-h2 openssl curl wrk strace logrotate systemd nghttp2-client \
       libhiredis-dev redis-server haproxy nginx-light prometheus python3-yaml man-db groff-base \
       dpkg-dev lintian adduser chromium chromium-driver python3-selenium

BUILD = build
# What `make integration` (and so `make asan`) runs; a file or a few name a subset:
# make asan INTEGRATION_TESTS="tests/integration/test_spool.py tests/integration/test_leaks.py"
INTEGRATION_TESTS = tests/integration
# Where the binaries go: the top level for the normal build, the build tree
# for the sanitizer build, so one never overwrites the other.
BIN = .
FCMD = $(BIN)/fcmd
MOCK = $(BIN)/tools/mock-upstream
MASTER_SRC = $(wildcard master/*.c)
# The worker's rooms (docs/ARCHITECTURE.md): every .c under child/.
CHILD_SRC = $(shell find child -name '*.c' | LC_ALL=C sort)
SHM_SRC = $(wildcard shm/*.c)
COMMON_SRC = $(wildcard common/*.c)
LIB_SRC = $(COMMON_SRC) $(CHILD_SRC) $(SHM_SRC) master/config.c master/settings.c
# The status page: child/http/status.html as a C array in the build tree,
# with the CSP that allows its inline script and style by their hashes.
PAGE_C = $(BUILD)/gen/status_page.c
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(PAGE_C:.c=.o)
FCMD_OBJ = $(LIB_OBJ) $(BUILD)/master/main.o $(BUILD)/master/listen.o $(BUILD)/master/supervise.o
# The mock and the tests' oracles read JSON with jansson, never with fcmd's
# own parser; fcmd itself does not link it.
JANSSON_CFLAGS = $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS = $(shell pkg-config --libs jansson 2>/dev/null)
MOCK_OBJ = $(BUILD)/tools/mock_upstream.o $(BUILD)/tools/mock_v1.o $(BUILD)/tools/mock_apns.o $(BUILD)/tools/mock_text.o
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test layout unit integration webpush-oracle run install deb deb-package clean asan test-asan help fuzz fuzz-build fuzz-smoke bench bench-smoke

BASELINE = $(BIN)/tools/baseline
BODY_COST = $(BIN)/tools/body-cost

all: $(FCMD) $(MOCK) $(BASELINE) $(BODY_COST)

help:
	@echo "make deps         install the Debian packages fcmd needs (apt-get, as root)"
	@echo "make              build fcmd and tools/mock-upstream"
	@echo "make run          build, start fcmd on the bundled mock upstream, send a sample"
	@echo "make test         the layout check, unit and integration tests"
	@echo "make asan         the tests again under AddressSanitizer and UBSan (also: make test-asan)"
	@echo "make fuzz         each libFuzzer target for FUZZ_SECONDS (60); make fuzz-smoke: 3 s each"
	@echo "make bench        the benchmark table (make bench-smoke: a few seconds of it)"
	@echo "make deb          the Debian package, fcmd_VERSION_ARCH.deb (in DEBDIR, default .)"
	@echo "make install      install fcmd into \$$(DESTDIR)\$$(PREFIX)/bin, fcmd(8) into \$$(MANDIR)/man8, the alert rules and the dashboard into \$$(DATADIR)"

deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# Node runs the Web Push tests' oracle.  Debian's nodejs and npm only when
	@# no node and npm are there: another build's nodejs brings npm itself, and
	@# Debian's npm would not install beside it.
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		echo "installing: nodejs npm"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FCMD_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(PAGE_C): child/http/status.html tools/embed-page
	@mkdir -p $(dir $@)
	$(PYTHON) tools/embed-page $< $@ status_page

$(PAGE_C:.c=.o): $(PAGE_C)
	$(CC) $(FCMD_CFLAGS) $(CFLAGS) -c -o $@ $<

# The sweep reads h2o's HTTP/2 streams, whose header includes a khash.h that
# libh2o-dev does not install (child/http/h2o-compat/khash.h says why that is enough).
$(BUILD)/child/http/conn.o: FCMD_CFLAGS += -Ichild/http/h2o-compat

$(FCMD): $(FCMD_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BASELINE): $(BUILD)/tools/baseline.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(MOCK_OBJ): FCMD_CFLAGS += $(JANSSON_CFLAGS)

$(BODY_COST): $(BUILD)/tools/body_cost.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(MOCK): $(MOCK_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(JANSSON_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(FCMD_CFLAGS) $(JANSSON_CFLAGS) $(CFLAGS) -o $@ $(filter-out %.h,$^) $(LDLIBS) $(JANSSON_LIBS) -lcmocka

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "== $$t"; $$t || exit 1; done

# Faults the integration tests preload, built without sanitizers so they can
# be preloaded into either build: a disk that will not sync, or not yet (FAULT_LIB), a
# resolver that answers late or never (RESOLVE_LIB), memory that runs out as
# a worker accepts a connection (ALLOC_LIB), a master that stays dumpable, as
# one holding no secret would (DUMP_LIB), a worker that forgets to free its
# curl multi handle, for the asan build's leak check (LEAK_LIB).
FAULT_LIB = $(BUILD)/tests/fault_sync.so
RESOLVE_LIB = $(BUILD)/tests/fault_resolve.so
ALLOC_LIB = $(BUILD)/tests/fault_alloc.so
DUMP_LIB = $(BUILD)/tests/fault_dumpable.so
LEAK_LIB = $(BUILD)/tests/fault_leak.so
$(BUILD)/tests/fault_%.so: tests/integration/fault_%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

# fcmd's Web Push crypto on the command line (tests/integration/webpush_tool.c),
# and the independent implementation that judges it: npm's web-push and
# http_ece at the versions tests/webpush/package-lock.json pins, installed
# into tests/webpush/node_modules (not in git).
WEBPUSH_TOOL = $(BUILD)/tests/webpush_tool
$(WEBPUSH_TOOL): tests/integration/webpush_tool.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FCMD_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

WEBPUSH_ORACLE = tests/webpush/node_modules/.package-lock.json
$(WEBPUSH_ORACLE): tests/webpush/package.json tests/webpush/package-lock.json
	cd tests/webpush && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

webpush-oracle: $(WEBPUSH_ORACLE)

integration: all $(FAULT_LIB) $(RESOLVE_LIB) $(ALLOC_LIB) $(DUMP_LIB) $(LEAK_LIB) $(WEBPUSH_TOOL) $(WEBPUSH_ORACLE)
	FCMD_BIN=$(abspath $(FCMD)) MOCK_BIN=$(abspath $(MOCK)) FAULT_LIB=$(abspath $(FAULT_LIB)) \
		RESOLVE_LIB=$(abspath $(RESOLVE_LIB)) ALLOC_LIB=$(abspath $(ALLOC_LIB)) DUMP_LIB=$(abspath $(DUMP_LIB)) \
		LEAK_LIB=$(abspath $(LEAK_LIB)) WEBPUSH_TOOL=$(abspath $(WEBPUSH_TOOL)) \
		$(PYTHON) -m pytest -q $(INTEGRATION_TESTS)

# test and run install what is missing first, then build in a fresh make so
# pkg-config sees the freshly installed libraries.
test: deps
	$(MAKE) layout unit integration

# Which folder may include which (docs/ARCHITECTURE.md), and a mock built
# from its own files only.
layout:
	$(PYTHON) tools/check-layout

# The same tests built with AddressSanitizer and UBSan, in a tree of their own.
# Children's stderr is not the test's, so sanitizer reports go to files, and
# any report fails the run.  LeakSanitizer reports only memory nothing points
# to any more: a worker that stops cleanly frees all it made, so its leaks
# show too (tests/integration/test_leaks.py).
ASAN_DIR = build-asan
asan: deps
	rm -f $(ASAN_DIR)/report.*
	@mkdir -p $(ASAN_DIR)
	ASAN_OPTIONS=log_path=$(CURDIR)/$(ASAN_DIR)/report:detect_leaks=1:halt_on_error=1 \
	UBSAN_OPTIONS=log_path=$(CURDIR)/$(ASAN_DIR)/report:print_stacktrace=1 \
	FCMD_SANITIZER_DIR=$(CURDIR)/$(ASAN_DIR) \
	$(MAKE) BUILD=$(ASAN_DIR) BIN=$(ASAN_DIR) \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		LDFLAGS="-fsanitize=address,undefined" unit integration
	@if ls $(ASAN_DIR)/report.* >/dev/null 2>&1; then cat $(ASAN_DIR)/report.*; echo "sanitizer reports above"; exit 1; fi
	@echo "asan: no sanitizer reports"

# libFuzzer targets for every parser that sees outside bytes (tests/fuzz/).
# make fuzz runs each for FUZZ_SECONDS; new corpus entries go to build-fuzz/.
# tests/fuzz/NAME.dict is the target's dictionary, NAME.flags its extra flags.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_DIR = build-fuzz

# Targets that judge fcmd's JSON do it with jansson (tests/fuzz/oracle.h).
$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_OBJ) tests/fuzz/oracle.h
	@mkdir -p $(dir $@)
	$(CC) $(FCMD_CFLAGS) $(JANSSON_CFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-fno-omit-frame-pointer -o $@ $(filter-out %.h,$^) $(LDLIBS) $(JANSSON_LIBS)

fuzz-binaries: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)

fuzz-build: deps
	$(MAKE) BUILD=$(FUZZ_DIR) BIN=$(FUZZ_DIR) CC=clang \
		CFLAGS="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" fuzz-binaries

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t; \
		echo "== $$t ($(FUZZ_SECONDS) s)"; \
		dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
		flags=$$(cat tests/fuzz/$$t.flags 2>/dev/null); \
		$(FUZZ_DIR)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 $$dict $$flags \
			$(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t 2>$(FUZZ_DIR)/$$t.log || { tail -40 $(FUZZ_DIR)/$$t.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" $(FUZZ_DIR)/$$t.log; \
	done

# A few seconds each, for CI: the targets build and still find nothing.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=3

test-asan: asan

# The benchmark table (tools/bench.sh; its header lists the settings), then
# intake with the upstream stalled (tools/stalled-ratio.sh), fleet mode's
# ingress against none (tools/fleet-ratio.sh), and a Web Push message's CPU
# against an FCM v1 message's (tools/webpush-ratio.sh).
bench: deps
	$(MAKE) all
	$(BODY_COST)
	tools/bench.sh
	tools/stalled-ratio.sh
	tools/fleet-ratio.sh
	tools/webpush-ratio.sh

# A few seconds of the same, for CI: the benchmark still runs end to end and
# produces every figure (tools/bench.sh fails otherwise), in both of its modes,
# and so do the spool's ratio and fleet mode's.
bench-smoke: deps
	$(MAKE) all
	$(BODY_COST)
	DURATION=2 CONNECTIONS=16 PORT=5651 STEADY=1 tools/bench.sh
	UPSTREAM=v1 MESSAGES=2000 DURATION=5 CONNECTIONS=16 PORT=5651 STEADY=1 tools/bench.sh
	DURATION=1 CONNECTIONS=16 PORT=5651 tools/stalled-ratio.sh
	ROUNDS=1 MODES=batch DURATION=1 CONNECTIONS=16 PORT=5651 tools/spool-ratio.sh
	ROUNDS=1 DURATION=1 CONNECTIONS=16 PORT=5651 tools/fleet-ratio.sh

run: deps
	$(MAKE) all
	tools/demo.sh

install: $(FCMD)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(FCMD) $(DESTDIR)$(PREFIX)/bin/fcmd
	install -d $(DESTDIR)$(MANDIR)/man8
	install -m 0644 docs/fcmd.8 $(DESTDIR)$(MANDIR)/man8/fcmd.8
	install -d $(DESTDIR)$(DATADIR)
	install -m 0644 conf/fcmd-alerts.yml $(DESTDIR)$(DATADIR)/fcmd-alerts.yml
	install -m 0644 conf/grafana-fcmd.json $(DESTDIR)$(DATADIR)/grafana-fcmd.json

# The Debian package (make deb; DEBDIR=DIR puts it there).  fcmd is built
# again, in a fresh tree of its own, with all of Debian's hardening flags
# (dpkg-buildflags, bindnow too), installed into a staging root and packed
# by tools/build-deb, which says what it adds.  VERSION is FCMD_VERSION in
# common/options.h, the one fcmd --version prints.
VERSION = $(shell sed -n 's/^\#define FCMD_VERSION "\(.*\)"$$/\1/p' common/options.h)
DEBDIR = .
PKG_BUILD = $(BUILD)/deb
deb: deps
	$(MAKE) deb-package

deb-package: export DEB_BUILD_MAINT_OPTIONS = hardening=+all
deb-package:
	rm -rf $(PKG_BUILD)
	$(MAKE) BUILD=$(PKG_BUILD)/obj BIN=$(PKG_BUILD)/bin \
		CFLAGS="$$(dpkg-buildflags --get CFLAGS) $$(dpkg-buildflags --get CPPFLAGS)" \
		LDFLAGS="$$(dpkg-buildflags --get LDFLAGS)" \
		install PREFIX=/usr DESTDIR=$(abspath $(PKG_BUILD)/root)
	tools/build-deb $(PKG_BUILD)/root $(VERSION) $(DEBDIR)

clean:
	rm -rf build build-asan build-fuzz fcmd tools/mock-upstream tools/baseline tools/body-cost tests/webpush/node_modules
	rm -f fcmd_*.deb

-include $(FCMD_OBJ:.o=.d) $(MOCK_OBJ:.o=.d) $(BUILD)/tools/baseline.d $(BUILD)/tools/body_cost.d
