/* test_scene.c - COLMAP binary and text models written here (every supported camera model,
 * random poses) checked against an independent quaternion rotation; transforms.json with the
 * OpenGL -> OpenCV conversion; undistortion against an analytic image; the mouse-photos scene
 * when present; and bad input (missing camera, unknown model, truncation, lying counts, NaN,
 * missing image files). */
#include "io_testutil.h"
#include "scene.h"

#include <math.h>
#include <sys/stat.h>

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;

static void put(bbuf *b, const void *v, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}
static void put_i32(bbuf *b, int32_t v) { put(b, &v, 4); }
static void put_u64(bbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_f64(bbuf *b, double v) { put(b, &v, 8); }

typedef struct model {
    int ncam, nimg, npts;
    int cam_id[8], cam_model[8], cam_w[8], cam_h[8];
    double params[8][8];
    int img_id[16], img_cam[16];
    double q[16][4], t[16][3];
    char name[16][32];
    double xyz[32][3];
    uint8_t rgb[32][3];
} model;

static const int nparams[5] = {3, 4, 4, 5, 8};
static const char *model_names[5] = {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL",
                                     "OPENCV"};

static void random_model(model *m) {
    memset(m, 0, sizeof *m);
    m->ncam = 5;
    for (int c = 0; c < 5; c++) {
        m->cam_id[c] = 10 + 7 * c;
        m->cam_model[c] = c;
        m->cam_w[c] = tu_int(20, 64);
        m->cam_h[c] = tu_int(20, 64);
        m->params[c][0] = tu_uniform(20, 80);
        int k = 1;
        if (c == 1 || c == 4) m->params[c][k++] = tu_uniform(20, 80);
        m->params[c][k++] = m->cam_w[c] / 2.0 + tu_uniform(-2, 2);
        m->params[c][k++] = m->cam_h[c] / 2.0 + tu_uniform(-2, 2);
        for (; k < nparams[c]; k++)
            m->params[c][k] = tu_uniform(-0.05, 0.05);
    }
    m->nimg = tu_int(3, 16);
    for (int i = 0; i < m->nimg; i++) {
        m->img_id[i] = i + 1;
        m->img_cam[i] = m->cam_id[tu_int(0, 4)];
        for (int k = 0; k < 4; k++)
            m->q[i][k] = tu_uniform(-1, 1);
        for (int k = 0; k < 3; k++)
            m->t[i][k] = tu_uniform(-5, 5);
        snprintf(m->name[i], sizeof m->name[i], "img_%03d.png", tu_int(0, 999) * 16 + i);
    }
    m->npts = tu_int(0, 32);
    for (int p = 0; p < m->npts; p++)
        for (int k = 0; k < 3; k++) {
            m->xyz[p][k] = tu_uniform(-10, 10);
            m->rgb[p][k] = (uint8_t)tu_rand();
        }
}

static void model_to_bin(const model *m, bbuf *cb, bbuf *ib, bbuf *pb) {
    memset(cb, 0, sizeof *cb), memset(ib, 0, sizeof *ib), memset(pb, 0, sizeof *pb);
    put_u64(cb, (uint64_t)m->ncam);
    for (int c = 0; c < m->ncam; c++) {
        put_i32(cb, m->cam_id[c]);
        put_i32(cb, m->cam_model[c]);
        put_u64(cb, (uint64_t)m->cam_w[c]);
        put_u64(cb, (uint64_t)m->cam_h[c]);
        for (int k = 0; k < nparams[m->cam_model[c]]; k++)
            put_f64(cb, m->params[c][k]);
    }
    put_u64(ib, (uint64_t)m->nimg);
    for (int i = 0; i < m->nimg; i++) {
        put_i32(ib, m->img_id[i]);
        for (int k = 0; k < 4; k++)
            put_f64(ib, m->q[i][k]);
        for (int k = 0; k < 3; k++)
            put_f64(ib, m->t[i][k]);
        put_i32(ib, m->img_cam[i]);
        put(ib, m->name[i], strlen(m->name[i]) + 1);
        int np = tu_int(0, 3);
        put_u64(ib, (uint64_t)np);
        for (int k = 0; k < np; k++) {
            put_f64(ib, 1.5), put_f64(ib, 2.5);
            put_u64(ib, (uint64_t)-1);
        }
    }
    put_u64(pb, (uint64_t)m->npts);
    for (int p = 0; p < m->npts; p++) {
        put_u64(pb, (uint64_t)p + 1);
        for (int k = 0; k < 3; k++)
            put_f64(pb, m->xyz[p][k]);
        put(pb, m->rgb[p], 3);
        put_f64(pb, 0.5);
        int tl = tu_int(0, 3);
        put_u64(pb, (uint64_t)tl);
        for (int k = 0; k < tl; k++)
            put_i32(pb, 1), put_i32(pb, k);
    }
}

static char *model_to_text(const model *m, int which) {
    char *s = malloc(65536);
    int k = snprintf(s, 65536, "# written by test_scene.c\n");
    if (which == 0)
        for (int c = 0; c < m->ncam; c++) {
            k += snprintf(s + k, 65536 - (size_t)k, "%d %s %d %d", m->cam_id[c],
                          model_names[m->cam_model[c]], m->cam_w[c], m->cam_h[c]);
            for (int j = 0; j < nparams[m->cam_model[c]]; j++)
                k += snprintf(s + k, 65536 - (size_t)k, " %.17g", m->params[c][j]);
            k += snprintf(s + k, 65536 - (size_t)k, "\n");
        }
    if (which == 1)
        for (int i = 0; i < m->nimg; i++) /* second line left empty for some images */
            k += snprintf(s + k, 65536 - (size_t)k,
                          "%d %.17g %.17g %.17g %.17g %.17g %.17g %.17g %d %s\n%s\n", m->img_id[i],
                          m->q[i][0], m->q[i][1], m->q[i][2], m->q[i][3], m->t[i][0], m->t[i][1],
                          m->t[i][2], m->img_cam[i], m->name[i], i % 2 ? "1.5 2.5 -1" : "");
    if (which == 2)
        for (int p = 0; p < m->npts; p++)
            k += snprintf(s + k, 65536 - (size_t)k, "%d %.17g %.17g %.17g %d %d %d 0.5 1 0\n",
                          p + 1, m->xyz[p][0], m->xyz[p][1], m->xyz[p][2], m->rgb[p][0],
                          m->rgb[p][1], m->rgb[p][2]);
    return s;
}

/* Rotates v by unit quaternion q (w, x, y, z) as q v q*, by Hamilton products. */
static void quat_rotate(const double *qin, const double *v, double *out) {
    double n = sqrt(qin[0] * qin[0] + qin[1] * qin[1] + qin[2] * qin[2] + qin[3] * qin[3]);
    double q[4] = {qin[0] / n, qin[1] / n, qin[2] / n, qin[3] / n};
    double p[4] = {0, v[0], v[1], v[2]};
    double a[4] = {q[0] * p[0] - q[1] * p[1] - q[2] * p[2] - q[3] * p[3],
                   q[0] * p[1] + q[1] * p[0] + q[2] * p[3] - q[3] * p[2],
                   q[0] * p[2] - q[1] * p[3] + q[2] * p[0] + q[3] * p[1],
                   q[0] * p[3] + q[1] * p[2] - q[2] * p[1] + q[3] * p[0]};
    double c[4] = {q[0], -q[1], -q[2], -q[3]};
    out[0] = a[0] * c[1] + a[1] * c[0] + a[2] * c[3] - a[3] * c[2];
    out[1] = a[0] * c[2] - a[1] * c[3] + a[2] * c[0] + a[3] * c[1];
    out[2] = a[0] * c[3] + a[1] * c[2] - a[2] * c[1] + a[3] * c[0];
}

static void check_scene(const model *m, const pk_scene *s) {
    ck_assert_int_eq(s->n, m->nimg);
    ck_assert_uint_eq(s->n_points, (size_t)m->npts);
    for (int p = 0; p < m->npts; p++)
        for (int k = 0; k < 3; k++) {
            ck_assert_float_eq(s->xyz[p * 3 + k], (float)m->xyz[p][k]);
            ck_assert_int_eq(s->rgb[p * 3 + k], m->rgb[p][k]);
        }
    for (int v = 0; v < s->n; v++) {
        const pk_camera *c = &s->cams[v];
        if (v) ck_assert_int_lt(strcmp(s->cams[v - 1].name, c->name), 0);
        int i = 0;
        while (strcmp(m->name[i], c->name))
            i++;
        int ci = 0;
        while (m->cam_id[ci] != m->img_cam[i])
            ci++;
        const double *pr = m->params[ci];
        int mod = m->cam_model[ci];
        ck_assert_int_eq(c->model, mod);
        ck_assert_int_eq(c->width, m->cam_w[ci]);
        double fy = (mod == 1 || mod == 4) ? pr[1] : pr[0];
        int o = (mod == 1 || mod == 4) ? 2 : 1;
        ck_assert_double_eq_tol(c->fx, pr[0], 1e-12);
        ck_assert_double_eq_tol(c->fy, fy, 1e-12);
        ck_assert_double_eq_tol(c->cx, pr[o], 1e-12);
        ck_assert_double_eq_tol(c->cy, pr[o + 1], 1e-12);
        if (mod >= 2) ck_assert_double_eq_tol(c->k1, pr[o + 2], 1e-15);
        if (mod == 3) ck_assert_double_eq_tol(c->k2, pr[4], 1e-15);
        if (mod == 4) ck_assert_double_eq_tol(c->p2, pr[7], 1e-15);
        double x[3] = {tu_uniform(-1, 1), tu_uniform(-1, 1), tu_uniform(-1, 1)}, r[3];
        quat_rotate(m->q[i], x, r);
        for (int k = 0; k < 3; k++) {
            double got = c->w2c[k * 4] * x[0] + c->w2c[k * 4 + 1] * x[1] +
                         c->w2c[k * 4 + 2] * x[2] + c->w2c[k * 4 + 3];
            ck_assert_double_eq_tol(got, r[k] + m->t[i][k], 1e-9);
        }
        ck_assert_double_eq(c->w2c[15], 1);
        ck_assert_int_eq(c->is_test, v % 8 == 0);
    }
}

START_TEST(colmap_binary_and_text) {
    model m;
    random_model(&m);
    bbuf cb, ib, pb;
    model_to_bin(&m, &cb, &ib, &pb);
    pk_scene s;
    ck_assert_int_eq(colmap_parse_binary("m", cb.p, cb.n, ib.p, ib.n, pb.p, pb.n, "/imgs", &s),
                     PK_OK);
    check_scene(&m, &s);
    ck_assert_str_eq(s.kind, "colmap-binary");
    ck_assert_ptr_nonnull(strstr(s.cams[0].image_path, "/imgs/img_"));
    scene_free(&s);
    char *t[3] = {model_to_text(&m, 0), model_to_text(&m, 1), model_to_text(&m, 2)};
    ck_assert_int_eq(colmap_parse_text("m", t[0], t[1], t[2], "/imgs", &s), PK_OK);
    check_scene(&m, &s);
    scene_split_every(&s, 3);
    for (int v = 0; v < s.n; v++)
        ck_assert_int_eq(s.cams[v].is_test, v % 3 == 0);
    scene_split_every(&s, -1);
    ck_assert_int_eq(scene_count_test(&s), 0);
    scene_free(&s);
    scene_free(NULL);
    for (int k = 0; k < 3; k++)
        free(t[k]);
    free(cb.p), free(ib.p), free(pb.p);
}
END_TEST

static void expect_bin_bad(const bbuf *cb, const bbuf *ib, const bbuf *pb, pk_status want,
                           const char *needle) {
    pk_scene s;
    pk_status st =
        colmap_parse_binary("bad-model", cb->p, cb->n, ib->p, ib->n, pb->p, pb->n, "/i", &s);
    ck_assert_msg(st == want, "status %d want %d: %s", st, want, polyak_error());
    ck_assert_msg(strstr(polyak_error(), needle) && strstr(polyak_error(), "bad-model"), "%s",
                  polyak_error());
    ck_assert_ptr_null(s.cams);
    ck_assert_int_eq(s.n, 0);
}

START_TEST(colmap_bad) {
    model m;
    random_model(&m);
    bbuf cb, ib, pb;
    model_to_bin(&m, &cb, &ib, &pb);
    /* truncated at a random byte of each file */
    bbuf t = cb;
    t.n = (size_t)tu_int(0, (int)cb.n - 1);
    expect_bin_bad(&t, &ib, &pb, PK_ERR_FORMAT, "cameras.bin");
    t = ib;
    t.n = (size_t)tu_int(0, (int)ib.n - 1);
    expect_bin_bad(&cb, &t, &pb, PK_ERR_FORMAT, "images.bin");
    if (m.npts) {
        t = pb;
        t.n = (size_t)tu_int(0, (int)pb.n - 1);
        expect_bin_bad(&cb, &ib, &t, PK_ERR_FORMAT, "points3D.bin");
    }
    /* a count that lies */
    uint64_t big = 1ull << 40;
    memcpy(ib.p, &big, 8);
    expect_bin_bad(&cb, &ib, &pb, PK_ERR_FORMAT, "header says");
    uint64_t n = (uint64_t)m.nimg;
    memcpy(ib.p, &n, 8);
    /* an image referring to a camera cameras.bin lacks */
    int32_t ghost = 999;
    memcpy(ib.p + 8 + 4 + 56, &ghost, 4);
    expect_bin_bad(&cb, &ib, &pb, PK_ERR_FORMAT, "camera 999");
    memcpy(ib.p + 8 + 4 + 56, &m.img_cam[0], 4);
    /* NaN in a pose */
    double nan = NAN;
    memcpy(ib.p + 8 + 4 + 8 * tu_int(0, 6), &nan, 8);
    expect_bin_bad(&cb, &ib, &pb, PK_ERR_FORMAT, "finite");
    free(ib.p);
    free(pb.p);
    model_to_bin(&m, &t, &ib, &pb);
    free(t.p);
    /* unknown camera model id */
    int32_t fov = 7;
    memcpy(cb.p + 8 + 4, &fov, 4);
    expect_bin_bad(&cb, &ib, &pb, PK_ERR_UNSUPPORTED, "FOV");
    /* text: unknown model name, wrong parameter count, missing camera */
    char *tx[3] = {model_to_text(&m, 0), model_to_text(&m, 1), model_to_text(&m, 2)};
    pk_scene s;
    char *bad = malloc(strlen(tx[0]) + 64);
    sprintf(bad, "%s77 OPENCV_FISHEYE 10 10 1 2 3 4 5 6 7 8\n", tx[0]);
    ck_assert_int_eq(colmap_parse_text("bad-model", bad, tx[1], tx[2], "/i", &s),
                     PK_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "OPENCV_FISHEYE"));
    sprintf(bad, "%s77 PINHOLE 10 10 1 2 3\n", tx[0]);
    ck_assert_int_eq(colmap_parse_text("bad-model", bad, tx[1], tx[2], "/i", &s), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "line 7"));
    ck_assert_int_eq(colmap_parse_text("bad-model", "# none\n", tx[1], tx[2], "/i", &s),
                     PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "which cameras lacks"));
    ck_assert_int_eq(
        colmap_parse_text("bad-model", tx[0], tx[1], "1 nan 0 0 1 2 3 0 0.1\n", "/i", &s),
        PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "points3D.txt line 1"));
    free(bad);
    for (int k = 0; k < 3; k++)
        free(tx[k]);
    free(cb.p), free(ib.p), free(pb.p);
}
END_TEST

