/*
 * The sluice command: run a job in embedded mode, check a job file.
 *
 *   sluice run JOB.json [--out DIR] [--state DIR] [--input FILE] [--force]
 *   sluice check JOB.json [--input FILE]
 *   sluice submit JOB.json          (the control plane at SLUICE_POSTGRES_URL)
 *   sluice runs [JOB]
 *
 * Exit status (JOBS.md): 0 succeeded, 3 completed_with_errors, 4 skipped,
 * 1 failed, 2 the job file or the command line is invalid.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "commands.h"
#include "embedded.h"
#include "sluice/bus.h"
#include "sluice/control.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/mail.h"
#include "sluice/pg.h"
#include "sluice/reader.h"
#include "sluice/service.h"
#include "sluice/sink.h"
#include "sluice/util.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

enum {
    EXIT_SUCCEEDED = 0,
    EXIT_FAILED = 1,
    EXIT_INVALID = 2,
    EXIT_WITH_ERRORS = 3,
    EXIT_SKIPPED = 4,
};

static const char usage_text[] =
    "usage: sluice <command> [options]\n"
    "\n"
    "Commands:\n"
    "  run JOB.json      run the job once in embedded mode (no servers)\n"
    "      --out DIR         where the run's files go (default sluice-out/<job name>)\n"
    "      --state DIR       where last-run state is kept (default .sluice)\n"
    "      --input FILE      read this local file instead of the job's source\n"
    "      --force           run even when the source is unchanged since the last success\n"
    "      --quiet           no progress bar and no summary\n"
    "  check JOB.json    check the job file; with --input FILE, also that the file has\n"
    "                    every column the mapping reads\n"
    "  submit JOB.json   check the job and store it in the control plane (PostgreSQL at\n"
    "                    SLUICE_POSTGRES_URL) as its next version\n"
    "      --run             and request a run of it from the services (Kafka at\n"
    "                        SLUICE_KAFKA_BROKERS); --force ignores skip_unchanged\n"
    "  migrate           apply the control plane's schema migrations (PostgreSQL at\n"
    "                    SLUICE_POSTGRES_URL) and exit; the services also apply them at start\n"
    "  runs [JOB]        the latest runs in the control plane, newest first, with status\n"
    "                    and counts\n"
    "  preview JOB.json  the first source rows beside their mapped values and problems;\n"
    "                    nothing is published (--input FILE, --rows N, --json)\n"
    "  suggest FILE      a mapping proposed from FILE's columns and values (--job JOB.json,\n"
    "                    --write OUT.json, --json)\n"
    "  jobs list|get|put|enable|disable|delete|run ...\n"
    "                    the jobs of a gateway (--server URL or SLUICE_SERVER, token in\n"
    "                    SLUICE_TOKEN); runs JOB --server URL and runs show RUN: its runs\n"
    "  config            the settings sluice reads (--markdown: the table of every\n"
    "                    program's settings, docs/configuration.md)\n"
    "\n"
    "Options: --help, --version, --config FILE (before the command: settings as\n"
    "NAME=value lines; also SLUICE_CONFIG; the environment wins over the file)\n"
    "\n"
    "Environment: SLUICE_HASH_KEY (key of the hash filter), SLUICE_POSTGRES_URL\n"
    "(control plane), SLUICE_DESTINATION_URL (postgres destinations), SLUICE_LOG_LEVEL\n"
    "(debug, info, warn, error; default warn), SLUICE_LOG_FORMAT (text, json); every\n"
    "one: sluice config.\n"
    "\n"
    "Exit status: 0 succeeded, 3 completed with errors (rows rejected), 4 skipped\n"
    "(source unchanged), 1 failed, 2 invalid job file or command line.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "sluice: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'sluice --help'.\n");
    return EXIT_INVALID;
}

static int status_exit(const char *status)
{
    if (!strcmp(status, "succeeded"))
        return EXIT_SUCCEEDED;
    if (!strcmp(status, "completed_with_errors"))
        return EXIT_WITH_ERRORS;
    if (!strcmp(status, "skipped"))
        return EXIT_SKIPPED;
    return EXIT_FAILED;
}

enum { OPT_OUT = 1, OPT_STATE, OPT_INPUT, OPT_FORCE, OPT_QUIET, OPT_HELP, OPT_RUN };

static const struct option run_opts[] = {
    {"out", required_argument, NULL, OPT_OUT},     {"state", required_argument, NULL, OPT_STATE},
    {"input", required_argument, NULL, OPT_INPUT}, {"force", no_argument, NULL, OPT_FORCE},
    {"quiet", no_argument, NULL, OPT_QUIET},       {"help", no_argument, NULL, OPT_HELP},
    {"run", no_argument, NULL, OPT_RUN},           {NULL, 0, NULL, 0},
};

struct cli_args {
    const char *job_path;
    const char *out, *state, *input;
    bool force, quiet, run;
};

/* Parses the options of run and check; returns -1 after printing help, or
 * an exit status > 0 on a usage error, 0 on success. */
