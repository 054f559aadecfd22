/* safetensors.c - safetensors read (mmap + strict header validation) and write. Layout: an
 * 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets}},
 * optional "__metadata__": {string: string}), then the data section that offsets refer to. */
#include "safetensors.h"
#include "io_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The header JSON may not exceed this (the reference implementation uses 100 MB). */
#define ST_MAX_HEADER (100u * 1024u * 1024u)

static const char *const st_names[] = {"F32", "F16", "BF16", "I32", "I64", "U8"};
static const size_t st_sizes[] = {4, 2, 2, 4, 8, 1};

const char *st_dtype_name(st_dtype d) { return (unsigned)d < 6 ? st_names[d] : "?"; }
size_t st_dtype_size(st_dtype d) { return (unsigned)d < 6 ? st_sizes[d] : 0; }

size_t st_tensor_numel(const st_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

void safetensors_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

typedef struct st_span {
    size_t begin, end;
    int idx;
} st_span;

static int span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Reads a JSON number that must be a non-negative integer below 2^53 into *out. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static pk_status st_parse_meta(const char *name, const cJSON *m, st_file *f) {
    if (!cJSON_IsObject(m))
        return pk_error(PK_ERR_FORMAT, "%s: header field __metadata__: expected an object", name);
    int n = cJSON_GetArraySize(m);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e))
            return pk_error(PK_ERR_FORMAT, "%s: __metadata__ entry \"%s\": expected a string value",
                            name, e->string);
        f->meta_keys[f->n_meta] = io_strdup(e->string);
        f->meta_values[f->n_meta] = io_strdup(e->valuestring);
        if (!f->meta_keys[f->n_meta] || !f->meta_values[f->n_meta]) {
            f->n_meta++;
            return PK_ERR_NOMEM;
        }
        f->n_meta++;
    }
    return PK_OK;
}

static pk_status st_parse_tensor(const char *name, const cJSON *e, size_t data_len, st_tensor *t,
                                 st_span *span) {
    const char *tn = e->string;
    if (!cJSON_IsObject(e))
        return pk_error(PK_ERR_FORMAT, "%s: tensor \"%s\": expected an object", name, tn);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return pk_error(PK_ERR_FORMAT, "%s: tensor \"%s\": field dtype missing or not a string",
                        name, tn);
    int d = -1;
    for (int i = 0; i < 6; i++)
        if (strcmp(dt->valuestring, st_names[i]) == 0) d = i;
    if (d < 0)
        return pk_error(PK_ERR_UNSUPPORTED,
                        "%s: tensor \"%s\": dtype \"%s\" not supported (expected F32, F16, BF16, "
                        "I32, I64 or U8)",
                        name, tn, dt->valuestring);
    t->dtype = (st_dtype)d;
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ST_MAX_DIMS)
        return pk_error(PK_ERR_FORMAT,
                        "%s: tensor \"%s\": field shape missing, not an array or over %d dims",
                        name, tn, ST_MAX_DIMS);
    t->ndim = 0;
    size_t numel = 1;
    int overflow = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, sh) {
        uint64_t v;
        if (!json_uint(s, &v))
            return pk_error(PK_ERR_FORMAT,
                            "%s: tensor \"%s\": shape[%d] is not a non-negative integer", name, tn,
                            t->ndim);
        t->shape[t->ndim++] = (int64_t)v;
        if (!io_mul_ok(numel, (size_t)v, &numel)) overflow = 1;
    }
    uint64_t b0, b1;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_uint(cJSON_GetArrayItem(off, 0), &b0) || !json_uint(cJSON_GetArrayItem(off, 1), &b1))
        return pk_error(PK_ERR_FORMAT,
                        "%s: tensor \"%s\": field data_offsets must be [begin, end] integers", name,
                        tn);
    if (b0 > b1 || b1 > data_len)
        return pk_error(PK_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets [%llu, %llu] outside the data section of "
                        "%zu bytes",
                        name, tn, (unsigned long long)b0, (unsigned long long)b1, data_len);
    size_t want;
    if (overflow || !io_mul_ok(numel, st_sizes[d], &want) || want != b1 - b0)
        return pk_error(PK_ERR_FORMAT,
                        "%s: tensor \"%s\": shape x dtype size is %s bytes but data_offsets span "
                        "%llu bytes",
                        name, tn, overflow ? "over 2^64" : "a different number of",
                        (unsigned long long)(b1 - b0));
    t->nbytes = (size_t)(b1 - b0);
    span->begin = (size_t)b0;
    span->end = (size_t)b1;
    return PK_OK;
}

