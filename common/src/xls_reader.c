/*
 * The XLS reader (reader.h): one worksheet of a BIFF5/BIFF8 workbook into
 * rows, through FreeXL.
 *
 * FreeXL parses the compound document and the chosen sheet's cells into
 * memory and hands them out typed. It is not safe on hostile input (a
 * corrupt file can make 1.0.6 read outside a stack buffer, and a date cell
 * costs it one loop turn per day of its serial), so it runs in a child
 * process: the child opens the file, picks the sheet as the XLSX reader
 * does, turns each cell into its text and writes the cells to a pipe; the
 * parent assembles the rows (sheet_cell.c) and calls the callbacks. A child
 * that crashes, runs out of its memory limit or goes quiet for too long
 * fails the file; it is killed by its PID and always waited for.
 *
 * The child is the same program started again (posix_spawn of
 * /proc/self/exe, file on fd 3, pipe on fd 4, the options in SLUICE_XLS_*
 * variables), whose constructor below runs the child before main(): a
 * plain fork() of a multi-threaded process may copy a lock that another
 * thread held (malloc's, iconv's, a sanitizer's) and hang for ever.
 *
 * FreeXL renders the dates and times it recognises as text, with a calendar
 * that takes every fourth year as a leap year and a 1904 system that starts
 * a day late; the serial is recovered from that text with FreeXL's own
 * calendar and rendered again by sl_sheet_serial_text, so 2100-03-01 stays
 * 2100-03-01.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <freexl.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

/* What a FreeXL error means for the person who sent the file. */
static int open_error(int ret, char *errbuf, size_t errsz)
{
    const char *why;
    switch (ret) {
    case FREEXL_FILE_NOT_FOUND:
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "could not open the file: %s", strerror(errno));
    case FREEXL_INSUFFICIENT_MEMORY:
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                         "the XLS file is too large or corrupt: FreeXL refuses a sheet over 256 "
                         "MB of cells (or ran out of memory)");
    case FREEXL_INVALID_CFBF_HEADER:
    case FREEXL_CFBF_INVALID_SIGNATURE:
        why = "not an XLS file: no OLE2 compound document header";
        break;
    case FREEXL_CFBF_READ_ERROR:
    case FREEXL_CFBF_SEEK_ERROR:
        why = "the XLS file is truncated or corrupt (a sector cannot be read)";
        break;
    case FREEXL_CFBF_INVALID_SECTOR_SIZE:
    case FREEXL_CFBF_EMPTY_FAT_CHAIN:
    case FREEXL_CFBF_ILLEGAL_FAT_ENTRY:
    case FREEXL_INVALID_MINI_STREAM:
    case FREEXL_CFBF_ILLEGAL_MINI_FAT_ENTRY:
        why = "the XLS file is corrupt (its compound document structure is broken)";
        break;
    case FREEXL_BIFF_WORKBOOK_NOT_FOUND:
        why = "not an XLS file: the compound document holds no Excel workbook (a "
              "password-protected XLSX or another Office file?)";
        break;
    case FREEXL_BIFF_INVALID_BOF:
    case FREEXL_BIFF_INVALID_SST:
    case FREEXL_BIFF_ILLEGAL_SST_INDEX:
    case FREEXL_ILLEGAL_RK_VALUE:
    case FREEXL_CRAFTED_FILE:
        why = "the XLS file is corrupt (its workbook records are broken)";
        break;
    case FREEXL_INVALID_CHARACTER:
    case FREEXL_UNSUPPORTED_CHARSET:
        why = "the XLS file holds text that cannot be converted to UTF-8";
        break;
    default:
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                         "the XLS file cannot be read (FreeXL error %d)", ret);
    }
    return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "%s", why);
}

/* Days from 1900-01-01 in FreeXL's calendar (every year divisible by 4 a
 * leap year), or -1 when text is no "YYYY-MM-DD". */
