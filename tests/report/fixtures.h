/* fixtures.h - run folders with random contents for the report tests (header-only): a splat
 * run, MAN runs and continual-learning results, written through the run harness (run.h) where
 * a task would use it and by hand where the task is not merged yet (cl, ctp). Each builder
 * returns what it wrote so tests compare the page against it. */
#ifndef POLYAK_REPORT_FIXTURES_H
#define POLYAK_REPORT_FIXTURES_H
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "image.h"
#include "io_util.h"
#include "pk_test.h"
#include "run.h"

static char *fx_tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-report-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

static void fx_rmrf(char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

static char *fx_join(const char *a, const char *b) {
    char *p = io_path_join(a, b);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fx_write(const char *dir, const char *name, const char *text) {
    char *p = fx_join(dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_msg(f != NULL, "%s", p);
    fputs(text, f);
    fclose(f);
    free(p);
}

static char *fx_read(const char *path) {
    uint8_t *b = NULL;
    size_t n = 0;
    ck_assert_msg(io_read_file(path, &b, &n) == PK_OK, "%s", polyak_error());
    char *t = realloc(b, n + 1);
    t[n] = 0;
    return t;
}

static int fx_int(pkt_rng *r, int lo, int hi) {
    return lo + (int)pkt_uniform(r, 0, (float)(hi - lo + 1 - 1e-3));
}

/* ---- splat ---- */

#define FX_PHASES 11
static const char *const fx_phases[FX_PHASES] = {
    "data",      "params_in", "raster_forward", "loss_forward", "loss_backward", "raster_backward",
    "grads_out", "stats",     "densify",        "optimizer",    "other"};

typedef struct fx_splat {
    int rows, nan_row, views, renders; /* renders: readable images written */
    double *log;                       // (rows, 5): step, loss, psnr, gaussians, seconds
    char names[8][40];
    double psnr[8], ssim[8];
    double ms[2][FX_PHASES];
    int big_view; /* the render wider than the report's thumbnails */
    double final_psnr, final_ssim, gaussians;
    int evals;
    double eval[8][3]; /* eval.csv: step, psnr, ssim */
} fx_splat;

/* A splat run through the harness: log rows, metrics with test_views and step times, renders
 * (one wider than 960 px, one view without a render, one file that is no image), run_report. */
static void fx_make_splat(const char *dir, pkt_rng *r, fx_splat *s) {
    memset(s, 0, sizeof *s);
    s->rows = fx_int(r, 20, 60);
    s->nan_row = fx_int(r, 1, s->rows - 2);
    s->views = fx_int(r, 4, 7);
    s->log = calloc((size_t)s->rows * 5, sizeof(double));
    run_options ro = {.out = dir,
                      .task = "splat train",
                      .options_json = "{\"data\": \"scene\", \"iters\": 100, \"device\": \"cpu\"}"};
    pk_run *run = NULL;
    ck_assert_msg(run_open(&ro, &run) == PK_OK, "%s", polyak_error());
    static const char *const cols[5] = {"step", "loss", "psnr", "gaussians", "seconds"};
    double t = 0;
    for (int i = 0; i < s->rows; i++) {
        double *v = s->log + (size_t)i * 5;
        t += pkt_uniform(r, 0.05f, 0.3f);
        v[0] = (i + 1) * 10;
        v[1] = i == s->nan_row ? NAN : (float)pkt_uniform(r, 0.01f, 0.4f);
        v[2] = (float)pkt_uniform(r, 10, 30);
        v[3] = fx_int(r, 1000, 50000);
        v[4] = round(t * 1e3) / 1e3;
        ck_assert(run_log(run, 5, cols, v) == PK_OK);
    }
    s->final_psnr = round(pkt_uniform(r, 15, 30) * 1e4) / 1e4;
    s->final_ssim = round(pkt_uniform(r, 0.5f, 0.95f) * 1e5) / 1e5;
    s->gaussians = s->log[(size_t)(s->rows - 1) * 5 + 3];
    run_metric_str(run, "kind", "splat");
    run_metric(run, "psnr", s->final_psnr);
    run_metric(run, "ssim", s->final_ssim);
    run_metric(run, "gaussians", s->gaussians);
    run_metric(run, "iters", s->rows * 10);
    run_metric_str(run, "device", "cpu (test)");
    for (int c = 0; c < 2; c++) {
        char js[1024];
        size_t at = (size_t)snprintf(js, sizeof js, "{");
        double tot = 0;
        for (int k = 0; k < FX_PHASES; k++) {
            s->ms[c][k] = round(pkt_uniform(r, 0.1f, 20) * 1e3) / 1e3;
            tot += s->ms[c][k];
            at += (size_t)snprintf(js + at, sizeof js - at, "\"%s\": %.3f, ", fx_phases[k],
                                   s->ms[c][k]);
        }
        snprintf(js + at, sizeof js - at, "\"total\": %.3f}", tot);
        run_metric_json(run, c ? "cpu_ms_per_step" : "ms_per_step", js);
    }
    char tv[4096];
    size_t at = (size_t)snprintf(tv, sizeof tv, "[");
    s->big_view = fx_int(r, 0, s->views - 2);
    char *rd = fx_join(dir, "renders");
    ck_assert_int_eq(mkdir(rd, 0777), 0);
    for (int v = 0; v < s->views; v++) {
        snprintf(s->names[v], sizeof s->names[v], "IMG_%04d_%c", fx_int(r, 0, 9999), 'a' + v);
        s->psnr[v] = round(pkt_uniform(r, 12, 32) * 1e4) / 1e4;
        s->ssim[v] = round(pkt_uniform(r, 0.4f, 0.99f) * 1e5) / 1e5;
        at += (size_t)snprintf(tv + at, sizeof tv - at,
                               "%s{\"name\": \"%s\", \"psnr\": %.4f, \"ssim\": %.5f}",
                               v ? ", " : "", s->names[v], s->psnr[v], s->ssim[v]);
        if (v == s->views - 1) continue; /* the last view has no render */
        pk_image im;
        int w = v == s->big_view ? 1200 : fx_int(r, 40, 120), h = fx_int(r, 20, 60);
        ck_assert(image_create(&im, w, h, 3, 8) == PK_OK);
        uint8_t *px = im.data;
        for (int i = 0; i < w * h * 3; i++)
            px[i] = (uint8_t)fx_int(r, 0, 255);
        char fn[64];
        snprintf(fn, sizeof fn, "%s.png", s->names[v]);
        char *p = fx_join(rd, fn);
        ck_assert(png_write(p, &im) == PK_OK);
        free(p);
        image_free(&im);
        s->renders++;
    }
    snprintf(tv + at, sizeof tv - at, "]");
    run_metric_json(run, "test_views", tv);
    ck_assert(run_metrics_write(run) == PK_OK);
    fx_write(rd, "broken.png", "this is no PNG");
    /* eval.csv as splat train writes it: held-out PSNR/SSIM at a few steps */
    s->evals = fx_int(r, 2, 6);
    char ev[1024];
    at = (size_t)snprintf(ev, sizeof ev, "step,psnr,ssim\n");
    for (int k = 0; k < s->evals; k++) {
        s->eval[k][0] = k * 100;
        s->eval[k][1] = round(pkt_uniform(r, 10, 30) * 1e4) / 1e4;
        s->eval[k][2] = round(pkt_uniform(r, 0.3f, 0.95f) * 1e5) / 1e5;
        at += (size_t)snprintf(ev + at, sizeof ev - at, "%.0f,%.4f,%.5f\n", s->eval[k][0],
                               s->eval[k][1], s->eval[k][2]);
    }
    fx_write(dir, "eval.csv", ev);
    free(rd);
    ck_assert_msg(run_report(run, "finished") == PK_OK, "%s", polyak_error());
    run_close(run);
}

/* ---- MAN ---- */

#define FX_MAN_COLS 8
static const char *const fx_man_cols[FX_MAN_COLS] = {"epoch",          "lr",
                                                     "train_loss",     "aux_loss",
                                                     "train_accuracy", "test_accuracy",
                                                     "epoch_seconds",  "peak_memory_bytes"};
static const char *const fx_mem_parts[6] = {"parameters", "gradients",   "optimizer_state",
                                            "teachers",   "activations", "carry_buffers"};

typedef struct fx_man {
    int epochs;
    double log[8][FX_MAN_COLS];
    double acc, peak, mem[6], epoch_seconds;
    const char *method;
} fx_man;

static void fx_make_man(const char *dir, const char *method, pkt_rng *r, fx_man *m) {
    memset(m, 0, sizeof *m);
    m->method = method;
    m->epochs = fx_int(r, 2, 8);
    char opts[256];
    snprintf(opts, sizeof opts, "{\"method\": \"%s\", \"blocks\": 4, \"epochs\": %d}", method,
             m->epochs);
    run_options ro = {.out = dir, .task = "man", .options_json = opts};
    pk_run *run = NULL;
    ck_assert_msg(run_open(&ro, &run) == PK_OK, "%s", polyak_error());
    for (int e = 0; e < m->epochs; e++) {
        double *v = m->log[e];
        v[0] = e + 1;
        v[1] = (float)pkt_uniform(r, 0.001f, 0.1f);
        v[2] = (float)pkt_uniform(r, 0.2f, 2);
        v[3] = (float)pkt_uniform(r, 0.2f, 4);
        v[4] = (float)pkt_uniform(r, 0.1f, 0.99f);
        v[5] = (float)pkt_uniform(r, 0.1f, 0.99f);
        v[6] = round(pkt_uniform(r, 2, 30) * 1e3) / 1e3;
        v[7] = fx_int(r, 1 << 20, 1 << 28);
        ck_assert(run_log(run, FX_MAN_COLS, fx_man_cols, v) == PK_OK);
    }
    m->acc = round(m->log[m->epochs - 1][5] * 1e4) / 1e4;
    char mem[512];
    size_t at = (size_t)snprintf(mem, sizeof mem, "{");
    for (int k = 0; k < 6; k++) {
        m->mem[k] = fx_int(r, 0, 1 << 27);
        m->peak += m->mem[k];
        at += (size_t)snprintf(mem + at, sizeof mem - at, "%s\"%s\": %.0f", k ? ", " : "",
                               fx_mem_parts[k], m->mem[k]);
    }
    snprintf(mem + at, sizeof mem - at, "}");
    m->epoch_seconds = round(pkt_uniform(r, 2, 30) * 1e3) / 1e3;
    run_metric_str(run, "kind", "man");
    run_metric_str(run, "method", method);
    run_metric(run, "test_accuracy", m->acc);
    run_metric(run, "peak_memory_bytes", m->peak);
    run_metric_json(run, "memory_bytes", mem);
    run_metric(run, "epoch_seconds", m->epoch_seconds);
    ck_assert(run_metrics_write(run) == PK_OK);
    ck_assert_msg(run_report(run, "finished") == PK_OK, "%s", polyak_error());
    run_close(run);
}

/* ---- continual learning (hand-made: the cl/ctp tasks are not merged yet) ---- */

typedef struct fx_cl {
    int T;
    double a[8][8]; /* NaN above the diagonal */
    double A_last, A_avg, forgetting, BWT;
} fx_cl;

/* metrics.json of a cl (kind "cl", accuracy_matrix) or ctp (kind "ctp", recall_matrix)
 * result, with the summary numbers computed here; options.json; no log.csv. */
static void fx_make_cl(const char *dir, const char *kind, const char *method, pkt_rng *r,
                       fx_cl *c) {
    memset(c, 0, sizeof *c);
    bool ctp = strcmp(kind, "ctp") == 0;
    c->T = fx_int(r, 3, 7);
    int T = c->T;
    char js[8192];
    size_t at = (size_t)snprintf(js, sizeof js,
                                 "{\n  \"kind\": \"%s\",\n  \"method\": \"%s\",\n"
                                 "  \"%s\": [",
                                 kind, method, ctp ? "recall_matrix" : "accuracy_matrix");
    for (int i = 0; i < T; i++) {
        at += (size_t)snprintf(js + at, sizeof js - at, "%s[", i ? ", " : "");
        for (int j = 0; j < T; j++) {
            c->a[i][j] = j <= i ? round(pkt_uniform(r, 0.05f, 0.99f) * 1e4) / 1e4 : NAN;
            if (j <= i)
                at +=
                    (size_t)snprintf(js + at, sizeof js - at, "%s%.4f", j ? ", " : "", c->a[i][j]);
            else
                at += (size_t)snprintf(js + at, sizeof js - at, ", null");
        }
        at += (size_t)snprintf(js + at, sizeof js - at, "]");
    }
    double last = 0, avg = 0, fg = 0, bwt = 0;
    for (int j = 0; j < T; j++)
        last += c->a[T - 1][j] / T;
    for (int i = 0; i < T; i++) {
        double s = 0;
        for (int j = 0; j <= i; j++)
            s += c->a[i][j];
        avg += s / (i + 1) / T;
    }
    for (int j = 0; j < T - 1; j++) {
        double best = 0;
        for (int i = j; i < T - 1; i++)
            best = fmax(best, c->a[i][j]);
        fg += (best - c->a[T - 1][j]) / (T - 1);
        bwt += (c->a[T - 1][j] - c->a[j][j]) / (T - 1);
    }
    c->A_last = last, c->A_avg = avg, c->forgetting = fg, c->BWT = bwt;
    at += (size_t)snprintf(js + at, sizeof js - at,
                           "],\n  \"%s\": %.17g,\n  \"A_avg\": %.17g,\n  \"forgetting\": %.17g,\n"
                           "  \"BWT\": %.17g,\n  \"task_seconds\": [",
                           ctp ? "R_m" : "A_last", last, avg, fg, bwt);
    for (int i = 0; i < T; i++)
        at += (size_t)snprintf(js + at, sizeof js - at, "%s%.3f", i ? ", " : "",
                               pkt_uniform(r, 1, 100));
    at += (size_t)snprintf(js + at, sizeof js - at, "]");
    if (ctp) {
        at += (size_t)snprintf(js + at, sizeof js - at, ",\n  \"task_names\": [");
        for (int i = 0; i < T; i++)
            at += (size_t)snprintf(js + at, sizeof js - at, "%s\"task <%d> & co\"", i ? ", " : "",
                                   i + 1);
        at += (size_t)snprintf(js + at, sizeof js - at,
                               "],\n  \"i2t\": {\"r1\": 0.5, \"r5\": 0.7, \"r10\": 0.8}");
    }
    snprintf(js + at, sizeof js - at, "\n}\n");
    fx_write(dir, "metrics.json", js);
    char opts[200];
    snprintf(opts, sizeof opts, "{\"method\": \"%s\", \"tasks\": %d}\n", method, T);
    fx_write(dir, "options.json", opts);
}

#endif
