/* gs_scaffold.c - the Scaffold-GS source: anchors, decoders on the tape, anchor growing and
 * pruning, checkpoints. Follows city-super/Scaffold-GS (scene/gaussian_model.py:
 * create_from_pcd, voxelize_sample, training_statis, anchor_growing, adjust_anchor;
 * gaussian_renderer/__init__.py: generate_neural_gaussians, prefilter_voxel; train.py: the
 * loss's 0.01 x mean volume term and the schedule).
 *
 * Differences from the official code, each deliberate:
 * - Frustum culling projects each anchor's centre and tests the square of 3 x its largest
 *   exp(scaling[0:3]) against the image (the official prefilter rasterises the anchors as
 *   Gaussians with those scales and keeps radius > 0: the same test up to the 0.3 px dilation
 *   and the tile rounding).
 * - No appearance embedding and no feature bank (off in Scaffold-GS's synthetic configs);
 *   the distance input is an option (use_distance, off by default as add_*_dist).
 * - Short runs scale the statistic / growing windows (gs_scaffold_defaults).
 * - The rasterizer takes opacity logits: the decoded opacity o in (0, 1) is handed over as
 *   log o - log(1 - o), which the rasterizer's sigmoid turns back into o.
 * On the host-array path (the CPU backend, Momentum-GS's blocks, POLYAK_GS_RESIDENT=0) anchors
 * and their Adam moments live in host memory (their number changes when growing and pruning);
 * each step uploads the visible anchors' rows as leaf tensors, reads the decoded opacities back
 * to select the neural Gaussians with opacity > 0, and scatters the gradients back. On Vulkan
 * the trainer keeps them on the device instead (gs_scaffold_dev, end of this file): the
 * frustum test and the selection are kernels (shaders/splat/scaffold_*.comp), every anchor's
 * k Gaussians are rendered with the unselected ones parked at the camera centre, where the
 * rasterizer's near test culls them (a worst-case n k render instead of a count read back each
 * step: the projection pass covers n k Gaussians, the tile pairs only the selected ones), and
 * the anchors come back to the host once per adjust_anchor. The decoders are context
 * parameters stepped by framework/optim's Adam on either path. */
#include "gs_scaffold.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "dist.h"
#include "gs_bake.h"
#include "optim/optim_kernels.h"
#include "optim/optim_vk.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "splat/scaffold_pc.h"
#include "vk/vk.h"

#define K GS_SCAFFOLD_K
#define F GS_SCAFFOLD_FEAT
#define SH_C0 0.28209479177387814

enum { A_FEAT, A_OFF, A_SCAL, A_COUNT };
static const int attr_w[A_COUNT] = {F, 3 * K, 6};
static const char *const attr_name[A_COUNT] = {"anchor_feat", "offset", "scaling"};
#define NCKPT_MAX 64

struct gs_scaffold {
    pk_ctx *c;
    gs_scaffold_options o;
    double extent, voxel;
    int64_t n, cap;
    float *anchor;                                            // (cap, 3)
    float *p[A_COUNT], *m[A_COUNT], *v[A_COUNT], *g[A_COUNT]; // (cap, width)
    int64_t adam_step;
    int64_t mlp_steps;                   // the decoder optimizer's step count, for checkpoints
    float *opacity_accum, *anchor_denom; // (cap)
    float *offset_accum, *offset_denom;  // (cap * K)
    gs_decoder own;                      // the source's decoder (unless shared)
    gs_decoder *dec;                     // the decoder in use: &own or the shared one
    pk_optimizer *opt;                   // the decoder's optimizer, or NULL when shared
    const gs_decoder *teacher;
    const gs_decoder *cons_student; // diagnostic: the consistency's student side, or NULL
    int cons_terms;                 // diagnostic: the consistency's terms (0: all)
    float cons_weight;
    bool (*keep)(void *arg, const float p[3]);
    void *keep_arg;
    char prefix[16]; // checkpoint names: prefix + "sc.*"
    /* the last training decode */
    int32_t *vis; // (nvis) visible anchors
    int64_t nvis, vis_cap;
    int32_t *sel; // (nsel) selected neural Gaussians, indices into nvis * K
    int64_t nsel;
    float *opac;                     // (nvis * K) decoded opacity
    tensor *t_feat, *t_off, *t_scal; // leaves of the last training decode, or NULL
    bool grads_ready;                // g[] already holds the step's (world-averaged) gradients
    float *world;                    // data parallel: the packed allreduce buffer
    size_t world_cap;
    /* host outputs of produce (evaluation renders) */
    float *h_means, *h_scales, *h_quats, *h_logits, *h_sh, *h_grad;
    int64_t h_cap;
    /* checkpoints */
    float *ck_host; // decoder parameters and optimizer state, downloaded
    char names[NCKPT_MAX][192];
    int64_t shapes[NCKPT_MAX][2];
};

gs_scaffold_options gs_scaffold_defaults(gs_scaffold_options o, int64_t iters) {
    if (!o.max_steps) o.max_steps = iters > 0 ? iters : 30000;
    bool longrun = iters >= 30000;
    if (!o.stat_from) o.stat_from = longrun ? 500 : iters / 60;
    if (!o.update_from) o.update_from = longrun ? 1500 : iters / 20;
    if (!o.update_until) o.update_until = longrun ? 15000 : iters / 2;
    if (!o.update_interval) o.update_interval = 100;
    if (!o.grad_threshold) o.grad_threshold = 2e-4;
    if (!o.min_opacity) o.min_opacity = 0.005;
    if (!o.success_threshold) o.success_threshold = 0.8;
    if (!o.update_depth) o.update_depth = 3;
    if (!o.update_init_factor) o.update_init_factor = 16;
    if (!o.update_hierarchy) o.update_hierarchy = 4;
    return o;
}

/* ---- decoders ---- */

pk_status gs_decoder_init(pk_ctx *c, const char *prefix, int in, pk_rng *rng, gs_decoder *d) {
    memset(d, 0, sizeof *d);
    d->in = in;
    char name[128];
    struct {
        nn_linear *a, *b;
        const char *what;
        int out;
    } l[3] = {{&d->op1, &d->op2, "opacity", K},
              {&d->cov1, &d->cov2, "cov", 7 * K},
              {&d->col1, &d->col2, "color", 3 * K}};
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.%s.0", prefix, l[i].what);
        PK_TRY(nn_linear_init(c, name, in, GS_SCAFFOLD_HIDDEN, true, rng, l[i].a));
        snprintf(name, sizeof name, "%s.%s.2", prefix, l[i].what);
        PK_TRY(nn_linear_init(c, name, GS_SCAFFOLD_HIDDEN, l[i].out, true, rng, l[i].b));
    }
    return PK_OK;
}

void gs_decoder_params(const gs_decoder *d, tensor *out[12]) {
    const nn_linear *l[6] = {&d->op1, &d->op2, &d->cov1, &d->cov2, &d->col1, &d->col2};
    for (int i = 0; i < 6; i++) {
        out[2 * i] = l[i]->w;
        out[2 * i + 1] = l[i]->b;
    }
}

pk_status gs_decoder_forward(pk_ctx *c, const gs_decoder *d, tensor *x, tensor **opacity,
                             tensor **cov, tensor **color) {
    *opacity =
        pk_tanh(c, nn_linear_forward(c, &d->op2, pk_relu(c, nn_linear_forward(c, &d->op1, x))));
    *cov = nn_linear_forward(c, &d->cov2, pk_relu(c, nn_linear_forward(c, &d->cov1, x)));
    *color = pk_sigmoid(
        c, nn_linear_forward(c, &d->col2, pk_relu(c, nn_linear_forward(c, &d->col1, x))));
    if (!*opacity || !*cov || !*color)
        return pk_error(PK_ERR_INVALID, "Scaffold-GS: decoder: %s", polyak_error());
    return PK_OK;
}

/* ---- anchors ---- */

typedef struct cell {
    int64_t k[3];
    int64_t i; // source index
} cell;

static int cell_cmp(const void *a, const void *b) {
    const cell *x = a, *y = b;
    for (int d = 0; d < 3; d++)
        if (x->k[d] != y->k[d]) return x->k[d] < y->k[d] ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int cell_key_cmp(const void *a, const void *b) {
    const cell *x = a, *y = b;
    for (int d = 0; d < 3; d++)
        if (x->k[d] != y->k[d]) return x->k[d] < y->k[d] ? -1 : 1;
    return 0;
}

/* torch.round: half to even, as rint in the default rounding mode. */
static int64_t round_cell(double v) { return (int64_t)nearbyint(v); }

pk_status gs_voxelize(const float *xyz, int64_t n, double voxel, float **anchors, int64_t *m) {
    *anchors = NULL;
    *m = 0;
    if (!(voxel > 0)) return pk_error(PK_ERR_INVALID, "Scaffold-GS: voxel size must be > 0");
    cell *cs = malloc(sizeof(cell) * (size_t)(n > 0 ? n : 1));
    if (!cs)
        return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory voxelising %lld points",
                        (long long)n);
    for (int64_t i = 0; i < n; i++) {
        for (int d = 0; d < 3; d++)
            cs[i].k[d] = round_cell((double)(xyz[i * 3 + d] / (float)voxel));
        cs[i].i = i;
    }
    qsort(cs, (size_t)n, sizeof(cell), cell_cmp);
    float *a = malloc(sizeof(float) * 3 * (size_t)(n > 0 ? n : 1));
    if (!a) {
        free(cs);
        return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    }
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i > 0 && cell_key_cmp(&cs[i], &cs[i - 1]) == 0) continue;
        for (int d = 0; d < 3; d++)
            a[u * 3 + d] = (float)cs[i].k[d] * (float)voxel;
        u++;
    }
    free(cs);
    *anchors = a;
    *m = u;
    return PK_OK;
}

static pk_status reserve(gs_scaffold *s, int64_t want) {
    if (want <= s->cap) return PK_OK;
    int64_t cap = want + want / 2 + 256;
    float **arr[4] = {s->p, s->m, s->v, s->g};
    for (int q = 0; q < 4; q++)
        for (int a = 0; a < A_COUNT; a++) {
            float *x = realloc(arr[q][a], sizeof(float) * (size_t)attr_w[a] * (size_t)cap);
            if (!x)
                return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory for %lld anchors",
                                (long long)want);
            memset(x + (size_t)attr_w[a] * (size_t)s->cap, 0,
                   sizeof(float) * (size_t)attr_w[a] * (size_t)(cap - s->cap));
            arr[q][a] = x;
        }
    struct {
        float **p;
        int w;
    } o[5] = {{&s->anchor, 3},
              {&s->opacity_accum, 1},
              {&s->anchor_denom, 1},
              {&s->offset_accum, K},
              {&s->offset_denom, K}};
    for (int i = 0; i < 5; i++) {
        float *x = realloc(*o[i].p, sizeof(float) * (size_t)o[i].w * (size_t)cap);
        if (!x) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
        memset(x + (size_t)o[i].w * (size_t)s->cap, 0,
               sizeof(float) * (size_t)o[i].w * (size_t)(cap - s->cap));
        *o[i].p = x;
    }
    s->cap = cap;
    return PK_OK;
}

