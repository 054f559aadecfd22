/* report.c - `polyak report` (report.h): reads run folders (options.json, metrics.json,
 * log.csv, run.json, renders/), says what is missing or malformed, and writes one HTML page
 * with the style sheet, the plots (svg.c) and a few lines of script for hover values and
 * enlarging images. */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "image.h"
#include "io_util.h"

#define MAX_GALLERY 48    /* held-out renders embedded per run */
#define THUMB_WIDTH 960   /* wider renders are resized to this width before embedding */
#define MAX_TABLE_ARRAY 8 /* arrays up to this length are written out in the metrics table */

/* ---- one run folder ---- */

typedef struct rp_log {
    int ncols, nrows;
    char **cols;
    double *v; // (nrows, ncols)
    char *header;
} rp_log;

typedef struct rp_run {
    const char *dir;
    char label[256];
    bool exists;
    cJSON *metrics, *options, *info; /* NULL when missing or malformed */
    rp_log log;
    const char *kind;
    bool kind_inferred;
    svg_buf problems; /* <li> items */
    double options_mtime, metrics_mtime;
} rp_run;

static void problem(rp_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(rp_run *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    svg_printf(&r->problems, "<li>");
    svg_text(&r->problems, msg);
    svg_printf(&r->problems, "</li>");
}

/* The modification time of path (seconds since the epoch), or NaN. */
static double file_mtime(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return NAN;
    return (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
}

/* Reads <dir>/<name> as text; NULL (and *why set) when missing or unreadable. */
static char *read_text(const char *dir, const char *name, const char **why, double *mtime) {
    char *p = io_path_join(dir, name);
    *why = NULL;
    if (!p) {
        *why = "out of memory";
        return NULL;
    }
    if (mtime) *mtime = file_mtime(p);
    if (!io_is_file(p)) {
        *why = "missing";
        free(p);
        return NULL;
    }
    uint8_t *b = NULL;
    size_t n = 0;
    pk_status s = io_read_file(p, &b, &n);
    free(p);
    if (s != PK_OK) {
        *why = "unreadable";
        return NULL;
    }
    char *t = realloc(b, n + 1);
    if (!t) {
        free(b);
        *why = "out of memory";
        return NULL;
    }
    t[n] = 0;
    if (strlen(t) != n) {
        free(t);
        *why = "not text (it holds NUL bytes)";
        return NULL;
    }
    return t;
}

/* Parses <dir>/<name> as a JSON object; notes a problem naming `role` when it cannot. */
static cJSON *read_json(rp_run *r, const char *name, const char *role, double *mtime) {
    const char *why;
    char *t = read_text(r->dir, name, &why, mtime);
    if (!t) {
        problem(r, "%s is %s: %s", name, why, role);
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(t, &end, true);
    if (!j) {
        int line = 1;
        for (const char *q = t; end && q < end; q++)
            line += *q == '\n';
        problem(r, "%s is not valid JSON (line %d): %s", name, line, role);
    } else if (!cJSON_IsObject(j)) {
        problem(r, "%s holds no JSON object: %s", name, role);
        cJSON_Delete(j);
        j = NULL;
    }
    free(t);
    return j;
}

/* Splits a CSV line in place at commas; returns the field count (at most max). */
static int split(char *line, char **f, int max) {
    int n = 0;
    char *q = line;
    while (n < max) {
        f[n++] = q;
        char *c = strchr(q, ',');
        if (!c) break;
        *c = 0;
        q = c + 1;
    }
    return n;
}

/* Reads log.csv: the header's columns and the rows of numbers; malformed rows are named and
 * skipped. */
static void read_csv(rp_run *r, const char *name, rp_log *L) {
    const char *why;
    char *t = read_text(r->dir, name, &why, NULL);
    if (!t) {
        problem(r, "%s is %s: no curves", name, why);
        return;
    }
    char *save = NULL;
    char *line = strtok_r(t, "\n", &save);
    if (!line) {
        problem(r, "%s is empty: no curves", name);
        free(t);
        return;
    }
    size_t hl = strlen(line);
    if (hl && line[hl - 1] == '\r') line[--hl] = 0;
    L->header = io_strdup(line);
    int max = 1;
    for (char *q = line; *q; q++)
        max += *q == ',';
    L->cols = calloc((size_t)max, sizeof *L->cols);
    char **f = calloc((size_t)max + 1, sizeof *f);
    if (!L->cols || !f || !L->header) {
        problem(r, "%s: out of memory", name);
        free(f), free(t);
        return;
    }
    L->ncols = split(line, f, max);
    for (int i = 0; i < L->ncols; i++)
        L->cols[i] = io_strdup(f[i]);
    size_t cap = 0;
    int lineno = 1, bad = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        lineno++;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = 0;
        if (!ll) continue;
        int n = split(line, f, max + 1);
        bool ok = n == L->ncols;
        double row[256];
        double *vals = L->ncols <= 256 ? row : malloc(sizeof(double) * (size_t)L->ncols);
        for (int i = 0; ok && i < n; i++) {
            char *e = NULL;
            vals[i] = strtod(f[i], &e);
            ok = e != f[i] && *e == 0;
        }
        if (!ok) {
            if (bad++ < 3) {
                if (n != L->ncols)
                    problem(r, "%s line %d: expected %d fields, found %d: row skipped", name,
                            lineno, L->ncols, n);
                else
                    for (int i = 0; i < n; i++) {
                        char *e = NULL;
                        strtod(f[i], &e);
                        if (e == f[i] || *e) {
                            problem(r, "%s line %d: '%.40s' is not a number: row skipped", name,
                                    lineno, f[i]);
                            break;
                        }
                    }
            }
        } else {
            if ((size_t)L->nrows + 1 > cap) {
                cap = cap ? 2 * cap : 256;
                double *nv = realloc(L->v, sizeof(double) * cap * (size_t)L->ncols);
                if (!nv) {
                    if (vals != row) free(vals);
                    problem(r, "%s: out of memory after %d rows", name, L->nrows);
                    break;
                }
                L->v = nv;
            }
            memcpy(L->v + (size_t)L->nrows * L->ncols, vals, sizeof(double) * (size_t)L->ncols);
            L->nrows++;
        }
        if (vals != row) free(vals);
    }
    if (bad > 3) problem(r, "%s: %d malformed rows in all were skipped", name, bad);
    if (L->nrows == 0) problem(r, "%s has a header but no rows: no curves", name);
    free(f), free(t);
}

/* Frees a log's columns and rows. */
static void log_free(rp_log *L) {
    for (int i = 0; i < L->ncols; i++)
        free(L->cols[i]);
    free(L->cols), free(L->v), free(L->header);
    *L = (rp_log){0};
}

/* The column index of name in the log, or -1. */
static int log_col(const rp_log *L, const char *name) {
    for (int i = 0; i < L->ncols; i++)
        if (L->cols[i] && strcmp(L->cols[i], name) == 0) return i;
    return -1;
}

const char *report_kind(const void *metrics_cjson, const void *options_cjson,
                        const char *log_header, bool *inferred) {
    const cJSON *m = metrics_cjson, *o = options_cjson;
    if (inferred) *inferred = false;
    const cJSON *k = m ? cJSON_GetObjectItemCaseSensitive(m, "kind") : NULL;
    static const char *const kinds[] = {"splat", "man", "pretrain", "cl", "ctp"};
    if (cJSON_IsString(k))
        for (int i = 0; i < 5; i++)
            if (strcmp(k->valuestring, kinds[i]) == 0) return kinds[i];
    if (inferred) *inferred = true;
#define HAS(j, key) ((j) && cJSON_GetObjectItemCaseSensitive((j), (key)))
    if (HAS(m, "recall_matrix") || HAS(m, "R_m") || HAS(m, "i2t")) return "ctp";
    if (HAS(m, "accuracy_matrix") || HAS(m, "A_last")) return "cl";
    if (HAS(m, "test_views") || HAS(m, "ms_per_step") || (HAS(m, "gaussians") && HAS(m, "psnr")))
        return "splat";
    if (HAS(m, "memory_bytes") || HAS(m, "modules") || HAS(m, "test_accuracy_each")) return "man";
    if (HAS(m, "knn_top1_per_epoch") || HAS(m, "knn_top1") || HAS(m, "linear_top1"))
        return "pretrain";
    if (HAS(o, "densify_until") || HAS(o, "iters")) return "splat";
    if (HAS(o, "blocks") && HAS(o, "method")) return "man";
    if (HAS(o, "momentum_teacher") || HAS(o, "local_crops")) return "pretrain";
#undef HAS
    if (log_header) {
        if (strstr(log_header, "gaussians")) return "splat";
        if (strstr(log_header, "knn_top1")) return "pretrain";
        if (strstr(log_header, "aux_loss")) return "man";
    }
    return "unknown";
}

static void run_load(rp_run *r, const char *dir) {
    r->dir = dir;
    const char *b = dir + strlen(dir);
    while (b > dir && b[-1] == '/')
        b--;
    const char *e = b;
    while (b > dir && b[-1] != '/')
        b--;
    snprintf(r->label, sizeof r->label, "%.*s", (int)(e - b), b);
    if (!r->label[0]) snprintf(r->label, sizeof r->label, "%s", dir);
    struct stat st;
    int err = stat(dir, &st) == 0 ? 0 : errno;
    r->exists = err == 0 && S_ISDIR(st.st_mode);
    if (!r->exists) {
        problem(r, "%s is not a folder (%s): nothing to report", dir,
                err == ENOENT ? "it does not exist"
                : err         ? strerror(err)
                              : "it is a file, not a run folder");
        r->kind = "unknown";
        return;
    }
    r->options = read_json(r, "options.json", "the options are unknown", &r->options_mtime);
    r->metrics = read_json(r, "metrics.json",
                           "no final metrics (the run may still be going, have been stopped "
                           "or have failed)",
                           &r->metrics_mtime);
    char *p = io_path_join(dir, "run.json");
    bool has_info = p && io_is_file(p);
    free(p);
    if (has_info)
        r->info = read_json(r, "run.json", "the command, times and commit are unknown", NULL);
    read_csv(r, "log.csv", &r->log);
    r->kind = report_kind(r->metrics, r->options, r->log.header, &r->kind_inferred);
}

static void run_free(rp_run *r) {
    cJSON_Delete(r->metrics);
    cJSON_Delete(r->options);
    cJSON_Delete(r->info);
    log_free(&r->log);
    svg_free(&r->problems);
}

/* ---- small writers ---- */

static const cJSON *get(const cJSON *o, const char *k) {
    return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) {
    const cJSON *j = get(o, k);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static double get_num(const cJSON *o, const char *k) {
    const cJSON *j = get(o, k);
    return cJSON_IsNumber(j) ? j->valuedouble : NAN;
}

/* A UTC time "2026-12-07 16:02:11 UTC" from seconds since the epoch. */
static void fmt_time(double t, char *buf, size_t n) {
    if (!isfinite(t)) {
        snprintf(buf, n, "unknown");
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* "1 h 02 min", "3 min 05 s", "12.3 s". */
static void fmt_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0)
        snprintf(buf, n, "unknown");
    else if (s >= 3600)
        snprintf(buf, n, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(buf, n, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, n, "%.1f s", s);
}

/* A metric value as shown: bytes in MiB, other numbers with 6 significant digits. */
static void fmt_metric(const char *key, double v, char *buf, size_t n) {
    size_t kl = strlen(key);
    if (kl > 6 && strcmp(key + kl - 6, "_bytes") == 0 && isfinite(v)) {
        snprintf(buf, n, "%.1f MiB", v / 1048576.0);
        return;
    }
    svg_fmt(v, 6, false, buf, n);
}

/* A <td> for a JSON value: numbers carry data-key and data-v (the exact value). */
static void value_cell(svg_buf *b, const char *key, const cJSON *j) {
    if (cJSON_IsNumber(j)) {
        char t[64];
        fmt_metric(key, j->valuedouble, t, sizeof t);
        svg_printf(b, "<td class=\"num\" data-key=\"");
        svg_text(b, key);
        svg_printf(b, "\" data-v=\"%.17g\">%s</td>", j->valuedouble, t);
    } else if (cJSON_IsString(j)) {
        svg_printf(b, "<td>");
        svg_text(b, j->valuestring);
        svg_printf(b, "</td>");
    } else if (cJSON_IsBool(j)) {
        svg_printf(b, "<td>%s</td>", cJSON_IsTrue(j) ? "true" : "false");
    } else if (cJSON_IsNull(j)) {
        svg_printf(b, "<td class=\"muted\">null</td>");
    } else if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j);
        bool flat = n <= MAX_TABLE_ARRAY;
        const cJSON *e;
        cJSON_ArrayForEach(e, j) flat = flat && (cJSON_IsNumber(e) || cJSON_IsString(e));
        svg_printf(b, "<td>");
        if (flat) {
            svg_printf(b, "[");
            int i = 0;
            cJSON_ArrayForEach(e, j) {
                if (i++) svg_printf(b, ", ");
                if (cJSON_IsNumber(e)) {
                    char t[48];
                    svg_fmt(e->valuedouble, 6, false, t, sizeof t);
                    svg_printf(b, "%s", t);
                } else
                    svg_text(b, e->valuestring);
            }
            svg_printf(b, "]");
        } else
            svg_printf(b, "<span class=\"muted\">%d values (plotted below when known)</span>", n);
        svg_printf(b, "</td>");
    } else if (cJSON_IsObject(j)) {
        svg_printf(b, "<td>");
        const cJSON *e;
        int i = 0;
        cJSON_ArrayForEach(e, j) {
            if (i++) svg_printf(b, " · ");
            svg_printf(b, "<span class=\"muted\">");
            svg_text(b, e->string);
            svg_printf(b, "</span> ");
            if (cJSON_IsNumber(e)) {
                char t[48];
                svg_fmt(e->valuedouble, 6, false, t, sizeof t);
                svg_printf(b, "%s", t);
            } else if (cJSON_IsString(e))
                svg_text(b, e->valuestring);
            else {
                char *s = cJSON_PrintUnformatted(e);
                svg_text(b, s ? s : "?");
                free(s);
            }
        }
        svg_printf(b, "</td>");
    } else
        svg_printf(b, "<td></td>");
}

/* A two-column table of a JSON object's members. */
static void object_table(svg_buf *b, const cJSON *o, const char *cls) {
    svg_printf(b, "<div class=\"tbl\"><table class=\"%s\"><tbody>", cls);
    const cJSON *e;
    cJSON_ArrayForEach(e, o) {
        svg_printf(b, "<tr><th>");
        svg_text(b, e->string);
        svg_printf(b, "</th>");
        value_cell(b, e->string, e);
        svg_printf(b, "</tr>");
    }
    svg_printf(b, "</tbody></table></div>");
}

/* ---- log columns ---- */

typedef struct col_info {
    const char *name, *label, *unit;
    double scale;
} col_info;

static const col_info known_cols[] = {
    {"loss", "loss", "", 1},
    {"train_loss", "training loss", "", 1},
    {"aux_loss", "auxiliary loss", "", 1},
    {"psnr", "training PSNR", "dB", 1},
    {"ssim", "SSIM", "", 1},
    {"gaussians", "Gaussians", "count", 1},
    {"lr", "learning rate", "", 1},
    {"wd", "weight decay", "", 1},
    {"momentum", "teacher momentum", "", 1},
    {"teacher_momentum", "teacher momentum", "", 1},
    {"teacher_temp", "teacher temperature", "", 1},
    {"knn_top1", "k-NN top-1 accuracy", "%", 100},
    {"train_accuracy", "training accuracy", "%", 100},
    {"test_accuracy", "test accuracy", "%", 100},
    {"accuracy", "accuracy", "%", 100},
    {"peak_memory_bytes", "peak memory", "MiB", 1.0 / 1048576},
    {"memory_bytes", "memory", "MiB", 1.0 / 1048576},
    {"eval_seconds", "evaluation time", "s", 1},
    {"epoch_seconds", "epoch time", "s", 1},
    {"train_seconds", "epoch training time", "s", 1},
};

static col_info col_lookup(const char *name) {
    for (size_t i = 0; i < sizeof known_cols / sizeof known_cols[0]; i++)
        if (strcmp(known_cols[i].name, name) == 0) return known_cols[i];
    return (col_info){name, name, "", 1};
}

/* The x columns: the first of step/epoch/iter/task (else the first column). */
static int step_col(const rp_log *L) {
    static const char *const names[] = {"step", "epoch", "iter", "iteration", "task"};
    for (int i = 0; i < 5; i++) {
        int c = log_col(L, names[i]);
        if (c >= 0) return c;
    }
    return L->ncols ? 0 : -1;
}

/* Fills t (nrows) with the time of each row in seconds: a cumulative "seconds"/"time" column
 * as is, per-row "train_seconds"/"epoch_seconds" summed. Returns the column used or -1. */
static int time_values(const rp_log *L, double *t) {
    static const char *const cum[] = {"seconds", "time", "elapsed", "wall_seconds"};
    for (int i = 0; i < 4; i++) {
        int c = log_col(L, cum[i]);
        if (c < 0) continue;
        for (int r = 0; r < L->nrows; r++)
            t[r] = L->v[(size_t)r * L->ncols + c];
        return c;
    }
    static const char *const per[] = {"train_seconds", "epoch_seconds", "step_seconds"};
    for (int i = 0; i < 3; i++) {
        int c = log_col(L, per[i]);
        if (c < 0) continue;
        double s = 0;
        for (int r = 0; r < L->nrows; r++) {
            double v = L->v[(size_t)r * L->ncols + c];
            if (isfinite(v)) s += v;
            t[r] = s;
        }
        return c;
    }
    return -1;
}

/* A time axis unit for a span of seconds: s, min or h, with its divisor. */
static const char *time_unit(double span, double *div) {
    if (span > 3 * 3600) return *div = 3600, "h";
    if (span > 300) return *div = 60, "min";
    return *div = 1, "s";
}

/* Whether a column is an axis or a timing column rather than a curve. */
static bool is_axis_col(const rp_log *L, int c, int xs, int tc) {
    if (c == xs || c == tc) return true;
    const char *n = L->cols[c];
    return strcmp(n, "train_seconds") == 0 || strcmp(n, "epoch_seconds") == 0 ||
           strcmp(n, "seconds") == 0 || strcmp(n, "time") == 0;
}

/* Where a column's plots go: 0 results, 1 losses, 2 others, 3 schedules. */
static int col_rank(const char *n) {
    if (strstr(n, "accuracy") || strstr(n, "knn") || strstr(n, "psnr") || strstr(n, "ssim") ||
        strstr(n, "recall") || strstr(n, "top1"))
        return 0;
    if (strstr(n, "loss")) return 1;
    if (strcmp(n, "lr") == 0 || strcmp(n, "wd") == 0 || strstr(n, "momentum") || strstr(n, "temp"))
        return 3;
    return 2;
}

/* The curves of several runs' logs: for every column of any run, one plot against the step
 * column and one against time, a series per run that has the column. */
static void curves(svg_buf *b, rp_run **runs, int n) {
    /* the union of curve columns, in first-seen order */
    const char *cols[128];
    int nc = 0;
    for (int k = 0; k < n; k++) {
        rp_log *L = &runs[k]->log;
        if (!L->nrows) continue;
        double *tmp = malloc(sizeof(double) * (size_t)L->nrows);
        int xs = step_col(L), tc = tmp ? time_values(L, tmp) : -1;
        free(tmp);
        for (int c = 0; c < L->ncols && nc < 128; c++) {
            if (is_axis_col(L, c, xs, tc)) continue;
            bool seen = false;
            for (int i = 0; i < nc && !seen; i++)
                seen = strcmp(cols[i], L->cols[c]) == 0;
            if (!seen) cols[nc++] = L->cols[c];
        }
    }
    if (!nc) return;
    /* results first (accuracy, PSNR, ...), then losses, then the rest, schedules last; stable */
    for (int i = 1; i < nc; i++)
        for (int j = i; j > 0 && col_rank(cols[j]) < col_rank(cols[j - 1]); j--) {
            const char *t = cols[j];
            cols[j] = cols[j - 1], cols[j - 1] = t;
        }
    svg_printf(b, "<div class=\"plots\">");
    svg_series *ss = calloc((size_t)n, sizeof *ss);
    double **xv = calloc((size_t)n, sizeof *xv), **yv = calloc((size_t)n, sizeof *yv),
           **tv = calloc((size_t)n, sizeof *tv);
    if (!ss || !xv || !yv || !tv) {
        b->oom = true;
        goto done;
    }
    /* each run's x, time (converted to the shared unit below) */
    double tspan = 0;
    const char *xname = NULL;
    bool same_x = true;
    for (int k = 0; k < n; k++) {
        rp_log *L = &runs[k]->log;
        if (!L->nrows) continue;
        xv[k] = malloc(sizeof(double) * (size_t)L->nrows);
        tv[k] = malloc(sizeof(double) * (size_t)L->nrows);
        yv[k] = malloc(sizeof(double) * (size_t)L->nrows);
        if (!xv[k] || !tv[k] || !yv[k]) {
            b->oom = true;
            goto done;
        }
        int xs = step_col(L);
        for (int r = 0; r < L->nrows; r++)
            xv[k][r] = L->v[(size_t)r * L->ncols + xs];
        if (!xname) xname = L->cols[xs];
        same_x = same_x && strcmp(xname, L->cols[xs]) == 0;
        if (time_values(L, tv[k]) < 0) {
            free(tv[k]);
            tv[k] = NULL;
        } else
            for (int r = 0; r < L->nrows; r++)
                if (isfinite(tv[k][r])) tspan = fmax(tspan, tv[k][r]);
    }
    double tdiv = 1;
    const char *tunit = time_unit(tspan, &tdiv);
    for (int k = 0; k < n; k++)
        if (tv[k])
            for (int r = 0; r < runs[k]->log.nrows; r++)
                tv[k][r] /= tdiv;
    for (int i = 0; i < nc; i++) {
        col_info ci = col_lookup(cols[i]);
        for (int pass = 0; pass < 2; pass++) {
            int m = 0;
            for (int k = 0; k < n; k++) {
                rp_log *L = &runs[k]->log;
                int c = log_col(L, cols[i]);
                if (c < 0 || !L->nrows || (pass == 1 && !tv[k])) continue;
                for (int r = 0; r < L->nrows; r++)
                    yv[k][r] = L->v[(size_t)r * L->ncols + c] * ci.scale;
                ss[m++] = (svg_series){runs[k]->label, pass ? tv[k] : xv[k], yv[k], L->nrows};
            }
            if (!m) continue;
            char title[160];
            snprintf(title, sizeof title, "%s vs %s", ci.label,
                     pass ? "time" : (same_x ? xname : "step"));
            svg_plot p = {.title = title,
                          .xlabel = pass ? "training time" : (same_x ? xname : "step"),
                          .xunit = pass ? tunit : NULL,
                          .ylabel = ci.label,
                          .yunit = ci.unit,
                          .x_from_zero = pass == 1};
            svg_line(b, &p, ss, m);
        }
    }
done:
    svg_printf(b, "</div>");
    for (int k = 0; k < n; k++)
        if (xv && yv && tv) free(xv[k]), free(yv[k]), free(tv[k]);
    free(ss), free(xv), free(yv), free(tv);
}

/* ---- kinds ---- */

/* The name a run goes by in plots comparing methods: its "method" and, when several runs
 * share it, its folder. */
static void method_label(rp_run **runs, int n, int k, char *buf, size_t cap) {
    const char *m = get_str(runs[k]->metrics, "method");
    if (!m) m = get_str(runs[k]->options, "method");
    int same = 0;
    for (int i = 0; m && i < n; i++) {
        const char *o = get_str(runs[i]->metrics, "method");
        if (!o) o = get_str(runs[i]->options, "method");
        same += o && strcmp(o, m) == 0;
    }
    if (!m)
        snprintf(buf, cap, "%.200s", runs[k]->label);
    else if (same > 1) {
        int l = snprintf(buf, cap, "%s", m);
        if (l >= 0 && (size_t)l < cap)
            snprintf(buf + l, cap - (size_t)l, " (%.120s)", runs[k]->label);
    } else
        snprintf(buf, cap, "%s", m);
}

/* Splat: the held-out renders, per-view PSNR/SSIM worst first, the step-time breakdown. */
typedef struct view_row {
    const char *name;
    double psnr, ssim;
} view_row;

static int by_psnr(const void *a, const void *b) {
    double x = ((const view_row *)a)->psnr, y = ((const view_row *)b)->psnr;
    if (isnan(x) || isnan(y)) return isnan(x) - isnan(y);
    return (x > y) - (x < y);
}

/* Reads an image file for embedding: as is when narrow enough, else resized and re-encoded
 * as PNG. Returns the bytes (caller frees) or NULL. */
static unsigned char *thumbnail(const char *path, size_t *len, const char **mime) {
    int w = 0, h = 0, c = 0;
    if (image_probe(path, &w, &h, &c) != PK_OK) return NULL;
    size_t pl = strlen(path);
    bool jpeg = pl > 4 &&
                (strcasecmp(path + pl - 4, ".jpg") == 0 || strcasecmp(path + pl - 5, ".jpeg") == 0);
    *mime = jpeg ? "image/jpeg" : "image/png";
    if (w <= THUMB_WIDTH) {
        uint8_t *b = NULL;
        if (io_read_file(path, &b, len) != PK_OK) return NULL;
        return b;
    }
    pk_image src = {0}, dst = {0}, d8 = {0};
    unsigned char *out = NULL;
    int th = (int)lround((double)h * THUMB_WIDTH / w);
    if (image_read(path, &src) == PK_OK &&
        image_resize(&src, THUMB_WIDTH, th > 0 ? th : 1, &dst) == PK_OK) {
        if (png_encode(&dst, &out, len) != PK_OK) out = NULL;
        *mime = "image/png";
    }
    image_free(&src), image_free(&dst), image_free(&d8);
    return out;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void splat_section(svg_buf *b, rp_run *r) {
    const cJSON *tv = get(r->metrics, "test_views");
    int nv = cJSON_IsArray(tv) ? cJSON_GetArraySize(tv) : 0;
    view_row *rows = calloc((size_t)(nv ? nv : 1), sizeof *rows);
    if (!rows) {
        b->oom = true;
        return;
    }
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, tv) {
        const char *nm = get_str(e, "name");
        rows[k++] = (view_row){nm ? nm : "?", get_num(e, "psnr"), get_num(e, "ssim")};
    }
    qsort(rows, (size_t)nv, sizeof *rows, by_psnr);
    /* the gallery: renders/<name>.png (ground truth | render), worst view first */
    char *rd = io_path_join(r->dir, "renders");
    DIR *d = rd ? opendir(rd) : NULL;
    char **files = NULL;
    int nf = 0, capf = 0;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l < 5 ||
                (strcasecmp(de->d_name + l - 4, ".png") && strcasecmp(de->d_name + l - 4, ".jpg")))
                continue;
            if (nf == capf) {
                capf = capf ? 2 * capf : 32;
                char **nfp = realloc(files, sizeof *files * (size_t)capf);
                if (!nfp) break;
                files = nfp;
            }
            files[nf++] = io_strdup(de->d_name);
        }
        closedir(d);
        qsort(files, (size_t)nf, sizeof *files, cmp_str);
    }
    svg_printf(b, "<h3>Held-out views: ground truth | render</h3>");
    if (!d)
        svg_printf(b, "<p class=\"missing\">renders/ is missing: the held-out renders are written "
                      "when training ends.</p>");
    else if (!nf)
        svg_printf(b, "<p class=\"missing\">renders/ holds no images.</p>");
    else {
        /* order: the views of test_views worst first, then the rest by name */
        int *order = malloc(sizeof(int) * (size_t)nf);
        bool *used = calloc((size_t)nf, 1);
        int no = 0;
        for (int i = 0; order && used && i < nv; i++)
            for (int f = 0; f < nf; f++) {
                size_t l = strlen(rows[i].name);
                if (!used[f] && files[f] && strncmp(files[f], rows[i].name, l) == 0 &&
                    files[f][l] == '.') {
                    used[f] = true, order[no++] = f;
                    break;
                }
            }
        for (int f = 0; order && used && f < nf; f++)
            if (!used[f]) order[no++] = f;
        int shown = no < MAX_GALLERY ? no : MAX_GALLERY;
        svg_image *imgs = calloc((size_t)(shown ? shown : 1), sizeof *imgs);
        char(*caps)[320] = calloc((size_t)(shown ? shown : 1), sizeof *caps);
        int ni = 0;
        for (int i = 0; imgs && caps && i < shown; i++) {
            const char *fn = files[order[i]];
            char *path = io_path_join(rd, fn);
            size_t len = 0;
            const char *mime = "image/png";
            unsigned char *data = path ? thumbnail(path, &len, &mime) : NULL;
            free(path);
            if (!data) {
                problem(r, "renders/%s cannot be read as an image: left out of the gallery", fn);
                continue;
            }
            double ps = NAN, ss = NAN;
            for (int v = 0; v < nv; v++) {
                size_t l = strlen(rows[v].name);
                if (strncmp(fn, rows[v].name, l) == 0 && fn[l] == '.')
                    ps = rows[v].psnr, ss = rows[v].ssim;
            }
            if (isfinite(ps))
                snprintf(caps[ni], sizeof caps[ni], "PSNR %.2f dB, SSIM %.4f · %s", ps, ss, fn);
            else
                snprintf(caps[ni], sizeof caps[ni], "%s", fn);
            imgs[ni] = (svg_image){caps[ni], mime, data, len};
            ni++;
        }
        svg_gallery(b, imgs, ni);
        if (no > shown)
            svg_printf(b, "<p class=\"muted\">%d of %d renders shown (the worst first).</p>", shown,
                       no);
        for (int i = 0; imgs && i < ni; i++)
            free((void *)imgs[i].data);
        free(imgs), free(caps), free(order), free(used);
    }
    for (int f = 0; f < nf; f++)
        free(files[f]);
    free(files), free(rd);
    /* per-view table and bars, worst first */
    if (nv) {
        svg_printf(b, "<h3>Held-out PSNR and SSIM per view, worst first</h3><div class=\"plots\">");
        const char **names = malloc(sizeof(char *) * (size_t)nv);
        double *ps = malloc(sizeof(double) * (size_t)nv), *sm = malloc(sizeof(double) * (size_t)nv);
        if (names && ps && sm) {
            for (int i = 0; i < nv; i++)
                names[i] = rows[i].name, ps[i] = rows[i].psnr, sm[i] = rows[i].ssim;
            const char *st[1] = {"PSNR"};
            svg_bars(
                b, &(svg_plot){.title = "held-out PSNR per view", .xlabel = "PSNR", .xunit = "dB"},
                names, nv, st, 1, ps);
            const char *st2[1] = {"SSIM"};
            svg_bars(b, &(svg_plot){.title = "held-out SSIM per view", .xlabel = "SSIM"}, names, nv,
                     st2, 1, sm);
        }
        free(names), free(ps), free(sm);
        svg_printf(b, "</div><div class=\"tbl\"><table class=\"views\"><thead><tr><th>view</th>"
                      "<th>PSNR [dB]</th><th>SSIM</th></tr></thead><tbody>");
        for (int i = 0; i < nv; i++) {
            svg_printf(b, "<tr><td>");
            svg_text(b, rows[i].name);
            svg_printf(b,
                       "</td><td class=\"num\" data-v=\"%.17g\">%.4f</td><td class=\"num\" "
                       "data-v=\"%.17g\">%.5f</td></tr>",
                       rows[i].psnr, rows[i].psnr, rows[i].ssim, rows[i].ssim);
        }
        svg_printf(b, "</tbody></table></div>");
    } else if (r->metrics)
        svg_printf(b, "<p class=\"missing\">metrics.json has no test_views: no per-view "
                      "PSNR/SSIM.</p>");
    free(rows);
    /* held-out PSNR/SSIM at each evaluation (eval.csv, written by splat train) */
    char *ep = io_path_join(r->dir, "eval.csv");
    bool has_eval = ep && io_is_file(ep);
    free(ep);
    if (has_eval) {
        rp_log E = {0};
        read_csv(r, "eval.csv", &E);
        int cs = log_col(&E, "step"), cp = log_col(&E, "psnr"), cq = log_col(&E, "ssim");
        double *x = malloc(sizeof(double) * (size_t)(E.nrows ? E.nrows : 1)),
               *y = malloc(sizeof(double) * (size_t)(E.nrows ? E.nrows : 1));
        if (E.nrows && cs >= 0 && cp >= 0 && x && y) {
            svg_printf(b, "<h3>Held-out PSNR and SSIM during training</h3><div class=\"plots\">");
            for (int q = 0; q < 2; q++) {
                int c = q ? cq : cp;
                if (c < 0) continue;
                for (int i = 0; i < E.nrows; i++)
                    x[i] = E.v[(size_t)i * E.ncols + cs], y[i] = E.v[(size_t)i * E.ncols + c];
                svg_series se = {"held-out", x, y, E.nrows};
                svg_line(b,
                         &(svg_plot){.title = q ? "held-out SSIM vs step" : "held-out PSNR vs step",
                                     .xlabel = "step",
                                     .ylabel = q ? "held-out SSIM" : "held-out PSNR",
                                     .yunit = q ? "" : "dB"},
                         &se, 1);
            }
            svg_printf(b, "</div>");
        } else if (E.nrows)
            problem(r, "eval.csv lacks the columns step and psnr: no held-out curve");
        free(x), free(y);
        log_free(&E);
    }
    /* step-time breakdown: wall and CPU, stacked by phase */
    const cJSON *clocks[2] = {get(r->metrics, "ms_per_step"), get(r->metrics, "cpu_ms_per_step")};
    static const char *const phases[] = {"data",         "params_in",     "raster_forward",
                                         "loss_forward", "loss_backward", "raster_backward",
                                         "grads_out",    "stats",         "densify",
                                         "optimizer",    "other"};
    const int np = (int)(sizeof phases / sizeof phases[0]);
    const char *cats[2];
    double v[2 * 11];
    int nc = 0;
    for (int c = 0; c < 2; c++) {
        if (!cJSON_IsObject(clocks[c])) continue;
        cats[nc] = c ? "process CPU" : "wall";
        for (int i = 0; i < np; i++)
            v[nc * np + i] = get_num(clocks[c], phases[i]);
        nc++;
    }
    if (nc) {
        svg_printf(b, "<h3>Time per training step</h3><div class=\"plots wide\">");
        svg_bars(
            b,
            &(svg_plot){.title = "step-time breakdown", .xlabel = "time per step", .xunit = "ms"},
            cats, nc, phases, np, v);
        svg_printf(b, "</div>");
    }
}

