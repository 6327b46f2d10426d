/*
 * E-mail (issue 5): the run report sent over SMTP (docs/email.md).
 *
 * sl_smtp_config_from_env() reads the SLUICE_SMTP_* settings once, when a
 * program starts, and refuses a malformed one naming it; without
 * SLUICE_SMTP_URL e-mail is off. sl_mail_send() builds one MIME message with
 * GMime 3 (text and HTML bodies, one attachment streamed from its file, the
 * whole message serialized into an unlinked temporary file, never held in
 * memory) and hands it to libcurl's SMTP: STARTTLS or implicit TLS, AUTH,
 * several recipients of whom some may be refused, and retries with backoff
 * on transient failures (no connection, timeout, 4xx replies) but not on
 * permanent ones (5xx replies, a failed login, a certificate not accepted).
 * The password is never logged and never appears in a message: messages
 * name the server by cfg->url, which holds no userinfo.
 */
#ifndef SLUICE_MAIL_H
#define SLUICE_MAIL_H

#include <stdbool.h>
#include <stddef.h>

/* SLUICE_SMTP_STARTTLS: what an smtp:// connection does about TLS
 * (smtps:// is TLS from the first byte and ignores it). */
enum sl_smtp_tls {
    SL_SMTP_TLS_REQUIRED = 0,  /* STARTTLS or no mail (the default) */
    SL_SMTP_TLS_OPPORTUNISTIC, /* STARTTLS when offered, else clear text; refused with a password */
    SL_SMTP_TLS_OFF,           /* never STARTTLS: a local relay without TLS */
};

/* The SMTP settings; every string is owned by the struct and freed (the
 * password wiped first) by sl_smtp_config_cleanup(). Read-only once loaded:
 * any number of threads may send with the same config. */
struct sl_smtp_config {
    char *url; /* "smtp://host:port" or "smtps://host:port", no userinfo; NULL: e-mail off */
    bool implicit_tls;         /* smtps:// */
    char *user;                /* NULL: no AUTH */
    char *password;            /* with user; never logged */
    char *from;                /* SLUICE_SMTP_FROM, default "sluice@<hostname>" */
    enum sl_smtp_tls starttls; /* SLUICE_SMTP_STARTTLS */
    char *ca_file;             /* SLUICE_SMTP_CA_FILE; NULL: the system's CAs */
    long timeout_s;            /* SLUICE_SMTP_TIMEOUT: longest silence of the server */
    int retries;               /* SLUICE_SMTP_RETRIES: retries after the first attempt */
    long retry_delay_ms;       /* SLUICE_SMTP_RETRY_DELAY_MS: first backoff, doubled */
};

#define SL_SMTP_DEFAULT_TIMEOUT_S      60
#define SL_SMTP_DEFAULT_RETRIES        3
#define SL_SMTP_DEFAULT_RETRY_DELAY_MS 1000

/* Looks a setting up by its environment name ("SLUICE_SMTP_URL"): its value,
 * or NULL when it is not set. A service passes one that prefers its
 * --flags over the environment. */
typedef const char *(*sl_smtp_lookup_fn)(const char *name, void *ud);

/* Fills cfg from the SLUICE_SMTP_* settings that get returns (defaults for
 * those it does not): SLUICE_SMTP_URL (userinfo percent-decoded),
 * SLUICE_SMTP_USER, SLUICE_SMTP_PASSWORD or SLUICE_SMTP_PASSWORD_FILE (read
 * here, trailing newlines dropped), SLUICE_SMTP_FROM,
 * SLUICE_SMTP_STARTTLS, SLUICE_SMTP_CA_FILE, SLUICE_SMTP_TIMEOUT,
 * SLUICE_SMTP_RETRIES, SLUICE_SMTP_RETRY_DELAY_MS. Without SLUICE_SMTP_URL
 * (or with it empty) e-mail is off: 0 with cfg->url NULL, but any other
 * SLUICE_SMTP_* set is refused (it would be silently ignored). Returns 0, or
 * SL_ERR_INVALID with errbuf naming the variable (never echoing a password
 * or the URL, which may hold one), or SL_ERR_NOMEM; cfg is then empty
 * (cleaned up). cfg is caller-allocated; call sl_smtp_config_cleanup()
 * after a success. Call at start-up, from one thread. */
