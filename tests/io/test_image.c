/* test_image.c - PNG round trips (8/16 bit, 1-4 channels), JPEG decode with EXIF orientation,
 * area downscale against a hand-computed mean, resize/crop/f32 export, and bad input. */
#include "image.h"
#include "io_testutil.h"

#include <math.h>
#include <turbojpeg.h>

static void fill_random(pk_image *img) {
    size_t n = (size_t)img->w * img->h * img->c;
    for (size_t i = 0; i < n; i++) {
        if (img->bits == 16)
            ((uint16_t *)img->data)[i] = (uint16_t)tu_rand();
        else
            ((uint8_t *)img->data)[i] = (uint8_t)tu_rand();
    }
}

START_TEST(png_roundtrip) {
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "a.png");
    for (int bits = 8; bits <= 16; bits += 8)
        for (int c = 1; c <= 4; c++) {
            pk_image img, back;
            ck_assert_int_eq(image_create(&img, tu_int(1, 70), tu_int(1, 70), c, bits), PK_OK);
            fill_random(&img);
            ck_assert_int_eq(png_write(path, &img), PK_OK);
            ck_assert_int_eq(png_read(path, &back), PK_OK);
            ck_assert_int_eq(back.w, img.w);
            ck_assert_int_eq(back.h, img.h);
            ck_assert_int_eq(back.c, c);
            ck_assert_int_eq(back.bits, bits);
            size_t bytes = (size_t)img.w * img.h * c * (bits / 8);
            ck_assert_mem_eq(back.data, img.data, bytes);
            int w, h, cc;
            ck_assert_int_eq(image_probe(path, &w, &h, &cc), PK_OK);
            ck_assert_int_eq(w * 1000 + h * 10 + cc, img.w * 1000 + img.h * 10 + c);
            image_free(&img);
            image_free(&back);
        }
    image_free(NULL);
    tu_rmrf(dir);
    free(path);
    free(dir);
}
END_TEST

/* Encodes rgb at quality 100, 4:4:4; when orientation > 0 an EXIF APP1 (big-endian TIFF)
 * carrying it is inserted after SOI. */
static uint8_t *make_jpeg(const pk_image *img, int orientation, size_t *len) {
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long jl = 0;
    ck_assert_int_eq(tjCompress2(tj, img->data, img->w, 0, img->h,
                                 img->c == 1 ? TJPF_GRAY : TJPF_RGB, &jpg, &jl,
                                 img->c == 1 ? TJSAMP_GRAY : TJSAMP_444, 100, 0),
                     0);
    tjDestroy(tj);
    uint8_t app1[] = {0xFF, 0xE1, 0, 34, 'E', 'x', 'i', 'f', 0, 0,
                      'M',  'M',  0, 42, 0,   0,   0,   8,   0, 1, /* one IFD entry */
                      0x01, 0x12, 0, 3,  0,   0,   0,   1,   0, (uint8_t)orientation,
                      0,    0,    0, 0,  0,   0};
    size_t extra = orientation > 0 ? sizeof app1 : 0;
    uint8_t *out = malloc(jl + extra);
    memcpy(out, jpg, 2);
    if (extra) memcpy(out + 2, app1, extra);
    memcpy(out + 2 + extra, jpg + 2, jl - 2);
    *len = jl + extra;
    tjFree(jpg);
    return out;
}

START_TEST(jpeg_orientation) {
    pk_image img;
    int w = tu_int(5, 40), h = tu_int(5, 40);
    while (h == w)
        h = tu_int(5, 40);
    ck_assert_int_eq(image_create(&img, w, h, 3, 8), PK_OK);
    fill_random(&img);
    size_t l0;
    uint8_t *plain = make_jpeg(&img, 0, &l0);
    pk_image ref;
    ck_assert_int_eq(jpeg_decode("plain", plain, l0, &ref), PK_OK);
    ck_assert_int_eq(ref.w, w);
    ck_assert_int_eq(ref.h, h);
    /* quality-100 4:4:4 stays close to the source */
    double err = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        err += abs(((uint8_t *)ref.data)[i] - ((uint8_t *)img.data)[i]);
    ck_assert_double_lt(err / (w * h * 3), 6.0);
    for (int o = 1; o <= 8; o++) {
        size_t l;
        uint8_t *j = make_jpeg(&img, o, &l);
        ck_assert_int_eq(jpeg_exif_orientation(j, l), o);
        pk_image out;
        ck_assert_int_eq(jpeg_decode("exif", j, l, &out), PK_OK);
        int tr = o >= 5;
        ck_assert_int_eq(out.w, tr ? h : w);
        ck_assert_int_eq(out.h, tr ? w : h);
        /* Independent statement of each orientation: where the stored pixel (x, y) lands. */
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int dx = x, dy = y;
                switch (o) {
                case 2: dx = w - 1 - x; break;
                case 3: dx = w - 1 - x, dy = h - 1 - y; break;
                case 4: dy = h - 1 - y; break;
                case 5: dx = y, dy = x; break;
                case 6: dx = h - 1 - y, dy = x; break;
                case 7: dx = h - 1 - y, dy = w - 1 - x; break;
                case 8: dx = y, dy = w - 1 - x; break;
                }
                for (int k = 0; k < 3; k++)
                    ck_assert_uint_eq(((uint8_t *)out.data)[((size_t)dy * out.w + dx) * 3 + k],
                                      ((uint8_t *)ref.data)[((size_t)y * w + x) * 3 + k]);
            }
        image_free(&out);
        free(j);
    }
    image_free(&ref);
    image_free(&img);
    free(plain);
}
END_TEST

