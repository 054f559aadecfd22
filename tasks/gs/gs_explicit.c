/* gs_explicit.c - the explicit Gaussian source of plain 3DGS: per-Gaussian parameters with
 * their Adam moments, initialisation from points (3DGS create_from_pcd), the densification
 * statistics, clone / split / prune (densify_and_prune), opacity reset, the PLY layout and the
 * checkpoint tensors; and its resident copy on a Vulkan device (gs_explicit_dev: parameters,
 * Adam and statistics stepped there, the host copy synchronised only when asked). Follows
 * graphdeco-inria/gaussian-splatting scene/gaussian_model.py. */
#include <float.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gs_source.h"
#include "autograd.h"
#include "optim/optim_kernels.h"
#include "optim/optim_vk.h"
#include "optim/schedule.h"
#include "splat/splat_pc.h"
#include "vk/vk.h"

#define SH_C0 0.28209479177387814 /* 3DGS utils/sh_utils.py C0 */
#define REST 45                   /* 15 higher-order coefficients x 3 channels */

/* The trainable attributes, each (n, width) with its own learning rate and Adam moments. */
enum { A_MEANS, A_DC, A_REST, A_OPACITY, A_SCALES, A_QUATS, A_COUNT };
static const int attr_width[A_COUNT] = {3, 3, REST, 1, 3, 4};
static const char *const attr_name[A_COUNT] = {"means",   "sh_dc",      "sh_rest",
                                               "opacity", "log_scales", "quats"};

struct gs_explicit {
    int64_t n, cap;
    float *p[A_COUNT], *m[A_COUNT], *v[A_COUNT], *g[A_COUNT]; // (cap, width) each
    float *sh, *sh_grad;  // (cap, 16, 3) assembled for one render and its gradient
    float *grad2d;        // (cap, 2) pixel-space d loss / d mean2D of the last render
    float *accum, *denom; // (cap) 3DGS xyz_gradient_accum and denom
    float *max_radii;     // (cap) 3DGS max_radii2D
    int last_degree;
    int64_t adam_step; // optimizer updates taken (torch Adam's state['step'])
    double extent;
    gs_lr lr;
    pk_pool *pool;
    char names[3 * A_COUNT + 4][32]; // checkpoint tensor names
    int64_t shapes[3 * A_COUNT + 4][2];
};

gs_lr gs_lr_defaults(int64_t max_steps) {
    return (gs_lr){.means_init = 1.6e-4,
                   .means_final = 1.6e-6,
                   .means_max_steps = max_steps,
                   .sh_dc = 2.5e-3,
                   .sh_rest = 2.5e-3 / 20.0,
                   .opacity = 0.025,
                   .scaling = 5e-3,
                   .rotation = 1e-3,
                   .eps = 1e-15};
}

/* Grows every per-Gaussian array to hold `want` Gaussians (new space zeroed). */
static pk_status reserve(gs_explicit *g, int64_t want) {
    if (want <= g->cap) return PK_OK;
    int64_t cap = want + want / 2 + 1024;
    float **arrays[4] = {g->p, g->m, g->v, g->g};
    for (int k = 0; k < 4; k++)
        for (int a = 0; a < A_COUNT; a++) {
            size_t w = (size_t)attr_width[a];
            float *q = realloc(arrays[k][a], sizeof(float) * w * (size_t)cap);
            if (!q)
                return pk_error(PK_ERR_NOMEM, "3DGS: out of memory for %lld Gaussians",
                                (long long)want);
            memset(q + w * (size_t)g->cap, 0, sizeof(float) * w * (size_t)(cap - g->cap));
            arrays[k][a] = q;
        }
    struct {
        float **p;
        int w;
    } extra[] = {{&g->sh, 48},   {&g->sh_grad, 48}, {&g->grad2d, 2},
                 {&g->accum, 1}, {&g->denom, 1},    {&g->max_radii, 1}};
    for (size_t k = 0; k < sizeof extra / sizeof extra[0]; k++) {
        size_t w = (size_t)extra[k].w;
        float *q = realloc(*extra[k].p, sizeof(float) * w * (size_t)cap);
        if (!q)
            return pk_error(PK_ERR_NOMEM, "3DGS: out of memory for %lld Gaussians",
                            (long long)want);
        memset(q + w * (size_t)g->cap, 0, sizeof(float) * w * (size_t)(cap - g->cap));
        *extra[k].p = q;
    }
    g->cap = cap;
    return PK_OK;
}

static void explicit_destroy(void *self) {
    gs_explicit *g = self;
    if (!g) return;
    for (int a = 0; a < A_COUNT; a++)
        free(g->p[a]), free(g->m[a]), free(g->v[a]), free(g->g[a]);
    free(g->sh), free(g->sh_grad), free(g->grad2d), free(g->accum), free(g->denom);
    free(g->max_radii);
    free(g);
}

/* ---- nearest neighbours on a uniform grid ---- */

typedef struct knn_grid {
    float lo[3], cell;
    int dim[3];
    int64_t *start; // (cells + 1)
    int64_t *order; // (n) point indices sorted by cell
} knn_grid;

static int64_t cell_of(const knn_grid *kg, const float *p, int c[3]) {
    for (int k = 0; k < 3; k++) {
        int v = (int)((p[k] - kg->lo[k]) / kg->cell);
        c[k] = v < 0 ? 0 : v >= kg->dim[k] ? kg->dim[k] - 1 : v;
    }
    return ((int64_t)c[2] * kg->dim[1] + c[1]) * kg->dim[0] + c[0];
}

