/* bench_splat.c - `polyak bench splat`: the Gaussian rasterizer through the autograd op
 * (pk_splat), forward and forward + backward, on random scenes in front of the camera at
 * 320x240 and 1280x720 with 50k / 100k / 500k Gaussians (SH degree 3), with the (Gaussian,
 * tile) pair count and the projection stage timed on its own (the same per-Gaussian function
 * the forward runs); also SSIM forward + backward at 320x240 (the trainer's per-step loss).
 * Medians of --reps runs after one warm-up. Prints a table; --json FILE as bench_json.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd.h"
#include "bench_json.h"
#include "cli.h"
#include "commands.h"
#include "cpu/threads.h"
#include "ops/ops_splat.h"
#include "ops/ops_ssim.h"
#include "splat/splat_project.h"

typedef struct splat_cfg {
    int w, h, n;
} splat_cfg;

/* A random 3DGS-like scene: means uniform in the view frustum (x1.1) at depths 2..8, world
 * scales 0.005..0.03 (a few pixels at 320x240, as in a trained scene's bulk), random
 * rotations, opacity logits ~ N(0, 1.5^2), SH degree 3 with a strong DC term. Host arrays in
 * one allocation: means (n,3), log_scales (n,3), quats (n,4), opacity (n), sh (n,16,3). */
typedef struct bench_scene {
    float *buf, *means, *log_scales, *quats, *opacity, *sh;
} bench_scene;

