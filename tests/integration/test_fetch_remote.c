/*
 * FTP, FTPS, SFTP, IMAP and S3 sources end to end, against real servers on
 * loopback, each started by the group setup in a temporary directory on
 * ports the kernel picks and stopped by PID (never a system service):
 *   - Debian's vsftpd: anonymous downloads, passive mode, explicit TLS (a
 *     certificate made here with openssl), local logins that fail;
 *   - OpenSSH's sshd with its sftp-server: key auth for root (a key made
 *     here with ssh-keygen), password auth (root has none: it fails);
 *   - Dovecot: IMAP with a passwd-file user whose Maildir holds four messages
 *     written here: attachments in base64 and quoted-printable, one without;
 *   - sluice-test-s3 (tool_s3.c): an S3-compatible server that verifies every
 *     request's SigV4 signature itself (its verifier first checked against
 *     AWS's documented example).
 *
 * The fetcher stage runs alone (stage_harness.h, the allow-list holding
 * loopback), and `sluice run` runs whole jobs of each kind (embedded mode).
 * Every failure must end the run with a reason that says what went wrong:
 * a wrong password, an unknown or changed host key, a missing file, no
 * matching mail, bad S3 credentials, the SSRF guard without the allow-list.
 */
#include "../stage/stage_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "services.h"
#include "sluice/source.h"

#define S3_BIN   SLUICE_BUILD_DIR "/tests/sluice-test-s3"
#define SLUICE   SLUICE_BUILD_DIR "/sluice"
#define LOOPBACK "127.0.0.1/32"
#define S3_AKID  "AKIDSLUICETEST"
#define S3_KEY   "s3cr3t/KEY+sluice"

static char tmp[64]; /* the group's temporary directory */
static pid_t ftp_pid, ssh_pid, imap_pid, s3_pid;
static int ftp_port, ssh_port, imap_port, s3_port;
static char s3_log[128];

static const char stores_csv[] = "id,name,price\n1,Berlin,1.50\n2,Hamburg,2.25\n";
/* the attachments of the mails */
static const char old_csv[] = "id,name,price\n9,Alt,9.00\n";
static const char new_csv[] = "id,name,price\n1,Z\xc3\xbcrich,1.50\n2,K\xc3\xb6ln,2.25\n";
/* quoted-printable text: its hard line breaks are CRLF (RFC 2045) */
static const char prices_csv[] = "id,name,price\r\n7,a=b \xc3\xa4 long line that the encoder "
                                 "folds with a soft line break somewhere in the middle,7.00\r\n";

/* ---- processes ------------------------------------------------------------ */

static int free_port(void)
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

static bool port_open(int port)
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

static void stop_pid(pid_t *pid)
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

/* Starts argv (NULL-terminated) with stdout and stderr into log; the child
 * dies with the test. Its PID, or -1. */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execv(argv[0], argv);
    _exit(127);
}

/* Waits up to 5 s for the server pid to listen on port. */
static int wait_port(pid_t pid, int port)
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

static void put(const char *dir, const char *name, const char *data)
{
    free(sh_write(dir, name, data, strlen(data)));
}

/* ---- the servers ------------------------------------------------------------ */

/* vsftpd: anonymous (root tmp/ftp), local logins through PAM, passive ports,
 * TLS offered (not required) with a certificate for 127.0.0.1. */
static int start_ftp(void)
{
    char conf[256], log[256];
    if (shell("mkdir -p %s/ftp/data %s/ftp-empty && chmod 755 %s/ftp %s/ftp/data %s/ftp-empty && "
              "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/tls.key -out %s/tls.crt "
              "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
              tmp, tmp, tmp, tmp, tmp, tmp, tmp))
        return -1;
    char d[128];
    snprintf(d, sizeof(d), "%s/ftp/data", tmp);
    put(d, "stores.csv", stores_csv);
    shell("chmod 644 %s/ftp/data/stores.csv", tmp);
    for (int attempt = 0; attempt < 5; attempt++) {
        ftp_port = free_port();
        int pasv = free_port();
        snprintf(conf, sizeof(conf), "%s/vsftpd.conf", tmp);
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        fprintf(f,
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port=%d\n"
                "background=NO\nanonymous_enable=YES\nanon_root=%s/ftp\nno_anon_password=YES\n"
                "local_enable=YES\nwrite_enable=NO\npam_service_name=vsftpd\n"
                "pasv_enable=YES\npasv_address=127.0.0.1\npasv_min_port=%d\npasv_max_port=%d\n"
                "secure_chroot_dir=%s/ftp-empty\nseccomp_sandbox=NO\nisolate=NO\n"
                "isolate_network=NO\nnopriv_user=nobody\nxferlog_enable=NO\n"
                "vsftpd_log_file=%s/vsftpd.log\ndual_log_enable=YES\nlog_ftp_protocol=YES\n"
                "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=NO\n"
                "force_anon_data_ssl=NO\nforce_local_logins_ssl=NO\nforce_local_data_ssl=NO\n"
                "require_ssl_reuse=NO\nssl_ciphers=HIGH\nrsa_cert_file=%s/tls.crt\n"
                "rsa_private_key_file=%s/tls.key\n",
                ftp_port, tmp, pasv, pasv + 20 < 65535 ? pasv + 20 : pasv, tmp, tmp, tmp, tmp);
        fclose(f);
        snprintf(log, sizeof(log), "%s/vsftpd.out", tmp);
        char *argv[] = {"/usr/sbin/vsftpd", conf, NULL};
        if ((ftp_pid = spawn(argv, log)) < 0)
            return -1;
        if (!wait_port(ftp_pid, ftp_port))
            return 0;
        stop_pid(&ftp_pid);
    }
    return -1;
}

