/* dist.h - the world of processes a job runs in: data-parallel training under MPI.
 *
 * `mpirun -np N polyak <task> ...` starts N processes (ranks); each trains on a disjoint shard
 * of every global batch and the gradients are averaged so that the global batch and learning
 * rate mean what they mean in one process. Built without MPI (or started without mpirun), the
 * world is one rank and every call here is the identity over that one rank: nothing is
 * skipped, there is simply nobody else to sum with.
 *
 * The one-call API for a task (what man, pretrain, splat train, cl and ctp do; the tasks that
 * come after them do the same):
 *   1. shard the global batch: dist_shard(B, &first, &n) (B a multiple of dist_size(), see
 *      dist_check_batch): this rank builds samples [first, first + n) of every global batch,
 *      drawing the random numbers of every sample of the batch so the streams stay in step;
 *   2. after the backward, before clipping and the optimizer: dist_average_grads(ctx): one
 *      MPI_Allreduce per used block of the context's gradient arena (a few per step, not one
 *      per tensor), then a scale by 1 / size, so a loss that is a mean over the rank's shard
 *      becomes the mean over the global batch (dist_average_grads_weighted for shards of
 *      unequal size, cl, and for losses over the whole batch with gathered features, ctp);
 *   3. evaluation: each rank scores its dist_shard of the test set, dist_allreduce_* sums;
 *   4. buffers that differ per rank (batch-norm running statistics) before evaluation and
 *      checkpoints: dist_average_tensors; EMA teachers need nothing (every rank applies the
 *      same update to the same parameters); batch norm over the global batch instead: set
 *      ctx->bn_allreduce to a function calling dist_sum_f64 (man --sync-bn; CPU backend);
 *   5. the run harness (run.h) writes files on rank 0 only and makes run_stop_requested a
 *      collective decision.
 * On Vulkan the gradient blocks are staged through host memory once per step (download,
 * allreduce, upload); on the CPU backend they are reduced in place.
 *
 * Failure: every collective is a blocking MPI call watched by a thread with a deadline
 * (POLYAK_DIST_TIMEOUT seconds, default 600): a rank that waits past it prints "rank R of N:
 * ..." and exits, which makes mpirun end every rank; one whose MPI call fails does the same
 * through MPI_Abort; the CLI does the same when a command fails on any rank
 * (dist_abort). A rank killed by a signal is noticed by mpirun, which ends the others.
 *
 * Owns: MPI initialisation, rank / size, the reductions, sharding, abort, communication
 * timing. Leaves to the tasks: which tensors to reduce and when. */
#ifndef POLYAK_DIST_H
#define POLYAK_DIST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "status.h"

/* Starts MPI when the build has it and the process was started by an MPI launcher (or MPI
 * is simply available: a singleton); a world of one otherwise. Call once, first thing. */
pk_status dist_init(int *argc, char ***argv);

/* Ends MPI (a collective when the world has several ranks); safe without dist_init. */
void dist_finalize(void);

/* This process's rank, 0 .. dist_size() - 1. */
int dist_rank(void);

/* Number of ranks. */
int dist_size(void);

/* True on rank 0 (the one that writes files and prints progress). */
bool dist_is_root(void);

/* True when the build has MPI. */
bool dist_have_mpi(void);

/* The part [*first, *first + *count) of n items that belongs to this rank: contiguous,
 * sizes differing by at most one, rank order. */
void dist_shard(int64_t n, int64_t *first, int64_t *count);

/* Fails (naming `what`) unless `batch` divides evenly over the ranks. */
pk_status dist_check_batch(int64_t batch, const char *what);

/* Sums n floats (doubles, int64) over the ranks, in place, on every rank. */
pk_status dist_sum_f32(float *x, int64_t n);
pk_status dist_sum_f64(double *x, int64_t n);
pk_status dist_sum_i64(int64_t *x, int64_t n);

/* Element-wise maximum of n floats over the ranks, in place. */
pk_status dist_max_f32(float *x, int64_t n);

/* Gathers rows: x holds `rows` rows of `width` floats; this rank's own rows are
 * dist_shard(rows) and are sent, the others are overwritten with the other ranks' rows (every
 * rank ends with the whole array, bit-exact: the rows are summed with zeros). */
pk_status dist_gather_rows_f32(float *x, int64_t rows, int64_t width);

/* Copies `bytes` bytes from rank `root` to every rank. */
pk_status dist_bcast(void *buf, size_t bytes, int root);

/* True on every rank when `flag` is true on any rank (a collective). */
pk_status dist_any(bool flag, bool *out);

/* Fails on every rank unless `value` is the same on every rank (names `what`). */
pk_status dist_check_same(uint64_t value, const char *what);

/* Averages every parameter gradient of c over the ranks: one allreduce per used block of
 * c->grads, then x / size. Call after the backward, before clipping and the optimizer. */
pk_status dist_average_grads(pk_ctx *c);

/* dist_average_grads with this rank's gradients multiplied by `weight` first: every rank ends
 * with sum_r weight_r g_r / size. A rank whose loss is a mean over n_r of the b samples of a
 * global batch split unevenly passes n_r * size / b (the world's mean over b; 0 for a rank
 * that had no sample and ran a stand-in); a rank whose loss already is the whole global
 * batch's, differentiated only through its own samples (features gathered from the other
 * ranks as constants: ctp), passes size (the sum of the ranks' parts is the gradient). A
 * weight of exactly 1 is dist_average_grads bit for bit. */
pk_status dist_average_grads_weighted(pk_ctx *c, double weight);

/* dist_average_grads_weighted over the gradients of the n parameters ps only (one allreduce
 * per run of them that lies contiguous in the gradient arena): for a model whose trainable
 * part is small beside frozen parameters (cl: PETs and a head on a frozen backbone), whose
 * gradient blocks would otherwise be sent whole every step. */
pk_status dist_average_grads_of(pk_ctx *c, tensor *const *ps, int n, double weight);

/* Averages n contiguous f32 tensors over the ranks (batch-norm running statistics), packed
 * into one allreduce. */
pk_status dist_average_tensors(tensor *const *ts, int n);

/* Prints "polyak: rank R of N: <message>" on stderr and ends the whole job (MPI_Abort with
 * `code`) when the world has several ranks; returns (does nothing) in a world of one. */
void dist_abort(int code, const char *message);

/* Communication counters since the start (or dist_stats_reset). */
typedef struct dist_stats {
    double seconds; /* wall time inside reductions and broadcasts (waiting included) */
    int64_t bytes;  /* payload bytes this rank contributed */
    int64_t calls;  /* collective calls */
} dist_stats;

/* Returns the counters. */
dist_stats dist_stats_get(void);

/* Zeroes the counters. */
void dist_stats_reset(void);

#endif
