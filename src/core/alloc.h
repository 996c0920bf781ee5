/*
 * alloc.h: the only allocator entry points of the project.
 *
 * sy_malloc and friends abort on out-of-memory: they are for small internal
 * allocations whose size we control. Sizes a peer controls must be capped by
 * the caller before they reach here.
 */
#ifndef SY_CORE_ALLOC_H
#define SY_CORE_ALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *sy_malloc(size_t n);
void *sy_calloc(size_t nmemb, size_t size);
void *sy_realloc(void *p, size_t n);
char *sy_strdup(const char *s);
char *sy_strndup(const char *s, size_t n);
void sy_free(void *p);

/* Frees *pp and sets it to NULL; safe on NULL. */
#define sy_free_null(pp) do { sy_free(*(pp)); *(pp) = NULL; } while (0)

/* Heap-allocated printf; never returns NULL. */
char *sy_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sy_vasprintf(const char *fmt, va_list ap);

#endif
