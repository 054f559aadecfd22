/* optim_kernels.h - fused optimizer updates over plain float arrays: SGD, AdamW, Adam, AdamP,
 * SGDP, SPAM and Stable-SPAM. One call updates a whole contiguous range (an arena block or a
 * parameter group's range) in one streaming pass (two or three for the optimizers that need
 * per-tensor reductions), multi-threaded over elements with the CPU worker pool.
 *
 * Owns: the update arithmetic and its hyper-parameter defaults. Leaves to others: parameter
 * groups, arenas, state allocation and checkpoints (the optimizer objects), lr schedules
 * (schedule.h) and the Vulkan dispatches (shaders/optim/).
 *
 * Conventions shared by every kernel:
 * - `step` is the 1-based number of the step being taken (the caller counts; checkpoints store
 *   it). Bias corrections and resets are functions of it, so a resumed run is bit-identical.
 * - Hyper-parameters are doubles, as Python floats: scalars such as 1 - beta1 or lr / bc1 are
 *   computed in double and rounded to float once, then the per-element arithmetic is float in
 *   the operation order (and fused multiply-adds) of PyTorch 1.13's CPU kernels.
 * - Hyper-parameter structs are meant to be written with designated initialisers; a field
 *   documented "0: default" takes the paper/PyTorch default when left zero.
 * - State arrays (momentum, exp_avg, ...) start zeroed; kernels never allocate them. */
#ifndef POLYAK_OPTIM_KERNELS_H
#define POLYAK_OPTIM_KERNELS_H
#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef struct pk_pool pk_pool;

/* One tensor inside a flat range, for the optimizers with per-tensor reductions. A tensor of
 * `ndim` >= 2 dims is seen as `rows` = size(0) by `cols` = product of the other sizes (the
 * clovaai/AdamP "channel view"); a 0/1-D tensor has ndim <= 1, rows = 1, cols = numel. */
typedef struct pk_optim_segment {
    int64_t offset; /* first element, relative to the arrays passed to the kernel */
    int64_t rows, cols;
    int ndim;
} pk_optim_segment;

/* torch.optim.SGD. Zero fields are torch's defaults (momentum 0, dampening 0, wd 0). */
typedef struct pk_sgd_params {
    double lr;
    double momentum;
    double dampening;
    double weight_decay; /* L2: added to the gradient, as torch.optim.SGD */
    bool nesterov;
} pk_sgd_params;

/* torch.optim.AdamW / Adam. */
typedef struct pk_adamw_params {
    double lr;            /* 0: 1e-3 */
    double beta1, beta2;  /* 0: 0.9, 0.999 (a beta of exactly 0 is not expressible) */
    double eps;           /* 0: 1e-8; 3DGS uses 1e-15 */
    double weight_decay;  /* decoupled for AdamW (p *= 1 - lr*wd), L2 for Adam; 0 means none */
    bool eps_inside_sqrt; /* denominator sqrt(v_hat + eps) instead of sqrt(v_hat) + eps */
} pk_adamw_params;

/* clovaai/AdamP AdamP and SGDP (adamp/adamp.py, adamp/sgdp.py). */
typedef struct pk_adamp_params {
    double lr;                  /* 0: 1e-3 */
    double beta1, beta2;        /* AdamP; 0: 0.9, 0.999 */
    double momentum, dampening; /* SGDP; 0 means 0 (as the reference code) */
    double eps;          /* 0: 1e-8 (both the Adam eps and the cosine/norm eps, as the code) */
    double weight_decay; /* decoupled; SGDP divides it by (1 - momentum) as the code does */
    double delta;        /* 0: 0.1, projection when max |cos| < delta / sqrt(cols) */
    double wd_ratio;     /* 0: 0.1, weight-decay factor on projected tensors */
    bool nesterov;
} pk_adamp_params;

/* SPAM (TianjinYellow/SPAM-Optimizer), dense (density 1, no random masks). */
typedef struct pk_spam_params {
    double lr;           /* 0: 1e-3 */
    double beta1, beta2; /* 0: 0.9, 0.999 */
    double eps;          /* 0: 1e-6 (the SPAM code's default) */
    double weight_decay; /* decoupled, applied after the step as the code does */
    double threshold;    /* 0: 5000, clip where g^2 > threshold * v */
    bool no_clip;        /* disables spike clipping (the code's threshold = 0) */
    int delta_t;         /* 0: 500, moments reset every delta_t steps */
    int warmup;          /* 0: 150, cosine warmup of the step scale after each reset */
    int grad_accu;       /* 0: 20, no clipping in the first grad_accu steps after a reset */
} pk_spam_params;

