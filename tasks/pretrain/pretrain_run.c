/* pretrain_run.c - a `polyak pretrain` run: data, options, the epoch loop, per-epoch k-NN of
 * the teacher, the final probes, checkpoints and files through the run harness. See
 * pretrain.h; models and steps are pretrain_model.c's, the DINO pieces dino.c's, the views
 * augment.c's. */
#include "pretrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backbone.h"
#include "ctp_data.h"
#include "dataset_dir.h"
#include "dist.h"
#include "pretrain_internal.h"
#include "probe.h"

#define EVAL_BATCH 256

/* Process CPU seconds (all threads): timings on a shared machine. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool pretrain_method_parse(const char *s, pretrain_method *m) {
    static const char *names[] = {"dino", "supervised", "raw", "random"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *m = (pretrain_method)i;
            return true;
        }
    return false;
}

const char *pretrain_method_name(pretrain_method m) {
    static const char *names[] = {"dino", "supervised", "raw", "random"};
    return (unsigned)m < 4 ? names[m] : "?";
}

/* Loads the train and test splits of `dir` (any layout tasks/common/dataset_dir.h reads;
 * image folders at 32x32), or the pictures of an image-text pairs manifest (`polyak ctp`'s:
 * the file's split, else a seeded fifth held out; label = task; 32x32, alpha over white). */
static pk_status load_data(const char *dir, uint64_t seed, pk_dataset *train, pk_dataset *test) {
    if (ctp_is_manifest(dir)) {
        ctp_read_options ro = {.seed = seed};
        return ctp_pairs_images(dir, &ro, 32, train, test);
    }
    PK_TRY(dataset_open_dir(dir, "train", 32, train, NULL));
    PK_TRY(dataset_open_dir(dir, "test", 32, test, NULL));
    if (!train->labels || !test->labels)
        return pk_error(PK_ERR_FORMAT,
                        "%s: the %s split has no labels file; pretrain's k-NN and linear probes "
                        "need the labels of both splits",
                        dir, !train->labels ? "train" : "test");
    return PK_OK;
}

/* Everything a run holds; freed by state_free. */
static void state_free(pt_state *s) {
    optim_destroy(s->opt);
    optim_destroy(s->opt_last);
    ema_destroy(&s->ema);
    vit_destroy(s->model);
    pk_ctx_destroy(s->c);
    dataset_free(&s->train);
    dataset_free(&s->test);
    free(s->subset), free(s->order), free(s->params), free(s->globals), free(s->locals);
    free(s->labels), free(s->feat_train), free(s->feat_test), free(s->y_train), free(s->y_test);
    free(s->knn_curve);
    run_close(s->run);
}

/* ---- options ---- */

static void fill_defaults(pretrain_options *o, int image_size, int patch) {
    if (!o->arch) o->arch = "vit_nano_patch4_28";
    if (o->batch <= 0) o->batch = 64;
    if (o->seed == 0) o->seed = 1;
    if (o->out_dim <= 0) o->out_dim = 4096;
    if (o->hidden <= 0) o->hidden = 2048;
    if (o->bottleneck <= 0) o->bottleneck = 256;
    if (o->local_crops == 0) o->local_crops = 2;
    if (o->local_crops < 0) o->local_crops = 0;
    if (o->global_size <= 0) o->global_size = image_size;
    if (o->local_size <= 0) {
        int l = (int)lround(o->global_size * 96.0 / 224.0 / patch) * patch;
        o->local_size = l < patch ? patch : l;
    }
    if (o->global_scale[1] <= 0) o->global_scale[0] = 0.4, o->global_scale[1] = 1.0;
    if (o->local_scale[1] <= 0) o->local_scale[0] = 0.05, o->local_scale[1] = 0.4;
    if (o->lr <= 0) o->lr = 5e-4;
    if (o->min_lr <= 0) o->min_lr = 1e-6;
    if (o->wd <= 0) o->wd = 0.04;
    if (o->wd_end <= 0) o->wd_end = 0.4;
    if (o->clip == 0) o->clip = 3.0;
    if (o->warmup_epochs == 0) o->warmup_epochs = 0.1 * o->epochs;
    if (o->warmup_epochs < 0) o->warmup_epochs = 0;
    if (o->freeze_last_layer == 0) o->freeze_last_layer = 1;
    if (o->freeze_last_layer < 0) o->freeze_last_layer = 0;
    if (o->momentum_teacher <= 0) o->momentum_teacher = 0.996;
    if (o->teacher_temp <= 0) o->teacher_temp = 0.07;
    if (o->warmup_teacher_temp <= 0) o->warmup_teacher_temp = 0.04;
    if (o->warmup_teacher_temp_epochs == 0)
        o->warmup_teacher_temp_epochs = (int)lround(0.3 * o->epochs);
    if (o->warmup_teacher_temp_epochs < 0) o->warmup_teacher_temp_epochs = 0;
    if (o->student_temp <= 0) o->student_temp = 0.1;
    if (o->center_momentum <= 0) o->center_momentum = 0.9;
    if (o->knn_k <= 0) o->knn_k = 20;
    if (o->knn_t <= 0) o->knn_t = 0.07;
    if (o->knn_train <= 0) o->knn_train = 10000;
    if (o->probe_kind != PROBE_LINEAR_ADAMW) o->probe_kind = PROBE_LINEAR_SGD;
    if (o->probe_epochs <= 0) o->probe_epochs = o->probe_kind == PROBE_LINEAR_SGD ? 100 : 30;
    if (o->probe_blocks <= 0) o->probe_blocks = 4; /* capped at the depth by run_body */
    if (o->probe_val <= 0) o->probe_val = 0.1;
}

