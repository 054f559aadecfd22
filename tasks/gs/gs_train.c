/* gs_train.c - the 3DGS trainer: scene checks, initialisation (SfM points or random points in
 * the volume the cameras look into), the training step in 3DGS train.py's order, held-out
 * evaluation, outputs and checkpoints that resume bit-exactly.
 *
 * Deviations from 3DGS, each for a reason:
 * - The position learning rate decays over the run's own length (gsplat does the same), not
 *   a fixed 30,000 steps, so short runs end with the small final rate.
 * - The densification window ends at 15,000 steps or at half the run when that is shorter
 *   (3DGS: 15,000 of 30,000), so short runs still settle after their last split; runs under
 *   5,000 steps start densifying at a tenth of the run instead of step 500.
 * - Scenes without points start from random points in a cube centred on the cameras' focus
 *   point (least-squares intersection of their optical axes) with a half-side of half the
 *   mean camera-to-focus distance (3DGS's synthetic scenes: a fixed [-1.3, 1.3]^3).
 * Options beyond 3DGS's defaults (all off unless asked for): coarse to fine (OpenSplat's and
 * nerfstudio's --num-downscales / --resolution-schedule: training views from a 2x2-box pyramid
 * of the ground truth, held-out evaluation always at full size), a background colour and
 * 3DGS's random training background.
 * The training render and loss are ops on the tape (pk_splat, pk_l1, pk_ssim) on the chosen
 * device; evaluation renders call the CPU rasterizer directly and measure with gs_metrics.
 * On Vulkan with the 3DGS or the Scaffold-GS source in one process the source is resident
 * (gs_explicit_dev, gs_scaffold_dev; a made source through its dev_* hooks: Momentum-GS on one
 * device): parameters (anchors; the decoders are device parameters
 * anyway), Adam and statistics on the device, ground truths uploaded once, losses kept in
 * a device ring and read back (with the rasterizer's pair-count check) at most every
 * HIST_ROWS steps, before densification / opacity resets / adjust_anchor, at evaluations,
 * checkpoints and the end; the host copy is refreshed only then (sync_host). A read-back that
 * finds an overflowed render rewinds device and host to the snapshot of the previous one.
 * Every step is timed by phase on the wall and process-CPU clocks (gs_timing). */
#include "gs_train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "autograd.h"
#include "checkpoint.h"
#include "gs_metrics.h"
#include "gs_scaffold.h"
#include "gs_source.h"
#include "image.h"
#include "io_util.h"
#include "ops/ops_splat.h"
#include "ops/ops_ssim.h"
#include "ply.h"
#include "rng.h"
#include "dist.h"
#include "run.h"
#include "scene.h"

#define LOG_COLS 5
#define HIST_ROWS 100 /* resident training reads its losses back at least every 100 steps */
static const char *const log_cols[LOG_COLS] = {"step", "loss", "psnr", "gaussians", "seconds"};

struct gs_trainer {
    gs_train_options o;
    pk_ctx *ctx;
    pk_pool *pool;
    pk_scene scene;
    int n_train, n_test;
    int *train_idx, *test_idx;
    double *test_psnr, *test_ssim; /* per held-out view, from the last evaluation */
    pk_image *images;              // (scene.n) at the chosen downscale, test and train
    splat_camera *cams;            // (scene.n)
    int levels;                    // coarse-to-fine levels below full size (0: none)
    float **pyramid;          // (scene.n, levels) planar ground truth at 1/2^(l+1); training views
    splat_camera *level_cams; // (scene.n, levels) their cameras
    gs_explicit *gx;          // the explicit source (3DGS), or NULL
    gs_scaffold *sc;          // the Scaffold-GS source, or NULL
    gs_scaffold_options sco;
    float *grad2d; // (n, 2) d mean2D of a tensor-source render
    int64_t grad2d_cap;
    gs_source src;
    splat_state *st;             // evaluation renders
    pk_splat_renderer *renderer; // training renders (the op's saved state)
    pk_rng rng;
    int32_t *order; // (n_train) current epoch's camera order (positions into train_idx)
    int64_t order_pos;
    int64_t step;
    double extent;
    bool from_points;
    bool device_fallback; // the default device lacked the rasterizer: CPU backend instead
    float *gt, *rgb, *alpha, *d_rgb; // (3, H, W) ... for the largest image
    int32_t *radii;
    int64_t radii_cap;
    double seconds; // training seconds so far (restored from the checkpoint on resume)
    int64_t start_step;
    gs_timing timing;
    pk_step_counters counters; // device traffic per step (metrics.json "vulkan")
    char *renders_dir;
    pk_run *run;       // the run folder: options, log.csv, metrics.json, checkpoints
    char *resume_json; // the options a resumed run must share
    float *dp_buf;     // data parallel: the packed gradients and statistics terms of a step
    size_t dp_cap;
    dist_stats comm; // communication inside the training steps (world_grads)
    /* Vulkan, 3DGS source, one process: the Gaussians, their Adam state and statistics live on
     * the device (the host copy in gx is refreshed by sync_host), and so do the training
     * views' ground truths (one upload each) */
    gs_explicit_dev *dev;
    gs_scaffold_dev *sdev; /* the same for the Scaffold-GS source (anchors; decoders are on the
                              device already) */
    bool sres;             /* the same through the source's dev_* hooks (Momentum-GS) */
    bool host_stale;       // gx is older than dev
    pk_arena *gt_arena;    // the ground truths on the device
    tensor **gt_dev;       // (scene.n, levels + 1) training views' ground truth, NULL elsewhere
    /* resident: each step adds its loss and squared error into a row of hist; a flush reads
     * the rows of the steps since the last one (one wait, with the rasterizer's pair-count
     * check) and writes their log rows, or rewinds to the snapshot of the last flush when a
     * render did not fit the rasterizer's buffers */
    tensor *hist; // (HIST_ROWS, 2)
    int npend;    // rows in use
    struct {
        int64_t step, gaussians, npix;
        double seconds;
    } pend[HIST_ROWS];           // the steps of rows 0..npend-1 (the last one may be in flight)
    double last_loss, last_psnr; // of the last flushed step (progress lines between flushes)
    pk_rng snap_rng;             // host state at the snapshot
    int32_t *snap_order;
    int64_t snap_order_pos, snap_step;
    double snap_seconds;
    int64_t rewinds; // flushes that found a render over the buffers
    bool sized;      // a flush has run in this process: the pair buffers fit the scene's frames
};

/* Whether the source lives on the device (resident training). */
static bool resident(const gs_trainer *t) { return t->dev || t->sdev || t->sres; }

/* Resident training: the state a flush that finds an overflowed render rewinds to (taken at
 * the end of each step that flushed). */
static pk_status snapshot(gs_trainer *t) {
    PK_TRY(t->dev    ? gs_explicit_dev_snapshot(t->dev)
           : t->sdev ? gs_scaffold_dev_snapshot(t->sdev)
                     : t->src.dev_snapshot(t->src.self));
    t->snap_rng = t->rng;
    memcpy(t->snap_order, t->order, sizeof(int32_t) * (size_t)t->n_train);
    t->snap_order_pos = t->order_pos, t->snap_step = t->step, t->snap_seconds = t->seconds;
    return PK_OK;
}

static pk_status log_row(gs_trainer *t, int64_t step, int64_t gaussians, double seconds,
                         double loss, double psnr);

/* Resident training: reads the loss and squared error of the steps since the last flush (one
 * wait) together with the rasterizer's pair count. `current` says whether the last row is
 * the step in progress (its loss goes to *loss / *se, its log row is the step's to write);
 * the others' log rows are written here. When a render since the last flush had more pairs
 * than the rasterizer's buffers (they have grown now), nothing is written: the device and the
 * host go back to the snapshot (*rewound). */
static pk_status flush(gs_trainer *t, bool current, double *loss, double *se, bool *rewound) {
    *rewound = false;
    if (!resident(t) || t->npend == 0) return PK_OK;
    float rows[2 * HIST_ROWS];
    tensor *used = tensor_view(t->ctx->step, t->hist, 1, (int64_t[]){2 * (int64_t)t->npend},
                               (int64_t[]){1}, t->hist->offset);
    if (!used) return pk_error(PK_ERR_NOMEM, "3DGS: %s", polyak_error());
    PK_TRY(tensor_download(used, rows));
    int over = 0;
    PK_TRY(pk_splat_renderer_check(t->renderer, &over));
    int done = t->npend - (current ? 1 : 0);
    t->npend = 0;
    PK_TRY(tensor_fill(t->hist, 0.0f));
    if (over) {
        t->rewinds++;
        PK_TRY(t->dev    ? gs_explicit_dev_rewind(t->dev)
               : t->sdev ? gs_scaffold_dev_rewind(t->sdev)
                         : t->src.dev_rewind(t->src.self));
        t->rng = t->snap_rng;
        memcpy(t->order, t->snap_order, sizeof(int32_t) * (size_t)t->n_train);
        t->order_pos = t->snap_order_pos, t->step = t->snap_step, t->seconds = t->snap_seconds;
        *rewound = true;
        return PK_OK;
    }
    for (int i = 0; i < done; i++) {
        double l = rows[2 * i], e = rows[2 * i + 1];
        double psnr = e > 0 ? 10 * log10((double)t->pend[i].npix / e) : 100;
        PK_TRY(log_row(t, t->pend[i].step, t->pend[i].gaussians, t->pend[i].seconds, l, psnr));
        t->last_loss = l, t->last_psnr = psnr;
    }
    if (current) {
        *loss = rows[2 * done], *se = rows[2 * done + 1];
        return PK_OK;
    }
    return snapshot(t); /* between steps: the next rewind comes back here */
}

/* Resident training: refreshes the host copy of the Gaussians from the device (before
 * evaluations, checkpoints, exports and densification). */
static pk_status sync_host(gs_trainer *t) {
    bool rewound;
    PK_TRY(flush(t, false, NULL, NULL, &rewound));
    if (!resident(t) || !t->host_stale) return PK_OK;
    PK_TRY(t->dev    ? gs_explicit_dev_download(t->dev)
           : t->sdev ? gs_scaffold_dev_download(t->sdev)
                     : t->src.dev_download(t->src.self));
    t->host_stale = false;
    return PK_OK;
}

gs_train_options gs_train_defaults(gs_train_options o) {
    if (!o.iters) o.iters = 30000;
    if (!o.downscale) o.downscale = 1;
    if (!o.test_every) o.test_every = 8;
    if (!o.keep_checkpoints) o.keep_checkpoints = 3;
    if (!o.max_gaussians) o.max_gaussians = 5000000;
    if (!o.init_points) o.init_points = 100000;
    if (!o.densify_interval) o.densify_interval = 100;
    if (!o.opacity_reset) o.opacity_reset = 3000;
    if (!o.sh_interval) o.sh_interval = 1000;
    if (!o.grad_threshold) o.grad_threshold = 2e-4;
    /* coarse to fine is off unless asked for: it did not help on the mouse photos (RESULTS.md);
     * asked for without a schedule, OpenSplat's 3,000 steps per level */
    if (!o.num_downscales) o.num_downscales = -1;
    if (!o.resolution_schedule) o.resolution_schedule = 3000;
    return o;
}

gs_train_options gs_train_for_scene(gs_train_options o, bool photos) {
    if (!o.densify_from)
        o.densify_from = photos ? (o.iters >= 2000 ? 200 : o.iters / 10)
                                : (o.iters >= 5000 ? 500 : o.iters / 10);
    /* photos: densification ends at step 1,000 (or half the run when shorter); renders: 3DGS's
     * 15,000, or half the run when shorter (BENCHMARKS.md, issue 19: the window up to half the
     * run overfits sparse real captures) */
    int64_t half = o.iters >= 30000 ? 15000 : o.iters / 2;
    if (!o.densify_until) o.densify_until = photos && half > 1000 ? 1000 : half;
    if (!o.prune_big_scale) o.prune_big_scale = photos ? -1 : 0.1;
    if (!o.random_background) o.random_background = photos ? 1 : -1;
    return o;
}

