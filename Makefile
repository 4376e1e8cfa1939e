# mitmlua — build, test, and run.
#
# Modules are discovered: every src/*.c is part of the program, every
# test/unit/test_*.c is a unit-test binary linked against all modules except
# main.o, every test/fuzz/fuzz_*.c a libFuzzer target.  Adding a module needs
# no edit here.

CC      ?= cc
BUILD   ?= build
LLHTTP_DIR  ?= /usr/share/llhttp
LLHTTP_INC  ?= /usr/share/include/llhttp

# libevent_openssl.pc requires "libevent", the all-in-one library; the
# openssl glue is itself linked against libevent_core, so that would map
# libevent's core twice (two copies of its code and of its hidden globals).
# Name core and extra (evdns) instead.  No libevent_pthreads: every event
# loop belongs to one thread (see worker_call in proxy.h).
PKGS    = libevent_core libevent_extra openssl luajit libnghttp2 libzstd \
          libpcre2-8 zlib libbrotlienc libbrotlidec jansson yaml-0.1

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Iinclude -I$(BUILD)/gen -I$(LLHTTP_INC) \
             $(PKG_CFLAGS) -MMD -MP
# llhttp's generated C is not ours to fix: compile it without -Werror noise.
LLHTTP_CFLAGS = -std=c11 -O2 -g -w -I$(LLHTTP_INC)
LIBS    = -levent_openssl $(PKG_LIBS) -lcrypt -lpthread -lm -ldl

SRCS      := $(wildcard src/*.c)
OBJS      := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
LIB_OBJS  := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
LLHTTP_SRCS := api.c http.c llhttp.c
LLHTTP_OBJS := $(LLHTTP_SRCS:%.c=$(BUILD)/llhttp/%.o)
UNIT_SRCS := $(wildcard test/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test/%)
FUZZ_SRCS := $(wildcard test/fuzz/fuzz_*.c)

.PHONY: all test unit asan fuzz bench deps run install clean check-deps

all: $(BUILD)/mitmlua

# V=1 shows the full command lines
Q = $(if $(V),,@)

$(BUILD)/mitmlua: $(OBJS) $(LLHTTP_OBJS)
	@echo "  LD    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) $(LIBS) $(LDFLAGS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# lua/*.lua ship inside the binary as LuaJIT bytecode (luajit -b also
# rejects a syntax error at build time); script.c includes the result.
LUA_SRCS := $(wildcard lua/*.lua)
LUA_GEN  := $(LUA_SRCS:lua/%.lua=$(BUILD)/gen/lua_%.h)

$(BUILD)/gen/lua_%.h: lua/%.lua
	@mkdir -p $(dir $@)
	@echo "  LUAC  $<"
	$(Q)luajit -b -g -t c -n $* $< $@

$(BUILD)/obj/script.o: $(LUA_GEN)

# The HTML report's template (report/report.html) is a byte array in the
# binary; report.c fills its holes.
$(BUILD)/gen/report_html.h: report/report.html report/embed.lua
	@mkdir -p $(dir $@)
	@echo "  EMBED $<"
	$(Q)luajit report/embed.lua report_html $< $@

$(BUILD)/obj/report.o: $(BUILD)/gen/report_html.h

$(BUILD)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(LLHTTP_CFLAGS) $(filter -fsanitize%,$(CFLAGS)) -c -o $@ $<

$(BUILD)/test/%: test/unit/%.c $(LIB_OBJS) $(LLHTTP_OBJS)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -Itest/unit -o $@ $(filter %.c %.o,$^) $(LIBS) $(LDFLAGS)

unit: $(UNIT_BINS)

# `make deps` installs every Debian package the build, the tests and the
# benchmark use; nothing else is needed on a fresh Debian 12 machine.
DEB_PKGS = build-essential pkg-config libevent-dev libssl-dev libluajit-5.1-dev \
           luajit node-llhttp libnghttp2-dev libzstd-dev libpcre2-dev zlib1g-dev \
           libbrotli-dev libjansson-dev libyaml-dev curl nginx-light nghttp2-client wrk \
           python3 python3-websockets python3-h2 mitmproxy clang libclang-rt-14-dev openssl \
           procps iproute2 nftables socat chromium chromium-driver python3-selenium

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "make deps: all packages present"; fi

run: deps
	$(MAKE) all
	./$(BUILD)/mitmlua $(ARGS)

test: deps
	$(MAKE) all unit
	./test/run-tests $(BUILD)

asan:
	$(MAKE) BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all unit

FUZZ_BUILD = build-fuzz
FUZZ_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
              -fno-sanitize-recover=undefined
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang CFLAGS="$(FUZZ_CFLAGS)" \
	  LDFLAGS="-fsanitize=address,undefined" $(FUZZ_BUILD)/mitmlua
	@mkdir -p $(FUZZ_BUILD)/fuzz
	@for f in $(FUZZ_SRCS); do \
	  n=$$(basename $$f .c); \
	  clang -std=c11 -D_GNU_SOURCE -Iinclude -I$(LLHTTP_INC) $(PKG_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer \
	    -o $(FUZZ_BUILD)/fuzz/$$n $$f $$(ls $(FUZZ_BUILD)/obj/*.o | grep -v '/main\.o$$') \
	    $(FUZZ_BUILD)/llhttp/*.o $(LIBS) || exit 1; \
	done
	./test/run-fuzz $(FUZZ_BUILD)/fuzz $${FUZZ_SECONDS:-20}

bench: deps all
	./bench/run

# Lua hook calls per second with and without script_timeout (man page figures)
$(BUILD)/hookbench: bench/hookbench.c $(LIB_OBJS) $(LLHTTP_OBJS)
	@echo "  CC    $<"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LIBS) $(LDFLAGS)

# make install [PREFIX=/usr/local] [DESTDIR=staging]: the binary and all
# three manual pages
PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 0755 $(BUILD)/mitmlua $(DESTDIR)$(PREFIX)/bin/mitmlua
	install -m 0644 man/mitmlua.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 man/mitmlua-dump.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 0644 man/mitmlua-filter.7 $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf build build-asan build-fuzz

-include $(OBJS:.o=.d) $(UNIT_BINS:%=%.d)
