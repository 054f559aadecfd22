/* cl_metrics.c - accuracy-matrix metrics, class orders and the arg-max of the benchmark. */
#include <math.h>
#include <stdlib.h>

#include "cl.h"
#include "dataset.h"

void cl_metrics(const double *r, const int *n, int T, double *a_last, double *a_avg,
                double *forgetting, double *bwt) {
    double avg = 0;
    for (int i = 0; i < T; i++) {
        double s = 0, w = 0;
        for (int j = 0; j <= i; j++)
            s += n[j] * r[i * T + j], w += n[j];
        double acc = w > 0 ? s / w : NAN;
        avg += acc;
        if (i == T - 1) *a_last = acc;
    }
    *a_avg = avg / T;
    if (T < 2) {
        *forgetting = NAN, *bwt = NAN;
        return;
    }
    double f = 0, b = 0;
    for (int j = 0; j < T - 1; j++) {
        double best = r[j * T + j];
        for (int i = j + 1; i < T - 1; i++)
            if (r[i * T + j] > best) best = r[i * T + j];
        f += best - r[(T - 1) * T + j];
        b += r[(T - 1) * T + j] - r[j * T + j];
    }
    *forgetting = f / (T - 1), *bwt = b / (T - 1);
}

pk_status cl_class_order(int classes, int tasks, int first_task, uint64_t seed, int *order,
                         int *start) {
    if (tasks < 1 || tasks > classes)
        return pk_error(PK_ERR_INVALID, "cl: --tasks %d must be in [1, %d] (the classes)", tasks,
                        classes);
    if (first_task < 0 || (first_task > 0 && (tasks < 2 || first_task > classes - (tasks - 1))))
        return pk_error(PK_ERR_INVALID,
                        "cl: --first-task %d leaves too few of the %d classes for %d tasks",
                        first_task, classes, tasks);
    class_split sp = {0};
    PK_TRY(split_class_incremental(classes, tasks, NULL, seed, &sp));
    for (int i = 0; i < classes; i++)
        order[i] = sp.order[i];
    class_split_free(&sp);
    start[0] = 0;
    int t0 = 0, rest = classes, left = tasks;
    if (first_task > 0) {
        start[1] = first_task, t0 = 1, rest = classes - first_task, left = tasks - 1;
    }
    for (int t = t0; t < tasks; t++) {
        int k = t - t0, size = rest / left + (k < rest % left ? 1 : 0);
        start[t + 1] = start[t] + size;
    }
    return PK_OK;
}

pk_status cl_class_order_explicit(const int *list, int n, int classes, int *order) {
    if (n != classes)
        return pk_error(PK_ERR_INVALID, "cl: --class-order lists %d class ids; the data has %d", n,
                        classes);
    bool seen[4096] = {false};
    if (classes > 4096)
        return pk_error(PK_ERR_INVALID, "cl: --class-order takes at most 4096 classes, not %d",
                        classes);
    for (int i = 0; i < n; i++) {
        if (list[i] < 0 || list[i] >= classes)
            return pk_error(PK_ERR_INVALID,
                            "cl: --class-order entry %d is %d; expected a class id in [0, %d)",
                            i + 1, list[i], classes);
        if (seen[list[i]])
            return pk_error(PK_ERR_INVALID, "cl: --class-order lists class %d twice", list[i]);
        seen[list[i]] = true;
    }
    for (int i = 0; i < n; i++)
        order[i] = list[i];
    return PK_OK;
}

int cl_argmax(const float *scores, int lo, int hi) {
    int p = lo;
    for (int k = lo + 1; k < hi; k++)
        if (scores[k] > scores[p]) p = k;
    return p;
}