static int parse_args(int argc, char **argv, const char *cmd, struct cli_args *a)
{
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", run_opts, NULL)) != -1) {
        switch (c) {
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_STATE:
            a->state = optarg;
            break;
        case OPT_INPUT:
            a->input = optarg;
            break;
        case OPT_FORCE:
            a->force = true;
            break;
        case OPT_QUIET:
            a->quiet = true;
            break;
        case OPT_RUN:
            a->run = true;
            break;
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
        return usage_error("%s: missing the job file", cmd);
    a->job_path = argv[optind++];
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!strcmp(cmd, "check") && (a->out || a->state || a->force))
        return usage_error("check takes only --input", "");
    if (!strcmp(cmd, "submit") && (a->out || a->state || a->input || (a->force && !a->run)))
        return usage_error("submit takes only --run and --force", "");
    if (strcmp(cmd, "submit") && a->run)
        return usage_error("--run goes with submit", "");
    return 0;
}

/* Parses the command line of run or check and loads the job file. Returns
 * with *job NULL and the exit status when there is nothing to run (help, a
 * usage error, an invalid job file). */
static int load_job(int argc, char **argv, const char *cmd, struct cli_args *a, struct sl_job **job)
{
    int rc = parse_args(argc, argv, cmd, a);
    if (rc)
        return rc < 0 ? 0 : rc;
    char err[1024] = "";
    if (!(*job = sl_job_load_file(a->job_path, err, sizeof(err)))) {
        fprintf(stderr, "sluice: %s\n", err);
        return EXIT_INVALID;
    }
    return 0;
}

static void print_summary(const struct sl_job *job, const struct sl_embedded_result *r,
                          const char *out_dir, const char *sink_path)
{
    const struct sl_counts *c = &r->counts;
    double secs = (double)(r->finished_us - r->started_us) / 1e6;
    printf("%s: %s in %.2f s: %llu read, %llu published (%llu created, %llu updated, %llu "
           "unchanged), %llu rejected (%llu duplicates), %llu not created\n",
           job->name, r->status, secs < 0 ? 0 : secs, (unsigned long long)c->read,
           (unsigned long long)c->published, (unsigned long long)c->created,
           (unsigned long long)c->updated, (unsigned long long)c->unchanged,
           (unsigned long long)c->rejected, (unsigned long long)c->duplicates,
           (unsigned long long)c->not_created);
    if (r->reason[0])
        printf("  reason: %s\n", r->reason);
    if (!strcmp(r->status, "succeeded") || !strcmp(r->status, "completed_with_errors"))
        printf("  published: %s\n", sink_path ? sink_path : "the postgres destination");
    printf("  errors:    %s/errors.csv, %s/rejected.ndjson\n", out_dir, out_dir);
    printf("  run:       %s/run.json\n", out_dir);
    /* the run report, as run.json records it */
    char *path = sl_path_join(out_dir, "run.json");
    json_t *run = path ? json_load_file(path, 0, NULL) : NULL;
    json_t *rep = json_object_get(run, "report");
    if (rep) {
        const char *st = json_string_value(json_object_get(rep, "status"));
        const char *file = json_string_value(json_object_get(rep, "file"));
        const char *why = json_string_value(json_object_get(rep, "error"));
        printf("  report:    %s%s%s%s%s\n", st ? st : "?", file ? ", " : "", file ? out_dir : "",
               file ? "/" : "", file ? file : "");
        if (why)
            printf("             %s\n", why);
    }
    json_decref(run);
    free(path);
}

