/* splat_vk.c - host side of the Vulkan rasterizer: device buffers, the dispatch sequence of
 * shaders/splat/ and the host-array wrappers. Forward: project -> scan of tile counts ->
 * pair_args (the pair count into indirect work-group counts, on the device) -> emit keys ->
 * LSD radix sort over the key bits in use (4 depth digits + the tile-id digits) -> tile
 * ranges -> blend. Backward: blend_back (atomics) -> project_back. The math lives in the
 * shaders (ports of splat_project.c and splat.c).
 *
 * The key buffers hold `capacity` pairs; a frame with more sorts only the first `capacity`
 * keys (a wrong image, never a write out of bounds) and leaves its pair count in the meta
 * block, where splat_vk_state_check finds it at the caller's next read-back, grows the
 * buffers and tells the caller to redo the frame.
 *
 * The *_dev functions read and write caller arrays (block + element offset) in place; the
 * host-array API uploads into the state's own input blocks and reads the state's output
 * blocks back around them. */
#include "splat_vk.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "nn/fill.h"
#include "splat/splat_pc.h"
#include "splat_project.h"

static_assert(sizeof(splat_project_pc) == 21 * 4, "push constants of project / project_back");
static_assert(sizeof(splat_emit_pc) == 3 * 4, "push constants of emit");
static_assert(sizeof(splat_scan_pc) == 3 * 4, "push constants of scan");
static_assert(sizeof(splat_args_pc) == 2 * 4, "push constants of pair_args");
static_assert(sizeof(splat_sort_pc) == 1 * 4, "push constants of the sort");
static_assert(sizeof(splat_ranges_pc) == 2 * 4, "push constants of tile_ranges");
static_assert(sizeof(splat_blend_pc) == 12 * 4, "push constants of blend / blend_back");
static_assert(sizeof(pc_fill) == 3 * 4, "push constants of nn/fill");
static_assert(SPLAT_TILE_GPU == SPLAT_TILE, "tile size of the shaders");
static_assert(SPLAT_GRAD_STRIDE_GPU == SPLAT_GRAD_STRIDE, "gradient row of the blend");

enum {
    B_PARAMS,
    B_MEANS,
    B_SCALES,
    B_QUATS,
    B_OPAC,
    B_COLOR, // inputs of the host-array API
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
    B_RADII, // outputs: the host-array API's, or scratch for absent ones
    B_FINAL_T,
    B_NCONTRIB, // blend state for the backward
    B_DRGB,
    B_DALPHA,
    B_DDEPTH, // upstream gradients of the host-array API
    B_G2D,    // per-Gaussian screen-space gradients
    B_GMEANS,
    B_GSCALES,
    B_GQUATS,
    B_GOPAC,
    B_GCOLOR,
    B_GMEANS2D, // gradients of the host-array API
    B_META,     // pair count and indirect work-group counts (SPLAT_META_WORDS)
    B_COUNT
};

/* Pair capacity of a new state before its first check: enough for typical frames of small
 * scenes; larger frames grow it once. */
#define PAIRS_INITIAL 65536
/* Most pairs a frame may have: tile_ranges' indirect grid (pairs / 256) must stay within the
 * 65,535 work groups every device allows. */
#define PAIRS_MAX (65535u * 256u)
/* Camera slots of the params block: a training loop over up to this many views uploads each
 * camera once; beyond it, slots are reused in turn. */
#define PARAM_SLOTS 256

struct splat_vk_state {
    vkctx *ctx;
    pk_block b[B_COUNT];
    int n, width, height, valid;
    int64_t pairs;                        /* pairs of the last checked frame */
    uint32_t capacity;                    /* keys the sort buffers hold */
    int64_t regrows;                      /* times a check found a frame over capacity */
    int meta_ready;                       /* B_META allocated and cleared */
    float (*slot_key)[SPLAT_PARAMS_SLOT]; /* (PARAM_SLOTS) host copy of each camera slot */
    int slots_used, slot_next;
    uint32_t off_params; /* the last forward's camera slot (first float) */
    int force_cas;       /* compare-and-swap blend_back even with float atomics */
    int val_buf;         /* B_VAL0 or B_VAL1: where the sorted Gaussian ids are */
    int hi_buf;          /* B_HI0 or B_HI1: sorted tile ids */
};

splat_vk_state *splat_vk_state_create(vkctx *ctx) {
    if (!ctx) return NULL;
    splat_vk_state *st = calloc(1, sizeof *st);
    if (st) st->ctx = ctx, st->capacity = PAIRS_INITIAL;
    return st;
}

