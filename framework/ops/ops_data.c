/* ops_data.c - front ends of the data ops that keep a training loop's inputs on the device:
 * the augmented image batch gathered from a resident data set, and the count of correct
 * predictions. Both run immediately and are not differentiable. */
#include <string.h>

#include "op_util.h"

/* True when t is a contiguous tensor of `dtype` with `numel` elements (numel < 0: any). */
static bool fits(const tensor *t, pk_dtype dtype, int64_t numel) {
    return t && t->dtype == dtype && tensor_is_contiguous(t) &&
           (numel < 0 || tensor_numel(t) == numel);
}

/* Runs op's forward kernel on a node with the given inputs and outputs. */
static pk_status run_now(pk_ctx *c, pk_op op, tensor *const *in, int n_in, tensor *const *out,
                         int n_out, const void *params, size_t size) {
    pk_node *n = pk_node_new(c, op, in, n_in, params, size);
    if (!n) return PK_ERR_NOMEM;
    n->n_out = n_out;
    for (int i = 0; i < n_out; i++)
        n->out[i] = out[i];
    pk_kernel k = pk_op_get(op)->forward[c->backend];
    return k ? k(c, n)
             : pk_error(PK_ERR_UNSUPPORTED, "%s: no kernel on this backend", pk_op_get(op)->name);
}

pk_status pk_image_batch(pk_ctx *c, tensor *images, tensor *labels, tensor *plan,
                         const pk_image_batch_params *p, tensor *x, tensor *t, tensor *y) {
    if (!p || p->n < 1 || p->first < 0 || p->c < 1 || p->c > 3 || p->h < 1 || p->w < 1 ||
        p->pad < 0 || p->pad > 127 || p->images < 1)
        return pk_error(PK_ERR_INVALID,
                        "image_batch: needs n >= 1, first >= 0, 1..3 channels, a positive size, "
                        "pad in [0, 127] and images >= 1");
    int64_t item = (int64_t)p->c * p->h * p->w;
    if (!fits(images, PK_U8, p->images * item))
        return pk_error(PK_ERR_INVALID,
                        "image_batch: images must be a contiguous u8 tensor (%lld, %d, %d, %d)",
                        (long long)p->images, p->h, p->w, p->c);
    if (!fits(labels, PK_I32, p->images))
        return pk_error(PK_ERR_INVALID, "image_batch: labels must be contiguous i32 (%lld)",
                        (long long)p->images);
    if (!fits(plan, PK_I32, -1) || tensor_numel(plan) < 2 * (p->first + p->n))
        return pk_error(PK_ERR_INVALID,
                        "image_batch: plan must be contiguous i32 with at least %lld rows of 2",
                        (long long)(p->first + p->n));
    if (!fits(x, PK_F32, p->n * item) || !fits(t, PK_F32, p->n * item) || !fits(y, PK_I32, p->n))
        return pk_error(PK_ERR_INVALID,
                        "image_batch: x and t must be contiguous f32 (%lld, %d, %d, %d), y i32 "
                        "(%lld)",
                        (long long)p->n, p->c, p->h, p->w, (long long)p->n);
    return run_now(c, PK_OP_IMAGE_BATCH, (tensor *[]){images, labels, plan}, 3,
                   (tensor *[]){x, t, y}, 3, p, sizeof *p);
}

pk_status pk_count_correct(pk_ctx *c, tensor *logits, tensor *labels, tensor *hits) {
    if (!logits || logits->ndim != 2 || !fits(logits, PK_F32, -1) ||
        !fits(labels, PK_I32, logits->shape[0]) || !fits(hits, PK_F32, 1))
        return pk_error(PK_ERR_INVALID, "count_correct: needs contiguous logits (n, k) f32, "
                                        "labels (n) i32 and hits (1) f32");
    int64_t sh[2] = {logits->shape[0], logits->shape[1]};
    return run_now(c, PK_OP_COUNT_CORRECT, (tensor *[]){logits, labels}, 2, (tensor *[]){hits}, 1,
                   sh, sizeof sh);
}
