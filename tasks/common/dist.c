/* dist.c - the process world (dist.h): MPI when built with it (POLYAK_HAVE_MPI), a world of one
 * rank otherwise. Every collective waits for the other ranks in a polled, napping MPI_Ibarrier,
 * then moves the data with the blocking MPI call (the MPI library's own algorithm and progress:
 * the fastest there is); a watchdog thread ends the job when one has waited past the deadline,
 * so a rank whose peer is gone or stuck ends the job with a message instead of hanging. */
#include "dist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef POLYAK_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static dist_stats g_stats;
static float *g_stage; /* host staging of device gradient blocks */
static size_t g_stage_cap;

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
bool dist_is_root(void) { return g_rank == 0; }

bool dist_have_mpi(void) {
#ifdef POLYAK_HAVE_MPI
    return true;
#else
    return false;
#endif
}

dist_stats dist_stats_get(void) { return g_stats; }
void dist_stats_reset(void) { memset(&g_stats, 0, sizeof g_stats); }

void dist_shard(int64_t n, int64_t *first, int64_t *count) {
    int64_t a = n * g_rank / g_size, b = n * (g_rank + 1) / g_size;
    *first = a;
    *count = b - a;
}

pk_status dist_check_batch(int64_t batch, const char *what) {
    if (batch % g_size == 0 && batch >= g_size) return PK_OK;
    return pk_error(PK_ERR_INVALID,
                    "%s: the global batch of %lld does not divide over %d ranks; use a multiple "
                    "of %d",
                    what, (long long)batch, g_size, g_size);
}

void dist_abort(int code, const char *message) {
    if (g_size <= 1) return;
    fprintf(stderr, "polyak: rank %d of %d: %s; ending every rank\n", g_rank, g_size,
            message ? message : "failed");
    fflush(stderr);
#ifdef POLYAK_HAVE_MPI
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
#endif
    exit(code ? code : 1);
}

/* True when an MPI launcher started this process (mpirun / mpiexec of OpenMPI or MPICH,
 * srun with PMI or PMIx); POLYAK_DIST=1 forces MPI on, POLYAK_DIST=0 off. A process started
 * on its own stays a world of one without MPI_Init (a singleton init costs seconds). */
static bool launched(void) {
    const char *f = getenv("POLYAK_DIST");
    if (f && *f) return strcmp(f, "0") != 0;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                                       "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

#ifdef POLYAK_HAVE_MPI

static bool g_mpi = false; /* MPI_Init done by us */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double g_timeout = 600; /* seconds a collective may wait (POLYAK_DIST_TIMEOUT) */

static pk_status watchdog_start(void);
static void watchdog_stop(void);

pk_status dist_init(int *argc, char ***argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && !launched()) {
        g_rank = 0, g_size = 1;
        return PK_OK;
    }
    if (!inited) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return pk_error(PK_ERR_IO, "MPI_Init_thread failed");
        g_mpi = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    const char *t = getenv("POLYAK_DIST_TIMEOUT");
    if (t && atof(t) > 0) g_timeout = atof(t);
    if (g_size > 1) return watchdog_start();
    return PK_OK;
}

void dist_finalize(void) {
    watchdog_stop();
    free(g_stage);
    g_stage = NULL, g_stage_cap = 0;
    int fin = 0;
    MPI_Finalized(&fin);
    if (g_mpi && !fin) MPI_Finalize();
    g_mpi = false;
}

/* The text of an MPI error code. */
static const char *mpi_text(int rc, char *buf) {
    int len = 0;
    if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) snprintf(buf, 64, "MPI error %d", rc);
    return buf;
}

/* The watchdog: a thread that sleeps while no collective is under way and, while one is,
 * wakes every tenth of the deadline (at most every 0.1 s) to see whether it has waited past
 * POLYAK_DIST_TIMEOUT. Then it prints the message and ends this process with _Exit: it calls no
 * MPI function (MPI_Init_thread asked for MPI_THREAD_FUNNELED, so only the main thread may, and
 * that one is inside the collective that cannot finish). mpirun ends the other ranks when one
 * exits without MPI_Finalize; a launcher that does not (srun without --kill-on-bad-exit) leaves
 * them to their own deadlines, which their collectives reach too. */
