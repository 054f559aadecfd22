/* fuzz_transforms.c - libFuzzer harness: any bytes as transforms.json (no file probing). */
#include "scene.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pk_scene s;
    if (transforms_parse("fuzz.json", (const char *)data, size, "/base", 0, &s) == PK_OK)
        scene_free(&s);
    return 0;
}
