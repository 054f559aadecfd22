/* test_schedule.c - learning-rate schedules against values computed here by hand from their
 * definitions (torch StepLR, linear warmup + cosine, 3DGS get_expon_lr_func), and SPAM's
 * warmup scale around a reset. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "optim/optim_kernels.h"
#include "optim/schedule.h"

#define CLOSE(a, b) (fabs((a) - (b)) <= 1e-12 * fabs(b) + 1e-300)

START_TEST(constant_and_step) {
    srand((unsigned)time(NULL));
    double lr = 0.01 + (double)rand() / RAND_MAX;
    pk_lr_schedule c = {.kind = PK_LR_CONSTANT, .lr = lr};
    ck_assert_int_eq(schedule_validate(&c), PK_OK);
    ck_assert(schedule_lr(&c, 12345) == lr);
    pk_lr_schedule s = {.kind = PK_LR_STEP, .lr = lr, .step_size = 30};
    ck_assert(CLOSE(schedule_lr(&s, 29), lr));
    ck_assert(CLOSE(schedule_lr(&s, 30), lr * 0.1));
    ck_assert(CLOSE(schedule_lr(&s, 95), lr * 0.001));
    s.gamma = 0.5;
    ck_assert(CLOSE(schedule_lr(&s, 61), lr * 0.25));
    s.step_size = 0;
    ck_assert_int_eq(schedule_validate(&s), PK_ERR_INVALID);
}
END_TEST

START_TEST(cosine_warmup) {
    pk_lr_schedule s = {
        .kind = PK_LR_COSINE, .lr = 0.8, .lr_final = 0.0, .warmup = 10, .max_steps = 110};
    ck_assert_int_eq(schedule_validate(&s), PK_OK);
    ck_assert(CLOSE(schedule_lr(&s, 0), 0.08));
    ck_assert(CLOSE(schedule_lr(&s, 9), 0.8));
    ck_assert(CLOSE(schedule_lr(&s, 10), 0.8));
    ck_assert(CLOSE(schedule_lr(&s, 60), 0.4));
    ck_assert(CLOSE(schedule_lr(&s, 35), 0.8 * 0.5 * (1 + cos(M_PI / 4))));
    ck_assert(schedule_lr(&s, 500) == 0.0);
    s.warmup = 200;
    ck_assert_int_eq(schedule_validate(&s), PK_ERR_INVALID);
}
END_TEST

START_TEST(exponential_3dgs) {
    /* 3DGS position lr: 1.6e-4 -> 1.6e-6 over 30k steps (times the scene extent) */
    pk_lr_schedule s = {.kind = PK_LR_EXP, .lr = 1.6e-4, .lr_final = 1.6e-6, .max_steps = 30000};
    ck_assert_int_eq(schedule_validate(&s), PK_OK);
    ck_assert(CLOSE(schedule_lr(&s, 0), 1.6e-4));
    ck_assert(CLOSE(schedule_lr(&s, 15000), 1.6e-5)); /* geometric midpoint */
    ck_assert(CLOSE(schedule_lr(&s, 30000), 1.6e-6));
    ck_assert(CLOSE(schedule_lr(&s, 90000), 1.6e-6));
    ck_assert(CLOSE(schedule_lr(&s, 7500), 1.6e-4 * pow(0.01, 0.25)));
    /* delay: mult + (1 - mult) sin(pi/2 * step/delay) */
    s.delay_steps = 100;
    s.delay_mult = 0.01;
    ck_assert(CLOSE(schedule_lr(&s, 0), 0.01 * 1.6e-4));
    double want = (0.01 + 0.99 * sin(M_PI / 4)) * 1.6e-4 * pow(0.01, 50.0 / 30000);
    ck_assert(CLOSE(schedule_lr(&s, 50), want));
    s.lr_final = 0;
    ck_assert_int_eq(schedule_validate(&s), PK_ERR_INVALID);
}
END_TEST

START_TEST(spam_warmup_scale) {
    pk_spam_params p = {.delta_t = 20, .warmup = 10};
    for (int t = 1; t < 20; t++)
        ck_assert(optim_spam_scale(&p, t) == 1.0);
    /* step 20 is the reset: scale 0.01, then 1 - 0.99 (1 + cos(pi c / 11)) / 2, 1 from step 30 */
    ck_assert(fabs(optim_spam_scale(&p, 20) - 0.01) < 1e-15);
    ck_assert(CLOSE(optim_spam_scale(&p, 23), 1 - 0.99 * (1 + cos(3 * M_PI / 11)) / 2));
    for (int t = 21; t < 30; t++)
        ck_assert(optim_spam_scale(&p, t) > optim_spam_scale(&p, t - 1));
    ck_assert(optim_spam_scale(&p, 30) == 1.0);
    pk_spam_params d = {0}; /* defaults: DeltaT 500, warmup 150 */
    ck_assert(optim_spam_scale(&d, 499) == 1.0);
    ck_assert(fabs(optim_spam_scale(&d, 500) - 0.01) < 1e-15);
    ck_assert(optim_spam_scale(&d, 649) < 1.0);
    ck_assert(optim_spam_scale(&d, 650) == 1.0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("lr");
    tcase_add_test(tc, constant_and_step);
    tcase_add_test(tc, cosine_warmup);
    tcase_add_test(tc, exponential_3dgs);
    tcase_add_test(tc, spam_warmup_scale);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
