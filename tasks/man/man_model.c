/* man_model.c - the MAN model: the split tables, the CIFAR ResNet backbone, the auxiliary
 * networks (InfoPro decoder, 2c2f head, LB/EMA blocks), one local-learning training step and
 * plain-chain prediction. The training loop, data and files are man_run.c's.
 *
 * Memory: every local module runs its forward and backward inside its own step of the
 * context (pk_step_begin resets the activation arena), and its detached output is copied into
 * a small persistent "carry" arena for the next module. That is where local learning saves
 * memory: only one module's activations (plus its auxiliary net's) are alive at a time. E2E is
 * the same code with one module. */
#include "man.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "nn/nn.h"

/* ---- the split tables ----
 * Source: JunhaoSu0/MAN, "Exp on CIFAR-SVHN-STL/networks/config.py", dict `InfoPro` (commit
 * 76258ff). Each entry is the last block (stage, block) of a local module. MAN dropped the
 * stem-only module [0, 0] of InfoPro's K = 16 table (InfoPro-Pytorch networks/configs.py), so
 * ResNet-32 "K = 16" has 15 modules and ResNet-110 "K = 55" has 54, as in the official code. */
typedef struct split_row {
    man_arch arch;
    int k, n;
    man_cut cuts[55];
} split_row;

static const split_row SPLITS[] = {
    {MAN_RESNET32, 1, 1, {{3, 4}}},
    {MAN_RESNET32, 2, 2, {{2, 1}, {3, 4}}},
    {MAN_RESNET32, 3, 3, {{1, 4}, {2, 4}, {3, 4}}},
    {MAN_RESNET32, 4, 4, {{1, 2}, {2, 1}, {3, 0}, {3, 4}}},
    {MAN_RESNET32, 8, 8, {{1, 0}, {1, 2}, {1, 4}, {2, 1}, {2, 3}, {3, 0}, {3, 2}, {3, 4}}},
    {MAN_RESNET32,
     16,
     15,
     {{1, 0},
      {1, 1},
      {1, 2},
      {1, 3},
      {1, 4},
      {2, 0},
      {2, 1},
      {2, 2},
      {2, 3},
      {2, 4},
      {3, 0},
      {3, 1},
      {3, 2},
      {3, 3},
      {3, 4}}},
    {MAN_RESNET110, 1, 1, {{3, 17}}},
    {MAN_RESNET110, 2, 2, {{2, 8}, {3, 17}}},
    {MAN_RESNET110, 3, 3, {{1, 17}, {2, 17}, {3, 17}}},
    {MAN_RESNET110, 4, 4, {{1, 11}, {2, 7}, {3, 3}, {3, 17}}},
    {MAN_RESNET110, 8, 8, {{1, 4}, {1, 11}, {2, 0}, {2, 7}, {2, 14}, {3, 3}, {3, 10}, {3, 17}}},
    {MAN_RESNET110,
     16,
     16,
     {{1, 1},
      {1, 4},
      {1, 7},
      {1, 10},
      {1, 13},
      {1, 16},
      {2, 1},
      {2, 4},
      {2, 7},
      {2, 11},
      {2, 15},
      {3, 1},
      {3, 5},
      {3, 9},
      {3, 13},
      {3, 17}}},
    {MAN_RESNET110, 32, 32, {{1, 1},  {1, 2},  {1, 4},  {1, 5},  {1, 7},  {1, 9},  {1, 11},
                             {1, 13}, {1, 14}, {1, 16}, {1, 17}, {2, 1},  {2, 2},  {2, 4},
                             {2, 5},  {2, 7},  {2, 9},  {2, 11}, {2, 13}, {2, 14}, {2, 16},
                             {2, 17}, {3, 1},  {3, 3},  {3, 4},  {3, 6},  {3, 7},  {3, 9},
                             {3, 11}, {3, 13}, {3, 15}, {3, 17}}},
    {MAN_RESNET110, 55, 54, {{1, 0},  {1, 1},  {1, 2},  {1, 3},  {1, 4},  {1, 5},  {1, 6},  {1, 7},
                             {1, 8},  {1, 9},  {1, 10}, {1, 11}, {1, 12}, {1, 13}, {1, 14}, {1, 15},
                             {1, 16}, {1, 17}, {2, 0},  {2, 1},  {2, 2},  {2, 3},  {2, 4},  {2, 5},
                             {2, 6},  {2, 7},  {2, 8},  {2, 9},  {2, 10}, {2, 11}, {2, 12}, {2, 13},
                             {2, 14}, {2, 15}, {2, 16}, {2, 17}, {3, 0},  {3, 1},  {3, 2},  {3, 3},
                             {3, 4},  {3, 5},  {3, 6},  {3, 7},  {3, 8},  {3, 9},  {3, 10}, {3, 11},
                             {3, 12}, {3, 13}, {3, 14}, {3, 15}, {3, 16}, {3, 17}}},
};

/* ---- InfoPro's loss weights ----
 * lambda1 (reconstruction) and lambda2 (task) at module 0 and at module K-2, from InfoPro's
 * command list (blackfeather-wang/InfoPro-Pytorch, "Experiments on CIFAR-SVHN-STL10/comand.sh",
 * --ixx_1 --ixy_1 --ixx_2 --ixy_2, CIFAR-10). Module i in between uses ratio = i / (K - 2)
 * (0 when K = 2), lambda = first (1 - ratio) + last ratio, as InfoPro's networks/resnet.py.
 * K without a row uses the next larger K's row (the largest beyond the table). */
typedef struct lambda_row {
    man_arch arch;
    int k;
    double l1a, l2a, l1b, l2b;
} lambda_row;

static const lambda_row LAMBDAS[] = {
    {MAN_RESNET32, 2, 5, 1, 0, 0},    {MAN_RESNET32, 4, 6, 0, 1, 2},
    {MAN_RESNET32, 8, 5, 0, 0, 2},    {MAN_RESNET32, 16, 5, 0.05, 0.2, 0.5},
    {MAN_RESNET110, 2, 5, 0.5, 0, 0}, {MAN_RESNET110, 4, 1, 0, 0, 1},
    {MAN_RESNET110, 8, 5, 0, 0, 1},   {MAN_RESNET110, 16, 5, 0, 0.5, 1},
};

static const char *const METHOD_NAMES[MAN_METHOD_COUNT] = {"e2e", "dgl", "infopro", "dgl+man",
                                                           "infopro+man"};

const char *man_method_name(man_method m) {
    return m >= 0 && m < MAN_METHOD_COUNT ? METHOD_NAMES[m] : "?";
}

bool man_method_parse(const char *s, man_method *out) {
    for (int i = 0; i < MAN_METHOD_COUNT; i++)
        if (strcmp(s, METHOD_NAMES[i]) == 0) return *out = (man_method)i, true;
    return false;
}