START_TEST(downscale_area) {
    for (int bits = 8; bits <= 16; bits += 8) {
        int f = 1 << tu_int(1, 3);
        pk_image img, d;
        ck_assert_int_eq(image_create(&img, tu_int(f, 60), tu_int(f, 60), 3, bits), PK_OK);
        fill_random(&img);
        ck_assert_int_eq(image_downscale(&img, f, &d), PK_OK);
        ck_assert_int_eq(d.w, img.w / f);
        ck_assert_int_eq(d.h, img.h / f);
        for (int y = 0; y < d.h; y++)
            for (int x = 0; x < d.w; x++)
                for (int k = 0; k < 3; k++) {
                    double s = 0;
                    for (int j = 0; j < f; j++)
                        for (int i = 0; i < f; i++)
                            s += image_get(&img, x * f + i, y * f + j, k);
                    double mean = s / (f * f), got = image_get(&d, x, y, k);
                    ck_assert_double_le(fabs(mean - got),
                                        0.5 / (bits == 8 ? 255.0 : 65535.0) + 1e-7);
                }
        image_free(&d);
        ck_assert_int_eq(image_downscale(&img, 1000, &d) != PK_OK, 1);
        image_free(&img);
    }
}
END_TEST

START_TEST(resize_crop_f32) {
    pk_image img, r, c;
    ck_assert_int_eq(image_create(&img, tu_int(4, 30), tu_int(4, 30), 3, 8), PK_OK);
    fill_random(&img);
    /* identity resize is exact */
    ck_assert_int_eq(image_resize(&img, img.w, img.h, &r), PK_OK);
    ck_assert_mem_eq(r.data, img.data, (size_t)img.w * img.h * 3);
    image_free(&r);
    int x0 = tu_int(0, img.w - 2), y0 = tu_int(0, img.h - 2);
    ck_assert_int_eq(image_crop(&img, x0, y0, 2, 2, &c), PK_OK);
    ck_assert_float_eq(image_get(&c, 1, 1, 2), image_get(&img, x0 + 1, y0 + 1, 2));
    ck_assert_int_eq(image_crop(&img, img.w - 1, 0, 2, 2, &r) != PK_OK, 1);
    float *out = malloc(sizeof(float) * (size_t)img.w * img.h * 3);
    for (size_t i = 0; i < (size_t)img.w * img.h * 3; i++)
        out[i] = NAN;
    image_to_f32_chw(&img, out);
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < img.h; y++)
            for (int x = 0; x < img.w; x++)
                ck_assert_float_eq(out[((size_t)k * img.h + y) * img.w + x],
                                   ((uint8_t *)img.data)[((size_t)y * img.w + x) * 3 + k] / 255.0f);
    free(out);
    image_free(&img);
    image_free(&c);
}
END_TEST

START_TEST(bad_images) {
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "a.png");
    pk_image img, back;
    ck_assert_int_eq(image_create(&img, 40, 30, 3, 8), PK_OK);
    fill_random(&img);
    ck_assert_int_eq(png_write(path, &img), PK_OK);
    size_t len;
    uint8_t *b = tu_read(path, &len);
    /* truncated at a random point past the signature */
    size_t cut = (size_t)tu_int(9, (int)len - 13);
    tu_write(path, b, cut);
    ck_assert_int_eq(png_read(path, &back), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), path));
    ck_assert_ptr_null(back.data);
    /* wrong magic */
    b[1] ^= 0xff;
    tu_write(path, b, len);
    ck_assert_int_eq(png_read(path, &back), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "signature"));
    ck_assert_int_eq(image_read(path, &back), PK_ERR_FORMAT);
    /* missing file */
    char *none = tu_path(dir, "none.png");
    ck_assert_int_eq(png_read(none, &back), PK_ERR_IO);
    /* truncated JPEG */
    size_t jl;
    uint8_t *j = make_jpeg(&img, 6, &jl);
    ck_assert_int_ne(jpeg_decode("t.jpg", j, jl / 3, &back), PK_OK);
    ck_assert_ptr_null(back.data);
    ck_assert_int_eq(jpeg_decode("t.jpg", j + 1, jl - 1, &back), PK_ERR_FORMAT);
    /* writing into a missing folder fails and leaves nothing */
    char *bad = tu_path(dir, "no/such/dir.png");
    ck_assert_int_eq(png_write(bad, &img), PK_ERR_IO);
    free(j);
    free(b);
    free(bad);
    free(none);
    image_free(&img);
    tu_rmrf(dir);
    free(path);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io/image");
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, png_roundtrip);
    tcase_add_test(tc, jpeg_orientation);
    tcase_add_test(tc, downscale_area);
    tcase_add_test(tc, resize_crop_f32);
    tcase_add_test(tc, bad_images);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
