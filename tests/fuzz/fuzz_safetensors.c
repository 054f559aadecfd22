/* fuzz_safetensors.c - libFuzzer harness: any bytes through the safetensors header checks, then
 * every accepted tensor is read in full (ASan catches any offset the checks let through). */
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy, exactly sized, so a read past the end is a heap overflow ASan reports. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    st_file f;
    if (safetensors_parse("fuzz.safetensors", copy, size, &f) == PK_OK) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < f.n; i++) {
            const st_tensor *t = &f.tensors[i];
            for (size_t b = 0; b < t->nbytes; b++)
                sink ^= ((const uint8_t *)t->data)[b];
            if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
                float *out = malloc(st_tensor_numel(t) * sizeof(float) + 1);
                if (out) st_tensor_to_f32(t, out);
                free(out);
            }
        }
        (void)safetensors_find(&f, "x");
        (void)safetensors_meta(&f, "polyak");
        (void)sink;
        safetensors_close(&f);
    }
    free(copy);
    return 0;
}