/* Writes a model + one PNG per image under root/sparse/0 and root/images. */
static void write_scene_dir(const model *m, const char *root, int skip_one) {
    char *sp = tu_path(root, "sparse"), *s0 = tu_path(root, "sparse/0"),
         *im = tu_path(root, "images");
    mkdir(sp, 0755), mkdir(s0, 0755), mkdir(im, 0755);
    bbuf cb, ib, pb;
    model_to_bin(m, &cb, &ib, &pb);
    const char *n[3] = {"cameras.bin", "images.bin", "points3D.bin"};
    bbuf *b[3] = {&cb, &ib, &pb};
    for (int k = 0; k < 3; k++) {
        char *p = tu_path(s0, n[k]);
        tu_write(p, b[k]->p, b[k]->n);
        free(p);
        free(b[k]->p);
    }
    for (int i = 0; i < m->nimg; i++) {
        if (i == skip_one) continue;
        int ci = 0;
        while (m->cam_id[ci] != m->img_cam[i])
            ci++;
        pk_image img;
        ck_assert_int_eq(image_create(&img, m->cam_w[ci], m->cam_h[ci], 3, 8), PK_OK);
        for (size_t k = 0; k < (size_t)img.w * img.h * 3; k++)
            ((uint8_t *)img.data)[k] = (uint8_t)tu_rand();
        char *p = tu_path(im, m->name[i]);
        ck_assert_int_eq(png_write(p, &img), PK_OK);
        free(p);
        image_free(&img);
    }
    free(sp), free(s0), free(im);
}

