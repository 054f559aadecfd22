/* cl_run.c - the continual-learning runner: data, class order, the task / epoch / step loop
 * with checkpoints and resume, evaluation after every task, metrics and the final table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "augment.h"
#include "autograd.h"
#include "backbone.h"
#include "backbone_features.h"
#include "cl.h"
#include "dataset_dir.h"
#include "dist.h"
#include "ops/ops.h"

typedef struct cl_state {
    const cl_options *o;
    cl_method *m;
    pk_run *run;
    pk_ctx *c;
    vit *bb;
    vit_config cfg;
    pk_dataset train, test;
    int classes, T, stages, V, chans, S;
    int *order, *start, *pos_of;
    float *xtr, *xte;   /* (n, chans, S, S) preprocessed */
    int32_t *ytr, *yte; /* class-order positions */
    int ntr, nte;
    int **tr_idx, *ntr_t;     /* per stage: training samples */
    int **te_idx, *nte_t;     /* per task: test samples */
    int64_t *steps_per_epoch; /* per stage */
    /* host state saved in checkpoints */
    float *acc;          /* (V, T, T) accuracies, NaN until measured */
    float *task_seconds; /* (stages) */
    float *peak_mem;     /* (stages) bytes */
    float *loss_sum;     /* (2) running loss sum and count of the epoch */
    tensor *loss_dev;    /* (1) off the CPU backend: loss_sum[0] on the device, added to by
                            every step and read when the epoch is logged or saved */
    tensor *xtr_dev;     /* (ntr, chans * S * S) off the CPU backend without host augmentation:
                            the preprocessed training images on the device, uploaded once; a
                            step gathers its batch from them by index (pk_embedding) */
    float *xb, *aug_tmp;
    int32_t *yb;
    float *scores;
    int64_t *conf;  /* (V, classes, classes) confusion counts of the last evaluation, or NULL
                       (more than CL_MAX_CONFUSION classes) */
    int conf_stage; /* the stage they belong to (-1: none evaluated in this process) */
    /* this process's training steps (timed, for metrics.json's "distributed") */
    int64_t steps_run;
    double step_secs, step_cpu;
    dist_stats comm;         /* communication inside them */
    pk_step_counters vulkan; /* device traffic of the training steps (metrics.json "vulkan") */
} cl_state;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss * 1024.0;
}

static void state_free(cl_state *s) {
    for (int t = 0; s->tr_idx && t < s->stages; t++)
        free(s->tr_idx[t]);
    for (int t = 0; s->te_idx && t < s->T; t++)
        free(s->te_idx[t]);
    free(s->tr_idx), free(s->te_idx), free(s->ntr_t), free(s->nte_t), free(s->steps_per_epoch);
    free(s->order), free(s->start), free(s->pos_of);
    free(s->xtr), free(s->xte), free(s->ytr), free(s->yte);
    free(s->acc), free(s->task_seconds), free(s->peak_mem), free(s->loss_sum);
    free(s->xb), free(s->aug_tmp), free(s->yb), free(s->scores), free(s->conf);
    dataset_free(&s->train), dataset_free(&s->test);
    vit_destroy(s->bb);
    pk_ctx_destroy(s->c);
    run_close(s->run);
}

/* The first `per_class` of a seeded permutation of each class's samples (all when 0), in
 * the data set's order; preprocessed into x and labelled with class-order positions. */
static pk_status prepare_split(cl_state *s, const pk_dataset *ds, int per_class, uint64_t seed,
                               const features_options *fo, float **x, int32_t **y, int *n) {
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)(ds->n ? ds->n : 1));
    int *count = calloc((size_t)s->classes, sizeof(int));
    bool *keep = calloc((size_t)(ds->n ? ds->n : 1), sizeof(bool));
    pk_status st = PK_OK;
    if (!perm || !count || !keep) {
        st = pk_error(PK_ERR_NOMEM, "cl: out of host memory");
        goto done;
    }
    for (int i = 0; i < ds->n; i++)
        perm[i] = i;
    pk_rng r = {seed * 0x9E3779B97F4A7C15ull + 0x5EED};
    if (per_class > 0) pk_rng_shuffle(&r, perm, ds->n);
    int m = 0;
    for (int k = 0; k < ds->n; k++) {
        int i = perm[k], l = ds->labels[i];
        if (per_class > 0 && count[l] >= per_class) continue;
        count[l]++, keep[i] = true, m++;
    }
    size_t sz = (size_t)s->chans * (size_t)s->S * (size_t)s->S;
    *x = malloc(sizeof(float) * sz * (size_t)(m ? m : 1));
    *y = malloc(sizeof(int32_t) * (size_t)(m ? m : 1));
    if (!*x || !*y) {
        st = pk_error(PK_ERR_NOMEM, "cl: out of host memory for %d preprocessed images", m);
        goto done;
    }
    int j = 0;
    for (int i = 0; i < ds->n && st == PK_OK; i++) {
        if (!keep[i]) continue;
        st = features_preprocess(ds, i, fo, s->chans, *x + sz * (size_t)j);
        (*y)[j++] = s->pos_of[ds->labels[i]];
    }
    *n = m;