pk_status gs_knn3_scale(const float *xyz, int64_t n, float *out) {
    if (n <= 0) return PK_OK;
    if (n == 1) {
        out[0] = 1.0f; /* no neighbour: a unit scale (the caller's extent decides more) */
        return PK_OK;
    }
    knn_grid kg;
    float hi[3];
    for (int k = 0; k < 3; k++)
        kg.lo[k] = hi[k] = xyz[k];
    for (int64_t i = 1; i < n; i++)
        for (int k = 0; k < 3; k++) {
            kg.lo[k] = fminf(kg.lo[k], xyz[i * 3 + k]);
            hi[k] = fmaxf(hi[k], xyz[i * 3 + k]);
        }
    double ext = 0;
    for (int k = 0; k < 3; k++)
        ext = fmax(ext, (double)hi[k] - kg.lo[k]);
    if (!(ext > 0)) ext = 1;
    /* about 2 points per cell on average for a volume-filling cloud, at most 2^21 cells */
    double vol = 1;
    for (int k = 0; k < 3; k++)
        vol *= fmax((double)hi[k] - kg.lo[k], ext * 1e-3);
    double cell = cbrt(vol * 2.0 / (double)n);
    for (;;) {
        int64_t cells = 1;
        for (int k = 0; k < 3; k++) {
            kg.dim[k] = (int)fmin(fmax(ceil(((double)hi[k] - kg.lo[k]) / cell), 1), 1 << 12);
            cells *= kg.dim[k];
        }
        if (cells <= (1 << 21)) break;
        cell *= 1.5;
    }
    kg.cell = (float)cell;
    int64_t cells = (int64_t)kg.dim[0] * kg.dim[1] * kg.dim[2];
    kg.start = calloc((size_t)cells + 1, sizeof(int64_t));
    kg.order = malloc(sizeof(int64_t) * (size_t)n);
    int64_t *cid = malloc(sizeof(int64_t) * (size_t)n);
    if (!kg.start || !kg.order || !cid) {
        free(kg.start), free(kg.order), free(cid);
        return pk_error(PK_ERR_NOMEM, "3DGS: out of memory for the neighbour grid");
    }
    int c[3];
    for (int64_t i = 0; i < n; i++)
        kg.start[(cid[i] = cell_of(&kg, xyz + i * 3, c)) + 1]++;
    for (int64_t k = 0; k < cells; k++)
        kg.start[k + 1] += kg.start[k];
    int64_t *fill = malloc(sizeof(int64_t) * (size_t)cells);
    if (!fill) {
        free(kg.start), free(kg.order), free(cid);
        return pk_error(PK_ERR_NOMEM, "3DGS: out of memory for the neighbour grid");
    }
    memcpy(fill, kg.start, sizeof(int64_t) * (size_t)cells);
    for (int64_t i = 0; i < n; i++)
        kg.order[fill[cid[i]]++] = i;
    free(fill), free(cid);
    int maxdim = kg.dim[0] > kg.dim[1] ? kg.dim[0] : kg.dim[1];
    maxdim = maxdim > kg.dim[2] ? maxdim : kg.dim[2];
    for (int64_t i = 0; i < n; i++) {
        const float *p = xyz + i * 3;
        double best[3] = {DBL_MAX, DBL_MAX, DBL_MAX};
        cell_of(&kg, p, c);
        for (int r = 0; r <= maxdim; r++) {
            /* the shell of cells at Chebyshev distance r from the point's cell */
            for (int z = c[2] - r; z <= c[2] + r; z++) {
                if (z < 0 || z >= kg.dim[2]) continue;
                for (int y = c[1] - r; y <= c[1] + r; y++) {
                    if (y < 0 || y >= kg.dim[1]) continue;
                    int ring = abs(z - c[2]) == r || abs(y - c[1]) == r;
                    int step = ring || r == 0 ? 1 : 2 * r;
                    for (int x = c[0] - r; x <= c[0] + r; x += step) {
                        if (x < 0 || x >= kg.dim[0]) continue;
                        int64_t k = ((int64_t)z * kg.dim[1] + y) * kg.dim[0] + x;
                        for (int64_t j = kg.start[k]; j < kg.start[k + 1]; j++) {
                            int64_t q = kg.order[j];
                            if (q == i) continue;
                            double d = 0;
                            for (int a = 0; a < 3; a++) {
                                double t = (double)xyz[q * 3 + a] - p[a];
                                d += t * t;
                            }
                            if (d < best[2]) {
                                if (d < best[1]) {
                                    best[2] = best[1];
                                    if (d < best[0])
                                        best[1] = best[0], best[0] = d;
                                    else
                                        best[1] = d;
                                } else
                                    best[2] = d;
                            }
                        }
                    }
                }
            }
            /* cells beyond this shell are at least r cells away from the point */
            double reach = (double)r * cell;
            if (best[2] <= reach * reach) break;
        }
        int have = n - 1 < 3 ? (int)(n - 1) : 3;
        double s = 0;
        for (int k = 0; k < have; k++)
            s += best[k];
        /* 3DGS: dist2 = mean squared distance to the 3 nearest, clamped at 1e-7 */
        out[i] = (float)sqrt(fmax(s / have, 1e-7));
    }
    free(kg.start), free(kg.order);
    return PK_OK;
}

/* ---- creation ---- */

static float logitf(double p) { return (float)log(p / (1.0 - p)); }