const char *man_arch_name(man_arch a) { return a == MAN_RESNET110 ? "resnet110" : "resnet32"; }

bool man_arch_parse(const char *s, man_arch *out) {
    if (strcmp(s, "resnet32") == 0) return *out = MAN_RESNET32, true;
    if (strcmp(s, "resnet110") == 0) return *out = MAN_RESNET110, true;
    return false;
}

pk_status man_split_table(man_arch arch, int k, const man_cut **cuts, int *n) {
    for (size_t i = 0; i < sizeof SPLITS / sizeof SPLITS[0]; i++)
        if (SPLITS[i].arch == arch && SPLITS[i].k == k) {
            *cuts = SPLITS[i].cuts;
            *n = SPLITS[i].n;
            return PK_OK;
        }
    return pk_error(PK_ERR_INVALID,
                    "man: no official split of %s into %d local modules (ResNet-32: 1, 2, 3, 4, "
                    "8, 16; ResNet-110: 1, 2, 3, 4, 8, 16, 32, 55)",
                    man_arch_name(arch), k);
}

/* ---- modules ---- */

#define BLOCK_TENSORS 9 /* conv1, bn1 (2), conv2, bn2 (2), downsample conv + bn (2) */

/* A BasicBlock: conv3x3-BN-ReLU-conv3x3-BN, plus the (1x1 conv + BN) shortcut when the shape
 * changes, then ReLU. */
typedef struct man_block {
    nn_conv2d conv1, conv2, down;
    nn_batchnorm bn1, bn2, down_bn;
    bool has_down;
    int cin, cout, stride;
} man_block;

/* The 2c2f auxiliary classifier of InfoPro/MAN (auxiliary_nets.py AuxClassifier). */
typedef struct man_head {
    nn_conv2d c1, c2;
    nn_batchnorm b1, b2;
    nn_linear f1, f2;
} man_head;

/* InfoPro's decoder: upsample, conv3x3 (12) + BN + ReLU, conv3x3 (image channels), sigmoid. */
typedef struct man_decoder {
    nn_conv2d c1, c2;
    nn_batchnorm b1;
    tensor *uh, *uw; /* align_corners bilinear matrices (H, h), (W, w); NULL when h == H */
} man_decoder;

/* The auxiliary network of one local module. */
typedef struct man_aux {
    double l1, l2;
    bool has_lb, has_dec;
    man_block lb, ema; /* ema: weights are teacher views, running stats its own */
    pk_teacher *teach[BLOCK_TENSORS];
    int nteach;
    tensor *src[BLOCK_TENSORS], *emat[BLOCK_TENSORS], *lbt[BLOCK_TENSORS];
    int nt;
    man_decoder dec;
    man_head head;
    tensor **params; /* LB + decoder + head trainable tensors */
    int nparams;
} man_aux;

struct man_model {
    pk_ctx *c;
    man_config cfg;
    int nper, nblocks, nmod;
    nn_conv2d stem;
    nn_batchnorm stem_bn;
    man_block *blocks;
    nn_linear fc;
    int *mod_end; /* flat index of each module's last block */
    man_aux *aux; /* nmod - 1 */
    tensor ***mod_params;
    int *mod_nparams;
    pk_optimizer *opt;
    tensor **persist; /* every named persistent tensor (parameters, buffers) */
    int npersist, cap_persist;
    pk_arena *carry;
    tensor *cx, *ctarget, *clabels, *cfeat;
    tensor *stats; /* (3) device sums of steps that read nothing back; NULL until used */
    float *logits; /* host (batch, classes) */
};

static pk_status track(man_model *m, tensor *t) {
    if (!t) return PK_ERR_NOMEM;
    if (m->npersist == m->cap_persist) {
        int cap = m->cap_persist ? 2 * m->cap_persist : 256;
        tensor **p = realloc(m->persist, sizeof *p * (size_t)cap);
        if (!p) return pk_error(PK_ERR_NOMEM, "man: out of host memory");
        m->persist = p;
        m->cap_persist = cap;
    }
    m->persist[m->npersist++] = t;
    return PK_OK;
}

/* Appends t to a growing tensor list. */
static pk_status list_add(tensor ***list, int *n, tensor *t) {
    tensor **p = realloc(*list, sizeof *p * (size_t)(*n + 1));
    if (!p) return pk_error(PK_ERR_NOMEM, "man: out of host memory");
    p[(*n)++] = t;
    *list = p;
    return PK_OK;
}

/* Conv weights ~ N(0, 2 / (k k Cout)): the official init loop over every nn.Conv2d. */
static pk_status init_conv_normal(nn_conv2d *l, pk_rng *rng) {
    tensor *w = l->w;
    int64_t n = tensor_numel(w);
    double std = sqrt(2.0 / (double)(w->shape[2] * w->shape[3] * w->shape[0]));
    float *h = malloc(sizeof(float) * (size_t)n);
    if (!h) return pk_error(PK_ERR_NOMEM, "man: out of host memory");
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)(std * pk_rng_normal(rng));
    pk_status s = tensor_upload(w, h);
    free(h);
    return s;
}

static pk_status conv_new(man_model *m, const char *name, int cin, int cout, int k, int stride,
                          bool bias, pk_rng *rng, nn_conv2d *l) {
    PK_TRY(nn_conv2d_init(m->c, name, cin, cout, k, stride, k / 2, 1, bias, rng, l));
    PK_TRY(init_conv_normal(l, rng));
    PK_TRY(track(m, l->w));
    return l->b ? track(m, l->b) : PK_OK;
}

static pk_status bn_new(man_model *m, const char *name, int ch, nn_batchnorm *l) {
    PK_TRY(nn_batchnorm_init(m->c, name, ch, l));
    PK_TRY(track(m, l->gamma));
    PK_TRY(track(m, l->beta));
    PK_TRY(track(m, l->running_mean));
    return track(m, l->running_var);
}

static pk_status linear_new(man_model *m, const char *name, int in, int out, pk_rng *rng,
                            nn_linear *l) {
    PK_TRY(nn_linear_init(m->c, name, in, out, true, rng, l));
    PK_TRY(track(m, l->w));
    return track(m, l->b);
}

static const char *sub(man_model *m, const char *prefix, const char *what) {
    return nn_name(m->c, prefix, what);
}

