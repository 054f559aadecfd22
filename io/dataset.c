/* dataset.c - IDX and CIFAR parsers, the image-folder loader and the class-incremental
 * splitter. Pixels are decoded into one (n, h, w, c) allocation per dataset. */
#include "dataset.h"
#include "image.h"
#include "io_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Refuse decompressed IDX files above 4 GiB: the largest MNIST-family file is ~50 MB. */
#define IDX_MAX_BYTES ((size_t)4 << 30)

void idx_free(idx_array *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

void dataset_free(pk_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free(ds->coarse);
    if (ds->class_names)
        for (int i = 0; i < ds->num_classes; i++)
            free(ds->class_names[i]);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}

pk_status idx_parse(const char *name, const uint8_t *buf, size_t len, idx_array *a) {
    memset(a, 0, sizeof *a);
    if (len < 4)
        return pk_error(PK_ERR_FORMAT, "%s: truncated: %zu bytes, the IDX magic needs 4", name,
                        len);
    if (buf[0] != 0 || buf[1] != 0)
        return pk_error(PK_ERR_FORMAT,
                        "%s: bad IDX magic %02x %02x %02x %02x (expected 00 00 <type> <ndim>)",
                        name, buf[0], buf[1], buf[2], buf[3]);
    if (buf[2] != 0x08)
        return pk_error(PK_ERR_UNSUPPORTED,
                        "%s: IDX element type 0x%02x not supported (expected 0x08, unsigned byte)",
                        name, buf[2]);
    int nd = buf[3];
    if (nd < 1 || nd > 8)
        return pk_error(PK_ERR_FORMAT, "%s: IDX rank %d, expected 1..8", name, nd);
    if (len < 4 + 4 * (size_t)nd)
        return pk_error(PK_ERR_FORMAT, "%s: truncated: header of a rank-%d IDX needs %zu bytes",
                        name, nd, 4 + 4 * (size_t)nd);
    size_t total = 1;
    int ovf = 0;
    for (int i = 0; i < nd; i++) {
        const uint8_t *p = buf + 4 + 4 * i;
        uint32_t d = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        a->dims[i] = d;
        if (!io_mul_ok(total, d, &total)) ovf = 1;
    }
    a->ndim = nd;
    size_t have = len - 4 - 4 * (size_t)nd;
    if (ovf || total != have) {
        pk_status s = pk_error(PK_ERR_FORMAT,
                               "%s: IDX header dims promise %s%zu bytes of data but the file holds "
                               "%zu",
                               name, ovf ? "over " : "", total, have);
        a->ndim = 0;
        return s;
    }
    a->data = malloc(total ? total : 1);
    if (!a->data) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    memcpy(a->data, buf + 4 + 4 * nd, total);
    a->len = total;
    return PK_OK;
}

pk_status idx_read(const char *path, idx_array *a) {
    memset(a, 0, sizeof *a);
    uint8_t *buf;
    size_t len;
    PK_TRY(io_read_file(path, &buf, &len));
    pk_status s = io_gunzip_maybe(path, &buf, &len, IDX_MAX_BYTES);
    if (s == PK_OK) s = idx_parse(path, buf, len, a);
    free(buf);
    return s;
}

pk_status idx_load(const char *images_path, const char *labels_path, pk_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    idx_array im, lb;
    PK_TRY(idx_read(images_path, &im));
    pk_status s = idx_read(labels_path, &lb);
    if (s != PK_OK) {
        idx_free(&im);
        return s;
    }
    if (im.ndim != 3 || im.dims[1] < 1 || im.dims[2] < 1 || im.dims[0] > INT32_MAX)
        s = pk_error(PK_ERR_FORMAT, "%s: images must be a rank-3 IDX (N, H, W), got rank %d",
                     images_path, im.ndim);
    else if (lb.ndim != 1 || lb.dims[0] != im.dims[0])
        s = pk_error(PK_ERR_FORMAT, "%s: labels must be rank-1 with %lld entries (one per image)",
                     labels_path, (long long)im.dims[0]);
    if (s == PK_OK) {
        ds->n = (int)im.dims[0];
        ds->h = (int)im.dims[1];
        ds->w = (int)im.dims[2];
        ds->c = 1;
        ds->images = im.data;
        im.data = NULL;
        ds->labels = malloc(sizeof(int32_t) * ((size_t)ds->n + 1));
        if (!ds->labels) s = pk_error(PK_ERR_NOMEM, "%s: out of memory", labels_path);
        for (int i = 0; i < ds->n && s == PK_OK; i++) {
            ds->labels[i] = lb.data[i];
            if (ds->labels[i] + 1 > ds->num_classes) ds->num_classes = ds->labels[i] + 1;
        }
    }
    idx_free(&im);
    idx_free(&lb);
    if (s != PK_OK) dataset_free(ds);
    return s;
}

pk_status cifar_parse(const char *name, const uint8_t *buf, size_t len, int cifar100,
                      pk_dataset *ds) {
    size_t rec = 3072 + (cifar100 ? 2 : 1);
    if (len == 0 || len % rec != 0)
        return pk_error(PK_ERR_FORMAT,
                        "%s: size %zu is not a positive multiple of the %zu-byte CIFAR-%d record "
                        "(truncated or wrong variant)",
                        name, len, rec, cifar100 ? 100 : 10);
    size_t add = len / rec;
    if (add > (size_t)(INT32_MAX - ds->n))
        return pk_error(PK_ERR_FORMAT, "%s: too many records", name);
    size_t total = (size_t)ds->n + add;
    uint8_t *im = realloc(ds->images, total * 3072);
    if (im) ds->images = im;
    int32_t *lb = im ? realloc(ds->labels, total * sizeof(int32_t)) : NULL;
    if (lb) ds->labels = lb;
    int32_t *co = lb && cifar100 ? realloc(ds->coarse, total * sizeof(int32_t)) : NULL;
    if (co) ds->coarse = co;
    if (!im || !lb || (cifar100 && !co)) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    int maxl = cifar100 ? 100 : 10;
    for (size_t r = 0; r < add; r++) {
        const uint8_t *p = buf + r * rec;
        int fine = cifar100 ? p[1] : p[0];
        if (fine >= maxl || (cifar100 && p[0] >= 20))
            return pk_error(PK_ERR_FORMAT, "%s: record %zu: label %d outside 0..%d", name, r,
                            cifar100 && p[0] >= 20 ? p[0] : fine,
                            cifar100 && p[0] >= 20 ? 19 : maxl - 1);
        size_t i = (size_t)ds->n;
        ds->labels[i] = fine;
        if (cifar100) ds->coarse[i] = p[0];
        const uint8_t *px = p + (cifar100 ? 2 : 1);
        uint8_t *o = ds->images + i * 3072;
        for (int k = 0; k < 3; k++) /* planar R, G, B planes of 32x32 -> HWC */
            for (int j = 0; j < 1024; j++)
                o[j * 3 + k] = px[k * 1024 + j];
        ds->n++;
    }
    ds->h = ds->w = 32;
    ds->c = 3;
    ds->num_classes = maxl;
    return PK_OK;
}

pk_status cifar_load(const char *const *paths, int npaths, int cifar100, pk_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (npaths < 1) return pk_error(PK_ERR_INVALID, "cifar_load: no files given");
    for (int i = 0; i < npaths; i++) {
        uint8_t *buf;
        size_t len;
        pk_status s = io_read_file(paths[i], &buf, &len);
        if (s == PK_OK) s = cifar_parse(paths[i], buf, len, cifar100, ds);
        free(buf);
        if (s != PK_OK) {
            dataset_free(ds);
            return s;
        }
    }
    return PK_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the entries of dir (excluding dot files) that are folders (want_dir) or files whose
 * names end in an image extension, sorted by name. */
static pk_status list_dir(const char *dir, int want_dir, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return pk_error(PK_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    int cap = 0;
    struct dirent *e;
    pk_status s = PK_OK;
    while (s == PK_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = io_path_join(dir, e->d_name);
        if (!p) {
            s = pk_error(PK_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        int ok;
        if (want_dir) {
            ok = io_is_dir(p);
        } else {
            const char *dot = strrchr(e->d_name, '.');
            ok =
                io_is_file(p) && dot &&
                (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
        }
        free(p);
        if (!ok) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 32;
            char **n2 = realloc(*out, sizeof(char *) * (size_t)cap);
            if (!n2) {
                s = pk_error(PK_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            *out = n2;
        }
        if (!((*out)[*n] = io_strdup(e->d_name)))
            s = PK_ERR_NOMEM;
        else
            (*n)++;
    }
    closedir(d);
    if (s != PK_OK) {
        for (int i = 0; i < *n; i++)
            free((*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
        return s;
    }
    if (*n) qsort(*out, (size_t)*n, sizeof(char *), cmp_str);
    return PK_OK;
}

/* Resizes (shorter side to fit, bilinear) and centre-crops to w×h, 3 channels, 8 bits. */
static pk_status fit_image(pk_image *img, int w, int h, pk_image *out) {
    pk_image rgb, rs;
    pk_image tmp = *img;
    pk_status s = PK_OK;
    if (img->bits == 16) {
        s = image_create(&tmp, img->w, img->h, img->c, 8);
        size_t n = (size_t)img->w * img->h * img->c;
        for (size_t k = 0; k < n && s == PK_OK; k++)
            ((uint8_t *)tmp.data)[k] =
                (uint8_t)((((uint16_t *)img->data)[k] * 255u + 32767u) / 65535u);
        if (s != PK_OK) return s;
    }
    s = image_convert_channels(&tmp, 3, &rgb);
    if (tmp.data != img->data) image_free(&tmp);
    if (s != PK_OK) return s;
    /* scale so that both sides cover the target, then crop the centre */
    double sc = (double)w / rgb.w > (double)h / rgb.h ? (double)w / rgb.w : (double)h / rgb.h;
    int rw = (int)(rgb.w * sc + 0.5), rh = (int)(rgb.h * sc + 0.5);
    if (rw < w) rw = w;
    if (rh < h) rh = h;
    s = image_resize(&rgb, rw, rh, &rs);
    image_free(&rgb);
    if (s != PK_OK) return s;
    s = image_crop(&rs, (rw - w) / 2, (rh - h) / 2, w, h, out);
    image_free(&rs);
    return s;
}

pk_status imagefolder_load(const char *root, const folder_options *opts, pk_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (!opts || opts->w < 1 || opts->h < 1 || opts->w > 4096 || opts->h > 4096)
        return pk_error(PK_ERR_INVALID, "%s: imagefolder_load needs a target w and h in 1..4096",
                        root);
    char **classes;
    int nc;
    PK_TRY(list_dir(root, 1, &classes, &nc));
    if (nc == 0) {
        free(classes);
        return pk_error(PK_ERR_FORMAT, "%s: no class subfolders", root);
    }
    ds->class_names = classes;
    ds->num_classes = nc;
    ds->w = opts->w;
    ds->h = opts->h;
    ds->c = 3;
    size_t per = (size_t)opts->w * opts->h * 3;
    int cap = 0;
    pk_status s = PK_OK;
    for (int k = 0; k < nc && s == PK_OK; k++) {
        char *cdir = io_path_join(root, classes[k]);
        char **files = NULL;
        int nf = 0;
        s = cdir ? list_dir(cdir, 0, &files, &nf) : PK_ERR_NOMEM;
        for (int f = 0; f < nf && s == PK_OK; f++) {
            char *path = io_path_join(cdir, files[f]);
            pk_image img, fit;
            s = path ? image_read(path, &img) : PK_ERR_NOMEM;
            if (s == PK_OK) {
                s = fit_image(&img, opts->w, opts->h, &fit);
                image_free(&img);
            }
            if (s == PK_OK && ds->n == cap) {
                cap = cap ? cap * 2 : 64;
                uint8_t *i2 = realloc(ds->images, per * (size_t)cap);
                if (i2) ds->images = i2;
                int32_t *l2 = i2 ? realloc(ds->labels, sizeof(int32_t) * (size_t)cap) : NULL;
                if (l2) ds->labels = l2;
                if (!l2) s = pk_error(PK_ERR_NOMEM, "%s: out of memory", root);
            }
            if (s == PK_OK) {
                memcpy(ds->images + per * (size_t)ds->n, fit.data, per);
                ds->labels[ds->n++] = k;
                image_free(&fit);
            }
            free(path);
        }
        for (int f = 0; f < nf; f++)
            free(files[f]);
        free(files);
        free(cdir);
    }
    if (s == PK_OK && ds->n == 0) s = pk_error(PK_ERR_FORMAT, "%s: no PNG or JPEG images", root);
    if (s != PK_OK) dataset_free(ds);
    return s;
}

void dataset_count_classes(const pk_dataset *ds, int *counts) {
    memset(counts, 0, sizeof(int) * (size_t)ds->num_classes);
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] >= 0 && ds->labels[i] < ds->num_classes) counts[ds->labels[i]]++;
}

void dataset_sample_f32_chw(const pk_dataset *ds, int i, float *out) {
    size_t hw = (size_t)ds->h * ds->w;
    const uint8_t *p = ds->images + (size_t)i * hw * ds->c;
    for (size_t j = 0; j < hw; j++)
        for (int k = 0; k < ds->c; k++)
            out[(size_t)k * hw + j] = p[j * ds->c + k] / 255.0f;
}

void class_split_free(class_split *sp) {
    if (!sp) return;
    free(sp->order);
    free(sp->start);
    free(sp->task_of);
    memset(sp, 0, sizeof *sp);
}

/* splitmix64: a small, well-mixed generator so a seed gives the same order everywhere. */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

pk_status split_class_incremental(int num_classes, int tasks, const int *order, uint64_t seed,
                                  class_split *sp) {
    memset(sp, 0, sizeof *sp);
    if (num_classes < 1 || tasks < 1 || tasks > num_classes)
        return pk_error(PK_ERR_INVALID, "split_class_incremental: %d tasks over %d classes", tasks,
                        num_classes);
    sp->order = malloc(sizeof(int) * (size_t)num_classes);
    sp->task_of = malloc(sizeof(int) * (size_t)num_classes);
    sp->start = malloc(sizeof(int) * ((size_t)tasks + 1));
    if (!sp->order || !sp->task_of || !sp->start) {
        class_split_free(sp);
        return pk_error(PK_ERR_NOMEM, "split_class_incremental: out of memory");
    }
    sp->tasks = tasks;
    sp->num_classes = num_classes;
    for (int i = 0; i < num_classes; i++)
        sp->task_of[i] = -1;
    if (order) {
        for (int i = 0; i < num_classes; i++) {
            if (order[i] < 0 || order[i] >= num_classes || sp->task_of[order[i]] != -1) {
                class_split_free(sp);
                return pk_error(PK_ERR_INVALID,
                                "split_class_incremental: order[%d] = %d repeats a class or is "
                                "outside 0..%d",
                                i, order ? order[i] : 0, num_classes - 1);
            }
            sp->task_of[order[i]] = 0;
            sp->order[i] = order[i];
        }
    } else {
        for (int i = 0; i < num_classes; i++)
            sp->order[i] = i;
        if (seed) {
            uint64_t st = seed;
            for (int i = num_classes - 1; i > 0; i--) { /* Fisher-Yates */
                int j = (int)(splitmix64(&st) % (uint64_t)(i + 1));
                int t = sp->order[i];
                sp->order[i] = sp->order[j];
                sp->order[j] = t;
            }
        }
    }
    int base = num_classes / tasks, extra = num_classes % tasks;
    sp->start[0] = 0;
    for (int t = 0; t < tasks; t++) {
        sp->start[t + 1] = sp->start[t] + base + (t < extra);
        for (int i = sp->start[t]; i < sp->start[t + 1]; i++)
            sp->task_of[sp->order[i]] = t;
    }
    return PK_OK;
}

pk_status dataset_task_indices(const pk_dataset *ds, const class_split *sp, int t, int **idx,
                               int *n) {
    *idx = NULL;
    *n = 0;
    if (t < 0 || t >= sp->tasks)
        return pk_error(PK_ERR_INVALID, "dataset_task_indices: task %d of %d", t, sp->tasks);
    *idx = malloc(sizeof(int) * ((size_t)ds->n + 1));
    if (!*idx) return pk_error(PK_ERR_NOMEM, "dataset_task_indices: out of memory");
    for (int i = 0; i < ds->n; i++) {
        int l = ds->labels[i];
        if (l >= 0 && l < sp->num_classes && sp->task_of[l] == t) (*idx)[(*n)++] = i;
    }
    return PK_OK;
}
