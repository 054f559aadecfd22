/* schedule.c - learning-rate schedules (see schedule.h). */
#include "optim/schedule.h"

#include <math.h>

pk_status schedule_validate(const pk_lr_schedule *s) {
    if (!s) return pk_error(PK_ERR_INVALID, "lr schedule: NULL");
    if (!(s->lr >= 0)) return pk_error(PK_ERR_INVALID, "lr schedule: lr %g < 0", s->lr);
    switch (s->kind) {
    case PK_LR_CONSTANT: return PK_OK;
    case PK_LR_STEP:
        if (s->step_size < 1)
            return pk_error(PK_ERR_INVALID, "lr schedule: step_size %lld < 1",
                            (long long)s->step_size);
        return PK_OK;
    case PK_LR_COSINE:
        if (s->max_steps < 1 || s->warmup < 0 || s->warmup > s->max_steps)
            return pk_error(PK_ERR_INVALID,
                            "lr schedule: cosine needs 0 <= warmup (%lld) <= max_steps (%lld)",
                            (long long)s->warmup, (long long)s->max_steps);
        return PK_OK;
    case PK_LR_EXP:
        if (s->max_steps < 1 || !(s->lr > 0) || !(s->lr_final > 0))
            return pk_error(PK_ERR_INVALID,
                            "lr schedule: exponential needs lr, lr_final > 0 and max_steps >= 1");
        return PK_OK;
    }
    return pk_error(PK_ERR_INVALID, "lr schedule: unknown kind %d", (int)s->kind);
}

double schedule_lr(const pk_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    switch (s->kind) {
    case PK_LR_CONSTANT: return s->lr;
    case PK_LR_STEP: {
        double gamma = s->gamma == 0 ? 0.1 : s->gamma;
        return s->lr * pow(gamma, (double)(step / s->step_size));
    }
    case PK_LR_COSINE: {
        if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
        if (step >= s->max_steps) return s->lr_final;
        int64_t span = s->max_steps - s->warmup;
        double t = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
        return s->lr_final + (s->lr - s->lr_final) * 0.5 * (1.0 + cos(M_PI * t));
    }
    case PK_LR_EXP: {
        /* graphdeco-inria/gaussian-splatting utils/general_utils.py get_expon_lr_func */
        double delay = 1.0;
        if (s->delay_steps > 0) {
            double mult = s->delay_mult == 0 ? 1.0 : s->delay_mult;
            double t = (double)step / (double)s->delay_steps;
            if (t > 1) t = 1;
            delay = mult + (1.0 - mult) * sin(0.5 * M_PI * t);
        }
        double t = (double)step / (double)s->max_steps;
        if (t > 1) t = 1;
        double log_lerp = exp(log(s->lr) * (1.0 - t) + log(s->lr_final) * t);
        return delay * log_lerp;
    }
    }
    return s->lr;
}