/* The options as JSON: everything that shapes the result (so a resume must match them). */
static void options_json(const pretrain_options *o, int ntrain, int ntest, char *buf, size_t n) {
    snprintf(buf, n,
             "{\"method\":\"%s\",\"arch\":\"%s\",\"data\":\"%s\",\"epochs\":%d,\"batch\":%d,"
             "\"seed\":%llu,\"train_images\":%d,\"test_images\":%d,\"out_dim\":%d,\"hidden\":%d,"
             "\"bottleneck\":%d,\"local_crops\":%d,\"global_size\":%d,\"local_size\":%d,"
             "\"global_scale\":[%g,%g],\"local_scale\":[%g,%g],\"lr\":%g,\"min_lr\":%g,"
             "\"wd\":%g,\"wd_end\":%g,\"clip\":%g,\"warmup_epochs\":%g,\"freeze_last_layer\":%d,"
             "\"momentum_teacher\":%g,\"teacher_temp\":%g,\"warmup_teacher_temp\":%g,"
             "\"warmup_teacher_temp_epochs\":%d,\"student_temp\":%g,\"center_momentum\":%g,"
             "\"knn_k\":%d,\"knn_t\":%g,\"knn_train\":%d,\"probe_epochs\":%d,\"dim\":%d,"
             "\"depth\":%d,\"heads\":%d,\"patch\":%d}",
             pretrain_method_name(o->method), o->arch, o->data, o->epochs, o->batch,
             (unsigned long long)o->seed, ntrain, ntest, o->out_dim, o->hidden, o->bottleneck,
             o->local_crops, o->global_size, o->local_size, o->global_scale[0], o->global_scale[1],
             o->local_scale[0], o->local_scale[1], o->lr, o->min_lr, o->wd, o->wd_end, o->clip,
             o->warmup_epochs, o->freeze_last_layer, o->momentum_teacher, o->teacher_temp,
             o->warmup_teacher_temp, o->warmup_teacher_temp_epochs, o->student_temp,
             o->center_momentum, o->knn_k, o->knn_t, o->knn_train, o->probe_epochs, o->dim,
             o->depth, o->heads, o->patch);
    /* an overridden blur range only: runs with the default (a function of global_size) keep
     * the options text of the runs made before --blur-sigma existed, so they still resume */
    size_t len = strlen(buf);
    if (o->blur_sigma[1] > 0 && len > 0 && len < n)
        snprintf(buf + len - 1, n - (len - 1), ",\"blur_sigma\":[%g,%g]}", o->blur_sigma[0],
                 o->blur_sigma[1]);
}

/* The final linear probe's options as JSON members (appended to options.json; not part of
 * what a resumed run must share, since they change no training step). */
static void probe_options_json(const pretrain_options *o, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n,
                                "\"probe\":\"%s\",\"probe_blocks\":%d,\"probe_avgpool\":%s,"
                                "\"probe_val\":%g,\"probe_lrs\":[",
                                o->probe_kind == PROBE_LINEAR_SGD ? "sgd" : "adamw",
                                o->probe_blocks, o->probe_avgpool ? "true" : "false", o->probe_val);
    int nl = o->n_probe_lrs                      ? o->n_probe_lrs
             : o->probe_kind == PROBE_LINEAR_SGD ? PROBE_DEFAULT_NLR
                                                 : 1;
    for (int i = 0; i < nl && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%g", i ? "," : "",
                              o->n_probe_lrs                      ? o->probe_lrs[i]
                              : o->probe_kind == PROBE_LINEAR_SGD ? probe_default_lrs[i]
                                                                  : 1e-3);
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "],\"probe_wds\":[");
    for (int i = 0; i < (o->n_probe_wds ? o->n_probe_wds : 1) && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%g", i ? "," : "",
                              o->n_probe_wds ? o->probe_wds[i] : 0.0);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* ---- features ---- */

/* Features of images idx[0..n) of ds by the model (as it is now), into out (n, (blocks +
 * avgpool) D): the final-norm class tokens of the last `blocks` blocks and with avgpool the
 * mean patch token (blocks 1: the class token the k-NN uses); eval views (no augmentation). */
static pk_status extract(pt_state *s, const pk_dataset *ds, const int32_t *idx, int n, int blocks,
                         bool avgpool, float *out) {
    int g = s->aug.global_size, ch = ds->c;
    size_t img = (size_t)ch * g * g;
    int64_t d = (int64_t)(blocks + (avgpool ? 1 : 0)) * s->model->cfg.dim;
    float *x = malloc(sizeof(float) * img * EVAL_BATCH);
    if (!x) return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    bool ge = pk_set_grad_enabled(s->c, false);
    pk_status st = PK_OK;
    for (int b0 = 0; b0 < n && st == PK_OK; b0 += EVAL_BATCH) {
        int m = n - b0 < EVAL_BATCH ? n - b0 : EVAL_BATCH;
        for (int i = 0; i < m && st == PK_OK; i++)
            st = aug_eval_view(&s->aug, ds, idx ? idx[b0 + i] : b0 + i, x + (size_t)i * img);
        if (st != PK_OK || (st = pk_step_begin(s->c)) != PK_OK) break;
        tensor *xt = tensor_new(s->c->step, PK_F32, 4, (int64_t[]){m, ch, g, g});
        if (!xt || (st = tensor_upload(xt, x)) != PK_OK) {
            st = st != PK_OK ? st : PK_ERR_NOMEM;
            break;
        }
        tensor *f = vit_forward_probe_features(s->c, s->model, xt, blocks, avgpool); // (m, d)
        if (!f) {
            st = PK_ERR_INVALID;
            break;
        }
        st = tensor_download(f, out + (size_t)b0 * d);
    }
    pk_set_grad_enabled(s->c, ge);
    free(x);
    return st;
}

