/* teacher.c - teacher objects: contiguous teacher storage, the segment list that maps student
 * tensors onto it, fused updates (CPU kernels here, Vulkan dispatches in teacher_vk.c), swap.
 * On Vulkan the segment list is packed into a device table once, at creation, and kept in the
 * teacher arena, so an update only records a dispatch and never waits for the device. */
#include "teacher/teacher.h"

#include <stdlib.h>
#include <string.h>

struct pk_teacher {
    pk_ctx *c;
    pk_teacher_options opt;
    int n;
    tensor **students;
    tensor **views;           /* teacher tensor i, a view into `all` */
    tensor *all;              /* the whole teacher: one allocation */
    pk_teacher_segment *segs; /* per student: src offset from the base student, dst offset */
    tensor *runs;             /* Vulkan: the packed segment list (teacher_vk_prepare), else NULL */
    int64_t runs_total;       /* Vulkan: elements the runs cover */
    int base; /* the student with the lowest offset: segment source offsets count from it */
    int64_t updates;
    size_t bytes;
};

#define TEACHER_ALIGN 64 /* elements: each teacher tensor starts on a 256-byte boundary */

/* Vulkan updates live in teacher_vk.c: the run table built once, and the per-update dispatch. */
__attribute__((weak)) pk_status teacher_vk_prepare(pk_ctx *c, const pk_teacher_segment *segs,
                                                   int nseg, tensor **runs, int64_t *total);
__attribute__((weak)) pk_status teacher_vk_update(pk_ctx *c, tensor *teacher_all,
                                                  tensor *const *sources_first, int k,
                                                  const double *w, double m, const tensor *runs,
                                                  int nseg, int64_t total);
__attribute__((weak)) pk_status teacher_vk_swap(pk_ctx *c, tensor *teacher_all,
                                                tensor *student_first, const tensor *runs, int nseg,
                                                int64_t total);

pk_status teacher_create(pk_ctx *c, const pk_teacher_options *opt, tensor *const *students, int n,
                         pk_teacher **out) {
    *out = NULL;
    pk_teacher_options o = opt ? *opt : (pk_teacher_options){0};
    if (o.schedule.kind == PK_MOMENTUM_CONSTANT && o.schedule.m0 == 0.0) o.schedule.m0 = 0.999;
    PK_TRY(teacher_momentum_validate(&o.schedule));
    if (n <= 0)
        return pk_error(PK_ERR_INVALID, "teacher '%s': no tensors to follow",
                        o.name ? o.name : "?");
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const tensor *s = students[i];
        if (!s || s->dtype != PK_F32 || !tensor_is_contiguous(s))
            return pk_error(PK_ERR_INVALID,
                            "teacher '%s': tensor %d is not a contiguous float32 tensor",
                            o.name ? o.name : "?", i);
        if (i && s->block != students[0]->block)
            return pk_error(PK_ERR_UNSUPPORTED,
                            "teacher '%s': tensor %d lies in another memory block than tensor 0; "
                            "a teacher follows tensors of one parameter block",
                            o.name ? o.name : "?", i);
        total += (tensor_numel(s) + TEACHER_ALIGN - 1) / TEACHER_ALIGN * TEACHER_ALIGN;
    }
    pk_teacher *t = calloc(1, sizeof *t);
    if (!t) return pk_error(PK_ERR_NOMEM, "teacher: out of host memory");
    t->c = c;
    t->opt = o;
    t->n = n;
    t->students = calloc((size_t)n, sizeof *t->students);
    t->views = calloc((size_t)n, sizeof *t->views);
    t->segs = calloc((size_t)n, sizeof *t->segs);
    t->all = tensor_new(c->teachers, PK_F32, 1, (int64_t[]){total});
    if (!t->students || !t->views || !t->segs || !t->all) {
        teacher_destroy(t);
        return pk_error(PK_ERR_NOMEM, "teacher '%s': cannot allocate %lld floats",
                        o.name ? o.name : "?", (long long)total);
    }
    t->bytes = (size_t)total * sizeof(float);
    for (int i = 1; i < n; i++)
        if (students[i]->offset < students[t->base]->offset) t->base = i;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        tensor *s = students[i];
        t->students[i] = s;
        t->views[i] =
            tensor_view(c->teachers, t->all, s->ndim, s->shape, s->strides, t->all->offset + at);
        if (!t->views[i]) {
            teacher_destroy(t);
            return PK_ERR_NOMEM;
        }
        t->views[i]->name = s->name;
        bool buffer = !s->requires_grad && !o.average_buffers;
        t->segs[i] = (pk_teacher_segment){.src_offset = s->offset - students[t->base]->offset,
                                          .dst_offset = at,
                                          .len = tensor_numel(s),
                                          .flags = buffer ? PK_TEACHER_COPY : 0u};
        at += (tensor_numel(s) + TEACHER_ALIGN - 1) / TEACHER_ALIGN * TEACHER_ALIGN;
    }
    /* start from the student's current values: a copy-everything update */
    pk_status st = PK_OK;
    if (c->backend != PK_BACKEND_CPU) {
        st = teacher_vk_prepare ? teacher_vk_prepare(c, t->segs, n, &t->runs, &t->runs_total)
                                : pk_error(PK_ERR_UNSUPPORTED,
                                           "teacher: this build has no Vulkan teacher kernels");
    }
    for (int i = 0; i < n && st == PK_OK; i++) {
        int64_t len = tensor_numel(students[i]);
        float *h = malloc(sizeof(float) * (size_t)(len ? len : 1));
        if (!h) st = pk_error(PK_ERR_NOMEM, "teacher: out of host memory");
        if (st == PK_OK) st = tensor_download(students[i], h);
        if (st == PK_OK) st = tensor_upload(t->views[i], h);
        free(h);
    }
    if (st != PK_OK) {
        teacher_destroy(t);
        return st;
    }
    *out = t;
    return PK_OK;
}

