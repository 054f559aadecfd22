/* probe.c - weighted k-NN and linear probe on frozen features (see probe.h). */
#include "probe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "rng.h"
#include "safetensors.h"

#define KNN_QUERIES 256 /* test rows per similarity block */
#define KNN_BANK 8192   /* train rows per uploaded tensor */
#define KNN_MAX_K 1024

pk_status probe_classes(const probe_set *s, int *classes) {
    int32_t mx = -1;
    for (int64_t i = 0; i < s->n; i++) {
        if (s->y[i] < 0)
            return pk_error(PK_ERR_INVALID, "probe: label %d of row %lld is negative", s->y[i],
                            (long long)i);
        if (s->y[i] > mx) mx = s->y[i];
    }
    *classes = mx + 1;
    return PK_OK;
}

static pk_status check_sets(const probe_set *train, const probe_set *test, int classes) {
    if (train->d != test->d || train->d < 1)
        return pk_error(PK_ERR_INVALID, "probe: train features have %lld dims, test %lld",
                        (long long)train->d, (long long)test->d);
    if (train->n < 1 || test->n < 1)
        return pk_error(PK_ERR_INVALID, "probe: empty feature set (train %lld, test %lld rows)",
                        (long long)train->n, (long long)test->n);
    const probe_set *sets[2] = {train, test};
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < sets[s]->n; i++)
            if (sets[s]->y[i] < 0 || sets[s]->y[i] >= classes)
                return pk_error(PK_ERR_INVALID, "probe: %s label %d of row %lld is outside [0, %d)",
                                s ? "test" : "train", sets[s]->y[i], (long long)i, classes);
    return PK_OK;
}

/* rows of x, L2-normalised (F.normalize, eps 1e-12), into a new array */
static float *l2_rows(const float *x, int64_t n, int64_t d) {
    float *o = malloc(sizeof(float) * (size_t)(n * d));
    if (!o) return NULL;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++)
            s += (double)x[i * d + j] * x[i * d + j];
        double nrm = sqrt(s);
        float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
        for (int64_t j = 0; j < d; j++)
            o[i * d + j] = x[i * d + j] * inv;
    }
    return o;
}

typedef struct knn_state {
    pk_arena *arena;
    tensor **bank; /* (KNN_BANK, d) blocks of the normalised train set */
    int nbank;
    float *q, *sims, *best; /* query block, similarities, (KNN_QUERIES, k) best sims */
    int32_t *best_y;
    double *votes;
} knn_state;

static void knn_free(knn_state *s) {
    free(s->bank), free(s->q), free(s->sims), free(s->best), free(s->best_y), free(s->votes);
    pk_arena_destroy(s->arena);
}

