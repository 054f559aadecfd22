/* checkpoint.h - training checkpoints: a safetensors file whose __metadata__ entry "polyak"
 * holds a JSON string {format_version, step, rng, options}; written atomically (tmp in the same
 * folder, fsync, rename, fsync folder), with a keep-last-K helper for ckpt-<step>.safetensors. */
#ifndef POLYAK_CHECKPOINT_H
#define POLYAK_CHECKPOINT_H
#include "safetensors.h"

#define CKPT_RNG_WORDS 4

/* What a checkpoint records besides its tensors. */
typedef struct ckpt_meta {
    int64_t step;
    uint64_t rng[CKPT_RNG_WORDS]; /* RNG state words (stored as hex strings: exact) */
    const char *options_json;     /* a JSON object text, or NULL for {} */
} ckpt_meta;

/* An opened checkpoint: its tensors plus the decoded metadata. */
typedef struct ckpt_file {
    st_file st;
    int format_version;
    int64_t step;
    uint64_t rng[CKPT_RNG_WORDS];
    char *options_json; /* re-serialised options object */
} ckpt_file;

/* Writes tensors + metadata to path atomically: a crash leaves the old file or the new one. */
pk_status checkpoint_write(const char *path, const st_write_tensor *tensors, int n,
                           const ckpt_meta *meta);
/* Opens a checkpoint, validating its safetensors header and its metadata. */
pk_status checkpoint_open(const char *path, ckpt_file *ck);
/* Closes a checkpoint (accepts NULL). */
void checkpoint_close(ckpt_file *ck);
/* Formats `<dir>/ckpt-<step>.safetensors` into buf (size n). */
void checkpoint_path(const char *dir, int64_t step, char *buf, size_t n);
/* Deletes all but the newest `keep` ckpt-<step>.safetensors files in dir (by step). */
pk_status checkpoint_keep_last(const char *dir, int keep);
/* Finds the ckpt-<step>.safetensors with the largest step in dir; *step = -1 when none. */
pk_status checkpoint_find_latest(const char *dir, int64_t *step);

#endif
