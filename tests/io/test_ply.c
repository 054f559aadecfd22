/* test_ply.c - 3DGS PLY write/read round trips at every SH degree, the exact standard header,
 * ASCII and mixed-type binary reads, and bad input (magic, truncation, lying counts, NaN). */
#include "io_testutil.h"
#include "ply.h"

#include <math.h>

static void fill(float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = (float)tu_uniform(-3, 3);
}

START_TEST(roundtrip_3dgs) {
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "g.ply");
    for (int d = 0; d <= 3; d++) {
        pk_gaussians g, back;
        size_t n = (size_t)tu_int(0, 300);
        ck_assert_int_eq(gaussians_create(&g, n, d), PK_OK);
        size_t nr = (size_t)(3 * ((d + 1) * (d + 1) - 1));
        fill(g.xyz, n * 3), fill(g.f_dc, n * 3), fill(g.f_rest, n * nr), fill(g.opacity, n);
        fill(g.scale, n * 3), fill(g.rot, n * 4);
        ck_assert_int_eq(ply_write_3dgs(path, &g), PK_OK);
        ck_assert_int_eq(ply_read_3dgs(path, &back), PK_OK);
        ck_assert_uint_eq(back.n, n);
        ck_assert_int_eq(back.sh_degree, d);
        ck_assert_mem_eq(back.xyz, g.xyz, n * 12);
        ck_assert_mem_eq(back.f_dc, g.f_dc, n * 12);
        if (nr) ck_assert_mem_eq(back.f_rest, g.f_rest, n * nr * 4);
        ck_assert_mem_eq(back.opacity, g.opacity, n * 4);
        ck_assert_mem_eq(back.scale, g.scale, n * 12);
        ck_assert_mem_eq(back.rot, g.rot, n * 16);
        /* the header is byte-for-byte the layout 3DGS viewers expect */
        size_t len;
        uint8_t *b = tu_read(path, &len);
        char want[4096];
        int k = snprintf(want, sizeof want,
                         "ply\nformat binary_little_endian 1.0\nelement vertex %zu\n"
                         "property float x\nproperty float y\nproperty float z\n"
                         "property float nx\nproperty float ny\nproperty float nz\n"
                         "property float f_dc_0\nproperty float f_dc_1\nproperty float f_dc_2\n",
                         n);
        for (size_t i = 0; i < nr; i++)
            k += snprintf(want + k, sizeof want - (size_t)k, "property float f_rest_%zu\n", i);
        k += snprintf(want + k, sizeof want - (size_t)k,
                      "property float opacity\nproperty float scale_0\nproperty float scale_1\n"
                      "property float scale_2\nproperty float rot_0\nproperty float rot_1\n"
                      "property float rot_2\nproperty float rot_3\nend_header\n");
        ck_assert_uint_eq(len, (size_t)k + n * 4 * (17 + nr));
        ck_assert_mem_eq(b, want, (size_t)k);
        free(b);
        gaussians_free(&g);
        gaussians_free(&back);
    }
    gaussians_free(NULL);
    tu_rmrf(dir);
    free(path);
    free(dir);
}
END_TEST

START_TEST(ascii_and_mixed_types) {
    float x = (float)tu_uniform(-100, 100), y = (float)tu_uniform(-1, 1);
    int r = tu_int(0, 255);
    char text[1024];
    snprintf(text, sizeof text,
             "ply\r\nformat ascii 1.0\r\ncomment made by hand\nelement vertex 2\nproperty double "
             "x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar "
             "green\nproperty uchar blue\nelement face 1\nproperty list uchar int "
             "vertex_indices\nend_header\n%.9g %.9g 0.5 %d 2 3\n-1 -2 -3 4 5 6\n3 0 1 1\n",
             x, y, r);
    ply_table t;
    ck_assert_int_eq(ply_parse("a.ply", (const uint8_t *)text, strlen(text), &t), PK_OK);
    ck_assert_uint_eq(t.n, 2);
    ck_assert_int_eq(t.binary, 0);
    float *xyz;
    uint8_t *rgb;
    ck_assert_int_eq(ply_table_to_points("a.ply", &t, &xyz, &rgb), PK_OK);
    ck_assert_float_eq(xyz[0], x);
    ck_assert_float_eq(xyz[1], y);
    ck_assert_float_eq(xyz[5], -3);
    ck_assert_int_eq(rgb[0], r);
    ck_assert_int_eq(rgb[5], 6);
    free(xyz);
    free(rgb);
    pk_gaussians g;
    ck_assert_int_eq(ply_table_to_gaussians("a.ply", &t, &g), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "f_dc_0"));
    ply_table_free(&t);
    /* binary with short, int and double properties */
    uint8_t bin[256];
    const char *h = "ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty short "
                    "x\nproperty int y\nproperty double z\nend_header\n";
    size_t hl = strlen(h);
    memcpy(bin, h, hl);
    int16_t sx = (int16_t)tu_int(-30000, 30000);
    int32_t sy = tu_int(-1000000, 1000000);
    double sz = tu_uniform(-1, 1);
    memcpy(bin + hl, &sx, 2);
    memcpy(bin + hl + 2, &sy, 4);
    memcpy(bin + hl + 6, &sz, 8);
    ck_assert_int_eq(ply_parse("b.ply", bin, hl + 14, &t), PK_OK);
    ck_assert_float_eq(t.values[0], sx);
    ck_assert_float_eq(t.values[1], (float)sy);
    ck_assert_float_eq(t.values[2], (float)sz);
    ply_table_free(&t);
    ply_table_free(NULL);
}
END_TEST

