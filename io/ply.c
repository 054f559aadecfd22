/* ply.c - a PLY header parser and vertex reader (binary little-endian and ASCII, scalar
 * properties of any type, vertex element first; later elements are ignored), the 3DGS
 * field mapping and the 3DGS writer. */
#include "ply.h"
#include "io_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLY_MAX_PROPS 1024

typedef enum { P_I8, P_U8, P_I16, P_U16, P_I32, P_U32, P_F32, P_F64 } ply_type;

static int ply_type_of(const char *s, ply_type *t) {
    static const struct {
        const char *a, *b;
        ply_type t;
    } m[] = {{"char", "int8", P_I8},      {"uchar", "uint8", P_U8},    {"short", "int16", P_I16},
             {"ushort", "uint16", P_U16}, {"int", "int32", P_I32},     {"uint", "uint32", P_U32},
             {"float", "float32", P_F32}, {"double", "float64", P_F64}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(s, m[i].a) || !strcmp(s, m[i].b)) {
            *t = m[i].t;
            return 1;
        }
    return 0;
}

static const int ply_size[] = {1, 1, 2, 2, 4, 4, 4, 8};

void ply_table_free(ply_table *t) {
    if (!t) return;
    for (int i = 0; i < t->nprops; i++)
        free(t->names[i]);
    free(t->names);
    free(t->values);
    memset(t, 0, sizeof *t);
}

int ply_find(const ply_table *t, const char *name) {
    for (int i = 0; i < t->nprops; i++)
        if (!strcmp(t->names[i], name)) return i;
    return -1;
}

/* Copies the next header line (without newline) into line; returns 0 at the buffer's end. */
static int next_line(const uint8_t *buf, size_t len, size_t *pos, char *line, size_t cap) {
    if (*pos >= len) return 0;
    size_t k = 0;
    while (*pos < len && buf[*pos] != '\n') {
        if (k + 1 < cap && buf[*pos] != '\r') line[k++] = (char)buf[*pos];
        (*pos)++;
    }
    if (*pos >= len) return 0; /* a header line must end with a newline */
    (*pos)++;
    line[k] = 0;
    return 1;
}

static float read_bin(const uint8_t *p, ply_type t) {
    uint8_t b[8];
    memcpy(b, p, (size_t)ply_size[t]);
    uint64_t u = 0;
    for (int i = ply_size[t] - 1; i >= 0; i--)
        u = u << 8 | b[i];
    switch (t) {
    case P_I8: return (float)(int8_t)u;
    case P_U8: return (float)(uint8_t)u;
    case P_I16: return (float)(int16_t)u;
    case P_U16: return (float)(uint16_t)u;
    case P_I32: return (float)(int32_t)u;
    case P_U32: return (float)(uint32_t)u;
    case P_F32: {
        uint32_t v = (uint32_t)u;
        float f;
        memcpy(&f, &v, 4);
        return f;
    }
    case P_F64: {
        double d;
        memcpy(&d, &u, 8);
        return (float)d;
    }
    }
    return 0;
}