/* MAN: test accuracy and memory (stacked by kind) per run. */
static void man_section(svg_buf *b, rp_run **runs, int n) {
    static const char *const parts[] = {"parameters", "gradients",   "optimizer_state",
                                        "teachers",   "activations", "carry_buffers"};
    const char **cats = calloc((size_t)n, sizeof *cats);
    char(*labels)[256] = calloc((size_t)n, sizeof *labels);
    double *acc = calloc((size_t)n, sizeof *acc), *mem = calloc((size_t)n * 6, sizeof *mem);
    if (!cats || !labels || !acc || !mem) {
        b->oom = true;
        goto done;
    }
    int m = 0;
    bool any_mem = false;
    for (int k = 0; k < n; k++) {
        if (!runs[k]->metrics) continue;
        method_label(runs, n, k, labels[m], sizeof labels[m]);
        cats[m] = labels[m];
        acc[m] = get_num(runs[k]->metrics, "test_accuracy") * 100;
        const cJSON *mb = get(runs[k]->metrics, "memory_bytes");
        for (int i = 0; i < 6; i++) {
            mem[m * 6 + i] = get_num(mb, parts[i]) / 1048576.0;
            any_mem = any_mem || isfinite(mem[m * 6 + i]);
        }
        m++;
    }
    if (!m) goto done;
    svg_printf(b, "<div class=\"plots\">");
    const char *st[1] = {"test accuracy"};
    svg_bars(
        b,
        &(svg_plot){.title = "test accuracy per method", .xlabel = "test accuracy", .xunit = "%"},
        cats, m, st, 1, acc);
    if (any_mem)
        svg_bars(b, &(svg_plot){.title = "memory per method", .xlabel = "memory", .xunit = "MiB"},
                 cats, m, parts, 6, mem);
    svg_printf(b, "</div>");
done:
    free(cats), free(labels), free(acc), free(mem);
}

