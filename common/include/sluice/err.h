/*
 * Error codes shared by every module.
 *
 * Functions return 0 (SL_OK) or a negative sl_err. Every error has a class
 * that tells a stage what to do with it: retry (back off and try again), fatal
 * (stop the service) or poison (this record or file is bad: reject it with a
 * reason and go on). Messages travel separately, in caller-supplied errbuf.
 */
#ifndef SLUICE_ERR_H
#define SLUICE_ERR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum sl_err {
    SL_OK = 0,
    SL_ERR_NOMEM = -1,    /* out of memory: fatal */
    SL_ERR_IO = -2,       /* read/write failure of a local file: fatal */
    SL_ERR_INVALID = -3,  /* bad input (job, option, record): poison */
    SL_ERR_PARSE = -4,    /* a file cannot be parsed: poison */
    SL_ERR_RETRY = -5,    /* transient failure of a peer: retriable */
    SL_ERR_FATAL = -6,    /* anything else that must stop the service */
    SL_ERR_NOTFOUND = -7, /* the thing asked for does not exist: poison */
    SL_ERR_CLOSED = -8,   /* the bus or queue was closed: stop consuming */
    SL_ERR_TIMEOUT = -9,  /* nothing arrived in time: retriable */
    SL_ERR_LIMIT = -10,   /* a size, count or time limit was hit: poison */
} sl_err;

enum sl_err_class {
    SL_ERRCLASS_NONE = 0,
    SL_ERRCLASS_RETRIABLE,
    SL_ERRCLASS_FATAL,
    SL_ERRCLASS_POISON,
};

/* A short constant description of err ("out of memory"). */
const char *sl_err_str(int err);

/* The class of err; SL_ERRCLASS_NONE for SL_OK. */
enum sl_err_class sl_err_class(int err);

/* snprintf into errbuf when errbuf is not NULL; always returns err. */
int sl_seterr(char *errbuf, size_t errsz, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The first error wins (a reader stopping on it): when *rc is 0, sets it to
 * err and formats the message into errbuf (when not NULL); else does
 * nothing. */
void sl_vseterr_first(int *rc, char *errbuf, size_t errsz, int err, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

#endif
