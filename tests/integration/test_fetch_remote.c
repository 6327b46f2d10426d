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
 *     a second instance on the same Maildir with ssl = required (IMAPS and
 *     STARTTLS) and a certificate of the test CA (fetch_servers.h);
 *   - sluice-test-s3 (tool_s3.c): an S3-compatible server that verifies every
 *     request's SigV4 signature itself (its verifier first checked against
 *     AWS's documented example), plain and over HTTPS (test CA).
 *
 * The fetcher stage runs alone (stage_harness.h, the allow-list holding
 * loopback), and `sluice run` runs whole jobs of each kind (embedded mode).
 * Every failure must end the run with a reason that says what went wrong:
 * a wrong password, an unknown or changed host key, a missing file, no
 * matching mail, bad S3 credentials, the SSRF guard without the allow-list.
 */
#include "../stage/stage_harness.h"

#include <errno.h>
#include <sys/time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "services.h"
#include "sluice/source.h"

#define FETCH_JOB_NAME "remotejob"
#include "fetch_servers.h"

#define S3_BIN  SLUICE_BUILD_DIR "/tests/sluice-test-s3"
#define S3_AKID "AKIDSLUICETEST"
#define S3_KEY  "s3cr3t/KEY+sluice"

static pid_t ftp_pid, ssh_pid, imap_pid, imaps_pid, s3_pid, s3tls_pid;
static int ftp_port, ssh_port, imap_port, s3_port;
static int s3tls_port; /* sluice-test-s3 over HTTPS (tmp/s3.crt, of the test CA) */
/* the second Dovecot, ssl = required with a certificate of the test CA:
 * STARTTLS on imaptls_port, IMAPS on imaps_port */
static int imaptls_port, imaps_port;
static char s3_log[128];

static const char stores_csv[] = "id,name,price\n1,Berlin,1.50\n2,Hamburg,2.25\n";
/* the attachments of the mails */
static const char old_csv[] = "id,name,price\n9,Alt,9.00\n";
static const char new_csv[] = "id,name,price\n1,Z\xc3\xbcrich,1.50\n2,K\xc3\xb6ln,2.25\n";
/* quoted-printable text: its hard line breaks are CRLF (RFC 2045) */
static const char prices_csv[] = "id,name,price\r\n7,a=b \xc3\xa4 long line that the encoder "
                                 "folds with a soft line break somewhere in the middle,7.00\r\n";

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

/* The messages of bob's Maildir tmp/mail. 0 or -1. */
static int write_mailbox(void)
{
    char md[128];
    snprintf(md, sizeof(md), "%s/mail/cur", tmp);
    if (shell("mkdir -p %s/mail/cur %s/mail/new %s/mail/tmp %s/mailhome %s/dovecot", tmp, tmp, tmp,
              tmp, tmp))
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
    return shell("chmod 755 %s && chown -R 65534:65534 %s/mail %s/mailhome", tmp, tmp, tmp) ? -1
                                                                                            : 0;
}

/* Dovecot instance name (its own directory tmp/dovecot/name): IMAP for bob
 * (password "secret", uid nobody) on the Maildir tmp/mail, on *port; with
 * tls, ssl = required with tmp/imap.crt (the test CA's, for 127.0.0.1),
 * STARTTLS on *port and IMAPS on *tls_port. */
