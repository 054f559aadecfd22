/* probe.c - weighted k-NN and linear probe on frozen features (see probe.h). */
#include "probe.h"

#include <math.h>
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

/* Accuracy of argmax(x W^T + b) over a set, standardised rows fed in blocks. */
static pk_status linear_accuracy(pk_ctx *c, tensor *w, tensor *b, const float *x, const int32_t *y,
                                 int64_t n, int64_t d, int classes, float *buf, float *logits,
                                 int block, double *acc) {
    int64_t correct = 0;
    bool g = pk_set_grad_enabled(c, false);
    pk_status st = PK_OK;
    for (int64_t r0 = 0; r0 < n; r0 += block) {
        int64_t m = n - r0 < block ? n - r0 : block;
        if ((st = pk_step_begin(c)) != PK_OK) break;
        tensor *xt = tensor_new(c->step, PK_F32, 2, (int64_t[]){m, d});
        memcpy(buf, x + r0 * d, sizeof(float) * (size_t)(m * d));
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
            correct += p == y[r0 + i];
        }
    }
    pk_set_grad_enabled(c, g);
    if (st == PK_OK) *acc = (double)correct / (double)n;
    return st;
}

pk_status probe_linear(pk_ctx *c, const probe_set *train, const probe_set *test, int classes,
                       const probe_linear_options *opt, double *test_acc, double *train_acc) {
    PK_TRY(check_sets(train, test, classes));
    probe_linear_options o = opt ? *opt : (probe_linear_options){0};
    if (o.epochs <= 0) o.epochs = 30;
    if (o.batch <= 0) o.batch = 256;
    if (o.lr <= 0) o.lr = 1e-3;
    if (o.seed == 0) o.seed = 1;
    int64_t n = train->n, d = train->d, bs = o.batch < n ? o.batch : n;
    pk_status st = PK_OK;
    double *mean = calloc((size_t)d, sizeof(double)), *sd = calloc((size_t)d, sizeof(double));
    float *xtr = malloc(sizeof(float) * (size_t)(n * d));
    float *xte = malloc(sizeof(float) * (size_t)(test->n * d));
    float *buf = malloc(sizeof(float) * (size_t)(bs > 1024 ? bs : 1024) * (size_t)d);
    float *logits = malloc(sizeof(float) * 1024 * (size_t)classes);
    int32_t *order = malloc(sizeof(int32_t) * (size_t)n),
            *yb = malloc(sizeof(int32_t) * (size_t)bs);
    pk_optimizer *opt_ = NULL;
    if (!mean || !sd || !xtr || !xte || !buf || !logits || !order || !yb) {
        st = pk_error(PK_ERR_NOMEM, "probe: out of host memory for the linear probe");
        goto done;
    }
    /* standardise with the training set's statistics */
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

    tensor *w = pk_param_new(c, "probe.weight", 2, (int64_t[]){classes, d});
    tensor *b = pk_param_new(c, "probe.bias", 1, (int64_t[]){classes});
    if (!w || !b) {
        st = PK_ERR_NOMEM;
        goto done;
    }
    if ((st = tensor_fill(w, 0.0f)) != PK_OK || (st = tensor_fill(b, 0.0f)) != PK_OK) goto done;
    tensor *ps[2] = {w, b};
    pk_param_group grp = {
        .name = "probe", .params = ps, .n = 2, .lr = o.lr, .weight_decay = o.weight_decay};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAMW, .adamw = {.lr = o.lr}};
    if ((st = optim_create(c, &oo, &grp, 1, &opt_)) != PK_OK) goto done;
    if ((st = optim_zero_grad(opt_)) != PK_OK) goto done;
    pk_rng rng = {o.seed * 0x9E3779B97F4A7C15ull + 3};
    for (int64_t i = 0; i < n; i++)
        order[i] = (int32_t)i;
    int64_t steps_per = n / bs, total = steps_per * o.epochs, it = 0;
    for (int e = 0; e < o.epochs && st == PK_OK; e++) {
        pk_rng_shuffle(&rng, order, n);
        for (int64_t s = 0; s < steps_per && st == PK_OK; s++, it++) {
            for (int64_t i = 0; i < bs; i++) {
                int32_t r = order[s * bs + i];
                memcpy(buf + i * d, xtr + (int64_t)r * d, sizeof(float) * (size_t)d);
                yb[i] = train->y[r];
            }
            if ((st = pk_step_begin(c)) != PK_OK) break;
            tensor *xt = tensor_new(c->step, PK_F32, 2, (int64_t[]){bs, d});
            tensor *yt = tensor_new(c->step, PK_I32, 1, (int64_t[]){bs});
            if (!xt || !yt) {
                st = PK_ERR_NOMEM;
                break;
            }
            if ((st = tensor_upload(xt, buf)) != PK_OK || (st = tensor_upload(yt, yb)) != PK_OK)
                break;
            tensor *loss = pk_cross_entropy(c, pk_linear(c, xt, w, b), yt, 0, 0);
            if (!loss) {
                st = PK_ERR_INVALID;
                break;
            }
            if ((st = autograd_backward(c, loss)) != PK_OK) break;
            optim_set_lr(opt_, 0, 0.5 * o.lr * (1.0 + cos(M_PI * (double)it / (double)total)));
            if ((st = optim_step(opt_)) != PK_OK || (st = optim_zero_grad(opt_)) != PK_OK) break;
        }
    }
    if (st == PK_OK)
        st = linear_accuracy(c, w, b, xte, test->y, test->n, d, classes, buf, logits, 1024,
                             test_acc);
    if (st == PK_OK && train_acc)
        st = linear_accuracy(c, w, b, xtr, train->y, n, d, classes, buf, logits, 1024, train_acc);
done:
    optim_destroy(opt_);
    free(mean), free(sd), free(xtr), free(xte), free(buf), free(logits), free(order), free(yb);
    return st;
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
