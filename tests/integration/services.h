/*
 * The sluice services of the integration tests as processes: each started
 * from SLUICE_BUILD_DIR with its output appended to DIR/<name>.log, and
 * stopped by PID; and the shell commands the tests run. Header-only.
 */
#ifndef SLUICE_TEST_SERVICES_H
#define SLUICE_TEST_SERVICES_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs the shell command made from fmt; its exit status, or -1. */
static __attribute__((unused, format(printf, 1, 2))) int shell(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Starts sluice-NAME with its output in logdir/LOGNAME.log (a second
 * instance of a stage: its own log); its PID, or -1. */
static __attribute__((unused)) pid_t svc_start_as(const char *name, const char *logname,
                                                  const char *logdir)
{
    char bin[512], log[512];
    snprintf(bin, sizeof(bin), "%s/sluice-%s", SLUICE_BUILD_DIR, name);
    snprintf(log, sizeof(log), "%s/%s.log", logdir, logname);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        /* several services on one host: no /metrics unless the test asks
         * for one (the default 0.0.0.0:9464 would be taken by the first) */
        if (!getenv("SLUICE_METRICS_ADDR"))
            setenv("SLUICE_METRICS_ADDR", "off", 1);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Starts sluice-NAME with its output in logdir/NAME.log; its PID, or -1. */
static __attribute__((unused)) pid_t svc_start(const char *name, const char *logdir)
{
    return svc_start_as(name, name, logdir);
}

/* Stops it with SIGTERM (SIGKILL after 15 s). 0 when it exited with status
 * 0; else -1, saying why on stderr (under the sanitizers, a leak or an
 * error shows here). */
static __attribute__((unused)) int svc_stop(pid_t pid, const char *name)
{
    if (pid <= 0)
        return 0;
    kill(pid, SIGTERM);
    int st = 0;
    pid_t done = 0;
    for (int k = 0; k < 300 && (done = waitpid(pid, &st, WNOHANG)) == 0; k++)
        usleep(50000);
    if (done == 0) {
        fprintf(stderr, "sluice-%s did not stop on SIGTERM\n", name);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return -1;
    }
    if (done == pid && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "sluice-%s stopped with %s %d\n", name,
                WIFSIGNALED(st) ? "signal" : "exit status",
                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        return -1;
    }
    return 0;
}

#endif