static int start_dovecot(const char *name, bool tls, pid_t *pid, int *port, int *tls_port)
{
    char conf[256], log[256], dir[192];
    snprintf(dir, sizeof(dir), "%s/dovecot/%s", tmp, name);
    if (shell("mkdir -p %s/run %s/state", dir, dir))
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        *port = free_port();
        if (tls)
            *tls_port = free_port();
        snprintf(conf, sizeof(conf), "%s/dovecot.conf", dir);
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        fprintf(f,
                "base_dir = %s/run\nstate_dir = %s/state\n"
                "instance_name = sluice-test-%s-%d\nprotocols = imap\nlisten = 127.0.0.1\n"
                "auth_mechanisms = plain login\n"
                "log_path = %s/dovecot.log\nmail_location = maildir:%s/mail\n"
                "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%%u "
                "%s/dovecot/users\n}\n"
                "userdb {\n  driver = passwd-file\n  args = username_format=%%u "
                "%s/dovecot/users\n}\n"
                "service imap-login {\n  inet_listener imap {\n    address = 127.0.0.1\n"
                "    port = %d\n  }\n  inet_listener imaps {\n    address = 127.0.0.1\n"
                "    port = %d\n  }\n}\n",
                dir, dir, name, (int)getpid(), dir, tmp, tmp, tmp, *port, tls ? *tls_port : 0);
        if (tls)
            fprintf(f,
                    "ssl = required\ndisable_plaintext_auth = yes\nssl_cert = <%s/imap.crt\n"
                    "ssl_key = <%s/imap.key\n",
                    tmp, tmp);
        else
            fprintf(f, "ssl = no\ndisable_plaintext_auth = no\n");
        fclose(f);
        snprintf(log, sizeof(log), "%s/out.log", dir);
        char *argv[] = {"/usr/sbin/dovecot", "-F", "-c", conf, NULL};
        if ((*pid = spawn(argv, log)) < 0)
            return -1;
        if (!wait_port(*pid, *port) && (!tls || !wait_port(*pid, *tls_port)))
            return 0;
        stop_pid(pid);
    }
    return -1;
}

static int start_imap(void)
{
    return write_mailbox() || fs_make_cert("imap", "IP:127.0.0.1") ||
                   start_dovecot("plain", false, &imap_pid, &imap_port, NULL) ||
                   start_dovecot("tls", true, &imaps_pid, &imaptls_port, &imaps_port)
               ? -1
               : 0;
}

/* sluice-test-s3 serving tmp/s3 (bucket "exports") in eu-central-1. */
static int start_s3(void)
{
    char d[128], root[128];
    snprintf(d, sizeof(d), "%s/s3/exports/daily", tmp);
    if (sl_mkdirs(d))
        return -1;
    put(d, "stores 2024.csv", stores_csv);
    snprintf(s3_log, sizeof(s3_log), "%s/s3.log", tmp);
    snprintf(root, sizeof(root), "%s/s3", tmp);
    char *argv[] = {S3_BIN, root, "eu-central-1", S3_AKID, S3_KEY, NULL};
    s3_pid = spawn_port(argv, s3_log, &s3_port);
    if (s3_pid < 0 || fs_make_cert("s3", "IP:127.0.0.1"))
        return -1;
    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/s3.crt", tmp);
    snprintf(key, sizeof(key), "%s/s3.key", tmp);
    char *targv[] = {S3_BIN, root, "eu-central-1", S3_AKID, S3_KEY, cert, key, NULL};
    s3tls_pid = spawn_port(targv, s3_log, &s3tls_port);
    return s3tls_pid > 0 ? 0 : -1;
}

static int group_setup(void **state)
{
    return fs_mktmp("/tmp/sluice-remote-XXXXXX") || fs_start(fs_make_ca, "the test CA", "ca.out") ||
                   fs_start(start_ftp, "vsftpd", "vsftpd.out") ||
                   fs_start(start_ssh, "sshd", "sshd.log") ||
                   fs_start(start_imap, "dovecot", "dovecot/") ||
                   fs_start(start_s3, S3_BIN, "s3.log")
               ? -1
               : 0;
}

static int group_teardown(void **state)
{
    stop_pid(&ftp_pid);
    stop_pid(&ssh_pid);
    stop_pid(&imap_pid);
    stop_pid(&imaps_pid);
    stop_pid(&s3_pid);
    stop_pid(&s3tls_pid);
    fs_rmtmp();
    return 0;
}

/* ---- tests: FTP and FTPS -------------------------------------------------- */