/* mkdir that accepts an existing folder. */
static pk_status make_dir(const char *path) {
    if (mkdir(path, 0777) == 0 || (errno == EEXIST && io_is_dir(path))) return PK_OK;
    return pk_error(PK_ERR_IO, "%s: cannot create the folder: %s", path, strerror(errno));
}

/* The camera of a view as the rasterizer wants it (float, OpenCV axes). */
static splat_camera to_splat_camera(const pk_camera *c) {
    splat_camera s = {.fx = (float)c->fx,
                      .fy = (float)c->fy,
                      .cx = (float)c->cx,
                      .cy = (float)c->cy,
                      .width = c->width,
                      .height = c->height};
    for (int k = 0; k < 16; k++)
        s.world_to_cam[k] = (float)c->w2c[k];
    return s;
}

/* Camera centre: -R^T t. */
static void cam_centre(const pk_camera *c, double o[3]) {
    for (int k = 0; k < 3; k++)
        o[k] = -(c->w2c[k] * c->w2c[3] + c->w2c[4 + k] * c->w2c[7] + c->w2c[8 + k] * c->w2c[11]);
}

/* 3DGS getNerfppNorm: 1.1 x the largest distance of a training camera from their mean. */
static double scene_extent(const gs_trainer *t) {
    double mean[3] = {0, 0, 0}, o[3], r = 0;
    for (int i = 0; i < t->n_train; i++) {
        cam_centre(&t->scene.cams[t->train_idx[i]], o);
        for (int k = 0; k < 3; k++)
            mean[k] += o[k] / t->n_train;
    }
    for (int i = 0; i < t->n_train; i++) {
        cam_centre(&t->scene.cams[t->train_idx[i]], o);
        r = fmax(r, sqrt((o[0] - mean[0]) * (o[0] - mean[0]) + (o[1] - mean[1]) * (o[1] - mean[1]) +
                         (o[2] - mean[2]) * (o[2] - mean[2])));
    }
    /* a single camera (or all at one place): fall back to a unit scene */
    return r > 0 ? 1.1 * r : 1.0;
}

/* Solves the 3x3 system A x = b (Cramer); returns 0 when singular. */
static int solve3(const double A[9], const double b[3], double x[3]) {
    double det = A[0] * (A[4] * A[8] - A[5] * A[7]) - A[1] * (A[3] * A[8] - A[5] * A[6]) +
                 A[2] * (A[3] * A[7] - A[4] * A[6]);
    if (fabs(det) < 1e-12) return 0;
    for (int c = 0; c < 3; c++) {
        double M[9];
        memcpy(M, A, sizeof M);
        for (int r = 0; r < 3; r++)
            M[r * 3 + c] = b[r];
        x[c] = (M[0] * (M[4] * M[8] - M[5] * M[7]) - M[1] * (M[3] * M[8] - M[5] * M[6]) +
                M[2] * (M[3] * M[7] - M[4] * M[6])) /
               det;
    }
    return 1;
}

/* Random points in the cube the cameras look into (see the file comment). */
static pk_status random_points(gs_trainer *t, int64_t n, float **xyz) {
    double A[9] = {0}, b[3] = {0}, mean[3] = {0}, focus[3], o[3];
    for (int i = 0; i < t->scene.n; i++) {
        const pk_camera *c = &t->scene.cams[i];
        cam_centre(c, o);
        double d[3] = {c->w2c[8], c->w2c[9], c->w2c[10]}; /* optical axis: row 2 of R */
        /* sum (I - d d^T) (p - o) = 0 */
        for (int r = 0; r < 3; r++)
            for (int k = 0; k < 3; k++) {
                double m = (r == k) - d[r] * d[k];
                A[r * 3 + k] += m;
                b[r] += m * o[k];
            }
        for (int k = 0; k < 3; k++)
            mean[k] += o[k] / t->scene.n;
    }
    if (!solve3(A, b, focus)) /* parallel axes: the mean camera centre */
        memcpy(focus, mean, sizeof focus);
    double dist = 0;
    for (int i = 0; i < t->scene.n; i++) {
        cam_centre(&t->scene.cams[i], o);
        dist += sqrt((o[0] - focus[0]) * (o[0] - focus[0]) + (o[1] - focus[1]) * (o[1] - focus[1]) +
                     (o[2] - focus[2]) * (o[2] - focus[2])) /
                t->scene.n;
    }
    double half = dist > 0 ? 0.5 * dist : 1.0;
    float *p = malloc(sizeof(float) * 3 * (size_t)n);
    if (!p) return pk_error(PK_ERR_NOMEM, "3DGS: out of memory for %lld points", (long long)n);
    for (int64_t i = 0; i < n * 3; i++)
        p[i] = (float)(focus[i % 3] + (2.0 * pk_rng_uniform(&t->rng) - 1.0) * half);
    *xyz = p;
    return PK_OK;
}

/* Loads every view's image at the downscale and checks it against its camera. */
static pk_status load_images(gs_trainer *t) {
    t->images = calloc((size_t)t->scene.n, sizeof(pk_image));
    t->cams = calloc((size_t)t->scene.n, sizeof(splat_camera));
    if (!t->images || !t->cams) return pk_error(PK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < t->scene.n; i++) {
        pk_image img;
        PK_TRY(scene_load_image(&t->scene, i, t->o.downscale, &img));
        t->images[i] = img;
        pk_camera cs = camera_scaled(&t->scene.cams[i], t->o.downscale);
        if (img.w != cs.width || img.h != cs.height)
            return pk_error(
                PK_ERR_FORMAT, "%s: image is %dx%d after downscale %d but its camera says %dx%d",
                t->scene.cams[i].image_path, img.w, img.h, t->o.downscale, cs.width, cs.height);
        if (img.c != 3 && img.c != 4)
            return pk_error(PK_ERR_FORMAT, "%s: expected an RGB or RGBA image, got %d channels",
                            t->scene.cams[i].image_path, img.c);
        if (img.w < 16 || img.h < 16)
            return pk_error(PK_ERR_FORMAT, "%s: image of %dx%d is too small to train on (16x16)",
                            t->scene.cams[i].image_path, img.w, img.h);
        t->cams[i] = to_splat_camera(&cs);
    }
    return PK_OK;
}

/* Ground truth of view v as planar floats; RGBA is composited over the background bg. */
static void ground_truth(const pk_image *img, const float bg[3], float *out) {
    int hw = img->w * img->h;
    if (img->bits == 8 && img->c == 3) { /* the usual case: a table instead of image_get */
        float lut[256];
        for (int k = 0; k < 256; k++)
            lut[k] = (float)k / 255.0f;
        const uint8_t *px = img->data;
        for (int i = 0; i < hw; i++)
            for (int k = 0; k < 3; k++)
                out[k * hw + i] = lut[px[3 * i + k]];
        return;
    }
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            float a = img->c == 4 ? image_get(img, x, y, 3) : 1.0f;
            for (int k = 0; k < 3; k++)
                out[k * hw + y * img->w + x] = image_get(img, x, y, k) * a + bg[k] * (1 - a);
        }
}

/* Halves a planar (3, h, w) image by 2x2 box averages into (3, h/2, w/2) (the last odd row
 * or column dropped): repeated, the area filter of scene_load_image with the cameras of
 * camera_scaled. */
static void halve(const float *in, int w, int h, float *out) {
    int w2 = w / 2, h2 = h / 2;
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < h2; y++) {
            const float *r0 = in + ((size_t)k * h + 2 * (size_t)y) * (size_t)w, *r1 = r0 + w;
            float *o = out + ((size_t)k * h2 + (size_t)y) * (size_t)w2;
            for (int x = 0; x < w2; x++)
                o[x] = 0.25f * ((r0[2 * x] + r0[2 * x + 1]) + (r1[2 * x] + r1[2 * x + 1]));
        }
}

/* The coarse-to-fine levels: every training view's ground truth at 1/2, 1/4, ... of the
 * training size (at most num_downscales levels, none smaller than 16 px on a side). */
static pk_status build_pyramid(gs_trainer *t) {
    int levels = t->o.num_downscales > 0 ? t->o.num_downscales : 0;
    for (int i = 0; i < t->n_train; i++) {
        const pk_image *img = &t->images[t->train_idx[i]];
        while (levels > 0 && ((img->w >> levels) < 16 || (img->h >> levels) < 16))
            levels--;
    }
    t->levels = levels;
    if (!levels) return PK_OK;
    t->pyramid = calloc((size_t)t->scene.n * (size_t)levels, sizeof(float *));
    t->level_cams = calloc((size_t)t->scene.n * (size_t)levels, sizeof(splat_camera));
    if (!t->pyramid || !t->level_cams) return pk_error(PK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < t->n_train; i++) {
        int v = t->train_idx[i];
        const pk_image *img = &t->images[v];
        ground_truth(img, t->o.background, t->gt);
        const float *prev = t->gt;
        int w = img->w, h = img->h;
        for (int l = 0; l < levels; l++) {
            float *o = malloc(sizeof(float) * 3 * (size_t)(w / 2) * (size_t)(h / 2));
            if (!o) return pk_error(PK_ERR_NOMEM, "out of memory for the image pyramid");
            halve(prev, w, h, o);
            t->pyramid[(size_t)v * levels + l] = o;
            w /= 2, h /= 2;
            prev = o;
            pk_camera cs = camera_scaled(&t->scene.cams[v], t->o.downscale << (l + 1));
            t->level_cams[(size_t)v * levels + l] = to_splat_camera(&cs);
        }
    }
    return PK_OK;
}

/* The coarse-to-fine level of 1-based iteration `it` (0: full size). */
static int level_at(const gs_trainer *t, int64_t it) {
    int64_t l = t->levels - (it - 1) / t->o.resolution_schedule;
    return l > 0 ? (int)l : 0;
}

static pk_status ensure_radii(gs_trainer *t, int64_t n) {
    if (n <= t->radii_cap) return PK_OK;
    int32_t *r = realloc(t->radii, sizeof(int32_t) * (size_t)(n + n / 2 + 16));
    if (!r) return pk_error(PK_ERR_NOMEM, "out of memory");
    t->radii = r;
    t->radii_cap = n + n / 2 + 16;
    return PK_OK;
}

static int sh_degree_at(const gs_trainer *t, int64_t iteration) {
    int64_t d = iteration / t->o.sh_interval;
    return d > 3 ? 3 : (int)d;
}

/* The options a resume must share (as before the run harness, so older checkpoints resume),
 * and all of them with the scene's choices filled in (options.json); malloc'd. */