pk_status safetensors_parse(const char *name, const uint8_t *buf, size_t len, st_file *f) {
    memset(f, 0, sizeof *f);
    if (len < 8)
        return pk_error(PK_ERR_FORMAT,
                        "%s: truncated: %zu bytes, need at least the 8-byte header "
                        "length",
                        name, len);
    io_cursor c = {buf, len, 0, 0};
    uint64_t hlen = cursor_u64(&c);
    if (hlen > len - 8 || hlen > ST_MAX_HEADER || hlen < 2)
        return pk_error(PK_ERR_FORMAT,
                        "%s: header length %llu does not fit the file (%zu bytes after the "
                        "length field, limit %u)",
                        name, (unsigned long long)hlen, len - 8, ST_MAX_HEADER);
    const char *json = (const char *)buf + 8;
    if (buf[8] != '{') return pk_error(PK_ERR_FORMAT, "%s: header must start with '{'", name);
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, NULL, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pk_error(PK_ERR_FORMAT, "%s: header is not a valid JSON object", name);
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    int count = cJSON_GetArraySize(root);
    st_span *spans = calloc((size_t)count + 1, sizeof *spans);
    f->tensors = calloc((size_t)count + 1, sizeof *f->tensors);
    pk_status s = PK_OK;
    if (!spans || !f->tensors) s = pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    const cJSON *e;
    int have_meta = 0;
    for (e = root->child; e && s == PK_OK; e = e->next) {
        if (!e->string) continue;
        if (strcmp(e->string, "__metadata__") == 0) {
            if (have_meta++) {
                s = pk_error(PK_ERR_FORMAT, "%s: __metadata__ appears twice", name);
                break;
            }
            s = st_parse_meta(name, e, f);
            continue;
        }
        for (int i = 0; i < f->n && s == PK_OK; i++)
            if (strcmp(f->tensors[i].name, e->string) == 0)
                s = pk_error(PK_ERR_FORMAT, "%s: tensor \"%s\" appears twice", name, e->string);
        if (s != PK_OK) break;
        st_tensor *t = &f->tensors[f->n];
        t->name = io_strdup(e->string);
        if (!t->name) {
            s = PK_ERR_NOMEM;
            break;
        }
        f->n++;
        s = st_parse_tensor(name, e, data_len, t, &spans[f->n - 1]);
        spans[f->n - 1].idx = f->n - 1;
        t->data = data + spans[f->n - 1].begin;
    }
    cJSON_Delete(root);
    if (s == PK_OK && f->n > 1) {
        qsort(spans, (size_t)f->n, sizeof *spans, span_cmp);
        for (int i = 1; i < f->n && s == PK_OK; i++)
            if (spans[i].begin < spans[i - 1].end)
                s = pk_error(PK_ERR_FORMAT,
                             "%s: tensors \"%s\" and \"%s\" overlap (bytes %zu..%zu and %zu..%zu)",
                             name, f->tensors[spans[i - 1].idx].name, f->tensors[spans[i].idx].name,
                             spans[i - 1].begin, spans[i - 1].end, spans[i].begin, spans[i].end);
    }
    free(spans);
    if (s != PK_OK) safetensors_close(f);
    return s;
}

