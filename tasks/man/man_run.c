/* man_run.c - a MAN training run: finds the dataset format of a folder, builds augmented
 * batches, runs the epochs with SGD + cosine/warmup, evaluates, and keeps its state,
 * metrics.json and log.csv through the run harness (tasks/common/run.h), which resumes it
 * bit-exactly, also from within an epoch. The model and its step are man_model.c's. */
#include "man_run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "dataset_dir.h"
#include "dist.h"
#include "optim/schedule.h"
#include "rng.h"
#include "run.h"

#define HIST_COLS 6 /* lr, loss, aux loss, train accuracy, test accuracy, epoch seconds */

/* On a device with a queue (Vulkan) the steps' losses and hits add up on the device and are
 * read back only every this many steps (and at the epoch's end or a stop): the steps between
 * wait for nothing, and the progress line shows the figures of the last read. */
#define STATS_EVERY 50

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads train and test sets from `dir` (the layouts of tasks/common/dataset_dir.h; image
 * folders at image_size). CIFAR-100 trains on its fine labels, like CIFAR-10. */
static pk_status load_data(const char *dir, int image_size, pk_dataset *train, pk_dataset *test,
                           dataset_kind *kind) {
    PK_TRY(dataset_open_dir(dir, "train", image_size, train, kind));
    PK_TRY(dataset_open_dir(dir, "test", image_size, test, kind));
    if (!train->labels || !test->labels)
        return pk_error(PK_ERR_FORMAT, "%s: the %s split has no labels file; MAN needs labels", dir,
                        !train->labels ? "train" : "test");
    return PK_OK;
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

typedef struct job {
    const man_run_options *o;
    pk_ctx *c;
    man_model *model;
    pk_dataset train, test;
    dataset_kind kind;
    norm nm;
    int32_t *subset, *order; /* order: positions in the subset, this epoch's permutation */
    int ntrain, ntest;
    pk_arena *data;     /* the resident training subset and the epoch's plan */
    man_device_data dd; /* views of them for man_train_step_device */
    int32_t *plan;      /* host copy of the plan being built (steps * batch rows of 2) */
    float *x, *t;
    int32_t *y, *pred;
    float *hist; /* (epochs, HIST_COLS); the row of an epoch in progress holds its correct
                    predictions so far in column 3 and its seconds so far in column 5 */
    pk_run *run;
    man_state_entry *state; /* the model's persistent tensors */
    int nstate;
    run_tensor *ckpt; /* state + run.history */
    tensor **bn;      /* batch-norm running statistics: per rank, averaged before use */
    int nbn;
    dist_stats comm;  /* communication inside the training steps of this process */
    double step_secs; /* wall time of those steps */
    int64_t steps_run;
} job;

/* Averages the batch-norm running statistics over the ranks (each rank's follow its own
 * shards), before evaluation and checkpoints, so every rank evaluates and saves one model;
 * nothing in a world of one. */
static pk_status sync_bn(job *r) { return dist_average_tensors(r->bn, r->nbn); }

/* Test accuracy; each rank scores its shard of the test set and the counts are summed. */
static pk_status evaluate(job *r, double *acc) {
    PK_TRY(sync_bn(r));
    int b = r->o->batch;
    int64_t correct = 0, first = 0, count = 0;
    dist_shard(r->ntest, &first, &count);
    int64_t img = (int64_t)r->test.c * r->test.h * r->test.w;
    for (int at = (int)first; at < first + count; at += b) {
        int n = first + count - at < b ? (int)(first + count - at) : b;
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
    PK_TRY(dist_sum_i64(&correct, 1));
    *acc = (double)correct / r->ntest;
    return PK_OK;
}

/* A double's bits, for the checkpoint's metadata words (exact). */
static uint64_t bits_of(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double double_of(uint64_t u) {
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Milliseconds-rounded seconds, for files. */
static double ms(double s) { return round(s * 1e3) / 1e3; }

/* Sets metrics.json's keys (as before the harness, in the same order) and writes it. */
static pk_status write_metrics(job *r, int done, const man_result *res) {
    const man_run_options *o = r->o;
    const man_config *cfg = man_model_config(r->model);
    pk_run *run = r->run;
    double l1[2] = {0, 0}, l2[2] = {0, 0};
    int nmod = man_module_count(r->model);
    if (nmod > 1) {
        man_loss_weights(r->model, 0, &l1[0], &l2[0]);
        man_loss_weights(r->model, nmod - 2, &l1[1], &l2[1]);
    }
    const man_memory *m = &res->memory;
    run_metric_str(run, "kind", "man");
    run_metric_str(run, "method", man_method_name(cfg->method));
    run_metric_str(run, "arch", man_arch_name(cfg->arch));
    run_metric(run, "blocks", cfg->blocks);
    run_metric(run, "modules", nmod);
    run_metric(run, "epochs", o->epochs);
    run_metric(run, "batch", o->batch);
    run_metric(run, "ranks", dist_size());
    if (r->steps_run > 0) { /* rank 0's training steps in this process */
        double k = 1.0 / (double)r->steps_run;
        char d[320];
        snprintf(d, sizeof d,
                 "{\"ranks\": %d, \"steps\": %lld, \"step_seconds\": %.5f, "
                 "\"comm_seconds_per_step\": %.5f, \"comm_bytes_per_step\": %.0f, "
                 "\"comm_calls_per_step\": %.2f}",
                 dist_size(), (long long)r->steps_run, r->step_secs * k, r->comm.seconds * k,
                 (double)r->comm.bytes * k, (double)r->comm.calls * k);
        run_metric_json(run, "distributed", d);
    }
    run_metric(run, "lr", cfg->lr);
    run_metric(run, "train_samples", (double)res->train_samples);
    run_metric(run, "test_samples", (double)res->test_samples);
    run_metric(run, "test_accuracy", res->test_accuracy);
    run_metric(run, "peak_memory_bytes", (double)m->total);
    char mem[512];
    snprintf(mem, sizeof mem,
             "{\"parameters\": %zu, \"gradients\": %zu, \"optimizer_state\": %zu, "
             "\"teachers\": %zu, \"activations\": %zu, \"carry_buffers\": %zu}",
             m->params, m->grads, m->state, m->teachers, m->activations, m->buffers);
    run_metric_json(run, "memory_bytes", mem);
    run_metric(run, "epoch_seconds", ms(res->epoch_seconds));
    run_metric_str(run, "device", pk_device_get_info(r->c->dev)->name);
    run_metric_vulkan(run, r->c->dev, &res->vulkan);
    run_metric(run, "ema_momentum", cfg->ema_momentum);
    run_metric_array(run, "lambda1_first_last", l1, 2);
    run_metric_array(run, "lambda2_first_last", l2, 2);
    double *each = malloc(sizeof(double) * (size_t)done);
    if (!each) return pk_error(PK_ERR_NOMEM, "out of host memory");
    for (int e = 0; e < done; e++)
        each[e] = ms(r->hist[(size_t)e * HIST_COLS + 5]);
    run_metric_array(run, "epoch_seconds_each", each, done);
    for (int e = 0; e < done; e++)
        each[e] = r->hist[(size_t)e * HIST_COLS + 4];
    run_metric_array(run, "test_accuracy_each", each, done);
    free(each);
    return run_metrics_write(run);
}

/* The checkpoint's tensors: every model tensor and the history. */
static pk_status list_state(job *r) {
    PK_TRY(man_state_list(r->model, &r->state, &r->nstate));
    r->ckpt = calloc((size_t)r->nstate + 1, sizeof *r->ckpt);
    if (!r->ckpt) return pk_error(PK_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < r->nstate; i++)
        r->ckpt[i] = (run_tensor){.name = r->state[i].name, .t = r->state[i].t};
    r->ckpt[r->nstate] = (run_tensor){
        .name = "run.history", .host = r->hist, .numel = (int64_t)r->o->epochs * HIST_COLS};
    r->bn = calloc((size_t)r->nstate + 1, sizeof *r->bn);
    if (!r->bn) return pk_error(PK_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < r->nstate; i++)
        if (strstr(r->state[i].name, ".running_")) r->bn[r->nbn++] = r->state[i].t;
    return PK_OK;
}

/* The run's options as JSON: all of them (options.json) or those a resume must share. */
static char *options_json(const man_run_options *o, const man_config *cfg, int ntrain, bool all) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "arch", man_arch_name(cfg->arch));
    cJSON_AddStringToObject(j, "method", man_method_name(cfg->method));
    cJSON_AddNumberToObject(j, "blocks", cfg->blocks);
    cJSON_AddNumberToObject(j, "epochs", o->epochs);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "train_limit", ntrain);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    if (o->sync_bn)
        cJSON_AddBoolToObject(j, "sync_bn", true); /* only when set: older runs resume */
    if (all) {
        cJSON_AddStringToObject(j, "data", o->data);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "device", o->device ? o->device : "");
        cJSON_AddNumberToObject(j, "lr", cfg->lr);
        cJSON_AddNumberToObject(j, "warmup", o->warmup > 0 ? o->warmup : 0.025);
        cJSON_AddNumberToObject(j, "test_limit", o->test_limit);
        cJSON_AddNumberToObject(j, "threads", o->threads);
        cJSON_AddStringToObject(j, "flip", o->flip < 0 ? "auto" : o->flip ? "yes" : "no");
        cJSON_AddNumberToObject(j, "image_size", o->image_size);
        cJSON_AddNumberToObject(j, "ema_momentum", cfg->ema_momentum);
        if (o->lambda_set) {
            cJSON_AddItemToObject(j, "lambda1", cJSON_CreateDoubleArray(o->lambda1, 2));
            cJSON_AddItemToObject(j, "lambda2", cJSON_CreateDoubleArray(o->lambda2, 2));
        }
        cJSON_AddNumberToObject(j, "stop_after", o->stop_after);
        cJSON_AddBoolToObject(j, "resume", o->resume);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* Puts the training subset on the device once: its images (ntrain, H, W, C) u8 in subset order
 * and their labels, plus room for an epoch's plan; fills r->dd. */
static pk_status upload_subset(job *r, bool reflect) {
    const man_run_options *o = r->o;
    const pk_dataset *ds = &r->train;
    size_t item = (size_t)ds->h * ds->w * ds->c;
    int64_t rows = (int64_t)(r->ntrain / o->batch) * o->batch;
    PK_TRY(pk_arena_create(r->c->dev, "man-data", 0, &r->data));
    man_device_data *d = &r->dd;
    d->images = tensor_new(r->data, PK_U8, 1, (int64_t[]){(int64_t)r->ntrain * (int64_t)item});
    d->labels = tensor_new(r->data, PK_I32, 1, (int64_t[]){r->ntrain});
    d->plan = tensor_new(r->data, PK_I32, 1, (int64_t[]){2 * rows});
    if (!d->images || !d->labels || !d->plan) return PK_ERR_NOMEM;
    uint8_t *img = malloc(item * (size_t)r->ntrain);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)r->ntrain);
    pk_status s = img && lab ? PK_OK : pk_error(PK_ERR_NOMEM, "out of host memory");
    for (int i = 0; s == PK_OK && i < r->ntrain; i++) {
        memcpy(img + (size_t)i * item, ds->images + (size_t)r->subset[i] * item, item);
        lab[i] = ds->labels[r->subset[i]];
    }
    if (s == PK_OK) s = tensor_upload(d->images, img);
    if (s == PK_OK) s = tensor_upload(d->labels, lab);
    free(img), free(lab);
    PK_TRY(s);
    d->channels = ds->c, d->height = ds->h, d->width = ds->w;
    d->pad = 4; /* random crop with 4 pixels of padding: offsets 0..8 */
    d->reflect = reflect;
    for (int k = 0; k < 3; k++)
        d->mean[k] = r->nm.mean[k], d->std[k] = r->nm.std[k];
    return PK_OK;
}