static pk_status block_new(man_model *m, const char *prefix, int cin, int cout, int stride,
                           pk_rng *rng, man_block *b) {
    memset(b, 0, sizeof *b);
    b->cin = cin, b->cout = cout, b->stride = stride;
    b->has_down = stride != 1 || cin != cout;
    PK_TRY(conv_new(m, sub(m, prefix, "conv1"), cin, cout, 3, stride, false, rng, &b->conv1));
    PK_TRY(bn_new(m, sub(m, prefix, "bn1"), cout, &b->bn1));
    PK_TRY(conv_new(m, sub(m, prefix, "conv2"), cout, cout, 3, 1, false, rng, &b->conv2));
    PK_TRY(bn_new(m, sub(m, prefix, "bn2"), cout, &b->bn2));
    if (b->has_down) {
        PK_TRY(conv_new(m, sub(m, prefix, "downsample.0"), cin, cout, 1, stride, false, rng,
                        &b->down));
        PK_TRY(bn_new(m, sub(m, prefix, "downsample.1"), cout, &b->down_bn));
    }
    return PK_OK;
}

/* The trainable tensors of a block, in a fixed order; returns their number. */
static int block_tensors(const man_block *b, tensor **out) {
    int n = 0;
    out[n++] = b->conv1.w, out[n++] = b->bn1.gamma, out[n++] = b->bn1.beta;
    out[n++] = b->conv2.w, out[n++] = b->bn2.gamma, out[n++] = b->bn2.beta;
    if (b->has_down) out[n++] = b->down.w, out[n++] = b->down_bn.gamma, out[n++] = b->down_bn.beta;
    return n;
}

/* (N, cin, H, W) -> (N, cout, H / stride, W / stride). */
static tensor *block_forward(pk_ctx *c, const man_block *b, tensor *x) {
    tensor *o =
        nn_batchnorm_forward_act(c, &b->bn1, nn_conv2d_forward(c, &b->conv1, x), NULL, true);
    tensor *r =
        b->has_down ? nn_batchnorm_forward(c, &b->down_bn, nn_conv2d_forward(c, &b->down, x)) : x;
    /* relu(bn2(conv2(o)) + r) as one op: no passes over memory for the add and the ReLU */
    return nn_batchnorm_forward_act(c, &b->bn2, nn_conv2d_forward(c, &b->conv2, o), r, true);
}

/* Width and spatial size of stage s (1..3) for an input of size hw. */
static int stage_width(int s) { return s == 1 ? 16 : s == 2 ? 32 : 64; }
static int stage_size(int s, int hw) {
    for (int i = 1; i < s; i++)
        hw = (hw + 1) / 2; /* conv3x3, stride 2, padding 1 */
    return hw;
}

/* The bilinear align_corners=True interpolation matrix (out, in) (the official decoder calls
 * F.interpolate(..., mode='bilinear', align_corners=True)); pk_upsample_bilinear implements
 * align_corners=False, so the decoder applies these two matrices instead. */
static tensor *interp_matrix(pk_arena *a, int out, int in) {
    tensor *t = tensor_new(a, PK_F32, 2, (int64_t[]){out, in});
    float *h = calloc((size_t)out * (size_t)in, sizeof(float));
    if (!t || !h) {
        free(h);
        return NULL;
    }
    for (int o = 0; o < out; o++) {
        double src = out > 1 ? (double)o * (in - 1) / (out - 1) : 0.0;
        int i0 = (int)floor(src), i1 = i0 + 1 < in ? i0 + 1 : in - 1;
        double w = src - i0;
        h[(size_t)o * in + i0] += (float)(1.0 - w);
        h[(size_t)o * in + i1] += (float)w;
    }
    pk_status s = tensor_upload(t, h);
    free(h);
    return s == PK_OK ? t : NULL;
}

static pk_status head_new(man_model *m, const char *prefix, int cin, pk_rng *rng, man_head *h) {
    /* auxiliary_nets.py '2c2f': 16 -> 32 (stride 2), 32 -> 64 (stride 2), 64 -> 64 (stride 1) */
    int mid = cin == 64 ? 64 : 2 * cin, stride = cin == 64 ? 1 : 2;
    PK_TRY(conv_new(m, sub(m, prefix, "conv1"), cin, mid, 3, stride, false, rng, &h->c1));
    PK_TRY(bn_new(m, sub(m, prefix, "bn1"), mid, &h->b1));
    PK_TRY(conv_new(m, sub(m, prefix, "conv2"), mid, mid, 3, 1, false, rng, &h->c2));
    PK_TRY(bn_new(m, sub(m, prefix, "bn2"), mid, &h->b2));
    PK_TRY(linear_new(m, sub(m, prefix, "fc1"), mid, 128, rng, &h->f1)); /* feature_dim 128 */
    return linear_new(m, sub(m, prefix, "fc2"), 128, m->cfg.classes, rng, &h->f2);
}

static tensor *head_forward(pk_ctx *c, const man_head *h, tensor *y) {
    tensor *o = nn_batchnorm_forward_act(c, &h->b1, nn_conv2d_forward(c, &h->c1, y), NULL, true);
    o = nn_batchnorm_forward_act(c, &h->b2, nn_conv2d_forward(c, &h->c2, o), NULL, true);
    o = pk_relu(c, nn_linear_forward(c, &h->f1, pk_global_avgpool(c, o)));
    return nn_linear_forward(c, &h->f2, o);
}

static pk_status decoder_new(man_model *m, const char *prefix, int cin, int stage, pk_rng *rng,
                             man_decoder *d) {
    PK_TRY(conv_new(m, sub(m, prefix, "conv1"), cin, 12, 3, 1, true, rng, &d->c1));
    PK_TRY(bn_new(m, sub(m, prefix, "bn1"), 12, &d->b1));
    PK_TRY(conv_new(m, sub(m, prefix, "conv2"), 12, m->cfg.in_channels, 3, 1, true, rng, &d->c2));
    int h = stage_size(stage, m->cfg.height), w = stage_size(stage, m->cfg.width);
    if (h != m->cfg.height || w != m->cfg.width) {
        d->uh = interp_matrix(m->carry, m->cfg.height, h);
        d->uw = interp_matrix(m->carry, m->cfg.width, w);
        if (!d->uh || !d->uw) return PK_ERR_NOMEM;
    }
    return PK_OK;
}

/* BCE(decoder(y), target) with y (N, C, h, w) and target (N, Cimg, H, W). */
static tensor *decoder_loss(pk_ctx *c, const man_decoder *d, tensor *y, tensor *target) {
    if (!y) return NULL;
    int64_t n = y->shape[0], ch = y->shape[1], h = y->shape[2], w = y->shape[3];
    tensor *up = y;
    if (d->uh) {
        int64_t H = d->uh->shape[0], W = d->uw->shape[0];
        tensor *t = pk_reshape(c, y, 3, (int64_t[]){n * ch, h, w});
        t = pk_matmul(c, d->uh, t, false, false); /* (N C, H, w) */
        t = pk_matmul(c, t, d->uw, false, true);  /* (N C, H, W) */
        up = pk_reshape(c, t, 4, (int64_t[]){n, ch, H, W});
    }
    tensor *o = nn_batchnorm_forward_act(c, &d->b1, nn_conv2d_forward(c, &d->c1, up), NULL, true);
    o = pk_sigmoid(c, nn_conv2d_forward(c, &d->c2, o));
    return pk_bce(c, o, target);
}