static int64_t freexl_days(const char *text)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char *end;
    long y = strtol(text, &end, 10);
    if (end == text || *end != '-' || y < 1900)
        return -1;
    long m = strtol(end + 1, &end, 10);
    if (*end != '-' || m < 1 || m > 12)
        return -1;
    long d = strtol(end + 1, &end, 10);
    if (d < 1 || d > 31 || (*end && *end != ' '))
        return -1;
    int64_t days = (int64_t)(y - 1900) * 365 + (y - 1900 + 3) / 4;
    for (long i = 1; i < m; i++)
        days += mdays[i - 1] + (i == 2 && y % 4 == 0);
    return days + d - 1;
}

/* Seconds of "HH:MM:SS" at text, or -1. */
static long freexl_secs(const char *text)
{
    int h, m, s;
    char tail;
    if (sscanf(text, "%d:%d:%d%c", &h, &m, &s, &tail) != 3 || h < 0 || h > 24 || m < 0 || m > 59 ||
        s < 0 || s > 59)
        return -1;
    return (long)h * 3600 + m * 60 + s;
}

/* The serial of a FreeXL date ("YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS") in
 * its date system: FreeXL counts serial n as n - 1 days after 1900-01-01
 * (1900) or 1904-01-02 (1904). -1 when the text is not FreeXL's. */
static double freexl_serial(const char *text, bool date1904)
{
    int64_t days = freexl_days(text);
    if (days < 0)
        return -1;
    if (date1904)
        days -= freexl_days("1904-01-02");
    if (days < 0)
        return -1;
    double serial = (double)days + 1;
    const char *sp = strchr(text, ' ');
    if (sp) {
        long secs = freexl_secs(sp + 1);
        if (secs < 0)
            return -1;
        serial += secs / 86400.0;
    }
    return serial;
}

/* The text of one FreeXL cell into out (SL_SHEET_NUM_MAX bytes) or *text;
 * returns its length, or -1 for a missing value. */
