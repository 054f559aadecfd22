/* vk_ops_data.c - Vulkan kernels of the data ops (framework/ops/ops_data.c): the augmented image
 * batch gathered from a resident data set and the count of correct predictions. Semantics are
 * the CPU kernels' (framework/cpu/cpu_data.c). */
#include <assert.h>

#include "nn/count_correct.h"
#include "nn/image_batch.h"
#include "vk/vk_ops.h"

static_assert(sizeof(pc_image_batch) == 80, "pc_image_batch layout");
static_assert(sizeof(pc_count_correct) == 20, "pc_count_correct layout");

pk_status vk_image_batch_forward(pk_ctx *c, pk_node *n) {
    const pk_image_batch_params *p = PK_PARAMS(n, pk_image_batch_params);
    tensor *img = n->in[0], *lab = n->in[1], *plan = n->in[2];
    tensor *x = n->out[0], *t = n->out[1], *y = n->out[2];
    int64_t total = p->n * p->c * p->h * p->w;
    if (p->images * p->c * p->h * p->w + img->offset > UINT32_MAX || total > UINT32_MAX)
        return pk_error(PK_ERR_INVALID, "image_batch: data set or batch over 2^32 elements");
    pc_image_batch pc = {.off_img = vk_off(img),
                         .off_lab = vk_off(lab),
                         .off_plan = vk_off(plan),
                         .off_x = vk_off(x),
                         .off_t = vk_off(t),
                         .off_y = vk_off(y),
                         .n = (uint32_t)p->n,
                         .first = (uint32_t)p->first,
                         .images = (uint32_t)p->images,
                         .c = (uint32_t)p->c,
                         .h = (uint32_t)p->h,
                         .w = (uint32_t)p->w,
                         .pad = (uint32_t)p->pad,
                         .reflect = p->reflect ? 1u : 0u,
                         .mean0 = p->mean[0],
                         .mean1 = p->c > 1 ? p->mean[1] : 0.0f,
                         .mean2 = p->c > 2 ? p->mean[2] : 0.0f,
                         .std0 = p->std[0],
                         .std1 = p->c > 1 ? p->std[1] : 1.0f,
                         .std2 = p->c > 2 ? p->std[2] : 1.0f};
    vk_binding b[6] = {vk_bind(img), vk_bind(lab), vk_bind(plan),
                       vk_bind(x),   vk_bind(t),   vk_bind(y)};
    return vk_dispatch_1d(c, "nn/image_batch", 6, b, &pc, sizeof pc, (uint64_t)total);
}

pk_status vk_count_correct_forward(pk_ctx *c, pk_node *n) {
    const int64_t *sh = PK_PARAMS(n, int64_t);
    tensor *lg = n->in[0], *lab = n->in[1], *hits = n->out[0];
    pc_count_correct pc = {.off_l = vk_off(lg),
                           .off_y = vk_off(lab),
                           .off_h = vk_off(hits),
                           .n = (uint32_t)sh[0],
                           .k = (uint32_t)sh[1]};
    vk_binding b[3] = {vk_bind(lg), vk_bind(lab), vk_bind(hits)};
    return vk_dispatch_grid(c, "nn/count_correct", 3, b, &pc, sizeof pc, 1, 1, 1);
}
