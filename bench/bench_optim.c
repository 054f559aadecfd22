/* bench_optim.c - `polyak bench teacher|optim` (see bench_optim.h).
 *
 * Byte-counting convention (the same for us, memcpy and PyTorch): a kernel's rate is the bytes
 * it must stream divided by its time. EMA teacher: read t, read s, write t = 3 x 4 bytes per
 * parameter (k sources: 2 + k streams). memcpy of B bytes reads B and writes B, so it is run on
 * 1.5 x the parameter bytes to move the same 3 x 4 bytes per parameter; its rate counts read
 * plus write bytes. AdamW: read p, g, m, v and write p, m, v = 7 streams; SGD with momentum:
 * read p, g, b and write p, b = 5 streams. The ratio is our rate over the peer's rate, so for
 * the same work it is the peer's time over ours.
 *
 * Timing: medians over --runs runs after two warm-up runs, CLOCK_MONOTONIC; --rounds rounds
 * alternate a peer run and ours (the project's machines are shared: load moves the numbers by
 * 2x within a minute) and each side keeps its best round. Parameters are one
 * contiguous arena split into --tensors tensors (sizes cycle through weights 1..7, as the peer
 * script); our kernels update the whole arena in one call, the peer works per tensor.
 * --vk adds rows for Vulkan device 0 (one dispatch + sync per update; peer = our CPU row). */
#include "bench_optim.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/threads.h"
#include "device.h"
#include "optim/optim_kernels.h"
#include "optim/optim_vk.h"
#include "teacher/teacher_kernels.h"
#include "teacher/teacher_vk.h"
#include "vk/vk.h"

typedef struct bench_opts {
    int64_t params;
    int tensors, runs, rounds, peer;
    const char *json, *peer_script;
    const char *device; /* --device: a Vulkan spec adds rows measured there; cpu or NULL none */
} bench_opts;

typedef struct bench_result {
    char name[64], backend[16], unit[16], peer[64];
    double ms, rate, peer_rate, ratio; /* peer_rate/ratio: NAN when there is no peer */
} bench_result;

typedef struct bench_list {
    bench_result r[32];
    int n;
} bench_list;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*bench_fn)(void *ctx);

static double median_ms(bench_fn fn, void *ctx, int runs) {
    double t[64];
    if (runs > 64) runs = 64;
    if (runs < 1) runs = 1;
    fn(ctx);
    fn(ctx);
    for (int i = 0; i < runs; i++) {
        double t0 = now_ms();
        fn(ctx);
        t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    return runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
}

/* Medians of k functions measured interleaved (A B C A B C ...), so that the machine's load
 * drifts (shared cores) hit all of them alike; ratios between them are what we report. */
static void medians_interleaved(int k, bench_fn *fns, void **ctxs, int runs, double *out) {
    double t[8][64];
    if (runs > 64) runs = 64;
    if (runs < 1) runs = 1;
    for (int i = 0; i < k; i++) {
        fns[i](ctxs[i]);
        fns[i](ctxs[i]);
    }
    for (int r = 0; r < runs; r++)
        for (int i = 0; i < k; i++) {
            double t0 = now_ms();
            fns[i](ctxs[i]);
            t[i][r] = now_ms() - t0;
        }
    for (int i = 0; i < k; i++) {
        qsort(t[i], (size_t)runs, sizeof t[i][0], cmp_double);
        out[i] = runs % 2 ? t[i][runs / 2] : 0.5 * (t[i][runs / 2 - 1] + t[i][runs / 2]);
    }
}

static float *bench_alloc(int64_t n, float scale, unsigned seed) {
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) return NULL;
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) * (1.0f / 16777216.0f) - 0.5f) * scale;
    }
    return x;
}

