/* ctp_data.c - the pair readers (JSON Lines, COCO captions, CSV), task numbering, caption
 * groups, the seeded held-out split and image loading for `polyak ctp`. */
#define _GNU_SOURCE /* qsort_r, strndup */
#include "ctp_data.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "io_util.h"
#include "rng.h"

void ctp_pairs_free(ctp_pairs *ps) {
    for (int i = 0; i < ps->n; i++)
        free(ps->p[i].image), free(ps->p[i].caption);
    free(ps->p);
    for (int t = 0; t < ps->ntasks; t++)
        free(ps->task_names[t]);
    memset(ps, 0, sizeof *ps);
}

/* ---- building ---- */

typedef struct builder {
    ctp_pairs *ps;
    int cap;
    const char *file; /* for messages */
    char *dir;        /* images are relative to it */
    const char *default_task;
    const ctp_read_options *o;
} builder;

static int task_index(builder *b, const char *name, const char *where) {
    ctp_pairs *ps = b->ps;
    for (int t = 0; t < ps->ntasks; t++)
        if (strcmp(ps->task_names[t], name) == 0) return t;
    if (b->o && b->o->tasks) {
        pk_error(PK_ERR_FORMAT, "%s: %s: unknown task '%s' (not among the %d tasks given)", b->file,
                 where, name, b->o->ntasks);
        return -1;
    }
    if (ps->ntasks == CTP_MAX_TASKS) {
        pk_error(PK_ERR_FORMAT, "%s: %s: task '%s' is task %d; at most %d tasks are supported",
                 b->file, where, name, ps->ntasks + 1, CTP_MAX_TASKS);
        return -1;
    }
    ps->task_names[ps->ntasks] = io_strdup(name);
    return ps->ntasks++;
}

/* Adds a pair; `split` -1 unknown, 0 train, 1 test. `where` names the line for messages. */
static pk_status add_pair(builder *b, const char *image, const char *caption, const char *task,
                          int split, const char *where) {
    if (!image || !*image)
        return pk_error(PK_ERR_FORMAT, "%s: %s: no image path (field \"image\")", b->file, where);
    if (!caption) return pk_error(PK_ERR_FORMAT, "%s: %s: no caption", b->file, where);
    const char *c = caption;
    while (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n')
        c++;
    if (!*c) return pk_error(PK_ERR_FORMAT, "%s: %s: empty caption", b->file, where);
    if (task && !*task) return pk_error(PK_ERR_FORMAT, "%s: %s: empty task name", b->file, where);
    char *path = image[0] == '/' ? io_strdup(image) : io_path_join(b->dir, image);
    if (!path) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    if (!io_is_file(path)) {
        pk_status s =
            pk_error(PK_ERR_IO, "%s: %s: image '%s' does not exist", b->file, where, path);
        free(path);
        return s;
    }
    int t = task_index(b, task ? task : b->default_task, where);
    if (t < 0) {
        free(path);
        return PK_ERR_FORMAT;
    }
    ctp_pairs *ps = b->ps;
    if (ps->n == b->cap) {
        int nc = b->cap ? 2 * b->cap : 256;
        ctp_pair *np = realloc(ps->p, sizeof *np * (size_t)nc);
        if (!np) {
            free(path);
            return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
        }
        ps->p = np, b->cap = nc;
    }
    ps->p[ps->n++] = (ctp_pair){
        .image = path, .caption = io_strdup(caption), .task = t, .test = split == 1, .text = split};
    return PK_OK;
}

static int parse_split(const char *s) {
    if (!s) return -1;
    if (strcmp(s, "train") == 0) return 0;
    if (strcmp(s, "test") == 0 || strcmp(s, "val") == 0) return 1;
    return -2;
}

/* ---- JSON Lines ---- */

static pk_status read_jsonl(builder *b, const char *text, const char *task_field) {
    int line = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        line++;
        char where[32];
        snprintf(where, sizeof where, "line %d", line);
        const char *q = p;
        while (q < p + len && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q < p + len) {
            cJSON *j = cJSON_ParseWithLength(p, len);
            if (!j || !cJSON_IsObject(j)) {
                cJSON_Delete(j);
                return pk_error(PK_ERR_FORMAT, "%s: %s: not a JSON object", b->file, where);
            }
            cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image");
            cJSON *cap = cJSON_GetObjectItemCaseSensitive(j, "caption");
            cJSON *task = cJSON_GetObjectItemCaseSensitive(j, task_field);
            cJSON *split = cJSON_GetObjectItemCaseSensitive(j, "split");
            pk_status s = PK_OK;
            if (!cJSON_IsString(img))
                s = pk_error(PK_ERR_FORMAT, "%s: %s: \"image\" must be a string path", b->file,
                             where);
            else if (task && !cJSON_IsString(task))
                s = pk_error(PK_ERR_FORMAT, "%s: %s: \"%s\" must be a string", b->file, where,
                             task_field);
            else if (split && (!cJSON_IsString(split) || parse_split(split->valuestring) < -1))
                s = pk_error(PK_ERR_FORMAT, "%s: %s: \"split\" must be \"train\" or \"test\"",
                             b->file, where);
            else if (cJSON_IsString(cap))
                s = add_pair(b, img->valuestring, cap->valuestring, task ? task->valuestring : NULL,
                             split ? parse_split(split->valuestring) : -1, where);
            else if (cJSON_IsArray(cap) && cJSON_GetArraySize(cap) > 0) {
                cJSON *c;
                cJSON_ArrayForEach(c, cap) {
                    if (s != PK_OK) break;
                    if (!cJSON_IsString(c))
                        s = pk_error(PK_ERR_FORMAT, "%s: %s: \"caption\" array holds a non-string",
                                     b->file, where);
                    else
                        s = add_pair(b, img->valuestring, c->valuestring,
                                     task ? task->valuestring : NULL,
                                     split ? parse_split(split->valuestring) : -1, where);
                }
            } else
                s = pk_error(PK_ERR_FORMAT,
                             "%s: %s: \"caption\" must be a string or a non-empty array of strings",
                             b->file, where);
            cJSON_Delete(j);
            PK_TRY(s);
        }
        p += len;
        if (*p == '\n') p++;
    }
    return PK_OK;
}

