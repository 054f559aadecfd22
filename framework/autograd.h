/* autograd.h - the tape: ops record nodes as they run, backward walks them in reverse and
 * accumulates (+=) into gradients. Parameter gradients live in the context's gradient arena,
 * activation gradients in the step arena. */
#ifndef POLYAK_AUTOGRAD_H
#define POLYAK_AUTOGRAD_H
#include "backend.h"

/* Allocates a parameter tensor in the context's parameter arena, with a zeroed gradient in
 * the gradient arena. `name` must outlive the context (a string literal or owned copy). */
tensor *pk_param_new(pk_ctx *c, const char *name, int ndim, const int64_t *shape);

/* Back-propagates from scalar `loss` (seeded with d loss = 1) through the tape. Calling it
 * again in the same step (or for a second loss sharing the graph) adds that walk's gradients
 * to the leaves once more; gradients of intermediate tensors hold only the latest walk's. */
pk_status autograd_backward(pk_ctx *c, tensor *loss);

/* Back-propagates from `out` seeded with the gradient `seed` (same shape). */
pk_status autograd_backward_from(pk_ctx *c, tensor *out, tensor *seed);

/* Returns a tensor sharing `t`'s memory that is cut from the tape (no gradient flows back). */
tensor *pk_detach(pk_ctx *c, tensor *t);

/* Sets gradient recording on or off and returns the previous setting (no-grad regions). */
bool pk_set_grad_enabled(pk_ctx *c, bool enabled);

/* Zeroes the gradient of a parameter. */
pk_status pk_grad_zero(pk_ctx *c, tensor *param);

/* Makes sure `t` has a zeroed gradient buffer (parameters: grad arena; else step arena). */
pk_status pk_grad_ensure(pk_ctx *c, tensor *t);

#endif