/* extract() of images idx[0..n) split over the ranks, every rank ending with all n rows: each
 * fills its dist_shard, zeroes the rest, and one sum over the ranks assembles them (x + 0 is
 * exact). In a world of one, extract() itself. */
static pk_status extract_world(pt_state *s, const pk_dataset *ds, const int32_t *idx, int n,
                               int blocks, bool avgpool, float *out) {
    if (dist_size() <= 1) return extract(s, ds, idx, n, blocks, avgpool, out);
    int64_t first = 0, count = 0;
    int64_t d = (int64_t)(blocks + (avgpool ? 1 : 0)) * s->model->cfg.dim;
    dist_shard(n, &first, &count);
    memset(out, 0, sizeof(float) * (size_t)(n * d));
    int32_t *own = malloc(sizeof(int32_t) * (size_t)(count ? count : 1));
    if (!own) return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    for (int64_t i = 0; i < count; i++)
        own[i] = idx ? idx[first + i] : (int32_t)(first + i);
    pk_status st = extract(s, ds, own, (int)count, blocks, avgpool, out + (size_t)(first * d));
    free(own);
    PK_TRY(st);
    return dist_sum_f32(out, (int64_t)n * d);
}

/* Raw pixels in [0, 1] of images idx[0..n) as features (n, C H W). */
static void raw_pixels(const pk_dataset *ds, const int32_t *idx, int n, float *out) {
    size_t img = (size_t)ds->c * ds->h * ds->w;
    for (int i = 0; i < n; i++)
        dataset_sample_f32_chw(ds, idx ? idx[i] : i, out + (size_t)i * img);
}

/* Teacher (DINO) or model features of the memory bank (the first `nbank` of the subset) and
 * the test set, then k-NN top-1. */
static pk_status evaluate_knn(pt_state *s, int nbank, double *top1) {
    bool swap = s->ema.n > 0;
    if (swap) PK_TRY(ema_swap(&s->ema));
    /* with several ranks: the bank assembled on every rank, the test set sharded (k-NN of a
     * test image reads the bank only) and the hits summed */
    int64_t first = 0, count = 0;
    dist_shard(s->ntest, &first, &count);
    int32_t *own = malloc(sizeof(int32_t) * (size_t)(count ? count : 1));
    pk_status st = own ? PK_OK : pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    for (int64_t i = 0; own && i < count; i++)
        own[i] = (int32_t)(first + i);
    if (st == PK_OK) st = extract_world(s, &s->train, s->subset, nbank, 1, false, s->feat_train);
    if (st == PK_OK) st = extract(s, &s->test, own, (int)count, 1, false, s->feat_test);
    free(own);
    if (swap) {
        pk_status st2 = ema_swap(&s->ema);
        if (st == PK_OK) st = st2;
    }
    PK_TRY(st);
    int64_t d = s->model->cfg.dim;
    probe_set tr = {s->feat_train, s->y_train, nbank, d},
              te = {s->feat_test, s->y_test + first, (int)count, d};
    if (dist_size() <= 1)
        return probe_knn(s->c, &tr, &te, s->classes, s->o.knn_k, s->o.knn_t, top1);
    double hits = 0;
    if (count > 0) {
        PK_TRY(probe_knn(s->c, &tr, &te, s->classes, s->o.knn_k, s->o.knn_t, &hits));
        hits = round(hits * (double)count); /* a fraction of count images */
    }
    PK_TRY(dist_sum_f64(&hits, 1));
    *top1 = hits / s->ntest;
    return PK_OK;
}

/* ---- checkpoints ---- */

typedef struct ckpt_list {
    run_tensor *t;
    char (*names)[160];
    int n;
} ckpt_list;

static void ckpt_list_free(ckpt_list *l) { free(l->t), free(l->names); }

/* Everything a resumed run needs: parameters, teacher, optimiser moments, centre, the epoch's
 * running sums. Step counters are functions of the step and are not stored. */
static pk_status ckpt_tensors(pt_state *s, ckpt_list *l) {
    int cap = 2 * s->nparams + 8;
    if (s->opt) cap += optim_state_count(s->opt);
    if (s->opt_last) cap += optim_state_count(s->opt_last);
    l->t = calloc((size_t)cap, sizeof(run_tensor));
    l->names = calloc((size_t)cap, sizeof *l->names);
    if (!l->t || !l->names) return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    int n = 0;
    for (int i = 0; i < s->nparams; i++, n++) {
        snprintf(l->names[n], sizeof l->names[n], "student.%s", s->params[i]->name);
        l->t[n] = (run_tensor){.name = l->names[n], .t = s->params[i]};
    }
    for (int k = 0; k < s->ema.n; k++)
        for (int i = 0; i < teacher_count(s->ema.t[k]); i++, n++) {
            snprintf(l->names[n], sizeof l->names[n], "teacher.%s", s->ema.students[k][i]->name);
            l->t[n] = (run_tensor){.name = l->names[n], .t = teacher_tensor(s->ema.t[k], i)};
        }
    pk_optimizer *opts[2] = {s->opt, s->opt_last};
    const char *pre[2] = {"opt", "opt_last"};
    for (int k = 0; k < 2; k++) {
        if (!opts[k]) continue;
        for (int i = 0; i < optim_state_count(opts[k]); i++, n++) {
            char nm[128];
            tensor *t = optim_state_get(opts[k], i, nm, sizeof nm);
            snprintf(l->names[n], sizeof l->names[n], "%s.%s", pre[k], nm);
            l->t[n] = (run_tensor){.name = l->names[n], .t = t};
        }
    }
    if (s->center) l->t[n++] = (run_tensor){.name = "dino.center", .t = s->center};
    l->t[n++] = (run_tensor){.name = "epoch.sums", .host = s->acc, .numel = 4};
    l->t[n++] = (run_tensor){
        .name = "knn.curve", .host = s->knn_curve, .numel = s->o.epochs > 0 ? s->o.epochs : 1};
    l->n = n;
    return PK_OK;
}