/* The epoch's plan: sample i of step s is subset position order[s * batch + i] with a crop and
 * flip drawn from `rng` (every rank draws every sample's bits, in order); one upload. */
static pk_status upload_plan(job *r, pk_rng *rng, int steps, bool flip) {
    int64_t rows = (int64_t)steps * r->o->batch;
    for (int64_t k = 0; k < rows; k++) {
        uint64_t bits = pk_rng_next(rng);
        int span = 9; /* crop offsets 0..8: padding 4 on each side */
        int ox = (int)(bits % span), oy = (int)((bits >> 8) % span);
        int fl = flip && ((bits >> 16) & 1);
        r->plan[2 * k] = r->order[k];
        r->plan[2 * k + 1] = ox | oy << 8 | fl << 16;
    }
    return tensor_upload(r->dd.plan, r->plan);
}

static pk_status run_body(job *r, man_result *res) {
    const man_run_options *o = r->o;
    PK_TRY(load_data(o->data, o->image_size, &r->train, &r->test, &r->kind));
    if (r->train.c != r->test.c || r->train.h != r->test.h || r->train.w != r->test.w)
        return pk_error(PK_ERR_FORMAT, "%s: training images are %dx%dx%d, test images %dx%dx%d",
                        o->data, r->train.w, r->train.h, r->train.c, r->test.w, r->test.h,
                        r->test.c);
    if (r->train.c != 1 && r->train.c != 3)
        return pk_error(PK_ERR_FORMAT, "%s: images have %d channels; expected 1 or 3", o->data,
                        r->train.c);
    if (r->kind == DATASET_FOLDER) { /* labels are positions in each root's sorted class list */
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
    if ((r->kind == DATASET_CIFAR10 || r->kind == DATASET_CIFAR100))
        r->nm = (norm){{125.3f / 255, 123.0f / 255, 113.9f / 255},
                       {63.0f / 255, 62.1f / 255, 66.7f / 255}};
    else
        r->nm = (norm){{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};
    /* Flip: yes for CIFAR and photos (the official CIFAR pipeline); not for Fashion-MNIST,
     * whose items have a canonical orientation (every shoe faces left in train and test), so
     * a flip only creates images the test set never shows. */
    bool flip = o->flip >= 0 ? o->flip == 1 : r->kind != DATASET_IDX;
    bool reflect = r->kind == DATASET_CIFAR10 ||
                   r->kind == DATASET_CIFAR100; /* official CIFAR: F.pad(..., mode='reflect') */

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
                      .seed = o->seed,
                      .sync_bn = o->sync_bn};
    memcpy(cfg.lambda1, o->lambda1, sizeof cfg.lambda1);
    memcpy(cfg.lambda2, o->lambda2, sizeof cfg.lambda2);
    PK_TRY(man_model_create(r->c, &cfg, &r->model));

    int64_t img = (int64_t)r->train.c * r->train.h * r->train.w;
    int steps_per_epoch = r->ntrain / o->batch;
    r->plan = malloc(sizeof(int32_t) * 2 * (size_t)steps_per_epoch * (size_t)o->batch);
    r->x = malloc(sizeof(float) * (size_t)(o->batch * img));
    r->t = malloc(sizeof(float) * (size_t)(o->batch * img));
    r->y = malloc(sizeof(int32_t) * (size_t)o->batch);
    r->pred = malloc(sizeof(int32_t) * (size_t)o->batch);
    r->subset = malloc(sizeof(int32_t) * (size_t)r->train.n);
    r->order = malloc(sizeof(int32_t) * (size_t)r->ntrain);
    r->hist = calloc((size_t)o->epochs * HIST_COLS, sizeof(float));
    if (!r->x || !r->t || !r->y || !r->pred || !r->subset || !r->order || !r->hist || !r->plan)
        return pk_error(PK_ERR_NOMEM, "out of host memory");
    /* a fixed subset: the first N of a seeded permutation (the same for every method) */
    pk_rng data_rng = {o->seed * 0x9E3779B97F4A7C15ull + 17};
    for (int i = 0; i < r->train.n; i++)
        r->subset[i] = i;
    if (r->ntrain < r->train.n) pk_rng_shuffle(&data_rng, r->subset, r->train.n);
    PK_TRY(upload_subset(r, reflect));

    const man_config *mc = man_model_config(r->model);
    char *all = options_json(o, mc, r->ntrain, true);
    char *same = options_json(o, mc, r->ntrain, false);
    run_options ro = {.out = o->out,
                      .task = "man",
                      .options_json = all,
                      .resume_json = same,
                      .resume = o->resume,
                      .keep = 2,
                      .progress = o->progress,
                      .catch_signals = o->catch_signals};
    pk_status s = all && same ? run_open(&ro, &r->run) : pk_error(PK_ERR_NOMEM, "out of memory");
    free(all);
    free(same);
    PK_TRY(s);
    PK_TRY(list_state(r));

    /* Checkpoint ckpt-E: after epoch E, rng {data state, 0, 0, 0}; within epoch E (a stop
     * request) after s of its steps, rng {data state at the epoch's start, s, loss sum bits,
     * aux loss sum bits}, its history row holding the correct count and seconds so far. */
    int start = 0, resume_steps = 0;
    int64_t ck_step = -1;
    uint64_t ck_rng[CKPT_RNG_WORDS] = {0};
    PK_TRY(run_checkpoint_load(r->run, r->ckpt, r->nstate + 1, &ck_step, ck_rng));
    if (ck_step > o->epochs || (int64_t)ck_rng[1] >= steps)
        return pk_error(PK_ERR_FORMAT,
                        "%s: checkpoint of epoch %lld step %llu does not fit %d epochs of %d "
                        "steps",
                        o->out, (long long)ck_step, (unsigned long long)ck_rng[1], o->epochs,
                        steps);
    if (ck_step >= 0) {
        data_rng.state = ck_rng[0];
        resume_steps = (int)ck_rng[1];
        start = resume_steps ? (int)ck_step - 1 : (int)ck_step;
        man_set_counters(r->model, (int64_t)start * steps + resume_steps);
        if (resume_steps)
            run_info(r->run, "continuing epoch %d at step %d of %d", start + 1, resume_steps + 1,
                     steps);
    }
    int64_t total = (int64_t)o->epochs * steps;
    int64_t warm = (int64_t)llround((o->warmup > 0 ? o->warmup : 0.025) * (double)total);
    pk_lr_schedule sched = {
        .kind = PK_LR_COSINE, .lr = o->lr, .max_steps = total, .warmup = warm < 1 ? 1 : warm};
    PK_TRY(schedule_validate(&sched));
    pk_optimizer *opt = man_model_optimizer(r->model);

    const char *cols[HIST_COLS + 2] = {"epoch",          "lr",
                                       "train_loss",     "aux_loss",
                                       "train_accuracy", "test_accuracy",
                                       "epoch_seconds",  "peak_memory_bytes"};
    int end = o->stop_after > 0 && o->stop_after < o->epochs ? o->stop_after : o->epochs;
    bool stopped = false;
    /* this rank's samples of every global batch (all of them in a world of one) */
    int64_t sh_first = 0, sh_n = 0;
    dist_shard(o->batch, &sh_first, &sh_n);
    int done = start; /* complete epochs */
    for (int e = start; e < end && !stopped; e++) {
        char label[48];
        snprintf(label, sizeof label, "epoch %d/%d", e + 1, o->epochs);
        /* l*: this rank's sums over the epoch's steps (rank 0's start from the world's sums a
         * checkpoint carried, scaled so that the world's sum below gives them back; in a world
         * of one the sums are those of one process, bit for bit); loss, aux, correct: the
         * world's, set by TOTALS() when needed */
        double loss = 0, aux = 0, lr = 0, before = 0, lloss = 0, laux = 0;
        int64_t correct = 0, lcorrect = 0;
        float *h = r->hist + (size_t)e * HIST_COLS;
        /* each epoch permutes the fixed subset afresh: a resumed run sees the same order */
        uint64_t epoch_rng = data_rng.state;
        /* positions in the resident subset, permuted as the subset's indices would be (the
         * shuffle's swaps do not depend on the values) */
        for (int i = 0; i < r->ntrain; i++)
            r->order[i] = i;
        pk_rng_shuffle(&data_rng, r->order, r->ntrain);
        PK_TRY(upload_plan(r, &data_rng, steps, flip));
        int first = 0;
        if (e == start && resume_steps) { /* within the epoch: its plan is the same */
            first = resume_steps;
            if (dist_is_root()) {
                lloss = double_of(ck_rng[2]) * dist_size(),
                laux = double_of(ck_rng[3]) * dist_size();
                lcorrect = (int64_t)h[3];
            }
            before = h[5];
        }
        run_progress_start(r->run, label, steps);
        double t0 = now_s();
        /* Vulkan: the sums since the last read are on the device (read by TAKE()) */
        bool on_device = r->c->backend != PK_BACKEND_CPU;
        int64_t read_at = first; /* steps of the epoch whose figures lloss etc. hold */
#define TAKE(s_)                                                                                   \
    do {                                                                                           \
        double dl_, da_;                                                                           \
        int64_t dc_;                                                                               \
        PK_TRY(man_stats_take(r->model, &dl_, &da_, &dc_));                                        \
        if (!isfinite(dl_) || !isfinite(da_))                                                      \
            return pk_error(PK_ERR_INVALID,                                                        \
                            "training diverged in epoch %d between steps %lld and %d (loss sum "   \
                            "%g, aux loss sum %g); try a smaller --lr",                            \
                            e + 1, (long long)read_at + 1, (s_), dl_, da_);                        \
        lloss += dl_, laux += da_, lcorrect += dc_, read_at = (s_);                                \
    } while (0)
        /* the world's sums: each rank's loss is a mean over its shard (sum / ranks), the
         * correct counts add up */
#define TOTALS()                                                                                   \
    do {                                                                                           \
        double tot_[3] = {lloss, laux, (double)lcorrect};                                          \
        PK_TRY(dist_sum_f64(tot_, 3));                                                             \
        loss = tot_[0] / dist_size(), aux = tot_[1] / dist_size();                                 \
        correct = (int64_t)tot_[2];                                                                \
    } while (0)
        for (int s = first; s < steps; s++) {
            int64_t gstep = (int64_t)e * steps + s; /* steps of the run done */
            if (s > 0 && (run_stop_requested(r->run) ||
                          (o->stop_after_steps > 0 && gstep >= o->stop_after_steps))) {
                /* save the epoch so far */
                if (on_device) TAKE(s);
                TOTALS();
                PK_TRY(sync_bn(r));
                h[3] = (float)correct, h[5] = (float)(before + now_s() - t0);
                uint64_t w[CKPT_RNG_WORDS] = {epoch_rng, (uint64_t)s, bits_of(loss), bits_of(aux)};
                PK_TRY(run_checkpoint_save(r->run, e + 1, r->ckpt, r->nstate + 1, w));
                run_info(r->run,
                         "stopped in epoch %d after step %d of %d: checkpoint saved in %s; "
                         "--resume continues",
                         e + 1, s, steps, o->out);
                stopped = true;
                break;
            }
            if (s == 0 && run_stop_requested(r->run)) {
                run_info(r->run, "stopped before epoch %d; %s", e + 1,
                         e > 0 ? "--resume continues from the last epoch's checkpoint"
                               : "no checkpoint yet");
                stopped = true;
                break;
            }
            lr = schedule_lr(&sched, gstep);
            optim_set_lr(opt, 0, lr);
            man_step_stats st;
            dist_stats c0 = dist_stats_get();
            double ts0 = now_s();
            PK_TRY(man_train_step_device(r->model, &r->dd, (int64_t)s * o->batch + sh_first,
                                         (int)sh_n, on_device ? NULL : &st));
            pk_step_counters_mark(&res->vulkan, r->c->dev);
            dist_stats c1 = dist_stats_get();
            r->step_secs += now_s() - ts0, r->steps_run++;
            r->comm.seconds += c1.seconds - c0.seconds, r->comm.bytes += c1.bytes - c0.bytes;
            r->comm.calls += c1.calls - c0.calls;
            if (on_device) {
                if ((s + 1) % STATS_EVERY == 0) TAKE(s + 1);
            } else {
                if (!isfinite(st.loss) || !isfinite(st.aux_loss))
                    return pk_error(PK_ERR_INVALID,
                                    "training diverged at epoch %d step %d (loss %g, aux loss "
                                    "%g); try a smaller --lr",
                                    e + 1, s + 1, st.loss, st.aux_loss);
                lloss += st.loss, laux += st.aux_loss, lcorrect += st.correct, read_at = s + 1;
            }
            /* the progress line shows rank 0's shard (all of it in a world of one) */
            if (read_at > 0)
                run_progress_update(r->run, s + 1, "loss %.4f aux %.4f acc %.3f lr %.4f",
                                    lloss / read_at, laux / read_at,
                                    (double)lcorrect / ((double)read_at * sh_n), lr);
            else
                run_progress_update(r->run, s + 1, "lr %.4f", lr);
        }
        if (!stopped && on_device) TAKE(steps);
#undef TAKE
        run_progress_end(r->run);
        if (stopped) break;
        TOTALS();
#undef TOTALS
        double secs = before + now_s() - t0, acc = 0;
        PK_TRY(evaluate(r, &acc));
        h[0] = (float)lr, h[1] = (float)(loss / steps), h[2] = (float)(aux / steps);
        h[3] = (float)((double)correct / ((double)steps * o->batch));
        h[4] = (float)acc, h[5] = (float)secs;
        double row[HIST_COLS + 2] = {
            e + 1, h[0], h[1],     h[2],
            h[3],  h[4], ms(h[5]), (double)man_model_memory(r->model).total};
        PK_TRY(run_log(r->run, HIST_COLS + 2, cols, row));
        uint64_t w[CKPT_RNG_WORDS] = {data_rng.state, 0, 0, 0};
        PK_TRY(run_checkpoint_save(r->run, e + 1, r->ckpt, r->nstate + 1, w));
        done = e + 1;
        run_info(r->run,
                 "epoch %d/%d: loss %.4f aux %.4f train acc %.4f test acc %.4f (%.1f s training)",
                 e + 1, o->epochs, h[1], h[2], h[3], acc, secs);
        if (o->stop_after_steps > 0 && (int64_t)(e + 1) * steps >= o->stop_after_steps) {
            stopped = true;
            run_info(r->run, "stopped after epoch %d; --resume continues", e + 1);
        }
    }
    res->interrupted = stopped;
    res->epochs_done = done;
    res->memory = man_model_memory(r->model);
    res->modules = man_module_count(r->model);
    res->train_samples = r->ntrain;
    res->test_samples = r->ntest;
    if (done < 1) {
        if (stopped) return PK_OK;
        return pk_error(PK_ERR_INVALID, "man: no epoch to report");
    }
    double sum = 0;
    for (int e = 0; e < done; e++)
        sum += r->hist[(size_t)e * HIST_COLS + 5];
    res->test_accuracy = r->hist[(size_t)(done - 1) * HIST_COLS + 4];
    res->epoch_seconds = sum / done;
    return write_metrics(r, done, res);
}

pk_status man_run(const man_run_options *opt, man_result *result) {
    man_run_options o = *opt;
    if (!o.data || !o.out) return pk_error(PK_ERR_INVALID, "man: --data and --out are required");
    if (o.epochs < 1) return pk_error(PK_ERR_INVALID, "man: epochs must be >= 1");
    if (o.batch == 0) o.batch = 128;
    if (o.batch < 2) return pk_error(PK_ERR_INVALID, "man: batch must be >= 2 (batch norm)");
    pk_status bs = dist_check_batch(o.batch, "man --batch");
    if (bs != PK_OK) return bs;
    if (o.batch / dist_size() < 2)
        return pk_error(PK_ERR_INVALID,
                        "man: %d samples per rank (batch %d over %d ranks); batch norm needs >= 2",
                        o.batch / dist_size(), o.batch, dist_size());
    if (o.lr == 0) o.lr = 0.8 * o.batch / 1024.0;
    if (o.seed == 0) o.seed = 1;
    if (o.image_size == 0) o.image_size = 32;
    job r = {.o = &o};
    man_result res = {0};
    pk_status s = run_body(&r, &res);
    if (r.c) res.validation_errors = pk_device_validation_errors(r.c->dev);
    if (s == PK_OK && result) *result = res;
    if (r.run)
        run_report(r.run, s != PK_OK ? "failed" : res.interrupted ? "interrupted" : "finished");
    run_close(r.run);
    free(r.state), free(r.ckpt), free(r.bn);
    man_model_destroy(r.model);
    pk_arena_destroy(r.data);
    pk_ctx_destroy(r.c);
    dataset_free(&r.train);
    dataset_free(&r.test);
    free(r.x), free(r.t), free(r.y), free(r.pred), free(r.subset), free(r.order), free(r.hist);
    free(r.plan);
    return s;
}
