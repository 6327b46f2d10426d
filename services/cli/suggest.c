/*
 * sluice suggest FILE [--job JOB.json] [--write OUT.json [--force]] [--json] [--rows N]:
 * a mapping proposed from FILE's columns and values (issue 5, auto-mapping).
 *
 * This file only reads: FILE in its format (sl_format_detect,
 * sl_source_read_fd; with --job in the job's source options, without one
 * with the encoding guessed), its header and first N rows into the suggest
 * module's sample (common/src/suggest.c), which does the matching; then it
 * prints the proposal as a table or JSON and, with --write, writes the job
 * file the proposal makes (which `sluice check` accepts).
 *
 * Exit status: 0; 1 FILE cannot be read (the message names it); 2 a bad
 * command line or job file, or OUT.json exists without --force.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/reader.h"
#include "sluice/suggest.h"
#include "sluice/util.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_INVALID = 2 };

static const char usage_text[] =
    "usage: sluice suggest FILE [--job JOB.json] [--write OUT.json [--force]] [--json]\n"
    "                           [--rows N]\n"
    "\n"
    "Proposes a mapping from FILE's columns to target attributes, each with a confidence\n"
    "and the reasons for it, from the column names (synonyms in English and German) and\n"
    "a sample of the values (dates, numbers, e-mails, phone numbers, ...).\n"
    "\n"
    "  --job JOB.json   match the job's target attributes (FILE is read with the job's\n"
    "                   source options; the job's mapping may be empty or absent);\n"
    "                   without it, a target is proposed: one attribute per column\n"
    "  --write OUT.json write the job with the proposed mapping (without --job: a new\n"
    "                   job for FILE); an existing OUT.json is replaced only with --force\n"
    "  --json           print the proposal as JSON\n"
    "  --rows N         sample the first N rows (default 1000)\n"
    "\n"
    "Exit status: 0 done, 1 FILE cannot be read, 2 invalid command line or job file.\n";

struct suggest_args {
    const char *file, *job, *write;
    bool json, force;
    size_t rows;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "sluice: suggest: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'sluice suggest --help'.\n");
    return EXIT_INVALID;
}

enum { OPT_JOB = 1, OPT_WRITE, OPT_JSON, OPT_ROWS, OPT_FORCE, OPT_HELP };

static const struct option suggest_opts[] = {
    {"job", required_argument, NULL, OPT_JOB},
    {"write", required_argument, NULL, OPT_WRITE},
    {"json", no_argument, NULL, OPT_JSON},
    {"rows", required_argument, NULL, OPT_ROWS},
    {"force", no_argument, NULL, OPT_FORCE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Returns -1 after printing help, an exit status > 0 on a usage error, 0. */