/* ---- the model ---- */

static void default_lambdas(const man_config *cfg, double l1[2], double l2[2]) {
    const lambda_row *best = NULL, *largest = NULL;
    for (size_t i = 0; i < sizeof LAMBDAS / sizeof LAMBDAS[0]; i++) {
        const lambda_row *r = &LAMBDAS[i];
        if (r->arch != cfg->arch) continue;
        if (!largest || r->k > largest->k) largest = r;
        if (r->k >= cfg->blocks && (!best || r->k < best->k)) best = r;
    }
    if (!best) best = largest;
    l1[0] = best->l1a, l2[0] = best->l2a, l1[1] = best->l1b, l2[1] = best->l2b;
}

static bool uses_man(man_method m) { return m == MAN_DGL_MAN || m == MAN_INFOPRO_MAN; }
static bool uses_decoder(man_method m) { return m == MAN_INFOPRO || m == MAN_INFOPRO_MAN; }

/* Copies the values of src into dst (same shape) through the host. */
static pk_status copy_values(tensor *dst, const tensor *src) {
    int64_t n = tensor_numel(src);
    float *h = malloc(sizeof(float) * (size_t)n);
    if (!h) return pk_error(PK_ERR_NOMEM, "man: out of host memory");
    pk_status s = tensor_download(src, h);
    if (s == PK_OK) s = tensor_upload(dst, h);
    free(h);
    return s;
}

/* LB_i and EMA_i: copies of block `src` (the first block of module i+1). */
static pk_status lb_ema_new(man_model *m, int i, const man_block *src, pk_rng *rng, man_aux *a) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "aux%d.lb", i);
    PK_TRY(block_new(m, prefix, src->cin, src->cout, src->stride, rng, &a->lb));
    /* The paper and issue: LB and EMA start as copies of the block. (The official code deep-
     * copies and then re-draws every conv by its init loop, so there they start independent.) */
    a->nt = block_tensors(src, a->src);
    block_tensors(&a->lb, a->lbt);
    for (int k = 0; k < a->nt; k++)
        PK_TRY(copy_values(a->lbt[k], a->src[k]));
    /* EMA_i follows the block's parameters (not its BN statistics: the official update zips
     * .parameters()). A teacher follows tensors of one memory block, so split where the
     * parameter arena moved to a new block. */
    pk_teacher_options to = {.name = "man-ema",
                             .schedule = {.kind = PK_MOMENTUM_CONSTANT, .m0 = m->cfg.ema_momentum}};
    int start = 0;
    for (int k = 1; k <= a->nt; k++)
        if (k == a->nt || a->src[k]->block != a->src[start]->block) {
            PK_TRY(teacher_create(m->c, &to, a->src + start, k - start, &a->teach[a->nteach]));
            for (int j = start; j < k; j++)
                a->emat[j] = teacher_tensor(a->teach[a->nteach], j - start);
            a->nteach++;
            start = k;
        }
    /* the EMA block: teacher weights, its own running statistics (used only in training mode,
     * like the official EMA_Net, so they never affect an output) */
    man_block *e = &a->ema;
    *e = *src;
    tensor **slots[BLOCK_TENSORS] = {&e->conv1.w, &e->bn1.gamma,     &e->bn1.beta,
                                     &e->conv2.w, &e->bn2.gamma,     &e->bn2.beta,
                                     &e->down.w,  &e->down_bn.gamma, &e->down_bn.beta};
    for (int k = 0; k < a->nt; k++)
        *slots[k] = a->emat[k];
    nn_batchnorm *bns[3] = {&e->bn1, &e->bn2, &e->down_bn};
    for (int k = 0; k < (e->has_down ? 3 : 2); k++) {
        bns[k]->running_mean = tensor_new(m->c->teachers, PK_F32, 1, (int64_t[]){e->cout});
        bns[k]->running_var = tensor_new(m->c->teachers, PK_F32, 1, (int64_t[]){e->cout});
        if (!bns[k]->running_mean || !bns[k]->running_var) return PK_ERR_NOMEM;
        PK_TRY(tensor_fill(bns[k]->running_mean, 0.0f));
        PK_TRY(tensor_fill(bns[k]->running_var, 1.0f));
    }
    for (int k = 0; k < a->nt; k++)
        PK_TRY(list_add(&a->params, &a->nparams, a->lbt[k]));
    a->has_lb = true;
    return PK_OK;
}

static pk_status head_params(man_aux *a) {
    tensor *ts[] = {a->head.c1.w,     a->head.b1.gamma, a->head.b1.beta, a->head.c2.w,
                    a->head.b2.gamma, a->head.b2.beta,  a->head.f1.w,    a->head.f1.b,
                    a->head.f2.w,     a->head.f2.b};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        PK_TRY(list_add(&a->params, &a->nparams, ts[k]));
    if (!a->has_dec) return PK_OK;
    tensor *ds[] = {a->dec.c1.w,    a->dec.c1.b, a->dec.b1.gamma,
                    a->dec.b1.beta, a->dec.c2.w, a->dec.c2.b};
    for (size_t k = 0; k < sizeof ds / sizeof ds[0]; k++)
        PK_TRY(list_add(&a->params, &a->nparams, ds[k]));
    return PK_OK;
}

