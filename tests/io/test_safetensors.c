/* test_safetensors.c - safetensors write/read round trips for every dtype, F16/BF16 conversion
 * against PyTorch's (golden file written by make_golden_safetensors.py), and every header check. */
#include "io_testutil.h"
#include "safetensors.h"

#include <math.h>

START_TEST(roundtrip_all_dtypes) {
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "w.safetensors");
    enum { NT = 6 };
    st_write_tensor w[NT];
    int64_t shapes[NT][3];
    void *data[NT];
    char names[NT][16];
    for (int i = 0; i < NT; i++) {
        st_dtype d = (st_dtype)i;
        int nd = tu_int(0, 3);
        size_t numel = 1;
        for (int k = 0; k < nd; k++)
            numel *= (size_t)(shapes[i][k] = tu_int(1, 9));
        size_t bytes = numel * st_dtype_size(d);
        data[i] = malloc(bytes);
        for (size_t b = 0; b < bytes; b++)
            ((uint8_t *)data[i])[b] = (uint8_t)tu_rand();
        snprintf(names[i], sizeof names[i], "t%d.%s", i, st_dtype_name(d));
        w[i] = (st_write_tensor){
            .name = names[i], .dtype = d, .ndim = nd, .shape = shapes[i], .data = data[i]};
    }
    const char *mk[] = {"purpose", "seed"}, *mv[] = {"test", "123"};
    ck_assert_int_eq(safetensors_write(path, w, NT, mk, mv, 2), PK_OK);
    st_file f;
    ck_assert_int_eq(safetensors_open(path, &f), PK_OK);
    ck_assert_int_eq(f.n, NT);
    ck_assert_str_eq(safetensors_meta(&f, "seed"), "123");
    ck_assert_ptr_null(safetensors_meta(&f, "nope"));
    for (int i = 0; i < NT; i++) {
        const st_tensor *t = safetensors_find(&f, names[i]);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->dtype, (st_dtype)i);
        ck_assert_int_eq(t->ndim, w[i].ndim);
        for (int k = 0; k < t->ndim; k++)
            ck_assert_int_eq(t->shape[k], shapes[i][k]);
        ck_assert_uint_eq(t->nbytes, st_tensor_numel(t) * st_dtype_size(t->dtype));
        ck_assert_mem_eq(t->data, data[i], t->nbytes);
        free(data[i]);
    }
    ck_assert_ptr_null(safetensors_find(&f, "missing"));
    safetensors_close(&f);
    safetensors_close(NULL);
    /* the data section starts 8-byte aligned */
    size_t len;
    uint8_t *b = tu_read(path, &len);
    ck_assert_uint_eq(b[0] % 8, 0);
    free(b);
    ck_assert_int_eq(access(path, F_OK), 0);
    char *tmp = tu_path(dir, "w.safetensors.tmp");
    ck_assert_int_ne(access(tmp, F_OK), 0);
    free(tmp);
    tu_rmrf(dir);
    free(path);
    free(dir);
}
END_TEST

START_TEST(torch_golden) {
    st_file f;
    ck_assert_int_eq(
        safetensors_open(POLYAK_SOURCE_DIR "/tests/io/golden/torch_small.safetensors", &f), PK_OK);
    ck_assert_str_eq(safetensors_meta(&f, "format"), "pt");
    const char *pairs[2][2] = {{"x_f16", "x_f16_as_f32"}, {"x_bf16", "x_bf16_as_f32"}};
    for (int p = 0; p < 2; p++) {
        const st_tensor *h = safetensors_find(&f, pairs[p][0]),
                        *r = safetensors_find(&f, pairs[p][1]);
        ck_assert_ptr_nonnull(h);
        ck_assert_ptr_nonnull(r);
        size_t n = st_tensor_numel(h);
        ck_assert_uint_eq(n, 15);
        float got[15], want[15];
        ck_assert_int_eq(st_tensor_to_f32(h, got), PK_OK);
        ck_assert_int_eq(st_tensor_to_f32(r, want), PK_OK);
        ck_assert_mem_eq(got, want, sizeof got); /* bit-exact, -0.0 and subnormals included */
        /* and our f32 -> f16/bf16 rounding matches torch's on the original values */
        float x[15];
        ck_assert_int_eq(st_tensor_to_f32(safetensors_find(&f, "x_f32"), x), PK_OK);
        const uint8_t *raw = h->data;
        for (size_t i = 0; i < n; i++) {
            uint16_t mine = p == 0 ? st_f32_to_f16(x[i]) : st_f32_to_bf16(x[i]);
            ck_assert_uint_eq(mine, (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8));
        }
    }
    const st_tensor *ix = safetensors_find(&f, "idx_i64");
    ck_assert_int_eq(ix->dtype, ST_I64);
    int64_t v[7];
    memcpy(v, ix->data, sizeof v);
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(v[i], i - 3);
    ck_assert_int_eq(st_tensor_to_f32(ix, (float *)v), PK_ERR_INVALID);
    safetensors_close(&f);
}
END_TEST