/* Reads a (T, T) matrix of numbers and nulls; returns T or 0 (a problem noted) when it is not
 * one. */
static int read_matrix(rp_run *r, const char *key, double **out) {
    const cJSON *m = get(r->metrics, key);
    *out = NULL;
    if (!m) return 0;
    int T = cJSON_IsArray(m) ? cJSON_GetArraySize(m) : 0;
    if (T < 1 || T > 1000) {
        problem(r, "metrics.json: \"%s\" is not an array of rows: no heatmap", key);
        return 0;
    }
    double *v = malloc(sizeof(double) * (size_t)T * T);
    if (!v) return 0;
    int i = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, m) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != T) {
            problem(r,
                    "metrics.json: \"%s\" row %d is not an array of %d numbers or nulls: no "
                    "heatmap",
                    key, i + 1, T);
            free(v);
            return 0;
        }
        int j = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, row) {
            v[(size_t)i * T + j] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            j++;
        }
        i++;
    }
    *out = v;
    return T;
}

/* Continual learning (cl: accuracy_matrix, ctp: recall_matrix): the matrix as a heatmap per
 * run, the average over the tasks seen after each task per run, forgetting per task. */
static void cl_section(svg_buf *b, rp_run **runs, int n) {
    svg_buf heat = {0}, forg = {0}; /* the heatmaps, then the forgetting bars, in grids */
    svg_series *ss = calloc((size_t)n, sizeof *ss);
    double **xs = calloc((size_t)n, sizeof *xs), **ys = calloc((size_t)n, sizeof *ys);
    char(*labels)[256] = calloc((size_t)n, sizeof *labels);
    const char **fcats = calloc((size_t)n, sizeof *fcats);
    int *rk = calloc((size_t)n, sizeof *rk);
    if (!ss || !xs || !ys || !labels || !fcats || !rk) {
        b->oom = true;
        goto done;
    }
    int m = 0;
    bool ctp = false;
    for (int k = 0; k < n; k++) {
        rp_run *r = runs[k];
        const char *key = strcmp(r->kind, "ctp") == 0 ? "recall_matrix" : "accuracy_matrix";
        ctp = ctp || strcmp(r->kind, "ctp") == 0;
        double *v = NULL;
        int T = read_matrix(r, key, &v);
        if (!T) {
            if (r->metrics && !get(r->metrics, key))
                svg_printf(b, "<p class=\"missing\">%s: metrics.json has no \"%s\".</p>", r->label,
                           key);
            continue;
        }
        method_label(runs, n, k, labels[m], sizeof labels[m]);
        const cJSON *tn = get(r->metrics, "task_names");
        /* names: the tasks' names (the forgetting bars); rows "i name", columns "i" (long names
         * side by side over narrow columns would overlap) */
        char(*names)[64] = calloc((size_t)T, sizeof *names);
        char(*rows)[72] = calloc((size_t)T, sizeof *rows), (*cols)[12] = calloc((size_t)T, 12);
        const char **rn = calloc((size_t)T, sizeof *rn), **cn = calloc((size_t)T, sizeof *cn),
                   **hn = calloc((size_t)T, sizeof *hn);
        xs[m] = malloc(sizeof(double) * (size_t)T);
        ys[m] = malloc(sizeof(double) * (size_t)T);
        if (!names || !rows || !cols || !rn || !cn || !hn || !xs[m] || !ys[m]) {
            b->oom = true;
            free(names), free(rows), free(cols), free(rn), free(cn), free(hn), free(v);
            goto done;
        }
        for (int j = 0; j < T; j++) {
            const cJSON *s = cJSON_IsArray(tn) ? cJSON_GetArrayItem(tn, j) : NULL;
            if (cJSON_IsString(s))
                snprintf(names[j], sizeof names[j], "%s", s->valuestring);
            else
                snprintf(names[j], sizeof names[j], "%d", j + 1);
            cn[j] = names[j];
            snprintf(cols[j], 12, "%d", j + 1);
            if (strcmp(names[j], cols[j]) == 0)
                snprintf(rows[j], sizeof rows[j], "%s", names[j]);
            else
                snprintf(rows[j], sizeof rows[j], "%d %s", j + 1, names[j]);
            rn[j] = rows[j], hn[j] = cols[j];
        }
        char title[400];
        snprintf(title, sizeof title, "%s: %s (row: after training task i; column: task j)",
                 labels[m], ctp ? "R_m [%]" : "accuracy [%]");
        svg_heatmap(&heat, title, rn, hn, T, T, v, 0, 1, "%.1f", 100, "after task", "on task");
        /* the average over tasks 1..i after task i */
        for (int i = 0; i < T; i++) {
            double s = 0;
            int c = 0;
            for (int j = 0; j <= i; j++)
                if (isfinite(v[(size_t)i * T + j])) s += v[(size_t)i * T + j], c++;
            xs[m][i] = i + 1;
            ys[m][i] = c ? 100 * s / c : NAN;
        }
        ss[m] = (svg_series){labels[m], xs[m], ys[m], T};
        /* forgetting of task j: its best score before the last task minus its last score */
        if (T > 1) {
            double *f = malloc(sizeof(double) * (size_t)(T - 1));
            const char *fs[1] = {"forgetting"};
            if (f) {
                for (int j = 0; j < T - 1; j++) {
                    double best = -INFINITY;
                    for (int i = j; i < T - 1; i++)
                        if (isfinite(v[(size_t)i * T + j])) best = fmax(best, v[(size_t)i * T + j]);
                    f[j] = 100 * (best - v[(size_t)(T - 1) * T + j]);
                }
                snprintf(title, sizeof title,
                         "%s: forgetting per task (best before the last "
                         "task minus last)",
                         labels[m]);
                svg_bars(&forg,
                         &(svg_plot){.title = title, .xlabel = "forgetting", .xunit = "points"}, cn,
                         T - 1, fs, 1, f);
                free(f);
            }
        }
        free(names), free(rows), free(cols), free(rn), free(cn), free(hn), free(v);
        fcats[m] = labels[m];
        rk[m] = k;
        m++;
    }
    if (heat.oom || forg.oom) b->oom = true;
    if (heat.len) {
        svg_printf(b, "<div class=\"plots\">");
        svg_put(b, heat.s, heat.len);
        svg_printf(b, "</div>");
    }
    if (forg.len) {
        svg_printf(b, "<div class=\"plots\">");
        svg_put(b, forg.s, forg.len);
        svg_printf(b, "</div>");
    }
    if (m) {
        svg_printf(b, "<div class=\"plots\">");
        svg_line(b,
                 &(svg_plot){.title = ctp ? "average R_m over the tasks seen"
                                          : "average accuracy over the tasks seen",
                             .xlabel = "after task",
                             .ylabel = ctp ? "R_m" : "accuracy",
                             .yunit = "%"},
                 ss, m);
        /* the final summary numbers per run */
        static const char *const keys[] = {"A_last", "A_avg", "R_m", "forgetting", "BWT"};
        for (int q = 0; q < 5; q++) {
            double *vals = malloc(sizeof(double) * (size_t)m);
            bool any = false;
            for (int i = 0; vals && i < m; i++) {
                vals[i] = get_num(runs[rk[i]]->metrics, keys[q]);
                any = any || isfinite(vals[i]);
            }
            if (any && q < 4) {
                const char *st[1] = {keys[q]};
                for (int i = 0; i < m; i++)
                    vals[i] *= 100;
                svg_bars(b, &(svg_plot){.title = keys[q], .xlabel = keys[q], .xunit = "%"}, fcats,
                         m, st, 1, vals);
            }
            free(vals);
        }
        svg_printf(b, "</div>");
    }
done:
    for (int k = 0; k < n; k++)
        if (xs && ys) free(xs[k]), free(ys[k]);
    free(ss), free(xs), free(ys), free(labels), free(fcats), free(rk);
    svg_free(&heat), svg_free(&forg);
}