void teacher_destroy(pk_teacher *t) {
    if (!t) return;
    free(t->students);
    free(t->views);
    free(t->segs);
    free(t);
}

/* w NULL: single source with weight 1 - m (the lerp form, bit-identical to torch's lerp_);
 * the kernels take doubles, as Python floats, and round each scalar to float once. */
static pk_status update(pk_teacher *t, int k, tensor *const *first, const double *w, double m) {
    if (t->c->backend == PK_BACKEND_CPU) {
        const float *src[PK_TEACHER_MAX_SOURCES];
        for (int i = 0; i < k; i++)
            src[i] = tensor_host(first[i]);
        return teacher_ema_segments(t->c->pool, tensor_host(t->all), k, src, w, m, t->segs, t->n);
    }
    if (!teacher_vk_update)
        return pk_error(PK_ERR_UNSUPPORTED, "teacher: this build has no Vulkan teacher kernels");
    return teacher_vk_update(t->c, t->all, first, k, w, m, t->runs, t->n, t->runs_total);
}

pk_status teacher_update(pk_teacher *t) {
    double m = teacher_momentum_at(&t->opt.schedule, t->updates);
    PK_TRY(update(t, 1, &t->students[t->base], NULL, m));
    t->updates++;
    return PK_OK;
}

pk_status teacher_update_multi(pk_teacher *t, int k, tensor *const *const *sources, const float *w,
                               float m) {
    if (k < 1 || k > PK_TEACHER_MAX_SOURCES)
        return pk_error(PK_ERR_INVALID, "teacher: %d sources (1..%d)", k, PK_TEACHER_MAX_SOURCES);
    tensor *first[PK_TEACHER_MAX_SOURCES];
    for (int j = 0; j < k; j++) {
        /* every source must be laid out like the students, so one segment list serves all */
        for (int i = 0; i < t->n; i++) {
            const tensor *s = sources[j][i];
            if (!s || !tensor_same_shape(s, t->students[i]) || s->block != sources[j][0]->block ||
                s->offset - sources[j][t->base]->offset != t->segs[i].src_offset)
                return pk_error(PK_ERR_INVALID,
                                "teacher: source %d tensor %d is not laid out like the student "
                                "(same shapes, one block, same relative offsets)",
                                j, i);
        }
        first[j] = sources[j][t->base];
    }
    double wd[PK_TEACHER_MAX_SOURCES];
    for (int j = 0; j < k; j++)
        wd[j] = w[j];
    PK_TRY(update(t, k, first, wd, m));
    t->updates++;
    return PK_OK;
}

pk_status teacher_swap(pk_teacher *t) {
    /* Vulkan: one dispatch, nothing through the host (DINO swaps twice every step) */
    if (t->c->backend != PK_BACKEND_CPU) {
        if (!teacher_vk_swap)
            return pk_error(PK_ERR_UNSUPPORTED,
                            "teacher: this build has no Vulkan teacher kernels");
        return teacher_vk_swap(t->c, t->all, t->students[t->base], t->runs, t->n, t->runs_total);
    }
    pk_status s = PK_OK;
    for (int i = 0; i < t->n && s == PK_OK; i++) {
        int64_t len = tensor_numel(t->students[i]);
        float *a = malloc(sizeof(float) * (size_t)(len ? len : 1));
        float *b = malloc(sizeof(float) * (size_t)(len ? len : 1));
        if (!a || !b) s = pk_error(PK_ERR_NOMEM, "teacher swap: out of host memory");
        if (s == PK_OK) s = tensor_download(t->students[i], a);
        if (s == PK_OK) s = tensor_download(t->views[i], b);
        if (s == PK_OK) s = tensor_upload(t->students[i], b);
        if (s == PK_OK) s = tensor_upload(t->views[i], a);
        free(a);
        free(b);
    }
    return s;
}

tensor *teacher_tensor(pk_teacher *t, int i) { return i >= 0 && i < t->n ? t->views[i] : NULL; }

int teacher_count(const pk_teacher *t) { return t->n; }

size_t teacher_bytes(const pk_teacher *t) { return t->bytes; }

double teacher_momentum(const pk_teacher *t) {
    return teacher_momentum_at(&t->opt.schedule, t->updates);
}

int64_t teacher_updates(const pk_teacher *t) { return t->updates; }

void teacher_set_updates(pk_teacher *t, int64_t k) { t->updates = k; }