/* tensor sizes: weights 1..7 cycling, the remainder on the last (as peer_optim.py) */
static void bench_segments(const bench_opts *o, pk_optim_segment *segs) {
    int64_t wsum = 0;
    for (int i = 0; i < o->tensors; i++)
        wsum += 1 + i % 7;
    int64_t off = 0;
    for (int i = 0; i < o->tensors; i++) {
        int64_t n = o->params * (1 + i % 7) / wsum;
        if (i == o->tensors - 1) n = o->params - off;
        /* a 2-D view with rows of 768 where it divides (an output-row count for AdamP) */
        int64_t cols = n % 768 == 0 ? 768 : n;
        segs[i] = (pk_optim_segment){
            .offset = off, .rows = n / cols, .cols = cols, .ndim = cols == n ? 1 : 2};
        off += n;
    }
}

static void add_result(bench_list *l, const char *name, double ms, double bytes_or_items,
                       const char *unit, const char *peer, double peer_ms) {
    if (l->n >= (int)(sizeof l->r / sizeof l->r[0])) return;
    bench_result *r = &l->r[l->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->backend, sizeof r->backend, "cpu");
    snprintf(r->unit, sizeof r->unit, "%s", unit);
    snprintf(r->peer, sizeof r->peer, "%s", peer ? peer : "");
    r->ms = ms;
    r->rate = bytes_or_items / (ms * 1e-3) / 1e9;
    r->peer_rate = peer && peer_ms > 0 ? bytes_or_items / (peer_ms * 1e-3) / 1e9 : NAN;
    r->ratio = peer && peer_ms > 0 ? r->rate / r->peer_rate : NAN;
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.params = 25000000, .tensors = 200, .runs = 7, .rounds = 3, .peer = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json") && v) {
            o->json = v;
            i++;
        } else if (!strcmp(a, "--params") && v) {
            o->params = atoll(v);
            i++;
        } else if (!strcmp(a, "--tensors") && v) {
            o->tensors = atoi(v);
            i++;
        } else if (!strcmp(a, "--runs") && v) {
            o->runs = atoi(v);
            i++;
        } else if (!strcmp(a, "--rounds") && v) {
            o->rounds = atoi(v) > 0 ? atoi(v) : 1;
            i++;
        } else if (!strcmp(a, "--peer") && v) {
            o->peer_script = v;
            i++;
        } else if (!strcmp(a, "--no-peer")) {
            o->peer = 0;
        } else if (!strcmp(a, "--device") && v) {
            o->device = v;
            i++;
        } else if (!strcmp(a, "--vk")) { /* the old spelling of --device vk */
            o->device = "vk";
        } else {
            fprintf(stderr,
                    "usage: polyak bench teacher|optim [--json FILE] [--params N] [--tensors N] "
                    "[--runs N] [--rounds N] [--no-peer] [--peer SCRIPT] [--device D]\n"
                    "  the CPU rows are always measured; --device vk|vk:N|vk:NAME adds rows "
                    "measured on that Vulkan device\n");
            return -1;
        }
    }
    if (o->params < o->tensors || o->tensors < 1 || o->tensors > 100000) {
        fprintf(stderr, "bench: need 1 <= tensors <= params\n");
        return -1;
    }
    return 0;
}

/* Runs the PyTorch peer once with `threads` torch threads; returns its JSON or NULL. */
static cJSON *run_peer_once(const bench_opts *o, const char *only, int threads) {
    if (!o->peer) return NULL;
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "bench: /usr/bin/python3 cannot import torch; no PyTorch peer\n");
        return NULL;
    }
    const char *script = o->peer_script;
    const char *cands[] = {
#ifdef POLYAK_SOURCE_DIR
        POLYAK_SOURCE_DIR "/bench/peer_optim.py",
#endif
        "bench/peer_optim.py", "../bench/peer_optim.py"};
    for (size_t i = 0; !script && i < sizeof cands / sizeof cands[0]; i++) {
        FILE *f = fopen(cands[i], "r");
        if (f) {
            fclose(f);
            script = cands[i];
        }
    }
    if (!script) {
        fprintf(stderr, "bench: bench/peer_optim.py not found (use --peer SCRIPT)\n");
        return NULL;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --params %lld --tensors %d --runs %d --only %s --threads %d",
             script, (long long)o->params, o->tensors, o->runs, only, threads);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    int rc = pclose(p);
    if (rc != 0) {
        fprintf(stderr, "bench: peer failed: %s\n", cmd);
        return NULL;
    }
    return cJSON_Parse(buf);
}