static void test_ftp(void **state)
{
    struct sh *h =
        fjob(state, LOOPBACK, "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\"", ftp_port);
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
    h = fjob(state, LOOPBACK, "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"max_bytes\":10",
             ftp_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "larger than source.max_bytes (10 bytes)", NULL);

    /* without the allow-list: the guard refuses loopback */
    h = fjob(state, NULL, "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\"", ftp_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", "SLUICE_ALLOW_HOSTS",
                  NULL);
}

static void test_ftps(void **state)
{
    /* explicit TLS, the server's certificate verified with the job's CA
     * file: source.tls.ca_file, and its older name source.ftp.ca_file */
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"ftp\":{\"tls\":true},"
                        "\"tls\":{\"ca_file\":\"%s/tls.crt\"}",
                        ftp_port, tmp);
    ticket(h, NULL, false);
    expect_file(h, 10000, stores_csv);
    h = fjob(state, LOOPBACK,
             "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"ftp\":{\"tls\":true,"
             "\"ca_file\":\"%s/tls.crt\"}",
             ftp_port, tmp);
    ticket(h, NULL, false);
    expect_file(h, 10000, stores_csv);

    /* a CA that did not sign the server's certificate (the test CA) */
    h = fjob(state, LOOPBACK,
             "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"ftp\":{\"tls\":true,"
             "\"ca_file\":\"%s/ca.crt\"}",
             ftp_port, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "the server's TLS certificate was not accepted", "certificate", NULL);

    /* the system's CAs do not know the self-signed certificate */
    h = fjob(state, LOOPBACK,
             "\"url\":\"ftp://127.0.0.1:%d/data/stores.csv\",\"ftp\":{\"tls\":true}", ftp_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "the server's TLS certificate was not accepted", "certificate",
                  "source.tls.ca_file", NULL);
}

/* ---- tests: SFTP ---------------------------------------------------------- */

static void test_sftp(void **state)
{
    char u[512];
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                        "\"known_hosts\":\"%s/known_hosts\",\"private_key\":\"%s/id_user\"}",
                        ssh_port, tmp, tmp, tmp);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 10000, stores_csv);
    assert_string_equal(f->u.file.file_name, "stores.csv");

    /* a missing file */
    snprintf(u, sizeof(u), "sftp://root@127.0.0.1:%d%s/sftp/nosuch.csv", ssh_port, tmp);
    ticket(h, u, false);
    expect_failed(h, 10000, "no such file on the server", NULL);

    /* an encrypted key, its passphrase from the environment */
    setenv("SLUICE_TEST_KEYPASS", "key pass", 1);
    h = fjob(state, LOOPBACK,
             "\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
             "\"known_hosts\":\"%s/known_hosts\",\"private_key\":\"%s/id_enc\","
             "\"passphrase\":\"${env:SLUICE_TEST_KEYPASS}\"}",
             ssh_port, tmp, tmp, tmp);
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
    h = fjob(state, LOOPBACK,
             "\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
             "\"host_key_sha256\":\"%s\",\"private_key\":\"%s/id_user\"}",
             ssh_port, tmp, fp, tmp);
    ticket(h, NULL, false);
    expect_file(h, 10000, stores_csv);
    h = fjob(state, LOOPBACK,
             "\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
             "\"host_key_sha256\":\"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
             "\"private_key\":\"%s/id_user\"}",
             ssh_port, tmp, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "the server's identity could not be verified",
                  "source.sftp.host_key_sha256", NULL);
}

