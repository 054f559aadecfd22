/* image.c - PNG through libpng, JPEG through libjpeg-turbo (plus a small EXIF orientation
 * parser), area downscale, bilinear resize, crop, channel conversion and f32 CHW export. */
#include "image.h"
#include "io_util.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* Largest side accepted: keeps w*h*c*2 far from overflow and refuses absurd headers. */
#define IMAGE_MAX_SIDE 65536

pk_status image_create(pk_image *img, int w, int h, int c, int bits) {
    memset(img, 0, sizeof *img);
    if (w <= 0 || h <= 0 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || c < 1 || c > 4 ||
        (bits != 8 && bits != 16))
        return pk_error(PK_ERR_INVALID, "image_create: bad size %dx%dx%d at %d bits", w, h, c,
                        bits);
    size_t n = (size_t)w * (size_t)h * (size_t)c * (size_t)(bits / 8);
    img->data = calloc(n, 1);
    if (!img->data) return pk_error(PK_ERR_NOMEM, "image_create: cannot allocate %zu bytes", n);
    img->w = w;
    img->h = h;
    img->c = c;
    img->bits = bits;
    return PK_OK;
}

void image_free(pk_image *img) {
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

float image_get(const pk_image *img, int x, int y, int k) {
    size_t i = ((size_t)y * (size_t)img->w + (size_t)x) * (size_t)img->c + (size_t)k;
    if (img->bits == 16) return ((const uint16_t *)img->data)[i] / 65535.0f;
    return ((const uint8_t *)img->data)[i] / 255.0f;
}

/* ---- PNG ---- */

typedef struct png_ctx {
    jmp_buf jb;
    char msg[256];
} png_ctx;

static void png_on_error(png_structp p, png_const_charp msg) {
    png_ctx *ctx = png_get_error_ptr(p);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    longjmp(ctx->jb, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg) {
    (void)p;
    (void)msg; /* libpng warnings (e.g. bad iCCP) never stop a read; io/ does not print. */
}

/* Shared by png_read (want_pixels=1) and image_probe (0). */
static pk_status png_load(const char *path, pk_image *img, int want_pixels, int *pw, int *ph,
                          int *pc) {
    if (img) memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) return pk_error(PK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t sig[8];
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(f);
        return pk_error(PK_ERR_FORMAT, "%s: not a PNG (bad signature in the first 8 bytes)", path);
    }
    png_ctx ctx;
    ctx.msg[0] = 0;
    png_structp p =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_read_struct(&p, NULL, NULL);
        fclose(f);
        return pk_error(PK_ERR_NOMEM, "%s: libpng init failed", path);
    }
    png_bytep *volatile rows = NULL;
    pk_image *volatile out = img;
    if (setjmp(ctx.jb)) {
        free(rows);
        if (out) image_free(out);
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return pk_error(PK_ERR_FORMAT, "%s: bad PNG data: %s", path, ctx.msg);
    }
    png_init_io(p, f);
    png_set_sig_bytes(p, 8);
    png_set_user_limits(p, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    png_read_info(p, info);
    int color = png_get_color_type(p, info), depth = png_get_bit_depth(p, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(p);
    if (png_get_valid(p, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(p);
    if (depth == 16) png_set_swap(p); /* PNG is big-endian; we keep native little-endian */
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    int w = (int)png_get_image_width(p, info), h = (int)png_get_image_height(p, info);
    int c = png_get_channels(p, info), bits = png_get_bit_depth(p, info);
    if (pw) *pw = w;
    if (ph) *ph = h;
    if (pc) *pc = c;
    if (!want_pixels) {
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return PK_OK;
    }
    if (image_create(img, w, h, c, bits) != PK_OK) {
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return pk_error(PK_ERR_FORMAT, "%s: unsupported PNG layout %dx%d, %d channels, %d bits",
                        path, w, h, c, bits);
    }
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!rows) png_error(p, "out of memory");
    size_t stride = (size_t)w * (size_t)c * (size_t)(bits / 8);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)img->data + stride * (size_t)y;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    free(rows);
    png_destroy_read_struct(&p, &info, NULL);
    fclose(f);
    return PK_OK;
}

pk_status png_read(const char *path, pk_image *img) {
    return png_load(path, img, 1, NULL, NULL, NULL);
}

/* Writes img through p (its output already set): header, rows, end. The row table goes to
 * *rows so the caller's setjmp handler frees it when libpng fails; NULL again on return. */
static void png_put_image(png_structp p, png_infop info, const pk_image *img,
                          png_bytep *volatile *rows) {
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_set_IHDR(p, info, (png_uint_32)img->w, (png_uint_32)img->h, img->bits, types[img->c],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    if (img->bits == 16) png_set_swap(p);
    *rows = malloc(sizeof(png_bytep) * (size_t)img->h);
    if (!*rows) png_error(p, "out of memory");
    size_t stride = (size_t)img->w * (size_t)img->c * (size_t)(img->bits / 8);
    for (int y = 0; y < img->h; y++)
        (*rows)[y] = (png_bytep)img->data + stride * (size_t)y;
    png_write_image(p, *rows);
    png_write_end(p, NULL);
    free(*rows);
    *rows = NULL;
}

pk_status png_write(const char *path, const pk_image *img) {
    if (!img || !img->data || img->w <= 0 || img->h <= 0 || img->c < 1 || img->c > 4 ||
        (img->bits != 8 && img->bits != 16))
        return pk_error(PK_ERR_INVALID, "%s: png_write: invalid image", path);
    io_atomic a;
    PK_TRY(io_atomic_open(&a, path));
    png_ctx ctx;
    ctx.msg[0] = 0;
    png_structp p =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_write_struct(&p, NULL);
        io_atomic_abort(&a);
        return pk_error(PK_ERR_NOMEM, "%s: libpng init failed", path);
    }
    png_bytep *volatile rows = NULL;
    if (setjmp(ctx.jb)) {
        free(rows);
        png_destroy_write_struct(&p, &info);
        io_atomic_abort(&a);
        return pk_error(PK_ERR_IO, "%s: PNG write failed: %s", path, ctx.msg);
    }
    png_init_io(p, a.f);
    png_put_image(p, info, img, &rows);
    png_destroy_write_struct(&p, &info);
    return io_atomic_commit(&a);
}

/* The growing memory buffer png_encode writes into. */
typedef struct png_mem {
    uint8_t *buf;
    size_t len, cap;
} png_mem;

static void png_mem_write(png_structp p, png_bytep data, png_size_t n) {
    png_mem *m = png_get_io_ptr(p);
    if (m->len + n > m->cap) {
        size_t c = m->cap ? m->cap : 65536;
        while (c < m->len + n)
            c *= 2;
        uint8_t *nb = realloc(m->buf, c);
        if (!nb) png_error(p, "out of memory");
        m->buf = nb, m->cap = c;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
}

static void png_mem_flush(png_structp p) { (void)p; }

pk_status png_encode(const pk_image *img, uint8_t **out, size_t *len) {
    *out = NULL, *len = 0;
    if (!img || !img->data || img->w <= 0 || img->h <= 0 || img->c < 1 || img->c > 4 ||
        (img->bits != 8 && img->bits != 16))
        return pk_error(PK_ERR_INVALID, "png_encode: invalid image");
    png_ctx ctx;
    ctx.msg[0] = 0;
    png_structp p =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_write_struct(&p, NULL);
        return pk_error(PK_ERR_NOMEM, "png_encode: libpng init failed");
    }
    png_mem m = {0};
    png_bytep *volatile rows = NULL;
    if (setjmp(ctx.jb)) {
        free(rows);
        free(m.buf);
        png_destroy_write_struct(&p, &info);
        return pk_error(PK_ERR_IO, "png_encode: %s", ctx.msg);
    }
    png_set_write_fn(p, &m, png_mem_write, png_mem_flush);
    png_put_image(p, info, img, &rows);
    png_destroy_write_struct(&p, &info);
    *out = m.buf, *len = m.len;
    return PK_OK;
}

/* ---- JPEG ---- */

/* Reads a 16/32-bit TIFF integer in the byte order given by `le`. */
static uint32_t tiff_u(const uint8_t *p, int n, int le) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint32_t)p[i] << (8 * (le ? i : n - 1 - i));
    return v;
}