static pthread_t g_dog;
static bool g_dog_on;
static pthread_mutex_t g_dog_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_dog_cv;
static bool g_dog_quit;
static _Atomic(double) g_armed_at; /* wall_now() when the current collective began; 0: none */
static _Atomic(const char *) g_armed_what; /* its name, for the message */

static void *watchdog(void *arg) {
    (void)arg;
    double step = g_timeout / 10 < 0.1 ? g_timeout / 10 : 0.1;
    pthread_mutex_lock(&g_dog_mu);
    while (!g_dog_quit) {
        double t = wall_now() + step;
        struct timespec until = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
        if (until.tv_nsec > 999999999) until.tv_nsec = 999999999; /* rounding: not EINVAL */
        pthread_cond_timedwait(&g_dog_cv, &g_dog_mu, &until);     /* a timeout, or woken to quit */
        double at = atomic_load(&g_armed_at);
        if (at > 0 && wall_now() - at > g_timeout) {
            const char *what = atomic_load(&g_armed_what);
            fprintf(stderr,
                    "polyak: rank %d of %d: %s waited %.0f s for the other ranks "
                    "(POLYAK_DIST_TIMEOUT); a rank is gone or stuck; ending every rank\n",
                    g_rank, g_size, what ? what : "a collective", g_timeout);
            fflush(stderr);
            _Exit(3);
        }
    }
    pthread_mutex_unlock(&g_dog_mu);
    return NULL;
}

/* Starts the watchdog thread (the condition variable times out on CLOCK_MONOTONIC). */
static pk_status watchdog_start(void) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&g_dog_cv, &a);
    pthread_condattr_destroy(&a);
    g_dog_quit = false;
    if (pthread_create(&g_dog, NULL, watchdog, NULL) != 0)
        return pk_error(PK_ERR_IO, "rank %d of %d: cannot start the collective watchdog thread",
                        g_rank, g_size);
    g_dog_on = true;
    return PK_OK;
}

/* Stops and joins the watchdog thread, if any. */
static void watchdog_stop(void) {
    if (!g_dog_on) return;
    pthread_mutex_lock(&g_dog_mu);
    g_dog_quit = true;
    pthread_cond_signal(&g_dog_cv);
    pthread_mutex_unlock(&g_dog_mu);
    pthread_join(g_dog, NULL);
    pthread_cond_destroy(&g_dog_cv);
    g_dog_on = false;
}

/* Marks the start of a collective for the watchdog and waits, cheaply, until every rank has
 * reached it: an MPI_Ibarrier polled with MPI_Test, napping between polls after the first
 * 200, so a rank that waits for a slower one leaves the core to it instead of spinning
 * in the blocking call (which in OpenMPI polls without sleeping). The blocking call that
 * follows then only moves the data. Returns the start time; a failed barrier ends the job. */
static double arm(const char *what) {
    double t0 = wall_now();
    atomic_store(&g_armed_what, what);
    atomic_store(&g_armed_at, t0);
    MPI_Request r;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &r);
    for (long spin = 0; rc == MPI_SUCCESS; spin++) {
        int done = 0;
        rc = MPI_Test(&r, &done, MPI_STATUS_IGNORE);
        if (done) break;
        if (spin <= 200) continue;
        /* naps of 1/16 of the time waited so far, 20 us to 1 ms: a long wait (the other rank
         * still computing) costs a few hundred polls, not one every 20 us, and notices the
         * arrival at most ~6% late */
        double nap = (wall_now() - t0) / 16;
        nap = nap < 20e-6 ? 20e-6 : nap > 1e-3 ? 1e-3 : nap;
        nanosleep(&(struct timespec){0, (long)(nap * 1e9)}, NULL);
    }
    if (rc != MPI_SUCCESS) {
        char buf[MPI_MAX_ERROR_STRING];
        char msg[MPI_MAX_ERROR_STRING + 128];
        snprintf(msg, sizeof msg, "%s: waiting for the other ranks failed: %s", what,
                 mpi_text(rc, buf));
        dist_abort(2, msg);
    }
    return t0;
}