/* sshd with its sftp-server: root logs in with the key tmp/id_user (and
 * with a password, which root has none of: it always fails). */
static int start_ssh(void)
{
    char conf[256], log[256], port[16];
    if (mkdir("/run/sshd", 0755) && errno != EEXIST) /* sshd's privilege separation */
        return -1;
    if (shell("mkdir -p %s/sftp && ssh-keygen -q -t ed25519 -N '' -f %s/host_key && "
              "ssh-keygen -q -t ed25519 -N '' -f %s/other_key && "
              "ssh-keygen -q -t ed25519 -N '' -C sluice -f %s/id_user && "
              "ssh-keygen -q -t ed25519 -N 'key pass' -C sluice -f %s/id_enc && "
              "cat %s/id_user.pub %s/id_enc.pub > %s/authorized_keys",
              tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp))
        return -1;
    char d[128];
    snprintf(d, sizeof(d), "%s/sftp", tmp);
    put(d, "stores.csv", stores_csv);
    snprintf(conf, sizeof(conf), "%s/sshd_config", tmp);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    fprintf(f,
            "ListenAddress 127.0.0.1\nPidFile %s/sshd.pid\nHostKey %s/host_key\n"
            "PermitRootLogin yes\nAuthorizedKeysFile %s/authorized_keys\n"
            "PubkeyAuthentication yes\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n",
            tmp, tmp, tmp);
    fclose(f);
    snprintf(log, sizeof(log), "%s/sshd.log", tmp);
    char hostkey[128];
    snprintf(hostkey, sizeof(hostkey), "%s/host_key", tmp);
    for (int attempt = 0; attempt < 5; attempt++) {
        ssh_port = free_port();
        snprintf(port, sizeof(port), "%d", ssh_port);
        char *argv[] = {"/usr/sbin/sshd", "-D", "-e", "-f", conf, "-p", port, "-h", hostkey, NULL};
        if ((ssh_pid = spawn(argv, log)) < 0)
            return -1;
        if (!wait_port(ssh_pid, ssh_port)) {
            /* known_hosts with the host's key; another with a different key */
            return shell("printf '[127.0.0.1]:%d ' > %s/known_hosts && cut -d' ' -f1,2 "
                         "%s/host_key.pub >> %s/known_hosts && "
                         "printf '[127.0.0.1]:%d ' > %s/changed_hosts && cut -d' ' -f1,2 "
                         "%s/other_key.pub >> %s/changed_hosts && "
                         "printf '[127.0.0.1]:1 ' > %s/other_hosts && cut -d' ' -f1,2 "
                         "%s/host_key.pub >> %s/other_hosts",
                         ssh_port, tmp, tmp, tmp, ssh_port, tmp, tmp, tmp, tmp, tmp, tmp)
                       ? -1
                       : 0;
        }
        stop_pid(&ssh_pid);
    }
    return -1;
}

/* One MIME message: a text part, and an attachment when name is given. */
static void write_mail(const char *dir, const char *file, time_t when, const char *subject,
                       const char *name, const char *encoding, const char *body_encoded)
{
    char text[8192];
    if (!name) {
        snprintf(text, sizeof(text),
                 "From: erp@example.com\r\nTo: bob@example.com\r\nSubject: %s\r\n"
                 "Message-ID: <%s@example.com>\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                 "The export stores.csv follows tomorrow.\r\n",
                 subject, file);
    } else {
        snprintf(text, sizeof(text),
                 "From: erp@example.com\r\nTo: bob@example.com\r\nSubject: %s\r\n"
                 "Message-ID: <%s@example.com>\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: multipart/mixed; boundary=\"=-b-=\"\r\n\r\n"
                 "--=-b-=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe export.\r\n"
                 "--=-b-=\r\nContent-Type: text/csv; charset=utf-8; name=\"%s\"\r\n"
                 "Content-Disposition: attachment; filename=\"%s\"\r\n"
                 "Content-Transfer-Encoding: %s\r\n\r\n%s\r\n--=-b-=--\r\n",
                 subject, file, name, name, encoding, body_encoded);
    }
    char *path = sh_write(dir, file, text, strlen(text));
    struct timeval tv[2] = {{when, 0}, {when, 0}};
    assert_int_equal(utimes(path, tv), 0);
    free(path);
}

