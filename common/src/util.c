/*
 * Small helpers: paths, whole small files, SHA-256 of a file, UTF-8, time
 * text (util.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <curl/curl.h>
#include <gmime/gmime.h>
#include <openssl/evp.h>

#include "sluice/util.h"

int sl_mkdirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755);
    free(p);
    return rc && errno != EEXIST ? -1 : 0;
}

char *sl_path_join(const char *a, const char *b)
{
    if (b[0] == '/' || !a || !a[0])
        return strdup(b);
    size_t la = strlen(a);
    char *p = malloc(la + strlen(b) + 2);
    if (!p)
        return NULL;
    strcpy(p, a);
    if (la && a[la - 1] != '/')
        strcat(p, "/");
    strcat(p, b);
    return p;
}

char *sl_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

char *sl_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    while (p) {
        size_t r = fread(p + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (n + 1 == cap) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                p = NULL;
                errno = ENOMEM;
                break;
            }
            p = q;
            cap *= 2;
        }
    }
    if (p && ferror(f)) {
        int e = errno;
        free(p);
        p = NULL;
        errno = e;
    }
    fclose(f);
    if (p) {
        p[n] = '\0';
        if (len)
            *len = n;
    }
    return p;
}

int sl_write_file_atomic(const char *path, const void *data, size_t len)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp)
        return -1;
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) || close(fd)) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path))
        goto fail_unlink;
    free(tmp);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
fail_unlink : {
    int e = errno;
    unlink(tmp);
    free(tmp);
    errno = e;
}
    return -1;
}

void sl_hex(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Writes all n bytes of p to fd; 0 or -1 with errno. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int sl_sha256_copy(const char *path, const char *dst, char out[65], uint64_t *bytes)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), ofd = -1;
    if (fd < 0)
        return -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char *buf = malloc(1 << 20);
    uint64_t total = 0;
    int rc = -1;
    if (!md || !buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        errno = ENOMEM;
        goto out;
    }
    if (dst && (ofd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        goto out;
    for (;;) {
        ssize_t r = read(fd, buf, 1 << 20);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto out;
        if (r == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)r);
        if (ofd >= 0 && write_all(ofd, buf, (size_t)r))
            goto out;
        total += (uint64_t)r;
    }
    if (ofd >= 0) {
        int c = close(ofd);
        ofd = -1;
        if (c)
            goto out;
    }
    unsigned char dig[32];
    unsigned dl = 0;
    EVP_DigestFinal_ex(md, dig, &dl);
    sl_hex(dig, 32, out);
    if (bytes)
        *bytes = total;
    rc = 0;
out : {
    int e = errno;
    EVP_MD_CTX_free(md);
    free(buf);
    close(fd);
    if (ofd >= 0)
        close(ofd);
    errno = e;
}
    return rc;
}

int sl_sha256_file(const char *path, char out[65], uint64_t *bytes)
{
    return sl_sha256_copy(path, NULL, out, bytes);
}

bool sl_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            min = 0x80;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            min = 0x800;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            min = 0x10000;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

size_t sl_utf8_len(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += ((unsigned char)s[i] & 0xc0) != 0x80;
    return count;
}

void sl_format_utc(int64_t us, bool frac, char out[32])
{
    time_t secs = (time_t)(us / 1000000);
    int64_t rem = us % 1000000;
    if (rem < 0) {
        rem += 1000000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac)
        snprintf(out + n, 32 - n, ".%03dZ", (int)(rem / 1000));
    else
        snprintf(out + n, 32 - n, "Z");
}

/* Compares a and b ignoring ASCII case and all white space. */
static bool loose_eq(const char *a, const char *b)
{
    for (;;) {
        while (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r')
            a++;
        while (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca = (unsigned char)(ca - 'A' + 'a');
        if (cb >= 'A' && cb <= 'Z')
            cb = (unsigned char)(cb - 'A' + 'a');
        if (ca != cb)
            return false;
        a++;
        b++;
    }
}

int sl_column_find(const char *ref, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ref, names[i]))
            return (int)i;
    for (size_t i = 0; i < n; i++)
        if (loose_eq(ref, names[i]))
            return (int)i;
    return -1;
}

bool sl_path_allowed(const char *path, const char *dirs)
{
    if (!dirs || !dirs[0])
        return false;
    char *real = realpath(path, NULL);
    char *list = strdup(dirs);
    bool ok = false;
    char *save = NULL;
    for (char *d = list && real ? strtok_r(list, ":", &save) : NULL; d && !ok;
         d = strtok_r(NULL, ":", &save)) {
        char *rd = realpath(d, NULL);
        if (rd) {
            size_t n = strlen(rd);
            ok = !strncmp(real, rd, n) &&
                 (real[n] == '/' || real[n] == '\0' || (n == 1 && rd[0] == '/'));
            free(rd);
        }
    }
    free(real);
    free(list);
    return ok;
}

int sl_temp_fd(const char *prefix, const char **dir_out)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !dir[0])
        dir = "/tmp";
    if (dir_out)
        *dir_out = dir;
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s-XXXXXX", dir, prefix);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_rc;

static void curl_start(void)
{
    curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sl_curl_global(void)
{
    pthread_once(&curl_once, curl_start);
    return (int)curl_rc;
}

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_start(void)
{
    g_mime_init();
}

void sl_gmime_global(void)
{
    pthread_once(&gmime_once, gmime_start);
}
