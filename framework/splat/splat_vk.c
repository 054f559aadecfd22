/* splat_vk.c - host side of the Vulkan rasterizer: device buffers, the dispatch sequence of
 * shaders/splat/ and the read-backs. Forward: project -> scan of tile counts -> (read the
 * pair count) -> emit keys -> LSD radix sort over the key bits in use (4 depth digits + the
 * tile-id digits) -> tile ranges -> blend. Backward: blend_back (atomics) -> project_back.
 * The math lives in the shaders (ports of splat_project.c and splat.c). */
#include "splat_vk.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "splat/splat_pc.h"
#include "splat_project.h"

static_assert(sizeof(splat_project_pc) == 12 * 4, "push constants of project / project_back");
static_assert(sizeof(splat_emit_pc) == 2 * 4, "push constants of emit");
static_assert(sizeof(splat_scan_pc) == 2 * 4, "push constants of scan");
static_assert(sizeof(splat_sort_pc) == 3 * 4, "push constants of the sort");
static_assert(sizeof(splat_ranges_pc) == 3 * 4, "push constants of tile_ranges");
static_assert(sizeof(splat_blend_pc) == 5 * 4, "push constants of blend / blend_back");
static_assert(SPLAT_TILE_GPU == SPLAT_TILE, "tile size of the shaders");
static_assert(SPLAT_GRAD_STRIDE_GPU == SPLAT_GRAD_STRIDE, "gradient row of the blend");

enum {
    B_PARAMS,
    B_MEANS,
    B_SCALES,
    B_QUATS,
    B_OPAC,
    B_COLOR, // inputs
    B_PROJ,
    B_TOUCHED,
    B_SUMS, // projection, scanned counts
    B_HI0,
    B_LO0,
    B_VAL0,
    B_HI1,
    B_LO1,
    B_VAL1, // sort ping-pong
    B_HIST,
    B_HSUMS,
    B_RANGES, // sort histogram, tile ranges
    B_RGB,
    B_ALPHA,
    B_DEPTH,
    B_FINAL_T,
    B_NCONTRIB, // blend
    B_DRGB,
    B_DALPHA,
    B_DDEPTH,
    B_G2D, // backward
    B_GMEANS,
    B_GSCALES,
    B_GQUATS,
    B_GOPAC,
    B_GCOLOR,
    B_GMEANS2D,
    B_COUNT
};

struct splat_vk_state {
    vkctx *ctx;
    pk_block b[B_COUNT];
    int n, width, height, valid;
    int64_t pairs;
    int force_cas; /* compare-and-swap blend_back even with float atomics */
    int val_buf;   /* B_VAL0 or B_VAL1: where the sorted Gaussian ids are */
    int hi_buf;    /* B_HI0 or B_HI1: sorted tile ids */
    void *host;    /* zero-filled host scratch for clearing buffers */
    size_t host_size;
};

splat_vk_state *splat_vk_state_create(vkctx *ctx) {
    if (!ctx) return NULL;
    splat_vk_state *st = calloc(1, sizeof *st);
    if (st) st->ctx = ctx;
    return st;
}

void splat_vk_state_destroy(splat_vk_state *st) {
    if (!st) return;
    for (int i = 0; i < B_COUNT; i++)
        vkctx_block_free(st->ctx, &st->b[i]);
    free(st->host);
    free(st);
}

void splat_vk_state_force_cas(splat_vk_state *st, int on) {
    if (st) st->force_cas = on != 0;
}

/* Makes block i at least `bytes` long (at least 16); contents are not kept. */
static pk_status ensure(splat_vk_state *st, int i, size_t bytes) {
    if (bytes < 16) bytes = 16;
    if (st->b[i].size >= bytes && st->b[i].impl) return PK_OK;
    vkctx_block_free(st->ctx, &st->b[i]);
    memset(&st->b[i], 0, sizeof st->b[i]);
    return vkctx_block_alloc(st->ctx, bytes + bytes / 4, &st->b[i]);
}

