/*
 * Logging: one line per event on stderr, text or JSON (SLUICE_LOG_FORMAT),
 * filtered by level (SLUICE_LOG_LEVEL). Thread-safe. Never pass secrets.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdbool.h>

enum sl_log_level { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR, SL_LOG_OFF };

/* Sets level and format ("text" | "json"); -1 on an unknown name. */
int sl_log_setup(const char *level, const char *format);
void sl_log_set_level(enum sl_log_level lvl);
enum sl_log_level sl_log_get_level(void);

void sl_log(enum sl_log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As sl_log, but while buffering is on (sl_log_buffering) the line may wait
 * in memory (16 KiB) for the next sl_log line, a full buffer or
 * sl_log_flush(), so that a busy server's access log costs no system call a
 * line; the order of lines is kept. The caller flushes on a timer and at
 * exit: lines still waiting when the process dies are lost. */
void sl_log_buffered(enum sl_log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sl_log_buffering(bool on);
void sl_log_flush(void);

/* The last warning or error this thread logged ("component: message", kept
 * even when the level filters it out), or "" when none since
 * sl_log_last_clear(): the stage runner gives it as the reason of a message
 * it sends to the dead-letter topic. */
const char *sl_log_last(void);
void sl_log_last_clear(void);

#define sl_debug(comp, ...) sl_log(SL_LOG_DEBUG, comp, __VA_ARGS__)
#define sl_info(comp, ...)  sl_log(SL_LOG_INFO, comp, __VA_ARGS__)
#define sl_warn(comp, ...)  sl_log(SL_LOG_WARN, comp, __VA_ARGS__)
#define sl_error(comp, ...) sl_log(SL_LOG_ERROR, comp, __VA_ARGS__)

#endif