void splat_vk_state_destroy(splat_vk_state *st) {
    if (!st) return;
    for (int i = 0; i < B_COUNT; i++)
        vkctx_block_free(st->ctx, &st->b[i]);
    free(st->slot_key);
    free(st);
}

void splat_vk_state_force_cas(splat_vk_state *st, int on) {
    if (st) st->force_cas = on != 0;
}

int64_t splat_vk_state_pairs(splat_vk_state *st) {
    if (!st || !st->valid) return 0;
    int over = 0;
    if (splat_vk_state_check(st, &over) != PK_OK) return -1;
    return st->pairs;
}

void splat_vk_state_set_capacity(splat_vk_state *st, int64_t pairs) {
    if (!st) return;
    st->capacity = pairs < 1 ? 1u : pairs > PAIRS_MAX ? PAIRS_MAX : (uint32_t)pairs;
}

int64_t splat_vk_state_capacity(const splat_vk_state *st) { return st ? st->capacity : 0; }

int64_t splat_vk_state_regrows(const splat_vk_state *st) { return st ? st->regrows : 0; }

pk_status splat_vk_state_check(splat_vk_state *st, int *overflowed) {
    *overflowed = 0;
    if (!st) return pk_error(PK_ERR_INVALID, "splat_vk_state_check: state is NULL");
    if (!st->meta_ready) return PK_OK; /* no forward recorded yet */
    uint32_t m[2];
    PK_TRY(vkctx_block_read(st->ctx, &st->b[B_META], SPLAT_META_PAIRS * 4, m, sizeof m));
    st->pairs = m[0];
    if (m[1] <= st->capacity) return PK_OK;
    if (m[1] > PAIRS_MAX)
        return pk_error(PK_ERR_NOMEM,
                        "splat_vk: a frame has %u (tile, Gaussian) pairs, over the %u this "
                        "rasterizer can sort",
                        m[1], PAIRS_MAX);
    uint64_t grown = (uint64_t)m[1] + m[1] / 4 + 1024;
    st->capacity = grown > PAIRS_MAX ? PAIRS_MAX : (uint32_t)grown;
    st->regrows++;
    *overflowed = 1;
    const uint32_t zero_max = 0;
    return vkctx_block_write(st->ctx, &st->b[B_META], SPLAT_META_MAX_PAIRS * 4, &zero_max, 4);
}

/* Makes block i at least `bytes` long (at least 16); contents are not kept. */
static pk_status ensure(splat_vk_state *st, int i, size_t bytes) {
    if (bytes < 16) bytes = 16;
    if (st->b[i].size >= bytes && st->b[i].impl) return PK_OK;
    vkctx_block_free(st->ctx, &st->b[i]);
    memset(&st->b[i], 0, sizeof st->b[i]);
    return vkctx_block_alloc(st->ctx, bytes + bytes / 4, &st->b[i]);
}

/* Makes block i `bytes` long and uploads src. */
static pk_status upload(splat_vk_state *st, int i, const void *src, size_t bytes) {
    PK_TRY(ensure(st, i, bytes));
    if (bytes == 0) return PK_OK;
    return vkctx_block_write(st->ctx, &st->b[i], 0, src, bytes);
}

/* The state's block i as a device array at offset 0. */
static splat_vk_array own(splat_vk_state *st, int i) { return (splat_vk_array){&st->b[i], 0}; }

static pk_status dispatch_blocks(splat_vk_state *st, const char *name, pk_block *const *blocks,
                                 int nbuf, const void *pc, uint32_t pc_size, uint32_t gx,
                                 uint32_t gy) {
    vk_binding bind[16];
    for (int i = 0; i < nbuf; i++)
        bind[i] = (vk_binding){blocks[i], 0, 0};
    if (gx == 0 || gy == 0) return PK_OK;
    return vkctx_dispatch(st->ctx, name, nbuf, bind, pc, pc_size, gx, gy, 1);
}

static pk_status dispatch(splat_vk_state *st, const char *name, const int *bufs, int nbuf,
                          const void *pc, uint32_t pc_size, uint32_t gx, uint32_t gy) {
    pk_block *blocks[16];
    for (int i = 0; i < nbuf; i++)
        blocks[i] = &st->b[bufs[i]];
    return dispatch_blocks(st, name, blocks, nbuf, pc, pc_size, gx, gy);
}

/* Records an indirect dispatch over the state's blocks `bufs`, its work-group counts at
 * word `args_word` of the meta block. */
