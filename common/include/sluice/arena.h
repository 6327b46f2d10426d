/*
 * Arena (bump) allocator.
 *
 * A record owns one arena; every string and array of the record lives in it
 * and is freed at once with the record. The first block is embedded in the
 * arena so that a small record costs a single malloc (that of its owner).
 * Not thread-safe: an arena belongs to one thread at a time.
 */
#ifndef SLUICE_ARENA_H
#define SLUICE_ARENA_H

#include <stdarg.h>
#include <stddef.h>

#define SL_ARENA_INLINE 1024

struct sl_arena_block;

struct sl_arena {
    struct sl_arena_block *head; /* heap blocks, newest first */
    char *cur, *end;             /* free space of the current block */
    size_t total;                /* bytes handed out since the last reset */
    _Alignas(16) char inline_buf[SL_ARENA_INLINE];
};

void sl_arena_init(struct sl_arena *a);
/* Frees every heap block; the arena can be used again (as after init). */
void sl_arena_reset(struct sl_arena *a);
void sl_arena_cleanup(struct sl_arena *a);

/* 8-byte aligned memory valid until reset/cleanup; NULL when out of memory. */
void *sl_arena_alloc(struct sl_arena *a, size_t n);
void *sl_arena_calloc(struct sl_arena *a, size_t n, size_t size);
/* Copies of s (NUL-terminated) / of the n bytes at s plus a NUL. */
char *sl_arena_strdup(struct sl_arena *a, const char *s);
char *sl_arena_strndup(struct sl_arena *a, const char *s, size_t n);
char *sl_arena_printf(struct sl_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
char *sl_arena_vprintf(struct sl_arena *a, const char *fmt, va_list ap);
/* Grows an array of elements of size sz from *cap to at least want. */
void *sl_arena_grow(struct sl_arena *a, void *old, size_t sz, size_t used, size_t *cap,
                    size_t want);

#endif
