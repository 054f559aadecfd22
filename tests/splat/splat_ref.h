/* splat_ref.h - test helpers for the splat suites: random scenes and an independent dense
 * double-precision rasterizer (no tiles in the blend loop, every pixel visits every Gaussian
 * in depth order) whose branch decisions can be recorded once and then frozen, so that
 * central differences see the smooth branch the analytic backward differentiates. */
#ifndef POLYAK_TESTS_SPLAT_REF_H
#define POLYAK_TESTS_SPLAT_REF_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "splat/splat.h"

/* ----------------------------------------------------------------- random numbers */

typedef struct rng {
    uint64_t s;
} rng;

static inline uint32_t rng_u32(rng *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t x = r->s;
    return (uint32_t)((x ^ (x >> 22)) >> (22 + (x >> 61)));
}
static inline double rng_unif(rng *r) { return (rng_u32(r) + 0.5) / 4294967296.0; }
static inline double rng_normal(rng *r) {
    double u = rng_unif(r), v = rng_unif(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ----------------------------------------------------------------- scenes */

typedef struct test_scene {
    int n, deg, use_sh;
    float *means, *log_scales, *quats, *opac, *sh, *colors; // (n,3) (n,3) (n,4) (n) ...
    float bg[3];
    splat_camera cam;
} test_scene;

static inline int sh_coeffs(int deg) { return (deg + 1) * (deg + 1); }

static inline void test_scene_free(test_scene *s) {
    free(s->means), free(s->log_scales), free(s->quats), free(s->opac), free(s->sh);
    free(s->colors);
}

/* A camera looking down +z from the origin, rotated slightly, translated slightly. */
static inline void test_camera(rng *r, int W, int H, float f, splat_camera *cam) {
    memset(cam, 0, sizeof *cam);
    double a = 0.1 * rng_normal(r), b = 0.1 * rng_normal(r);
    double ca = cos(a), sa = sin(a), cb = cos(b), sb = sin(b);
    /* R = Ry(a) Rx(b) */
    double R[9] = {ca, sa * sb, sa * cb, 0, cb, -sb, -sa, ca * sb, ca * cb};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            cam->world_to_cam[i * 4 + j] = (float)R[i * 3 + j];
        cam->world_to_cam[i * 4 + 3] = (float)(0.1 * rng_normal(r));
    }
    cam->world_to_cam[15] = 1.f;
    cam->fx = f, cam->fy = f * 1.05f;
    cam->cx = 0.5f * W + 0.3f, cam->cy = 0.5f * H - 0.2f;
    cam->width = W, cam->height = H;
}

/* n random Gaussians in front of the camera; `spread` > 1 puts some outside the view. */
static inline void test_scene_make(rng *r, test_scene *s, int n, int use_sh, int deg,
                                   float scale_lo, float scale_hi, float spread) {
    memset(s, 0, sizeof *s);
    s->n = n, s->use_sh = use_sh, s->deg = deg;
    int K = sh_coeffs(deg);
    s->means = malloc(sizeof(float) * 3 * (n + 1));
    s->log_scales = malloc(sizeof(float) * 3 * (n + 1));
    s->quats = malloc(sizeof(float) * 4 * (n + 1));
    s->opac = malloc(sizeof(float) * (n + 1));
    s->sh = use_sh ? malloc(sizeof(float) * 3 * K * (n + 1)) : NULL;
    s->colors = use_sh ? NULL : malloc(sizeof(float) * 3 * (n + 1));
    for (int g = 0; g < n; g++) {
        double z = 2.0 + 3.0 * rng_unif(r);
        s->means[3 * g + 0] = (float)((rng_unif(r) * 2 - 1) * 0.6 * spread * z);
        s->means[3 * g + 1] = (float)((rng_unif(r) * 2 - 1) * 0.45 * spread * z);
        s->means[3 * g + 2] = (float)z;
        for (int j = 0; j < 3; j++)
            s->log_scales[3 * g + j] = (float)log(scale_lo + (scale_hi - scale_lo) * rng_unif(r));
        for (int j = 0; j < 4; j++)
            s->quats[4 * g + j] = (float)rng_normal(r);
        s->opac[g] = (float)(0.5 + 1.5 * rng_normal(r));
        if (use_sh)
            for (int k = 0; k < 3 * K; k++)
                s->sh[3 * K * g + k] = (float)((k < 3 ? 0.8 : 0.3) * rng_normal(r));
        else
            for (int c = 0; c < 3; c++)
                s->colors[3 * g + c] = (float)rng_unif(r);
    }
    for (int c = 0; c < 3; c++)
        s->bg[c] = (float)rng_unif(r);
}

static inline splat_scene_view test_scene_view(const test_scene *s) {
    splat_scene_view v = {.n = s->n,
                          .means = s->means,
                          .log_scales = s->log_scales,
                          .quats = s->quats,
                          .opacity_logits = s->opac,
                          .sh = s->use_sh ? s->sh : NULL,
                          .sh_degree = s->deg,
                          .colors = s->use_sh ? NULL : s->colors};
    for (int c = 0; c < 3; c++)
        v.background[c] = s->bg[c];
    return v;
}

/* ----------------------------------------------------------------- dense double reference */

/* Branch decisions, recorded by the first call and replayed by later ones. */
typedef struct ref_freeze {
    int recorded;
    int n, HW;
    unsigned char *vis, *clx, *cly, *crgb; // (n) (n) (n) (n, 3)
    int *rect;                             // (n, 4)
    int *order;                            // (n) Gaussians by depth
    int *ncontrib;                         // (HW)
    int *contrib;                          // (HW, n) Gaussian ids in blend order
    unsigned char *aclamp;                 // (HW, n) alpha hit 0.99
} ref_freeze;

static inline void ref_freeze_init(ref_freeze *f, int n, int HW) {
    memset(f, 0, sizeof *f);
    f->n = n, f->HW = HW;
    size_t nn = (size_t)n + 1;
    f->vis = calloc(nn, 1), f->clx = calloc(nn, 1), f->cly = calloc(nn, 1);
    f->crgb = calloc(3 * nn, 1), f->rect = calloc(4 * nn, sizeof(int));
    f->order = calloc(nn, sizeof(int)), f->ncontrib = calloc((size_t)HW, sizeof(int));
    f->contrib = calloc((size_t)HW * nn, sizeof(int));
    f->aclamp = calloc((size_t)HW * nn, 1);
}

static inline void ref_freeze_free(ref_freeze *f) {
    free(f->vis), free(f->clx), free(f->cly), free(f->crgb), free(f->rect), free(f->order);
    free(f->ncontrib), free(f->contrib), free(f->aclamp);
}

/* Double-precision parameters of a scene (so that differences can perturb them finely). */
typedef struct ref_params {
    int n, deg, use_sh;
    double *means, *ls, *q, *op, *sh, *col; // as test_scene
    double *d2;                             // (n, 2) offsets added to mean2D (for d mean2D)
    double bg[3];
} ref_params;

static inline void ref_params_from(const test_scene *s, ref_params *p) {
    int n = s->n, K = sh_coeffs(s->deg);
    p->n = n, p->deg = s->deg, p->use_sh = s->use_sh;
    p->means = calloc(3 * (size_t)n + 1, sizeof(double));
    p->ls = calloc(3 * (size_t)n + 1, sizeof(double));
    p->q = calloc(4 * (size_t)n + 1, sizeof(double));
    p->op = calloc((size_t)n + 1, sizeof(double));
    p->sh = calloc(3 * (size_t)K * n + 1, sizeof(double));
    p->col = calloc(3 * (size_t)n + 1, sizeof(double));
    p->d2 = calloc(2 * (size_t)n + 1, sizeof(double));
    for (int i = 0; i < 3 * n; i++)
        p->means[i] = s->means[i], p->ls[i] = s->log_scales[i];
    for (int i = 0; i < 4 * n; i++)
        p->q[i] = s->quats[i];
    for (int i = 0; i < n; i++)
        p->op[i] = s->opac[i];
    if (s->use_sh)
        for (int i = 0; i < 3 * K * n; i++)
            p->sh[i] = s->sh[i];
    else
        for (int i = 0; i < 3 * n; i++)
            p->col[i] = s->colors[i];
    for (int c = 0; c < 3; c++)
        p->bg[c] = s->bg[c];
}

static inline void ref_params_free(ref_params *p) {
    free(p->means), free(p->ls), free(p->q), free(p->op), free(p->sh), free(p->col);
    free(p->d2);
}

static inline void ref_sh_basis(int deg, double x, double y, double z, double *Y) {
    /* same constants as diff-gaussian-rasterization auxiliary.h */
    const double C0 = 0.28209479177387814, C1 = 0.4886025119029199;
    const double C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                          -1.0925484305920792, 0.5462742152960396};
    const double C3[7] = {-0.5900435899266435, 2.890611442640554,   -0.4570457994644658,
                          0.3731763325901154,  -0.4570457994644658, 1.445305721320277,
                          -0.5900435899266435};
    double xx = x * x, yy = y * y, zz = z * z;
    Y[0] = C0;
    Y[1] = -C1 * y, Y[2] = C1 * z, Y[3] = -C1 * x;
    Y[4] = C2[0] * x * y, Y[5] = C2[1] * y * z, Y[6] = C2[2] * (2 * zz - xx - yy);
    Y[7] = C2[3] * x * z, Y[8] = C2[4] * (xx - yy);
    Y[9] = C3[0] * y * (3 * xx - yy), Y[10] = C3[1] * x * y * z;
    Y[11] = C3[2] * y * (4 * zz - xx - yy), Y[12] = C3[3] * z * (2 * zz - 3 * xx - 3 * yy);
    Y[13] = C3[4] * x * (4 * zz - xx - yy), Y[14] = C3[5] * z * (xx - yy);
    Y[15] = C3[6] * x * (xx - 3 * yy);
    (void)deg;
}

