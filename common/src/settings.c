/*
 * Configuration (service.h): the one table of every setting of every
 * program, the config file, and how a program resolves its settings.
 *
 * The config file (--config FILE or SLUICE_CONFIG) is in env-file format:
 * NAME=value lines, '#' comment lines and blank lines; a value may be
 * quoted "..." or '...' (the quotes are removed, nothing inside is special);
 * no escapes, no expansion, no inline comments (a '#' after the '=' is part
 * of the value). Keys are the variables of the table; an unknown key, a
 * malformed line or a key given twice stops the program naming FILE:LINE.
 * A key of another program's settings is accepted and ignored, so one file
 * may serve every service. Values are never part of a message: the file
 * may hold secrets (a mounted Kubernetes Secret).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sluice/log.h"
#include "sluice/service.h"

#define SVC  SL_PROG_SERVICE
#define GW   SL_PROG_GATEWAY
#define CLI  SL_PROG_CLI
#define ALL  (SVC | GW | CLI)
#define SECR SL_SETTING_SECRET
#define PATT SL_SETTING_PATTERN

/* Every setting: {env, flag, default, help, programs, kind, read by (docs),
 * default (docs, when not `def`)}. The order is the docs table's. */
const struct sl_setting sl_settings[] = {
    {"SLUICE_CONFIG", "--config", NULL,
     "the config file, `NAME=value` lines (docs/configuration.md); not itself a key of it", ALL, 0,
     "every program", NULL},
    {"SLUICE_KAFKA_BROKERS", "--kafka-brokers", "localhost:9092",
     "Kafka bootstrap servers, `host:port,host:port`", SVC | GW | CLI, 0,
     "services, gateway, `sluice submit --run`", NULL},
    {"SLUICE_TOPIC_PREFIX", "--topic-prefix", "sluice.",
     "prefix of every topic name (letters, digits, `.`, `_`, `-`)", SVC | GW | CLI, 0,
     "services, gateway, `sluice submit --run`", NULL},
    {"SLUICE_KAFKA_CONFIG", "--kafka-config", NULL,
     "extra librdkafka properties `k=v,k=v` (Kafka bus, below)", SVC | GW | CLI, 0,
     "services, gateway, `sluice submit --run`", NULL},
    {"SLUICE_REDIS_URL", "--redis-url", "redis://127.0.0.1:6379/0",
     "Redis (below): keys seen, last file hashes, each run's live progress, webhook replays",
     SVC | GW, 0, "services, gateway", NULL},
    {"SLUICE_POSTGRES_URL", "--postgres-url", NULL,
     "control-plane PostgreSQL (libpq URI or keyword string); migrations are applied at start",
     SVC | GW | CLI, 0, "services, gateway, `sluice submit`, `sluice runs`, `sluice run`",
     "none: required (services, gateway)"},
    {"SLUICE_DESTINATION_URL", "--destination-url", NULL, "PostgreSQL of `postgres` destinations",
     SVC | CLI, 0, "publisher, `sluice run`",
     "the control plane's (services); `sluice run`: `SLUICE_POSTGRES_URL`, else the NDJSON "
     "file"},
    {"SLUICE_BLOB_DIR", "--blob-dir", "./blobs",
     "raw file of every run, `<dir>/<job>/<run>/<file>` (a shared volume); the gateway serves "
     "it (`GET /v1/runs/{id}/source`)",
     SVC | GW, 0, "fetcher, publisher, gateway", NULL},
    {"SLUICE_FILE_DIRS", "--file-dirs", NULL,
     "directories (`:`-separated) that `file://` sources of the services may read", SVC, 0,
     "fetcher", "none: `file://` only in embedded mode"},
    {"SLUICE_HASH_KEY", "--hash-key", NULL,
     "HMAC-SHA256 key of the `hash` filter's pseudonymous IDs; never logged", SVC | GW | CLI, SECR,
     "mapper, gateway (webhooks), `sluice run`, `sluice preview`",
     "none: `hash` fails the row without it"},
    {"SLUICE_ALLOW_HOSTS", "--allow-hosts", NULL,
     "hosts/CIDRs the remote sources may reach despite the SSRF guard, comma-separated (e.g. "
     "`10.1.0.0/16,::1,files.internal`; docs/sources.md)",
     SVC | CLI, 0, "fetcher, `sluice run`, `sluice preview`", NULL},
    {"SLUICE_GROUP", "--group", NULL, "Kafka consumer group", SVC, 0, "services",
     "`sluice-<stage>`"},
    {"SLUICE_LOG_LEVEL", "--log-level", "info", "`debug`, `info`, `warn` or `error`", ALL, 0,
     "every program", "`info` (services, gateway), `warn` (`sluice`)"},
    {"SLUICE_LOG_FORMAT", "--log-format", "text", "`text` or `json`", ALL, 0, "every program",
     NULL},
    {"SLUICE_METRICS_ADDR", "--metrics-addr", "0.0.0.0:9464",
     "`host:port` of `GET /metrics` (Prometheus) and `GET /healthz`; `off`: none; a malformed "
     "or busy address stops the service (exit 2)",
     SVC | GW, 0, "services, gateway", NULL},
    {"SLUICE_HTTP_ADDR", "--http-addr", "0.0.0.0:8080", "listen address `host:port` of the API", GW,
     0, "gateway", NULL},
    {"SLUICE_HTTP_MAX_JOB_BYTES", "--http-max-job-bytes", "1048576",
     "largest job document accepted (1024 to 67108864)", GW, 0, "gateway", NULL},
    {"SLUICE_WEBHOOK_WINDOW_MS", "--webhook-window-ms", "1000",
     "a job's webhook deliveries within this many milliseconds of the first are rows of one "
     "streaming run (10 to 3600000; docs/api.md)",
     GW, 0, "gateway", NULL},
    {"SLUICE_WEBHOOK_WINDOW_ROWS", "--webhook-window-rows", "100000",
     "...or until the run has this many rows (1 to 100000000)", GW, 0, "gateway", NULL},
    {"SLUICE_ADMIN_TOKEN", NULL, NULL,
     "bootstrap admin token (16 characters at least), stored hashed; never logged", GW, SECR,
     "gateway", NULL},
    {"SLUICE_WEBHOOK_SECRET_<JOB>", NULL, NULL,
     "HMAC secret of the webhooks of job `<JOB>` (upper case, other characters `_`) without a "
     "`webhook.secret`; never logged",
     GW, SECR | PATT, "gateway", NULL},
    {"SLUICE_SERVER", NULL, NULL, "the gateway's URL for the remote commands (or `--server URL`)",
     CLI, 0, "`sluice jobs`, `sluice runs`", "none: `sluice runs` reads PostgreSQL"},
    {"SLUICE_TOKEN", NULL, NULL, "API token of the remote commands (or `--token-file FILE`)", CLI,
     SECR, "`sluice jobs`, `sluice runs`", NULL},
    {"SLUICE_SMTP_URL", "--smtp-url", NULL,
     "SMTP server of run reports, `smtp://host:port` or `smtps://host:port` (docs/email.md)",
     SVC | CLI, 0, "publisher, `sluice run`", "none: reports are written, not sent"},
    {"SLUICE_SMTP_USER", "--smtp-user", NULL, "SMTP login", SVC | CLI, 0, "publisher, `sluice run`",
     "the URL's; none: no login"},
    {"SLUICE_SMTP_PASSWORD", NULL, NULL, "SMTP password; never logged", SVC | CLI, SECR,
     "publisher, `sluice run`", "the URL's"},
    {"SLUICE_SMTP_PASSWORD_FILE", "--smtp-password-file", NULL,
     "a file holding the SMTP password (instead of `SLUICE_SMTP_PASSWORD`)", SVC | CLI, 0,
     "publisher, `sluice run`", NULL},
    {"SLUICE_SMTP_FROM", "--smtp-from", NULL, "the sender of run reports", SVC | CLI, 0,
     "publisher, `sluice run`", "`sluice@<host name>`"},
    {"SLUICE_SMTP_STARTTLS", "--smtp-starttls", "required",
     "`required`, `opportunistic` or `off` (`smtp://`)", SVC | CLI, 0, "publisher, `sluice run`",
     NULL},
    {"SLUICE_SMTP_CA_FILE", "--smtp-ca-file", NULL, "CA certificates of the SMTP server", SVC | CLI,
     0, "publisher, `sluice run`", "the system's"},
    {"SLUICE_SMTP_TIMEOUT", "--smtp-timeout", "60", "seconds of silence before giving up",
     SVC | CLI, 0, "publisher, `sluice run`", NULL},
    {"SLUICE_SMTP_RETRIES", "--smtp-retries", "3", "retries of a failed delivery", SVC | CLI, 0,
     "publisher, `sluice run`", NULL},
    {"SLUICE_SMTP_RETRY_DELAY_MS", "--smtp-retry-delay-ms", "1000",
     "first backoff between retries (doubled each time)", SVC | CLI, 0, "publisher, `sluice run`",
     NULL},
    {"AWS_ACCESS_KEY_ID", "--aws-access-key-id", NULL,
     "access key of an `s3://` source whose job gives no `source.s3.access_key_id`", SVC | CLI, 0,
     "fetcher, `sluice run`", "none: such a source fails naming the field"},
    {"AWS_SECRET_ACCESS_KEY", NULL, NULL,
     "secret key of an `s3://` source whose job gives no `source.s3.secret_access_key`; never "
     "logged",
     SVC | CLI, SECR, "fetcher, `sluice run`", "none: such a source fails naming the field"},
    {"AWS_SESSION_TOKEN", NULL, NULL,
     "token of temporary credentials, sent with the default keys above; never logged", SVC | CLI,
     SECR, "fetcher, `sluice run`", NULL},
    {"AWS_REGION", "--aws-region", NULL, "region of an `s3://` source without `source.s3.region`",
     SVC | CLI, 0, "fetcher, `sluice run`", "`AWS_DEFAULT_REGION`, else `us-east-1`"},
    {"AWS_DEFAULT_REGION", "--aws-default-region", NULL, "region when `AWS_REGION` is unset",
     SVC | CLI, 0, "fetcher, `sluice run`", "`us-east-1`"},
    {"HOME", "--home", NULL,
     "`$HOME/.ssh/known_hosts` checks the host key of an `sftp://` source without "
     "`source.sftp.known_hosts` or `host_key_sha256`",
     SVC | CLI, 0, "fetcher, `sluice run`", "the login's"},
    {"TMPDIR", "--tmpdir", "/tmp",
     "temporary files: an IMAP message being read, a download without a blob or output "
     "directory, report files",
     ALL, 0, "every program", NULL},
    {"TZDIR", "--tzdir", "/usr/share/zoneinfo", "where tzdata lives (time zones of filters)", ALL,
     0, "every program", NULL},
};
const size_t sl_settings_count = sizeof(sl_settings) / sizeof(sl_settings[0]);

