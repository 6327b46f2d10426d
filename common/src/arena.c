/*
 * Arena (bump) allocator (arena.h): the first SL_ARENA_INLINE bytes come from
 * the arena itself, later ones from heap blocks that double in size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/arena.h"

struct sl_arena_block {
    struct sl_arena_block *next;
    size_t size;
    _Alignas(16) char data[];
};

/* 8 bytes: enough for every type a record holds; strings waste less */
#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

void sl_arena_init(struct sl_arena *a)
{
    a->head = NULL;
    a->cur = a->inline_buf;
    a->end = a->inline_buf + sizeof(a->inline_buf);
    a->total = 0;
}

void sl_arena_reset(struct sl_arena *a)
{
    struct sl_arena_block *b = a->head, *next;
    for (; b; b = next) {
        next = b->next;
        free(b);
    }
    sl_arena_init(a);
}

void sl_arena_cleanup(struct sl_arena *a)
{
    sl_arena_reset(a);
}

void *sl_arena_alloc(struct sl_arena *a, size_t n)
{
    size_t need = ALIGN8(n ? n : 1);
    if ((size_t)(a->end - a->cur) < need) {
        size_t last = a->head ? a->head->size : SL_ARENA_INLINE;
        size_t size = last * 2;
        if (size < need)
            size = ALIGN8(need);
        if (size > (1u << 20) && need <= (1u << 20))
            size = 1u << 20;
        struct sl_arena_block *b = malloc(sizeof(*b) + size);
        if (!b)
            return NULL;
        b->size = size;
        b->next = a->head;
        a->head = b;
        a->cur = b->data;
        a->end = b->data + size;
    }
    void *p = a->cur;
    a->cur += need;
    a->total += need;
    return p;
}

void *sl_arena_calloc(struct sl_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = sl_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *sl_arena_strndup(struct sl_arena *a, const char *s, size_t n)
{
    char *p = sl_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sl_arena_strdup(struct sl_arena *a, const char *s)
{
    return s ? sl_arena_strndup(a, s, strlen(s)) : NULL;
}

char *sl_arena_vprintf(struct sl_arena *a, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return NULL;
    char *p = sl_arena_alloc(a, (size_t)n + 1);
    if (p)
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *sl_arena_printf(struct sl_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = sl_arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void *sl_arena_grow(struct sl_arena *a, void *old, size_t sz, size_t used, size_t *cap, size_t want)
{
    if (want <= *cap)
        return old;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < want)
        ncap *= 2;
    void *p = sl_arena_alloc(a, ncap * sz);
    if (!p)
        return NULL;
    if (used)
        memcpy(p, old, used * sz);
    *cap = ncap;
    return p;
}
