/* ctp_run.c - the `polyak ctp` run: data and vocabulary, the model with its momentum teacher and
 * frozen reference, the training step, the task loop (CTP, its ablations, SeqF, joint) and the
 * metrics (evaluation and the model file: ctp_eval.c), all on tasks/common/run.h's harness (folder,
 * log.csv, metrics.json, checkpoints at task ends and on a stop request, resume). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctp_internal.h"
#include "dist.h"

static const char *const method_names[] = {"ctp", "seqf", "joint", "ctp-no-topo", "ctp-no-cm"};

const char *ctp_method_name(ctp_method m) { return (unsigned)m < 5 ? method_names[m] : "?"; }

bool ctp_method_parse(const char *s, ctp_method *m) {
    for (int i = 0; i < 5; i++)
        if (strcmp(s, method_names[i]) == 0) {
            *m = (ctp_method)i;
            return true;
        }
    return false;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool uses_ref(ctp_method m) {
    return m == CTP_METHOD_CTP || m == CTP_METHOD_NO_TOPO || m == CTP_METHOD_NO_CM;
}
static bool uses_topo(ctp_method m) { return m == CTP_METHOD_CTP || m == CTP_METHOD_NO_CM; }
static bool uses_cm(ctp_method m) { return m == CTP_METHOD_CTP || m == CTP_METHOD_NO_TOPO; }

static void fill_defaults(ctp_options *o) {
#define D(F, V)                                                                                    \
    do {                                                                                           \
        if (!(o->F > 0)) o->F = V;                                                                 \
    } while (0)
    D(epochs, 5);
    D(batch, 32);
    D(lr, 1e-4); /* CTP's init_lr; 5e-4 without warm-up sends pretrained starts to chance */
    D(weight_decay, 0.05);
    D(min_lr_ratio, 0.01);
    D(text_mlm_lr, 5e-4);
    D(text_mlm_wd, 0.02);
    D(patch, 4);
    D(dim, 96);
    D(depth, 3);
    D(heads, 4);
    D(txt_dim, 96);
    D(txt_depth, 2);
    D(txt_heads, 4);
    D(max_len, 32);
    D(vocab_size, 1000);
    D(embed, 256);
    D(queue, 1024);
    D(temp, 0.07);
    D(momentum, 0.995);
    D(topo_weight, 1.0);
#undef D
    if (o->warmup_steps < 0) o->warmup_steps = 0;
    if (o->ita_weight == 0) o->ita_weight = 1.0;
    if (o->ita_weight < 0) o->ita_weight = 0;
    if (o->alpha < 0) o->alpha = 0;
}

/* ---- data ---- */

static pk_status parse_order(ctp_state *s, int *order) {
    int n = s->ps.ntasks;
    for (int i = 0; i < n; i++)
        order[i] = i;
    if (s->o.task_order) {
        char *list = strdup(s->o.task_order), *save = NULL;
        int k = 0;
        pk_status st = PK_OK;
        for (char *tok = strtok_r(list, ",", &save); tok && st == PK_OK;
             tok = strtok_r(NULL, ",", &save)) {
            int found = -1;
            for (int t = 0; t < n; t++)
                if (strcmp(s->ps.task_names[t], tok) == 0) found = t;
            char *end;
            long v = strtol(tok, &end, 10);
            if (found < 0 && !*end && v >= 0 && v < n) found = (int)v;
            if (found < 0)
                st = pk_error(PK_ERR_INVALID, "ctp: --task-order names '%s', not a task of %s", tok,
                              s->o.data);
            else if (k == n)
                st = pk_error(PK_ERR_INVALID, "ctp: --task-order lists more than %d tasks", n);
            else
                order[k++] = found;
        }
        free(list);
        PK_TRY(st);
        if (k != n)
            return pk_error(PK_ERR_INVALID, "ctp: --task-order lists %d of the %d tasks", k, n);
    } else if (s->o.order_seed) {
        pk_rng r = {s->o.order_seed * 0x9E3779B97F4A7C15ull + 0x0DE5};
        pk_rng_shuffle(&r, (int32_t *)order, n);
    }
    return ctp_pairs_order_tasks(&s->ps, order);
}

static pk_status load_data(ctp_state *s) {
    ctp_read_options ro = {
        .task_field = s->o.task_field, .test_fraction = s->o.test_fraction, .seed = s->o.seed};
    PK_TRY(ctp_pairs_read(s->o.data, &ro, &s->ps));
    int order[CTP_MAX_TASKS];
    PK_TRY(parse_order(s, order));
    s->T = s->o.max_tasks > 0 && s->o.max_tasks < s->ps.ntasks ? s->o.max_tasks : s->ps.ntasks;
    s->stages = s->o.method == CTP_METHOD_JOINT ? 1 : s->T;
    for (int t = 0; t < s->T; t++) {
        int ntr = 0, nte = 0;
        for (int i = 0; i < s->ps.n; i++)
            if (s->ps.p[i].task == t) s->ps.p[i].test ? nte++ : ntr++;
        if (!ntr || !nte)
            return pk_error(PK_ERR_FORMAT,
                            "%s: task '%s' has %d training and %d held-out pairs; "
                            "both must be > 0",
                            s->o.data, s->ps.task_names[t], ntr, nte);
    }
    /* the vocabulary from the training captions of the run's tasks (one text per group) */
    const char **texts = malloc(sizeof(char *) * (size_t)s->ps.ntexts);
    bool *seen = calloc((size_t)s->ps.ntexts, 1);
    if (!texts || !seen) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    int nt = 0;
    for (int i = 0; i < s->ps.n; i++) {
        const ctp_pair *p = &s->ps.p[i];
        if (p->test || p->task >= s->T || seen[p->text]) continue;
        seen[p->text] = true;
        texts[nt++] = p->caption;
    }
    pk_status st = ctp_vocab_learn(texts, nt, s->o.vocab_size, &s->vocab);
    free(texts), free(seen);
    PK_TRY(st);
    /* tokens of every caption group */
    int L = s->o.max_len;
    s->tokens = malloc(sizeof(int32_t) * (size_t)s->ps.ntexts * (size_t)L);
    s->tmask = malloc(sizeof(float) * (size_t)s->ps.ntexts * (size_t)L);
    if (!s->tokens || !s->tmask) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (int i = 0; i < s->ps.n; i++) {
        const ctp_pair *p = &s->ps.p[i];
        int32_t *ids = s->tokens + (size_t)p->text * L;
        int real = ctp_encode(&s->vocab, p->caption, L, ids);
        for (int k = 0; k < L; k++) {
            s->tmask[(size_t)p->text * L + k] = k < real ? 0.0f : -1e4f;
            /* checked here, where the ids are made: on Vulkan the embedding cannot report an
             * id outside its table (checking there would read every batch back) */
            if (ids[k] < 0 || ids[k] >= s->vocab.n)
                return pk_error(PK_ERR_INVALID,
                                "ctp: caption \"%s\" encodes to id %d at position %d, outside "
                                "the %d-piece vocabulary",
                                p->caption, (int)ids[k], k, s->vocab.n);
        }
    }
    /* images in [0, 1], then normalised per channel by the training images' mean and std
     * (the emoji are mostly white background: with a fixed 0.5/0.5 every background patch
     * embeds alike and a random encoder's class tokens start nearly identical); a --backbone
     * whose file records its preprocessing gets that instead (what it was trained on) */
    size_t px = (size_t)s->C * s->S * s->S, hw = (size_t)s->S * s->S;
    s->images = malloc(sizeof(float) * px * (size_t)s->ps.n);
    float *rgb = malloc(sizeof(float) * 3 * hw);
    if (!s->images || !rgb) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0}, cnt = 0;
    for (int i = 0; i < s->ps.n && st == PK_OK; i++) {
        if (s->ps.p[i].task >= s->T) continue;
        st = ctp_image_load(s->ps.p[i].image, s->S, rgb);
        float *dst = s->images + px * (size_t)i;
        for (size_t k = 0; k < hw && st == PK_OK; k++) {
            if (s->C == 1)
                dst[k] = (rgb[k] + rgb[hw + k] + rgb[2 * hw + k]) / 3.0f;
            else
                for (int ch = 0; ch < 3; ch++)
                    dst[ch * hw + k] = rgb[ch * hw + k];
        }
        if (s->ps.p[i].test) continue;
        for (int ch = 0; ch < s->C; ch++)
            for (size_t k = 0; k < hw; k++) {
                double v = dst[ch * hw + k];
                sum[ch] += v, sq[ch] += v * v;
            }
        cnt += (double)hw;
    }
    for (int ch = 0; ch < s->C && st == PK_OK; ch++) {
        if (!s->backbone_norm) {
            s->mean[ch] = (float)(sum[ch] / cnt);
            s->std[ch] = (float)sqrt(fmax(sq[ch] / cnt - (sum[ch] / cnt) * (sum[ch] / cnt), 1e-6));
        }
        s->white[ch] = (1.0f - s->mean[ch]) / s->std[ch];
    }
    for (int i = 0; i < s->ps.n && st == PK_OK; i++) {
        if (s->ps.p[i].task >= s->T) continue;
        float *dst = s->images + px * (size_t)i;
        for (int ch = 0; ch < s->C; ch++)
            for (size_t k = 0; k < hw; k++)
                dst[ch * hw + k] = (dst[ch * hw + k] - s->mean[ch]) / s->std[ch];
    }
    free(rgb);
    return st;
}