pk_status gs_explicit_create(const float *xyz, const float *rgb, int64_t n, double extent,
                             const gs_lr *lr, pk_pool *pool, gs_explicit **out) {
    *out = NULL;
    if (n <= 0) return pk_error(PK_ERR_INVALID, "3DGS: no points to start from");
    gs_explicit *g = calloc(1, sizeof *g);
    if (!g) return pk_error(PK_ERR_NOMEM, "3DGS: out of memory");
    g->extent = extent;
    g->lr = *lr;
    g->pool = pool;
    pk_status s = reserve(g, n);
    float *dist = s == PK_OK ? malloc(sizeof(float) * (size_t)n) : NULL;
    if (s == PK_OK && !dist) s = pk_error(PK_ERR_NOMEM, "3DGS: out of memory");
    if (s == PK_OK) s = gs_knn3_scale(xyz, n, dist);
    if (s != PK_OK) {
        free(dist);
        explicit_destroy(g);
        return s;
    }
    g->n = n;
    float op = logitf(0.1);
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) {
            g->p[A_MEANS][i * 3 + k] = xyz[i * 3 + k];
            /* RGB2SH: (c - 0.5) / C0; no colour: grey */
            g->p[A_DC][i * 3 + k] = rgb ? (float)((rgb[i * 3 + k] - 0.5) / SH_C0) : 0.0f;
            g->p[A_SCALES][i * 3 + k] = logf(n == 1 ? (float)(0.01 * extent) : dist[i]);
        }
        g->p[A_OPACITY][i] = op;
        g->p[A_QUATS][i * 4] = 1.0f;
    }
    free(dist);
    *out = g;
    return PK_OK;
}

/* ---- the render interface ---- */

static pk_status explicit_produce(void *self, const splat_camera *cam, int sh_degree,
                                  gs_arrays *out, gs_array_grads *gr) {
    (void)cam; /* explicit Gaussians do not depend on the view */
    gs_explicit *g = self;
    if (sh_degree < 0 || sh_degree > 3)
        return pk_error(PK_ERR_INVALID, "3DGS: SH degree %d outside 0..3", sh_degree);
    int K = (sh_degree + 1) * (sh_degree + 1);
    size_t n = (size_t)g->n;
    for (size_t i = 0; i < n; i++) {
        float *d = g->sh + i * (size_t)K * 3;
        memcpy(d, g->p[A_DC] + i * 3, sizeof(float) * 3);
        if (K > 1) memcpy(d + 3, g->p[A_REST] + i * REST, sizeof(float) * 3 * (size_t)(K - 1));
    }
    memset(g->g[A_MEANS], 0, sizeof(float) * 3 * n);
    memset(g->g[A_SCALES], 0, sizeof(float) * 3 * n);
    memset(g->g[A_QUATS], 0, sizeof(float) * 4 * n);
    memset(g->g[A_OPACITY], 0, sizeof(float) * n);
    memset(g->sh_grad, 0, sizeof(float) * 3 * (size_t)K * n);
    memset(g->grad2d, 0, sizeof(float) * 2 * n);
    g->last_degree = sh_degree;
    *out = (gs_arrays){.n = (int)g->n,
                       .means = g->p[A_MEANS],
                       .log_scales = g->p[A_SCALES],
                       .quats = g->p[A_QUATS],
                       .opacity_logits = g->p[A_OPACITY],
                       .sh = g->sh,
                       .sh_degree = sh_degree};
    *gr = (gs_array_grads){.means = g->g[A_MEANS],
                           .log_scales = g->g[A_SCALES],
                           .quats = g->g[A_QUATS],
                           .opacity_logits = g->g[A_OPACITY],
                           .sh = g->sh_grad,
                           .means2d = g->grad2d};
    return PK_OK;
}

double gs_explicit_means_lr(const gs_explicit *g, int64_t step) {
    pk_lr_schedule s = {.kind = PK_LR_EXP,
                        .lr = g->lr.means_init * g->extent,
                        .lr_final = g->lr.means_final * g->extent,
                        .max_steps = g->lr.means_max_steps > 0 ? g->lr.means_max_steps : 1};
    return schedule_lr(&s, step);
}

static pk_status explicit_step(void *self, int64_t iteration) {
    gs_explicit *g = self;
    g->adam_step++;
    int K = (g->last_degree + 1) * (g->last_degree + 1);
    size_t n = (size_t)g->n;
    /* split the (n, K, 3) SH gradient into the DC and rest attributes (rest beyond the active
     * degree gets zero, as in 3DGS where those coefficients are not used by the render) */
    for (size_t i = 0; i < n; i++) {
        const float *d = g->sh_grad + i * (size_t)K * 3;
        memcpy(g->g[A_DC] + i * 3, d, sizeof(float) * 3);
        float *r = g->g[A_REST] + i * REST;
        if (K > 1) memcpy(r, d + 3, sizeof(float) * 3 * (size_t)(K - 1));
        memset(r + 3 * (K - 1), 0, sizeof(float) * (size_t)(REST - 3 * (K - 1)));
    }
    double lr[A_COUNT] = {gs_explicit_means_lr(g, iteration),
                          g->lr.sh_dc,
                          g->lr.sh_rest,
                          g->lr.opacity,
                          g->lr.scaling,
                          g->lr.rotation};
    for (int a = 0; a < A_COUNT; a++) {
        pk_adamw_params hp = {.lr = lr[a], .eps = g->lr.eps};
        PK_TRY(optim_adam_step(g->pool, &hp, g->adam_step, g->n * attr_width[a], g->p[a], g->g[a],
                               g->m[a], g->v[a]));
    }
    return PK_OK;
}