static int parse_args(int argc, char **argv, struct suggest_args *a)
{
    opterr = 0;
    optind = 1;
    a->rows = SL_SUGGEST_ROWS;
    int c;
    while ((c = getopt_long(argc, argv, ":", suggest_opts, NULL)) != -1) {
        switch (c) {
        case OPT_JOB:
            a->job = optarg;
            break;
        case OPT_WRITE:
            a->write = optarg;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_FORCE:
            a->force = true;
            break;
        case OPT_ROWS: {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end || errno || n == 0 || n > 10000000)
                return usage_error("--rows: '%s' is not a number of rows from 1 to 10000000",
                                   optarg);
            a->rows = (size_t)n;
            break;
        }
        case OPT_HELP:
            fputs(usage_text, stdout);
            return -1;
        case ':':
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("missing the file to suggest a mapping for", "");
    a->file = argv[optind++];
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (a->force && !a->write)
        return usage_error("--force goes with --write", "");
    return 0;
}

/* Loads the job of --job. Its mapping may lack entries, even be absent:
 * suggest is what fills it, so the loader gets a stand-in for each
 * attribute without one (the column of its name) and checks everything
 * else. *doc gets the document as written (the base of --write). NULL with
 * the message printed. */
static struct sl_job *load_job(const char *path, json_t **doc)
{
    char err[1024] = "";
    size_t len = 0;
    char *text = sl_read_file(path, &len), *dir = sl_path_dir(path), *filled = NULL;
    struct sl_job *job = NULL;
    *doc = NULL;
    if (!text || !dir) {
        fprintf(stderr, "sluice: %s: could not read: %s\n", path, strerror(errno));
        goto out;
    }
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *map = json_object_get(root, "mapping");
    json_t *attrs = json_object_get(json_object_get(root, "target"), "attributes");
    if (json_is_object(root) && json_is_object(attrs) && (!map || json_is_object(map))) {
        json_t *copy = json_deep_copy(root);
        json_t *stand_in = map ? json_deep_copy(map) : json_object();
        const char *name;
        json_t *def;
        json_object_foreach(attrs, name, def)
        {
            if (!json_object_get(stand_in, name))
                json_object_set_new(stand_in, name, json_string(name[0] ? name : "_"));
        }
        json_object_set_new(copy, "mapping", stand_in);
        filled = json_dumps(copy, JSON_COMPACT);
        json_decref(copy);
    }
    if (filled)
        job = sl_job_load_json(filled, strlen(filled), dir, err, sizeof(err));
    else
        job = sl_job_load_json(text, len, dir, err, sizeof(err));
    if (job)
        *doc = root;
    else
        json_decref(root);
    if (!job)
        fprintf(stderr, "sluice: %s: %s\n", path, err);
out:
    free(filled);
    free(text);
    free(dir);
    return job;
}

static int on_header(void *ud, const char *const *names, size_t n)
{
    return sl_suggest_header(ud, names, n);
}

static int on_row(void *ud, const struct sl_row *row)
{
    return sl_suggest_row(ud, row);
}

/* The file name without directory and extension ("stores" of
 * "data/stores.csv"), into out. */
static void file_stem(const char *path, char *out, size_t outsz)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, outsz, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = '\0';
}

/* A job name ([A-Za-z0-9_.-]{1,128}) made of the file name's stem. */
static void job_name(const char *path, char *out, size_t outsz)
{
    char stem[PATH_MAX], ident[64];
    file_stem(path, stem, sizeof(stem));
    /* folded and separated as attribute names are, dashes for underscores */
    sl_suggest_ident(stem, ident, sizeof(ident));
    for (char *p = ident; *p; p++)
        if (*p == '_')
            *p = '-';
    snprintf(out, outsz, "%s", strcmp(ident, "column") ? ident : "suggested");
}

/* FILE as the new job's source.url: relative to the directory of OUT.json
 * (JOBS.md: a path without a scheme is relative to the job file), absolute
 * when that cannot be worked out. Caller frees. */
static char *source_url(const char *file, const char *out)
{
    char *f = realpath(file, NULL), *odir = sl_path_dir(out);
    char *d = odir ? realpath(odir, NULL) : NULL, *res = NULL;
    free(odir);
    if (!f || !d) {
        res = strdup(f ? f : file);
        goto done;
    }
    /* the longest common directory prefix, then ".." for the rest of d */
    size_t common = 0, i = 0;
    for (; f[i] && d[i] && f[i] == d[i]; i++)
        if (f[i] == '/')
            common = i;
    if (!d[i] && f[i] == '/')
        common = i;
    struct sl_buf b = SL_BUF_INIT;
    for (const char *p = d + common; *p; p++)
        if (*p == '/' && (p[1] || p == d + common))
            sl_buf_puts(&b, "../");
    if (!strcmp(d, "/"))
        b.len = 0;
    sl_buf_puts(&b, f + common + 1);
    res = sl_buf_steal(&b);
done:
    free(f);
    free(d);
    return res;
}

/* Characters of UTF-8 s (its display width, near enough). */
static size_t width(const char *s)
{
    return sl_utf8_len(s, strlen(s));
}

static void pad(const char *s, size_t w)
{
    fputs(s, stdout);
    for (size_t n = width(s); n < w; n++)
        putchar(' ');
}

