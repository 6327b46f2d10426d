/*
 * libFuzzer harness of the template language (template.h): compiles the
 * input as a mapping template and evaluates it over a fixed row, with a job
 * that has a lookup table, a time zone and a hash key, so every filter can
 * run. Bytes after a 0x01 in the input replace row values in ref order
 * (separated by further 0x01), letting the fuzzer vary values as well.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sluice/job.h"
#include "sluice/template.h"
#include "sluice/tz.h"

static const char *const row_values[] = {
    "31.12.2025 23:00",
    "1.234.567,89",
    "  M\xc3\xbcller-L\xc3\274denscheidt ",
    "",
    "\xe2\x82\xac",
    "Deutschland",
    "2025-12-31T23:00:00+01:00",
    "a;b;c",
    "29.02.2019",
    "-0,5",
    "ops@example.com",
    "\xff\xfe invalid",
};

static struct sl_job job;
static struct sl_lookup lookups[1];

static void init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    lookups[0].name = "countries";
    lookups[0].map = json_pack("{s:s, s:s, s:n}", "Deutschland", "DE", "a", "b", "n");
    job.lookups = lookups;
    job.nlookups = 1;
    char err[128];
    job.tz = (struct sl_tz *)sl_tz_get("Europe/Berlin", err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    char *src = malloc(size + 1);
    if (!src)
        return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    char *extra = memchr(src, '\x01', size);
    if (extra)
        *extra++ = '\0';

    struct sl_refs refs = {0};
    char errbuf[256];
    struct sl_template *tpl = sl_template_compile(src, &refs, errbuf, sizeof(errbuf));
    if (tpl) {
        sl_template_check_lookups(tpl, &job, errbuf, sizeof(errbuf));
        const char **vals = calloc(refs.n + 1, sizeof(*vals));
        for (size_t i = 0; vals && i < refs.n; i++) {
            if (extra) {
                vals[i] = extra;
                char *next = strchr(extra, '\x01');
                if (next)
                    *next++ = '\0';
                extra = next;
            } else {
                size_t h = 0;
                for (const char *c = refs.names[i]; *c; c++)
                    h = h * 31 + (unsigned char)*c;
                vals[i] = row_values[h % (sizeof(row_values) / sizeof(row_values[0]))];
            }
        }
        struct sl_arena arena;
        sl_arena_init(&arena);
        struct sl_eval_ctx ctx = {&job, "key", 3, &arena};
        const char *out, *errmsg;
        if (vals) {
            int rc = sl_template_eval(tpl, vals, &ctx, &out, &errmsg);
            if (rc == 0 && out && !*out)
                abort(); /* "" must be reported as missing */
            if (rc == 0 && out)
                (void)strlen(out);
            if (rc != 0 && !errmsg)
                abort();
        }
        sl_arena_cleanup(&arena);
        free(vals);
        sl_template_destroy(tpl);
    } else if (!errbuf[0]) {
        abort(); /* every failure has a message */
    }
    sl_refs_cleanup(&refs);
    free(src);
    return 0;
}