pk_status safetensors_open(const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return pk_error(PK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pk_error(PK_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    if (len < 8) {
        close(fd);
        return pk_error(PK_ERR_FORMAT, "%s: truncated: %zu bytes, need at least 8", path, len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return pk_error(PK_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    pk_status s = safetensors_parse(path, map, len, f);
    if (s != PK_OK) {
        munmap(map, len);
        return s;
    }
    f->map = map;
    f->map_len = len;
    return PK_OK;
}

const st_tensor *safetensors_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *safetensors_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, bits;
    if (e == 0) {
        float v = ldexpf((float)m, -24); /* zero or subnormal */
        return sign ? -v : v;
    }
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else
        bits = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if (isnan(f)) return (uint16_t)((b >> 16) | 0x40);
    b += 0x7fff + ((b >> 16) & 1);
    return (uint16_t)(b >> 16);
}

uint16_t st_f32_to_f16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000);
    if (isnan(f)) return sign | 0x7e00;
    float a = fabsf(f);
    if (a >= 65520.0f) return sign | 0x7c00; /* rounds to infinity */
    if (a < 6.103515625e-05f) {              /* subnormal: multiple of 2^-24, nearest-even */
        float q = rintf(a * 16777216.0f);
        return sign | (uint16_t)q;
    }
    uint32_t e = ((b >> 23) & 255) - 112, m = b & 0x7fffff;
    uint32_t r = (e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}

pk_status st_tensor_to_f32(const st_tensor *t, float *out) {
    size_t n = st_tensor_numel(t);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, n * 4); return PK_OK;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            out[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        return PK_OK;
    default:
        return pk_error(PK_ERR_INVALID, "tensor \"%s\": dtype %s is not a float type", t->name,
                        st_dtype_name(t->dtype));
    }
}

pk_status safetensors_write(const char *path, const st_write_tensor *tensors, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
    pk_status s = PK_OK;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < n_meta && m; i++)
            if (!cJSON_AddStringToObject(m, meta_keys[i], meta_values[i])) m = NULL;
        if (!m) s = pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t off = 0;
    for (int i = 0; i < n && s == PK_OK; i++) {
        const st_write_tensor *t = &tensors[i];
        if (!t->name || (unsigned)t->dtype > ST_U8 || t->ndim < 0 || t->ndim > ST_MAX_DIMS ||
            strcmp(t->name, "__metadata__") == 0 ||
            cJSON_GetObjectItemCaseSensitive(root, t->name)) {
            s = pk_error(PK_ERR_INVALID, "%s: tensor %d (\"%s\"): bad name, dtype or rank", path, i,
                         t->name ? t->name : "(null)");
            break;
        }
        size_t bytes = st_sizes[t->dtype];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        for (int d = 0; d < t->ndim && sh; d++) {
            if (t->shape[d] < 0) {
                s = pk_error(PK_ERR_INVALID, "%s: tensor \"%s\": negative shape", path, t->name);
                break;
            }
            bytes *= (size_t)t->shape[d];
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        }
        if (s != PK_OK) break;
        cJSON *o = sh ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!o || !cJSON_AddStringToObject(e, "dtype", st_names[t->dtype])) {
            s = pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    char *json = s == PK_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (s != PK_OK) return s;
    if (!json) return pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
    /* Pad the header with spaces so the data section starts 8-byte aligned. */
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    io_atomic a;
    s = io_atomic_open(&a, path);
    if (s != PK_OK) {
        free(json);
        return s;
    }
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(lenb, 1, 8, a.f) == 8 && fwrite(json, 1, jl, a.f) == jl;
    for (size_t i = jl; i < padded && ok; i++)
        ok = fputc(' ', a.f) != EOF;
    free(json);
    for (int i = 0; i < n && ok; i++) {
        size_t bytes = st_sizes[tensors[i].dtype];
        for (int d = 0; d < tensors[i].ndim; d++)
            bytes *= (size_t)tensors[i].shape[d];
        ok = bytes == 0 || fwrite(tensors[i].data, 1, bytes, a.f) == bytes;
    }
    if (!ok) {
        s = pk_error(PK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        io_atomic_abort(&a);
        return s;
    }
    return io_atomic_commit(&a);
}
