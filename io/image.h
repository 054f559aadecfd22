/* image.h - host images: PNG read/write (8/16-bit gray, gray+alpha, RGB, RGBA), JPEG read with
 * EXIF orientation, integer area downscale, bilinear resize and conversion to planar f32.
 * Decoding is libpng's and libjpeg-turbo's; this module owns layout and checks. */
#ifndef POLYAK_IMAGE_H
#define POLYAK_IMAGE_H
#include "status.h"

#include <stddef.h>
#include <stdint.h>

/* Row-major interleaved (H, W, C) pixels: uint8_t when bits == 8, uint16_t when bits == 16. */
typedef struct pk_image {
    int w, h, c; /* c: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
    int bits;    /* 8 or 16 */
    void *data;
} pk_image;

/* Allocates a zeroed w×h×c image of `bits` bits per sample. */
pk_status image_create(pk_image *img, int w, int h, int c, int bits);
/* Frees an image's pixels (accepts NULL and empty images). */
void image_free(pk_image *img);
/* Returns sample k of pixel (x, y) as a value in [0, 1]. */
float image_get(const pk_image *img, int x, int y, int k);

/* Reads a PNG file, keeping its bit depth (8 or 16) and channel count; palette becomes RGB(A). */
pk_status png_read(const char *path, pk_image *img);
/* Writes img as a PNG (atomically: no partial file is left on failure). */
pk_status png_write(const char *path, const pk_image *img);
/* Encodes an image as PNG into a new malloc'd buffer *out of *len bytes (caller frees). */
pk_status png_encode(const pk_image *img, uint8_t **out, size_t *len);
/* Reads a JPEG file (8-bit gray or RGB) and applies its EXIF orientation. */
pk_status jpeg_read(const char *path, pk_image *img);
/* Reads a JPEG from memory; `name` is used in messages. */
pk_status jpeg_decode(const char *name, const uint8_t *buf, size_t len, pk_image *img);
/* Reads a PNG or JPEG, chosen by the file's magic bytes. */
pk_status image_read(const char *path, pk_image *img);
/* Reads only the size and channels of a PNG or JPEG (after EXIF orientation). */
pk_status image_probe(const char *path, int *w, int *h, int *c);
/* Returns the EXIF orientation (1..8) of a JPEG in memory, 1 when absent or unreadable. */
int jpeg_exif_orientation(const uint8_t *buf, size_t len);

/* Averages factor×factor blocks (area filter); output is floor(w/f) × floor(h/f). */
pk_status image_downscale(const pk_image *src, int factor, pk_image *dst);
/* Bilinear resize (pixel centres aligned) to w×h, same channels and bits. */
pk_status image_resize(const pk_image *src, int w, int h, pk_image *dst);
/* Copies the central w×h window (or the window at x0,y0) into dst. */
pk_status image_crop(const pk_image *src, int x0, int y0, int w, int h, pk_image *dst);
/* Converts to c=want (1 or 3; alpha dropped, gray replicated, RGB averaged by Rec.601). */
pk_status image_convert_channels(const pk_image *src, int want, pk_image *dst);
/* Writes planar (C, H, W) floats in [0, 1] into out (c*h*w floats). */
void image_to_f32_chw(const pk_image *img, float *out);

#endif
