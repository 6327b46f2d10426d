/*
 * Decoded wire records (msg.h): allocation, references, field appends.
 *
 * Messages are made on one thread and freed on another (the parser makes a
 * record, the publisher frees it), which is malloc's worst case: every free
 * takes the lock of the arena the message came from. So freed messages go to
 * a pool instead: a small cache per thread, spilling to and refilling from a
 * shared stack in batches, so the shared lock is taken once per batch.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "sluice/err.h"
#include "sluice/msg.h"

#define CACHE_MAX  128  /* messages a thread keeps */
#define CACHE_MOVE 64   /* messages moved to or from the shared stack at once */
#define SHARED_MAX 2048 /* messages the shared stack keeps; the rest are freed */

/* Pooled messages are chained through their first bytes. */
struct pooled {
    struct pooled *next;
};

struct msg_cache {
    struct pooled *head;
    int n;
};

static _Thread_local struct msg_cache tl_cache;
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pooled *shared_head;
static int shared_n;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void free_chain(struct pooled *p)
{
    while (p) {
        struct pooled *next = p->next;
        free(p);
        p = next;
    }
}

/* At thread exit: hand the thread's cache to the shared stack, or free it. */
static void cache_exit(void *arg)
{
    struct msg_cache *c = arg;
    pthread_mutex_lock(&shared_lock);
    while (c->head && shared_n < SHARED_MAX) {
        struct pooled *p = c->head;
        c->head = p->next;
        p->next = shared_head;
        shared_head = p;
        shared_n++;
    }
    pthread_mutex_unlock(&shared_lock);
    free_chain(c->head);
    c->head = NULL;
    c->n = 0;
}

static void cache_key_init(void)
{
    pthread_key_create(&cache_key, cache_exit);
}

/* Under AddressSanitizer the pool is off, so that a use after free is
 * still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define SL_NO_POOL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_NO_POOL 1
#endif
#endif

static void *pool_get(void)
{
#ifdef SL_NO_POOL
    return malloc(sizeof(struct sl_msg));
#endif
    struct msg_cache *c = &tl_cache;
    if (!c->head) {
        pthread_mutex_lock(&shared_lock);
        for (int i = 0; i < CACHE_MOVE && shared_head; i++) {
            struct pooled *p = shared_head;
            shared_head = p->next;
            shared_n--;
            p->next = c->head;
            c->head = p;
            c->n++;
        }
        pthread_mutex_unlock(&shared_lock);
    }
    if (!c->head)
        return malloc(sizeof(struct sl_msg));
    struct pooled *p = c->head;
    c->head = p->next;
    c->n--;
    return p;
}

static void pool_put(void *mem)
{
#ifdef SL_NO_POOL
    free(mem);
    return;
#endif
    struct msg_cache *c = &tl_cache;
    if (c->n == 0) {
        pthread_once(&cache_once, cache_key_init);
        pthread_setspecific(cache_key, c);
    }
    struct pooled *p = mem;
    p->next = c->head;
    c->head = p;
    c->n++;
    if (c->n < CACHE_MAX)
        return;
    /* spill a batch to the shared stack (or free it when that is full) */
    struct pooled *batch = NULL;
    for (int i = 0; i < CACHE_MOVE; i++) {
        p = c->head;
        c->head = p->next;
        c->n--;
        p->next = batch;
        batch = p;
    }
    pthread_mutex_lock(&shared_lock);
    while (batch && shared_n < SHARED_MAX) {
        p = batch;
        batch = p->next;
        p->next = shared_head;
        shared_head = p;
        shared_n++;
    }
    pthread_mutex_unlock(&shared_lock);
    free_chain(batch);
}

struct sl_msg *sl_msg_new(enum sl_msg_kind kind, const char *run_id, const char *job_id,
                          uint32_t job_version)
{
    struct sl_msg *m = pool_get();
    if (!m)
        return NULL;
    memset(m, 0, offsetof(struct sl_msg, arena));
    sl_arena_init(&m->arena);
    m->kind = kind;
    atomic_init(&m->refs, 1);
    m->job_version = job_version;
    if ((run_id && !(m->run_id = sl_arena_strdup(&m->arena, run_id))) ||
        (job_id && !(m->job_id = sl_arena_strdup(&m->arena, job_id)))) {
        sl_msg_unref(m);
        return NULL;
    }
    return m;
}

struct sl_msg *sl_msg_ref(struct sl_msg *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void sl_msg_unref(struct sl_msg *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    sl_names_unref(m->names);
    sl_names_unref(m->wire_names);
    sl_arena_cleanup(&m->arena);
    pool_put(m);
}

struct sl_names *sl_names_new(const char *const *names, size_t n)
{
    size_t bytes = sizeof(struct sl_names) + n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += strlen(names[i]) + 1;
    struct sl_names *nm = malloc(bytes);
    if (!nm)
        return NULL;
    atomic_init(&nm->refs, 1);
    nm->n = n;
    char *p = (char *)&nm->names[n];
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        memcpy(p, names[i], l);
        nm->names[i] = p;
        p += l;
    }
    return nm;
}