int sl_smtp_config_load(struct sl_smtp_config *cfg, sl_smtp_lookup_fn get, void *ud, char *errbuf,
                        size_t errsz);

/* sl_smtp_config_load() from the environment (getenv). */
int sl_smtp_config_from_env(struct sl_smtp_config *cfg, char *errbuf, size_t errsz);

/* Frees what cfg holds, wiping the password first; cfg becomes empty
 * (e-mail off). Accepts a zeroed or already cleaned-up cfg. */
void sl_smtp_config_cleanup(struct sl_smtp_config *cfg);

/* Whether cfg sends e-mail (SLUICE_SMTP_URL was set). */
bool sl_smtp_enabled(const struct sl_smtp_config *cfg);

/* One message. Every string is borrowed for the duration of the call and
 * must be UTF-8. An address is one mailbox: "a@example.com" or
 * "Name <a@example.com>", its addr-spec ASCII (an IDN domain in its xn--
 * form); CR, LF and other control characters are refused, so no header can
 * be injected; the subject's are replaced by spaces. */
struct sl_mail {
    const char *from;      /* NULL: cfg->from */
    const char *const *to; /* nto recipients, at least one */
    size_t nto;
    const char *subject;     /* "" when NULL */
    const char *text;        /* the text/plain body; at least one of text and html */
    const char *html;        /* the text/html body; NULL: text only */
    const char *attach_path; /* a file attached as it is (base64), or NULL */
    const char *attach_name; /* its file name; NULL: the path's last component */
    const char *attach_type; /* its content type; NULL: application/octet-stream */
};

/* What became of a message. error and refused are always terminated,
 * possibly truncated (ending in "..."). */
struct sl_mail_result {
    bool delivered;     /* the server accepted the message for at least one recipient */
    int attempts;       /* SMTP sessions tried (1 + retries used); 0: refused before sending */
    size_t ndelivered;  /* recipients the message was delivered to */
    size_t nrefused;    /* recipients refused, listed in refused */
    char error[512];    /* why it was not delivered (the last attempt's failure); "" when it was */
    char refused[1024]; /* "b@x: 550 5.1.1 no such user; c@y: 452 ..." or "" */
};

/* Builds m and sends it through the server of cfg (sl_smtp_enabled() must
 * hold), retrying transient failures up to cfg->retries times with
 * exponential backoff (cfg->retry_delay_ms doubled each time, +-25 % at
 * random, at most 60 s); a retry after a partial delivery goes only to the
 * recipients refused with a 4xx reply. res is always filled. Returns 0 when
 * the message was delivered to at least one recipient (the others in
 * res->refused); else, with res->error also in errbuf: SL_ERR_RETRY when
 * transient failures outlasted the retries, SL_ERR_INVALID when the message
 * cannot be sent as it is (a bad address or attachment name, the server's
 * permanent refusal of the sender, of every recipient or of the message, a
 * failed login, a TLS requirement or certificate not met), SL_ERR_IO when
 * the attachment cannot be read or the temporary file written, SL_ERR_NOMEM.
 * Logs each retry and the outcome (component "mail", warn and info), never
 * the password. Blocks while it tries: an attempt ends after cfg->timeout_s
 * without progress (a large attachment that keeps moving is not cut off),
 * the backoff comes between attempts. Any thread may call it, several at
 * once. The message is written to an unlinked temporary file in TMPDIR
 * (about 4/3 of the attachment's size). */
int sl_mail_send(const struct sl_smtp_config *cfg, const struct sl_mail *m,
                 struct sl_mail_result *res, char *errbuf, size_t errsz);

#endif