/* ---- COCO captions ---- */

static pk_status read_coco(builder *b, const char *text, const char *task_field) {
    cJSON *j = cJSON_Parse(text);
    if (!j) return pk_error(PK_ERR_FORMAT, "%s: not valid JSON", b->file);
    cJSON *images = cJSON_GetObjectItemCaseSensitive(j, "images");
    cJSON *anns = cJSON_GetObjectItemCaseSensitive(j, "annotations");
    pk_status s = PK_OK;
    if (!cJSON_IsArray(images) || !cJSON_IsArray(anns))
        s = pk_error(PK_ERR_FORMAT,
                     "%s: a COCO captions file needs \"images\" and "
                     "\"annotations\" arrays",
                     b->file);
    int ni = s == PK_OK ? cJSON_GetArraySize(images) : 0;
    double *ids = calloc((size_t)(ni ? ni : 1), sizeof(double));
    cJSON **objs = calloc((size_t)(ni ? ni : 1), sizeof(cJSON *));
    if (!ids || !objs) s = pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    int k = 0;
    cJSON *it;
    if (s == PK_OK) cJSON_ArrayForEach(it, images) {
            cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(it, "file_name");
            if (!cJSON_IsNumber(id) || !cJSON_IsString(fn)) {
                s = pk_error(PK_ERR_FORMAT,
                             "%s: images[%d]: needs a number \"id\" and a string \"file_name\"",
                             b->file, k);
                break;
            }
            ids[k] = id->valuedouble, objs[k] = it, k++;
        }
    k = 0;
    if (s == PK_OK) cJSON_ArrayForEach(it, anns) {
            char where[48];
            snprintf(where, sizeof where, "annotations[%d]", k++);
            cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "image_id");
            cJSON *cap = cJSON_GetObjectItemCaseSensitive(it, "caption");
            if (!cJSON_IsNumber(id) || !cJSON_IsString(cap)) {
                s = pk_error(PK_ERR_FORMAT,
                             "%s: %s: needs a number \"image_id\" and a string \"caption\"",
                             b->file, where);
                break;
            }
            int found = -1;
            for (int i = 0; i < ni && found < 0; i++)
                if (ids[i] == id->valuedouble) found = i;
            if (found < 0) {
                s = pk_error(PK_ERR_FORMAT, "%s: %s: image_id %.0f is in no entry of \"images\"",
                             b->file, where, id->valuedouble);
                break;
            }
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(objs[found], "file_name");
            cJSON *task = cJSON_GetObjectItemCaseSensitive(objs[found], task_field);
            cJSON *split = cJSON_GetObjectItemCaseSensitive(objs[found], "split");
            if (task && !cJSON_IsString(task)) {
                s = pk_error(PK_ERR_FORMAT, "%s: images entry of id %.0f: \"%s\" must be a string",
                             b->file, id->valuedouble, task_field);
                break;
            }
            int sp = split && cJSON_IsString(split) ? parse_split(split->valuestring) : -1;
            s = add_pair(b, fn->valuestring, cap->valuestring, task ? task->valuestring : NULL,
                         sp < -1 ? -1 : sp, where);
            if (s != PK_OK) break;
        }
    free(ids), free(objs);
    cJSON_Delete(j);
    return s;
}