static void test_sftp_host_keys_and_passwords(void **state)
{
    /* an unknown host: known_hosts has the key for another port only */
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
                        "\"known_hosts\":\"%s/other_hosts\",\"private_key\":\"%s/id_user\"}",
                        ssh_port, tmp, tmp, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "unknown host key", "ED25519", "SHA256:", "other_hosts", NULL);

    /* a changed host key */
    h = fjob(state, LOOPBACK,
             "\"url\":\"sftp://root@127.0.0.1:%d%s/sftp/stores.csv\",\"sftp\":{"
             "\"known_hosts\":\"%s/changed_hosts\",\"private_key\":\"%s/id_user\"}",
             ssh_port, tmp, tmp, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "host key mismatch", "changed_hosts", NULL);

    /* no known_hosts at all: refused before connecting */
    char home[128];
    snprintf(home, sizeof(home), "%s/emptyhome", tmp);
    assert_int_equal(sl_mkdirs(home), 0);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    h = fjob(state, LOOPBACK,
             "\"url\":\"sftp://root@127.0.0.1:%d/x.csv\",\"sftp\":{"
             "\"private_key\":\"%s/id_user\"}",
             ssh_port, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "no known host key to check the server against",
                  "source.sftp.known_hosts", NULL);
    if (old_home) {
        setenv("HOME", old_home, 1);
        free(old_home);
    }

    /* a wrong password (root has none: every password is wrong) */
    setenv("SLUICE_TEST_SSHPW", "n0t-the-pw", 1);
    h = fjob(state, LOOPBACK,
             "\"url\":\"sftp://127.0.0.1:%d%s/sftp/stores.csv\",\"auth\":{\"basic\":{"
             "\"user\":\"root\",\"password\":\"${env:SLUICE_TEST_SSHPW}\"}},"
             "\"sftp\":{\"known_hosts\":\"%s/known_hosts\"}",
             ssh_port, tmp, tmp);
    ticket(h, NULL, false);
    const char *reason = expect_failed(h, 15000, "login failed", "password", NULL);
    assert_null(strstr(reason, "n0t-the-pw"));
    unsetenv("SLUICE_TEST_SSHPW");

    /* a key file that is not there */
    h = fjob(state, LOOPBACK,
             "\"url\":\"sftp://root@127.0.0.1:%d/x.csv\",\"sftp\":{"
             "\"known_hosts\":\"%s/known_hosts\",\"private_key\":\"%s/nokey\"}",
             ssh_port, tmp, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "source.sftp.private_key: cannot read", "nokey", NULL);

    /* the guard */
    h = fjob(state, NULL,
             "\"url\":\"sftp://root@127.0.0.1:%d/x.csv\",\"sftp\":{"
             "\"known_hosts\":\"%s/known_hosts\"}",
             ssh_port, tmp);
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
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"imap://127.0.0.1:%d/INBOX\",\"attachment\":\"STORES-*.csv\","
                        "\"auth\":{\"basic\":{\"user\":\"bob\",\"password\":"
                        "\"${env:SLUICE_TEST_IMAPPW}\"}}",
                        imap_port);
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
    h = fjob(state, LOOPBACK,
             "\"url\":\"imap://bob:${env:SLUICE_TEST_IMAPPW}@127.0.0.1:%d/INBOX\","
             "\"attachment\":\"prices.csv\"",
             imap_port);
    ticket(h, NULL, false);
    f = expect_file(h, 10000, prices_csv);
    assert_string_equal(f->u.file.file_name, "prices.csv");

    /* no matching message: the folder and the pattern named */
    h = fjob(state, LOOPBACK,
             "\"url\":\"imap://bob:${env:SLUICE_TEST_IMAPPW}@127.0.0.1:%d/INBOX\","
             "\"attachment\":\"*.xlsx\"",
             imap_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "no message in folder 'INBOX' has an attachment matching '*.xlsx'",
                  "4 messages looked at", NULL);
    unsetenv("SLUICE_TEST_IMAPPW");
}

