/* fuzz_ply.c - libFuzzer harness: any bytes through the PLY parser and both field mappings. */
#include "ply.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ply_table t;
    if (ply_parse("fuzz.ply", data, size, &t) != PK_OK) return 0;
    pk_gaussians g;
    if (ply_table_to_gaussians("fuzz.ply", &t, &g) == PK_OK) gaussians_free(&g);
    float *xyz;
    uint8_t *rgb;
    if (ply_table_to_points("fuzz.ply", &t, &xyz, &rgb) == PK_OK) {
        free(xyz);
        free(rgb);
    }
    ply_table_free(&t);
    return 0;
}