enum { SRC_NONE, SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

#define CONFIG_MAX_BYTES (1 << 20)

static bool is_pattern(const struct sl_setting *s)
{
    return s->kind & SL_SETTING_PATTERN;
}

/* The length of a pattern's prefix ("SLUICE_WEBHOOK_SECRET_"). */
static size_t pattern_prefix(const struct sl_setting *s)
{
    const char *lt = strchr(s->env, '<');
    return lt ? (size_t)(lt - s->env) : strlen(s->env);
}

/* The row of key (a variable name), or -1. */
static long find_row(const char *key)
{
    for (size_t i = 0; i < sl_settings_count; i++) {
        const struct sl_setting *s = &sl_settings[i];
        if (is_pattern(s)) {
            size_t pl = pattern_prefix(s);
            if (!strncmp(key, s->env, pl) && key[pl])
                return (long)i;
        } else if (!strcmp(key, s->env)) {
            return (long)i;
        }
    }
    return -1;
}

/* The edit distance of a and b, capped: 3 means 3 or more. */
static unsigned distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64 || (la > lb ? la - lb : lb - la) > 2)
        return 3;
    unsigned row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0];
        row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] < 3 ? row[lb] : 3;
}

/* " (did you mean 'X'?)" for the closest variable (flags: the closest flag
 * of program) within 2 edits, else "". */