static char *base64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* Dovecot: IMAP for bob (password "secret", uid nobody) on Maildir tmp/mail. */
static int start_imap(void)
{
    char conf[256], log[256], md[128];
    snprintf(md, sizeof(md), "%s/mail/cur", tmp);
    if (shell("mkdir -p %s/mail/cur %s/mail/new %s/mail/tmp %s/mailhome %s/dovecot/run "
              "%s/dovecot/state",
              tmp, tmp, tmp, tmp, tmp, tmp))
        return -1;
    time_t now = time(NULL);
    char *b_old = base64(old_csv), *b_new = base64(new_csv);
    /* quoted-printable: =3D, UTF-8 bytes as =XX, a soft line break */
    static const char qp[] = "id,name,price\r\n7,a=3Db =C3=A4 long line that the encoder folds "
                             "with a soft line break =\r\nsomewhere in the middle,7.00\r\n";
    write_mail(md, "1000.M1P1.sluice:2,", now - 4000, "old export", "stores-old.csv", "base64",
               b_old);
    write_mail(md, "1001.M2P1.sluice:2,", now - 3000, "new export", "stores-new.csv", "base64",
               b_new);
    write_mail(md, "1002.M3P1.sluice:2,S", now - 2000, "prices", "prices.csv", "quoted-printable",
               qp);
    write_mail(md, "1003.M4P1.sluice:2,", now - 1000, "no export today", NULL, NULL, NULL);
    free(b_old);
    free(b_new);
    char users[128];
    snprintf(users, sizeof(users), "%s/dovecot", tmp);
    char line[256];
    snprintf(line, sizeof(line), "bob:{PLAIN}secret:65534:65534::%s/mailhome::\n", tmp);
    put(users, "users", line);
    /* the mail user (nobody) must reach its files */
    if (shell("chmod 755 %s && chown -R 65534:65534 %s/mail %s/mailhome", tmp, tmp, tmp))
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        imap_port = free_port();
        snprintf(conf, sizeof(conf), "%s/dovecot/dovecot.conf", tmp);
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        fprintf(f,
                "base_dir = %s/dovecot/run\nstate_dir = %s/dovecot/state\n"
                "instance_name = sluice-test-%d\nprotocols = imap\nlisten = 127.0.0.1\n"
                "ssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\n"
                "log_path = %s/dovecot/dovecot.log\nmail_location = maildir:%s/mail\n"
                "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%%u "
                "%s/dovecot/users\n}\n"
                "userdb {\n  driver = passwd-file\n  args = username_format=%%u "
                "%s/dovecot/users\n}\n"
                "service imap-login {\n  inet_listener imap {\n    address = 127.0.0.1\n"
                "    port = %d\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\n",
                tmp, tmp, (int)getpid(), tmp, tmp, tmp, tmp, imap_port);
        fclose(f);
        snprintf(log, sizeof(log), "%s/dovecot/out.log", tmp);
        char *argv[] = {"/usr/sbin/dovecot", "-F", "-c", conf, NULL};
        if ((imap_pid = spawn(argv, log)) < 0)
            return -1;
        if (!wait_port(imap_pid, imap_port))
            return 0;
        stop_pid(&imap_pid);
    }
    return -1;
}

