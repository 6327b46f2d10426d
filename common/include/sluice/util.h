/*
 * Small helpers every module uses: files, hashing, strings.
 */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Creates dir and its parents (mode 0755); 0 or -1 with errno. */
int sl_mkdirs(const char *dir);
/* Joins a and b with one '/', b absolute wins; caller frees. */
char *sl_path_join(const char *a, const char *b);
/* The directory part of path ("." when none); caller frees. */
char *sl_path_dir(const char *path);
/* Whether path lies inside one of the colon-separated directories of dirs,
 * after both are resolved (symbolic links, ".."); false when path does not
 * exist or dirs is NULL or empty. */
bool sl_path_allowed(const char *path, const char *dirs);
/* Reads a whole (small) file; caller frees; NULL with errno. */
char *sl_read_file(const char *path, size_t *len);
/* Writes data to path through path.tmp + rename; 0 or -1 with errno. */
int sl_write_file_atomic(const char *path, const void *data, size_t len);
/* An unlinked temporary file in TMPDIR (default /tmp), read-write: O_TMPFILE,
 * else mkstemp named <prefix>-XXXXXX and unlinked at once. The fd, or -1
 * with errno; *dir (may be NULL) says where, for messages. */
int sl_temp_fd(const char *prefix, const char **dir);

/* One-time set-up of the libraries that want it, once per process whoever
 * comes first (any thread): curl_global_init (0, or the CURLcode it
 * failed with), g_mime_init. */
int sl_curl_global(void);
void sl_gmime_global(void);

/* SHA-256 of a file as hex into out[65]; *bytes its size. 0 or -1 errno. */
int sl_sha256_file(const char *path, char out[65], uint64_t *bytes);
/* The same while copying the file to dst (created or truncated) in the same
 * pass; 0 or -1 with errno (of the read or of the write). */
int sl_sha256_copy(const char *path, const char *dst, char out[65], uint64_t *bytes);
/* Hex of n bytes into out (2n+1). */
void sl_hex(const uint8_t *p, size_t n, char *out);

/* Whether s is valid UTF-8 of n bytes. */
bool sl_utf8_valid(const char *s, size_t n);
/* Number of characters (code points) of valid UTF-8. */
size_t sl_utf8_len(const char *s, size_t n);

/* The index of the column that ref names among names[0..n): the exact name
 * first, then case- and space-insensitively (JOBS.md "mapping"); -1 none. */
int sl_column_find(const char *ref, const char *const *names, size_t n);

/* ISO 8601 UTC text of unix microseconds ("2025-12-31T23:00:00.123Z") into
 * out[32]; whole seconds when frac is false. */
void sl_format_utc(int64_t us, bool frac, char out[32]);

#endif
