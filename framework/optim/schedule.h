/* schedule.h - learning-rate schedules as pure functions of the step: constant, step decay,
 * cosine with linear warmup, and exponential (log-linear) decay between two values with the
 * 3DGS delay multiplier. Owns only the arithmetic; optimizers read the value per step. */
#ifndef POLYAK_OPTIM_SCHEDULE_H
#define POLYAK_OPTIM_SCHEDULE_H
#include <stdint.h>

#include "status.h"

typedef enum pk_lr_kind {
    PK_LR_CONSTANT = 0, /* lr */
    PK_LR_STEP,         /* lr * gamma^(floor(step / step_size)) (torch StepLR) */
    PK_LR_COSINE,       /* lr*(step+1)/warmup for step < warmup, then cosine from lr to lr_final */
    PK_LR_EXP,          /* 3DGS get_expon_lr_func: log-linear lr -> lr_final over max_steps */
} pk_lr_kind;

typedef struct pk_lr_schedule {
    pk_lr_kind kind;
    double lr;       /* base (initial) learning rate */
    double lr_final; /* COSINE: value at max_steps (0 by default); EXP: final value */
    int64_t max_steps;
    int64_t warmup;      /* COSINE: linear warmup steps */
    int64_t step_size;   /* STEP */
    double gamma;        /* STEP: 0 means 0.1 (torch default) */
    int64_t delay_steps; /* EXP: 3DGS lr_delay_steps (0: none) */
    double delay_mult;   /* EXP: 3DGS lr_delay_mult (0 means 1: no delay effect) */
} pk_lr_schedule;

/* Checks a schedule's fields (positive lr, max_steps where needed, ...). */
pk_status schedule_validate(const pk_lr_schedule *s);

/* Returns the learning rate at `step` (0-based count of steps already taken). */
double schedule_lr(const pk_lr_schedule *s, int64_t step);

#endif
