/* bench_json.c - the --json output of `polyak bench`, built with cJSON. */
#include "bench_json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_json {
    char *path;
    cJSON *list;
};

bench_json *bench_json_open(const char *path) {
    if (!path) return NULL;
    bench_json *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->path = malloc(strlen(path) + 1);
    strcpy(j->path, path);
    j->list = cJSON_CreateArray();
    return j;
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

void bench_json_add(bench_json *j, const char *name, const char *backend, double ms, double rate,
                    const char *unit, const char *peer, double peer_rate, double ratio) {
    if (!j) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "backend", backend);
    add_num(o, "ms", ms);
    add_num(o, "rate", rate);
    cJSON_AddStringToObject(o, "unit", unit);
    if (peer && isfinite(peer_rate)) {
        cJSON_AddStringToObject(o, "peer", peer);
        add_num(o, "peer_rate", peer_rate);
        add_num(o, "ratio", ratio);
    } else {
        cJSON_AddNullToObject(o, "peer");
        cJSON_AddNullToObject(o, "peer_rate");
        cJSON_AddNullToObject(o, "ratio");
    }
    cJSON_AddItemToArray(j->list, o);
}

bool bench_json_close(bench_json *j) {
    if (!j) return true;
    char *text = cJSON_Print(j->list);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", j->path);
    FILE *f = fopen(tmp, "w");
    bool ok = f && text && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, j->path) == 0;
    if (!ok) remove(tmp);
    free(text);
    cJSON_Delete(j->list);
    free(j->path);
    free(j);
    return ok;
}