static int64_t explicit_count(const void *self) { return ((const gs_explicit *)self)->n; }

static pk_status explicit_export(const void *self, pk_gaussians *out) {
    const gs_explicit *g = self;
    PK_TRY(gaussians_create(out, (size_t)g->n, 3));
    size_t n = (size_t)g->n;
    memcpy(out->xyz, g->p[A_MEANS], sizeof(float) * 3 * n);
    memcpy(out->f_dc, g->p[A_DC], sizeof(float) * 3 * n);
    memcpy(out->opacity, g->p[A_OPACITY], sizeof(float) * n);
    memcpy(out->scale, g->p[A_SCALES], sizeof(float) * 3 * n);
    memcpy(out->rot, g->p[A_QUATS], sizeof(float) * 4 * n);
    /* ours: (n, 15, 3) coefficient-major; PLY: channel-major (R 1..15, G 1..15, B 1..15) */
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 15; k++)
            for (int c = 0; c < 3; c++)
                out->f_rest[i * REST + (size_t)c * 15 + (size_t)k] =
                    g->p[A_REST][i * REST + (size_t)k * 3 + (size_t)c];
    return PK_OK;
}

/* ---- densification ---- */

void gs_explicit_add_stats(gs_explicit *g, const float *grad2d_px, const int32_t *radii, int width,
                           int height) {
    float hx = 0.5f * (float)width, hy = 0.5f * (float)height;
    for (int64_t i = 0; i < g->n; i++) {
        if (radii[i] <= 0) continue;
        float gx = grad2d_px[i * 2] * hx, gy = grad2d_px[i * 2 + 1] * hy;
        g->accum[i] += sqrtf(gx * gx + gy * gy);
        g->denom[i] += 1.0f;
        if ((float)radii[i] > g->max_radii[i]) g->max_radii[i] = (float)radii[i];
    }
}

void gs_explicit_stat_terms(const gs_explicit *g, const float *grad2d_px, const int32_t *radii,
                            int width, int height, float *norm, float *seen) {
    float hx = 0.5f * (float)width, hy = 0.5f * (float)height;
    for (int64_t i = 0; i < g->n; i++) {
        if (radii[i] <= 0) {
            norm[i] = 0, seen[i] = 0;
            continue;
        }
        float gx = grad2d_px[i * 2] * hx, gy = grad2d_px[i * 2 + 1] * hy;
        norm[i] = sqrtf(gx * gx + gy * gy);
        seen[i] = 1.0f;
    }
}

void gs_explicit_add_stat_terms(gs_explicit *g, const float *norm, const float *seen,
                                const int32_t *radii) {
    for (int64_t i = 0; i < g->n; i++) {
        g->accum[i] += norm[i];
        g->denom[i] += seen[i];
        if ((float)radii[i] > g->max_radii[i]) g->max_radii[i] = (float)radii[i];
    }
}

float *gs_explicit_max_radii(gs_explicit *g) { return g->max_radii; }

uint64_t gs_explicit_hash(const gs_explicit *g) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)g->n; /* FNV-1a over the parameters' bits */
    for (int a = 0; a < A_COUNT; a++) {
        const unsigned char *b = (const unsigned char *)g->p[a];
        size_t n = sizeof(float) * (size_t)attr_width[a] * (size_t)g->n;
        for (size_t i = 0; i < n; i++)
            h = (h ^ b[i]) * 1099511628211ull;
    }
    return h;
}

void gs_explicit_reset_opacity(gs_explicit *g) {
    float cap = logitf(0.01);
    for (int64_t i = 0; i < g->n; i++)
        if (g->p[A_OPACITY][i] > cap) g->p[A_OPACITY][i] = cap;
    memset(g->m[A_OPACITY], 0, sizeof(float) * (size_t)g->n);
    memset(g->v[A_OPACITY], 0, sizeof(float) * (size_t)g->n);
}

/* Copies Gaussian src to slot dst (parameters only; moments zeroed as 3DGS's
 * cat_tensors_to_optimizer does for new points). */
static void copy_new(gs_explicit *g, int64_t dst, int64_t src) {
    for (int a = 0; a < A_COUNT; a++) {
        size_t w = (size_t)attr_width[a];
        memcpy(g->p[a] + (size_t)dst * w, g->p[a] + (size_t)src * w, sizeof(float) * w);
        memset(g->m[a] + (size_t)dst * w, 0, sizeof(float) * w);
        memset(g->v[a] + (size_t)dst * w, 0, sizeof(float) * w);
    }
}

static float max_scale(const gs_explicit *g, int64_t i) {
    const float *s = g->p[A_SCALES] + i * 3;
    return expf(fmaxf(s[0], fmaxf(s[1], s[2])));
}

typedef struct cand {
    float grad;
    int64_t i;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->grad != y->grad) return x->grad > y->grad ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

pk_status gs_explicit_densify(gs_explicit *g, const gs_densify_params *p, pk_rng *rng,
                              gs_densify_report *rep) {
    uint8_t *kind = malloc((size_t)(g->n ? g->n : 1)); /* 1 clone, 2 split */
    if (!kind) return pk_error(PK_ERR_NOMEM, "3DGS: out of memory densifying");
    pk_status s = gs_explicit_densify_decide(g, p, kind);
    if (s == PK_OK) s = gs_explicit_densify_apply(g, p, kind, rng, rep);
    free(kind);
    return s;
}