START_TEST(colmap_folder_and_missing_image) {
    model m;
    random_model(&m);
    char *root = tu_tmpdir();
    write_scene_dir(&m, root, -1);
    pk_scene s;
    scene_options o = {.test_every = 2};
    ck_assert_int_eq(scene_load(root, &o, &s), PK_OK);
    ck_assert_int_eq(s.n, m.nimg);
    ck_assert_int_eq(scene_count_test(&s), (m.nimg + 1) / 2);
    for (int v = 0; v < s.n; v++) {
        pk_image img, raw, ref;
        ck_assert_int_eq(scene_load_image(&s, v, 2, &img), PK_OK);
        pk_camera sc = camera_scaled(&s.cams[v], 2);
        ck_assert_int_eq(img.w, sc.width);
        ck_assert_int_eq(img.h, sc.height);
        ck_assert_int_eq(img.c, 3);
        ck_assert_double_eq_tol(sc.fx * 2, s.cams[v].fx, 1e-12);
        if (s.cams[v].model <= CAM_PINHOLE) { /* no undistortion: exactly the area downscale */
            ck_assert_int_eq(png_read(s.cams[v].image_path, &raw), PK_OK);
            ck_assert_int_eq(image_downscale(&raw, 2, &ref), PK_OK);
            ck_assert_mem_eq(img.data, ref.data, (size_t)img.w * img.h * 3);
            image_free(&raw);
            image_free(&ref);
        }
        image_free(&img);
    }
    ck_assert_int_eq(scene_load_image(&s, s.n, 1, &(pk_image){0}), PK_ERR_INVALID);
    scene_free(&s);
    tu_rmrf(root);
    mkdir(root, 0700);
    /* a missing image file is reported by name, unless checks are off */
    int gone = tu_int(0, m.nimg - 1);
    write_scene_dir(&m, root, gone);
    char *model_dir = tu_path(root, "sparse/0");
    ck_assert_int_eq(colmap_load(model_dir, NULL, &s), PK_ERR_IO);
    ck_assert_msg(strstr(polyak_error(), m.name[gone]) && strstr(polyak_error(), "missing"), "%s",
                  polyak_error());
    ck_assert_ptr_null(s.cams);
    o.skip_image_check = 1;
    ck_assert_int_eq(colmap_load(model_dir, &o, &s), PK_OK);
    int v = 0;
    while (strcmp(s.cams[v].name, m.name[gone]))
        v++;
    ck_assert_int_eq(scene_load_image(&s, v, 1, &(pk_image){0}), PK_ERR_IO);
    scene_free(&s);
    free(model_dir);
    tu_rmrf(root);
    free(root);
}
END_TEST