static double lcg_unif(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((*s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double lcg_normal(uint64_t *s) {
    double u = lcg_unif(s), v = lcg_unif(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static bool scene_make(bench_scene *sc, int n, const splat_camera *cam, uint64_t seed) {
    size_t per = 3 + 3 + 4 + 1 + 48;
    sc->buf = malloc(sizeof(float) * per * (size_t)n);
    if (!sc->buf) return false;
    sc->means = sc->buf;
    sc->log_scales = sc->means + 3 * (size_t)n;
    sc->quats = sc->log_scales + 3 * (size_t)n;
    sc->opacity = sc->quats + 4 * (size_t)n;
    sc->sh = sc->opacity + (size_t)n;
    double tx = 0.5 * cam->width / cam->fx, ty = 0.5 * cam->height / cam->fy;
    for (int i = 0; i < n; i++) {
        double z = 2.0 + 6.0 * lcg_unif(&seed);
        sc->means[3 * i] = (float)((lcg_unif(&seed) * 2 - 1) * 1.1 * tx * z);
        sc->means[3 * i + 1] = (float)((lcg_unif(&seed) * 2 - 1) * 1.1 * ty * z);
        sc->means[3 * i + 2] = (float)z;
        for (int j = 0; j < 3; j++)
            sc->log_scales[3 * i + j] = (float)log(0.005 + 0.025 * lcg_unif(&seed));
        for (int j = 0; j < 4; j++)
            sc->quats[4 * i + j] = (float)lcg_normal(&seed);
        sc->opacity[i] = (float)(1.5 * lcg_normal(&seed));
        for (int k = 0; k < 48; k++)
            sc->sh[48 * i + k] = (float)((k < 3 ? 1.0 : 0.1) * lcg_normal(&seed));
    }
    return true;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct run_state {
    pk_ctx *c;
    pk_splat_renderer *r;
    splat_camera cam;
    bench_scene sc;
    tensor *t[5]; /* means, log_scales, quats, opacity, sh in the parameter arena */
    float *up;    /* (3, H, W) random d loss / d rgb */
    int n;
} run_state;

/* One forward (backward too when `bwd`) through the op; waits for the device. */
static pk_status splat_once(run_state *s, bool bwd) {
    PK_TRY(pk_step_begin(s->c));
    bool old = pk_set_grad_enabled(s->c, bwd);
    pk_splat_inputs in = {.means = s->t[0],
                          .log_scales = s->t[1],
                          .quats = s->t[2],
                          .opacity_logits = s->t[3],
                          .sh = s->t[4],
                          .sh_degree = 3};
    pk_splat_outputs out;
    pk_status st = pk_splat(s->c, s->r, &s->cam, &in, &out);
    pk_set_grad_enabled(s->c, old);
    PK_TRY(st);
    if (bwd) {
        tensor *up = tensor_new(s->c->step, PK_F32, 3, out.rgb->shape);
        if (!up) return PK_ERR_NOMEM;
        PK_TRY(tensor_upload(up, s->up));
        PK_TRY(autograd_backward_from(s->c, out.rgb, up));
    }
    return pk_device_sync(s->c->dev);
}

typedef struct proj_job {
    splat_cam_derived cd;
    splat_scene_view v;
    splat_proj *p;
} proj_job;

static void proj_range(void *arg, int64_t b, int64_t e) {
    proj_job *j = arg;
    for (int64_t g = b; g < e; g++)
        splat_project_one(&j->cd, &j->v, (int)g, &j->p[g]);
}

/* CPU seconds of the whole process (all threads): on a shared machine wall time includes
 * waiting for cores, CPU time does not. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Median wall ms of `reps` runs of kind 0 forward, 1 forward + backward, 2 projection only;
 * *cpu_ms gets the median CPU ms (all threads). */
static double median_ms(run_state *s, int kind, int reps, proj_job *pj, double *cpu_ms) {
    double t[32], u[32];
    for (int i = -1; i < reps; i++) {
        double t0 = cli_now(), c0 = cpu_now();
        if (kind == 2)
            pk_parallel_for(s->c->pool, s->n, 256, proj_range, pj);
        else if (splat_once(s, kind == 1) != PK_OK)
            return NAN;
        if (i >= 0) t[i] = (cli_now() - t0) * 1e3, u[i] = (cpu_now() - c0) * 1e3;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    qsort(u, (size_t)reps, sizeof(double), cmp_double);
    if (cpu_ms) *cpu_ms = u[reps / 2];
    return t[reps / 2];
}

/* Uploads a host array into a new parameter-arena tensor that requires gradients. */
static tensor *param_of(pk_ctx *c, int ndim, const int64_t *shape, const float *data) {
    tensor *t = pk_param_new(c, "bench", ndim, shape);
    if (!t || tensor_upload(t, data) != PK_OK) return NULL;
    return t;
}

static bool bench_one(pk_ctx *c, const splat_cfg *cfg, int reps, bench_json *bj,
                      const char *backend) {
    run_state s = {.c = c, .n = cfg->n};
    float f = 0.9375f * (float)cfg->w; /* 300 px at 320 wide: a 56 degree horizontal view */
    s.cam = (splat_camera){.fx = f,
                           .fy = f,
                           .cx = 0.5f * (float)cfg->w,
                           .cy = 0.5f * (float)cfg->h,
                           .width = cfg->w,
                           .height = cfg->h};
    s.cam.world_to_cam[0] = s.cam.world_to_cam[5] = s.cam.world_to_cam[10] = 1.f;
    s.cam.world_to_cam[15] = 1.f;
    int64_t n = cfg->n, hw = (int64_t)cfg->w * cfg->h;
    s.up = malloc(sizeof(float) * 3 * (size_t)hw);
    proj_job pj = {.p = malloc(sizeof(splat_proj) * (size_t)n)};
    bool ok = s.up && pj.p && scene_make(&s.sc, cfg->n, &s.cam, 42 + (uint64_t)n);
    uint64_t seed = 7;
    for (int64_t i = 0; ok && i < 3 * hw; i++)
        s.up[i] = (float)(lcg_unif(&seed) * 2 - 1) / (float)hw;
    ok = ok && pk_splat_renderer_create(c, &s.r) == PK_OK;
    if (ok) {
        s.t[0] = param_of(c, 2, (int64_t[]){n, 3}, s.sc.means);
        s.t[1] = param_of(c, 2, (int64_t[]){n, 3}, s.sc.log_scales);
        s.t[2] = param_of(c, 2, (int64_t[]){n, 4}, s.sc.quats);
        s.t[3] = param_of(c, 1, (int64_t[]){n}, s.sc.opacity);
        s.t[4] = param_of(c, 3, (int64_t[]){n, 16, 3}, s.sc.sh);
        for (int i = 0; i < 5; i++)
            ok = ok && s.t[i];
    }
    double fwd = NAN, both = NAN, proj = NAN, fwd_cpu = NAN, both_cpu = NAN;
    int64_t pairs = 0;
    if (ok) {
        /* one frame first: on Vulkan the pair count it reads grows the rasterizer's buffers,
         * so the timed frames sort every pair */
        ok = splat_once(&s, false) == PK_OK;
        pairs = pk_splat_renderer_pairs(s.r);
    }
    if (ok) {
        fwd = median_ms(&s, 0, reps, NULL, &fwd_cpu);
        both = median_ms(&s, 1, reps, NULL, &both_cpu);
        pj.v = (splat_scene_view){.n = cfg->n,
                                  .means = s.sc.means,
                                  .log_scales = s.sc.log_scales,
                                  .quats = s.sc.quats,
                                  .opacity_logits = s.sc.opacity,
                                  .sh = s.sc.sh,
                                  .sh_degree = 3};
        if (c->backend == PK_BACKEND_CPU && splat_cam_derive(&s.cam, &pj.cd) == PK_OK)
            proj = median_ms(&s, 2, reps, &pj, NULL);
    }
    char name[96];
    snprintf(name, sizeof name, "splat_%dx%d_%dk", cfg->w, cfg->h, cfg->n / 1000);
    if (isnan(fwd) || isnan(both)) {
        printf("%-24s %-7s failed: %s\n", name, backend, polyak_error());
    } else {
        printf("%-24s %-7s %9.1f %9.1f %9.1f %9.1f %11lld %8.2f %9.1f %9.1f\n", name, backend, fwd,
               both, both - fwd, proj, (long long)pairs, (double)pairs / (double)n, fwd_cpu,
               both_cpu);
        char jn[128];
        snprintf(jn, sizeof jn, "%s_forward", name);
        bench_json_add(bj, jn, backend, fwd, 1e3 / fwd, "frames/s", NULL, NAN, NAN);
        snprintf(jn, sizeof jn, "%s_forward_backward", name);
        bench_json_add(bj, jn, backend, both, 1e3 / both, "frames/s", NULL, NAN, NAN);
        snprintf(jn, sizeof jn, "%s_projection", name);
        bench_json_add(bj, jn, backend, proj, (double)n / (proj * 1e3), "MGaussians/s", NULL, NAN,
                       NAN);
        snprintf(jn, sizeof jn, "%s_pairs", name);
        bench_json_add(bj, jn, backend, NAN, (double)pairs, "pairs", NULL, NAN, NAN);
    }
    pk_splat_renderer_destroy(s.r);
    free(s.sc.buf), free(s.up), free(pj.p);
    return ok && !isnan(fwd) && !isnan(both);
}

/* SSIM forward + backward on a (3, 240, 320) image pair. */
static void bench_ssim(pk_ctx *c, int reps, bench_json *bj, const char *backend) {
    int64_t shape[3] = {3, 240, 320}, n = 3 * 240 * 320;
    float *h = malloc(sizeof(float) * (size_t)n * 2);
    tensor *a = pk_param_new(c, "ssim_a", 3, shape), *b = tensor_new(c->params, PK_F32, 3, shape);
    if (!h || !a || !b) {
        free(h);
        printf("%-24s %-7s failed: out of memory\n", "ssim_320x240", backend);
        return;
    }
    uint64_t seed = 3;
    for (int64_t i = 0; i < 2 * n; i++)
        h[i] = (float)lcg_unif(&seed);
    double t[32], u[32];
    bool ok = tensor_upload(a, h) == PK_OK && tensor_upload(b, h + n) == PK_OK;
    for (int i = -1; ok && i < reps; i++) {
        double t0 = cli_now(), c0 = cpu_now();
        ok = pk_step_begin(c) == PK_OK;
        tensor *s = ok ? pk_ssim(c, a, b) : NULL;
        ok = s && autograd_backward(c, s) == PK_OK && pk_device_sync(c->dev) == PK_OK;
        if (i >= 0) t[i] = (cli_now() - t0) * 1e3, u[i] = (cpu_now() - c0) * 1e3;
    }
    free(h);
    if (!ok) {
        printf("%-24s %-7s failed: %s\n", "ssim_320x240", backend, polyak_error());
        return;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    qsort(u, (size_t)reps, sizeof(double), cmp_double);
    printf("%-24s %-7s %9s %9.2f %9s %9s %11s %8s %9s %9.2f  (SSIM fwd+bwd, 3 channels)\n",
           "ssim_320x240", backend, "", t[reps / 2], "", "", "", "", "", u[reps / 2]);
    bench_json_add(bj, "ssim_320x240_forward_backward", backend, t[reps / 2], 1e3 / t[reps / 2],
                   "frames/s", NULL, NAN, NAN);
}

int bench_splat(int argc, char **argv) {
    const char *usage = "splat [--json FILE] [--device D] [--reps N] [--threads T] [--quick]";
    const char *json = NULL, *device = NULL;
    long reps = 5, threads = 0;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            if (!cli_int("bench", "--reps", argv[++i], 1, 32, &reps)) return 2;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!cli_int("bench", "--threads", argv[++i], 1, 1024, &threads)) return 2;
        } else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else
            return cli_usage("bench", usage, "unknown option");
    }
    pk_ctx *c = NULL;
    pk_ctx_options o = {.device = device ? device : "cpu", .threads = (int)threads};
    if (pk_ctx_create(&o, &c) != PK_OK) return cli_fail("bench", "creating the context");
    const char *backend = c->backend == PK_BACKEND_CPU ? "cpu" : "vulkan";
    static const splat_cfg cfgs[] = {{320, 240, 50000},
                                     {320, 240, 100000},
                                     {320, 240, 500000},
                                     {1280, 720, 50000},
                                     {1280, 720, 500000}};
    int ncfg = quick ? 2 : (int)(sizeof cfgs / sizeof cfgs[0]);
    bench_json *bj = bench_json_open(json);
    printf("SH degree 3, %d threads, median of %ld runs (ms); backward = fwd+bwd - fwd; cpu = "
           "CPU ms of all threads\n",
           c->backend == PK_BACKEND_CPU ? pk_pool_threads(c->pool) : 0, reps);
    printf("%-24s %-7s %9s %9s %9s %9s %11s %8s %9s %9s\n", "benchmark", "backend", "forward",
           "fwd+bwd", "backward", "project", "pairs", "pairs/G", "fwd cpu", "f+b cpu");
    int failed = 0;
    for (int i = 0; i < ncfg; i++) {
        pk_arena_reset(c->params);
        pk_arena_reset(c->grads);
        failed += !bench_one(c, &cfgs[i], (int)reps, bj, backend);
    }
    pk_arena_reset(c->params);
    pk_arena_reset(c->grads);
    bench_ssim(c, (int)reps, bj, backend);
    int rc = bench_json_close(bj) ? (failed ? 1 : 0) : cli_fail("bench", "writing the JSON file");
    pk_ctx_destroy(c);
    return rc;
}