/* ---- model ---- */

static pk_status build(ctp_state *s) {
    ctp_options *o = &s->o;
    ctp_model_config mc = {.vocab = s->vocab.n,
                           .txt_dim = o->txt_dim,
                           .txt_depth = o->txt_depth,
                           .txt_heads = o->txt_heads,
                           .max_len = o->max_len,
                           .embed = o->embed};
    if (o->backbone) {
        PK_TRY(backbone_config(o->backbone, NULL, &mc.vision, NULL));
        mc.vision.num_classes = 0;
    } else {
        mc.vision = (vit_config){.name = "ctp_vit",
                                 .patch = o->patch,
                                 .in_chans = 3,
                                 .dim = o->dim,
                                 .depth = o->depth,
                                 .heads = o->heads,
                                 .mlp_hidden = 4 * o->dim,
                                 .ln_eps = 1e-6f};
    }
    mc.vision.img_size = s->S;
    pk_rng rng = {o->seed * 0x9E3779B97F4A7C15ull + 0xC7B};
    PK_TRY(ctp_model_create(s->c, &mc, "", &rng, &s->model));
    /* Vulkan, one process: the epoch's loss sums on the device (under mpirun the ranks' ITA
     * parts are summed on the host every step) */
    for (int q = 0; q < 5 && s->c->backend != PK_BACKEND_CPU && dist_size() == 1; q++) {
        s->sums_dev[q] = tensor_new(s->c->state, PK_F32, 1, (int64_t[]){1});
        if (!s->sums_dev[q]) return pk_error(PK_ERR_NOMEM, "ctp: out of device memory");
    }
    if (o->backbone) {
        const char *skip[] = {"head."};
        PK_TRY(backbone_load(s->c, s->model->visual, o->backbone, skip, 1));
    }
    pk_teacher_options to = {.name = "momentum",
                             .schedule = {.kind = PK_MOMENTUM_CONSTANT, .m0 = o->momentum}};
    PK_TRY(teacher_create(s->c, &to, s->model->params, s->model->nparams, &s->teacher));
    tensor **tv = malloc(sizeof(tensor *) * (size_t)s->model->nparams);
    if (!tv) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (int i = 0; i < s->model->nparams; i++)
        tv[i] = teacher_tensor(s->teacher, i);
    pk_status st = ctp_model_view(s->model, tv, &s->mom);
    free(tv);
    PK_TRY(st);
    if (uses_ref(o->method)) {
        pk_teacher_options ro = {.name = "reference"};
        PK_TRY(teacher_create(s->c, &ro, s->model->params, s->model->nparams, &s->ref_t));
        s->ref_p = malloc(sizeof(tensor *) * (size_t)s->model->nparams);
        if (!s->ref_p) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
        for (int i = 0; i < s->model->nparams; i++)
            s->ref_p[i] = teacher_tensor(s->ref_t, i);
        PK_TRY(ctp_model_view(s->model, s->ref_p, &s->ref));
    }
    /* AdamW; biases, norms, embeddings' position tables and 1-D tensors without decay (ALBEF's
     * timm optimizer factory skips 1-D parameters and biases) */
    int n = s->model->nparams, nd = 0, nn = 0;
    tensor **dec = malloc(sizeof(tensor *) * (size_t)n),
           **nodec = malloc(sizeof(tensor *) * (size_t)n);
    if (!dec || !nodec) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (int i = 0; i < n; i++) {
        tensor *p = s->model->params[i];
        if (p->ndim > 1 && !strstr(p->name, "pos_embed") && !strstr(p->name, "cls_token"))
            dec[nd++] = p;
        else
            nodec[nn++] = p;
    }
    pk_param_group g[2] = {
        {.name = "decay", .params = dec, .n = nd, .lr = o->lr, .weight_decay = o->weight_decay},
        {.name = "no_decay", .params = nodec, .n = nn, .lr = o->lr}};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAMW,
                           .adamw = optim_adamw_defaults((pk_adamw_params){0})};
    st = optim_create(s->c, &oo, g, 2, &s->opt);
    free(dec), free(nodec);
    PK_TRY(st);
    pk_rng qr = {o->seed * 0x9E3779B97F4A7C15ull + 0x9E};
    PK_TRY(ctp_queue_init(&s->qi, o->queue, o->embed, &qr));
    PK_TRY(ctp_queue_init(&s->qt, o->queue, o->embed, &qr));
    if (s->sums_dev[0]) { /* resident: the queues and the topology mask on the device */
        PK_TRY(ctp_ring_create(s->c, &s->qi, &s->qt, &s->ring));
        PK_TRY(ctp_data_dev_create(s->c, s->images, s->ps.n, s->C, s->S, s->tmask, s->ps.ntexts,
                                   o->max_len, &s->data_dev));
        int Bm = o->batch;
        s->topo_mask = tensor_new(s->c->state, PK_F32, 2, (int64_t[]){Bm, Bm});
        float *h = calloc((size_t)Bm * Bm, sizeof(float));
        if (!s->topo_mask || !h) {
            free(h);
            return pk_error(PK_ERR_NOMEM, "ctp: out of memory");
        }
        for (int i = 0; i < Bm; i++) /* ctp_topology_loss's mask */
            h[(size_t)i * Bm + i] = -1e4f;
        pk_status st2 = tensor_upload(s->topo_mask, h);
        free(h);
        PK_TRY(st2);
    }
    return PK_OK;
}

/* ---- one training step ---- */

pk_status ctp_make_batch(ctp_state *s, const int32_t *idx, int B, pk_rng *rng, bool augment,
                         tensor **x, tensor **ids, tensor **mask, int32_t *groups) {
    return ctp_make_batch_rows(s, idx, B, 0, B, rng, augment, x, ids, mask, groups);
}

pk_status ctp_make_batch_rows(ctp_state *s, const int32_t *idx, int B, int first, int n,
                              pk_rng *rng, bool augment, tensor **x, tensor **ids, tensor **mask,
                              int32_t *groups) {
    int S = s->S, C = s->C, L = s->o.max_len;
    size_t px = (size_t)C * S * S;
    float *hx = malloc(sizeof(float) * px * (size_t)n);
    int32_t *hi = malloc(sizeof(int32_t) * (size_t)n * L);
    float *hm = malloc(sizeof(float) * (size_t)n * L);
    if (!hx || !hi || !hm) {
        free(hx), free(hi), free(hm);
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    }
    for (int k = 0; k < B; k++) {
        const ctp_pair *p = &s->ps.p[idx[k]];
        int dx = 0, dy = 0;
        if (augment) dx = (int)pk_rng_below(rng, 5) - 2, dy = (int)pk_rng_below(rng, 5) - 2;
        groups[k] = p->text;
        if (k < first || k >= first + n) continue; /* another rank's row */
        int b = k - first;
        const float *src = s->images + px * (size_t)idx[k];
        float *dst = hx + px * (size_t)b;
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    int sy = y - dy, sx = xx - dx;
                    dst[((size_t)ch * S + y) * S + xx] = sy < 0 || sy >= S || sx < 0 || sx >= S
                                                             ? 1.0f
                                                             : src[((size_t)ch * S + sy) * S + sx];
                }
        memcpy(hi + (size_t)b * L, s->tokens + (size_t)p->text * L, sizeof(int32_t) * (size_t)L);
        memcpy(hm + (size_t)b * L, s->tmask + (size_t)p->text * L, sizeof(float) * (size_t)L);
    }
    pk_ctx *c = s->c;
    *x = tensor_new(c->step, PK_F32, 4, (int64_t[]){n, C, S, S});
    *ids = tensor_new(c->step, PK_I32, 2, (int64_t[]){n, L});
    *mask = tensor_new(c->step, PK_F32, 3, (int64_t[]){n, 1, L});
    pk_status st = *x && *ids && *mask ? PK_OK : PK_ERR_NOMEM;
    if (st == PK_OK) st = tensor_upload(*x, hx);
    if (st == PK_OK) st = tensor_upload(*ids, hi);
    if (st == PK_OK) st = tensor_upload(*mask, hm);
    free(hx), free(hi), free(hm);
    return st;
}

float *ctp_download_new(const tensor *t) {
    float *h = malloc(sizeof(float) * (size_t)tensor_numel(t));
    if (h && tensor_download(t, h) != PK_OK) {
        free(h);
        return NULL;
    }
    return h;
}

/* keys (B + K, E) = [batch features; queue] and their ids, as a step tensor and host arrays
 * (h: (B + K, E), the keys' values, so nothing is read back). */
static tensor *keys_with_queue(pk_ctx *c, const float *feat, const int32_t *ids, int B,
                               const ctp_queue *q, int32_t *kid, float *h) {
    int E = q->dim, N = B + q->size;
    if (!h) return NULL;
    memcpy(h, feat, sizeof(float) * (size_t)B * E);
    memcpy(h + (size_t)B * E, q->feat, sizeof(float) * (size_t)q->size * E);
    for (int i = 0; i < B; i++)
        kid[i] = ids[i];
    for (int i = 0; i < q->size; i++)
        kid[B + i] = (int32_t)q->ids[i];
    tensor *t = tensor_new(c->step, PK_F32, 2, (int64_t[]){N, E});
    if (t && tensor_upload(t, h) != PK_OK) t = NULL;
    return t;
}