static const char *did_you_mean(const char *word, unsigned program, bool flags, char *buf,
                                size_t bufsz)
{
    unsigned best = 3;
    const char *hit = NULL;
    for (size_t i = 0; i < sl_settings_count; i++) {
        const struct sl_setting *s = &sl_settings[i];
        const char *cand = flags ? s->flag : s->env;
        if (!cand || (flags && !(s->programs & program)) || (s->kind & SL_SETTING_PATTERN))
            continue;
        unsigned d = distance(word, cand);
        if (d < best) {
            best = d;
            hit = cand;
        }
    }
    if (!hit)
        return "";
    snprintf(buf, bufsz, " (did you mean '%s'?)", hit);
    return buf;
}

void sl_settings_usage(const char *name, unsigned program, FILE *out)
{
    bool flags = program != SL_PROG_CLI;
    if (flags)
        fprintf(out,
                "usage: %s [--setting VALUE]... [--config FILE]\n\n"
                "Settings (flag, environment variable, meaning, default); every variable may "
                "also\nbe a NAME=value line of the config file; flag > environment > file > "
                "default:\n",
                name);
    else
        fprintf(out,
                "Settings of %s (environment variable, meaning, default); every variable may "
                "also\nbe a NAME=value line of the config file (sluice --config FILE "
                "COMMAND, or\nSLUICE_CONFIG); the environment wins over the file:\n",
                name);
    for (size_t i = 0; i < sl_settings_count; i++) {
        const struct sl_setting *s = &sl_settings[i];
        if (!(s->programs & program))
            continue;
        if (flags)
            fprintf(out, "  %-22s ", s->flag ? s->flag : "(no flag)");
        else
            fputs("  ", out);
        fprintf(out, "%-27s %s%s%s%s\n", s->env, s->help, s->def ? "; default " : "",
                s->def ? s->def : "",
                s->flag || !flags ? "" : " (environment or config file only)");
    }
}

