/* ctp_resident.h - the parts of a `polyak ctp` training step that stay on the device (Vulkan,
 * one process), so a step reads nothing back and uploads only its batch: the momentum features'
 * queues as device ring buffers, ALBEF's targets (caption-group positives and soft targets) and
 * the collapse watch (mean cosine) as device ops.
 *
 * The host versions (ctp_queue and ctp_soft_targets in ctp_model.h, the loop in ctp_run.c) stay
 * what the CPU backend and mpirun runs use, so their arithmetic does not change; these compute
 * the same quantities in float on the device (tests/vk/test_vk_ctp_train compares the two). */
#ifndef POLYAK_CTP_RESIDENT_H
#define POLYAK_CTP_RESIDENT_H
#include "ctp_model.h"

/* The two queues on the device: rows [0, size) in the host queue's storage order; the write
 * position advances by the batch every step, so the host keeps it (ctp_queue.ptr). */
typedef struct ctp_ring {
    tensor *feat[2]; /* (K, E) image, text momentum features */
    tensor *ids;     /* (K) f32 caption group of each row, -1 for the random start (the two
                        queues always hold the same groups) */
} ctp_ring;

/* Allocates the rings in c->state and uploads the host queues' values (their random start). */
pk_status ctp_ring_create(pk_ctx *c, const ctp_queue *qi, const ctp_queue *qt, ctp_ring *r);

/* Writes rows (B, w) (B rows of a contiguous tensor; w = 1 for a vector) into ring (K, w) at
 * rows ptr, ptr + 1, ... modulo K: one copy dispatch per contiguous run (two when it wraps). */
pk_status ctp_ring_push(pk_ctx *c, tensor *ring, int ptr, tensor *rows);

/* The data set on the device (resident runs whose images fit one binding): every pair's
 * image padded by 2 pixels of the shift augmentation's fill (1.0, as ctp_make_batch_rows), so a
 * shifted image is a window of it; the caption groups' padding masks and their numbers (f32),
 * gathered by group. */
typedef struct ctp_data_dev {
    tensor *images; /* (n, C, S + 4, S + 4) */
    tensor *masks;  /* (ntexts, L) 0 for tokens, -1e4 for padding */
    tensor *gnum;   /* (ntexts, 1) f32: row g holds g */
    int C, S;
} ctp_data_dev;

/* Uploads images (n, C, S, S) padded, masks (ntexts, L) and the group numbers into c->state;
 * leaves d->images NULL (nothing allocated) when the padded images exceed one binding. */
pk_status ctp_data_dev_create(pk_ctx *c, const float *images, int n, int C, int S,
                              const float *masks, int ntexts, int L, ctp_data_dev *d);

/* A batch from the device data set: x (B, C, S, S) = pair idx[b]'s image shifted by (dx[b],
 * dy[b]) in [-2, 2] with the fill where it leaves the picture (one copy dispatch a sample, its
 * window's offset a push constant), mask (B, 1, L) and gid (B) f32 gathered by the groups
 * (groups (B) i32, uploaded by the caller). */
pk_status ctp_batch_dev(pk_ctx *c, const ctp_data_dev *d, const int32_t *idx, const int *dx,
                        const int *dy, int B, tensor *groups, tensor **x, tensor **mask,
                        tensor **gid);

/* Normalised positives (B, N): p[i, j] = (qid[i] == kid[j]) / #{j : qid[i] == kid[j]}; qid (B)
 * and kid (N) f32 caption groups (integers). Every query must match a key (the keys begin with
 * the batch itself). Constants (no gradient). */
tensor *ctp_positives_dev(pk_ctx *c, tensor *qid, tensor *kid);

/* ALBEF's soft targets (B, N) = alpha softmax(qm km^T / temp) + (1 - alpha) pos; qm (B, E),
 * km (N, E), pos from ctp_positives_dev; pos itself when alpha is 0. Constants. */
tensor *ctp_soft_targets_dev(pk_ctx *c, tensor *qm, tensor *km, tensor *pos, float temp,
                             float alpha);

/* The collapse watch: mean cosine between different rows of f (B, E) (unit rows) -> (1,);
 * 1 when B is 1. */
tensor *ctp_mean_cos_dev(pk_ctx *c, tensor *f);

#endif