/* Data parallel (tasks/common/dist.h): the losses are those of the whole global batch on every
 * rank, as in one process. Each rank embeds its shard of the B rows; the features of the other
 * rows are gathered from their ranks as constants, so a rank's backward reaches the model only
 * through its own rows and the sum of the ranks' gradients is the one process's gradient (the
 * in-batch ITC negatives, the topology matrices, the momentum keys, the soft targets and the
 * queue all span the global batch: ALBEF gathers only the queue's features, which would make
 * the batch's negatives per rank). */

/* own (n, E) rows [first, first + n) of a (B, E) batch: their values into host + first * E,
 * then every rank's rows gathered into host (B, E). */
static pk_status gather_rows(const tensor *own, int B, int first, int E, float *host) {
    PK_TRY(tensor_download(own, host + (size_t)first * E));
    return dist_gather_rows_f32(host, B, E);
}

/* The (B, E) batch of features whose rows [first, first + n) are `own` (on the tape: the
 * gradient flows into them) and whose other rows are the constants host holds (gathered);
 * `own` itself in a world of one. */
static tensor *batch_rows(pk_ctx *c, tensor *own, const float *host, int B, int first, int n,
                          int E) {
    if (n == B) return own;
    tensor *parts[3];
    int k = 0;
    if (first > 0) {
        tensor *t = tensor_new(c->step, PK_F32, 2, (int64_t[]){first, E});
        if (!t || tensor_upload(t, host) != PK_OK) return NULL;
        parts[k++] = t;
    }
    parts[k++] = own;
    if (first + n < B) {
        int rest = B - first - n;
        tensor *t = tensor_new(c->step, PK_F32, 2, (int64_t[]){rest, E});
        if (!t || tensor_upload(t, host + (size_t)(first + n) * E) != PK_OK) return NULL;
        parts[k++] = t;
    }
    return pk_concat(c, parts, k, 0);
}

/* A constant (B, E) step tensor of the gathered rows (own itself in a world of one). */
static tensor *gathered_const(pk_ctx *c, tensor *own, int B, int first, int n, int E) {
    if (!own || n == B) return own;
    float *h = malloc(sizeof(float) * (size_t)B * E);
    tensor *t = tensor_new(c->step, PK_F32, 2, (int64_t[]){B, E});
    pk_status st = h && t ? gather_rows(own, B, first, E, h) : PK_ERR_NOMEM;
    if (st == PK_OK) st = tensor_upload(t, h);
    free(h);
    return st == PK_OK ? t : NULL;
}

/* A resident step's batch from the device data set (ctp_make_batch_rows's draws, pixels and
 * tokens): the token ids and caption groups uploaded (int32), the shifted images, the masks
 * and the groups as f32 (gid (B)) made on the device. */
static pk_status resident_batch(ctp_state *s, const int32_t *idx, int B, pk_rng *rng, tensor **x,
                                tensor **ids, tensor **mask, int32_t *groups, tensor **gid) {
    pk_ctx *c = s->c;
    int L = s->o.max_len, *dx = malloc(sizeof(int) * 2 * (size_t)B), *dy = dx ? dx + B : NULL;
    int32_t *hi = malloc(sizeof(int32_t) * (size_t)B * L);
    *ids = tensor_new(c->step, PK_I32, 2, (int64_t[]){B, L});
    tensor *tg = tensor_new(c->step, PK_I32, 1, (int64_t[]){B});
    pk_status st = dx && hi && *ids && tg ? PK_OK : pk_error(PK_ERR_NOMEM, "ctp: out of memory");
    for (int k = 0; k < B && st == PK_OK; k++) {
        const ctp_pair *p = &s->ps.p[idx[k]];
        dx[k] = (int)pk_rng_below(rng, 5) - 2, dy[k] = (int)pk_rng_below(rng, 5) - 2;
        groups[k] = p->text;
        memcpy(hi + (size_t)k * L, s->tokens + (size_t)p->text * L, sizeof(int32_t) * (size_t)L);
    }
    if (st == PK_OK) st = tensor_upload(*ids, hi);
    if (st == PK_OK) st = tensor_upload(tg, groups);
    if (st == PK_OK) st = ctp_batch_dev(c, &s->data_dev, idx, dx, dy, B, tg, x, mask, gid);
    free(dx), free(hi);
    return st;
}

/* A resident step's keys and targets, on the device (the host path below builds them from the
 * momentum features read back): keys (N, E) = [batch momentum features; queue] of each
 * modality, ALBEF's ITA targets (B, N) from the caption groups (gid (B): from the device data
 * set, or uploaded here when the host made the batch, and the queue's) and the in-batch ITC's
 * positives (B, B). */
static pk_status resident_targets(ctp_state *s, tensor *img_m, tensor *txt_m, const int32_t *groups,
                                  int B, double alpha, tensor **gid, tensor **keys_t,
                                  tensor **keys_i, tensor **tgt_i, tensor **tgt_t, tensor **tgt_b) {
    pk_ctx *c = s->c;
    float T = (float)s->o.temp;
    if (!*gid) {
        float *h = malloc(sizeof(float) * (size_t)B);
        *gid = tensor_new(c->step, PK_F32, 1, (int64_t[]){B});
        if (!h || !*gid) {
            free(h);
            return pk_error(PK_ERR_NOMEM, "ctp: out of memory");
        }
        for (int i = 0; i < B; i++)
            h[i] = (float)groups[i];
        pk_status st = tensor_upload(*gid, h);
        free(h);
        PK_TRY(st);
    }
    bool g = pk_set_grad_enabled(c, false);
    *keys_t = pk_concat(c, (tensor *[]){txt_m, s->ring.feat[1]}, 2, 0);
    *keys_i = pk_concat(c, (tensor *[]){img_m, s->ring.feat[0]}, 2, 0);
    tensor *pos = ctp_positives_dev(c, *gid, pk_concat(c, (tensor *[]){*gid, s->ring.ids}, 2, 0));
    *tgt_i = ctp_soft_targets_dev(c, img_m, *keys_t, pos, T, (float)alpha);
    *tgt_t = ctp_soft_targets_dev(c, txt_m, *keys_i, pos, T, (float)alpha);
    *tgt_b = ctp_positives_dev(c, *gid, *gid);
    pk_set_grad_enabled(c, g);
    return *tgt_i && *tgt_t && *tgt_b ? PK_OK : PK_ERR_INVALID;
}

/* The kept topology mask for a batch of B <= --batch (its leading block). */
static tensor *resident_topo_mask(ctp_state *s, int B) {
    tensor *m = s->topo_mask;
    if (B == m->shape[0]) return m;
    tensor *v =
        tensor_view(s->c->step, m, 2, (int64_t[]){B, B}, (int64_t[]){m->shape[1], 1}, m->offset);
    return v ? pk_contiguous(s->c, v) : NULL;
}

