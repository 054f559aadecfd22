/* cpu_splat.c - CPU kernels of the SPLAT op: host views of the node's tensors handed to
 * splat_forward / splat_backward (framework/splat/) with the renderer's saved state. The
 * rasterizer math lives there; this file only maps tensors to arrays. */
#include <stdlib.h>

#include "cpu_util.h"
#include "ops/ops_splat.h"

/* The scene view of a splat node: inputs means, log_scales, quats, opacity, sh|colors. */
static splat_scene_view scene_of(const pk_node *n) {
    const pk_splat_params *p = PK_PARAMS(n, pk_splat_params);
    splat_scene_view v = {.n = p->n,
                          .means = cpu_f32(n->in[0]),
                          .log_scales = cpu_f32(n->in[1]),
                          .quats = cpu_f32(n->in[2]),
                          .opacity_logits = cpu_f32(n->in[3]),
                          .sh = p->use_sh ? cpu_f32(n->in[4]) : NULL,
                          .sh_degree = p->sh_degree,
                          .colors = p->use_sh ? NULL : cpu_f32(n->in[4])};
    for (int i = 0; i < 3; i++)
        v.background[i] = p->background[i];
    return v;
}

pk_status cpu_splat_forward(pk_ctx *c, pk_node *n) {
    const pk_splat_params *p = PK_PARAMS(n, pk_splat_params);
    pk_splat_renderer *r = p->r;
    splat_scene_view v = scene_of(n);
    splat_outputs o = {.rgb = cpu_f32(n->out[0]),
                       .alpha = cpu_f32(n->out[1]),
                       .depth = cpu_f32(n->out[2]),
                       .radii = cpu_i32(n->saved[0])};
    r->state_generation = 0;
    PK_TRY(splat_forward(r->state, c->pool, &p->cam, &v, &o));
    r->state_generation = p->generation;
    return PK_OK;
}

pk_status cpu_splat_backward(pk_ctx *c, pk_node *n) {
    const pk_splat_params *p = PK_PARAMS(n, pk_splat_params);
    pk_splat_renderer *r = p->r;
    splat_scene_view v = scene_of(n);
    if (r->state_generation != p->generation) {
        /* a later render overwrote this one's state: render it again into scratch */
        size_t need = (size_t)4 * (size_t)p->cam.width * (size_t)p->cam.height;
        if (r->scratch_floats < need) {
            float *s = realloc(r->scratch, need * sizeof *s);
            if (!s) return pk_error(PK_ERR_NOMEM, "splat backward: out of host memory");
            r->scratch = s;
            r->scratch_floats = need;
        }
        size_t hw = need / 4;
        splat_outputs o = {
            .rgb = r->scratch, .alpha = r->scratch + 3 * hw, .radii = NULL, .depth = NULL};
        r->state_generation = 0;
        PK_TRY(splat_forward(r->state, c->pool, &p->cam, &v, &o));
        r->state_generation = p->generation;
    }
    tensor *m2d = n->saved[1];
    splat_grads g = {
        .means = cpu_wants_grad(n, 0) ? cpu_f32(n->in[0]->grad) : NULL,
        .log_scales = cpu_wants_grad(n, 1) ? cpu_f32(n->in[1]->grad) : NULL,
        .quats = cpu_wants_grad(n, 2) ? cpu_f32(n->in[2]->grad) : NULL,
        .opacity_logits = cpu_wants_grad(n, 3) ? cpu_f32(n->in[3]->grad) : NULL,
        .sh = p->use_sh && cpu_wants_grad(n, 4) ? cpu_f32(n->in[4]->grad) : NULL,
        .colors = !p->use_sh && cpu_wants_grad(n, 4) ? cpu_f32(n->in[4]->grad) : NULL,
        .means2d = m2d ? cpu_f32(m2d) : NULL,
    };
    return splat_backward(r->state, c->pool, &p->cam, &v, cpu_f32(n->out[0]->grad),
                          cpu_f32(n->out[1]->grad), cpu_f32(n->out[2]->grad), &g);
}