/* sluice-test-s3 serving tmp/s3 (bucket "exports") in eu-central-1. */
static int start_s3(void)
{
    char d[128];
    snprintf(d, sizeof(d), "%s/s3/exports/daily", tmp);
    if (sl_mkdirs(d))
        return -1;
    put(d, "stores 2024.csv", stores_csv);
    snprintf(s3_log, sizeof(s3_log), "%s/s3.log", tmp);
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t parent = getpid();
    s3_pid = fork();
    if (s3_pid < 0)
        return -1;
    if (s3_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(s3_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fds[1], STDOUT_FILENO);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        close(fds[0]);
        close(fds[1]);
        char root[128];
        snprintf(root, sizeof(root), "%s/s3", tmp);
        execl(S3_BIN, S3_BIN, root, "eu-central-1", S3_AKID, S3_KEY, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
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
    s3_port = atoi(line);
    return s3_port > 0 ? 0 : -1;
}

static int group_setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/sluice-remote-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    if (start_ftp()) {
        fprintf(stderr, "cannot start vsftpd (see %s/vsftpd.out)\n", tmp);
        return -1;
    }
    if (start_ssh()) {
        fprintf(stderr, "cannot start sshd (see %s/sshd.log)\n", tmp);
        return -1;
    }
    if (start_imap()) {
        fprintf(stderr, "cannot start dovecot (see %s/dovecot/)\n", tmp);
        return -1;
    }
    if (start_s3()) {
        fprintf(stderr, "cannot start %s (see %s)\n", S3_BIN, s3_log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    stop_pid(&ftp_pid);
    stop_pid(&ssh_pid);
    stop_pid(&imap_pid);
    stop_pid(&s3_pid);
    if (tmp[0] && !getenv("SLUICE_KEEP_TMP"))
        shell("rm -rf '%s'", tmp);
    return 0;
}

/* ---- the fetcher stage ------------------------------------------------------ */

/* sh_start() of the fetcher with SLUICE_ALLOW_HOSTS allow. */
static struct sh *fstart(void **state, const char *job_json, const char *allow)
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

/* A job whose source object's inner text is source_fmt. */
static char *job_of(const char *source_fmt, ...)
{
    char src[3072];
    va_list ap;
    va_start(ap, source_fmt);
    vsnprintf(src, sizeof(src), source_fmt, ap);
    va_end(ap);
    char *job = malloc(4096);
    assert_non_null(job);
    snprintf(job, 4096,
             "{\"name\":\"remotejob\",\"source\":{%s},"
             "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"
             "\"id\":{\"type\":\"text\"}}},\"mapping\":{\"id\":\"id\"}}",
             src);
    return job;
}

static void ticket(struct sh *h, const char *input, bool force)
{
    struct sl_msg *t = sh_msg(h, SL_MSG_TICKET);
    t->u.ticket.trigger = "test";
    t->u.ticket.force = force;
    t->u.ticket.input = input ? sl_arena_strdup(&t->arena, input) : NULL;
    sh_send(h, SL_TOPIC_TICKETS, t);
}

static struct sl_msg *next_event(struct sh *h, int ms)
{
    const char *topic = NULL;
    struct sl_msg *m = sh_next_within(h, &topic, ms);
    if (!m)
        fail_msg("no run event within %d ms", ms);
    if (strcmp(topic, SL_TOPIC_RUNS))
        fail_msg("expected a run event, got a %s on %s", sl_msg_kind_str(m->kind), topic);
    return m;
}

/* Expects FAILED within ms whose reason holds every part (NULL-ended). */
static const char *expect_failed(struct sh *h, int ms, ...)
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

/* Expects FETCHED and the file with exactly body; returns the file message. */
static struct sl_msg *expect_file(struct sh *h, int ms, const char *body)
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
    char *text = sh_read(f->u.file.blob);
    assert_non_null(text);
    if (strcmp(text, body))
        fail_msg("the file holds '%s', expected '%s'", text, body);
    free(text);
    return f;
}

static void expect_skipped(struct sh *h, int ms, const char *part)
{
    struct sl_msg *m = next_event(h, ms);
    if (m->u.ev.kind != SL_EV_SKIPPED)
        fail_msg("expected SKIPPED, got %s (%s)", sl_run_event_kind_str(m->u.ev.kind),
                 m->u.ev.reason ? m->u.ev.reason : "");
    assert_non_null(strstr(m->u.ev.reason, part));
    sh_expect_none(h, SL_MSG_FILE, 0);
}

/* ---- tests: FTP and FTPS -------------------------------------------------- */

static void test_ftp(void **state)
{
    char *job = job_of("\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\"", ftp_port);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    char u[512];

    /* anonymous, passive: the data connection passes the guard too */
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 10000, stores_csv);
    assert_string_equal(f->u.file.file_name, "stores.csv");
    assert_non_null(strstr(f->u.file.blob, "/out/source/stores.csv"));

    /* a missing file, a missing directory */
    snprintf(u, sizeof(u), "ftp://127.0.0.1:%d/data/nosuch.csv", ftp_port);
    ticket(h, u, false);
    expect_failed(h, 10000, u, "no such file on the server", NULL);
    snprintf(u, sizeof(u), "ftp://127.0.0.1:%d/nodir/x.csv", ftp_port);
    ticket(h, u, false);
    expect_failed(h, 10000, "no such directory, or access denied", NULL);

    /* a wrong password: the user and password hidden in the reason */
    snprintf(u, sizeof(u), "ftp://sluiceuser:wr0ngpw@127.0.0.1:%d/data/stores.csv", ftp_port);
    ticket(h, u, false);
    const char *reason = expect_failed(h, 15000, "login failed", "***@127.0.0.1", NULL);
    assert_null(strstr(reason, "wr0ngpw"));

    /* larger than max_bytes: at once (the server tells the size) */
    job = job_of("\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"max_bytes\":10", ftp_port);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "larger than source.max_bytes (10 bytes)", NULL);

    /* without the allow-list: the guard refuses loopback */
    job = job_of("\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\"", ftp_port);
    h = fstart(state, job, NULL);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", "SLUICE_ALLOW_HOSTS",
                  NULL);
}

static void test_ftps(void **state)
{
    /* explicit TLS, the server's certificate verified with the job's CA file */
    char *job = job_of("\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"ftp\":{\"tls\":true,"
                       "\"ca_file\":\"%s/tls.crt\"}",
                       ftp_port, tmp);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_file(h, 10000, stores_csv);

    /* the system's CAs do not know the self-signed certificate */
    job = job_of("\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"ftp\":{\"tls\":true}", ftp_port);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "the server's identity could not be verified", "certificate", NULL);
}

/* ---- tests: SFTP ---------------------------------------------------------- */

static void test_sftp(void **state)
{
    char u[512];
    char *job = job_of("\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                       "\"known_hosts\":\"%s/known_hosts\",\"private_key\":\"%s/id_user\"}",
                       ssh_port, tmp, tmp, tmp);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 10000, stores_csv);
    assert_string_equal(f->u.file.file_name, "stores.csv");

    /* a missing file */
    snprintf(u, sizeof(u), "sftp://root@127.0.0.1:%d%s/sftp/nosuch.csv", ssh_port, tmp);
    ticket(h, u, false);
    expect_failed(h, 10000, "no such file on the server", NULL);

    /* an encrypted key, its passphrase from the environment */
    setenv("SLUICE_TEST_KEYPASS", "key pass", 1);
    job = job_of("\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                 "\"known_hosts\":\"%s/known_hosts\",\"private_key\":\"%s/id_enc\","
                 "\"passphrase\":\"${env:SLUICE_TEST_KEYPASS}\"}",
                 ssh_port, tmp, tmp, tmp);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_file(h, 10000, stores_csv);
    setenv("SLUICE_TEST_KEYPASS", "wrong pass", 1);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "login failed", NULL);
    unsetenv("SLUICE_TEST_KEYPASS");

    /* the host's key pinned by its fingerprint, and a wrong pin */
    char fp[128] = "";
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ssh-keygen -l -E sha256 -f %s/host_key.pub | cut -d' ' -f2", tmp);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(fp, sizeof(fp), p));
    pclose(p);
    fp[strcspn(fp, "\n")] = '\0';
    assert_true(!strncmp(fp, "SHA256:", 7));
    job = job_of("\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                 "\"host_key_sha256\":\"%s\",\"private_key\":\"%s/id_user\"}",
                 ssh_port, tmp, fp, tmp);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_file(h, 10000, stores_csv);
    job = job_of("\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                 "\"host_key_sha256\":\"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                 "\"private_key\":\"%s/id_user\"}",
                 ssh_port, tmp, tmp);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "the server's identity could not be verified",
                  "source.sftp.host_key_sha256", NULL);
}