/* Pretraining: k-NN top-1 per epoch, a series per run. */
static void pretrain_section(svg_buf *b, rp_run **runs, int n) {
    svg_series *ss = calloc((size_t)n, sizeof *ss);
    double **xs = calloc((size_t)n, sizeof *xs), **ys = calloc((size_t)n, sizeof *ys);
    char(*labels)[256] = calloc((size_t)n, sizeof *labels);
    if (!ss || !xs || !ys || !labels) {
        b->oom = true;
        goto done;
    }
    int m = 0;
    for (int k = 0; k < n; k++) {
        const cJSON *a = get(runs[k]->metrics, "knn_top1_per_epoch");
        int T = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
        if (!T) continue;
        xs[m] = malloc(sizeof(double) * (size_t)T);
        ys[m] = malloc(sizeof(double) * (size_t)T);
        if (!xs[m] || !ys[m]) {
            b->oom = true;
            goto done;
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, a) {
            xs[m][i] = i + 1;
            ys[m][i] = cJSON_IsNumber(e) ? 100 * e->valuedouble : NAN;
            i++;
        }
        method_label(runs, n, k, labels[m], sizeof labels[m]);
        ss[m] = (svg_series){labels[m], xs[m], ys[m], T};
        m++;
    }
    if (m) {
        svg_printf(b, "<div class=\"plots\">");
        svg_line(b,
                 &(svg_plot){.title = "k-NN top-1 accuracy per epoch",
                             .xlabel = "epoch",
                             .ylabel = "k-NN top-1",
                             .yunit = "%"},
                 ss, m);
        svg_printf(b, "</div>");
    } else
        svg_printf(b, "<p class=\"missing\">No knn_top1_per_epoch in metrics.json.</p>");
done:
    for (int k = 0; k < n; k++)
        if (xs && ys) free(xs[k]), free(ys[k]);
    free(ss), free(xs), free(ys), free(labels);
}

