/* checkpoint.c - checkpoint metadata encoding/decoding on top of safetensors, and the
 * ckpt-<step>.safetensors folder helpers (latest, keep-last-K). */
#include "checkpoint.h"
#include "io.h"
#include "io_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

pk_status checkpoint_write(const char *path, const st_write_tensor *tensors, int n,
                           const ckpt_meta *meta) {
    cJSON *m = cJSON_CreateObject();
    cJSON *opts = meta->options_json ? cJSON_Parse(meta->options_json) : cJSON_CreateObject();
    if (!m || !opts || !cJSON_IsObject(opts)) {
        cJSON_Delete(m);
        cJSON_Delete(opts);
        return pk_error(PK_ERR_INVALID, "%s: checkpoint options are not a JSON object", path);
    }
    cJSON_AddNumberToObject(m, "format_version", pk_io_format_version());
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, meta->step);
    cJSON_AddStringToObject(m, "step", buf);
    cJSON *rng = cJSON_AddArrayToObject(m, "rng");
    for (int i = 0; i < CKPT_RNG_WORDS && rng; i++) {
        snprintf(buf, sizeof buf, "%016" PRIx64, meta->rng[i]);
        cJSON_AddItemToArray(rng, cJSON_CreateString(buf));
    }
    cJSON_AddItemToObject(m, "options", opts);
    char *text = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    if (!text) return pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
    const char *key = "polyak";
    const char *value = text;
    pk_status s = safetensors_write(path, tensors, n, &key, &value, 1);
    free(text);
    return s;
}

void checkpoint_close(ckpt_file *ck) {
    if (!ck) return;
    safetensors_close(&ck->st);
    free(ck->options_json);
    memset(ck, 0, sizeof *ck);
}

/* Parses a decimal (step) or hex (rng) string fully into *out. */
static int parse_u64(const char *s, int base, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

pk_status checkpoint_open(const char *path, ckpt_file *ck) {
    memset(ck, 0, sizeof *ck);
    PK_TRY(safetensors_open(path, &ck->st));
    const char *text = safetensors_meta(&ck->st, "polyak");
    if (!text) {
        checkpoint_close(ck);
        return pk_error(PK_ERR_FORMAT,
                        "%s: not a Polyak checkpoint: __metadata__ has no \"polyak\" entry", path);
    }
    cJSON *m = cJSON_Parse(text);
    pk_status s = PK_OK;
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(m, "format_version");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(m, "step");
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(m, "rng");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(m, "options");
    uint64_t u;
    if (!cJSON_IsObject(m))
        s = pk_error(PK_ERR_FORMAT, "%s: metadata \"polyak\" is not a JSON object", path);
    else if (!cJSON_IsNumber(ver) || ver->valuedouble < 1 ||
             ver->valuedouble > pk_io_format_version() ||
             floor(ver->valuedouble) != ver->valuedouble)
        s = pk_error(PK_ERR_FORMAT, "%s: metadata field format_version: expected 1..%d", path,
                     pk_io_format_version());
    else if (!cJSON_IsString(step) || !parse_u64(step->valuestring, 10, &u) || u > INT64_MAX)
        s = pk_error(PK_ERR_FORMAT, "%s: metadata field step: expected a decimal string", path);
    else if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != CKPT_RNG_WORDS)
        s = pk_error(PK_ERR_FORMAT, "%s: metadata field rng: expected %d hex strings", path,
                     CKPT_RNG_WORDS);
    else if (!cJSON_IsObject(opts))
        s = pk_error(PK_ERR_FORMAT, "%s: metadata field options: expected an object", path);
    if (s == PK_OK) {
        ck->format_version = (int)ver->valuedouble;
        ck->step = (int64_t)u;
        for (int i = 0; i < CKPT_RNG_WORDS && s == PK_OK; i++) {
            const cJSON *w = cJSON_GetArrayItem(rng, i);
            if (!cJSON_IsString(w) || !parse_u64(w->valuestring, 16, &ck->rng[i]))
                s = pk_error(PK_ERR_FORMAT, "%s: metadata field rng[%d]: expected a hex string",
                             path, i);
        }
    }
    if (s == PK_OK) {
        ck->options_json = cJSON_PrintUnformatted(opts);
        if (!ck->options_json) s = pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
    }
    cJSON_Delete(m);
    if (s != PK_OK) checkpoint_close(ck);
    return s;
}

void checkpoint_path(const char *dir, int64_t step, char *buf, size_t n) {
    snprintf(buf, n, "%s/ckpt-%" PRId64 ".safetensors", dir, step);
}

/* Returns the step of a ckpt-<step>.safetensors name, or -1 for any other name. */
static int64_t ckpt_name_step(const char *name) {
    const char *pre = "ckpt-", *suf = ".safetensors";
    size_t n = strlen(name), ls = strlen(suf);
    if (strncmp(name, pre, 5) != 0 || n <= 5 + ls || strcmp(name + n - ls, suf) != 0) return -1;
    int64_t v = 0;
    for (const char *p = name + 5; p < name + n - ls; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static int i64_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Lists the steps of all checkpoints in dir, newest first. */
static pk_status ckpt_list(const char *dir, int64_t **steps, int *count) {
    *steps = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return pk_error(PK_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t st = ckpt_name_step(e->d_name);
        if (st < 0) continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *n2 = realloc(*steps, sizeof(int64_t) * (size_t)cap);
            if (!n2) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                return pk_error(PK_ERR_NOMEM, "%s: out of memory", dir);
            }
            *steps = n2;
        }
        (*steps)[(*count)++] = st;
    }
    closedir(d);
    if (*count) qsort(*steps, (size_t)*count, sizeof(int64_t), i64_desc);
    return PK_OK;
}

pk_status checkpoint_keep_last(const char *dir, int keep) {
    if (keep < 1) return pk_error(PK_ERR_INVALID, "checkpoint_keep_last: keep must be >= 1");
    int64_t *steps;
    int n;
    PK_TRY(ckpt_list(dir, &steps, &n));
    pk_status s = PK_OK;
    for (int i = keep; i < n; i++) {
        char path[4096];
        checkpoint_path(dir, steps[i], path, sizeof path);
        if (remove(path) != 0 && s == PK_OK)
            s = pk_error(PK_ERR_IO, "%s: cannot delete: %s", path, strerror(errno));
    }
    free(steps);
    return s;
}

pk_status checkpoint_find_latest(const char *dir, int64_t *step) {
    int64_t *steps;
    int n;
    *step = -1;
    PK_TRY(ckpt_list(dir, &steps, &n));
    if (n > 0) *step = steps[0];
    free(steps);
    return PK_OK;
}