int jpeg_exif_orientation(const uint8_t *buf, size_t len) {
    if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8) return 1;
    size_t pos = 2;
    while (pos + 4 <= len) {
        if (buf[pos] != 0xFF) return 1;
        uint8_t marker = buf[pos + 1];
        if (marker == 0xDA || marker == 0xD9) return 1; /* scan data: no EXIF before it */
        size_t seg = (size_t)buf[pos + 2] << 8 | buf[pos + 3];
        if (seg < 2 || pos + 2 + seg > len) return 1;
        const uint8_t *s = buf + pos + 4;
        size_t n = seg - 2;
        if (marker == 0xE1 && n >= 14 && memcmp(s, "Exif\0\0", 6) == 0) {
            const uint8_t *t = s + 6;
            size_t tn = n - 6;
            int le = t[0] == 'I' && t[1] == 'I';
            if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
            uint32_t ifd = tiff_u(t + 4, 4, le);
            if (ifd > tn || tn - ifd < 2) return 1;
            uint32_t count = tiff_u(t + ifd, 2, le);
            for (uint32_t i = 0; i < count; i++) {
                size_t e = (size_t)ifd + 2 + (size_t)i * 12;
                if (e + 12 > tn) return 1;
                if (tiff_u(t + e, 2, le) == 0x0112) {
                    uint32_t v = tiff_u(t + e + 8, 2, le);
                    return v >= 1 && v <= 8 ? (int)v : 1;
                }
            }
            return 1;
        }
        pos += 2 + seg;
    }
    return 1;
}

