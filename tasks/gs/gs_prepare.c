/* gs_prepare.c - photos or a video to a COLMAP project (gs_prepare.h): the input stage (photos
 * linked or written upright, video frames from ffmpeg and the sharpest of each window), COLMAP's
 * feature extraction, matching and mapping as child processes with their logs and progress, the
 * largest model kept, the summary and prepare.json with the sources' hash. */
#define _GNU_SOURCE
#include "gs_prepare.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "io_util.h"
#include "run.h"
#include "scene.h"

extern char **environ;

/* Paths are built in 4096-byte buffers; gs_prepare refuses input and output paths over
 * MAX_ARG_PATH bytes first, so the file names added to them always fit. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#define MAX_ARG_PATH 3000

#define MIN_IMAGES 3
/* images whose longest side (as SIFT sees it) is under this get tighter pixel tolerances */
#define SMALL_IMAGE 1000

/* ---------- small file helpers ---------- */

static bool has_ext(const char *name, const char *const *exts) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return false;
    for (int i = 0; exts[i]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return true;
    return false;
}

static bool is_image_name(const char *name) {
    static const char *const e[] = {"jpg", "jpeg", "png", NULL};
    return name[0] != '.' && has_ext(name, e);
}

bool gs_prepare_is_video(const char *path) {
    static const char *const e[] = {"mp4", "mov", "m4v", "avi", "mkv", "webm", "mts", NULL};
    return io_is_file(path) && has_ext(path, e);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct name_list {
    char **v;
    int n;
} name_list;

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (name_list){0};
}