/* How bad a status is, for the status of several targets: the worst. */
static int status_rank(const char *status)
{
    if (!strcmp(status, "failed"))
        return 3;
    if (!strcmp(status, "completed_with_errors"))
        return 2;
    if (!strcmp(status, "succeeded"))
        return 1;
    return 0; /* skipped */
}

/* A job of several targets (job->targets): one run a target, in order, over
 * the same file (fetched once: the later targets read what the first one
 * read), each into out/<object>.ndjson with its error files and run.json in
 * out/<object>/; out/run.json sums them up. A target that fails stops the
 * rest (a contact must not be written without its account). Takes job. */
static int run_targets(struct sl_job *job, const struct sl_embedded_opts *base, const char *out,
                       bool quiet)
{
    char err[1024] = "";
    json_t *targets = json_array();
    struct sl_counts sum = {0};
    int worst = -1;
    char worst_status[32] = "skipped", first_run[37] = "", reason[1024] = "";
    int64_t started = 0, finished = 0;
    char input[1024] = "";
    if (base->input)
        snprintf(input, sizeof(input), "%s", base->input);
    int rc = EXIT_SUCCEEDED;
    size_t n = job->ntargets;
    for (size_t i = 0; i < n; i++) {
        struct sl_job *sub = job->targets[i];
        job->targets[i] = NULL; /* the run takes it */
        char name[512];
        snprintf(name, sizeof(name), "%s.ndjson", sub->object);
        char *sink_path =
            sub->destination.given && sub->destination.type == SL_DEST_FILE && sub->destination.path
                ? strdup(sub->destination.path)
                : sl_path_join(out, name);
        char *dir = sl_path_join(out, sub->object);
        char object[256];
        snprintf(object, sizeof(object), "%s", sub->object);
        if (!sink_path || !dir || sl_mkdirs(dir)) {
            fprintf(stderr, "sluice: cannot create %s: %s\n", dir ? dir : out, strerror(errno));
            sl_job_destroy(sub);
            free(sink_path);
            free(dir);
            rc = EXIT_FAILED;
            break;
        }
        struct sl_embedded_opts eo = *base;
        eo.out_dir = dir;
        eo.sink_path = sink_path;
        eo.input = input[0] ? input : NULL;
        struct sl_embedded_result res;
        int erc = sl_embedded_run(sub, &eo, &res, err, sizeof(err));
        if (erc) {
            fprintf(stderr, "sluice: %s\n", err);
            free(sink_path);
            free(dir);
            rc = EXIT_FAILED;
            break;
        }
        if (!input[0] && res.blob[0])
            snprintf(input, sizeof(input), "%s", res.blob); /* the file, for the others */
        if (!first_run[0])
            snprintf(first_run, sizeof(first_run), "%s", res.run_id);
        if (!started)
            started = res.started_us;
        finished = res.finished_us;
        if (status_rank(res.status) > worst) {
            worst = status_rank(res.status);
            snprintf(worst_status, sizeof(worst_status), "%s", res.status);
        }
        if (res.reason[0] && !reason[0])
            snprintf(reason, sizeof(reason), "targets[%zu] (%.200s): %.700s", i, object,
                     res.reason);
        if (i == 0)
            sum.read = res.counts.read;
        sum.published += res.counts.published;
        sum.created += res.counts.created;
        sum.updated += res.counts.updated;
        sum.unchanged += res.counts.unchanged;
        sum.rejected += res.counts.rejected;
        sum.duplicates += res.counts.duplicates;
        sum.not_created += res.counts.not_created;
        json_array_append_new(
            targets,
            json_pack("{s:s,s:s,s:s,s:s?,s:o,s:s,s:s}", "object", object, "run_id", res.run_id,
                      "status", res.status, "reason", res.reason[0] ? res.reason : NULL, "counts",
                      sl_counts_json(&res.counts), "published_to",
                      base->destination_url ? "postgres" : sink_path, "files", dir));
        if (!quiet) {
            struct sl_job shown = {.name = object};
            print_summary(&shown, &res, dir, base->destination_url ? NULL : sink_path);
        }
        free(sink_path);
        free(dir);
        if (!strcmp(res.status, "failed")) {
            if (i + 1 < n)
                fprintf(stderr,
                        "sluice: targets[%zu] (%s) failed: the targets after it are not "
                        "run\n",
                        i, object);
            break;
        }
    }
    /* out/run.json: the job's run, its targets' summed up */
    json_t *run =
        json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "run_id", first_run, "job", job->name, "status",
                  worst_status, "started_at", sl_time_json(started), "finished_at",
                  sl_time_json(finished), "counts", sl_counts_json(&sum), "targets", targets);
    if (run && reason[0])
        json_object_set_new(run, "reason", json_string(reason));
    char *path = sl_path_join(out, "run.json");
    if (!run || !path || json_dump_file(run, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
        fprintf(stderr, "sluice: cannot write %s\n", path ? path : "run.json");
        rc = EXIT_FAILED;
    }
    free(path);
    json_decref(run);
    if (rc == 0 && !quiet)
        printf("%s: %s (%zu targets): %s/run.json\n", job->name, worst_status, n, out);
    sl_job_destroy(job);
    return rc ? rc : status_exit(worst_status);
}