static char *format_options(const gs_trainer *t, bool all) {
    const gs_train_options *o = &t->o;
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddNumberToObject(j, "iters", (double)o->iters);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "downscale", o->downscale);
    cJSON_AddNumberToObject(j, "test_every", o->test_every);
    cJSON_AddNumberToObject(j, "max_gaussians", (double)o->max_gaussians);
    cJSON_AddNumberToObject(j, "init_points", (double)o->init_points);
    cJSON_AddNumberToObject(j, "densify_from", (double)o->densify_from);
    cJSON_AddNumberToObject(j, "densify_until", (double)o->densify_until);
    cJSON_AddNumberToObject(j, "densify_interval", (double)o->densify_interval);
    cJSON_AddNumberToObject(j, "opacity_reset", (double)o->opacity_reset);
    cJSON_AddNumberToObject(j, "sh_interval", (double)o->sh_interval);
    cJSON_AddNumberToObject(j, "num_downscales", o->num_downscales > 0 ? o->num_downscales : 0);
    cJSON_AddNumberToObject(j, "resolution_schedule", (double)o->resolution_schedule);
    double bg[3] = {o->background[0], o->background[1], o->background[2]};
    cJSON_AddItemToObject(j, "background", cJSON_CreateDoubleArray(bg, 3));
    cJSON_AddNumberToObject(j, "random_background", o->random_background > 0 ? 1 : 0);
    cJSON_AddNumberToObject(j, "prune_big_scale", o->prune_big_scale > 0 ? o->prune_big_scale : 0);
    if (t->sc) { /* only scaffold runs carry these, so 3DGS checkpoints resume as before */
        cJSON_AddStringToObject(j, "model", "scaffold");
        cJSON_AddNumberToObject(j, "voxel_size", o->voxel_size);
        if (o->scaffold_interval > 0) /* --anchor-interval; absent: the default, as before */
            cJSON_AddNumberToObject(j, "anchor_interval", (double)o->scaffold_interval);
    }
    if (o->make_source) {
        cJSON_AddStringToObject(j, "model", o->model ? o->model : "custom");
        cJSON *sj = o->source_json ? cJSON_Parse(o->source_json) : NULL;
        if (sj) cJSON_AddItemToObject(j, "source", sj);
    }
    if (all) {
        cJSON_AddStringToObject(j, "data", o->data);
        cJSON_AddStringToObject(j, "out", o->out);
        cJSON_AddStringToObject(j, "device", o->device ? o->device : "");
        cJSON_AddNumberToObject(j, "eval_interval", (double)o->eval_interval);
        cJSON_AddNumberToObject(j, "save_every", (double)o->save_every);
        cJSON_AddNumberToObject(j, "keep_checkpoints", o->keep_checkpoints);
        cJSON_AddNumberToObject(j, "threads", o->threads);
        cJSON_AddNumberToObject(j, "grad_threshold", o->grad_threshold);
        cJSON_AddBoolToObject(j, "resume", o->resume);
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return text;
}

/* Reads the source's state and the camera order from an opened checkpoint (the harness's
 * restore callback). */
static pk_status restore_state(void *user, const ckpt_file *ck, const char *path) {
    gs_trainer *t = user;
    PK_TRY(t->src.restore(t->src.self, ck));
    const st_tensor *ord = safetensors_find(&ck->st, "train.order");
    if (!ord || ord->dtype != ST_I32 || ord->ndim != 1 || ord->shape[0] != t->n_train)
        return pk_error(PK_ERR_FORMAT, "%s: tensor train.order (%d) I32 missing or wrong", path,
                        t->n_train);
    memcpy(t->order, ord->data, ord->nbytes);
    return PK_OK;
}

/* Continues from the newest checkpoint: rng words {generator, camera order position,
 * training seconds (bits of a double), 0}. */
static pk_status restore(gs_trainer *t) {
    int64_t step = -1;
    uint64_t rng[CKPT_RNG_WORDS];
    PK_TRY(run_checkpoint_load_ex(t->run, NULL, 0, restore_state, t, &step, rng));
    if (step < 0) return pk_error(PK_ERR_IO, "--resume: no checkpoint in %s/checkpoints", t->o.out);
    t->step = t->start_step = step;
    t->rng.state = rng[0];
    t->order_pos = (int64_t)rng[1];
    memcpy(&t->seconds, &rng[2], sizeof t->seconds);
    return PK_OK;
}

/* On Vulkan with the 3DGS or the Scaffold-GS source in one process (POLYAK_GS_RESIDENT=0
 * turns it off): moves the Gaussians (anchors) to the device and uploads every training view's
 * ground truth (each level of the coarse-to-fine pyramid too) once. */
static pk_status resident_setup(gs_trainer *t) {
    const char *env = getenv("POLYAK_GS_RESIDENT");
    if (t->ctx->backend != PK_BACKEND_VK || (!t->gx && !t->sc && !t->src.dev_begin) ||
        dist_size() > 1 || (env && strcmp(env, "0") == 0))
        return PK_OK;
    if (t->gx)
        PK_TRY(gs_explicit_dev_create(t->gx, t->ctx, &t->dev));
    else if (t->sc)
        PK_TRY(gs_scaffold_dev_create(t->sc, t->ctx, &t->sdev));
    else {
        PK_TRY(t->src.dev_begin(t->src.self, t->ctx, &t->sres));
        if (!t->sres) return PK_OK; /* the source keeps the host-array path */
    }
    for (int k = 0; k < t->n_train; k++) { /* the training cameras, each level */
        int v = t->train_idx[k];
        PK_TRY(pk_splat_renderer_add_cameras(t->renderer, &t->cams[v], 1));
        if (t->levels)
            PK_TRY(pk_splat_renderer_add_cameras(t->renderer, &t->level_cams[(size_t)v * t->levels],
                                                 t->levels));
    }
    int L = t->levels + 1;
    size_t bytes = 0;
    for (int k = 0; k < t->n_train; k++) {
        const pk_image *img = &t->images[t->train_idx[k]];
        bytes += 3 * sizeof(float) * (size_t)img->w * (size_t)img->h * 2 + 4096 * (size_t)L;
    }
    bytes += sizeof(float) * 2 * HIST_ROWS + 4096;
    PK_TRY(pk_arena_create(t->ctx->dev, "gs-ground-truth", bytes, &t->gt_arena));
    t->hist = tensor_new(t->gt_arena, PK_F32, 2, (int64_t[]){HIST_ROWS, 2});
    t->snap_order = malloc(sizeof(int32_t) * (size_t)t->n_train);
    if (!t->hist || !t->snap_order) return pk_error(PK_ERR_NOMEM, "out of memory");
    PK_TRY(tensor_fill(t->hist, 0.0f));
    t->gt_dev = calloc((size_t)t->scene.n * (size_t)L, sizeof *t->gt_dev);
    if (!t->gt_dev) return pk_error(PK_ERR_NOMEM, "out of memory");
    for (int k = 0; k < t->n_train; k++) {
        int v = t->train_idx[k];
        for (int l = 0; l < L; l++) {
            const splat_camera *cam =
                l ? &t->level_cams[(size_t)v * t->levels + l - 1] : &t->cams[v];
            tensor *g = tensor_new(t->gt_arena, PK_F32, 3, (int64_t[]){3, cam->height, cam->width});
            if (!g)
                return pk_error(PK_ERR_NOMEM, "3DGS: ground truth on the device: %s",
                                polyak_error());
            const float *src = t->gt;
            if (l)
                src = t->pyramid[(size_t)v * t->levels + l - 1];
            else
                ground_truth(&t->images[v], t->o.background, t->gt);
            PK_TRY(tensor_upload(g, src));
            t->gt_dev[(size_t)v * L + l] = g;
        }
    }
    return snapshot(t);
}

pk_status gs_trainer_create(const gs_train_options *opt, gs_trainer **out) {
    *out = NULL;
    gs_trainer *t = calloc(1, sizeof *t);
    if (!t) return pk_error(PK_ERR_NOMEM, "out of memory");
    t->o = gs_train_defaults(*opt);
    pk_status s = PK_OK;
#define FAIL(expr)                                                                                 \
    do {                                                                                           \
        if ((s = (expr)) != PK_OK) goto fail;                                                      \
    } while (0)
    if (!t->o.data || !t->o.out)
        FAIL(pk_error(PK_ERR_INVALID, "3DGS: the scene (--data) and output (--out) are required"));
    if (t->o.iters < 1 || t->o.downscale < 1)
        FAIL(pk_error(PK_ERR_INVALID, "3DGS: iters and downscale must be >= 1"));
    for (int k = 0; k < 3; k++)
        if (!(t->o.background[k] >= 0 && t->o.background[k] <= 1))
            FAIL(pk_error(PK_ERR_INVALID, "3DGS: background components must be in [0, 1]"));
    t->rng.state = t->o.seed;
    FAIL(scene_load(t->o.data, &(scene_options){.test_every = t->o.test_every}, &t->scene));
    t->o = gs_train_for_scene(t->o, strncmp(t->scene.kind, "colmap", 6) == 0);
    t->train_idx = malloc(sizeof(int) * (size_t)t->scene.n);
    t->test_idx = malloc(sizeof(int) * (size_t)t->scene.n);
    t->test_psnr = calloc((size_t)t->scene.n, sizeof(double));
    t->test_ssim = calloc((size_t)t->scene.n, sizeof(double));
    t->order = malloc(sizeof(int32_t) * (size_t)t->scene.n);
    if (!t->train_idx || !t->test_idx || !t->order || !t->test_psnr || !t->test_ssim)
        FAIL(pk_error(PK_ERR_NOMEM, "out of memory"));
    for (int i = 0; i < t->scene.n; i++) {
        if (t->scene.cams[i].is_test)
            t->test_idx[t->n_test++] = i;
        else
            t->train_idx[t->n_train++] = i;
    }
    if (t->n_train == 0)
        FAIL(pk_error(PK_ERR_INVALID, "%s: every view is held out for testing: no training images",
                      t->o.data));
    bool colmap = strncmp(t->scene.kind, "colmap", 6) == 0;
    if (colmap && t->scene.n_points == 0)
        FAIL(pk_error(PK_ERR_FORMAT,
                      "%s: the COLMAP model has no 3D points (points3D is empty): nothing to "
                      "initialise the Gaussians from",
                      t->o.data));
    FAIL(load_images(t));
    pk_ctx_options co = {.device = t->o.device, .seed = t->o.seed, .threads = t->o.threads};
    FAIL(pk_ctx_create(&co, &t->ctx));
    if (!pk_op_get(PK_OP_SPLAT)->forward[t->ctx->backend]) {
        /* the default device has no rasterizer kernels: train on the CPU backend rather than
         * fail; a device asked for by name is an error */
        if (t->o.device && *t->o.device)
            FAIL(pk_error(PK_ERR_UNSUPPORTED,
                          "device %s: the Gaussian rasterizer has no kernels for its backend "
                          "yet; use --device cpu",
                          t->o.device));
        pk_ctx_destroy(t->ctx);
        t->ctx = NULL;
        co.device = "cpu";
        FAIL(pk_ctx_create(&co, &t->ctx));
        t->device_fallback = true;
    }
    t->pool = pk_ctx_pool(t->ctx);
    t->extent = scene_extent(t);
    /* the initial Gaussians */
    gs_lr lr = gs_lr_defaults(t->o.iters);
    float *xyz = NULL, *rgb = NULL;
    int64_t np = (int64_t)t->scene.n_points;
    if (np > 0) {
        t->from_points = true;
        xyz = t->scene.xyz;
        rgb = malloc(sizeof(float) * 3 * (size_t)np);
        if (!rgb) FAIL(pk_error(PK_ERR_NOMEM, "out of memory"));
        for (int64_t i = 0; i < 3 * np; i++)
            rgb[i] = t->scene.rgb[i] / 255.0f;
    } else {
        np = t->o.init_points;
        FAIL(random_points(t, np, &xyz));
    }
    if (t->o.make_source) {
        gs_source_env env = {.ctx = t->ctx,
                             .scene = &t->scene,
                             .cams = t->cams,
                             .n_train = t->n_train,
                             .n_test = t->n_test,
                             .train_idx = t->train_idx,
                             .test_idx = t->test_idx,
                             .extent = t->extent,
                             .rng = &t->rng,
                             .iters = t->o.iters,
                             .xyz = xyz,
                             .n_points = np,
                             .trainer = t,
                             .scaffold_interval = t->o.scaffold_interval,
                             .scaffold_grad_threshold = t->o.scaffold_grad_threshold};
        s = t->o.make_source(t->o.make_source_arg, &env, &t->src);
    } else if (t->o.model && strcmp(t->o.model, "scaffold") == 0) {
        t->sco = gs_scaffold_defaults(
            (gs_scaffold_options){.voxel_size = t->o.voxel_size,
                                  .update_interval = t->o.scaffold_interval,
                                  .grad_threshold = t->o.scaffold_grad_threshold},
            t->o.iters);
        s = gs_scaffold_create(t->ctx, xyz, np, t->extent, &t->sco, &t->rng, &t->sc);
        if (s == PK_OK) t->src = gs_scaffold_source(t->sc);
    } else if (t->o.model && *t->o.model && strcmp(t->o.model, "3dgs") != 0) {
        s = pk_error(PK_ERR_INVALID, "--model %s: expected 3dgs or scaffold", t->o.model);
    } else {
        s = gs_explicit_create(xyz, rgb, np, t->extent, &lr, t->pool, &t->gx);
        if (s == PK_OK) t->src = gs_explicit_source(t->gx);
    }
    if (!t->from_points) free(xyz);
    free(rgb);
    if (s == PK_OK && dist_size() > 1 && !t->gx && !t->sc && !t->src.gather)
        s = pk_error(PK_ERR_INVALID,
                     "--model %s under mpirun: data parallelism is implemented for the 3DGS "
                     "and Scaffold-GS sources and Momentum-GS only (run it as one process)",
                     t->o.model ? t->o.model : "custom");
    if (s != PK_OK) goto fail;
    t->st = splat_state_create();
    FAIL(pk_splat_renderer_create(t->ctx, &t->renderer));
    if (t->o.vk_pairs > 0) pk_splat_renderer_set_capacity(t->renderer, t->o.vk_pairs);
    int maxhw = 0;
    for (int i = 0; i < t->scene.n; i++)
        if (t->images[i].w * t->images[i].h > maxhw) maxhw = t->images[i].w * t->images[i].h;
    t->gt = malloc(sizeof(float) * 3 * (size_t)maxhw);
    t->rgb = malloc(sizeof(float) * 3 * (size_t)maxhw);
    t->d_rgb = malloc(sizeof(float) * 3 * (size_t)maxhw);
    t->alpha = malloc(sizeof(float) * (size_t)maxhw);
    if (!t->st || !t->gt || !t->rgb || !t->d_rgb || !t->alpha)
        FAIL(pk_error(PK_ERR_NOMEM, "out of memory"));
    FAIL(build_pyramid(t));
    FAIL(pk_ctx_time_ops(t->ctx, true));
    for (int i = 0; i < t->n_train; i++)
        t->order[i] = i;
    t->order_pos = t->n_train; /* shuffled before the first step */
    /* outputs */
    t->renders_dir = io_path_join(t->o.out, "renders");
    t->resume_json = format_options(t, false);
    char *all = format_options(t, true);
    if (!t->renders_dir || !t->resume_json || !all) {
        free(all);
        FAIL(pk_error(PK_ERR_NOMEM, "out of memory"));
    }
    if (t->o.resume && !io_is_dir(t->o.out)) {
        free(all);
        FAIL(pk_error(PK_ERR_IO, "--resume: no run folder %s", t->o.out));
    }
    run_options ro = {.out = t->o.out,
                      .task = "splat train",
                      .options_json = all,
                      .resume_json = t->resume_json,
                      .resume = t->o.resume,
                      .keep = t->o.keep_checkpoints,
                      .progress = t->o.progress,
                      .catch_signals = t->o.catch_signals,
                      .checkpoints = "checkpoints"};
    s = run_open(&ro, &t->run);
    free(all);
    if (s != PK_OK) goto fail;
    if (t->o.resume) FAIL(restore(t));
    if (dist_is_root()) FAIL(make_dir(t->renders_dir));
    FAIL(resident_setup(t));
#undef FAIL
    *out = t;
    return PK_OK;
fail:
    gs_trainer_destroy(t);
    return s;
}