static void scaffold_destroy(void *self) {
    gs_scaffold *s = self;
    if (!s) return;
    for (int a = 0; a < A_COUNT; a++)
        free(s->p[a]), free(s->m[a]), free(s->v[a]), free(s->g[a]);
    free(s->anchor), free(s->opacity_accum), free(s->anchor_denom), free(s->offset_accum);
    free(s->offset_denom), free(s->vis), free(s->sel), free(s->opac);
    free(s->h_means), free(s->h_scales), free(s->h_quats), free(s->h_logits), free(s->h_sh);
    free(s->h_grad), free(s->ck_host), free(s->world);
    optim_destroy(s->opt);
    free(s);
}

/* Scaffold-GS's learning rates (arguments/__init__.py OptimizationParams). */
static double lr_exp(double a, double b, int64_t max_steps, int64_t step) {
    pk_lr_schedule sc = {
        .kind = PK_LR_EXP, .lr = a, .lr_final = b, .max_steps = max_steps > 0 ? max_steps : 1};
    return schedule_lr(&sc, step);
}

pk_status gs_decoder_step(pk_optimizer *opt, int64_t max_steps, int64_t it) {
    optim_set_lr(opt, 0, lr_exp(0.002, 0.00002, max_steps, it));
    optim_set_lr(opt, 1, lr_exp(0.004, 0.004, max_steps, it));
    optim_set_lr(opt, 2, lr_exp(0.008, 0.00005, max_steps, it));
    PK_TRY(optim_step(opt));
    return optim_zero_grad(opt);
}

pk_status gs_decoder_optimizer(pk_ctx *c, const gs_decoder *d, pk_optimizer **out) {
    tensor *ps[12];
    gs_decoder_params(d, ps);
    pk_param_group groups[3] = {{"mlp_opacity", ps, 4, 0.002, 0},
                                {"mlp_cov", ps + 4, 4, 0.004, 0},
                                {"mlp_color", ps + 8, 4, 0.008, 0}};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAM, .adamw = {.eps = 1e-15}};
    return optim_create(c, &oo, groups, 3, out);
}

void gs_scaffold_set_prefix(gs_scaffold *s, const char *prefix) {
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
}

void gs_scaffold_set_teacher(gs_scaffold *s, const gs_decoder *teacher, float weight) {
    s->teacher = teacher;
    s->cons_weight = weight;
}

void gs_scaffold_set_consistency_student(gs_scaffold *s, const gs_decoder *copy) {
    s->cons_student = copy;
}

void gs_scaffold_set_consistency_terms(gs_scaffold *s, int mask) { s->cons_terms = mask; }

void gs_scaffold_set_filter(gs_scaffold *s, bool (*keep)(void *arg, const float p[3]), void *arg) {
    s->keep = keep;
    s->keep_arg = arg;
}

tensor *gs_consistency_loss(pk_ctx *c, tensor *op_s, tensor *cov_s, tensor *col_s, tensor *op_t,
                            tensor *cov_t, tensor *col_t, tensor *anchor_scale) {
    return gs_consistency_loss_terms(c, op_s, cov_s, col_s, op_t, cov_t, col_t, anchor_scale,
                                     GS_CONS_ALL);
}

tensor *gs_consistency_loss_terms(pk_ctx *c, tensor *op_s, tensor *cov_s, tensor *col_s,
                                  tensor *op_t, tensor *cov_t, tensor *col_t, tensor *anchor_scale,
                                  int mask) {
    if (!op_s || !cov_s || !col_s || !op_t || !cov_t || !col_t || !anchor_scale || !(mask & 15))
        return NULL;
    tensor *sum = NULL, *t[4] = {NULL, NULL, NULL, NULL};
    if (mask & GS_CONS_OPACITY) t[0] = pk_mse(c, op_s, op_t);
    if (mask & GS_CONS_COLOUR) t[1] = pk_mse(c, col_s, col_t);
    if (mask & GS_CONS_SCALE) /* scales as rendered: anchor scaling[3:6] x sigmoid(cov[:, 0:3]) */
        t[2] = pk_mse(c, pk_mul(c, anchor_scale, pk_sigmoid(c, pk_slice(c, cov_s, 1, 0, 3))),
                      pk_mul(c, anchor_scale, pk_sigmoid(c, pk_slice(c, cov_t, 1, 0, 3))));
    if (mask & GS_CONS_ROTATION)
        t[3] = pk_mse(c, pk_l2_normalize(c, pk_slice(c, cov_s, 1, 3, 4), 1e-12f),
                      pk_l2_normalize(c, pk_slice(c, cov_t, 1, 3, 4), 1e-12f));
    /* the official order: (opacity + colour) + (scale + rotation) when all are present */
    tensor *a = t[0] && t[1] ? pk_add(c, t[0], t[1]) : t[0] ? t[0] : t[1];
    tensor *b = t[2] && t[3] ? pk_add(c, t[2], t[3]) : t[2] ? t[2] : t[3];
    sum = a && b ? pk_add(c, a, b) : a ? a : b;
    return sum;
}

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

pk_status gs_scaffold_voxel_rule(const float *xyz, int64_t n, double *voxel) {
    /* Scaffold-GS: voxel = median (kthvalue at n/2) of distCUDA2, the mean SQUARED distance to
     * the 3 nearest neighbours */
    *voxel = 0;
    if (n < 1) return pk_error(PK_ERR_INVALID, "Scaffold-GS: no points for the voxel rule");
    float *d = malloc(sizeof(float) * (size_t)n);
    if (!d) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    pk_status st = gs_knn3_scale(xyz, n, d);
    if (st == PK_OK) {
        for (int64_t i = 0; i < n; i++)
            d[i] *= d[i];
        qsort(d, (size_t)n, sizeof(float), cmpf); /* kthvalue(n/2): the (n/2)-th smallest */
        *voxel = d[n / 2 > 0 ? n / 2 - 1 : 0];
    }
    free(d);
    return st;
}

pk_status gs_scaffold_create(pk_ctx *c, const float *xyz, int64_t n, double extent,
                             const gs_scaffold_options *o, pk_rng *rng, gs_scaffold **out) {
    *out = NULL;
    if (n <= 0) return pk_error(PK_ERR_INVALID, "Scaffold-GS: no points to place anchors on");
    gs_scaffold *s = calloc(1, sizeof *s);
    if (!s) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    s->c = c;
    s->o = *o;
    s->extent = extent;
    pk_status st = PK_OK;
    float *anch = NULL, *dist = NULL;
    int64_t m = 0;
    s->voxel = o->voxel_size;
    if (!(s->voxel > 0)) {
        st = gs_scaffold_voxel_rule(xyz, n, &s->voxel);
        if (st == PK_OK && !(s->voxel > 0)) s->voxel = 0.01 * extent;
    }
    if (st == PK_OK) st = gs_voxelize(xyz, n, s->voxel, &anch, &m);
    if (st == PK_OK) st = reserve(s, m);
    if (st == PK_OK) {
        dist = malloc(sizeof(float) * (size_t)m);
        if (!dist) st = pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    }
    if (st == PK_OK) {
        if (m >= 4)
            st = gs_knn3_scale(anch, m, dist);
        else
            for (int64_t i = 0; i < m; i++)
                dist[i] = (float)s->voxel;
    }
    if (st == PK_OK) {
        s->n = m;
        memcpy(s->anchor, anch, sizeof(float) * 3 * (size_t)m);
        for (int64_t i = 0; i < m; i++)
            for (int k = 0; k < 6; k++) /* log(sqrt(dist2)) repeated 6 times */
                s->p[A_SCAL][i * 6 + k] = logf(dist[i] > 0 ? dist[i] : (float)s->voxel);
        if (o->shared_decoder) {
            s->dec = o->shared_decoder;
            if (s->dec->in != (o->use_distance ? F + 4 : F + 3))
                st = pk_error(PK_ERR_INVALID, "Scaffold-GS: the shared decoder takes %d inputs",
                              s->dec->in);
        } else {
            s->dec = &s->own;
            st = gs_decoder_init(c, "scaffold", o->use_distance ? F + 4 : F + 3, rng, s->dec);
        }
    }
    free(anch);
    free(dist);
    if (st == PK_OK && !o->shared_decoder) st = gs_decoder_optimizer(c, s->dec, &s->opt);
    if (st != PK_OK) {
        scaffold_destroy(s);
        return st;
    }
    *out = s;
    return PK_OK;
}

double gs_scaffold_voxel(const gs_scaffold *s) { return s->voxel; }
int64_t gs_scaffold_anchors(const gs_scaffold *s) { return s->n; }
gs_decoder *gs_scaffold_decoder(gs_scaffold *s) { return s->dec; }
pk_ctx *gs_scaffold_ctx(const gs_scaffold *s) { return s->c; }

void gs_scaffold_arrays(gs_scaffold *s, float **anchors, float **feat, float **offsets,
                        float **scaling) {
    if (anchors) *anchors = s->anchor;
    if (feat) *feat = s->p[A_FEAT];
    if (offsets) *offsets = s->p[A_OFF];
    if (scaling) *scaling = s->p[A_SCAL];
}

/* Camera centre of a world-to-camera [R t]: -R^T t. */
static void cam_center(const splat_camera *cam, float out[3]) {
    const float *M = cam->world_to_cam;
    for (int i = 0; i < 3; i++)
        out[i] = -(M[0 * 4 + i] * M[3] + M[1 * 4 + i] * M[7] + M[2 * 4 + i] * M[11]);
}

pk_status gs_scaffold_visible(const gs_scaffold *s, const splat_camera *cam, int32_t **idx,
                              int64_t *n) {
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(s->n > 0 ? s->n : 1));
    if (!v) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    const float *M = cam->world_to_cam;
    float near = cam->near > 0 ? cam->near : 0.2f;
    int64_t c = 0;
    for (int64_t i = 0; i < s->n; i++) {
        const float *p = s->anchor + i * 3;
        if (s->keep && !s->keep(s->keep_arg, p)) continue;
        float z = M[8] * p[0] + M[9] * p[1] + M[10] * p[2] + M[11];
        if (!(z > near)) continue;
        float x = M[0] * p[0] + M[1] * p[1] + M[2] * p[2] + M[3];
        float y = M[4] * p[0] + M[5] * p[1] + M[6] * p[2] + M[7];
        const float *sc = s->p[A_SCAL] + i * 6;
        float smax = fmaxf(sc[0], fmaxf(sc[1], sc[2]));
        float r = 3.0f * expf(smax) / z;
        float u = cam->fx * x / z + cam->cx, w = cam->fy * y / z + cam->cy;
        float ru = cam->fx * r, rv = cam->fy * r;
        if (u + ru < 0 || u - ru > (float)cam->width || w + rv < 0 || w - rv > (float)cam->height)
            continue;
        v[c++] = (int32_t)i;
    }
    *idx = v;
    *n = c;
    return PK_OK;
}