/* Dense render in double. Outputs rgb (3, H, W), alpha (H, W), depth (H, W). When f is not
 * recorded yet, records every decision; afterwards replays them. */
static inline void ref_render(const ref_params *p, const splat_camera *cam, ref_freeze *f,
                              double *rgb, double *alpha, double *depth) {
    int n = p->n, W = cam->width, H = cam->height, HW = W * H, K = sh_coeffs(p->deg);
    int rec = !f->recorded;
    double R[9], t[3], cp[3];
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            R[i * 3 + j] = cam->world_to_cam[i * 4 + j];
        t[i] = cam->world_to_cam[i * 4 + 3];
    }
    for (int j = 0; j < 3; j++)
        cp[j] = -(R[j] * t[0] + R[3 + j] * t[1] + R[6 + j] * t[2]);
    double limx = 1.3 * (0.5 * W / (double)cam->fx), limy = 1.3 * (0.5 * H / (double)cam->fy);
    double nearp = cam->near > 0 ? cam->near : 0.2;
    int tiles_x = (W + 15) / 16, tiles_y = (H + 15) / 16;
    double *xy = calloc(2 * (size_t)n + 1, sizeof(double));
    double *con = calloc(3 * (size_t)n + 1, sizeof(double));
    double *op = calloc((size_t)n + 1, sizeof(double));
    double *col = calloc(3 * (size_t)n + 1, sizeof(double));
    double *dep = calloc((size_t)n + 1, sizeof(double));
    for (int g = 0; g < n; g++) {
        const double *m = p->means + 3 * g;
        double pv[3];
        for (int i = 0; i < 3; i++)
            pv[i] = R[i * 3] * m[0] + R[i * 3 + 1] * m[1] + R[i * 3 + 2] * m[2] + t[i];
        if (rec) f->vis[g] = pv[2] > nearp;
        if (!f->vis[g]) continue;
        const double *qi = p->q + 4 * g;
        double qn = sqrt(qi[0] * qi[0] + qi[1] * qi[1] + qi[2] * qi[2] + qi[3] * qi[3]);
        double w = qi[0] / qn, x = qi[1] / qn, y = qi[2] / qn, z = qi[3] / qn;
        double Rq[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                        2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
        double s[3] = {exp(p->ls[3 * g]), exp(p->ls[3 * g + 1]), exp(p->ls[3 * g + 2])};
        double Sig[9], WSig[9], Sc[9];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double a = 0;
                for (int k = 0; k < 3; k++)
                    a += Rq[i * 3 + k] * s[k] * s[k] * Rq[j * 3 + k];
                Sig[i * 3 + j] = a;
            }
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double a = 0;
                for (int k = 0; k < 3; k++)
                    a += R[i * 3 + k] * Sig[k * 3 + j];
                WSig[i * 3 + j] = a;
            }
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double a = 0;
                for (int k = 0; k < 3; k++)
                    a += WSig[i * 3 + k] * R[j * 3 + k];
                Sc[i * 3 + j] = a;
            }
        double zz = pv[2], u = pv[0] / zz, v = pv[1] / zz;
        if (rec) f->clx[g] = u < -limx || u > limx, f->cly[g] = v < -limy || v > limy;
        double uc = f->clx[g] ? (u < 0 ? -limx : limx) : u;
        double vc = f->cly[g] ? (v < 0 ? -limy : limy) : v;
        double J[6] = {cam->fx / zz, 0, -cam->fx * uc / zz, 0, cam->fy / zz, -cam->fy * vc / zz};
        double c2[4];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                double a = 0;
                for (int k = 0; k < 3; k++)
                    for (int l = 0; l < 3; l++)
                        a += J[i * 3 + k] * Sc[k * 3 + l] * J[j * 3 + l];
                c2[i * 2 + j] = a;
            }
        double A = c2[0] + 0.3, B = c2[1], C = c2[3] + 0.3, det = A * C - B * B;
        con[3 * g] = C / det, con[3 * g + 1] = -B / det, con[3 * g + 2] = A / det;
        xy[2 * g] = cam->fx * u + cam->cx + p->d2[2 * g];
        xy[2 * g + 1] = cam->fy * v + cam->cy + p->d2[2 * g + 1];
        if (rec) {
            double mid = 0.5 * (A + C);
            double lam = mid + sqrt(fmax(0.1, mid * mid - det));
            double r = ceil(3 * sqrt(lam));
            double px = xy[2 * g] - 0.5, py = xy[2 * g + 1] - 0.5;
            f->rect[4 * g] = (int)fmin(tiles_x, fmax(0, (px - r) / 16));
            f->rect[4 * g + 1] = (int)fmin(tiles_x, fmax(0, (px + r + 15) / 16));
            f->rect[4 * g + 2] = (int)fmin(tiles_y, fmax(0, (py - r) / 16));
            f->rect[4 * g + 3] = (int)fmin(tiles_y, fmax(0, (py + r + 15) / 16));
            int *rc = f->rect + 4 * g;
            if ((rc[1] - rc[0]) * (rc[3] - rc[2]) == 0) f->vis[g] = 0;
        }
        dep[g] = pv[2];
        op[g] = 1 / (1 + exp(-p->op[g]));
        if (p->use_sh) {
            double d[3] = {m[0] - cp[0], m[1] - cp[1], m[2] - cp[2]};
            double len = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
            double Y[16];
            ref_sh_basis(p->deg, d[0] / len, d[1] / len, d[2] / len, Y);
            for (int c = 0; c < 3; c++) {
                double a = 0.5;
                for (int k = 0; k < K; k++)
                    a += Y[k] * p->sh[(g * K + k) * 3 + c];
                if (rec) f->crgb[3 * g + c] = a < 0;
                col[3 * g + c] = f->crgb[3 * g + c] ? 0 : a;
            }
        } else {
            for (int c = 0; c < 3; c++)
                col[3 * g + c] = p->col[3 * g + c];
        }
    }
    if (rec) {
        /* insertion sort by depth, ties by index (the CPU sort's order) */
        int cnt = 0;
        for (int g = 0; g < n; g++) {
            if (!f->vis[g]) continue;
            int j = cnt++;
            while (j > 0 && dep[f->order[j - 1]] > dep[g])
                f->order[j] = f->order[j - 1], j--;
            f->order[j] = g;
        }
        for (int i = cnt; i < n; i++)
            f->order[i] = -1;
    }
    for (int py = 0; py < H; py++)
        for (int px = 0; px < W; px++) {
            int i = py * W + px, tx = px / 16, ty = py / 16;
            double T = 1, c[3] = {0, 0, 0}, dd = 0;
            int cnt = rec ? n : f->ncontrib[i];
            int nc = 0;
            for (int j = 0; j < cnt; j++) {
                int g = rec ? f->order[j] : f->contrib[(size_t)i * n + j];
                if (g < 0) break;
                double dx = xy[2 * g] - (px + 0.5), dy = xy[2 * g + 1] - (py + 0.5);
                double power = -0.5 * (con[3 * g] * dx * dx + con[3 * g + 2] * dy * dy) -
                               con[3 * g + 1] * dx * dy;
                double a = op[g] * exp(power);
                if (rec) {
                    const int *rc = f->rect + 4 * g;
                    if (tx < rc[0] || tx >= rc[1] || ty < rc[2] || ty >= rc[3]) continue;
                    if (power > 0) continue;
                    double al = fmin(0.99, a);
                    if (al < 1.0 / 255) continue;
                    if (T * (1 - al) < 1e-4) break;
                    f->aclamp[(size_t)i * n + nc] = a > 0.99;
                    f->contrib[(size_t)i * n + nc] = g;
                    nc++;
                }
                if (f->aclamp[(size_t)i * n + j] && !rec) a = 0.99;
                if (rec && a > 0.99) a = 0.99;
                for (int ch = 0; ch < 3; ch++)
                    c[ch] += a * T * col[3 * g + ch];
                dd += a * T * dep[g];
                T *= 1 - a;
            }
            if (rec) f->ncontrib[i] = nc;
            for (int ch = 0; ch < 3; ch++)
                rgb[ch * HW + i] = c[ch] + T * p->bg[ch];
            alpha[i] = 1 - T;
            depth[i] = dd;
        }
    f->recorded = 1;
    free(xy), free(con), free(op), free(col), free(dep);
}

/* Normalised error ||a - b|| / ||b|| of float a against double b. */
static inline double nerr_fd(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d, den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
