/* test_report.c - `polyak report` (tasks/common/report.c, svg.c, run_report): pages for a
 * splat run, a MAN comparison and hand-made continual-learning results pass the strict check
 * of html_dom.h; every plot has the expected series and point counts; the numbers shown equal
 * the files (random contents each run); bad or missing files give a page that names them;
 * the kind is inferred from the keys when metrics.json lacks it. */
#include "fixtures.h"
#include "html_dom.h"

#include <cjson/cJSON.h>

#include "report.h"
#include "svg.h"

static pkt_rng seeded(void) { return (pkt_rng){(uint64_t)time(NULL) * 2654435761u + 7}; }

/* The report of dirs, parsed and checked (fails the test when the check fails). */
static dom_node *page_of(const char *const *dirs, int n, char **html) {
    svg_buf b = {0};
    ck_assert_msg(report_html(dirs, n, &b) == PK_OK, "%s", polyak_error());
    char err[512] = "";
    dom_node *d = dom_parse(b.s, err, sizeof err);
    ck_assert_msg(d != NULL, "strict check: %s", err);
    if (html)
        *html = b.s;
    else
        svg_free(&b);
    return d;
}

static dom_node *page_file(const char *path) {
    char *t = fx_read(path);
    char err[512] = "";
    dom_node *d = dom_parse(t, err, sizeof err);
    ck_assert_msg(d != NULL, "%s: strict check: %s", path, err);
    free(t);
    return d;
}

#define MAXF 4096
static const dom_node *found[MAXF];

/* The plot (svg.plot) whose <title> is `title`, or NULL. */
static const dom_node *plot_titled(const dom_node *d, const char *title) {
    const dom_node *hit = NULL;
    int n = dom_find(d, "svg", "plot", found, MAXF);
    for (int i = 0; i < n && i < MAXF; i++) {
        const dom_node *t = NULL;
        for (int k = 0; k < found[i]->nkids && !t; k++)
            if (found[i]->kids[k]->name && strcmp(found[i]->kids[k]->name, "title") == 0)
                t = found[i]->kids[k];
        char buf[512] = "";
        if (t) dom_text(t, buf, sizeof buf);
        if (strcmp(buf, title) == 0) {
            ck_assert_msg(!hit, "two plots titled '%s'", title);
            hit = found[i];
        }
    }
    return hit;
}

/* The element with id `id`. */
static const dom_node *by_id(const dom_node *d, const char *id) {
    int n = dom_find(d, NULL, NULL, found, MAXF);
    for (int i = 0; i < n && i < MAXF; i++) {
        const char *v = dom_attr(found[i], "id");
        if (v && strcmp(v, id) == 0) return found[i];
    }
    return NULL;
}

/* The series (g.series) of a plot, in order; returns their count. */
static int series_of(const dom_node *plot, const dom_node **out, int max) {
    int n = 0;
    for (int k = 0; k < plot->nkids; k++)
        if (plot->kids[k]->name && dom_has_class(plot->kids[k], "series")) {
            if (n < max) out[n] = plot->kids[k];
            n++;
        }
    return n;
}

static int attr_int(const dom_node *n, const char *a) {
    const char *v = dom_attr(n, a);
    ck_assert_msg(v != NULL, "<%s> has no %s", n->name, a);
    return atoi(v);
}

/* Parses data-v "x,y x,y ..." into xs, ys; returns the count. */
static int series_values(const dom_node *g, double *xs, double *ys, int max) {
    const char *v = dom_attr(g, "data-v");
    ck_assert_ptr_nonnull(v);
    int n = 0;
    for (const char *q = v; *q;) {
        char *e;
        double x = strtod(q, &e);
        ck_assert_msg(*e == ',', "data-v: '%s'", q);
        double y = strtod(e + 1, &e);
        if (n < max) xs[n] = x, ys[n] = y;
        n++;
        q = *e == ' ' ? e + 1 : e;
    }
    return n;
}

/* Counts the points of the polyline in g. */
static int polyline_points(const dom_node *g) {
    for (int k = 0; k < g->nkids; k++)
        if (g->kids[k]->name && strcmp(g->kids[k]->name, "polyline") == 0) {
            const char *p = dom_attr(g->kids[k], "points");
            int n = *p ? 1 : 0;
            for (; *p; p++)
                n += *p == ' ';
            return n;
        }
    return 0;
}

static void near(double got, double want, double rel, const char *what) {
    ck_assert_msg(fabs(got - want) <= rel * fmax(1e-12, fabs(want)), "%s: got %.17g, want %.17g",
                  what, got, want);
}

