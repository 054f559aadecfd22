/* splat.c - the CPU rasterizer pipeline: projection over Gaussians, tile binning, the
 * (tile, depth) sort, blending by tiles, and the backward in the reverse order.
 *
 * Determinism without atomics: every (tile, Gaussian) pair gets its own gradient slot in
 * sorted order; a tile's pixels accumulate into their tile's slots only (one thread per
 * tile), and the projection backward sums each Gaussian's slots in a fixed order (its tiles
 * in row-major order). Results are bit-identical for any thread count. Per-Gaussian math is
 * in splat_project.c. */
#include "splat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "splat_project.h"

/* One (tile, Gaussian) pair in sorted order, packed for the blend loops. */
typedef struct splat_entry {
    float x, y;       // mean2D
    float ca, cb, cc; // conic
    float op;         // opacity
    float lo;         // power below this gives alpha < 1/255 for sure (skips the exp)
    float r, g, b;    // colour
    float depth;      // view z
    int32_t gid;      // Gaussian index
} splat_entry;

struct splat_state {
    int n, width, height, tiles_x, tiles_y, valid;
    int64_t pairs;
    /* capacities (elements) of the arrays below, in declaration order */
    size_t cap_proj, cap_offset, cap_src_tile, cap_src_to_k, cap_keys, cap_keys_tmp;
    size_t cap_entries, cap_egrad, cap_tile_start, cap_tile_fill, cap_final_T, cap_n_contrib;
    /* per Gaussian */
    splat_proj *proj; // (n)
    int64_t *offset;  // (n + 1) first pair of each Gaussian in Gaussian order
    /* per pair, Gaussian order ("source" index) */
    int32_t *src_tile; // (pairs)
    int32_t *src_to_k; // (pairs) sorted position of each source pair
    /* per pair, sorted order */
    uint64_t *keys, *keys_tmp; // (pairs) depth bits << 32 | source index
    splat_entry *entries;      // (pairs)
    float *egrad;              // (pairs, SPLAT_GRAD_STRIDE)
    /* per tile */
    int64_t *tile_start; // (tiles + 1)
    int64_t *tile_fill;  // (tiles)
    /* per pixel */
    float *final_T;     // (H, W)
    int32_t *n_contrib; // (H, W) entries of the tile list up to the last contributor
};

splat_state *splat_state_create(void) { return calloc(1, sizeof(splat_state)); }

void splat_state_destroy(splat_state *st) {
    if (!st) return;
    free(st->proj), free(st->offset), free(st->src_tile), free(st->src_to_k);
    free(st->keys), free(st->keys_tmp), free(st->entries), free(st->egrad);
    free(st->tile_start), free(st->tile_fill), free(st->final_T), free(st->n_contrib);
    free(st);
}

int64_t splat_state_pairs(const splat_state *st) { return st ? st->pairs : 0; }

/* Grows *p to hold `count` elements of `size` bytes (with some slack); never shrinks. */
static int grow(void **p, size_t *cap, size_t count, size_t size) {
    if (count <= *cap && *p) return 1;
    size_t want = count + count / 4 + 16;
    void *q = realloc(*p, want * size);
    if (!q) return 0;
    *p = q;
    *cap = want;
    return 1;
}

/* Grows the state's array `name` to `count` elements. */
#define GROW(st, name, count)                                                                      \
    grow((void **)&(st)->name, &(st)->cap_##name, (count), sizeof *(st)->name)

static pk_status check_scene(const splat_scene_view *s) {
    if (!s) return pk_error(PK_ERR_INVALID, "splat: scene is NULL");
    if (s->n < 0) return pk_error(PK_ERR_INVALID, "splat: n = %d, expected >= 0", s->n);
    if (s->n > 0 && (!s->means || !s->log_scales || !s->quats || !s->opacity_logits))
        return pk_error(PK_ERR_INVALID, "splat: means, log_scales, quats, opacity_logits needed");
    if (s->n > 0 && !s->sh == !s->colors)
        return pk_error(PK_ERR_INVALID, "splat: give exactly one of sh and colors");
    if (s->sh && (s->sh_degree < 0 || s->sh_degree > SPLAT_MAX_SH_DEGREE))
        return pk_error(PK_ERR_INVALID, "splat: sh_degree %d, expected 0..%d", s->sh_degree,
                        SPLAT_MAX_SH_DEGREE);
    return PK_OK;
}

/* ---------------------------------------------------------------- forward: projection */

typedef struct fwd_ctx {
    splat_state *st;
    const splat_cam_derived *cd;
    const splat_scene_view *s;
    const splat_outputs *out;
    float bg[3];
} fwd_ctx;

static void project_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    for (int64_t g = b; g < e; g++) {
        splat_proj *p = &c->st->proj[g];
        int vis = splat_project_one(c->cd, c->s, (int)g, p);
        c->st->offset[g + 1] =
            vis ? (int64_t)(p->rect[1] - p->rect[0]) * (p->rect[3] - p->rect[2]) : 0;
    }
}