/* The plots of a group of runs of one kind. */
static void kind_section(svg_buf *b, rp_run **runs, int n, const char *kind) {
    if (strcmp(kind, "man") == 0)
        man_section(b, runs, n);
    else if (strcmp(kind, "cl") == 0 || strcmp(kind, "ctp") == 0)
        cl_section(b, runs, n);
    else if (strcmp(kind, "pretrain") == 0)
        pretrain_section(b, runs, n);
}

/* ---- the page ---- */

static const char style[] =
    ":root{color-scheme:light dark;--bg:#ffffff;--fg:#1b1f24;--muted:#5d6670;--card:#f6f7f9;"
    "--border:#d8dce1;--grid:#e4e7eb;--axis:#7d8590;--bad:#c62828;--badbg:#fdecea;"
    "--c0:#1f6fc5;--c1:#d8432f;--c2:#2b9348;--c3:#e68a00;--c4:#7b4fc4;--c5:#8c564b;"
    "--c6:#d0449a;--c7:#138d9c;--c8:#6b7280;--c9:#a3a800;--c10:#0b3d91;--c11:#f06292}\n"
    "@media (prefers-color-scheme:dark){:root{--bg:#121418;--fg:#e5e7ea;--muted:#9aa3ad;"
    "--card:#1b1e24;--border:#30353d;--grid:#2a2e35;--axis:#737b86;--bad:#ff8a80;"
    "--badbg:#3a1f1f;--c0:#6aa9ff;--c1:#ff7a66;--c2:#5fd07d;--c3:#ffb347;--c4:#b79cff;"
    "--c5:#d4a58f;--c6:#ff86c8;--c7:#4fd3e0;--c8:#b0b7c0;--c9:#d9de4a;--c10:#8fb6ff;"
    "--c11:#ffb0cf}}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"
    "'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}\n"
    "header,main{max-width:1240px;margin:0 auto;padding:10px 14px}\n"
    "header{border-bottom:1px solid var(--border)}\n"
    "h1{font-size:1.35em;margin:.3em 0}h2{font-size:1.2em;margin:1.2em 0 .4em}"
    "h3{font-size:1.02em;margin:1.1em 0 .4em}\n"
    "section.run{border-top:2px solid var(--border);margin-top:1.2em}"
    "main>section.run:first-child{border-top:0;margin-top:0}\n"
    "@media (max-width:600px){body{font-size:14px}svg.plot text{font-size:13px}"
    "svg.plot .title{font-size:14px}header,main{padding:8px}}\n"
    ".badge{display:inline-block;font-size:.75em;padding:1px 8px;border-radius:10px;"
    "background:var(--card);border:1px solid var(--border);vertical-align:middle;"
    "margin-left:6px}\n"
    ".muted{color:var(--muted)}.path{color:var(--muted);font-size:.85em;word-break:break-all}\n"
    ".problems,.missing{border-left:4px solid var(--bad);background:var(--badbg);"
    "padding:6px 12px;border-radius:4px}\n"
    ".problems{margin:.5em 0;padding-left:28px}\n"
    ".tbl{overflow-x:auto;max-width:100%}\n"
    "table{border-collapse:collapse;font-size:.92em;margin:.3em 0}\n"
    "th,td{padding:3px 10px;border-bottom:1px solid var(--border);text-align:left;"
    "vertical-align:top}\n"
    "th{font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;"
    "white-space:nowrap}\n"
    "table.compare th{white-space:nowrap}table.metrics td.num,table.options td.num,"
    "table.facts td.num{text-align:left}\n"
    "code,.cmd{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"
    "font-size:.88em;word-break:break-all}\n"
    "details{margin:.4em 0}summary{cursor:pointer;color:var(--muted)}\n"
    ".plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,470px),1fr));"
    "gap:12px;margin:.5em 0}\n"
    ".plots.wide{grid-template-columns:minmax(0,560px)}\n"
    "svg.plot{width:100%;height:auto;background:var(--card);border:1px solid var(--border);"
    "border-radius:8px;display:block}\n"
    "svg.plot text{fill:var(--fg);font-size:12px;font-family:inherit}\n"
    "svg.plot .title{font-weight:600;font-size:13px}\n"
    "svg.plot .tick{fill:var(--muted)}svg.plot .tick.y{text-anchor:end}"
    "svg.plot .tick.x{text-anchor:middle}\n"
    "svg.plot .label{text-anchor:middle;fill:var(--muted)}svg.plot .nodata{text-anchor:middle;"
    "fill:var(--muted)}\n"
    "svg.plot .grid{stroke:var(--grid);stroke-width:1}svg.plot .axis{stroke:var(--axis);"
    "fill:none}\n"
    "svg.plot .series polyline{fill:none;stroke-width:1.8;stroke-linejoin:round}\n"
    "svg.plot .value{font-size:11px;fill:var(--muted)}\n"
    "svg.plot text.cell{fill:#ffffff;text-anchor:middle}svg.plot text.cell.dark{fill:#111111}\n"
    "svg.plot .hover line{stroke:var(--axis);stroke-dasharray:3 3}svg.plot "
    ".tiphead{fill:var(--muted)}"
    "svg.plot .hover rect.tipbg{fill:var(--bg);stroke:var(--border);opacity:.94}\n"
    ".s0 polyline{stroke:var(--c0)}.s0 rect,.s0 circle{fill:var(--c0)}"
    ".s1 polyline{stroke:var(--c1)}.s1 rect,.s1 circle{fill:var(--c1)}"
    ".s2 polyline{stroke:var(--c2)}.s2 rect,.s2 circle{fill:var(--c2)}"
    ".s3 polyline{stroke:var(--c3)}.s3 rect,.s3 circle{fill:var(--c3)}"
    ".s4 polyline{stroke:var(--c4)}.s4 rect,.s4 circle{fill:var(--c4)}"
    ".s5 polyline{stroke:var(--c5)}.s5 rect,.s5 circle{fill:var(--c5)}"
    ".s6 polyline{stroke:var(--c6)}.s6 rect,.s6 circle{fill:var(--c6)}"
    ".s7 polyline{stroke:var(--c7)}.s7 rect,.s7 circle{fill:var(--c7)}"
    ".s8 polyline{stroke:var(--c8)}.s8 rect,.s8 circle{fill:var(--c8)}"
    ".s9 polyline{stroke:var(--c9)}.s9 rect,.s9 circle{fill:var(--c9)}"
    ".s10 polyline{stroke:var(--c10)}.s10 rect,.s10 circle{fill:var(--c10)}"
    ".s11 polyline{stroke:var(--c11)}.s11 rect,.s11 circle{fill:var(--c11)}\n"
    ".gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,300px),1fr));"
    "gap:10px}\n"
    ".gallery figure{margin:0;background:var(--card);border:1px solid var(--border);"
    "border-radius:8px;padding:6px}\n"
    ".gallery img{width:100%;height:auto;display:block;border-radius:4px;cursor:zoom-in}\n"
    ".gallery figcaption{font-size:.8em;color:var(--muted);margin-top:4px;"
    "overflow-wrap:anywhere}\n"
    "#zoom{position:fixed;inset:0;background:rgba(0,0,0,.88);display:none;align-items:center;"
    "justify-content:center;cursor:zoom-out;z-index:10;padding:10px}\n"
    "#zoom.on{display:flex}#zoom img{max-width:100%;max-height:100%;image-rendering:auto}\n"
    "footer{max-width:1240px;margin:2em auto;padding:0 14px;color:var(--muted);"
    "font-size:.8em}\n";

