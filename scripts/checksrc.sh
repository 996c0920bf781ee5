#!/bin/sh
# Fails when a banned function appears in src/ (curl checksrc / HAProxy build bans).
# Bare malloc/free are allowed only in src/core/alloc.c.
set -eu
cd "$(dirname "$0")/.."
status=0
bad=$(grep -nE '\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|gets)[[:space:]]*\(' src/*/*.c src/*.c src/*/*.h 2>/dev/null || true)
if [ -n "$bad" ]; then echo "checksrc: banned function:"; echo "$bad"; status=1; fi
bad=$(grep -nE '(^|[^_a-z])(malloc|calloc|realloc|free)[[:space:]]*\(' src/*/*.c src/*.c 2>/dev/null \
      | grep -v '^src/core/alloc.c:' | grep -vE '(OPENSSL|CRYPTO|json|curl|yaml)_?[a-z_]*free' || true)
if [ -n "$bad" ]; then echo "checksrc: bare allocator call outside src/core/alloc.c:"; echo "$bad"; status=1; fi
[ $status -eq 0 ] && echo "checksrc: ok"
exit $status