/* Applies EXIF orientation o (2..8) so the image displays upright; replaces *img. */
static pk_status image_orient(pk_image *img, int o) {
    int sw = img->w, sh = img->h;
    int tr = o >= 5; /* orientations 5..8 swap width and height */
    pk_image out;
    PK_TRY(image_create(&out, tr ? sh : sw, tr ? sw : sh, img->c, img->bits));
    size_t bpp = (size_t)img->c * (size_t)(img->bits / 8);
    for (int y = 0; y < out.h; y++)
        for (int x = 0; x < out.w; x++) {
            int sx = x, sy = y;
            switch (o) {
            case 2: sx = sw - 1 - x; break;
            case 3: sx = sw - 1 - x, sy = sh - 1 - y; break;
            case 4: sy = sh - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = sh - 1 - x; break;
            case 7: sx = sw - 1 - y, sy = sh - 1 - x; break;
            case 8: sx = sw - 1 - y, sy = x; break;
            default: break;
            }
            memcpy((uint8_t *)out.data + ((size_t)y * out.w + x) * bpp,
                   (uint8_t *)img->data + ((size_t)sy * sw + sx) * bpp, bpp);
        }
    image_free(img);
    *img = out;
    return PK_OK;
}

pk_status jpeg_decode(const char *name, const uint8_t *buf, size_t len, pk_image *img) {
    memset(img, 0, sizeof *img);
    if (len < 3 || buf[0] != 0xFF || buf[1] != 0xD8 || buf[2] != 0xFF)
        return pk_error(PK_ERR_FORMAT, "%s: not a JPEG (no FF D8 FF start-of-image marker)", name);
    tjhandle tj = tjInitDecompress();
    if (!tj) return pk_error(PK_ERR_NOMEM, "%s: tjInitDecompress failed", name);
    int w, h, subsamp, cs;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &subsamp, &cs) != 0) {
        pk_status s = pk_error(PK_ERR_FORMAT, "%s: bad JPEG header: %s", name, tjGetErrorStr2(tj));
        tjDestroy(tj);
        return s;
    }
    int gray = cs == TJCS_GRAY;
    pk_status s = image_create(img, w, h, gray ? 1 : 3, 8);
    if (s != PK_OK) {
        tjDestroy(tj);
        return pk_error(PK_ERR_FORMAT, "%s: unsupported JPEG size %dx%d", name, w, h);
    }
    /* Warnings are tolerated (phone JPEGs often carry stray bytes), except a premature end of
     * data: a truncated file must not decode as a grey-padded image. */
    if (tjDecompress2(tj, buf, (unsigned long)len, img->data, w, 0, h, gray ? TJPF_GRAY : TJPF_RGB,
                      TJFLAG_ACCURATEDCT) != 0 &&
        (tjGetErrorCode(tj) == TJERR_FATAL || strstr(tjGetErrorStr2(tj), "Premature end"))) {
        s = pk_error(PK_ERR_FORMAT, "%s: corrupt JPEG data: %s", name, tjGetErrorStr2(tj));
        tjDestroy(tj);
        image_free(img);
        return s;
    }
    tjDestroy(tj);
    int o = jpeg_exif_orientation(buf, len);
    if (o != 1) {
        s = image_orient(img, o);
        if (s != PK_OK) image_free(img);
    }
    return s;
}

