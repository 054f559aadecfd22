/* fuzz_colmap_text.c - libFuzzer harness for COLMAP text models: the input is split at its
 * first two NUL bytes into cameras.txt, images.txt and points3D.txt. */
#include "scene.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 3);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = buf[size + 2] = 0;
    char *parts[3] = {buf, NULL, NULL};
    for (int k = 1; k < 3; k++)
        parts[k] = parts[k - 1] + strlen(parts[k - 1]) + 1;
    if (parts[2] > buf + size + 2) parts[2] = buf + size + 2;
    pk_scene s;
    if (colmap_parse_text("fuzz", parts[0], parts[1], parts[2], "/img", &s) == PK_OK)
        scene_free(&s);
    free(buf);
    return 0;
}
