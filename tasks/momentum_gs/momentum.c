/* momentum.c - Momentum-GS: the partition, the camera-to-block rule, the block weights and the
 * block-wise Gaussian source (see momentum.h for the rules). On every device a lane's active
 * block's anchors are uploaded per step by its Scaffold-GS source (host-resident otherwise); the
 * device's replica of the student decoder and its teacher stay on the device. The trainer's
 * step runs this rank's first lane; device 0's further lanes run in mgs_step, every further
 * device's lanes in its own thread (lane_step), started by pick_view; mgs_step then reduces the
 * lanes' decoder gradients (across the ranks too) and steps the decoder once
 * (reduce_and_step). The merged model is baked into a 3DGS set (mgs_bake) and written per block
 * (mgs_write_blocks); under mpirun the blocks are gathered first (mgs_gather). On Vulkan with
 * one device in one process the blocks are resident instead (mgs_dev_*: every block's anchors
 * on the device, the trainer's resident step, device 0's lanes without host round trips).
 *
 * The step, in Momentum-GS's order: the active block's view is rendered from its own anchors
 * with the shared decoder; loss = (0.8 L1 + 0.2 (1 - SSIM) + 0.01 volume + 50 consistency) x
 * block weight; the block's anchors step (Adam), the student decoder steps once on the lanes'
 * mean gradient (Adam); the teacher follows
 * the student (m = 0.9) after every step; the block's anchors grow / prune on Scaffold-GS's
 * schedule (global step numbers; statistics only while the block is active); every 1,000 steps
 * each block's validation PSNR / SSIM (its training views 5, 13, 21, ... rendered from its own
 * anchors, as Momentum-GS's training_report) is measured; from then on every step smooths the
 * active block's values towards its latest measurement (0.9 old + 0.1 new, as Momentum-GS's
 * train.py does per iteration) and weighs its loss against the best smoothed block (weights 1
 * before the first measurement). */
#include "momentum.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "autograd.h"
#include "checkpoint.h"
#include "device.h"
#include "dist.h"
#include "gs_bake.h"
#include "io_util.h"
#include "safetensors.h"
#include "ops/ops_ssim.h"
#include "optim/optimizer.h"
#include "teacher/teacher.h"

mgs_options mgs_defaults(mgs_options o) {
    if (!o.blocks) o.blocks = 4;
    if (!o.block_steps) o.block_steps = 500;
    if (!o.momentum) o.momentum = 0.9;
    if (!o.cons_weight) o.cons_weight = 50;
    if (!o.sigma) o.sigma = 10;
    if (!o.weight_interval) o.weight_interval = 1000;
    if (!o.margin) o.margin = 0.1;
    if (!o.view_share) o.view_share = 0.25;
    if (!o.val_views) o.val_views = 64;
    if (!o.parallel) { /* devices x ranks (a bad list is refused later, by devices_open) */
        char names[8][64];
        int nd = 1;
        if (o.devices && *o.devices &&
            pk_device_list_parse(o.devices, names, 8, PK_DEVICE_LIST_REPEATS, &nd) != PK_OK)
            nd = 1;
        o.parallel = nd * dist_size();
    }
    return o;
}

char *mgs_options_json(const mgs_options *o) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddNumberToObject(j, "blocks", o->blocks);
    cJSON_AddNumberToObject(j, "block_steps", (double)o->block_steps);
    cJSON_AddBoolToObject(j, "teacher", !o->no_teacher && !o->independent);
    if (o->cons_features) cJSON_AddBoolToObject(j, "consistency_features_only", true);
    if (o->cons_terms) cJSON_AddNumberToObject(j, "consistency_terms", o->cons_terms);
    cJSON_AddBoolToObject(j, "weighting", !o->no_weighting && !o->independent);
    cJSON_AddBoolToObject(j, "independent", o->independent);
    cJSON_AddNumberToObject(j, "momentum", o->momentum);
    cJSON_AddNumberToObject(j, "consistency_weight", o->cons_weight);
    cJSON_AddNumberToObject(j, "sigma", o->sigma);
    cJSON_AddNumberToObject(j, "weight_interval", (double)o->weight_interval);
    cJSON_AddNumberToObject(j, "voxel_size", o->voxel_size);
    cJSON_AddNumberToObject(j, "margin", o->margin);
    cJSON_AddNumberToObject(j, "view_share", o->view_share);
    cJSON_AddNumberToObject(j, "val_views", o->val_views);
    if (o->parallel > 1) /* the model depends on it; the devices and ranks do not */
        cJSON_AddNumberToObject(j, "parallel_blocks", o->parallel);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- partition ---- */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

pk_status mgs_partition_build(const float *xyz, int64_t n, int blocks, mgs_partition *p) {
    memset(p, 0, sizeof *p);
    if (n < 1) return pk_error(PK_ERR_INVALID, "Momentum-GS: no points to partition");
    if (blocks < 1 || blocks > 256)
        return pk_error(PK_ERR_INVALID, "Momentum-GS: --blocks %d outside 1..256", blocks);
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    double lo[3], hi[3], spread[3];
    for (int a = 0; a < 3; a++) {
        for (int64_t i = 0; i < n; i++)
            v[i] = xyz[i * 3 + a];
        qsort(v, (size_t)n, sizeof(float), cmp_float);
        lo[a] = v[(int64_t)(0.02 * (double)(n - 1))];
        hi[a] = v[(int64_t)(0.98 * (double)(n - 1))];
        spread[a] = hi[a] - lo[a];
    }
    free(v);
    /* the two axes of largest spread, the larger first */
    int ax = 0;
    for (int a = 1; a < 3; a++)
        if (spread[a] > spread[ax]) ax = a;
    int ay = ax == 0 ? 1 : 0;
    for (int a = 0; a < 3; a++)
        if (a != ax && spread[a] > spread[ay]) ay = a;
    p->ax = ax, p->ay = ay;
    int axes[2] = {ax, ay};
    for (int k = 0; k < 2; k++) {
        p->mid[k] = 0.5 * (lo[axes[k]] + hi[axes[k]]);
        p->half[k] = spread[axes[k]] > 0 ? 0.5 * spread[axes[k]] : 1.0;
    }
    int gy = 1;
    for (int d = 1; d * d <= blocks; d++)
        if (blocks % d == 0) gy = d;
    p->gx = blocks / gy, p->gy = gy;
    p->clo[0] = p->clo[1] = INFINITY;
    p->chi[0] = p->chi[1] = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double u[2];
        mgs_contract(p, xyz + i * 3, u);
        for (int k = 0; k < 2; k++) {
            p->clo[k] = fmin(p->clo[k], u[k]);
            p->chi[k] = fmax(p->chi[k], u[k]);
        }
    }
    for (int k = 0; k < 2; k++)
        if (!(p->chi[k] > p->clo[k])) p->chi[k] = p->clo[k] + 1;
    return PK_OK;
}

void mgs_contract(const mgs_partition *p, const float x[3], double u[2]) {
    u[0] = (x[p->ax] - p->mid[0]) / p->half[0];
    u[1] = (x[p->ay] - p->mid[1]) / p->half[1];
    double m = fmax(fabs(u[0]), fabs(u[1]));
    if (m > 1) {
        double f = (2 - 1 / m) / m;
        u[0] *= f, u[1] *= f;
    }
}

/* Cell coordinates (fractional) of contracted u. */
static void cell_coords(const mgs_partition *p, const double u[2], double c[2]) {
    c[0] = (u[0] - p->clo[0]) / (p->chi[0] - p->clo[0]) * p->gx;
    c[1] = (u[1] - p->clo[1]) / (p->chi[1] - p->clo[1]) * p->gy;
}

int mgs_block_of(const mgs_partition *p, const float x[3]) {
    double u[2], c[2];
    mgs_contract(p, x, u);
    cell_coords(p, u, c);
    int i = (int)floor(c[0]), j = (int)floor(c[1]);
    i = i < 0 ? 0 : i >= p->gx ? p->gx - 1 : i;
    j = j < 0 ? 0 : j >= p->gy ? p->gy - 1 : j;
    return j * p->gx + i;
}

bool mgs_in_block(const mgs_partition *p, int b, double margin, const float x[3]) {
    double u[2], c[2];
    mgs_contract(p, x, u);
    cell_coords(p, u, c);
    int i = b % p->gx, j = b / p->gx;
    /* the outer edges of the outer cells reach to infinity */
    bool okx = (i == 0 || c[0] >= i - margin) && (i == p->gx - 1 || c[0] < i + 1 + margin);
    bool oky = (j == 0 || c[1] >= j - margin) && (j == p->gy - 1 || c[1] < j + 1 + margin);
    return okx && oky;
}

void mgs_assign_camera(const mgs_partition *p, const splat_camera *cam, const float *xyz, int64_t n,
                       double view_share, bool *member) {
    int nb = p->gx * p->gy;
    for (int b = 0; b < nb; b++)
        member[b] = false;
    const float *M = cam->world_to_cam;
    float centre[3];
    for (int i = 0; i < 3; i++)
        centre[i] = -(M[0 * 4 + i] * M[3] + M[1 * 4 + i] * M[7] + M[2 * 4 + i] * M[11]);
    member[mgs_block_of(p, centre)] = true;
    int64_t stride = n > 20000 ? n / 20000 : 1;
    int64_t seen = 0;
    int64_t *count = calloc((size_t)nb, sizeof(int64_t));
    if (!count) return; /* the centre rule alone */
    for (int64_t i = 0; i < n; i += stride) {
        const float *x = xyz + i * 3;
        float z = M[8] * x[0] + M[9] * x[1] + M[10] * x[2] + M[11];
        if (!(z > 0.2f)) continue;
        float u = cam->fx * (M[0] * x[0] + M[1] * x[1] + M[2] * x[2] + M[3]) / z + cam->cx;
        float v = cam->fy * (M[4] * x[0] + M[5] * x[1] + M[6] * x[2] + M[7]) / z + cam->cy;
        if (u < 0 || v < 0 || u >= (float)cam->width || v >= (float)cam->height) continue;
        seen++;
        count[mgs_block_of(p, x)]++;
    }
    for (int b = 0; b < nb; b++)
        if (seen > 0 && (double)count[b] >= view_share * (double)seen) member[b] = true;
    free(count);
}

void mgs_block_weights(const double *psnr, const double *ssim, int n, double sigma, double *w) {
    double pm = -INFINITY, sm = -INFINITY;
    for (int b = 0; b < n; b++)
        pm = fmax(pm, psnr[b]), sm = fmax(sm, ssim[b]);
    for (int b = 0; b < n; b++) {
        double dp = pm - psnr[b], ds = 10 * sm - 10 * ssim[b];
        w[b] = 2 - exp(-(dp * dp + ds * ds) / (2 * sigma * sigma));
    }
}

/* ---- the block-wise source ---- */

typedef struct mgs mgs;

/* A device of this rank (0 .. D-1): device 0 is the trainer's context (its replica is the
 * mgs's own `shared`, with the one optimizer and teacher); every further device has its own
 * context, thread, decoder replica and teacher tensors (copies of device 0's after every step).
 * Each runs its lanes (blocks trained at every step) in lane order. */
typedef struct mgs_dev {
    mgs *m;
    int d;
    pk_ctx *ctx;
    gs_decoder dec;      // d > 0: the student replica (parameters only)
    pk_teacher *teacher; // d > 0: the teacher's tensors (never updated here: copied)
    gs_decoder tdec;     // d > 0: the teacher's tensors as a decoder
    pk_splat_renderer *renderer;
    float *gt, *grad2d; // (3, H, W), (n, 2)
    int32_t *radii;     // (n)
    int64_t cap;
    int *lanes, nlanes; // its lanes, in lane order (device 0: its first is the trainer's)
    pthread_t th;
    bool started;
    int64_t want, done; // step asked for / finished
    pk_status status;
    char error[512];
} mgs_dev;

