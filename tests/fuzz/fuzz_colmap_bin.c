/* fuzz_colmap_bin.c - libFuzzer harness for COLMAP binary models. Input layout: u32 LE length
 * of cameras.bin, u32 LE length of images.bin, then the two files, then points3D.bin. */
#include "scene.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *dup_exact(const uint8_t *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    if (c && n) memcpy(c, p, n);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    size_t lc =
        (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    size_t li =
        (size_t)data[4] | (size_t)data[5] << 8 | (size_t)data[6] << 16 | (size_t)data[7] << 24;
    size -= 8, data += 8;
    if (lc > size) lc = size;
    if (li > size - lc) li = size - lc;
    size_t lp = size - lc - li;
    uint8_t *c = dup_exact(data, lc), *i = dup_exact(data + lc, li),
            *p = dup_exact(data + lc + li, lp);
    pk_scene s;
    if (c && i && p && colmap_parse_binary("fuzz", c, lc, i, li, p, lp, "/img", &s) == PK_OK) {
        scene_split_every(&s, 3);
        (void)scene_count_test(&s);
        scene_free(&s);
    }
    free(c);
    free(i);
    free(p);
    return 0;
}
