/* io_util.h - helpers shared by io/ readers and writers: whole-file reads, gzip, little-endian
 * cursors over memory, checked sizes, path joins and the atomic (tmp + fsync + rename) write.
 * Format-specific parsing lives in each format's own file. */
#ifndef POLYAK_IO_UTIL_H
#define POLYAK_IO_UTIL_H
#include "status.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Reads a whole file into a malloc'd buffer (NUL-terminated, not counted in *len). */
pk_status io_read_file(const char *path, uint8_t **buf, size_t *len);

/* If buf starts with the gzip magic, inflates it (at most max_out bytes) into a new buffer
 * that replaces *buf and *len; otherwise leaves them unchanged. `name` is used in messages. */
pk_status io_gunzip_maybe(const char *name, uint8_t **buf, size_t *len, size_t max_out);

/* A bounds-checked little-endian reader over memory; any short read sets `bad`. */
typedef struct io_cursor {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} io_cursor;

/* Copies n bytes out of the cursor, or sets bad and zero-fills when fewer remain. */
void cursor_read(io_cursor *c, void *out, size_t n);
/* Reads one byte. */
uint8_t cursor_u8(io_cursor *c);
/* Reads a little-endian uint32. */
uint32_t cursor_u32(io_cursor *c);
/* Reads a little-endian uint64. */
uint64_t cursor_u64(io_cursor *c);
/* Reads a little-endian int32. */
int32_t cursor_i32(io_cursor *c);
/* Reads a little-endian int64. */
int64_t cursor_i64(io_cursor *c);
/* Reads a little-endian IEEE double. */
double cursor_f64(io_cursor *c);
/* Bytes left after the cursor's position. */
size_t cursor_left(const io_cursor *c);

/* Multiplies a*b into *out; returns 0 on size_t overflow. */
int io_mul_ok(size_t a, size_t b, size_t *out);

/* Joins dir and name with one '/', into a malloc'd string (NULL when out of memory). */
char *io_path_join(const char *dir, const char *name);
/* Returns 1 when path names an existing regular file. */
int io_is_file(const char *path);
/* Returns 1 when path names an existing folder. */
int io_is_dir(const char *path);
/* strdup that records PK_ERR_NOMEM on failure (returns NULL). */
char *io_strdup(const char *s);

/* A file being written as `<path>.tmp` and renamed over `path` on commit. */
typedef struct io_atomic {
    FILE *f;
    char *path, *tmp;
} io_atomic;

/* Opens `<path>.tmp` in path's folder for writing. */
pk_status io_atomic_open(io_atomic *a, const char *path);
/* Flushes, fsyncs, closes, renames over path and fsyncs the folder; aborts on failure. */
pk_status io_atomic_commit(io_atomic *a);
/* Closes and deletes the temporary file (safe after commit or a failed open). */
void io_atomic_abort(io_atomic *a);

/* Returns 1 when x is neither NaN nor infinite. */
int io_finite(double x);

#endif