static void test_sftp_host_keys_and_passwords(void **state)
{
    /* an unknown host: known_hosts has the key for another port only */
    char *job = job_of("\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                       "\"known_hosts\":\"%s/other_hosts\",\"private_key\":\"%s/id_user\"}",
                       ssh_port, tmp, tmp, tmp);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "unknown host key", "ED25519", "SHA256:", "other_hosts", NULL);

    /* a changed host key */
    job = job_of("\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                 "\"known_hosts\":\"%s/changed_hosts\",\"private_key\":\"%s/id_user\"}",
                 ssh_port, tmp, tmp, tmp);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "host key mismatch", "changed_hosts", NULL);

    /* no known_hosts at all: refused before connecting */
    char home[128];
    snprintf(home, sizeof(home), "%s/emptyhome", tmp);
    assert_int_equal(sl_mkdirs(home), 0);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    job = job_of("\"url\":\"sftp://root@127.0.0.1:%d/x.csv\",\"sftp\":{"
                 "\"private_key\":\"%s/id_user\"}",
                 ssh_port, tmp);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "no known host key to check the server against",
                  "source.sftp.known_hosts", NULL);
    if (old_home) {
        setenv("HOME", old_home, 1);
        free(old_home);
    }

    /* a wrong password (root has none: every password is wrong) */
    setenv("SLUICE_TEST_SSHPW", "n0t-the-pw", 1);
    job = job_of("\"url\":\"sftp://127.0.0.1:%d%s/sftp/stores.csv\",\"auth\":{\"basic\":{"
                 "\"user\":\"root\",\"password\":\"${env:SLUICE_TEST_SSHPW}\"}},"
                 "\"sftp\":{\"known_hosts\":\"%s/known_hosts\"}",
                 ssh_port, tmp, tmp);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    const char *reason = expect_failed(h, 15000, "login failed", "password", NULL);
    assert_null(strstr(reason, "n0t-the-pw"));
    unsetenv("SLUICE_TEST_SSHPW");

    /* a key file that is not there */
    job = job_of("\"url\":\"sftp://root@127.0.0.1:%d/x.csv\",\"sftp\":{"
                 "\"known_hosts\":\"%s/known_hosts\",\"private_key\":\"%s/nokey\"}",
                 ssh_port, tmp, tmp);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "source.sftp.private_key: cannot read", "nokey", NULL);

    /* the guard */
    job = job_of("\"url\":\"sftp://root@127.0.0.1:%d/x.csv\",\"sftp\":{"
                 "\"known_hosts\":\"%s/known_hosts\"}",
                 ssh_port, tmp);
    h = fstart(state, job, NULL);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", NULL);
}

/* ---- tests: IMAP ------------------------------------------------------------ */

/* The UIDs of the messages in bob's INBOX that are not \Seen, as text. */
static void unseen(char *out, size_t n)
{
    char url[128];
    snprintf(url, sizeof(url), "imap://127.0.0.1:%d/INBOX", imap_port);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERNAME, "bob");
    curl_easy_setopt(c, CURLOPT_PASSWORD, "secret");
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "UID SEARCH UNSEEN");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    fclose(mem);
    snprintf(out, n, "%s", buf);
    out[strcspn(out, "\r\n")] = '\0';
    free(buf);
}

static void test_imap(void **state)
{
    char before[256], after[256];
    unseen(before, sizeof(before));
    setenv("SLUICE_TEST_IMAPPW", "secret", 1);
    /* the newest message (no attachment) is passed over; of the two
     * stores-*.csv, the newer one's base64 attachment comes */
    char *job = job_of("\"url\":\"imap://127.0.0.1:%d/INBOX\",\"attachment\":\"STORES-*.csv\","
                       "\"auth\":{\"basic\":{\"user\":\"bob\",\"password\":"
                       "\"${env:SLUICE_TEST_IMAPPW}\"}}",
                       imap_port);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 10000, new_csv);
    assert_string_equal(f->u.file.file_name, "stores-new.csv");
    assert_string_equal(f->u.file.content_type, "text/csv");
    /* reading the messages left them as unseen as they were */
    unseen(after, sizeof(after));
    assert_string_equal(before, after);
    assert_non_null(strstr(after, "SEARCH"));

    /* unchanged mailbox, last run succeeded: not modified, nothing read */
    struct sl_source_validators v;
    assert_int_equal(h->st->ops->get_validators(h->st, "remotejob", &v), 0);
    assert_true(!strncmp(v.etag, "imap:", 5));
    assert_int_equal(h->st->ops->set_last_sha(h->st, "remotejob", f->u.file.sha256), 0);
    ticket(h, NULL, false);
    expect_skipped(h, 10000, "not modified");

    /* quoted-printable, in a message that was seen */
    job = job_of("\"url\":\"imap://bob:${env:SLUICE_TEST_IMAPPW}@127.0.0.1:%d/INBOX\","
                 "\"attachment\":\"prices.csv\"",
                 imap_port);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    f = expect_file(h, 10000, prices_csv);
    assert_string_equal(f->u.file.file_name, "prices.csv");

    /* no matching message: the folder and the pattern named */
    job = job_of("\"url\":\"imap://bob:${env:SLUICE_TEST_IMAPPW}@127.0.0.1:%d/INBOX\","
                 "\"attachment\":\"*.xlsx\"",
                 imap_port);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "no message in folder 'INBOX' has an attachment matching '*.xlsx'",
                  "4 messages looked at", NULL);
    unsetenv("SLUICE_TEST_IMAPPW");
}

