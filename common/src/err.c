/*
 * Error strings and classes (err.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "sluice/err.h"

const char *sl_err_str(int err)
{
    switch (err) {
    case SL_OK:
        return "success";
    case SL_ERR_NOMEM:
        return "out of memory";
    case SL_ERR_IO:
        return "input/output error";
    case SL_ERR_INVALID:
        return "invalid input";
    case SL_ERR_PARSE:
        return "cannot parse input";
    case SL_ERR_RETRY:
        return "temporary failure";
    case SL_ERR_FATAL:
        return "fatal error";
    case SL_ERR_NOTFOUND:
        return "not found";
    case SL_ERR_CLOSED:
        return "closed";
    case SL_ERR_TIMEOUT:
        return "timed out";
    case SL_ERR_LIMIT:
        return "limit exceeded";
    default:
        return "unknown error";
    }
}

enum sl_err_class sl_err_class(int err)
{
    switch (err) {
    case SL_OK:
        return SL_ERRCLASS_NONE;
    case SL_ERR_RETRY:
    case SL_ERR_TIMEOUT:
        return SL_ERRCLASS_RETRIABLE;
    case SL_ERR_INVALID:
    case SL_ERR_PARSE:
    case SL_ERR_NOTFOUND:
    case SL_ERR_LIMIT:
        return SL_ERRCLASS_POISON;
    default:
        return SL_ERRCLASS_FATAL;
    }
}

int sl_seterr(char *errbuf, size_t errsz, int err, const char *fmt, ...)
{
    if (errbuf && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errsz, fmt, ap);
        va_end(ap);
    }
    return err;
}

void sl_vseterr_first(int *rc, char *errbuf, size_t errsz, int err, const char *fmt, va_list ap)
{
    if (*rc)
        return;
    *rc = err;
    if (errbuf && errsz)
        vsnprintf(errbuf, errsz, fmt, ap);
}