void gs_trainer_destroy(gs_trainer *t) {
    if (!t) return;
    gs_explicit_dev_destroy(t->dev);
    gs_scaffold_dev_destroy(t->sdev);
    free(t->gt_dev), free(t->snap_order);
    pk_arena_destroy(t->gt_arena);
    if (t->src.destroy) t->src.destroy(t->src.self);
    splat_state_destroy(t->st);
    pk_splat_renderer_destroy(t->renderer);
    if (t->images)
        for (int i = 0; i < t->scene.n; i++)
            image_free(&t->images[i]);
    if (t->pyramid)
        for (int i = 0; i < t->scene.n * t->levels; i++)
            free(t->pyramid[i]);
    free(t->pyramid), free(t->level_cams);
    free(t->images), free(t->cams), free(t->train_idx), free(t->test_idx), free(t->order);
    free(t->test_psnr), free(t->test_ssim);
    free(t->gt), free(t->rgb), free(t->d_rgb), free(t->alpha), free(t->radii), free(t->grad2d);
    free(t->renders_dir), free(t->resume_json), free(t->dp_buf);
    run_close(t->run);
    scene_free(&t->scene);
    pk_ctx_destroy(t->ctx);
    free(t);
}

gs_train_info gs_trainer_info(const gs_trainer *t) {
    const pk_image *first = &t->images[t->train_idx[0]];
    return (gs_train_info){.train_images = t->n_train,
                           .test_images = t->n_test,
                           .width = first->w,
                           .height = first->h,
                           .extent = t->extent,
                           .start_step = t->start_step,
                           .gaussians = t->src.count(t->src.self),
                           .levels = t->levels,
                           .resolution_schedule = t->o.resolution_schedule,
                           .from_points = t->from_points,
                           .photos = strncmp(t->scene.kind, "colmap", 6) == 0,
                           .random_background = t->o.random_background > 0,
                           .densify_from = t->o.densify_from,
                           .densify_until = t->o.densify_until,
                           .prune_big_scale = t->o.prune_big_scale,
                           .device_fallback = t->device_fallback,
                           .device_name = pk_device_get_info(t->ctx->dev)->name,
                           .scene_kind = t->scene.kind};
}

int64_t gs_trainer_step_count(const gs_trainer *t) { return t->step; }

pk_run *gs_trainer_run(gs_trainer *t) { return t->run; }

gs_timing gs_trainer_timing(const gs_trainer *t) { return t->timing; }

const pk_device *gs_trainer_device(const gs_trainer *t) { return t->ctx->dev; }

const gs_source *gs_trainer_source(const gs_trainer *t) { return &t->src; }

int64_t gs_trainer_rewinds(const gs_trainer *t) { return t->rewinds; }
const splat_camera *gs_trainer_cameras(const gs_trainer *t) { return t->cams; }

/* Renders view v with the current Gaussians into t->rgb (and radii); keeps the state for a
 * backward. Returns the arrays and gradient buffers the source produced. */
static pk_status render_view(gs_trainer *t, int v, int degree, gs_arrays *arr, gs_array_grads *gr,
                             splat_scene_view *view) {
    PK_TRY(t->src.produce(t->src.self, &t->cams[v], degree, arr, gr));
    PK_TRY(ensure_radii(t, arr->n));
    *view = (splat_scene_view){
        .n = arr->n,
        .means = arr->means,
        .log_scales = arr->log_scales,
        .quats = arr->quats,
        .opacity_logits = arr->opacity_logits,
        .sh = arr->sh,
        .sh_degree = arr->sh_degree,
        .background = {t->o.background[0], t->o.background[1], t->o.background[2]}};
    splat_outputs so = {.rgb = t->rgb, .alpha = t->alpha, .radii = t->radii};
    return splat_forward(t->st, t->pool, &t->cams[v], view, &so);
}

/* Appends the step's row to log.csv (the values as floats, as the log always held). */
static pk_status log_row(gs_trainer *t, int64_t step, int64_t gaussians, double seconds,
                         double loss, double psnr) {
    double row[LOG_COLS] = {(double)step, (float)loss, (float)psnr, (double)gaussians,
                            round(seconds * 1e3) / 1e3};
    return run_log(t->run, LOG_COLS, log_cols, row);
}

/* Uploads host floats into a new step-arena tensor of the given shape that gradients reach. */
static tensor *leaf(gs_trainer *t, const float *src, int ndim, const int64_t *shape) {
    tensor *x = tensor_new(t->ctx->step, PK_F32, ndim, shape);
    if (!x || tensor_upload(x, src) != PK_OK) return NULL;
    x->requires_grad = true;
    return x;
}

/* A point in time on both clocks. */
typedef struct stamp {
    double wall, cpu;
} stamp;

static stamp stamp_now(void) {
    struct timespec w, c;
    clock_gettime(CLOCK_MONOTONIC, &w);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
    return (stamp){(double)w.tv_sec + 1e-9 * (double)w.tv_nsec,
                   (double)c.tv_sec + 1e-9 * (double)c.tv_nsec};
}

/* Adds the time from a to b to phase field `f` of both clocks. */
#define ADD_PHASE(tm, f, a, b)                                                                     \
    do {                                                                                           \
        (tm)->wall.f += (b).wall - (a).wall;                                                       \
        (tm)->cpu.f += (b).cpu - (a).cpu;                                                          \
    } while (0)

/* Kernel time of the splat op's backward (wall, CPU) so far, from the context. */
static stamp splat_backward_time(const pk_ctx *c) {
    return (stamp){c->op_seconds[PK_OP_SPLAT][1], c->op_seconds[PK_OP_SPLAT][3]};
}

/* Adds one training render's phases to tm: s = the stamps at its start, after the data, the
 * parameters' upload, the rasterizer's forward, the loss's forward, the backward and the
 * gradients' read-back; sb0/sb1 = the splat op's backward kernel time before and after (the
 * rasterizer's share of the backward walk, the rest is the loss's). */
static void add_render_phases(gs_timing *tm, const stamp s[7], stamp sb0, stamp sb1) {
    ADD_PHASE(tm, data, s[0], s[1]);
    ADD_PHASE(tm, params_in, s[1], s[2]);
    ADD_PHASE(tm, raster_fwd, s[2], s[3]);
    ADD_PHASE(tm, loss_fwd, s[3], s[4]);
    ADD_PHASE(tm, raster_bwd, sb0, sb1);
    tm->wall.loss_bwd += (s[5].wall - s[4].wall) - (sb1.wall - sb0.wall);
    tm->cpu.loss_bwd += (s[5].cpu - s[4].cpu) - (sb1.cpu - sb0.cpu);
    ADD_PHASE(tm, grads_out, s[5], s[6]);
}

/* Sets `other` to what the named phases of p leave of its total. */
static void phases_other(gs_phases *p) {
    p->other = p->total - (p->data + p->params_in + p->raster_fwd + p->loss_fwd + p->loss_bwd +
                           p->raster_bwd + p->grads_out + p->stats + p->densify + p->optimizer);
}

/* One training render on the tape: the source's Gaussians through pk_splat with camera `cam`,
 * the loss 0.8 L1 + 0.2 (1 - SSIM) against `gt` (3, H, W) with pk_l1 and pk_ssim, and the
 * backward; the gradients land in the source's buffers `gr` (means2d in pixels) and the radii
 * in t->radii; t->rgb gets the render. Adds the phases' times to t->timing. */