/* A one-series line plot's check: its n points equal (x[i], y[i] * scale) of the finite rows. */
static void check_line(const dom_node *d, const char *title, const double *x, const double *y,
                       int n, double scale, int expect_series) {
    const dom_node *p = plot_titled(d, title);
    ck_assert_msg(p != NULL, "no plot '%s'", title);
    ck_assert(dom_has_class(p, "line"));
    const dom_node *g[16];
    int ns = series_of(p, g, 16);
    ck_assert_int_eq(ns, expect_series);
    ck_assert_int_eq(attr_int(p, "data-series"), expect_series);
    if (!x) return;
    double xs[512], ys[512];
    int m = series_values(g[0], xs, ys, 512), k = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i]) || !isfinite(x[i])) continue;
        ck_assert_msg(k < m, "%s: too few points", title);
        /* log.csv holds floats with the fewest digits that read back the same float */
        near(xs[k], x[i], 2e-7, title);
        near(ys[k], y[i] * scale, 2e-7, title);
        k++;
    }
    ck_assert_int_eq(k, m);
    ck_assert_int_eq(attr_int(g[0], "data-n"), m);
    ck_assert_int_eq(polyline_points(g[0]), m);
}

/* The problems listed in the page, joined. */
static void problems_text(const dom_node *d, char *buf, size_t cap) {
    buf[0] = 0;
    int n = dom_find(d, "ul", "problems", found, MAXF);
    for (int i = 0; i < n && i < MAXF; i++)
        dom_text(found[i], buf, cap);
}

/* The <td data-key=key> cells under n; returns the count and the first in *out. */
static int cells_keyed(const dom_node *n, const char *key, const dom_node **out) {
    static const dom_node *tds[MAXF];
    int c = dom_find(n, "td", NULL, tds, MAXF), k = 0;
    for (int i = 0; i < c && i < MAXF; i++) {
        const char *dk = dom_attr(tds[i], "data-key");
        if (dk && strcmp(dk, key) == 0) {
            if (!k) *out = tds[i];
            k++;
        }
    }
    return k;
}

/* The cell shows v: data-v exactly and its text to the precision shown. */
static void check_cell(const dom_node *td, const char *key, double v) {
    near(strtod(dom_attr(td, "data-v"), NULL), v, 0, key);
    char t[128] = "";
    dom_text(td, t, sizeof t);
    size_t kl = strlen(key);
    if (kl > 6 && strcmp(key + kl - 6, "_bytes") == 0) {
        ck_assert_msg(strstr(t, "MiB") != NULL, "%s: '%s'", key, t);
        ck_assert_msg(fabs(strtod(t, NULL) - v / 1048576.0) <= 0.05 + 1e-9, "%s: '%s' for %.17g",
                      key, t, v);
    } else
        near(strtod(t, NULL), v, 5e-6, key);
}

/* Every numeric member of metrics.json at dir appears in the page's metrics table. */
static void check_metrics_table(const dom_node *d, const char *dir) {
    char *p = fx_join(dir, "metrics.json");
    char *t = fx_read(p);
    free(p);
    cJSON *m = cJSON_Parse(t);
    ck_assert_ptr_nonnull(m);
    const dom_node *tables[64];
    int nt = dom_find(d, "table", "metrics", tables, 64);
    ck_assert_int_ge(nt, 1);
    const cJSON *e;
    int checked = 0;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsNumber(e)) continue;
        const dom_node *td = NULL;
        ck_assert_msg(cells_keyed(tables[0], e->string, &td) == 1, "metric %s", e->string);
        check_cell(td, e->string, e->valuedouble);
        checked++;
    }
    ck_assert_int_ge(checked, 1);
    cJSON_Delete(m);
    free(t);
}

