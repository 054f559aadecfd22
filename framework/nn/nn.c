/* nn.c - linear, conv2d and batch-norm modules: parameter creation with PyTorch's default
 * initialisation, and forwards that call the ops. */
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nn_name(pk_ctx *c, const char *prefix, const char *suffix) {
    return pk_ctx_name(c, prefix, suffix);
}

pk_status nn_init_uniform(tensor *t, double bound, pk_rng *rng) {
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!h) return pk_error(PK_ERR_NOMEM, "init: out of host memory");
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)((2.0 * pk_rng_uniform(rng) - 1.0) * bound);
    pk_status s = tensor_upload(t, h);
    free(h);
    return s;
}

pk_status nn_linear_init(pk_ctx *c, const char *prefix, int64_t in, int64_t out, bool bias,
                         pk_rng *rng, nn_linear *l) {
    memset(l, 0, sizeof *l);
    l->w = pk_param_new(c, nn_name(c, prefix, "weight"), 2, (int64_t[]){out, in});
    if (!l->w) return PK_ERR_NOMEM;
    /* kaiming_uniform(a=sqrt(5)) gives bound 1/sqrt(fan_in), as does the bias init */
    double bound = 1.0 / sqrt((double)in);
    PK_TRY(nn_init_uniform(l->w, bound, rng));
    if (bias) {
        l->b = pk_param_new(c, nn_name(c, prefix, "bias"), 1, (int64_t[]){out});
        if (!l->b) return PK_ERR_NOMEM;
        PK_TRY(nn_init_uniform(l->b, bound, rng));
    }
    return PK_OK;
}

tensor *nn_linear_forward(pk_ctx *c, const nn_linear *l, tensor *x) {
    return pk_linear(c, x, l->w, l->b);
}

pk_status nn_conv2d_init(pk_ctx *c, const char *prefix, int64_t cin, int64_t cout, int k,
                         int stride, int pad, int groups, bool bias, pk_rng *rng, nn_conv2d *l) {
    memset(l, 0, sizeof *l);
    if (groups < 1 || cin % groups)
        return pk_error(PK_ERR_INVALID, "%s: %lld input channels do not split into %d groups",
                        prefix, (long long)cin, groups);
    l->stride = stride;
    l->pad = pad;
    l->groups = groups;
    l->w = pk_param_new(c, nn_name(c, prefix, "weight"), 4, (int64_t[]){cout, cin / groups, k, k});
    if (!l->w) return PK_ERR_NOMEM;
    double bound = 1.0 / sqrt((double)(cin / groups * k * k));
    PK_TRY(nn_init_uniform(l->w, bound, rng));
    if (bias) {
        l->b = pk_param_new(c, nn_name(c, prefix, "bias"), 1, (int64_t[]){cout});
        if (!l->b) return PK_ERR_NOMEM;
        PK_TRY(nn_init_uniform(l->b, bound, rng));
    }
    return PK_OK;
}

tensor *nn_conv2d_forward(pk_ctx *c, const nn_conv2d *l, tensor *x) {
    return pk_conv2d(c, x, l->w, l->b, l->stride, l->pad, l->groups);
}

pk_status nn_batchnorm_init(pk_ctx *c, const char *prefix, int64_t channels, nn_batchnorm *l) {
    memset(l, 0, sizeof *l);
    l->momentum = 0.1f; /* PyTorch's default */
    l->eps = 1e-5f;
    l->gamma = pk_param_new(c, nn_name(c, prefix, "weight"), 1, (int64_t[]){channels});
    l->beta = pk_param_new(c, nn_name(c, prefix, "bias"), 1, (int64_t[]){channels});
    l->running_mean = tensor_new(c->params, PK_F32, 1, (int64_t[]){channels});
    l->running_var = tensor_new(c->params, PK_F32, 1, (int64_t[]){channels});
    if (!l->gamma || !l->beta || !l->running_mean || !l->running_var) return PK_ERR_NOMEM;
    l->running_mean->name = nn_name(c, prefix, "running_mean");
    l->running_var->name = nn_name(c, prefix, "running_var");
    PK_TRY(tensor_fill(l->gamma, 1.0f));
    PK_TRY(tensor_fill(l->beta, 0.0f));
    PK_TRY(tensor_fill(l->running_mean, 0.0f));
    return tensor_fill(l->running_var, 1.0f);
}

tensor *nn_batchnorm_forward(pk_ctx *c, const nn_batchnorm *l, tensor *x) {
    return pk_batchnorm(c, x, l->gamma, l->beta, l->running_mean, l->running_var, l->momentum,
                        l->eps);
}

tensor *nn_batchnorm_forward_act(pk_ctx *c, const nn_batchnorm *l, tensor *x, tensor *residual,
                                 bool relu) {
    return pk_batchnorm_act(c, x, l->gamma, l->beta, l->running_mean, l->running_var, l->momentum,
                            l->eps, residual, relu);
}