/* Writes each visible Gaussian's touched tiles (row-major) at its offset. */
static void emit_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t g = b; g < e; g++) {
        const splat_proj *p = &st->proj[g];
        int64_t o = st->offset[g];
        if (st->offset[g + 1] == o) continue;
        for (int ty = p->rect[2]; ty < p->rect[3]; ty++)
            for (int tx = p->rect[0]; tx < p->rect[1]; tx++)
                st->src_tile[o++] = ty * st->tiles_x + tx;
    }
}

/* ------------------------------------------------------------- forward: per-tile sort */

static uint32_t float_key(float d) {
    uint32_t u;
    memcpy(&u, &d, sizeof u); /* depth > near > 0: IEEE order equals integer order */
    return u;
}

/* Sorts keys[0, n) ascending; equal depths keep source order (the low 32 bits). */
static void sort_keys(uint64_t *keys, uint64_t *tmp, int64_t n) {
    if (n <= 48) {
        for (int64_t i = 1; i < n; i++) {
            uint64_t k = keys[i];
            int64_t j = i - 1;
            while (j >= 0 && keys[j] > k)
                keys[j + 1] = keys[j], j--;
            keys[j + 1] = k;
        }
        return;
    }
    /* LSD radix over the 32 depth bits, 8 at a time; the input arrives in source order and
     * each pass is stable, so ties stay in source order. Passes with one bucket are skipped. */
    uint64_t *a = keys, *b = tmp;
    for (int shift = 32; shift < 64; shift += 8) {
        int64_t hist[256] = {0};
        for (int64_t i = 0; i < n; i++)
            hist[(a[i] >> shift) & 255]++;
        if (hist[(a[0] >> shift) & 255] == n) continue;
        int64_t sum = 0;
        for (int i = 0; i < 256; i++) {
            int64_t h = hist[i];
            hist[i] = sum;
            sum += h;
        }
        for (int64_t i = 0; i < n; i++)
            b[hist[(a[i] >> shift) & 255]++] = a[i];
        uint64_t *t = a;
        a = b, b = t;
    }
    if (a != keys) memcpy(keys, a, (size_t)n * sizeof *keys);
}

static void sort_pack_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t t = b; t < e; t++) {
        int64_t s0 = st->tile_start[t], s1 = st->tile_start[t + 1];
        sort_keys(st->keys + s0, st->keys_tmp + s0, s1 - s0);
        for (int64_t k = s0; k < s1; k++) {
            int32_t src = (int32_t)(st->keys[k] & 0xffffffffu);
            st->src_to_k[src] = (int32_t)k;
        }
    }
}

/* Fills the packed entries; the Gaussian of each source pair is found by walking offsets. */
static void pack_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t g = b; g < e; g++) {
        const splat_proj *p = &st->proj[g];
        for (int64_t src = st->offset[g]; src < st->offset[g + 1]; src++) {
            splat_entry *en = &st->entries[st->src_to_k[src]];
            en->x = p->xy[0], en->y = p->xy[1];
            en->ca = p->conic[0], en->cb = p->conic[1], en->cc = p->conic[2];
            en->op = p->opacity;
            /* o exp(power) < 1/255 <=> power < log(1 / (255 o)); the margin keeps this a
             * strict subset of the exact test below, so results are unchanged */
            en->lo = logf(1.f / (255.f * p->opacity)) - 1e-3f;
            en->r = p->rgb[0], en->g = p->rgb[1], en->b = p->rgb[2];
            en->depth = p->depth;
            en->gid = (int32_t)g;
        }
    }
}

/* ------------------------------------------------------------------ forward: blending */

/* The blend's per-(pixel, Gaussian) test, shared by forward and backward so both make the
 * same decisions: returns alpha, or 0 when the pair is skipped (power > 0, alpha < 1/255). */