struct sl_names *sl_names_ref(struct sl_names *nm)
{
    atomic_fetch_add_explicit(&nm->refs, 1, memory_order_relaxed);
    return nm;
}

void sl_names_unref(struct sl_names *nm)
{
    if (nm && atomic_fetch_sub_explicit(&nm->refs, 1, memory_order_acq_rel) == 1)
        free(nm);
}

int sl_msg_set_src_row(struct sl_msg *m, struct sl_names *nm, const char *const *values,
                       const size_t *lens, size_t n)
{
    struct sl_record *r = &m->u.rec;
    if (n > nm->n)
        return SL_ERR_INVALID;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += values[i] ? lens[i] + 1 : 0;
    struct sl_field *f = sl_arena_alloc(&m->arena, n * sizeof(*f) + 1);
    char *p = sl_arena_alloc(&m->arena, bytes + 1);
    if (!f || !p)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        f[i].name = nm->names[i];
        if (values[i]) {
            memcpy(p, values[i], lens[i]);
            p[lens[i]] = '\0';
            f[i].value = p;
            p += lens[i] + 1;
        } else {
            f[i].value = NULL;
        }
    }
    r->src = f;
    r->nsrc = r->csrc = (uint32_t)n;
    if (m->names != nm) {
        sl_names_unref(m->names);
        sl_names_unref(m->wire_names); /* it named the fields replaced */
        m->wire_names = NULL;
        m->names = sl_names_ref(nm);
    }
    return 0;
}

static int add_field(struct sl_msg *m, struct sl_field **arr, uint32_t *n, uint32_t *cap,
                     const char *name, const char *value, size_t vlen)
{
    if (*n == *cap) {
        size_t c = *cap;
        struct sl_field *p = sl_arena_grow(&m->arena, *arr, sizeof(**arr), *n, &c, *n + 1u);
        if (!p)
            return SL_ERR_NOMEM;
        *arr = p;
        *cap = (uint32_t)c;
    }
    struct sl_field *f = &(*arr)[*n];
    f->name = sl_arena_strdup(&m->arena, name);
    f->value = value ? sl_arena_strndup(&m->arena, value, vlen) : NULL;
    if (!f->name || (value && !f->value))
        return SL_ERR_NOMEM;
    (*n)++;
    return 0;
}

int sl_msg_reserve_src(struct sl_msg *m, uint32_t n)
{
    struct sl_record *r = &m->u.rec;
    if (n <= r->csrc)
        return 0;
    size_t c = r->csrc;
    struct sl_field *p = sl_arena_grow(&m->arena, r->src, sizeof(*p), r->nsrc, &c, n);
    if (!p)
        return SL_ERR_NOMEM;
    r->src = p;
    r->csrc = (uint32_t)c;
    return 0;
}

int sl_msg_add_src(struct sl_msg *m, const char *name, const char *value, size_t vlen)
{
    struct sl_record *r = &m->u.rec;
    return add_field(m, &r->src, &r->nsrc, &r->csrc, name, value, vlen);
}

int sl_msg_add_attr(struct sl_msg *m, const char *name, const char *value)
{
    struct sl_record *r = &m->u.rec;
    return add_field(m, &r->attr, &r->nattr, &r->cattr, name, value, value ? strlen(value) : 0);
}

int sl_msg_add_attr_ref(struct sl_msg *m, const char *name, const char *value)
{
    struct sl_record *r = &m->u.rec;
    if (r->nattr == r->cattr) {
        size_t c = r->cattr;
        struct sl_field *p =
            sl_arena_grow(&m->arena, r->attr, sizeof(*p), r->nattr, &c, r->nattr + 1u);
        if (!p)
            return SL_ERR_NOMEM;
        r->attr = p;
        r->cattr = (uint32_t)c;
    }
    r->attr[r->nattr++] = (struct sl_field){name, value};
    return 0;
}

int sl_msg_add_problem(struct sl_msg *m, const char *attribute, const char *code,
                       const char *message, const char *value)
{
    struct sl_record *r = &m->u.rec;
    if (r->nprob == r->cprob) {
        size_t c = r->cprob;
        struct sl_problem *p =
            sl_arena_grow(&m->arena, r->prob, sizeof(*p), r->nprob, &c, r->nprob + 1u);
        if (!p)
            return SL_ERR_NOMEM;
        r->prob = p;
        r->cprob = (uint32_t)c;
    }
    struct sl_problem *p = &r->prob[r->nprob];
    p->attribute = sl_arena_strdup(&m->arena, attribute ? attribute : "_row");
    p->code = sl_arena_strdup(&m->arena, code);
    p->message = sl_arena_strdup(&m->arena, message ? message : "");
    p->value = value ? sl_arena_strdup(&m->arena, value) : NULL;
    if (!p->attribute || !p->code || !p->message || (value && !p->value))
        return SL_ERR_NOMEM;
    r->nprob++;
    return 0;
}

