/*
 * sluice-test-mock_kafka: a Kafka-protocol broker for the integration tests.
 *
 * Runs librdkafka's mock cluster (rdkafka_mock.h) in its own process. The
 * mock listens on 127.0.0.1 only, on ports the kernel picks; this program
 * prints the bootstrap servers on one line of stdout and then runs until
 * SIGTERM or SIGINT, or until stdin closes (so a test that dies takes its
 * broker with it). Clients (the Kafka bus, kcat) speak the real protocol to
 * it. Know its limits: each partition keeps about 5 MiB, topics it creates on
 * demand get 4 partitions, and a consumer group takes about 3 s to form.
 *
 *   sluice-test-mock_kafka [--brokers N] [--topic NAME:PARTITIONS]... [--no-stdin]
 *
 * Lines on stdin drive fault injection; each is answered on stdout with "ok"
 * or "error: ...":
 *   down BROKER              disconnect a broker and refuse connections
 *   up BROKER                accept connections again
 *   rtt BROKER MS            delay every response of a broker
 *   leader TOPIC PART BROKER move a partition's leadership
 *   topic NAME:PARTITIONS    create a topic
 *   error APIKEY ERR [N]     fail the next N (default 1) requests of an API
 *   quit                     stop
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4)
        fprintf(stderr, "mock_kafka: %s: %s\n", fac, buf);
}

/* Creates NAME:PARTITIONS; returns 0 or -1 with why set. */
static int create_topic(rd_kafka_mock_cluster_t *mc, int nbrokers, const char *spec, char *why,
                        size_t whysz)
{
    char name[256];
    const char *colon = strrchr(spec, ':');
    char *end = NULL;
    long parts = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(name) || !end || *end ||
        parts < 1 || parts > 1000) {
        snprintf(why, whysz, "topic '%s' is not NAME:PARTITIONS", spec);
        return -1;
    }
    memcpy(name, spec, colon - spec);
    name[colon - spec] = '\0';
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(mc, name, (int)parts, nbrokers < 3 ? nbrokers : 3);
    if (err) {
        snprintf(why, whysz, "cannot create topic %s: %s", name, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Runs one control line; answers on stdout. Returns false on "quit". */
static bool command(rd_kafka_mock_cluster_t *mc, int nbrokers, char *line)
{
    char why[300] = "";
    char a[256], b[256];
    int n1, n2, n3;
    rd_kafka_resp_err_t err = 0;
    line[strcspn(line, "\r\n")] = '\0';
    if (!strcmp(line, "quit"))
        return false;
    if (sscanf(line, "down %d", &n1) == 1)
        err = rd_kafka_mock_broker_set_down(mc, n1);
    else if (sscanf(line, "up %d", &n1) == 1)
        err = rd_kafka_mock_broker_set_up(mc, n1);
    else if (sscanf(line, "rtt %d %d", &n1, &n2) == 2)
        err = rd_kafka_mock_broker_set_rtt(mc, n1, n2);
    else if (sscanf(line, "leader %255s %d %d", a, &n1, &n2) == 3)
        err = rd_kafka_mock_partition_set_leader(mc, a, n1, n2);
    else if (sscanf(line, "topic %255s", a) == 1) {
        if (create_topic(mc, nbrokers, a, why, sizeof(why)))
            err = RD_KAFKA_RESP_ERR__INVALID_ARG;
    } else if (sscanf(line, "error %d %d %d", &n1, &n2, &n3) >= 2) {
        int cnt = sscanf(line, "error %d %d %d", &n1, &n2, &n3) == 3 ? n3 : 1;
        for (int i = 0; i < cnt; i++)
            rd_kafka_mock_push_request_errors(mc, (int16_t)n1, 1, (rd_kafka_resp_err_t)n2);
    } else {
        snprintf(b, sizeof(b), "%.200s", line);
        snprintf(why, sizeof(why), "unknown command '%s'", b);
        err = RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    if (err)
        printf("error: %s\n", why[0] ? why : rd_kafka_err2str(err));
    else
        printf("ok\n");
    fflush(stdout);
    return true;
}

int main(int argc, char **argv)
{
    int nbrokers = 3;
    bool use_stdin = true;
    char why[512];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
            nbrokers = atoi(argv[++i]);
            if (nbrokers < 1 || nbrokers > 16) {
                fprintf(stderr, "mock_kafka: --brokers must be 1..16\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--topic") && i + 1 < argc) {
            i++; /* created below, once the cluster runs */
        } else if (!strcmp(argv[i], "--no-stdin")) {
            use_stdin = false;
        } else {
            fprintf(stderr, "usage: %s [--brokers N] [--topic NAME:PARTITIONS]... [--no-stdin]\n",
                    argv[0]);
            return 2;
        }
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    /* the handle only hosts the cluster; it never connects anywhere */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!rk) {
        fprintf(stderr, "mock_kafka: cannot create the host handle: %s\n", why);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mc) {
        fprintf(stderr, "mock_kafka: cannot start the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brokers")) {
            i++;
        } else if (!strcmp(argv[i], "--topic")) {
            if (create_topic(mc, nbrokers, argv[++i], why, sizeof(why))) {
                fprintf(stderr, "mock_kafka: %s\n", why);
                rc = 2;
                goto out;
            }
        }
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    char line[1024];
    size_t len = 0;
    while (!stop) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int n = poll(&pfd, use_stdin ? 1 : 0, 200);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        ssize_t got = read(STDIN_FILENO, line + len, sizeof(line) - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* stdin closed: whoever started us is gone */
        len += (size_t)got;
        line[len] = '\0';
        char *nl;
        bool quit = false;
        while (!quit && (nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            quit = !command(mc, nbrokers, line);
            size_t used = (size_t)(nl + 1 - line);
            memmove(line, nl + 1, len - used + 1);
            len -= used;
        }
        if (quit)
            break;
        if (len == sizeof(line) - 1)
            len = 0; /* an overlong line: drop it */
    }
out:
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}