static void test_imap_failures(void **state)
{
    char u[512];
    /* a wrong password, hidden in the reason */
    char *job = job_of("\"url\":\"imap://bob:wr0ngpw@127.0.0.1:%d/INBOX\"", imap_port);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    const char *reason = expect_failed(h, 15000, "login failed", "***@127.0.0.1", NULL);
    assert_null(strstr(reason, "wr0ngpw"));

    /* a folder that is not there */
    snprintf(u, sizeof(u), "imap://bob:secret@127.0.0.1:%d/Archive", imap_port);
    ticket(h, u, false);
    expect_failed(h, 10000, "no folder 'Archive' on the server", NULL);

    /* a larger attachment than max_bytes */
    job = job_of("\"url\":\"imap://bob:secret@127.0.0.1:%d/INBOX\",\"attachment\":\"stores*\","
                 "\"max_bytes\":20",
                 imap_port);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "larger than source.max_bytes (20 bytes)", NULL);

    /* the guard */
    job = job_of("\"url\":\"imap://bob:secret@127.0.0.1:%d/INBOX\"", imap_port);
    h = fstart(state, job, NULL);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", NULL);
}

/* ---- tests: S3 ---------------------------------------------------------------- */

static bool s3_logged(const char *line)
{
    char *log = sh_read(s3_log);
    bool found = log && strstr(log, line);
    free(log);
    return found;
}

static void test_s3_verifier_selftest(void **state)
{
    /* the server's own SigV4 verifier agrees with AWS's documented example */
    assert_int_equal(shell("%s --selftest >/dev/null", S3_BIN), 0);
}

static void test_s3(void **state)
{
    setenv("SLUICE_TEST_AKID", S3_AKID, 1);
    setenv("SLUICE_TEST_SECRET", S3_KEY, 1);
    char *job = job_of("\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
                       "\"endpoint\":\"http://127.0.0.1:%d\",\"region\":\"eu-central-1\","
                       "\"access_key_id\":\"${env:SLUICE_TEST_AKID}\","
                       "\"secret_access_key\":\"${env:SLUICE_TEST_SECRET}\"}",
                       s3_port);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 10000, stores_csv);
    assert_string_equal(f->u.file.file_name, "stores 2024.csv");
    assert_string_equal(f->u.file.content_type, "text/csv");
    assert_true(s3_logged("GET /exports/daily/stores%202024.csv 200"));

    /* the ETag of the last successful run: a conditional GET, 304 */
    assert_int_equal(h->st->ops->set_last_sha(h->st, "remotejob", f->u.file.sha256), 0);
    ticket(h, NULL, false);
    expect_skipped(h, 10000, "not modified");
    assert_true(s3_logged("GET /exports/daily/stores%202024.csv 304"));

    /* no such key, no such bucket */
    ticket(h, "s3://exports/daily/nosuch.csv", false);
    expect_failed(h, 10000, "s3://exports/daily/nosuch.csv", "HTTP 404 NoSuchKey", NULL);
    ticket(h, "s3://nobucket/x.csv", false);
    expect_failed(h, 10000, "HTTP 404 NoSuchBucket", NULL);

    /* a wrong secret: the server's signature differs; no secret in the reason */
    setenv("SLUICE_TEST_SECRET", "wr0ng-s3cret", 1);
    ticket(h, NULL, false);
    const char *reason = expect_failed(h, 10000, "HTTP 403 SignatureDoesNotMatch",
                                       "check source.s3.secret_access_key", NULL);
    assert_null(strstr(reason, "wr0ng-s3cret"));
    /* a wrong access key id */
    setenv("SLUICE_TEST_SECRET", S3_KEY, 1);
    setenv("SLUICE_TEST_AKID", "AKIDNOBODY", 1);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "HTTP 403 InvalidAccessKeyId", "check source.s3.access_key_id", NULL);
    /* an unset one */
    unsetenv("SLUICE_TEST_AKID");
    ticket(h, NULL, false);
    expect_failed(h, 5000, "source.s3.access_key_id", "SLUICE_TEST_AKID is not set", NULL);
    unsetenv("SLUICE_TEST_SECRET");

    /* the default credentials (AWS_ACCESS_KEY_ID, ...), a wrong region */
    setenv("AWS_ACCESS_KEY_ID", S3_AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_KEY, 1);
    job = job_of("\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
                 "\"endpoint\":\"http://127.0.0.1:%d\",\"region\":\"us-west-2\"}",
                 s3_port);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "HTTP 400 AuthorizationHeaderMalformed", "us-west-2",
                  "check source.s3.region", NULL);
    setenv("AWS_REGION", "eu-central-1", 1);
    job = job_of("\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
                 "\"endpoint\":\"http://127.0.0.1:%d\"}",
                 s3_port);
    h = fstart(state, job, LOOPBACK);
    free(job);
    ticket(h, NULL, false);
    expect_file(h, 10000, stores_csv);
    unsetenv("AWS_ACCESS_KEY_ID");
    ticket(h, NULL, true);
    expect_failed(h, 5000, "AWS_ACCESS_KEY_ID is not set", NULL);
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_REGION");

    /* the guard (the endpoint is loopback) */
    setenv("AWS_ACCESS_KEY_ID", S3_AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_KEY, 1);
    job = job_of("\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
                 "\"endpoint\":\"http://127.0.0.1:%d\",\"region\":\"eu-central-1\"}",
                 s3_port);
    h = fstart(state, job, NULL);
    free(job);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", NULL);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
}