static pk_status model_build(man_model *m) {
    man_config *cfg = &m->cfg;
    pk_ctx *c = m->c;
    const man_cut *cuts;
    PK_TRY(man_split_table(cfg->arch, cfg->blocks, &cuts, &m->nmod));
    m->nper = cfg->arch == MAN_RESNET110 ? 18 : 5;
    m->nblocks = 3 * m->nper;
    m->blocks = calloc((size_t)m->nblocks, sizeof *m->blocks);
    m->mod_end = calloc((size_t)m->nmod, sizeof *m->mod_end);
    m->mod_params = calloc((size_t)m->nmod, sizeof *m->mod_params);
    m->mod_nparams = calloc((size_t)m->nmod, sizeof *m->mod_nparams);
    m->aux = calloc((size_t)(m->nmod > 1 ? m->nmod - 1 : 1), sizeof *m->aux);
    if (!m->blocks || !m->mod_end || !m->mod_params || !m->mod_nparams || !m->aux)
        return pk_error(PK_ERR_NOMEM, "man: out of host memory");
    for (int i = 0; i < m->nmod; i++)
        m->mod_end[i] = (cuts[i].stage - 1) * m->nper + cuts[i].block;
    PK_TRY(pk_arena_create(c->dev, "man-carry", 0, &m->carry));

    pk_rng rng = {cfg->seed};
    /* backbone, in the official module order (conv1, bn1, layer1..3, fc64) */
    PK_TRY(conv_new(m, "conv1", cfg->in_channels, 16, 3, 1, false, &rng, &m->stem));
    PK_TRY(bn_new(m, "bn1", 16, &m->stem_bn));
    int cin = 16;
    for (int s = 1; s <= 3; s++)
        for (int b = 0; b < m->nper; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s, b);
            int w = stage_width(s);
            PK_TRY(block_new(m, prefix, cin, w, b == 0 && s > 1 ? 2 : 1, &rng,
                             &m->blocks[(s - 1) * m->nper + b]));
            cin = w;
        }
    PK_TRY(linear_new(m, "fc", 64, cfg->classes, &rng, &m->fc));

    /* per-module trainable tensors */
    int first = 0;
    for (int i = 0; i < m->nmod; i++) {
        if (i == 0) {
            PK_TRY(list_add(&m->mod_params[0], &m->mod_nparams[0], m->stem.w));
            PK_TRY(list_add(&m->mod_params[0], &m->mod_nparams[0], m->stem_bn.gamma));
            PK_TRY(list_add(&m->mod_params[0], &m->mod_nparams[0], m->stem_bn.beta));
        }
        for (int b = first; b <= m->mod_end[i]; b++) {
            tensor *ts[BLOCK_TENSORS];
            int n = block_tensors(&m->blocks[b], ts);
            for (int k = 0; k < n; k++)
                PK_TRY(list_add(&m->mod_params[i], &m->mod_nparams[i], ts[k]));
        }
        if (i == m->nmod - 1) {
            PK_TRY(list_add(&m->mod_params[i], &m->mod_nparams[i], m->fc.w));
            PK_TRY(list_add(&m->mod_params[i], &m->mod_nparams[i], m->fc.b));
        }
        first = m->mod_end[i] + 1;
    }

    /* auxiliary networks of modules 0 .. nmod-2 */
    double l1[2], l2[2];
    if (cfg->lambda_set)
        memcpy(l1, cfg->lambda1, sizeof l1), memcpy(l2, cfg->lambda2, sizeof l2);
    else
        default_lambdas(cfg, l1, l2);
    for (int i = 0; i < m->nmod - 1; i++) {
        man_aux *a = &m->aux[i];
        int next = m->mod_end[i] + 1; /* the first block of module i+1 */
        double ratio = m->cfg.blocks > 2 ? (double)i / (double)(m->cfg.blocks - 2) : 0.0;
        if (uses_decoder(cfg->method)) {
            a->l1 = l1[0] * (1 - ratio) + l1[1] * ratio;
            a->l2 = l2[0] * (1 - ratio) + l2[1] * ratio;
        } else { /* DGL: the plain cross-entropy of the auxiliary classifier */
            a->l1 = 0.0;
            a->l2 = 1.0;
        }
        if (!(a->l1 > 0) && !(a->l2 > 0))
            return pk_error(PK_ERR_INVALID,
                            "man: local module %d has zero loss weights (lambda1 %g, lambda2 %g); "
                            "it would never train",
                            i, a->l1, a->l2);
        /* the auxiliary input: the module's output h, or LB(h) + EMA(h) shaped like block next */
        int stage = uses_man(cfg->method) ? next / m->nper + 1 : m->mod_end[i] / m->nper + 1;
        char prefix[32];
        if (uses_man(cfg->method)) PK_TRY(lb_ema_new(m, i, &m->blocks[next], &rng, a));
        a->has_dec = uses_decoder(cfg->method);
        snprintf(prefix, sizeof prefix, "aux%d.decoder", i);
        if (a->has_dec) PK_TRY(decoder_new(m, prefix, stage_width(stage), stage, &rng, &a->dec));
        snprintf(prefix, sizeof prefix, "aux%d.head", i);
        PK_TRY(head_new(m, prefix, stage_width(stage), &rng, &a->head));
        PK_TRY(head_params(a));
    }

    /* one SGD group over everything trainable (the official optimizer takes model.parameters()) */
    tensor **all = NULL;
    int nall = 0;
    for (int i = 0; i < m->nmod; i++)
        for (int k = 0; k < m->mod_nparams[i]; k++)
            PK_TRY(list_add(&all, &nall, m->mod_params[i][k]));
    for (int i = 0; i < m->nmod - 1; i++)
        for (int k = 0; k < m->aux[i].nparams; k++)
            PK_TRY(list_add(&all, &nall, m->aux[i].params[k]));
    pk_param_group g = {
        .name = "all", .params = all, .n = nall, .lr = cfg->lr, .weight_decay = cfg->weight_decay};
    pk_optim_options oo = {.kind = PK_OPTIM_SGD,
                           .sgd = {.lr = cfg->lr,
                                   .momentum = cfg->sgd_momentum,
                                   .weight_decay = cfg->weight_decay,
                                   .nesterov = true}};
    pk_status s = optim_create(c, &oo, &g, 1, &m->opt);
    free(all);
    PK_TRY(s);

    /* carry buffers: the batch and the largest module output (stage 1: 16 x H x W) */
    int64_t nb = cfg->batch, img = (int64_t)cfg->in_channels * cfg->height * cfg->width;
    m->cx = tensor_new(m->carry, PK_F32, 1, (int64_t[]){nb * img});
    m->ctarget = tensor_new(m->carry, PK_F32, 1, (int64_t[]){nb * img});
    m->clabels = tensor_new(m->carry, PK_I32, 1, (int64_t[]){nb});
    m->cfeat = m->nmod > 1 ? tensor_new(m->carry, PK_F32, 1,
                                        (int64_t[]){nb * 16 * cfg->height * cfg->width})
                           : m->cx;
    m->logits = malloc(sizeof(float) * (size_t)nb * (size_t)cfg->classes);
    if (!m->cx || !m->ctarget || !m->clabels || !m->cfeat || !m->logits) return PK_ERR_NOMEM;
    return PK_OK;
}

/* The synchronised batch norms' reduction (pk_ctx.bn_allreduce): a sum over the ranks. */
static pk_status bn_sum_over_ranks(void *user, double *x, int64_t n) {
    (void)user;
    return dist_sum_f64(x, n);
}

