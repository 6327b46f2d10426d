/*
 * The job file (../shared/spec/JOBS.md): loading, checking, and the model
 * every stage reads.
 *
 * sl_job_load_*() parses the JSON document, checks every field and compiles
 * the mapping templates; a bad document is refused with a message that names
 * the field ("target.attributes.revenue.scale: must be an integer from 0 to
 * 38"). A loaded job is immutable and may be read by any number of threads.
 */
#ifndef SLUICE_JOB_H
#define SLUICE_JOB_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct sl_template;
struct sl_tz;

enum sl_type {
    SL_TYPE_TEXT = 0,
    SL_TYPE_INTEGER,
    SL_TYPE_DECIMAL,
    SL_TYPE_BOOLEAN,
    SL_TYPE_DATE,
    SL_TYPE_DATETIME,
    SL_TYPE_EMAIL,
    SL_TYPE_PHONE,
    SL_TYPE_URL,
    SL_TYPE_CURRENCY,
    SL_TYPE_ENUM,
};

/* "text", "integer", ...; NULL for an unknown value. */
const char *sl_type_name(enum sl_type t);
/* 0 and *t set, or -1 when name is no type. */
int sl_type_parse(const char *name, enum sl_type *t);

/* One attribute of target.attributes. The loader allows each option only
 * for the types it applies to (anything else is refused):
 *   min_length, max_length, pattern: text (as JOBS.md says; sl_type_check
 *     applies them to text only, so other types refuse them rather than
 *     ignore them);
 *   min, max: integer, decimal;  scale: decimal;  region: phone;
 *   values, on_unknown: enum;  required, default, references: every type.
 * Attribute names are identifiers ([A-Za-z_][A-Za-z0-9_]{0,62}): they become
 * JSON keys and SQL columns, and "references" splits on the dot. Key
 * attributes (target.key) are required unless options.sync is append. */
struct sl_attr {
    char *name;
    enum sl_type type;
    bool required;
    char *default_value; /* as text, already valid for the type (normalized by
                            sl_type_check); NULL: none */
    /* text */
    long min_length, max_length; /* in characters; -1: none */
    char *pattern;               /* POSIX ERE matched against the whole value */
    regex_t re;                  /* compiled "^(pattern)$" (REG_EXTENDED |
                                    REG_NOSUB); valid exactly when pattern */
    /* integer, decimal: bounds as canonical decimal text; NULL: none */
    char *min, *max;
    int scale; /* decimal places (rounded half-even); -1: keep as given */
    /* phone */
    char region[3]; /* ISO 3166 alpha-2 of national numbers; "" none */
    /* enum */
    char **values;
    size_t nvalues;
    bool on_unknown_default; /* true: an unknown value becomes default_value */
    /* foreign key "object.attribute"; NULL none */
    char *references;
    /* mapping (NULL: the attribute stays unset) */
    struct sl_template *map;
    char *map_src;  /* the mapping text as written */
    char *map_note; /* the note, or NULL */
};

enum sl_format {
    SL_FORMAT_AUTO = 0, /* from the file name, then the content type, then the content */
    SL_FORMAT_CSV,
    SL_FORMAT_JSON,
    SL_FORMAT_NDJSON,
    SL_FORMAT_XML,
    SL_FORMAT_XLSX,
    SL_FORMAT_XLS,
};

/* "csv", "json", ...; "auto" for SL_FORMAT_AUTO; NULL for an unknown value. */
const char *sl_format_name(enum sl_format f);

enum sl_encoding {
    SL_ENC_UTF8 = 0,
    SL_ENC_LATIN1,
    SL_ENC_WINDOWS_1252,
    SL_ENC_UTF16, /* byte order from the BOM, little-endian without one */
};

struct sl_header_kv {
    char *name;
    char *value; /* may hold ${env:NAME}: expanded only when used */
};

/* source.pagination, checked (docs/sources.md). Every page of a run is read
 * as JSON; their records become one source. */
