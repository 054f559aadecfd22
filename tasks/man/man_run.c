/* man_run.c - a MAN training run: finds the dataset format of a folder, builds augmented
 * batches, runs the epochs with SGD + cosine/warmup, evaluates, checkpoints (resumable) and
 * writes metrics.json and log.csv. The model and its step are man_model.c's. */
#include "man_run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "dataset.h"
#include "optim/schedule.h"
#include "rng.h"

#define HIST_COLS 6 /* lr, loss, aux loss, train accuracy, test accuracy, epoch seconds */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

typedef enum data_kind { DATA_IDX, DATA_CIFAR, DATA_FOLDER } data_kind;

/* Loads train and test sets from `dir`, recognising the layout by its files. */
static pk_status load_data(const char *dir, int image_size, pk_dataset *train, pk_dataset *test,
                           data_kind *kind) {
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(b, sizeof b, "%s/train-images-idx3-ubyte", dir);
    if (path_exists(a) || path_exists(b)) {
        const char *gz = path_exists(a) ? ".gz" : "";
        char ti[1200], tl[1200], vi[1200], vl[1200];
        snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte%s", dir, gz);
        snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte%s", dir, gz);
        snprintf(vi, sizeof vi, "%s/t10k-images-idx3-ubyte%s", dir, gz);
        snprintf(vl, sizeof vl, "%s/t10k-labels-idx1-ubyte%s", dir, gz);
        *kind = DATA_IDX;
        PK_TRY(idx_load(ti, tl, train));
        return idx_load(vi, vl, test);
    }
    snprintf(a, sizeof a, "%s/data_batch_1.bin", dir);
    if (path_exists(a)) {
        char paths[5][1200], tpath[1200];
        const char *pp[5];
        for (int i = 0; i < 5; i++) {
            snprintf(paths[i], sizeof paths[i], "%s/data_batch_%d.bin", dir, i + 1);
            pp[i] = paths[i];
        }
        snprintf(tpath, sizeof tpath, "%s/test_batch.bin", dir);
        const char *tp[1] = {tpath};
        *kind = DATA_CIFAR;
        PK_TRY(cifar_load(pp, 5, 0, train));
        return cifar_load(tp, 1, 0, test);
    }
    snprintf(a, sizeof a, "%s/train", dir);
    snprintf(b, sizeof b, "%s/test", dir);
    if (is_dir(a) && !is_dir(b)) snprintf(b, sizeof b, "%s/val", dir);
    if (is_dir(a) && is_dir(b)) {
        folder_options fo = {.w = image_size, .h = image_size};
        *kind = DATA_FOLDER;
        PK_TRY(imagefolder_load(a, &fo, train));
        return imagefolder_load(b, &fo, test);
    }
    return pk_error(PK_ERR_IO,
                    "%s: not a dataset folder: expected Fashion-MNIST/MNIST IDX files "
                    "(train-images-idx3-ubyte[.gz], ...), CIFAR-10 binary batches "
                    "(data_batch_1.bin ... test_batch.bin), or image folders train/<class>/ and "
                    "test/<class>/ (or val/)",
                    dir);
}

/* Per-channel normalisation of the official code: CIFAR statistics for CIFAR, else 0.5/0.5. */
typedef struct norm {
    float mean[3], std[3];
} norm;

/* Builds sample `idx` into x (normalised) and t ([0, 1]), both (C, H, W): random crop with
 * `pad` pixels of padding (reflect or zero) and an optional horizontal flip. */
static void make_sample(const pk_dataset *ds, int idx, const norm *nm, int pad, bool reflect,
                        int ox, int oy, bool flip, float *x, float *t) {
    int h = ds->h, w = ds->w, ch = ds->c;
    const uint8_t *src = ds->images + (size_t)idx * (size_t)(h * w * ch);
    for (int c = 0; c < ch; c++)
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++) {
                int sx = (flip ? w - 1 - xx : xx) + ox - pad, sy = y + oy - pad;
                float v = 0.0f;
                if (reflect) {
                    sx = sx < 0 ? -sx : sx >= w ? 2 * w - 2 - sx : sx;
                    sy = sy < 0 ? -sy : sy >= h ? 2 * h - 2 - sy : sy;
                }
                if (sx >= 0 && sx < w && sy >= 0 && sy < h)
                    v = (float)src[((size_t)sy * w + sx) * ch + c] * (1.0f / 255.0f);
                size_t o = ((size_t)c * h + y) * w + xx;
                t[o] = v;
                x[o] = (v - nm->mean[c]) / nm->std[c];
            }
}