pk_status man_model_create(pk_ctx *c, const man_config *cfg, man_model **out) {
    *out = NULL;
    man_config k = *cfg;
    if (k.sync_bn) {
        if (c->backend != PK_BACKEND_CPU)
            return pk_error(PK_ERR_UNSUPPORTED,
                            "man: --sync-bn runs on the CPU backend only (device %s)",
                            pk_device_get_info(c->dev)->name);
        c->bn_allreduce = bn_sum_over_ranks, c->bn_allreduce_user = NULL;
    }
    if (k.method < 0 || k.method >= MAN_METHOD_COUNT)
        return pk_error(PK_ERR_INVALID, "man: unknown method %d", (int)k.method);
    if (k.method == MAN_E2E) k.blocks = 1;
    if (k.blocks < 1) return pk_error(PK_ERR_INVALID, "man: blocks (K) must be >= 1");
    if (k.method != MAN_E2E && k.blocks < 2)
        return pk_error(PK_ERR_INVALID, "man: method %s needs K >= 2 local modules",
                        man_method_name(k.method));
    if (k.in_channels < 1 || k.height < 4 || k.width < 4 || k.classes < 2 || k.batch < 1)
        return pk_error(PK_ERR_INVALID,
                        "man: config needs in_channels >= 1, height and width >= 4, classes >= 2 "
                        "and batch >= 1 (got %d, %dx%d, %d, %d)",
                        k.in_channels, k.height, k.width, k.classes, k.batch);
    if (!(k.lr > 0)) return pk_error(PK_ERR_INVALID, "man: learning rate must be > 0");
    if (k.weight_decay == 0) k.weight_decay = 1e-4;
    if (k.sgd_momentum == 0) k.sgd_momentum = 0.9;
    if (k.ema_momentum == 0) k.ema_momentum = 0.995;
    man_model *m = calloc(1, sizeof *m);
    if (!m) return pk_error(PK_ERR_NOMEM, "man: out of host memory");
    m->c = c;
    m->cfg = k;
    pk_status s = model_build(m);
    if (s != PK_OK) {
        man_model_destroy(m);
        return s;
    }
    *out = m;
    return PK_OK;
}

void man_model_destroy(man_model *m) {
    if (!m) return;
    if (m->aux)
        for (int i = 0; i < m->nmod - 1; i++) {
            for (int k = 0; k < m->aux[i].nteach; k++)
                teacher_destroy(m->aux[i].teach[k]);
            free(m->aux[i].params);
        }
    if (m->mod_params)
        for (int i = 0; i < m->nmod; i++)
            free(m->mod_params[i]);
    optim_destroy(m->opt);
    pk_arena_destroy(m->carry);
    free(m->mod_params), free(m->mod_nparams), free(m->aux), free(m->mod_end), free(m->blocks);
    free(m->persist), free(m->logits);
    free(m);
}

const man_config *man_model_config(const man_model *m) { return &m->cfg; }

int man_module_count(const man_model *m) { return m->nmod; }

static int64_t count(tensor *const *ts, int n) {
    int64_t s = 0;
    for (int k = 0; k < n; k++)
        s += tensor_numel(ts[k]);
    return s;
}

int64_t man_module_param_count(const man_model *m, int i) {
    return i >= 0 && i < m->nmod ? count(m->mod_params[i], m->mod_nparams[i]) : 0;
}

int64_t man_aux_param_count(const man_model *m, int i) {
    return i >= 0 && i < m->nmod - 1 ? count(m->aux[i].params, m->aux[i].nparams) : 0;
}

void man_loss_weights(const man_model *m, int i, double *lambda1, double *lambda2) {
    bool ok = i >= 0 && i < m->nmod - 1;
    *lambda1 = ok ? m->aux[i].l1 : 0.0;
    *lambda2 = ok ? m->aux[i].l2 : 0.0;
}

tensor *const *man_module_params(const man_model *m, int i, int *n) {
    *n = i >= 0 && i < m->nmod ? m->mod_nparams[i] : 0;
    return *n ? m->mod_params[i] : NULL;
}

pk_status man_ema_tensors(const man_model *m, int i, tensor *const **source, tensor *const **ema,
                          tensor *const **lb, int *n) {
    if (i < 0 || i >= m->nmod - 1 || !m->aux[i].has_lb)
        return pk_error(PK_ERR_INVALID, "man: module %d has no EMA block (method %s, %d modules)",
                        i, man_method_name(m->cfg.method), m->nmod);
    *source = m->aux[i].src, *ema = m->aux[i].emat, *lb = m->aux[i].lbt, *n = m->aux[i].nt;
    return PK_OK;
}

pk_optimizer *man_model_optimizer(man_model *m) { return m->opt; }

/* ---- forward pieces ---- */

/* Module i's backbone segment: (stem for i == 0) and its blocks. */
static tensor *module_forward(man_model *m, int i, tensor *x) {
    pk_ctx *c = m->c;
    if (i == 0)
        x = nn_batchnorm_forward_act(c, &m->stem_bn, nn_conv2d_forward(c, &m->stem, x), NULL, true);
    for (int b = i ? m->mod_end[i - 1] + 1 : 0; b <= m->mod_end[i]; b++)
        x = block_forward(c, &m->blocks[b], x);
    return x;
}

/* A view of the first n items of a carry buffer with the given per-item shape. */
static tensor *carry_view(pk_ctx *c, tensor *buf, int n, int ndim, const int64_t *item) {
    int64_t shape[PK_MAX_DIMS], strides[PK_MAX_DIMS];
    shape[0] = n;
    for (int d = 1; d < ndim; d++)
        shape[d] = item[d - 1];
    strides[ndim - 1] = 1;
    for (int d = ndim - 2; d >= 0; d--)
        strides[d] = strides[d + 1] * shape[d + 1];
    return tensor_view(c->step, buf, ndim, shape, strides, buf->offset);
}

/* Copies h (contiguous, in the step arena) into the carry feature buffer. */
static pk_status carry_store(man_model *m, tensor *h) {
    tensor *dst = carry_view(m->c, m->cfeat, 1, 1, NULL);
    if (!dst) return PK_ERR_NOMEM;
    dst->shape[0] = tensor_numel(h);
    PK_TRY(pk_fill(m->c, dst, 0.0f));
    return pk_accumulate(m->c, dst, h);
}

static pk_status upload_batch(man_model *m, const man_batch *b, bool target) {
    if (b->n < 1 || b->n > m->cfg.batch)
        return pk_error(PK_ERR_INVALID, "man: batch of %d samples (the model holds up to %d)", b->n,
                        m->cfg.batch);
    int64_t img = (int64_t)m->cfg.in_channels * m->cfg.height * m->cfg.width;
    PK_TRY(pk_step_begin(m->c));
    tensor *x = carry_view(m->c, m->cx, 1, 1, NULL), *y = carry_view(m->c, m->clabels, 1, 1, NULL);
    if (!x || !y) return PK_ERR_NOMEM;
    x->shape[0] = b->n * img;
    y->shape[0] = b->n;
    PK_TRY(tensor_upload(x, b->x));
    PK_TRY(tensor_upload(y, b->labels));
    if (target) {
        tensor *t = carry_view(m->c, m->ctarget, 1, 1, NULL);
        if (!t) return PK_ERR_NOMEM;
        t->shape[0] = b->n * img;
        PK_TRY(tensor_upload(t, b->target));
    }
    return PK_OK;
}

