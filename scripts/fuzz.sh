#!/bin/sh
# Builds and runs the libFuzzer targets.
#
#   scripts/fuzz.sh fuzz SECONDS    build every target, fuzz each one for SECONDS
#   scripts/fuzz.sh fuzz-replay     build every target, run each once over its corpus files
#
# Targets are discovered, nothing here lists them:
#   - every tests/fuzz/fuzz_<name>.c is a target and defines LLVMFuzzerTestOneInput;
#   - its seed corpus is tests/fuzz/corpus/<name>/ (the file name without the fuzz_
#     prefix and .c: fuzz_h1_request.c -> tests/fuzz/corpus/h1_request/);
#   - a dictionary is used when the source has a line containing "fuzz-dict: FILE",
#     FILE being relative to tests/fuzz/ (e.g. "fuzz-dict: http.dict").
# Everything is built with clang into build-fuzz/: src/*/*.c (except src/main.c) once
# with the sanitizer flags, then one binary per target. Fuzzing writes new inputs to
# build-fuzz/corpus-<name>/ and crash reproducers to build-fuzz/artifacts/, never to the
# repository. Either mode exits non-zero on a build failure or on any crash.
#
# Environment: CLANG (default clang), FUZZ_JOBS (parallel compiles, default 2),
# FUZZ_TARGETS (space-separated names to restrict to, e.g. "h1_request chunked").
set -eu
cd "$(dirname "$0")/.."

mode=${1:-}
seconds=${2:-60}
case $mode in
fuzz|fuzz-replay) ;;
*) echo "usage: $0 fuzz SECONDS | fuzz-replay" >&2; exit 2 ;;
esac

CLANG=${CLANG:-clang}
JOBS=${FUZZ_JOBS:-2}
OUT=build-fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# The escaped quotes reach clang as part of the word: SY_VERSION becomes a string literal.
# shellcheck disable=SC2089
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -g -O1 -Isrc \
-DSY_VERSION=\"fuzz\" -DSY_FUZZING $SAN"
LIBS="-lssl -lcrypto -lyaml -ljansson -lnghttp2 -luring -lpthread -ldl"

command -v "$CLANG" >/dev/null || { echo "fuzz: $CLANG not found" >&2; exit 1; }
mkdir -p "$OUT/obj" "$OUT/artifacts"

# 1. The library, compiled for linking into fuzzers (no libFuzzer main in the objects).
objs=""
for src in src/*/*.c; do
    [ -e "$src" ] || continue
    obj="$OUT/obj/$(echo "${src%.c}" | tr / _).o"
    objs="$objs $obj"
done
# shellcheck disable=SC2016
printf '%s\n' src/*/*.c | grep -v '^src/main\.c$' | grep '\.c$' | \
    xargs -r -P "$JOBS" -I{} sh -c '
        src=$1; obj="$2/obj/$(echo "${src%.c}" | tr / _).o"
        if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find src -name "*.h" -newer "$obj" | head -1)" ]; then
            echo "  CC $src"
            $3 $4 -fsanitize=fuzzer-no-link -c "$src" -o "$obj" || exit 255
        fi' _ {} "$OUT" "$CLANG" "$CFLAGS"

# 2. One binary per target.
targets=""
for src in tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    if [ -n "${FUZZ_TARGETS:-}" ]; then
        case " $FUZZ_TARGETS " in *" $name "*) ;; *) continue ;; esac
    fi
    echo "  LD $OUT/fuzz_$name"
    # shellcheck disable=SC2086,SC2090
    $CLANG $CFLAGS -fsanitize=fuzzer "$src" $objs $LIBS -o "$OUT/fuzz_$name"
    targets="$targets $name"
done
[ -n "$targets" ] || { echo "fuzz: no targets in tests/fuzz/" >&2; exit 1; }

dict_opt() {
    d=$(sed -n 's/.*fuzz-dict:[[:space:]]*\([^[:space:]*]*\).*/\1/p' "tests/fuzz/fuzz_$1.c" | head -1)
    if [ -n "$d" ]; then
        [ -f "tests/fuzz/$d" ] || { echo "fuzz: $1: dictionary tests/fuzz/$d missing" >&2; exit 1; }
        echo "-dict=tests/fuzz/$d"
    fi
}

status=0
for name in $targets; do
    bin="$OUT/fuzz_$name"
    seeds="tests/fuzz/corpus/$name"
    dict=$(dict_opt "$name")
    if [ "$mode" = fuzz ]; then
        work="$OUT/corpus-$name"
        mkdir -p "$work"
        [ -d "$seeds" ] || { echo "fuzz: $name: no seed corpus at $seeds" >&2; seeds=""; }
        echo "== fuzz $name for ${seconds}s"
        # shellcheck disable=SC2086
        if ! "$bin" $dict -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$name-" \
                "$work" $seeds; then
            echo "fuzz: $name FAILED (reproducer in $OUT/artifacts/)" >&2
            status=1
        fi
    else
        if [ ! -d "$seeds" ] || [ -z "$(find "$seeds" -type f | head -1)" ]; then
            echo "fuzz-replay: $name: no corpus files in $seeds" >&2
            status=1
            continue
        fi
        n=$(find "$seeds" -type f | wc -l)
        echo "== replay $name ($n inputs)"
        # Individual files: libFuzzer runs each once and exits.
        if ! find "$seeds" -type f -print0 | xargs -0 "$bin" -timeout=10 \
                -artifact_prefix="$OUT/artifacts/$name-" >"$OUT/replay-$name.log" 2>&1; then
            tail -40 "$OUT/replay-$name.log" >&2
            echo "fuzz-replay: $name FAILED (log $OUT/replay-$name.log)" >&2
            status=1
        fi
    fi
done
exit $status