static inline float entry_alpha(const splat_entry *en, float px, float py, float *dx, float *dy,
                                float *G) {
    float ddx = en->x - px, ddy = en->y - py;
    float power = -0.5f * (en->ca * ddx * ddx + en->cc * ddy * ddy) - en->cb * ddx * ddy;
    if (power > 0.f || power < en->lo) return 0.f;
    float g = expf(power);
    float alpha = fminf(0.99f, en->op * g);
    if (alpha < 1.f / 255.f) return 0.f;
    *dx = ddx, *dy = ddy, *G = g;
    return alpha;
}

static void blend_range(void *arg, int64_t b, int64_t e) {
    fwd_ctx *c = arg;
    splat_state *st = c->st;
    int W = st->width, H = st->height;
    int64_t HW = (int64_t)W * H;
    const splat_outputs *out = c->out;
    for (int64_t t = b; t < e; t++) {
        int tx = (int)(t % st->tiles_x), ty = (int)(t / st->tiles_x);
        int64_t s0 = st->tile_start[t], s1 = st->tile_start[t + 1];
        const splat_entry *ents = st->entries;
        int x1 = tx * SPLAT_TILE + SPLAT_TILE, y1 = ty * SPLAT_TILE + SPLAT_TILE;
        if (x1 > W) x1 = W;
        if (y1 > H) y1 = H;
        for (int y = ty * SPLAT_TILE; y < y1; y++) {
            for (int x = tx * SPLAT_TILE; x < x1; x++) {
                float px = (float)x + 0.5f, py = (float)y + 0.5f;
                float T = 1.f, cr = 0.f, cg = 0.f, cb = 0.f, cd = 0.f;
                int32_t last = 0;
                for (int64_t k = s0; k < s1; k++) {
                    const splat_entry *en = &ents[k];
                    float dx, dy, G;
                    float alpha = entry_alpha(en, px, py, &dx, &dy, &G);
                    if (alpha == 0.f) continue;
                    float test_T = T * (1.f - alpha);
                    if (test_T < 1e-4f) break;
                    float w = alpha * T;
                    cr += w * en->r, cg += w * en->g, cb += w * en->b, cd += w * en->depth;
                    T = test_T;
                    last = (int32_t)(k - s0 + 1);
                }
                int64_t i = (int64_t)y * W + x;
                st->final_T[i] = T;
                st->n_contrib[i] = last;
                out->rgb[i] = cr + T * c->bg[0];
                out->rgb[HW + i] = cg + T * c->bg[1];
                out->rgb[2 * HW + i] = cb + T * c->bg[2];
                out->alpha[i] = 1.f - T;
                if (out->depth) out->depth[i] = cd;
            }
        }
    }
}

pk_status splat_forward(splat_state *st, pk_pool *pool, const splat_camera *cam,
                        const splat_scene_view *scene, const splat_outputs *out) {
    if (!st) return pk_error(PK_ERR_INVALID, "splat_forward: state is NULL");
    st->valid = 0;
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene(scene));
    if (!out || !out->rgb || !out->alpha)
        return pk_error(PK_ERR_INVALID, "splat_forward: outputs rgb and alpha are required");
    int n = scene->n;
    int64_t tiles = (int64_t)cd.tiles_x * cd.tiles_y, HW = (int64_t)cd.width * cd.height;
    if (!GROW(st, proj, (size_t)n + 1) || !GROW(st, offset, (size_t)n + 1) ||
        !GROW(st, tile_start, (size_t)tiles + 1) || !GROW(st, tile_fill, (size_t)tiles + 1) ||
        !GROW(st, final_T, (size_t)HW) || !GROW(st, n_contrib, (size_t)HW))
        return pk_error(PK_ERR_NOMEM, "splat_forward: out of memory (n = %d, %dx%d)", n, cd.width,
                        cd.height);
    st->n = n, st->width = cd.width, st->height = cd.height;
    st->tiles_x = cd.tiles_x, st->tiles_y = cd.tiles_y;
    fwd_ctx c = {.st = st, .cd = &cd, .s = scene, .out = out};
    for (int i = 0; i < 3; i++)
        c.bg[i] = scene->background[i];

    /* 1. project; offset[g + 1] = pairs of g, then prefix sums */
    st->offset[0] = 0;
    pk_parallel_for(pool, n, 256, project_range, &c);
    for (int g = 0; g < n; g++)
        st->offset[g + 1] += st->offset[g];
    int64_t pairs = st->offset[n];
    if (pairs > INT32_MAX)
        return pk_error(PK_ERR_INVALID, "splat_forward: %lld tile pairs exceed 2^31",
                        (long long)pairs);
    st->pairs = pairs;
    size_t np = (size_t)pairs + 1;
    if (!GROW(st, src_tile, np) || !GROW(st, src_to_k, np) || !GROW(st, keys, np) ||
        !GROW(st, keys_tmp, np) || !GROW(st, entries, np))
        return pk_error(PK_ERR_NOMEM, "splat_forward: out of memory (%lld pairs)",
                        (long long)pairs);

    /* 2. bin: tiles of each Gaussian, then a stable counting scatter into tile buckets */
    pk_parallel_for(pool, n, 256, emit_range, &c);
    memset(st->tile_start, 0, (size_t)(tiles + 1) * sizeof *st->tile_start);
    for (int64_t i = 0; i < pairs; i++)
        st->tile_start[st->src_tile[i] + 1]++;
    for (int64_t t = 0; t < tiles; t++)
        st->tile_start[t + 1] += st->tile_start[t];
    memcpy(st->tile_fill, st->tile_start, (size_t)tiles * sizeof *st->tile_fill);
    for (int g = 0; g < n; g++) {
        uint64_t dk = (uint64_t)float_key(st->proj[g].depth) << 32;
        for (int64_t src = st->offset[g]; src < st->offset[g + 1]; src++)
            st->keys[st->tile_fill[st->src_tile[src]]++] = dk | (uint64_t)src;
    }

    /* 3. sort each tile by depth, pack entries in sorted order */
    pk_parallel_for(pool, tiles, 1, sort_pack_range, &c);
    pk_parallel_for(pool, n, 256, pack_range, &c);

    /* 4. blend */
    pk_parallel_for(pool, tiles, 1, blend_range, &c);

    for (int g = 0; g < n; g++) {
        int vis = st->offset[g + 1] > st->offset[g];
        if (out->radii) out->radii[g] = vis ? st->proj[g].radius : 0;
        if (out->visible) out->visible[g] = (uint8_t)vis;
    }
    st->valid = 1;
    return PK_OK;
}