static int count_correct(const float *logits, const int32_t *labels, int n, int classes,
                         int32_t *pred) {
    int correct = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < classes; k++)
            if (logits[(size_t)i * classes + k] > logits[(size_t)i * classes + best]) best = k;
        if (pred) pred[i] = best;
        if (labels) correct += best == labels[i];
    }
    return correct;
}

/* The device sums of the steps that do not read their statistics back: (3) loss, auxiliary
 * loss (unweighted by 1 / (modules - 1)), correct predictions; allocated on first use. */
static pk_status stats_tensor(man_model *m, tensor **out) {
    if (!m->stats) {
        m->stats = tensor_new(m->carry, PK_F32, 1, (int64_t[]){3});
        if (!m->stats) return PK_ERR_NOMEM;
        PK_TRY(pk_fill(m->c, m->stats, 0.0f));
    }
    *out = m->stats;
    return PK_OK;
}

/* Element i of the statistics tensor, as a view in the step arena. */
static tensor *stat_view(man_model *m, int i) {
    return tensor_view(m->c->step, m->stats, 1, (int64_t[]){1}, (int64_t[]){1},
                       m->stats->offset + i);
}

/* Every module's forward and local backward on the n samples in the carry buffers. `st`
 * non-NULL: each module's loss and the logits are read back (`labels`: the host labels, or
 * NULL to read the carried ones); NULL: they are added to the device sums (stats_tensor) and
 * nothing is read. `reset`: start each module with pk_step_reset (no device wait) instead of
 * pk_step_begin. */
static pk_status module_steps(man_model *m, int n, const int32_t *labels_host,
                              const float *loss_scale, man_step_stats *st, bool reset) {
    pk_ctx *c = m->c;
    man_step_stats z = {0};
    tensor *sums = NULL;
    if (!st) PK_TRY(stats_tensor(m, &sums));
    const int64_t img_shape[3] = {m->cfg.in_channels, m->cfg.height, m->cfg.width};
    int64_t feat[3] = {0};
    for (int i = 0; i < m->nmod; i++) {
        PK_TRY(reset ? pk_step_reset(c) : pk_step_begin(c));
        tensor *x =
            i == 0 ? carry_view(c, m->cx, n, 4, img_shape) : carry_view(c, m->cfeat, n, 4, feat);
        tensor *labels = carry_view(c, m->clabels, n, 1, NULL);
        tensor *h = module_forward(m, i, x), *loss = NULL, *logits = NULL;
        if (i < m->nmod - 1) {
            man_aux *a = &m->aux[i];
            tensor *y = a->has_lb
                            ? pk_add(c, block_forward(c, &a->lb, h), block_forward(c, &a->ema, h))
                            : h;
            if (a->l2 != 0)
                loss = pk_scale(c, pk_cross_entropy(c, head_forward(c, &a->head, y), labels, 0, 0),
                                (float)a->l2);
            if (a->has_dec && a->l1 != 0) {
                tensor *target = carry_view(c, m->ctarget, n, 4, img_shape);
                tensor *r = pk_scale(c, decoder_loss(c, &a->dec, y, target), (float)a->l1);
                loss = loss ? pk_add(c, loss, r) : r;
            }
        } else {
            logits = nn_linear_forward(c, &m->fc, pk_global_avgpool(c, h));
            loss = pk_cross_entropy(c, logits, labels, 0, 0);
        }
        if (loss && loss_scale) loss = pk_scale(c, loss, loss_scale[i]);
        if (!h || !loss) {
            char why[256];
            snprintf(why, sizeof why, "%s", polyak_error());
            return pk_error(PK_ERR_INVALID, "man: module %d forward: %s", i, why);
        }
        PK_TRY(autograd_backward(c, loss));
        if (!st) { /* on the device: loss into its sum, the last module's hits */
            tensor *slot = stat_view(m, i < m->nmod - 1 ? 1 : 0);
            if (!slot) return PK_ERR_NOMEM;
            PK_TRY(pk_accumulate(c, slot, loss));
            if (i == m->nmod - 1) {
                tensor *hits = stat_view(m, 2);
                if (!hits) return PK_ERR_NOMEM;
                PK_TRY(pk_count_correct(c, logits, labels, hits));
            }
            if (i < m->nmod - 1) {
                PK_TRY(carry_store(m, h)); /* detached: only values cross into module i+1 */
                for (int d = 0; d < 3; d++)
                    feat[d] = h->shape[d + 1];
            }
            continue;
        }
        float lv = 0;
        PK_TRY(tensor_download(loss, &lv));
        if (i < m->nmod - 1) {
            z.aux_loss += lv / (m->nmod - 1);
            PK_TRY(carry_store(m, h)); /* detached: only values cross into module i+1 */
            for (int d = 0; d < 3; d++)
                feat[d] = h->shape[d + 1];
        } else {
            z.loss = lv;
            PK_TRY(tensor_download(logits, m->logits));
            if (labels_host) {
                z.correct = count_correct(m->logits, labels_host, n, m->cfg.classes, NULL);
            } else {
                int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
                if (!lab) return pk_error(PK_ERR_NOMEM, "man: out of host memory");
                pk_status s = tensor_download(labels, lab);
                if (s == PK_OK) z.correct = count_correct(m->logits, lab, n, m->cfg.classes, NULL);
                free(lab);
                PK_TRY(s);
            }
        }
    }
    if (st) *st = z;
    return PK_OK;
}

pk_status man_compute_grads(man_model *m, const man_batch *b, const float *loss_scale,
                            man_step_stats *st) {
    m->c->training = true;
    PK_TRY(optim_zero_grad(m->opt));
    PK_TRY(upload_batch(m, b, true));
    man_step_stats z;
    PK_TRY(module_steps(m, b->n, b->labels, loss_scale, &z, false));
    if (st) *st = z;
    return PK_OK;
}

pk_status man_train_step(man_model *m, const man_batch *b, man_step_stats *st) {
    PK_TRY(man_compute_grads(m, b, NULL, st));
    /* data parallel (tasks/common/dist.h): each rank's losses are means over its shard, so the
     * mean of the ranks' gradients is the global batch's; identity in a world of one */
    PK_TRY(dist_average_grads(m->c));
    return man_apply_step(m);
}

