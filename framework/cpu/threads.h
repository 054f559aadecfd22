/* threads.h - the CPU backend's worker pool: parallel-for over index ranges. */
#ifndef POLYAK_CPU_THREADS_H
#define POLYAK_CPU_THREADS_H
#include <stdint.h>

typedef struct pk_pool pk_pool;

/* Body of a parallel loop: handles indices [begin, end). */
typedef void (*pk_range_fn)(void *arg, int64_t begin, int64_t end);

/* Creates a pool of `threads` workers (0: one per online core, or POLYAK_THREADS). */
pk_pool *pk_pool_create(int threads);

/* Destroys a pool; accepts NULL. */
void pk_pool_destroy(pk_pool *pool);

/* Returns the number of threads (the caller counts as one). */
int pk_pool_threads(const pk_pool *pool);

/* Runs fn over [0, n) split into contiguous chunks of at least `grain` indices; returns when
 * all chunks are done. Runs inline when n is small or the pool has one thread. The pool runs
 * one job at a time: a call made while another is in flight (nested inside fn, or from a
 * second thread) runs its whole range inline on the calling thread. */
void pk_parallel_for(pk_pool *pool, int64_t n, int64_t grain, pk_range_fn fn, void *arg);

#endif