/* Hover values on line plots and enlarging gallery images; no '<' or '&' so the page stays
 * well-formed XML. */
static const char script[] =
    "(function(){\n"
    "var NS='http://www.w3.org/2000/svg';\n"
    "function el(n,a,p){var e=document.createElementNS(NS,n);for(var k in a)"
    "e.setAttribute(k,a[k]);p.appendChild(e);return e}\n"
    "document.querySelectorAll('svg.plot.line').forEach(function(s){\n"
    " var f=s.querySelector('.frame');if(!f)return;\n"
    " var ser=[].slice.call(s.querySelectorAll('.series')).map(function(g){"
    "var p=g.querySelector('polyline');if(!p)return null;var pts=p.getAttribute('points');"
    "if(!pts)return null;return{px:pts.split(' ').map(function(t){return t.split(',')"
    ".map(Number)}),v:g.getAttribute('data-v').split(' '),name:g.getAttribute('data-name'),"
    "cls:g.getAttribute('class')}}).filter(Boolean);\n"
    " if(!ser.length)return;\n"
    " var h=el('g',{'class':'hover'},s);h.style.display='none';"
    "var vl=el('line',{y1:f.dataset.y0,y2:f.dataset.y1},h);"
    "var bg=el('rect',{'class':'tipbg',rx:4},h);var tx=el('text',{},h);\n"
    " s.addEventListener('pointermove',function(ev){var m=s.getScreenCTM();if(!m)return;"
    "var pt=s.createSVGPoint();pt.x=ev.clientX;pt.y=ev.clientY;var q=pt.matrixTransform("
    "m.inverse());\n"
    "  while(tx.firstChild)tx.removeChild(tx.firstChild);var X=null,hd=el('tspan',{x:0,dy:"
    "'1.2em','class':'tiphead'},tx);\n"
    "  ser.forEach(function(d){var bi=0,bd=1e9;d.px.forEach(function(p,i){var dd=Math.abs("
    "p[0]-q.x);if(bd>dd){bd=dd;bi=i}});var v=d.v[bi].split(',');if(X===null){X=d.px[bi][0];"
    "hd.textContent=f.dataset.xname+': '+Number(v[0]).toPrecision(6)*1}"
    "var t=el('tspan',{x:0,dy:'1.2em','class':d.cls},tx);"
    "t.textContent=(ser.length>1?d.name+': ':'')+Number(v[1]).toPrecision(5)*1});\n"
    "  vl.setAttribute('x1',X);vl.setAttribute('x2',X);h.style.display='';"
    "var x0=Number(f.dataset.x0),x1=Number(f.dataset.x1);var bb=tx.getBBox();"
    "var left=X+8+bb.width>x1?X-12-bb.width:X+8;"
    "tx.setAttribute('transform','translate('+left+' '+(Number(f.dataset.y0)+2)+')');"
    "[].forEach.call(tx.childNodes,function(c){c.setAttribute('x',0)});"
    "bg.setAttribute('x',left-4);bg.setAttribute('y',Number(f.dataset.y0)+2);"
    "bg.setAttribute('width',bb.width+8);bg.setAttribute('height',bb.height+6);"
    "if(x0>left)tx.setAttribute('transform','translate('+(x0+4)+' '+(Number(f.dataset.y0)+2)+')')"
    "});\n"
    " s.addEventListener('pointerleave',function(){h.style.display='none'});\n"
    "});\n"
    "var z=document.getElementById('zoom'),zi=z.querySelector('img');\n"
    "document.querySelectorAll('.gallery img').forEach(function(i){i.addEventListener('click',"
    "function(){zi.src=i.src;zi.alt=i.alt;z.className='on'})});\n"
    "z.addEventListener('click',function(){z.className='';zi.removeAttribute('src')});\n"
    "document.addEventListener('keydown',function(e){if(e.key==='Escape')z.className=''});\n"
    "})();\n";