static void test_imap_failures(void **state)
{
    char u[512];
    /* a wrong password, hidden in the reason */
    struct sh *h =
        fjob(state, LOOPBACK, "\"url\":\"imap://bob:wr0ngpw@127.0.0.1:%d/INBOX\"", imap_port);
    ticket(h, NULL, false);
    const char *reason = expect_failed(h, 15000, "login failed", "***@127.0.0.1", NULL);
    assert_null(strstr(reason, "wr0ngpw"));

    /* a folder that is not there */
    snprintf(u, sizeof(u), "imap://bob:secret@127.0.0.1:%d/Archive", imap_port);
    ticket(h, u, false);
    expect_failed(h, 10000, "no folder 'Archive' on the server", NULL);

    /* a larger attachment than max_bytes */
    h = fjob(state, LOOPBACK,
             "\"url\":\"imap://bob:secret@127.0.0.1:%d/INBOX\",\"attachment\":\"stores*\","
             "\"max_bytes\":20",
             imap_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "larger than source.max_bytes (20 bytes)", NULL);

    /* the guard */
    h = fjob(state, NULL, "\"url\":\"imap://bob:secret@127.0.0.1:%d/INBOX\"", imap_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", NULL);
}

/* IMAPS and STARTTLS against the Dovecot that requires TLS, its
 * certificate of the test CA. */
static void test_imap_tls(void **state)
{
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"imaps://bob:secret@127.0.0.1:%d/INBOX\","
                        "\"attachment\":\"stores-*.csv\",\"tls\":{\"ca_file\":\"%s/ca.crt\"}",
                        imaps_port, tmp);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 10000, new_csv);
    assert_string_equal(f->u.file.file_name, "stores-new.csv");

    /* STARTTLS on imap:// (source.imap.tls), the CA by its older name */
    h = fjob(state, LOOPBACK,
             "\"url\":\"imap://bob:secret@127.0.0.1:%d/INBOX\",\"attachment\":\"prices.csv\","
             "\"imap\":{\"tls\":true,\"ca_file\":\"%s/ca.crt\"}",
             imaptls_port, tmp);
    ticket(h, NULL, false);
    expect_file(h, 10000, prices_csv);

    /* without the CA: refused, over IMAPS and over STARTTLS */
    h = fjob(state, LOOPBACK, "\"url\":\"imaps://bob:secret@127.0.0.1:%d/INBOX\"", imaps_port);
    ticket(h, NULL, false);
    const char *reason = expect_failed(h, 10000, "the server's TLS certificate was not accepted",
                                       "source.tls.ca_file", NULL);
    assert_null(strstr(reason, "secret"));
    h = fjob(state, LOOPBACK,
             "\"url\":\"imap://bob:secret@127.0.0.1:%d/INBOX\",\"imap\":{\"tls\":true}",
             imaptls_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "the server's TLS certificate was not accepted", NULL);
    /* (a plain imap:// login to this server is not refused: Dovecot counts a
     * connection from its own address, loopback, as secured whatever ssl
     * says, so that case cannot be shown here) */
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
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
                        "\"endpoint\":\"http://127.0.0.1:%d\",\"region\":\"eu-central-1\","
                        "\"access_key_id\":\"${env:SLUICE_TEST_AKID}\","
                        "\"secret_access_key\":\"${env:SLUICE_TEST_SECRET}\"}",
                        s3_port);
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
    h = fjob(state, LOOPBACK,
             "\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
             "\"endpoint\":\"http://127.0.0.1:%d\",\"region\":\"us-west-2\"}",
             s3_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "HTTP 400 AuthorizationHeaderMalformed", "us-west-2",
                  "check source.s3.region", NULL);
    setenv("AWS_REGION", "eu-central-1", 1);
    h = fjob(state, LOOPBACK,
             "\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
             "\"endpoint\":\"http://127.0.0.1:%d\"}",
             s3_port);
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
    h = fjob(state, NULL,
             "\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
             "\"endpoint\":\"http://127.0.0.1:%d\",\"region\":\"eu-central-1\"}",
             s3_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", NULL);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
}