static pk_status train_render_once(gs_trainer *t, const splat_camera *cam, const float *gt_host,
                                   tensor *gt_dev, int degree, const float bg[3], bool stats,
                                   gs_array_grads *gr, double *loss_out, double *se_out,
                                   int *redo) {
    pk_ctx *c = t->ctx;
    gs_timing *tm = &t->timing;
    int64_t H = cam->height, W = cam->width;
    /* resident: no wait for the device between steps (the barrier tracker orders the step
     * arena's reuse in the recording); the steps are run at the next read-back */
    PK_TRY(resident(t) ? pk_step_reset(c) : pk_step_begin(c));
    stamp sb0 = splat_backward_time(c);
    stamp t0 = stamp_now();
    tensor *gt = gt_dev;
    if (!gt) {
        gt = tensor_new(c->step, PK_F32, 3, (int64_t[]){3, H, W});
        if (!gt || tensor_upload(gt, gt_host) != PK_OK)
            return pk_error(PK_ERR_NOMEM, "3DGS: cannot upload the ground truth: %s",
                            polyak_error());
    }
    stamp t1 = stamp_now();
    if (resident(t)) {
        /* resident: the parameters are device tensors; the loss and the squared error of the
         * clamped render are read in one wait with the pair-count check, the statistics are
         * added on the device */
        pk_splat_inputs in;
        tensor *reg = NULL;
        if (t->dev)
            PK_TRY(gs_explicit_dev_inputs(t->dev, degree, &in));
        else if (t->sdev)
            PK_TRY(gs_scaffold_dev_inputs(t->sdev, cam, &in, &reg));
        else
            PK_TRY(t->src.dev_inputs(t->src.self, c, cam, &in, &reg));
        int64_t n = in.means->shape[0];
        in.background[0] = bg[0], in.background[1] = bg[1], in.background[2] = bg[2];
        in.means2d_grad = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, 2});
        if (!in.means2d_grad || tensor_fill(in.means2d_grad, 0) != PK_OK)
            return pk_error(PK_ERR_NOMEM, "3DGS: cannot create the step's tensors: %s",
                            polyak_error());
        stamp t2 = stamp_now();
        pk_splat_outputs out;
        PK_TRY(pk_splat(c, t->renderer, cam, &in, &out));
        stamp t3 = stamp_now();
        tensor *loss = pk_add(c, pk_scale(c, pk_l1(c, out.rgb, gt), 0.8f),
                              pk_affine(c, pk_ssim(c, out.rgb, gt), -0.2f, 0.2f));
        if (reg) loss = pk_add(c, loss, reg);
        if (t->src.loss_weight) loss = pk_scale(c, loss, (float)t->src.loss_weight(t->src.self));
        if (!loss) return pk_error(PK_ERR_INVALID, "3DGS: loss: %s", polyak_error());
        stamp t4 = stamp_now();
        PK_TRY(autograd_backward(c, loss));
        stamp t5 = stamp_now();
        /* training PSNR's squared error: clamp(x, 0, 1) = relu(x) - relu(x - 1) */
        tensor *cl = pk_sub(c, pk_relu(c, out.rgb), pk_relu(c, pk_affine(c, out.rgb, 1.0f, -1.0f)));
        tensor *d = pk_sub(c, cl, gt);
        tensor *se = pk_sum_all(c, pk_mul(c, d, d));
        tensor *both =
            se ? pk_concat(c, (tensor *[]){pk_reshape(c, loss, 1, (int64_t[]){1}), se}, 2, 0)
               : NULL;
        /* into the step's row of hist, read at the next flush (no wait here) */
        tensor *row = tensor_view(c->step, t->hist, 1, (int64_t[]){2}, (int64_t[]){1},
                                  t->hist->offset + 2 * (int64_t)t->npend);
        if (!both || !row || pk_accumulate(c, row, both) != PK_OK)
            return pk_error(PK_ERR_INVALID, "3DGS: loss: %s", polyak_error());
        t->npend++;
        *redo = 0;
        if (stats && t->dev)
            PK_TRY(gs_explicit_dev_add_stats(t->dev, in.means2d_grad, out.radii, (int)W, (int)H));
        else if (stats && t->sdev)
            PK_TRY(gs_scaffold_dev_add_stats(t->sdev, in.means2d_grad, out.radii, (int)W, (int)H));
        else if (stats)
            PK_TRY(t->src.dev_add_stats(t->src.self, in.means2d_grad, out.radii, (int)W, (int)H));
        stamp t6 = stamp_now();
        stamp sb1 = splat_backward_time(c);
        add_render_phases(tm, (stamp[7]){t0, t1, t2, t3, t4, t5, t6}, sb0, sb1);
        *loss_out = NAN, *se_out = NAN; /* known at the flush */
        return PK_OK;
    }
    if (t->src.produce_tensors) {
        /* a decoder source: its Gaussians are tensors on the tape already */
        pk_splat_inputs in;
        tensor *reg = NULL;
        PK_TRY(t->src.produce_tensors(t->src.self, c, cam, &in, &reg));
        int64_t n = in.means->shape[0];
        in.background[0] = bg[0], in.background[1] = bg[1], in.background[2] = bg[2];
        in.means2d_grad = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, 2});
        if (!in.means2d_grad || tensor_fill(in.means2d_grad, 0) != PK_OK)
            return pk_error(PK_ERR_NOMEM, "3DGS: cannot create the step's tensors: %s",
                            polyak_error());
        PK_TRY(ensure_radii(t, (int)n));
        if (n > t->grad2d_cap) {
            float *g2 = realloc(t->grad2d, sizeof(float) * 2 * (size_t)n);
            if (!g2) return pk_error(PK_ERR_NOMEM, "out of memory");
            t->grad2d = g2, t->grad2d_cap = n;
        }
        stamp t2 = stamp_now();
        pk_splat_outputs out;
        PK_TRY(pk_splat(c, t->renderer, cam, &in, &out));
        stamp t3 = stamp_now();
        tensor *loss = pk_add(c, pk_scale(c, pk_l1(c, out.rgb, gt), 0.8f),
                              pk_affine(c, pk_ssim(c, out.rgb, gt), -0.2f, 0.2f));
        if (reg) loss = pk_add(c, loss, reg);
        if (t->src.loss_weight) loss = pk_scale(c, loss, (float)t->src.loss_weight(t->src.self));
        float lv = 0;
        if (!loss || tensor_download(loss, &lv) != PK_OK)
            return pk_error(PK_ERR_INVALID, "3DGS: loss: %s", polyak_error());
        /* with the loss read: did the render fit the rasterizer's buffers? (before the
         * backward, so a redo adds no gradients twice) */
        PK_TRY(pk_splat_renderer_check(t->renderer, redo));
        if (*redo) return PK_OK;
        stamp t4 = stamp_now();
        PK_TRY(autograd_backward(c, loss));
        stamp t5 = stamp_now();
        PK_TRY(tensor_download(in.means2d_grad, t->grad2d));
        PK_TRY(tensor_download(out.radii, t->radii));
        PK_TRY(tensor_download(out.rgb, t->rgb));
        if (t->src.add_stats) *gr = (gs_array_grads){.means2d = t->grad2d};
        stamp t6 = stamp_now();
        stamp sb1 = splat_backward_time(c);
        add_render_phases(tm, (stamp[7]){t0, t1, t2, t3, t4, t5, t6}, sb0, sb1);
        *loss_out = lv;
        return PK_OK;
    }
    gs_arrays arr;
    PK_TRY(t->src.produce(t->src.self, cam, degree, &arr, gr));
    PK_TRY(ensure_radii(t, arr.n));
    int64_t n = arr.n, K = (int64_t)(degree + 1) * (degree + 1);
    pk_splat_inputs in = {.means = leaf(t, arr.means, 2, (int64_t[]){n, 3}),
                          .log_scales = leaf(t, arr.log_scales, 2, (int64_t[]){n, 3}),
                          .quats = leaf(t, arr.quats, 2, (int64_t[]){n, 4}),
                          .opacity_logits = leaf(t, arr.opacity_logits, 1, (int64_t[]){n}),
                          .sh = leaf(t, arr.sh, 3, (int64_t[]){n, K, 3}),
                          .sh_degree = degree,
                          .background = {bg[0], bg[1], bg[2]},
                          .means2d_grad = tensor_new(c->step, PK_F32, 2, (int64_t[]){n, 2})};
    if (!in.means || !in.log_scales || !in.quats || !in.opacity_logits || !in.sh ||
        !in.means2d_grad || tensor_fill(in.means2d_grad, 0) != PK_OK)
        return pk_error(PK_ERR_NOMEM, "3DGS: cannot create the step's tensors: %s", polyak_error());
    stamp t2 = stamp_now();
    pk_splat_outputs out;
    PK_TRY(pk_splat(c, t->renderer, cam, &in, &out));
    stamp t3 = stamp_now();
    /* 3DGS: (1 - lambda_dssim) L1 + lambda_dssim (1 - SSIM), lambda_dssim = 0.2 */
    tensor *loss = pk_add(c, pk_scale(c, pk_l1(c, out.rgb, gt), 0.8f),
                          pk_affine(c, pk_ssim(c, out.rgb, gt), -0.2f, 0.2f));
    if (!loss) return pk_error(PK_ERR_INVALID, "3DGS: loss: %s", polyak_error());
    stamp t4 = stamp_now();
    PK_TRY(autograd_backward(c, loss));
    stamp t5 = stamp_now();
    /* the loss is read with the gradients: one host wait for the step on a GPU, not two */
    float lv = 0;
    PK_TRY(tensor_download(loss, &lv));
    PK_TRY(tensor_download(in.means->grad, gr->means));
    PK_TRY(tensor_download(in.log_scales->grad, gr->log_scales));
    PK_TRY(tensor_download(in.quats->grad, gr->quats));
    PK_TRY(tensor_download(in.opacity_logits->grad, gr->opacity_logits));
    PK_TRY(tensor_download(in.sh->grad, gr->sh));
    PK_TRY(tensor_download(in.means2d_grad, gr->means2d));
    PK_TRY(tensor_download(out.radii, t->radii));
    PK_TRY(tensor_download(out.rgb, t->rgb));
    /* after the same wait: did the render fit the rasterizer's buffers? */
    PK_TRY(pk_splat_renderer_check(t->renderer, redo));
    stamp t6 = stamp_now();
    /* the tape walks the loss ops and the rasterizer in one backward: the splat op's kernel
     * time (timed by the context) is the rasterizer's share, the rest of the walk the loss's */
    stamp sb1 = splat_backward_time(c);
    add_render_phases(tm, (stamp[7]){t0, t1, t2, t3, t4, t5, t6}, sb0, sb1);
    *loss_out = lv;
    return PK_OK;
}

/* train_render_once, redone when the Vulkan rasterizer reports that the render had more
 * (tile, Gaussian) pairs than its buffers held (they have grown by then); the source's
 * produce clears the gradient buffers again. */
static pk_status train_render(gs_trainer *t, const splat_camera *cam, const float *gt_host,
                              tensor *gt_dev, int degree, const float bg[3], bool stats,
                              gs_array_grads *gr, double *loss_out, double *se_out) {
    for (int attempt = 0;; attempt++) {
        int redo = 0;
        PK_TRY(train_render_once(t, cam, gt_host, gt_dev, degree, bg, stats, gr, loss_out, se_out,
                                 &redo));
        if (!redo) return PK_OK;
        if (attempt == 2)
            return pk_error(PK_ERR_DEVICE, "3DGS: the rasterizer's pair buffers did not grow to "
                                           "fit the frame after 3 tries");
    }
}

/* Data parallel: averages the step's gradients over the ranks' views (each loss is a mean
 * over its image) and sums their densification terms, in one allreduce of one packed buffer;
 * the summed terms go into the statistics when `stats`. */
static pk_status world_grads(gs_trainer *t, gs_array_grads *gr, int degree, int W, int H,
                             bool stats) {
    int64_t n = t->src.count(t->src.self), K = (int64_t)(degree + 1) * (degree + 1);
    float *parts[5] = {gr->means, gr->log_scales, gr->quats, gr->opacity_logits, gr->sh};
    const int64_t width[5] = {3, 3, 4, 1, K * 3};
    int64_t total = 2 * n;
    for (int k = 0; k < 5; k++)
        total += width[k] * n;
    if ((size_t)total > t->dp_cap) {
        float *b = realloc(t->dp_buf, sizeof(float) * (size_t)total);
        if (!b) return pk_error(PK_ERR_NOMEM, "3DGS: out of memory for the gradient allreduce");
        t->dp_buf = b, t->dp_cap = (size_t)total;
    }
    float *b = t->dp_buf;
    int64_t at = 0;
    for (int k = 0; k < 5; k++) {
        memcpy(b + at, parts[k], sizeof(float) * (size_t)(width[k] * n));
        at += width[k] * n;
    }
    float *norm = b + at, *seen = b + at + n;
    gs_explicit_stat_terms(t->gx, gr->means2d, t->radii, W, H, norm, seen);
    dist_stats c0 = dist_stats_get();
    PK_TRY(dist_sum_f32(b, total));
    dist_stats c1 = dist_stats_get();
    t->comm.seconds += c1.seconds - c0.seconds, t->comm.bytes += c1.bytes - c0.bytes;
    t->comm.calls += c1.calls - c0.calls;
    float inv = 1.0f / (float)dist_size();
    at = 0;
    for (int k = 0; k < 5; k++) {
        for (int64_t i = 0; i < width[k] * n; i++)
            parts[k][i] = b[at + i] * inv;
        at += width[k] * n;
    }
    if (stats) gs_explicit_add_stat_terms(t->gx, norm, seen, t->radii);
    return PK_OK;
}