static int cmd_run(int argc, char **argv)
{
    struct cli_args a = {0};
    struct sl_job *job = NULL;
    int rc = load_job(argc, argv, "run", &a, &job);
    if (!job)
        return rc;
    char err[1024] = "";
    /* --input is relative to the working directory, not to the job file */
    char *input = a.input ? realpath(a.input, NULL) : NULL;
    if (a.input && (!input || access(input, R_OK))) {
        fprintf(stderr, "sluice: --input %s: %s\n", a.input, strerror(errno));
        free(input);
        sl_job_destroy(job);
        return EXIT_INVALID;
    }
    char *out = a.out ? strdup(a.out) : sl_path_join("sluice-out", job->name);
    char *sink_path = NULL;
    if (!a.out && job->destination.given && job->destination.type == SL_DEST_FILE &&
        job->destination.path) {
        sink_path = strdup(job->destination.path);
    } else {
        char name[512];
        snprintf(name, sizeof(name), "%s.ndjson", job->object);
        sink_path = sl_path_join(out, name);
    }
    /* a postgres destination is written when a database is configured */
    const char *dest_url = NULL;
    if (job->destination.given && job->destination.type == SL_DEST_POSTGRES) {
        dest_url = getenv("SLUICE_DESTINATION_URL");
        if (!dest_url || !dest_url[0])
            dest_url = getenv("SLUICE_POSTGRES_URL");
        if (dest_url && !dest_url[0])
            dest_url = NULL;
    }
    if (job->destination.given && job->destination.type != SL_DEST_FILE && !dest_url)
        fprintf(stderr,
                "sluice: warning: destination '%s' is not written (%s); published records go "
                "to %s\n",
                job->destination.type == SL_DEST_POSTGRES ? "postgres" : "http",
                job->destination.type == SL_DEST_POSTGRES
                    ? "set SLUICE_DESTINATION_URL to the database"
                    : "http destinations come with a later version",
                sink_path);
    if (sl_mkdirs(out)) {
        fprintf(stderr, "sluice: cannot create %s: %s\n", out, strerror(errno));
        free(input);
        free(out);
        free(sink_path);
        sl_job_destroy(job);
        return EXIT_FAILED;
    }
    struct sl_smtp_config smtp = {0};
    if (sl_smtp_config_from_env(&smtp, err, sizeof(err))) {
        fprintf(stderr, "sluice: %s\n", err);
        free(input);
        free(out);
        free(sink_path);
        sl_job_destroy(job);
        return EXIT_INVALID;
    }
    struct sl_embedded_opts eo = {
        .smtp = &smtp,
        .out_dir = out,
        .sink_path = sink_path,
        .state_dir = a.state ? a.state : ".sluice",
        .input = input,
        .destination_url = dest_url,
        .force = a.force,
        .progress = !a.quiet && isatty(STDERR_FILENO),
    };
    if (job->ntargets > 1) {
        rc = run_targets(job, &eo, out, a.quiet);
        sl_smtp_config_cleanup(&smtp);
        free(input);
        free(out);
        free(sink_path);
        return rc;
    }
    char name[256];
    snprintf(name, sizeof(name), "%s", job->name);
    struct sl_embedded_result res;
    /* the summary needs the job's name only: keep a copy, the run takes the job */
    struct sl_job shown = {.name = name};
    rc = sl_embedded_run(job, &eo, &res, err, sizeof(err));
    sl_smtp_config_cleanup(&smtp);
    free(input);
    if (rc) {
        fprintf(stderr, "sluice: %s\n", err);
        free(out);
        free(sink_path);
        return EXIT_FAILED;
    }
    if (!a.quiet)
        print_summary(&shown, &res, out, dest_url ? NULL : sink_path);
    free(out);
    free(sink_path);
    return status_exit(res.status);
}