done:
    free(perm), free(count), free(keep);
    return st;
}

/* Indices of the samples whose position is in [lo, hi). */
static pk_status select_range(const int32_t *y, int n, int lo, int hi, int **idx, int *m) {
    *idx = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!*idx) return pk_error(PK_ERR_NOMEM, "cl: out of host memory");
    *m = 0;
    for (int i = 0; i < n; i++)
        if (y[i] >= lo && y[i] < hi) (*idx)[(*m)++] = i;
    return PK_OK;
}

static pk_status load_data(cl_state *s) {
    const cl_options *o = s->o;
    backbone_norm bn = {0};
    PK_TRY(backbone_config(o->backbone, o->arch, &s->cfg, &bn));
    s->chans = s->cfg.in_chans;
    s->S = o->image_size > 0 ? o->image_size : s->cfg.img_size;
    if (s->S % s->cfg.patch)
        return pk_error(PK_ERR_INVALID, "cl: image size %d is not a multiple of %s's patch %d",
                        s->S, s->cfg.name, s->cfg.patch);
    /* timm-style evaluation preprocessing: Polyak's backbones record theirs (no crop unless
     * recorded); a timm checkpoint gets the in21k augreg default, crop_pct 0.9, mean = std =
     * 0.5 (REFERENCE.md) */
    features_options fo = {.image_size = s->S,
                           .crop_pct = bn.crop_pct > 0 ? bn.crop_pct
                                       : bn.present    ? 1.0f
                                                       : 0.9f};
    for (int k = 0; k < 3; k++)
        fo.mean[k] = bn.present ? bn.mean[k] : 0.5f, fo.std[k] = bn.present ? bn.std[k] : 0.5f;
    int scale = (int)floor((double)s->S / fo.crop_pct + 1e-9);
    PK_TRY(dataset_open_dir(o->data, "train", scale, &s->train, NULL));
    PK_TRY(dataset_open_dir(o->data, "test", scale, &s->test, NULL));
    if (!s->train.labels || !s->test.labels)
        return pk_error(PK_ERR_FORMAT, "cl: %s has no labels; a benchmark needs labelled data",
                        o->data);
    s->classes =
        s->train.num_classes > s->test.num_classes ? s->train.num_classes : s->test.num_classes;
    s->T = o->tasks;
    s->stages = o->joint ? 1 : s->T;
    s->order = malloc(sizeof(int) * (size_t)s->classes);
    s->pos_of = malloc(sizeof(int) * (size_t)s->classes);
    s->start = malloc(sizeof(int) * (size_t)(s->T + 1));
    if (!s->order || !s->pos_of || !s->start) return pk_error(PK_ERR_NOMEM, "cl: out of memory");
    PK_TRY(
        cl_class_order(s->classes, s->T, o->first_task, o->class_order_seed, s->order, s->start));
    if (o->class_order)
        PK_TRY(cl_class_order_explicit(o->class_order, o->class_order_n, s->classes, s->order));
    for (int i = 0; i < s->classes; i++)
        s->pos_of[s->order[i]] = i;
    PK_TRY(
        prepare_split(s, &s->train, o->train_per_class, o->seed, &fo, &s->xtr, &s->ytr, &s->ntr));
    PK_TRY(
        prepare_split(s, &s->test, o->test_per_class, o->seed + 1, &fo, &s->xte, &s->yte, &s->nte));
    s->tr_idx = calloc((size_t)s->stages, sizeof(int *));
    s->ntr_t = calloc((size_t)s->stages, sizeof(int));
    s->steps_per_epoch = calloc((size_t)s->stages, sizeof(int64_t));
    s->te_idx = calloc((size_t)s->T, sizeof(int *));
    s->nte_t = calloc((size_t)s->T, sizeof(int));
    if (!s->tr_idx || !s->ntr_t || !s->te_idx || !s->nte_t || !s->steps_per_epoch)
        return pk_error(PK_ERR_NOMEM, "cl: out of memory");
    for (int t = 0; t < s->stages; t++) {
        int lo = o->joint ? 0 : s->start[t], hi = o->joint ? s->classes : s->start[t + 1];
        PK_TRY(select_range(s->ytr, s->ntr, lo, hi, &s->tr_idx[t], &s->ntr_t[t]));
        if (s->ntr_t[t] == 0)
            return pk_error(PK_ERR_INVALID, "cl: task %d has no training images in %s", t + 1,
                            o->data);
        /* LAE's loader drops an epoch's last partial batch (drop_last: true); a task with
         * fewer images than a batch takes them all in one step */
        s->steps_per_epoch[t] = s->ntr_t[t] >= o->batch ? s->ntr_t[t] / o->batch : 1;
    }
    for (int t = 0; t < s->T; t++)
        PK_TRY(select_range(s->yte, s->nte, s->start[t], s->start[t + 1], &s->te_idx[t],
                            &s->nte_t[t]));
    return PK_OK;
}

/* The batch idx[0..b) of (x, y) as tensors. aug_seed != 0: training images augmented
 * (o->augment), sample i seeded by (aug_seed, first + i), its position in the global batch,
 * so a resumed run and every rank of a data-parallel one see the same pixels. */