/* A step-arena tensor holding host floats; requires_grad as asked. */
static tensor *up(pk_ctx *c, const float *src, int ndim, const int64_t *shape, bool grad) {
    tensor *t = tensor_new(c->step, PK_F32, ndim, shape);
    if (!t || tensor_upload(t, src) != PK_OK) return NULL;
    t->requires_grad = grad;
    return t;
}

/* Grows a host scratch buffer. */
static float *scratch(float **buf, size_t n) {
    float *x = realloc(*buf, sizeof(float) * (n ? n : 1));
    if (x) *buf = x;
    return x;
}

/* The decoder input (nv, in) for anchors idx seen from campos, and the three leaves. */
static pk_status decode_inputs(gs_scaffold *s, pk_ctx *c, const int32_t *idx, int64_t nv,
                               const float campos[3], bool grad, tensor **x, tensor **tf,
                               tensor **to, tensor **ts) {
    int in = s->dec->in;
    float *feat = malloc(sizeof(float) * (size_t)(nv * F + 1));
    float *dir = malloc(sizeof(float) * (size_t)(nv * (in - F) + 1));
    float *off = malloc(sizeof(float) * (size_t)(nv * 3 * K + 1));
    float *sc = malloc(sizeof(float) * (size_t)(nv * 6 + 1));
    pk_status st = PK_OK;
    if (!feat || !dir || !off || !sc) st = pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    for (int64_t j = 0; st == PK_OK && j < nv; j++) {
        int64_t i = idx[j];
        memcpy(feat + j * F, s->p[A_FEAT] + i * F, sizeof(float) * F);
        memcpy(off + j * 3 * K, s->p[A_OFF] + i * 3 * K, sizeof(float) * 3 * K);
        memcpy(sc + j * 6, s->p[A_SCAL] + i * 6, sizeof(float) * 6);
        float d[3], len = 0;
        for (int k = 0; k < 3; k++) {
            d[k] = s->anchor[i * 3 + k] - campos[k];
            len += d[k] * d[k];
        }
        len = sqrtf(len);
        for (int k = 0; k < 3; k++)
            dir[j * (in - F) + k] = d[k] / len;
        if (in - F == 4) dir[j * 4 + 3] = len;
    }
    if (st == PK_OK) {
        *tf = up(c, feat, 2, (int64_t[]){nv, F}, grad);
        tensor *td = up(c, dir, 2, (int64_t[]){nv, in - F}, false);
        *to = up(c, off, 2, (int64_t[]){nv * K, 3}, grad);
        *ts = up(c, sc, 2, (int64_t[]){nv, 6}, grad);
        *x = pk_concat(c, (tensor *[]){*tf, td}, 2, 1);
        if (!*x || !*to || !*ts)
            st = pk_error(PK_ERR_NOMEM, "Scaffold-GS: decoder inputs: %s", polyak_error());
    }
    free(feat), free(dir), free(off), free(sc);
    return st;
}

pk_status gs_scaffold_decode_raw(gs_scaffold *s, pk_ctx *c, const int32_t *idx, int64_t n,
                                 const float campos[3], tensor **opacity, tensor **cov,
                                 tensor **color) {
    tensor *x, *tf, *to, *ts;
    PK_TRY(decode_inputs(s, c, idx, n, campos, true, &x, &tf, &to, &ts));
    s->t_feat = tf, s->t_off = to, s->t_scal = ts;
    tensor *o, *cv, *cl;
    PK_TRY(gs_decoder_forward(c, s->dec, x, &o, &cv, &cl));
    *opacity = pk_reshape(c, o, 1, (int64_t[]){n * K});
    *cov = pk_reshape(c, cv, 2, (int64_t[]){n * K, 7});
    *color = pk_reshape(c, cl, 2, (int64_t[]){n * K, 3});
    if (!*opacity || !*cov || !*color) return pk_error(PK_ERR_INVALID, "%s", polyak_error());
    return PK_OK;
}

/* generate_neural_gaussians for the anchors idx (nv) seen from campos: the render inputs and
 * the volume term 0.01 mean(prod(scale)). Keeps the selection for the statistics. */
static pk_status decode(gs_scaffold *s, pk_ctx *c, const int32_t *idx, int64_t nv,
                        const float campos[3], bool grad, pk_splat_inputs *in, tensor **reg) {
    tensor *x, *tf, *to, *ts;
    PK_TRY(decode_inputs(s, c, idx, nv, campos, grad, &x, &tf, &to, &ts));
    tensor *op, *cov, *col;
    PK_TRY(gs_decoder_forward(c, s->dec, x, &op, &cov, &col));
    tensor *op_t = NULL, *cov_t = NULL, *col_t = NULL;
    if (grad && s->teacher && reg) {
        /* Momentum-GS: the teacher decodes the same inputs; its parameters take no gradient,
         * but the anchor features do through both decoders, as in Momentum-GS's
         * generate_neural_gaussians_and_momentum_gaussians (its input is not detached) */
        PK_TRY(gs_decoder_forward(c, s->teacher, x, &op_t, &cov_t, &col_t));
    }
    tensor *op_c = op, *cov_c = cov, *col_c = col; /* the consistency's student side */
    if (op_t && s->cons_student)
        PK_TRY(gs_decoder_forward(c, s->cons_student, x, &op_c, &cov_c, &col_c));
    /* the selection: neural opacity > 0 */
    if (!scratch(&s->opac, (size_t)(nv * K))) return pk_error(PK_ERR_NOMEM, "out of memory");
    PK_TRY(tensor_download(op, s->opac));
    int32_t *sel = realloc(s->sel, sizeof(int32_t) * (size_t)(nv * K + 1));
    int32_t *asel = malloc(sizeof(int32_t) * (size_t)(nv * K + 1));
    float *anch = malloc(sizeof(float) * 3 * (size_t)(nv * K + 1));
    if (!sel || !asel || !anch) {
        if (sel) s->sel = sel;
        free(asel), free(anch);
        return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    }
    s->sel = sel;
    int64_t m = 0;
    for (int64_t j = 0; j < nv * K; j++)
        if (s->opac[j] > 0) {
            sel[m] = (int32_t)j;
            asel[m] = (int32_t)(j / K);
            memcpy(anch + m * 3, s->anchor + (int64_t)idx[j / K] * 3, sizeof(float) * 3);
            m++;
        }
    s->nsel = m;
    pk_status st = PK_OK;
    if (m == 0) {
        st = pk_error(PK_ERR_INVALID,
                      "Scaffold-GS: no neural Gaussian with opacity > 0 in view (%lld anchors "
                      "visible)",
                      (long long)nv);
    } else {
        tensor *ti = tensor_new(c->step, PK_I32, 1, (int64_t[]){m});
        tensor *ta = tensor_new(c->step, PK_I32, 1, (int64_t[]){m});
        tensor *tan = up(c, anch, 2, (int64_t[]){m, 3}, false);
        if (!ti || !ta || !tan || tensor_upload(ti, sel) != PK_OK ||
            tensor_upload(ta, asel) != PK_OK)
            st = pk_error(PK_ERR_NOMEM, "Scaffold-GS: %s", polyak_error());
        if (st == PK_OK) {
            tensor *o_g = pk_embedding(c, pk_reshape(c, op, 2, (int64_t[]){nv * K, 1}), ti);
            tensor *cv_g = pk_embedding(c, pk_reshape(c, cov, 2, (int64_t[]){nv * K, 7}), ti);
            tensor *cl_g = pk_embedding(c, pk_reshape(c, col, 2, (int64_t[]){nv * K, 3}), ti);
            tensor *off_g = pk_embedding(c, to, ti);
            tensor *sc_g = pk_embedding(c, ts, ta); // (m, 6) log scaling
            tensor *e_off = pk_exp(c, pk_slice(c, sc_g, 1, 0, 3));
            tensor *means = pk_add(c, tan, pk_mul(c, off_g, e_off));
            tensor *log_s = pk_add(c, pk_slice(c, sc_g, 1, 3, 3),
                                   pk_log(c, pk_sigmoid(c, pk_slice(c, cv_g, 1, 0, 3))));
            tensor *quats = pk_slice(c, cv_g, 1, 3, 4);
            tensor *o1 = pk_reshape(c, o_g, 1, (int64_t[]){m});
            tensor *logit = pk_sub(c, pk_log(c, o1), pk_log(c, pk_affine(c, o1, -1.0f, 1.0f)));
            *in = (pk_splat_inputs){.means = means,
                                    .log_scales = log_s,
                                    .quats = quats,
                                    .opacity_logits = logit,
                                    .colors = cl_g};
            if (reg) {
                *reg = pk_scale(c, pk_mean_all(c, pk_exp(c, pk_sum(c, log_s, 1, false))), 0.01f);
                if (op_t) {
                    /* Momentum-GS's consistency: opacities of all the anchors' offsets, colour,
                     * scale and rotation of the selected ones (opacity > 0 for the student) */
                    tensor *cvt_g =
                        pk_embedding(c, pk_reshape(c, cov_t, 2, (int64_t[]){nv * K, 7}), ti);
                    tensor *clt_g =
                        pk_embedding(c, pk_reshape(c, col_t, 2, (int64_t[]){nv * K, 3}), ti);
                    tensor *cvc_g =
                        cov_c == cov
                            ? cv_g
                            : pk_embedding(c, pk_reshape(c, cov_c, 2, (int64_t[]){nv * K, 7}), ti);
                    tensor *clc_g =
                        col_c == col
                            ? cl_g
                            : pk_embedding(c, pk_reshape(c, col_c, 2, (int64_t[]){nv * K, 3}), ti);
                    tensor *cons = gs_consistency_loss_terms(
                        c, pk_reshape(c, op_c, 1, (int64_t[]){nv * K}), cvc_g, clc_g,
                        pk_reshape(c, op_t, 1, (int64_t[]){nv * K}), cvt_g, clt_g,
                        pk_exp(c, pk_slice(c, sc_g, 1, 3, 3)),
                        s->cons_terms ? s->cons_terms : GS_CONS_ALL);
                    *reg = pk_add(c, *reg, pk_scale(c, cons, s->cons_weight));
                }
            }
            if (!means || !log_s || !quats || !logit || !cl_g || (reg && !*reg))
                st = pk_error(PK_ERR_INVALID, "Scaffold-GS: decode: %s", polyak_error());
        }
    }
    free(asel), free(anch);
    if (st == PK_OK && grad) {
        s->t_feat = tf, s->t_off = to, s->t_scal = ts;
    }
    return st;
}

