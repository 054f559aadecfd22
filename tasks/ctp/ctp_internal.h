/* ctp_internal.h - what the parts of a `polyak ctp` run share (ctp_run.c: data, model, steps,
 * the task loop; ctp_eval.c: evaluation and the files a run writes): the run's state and the
 * functions one part calls in the other. */
#ifndef POLYAK_CTP_INTERNAL_H
#define POLYAK_CTP_INTERNAL_H
#include "backbone.h"
#include "ctp.h"
#include "ctp_model.h"
#include "ctp_resident.h"
#include "ctp_tokenizer.h"
#include "io_util.h"
#include "optim/optimizer.h"
#include "run.h"
#include "teacher/teacher.h"

typedef struct ctp_state {
    ctp_options o;
    ctp_pairs ps;
    pk_run *run;
    pk_ctx *c;
    ctp_vocab vocab;
    int T;             /* tasks in this run */
    int stages;        /* T, or 1 for joint */
    int S, C;          /* image size, channels */
    float *images;     /* (n, C, S, S) every pair's image, normalised */
    int32_t *tokens;   /* (ntexts, L) */
    float *tmask;      /* (ntexts, L) 0 or -1e4 */
    ctp_model *model;  /* trained */
    pk_teacher *ref_t; /* frozen copy of the previous task's model (CTP and ablations): a
                          teacher never averaged, so its packed layout (256-byte aligned, as
                          the parameter arena) matches the model's and it can be a source of
                          teacher_update_multi */
    tensor **ref_p;    /* its tensors, in the model's order */
    ctp_model *ref;    /* view of it */
    ctp_model *mom;    /* view of the momentum teacher */
    pk_teacher *teacher;
    pk_optimizer *opt;
    ctp_queue qi, qt;
    float qptr[2];
    float progress[4];    /* stages done, epochs done in the current stage, global step, global
                             step at the current task's start (0 with --keep-optimizer) */
    float *recall;        /* (T, T) R_m of task j after stage i (NaN: not measured) */
    float *seen;          /* (T) R_m on tasks 0..i pooled after stage i (NaN: not measured) */
    float *final_metrics; /* 8: R_m, i2t r1 r5 r10, t2i r1 r5 r10, seconds */
    float sums[6];        /* this epoch: loss, ita, topo, image cos, text cos, steps */
    tensor *sums_dev[5];  /* Vulkan in a world of one: sums[0..4] kept on the device, added to
                             by every step and read when the epoch is logged; such a run is
                             resident (ctp_resident.h): the queues in `ring`, the targets and
                             the collapse watch on the device, nothing read back in a step */
    ctp_ring ring;        /* resident runs: the queues (qi, qt keep only their write positions) */
    /* resident runs: the images, masks and group numbers on the device (data_dev.images NULL:
     * the host makes the batches) */
    ctp_data_dev data_dev;
    tensor *topo_mask; /* resident runs: (batch, batch) the topology loss's diagonal mask */
    float mean[3], std[3], white[3]; /* image normalisation; white after it */
    bool backbone_norm;          /* mean/std are the --backbone's (its metadata), not the images' */
    pk_step_counters vulkan;     /* device traffic of the training steps (metrics.json "vulkan") */
    pk_step_counters vulkan_mlm; /* the text MLM warm start's steps ("vulkan_text_mlm") */
} ctp_state;

/* A batch: images (B, C, S, S) with a random shift of up to 2 pixels (white fill) when
 * augment, token ids (B, L), masks (B, 1, L), caption groups (B). */
pk_status ctp_make_batch(ctp_state *s, const int32_t *idx, int B, pk_rng *rng, bool augment,
                         tensor **x, tensor **ids, tensor **mask, int32_t *groups);

/* ctp_make_batch's rows [first, first + n) of the batch of B (a rank's shard under mpirun):
 * the shifts of all B samples are drawn (every rank's stream stays in step) and groups gets
 * all B caption groups; x, ids and mask hold the n rows. */
pk_status ctp_make_batch_rows(ctp_state *s, const int32_t *idx, int B, int first, int n,
                              pk_rng *rng, bool augment, tensor **x, tensor **ids, tensor **mask,
                              int32_t *groups);

/* A contiguous tensor's values in a new host array (NULL on failure). */
float *ctp_download_new(const tensor *t);

/* Embeds the held-out pairs and fills row `stage` of the recall matrix (tasks 0..hi, after
 * training up to task hi); *rm_seen, i2t and t2i on the tasks seen together. */
pk_status ctp_evaluate(ctp_state *s, int stage, int hi, double *rm_seen, double i2t[3],
                       double t2i[3]);

/* CTP's eval.py: R_m of the current model on the held-out pairs of tasks 0..i pooled, for
 * every i < T (out: T values). */
pk_status ctp_evaluate_prefixes(ctp_state *s, double *out);

/* Writes model.safetensors: the trained parameters and the vocabulary (U8 "vocab"). */
pk_status ctp_save_model(ctp_state *s);

/* Writes vocab.txt atomically. */
pk_status ctp_write_vocab(ctp_state *s);

#endif
