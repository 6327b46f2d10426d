/*
 * Spares: a few freed objects of one kind kept for reuse.
 *
 * glibc's malloc serves a chunk over ~1 KiB only after merging the small
 * free chunks it keeps for quick reuse (malloc_consolidate), which a busy
 * service has at every large allocation: an object of that size made and
 * freed at each request (the gateway's request, a webhook delivery) is
 * cheaper kept. Thread-safe. While it waits, an object's first
 * pointer-sized bytes are the list's link: the caller sets up what it
 * takes again.
 */
#ifndef SLUICE_SPARES_H
#define SLUICE_SPARES_H

#include <pthread.h>
#include <stdbool.h>

struct sl_spares {
    pthread_mutex_t mu;
    void *head;
    int n, max;
};

void sl_spares_init(struct sl_spares *s, int max);
/* A waiting object (its contents as it was put, but for the link), or NULL. */
void *sl_spares_get(struct sl_spares *s);
/* Keeps p (at least a pointer's size): true, or false when max are waiting
 * (the caller frees p). */
bool sl_spares_put(struct sl_spares *s, void *p);
/* Calls free_one on every waiting object; s can then only be destroyed. */
void sl_spares_cleanup(struct sl_spares *s, void (*free_one)(void *));

#endif