void sl_settings_markdown(FILE *out)
{
    fputs("| variable | flag | read by | meaning | default |\n|---|---|---|---|---|\n", out);
    for (size_t i = 0; i < sl_settings_count; i++) {
        const struct sl_setting *s = &sl_settings[i];
        fprintf(out, "| `%s` | ", s->env);
        if (s->flag)
            fprintf(out, "`%s`", s->flag);
        else if (s->programs == SL_PROG_CLI)
            fputs("none (`sluice`)", out);
        else if (s->kind & SL_SETTING_SECRET)
            fputs("none (a secret)", out);
        else
            fputs("none", out);
        fprintf(out, " | %s | %s | ", s->read_by, s->help);
        if (s->doc_def)
            fputs(s->doc_def, out);
        else if (s->def)
            fprintf(out, "`%s`", s->def);
        else
            fputs("none", out);
        fputs(" |\n", out);
    }
}

void sl_config_cleanup(struct sl_config *cfg)
{
    free(cfg->val);
    free(cfg->src);
    free(cfg->line);
    if (cfg->file_text) {
        explicit_bzero(cfg->file_text, strlen(cfg->file_text));
        free(cfg->file_text);
    }
    memset(cfg, 0, sizeof(*cfg));
}

/* Reads path whole into a string (NUL-free); NULL with errno (EINVAL: not
 * a regular text file). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    int e = EINVAL;
    if (fstat(fileno(f), &st)) {
        e = errno;
    } else if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
    } else if (st.st_size > CONFIG_MAX_BYTES) {
        e = EFBIG;
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        e = ENOMEM;
    } else {
        n = fread(buf, 1, (size_t)st.st_size, f);
        buf[n] = '\0';
        if (ferror(f) || strlen(buf) != n) {
            e = ferror(f) ? EIO : EINVAL;
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    errno = e;
    return buf;
}

static bool name_char(char c, bool first)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (!first && c >= '0' && c <= '9');
}

/* Parses the config file into cfg->file_text; file values of the program's
 * settings go to fval/fline, pattern keys are exported (unless the
 * environment has them). 0, or 2 after a message naming FILE:LINE. */