/* Makes block i `bytes` long and uploads src (zeros when src is NULL). */
static pk_status upload(splat_vk_state *st, int i, const void *src, size_t bytes) {
    PK_TRY(ensure(st, i, bytes));
    if (bytes == 0) return PK_OK;
    if (!src) {
        if (st->host_size < bytes) {
            void *h = calloc(1, bytes);
            if (!h) return pk_error(PK_ERR_NOMEM, "splat_vk: out of host memory");
            free(st->host);
            st->host = h, st->host_size = bytes;
        }
        src = st->host;
    }
    return vkctx_block_write(st->ctx, &st->b[i], 0, src, bytes);
}

static pk_status dispatch(splat_vk_state *st, const char *name, const int *bufs, int nbuf,
                          const void *pc, uint32_t pc_size, uint32_t gx, uint32_t gy) {
    vk_binding bind[16];
    for (int i = 0; i < nbuf; i++)
        bind[i].block = &st->b[bufs[i]];
    if (gx == 0 || gy == 0) return PK_OK;
    return vkctx_dispatch(st->ctx, name, nbuf, bind, pc, pc_size, gx, gy, 1);
}

static uint32_t div_up(uint64_t a, uint32_t b) { return (uint32_t)((a + b - 1) / b); }

/* Exclusive scan of n uints of block `data` in place; sums gets the block totals and, at
 * index ceil(n / SPLAT_SCAN_BLOCK), the grand total. */
static pk_status scan(splat_vk_state *st, int data, int sums, uint32_t n) {
    uint32_t blocks = div_up(n, SPLAT_SCAN_BLOCK);
    PK_TRY(ensure(st, sums, ((size_t)blocks + 1) * 4));
    if (n == 0) return upload(st, sums, NULL, 4);
    int bufs[2] = {data, sums};
    for (uint32_t pass = 0; pass < 3; pass++) {
        splat_scan_pc pc = {.n = n, .pass = pass};
        PK_TRY(dispatch(st, "splat/scan", bufs, 2, &pc, sizeof pc, pass == 1 ? 1 : blocks, 1));
    }
    return PK_OK;
}

static void camera_params(const splat_cam_derived *cd, const float bg[3],
                          float p[SPLAT_PARAMS_FLOATS]) {
    memcpy(p, cd->R, 9 * sizeof(float));
    memcpy(p + 9, cd->t, 3 * sizeof(float));
    memcpy(p + 12, cd->campos, 3 * sizeof(float));
    p[15] = cd->fx, p[16] = cd->fy, p[17] = cd->cx, p[18] = cd->cy;
    p[19] = cd->limx, p[20] = cd->limy, p[21] = cd->near;
    p[22] = bg[0], p[23] = bg[1], p[24] = bg[2];
}

static int color_floats(const splat_scene_view *s) {
    return s->sh ? 3 * (s->sh_degree + 1) * (s->sh_degree + 1) : 3;
}

/* Uploads the camera and the scene and fills the projection push constants. */
static pk_status upload_scene(splat_vk_state *st, const splat_cam_derived *cd,
                              const splat_scene_view *s, splat_project_pc *pc) {
    size_t n = (size_t)s->n;
    float params[SPLAT_PARAMS_FLOATS];
    camera_params(cd, s->background, params);
    PK_TRY(upload(st, B_PARAMS, params, sizeof params));
    PK_TRY(upload(st, B_MEANS, s->means, n * 3 * 4));
    PK_TRY(upload(st, B_SCALES, s->log_scales, n * 3 * 4));
    PK_TRY(upload(st, B_QUATS, s->quats, n * 4 * 4));
    PK_TRY(upload(st, B_OPAC, s->opacity_logits, n * 4));
    PK_TRY(upload(st, B_COLOR, s->sh ? s->sh : s->colors, n * (size_t)color_floats(s) * 4));
    *pc = (splat_project_pc){.n = (uint32_t)n,
                             .width = (uint32_t)cd->width,
                             .height = (uint32_t)cd->height,
                             .tiles_x = (uint32_t)cd->tiles_x,
                             .tiles_y = (uint32_t)cd->tiles_y,
                             .sh_degree = s->sh ? (uint32_t)s->sh_degree : 0,
                             .use_sh = s->sh != NULL};
    return PK_OK;
}