typedef struct keep_arg {
    const mgs_partition *p;
    int b;
} keep_arg;

struct mgs {
    mgs_options o;
    gs_source_env env;
    gs_scaffold_options sco;
    mgs_partition part;
    int nb;
    gs_scaffold **blk;
    gs_source *bsrc;
    gs_decoder shared;
    pk_optimizer *opt;
    pk_teacher *teacher;
    gs_decoder tdec;
    pk_teacher *scopy; // diagnostic --consistency-grad features: the student's copy, m = 0
    gs_decoder sdec;
    bool shared_decoder, use_teacher, weighting;
    int active, eval_block; // eval_block -1: merged renders
    int64_t cur_it;
    int **cams, *ncams; // training views per block
    int32_t **order;    // per block: shuffled positions into cams[b]
    int64_t *opos;
    int **val, *nval;            // validation views per block
    double *psnr_s, *ssim_s, *w; // smoothed per step of the block's turns (Momentum-GS)
    double *psnr_l, *ssim_l;     // the latest validation of each block
    int64_t evals;               // weight evaluations done
    int64_t *anchors;            // per block, for reports
    keep_arg *keeps;
    float *m_means, *m_scales, *m_quats, *m_logits, *m_sh, *m_grad;
    int64_t m_cap;
    /* checkpoint scratch */
    float *ck_host;
    char (*names)[96];
    int64_t (*shapes)[1];
    int64_t ck_i64[4];
    /* lanes: G blocks train at every step; lane l owns blocks b = l mod G */
    int G;
    int **lshare, *nlshare;     // (G) blocks of each lane, in block order
    pk_rng *lrng;               // (G) lane generators; lane 0 uses the trainer's (env.rng)
    int lane_first, lane_count; // this rank's lanes [first, first + count)
    int *lane_dev;              // (G) device of this rank running the lane; -1: another rank
    int *lane_rank;             // (G)
    int64_t P;                  // decoder parameters
    float *lgrad;               // (G, P) each lane's decoder gradient of the step
    float *acc;                 // (2 P) the reduced gradient; replica pushes
    uint64_t *ck_rng;           // (G) lane generators for checkpoints
    bool dirty;                 // trained since the last gather
    /* devices of this rank */
    int ndev;
    int *dev_of; // (nb) device of this rank a block is trained on (0 for other ranks' blocks)
    mgs_dev *dev;
    pthread_mutex_t mu;
    pthread_cond_t go, fin;
    bool sync_init, quit;
    uint8_t *pack; // gather scratch
    size_t pack_cap;
    dist_stats comm; // communication of the decoder reduction and the gathers
    /* resident training (Vulkan, one device, one process; mgs_dev_begin): every block's
     * anchors on the device (the decoder, its Adam state and teacher are there already) */
    gs_scaffold_dev **bdev; // (nb), NULL: the host-array path
    bool *bdirty;           // (nb) the device copy is newer than the host's
    bool *bsnapped;         // (nb) the block's device snapshot is its current state
    pk_arena *snap_arena;   // the decoder, its Adam state and teacher at the last snapshot
    tensor *snap[64];
    int snap_k;
    int64_t snap_i64[3]; // optimizer steps, teacher updates, evals
    double *snap_d;      // (5 nb) psnr_s, ssim_s, w, psnr_l, ssim_l
    int64_t *snap_opos;  // (nb)
    int32_t *snap_order; // (nb, n_train + 1)
    uint64_t *snap_rng;  // (G) lane generators (lane 0's is the trainer's)
};

static bool keep_fn(void *arg, const float p[3]) {
    const keep_arg *k = arg;
    return mgs_block_of(k->p, p) == k->b;
}

static void workers_stop(mgs *m);
static void dev_free(mgs_dev *w);

static void mgs_destroy(void *self) {
    mgs *m = self;
    if (!m) return;
    workers_stop(m);
    for (int b = 0; b < m->nb; b++) {
        if (m->bsrc && m->bsrc[b].destroy) m->bsrc[b].destroy(m->bsrc[b].self);
        if (m->cams) free(m->cams[b]);
        if (m->order) free(m->order[b]);
        if (m->val) free(m->val[b]);
    }
    free(m->blk), free(m->bsrc), free(m->cams), free(m->ncams), free(m->order), free(m->opos);
    free(m->val), free(m->nval), free(m->psnr_s), free(m->ssim_s), free(m->w), free(m->anchors);
    free(m->psnr_l), free(m->ssim_l);
    free(m->keeps), free(m->m_means), free(m->m_scales), free(m->m_quats), free(m->m_logits);
    free(m->m_sh), free(m->m_grad), free(m->ck_host), free(m->names), free(m->shapes);
    optim_destroy(m->opt);
    teacher_destroy(m->teacher);
    teacher_destroy(m->scopy);
    for (int d = 0; d < m->ndev && m->dev; d++) {
        if (d > 0)
            dev_free(&m->dev[d]);
        else {
            pk_splat_renderer_destroy(m->dev[0].renderer);
            free(m->dev[0].gt), free(m->dev[0].grad2d), free(m->dev[0].radii);
        }
        free(m->dev[d].lanes);
    }
    for (int l = 0; l < m->G && m->lshare; l++)
        free(m->lshare[l]);
    free(m->lshare), free(m->nlshare), free(m->lrng), free(m->lane_dev), free(m->lane_rank);
    free(m->lgrad), free(m->acc), free(m->ck_rng), free(m->pack);
    free(m->dev), free(m->dev_of);
    for (int b = 0; m->bdev && b < m->nb; b++)
        gs_scaffold_dev_destroy(m->bdev[b]);
    pk_arena_destroy(m->snap_arena);
    free(m->bdev), free(m->bdirty), free(m->bsnapped), free(m->snap_d), free(m->snap_opos);
    free(m->snap_order), free(m->snap_rng);
    if (m->sync_init) {
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->go);
        pthread_cond_destroy(&m->fin);
    }
    free(m);
}

/* The block lane l trains at step it: its share's turn, skipping blocks without views
 * (with one lane: (it - 1) / block_steps mod N). */
static int lane_block(const mgs *m, int l, int64_t it) {
    int ns = m->nlshare[l];
    int q = (int)(((it - 1) / m->o.block_steps) % ns);
    for (int k = 0; k < ns && m->ncams[m->lshare[l][q]] == 0; k++)
        q = (q + 1) % ns;
    return m->lshare[l][q];
}

/* Lane l's generator (view order, background, growing): lane 0 the trainer's. */
static pk_rng *lane_rng(mgs *m, int l) { return l == 0 ? m->env.rng : &m->lrng[l]; }

/* Whether this rank trains block b. */
static bool own_block(const mgs *m, int b) { return m->lane_dev[b % m->G] >= 0; }

static void workers_start(mgs *m, int64_t it);

static int mgs_pick_view(void *self, int64_t it, pk_rng *rng) {
    (void)rng; /* the lane's own (the trainer's for lane 0) */
    mgs *m = self;
    m->cur_it = it;
    m->dirty = true;
    /* every lane's block of step it takes its smoothing step (mgs_weight_step) here, in lane
     * order, on this thread and before the devices start (so no device reads a weight while it
     * is written), on every rank alike */
    if (m->weighting && m->evals > 0)
        for (int l = 0; l < m->G; l++)
            mgs_weight_step(m->psnr_s, m->ssim_s, m->psnr_l, m->ssim_l, m->nb, lane_block(m, l, it),
                            m->o.sigma, m->w);
    if (m->ndev > 1) workers_start(m, it); /* the further devices run step it meanwhile */
    int l = m->lane_first;                 /* the trainer's lane: device 0's first */
    int b = lane_block(m, l, it);
    m->active = b;
    if (m->ncams[b] == 0) return -1; /* no block of this lane has views: any view */
    if (m->opos[b] >= m->ncams[b]) {
        pk_rng_shuffle(lane_rng(m, l), m->order[b], m->ncams[b]);
        m->opos[b] = 0;
    }
    return m->cams[b][m->order[b][m->opos[b]++]];
}

static pk_status mgs_produce_tensors(void *self, pk_ctx *c, const splat_camera *cam,
                                     pk_splat_inputs *in, tensor **reg) {
    mgs *m = self;
    gs_source *s = &m->bsrc[m->active];
    /* the diagnostic's copy = the student of this step (the decoder steps after every lane) */
    if (m->scopy) PK_TRY(teacher_update(m->scopy));
    return s->produce_tensors(s->self, c, cam, in, reg);
}

static void mgs_add_stats(void *self, const float *g2d, const int32_t *radii, int W, int H) {
    mgs *m = self;
    if (m->cur_it < m->sco.update_until && m->cur_it > m->sco.stat_from)
        m->bsrc[m->active].add_stats(m->bsrc[m->active].self, g2d, radii, W, H);
}

double mgs_weight_step(double *psnr_s, double *ssim_s, const double *psnr_l, const double *ssim_l,
                       int n, int b, double sigma, double *w) {
    double p0 = psnr_s[b] != 0 ? psnr_s[b] : psnr_l[b];
    double s0 = ssim_s[b] != 0 ? ssim_s[b] : ssim_l[b];
    psnr_s[b] = 0.9 * p0 + 0.1 * psnr_l[b];
    ssim_s[b] = 0.9 * s0 + 0.1 * ssim_l[b];
    mgs_block_weights(psnr_s, ssim_s, n, sigma, w);
    return w[b];
}

/* The active block's weight for this step (smoothed in mgs_pick_view, before any device runs). */
static double mgs_loss_weight(void *self) {
    mgs *m = self;
    return m->weighting ? m->w[m->active] : 1.0;
}

/* ---- lanes on the devices; the decoder reduction ---- */

/* Grows a device's per-step scratch to n Gaussians. */
static pk_status dev_reserve(mgs_dev *w, int64_t n) {
    if (n <= w->cap) return PK_OK;
    int64_t cap = n + n / 2 + 1024;
    float *g = realloc(w->grad2d, sizeof(float) * 2 * (size_t)cap);
    if (g) w->grad2d = g;
    int32_t *r = realloc(w->radii, sizeof(int32_t) * (size_t)cap);
    if (r) w->radii = r;
    if (!g || !r) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    w->cap = cap;
    return PK_OK;
}

/* Moves the decoder gradient of device w (the sum of its backward walks since the last take)
 * into lane l's row of lgrad and zeroes it (every tensor read before any is zeroed: one wait
 * on Vulkan, not one per tensor). */
static pk_status take_lane_grads(mgs *m, mgs_dev *w, int l) {
    tensor *ps[12];
    gs_decoder_params(w->d ? &w->dec : &m->shared, ps);
    float *row = m->lgrad + (size_t)l * (size_t)m->P;
    for (int i = 0; i < 12; i++) {
        PK_TRY(tensor_download(ps[i]->grad, row));
        row += tensor_numel(ps[i]);
    }
    for (int i = 0; i < 12; i++)
        PK_TRY(pk_grad_zero(w->ctx, ps[i]));
    return PK_OK;
}

/* The next training view of block b: its views in an order reshuffled with rng after each pass. */
static int lane_next_view(mgs *m, pk_rng *rng, int b) {
    if (m->opos[b] >= m->ncams[b]) {
        pk_rng_shuffle(rng, m->order[b], m->ncams[b]);
        m->opos[b] = 0;
    }
    return m->cams[b][m->order[b][m->opos[b]++]];
}

/* One training step `it` of lane l on device w: the trainer's step for a decoder source
 * (tasks/gs/gs_train.c train_render and gs_trainer_step) on w's context with the lane's
 * generator: render, weighted loss, backward, statistics, the block's anchor step, its growing;
 * the decoder's gradient goes to the lane's row (the decoder steps once for all lanes). */