pk_status probe_knn(pk_ctx *c, const probe_set *train, const probe_set *test, int classes, int k,
                    double temperature, double *top1) {
    PK_TRY(check_sets(train, test, classes));
    if (k < 1 || k > KNN_MAX_K || k > train->n)
        return pk_error(PK_ERR_INVALID, "probe: k = %d must be in [1, min(%d, %lld train rows)]", k,
                        KNN_MAX_K, (long long)train->n);
    int64_t d = train->d;
    knn_state s = {0};
    pk_status st = PK_OK;
    float *tr = l2_rows(train->x, train->n, d), *te = l2_rows(test->x, test->n, d);
    s.nbank = (int)((train->n + KNN_BANK - 1) / KNN_BANK);
    s.bank = calloc((size_t)s.nbank, sizeof(tensor *));
    s.q = malloc(sizeof(float) * (size_t)(KNN_QUERIES * d));
    s.sims = malloc(sizeof(float) * (size_t)KNN_QUERIES * KNN_BANK);
    s.best = malloc(sizeof(float) * (size_t)KNN_QUERIES * (size_t)k);
    s.best_y = malloc(sizeof(int32_t) * (size_t)KNN_QUERIES * (size_t)k);
    s.votes = malloc(sizeof(double) * (size_t)classes);
    if (!tr || !te || !s.bank || !s.q || !s.sims || !s.best || !s.best_y || !s.votes) {
        st = pk_error(PK_ERR_NOMEM, "probe: out of host memory for k-NN");
        goto done;
    }
    if ((st = pk_arena_create(c->dev, "knn", 0, &s.arena)) != PK_OK) goto done;
    for (int b = 0; b < s.nbank; b++) {
        int64_t rows = train->n - (int64_t)b * KNN_BANK;
        if (rows > KNN_BANK) rows = KNN_BANK;
        s.bank[b] = tensor_new(s.arena, PK_F32, 2, (int64_t[]){rows, d});
        if (!s.bank[b]) {
            st = PK_ERR_NOMEM;
            goto done;
        }
        if ((st = tensor_upload(s.bank[b], tr + (int64_t)b * KNN_BANK * d)) != PK_OK) goto done;
    }
    bool g = pk_set_grad_enabled(c, false);
    int64_t correct = 0;
    for (int64_t q0 = 0; q0 < test->n && st == PK_OK; q0 += KNN_QUERIES) {
        int64_t nq = test->n - q0 < KNN_QUERIES ? test->n - q0 : KNN_QUERIES;
        for (int64_t i = 0; i < nq * k; i++)
            s.best[i] = -INFINITY, s.best_y[i] = 0;
        if ((st = pk_step_begin(c)) != PK_OK) break;
        tensor *qt = tensor_new(c->step, PK_F32, 2, (int64_t[]){nq, d});
        if (!qt || (st = tensor_upload(qt, te + q0 * d)) != PK_OK) {
            st = st != PK_OK ? st : PK_ERR_NOMEM;
            break;
        }
        for (int b = 0; b < s.nbank && st == PK_OK; b++) {
            int64_t rows = s.bank[b]->shape[0];
            tensor *sim = pk_matmul(c, qt, s.bank[b], false, true); // (nq, rows)
            if (!sim || (st = tensor_download(sim, s.sims)) != PK_OK) {
                st = st != PK_OK ? st : PK_ERR_INVALID;
                break;
            }
            for (int64_t i = 0; i < nq; i++) { /* keep the k largest, sorted descending */
                float *bs = s.best + i * k;
                int32_t *by = s.best_y + i * k;
                const float *row = s.sims + i * rows;
                for (int64_t j = 0; j < rows; j++) {
                    float v = row[j];
                    if (!(v > bs[k - 1])) continue;
                    int p = k - 1;
                    while (p > 0 && bs[p - 1] < v) {
                        bs[p] = bs[p - 1], by[p] = by[p - 1];
                        p--;
                    }
                    bs[p] = v, by[p] = train->y[(int64_t)b * KNN_BANK + j];
                }
            }
        }
        for (int64_t i = 0; i < nq && st == PK_OK; i++) {
            memset(s.votes, 0, sizeof(double) * (size_t)classes);
            for (int j = 0; j < k; j++)
                s.votes[s.best_y[i * k + j]] += exp((double)s.best[i * k + j] / temperature);
            int pred = 0;
            for (int cl = 1; cl < classes; cl++)
                if (s.votes[cl] > s.votes[pred]) pred = cl;
            correct += pred == test->y[q0 + i];
        }
    }
    pk_set_grad_enabled(c, g);
    if (st == PK_OK) *top1 = (double)correct / (double)test->n;
done:
    free(tr), free(te);
    knn_free(&s);
    return st;
}

/* Accuracy of argmax(x W^T + b) over rows rows[0..n) of x (all rows 0..n when rows is
 * NULL), fed in blocks. */
static pk_status linear_accuracy(pk_ctx *c, tensor *w, tensor *b, const float *x, const int32_t *y,
                                 const int32_t *rows, int64_t n, int64_t d, int classes, float *buf,
                                 float *logits, int block, double *acc) {
    int64_t correct = 0;
    bool g = pk_set_grad_enabled(c, false);
    pk_status st = PK_OK;
    for (int64_t r0 = 0; r0 < n; r0 += block) {
        int64_t m = n - r0 < block ? n - r0 : block;
        if ((st = pk_step_begin(c)) != PK_OK) break;
        tensor *xt = tensor_new(c->step, PK_F32, 2, (int64_t[]){m, d});
        for (int64_t i = 0; i < m; i++) {
            int64_t r = rows ? rows[r0 + i] : r0 + i;
            memcpy(buf + i * d, x + r * d, sizeof(float) * (size_t)d);
        }
        if (!xt || (st = tensor_upload(xt, buf)) != PK_OK) {
            st = st != PK_OK ? st : PK_ERR_NOMEM;
            break;
        }
        tensor *lg = pk_linear(c, xt, w, b); // (m, classes)
        if (!lg || (st = tensor_download(lg, logits)) != PK_OK) {
            st = st != PK_OK ? st : PK_ERR_INVALID;
            break;
        }
        for (int64_t i = 0; i < m; i++) {
            int p = 0;
            for (int cl = 1; cl < classes; cl++)
                if (logits[i * classes + cl] > logits[i * classes + p]) p = cl;
            correct += p == y[rows ? rows[r0 + i] : r0 + i];
        }
    }
    pk_set_grad_enabled(c, g);
    if (st == PK_OK) *acc = (double)correct / (double)n;
    return st;
}