/* ---- CSV ---- */

/* Parses one CSV record starting at *pp into at most 4 fields (malloc'd); advances *pp past it
 * and counts the newlines it spans in *lines. Returns the field count, -1 on bad quoting. */
static int csv_record(const char **pp, char **fields, int *lines) {
    const char *p = *pp;
    int nf = 0;
    size_t cap = strlen(p) + 1;
    for (;;) {
        char *f = malloc(cap);
        if (!f) return -1;
        size_t n = 0;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p) {
                    free(f);
                    return -1;
                }
                if (*p == '"' && p[1] == '"')
                    f[n++] = '"', p += 2;
                else if (*p == '"') {
                    p++;
                    break;
                } else {
                    if (*p == '\n') (*lines)++;
                    f[n++] = *p++;
                }
            }
        } else
            while (*p && *p != ',' && *p != '\n' && *p != '\r')
                f[n++] = *p++;
        f[n] = 0;
        if (nf < 4)
            fields[nf] = f;
        else
            free(f);
        nf++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\r') p++;
        if (*p && *p != '\n') return -1;
        if (*p == '\n') p++;
        break;
    }
    *pp = p;
    return nf;
}

static pk_status read_csv(builder *b, const char *text) {
    const char *p = text;
    int line = 1;
    bool first = true;
    while (*p) {
        int start = line;
        char *f[4] = {0};
        int nf = csv_record(&p, f, &line);
        line++;
        char where[32];
        snprintf(where, sizeof where, "line %d", start);
        pk_status s = PK_OK;
        if (nf < 0)
            s = pk_error(PK_ERR_FORMAT, "%s: %s: unbalanced quotes or text after a quoted field",
                         b->file, where);
        else if (nf == 1 && !*f[0]) {
            /* an empty line */
        } else if (first && strcmp(f[0], "image") == 0) {
            /* the header row */
        } else if (nf < 2 || nf > 4)
            s = pk_error(PK_ERR_FORMAT, "%s: %s: %d fields; expected image,caption[,task[,split]]",
                         b->file, where, nf);
        else {
            int sp = nf == 4 ? parse_split(f[3]) : -1;
            if (nf == 4 && sp < 0)
                s = pk_error(PK_ERR_FORMAT, "%s: %s: split '%s' is not train or test", b->file,
                             where, f[3]);
            else
                s = add_pair(b, f[0], f[1], nf >= 3 ? f[2] : NULL, sp, where);
        }
        first = false;
        for (int i = 0; i < 4; i++)
            free(f[i]);
        PK_TRY(s);
    }
    return PK_OK;
}

/* ---- groups and split ---- */

static int cmp_caption(const void *a, const void *b, void *ps_) {
    const ctp_pairs *ps = ps_;
    const ctp_pair *x = &ps->p[*(const int *)a], *y = &ps->p[*(const int *)b];
    if (x->task != y->task) return x->task - y->task;
    int c = strcmp(x->caption, y->caption);
    return c ? c : *(const int *)a - *(const int *)b;
}

/* Numbers caption groups (equal text within a task) in order of first appearance and draws the
 * split where the file gave none (whole groups). */
