/* io_util.c - whole-file reads, gzip inflation, little-endian memory cursors, path helpers and
 * the atomic write (tmp file in the same folder, fsync, rename, fsync folder). */
#include "io_util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

pk_status io_read_file(const char *path, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return pk_error(PK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return pk_error(PK_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return pk_error(PK_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(b, 1, n, f);
    fclose(f);
    if (got != n) {
        free(b);
        return pk_error(PK_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return PK_OK;
}

pk_status io_gunzip_maybe(const char *name, uint8_t **buf, size_t *len, size_t max_out) {
    if (*len < 2 || (*buf)[0] != 0x1f || (*buf)[1] != 0x8b) return PK_OK;
    size_t cap = (*len) * 4 + 1024, used = 0;
    if (cap > max_out + 1) cap = max_out + 1;
    uint8_t *out = malloc(cap + 1);
    if (!out) return pk_error(PK_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(out);
        return pk_error(PK_ERR_NOMEM, "%s: inflateInit2 failed", name);
    }
    zs.next_in = *buf;
    zs.avail_in = (uInt)(*len > 0xffffffffu ? 0xffffffffu : *len);
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (used == cap) {
            if (cap > max_out) {
                inflateEnd(&zs);
                free(out);
                return pk_error(PK_ERR_FORMAT, "%s: gzip stream inflates past %zu bytes", name,
                                max_out);
            }
            size_t ncap = cap * 2 > max_out + 1 ? max_out + 1 : cap * 2;
            uint8_t *n2 = realloc(out, ncap + 1);
            if (!n2) {
                inflateEnd(&zs);
                free(out);
                return pk_error(PK_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, ncap);
            }
            out = n2;
            cap = ncap;
        }
        size_t room = cap - used;
        zs.next_out = out + used;
        zs.avail_out = (uInt)(room > 0x40000000u ? 0x40000000u : room);
        uInt before = zs.avail_out;
        rc = inflate(&zs, Z_NO_FLUSH);
        used += before - zs.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs.avail_out == 0)) {
            inflateEnd(&zs);
            free(out);
            return pk_error(PK_ERR_FORMAT, "%s: corrupt or truncated gzip stream at byte %lu (%s)",
                            name, (unsigned long)zs.total_in, zs.msg ? zs.msg : "unexpected end");
        }
    }
    inflateEnd(&zs);
    out[used] = 0;
    free(*buf);
    *buf = out;
    *len = used;
    return PK_OK;
}

void cursor_read(io_cursor *c, void *out, size_t n) {
    if (c->bad || c->len - c->pos < n) {
        c->bad = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, c->p + c->pos, n);
    c->pos += n;
}

uint8_t cursor_u8(io_cursor *c) {
    uint8_t v;
    cursor_read(c, &v, 1);
    return v;
}

uint32_t cursor_u32(io_cursor *c) {
    uint8_t b[4];
    cursor_read(c, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

uint64_t cursor_u64(io_cursor *c) {
    uint64_t lo = cursor_u32(c), hi = cursor_u32(c);
    return lo | hi << 32;
}

int32_t cursor_i32(io_cursor *c) {
    uint32_t u = cursor_u32(c);
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

int64_t cursor_i64(io_cursor *c) {
    uint64_t u = cursor_u64(c);
    int64_t v;
    memcpy(&v, &u, 8);
    return v;
}

double cursor_f64(io_cursor *c) {
    uint64_t u = cursor_u64(c);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

size_t cursor_left(const io_cursor *c) { return c->bad ? 0 : c->len - c->pos; }

int io_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

char *io_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int io_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int io_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *io_strdup(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (!p) {
        pk_error(PK_ERR_NOMEM, "cannot allocate %zu bytes", n + 1);
        return NULL;
    }
    memcpy(p, s, n + 1);
    return p;
}

pk_status io_atomic_open(io_atomic *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->path = io_strdup(path);
    size_t n = strlen(path);
    a->tmp = malloc(n + 5);
    if (!a->path || !a->tmp) {
        io_atomic_abort(a);
        return pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(a->tmp, path, n);
    memcpy(a->tmp + n, ".tmp", 5);
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        pk_status s = pk_error(PK_ERR_IO, "%s: cannot create: %s", a->tmp, strerror(errno));
        io_atomic_abort(a);
        return s;
    }
    return PK_OK;
}

/* fsyncs the folder holding path so that the rename itself is durable. */
static pk_status fsync_parent(const char *path) {
    char *copy = io_strdup(path);
    if (!copy) return PK_ERR_NOMEM;
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        pk_status s = pk_error(PK_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
        free(copy);
        return s;
    }
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    pk_status s = PK_OK;
    /* Some filesystems refuse fsync on a folder (EINVAL); the rename has still happened. */
    if (rc != 0 && err != EINVAL)
        s = pk_error(PK_ERR_IO, "%s: fsync folder: %s", dir, strerror(err));
    free(copy);
    return s;
}

pk_status io_atomic_commit(io_atomic *a) {
    pk_status s = PK_OK;
    if (fflush(a->f) != 0 || ferror(a->f))
        s = pk_error(PK_ERR_IO, "%s: write failed: %s", a->tmp, strerror(errno));
    else if (fsync(fileno(a->f)) != 0)
        s = pk_error(PK_ERR_IO, "%s: fsync failed: %s", a->tmp, strerror(errno));
    if (fclose(a->f) != 0 && s == PK_OK)
        s = pk_error(PK_ERR_IO, "%s: close failed: %s", a->tmp, strerror(errno));
    a->f = NULL;
    if (s == PK_OK && rename(a->tmp, a->path) != 0)
        s = pk_error(PK_ERR_IO, "%s: rename to %s failed: %s", a->tmp, a->path, strerror(errno));
    if (s != PK_OK) {
        io_atomic_abort(a);
        return s;
    }
    s = fsync_parent(a->path);
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return s;
}

void io_atomic_abort(io_atomic *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) remove(a->tmp);
    free(a->tmp);
    free(a->path);
    a->f = NULL;
    a->tmp = a->path = NULL;
}

int io_finite(double x) { return isfinite(x); }