/* The column cell of the table: "← Umsatz", "← Umsatz | number('de')". */
static char *column_cell(const struct sl_suggestion *it)
{
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_printf(&b, "\u2190 %s", it->column);
    if (it->filter)
        sl_buf_printf(&b, " | %s", it->filter);
    return sl_buf_steal(&b);
}

static void print_table(const struct sl_suggest_result *res, const char *file, const char *fmt,
                        const struct sl_reader_stats *st, const struct sl_job *job)
{
    printf("%s: %s", file, fmt);
    if (!strcmp(fmt, "csv")) {
        char d[8];
        snprintf(d, sizeof(d), st->delimiter == '\t' ? "tab" : "'%c'", st->delimiter);
        printf(", delimiter %s, %s", d, sl_encoding_name(st->encoding));
    }
    printf("; %zu %s sampled, %zu columns\n", res->rows, res->rows == 1 ? "row" : "rows",
           res->columns);
    if (res->target) {
        json_t *key = json_object_get(res->target, "key");
        printf("proposed target: object '%s', key (%s)\n",
               json_string_value(json_object_get(res->target, "object")),
               key ? json_string_value(json_array_get(key, 0)) : "none: rows are appended");
    } else if (job) {
        printf("target: object '%s', %zu attributes\n", job->object, job->nattrs);
    }
    if (res->nitems) {
        static const char *const head[] = {"attribute",     "type",       "required",
                                           "\u2190 column", "confidence", "why"};
        size_t w[6];
        for (int k = 0; k < 6; k++)
            w[k] = width(head[k]);
        char **cells = calloc(res->nitems, sizeof(*cells));
        for (size_t i = 0; i < res->nitems; i++) {
            const struct sl_suggestion *it = &res->items[i];
            if (cells)
                cells[i] = column_cell(it);
            size_t cw[4] = {width(it->attribute), width(sl_type_name(it->type)), 3,
                            cells && cells[i] ? width(cells[i]) : 0};
            for (int k = 0; k < 4; k++)
                if (cw[k] > w[k])
                    w[k] = cw[k];
        }
        putchar('\n');
        for (int k = 0; k < 6; k++) {
            pad(head[k], k < 5 ? w[k] + 2 : 0);
        }
        putchar('\n');
        for (size_t i = 0; i < res->nitems; i++) {
            const struct sl_suggestion *it = &res->items[i];
            char conf[16];
            snprintf(conf, sizeof(conf), "%.2f", it->confidence);
            pad(it->attribute, w[0] + 2);
            pad(sl_type_name(it->type), w[1] + 2);
            pad(it->required ? "yes" : "", w[2] + 2);
            pad(cells && cells[i] ? cells[i] : it->column, w[3] + 2);
            pad(conf, w[4] + 2);
            for (size_t k = 0; k < it->nreasons; k++)
                printf("%s%s", k ? ", " : "", it->reasons[k]);
            putchar('\n');
            if (cells)
                free(cells[i]);
        }
        free(cells);
    }
    if (res->nunmatched) {
        size_t w = 0;
        for (size_t i = 0; i < res->nunmatched; i++)
            if (width(res->unmatched[i].name) > w)
                w = width(res->unmatched[i].name);
        printf("\nunmatched columns:\n");
        for (size_t i = 0; i < res->nunmatched; i++) {
            printf("  ");
            pad(res->unmatched[i].name, res->unmatched[i].profile ? w + 2 : 0);
            printf("%s\n", res->unmatched[i].profile ? res->unmatched[i].profile : "");
        }
    }
    if (res->nunmapped) {
        printf("\nattributes without a column:\n");
        for (size_t i = 0; i < res->nunmapped; i++)
            printf("  %s%s\n", res->unmapped[i].name,
                   res->unmapped[i].required ? " (required)" : "");
    }
}