enum sl_pag_type { SL_PAG_NONE = 0, SL_PAG_PAGE, SL_PAG_OFFSET, SL_PAG_CURSOR, SL_PAG_LINK };

struct sl_pagination {
    enum sl_pag_type type;
    char *param;      /* query parameter: page: page_param ("page"); offset: offset_param
                         ("offset"); cursor: cursor_param ("cursor"); link: NULL */
    char *size_param; /* page: page_size_param (NULL: the size is not sent); offset:
                         limit_param ("limit"); else NULL */
    long size;        /* page: page_size (0: unknown); offset: limit (default 100) */
    long start;       /* page: start_page (default 1); offset: start_offset (default 0) */
    char *path;       /* cursor: cursor_path, the next cursor in the body (required);
                         link: next_path, the next URL in the body (NULL: the Link header) */
    long max_pages;   /* more pages fail the run; default 1000 */
};

struct sl_source {
    char *url; /* as written (may hold ${env:NAME}) */
    struct sl_header_kv *headers;
    size_t nheaders;
    char *auth_user, *auth_password; /* basic auth, may hold ${env:NAME} */
    char *auth_bearer;               /* bearer token, may hold ${env:NAME} */
    enum sl_format format;
    /* csv */
    char csv_delimiter; /* 0: detect from , ; tab | */
    char csv_quote;     /* default '"' */
    bool csv_header;    /* default true */
    enum sl_encoding encoding;
    /* json, xml: records of the declared format ("$.data.items" or
     * "/Stores/Store"); with format auto, the one given when only one of
     * json.records / xml.records is; NULL default */
    char *records;
    char *json_records; /* source.json.records, NULL: absent */
    char *xml_records;  /* source.xml.records, NULL: absent */
    /* xlsx, xls */
    char *sheet;     /* name, or NULL */
    int sheet_index; /* 1-based; 0 when sheet names it or default (first) */
    int header_row;  /* default 1 */
    /* "pagination" as given (an object with a checked "type"); NULL: none */
    json_t *pagination;
    char *attachment; /* imap: glob of the attachment name */
    /* remote sources (source.h): limits of one fetch */
    long connect_timeout;     /* seconds to connect, default 10 */
    long timeout;             /* seconds one request (one page) may take in all, default 300 */
    long retries;             /* more attempts after a transient failure, default 3 */
    long retry_delay_ms;      /* before the first retry, doubling (with jitter), default 1000 */
    uint64_t max_bytes;       /* bytes of the source (all pages together), default 1 GiB */
    struct sl_pagination pag; /* pagination checked; type SL_PAG_NONE when none */
    /* ftp (source.ftp) and imap(s) (source.imap): tls requires TLS on a
     * plain URL (ftp://: explicit AUTH TLS; imap://: STARTTLS). ca_file
     * verifies the server of every TLS source (https, ftp with tls,
     * imaps/STARTTLS, s3 over https): source.tls.ca_file, or its older
     * names source.ftp.ca_file and source.imap.ca_file (NULL: the system's
     * CAs; may hold ${env:NAME}); ca_file_field is the name the job used
     * (a static string, for messages) */
    bool tls;
    char *ca_file;
    const char *ca_file_field;
    long max_messages; /* imap: the newest messages looked at, default 100 */
    /* sftp (source.sftp); each string may hold ${env:NAME} */
    struct sl_source_sftp {
        char *known_hosts;     /* OpenSSH known_hosts; NULL: ~/.ssh/known_hosts */
        char *host_key_sha256; /* base64 SHA-256 of the host key (no "SHA256:"); NULL none */
        char *private_key;     /* key file of public-key auth; NULL: password auth */
        char *public_key;      /* NULL: derived from the private key */
        char *passphrase;      /* of the private key; NULL none */
    } sftp;
    /* s3 (source.s3); each string may hold ${env:NAME} */
    struct sl_source_s3 {
        char *region;            /* NULL: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1 */
        char *endpoint;          /* http(s)://host[:port] of an S3-compatible store; NULL: AWS */
        int path_style;          /* 1: the bucket in the path; 0: in the host; -1: path with
                                    an endpoint, host on AWS (dotted buckets: path) */
        char *access_key_id;     /* NULL: ${env:AWS_ACCESS_KEY_ID} */
        char *secret_access_key; /* NULL: ${env:AWS_SECRET_ACCESS_KEY} */
        char *session_token;     /* NULL: $AWS_SESSION_TOKEN when set (with the default keys) */
    } s3;
};

