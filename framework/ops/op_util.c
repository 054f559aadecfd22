/* op_util.c - shared plumbing of the op front ends. */
#include "op_util.h"

#include <stdarg.h>
#include <stdio.h>

tensor *op_run_saved(pk_ctx *c, pk_op op, tensor *const *in, int n_in, const void *params,
                     size_t params_size, tensor *out, tensor *const *saved, int n_saved) {
    if (!out) return NULL;
    pk_node *n = pk_node_new(c, op, in, n_in, params, params_size);
    if (!n) return NULL;
    n->n_out = 1;
    n->out[0] = out;
    for (int i = 0; i < n_saved; i++) {
        if (!saved[i]) return NULL;
        n->saved[i] = saved[i];
    }
    return pk_node_run(c, n) == PK_OK ? out : NULL;
}

tensor *op_run1(pk_ctx *c, pk_op op, tensor *const *in, int n_in, const void *params,
                size_t params_size, tensor *out) {
    return op_run_saved(c, op, in, n_in, params, params_size, out, NULL, 0);
}

tensor *op_fail(const char *name, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pk_error(PK_ERR_INVALID, "%s: %s", name, msg);
    return NULL;
}

int op_axis(int axis, int ndim) {
    if (axis < 0) axis += ndim;
    return axis >= 0 && axis < ndim ? axis : -1;
}

bool op_check_f32(const char *op, const char *what, const tensor *t) {
    if (t->dtype == PK_F32) return true;
    pk_error(PK_ERR_INVALID, "%s: %s must be float32", op, what);
    return false;
}

tensor *op_contig(pk_ctx *c, tensor *x) { return pk_contiguous(c, x); }