static pk_status lane_step(mgs_dev *w, int l, int64_t it) {
    mgs *m = w->m;
    pk_ctx *c = w->ctx;
    pk_rng *rng = lane_rng(m, l);
    int b = lane_block(m, l, it);
    if (m->ncams[b] == 0) return PK_OK; /* no block of this lane has views: it idles */
    int v = lane_next_view(m, rng, b);
    const splat_camera *cam = &m->env.cams[v];
    int64_t H = cam->height, W = cam->width;
    float bg[3];
    bool rnd;
    PK_TRY(gs_trainer_ground_truth_into(m->env.trainer, v, w->gt, bg, &rnd));
    if (rnd)
        for (int k = 0; k < 3; k++)
            bg[k] = (float)pk_rng_uniform(rng);
    PK_TRY(pk_step_begin(c));
    tensor *gt = tensor_new(c->step, PK_F32, 3, (int64_t[]){3, H, W});
    if (!gt || tensor_upload(gt, w->gt) != PK_OK)
        return pk_error(PK_ERR_NOMEM, "Momentum-GS: device %d: ground truth: %s", w->d,
                        polyak_error());
    gs_source *s = &m->bsrc[b];
    pk_splat_inputs in;
    tensor *reg = NULL;
    PK_TRY(s->produce_tensors(s->self, c, cam, &in, &reg));
    int64_t n = in.means->shape[0];
    for (int k = 0; k < 3; k++)
        in.background[k] = bg[k];
    in.means2d_grad = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, 2});
    if (!in.means2d_grad || tensor_fill(in.means2d_grad, 0) != PK_OK)
        return pk_error(PK_ERR_NOMEM, "Momentum-GS: device %d: %s", w->d, polyak_error());
    PK_TRY(dev_reserve(w, n));
    pk_splat_outputs out;
    PK_TRY(pk_splat(c, w->renderer, cam, &in, &out));
    tensor *loss = pk_add(c, pk_scale(c, pk_l1(c, out.rgb, gt), 0.8f),
                          pk_affine(c, pk_ssim(c, out.rgb, gt), -0.2f, 0.2f));
    if (reg) loss = pk_add(c, loss, reg);
    loss = pk_scale(c, loss, (float)(m->weighting ? m->w[b] : 1.0));
    if (!loss)
        return pk_error(PK_ERR_INVALID, "Momentum-GS: device %d: loss: %s", w->d, polyak_error());
    PK_TRY(autograd_backward(c, loss));
    PK_TRY(tensor_download(in.means2d_grad, w->grad2d));
    PK_TRY(tensor_download(out.radii, w->radii));
    if (it < m->sco.update_until && it > m->sco.stat_from)
        s->add_stats(s->self, w->grad2d, w->radii, (int)W, (int)H);
    PK_TRY(s->step(s->self, it)); /* the block's anchors (and its own decoder when independent) */
    if (m->shared_decoder) PK_TRY(take_lane_grads(m, w, l));
    gs_scaffold_report rep;
    PK_TRY(gs_scaffold_adjust(m->blk[b], it, rng, &rep));
    m->anchors[b] = gs_scaffold_anchors(m->blk[b]);
    return PK_OK;
}

/* Device w's lanes of step it (device 0: all but its first, which the trainer ran). */
static pk_status dev_lanes(mgs_dev *w, int64_t it) {
    for (int k = w->d == 0 ? 1 : 0; k < w->nlanes; k++)
        PK_TRY(lane_step(w, w->lanes[k], it));
    return PK_OK;
}