static pk_status scaffold_produce_tensors(void *self, pk_ctx *c, const splat_camera *cam,
                                          pk_splat_inputs *in, tensor **reg) {
    gs_scaffold *s = self;
    s->t_feat = s->t_off = s->t_scal = NULL;
    int32_t *vis;
    int64_t nv;
    PK_TRY(gs_scaffold_visible(s, cam, &vis, &nv));
    free(s->vis);
    s->vis = vis;
    s->nvis = nv;
    float cp[3];
    cam_center(cam, cp);
    return decode(s, c, vis, nv, cp, true, in, reg);
}

/* Host arrays for renders outside training (evaluation): decodes without gradients in a
 * fresh step and downloads the Gaussians (colour as the DC SH coefficient, degree 0). */
static pk_status scaffold_produce(void *self, const splat_camera *cam, int sh_degree,
                                  gs_arrays *out, gs_array_grads *gr) {
    (void)sh_degree;
    gs_scaffold *s = self;
    pk_ctx *c = s->c;
    PK_TRY(pk_step_begin(c));
    bool was = pk_set_grad_enabled(c, false);
    pk_splat_inputs in;
    int32_t *vis;
    int64_t nv;
    pk_status st = gs_scaffold_visible(s, cam, &vis, &nv);
    float cp[3];
    cam_center(cam, cp);
    if (st == PK_OK) st = decode(s, c, vis, nv, cp, false, &in, NULL);
    free(vis);
    pk_set_grad_enabled(c, was);
    s->t_feat = s->t_off = s->t_scal = NULL;
    if (st != PK_OK) return st;
    int64_t m = s->nsel;
    if (m > s->h_cap) {
        size_t z = (size_t)m;
        if (!scratch(&s->h_means, 3 * z) || !scratch(&s->h_scales, 3 * z) ||
            !scratch(&s->h_quats, 4 * z) || !scratch(&s->h_logits, z) ||
            !scratch(&s->h_sh, 3 * z) || !scratch(&s->h_grad, 4 * z))
            return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
        s->h_cap = m;
    }
    PK_TRY(tensor_download(in.means, s->h_means));
    PK_TRY(tensor_download(in.log_scales, s->h_scales));
    PK_TRY(tensor_download(in.quats, s->h_quats));
    PK_TRY(tensor_download(in.opacity_logits, s->h_logits));
    PK_TRY(tensor_download(in.colors, s->h_sh));
    for (int64_t i = 0; i < 3 * m; i++)
        s->h_sh[i] = (float)((s->h_sh[i] - 0.5) / SH_C0);
    *out = (gs_arrays){.n = (int)m,
                       .means = s->h_means,
                       .log_scales = s->h_scales,
                       .quats = s->h_quats,
                       .opacity_logits = s->h_logits,
                       .sh = s->h_sh,
                       .sh_degree = 0};
    /* no gradients flow from these renders: one scratch buffer stands for all */
    *gr = (gs_array_grads){.means = s->h_grad,
                           .log_scales = s->h_grad,
                           .quats = s->h_grad,
                           .opacity_logits = s->h_grad,
                           .sh = s->h_grad,
                           .means2d = s->h_grad};
    return PK_OK;
}

/* Scatters the gradient of leaf t (rows of width w for the visible anchors) into g. */
static pk_status scatter_grad(gs_scaffold *s, const tensor *t, int w, float *g) {
    if (!t || !t->grad) return PK_OK;
    float *h = malloc(sizeof(float) * (size_t)(s->nvis * w + 1));
    if (!h) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    pk_status st = tensor_download(t->grad, h);
    for (int64_t j = 0; st == PK_OK && j < s->nvis; j++)
        memcpy(g + (int64_t)s->vis[j] * w, h + j * w, sizeof(float) * (size_t)w);
    free(h);
    return st;
}

pk_status gs_scaffold_grads(gs_scaffold *s, float **feat, float **offsets, float **scaling) {
    for (int a = 0; a < A_COUNT; a++)
        memset(s->g[a], 0, sizeof(float) * (size_t)attr_w[a] * (size_t)s->n);
    PK_TRY(scatter_grad(s, s->t_feat, F, s->g[A_FEAT]));
    PK_TRY(scatter_grad(s, s->t_off, 3 * K, s->g[A_OFF]));
    PK_TRY(scatter_grad(s, s->t_scal, 6, s->g[A_SCAL]));
    if (feat) *feat = s->g[A_FEAT];
    if (offsets) *offsets = s->g[A_OFF];
    if (scaling) *scaling = s->g[A_SCAL];
    return PK_OK;
}

void gs_scaffold_stats(gs_scaffold *s, float **opacity_accum, float **anchor_denom,
                       float **offset_accum, float **offset_denom) {
    if (opacity_accum) *opacity_accum = s->opacity_accum;
    if (anchor_denom) *anchor_denom = s->anchor_denom;
    if (offset_accum) *offset_accum = s->offset_accum;
    if (offset_denom) *offset_denom = s->offset_denom;
}

/* Whether step `it` runs adjust_anchor (growing / pruning). */
static bool adjust_due(const gs_scaffold *s, int64_t it) {
    return it > s->o.update_from && it % s->o.update_interval == 0 && it < s->o.update_until;
}

bool gs_scaffold_adjust_due(const gs_scaffold *s, int64_t it) { return adjust_due(s, it); }

bool gs_scaffold_stats_due(const gs_scaffold *s, int64_t it) {
    return it < s->o.update_until && it > s->o.stat_from;
}

/* The anchors' learning rates at step `it`: feature, offsets (decaying), scaling. */
static void anchor_lr(const gs_scaffold *s, int64_t it, double lr[A_COUNT]) {
    int64_t T = s->o.max_steps;
    lr[A_FEAT] = 0.0075;
    lr[A_OFF] = lr_exp(0.01 * s->extent, 0.0001 * s->extent, T, it);
    lr[A_SCAL] = 0.007;
}

static pk_status scaffold_step(void *self, int64_t it) {
    gs_scaffold *s = self;
    int64_t T = s->o.max_steps;
    if (s->opt) PK_TRY(gs_decoder_step(s->opt, T, it));
    if (!s->grads_ready) PK_TRY(gs_scaffold_grads(s, NULL, NULL, NULL));
    s->grads_ready = false;
    s->t_feat = s->t_off = s->t_scal = NULL;
    /* an adjust_anchor iteration replaces the anchor tensors in the official code before
     * optimizer.step(), which then skips them (no .grad): only the decoders step */
    if (adjust_due(s, it)) return PK_OK;
    s->adam_step++;
    double lr[A_COUNT];
    anchor_lr(s, it, lr);
    for (int a = 0; a < A_COUNT; a++) {
        pk_adamw_params hp = {.lr = lr[a], .eps = 1e-15};
        PK_TRY(optim_adam_step(pk_ctx_pool(s->c), &hp, s->adam_step, s->n * attr_w[a], s->p[a],
                               s->g[a], s->m[a], s->v[a]));
    }
    return PK_OK;
}

/* Adds the statistics of the last training render (training_statis) to the accumulators
 * opacity_accum, anchor_denom (m) and offset_accum, offset_denom (m K): the source's own, or
 * zeroed buffers that collect one render's terms (data parallel: summed over the ranks). */
static void stat_terms(const gs_scaffold *s, const float *g2d, const int32_t *radii, int W, int H,
                       float *opacity_accum, float *anchor_denom, float *offset_accum,
                       float *offset_denom) {
    /* training_statis: opacity (negative as 0) summed per visible anchor, its visit count */
    for (int64_t j = 0; j < s->nvis; j++) {
        int64_t i = s->vis[j];
        float sum = 0;
        for (int k = 0; k < K; k++)
            sum += s->opac[j * K + k] > 0 ? s->opac[j * K + k] : 0;
        opacity_accum[i] += sum;
        anchor_denom[i] += 1;
    }
    /* the NDC-space 2D-mean gradient norm of rendered (radius > 0) selected Gaussians */
    for (int64_t q = 0; q < s->nsel; q++) {
        if (radii[q] <= 0) continue;
        int64_t j = s->sel[q] / K, k = s->sel[q] % K;
        int64_t i = s->vis[j];
        double gx = g2d[q * 2] * (W * 0.5), gy = g2d[q * 2 + 1] * (H * 0.5);
        offset_accum[i * K + k] += (float)sqrt(gx * gx + gy * gy);
        offset_denom[i * K + k] += 1;
    }
}

static void scaffold_add_stats(void *self, const float *g2d, const int32_t *radii, int W, int H) {
    gs_scaffold *s = self;
    stat_terms(s, g2d, radii, W, H, s->opacity_accum, s->anchor_denom, s->offset_accum,
               s->offset_denom);
}

pk_status gs_scaffold_reduce_world(gs_scaffold *s, const float *g2d, const int32_t *radii, int W,
                                   int H, bool stats) {
    PK_TRY(gs_scaffold_grads(s, NULL, NULL, NULL));
    s->grads_ready = true;
    if (dist_size() <= 1) {
        if (stats) scaffold_add_stats(s, g2d, radii, W, H);
        return PK_OK;
    }
    /* one buffer: the anchors' gradients (m x 68), then this render's statistic terms
     * (m + m + m K + m K) when due */
    int64_t n = s->n, wg = 0;
    for (int a = 0; a < A_COUNT; a++)
        wg += attr_w[a];
    int64_t total = n * wg + (stats ? n * (2 + 2 * K) : 0);
    if ((size_t)total > s->world_cap) {
        float *b = realloc(s->world, sizeof(float) * (size_t)total);
        if (!b) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory for the allreduce");
        s->world = b, s->world_cap = (size_t)total;
    }
    float *b = s->world;
    int64_t at = 0;
    for (int a = 0; a < A_COUNT; a++) {
        memcpy(b + at, s->g[a], sizeof(float) * (size_t)(n * attr_w[a]));
        at += n * attr_w[a];
    }
    float *oa = b + at, *ad = oa + n, *ga = ad + n, *gd = ga + n * K;
    if (stats) {
        memset(oa, 0, sizeof(float) * (size_t)(n * (2 + 2 * K)));
        stat_terms(s, g2d, radii, W, H, oa, ad, ga, gd);
    }
    PK_TRY(dist_sum_f32(b, total));
    float inv = 1.0f / (float)dist_size();
    at = 0;
    for (int a = 0; a < A_COUNT; a++) {
        for (int64_t i = 0; i < n * attr_w[a]; i++)
            s->g[a][i] = b[at + i] * inv;
        at += n * attr_w[a];
    }
    if (stats)
        for (int64_t i = 0; i < n; i++) {
            s->opacity_accum[i] += oa[i], s->anchor_denom[i] += ad[i];
            for (int k = 0; k < K; k++)
                s->offset_accum[i * K + k] += ga[i * K + k],
                    s->offset_denom[i * K + k] += gd[i * K + k];
        }
    /* the decoder's gradients (its own; a shared one is its owner's to reduce) */
    if (!s->opt) return PK_OK;
    tensor *ps[12];
    gs_decoder_params(s->dec, ps);
    return dist_average_grads_of(s->c, ps, 12, 1.0);
}