/* The epoch's running sums (loss, steps, seconds) as the world's: every rank started the
 * epoch from the same sums (zero, or a checkpoint's), so the mean over the ranks is that
 * start plus the mean of what each added. Nothing to do in a world of one. */
static pk_status world_sums(pt_state *s) {
    if (dist_size() <= 1) return PK_OK;
    PK_TRY(dist_sum_f32(s->acc, 3));
    for (int i = 0; i < 3; i++)
        s->acc[i] /= (float)dist_size();
    return PK_OK;
}

/* Off the CPU backend the epoch's loss sum lives on the device (s->loss_sum): put there from
 * s->acc[0] when an epoch (or a resumed part of one) starts, read back into it when the epoch
 * ends or a checkpoint is saved, the only host waits of the steps. The device adds the same
 * floats in the same order as the host loop, so the sums are those of a per-step read. */
static pk_status loss_sum_put(pt_state *s) {
    return s->loss_sum ? tensor_upload(s->loss_sum, &s->acc[0]) : PK_OK;
}

static pk_status loss_sum_take(pt_state *s, int epoch) {
    if (!s->loss_sum) return PK_OK;
    PK_TRY(tensor_download(s->loss_sum, &s->acc[0]));
    if (!isfinite(s->acc[0]))
        return pk_error(PK_ERR_INVALID,
                        "pretrain: the loss sum of epoch %d is %g after %.0f steps; try a smaller "
                        "--lr",
                        epoch + 1, s->acc[0], s->acc[1]);
    return PK_OK;
}

/* Sets the counters that follow from the global step (optimisers, teacher). */
static void set_counters(pt_state *s, int64_t it) {
    if (s->opt) optim_set_steps(s->opt, it);
    if (s->opt_last) {
        int64_t frozen = (int64_t)s->o.freeze_last_layer * s->steps;
        optim_set_steps(s->opt_last, it > frozen ? it - frozen : 0);
    }
    for (int k = 0; k < s->ema.n; k++)
        teacher_set_updates(s->ema.t[k], it);
}

/* ---- the run ---- */

static pk_status write_backbone(pt_state *s) {
    char path[4096];
    run_path(s->run, "backbone.safetensors", path, sizeof path);
    backbone_norm nm = {.present = true};
    for (int k = 0; k < 3; k++)
        nm.mean[k] = s->aug.mean[k], nm.std[k] = s->aug.std[k];
    PK_TRY(ema_swap(&s->ema));
    pk_status st = backbone_save(s->model, path, &nm);
    {
        pk_status st2 = ema_swap(&s->ema);
        if (st == PK_OK) st = st2;
    }
    return st;
}

/* Columns [col, col + d) of the rows of x (n, stride), into a new array. */
static float *columns(const float *x, int64_t n, int64_t stride, int64_t col, int64_t d) {
    float *o = malloc(sizeof(float) * (size_t)(n * d) + 1);
    if (!o) return NULL;
    for (int64_t i = 0; i < n; i++)
        memcpy(o + i * d, x + i * stride + col, sizeof(float) * (size_t)d);
    return o;
}

static void on_probe_point(void *user, double lr, double wd, double val) {
    pt_state *s = user;
    if (val < 0)
        run_info(s->run, "linear probe lr %g wd %g: diverged", lr, wd);
    else
        run_info(s->run, "linear probe lr %g wd %g: validation %.2f%%", lr, wd, 100 * val);
}

/* Final probes on every training image (memory bank and probe training set) and the test
 * set, into metrics.json. s->feat_* hold (n, d) rows: the k-NN uses their columns
 * [knn_col, knn_col + knn_d) (the final class token), the linear probe every column. */
