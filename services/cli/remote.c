/*
 * sluice jobs ... and sluice runs ... --server URL: the sluice command as a
 * client of sluice-gateway's HTTP API (docs/api.md). Each subcommand is one
 * or a few requests made with libcurl, the answers read with jansson and
 * printed as a table, a summary line or JSON. The server comes from
 * --server URL or SLUICE_SERVER, the bearer token from SLUICE_TOKEN or
 * --token-file FILE; the token is sent in the Authorization header only and
 * never printed. The gateway's errors are printed as
 * "sluice: <message> (<code>, request <id>)".
 *
 * Exit status: 0 ok, 1 failure (the server answered an error or cannot be
 * reached), 2 a bad command line, or an invalid job or parameter (400).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "commands.h"
#include "sluice/util.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_INVALID = 2 };

/* the largest answer read (the job documents are at most 64 MiB) */
#define MAX_ANSWER ((size_t)80 << 20)

static const char jobs_usage[] =
    "usage: sluice jobs <subcommand> [options]   (the gateway's API at --server URL)\n"
    "\n"
    "  list [--json]                the jobs: id, version, enabled, next run, updated\n"
    "  get JOB [--version N]        the job's document as stored (--json: with its fields)\n"
    "  put JOB.json                 store the job: a new job or a new version\n"
    "  enable JOB | disable JOB     whether the scheduler fires the job\n"
    "  delete JOB                   delete the job and its versions (its runs stay)\n"
    "  run JOB [--force]            run the job now; prints the run's id\n"
    "  trigger JOB [--key KEY] [--force]\n"
    "                               the trigger API (an upstream's export is done): a\n"
    "                               run once per KEY; prints the run's id\n"
    "\n"
    "  sluice runs --server URL JOB [--status S] [--limit N] [--json]   a job's runs\n"
    "  sluice runs --server URL show RUN [--json]                       one run\n"
    "  sluice runs --server URL source RUN [--out FILE]                 the file it read\n"
    "  sluice runs --server URL report RUN [--format xlsx|csv] [--out FILE]\n"
    "                                                                   its error report\n"
    "\n"
    "Options: --server URL (else SLUICE_SERVER), --token-file FILE (else SLUICE_TOKEN).\n"
    "Exit status: 0 ok, 1 failed, 2 invalid command line or job.\n";

/* What one invocation knows: its settings and its connection. */
struct remote {
    const char *cmd;     /* "jobs" or "runs", for messages */
    const char *server;  /* the base URL, without a final '/' */
    char *base;          /* owned copy of server */
    char *token;         /* owned; wiped before it is freed */
    char token_src[512]; /* where the token came from, for messages */
    CURL *curl;
    bool global;    /* curl_global_init was called */
    FILE *download; /* set: a 200's body is written here (call()) */
};

/* One answer of the gateway: the status and the body (owned). */
struct answer {
    long status;
    char *body;
    size_t len;
    json_t *json; /* the body parsed, NULL when it is not JSON */
    FILE *out;    /* a download: a 200's body goes here, not into body */
    CURL *curl;
    bool write_failed;
};

static void answer_cleanup(struct answer *a)
{
    free(a->body);
    json_decref(a->json);
    memset(a, 0, sizeof(*a));
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "sluice: %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'sluice jobs --help'.\n");
    return EXIT_INVALID;
}

/* ---- settings ------------------------------------------------------------ */

/* Reads the token of --token-file (its first line, without the line end and
 * surrounding blanks); NULL with a message on failure. Caller frees. */
