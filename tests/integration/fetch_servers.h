/*
 * What the fetch tests (test_fetch_http.c, test_fetch_remote.c) share, so
 * that each test file holds only its servers' set-up and its cases:
 * processes started on loopback ports the kernel picks and stopped by PID,
 * a test CA and certificates it signs (openssl CLI, in the group's
 * temporary directory), the fetcher stage run alone with an allow-list
 * (stage_harness.h), the run events it must send, and `sluice run` of a job
 * written to a directory. Header-only; include after stage_harness.h and
 * services.h. The including file may define FETCH_JOB_NAME (the name of the
 * jobs job_of() makes) before it.
 */
#ifndef SLUICE_TEST_FETCH_SERVERS_H
#define SLUICE_TEST_FETCH_SERVERS_H

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#ifndef FETCH_JOB_NAME
#define FETCH_JOB_NAME "fetchjob"
#endif

#define SLUICE   SLUICE_BUILD_DIR "/sluice"
#define LOOPBACK "127.0.0.1/32"

#define FS_UNUSED __attribute__((unused))

static char tmp[64]; /* the group's temporary directory (fs_mktmp) */

/* ---- processes ----------------------------------------------------------- */

/* Makes the group's temporary directory from the template ("/tmp/x-XXXXXX")
 * into tmp. 0 or -1. */
static FS_UNUSED int fs_mktmp(const char *templ)
{
    snprintf(tmp, sizeof(tmp), "%s", templ);
    return mkdtemp(tmp) ? 0 : -1;
}

/* Removes tmp unless SLUICE_KEEP_TMP is set (to look at the servers' logs). */
static FS_UNUSED void fs_rmtmp(void)
{
    if (tmp[0] && !getenv("SLUICE_KEEP_TMP"))
        shell("rm -rf '%s'", tmp);
}

/* A loopback TCP port free at the time of the call, or -1. */
static FS_UNUSED int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
        !getsockname(fd, (struct sockaddr *)&sa, &len))
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static FS_UNUSED bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Stops *pid (SIGTERM, SIGKILL after 5 s) and reaps it; *pid becomes 0. */
static FS_UNUSED void stop_pid(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGTERM);
        for (int i = 0; i < 100 && waitpid(*pid, NULL, WNOHANG) == 0; i++)
            usleep(50000);
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = 0;
}

/* Starts argv (NULL-terminated) with stderr into log (NULL: the test's)
 * and stdout into log, or into the pipe out_fd when out_fd >= 0; the child
 * dies with the test. Its PID, or -1. */
static FS_UNUSED pid_t spawn_to(char *const argv[], const char *log, int out_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
    if (out_fd >= 0)
        dup2(out_fd, STDOUT_FILENO);
    else if (fd >= 0)
        dup2(fd, STDOUT_FILENO);
    if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execv(argv[0], argv);
    _exit(127);
}

/* Starts argv with stdout and stderr into log. */
static FS_UNUSED pid_t spawn(char *const argv[], const char *log)
{
    return spawn_to(argv, log, -1);
}

/* Starts a test tool that prints the port it listens on as its first line
 * (stderr into log, NULL: the test's): its PID with *port set, or -1. */