pk_status gs_explicit_densify_decide(const gs_explicit *g, const gs_densify_params *p,
                                     uint8_t *kind) {
    int64_t n0 = g->n;
    memset(kind, 0, (size_t)n0);
    /* candidates: mean statistic above the threshold; 3DGS counts NaN (never seen) as 0 */
    cand *cs = malloc(sizeof(cand) * (size_t)(n0 ? n0 : 1));
    if (!cs) return pk_error(PK_ERR_NOMEM, "3DGS: out of memory densifying");
    int64_t nc = 0;
    for (int64_t i = 0; i < n0; i++) {
        float gr = g->denom[i] > 0 ? g->accum[i] / g->denom[i] : 0.0f;
        if (gr >= (float)p->grad_threshold) cs[nc++] = (cand){gr, i};
    }
    /* the cap: every clone or split adds one Gaussian; keep the largest statistics */
    if (p->max_gaussians > 0) {
        int64_t budget = p->max_gaussians - n0;
        if (budget < 0) budget = 0;
        if (nc > budget) {
            qsort(cs, (size_t)nc, sizeof(cand), cand_cmp);
            nc = budget;
        }
    }
    float split_above = (float)(p->percent_dense * g->extent);
    for (int64_t k = 0; k < nc; k++) {
        int64_t i = cs[k].i;
        kind[i] = max_scale(g, i) <= split_above ? 1 : 2;
    }
    free(cs);
    return PK_OK;
}

