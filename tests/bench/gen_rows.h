/*
 * What the row generators share (gen_stores.c, gen_formats.c): the
 * splitmix64 stream that makes their output depend only on the seed, the
 * output buffer rows are written into, and the parsing of their numeric
 * arguments. The rows themselves differ (gen_stores writes the demo's
 * windows-1252 ';' export with bad rows, gen_formats seven UTF-8 fields in
 * four formats), so each program makes its own.
 *
 * Include once per program, after defining GEN_ROWS_PROG (its name, for
 * messages). Single-threaded: the state is in file-scope variables.
 */
#ifndef SLUICE_GEN_ROWS_H
#define SLUICE_GEN_ROWS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef GEN_ROWS_PROG
#error "define GEN_ROWS_PROG before including gen_rows.h"
#endif

#define OUTBUF_SIZE (1u << 20)

/* splitmix64 (Steele, Lea, Flood 2014): small, fast, and the same stream on
 * every platform. Seed it by setting rng_state. */
static uint64_t rng_state;

static inline uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A number in [0, n); the modulo bias is irrelevant for test data. */
static inline uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng_next() % n);
}

/* The output: rows are appended to one buffer, which the program flushes
 * (out_flush) when fewer bytes than its longest row are left; written counts
 * the bytes flushed so far. */
static char outbuf[OUTBUF_SIZE];
static size_t outlen;
static uint64_t written;

/* Writes the buffer to stdout; exits with status 1 when that fails. */
static inline void out_flush(void)
{
    if (outlen > 0 && fwrite(outbuf, 1, outlen, stdout) != outlen) {
        fprintf(stderr, GEN_ROWS_PROG ": could not write the output: %s\n", strerror(errno));
        exit(1);
    }
    written += outlen;
    outlen = 0;
}

/* out_flush and fflush(stdout): the end of the output. */
static inline void out_finish(void)
{
    out_flush();
    if (fflush(stdout) != 0) {
        fprintf(stderr, GEN_ROWS_PROG ": could not write the output: %s\n", strerror(errno));
        exit(1);
    }
}

static inline void put_mem(const char *s, size_t n)
{
    memcpy(outbuf + outlen, s, n);
    outlen += n;
}

static inline void put_str(const char *s)
{
    put_mem(s, strlen(s));
}

static inline void put_char(char c)
{
    outbuf[outlen++] = c;
}

/* A decimal number without sign or spaces into *v: 0, or -1. */
static inline int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *v = x;
    return 0;
}

#endif
