/* cpu_data.c - CPU kernels of the data ops (framework/ops/ops_data.c): the augmented image
 * batch from a resident data set (the same float operations, in the same order, as a host
 * loop building the batch, so results are bit-identical to it) and the count of correct
 * predictions. */
#include "cpu/cpu_util.h"

pk_status cpu_image_batch_forward(pk_ctx *c, pk_node *n) {
    (void)c;
    const pk_image_batch_params *p = PK_PARAMS(n, pk_image_batch_params);
    const uint8_t *img = (const uint8_t *)n->in[0]->block->host + n->in[0]->offset;
    const int32_t *lab = cpu_i32(n->in[1]), *plan = cpu_i32(n->in[2]);
    float *x = cpu_f32(n->out[0]), *t = cpu_f32(n->out[1]);
    int32_t *y = cpu_i32(n->out[2]);
    int h = p->h, w = p->w, ch = p->c, pad = p->pad;
    size_t item = (size_t)h * w * ch;
    for (int64_t s = 0; s < p->n; s++) {
        int32_t idx = plan[2 * (p->first + s)], a = plan[2 * (p->first + s) + 1];
        if (idx < 0 || idx >= p->images)
            return pk_error(PK_ERR_INVALID, "image_batch: plan row %lld names image %d of %lld",
                            (long long)(p->first + s), idx, (long long)p->images);
        int ox = a & 255, oy = (a >> 8) & 255;
        bool flip = (a >> 16) & 1;
        const uint8_t *src = img + (size_t)idx * item;
        float *xs = x + (size_t)s * item, *ts = t + (size_t)s * item;
        for (int k = 0; k < ch; k++)
            for (int yy = 0; yy < h; yy++)
                for (int xx = 0; xx < w; xx++) {
                    int sx = (flip ? w - 1 - xx : xx) + ox - pad, sy = yy + oy - pad;
                    float v = 0.0f;
                    if (p->reflect) {
                        sx = sx < 0 ? -sx : sx >= w ? 2 * w - 2 - sx : sx;
                        sy = sy < 0 ? -sy : sy >= h ? 2 * h - 2 - sy : sy;
                    }
                    if (sx >= 0 && sx < w && sy >= 0 && sy < h)
                        v = (float)src[((size_t)sy * w + sx) * ch + k] * (1.0f / 255.0f);
                    size_t o = ((size_t)k * h + yy) * w + xx;
                    ts[o] = v;
                    xs[o] = (v - p->mean[k]) / p->std[k];
                }
        y[s] = lab[idx];
    }
    return PK_OK;
}

pk_status cpu_count_correct_forward(pk_ctx *c, pk_node *n) {
    (void)c;
    const int64_t *sh = PK_PARAMS(n, int64_t);
    const float *lg = cpu_f32(n->in[0]);
    const int32_t *lab = cpu_i32(n->in[1]);
    int64_t hits = 0;
    for (int64_t i = 0; i < sh[0]; i++) {
        int64_t best = 0;
        for (int64_t k = 1; k < sh[1]; k++)
            if (lg[i * sh[1] + k] > lg[i * sh[1] + best]) best = k;
        hits += best == lab[i];
    }
    cpu_f32(n->out[0])[0] += (float)hits;
    return PK_OK;
}