uint64_t gs_scaffold_hash(const gs_scaffold *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the bytes */
    const float *parts[1 + 3 * A_COUNT] = {s->anchor};
    size_t bytes[1 + 3 * A_COUNT] = {sizeof(float) * 3 * (size_t)s->n};
    for (int a = 0; a < A_COUNT; a++) {
        size_t nb = sizeof(float) * (size_t)attr_w[a] * (size_t)s->n;
        parts[1 + 3 * a] = s->p[a], parts[2 + 3 * a] = s->m[a], parts[3 + 3 * a] = s->v[a];
        bytes[1 + 3 * a] = bytes[2 + 3 * a] = bytes[3 + 3 * a] = nb;
    }
    for (int k = 0; k < 1 + 3 * A_COUNT; k++) {
        const unsigned char *c = (const unsigned char *)parts[k];
        for (size_t i = 0; i < bytes[k]; i++)
            h = (h ^ c[i]) * 1099511628211ull;
    }
    const float *st[2] = {s->opacity_accum, s->anchor_denom};
    for (int k = 0; k < 2; k++) {
        const unsigned char *c = (const unsigned char *)st[k];
        for (size_t i = 0; i < sizeof(float) * (size_t)s->n; i++)
            h = (h ^ c[i]) * 1099511628211ull;
    }
    return h;
}

static int64_t scaffold_count(const void *self) {
    const gs_scaffold *s = self;
    return s->n * K;
}

/* ---- growing and pruning ---- */

/* Appends an anchor at p with log-scaling ls and feature f (moments and statistics zero). */
static pk_status append_anchor(gs_scaffold *s, const float p[3], float ls, const float *f) {
    PK_TRY(reserve(s, s->n + 1));
    int64_t i = s->n++;
    memcpy(s->anchor + i * 3, p, sizeof(float) * 3);
    for (int a = 0; a < A_COUNT; a++) {
        size_t w = (size_t)attr_w[a];
        memset(s->p[a] + i * w, 0, sizeof(float) * w);
        memset(s->m[a] + i * w, 0, sizeof(float) * w);
        memset(s->v[a] + i * w, 0, sizeof(float) * w);
    }
    memcpy(s->p[A_FEAT] + i * F, f, sizeof(float) * F);
    for (int k = 0; k < 6; k++)
        s->p[A_SCAL][i * 6 + k] = ls;
    s->opacity_accum[i] = s->anchor_denom[i] = 0;
    for (int k = 0; k < K; k++)
        s->offset_accum[i * K + k] = s->offset_denom[i * K + k] = 0;
    return PK_OK;
}

/* anchor_growing: returns the number of anchors added. */
static pk_status grow(gs_scaffold *s, const float *grads, const bool *mask, pk_rng *rng,
                      int64_t *grown) {
    *grown = 0;
    int64_t init_len = s->n * K;
    cell *cand = malloc(sizeof(cell) * (size_t)(init_len + 1));
    cell *grid = NULL;
    bool *cm = malloc(sizeof(bool) * (size_t)(init_len + 1));
    float *fbuf = malloc(sizeof(float) * F);
    pk_status st =
        cand && cm && fbuf ? PK_OK : pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    for (int lvl = 0; st == PK_OK && lvl < s->o.update_depth; lvl++) {
        double thr = s->o.grad_threshold * pow(s->o.update_hierarchy / 2, lvl);
        double keep = pow(0.5, lvl + 1);
        for (int64_t j = 0; j < init_len; j++) {
            double r = pk_rng_uniform(rng); /* drawn for every entry, as torch.rand_like */
            cm[j] = grads[j] >= thr && mask[j] && r > keep;
        }
        int64_t inc = s->n * K - init_len;
        if (inc == 0 && lvl > 0) continue;
        int64_t factor = s->o.update_init_factor;
        for (int q = 0; q < lvl; q++)
            factor /= s->o.update_hierarchy;
        double size = s->voxel * (double)factor;
        if (!(size > 0)) continue;
        /* the existing anchors' cells, sorted for lookups */
        free(grid);
        grid = malloc(sizeof(cell) * (size_t)(s->n + 1));
        if (!grid) {
            st = pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
            break;
        }
        for (int64_t i = 0; i < s->n; i++) {
            for (int d = 0; d < 3; d++)
                grid[i].k[d] = round_cell((double)(s->anchor[i * 3 + d] / (float)size));
            grid[i].i = i;
        }
        qsort(grid, (size_t)s->n, sizeof(cell), cell_cmp);
        int64_t nc = 0;
        for (int64_t j = 0; j < init_len; j++) {
            if (!cm[j]) continue;
            int64_t i = j / K, k = j % K;
            for (int d = 0; d < 3; d++) {
                float p = s->anchor[i * 3 + d] +
                          s->p[A_OFF][i * 3 * K + k * 3 + d] * expf(s->p[A_SCAL][i * 6 + d]);
                cand[nc].k[d] = round_cell((double)(p / (float)size));
            }
            cand[nc].i = i; /* the parent anchor (its feature) */
            nc++;
        }
        qsort(cand, (size_t)nc, sizeof(cell), cell_cmp);
        int64_t old_n = s->n;
        for (int64_t a = 0; a < nc && st == PK_OK;) {
            int64_t b = a + 1;
            while (b < nc && cell_key_cmp(&cand[a], &cand[b]) == 0)
                b++;
            bool exists = bsearch(&cand[a], grid, (size_t)old_n, sizeof(cell), cell_key_cmp);
            if (!exists && (s->o.max_anchors <= 0 || s->n < s->o.max_anchors)) {
                /* scatter_max of the parents' features over the cell */
                for (int f = 0; f < F; f++)
                    fbuf[f] = -INFINITY;
                for (int64_t q = a; q < b; q++)
                    for (int f = 0; f < F; f++)
                        fbuf[f] = fmaxf(fbuf[f], s->p[A_FEAT][cand[q].i * F + f]);
                float p[3] = {(float)cand[a].k[0] * (float)size, (float)cand[a].k[1] * (float)size,
                              (float)cand[a].k[2] * (float)size};
                st = append_anchor(s, p, logf((float)size), fbuf);
                (*grown)++;
            }
            a = b;
        }
    }
    free(cand), free(grid), free(cm), free(fbuf);
    return st;
}

pk_status gs_scaffold_adjust(gs_scaffold *s, int64_t it, pk_rng *rng, gs_scaffold_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!adjust_due(s, it)) return PK_OK;
    rep->before = s->n;
    int64_t nk = s->n * K;
    float *grads = malloc(sizeof(float) * (size_t)(nk + 1));
    bool *mask = malloc(sizeof(bool) * (size_t)(nk + 1));
    if (!grads || !mask) {
        free(grads), free(mask);
        return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    }
    double interval = (double)s->o.update_interval, succ = s->o.success_threshold;
    for (int64_t j = 0; j < nk; j++) {
        float d = s->offset_denom[j];
        grads[j] = d > 0 ? s->offset_accum[j] / d : 0.0f; /* NaN (0/0) set to 0 */
        mask[j] = d > interval * succ * 0.5;
    }
    int64_t old_n = s->n;
    pk_status st = grow(s, grads, mask, rng, &rep->grown);
    for (int64_t j = 0; st == PK_OK && j < nk; j++)
        if (mask[j]) s->offset_denom[j] = s->offset_accum[j] = 0;
    free(grads), free(mask);
    PK_TRY(st);
    /* prune: anchors seen often enough whose Gaussians stayed transparent */
    int64_t w = 0;
    for (int64_t i = 0; i < s->n; i++) {
        bool seen = i < old_n && s->anchor_denom[i] > interval * succ;
        bool prune = seen && s->opacity_accum[i] < s->o.min_opacity * s->anchor_denom[i];
        if (seen) s->opacity_accum[i] = s->anchor_denom[i] = 0;
        if (prune) {
            rep->pruned++;
            continue;
        }
        if (w != i) {
            memcpy(s->anchor + w * 3, s->anchor + i * 3, sizeof(float) * 3);
            for (int a = 0; a < A_COUNT; a++) {
                size_t aw = (size_t)attr_w[a];
                memcpy(s->p[a] + w * aw, s->p[a] + i * aw, sizeof(float) * aw);
                memcpy(s->m[a] + w * aw, s->m[a] + i * aw, sizeof(float) * aw);
                memcpy(s->v[a] + w * aw, s->v[a] + i * aw, sizeof(float) * aw);
            }
            s->opacity_accum[w] = s->opacity_accum[i];
            s->anchor_denom[w] = s->anchor_denom[i];
            memcpy(s->offset_accum + w * K, s->offset_accum + i * K, sizeof(float) * K);
            memcpy(s->offset_denom + w * K, s->offset_denom + i * K, sizeof(float) * K);
        }
        w++;
    }
    s->n = w;
    rep->after = s->n;
    return PK_OK;
}

/* ---- export and checkpoints ---- */

/* The decoded Gaussians of every anchor seen from the mean training camera position is not
 * known here: export decodes all anchors as seen from `campos` = the anchors' centroid lifted
 * by the scene extent (a view-independent PLY needs the SH fit of Momentum-GS's baking, not
 * done yet). */
static pk_status scaffold_export(const void *self, pk_gaussians *g) {
    gs_scaffold *s = (gs_scaffold *)self;
    pk_ctx *c = s->c;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)(s->n + 1));
    if (!all) return pk_error(PK_ERR_NOMEM, "out of memory");
    float cp[3] = {0, 0, 0};
    for (int64_t i = 0; i < s->n; i++) {
        all[i] = (int32_t)i;
        for (int d = 0; d < 3; d++)
            cp[d] += s->anchor[i * 3 + d] / (float)s->n;
    }
    cp[2] += (float)s->extent;
    pk_status st = pk_step_begin(c);
    bool was = pk_set_grad_enabled(c, false);
    pk_splat_inputs in;
    if (st == PK_OK) st = decode(s, c, all, s->n, cp, false, &in, NULL);
    pk_set_grad_enabled(c, was);
    free(all);
    PK_TRY(st);
    int64_t m = s->nsel;
    PK_TRY(gaussians_create(g, (size_t)m, 0));
    float *col = malloc(sizeof(float) * 3 * (size_t)(m + 1));
    float *lg = malloc(sizeof(float) * (size_t)(m + 1));
    if (!col || !lg) st = pk_error(PK_ERR_NOMEM, "out of memory");
    if (st == PK_OK) st = tensor_download(in.means, g->xyz);
    if (st == PK_OK) st = tensor_download(in.log_scales, g->scale);
    if (st == PK_OK) st = tensor_download(in.quats, g->rot);
    if (st == PK_OK) st = tensor_download(in.opacity_logits, g->opacity);
    if (st == PK_OK) st = tensor_download(in.colors, col);
    for (int64_t i = 0; st == PK_OK && i < 3 * m; i++)
        g->f_dc[i] = (float)((col[i] - 0.5) / SH_C0);
    free(col), free(lg);
    return st;
}