static pk_status dispatch_ind(splat_vk_state *st, const char *name, const int *bufs, int nbuf,
                              const void *pc, uint32_t pc_size, uint32_t args_word) {
    vk_binding bind[16];
    for (int i = 0; i < nbuf; i++)
        bind[i] = (vk_binding){&st->b[bufs[i]], 0, 0};
    return vkctx_dispatch_indirect(st->ctx, name, nbuf, bind, pc, pc_size, &st->b[B_META],
                                   (size_t)args_word * 4);
}

static uint32_t div_up(uint64_t a, uint32_t b) { return (uint32_t)((a + b - 1) / b); }

/* Records zeroing of `count` elements of block i from element 0 (nn/fill: 0.0f is all-zero
 * bits, so this clears uint buffers too). */
static pk_status zero(splat_vk_state *st, int i, uint32_t count) {
    if (count == 0) return PK_OK;
    pc_fill pc = {.off = 0, .n = count, .v = 0.0f};
    uint32_t groups = div_up(count, 256), gx = groups > 65535 ? 65535 : groups;
    int bufs[1] = {i};
    return dispatch(st, "nn/fill", bufs, 1, &pc, sizeof pc, gx, div_up(groups, gx));
}

/* Exclusive scan of n uints of block `data` in place; sums gets the block totals and, at
 * index ceil(n / SPLAT_SCAN_BLOCK), the grand total. */
static pk_status scan(splat_vk_state *st, int data, int sums, uint32_t n) {
    uint32_t blocks = div_up(n, SPLAT_SCAN_BLOCK);
    PK_TRY(ensure(st, sums, ((size_t)blocks + 1) * 4));
    if (n == 0) return zero(st, sums, 1);
    int bufs[3] = {data, sums, B_META};
    for (uint32_t pass = 0; pass < 3; pass++) {
        splat_scan_pc pc = {.n = n, .pass = pass};
        PK_TRY(dispatch(st, "splat/scan", bufs, 3, &pc, sizeof pc, pass == 1 ? 1 : blocks, 1));
    }
    return PK_OK;
}

/* Exclusive scan of the sort histogram (meta[SPLAT_META_HIST_N] uints of B_HIST, sized on the
 * device), block totals into B_HSUMS (allocated for the capacity's histogram). */
static pk_status scan_hist(splat_vk_state *st) {
    int bufs[3] = {B_HIST, B_HSUMS, B_META};
    for (uint32_t pass = 0; pass < 3; pass++) {
        splat_scan_pc pc = {.pass = pass, .from_meta = 1};
        if (pass == 1)
            PK_TRY(dispatch(st, "splat/scan", bufs, 3, &pc, sizeof pc, 1, 1));
        else
            PK_TRY(dispatch_ind(st, "splat/scan", bufs, 3, &pc, sizeof pc, SPLAT_META_HSCAN_ARGS));
    }
    return PK_OK;
}

/* The params slot of a camera (the background is a push constant: its floats stay 0). */
static void camera_params(const splat_cam_derived *cd, float p[SPLAT_PARAMS_SLOT]) {
    memset(p, 0, SPLAT_PARAMS_SLOT * sizeof(float));
    memcpy(p, cd->R, 9 * sizeof(float));
    memcpy(p + 9, cd->t, 3 * sizeof(float));
    memcpy(p + 12, cd->campos, 3 * sizeof(float));
    p[15] = cd->fx, p[16] = cd->fy, p[17] = cd->cx, p[18] = cd->cy;
    p[19] = cd->limx, p[20] = cd->limy, p[21] = cd->near;
}

/* Finds the camera's slot in the params block, uploading it into a free (or the oldest) slot
 * the first time it is seen; *off is its first float. */
static pk_status camera_slot(splat_vk_state *st, const splat_cam_derived *cd, uint32_t *off) {
    float p[SPLAT_PARAMS_SLOT];
    camera_params(cd, p);
    for (int i = 0; i < st->slots_used; i++)
        if (memcmp(st->slot_key[i], p, sizeof p) == 0) {
            *off = (uint32_t)i * SPLAT_PARAMS_SLOT;
            return PK_OK;
        }
    if (!st->slot_key) {
        st->slot_key = calloc(PARAM_SLOTS, sizeof *st->slot_key);
        if (!st->slot_key) return pk_error(PK_ERR_NOMEM, "splat_vk: out of host memory");
        PK_TRY(ensure(st, B_PARAMS, (size_t)PARAM_SLOTS * sizeof p));
    }
    int i = st->slots_used < PARAM_SLOTS ? st->slots_used++ : st->slot_next++ % PARAM_SLOTS;
    memcpy(st->slot_key[i], p, sizeof p);
    *off = (uint32_t)i * SPLAT_PARAMS_SLOT;
    return vkctx_block_write(st->ctx, &st->b[B_PARAMS], (size_t)*off * 4, p, sizeof p);
}