static const char *tf_json =
    "{\"camera_angle_x\": %.17g, \"w\": 40, \"h\": 30,\n"
    " \"frames\": [\n"
    "  {\"file_path\": \"a.png\", \"transform_matrix\": [[%.17g,%.17g,%.17g,%.17g],"
    "[%.17g,%.17g,%.17g,%.17g],[%.17g,%.17g,%.17g,%.17g],[0,0,0,1]]},\n"
    "  {\"file_path\": \"b.png\", \"fl_x\": 33.5, \"fl_y\": 34.5, \"cx\": 19, \"cy\": 14.5,"
    " \"split\": \"test\", \"transform_matrix\": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}";

/* A random rotation: normalised random quaternion through quat_rotate on the basis. */
static void random_rotation(double *R) {
    double q[4] = {tu_uniform(-1, 1), tu_uniform(-1, 1), tu_uniform(-1, 1), tu_uniform(-1, 1)};
    for (int c = 0; c < 3; c++) {
        double e[3] = {c == 0, c == 1, c == 2}, r[3];
        quat_rotate(q, e, r);
        for (int k = 0; k < 3; k++)
            R[k * 3 + c] = r[k];
    }
}

START_TEST(transforms_json) {
    double R[9], t[3] = {tu_uniform(-3, 3), tu_uniform(-3, 3), tu_uniform(-3, 3)};
    random_rotation(R);
    double ax = tu_uniform(0.3, 1.5);
    char text[4096];
    snprintf(text, sizeof text, tf_json, ax, R[0], R[1], R[2], t[0], R[3], R[4], R[5], t[1], R[6],
             R[7], R[8], t[2]);
    pk_scene s;
    ck_assert_int_eq(transforms_parse("t.json", text, strlen(text), "/base", 0, &s), PK_OK);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.file_split, 1);
    ck_assert_int_eq(s.cams[0].is_test, 0);
    ck_assert_int_eq(s.cams[1].is_test, 1);
    ck_assert_str_eq(s.cams[0].image_path, "/base/a.png");
    ck_assert_double_eq_tol(s.cams[0].fx, 20.0 / tan(ax / 2), 1e-9);
    ck_assert_double_eq_tol(s.cams[0].fy, s.cams[0].fx, 1e-12);
    ck_assert_double_eq_tol(s.cams[0].cx, 20, 1e-12);
    ck_assert_double_eq_tol(s.cams[1].fy, 34.5, 1e-12);
    ck_assert_double_eq_tol(s.cams[1].cy, 14.5, 1e-12);
    /* A point 2 units along the OpenGL camera's -z (its viewing direction) and 1 along +y (up)
     * must land at OpenCV camera coordinates (0, -1, 2): in front, above centre. */
    double pc[3] = {0, 1, -2}, pw[3];
    for (int k = 0; k < 3; k++)
        pw[k] = R[k * 3] * pc[0] + R[k * 3 + 1] * pc[1] + R[k * 3 + 2] * pc[2] + t[k];
    const double *W = s.cams[0].w2c;
    double want[3] = {0, -1, 2};
    for (int k = 0; k < 3; k++)
        ck_assert_double_eq_tol(W[k * 4] * pw[0] + W[k * 4 + 1] * pw[1] + W[k * 4 + 2] * pw[2] +
                                    W[k * 4 + 3],
                                want[k], 1e-9);
    scene_free(&s);
    /* bad input: each names the frame and field */
    const char *bad[] = {
        "{\"frames\": [{\"file_path\": \"a\", \"w\": 4, \"h\": 4, \"transform_matrix\": "
        "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}",
        "{\"fl_x\": 5, \"w\": 4, \"h\": 4, \"frames\": [{\"transform_matrix\": "
        "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}",
        "{\"fl_x\": 5, \"w\": 4, \"h\": 4, \"frames\": [{\"file_path\": \"a\", "
        "\"transform_matrix\": "
        "[[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}",
        "{\"fl_x\": 5, \"w\": 4, \"h\": 4, \"frames\": [{\"file_path\": \"a\", "
        "\"transform_matrix\": "
        "[[1,0,0,0],[0,1,0,1e999],[0,0,1,0],[0,0,0,1]]}]}",
        "{\"fl_x\": 5, \"w\": 4, \"h\": 4, \"frames\": [{\"file_path\": \"a\", "
        "\"transform_matrix\": "
        "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}, {\"file_path\": \"b\", \"split\": \"dev\", "
        "\"transform_matrix\": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}",
        "{\"fl_x\": 5, \"frames\": [{\"file_path\": \"a\", \"transform_matrix\": "
        "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}",
        "{\"fl_x\": 5, \"w\": 4, \"h\": 4, \"frames\": [}",
        "{\"fl_x\": -5, \"w\": 4, \"h\": 4, \"frames\": [{\"file_path\": \"a\", "
        "\"transform_matrix\": "
        "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}",
    };
    const char *needle[] = {"frames[0]: focal length", "frames[0]: field file_path",
                            "not orthonormal",         "transform_matrix[1][3]",
                            "frames[1]: field split",  "no w/h",
                            "not valid JSON",          "positive"};
    const char *fish = "{\"camera_model\": \"OPENCV_FISHEYE\", \"frames\": []}";
    ck_assert_int_eq(transforms_parse("t.json", fish, strlen(fish), "/b", 0, &s),
                     PK_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "camera_model"));
    const char *k3 = "{\"fl_x\": 5, \"k3\": 0.1, \"frames\": []}";
    ck_assert_int_eq(transforms_parse("t.json", k3, strlen(k3), "/b", 0, &s), PK_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "k3"));
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(transforms_parse("t.json", bad[i], strlen(bad[i]), "/b", 0, &s),
                         PK_ERR_FORMAT);
        ck_assert_msg(strstr(polyak_error(), needle[i]) && strstr(polyak_error(), "t.json"),
                      "%d: %s", i, polyak_error());
        ck_assert_ptr_null(s.cams);
    }
}
END_TEST

