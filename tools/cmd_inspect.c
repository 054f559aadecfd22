/* cmd_inspect.c - `polyak inspect`: recognises images, PLY (3DGS or points), safetensors and
 * checkpoints, IDX and CIFAR files, scenes (COLMAP, transforms.json), image-class folders and
 * checkpoint folders, and prints what each holds. All reading goes through io/. */
#include "cmd_inspect.h"
#include "io.h"
#include "io_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How many tensors/cameras/classes to list before summarising the rest. */
#define INSPECT_LIST_MAX 40

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void print_counts(const int *counts, int n, char *const *names) {
    for (int k = 0; k < n; k++) {
        if (k == INSPECT_LIST_MAX) {
            printf("  ... %d more classes\n", n - k);
            break;
        }
        if (names)
            printf("  class %d (%s): %d\n", k, names[k], counts[k]);
        else
            printf("  class %d: %d\n", k, counts[k]);
    }
}

static pk_status inspect_image(const char *path) {
    pk_image img;
    PK_TRY(image_read(path, &img));
    uint8_t head[4] = {0};
    FILE *f = fopen(path, "rb");
    if (f) {
        if (fread(head, 1, 4, f) != 4) head[0] = 0;
        fclose(f);
    }
    printf("%s: %s image, %d x %d, %d channel%s, %d bits\n", path, head[0] == 0x89 ? "PNG" : "JPEG",
           img.w, img.h, img.c, img.c == 1 ? "" : "s", img.bits);
    image_free(&img);
    return PK_OK;
}

static pk_status inspect_ply(const char *path) {
    ply_table t;
    PK_TRY(ply_read(path, &t));
    pk_gaussians g;
    pk_status s = PK_OK;
    if (ply_find(&t, "opacity") >= 0 && ply_find(&t, "rot_0") >= 0) {
        s = ply_table_to_gaussians(path, &t, &g);
        if (s == PK_OK) {
            printf("%s: 3DGS PLY (%s), %zu Gaussians, SH degree %d, %d properties\n", path,
                   t.binary ? "binary little-endian" : "ASCII", g.n, g.sh_degree, t.nprops);
            gaussians_free(&g);
        }
    } else {
        printf("%s: PLY point cloud (%s), %zu vertices, properties:", path,
               t.binary ? "binary little-endian" : "ASCII", t.n);
        for (int i = 0; i < t.nprops; i++)
            printf(" %s", t.names[i]);
        printf("\n");
    }
    ply_table_free(&t);
    return s;
}

