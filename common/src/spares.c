/*
 * Spares (spares.h): a LIFO of freed objects under a mutex, the link in
 * each object's first bytes.
 */
#include <string.h>

#include "sluice/spares.h"

void sl_spares_init(struct sl_spares *s, int max)
{
    pthread_mutex_init(&s->mu, NULL);
    s->head = NULL;
    s->n = 0;
    s->max = max;
}

void *sl_spares_get(struct sl_spares *s)
{
    pthread_mutex_lock(&s->mu);
    void *p = s->head;
    if (p) {
        memcpy(&s->head, p, sizeof(void *));
        s->n--;
    }
    pthread_mutex_unlock(&s->mu);
    return p;
}

bool sl_spares_put(struct sl_spares *s, void *p)
{
    pthread_mutex_lock(&s->mu);
    bool kept = s->n < s->max;
    if (kept) {
        memcpy(p, &s->head, sizeof(void *));
        s->head = p;
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
    return kept;
}

void sl_spares_cleanup(struct sl_spares *s, void (*free_one)(void *))
{
    while (s->head) {
        void *p = s->head;
        memcpy(&s->head, p, sizeof(void *));
        free_one(p);
    }
    s->n = 0;
    pthread_mutex_destroy(&s->mu);
}
