/*
 * The Kafka-protocol broker of the integration tests: librdkafka's mock
 * cluster as its own process (sluice-test-mock_kafka, on 127.0.0.1), started
 * with the topics given and stopped by PID. Header-only.
 *
 *   struct kafka_mock km;
 *   if (kafka_mock_start(&km, topics)) fail;   // in a cmocka group setup
 *   ... km.bootstrap ...
 *   kafka_mock_stop(&km);                      // in the group teardown
 */
#ifndef SLUICE_KAFKA_MOCK_H
#define SLUICE_KAFKA_MOCK_H

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KAFKA_MOCK_BIN SLUICE_BUILD_DIR "/tests/sluice-test-mock_kafka"

struct kafka_mock {
    pid_t pid;           /* 0: not running */
    int in, out;         /* its control channel (stdin) and answers (stdout) */
    char bootstrap[512]; /* its bootstrap servers */
};

static double kafka_mock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts the mock with topics ("NAME:PARTITIONS", NULL-terminated) and reads
 * its bootstrap line. 0, or -1 with a message on stderr. */
static __attribute__((unused)) int kafka_mock_start(struct kafka_mock *km,
                                                    const char *const *topics)
{
    memset(km, 0, sizeof(*km));
    km->in = km->out = -1;
    int in[2], out[2];
    if (pipe(in) || pipe(out))
        return -1;
    const char *argv[64] = {KAFKA_MOCK_BIN};
    int argc = 1;
    for (size_t i = 0; topics && topics[i] && argc < 62; i++) {
        argv[argc++] = "--topic";
        argv[argc++] = topics[i];
    }
    km->pid = fork();
    if (km->pid < 0)
        return -1;
    if (km->pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(KAFKA_MOCK_BIN, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    km->in = in[1];
    km->out = out[0];
    size_t len = 0;
    double until = kafka_mock_now() + 15;
    while (len < sizeof(km->bootstrap) - 1 && !memchr(km->bootstrap, '\n', len)) {
        struct pollfd pfd = {.fd = km->out, .events = POLLIN};
        if (kafka_mock_now() > until || poll(&pfd, 1, 500) < 0)
            break;
        if (!(pfd.revents & (POLLIN | POLLHUP)))
            continue;
        ssize_t n = read(km->out, km->bootstrap + len, sizeof(km->bootstrap) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    km->bootstrap[len] = '\0';
    char *nl = strchr(km->bootstrap, '\n');
    if (!nl) {
        fprintf(stderr, "the mock kafka cluster did not start\n");
        return -1;
    }
    *nl = '\0';
    return 0;
}

/* Sends one control command ("down 2", see tool_mock_kafka.c) and reads the
 * answer line into reply; 0 when the answer is "ok". */
static __attribute__((unused)) int kafka_mock_cmd(struct kafka_mock *km, const char *line,
                                                  char *reply, size_t replysz)
{
    size_t len = 0;
    if (write(km->in, line, strlen(line)) != (ssize_t)strlen(line) || write(km->in, "\n", 1) != 1)
        return -1;
    double until = kafka_mock_now() + 10;
    while (len < replysz - 1 && kafka_mock_now() < until) {
        struct pollfd pfd = {.fd = km->out, .events = POLLIN};
        if (poll(&pfd, 1, 500) <= 0)
            continue;
        if (read(km->out, reply + len, 1) != 1)
            break;
        if (reply[len] == '\n')
            break;
        len++;
    }
    reply[len] = '\0';
    return strcmp(reply, "ok") ? -1 : 0;
}

/* Stops the mock by PID (SIGTERM, then SIGKILL after 5 s). */
static __attribute__((unused)) void kafka_mock_stop(struct kafka_mock *km)
{
    if (km->in >= 0)
        close(km->in);
    if (km->out >= 0)
        close(km->out);
    km->in = km->out = -1;
    if (km->pid > 0) {
        kill(km->pid, SIGTERM);
        int st;
        for (int i = 0; i < 100 && waitpid(km->pid, &st, WNOHANG) == 0; i++)
            usleep(50000);
        if (waitpid(km->pid, &st, WNOHANG) == 0) {
            kill(km->pid, SIGKILL);
            waitpid(km->pid, &st, 0);
        }
    }
    km->pid = 0;
}

#endif