static int read_file(struct sl_config *cfg, const char *path, const char **fval, unsigned *fline)
{
    if (!(cfg->file_text = slurp(path))) {
        fprintf(stderr, "%s: config file %s: %s\n", cfg->name, path,
                errno == EINVAL ? "not a regular text file" : strerror(errno));
        return 2;
    }
    cfg->file = path;
    unsigned lineno = 0;
    struct {
        const char *key;
        unsigned line;
    } *pkeys = NULL; /* the pattern keys seen */
    size_t npk = 0;
    char *p = cfg->file_text;
    if (!strncmp(p, "\xef\xbb\xbf", 3)) /* a byte order mark, as some editors write */
        p += 3;
    while (*p) {
        char *line = p, *nl = strchr(p, '\n');
        p = nl ? nl + 1 : p + strlen(p);
        if (nl)
            *nl = '\0';
        lineno++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line || *line == '#')
            continue;
        char *eq = line;
        while (name_char(*eq, eq == line))
            eq++;
        if (eq == line || *eq != '=') {
            fprintf(stderr, "%s: %s:%u: malformed line (expected NAME=value)\n", cfg->name, path,
                    lineno);
            goto fail;
        }
        *eq = '\0';
        char *v = eq + 1;
        size_t vl = strlen(v);
        if (v[0] == '"' || v[0] == '\'') {
            if (vl < 2 || v[vl - 1] != v[0]) {
                fprintf(stderr,
                        "%s: %s:%u: %s: the quote %c is not closed at the end of the line\n",
                        cfg->name, path, lineno, line, v[0]);
                goto fail;
            }
            v[vl - 1] = '\0';
            v++;
        }
        long r = find_row(line);
        if (r < 0) {
            char dym[128];
            fprintf(stderr, "%s: %s:%u: unknown setting '%s'%s\n", cfg->name, path, lineno, line,
                    did_you_mean(line, 0, false, dym, sizeof(dym)));
            goto fail;
        }
        const struct sl_setting *s = &sl_settings[r];
        if (!strcmp(s->env, "SLUICE_CONFIG")) {
            fprintf(stderr, "%s: %s:%u: SLUICE_CONFIG cannot be set in a config file\n", cfg->name,
                    path, lineno);
            goto fail;
        }
        if (is_pattern(s)) {
            /* one value per variable: exported at once, the environment wins */
            for (size_t k = 0; k < npk; k++)
                if (!strcmp(pkeys[k].key, line)) {
                    fprintf(stderr, "%s: %s:%u: %s is set twice (first at line %u)\n", cfg->name,
                            path, lineno, line, pkeys[k].line);
                    goto fail;
                }
            void *grown = realloc(pkeys, (npk + 1) * sizeof(*pkeys));
            if (!grown) {
                fprintf(stderr, "%s: %s: out of memory\n", cfg->name, path);
                goto fail;
            }
            pkeys = grown;
            pkeys[npk].key = line;
            pkeys[npk++].line = lineno;
            const char *e = getenv(line);
            if ((s->programs & cfg->program) && !(e && e[0]) && v[0] && setenv(line, v, 1)) {
                fprintf(stderr, "%s: %s:%u: %s: %s\n", cfg->name, path, lineno, line,
                        strerror(errno));
                goto fail;
            }
            continue;
        }
        if (fline[r]) {
            fprintf(stderr, "%s: %s:%u: %s is set twice (first at line %u)\n", cfg->name, path,
                    lineno, line, fline[r]);
            goto fail;
        }
        fline[r] = lineno;
        fval[r] = v;
    }
    free(pkeys);
    return 0;
fail:
    free(pkeys);
    return 2;
}