/* Folds one peer result into *best, keeping the faster time of every "*_ms" entry (and noting
 * the torch thread count that gave it). Takes ownership of `other`. */
static void peer_merge(cJSON **best, cJSON *other, int threads) {
    if (!other) return;
    if (!*best) {
        *best = other;
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, other) {
        size_t len = strlen(it->string);
        if (len < 3 || strcmp(it->string + len - 3, "_ms") != 0) continue;
        cJSON *mine = cJSON_GetObjectItemCaseSensitive(*best, it->string);
        if (cJSON_IsNumber(mine) && cJSON_IsNumber(it) && it->valuedouble < mine->valuedouble) {
            cJSON_SetNumberValue(mine, it->valuedouble);
            char key[96];
            snprintf(key, sizeof key, "%s_threads", it->string);
            cJSON_DeleteItemFromObjectCaseSensitive(*best, key);
            cJSON_AddNumberToObject(*best, key, threads);
        }
    }
    cJSON_Delete(other);
}

/* Round r's peer run: torch at 1 thread on even rounds, at our thread count on odd ones (on
 * this project's shared 2-core machines torch's OpenMP is often slower with 2 threads). */
static void peer_round(const bench_opts *o, const char *only, int threads, int r, int *ok,
                       cJSON **best) {
    if (!*ok) return;
    int t = r % 2 == 0 || threads <= 1 ? 1 : threads;
    cJSON *p = run_peer_once(o, only, t);
    if (!p) {
        *ok = 0;
        return;
    }
    peer_merge(best, p, t);
}

static double peer_ms(const cJSON *peer, const char *key) {
    const cJSON *x = peer ? cJSON_GetObjectItemCaseSensitive(peer, key) : NULL;
    return cJSON_IsNumber(x) ? x->valuedouble : -1;
}