static long cell_text(const FreeXL_CellValue *cv, bool date1904, char *out, const char **text)
{
    *text = out;
    switch (cv->type) {
    case FREEXL_CELL_INT:
        return snprintf(out, SL_SHEET_NUM_MAX, "%d", cv->value.int_value);
    case FREEXL_CELL_DOUBLE:
        return (long)sl_sheet_number_text(cv->value.double_value, out);
    case FREEXL_CELL_TEXT:
    case FREEXL_CELL_SST_TEXT:
        *text = cv->value.text_value ? cv->value.text_value : "";
        return (long)strlen(*text);
    case FREEXL_CELL_DATE:
    case FREEXL_CELL_DATETIME: {
        const char *t = cv->value.text_value ? cv->value.text_value : "";
        double serial = freexl_serial(t, date1904);
        size_t n = serial >= 0
                       ? sl_sheet_serial_text(
                             serial, date1904,
                             cv->type == FREEXL_CELL_DATE ? SL_CELL_DATE : SL_CELL_DATETIME, out)
                       : 0;
        if (n)
            return (long)n;
        *text = t; /* not FreeXL's form: as it is */
        return (long)strlen(t);
    }
    case FREEXL_CELL_TIME: {
        const char *t = cv->value.text_value ? cv->value.text_value : "";
        long secs = freexl_secs(t);
        if (secs < 0) {
            *text = t;
            return (long)strlen(t);
        }
        return (long)sl_sheet_serial_text((double)(secs % 86400) / 86400.0, date1904, SL_CELL_TIME,
                                          out);
    }
    default:
        return -1;
    }
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define XLS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define XLS_SANITIZED 1
#endif
#endif
#ifndef XLS_SANITIZED
#define XLS_SANITIZED 0
#endif

#define XLS_DEF_TIMEOUT_S  60
#define XLS_DEF_MAX_MEMORY (2ull << 30)
#define XLS_MAX_MSG        (64u << 20)

/* The pipe between the child and the parent: messages of a type byte, a
 * 32-bit length and the payload. */
enum {
    MSG_SHEET = 'S', /* u32 rows of the sheet, then its name */
    MSG_CELL = 'C',  /* u32 row (1-based), u32 column (0-based), then the text */
    MSG_ERROR = 'E', /* i32 sl_err, then the message */
    MSG_DONE = 'D',
};

static int put_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One message: a, b (when has_ab) and n bytes of text. The child exits
 * when the parent has gone. */
static void send_msg(int wfd, char type, bool has_ab, uint32_t a, uint32_t b, const char *text,
                     size_t n)
{
    unsigned char h[13];
    size_t hl = 5;
    if (has_ab) {
        put_u32(h + 5, a);
        put_u32(h + 9, b);
        hl = 13;
    }
    h[0] = (unsigned char)type;
    put_u32(h + 1, (uint32_t)(hl - 5 + n));
    if (put_all(wfd, h, hl) || (n && put_all(wfd, text, n)))
        _exit(3);
}

static void send_error(int wfd, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_error(int wfd, int err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    send_msg(wfd, MSG_ERROR, true, (uint32_t)err, 0, msg, strlen(msg));
}

/* Sends what FreeXL's error ret means and ends the child. */
static void send_open_error(int wfd, int ret) __attribute__((noreturn));
static void send_open_error(int wfd, int ret)
{
    char err[512];
    int rc = open_error(ret, err, sizeof(err));
    send_error(wfd, rc, "%s", err);
    _exit(0);
}

/* The child: FreeXL on path, the chosen sheet's cells to wfd. Never returns. */
static void xls_child(int wfd, const char *path, const struct sl_sheet_opts *o)
{
    if (!XLS_SANITIZED) {
        /* max_memory on top of what the forked process already maps (a
         * service's thread stacks and malloc arenas can be gigabytes) */
        rlim_t mem = o->max_memory ? (rlim_t)o->max_memory : (rlim_t)XLS_DEF_MAX_MEMORY;
        unsigned long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f) {
            if (fscanf(f, "%lu", &pages) != 1)
                pages = 0;
            fclose(f);
        }
        long psz = sysconf(_SC_PAGESIZE);
        rlim_t lim = mem + (rlim_t)pages * (rlim_t)(psz > 0 ? psz : 4096);
        struct rlimit rl = {lim, lim};
        if (pages)
            setrlimit(RLIMIT_AS, &rl);
    }
    const void *xh = NULL;
    struct sl_buf names = SL_BUF_INIT;
    errno = 0;
    int ret = freexl_open(path, &xh);
    if (ret != FREEXL_OK)
        send_open_error(wfd, ret);
    unsigned info = 0;
    if (freexl_get_info(xh, FREEXL_BIFF_PASSWORD, &info) == FREEXL_OK &&
        info == FREEXL_BIFF_OBFUSCATED) {
        send_error(wfd, SL_ERR_PARSE, "the XLS file is password-protected");
        _exit(0);
    }
    bool date1904 = freexl_get_info(xh, FREEXL_BIFF_DATEMODE, &info) == FREEXL_OK &&
                    info == FREEXL_BIFF_DATEMODE_1904;
    unsigned nsheets = 0;
    if (freexl_get_info(xh, FREEXL_BIFF_SHEET_COUNT, &nsheets) != FREEXL_OK || nsheets == 0) {
        send_error(wfd, SL_ERR_PARSE, "the XLS file holds no worksheet (it may be corrupt)");
        _exit(0);
    }
    if (nsheets > 65535)
        nsheets = 65535;

    /* the sheet, as the XLSX reader picks it */
    long pick = -1;
    for (unsigned i = 0; i < nsheets; i++) {
        const char *nm = NULL;
        if (freexl_get_worksheet_name(xh, (unsigned short)i, &nm) != FREEXL_OK || !nm)
            nm = "";
        if (i < 10)
            sl_buf_printf(&names, "%s'%s'", i ? ", " : "", nm);
        else if (i == 10)
            sl_buf_puts(&names, ", ...");
        if (o->sheet && pick < 0 && strcmp(nm, o->sheet) == 0)
            pick = i;
    }
    if (o->sheet && pick < 0)
        for (unsigned i = 0; i < nsheets && pick < 0; i++) {
            const char *nm = NULL;
            if (freexl_get_worksheet_name(xh, (unsigned short)i, &nm) == FREEXL_OK && nm &&
                strcasecmp(nm, o->sheet) == 0)
                pick = i;
        }
    if (o->sheet && pick < 0) {
        send_error(wfd, SL_ERR_PARSE, "no sheet named '%s' (the workbook has %s)", o->sheet,
                   names.data ? names.data : "");
        _exit(0);
    }
    if (!o->sheet) {
        if (o->sheet_index > 0 && (unsigned)o->sheet_index > nsheets) {
            send_error(wfd, SL_ERR_PARSE, "no sheet %d: the workbook has %u sheet%s (%s)",
                       o->sheet_index, nsheets, nsheets == 1 ? "" : "s",
                       names.data ? names.data : "");
            _exit(0);
        }
        pick = o->sheet_index > 0 ? o->sheet_index - 1 : 0;
    }
    const char *sheet_name = NULL;
    if (freexl_get_worksheet_name(xh, (unsigned short)pick, &sheet_name) != FREEXL_OK ||
        !sheet_name)
        sheet_name = "";
    ret = freexl_select_active_worksheet(xh, (unsigned short)pick);
    if (ret != FREEXL_OK)
        send_open_error(wfd, ret);
    unsigned rows = 0;
    unsigned short cols = 0;
    if (freexl_worksheet_dimensions(xh, &rows, &cols) != FREEXL_OK) {
        send_error(wfd, SL_ERR_PARSE, "the XLS file is corrupt (sheet '%s')", sheet_name);
        _exit(0);
    }
    if (rows > 1048576)
        rows = 1048576;
    send_msg(wfd, MSG_SHEET, true, rows, 0, sheet_name, strlen(sheet_name));
    char out[SL_SHEET_NUM_MAX];
    for (unsigned r = 0; r < rows; r++) {
        for (unsigned short c = 0; c < cols; c++) {
            FreeXL_CellValue cv;
            if (freexl_get_cell_value(xh, r, c, &cv) != FREEXL_OK)
                continue;
            const char *text;
            long n = cell_text(&cv, date1904, out, &text);
            if (n >= 0)
                send_msg(wfd, MSG_CELL, true, r + 1, c, text, (size_t)n);
        }
    }
    send_msg(wfd, MSG_DONE, false, 0, 0, NULL, 0);
    _exit(0);
}

/* The child's descriptors and variables (see the top of the file). */
#define CHILD_FILE_FD 3
#define CHILD_PIPE_FD 4
#define CHILD_ENV     "SLUICE_XLS_CHILD"
#define CHILD_ENV_MAX 6

/* fd, moved above the child's fixed descriptors when it is one of them
 * (posix_spawn's dup2 onto itself would keep FD_CLOEXEC); *tmp is the copy
 * to close afterwards, or -1. */
static int above_fixed(int fd, int *tmp)
{
    *tmp = -1;
    if (fd != CHILD_FILE_FD && fd != CHILD_PIPE_FD)
        return fd;
    *tmp = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    return *tmp;
}

/* Starts the child on file fd, writing to wfd. 0 and *pid, or an errno. */
static int spawn_child(int fd, int wfd, const struct sl_sheet_opts *o, pid_t *pid)
{
    extern char **environ;
    int tf, tw;
    int sfd = above_fixed(fd, &tf), swfd = above_fixed(wfd, &tw);
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + CHILD_ENV_MAX + 1, sizeof(*envp));
    char *own[CHILD_ENV_MAX] = {NULL};
    int e = 0;
    if (sfd < 0 || swfd < 0 || !envp) {
        e = sfd < 0 || swfd < 0 ? errno : ENOMEM;
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SLUICE_XLS_", 11)) /* none of an outer child's */
            envp[k++] = environ[i];
    int m = 0;
    if (asprintf(&own[m++], "%s=1", CHILD_ENV) < 0 ||
        asprintf(&own[m++], "SLUICE_XLS_SHEET_INDEX=%d", o->sheet_index) < 0 ||
        asprintf(&own[m++], "SLUICE_XLS_MAX_MEMORY=%zu", (size_t)o->max_memory) < 0 ||
        (o->sheet && asprintf(&own[m++], "SLUICE_XLS_SHEET=%s", o->sheet) < 0)) {
        own[m - 1] = NULL;
        e = ENOMEM;
        goto out;
    }
    for (int i = 0; i < m; i++)
        envp[k++] = own[i];
    posix_spawn_file_actions_t fa;
    if ((e = posix_spawn_file_actions_init(&fa)) != 0)
        goto out;
    if ((e = posix_spawn_file_actions_adddup2(&fa, sfd, CHILD_FILE_FD)) == 0 &&
        (e = posix_spawn_file_actions_adddup2(&fa, swfd, CHILD_PIPE_FD)) == 0 &&
        /* FreeXL's (or a sanitizer's) complaints */
        (e = posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0)) == 0) {
        char *argv[] = {"sluice-xls-reader", NULL};
        e = posix_spawn(pid, "/proc/self/exe", &fa, NULL, argv, envp);
    }
    posix_spawn_file_actions_destroy(&fa);
out:
    for (int i = 0; i < CHILD_ENV_MAX; i++)
        free(own[i]);
    free(envp);
    if (tf >= 0)
        close(tf);
    if (tw >= 0)
        close(tw);
    return e;
}

