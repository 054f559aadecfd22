/* nn.h - modules built from ops: each holds its parameters (views into the context's
 * parameter arena, named for checkpoints) and a forward function. Initialisation follows
 * PyTorch's defaults (kaiming-uniform with a = sqrt(5) for weights, fan-in uniform bias), so
 * models start where the papers' code starts. */
#ifndef POLYAK_NN_H
#define POLYAK_NN_H
#include "ops/ops.h"
#include "rng.h"

typedef struct nn_linear {
    tensor *w; /* (out, in) */
    tensor *b; /* (out) or NULL */
} nn_linear;

/* Creates a linear layer `prefix`.weight / `prefix`.bias (bias optional). Names are copied. */
pk_status nn_linear_init(pk_ctx *c, const char *prefix, int64_t in, int64_t out, bool bias,
                         pk_rng *rng, nn_linear *l);

/* y (..., out) = x (..., in) W^T + b. */
tensor *nn_linear_forward(pk_ctx *c, const nn_linear *l, tensor *x);

typedef struct nn_conv2d {
    tensor *w; /* (cout, cin / groups, k, k) */
    tensor *b; /* (cout) or NULL */
    int stride, pad, groups;
} nn_conv2d;

/* Creates a k x k convolution `prefix`.weight / `prefix`.bias. */
pk_status nn_conv2d_init(pk_ctx *c, const char *prefix, int64_t cin, int64_t cout, int k,
                         int stride, int pad, int groups, bool bias, pk_rng *rng, nn_conv2d *l);

/* y (N, cout, OH, OW) = conv(x (N, cin, H, W)). */
tensor *nn_conv2d_forward(pk_ctx *c, const nn_conv2d *l, tensor *x);

typedef struct nn_batchnorm {
    tensor *gamma, *beta;               /* (C) parameters */
    tensor *running_mean, *running_var; /* (C) buffers (teachers copy them, never average) */
    float momentum, eps;
} nn_batchnorm;

/* Creates a batch norm over C channels (gamma 1, beta 0, running mean 0, var 1). Buffers live
 * in the parameter arena without gradients. */
pk_status nn_batchnorm_init(pk_ctx *c, const char *prefix, int64_t channels, nn_batchnorm *l);

/* Batch normalisation (batch statistics when c->training, running ones otherwise). */
tensor *nn_batchnorm_forward(pk_ctx *c, const nn_batchnorm *l, tensor *x);

/* relu(batchnorm(x) + residual) in one op (pk_batchnorm_act): residual NULL for none, relu
 * false for none. */
tensor *nn_batchnorm_forward_act(pk_ctx *c, const nn_batchnorm *l, tensor *x, tensor *residual,
                                 bool relu);

/* Fills a tensor with uniform values in [-bound, bound) drawn from rng (host generated). */
pk_status nn_init_uniform(tensor *t, double bound, pk_rng *rng);

/* Returns "prefix.suffix" owned by the context (parameter names outlive the builder's
 * buffers and are freed with the context). */
const char *nn_name(pk_ctx *c, const char *prefix, const char *suffix);

#endif