static size_t color_floats(int use_sh, int sh_degree) {
    return use_sh ? 3 * (size_t)(sh_degree + 1) * (size_t)(sh_degree + 1) : 3;
}

/* Checks that array `a` holds `count` elements inside its block (or is absent when allowed). */
static pk_status check_array(const splat_vk_array *a, size_t count, const char *what,
                             int optional) {
    if (!a->block) {
        if (optional) return PK_OK;
        return pk_error(PK_ERR_INVALID, "splat_vk: %s is missing", what);
    }
    if (!a->block->impl) return pk_error(PK_ERR_INVALID, "splat_vk: %s is a freed block", what);
    if (((size_t)a->off + count) * 4 > a->block->size)
        return pk_error(PK_ERR_INVALID, "splat_vk: %s needs elements [%u, %zu) of a %zu-byte block",
                        what, a->off, (size_t)a->off + count, a->block->size);
    return PK_OK;
}

static pk_status check_scene_dev(const splat_vk_scene *s) {
    if (!s || s->n < 0) return pk_error(PK_ERR_INVALID, "splat_vk: bad scene");
    if (s->use_sh && (s->sh_degree < 0 || s->sh_degree > SPLAT_MAX_SH_DEGREE))
        return pk_error(PK_ERR_INVALID, "splat_vk: sh_degree %d, expected 0..3", s->sh_degree);
    if (s->n == 0) return PK_OK;
    size_t n = (size_t)s->n;
    PK_TRY(check_array(&s->means, 3 * n, "means", 0));
    PK_TRY(check_array(&s->log_scales, 3 * n, "log_scales", 0));
    PK_TRY(check_array(&s->quats, 4 * n, "quats", 0));
    PK_TRY(check_array(&s->opacity_logits, n, "opacity_logits", 0));
    return check_array(&s->color, color_floats(s->use_sh, s->sh_degree) * n,
                       s->use_sh ? "sh" : "colors", 0);
}

/* The projection push constants of a scene; input arrays absent when n == 0 are bound to
 * the state's own (unread) blocks. */
static splat_project_pc project_pc(splat_vk_state *st, const splat_cam_derived *cd,
                                   const splat_vk_scene *s, pk_block *in[5]) {
    const splat_vk_array *a[5] = {&s->means, &s->log_scales, &s->quats, &s->opacity_logits,
                                  &s->color};
    for (int i = 0; i < 5; i++)
        in[i] = a[i]->block ? a[i]->block : &st->b[B_MEANS + i];
    return (splat_project_pc){.n = (uint32_t)s->n,
                              .width = (uint32_t)cd->width,
                              .height = (uint32_t)cd->height,
                              .tiles_x = (uint32_t)cd->tiles_x,
                              .tiles_y = (uint32_t)cd->tiles_y,
                              .sh_degree = s->use_sh ? (uint32_t)s->sh_degree : 0,
                              .use_sh = s->use_sh != 0,
                              .off_means = s->means.off,
                              .off_scales = s->log_scales.off,
                              .off_quats = s->quats.off,
                              .off_opacity = s->opacity_logits.off,
                              .off_color = s->color.off};
}

pk_status splat_vk_state_add_cameras(splat_vk_state *st, const splat_camera *cams, int n) {
    if (!st || (n > 0 && !cams))
        return pk_error(PK_ERR_INVALID, "splat_vk_state_add_cameras: state or cameras NULL");
    for (int i = 0; i < n && st->slots_used < PARAM_SLOTS; i++) {
        splat_cam_derived cd;
        uint32_t off;
        PK_TRY(splat_cam_derive(&cams[i], &cd));
        PK_TRY(camera_slot(st, &cd, &off));
    }
    return PK_OK;
}

