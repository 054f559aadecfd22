/* optimizer.h - optimizer objects: parameter groups with their own learning rate and weight
 * decay, state in the context's optimizer-state arena, and one fused update per contiguous
 * run of parameters (parameters allocated one after another share a run, so a model's step is
 * a handful of kernel calls, not one per tensor). The arithmetic is optim_kernels.h's. */
#ifndef POLYAK_OPTIMIZER_H
#define POLYAK_OPTIMIZER_H
#include "backend.h"
#include "optim/optim_kernels.h"

typedef enum pk_optim_kind {
    PK_OPTIM_SGD = 0,
    PK_OPTIM_ADAMW,
    PK_OPTIM_ADAM,
    PK_OPTIM_ADAMP,
    PK_OPTIM_SGDP,
    PK_OPTIM_SPAM,
    PK_OPTIM_STABLE_SPAM
} pk_optim_kind;

/* The optimizer and its hyper-parameters (only the struct of `kind` is read; each group's lr
 * and weight decay override the struct's). */
typedef struct pk_optim_options {
    pk_optim_kind kind;
    pk_sgd_params sgd;
    pk_adamw_params adamw; /* ADAMW and ADAM */
    pk_adamp_params adamp; /* ADAMP and SGDP */
    pk_spam_params spam;
    pk_stable_spam_params stable_spam;
} pk_optim_options;

/* A group of parameters sharing a learning rate and weight decay. */
typedef struct pk_param_group {
    const char *name;
    tensor *const *params;
    int n;
    double lr;
    double weight_decay;
} pk_param_group;

typedef struct pk_optimizer pk_optimizer;

/* Creates an optimizer over the groups; state tensors are allocated zeroed in c->state (on
 * Vulkan with the device tables its kind needs, so that steps never wait for the device). */
pk_status optim_create(pk_ctx *c, const pk_optim_options *opt, const pk_param_group *groups,
                       int ngroups, pk_optimizer **out);

/* Frees the optimizer (its state memory stays in the arena until the context goes); NULL ok. */
void optim_destroy(pk_optimizer *o);

/* Sets the learning rate of group g (schedules call this every step). */
void optim_set_lr(pk_optimizer *o, int g, double lr);

/* Sets the weight decay of group g (DINO's schedule changes it every step). */
void optim_set_weight_decay(pk_optimizer *o, int g, double wd);

/* Returns the learning rate of group g. */
double optim_get_lr(const pk_optimizer *o, int g);

/* Applies one update from the parameters' gradients (does not zero them). */
pk_status optim_step(pk_optimizer *o);

/* Zeroes every parameter gradient of the optimizer, one fill per run. */
pk_status optim_zero_grad(pk_optimizer *o);

/* Number of steps taken (checkpoints store it; updates depend on it). */
int64_t optim_steps(const pk_optimizer *o);

/* Restores the step count (after loading state from a checkpoint). */
void optim_set_steps(pk_optimizer *o, int64_t steps);

/* Number of state tensors (for checkpoints): per run its moment buffers, and for Stable-SPAM
 * its per-tensor scalars; with optim_steps that is all a resumed run needs to be bit-exact. */
int optim_state_count(const pk_optimizer *o);

/* The i-th state tensor, with a stable name written into `name` (e.g. "optim.run3.exp_avg",
 * "optim.run0.tensor_state"); write it back with tensor_upload to restore. */
tensor *optim_state_get(pk_optimizer *o, int i, char *name, size_t name_size);

#endif