static pk_status final_probes(pt_state *s, int64_t d, int64_t knn_col, int64_t knn_d,
                              const char *features, pretrain_result *res) {
    probe_set tr = {s->feat_train, s->y_train, s->ntrain, d};
    probe_set te = {s->feat_test, s->y_test, s->ntest, d};
    double t0 = run_now();
    if (knn_col == 0 && knn_d == d) {
        PK_TRY(probe_knn(s->c, &tr, &te, s->classes, s->o.knn_k, s->o.knn_t, &res->knn_top1));
    } else {
        float *a = columns(s->feat_train, s->ntrain, d, knn_col, knn_d);
        float *b = columns(s->feat_test, s->ntest, d, knn_col, knn_d);
        pk_status st = a && b ? PK_OK : pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
        probe_set ktr = {a, s->y_train, s->ntrain, knn_d}, kte = {b, s->y_test, s->ntest, knn_d};
        if (st == PK_OK)
            st = probe_knn(s->c, &ktr, &kte, s->classes, s->o.knn_k, s->o.knn_t, &res->knn_top1);
        free(a), free(b);
        PK_TRY(st);
    }
    double t1 = run_now();
    run_info(s->run, "k-NN (k %d, T %g) top-1 %.2f%% (%.1f s); linear probe on %lld features...",
             s->o.knn_k, s->o.knn_t, 100 * res->knn_top1, t1 - t0, (long long)d);
    probe_linear_options po = {.kind = (probe_linear_kind)s->o.probe_kind,
                               .epochs = s->o.probe_epochs,
                               .seed = s->o.seed,
                               .val_fraction = s->o.probe_val};
    if (s->o.n_probe_lrs == 1)
        po.lr = s->o.probe_lrs[0], po.weight_decay = s->o.n_probe_wds ? s->o.probe_wds[0] : 0;
    else if (s->o.n_probe_lrs > 1)
        po.lr_grid = s->o.probe_lrs, po.n_lr = s->o.n_probe_lrs;
    if (s->o.n_probe_lrs != 1 && s->o.n_probe_wds > 0)
        po.wd_grid = s->o.probe_wds, po.n_wd = s->o.n_probe_wds;
    probe_linear_report rep = {.on_point = on_probe_point, .user = s};
    PK_TRY(probe_linear_run(s->c, &tr, &te, s->classes, &po, &rep));
    res->linear_top1 = rep.test_acc, res->linear_train = rep.train_acc;
    run_info(s->run, "linear probe top-1 %.2f%% (train %.2f%%; lr %g wd %g%s, %d epochs, %.1f s)",
             100 * rep.test_acc, 100 * rep.train_acc, rep.lr, rep.wd,
             rep.searched ? " chosen on the validation split" : "", rep.epochs, run_now() - t1);
    run_metric(s->run, "knn_top1", res->knn_top1);
    run_metric(s->run, "linear_top1", rep.test_acc);
    run_metric(s->run, "linear_train_top1", rep.train_acc);
    run_metric(s->run, "linear_probe_epochs", rep.epochs);
    run_metric(s->run, "linear_probe_lr", rep.lr);
    run_metric(s->run, "linear_probe_wd", rep.wd);
    if (rep.searched) {
        run_metric(s->run, "linear_probe_val_top1", rep.val_acc);
        run_metric(s->run, "linear_probe_val_images", (double)rep.val_rows);
        run_metric(s->run, "linear_probe_grid_points", rep.searched);
    }
    run_metric_str(s->run, "linear_probe",
                   s->o.probe_kind == PROBE_LINEAR_SGD
                       ? "DINO eval_linear on precomputed features (no augmentation): Linear "
                         "N(0,0.01)/0, SGD momentum 0.9, cosine per epoch, batch 256; lr (and wd) "
                         "chosen on a validation split of the training images, then trained on "
                         "all of them"
                       : "softmax regression on standardised features (train mean/std), AdamW "
                         "lr 1e-3 cosine, batch 256, from zeros");
    run_metric_str(s->run, "linear_probe_features", features);
    run_metric(s->run, "feature_dim", (double)d);
    run_metric(s->run, "knn_feature_dim", (double)knn_d);
    return PK_OK;
}