pk_status splat_vk_forward_dev(splat_vk_state *st, const splat_camera *cam,
                               const splat_vk_scene *scene, const splat_vk_outputs *out) {
    if (!st || !out) return pk_error(PK_ERR_INVALID, "splat_vk_forward: state or outputs NULL");
    st->valid = 0;
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene_dev(scene));
    uint32_t n = (uint32_t)scene->n, tiles = (uint32_t)(cd.tiles_x * cd.tiles_y);
    size_t HW = (size_t)cd.width * cd.height;
    PK_TRY(check_array(&out->rgb, 3 * HW, "rgb", 1));
    PK_TRY(check_array(&out->alpha, HW, "alpha", 1));
    PK_TRY(check_array(&out->depth, HW, "depth", 1));
    PK_TRY(check_array(&out->radii, n, "radii", 1));
    for (int i = B_MEANS; i <= B_COLOR; i++)
        PK_TRY(ensure(st, i, 16)); /* bound in place of absent inputs when n == 0 */
    PK_TRY(camera_slot(st, &cd, &st->off_params));

    if (!st->meta_ready) { /* the running maximum starts at zero (cleared on the device) */
        PK_TRY(ensure(st, B_META, SPLAT_META_WORDS * 4));
        PK_TRY(zero(st, B_META, SPLAT_META_WORDS));
        st->meta_ready = 1;
    }

    /* 1. project, scan the tile counts; pair_args turns the total into the sort's sizes */
    PK_TRY(ensure(st, B_PROJ, (size_t)n * SPLAT_PROJ_STRIDE * 4));
    PK_TRY(ensure(st, B_TOUCHED, (size_t)n * 4));
    if (!out->radii.block) PK_TRY(ensure(st, B_RADII, (size_t)n * 4));
    splat_vk_array radii = out->radii.block ? out->radii : own(st, B_RADII);
    pk_block *in[5];
    splat_project_pc ppc = project_pc(st, &cd, scene, in);
    ppc.off_radii = radii.off;
    ppc.off_params = st->off_params;
    pk_block *pb[9] = {&st->b[B_PARAMS],  in[0],      in[1], in[2], in[3], in[4], &st->b[B_PROJ],
                       &st->b[B_TOUCHED], radii.block};
    PK_TRY(dispatch_blocks(st, "splat/project", pb, 9, &ppc, sizeof ppc, div_up(n, 256), 1));
    PK_TRY(scan(st, B_TOUCHED, B_SUMS, n));
    uint32_t cap = st->capacity;
    splat_args_pc apc = {.at = div_up(n, SPLAT_SCAN_BLOCK), .capacity = cap};
    int ab[2] = {B_SUMS, B_META};
    PK_TRY(dispatch(st, "splat/pair_args", ab, 2, &apc, sizeof apc, 1, 1));

    /* 2. keys, sorted by (tile, depth) with a stable LSD radix sort over the bits in use; the
     * grids and key counts come from the meta block */
    for (int i = B_HI0; i <= B_VAL1; i++)
        PK_TRY(ensure(st, i, (size_t)cap * 4));
    uint32_t sblocks_max = div_up(cap, SPLAT_SORT_BLOCK);
    PK_TRY(ensure(st, B_HIST, (size_t)256 * sblocks_max * 4));
    PK_TRY(ensure(st, B_HSUMS, ((size_t)div_up(256u * sblocks_max, SPLAT_SCAN_BLOCK) + 1) * 4));
    int cur = 0; /* 0: keys in B_HI0.., 1: in B_HI1.. */
    if (n > 0) {
        int eb[5] = {B_PROJ, B_TOUCHED, B_HI0, B_LO0, B_VAL0};
        splat_emit_pc epc = {.n = n, .tiles_x = (uint32_t)cd.tiles_x, .capacity = cap};
        PK_TRY(dispatch(st, "splat/emit", eb, 5, &epc, sizeof epc, div_up(n, 256), 1));
        int tile_bits = 0;
        while (tile_bits < 32 && (1u << tile_bits) < tiles)
            tile_bits++;
        for (uint32_t shift = 0; shift < 32u + (uint32_t)tile_bits; shift += 8) {
            int inb = cur ? B_HI1 : B_HI0, outb = cur ? B_HI0 : B_HI1;
            splat_sort_pc spc = {.shift = shift};
            int hb[4] = {inb, inb + 1, B_HIST, B_META};
            PK_TRY(
                dispatch_ind(st, "splat/sort_hist", hb, 4, &spc, sizeof spc, SPLAT_META_SORT_ARGS));
            PK_TRY(scan_hist(st));
            int sb[8] = {inb, inb + 1, inb + 2, B_HIST, outb, outb + 1, outb + 2, B_META};
            PK_TRY(dispatch_ind(st, "splat/sort_scatter", sb, 8, &spc, sizeof spc,
                                SPLAT_META_SORT_ARGS));
            cur ^= 1;
        }
    }
    st->hi_buf = cur ? B_HI1 : B_HI0;
    st->val_buf = st->hi_buf + 2;

    /* 3. tile ranges */
    PK_TRY(ensure(st, B_RANGES, (size_t)tiles * 8));
    int rb[3] = {st->hi_buf, B_RANGES, B_META};
    splat_ranges_pc rpc = {.tiles = tiles, .mode = 0};
    PK_TRY(dispatch(st, "splat/tile_ranges", rb, 3, &rpc, sizeof rpc, div_up(tiles, 256), 1));
    if (n > 0) {
        rpc.mode = 1;
        PK_TRY(
            dispatch_ind(st, "splat/tile_ranges", rb, 3, &rpc, sizeof rpc, SPLAT_META_RANGE_ARGS));
    }

    /* 4. blend into the caller's outputs (absent ones into the state's blocks) */
    if (!out->rgb.block) PK_TRY(ensure(st, B_RGB, 3 * HW * 4));
    if (!out->alpha.block) PK_TRY(ensure(st, B_ALPHA, HW * 4));
    if (!out->depth.block) PK_TRY(ensure(st, B_DEPTH, HW * 4));
    splat_vk_array rgb = out->rgb.block ? out->rgb : own(st, B_RGB);
    splat_vk_array alpha = out->alpha.block ? out->alpha : own(st, B_ALPHA);
    splat_vk_array depth = out->depth.block ? out->depth : own(st, B_DEPTH);
    PK_TRY(ensure(st, B_FINAL_T, HW * 4));
    PK_TRY(ensure(st, B_NCONTRIB, HW * 4));
    pk_block *bb[9] = {&st->b[B_PARAMS],    &st->b[B_PROJ],    &st->b[B_RANGES],
                       &st->b[st->val_buf], rgb.block,         alpha.block,
                       depth.block,         &st->b[B_FINAL_T], &st->b[B_NCONTRIB]};
    splat_blend_pc bpc = {.width = (uint32_t)cd.width,
                          .height = (uint32_t)cd.height,
                          .tiles_x = (uint32_t)cd.tiles_x,
                          .off_rgb = rgb.off,
                          .off_alpha = alpha.off,
                          .off_depth = depth.off,
                          .off_params = st->off_params,
                          .bg_r = scene->background[0],
                          .bg_g = scene->background[1],
                          .bg_b = scene->background[2]};
    PK_TRY(dispatch_blocks(st, "splat/blend", bb, 9, &bpc, sizeof bpc, (uint32_t)cd.tiles_x,
                           (uint32_t)cd.tiles_y));
    st->n = scene->n, st->width = cd.width, st->height = cd.height;
    st->valid = 1;
    return PK_OK;
}