/* S3 at an https:// endpoint whose certificate the test CA signed. */
static void test_s3_https(void **state)
{
    setenv("AWS_ACCESS_KEY_ID", S3_AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_KEY, 1);
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
                        "\"endpoint\":\"https://127.0.0.1:%d\",\"region\":\"eu-central-1\"},"
                        "\"tls\":{\"ca_file\":\"%s/ca.crt\"}",
                        s3tls_port, tmp);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 10000, stores_csv);
    assert_string_equal(f->u.file.file_name, "stores 2024.csv");
    /* the ETag over TLS too */
    assert_int_equal(h->st->ops->set_last_sha(h->st, "remotejob", f->u.file.sha256), 0);
    ticket(h, NULL, false);
    expect_skipped(h, 10000, "S3 304 Not Modified");

    /* without the CA */
    h = fjob(state, LOOPBACK,
             "\"url\":\"s3://exports/daily/stores 2024.csv\",\"s3\":{"
             "\"endpoint\":\"https://127.0.0.1:%d\",\"region\":\"eu-central-1\"}",
             s3tls_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "the server's TLS certificate was not accepted", "source.tls.ca_file",
                  NULL);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
}

/* ---- tests: job options -------------------------------------------------------- */

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

    /* source.tls.ca_file, for every TLS source; the older names */
    static const char *const tls_urls[] = {"https://h/x.csv", "http://h/x.csv", "ftp://h/x.csv",
                                           "imaps://h/INBOX", "imap://h/INBOX", "s3://b/k.csv"};
    for (size_t i = 0; i < sizeof(tls_urls) / sizeof(*tls_urls); i++) {
        job = job_of("\"url\":\"%s\",\"tls\":{\"ca_file\":\"${env:CA_FILE}\"}", tls_urls[i]);
        j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
        free(job);
        if (!j)
            fail_msg("%s: %s", tls_urls[i], err);
        assert_string_equal(j->source.ca_file, "${env:CA_FILE}");
        assert_string_equal(j->source.ca_file_field, "source.tls.ca_file");
        sl_job_destroy(j);
    }
    job = job_of("\"url\":\"imap://h/INBOX\",\"imap\":{\"ca_file\":\"/ca.pem\"}");
    j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    if (!j)
        fail_msg("%s", err);
    assert_string_equal(j->source.ca_file, "/ca.pem");
    assert_string_equal(j->source.ca_file_field, "source.imap.ca_file");
    sl_job_destroy(j);
    expect_bad_job("\"url\":\"ftp://h/x\",\"tls\":{\"ca_file\":\"/a.pem\"},"
                   "\"ftp\":{\"ca_file\":\"/b.pem\"}",
                   "source.ftp.ca_file: give the CA file once, as source.tls.ca_file");
    expect_bad_job("\"url\":\"imaps://h/INBOX\",\"tls\":{\"ca_file\":\"/a.pem\"},"
                   "\"imap\":{\"ca_file\":\"/b.pem\"}",
                   "source.imap.ca_file: give the CA file once");
    expect_bad_job("\"url\":\"sftp://h/x\",\"tls\":{\"ca_file\":\"/a.pem\"}",
                   "source.tls: not used with sftp:// sources");
    expect_bad_job("\"url\":\"https://h/x\",\"tls\":{\"cafile\":\"/a.pem\"}",
                   "source.tls: unknown field 'cafile'");
    expect_bad_job("\"url\":\"https://h/x\",\"tls\":{\"ca_file\":7}", "source.tls.ca_file");
    expect_bad_job("\"url\":\"https://h/x\",\"tls\":{\"ca_file\":\"${env:}\"}",
                   "source.tls.ca_file: invalid environment variable name");
    expect_bad_job("\"url\":\"https://h/x\",\"tls\":true", "source.tls");

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
        SH_TEST(test_imap_tls),
        cmocka_unit_test(test_s3_verifier_selftest),
        SH_TEST(test_s3),
        SH_TEST(test_s3_https),
        cmocka_unit_test(test_job_remote_options),
        cmocka_unit_test(test_sluice_run_end_to_end),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