typedef struct run_state {
    const man_run_options *o;
    pk_ctx *c;
    man_model *model;
    pk_dataset train, test;
    data_kind kind;
    norm nm;
    int32_t *subset, *order;
    int ntrain, ntest;
    float *x, *t;
    int32_t *y, *pred;
    float *hist; /* (epochs, HIST_COLS) */
    char options_json[512];
} run_state;

static pk_status evaluate(run_state *r, double *acc) {
    int b = r->o->batch, correct = 0;
    int64_t img = (int64_t)r->test.c * r->test.h * r->test.w;
    for (int at = 0; at < r->ntest; at += b) {
        int n = r->ntest - at < b ? r->ntest - at : b;
        for (int i = 0; i < n; i++) {
            make_sample(&r->test, at + i, &r->nm, 0, false, 0, 0, false, r->x + i * img,
                        r->t + i * img);
            r->y[i] = r->test.labels[at + i];
        }
        man_batch mb = {.x = r->x, .target = r->t, .labels = r->y, .n = n};
        PK_TRY(man_predict(r->model, &mb, r->pred));
        for (int i = 0; i < n; i++)
            correct += r->pred[i] == r->y[i];
    }
    *acc = (double)correct / r->ntest;
    return PK_OK;
}

static pk_status write_text(const char *path, const char *text) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return pk_error(PK_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    bool ok = fputs(text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
        return pk_error(PK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return PK_OK;
}

/* Rewrites log.csv from the history of the epochs done. */
static pk_status write_log(run_state *r, int done, size_t peak) {
    size_t cap = 256 + (size_t)done * 160;
    char *s = malloc(cap);
    if (!s) return pk_error(PK_ERR_NOMEM, "out of host memory");
    size_t at = (size_t)snprintf(s, cap,
                                 "epoch,lr,train_loss,aux_loss,train_accuracy,test_accuracy,"
                                 "epoch_seconds,peak_memory_bytes\n");
    for (int e = 0; e < done; e++) {
        const float *h = r->hist + (size_t)e * HIST_COLS;
        at += (size_t)snprintf(s + at, cap - at, "%d,%.6g,%.6f,%.6f,%.6f,%.6f,%.3f,%zu\n", e + 1,
                               h[0], h[1], h[2], h[3], h[4], h[5], peak);
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/log.csv", r->o->out);
    pk_status st = write_text(path, s);
    free(s);
    return st;
}

static pk_status write_metrics(run_state *r, int done, const man_result *res) {
    const man_run_options *o = r->o;
    const man_config *cfg = man_model_config(r->model);
    size_t cap = 4096 + (size_t)done * 64;
    char *s = malloc(cap);
    if (!s) return pk_error(PK_ERR_NOMEM, "out of host memory");
    double l1[2] = {0, 0}, l2[2] = {0, 0};
    int nmod = man_module_count(r->model);
    if (nmod > 1) {
        man_loss_weights(r->model, 0, &l1[0], &l2[0]);
        man_loss_weights(r->model, nmod - 2, &l1[1], &l2[1]);
    }
    const man_memory *m = &res->memory;
    size_t at = (size_t)snprintf(
        s, cap,
        "{\n  \"method\": \"%s\",\n  \"arch\": \"%s\",\n  \"blocks\": %d,\n  \"modules\": %d,\n"
        "  \"epochs\": %d,\n  \"batch\": %d,\n  \"lr\": %.6g,\n  \"train_samples\": %lld,\n"
        "  \"test_samples\": %lld,\n  \"test_accuracy\": %.6f,\n  \"peak_memory_bytes\": %zu,\n"
        "  \"memory_bytes\": {\"parameters\": %zu, \"gradients\": %zu, \"optimizer_state\": %zu, "
        "\"teachers\": %zu, \"activations\": %zu, \"carry_buffers\": %zu},\n"
        "  \"epoch_seconds\": %.3f,\n  \"device\": \"%s\",\n"
        "  \"ema_momentum\": %.6g,\n  \"lambda1_first_last\": [%.6g, %.6g],\n"
        "  \"lambda2_first_last\": [%.6g, %.6g],\n  \"epoch_seconds_each\": [",
        man_method_name(cfg->method), man_arch_name(cfg->arch), cfg->blocks, nmod, o->epochs,
        o->batch, cfg->lr, (long long)res->train_samples, (long long)res->test_samples,
        res->test_accuracy, m->total, m->params, m->grads, m->state, m->teachers, m->activations,
        m->buffers, res->epoch_seconds, pk_device_get_info(r->c->dev)->name, cfg->ema_momentum,
        l1[0], l1[1], l2[0], l2[1]);
    for (int e = 0; e < done; e++)
        at += (size_t)snprintf(s + at, cap - at, "%s%.3f", e ? ", " : "",
                               r->hist[(size_t)e * HIST_COLS + 5]);
    at += (size_t)snprintf(s + at, cap - at, "],\n  \"test_accuracy_each\": [");
    for (int e = 0; e < done; e++)
        at += (size_t)snprintf(s + at, cap - at, "%s%.6f", e ? ", " : "",
                               r->hist[(size_t)e * HIST_COLS + 4]);
    snprintf(s + at, cap - at, "]\n}\n");
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.json", o->out);
    pk_status st = write_text(path, s);
    free(s);
    return st;
}

/* Writes ckpt-<epoch>.safetensors: every model tensor, the history, the data RNG. */
static pk_status save_checkpoint(run_state *r, int epoch, uint64_t rng) {
    man_state_entry *e = NULL;
    int n = 0;
    PK_TRY(man_state_list(r->model, &e, &n));
    st_write_tensor *w = calloc((size_t)n + 1, sizeof *w);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    pk_status s = w && bufs ? PK_OK : pk_error(PK_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < n && s == PK_OK; i++) {
        bufs[i] = malloc(sizeof(float) * (size_t)tensor_numel(e[i].t));
        if (!bufs[i]) {
            s = pk_error(PK_ERR_NOMEM, "out of host memory");
            break;
        }
        s = tensor_download(e[i].t, bufs[i]);
        w[i] = (st_write_tensor){.name = e[i].name,
                                 .dtype = ST_F32,
                                 .ndim = e[i].t->ndim,
                                 .shape = e[i].t->shape,
                                 .data = bufs[i]};
    }
    int64_t hshape[2] = {r->o->epochs, HIST_COLS};
    if (s == PK_OK) {
        w[n] = (st_write_tensor){
            .name = "run.history", .dtype = ST_F32, .ndim = 2, .shape = hshape, .data = r->hist};
        char path[1200];
        checkpoint_path(r->o->out, epoch, path, sizeof path);
        ckpt_meta meta = {.step = epoch, .rng = {rng}, .options_json = r->options_json};
        s = checkpoint_write(path, w, n + 1, &meta);
        if (s == PK_OK) s = checkpoint_keep_last(r->o->out, 2);
    }
    for (int i = 0; bufs && i < n; i++)
        free(bufs[i]);
    free(bufs), free(w), free(e);
    return s;
}

/* Loads the newest checkpoint of the output folder; *epoch = -1 when there is none. */
static pk_status load_checkpoint(run_state *r, int *epoch, uint64_t *rng) {
    int64_t step = -1;
    *epoch = -1;
    PK_TRY(checkpoint_find_latest(r->o->out, &step));
    if (step < 0) return PK_OK;
    char path[1200];
    checkpoint_path(r->o->out, step, path, sizeof path);
    ckpt_file ck = {0};
    PK_TRY(checkpoint_open(path, &ck));
    pk_status s = PK_OK;
    if (!ck.options_json || strcmp(ck.options_json, r->options_json) != 0)
        s = pk_error(PK_ERR_INVALID,
                     "%s: written by a run with options %s; this run has %s (resume with the same "
                     "method, arch, blocks, epochs, batch, train limit and seed)",
                     path, ck.options_json ? ck.options_json : "{}", r->options_json);
    man_state_entry *e = NULL;
    int n = 0;
    if (s == PK_OK) s = man_state_list(r->model, &e, &n);
    for (int i = 0; i <= n && s == PK_OK; i++) {
        const char *name = i < n ? e[i].name : "run.history";
        int64_t want = i < n ? tensor_numel(e[i].t) : (int64_t)r->o->epochs * HIST_COLS;
        const st_tensor *t = safetensors_find(&ck.st, name);
        if (!t || t->dtype != ST_F32 || (int64_t)st_tensor_numel(t) != want) {
            s = pk_error(PK_ERR_FORMAT, "%s: tensor %s: expected F32 with %lld elements, %s", path,
                         name, (long long)want, t ? "found another dtype or size" : "missing");
            break;
        }
        float *h = malloc(sizeof(float) * (size_t)want);
        if (!h) {
            s = pk_error(PK_ERR_NOMEM, "out of host memory");
            break;
        }
        s = st_tensor_to_f32(t, h);
        if (s == PK_OK) {
            if (i < n)
                s = tensor_upload(e[i].t, h);
            else
                memcpy(r->hist, h, sizeof(float) * (size_t)want);
        }
        free(h);
    }
    free(e);
    if (s == PK_OK) {
        *epoch = (int)ck.step;
        *rng = ck.rng[0];
    }
    checkpoint_close(&ck);
    return s;
}

static void report(man_progress_fn fn, void *user, man_progress p) {
    if (fn) fn(user, &p);
}

static pk_status run_body(run_state *r, man_progress_fn fn, void *user, man_result *res) {
    const man_run_options *o = r->o;
    PK_TRY(load_data(o->data, o->image_size, &r->train, &r->test, &r->kind));
    if (r->train.c != r->test.c || r->train.h != r->test.h || r->train.w != r->test.w)
        return pk_error(PK_ERR_FORMAT, "%s: training images are %dx%dx%d, test images %dx%dx%d",
                        o->data, r->train.w, r->train.h, r->train.c, r->test.w, r->test.h,
                        r->test.c);
    if (r->train.c != 1 && r->train.c != 3)
        return pk_error(PK_ERR_FORMAT, "%s: images have %d channels; expected 1 or 3", o->data,
                        r->train.c);
    if (r->kind == DATA_FOLDER) { /* labels are positions in each root's sorted class list */
        bool same = r->train.num_classes == r->test.num_classes;
        for (int k = 0; same && k < r->train.num_classes; k++)
            same = strcmp(r->train.class_names[k], r->test.class_names[k]) == 0;
        if (!same)
            return pk_error(PK_ERR_FORMAT,
                            "%s: the test folder's classes differ from train/'s %d classes; "
                            "expected the same class subfolders in both",
                            o->data, r->train.num_classes);
    }
    int classes =
        r->train.num_classes > r->test.num_classes ? r->train.num_classes : r->test.num_classes;
    r->ntrain = o->train_limit > 0 && o->train_limit < r->train.n ? o->train_limit : r->train.n;
    r->ntest = o->test_limit > 0 && o->test_limit < r->test.n ? o->test_limit : r->test.n;
    int steps = r->ntrain / o->batch;
    if (steps < 1)
        return pk_error(PK_ERR_INVALID, "%d training images do not fill one batch of %d", r->ntrain,
                        o->batch);
    if (r->kind == DATA_CIFAR)
        r->nm = (norm){{125.3f / 255, 123.0f / 255, 113.9f / 255},
                       {63.0f / 255, 62.1f / 255, 66.7f / 255}};
    else
        r->nm = (norm){{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};
    /* Flip: yes for CIFAR and photos (the official CIFAR pipeline); not for Fashion-MNIST,
     * whose items have a canonical orientation (every shoe faces left in train and test), so
     * a flip only creates images the test set never shows. */
    bool flip = o->flip >= 0 ? o->flip == 1 : r->kind != DATA_IDX;
    bool reflect = r->kind == DATA_CIFAR; /* official CIFAR: F.pad(..., mode='reflect') */

    pk_ctx_options co = {.device = o->device, .seed = o->seed, .threads = o->threads};
    PK_TRY(pk_ctx_create(&co, &r->c));
    man_config cfg = {.arch = o->arch,
                      .method = o->method,
                      .blocks = o->blocks,
                      .in_channels = r->train.c,
                      .height = r->train.h,
                      .width = r->train.w,
                      .classes = classes,
                      .lr = o->lr,
                      .ema_momentum = o->ema_momentum,
                      .lambda_set = o->lambda_set,
                      .batch = o->batch,
                      .seed = o->seed};
    memcpy(cfg.lambda1, o->lambda1, sizeof cfg.lambda1);
    memcpy(cfg.lambda2, o->lambda2, sizeof cfg.lambda2);
    PK_TRY(man_model_create(r->c, &cfg, &r->model));

    int64_t img = (int64_t)r->train.c * r->train.h * r->train.w;
    r->x = malloc(sizeof(float) * (size_t)(o->batch * img));
    r->t = malloc(sizeof(float) * (size_t)(o->batch * img));
    r->y = malloc(sizeof(int32_t) * (size_t)o->batch);
    r->pred = malloc(sizeof(int32_t) * (size_t)o->batch);
    r->subset = malloc(sizeof(int32_t) * (size_t)r->train.n);
    r->order = malloc(sizeof(int32_t) * (size_t)r->ntrain);
    r->hist = calloc((size_t)o->epochs * HIST_COLS, sizeof(float));
    if (!r->x || !r->t || !r->y || !r->pred || !r->subset || !r->order || !r->hist)
        return pk_error(PK_ERR_NOMEM, "out of host memory");
    /* a fixed subset: the first N of a seeded permutation (the same for every method) */
    pk_rng data_rng = {o->seed * 0x9E3779B97F4A7C15ull + 17};
    for (int i = 0; i < r->train.n; i++)
        r->subset[i] = i;
    if (r->ntrain < r->train.n) pk_rng_shuffle(&data_rng, r->subset, r->train.n);

    snprintf(r->options_json, sizeof r->options_json,
             "{\"arch\":\"%s\",\"method\":\"%s\",\"blocks\":%d,\"epochs\":%d,\"batch\":%d,"
             "\"train_limit\":%d,\"seed\":%llu}",
             man_arch_name(cfg.arch), man_method_name(cfg.method),
             man_model_config(r->model)->blocks, o->epochs, o->batch, r->ntrain,
             (unsigned long long)o->seed);
    if (mkdir(o->out, 0777) != 0 && errno != EEXIST)
        return pk_error(PK_ERR_IO, "%s: cannot create the output folder: %s", o->out,
                        strerror(errno));
    int start = 0;
    if (o->resume) {
        int ep = -1;
        uint64_t st = 0;
        PK_TRY(load_checkpoint(r, &ep, &st));
        if (ep >= 0) {
            start = ep;
            data_rng.state = st;
            man_set_counters(r->model, (int64_t)ep * steps);
            char msg[1300];
            snprintf(msg, sizeof msg, "resuming %s after epoch %d", o->out, ep);
            report(fn, user, (man_progress){.kind = MAN_PROGRESS_INFO, .message = msg});
        }
    }
    int64_t total = (int64_t)o->epochs * steps;
    int64_t warm = (int64_t)llround((o->warmup > 0 ? o->warmup : 0.025) * (double)total);
    pk_lr_schedule sched = {
        .kind = PK_LR_COSINE, .lr = o->lr, .max_steps = total, .warmup = warm < 1 ? 1 : warm};
    PK_TRY(schedule_validate(&sched));
    pk_optimizer *opt = man_model_optimizer(r->model);

    int end = o->stop_after > 0 && o->stop_after < o->epochs ? o->stop_after : o->epochs;
    for (int e = start; e < end; e++) {
        report(fn, user,
               (man_progress){.kind = MAN_PROGRESS_EPOCH_START,
                              .epoch = e + 1,
                              .epochs = o->epochs,
                              .steps = steps});
        double t0 = now_s(), loss = 0, aux = 0, lr = 0;
        int64_t correct = 0;
        /* each epoch permutes the fixed subset afresh: a resumed run sees the same order */
        memcpy(r->order, r->subset, sizeof(int32_t) * (size_t)r->ntrain);
        pk_rng_shuffle(&data_rng, r->order, r->ntrain);
        for (int s = 0; s < steps; s++) {
            for (int i = 0; i < o->batch; i++) {
                int idx = r->order[(size_t)s * o->batch + i];
                uint64_t bits = pk_rng_next(&data_rng);
                int span = 9; /* crop offsets 0..8: padding 4 on each side */
                make_sample(&r->train, idx, &r->nm, 4, reflect, (int)(bits % span),
                            (int)((bits >> 8) % span), flip && ((bits >> 16) & 1), r->x + i * img,
                            r->t + i * img);
                r->y[i] = r->train.labels[idx];
            }
            lr = schedule_lr(&sched, (int64_t)e * steps + s);
            optim_set_lr(opt, 0, lr);
            man_batch mb = {.x = r->x, .target = r->t, .labels = r->y, .n = o->batch};
            man_step_stats st;
            PK_TRY(man_train_step(r->model, &mb, &st));
            if (!isfinite(st.loss) || !isfinite(st.aux_loss))
                return pk_error(PK_ERR_INVALID,
                                "training diverged at epoch %d step %d (loss %g, aux loss %g); "
                                "try a smaller --lr",
                                e + 1, s + 1, st.loss, st.aux_loss);
            loss += st.loss, aux += st.aux_loss, correct += st.correct;
            report(fn, user,
                   (man_progress){.kind = MAN_PROGRESS_STEP,
                                  .epoch = e + 1,
                                  .epochs = o->epochs,
                                  .step = s + 1,
                                  .steps = steps,
                                  .loss = loss / (s + 1),
                                  .aux_loss = aux / (s + 1),
                                  .lr = lr,
                                  .train_acc = (double)correct / ((double)(s + 1) * o->batch)});
        }
        double secs = now_s() - t0, acc = 0;
        PK_TRY(evaluate(r, &acc));
        float *h = r->hist + (size_t)e * HIST_COLS;
        h[0] = (float)lr, h[1] = (float)(loss / steps), h[2] = (float)(aux / steps);
        h[3] = (float)((double)correct / ((double)steps * o->batch));
        h[4] = (float)acc, h[5] = (float)secs;
        PK_TRY(save_checkpoint(r, e + 1, data_rng.state));
        PK_TRY(write_log(r, e + 1, man_model_memory(r->model).total));
        report(fn, user,
               (man_progress){.kind = MAN_PROGRESS_EPOCH_END,
                              .epoch = e + 1,
                              .epochs = o->epochs,
                              .loss = h[1],
                              .aux_loss = h[2],
                              .train_acc = h[3],
                              .test_acc = acc,
                              .lr = lr,
                              .seconds = secs});
    }
    int done = end > start ? end : start;
    if (done < 1) return pk_error(PK_ERR_INVALID, "man: no epoch to report");
    double sum = 0;
    for (int e = 0; e < done; e++)
        sum += r->hist[(size_t)e * HIST_COLS + 5];
    *res = (man_result){.test_accuracy = r->hist[(size_t)(done - 1) * HIST_COLS + 4],
                        .epoch_seconds = sum / done,
                        .memory = man_model_memory(r->model),
                        .modules = man_module_count(r->model),
                        .train_samples = r->ntrain,
                        .test_samples = r->ntest};
    return write_metrics(r, done, res);
}

pk_status man_run(const man_run_options *opt, man_progress_fn progress, void *user,
                  man_result *result) {
    man_run_options o = *opt;
    if (!o.data || !o.out) return pk_error(PK_ERR_INVALID, "man: --data and --out are required");
    if (o.epochs < 1) return pk_error(PK_ERR_INVALID, "man: epochs must be >= 1");
    if (o.batch == 0) o.batch = 128;
    if (o.batch < 2) return pk_error(PK_ERR_INVALID, "man: batch must be >= 2 (batch norm)");
    if (o.lr == 0) o.lr = 0.8 * o.batch / 1024.0;
    if (o.seed == 0) o.seed = 1;
    if (o.image_size == 0) o.image_size = 32;
    run_state r = {.o = &o};
    man_result res = {0};
    pk_status s = run_body(&r, progress, user, &res);
    if (s == PK_OK && result) *result = res;
    man_model_destroy(r.model);
    pk_ctx_destroy(r.c);
    dataset_free(&r.train);
    dataset_free(&r.test);
    free(r.x), free(r.t), free(r.y), free(r.pred), free(r.subset), free(r.order), free(r.hist);
    return s;
}