static char *read_token_file(const char *path)
{
    size_t len = 0;
    char *s = sl_read_file(path, &len);
    if (!s) {
        fprintf(stderr, "sluice: --token-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *nl = strpbrk(s, "\r\n");
    if (nl)
        *nl = '\0';
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t lead = strspn(s, " \t");
    memmove(s, s + lead, n - lead + 1);
    if (!s[0]) {
        fprintf(stderr, "sluice: --token-file %s holds no token\n", path);
        free(s);
        return NULL;
    }
    return s;
}

static void remote_cleanup(struct remote *rm)
{
    if (rm->token) {
        volatile char *p = rm->token;
        while (*p)
            *p++ = '\0';
        free(rm->token);
    }
    free(rm->base);
    if (rm->curl)
        curl_easy_cleanup(rm->curl);
    if (rm->global)
        curl_global_cleanup();
    memset(rm, 0, sizeof(*rm));
}

/* Finds the server and the token; an exit status > 0 after a message. */
static int remote_init(struct remote *rm, const char *cmd, const char *server,
                       const char *token_file)
{
    rm->cmd = cmd;
    if (!server || !server[0])
        server = getenv("SLUICE_SERVER");
    if (!server || !server[0]) {
        fprintf(stderr, "sluice: %s: no server: give --server URL or set SLUICE_SERVER\n", cmd);
        return EXIT_INVALID;
    }
    if (strncmp(server, "http://", 7) && strncmp(server, "https://", 8)) {
        fprintf(stderr, "sluice: %s: the server '%s' is not an http:// or https:// URL\n", cmd,
                server);
        return EXIT_INVALID;
    }
    if (!(rm->base = strdup(server)))
        return EXIT_FAILED;
    size_t n = strlen(rm->base);
    while (n > 8 && rm->base[n - 1] == '/')
        rm->base[--n] = '\0';
    rm->server = rm->base;
    if (token_file) {
        if (!(rm->token = read_token_file(token_file)))
            return EXIT_INVALID;
        snprintf(rm->token_src, sizeof(rm->token_src), "the token in --token-file %s", token_file);
    } else {
        const char *t = getenv("SLUICE_TOKEN");
        if (!t || !t[0]) {
            fprintf(stderr,
                    "sluice: %s: no API token: set SLUICE_TOKEN (or give --token-file FILE)\n",
                    cmd);
            return EXIT_INVALID;
        }
        if (!(rm->token = strdup(t)))
            return EXIT_FAILED;
        snprintf(rm->token_src, sizeof(rm->token_src), "SLUICE_TOKEN");
    }
    if (strpbrk(rm->token, "\r\n")) {
        fprintf(stderr, "sluice: %s: %s holds a line break\n", cmd, rm->token_src);
        return EXIT_INVALID;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "sluice: %s: cannot initialize libcurl\n", cmd);
        return EXIT_FAILED;
    }
    rm->global = true;
    if (!(rm->curl = curl_easy_init())) {
        fprintf(stderr, "sluice: %s: cannot initialize libcurl\n", cmd);
        return EXIT_FAILED;
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct answer *a = ud;
    size_t n = size * nmemb;
    long status = 0;
    if (a->out && curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
        status == 200) {
        if (fwrite(data, 1, n, a->out) != n) {
            a->write_failed = true;
            return 0;
        }
        return n;
    }
    if (a->len + n > MAX_ANSWER)
        return 0;
    char *p = realloc(a->body, a->len + n + 1);
    if (!p)
        return 0;
    memcpy(p + a->len, data, n);
    a->body = p;
    a->len += n;
    a->body[a->len] = '\0';
    return n;
}

/* A path segment (a job or run id) escaped for the URL; caller frees with
 * curl_free. */
static char *seg(struct remote *rm, const char *s)
{
    return curl_easy_escape(rm->curl, s, 0);
}

/* Sends method path (with its query) with body (NULL: none) and reads the
 * answer into *a (the caller cleans it up). 0 when the server answered
 * (whatever the status); else EXIT_FAILED after saying why. */
static int call(struct remote *rm, const char *method, const char *path, const char *body,
                size_t blen, struct answer *a)
{
    FILE *out = rm->download;
    memset(a, 0, sizeof(*a));
    a->out = out;
    a->curl = rm->curl;
    size_t ulen = strlen(rm->server) + strlen(path) + 1;
    char *url = malloc(ulen);
    char *auth = malloc(strlen(rm->token) + 32);
    struct curl_slist *hdrs = NULL;
    int rc = EXIT_FAILED;
    if (!url || !auth) {
        fprintf(stderr, "sluice: %s: out of memory\n", rm->cmd);
        goto out;
    }
    snprintf(url, ulen, "%s%s", rm->server, path);
    sprintf(auth, "Authorization: Bearer %s", rm->token);
    /* an empty Expect: the body goes with the request, no 100-continue round trip */
    if (!(hdrs = curl_slist_append(NULL, auth)) ||
        !curl_slist_append(hdrs, "Accept: application/json") ||
        (body && (!curl_slist_append(hdrs, "Content-Type: application/json") ||
                  !curl_slist_append(hdrs, "Expect:")))) {
        fprintf(stderr, "sluice: %s: out of memory\n", rm->cmd);
        goto out;
    }
    CURL *c = rm->curl;
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* the token goes to this server only */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    if (out) { /* a download takes as long as it takes, while it moves */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
    } else {
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sluice-cli");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    } else if (!strcmp(method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, NULL);
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_WRITE_ERROR && a->write_failed) {
        fprintf(stderr, "sluice: %s: cannot write the download: %s\n", rm->cmd, strerror(errno));
        answer_cleanup(a);
        goto out;
    }
    if (cc != CURLE_OK) {
        bool unreachable = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
                           cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_SSL_CONNECT_ERROR ||
                           cc == CURLE_PEER_FAILED_VERIFICATION;
        if (unreachable)
            fprintf(stderr, "sluice: %s: cannot reach the server at %s: %s\n", rm->cmd, rm->server,
                    cerr[0] ? cerr : curl_easy_strerror(cc));
        else
            fprintf(stderr, "sluice: %s: %s %s at %s failed: %s\n", rm->cmd, method, path,
                    rm->server, cerr[0] ? cerr : curl_easy_strerror(cc));
        answer_cleanup(a);
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    if (a->body)
        a->json = json_loadb(a->body, a->len, JSON_DECODE_ANY, NULL);
    rc = 0;
out:
    curl_slist_free_all(hdrs);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    free(url);
    return rc;
}

/* Says what went wrong in an answer that is not a success and returns the
 * exit status: 2 for a 400 (the job, a parameter or the command line is at
 * fault), else 1. */
static int fail_answer(struct remote *rm, const struct answer *a)
{
    json_t *e = json_object_get(a->json, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *field = json_string_value(json_object_get(e, "field"));
    const char *rid = json_string_value(json_object_get(e, "request_id"));
    if (!msg) {
        fprintf(stderr, "sluice: %s: the server at %s answered HTTP %ld without an error message\n",
                rm->cmd, rm->server, a->status);
        return a->status == 400 ? EXIT_INVALID : EXIT_FAILED;
    }
    /* the message of invalid_job names the field already; say it when it does not */
    bool named = !field || !strncmp(msg, field, strlen(field));
    fprintf(stderr, "sluice: %s%s%s (%s, request %s)\n", named ? "" : field, named ? "" : ": ", msg,
            code ? code : "error", rid ? rid : "?");
    if (a->status == 401)
        fprintf(stderr, "sluice: check %s: the server at %s does not accept it\n", rm->token_src,
                rm->server);
    else if (a->status == 403)
        fprintf(stderr, "sluice: check %s: its role may not do this\n", rm->token_src);
    return a->status == 400 ? EXIT_INVALID : EXIT_FAILED;
}

/* call() that expects one of the statuses ok1, ok2 (0: none): the exit
 * status, after saying what went wrong. */
static int request(struct remote *rm, const char *method, const char *path, const char *body,
                   size_t blen, long ok1, long ok2, struct answer *a)
{
    int rc = call(rm, method, path, body, blen, a);
    if (rc)
        return rc;
    if (a->status == ok1 || (ok2 && a->status == ok2)) {
        if (a->status != 204 && !a->out && !json_is_object(a->json)) {
            fprintf(stderr, "sluice: %s: the server at %s answered HTTP %ld with no JSON object\n",
                    rm->cmd, rm->server, a->status);
            return EXIT_FAILED;
        }
        return 0;
    }
    return fail_answer(rm, a);
}

/* ---- printing ------------------------------------------------------------ */

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

/* A timestamp of the API shortened to the second for a table
 * (2025-06-01T00:00:00.000Z -> 2025-06-01T00:00:00Z); "-" for null. */
static const char *short_time(json_t *o, const char *key, char out[32])
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s)
        return "-";
    snprintf(out, 32, "%s", s);
    if (strlen(out) == 24 && out[19] == '.')
        memcpy(out + 19, "Z", 2);
    return out;
}

/* A member as text: a number, a string, or "-". */
static const char *num(json_t *o, const char *key, char out[32])
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        snprintf(out, 32, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v))
        snprintf(out, 32, "%s", json_string_value(v));
    else
        snprintf(out, 32, "-");
    return out;
}