/* The header of a CSV input, for check --input. */
struct header_grab {
    char **names;
    size_t n;
};

static int grab_header(void *ud, const char *const *names, size_t n)
{
    struct header_grab *h = ud;
    h->names = calloc(n ? n : 1, sizeof(char *));
    if (!h->names)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        h->names[i] = strdup(names[i]);
    h->n = n;
    return 1; /* stop: the header is all we need */
}

static int stop_row(void *ud, const struct sl_row *row)
{
    return 1;
}

static int check_input(const struct sl_job *job, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "sluice: --input %s: %s\n", path, strerror(errno));
        return EXIT_INVALID;
    }
    struct sl_csv_opts o = {
        .delimiter = job->source.csv_delimiter,
        .quote = job->source.csv_quote,
        .header = job->source.csv_header,
        .encoding = job->source.encoding,
    };
    struct header_grab h = {0};
    char err[512] = "";
    int rc = sl_csv_read_fd(fd, &o, grab_header, stop_row, &h, NULL, err, sizeof(err));
    close(fd);
    if (rc < 0) {
        fprintf(stderr, "sluice: %s: %s\n", path, err);
        return EXIT_INVALID;
    }
    int missing = 0;
    for (size_t k = 0; k < job->nrefs; k++) {
        if (sl_column_find(job->refs[k].name, (const char *const *)h.names, h.n) >= 0)
            continue;
        for (size_t i = 0; i < job->nattrs; i++) {
            const struct sl_attr *at = &job->attrs[i];
            if (at->map_src && strstr(at->map_src, job->refs[k].name))
                fprintf(stderr, "sluice: mapping.%s: column '%s' is not in %s\n", at->name,
                        job->refs[k].name, path);
        }
        missing++;
    }
    size_t unused = 0;
    for (size_t i = 0; i < h.n; i++) {
        if (!sl_job_reads_column(job, h.names[i])) {
            printf("%s%s", unused ? ", " : "unmapped columns: ", h.names[i]);
            unused++;
        }
    }
    if (unused)
        printf("\n");
    if (!missing)
        printf("%s: every column the mapping reads is in the file (%zu columns)\n", path, h.n);
    for (size_t i = 0; i < h.n; i++)
        free(h.names[i]);
    free(h.names);
    return missing ? EXIT_INVALID : 0;
}

