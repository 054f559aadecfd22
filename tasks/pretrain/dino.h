/* dino.h - the parts of DINO (Caron et al. 2021, facebookresearch/dino) that are not a
 * backbone: the projection head, the loss with teacher centring and sharpening, and the
 * schedules of main_dino.py / utils.py, each a pure function of the step or epoch.
 *
 * Head (vision_transformer.py DINOHead, use_bn False, nlayers 3): mlp.0 Linear(D, hidden),
 * GELU (erf), mlp.2 Linear(hidden, hidden), GELU, mlp.4 Linear(hidden, bottleneck);
 * L2-normalise; last_layer = weight_norm(Linear(bottleneck, K, bias False)) with weight_g
 * fixed to 1 (norm_last_layer True), so its weight is each row of weight_v divided by its
 * norm: pk_l2_normalize over the rows of weight_v, on the tape, so weight_v gets the
 * gradient weight_norm would give it.
 *
 * Owns: head parameters and forward, the loss on the tape (both backends), the centre update,
 * the temperature / cosine schedules. Leaves to pretrain_run.c: the backbones, the EMA
 * teacher (framework/teacher), optimisers, data. */
#ifndef POLYAK_DINO_H
#define POLYAK_DINO_H
#include "nn/nn.h"

/* Sizes of a DINO head. */
typedef struct dino_head_config {
    int in_dim;     /* backbone embedding D */
    int hidden;     /* 2048 in DINO */
    int bottleneck; /* 256 in DINO */
    int out_dim;    /* K prototypes (65536 for ImageNet) */
} dino_head_config;

typedef struct dino_head {
    dino_head_config cfg;
    nn_linear fc1, fc2, fc3; /* mlp.0, mlp.2, mlp.4 */
    tensor *last_v;          /* last_layer.weight_v (K, bottleneck) */
} dino_head;

/* Creates the head's parameters named `prefix`.mlp.{0,2,4}.{weight,bias} and
 * `prefix`.last_layer.weight_v, initialised as DINOHead: trunc_normal(std .02) weights and
 * zero biases for the MLP, PyTorch's Linear default for weight_v. */
pk_status dino_head_create(pk_ctx *c, const dino_head_config *cfg, const char *prefix, pk_rng *rng,
                           dino_head *h);

/* The head: x (N, D) -> logits (N, K). */
tensor *dino_head_forward(pk_ctx *c, const dino_head *h, tensor *x);

/* DINO's loss. student (ncrops * B, K): crop-major (rows [v B, (v + 1) B) are crop v, the
 * first two the global crops); teacher (2 B, K), the teacher's logits of the two global
 * crops (not differentiated); center (K). Returns, shape (1,),
 *   (1 / (2 ncrops - 2)) sum_{a < 2, v != a} mean_b -sum_k softmax((t_a - c) / tau_t)
 *   log_softmax(s_v / tau_s),
 * the pairs summed as q_1 . ls_0 + q_0 . ls_1 + (q_0 + q_1) . ls_v for the local crops. */
tensor *dino_loss(pk_ctx *c, tensor *student, tensor *teacher, tensor *center, int ncrops,
                  double tau_s, double tau_t);

/* center <- m center + (1 - m) mean over rows of teacher (2 B, K), on the device (DINO:
 * m = 0.9, updated after the loss). center must be a persistent contiguous (K) tensor. */
pk_status dino_center_update(pk_ctx *c, tensor *center, tensor *teacher, double m);

/* dino_center_update with the mean over the teacher rows of every rank (tasks/common/dist.h:
 * one allreduce of K floats, as DINO's all_reduce of the batch centre); in a world of one it
 * is dino_center_update itself. */
pk_status dino_center_update_world(pk_ctx *c, tensor *center, tensor *teacher, double m);

/* The teacher temperature of epoch e: np.linspace(warm, final, warm_epochs) then final. */
double dino_teacher_temp(int e, double warm, double final, int warm_epochs);

/* utils.cosine_scheduler(base, final, epochs, niter, warmup_epochs, start_warmup 0) at
 * iteration `it`: linspace(0, base, W) for it < W = warmup_epochs * niter, then
 * final + (base - final) (1 + cos(pi i / (epochs niter - W))) / 2 with i = it - W. */
double dino_cosine(double base, double final, int epochs, int64_t niter, int warmup_epochs,
                   int64_t it);

/* The same schedule in steps: `total` iterations, the first `warmup` of them linear from 0. */
double dino_cosine_steps(double base, double final, int64_t total, int64_t warmup, int64_t it);

#endif