START_TEST(transforms_probe_and_blender) {
    char *root = tu_tmpdir();
    pk_image img;
    int w = tu_int(8, 30), h = tu_int(8, 30);
    ck_assert_int_eq(image_create(&img, w, h, 4, 8), PK_OK);
    char *train = tu_path(root, "train"), *p = tu_path(root, "train/r_0.png");
    mkdir(train, 0755);
    ck_assert_int_eq(png_write(p, &img), PK_OK);
    const char *js = "{\"camera_angle_x\": 0.69, \"frames\": [{\"file_path\": \"./train/r_0\", "
                     "\"transform_matrix\": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}";
    char *tr = tu_path(root, "transforms_train.json"), *te = tu_path(root, "transforms_test.json");
    tu_write_str(tr, js);
    tu_write_str(te, js);
    pk_scene s;
    ck_assert_int_eq(scene_load(root, NULL, &s), PK_OK);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.cams[0].width * 100 + s.cams[0].height, w * 100 + h);
    ck_assert_int_eq(s.cams[0].is_test + 2 * s.cams[1].is_test, 2);
    pk_image out;
    ck_assert_int_eq(scene_load_image(&s, 1, 1, &out), PK_OK);
    ck_assert_int_eq(out.c, 3);
    image_free(&out);
    scene_free(&s);
    remove(p);
    ck_assert_int_eq(scene_load(root, NULL, &s), PK_ERR_IO);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "r_0"));
    ck_assert_int_eq(scene_load("/nonexistent-scene", NULL, &s), PK_ERR_IO);
    image_free(&img);
    free(train), free(p), free(tr), free(te);
    tu_rmrf(root);
    free(root);
}
END_TEST