static pk_status finish(builder *b, const ctp_read_options *o) {
    ctp_pairs *ps = b->ps;
    if (ps->n == 0) return pk_error(PK_ERR_FORMAT, "%s: no image-caption pairs", b->file);
    int *ord = malloc(sizeof(int) * (size_t)ps->n);
    int *grp = malloc(sizeof(int) * (size_t)ps->n);
    int *given = malloc(sizeof(int) * (size_t)ps->n);
    if (!ord || !grp || !given) {
        free(ord), free(grp), free(given);
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    }
    for (int i = 0; i < ps->n; i++)
        ord[i] = i, given[i] = ps->p[i].text; /* add_pair parked the split there */
    qsort_r(ord, (size_t)ps->n, sizeof(int), cmp_caption, ps);
    /* group ids by first appearance: mark each sorted run with its smallest pair index */
    for (int a = 0; a < ps->n;) {
        int e = a + 1;
        while (e < ps->n && ps->p[ord[e]].task == ps->p[ord[a]].task &&
               strcmp(ps->p[ord[e]].caption, ps->p[ord[a]].caption) == 0)
            e++;
        for (int k = a; k < e; k++)
            grp[ord[k]] = ord[a]; /* ord is sorted by index within the run */
        a = e;
    }
    int ng = 0;
    pk_status s = PK_OK;
    for (int i = 0; i < ps->n && s == PK_OK; i++) {
        if (grp[i] == i)
            ps->p[i].text = ng++;
        else /* a caption may be in both splits when the file says so (COCO-style) */
            ps->p[i].text = ps->p[grp[i]].text;
    }
    ps->ntexts = ng;
    if (s == PK_OK) {
        bool any_given = false, all_given = true;
        for (int i = 0; i < ps->n; i++)
            any_given |= given[i] >= 0, all_given &= given[i] >= 0;
        if (any_given && !all_given)
            s = pk_error(PK_ERR_FORMAT, "%s: some pairs name a split and some do not", b->file);
        else if (!any_given) {
            /* a seeded draw of round(fraction * groups) caption groups per task */
            double frac = o && o->test_fraction > 0 ? o->test_fraction : 0.2;
            bool *held = calloc((size_t)ng, sizeof(bool));
            int32_t *gl = malloc(sizeof(int32_t) * (size_t)ng);
            int *gtask = malloc(sizeof(int) * (size_t)ng);
            if (!held || !gl || !gtask) s = pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
            for (int i = 0; s == PK_OK && i < ps->n; i++)
                gtask[ps->p[i].text] = ps->p[i].task;
            for (int t = 0; s == PK_OK && t < ps->ntasks; t++) {
                int k = 0;
                for (int g = 0; g < ng; g++)
                    if (gtask[g] == t) gl[k++] = g;
                pk_rng r = {(o ? o->seed : 0) * 0x9E3779B97F4A7C15ull + 0x7E57 + (uint64_t)t};
                pk_rng_shuffle(&r, gl, k);
                int nh = (int)(frac * k + 0.5);
                for (int i = 0; i < nh; i++)
                    held[gl[i]] = true;
            }
            for (int i = 0; s == PK_OK && i < ps->n; i++)
                ps->p[i].test = held[ps->p[i].text];
            free(held), free(gl), free(gtask);
        }
    }
    free(ord), free(grp), free(given);
    return s;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

pk_status ctp_pairs_read(const char *path, const ctp_read_options *o, ctp_pairs *out) {
    memset(out, 0, sizeof *out);
    char *file = NULL;
    if (io_is_dir(path)) {
        const char *names[] = {"pairs.jsonl", "captions.json", "captions_train.json", "pairs.csv"};
        for (int i = 0; i < 4 && !file; i++) {
            char *f = io_path_join(path, names[i]);
            if (f && io_is_file(f))
                file = f;
            else
                free(f);
        }
        if (!file)
            return pk_error(PK_ERR_IO,
                            "%s: no pairs.jsonl, captions.json, captions_train.json or pairs.csv "
                            "in this folder",
                            path);
    } else
        file = io_strdup(path);
    uint8_t *buf = NULL;
    size_t len = 0;
    pk_status s = io_read_file(file, &buf, &len);
    if (s != PK_OK) {
        free(file);
        return s;
    }
    char *text = realloc(buf, len + 1);
    if (!text) {
        free(buf), free(file);
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    }
    text[len] = 0;
    builder b = {.ps = out, .file = file, .o = o};
    if (o && o->tasks) {
        if (o->ntasks < 1 || o->ntasks > CTP_MAX_TASKS) {
            free(text), free(file);
            return pk_error(PK_ERR_INVALID, "ctp: %d tasks given (1..%d)", o->ntasks,
                            CTP_MAX_TASKS);
        }
        for (int t = 0; t < o->ntasks; t++)
            out->task_names[t] = io_strdup(o->tasks[t]);
        out->ntasks = o->ntasks;
    }
    char *slash = strrchr(file, '/');
    b.dir = slash ? strndup(file, (size_t)(slash - file)) : io_strdup(".");
    const char *base = slash ? slash + 1 : file;
    char deft[256];
    snprintf(deft, sizeof deft, "%s", base);
    char *dot = strrchr(deft, '.');
    if (dot && dot != deft) *dot = 0;
    b.default_task = o && o->default_task ? o->default_task : deft;
    const char *tf = o && o->task_field ? o->task_field : "task";
    if (strlen(text) != len)
        s = pk_error(PK_ERR_FORMAT, "%s: holds a NUL byte; not a text manifest", file);
    else if (ends_with(file, ".csv"))
        s = read_csv(&b, text);
    else if (ends_with(file, ".json"))
        s = read_coco(&b, text, tf);
    else
        s = read_jsonl(&b, text, tf);
    if (s == PK_OK) s = finish(&b, o);
    free(text), free(b.dir), free(file);
    if (s != PK_OK) ctp_pairs_free(out);
    return s;
}

pk_status ctp_pairs_order_tasks(ctp_pairs *ps, const int *order) {
    int inv[CTP_MAX_TASKS];
    bool seen[CTP_MAX_TASKS] = {0};
    for (int k = 0; k < ps->ntasks; k++) {
        if (order[k] < 0 || order[k] >= ps->ntasks || seen[order[k]])
            return pk_error(PK_ERR_INVALID, "ctp: task order is not a permutation of 0..%d",
                            ps->ntasks - 1);
        seen[order[k]] = true;
        inv[order[k]] = k;
    }
    char *names[CTP_MAX_TASKS];
    for (int k = 0; k < ps->ntasks; k++)
        names[k] = ps->task_names[order[k]];
    memcpy(ps->task_names, names, sizeof(char *) * (size_t)ps->ntasks);
    for (int i = 0; i < ps->n; i++)
        ps->p[i].task = inv[ps->p[i].task];
    return PK_OK;
}

/* ---- images ---- */

pk_status ctp_image_load(const char *path, int size, float *out) {
    pk_image im = {0}, rgb = {0}, small = {0};
    PK_TRY(image_read(path, &im));
    pk_status s = image_create(&rgb, im.w, im.h, 3, 8);
    if (s == PK_OK) {
        uint8_t *d = rgb.data;
        for (int y = 0; y < im.h; y++)
            for (int x = 0; x < im.w; x++) {
                float v[3], a = 1.0f;
                if (im.c >= 3)
                    for (int k = 0; k < 3; k++)
                        v[k] = image_get(&im, x, y, k);
                else
                    v[0] = v[1] = v[2] = image_get(&im, x, y, 0);
                if (im.c == 4 || im.c == 2) a = image_get(&im, x, y, im.c - 1);
                for (int k = 0; k < 3; k++) {
                    float c = v[k] * a + (1.0f - a); /* over white */
                    d[((size_t)y * (size_t)im.w + (size_t)x) * 3 + (size_t)k] =
                        (uint8_t)(c * 255.0f + 0.5f);
                }
            }
        if (im.w == size && im.h == size)
            small = rgb, rgb = (pk_image){0};
        else if (im.w == im.h && im.w % size == 0)
            s = image_downscale(&rgb, im.w / size, &small);
        else
            s = image_resize(&rgb, size, size, &small);
    }
    if (s == PK_OK) image_to_f32_chw(&small, out);
    image_free(&im), image_free(&rgb), image_free(&small);
    if (s != PK_OK) return pk_error(s, "%s: %s", path, polyak_error());
    return PK_OK;
}

/* ---- the pictures alone ---- */

bool ctp_is_manifest(const char *path) {
    if (!path) return false;
    if (!io_is_dir(path))
        return io_is_file(path) &&
               (ends_with(path, ".jsonl") || ends_with(path, ".csv") || ends_with(path, ".json"));
    const char *names[] = {"pairs.jsonl", "captions.json", "captions_train.json", "pairs.csv"};
    bool found = false;
    for (int i = 0; i < 4 && !found; i++) {
        char *f = io_path_join(path, names[i]);
        found = f && io_is_file(f);
        free(f);
    }
    return found;
}

static int cmp_image(const void *a, const void *b, void *ps_) {
    const ctp_pairs *ps = ps_;
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(ps->p[i].image, ps->p[j].image);
    return c ? c : i - j;
}

/* Fills ds with the pictures i of ps where pick[i] is 1 (n of them). */
static pk_status pictures(const ctp_pairs *ps, const signed char *pick, int n, int size,
                          pk_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    size_t hw = (size_t)size * (size_t)size;
    ds->n = n, ds->h = ds->w = size, ds->c = 3;
    ds->num_classes = ps->ntasks;
    ds->images = malloc(3 * hw * (size_t)(n > 0 ? n : 1));
    ds->labels = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    ds->class_names = calloc((size_t)ps->ntasks, sizeof(char *));
    float *chw = malloc(sizeof(float) * 3 * hw);
    pk_status s = ds->images && ds->labels && ds->class_names && chw
                      ? PK_OK
                      : pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (int t = 0; t < ps->ntasks && s == PK_OK; t++)
        if (!(ds->class_names[t] = io_strdup(ps->task_names[t])))
            s = pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    int k = 0;
    for (int i = 0; i < ps->n && s == PK_OK; i++) {
        if (!pick[i]) continue;
        s = ctp_image_load(ps->p[i].image, size, chw);
        uint8_t *dst = ds->images + 3 * hw * (size_t)k;
        for (size_t j = 0; j < hw && s == PK_OK; j++)
            for (int ch = 0; ch < 3; ch++)
                dst[j * 3 + (size_t)ch] = (uint8_t)lrintf(chw[(size_t)ch * hw + j] * 255.0f);
        ds->labels[k++] = ps->p[i].task;
    }
    free(chw);
    if (s != PK_OK) dataset_free(ds);
    return s;
}

pk_status ctp_pairs_images(const char *path, const ctp_read_options *o, int size, pk_dataset *train,
                           pk_dataset *test) {
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (size < 1 || size > 4096)
        return pk_error(PK_ERR_INVALID, "ctp: picture size %d (expected 1..4096)", size);
    ctp_pairs ps;
    PK_TRY(ctp_pairs_read(path, o, &ps));
    int *ord = malloc(sizeof(int) * (size_t)ps.n);
    signed char *tr = calloc((size_t)ps.n, 1), *te = calloc((size_t)ps.n, 1);
    pk_status s = ord && tr && te ? PK_OK : pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    int ntr = 0, nte = 0;
    if (s == PK_OK) {
        for (int i = 0; i < ps.n; i++)
            ord[i] = i;
        qsort_r(ord, (size_t)ps.n, sizeof(int), cmp_image, &ps);
        /* each run of one path: its first pair stands for the picture; it is held out only
         * when every pair of it is */
        for (int a = 0; a < ps.n;) {
            int e = a + 1;
            bool held = ps.p[ord[a]].test;
            for (; e < ps.n && strcmp(ps.p[ord[e]].image, ps.p[ord[a]].image) == 0; e++)
                if (!ps.p[ord[e]].test) held = false;
            if (held)
                te[ord[a]] = 1, nte++;
            else
                tr[ord[a]] = 1, ntr++;
            a = e;
        }
        if (ntr == 0 || nte == 0)
            s = pk_error(PK_ERR_FORMAT,
                         "%s: %d training and %d held-out pictures; both must be > 0", path, ntr,
                         nte);
    }
    if (s == PK_OK) s = pictures(&ps, tr, ntr, size, train);
    if (s == PK_OK) s = pictures(&ps, te, nte, size, test);
    if (s != PK_OK) dataset_free(train);
    free(ord), free(tr), free(te);
    ctp_pairs_free(&ps);
    return s;
}