static pk_status upload_batch(cl_state *s, const float *x, const int32_t *y, const int *idx, int b,
                              uint64_t aug_seed, int64_t first, tensor **xt, tensor **yt) {
    size_t sz = (size_t)s->chans * (size_t)s->S * (size_t)s->S;
    if (aug_seed && s->xtr_dev) { /* training, resident: the rows gathered on the device */
        tensor *it = tensor_new(s->c->step, PK_I32, 1, (int64_t[]){b});
        *yt = tensor_new(s->c->step, PK_I32, 1, (int64_t[]){b});
        if (!it || !*yt) return pk_error(PK_ERR_NOMEM, "cl: out of memory for a batch");
        for (int i = 0; i < b; i++)
            s->yb[i] = y[idx[i]];
        PK_TRY(tensor_upload(it, idx)); /* int is int32_t (asserted below) */
        PK_TRY(tensor_upload(*yt, s->yb));
        bool g = pk_set_grad_enabled(s->c, false);
        *xt = pk_reshape(s->c, pk_embedding(s->c, s->xtr_dev, it), 4,
                         (int64_t[]){b, s->chans, s->S, s->S});
        pk_set_grad_enabled(s->c, g);
        return *xt ? PK_OK : PK_ERR_INVALID;
    }
    for (int i = 0; i < b; i++) {
        const float *src = x + sz * (size_t)idx[i];
        if (aug_seed && s->o->augment == CL_AUG_LAE) {
            pk_rng r = {aug_mix(aug_seed, (uint64_t)(first + i))};
            cl_augment_lae(src, s->chans, s->S, &r, s->xb + sz * (size_t)i, s->aug_tmp);
        } else {
            memcpy(s->xb + sz * (size_t)i, src, sizeof(float) * sz);
        }
        s->yb[i] = y[idx[i]];
    }
    *xt = tensor_new(s->c->step, PK_F32, 4, (int64_t[]){b, s->chans, s->S, s->S});
    *yt = tensor_new(s->c->step, PK_I32, 1, (int64_t[]){b});
    if (!*xt || !*yt) return pk_error(PK_ERR_NOMEM, "cl: out of memory for a batch");
    PK_TRY(tensor_upload(*xt, s->xb));
    return tensor_upload(*yt, s->yb);
}

_Static_assert(sizeof(int) == sizeof(int32_t), "batch indices are uploaded as int32");

/* Off the CPU backend: the epoch's loss sum from the device into loss_sum[0] (one wait, when
 * the epoch is logged or a checkpoint saved). The device adds the same floats in the same
 * order as the host loop does on the CPU backend. */
static pk_status loss_take(cl_state *s) {
    return s->loss_dev ? tensor_download(s->loss_dev, &s->loss_sum[0]) : PK_OK;
}

/* Accuracies after stage `stage` on every seen task, for every variant, into s->acc; the
 * confusion counts (true against predicted position) into s->conf. */
static pk_status evaluate(cl_state *s, int stage) {
    const cl_options *o = s->o;
    int seen = o->joint ? s->classes : s->start[stage + 1];
    int last = o->joint ? s->T - 1 : stage;
    int row = o->joint ? 0 : stage;
    size_t C = (size_t)s->classes;
    if (s->conf) memset(s->conf, 0, sizeof(int64_t) * (size_t)s->V * C * C);
    for (int j = 0; j <= last; j++) {
        int64_t correct[CL_MAX_VARIANTS] = {0};
        int lo = s->start[j], hi = s->start[j + 1];
        /* under mpirun each rank scores its shard of the task's test samples; counts summed */
        int64_t first = 0, mine = 0;
        dist_shard(s->nte_t[j], &first, &mine);
        const int *te = s->te_idx[j] + first;
        for (int b0 = 0; b0 < (int)mine; b0 += o->eval_batch) {
            int b = (int)mine - b0 < o->eval_batch ? (int)mine - b0 : o->eval_batch;
            PK_TRY(pk_step_begin(s->c));
            tensor *xt, *yt;
            PK_TRY(upload_batch(s, s->xte, s->yte, te + b0, b, 0, 0, &xt, &yt));
            PK_TRY(s->m->predict(s->m, xt, seen, s->scores));
            for (int v = 0; v < s->V; v++)
                for (int i = 0; i < b; i++) {
                    const float *sc = s->scores + ((size_t)v * b + i) * (size_t)seen;
                    int p = o->scenario == CL_TASK_INCREMENTAL ? cl_argmax(sc, lo, hi)
                                                               : cl_argmax(sc, 0, seen);
                    correct[v] += p == s->yb[i];
                    if (s->conf) s->conf[((size_t)v * C + (size_t)s->yb[i]) * C + (size_t)p]++;
                }
        }
        PK_TRY(dist_sum_i64(correct, s->V));
        for (int v = 0; v < s->V; v++)
            s->acc[((size_t)v * s->T + row) * s->T + j] =
                s->nte_t[j] ? (float)((double)correct[v] / s->nte_t[j]) : NAN;
    }
    if (s->conf) PK_TRY(dist_sum_i64(s->conf, (int64_t)((size_t)s->V * C * C)));
    s->conf_stage = stage;
    return PK_OK;
}