START_TEST(splat_run) {
    pkt_rng r = seeded();
    char *root = fx_tmpdir();
    char *dir = fx_join(root, "splat-run");
    fx_splat s;
    fx_make_splat(dir, &r, &s);
    /* run_report wrote run.json and report.html */
    char *rj = fx_join(dir, "run.json");
    char *rt = fx_read(rj);
    cJSON *info = cJSON_Parse(rt);
    ck_assert_ptr_nonnull(info);
    ck_assert_str_eq(cJSON_GetObjectItem(info, "status")->valuestring, "finished");
    ck_assert_str_eq(cJSON_GetObjectItem(info, "task")->valuestring, "splat train");
    ck_assert(strlen(cJSON_GetObjectItem(info, "commit")->valuestring) > 0);
    ck_assert(strstr(cJSON_GetObjectItem(info, "command")->valuestring, "report") != NULL);
    cJSON_Delete(info);
    free(rt), free(rj);
    char *hp = fx_join(dir, "report.html");
    dom_node *d = page_file(hp);
    free(hp);
    check_metrics_table(d, dir);
    /* curves: loss (one NaN row), psnr, gaussians, each against step and time */
    double x[64], tt[64], y[3][64];
    for (int i = 0; i < s.rows; i++) {
        x[i] = s.log[i * 5], tt[i] = s.log[i * 5 + 4];
        for (int k = 0; k < 3; k++)
            y[k][i] = s.log[i * 5 + 1 + k];
    }
    check_line(d, "loss vs step", x, y[0], s.rows, 1, 1);
    check_line(d, "loss vs time", tt, y[0], s.rows, 1, 1);
    check_line(d, "training PSNR vs step", x, y[1], s.rows, 1, 1);
    check_line(d, "training PSNR vs time", tt, y[1], s.rows, 1, 1);
    check_line(d, "Gaussians vs step", x, y[2], s.rows, 1, 1);
    check_line(d, "Gaussians vs time", tt, y[2], s.rows, 1, 1);
    double es[8], ep[8], eq[8];
    for (int k = 0; k < s.evals; k++)
        es[k] = s.eval[k][0], ep[k] = s.eval[k][1], eq[k] = s.eval[k][2];
    check_line(d, "held-out PSNR vs step", es, ep, s.evals, 1, 1);
    check_line(d, "held-out SSIM vs step", es, eq, s.evals, 1, 1);
    ck_assert_int_eq(dom_find(d, "svg", "line", found, MAXF), 8);
    /* per-view bars and table, worst first */
    int order[8];
    for (int v = 0; v < s.views; v++)
        order[v] = v;
    for (int a = 0; a < s.views; a++)
        for (int b = a + 1; b < s.views; b++)
            if (s.psnr[order[b]] < s.psnr[order[a]]) {
                int t = order[a];
                order[a] = order[b], order[b] = t;
            }
    const char *titles[2] = {"held-out PSNR per view", "held-out SSIM per view"};
    for (int q = 0; q < 2; q++) {
        const dom_node *p = plot_titled(d, titles[q]), *g[4];
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(series_of(p, g, 4), 1);
        ck_assert_int_eq(attr_int(g[0], "data-n"), s.views);
        const dom_node *rects[16];
        ck_assert_int_eq(dom_find(g[0], "rect", NULL, rects, 16), s.views);
        for (int v = 0; v < s.views; v++)
            near(strtod(dom_attr(rects[v], "data-v"), NULL),
                 q ? s.ssim[order[v]] : s.psnr[order[v]], 1e-8, titles[q]);
    }
    const dom_node *vt[2];
    ck_assert_int_eq(dom_find(d, "table", "views", vt, 2), 1);
    const dom_node *trs[16];
    const dom_node *body[1];
    ck_assert_int_eq(dom_find(vt[0], "tbody", NULL, body, 1), 1);
    ck_assert_int_eq(dom_find(body[0], "tr", NULL, trs, 16), s.views);
    for (int v = 0; v < s.views; v++) {
        const dom_node *tds[3];
        ck_assert_int_eq(dom_find(trs[v], "td", NULL, tds, 3), 3);
        char t[3][128] = {"", "", ""};
        for (int k = 0; k < 3; k++)
            dom_text(tds[k], t[k], sizeof t[k]);
        ck_assert_str_eq(t[0], s.names[order[v]]);
        near(strtod(t[1], NULL), s.psnr[order[v]], 1e-9, "view PSNR");
        near(strtod(t[2], NULL), s.ssim[order[v]], 1e-9, "view SSIM");
    }
    /* step-time breakdown: wall and CPU rows, one series per phase */
    const dom_node *st = plot_titled(d, "step-time breakdown"), *g[16];
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(series_of(st, g, 16), FX_PHASES);
    for (int k = 0; k < FX_PHASES; k++) {
        ck_assert_str_eq(dom_attr(g[k], "data-name"), fx_phases[k]);
        ck_assert_int_eq(attr_int(g[k], "data-n"), 2);
        const dom_node *rects[2];
        ck_assert_int_eq(dom_find(g[k], "rect", NULL, rects, 2), 2);
        for (int c = 0; c < 2; c++)
            near(strtod(dom_attr(rects[c], "data-v"), NULL), s.ms[c][k], 1e-9, fx_phases[k]);
    }
    /* the gallery: the readable renders, worst first; small ones embedded as they are, the
     * wide one resized to 960 px */
    const dom_node *gal[2];
    ck_assert_int_eq(dom_find(d, "div", "gallery", gal, 2), 1);
    ck_assert_int_eq(attr_int(gal[0], "data-n"), s.renders);
    const dom_node *imgs[16];
    ck_assert_int_eq(dom_find(gal[0], "img", NULL, imgs, 16), s.renders);
    int k = 0;
    for (int v = 0; v < s.views; v++) {
        int view = order[v];
        if (view == s.views - 1) continue; /* no render */
        const char *src = dom_attr(imgs[k], "src");
        const char *pre = "data:image/png;base64,";
        ck_assert(strncmp(src, pre, strlen(pre)) == 0);
        ck_assert(strstr(dom_attr(imgs[k], "alt"), s.names[view]) != NULL);
        /* decode */
        const char *b64 = src + strlen(pre);
        size_t n64 = strlen(b64), nb = 0;
        unsigned char *bytes = malloc(n64);
        unsigned acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n64 && b64[i] != '='; i++) {
            const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            const char *f = strchr(al, b64[i]);
            ck_assert_ptr_nonnull(f);
            acc = acc << 6 | (unsigned)(f - al), bits += 6;
            if (bits >= 8) bytes[nb++] = (unsigned char)(acc >> (bits - 8)), bits -= 8;
        }
        char fn[64];
        snprintf(fn, sizeof fn, "renders/%s.png", s.names[view]);
        char *fp = fx_join(dir, fn);
        uint8_t *file = NULL;
        size_t fl = 0;
        ck_assert(io_read_file(fp, &file, &fl) == PK_OK);
        free(fp);
        ck_assert(nb > 24 && memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) == 0);
        unsigned w = (unsigned)bytes[16] << 24 | bytes[17] << 16 | bytes[18] << 8 | bytes[19];
        if (view == s.big_view)
            ck_assert_uint_eq(w, 960);
        else
            ck_assert(nb == fl && memcmp(bytes, file, fl) == 0);
        free(bytes), free(file);
        k++;
    }
    char pr[4096];
    problems_text(d, pr, sizeof pr);
    ck_assert_msg(strstr(pr, "renders/broken.png cannot be read") != NULL, "%s", pr);
    dom_free(d);
    free(s.log);
    free(dir);
    fx_rmrf(root);
}
END_TEST