pk_status splat_vk_backward_dev(splat_vk_state *st, const splat_camera *cam,
                                const splat_vk_scene *scene, const splat_vk_upstream *up,
                                const splat_vk_grads *grads) {
    if (!st || !st->valid)
        return pk_error(PK_ERR_INVALID, "splat_vk_backward: no successful forward on this state");
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene_dev(scene));
    if (scene->n != st->n || cd.width != st->width || cd.height != st->height)
        return pk_error(PK_ERR_INVALID,
                        "splat_vk_backward: scene/camera differ from the forward's");
    if (!up || !grads) return pk_error(PK_ERR_INVALID, "splat_vk_backward: d_rgb and grads needed");
    uint32_t n = (uint32_t)scene->n;
    size_t HW = (size_t)cd.width * cd.height;
    size_t nc = color_floats(scene->use_sh, scene->sh_degree) * n;
    PK_TRY(check_array(&up->d_rgb, 3 * HW, "d_rgb", 0));
    PK_TRY(check_array(&up->d_alpha, HW, "d_alpha", 1));
    PK_TRY(check_array(&up->d_depth, HW, "d_depth", 1));
    const splat_vk_array *g[6] = {&grads->means,          &grads->log_scales, &grads->quats,
                                  &grads->opacity_logits, &grads->color,      &grads->means2d};
    const size_t count[6] = {3 * (size_t)n, 3 * (size_t)n, 4 * (size_t)n, n, nc, 2 * (size_t)n};
    static const char *names[6] = {"means grad",   "log_scales grad",  "quats grad",
                                   "opacity grad", "sh / colors grad", "means2d grad"};
    for (int i = 0; i < 6; i++)
        PK_TRY(check_array(g[i], count[i], names[i], 1));
    if (n == 0) return PK_OK;

    PK_TRY(ensure(st, B_G2D, (size_t)n * SPLAT_GRAD_STRIDE * 4));
    PK_TRY(zero(st, B_G2D, n * SPLAT_GRAD_STRIDE));
    const pk_device_info *info = vkctx_info(st->ctx);
    const char *back =
        info && info->float_atomics && !st->force_cas ? "splat/blend_back" : "splat/blend_back:cas";
    /* absent d_alpha / d_depth are not read (has_d_*): bind d_rgb's block in their place */
    pk_block *bb[10] = {&st->b[B_PARAMS],
                        &st->b[B_PROJ],
                        &st->b[B_RANGES],
                        &st->b[st->val_buf],
                        &st->b[B_FINAL_T],
                        &st->b[B_NCONTRIB],
                        up->d_rgb.block,
                        up->d_alpha.block ? up->d_alpha.block : up->d_rgb.block,
                        up->d_depth.block ? up->d_depth.block : up->d_rgb.block,
                        &st->b[B_G2D]};
    splat_blend_pc bpc = {.width = (uint32_t)cd.width,
                          .height = (uint32_t)cd.height,
                          .tiles_x = (uint32_t)cd.tiles_x,
                          .has_d_alpha = up->d_alpha.block != NULL,
                          .has_d_depth = up->d_depth.block != NULL,
                          .off_rgb = up->d_rgb.off,
                          .off_alpha = up->d_alpha.off,
                          .off_depth = up->d_depth.off,
                          .off_params = st->off_params,
                          .bg_r = scene->background[0],
                          .bg_g = scene->background[1],
                          .bg_b = scene->background[2]};
    PK_TRY(dispatch_blocks(st, back, bb, 10, &bpc, sizeof bpc, (uint32_t)cd.tiles_x,
                           (uint32_t)cd.tiles_y));

    /* project_back adds straight into the wanted gradients; unwanted ones are bound to g2d
     * (not touched: their grad_mask bit is clear) */
    pk_block *in[5];
    splat_project_pc ppc = project_pc(st, &cd, scene, in);
    ppc.off_params = st->off_params;
    uint32_t *offs[6] = {&ppc.off_g_means,   &ppc.off_g_scales, &ppc.off_g_quats,
                         &ppc.off_g_opacity, &ppc.off_g_color,  &ppc.off_g_means2d};
    pk_block *pb[13] = {&st->b[B_PARAMS], in[0], in[1], in[2], in[3], in[4], &st->b[B_G2D]};
    for (int i = 0; i < 6; i++) {
        pb[7 + i] = g[i]->block ? g[i]->block : &st->b[B_G2D];
        *offs[i] = g[i]->off;
        if (g[i]->block) ppc.grad_mask |= 1u << i;
    }
    return dispatch_blocks(st, "splat/project_back", pb, 13, &ppc, sizeof ppc, div_up(n, 256), 1);
}