static FS_UNUSED pid_t spawn_port(char *const argv[], const char *log, int *port)
{
    int fds[2];
    *port = 0;
    if (pipe(fds))
        return -1;
    pid_t pid = spawn_to(argv, log, fds[1]);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    char line[32] = "";
    size_t n = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    while (n < sizeof(line) - 1 && !strchr(line, '\n') && poll(&pfd, 1, 10000) == 1) {
        ssize_t r = read(fds[0], line + n, sizeof(line) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        line[n] = '\0';
    }
    close(fds[0]);
    *port = atoi(line);
    if (*port <= 0)
        stop_pid(&pid);
    return *port > 0 ? pid : -1;
}

/* Waits up to 5 s for the server pid to listen on port: 0, or -1 when it
 * exited or did not. */
static FS_UNUSED int wait_port(pid_t pid, int port)
{
    for (int i = 0; i < 200; i++) {
        if (port_open(port))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(25000);
    }
    return -1;
}

/* Writes data to dir/name. */
static FS_UNUSED void put(const char *dir, const char *name, const char *data)
{
    free(sh_write(dir, name, data, strlen(data)));
}

static FS_UNUSED double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What a group setup starts: 0 from start(), or -1 after saying on stderr
 * which server (what) did not start and where its log is (log, under tmp). */
static FS_UNUSED int fs_start(int (*start)(void), const char *what, const char *log)
{
    if (start() == 0)
        return 0;
    fprintf(stderr, "cannot start %s (see %s/%s)\n", what, tmp, log);
    return -1;
}

/* ---- certificates ---------------------------------------------------------- */

/* The test CA: tmp/ca.crt and its key tmp/ca.key (EC P-256, two days). */
static FS_UNUSED int fs_make_ca(void)
{
    return shell("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                 "-nodes -keyout ca.key -out ca.crt -days 2 -subj '/CN=sluice test CA' "
                 "-addext basicConstraints=critical,CA:TRUE "
                 "-addext keyUsage=critical,keyCertSign,cRLSign >ca.out 2>&1",
                 tmp)
               ? -1
               : 0;
}

/* A server certificate tmp/NAME.crt with its key tmp/NAME.key, signed by
 * the test CA (fs_make_ca), for san ("IP:127.0.0.1", "DNS:files.example.com"). */
static FS_UNUSED int fs_make_cert(const char *name, const char *san)
{
    return shell("cd %s && printf 'subjectAltName=%s\\nextendedKeyUsage=serverAuth\\n' > %s.ext && "
                 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout %s.key -out %s.csr -subj '/CN=%s' >>ca.out 2>&1 && "
                 "openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                 "-out %s.crt -days 2 -extfile %s.ext >>ca.out 2>&1 && chmod 644 %s.key",
                 tmp, san, name, name, name, name, name, name, name, name)
               ? -1
               : 0;
}

/* ---- the fetcher stage with an allow-list ------------------------------------ */

/* sh_start() of the fetcher with SLUICE_ALLOW_HOSTS allow (the guard is
 * made when the stage starts). */
static FS_UNUSED struct sh *fstart(void **state, const char *job_json, const char *allow)
{
    static const char *const topics[] = {SL_TOPIC_FILES, SL_TOPIC_RUNS, NULL};
    struct sh *h = *state;
    sh_stop(h);
    memset(h, 0, sizeof(*h));
    atomic_init(&h->stop, false);
    snprintf(h->dir, sizeof(h->dir), "/tmp/sluice-stage-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->state_dir, sizeof(h->state_dir), "%s/state", h->dir);
    snprintf(h->out_dir, sizeof(h->out_dir), "%s/out", h->dir);
    char err[512] = "";
    h->job = sl_job_load_json(job_json, strlen(job_json), h->dir, err, sizeof(err));
    if (!h->job)
        fail_msg("job: %s", err);
    snprintf(h->sink_path, sizeof(h->sink_path), "%s/%s.ndjson", h->out_dir, h->job->object);
    assert_non_null(h->jobs = sl_jobs_single_new(h->job));
    if (!(h->st = sl_state_local_new(h->state_dir, err, sizeof(err))))
        fail_msg("state: %s", err);
    h->env = (struct sl_stage_env){
        .jobs = h->jobs,
        .st = h->st,
        .out_dir = h->out_dir,
        .sink_path = h->sink_path,
        .job_dir = h->dir,
        .allow_hosts = allow,
        .open_sink = sh_open_sink,
        .open_ledger = sh_open_ledger,
        .embedded = true,
    };
    assert_non_null(h->bus = sl_bus_inproc_new(1024));
    if (!(h->watch = h->bus->ops->subscribe(h->bus, "test", topics, 2, err, sizeof(err))))
        fail_msg("subscribe: %s", err);
    if (!(h->runner =
              sl_stage_runner_new(&sl_stage_fetcher, h->bus, NULL, &h->env, err, sizeof(err))))
        fail_msg("runner: %s", err);
    assert_int_equal(pthread_create(&h->tid, NULL, sh_thread, h), 0);
    h->running = true;
    return h;
}

/* A job FETCH_JOB_NAME whose source object's inner text is source_fmt
 * (caller frees). */
static FS_UNUSED __attribute__((format(printf, 1, 2))) char *job_of(const char *source_fmt, ...)
{
    char src[3072];
    va_list ap;
    va_start(ap, source_fmt);
    vsnprintf(src, sizeof(src), source_fmt, ap);
    va_end(ap);
    char *job = malloc(4096);
    assert_non_null(job);
    snprintf(job, 4096,
             "{\"name\":\"" FETCH_JOB_NAME "\",\"source\":{%s},"
             "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"
             "\"id\":{\"type\":\"text\"}}},\"mapping\":{\"id\":\"id\"}}",
             src);
    return job;
}

/* fstart() of the job of job_of(source_fmt, ...). */
static FS_UNUSED __attribute__((format(printf, 3, 4))) struct sh *
fjob(void **state, const char *allow, const char *source_fmt, ...)
{
    char src[3072];
    va_list ap;
    va_start(ap, source_fmt);
    vsnprintf(src, sizeof(src), source_fmt, ap);
    va_end(ap);
    char *job = job_of("%s", src);
    struct sh *h = fstart(state, job, allow);
    free(job);
    return h;
}

/* Expects sl_job_load_json to refuse the job of source, saying part. */
static FS_UNUSED void expect_bad_job(const char *source, const char *part)
{
    char err[512] = "", *job = job_of("%s", source);
    struct sl_job *j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    if (j) {
        sl_job_destroy(j);
        fail_msg("accepted: %s", source);
    }
    if (!strstr(err, part))
        fail_msg("'%s' does not say '%s'", err, part);
}

static FS_UNUSED void ticket(struct sh *h, const char *input, bool force)
{
    struct sl_msg *t = sh_msg(h, SL_MSG_TICKET);
    t->u.ticket.trigger = "test";
    t->u.ticket.force = force;
    t->u.ticket.input = input ? sl_arena_strdup(&t->arena, input) : NULL;
    sh_send(h, SL_TOPIC_TICKETS, t);
}

/* The next runs event, within ms. */
static FS_UNUSED struct sl_msg *next_event(struct sh *h, int ms)
{
    const char *topic = NULL;
    struct sl_msg *m = sh_next_within(h, &topic, ms);
    if (!m)
        fail_msg("no run event within %d ms", ms);
    if (strcmp(topic, SL_TOPIC_RUNS))
        fail_msg("expected a run event, got a %s on %s", sl_msg_kind_str(m->kind), topic);
    return m;
}

/* Expects FAILED within ms whose reason holds every part (NULL-ended);
 * returns the reason. */
static FS_UNUSED const char *expect_failed(struct sh *h, int ms, ...)
{
    struct sl_msg *m = next_event(h, ms);
    if (m->u.ev.kind != SL_EV_FAILED)
        fail_msg("expected FAILED, got %s", sl_run_event_kind_str(m->u.ev.kind));
    assert_non_null(m->u.ev.reason);
    va_list ap;
    va_start(ap, ms);
    for (const char *part; (part = va_arg(ap, const char *)) != NULL;)
        if (!strstr(m->u.ev.reason, part)) {
            va_end(ap);
            fail_msg("the reason '%s' does not say '%s'", m->u.ev.reason, part);
        }
    va_end(ap);
    sh_expect_none(h, SL_MSG_FILE, 0);
    return m->u.ev.reason;
}

/* Expects FETCHED and the file, holding exactly body unless that is NULL;
 * returns the file message (held). */
static FS_UNUSED struct sl_msg *expect_file(struct sh *h, int ms, const char *body)
{
    struct sl_msg *m = next_event(h, ms);
    if (m->u.ev.kind != SL_EV_FETCHED)
        fail_msg("expected FETCHED, got %s (%s)", sl_run_event_kind_str(m->u.ev.kind),
                 m->u.ev.reason ? m->u.ev.reason : "");
    struct sl_msg *f = sh_next(h, SL_TOPIC_FILES);
    assert_int_equal(f->kind, SL_MSG_FILE);
    assert_string_equal(f->u.file.sha256, m->u.ev.sha256);
    char sha[65];
    uint64_t bytes = 0;
    assert_int_equal(sl_sha256_file(f->u.file.blob, sha, &bytes), 0);
    assert_string_equal(sha, f->u.file.sha256);
    assert_int_equal(bytes, f->u.file.bytes);
    if (body) {
        char *text = sh_read(f->u.file.blob);
        assert_non_null(text);
        if (strcmp(text, body))
            fail_msg("the file holds '%s', expected '%s'", text, body);
        free(text);
    }
    return f;
}

/* Expects SKIPPED within ms, its reason holding part. */
static FS_UNUSED void expect_skipped(struct sh *h, int ms, const char *part)
{
    struct sl_msg *m = next_event(h, ms);
    if (m->u.ev.kind != SL_EV_SKIPPED)
        fail_msg("expected SKIPPED, got %s (%s)", sl_run_event_kind_str(m->u.ev.kind),
                 m->u.ev.reason ? m->u.ev.reason : "");
    if (!m->u.ev.reason || !strstr(m->u.ev.reason, part))
        fail_msg("the reason '%s' does not say '%s'", m->u.ev.reason ? m->u.ev.reason : "", part);
    sh_expect_none(h, SL_MSG_FILE, 0);
}

/* ---- `sluice run` ------------------------------------------------------------- */

/* Runs `sluice run` of dir/job.json (embedded mode) with the environment
 * prefix env: its exit status, its output in out. */
static FS_UNUSED int sluice_run(const char *env, const char *dir, char *out, size_t n)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cd %s && %s %s run job.json --out out --state state 2>&1", dir, env,
             SLUICE);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* dir/job.json: a job "e2e" of source (the source object's inner text)
 * into things (id integer, name text, price decimal). */
static FS_UNUSED void write_job(const char *dir, const char *source)
{
    char *job = malloc(4096);
    assert_non_null(job);
    snprintf(job, 4096,
             "{\"name\":\"e2e\",\"source\":{%s},"
             "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"
             "\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"text\"},"
             "\"price\":{\"type\":\"decimal\"}}},"
             "\"mapping\":{\"id\":\"id\",\"name\":\"name\",\"price\":\"price\"}}",
             source);
    free(sh_write(dir, "job.json", job, strlen(job)));
    free(job);
}

/* The number of lines of the file at path. */
static FS_UNUSED size_t count_lines(const char *path)
{
    char *text = sh_read(path);
    assert_non_null(text);
    size_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

#endif