START_TEST(man_comparison) {
    pkt_rng r = seeded();
    char *root = fx_tmpdir();
    static const char *const methods[5] = {"e2e", "dgl", "dgl+man", "infopro", "infopro+man"};
    int n = fx_int(&r, 3, 5);
    fx_man m[5];
    char *dirs[5];
    for (int k = 0; k < n; k++) {
        char name[32];
        snprintf(name, sizeof name, "run-%d", k);
        dirs[k] = fx_join(root, name);
        fx_make_man(dirs[k], methods[k], &r, &m[k]);
    }
    dom_node *page = page_of((const char *const *)dirs, n, NULL);
    ck_assert_int_eq(dom_find(page, "svg", "line", found, MAXF), 12 + 6 * 2 * n);
    const dom_node *d = by_id(page, "compare");
    ck_assert_ptr_nonnull(d);
    /* one table row per run with its numbers */
    const dom_node *cmp[2];
    ck_assert_int_eq(dom_find(d, "table", "compare", cmp, 2), 1);
    const dom_node *body[1], *trs[8];
    ck_assert_int_eq(dom_find(cmp[0], "tbody", NULL, body, 1), 1);
    ck_assert_int_eq(dom_find(body[0], "tr", NULL, trs, 8), n);
    for (int k = 0; k < n; k++) {
        const dom_node *td = NULL;
        ck_assert_int_eq(cells_keyed(trs[k], "test_accuracy", &td), 1);
        check_cell(td, "test_accuracy", m[k].acc);
        ck_assert_int_eq(cells_keyed(trs[k], "peak_memory_bytes", &td), 1);
        check_cell(td, "peak_memory_bytes", m[k].peak);
        ck_assert_int_eq(cells_keyed(trs[k], "epoch_seconds", &td), 1);
        check_cell(td, "epoch_seconds", m[k].epoch_seconds);
    }
    /* accuracy and memory per method */
    const dom_node *p = plot_titled(d, "test accuracy per method"), *g[8];
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(series_of(p, g, 8), 1);
    const dom_node *rects[8];
    ck_assert_int_eq(dom_find(g[0], "rect", NULL, rects, 8), n);
    for (int k = 0; k < n; k++)
        near(strtod(dom_attr(rects[k], "data-v"), NULL), m[k].acc * 100, 1e-8, "accuracy bar");
    p = plot_titled(d, "memory per method");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(series_of(p, g, 8), 6);
    for (int q = 0; q < 6; q++) {
        ck_assert_str_eq(dom_attr(g[q], "data-name"), fx_mem_parts[q]);
        ck_assert_int_eq(dom_find(g[q], "rect", NULL, rects, 8), n);
        for (int k = 0; k < n; k++)
            near(strtod(dom_attr(rects[k], "data-v"), NULL), m[k].mem[q] / 1048576.0, 1e-8,
                 "memory bar");
    }
    /* the curves overlaid: a series per run, one point per epoch, against epoch and time */
    static const struct {
        const char *title;
        int col;
        double scale;
    } cv[] = {{"learning rate", 1, 1},   {"training loss", 2, 1},
              {"auxiliary loss", 3, 1},  {"training accuracy", 4, 100},
              {"test accuracy", 5, 100}, {"peak memory", 7, 1.0 / 1048576}};
    double tmax = 0;
    for (int k = 0; k < n; k++) {
        double t = 0;
        for (int e = 0; e < m[k].epochs; e++)
            t += m[k].log[e][6];
        tmax = fmax(tmax, t);
    }
    double tdiv = tmax > 300 ? 60 : 1;
    for (size_t c = 0; c < sizeof cv / sizeof cv[0]; c++)
        for (int pass = 0; pass < 2; pass++) {
            char title[128];
            snprintf(title, sizeof title, "%s vs %s", cv[c].title, pass ? "time" : "epoch");
            p = plot_titled(d, title);
            ck_assert_msg(p != NULL, "no plot '%s'", title);
            ck_assert_int_eq(series_of(p, g, 8), n);
            for (int k = 0; k < n; k++) {
                char name[32];
                snprintf(name, sizeof name, "run-%d", k);
                ck_assert_str_eq(dom_attr(g[k], "data-name"), name);
                double xs[16], ys[16];
                ck_assert_int_eq(series_values(g[k], xs, ys, 16), m[k].epochs);
                ck_assert_int_eq(polyline_points(g[k]), m[k].epochs);
                double t = 0;
                for (int e = 0; e < m[k].epochs; e++) {
                    t += m[k].log[e][6];
                    near(xs[e], pass ? t / tdiv : e + 1, 1e-9, title);
                    near(ys[e], m[k].log[e][cv[c].col] * cv[c].scale, 2e-7, title);
                }
            }
        }
    ck_assert_int_eq(dom_find(d, "svg", "line", found, MAXF), 12);
    dom_free(page);
    for (int k = 0; k < n; k++)
        free(dirs[k]);
    fx_rmrf(root);
}
END_TEST