/* ---- host-array API: the *_dev path on the state's own blocks ---------------------------- */

static pk_status check_scene_host(const splat_scene_view *s) {
    if (!s || s->n < 0) return pk_error(PK_ERR_INVALID, "splat_vk: bad scene");
    if (s->n > 0 &&
        (!s->means || !s->log_scales || !s->quats || !s->opacity_logits || !s->sh == !s->colors))
        return pk_error(PK_ERR_INVALID, "splat_vk: scene arrays missing or both sh and colors");
    if (s->sh && (s->sh_degree < 0 || s->sh_degree > SPLAT_MAX_SH_DEGREE))
        return pk_error(PK_ERR_INVALID, "splat_vk: sh_degree %d, expected 0..3", s->sh_degree);
    return PK_OK;
}

/* Uploads the host scene into the state's input blocks and describes them. */
static pk_status upload_scene(splat_vk_state *st, const splat_scene_view *s, splat_vk_scene *dev) {
    PK_TRY(check_scene_host(s));
    size_t n = (size_t)s->n;
    *dev = (splat_vk_scene){.n = s->n, .use_sh = s->sh != NULL, .sh_degree = s->sh_degree};
    memcpy(dev->background, s->background, sizeof dev->background);
    if (n == 0) return PK_OK;
    PK_TRY(upload(st, B_MEANS, s->means, n * 3 * 4));
    PK_TRY(upload(st, B_SCALES, s->log_scales, n * 3 * 4));
    PK_TRY(upload(st, B_QUATS, s->quats, n * 4 * 4));
    PK_TRY(upload(st, B_OPAC, s->opacity_logits, n * 4));
    PK_TRY(upload(st, B_COLOR, s->sh ? s->sh : s->colors,
                  n * color_floats(s->sh != NULL, s->sh_degree) * 4));
    dev->means = own(st, B_MEANS), dev->log_scales = own(st, B_SCALES);
    dev->quats = own(st, B_QUATS), dev->opacity_logits = own(st, B_OPAC);
    dev->color = own(st, B_COLOR);
    return PK_OK;
}