static int cmd_check(int argc, char **argv)
{
    struct cli_args a = {0};
    struct sl_job *job = NULL;
    int rc = load_job(argc, argv, "check", &a, &job);
    if (!job)
        return rc;
    size_t n = job->ntargets ? job->ntargets : 1;
    if (job->ntargets)
        printf("%s: job '%s' is valid: %zu targets\n", a.job_path, job->name, n);
    for (size_t t = 0; t < n; t++) {
        const struct sl_job *tj = job->ntargets ? job->targets[t] : job;
        if (job->ntargets)
            printf("  targets[%zu]: object '%s', %zu attributes, key (", t, tj->object, tj->nattrs);
        else
            printf("%s: job '%s' is valid: object '%s', %zu attributes, key (", a.job_path,
                   job->name, tj->object, tj->nattrs);
        for (size_t i = 0; i < tj->nkey; i++)
            printf("%s%s", i ? ", " : "", tj->key[i]);
        printf(")\n");
    }
    rc = 0;
    for (size_t t = 0; a.input && t < n; t++) {
        int trc = check_input(job->ntargets ? job->targets[t] : job, a.input);
        if (trc)
            rc = trc;
    }
    sl_job_destroy(job);
    return rc;
}

/* Records a queued run and sends its ticket through Kafka (the settings of
 * the services: SLUICE_KAFKA_BROKERS, SLUICE_TOPIC_PREFIX, SLUICE_KAFKA_CONFIG). */
static int request_run(PGconn *conn, const char *job_id, uint32_t version, bool force)
{
    char run_id[37], ver[24], err[1024] = "";
    sl_new_run_id(run_id);
    snprintf(ver, sizeof(ver), "%u", version);
    const char *params[] = {run_id, job_id, ver};
    if (sl_pg_exec(conn, "record the run",
                   "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status) "
                   "VALUES ($1, $2, $3::integer, 'cli', 'queued')",
                   3, params, NULL, err, sizeof(err))) {
        fprintf(stderr, "sluice: submit: %s\n", err);
        return EXIT_FAILED;
    }
    struct sl_kafka_conf kc = {
        .brokers = getenv("SLUICE_KAFKA_BROKERS"),
        .topic_prefix = getenv("SLUICE_TOPIC_PREFIX"),
        .config = getenv("SLUICE_KAFKA_CONFIG"),
        .client_id = "sluice-cli",
    };
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    struct sl_msg *t = sl_msg_new(SL_MSG_TICKET, run_id, job_id, version);
    int rc = EXIT_FAILED;
    if (!bus || !t) {
        fprintf(stderr, "sluice: submit: %s\n", err[0] ? err : "out of memory");
        sl_msg_unref(t);
        goto out;
    }
    t->u.ticket.ticket_id = t->run_id;
    t->u.ticket.trigger = "cli";
    t->u.ticket.force = force;
    t->u.ticket.scheduled_at = sl_now_us();
    t->key = t->job_id;
    if (sl_bus_send(bus, SL_TOPIC_TICKETS, t) || bus->ops->flush(bus, 30000)) {
        fprintf(stderr, "sluice: submit: cannot send the ticket to Kafka at %s\n",
                kc.brokers ? kc.brokers : "localhost:9092");
        goto out;
    }
    printf("run %s requested\n", run_id);
    rc = 0;
out:
    sl_bus_destroy(bus);
    return rc;
}

