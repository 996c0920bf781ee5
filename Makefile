# Switchyard build. `make` builds build/switchyard; `make check` runs every test.
# Sources are picked up by directory: adding src/<area>/x.c needs no edit here.

CC       ?= cc
BUILD    ?= build
VERSION  := 0.1.0
OPT      ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
               -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing -g \
               -Isrc -DSY_VERSION=\"$(VERSION)\"
CFLAGS   ?= $(OPT)
LIBS     := -lssl -lcrypto -lyaml -ljansson -lnghttp2 -luring -lpthread -ldl
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

PYTEST   ?= /usr/bin/python3 -m pytest
E2E_ARGS ?=

.PHONY: all clean check check-build unit unit-bins e2e e2e-uring asan check-asan fuzz fuzz-replay deps demo checksrc \
        bench bench-quick deploy-check acme-test asan-bin image-test

all: $(BUILD)/switchyard

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libswitchyard.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/switchyard: $(BUILD)/obj/src/main.o $(BUILD)/libswitchyard.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libswitchyard.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libswitchyard.a -lcriterion $(LIBS)

unit-bins: $(UNIT_BINS)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t --jobs 1; done

# The black-box suite on epoll, the fallback wherever io_uring is refused. It also runs the
# sanitizer build once under load (test_83_soak.py).
e2e: $(BUILD)/switchyard
	@$(MAKE) --no-print-directory asan-bin
	SWITCHYARD_IO_BACKEND=epoll SWITCHYARD_BIN=$(abspath $(BUILD)/switchyard) $(PYTEST) -q tests/e2e $(E2E_ARGS)

# The same suite with every event loop on io_uring, what the default (auto) takes where it is
# allowed. Fails where io_uring is refused (seccomp, io_uring_disabled): a machine the CI cannot use.
e2e-uring: $(BUILD)/switchyard
	@$(MAKE) --no-print-directory asan-bin
	SWITCHYARD_IO_BACKEND=io_uring SWITCHYARD_BIN=$(abspath $(BUILD)/switchyard) $(PYTEST) -q tests/e2e $(E2E_ARGS)

asan-bin:
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" LIBS="$(LIBS) -fsanitize=address,undefined" \
	    build-asan/switchyard

# Everything: `make check` is the project's test command.
check:
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory check-build
	@$(MAKE) --no-print-directory checksrc unit fuzz-replay acme-test deploy-check
	@$(MAKE) --no-print-directory e2e e2e-uring

check-build: all unit-bins

acme-test: $(BUILD)/libswitchyard.a $(BUILD)/switchyard
	$(MAKE) -s -C tests/acme LIB=1 OUT=$(abspath $(BUILD))/acme
	ACME_DRIVER=$(abspath $(BUILD))/acme/acme_driver SWITCHYARD_BIN=$(abspath $(BUILD)/switchyard) \
	    $(PYTEST) -q tests/acme

# AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" LIBS="$(LIBS) -fsanitize=address,undefined" all $(UNIT_BINS:$(BUILD)/%=build-asan/%)

check-asan: asan
	$(MAKE) BUILD=build-asan CFLAGS="$(SAN_FLAGS)" LIBS="$(LIBS) -fsanitize=address,undefined" unit e2e e2e-uring

# Banned functions (see docs/internals/principles.md).
checksrc:
	@scripts/checksrc.sh

# libFuzzer targets: `make fuzz` runs each for FUZZ_SECONDS; fuzz-replay replays the corpora once.
FUZZ_SECONDS ?= 300
fuzz fuzz-replay:
	@scripts/fuzz.sh $@ $(FUZZ_SECONDS)

deps:
	scripts/install-deps.sh

demo:
	scripts/demo.sh

bench: $(BUILD)/switchyard
	bench/run.sh

bench-quick: $(BUILD)/switchyard
	bench/run.sh --quick

deploy-check: $(BUILD)/switchyard
	deploy/check.sh

# The container image built from the Dockerfile (base images made with debootstrap when no
# registry is reachable) and run as the Deployment runs it through the shipped journey.
image-test:
	deploy/image-test.sh

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJS:.o=.d) $(BUILD)/obj/src/main.d
