/* cmd_mlp.c - `polyak mlp`: trains a two-layer MLP (784-256-10, ReLU) on Fashion-MNIST with
 * SGD + momentum and reports test accuracy: the runtime's end-to-end smoke test on real data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "cli.h"
#include "commands.h"
#include "dataset.h"
#include "nn/nn.h"
#include "optim/optimizer.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

typedef struct mlp {
    nn_linear l1, l2;
} mlp;

static tensor *mlp_forward(pk_ctx *c, const mlp *m, tensor *x) {
    return nn_linear_forward(c, &m->l2, pk_relu(c, nn_linear_forward(c, &m->l1, x)));
}

/* Copies images idx[0..b) as floats in [0, 1] into host buffer x (b, 784), labels into y. */
static void gather_batch(const pk_dataset *ds, const int32_t *idx, int b, float *x, int32_t *y) {
    int d = ds->h * ds->w * ds->c;
    for (int i = 0; i < b; i++) {
        const uint8_t *src = ds->images + (size_t)idx[i] * (size_t)d;
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] = (float)src[j] * (1.0f / 255.0f);
        y[i] = ds->labels[idx[i]];
    }
}

/* Fraction of the test set classified correctly. */
static pk_status evaluate(pk_ctx *c, const mlp *m, const pk_dataset *ds, int batch, double *acc) {
    int d = ds->h * ds->w * ds->c, correct = 0;
    float *x = malloc(sizeof(float) * (size_t)batch * (size_t)d);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch),
            *idx = malloc(sizeof(int32_t) * (size_t)batch);
    float *logits = malloc(sizeof(float) * (size_t)batch * 10);
    pk_status s = x && y && idx && logits ? PK_OK : pk_error(PK_ERR_NOMEM, "out of memory");
    bool old = pk_set_grad_enabled(c, false);
    for (int at = 0; at < ds->n && s == PK_OK; at += batch) {
        int b = ds->n - at < batch ? ds->n - at : batch;
        for (int i = 0; i < b; i++)
            idx[i] = at + i;
        gather_batch(ds, idx, b, x, y);
        if ((s = pk_step_begin(c)) != PK_OK) break;
        tensor *xt = tensor_new(c->step, PK_F32, 2, (int64_t[]){b, d});
        if (!xt || (s = tensor_upload(xt, x)) != PK_OK) break;
        tensor *out = mlp_forward(c, m, xt);
        if (!out || (s = tensor_download(out, logits)) != PK_OK) {
            s = s ? s : PK_ERR_INVALID;
            break;
        }
        for (int i = 0; i < b; i++) {
            int best = 0;
            for (int k = 1; k < 10; k++)
                if (logits[i * 10 + k] > logits[i * 10 + best]) best = k;
            correct += best == y[i];
        }
    }
    pk_set_grad_enabled(c, old);
    *acc = ds->n > 0 ? (double)correct / ds->n : 0.0;
    free(x), free(y), free(idx), free(logits);
    return s;
}

