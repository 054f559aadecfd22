/* fuzz_jpeg.c - libFuzzer harness: any bytes through the EXIF orientation parser and the
 * JPEG decoder (orientation applied on success). */
#include "image.h"

#include <turbojpeg.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)jpeg_exif_orientation(data, size);
    if (size > 200000) return 0; /* keep decoding time per input bounded */
    /* Decoding a header that claims 65536x65536 is correct but slow and memory-bound: the
     * harness looks for parser bugs, so it skips pictures above 4 megapixels. */
    tjhandle tj = tjInitDecompress();
    int w = 0, h = 0, sub, cs;
    int ok = tj && tjDecompressHeader3(tj, data, (unsigned long)size, &w, &h, &sub, &cs) == 0;
    if (tj) tjDestroy(tj);
    if (ok && (long long)w * h > 4000000) return 0;
    pk_image img;
    if (jpeg_decode("fuzz.jpg", data, size, &img) == PK_OK) image_free(&img);
    return 0;
}