static double pattern(double x, double y) {
    return 0.5 + 0.4 * sin(3 * x + 0.5) * cos(2 * y - 0.3);
}

START_TEST(undistort_analytic) {
    pk_camera cam = {.width = 96, .height = 72, .model = CAM_OPENCV};
    cam.fx = tu_uniform(70, 90), cam.fy = tu_uniform(70, 90);
    cam.cx = 48 + tu_uniform(-2, 2), cam.cy = 36 + tu_uniform(-2, 2);
    cam.k1 = tu_uniform(-0.15, 0.15), cam.k2 = tu_uniform(-0.05, 0.05);
    cam.p1 = tu_uniform(-0.01, 0.01), cam.p2 = tu_uniform(-0.01, 0.01);
    pk_image src, dst;
    ck_assert_int_eq(image_create(&src, cam.width, cam.height, 1, 16), PK_OK);
    /* The photo: each distorted pixel shows the pattern at its undistorted ray, found by
     * fixed-point iteration of x = xd - (distort(x) - x) (an independent inverse). */
    for (int v = 0; v < src.h; v++)
        for (int u = 0; u < src.w; u++) {
            double xd = (u + 0.5 - cam.cx) / cam.fx, yd = (v + 0.5 - cam.cy) / cam.fy, x = xd,
                   y = yd;
            for (int it = 0; it < 100; it++) {
                double ex, ey;
                camera_distort(&cam, x, y, &ex, &ey);
                x -= ex - xd;
                y -= ey - yd;
            }
            ((uint16_t *)src.data)[v * src.w + u] = (uint16_t)(pattern(x, y) * 65535 + 0.5);
        }
    ck_assert_int_eq(camera_undistort(&cam, &src, &dst), PK_OK);
    double worst = 0;
    for (int v = 8; v < dst.h - 8; v++)
        for (int u = 8; u < dst.w - 8; u++) {
            double x = (u + 0.5 - cam.cx) / cam.fx, y = (v + 0.5 - cam.cy) / cam.fy;
            double e = fabs(image_get(&dst, u, v, 0) - pattern(x, y));
            if (e > worst) worst = e;
        }
    ck_assert_double_lt(worst, 2e-3); /* bilinear error of a smooth pattern at ~80 px/unit */
    /* and the distortion visibly moved pixels: the raw photo differs from the pattern */
    double moved = 0;
    for (int u = 0; u < src.w; u++)
        moved = fmax(moved, fabs(image_get(&src, u, 2, 0) -
                                 pattern((u + 0.5 - cam.cx) / cam.fx, (2.5 - cam.cy) / cam.fy)));
    ck_assert_double_gt(moved, 5 * worst);
    image_free(&src);
    image_free(&dst);
}
END_TEST