static void print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s)
        printf("%s\n", s);
    free(s);
}

/* ---- options ------------------------------------------------------------- */

struct opts {
    const char *server, *token_file, *version, *status, *limit, *key, *format, *out;
    bool json, force;
    char *pos[3]; /* the positional arguments */
    int npos;
};

enum {
    OPT_SERVER = 1,
    OPT_TOKEN_FILE,
    OPT_JSON,
    OPT_VERSION,
    OPT_FORCE,
    OPT_STATUS,
    OPT_LIMIT,
    OPT_KEY,
    OPT_FORMAT,
    OPT_OUT,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"json", no_argument, NULL, OPT_JSON},
    {"version", required_argument, NULL, OPT_VERSION},
    {"force", no_argument, NULL, OPT_FORCE},
    {"status", required_argument, NULL, OPT_STATUS},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"key", required_argument, NULL, OPT_KEY},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"out", required_argument, NULL, OPT_OUT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parses the options (anywhere on the line) and the positional arguments;
 * -1 after printing help, an exit status > 0 on a usage error, else 0. */
static int parse_opts(int argc, char **argv, const char *cmd, struct opts *o)
{
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER:
            o->server = optarg;
            break;
        case OPT_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_VERSION:
            o->version = optarg;
            break;
        case OPT_FORCE:
            o->force = true;
            break;
        case OPT_STATUS:
            o->status = optarg;
            break;
        case OPT_LIMIT:
            o->limit = optarg;
            break;
        case OPT_KEY:
            o->key = optarg;
            break;
        case OPT_FORMAT:
            o->format = optarg;
            break;
        case OPT_OUT:
            o->out = optarg;
            break;
        case OPT_HELP:
            fputs(jobs_usage, stdout);
            return -1;
        case ':':
            return usage_error(cmd, "option '%s' needs an argument", argv[optind - 1]);
        default:
            return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    for (; optind < argc; optind++) {
        if (o->npos == 3)
            return usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        o->pos[o->npos++] = argv[optind];
    }
    return 0;
}

