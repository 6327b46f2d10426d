/*
 * A throwaway PostgreSQL cluster for integration tests.
 *
 * pg_server_start() runs Debian's initdb into a new temporary directory and
 * starts the server with pg_ctl on 127.0.0.1 at a free port (unix socket in
 * the same directory, fsync off: the data is disposable), waiting until it
 * accepts connections. PostgreSQL refuses to run as root, so as root the
 * binaries run as the `postgres` user (runuser) and the directory is given to
 * it. pg_server_stop() kills the postmaster by the PID in postmaster.pid
 * (SIGQUIT: immediate shutdown, SIGKILL if it lingers) and removes the
 * directory; call it from a cmocka group teardown so that it runs even when
 * an assertion failed. The binaries are found under /usr/lib/postgresql/<v>/bin
 * (the highest version), or in $SLUICE_PG_BIN. Header-only: include it from a
 * test program.
 */
#ifndef SLUICE_PG_SERVER_H
#define SLUICE_PG_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct pg_server {
    char dir[64];  /* temporary directory: data/, log, socket */
    char bin[256]; /* directory of initdb and pg_ctl */
    int port;
    pid_t pid;          /* the postmaster; 0 when not running */
    char conninfo[256]; /* keyword string for libpq: host, port, user, dbname */
    char err[512];      /* why start failed */
};

#define PG_SERVER_FN static __attribute__((unused))

/* A port that was free a moment ago on 127.0.0.1 (the kernel's choice). */
PG_SERVER_FN int pg_server_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Runs argv (as user postgres when we are root), output to log; returns the
 * exit status, or -1 when it could not be started. */
PG_SERVER_FN int pg_server_run(const struct pg_server *s, const char *const *argv, const char *log)
{
    const char *full[32];
    size_t n = 0;
    if (geteuid() == 0) {
        full[n++] = "runuser";
        full[n++] = "-u";
        full[n++] = "postgres";
        full[n++] = "--";
    }
    for (size_t i = 0; argv[i] && n < 31; i++)
        full[n++] = argv[i];
    full[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, full[0], &fa, NULL, (char *const *)full, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    (void)s;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

PG_SERVER_FN int pg_server_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

/* The last lines of the server log, for a failure message. */
PG_SERVER_FN void pg_server_log_tail(const struct pg_server *s, char *out, size_t outsz)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/log", s->dir);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *t = n > 300 ? buf + n - 300 : buf;
    size_t len = strlen(t) < outsz - 1 ? strlen(t) : outsz - 1;
    memcpy(out, t, len);
    out[len] = '\0';
}

PG_SERVER_FN pid_t pg_server_read_pid(const struct pg_server *s)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/data/postmaster.pid", s->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

/* Whether pid is a live process (not gone, not a zombie waiting for init). */
PG_SERVER_FN bool pg_server_alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) != 0)
        return false;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return !(p && p[1] == ' ' && p[2] == 'Z');
}

/* Stops the server (if running) and removes its directory. Idempotent. */
PG_SERVER_FN void pg_server_stop(struct pg_server *s)
{
    pid_t pid = s->pid ? s->pid : (s->dir[0] ? pg_server_read_pid(s) : 0);
    if (pid > 0 && pg_server_alive(pid)) {
        kill(pid, SIGQUIT);
        for (int i = 0; i < 200 && pg_server_alive(pid); i++) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            if (i == 100)
                kill(pid, SIGKILL);
        }
    }
    s->pid = 0;
    if (s->dir[0]) {
        nftw(s->dir, pg_server_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        s->dir[0] = '\0';
    }
}

PG_SERVER_FN bool pg_server_find_bin(struct pg_server *s)
{
    const char *env = getenv("SLUICE_PG_BIN");
    if (env && *env) {
        snprintf(s->bin, sizeof(s->bin), "%s", env);
        return true;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) != 0)
        return false;
    /* the highest version: glob sorts, so compare numerically */
    const char *best = NULL;
    long bestv = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (v > bestv) {
            bestv = v;
            best = g.gl_pathv[i];
        }
    }
    if (best) {
        snprintf(s->bin, sizeof(s->bin), "%.*s", (int)(strlen(best) - strlen("/pg_ctl")), best);
    }
    globfree(&g);
    return best != NULL;
}

