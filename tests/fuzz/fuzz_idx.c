/* fuzz_idx.c - libFuzzer harness: bytes through gzip detection/inflation, the IDX parser and
 * the CIFAR-10/100 record parser. */
#include "dataset.h"
#include "io_util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    size_t len = size;
    if (io_gunzip_maybe("fuzz.idx", &buf, &len, (size_t)64 << 20) == PK_OK) {
        idx_array a;
        if (idx_parse("fuzz.idx", buf, len, &a) == PK_OK) idx_free(&a);
        for (int c100 = 0; c100 < 2; c100++) {
            pk_dataset ds;
            memset(&ds, 0, sizeof ds);
            cifar_parse("fuzz.bin", buf, len, c100, &ds);
            dataset_free(&ds);
        }
    }
    free(buf);
    return 0;
}