/* Marks its end: a failed MPI call ends the job (the others are stuck in the collective). */
static pk_status disarm(double t0, int rc, const char *what) {
    atomic_store(&g_armed_at, 0.0);
    g_stats.seconds += wall_now() - t0;
    if (rc != MPI_SUCCESS) {
        char buf[MPI_MAX_ERROR_STRING];
        char msg[MPI_MAX_ERROR_STRING + 128];
        snprintf(msg, sizeof msg, "%s failed: %s", what, mpi_text(rc, buf));
        dist_abort(2, msg);
    }
    return PK_OK;
}

/* In-place allreduce of n items in pieces below INT_MAX elements. */
static pk_status allreduce(void *x, int64_t n, MPI_Datatype type, size_t esize, MPI_Op op,
                           const char *what) {
    if (g_size <= 1 || n <= 0) return PK_OK;
    const int64_t piece = (int64_t)1 << 28;
    for (int64_t at = 0; at < n; at += piece) {
        int m = (int)(n - at < piece ? n - at : piece);
        double t0 = arm(what);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)at * esize, m, type, op,
                               MPI_COMM_WORLD);
        PK_TRY(disarm(t0, rc, what));
        g_stats.calls++;
        g_stats.bytes += (int64_t)m * (int64_t)esize;
    }
    return PK_OK;
}

pk_status dist_sum_f32(float *x, int64_t n) {
    return allreduce(x, n, MPI_FLOAT, sizeof(float), MPI_SUM, "allreduce (sum, f32)");
}

pk_status dist_sum_f64(double *x, int64_t n) {
    return allreduce(x, n, MPI_DOUBLE, sizeof(double), MPI_SUM, "allreduce (sum, f64)");
}

pk_status dist_sum_i64(int64_t *x, int64_t n) {
    return allreduce(x, n, MPI_INT64_T, sizeof(int64_t), MPI_SUM, "allreduce (sum, i64)");
}

pk_status dist_max_f32(float *x, int64_t n) {
    return allreduce(x, n, MPI_FLOAT, sizeof(float), MPI_MAX, "allreduce (max, f32)");
}

pk_status dist_bcast(void *buf, size_t bytes, int root) {
    if (g_size <= 1 || bytes == 0) return PK_OK;
    const size_t piece = (size_t)1 << 30;
    for (size_t at = 0; at < bytes; at += piece) {
        int m = (int)(bytes - at < piece ? bytes - at : piece);
        double t0 = arm("broadcast");
        int rc = MPI_Bcast((char *)buf + at, m, MPI_BYTE, root, MPI_COMM_WORLD);
        PK_TRY(disarm(t0, rc, "broadcast"));
        g_stats.calls++;
        g_stats.bytes += m;
    }
    return PK_OK;
}

pk_status dist_any(bool flag, bool *out) {
    int64_t v = flag ? 1 : 0;
    PK_TRY(allreduce(&v, 1, MPI_INT64_T, sizeof v, MPI_MAX, "allreduce (any)"));
    *out = v != 0;
    return PK_OK;
}

pk_status dist_check_same(uint64_t value, const char *what) {
    if (g_size <= 1) return PK_OK;
    uint64_t v[2] = {value, ~value}; /* max of v and of ~v: equal everywhere iff max == ~max~ */
    PK_TRY(allreduce(v, 2, MPI_UINT64_T, sizeof(uint64_t), MPI_MAX, "allreduce (check)"));
    if (v[0] != value || ~v[1] != value)
        return pk_error(PK_ERR_INVALID, "rank %d of %d: %s differs between the ranks", g_rank,
                        g_size, what);
    return PK_OK;
}

#else /* a world of one */

