/*
 * A real redis-server for integration tests: started from Debian's binary on
 * 127.0.0.1 at a free port, in its own temporary directory, and stopped by
 * PID. Header-only so that any tests/integration/test_*.c can include it.
 *
 *   struct redis_server rs;
 *   if (redis_server_start(&rs, false)) fail;   // in a cmocka group setup
 *   ... redis_server_url(&rs, buf, n) ...
 *   redis_server_stop(&rs);                     // in the group teardown
 *
 * A durable server keeps an append-only file, so redis_server_kill() (SIGKILL,
 * a crash) followed by redis_server_restart() on the same port and directory
 * loses nothing that was acknowledged. The child dies with the test process
 * (PR_SET_PDEATHSIG), so even a crashed test leaves no server behind.
 */
#ifndef SLUICE_TEST_REDIS_SERVER_H
#define SLUICE_TEST_REDIS_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

struct redis_server {
    pid_t pid; /* 0: not running */
    int port;
    bool durable;
    char dir[200];  /* temporary directory, removed by stop */
    char sock[256]; /* its unix socket */
};

static void redis_server_msleep_(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* A port nobody listens on right now (the kernel's pick), or -1. */
static int redis_server_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
        !getsockname(fd, (struct sockaddr *)&sa, &len))
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* A new connection to the server (the caller frees it), or NULL. */
static __attribute__((unused)) redisContext *redis_server_connect(const struct redis_server *rs)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, (struct timeval){10, 0});
    return c;
}

/* "redis://127.0.0.1:<port>/<db>" followed by extra (e.g. "?retry_for=5"). */
static void redis_server_url(const struct redis_server *rs, int db, const char *extra, char *out,
                             size_t n)
{
    snprintf(out, n, "redis://127.0.0.1:%d/%d%s", rs->port, db, extra ? extra : "");
}

static void redis_server_log_tail_(const struct redis_server *rs)
{
    char path[PATH_MAX], line[512];
    snprintf(path, sizeof(path), "%s/redis.log", rs->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "--- %s\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* Forks redis-server on rs->port in rs->dir and waits until PING answers.
 * 0, or -1 when it exited or did not answer within 10 s. */
static int redis_server_spawn_(struct redis_server *rs)
{
    char port[16], log[PATH_MAX];
    snprintf(port, sizeof(port), "%d", rs->port);
    snprintf(log, sizeof(log), "%s/redis.log", rs->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[] = {"redis-server",
                              "--bind",
                              "127.0.0.1",
                              "--port",
                              port,
                              "--unixsocket",
                              rs->sock,
                              "--unixsocketperm",
                              "700",
                              "--save",
                              "",
                              "--appendonly",
                              rs->durable ? "yes" : "no",
                              "--appendfsync",
                              "no",
                              "--dir",
                              rs->dir,
                              "--daemonize",
                              "no",
                              "--enable-debug-command",
                              "local",
                              NULL};
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    rs->pid = pid;
    for (int i = 0; i < 500; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            rs->pid = 0;
            return -1;
        }
        redisContext *c = redis_server_connect(rs);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        }
        redis_server_msleep_(20);
    }
    return -1;
}

static int redis_server_rm_(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Kills the server at once (a crash) and reaps it; its directory and port
 * stay for redis_server_restart. */
static void redis_server_kill(struct redis_server *rs)
{
    if (rs->pid > 0) {
        kill(rs->pid, SIGKILL);
        while (waitpid(rs->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    rs->pid = 0;
}

/* Starts the server again on the same port and directory. 0 or -1. */
static __attribute__((unused)) int redis_server_restart(struct redis_server *rs)
{
    redis_server_kill(rs);
    for (int attempt = 0; attempt < 5; attempt++) {
        if (!redis_server_spawn_(rs))
            return 0;
        redis_server_kill(rs);
        redis_server_msleep_(200);
    }
    fprintf(stderr, "redis-server did not restart on port %d\n", rs->port);
    redis_server_log_tail_(rs);
    return -1;
}

/* Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its
 * directory. Safe on a server that never started or was stopped. */
static void redis_server_stop(struct redis_server *rs)
{
    if (rs->pid > 0) {
        kill(rs->pid, SIGTERM);
        for (int i = 0; i < 250; i++) {
            if (waitpid(rs->pid, NULL, WNOHANG) == rs->pid) {
                rs->pid = 0;
                break;
            }
            redis_server_msleep_(20);
        }
        redis_server_kill(rs);
    }
    if (rs->dir[0])
        nftw(rs->dir, redis_server_rm_, 8, FTW_DEPTH | FTW_PHYS);
    rs->dir[0] = '\0';
}

/* Starts a server (durable: with an append-only file) in a new temporary
 * directory at a free port. 0, or -1 with the reason on stderr. */
static int redis_server_start(struct redis_server *rs, bool durable)
{
    memset(rs, 0, sizeof(*rs));
    rs->durable = durable;
    const char *tmp = getenv("TMPDIR");
    snprintf(rs->dir, sizeof(rs->dir), "%.150s/sluice-redis-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(rs->dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", rs->dir, strerror(errno));
        rs->dir[0] = '\0';
        return -1;
    }
    snprintf(rs->sock, sizeof(rs->sock), "%s/redis.sock", rs->dir);
    /* Another process may take the free port before redis binds it: try again. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if ((rs->port = redis_server_free_port()) < 0)
            break;
        if (!redis_server_spawn_(rs))
            return 0;
        redis_server_kill(rs);
    }
    fprintf(stderr, "could not start redis-server (is it installed?)\n");
    redis_server_log_tail_(rs);
    redis_server_stop(rs);
    return -1;
}

#endif