static pk_status run_body(pt_state *s, pretrain_result *res) {
    pretrain_options *o = &s->o;
    if (!o->data || !o->out)
        return pk_error(PK_ERR_INVALID, "pretrain: --data and --out are required");
    bool trains = o->method == PRETRAIN_DINO || o->method == PRETRAIN_SUPERVISED;
    if (trains && o->epochs < 1) return pk_error(PK_ERR_INVALID, "pretrain: --epochs must be >= 1");
    if (!trains) o->epochs = 0;
    PK_TRY(load_data(o->data, o->seed ? o->seed : 1, &s->train, &s->test));
    if (s->train.c != s->test.c || s->train.h != s->test.h || s->train.w != s->test.w)
        return pk_error(PK_ERR_FORMAT, "%s: training images are %dx%dx%d, test images %dx%dx%d",
                        o->data, s->train.w, s->train.h, s->train.c, s->test.w, s->test.h,
                        s->test.c);
    if (s->train.c != 1 && s->train.c != 3)
        return pk_error(PK_ERR_FORMAT, "%s: images have %d channels; expected 1 or 3", o->data,
                        s->train.c);
    vit_config cfg;
    PK_TRY(arch_config(o, &cfg));
    fill_defaults(o, s->train.h < s->train.w ? s->train.h : s->train.w, cfg.patch);
    if (o->probe_blocks > cfg.depth) o->probe_blocks = cfg.depth;
    if (o->global_size % cfg.patch || o->local_size % cfg.patch)
        return pk_error(PK_ERR_INVALID,
                        "pretrain: crop sizes %d (global) and %d (local) must be multiples of %s's "
                        "patch %d; set --global-size / --local-size",
                        o->global_size, o->local_size, o->arch, cfg.patch);
    s->classes =
        s->train.num_classes > s->test.num_classes ? s->train.num_classes : s->test.num_classes;
    s->ntrain = o->train_limit > 0 && o->train_limit < s->train.n ? o->train_limit : s->train.n;
    s->ntest = o->test_limit > 0 && o->test_limit < s->test.n ? o->test_limit : s->test.n;
    if (trains) {
        s->steps = s->ntrain / o->batch;
        if (s->steps < 1)
            return pk_error(PK_ERR_INVALID,
                            "pretrain: %d training images do not fill one batch of %d", s->ntrain,
                            o->batch);
    }
    if (trains) PK_TRY(dist_check_batch(o->batch, "pretrain --batch"));
    {
        int64_t cnt = 0;
        dist_shard(o->batch, &s->shard_first, &cnt);
        s->local_batch = (int)cnt;
    }
    int nbank = o->knn_train > 0 && o->knn_train < s->ntrain ? o->knn_train : s->ntrain;
    if (nbank < o->knn_k)
        return pk_error(PK_ERR_INVALID, "pretrain: %d memory-bank images for k-NN with k = %d",
                        nbank, o->knn_k);
    s->ncrops = 2 + o->local_crops;
    s->lr_base = o->lr * o->batch / 256.0;
    s->aug = aug_config_default(s->train.c, o->global_size, o->local_size, o->local_crops);
    s->aug.global_scale[0] = o->global_scale[0], s->aug.global_scale[1] = o->global_scale[1];
    s->aug.local_scale[0] = o->local_scale[0], s->aug.local_scale[1] = o->local_scale[1];
    if (o->blur_sigma[1] > 0)
        s->aug.blur_sigma[0] = o->blur_sigma[0], s->aug.blur_sigma[1] = o->blur_sigma[1];

    char opts[2048], all[3072], probe[768];
    options_json(o, s->ntrain, s->ntest, opts, sizeof opts);
    probe_options_json(o, probe, sizeof probe);
    snprintf(all, sizeof all, "%.*s,%s}", (int)strlen(opts) - 1, opts, probe);
    run_options ro = {.out = o->out,
                      .task = "pretrain",
                      .options_json = all,
                      .resume_json = opts,
                      .resume = o->resume,
                      .progress = o->progress,
                      .catch_signals = o->catch_signals};
    PK_TRY(run_open(&ro, &s->run));
    run_metric_str(s->run, "kind", "pretrain"); /* what `polyak report` reads */

    pk_ctx_options co = {.device = o->device, .seed = o->seed, .threads = o->threads};
    PK_TRY(pk_ctx_create(&co, &s->c));
    /* a fixed subset: the first N of a seeded permutation */
    s->subset = malloc(sizeof(int32_t) * (size_t)s->train.n);
    s->order = malloc(sizeof(int32_t) * (size_t)s->ntrain);
    s->y_train = malloc(sizeof(int32_t) * (size_t)s->ntrain);
    s->y_test = malloc(sizeof(int32_t) * (size_t)s->ntest);
    s->knn_curve = calloc((size_t)(o->epochs > 0 ? o->epochs : 1), sizeof(float));
    if (!s->subset || !s->order || !s->y_train || !s->y_test || !s->knn_curve)
        return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    for (int i = 0; i < s->train.n; i++)
        s->subset[i] = i;
    pk_rng data_rng = {aug_mix(o->seed, 0xDA7A)};
    if (s->ntrain < s->train.n) pk_rng_shuffle(&data_rng, s->subset, s->train.n);
    for (int i = 0; i < s->ntrain; i++)
        s->y_train[i] = s->train.labels[s->subset[i]];
    for (int i = 0; i < s->ntest; i++)
        s->y_test[i] = s->test.labels[i];

    if (o->method == PRETRAIN_RAW) {
        int64_t d = (int64_t)s->train.c * s->train.h * s->train.w;
        s->feat_train = malloc(sizeof(float) * (size_t)(s->ntrain * d));
        s->feat_test = malloc(sizeof(float) * (size_t)(s->ntest * d));
        if (!s->feat_train || !s->feat_test)
            return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
        raw_pixels(&s->train, s->subset, s->ntrain, s->feat_train);
        raw_pixels(&s->test, NULL, s->ntest, s->feat_test);
        run_metric_str(s->run, "method", "raw");
        run_metric_str(s->run, "features", "pixels in [0, 1]");
        if (dist_is_root()) PK_TRY(final_probes(s, d, 0, d, "pixels in [0, 1]", res));
        res->train_images = s->ntrain, res->test_images = s->ntest;
        return run_metrics_write(s->run);
    }

    PK_TRY(build_models(s));
    int64_t d = s->model->cfg.dim;
    /* the final probes' features: (blocks + avgpool) D columns, the k-NN's among them */
    int64_t pd = (int64_t)(o->probe_blocks + (o->probe_avgpool ? 1 : 0)) * d;
    s->feat_train = malloc(sizeof(float) * (size_t)(s->ntrain * pd));
    s->feat_test = malloc(sizeof(float) * (size_t)(s->ntest * pd));
    size_t gsz = (size_t)s->train.c * o->global_size * o->global_size;
    size_t lsz = (size_t)s->train.c * o->local_size * o->local_size;
    s->globals = malloc(sizeof(float) * gsz * 2 * (size_t)o->batch);
    s->locals = malloc(sizeof(float) * (lsz * (size_t)(o->local_crops ? o->local_crops : 1)) *
                       (size_t)o->batch);
    s->labels = malloc(sizeof(int32_t) * 2 * (size_t)o->batch);
    if (!s->feat_train || !s->feat_test || !s->globals || !s->locals || !s->labels)
        return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    run_metric_str(s->run, "device", pk_device_get_info(s->c->dev)->name);
    run_metric_str(s->run, "method", pretrain_method_name(o->method));
    run_metric_str(s->run, "arch", o->arch);
    /* the effective architecture (--dim/--depth/--heads/--patch may override the arch's) */
    char arch_json[160];
    snprintf(arch_json, sizeof arch_json,
             "{\"dim\": %d, \"depth\": %d, \"heads\": %d, \"patch\": %d, \"in_chans\": %d}",
             s->model->cfg.dim, s->model->cfg.depth, s->model->cfg.heads, s->model->cfg.patch,
             s->model->cfg.in_chans);
    run_metric_json(s->run, "vit", arch_json);
    if (o->time_ops) PK_TRY(pk_ctx_time_ops(s->c, true));

    ckpt_list ck = {0};
    pk_status st = ckpt_tensors(s, &ck);
    int64_t it0 = -1;
    if (st == PK_OK) st = run_checkpoint_load(s->run, ck.t, ck.n, &it0, NULL);
    int64_t it = it0 < 0 ? 0 : it0;
    if (it0 < 0) memset(s->acc, 0, sizeof s->acc);
    set_counters(s, it);
    int end = o->stop_after > 0 && o->stop_after < o->epochs ? o->stop_after : o->epochs;
    double train_secs = 0, train_cpu = 0;
    dist_stats comm = {0}; /* communication inside the timed training steps */
    int64_t steps_timed = 0;
    static const char *cols[] = {"epoch",        "lr",   "wd",       "momentum",
                                 "teacher_temp", "loss", "knn_top1", "train_seconds",
                                 "eval_seconds"};
    for (int e = (int)(it / (s->steps ? s->steps : 1)); st == PK_OK && e < end; e++) {
        /* each epoch's order is a function of (seed, epoch): resuming mid-epoch finds it */
        memcpy(s->order, s->subset, sizeof(int32_t) * (size_t)s->ntrain);
        pk_rng er = {aug_mix(o->seed, 0xE0C0000ull + (uint64_t)e)};
        pk_rng_shuffle(&er, s->order, s->ntrain);
        char label[64];
        snprintf(label, sizeof label, "epoch %d/%d", e + 1, o->epochs);
        run_progress_start(s->run, label, s->steps);
        double lr = 0, wd = 0, mom = s->ema.n ? teacher_momentum(s->ema.t[0]) : 0;
        double temp = dino_teacher_temp(e, o->warmup_teacher_temp, o->teacher_temp,
                                        o->warmup_teacher_temp_epochs);
        if ((st = loss_sum_put(s)) != PK_OK) break;
        for (int sidx = (int)(it - (int64_t)e * s->steps); sidx < s->steps && st == PK_OK;
             sidx++, it++) {
            double t0 = run_now(), c0 = cpu_now(), loss = 0;
            pk_step_counters_begin(&s->vulkan, s->c->dev);
            /* this rank's shard of the global batch (all of it in a world of one) */
            const int32_t *idx = s->order + (size_t)sidx * o->batch + s->shard_first;
            st = aug_dino_batch_at(pk_ctx_pool(s->c), &s->aug, &s->train, idx, s->local_batch,
                                   s->shard_first, aug_mix(o->seed ^ 0xA0A0A0A0ull, (uint64_t)it),
                                   s->globals, s->locals);
            if (st != PK_OK) break;
            dist_stats k0 = dist_stats_get();
            if (o->method == PRETRAIN_DINO) {
                mom = teacher_momentum(s->ema.t[0]);
                st = dino_step(s, e, it, &loss);
            } else {
                for (int i = 0; i < s->local_batch; i++)
                    s->labels[i] = s->labels[s->local_batch + i] = s->train.labels[idx[i]];
                st = supervised_step(s, &loss);
            }
            if (st == PK_OK) st = optimise(s, e, it, &lr, &wd);
            /* the step's work goes to the device; nothing waits for it (Vulkan) */
            if (st == PK_OK) st = pk_device_submit(s->c->dev);
            if (st != PK_OK) break;
            pk_step_counters_mark(&s->vulkan, s->c->dev);
            if (!s->loss_sum && !isfinite(loss)) {
                st = pk_error(PK_ERR_INVALID,
                              "pretrain: the loss is %g at epoch %d step %d; try a smaller --lr",
                              loss, e + 1, sidx + 1);
                break;
            }
            double dt = run_now() - t0;
            dist_stats k1 = dist_stats_get();
            comm.seconds += k1.seconds - k0.seconds, comm.bytes += k1.bytes - k0.bytes;
            comm.calls += k1.calls - k0.calls;
            if (!s->loss_sum) s->acc[0] += (float)loss;
            s->acc[1] += 1, s->acc[2] += (float)dt;
            train_secs += dt, steps_timed++;
            train_cpu += cpu_now() - c0;
            if (s->loss_sum) /* the loss is read at the epoch's end */
                run_progress_update(s->run, sidx + 1, "lr %.2e", lr);
            else
                run_progress_update(s->run, sidx + 1, "loss %.4f lr %.2e", s->acc[0] / s->acc[1],
                                    lr);
            if (run_stop_requested(s->run) && sidx + 1 < s->steps) {
                run_progress_end(s->run);
                run_info(s->run, "stop requested: saving a checkpoint at step %lld",
                         (long long)(it + 1));
                st = loss_sum_take(s, e);
                if (st == PK_OK) st = world_sums(s);
                if (st == PK_OK) st = run_checkpoint_save(s->run, it + 1, ck.t, ck.n, NULL);
                res->stopped = true;
                goto stopped;
            }
        }
        run_progress_end(s->run);
        if (st != PK_OK) break;
        double t1 = run_now(), knn = 0;
        st = loss_sum_take(s, e);
        if (st == PK_OK) st = world_sums(s);
        if (st == PK_OK) st = evaluate_knn(s, nbank, &knn);
        if (st != PK_OK) break;
        double ev = run_now() - t1;
        s->knn_curve[e] = (float)knn;
        double row[9] = {e + 1, lr, wd, mom, temp, s->acc[0] / s->acc[1], knn, s->acc[2], ev};
        st = run_log(s->run, 9, cols, row);
        run_info(s->run,
                 "epoch %d/%d: loss %.4f k-NN %.2f%% (%d-image bank), %.1f s training, "
                 "%.1f s k-NN",
                 e + 1, o->epochs, row[5], 100 * knn, nbank, row[7], ev);
        memset(s->acc, 0, sizeof s->acc);
        if (st == PK_OK) st = run_checkpoint_save(s->run, it, ck.t, ck.n, NULL);
        res->epochs_done = e + 1;
        if (st == PK_OK && run_stop_requested(s->run) && e + 1 < end) {
            res->stopped = true;
            goto stopped;
        }
    }
    if (st == PK_OK && end < o->epochs) { /* --stop-after: as a stop request at an epoch end */
        res->stopped = true;
        goto stopped;
    }
    if (st == PK_OK) {
        res->epochs_done = end;
        /* the final evaluation: every training image in the memory bank and the probe's
         * training set; the last block's class token is the k-NN's feature (with several
         * ranks each extracts its shard and the features are summed into every rank's copy) */
        bool swap = s->ema.n > 0;
        if (swap) st = ema_swap(&s->ema);
        if (st == PK_OK)
            st = extract_world(s, &s->train, s->subset, s->ntrain, o->probe_blocks,
                               o->probe_avgpool, s->feat_train);
        if (st == PK_OK)
            st = extract_world(s, &s->test, NULL, s->ntest, o->probe_blocks, o->probe_avgpool,
                               s->feat_test);
        if (swap && st == PK_OK) st = ema_swap(&s->ema);
        char what[160];
        snprintf(what, sizeof what,
                 "final-norm class tokens of the last %d blocks%s (%lld columns, the k-NN uses "
                 "the last block's)",
                 o->probe_blocks, o->probe_avgpool ? " and the mean patch token" : "",
                 (long long)pd);
        /* the probes and the backbone on rank 0 (the one that writes; the others hold the same
         * teacher and features) */
        if (st == PK_OK && dist_is_root())
            st = final_probes(s, pd, (o->probe_blocks - 1) * d, d, what, res);
        if (st == PK_OK && dist_is_root()) st = write_backbone(s);
    }
stopped:
    if (st == PK_OK) {
        res->train_images = s->ntrain, res->test_images = s->ntest;
        res->step_seconds = steps_timed ? train_secs / (double)steps_timed : 0;
        res->epoch_seconds = res->step_seconds * s->steps;
        if (o->epochs > 0) {
            double curve[4096];
            int ne = res->epochs_done < 4096 ? res->epochs_done : 4096;
            for (int e = 0; e < ne; e++)
                curve[e] = s->knn_curve[e];
            run_metric_array(s->run, "knn_top1_per_epoch", curve, ne);
        }
        run_metric(s->run, "epochs_done", res->epochs_done);
        run_metric(s->run, "seconds_per_step", res->step_seconds);
        run_metric(s->run, "seconds_per_epoch", res->epoch_seconds);
        run_metric(s->run, "cpu_seconds_per_step",
                   steps_timed ? train_cpu / (double)steps_timed : 0);
        run_metric(s->run, "train_images", s->ntrain);
        run_metric(s->run, "test_images", s->ntest);
        run_metric(s->run, "crops", s->ncrops);
        run_metric(s->run, "ranks", dist_size());
        run_metric_vulkan(s->run, s->c->dev, &s->vulkan);
        if (steps_timed > 0) {
            double k = 1.0 / (double)steps_timed;
            char dj[320];
            snprintf(dj, sizeof dj,
                     "{\"ranks\": %d, \"steps\": %lld, \"step_seconds\": %.5f, "
                     "\"comm_seconds_per_step\": %.5f, \"comm_bytes_per_step\": %.0f, "
                     "\"comm_calls_per_step\": %.2f}",
                     dist_size(), (long long)steps_timed, train_secs * k, comm.seconds * k,
                     (double)comm.bytes * k, (double)comm.calls * k);
            run_metric_json(s->run, "distributed", dj);
        }
        if (o->time_ops && s->c->op_seconds) {
            char js[8192];
            size_t n = 0;
            n += (size_t)snprintf(js + n, sizeof js - n, "{");
            for (int op = 0; op < PK_OP_COUNT && n < sizeof js - 200; op++) {
                double *t = s->c->op_seconds[op];
                if (t[0] + t[1] <= 0) continue;
                n += (size_t)snprintf(js + n, sizeof js - n, "%s\"%s\":[%.4f,%.4f,%.4f,%.4f]",
                                      n > 1 ? "," : "", pk_op_get((pk_op)op)->name, t[0], t[1],
                                      t[2], t[3]);
            }
            snprintf(js + n, sizeof js - n, "}");
            run_metric_json(s->run, "op_seconds", js);
            run_metric_str(s->run, "op_seconds_columns",
                           "forward wall, backward wall, forward CPU, backward CPU (seconds, all "
                           "steps and evaluations)");
        }
        st = run_metrics_write(s->run);
    }
    ckpt_list_free(&ck);
    return st;
}

pk_status pretrain_run(const pretrain_options *opt, pretrain_result *result) {
    pt_state s = {.o = *opt};
    pretrain_result res = {0};
    pk_status st = run_body(&s, &res);
    if (st == PK_OK && result) *result = res;
    if (s.run) run_report(s.run, st != PK_OK ? "failed" : res.stopped ? "interrupted" : "finished");
    state_free(&s);
    return st;
}