static pk_status check_scene_vk(const splat_scene_view *s) {
    if (!s || s->n < 0) return pk_error(PK_ERR_INVALID, "splat_vk: bad scene");
    if (s->n > 0 &&
        (!s->means || !s->log_scales || !s->quats || !s->opacity_logits || !s->sh == !s->colors))
        return pk_error(PK_ERR_INVALID, "splat_vk: scene arrays missing or both sh and colors");
    if (s->sh && (s->sh_degree < 0 || s->sh_degree > SPLAT_MAX_SH_DEGREE))
        return pk_error(PK_ERR_INVALID, "splat_vk: sh_degree %d, expected 0..3", s->sh_degree);
    return PK_OK;
}

pk_status splat_vk_forward(splat_vk_state *st, const splat_camera *cam,
                           const splat_scene_view *scene, const splat_outputs *out) {
    if (!st) return pk_error(PK_ERR_INVALID, "splat_vk_forward: state is NULL");
    st->valid = 0;
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene_vk(scene));
    if (!out || !out->rgb || !out->alpha)
        return pk_error(PK_ERR_INVALID, "splat_vk_forward: outputs rgb and alpha are required");
    uint32_t n = (uint32_t)scene->n, tiles = (uint32_t)(cd.tiles_x * cd.tiles_y);
    size_t HW = (size_t)cd.width * cd.height;
    splat_project_pc ppc;
    PK_TRY(upload_scene(st, &cd, scene, &ppc));

    /* 1. project, scan the tile counts, read back the number of pairs */
    PK_TRY(ensure(st, B_PROJ, (size_t)n * SPLAT_PROJ_STRIDE * 4));
    PK_TRY(ensure(st, B_TOUCHED, (size_t)n * 4));
    int pb[8] = {B_PARAMS, B_MEANS, B_SCALES, B_QUATS, B_OPAC, B_COLOR, B_PROJ, B_TOUCHED};
    PK_TRY(dispatch(st, "splat/project", pb, 8, &ppc, sizeof ppc, div_up(n, 256), 1));
    PK_TRY(scan(st, B_TOUCHED, B_SUMS, n));
    uint32_t pairs = 0;
    PK_TRY(vkctx_block_read(st->ctx, &st->b[B_SUMS], (size_t)div_up(n, SPLAT_SCAN_BLOCK) * 4,
                            &pairs, 4));
    st->pairs = pairs;

    /* 2. keys, sorted by (tile, depth) with a stable LSD radix sort over the bits in use */
    for (int i = B_HI0; i <= B_VAL1; i++)
        PK_TRY(ensure(st, i, (size_t)pairs * 4));
    int cur = 0; /* 0: keys in B_HI0.., 1: in B_HI1.. */
    if (pairs > 0) {
        int eb[5] = {B_PROJ, B_TOUCHED, B_HI0, B_LO0, B_VAL0};
        splat_emit_pc epc = {.n = n, .tiles_x = (uint32_t)cd.tiles_x};
        PK_TRY(dispatch(st, "splat/emit", eb, 5, &epc, sizeof epc, div_up(n, 256), 1));
        uint32_t sblocks = div_up(pairs, SPLAT_SORT_BLOCK);
        PK_TRY(ensure(st, B_HIST, (size_t)256 * sblocks * 4));
        int tile_bits = 0;
        while (tile_bits < 32 && (1u << tile_bits) < tiles)
            tile_bits++;
        for (uint32_t shift = 0; shift < 32u + (uint32_t)tile_bits; shift += 8) {
            int in = cur ? B_HI1 : B_HI0, outb = cur ? B_HI0 : B_HI1;
            splat_sort_pc spc = {.count = pairs, .shift = shift, .blocks = sblocks};
            int hb[3] = {in, in + 1, B_HIST};
            PK_TRY(dispatch(st, "splat/sort_hist", hb, 3, &spc, sizeof spc, sblocks, 1));
            PK_TRY(scan(st, B_HIST, B_HSUMS, 256 * sblocks));
            int sb[7] = {in, in + 1, in + 2, B_HIST, outb, outb + 1, outb + 2};
            PK_TRY(dispatch(st, "splat/sort_scatter", sb, 7, &spc, sizeof spc, sblocks, 1));
            cur ^= 1;
        }
    }
    st->hi_buf = cur ? B_HI1 : B_HI0;
    st->val_buf = st->hi_buf + 2;

    /* 3. tile ranges */
    PK_TRY(ensure(st, B_RANGES, (size_t)tiles * 8));
    int rb[2] = {st->hi_buf, B_RANGES};
    splat_ranges_pc rpc = {.count = pairs, .tiles = tiles, .mode = 0};
    PK_TRY(dispatch(st, "splat/tile_ranges", rb, 2, &rpc, sizeof rpc, div_up(tiles, 256), 1));
    rpc.mode = 1;
    PK_TRY(dispatch(st, "splat/tile_ranges", rb, 2, &rpc, sizeof rpc, div_up(pairs, 256), 1));

    /* 4. blend */
    PK_TRY(ensure(st, B_RGB, 3 * HW * 4));
    PK_TRY(ensure(st, B_ALPHA, HW * 4));
    PK_TRY(ensure(st, B_DEPTH, HW * 4));
    PK_TRY(ensure(st, B_FINAL_T, HW * 4));
    PK_TRY(ensure(st, B_NCONTRIB, HW * 4));
    int bb[9] = {B_PARAMS, B_PROJ,  B_RANGES,  st->val_buf, B_RGB,
                 B_ALPHA,  B_DEPTH, B_FINAL_T, B_NCONTRIB};
    splat_blend_pc bpc = {.width = (uint32_t)cd.width,
                          .height = (uint32_t)cd.height,
                          .tiles_x = (uint32_t)cd.tiles_x};
    PK_TRY(dispatch(st, "splat/blend", bb, 9, &bpc, sizeof bpc, (uint32_t)cd.tiles_x,
                    (uint32_t)cd.tiles_y));

    /* 5. read back */
    PK_TRY(vkctx_block_read(st->ctx, &st->b[B_RGB], 0, out->rgb, 3 * HW * 4));
    PK_TRY(vkctx_block_read(st->ctx, &st->b[B_ALPHA], 0, out->alpha, HW * 4));
    if (out->depth) PK_TRY(vkctx_block_read(st->ctx, &st->b[B_DEPTH], 0, out->depth, HW * 4));
    if ((out->radii || out->visible) && n > 0) {
        float *proj = malloc((size_t)n * SPLAT_PROJ_STRIDE * 4);
        if (!proj) return pk_error(PK_ERR_NOMEM, "splat_vk_forward: out of host memory");
        pk_status s =
            vkctx_block_read(st->ctx, &st->b[B_PROJ], 0, proj, (size_t)n * SPLAT_PROJ_STRIDE * 4);
        for (uint32_t g = 0; s == PK_OK && g < n; g++) {
            const float *p = proj + (size_t)g * SPLAT_PROJ_STRIDE;
            /* the shader leaves the rectangle empty (all zero) for culled Gaussians */
            int vis = (p[12] - p[11]) * (p[14] - p[13]) > 0.f;
            if (out->radii) out->radii[g] = vis ? (int32_t)p[10] : 0;
            if (out->visible) out->visible[g] = (uint8_t)vis;
        }
        free(proj);
        PK_TRY(s);
    }
    st->n = scene->n, st->width = cd.width, st->height = cd.height;
    st->valid = 1;
    return PK_OK;
}