/* ---- tests: job options -------------------------------------------------------- */

static void expect_bad_job(const char *source, const char *part)
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

static void test_job_remote_options(void **state)
{
    char err[512] = "";
    char *job = job_of("\"url\":\"sftp://h/x.csv\",\"sftp\":{\"known_hosts\":\"/k\","
                       "\"host_key_sha256\":\"SHA256:RmcVPwmWn33icaZz1CUv/EfylidtsI8jso2zdvEkOPY\","
                       "\"private_key\":\"${env:KEY_FILE}\",\"passphrase\":\"${env:PASS}\"}");
    struct sl_job *j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    if (!j)
        fail_msg("%s", err);
    assert_string_equal(j->source.sftp.known_hosts, "/k");
    assert_string_equal(j->source.sftp.host_key_sha256,
                        "RmcVPwmWn33icaZz1CUv/EfylidtsI8jso2zdvEkOPY");
    assert_string_equal(j->source.sftp.private_key, "${env:KEY_FILE}");
    assert_string_equal(j->source.sftp.passphrase, "${env:PASS}");
    sl_job_destroy(j);

    job = job_of("\"url\":\"s3://b/k.csv\",\"s3\":{\"endpoint\":\"https://minio.internal:9000\","
                 "\"region\":\"eu-west-1\",\"path_style\":false}");
    j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    if (!j)
        fail_msg("%s", err);
    assert_string_equal(j->source.s3.endpoint, "https://minio.internal:9000");
    assert_string_equal(j->source.s3.region, "eu-west-1");
    assert_int_equal(j->source.s3.path_style, 0);
    assert_null(j->source.s3.access_key_id);
    sl_job_destroy(j);

    job = job_of("\"url\":\"imaps://mail.example.com/Exports\",\"attachment\":\"*.csv\","
                 "\"imap\":{\"max_messages\":20}");
    j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    if (!j)
        fail_msg("%s", err);
    assert_int_equal(j->source.max_messages, 20);
    assert_false(j->source.tls);
    sl_job_destroy(j);

    job = job_of("\"url\":\"ftp://h/x.csv\",\"ftp\":{\"tls\":true,\"ca_file\":\"/ca.pem\"}");
    j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    if (!j)
        fail_msg("%s", err);
    assert_true(j->source.tls);
    assert_string_equal(j->source.ca_file, "/ca.pem");
    assert_int_equal(j->source.max_messages, 100);
    assert_int_equal(j->source.s3.path_style, -1);
    sl_job_destroy(j);

    expect_bad_job("\"url\":\"https://h/x\",\"sftp\":{\"known_hosts\":\"/k\"}",
                   "source.sftp: only used with sftp:// sources");
    expect_bad_job("\"url\":\"sftp://h/x\",\"sftp\":{\"known_host\":\"/k\"}",
                   "source.sftp: unknown field 'known_host' (did you mean 'known_hosts'?)");
    expect_bad_job("\"url\":\"sftp://h/x\",\"sftp\":{\"host_key_sha256\":\"abc\"}",
                   "source.sftp.host_key_sha256: 'abc' is not a SHA-256 fingerprint");
    expect_bad_job("\"url\":\"sftp://h/x\",\"sftp\":{\"passphrase\":\"p\"}",
                   "source.sftp.passphrase: only used with source.sftp.private_key");
    expect_bad_job("\"url\":\"sftp://h/x\",\"sftp\":{\"private_key\":\"${env:}\"}",
                   "source.sftp.private_key: invalid environment variable name");
    expect_bad_job("\"url\":\"ftp://h/x\",\"s3\":{}", "source.s3: only used with s3:// sources");
    expect_bad_job("\"url\":\"s3://bucket\"", "source.url: 's3://bucket' names no object");
    expect_bad_job("\"url\":\"s3://b/k\",\"s3\":{\"access_key_id\":\"A\"}",
                   "source.s3.secret_access_key: required with source.s3.access_key_id");
    expect_bad_job("\"url\":\"s3://b/k\",\"s3\":{\"region\":\"EU West\"}",
                   "source.s3.region: 'EU West' is not a region");
    expect_bad_job("\"url\":\"s3://b/k\",\"s3\":{\"endpoint\":\"minio:9000\"}",
                   "source.s3.endpoint: 'minio:9000' is not an http:// or https:// URL");
    expect_bad_job("\"url\":\"s3://b/k\",\"auth\":{\"basic\":{\"user\":\"u\",\"password\":\"p\"}}",
                   "source.auth: not used with s3:// sources");
    expect_bad_job("\"url\":\"sftp://h/x\",\"auth\":{\"bearer\":\"t\"}",
                   "source.auth.bearer: only used with http:// and https:// sources");
    expect_bad_job("\"url\":\"imaps://h/INBOX\",\"imap\":{\"tls\":true}",
                   "source.imap.tls: imaps:// is TLS already");
    expect_bad_job("\"url\":\"imap://h/INBOX\",\"imap\":{\"max_messages\":0}",
                   "source.imap.max_messages: must be an integer from 1 to 100000");
    expect_bad_job("\"url\":\"sftp://h/x\",\"ftp\":{\"tls\":true}",
                   "source.ftp: only used with ftp:// sources");
    expect_bad_job("\"url\":\"s3://b/k\",\"imap\":{}",
                   "source.imap: only used with imap:// and imaps:// sources");
}