const double probe_default_lrs[PROBE_DEFAULT_NLR] = {1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0};
const double probe_default_wds[PROBE_DEFAULT_NWD] = {0.0, 1e-5, 1e-4, 1e-3};

/* Scratch shared by every training of one probe_linear_run. */
typedef struct lin_ws {
    pk_ctx *c;
    tensor *w, *b;  /* (classes, d), (classes) */
    const float *x; /* (n, d) the features the probe trains on */
    const int32_t *y;
    int64_t d;
    int classes;
    float *buf, *logits; /* (max(batch, 1024), d), (1024, classes) */
    int32_t *order, *yb;
} lin_ws;

/* Trains the linear layer from its initialisation on rows[0..n) of ws->x: the protocol's
 * optimiser and schedule (see probe.h), mini-batches in a seeded order per epoch (the last
 * one partial, as a DataLoader without drop_last). *diverged: the loss became non-finite
 * (training stops; the weights are then useless). */
static pk_status linear_train(lin_ws *ws, const probe_linear_options *o, const int32_t *rows,
                              int64_t n, double lr, double wd, uint64_t seed, float *init,
                              bool *diverged) {
    pk_ctx *c = ws->c;
    int64_t d = ws->d, bs = o->batch < n ? o->batch : n;
    *diverged = false;
    pk_rng rng = {seed * 0x9E3779B97F4A7C15ull + 3};
    /* DINO's LinearClassifier: weight N(0, 0.01), bias 0; the AdamW variant starts at zeros */
    size_t nw = (size_t)ws->classes * (size_t)d;
    float *w0 = malloc(sizeof(float) * nw);
    if (!w0) return pk_error(PK_ERR_NOMEM, "probe: out of host memory");
    for (size_t i = 0; i < nw; i++)
        w0[i] = o->kind == PROBE_LINEAR_SGD ? (float)(0.01 * pk_rng_normal(&rng)) : 0.0f;
    pk_status st = tensor_upload(ws->w, w0);
    if (init) memcpy(init, w0, sizeof(float) * nw);
    free(w0);
    PK_TRY(st);
    PK_TRY(tensor_fill(ws->b, 0.0f));
    tensor *ps[2] = {ws->w, ws->b};
    pk_param_group grp = {.name = "probe", .params = ps, .n = 2, .lr = lr, .weight_decay = wd};
    pk_optim_options oo = {0};
    if (o->kind == PROBE_LINEAR_SGD)
        oo = (pk_optim_options){.kind = PK_OPTIM_SGD,
                                .sgd = {.lr = lr, .momentum = 0.9, .weight_decay = wd}};
    else
        oo = (pk_optim_options){.kind = PK_OPTIM_ADAMW, .adamw = {.lr = lr, .weight_decay = wd}};
    pk_optimizer *opt = NULL;
    PK_TRY(optim_create(c, &oo, &grp, 1, &opt));
    st = optim_zero_grad(opt);
    for (int64_t i = 0; i < n; i++)
        ws->order[i] = rows ? rows[i] : (int32_t)i;
    int64_t steps_per = (n + bs - 1) / bs, it = 0;
    int64_t total = o->kind == PROBE_LINEAR_SGD ? o->epochs : (n / bs) * o->epochs;
    for (int e = 0; e < o->epochs && st == PK_OK && !*diverged; e++) {
        pk_rng_shuffle(&rng, ws->order, n);
        /* SGD: CosineAnnealingLR(epochs, eta_min 0) stepped per epoch; AdamW (the earlier
         * variant): cosine per step over the full batches only */
        if (o->kind == PROBE_LINEAR_SGD)
            optim_set_lr(opt, 0, 0.5 * lr * (1.0 + cos(M_PI * (double)e / (double)total)));
        int64_t nsteps = o->kind == PROBE_LINEAR_SGD ? steps_per : n / bs;
        for (int64_t s = 0; s < nsteps && st == PK_OK; s++, it++) {
            int64_t m = n - s * bs < bs ? n - s * bs : bs;
            for (int64_t i = 0; i < m; i++) {
                int32_t r = ws->order[s * bs + i];
                memcpy(ws->buf + i * d, ws->x + (int64_t)r * d, sizeof(float) * (size_t)d);
                ws->yb[i] = ws->y[r];
            }
            if ((st = pk_step_begin(c)) != PK_OK) break;
            tensor *xt = tensor_new(c->step, PK_F32, 2, (int64_t[]){m, d});
            tensor *yt = tensor_new(c->step, PK_I32, 1, (int64_t[]){m});
            if (!xt || !yt) {
                st = PK_ERR_NOMEM;
                break;
            }
            if ((st = tensor_upload(xt, ws->buf)) != PK_OK ||
                (st = tensor_upload(yt, ws->yb)) != PK_OK)
                break;
            tensor *loss = pk_cross_entropy(c, pk_linear(c, xt, ws->w, ws->b), yt, 0, 0);
            if (!loss) {
                st = PK_ERR_INVALID;
                break;
            }
            if (s == nsteps - 1) { /* one check per epoch: a diverged lr stops early */
                float lv = 0;
                if ((st = tensor_download(loss, &lv)) != PK_OK) break;
                if (!isfinite(lv)) {
                    *diverged = true;
                    break;
                }
            }
            if ((st = autograd_backward(c, loss)) != PK_OK) break;
            if (o->kind != PROBE_LINEAR_SGD)
                optim_set_lr(opt, 0, 0.5 * lr * (1.0 + cos(M_PI * (double)it / (double)total)));
            if ((st = optim_step(opt)) != PK_OK || (st = optim_zero_grad(opt)) != PK_OK) break;
        }
    }
    optim_destroy(opt);
    return st;
}