START_TEST(half_conversions_random) {
    for (int i = 0; i < 20000; i++) {
        uint16_t h = (uint16_t)tu_rand();
        float f = st_f16_to_f32(h);
        if (isnan(f)) continue;
        ck_assert_uint_eq(st_f32_to_f16(f), h); /* every half is exactly representable */
        ck_assert_uint_eq(st_f32_to_bf16(st_bf16_to_f32(h)), h);
    }
}
END_TEST

/* Builds a safetensors image from header text and a data section of `data` bytes. */
static uint8_t *mk(const char *json, size_t data, size_t *len) {
    size_t hl = strlen(json);
    *len = 8 + hl + data;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    for (size_t i = 0; i < data; i++)
        b[8 + hl + i] = (uint8_t)tu_rand();
    return b;
}

static void expect_bad(const char *json, size_t data, pk_status want, const char *needle) {
    size_t len;
    uint8_t *b = mk(json, data, &len);
    st_file f;
    pk_status s = safetensors_parse("bad.safetensors", b, len, &f);
    ck_assert_msg(s == want, "%s: status %d, want %d (%s)", json, s, want, polyak_error());
    ck_assert_msg(strstr(polyak_error(), needle) && strstr(polyak_error(), "bad.safetensors"),
                  "message \"%s\" lacks \"%s\"", polyak_error(), needle);
    ck_assert_int_eq(f.n, 0);
    ck_assert_ptr_null(f.tensors);
    free(b);
}

START_TEST(bad_headers) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    size_t len;
    uint8_t *b = mk(ok, 16, &len);
    st_file f;
    ck_assert_int_eq(safetensors_parse("good", b, len, &f), PK_OK);
    ck_assert_int_eq(f.n, 1);
    safetensors_close(&f);
    /* truncated anywhere: header length lies or data past the end */
    size_t cut = (size_t)tu_int(0, (int)len - 1);
    pk_status s = safetensors_parse("bad.safetensors", b, cut, &f);
    ck_assert_int_eq(s, PK_ERR_FORMAT);
    /* header length larger than the file */
    b[0] = 0xff, b[1] = 0xff;
    ck_assert_int_eq(safetensors_parse("bad.safetensors", b, len, &f), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "header length"));
    free(b);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", 16,
               PK_ERR_FORMAT, "JSON");
    expect_bad("{\"a\":{\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, PK_ERR_FORMAT, "dtype");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", 16, PK_ERR_FORMAT, "shape");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16, PK_ERR_FORMAT, "data_offsets");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,32]}}", 16,
               PK_ERR_FORMAT, "outside the data section");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16,
               PK_ERR_FORMAT, "shape x dtype");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16,
               PK_ERR_FORMAT, "shape[0]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,"
               "16]}}",
               16, PK_ERR_FORMAT, "shape x dtype");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[8,16]}}",
               16, PK_ERR_FORMAT, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
               PK_ERR_UNSUPPORTED, "F64");
    expect_bad("{\"__metadata__\":{\"k\":3}}", 0, PK_ERR_FORMAT, "__metadata__");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, PK_ERR_FORMAT, "twice");
    expect_bad("[1,2]", 0, PK_ERR_FORMAT, "'{'");
    ck_assert_int_eq(safetensors_open("/nonexistent/x.safetensors", &f), PK_ERR_IO);
}
END_TEST

START_TEST(write_rejects_bad_input) {
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "bad.safetensors");
    int64_t shape[1] = {2};
    float d[2] = {1, 2};
    st_write_tensor w[2] = {{.name = "x", .dtype = ST_F32, .ndim = 1, .shape = shape, .data = d},
                            {.name = "x", .dtype = ST_F32, .ndim = 1, .shape = shape, .data = d}};
    ck_assert_int_eq(safetensors_write(path, w, 2, NULL, NULL, 0), PK_ERR_INVALID);
    ck_assert_int_ne(access(path, F_OK), 0);
    char *tmp = tu_path(dir, "bad.safetensors.tmp");
    ck_assert_int_ne(access(tmp, F_OK), 0);
    free(tmp);
    tu_rmrf(dir);
    free(path);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io/safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_test(tc, roundtrip_all_dtypes);
    tcase_add_test(tc, torch_golden);
    tcase_add_test(tc, half_conversions_random);
    tcase_add_test(tc, bad_headers);
    tcase_add_test(tc, write_rejects_bad_input);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