pk_status jpeg_read(const char *path, pk_image *img) {
    memset(img, 0, sizeof *img);
    uint8_t *buf;
    size_t len;
    PK_TRY(io_read_file(path, &buf, &len));
    pk_status s = jpeg_decode(path, buf, len, img);
    free(buf);
    return s;
}

/* Reads the first bytes of path to tell PNG (1) from JPEG (2); 0 for neither. */
static int image_kind(const char *path, pk_status *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = pk_error(PK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    uint8_t m[8] = {0};
    size_t n = fread(m, 1, 8, f);
    fclose(f);
    if (n >= 8 && png_sig_cmp(m, 0, 8) == 0) return 1;
    if (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF) return 2;
    *err = pk_error(PK_ERR_FORMAT, "%s: neither PNG nor JPEG (unknown magic bytes)", path);
    return 0;
}

pk_status image_read(const char *path, pk_image *img) {
    memset(img, 0, sizeof *img);
    pk_status err = PK_OK;
    int k = image_kind(path, &err);
    if (k == 1) return png_read(path, img);
    if (k == 2) return jpeg_read(path, img);
    return err;
}

pk_status image_probe(const char *path, int *w, int *h, int *c) {
    pk_status err = PK_OK;
    int k = image_kind(path, &err);
    if (k == 1) return png_load(path, NULL, 0, w, h, c);
    if (k != 2) return err;
    uint8_t *buf;
    size_t len;
    PK_TRY(io_read_file(path, &buf, &len));
    tjhandle tj = tjInitDecompress();
    int sub, cs;
    pk_status s = PK_OK;
    if (!tj || tjDecompressHeader3(tj, buf, (unsigned long)len, w, h, &sub, &cs) != 0) {
        s = pk_error(PK_ERR_FORMAT, "%s: bad JPEG header", path);
    } else {
        *c = cs == TJCS_GRAY ? 1 : 3;
        if (jpeg_exif_orientation(buf, len) >= 5) {
            int t = *w;
            *w = *h;
            *h = t;
        }
    }
    if (tj) tjDestroy(tj);
    free(buf);
    return s;
}

/* ---- resampling ---- */

static void image_set(pk_image *img, size_t i, float v) {
    if (v < 0) v = 0;
    if (v > 1) v = 1;
    if (img->bits == 16)
        ((uint16_t *)img->data)[i] = (uint16_t)(v * 65535.0f + 0.5f);
    else
        ((uint8_t *)img->data)[i] = (uint8_t)(v * 255.0f + 0.5f);
}

static float image_at(const pk_image *img, size_t i) {
    if (img->bits == 16) return ((const uint16_t *)img->data)[i] / 65535.0f;
    return ((const uint8_t *)img->data)[i] / 255.0f;
}

pk_status image_downscale(const pk_image *src, int factor, pk_image *dst) {
    memset(dst, 0, sizeof *dst);
    if (factor < 1 || src->w / factor < 1 || src->h / factor < 1)
        return pk_error(PK_ERR_INVALID, "image_downscale: factor %d too large for %dx%d", factor,
                        src->w, src->h);
    PK_TRY(image_create(dst, src->w / factor, src->h / factor, src->c, src->bits));
    int c = src->c;
    /* Integer sums are exact: 8x8 blocks of 16-bit samples stay far below 2^32. */
    uint64_t area = (uint64_t)factor * (uint64_t)factor;
    for (int y = 0; y < dst->h; y++)
        for (int x = 0; x < dst->w; x++)
            for (int k = 0; k < c; k++) {
                uint64_t sum = 0;
                for (int dy = 0; dy < factor; dy++) {
                    size_t row = ((size_t)(y * factor + dy) * (size_t)src->w) * (size_t)c;
                    for (int dx = 0; dx < factor; dx++) {
                        size_t i = row + (size_t)(x * factor + dx) * (size_t)c + (size_t)k;
                        sum += src->bits == 16 ? ((const uint16_t *)src->data)[i]
                                               : ((const uint8_t *)src->data)[i];
                    }
                }
                size_t o = ((size_t)y * (size_t)dst->w + (size_t)x) * (size_t)c + (size_t)k;
                uint64_t v = (sum + area / 2) / area; /* round half up */
                if (dst->bits == 16)
                    ((uint16_t *)dst->data)[o] = (uint16_t)v;
                else
                    ((uint8_t *)dst->data)[o] = (uint8_t)v;
            }
    return PK_OK;
}

pk_status image_resize(const pk_image *src, int w, int h, pk_image *dst) {
    memset(dst, 0, sizeof *dst);
    PK_TRY(image_create(dst, w, h, src->c, src->bits));
    int c = src->c;
    float sx = (float)src->w / (float)w, sy = (float)src->h / (float)h;
    for (int y = 0; y < h; y++) {
        float fy = ((float)y + 0.5f) * sy - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy;
        if (y0 > src->h - 1) y0 = src->h - 1;
        int y1 = y0 + 1 < src->h ? y0 + 1 : y0;
        float ty = fy - (float)y0;
        for (int x = 0; x < w; x++) {
            float fx = ((float)x + 0.5f) * sx - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx;
            if (x0 > src->w - 1) x0 = src->w - 1;
            int x1 = x0 + 1 < src->w ? x0 + 1 : x0;
            float tx = fx - (float)x0;
            for (int k = 0; k < c; k++) {
                float a = image_get(src, x0, y0, k), b = image_get(src, x1, y0, k);
                float d = image_get(src, x0, y1, k), e = image_get(src, x1, y1, k);
                float v = (a * (1 - tx) + b * tx) * (1 - ty) + (d * (1 - tx) + e * tx) * ty;
                image_set(dst, ((size_t)y * (size_t)w + (size_t)x) * (size_t)c + (size_t)k, v);
            }
        }
    }
    return PK_OK;
}

pk_status image_crop(const pk_image *src, int x0, int y0, int w, int h, pk_image *dst) {
    memset(dst, 0, sizeof *dst);
    if (x0 < 0 || y0 < 0 || w < 1 || h < 1 || x0 + w > src->w || y0 + h > src->h)
        return pk_error(PK_ERR_INVALID, "image_crop: window %d,%d %dx%d outside %dx%d", x0, y0, w,
                        h, src->w, src->h);
    PK_TRY(image_create(dst, w, h, src->c, src->bits));
    size_t bpp = (size_t)src->c * (size_t)(src->bits / 8);
    for (int y = 0; y < h; y++)
        memcpy((uint8_t *)dst->data + (size_t)y * (size_t)w * bpp,
               (const uint8_t *)src->data + ((size_t)(y0 + y) * (size_t)src->w + (size_t)x0) * bpp,
               (size_t)w * bpp);
    return PK_OK;
}

pk_status image_convert_channels(const pk_image *src, int want, pk_image *dst) {
    memset(dst, 0, sizeof *dst);
    if (want != 1 && want != 3)
        return pk_error(PK_ERR_INVALID, "image_convert_channels: want 1 or 3, got %d", want);
    PK_TRY(image_create(dst, src->w, src->h, want, src->bits));
    size_t n = (size_t)src->w * (size_t)src->h;
    for (size_t i = 0; i < n; i++) {
        size_t s = i * (size_t)src->c;
        float r, g, b;
        if (src->c >= 3) {
            r = image_at(src, s), g = image_at(src, s + 1), b = image_at(src, s + 2);
        } else {
            r = g = b = image_at(src, s);
        }
        if (want == 1) {
            image_set(dst, i, 0.299f * r + 0.587f * g + 0.114f * b);
        } else {
            image_set(dst, i * 3, r);
            image_set(dst, i * 3 + 1, g);
            image_set(dst, i * 3 + 2, b);
        }
    }
    return PK_OK;
}

void image_to_f32_chw(const pk_image *img, float *out) {
    size_t hw = (size_t)img->w * (size_t)img->h;
    for (size_t i = 0; i < hw; i++)
        for (int k = 0; k < img->c; k++)
            out[(size_t)k * hw + i] = image_at(img, i * (size_t)img->c + (size_t)k);
}