static int cmd_submit(int argc, char **argv)
{
    struct cli_args a = {0};
    struct sl_job *job = NULL;
    int rc = load_job(argc, argv, "submit", &a, &job);
    if (!job)
        return rc;
    const char *url = getenv("SLUICE_POSTGRES_URL");
    char err[1024] = "";
    size_t len = 0;
    char *text = NULL;
    PGconn *conn = NULL;
    if (!url || !url[0]) {
        fprintf(stderr, "sluice: submit: SLUICE_POSTGRES_URL must name the control plane\n");
        rc = EXIT_INVALID;
        goto out;
    }
    if (!(text = sl_read_file(a.job_path, &len))) {
        fprintf(stderr, "sluice: %s: %s\n", a.job_path, strerror(errno));
        rc = EXIT_FAILED;
        goto out;
    }
    uint32_t version = 0;
    int created = 0;
    if (!(conn = sl_pg_connect(url, SL_PG_CONNECT_TIMEOUT, err, sizeof(err))) ||
        sl_control_migrate(conn, err, sizeof(err)) ||
        sl_control_put_job(conn, job, text, len, &version, &created, err, sizeof(err))) {
        fprintf(stderr, "sluice: submit: %s\n", err);
        rc = EXIT_FAILED;
        goto out;
    }
    printf(created ? "job '%s' stored as version %u\n" : "job '%s' is unchanged at version %u\n",
           job->name, version);
    rc = a.run ? request_run(conn, job->name, version, a.force) : 0;
out:
    PQfinish(conn);
    free(text);
    sl_job_destroy(job);
    return rc;
}

/* sluice migrate: the control plane's migrations, applied once (the same
 * call as every service makes at start, under the same advisory lock), for a
 * deployment's migration step before the services are upgraded. */
