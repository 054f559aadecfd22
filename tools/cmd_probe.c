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

int cmd_probe(int argc, char **argv) {
    const char *usage = "--features TRAIN.safetensors --test TEST.safetensors [--knn-k K]\n"
                        "       [--knn-t T] [--probe-epochs E] [--device D] [--threads T]\n"
                        "Files: `polyak features` output (features (N, D), labels (N)).";
    const char *train_path = NULL, *test_path = NULL, *device = NULL;
    long k = 20, epochs = 30, threads = 0;
    double t = 0.07;
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
        else if (strcmp(a, "--knn-k") == 0) {
            if (!cli_int("probe", a, v, 1, 1024, &k)) return 2;
        } else if (strcmp(a, "--probe-epochs") == 0) {
            if (!cli_int("probe", a, v, 1, 100000, &epochs)) return 2;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_int("probe", a, v, 1, 1024, &threads)) return 2;
        } else if (strcmp(a, "--knn-t") == 0) {
            if (!cli_float("probe", a, v, &t) || !(t > 0))
                return cli_usage("probe", usage, "--knn-t must be > 0");
        } else
            return cli_usage("probe", usage, "unknown option");
    }
    if (!train_path || !test_path)
        return cli_usage("probe", usage, "--features and --test are required");
    float *xtr = NULL, *xte = NULL;
    int32_t *ytr = NULL, *yte = NULL;
    int64_t ntr = 0, nte = 0, dtr = 0, dte = 0;
    int rc = 0;
    pk_ctx *c = NULL;
    if (probe_features_load(train_path, &xtr, &ytr, &ntr, &dtr) != PK_OK ||
        probe_features_load(test_path, &xte, &yte, &nte, &dte) != PK_OK) {
        rc = cli_fail("probe", "reading features");
        goto done;
    }
    pk_ctx_options co = {.device = device, .seed = 1, .threads = (int)threads};
    if (pk_ctx_create(&co, &c) != PK_OK) {
        rc = cli_fail("probe", "opening the device");
        goto done;
    }
    probe_set tr = {xtr, ytr, ntr, dtr}, te = {xte, yte, nte, dte};
    int ca = 0, cb = 0;
    double knn = 0, lin = 0, lin_train = 0;
    probe_linear_options po = {.epochs = (int)epochs};
    if (probe_classes(&tr, &ca) != PK_OK || probe_classes(&te, &cb) != PK_OK ||
        probe_knn(c, &tr, &te, ca > cb ? ca : cb, (int)k, t, &knn) != PK_OK ||
        probe_linear(c, &tr, &te, ca > cb ? ca : cb, &po, &lin, &lin_train) != PK_OK) {
        rc = cli_fail("probe", "probing");
        goto done;
    }
    printf("k-NN (k %ld, T %g) top-1 %.2f%%, linear probe top-1 %.2f%% (train %.2f%%, %ld "
           "epochs); %lld train / %lld test rows of %lld features\n",
           k, t, 100 * knn, 100 * lin, 100 * lin_train, epochs, (long long)ntr, (long long)nte,
           (long long)dtr);
done:
    pk_ctx_destroy(c);
    free(xtr), free(xte), free(ytr), free(yte);
    return rc;
}