pk_status gs_explicit_densify_apply(gs_explicit *g, const gs_densify_params *p, const uint8_t *kind,
                                    pk_rng *rng, gs_densify_report *rep) {
    int64_t n0 = g->n;
    *rep = (gs_densify_report){.before = n0};
    int64_t n_clone = 0, n_split = 0;
    for (int64_t i = 0; i < n0; i++)
        n_clone += kind[i] == 1, n_split += kind[i] == 2;
    PK_TRY(reserve(g, n0 + n_clone + 2 * n_split));
    /* densify_and_clone: copies appended in index order */
    int64_t at = n0;
    for (int64_t i = 0; i < n0; i++)
        if (kind[i] == 1) copy_new(g, at++, i);
    /* densify_and_split: N = 2 samples per split Gaussian, all first samples then all second
     * (torch .repeat(N, 1)); position = mean + R(q) * normal(0, scale), scale / (0.8 N) */
    for (int r = 0; r < 2; r++)
        for (int64_t i = 0; i < n0; i++) {
            if (kind[i] != 2) continue;
            copy_new(g, at, i);
            const float *q = g->p[A_QUATS] + i * 4;
            double w = q[0], x = q[1], y = q[2], z = q[3];
            double nq = sqrt(w * w + x * x + y * y + z * z);
            if (nq > 0) w /= nq, x /= nq, y /= nq, z /= nq;
            double R[9] = {
                1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
            double smp[3];
            for (int k = 0; k < 3; k++)
                smp[k] = pk_rng_normal(rng) * exp((double)g->p[A_SCALES][i * 3 + k]);
            for (int k = 0; k < 3; k++) {
                g->p[A_MEANS][at * 3 + k] =
                    (float)(R[k * 3] * smp[0] + R[k * 3 + 1] * smp[1] + R[k * 3 + 2] * smp[2] +
                            g->p[A_MEANS][i * 3 + k]);
                g->p[A_SCALES][at * 3 + k] = logf(expf(g->p[A_SCALES][i * 3 + k]) / (0.8f * 2.0f));
            }
            at++;
        }
    g->n = at;
    /* prune: split originals, transparent ones, and (after the first opacity reset) ones too
     * big on screen or in the world */
    float min_op = logitf(p->min_opacity);
    float big = (float)((p->big_world_scale > 0 ? p->big_world_scale : 0.1) * g->extent);
    int64_t keep = 0;
    for (int64_t i = 0; i < g->n; i++) {
        int drop = (i < n0 && kind[i] == 2) || g->p[A_OPACITY][i] < min_op;
        if (p->max_screen_size > 0) drop |= i < n0 && g->max_radii[i] > (float)p->max_screen_size;
        if (p->prune_big_world) drop |= max_scale(g, i) > big;
        if (drop) continue;
        if (keep != i)
            for (int a = 0; a < A_COUNT; a++) {
                size_t wd = (size_t)attr_width[a];
                memcpy(g->p[a] + (size_t)keep * wd, g->p[a] + (size_t)i * wd, sizeof(float) * wd);
                memcpy(g->m[a] + (size_t)keep * wd, g->m[a] + (size_t)i * wd, sizeof(float) * wd);
                memcpy(g->v[a] + (size_t)keep * wd, g->v[a] + (size_t)i * wd, sizeof(float) * wd);
            }
        keep++;
    }
    rep->cloned = n_clone;
    rep->split = n_split;
    rep->pruned = g->n - keep;
    g->n = keep;
    rep->after = keep;
    /* densification_postfix zeroes the statistics of every Gaussian */
    memset(g->accum, 0, sizeof(float) * (size_t)g->cap);
    memset(g->denom, 0, sizeof(float) * (size_t)g->cap);
    memset(g->max_radii, 0, sizeof(float) * (size_t)g->cap);
    return PK_OK;
}

/* ---- checkpoints ---- */

static pk_status explicit_ckpt_tensors(void *self, st_write_tensor *out, int max, int *n) {
    gs_explicit *g = self;
    if (max < 3 * A_COUNT + 4) return pk_error(PK_ERR_INVALID, "3DGS: checkpoint table too small");
    int k = 0;
    for (int a = 0; a < A_COUNT; a++) {
        float *arrs[3] = {g->p[a], g->m[a], g->v[a]};
        const char *suffix[3] = {"", ".exp_avg", ".exp_avg_sq"};
        for (int j = 0; j < 3; j++, k++) {
            snprintf(g->names[k], sizeof g->names[k], "gs.%s%s", attr_name[a], suffix[j]);
            g->shapes[k][0] = g->n;
            g->shapes[k][1] = attr_width[a];
            out[k] = (st_write_tensor){g->names[k], ST_F32, 2, g->shapes[k], arrs[j]};
        }
    }
    float *stats[3] = {g->accum, g->denom, g->max_radii};
    const char *sn[3] = {"gs.grad_accum", "gs.grad_denom", "gs.max_radii2d"};
    for (int j = 0; j < 3; j++, k++) {
        snprintf(g->names[k], sizeof g->names[k], "%s", sn[j]);
        g->shapes[k][0] = g->n;
        out[k] = (st_write_tensor){g->names[k], ST_F32, 1, g->shapes[k], stats[j]};
    }
    snprintf(g->names[k], sizeof g->names[k], "gs.adam_step");
    g->shapes[k][0] = 1;
    out[k] = (st_write_tensor){g->names[k], ST_I64, 1, g->shapes[k], &g->adam_step};
    k++;
    *n = k;
    return PK_OK;
}

/* Copies checkpoint tensor `name` of shape (n, w) (w = 0: (n)) into dst. */
static pk_status ckpt_take(const ckpt_file *ck, const char *name, int64_t n, int w, float *dst) {
    const st_tensor *t = safetensors_find(&ck->st, name);
    if (!t) return pk_error(PK_ERR_FORMAT, "checkpoint: tensor %s missing", name);
    int ok = t->dtype == ST_F32 && t->ndim == (w ? 2 : 1) && t->shape[0] == n &&
             (!w || t->shape[1] == w);
    if (!ok)
        return pk_error(PK_ERR_FORMAT, "checkpoint: tensor %s must be F32 (%lld%s%d)", name,
                        (long long)n, w ? ", " : "", w);
    memcpy(dst, t->data, t->nbytes);
    return PK_OK;
}

static pk_status explicit_restore(void *self, const ckpt_file *ck) {
    gs_explicit *g = self;
    const st_tensor *t = safetensors_find(&ck->st, "gs.means");
    if (!t || t->ndim != 2)
        return pk_error(PK_ERR_FORMAT, "checkpoint: tensor gs.means (n, 3) missing");
    int64_t n = t->shape[0];
    PK_TRY(reserve(g, n));
    char name[64];
    for (int a = 0; a < A_COUNT; a++) {
        snprintf(name, sizeof name, "gs.%s", attr_name[a]);
        PK_TRY(ckpt_take(ck, name, n, attr_width[a], g->p[a]));
        snprintf(name, sizeof name, "gs.%s.exp_avg", attr_name[a]);
        PK_TRY(ckpt_take(ck, name, n, attr_width[a], g->m[a]));
        snprintf(name, sizeof name, "gs.%s.exp_avg_sq", attr_name[a]);
        PK_TRY(ckpt_take(ck, name, n, attr_width[a], g->v[a]));
    }
    PK_TRY(ckpt_take(ck, "gs.grad_accum", n, 0, g->accum));
    PK_TRY(ckpt_take(ck, "gs.grad_denom", n, 0, g->denom));
    PK_TRY(ckpt_take(ck, "gs.max_radii2d", n, 0, g->max_radii));
    const st_tensor *as = safetensors_find(&ck->st, "gs.adam_step");
    if (!as || as->dtype != ST_I64 || as->ndim != 1 || as->shape[0] != 1)
        return pk_error(PK_ERR_FORMAT, "checkpoint: tensor gs.adam_step (1) I64 missing");
    memcpy(&g->adam_step, as->data, sizeof(int64_t));
    g->n = n;
    return PK_OK;
}

gs_source gs_explicit_source(gs_explicit *g) {
    return (gs_source){.self = g,
                       .produce = explicit_produce,
                       .step = explicit_step,
                       .count = explicit_count,
                       .export_gaussians = explicit_export,
                       .checkpoint_tensors = explicit_ckpt_tensors,
                       .restore = explicit_restore,
                       .destroy = explicit_destroy};
}

/* ---- the explicit source resident on a Vulkan device ---- */

/* Device copies of every per-Gaussian array of `g`: parameters (leaf tensors with their
 * gradients), Adam moments and the densification statistics, all in one arena of their own
 * that is rebuilt when the count changes. The SH parameters are two leaves, DC (n, 1, 3) and
 * rest (n, 15, 3), concatenated on the tape for the render, so their Adam rates differ. */
struct gs_explicit_dev {
    gs_explicit *g;
    pk_ctx *c;
    pk_arena *arena;
    int64_t n; /* Gaussians on the device */
    tensor *p[A_COUNT], *m[A_COUNT], *v[A_COUNT];
    tensor *accum, *denom, *max_radii; // (n)
    /* a copy of all of the above and the Adam step count, to rewind to */
    pk_arena *snap_arena;
    tensor *snap[3 * A_COUNT + 3];
    int64_t snap_n, snap_adam_step;
    bool snap_valid;
};

/* The device shape of attribute a: (n, w), the SH ones (n, K, 3). */
static void dev_shape(int a, int64_t n, int *nd, int64_t shape[3]) {
    shape[0] = n;
    if (a == A_DC || a == A_REST) {
        *nd = 3;
        shape[1] = attr_width[a] / 3, shape[2] = 3;
    } else {
        *nd = 2;
        shape[1] = attr_width[a];
    }
}

pk_status gs_explicit_dev_upload(gs_explicit_dev *d) {
    gs_explicit *g = d->g;
    pk_arena_destroy(d->arena);
    d->arena = NULL;
    memset(d->p, 0, sizeof d->p), memset(d->m, 0, sizeof d->m), memset(d->v, 0, sizeof d->v);
    d->n = g->n;
    d->snap_valid = false; /* a snapshot of other Gaussians */
    if (g->n == 0) return PK_OK;
    size_t bytes = 0;
    for (int a = 0; a < A_COUNT; a++)
        bytes += 4 * sizeof(float) * (size_t)attr_width[a] * (size_t)g->n + 4096;
    bytes += 3 * sizeof(float) * (size_t)g->n + 4096;
    PK_TRY(pk_arena_create(d->c->dev, "gs-explicit", bytes, &d->arena));
    const float *stats_host[3] = {g->accum, g->denom, g->max_radii};
    tensor **stats[3] = {&d->accum, &d->denom, &d->max_radii};
    for (int a = 0; a < A_COUNT; a++) {
        int nd;
        int64_t shape[3];
        dev_shape(a, g->n, &nd, shape);
        tensor **slot[4] = {&d->p[a], &d->m[a], &d->v[a], NULL};
        const float *src[3] = {g->p[a], g->m[a], g->v[a]};
        for (int k = 0; k < 3; k++) {
            *slot[k] = tensor_new(d->arena, PK_F32, nd, shape);
            if (!*slot[k]) return pk_error(PK_ERR_NOMEM, "3DGS: device memory: %s", polyak_error());
            PK_TRY(tensor_upload(*slot[k], src[k]));
        }
        d->p[a]->name = attr_name[a];
        d->p[a]->requires_grad = true;
        d->p[a]->grad = tensor_new(d->arena, PK_F32, nd, shape);
        if (!d->p[a]->grad)
            return pk_error(PK_ERR_NOMEM, "3DGS: device memory: %s", polyak_error());
    }
    for (int k = 0; k < 3; k++) {
        *stats[k] = tensor_new(d->arena, PK_F32, 1, (int64_t[]){g->n});
        if (!*stats[k]) return pk_error(PK_ERR_NOMEM, "3DGS: device memory: %s", polyak_error());
        PK_TRY(tensor_upload(*stats[k], stats_host[k]));
    }
    return PK_OK;
}

pk_status gs_explicit_dev_create(gs_explicit *g, pk_ctx *c, gs_explicit_dev **out) {
    *out = NULL;
    if (!c || c->backend != PK_BACKEND_VK || !c->vk)
        return pk_error(PK_ERR_INVALID, "3DGS: the resident source needs a Vulkan context");
    gs_explicit_dev *d = calloc(1, sizeof *d);
    if (!d) return pk_error(PK_ERR_NOMEM, "3DGS: out of memory");
    d->g = g, d->c = c;
    pk_status s = gs_explicit_dev_upload(d);
    if (s != PK_OK) {
        gs_explicit_dev_destroy(d);
        return s;
    }
    *out = d;
    return PK_OK;
}

void gs_explicit_dev_destroy(gs_explicit_dev *d) {
    if (!d) return;
    pk_arena_destroy(d->snap_arena);
    pk_arena_destroy(d->arena);
    free(d);
}

pk_status gs_explicit_dev_download(gs_explicit_dev *d) {
    gs_explicit *g = d->g;
    if (d->n != g->n)
        return pk_error(PK_ERR_INVALID, "3DGS: the device holds %lld Gaussians, the host %lld",
                        (long long)d->n, (long long)g->n);
    if (g->n == 0) return PK_OK;
    for (int a = 0; a < A_COUNT; a++) {
        PK_TRY(tensor_download(d->p[a], g->p[a]));
        PK_TRY(tensor_download(d->m[a], g->m[a]));
        PK_TRY(tensor_download(d->v[a], g->v[a]));
    }
    PK_TRY(tensor_download(d->accum, g->accum));
    PK_TRY(tensor_download(d->denom, g->denom));
    return tensor_download(d->max_radii, g->max_radii);
}

pk_status gs_explicit_dev_inputs(gs_explicit_dev *d, int sh_degree, pk_splat_inputs *in) {
    if (sh_degree < 0 || sh_degree > 3)
        return pk_error(PK_ERR_INVALID, "3DGS: SH degree %d outside 0..3", sh_degree);
    if (d->n == 0) return pk_error(PK_ERR_INVALID, "3DGS: no Gaussians left to render");
    pk_ctx *c = d->c;
    for (int a = 0; a < A_COUNT; a++)
        PK_TRY(tensor_fill(d->p[a]->grad, 0.0f));
    int K = (sh_degree + 1) * (sh_degree + 1);
    tensor *sh = d->p[A_DC];
    if (K > 1) {
        tensor *parts[2] = {d->p[A_DC], pk_slice(c, d->p[A_REST], 1, 0, K - 1)};
        sh = parts[1] ? pk_concat(c, parts, 2, 1) : NULL;
        if (!sh) return pk_error(PK_ERR_NOMEM, "3DGS: SH of the render: %s", polyak_error());
    }
    d->g->last_degree = sh_degree;
    *in = (pk_splat_inputs){.means = d->p[A_MEANS],
                            .log_scales = d->p[A_SCALES],
                            .quats = d->p[A_QUATS],
                            .opacity_logits = d->p[A_OPACITY],
                            .sh = sh,
                            .sh_degree = sh_degree};
    return PK_OK;
}

pk_status gs_explicit_dev_add_stats(gs_explicit_dev *d, const tensor *means2d_grad,
                                    const tensor *radii, int width, int height) {
    if (d->n == 0) return PK_OK;
    vk_binding b[5] = {{means2d_grad->block, 0, 0},
                       {radii->block, 0, 0},
                       {d->accum->block, 0, 0},
                       {d->denom->block, 0, 0},
                       {d->max_radii->block, 0, 0}};
    splat_stats_pc pc = {.n = (uint32_t)d->n,
                         .off_g2d = (uint32_t)means2d_grad->offset,
                         .off_radii = (uint32_t)radii->offset,
                         .off_accum = (uint32_t)d->accum->offset,
                         .off_denom = (uint32_t)d->denom->offset,
                         .off_max_radii = (uint32_t)d->max_radii->offset,
                         .hx = 0.5f * (float)width,
                         .hy = 0.5f * (float)height};
    uint32_t groups = (uint32_t)((d->n + 255) / 256);
    return vkctx_dispatch(d->c->vk, "splat/densify_stats", 5, b, &pc, sizeof pc, groups, 1, 1);
}

pk_status gs_explicit_dev_step(gs_explicit_dev *d, int64_t iteration) {
    gs_explicit *g = d->g;
    g->adam_step++;
    double lr[A_COUNT] = {gs_explicit_means_lr(g, iteration),
                          g->lr.sh_dc,
                          g->lr.sh_rest,
                          g->lr.opacity,
                          g->lr.scaling,
                          g->lr.rotation};
    for (int a = 0; a < A_COUNT && d->n > 0; a++) {
        pk_adamw_params hp = {.lr = lr[a], .eps = g->lr.eps};
        tensor *p = d->p[a];
        PK_TRY(optim_adam_step_vk(d->c->vk, &hp, g->adam_step, d->n * attr_width[a],
                                  (pk_vk_range){p->block, (size_t)p->offset},
                                  (pk_vk_range){p->grad->block, (size_t)p->grad->offset},
                                  (pk_vk_range){d->m[a]->block, (size_t)d->m[a]->offset},
                                  (pk_vk_range){d->v[a]->block, (size_t)d->v[a]->offset}));
    }
    return PK_OK;
}

/* Copies src into dst (same shape) on the device: dst = -0 + src keeps every bit of src. */
static pk_status dev_copy(pk_ctx *c, tensor *dst, const tensor *src) {
    PK_TRY(pk_fill(c, dst, -0.0f));
    return pk_accumulate(c, dst, src);
}

/* The state tensors of d in a fixed order: p, m, v of each attribute, then the statistics. */
static int dev_state(gs_explicit_dev *d, tensor **out) {
    int k = 0;
    for (int a = 0; a < A_COUNT; a++)
        out[k++] = d->p[a], out[k++] = d->m[a], out[k++] = d->v[a];
    out[k++] = d->accum, out[k++] = d->denom, out[k++] = d->max_radii;
    return k;
}

pk_status gs_explicit_dev_snapshot(gs_explicit_dev *d) {
    d->snap_adam_step = d->g->adam_step;
    d->snap_valid = true;
    if (d->n == 0) return PK_OK;
    tensor *st[3 * A_COUNT + 3];
    int k = dev_state(d, st);
    if (d->snap_n != d->n) {
        pk_arena_destroy(d->snap_arena);
        d->snap_arena = NULL;
        d->snap_n = 0;
        size_t bytes = 0;
        for (int i = 0; i < k; i++)
            bytes += sizeof(float) * (size_t)tensor_numel(st[i]) + 4096;
        PK_TRY(pk_arena_create(d->c->dev, "gs-explicit-snapshot", bytes, &d->snap_arena));
        for (int i = 0; i < k; i++) {
            d->snap[i] = tensor_new_like(d->snap_arena, st[i]);
            if (!d->snap[i])
                return pk_error(PK_ERR_NOMEM, "3DGS: device memory: %s", polyak_error());
        }
        d->snap_n = d->n;
    }
    for (int i = 0; i < k; i++)
        PK_TRY(dev_copy(d->c, d->snap[i], st[i]));
    return PK_OK;
}

pk_status gs_explicit_dev_rewind(gs_explicit_dev *d) {
    if (!d->snap_valid || d->snap_n != d->n)
        return pk_error(PK_ERR_INVALID,
                        "3DGS: no snapshot of the %lld device Gaussians to rewind to",
                        (long long)d->n);
    d->g->adam_step = d->snap_adam_step;
    tensor *st[3 * A_COUNT + 3];
    int k = dev_state(d, st);
    for (int i = 0; i < k && d->n > 0; i++)
        PK_TRY(dev_copy(d->c, st[i], d->snap[i]));
    return PK_OK;
}