static pk_status train_step(ctp_state *s, int stage, const int32_t *idx, int B, double alpha,
                            pk_rng *rng, double out[5]) {
    ctp_options *o = &s->o;
    pk_ctx *c = s->c;
    int E = o->embed, N = B + o->queue;
    float T = (float)o->temp;
    /* this rank's rows of the global batch (all of them in a world of one) */
    int64_t first64 = 0, n64 = 0;
    dist_shard(B, &first64, &n64);
    int first = (int)first64, n = (int)n64;
    /* no wait for the previous step (submitted by the loop): the step arena's reuse is
     * ordered on the device */
    PK_TRY(pk_step_reset(c));
    c->training = true;
    /* ALBEF: the momentum update runs first in every forward (the same on every rank) */
    if (stage > 0 && uses_cm(o->method))
        PK_TRY(ctp_compatible_update(s->teacher, s->model->params, s->ref_p));
    else
        PK_TRY(teacher_update(s->teacher));
    tensor *x, *ids, *mask;
    int32_t *groups = malloc(sizeof(int32_t) * (size_t)B),
            *kid = malloc(sizeof(int32_t) * (size_t)N);
    /* ITA's soft targets: this rank's rows only (its queries; the keys are constants) */
    float *ti = malloc(sizeof(float) * (size_t)n * N), *tt = malloc(sizeof(float) * (size_t)n * N);
    float *im = malloc(sizeof(float) * (size_t)B * E), *tm = malloc(sizeof(float) * (size_t)B * E);
    float *ci = malloc(sizeof(float) * (size_t)B * E), *ct = malloc(sizeof(float) * (size_t)B * E);
    pk_status st = groups && kid && ti && tt && im && tm && ci && ct
                       ? PK_OK
                       : pk_error(PK_ERR_NOMEM, "ctp: out of memory");
    /* resident (Vulkan, one process): batch, keys, targets, collapse watch and queues on the
     * device */
    bool dev = s->ring.ids != NULL;
    tensor *img_ref = NULL, *txt_ref = NULL, *keys_t = NULL, *keys_i = NULL;
    tensor *img_m = NULL, *txt_m = NULL, *gid = NULL, *tgt_i = NULL, *tgt_t = NULL, *tgt_b = NULL;
    if (st == PK_OK && dev && s->data_dev.images)
        st = resident_batch(s, idx, B, rng, &x, &ids, &mask, groups, &gid);
    else if (st == PK_OK)
        st = ctp_make_batch_rows(s, idx, B, first, n, rng, true, &x, &ids, &mask, groups);
    if (st == PK_OK) {
        bool g = pk_set_grad_enabled(c, false);
        img_m = ctp_image_embed(c, s->mom, x);
        txt_m = ctp_text_embed(c, s->mom, ids, mask);
        if (stage > 0 && uses_topo(o->method)) {
            img_ref = gathered_const(c, ctp_image_embed(c, s->ref, x), B, first, n, E);
            txt_ref = gathered_const(c, ctp_text_embed(c, s->ref, ids, mask), B, first, n, E);
            if (!img_ref || !txt_ref) st = PK_ERR_INVALID;
        }
        pk_set_grad_enabled(c, g);
        if (!img_m || !txt_m) st = PK_ERR_INVALID;
        if (st == PK_OK && dev)
            st = resident_targets(s, img_m, txt_m, groups, B, alpha, &gid, &keys_t, &keys_i, &tgt_i,
                                  &tgt_t, &tgt_b);
        /* the momentum features of the whole global batch on every rank */
        if (st == PK_OK && !dev) st = gather_rows(img_m, B, first, E, im);
        if (st == PK_OK && !dev) st = gather_rows(txt_m, B, first, E, tm);
        if (st == PK_OK && !dev) {
            int32_t *kid_i = malloc(sizeof(int32_t) * (size_t)N);
            float *kt = malloc(sizeof(float) * (size_t)N * E),
                  *ki = malloc(sizeof(float) * (size_t)N * E);
            keys_t = keys_with_queue(c, tm, groups, B, &s->qt, kid, kt);
            keys_i = kid_i ? keys_with_queue(c, im, groups, B, &s->qi, kid_i, ki) : NULL;
            if (!keys_t || !keys_i) st = pk_error(PK_ERR_NOMEM, "ctp: cannot build the keys");
            if (st == PK_OK) {
                /* targets of i2t from image_feat_m @ [text_feat_m; text_queue], and t2i alike
                 * (the keys' host copies: the values uploaded) */
                size_t o0 = (size_t)first * E;
                ctp_soft_targets(im + o0, kt, groups + first, kid, n, N, E, T, (float)alpha, ti);
                ctp_soft_targets(tm + o0, ki, groups + first, kid_i, n, N, E, T, (float)alpha, tt);
            }
            free(kt), free(ki);
            free(kid_i);
        }
    }
    tensor *loss = NULL, *ita = NULL, *topo = NULL;
    if (st == PK_OK) {
        if (!dev) {
            tgt_i = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, N});
            tgt_t = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, N});
            if (!tgt_i || !tgt_t || tensor_upload(tgt_i, ti) != PK_OK ||
                tensor_upload(tgt_t, tt) != PK_OK)
                st = PK_ERR_NOMEM;
        }
        tensor *img = NULL, *txt = NULL, *img_own = NULL, *txt_own = NULL;
        if (st == PK_OK) {
            img = img_own = ctp_image_embed(c, s->model, x);
            txt = txt_own = ctp_text_embed(c, s->model, ids, mask);
            if (!img || !txt) st = PK_ERR_INVALID;
        }
        if (st == PK_OK && n < B) { /* the other ranks' rows join as constants */
            st = gather_rows(img, B, first, E, ci);
            if (st == PK_OK) st = gather_rows(txt, B, first, E, ct);
            if (st == PK_OK) {
                img = batch_rows(c, img, ci, B, first, n, E);
                txt = batch_rows(c, txt, ct, B, first, n, E);
                if (!img || !txt) st = PK_ERR_INVALID;
            }
        }
        if (st == PK_OK) {
            /* in-batch ITC: current features on both sides, positives = same caption group */
            if (!dev) {
                float *pos = malloc(sizeof(float) * (size_t)B * B);
                tgt_b = tensor_new(c->step, PK_F32, 2, (int64_t[]){B, B});
                if (!pos || !tgt_b)
                    st = pk_error(PK_ERR_NOMEM, "ctp: out of memory");
                else {
                    ctp_soft_targets(im, im, groups, groups, B, B, E, T, 0.0f, pos);
                    st = tensor_upload(tgt_b, pos);
                }
                free(pos);
            }
            tensor *itc = pk_scale(c,
                                   pk_add(c, ctp_contrastive_loss(c, img, txt, tgt_b, T),
                                          ctp_contrastive_loss(c, txt, img, tgt_b, T)),
                                   0.5f);
            /* ALBEF's ITA with momentum distillation: against [momentum batch; queue]. Its keys
             * are constants, so a row's loss reaches the model only through that row's query:
             * each rank scores its own rows (the mean over them, weighted n / B: the ranks'
             * parts add up to the global batch's mean), the largest part of the loss work */
            ita = pk_scale(c,
                           pk_add(c, ctp_contrastive_loss(c, img_own, keys_t, tgt_i, T),
                                  ctp_contrastive_loss(c, txt_own, keys_i, tgt_t, T)),
                           n == B ? 0.5f : 0.5f * (float)n / (float)B);
            tensor *ita_w = o->ita_weight == 1.0 ? ita : pk_scale(c, ita, (float)o->ita_weight);
            if (o->no_inbatch)
                loss = ita_w;
            else
                loss = pk_add(c, itc, ita_w);
            if (img_ref) {
                topo = dev ? ctp_topology_loss_masked(c, img, txt, img_ref, txt_ref,
                                                      resident_topo_mask(s, B), T)
                           : ctp_topology_loss(c, img, txt, img_ref, txt_ref, T);
                loss = pk_add(c, loss, pk_scale(c, topo, (float)o->topo_weight));
            }
            if (!loss) st = PK_ERR_INVALID;
        }
    }
    if (st == PK_OK && !loss) st = PK_ERR_INVALID;
    if (st == PK_OK) st = autograd_backward(c, loss);
    /* every rank's loss is the global batch's (its ITA part: its own rows'), differentiated
     * through its own rows: the gradient is the sum of the ranks' (weight = ranks) */
    if (st == PK_OK) st = dist_average_grads_weighted(c, dist_size());
    if (st == PK_OK) st = optim_step(s->opt);
    if (st == PK_OK) st = optim_zero_grad(s->opt);
    if (st == PK_OK && s->sums_dev[0]) { /* summed on the device, read at the epoch's end */
        st = pk_accumulate(c, s->sums_dev[0], loss);
        if (st == PK_OK) st = pk_accumulate(c, s->sums_dev[1], ita);
        if (st == PK_OK && topo) st = pk_accumulate(c, s->sums_dev[2], topo);
        /* the collapse watch too (below, on the host, for the host path) */
        if (st == PK_OK) st = pk_accumulate(c, s->sums_dev[3], ctp_mean_cos_dev(c, img_m));
        if (st == PK_OK) st = pk_accumulate(c, s->sums_dev[4], ctp_mean_cos_dev(c, txt_m));
        for (int q = 0; q < 5; q++)
            out[q] = NAN;
    } else if (st == PK_OK) {
        float v[3] = {0, 0, 0};
        st = tensor_download(loss, &v[0]);
        if (st == PK_OK) st = tensor_download(ita, &v[1]);
        if (st == PK_OK && topo) st = tensor_download(topo, &v[2]);
        out[0] = v[0], out[1] = v[1], out[2] = v[2];
        if (st == PK_OK && n < B) { /* the world's ITA: the ranks' parts summed */
            double w[2] = {v[1], v[0] - o->ita_weight * v[1]}; /* ita part, the rest */
            st = dist_sum_f64(w, 1);
            out[1] = w[0], out[0] = w[1] + o->ita_weight * w[0];
        }
    }
    if (st == PK_OK && !dev) {
        /* collapse watch: mean cosine between different pairs' momentum embeddings */
        for (int m = 0; m < 2; m++) {
            const float *f = m ? tm : im;
            double cs = 0;
            for (int i = 0; i < B; i++)
                for (int j = 0; j < B; j++) {
                    if (i == j) continue;
                    double d = 0;
                    for (int k = 0; k < E; k++)
                        d += (double)f[(size_t)i * E + k] * f[(size_t)j * E + k];
                    cs += d;
                }
            out[3 + m] = B > 1 ? cs / ((double)B * (B - 1)) : 1.0;
        }
    }
    if (st == PK_OK && dev) { /* enqueue: copies into the rings, after the keys read them */
        st = ctp_ring_push(c, s->ring.feat[0], s->qi.ptr, img_m);
        if (st == PK_OK) st = ctp_ring_push(c, s->ring.feat[1], s->qt.ptr, txt_m);
        if (st == PK_OK) st = ctp_ring_push(c, s->ring.ids, s->qi.ptr, gid);
        s->qi.ptr = (int)(((int64_t)s->qi.ptr + B) % s->qi.size);
        s->qt.ptr = (int)(((int64_t)s->qt.ptr + B) % s->qt.size);
        s->qptr[0] = (float)s->qi.ptr, s->qptr[1] = (float)s->qt.ptr;
    } else if (st == PK_OK) {
        ctp_queue_push(&s->qi, im, groups, B);
        ctp_queue_push(&s->qt, tm, groups, B);
        s->qptr[0] = (float)s->qi.ptr, s->qptr[1] = (float)s->qt.ptr;
    }
    free(groups), free(kid), free(ti), free(tt), free(im), free(tm), free(ci), free(ct);
    return st;
}

/* ---- checkpoints ---- */

typedef struct ckpt_list {
    run_tensor *t;
    char (*names)[160];
    int n;
} ckpt_list;