static void print_tensors(const st_file *f) {
    size_t bytes = 0;
    for (int i = 0; i < f->n; i++)
        bytes += f->tensors[i].nbytes;
    printf("  %d tensors, %zu bytes of data\n", f->n, bytes);
    for (int i = 0; i < f->n; i++) {
        if (i == INSPECT_LIST_MAX) {
            printf("  ... %d more tensors\n", f->n - i);
            break;
        }
        const st_tensor *t = &f->tensors[i];
        printf("  %-40s %-4s [", t->name, st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
        printf("]\n");
    }
}

static pk_status inspect_safetensors(const char *path) {
    st_file f;
    PK_TRY(safetensors_open(path, &f));
    int is_ckpt = safetensors_meta(&f, "polyak") != NULL;
    safetensors_close(&f);
    if (is_ckpt) {
        ckpt_file ck;
        PK_TRY(checkpoint_open(path, &ck));
        printf("%s: Polyak checkpoint, format version %d, step %lld\n", path, ck.format_version,
               (long long)ck.step);
        printf("  rng state: %016llx %016llx %016llx %016llx\n", (unsigned long long)ck.rng[0],
               (unsigned long long)ck.rng[1], (unsigned long long)ck.rng[2],
               (unsigned long long)ck.rng[3]);
        printf("  options: %s\n", ck.options_json);
        print_tensors(&ck.st);
        checkpoint_close(&ck);
        return PK_OK;
    }
    PK_TRY(safetensors_open(path, &f));
    printf("%s: safetensors file\n", path);
    for (int i = 0; i < f.n_meta; i++)
        printf("  metadata %s = %s\n", f.meta_keys[i], f.meta_values[i]);
    print_tensors(&f);
    safetensors_close(&f);
    return PK_OK;
}

static pk_status inspect_idx(const char *path) {
    idx_array a;
    PK_TRY(idx_read(path, &a));
    printf("%s: IDX array (unsigned bytes), shape [", path);
    for (int d = 0; d < a.ndim; d++)
        printf("%s%lld", d ? ", " : "", (long long)a.dims[d]);
    printf("]\n");
    if (a.ndim == 1) {
        int counts[256] = {0}, maxl = -1;
        for (size_t i = 0; i < a.len; i++) {
            counts[a.data[i]]++;
            if (a.data[i] > maxl) maxl = a.data[i];
        }
        printf("  %zu labels, %d classes\n", a.len, maxl + 1);
        print_counts(counts, maxl + 1, NULL);
    } else if (a.ndim == 3) {
        printf("  %lld images of %lld x %lld, 1 channel\n", (long long)a.dims[0],
               (long long)a.dims[1], (long long)a.dims[2]);
    }
    idx_free(&a);
    return PK_OK;
}

static pk_status inspect_cifar(const char *path, int c100) {
    const char *p[1] = {path};
    pk_dataset ds;
    PK_TRY(cifar_load(p, 1, c100, &ds));
    printf("%s: CIFAR-%d binary batch, %d images of 32 x 32 x 3\n", path, c100 ? 100 : 10, ds.n);
    int *counts = calloc((size_t)ds.num_classes, sizeof(int));
    if (counts) {
        dataset_count_classes(&ds, counts);
        print_counts(counts, ds.num_classes, NULL);
        free(counts);
    }
    dataset_free(&ds);
    return PK_OK;
}

static pk_status inspect_scene(const char *path) {
    pk_scene s;
    PK_TRY(scene_load(path, NULL, &s));
    int ntest = scene_count_test(&s);
    printf("%s: scene (%s), %d images (%d train, %d test; %s), %zu points\n", path, s.kind, s.n,
           s.n - ntest, ntest, s.file_split ? "split from the file" : "every 8th image is test",
           s.n_points);
    int distinct = 0, minw = 1 << 30, maxw = 0, minh = 1 << 30, maxh = 0, distorted = 0;
    for (int i = 0; i < s.n; i++) {
        const pk_camera *c = &s.cams[i];
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = s.cams[j].fx == c->fx && s.cams[j].fy == c->fy && s.cams[j].cx == c->cx &&
                   s.cams[j].cy == c->cy && s.cams[j].width == c->width &&
                   s.cams[j].height == c->height;
        distinct += !seen;
        distorted += c->model != CAM_PINHOLE && c->model != CAM_SIMPLE_PINHOLE;
        if (c->width < minw) minw = c->width;
        if (c->width > maxw) maxw = c->width;
        if (c->height < minh) minh = c->height;
        if (c->height > maxh) maxh = c->height;
    }
    printf("  %d distinct cameras, image sizes %d..%d x %d..%d, %d with distortion (undistorted "
           "on load)\n",
           distinct, minw, maxw, minh, maxh, distorted);
    for (int i = 0; i < s.n; i++) {
        if (i == INSPECT_LIST_MAX) {
            printf("  ... %d more images\n", s.n - i);
            break;
        }
        const pk_camera *c = &s.cams[i];
        printf("  %-5s %-30s %s %dx%d fx=%.2f fy=%.2f cx=%.2f cy=%.2f\n",
               c->is_test ? "test" : "train", c->name, camera_model_name(c->model), c->width,
               c->height, c->fx, c->fy, c->cx, c->cy);
    }
    scene_free(&s);
    return PK_OK;
}

/* Lists dir's entries (sorted); returns NULL on failure with the error recorded. */
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static pk_status list_names(const char *dir, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return pk_error(PK_ERR_IO, "%s: cannot open folder", dir);
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **n2 = realloc(*out, sizeof(char *) * (size_t)cap);
            if (!n2) break;
            *out = n2;
        }
        (*out)[*n] = io_strdup(e->d_name);
        if ((*out)[*n]) (*n)++;
    }
    closedir(d);
    if (*n) qsort(*out, (size_t)*n, sizeof(char *), cmp_str);
    return PK_OK;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static pk_status inspect_path(const char *path);