START_TEST(mouse_photos) {
    const char *root = POLYAK_SOURCE_DIR "/../shared/datasets/mouse-photos";
    struct stat st;
    if (stat(root, &st) != 0) root = "/work/shared/datasets/mouse-photos";
    if (stat(root, &st) != 0) return; /* data set absent on this machine */
    pk_scene s;
    ck_assert_int_eq(scene_load(root, NULL, &s), PK_OK);
    ck_assert_int_eq(s.n, 56);
    ck_assert_uint_eq(s.n_points, 4443);
    ck_assert_int_eq(scene_count_test(&s), 7);
    int portrait = 0;
    for (int i = 0; i < s.n; i++)
        portrait += s.cams[i].height > s.cams[i].width;
    ck_assert_int_gt(portrait, 0);
    int i = tu_int(0, s.n - 1);
    pk_image img;
    ck_assert_int_eq(scene_load_image(&s, i, 8, &img), PK_OK);
    ck_assert_int_eq(img.w, s.cams[i].width / 8);
    ck_assert_int_eq(img.h, s.cams[i].height / 8);
    image_free(&img);
    scene_free(&s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io/scene");
    TCase *tc = tcase_create("scene");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, colmap_binary_and_text);
    tcase_add_test(tc, colmap_bad);
    tcase_add_test(tc, colmap_folder_and_missing_image);
    tcase_add_test(tc, transforms_json);
    tcase_add_test(tc, transforms_probe_and_blender);
    tcase_add_test(tc, undistort_analytic);
    tcase_add_test(tc, mouse_photos);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