static int print_json(const struct sl_suggest_result *res, const char *file, const char *fmt,
                      const struct sl_reader_stats *st)
{
    json_t *doc = sl_suggest_result_json(res);
    if (!doc)
        return SL_ERR_NOMEM;
    json_object_set_new(doc, "file", json_string(file));
    json_object_set_new(doc, "format", json_string(fmt));
    if (!strcmp(fmt, "csv")) {
        char d[2] = {st->delimiter, '\0'};
        json_object_set_new(doc, "delimiter", json_string(d));
        json_object_set_new(doc, "encoding", json_string(sl_encoding_name(st->encoding)));
    }
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(doc);
    if (!text)
        return SL_ERR_NOMEM;
    puts(text);
    free(text);
    return 0;
}

/* The new job's document without --job: name, description, source. */
static json_t *new_job_base(const char *file, const char *out, const char *fmt,
                            const struct sl_reader_stats *st)
{
    char name[160], *url = source_url(file, out);
    const char *base = strrchr(file, '/');
    job_name(file, name, sizeof(name));
    json_t *doc = json_object(), *src = json_object();
    if (!url || !doc || !src) {
        free(url);
        json_decref(doc);
        json_decref(src);
        return NULL;
    }
    char desc[PATH_MAX + 64];
    snprintf(desc, sizeof(desc), "Proposed by sluice suggest from %s", base ? base + 1 : file);
    json_object_set_new(doc, "name", json_string(name));
    json_object_set_new(doc, "description", json_string(desc));
    json_object_set_new(src, "url", json_string(url));
    json_object_set_new(src, "format", json_string(fmt));
    if (!strcmp(fmt, "csv")) {
        char d[2] = {st->delimiter, '\0'};
        json_object_set_new(
            src, "csv",
            json_pack("{s:s,s:s}", "delimiter", d, "encoding", sl_encoding_name(st->encoding)));
    }
    json_object_set_new(doc, "source", src);
    free(url);
    return doc;
}

