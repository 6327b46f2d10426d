/*
 * The HTTP part of the gateway's webhook path, alone: libmicrohttpd with the
 * gateway's daemon flags (two poll() threads, suspended connections, an
 * inter-thread channel), every request's body read, its connection
 * suspended and handed to another thread, which resumes it to answer 202.
 * No signature, JSON, Redis or Kafka: bench_gateway.sh runs it beside nginx
 * as the ceiling of what the gateway's HTTP library costs on this machine
 * (docs/BENCHMARKS.md).
 *
 *   mhd_202 PORT     (listens on 127.0.0.1:PORT until SIGTERM or SIGINT)
 */
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct req {
    struct req *next;
    struct MHD_Connection *conn;
    atomic_bool ready;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct req *queue;
static bool stopping;
static struct MHD_Response *accepted;

/* Resumes every queued connection, a batch at a time (as the webhook
 * engine answers a round). */
static void *resumer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!queue && !stopping)
            pthread_cond_wait(&cv, &mu);
        struct req *l = queue;
        queue = NULL;
        bool stop = stopping;
        pthread_mutex_unlock(&mu);
        while (l) {
            struct req *next = l->next; /* l is freed once its answer is sent */
            atomic_store(&l->ready, true);
            MHD_resume_connection(l->conn);
            l = next;
        }
        if (stop)
            return NULL;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload;
    struct req *rq = *con_cls;
    if (!rq) {
        if (!(rq = calloc(1, sizeof(*rq))))
            return MHD_NO;
        rq->conn = conn;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (atomic_load(&rq->ready))
        return MHD_queue_response(conn, 202, accepted);
    MHD_suspend_connection(conn);
    pthread_mutex_lock(&mu);
    rq->next = queue;
    queue = rq;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

int main(int argc, char **argv)
{
    int port = argc == 2 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: mhd_202 PORT\n");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the threads below inherit it */
    static const char body[] = "{\"ok\":true}";
    accepted = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(accepted, "Content-Type", "application/json");
    pthread_t t;
    if (!accepted || pthread_create(&t, NULL, resumer, NULL))
        return 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, 512u,
        MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mhd_202: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    /* stop: MHD must not stop with connections suspended */
    MHD_quiesce_daemon(d);
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
    MHD_stop_daemon(d);
    MHD_destroy_response(accepted);
    return 0;
}