/* metrics.json "confusion" (+ "_<variant>") after the last task: row = true class-order
 * position, column = predicted position, counts; and into res (small benchmarks). */
static pk_status write_confusion(cl_state *s, cl_result *res) {
    int C = s->classes;
    if (!s->conf || s->conf_stage != s->stages - 1) return PK_OK;
    char *js = malloc((size_t)C * (size_t)C * 22 + 64);
    if (!js) return pk_error(PK_ERR_NOMEM, "cl: out of memory");
    if (C <= CL_MAX_RESULT_CONFUSION) res->confusion_classes = C;
    for (int v = 0; v < s->V; v++) {
        const int64_t *cf = s->conf + (size_t)v * C * C;
        size_t k = 0;
        js[k++] = '[';
        for (int i = 0; i < C; i++) {
            k += (size_t)sprintf(js + k, "%s[", i ? ", " : "");
            for (int j = 0; j < C; j++)
                k += (size_t)sprintf(js + k, "%s%lld", j ? ", " : "", (long long)cf[i * C + j]);
            js[k++] = ']';
        }
        js[k++] = ']', js[k] = 0;
        if (C <= CL_MAX_RESULT_CONFUSION)
            for (int i = 0; i < C * C; i++)
                res->confusion[v][i] = cf[i];
        const char *suf = v == 0 ? "" : s->m->variant[v];
        char key[64];
        snprintf(key, sizeof key, "confusion%s%s", *suf ? "_" : "", suf);
        run_metric_json(s->run, key, js);
    }
    free(js);
    return PK_OK;
}

/* metrics.json and the printed table (rows measured so far). */
static pk_status write_results(cl_state *s, int rows, cl_result *res) {
    const cl_options *o = s->o;
    int T = s->T;
    double *r = malloc(sizeof(double) * (size_t)T * (size_t)T);
    char *js = malloc((size_t)T * (size_t)T * 32 + 64);
    if (!r || !js) {
        free(r), free(js);
        return pk_error(PK_ERR_NOMEM, "cl: out of memory");
    }
    res->tasks = T, res->nvariants = s->V;
    for (int v = 0; v < s->V; v++) {
        for (int i = 0; i < T * T; i++) {
            r[i] = s->acc[(size_t)v * T * T + i];
            if (T <= CL_MAX_MATRIX_TASKS) res->matrix[v][i] = r[i];
        }
        double al = NAN, aa = NAN, fg = NAN, bw = NAN;
        if (o->joint) {
            double sum = 0, w = 0;
            for (int j = 0; j < T; j++)
                sum += s->nte_t[j] * r[j], w += s->nte_t[j];
            al = w > 0 ? sum / w : NAN;
        } else if (rows == T) {
            cl_metrics(r, s->nte_t, T, &al, &aa, &fg, &bw);
        }
        res->a_last[v] = al, res->a_avg[v] = aa, res->forgetting[v] = fg, res->bwt[v] = bw;
        /* the matrix: row i = after training task i; null where j > i or not measured */
        size_t k = 0;
        js[k++] = '[';
        for (int i = 0; i < (o->joint ? 1 : T); i++) {
            k += (size_t)sprintf(js + k, "%s[", i ? ", " : "");
            for (int j = 0; j < T; j++) {
                double x = r[i * T + j];
                bool ok = (o->joint || j <= i) && i < rows && !isnan(x);
                if (ok)
                    k += (size_t)sprintf(js + k, "%s%.9g", j ? ", " : "", x);
                else
                    k += (size_t)sprintf(js + k, "%snull", j ? ", " : "");
            }
            js[k++] = ']';
        }
        js[k++] = ']', js[k] = 0;
        const char *suf = v == 0 ? "" : s->m->variant[v];
        char key[64];
#define KEY(NAME) (snprintf(key, sizeof key, "%s%s%s", NAME, *suf ? "_" : "", suf), key)
        run_metric_json(s->run, KEY("accuracy_matrix"), js);
        run_metric(s->run, KEY("A_last"), al);
        run_metric(s->run, KEY("A_avg"), aa);
        run_metric(s->run, KEY("forgetting"), fg);
        run_metric(s->run, KEY("BWT"), bw);
#undef KEY
    }
    double ts[64], pm[64];
    int ns = s->stages < 64 ? s->stages : 64;
    for (int t = 0; t < ns; t++)
        ts[t] = s->task_seconds[t], pm[t] = s->peak_mem[t];
    run_metric_array(s->run, "task_seconds", ts, ns);
    run_metric_array(s->run, "peak_memory_bytes", pm, ns);
    run_metric_vulkan(s->run, s->c->dev, &s->vulkan);
    free(r), free(js);
    PK_TRY(write_confusion(s, res));
    return run_metrics_write(s->run);
}