pk_status gs_trainer_step(gs_trainer *t, gs_step_result *r) {
    memset(r, 0, sizeof *r);
    gs_timing *tm = &t->timing;
    stamp t0 = stamp_now();
    int64_t it = t->step + 1; /* 3DGS's 1-based iteration */
    int degree = sh_degree_at(t, it);
    /* data parallel over cameras: a step takes the next `ranks` views of the order, this
     * rank renders the one at its rank (the only one in a world of one) */
    int v = -1;
    if (t->src.pick_view) { /* a source that chooses its views (Momentum-GS: the block's) */
        if (t->order_pos >= t->n_train) {
            pk_rng_shuffle(&t->rng, t->order, t->n_train);
            t->order_pos = 0;
        }
        v = t->src.pick_view(t->src.self, it, &t->rng);
        if (v < 0) v = t->train_idx[t->order[t->order_pos++]];
    } else
        for (int k = 0; k < dist_size(); k++) {
            if (t->order_pos >= t->n_train) {
                pk_rng_shuffle(&t->rng, t->order, t->n_train);
                t->order_pos = 0;
            }
            int vk = t->train_idx[t->order[t->order_pos++]];
            if (k == dist_rank()) v = vk;
        }
    /* the view at the run's current resolution (coarse to fine) */
    int level = level_at(t, it);
    const splat_camera *cam =
        level ? &t->level_cams[(size_t)v * t->levels + level - 1] : &t->cams[v];
    const float *gt = t->gt;
    tensor *gt_dev = t->gt_dev ? t->gt_dev[(size_t)v * (t->levels + 1) + level] : NULL;
    stamp t1 = stamp_now();
    if (level)
        gt = t->pyramid[(size_t)v * t->levels + level - 1];
    else if (!gt_dev)
        ground_truth(&t->images[v], t->o.background, t->gt);
    int W = cam->width, H = cam->height;
    float bg[3] = {t->o.background[0], t->o.background[1], t->o.background[2]};
    if (t->o.random_background > 0) /* one colour per view: every rank draws all of them */
        for (int r = 0; r < dist_size(); r++)
            for (int k = 0; k < 3; k++) {
                float u = (float)pk_rng_uniform(&t->rng);
                if (r == dist_rank()) bg[k] = u;
            }
    int64_t npix = 3 * (int64_t)W * H;
    stamp t2 = stamp_now();
    ADD_PHASE(tm, data, t1, t2);
    gs_array_grads gr = {0};
    double loss = 0, se = -1;
    bool dev_stats = (t->dev && it < t->o.densify_until) ||
                     (t->sdev && gs_scaffold_stats_due(t->sc, it)) || t->sres;
    PK_TRY(train_render(t, cam, gt, gt_dev, degree, bg, dev_stats, &gr, &loss, &se));
    /* resident: read the losses back when the ring is full, before densification or an
     * opacity reset (the host needs the statistics then anyway) and at the last step */
    bool flushed = false;
    if (resident(t)) {
        bool host_work = (t->gx && it < t->o.densify_until &&
                          ((it > t->o.densify_from && it % t->o.densify_interval == 0) ||
                           it % t->o.opacity_reset == 0)) ||
                         (t->sc && gs_scaffold_adjust_due(t->sc, it)) ||
                         (t->sres && t->src.dev_host_due(t->src.self, it));
        /* the first step of the process reads back too: it sizes the rasterizer's pair
         * buffers, so a first frame over their initial capacity redoes one step, not the
         * HIST_ROWS steps up to the first regular read-back */
        if (t->npend >= HIST_ROWS || host_work || it >= t->o.iters || !t->sized) {
            t->sized = true;
            bool rewound;
            PK_TRY(flush(t, true, &loss, &se, &rewound));
            if (rewound) { /* the steps since the snapshot are redone by the next calls */
                r->step = t->step, r->rewound = true;
                r->gaussians = t->src.count(t->src.self);
                r->loss = t->last_loss, r->psnr = t->last_psnr;
                return PK_OK;
            }
            flushed = true;
        }
    }
    bool reduced_stats = false;
    if (dist_size() > 1 && !t->src.gather) { /* a gathering source reduces its own */
        if (t->sc) { /* anchors' and decoder's gradients, the growing statistics */
            dist_stats c0 = dist_stats_get();
            PK_TRY(gs_scaffold_reduce_world(t->sc, gr.means2d, t->radii, W, H,
                                            gs_scaffold_stats_due(t->sc, it)));
            dist_stats c1 = dist_stats_get();
            t->comm.seconds += c1.seconds - c0.seconds, t->comm.bytes += c1.bytes - c0.bytes;
            t->comm.calls += c1.calls - c0.calls;
        } else
            PK_TRY(world_grads(t, &gr, degree, W, H, it < t->o.densify_until));
        reduced_stats = true;
    }
    stamp t4 = stamp_now();
    /* training PSNR of the clamped render, as 3DGS's training report */
    if (!resident(t)) { /* resident: the device summed it */
        se = 0;
        for (int64_t i = 0; i < npix; i++) {
            float c = t->rgb[i] < 0 ? 0 : t->rgb[i] > 1 ? 1 : t->rgb[i];
            se += ((double)c - gt[i]) * ((double)c - gt[i]);
        }
    }
    double psnr = se > 0 ? 10 * log10((double)npix / se) : 100;
    /* densification (3DGS train.py: statistics, densify_and_prune, reset_opacity; a step that
     * replaced the parameters has no optimizer update, as torch skips tensors without .grad) */
    bool skip_update = false;
    if (t->sc) {
        /* Scaffold-GS train.py: statistics inside (start_stat, update_until), then the step,
         * then adjust_anchor (the optimizer steps before the anchors change) */
        /* resident: added on the device; data parallel: added by gs_scaffold_reduce_world */
        if (!t->sdev && !reduced_stats && gs_scaffold_stats_due(t->sc, it))
            t->src.add_stats(t->src.self, gr.means2d, t->radii, W, H);
    } else if (t->gx && it < t->o.densify_until) {
        /* resident: train_render added them on the device */
        if (!reduced_stats && !t->dev) gs_explicit_add_stats(t->gx, gr.means2d, t->radii, W, H);
    } else if (!t->gx && t->src.add_stats && !t->sres) /* the source keeps its own window */
        t->src.add_stats(t->src.self, gr.means2d, t->radii, W, H);
    stamp t5 = stamp_now();
    bool host_changed = false; /* resident: the host changed the Gaussians; upload them */
    if (t->gx && it < t->o.densify_until) {
        bool due_densify = it > t->o.densify_from && it % t->o.densify_interval == 0;
        if (due_densify || it % t->o.opacity_reset == 0) PK_TRY(sync_host(t));
        if (due_densify) {
            gs_densify_params dp = {.grad_threshold = t->o.grad_threshold,
                                    .percent_dense = 0.01,
                                    .min_opacity = 0.005,
                                    /* 3DGS passes 20 px after the first reset, but its
                                     * densification_postfix has zeroed max_radii2D just
                                     * before the test, so the screen test never fires;
                                     * we follow the code (REFERENCE.md: code over paper) */
                                    .max_screen_size = 0,
                                    .prune_big_world =
                                        it > t->o.opacity_reset && t->o.prune_big_scale > 0,
                                    .big_world_scale = t->o.prune_big_scale,
                                    .max_gaussians = t->o.max_gaussians};
            gs_densify_report rep;
            if (dist_size() > 1) {
                /* rank 0 decides which Gaussians to clone and split from the summed
                 * statistics and broadcasts the decision (a byte per Gaussian); every rank
                 * applies it with the same generator (the largest radii maxed over the ranks
                 * for the pruning), and a hash proves they hold the same Gaussians after it */
                int64_t n = t->src.count(t->src.self);
                PK_TRY(dist_max_f32(gs_explicit_max_radii(t->gx), n));
                uint8_t *kind = malloc((size_t)(n ? n : 1));
                if (!kind) return pk_error(PK_ERR_NOMEM, "3DGS: out of memory densifying");
                pk_status s = dist_is_root() ? gs_explicit_densify_decide(t->gx, &dp, kind) : PK_OK;
                if (s == PK_OK) s = dist_bcast(kind, (size_t)n, 0);
                if (s == PK_OK) s = gs_explicit_densify_apply(t->gx, &dp, kind, &t->rng, &rep);
                free(kind);
                PK_TRY(s);
                PK_TRY(
                    dist_check_same(gs_explicit_hash(t->gx), "the Gaussians after densification"));
            } else
                PK_TRY(gs_explicit_densify(t->gx, &dp, &t->rng, &rep));
            r->densified = true;
            skip_update = true;
            host_changed = true;
        }
        if (it % t->o.opacity_reset == 0) {
            gs_explicit_reset_opacity(t->gx);
            r->opacity_reset = true;
            skip_update = true;
            host_changed = true;
        }
    }
    if (t->dev && host_changed) PK_TRY(gs_explicit_dev_upload(t->dev));
    stamp t6 = stamp_now();
    if (!skip_update) {
        if (t->dev) {
            PK_TRY(gs_explicit_dev_step(t->dev, it));
            t->host_stale = true;
        } else if (t->sdev) {
            PK_TRY(gs_scaffold_dev_step(t->sdev, it));
            t->host_stale = true;
        } else if (t->sres) {
            PK_TRY(t->src.dev_step(t->src.self, it));
            t->host_stale = true;
        } else
            PK_TRY(t->src.step(t->src.self, it));
    }
    if (t->sc) {
        gs_scaffold_report rep;
        bool due = t->sdev && gs_scaffold_adjust_due(t->sc, it);
        if (due) PK_TRY(sync_host(t)); /* resident: the anchors and statistics come back */
        PK_TRY(gs_scaffold_adjust(t->sc, it, &t->rng, &rep));
        if (due) PK_TRY(gs_scaffold_dev_upload(t->sdev));
        /* data parallel: every rank grew and pruned from the same summed statistics with the
         * same generator; a hash proves they hold the same anchors after it */
        if (dist_size() > 1 && rep.before > 0)
            PK_TRY(dist_check_same(gs_scaffold_hash(t->sc), "the anchors after growing"));
        r->densified = rep.before > 0;
        r->anchors = gs_scaffold_anchors(t->sc);
    }
    if (t->src.after_step) PK_TRY(t->src.after_step(t->src.self, it));
    stamp t7 = stamp_now();
    t->step++;
    stamp tl = stamp_now();
    t->seconds += tl.wall - t0.wall; /* the log row's time is the next step's */
    if (resident(t) && !flushed) {   /* its row is written at the next flush */
        t->pend[t->npend - 1].step = t->step, t->pend[t->npend - 1].npix = npix;
        t->pend[t->npend - 1].gaussians = t->src.count(t->src.self);
        t->pend[t->npend - 1].seconds = t->seconds;
        loss = t->last_loss, psnr = t->last_psnr;
    } else {
        PK_TRY(log_row(t, t->step, t->src.count(t->src.self), t->seconds, loss, psnr));
        t->last_loss = loss, t->last_psnr = psnr;
    }
    if (flushed) PK_TRY(snapshot(t));
    stamp t8 = stamp_now();
    ADD_PHASE(tm, stats, t4, t5);
    ADD_PHASE(tm, densify, t5, t6);
    ADD_PHASE(tm, optimizer, t6, t7);
    ADD_PHASE(tm, total, t0, t8);
    tm->steps++;
    phases_other(&tm->wall);
    phases_other(&tm->cpu);
    r->step = t->step;
    r->width = W, r->height = H;
    r->loss = loss;
    r->psnr = psnr;
    r->gaussians = t->src.count(t->src.self);
    pk_step_counters_mark(&t->counters, t->ctx->dev);
    if (t->o.eval_interval > 0 && t->step % t->o.eval_interval == 0 && t->step < t->o.iters) {
        gs_eval ev;
        PK_TRY(gs_trainer_evaluate(t, false, &ev));
        r->evaluated = true;
        r->eval_psnr = ev.psnr;
        r->eval_ssim = ev.ssim;
    }
    if (t->o.save_every > 0 && t->step % t->o.save_every == 0 && t->step < t->o.iters) {
        PK_TRY(gs_trainer_checkpoint(t));
        r->checkpointed = true;
    }
    return PK_OK;
}