static pk_status ckpt_tensors(ctp_state *s, ckpt_list *l) {
    int np = s->model->nparams, cap = 3 * np + optim_state_count(s->opt) + 16;
    l->t = calloc((size_t)cap, sizeof(run_tensor));
    l->names = calloc((size_t)cap, sizeof *l->names);
    if (!l->t || !l->names) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    int n = 0;
    for (int i = 0; i < np; i++, n++) {
        snprintf(l->names[n], sizeof l->names[n], "model.%s", s->model->params[i]->name);
        l->t[n] = (run_tensor){.name = l->names[n], .t = s->model->params[i]};
    }
    for (int i = 0; i < np; i++, n++) {
        snprintf(l->names[n], sizeof l->names[n], "momentum.%s", s->model->params[i]->name);
        l->t[n] = (run_tensor){.name = l->names[n], .t = teacher_tensor(s->teacher, i)};
    }
    for (int i = 0; s->ref_p && i < np; i++, n++) {
        snprintf(l->names[n], sizeof l->names[n], "reference.%s", s->model->params[i]->name);
        l->t[n] = (run_tensor){.name = l->names[n], .t = s->ref_p[i]};
    }
    for (int i = 0; i < optim_state_count(s->opt); i++, n++) {
        char nm[128];
        tensor *t = optim_state_get(s->opt, i, nm, sizeof nm);
        snprintf(l->names[n], sizeof l->names[n], "opt.%s", nm);
        l->t[n] = (run_tensor){.name = l->names[n], .t = t};
    }
    int64_t qn = (int64_t)s->o.queue * s->o.embed;
    if (s->ring.ids) { /* resident: the rings, flat as the host queues are saved */
        tensor *f[2];
        for (int m = 0; m < 2; m++) {
            f[m] = tensor_view(s->c->state, s->ring.feat[m], 1, &qn, (int64_t[]){1},
                               s->ring.feat[m]->offset);
            if (!f[m]) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
        }
        l->t[n++] = (run_tensor){.name = "queue.image", .t = f[0]};
        l->t[n++] = (run_tensor){.name = "queue.text", .t = f[1]};
        l->t[n++] = (run_tensor){.name = "queue.image_ids", .t = s->ring.ids};
        l->t[n++] = (run_tensor){.name = "queue.text_ids", .t = s->ring.ids};
    } else {
        l->t[n++] = (run_tensor){.name = "queue.image", .host = s->qi.feat, .numel = qn};
        l->t[n++] = (run_tensor){.name = "queue.text", .host = s->qt.feat, .numel = qn};
        l->t[n++] = (run_tensor){.name = "queue.image_ids", .host = s->qi.ids, .numel = s->o.queue};
        l->t[n++] = (run_tensor){.name = "queue.text_ids", .host = s->qt.ids, .numel = s->o.queue};
    }
    l->t[n++] = (run_tensor){.name = "queue.ptr", .host = s->qptr, .numel = 2};
    l->t[n++] = (run_tensor){.name = "ctp.progress", .host = s->progress, .numel = 4};
    l->t[n++] =
        (run_tensor){.name = "ctp.recall", .host = s->recall, .numel = (int64_t)s->T * s->T};
    l->t[n++] = (run_tensor){.name = "ctp.final", .host = s->final_metrics, .numel = 8};
    l->n = n;
    return PK_OK;
}

/* "ctp.seen" (T floats) beside the run_tensors: absent from the checkpoints written before it
 * (then the values stay unknown, NaN). */
static pk_status save_checkpoint(ctp_state *s, int64_t it, const ckpt_list *ck) {
    int64_t shape[1] = {s->T};
    st_write_tensor extra = {
        .name = "ctp.seen", .dtype = ST_F32, .ndim = 1, .shape = shape, .data = s->seen};
    return run_checkpoint_save_ex(s->run, it, ck->t, ck->n, &extra, 1, NULL);
}

static pk_status restore_seen(void *user, const ckpt_file *ck, const char *path) {
    ctp_state *s = user;
    const st_tensor *t = safetensors_find(&ck->st, "ctp.seen");
    if (!t) return PK_OK;
    if (t->dtype != ST_F32 || (int64_t)st_tensor_numel(t) != s->T)
        return pk_error(PK_ERR_FORMAT, "%s: tensor ctp.seen: expected F32 with %d elements", path,
                        s->T);
    return st_tensor_to_f32(t, s->seen);
}

static pk_status options_json(const ctp_state *s, char *buf, size_t n) {
    const ctp_options *o = &s->o;
    int k = snprintf(
        buf, n,
        "{\"data\": \"%s\", \"method\": \"%s\", \"epochs\": %d, \"batch\": %d, \"lr\": %g, "
        "\"weight_decay\": %g, \"img_size\": %d, \"patch\": %d, \"dim\": %d, \"depth\": %d, "
        "\"heads\": %d, \"txt_dim\": %d, \"txt_depth\": %d, \"txt_heads\": %d, \"max_len\": %d, "
        "\"vocab_size\": %d, \"embed\": %d, \"queue\": %d, \"temp\": %g, \"alpha\": %g, "
        "\"momentum\": %g, \"topo_weight\": %g, \"backbone\": \"%s\", \"test_fraction\": %g, "
        "\"task_order\": \"%s\", \"order_seed\": %llu, \"seed\": %llu, \"max_tasks\": %d, "
        "\"no_inbatch\": %d, \"ita_weight\": %g}",
        o->data, ctp_method_name(o->method), o->epochs, o->batch, o->lr, o->weight_decay, s->S,
        o->patch, o->dim, o->depth, o->heads, o->txt_dim, o->txt_depth, o->txt_heads, o->max_len,
        o->vocab_size, o->embed, o->queue, o->temp, o->alpha, o->momentum, o->topo_weight,
        o->backbone ? o->backbone : "", o->test_fraction, o->task_order ? o->task_order : "",
        (unsigned long long)o->order_seed, (unsigned long long)o->seed, o->max_tasks,
        (int)o->no_inbatch, o->ita_weight);
    /* only when used, so the runs made before the option still resume */
    if (k > 0 && (size_t)k < n && o->text_mlm_epochs > 0 &&
        (o->text_mlm_lr != 5e-4 || o->text_mlm_wd != 0.02))
        k += snprintf(buf + k - 1, n - (size_t)(k - 1),
                      ", \"text_mlm_lr\": %g, \"text_mlm_wd\": %g}", o->text_mlm_lr,
                      o->text_mlm_wd) -
             1;
    if (k > 0 && (size_t)k < n && o->text_mlm_epochs > 0)
        k += snprintf(buf + k - 1, n - (size_t)(k - 1), ", \"text_mlm_epochs\": %d}",
                      o->text_mlm_epochs) -
             1;
    /* the schedule and optimizer of the runs made before these options (20 warm-up steps,
     * cosine to lr / 10, one AdamW throughout) leave no keys, so those runs still resume */
    if (k > 0 && (size_t)k < n &&
        (o->warmup_steps != 20 || o->min_lr_ratio != 0.1 || !o->keep_optimizer))
        k += snprintf(buf + k - 1, n - (size_t)(k - 1),
                      ", \"warmup_steps\": %d, \"min_lr_ratio\": %g, \"keep_optimizer\": %d}",
                      o->warmup_steps, o->min_lr_ratio, (int)o->keep_optimizer) -
             1;
    if (k < 0 || (size_t)k >= n) return pk_error(PK_ERR_INVALID, "ctp: options too long");
    return PK_OK;
}

/* ---- the text encoder's warm start ---- */

/* BERT's masked-language-model pretraining of the text encoder (its own AdamW over the text
 * parameters, --text-mlm-lr and --text-mlm-wd, 20 warm-up steps then cosine to lr / 10) on the
 * training captions of the run's tasks, one text per caption group; BERT's masking: 15% of the
 * word pieces (at least one), of them 80% [MASK], 10% a random piece, 10% unchanged; the
 * decoder is tied to the token embedding. Then the momentum model copies the model. Writes
 * text_mlm_loss / text_mlm_accuracy (last epoch, masked pieces) into the metrics. */