static void print_table(cl_state *s, const cl_result *res) {
    const cl_options *o = s->o;
    int T = s->T;
    run_info(s->run,
             "%s, %s, %d tasks%s: accuracy after each task (%%, rows) on each task (columns)",
             o->method_name,
             o->scenario == CL_TASK_INCREMENTAL ? "task-incremental" : "class-incremental", T,
             o->joint ? " trained jointly" : "");
    for (int v = 0; v < s->V; v++) {
        if (s->V > 1) run_info(s->run, "  %s:", s->m->variant[v]);
        for (int i = 0; i < (o->joint ? 1 : T); i++) {
            char line[1024];
            size_t k = (size_t)snprintf(line, sizeof line, "  %s %2d |",
                                        o->joint ? "joint" : "task", i + 1);
            for (int j = 0; j < T && k < sizeof line - 16; j++) {
                float x = s->acc[((size_t)v * T + i) * T + j];
                if ((o->joint || j <= i) && !isnan(x))
                    k += (size_t)snprintf(line + k, sizeof line - k, " %6.2f", 100.0 * x);
                else
                    k += (size_t)snprintf(line + k, sizeof line - k, "      -");
            }
            run_info(s->run, "%s", line);
        }
        run_info(s->run, "  %s: A_last %.2f  A_avg %.2f  forgetting %.2f  BWT %.2f",
                 s->m->variant[v], 100 * res->a_last[v], 100 * res->a_avg[v],
                 100 * res->forgetting[v], 100 * res->bwt[v]);
    }
}

static void options_json(const cl_state *s, char *buf, size_t n) {
    const cl_options *o = s->o;
    /* an explicit class order: "class_order": [ids] */
    char *co = malloc((size_t)o->class_order_n * 12 + 32);
    if (co) {
        size_t k = 0;
        co[0] = 0;
        if (o->class_order) {
            k += (size_t)sprintf(co + k, "\"class_order\": [");
            for (int i = 0; i < o->class_order_n; i++)
                k += (size_t)sprintf(co + k, "%s%d", i ? ", " : "", o->class_order[i]);
            sprintf(co + k, "], ");
        }
    }
    snprintf(buf, n,
             "{\"method\": \"%s\", %s\"backbone\": \"%s\", \"arch\": \"%s\", \"data\": \"%s\", "
             "\"scenario\": \"%s\", \"tasks\": %d, \"first_task\": %d, \"class_order_seed\": "
             "%llu, %s\"joint\": %s, \"epochs\": %d, \"augment\": \"%s\", \"batch\": %d, "
             "\"lr\": %.9g, "
             "\"train_per_class\": %d, \"test_per_class\": %d, \"image_size\": %d, "
             "\"seed\": %llu, \"threads\": %d}",
             o->method_name, o->extra_json ? o->extra_json : "", o->backbone, s->cfg.name, o->data,
             o->scenario == CL_TASK_INCREMENTAL ? "task" : "class", o->tasks, o->first_task,
             (unsigned long long)o->class_order_seed, co ? co : "", o->joint ? "true" : "false",
             o->epochs, o->augment == CL_AUG_LAE ? "lae" : "none", o->batch, o->lr,
             o->train_per_class, o->test_per_class, s->S, (unsigned long long)o->seed, o->threads);
    free(co);
}