/* A positive integer of at most max, as text for a query; false if not. */
static bool positive(const char *s, long max)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    return s[0] && !*end && !errno && v >= 1 && v <= max && isdigit((unsigned char)s[0]);
}

/* Options only some subcommands take (only()'s allowed). */
enum { O_KEY = 1, O_FORMAT = 2, O_OUT = 4 };

/* Refuses the options that subcommand does not take; 0 or EXIT_INVALID. */
static int only(const char *what, const struct opts *o, bool json, bool version, bool force,
                bool filters, int allowed)
{
    const char *bad = (!json && o->json)                     ? "--json"
                      : (!version && o->version)             ? "--version"
                      : (!force && o->force)                 ? "--force"
                      : (!filters && o->status)              ? "--status"
                      : (!filters && o->limit)               ? "--limit"
                      : (!(allowed & O_KEY) && o->key)       ? "--key"
                      : (!(allowed & O_FORMAT) && o->format) ? "--format"
                      : (!(allowed & O_OUT) && o->out)       ? "--out"
                                                             : NULL;
    if (bad) {
        fprintf(stderr, "sluice: %s does not take %s\nTry 'sluice jobs --help'.\n", what, bad);
        return EXIT_INVALID;
    }
    return 0;
}

/* ---- jobs ---------------------------------------------------------------- */

static int jobs_list(struct remote *rm, const struct opts *o)
{
    json_t *all = json_array();
    char *cursor = NULL;
    int rc = 0;
    if (!all)
        return EXIT_FAILED;
    for (;;) {
        char path[1024];
        char *cur = cursor ? seg(rm, cursor) : NULL;
        snprintf(path, sizeof(path), "/v1/jobs?limit=1000%s%s", cur ? "&cursor=" : "",
                 cur ? cur : "");
        curl_free(cur);
        struct answer a;
        if ((rc = request(rm, "GET", path, NULL, 0, 200, 0, &a))) {
            answer_cleanup(&a);
            break;
        }
        json_array_extend(all, json_object_get(a.json, "items"));
        const char *next = json_string_value(json_object_get(a.json, "next_cursor"));
        free(cursor);
        cursor = next ? strdup(next) : NULL;
        answer_cleanup(&a);
        if (!cursor)
            break;
    }
    free(cursor);
    if (rc == 0 && o->json) {
        print_json(all);
    } else if (rc == 0) {
        printf("%-32s %7s  %-7s  %-20s  %s\n", "JOB", "VERSION", "ENABLED", "NEXT RUN", "UPDATED");
        size_t i;
        json_t *j;
        json_array_foreach(all, i, j)
        {
            char v[32], t1[32], t2[32];
            printf("%-32s %7s  %-7s  %-20s  %s\n", str_or(j, "id", "?"),
                   num(j, "current_version", v),
                   json_is_true(json_object_get(j, "enabled")) ? "yes" : "no",
                   short_time(j, "next_run_at", t1), short_time(j, "updated_at", t2));
        }
    }
    json_decref(all);
    return rc;
}