pk_status probe_linear_run(pk_ctx *c, const probe_set *train, const probe_set *test, int classes,
                           const probe_linear_options *opt, probe_linear_report *rep) {
    PK_TRY(check_sets(train, test, classes));
    probe_linear_options o = opt ? *opt : (probe_linear_options){0};
    bool sgd = o.kind == PROBE_LINEAR_SGD;
    if (o.kind != PROBE_LINEAR_SGD && o.kind != PROBE_LINEAR_ADAMW)
        return pk_error(PK_ERR_INVALID, "probe: unknown linear-probe protocol %d", (int)o.kind);
    if (o.epochs <= 0) o.epochs = sgd ? 100 : 30;
    if (o.batch <= 0) o.batch = 256;
    if (o.seed == 0) o.seed = 1;
    if (o.val_fraction <= 0) o.val_fraction = 0.1;
    if (o.val_fraction >= 1)
        return pk_error(PK_ERR_INVALID, "probe: validation fraction %g must be in (0, 1)",
                        o.val_fraction);
    const double adam_lr = 1e-3, zero = 0.0;
    const double *lrs = o.lr > 0    ? &o.lr
                        : !sgd      ? &adam_lr
                        : o.lr_grid ? o.lr_grid
                                    : probe_default_lrs;
    int nlr = o.lr > 0 || !sgd ? 1 : o.lr_grid ? o.n_lr : PROBE_DEFAULT_NLR;
    const double *wds = o.lr > 0 || !sgd ? &o.weight_decay : o.wd_grid ? o.wd_grid : &zero;
    int nwd = o.lr > 0 || !sgd ? 1 : o.wd_grid ? o.n_wd : 1;
    if (nlr < 1 || nwd < 1)
        return pk_error(PK_ERR_INVALID, "probe: empty lr (%d) or weight-decay (%d) grid", nlr, nwd);
    for (int i = 0; i < nlr; i++)
        if (!(lrs[i] > 0)) return pk_error(PK_ERR_INVALID, "probe: lr %g must be > 0", lrs[i]);
    for (int i = 0; i < nwd; i++)
        if (!(wds[i] >= 0))
            return pk_error(PK_ERR_INVALID, "probe: weight decay %g must be >= 0", wds[i]);
    bool search = nlr * nwd > 1;
    int64_t n = train->n, d = train->d, nval = search ? (int64_t)llround(o.val_fraction * n) : 0;
    if (search && (nval < 1 || n - nval < 1))
        return pk_error(PK_ERR_INVALID,
                        "probe: %lld training rows cannot hold a validation split of %g",
                        (long long)n, o.val_fraction);
    int64_t bs = o.batch < n ? o.batch : n;
    pk_status st = PK_OK;
    lin_ws ws = {.c = c, .d = d, .classes = classes, .y = train->y};
    double *mean = NULL, *sd = NULL;
    float *xtr = NULL, *xte = NULL;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
    ws.buf = malloc(sizeof(float) * (size_t)(bs > 1024 ? bs : 1024) * (size_t)d);
    ws.logits = malloc(sizeof(float) * 1024 * (size_t)classes);
    ws.order = malloc(sizeof(int32_t) * (size_t)n);
    ws.yb = malloc(sizeof(int32_t) * (size_t)bs);
    if (!perm || !ws.buf || !ws.logits || !ws.order || !ws.yb) {
        st = pk_error(PK_ERR_NOMEM, "probe: out of host memory for the linear probe");
        goto done;
    }
    ws.x = train->x;
    const float *xt_eval = test->x;
    if (!sgd) { /* the AdamW variant standardises with the training set's statistics */
        mean = calloc((size_t)d, sizeof(double)), sd = calloc((size_t)d, sizeof(double));
        xtr = malloc(sizeof(float) * (size_t)(n * d));
        xte = malloc(sizeof(float) * (size_t)(test->n * d));
        if (!mean || !sd || !xtr || !xte) {
            st = pk_error(PK_ERR_NOMEM, "probe: out of host memory for the linear probe");
            goto done;
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++)
                mean[j] += train->x[i * d + j];
        for (int64_t j = 0; j < d; j++)
            mean[j] /= (double)n;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double v = train->x[i * d + j] - mean[j];
                sd[j] += v * v;
            }
        for (int64_t j = 0; j < d; j++) {
            sd[j] = sqrt(sd[j] / (double)n);
            if (sd[j] < 1e-6) sd[j] = 1e-6; /* constant dims (raw pixels at the border) */
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++)
                xtr[i * d + j] = (float)((train->x[i * d + j] - mean[j]) / sd[j]);
        for (int64_t i = 0; i < test->n; i++)
            for (int64_t j = 0; j < d; j++)
                xte[i * d + j] = (float)((test->x[i * d + j] - mean[j]) / sd[j]);
        ws.x = xtr, xt_eval = xte;
    }
    ws.w = pk_param_new(c, "probe.weight", 2, (int64_t[]){classes, d});
    ws.b = pk_param_new(c, "probe.bias", 1, (int64_t[]){classes});
    if (!ws.w || !ws.b) {
        st = PK_ERR_NOMEM;
        goto done;
    }
    double best_lr = lrs[0], best_wd = wds[0], best_val = -1;
    int tried = 0;
    if (search) {
        /* the validation split: the first nval rows of a seeded permutation of the training
         * set; the search trains on the rest */
        pk_rng vr = {o.seed * 0xD1B54A32D192ED03ull + 11};
        for (int64_t i = 0; i < n; i++)
            perm[i] = (int32_t)i;
        pk_rng_shuffle(&vr, perm, n);
        for (int i = 0; i < nlr && st == PK_OK; i++)
            for (int j = 0; j < nwd && st == PK_OK; j++) {
                bool div = false;
                double acc = 0;
                st = linear_train(&ws, &o, perm + nval, n - nval, lrs[i], wds[j], o.seed, NULL,
                                  &div);
                if (st == PK_OK && !div)
                    st = linear_accuracy(c, ws.w, ws.b, ws.x, train->y, perm, nval, d, classes,
                                         ws.buf, ws.logits, 1024, &acc);
                tried++;
                if (st == PK_OK && !div && acc > best_val)
                    best_val = acc, best_lr = lrs[i], best_wd = wds[j];
                if (rep && rep->on_point) rep->on_point(rep->user, lrs[i], wds[j], div ? -1 : acc);
            }
        if (st == PK_OK && best_val < 0)
            st = pk_error(PK_ERR_INVALID, "probe: every lr of the grid diverged");
    }
    /* the final classifier: the chosen (lr, wd) on every training row */
    bool div = false;
    if (st == PK_OK)
        st = linear_train(&ws, &o, NULL, n, best_lr, best_wd, o.seed, rep ? rep->weight0 : NULL,
                          &div);
    if (st == PK_OK && div)
        st = pk_error(PK_ERR_INVALID, "probe: the linear probe diverged (lr %g); try a smaller lr",
                      best_lr);
    double test_acc = 0, train_acc = 0;
    if (st == PK_OK)
        st = linear_accuracy(c, ws.w, ws.b, xt_eval, test->y, NULL, test->n, d, classes, ws.buf,
                             ws.logits, 1024, &test_acc);
    if (st == PK_OK)
        st = linear_accuracy(c, ws.w, ws.b, ws.x, train->y, NULL, n, d, classes, ws.buf, ws.logits,
                             1024, &train_acc);
    if (st == PK_OK && rep) {
        rep->test_acc = test_acc, rep->train_acc = train_acc, rep->val_acc = best_val;
        rep->lr = best_lr, rep->wd = best_wd, rep->epochs = o.epochs, rep->batch = o.batch;
        rep->searched = tried, rep->val_rows = nval;
        if (rep->weight) st = tensor_download(ws.w, rep->weight);
        if (st == PK_OK && rep->bias) st = tensor_download(ws.b, rep->bias);
    }