/* Writes the job of the proposal to a->write. Returns an exit status. */
static int write_job(const struct suggest_args *a, const struct sl_suggest_result *res,
                     const struct sl_job *job, const json_t *job_doc, const char *fmt,
                     const struct sl_reader_stats *st)
{
    json_t *base = job ? json_incref((json_t *)job_doc) : new_job_base(a->file, a->write, fmt, st);
    json_t *doc = base ? sl_suggest_job_doc(res, base) : NULL;
    json_decref(base);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(doc);
    if (!text) {
        fprintf(stderr, "sluice: %s: out of memory\n", a->write);
        return EXIT_FAILED;
    }
    /* what `sluice check` will say: a required attribute without a column
     * leaves the job to be finished by hand, anything else is a bug */
    char err[1024] = "", *dir = sl_path_dir(a->write);
    struct sl_job *check = sl_job_load_json(text, strlen(text), dir, err, sizeof(err));
    free(dir);
    bool unfinished = false;
    for (size_t i = 0; i < res->nunmapped; i++)
        unfinished |= res->unmapped[i].required;
    if (!check && !unfinished) {
        fprintf(stderr, "sluice: %s: the proposed job is not valid: %s\n", a->write, err);
        free(text);
        return EXIT_FAILED;
    }
    sl_job_destroy(check);
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_puts(&b, text);
    free(text);
    if (sl_buf_putc(&b, '\n')) {
        sl_buf_cleanup(&b);
        fprintf(stderr, "sluice: %s: out of memory\n", a->write);
        return EXIT_FAILED;
    }
    int rc = 0;
    if (a->force) {
        rc = sl_write_file_atomic(a->write, b.data, b.len);
    } else {
        /* O_EXCL: never replace a file that appeared since the check */
        int fd = open(a->write, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        size_t off = 0;
        while (fd >= 0 && off < b.len) {
            ssize_t n = write(fd, b.data + off, b.len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        int saved = errno;
        if (fd >= 0 && (off < b.len || close(fd))) {
            saved = errno;
            unlink(a->write);
        }
        errno = saved;
        rc = fd >= 0 && off == b.len ? 0 : -1;
    }
    sl_buf_cleanup(&b);
    if (rc) {
        fprintf(stderr, "sluice: could not write %s: %s\n", a->write, strerror(errno));
        return errno == EEXIST ? EXIT_INVALID : EXIT_FAILED;
    }
    FILE *msg = a->json ? stderr : stdout;
    fprintf(msg, "%swrote %s", a->json ? "sluice: " : "\n", a->write);
    /* the job's own entries of attributes no column fits stay as they were */
    json_t *old = job ? json_object_get(job_doc, "mapping") : NULL;
    size_t kept = 0;
    for (size_t i = 0; old && i < res->nunmapped; i++)
        if (json_object_get(old, res->unmapped[i].name))
            fprintf(msg, "%s%s", kept++ ? ", " : "; the job's own mapping kept for ",
                    res->unmapped[i].name);
    if (unfinished) {
        fprintf(msg, ": not valid yet, map the required attributes without a column:");
        for (size_t i = 0; i < res->nunmapped; i++)
            if (res->unmapped[i].required)
                fprintf(msg, " %s", res->unmapped[i].name);
        fprintf(msg, "\n");
    } else {
        fprintf(msg, " (sluice check %s, then sluice run %s)\n", a->write, a->write);
    }
    return EXIT_OK;
}

int sl_cmd_suggest(int argc, char **argv)
{
    struct suggest_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (a.write && !a.force && access(a.write, F_OK) == 0) {
        fprintf(stderr, "sluice: %s exists: not replaced (use --force to replace it)\n", a.write);
        return EXIT_INVALID;
    }

    json_t *job_doc = NULL;
    struct sl_job *job = NULL;
    struct sl_suggest *sg = NULL;
    struct sl_suggest_result *res = NULL;
    int fd = -1;
    if (a.job && !(job = load_job(a.job, &job_doc)))
        return EXIT_INVALID;

    char err[1024] = "";
    rc = EXIT_FAILED;
    if ((fd = open(a.file, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "sluice: %s: %s\n", a.file, strerror(errno));
        goto out;
    }
    enum sl_format fmt =
        sl_format_detect(job ? job->source.format : SL_FORMAT_AUTO, a.file, NULL, fd);
    struct sl_source src = {
        .csv_quote = '"',
        .csv_header = true,
        .header_row = 1,
    };
    if (job)
        src = job->source;
    else if (fmt == SL_FORMAT_CSV)
        src.encoding = sl_suggest_encoding(fd);
    if (!(sg = sl_suggest_new(a.rows, 0))) {
        fprintf(stderr, "sluice: out of memory\n");
        goto out;
    }
    struct sl_reader_stats st = {.encoding = src.encoding, .delimiter = src.csv_delimiter};
    int r = sl_source_read_fd(fd, fmt, &src, on_header, on_row, sg, &st, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "sluice: %s: %s\n", a.file, err);
        goto out;
    }
    if ((fmt == SL_FORMAT_XML || fmt == SL_FORMAT_JSON) && !job && sl_suggest_nrows(sg) == 1)
        fprintf(stderr,
                "sluice: warning: %s holds a single record; if its records are nested deeper, "
                "give their path in a job (source.%s.records) and use --job\n",
                a.file, fmt == SL_FORMAT_XML ? "xml" : "json");
    if (sl_suggest_ncolumns(sg) == 0) {
        fprintf(stderr, "sluice: %s: no columns to suggest a mapping for (no header, no records)\n",
                a.file);
        goto out;
    }
    char stem[PATH_MAX];
    file_stem(a.file, stem, sizeof(stem));
    if (!(res = sl_suggest_match(sg, job, stem, err, sizeof(err)))) {
        fprintf(stderr, "sluice: %s: %s\n", a.file, err);
        goto out;
    }
    const char *fname = sl_format_name(fmt);
    if (a.json) {
        if (print_json(res, a.file, fname, &st)) {
            fprintf(stderr, "sluice: out of memory\n");
            goto out;
        }
    } else {
        print_table(res, a.file, fname, &st, job);
    }
    rc = a.write ? write_job(&a, res, job, job_doc, fname, &st) : EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    sl_suggest_result_destroy(res);
    sl_suggest_destroy(sg);
    sl_job_destroy(job);
    json_decref(job_doc);
    return rc;
}