/* Names `i` of the checkpoint table. */
static void ck_name(gs_scaffold *s, int i, const char *fmt, const char *a, const char *b) {
    char tmp[160];
    snprintf(tmp, sizeof tmp, fmt, a, b);
    snprintf(s->names[i], sizeof s->names[i], "%s%s", s->prefix, tmp);
}

static pk_status scaffold_ckpt_tensors(void *self, st_write_tensor *out, int max, int *n) {
    gs_scaffold *s = self;
    int nstate = s->opt ? optim_state_count(s->opt) : 0;
    int need = 1 + 3 * A_COUNT + 4 + 2 + 12 + nstate;
    if (need > max || need > NCKPT_MAX)
        return pk_error(PK_ERR_INVALID, "Scaffold-GS: checkpoint table too small (%d)", need);
    int k = 0;
    ck_name(s, k, "%s%s", "sc.anchor", "");
    s->shapes[k][0] = s->n, s->shapes[k][1] = 3;
    out[k] = (st_write_tensor){s->names[k], ST_F32, 2, s->shapes[k], s->anchor};
    k++;
    for (int a = 0; a < A_COUNT; a++) {
        float *arr[3] = {s->p[a], s->m[a], s->v[a]};
        const char *suf[3] = {"", ".exp_avg", ".exp_avg_sq"};
        for (int j = 0; j < 3; j++, k++) {
            ck_name(s, k, "sc.%s%s", attr_name[a], suf[j]);
            s->shapes[k][0] = s->n, s->shapes[k][1] = attr_w[a];
            out[k] = (st_write_tensor){s->names[k], ST_F32, 2, s->shapes[k], arr[j]};
        }
    }
    float *st4[4] = {s->opacity_accum, s->anchor_denom, s->offset_accum, s->offset_denom};
    const char *sn[4] = {"sc.opacity_accum", "sc.anchor_denom", "sc.offset_accum",
                         "sc.offset_denom"};
    for (int j = 0; j < 4; j++, k++) {
        ck_name(s, k, "%s%s", sn[j], "");
        s->shapes[k][0] = s->n, s->shapes[k][1] = j < 2 ? 1 : K;
        out[k] = (st_write_tensor){s->names[k], ST_F32, 2, s->shapes[k], st4[j]};
    }
    ck_name(s, k, "%s%s", "sc.adam_step", "");
    s->shapes[k][0] = 1;
    out[k] = (st_write_tensor){s->names[k], ST_I64, 1, s->shapes[k], &s->adam_step};
    k++;
    s->mlp_steps = s->opt ? optim_steps(s->opt) : 0;
    ck_name(s, k, "%s%s", "sc.mlp_steps", "");
    s->shapes[k][0] = 1;
    out[k] = (st_write_tensor){s->names[k], ST_I64, 1, s->shapes[k], &s->mlp_steps};
    k++;
    /* decoder parameters and the decoder optimizer's state, downloaded to host */
    tensor *ps[12];
    gs_decoder_params(s->dec, ps);
    tensor *all[12 + NCKPT_MAX];
    char nm[128];
    size_t total = 0;
    for (int i = 0; i < 12; i++)
        all[i] = ps[i];
    for (int i = 0; i < nstate; i++)
        all[12 + i] = optim_state_get(s->opt, i, nm, sizeof nm);
    for (int i = 0; i < (s->opt ? 12 + nstate : 0); i++)
        total += (size_t)tensor_numel(all[i]);
    if (!scratch(&s->ck_host, total)) return pk_error(PK_ERR_NOMEM, "out of memory");
    size_t off = 0;
    for (int i = 0; i < (s->opt ? 12 + nstate : 0); i++, k++) {
        if (i < 12)
            ck_name(s, k, "%s%s", ps[i]->name, "");
        else {
            optim_state_get(s->opt, i - 12, nm, sizeof nm);
            ck_name(s, k, "sc.%s%s", nm, "");
        }
        PK_TRY(tensor_download(all[i], s->ck_host + off));
        s->shapes[k][0] = tensor_numel(all[i]);
        out[k] = (st_write_tensor){s->names[k], ST_F32, 1, s->shapes[k], s->ck_host + off};
        off += (size_t)tensor_numel(all[i]);
    }
    *n = k;
    return PK_OK;
}

/* Copies checkpoint tensor `name` of n x w floats into dst. */
static pk_status take(const gs_scaffold *s, const ckpt_file *ck, const char *bare, int64_t numel,
                      void *dst, size_t esz) {
    char name[200];
    snprintf(name, sizeof name, "%s%s", s->prefix, bare);
    const st_tensor *t = safetensors_find(&ck->st, name);
    if (!t) return pk_error(PK_ERR_FORMAT, "checkpoint: tensor %s missing", name);
    if (t->nbytes != (size_t)numel * esz)
        return pk_error(PK_ERR_FORMAT, "checkpoint: tensor %s has %zu bytes, expected %lld", name,
                        t->nbytes, (long long)((size_t)numel * esz));
    memcpy(dst, t->data, t->nbytes);
    return PK_OK;
}

static pk_status scaffold_restore(void *self, const ckpt_file *ck) {
    gs_scaffold *s = self;
    char an[40];
    snprintf(an, sizeof an, "%ssc.anchor", s->prefix);
    const st_tensor *t = safetensors_find(&ck->st, an);
    if (!t || t->ndim != 2 || t->shape[1] != 3)
        return pk_error(PK_ERR_FORMAT, "checkpoint: tensor sc.anchor (n, 3) missing");
    int64_t n = t->shape[0];
    PK_TRY(reserve(s, n));
    PK_TRY(take(s, ck, "sc.anchor", n * 3, s->anchor, 4));
    char name[160];
    for (int a = 0; a < A_COUNT; a++) {
        float *arr[3] = {s->p[a], s->m[a], s->v[a]};
        const char *suf[3] = {"", ".exp_avg", ".exp_avg_sq"};
        for (int j = 0; j < 3; j++) {
            snprintf(name, sizeof name, "sc.%s%s", attr_name[a], suf[j]);
            PK_TRY(take(s, ck, name, n * attr_w[a], arr[j], 4));
        }
    }
    PK_TRY(take(s, ck, "sc.opacity_accum", n, s->opacity_accum, 4));
    PK_TRY(take(s, ck, "sc.anchor_denom", n, s->anchor_denom, 4));
    PK_TRY(take(s, ck, "sc.offset_accum", n * K, s->offset_accum, 4));
    PK_TRY(take(s, ck, "sc.offset_denom", n * K, s->offset_denom, 4));
    PK_TRY(take(s, ck, "sc.adam_step", 1, &s->adam_step, 8));
    PK_TRY(take(s, ck, "sc.mlp_steps", 1, &s->mlp_steps, 8));
    s->n = n;
    tensor *ps[12];
    gs_decoder_params(s->dec, ps);
    int nstate = s->opt ? optim_state_count(s->opt) : 0;
    for (int i = 0; i < (s->opt ? 12 + nstate : 0); i++) {
        tensor *x;
        char nm[128];
        if (i < 12) {
            x = ps[i];
            snprintf(name, sizeof name, "%s", ps[i]->name);
        } else {
            x = optim_state_get(s->opt, i - 12, nm, sizeof nm);
            snprintf(name, sizeof name, "sc.%s", nm);
        }
        int64_t ne = tensor_numel(x);
        if (!scratch(&s->ck_host, (size_t)ne)) return pk_error(PK_ERR_NOMEM, "out of memory");
        PK_TRY(take(s, ck, name, ne, s->ck_host, 4));
        PK_TRY(tensor_upload(x, s->ck_host));
    }
    if (s->opt) optim_set_steps(s->opt, s->mlp_steps);
    return PK_OK;
}

static pk_status scaffold_bake(void *self, const splat_camera *cams, const int *views, int n,
                               int sh_degree, pk_gaussians *g) {
    gs_bake_options bo = {.sh_degree = sh_degree};
    return gs_bake_scaffold(self, cams, views, n, &bo, g);
}

gs_source gs_scaffold_source(gs_scaffold *s) {
    return (gs_source){.self = s,
                       .produce = scaffold_produce,
                       .step = scaffold_step,
                       .count = scaffold_count,
                       .export_gaussians = scaffold_export,
                       .checkpoint_tensors = scaffold_ckpt_tensors,
                       .restore = scaffold_restore,
                       .destroy = scaffold_destroy,
                       .produce_tensors = scaffold_produce_tensors,
                       .add_stats = scaffold_add_stats,
                       .bake = scaffold_bake};
}

/* ---- the source resident on a Vulkan device ---- */

/* Device copies of the anchors (positions, block filter, parameters with gradients, Adam
 * moments, growing / pruning statistics) in an arena of their own, rebuilt when the anchor
 * count changes; the decoders already live on the context's device. A training decode renders
 * every anchor's k neural Gaussians: those of culled anchors or with opacity <= 0 are parked
 * at the camera centre (culled by the rasterizer's near test: no tile pairs, no gradient),
 * so no step needs the selected count on the host. */
struct gs_scaffold_dev {
    gs_scaffold *s;
    pk_ctx *c;
    pk_arena *arena;
    int64_t n;                                    /* anchors on the device */
    tensor *anchor, *keep;                        // (n, 3), (n)
    tensor *p[A_COUNT], *m[A_COUNT], *v[A_COUNT]; // (n, 32), (n, k, 3), (n, 6)
    tensor *opacity_accum, *anchor_denom;         // (n)
    tensor *offset_accum, *offset_denom;          // (n k)
    tensor *last_op, *last_vis; /* the last training decode's (n k) opacity and (n) visibility */
    /* a copy of the anchor state, the own decoder and its optimizer state, to rewind to */
    pk_arena *snap_arena;
    tensor **snap;
    int snap_k;
    int64_t snap_n, snap_adam_step, snap_mlp_steps;
    bool snap_valid;
};