static void *dev_main(void *arg) {
    mgs_dev *w = arg;
    mgs *m = w->m;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (w->want <= w->done && !m->quit)
            pthread_cond_wait(&m->go, &m->mu);
        if (m->quit) break;
        int64_t it = w->want;
        pthread_mutex_unlock(&m->mu);
        pk_status st = dev_lanes(w, it);
        pthread_mutex_lock(&m->mu);
        if (st != PK_OK && w->status == PK_OK) {
            w->status = st;
            snprintf(w->error, sizeof w->error, "%s", polyak_error());
        }
        w->done = it;
        pthread_cond_broadcast(&m->fin);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* Asks every further device for step it (threads start on first use). */
static void workers_start(mgs *m, int64_t it) {
    pthread_mutex_lock(&m->mu);
    for (int d = 1; d < m->ndev; d++) {
        mgs_dev *w = &m->dev[d];
        if (!w->started) {
            w->done = it - 1;
            if (pthread_create(&w->th, NULL, dev_main, w) != 0) {
                w->status = PK_ERR_INVALID;
                snprintf(w->error, sizeof w->error, "cannot start the thread of device %d", d);
                w->done = it;
                continue;
            }
            w->started = true;
        }
        w->want = it;
    }
    pthread_cond_broadcast(&m->go);
    pthread_mutex_unlock(&m->mu);
}

/* Waits until every further device has finished the step it was given; the first error. */
static pk_status workers_wait(mgs *m) {
    if (m->ndev < 2 || !m->sync_init) return PK_OK;
    pk_status st = PK_OK;
    pthread_mutex_lock(&m->mu);
    for (int d = 1; d < m->ndev; d++) {
        mgs_dev *w = &m->dev[d];
        while (w->started && w->done < w->want)
            pthread_cond_wait(&m->fin, &m->mu);
        if (w->status != PK_OK && st == PK_OK) {
            st = pk_error(w->status, "Momentum-GS: device %d (%s): %s", d,
                          m->o.devices ? m->o.devices : "?", w->error);
            w->status = PK_OK;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

static void workers_stop(mgs *m) {
    if (m->ndev < 2 || !m->sync_init) return;
    (void)workers_wait(m);
    pthread_mutex_lock(&m->mu);
    m->quit = true;
    pthread_cond_broadcast(&m->go);
    pthread_mutex_unlock(&m->mu);
    for (int d = 1; d < m->ndev; d++)
        if (m->dev[d].started) {
            pthread_join(m->dev[d].th, NULL);
            m->dev[d].started = false;
        }
    m->quit = false;
}

static void dev_free(mgs_dev *w) {
    teacher_destroy(w->teacher);
    pk_splat_renderer_destroy(w->renderer);
    free(w->gt), free(w->grad2d), free(w->radii);
    pk_ctx_destroy(w->ctx);
}

/* Copies device 0's decoder and teacher into every further device's replica: one download,
 * an upload per device (the replicas are bit-identical to device 0's after every step). */
static pk_status push_replicas(mgs *m) {
    if (m->ndev < 2 || !m->shared_decoder) return PK_OK;
    tensor *src[24], *dst[24];
    gs_decoder_params(&m->shared, src);
    int n = 12;
    if (m->use_teacher)
        for (int i = 0; i < 12; i++)
            src[n++] = teacher_tensor(m->teacher, i);
    float *h = m->acc + m->P; /* the second half of the scratch */
    for (int i = 0; i < n; i++) {
        PK_TRY(tensor_download(src[i], h));
        for (int d = 1; d < m->ndev; d++) {
            gs_decoder_params(&m->dev[d].dec, dst);
            tensor *t = i < 12 ? dst[i] : teacher_tensor(m->dev[d].teacher, i - 12);
            PK_TRY(tensor_upload(t, h));
        }
    }
    return PK_OK;
}

/* The shared-decoder rule: the decoder steps once per step on the weighted mean of its
 * gradients over the G lanes, (1/G) sum_l w_b(l) g_b(l) (each lane's loss already carries its
 * block's weight). The rows of the other ranks' lanes are gathered (every rank then holds all
 * G rows, bit for bit) and summed in lane order on the host, so the result does not depend on
 * how lanes are spread over devices and ranks; then device 0's Adam steps, the teacher
 * follows (m 0.9), and the further devices get copies. */
static pk_status reduce_and_step(mgs *m, int64_t it) {
    int64_t P = m->P;
    if (dist_size() > 1) {
        dist_stats c0 = dist_stats_get();
        PK_TRY(dist_gather_rows_f32(m->lgrad, m->G, P));
        dist_stats c1 = dist_stats_get();
        m->comm.seconds += c1.seconds - c0.seconds, m->comm.bytes += c1.bytes - c0.bytes;
        m->comm.calls += c1.calls - c0.calls;
    }
    float *acc = m->acc;
    memcpy(acc, m->lgrad, sizeof(float) * (size_t)P);
    for (int l = 1; l < m->G; l++) {
        const float *row = m->lgrad + (size_t)l * (size_t)P;
        for (int64_t k = 0; k < P; k++)
            acc[k] += row[k];
    }
    float inv = 1.0f / (float)m->G;
    for (int64_t k = 0; k < P; k++)
        acc[k] *= inv;
    tensor *ps[12];
    gs_decoder_params(&m->shared, ps);
    const float *at = acc;
    for (int i = 0; i < 12; i++) {
        PK_TRY(tensor_upload(ps[i]->grad, at));
        at += tensor_numel(ps[i]);
    }
    PK_TRY(gs_decoder_step(m->opt, m->sco.max_steps, it));
    if (m->use_teacher) PK_TRY(teacher_update(m->teacher));
    return push_replicas(m);
}

static pk_status mgs_step(void *self, int64_t it) {
    mgs *m = self;
    gs_source *s = &m->bsrc[m->active];
    PK_TRY(s->step(s->self, it)); /* the trainer's lane: its block's anchors */
    if (m->shared_decoder && m->G == 1) {
        /* one lane in the world: its gradient is the mean; no round trip through the host */
        PK_TRY(gs_decoder_step(m->opt, m->sco.max_steps, it));
        if (m->use_teacher) PK_TRY(teacher_update(m->teacher));
        return PK_OK;
    }
    if (m->shared_decoder) PK_TRY(take_lane_grads(m, &m->dev[0], m->lane_first));
    pk_status st = dev_lanes(&m->dev[0], it); /* device 0's further lanes */
    pk_status wst = workers_wait(m);          /* every device has finished step it */
    PK_TRY(st);
    PK_TRY(wst);
    return m->shared_decoder ? reduce_and_step(m, it) : PK_OK;
}

int mgs_validation_views(const int *train, int ntrain, const int *held, int nheld, int cap,
                         int *out) {
    int n = 0;
    for (int i = 5; i < ntrain && n < cap; i += 8)
        out[n++] = train[i];
    for (int i = 0; ntrain < 6 && i < nheld && n < cap; i++)
        out[n++] = held[i];
    if (n == 0) /* no held-out view either: its first training views */
        for (int i = 0; i < ntrain && n < cap; i++)
            out[n++] = train[i];
    return n;
}

int64_t mgs_schedule_steps(int64_t iters) { return iters > 1 ? iters / 2 : 1; }

/* Mean PSNR / SSIM of block b's validation views (mgs_validation_views) rendered from its own
 * anchors. */
static pk_status block_metrics(mgs *m, int b, double *psnr, double *ssim) {
    *psnr = *ssim = 0;
    int views[64], cap = m->o.val_views < 64 ? m->o.val_views : 64;
    int n = mgs_validation_views(m->cams[b], m->ncams[b], m->val[b], m->nval[b], cap, views);
    m->eval_block = b;
    pk_status st = PK_OK;
    for (int i = 0; i < n && st == PK_OK; i++) {
        double p, s;
        st = gs_trainer_view_metrics(m->env.trainer, views[i], &p, &s);
        *psnr += p / n, *ssim += s / n;
    }
    m->eval_block = -1;
    return st;
}

static pk_status adjust_resident(mgs *m, int64_t it);

static pk_status mgs_after_step(void *self, int64_t it) {
    mgs *m = self;
    gs_scaffold_report rep;
    PK_TRY(workers_wait(m)); /* (independent blocks with one lane: nothing to wait for) */
    if (m->bdev)
        PK_TRY(adjust_resident(m, it)); /* every lane's block (resident: deferred to here) */
    else
        PK_TRY(gs_scaffold_adjust(m->blk[m->active], it, lane_rng(m, m->lane_first), &rep));
    m->anchors[m->active] = gs_scaffold_anchors(m->blk[m->active]);
    if (m->weighting && it % m->o.weight_interval == 0) {
        /* each rank validates the blocks it trains; the sums (zeros elsewhere) give every rank
         * every block's values */
        for (int b = 0; b < m->nb; b++) {
            m->psnr_l[b] = m->ssim_l[b] = 0;
            if (own_block(m, b)) PK_TRY(block_metrics(m, b, &m->psnr_l[b], &m->ssim_l[b]));
        }
        PK_TRY(dist_sum_f64(m->psnr_l, m->nb));
        PK_TRY(dist_sum_f64(m->ssim_l, m->nb));
        m->evals++;
    }
    return PK_OK;
}

static int shared_tensors(mgs *m, tensor **all, int max);

/* ---- resident training on Vulkan (one device, one process) ----
 * Every block's anchors live on the device in its own gs_scaffold_dev for the whole run (no
 * swapping: a block's turn costs nothing; device memory holds every block). The trainer's
 * lane goes through the trainer's resident step (gs_train.c: dev_inputs, the loss into its
 * device ring, dev_add_stats, dev_step); device 0's further lanes render on the trainer's
 * context and rasterizer state in dev_step, their backward walks adding into the decoder's
 * gradient, which is scaled by 1/G on the device before the one Adam step (the host path's
 * (1/G) sum_l w_b(l) g_b(l), summed in lane order); the teacher follows on the device. Nothing
 * is read back or uploaded in a step but an adjust_anchor step (the adjusted blocks' state
 * down, the new anchors up) and a block-weight validation step (the blocks that trained since
 * the last download come back for the validation renders, which run on the host-array path). */

static pk_status mgs_dev_begin(void *self, pk_ctx *c, bool *on) {
    mgs *m = self;
    *on = false;
    if (m->ndev > 1 || dist_size() > 1 || c != m->env.ctx) return PK_OK; /* the host path */
    if (m->o.cons_features || m->o.cons_terms) return PK_OK; /* the diagnostics: host path only */
    size_t nb = (size_t)m->nb, nt = (size_t)m->env.n_train + 1;
    m->bdev = calloc(nb, sizeof *m->bdev);
    m->bdirty = calloc(nb, sizeof(bool));
    m->bsnapped = calloc(nb, sizeof(bool));
    m->snap_d = calloc(5 * nb, sizeof(double));
    m->snap_opos = calloc(nb, sizeof(int64_t));
    m->snap_order = calloc(nb * nt, sizeof(int32_t));
    m->snap_rng = calloc((size_t)m->G, sizeof(uint64_t));
    if (!m->bdev || !m->bdirty || !m->bsnapped || !m->snap_d || !m->snap_opos || !m->snap_order ||
        !m->snap_rng)
        return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    for (int b = 0; b < m->nb; b++)
        PK_TRY(gs_scaffold_dev_create(m->blk[b], c, &m->bdev[b]));
    tensor *all[64];
    int na = shared_tensors(m, all, 64);
    size_t bytes = 4096;
    for (int i = 0; i < na; i++)
        bytes += sizeof(float) * (size_t)tensor_numel(all[i]) + 4096;
    PK_TRY(pk_arena_create(c->dev, "mgs-snapshot", bytes, &m->snap_arena));
    for (int i = 0; i < na; i++)
        if (!(m->snap[i] = tensor_new_like(m->snap_arena, all[i])))
            return pk_error(PK_ERR_NOMEM, "Momentum-GS: device memory: %s", polyak_error());
    m->snap_k = na;
    *on = true;
    return PK_OK;
}

static pk_status mgs_dev_inputs(void *self, pk_ctx *c, const splat_camera *cam, pk_splat_inputs *in,
                                tensor **reg) {
    mgs *m = self;
    (void)c; /* the trainer's: the one the blocks live on */
    return gs_scaffold_dev_inputs(m->bdev[m->active], cam, in, reg);
}

/* Whether step it adds growing statistics (mgs_add_stats's window). */
static bool stats_due(const mgs *m, int64_t it) {
    return it < m->sco.update_until && it > m->sco.stat_from;
}

static pk_status mgs_dev_add_stats(void *self, const tensor *g2d, const tensor *radii, int W,
                                   int H) {
    mgs *m = self;
    if (!stats_due(m, m->cur_it)) return PK_OK;
    return gs_scaffold_dev_add_stats(m->bdev[m->active], g2d, radii, W, H);
}

/* Device copy src into dst (same shape): -0 + src keeps every bit. */
static pk_status dev_copy(pk_ctx *c, tensor *dst, const tensor *src) {
    PK_TRY(pk_fill(c, dst, -0.0f));
    return pk_accumulate(c, dst, src);
}

/* One block-step of lane l (not the trainer's) on the trainer's device: lane_step's work with
 * the block resident, the ground truth the trainer uploaded, the trainer's rasterizer state
 * (its pair count is checked at the trainer's read-backs) and no wait. */
static pk_status lane_step_dev(mgs *m, int l, int64_t it) {
    pk_ctx *c = m->env.ctx;
    pk_rng *rng = lane_rng(m, l);
    int b = lane_block(m, l, it);
    if (m->ncams[b] == 0) return PK_OK; /* no block of this lane has views: it idles */
    int v = lane_next_view(m, rng, b);
    const splat_camera *cam = &m->env.cams[v];
    float bg[3];
    bool rnd;
    PK_TRY(gs_trainer_ground_truth_into(m->env.trainer, v, NULL, bg, &rnd));
    if (rnd)
        for (int k = 0; k < 3; k++)
            bg[k] = (float)pk_rng_uniform(rng);
    tensor *gt = gs_trainer_ground_truth_tensor(m->env.trainer, v);
    if (!gt) return pk_error(PK_ERR_INVALID, "Momentum-GS: view %d has no device ground truth", v);
    PK_TRY(pk_step_reset(c)); /* no wait: the recording orders the step arena's reuse */
    pk_splat_inputs in;
    tensor *reg = NULL;
    PK_TRY(gs_scaffold_dev_inputs(m->bdev[b], cam, &in, &reg));
    int64_t n = in.means->shape[0];
    for (int k = 0; k < 3; k++)
        in.background[k] = bg[k];
    in.means2d_grad = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, 2});
    if (!in.means2d_grad || tensor_fill(in.means2d_grad, 0) != PK_OK)
        return pk_error(PK_ERR_NOMEM, "Momentum-GS: lane %d: %s", l, polyak_error());
    pk_splat_outputs out;
    PK_TRY(pk_splat(c, gs_trainer_renderer(m->env.trainer), cam, &in, &out));
    tensor *loss = pk_add(c, pk_scale(c, pk_l1(c, out.rgb, gt), 0.8f),
                          pk_affine(c, pk_ssim(c, out.rgb, gt), -0.2f, 0.2f));
    if (reg) loss = pk_add(c, loss, reg);
    loss = pk_scale(c, loss, (float)(m->weighting ? m->w[b] : 1.0));
    if (!loss) return pk_error(PK_ERR_INVALID, "Momentum-GS: lane %d: loss: %s", l, polyak_error());
    PK_TRY(autograd_backward(c, loss)); /* the decoder's gradient adds to the other lanes' */
    if (stats_due(m, it))
        PK_TRY(gs_scaffold_dev_add_stats(m->bdev[b], in.means2d_grad, out.radii, cam->width,
                                         cam->height));
    PK_TRY(gs_scaffold_dev_step(m->bdev[b], it)); /* the block's anchors (own decoder too) */
    m->bdirty[b] = true, m->bsnapped[b] = false;
    return PK_OK; /* its adjust_anchor: adjust_resident, after the decoder's step */
}

/* Resident adjust_anchor at step it for the block of every lane on the device that trained
 * (the host path's adjust in lane_step and mgs_after_step; each block draws from its lane's
 * generator and nothing else reads those blocks, so the order is the host path's in effect):
 * the due blocks' device state comes down first (one wait for all), the host adjusts them,
 * their new anchors go up. */
static pk_status adjust_resident(mgs *m, int64_t it) {
    int due[256], nd = 0; /* lanes (<= blocks <= 256) */
    for (int k = 0; k < m->dev[0].nlanes; k++) {
        int l = m->dev[0].lanes[k];
        int b = k == 0 ? m->active : lane_block(m, l, it);
        if (k > 0 && m->ncams[b] == 0) continue; /* the lane idled (lane_step's rule) */
        if (gs_scaffold_adjust_due(m->blk[b], it)) due[nd++] = k;
    }
    for (int i = 0; i < nd; i++) {
        int b = due[i] == 0 ? m->active : lane_block(m, m->dev[0].lanes[due[i]], it);
        PK_TRY(gs_scaffold_dev_download(m->bdev[b]));
        m->bdirty[b] = false;
    }
    for (int i = 0; i < nd; i++) {
        int l = m->dev[0].lanes[due[i]];
        int b = due[i] == 0 ? m->active : lane_block(m, l, it);
        gs_scaffold_report rep;
        PK_TRY(gs_scaffold_adjust(m->blk[b], it, lane_rng(m, l), &rep));
        PK_TRY(gs_scaffold_dev_upload(m->bdev[b]));
        m->bsnapped[b] = false;
        m->anchors[b] = gs_scaffold_anchors(m->blk[b]);
    }
    return PK_OK;
}

/* The resident step: the trainer's lane's anchors, device 0's further lanes, then the decoder
 * once on the mean of the lanes' gradients (accumulated in place, scaled by 1/G) and the
 * teacher (the host path's mgs_step and reduce_and_step without the host rows). */
static pk_status mgs_dev_step(void *self, int64_t it) {
    mgs *m = self;
    int b = m->active;
    PK_TRY(gs_scaffold_dev_step(m->bdev[b], it));
    m->bdirty[b] = true, m->bsnapped[b] = false;
    for (int k = 1; k < m->dev[0].nlanes; k++)
        PK_TRY(lane_step_dev(m, m->dev[0].lanes[k], it));
    if (!m->shared_decoder) return PK_OK;
    if (m->G > 1) { /* grad = (1/G) grad: the host path's acc *= 1/G */
        pk_ctx *c = m->env.ctx;
        tensor *ps[12];
        gs_decoder_params(&m->shared, ps);
        for (int i = 0; i < 12; i++) {
            tensor *g = pk_scale(c, ps[i]->grad, 1.0f / (float)m->G);
            if (!g) return pk_error(PK_ERR_INVALID, "Momentum-GS: %s", polyak_error());
            PK_TRY(dev_copy(c, ps[i]->grad, g));
        }
    }
    /* the blocks' schedule length (the run's --iters unless Momentum-GS's own is set) */
    PK_TRY(gs_decoder_step(m->opt, m->sco.max_steps, it));
    if (m->use_teacher) PK_TRY(teacher_update(m->teacher));
    return PK_OK;
}

/* Steps that need the host copy: an adjust_anchor of any lane's block, a weight validation. */
static bool mgs_dev_host_due(void *self, int64_t it) {
    mgs *m = self;
    for (int l = 0; l < m->G; l++)
        if (gs_scaffold_adjust_due(m->blk[lane_block(m, l, it)], it)) return true;
    return m->weighting && it % m->o.weight_interval == 0;
}

/* The host copy of every block that trained since its last download. */
static pk_status mgs_dev_download(void *self) {
    mgs *m = self;
    for (int b = 0; b < m->nb; b++)
        if (m->bdirty[b]) {
            PK_TRY(gs_scaffold_dev_download(m->bdev[b]));
            m->bdirty[b] = false;
        }
    return PK_OK;
}

static pk_status mgs_dev_snapshot(void *self) {
    mgs *m = self;
    for (int b = 0; b < m->nb; b++)
        if (!m->bsnapped[b]) {
            PK_TRY(gs_scaffold_dev_snapshot(m->bdev[b]));
            m->bsnapped[b] = true;
        }
    tensor *all[64];
    int na = shared_tensors(m, all, 64);
    for (int i = 0; i < na && i < m->snap_k; i++)
        PK_TRY(dev_copy(m->env.ctx, m->snap[i], all[i]));
    m->snap_i64[0] = m->shared_decoder ? optim_steps(m->opt) : 0;
    m->snap_i64[1] = m->use_teacher ? teacher_updates(m->teacher) : 0;
    m->snap_i64[2] = m->evals;
    size_t nb = (size_t)m->nb, nt = (size_t)m->env.n_train + 1;
    const double *dd[5] = {m->psnr_s, m->ssim_s, m->w, m->psnr_l, m->ssim_l};
    for (int i = 0; i < 5; i++)
        memcpy(m->snap_d + i * nb, dd[i], sizeof(double) * nb);
    memcpy(m->snap_opos, m->opos, sizeof(int64_t) * nb);
    for (size_t b = 0; b < nb; b++)
        memcpy(m->snap_order + b * nt, m->order[b], sizeof(int32_t) * (size_t)m->ncams[b]);
    for (int l = 1; l < m->G; l++)
        m->snap_rng[l] = m->lrng[l].state;
    return PK_OK;
}

static pk_status mgs_dev_rewind(void *self) {
    mgs *m = self;
    for (int b = 0; b < m->nb; b++) {
        PK_TRY(gs_scaffold_dev_rewind(m->bdev[b]));
        m->bdirty[b] = true, m->bsnapped[b] = true;
    }
    tensor *all[64];
    int na = shared_tensors(m, all, 64);
    for (int i = 0; i < na && i < m->snap_k; i++)
        PK_TRY(dev_copy(m->env.ctx, all[i], m->snap[i]));
    if (m->shared_decoder) {
        optim_set_steps(m->opt, m->snap_i64[0]);
        PK_TRY(optim_zero_grad(m->opt)); /* the gradients of the renders being undone */
    }
    if (m->use_teacher) teacher_set_updates(m->teacher, m->snap_i64[1]);
    m->evals = m->snap_i64[2];
    size_t nb = (size_t)m->nb, nt = (size_t)m->env.n_train + 1;
    double *dd[5] = {m->psnr_s, m->ssim_s, m->w, m->psnr_l, m->ssim_l};
    for (int i = 0; i < 5; i++)
        memcpy(dd[i], m->snap_d + i * nb, sizeof(double) * nb);
    memcpy(m->opos, m->snap_opos, sizeof(int64_t) * nb);
    for (size_t b = 0; b < nb; b++)
        memcpy(m->order[b], m->snap_order + b * nt, sizeof(int32_t) * (size_t)m->ncams[b]);
    for (int l = 1; l < m->G; l++)
        m->lrng[l].state = m->snap_rng[l];
    return PK_OK;
}

/* ---- under mpirun: every block's state from the rank that trains it ---- */

/* Appends n bytes to the pack scratch at *at. */
static pk_status pack_put(mgs *m, size_t *at, const void *p, size_t n) {
    if (*at + n > m->pack_cap) {
        size_t cap = (*at + n) * 2 + 4096;
        uint8_t *q = realloc(m->pack, cap);
        if (!q) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory packing a block");
        m->pack = q, m->pack_cap = cap;
    }
    memcpy(m->pack + *at, p, n);
    *at += n;
    return PK_OK;
}

/* Packs block b's checkpoint table, view order and position: per tensor its name (with the
 * NUL), dtype, rank, shape and bytes. */
static pk_status pack_block(mgs *m, int b, size_t *len) {
    enum { MAXT = 96 };
    st_write_tensor ts[MAXT];
    int n = 0;
    PK_TRY(m->bsrc[b].checkpoint_tensors(m->bsrc[b].self, ts, MAXT - 2, &n));
    char on[32], pn[32];
    snprintf(on, sizeof on, "mgs.order%d", b);
    snprintf(pn, sizeof pn, "mgs.opos%d", b);
    int64_t oshape[1] = {m->ncams[b]}, pshape[1] = {1};
    ts[n++] = (st_write_tensor){on, ST_I32, 1, oshape, m->order[b]};
    ts[n++] = (st_write_tensor){pn, ST_I64, 1, pshape, &m->opos[b]};
    size_t at = 0;
    int32_t cnt = n;
    PK_TRY(pack_put(m, &at, &cnt, sizeof cnt));
    for (int i = 0; i < n; i++) {
        int32_t hdr[3] = {(int32_t)strlen(ts[i].name) + 1, (int32_t)ts[i].dtype, ts[i].ndim};
        int64_t ne = 1;
        for (int k = 0; k < ts[i].ndim; k++)
            ne *= ts[i].shape[k];
        uint64_t bytes = (uint64_t)ne * st_dtype_size(ts[i].dtype);
        PK_TRY(pack_put(m, &at, hdr, sizeof hdr));
        PK_TRY(pack_put(m, &at, ts[i].name, (size_t)hdr[0]));
        PK_TRY(pack_put(m, &at, ts[i].shape, sizeof(int64_t) * (size_t)ts[i].ndim));
        PK_TRY(pack_put(m, &at, &bytes, sizeof bytes));
        PK_TRY(pack_put(m, &at, ts[i].data, (size_t)bytes));
    }
    *len = at;
    return PK_OK;
}

/* Restores block b from a pack of pack_block (len bytes in m->pack). */
static pk_status unpack_block(mgs *m, int b, size_t len) {
    const uint8_t *p = m->pack, *end = m->pack + len;
    int32_t cnt;
    if (len < sizeof cnt) return pk_error(PK_ERR_FORMAT, "Momentum-GS: block %d: empty pack", b);
    memcpy(&cnt, p, sizeof cnt);
    p += sizeof cnt;
    st_tensor *ts = calloc((size_t)cnt + 1, sizeof *ts);
    if (!ts) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    pk_status st = PK_OK;
    for (int i = 0; i < cnt && st == PK_OK; i++) {
        int32_t hdr[3];
        uint64_t bytes;
        if (p + sizeof hdr > end) break;
        memcpy(hdr, p, sizeof hdr);
        p += sizeof hdr;
        if (hdr[2] < 0 || hdr[2] > ST_MAX_DIMS || hdr[0] < 1 || p + hdr[0] + 8 * hdr[2] + 8 > end) {
            st = pk_error(PK_ERR_FORMAT, "Momentum-GS: block %d: bad pack", b);
            break;
        }
        ts[i].name = (char *)p;
        p += hdr[0];
        ts[i].dtype = (st_dtype)hdr[1];
        ts[i].ndim = hdr[2];
        memcpy(ts[i].shape, p, 8 * (size_t)hdr[2]);
        p += 8 * hdr[2];
        memcpy(&bytes, p, sizeof bytes);
        p += sizeof bytes;
        if (p + bytes > end) {
            st = pk_error(PK_ERR_FORMAT, "Momentum-GS: block %d: truncated pack", b);
            break;
        }
        ts[i].nbytes = (size_t)bytes;
        ts[i].data = p;
        p += bytes;
    }
    ckpt_file ck = {.st = {.n = cnt, .tensors = ts}};
    if (st == PK_OK) st = m->bsrc[b].restore(m->bsrc[b].self, &ck);
    char on[32], pn[32];
    snprintf(on, sizeof on, "mgs.order%d", b);
    snprintf(pn, sizeof pn, "mgs.opos%d", b);
    const st_tensor *o = st == PK_OK ? safetensors_find(&ck.st, on) : NULL;
    const st_tensor *q = st == PK_OK ? safetensors_find(&ck.st, pn) : NULL;
    if (st == PK_OK && (!o || o->nbytes != sizeof(int32_t) * (size_t)m->ncams[b] || !q ||
                        q->nbytes != sizeof(int64_t)))
        st = pk_error(PK_ERR_FORMAT, "Momentum-GS: block %d: pack without its view order", b);
    if (st == PK_OK) {
        memcpy(m->order[b], o->data, o->nbytes);
        memcpy(&m->opos[b], q->data, sizeof(int64_t));
        m->anchors[b] = gs_scaffold_anchors(m->blk[b]);
    }
    free(ts);
    return st;
}

/* gs_source.gather: every block's state and every lane's generator from the rank that trains
 * it, so every rank holds the whole model (for the merged renders of an evaluation) and rank 0
 * can save it. Nothing to do in a world of one or when nothing trained since the last one. */
static pk_status mgs_gather(void *self) {
    mgs *m = self;
    if (dist_size() < 2 || !m->dirty) return PK_OK;
    dist_stats c0 = dist_stats_get();
    for (int b = 0; b < m->nb; b++) {
        int owner = m->lane_rank[b % m->G];
        int64_t len = 0;
        size_t sl = 0;
        if (dist_rank() == owner) {
            PK_TRY(pack_block(m, b, &sl));
            len = (int64_t)sl;
        }
        PK_TRY(dist_bcast(&len, sizeof len, owner));
        if (dist_rank() != owner && (size_t)len > m->pack_cap) {
            uint8_t *q = realloc(m->pack, (size_t)len);
            if (!q) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
            m->pack = q, m->pack_cap = (size_t)len;
        }
        PK_TRY(dist_bcast(m->pack, (size_t)len, owner));
        if (dist_rank() != owner) PK_TRY(unpack_block(m, b, (size_t)len));
    }
    for (int l = 0; l < m->G; l++) /* lane 0's is the trainer's, on rank 0 */
        m->ck_rng[l] = m->lane_dev[l] >= 0 ? lane_rng(m, l)->state : 0;
    PK_TRY(dist_sum_i64((int64_t *)m->ck_rng, m->G));
    for (int l = 1; l < m->G; l++)
        if (m->lane_dev[l] < 0) m->lrng[l].state = m->ck_rng[l];
    /* the decoder, its Adam state and the teacher are the same bits on every rank (each runs
     * the same update on the same numbers): checked here, where a rank's drift would be saved */
    tensor *all[64];
    int na = shared_tensors(m, all, 64);
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the bytes */
    for (int i = 0; i < na; i++) {
        size_t ne = (size_t)tensor_numel(all[i]);
        if (ne > (size_t)(2 * m->P)) continue; /* (larger than the decoder: none is) */
        PK_TRY(tensor_download(all[i], m->acc));
        const uint8_t *p = (const uint8_t *)m->acc;
        for (size_t k = 0; k < 4 * ne; k++)
            h = (h ^ p[k]) * 1099511628211ull;
    }
    PK_TRY(dist_check_same(h, "the Momentum-GS decoder, its Adam state and teacher"));
    dist_stats c1 = dist_stats_get();
    m->comm.seconds += c1.seconds - c0.seconds, m->comm.bytes += c1.bytes - c0.bytes;
    m->comm.calls += c1.calls - c0.calls;
    m->dirty = false;
    return PK_OK;
}

/* Grows the merged host arrays to hold n Gaussians. */
static pk_status merged_reserve(mgs *m, int64_t n) {
    if (n <= m->m_cap) return PK_OK;
    int64_t cap = n + n / 2 + 1024;
    float **arr[6] = {&m->m_means, &m->m_scales, &m->m_quats, &m->m_logits, &m->m_sh, &m->m_grad};
    int w[6] = {3, 3, 4, 1, 3, 4};
    for (int i = 0; i < 6; i++) {
        float *x = realloc(*arr[i], sizeof(float) * (size_t)w[i] * (size_t)cap);
        if (!x) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
        *arr[i] = x;
    }
    m->m_cap = cap;
    return PK_OK;
}

static pk_status mgs_produce(void *self, const splat_camera *cam, int sh_degree, gs_arrays *out,
                             gs_array_grads *gr) {
    mgs *m = self;
    if (m->eval_block >= 0) {
        gs_source *s = &m->bsrc[m->eval_block];
        return s->produce(s->self, cam, sh_degree, out, gr);
    }
    /* the merged model: every block's anchors inside its own cell, its own decoder */
    int64_t n = 0;
    for (int b = 0; b < m->nb; b++) {
        gs_scaffold_set_filter(m->blk[b], keep_fn, &m->keeps[b]);
        gs_arrays a;
        gs_array_grads g;
        pk_status st = m->bsrc[b].produce(m->bsrc[b].self, cam, sh_degree, &a, &g);
        gs_scaffold_set_filter(m->blk[b], NULL, NULL);
        if (st != PK_OK) {
            /* a block with no Gaussian in this view contributes nothing */
            if (strstr(polyak_error(), "no neural Gaussian")) continue;
            return st;
        }
        PK_TRY(merged_reserve(m, n + a.n));
        memcpy(m->m_means + n * 3, a.means, sizeof(float) * 3 * (size_t)a.n);
        memcpy(m->m_scales + n * 3, a.log_scales, sizeof(float) * 3 * (size_t)a.n);
        memcpy(m->m_quats + n * 4, a.quats, sizeof(float) * 4 * (size_t)a.n);
        memcpy(m->m_logits + n, a.opacity_logits, sizeof(float) * (size_t)a.n);
        memcpy(m->m_sh + n * 3, a.sh, sizeof(float) * 3 * (size_t)a.n);
        n += a.n;
    }
    PK_TRY(merged_reserve(m, n + 1));
    *out = (gs_arrays){.n = (int)n,
                       .means = m->m_means,
                       .log_scales = m->m_scales,
                       .quats = m->m_quats,
                       .opacity_logits = m->m_logits,
                       .sh = m->m_sh,
                       .sh_degree = 0};
    *gr = (gs_array_grads){.means = m->m_grad,
                           .log_scales = m->m_grad,
                           .quats = m->m_grad,
                           .opacity_logits = m->m_grad,
                           .sh = m->m_grad,
                           .means2d = m->m_grad};
    return PK_OK;
}

/* Neural Gaussians of the merged model (anchors in their own cells x k). */
static int64_t mgs_count(const void *self) {
    const mgs *m = self;
    int64_t c = 0;
    for (int b = 0; b < m->nb; b++) {
        float *an;
        gs_scaffold_arrays((gs_scaffold *)m->blk[b], &an, NULL, NULL, NULL);
        int64_t n = gs_scaffold_anchors(m->blk[b]);
        for (int64_t i = 0; i < n; i++)
            c += mgs_block_of(&m->part, an + i * 3) == b;
    }
    return c * GS_SCAFFOLD_K;
}

static pk_status mgs_export(const void *self, pk_gaussians *g) {
    const mgs *m = self;
    pk_gaussians parts[256];
    size_t total = 0;
    pk_status st = PK_OK;
    int done = 0;
    for (int b = 0; b < m->nb && st == PK_OK; b++, done++) {
        gs_scaffold_set_filter(m->blk[b], keep_fn, &m->keeps[b]);
        st = m->bsrc[b].export_gaussians(m->bsrc[b].self, &parts[b]);
        gs_scaffold_set_filter(m->blk[b], NULL, NULL);
        if (st == PK_OK)
            total += parts[b].n;
        else
            done--;
    }
    if (st == PK_OK) st = gaussians_create(g, total, 0);
    size_t at = 0;
    for (int b = 0; b < done; b++) {
        if (st == PK_OK) {
            size_t k = parts[b].n;
            memcpy(g->xyz + at * 3, parts[b].xyz, sizeof(float) * 3 * k);
            memcpy(g->f_dc + at * 3, parts[b].f_dc, sizeof(float) * 3 * k);
            memcpy(g->opacity + at, parts[b].opacity, sizeof(float) * k);
            memcpy(g->scale + at * 3, parts[b].scale, sizeof(float) * 3 * k);
            memcpy(g->rot + at * 4, parts[b].rot, sizeof(float) * 4 * k);
            at += k;
        }
        gaussians_free(&parts[b]);
    }
    return st;
}

/* The merged model baked: every block's anchors inside its own cell, with its own decoder. */
static pk_status mgs_bake(void *self, const splat_camera *cams, const int *views, int n,
                          int sh_degree, pk_gaussians *g) {
    mgs *m = self;
    memset(g, 0, sizeof *g);
    pk_status st = PK_OK;
    for (int b = 0; b < m->nb && st == PK_OK; b++) {
        pk_gaussians part;
        gs_scaffold_set_filter(m->blk[b], keep_fn, &m->keeps[b]);
        st = m->bsrc[b].bake(m->bsrc[b].self, cams, views, n, sh_degree, &part);
        gs_scaffold_set_filter(m->blk[b], NULL, NULL);
        if (st == PK_OK) st = gs_gaussians_append(g, &part);
    }
    if (st != PK_OK) gaussians_free(g);
    return st;
}

/* ---- checkpoints: every block's table (prefixed b<i>.), the shared decoder, its Adam state,
 * the teacher and its update count, the block orders, the smoothed metrics and the lanes'
 * generators (one decoder: the replicas are copies, so a run resumes on other devices or
 * another number of ranks with the same --parallel-blocks) ---- */

/* Device 0's decoder, Adam state and teacher in a fixed order (NULL-free, n <= max). */
static int shared_tensors(mgs *m, tensor **all, int max) {
    char nm[128];
    int na = 0;
    if (!m->shared_decoder) return 0;
    tensor *ps[12];
    gs_decoder_params(&m->shared, ps);
    for (int i = 0; i < 12; i++)
        all[na++] = ps[i];
    for (int i = 0; i < optim_state_count(m->opt) && na < max - 12; i++)
        all[na++] = optim_state_get(m->opt, i, nm, sizeof nm);
    if (m->use_teacher)
        for (int i = 0; i < teacher_count(m->teacher) && na < max; i++)
            all[na++] = teacher_tensor(m->teacher, i);
    return na;
}

static pk_status mgs_ckpt_tensors(void *self, st_write_tensor *out, int max, int *n) {
    mgs *m = self;
    PK_TRY(mgs_gather(m)); /* (the trainer has called it; a no-op then) */
    int k = 0;
    for (int b = 0; b < m->nb; b++) {
        int nk = 0;
        PK_TRY(m->bsrc[b].checkpoint_tensors(m->bsrc[b].self, out + k, max - k, &nk));
        k += nk;
    }
    tensor *all[64];
    int na = shared_tensors(m, all, 64);
    int extra = na + 9 + 2 * m->nb; /* counters, 5 per-block doubles, opos, rng, orders */
    if (k + extra > max) return pk_error(PK_ERR_INVALID, "Momentum-GS: checkpoint table too small");
    free(m->names), free(m->shapes);
    m->names = calloc((size_t)extra, sizeof *m->names);
    m->shapes = calloc((size_t)extra, sizeof *m->shapes);
    size_t total = 0;
    for (int i = 0; i < na; i++)
        total += (size_t)tensor_numel(all[i]);
    float *h = realloc(m->ck_host, sizeof(float) * (total + 1));
    if (!m->names || !m->shapes || !h) return pk_error(PK_ERR_NOMEM, "out of memory");
    m->ck_host = h;
    size_t off = 0;
    int q = 0;
    for (int i = 0; i < na; i++, q++) {
        snprintf(m->names[q], sizeof m->names[q], "mgs.t%d", i);
        PK_TRY(tensor_download(all[i], h + off));
        m->shapes[q][0] = tensor_numel(all[i]);
        out[k++] = (st_write_tensor){m->names[q], ST_F32, 1, m->shapes[q], h + off};
        off += (size_t)tensor_numel(all[i]);
    }
    m->ck_i64[0] = m->shared_decoder ? optim_steps(m->opt) : 0;
    m->ck_i64[1] = m->use_teacher ? teacher_updates(m->teacher) : 0;
    m->ck_i64[2] = m->evals;
    snprintf(m->names[q], sizeof m->names[q], "mgs.counters");
    m->shapes[q][0] = 3;
    out[k++] = (st_write_tensor){m->names[q++], ST_I64, 1, m->shapes[q - 1], m->ck_i64};
    /* stored as the doubles' 64-bit patterns */
    double *dd[5] = {m->psnr_s, m->ssim_s, m->w, m->psnr_l, m->ssim_l};
    const char *dn[5] = {"mgs.psnr", "mgs.ssim", "mgs.weight", "mgs.psnr_last", "mgs.ssim_last"};
    for (int i = 0; i < 5; i++, q++) {
        snprintf(m->names[q], sizeof m->names[q], "%s", dn[i]);
        m->shapes[q][0] = m->nb;
        out[k++] = (st_write_tensor){m->names[q], ST_I64, 1, m->shapes[q], dd[i]};
    }
    snprintf(m->names[q], sizeof m->names[q], "mgs.opos");
    m->shapes[q][0] = m->nb;
    out[k++] = (st_write_tensor){m->names[q], ST_I64, 1, m->shapes[q], m->opos};
    q++;
    for (int b = 0; b < m->nb; b++, q++) {
        snprintf(m->names[q], sizeof m->names[q], "mgs.order%d", b);
        m->shapes[q][0] = m->ncams[b];
        out[k++] = (st_write_tensor){m->names[q], ST_I32, 1, m->shapes[q], m->order[b]};
    }
    if (m->G > 1) { /* the generators of lanes 1 .. G-1 (lane 0's is the trainer's) */
        if (dist_size() < 2)
            for (int l = 1; l < m->G; l++)
                m->ck_rng[l] = m->lrng[l].state;
        snprintf(m->names[q], sizeof m->names[q], "mgs.rng");
        m->shapes[q][0] = m->G - 1;
        out[k++] = (st_write_tensor){m->names[q], ST_I64, 1, m->shapes[q], m->ck_rng + 1};
        q++;
    }
    *n = k;
    return PK_OK;
}

/* Copies checkpoint tensor `name` of `bytes` bytes into dst. */
static pk_status take(const ckpt_file *ck, const char *name, size_t bytes, void *dst) {
    const st_tensor *t = safetensors_find(&ck->st, name);
    if (!t || t->nbytes != bytes)
        return pk_error(PK_ERR_FORMAT, "checkpoint: tensor %s missing or of the wrong size", name);
    memcpy(dst, t->data, bytes);
    return PK_OK;
}

static pk_status mgs_restore(void *self, const ckpt_file *ck) {
    mgs *m = self;
    for (int b = 0; b < m->nb; b++) {
        PK_TRY(m->bsrc[b].restore(m->bsrc[b].self, ck));
        m->anchors[b] = gs_scaffold_anchors(m->blk[b]);
    }
    tensor *all[64];
    int na = shared_tensors(m, all, 64);
    for (int i = 0; i < na; i++) {
        size_t ne = (size_t)tensor_numel(all[i]);
        float *h = realloc(m->ck_host, sizeof(float) * (ne + 1));
        if (!h) return pk_error(PK_ERR_NOMEM, "out of memory");
        m->ck_host = h;
        char name[32];
        snprintf(name, sizeof name, "mgs.t%d", i);
        PK_TRY(take(ck, name, sizeof(float) * ne, h));
        PK_TRY(tensor_upload(all[i], h));
    }
    PK_TRY(take(ck, "mgs.counters", sizeof(int64_t) * 3, m->ck_i64));
    if (m->shared_decoder) optim_set_steps(m->opt, m->ck_i64[0]);
    if (m->use_teacher) teacher_set_updates(m->teacher, m->ck_i64[1]);
    m->evals = m->ck_i64[2];
    size_t nb = (size_t)m->nb;
    PK_TRY(take(ck, "mgs.psnr", sizeof(double) * nb, m->psnr_s));
    PK_TRY(take(ck, "mgs.ssim", sizeof(double) * nb, m->ssim_s));
    PK_TRY(take(ck, "mgs.weight", sizeof(double) * nb, m->w));
    PK_TRY(take(ck, "mgs.psnr_last", sizeof(double) * nb, m->psnr_l));
    PK_TRY(take(ck, "mgs.ssim_last", sizeof(double) * nb, m->ssim_l));
    PK_TRY(take(ck, "mgs.opos", sizeof(int64_t) * nb, m->opos));
    for (int b = 0; b < m->nb; b++) {
        char name[32];
        snprintf(name, sizeof name, "mgs.order%d", b);
        PK_TRY(take(ck, name, sizeof(int32_t) * (size_t)m->ncams[b], m->order[b]));
    }
    if (m->G > 1) {
        PK_TRY(take(ck, "mgs.rng", sizeof(uint64_t) * (size_t)(m->G - 1), m->ck_rng + 1));
        for (int l = 1; l < m->G; l++)
            m->lrng[l].state = m->ck_rng[l];
    }
    m->dirty = false; /* every rank read the same file */
    return push_replicas(m);
}

mgs_info mgs_source_info(const gs_source *src) {
    const mgs *m = src->self;
    int verr = 0;
    for (int d = 1; d < m->ndev; d++)
        verr += pk_device_validation_errors(m->dev[d].ctx->dev);
    return (mgs_info){.blocks = m->nb,
                      .anchors = m->anchors,
                      .train_views = m->ncams,
                      .val_views = m->nval,
                      .weights = m->w,
                      .devices = m->ndev,
                      .device_of = m->dev_of,
                      .validation_errors = verr,
                      .val_psnr = m->evals ? m->psnr_l : NULL,
                      .val_ssim = m->evals ? m->ssim_l : NULL,
                      .lanes = m->G,
                      .rank_of = m->lane_rank,
                      .comm_seconds = m->comm.seconds,
                      .comm_bytes = m->comm.bytes,
                      .comm_calls = m->comm.calls};
}

/* A teacher of decoder `dec` on c with momentum schedule ms, and its tensors viewed as a
 * decoder. */
static pk_status make_teacher_schedule(pk_ctx *c, const gs_decoder *dec, pk_momentum_schedule ms,
                                       pk_teacher **t, gs_decoder *tdec) {
    tensor *ps[12];
    gs_decoder_params(dec, ps);
    pk_teacher_options to = {.name = "mgs_teacher", .schedule = ms};
    PK_TRY(teacher_create(c, &to, ps, 12, t));
    *tdec = *dec;
    nn_linear *l[6] = {&tdec->op1, &tdec->op2, &tdec->cov1, &tdec->cov2, &tdec->col1, &tdec->col2};
    for (int i = 0; i < 6; i++) {
        l[i]->w = teacher_tensor(*t, 2 * i);
        l[i]->b = teacher_tensor(*t, 2 * i + 1);
    }
    return PK_OK;
}

/* A momentum teacher (constant m) of decoder `dec` on c. */
static pk_status make_teacher(pk_ctx *c, const gs_decoder *dec, double momentum, pk_teacher **t,
                              gs_decoder *tdec) {
    return make_teacher_schedule(
        c, dec, (pk_momentum_schedule){.kind = PK_MOMENTUM_CONSTANT, .m0 = momentum}, t, tdec);
}

/* Copies decoder a's parameters into b (another device's). */
static pk_status copy_decoder(const gs_decoder *a, gs_decoder *b) {
    tensor *pa[12], *pb[12];
    gs_decoder_params(a, pa);
    gs_decoder_params(b, pb);
    for (int i = 0; i < 12; i++) {
        size_t ne = (size_t)tensor_numel(pa[i]);
        float *h = malloc(sizeof(float) * (ne + 1));
        if (!h) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
        pk_status st = tensor_download(pa[i], h);
        if (st == PK_OK) st = tensor_upload(pb[i], h);
        free(h);
        PK_TRY(st);
    }
    return PK_OK;
}

/* Parses --devices (pk_device_list_parse, repeats allowed: a worker per entry), deals the
 * lanes over the ranks (contiguous: dist_shard) and this rank's lanes over its devices (round
 * robin), and opens the further devices' contexts. */
static pk_status devices_open(mgs *m, int nb) {
    char names[8][64];
    int nd = 1;
    if (m->o.devices && *m->o.devices)
        PK_TRY(pk_device_list_parse(m->o.devices, names, 8, PK_DEVICE_LIST_REPEATS, &nd));
    m->ndev = nd;
    int R = dist_size();
    int G = m->G = m->o.parallel > 0 ? m->o.parallel : nd * R;
    if (G > nb)
        return pk_error(PK_ERR_INVALID,
                        "Momentum-GS: %d blocks in parallel (--parallel-blocks, default: devices x "
                        "ranks = %d x %d) for %d blocks: each needs a block of its own",
                        G, nd, R, nb);
    int64_t first, count;
    dist_shard(G, &first, &count);
    if (count < nd)
        return pk_error(PK_ERR_INVALID,
                        "Momentum-GS: rank %d of %d has %lld of the %d parallel blocks for its %d "
                        "devices (--devices %s): --parallel-blocks at least devices x ranks",
                        dist_rank(), R, (long long)count, G, nd, m->o.devices ? m->o.devices : "");
    m->lane_first = (int)first, m->lane_count = (int)count;
    m->dev_of = calloc((size_t)nb, sizeof(int));
    m->dev = calloc((size_t)nd, sizeof *m->dev);
    m->lshare = calloc((size_t)G, sizeof *m->lshare);
    m->nlshare = calloc((size_t)G, sizeof(int));
    m->lrng = calloc((size_t)G, sizeof *m->lrng);
    m->lane_dev = malloc(sizeof(int) * (size_t)G);
    m->lane_rank = malloc(sizeof(int) * (size_t)G);
    m->ck_rng = calloc((size_t)G, sizeof(uint64_t));
    if (!m->dev_of || !m->dev || !m->lshare || !m->nlshare || !m->lrng || !m->lane_dev ||
        !m->lane_rank || !m->ck_rng)
        return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    for (int d = 0; d < nd; d++) {
        m->dev[d].m = m;
        m->dev[d].d = d;
        m->dev[d].lanes = malloc(sizeof(int) * (size_t)G);
        if (!m->dev[d].lanes) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    }
    for (int l = 0; l < G; l++) {
        m->lshare[l] = malloc(sizeof(int) * (size_t)nb);
        if (!m->lshare[l]) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
        /* each lane its own stream of draws, fixed by the run's seed (lane 0: the trainer's) */
        m->lrng[l].state = m->env.rng->state ^ (0x9E3779B97F4A7C15ull * (uint64_t)l);
        /* dist_shard's rule: rank r holds lanes [G r / R, G (r + 1) / R) */
        m->lane_rank[l] = 0;
        for (int r = 0; r < R; r++)
            if ((int64_t)l >= (int64_t)G * r / R && (int64_t)l < (int64_t)G * (r + 1) / R)
                m->lane_rank[l] = r;
        m->lane_dev[l] = l >= first && l < first + count ? (int)((l - first) % nd) : -1;
        if (m->lane_dev[l] >= 0) {
            mgs_dev *w = &m->dev[m->lane_dev[l]];
            w->lanes[w->nlanes++] = l;
        }
    }
    for (int b = 0; b < nb; b++) {
        int l = b % G;
        m->lshare[l][m->nlshare[l]++] = b;
        m->dev_of[b] = m->lane_dev[l] >= 0 ? m->lane_dev[l] : 0;
    }
    m->dev[0].ctx = m->env.ctx;
    int maxhw = 0; /* the largest training view */
    for (int i = 0; i < m->env.n_train; i++) {
        const splat_camera *c = &m->env.cams[m->env.train_idx[i]];
        if (c->width * c->height > maxhw) maxhw = c->width * c->height;
    }
    for (int d = 0; d < nd; d++) {
        mgs_dev *w = &m->dev[d];
        if (d == 0 && w->nlanes < 2) continue; /* the trainer renders its one lane */
        if (d > 0) {
            pk_ctx_options co = {
                .device = names[d], .seed = m->env.rng->state, .threads = m->o.threads};
            PK_TRY(pk_ctx_create(&co, &w->ctx));
            if (!pk_op_get(PK_OP_SPLAT)->forward[w->ctx->backend])
                return pk_error(PK_ERR_UNSUPPORTED,
                                "--devices: device %s has no Gaussian rasterizer kernels",
                                names[d]);
        }
        PK_TRY(pk_splat_renderer_create(w->ctx, &w->renderer));
        w->gt = malloc(sizeof(float) * 3 * (size_t)(maxhw + 1));
        if (!w->gt) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    }
    if (nd == 1) return PK_OK;
    if (pthread_mutex_init(&m->mu, NULL) != 0)
        return pk_error(PK_ERR_INVALID, "Momentum-GS: cannot create a mutex");
    pthread_cond_init(&m->go, NULL);
    pthread_cond_init(&m->fin, NULL);
    m->sync_init = true;
    return PK_OK;
}

pk_status mgs_make_source(void *arg, const gs_source_env *env, gs_source *out) {
    mgs_options o = mgs_defaults(*(const mgs_options *)arg);
    mgs *m = calloc(1, sizeof *m);
    if (!m) return pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    m->o = o;
    m->env = *env;
    m->eval_block = -1;
    m->shared_decoder = !o.independent;
    m->use_teacher = !o.independent && !o.no_teacher;
    m->weighting = !o.independent && !o.no_weighting;
    pk_status st = mgs_partition_build(env->xyz, env->n_points, o.blocks, &m->part);
    int nb = m->nb = m->part.gx * m->part.gy;
    if (st == PK_OK) {
        m->blk = calloc((size_t)nb, sizeof *m->blk);
        m->bsrc = calloc((size_t)nb, sizeof *m->bsrc);
        m->cams = calloc((size_t)nb, sizeof *m->cams);
        m->ncams = calloc((size_t)nb, sizeof *m->ncams);
        m->order = calloc((size_t)nb, sizeof *m->order);
        m->opos = calloc((size_t)nb, sizeof *m->opos);
        m->val = calloc((size_t)nb, sizeof *m->val);
        m->nval = calloc((size_t)nb, sizeof *m->nval);
        m->psnr_s = calloc((size_t)nb, sizeof(double));
        m->ssim_s = calloc((size_t)nb, sizeof(double));
        m->w = calloc((size_t)nb, sizeof(double));
        m->psnr_l = calloc((size_t)nb, sizeof(double));
        m->ssim_l = calloc((size_t)nb, sizeof(double));
        m->anchors = calloc((size_t)nb, sizeof(int64_t));
        m->keeps = calloc((size_t)nb, sizeof *m->keeps);
        if (!m->blk || !m->bsrc || !m->cams || !m->ncams || !m->order || !m->opos || !m->val ||
            !m->nval || !m->psnr_s || !m->ssim_s || !m->w || !m->psnr_l || !m->ssim_l ||
            !m->anchors || !m->keeps)
            st = pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    }
    /* cameras per block */
    bool *member = st == PK_OK ? malloc(sizeof(bool) * (size_t)nb) : NULL;
    if (st == PK_OK && !member) st = pk_error(PK_ERR_NOMEM, "out of memory");
    for (int b = 0; st == PK_OK && b < nb; b++) {
        m->w[b] = 1;
        m->keeps[b] = (keep_arg){&m->part, b};
        m->cams[b] = malloc(sizeof(int) * (size_t)(env->n_train + 1));
        m->order[b] = malloc(sizeof(int32_t) * (size_t)(env->n_train + 1));
        m->val[b] = malloc(sizeof(int) * (size_t)(env->n_test + 1));
        if (!m->cams[b] || !m->order[b] || !m->val[b]) st = pk_error(PK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; st == PK_OK && i < env->n_train + env->n_test; i++) {
        bool train = i < env->n_train;
        int v = train ? env->train_idx[i] : env->test_idx[i - env->n_train];
        mgs_assign_camera(&m->part, &env->cams[v], env->xyz, env->n_points, o.view_share, member);
        for (int b = 0; b < nb; b++) {
            if (!member[b]) continue;
            if (train) {
                m->order[b][m->ncams[b]] = m->ncams[b];
                m->cams[b][m->ncams[b]++] = v;
            } else
                m->val[b][m->nval[b]++] = v;
        }
    }
    free(member);
    for (int b = 0; st == PK_OK && b < nb; b++)
        m->opos[b] = m->ncams[b]; /* shuffled on first use */
    /* devices: blocks dealt round robin; device 0 is the trainer's context */
    if (st == PK_OK) st = devices_open(m, nb);
    /* the shared decoder, its optimizer and teacher */
    /* Momentum-GS's schedules (arguments/__init__.py): 60,000 iterations a block, the MLP and
     * offset learning rates decaying over the first 30,000 (then held at their final values):
     * over half the run, where Scaffold-GS decays over all of it */
    m->sco = gs_scaffold_defaults(
        (gs_scaffold_options){.voxel_size = o.voxel_size,
                              .update_interval = env->scaffold_interval,
                              .grad_threshold = env->scaffold_grad_threshold,
                              .max_steps = mgs_schedule_steps(env->iters),
                              .shared_decoder = m->shared_decoder ? &m->shared : NULL},
        env->iters);
    if (st == PK_OK && m->shared_decoder) {
        st = gs_decoder_init(env->ctx, "mgs.decoder", GS_SCAFFOLD_FEAT + 3, env->rng, &m->shared);
        if (st == PK_OK) st = gs_decoder_optimizer(env->ctx, &m->shared, &m->opt);
    }
    if (st == PK_OK && m->use_teacher)
        st = make_teacher(env->ctx, &m->shared, o.momentum, &m->teacher, &m->tdec);
    if (st == PK_OK && m->use_teacher && o.cons_features) {
        if (m->ndev > 1)
            st = pk_error(PK_ERR_INVALID, "Momentum-GS: the consistency diagnostic runs on one "
                                          "device");
        else /* momentum 0 (a cosine from 0 to 0): every update copies the student exactly */
            st = make_teacher_schedule(
                env->ctx, &m->shared,
                (pk_momentum_schedule){.kind = PK_MOMENTUM_COSINE, .total_steps = 1}, &m->scopy,
                &m->sdec);
    }
    /* the further devices' replicas start as copies of device 0's */
    for (int d = 1; st == PK_OK && d < m->ndev; d++) {
        mgs_dev *w = &m->dev[d];
        if (m->shared_decoder) {
            pk_rng r0 = *env->rng; /* the same draws as device 0; overwritten by the copy */
            st = gs_decoder_init(w->ctx, "mgs.decoder", GS_SCAFFOLD_FEAT + 3, &r0, &w->dec);
            if (st == PK_OK) st = copy_decoder(&m->shared, &w->dec);
        }
        if (st == PK_OK && m->use_teacher)
            st = make_teacher(w->ctx, &w->dec, o.momentum, &w->teacher, &w->tdec);
    }
    /* the lanes' gradient rows and the reduction's scratch */
    if (st == PK_OK && m->shared_decoder) {
        tensor *ps[12];
        gs_decoder_params(&m->shared, ps);
        for (int i = 0; i < 12; i++)
            m->P += tensor_numel(ps[i]);
        m->lgrad = calloc((size_t)m->G * (size_t)m->P, sizeof(float));
        m->acc = calloc(2 * (size_t)m->P, sizeof(float));
        if (!m->lgrad || !m->acc) st = pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
    }
    /* the voxel: one for all blocks (Scaffold-GS's rule over all points when not given) */
    if (st == PK_OK && !(m->sco.voxel_size > 0)) {
        st = gs_scaffold_voxel_rule(env->xyz, env->n_points, &m->sco.voxel_size);
        if (st == PK_OK && !(m->sco.voxel_size > 0)) m->sco.voxel_size = 0.01 * env->extent;
    }
    /* the blocks: anchors from the points in each block's grown cell */
    float *pts = st == PK_OK ? malloc(sizeof(float) * 3 * (size_t)env->n_points) : NULL;
    if (st == PK_OK && !pts) st = pk_error(PK_ERR_NOMEM, "out of memory");
    for (int b = 0; st == PK_OK && b < nb; b++) {
        int64_t np = 0;
        for (int64_t i = 0; i < env->n_points; i++)
            if (mgs_in_block(&m->part, b, o.margin, env->xyz + i * 3)) {
                memcpy(pts + np * 3, env->xyz + i * 3, sizeof(float) * 3);
                np++;
            }
        if (np == 0) {
            st = pk_error(PK_ERR_INVALID, "Momentum-GS: block %d has no points (fewer blocks?)", b);
            break;
        }
        int d = m->dev_of[b];
        gs_scaffold_options sco = m->sco;
        if (m->shared_decoder && d > 0) sco.shared_decoder = &m->dev[d].dec;
        st = gs_scaffold_create(d ? m->dev[d].ctx : env->ctx, pts, np, env->extent, &sco, env->rng,
                                &m->blk[b]);
        if (st != PK_OK) break;
        m->bsrc[b] = gs_scaffold_source(m->blk[b]);
        char pre[16];
        snprintf(pre, sizeof pre, "b%d.", b);
        gs_scaffold_set_prefix(m->blk[b], pre);
        if (m->use_teacher)
            gs_scaffold_set_teacher(m->blk[b], d ? &m->dev[d].tdec : &m->tdec,
                                    (float)o.cons_weight);
        if (m->scopy) gs_scaffold_set_consistency_student(m->blk[b], &m->sdec);
        if (m->use_teacher) gs_scaffold_set_consistency_terms(m->blk[b], o.cons_terms);
        m->anchors[b] = gs_scaffold_anchors(m->blk[b]);
    }
    free(pts);
    if (st != PK_OK) {
        mgs_destroy(m);
        return st;
    }
    *out = (gs_source){.self = m,
                       .produce = mgs_produce,
                       .step = mgs_step,
                       .count = mgs_count,
                       .export_gaussians = mgs_export,
                       .checkpoint_tensors = mgs_ckpt_tensors,
                       .restore = mgs_restore,
                       .destroy = mgs_destroy,
                       .produce_tensors = mgs_produce_tensors,
                       .add_stats = mgs_add_stats,
                       .pick_view = mgs_pick_view,
                       .loss_weight = mgs_loss_weight,
                       .after_step = mgs_after_step,
                       .bake = mgs_bake,
                       .gather = mgs_gather,
                       .dev_begin = mgs_dev_begin,
                       .dev_inputs = mgs_dev_inputs,
                       .dev_add_stats = mgs_dev_add_stats,
                       .dev_step = mgs_dev_step,
                       .dev_host_due = mgs_dev_host_due,
                       .dev_download = mgs_dev_download,
                       .dev_snapshot = mgs_dev_snapshot,
                       .dev_rewind = mgs_dev_rewind};
    return PK_OK;
}

pk_status mgs_write_blocks(const gs_source *src, const char *dir) {
    mgs *m = src->self;
    if (!io_is_dir(dir) && mkdir(dir, 0777) != 0)
        return pk_error(PK_ERR_IO, "%s: cannot create the folder of the block checkpoints", dir);
    enum { MAXT = 96 };
    st_write_tensor ts[MAXT];
    float *host = NULL;
    pk_status st = PK_OK;
    for (int b = 0; b < m->nb && st == PK_OK; b++) {
        int n = 0;
        /* the block's own table (its own decoder too when independent) */
        st = m->bsrc[b].checkpoint_tensors(m->bsrc[b].self, ts, MAXT - 16, &n);
        if (st != PK_OK) break;
        int d = m->dev_of[b];
        char names[12][64];
        int64_t shapes[12][1];
        if (m->shared_decoder) { /* the decoder it renders with: its device's replica */
            tensor *ps[12];
            gs_decoder_params(d ? &m->dev[d].dec : &m->shared, ps);
            size_t total = 0;
            for (int i = 0; i < 12; i++)
                total += (size_t)tensor_numel(ps[i]);
            float *h = realloc(host, sizeof(float) * (total + 1));
            if (!h) {
                st = pk_error(PK_ERR_NOMEM, "Momentum-GS: out of memory");
                break;
            }
            host = h;
            size_t off = 0;
            for (int i = 0; i < 12 && st == PK_OK; i++) {
                st = tensor_download(ps[i], host + off);
                snprintf(names[i], sizeof names[i], "decoder.%d", i);
                shapes[i][0] = tensor_numel(ps[i]);
                ts[n++] = (st_write_tensor){names[i], ST_F32, 1, shapes[i], host + off};
                off += (size_t)tensor_numel(ps[i]);
            }
        }
        char file[48], cell[160], devs[16];
        snprintf(file, sizeof file, "block%d.safetensors", b);
        snprintf(cell, sizeof cell, "{\"block\": %d, \"grid\": [%d, %d], \"cell\": [%d, %d]}", b,
                 m->part.gx, m->part.gy, b % m->part.gx, b / m->part.gx);
        snprintf(devs, sizeof devs, "%d", d);
        const char *keys[2] = {"momentum_gs", "device"}, *vals[2] = {cell, devs};
        char *path = io_path_join(dir, file);
        if (st == PK_OK)
            st = path ? safetensors_write(path, ts, n, keys, vals, 2)
                      : pk_error(PK_ERR_NOMEM, "out of memory");
        free(path);
    }
    free(host);
    PK_TRY(st);
    /* the partition: how a world point finds its block */
    char text[1024];
    int at = snprintf(text, sizeof text,
                      "{\"blocks\": %d, \"grid\": [%d, %d], \"axes\": [%d, %d], \"mid\": [%.9g, "
                      "%.9g], \"half\": [%.9g, %.9g], \"contracted_lo\": [%.9g, %.9g], "
                      "\"contracted_hi\": [%.9g, %.9g], \"devices\": %d, \"device_of\": [",
                      m->nb, m->part.gx, m->part.gy, m->part.ax, m->part.ay, m->part.mid[0],
                      m->part.mid[1], m->part.half[0], m->part.half[1], m->part.clo[0],
                      m->part.clo[1], m->part.chi[0], m->part.chi[1], m->ndev);
    for (int b = 0; b < m->nb && at < (int)sizeof text - 16; b++)
        at += snprintf(text + at, sizeof text - (size_t)at, "%s%d", b ? ", " : "", m->dev_of[b]);
    snprintf(text + at, sizeof text - (size_t)at, "]}\n");
    char *path = io_path_join(dir, "partition.json");
    if (!path) return pk_error(PK_ERR_NOMEM, "out of memory");
    io_atomic a;
    st = io_atomic_open(&a, path);
    free(path);
    PK_TRY(st);
    if (fputs(text, a.f) < 0) {
        io_atomic_abort(&a);
        return pk_error(PK_ERR_IO, "%s: cannot write partition.json", dir);
    }
    return io_atomic_commit(&a);
}