static pk_status run_body(cl_state *s, cl_result *res) {
    const cl_options *o = s->o;
    double w0 = run_now(), c0 = cpu_now();
    PK_TRY(load_data(s));
    size_t nopts = 4096 + (size_t)o->class_order_n * 12;
    char *opts = malloc(nopts);
    if (!opts) return pk_error(PK_ERR_NOMEM, "cl: out of memory");
    options_json(s, opts, nopts);
    run_options ro = {.out = o->out,
                      .task = "cl",
                      .options_json = opts,
                      .resume = o->resume,
                      .progress = o->progress,
                      .catch_signals = o->catch_signals};
    pk_status so = run_open(&ro, &s->run);
    free(opts);
    PK_TRY(so);
    run_metric_str(s->run, "kind", "cl");
    run_metric_str(s->run, "method", o->method_name);
    run_metric_str(s->run, "scenario",
                   o->scenario == CL_TASK_INCREMENTAL ? "task-incremental" : "class-incremental");
    {
        double ord[1024];
        int n = s->classes < 1024 ? s->classes : 1024;
        for (int i = 0; i < n; i++)
            ord[i] = s->order[i];
        run_metric_array(s->run, "class_order", ord, n);
        double st[257];
        for (int t = 0; t <= s->T && t < 257; t++)
            st[t] = s->start[t];
        run_metric_array(s->run, "task_starts", st, s->T + 1 < 257 ? s->T + 1 : 257);
    }
    run_info(s->run, "%s: %d classes in %d tasks, %d train / %d test images %dx%dx%d; %s %s",
             o->data, s->classes, s->T, s->ntr, s->nte, s->chans, s->S, s->S, s->cfg.name,
             o->backbone);

    pk_ctx_options co = {.device = o->device, .seed = o->seed, .threads = o->threads};
    PK_TRY(pk_ctx_create(&co, &s->c));
    pk_rng rng = {o->seed};
    PK_TRY(vit_create(s->c, &s->cfg, "", &rng, &s->bb));
    PK_TRY(backbone_load(s->c, s->bb, o->backbone, (const char *[]){"head."}, 1));
    int np = 0;
    tensor *const *ps = vit_params(s->bb, &np);
    for (int i = 0; i < np; i++)
        ps[i]->requires_grad = false; /* the backbone is frozen */
    s->V = s->m->nvariants;
    int T = s->T, eb = o->eval_batch > o->batch ? o->eval_batch : o->batch;
    size_t sz = (size_t)s->chans * (size_t)s->S * (size_t)s->S;
    s->acc = malloc(sizeof(float) * (size_t)s->V * (size_t)T * (size_t)T);
    s->task_seconds = calloc((size_t)s->stages, sizeof(float));
    s->peak_mem = calloc((size_t)s->stages, sizeof(float));
    s->loss_sum = calloc(2, sizeof(float));
    s->xb = malloc(sizeof(float) * sz * (size_t)eb);
    s->aug_tmp = malloc(sizeof(float) * sz);
    s->yb = malloc(sizeof(int32_t) * (size_t)eb);
    s->scores = malloc(sizeof(float) * (size_t)s->V * (size_t)eb * (size_t)s->classes);
    s->conf_stage = -1;
    if (s->classes <= CL_MAX_CONFUSION) {
        s->conf = calloc((size_t)s->V * (size_t)s->classes * (size_t)s->classes, sizeof(int64_t));
        if (!s->conf) return pk_error(PK_ERR_NOMEM, "cl: out of host memory");
    }
    if (!s->acc || !s->task_seconds || !s->peak_mem || !s->loss_sum || !s->xb || !s->aug_tmp ||
        !s->yb || !s->scores)
        return pk_error(PK_ERR_NOMEM, "cl: out of host memory");
    if (s->c->backend != PK_BACKEND_CPU) {
        s->loss_dev = tensor_new(s->c->state, PK_F32, 1, (int64_t[]){1});
        if (!s->loss_dev) return pk_error(PK_ERR_NOMEM, "cl: out of device memory");
        /* the training set on the device when one binding holds it (as MAN's): a step then
         * uploads its indices and labels, not its images */
        const pk_device_info *di = pk_device_get_info(s->c->dev);
        uint64_t bytes = sizeof(float) * sz * (uint64_t)s->ntr;
        if (o->augment == CL_AUG_NONE && di && bytes <= di->max_storage_buffer_range) {
            s->xtr_dev = tensor_new(s->c->state, PK_F32, 2, (int64_t[]){s->ntr, (int64_t)sz});
            if (!s->xtr_dev) return pk_error(PK_ERR_NOMEM, "cl: out of device memory");
            PK_TRY(tensor_upload(s->xtr_dev, s->xtr));
        }
    }
    for (size_t i = 0; i < (size_t)s->V * T * T; i++)
        s->acc[i] = NAN;
    cl_setup su = {.c = s->c,
                   .backbone = s->bb,
                   .classes = s->classes,
                   .batch = o->batch,
                   .lr = o->lr,
                   .epochs = o->epochs,
                   .seed = o->seed};
    PK_TRY(s->m->setup(s->m, &su));

    /* the checkpoint: the method's state and the runner's host arrays */
    run_tensor ck[256];
    int nck = s->m->state(s->m, ck, 250);
    ck[nck++] = (run_tensor){.name = "cl.accuracy", .host = s->acc, .numel = (int64_t)s->V * T * T};
    ck[nck++] =
        (run_tensor){.name = "cl.task_seconds", .host = s->task_seconds, .numel = s->stages};
    ck[nck++] = (run_tensor){.name = "cl.peak_memory", .host = s->peak_mem, .numel = s->stages};
    ck[nck++] = (run_tensor){.name = "cl.loss_sum", .host = s->loss_sum, .numel = 2};
    int64_t g0 = -1;
    PK_TRY(run_checkpoint_load(s->run, ck, nck, &g0, NULL));
    /* the epoch's loss sum in a checkpoint is the world's: rank 0 carries it on, the other
     * ranks add only their own shares from here (see the step loop) */
    if (g0 >= 0 && !run_is_writer(s->run)) s->loss_sum[0] = 0;
    int64_t g = g0 < 0 ? 0 : g0;
    /* where the step count falls: stage, epoch, offset in the epoch */
    int st0 = 0, e0 = 0;
    int64_t off0 = 0, acc_steps = 0;
    for (st0 = 0; st0 < s->stages; st0++) {
        int64_t per = s->steps_per_epoch[st0] * o->epochs;
        if (g < acc_steps + per) {
            e0 = (int)((g - acc_steps) / s->steps_per_epoch[st0]);
            off0 = (g - acc_steps) % s->steps_per_epoch[st0];
            break;
        }
        acc_steps += per;
    }
    bool resumed_mid = g0 >= 0 && st0 < s->stages && (e0 > 0 || off0 > 0);
    if (g0 >= 0)
        run_info(s->run, "resuming at step %lld: task %d, epoch %d, step %lld of the epoch",
                 (long long)g, st0 + 1, e0 + 1, (long long)off0);
    if (g0 >= 0 && s->m->restored) PK_TRY(s->m->restored(s->m, st0, e0));

    static const char *cols[] = {"task", "epoch", "step", "loss", "seconds"};
    int *order = NULL;
    pk_status st = PK_OK;
    res->stopped = false;
    for (int t = st0; t < s->stages && st == PK_OK; t++) {
        int lo = o->joint ? 0 : s->start[t], hi = o->joint ? s->classes : s->start[t + 1];
        double tw = run_now();
        if (!(resumed_mid && t == st0)) {
            if ((st = s->m->task_begin(s->m, t, lo, hi)) != PK_OK) break;
        }
        free(order);
        order = malloc(sizeof(int) * (size_t)s->ntr_t[t]);
        if (!order) {
            st = pk_error(PK_ERR_NOMEM, "cl: out of memory");
            break;
        }
        int ebeg = t == st0 ? e0 : 0;
        for (int e = ebeg; e < o->epochs && st == PK_OK; e++) {
            if ((st = s->m->epoch_begin(s->m, t, e)) != PK_OK) break;
            /* the epoch's order is a function of (seed, task, epoch): a resumed run finds it */
            memcpy(order, s->tr_idx[t], sizeof(int) * (size_t)s->ntr_t[t]);
            pk_rng er = {(o->seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(t + 1) << 40) ^
                         ((uint64_t)(e + 1) << 20) ^ 0xC1u};
            pk_rng_shuffle(&er, (int32_t *)order, s->ntr_t[t]);
            int64_t spe = s->steps_per_epoch[t], k0 = (t == st0 && e == e0) ? off0 : 0;
            if (k0 == 0) s->loss_sum[0] = s->loss_sum[1] = 0;
            if (s->loss_dev && (st = tensor_upload(s->loss_dev, &s->loss_sum[0])) != PK_OK) break;
            char label[64];
            snprintf(label, sizeof label, "task %d/%d epoch %d/%d", t + 1, s->stages, e + 1,
                     o->epochs);
            run_progress_start(s->run, label, spe);
            for (int64_t k = k0; k < spe && st == PK_OK; k++) {
                int b0 = (int)(k * o->batch);
                int b = s->ntr_t[t] - b0 < o->batch ? s->ntr_t[t] - b0 : o->batch;
                /* this rank's shard of the global batch (all of it in a world of one); a rank
                 * whose shard of a short last batch is empty steps on a stand-in sample with
                 * share 0, so every rank runs the same collectives */
                int64_t first = 0, mine = 0;
                dist_shard(b, &first, &mine);
                double share = (double)mine * run_world(s->run) / b;
                if (mine == 0) first = 0, mine = 1;
                pk_step_counters_begin(&s->vulkan, s->c->dev);
                /* no wait for the previous step: the step arena's reuse is ordered on the
                 * device, and the batch's upload is a recorded copy (Vulkan) */
                if ((st = pk_step_reset(s->c)) != PK_OK) break;
                tensor *xt, *yt, *lv = NULL;
                /* the augmentation of global step g: a function of (seed, g) */
                uint64_t aseed = aug_mix(o->seed * 0xD1B54A32D192ED03ull + 0xA5, (uint64_t)g + 1);
                if ((st = upload_batch(s, s->xtr, s->ytr, order + b0 + first, (int)mine, aseed,
                                       first, &xt, &yt)) != PK_OK)
                    break;
                double loss = 0, w0 = run_now(), c0 = cpu_now();
                dist_stats k0 = dist_stats_get();
                if ((st = s->m->step(s->m, xt, yt, lo, hi, share, &lv)) != PK_OK) break;
                /* this rank's part of the global batch's mean loss (the loss itself in a world
                 * of one); the ranks' parts are summed when the epoch is logged or saved */
                double part = share / run_world(s->run);
                if (s->loss_dev)
                    st = pk_accumulate(s->c, s->loss_dev,
                                       part == 1.0 ? lv : pk_scale(s->c, lv, (float)part));
                else {
                    float v = 0;
                    st = tensor_download(lv, &v);
                    loss = v;
                }
                if (st == PK_OK) st = pk_device_submit(s->c->dev);
                if (st != PK_OK) break;
                pk_step_counters_mark(&s->vulkan, s->c->dev);
                dist_stats k1 = dist_stats_get();
                s->step_secs += run_now() - w0, s->step_cpu += cpu_now() - c0, s->steps_run++;
                s->comm.seconds += k1.seconds - k0.seconds, s->comm.bytes += k1.bytes - k0.bytes;
                s->comm.calls += k1.calls - k0.calls;
                g++;
                if (!s->loss_dev) s->loss_sum[0] += (float)(loss * part);
                s->loss_sum[1] += 1;
                if (s->loss_dev) /* the loss is read when the epoch is logged */
                    run_progress_update(s->run, k + 1, "step %lld", (long long)g);
                else
                    run_progress_update(s->run, k + 1, "loss %.4f",
                                        s->loss_sum[0] * run_world(s->run) / s->loss_sum[1]);
                bool stop = run_stop_requested(s->run) ||
                            (o->stop_after_steps > 0 && g >= o->stop_after_steps);
                if (stop && k + 1 < spe) {
                    run_progress_end(s->run);
                    st = loss_take(s);
                    if (st == PK_OK) st = dist_sum_f32(s->loss_sum, 1);
                    if (st != PK_OK) break;
                    s->task_seconds[t] += (float)(run_now() - tw);
                    run_info(s->run, "stopping: checkpoint at step %lld (task %d, epoch %d)",
                             (long long)g, t + 1, e + 1);
                    st = run_checkpoint_save(s->run, g, ck, nck, NULL);
                    res->stopped = true;
                    goto out;
                }
            }
            run_progress_end(s->run);
            if (st != PK_OK) break;
            if ((st = loss_take(s)) != PK_OK) break;
            if ((st = dist_sum_f32(s->loss_sum, 1)) != PK_OK) break; /* the world's sum */
            double row[5] = {t + 1, e + 1, (double)g, s->loss_sum[0] / s->loss_sum[1],
                             run_now() - tw + s->task_seconds[t]};
            if ((st = run_log(s->run, 5, cols, row)) != PK_OK) break;
            if (e + 1 == o->epochs) {
                if ((st = evaluate(s, t)) != PK_OK) break;
                s->peak_mem[t] = (float)peak_rss();
            }
            s->task_seconds[t] += (float)(run_now() - tw);
            tw = run_now();
            if (e + 1 == o->epochs) {
                int row_i = o->joint ? 0 : t, last = o->joint ? s->T - 1 : t;
                char line[512];
                size_t n = 0;
                for (int j = 0; j <= last && n < sizeof line - 16; j++)
                    n += (size_t)snprintf(line + n, sizeof line - n, " %.2f",
                                          100.0 * s->acc[(size_t)row_i * T + j]);
                run_info(s->run, "after task %d (%.1f s): accuracy per task (%s, %%):%s", t + 1,
                         s->task_seconds[t], s->m->variant[0], line);
            }
            if ((st = run_checkpoint_save(s->run, g, ck, nck, NULL)) != PK_OK) break;
            bool stop =
                run_stop_requested(s->run) || (o->stop_after_steps > 0 && g >= o->stop_after_steps);
            bool finished = t + 1 == s->stages && e + 1 == o->epochs;
            if (stop && !finished) {
                run_info(s->run, "stopping after task %d epoch %d (step %lld)", t + 1, e + 1,
                         (long long)g);
                res->stopped = true;
                goto out;
            }
        }
    }
out:
    free(order);
    if (st != PK_OK) return st;
    int rows = 0;
    for (int i = 0; i < (o->joint ? 1 : T); i++)
        if (!isnan(s->acc[(size_t)i * T + i])) rows = i + 1;
    res->seconds = run_now() - w0, res->cpu_seconds = cpu_now() - c0;
    run_metric(s->run, "seconds", res->seconds);
    run_metric(s->run, "cpu_seconds", res->cpu_seconds);
    run_metric(s->run, "steps", (double)g);
    run_metric(s->run, "train_images", s->ntr);
    run_metric(s->run, "test_images", s->nte);
    run_metric(s->run, "ranks", dist_size());
    if (s->steps_run > 0) { /* rank 0's training steps in this process */
        double k = 1.0 / (double)s->steps_run;
        char d[384];
        snprintf(d, sizeof d,
                 "{\"ranks\": %d, \"steps\": %lld, \"step_seconds\": %.6f, "
                 "\"step_cpu_seconds\": %.6f, \"comm_seconds_per_step\": %.6f, "
                 "\"comm_bytes_per_step\": %.0f, \"comm_calls_per_step\": %.2f}",
                 dist_size(), (long long)s->steps_run, s->step_secs * k, s->step_cpu * k,
                 s->comm.seconds * k, (double)s->comm.bytes * k, (double)s->comm.calls * k);
        run_metric_json(s->run, "distributed", d);
    }
    PK_TRY(write_results(s, o->joint ? (rows ? T : 0) : rows, res));
    if (!res->stopped) print_table(s, res);
    return PK_OK;
}