pk_status ply_parse(const char *name, const uint8_t *buf, size_t len, ply_table *t) {
    memset(t, 0, sizeof *t);
    size_t pos = 0;
    char line[512];
    int lineno = 1;
    if (!next_line(buf, len, &pos, line, sizeof line) || strcmp(line, "ply") != 0)
        return pk_error(PK_ERR_FORMAT, "%s: line 1: expected magic \"ply\"", name);
    int format = -1, in_vertex = 0, seen_element = 0, done = 0;
    long long count = -1;
    ply_type types[PLY_MAX_PROPS];
    t->names = calloc(PLY_MAX_PROPS, sizeof(char *));
    if (!t->names) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    pk_status s = PK_OK;
    while (s == PK_OK && !done) {
        lineno++;
        if (!next_line(buf, len, &pos, line, sizeof line)) {
            s = pk_error(PK_ERR_FORMAT, "%s: line %d: header ends before end_header", name, lineno);
            break;
        }
        char a[64] = "", b[64] = "", c[64] = "", d[64] = "";
        int k = sscanf(line, "%63s %63s %63s %63s", a, b, c, d);
        if (k <= 0) continue;
        if (!strcmp(a, "comment") || !strcmp(a, "obj_info")) continue;
        if (!strcmp(a, "end_header")) {
            done = 1;
        } else if (!strcmp(a, "format")) {
            if (!strcmp(b, "ascii"))
                format = 0;
            else if (!strcmp(b, "binary_little_endian"))
                format = 1;
            else
                s = pk_error(PK_ERR_UNSUPPORTED,
                             "%s: line %d: format \"%s\" not supported (expected ascii or "
                             "binary_little_endian)",
                             name, lineno, b);
        } else if (!strcmp(a, "element")) {
            char *end;
            long long v = strtoll(c, &end, 10);
            if (k < 3 || *end || v < 0) {
                s = pk_error(PK_ERR_FORMAT, "%s: line %d: element count \"%s\" is not a count",
                             name, lineno, c);
            } else if (!seen_element) {
                if (strcmp(b, "vertex") != 0)
                    s = pk_error(PK_ERR_UNSUPPORTED,
                                 "%s: line %d: first element is \"%s\", expected vertex", name,
                                 lineno, b);
                in_vertex = 1;
                count = v;
            } else {
                in_vertex = 0;
            }
            seen_element = 1;
        } else if (!strcmp(a, "property")) {
            if (!in_vertex) continue; /* properties of later elements are never read */
            if (!strcmp(b, "list")) {
                s = pk_error(PK_ERR_UNSUPPORTED, "%s: line %d: list property in vertex element",
                             name, lineno);
            } else if (k < 3 || !ply_type_of(b, &types[t->nprops])) {
                s = pk_error(PK_ERR_FORMAT, "%s: line %d: bad property type \"%s\"", name, lineno,
                             b);
            } else if (t->nprops == PLY_MAX_PROPS) {
                s = pk_error(PK_ERR_UNSUPPORTED, "%s: line %d: more than %d vertex properties",
                             name, lineno, PLY_MAX_PROPS);
            } else {
                for (int i = 0; i < t->nprops && s == PK_OK; i++)
                    if (!strcmp(t->names[i], c))
                        s = pk_error(PK_ERR_FORMAT, "%s: line %d: property \"%s\" repeated", name,
                                     lineno, c);
                if (s == PK_OK && !(t->names[t->nprops++] = io_strdup(c))) s = PK_ERR_NOMEM;
            }
        } else {
            s = pk_error(PK_ERR_FORMAT, "%s: line %d: unknown header keyword \"%s\"", name, lineno,
                         a);
        }
    }
    if (s == PK_OK && format < 0)
        s = pk_error(PK_ERR_FORMAT, "%s: header has no format line", name);
    if (s == PK_OK && (count < 0 || t->nprops == 0))
        s = pk_error(PK_ERR_FORMAT, "%s: header has no vertex element with properties", name);
    if (s != PK_OK) {
        ply_table_free(t);
        return s;
    }
    t->binary = format;
    size_t stride = 0;
    for (int i = 0; i < t->nprops; i++)
        stride += (size_t)ply_size[types[i]];
    size_t left = len - pos, need;
    /* Each vertex needs >= stride bytes (binary) or >= 2 chars per value (ASCII): a count
     * that cannot fit is a lying header, caught before allocating for it. */
    size_t per = format ? stride : (size_t)t->nprops * 2;
    if (!io_mul_ok((size_t)count, per, &need) || need > left ||
        (size_t)count > SIZE_MAX / sizeof(float) / (size_t)t->nprops) {
        ply_table_free(t);
        return pk_error(PK_ERR_FORMAT,
                        "%s: truncated: header declares %lld vertices of %zu bytes but only %zu "
                        "bytes follow the header",
                        name, count, per, left);
    }
    t->n = (size_t)count;
    t->values = malloc(sizeof(float) * (t->n ? t->n : 1) * (size_t)t->nprops);
    if (!t->values) {
        ply_table_free(t);
        return pk_error(PK_ERR_NOMEM, "%s: out of memory for %lld vertices", name, count);
    }
    if (format) {
        const uint8_t *p = buf + pos;
        for (size_t v = 0; v < t->n; v++)
            for (int i = 0; i < t->nprops; i++) {
                t->values[v * (size_t)t->nprops + (size_t)i] = read_bin(p, types[i]);
                p += ply_size[types[i]];
            }
        return PK_OK;
    }
    /* ASCII: one vertex per line; tokens parsed with strtod over a bounded copy. */
    for (size_t v = 0; v < t->n; v++) {
        size_t start = pos;
        while (pos < len && buf[pos] != '\n')
            pos++;
        size_t ll = pos - start;
        char *row = malloc(ll + 1);
        if (!row) {
            ply_table_free(t);
            return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
        }
        memcpy(row, buf + start, ll);
        row[ll] = 0;
        if (pos < len) pos++;
        char *p = row, *end;
        for (int i = 0; i < t->nprops; i++) {
            double x = strtod(p, &end);
            if (end == p) {
                s = pk_error(PK_ERR_FORMAT,
                             "%s: vertex %zu: property %d (\"%s\"): expected a number", name, v, i,
                             t->names[i]);
                free(row);
                ply_table_free(t);
                return s;
            }
            t->values[v * (size_t)t->nprops + (size_t)i] = (float)x;
            p = end;
        }
        free(row);
    }
    return PK_OK;
}