/* The facts of a run: task and command, device, commit, times, status. */
static void facts(svg_buf *b, rp_run *r) {
    const cJSON *in = r->info;
    svg_printf(b, "<div class=\"tbl\"><table class=\"facts\"><tbody>");
    const char *task = get_str(in, "task");
    const char *cmd = get_str(in, "command");
    svg_printf(b, "<tr><th>command</th><td class=\"cmd\">");
    if (cmd)
        svg_text(b, cmd);
    else
        svg_printf(b, "<span class=\"muted\">not recorded (no run.json)</span>");
    svg_printf(b, "</td></tr>");
    if (task) {
        svg_printf(b, "<tr><th>task</th><td>");
        svg_text(b, task);
        svg_printf(b, "</td></tr>");
    }
    const char *dev = get_str(r->metrics, "device");
    if (!dev || !*dev) dev = get_str(in, "device");
    if (!dev || !*dev) dev = get_str(r->options, "device");
    svg_printf(b, "<tr><th>device</th><td>");
    if (dev && *dev)
        svg_text(b, dev);
    else
        svg_printf(b, "<span class=\"muted\">not recorded</span>");
    svg_printf(b, "</td></tr><tr><th>commit</th><td><code>");
    const char *commit = get_str(in, "commit");
    svg_text(b, commit ? commit : "not recorded");
    svg_printf(b, "</code></td></tr>");
    double t0 = get_num(in, "started_unix"), t1 = get_num(in, "finished_unix");
    bool from_files = false;
    if (!isfinite(t0) && !in) {
        t0 = r->options_mtime, t1 = r->metrics_mtime;
        from_files = true;
    }
    char s0[64], s1[64], du[64];
    fmt_time(t0, s0, sizeof s0);
    fmt_time(t1, s1, sizeof s1);
    fmt_duration(t1 - t0, du, sizeof du);
    svg_printf(b, "<tr><th>started</th><td>%s%s</td></tr>", s0,
               from_files ? " <span class=\"muted\">(options.json written)</span>" : "");
    svg_printf(b, "<tr><th>ended</th><td>%s%s</td></tr>", s1,
               from_files ? " <span class=\"muted\">(metrics.json written)</span>" : "");
    svg_printf(b, "<tr><th>duration</th><td>%s</td></tr>", du);
    const char *status = get_str(in, "status");
    if (status) {
        svg_printf(b, "<tr><th>status</th><td>");
        svg_text(b, status);
        svg_printf(b, "</td></tr>");
    }
    svg_printf(b, "</tbody></table></div>");
}