/* Stable-SPAM (TianjinYellow/StableSPAM), without the optional beta1 cosine decay. */
typedef struct pk_stable_spam_params {
    double lr;           /* 0: 1e-3 */
    double beta1, beta2; /* 0: 0.9, 0.999 */
    double gamma1;       /* 0: 0.7, EMA of the gradient norm */
    double gamma2;       /* 0: 0.9, EMA of the squared gradient norm */
    double gamma3;       /* 0: 0.999, EMA of max |g| (the code's `theta`) */
    double eps;          /* 0: 1e-8 */
    double weight_decay; /* decoupled, applied before the step */
    int delta_t;         /* 0: 1000, reset m, v and the Adam step every delta_t steps */
} pk_stable_spam_params;

/* Per-tensor scalar state of Stable-SPAM (zero-initialised, one per segment). */
typedef struct pk_stable_spam_tensor_state {
    float m_norm, v_norm, m_max;
} pk_stable_spam_tensor_state;

/* Fills the zero fields of `p` with their defaults (what every kernel does on entry). */
pk_adamw_params optim_adamw_defaults(pk_adamw_params p);
pk_adamp_params optim_adamp_defaults(pk_adamp_params p);
pk_spam_params optim_spam_defaults(pk_spam_params p);
pk_stable_spam_params optim_stable_spam_defaults(pk_stable_spam_params p);

/* torch.optim.SGD step over n elements: param (n), grad (n), momentum buffer (n; unused and
 * may be NULL when momentum = 0). Step 1 initialises the buffer to the gradient. */
pk_status optim_sgd_step(pk_pool *pool, const pk_sgd_params *hp, int64_t step, int64_t n,
                         float *param, const float *grad, float *buf);

/* torch.optim.AdamW step over n elements with first/second moments exp_avg, exp_avg_sq. */
pk_status optim_adamw_step(pk_pool *pool, const pk_adamw_params *hp, int64_t step, int64_t n,
                           float *param, const float *grad, float *exp_avg, float *exp_avg_sq);

/* torch.optim.Adam step (weight decay as L2 added to the gradient). */
pk_status optim_adam_step(pk_pool *pool, const pk_adamw_params *hp, int64_t step, int64_t n,
                          float *param, const float *grad, float *exp_avg, float *exp_avg_sq);

/* AdamP step over the tensors `segs` (nseg of them) inside the arrays. `projected`, when not
 * NULL, receives per segment 0 (no projection), 1 (per-row) or 2 (whole tensor). */
pk_status optim_adamp_step(pk_pool *pool, const pk_adamp_params *hp, int64_t step,
                           const pk_optim_segment *segs, int nseg, float *param, const float *grad,
                           float *exp_avg, float *exp_avg_sq, int *projected);

/* SGDP step over the tensors `segs`; `buf` is the momentum buffer (zero at step 1, as the
 * reference code, which has no first-step special case). `projected` as for AdamP. */
pk_status optim_sgdp_step(pk_pool *pool, const pk_adamp_params *hp, int64_t step,
                          const pk_optim_segment *segs, int nseg, float *param, const float *grad,
                          float *buf, int *projected);

/* SPAM step over n elements. Returns in *clipped (may be NULL) how many gradients were
 * clipped as spikes. The grad array is not modified. */
pk_status optim_spam_step(pk_pool *pool, const pk_spam_params *hp, int64_t step, int64_t n,
                          float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                          int64_t *clipped);

/* Returns SPAM's step scale (cosine warmup after each reset) for 1-based `step`. */
double optim_spam_scale(const pk_spam_params *hp, int64_t step);

/* Stable-SPAM step over the tensors `segs`; `ts` holds one per-tensor state per segment. */
pk_status optim_stable_spam_step(pk_pool *pool, const pk_stable_spam_params *hp, int64_t step,
                                 const pk_optim_segment *segs, int nseg, float *param,
                                 const float *grad, float *exp_avg, float *exp_avg_sq,
                                 pk_stable_spam_tensor_state *ts);

#endif