/* Creates and starts a cluster; 0, or -1 with s->err set (and nothing left
 * behind). */
PG_SERVER_FN int pg_server_start(struct pg_server *s)
{
    memset(s, 0, sizeof(*s));
    if (!pg_server_find_bin(s)) {
        snprintf(s->err, sizeof(s->err), "no PostgreSQL server binaries under /usr/lib/postgresql");
        return -1;
    }
    snprintf(s->dir, sizeof(s->dir), "/tmp/sluice-pg-XXXXXX");
    if (!mkdtemp(s->dir)) {
        snprintf(s->err, sizeof(s->err), "mkdtemp: %s", strerror(errno));
        s->dir[0] = '\0';
        return -1;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(s->dir, pw->pw_uid, pw->pw_gid) != 0) {
            snprintf(s->err, sizeof(s->err), "cannot give %s to user postgres", s->dir);
            pg_server_stop(s);
            return -1;
        }
    }
    char data[96], log[96], initdb[300], pg_ctl[300], opts[256];
    snprintf(data, sizeof(data), "%s/data", s->dir);
    snprintf(log, sizeof(log), "%s/log", s->dir);
    snprintf(initdb, sizeof(initdb), "%s/initdb", s->bin);
    snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", s->bin);
    const char *init_argv[] = {initdb,      "-D",       data, "-A",   "trust",
                               "-U",        "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                               "--no-sync", NULL};
    /* the log file must be writable by postgres: let it create it */
    if (pg_server_run(s, init_argv, "/dev/null") != 0) {
        snprintf(s->err, sizeof(s->err), "initdb failed (%s)", initdb);
        pg_server_stop(s);
        return -1;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        s->port = pg_server_free_port();
        snprintf(opts, sizeof(opts),
                 "-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s "
                 "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                 s->port, s->dir);
        const char *start_argv[] = {pg_ctl, "-D", data, "-l", log,     "-o",
                                    opts,   "-w", "-t", "60", "start", NULL};
        if (pg_server_run(s, start_argv, "/dev/null") == 0 && (s->pid = pg_server_read_pid(s))) {
            snprintf(s->conninfo, sizeof(s->conninfo),
                     "host=127.0.0.1 port=%d user=postgres dbname=postgres", s->port);
            return 0;
        }
        /* the port may have been taken meanwhile: try another */
        pid_t pid = pg_server_read_pid(s);
        if (pid > 0 && pg_server_alive(pid))
            kill(pid, SIGQUIT);
    }
    char tail[320];
    pg_server_log_tail(s, tail, sizeof(tail));
    snprintf(s->err, sizeof(s->err), "the server did not start: %s", tail);
    pg_server_stop(s);
    return -1;
}

#endif

#ifndef SLUICE_PG_SERVER_RESTART_H
#define SLUICE_PG_SERVER_RESTART_H
/* Appends settings (lines of postgresql.conf, e.g. "max_connections = 40\n")
 * to the configuration of the running server s and restarts it with them
 * (pg_ctl restart keeps the options it was started with); 0, or -1 with
 * s->err set. Connections to it are cut. */
PG_SERVER_FN int pg_server_restart_with(struct pg_server *s, const char *settings)
{
    char conf[128], data[96], log[96], pg_ctl[300];
    snprintf(conf, sizeof(conf), "%s/data/postgresql.conf", s->dir);
    snprintf(data, sizeof(data), "%s/data", s->dir);
    snprintf(log, sizeof(log), "%s/log", s->dir);
    snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", s->bin);
    FILE *f = fopen(conf, "a");
    if (!f || fputs(settings, f) < 0) {
        snprintf(s->err, sizeof(s->err), "cannot append to %s: %s", conf, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    const char *argv[] = {pg_ctl, "-D", data, "-l",   log,       "-w",
                          "-t",   "60", "-m", "fast", "restart", NULL};
    if (pg_server_run(s, argv, "/dev/null") != 0 || !(s->pid = pg_server_read_pid(s))) {
        char tail[320];
        pg_server_log_tail(s, tail, sizeof(tail));
        snprintf(s->err, sizeof(s->err), "the server did not restart: %s", tail);
        return -1;
    }
    return 0;
}
#endif