static pk_status inspect_dir(const char *path) {
    static const char *scene_marks[] = {
        "transforms.json", "transforms_train.json", "sparse/0/cameras.bin", "sparse/0/cameras.txt",
        "cameras.bin",     "cameras.txt",           "sparse/cameras.bin",   "sparse/cameras.txt"};
    for (int k = 0; k < 8; k++) {
        char *p = io_path_join(path, scene_marks[k]);
        int found = p && io_is_file(p);
        free(p);
        if (found) return inspect_scene(path);
    }
    char **names;
    int n;
    PK_TRY(list_names(path, &names, &n));
    int idx = 0, ckpts = 0, subdirs = 0, bins = 0;
    for (int i = 0; i < n; i++) {
        idx += strstr(names[i], "-ubyte") != NULL;
        ckpts += strncmp(names[i], "ckpt-", 5) == 0 && ends_with(names[i], ".safetensors");
        bins += ends_with(names[i], ".bin");
        char *p = io_path_join(path, names[i]);
        subdirs += p && io_is_dir(p);
        free(p);
    }
    pk_status s = PK_OK;
    if (idx || bins) {
        printf("%s: dataset folder\n", path);
        for (int i = 0; i < n && s == PK_OK; i++)
            if (strstr(names[i], "-ubyte") || ends_with(names[i], ".bin")) {
                char *p = io_path_join(path, names[i]);
                s = p ? inspect_path(p) : PK_ERR_NOMEM;
                free(p);
            }
    } else if (ckpts) {
        int64_t latest;
        s = checkpoint_find_latest(path, &latest);
        if (s == PK_OK) {
            printf("%s: checkpoint folder, %d checkpoints, latest step %lld\n", path, ckpts,
                   (long long)latest);
            char p[4096];
            checkpoint_path(path, latest, p, sizeof p);
            s = inspect_safetensors(p);
        }
    } else if (subdirs) {
        printf("%s: image-class folder (classes in sorted order)\n", path);
        int total = 0, k = 0;
        for (int i = 0; i < n; i++) {
            char *cd = io_path_join(path, names[i]);
            if (cd && io_is_dir(cd)) {
                char **files;
                int nf, imgs = 0;
                if (list_names(cd, &files, &nf) == PK_OK) {
                    for (int j = 0; j < nf; j++)
                        imgs += ends_with(files[j], ".png") || ends_with(files[j], ".jpg") ||
                                ends_with(files[j], ".jpeg");
                    free_names(files, nf);
                }
                if (k < INSPECT_LIST_MAX) printf("  class %d (%s): %d images\n", k, names[i], imgs);
                total += imgs;
                k++;
            }
            free(cd);
        }
        if (k > INSPECT_LIST_MAX) printf("  ... %d more classes\n", k - INSPECT_LIST_MAX);
        printf("  %d classes, %d images\n", k, total);
        if (total == 0)
            s = pk_error(PK_ERR_FORMAT, "%s: no PNG or JPEG images in class folders", path);
    } else {
        s = pk_error(PK_ERR_FORMAT,
                     "%s: folder is not a scene, dataset, image-class or checkpoint folder", path);
    }
    free_names(names, n);
    return s;
}

static pk_status inspect_path(const char *path) {
    if (io_is_dir(path)) return inspect_dir(path);
    if (!io_is_file(path)) return pk_error(PK_ERR_IO, "%s: no such file or folder", path);
    uint8_t h[16] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return pk_error(PK_ERR_IO, "%s: cannot open", path);
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    const char *b = base_name(path);
    if ((got >= 8 && h[0] == 0x89 && h[1] == 'P' && h[2] == 'N' && h[3] == 'G') ||
        (got >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF))
        return inspect_image(path);
    if (got >= 4 && memcmp(h, "ply", 3) == 0 && (h[3] == '\n' || h[3] == '\r'))
        return inspect_ply(path);
    if (ends_with(path, ".safetensors") || (got >= 9 && h[8] == '{'))
        return inspect_safetensors(path);
    if (got >= 4 && ((h[0] == 0 && h[1] == 0 && h[2] >= 0x08) || (h[0] == 0x1f && h[1] == 0x8b)))
        return inspect_idx(path);
    if (ends_with(b, ".json")) {
        pk_scene s;
        PK_TRY(transforms_load(path, NULL, &s));
        scene_free(&s);
        return inspect_scene(path);
    }
    if (!strcmp(b, "cameras.bin") || !strcmp(b, "images.bin") || !strcmp(b, "points3D.bin") ||
        !strcmp(b, "cameras.txt") || !strcmp(b, "images.txt") || !strcmp(b, "points3D.txt")) {
        char *dir = io_strdup(path);
        if (!dir) return PK_ERR_NOMEM;
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else
            strcpy(dir, ".");
        pk_status s = inspect_scene(dir);
        free(dir);
        return s;
    }
    if (ends_with(b, ".bin")) {
        /* CIFAR-100 ships train.bin/test.bin; CIFAR-10 data_batch_N.bin/test_batch.bin. */
        int c100 = !strcmp(b, "train.bin") || !strcmp(b, "test.bin");
        return inspect_cifar(path, c100);
    }
    return pk_error(PK_ERR_FORMAT,
                    "%s: unknown file type (expected PNG, JPEG, PLY, safetensors, IDX, CIFAR .bin, "
                    "transforms.json or a COLMAP file)",
                    path);
}

int cmd_inspect(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: polyak inspect FILE_OR_FOLDER...\n");
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: polyak inspect FILE_OR_FOLDER...\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        pk_error_clear();
        if (inspect_path(argv[i]) != PK_OK) {
            fflush(stdout);
            fprintf(stderr, "polyak inspect: %s\n", polyak_error());
            return 1;
        }
    }
    return 0;
}