/* -------------------------------------------------------------------------- backward */

typedef struct bwd_ctx {
    splat_state *st;
    const splat_cam_derived *cd;
    const splat_scene_view *s;
    const float *d_rgb, *d_alpha, *d_depth;
    const splat_grads *grads;
    float bg[3];
} bwd_ctx;

/* Per tile: walks each pixel's list back to front from its last contributor, recovering T
 * by division as 3DGS's renderCUDA backward, and adds into the tile's pair slots. */
static void blend_back_range(void *arg, int64_t b, int64_t e) {
    bwd_ctx *c = arg;
    splat_state *st = c->st;
    int W = st->width, H = st->height;
    int64_t HW = (int64_t)W * H;
    for (int64_t t = b; t < e; t++) {
        int tx = (int)(t % st->tiles_x), ty = (int)(t / st->tiles_x);
        int64_t s0 = st->tile_start[t], s1 = st->tile_start[t + 1];
        if (s1 == s0) continue;
        float *eg = st->egrad;
        memset(eg + s0 * SPLAT_GRAD_STRIDE, 0, (size_t)(s1 - s0) * SPLAT_GRAD_STRIDE * sizeof *eg);
        const splat_entry *ents = st->entries;
        int x1 = tx * SPLAT_TILE + SPLAT_TILE, y1 = ty * SPLAT_TILE + SPLAT_TILE;
        if (x1 > W) x1 = W;
        if (y1 > H) y1 = H;
        for (int y = ty * SPLAT_TILE; y < y1; y++) {
            for (int x = tx * SPLAT_TILE; x < x1; x++) {
                int64_t i = (int64_t)y * W + x;
                int32_t last = st->n_contrib[i];
                if (last == 0) continue;
                float px = (float)x + 0.5f, py = (float)y + 0.5f;
                float dr = c->d_rgb[i], dg = c->d_rgb[HW + i], db = c->d_rgb[2 * HW + i];
                float dd = c->d_depth ? c->d_depth[i] : 0.f;
                float T_final = st->final_T[i], T = T_final;
                /* d/d alpha_j of T_final bg and 1 - T_final is T_final / (1 - alpha_j) times
                 * this */
                float dfinal = (c->d_alpha ? c->d_alpha[i] : 0.f) -
                               (c->bg[0] * dr + c->bg[1] * dg + c->bg[2] * db);
                float acc_r = 0.f, acc_g = 0.f, acc_b = 0.f, acc_d = 0.f;
                float last_a = 0.f, last_r = 0.f, last_g = 0.f, last_b = 0.f, last_d = 0.f;
                for (int64_t k = s0 + last - 1; k >= s0; k--) {
                    const splat_entry *en = &ents[k];
                    float dx, dy, G;
                    float alpha = entry_alpha(en, px, py, &dx, &dy, &G);
                    if (alpha == 0.f) continue;
                    float one_m = 1.f - alpha;
                    T = T / one_m;
                    float w = alpha * T;
                    float *g = eg + k * SPLAT_GRAD_STRIDE;
                    g[6] += w * dr, g[7] += w * dg, g[8] += w * db, g[9] += w * dd;
                    acc_r = last_a * last_r + (1.f - last_a) * acc_r;
                    acc_g = last_a * last_g + (1.f - last_a) * acc_g;
                    acc_b = last_a * last_b + (1.f - last_a) * acc_b;
                    acc_d = last_a * last_d + (1.f - last_a) * acc_d;
                    float dL_da = (en->r - acc_r) * dr + (en->g - acc_g) * dg +
                                  (en->b - acc_b) * db + (en->depth - acc_d) * dd;
                    dL_da = dL_da * T + T_final / one_m * dfinal;
                    last_a = alpha, last_r = en->r, last_g = en->g, last_b = en->b;
                    last_d = en->depth;
                    /* alpha = min(0.99, o G): no gradient through the clamp */
                    if (en->op * G > 0.99f) continue;
                    g[5] += G * dL_da;
                    float dL_dG = en->op * dL_da * G; /* d loss / d power */
                    g[0] += dL_dG * (-en->ca * dx - en->cb * dy);
                    g[1] += dL_dG * (-en->cc * dy - en->cb * dx);
                    g[2] += dL_dG * (-0.5f * dx * dx);
                    g[3] += dL_dG * (-dx * dy);
                    g[4] += dL_dG * (-0.5f * dy * dy);
                }
            }
        }
    }
}