/* One run's section: the body is written first, so problems found while drawing it (an
 * unreadable render, a malformed matrix) are listed at the top with the others. */
static void run_section(svg_buf *out, rp_run *r, int idx, bool alone) {
    svg_buf body = {0}, *b = &body;
    if (r->exists) {
        facts(b, r);
        if (r->metrics) {
            svg_printf(b, "<h3>Metrics</h3>");
            object_table(b, r->metrics, "metrics");
        }
        if (r->options) {
            svg_printf(b, "<details><summary>Options (%d)</summary>",
                       cJSON_GetArraySize(r->options));
            object_table(b, r->options, "options");
            svg_printf(b, "</details>");
        }
        if (strcmp(r->kind, "splat") == 0) splat_section(b, r);
        if (alone) kind_section(b, &r, 1, r->kind);
        if (r->log.nrows) {
            svg_printf(b, "<h3>Curves from log.csv (%d rows)</h3>", r->log.nrows);
            curves(b, &r, 1);
        }
    }
    if (body.oom) out->oom = true;
    svg_printf(out, "<section class=\"run\" id=\"run-%d\"><h2>", idx);
    svg_text(out, r->label);
    svg_printf(out, "<span class=\"badge\">");
    svg_text(out, r->kind);
    svg_printf(out, "%s</span></h2><div class=\"path\">", r->kind_inferred ? " (inferred)" : "");
    svg_text(out, r->dir);
    svg_printf(out, "</div>");
    if (r->problems.len) {
        svg_printf(out, "<ul class=\"problems\">");
        svg_put(out, r->problems.s, r->problems.len);
        svg_printf(out, "</ul>");
    }
    if (body.len) svg_put(out, body.s, body.len);
    svg_free(&body);
    svg_printf(out, "</section>");
}

/* The comparison of several runs: one table with a row per run, the kinds' plots, the curves
 * overlaid. */
static void comparison(svg_buf *b, rp_run *runs, int n) {
    static const char *const first[] = {"method",
                                        "arch",
                                        "test_accuracy",
                                        "peak_memory_bytes",
                                        "epoch_seconds",
                                        "psnr",
                                        "ssim",
                                        "gaussians",
                                        "iters",
                                        "seconds",
                                        "knn_top1",
                                        "linear_top1",
                                        "epochs_done",
                                        "seconds_per_epoch",
                                        "A_last",
                                        "A_avg",
                                        "R_m",
                                        "forgetting",
                                        "BWT"};
    const char *keys[24];
    int nk = 0;
    const int nf = (int)(sizeof first / sizeof first[0]);
    for (int i = 0; i < nf && nk < 24; i++)
        for (int k = 0; k < n; k++) {
            const cJSON *j = get(runs[k].metrics, first[i]);
            if (cJSON_IsNumber(j) || cJSON_IsString(j)) {
                keys[nk++] = first[i];
                break;
            }
        }
    svg_printf(b,
               "<section id=\"compare\"><h2>%d runs</h2><div class=\"tbl\"><table "
               "class=\"compare\"><thead><tr><th>run</th><th>kind</th>",
               n);
    for (int i = 0; i < nk; i++) {
        svg_printf(b, "<th>");
        svg_text(b, keys[i]);
        svg_printf(b, "</th>");
    }
    svg_printf(b, "</tr></thead><tbody>");
    for (int k = 0; k < n; k++) {
        svg_printf(b, "<tr data-run=\"%d\"><td><a href=\"#run-%d\">", k, k);
        svg_text(b, runs[k].label);
        svg_printf(b, "</a>%s</td><td>",
                   runs[k].problems.len ? " <span class=\"muted\">(see "
                                          "problems)</span>"
                                        : "");
        svg_text(b, runs[k].kind);
        svg_printf(b, "</td>");
        for (int i = 0; i < nk; i++) {
            const cJSON *j = get(runs[k].metrics, keys[i]);
            if (cJSON_IsNumber(j) || cJSON_IsString(j))
                value_cell(b, keys[i], j);
            else if (cJSON_IsArray(j))
                svg_printf(b, "<td class=\"muted\">%d values</td>", cJSON_GetArraySize(j));
            else
                svg_printf(b, "<td class=\"muted\">-</td>");
        }
        svg_printf(b, "</tr>");
    }
    svg_printf(b, "</tbody></table></div>");
    /* the kinds' plots, each over the runs of that kind */
    static const char *const kinds[] = {"man", "cl", "ctp", "pretrain"};
    rp_run **group = calloc((size_t)n, sizeof *group);
    if (!group) {
        b->oom = true;
        return;
    }
    for (int q = 0; q < 4; q++) {
        int m = 0;
        for (int k = 0; k < n; k++)
            if (strcmp(runs[k].kind, kinds[q]) == 0) group[m++] = &runs[k];
        if (m) kind_section(b, group, m, kinds[q]);
    }
    int m = 0;
    for (int k = 0; k < n; k++)
        if (runs[k].log.nrows) group[m++] = &runs[k];
    if (m) {
        svg_printf(b, "<h3>Curves from log.csv, overlaid</h3>");
        curves(b, group, m);
    }
    free(group);
    svg_printf(b, "</section>");
}

pk_status report_html(const char *const *dirs, int n, svg_buf *b) {
    rp_run *runs = calloc((size_t)(n > 0 ? n : 1), sizeof *runs);
    if (!runs) return pk_error(PK_ERR_NOMEM, "report: out of memory");
    for (int k = 0; k < n; k++)
        run_load(&runs[k], dirs[k]);
    char now[64];
    fmt_time((double)time(NULL), now, sizeof now);
    svg_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta "
                  "name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><meta "
                  "name=\"generator\" content=\"polyak report\"/><title>");
    if (n == 1) {
        svg_text(b, runs[0].label);
        svg_printf(b, " · ");
    }
    svg_printf(b,
               "Polyak report</title><style>\n%s</style></head><body><header><h1>Polyak "
               "report",
               style);
    if (n == 1) {
        svg_printf(b, ": ");
        svg_text(b, runs[0].label);
    }
    svg_printf(b, "</h1><div class=\"muted\">%d run folder%s · written %s</div></header><main>", n,
               n == 1 ? "" : "s", now);
    if (n == 0) svg_printf(b, "<p class=\"missing\">No run folder was given.</p>");
    if (n > 1) comparison(b, runs, n);
    for (int k = 0; k < n; k++) {
        if (n > 1) {
            svg_printf(b, "<details class=\"runbox\"><summary>run %d: ", k + 1);
            svg_text(b, runs[k].label);
            svg_printf(b, "</summary>");
        }
        run_section(b, &runs[k], k, n == 1);
        if (n > 1) svg_printf(b, "</details>");
    }
    svg_printf(b,
               "</main><footer>Made by <code>polyak report</code>: a self-contained page (no "
               "network, no external files). Hover a plot for its values; click an image to "
               "enlarge it.</footer><div id=\"zoom\"><img alt=\"\"/></div><script>\n%s"
               "</script></body></html>\n",
               script);
    for (int k = 0; k < n; k++)
        run_free(&runs[k]);
    free(runs);
    if (b->oom) return pk_error(PK_ERR_NOMEM, "report: out of memory");
    return PK_OK;
}

pk_status report_write(const char *const *dirs, int n, const char *out_path) {
    svg_buf b = {0};
    pk_status s = report_html(dirs, n, &b);
    if (s == PK_OK) {
        io_atomic a;
        s = io_atomic_open(&a, out_path);
        if (s == PK_OK) {
            if (fwrite(b.s, 1, b.len, a.f) != b.len) {
                io_atomic_abort(&a);
                s = pk_error(PK_ERR_IO, "%s: cannot write: %s", out_path, strerror(errno));
            } else
                s = io_atomic_commit(&a);
        }
    }
    svg_free(&b);
    return s;
}