pk_status ply_read(const char *path, ply_table *t) {
    memset(t, 0, sizeof *t);
    uint8_t *buf;
    size_t len;
    PK_TRY(io_read_file(path, &buf, &len));
    pk_status s = ply_parse(path, buf, len, t);
    free(buf);
    return s;
}

static size_t sh_rest(int d) { return (size_t)(3 * ((d + 1) * (d + 1) - 1)); }

pk_status gaussians_create(pk_gaussians *g, size_t n, int sh_degree) {
    memset(g, 0, sizeof *g);
    if (sh_degree < 0 || sh_degree > 3)
        return pk_error(PK_ERR_INVALID, "gaussians_create: SH degree %d not in 0..3", sh_degree);
    size_t m = n ? n : 1;
    g->n = n;
    g->sh_degree = sh_degree;
    g->xyz = calloc(m * 3, sizeof(float));
    g->f_dc = calloc(m * 3, sizeof(float));
    g->f_rest = calloc(m * (sh_rest(sh_degree) ? sh_rest(sh_degree) : 1), sizeof(float));
    g->opacity = calloc(m, sizeof(float));
    g->scale = calloc(m * 3, sizeof(float));
    g->rot = calloc(m * 4, sizeof(float));
    if (!g->xyz || !g->f_dc || !g->f_rest || !g->opacity || !g->scale || !g->rot) {
        gaussians_free(g);
        return pk_error(PK_ERR_NOMEM, "gaussians_create: out of memory for %zu Gaussians", n);
    }
    return PK_OK;
}

void gaussians_free(pk_gaussians *g) {
    if (!g) return;
    free(g->xyz);
    free(g->f_dc);
    free(g->f_rest);
    free(g->opacity);
    free(g->scale);
    free(g->rot);
    memset(g, 0, sizeof *g);
}

