/* teacher.h - EMA teachers: a copy of a chosen subset of a student's parameters, held in the
 * context's teacher arena and updated by exponential moving average after optimiser steps.
 *
 * What a teacher follows is a list of student tensors (all parameters, a named group, or any
 * explicit list). Each is paired with a teacher tensor of the same shape, allocated
 * contiguously, so an update is ONE fused call over the whole teacher (teacher_kernels.h) on
 * the CPU and one dispatch on Vulkan, however many tensors it holds. Tensors without gradients
 * (batch-norm running statistics) are buffers: copied, not averaged, unless
 * `average_buffers` is set. */
#ifndef POLYAK_TEACHER_H
#define POLYAK_TEACHER_H
#include "backend.h"
#include "teacher/teacher_kernels.h"

typedef struct pk_teacher pk_teacher;

typedef struct pk_teacher_options {
    const char *name;              /* for reports and checkpoint names, e.g. "ema" */
    pk_momentum_schedule schedule; /* zero: constant 0.999 */
    bool average_buffers;          /* average non-parameter tensors too (default: copy) */
} pk_teacher_options;

/* Creates a teacher following `students` (n tensors), initialised to their current values. */
pk_status teacher_create(pk_ctx *c, const pk_teacher_options *opt, tensor *const *students, int n,
                         pk_teacher **out);

/* Frees the teacher's bookkeeping (its memory stays in the arena until the context goes). */
void teacher_destroy(pk_teacher *t);

/* t = m t + (1 - m) s with m from the schedule at this update's number; then counts it. */
pk_status teacher_update(pk_teacher *t);

/* t = m t + sum_i w_i s_i where sources[i] lists tensors shaped like the students (k lists
 * of n tensors each); sum w_i must equal 1 - m. CTP: m 0.9, w = {0.05, 0.05}. */
pk_status teacher_update_multi(pk_teacher *t, int k, tensor *const *const *sources, const float *w,
                               float m);

/* Swaps the teacher's values into the student tensors (the model then runs with the
 * teacher's weights); calling it again swaps back. Bit-exact both ways. */
pk_status teacher_swap(pk_teacher *t);

/* The teacher tensor paired with student i. */
tensor *teacher_tensor(pk_teacher *t, int i);

/* Number of tensors followed. */
int teacher_count(const pk_teacher *t);

/* Bytes of teacher memory. */
size_t teacher_bytes(const pk_teacher *t);

/* Momentum the next update will use. */
double teacher_momentum(const pk_teacher *t);

/* Updates performed so far (checkpoints store it). */
int64_t teacher_updates(const pk_teacher *t);

/* Restores the update count (after loading a checkpoint). */
void teacher_set_updates(pk_teacher *t, int64_t k);

#endif