/* The heatmap, average-over-tasks line and forgetting bars of one cl/ctp result. */
static void check_cl(const dom_node *d, const fx_cl *c, const char *label, bool ctp) {
    int T = c->T;
    char title[400];
    snprintf(title, sizeof title, "%s: %s (row: after training task i; column: task j)", label,
             ctp ? "R_m [%]" : "accuracy [%]");
    const dom_node *p = plot_titled(d, title), *g[4];
    ck_assert_msg(p != NULL, "no heatmap '%s'", title);
    ck_assert(dom_has_class(p, "heatmap"));
    ck_assert_int_eq(series_of(p, g, 4), 1);
    ck_assert_int_eq(attr_int(g[0], "data-n"), T * (T + 1) / 2);
    const dom_node *rects[64], *texts[64];
    ck_assert_int_eq(dom_find(g[0], "rect", NULL, rects, 64), T * (T + 1) / 2);
    ck_assert_int_eq(dom_find(g[0], "text", NULL, texts, 64), T * (T + 1) / 2);
    int k = 0;
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++, k++) {
            near(strtod(dom_attr(rects[k], "data-v"), NULL), c->a[i][j], 1e-8, "cell");
            char t[32] = "", want[32];
            dom_text(texts[k], t, sizeof t);
            snprintf(want, sizeof want, "%.1f", 100 * c->a[i][j]);
            ck_assert_str_eq(t, want);
        }
    snprintf(title, sizeof title, "%s: forgetting per task (best before the last task minus last)",
             label);
    p = plot_titled(d, title);
    ck_assert_msg(p != NULL, "no plot '%s'", title);
    ck_assert_int_eq(series_of(p, g, 4), 1);
    ck_assert_int_eq(dom_find(g[0], "rect", NULL, rects, 64), T - 1);
    for (int j = 0; j < T - 1; j++) {
        double best = 0;
        for (int i = j; i < T - 1; i++)
            best = fmax(best, c->a[i][j]);
        near(strtod(dom_attr(rects[j], "data-v"), NULL), 100 * (best - c->a[T - 1][j]), 1e-8,
             "forgetting");
    }
}

/* The average over the tasks seen, a series per result. */
static void check_avg(const dom_node *d, const fx_cl *c, int n, bool ctp) {
    const dom_node *p = plot_titled(d, ctp ? "average R_m over the tasks seen"
                                           : "average accuracy over the tasks seen");
    ck_assert_ptr_nonnull(p);
    const dom_node *g[8];
    ck_assert_int_eq(series_of(p, g, 8), n);
    for (int q = 0; q < n; q++) {
        double xs[16], ys[16];
        ck_assert_int_eq(series_values(g[q], xs, ys, 16), c[q].T);
        for (int i = 0; i < c[q].T; i++) {
            double s = 0;
            for (int j = 0; j <= i; j++)
                s += c[q].a[i][j];
            near(xs[i], i + 1, 0, "task");
            near(ys[i], 100 * s / (i + 1), 1e-8, "average");
        }
    }
}