pk_status dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    g_rank = 0, g_size = 1;
    /* started as one of several ranks: each would train alone into the same folder */
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *v = getenv(sizes[i]);
        if (launched() && v && atoi(v) > 1)
            return pk_error(PK_ERR_UNSUPPORTED,
                            "started by an MPI launcher as one of %s ranks (%s), but this polyak "
                            "was built without MPI (POLYAK_MPI OFF): install libopenmpi-dev and "
                            "rebuild, or run one process",
                            v, sizes[i]);
    }
    return PK_OK;
}

void dist_finalize(void) {
    free(g_stage);
    g_stage = NULL, g_stage_cap = 0;
}

pk_status dist_sum_f32(float *x, int64_t n) { return (void)x, (void)n, PK_OK; }
pk_status dist_sum_f64(double *x, int64_t n) { return (void)x, (void)n, PK_OK; }
pk_status dist_sum_i64(int64_t *x, int64_t n) { return (void)x, (void)n, PK_OK; }
pk_status dist_max_f32(float *x, int64_t n) { return (void)x, (void)n, PK_OK; }
pk_status dist_bcast(void *buf, size_t bytes, int root) {
    return (void)buf, (void)bytes, (void)root, PK_OK;
}
pk_status dist_any(bool flag, bool *out) {
    *out = flag;
    return PK_OK;
}
pk_status dist_check_same(uint64_t value, const char *what) {
    return (void)value, (void)what, PK_OK;
}

#endif

/* Host room for n floats in the staging buffer. */
static float *stage(size_t n) {
    if (n > g_stage_cap) {
        float *p = realloc(g_stage, sizeof(float) * n);
        if (!p) return NULL;
        g_stage = p, g_stage_cap = n;
    }
    return g_stage;
}

static void scale(float *x, size_t n, float k) {
    for (size_t i = 0; i < n; i++)
        x[i] *= k;
}

pk_status dist_average_grads(pk_ctx *c) { return dist_average_grads_weighted(c, 1.0); }

pk_status dist_gather_rows_f32(float *x, int64_t rows, int64_t width) {
    if (g_size <= 1 || rows <= 0) return PK_OK;
    int64_t first = 0, count = 0;
    dist_shard(rows, &first, &count);
    /* x + 0 is x, so the sum of the ranks' arrays, each zero outside its own rows, is exact */
    if (first > 0) memset(x, 0, sizeof(float) * (size_t)(first * width));
    int64_t end = first + count;
    if (end < rows) memset(x + end * width, 0, sizeof(float) * (size_t)((rows - end) * width));
    return dist_sum_f32(x, rows * width);
}

pk_status dist_average_grads_weighted(pk_ctx *c, double weight) {
    if (g_size <= 1) return PK_OK; /* the mean over one rank is the gradient itself */
    float k = 1.0f / (float)g_size, w = (float)weight;
    bool pre = weight != 1.0;
    bool host = c->backend == PK_BACKEND_CPU;
    for (int i = 0;; i++) {
        pk_block *b = pk_arena_block(c->grads, i);
        if (!b) break;
        size_t used = pk_arena_block_used(c->grads, i), n = used / sizeof(float);
        if (n == 0) continue;
        if (host && b->host) { /* CPU ranks: in place */
            if (pre) scale(b->host, n, w);
            PK_TRY(dist_sum_f32(b->host, (int64_t)n));
            scale(b->host, n, k);
            continue;
        }
        /* device memory: staged through the host once per block and step */
        float *h = stage(n);
        if (!h) return pk_error(PK_ERR_NOMEM, "dist: out of host memory staging gradients");
        PK_TRY(pk_block_read(c->dev, b, 0, h, n * sizeof(float)));
        if (pre) scale(h, n, w);
        PK_TRY(dist_sum_f32(h, (int64_t)n));
        scale(h, n, k);
        PK_TRY(pk_block_write(c->dev, b, 0, h, n * sizeof(float)));
    }
    return PK_OK;
}

/* A byte range [lo, hi) of a gradient block. */
typedef struct grad_range {
    pk_block *b;
    size_t lo, hi;
} grad_range;

