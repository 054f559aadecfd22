/* op_util.h - helpers shared by the op front ends: output allocation, node set-up, axis and
 * broadcast arithmetic. Internal to framework/ops. */
#ifndef POLYAK_OP_UTIL_H
#define POLYAK_OP_UTIL_H
#include "ops.h"

/* Runs `op` on inputs with params, producing the single output `out`; NULL on failure. */
tensor *op_run1(pk_ctx *c, pk_op op, tensor *const *in, int n_in, const void *params,
                size_t params_size, tensor *out);

/* Same as op_run1 but also attaches saved tensors (n_saved of them) before running. */
tensor *op_run_saved(pk_ctx *c, pk_op op, tensor *const *in, int n_in, const void *params,
                     size_t params_size, tensor *out, tensor *const *saved, int n_saved);

/* Records an invalid-argument error for op `name` and returns NULL. */
tensor *op_fail(const char *name, const char *fmt, ...) PK_PRINTF(2, 3);

/* Normalises a possibly negative axis for rank ndim; -1 when out of range. */
int op_axis(int axis, int ndim);

/* Checks that t is an f32 tensor; records an error naming `op` and `what` otherwise. */
bool op_check_f32(const char *op, const char *what, const tensor *t);

/* Makes x contiguous (recording a copy on the tape when needed). */
tensor *op_contig(pk_ctx *c, tensor *x);

#endif