static void expect_bad(const char *text, size_t len, pk_status want, const char *needle) {
    ply_table t;
    pk_status s = ply_parse("bad.ply", (const uint8_t *)text, len, &t);
    ck_assert_msg(s == want, "status %d want %d: %s", s, want, polyak_error());
    ck_assert_msg(strstr(polyak_error(), needle) && strstr(polyak_error(), "bad.ply"),
                  "message \"%s\" lacks \"%s\"", polyak_error(), needle);
    ck_assert_ptr_null(t.values);
}

START_TEST(bad_input) {
    const char *hdr = "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float "
                      "x\nproperty float y\nproperty float z\nend_header\n";
    char buf[512];
    size_t hl = strlen(hdr);
    memcpy(buf, hdr, hl);
    memset(buf + hl, 0, 36);
    ply_table t;
    ck_assert_int_eq(ply_parse("ok.ply", (uint8_t *)buf, hl + 36, &t), PK_OK);
    ply_table_free(&t);
    expect_bad(buf, hl + (size_t)tu_int(0, 35), PK_ERR_FORMAT, "truncated");
    expect_bad(buf, (size_t)tu_int(0, (int)hl - 1), PK_ERR_FORMAT, "");
    expect_bad("plx\nformat ascii 1.0\n", 21, PK_ERR_FORMAT, "magic");
    const char *big = "ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float "
                      "x\nend_header\n0000";
    expect_bad(big, strlen(big), PK_ERR_UNSUPPORTED, "binary_big_endian");
    const char *lie = "ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\nproperty "
                      "float x\nend_header\n0000";
    expect_bad(lie, strlen(lie), PK_ERR_FORMAT, "99999999999");
    const char *typ = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float3 x\nend_header\n1\n";
    expect_bad(typ, strlen(typ), PK_ERR_FORMAT, "float3");
    const char *num = "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float "
                      "y\nend_header\n1 2\n3 abc\n";
    expect_bad(num, strlen(num), PK_ERR_FORMAT, "vertex 1");
    const char *first = "ply\nformat ascii 1.0\nelement face 1\nproperty float x\nend_header\n1\n";
    expect_bad(first, strlen(first), PK_ERR_UNSUPPORTED, "face");
    /* a NaN colour is clamped, never cast (the fuzzer's first finding) */
    const char *nanc = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float "
                       "y\nproperty float z\nproperty float red\nend_header\n1 2 3 nan\n";
    ck_assert_int_eq(ply_parse("nan.ply", (const uint8_t *)nanc, strlen(nanc), &t), PK_OK);
    float *xyz;
    uint8_t *rgb;
    ck_assert_int_eq(ply_table_to_points("nan.ply", &t, &xyz, &rgb), PK_OK);
    ck_assert_int_eq(rgb[0], 0);
    ck_assert_int_eq(rgb[1], 255);
    free(xyz);
    free(rgb);
    ply_table_free(&t);
    /* NaN where a finite value is required */
    pk_gaussians g;
    ck_assert_int_eq(gaussians_create(&g, 4, 1), PK_OK);
    int bad = tu_int(0, 3);
    g.scale[bad * 3 + 1] = NAN;
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "nan.ply");
    ck_assert_int_eq(ply_write_3dgs(path, &g), PK_OK);
    pk_gaussians back;
    ck_assert_int_eq(ply_read_3dgs(path, &back), PK_ERR_FORMAT);
    char want[64];
    snprintf(want, sizeof want, "vertex %d: property \"scale_1\"", bad);
    ck_assert_msg(strstr(polyak_error(), want), "%s", polyak_error());
    ck_assert_ptr_null(back.xyz);
    gaussians_free(&g);
    ck_assert_int_eq(ply_read_3dgs("/nonexistent.ply", &back), PK_ERR_IO);
    tu_rmrf(dir);
    free(path);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io/ply");
    TCase *tc = tcase_create("ply");
    tcase_add_test(tc, roundtrip_3dgs);
    tcase_add_test(tc, ascii_and_mixed_types);
    tcase_add_test(tc, bad_input);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