static pk_status text_mlm(ctp_state *s, double *cpu) {
    ctp_options *o = &s->o;
    pk_ctx *c = s->c;
    int L = o->max_len, V = s->vocab.n, nt = 0;
    int32_t *texts = malloc(sizeof(int32_t) * (size_t)s->ps.ntexts);
    bool *seen = calloc((size_t)s->ps.ntexts, 1);
    tensor **tp = malloc(sizeof(tensor *) * (size_t)s->model->nparams);
    tensor **tdec = malloc(sizeof(tensor *) * (size_t)s->model->nparams);
    if (!texts || !seen || !tp || !tdec) {
        free(texts), free(seen), free(tp), free(tdec);
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    }
    for (int i = 0; i < s->ps.n; i++) {
        const ctp_pair *p = &s->ps.p[i];
        if (p->test || p->task >= s->T || seen[p->text]) continue;
        seen[p->text] = true;
        texts[nt++] = p->text;
    }
    free(seen);
    int ndec = 0, nno = 0;
    for (int i = 0; i < s->model->nparams; i++) {
        tensor *p = s->model->params[i];
        if (strncmp(p->name, "text.", 5) != 0) continue;
        if (p->ndim > 1 && !strstr(p->name, "pos_embed"))
            tdec[ndec++] = p;
        else
            tp[nno++] = p;
    }
    pk_param_group g[2] = {{.name = "decay",
                            .params = tdec,
                            .n = ndec,
                            .lr = o->text_mlm_lr,
                            .weight_decay = o->text_mlm_wd},
                           {.name = "no_decay", .params = tp, .n = nno, .lr = o->text_mlm_lr}};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAMW,
                           .adamw = optim_adamw_defaults((pk_adamw_params){0})};
    pk_optimizer *opt = NULL;
    pk_status st = optim_create(c, &oo, g, 2, &opt);
    int B = o->batch < nt ? o->batch : nt, steps = nt / B;
    int32_t *hid = malloc(sizeof(int32_t) * (size_t)B * L), *hpos = malloc(sizeof(int32_t) * B * L),
            *hlab = malloc(sizeof(int32_t) * (size_t)B * L);
    float *hm = malloc(sizeof(float) * (size_t)B * L);
    if (st == PK_OK && (!hid || !hpos || !hlab || !hm))
        st = pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    pk_rng r = {o->seed * 0x9E3779B97F4A7C15ull + 0x313};
    double c0 = cpu_now(), lsum = 0, hits = 0, count = 0;
    /* resident (Vulkan, one process): the epoch's loss and masked-piece hits are summed on the
     * device (in the first two loss sums, free until the tasks start) and read when the epoch
     * is logged; a step uploads its batch and reads nothing */
    bool dev = s->sums_dev[0] != NULL;
    int64_t tot = (int64_t)o->text_mlm_epochs * steps;
    for (int e = 0; e < o->text_mlm_epochs && st == PK_OK; e++) {
        pk_rng_shuffle(&r, texts, nt);
        lsum = hits = count = 0;
        for (int q = 0; q < 2 && dev && st == PK_OK; q++)
            st = pk_fill(c, s->sums_dev[q], 0.0f);
        char label[64];
        snprintf(label, sizeof label, "text MLM epoch %d/%d", e + 1, o->text_mlm_epochs);
        run_progress_start(s->run, label, steps);
        for (int k = 0; k < steps && st == PK_OK; k++) {
            int64_t ts = (int64_t)e * steps + k;
            double lr =
                ts < 20 ? o->text_mlm_lr * (ts + 1) / 20.0
                        : o->text_mlm_lr * (0.1 + 0.9 * 0.5 * (1 + cos(M_PI * (double)ts / tot)));
            optim_set_lr(opt, 0, lr);
            optim_set_lr(opt, 1, lr);
            int M = 0;
            for (int b = 0; b < B; b++) {
                const int32_t *ids = s->tokens + (size_t)texts[k * B + b] * L;
                memcpy(hid + (size_t)b * L, ids, sizeof(int32_t) * (size_t)L);
                memcpy(hm + (size_t)b * L, s->tmask + (size_t)texts[k * B + b] * L,
                       sizeof(float) * (size_t)L);
                int cand[4096], nc = 0;
                for (int l = 0; l < L && nc < 4096; l++)
                    if (ids[l] > CTP_MASK) cand[nc++] = l;
                if (nc == 0) continue;
                int want = (int)lround(0.15 * nc);
                if (want < 1) want = 1;
                for (int q = 0; q < want; q++) { /* a partial Fisher-Yates draw */
                    int j = q + (int)pk_rng_below(&r, (uint64_t)(nc - q)), l = cand[j];
                    cand[j] = cand[q], cand[q] = l;
                    hpos[M] = b * L + l, hlab[M] = ids[l], M++;
                    double u = pk_rng_uniform(&r);
                    hid[(size_t)b * L + l] =
                        u < 0.8 ? CTP_MASK
                        : u < 0.9
                            ? CTP_MASK + 1 + (int32_t)pk_rng_below(&r, (uint64_t)(V - CTP_MASK - 1))
                            : ids[l];
                }
            }
            if (M == 0) continue;
            pk_step_counters_begin(&s->vulkan_mlm, c->dev);
            /* no wait for the previous step: the step arena's reuse is ordered on the device */
            st = pk_step_reset(c);
            c->training = true;
            tensor *ids = tensor_new(c->step, PK_I32, 2, (int64_t[]){B, L});
            tensor *mask = tensor_new(c->step, PK_F32, 3, (int64_t[]){B, 1, L});
            tensor *pos = tensor_new(c->step, PK_I32, 1, (int64_t[]){M});
            tensor *lab = tensor_new(c->step, PK_I32, 1, (int64_t[]){M});
            if (st == PK_OK && (!ids || !mask || !pos || !lab)) st = PK_ERR_NOMEM;
            if (st == PK_OK) st = tensor_upload(ids, hid);
            if (st == PK_OK) st = tensor_upload(mask, hm);
            if (st == PK_OK) st = tensor_upload(pos, hpos);
            if (st == PK_OK) st = tensor_upload(lab, hlab);
            tensor *loss = NULL, *tok = NULL;
            if (st == PK_OK) {
                tok = ctp_text_tokens(c, s->model, ids, mask);
                loss = ctp_mlm_loss(c, s->model, tok, pos, lab);
                if (!loss) st = PK_ERR_INVALID;
            }
            if (st == PK_OK) { /* accuracy on the masked pieces, from the same forward */
                bool gr = pk_set_grad_enabled(c, false);
                tensor *h = pk_embedding(
                    c, pk_reshape(c, tok, 2, (int64_t[]){(int64_t)B * L, o->txt_dim}), pos);
                tensor *lg = pk_matmul(c, h, s->model->text.tok_embed, false, true); // (M, V)
                pk_set_grad_enabled(c, gr);
                if (dev) { /* the first largest logit at the label, as the host's count */
                    st = lg ? pk_count_correct(c, lg, lab, s->sums_dev[1]) : PK_ERR_INVALID;
                } else {
                    float *hl = lg ? ctp_download_new(lg) : NULL;
                    if (!hl) st = pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
                    for (int q = 0; q < M && st == PK_OK; q++) {
                        int best = 0;
                        for (int v = 1; v < V; v++)
                            if (hl[(size_t)q * V + v] > hl[(size_t)q * V + best]) best = v;
                        hits += best == hlab[q];
                    }
                    free(hl);
                }
                count += M;
            }
            if (st == PK_OK) st = autograd_backward(c, loss);
            if (st == PK_OK) st = optim_step(opt);
            if (st == PK_OK) st = optim_zero_grad(opt);
            if (dev) {
                if (st == PK_OK) st = pk_accumulate(c, s->sums_dev[0], loss);
                if (st == PK_OK) st = pk_device_submit(c->dev); /* no wait */
                if (st == PK_OK) pk_step_counters_mark(&s->vulkan_mlm, c->dev);
                run_progress_update(s->run, k + 1, "step %d", k + 1);
                continue;
            }
            float lv = 0;
            if (st == PK_OK) st = tensor_download(loss, &lv);
            if (st == PK_OK && !isfinite(lv))
                st = pk_error(PK_ERR_INVALID, "ctp: the MLM loss is %g", lv);
            lsum += lv;
            run_progress_update(s->run, k + 1, "loss %.4f", lsum / (k + 1));
        }
        run_progress_end(s->run);
        if (dev && st == PK_OK) { /* the epoch's sums, read when it is logged */
            float v[2];
            st = tensor_download(s->sums_dev[0], &v[0]);
            if (st == PK_OK) st = tensor_download(s->sums_dev[1], &v[1]);
            lsum = v[0], hits = v[1];
            if (st == PK_OK && !isfinite(v[0]))
                st = pk_error(PK_ERR_INVALID, "ctp: the MLM loss sum of epoch %d is %g", e + 1,
                              v[0]);
        }
        if (st == PK_OK)
            run_info(s->run, "text MLM epoch %d/%d: loss %.4f, masked-piece accuracy %.1f%%", e + 1,
                     o->text_mlm_epochs, lsum / steps, 100 * hits / (count ? count : 1));
    }
    *cpu = cpu_now() - c0;
    if (st == PK_OK) {
        run_metric(s->run, "text_mlm_loss", lsum / steps);
        run_metric(s->run, "text_mlm_accuracy", hits / (count ? count : 1));
        run_metric(s->run, "text_mlm_cpu_seconds", *cpu);
        char vk[560];
        if (pk_device_backend(c->dev) == PK_BACKEND_VK &&
            pk_step_counters_json(&s->vulkan_mlm, vk, sizeof vk))
            run_metric_json(s->run, "vulkan_text_mlm", vk);
        st = ctp_teacher_copy(s->teacher, s->model->params);
    }
    optim_destroy(opt);
    free(texts), free(tp), free(tdec), free(hid), free(hpos), free(hlab), free(hm);
    return st;
}

/* Writes model.safetensors: the trained parameters and the vocabulary (U8 "vocab", the text
 * of vocab.txt), and vocab.txt. */
/* ---- the run ---- */