/* The device state in a fixed order: p, m, v of each attribute, the statistics, then (own
 * decoder) its 12 parameters and its optimizer's state; returns the count (out may be NULL). */
static int sdev_state(gs_scaffold_dev *d, tensor **out) {
    gs_scaffold *s = d->s;
    int k = 0;
    tensor *dec[12];
    gs_decoder_params(s->dec, dec);
    int nstate = s->opt ? optim_state_count(s->opt) : 0;
    char nm[128];
    for (int a = 0; a < A_COUNT; a++) {
        if (out) out[k] = d->p[a], out[k + 1] = d->m[a], out[k + 2] = d->v[a];
        k += 3;
    }
    tensor *st[4] = {d->opacity_accum, d->anchor_denom, d->offset_accum, d->offset_denom};
    for (int i = 0; i < 4; i++, k++)
        if (out) out[k] = st[i];
    for (int i = 0; s->opt && i < 12; i++, k++)
        if (out) out[k] = dec[i];
    for (int i = 0; i < nstate; i++, k++)
        if (out) out[k] = optim_state_get(s->opt, i, nm, sizeof nm);
    return k;
}

pk_status gs_scaffold_dev_upload(gs_scaffold_dev *d) {
    gs_scaffold *s = d->s;
    pk_arena_destroy(d->arena);
    d->arena = NULL;
    d->n = s->n;
    d->snap_valid = false; /* a snapshot of other anchors */
    d->last_op = d->last_vis = NULL;
    if (s->n == 0) return PK_OK;
    int64_t n = s->n;
    size_t bytes = sizeof(float) * 4 * (size_t)n + 2 * 4096;
    for (int a = 0; a < A_COUNT; a++)
        bytes += 4 * sizeof(float) * (size_t)attr_w[a] * (size_t)n + 4096;
    bytes += sizeof(float) * (size_t)(2 * n + 2 * n * K) + 4 * 4096;
    PK_TRY(pk_arena_create(d->c->dev, "gs-scaffold", bytes, &d->arena));
    float *keep = malloc(sizeof(float) * (size_t)n);
    if (!keep) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    for (int64_t i = 0; i < n; i++)
        keep[i] = !s->keep || s->keep(s->keep_arg, s->anchor + i * 3) ? 1.0f : 0.0f;
    d->anchor = tensor_new(d->arena, PK_F32, 2, (int64_t[]){n, 3});
    d->keep = tensor_new(d->arena, PK_F32, 1, (int64_t[]){n});
    pk_status st = d->anchor && d->keep ? PK_OK : PK_ERR_NOMEM;
    if (st == PK_OK) st = tensor_upload(d->anchor, s->anchor);
    if (st == PK_OK) st = tensor_upload(d->keep, keep);
    free(keep);
    if (st != PK_OK)
        return pk_error(PK_ERR_NOMEM, "Scaffold-GS: device memory: %s", polyak_error());
    for (int a = 0; a < A_COUNT; a++) {
        int nd = a == A_OFF ? 3 : 2;
        int64_t shape[3] = {n, a == A_OFF ? K : attr_w[a], 3};
        tensor **slot[3] = {&d->p[a], &d->m[a], &d->v[a]};
        const float *src[3] = {s->p[a], s->m[a], s->v[a]};
        for (int q = 0; q < 3; q++) {
            *slot[q] = tensor_new(d->arena, PK_F32, nd, shape);
            if (!*slot[q])
                return pk_error(PK_ERR_NOMEM, "Scaffold-GS: device memory: %s", polyak_error());
            PK_TRY(tensor_upload(*slot[q], src[q]));
        }
        d->p[a]->name = attr_name[a];
        d->p[a]->requires_grad = true;
        d->p[a]->grad = tensor_new(d->arena, PK_F32, nd, shape);
        if (!d->p[a]->grad)
            return pk_error(PK_ERR_NOMEM, "Scaffold-GS: device memory: %s", polyak_error());
    }
    struct {
        tensor **t;
        const float *h;
        int64_t len;
    } stats[4] = {{&d->opacity_accum, s->opacity_accum, n},
                  {&d->anchor_denom, s->anchor_denom, n},
                  {&d->offset_accum, s->offset_accum, n * K},
                  {&d->offset_denom, s->offset_denom, n * K}};
    for (int i = 0; i < 4; i++) {
        *stats[i].t = tensor_new(d->arena, PK_F32, 1, (int64_t[]){stats[i].len});
        if (!*stats[i].t)
            return pk_error(PK_ERR_NOMEM, "Scaffold-GS: device memory: %s", polyak_error());
        PK_TRY(tensor_upload(*stats[i].t, stats[i].h));
    }
    return PK_OK;
}

pk_status gs_scaffold_dev_create(gs_scaffold *s, pk_ctx *c, gs_scaffold_dev **out) {
    *out = NULL;
    if (!c || c->backend != PK_BACKEND_VK || !c->vk)
        return pk_error(PK_ERR_INVALID, "Scaffold-GS: the resident source needs a Vulkan context");
    if (c != s->c)
        return pk_error(PK_ERR_INVALID, "Scaffold-GS: the resident source must use the "
                                        "decoders' context");
    gs_scaffold_dev *d = calloc(1, sizeof *d);
    if (!d) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    d->s = s, d->c = c;
    pk_status st = gs_scaffold_dev_upload(d);
    if (st != PK_OK) {
        gs_scaffold_dev_destroy(d);
        return st;
    }
    *out = d;
    return PK_OK;
}

void gs_scaffold_dev_destroy(gs_scaffold_dev *d) {
    if (!d) return;
    pk_arena_destroy(d->snap_arena);
    pk_arena_destroy(d->arena);
    free(d->snap);
    free(d);
}

pk_status gs_scaffold_dev_download(gs_scaffold_dev *d) {
    gs_scaffold *s = d->s;
    if (d->n != s->n)
        return pk_error(PK_ERR_INVALID, "Scaffold-GS: the device holds %lld anchors, the host %lld",
                        (long long)d->n, (long long)s->n);
    if (s->n == 0) return PK_OK;
    for (int a = 0; a < A_COUNT; a++) {
        PK_TRY(tensor_download(d->p[a], s->p[a]));
        PK_TRY(tensor_download(d->m[a], s->m[a]));
        PK_TRY(tensor_download(d->v[a], s->v[a]));
    }
    PK_TRY(tensor_download(d->opacity_accum, s->opacity_accum));
    PK_TRY(tensor_download(d->anchor_denom, s->anchor_denom));
    PK_TRY(tensor_download(d->offset_accum, s->offset_accum));
    return tensor_download(d->offset_denom, s->offset_denom);
}

/* A (whole-block) binding of t. */
static vk_binding bind(const tensor *t) { return (vk_binding){t->block, 0, 0}; }