pk_status cl_run(const cl_options *opt, cl_method *m, cl_result *res) {
    memset(res, 0, sizeof *res);
    cl_options o = *opt;
    if (!o.out || !o.data || !o.backbone)
        return pk_error(PK_ERR_INVALID, "cl: --out, --data and --backbone are required");
    if (o.tasks < 1 || o.epochs < 1)
        return pk_error(PK_ERR_INVALID, "cl: --tasks and --epochs must be >= 1");
    if (o.batch <= 0) o.batch = 24;
    if (o.lr <= 0) o.lr = 0.0028125 * o.batch / 24.0;
    if (o.eval_batch <= 0) o.eval_batch = 256;
    if (o.seed == 0) o.seed = 1;
    if (o.batch < dist_size())
        return pk_error(PK_ERR_INVALID,
                        "cl: --batch %d is smaller than the %d ranks; every rank takes a shard "
                        "of each global batch",
                        o.batch, dist_size());
    cl_state s = {.o = &o, .m = m};
    pk_status st = run_body(&s, res);
    /* report.html at the end, also when stopped (Ctrl-C, --stop-after-*) or failed */
    if (s.run)
        run_report(s.run, st != PK_OK ? "failed" : res->stopped ? "interrupted" : "finished");
    state_free(&s);
    return st;
}
