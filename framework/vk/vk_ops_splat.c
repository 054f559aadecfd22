/* vk_ops_splat.c - Vulkan kernels of the SPLAT op: the node's tensors, as blocks and element
 * offsets, handed to splat_vk_forward_dev / splat_vk_backward_dev (framework/splat/) with the
 * renderer's device state. Nothing is uploaded or read back here: inputs, images, radii,
 * gradients and the pair count stay on the device (pk_splat_renderer_check reads the count
 * when the caller reads anyway). */
#include "ops/ops_splat.h"
#include "splat/splat_vk.h"
#include "vk/vk_ops.h"

/* A tensor as a device array; NULL gives the absent array. */
static splat_vk_array arr(const tensor *t) {
    return t ? (splat_vk_array){t->block, vk_off(t)} : (splat_vk_array){NULL, 0};
}

/* The device scene of a splat node: inputs means, log_scales, quats, opacity, sh|colors. */
static splat_vk_scene scene_of(const pk_node *n) {
    const pk_splat_params *p = PK_PARAMS(n, pk_splat_params);
    splat_vk_scene s = {.n = p->n,
                        .means = arr(n->in[0]),
                        .log_scales = arr(n->in[1]),
                        .quats = arr(n->in[2]),
                        .opacity_logits = arr(n->in[3]),
                        .color = arr(n->in[4]),
                        .use_sh = p->use_sh,
                        .sh_degree = p->sh_degree};
    for (int i = 0; i < 3; i++)
        s.background[i] = p->background[i];
    return s;
}

pk_status vk_splat_forward(pk_ctx *c, pk_node *n) {
    (void)c;
    const pk_splat_params *p = PK_PARAMS(n, pk_splat_params);
    pk_splat_renderer *r = p->r;
    splat_vk_scene s = scene_of(n);
    splat_vk_outputs o = {.rgb = arr(n->out[0]),
                          .alpha = arr(n->out[1]),
                          .depth = arr(n->out[2]),
                          .radii = arr(n->saved[0])};
    r->state_generation = 0;
    PK_TRY(splat_vk_forward_dev(r->vk, &p->cam, &s, &o));
    r->state_generation = p->generation;
    return PK_OK;
}

pk_status vk_splat_backward(pk_ctx *c, pk_node *n) {
    (void)c;
    const pk_splat_params *p = PK_PARAMS(n, pk_splat_params);
    pk_splat_renderer *r = p->r;
    splat_vk_scene s = scene_of(n);
    if (r->state_generation != p->generation) {
        /* a later render overwrote this one's state: render it again into the state's own
         * output blocks (the op's outputs already hold this render) */
        splat_vk_outputs o = {{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}};
        r->state_generation = 0;
        PK_TRY(splat_vk_forward_dev(r->vk, &p->cam, &s, &o));
        r->state_generation = p->generation;
    }
    splat_vk_upstream up = {.d_rgb = arr(n->out[0]->grad),
                            .d_alpha = arr(n->out[1]->grad),
                            .d_depth = arr(n->out[2]->grad)};
    splat_vk_grads g = {
        .means = arr(vk_wants_grad(n, 0) ? n->in[0]->grad : NULL),
        .log_scales = arr(vk_wants_grad(n, 1) ? n->in[1]->grad : NULL),
        .quats = arr(vk_wants_grad(n, 2) ? n->in[2]->grad : NULL),
        .opacity_logits = arr(vk_wants_grad(n, 3) ? n->in[3]->grad : NULL),
        .color = arr(vk_wants_grad(n, 4) ? n->in[4]->grad : NULL),
        .means2d = arr(n->saved[1]),
    };
    return splat_vk_backward_dev(r->vk, &p->cam, &s, &up, &g);
}