pk_status gs_scaffold_dev_inputs(gs_scaffold_dev *d, const splat_camera *cam, pk_splat_inputs *in,
                                 tensor **reg) {
    gs_scaffold *s = d->s;
    pk_ctx *c = d->c;
    int64_t n = d->n, nk = n * K;
    if (n == 0) return pk_error(PK_ERR_INVALID, "Scaffold-GS: no anchors left to decode");
    for (int a = 0; a < A_COUNT; a++)
        PK_TRY(tensor_fill(d->p[a]->grad, 0.0f));
    int dw = s->dec->in - F;
    float cp[3];
    cam_center(cam, cp);
    /* the view pass: visibility and decoder directions, the camera as push constants */
    tensor *dir = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, dw});
    tensor *vis = tensor_new(c->step, PK_F32, 1, (int64_t[]){n});
    tensor *sel = tensor_new(c->step, PK_F32, 2, (int64_t[]){nk, 1});
    tensor *fill = tensor_new(c->step, PK_F32, 1, (int64_t[]){nk});
    tensor *park = tensor_new(c->step, PK_F32, 2, (int64_t[]){nk, 3});
    if (!dir || !vis || !sel || !fill || !park)
        return pk_error(PK_ERR_NOMEM, "Scaffold-GS: step memory: %s", polyak_error());
    scaffold_view_pc vp = {.n = (uint32_t)n,
                           .dw = (uint32_t)dw,
                           .off_anchor = (uint32_t)d->anchor->offset,
                           .off_scal = (uint32_t)d->p[A_SCAL]->offset,
                           .off_keep = (uint32_t)d->keep->offset,
                           .off_dir = (uint32_t)dir->offset,
                           .off_vis = (uint32_t)vis->offset,
                           .fx = cam->fx,
                           .fy = cam->fy,
                           .cx = cam->cx,
                           .cy = cam->cy,
                           .width = (float)cam->width,
                           .height = (float)cam->height,
                           .near = cam->near > 0 ? cam->near : 0.2f};
    memcpy(vp.m, cam->world_to_cam, sizeof vp.m);
    vk_binding vb[5] = {bind(d->anchor), bind(d->p[A_SCAL]), bind(d->keep), bind(dir), bind(vis)};
    uint32_t ga = (uint32_t)((n + 255) / 256), gk = (uint32_t)((nk + 255) / 256);
    PK_TRY(vkctx_dispatch(c->vk, "splat/scaffold_view", 5, vb, &vp, sizeof vp, ga, 1, 1));
    tensor *x = pk_concat(c, (tensor *[]){d->p[A_FEAT], dir}, 2, 1);
    if (!x) return pk_error(PK_ERR_INVALID, "Scaffold-GS: decoder input: %s", polyak_error());
    tensor *op, *cov, *col;
    PK_TRY(gs_decoder_forward(c, s->dec, x, &op, &cov, &col));
    tensor *op_t = NULL, *cov_t = NULL, *col_t = NULL;
    if (s->teacher && reg) /* Momentum-GS: the teacher decodes the same input (as decode) */
        PK_TRY(gs_decoder_forward(c, s->teacher, x, &op_t, &cov_t, &col_t));
    tensor *o1 = pk_reshape(c, op, 1, (int64_t[]){nk});
    if (!o1) return pk_error(PK_ERR_INVALID, "Scaffold-GS: %s", polyak_error());
    /* the selection (visible anchor, opacity > 0) as masks */
    scaffold_select_pc sp = {.nk = (uint32_t)nk,
                             .k = K,
                             .off_op = (uint32_t)o1->offset,
                             .off_vis = (uint32_t)vis->offset,
                             .off_sel = (uint32_t)sel->offset,
                             .off_fill = (uint32_t)fill->offset,
                             .off_park = (uint32_t)park->offset,
                             .campos = {cp[0], cp[1], cp[2]}};
    vk_binding sb[5] = {bind(o1), bind(vis), bind(sel), bind(fill), bind(park)};
    PK_TRY(vkctx_dispatch(c->vk, "splat/scaffold_select", 5, sb, &sp, sizeof sp, gk, 1, 1));
    /* generate_neural_gaussians over all n k: means = anchor + offset x exp(scaling[0:3]) */
    tensor *anc = pk_reshape(c, d->anchor, 3, (int64_t[]){n, 1, 3});
    tensor *e_off =
        pk_reshape(c, pk_exp(c, pk_slice(c, d->p[A_SCAL], 1, 0, 3)), 3, (int64_t[]){n, 1, 3});
    tensor *means =
        pk_reshape(c, pk_add(c, anc, pk_mul(c, d->p[A_OFF], e_off)), 2, (int64_t[]){nk, 3});
    means = pk_add(c, pk_mul(c, means, sel), park);
    tensor *cov2 = pk_reshape(c, cov, 2, (int64_t[]){nk, 7});
    tensor *ls_a = pk_reshape(c, pk_contiguous(c, pk_slice(c, d->p[A_SCAL], 1, 3, 3)), 3,
                              (int64_t[]){n, 1, 3});
    tensor *ls_n = pk_reshape(c, pk_log(c, pk_sigmoid(c, pk_slice(c, cov2, 1, 0, 3))), 3,
                              (int64_t[]){n, K, 3});
    tensor *log_s = pk_reshape(c, pk_add(c, ls_a, ls_n), 2, (int64_t[]){nk, 3});
    tensor *quats = pk_slice(c, cov2, 1, 3, 4);
    tensor *sel1 = pk_reshape(c, sel, 1, (int64_t[]){nk});
    tensor *o2 = pk_add(c, pk_mul(c, o1, sel1), fill);
    tensor *logit = pk_sub(c, pk_log(c, o2), pk_log(c, pk_affine(c, o2, -1.0f, 1.0f)));
    tensor *colors = pk_reshape(c, col, 2, (int64_t[]){nk, 3});
    *in = (pk_splat_inputs){.means = means,
                            .log_scales = log_s,
                            .quats = quats,
                            .opacity_logits = logit,
                            .colors = colors};
    if (reg) /* 0.01 x the mean volume of the selected Gaussians */
        *reg = pk_scale(
            c,
            pk_div(c, pk_sum_all(c, pk_mul(c, pk_exp(c, pk_sum(c, log_s, 1, false)), sel1)),
                   pk_sum_all(c, sel1)),
            0.01f);
    if (reg && op_t) {
        /* gs_consistency_loss over the host path's selection, as masks: the opacities of every
         * visible anchor's offsets (vis), colour, scale and rotation of the selected Gaussians
         * (sel); each term a masked sum over its element count */
        tensor *cov_t2 = pk_reshape(c, cov_t, 2, (int64_t[]){nk, 7});
        tensor *visk = pk_reshape(c, vis, 2, (int64_t[]){n, 1});
        tensor *dop = pk_sub(c, op, op_t); // (n, k)
        tensor *t_op = pk_div(c, pk_sum_all(c, pk_mul(c, pk_mul(c, dop, dop), visk)),
                              pk_scale(c, pk_sum_all(c, vis), (float)K));
        tensor *nsel = pk_sum_all(c, sel1);
        tensor *dcol = pk_sub(c, colors, pk_reshape(c, col_t, 2, (int64_t[]){nk, 3}));
        tensor *t_col = pk_div(c, pk_sum_all(c, pk_mul(c, pk_mul(c, dcol, dcol), sel)),
                               pk_scale(c, nsel, 3.0f));
        tensor *asc = pk_exp(c, ls_a); // (n, 1, 3) the anchors' exp(scaling[3:6])
        tensor *sc_s = pk_mul(
            c, asc,
            pk_reshape(c, pk_sigmoid(c, pk_slice(c, cov2, 1, 0, 3)), 3, (int64_t[]){n, K, 3}));
        tensor *sc_t = pk_mul(
            c, asc,
            pk_reshape(c, pk_sigmoid(c, pk_slice(c, cov_t2, 1, 0, 3)), 3, (int64_t[]){n, K, 3}));
        tensor *dsc = pk_reshape(c, pk_sub(c, sc_s, sc_t), 2, (int64_t[]){nk, 3});
        tensor *t_sc =
            pk_div(c, pk_sum_all(c, pk_mul(c, pk_mul(c, dsc, dsc), sel)), pk_scale(c, nsel, 3.0f));
        tensor *drot = pk_sub(c, pk_l2_normalize(c, quats, 1e-12f),
                              pk_l2_normalize(c, pk_slice(c, cov_t2, 1, 3, 4), 1e-12f));
        tensor *t_rot = pk_div(c, pk_sum_all(c, pk_mul(c, pk_mul(c, drot, drot), sel)),
                               pk_scale(c, nsel, 4.0f));
        tensor *cons = pk_add(c, pk_add(c, t_op, t_col), pk_add(c, t_sc, t_rot));
        *reg = pk_add(c, *reg, pk_scale(c, cons, s->cons_weight));
    }
    if (!means || !log_s || !quats || !logit || !colors || (reg && !*reg))
        return pk_error(PK_ERR_INVALID, "Scaffold-GS: decode: %s", polyak_error());
    d->last_op = o1, d->last_vis = vis;
    return PK_OK;
}

pk_status gs_scaffold_dev_add_stats(gs_scaffold_dev *d, const tensor *means2d_grad,
                                    const tensor *radii, int width, int height) {
    if (d->n == 0 || !d->last_op) return PK_OK;
    scaffold_stats_pc pc = {.n = (uint32_t)d->n,
                            .k = K,
                            .off_op = (uint32_t)d->last_op->offset,
                            .off_vis = (uint32_t)d->last_vis->offset,
                            .off_g2d = (uint32_t)means2d_grad->offset,
                            .off_radii = (uint32_t)radii->offset,
                            .off_opacity_accum = (uint32_t)d->opacity_accum->offset,
                            .off_anchor_denom = (uint32_t)d->anchor_denom->offset,
                            .off_offset_accum = (uint32_t)d->offset_accum->offset,
                            .off_offset_denom = (uint32_t)d->offset_denom->offset,
                            .hx = 0.5f * (float)width,
                            .hy = 0.5f * (float)height};
    vk_binding b[8] = {bind(d->last_op),      bind(d->last_vis),      bind(means2d_grad),
                       bind(radii),           bind(d->opacity_accum), bind(d->anchor_denom),
                       bind(d->offset_accum), bind(d->offset_denom)};
    uint32_t groups = (uint32_t)((d->n + 255) / 256);
    return vkctx_dispatch(d->c->vk, "splat/scaffold_stats", 8, b, &pc, sizeof pc, groups, 1, 1);
}

pk_status gs_scaffold_dev_step(gs_scaffold_dev *d, int64_t it) {
    gs_scaffold *s = d->s;
    if (s->opt) PK_TRY(gs_decoder_step(s->opt, s->o.max_steps, it));
    d->last_op = d->last_vis = NULL;
    if (adjust_due(s, it) || d->n == 0) return PK_OK; /* as scaffold_step */
    s->adam_step++;
    double lr[A_COUNT];
    anchor_lr(s, it, lr);
    for (int a = 0; a < A_COUNT; a++) {
        pk_adamw_params hp = {.lr = lr[a], .eps = 1e-15};
        tensor *p = d->p[a];
        PK_TRY(optim_adam_step_vk(d->c->vk, &hp, s->adam_step, d->n * attr_w[a],
                                  (pk_vk_range){p->block, (size_t)p->offset},
                                  (pk_vk_range){p->grad->block, (size_t)p->grad->offset},
                                  (pk_vk_range){d->m[a]->block, (size_t)d->m[a]->offset},
                                  (pk_vk_range){d->v[a]->block, (size_t)d->v[a]->offset}));
    }
    return PK_OK;
}

/* Copies src into dst (same shape) on the device: dst = -0 + src keeps every bit of src. */
static pk_status sdev_copy(pk_ctx *c, tensor *dst, const tensor *src) {
    PK_TRY(pk_fill(c, dst, -0.0f));
    return pk_accumulate(c, dst, src);
}

pk_status gs_scaffold_dev_snapshot(gs_scaffold_dev *d) {
    gs_scaffold *s = d->s;
    d->snap_adam_step = s->adam_step;
    d->snap_mlp_steps = s->opt ? optim_steps(s->opt) : 0;
    d->snap_valid = true;
    if (d->n == 0) return PK_OK;
    int k = sdev_state(d, NULL);
    tensor **st = malloc(sizeof(tensor *) * (size_t)k);
    if (!st) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    sdev_state(d, st);
    pk_status r = PK_OK;
    if (d->snap_n != d->n || d->snap_k != k) {
        pk_arena_destroy(d->snap_arena);
        d->snap_arena = NULL;
        d->snap_n = 0;
        free(d->snap);
        d->snap = calloc((size_t)k, sizeof(tensor *));
        size_t bytes = 0;
        for (int i = 0; i < k; i++)
            bytes += sizeof(float) * (size_t)tensor_numel(st[i]) + 4096;
        r = d->snap ? pk_arena_create(d->c->dev, "gs-scaffold-snapshot", bytes, &d->snap_arena)
                    : pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
        for (int i = 0; r == PK_OK && i < k; i++) {
            d->snap[i] = tensor_new_like(d->snap_arena, st[i]);
            if (!d->snap[i])
                r = pk_error(PK_ERR_NOMEM, "Scaffold-GS: device memory: %s", polyak_error());
        }
        if (r == PK_OK) d->snap_n = d->n, d->snap_k = k;
    }
    for (int i = 0; r == PK_OK && i < k; i++)
        r = sdev_copy(d->c, d->snap[i], st[i]);
    free(st);
    return r;
}

pk_status gs_scaffold_dev_rewind(gs_scaffold_dev *d) {
    gs_scaffold *s = d->s;
    if (!d->snap_valid || d->snap_n != d->n)
        return pk_error(PK_ERR_INVALID, "Scaffold-GS: no snapshot of the %lld device anchors",
                        (long long)d->n);
    s->adam_step = d->snap_adam_step;
    /* the decoder's gradients of the render being undone (the anchors' are zeroed by the next
     * decode) */
    if (s->opt) optim_set_steps(s->opt, d->snap_mlp_steps);
    if (s->opt) PK_TRY(optim_zero_grad(s->opt));
    int k = sdev_state(d, NULL);
    if (k != d->snap_k) return pk_error(PK_ERR_INVALID, "Scaffold-GS: the snapshot is stale");
    tensor **st = malloc(sizeof(tensor *) * (size_t)k);
    if (!st) return pk_error(PK_ERR_NOMEM, "Scaffold-GS: out of memory");
    sdev_state(d, st);
    pk_status r = PK_OK;
    for (int i = 0; r == PK_OK && i < k && d->n > 0; i++)
        r = sdev_copy(d->c, st[i], d->snap[i]);
    free(st);
    d->last_op = d->last_vis = NULL;
    return r;
}