/* ---- tests: `sluice run` ---------------------------------------------------------- */

static int sluice_run(const char *env, const char *dir, char *out, size_t n)
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

static void write_job(const char *dir, const char *source)
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

/* Runs the job of source in a new directory; expects exit 0, two records
 * holding want, and the source file kept under out/source/name. */
static void run_ok(const char *sub, const char *source, const char *env, const char *want,
                   const char *name)
{
    char dir[128], out[8192], path[256];
    snprintf(dir, sizeof(dir), "%s/e2e-%s", tmp, sub);
    assert_int_equal(sl_mkdirs(dir), 0);
    write_job(dir, source);
    int rc = sluice_run(env, dir, out, sizeof(out));
    if (rc != 0)
        fail_msg("sluice run (%s) exited %d: %s", sub, rc, out);
    snprintf(path, sizeof(path), "%s/out/things.ndjson", dir);
    char *text = sh_read(path);
    assert_non_null(text);
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
    if (!strstr(text, want))
        fail_msg("%s: %s does not hold %s", sub, text, want);
    free(text);
    snprintf(path, sizeof(path), "%s/out/source/%s", dir, name);
    assert_true(sh_exists(path));
    snprintf(path, sizeof(path), "%s/out/run.json", dir);
    text = sh_read(path);
    assert_non_null(strstr(text, "\"succeeded\""));
    free(text);
}

static void test_sluice_run_end_to_end(void **state)
{
    const char *allow = "SLUICE_ALLOW_HOSTS=127.0.0.1/32";
    char src[1024], env[512], dir[128], out[8192];

    snprintf(src, sizeof(src), "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\"", ftp_port);
    run_ok("ftp", src, allow, "\"name\":\"Hamburg\"", "stores.csv");

    snprintf(src, sizeof(src),
             "\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
             "\"known_hosts\":\"%s/known_hosts\",\"private_key\":\"%s/id_user\"}",
             ssh_port, tmp, tmp, tmp);
    run_ok("sftp", src, allow, "\"price\":\"2.25\"", "stores.csv");

    snprintf(src, sizeof(src),
             "\"url\":\"imap://127.0.0.1:%d/INBOX\",\"attachment\":\"stores-*.csv\","
             "\"auth\":{\"basic\":{\"user\":\"bob\",\"password\":\"${env:IMAP_PW}\"}}",
             imap_port);
    snprintf(env, sizeof(env), "%s IMAP_PW=secret", allow);
    run_ok("imap", src, env, "\"name\":\"K\xc3\xb6ln\"", "stores-new.csv");

    snprintf(src, sizeof(src),
             "\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
             "\"endpoint\":\"http://127.0.0.1:%d\",\"region\":\"eu-central-1\"}",
             s3_port);
    snprintf(env, sizeof(env), "%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY='%s'", allow, S3_AKID,
             S3_KEY);
    run_ok("s3", src, env, "\"name\":\"Berlin\"", "stores 2024.csv");

    /* bad S3 credentials: the run fails (exit 1) and says why */
    snprintf(dir, sizeof(dir), "%s/e2e-s3", tmp);
    snprintf(env, sizeof(env), "%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=wr0ng", allow,
             S3_AKID);
    int rc = sluice_run(env, dir, out, sizeof(out));
    if (rc != 1 || !strstr(out, "SignatureDoesNotMatch") || strstr(out, "wr0ng"))
        fail_msg("bad S3 credentials: exit %d: %s", rc, out);

    /* no matching mail: exit 1, the folder and pattern named */
    snprintf(dir, sizeof(dir), "%s/e2e-imap", tmp);
    snprintf(src, sizeof(src),
             "\"url\":\"imap://bob:${env:IMAP_PW}@127.0.0.1:%d/INBOX\",\"attachment\":\"*.xls\"",
             imap_port);
    write_job(dir, src);
    snprintf(env, sizeof(env), "%s IMAP_PW=secret", allow);
    rc = sluice_run(env, dir, out, sizeof(out));
    if (rc != 1 || !strstr(out, "no message in folder 'INBOX' has an attachment matching '*.xls'"))
        fail_msg("no matching mail: exit %d: %s", rc, out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SH_TEST(test_ftp),
        SH_TEST(test_ftps),
        SH_TEST(test_sftp),
        SH_TEST(test_sftp_host_keys_and_passwords),
        SH_TEST(test_imap),
        SH_TEST(test_imap_failures),
        cmocka_unit_test(test_s3_verifier_selftest),
        SH_TEST(test_s3),
        cmocka_unit_test(test_job_remote_options),
        cmocka_unit_test(test_sluice_run_end_to_end),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