static int jobs_get(struct remote *rm, const struct opts *o, const char *id)
{
    if (o->version && !positive(o->version, 2147483647))
        return usage_error(rm->cmd, "--version '%s' is not a positive integer", o->version);
    char *sid = seg(rm, id);
    char path[1024];
    snprintf(path, sizeof(path), "/v1/jobs/%s%s%s", sid ? sid : "", o->version ? "?version=" : "",
             o->version ? o->version : "");
    curl_free(sid);
    struct answer a;
    int rc = request(rm, "GET", path, NULL, 0, 200, 0, &a);
    if (rc == 0)
        print_json(o->json ? a.json : json_object_get(a.json, "document"));
    answer_cleanup(&a);
    return rc;
}

static int jobs_put(struct remote *rm, const char *file)
{
    size_t len = 0;
    char *text = sl_read_file(file, &len);
    if (!text) {
        fprintf(stderr, "sluice: %s: %s\n", file, strerror(errno));
        return EXIT_INVALID;
    }
    struct answer a;
    int rc = request(rm, "POST", "/v1/jobs", text, len, 201, 200, &a);
    free(text);
    if (rc == 0) {
        char v[32];
        printf("job %s version %s (%s)\n", str_or(a.json, "id", "?"), num(a.json, "version", v),
               json_is_false(json_object_get(a.json, "changed")) ? "unchanged" : "created");
    }
    answer_cleanup(&a);
    return rc;
}

/* enable, disable, delete: one request on the job. */
static int jobs_action(struct remote *rm, const char *action, const char *id)
{
    char *sid = seg(rm, id);
    char path[1024];
    bool del = !strcmp(action, "delete");
    snprintf(path, sizeof(path), "/v1/jobs/%s%s%s", sid ? sid : "", del ? "" : "/",
             del ? "" : action);
    curl_free(sid);
    struct answer a;
    int rc = request(rm, del ? "DELETE" : "POST", path, NULL, 0, del ? 204 : 200, 0, &a);
    if (rc == 0)
        printf("job %s %sd\n", id, del ? "delete" : action);
    answer_cleanup(&a);
    return rc;
}

static int jobs_run(struct remote *rm, const struct opts *o, const char *id)
{
    char *sid = seg(rm, id);
    char path[1024];
    snprintf(path, sizeof(path), "/v1/jobs/%s/runs", sid ? sid : "");
    curl_free(sid);
    static const char force[] = "{\"force\": true}";
    struct answer a;
    int rc = request(rm, "POST", path, o->force ? force : NULL, o->force ? strlen(force) : 0, 202,
                     0, &a);
    if (rc == 0 && o->json)
        print_json(a.json);
    else if (rc == 0)
        printf("%s\n", str_or(a.json, "run_id", "?"));
    answer_cleanup(&a);
    return rc;
}

static int jobs_trigger(struct remote *rm, const struct opts *o, const char *id)
{
    char *sid = seg(rm, id);
    char path[1024];
    snprintf(path, sizeof(path), "/v1/jobs/%s/trigger", sid ? sid : "");
    curl_free(sid);
    json_t *b = json_object();
    if (o->key)
        json_object_set_new(b, "idempotency_key", json_string(o->key));
    if (o->force)
        json_object_set_new(b, "force", json_true());
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!body) {
        fprintf(stderr, "sluice: jobs trigger: out of memory (or --key is not UTF-8)\n");
        return EXIT_FAILED;
    }
    struct answer a;
    int rc = request(rm, "POST", path, body, strlen(body), 202, 200, &a);
    free(body);
    if (rc == 0 && o->json)
        print_json(a.json);
    else if (rc == 0 && a.status == 200)
        printf("%s (started before with this key: %s)\n", str_or(a.json, "run_id", "?"),
               str_or(a.json, "status", "?"));
    else if (rc == 0)
        printf("%s\n", str_or(a.json, "run_id", "?"));
    answer_cleanup(&a);
    return rc;
}

