/* ctp_resident.c - the device side of a `polyak ctp` step (see ctp_resident.h): the data set
 * and the batch, ring buffers for the queues, the targets and the collapse watch from framework
 * ops, nothing read back. */
#include "ctp_resident.h"

#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

pk_status ctp_data_dev_create(pk_ctx *c, const float *images, int n, int C, int S,
                              const float *masks, int ntexts, int L, ctp_data_dev *d) {
    memset(d, 0, sizeof *d);
    d->C = C, d->S = S;
    int P = S + 4;
    size_t per = (size_t)C * P * P, bytes = sizeof(float) * per * (size_t)n;
    const pk_device_info *di = pk_device_get_info(c->dev);
    if (!di || bytes > di->max_storage_buffer_range) return PK_OK; /* the host makes batches */
    float *h = malloc(bytes > sizeof(float) * (size_t)ntexts ? bytes : sizeof(float) * ntexts);
    if (!h) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (size_t i = 0; i < per * (size_t)n; i++)
        h[i] = 1.0f; /* ctp_make_batch_rows's fill */
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < S; y++)
                memcpy(h + per * i + ((size_t)ch * P + y + 2) * P + 2,
                       images + (((size_t)i * C + ch) * S + y) * S, sizeof(float) * (size_t)S);
    pk_status st = PK_OK;
    d->images = tensor_new(c->state, PK_F32, 4, (int64_t[]){n, C, P, P});
    d->masks = tensor_new(c->state, PK_F32, 2, (int64_t[]){ntexts, L});
    d->gnum = tensor_new(c->state, PK_F32, 2, (int64_t[]){ntexts, 1});
    if (!d->images || !d->masks || !d->gnum)
        st = pk_error(PK_ERR_NOMEM, "ctp: out of device memory for the data set");
    if (st == PK_OK) st = tensor_upload(d->images, h);
    if (st == PK_OK) st = tensor_upload(d->masks, masks);
    for (int g = 0; g < ntexts; g++)
        h[g] = (float)g;
    if (st == PK_OK) st = tensor_upload(d->gnum, h);
    free(h);
    return st;
}

pk_status ctp_batch_dev(pk_ctx *c, const ctp_data_dev *d, const int32_t *idx, const int *dx,
                        const int *dy, int B, tensor *groups, tensor **x, tensor **mask,
                        tensor **gid) {
    int C = d->C, S = d->S, P = S + 4, L = (int)d->masks->shape[1];
    *x = tensor_new(c->step, PK_F32, 4, (int64_t[]){B, C, S, S});
    if (!*x || !groups) return PK_ERR_NOMEM;
    for (int b = 0; b < B; b++) {
        /* x[b, ch, y, xx] = image[ch, y - dy, xx - dx] = padded[ch, y - dy + 2, xx - dx + 2] */
        int64_t off = d->images->offset + (int64_t)idx[b] * C * P * P + (int64_t)(2 - dy[b]) * P +
                      (2 - dx[b]);
        tensor *win = tensor_view(c->step, d->images, 3, (int64_t[]){C, S, S},
                                  (int64_t[]){(int64_t)P * P, P, 1}, off);
        tensor *row =
            tensor_view(c->step, *x, 3, (int64_t[]){C, S, S}, (int64_t[]){(int64_t)S * S, S, 1},
                        (*x)->offset + (int64_t)b * C * S * S);
        if (!win || !row) return PK_ERR_INVALID;
        PK_TRY(pk_copy_into(c, row, win));
    }
    bool g = pk_set_grad_enabled(c, false);
    *mask = pk_reshape(c, pk_embedding(c, d->masks, groups), 3, (int64_t[]){B, 1, L});
    *gid = pk_reshape(c, pk_embedding(c, d->gnum, groups), 1, (int64_t[]){B});
    pk_set_grad_enabled(c, g);
    return *mask && *gid ? PK_OK : PK_ERR_INVALID;
}

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