static void metrics_final(ctp_state *s, ctp_result *res) {
    int T = s->T;
    char *m = malloc((size_t)T * T * 24 + 64), *q = m;
    q += sprintf(q, "[");
    for (int i = 0; i < T; i++) {
        q += sprintf(q, "%s[", i ? ", " : "");
        for (int j = 0; j < T; j++) {
            float v = s->recall[i * T + j];
            res->recall[i][j] = v;
            if (isnan(v))
                q += sprintf(q, "%snull", j ? ", " : "");
            else
                q += sprintf(q, "%s%.9g", j ? ", " : "", (double)v);
        }
        q += sprintf(q, "]");
    }
    sprintf(q, "]");
    run_metric_json(s->run, "recall_matrix", m);
    free(m);
    double bwt = NAN;
    if (s->o.method != CTP_METHOD_JOINT && T > 1) {
        bwt = 0;
        for (int j = 0; j < T - 1; j++)
            bwt += s->recall[(T - 1) * T + j] - s->recall[j * T + j];
        bwt /= T - 1;
    }
    float *f = s->final_metrics;
    res->ntasks = T, res->r_m = f[0], res->bwt = bwt;
    for (int k = 0; k < 3; k++)
        res->i2t[k] = f[1 + k], res->t2i[k] = f[4 + k];
    run_metric(s->run, "R_m", f[0]);
    run_metric(s->run, "BWT", bwt);
    /* CTP's eval.py: tasks 0..i pooled, right after task i against the final model */
    double bc = NAN, seen[CTP_MAX_TASKS];
    if (s->o.method != CTP_METHOD_JOINT && T > 1) {
        bc = 0;
        for (int i = 0; i < T - 1; i++)
            bc += res->seen_final[i] - s->seen[i];
        bc /= T - 1;
    }
    for (int i = 0; i < T; i++)
        res->seen[i] = seen[i] = s->seen[i];
    res->bwt_cumulative = bc;
    run_metric_array(s->run, "R_m_seen", seen, T);
    run_metric_array(s->run, "R_m_seen_final", res->seen_final, T);
    run_metric(s->run, "BWT_cumulative", bc);
    char buf[160];
    snprintf(buf, sizeof buf, "{\"r1\": %.9g, \"r5\": %.9g, \"r10\": %.9g}", f[1], f[2], f[3]);
    run_metric_json(s->run, "i2t", buf);
    snprintf(buf, sizeof buf, "{\"r1\": %.9g, \"r5\": %.9g, \"r10\": %.9g}", f[4], f[5], f[6]);
    run_metric_json(s->run, "t2i", buf);
}

static void print_table(ctp_state *s, const ctp_result *res) {
    int T = s->T;
    run_info(s->run, "R_m (mean of R@1/5/10 both ways, %%) per task after each task (%s):",
             ctp_method_name(s->o.method));
    for (int i = 0; i < T; i++) {
        char line[1024];
        int k = snprintf(line, sizeof line, "  after %-18.18s", s->ps.task_names[i]);
        for (int j = 0; j < T && k < (int)sizeof line - 8; j++)
            k += isnan(res->recall[i][j]) ? snprintf(line + k, sizeof line - (size_t)k, "     -")
                                          : snprintf(line + k, sizeof line - (size_t)k, " %5.1f",
                                                     100 * res->recall[i][j]);
        run_info(s->run, "%s", line);
    }
    run_info(s->run,
             "final: R_m %.2f%%  BWT %+.2f  BWT (tasks seen pooled) %+.2f  i2t R@1/5/10 "
             "%.1f/%.1f/%.1f  t2i %.1f/%.1f/%.1f  (training %.0f s, CPU %.0f s)",
             100 * res->r_m, 100 * res->bwt, 100 * res->bwt_cumulative, 100 * res->i2t[0],
             100 * res->i2t[1], 100 * res->i2t[2], 100 * res->t2i[0], 100 * res->t2i[1],
             100 * res->t2i[2], res->train_seconds, res->train_cpu_seconds);
}

