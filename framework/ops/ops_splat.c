/* ops_splat.c - front end of the SPLAT op and the renderer object: checks the Gaussians'
 * tensors, allocates the outputs and runs one node with three outputs (rgb, alpha, depth).
 * The kernels are cpu_splat_* (framework/cpu/cpu_splat.c) and vk_splat_*
 * (framework/vk/vk_ops_splat.c). */
#include "ops_splat.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "op_util.h"
#include "splat/splat_vk.h"

static_assert(sizeof(pk_splat_params) <= PK_PARAM_BYTES, "pk_splat_params too large");
static_assert(PK_MAX_OUT >= 3, "the splat node has three outputs");

pk_status pk_splat_renderer_create(pk_ctx *c, pk_splat_renderer **out) {
    *out = NULL;
    pk_splat_renderer *r = calloc(1, sizeof *r);
    if (!r) return pk_error(PK_ERR_NOMEM, "splat: out of host memory for a renderer");
    r->backend = c->backend;
    if (c->backend == PK_BACKEND_CPU)
        r->state = splat_state_create();
    else
        r->vk = splat_vk_state_create(c->vk);
    if (!r->state && !r->vk) {
        free(r);
        return pk_error(PK_ERR_NOMEM, "splat: out of host memory for a renderer");
    }
    *out = r;
    return PK_OK;
}

void pk_splat_renderer_destroy(pk_splat_renderer *r) {
    if (!r) return;
    splat_state_destroy(r->state);
    splat_vk_state_destroy(r->vk);
    free(r->scratch);
    free(r);
}

int64_t pk_splat_renderer_pairs(const pk_splat_renderer *r) {
    if (!r) return 0;
    return r->vk ? splat_vk_state_pairs(r->vk) : splat_state_pairs(r->state);
}

pk_status pk_splat_renderer_add_cameras(pk_splat_renderer *r, const splat_camera *cams, int n) {
    if (!r) return pk_error(PK_ERR_INVALID, "splat: renderer is NULL");
    return r->vk ? splat_vk_state_add_cameras(r->vk, cams, n) : PK_OK;
}

void pk_splat_renderer_set_capacity(pk_splat_renderer *r, int64_t pairs) {
    if (r && r->vk) splat_vk_state_set_capacity(r->vk, pairs);
}

pk_status pk_splat_renderer_check(pk_splat_renderer *r, int *redo) {
    *redo = 0;
    if (!r) return pk_error(PK_ERR_INVALID, "splat: renderer is NULL");
    return r->vk ? splat_vk_state_check(r->vk, redo) : PK_OK;
}

/* Checks that t is a contiguous f32 tensor of shape (n, cols) (or (n) when cols == 0 is
 * allowed through alt_1d); records an error naming the field otherwise. */
static bool check_rows(const tensor *t, const char *field, int64_t n, int64_t cols, bool alt_1d) {
    char b[64];
    if (!op_check_f32("splat", field, t)) return false;
    bool ok = t->ndim == 2 && t->shape[0] == n && t->shape[1] == cols;
    if (alt_1d && t->ndim == 1 && t->shape[0] == n) ok = true;
    if (ok) return true;
    if (alt_1d)
        pk_error(PK_ERR_INVALID, "splat: %s is %s, expected (%lld, %lld) or (%lld)", field,
                 tensor_shape_str(t, b, sizeof b), (long long)n, (long long)cols, (long long)n);
    else
        pk_error(PK_ERR_INVALID, "splat: %s is %s, expected (%lld, %lld)", field,
                 tensor_shape_str(t, b, sizeof b), (long long)n, (long long)cols);
    return false;
}