static int report(const bench_list *l, const bench_opts *o, int threads, const cJSON *peer) {
    printf("%-26s %-4s %10s %10s  %-28s %10s %7s\n", "name", "bk", "ms", "rate", "peer",
           "peer rate", "ratio");
    for (int i = 0; i < l->n; i++) {
        const bench_result *r = &l->r[i];
        printf("%-26s %-4s %10.2f %7.2f %-4s  %-28s %10.2f %7.2f\n", r->name, r->backend, r->ms,
               r->rate, r->unit, r->peer, r->peer_rate, r->ratio);
    }
    printf("(%lld params in %d tensors, %d threads; medians of %d runs, best of %d rounds that "
           "alternate with the torch peer at 1 and %d threads)\n",
           (long long)o->params, o->tensors, threads, o->runs, o->rounds, threads);
    if (!o->json) return 0;
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < l->n; i++) {
        const bench_result *r = &l->r[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", r->name);
        cJSON_AddStringToObject(x, "backend", r->backend);
        cJSON_AddNumberToObject(x, "ms", r->ms);
        cJSON_AddNumberToObject(x, "rate", r->rate);
        cJSON_AddStringToObject(x, "unit", r->unit);
        if (r->peer[0]) {
            cJSON_AddStringToObject(x, "peer", r->peer);
            cJSON_AddNumberToObject(x, "peer_rate", r->peer_rate);
            cJSON_AddNumberToObject(x, "ratio", r->ratio);
        } else {
            cJSON_AddNullToObject(x, "peer");
            cJSON_AddNullToObject(x, "peer_rate");
            cJSON_AddNullToObject(x, "ratio");
        }
        cJSON_AddItemToArray(arr, x);
    }
    char *text = cJSON_Print(arr);
    cJSON_Delete(arr);
    FILE *f = fopen(o->json, "w");
    if (!f || !text || fputs(text, f) < 0 || fputc('\n', f) < 0) {
        fprintf(stderr, "bench: cannot write %s\n", o->json);
        if (f) fclose(f);
        free(text);
        return 1;
    }
    free(text);
    return fclose(f) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Vulkan (--vk): the same updates as one dispatch each, timed to completion (dispatch + sync)  */

typedef struct vctx {
    vkctx *ctx;
    pk_block a, b, c, d;
    int64_t n, step;
    pk_status st;
} vctx;

static void run_vk_ema(void *c) {
    vctx *x = c;
    if (x->st == PK_OK) x->st = teacher_ema_vk(x->ctx, &x->a, 0, &x->b, 0, x->n, 0.996);
    if (x->st == PK_OK) x->st = vkctx_sync(x->ctx);
}

static void run_vk_adamw(void *c) {
    vctx *x = c;
    pk_adamw_params h = {.lr = 1e-3, .weight_decay = 1e-2};
    if (x->st == PK_OK)
        x->st = optim_adamw_step_vk(x->ctx, &h, ++x->step, x->n, (pk_vk_range){&x->a, 0},
                                    (pk_vk_range){&x->b, 0}, (pk_vk_range){&x->c, 0},
                                    (pk_vk_range){&x->d, 0});
    if (x->st == PK_OK) x->st = vkctx_sync(x->ctx);
}

/* Adds "vk" rows for the teacher (which = 0) or AdamW (which = 1) on the device --device names
 * (nothing for cpu or no --device). The CPU row of the same name is the peer. */
static void bench_vk(const bench_opts *o, bench_list *l, int which, double cpu_ms) {
    if (!o->device || !strcmp(o->device, "cpu")) return;
    pk_device *dev = NULL;
    if (pk_device_open(o->device, &dev) != PK_OK) {
        fprintf(stderr, "bench: --device %s: %s; no vk rows\n", o->device, polyak_error());
        return;
    }
    if (pk_device_backend(dev) != PK_BACKEND_VK) {
        fprintf(stderr, "bench: --device %s is no Vulkan device; no vk rows\n", o->device);
        pk_device_close(dev);
        return;
    }
    vctx x = {.n = o->params, .ctx = pk_device_impl(dev)};
    size_t bytes = (size_t)x.n * sizeof(float);
    float *h = bench_alloc(x.n, 1, 9);
    pk_block *blks[4] = {&x.a, &x.b, &x.c, &x.d};
    int nb = which == 0 ? 2 : 4;
    for (int i = 0; i < nb && x.st == PK_OK && h; i++) {
        x.st = vkctx_block_alloc(x.ctx, bytes, blks[i]);
        if (x.st == PK_OK) x.st = vkctx_block_write(x.ctx, blks[i], 0, h, bytes);
    }
    if (x.st == PK_OK && h) {
        int runs = o->runs < 5 ? o->runs : 5; /* lavapipe is slow; a few runs suffice */
        double ms = median_ms(which == 0 ? run_vk_ema : run_vk_adamw, &x, runs);
        if (x.st == PK_OK) {
            add_result(l, which == 0 ? "teacher_ema" : "adamw", ms,
                       (which == 0 ? 3.0 : 7.0) * (double)bytes, "GB/s", "cpu (this run)", cpu_ms);
            snprintf(l->r[l->n - 1].backend, sizeof l->r[l->n - 1].backend, "vk");
            fprintf(stderr, "bench: vk rows measured on %s\n", vkctx_info(x.ctx)->name);
        }
    }
    if (x.st != PK_OK) fprintf(stderr, "bench: vk: %s\n", polyak_error());
    for (int i = 0; i < nb; i++)
        vkctx_block_free(x.ctx, blks[i]);
    free(h);
    pk_device_close(dev);
}

/* ------------------------------------------------------------------------------------------ */
/* teacher                                                                                    */

typedef struct tctx {
    pk_pool *pool;
    float *t, *s, *s2, *dst;
    const float *src;
    int64_t n, ncopy;
    pk_teacher_segment *segs;
    int nseg;
} tctx;

static void run_ema(void *c) {
    tctx *x = c;
    teacher_ema(x->pool, x->t, x->s, x->n, 0.996);
}

static void run_ema_1thread(void *c) {
    tctx *x = c;
    teacher_ema(NULL, x->t, x->s, x->n, 0.996);
}

static void run_ema2(void *c) {
    tctx *x = c;
    const float *src[2] = {x->s, x->s2};
    const double w[2] = {0.05, 0.05};
    teacher_ema_multi(x->pool, x->t, 2, src, w, x->n, 0.9);
}

static void run_ema_segments(void *c) {
    tctx *x = c;
    const float *src[1] = {x->s};
    teacher_ema_segments(x->pool, x->t, 1, src, NULL, 0.996, x->segs, x->nseg);
}

typedef struct copy_job {
    float *dst;
    const float *src;
} copy_job;

static void copy_range(void *arg, int64_t b, int64_t e) {
    const copy_job *j = arg;
    memcpy(j->dst + b, j->src + b, (size_t)(e - b) * sizeof(float));
}

static void run_memcpy_1(void *c) {
    tctx *x = c;
    memcpy(x->dst, x->src, (size_t)x->ncopy * sizeof(float));
}

static void run_memcpy_pool(void *c) {
    tctx *x = c;
    copy_job j = {x->dst, x->src};
    pk_parallel_for(x->pool, x->ncopy, 65536, copy_range, &j);
}

int cmd_bench_teacher(int argc, char **argv) {
    bench_opts o;
    if (parse_opts(argc, argv, &o)) return 2;
    pk_pool *pool = pk_pool_create(0);
    int threads = pk_pool_threads(pool);
    bench_list l = {.n = 0};
    const int64_t n = o.params;
    const double bytes3 = 3.0 * 4.0 * (double)n;

    cJSON *peer = NULL;
    int peer_ok = o.peer;

    /* memcpy of 1.5 x the parameter bytes: 3 x 4 bytes per parameter of read + write */
    tctx x = {.pool = pool, .n = n, .ncopy = n + n / 2};
    float *a = bench_alloc(x.ncopy, 1, 1), *b = bench_alloc(x.ncopy, 1, 2);
    x.t = bench_alloc(n, 1, 3);
    x.s = bench_alloc(n, 1, 4);
    x.s2 = bench_alloc(n, 1, 5);
    pk_optim_segment *os = malloc((size_t)o.tensors * sizeof *os);
    x.segs = malloc((size_t)o.tensors * sizeof *x.segs);
    if (!a || !b || !x.t || !x.s || !x.s2 || !os || !x.segs) {
        fprintf(stderr, "bench: out of memory\n");
        return 1;
    }
    x.src = a;
    x.dst = b;
    bench_segments(&o, os);
    for (int i = 0; i < o.tensors; i++)
        x.segs[i] = (pk_teacher_segment){
            .src_offset = os[i].offset, .dst_offset = os[i].offset, .len = os[i].rows * os[i].cols};
    x.nseg = o.tensors;
    bench_fn fns[6] = {run_memcpy_1, run_memcpy_pool,  run_ema,
                       run_ema2,     run_ema_segments, run_ema_1thread};
    void *ctxs[6] = {&x, &x, &x, &x, &x, &x};
    double ms[6] = {INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY};
    for (int r = 0; r < o.rounds; r++) {
        peer_round(&o, "teacher", threads, r, &peer_ok, &peer);
        double round_ms[6];
        medians_interleaved(6, fns, ctxs, o.runs, round_ms);
        for (int i = 0; i < 6; i++)
            ms[i] = round_ms[i] < ms[i] ? round_ms[i] : ms[i];
    }
    double lerp = peer_ms(peer, "lerp_ms"), fe = peer_ms(peer, "foreach_ema_ms");
    double fe2 = peer_ms(peer, "foreach_ema2_ms");
    double mc1 = ms[0], mcp = ms[1], t_ema = ms[2], t_ema2 = ms[3], t_seg = ms[4];
    double mc = mc1 < mcp ? mc1 : mcp;
    add_result(&l, "memcpy_1thread", mc1, bytes3, "GB/s", NULL, 0);
    add_result(&l, "memcpy_pool", mcp, bytes3, "GB/s", NULL, 0);
    free(a);
    free(b);
    /* vs memcpy of the same bytes: the ratio column carries our rate / memcpy rate */
    add_result(&l, "teacher_ema_vs_memcpy", t_ema, bytes3, "GB/s", "memcpy (best of 1t/pool)", mc);
    int have_peer = lerp > 0 && fe > 0;
    double best_peer = have_peer ? (lerp < fe ? lerp : fe) : 0;
    add_result(&l, "teacher_ema", t_ema, bytes3, "GB/s",
               have_peer ? (lerp < fe ? "torch lerp_ per tensor" : "torch _foreach_mul_+add_")
                         : NULL,
               best_peer);
    add_result(&l, "teacher_ema_lerp_peer", t_ema, bytes3, "GB/s",
               lerp > 0 ? "torch lerp_ per tensor" : NULL, lerp);
    add_result(&l, "teacher_ema_foreach_peer", t_ema, bytes3, "GB/s",
               fe > 0 ? "torch _foreach_mul_+add_" : NULL, fe);
    add_result(&l, "teacher_ema_2src", t_ema2, 4.0 * 4.0 * (double)n, "GB/s",
               fe2 > 0 ? "torch _foreach_mul_+2 add_" : NULL, fe2);
    add_result(&l, "teacher_ema_segments", t_seg, bytes3, "GB/s", "teacher_ema (1 range)", t_ema);
    add_result(&l, "teacher_ema_1thread", ms[5], bytes3, "GB/s", "memcpy (best of 1t/pool)", mc);
    bench_vk(&o, &l, 0, t_ema);
    free(x.t);
    free(x.s);
    free(x.s2);
    free(x.segs);
    free(os);
    int rc = report(&l, &o, threads, peer);
    cJSON_Delete(peer);
    pk_pool_destroy(pool);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* optimizers                                                                                 */

typedef struct octx {
    pk_pool *pool;
    float *p, *g, *m, *v;
    int64_t n, step;
    pk_optim_segment *segs;
    int nseg;
    pk_stable_spam_tensor_state *ts;
} octx;

static void run_adamw(void *c) {
    octx *x = c;
    pk_adamw_params h = {.lr = 1e-3, .weight_decay = 1e-2};
    optim_adamw_step(x->pool, &h, ++x->step, x->n, x->p, x->g, x->m, x->v);
}

static void run_adamw_1thread(void *c) {
    octx *x = c;
    pk_adamw_params h = {.lr = 1e-3, .weight_decay = 1e-2};
    optim_adamw_step(NULL, &h, ++x->step, x->n, x->p, x->g, x->m, x->v);
}

static void run_sgd(void *c) {
    octx *x = c;
    pk_sgd_params h = {.lr = 1e-3, .momentum = 0.9};
    optim_sgd_step(x->pool, &h, ++x->step, x->n, x->p, x->g, x->m);
}

static void run_adamp(void *c) {
    octx *x = c;
    pk_adamp_params h = {.lr = 1e-3, .weight_decay = 1e-2};
    optim_adamp_step(x->pool, &h, ++x->step, x->segs, x->nseg, x->p, x->g, x->m, x->v, NULL);
}

static void run_spam(void *c) {
    octx *x = c;
    pk_spam_params h = {.lr = 1e-3};
    optim_spam_step(x->pool, &h, ++x->step, x->n, x->p, x->g, x->m, x->v, NULL);
}

static void run_sspam(void *c) {
    octx *x = c;
    pk_stable_spam_params h = {.lr = 1e-3};
    optim_stable_spam_step(x->pool, &h, ++x->step, x->segs, x->nseg, x->p, x->g, x->m, x->v, x->ts);
}

int cmd_bench_optim(int argc, char **argv) {
    bench_opts o;
    if (parse_opts(argc, argv, &o)) return 2;
    pk_pool *pool = pk_pool_create(0);
    int threads = pk_pool_threads(pool);
    bench_list l = {.n = 0};
    const int64_t n = o.params;
    cJSON *peer = NULL;
    int peer_ok = o.peer;
    octx x = {.pool = pool, .n = n, .nseg = o.tensors};
    x.p = bench_alloc(n, 1, 1);
    x.g = bench_alloc(n, 1e-2f, 2);
    x.m = calloc((size_t)n, sizeof *x.m);
    x.v = calloc((size_t)n, sizeof *x.v);
    x.segs = malloc((size_t)o.tensors * sizeof *x.segs);
    x.ts = calloc((size_t)o.tensors, sizeof *x.ts);
    if (!x.p || !x.g || !x.m || !x.v || !x.segs || !x.ts) {
        fprintf(stderr, "bench: out of memory\n");
        return 1;
    }
    bench_segments(&o, x.segs);
    const double P = 4.0 * (double)n;
    /* rounds alternate the peer and us, so both see the same machine load; each keeps its
     * best round */
    double t_adamw = INFINITY, t_adamw1 = INFINITY, t_sgd = INFINITY;
    for (int r = 0; r < o.rounds; r++) {
        peer_round(&o, "optim", threads, r, &peer_ok, &peer);
        memset(x.m, 0, (size_t)n * sizeof *x.m);
        memset(x.v, 0, (size_t)n * sizeof *x.v);
        x.step = 0;
        double t = median_ms(run_adamw, &x, o.runs);
        t_adamw = t < t_adamw ? t : t_adamw;
        t = median_ms(run_adamw_1thread, &x, o.runs);
        t_adamw1 = t < t_adamw1 ? t : t_adamw1;
        memset(x.m, 0, (size_t)n * sizeof *x.m);
        x.step = 0;
        t = median_ms(run_sgd, &x, o.runs);
        t_sgd = t < t_sgd ? t : t_sgd;
    }
    add_result(&l, "adamw", t_adamw, 7 * P, "GB/s", "torch AdamW(foreach=True)",
               peer_ms(peer, "adamw_ms"));
    bench_vk(&o, &l, 1, t_adamw);
    add_result(&l, "adamw_1thread", t_adamw1, 7 * P, "GB/s", "torch AdamW(foreach=True)",
               peer_ms(peer, "adamw_ms"));
    add_result(&l, "sgd_momentum", t_sgd, 5 * P, "GB/s", "torch SGD(0.9, foreach=True)",
               peer_ms(peer, "sgd_ms"));
    double t;
    memset(x.m, 0, (size_t)n * sizeof *x.m);
    memset(x.v, 0, (size_t)n * sizeof *x.v);
    x.step = 0;
    /* AdamP: pass 1 reads p, g, m, v and writes m, v; pass 2 reads p, m, v, writes p */
    t = median_ms(run_adamp, &x, o.runs);
    add_result(&l, "adamp", t, 10 * P, "GB/s", NULL, 0);
    x.step = 0;
    t = median_ms(run_spam, &x, o.runs);
    add_result(&l, "spam", t, 7 * P, "GB/s", NULL, 0);
    x.step = 0;
    /* Stable-SPAM: two reduction passes over g, then the 7-stream update */
    t = median_ms(run_sspam, &x, o.runs);
    add_result(&l, "stable_spam", t, 9 * P, "GB/s", NULL, 0);
    free(x.p);
    free(x.g);
    free(x.m);
    free(x.v);
    free(x.segs);
    free(x.ts);
    int rc = report(&l, &o, threads, peer);
    cJSON_Delete(peer);
    pk_pool_destroy(pool);
    return rc;
}