/* Before main(): the child, when this program was started as one (its
 * variable set and a pipe on its descriptor). Never returns then. */
__attribute__((constructor)) static void xls_child_entry(void)
{
    const char *v = getenv(CHILD_ENV);
    struct stat st;
    if (!v || strcmp(v, "1") || fstat(CHILD_PIPE_FD, &st) || !S_ISFIFO(st.st_mode))
        return;
    struct sl_sheet_opts o = {0};
    o.sheet = getenv("SLUICE_XLS_SHEET");
    const char *si = getenv("SLUICE_XLS_SHEET_INDEX");
    const char *mm = getenv("SLUICE_XLS_MAX_MEMORY");
    o.sheet_index = si ? atoi(si) : 0;
    o.max_memory = mm ? (size_t)strtoull(mm, NULL, 10) : 0;
    signal(SIGPIPE, SIG_DFL);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", CHILD_FILE_FD);
    xls_child(CHILD_PIPE_FD, path, &o);
}

/* Reads n bytes from the child; 0, 1 at the end of the pipe (before any
 * byte), -1 on an error, -2 when it stayed quiet for timeout_s. */
static int get_all(int fd, void *p, size_t n, unsigned timeout_s)
{
    char *c = p;
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(timeout_s * 1000));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -1;
        if (pr == 0)
            return -2;
        ssize_t r = read(fd, c + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return got ? -1 : 1;
        got += (size_t)r;
    }
    return 0;
}