static int range_cmp(const void *pa, const void *pb) {
    const grad_range *a = pa, *b = pb;
    if (a->b != b->b) return (uintptr_t)a->b < (uintptr_t)b->b ? -1 : 1;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* Sums `bytes` of block b from byte `lo` over the ranks, pre-scaled by w when pre, then
 * scaled by k: in place on host memory, staged through the host otherwise. */
static pk_status reduce_range(pk_ctx *c, pk_block *b, size_t lo, size_t bytes, bool pre, float w,
                              float k) {
    size_t n = bytes / sizeof(float);
    if (n == 0) return PK_OK;
    if (c->backend == PK_BACKEND_CPU && b->host) {
        float *x = (float *)((char *)b->host + lo);
        if (pre) scale(x, n, w);
        PK_TRY(dist_sum_f32(x, (int64_t)n));
        scale(x, n, k);
        return PK_OK;
    }
    float *h = stage(n);
    if (!h) return pk_error(PK_ERR_NOMEM, "dist: out of host memory staging gradients");
    PK_TRY(pk_block_read(c->dev, b, lo, h, bytes));
    if (pre) scale(h, n, w);
    PK_TRY(dist_sum_f32(h, (int64_t)n));
    scale(h, n, k);
    return pk_block_write(c->dev, b, lo, h, bytes);
}

pk_status dist_average_grads_of(pk_ctx *c, tensor *const *ps, int n, double weight) {
    if (g_size <= 1 || n <= 0) return PK_OK;
    grad_range *r = malloc(sizeof(grad_range) * (size_t)n);
    if (!r) return pk_error(PK_ERR_NOMEM, "dist: out of host memory");
    int m = 0;
    for (int i = 0; i < n; i++) {
        const tensor *g = ps[i]->grad;
        if (!g || g->dtype != PK_F32 || !tensor_is_contiguous(g)) {
            free(r);
            return pk_error(PK_ERR_INVALID, "dist: parameter %s has no contiguous f32 gradient",
                            ps[i]->name ? ps[i]->name : "unnamed");
        }
        size_t lo = (size_t)g->offset * sizeof(float);
        r[m++] = (grad_range){g->block, lo, lo + (size_t)tensor_numel(g) * sizeof(float)};
    }
    /* the same order and merging on every rank: the ranks hold the same model */
    qsort(r, (size_t)m, sizeof *r, range_cmp);
    int k = 0;
    for (int i = 1; i < m; i++) {
        /* neighbours (up to the arena's 256-byte alignment apart) go in one call */
        if (r[i].b == r[k].b && r[i].lo <= r[k].hi + 256) {
            if (r[i].hi > r[k].hi) r[k].hi = r[i].hi;
        } else
            r[++k] = r[i];
    }
    m = m ? k + 1 : 0;
    pk_status st = PK_OK;
    float w = (float)weight, inv = 1.0f / (float)g_size;
    for (int i = 0; i < m && st == PK_OK; i++)
        st = reduce_range(c, r[i].b, r[i].lo, r[i].hi - r[i].lo, weight != 1.0, w, inv);
    free(r);
    return st;
}

pk_status dist_average_tensors(tensor *const *ts, int n) {
    if (g_size <= 1 || n <= 0) return PK_OK;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ts[i]->dtype != PK_F32 || !tensor_is_contiguous(ts[i]))
            return pk_error(PK_ERR_INVALID, "dist: averaging needs contiguous f32 tensors (%s)",
                            ts[i]->name ? ts[i]->name : "unnamed");
        total += (size_t)tensor_numel(ts[i]);
    }
    float *h = stage(total);
    if (!h) return pk_error(PK_ERR_NOMEM, "dist: out of host memory");
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        PK_TRY(tensor_download(ts[i], h + at));
        at += (size_t)tensor_numel(ts[i]);
    }
    PK_TRY(dist_sum_f32(h, (int64_t)total));
    scale(h, total, 1.0f / (float)g_size);
    at = 0;
    for (int i = 0; i < n; i++) {
        PK_TRY(tensor_upload(ts[i], h + at));
        at += (size_t)tensor_numel(ts[i]);
    }
    return PK_OK;
}