int sl_cmd_jobs(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse_opts(argc, argv, "jobs", &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (o.npos == 0)
        return usage_error("jobs", "%s",
                           "missing the subcommand (list, get, put, enable, "
                           "disable, delete, run, trigger)");
    const char *sub = o.pos[0];
    static const char *const subs[] = {"list",   "get", "put",     "enable", "disable",
                                       "delete", "run", "trigger", NULL};
    int k = 0;
    while (subs[k] && strcmp(subs[k], sub))
        k++;
    if (!subs[k])
        return usage_error("jobs", "unknown subcommand '%s'", sub);
    int want = !strcmp(sub, "list") ? 1 : 2;
    if (o.npos < want)
        return usage_error("jobs", "%s: missing the job", sub);
    if (o.npos > want)
        return usage_error("jobs", "unexpected argument '%s'", o.pos[want]);
    char what[32];
    snprintf(what, sizeof(what), "jobs %s", sub);
    bool is_get = !strcmp(sub, "get"), is_run = !strcmp(sub, "run"),
         is_trigger = !strcmp(sub, "trigger");
    if ((rc = only(what, &o, !strcmp(sub, "list") || is_get || is_run || is_trigger, is_get,
                   is_run || is_trigger, false, is_trigger ? O_KEY : 0)))
        return rc;
    struct remote rm = {0};
    if ((rc = remote_init(&rm, "jobs", o.server, o.token_file))) {
        remote_cleanup(&rm);
        return rc;
    }
    if (!strcmp(sub, "list"))
        rc = jobs_list(&rm, &o);
    else if (is_get)
        rc = jobs_get(&rm, &o, o.pos[1]);
    else if (!strcmp(sub, "put"))
        rc = jobs_put(&rm, o.pos[1]);
    else if (is_run)
        rc = jobs_run(&rm, &o, o.pos[1]);
    else if (is_trigger)
        rc = jobs_trigger(&rm, &o, o.pos[1]);
    else
        rc = jobs_action(&rm, sub, o.pos[1]);
    remote_cleanup(&rm);
    return rc;
}

/* ---- runs ---------------------------------------------------------------- */

static void print_counts(json_t *c)
{
    char r[32], p[32], cr[32], up[32], un[32], rj[32], d[32], nc[32];
    printf("counts:   %s read, %s published (%s created, %s updated, %s unchanged), %s rejected "
           "(%s duplicates), %s not created\n",
           num(c, "read", r), num(c, "published", p), num(c, "created", cr), num(c, "updated", up),
           num(c, "unchanged", un), num(c, "rejected", rj), num(c, "duplicates", d),
           num(c, "not_created", nc));
}

static int runs_show(struct remote *rm, const struct opts *o, const char *run_id)
{
    char *sid = seg(rm, run_id);
    char path[1024];
    snprintf(path, sizeof(path), "/v1/runs/%s", sid ? sid : "");
    curl_free(sid);
    struct answer a;
    int rc = request(rm, "GET", path, NULL, 0, 200, 0, &a);
    if (rc || o->json) {
        if (rc == 0)
            print_json(a.json);
        answer_cleanup(&a);
        return rc;
    }
    json_t *r = a.json;
    char v[32], t1[32], t2[32];
    printf("run:      %s\n", str_or(r, "id", "?"));
    printf("job:      %s version %s (trigger %s)\n", str_or(r, "job_id", "?"),
           num(r, "job_version", v), str_or(r, "trigger", "?"));
    printf("status:   %s\n", str_or(r, "status", "?"));
    if (json_string_value(json_object_get(r, "reason")))
        printf("reason:   %s\n", str_or(r, "reason", ""));
    printf("started:  %s\n", short_time(r, "started_at", t1));
    printf("finished: %s\n", short_time(r, "finished_at", t2));
    json_t *counts = json_object_get(r, "counts");
    if (json_is_object(counts))
        print_counts(counts);
    else
        printf("counts:   - (the run is not final)\n");
    printf("errors:   %s rejected rows stored\n", num(r, "rejected_rows", v));
    json_t *src = json_object_get(r, "source");
    if (json_string_value(json_object_get(src, "sha256")))
        printf("source:   sha256 %s, %s bytes\n", str_or(src, "sha256", ""), num(src, "bytes", v));
    json_t *um = json_object_get(r, "unmapped_columns");
    if (json_array_size(um)) {
        printf("unmapped columns:");
        size_t i;
        json_t *col;
        json_array_foreach(um, i, col) printf("%s %s", i ? "," : "", json_string_value(col));
        printf("\n");
    }
    json_t *stages = json_object_get(json_object_get(r, "progress"), "stages");
    if (json_object_size(stages)) {
        /* in pipeline order, then any other stage */
        static const char *const order[] = {"parser", "mapper", "validator", "publisher", NULL};
        printf("progress: (live, %s)\n",
               str_or(json_object_get(r, "progress"), "updated_at", "not stamped"));
        for (int pass = 0; pass < 2; pass++) {
            const char *name;
            json_t *st;
            json_object_foreach(stages, name, st)
            {
                int k = 0;
                while (order[k] && strcmp(order[k], name))
                    k++;
                if ((pass == 0) != (order[k] != NULL))
                    continue;
                char in[32], rin[32], out[32], rout[32];
                printf("  %-10s in %s (+%s rejected), out %s, rejected %s\n", name,
                       num(st, "records_in", in), num(st, "rejected_in", rin),
                       num(st, "records_out", out), num(st, "rejected_out", rout));
            }
        }
    }
    json_t *rep = json_object_get(r, "report");
    if (json_is_object(rep)) {
        const char *file = str_or(rep, "file", NULL), *why = str_or(rep, "error", NULL);
        printf("report:   %s%s%s\n", str_or(rep, "status", "?"), file ? ", " : "",
               file ? file : "");
        if (why)
            printf("          %s\n", why);
    } else {
        printf("report:   -\n");
    }
    answer_cleanup(&a);
    return 0;
}

/* The newest --limit runs (default 50, up to 100000): page after page of
 * the gateway's (1000 at most each), following next_cursor. */
static int runs_list(struct remote *rm, const struct opts *o, const char *job)
{
    const char *limit = o->limit ? o->limit : "50";
    if (!positive(limit, 100000))
        return usage_error(rm->cmd, "--limit '%s' is not a number from 1 to 100000", limit);
    long want = strtol(limit, NULL, 10);
    char *sid = seg(rm, job);
    char *sst = o->status ? seg(rm, o->status) : NULL;
    json_t *items = json_array();
    char *cursor = NULL;
    int rc = items ? 0 : EXIT_FAILED;
    while (rc == 0 && (long)json_array_size(items) < want) {
        long page = want - (long)json_array_size(items);
        char path[2048];
        char *cur = cursor ? seg(rm, cursor) : NULL;
        snprintf(path, sizeof(path), "/v1/jobs/%s/runs?limit=%ld%s%s%s%s", sid ? sid : "",
                 page > 1000 ? 1000 : page, sst ? "&status=" : "", sst ? sst : "",
                 cur ? "&cursor=" : "", cur ? cur : "");
        curl_free(cur);
        struct answer a;
        if ((rc = request(rm, "GET", path, NULL, 0, 200, 0, &a)) == 0) {
            json_array_extend(items, json_object_get(a.json, "items"));
            const char *next = json_string_value(json_object_get(a.json, "next_cursor"));
            free(cursor);
            cursor = next ? strdup(next) : NULL;
        }
        answer_cleanup(&a);
        if (!cursor)
            break;
    }
    free(cursor);
    curl_free(sid);
    curl_free(sst);
    if (rc) {
        json_decref(items);
        return rc;
    }
    if (o->json) {
        print_json(items);
        json_decref(items);
        return 0;
    }
    printf("%-36s  %-20s %3s  %-21s  %-20s %9s %9s %9s  %s\n", "RUN", "JOB", "V", "STATUS",
           "STARTED", "READ", "PUBLISHED", "REJECTED", "REASON");
    size_t i;
    json_t *r;
    json_array_foreach(items, i, r)
    {
        json_t *c = json_object_get(r, "counts");
        char v[32], t[32], rd[32], pb[32], rj[32];
        printf("%-36s  %-20s %3s  %-21s  %-20s %9s %9s %9s  %s\n", str_or(r, "id", "?"),
               str_or(r, "job_id", "?"), num(r, "job_version", v), str_or(r, "status", "?"),
               short_time(r, "started_at", t), num(c, "read", rd), num(c, "published", pb),
               num(c, "rejected", rj), str_or(r, "reason", ""));
    }
    json_decref(items);
    return 0;
}

/* source and report: the download of a run, to --out FILE or stdout. */
static int runs_download(struct remote *rm, const struct opts *o, const char *what,
                         const char *run_id)
{
    bool report = !strcmp(what, "report");
    if (o->format && strcmp(o->format, "xlsx") && strcmp(o->format, "csv"))
        return usage_error(rm->cmd, "--format '%s' is not xlsx or csv", o->format);
    bool to_stdout = !o->out || !strcmp(o->out, "-");
    if (to_stdout && report && (!o->format || !strcmp(o->format, "xlsx")) && isatty(1)) {
        fprintf(stderr, "sluice: runs report: the XLSX report is binary: give --out FILE (or "
                        "--format csv)\n");
        return EXIT_INVALID;
    }
    char *sid = seg(rm, run_id);
    char path[1024];
    snprintf(path, sizeof(path), "/v1/runs/%s/%s%s%s", sid ? sid : "", what,
             report && o->format ? "?format=" : "", report && o->format ? o->format : "");
    curl_free(sid);
    /* written to a temporary file beside --out, renamed once complete */
    char tmp[4096] = "";
    FILE *f = stdout;
    if (!to_stdout) {
        snprintf(tmp, sizeof(tmp), "%s.part", o->out);
        if (!(f = fopen(tmp, "wb"))) {
            fprintf(stderr, "sluice: runs %s: cannot write %s: %s\n", what, tmp, strerror(errno));
            return EXIT_FAILED;
        }
    }
    struct answer a;
    rm->download = f;
    int rc = request(rm, "GET", path, NULL, 0, 200, 0, &a);
    rm->download = NULL;
    if (rc == 0 && fflush(f)) {
        fprintf(stderr, "sluice: runs %s: cannot write %s: %s\n", what,
                to_stdout ? "the output" : tmp, strerror(errno));
        rc = EXIT_FAILED;
    }
    if (!to_stdout) {
        if (fclose(f) && rc == 0) {
            fprintf(stderr, "sluice: runs %s: cannot write %s: %s\n", what, tmp, strerror(errno));
            rc = EXIT_FAILED;
        }
        if (rc == 0 && rename(tmp, o->out)) {
            fprintf(stderr, "sluice: runs %s: cannot rename %s: %s\n", what, tmp, strerror(errno));
            rc = EXIT_FAILED;
        }
        if (rc)
            unlink(tmp);
    }
    answer_cleanup(&a);
    return rc;
}

int sl_cmd_runs_remote(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse_opts(argc, argv, "runs", &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    bool show = o.npos == 2 && !strcmp(o.pos[0], "show");
    bool source = o.npos == 2 && !strcmp(o.pos[0], "source");
    bool report = o.npos == 2 && !strcmp(o.pos[0], "report");
    if (o.npos == 0) {
        fprintf(stderr, "sluice: runs --server: name the job (sluice runs --server URL JOB): "
                        "the gateway lists runs by job only\nTry 'sluice jobs --help'.\n");
        return EXIT_INVALID;
    }
    if (o.npos > 1 && !show && !source && !report)
        return usage_error("runs", "unexpected argument '%s'", o.pos[o.npos - 1]);
    const char *what = show     ? "runs show"
                       : source ? "runs source"
                       : report ? "runs report"
                                : "runs";
    if ((rc = only(what, &o, !source && !report, false, false, !show && !source && !report,
                   source   ? O_OUT
                   : report ? O_OUT | O_FORMAT
                            : 0)))
        return rc;
    struct remote rm = {0};
    if ((rc = remote_init(&rm, "runs", o.server, o.token_file))) {
        remote_cleanup(&rm);
        return rc;
    }
    rc = show               ? runs_show(&rm, &o, o.pos[1])
         : source || report ? runs_download(&rm, &o, o.pos[0], o.pos[1])
                            : runs_list(&rm, &o, o.pos[0]);
    remote_cleanup(&rm);
    return rc;
}