static int cmd_migrate(int argc, char **argv)
{
    if (argc > 1)
        return usage_error("migrate: unexpected argument '%s'", argv[1]);
    const char *url = getenv("SLUICE_POSTGRES_URL");
    if (!url || !url[0]) {
        fprintf(stderr, "sluice: migrate: SLUICE_POSTGRES_URL must name the control plane\n");
        return EXIT_INVALID;
    }
    char err[1024] = "";
    PGconn *conn = sl_pg_connect(url, SL_PG_CONNECT_TIMEOUT, err, sizeof(err));
    PGresult *res = NULL;
    if (!conn || sl_control_migrate(conn, err, sizeof(err)) ||
        sl_pg_exec(conn, "read the schema version",
                   "SELECT coalesce(max(version), 0) FROM sluice_schema_migrations", 0, NULL, &res,
                   err, sizeof(err))) {
        fprintf(stderr, "sluice: migrate: %s\n", err);
        PQfinish(conn);
        return EXIT_FAILED;
    }
    printf("control plane schema at version %s\n", PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return 0;
}

static int cmd_runs(int argc, char **argv)
{
    /* through the gateway's API when a server is named (remote.c) */
    const char *srv = getenv("SLUICE_SERVER");
    bool remote = srv && srv[0];
    for (int i = 1; i < argc && !remote; i++)
        remote = !strcmp(argv[i], "--server") || !strncmp(argv[i], "--server=", 9);
    if (remote)
        return sl_cmd_runs_remote(argc, argv);
    if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
        return usage_error("%s", "usage: sluice runs [JOB]");
    const char *url = getenv("SLUICE_POSTGRES_URL");
    if (!url || !url[0]) {
        fprintf(stderr, "sluice: runs: SLUICE_POSTGRES_URL must name the control plane\n");
        return EXIT_INVALID;
    }
    char err[1024] = "";
    PGconn *conn = sl_pg_connect(url, SL_PG_CONNECT_TIMEOUT, err, sizeof(err));
    PGresult *res = NULL;
    const char *params[] = {argc == 2 ? argv[1] : NULL};
    if (!conn ||
        sl_pg_exec(conn, "list the runs",
                   "SELECT id, job_id, job_version, status, "
                   "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                   "coalesce(counts->>'read', '-'), coalesce(counts->>'published', '-'), "
                   "coalesce(counts->>'rejected', '-'), coalesce(report->>'status', '-'), "
                   "coalesce(reason, '') "
                   "FROM sluice_runs WHERE $1::text IS NULL OR job_id = $1 "
                   "OR starts_with(job_id, $1 || '#') "
                   "ORDER BY started_at DESC LIMIT 50",
                   1, params, &res, err, sizeof(err))) {
        fprintf(stderr, "sluice: runs: %s\n", err);
        PQfinish(conn);
        return EXIT_FAILED;
    }
    printf("%-36s  %-20s %3s  %-21s  %-20s %9s %9s %9s  %-11s  %s\n", "RUN", "JOB", "V", "STATUS",
           "STARTED", "READ", "PUBLISHED", "REJECTED", "REPORT", "REASON");
    for (int i = 0; i < PQntuples(res); i++)
        printf("%-36s  %-20s %3s  %-21s  %-20s %9s %9s %9s  %-11s  %s\n", PQgetvalue(res, i, 0),
               PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
               PQgetvalue(res, i, 4), PQgetvalue(res, i, 5), PQgetvalue(res, i, 6),
               PQgetvalue(res, i, 7), PQgetvalue(res, i, 8), PQgetvalue(res, i, 9));
    PQclear(res);
    PQfinish(conn);
    return 0;
}

/* sluice config [--markdown] */
static int cmd_config(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--markdown")) {
        sl_settings_markdown(stdout);
        return 0;
    }
    if (argc > 1)
        return usage_error("%s", "usage: sluice config [--markdown]");
    sl_settings_usage("sluice", SL_PROG_CLI, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    /* --config FILE (or SLUICE_CONFIG): its values go to the environment,
     * where every command reads its settings; the environment wins */
    char *cargv[3] = {argv[0], NULL, NULL};
    int cargc = 1;
    if (argc > 1 && !strcmp(argv[1], "--config")) {
        if (argc < 3)
            return usage_error("%s", "option '--config' needs a value");
        cargv[cargc++] = argv[1];
        cargv[cargc++] = argv[2];
    } else if (argc > 1 && !strncmp(argv[1], "--config=", 9)) {
        cargv[cargc++] = argv[1];
    }
    argc -= cargc - 1;
    argv += cargc - 1;
    argv[0] = cargv[0];
    static struct sl_config config;
    if (sl_config_read(&config, "sluice", SL_PROG_CLI, cargc, cargv, NULL))
        return EXIT_INVALID;
    const char *lvl = getenv("SLUICE_LOG_LEVEL");
    if (sl_log_setup(lvl && lvl[0] ? lvl : "warn", getenv("SLUICE_LOG_FORMAT"))) {
        fprintf(stderr, "sluice: SLUICE_LOG_LEVEL or SLUICE_LOG_FORMAT has an unknown value\n");
        return EXIT_INVALID;
    }
    sl_config_log(&config);
    if (argc < 2)
        return usage_error("%s", "missing command");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "submit"))
        return cmd_submit(argc - 1, argv + 1);
    if (!strcmp(cmd, "migrate"))
        return cmd_migrate(argc - 1, argv + 1);
    if (!strcmp(cmd, "runs"))
        return cmd_runs(argc - 1, argv + 1);
    if (!strcmp(cmd, "preview"))
        return sl_cmd_preview(argc - 1, argv + 1);
    if (!strcmp(cmd, "suggest"))
        return sl_cmd_suggest(argc - 1, argv + 1);
    if (!strcmp(cmd, "jobs"))
        return sl_cmd_jobs(argc - 1, argv + 1);
    if (!strcmp(cmd, "config"))
        return cmd_config(argc - 1, argv + 1);
    return usage_error("unknown command '%s'", cmd);
}