START_TEST(continual_learning) {
    pkt_rng r = seeded();
    char *root = fx_tmpdir();
    char *lae = fx_join(root, "lae"), *seq = fx_join(root, "seqft"), *ctp = fx_join(root, "ctp");
    ck_assert_int_eq(mkdir(lae, 0777), 0);
    ck_assert_int_eq(mkdir(seq, 0777), 0);
    ck_assert_int_eq(mkdir(ctp, 0777), 0);
    fx_cl c[3];
    fx_make_cl(lae, "cl", "lae", &r, &c[0]);
    fx_make_cl(seq, "cl", "seqft", &r, &c[1]);
    fx_make_cl(ctp, "ctp", "ctp", &r, &c[2]);
    /* alone: heatmap, average line, forgetting; the summary numbers in the table */
    const char *one[1] = {lae};
    dom_node *d = page_of(one, 1, NULL);
    check_cl(d, &c[0], "lae", false);
    check_avg(d, &c[0], 1, false);
    check_metrics_table(d, lae);
    char pr[4096];
    problems_text(d, pr, sizeof pr);
    ck_assert_msg(strstr(pr, "log.csv is missing") != NULL, "%s", pr);
    dom_free(d);
    /* LAE against seqft: both heatmaps, the averages overlaid, A_last compared */
    const char *two[2] = {lae, seq};
    d = page_of(two, 2, NULL);
    check_cl(d, &c[0], "lae", false);
    check_cl(d, &c[1], "seqft", false);
    check_avg(d, c, 2, false);
    const dom_node *p = plot_titled(d, "A_last"), *g[4], *rects[4];
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(series_of(p, g, 4), 1);
    ck_assert_int_eq(dom_find(g[0], "rect", NULL, rects, 4), 2);
    for (int k = 0; k < 2; k++)
        near(strtod(dom_attr(rects[k], "data-v"), NULL), 100 * c[k].A_last, 1e-8, "A_last");
    dom_free(d);
    /* ctp: the recall matrix with task names that need escaping */
    const char *three[1] = {ctp};
    char *html = NULL;
    d = page_of(three, 1, &html);
    check_cl(d, &c[2], "ctp", true);
    check_avg(d, &c[2], 1, true);
    ck_assert(strstr(html, "task &lt;1&gt; &amp; co") != NULL);
    free(html);
    dom_free(d);
    free(lae), free(seq), free(ctp);
    fx_rmrf(root);
}
END_TEST

START_TEST(bad_and_missing_files) {
    pkt_rng r = seeded();
    char *root = fx_tmpdir();
    char *only_opts = fx_join(root, "only-options"), *broken = fx_join(root, "broken"),
         *empty = fx_join(root, "empty"), *gone = fx_join(root, "does-not-exist"),
         *badcl = fx_join(root, "bad-matrix"), *arr = fx_join(root, "array");
    ck_assert_int_eq(mkdir(only_opts, 0777), 0);
    ck_assert_int_eq(mkdir(broken, 0777), 0);
    ck_assert_int_eq(mkdir(empty, 0777), 0);
    ck_assert_int_eq(mkdir(badcl, 0777), 0);
    ck_assert_int_eq(mkdir(arr, 0777), 0);
    fx_write(only_opts, "options.json", "{\"method\": \"dgl\"}");
    /* metrics.json cut off at a random point on line 2; a log with malformed rows */
    char full[] = "{\"kind\": \"man\",\n \"test_accuracy\": 0.5, \"method\": \"e2e\"}";
    full[fx_int(&r, 17, (int)strlen(full) - 2)] = 0;
    fx_write(broken, "metrics.json", full);
    fx_write(broken, "log.csv", "epoch,loss\n1,0.5\n2,abc\n3\n4,0.25\n");
    fx_write(badcl, "metrics.json",
             "{\"kind\": \"cl\", \"accuracy_matrix\": [[0.5, null], [0.4]]}");
    fx_write(arr, "metrics.json", "[1, 2, 3]");
    fx_write(arr, "log.csv", "");
    const char *dirs[6] = {only_opts, broken, empty, gone, badcl, arr};
    char *html = NULL;
    dom_node *d = page_of(dirs, 6, &html);
    char pr[8192];
    problems_text(d, pr, sizeof pr);
    static const char *const want[] = {
        "metrics.json is missing",
        "log.csv is missing",
        "metrics.json is not valid JSON",
        "log.csv line 3: 'abc' is not a number: row skipped",
        "log.csv line 4: expected 2 fields, found 1: row skipped",
        "options.json is missing",
        "does-not-exist is not a folder (it does not exist)",
        "\"accuracy_matrix\" row 2 is not an array of 2 numbers or nulls",
        "metrics.json holds no JSON object",
        "log.csv is empty"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(pr, want[i]) != NULL, "'%s' not in the problems: %s", want[i], pr);
    /* the good rows of the broken log are still drawn */
    const dom_node *p = plot_titled(by_id(d, "compare"), "loss vs epoch"), *g[8];
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(series_of(p, g, 8), 1);
    double xs[4], ys[4];
    ck_assert_int_eq(series_values(g[0], xs, ys, 4), 2);
    near(xs[1], 4, 0, "x"), near(ys[1], 0.25, 0, "y");
    dom_free(d);
    free(html);
    /* each alone too, and through report_write into a file */
    for (int k = 0; k < 6; k++) {
        char out[600];
        snprintf(out, sizeof out, "%s/alone-%d.html", root, k);
        ck_assert_msg(report_write(&dirs[k], 1, out) == PK_OK, "%s", polyak_error());
        dom_free(page_file(out));
    }
    /* no folder at all */
    d = page_of(NULL, 0, &html);
    ck_assert(strstr(html, "No run folder was given") != NULL);
    free(html);
    dom_free(d);
    free(only_opts), free(broken), free(empty), free(gone), free(badcl), free(arr);
    fx_rmrf(root);
}
END_TEST