pk_status gs_trainer_ground_truth_into(const gs_trainer *t, int view, float *out, float bg[3],
                                       bool *random_bg) {
    if (view < 0 || view >= t->scene.n)
        return pk_error(PK_ERR_INVALID, "view %d outside the scene", view);
    if (out) ground_truth(&t->images[view], t->o.background, out);
    for (int k = 0; k < 3; k++)
        bg[k] = t->o.background[k];
    *random_bg = t->o.random_background > 0;
    return PK_OK;
}

tensor *gs_trainer_ground_truth_tensor(const gs_trainer *t, int view) {
    if (!t->gt_dev || view < 0 || view >= t->scene.n) return NULL;
    return t->gt_dev[(size_t)view * (t->levels + 1)];
}

pk_splat_renderer *gs_trainer_renderer(gs_trainer *t) { return t->renderer; }

const float *gs_trainer_ground_truth(gs_trainer *t, int view, int level, int *w, int *h) {
    if (view < 0 || view >= t->scene.n || level < 0 || level > t->levels) return NULL;
    if (level == 0) {
        ground_truth(&t->images[view], t->o.background, t->gt);
        *w = t->images[view].w, *h = t->images[view].h;
        return t->gt;
    }
    const float *p = t->pyramid[(size_t)view * t->levels + level - 1];
    if (!p) return NULL;
    const splat_camera *c = &t->level_cams[(size_t)view * t->levels + level - 1];
    *w = c->width, *h = c->height;
    return p;
}