/* Why the child ended without a word: its wait status. */
static int child_failed(int status, char *errbuf, size_t errsz)
{
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU)
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                         "FreeXL used too much CPU time on the file: a corrupt or crafted file");
    if (WIFSIGNALED(status))
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                         "FreeXL crashed reading the file (signal %d): the XLS file is corrupt",
                         WTERMSIG(status));
    return sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                     "FreeXL stopped reading the file (exit status %d): the XLS file is corrupt or "
                     "too large",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int sl_xls_read_fd(int fd, const struct sl_sheet_opts *o, sl_header_fn hdr_fn, sl_row_fn fn,
                   void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    struct sl_sheet_opts def = {0};
    if (!o)
        o = &def;
    struct sl_sheet_rows_cfg cfg;
    uint64_t size;
    int rc = sl_sheet_read_begin(fd, o, hdr_fn, fn, ud, stats, errbuf, errsz, &cfg, &size);
    if (rc)
        return rc;
    unsigned timeout_s = o->timeout_s ? o->timeout_s : XLS_DEF_TIMEOUT_S;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "could not create a pipe: %s", strerror(errno));
    pid_t pid;
    int e = spawn_child(fd, p[1], o, &pid);
    close(p[1]);
    if (e) {
        close(p[0]);
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "could not start FreeXL's process: %s",
                         strerror(e));
    }

    struct sl_sheet_rows *sr = NULL;
    char *msg = NULL;
    size_t msg_cap = 0;
    size_t max_msg = (o->max_row ? o->max_row : 16u << 20) + 64;
    if (max_msg > XLS_MAX_MSG)
        max_msg = XLS_MAX_MSG;
    uint32_t rows = 0, cur = 0;
    bool done = false, exited = false;
    int status = 0;
    for (;;) {
        unsigned char h[5];
        int g = get_all(p[0], h, sizeof(h), timeout_s);
        if (g == 1) {
            /* the child is gone without a word */
            exited = waitpid(pid, &status, 0) == pid;
            rc = exited ? child_failed(status, errbuf, errsz)
                        : sl_seterr(errbuf, errsz, SL_ERR_PARSE, "FreeXL's process was lost");
            exited = true;
            break;
        }
        if (g == -2) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                           "FreeXL took more than %u s without a cell: a corrupt or crafted file",
                           timeout_s);
            break;
        }
        uint32_t len = g == 0 ? get_u32(h + 1) : 0;
        if (g < 0 || len > max_msg) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "could not read from FreeXL's process");
            break;
        }
        if (len + 1 > msg_cap) {
            char *nm = realloc(msg, len + 1);
            if (!nm) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory reading the XLS file");
                break;
            }
            msg = nm;
            msg_cap = len + 1;
        }
        if (len && get_all(p[0], msg, len, timeout_s) != 0) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "could not read from FreeXL's process");
            break;
        }
        msg[len] = '\0';
        if (h[0] == MSG_ERROR && len >= 8) {
            rc = (int)(int32_t)get_u32((unsigned char *)msg);
            if (rc >= 0)
                rc = SL_ERR_PARSE;
            sl_seterr(errbuf, errsz, rc, "%s", msg + 8);
            break;
        }
        if (h[0] == MSG_SHEET && len >= 8 && !sr) {
            rows = get_u32((unsigned char *)msg);
            cfg.sheet = msg + 8;
            if (!(sr = sl_sheet_rows_new(&cfg))) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory reading the XLS file");
                break;
            }
            continue;
        }
        if (h[0] == MSG_CELL && len >= 8 && sr) {
            uint32_t row = get_u32((unsigned char *)msg), col = get_u32((unsigned char *)msg + 4);
            if (row != cur) {
                if ((rc = sl_sheet_rows_begin(sr, row)))
                    break;
                cur = row;
                if (stats && rows)
                    stats->bytes = size * (row - 1) / rows;
            }
            if ((rc = sl_sheet_rows_cell(sr, col, msg + 8, len - 8)))
                break;
            continue;
        }
        if (h[0] == MSG_DONE && sr) {
            done = true;
            break;
        }
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "FreeXL's process sent something unexpected");
        break;
    }
    close(p[0]);
    if (!exited) {
        if (!done)
            kill(pid, SIGKILL); /* stopped early, quiet too long, or confused */
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (done && rc == 0) {
        rc = sl_sheet_rows_finish(sr);
        if (rc == 0 && stats)
            stats->bytes = size;
    }
    if (rc < 0 && errbuf && errsz && !errbuf[0])
        sl_seterr(errbuf, errsz, rc, "%s", sl_err_str(rc));
    sl_sheet_rows_destroy(sr);
    free(msg);
    return rc;
}