START_TEST(report_status) {
    /* a failed run keeps its error message; an interrupted run without metrics gets a page
     * that says so; run.json's times bracket the run */
    char *root = fx_tmpdir();
    char *dir = fx_join(root, "stopped");
    double t0 = (double)time(NULL);
    run_options ro = {.out = dir, .task = "man", .options_json = "{\"method\": \"dgl\"}"};
    pk_run *run = NULL;
    ck_assert(run_open(&ro, &run) == PK_OK);
    static const char *const cols[2] = {"epoch", "loss"};
    ck_assert(run_log(run, 2, cols, (double[]){1, 0.5}) == PK_OK);
    ck_assert(run_report(run, "interrupted") == PK_OK);
    pk_error(PK_ERR_INVALID, "the training diverged at step 7");
    ck_assert(run_report(run, "failed") == PK_OK);
    ck_assert_str_eq(polyak_error(), "the training diverged at step 7");
    run_close(run);
    double t1 = (double)time(NULL) + 1;
    char *rj = fx_join(dir, "run.json");
    char *rt = fx_read(rj);
    cJSON *info = cJSON_Parse(rt);
    ck_assert_str_eq(cJSON_GetObjectItem(info, "status")->valuestring, "failed");
    double s0 = cJSON_GetObjectItem(info, "started_unix")->valuedouble,
           s1 = cJSON_GetObjectItem(info, "finished_unix")->valuedouble;
    ck_assert(s0 >= t0 - 1 && s0 <= s1 && s1 <= t1);
    cJSON_Delete(info);
    free(rt), free(rj);
    char *hp = fx_join(dir, "report.html");
    dom_node *d = page_file(hp);
    char pr[2048];
    problems_text(d, pr, sizeof pr);
    ck_assert_msg(strstr(pr, "metrics.json is missing") != NULL, "%s", pr);
    ck_assert_ptr_nonnull(plot_titled(d, "loss vs epoch"));
    dom_free(d);
    free(hp), free(dir);
    fx_rmrf(root);
}
END_TEST

START_TEST(png_encode_roundtrip) {
    /* io/image.c's png_encode (the thumbnails) reads back through png_read to the same pixels */
    pkt_rng r = seeded();
    char *root = fx_tmpdir();
    for (int c = 1; c <= 4; c++) {
        pk_image im, back;
        int w = fx_int(&r, 1, 70), h = fx_int(&r, 1, 50), bits = c == 2 ? 16 : 8;
        ck_assert(image_create(&im, w, h, c, bits) == PK_OK);
        size_t bytes = (size_t)w * h * c * (bits / 8);
        for (size_t i = 0; i < bytes; i++)
            ((uint8_t *)im.data)[i] = (uint8_t)fx_int(&r, 0, 255);
        uint8_t *png = NULL;
        size_t len = 0;
        ck_assert_msg(png_encode(&im, &png, &len) == PK_OK, "%s", polyak_error());
        char *p = fx_join(root, "x.png");
        FILE *f = fopen(p, "wb");
        ck_assert_uint_eq(fwrite(png, 1, len, f), len);
        fclose(f);
        ck_assert(png_read(p, &back) == PK_OK);
        ck_assert(back.w == w && back.h == h && back.c == c && back.bits == bits);
        ck_assert(memcmp(back.data, im.data, bytes) == 0);
        free(png), free(p);
        image_free(&im), image_free(&back);
    }
    pk_image bad = {0};
    uint8_t *png = NULL;
    size_t len = 0;
    ck_assert(png_encode(&bad, &png, &len) == PK_ERR_INVALID && png == NULL);
    fx_rmrf(root);
}
END_TEST

