/* ctp_resident.c - the device side of a `polyak ctp` step (see ctp_resident.h): ring buffers
 * for the queues, the targets and the collapse watch from framework ops, nothing read back. */
#include "ctp_resident.h"

#include "ops/ops.h"

pk_status ctp_ring_create(pk_ctx *c, const ctp_queue *qi, const ctp_queue *qt, ctp_ring *r) {
    int K = qi->size, E = qi->dim;
    const ctp_queue *q[2] = {qi, qt};
    for (int m = 0; m < 2; m++) {
        r->feat[m] = tensor_new(c->state, PK_F32, 2, (int64_t[]){K, E});
        if (!r->feat[m]) return pk_error(PK_ERR_NOMEM, "ctp: out of device memory for a queue");
        PK_TRY(tensor_upload(r->feat[m], q[m]->feat));
    }
    r->ids = tensor_new(c->state, PK_F32, 1, (int64_t[]){K});
    if (!r->ids) return pk_error(PK_ERR_NOMEM, "ctp: out of device memory for a queue");
    return tensor_upload(r->ids, qi->ids);
}

pk_status ctp_ring_push(pk_ctx *c, tensor *ring, int ptr, tensor *rows) {
    if (!rows) return PK_ERR_INVALID;
    int64_t K = ring->shape[0], w = ring->ndim == 2 ? ring->shape[1] : 1, B = rows->shape[0];
    for (int64_t i = 0; i < B;) {
        int64_t len = B - i < K - ptr ? B - i : K - ptr;
        int64_t shape[2] = {len, w}, strides[2] = {w, 1};
        tensor *dst = tensor_view(c->step, ring, 2, shape, strides, ring->offset + ptr * w);
        tensor *src = tensor_view(c->step, rows, 2, shape, strides, rows->offset + i * w);
        if (!dst || !src) return PK_ERR_INVALID;
        PK_TRY(pk_copy_into(c, dst, src));
        i += len, ptr = (int)((ptr + len) % K);
    }
    return PK_OK;
}

tensor *ctp_positives_dev(pk_ctx *c, tensor *qid, tensor *kid) {
    if (!qid || !kid) return NULL;
    bool g = pk_set_grad_enabled(c, false);
    int64_t B = qid->shape[0], N = kid->shape[0];
    /* the ids are integers (exact in f32 below 2^24): relu(1 - |a - b|) is 1 when they are
     * equal and 0 otherwise */
    tensor *d = pk_sub(c, pk_reshape(c, qid, 2, (int64_t[]){B, 1}),
                       pk_reshape(c, kid, 2, (int64_t[]){1, N})); // (B, N)
    tensor *eq = pk_relu(c, pk_affine(c, pk_unary(c, PK_ABS, d), -1.0f, 1.0f));
    tensor *pos = pk_div(c, eq, pk_sum(c, eq, 1, true)); // (B, N) / (B, 1)
    pk_set_grad_enabled(c, g);
    return pos;
}

tensor *ctp_soft_targets_dev(pk_ctx *c, tensor *qm, tensor *km, tensor *pos, float temp,
                             float alpha) {
    if (!qm || !km || !pos) return NULL;
    if (alpha == 0.0f) return pos;
    bool g = pk_set_grad_enabled(c, false);
    tensor *sim = pk_scale(c, pk_matmul(c, qm, km, false, true), 1.0f / temp); // (B, N)
    tensor *t = pk_add(c, pk_scale(c, pk_softmax(c, sim, 1), alpha), pk_scale(c, pos, 1 - alpha));
    pk_set_grad_enabled(c, g);
    return t;
}

tensor *ctp_mean_cos_dev(pk_ctx *c, tensor *f) {
    if (!f) return NULL;
    int64_t B = f->shape[0];
    bool g = pk_set_grad_enabled(c, false);
    tensor *out;
    if (B < 2) {
        out = tensor_new(c->step, PK_F32, 1, (int64_t[]){1});
        if (out && pk_fill(c, out, 1.0f) != PK_OK) out = NULL;
    } else {
        /* sum over i != j of f_i . f_j: every pair's dot product less the diagonal's */
        tensor *all = pk_sum_all(c, pk_matmul(c, f, f, false, true)); // (B, B) -> (1,)
        tensor *diag = pk_sum_all(c, pk_mul(c, f, f));
        out = pk_scale(c, pk_sub(c, all, diag), 1.0f / (float)((double)B * (double)(B - 1)));
    }
    pk_set_grad_enabled(c, g);
    return out;
}