pk_status splat_vk_forward(splat_vk_state *st, const splat_camera *cam,
                           const splat_scene_view *scene, const splat_outputs *out) {
    if (!st) return pk_error(PK_ERR_INVALID, "splat_vk_forward: state is NULL");
    st->valid = 0;
    if (!out || !out->rgb || !out->alpha)
        return pk_error(PK_ERR_INVALID, "splat_vk_forward: outputs rgb and alpha are required");
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    splat_vk_scene dev;
    PK_TRY(upload_scene(st, scene, &dev));
    splat_vk_outputs o = {{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}}; /* the state's blocks */
    PK_TRY(splat_vk_forward_dev(st, cam, &dev, &o));
    /* the outputs are read back anyway: check the pair count first (the same wait) and redo
     * a frame that did not fit, with the grown buffers */
    int over = 0;
    PK_TRY(splat_vk_state_check(st, &over));
    if (over) PK_TRY(splat_vk_forward_dev(st, cam, &dev, &o));

    size_t HW = (size_t)cd.width * cd.height, n = (size_t)scene->n;
    PK_TRY(vkctx_block_read(st->ctx, &st->b[B_RGB], 0, out->rgb, 3 * HW * 4));
    PK_TRY(vkctx_block_read(st->ctx, &st->b[B_ALPHA], 0, out->alpha, HW * 4));
    if (out->depth) PK_TRY(vkctx_block_read(st->ctx, &st->b[B_DEPTH], 0, out->depth, HW * 4));
    if ((out->radii || out->visible) && n > 0) {
        int32_t *radii = out->radii ? out->radii : malloc(n * sizeof *radii);
        if (!radii) return pk_error(PK_ERR_NOMEM, "splat_vk_forward: out of host memory");
        pk_status s = vkctx_block_read(st->ctx, &st->b[B_RADII], 0, radii, n * 4);
        /* project.comp writes radius 0 exactly for Gaussians that touch no tile */
        for (size_t g = 0; s == PK_OK && out->visible && g < n; g++)
            out->visible[g] = (uint8_t)(radii[g] > 0);
        if (radii != out->radii) free(radii);
        PK_TRY(s);
    }
    return PK_OK;
}

pk_status splat_vk_backward(splat_vk_state *st, const splat_camera *cam,
                            const splat_scene_view *scene, const float *d_rgb, const float *d_alpha,
                            const float *d_depth, const splat_grads *grads) {
    if (!st || !st->valid)
        return pk_error(PK_ERR_INVALID, "splat_vk_backward: no successful forward on this state");
    if (!d_rgb || !grads)
        return pk_error(PK_ERR_INVALID, "splat_vk_backward: d_rgb and grads needed");
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    if (!scene || scene->n != st->n || cd.width != st->width || cd.height != st->height)
        return pk_error(PK_ERR_INVALID,
                        "splat_vk_backward: scene/camera differ from the forward's");
    uint32_t n = (uint32_t)scene->n;
    size_t HW = (size_t)cd.width * cd.height;
    splat_vk_scene dev;
    PK_TRY(upload_scene(st, scene, &dev));
    splat_vk_upstream up = {.d_rgb = own(st, B_DRGB)};
    PK_TRY(upload(st, B_DRGB, d_rgb, 3 * HW * 4));
    if (d_alpha) {
        PK_TRY(upload(st, B_DALPHA, d_alpha, HW * 4));
        up.d_alpha = own(st, B_DALPHA);
    }
    if (d_depth) {
        PK_TRY(upload(st, B_DDEPTH, d_depth, HW * 4));
        up.d_depth = own(st, B_DDEPTH);
    }

    /* project_back adds into the gradients: upload the caller's and read them back */
    float *colors_grad = scene->sh ? grads->sh : grads->colors;
    size_t nc = color_floats(scene->sh != NULL, scene->sh_degree) * n;
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
    splat_vk_array *ga[6];
    splat_vk_grads dg = {{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}};
    ga[0] = &dg.means, ga[1] = &dg.log_scales, ga[2] = &dg.quats;
    ga[3] = &dg.opacity_logits, ga[4] = &dg.color, ga[5] = &dg.means2d;
    for (int i = 0; i < 6; i++)
        if (g[i].host && g[i].count) {
            PK_TRY(upload(st, g[i].buf, g[i].host, g[i].count * 4));
            *ga[i] = own(st, g[i].buf);
        }
    PK_TRY(splat_vk_backward_dev(st, cam, &dev, &up, &dg));
    for (int i = 0; i < 6; i++)
        if (g[i].host && g[i].count)
            PK_TRY(vkctx_block_read(st->ctx, &st->b[g[i].buf], 0, g[i].host, g[i].count * 4));
    return PK_OK;
}