enum sl_sync { SL_SYNC_UPSERT = 0, SL_SYNC_APPEND, SL_SYNC_MIRROR };
enum sl_dups { SL_DUPS_REJECT = 0, SL_DUPS_LAST_WINS };

struct sl_options {
    bool allow_create;   /* default true */
    enum sl_sync sync;   /* default upsert */
    bool skip_unchanged; /* default true */
    enum sl_dups duplicates;
    bool approval; /* default false */
};

enum sl_every {
    SL_EVERY_NONE = 0, /* no schedule */
    SL_EVERY_MINUTES,  /* every `minutes` minutes */
    SL_EVERY_HOURLY,   /* at minute `at_minute` */
    SL_EVERY_DAILY,
    SL_EVERY_WORKDAYS,
    SL_EVERY_WEEKLY,  /* on `weekday` (0 Sunday .. 6 Saturday) */
    SL_EVERY_MONTHLY, /* on `monthday` 1..31, clamped */
    SL_EVERY_CRON,
};

struct sl_schedule {
    enum sl_every every;
    int minutes;            /* SL_EVERY_MINUTES */
    int at_hour, at_minute; /* "at" (default 00:00; hourly: hour -1; minutes,
                               cron, none: both -1) */
    int weekday;            /* weekly */
    int monthday;           /* monthly */
    char *cron;             /* "m h dom mon dow", checked */
    char *timezone;         /* IANA name: schedule.timezone, else the
                               top-level "timezone", else "UTC" */
    bool enabled;           /* default true */
    bool run_on_save;       /* default false */
};

enum sl_report_when { SL_REPORT_ERRORS = 0, SL_REPORT_ALWAYS, SL_REPORT_FAILURE };

struct sl_report {
    char **email;
    size_t nemail;
    char *format; /* "xlsx" (default) or "csv" */
    enum sl_report_when when;
};

enum sl_dest_type { SL_DEST_FILE = 0, SL_DEST_POSTGRES, SL_DEST_HTTP };

struct sl_destination {
    enum sl_dest_type type;
    bool given;                   /* false: no "destination" in the job (embedded: a file) */
    char *table;                  /* postgres, default the object name */
    char *url;                    /* http */
    struct sl_header_kv *headers; /* http: extra request headers (extension),
                                     values may hold ${env:NAME} */
    size_t nheaders;
    char *path; /* file: NDJSON path; NULL: <out>/<object>.ndjson */
};

/* A lookup table of the job ("lookups": { "table": { "from": "to" } }). */
struct sl_lookup {
    char *name;
    json_t *map; /* object of string -> string */
};

/* A field reference of the mapping: a source column that a template reads. */
struct sl_ref {
    char *name; /* as written: "Name", "address.city", row['E-Mail'] -> "E-Mail" */
};

/* Joins the values of a composite key (the validator's duplicate check and
 * the bus's partitioning key). */
#define SL_KEY_SEP '\x1f'

