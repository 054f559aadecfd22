/* threads.c - a small persistent worker pool for the CPU backend's parallel loops.
 * Workers sleep on a condition variable between jobs; the caller takes the first chunk. */
#include "threads.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct pk_pool {
    int nthreads;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    /* the current job */
    pk_range_fn fn;
    void *arg;
    int64_t n, chunk;
    int64_t next; /* next chunk index to take */
    int64_t nchunks;
    int64_t finished; /* chunks finished */
    uint64_t generation;
    int stop;
    int busy; /* a job is in flight: the pool runs one job at a time */
};

static void pool_run_chunks(pk_pool *p) {
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int64_t c = p->next < p->nchunks ? p->next++ : -1;
        pthread_mutex_unlock(&p->mu);
        if (c < 0) return;
        int64_t b = c * p->chunk, e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->arg, b, e);
        pthread_mutex_lock(&p->mu);
        if (++p->finished == p->nchunks) pthread_cond_broadcast(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

static void *pool_worker(void *arg) {
    pk_pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        pool_run_chunks(p);
    }
}

pk_pool *pk_pool_create(int threads) {
    if (threads <= 0) {
        const char *env = getenv("POLYAK_THREADS");
        threads = env && atoi(env) > 0 ? atoi(env) : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (threads <= 0) threads = 1;
    }
    pk_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->workers) threads = 1; /* no room to track workers: run every loop inline */
    p->nthreads = threads;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&p->workers[i], NULL, pool_worker, p) != 0) {
            p->nthreads = i; /* run with the workers we got */
            break;
        }
    }
    return p;
}

void pk_pool_destroy(pk_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->nthreads; i++)
        pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}

int pk_pool_threads(const pk_pool *p) { return p ? p->nthreads : 1; }

void pk_parallel_for(pk_pool *p, int64_t n, int64_t grain, pk_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->nthreads == 1 || n <= grain) {
        fn(arg, 0, n);
        return;
    }
    /* a few chunks per thread balance uneven work without much locking */
    int64_t nchunks = (int64_t)p->nthreads * 4;
    int64_t chunk = (n + nchunks - 1) / nchunks;
    if (chunk < grain) chunk = grain;
    pthread_mutex_lock(&p->mu);
    if (p->busy) {
        /* A nested call (from inside a chunk) or a second thread calling concurrently would
         * overwrite the job in flight. The pool's threads are already at work on it, so the
         * caller runs its whole range inline, which is correct and no slower overall. */
        pthread_mutex_unlock(&p->mu);
        fn(arg, 0, n);
        return;
    }
    p->busy = 1;
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = chunk;
    p->nchunks = (n + chunk - 1) / chunk;
    p->next = 0;
    p->finished = 0;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    pool_run_chunks(p);
    pthread_mutex_lock(&p->mu);
    while (p->finished < p->nchunks)
        pthread_cond_wait(&p->done, &p->mu);
    p->busy = 0;
    pthread_mutex_unlock(&p->mu);
}