/* The file name (no folder, no extension) of a view's image. */
static void view_stem(const pk_camera *c, char *buf, size_t n) {
    const char *b = strrchr(c->name, '/');
    b = b ? b + 1 : c->name;
    snprintf(buf, n, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
}

/* Appends "step,psnr,ssim" of an evaluation to out/eval.csv (its header first when new), for
 * the report's held-out curves. A resumed run appends after the rows it already has. */
static pk_status log_eval(gs_trainer *t, const gs_eval *ev) {
    if (!ev->images || !dist_is_root()) return PK_OK; /* one rank writes the run folder */
    char *path = io_path_join(t->o.out, "eval.csv");
    if (!path) return pk_error(PK_ERR_NOMEM, "out of memory");
    bool fresh = !io_is_file(path);
    FILE *f = fopen(path, "a");
    pk_status s = PK_OK;
    if (!f)
        s = pk_error(PK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    else {
        if (fresh) fprintf(f, "step,psnr,ssim\n");
        fprintf(f, "%lld,%.4f,%.5f\n", (long long)t->step, ev->psnr, ev->ssim);
        if (fclose(f) != 0) s = pk_error(PK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    free(path);
    return s;
}

pk_status gs_trainer_view_metrics(gs_trainer *t, int v, double *psnr, double *ssim) {
    if (v < 0 || v >= t->scene.n) return pk_error(PK_ERR_INVALID, "view %d outside the scene", v);
    PK_TRY(sync_host(t));
    const pk_image *img = &t->images[v];
    int W = img->w, H = img->h;
    int64_t npix = 3 * (int64_t)W * H;
    ground_truth(img, t->o.background, t->gt);
    gs_arrays arr;
    gs_array_grads gr;
    splat_scene_view view;
    PK_TRY(render_view(t, v, 0, &arr, &gr, &view));
    for (int64_t i = 0; i < npix; i++)
        t->rgb[i] = t->rgb[i] < 0 ? 0 : t->rgb[i] > 1 ? 1 : t->rgb[i];
    PK_TRY(gs_ssim(t->pool, t->rgb, t->gt, 3, H, W, 0, NULL, ssim));
    *psnr = gs_psnr(t->rgb, t->gt, npix);
    return PK_OK;
}

pk_status gs_trainer_evaluate(gs_trainer *t, bool write_renders, gs_eval *ev) {
    *ev = (gs_eval){0};
    PK_TRY(sync_host(t));
    if (t->src.gather) PK_TRY(t->src.gather(t->src.self)); /* every block on every rank */
    int degree = sh_degree_at(t, t->step);
    /* several ranks: each scores its shard of the held-out views and the scores are summed;
     * with renders to write, rank 0 scores (and writes) them all and sends the scores */
    int64_t first = 0, count = t->n_test;
    bool world = dist_size() > 1;
    if (world) {
        for (int k = 0; k < t->n_test; k++)
            t->test_psnr[k] = t->test_ssim[k] = 0;
        if (!write_renders)
            dist_shard(t->n_test, &first, &count);
        else if (!dist_is_root())
            count = 0;
    }
    for (int k = (int)first; k < first + count; k++) {
        int v = t->test_idx[k];
        const pk_image *img = &t->images[v];
        int W = img->w, H = img->h;
        int64_t npix = 3 * (int64_t)W * H;
        ground_truth(img, t->o.background, t->gt);
        gs_arrays arr;
        gs_array_grads gr;
        splat_scene_view view;
        PK_TRY(render_view(t, v, degree, &arr, &gr, &view));
        for (int64_t i = 0; i < npix; i++)
            t->rgb[i] = t->rgb[i] < 0 ? 0 : t->rgb[i] > 1 ? 1 : t->rgb[i];
        double ssim;
        PK_TRY(gs_ssim(t->pool, t->rgb, t->gt, 3, H, W, 0, NULL, &ssim));
        t->test_psnr[k] = gs_psnr(t->rgb, t->gt, npix);
        t->test_ssim[k] = ssim;
        ev->psnr += t->test_psnr[k] / t->n_test;
        ev->ssim += ssim / t->n_test;
        ev->images++;
        if (!write_renders) continue;
        pk_image side;
        PK_TRY(image_create(&side, 2 * W, H, 3, 8));
        uint8_t *px = side.data;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++) {
                    size_t i = (size_t)c * W * H + (size_t)y * W + (size_t)x;
                    px[((size_t)y * 2 * W + (size_t)x) * 3 + c] =
                        (uint8_t)lrintf(t->gt[i] * 255.0f);
                    px[((size_t)y * 2 * W + (size_t)(W + x)) * 3 + c] =
                        (uint8_t)lrintf(t->rgb[i] * 255.0f);
                }
        char stem[256], name[300];
        view_stem(&t->scene.cams[v], stem, sizeof stem);
        snprintf(name, sizeof name, "%s.png", stem);
        char *path = io_path_join(t->renders_dir, name);
        pk_status s = path ? png_write(path, &side) : pk_error(PK_ERR_NOMEM, "out of memory");
        free(path);
        image_free(&side);
        PK_TRY(s);
    }
    if (!world) return log_eval(t, ev);
    if (write_renders) {
        PK_TRY(dist_bcast(t->test_psnr, sizeof(double) * (size_t)t->n_test, 0));
        PK_TRY(dist_bcast(t->test_ssim, sizeof(double) * (size_t)t->n_test, 0));
    } else {
        PK_TRY(dist_sum_f64(t->test_psnr, t->n_test));
        PK_TRY(dist_sum_f64(t->test_ssim, t->n_test));
    }
    *ev = (gs_eval){.images = t->n_test};
    for (int k = 0; k < t->n_test; k++) {
        ev->psnr += t->test_psnr[k] / t->n_test;
        ev->ssim += t->test_ssim[k] / t->n_test;
    }
    return log_eval(t, ev);
}

pk_status gs_trainer_checkpoint(gs_trainer *t) {
    PK_TRY(sync_host(t));
    if (t->src.gather) PK_TRY(t->src.gather(t->src.self)); /* rank 0 saves every block */
    if (dist_size() > 1 &&
        t->gx) { /* the statistics rank 0 saves: the largest radii of every rank */
        PK_TRY(dist_max_f32(gs_explicit_max_radii(t->gx), t->src.count(t->src.self)));
        PK_TRY(dist_check_same(gs_explicit_hash(t->gx), "the Gaussians to checkpoint"));
    }
    enum { MAX_TENSORS = 1024 }; /* block-wise sources list a table per block */
    st_write_tensor *ts = malloc(sizeof(st_write_tensor) * MAX_TENSORS);
    if (!ts) return pk_error(PK_ERR_NOMEM, "out of memory");
    int n = 0;
    pk_status s = t->src.checkpoint_tensors(t->src.self, ts, MAX_TENSORS - 1, &n);
    if (s != PK_OK) {
        free(ts);
        return s;
    }
    int64_t ord_shape[1] = {t->n_train};
    ts[n++] = (st_write_tensor){"train.order", ST_I32, 1, ord_shape, t->order};
    uint64_t rng[CKPT_RNG_WORDS] = {t->rng.state, (uint64_t)t->order_pos, 0, 0};
    memcpy(&rng[2], &t->seconds, sizeof t->seconds);
    s = run_checkpoint_save_ex(t->run, t->step, NULL, 0, ts, n, rng);
    free(ts);
    return s;
}

/* Sets metrics.json's `name`: {phase: ms per step, ...}. */
static void phases_metric(pk_run *run, const char *name, const gs_phases *p, int64_t steps) {
    double per = steps ? 1e3 / (double)steps : 0;
    char text[512];
    snprintf(text, sizeof text,
             "{\"data\": %.3f, \"params_in\": %.3f, \"raster_forward\": %.3f, "
             "\"loss_forward\": %.3f, \"loss_backward\": %.3f, \"raster_backward\": %.3f, "
             "\"grads_out\": %.3f, \"stats\": %.3f, \"densify\": %.3f, \"optimizer\": %.3f, "
             "\"other\": %.3f, \"total\": %.3f}",
             p->data * per, p->params_in * per, p->raster_fwd * per, p->loss_fwd * per,
             p->loss_bwd * per, p->raster_bwd * per, p->grads_out * per, p->stats * per,
             p->densify * per, p->optimizer * per, p->other * per, p->total * per);
    run_metric_json(run, name, text);
}

/* Appends s to a JSON text as a string literal (quotes, backslashes, controls escaped). */
static size_t json_string_at(char *buf, size_t cap, size_t at, const char *s) {
    at += (size_t)snprintf(buf + at, at < cap ? cap - at : 0, "\"");
    for (const char *q = s; *q; q++)
        if (*q == '"' || *q == '\\')
            at += (size_t)snprintf(buf + at, at < cap ? cap - at : 0, "\\%c", *q);
        else if ((unsigned char)*q < 0x20)
            at += (size_t)snprintf(buf + at, at < cap ? cap - at : 0, "\\u%04x", (unsigned char)*q);
        else
            at += (size_t)snprintf(buf + at, at < cap ? cap - at : 0, "%c", *q);
    return at + (size_t)snprintf(buf + at, at < cap ? cap - at : 0, "\"");
}

/* Renders Gaussians g through view v into t->rgb (clamped); the ground truth in t->gt. */
static pk_status render_gaussians(gs_trainer *t, const pk_gaussians *g, int v, float *sh) {
    int64_t n = (int64_t)g->n;
    PK_TRY(ensure_radii(t, n));
    splat_scene_view view = {
        .n = (int)n,
        .means = g->xyz,
        .log_scales = g->scale,
        .quats = g->rot,
        .opacity_logits = g->opacity,
        .sh = sh,
        .sh_degree = g->sh_degree,
        .background = {t->o.background[0], t->o.background[1], t->o.background[2]}};
    splat_outputs so = {.rgb = t->rgb, .alpha = t->alpha, .radii = t->radii};
    PK_TRY(splat_forward(t->st, t->pool, &t->cams[v], &view, &so));
    int64_t npix = 3 * (int64_t)t->images[v].w * t->images[v].h;
    for (int64_t i = 0; i < npix; i++)
        t->rgb[i] = t->rgb[i] < 0 ? 0 : t->rgb[i] > 1 ? 1 : t->rgb[i];
    return PK_OK;
}

pk_status gs_trainer_bake(gs_trainer *t, int sh_degree, int view_stride, pk_gaussians *g,
                          gs_bake_report *r) {
    memset(g, 0, sizeof *g);
    if (!t->src.bake)
        return pk_error(PK_ERR_INVALID,
                        "bake: the model's Gaussians are explicit already (only decoder models, "
                        "scaffold and momentum-gs, are baked)");
    if (sh_degree < 0 || sh_degree > 3)
        return pk_error(PK_ERR_INVALID, "bake: SH degree %d outside 0..3", sh_degree);
    int stride = view_stride > 1 ? view_stride : 1, nv = 0;
    int *views = malloc(sizeof(int) * (size_t)(t->n_train + 1));
    if (!views) return pk_error(PK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < t->n_train; i += stride)
        views[nv++] = t->train_idx[i];
    stamp t0 = stamp_now();
    pk_status s = t->src.bake(t->src.self, t->cams, views, nv, sh_degree, g);
    free(views);
    PK_TRY(s);
    if (!r) return PK_OK;
    *r = (gs_bake_report){.sh_degree = sh_degree, .views = nv, .gaussians = (int64_t)g->n};
    r->seconds = stamp_now().wall - t0.wall;
    int64_t kc = (sh_degree + 1) * (sh_degree + 1), n = (int64_t)g->n;
    float *sh = malloc(sizeof(float) * (size_t)(n * kc * 3 + 1)); /* (n, K, 3) */
    int maxhw = 0;
    for (int i = 0; i < t->scene.n; i++)
        if (t->images[i].w * t->images[i].h > maxhw) maxhw = t->images[i].w * t->images[i].h;
    float *dec = malloc(sizeof(float) * 3 * (size_t)maxhw);
    if (!sh || !dec) s = pk_error(PK_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == PK_OK && i < n; i++)
        for (int64_t k = 0; k < kc; k++)
            for (int ch = 0; ch < 3; ch++)
                sh[(i * kc + k) * 3 + ch] =
                    k == 0 ? g->f_dc[i * 3 + ch]
                           : g->f_rest[i * 3 * (kc - 1) + ch * (kc - 1) + (k - 1)];
    for (int k = 0; s == PK_OK && k < t->n_test; k++) {
        int v = t->test_idx[k];
        const pk_image *img = &t->images[v];
        int W = img->w, H = img->h;
        int64_t npix = 3 * (int64_t)W * H;
        double pd, sd, pb, sb;
        s = gs_trainer_view_metrics(t, v, &pd, &sd); /* the decoders' render; t->gt set */
        if (s == PK_OK) memcpy(dec, t->rgb, sizeof(float) * (size_t)npix);
        if (s == PK_OK) s = render_gaussians(t, g, v, sh);
        if (s == PK_OK) s = gs_ssim(t->pool, t->rgb, t->gt, 3, H, W, 0, NULL, &sb);
        if (s != PK_OK) break;
        pb = gs_psnr(t->rgb, t->gt, npix);
        r->psnr_decoder += pd, r->ssim_decoder += sd, r->psnr_baked += pb, r->ssim_baked += sb;
        r->psnr_vs_decoder += gs_psnr(t->rgb, dec, npix);
        r->images++;
    }
    free(sh), free(dec);
    if (s != PK_OK) {
        gaussians_free(g);
        return s;
    }
    if (r->images) {
        double k = 1.0 / r->images;
        r->psnr_decoder *= k, r->ssim_decoder *= k, r->psnr_baked *= k, r->ssim_baked *= k;
        r->psnr_vs_decoder *= k;
    }
    return PK_OK;
}

pk_status gs_trainer_finish(gs_trainer *t, gs_eval *ev) {
    PK_TRY(sync_host(t));
    PK_TRY(gs_trainer_evaluate(t, true, ev));
    if (dist_is_root()) { /* the one rank that writes the run folder */
        pk_gaussians g;
        gs_bake_report br;
        if (t->src.bake) { /* a decoder model: its Gaussians baked with SH degree 3 */
            PK_TRY(gs_trainer_bake(t, 3, 1, &g, &br));
            char bj[400];
            snprintf(bj, sizeof bj,
                     "{\"sh_degree\": %d, \"views\": %d, \"gaussians\": %lld, \"images\": %d, "
                     "\"psnr_decoder\": %.4f, \"psnr_baked\": %.4f, \"psnr_drop\": %.4f, "
                     "\"ssim_decoder\": %.5f, \"ssim_baked\": %.5f, \"psnr_vs_decoder\": %.4f, "
                     "\"seconds\": %.3f}",
                     br.sh_degree, br.views, (long long)br.gaussians, br.images, br.psnr_decoder,
                     br.psnr_baked, br.psnr_decoder - br.psnr_baked, br.ssim_decoder, br.ssim_baked,
                     br.psnr_vs_decoder, br.seconds);
            if (br.images) run_metric_json(t->run, "bake", bj);
        } else
            PK_TRY(t->src.export_gaussians(t->src.self, &g));
        char *ply = io_path_join(t->o.out, "point_cloud.ply");
        pk_status s = ply ? ply_write_3dgs(ply, &g) : pk_error(PK_ERR_NOMEM, "out of memory");
        free(ply);
        gaussians_free(&g);
        PK_TRY(s);
    }
    PK_TRY(gs_trainer_checkpoint(t));
    const gs_timing *tm = &t->timing;
    pk_run *run = t->run;
    run_metric_str(run, "kind", "splat");
    run_metric(run, "psnr", ev->images ? round(ev->psnr * 1e4) / 1e4 : NAN);
    run_metric(run, "ssim", ev->images ? round(ev->ssim * 1e5) / 1e5 : NAN);
    run_metric(run, "gaussians", (double)t->src.count(t->src.self));
    run_metric_str(run, "model", t->sc ? "scaffold" : "3dgs");
    if (t->sc) {
        run_metric(run, "anchors", (double)gs_scaffold_anchors(t->sc));
        run_metric(run, "voxel_size", gs_scaffold_voxel(t->sc));
    }
    run_metric(run, "iters", (double)t->step);
    run_metric(run, "seconds", round(t->seconds * 1e3) / 1e3);
    run_metric(run, "train_images", t->n_train);
    run_metric(run, "test_images", t->n_test);
    run_metric(run, "width", t->images[t->train_idx[0]].w);
    run_metric(run, "height", t->images[t->train_idx[0]].h);
    run_metric_str(run, "device", pk_device_get_info(t->ctx->dev)->name);
    phases_metric(run, "ms_per_step", &tm->wall, tm->steps);
    phases_metric(run, "cpu_ms_per_step", &tm->cpu, tm->steps);
    run_metric(run, "timed_steps", (double)tm->steps);
    run_metric_vulkan(run, t->ctx->dev, &t->counters);
    run_metric(run, "ranks", dist_size());
    if (tm->steps > 0) { /* rank 0's gradient allreduce (the densification checks excluded) */
        double k = 1.0 / (double)tm->steps;
        char dj[320];
        snprintf(dj, sizeof dj,
                 "{\"ranks\": %d, \"steps\": %lld, \"step_seconds\": %.5f, "
                 "\"comm_seconds_per_step\": %.5f, \"comm_bytes_per_step\": %.0f}",
                 dist_size(), (long long)tm->steps, tm->wall.total * k, t->comm.seconds * k,
                 (double)t->comm.bytes * k);
        run_metric_json(run, "distributed", dj);
    }
    /* per held-out view: {"name": ..., "psnr": ..., "ssim": ...} */
    int views = ev->images ? t->n_test : 0;
    size_t cap = 64 + (size_t)views * 1200;
    char *v = malloc(cap);
    if (!v) return pk_error(PK_ERR_NOMEM, "out of memory");
    size_t at = (size_t)snprintf(v, cap, "[");
    for (int k = 0; k < views; k++) {
        char stem[256];
        view_stem(&t->scene.cams[t->test_idx[k]], stem, sizeof stem);
        at += (size_t)snprintf(v + at, cap - at, "%s\n    {\"name\": ", k ? "," : "");
        at = json_string_at(v, cap, at, stem);
        at += (size_t)snprintf(v + at, cap - at, ", \"psnr\": %.4f, \"ssim\": %.5f}",
                               t->test_psnr[k], t->test_ssim[k]);
    }
    snprintf(v + at, cap - at, "%s]", views ? "\n  " : "");
    run_metric_json(run, "test_views", v);
    free(v);
    return run_metrics_write(run);
}

pk_status gs_render_ply(const char *ply_path, const char *data, int downscale, int view,
                        float **rgb, int *w, int *h) {
    *rgb = NULL;
    pk_scene sc;
    PK_TRY(scene_load(data, &(scene_options){.skip_image_check = 1}, &sc));
    pk_status s = PK_OK;
    pk_gaussians g = {0};
    splat_state *st = NULL;
    float *alpha = NULL, *sh = NULL;
    if (view < 0 || view >= sc.n) {
        s = pk_error(PK_ERR_INVALID, "%s: view %d outside 0..%d", data, view, sc.n - 1);
        goto done;
    }
    if ((s = ply_read_3dgs(ply_path, &g)) != PK_OK) goto done;
    pk_camera cs = camera_scaled(&sc.cams[view], downscale);
    splat_camera cam = to_splat_camera(&cs);
    int K = (g.sh_degree + 1) * (g.sh_degree + 1);
    size_t n = g.n, hw = (size_t)cam.width * (size_t)cam.height;
    sh = malloc(sizeof(float) * 3 * (size_t)K * (n ? n : 1));
    alpha = malloc(sizeof(float) * hw);
    *rgb = malloc(sizeof(float) * 3 * hw);
    st = splat_state_create();
    if (!sh || !alpha || !*rgb || !st) {
        s = pk_error(PK_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* PLY channel-major rest coefficients back to (n, K, 3) */
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++) {
            sh[i * (size_t)K * 3 + (size_t)c] = g.f_dc[i * 3 + (size_t)c];
            for (int k = 1; k < K; k++)
                sh[(i * (size_t)K + (size_t)k) * 3 + (size_t)c] =
                    g.f_rest[i * 3 * (size_t)(K - 1) + (size_t)c * (size_t)(K - 1) + (size_t)k - 1];
        }
    }
    splat_scene_view sv = {.n = (int)n,
                           .means = g.xyz,
                           .log_scales = g.scale,
                           .quats = g.rot,
                           .opacity_logits = g.opacity,
                           .sh = sh,
                           .sh_degree = g.sh_degree};
    splat_outputs so = {.rgb = *rgb, .alpha = alpha};
    s = splat_forward(st, NULL, &cam, &sv, &so);
    *w = cam.width, *h = cam.height;
done:
    if (s != PK_OK) free(*rgb), *rgb = NULL;
    splat_state_destroy(st);
    free(alpha), free(sh);
    gaussians_free(&g);
    scene_free(&sc);
    return s;
}