struct sl_job {
    char *id;   /* the name, unless the control plane assigns one */
    char *name; /* [A-Za-z0-9_.-]{1,128} */
    char *description;
    uint32_t version;
    struct sl_source source;
    char *object;
    char **key; /* attribute names */
    size_t nkey;
    size_t *key_idx; /* their indices in attrs */
    struct sl_attr *attrs;
    size_t nattrs;
    struct sl_lookup *lookups;
    size_t nlookups;
    struct sl_ref *refs; /* every source field a mapping reads, each once */
    size_t nrefs;
    struct sl_options options;
    struct sl_schedule schedule;
    struct sl_report report;
    struct sl_destination destination;
    char *timezone;         /* datetimes without an offset: top-level "timezone",
                               else schedule.timezone, else "UTC" */
    const struct sl_tz *tz; /* loaded zone of timezone (sl_tz_get: not owned) */
    char *dir;              /* directory of the job file ("." for a document) */
    json_t *doc;            /* the document as given */
    /* "targets" (an extension of JOBS.md: one source row feeds several
     * objects): every target as a job of its own (its id "<name>#<object>",
     * its target, key, attributes, mapping and destination; the rest the
     * job's), in the order given; this job is then the first target's.
     * NULL and 0 for a job of one target. */
    struct sl_job **targets;
    size_t ntargets;
};

/* Loads and checks the job file at path (at most 32 MiB). Returns the job
 * (caller destroys it), or NULL with errbuf set ("path: ...") when it cannot
 * be read or is invalid. job->dir is the directory of path. */
struct sl_job *sl_job_load_file(const char *path, char *errbuf, size_t errsz);

/* Loads and checks a job document of len bytes (JSON with no duplicate keys
 * and nothing after it); dir is where relative source paths start (NULL:
 * "."). Returns the job (caller destroys it; it keeps a reference to its
 * parsed document in job->doc), or NULL with errbuf set to one message that
 * names the field ("mapping.foo: no such attribute in target.attributes";
 * "line 3, column 14: ..." for invalid JSON). ${env:NAME} is never expanded
 * here, only checked for syntax. Any thread may call it. */
struct sl_job *sl_job_load_json(const char *text, size_t len, const char *dir, char *errbuf,
                                size_t errsz);

/* Frees job; accepts NULL and half-built jobs. */
void sl_job_destroy(struct sl_job *job);

/* Whether a field the job's mapping reads is the column name (exactly, then
 * case- and space-insensitively: JOBS.md "mapping"). */
bool sl_job_reads_column(const struct sl_job *job, const char *name);

/* The index of attribute name in job->attrs, or -1. */
int sl_job_attr_index(const struct sl_job *job, const char *name);

/* The lookup table name, or NULL. */
const struct sl_lookup *sl_job_lookup(const struct sl_job *job, const char *name);

/* Expands every ${env:NAME} of s from the environment into a new string
 * (caller frees). NAME is [A-Za-z_][A-Za-z0-9_]*; other "${" text is kept.
 * NULL with errbuf set when a variable is unset ("environment variable
 * ERP_TOKEN is not set"; the value of a variable is never in a message), the
 * syntax is bad, or memory runs out. */
char *sl_env_expand(const char *s, char *errbuf, size_t errsz);

/* The job registry: job definitions by id and version. */
struct sl_jobs;

struct sl_jobs_ops {
    /* The job, borrowed for as long as the registry lives; NULL with errbuf
     * set when unknown. Thread-safe. */
    const struct sl_job *(*get)(struct sl_jobs *jobs, const char *job_id, uint32_t version,
                                char *errbuf, size_t errsz);
    void (*destroy)(struct sl_jobs *jobs);
};

struct sl_jobs {
    const struct sl_jobs_ops *ops;
};

/* A registry of one job (embedded mode); takes ownership of job (destroyed
 * with the registry, or at once when out of memory: NULL). get() answers for
 * job->id and version 0 (latest) or job->version. */
struct sl_jobs *sl_jobs_single_new(struct sl_job *job);

/* The job job_id at version from the registry: a job, or the target of a
 * job of several ("crm#contacts": job crm's target of object contacts).
 * NULL with errbuf set when unknown. */
const struct sl_job *sl_jobs_get(struct sl_jobs *jobs, const char *job_id, uint32_t version,
                                 char *errbuf, size_t errsz);

/* Destroys jobs through its ops; accepts NULL. */
void sl_jobs_destroy(struct sl_jobs *jobs);

#endif
