/* lae.h - LAE (Gao et al., "A Unified Continual Learning Framework with General
 * Parameter-Efficient Tuning"; gqk/LAE main.py) and its baselines as methods of the
 * continual-learning runner (tasks/cl/cl.h):
 *  - seqft: PETs (pet.h) on a frozen ViT and a linear head over the classes seen so far,
 *    fine-tuned task after task (Adam, a fresh optimiser per task, cross-entropy on the
 *    current task's logits only); no freeze, no offline PETs.
 *  - lae: seqft plus LAE's adaptation-speed calibration (from the second task on, the PETs are
 *    frozen for the first `freeze_epochs` epochs: only the head trains), offline PETs (an EMA
 *    teacher over the PET tensors only, created as a copy of the online ones at the start of
 *    task 2, then off = m off + (1 - m) on after every optimiser step, m = 0.9999, one fused
 *    update) and the ensemble (for each class the larger of the online and offline softmax
 *    probabilities). Online-only and offline-only predictions are reported too.
 *  - joint: the seqft model trained on all tasks' data at once (the runner's joint mode).
 *
 * Owns: the methods' models, steps, predictions and checkpoint state. Leaves to others: the
 * PET modules (pet.h), the loop and the metrics (tasks/cl). */
#ifndef POLYAK_LAE_H
#define POLYAK_LAE_H
#include "cl.h"
#include "pet.h"

typedef enum lae_mode { LAE_SEQFT, LAE_LAE, LAE_JOINT } lae_mode;

typedef struct lae_options {
    lae_mode mode;
    pet_options pet;
    int freeze_epochs; /* lae: PETs frozen for the first N epochs of tasks >= 2 (< 0: 3) */
    double ema;        /* lae: offline momentum (0: 0.9999) */
} lae_options;

/* A method of `mode` (named "seqft", "lae" or "joint"; lae has the variants ensemble,
 * online, offline). */
pk_status lae_method(const lae_options *o, cl_method **out);

/* LAE's inference rule on logits of the seen classes: probs_on = softmax(on), probs_off =
 * softmax(off) per row; writes (3, n, classes) scores: [0] max(probs_on, probs_off) (the
 * ensemble), [1] probs_on, [2] probs_off. */
void lae_ensemble_scores(const float *on, const float *off, int n, int classes, float *scores);

#endif