int cmd_mlp(int argc, char **argv) {
    const char *usage = "[--data DIR] [--epochs N] [--batch B] [--lr LR] [--device D] [--seed S]";
    if (cli_wants_help(argc, argv)) {
        printf("usage: polyak mlp %s\n", usage);
        return 0;
    }
    const char *data = FMNIST, *device = NULL;
    long epochs = 1, batch = 128, seed = 1;
    double lr = 0.05;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool known = strcmp(a, "--data") == 0 || strcmp(a, "--device") == 0 ||
                     strcmp(a, "--epochs") == 0 || strcmp(a, "--batch") == 0 ||
                     strcmp(a, "--seed") == 0 || strcmp(a, "--lr") == 0;
        if (!known) return cli_usage("mlp", usage, "unknown option");
        if (!v) return cli_missing("mlp", usage, a);
        i++;
        if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--device") == 0)
            device = v;
        else if (strcmp(a, "--epochs") == 0) {
            if (!cli_int("mlp", a, v, 1, 1000, &epochs)) return cli_usage("mlp", usage, NULL);
        } else if (strcmp(a, "--batch") == 0) {
            if (!cli_int("mlp", a, v, 1, 65536, &batch)) return cli_usage("mlp", usage, NULL);
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_int("mlp", a, v, 0, 1L << 30, &seed)) return cli_usage("mlp", usage, NULL);
        } else if (!cli_float("mlp", a, v, &lr) || !isfinite(lr) || !(lr > 0)) {
            /* strtod accepts "nan", "inf" and negatives; none is a learning rate */
            char why[160];
            snprintf(why, sizeof why, "--lr expects a positive finite number, got '%s'", v);
            return cli_usage("mlp", usage, why);
        }
    }
    char ti[1024], tl[1024], vi[1024], vl[1024];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte.gz", data);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte.gz", data);
    snprintf(vi, sizeof vi, "%s/t10k-images-idx3-ubyte.gz", data);
    snprintf(vl, sizeof vl, "%s/t10k-labels-idx1-ubyte.gz", data);
    pk_dataset train = {0}, test = {0};
    if (idx_load(ti, tl, &train) != PK_OK) return cli_fail("mlp", "loading the training set");
    if (idx_load(vi, vl, &test) != PK_OK) {
        dataset_free(&train);
        return cli_fail("mlp", "loading the test set");
    }
    pk_ctx *c = NULL;
    pk_ctx_options co = {.device = device, .seed = (uint64_t)seed};
    int rc = 1;
    pk_optimizer *opt = NULL;
    float *x = NULL;
    int32_t *y = NULL, *order = NULL;
    if (pk_ctx_create(&co, &c) != PK_OK) {
        rc = cli_fail("mlp", "opening the device");
        goto done;
    }
    fprintf(stderr, "polyak mlp: %d training and %d test images of %dx%d, device %s\n", train.n,
            test.n, train.w, train.h, pk_device_get_info(c->dev)->name);
    int d = train.h * train.w * train.c;
    mlp m;
    pk_rng rng = {(uint64_t)seed};
    if (nn_linear_init(c, "fc1", d, 256, true, &rng, &m.l1) != PK_OK ||
        nn_linear_init(c, "fc2", 256, 10, true, &rng, &m.l2) != PK_OK) {
        rc = cli_fail("mlp", "creating the model");
        goto done;
    }
    tensor *params[] = {m.l1.w, m.l1.b, m.l2.w, m.l2.b};
    pk_param_group g = {.name = "all", .params = params, .n = 4, .lr = lr};
    pk_optim_options oo = {.kind = PK_OPTIM_SGD, .sgd = {.momentum = 0.9}};
    if (optim_create(c, &oo, &g, 1, &opt) != PK_OK) {
        rc = cli_fail("mlp", "creating the optimizer");
        goto done;
    }
    x = malloc(sizeof(float) * (size_t)batch * (size_t)d);
    y = malloc(sizeof(int32_t) * (size_t)batch);
    order = malloc(sizeof(int32_t) * (size_t)train.n);
    if (!x || !y || !order) goto done;
    for (int i = 0; i < train.n; i++)
        order[i] = i;
    int steps_per_epoch = (int)(train.n / batch);
    double t0 = cli_now();
    for (long e = 0; e < epochs; e++) {
        pk_rng_shuffle(&rng, order, train.n);
        cli_progress p;
        cli_progress_start(&p, "epoch", steps_per_epoch);
        double loss_sum = 0;
        for (int s = 0; s < steps_per_epoch; s++) {
            gather_batch(&train, order + (size_t)s * (size_t)batch, (int)batch, x, y);
            tensor *xt, *yt, *loss;
            float lv = 0;
            if (pk_step_begin(c) != PK_OK ||
                !(xt = tensor_new(c->step, PK_F32, 2, (int64_t[]){batch, d})) ||
                !(yt = tensor_new(c->step, PK_I32, 1, (int64_t[]){batch})) ||
                tensor_upload(xt, x) != PK_OK || tensor_upload(yt, y) != PK_OK ||
                !(loss = pk_cross_entropy(c, mlp_forward(c, &m, xt), yt, 0, 0)) ||
                optim_zero_grad(opt) != PK_OK || autograd_backward(c, loss) != PK_OK ||
                optim_step(opt) != PK_OK || tensor_download(loss, &lv) != PK_OK) {
                rc = cli_fail("mlp", "training step");
                goto done;
            }
            loss_sum += lv;
            char extra[64];
            snprintf(extra, sizeof extra, "loss %.4f", loss_sum / (s + 1));
            cli_progress_update(&p, s + 1, extra);
        }
        cli_progress_end(&p);
    }
    double train_s = cli_now() - t0, acc = 0;
    if (evaluate(c, &m, &test, 1000, &acc) != PK_OK) {
        rc = cli_fail("mlp", "evaluating");
        goto done;
    }
    printf("Fashion-MNIST MLP: %ld epoch(s) in %.1f s on %s; test accuracy %.2f%%\n", epochs,
           train_s, pk_device_get_info(c->dev)->name, 100.0 * acc);
    rc = 0;
done:
    free(x), free(y), free(order);
    optim_destroy(opt);
    pk_ctx_destroy(c);
    dataset_free(&train);
    dataset_free(&test);
    return rc;
}