/* The image files directly in dir (regular files), sorted by name. */
static pk_status list_images(const char *dir, name_list *out) {
    *out = (name_list){0};
    DIR *d = opendir(dir);
    if (!d) return pk_error(PK_ERR_IO, "%s: cannot read the folder: %s", dir, strerror(errno));
    struct dirent *e;
    int cap = 0;
    pk_status s = PK_OK;
    while (s == PK_OK && (e = readdir(d))) {
        if (!is_image_name(e->d_name)) continue;
        char *p = io_path_join(dir, e->d_name);
        int file = p && io_is_file(p);
        free(p);
        if (!file) continue;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(out->v, sizeof(char *) * (size_t)cap);
            if (!nv) {
                s = pk_error(PK_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            out->v = nv;
        }
        out->v[out->n] = io_strdup(e->d_name);
        if (!out->v[out->n])
            s = PK_ERR_NOMEM;
        else
            out->n++;
    }
    closedir(d);
    if (s != PK_OK)
        names_free(out);
    else if (out->n)
        qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return s;
}

int gs_prepare_count_images(const char *dir) {
    name_list l;
    if (list_images(dir, &l) != PK_OK) return -1;
    int n = l.n;
    names_free(&l);
    return n;
}

/* Creates dir and its missing parents. */
static pk_status make_dirs(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return pk_error(PK_ERR_INVALID, "path too long: %s", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return pk_error(PK_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    if (!io_is_dir(dir)) return pk_error(PK_ERR_IO, "%s exists and is not a folder", dir);
    return PK_OK;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

/* Removes a folder we wrote, with everything in it (nothing when absent). */
static pk_status remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return PK_OK;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return pk_error(PK_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return PK_OK;
}

/* Joins into a fixed buffer. */
static void pjoin(char *buf, size_t n, const char *a, const char *b) {
    snprintf(buf, n, "%s/%s", a, b);
}

/* Copies a file byte for byte (when a hard link is not possible). */
static pk_status copy_file(const char *from, const char *to) {
    uint8_t *buf;
    size_t len;
    PK_TRY(io_read_file(from, &buf, &len));
    FILE *f = fopen(to, "wb");
    pk_status s = PK_OK;
    if (!f || fwrite(buf, 1, len, f) != len) s = pk_error(PK_ERR_IO, "cannot write %s", to);
    if (f && fclose(f) != 0 && s == PK_OK) s = pk_error(PK_ERR_IO, "cannot write %s", to);
    free(buf);
    return s;
}

/* ---------- child processes ---------- */

/* Finds `name` on PATH (or checks it when it holds a '/'); writes the full path. */
static bool find_program(const char *name, char *out, size_t n) {
    if (strchr(name, '/')) {
        snprintf(out, n, "%s", name);
        return access(name, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(out, n, "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(out, X_OK) == 0 && io_is_file(out)) return true;
        path += len + (end ? 1 : 0);
    }
    return false;
}

/* What a child's log tells about its progress: done/total parsed from one line. */
typedef bool (*line_parser)(const char *line, int64_t *done, int64_t *total);

typedef struct spawn_progress {
    const char *label;     /* progress line label */
    int64_t total;         /* expected units (0: unknown until a line says) */
    line_parser parse;     /* NULL: no parsing */
    const char *count_dir; /* count the image files here as progress (ffmpeg) */
    FILE *f;               /* progress stream */
} spawn_progress;

/* "Processed file [12/48]" (feature_extractor) */
static bool parse_extract(const char *l, int64_t *done, int64_t *total) {
    const char *p = strstr(l, "Processed file [");
    long a, b;
    if (!p || sscanf(p, "Processed file [%ld/%ld]", &a, &b) != 2) return false;
    *done = a, *total = b;
    return true;
}

/* "Matching block [2/3, 1/3]" (exhaustive) or "Matching image [5/48]" (sequential, vocab) */
static bool parse_match(const char *l, int64_t *done, int64_t *total) {
    const char *p = strstr(l, "Matching block [");
    long a, b, c, d;
    if (p && sscanf(p, "Matching block [%ld/%ld, %ld/%ld]", &a, &b, &c, &d) == 4) {
        *done = (a - 1) * d + c, *total = b * d;
        return true;
    }
    p = strstr(l, "Matching image [");
    if (p && sscanf(p, "Matching image [%ld/%ld]", &a, &b) == 2) {
        *done = a, *total = b;
        return true;
    }
    return false;
}

/* "Registering image #12 (5)" (mapper): 5 images registered so far in this model */
static bool parse_map(const char *l, int64_t *done, int64_t *total) {
    const char *p = strstr(l, "Registering image #");
    long id, k;
    (void)total;
    if (!p || sscanf(p, "Registering image #%ld (%ld)", &id, &k) != 2) return false;
    if (k > *done) *done = k;
    return true;
}

/* Runs argv[0] (a full path) with stdout and stderr appended to log_path (stdout to
 * stdout_path instead when given), stdin from /dev/null; waits, showing progress. Adds the
 * child's user+sys time to *cpu. Returns the exit status (or -1 with an error). */
static int run_child(char *const argv[], const char *log_path, const char *stdout_path,
                     spawn_progress *sp, double *cpu) {
    FILE *log = fopen(log_path, "a");
    if (!log) {
        pk_error(PK_ERR_IO, "cannot open the log %s: %s", log_path, strerror(errno));
        return -1;
    }
    fprintf(log, "$");
    for (int i = 0; argv[i]; i++)
        fprintf(log, " %s", argv[i]);
    fprintf(log, "\n");
    fclose(log);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, stdout_path ? stdout_path : log_path,
                                     O_WRONLY | O_CREAT | O_APPEND, 0666);
    posix_spawn_file_actions_addopen(&fa, 2, log_path, O_WRONLY | O_CREAT | O_APPEND, 0666);
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        pk_error(PK_ERR_IO, "cannot start %s: %s", argv[0], strerror(e));
        return -1;
    }
    run_progress_line pl;
    int64_t done = 0, total = sp ? sp->total : 0;
    bool started = false;
    FILE *rd = sp && sp->parse ? fopen(log_path, "r") : NULL;
    char *line = NULL;
    size_t cap = 0;
    int status = 0;
    struct rusage ru;
    for (;;) {
        pid_t w = wait4(pid, &status, WNOHANG, &ru);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            pk_error(PK_ERR_IO, "waiting for %s: %s", argv[0], strerror(errno));
            if (rd) fclose(rd);
            free(line);
            return -1;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (!sp || !sp->f) continue;
        int64_t d = done, t = total;
        if (rd) {
            clearerr(rd);
            while (getline(&line, &cap, rd) > 0)
                sp->parse(line, &d, &t);
        }
        if (sp->count_dir) {
            int c = gs_prepare_count_images(sp->count_dir);
            if (c > 0) d = c;
        }
        if (!started && t > 0) {
            run_progress_line_start(&pl, sp->f, sp->label, t);
            started = true;
        } else if (started && t != total) {
            pl.total = t;
        }
        bool changed = d != done || t != total;
        done = d, total = t;
        if (started && changed) run_progress_line_update(&pl, done < total ? done : total, NULL);
    }
    if (rd) fclose(rd);
    free(line);
    if (started) run_progress_line_end(&pl);
    if (cpu)
        *cpu += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
                (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Prints "polyak splat prepare: <msg>" on the progress stream. */
static void say(const gs_prepare_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const gs_prepare_options *o, const char *fmt, ...) {
    if (!o->progress) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(o->progress, "polyak splat prepare: ");
    vfprintf(o->progress, fmt, ap);
    fprintf(o->progress, "\n");
    fflush(o->progress);
    va_end(ap);
}

/* The command line as a shell would show it (for the reader; nothing runs it). */
static void say_command(const gs_prepare_options *o, char *const argv[]) {
    if (!o->progress) return;
    fprintf(o->progress, "polyak splat prepare: running");
    for (int i = 0; argv[i]; i++) {
        const char *a = argv[i];
        bool plain = *a != 0;
        for (const char *c = a; *c && plain; c++)
            plain =
                strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,%+",
                       *c) != NULL;
        if (plain) {
            fprintf(o->progress, " %s", a);
        } else {
            fputs(" '", o->progress);
            for (const char *c = a; *c; c++)
                if (*c == '\'')
                    fputs("'\\''", o->progress);
                else
                    fputc(*c, o->progress);
            fputc('\'', o->progress);
        }
    }
    fputc('\n', o->progress);
    fflush(o->progress);
}

/* ---------- sharpness ---------- */

pk_status gs_sharpness(const char *path, double *score) {
    pk_image img = {0}, small = {0}, gray = {0};
    PK_TRY(image_read(path, &img));
    int longest = img.w > img.h ? img.w : img.h, f = (longest + 639) / 640;
    pk_status s = PK_OK;
    const pk_image *src = &img;
    if (f > 1) {
        s = image_downscale(&img, f, &small);
        src = &small;
    }
    if (s == PK_OK) s = image_convert_channels(src, 1, &gray);
    if (s == PK_OK && (gray.w < 3 || gray.h < 3))
        s = pk_error(PK_ERR_INVALID, "%s: image too small (%dx%d) for a sharpness score", path,
                     img.w, img.h);
    if (s == PK_OK) {
        double sum = 0, sum2 = 0;
        int64_t n = 0;
        for (int y = 1; y + 1 < gray.h; y++)
            for (int x = 1; x + 1 < gray.w; x++) {
                double c = image_get(&gray, x, y, 0);
                double l = image_get(&gray, x - 1, y, 0) + image_get(&gray, x + 1, y, 0) +
                           image_get(&gray, x, y - 1, 0) + image_get(&gray, x, y + 1, 0) - 4 * c;
                sum += l, sum2 += l * l, n++;
            }
        double m = sum / (double)n;
        *score = sum2 / (double)n - m * m;
    }
    image_free(&img);
    image_free(&small);
    image_free(&gray);
    return s;
}

/* ---------- hashing (prepare.json's "source_hash") ---------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Hash of the sources (names, sizes, modification times) and the options that change the
 * result. */
static pk_status source_hash(const gs_prepare_options *o, uint64_t *out) {
    uint64_t h = 1469598103934665603ull;
    name_list l = {0};
    const char *dir = o->images;
    if (o->images) {
        PK_TRY(list_images(o->images, &l));
    } else {
        l.v = malloc(sizeof(char *));
        if (!l.v) return PK_ERR_NOMEM;
        l.v[0] = io_strdup(o->video);
        l.n = 1;
        dir = NULL;
    }
    for (int i = 0; i < l.n; i++) {
        char p[4096];
        if (dir)
            pjoin(p, sizeof p, dir, l.v[i]);
        else
            snprintf(p, sizeof p, "%s", l.v[i]);
        struct stat st;
        if (stat(p, &st) != 0) {
            names_free(&l);
            return pk_error(PK_ERR_IO, "%s: %s", p, strerror(errno));
        }
        const char *base = strrchr(l.v[i], '/');
        base = base ? base + 1 : l.v[i];
        h = fnv(h, base, strlen(base) + 1);
        int64_t v[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec,
                        (int64_t)st.st_mtim.tv_nsec};
        h = fnv(h, v, sizeof v);
    }
    names_free(&l);
    char opt[512];
    snprintf(opt, sizeof opt, "%s|%s|%s|%d|%d|%d|%g|%d|%d", o->images ? "images" : "video",
             o->matcher ? o->matcher : "", o->camera_model ? o->camera_model : "",
             o->camera_per_image, o->max_image_size, o->max_features, o->fps, o->max_frames,
             o->window);
    *out = fnv(h, opt, strlen(opt));
    return PK_OK;
}

/* ---------- the input stage ---------- */

/* Whether the images in dir share one size, and the longest side among them. */
static pk_status sizes(const char *dir, bool *agree, int *longest) {
    name_list l;
    PK_TRY(list_images(dir, &l));
    *agree = true, *longest = 0;
    int w0 = 0, h0 = 0;
    pk_status s = PK_OK;
    for (int i = 0; i < l.n && s == PK_OK; i++) {
        char p[4096];
        int w, h, c;
        pjoin(p, sizeof p, dir, l.v[i]);
        s = image_probe(p, &w, &h, &c);
        if (s == PK_OK && (w > *longest || h > *longest)) *longest = w > h ? w : h;
        if (s == PK_OK && i == 0)
            w0 = w, h0 = h;
        else if (s == PK_OK && (w != w0 || h != h0))
            *agree = false;
    }
    names_free(&l);
    return s;
}

pk_status gs_prepare_sizes_agree(const char *dir, bool *agree) {
    int longest;
    return sizes(dir, agree, &longest);
}

/* Fills SCENE/images from the photos: a hard link (or copy) of each, or an upright PNG when
 * the JPEG carries an EXIF rotation (COLMAP reads pixels as stored). */
static pk_status input_photos(const gs_prepare_options *o, const char *images_out, int *n_out,
                              int *rotated) {
    name_list l;
    PK_TRY(list_images(o->images, &l));
    *n_out = l.n, *rotated = 0;
    pk_status s = PK_OK;
    run_progress_line pl;
    if (o->progress) run_progress_line_start(&pl, o->progress, "photos", l.n);
    for (int i = 0; i < l.n && s == PK_OK; i++) {
        char from[4096], to[4096];
        pjoin(from, sizeof from, o->images, l.v[i]);
        uint8_t *buf = NULL;
        size_t len = 0;
        int orient = 1;
        const char *dot = strrchr(l.v[i], '.');
        if (strcasecmp(dot, ".png") != 0) {
            s = io_read_file(from, &buf, &len);
            if (s == PK_OK) orient = jpeg_exif_orientation(buf, len);
        }
        if (s == PK_OK && orient != 1) {
            pk_image img = {0};
            snprintf(to, sizeof to, "%s/%.*s.png", images_out, (int)(dot - l.v[i]), l.v[i]);
            s = jpeg_decode(from, buf, len, &img);
            if (s == PK_OK) s = png_write(to, &img);
            image_free(&img);
            (*rotated)++;
        } else if (s == PK_OK) {
            pjoin(to, sizeof to, images_out, l.v[i]);
            if (link(from, to) != 0) s = copy_file(from, to);
        }
        free(buf);
        if (o->progress) run_progress_line_update(&pl, i + 1, NULL);
    }
    if (o->progress) run_progress_line_end(&pl);
    names_free(&l);
    return s;
}

/* Reads the video's duration in seconds with ffprobe (0 when unknown). */
static double video_duration(const gs_prepare_options *o, const char *ffprobe, const char *logs) {
    char log[4096], outp[4096];
    pjoin(log, sizeof log, logs, "ffprobe.log");
    pjoin(outp, sizeof outp, logs, "ffprobe.out");
    remove(outp);
    char *argv[] = {(char *)ffprobe,
                    "-v",
                    "error",
                    "-show_entries",
                    "format=duration",
                    "-of",
                    "default=noprint_wrappers=1:nokey=1",
                    (char *)o->video,
                    NULL};
    if (run_child(argv, log, outp, NULL, NULL) != 0) return 0;
    FILE *f = fopen(outp, "r");
    double d = 0;
    if (f) {
        if (fscanf(f, "%lf", &d) != 1) d = 0;
        fclose(f);
    }
    return d > 0 && isfinite(d) ? d : 0;
}

/* Extracts candidate frames with ffmpeg into SCENE/frames/, keeps the sharpest of each window in
 * SCENE/images/ and removes the rest. */
static pk_status input_video(const gs_prepare_options *o, const char *scene, const char *logs,
                             const char *images_out, int *n_out, double *cpu) {
    char ffmpeg[4096], ffprobe[4096];
    const char *name = o->ffmpeg ? o->ffmpeg : "ffmpeg";
    if (!find_program(name, ffmpeg, sizeof ffmpeg))
        return pk_error(PK_ERR_UNSUPPORTED,
                        "%s not found%s: it decodes the video; install it (Debian/Ubuntu: "
                        "sudo apt-get install ffmpeg, or tools/install-deps.sh)",
                        name, strchr(name, '/') ? "" : " on PATH");
    /* ffprobe sits beside ffmpeg */
    snprintf(ffprobe, sizeof ffprobe, "%s", ffmpeg);
    char *slash = strrchr(ffprobe, '/');
    snprintf(slash + 1, sizeof ffprobe - (size_t)(slash + 1 - ffprobe), "ffprobe");
    double fps = o->fps > 0 ? o->fps : 2.0;
    int max_frames = o->max_frames > 0 ? o->max_frames : 300;
    int window = o->window > 0 ? o->window : 3;
    double dur = access(ffprobe, X_OK) == 0 ? video_duration(o, ffprobe, logs) : 0;
    if (dur > 0 && dur * fps > max_frames) fps = max_frames / dur;
    double rate = fps * window;
    int64_t expect = dur > 0 ? (int64_t)ceil(dur * rate) : 0;
    char frames[4096], pattern[4096], vf[64], log[4096];
    pjoin(frames, sizeof frames, scene, "frames");
    PK_TRY(remove_tree(frames));
    PK_TRY(make_dirs(frames));
    pjoin(pattern, sizeof pattern, frames, "c_%06d.jpg");
    pjoin(log, sizeof log, logs, "ffmpeg.log");
    snprintf(vf, sizeof vf, "fps=%.6g", rate);
    char *argv[] = {ffmpeg, "-hide_banner", "-nostdin", "-y",    "-i", (char *)o->video, "-vf",
                    vf,     "-qscale:v",    "2",        pattern, NULL};
    say(o,
        "video %s (%s): %.3g candidate frames per second, the sharpest of each %d kept (at "
        "most %d frames)",
        o->video, dur > 0 ? "length known" : "length unknown", rate, window, max_frames);
    if (dur > 0) say(o, "video length %.1f s: about %lld candidates", dur, (long long)expect);
    say_command(o, argv);
    spawn_progress sp = {.label = "frames", .total = expect, .count_dir = frames, .f = o->progress};
    int rc = run_child(argv, log, NULL, &sp, cpu);
    if (rc < 0) return PK_ERR_IO;
    if (rc != 0)
        return pk_error(PK_ERR_IO,
                        "ffmpeg could not decode %s (exit status %d); its output is in "
                        "%s",
                        o->video, rc, log);
    name_list l;
    PK_TRY(list_images(frames, &l));
    if (l.n == 0) {
        names_free(&l);
        return pk_error(PK_ERR_INVALID, "ffmpeg wrote no frames from %s; see %s", o->video, log);
    }
    /* windows: enough that at most max_frames are kept */
    int w = window, need = (l.n + max_frames - 1) / max_frames;
    if (need > w) w = need;
    double *score = calloc((size_t)l.n, sizeof(double));
    if (!score) {
        names_free(&l);
        return PK_ERR_NOMEM;
    }
    pk_status s = PK_OK;
    run_progress_line pl;
    if (o->progress) run_progress_line_start(&pl, o->progress, "sharpness", l.n);
    for (int i = 0; i < l.n && s == PK_OK; i++) {
        char p[4096];
        pjoin(p, sizeof p, frames, l.v[i]);
        s = gs_sharpness(p, &score[i]);
        if (o->progress) run_progress_line_update(&pl, i + 1, NULL);
    }
    if (o->progress) run_progress_line_end(&pl);
    int kept = 0;
    double drop_sum = 0, keep_sum = 0;
    for (int a = 0; a < l.n && s == PK_OK; a += w) {
        int b = a + w < l.n ? a + w : l.n, best = a;
        for (int i = a; i < b; i++)
            if (score[i] > score[best]) best = i;
        for (int i = a; i < b; i++)
            if (i != best) drop_sum += score[i];
        keep_sum += score[best];
        char from[4096], to[4096];
        pjoin(from, sizeof from, frames, l.v[best]);
        snprintf(to, sizeof to, "%s/frame_%05d.jpg", images_out, kept + 1);
        if (rename(from, to) != 0)
            s = pk_error(PK_ERR_IO, "cannot move %s to %s: %s", from, to, strerror(errno));
        kept++;
    }
    if (s == PK_OK)
        say(o,
            "kept %d of %d frames (the sharpest of each %d; mean Laplacian variance %.4g kept, "
            "%.4g dropped)",
            kept, l.n, w, keep_sum / kept, l.n > kept ? drop_sum / (l.n - kept) : 0.0);
    free(score);
    names_free(&l);
    if (s == PK_OK) s = remove_tree(frames);
    *n_out = kept;
    return s;
}

/* ---------- COLMAP ---------- */

/* Reads "key: value" numbers from model_analyzer's output. */
static void analyzer_numbers(const char *log, gs_prepare_result *r) {
    FILE *f = fopen(log, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        const char *p;
        double v;
        if ((p = strstr(line, "Mean reprojection error:")) &&
            sscanf(p, "Mean reprojection error: %lf", &v) == 1)
            r->mean_reprojection_error = v;
    }
    fclose(f);
}

/* Loads the model in dir (no image check): the number of registered images (-1 on error). */
static int model_images(const char *dir, const char *images, pk_scene *sc) {
    scene_options so = {.images_dir = images, .skip_image_check = 1, .test_every = -1};
    if (colmap_load(dir, &so, sc) != PK_OK) return -1;
    return sc->n;
}

static const char *colmap_missing =
    "%s not found%s: Polyak runs COLMAP for structure from motion; install it (Debian/Ubuntu: "
    "sudo apt-get install colmap, or tools/install-deps.sh; elsewhere see colmap.github.io)";

/* Writes prepare.json (atomically). */
static pk_status write_summary(const gs_prepare_options *o, const char *scene,
                               const gs_prepare_result *r, uint64_t hash) {
    cJSON *j = cJSON_CreateObject();
    char hx[32];
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)hash);
    cJSON_AddStringToObject(j, "source", o->images ? o->images : o->video);
    cJSON_AddStringToObject(j, "source_kind", o->images ? "images" : "video");
    cJSON_AddStringToObject(j, "source_hash", hx);
    cJSON_AddStringToObject(j, "matcher", r->matcher);
    cJSON_AddStringToObject(j, "camera_model", o->camera_model ? o->camera_model : "SIMPLE_RADIAL");
    cJSON_AddBoolToObject(j, "camera_per_image", o->camera_per_image);
    cJSON_AddNumberToObject(j, "images_given", r->given);
    cJSON_AddNumberToObject(j, "images_registered", r->registered);
    cJSON_AddNumberToObject(j, "points", (double)r->points);
    cJSON_AddNumberToObject(j, "mean_reprojection_error_px", r->mean_reprojection_error);
    cJSON_AddNumberToObject(j, "models", r->models);
    cJSON *u = cJSON_AddArrayToObject(j, "unregistered");
    for (int i = 0; i < r->n_unregistered; i++)
        cJSON_AddItemToArray(u, cJSON_CreateString(r->unregistered[i]));
    static const char *stage[GS_PREP_STAGES] = {"input", "features", "matching", "mapping"};
    cJSON *sec = cJSON_AddObjectToObject(j, "seconds");
    cJSON *cpu = cJSON_AddObjectToObject(j, "cpu_seconds");
    for (int k = 0; k < GS_PREP_STAGES; k++) {
        cJSON_AddNumberToObject(sec, stage[k], r->seconds[k]);
        cJSON_AddNumberToObject(cpu, stage[k], r->cpu_seconds[k]);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return PK_ERR_NOMEM;
    char path[4096];
    pjoin(path, sizeof path, scene, "prepare.json");
    io_atomic a;
    pk_status s = io_atomic_open(&a, path);
    if (s == PK_OK) {
        fputs(text, a.f);
        fputc('\n', a.f);
        s = io_atomic_commit(&a);
    }
    free(text);
    return s;
}

/* Times since `t0` and the CPU of this process (the input stage decodes in-process). */
static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

pk_status gs_prepare(const gs_prepare_options *o, gs_prepare_result *res) {
    *res = (gs_prepare_result){0};
    if (!o->out) return pk_error(PK_ERR_INVALID, "no output folder given");
    const char *paths[] = {o->out, o->images, o->video, o->vocab_tree};
    for (int i = 0; i < 4; i++)
        if (paths[i] && strlen(paths[i]) > MAX_ARG_PATH)
            return pk_error(PK_ERR_INVALID, "path longer than %d bytes: %.80s...", MAX_ARG_PATH,
                            paths[i]);
    if (!!o->images == !!o->video)
        return pk_error(PK_ERR_INVALID, "give either a folder of photos or a video file");
    if (o->images && !io_is_dir(o->images))
        return pk_error(PK_ERR_INVALID, "%s: not a folder of photos", o->images);
    if (o->video && !io_is_file(o->video))
        return pk_error(PK_ERR_INVALID, "%s: no such video file", o->video);
    const char *matcher = o->matcher;
    if (matcher && strcmp(matcher, "exhaustive") && strcmp(matcher, "sequential") &&
        strcmp(matcher, "vocab"))
        return pk_error(PK_ERR_INVALID, "matcher '%s': expected exhaustive, sequential or vocab",
                        matcher);
    if (matcher && !strcmp(matcher, "vocab") && !o->vocab_tree)
        return pk_error(PK_ERR_INVALID,
                        "the vocab matcher needs a vocabulary tree file (--vocab-tree FILE); "
                        "Debian's colmap ships none: download one (colmap.github.io/"
                        "install.html#vocabulary-trees) or build one from a database of your "
                        "features with `colmap vocab_tree_builder --database_path DB "
                        "--vocab_tree_path FILE`");
    if (o->vocab_tree && !io_is_file(o->vocab_tree))
        return pk_error(PK_ERR_INVALID, "%s: no such vocabulary tree file", o->vocab_tree);
    char colmap[4096];
    const char *cname = o->colmap ? o->colmap : "colmap";
    if (!find_program(cname, colmap, sizeof colmap))
        return pk_error(PK_ERR_UNSUPPORTED, colmap_missing, cname,
                        strchr(cname, '/') ? "" : " on PATH");
    uint64_t hash;
    PK_TRY(source_hash(o, &hash));
    const char *scene = o->out;
    char images[4096], logs[4096], db[4096], sparse[4096], summary[4096];
    pjoin(images, sizeof images, scene, "images");
    pjoin(logs, sizeof logs, scene, "logs");
    pjoin(db, sizeof db, scene, "database.db");
    pjoin(sparse, sizeof sparse, scene, "sparse");
    pjoin(summary, sizeof summary, scene, "prepare.json");
    /* An existing folder is reused only when it is empty or ours (prepare.json or logs/). */
    if (io_is_dir(scene)) {
        DIR *d = opendir(scene);
        int entries = 0;
        struct dirent *e;
        while (d && (e = readdir(d)))
            entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        if (d) closedir(d);
        if (entries && !io_is_file(summary) && !io_is_dir(logs))
            return pk_error(PK_ERR_INVALID,
                            "%s already exists and is no folder `polyak splat prepare` wrote; "
                            "choose another --out or empty it",
                            scene);
        if (o->images) {
            char *a = realpath(o->images, NULL), *b = realpath(images, NULL);
            bool same = a && b && strcmp(a, b) == 0;
            free(a), free(b);
            if (same)
                return pk_error(PK_ERR_INVALID,
                                "the photos are in %s, inside the output folder; choose another "
                                "--out",
                                images);
        }
        remove(summary);
        PK_TRY(remove_tree(images));
        PK_TRY(remove_tree(sparse));
        PK_TRY(remove_tree(logs));
        remove(db);
    }
    PK_TRY(make_dirs(images));
    PK_TRY(make_dirs(logs));
    PK_TRY(make_dirs(sparse));

    /* 1. input */
    double t0 = run_now(), c0 = self_cpu();
    int n = 0;
    say(o, "stage 1/4: %s", o->images ? "photos" : "video frames (ffmpeg)");
    if (o->images) {
        int rotated = 0;
        PK_TRY(input_photos(o, images, &n, &rotated));
        say(o, "%d photos from %s%s", n, o->images,
            rotated ? " (EXIF-rotated ones written upright as PNG)" : "");
        if (rotated) say(o, "%d photos carried an EXIF rotation: written upright as PNG", rotated);
    } else {
        double cpu = 0;
        PK_TRY(input_video(o, scene, logs, images, &n, &cpu));
        res->cpu_seconds[GS_PREP_INPUT] += cpu;
    }
    res->seconds[GS_PREP_INPUT] = run_now() - t0;
    res->cpu_seconds[GS_PREP_INPUT] += self_cpu() - c0;
    res->given = n;
    if (n < MIN_IMAGES)
        return pk_error(PK_ERR_INVALID,
                        "%s: %d image%s; structure from motion needs at least %d overlapping "
                        "views (20-200 photos taken around the object work best)",
                        o->images ? o->images : o->video, n, n == 1 ? "" : "s", MIN_IMAGES);
    bool agree = true;
    int longest = 0;
    PK_TRY(sizes(images, &agree, &longest));
    if (!agree && !o->camera_per_image)
        return pk_error(PK_ERR_INVALID,
                        "%s: the images are of different sizes (e.g. portrait and landscape), so "
                        "they cannot share one camera; pass --camera-per-image to give each its "
                        "own",
                        o->images ? o->images : o->video);

    /* matcher */
    char reason[256];
    if (matcher) {
        snprintf(reason, sizeof reason, "as asked");
    } else if (o->video && n <= 150) {
        matcher = "exhaustive";
        snprintf(reason, sizeof reason,
                 "%d video frames: few enough to match all %lld pairs (sequential matching left "
                 "frames unregistered on short clips: 45 of 48 in one of five test runs)",
                 n, (long long)n * (n - 1) / 2);
    } else if (o->video) {
        matcher = "sequential";
        snprintf(reason, sizeof reason,
                 "video frames overlap with their neighbours: each is matched with the next "
                 "ones");
    } else if (n <= 300) {
        matcher = "exhaustive";
        snprintf(reason, sizeof reason, "%d photos: all %lld pairs are matched (fine up to ~300)",
                 n, (long long)n * (n - 1) / 2);
    } else if (o->vocab_tree) {
        matcher = "vocab";
        snprintf(reason, sizeof reason, "%d photos: too many for all pairs; vocabulary tree", n);
    } else {
        matcher = "sequential";
        snprintf(reason, sizeof reason,
                 "%d photos: too many for all pairs and no --vocab-tree; neighbours by name", n);
    }
    res->matcher = matcher;
    const char *model = o->camera_model ? o->camera_model : "SIMPLE_RADIAL";
    char thr[16], msize[16];
    snprintf(thr, sizeof thr, "%d", o->threads > 0 ? o->threads : -1);
    snprintf(msize, sizeof msize, "%d", o->max_image_size > 0 ? o->max_image_size : 1600);
    char mfeat[16];
    snprintf(mfeat, sizeof mfeat, "%d", o->max_features > 0 ? o->max_features : 4096);
    /* COLMAP's pixel tolerances (4 px for the two-view geometry and for keeping a point's
     * observations) suit its usual 1,000-3,000 px images; at the size SIFT sees here below
     * SMALL_IMAGE px they let mismatches on repeated texture pull the poses. On the bundled
     * 320x240 renders (BENCHMARKS.md), 2 px for the two-view geometry and 2.5 px for the
     * mapper's filter took the camera-centre error from RMS 0.9-1.3% / largest 1.9-3.3% of
     * the extent to 0.55-0.76% / 1.09-1.41% over three databases; a 2 px filter was better
     * on two but registered 8 views of one at wrong places (62% RMS), so it is not used */
    int sift_side = longest < atoi(msize) ? longest : atoi(msize);
    bool small = sift_side < SMALL_IMAGE;
    const char *px_tol = small ? "2" : "4", *px_filter = small ? "2.5" : "4";

    /* 2. features */
    say(o, "stage 2/4: SIFT features (COLMAP, CPU) of %d images, %s, %s", n,
        o->camera_per_image ? "one camera per image" : "one shared camera", model);
    t0 = run_now();
    char log[4096];
    pjoin(log, sizeof log, logs, "feature_extractor.log");
    char *fe[] = {colmap,
                  "feature_extractor",
                  "--database_path",
                  db,
                  "--image_path",
                  images,
                  "--ImageReader.camera_model",
                  (char *)model,
                  "--ImageReader.single_camera",
                  o->camera_per_image ? "0" : "1",
                  "--SiftExtraction.use_gpu",
                  "0",
                  "--SiftExtraction.num_threads",
                  thr,
                  "--SiftExtraction.max_image_size",
                  msize,
                  "--SiftExtraction.max_num_features",
                  mfeat,
                  NULL};
    say_command(o, fe);
    spawn_progress sp = {.label = "features", .total = n, .parse = parse_extract, .f = o->progress};
    int rc = run_child(fe, log, NULL, &sp, &res->cpu_seconds[GS_PREP_FEATURES]);
    if (rc < 0) return PK_ERR_IO;
    if (rc != 0)
        return pk_error(PK_ERR_IO, "colmap feature_extractor failed (exit status %d); see %s", rc,
                        log);
    res->seconds[GS_PREP_FEATURES] = run_now() - t0;

    /* 3. matching */
    say(o, "stage 3/4: matching, %s (%s); guided, %s px tolerance (images of %d px)", matcher,
        reason, px_tol, sift_side);
    t0 = run_now();
    char mname[64];
    snprintf(mname, sizeof mname, "%s_matcher", !strcmp(matcher, "vocab") ? "vocab_tree" : matcher);
    snprintf(log, sizeof log, "%s/%s.log", logs, mname);
    char *ma[20] = {colmap,
                    mname,
                    "--database_path",
                    db,
                    "--SiftMatching.use_gpu",
                    "0",
                    "--SiftMatching.num_threads",
                    thr,
                    "--SiftMatching.guided_matching",
                    "1",
                    "--SiftMatching.max_error",
                    (char *)px_tol};
    int k = 12; /* guided matching (COLMAP's high-quality preset) adds the matches the
                   verified geometry predicts: 190 observations per image instead of 118 on the
                   bundled renders */
    char block[16];
    if (!strcmp(matcher, "exhaustive")) {
        /* blocks of ~n/8 images (10..50), so that the progress line moves */
        int b = (n + 7) / 8;
        snprintf(block, sizeof block, "%d", b < 10 ? 10 : b > 50 ? 50 : b);
        ma[k++] = "--ExhaustiveMatching.block_size";
        ma[k++] = block;
    }
    if (!strcmp(matcher, "vocab")) {
        ma[k++] = "--VocabTreeMatching.vocab_tree_path";
        ma[k++] = (char *)o->vocab_tree;
    } else if (!strcmp(matcher, "sequential") && o->vocab_tree) {
        ma[k++] = "--SequentialMatching.loop_detection";
        ma[k++] = "1";
        ma[k++] = "--SequentialMatching.vocab_tree_path";
        ma[k++] = (char *)o->vocab_tree;
    }
    ma[k] = NULL;
    say_command(o, ma);
    sp = (spawn_progress){.label = "matching", .parse = parse_match, .f = o->progress};
    rc = run_child(ma, log, NULL, &sp, &res->cpu_seconds[GS_PREP_MATCHING]);
    if (rc < 0) return PK_ERR_IO;
    if (rc != 0)
        return pk_error(PK_ERR_IO, "colmap %s failed (exit status %d); see %s", mname, rc, log);
    res->seconds[GS_PREP_MATCHING] = run_now() - t0;

    /* 4. mapping */
    say(o, "stage 4/4: mapping (COLMAP incremental SfM)");
    t0 = run_now();
    pjoin(log, sizeof log, logs, "mapper.log");
    char *mp[] = {colmap,
                  "mapper",
                  "--database_path",
                  db,
                  "--image_path",
                  images,
                  "--output_path",
                  sparse,
                  "--Mapper.num_threads",
                  thr,
                  "--Mapper.filter_max_reproj_error",
                  (char *)px_filter,
                  NULL};
    say_command(o, mp);
    sp = (spawn_progress){.label = "registered", .total = n, .parse = parse_map, .f = o->progress};
    rc = run_child(mp, log, NULL, &sp, &res->cpu_seconds[GS_PREP_MAPPING]);
    if (rc < 0) return PK_ERR_IO;
    /* the models made: sparse/0, sparse/1, ... */
    int best = -1, best_n = 0, models = 0;
    for (int m = 0; m < 1000; m++) {
        char md[4096];
        snprintf(md, sizeof md, "%s/%d", sparse, m);
        if (!io_is_dir(md)) break;
        pk_scene sc = {0};
        int c = model_images(md, images, &sc);
        scene_free(&sc);
        models++;
        if (c > best_n) best = m, best_n = c;
    }
    res->models = models;
    if (best < 0)
        return pk_error(PK_ERR_INVALID,
                        "COLMAP registered no model from the %d images (mapper exit status %d; "
                        "see %s and %s/*_matcher.log). Try: more photos with more overlap "
                        "(each spot seen from 3+ views, small steps between views), a textured, "
                        "static scene, sharp images, --matcher exhaustive, or --camera-per-image "
                        "when the photos come from different cameras or zoom levels",
                        n, rc, log, logs);
    /* keep the largest as sparse/0 */
    if (best != 0) {
        char a[4096], b[4096], c[4096];
        snprintf(a, sizeof a, "%s/0", sparse);
        snprintf(b, sizeof b, "%s/other-0", sparse);
        snprintf(c, sizeof c, "%s/%d", sparse, best);
        if (rename(a, b) != 0 || rename(c, a) != 0)
            return pk_error(PK_ERR_IO, "cannot move model %s to %s: %s", c, a, strerror(errno));
    }
    for (int m = 1; m < models; m++) {
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/%d", sparse, m);
        snprintf(b, sizeof b, "%s/other-%d", sparse, m);
        if (io_is_dir(a) && rename(a, b) != 0)
            return pk_error(PK_ERR_IO, "cannot move model %s: %s", a, strerror(errno));
    }
    char m0[4096];
    snprintf(m0, sizeof m0, "%s/0", sparse);
    pk_scene sc = {0};
    if (model_images(m0, images, &sc) < 0) return PK_ERR_IO;
    res->registered = sc.n;
    res->points = (int64_t)sc.n_points;
    /* unregistered: the images not in the model */
    name_list all;
    pk_status s = list_images(images, &all);
    if (s == PK_OK) {
        res->unregistered = calloc((size_t)all.n + 1, sizeof(char *));
        if (!res->unregistered) s = PK_ERR_NOMEM;
        for (int i = 0; i < all.n && s == PK_OK; i++) {
            bool found = false;
            for (int j = 0; j < sc.n && !found; j++)
                found = strcmp(sc.cams[j].name, all.v[i]) == 0;
            if (!found) res->unregistered[res->n_unregistered++] = io_strdup(all.v[i]);
        }
        names_free(&all);
    }
    scene_free(&sc);
    if (s != PK_OK) return s;
    pjoin(log, sizeof log, logs, "model_analyzer.log");
    char *an[] = {colmap, "model_analyzer", "--path", m0, NULL};
    if (run_child(an, log, NULL, NULL, &res->cpu_seconds[GS_PREP_MAPPING]) == 0)
        analyzer_numbers(log, res);
    res->seconds[GS_PREP_MAPPING] = run_now() - t0;
    return write_summary(o, scene, res, hash);
}

/* Reads prepare.json's summary when its hash is `hash`; false otherwise. */
static bool read_summary(const char *scene, uint64_t hash, gs_prepare_result *r) {
    char path[4096], hx[32];
    pjoin(path, sizeof path, scene, "prepare.json");
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)hash);
    uint8_t *buf;
    size_t len;
    if (!io_is_file(path) || io_read_file(path, &buf, &len) != PK_OK) return false;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *h = cJSON_GetObjectItem(j, "source_hash");
    bool ok = cJSON_IsString(h) && strcmp(h->valuestring, hx) == 0;
    if (ok) {
        const cJSON *v;
        if ((v = cJSON_GetObjectItem(j, "images_given"))) r->given = v->valueint;
        if ((v = cJSON_GetObjectItem(j, "images_registered"))) r->registered = v->valueint;
        if ((v = cJSON_GetObjectItem(j, "points"))) r->points = (int64_t)v->valuedouble;
        if ((v = cJSON_GetObjectItem(j, "mean_reprojection_error_px")))
            r->mean_reprojection_error = v->valuedouble;
        if ((v = cJSON_GetObjectItem(j, "models"))) r->models = v->valueint;
        const cJSON *u = cJSON_GetObjectItem(j, "unregistered");
        int n = cJSON_GetArraySize(u);
        r->unregistered = calloc((size_t)n + 1, sizeof(char *));
        for (int i = 0; r->unregistered && i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(u, i);
            if (cJSON_IsString(e)) r->unregistered[r->n_unregistered++] = strdup(e->valuestring);
        }
        r->matcher = "";
        char m0[4096];
        snprintf(m0, sizeof m0, "%s/sparse/0", scene);
        ok = io_is_dir(m0);
    }
    cJSON_Delete(j);
    return ok;
}

pk_status gs_prepare_cached(const gs_prepare_options *o, gs_prepare_result *res) {
    *res = (gs_prepare_result){0};
    uint64_t hash;
    if ((o->images || o->video) && source_hash(o, &hash) == PK_OK &&
        read_summary(o->out, hash, res)) {
        res->reused = true;
        return PK_OK;
    }
    gs_prepare_result_free(res);
    return gs_prepare(o, res);
}

void gs_prepare_result_free(gs_prepare_result *res) {
    if (!res) return;
    for (int i = 0; i < res->n_unregistered; i++)
        free(res->unregistered[i]);
    free(res->unregistered);
    res->unregistered = NULL;
    res->n_unregistered = 0;
}
