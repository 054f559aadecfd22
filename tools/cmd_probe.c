/* cmd_probe.c - `polyak probe`: k-NN (DINO's weighted vote) and linear-probe accuracy of
 * labelled feature files written by `polyak features`; the probes are tasks/pretrain/probe.c's,
 * the same ones `polyak pretrain` reports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "commands.h"
#include "probe.h"

static void on_point(void *user, double lr, double wd, double val) {
    (void)user;
    if (val < 0)
        fprintf(stderr, "polyak probe: lr %g wd %g: diverged\n", lr, wd);
    else
        fprintf(stderr, "polyak probe: lr %g wd %g: validation %.2f%%\n", lr, wd, 100 * val);
}

/* Columns [col, col + len) of x (n, d) into a new array. */
static float *columns(const float *x, int64_t n, int64_t d, int64_t col, int64_t len) {
    float *o = malloc(sizeof(float) * (size_t)(n * len) + 1);
    if (!o) return NULL;
    for (int64_t i = 0; i < n; i++)
        memcpy(o + i * len, x + i * d + col, sizeof(float) * (size_t)len);
    return o;
}

int cmd_probe(int argc, char **argv) {
    const char *usage =
        "--features TRAIN.safetensors --test TEST.safetensors [--knn-k K] [--knn-t T]\n"
        "       [--probe sgd|adamw] [--probe-epochs E] [--probe-lr L[,L...]]\n"
        "       [--probe-wd W[,W...]] [--probe-val F] [--seed S] [--device D] [--threads T]\n"
        "Files: `polyak features` output (features (N, D), labels (N)).\n"
        "k-NN: DINO's eval_knn (k 20, T 0.07, cosine) on the final class token (the columns\n"
        "the file's knn_columns metadata names; every column for other files), the whole\n"
        "training file as the bank.\n"
        "Linear probe on every column, default `sgd`: DINO's eval_linear on precomputed\n"
        "features: Linear N(0, 0.01), SGD momentum 0.9, cosine per epoch, 100 epochs, batch\n"
        "256; the lr is chosen from 1e-3,3e-3,...,3 (weight decay 0, DINO's; --probe-wd a,b\n"
        "searches those too) by accuracy on a validation split (F, default 0.1) of the\n"
        "TRAINING file, then trained on the whole training file and scored on the test file.\n"
        "One --probe-lr value (and one --probe-wd) trains with it, no search. `adamw`: the\n"
        "earlier variant (standardised features, zeros, AdamW 1e-3, 30 epochs).";
    const char *train_path = NULL, *test_path = NULL, *device = NULL;
    long k = 20, epochs = 0, threads = 0, seed = 1;
    double t = 0.07, val = 0.1, lrs[16], wds[16];
    int nlr = 0, nwd = 0;
    probe_linear_kind kind = PROBE_LINEAR_SGD;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: polyak probe %s\n", usage);
            return 0;
        }
        if (!v) return cli_missing("probe", usage, a);
        i++;
        if (strcmp(a, "--features") == 0)
            train_path = v;
        else if (strcmp(a, "--test") == 0)
            test_path = v;
        else if (strcmp(a, "--device") == 0)
            device = v;
        else if (strcmp(a, "--probe") == 0) {
            if (strcmp(v, "sgd") && strcmp(v, "adamw"))
                return cli_usage("probe", usage, "--probe expects sgd or adamw");
            kind = strcmp(v, "sgd") ? PROBE_LINEAR_ADAMW : PROBE_LINEAR_SGD;
        } else if (strcmp(a, "--knn-k") == 0) {
            if (!cli_int("probe", a, v, 1, 1024, &k)) return 2;
        } else if (strcmp(a, "--probe-epochs") == 0) {
            if (!cli_int("probe", a, v, 1, 100000, &epochs)) return 2;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_int("probe", a, v, 1, 1024, &threads)) return 2;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_int("probe", a, v, 1, 1L << 30, &seed)) return 2;
        } else if (strcmp(a, "--knn-t") == 0) {
            if (!cli_float("probe", a, v, &t) || !(t > 0))
                return cli_usage("probe", usage, "--knn-t must be > 0");
        } else if (strcmp(a, "--probe-val") == 0) {
            if (!cli_float("probe", a, v, &val) || !(val > 0 && val < 1))
                return cli_usage("probe", usage, "--probe-val must be in (0, 1)");
        } else if (strcmp(a, "--probe-lr") == 0) {
            if (!cli_floats("probe", a, v, lrs, 16, &nlr)) return 2;
            for (int j = 0; j < nlr; j++)
                if (!(lrs[j] > 0)) return cli_usage("probe", usage, "--probe-lr must be > 0");
        } else if (strcmp(a, "--probe-wd") == 0) {
            if (!cli_floats("probe", a, v, wds, 16, &nwd)) return 2;
        } else
            return cli_usage("probe", usage, "unknown option");
    }
    if (!train_path || !test_path)
        return cli_usage("probe", usage, "--features and --test are required");
    if (nlr == 1 && nwd > 1)
        return cli_usage("probe", usage, "one --probe-lr takes one --probe-wd");
    float *xtr = NULL, *xte = NULL, *ktr = NULL, *kte = NULL;
    int32_t *ytr = NULL, *yte = NULL;
    int64_t ntr = 0, nte = 0, dtr = 0, dte = 0, kc = 0, kd = 0, kc2 = 0, kd2 = 0;
    int rc = 0;
    pk_ctx *c = NULL;
    if (probe_features_load(train_path, &xtr, &ytr, &ntr, &dtr) != PK_OK ||
        probe_features_load(test_path, &xte, &yte, &nte, &dte) != PK_OK ||
        probe_features_knn_columns(train_path, dtr, &kc, &kd) != PK_OK ||
        probe_features_knn_columns(test_path, dte, &kc2, &kd2) != PK_OK) {
        rc = cli_fail("probe", "reading features");
        goto done;
    }
    if (dtr != dte || kc != kc2 || kd != kd2) {
        fprintf(stderr,
                "polyak probe: %s has %lld columns (k-NN %lld..%lld), %s %lld (k-NN %lld..%lld); "
                "expected features of the same layout\n",
                train_path, (long long)dtr, (long long)kc, (long long)(kc + kd), test_path,
                (long long)dte, (long long)kc2, (long long)(kc2 + kd2));
        rc = 1;
        goto done;
    }
    pk_ctx_options co = {.device = device, .seed = 1, .threads = (int)threads};
    if (pk_ctx_create(&co, &c) != PK_OK) {
        rc = cli_fail("probe", "opening the device");
        goto done;
    }
    ktr = columns(xtr, ntr, dtr, kc, kd), kte = columns(xte, nte, dte, kc, kd);
    if (!ktr || !kte) {
        fprintf(stderr, "polyak probe: out of host memory\n");
        rc = 1;
        goto done;
    }
    probe_set tr = {xtr, ytr, ntr, dtr}, te = {xte, yte, nte, dte};
    probe_set ktrs = {ktr, ytr, ntr, kd}, ktes = {kte, yte, nte, kd};
    int ca = 0, cb = 0;
    double knn = 0;
    probe_linear_options po = {
        .kind = kind, .epochs = (int)epochs, .val_fraction = val, .seed = (uint64_t)seed};
    if (nlr == 1)
        po.lr = lrs[0], po.weight_decay = nwd ? wds[0] : 0;
    else if (nlr > 1)
        po.lr_grid = lrs, po.n_lr = nlr;
    if (nlr != 1 && nwd > 0) po.wd_grid = wds, po.n_wd = nwd;
    probe_linear_report r = {.on_point = on_point};
    double t0 = cli_now(), t1 = 0;
    if (probe_classes(&tr, &ca) != PK_OK || probe_classes(&te, &cb) != PK_OK ||
        probe_knn(c, &ktrs, &ktes, ca > cb ? ca : cb, (int)k, t, &knn) != PK_OK ||
        (t1 = cli_now(), false) ||
        probe_linear_run(c, &tr, &te, ca > cb ? ca : cb, &po, &r) != PK_OK) {
        rc = cli_fail("probe", "probing");
        goto done;
    }
    printf("k-NN (k %ld, T %g, %lld features) top-1 %.2f%% (%.1f s); linear probe (%s) top-1 "
           "%.2f%% (train %.2f%%, lr %g wd %g",
           k, t, (long long)kd, 100 * knn, t1 - t0, kind == PROBE_LINEAR_SGD ? "sgd" : "adamw",
           100 * r.test_acc, 100 * r.train_acc, r.lr, r.wd);
    if (r.searched)
        printf(" chosen from %d points by validation %.2f%% on %lld held-out training rows",
               r.searched, 100 * r.val_acc, (long long)r.val_rows);
    printf(", %d epochs, %.1f s); %lld train / %lld test rows of %lld features\n", r.epochs,
           cli_now() - t1, (long long)ntr, (long long)nte, (long long)dtr);
done:
    pk_ctx_destroy(c);
    free(xtr), free(xte), free(ytr), free(yte), free(ktr), free(kte);
    return rc;
}
