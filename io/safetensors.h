/* safetensors.h - the safetensors format: memory-mapped read with strict header checks, write
 * (atomic), and F16/BF16 -> F32 conversion. Checkpoints (checkpoint.h) build on this. */
#ifndef POLYAK_SAFETENSORS_H
#define POLYAK_SAFETENSORS_H
#include "status.h"

#include <stddef.h>
#include <stdint.h>

typedef enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_I32, ST_I64, ST_U8 } st_dtype;

#define ST_MAX_DIMS 8

/* One tensor: `data` points into the mapped file (not necessarily aligned). */
typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
} st_tensor;

/* An open safetensors file; tensors are in header order. */
typedef struct st_file {
    int n;
    st_tensor *tensors;
    char **meta_keys, **meta_values; /* __metadata__ string entries */
    int n_meta;
    void *map; /* mmap'd file (NULL when parsed from caller memory) */
    size_t map_len;
} st_file;

/* A tensor to write: host data in the given dtype, densely packed. */
typedef struct st_write_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} st_write_tensor;

/* Returns the dtype's name as the header spells it ("F32", ...). */
const char *st_dtype_name(st_dtype d);
/* Returns the dtype's size in bytes. */
size_t st_dtype_size(st_dtype d);

/* Maps a file and checks its header; `*f` is valid until safetensors_close. */
pk_status safetensors_open(const char *path, st_file *f);
/* Parses a safetensors image held in caller memory (must outlive f); `name` is for messages. */
pk_status safetensors_parse(const char *name, const uint8_t *buf, size_t len, st_file *f);
/* Unmaps and frees everything (accepts NULL). */
void safetensors_close(st_file *f);
/* Finds a tensor by name (NULL when absent). */
const st_tensor *safetensors_find(const st_file *f, const char *name);
/* Finds a __metadata__ value by key (NULL when absent). */
const char *safetensors_meta(const st_file *f, const char *key);
/* Number of elements of a tensor (product of its shape). */
size_t st_tensor_numel(const st_tensor *t);
/* Converts an F32/F16/BF16 tensor into out (numel floats). */
pk_status st_tensor_to_f32(const st_tensor *t, float *out);
/* Writes tensors (and optional string metadata pairs) atomically to path. */
pk_status safetensors_write(const char *path, const st_write_tensor *tensors, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta);
/* Converts an IEEE half to float (exact). */
float st_f16_to_f32(uint16_t h);
/* Converts a bfloat16 to float (exact). */
float st_bf16_to_f32(uint16_t h);
/* Converts float to IEEE half, rounding to nearest even (overflow gives infinity). */
uint16_t st_f32_to_f16(float f);
/* Converts float to bfloat16, rounding to nearest even. */
uint16_t st_f32_to_bf16(float f);

#endif