pk_status pk_splat(pk_ctx *c, pk_splat_renderer *r, const splat_camera *cam,
                   const pk_splat_inputs *in, pk_splat_outputs *out) {
    if (!c || !r || !cam || !in || !out)
        return pk_error(PK_ERR_INVALID, "splat: NULL context, renderer, camera, inputs or outputs");
    memset(out, 0, sizeof *out);
    if (r->backend != c->backend)
        return pk_error(PK_ERR_INVALID, "splat: the renderer was created for another backend");
    if (!in->means || !in->log_scales || !in->quats || !in->opacity_logits)
        return pk_error(PK_ERR_INVALID,
                        "splat: means, log_scales, quats and opacity_logits are required (an "
                        "earlier op may have failed: %s)",
                        polyak_error());
    if (!in->sh == !in->colors)
        return pk_error(PK_ERR_INVALID, "splat: give exactly one of sh and colors");
    if (cam->width < 1 || cam->height < 1)
        return pk_error(PK_ERR_INVALID, "splat: camera size %dx%d, expected >= 1x1", cam->width,
                        cam->height);
    if (in->means->ndim != 2 || in->means->shape[0] < 1 || in->means->shape[0] > INT32_MAX) {
        char b[64];
        return pk_error(PK_ERR_INVALID, "splat: means is %s, expected (N, 3) with N >= 1",
                        tensor_shape_str(in->means, b, sizeof b));
    }
    int64_t n = in->means->shape[0];
    if (!check_rows(in->means, "means", n, 3, false) ||
        !check_rows(in->log_scales, "log_scales", n, 3, false) ||
        !check_rows(in->quats, "quats", n, 4, false) ||
        !check_rows(in->opacity_logits, "opacity_logits", n, 1, true))
        return PK_ERR_INVALID;
    tensor *color = in->colors;
    if (in->sh) {
        char b[64];
        int d = in->sh_degree;
        if (d < 0 || d > SPLAT_MAX_SH_DEGREE)
            return pk_error(PK_ERR_INVALID, "splat: sh_degree %d, expected 0..%d", d,
                            SPLAT_MAX_SH_DEGREE);
        int64_t k = (int64_t)(d + 1) * (d + 1);
        if (!op_check_f32("splat", "sh", in->sh)) return PK_ERR_INVALID;
        if (in->sh->ndim != 3 || in->sh->shape[0] != n || in->sh->shape[1] != k ||
            in->sh->shape[2] != 3)
            return pk_error(PK_ERR_INVALID,
                            "splat: sh is %s, expected (%lld, %lld, 3) for degree %d",
                            tensor_shape_str(in->sh, b, sizeof b), (long long)n, (long long)k, d);
        color = in->sh;
    } else if (!check_rows(in->colors, "colors", n, 3, false))
        return PK_ERR_INVALID;
    if (in->means2d_grad) {
        if (!check_rows(in->means2d_grad, "means2d_grad", n, 2, false)) return PK_ERR_INVALID;
        if (!tensor_is_contiguous(in->means2d_grad))
            return pk_error(PK_ERR_INVALID, "splat: means2d_grad must be contiguous");
    }

    tensor *x[5] = {op_contig(c, in->means), op_contig(c, in->log_scales), op_contig(c, in->quats),
                    op_contig(c, in->opacity_logits), op_contig(c, color)};
    for (int i = 0; i < 5; i++)
        if (!x[i]) return PK_ERR_INVALID;

    int64_t H = cam->height, W = cam->width;
    tensor *rgb = tensor_new(c->step, PK_F32, 3, (int64_t[]){3, H, W});
    tensor *alpha = tensor_new(c->step, PK_F32, 3, (int64_t[]){1, H, W});
    tensor *depth = tensor_new(c->step, PK_F32, 3, (int64_t[]){1, H, W});
    tensor *radii = tensor_new(c->step, PK_I32, 1, (int64_t[]){n});
    if (!rgb || !alpha || !depth || !radii) return PK_ERR_NOMEM;

    pk_splat_params p = {.cam = *cam,
                         .r = r,
                         .generation = ++r->generation,
                         .n = (int)n,
                         .sh_degree = in->sh ? in->sh_degree : 0,
                         .use_sh = in->sh != NULL};
    memcpy(p.background, in->background, sizeof p.background);
    pk_node *node = pk_node_new(c, PK_OP_SPLAT, x, 5, &p, sizeof p);
    if (!node) return PK_ERR_NOMEM;
    node->n_out = 3;
    node->out[0] = rgb;
    node->out[1] = alpha;
    node->out[2] = depth;
    node->saved[0] = radii;
    node->saved[1] = in->means2d_grad;
    PK_TRY(pk_node_run(c, node));
    *out = (pk_splat_outputs){.rgb = rgb, .alpha = alpha, .depth = depth, .radii = radii};
    return PK_OK;
}