done:
    free(mean), free(sd), free(xtr), free(xte), free(perm);
    free(ws.buf), free(ws.logits), free(ws.order), free(ws.yb);
    return st;
}

pk_status probe_linear(pk_ctx *c, const probe_set *train, const probe_set *test, int classes,
                       const probe_linear_options *o, double *test_acc, double *train_acc) {
    probe_linear_report r = {0};
    PK_TRY(probe_linear_run(c, train, test, classes, o, &r));
    *test_acc = r.test_acc;
    if (train_acc) *train_acc = r.train_acc;
    return PK_OK;
}

pk_status probe_features_load(const char *path, float **x, int32_t **y, int64_t *n, int64_t *d) {
    *x = NULL, *y = NULL;
    st_file f;
    PK_TRY(safetensors_open(path, &f));
    pk_status st = PK_OK;
    const st_tensor *ft = safetensors_find(&f, "features"), *lt = safetensors_find(&f, "labels");
    if (!ft || ft->ndim != 2)
        st = pk_error(PK_ERR_FORMAT, "%s: expected a tensor `features` of shape (N, D)", path);
    else if (!lt || lt->ndim != 1 || lt->shape[0] != ft->shape[0] ||
             (lt->dtype != ST_I32 && lt->dtype != ST_I64))
        st = pk_error(PK_ERR_FORMAT,
                      "%s: expected a tensor `labels` (I32 or I64) of shape (%lld) next to the "
                      "features; probes need labelled features",
                      path, ft ? (long long)ft->shape[0] : 0LL);
    if (st == PK_OK) {
        *n = ft->shape[0], *d = ft->shape[1];
        *x = malloc(sizeof(float) * (size_t)(*n * *d + 1));
        *y = malloc(sizeof(int32_t) * (size_t)(*n + 1));
        if (!*x || !*y) st = pk_error(PK_ERR_NOMEM, "%s: out of host memory", path);
    }
    if (st == PK_OK) st = st_tensor_to_f32(ft, *x);
    if (st == PK_OK) {
        for (int64_t i = 0; i < *n; i++) {
            int64_t v;
            if (lt->dtype == ST_I32) {
                int32_t w;
                memcpy(&w, (const char *)lt->data + 4 * i, 4);
                v = w;
            } else {
                memcpy(&v, (const char *)lt->data + 8 * i, 8);
            }
            if (v < 0 || v > INT32_MAX) {
                st = pk_error(PK_ERR_FORMAT, "%s: label %lld of row %lld is out of range", path,
                              (long long)v, (long long)i);
                break;
            }
            (*y)[i] = (int32_t)v;
        }
    }
    if (st != PK_OK) {
        free(*x), free(*y);
        *x = NULL, *y = NULL;
    }
    safetensors_close(&f);
    return st;
}

pk_status probe_features_knn_columns(const char *path, int64_t d, int64_t *col, int64_t *len) {
    *col = 0, *len = d;
    st_file f;
    PK_TRY(safetensors_open(path, &f));
    const char *v = safetensors_meta(&f, "knn_columns");
    pk_status st = PK_OK;
    if (v) {
        long long a = -1, b = -1;
        char tail = 0;
        if (sscanf(v, "%lld,%lld%c", &a, &b, &tail) != 2 || a < 0 || b < 1 || a + b > d)
            st = pk_error(PK_ERR_FORMAT,
                          "%s: metadata knn_columns is '%s'; expected 'start,len' within the %lld "
                          "feature columns",
                          path, v, (long long)d);
        else
            *col = a, *len = b;
    }
    safetensors_close(&f);
    return st;
}