static pk_status run_body(ctp_state *s, ctp_result *res) {
    ctp_options *o = &s->o;
    if (!o->data || !o->out) return pk_error(PK_ERR_INVALID, "ctp: --data and --out are required");
    fill_defaults(o);
    s->C = 3;
    s->S = o->img_size > 0 ? o->img_size : 32;
    if (o->backbone) {
        vit_config bc;
        backbone_norm bn = {0};
        PK_TRY(backbone_config(o->backbone, NULL, &bc, &bn));
        s->C = bc.in_chans;
        if (bn.present && bc.in_chans <= 3) {
            s->backbone_norm = true;
            for (int ch = 0; ch < bc.in_chans; ch++) {
                if (!(bn.std[ch] > 0))
                    return pk_error(PK_ERR_FORMAT, "%s: metadata std[%d] is %g; expected > 0",
                                    o->backbone, ch, bn.std[ch]);
                s->mean[ch] = bn.mean[ch], s->std[ch] = bn.std[ch];
            }
        }
        if (o->img_size <= 0) s->S = bc.img_size;
        o->patch = bc.patch, o->dim = bc.dim, o->depth = bc.depth, o->heads = bc.heads;
    }
    if (s->S % o->patch)
        return pk_error(PK_ERR_INVALID, "ctp: image size %d is not a multiple of the patch %d",
                        s->S, o->patch);
    PK_TRY(load_data(s));
    char opts[4096];
    PK_TRY(options_json(s, opts, sizeof opts));
    run_options ro = {.out = o->out,
                      .task = "ctp",
                      .options_json = opts,
                      .resume = o->resume,
                      .progress = o->progress,
                      .catch_signals = o->catch_signals};
    PK_TRY(run_open(&ro, &s->run));
    pk_ctx_options co = {.device = o->device, .seed = o->seed, .threads = o->threads};
    PK_TRY(pk_ctx_create(&co, &s->c));
    PK_TRY(build(s));
    if (run_is_writer(s->run)) PK_TRY(ctp_write_vocab(s)); /* rank 0 writes the run folder */
    int T = s->T;
    s->recall = malloc(sizeof(float) * (size_t)T * T);
    s->final_metrics = calloc(8, sizeof(float));
    s->seen = malloc(sizeof(float) * (size_t)T);
    if (!s->recall || !s->final_metrics || !s->seen)
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (int i = 0; i < T * T; i++)
        s->recall[i] = NAN;
    for (int i = 0; i < T; i++)
        s->seen[i] = NAN;
    run_metric_str(s->run, "kind", "ctp");
    run_metric_str(s->run, "method", ctp_method_name(o->method));
    {
        char names[CTP_MAX_TASKS * 64 + 8], *q = names;
        q += sprintf(q, "[");
        for (int t = 0; t < T; t++) {
            q += sprintf(q, "%s\"", t ? ", " : "");
            for (const char *c = s->ps.task_names[t]; *c && q < names + sizeof names - 16; c++) {
                if (*c == '"' || *c == '\\') *q++ = '\\';
                *q++ = *c;
            }
            q += sprintf(q, "\"");
        }
        sprintf(q, "]");
        run_metric_json(s->run, "task_names", names);
    }
    run_metric(s->run, "vocab_size", s->vocab.n);
    run_metric_array(s->run, "image_mean", (double[]){s->mean[0], s->mean[1], s->mean[2]}, s->C);
    run_metric_array(s->run, "image_std", (double[]){s->std[0], s->std[1], s->std[2]}, s->C);
    run_metric_str(s->run, "image_norm", s->backbone_norm ? "backbone" : "training images");
    int64_t nparam = 0;
    for (int i = 0; i < s->model->nparams; i++)
        nparam += tensor_numel(s->model->params[i]);
    run_metric(s->run, "parameters", (double)nparam);
    run_info(s->run, "%d pairs, %d tasks, vocabulary %d pieces, %lld parameters in %d tensors",
             s->ps.n, T, s->vocab.n, (long long)nparam, s->model->nparams);

    ckpt_list ck = {0};
    pk_status st = ckpt_tensors(s, &ck);
    int64_t step0 = -1;
    if (st == PK_OK) st = run_checkpoint_load_ex(s->run, ck.t, ck.n, restore_seen, s, &step0, NULL);
    if (st != PK_OK) goto done;
    if (step0 >= 0) {
        s->qi.ptr = (int)s->qptr[0], s->qt.ptr = (int)s->qptr[1];
        teacher_set_updates(s->teacher, step0);
        run_info(s->run, "resumed at step %lld (%d of %d tasks done)", (long long)step0,
                 (int)s->progress[0], s->stages);
    } else
        memset(s->progress, 0, sizeof s->progress);
    int64_t it = step0 < 0 ? 0 : step0;
    /* the optimizer's steps: since the task start unless one AdamW runs throughout */
    optim_set_steps(s->opt, it - (int64_t)s->progress[3]);
    double train_secs = 0, train_cpu = 0;
    int64_t steps_run = 0; /* this process's training steps */
    dist_stats comm = {0}; /* communication inside them */
    if (step0 < 0 && o->text_mlm_epochs > 0) {
        double t0 = run_now();
        st = text_mlm(s, &train_cpu);
        train_secs += run_now() - t0;
        if (st != PK_OK) goto done;
    }
    int32_t *pool = malloc(sizeof(int32_t) * (size_t)s->ps.n);
    if (!pool) {
        st = pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
        goto done;
    }
    static const char *cols[] = {"task",    "epoch",   "step", "loss",    "loss_ita", "loss_topo",
                                 "img_cos", "txt_cos", "lr",   "seconds", "R_m_seen"};
    for (int stage = (int)s->progress[0]; stage < s->stages && st == PK_OK; stage++) {
        int lo = o->method == CTP_METHOD_JOINT ? 0 : stage,
            hi = o->method == CTP_METHOD_JOINT ? T - 1 : stage;
        int np = 0;
        for (int i = 0; i < s->ps.n; i++)
            if (!s->ps.p[i].test && s->ps.p[i].task >= lo && s->ps.p[i].task <= hi) pool[np++] = i;
        int B = o->batch < np ? o->batch : np;
        int steps = np / B;
        if (B < dist_size()) {
            st = pk_error(PK_ERR_INVALID,
                          "ctp: a batch of %d pairs (task %d) is smaller than the %d ranks; every "
                          "rank takes a shard of each global batch",
                          B, stage + 1, dist_size());
            break;
        }
        int e0 = (int)s->progress[1];
        if (e0 == 0 && stage > 0 && uses_ref(o->method)) {
            /* CTP: the frozen reference and the momentum model start from the previous task's
             * model (CTP's train_CTP.py deep-copies both at every task start; the ablation
             * without the compatible momentum changes only the update rule) */
            st = ctp_teacher_copy(s->ref_t, s->model->params);
            if (st == PK_OK) st = ctp_teacher_copy(s->teacher, s->model->params);
        }
        if (e0 == 0 && st == PK_OK) {
            /* CTP's train_*.py create a new AdamW at every task start */
            if (stage > 0 && !o->keep_optimizer) st = ctp_optimizer_reset(s->opt);
            s->progress[3] = o->keep_optimizer ? 0.0f : (float)it;
        }
        if (e0 == 0)
            run_info(s->run, "task %d/%d: %s (%d training pairs, %d steps per epoch)", stage + 1,
                     s->stages,
                     o->method == CTP_METHOD_JOINT ? "all tasks" : s->ps.task_names[stage], np,
                     steps);
        for (int e = e0; e < o->epochs && st == PK_OK; e++) {
            pk_rng er = {(o->seed * 1000003ull + (uint64_t)stage) * 1000003ull + (uint64_t)e};
            pk_rng_shuffle(&er, pool, np);
            char label[64];
            snprintf(label, sizeof label, "task %d epoch %d/%d", stage + 1, e + 1, o->epochs);
            run_progress_start(s->run, label, steps);
            memset(s->sums, 0, sizeof s->sums);
            for (int q = 0; q < 5 && st == PK_OK && s->sums_dev[0]; q++)
                st = pk_fill(s->c, s->sums_dev[q], 0.0f);
            double lr = o->lr;
            for (int k = 0; k < steps && st == PK_OK; k++) {
                /* per task: CTP's cosine from lr to lr * min_lr_ratio (--warmup-steps) */
                int64_t ts = (int64_t)e * steps + k, tot = (int64_t)o->epochs * steps;
                lr = ctp_task_lr(ts, tot, o->lr, o->warmup_steps, o->min_lr_ratio);
                optim_set_lr(s->opt, 0, lr);
                optim_set_lr(s->opt, 1, lr);
                /* ALBEF: alpha ramps up over the first epoch of the run */
                double alpha = o->alpha;
                if (stage == 0 && e == 0) alpha *= (double)k / steps;
                double t0 = run_now(), c0 = cpu_now(), v[5] = {0, 0, 0, 0, 0};
                dist_stats k0 = dist_stats_get();
                pk_step_counters_begin(&s->vulkan, s->c->dev);
                st = train_step(s, stage, pool + (size_t)k * B, B, alpha, &er, v);
                if (st == PK_OK) st = pk_device_submit(s->c->dev); /* no wait (Vulkan) */
                if (st == PK_OK) pk_step_counters_mark(&s->vulkan, s->c->dev);
                dist_stats k1 = dist_stats_get();
                train_secs += run_now() - t0, train_cpu += cpu_now() - c0, steps_run++;
                comm.seconds += k1.seconds - k0.seconds, comm.bytes += k1.bytes - k0.bytes;
                comm.calls += k1.calls - k0.calls;
                it++;
                if (st == PK_OK && !s->sums_dev[0] && !isfinite(v[0]))
                    st = pk_error(PK_ERR_INVALID, "ctp: the loss is %g at step %lld", v[0],
                                  (long long)it);
                for (int q = s->sums_dev[0] ? 5 : 0; q < 5; q++)
                    s->sums[q] += (float)v[q];
                s->sums[5] += 1;
                if (s->sums_dev[0]) /* the losses are read when the epoch is logged */
                    run_progress_update(s->run, k + 1, "step %lld", (long long)it);
                else
                    run_progress_update(s->run, k + 1, "loss %.4f", s->sums[0] / s->sums[5]);
            }
            run_progress_end(s->run);
            for (int q = 0; q < 5 && st == PK_OK && s->sums_dev[0]; q++)
                st = tensor_download(s->sums_dev[q], &s->sums[q]);
            if (st == PK_OK && !isfinite(s->sums[0]))
                st = pk_error(PK_ERR_INVALID, "ctp: the loss sum of task %d epoch %d is %g",
                              stage + 1, e + 1, s->sums[0]);
            if (st != PK_OK) break;
            double rm = NAN, i2t[3], t2i[3];
            bool last = e + 1 == o->epochs;
            if (last) st = ctp_evaluate(s, stage, hi, &rm, i2t, t2i);
            if (st != PK_OK) break;
            double row[11] = {stage + 1, e + 1, (double)it};
            for (int q = 0; q < 5; q++)
                row[3 + q] = s->sums[q] / s->sums[5];
            row[8] = lr, row[9] = train_secs, row[10] = rm;
            st = run_log(s->run, 11, cols, row);
            s->progress[1] = (float)(e + 1);
            if (last) {
                s->progress[0] = (float)(stage + 1), s->progress[1] = 0;
                if (o->method != CTP_METHOD_JOINT) s->seen[stage] = (float)rm;
                s->final_metrics[0] = (float)rm;
                for (int k = 0; k < 3; k++)
                    s->final_metrics[1 + k] = (float)i2t[k],
                                         s->final_metrics[4 + k] = (float)t2i[k];
                run_info(s->run,
                         "after task %d (%s): R_m on the tasks seen %.2f%% (i2t R@1 %.1f%%, "
                         "t2i R@1 %.1f%%)",
                         stage + 1, o->method == CTP_METHOD_JOINT ? "all" : s->ps.task_names[stage],
                         100 * rm, 100 * i2t[0], 100 * t2i[0]);
            }
            s->progress[2] = (float)it;
            if (st == PK_OK && (last || run_stop_requested(s->run)))
                st = save_checkpoint(s, it, &ck);
            if (st == PK_OK && run_stop_requested(s->run)) {
                run_info(s->run, "stop requested: checkpoint at step %lld; --resume continues",
                         (long long)it);
                goto out;
            }
        }
        if (st == PK_OK && o->stop_after_task > 0 && stage + 1 == o->stop_after_task &&
            stage + 1 < s->stages) {
            run_info(s->run, "stopping after task %d as asked; --resume continues", stage + 1);
            res->ntasks = -(stage + 1);
            goto out;
        }
    }
    for (int i = 0; i < T; i++)
        res->seen_final[i] = NAN;
    if (st == PK_OK && o->method != CTP_METHOD_JOINT) /* the final model on tasks 0..i */
        st = ctp_evaluate_prefixes(s, res->seen_final);
    if (st == PK_OK) {
        res->train_seconds = train_secs, res->train_cpu_seconds = train_cpu;
        metrics_final(s, res);
        run_metric(s->run, "ranks", dist_size());
        run_metric_vulkan(s->run, s->c->dev, &s->vulkan);
        if (steps_run > 0) { /* rank 0's training steps in this process */
            double k = 1.0 / (double)steps_run;
            char d[384];
            snprintf(d, sizeof d,
                     "{\"ranks\": %d, \"steps\": %lld, \"step_seconds\": %.6f, "
                     "\"step_cpu_seconds\": %.6f, \"comm_seconds_per_step\": %.6f, "
                     "\"comm_bytes_per_step\": %.0f, \"comm_calls_per_step\": %.2f}",
                     dist_size(), (long long)steps_run, train_secs * k, train_cpu * k,
                     comm.seconds * k, (double)comm.bytes * k, (double)comm.calls * k);
            run_metric_json(s->run, "distributed", d);
        }
        run_metric(s->run, "train_seconds_this_process", train_secs);
        run_metric(s->run, "train_cpu_seconds_this_process", train_cpu);
        st = run_metrics_write(s->run);
        if (st == PK_OK && run_is_writer(s->run)) st = ctp_save_model(s);
        if (st == PK_OK) print_table(s, res);
    }
out:
    free(pool);
done:
    free(ck.t), free(ck.names);
    return st;
}

pk_status ctp_run(const ctp_options *opt, ctp_result *res) {
    memset(res, 0, sizeof *res);
    ctp_state s = {.o = *opt};
    pk_status st = run_body(&s, res);
    ctp_model_destroy(s.mom);
    ctp_model_destroy(s.ref);
    teacher_destroy(s.ref_t);
    free(s.ref_p);
    ctp_model_destroy(s.model);
    teacher_destroy(s.teacher);
    optim_destroy(s.opt);
    ctp_queue_free(&s.qi), ctp_queue_free(&s.qt);
    pk_ctx_destroy(s.c);
    /* report.html at the end, also when stopped (Ctrl-C, --stop-after-task) or failed */
    if (s.run)
        run_report(s.run, st != PK_OK                                    ? "failed"
                          : run_stop_requested(s.run) || res->ntasks < 0 ? "interrupted"
                                                                         : "finished");
    run_close(s.run);
    ctp_vocab_free(&s.vocab);
    ctp_pairs_free(&s.ps);
    free(s.images), free(s.tokens), free(s.tmask), free(s.recall), free(s.final_metrics);
    free(s.seen);
    return st;
}