/* Per Gaussian: sums its pair slots in source order, then the projection backward. */
static void project_back_range(void *arg, int64_t b, int64_t e) {
    bwd_ctx *c = arg;
    splat_state *st = c->st;
    for (int64_t g = b; g < e; g++) {
        int64_t o0 = st->offset[g], o1 = st->offset[g + 1];
        if (o0 == o1) continue;
        float d[SPLAT_GRAD_STRIDE] = {0};
        for (int64_t src = o0; src < o1; src++) {
            const float *eg = st->egrad + (int64_t)st->src_to_k[src] * SPLAT_GRAD_STRIDE;
            for (int j = 0; j < SPLAT_GRAD_STRIDE; j++)
                d[j] += eg[j];
        }
        splat_project_back_one(c->cd, c->s, (int)g, d, c->grads);
    }
}

pk_status splat_backward(splat_state *st, pk_pool *pool, const splat_camera *cam,
                         const splat_scene_view *scene, const float *d_rgb, const float *d_alpha,
                         const float *d_depth, const splat_grads *grads) {
    if (!st || !st->valid)
        return pk_error(PK_ERR_INVALID, "splat_backward: no successful forward on this state");
    splat_cam_derived cd;
    PK_TRY(splat_cam_derive(cam, &cd));
    PK_TRY(check_scene(scene));
    if (scene->n != st->n || cd.width != st->width || cd.height != st->height)
        return pk_error(PK_ERR_INVALID,
                        "splat_backward: scene/camera (n %d, %dx%d) differ from the forward's "
                        "(n %d, %dx%d)",
                        scene->n, cd.width, cd.height, st->n, st->width, st->height);
    if (!d_rgb || !grads) return pk_error(PK_ERR_INVALID, "splat_backward: d_rgb and grads needed");
    if (!GROW(st, egrad, (size_t)(st->pairs + 1) * SPLAT_GRAD_STRIDE))
        return pk_error(PK_ERR_NOMEM, "splat_backward: out of memory (%lld pairs)",
                        (long long)st->pairs);
    bwd_ctx c = {.st = st,
                 .cd = &cd,
                 .s = scene,
                 .d_rgb = d_rgb,
                 .d_alpha = d_alpha,
                 .d_depth = d_depth,
                 .grads = grads};
    for (int i = 0; i < 3; i++)
        c.bg[i] = scene->background[i];
    pk_parallel_for(pool, (int64_t)st->tiles_x * st->tiles_y, 1, blend_back_range, &c);
    pk_parallel_for(pool, st->n, 256, project_back_range, &c);
    return PK_OK;
}