int sl_config_read(struct sl_config *cfg, const char *name, unsigned program, int argc, char **argv,
                   const char *extra_help)
{
    size_t n = sl_settings_count;
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = name;
    cfg->program = program;
    cfg->val = calloc(n, sizeof(*cfg->val));
    cfg->src = calloc(n, sizeof(*cfg->src));
    cfg->line = calloc(n, sizeof(*cfg->line));
    const char **flag = calloc(n, sizeof(*flag));
    const char **fval = calloc(n, sizeof(*fval));
    int rc = 2;
    if (!cfg->val || !cfg->src || !cfg->line || !flag || !fval) {
        fprintf(stderr, "%s: out of memory\n", name);
        goto out;
    }
    /* the flags first: --config names the file */
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            sl_settings_usage(name, program, stdout);
            if (extra_help)
                fputs(extra_help, stdout);
            rc = -1;
            goto out;
        }
        size_t i;
        const char *v = NULL;
        for (i = 0; i < n; i++) {
            const struct sl_setting *s = &sl_settings[i];
            size_t fl = s->flag && (s->programs & program) ? strlen(s->flag) : 0;
            if (fl && !strncmp(argv[a], s->flag, fl) &&
                (argv[a][fl] == '\0' || argv[a][fl] == '=')) {
                v = argv[a][fl] == '=' ? argv[a] + fl + 1 : (a + 1 < argc ? argv[++a] : NULL);
                break;
            }
        }
        if (i == n) {
            char dym[128], opt[80];
            snprintf(opt, sizeof(opt), "%.*s", (int)strcspn(argv[a], "="), argv[a]);
            fprintf(stderr, "%s: unknown option '%s'%s (see --help)\n", name, opt,
                    did_you_mean(opt, program, true, dym, sizeof(dym)));
            goto out;
        }
        if (!v) {
            fprintf(stderr, "%s: option '%s' needs a value\n", name, sl_settings[i].flag);
            goto out;
        }
        flag[i] = v;
    }
    long ci = find_row("SLUICE_CONFIG");
    const char *path = flag[ci];
    if (!path || !path[0])
        path = getenv("SLUICE_CONFIG");
    if (path && path[0] && read_file(cfg, path, fval, cfg->line))
        goto out;
    for (size_t i = 0; i < n; i++) {
        const struct sl_setting *s = &sl_settings[i];
        if (!(s->programs & program) || is_pattern(s))
            continue;
        const char *e = getenv(s->env);
        if (flag[i] && flag[i][0]) {
            cfg->val[i] = flag[i];
            cfg->src[i] = SRC_FLAG;
        } else if (e && e[0]) {
            cfg->val[i] = e;
            cfg->src[i] = SRC_ENV;
        } else if (fval[i] && fval[i][0]) {
            cfg->val[i] = fval[i];
            cfg->src[i] = SRC_FILE;
        } else if (s->def) {
            cfg->val[i] = s->def;
            cfg->src[i] = SRC_DEFAULT;
        }
        /* the deep getenv() readers see what the program sees */
        if ((cfg->src[i] == SRC_FLAG || cfg->src[i] == SRC_FILE) &&
            setenv(s->env, cfg->val[i], 1)) {
            fprintf(stderr, "%s: %s: %s\n", name, s->env, strerror(errno));
            goto out;
        }
        if (cfg->src[i] != SRC_FILE)
            cfg->line[i] = 0;
    }
    if (path && path[0]) {
        cfg->val[ci] = path;
        cfg->src[ci] = flag[ci] && flag[ci][0] ? SRC_FLAG : SRC_ENV;
    }
    rc = 0;
out:
    free(flag);
    free(fval);
    return rc;
}

const char *sl_config_get(const struct sl_config *cfg, const char *env)
{
    for (size_t i = 0; i < sl_settings_count; i++)
        if (!strcmp(sl_settings[i].env, env) && (sl_settings[i].programs & cfg->program))
            return cfg->val ? cfg->val[i] : NULL;
    fprintf(stderr, "%s: %s is no setting of this program (common/src/settings.c)\n", cfg->name,
            env);
    abort();
}

const char *sl_config_source(const struct sl_config *cfg, const char *env, char *buf, size_t bufsz)
{
    (void)sl_config_get(cfg, env); /* a name of the program's, else abort */
    for (size_t i = 0; i < sl_settings_count; i++) {
        const struct sl_setting *s = &sl_settings[i];
        if (strcmp(s->env, env))
            continue;
        switch (cfg->val && cfg->val[i] ? cfg->src[i] : SRC_NONE) {
        case SRC_FLAG:
            snprintf(buf, bufsz, "%s", s->flag);
            break;
        case SRC_FILE:
            snprintf(buf, bufsz, "%s in %s:%u", env, cfg->file, cfg->line[i]);
            break;
        case SRC_DEFAULT:
            snprintf(buf, bufsz, "%s, the default", s->flag ? s->flag : env);
            break;
        case SRC_ENV:
            snprintf(buf, bufsz, "%s in the environment", env);
            break;
        default:
            snprintf(buf, bufsz, "%s", env);
        }
        break;
    }
    return buf;
}

/* Names and sources only: a URL may hold a password too. */
void sl_config_log(const struct sl_config *cfg)
{
    for (size_t i = 0; cfg->val && i < sl_settings_count; i++) {
        const struct sl_setting *s = &sl_settings[i];
        if (!cfg->val[i] || cfg->src[i] == SRC_DEFAULT)
            continue;
        if (cfg->src[i] == SRC_FILE)
            sl_debug(cfg->name, "setting %s from %s:%u", s->env, cfg->file, cfg->line[i]);
        else
            sl_debug(cfg->name, "setting %s from %s", s->env,
                     cfg->src[i] == SRC_FLAG ? s->flag : "the environment");
    }
}