pk_status man_train_step_device(man_model *m, const man_device_data *d, int64_t first, int n,
                                man_step_stats *st) {
    pk_ctx *c = m->c;
    if (n < 1 || n > m->cfg.batch)
        return pk_error(PK_ERR_INVALID, "man: batch of %d samples (the model holds up to %d)", n,
                        m->cfg.batch);
    if (d->channels != m->cfg.in_channels || d->height != m->cfg.height || d->width != m->cfg.width)
        return pk_error(PK_ERR_INVALID,
                        "man: resident images are %dx%dx%d, the model takes %dx%dx%d", d->width,
                        d->height, d->channels, m->cfg.width, m->cfg.height, m->cfg.in_channels);
    c->training = true;
    PK_TRY(pk_step_reset(c));
    PK_TRY(optim_zero_grad(m->opt));
    int64_t img = (int64_t)m->cfg.in_channels * m->cfg.height * m->cfg.width;
    tensor *x = carry_view(c, m->cx, 1, 1, NULL), *t = carry_view(c, m->ctarget, 1, 1, NULL);
    tensor *y = carry_view(c, m->clabels, 1, 1, NULL);
    if (!x || !t || !y) return PK_ERR_NOMEM;
    x->shape[0] = t->shape[0] = n * img;
    y->shape[0] = n;
    pk_image_batch_params p = {.n = n,
                               .first = first,
                               .images = tensor_numel(d->labels),
                               .c = d->channels,
                               .h = d->height,
                               .w = d->width,
                               .pad = d->pad,
                               .reflect = d->reflect};
    for (int k = 0; k < 3; k++)
        p.mean[k] = d->mean[k], p.std[k] = d->std[k];
    PK_TRY(pk_image_batch(c, d->images, d->labels, d->plan, &p, x, t, y));
    PK_TRY(module_steps(m, n, NULL, NULL, st, true));
    PK_TRY(dist_average_grads(c));
    PK_TRY(man_apply_step(m));
    return pk_device_submit(c->dev);
}

pk_status man_stats_take(man_model *m, double *loss, double *aux, int64_t *correct) {
    *loss = *aux = 0.0, *correct = 0;
    if (!m->stats) return PK_OK;
    float h[3];
    PK_TRY(tensor_download(m->stats, h));
    PK_TRY(pk_fill(m->c, m->stats, 0.0f));
    *loss = h[0];
    *aux = m->nmod > 1 ? (double)h[1] / (m->nmod - 1) : 0.0;
    *correct = (int64_t)h[2];
    return PK_OK;
}

pk_status man_apply_step(man_model *m) {
    /* EMA_i <- m EMA_i + (1 - m) block: the official code does this right after module i's
     * backward, before optimizer.step(); the block's parameters do not change in between, so
     * doing every update here gives the same values. */
    for (int i = 0; i < m->nmod - 1; i++)
        for (int k = 0; k < m->aux[i].nteach; k++)
            PK_TRY(teacher_update(m->aux[i].teach[k]));
    return optim_step(m->opt);
}

pk_status man_predict(man_model *m, const man_batch *b, int32_t *pred) {
    pk_ctx *c = m->c;
    bool was_training = c->training, old = pk_set_grad_enabled(c, false);
    c->training = false;
    pk_status s = upload_batch(m, b, false);
    const int64_t img_shape[3] = {m->cfg.in_channels, m->cfg.height, m->cfg.width};
    int64_t feat[3] = {0};
    for (int i = 0; i < m->nmod && s == PK_OK; i++) {
        if ((s = pk_step_begin(c)) != PK_OK) break;
        tensor *x = i == 0 ? carry_view(c, m->cx, b->n, 4, img_shape)
                           : carry_view(c, m->cfeat, b->n, 4, feat);
        tensor *h = module_forward(m, i, x);
        if (!h) {
            char why[256];
            snprintf(why, sizeof why, "%s", polyak_error());
            s = pk_error(PK_ERR_INVALID, "man: module %d inference: %s", i, why);
            break;
        }
        if (i < m->nmod - 1) {
            s = carry_store(m, h);
            for (int d = 0; d < 3; d++)
                feat[d] = h->shape[d + 1];
            continue;
        }
        tensor *logits = nn_linear_forward(c, &m->fc, pk_global_avgpool(c, h));
        if (!logits)
            s = PK_ERR_INVALID;
        else if ((s = tensor_download(logits, m->logits)) == PK_OK)
            count_correct(m->logits, NULL, b->n, m->cfg.classes, pred);
    }
    c->training = was_training;
    pk_set_grad_enabled(c, old);
    return s;
}

pk_status man_state_list(man_model *m, man_state_entry **out, int *n) {
    int cap = m->npersist + 16 * m->nmod + optim_state_count(m->opt) + 8;
    man_state_entry *e = calloc((size_t)cap, sizeof *e);
    if (!e) return pk_error(PK_ERR_NOMEM, "man: out of host memory");
    int k = 0;
    for (int i = 0; i < m->npersist; i++) {
        snprintf(e[k].name, sizeof e[k].name, "%s", m->persist[i]->name);
        e[k++].t = m->persist[i];
    }
    for (int i = 0; i < m->nmod - 1; i++) {
        man_aux *a = &m->aux[i];
        if (!a->has_lb) continue;
        for (int j = 0; j < a->nt; j++) {
            snprintf(e[k].name, sizeof e[k].name, "ema%d.%s", i, a->src[j]->name);
            e[k++].t = a->emat[j];
        }
    }
    for (int i = 0; i < optim_state_count(m->opt); i++) {
        e[k].t = optim_state_get(m->opt, i, e[k].name, sizeof e[k].name);
        k++;
    }
    *out = e;
    *n = k;
    return PK_OK;
}

void man_set_counters(man_model *m, int64_t optim_steps) {
    optim_set_steps(m->opt, optim_steps);
    for (int i = 0; i < m->nmod - 1; i++)
        for (int k = 0; k < m->aux[i].nteach; k++)
            teacher_set_updates(m->aux[i].teach[k], optim_steps);
}

man_memory man_model_memory(const man_model *m) {
    pk_ctx *c = m->c;
    man_memory r = {.params = pk_arena_get_stats(c->params).high_water,
                    .grads = pk_arena_get_stats(c->grads).high_water,
                    .state = pk_arena_get_stats(c->state).high_water,
                    .teachers = pk_arena_get_stats(c->teachers).high_water,
                    .activations = pk_arena_get_stats(c->step).high_water,
                    .buffers = pk_arena_get_stats(m->carry).high_water};
    r.total = r.params + r.grads + r.state + r.teachers + r.activations + r.buffers;
    return r;
}