const char *sl_msg_kind_str(enum sl_msg_kind kind)
{
    switch (kind) {
    case SL_MSG_TICKET:
        return "ticket";
    case SL_MSG_FILE:
        return "file";
    case SL_MSG_RECORD:
        return "record";
    case SL_MSG_REJECTION:
        return "rejection";
    case SL_MSG_RUN_EVENT:
        return "run_event";
    }
    return "unknown";
}

const char *sl_run_event_kind_str(enum sl_run_event_kind kind)
{
    switch (kind) {
    case SL_EV_FETCHED:
        return "fetched";
    case SL_EV_PROGRESS:
        return "progress";
    case SL_EV_SEALED:
        return "sealed";
    case SL_EV_FAILED:
        return "failed";
    case SL_EV_SKIPPED:
        return "skipped";
    case SL_EV_FINAL:
        return "final";
    }
    return "unknown";
}

int64_t sl_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sl_new_run_id(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t t = (uint64_t)sl_now_us();
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)(i * 37);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static const char *dup_s(struct sl_msg *m, const char *s, bool *ok)
{
    if (!s)
        return NULL;
    const char *p = sl_arena_strdup(&m->arena, s);
    if (!p)
        *ok = false;
    return p;
}

static struct sl_field *dup_fields(struct sl_msg *m, const struct sl_field *f, uint32_t n, bool *ok)
{
    if (!n)
        return NULL;
    struct sl_field *p = sl_arena_alloc(&m->arena, n * sizeof(*p));
    if (!p) {
        *ok = false;
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        p[i].name = dup_s(m, f[i].name, ok);
        p[i].value = dup_s(m, f[i].value, ok);
    }
    return p;
}

struct sl_msg *sl_msg_clone(const struct sl_msg *src)
{
    struct sl_msg *m = sl_msg_new(src->kind, src->run_id, src->job_id, src->job_version);
    if (!m)
        return NULL;
    bool ok = true;
    m->key = dup_s(m, src->key, &ok);
    if (src->names)
        m->names = sl_names_ref(src->names); /* cheaper than copying the names */
    switch (src->kind) {
    case SL_MSG_TICKET:
        m->u.ticket = src->u.ticket;
        m->u.ticket.ticket_id = dup_s(m, src->u.ticket.ticket_id, &ok);
        m->u.ticket.trigger = dup_s(m, src->u.ticket.trigger, &ok);
        m->u.ticket.input = dup_s(m, src->u.ticket.input, &ok);
        break;
    case SL_MSG_FILE:
        m->u.file = src->u.file;
        m->u.file.blob = dup_s(m, src->u.file.blob, &ok);
        m->u.file.content_type = dup_s(m, src->u.file.content_type, &ok);
        m->u.file.file_name = dup_s(m, src->u.file.file_name, &ok);
        break;
    case SL_MSG_RECORD:
    case SL_MSG_REJECTION: {
        const struct sl_record *s = &src->u.rec;
        struct sl_record *r = &m->u.rec;
        r->row = s->row;
        r->duplicate = s->duplicate;
        r->src = dup_fields(m, s->src, s->nsrc, &ok);
        r->nsrc = r->csrc = s->nsrc;
        r->attr = dup_fields(m, s->attr, s->nattr, &ok);
        r->nattr = r->cattr = s->nattr;
        r->key = dup_s(m, s->key, &ok);
        for (uint32_t i = 0; i < s->nprob && ok; i++) {
            const struct sl_problem *p = &s->prob[i];
            ok = sl_msg_add_problem(m, p->attribute, p->code, p->message, p->value) == 0;
        }
        break;
    }
    case SL_MSG_RUN_EVENT: {
        const struct sl_run_event *s = &src->u.ev;
        struct sl_run_event *e = &m->u.ev;
        *e = *s;
        e->stage = dup_s(m, s->stage, &ok);
        e->status = dup_s(m, s->status, &ok);
        e->reason = dup_s(m, s->reason, &ok);
        e->source_name = dup_s(m, s->source_name, &ok);
        e->columns = NULL;
        if (s->ncolumns) {
            e->columns = sl_arena_alloc(&m->arena, s->ncolumns * sizeof(*e->columns));
            if (!e->columns)
                ok = false;
            for (uint32_t i = 0; ok && i < s->ncolumns; i++)
                e->columns[i] = dup_s(m, s->columns[i], &ok);
        }
        e->unmapped = NULL;
        if (s->nunmapped) {
            e->unmapped = sl_arena_alloc(&m->arena, s->nunmapped * sizeof(*e->unmapped));
            if (!e->unmapped)
                ok = false;
            for (uint32_t i = 0; ok && i < s->nunmapped; i++)
                e->unmapped[i] = dup_s(m, s->unmapped[i], &ok);
        }
        break;
    }
    }
    if (!ok) {
        sl_msg_unref(m);
        return NULL;
    }
    return m;
}

struct sl_msg *sl_msg_take(struct sl_msg *m)
{
    if (atomic_load_explicit(&m->refs, memory_order_acquire) == 1)
        return sl_msg_ref(m);
    return sl_msg_clone(m);
}