START_TEST(kind_inference) {
    static const struct {
        const char *metrics, *options, *header, *kind;
        bool inferred;
    } cases[] = {
        {"{\"kind\": \"ctp\", \"test_views\": []}", NULL, NULL, "ctp", false},
        {"{\"test_views\": [], \"psnr\": 20}", NULL, NULL, "splat", true},
        {"{\"memory_bytes\": {}, \"test_accuracy\": 0.5}", NULL, NULL, "man", true},
        {"{\"knn_top1_per_epoch\": [0.5]}", NULL, NULL, "pretrain", true},
        {"{\"accuracy_matrix\": [[1]]}", NULL, NULL, "cl", true},
        {"{\"recall_matrix\": [[1]]}", NULL, NULL, "ctp", true},
        {NULL, "{\"iters\": 30000}", NULL, "splat", true},
        {NULL, NULL, "epoch,lr,knn_top1", "pretrain", true},
        {"{\"kind\": \"nonsense\"}", NULL, NULL, "unknown", true},
        {NULL, NULL, NULL, "unknown", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *m = cases[i].metrics ? cJSON_Parse(cases[i].metrics) : NULL;
        cJSON *o = cases[i].options ? cJSON_Parse(cases[i].options) : NULL;
        bool inf = !cases[i].inferred;
        ck_assert_str_eq(report_kind(m, o, cases[i].header, &inf), cases[i].kind);
        ck_assert(inf == cases[i].inferred);
        cJSON_Delete(m);
        cJSON_Delete(o);
    }
    /* the real dino36 run (written before "kind" existed) where this machine has it */
    const char *dino = "/work/runs/dino36";
    if (io_is_dir(dino)) {
        dom_node *d = page_of(&dino, 1, NULL);
        ck_assert_ptr_nonnull(plot_titled(d, "k-NN top-1 accuracy per epoch"));
        dom_free(d);
    }
}
END_TEST

START_TEST(svg_units) {
    /* escaping, number formatting and base64 against hand-worked values */
    svg_buf b = {0};
    svg_text(&b, "a<b>&\"c'\x01");
    ck_assert_str_eq(b.s, "a&lt;b&gt;&amp;&quot;c&#39;\xef\xbf\xbd");
    svg_free(&b);
    char t[32];
    svg_fmt(123456, 3, true, t, sizeof t);
    ck_assert_str_eq(t, "123k");
    svg_fmt(0.000125, 2, false, t, sizeof t);
    ck_assert_str_eq(t, "0.00013");
    svg_fmt(2.5, 6, false, t, sizeof t);
    ck_assert_str_eq(t, "2.5");
    svg_fmt(NAN, 6, false, t, sizeof t);
    ck_assert_str_eq(t, "n/a");
    pkt_rng r = seeded();
    for (int len = 0; len < 9; len++) {
        unsigned char in[9];
        for (int i = 0; i < len; i++)
            in[i] = (unsigned char)fx_int(&r, 0, 255);
        svg_base64(&b, in, (size_t)len);
        ck_assert_uint_eq(b.len, (size_t)(len + 2) / 3 * 4);
        /* decode and compare */
        const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        unsigned acc = 0;
        int bits = 0, n = 0;
        for (size_t i = 0; i < b.len && b.s[i] != '='; i++) {
            acc = acc << 6 | (unsigned)(strchr(al, b.s[i]) - al), bits += 6;
            if (bits >= 8) {
                ck_assert_int_eq((unsigned char)(acc >> (bits - 8)), in[n]);
                n++, bits -= 8;
            }
        }
        ck_assert_int_eq(n, len);
        svg_free(&b);
    }
    /* a long series is thinned to max_points, first and last kept */
    double x[5000], y[5000];
    for (int i = 0; i < 5000; i++)
        x[i] = i, y[i] = pkt_uniform(&r, -1, 1);
    svg_series s = {"s", x, y, 5000};
    svg_line(&b, &(svg_plot){.title = "t", .max_points = 100}, &s, 1);
    ck_assert(strstr(b.s, "data-n=\"100\" data-total=\"5000\"") != NULL);
    ck_assert(strstr(b.s, "data-v=\"0,") != NULL);
    ck_assert(strstr(b.s, " 4999,") != NULL);
    svg_free(&b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("report");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, svg_units);
    tcase_add_test(tc, splat_run);
    tcase_add_test(tc, man_comparison);
    tcase_add_test(tc, continual_learning);
    tcase_add_test(tc, bad_and_missing_files);
    tcase_add_test(tc, report_status);
    tcase_add_test(tc, png_encode_roundtrip);
    tcase_add_test(tc, kind_inference);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