pk_status ply_table_to_gaussians(const char *name, const ply_table *t, pk_gaussians *g) {
    memset(g, 0, sizeof *g);
    int nrest = 0;
    char buf[32];
    for (;; nrest++) {
        snprintf(buf, sizeof buf, "f_rest_%d", nrest);
        if (ply_find(t, buf) < 0) break;
    }
    int deg = -1;
    for (int d = 0; d <= 3; d++)
        if ((size_t)nrest == sh_rest(d)) deg = d;
    if (deg < 0)
        return pk_error(PK_ERR_FORMAT,
                        "%s: %d f_rest_* properties do not match an SH degree (0, 9, 24 or 45)",
                        name, nrest);
    static const char *req[] = {"x",      "y",       "z",       "f_dc_0",  "f_dc_1",
                                "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                                "rot_0",  "rot_1",   "rot_2",   "rot_3"};
    int col[14];
    for (int i = 0; i < 14; i++)
        if ((col[i] = ply_find(t, req[i])) < 0)
            return pk_error(PK_ERR_FORMAT, "%s: not a 3DGS PLY: vertex property \"%s\" missing",
                            name, req[i]);
    PK_TRY(gaussians_create(g, t->n, deg));
    size_t nr = sh_rest(deg);
    int *rc = malloc(sizeof(int) * (nr ? nr : 1));
    if (!rc) {
        gaussians_free(g);
        return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    }
    for (size_t k = 0; k < nr; k++) {
        snprintf(buf, sizeof buf, "f_rest_%zu", k);
        rc[k] = ply_find(t, buf);
    }
    for (size_t v = 0; v < t->n; v++) {
        const float *row = t->values + v * (size_t)t->nprops;
        for (int i = 0; i < 14; i++)
            if (!isfinite(row[col[i]])) {
                free(rc);
                gaussians_free(g);
                return pk_error(PK_ERR_FORMAT, "%s: vertex %zu: property \"%s\" is not finite",
                                name, v, req[i]);
            }
        for (int k = 0; k < 3; k++) {
            g->xyz[v * 3 + k] = row[col[k]];
            g->f_dc[v * 3 + k] = row[col[3 + k]];
            g->scale[v * 3 + k] = row[col[7 + k]];
        }
        g->opacity[v] = row[col[6]];
        for (int k = 0; k < 4; k++)
            g->rot[v * 4 + k] = row[col[10 + k]];
        for (size_t k = 0; k < nr; k++) {
            float x = row[rc[k]];
            if (!isfinite(x)) {
                free(rc);
                gaussians_free(g);
                return pk_error(PK_ERR_FORMAT,
                                "%s: vertex %zu: property \"f_rest_%zu\" is not "
                                "finite",
                                name, v, k);
            }
            g->f_rest[v * nr + k] = x;
        }
    }
    free(rc);
    return PK_OK;
}

pk_status ply_read_3dgs(const char *path, pk_gaussians *g) {
    memset(g, 0, sizeof *g);
    ply_table t;
    PK_TRY(ply_read(path, &t));
    pk_status s = ply_table_to_gaussians(path, &t, g);
    ply_table_free(&t);
    return s;
}

pk_status ply_write_3dgs(const char *path, const pk_gaussians *g) {
    if (!g || g->sh_degree < 0 || g->sh_degree > 3)
        return pk_error(PK_ERR_INVALID, "%s: ply_write_3dgs: bad Gaussians", path);
    size_t nr = sh_rest(g->sh_degree);
    io_atomic a;
    PK_TRY(io_atomic_open(&a, path));
    FILE *f = a.f;
    fprintf(f, "ply\nformat binary_little_endian 1.0\nelement vertex %zu\n", g->n);
    const char *head[] = {"x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"};
    for (int i = 0; i < 9; i++)
        fprintf(f, "property float %s\n", head[i]);
    for (size_t k = 0; k < nr; k++)
        fprintf(f, "property float f_rest_%zu\n", k);
    const char *tail[] = {"opacity", "scale_0", "scale_1", "scale_2",
                          "rot_0",   "rot_1",   "rot_2",   "rot_3"};
    for (int i = 0; i < 8; i++)
        fprintf(f, "property float %s\n", tail[i]);
    fprintf(f, "end_header\n");
    size_t per = 9 + nr + 8;
    float *row = malloc(sizeof(float) * per);
    if (!row) {
        io_atomic_abort(&a);
        return pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
    }
    int ok = 1;
    for (size_t v = 0; v < g->n && ok; v++) {
        size_t k = 0;
        for (int i = 0; i < 3; i++)
            row[k++] = g->xyz[v * 3 + i];
        for (int i = 0; i < 3; i++)
            row[k++] = 0.0f;
        for (int i = 0; i < 3; i++)
            row[k++] = g->f_dc[v * 3 + i];
        for (size_t i = 0; i < nr; i++)
            row[k++] = g->f_rest[v * nr + i];
        row[k++] = g->opacity[v];
        for (int i = 0; i < 3; i++)
            row[k++] = g->scale[v * 3 + i];
        for (int i = 0; i < 4; i++)
            row[k++] = g->rot[v * 4 + i];
        /* The format is little-endian; so are all hosts Polyak supports (static assert below). */
        ok = fwrite(row, sizeof(float), per, f) == per;
    }
    free(row);
    if (!ok) {
        pk_status s = pk_error(PK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        io_atomic_abort(&a);
        return s;
    }
    return io_atomic_commit(&a);
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ply.c writes host floats as LE");

pk_status ply_table_to_points(const char *name, const ply_table *t, float **xyz, uint8_t **rgb) {
    *xyz = NULL;
    *rgb = NULL;
    int c[6] = {ply_find(t, "x"),   ply_find(t, "y"),     ply_find(t, "z"),
                ply_find(t, "red"), ply_find(t, "green"), ply_find(t, "blue")};
    if (c[0] < 0 || c[1] < 0 || c[2] < 0)
        return pk_error(PK_ERR_FORMAT, "%s: vertex properties x, y, z required", name);
    *xyz = malloc(sizeof(float) * 3 * (t->n ? t->n : 1));
    *rgb = malloc(3 * (t->n ? t->n : 1));
    if (!*xyz || !*rgb) {
        free(*xyz);
        free(*rgb);
        *xyz = NULL;
        *rgb = NULL;
        return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    }
    for (size_t v = 0; v < t->n; v++) {
        const float *row = t->values + v * (size_t)t->nprops;
        for (int k = 0; k < 3; k++) {
            float x = row[c[k]];
            if (!isfinite(x)) {
                free(*xyz);
                free(*rgb);
                *xyz = NULL;
                *rgb = NULL;
                return pk_error(PK_ERR_FORMAT, "%s: vertex %zu: coordinate %c is not finite", name,
                                v, "xyz"[k]);
            }
            (*xyz)[v * 3 + k] = x;
            float col = c[3 + k] >= 0 ? row[c[3 + k]] : 255.0f;
            /* NaN colours become 0: casting NaN to an integer is undefined (found by fuzz_ply). */
            (*rgb)[v * 3 + k] = (uint8_t)(!(col > 0) ? 0 : col > 255 ? 255 : col);
        }
    }
    return PK_OK;
}
