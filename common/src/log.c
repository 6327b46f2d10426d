/*
 * Logging to stderr, text or JSON lines (log.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sluice/buf.h"
#include "sluice/log.h"
#include "sluice/msg.h"
#include "sluice/util.h"

static enum sl_log_level log_level = SL_LOG_INFO;
static bool log_json;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int sl_log_setup(const char *level, const char *format)
{
    if (level && level[0]) {
        size_t i;
        for (i = 0; i < SL_ARRAY_LEN(level_names); i++)
            if (!strcmp(level, level_names[i]))
                break;
        if (i == SL_ARRAY_LEN(level_names)) {
            if (!strcmp(level, "warning"))
                i = SL_LOG_WARN;
            else
                return -1;
        }
        log_level = (enum sl_log_level)i;
    }
    if (format && format[0]) {
        if (!strcmp(format, "json"))
            log_json = true;
        else if (!strcmp(format, "text"))
            log_json = false;
        else
            return -1;
    }
    return 0;
}

void sl_log_set_level(enum sl_log_level lvl)
{
    log_level = lvl;
}

enum sl_log_level sl_log_get_level(void)
{
    return log_level;
}

static _Thread_local char last_msg[512];

const char *sl_log_last(void)
{
    return last_msg;
}

void sl_log_last_clear(void)
{
    last_msg[0] = '\0';
}

/* Lines of sl_log_buffered() not written yet (see log.h); under log_lock. */
static bool log_buffering;
static char pending[16384];
static size_t npending;

/* Writes line (len bytes; NULL: none) after the lines pending; log_lock held. */
static void write_locked(const char *line, size_t len)
{
    if (npending) {
        fwrite(pending, 1, npending, stderr);
        npending = 0;
    }
    if (line)
        fwrite(line, 1, len, stderr);
}

/* One line out: written, or kept with the pending ones when buffered. */
static void emit(bool buffered, const char *line, size_t len)
{
    pthread_mutex_lock(&log_lock);
    if (buffered && log_buffering && len <= sizeof(pending)) {
        if (npending + len > sizeof(pending))
            write_locked(NULL, 0);
        memcpy(pending + npending, line, len);
        npending += len;
    } else {
        write_locked(line, len);
    }
    pthread_mutex_unlock(&log_lock);
}

static void log_v(bool buffered, enum sl_log_level lvl, const char *component, const char *fmt,
                  va_list ap0)
{
    va_list ap;
    if (lvl >= SL_LOG_WARN && lvl < SL_LOG_OFF) {
        int n = snprintf(last_msg, sizeof(last_msg), "%s: ", component);
        if (n > 0 && (size_t)n < sizeof(last_msg)) {
            va_copy(ap, ap0);
            vsnprintf(last_msg + n, sizeof(last_msg) - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    if (lvl < log_level || lvl >= SL_LOG_OFF)
        return;
    char ts[32];
    sl_format_utc(sl_now_us(), true, ts);
    if (!log_json) { /* the usual line: formatted once, on the stack */
        char small[1024];
        int n = snprintf(small, sizeof(small), "%s %-5s %s: ", ts, level_names[lvl], component);
        if (n > 0 && (size_t)n < sizeof(small) - 1) {
            va_copy(ap, ap0);
            int m = vsnprintf(small + n, sizeof(small) - (size_t)n - 1, fmt, ap);
            va_end(ap);
            if (m >= 0 && (size_t)n + (size_t)m < sizeof(small) - 1) {
                size_t len = (size_t)n + (size_t)m;
                small[len++] = '\n';
                emit(buffered, small, len);
                return;
            }
        }
    }
    struct sl_buf msg = SL_BUF_INIT, line = SL_BUF_INIT;
    va_copy(ap, ap0);
    sl_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    if (log_json) {
        sl_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts,
                      level_names[lvl]);
        sl_buf_json_str(&line, component, strlen(component));
        sl_buf_puts(&line, ",\"msg\":");
        sl_buf_json_str(&line, msg.data ? msg.data : "", msg.len);
        sl_buf_puts(&line, "}\n");
    } else {
        sl_buf_printf(&line, "%s %-5s %s: %s\n", ts, level_names[lvl], component,
                      msg.data ? msg.data : "");
    }
    if (line.data)
        emit(buffered, line.data, line.len);
    sl_buf_cleanup(&msg);
    sl_buf_cleanup(&line);
}

void sl_log(enum sl_log_level lvl, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(false, lvl, component, fmt, ap);
    va_end(ap);
}

void sl_log_buffered(enum sl_log_level lvl, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(true, lvl, component, fmt, ap);
    va_end(ap);
}

void sl_log_buffering(bool on)
{
    pthread_mutex_lock(&log_lock);
    log_buffering = on;
    if (!on)
        write_locked(NULL, 0);
    pthread_mutex_unlock(&log_lock);
}

void sl_log_flush(void)
{
    pthread_mutex_lock(&log_lock);
    write_locked(NULL, 0);
    pthread_mutex_unlock(&log_lock);
}