pk_status splat_vk_backward(splat_vk_state *st, const splat_camera *cam,
                            const splat_scene_view *scene, const float *d_rgb, const float *d_alpha,
                            const float *d_depth, const splat_grads *grads) {
    if (!st || !st->valid)
        return pk_error(PK_ERR_INVALID, "splat_vk_backward: no successful forward on this state");
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene_vk(scene));
    if (scene->n != st->n || cd.width != st->width || cd.height != st->height)
        return pk_error(PK_ERR_INVALID,
                        "splat_vk_backward: scene/camera differ from the forward's");
    if (!d_rgb || !grads)
        return pk_error(PK_ERR_INVALID, "splat_vk_backward: d_rgb and grads needed");
    uint32_t n = (uint32_t)scene->n;
    size_t HW = (size_t)cd.width * cd.height, nc = (size_t)color_floats(scene) * n;
    PK_TRY(upload(st, B_DRGB, d_rgb, 3 * HW * 4));
    PK_TRY(upload(st, B_DALPHA, d_alpha, HW * 4));
    PK_TRY(upload(st, B_DDEPTH, d_depth, HW * 4));
    PK_TRY(upload(st, B_G2D, NULL, (size_t)n * SPLAT_GRAD_STRIDE * 4));
    const pk_device_info *info = vkctx_info(st->ctx);
    const char *back =
        info && info->float_atomics && !st->force_cas ? "splat/blend_back" : "splat/blend_back:cas";
    int bb[10] = {B_PARAMS,   B_PROJ, B_RANGES, st->val_buf, B_FINAL_T,
                  B_NCONTRIB, B_DRGB, B_DALPHA, B_DDEPTH,    B_G2D};
    splat_blend_pc bpc = {.width = (uint32_t)cd.width,
                          .height = (uint32_t)cd.height,
                          .tiles_x = (uint32_t)cd.tiles_x,
                          .has_d_alpha = d_alpha != NULL,
                          .has_d_depth = d_depth != NULL};
    PK_TRY(
        dispatch(st, back, bb, 10, &bpc, sizeof bpc, (uint32_t)cd.tiles_x, (uint32_t)cd.tiles_y));

    /* project_back adds into the gradients: upload the caller's (or zeros) and read back */
    float *colors_grad = scene->sh ? grads->sh : grads->colors;
    struct {
        int buf;
        float *host;
        size_t count;
    } g[6] = {{B_GMEANS, grads->means, 3 * (size_t)n},
              {B_GSCALES, grads->log_scales, 3 * (size_t)n},
              {B_GQUATS, grads->quats, 4 * (size_t)n},
              {B_GOPAC, grads->opacity_logits, n},
              {B_GCOLOR, colors_grad, nc},
              {B_GMEANS2D, grads->means2d, 2 * (size_t)n}};
    for (int i = 0; i < 6; i++)
        PK_TRY(upload(st, g[i].buf, g[i].host, g[i].count * 4));
    splat_project_pc ppc;
    PK_TRY(upload_scene(st, &cd, scene, &ppc));
    int pb[13] = {B_PARAMS, B_MEANS,   B_SCALES, B_QUATS, B_OPAC,   B_COLOR,   B_G2D,
                  B_GMEANS, B_GSCALES, B_GQUATS, B_GOPAC, B_GCOLOR, B_GMEANS2D};
    PK_TRY(dispatch(st, "splat/project_back", pb, 13, &ppc, sizeof ppc, div_up(n, 256), 1));
    for (int i = 0; i < 6; i++)
        if (g[i].host && g[i].count)
            PK_TRY(vkctx_block_read(st->ctx, &st->b[g[i].buf], 0, g[i].host, g[i].count * 4));
    return PK_OK;
}
