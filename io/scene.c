/* scene.c - COLMAP (binary and text) and transforms.json readers building one pk_scene, the
 * train/test split, and on-demand image loading with undistortion.
 *
 * Undistortion: the output is a pinhole image with the source's fx, fy, cx, cy. Each output
 * pixel is a ray (x, y) = ((u+0.5-cx)/fx, (v+0.5-cy)/fy); the distortion model maps it forward
 * to where that ray landed in the photo, which is bilinearly sampled. Backward warping needs
 * only the forward model, so no iterative inverse is required (the inverse is what one needs to
 * move distorted keypoints, which this module never does). */
#include "scene.h"
#include "io_util.h"
#include "ply.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cm_camera {
    int id, model;
    long long width, height;
    double params[8];
} cm_camera;

typedef struct cm_image {
    int id, camera_id;
    double q[4], t[3];
    char *name;
} cm_image;

typedef struct cm_model {
    int ncam, nimg;
    cm_camera *cams;
    cm_image *imgs;
    size_t npts;
    float *xyz;
    uint8_t *rgb;
} cm_model;

static const int cm_nparams[] = {3, 4, 4, 5, 8};
/* COLMAP's full model list, for naming unsupported ids in messages. */
static const char *const cm_all_names[] = {"SIMPLE_PINHOLE",
                                           "PINHOLE",
                                           "SIMPLE_RADIAL",
                                           "RADIAL",
                                           "OPENCV",
                                           "OPENCV_FISHEYE",
                                           "FULL_OPENCV",
                                           "FOV",
                                           "SIMPLE_RADIAL_FISHEYE",
                                           "RADIAL_FISHEYE",
                                           "THIN_PRISM_FISHEYE"};

const char *camera_model_name(cam_model m) {
    return (unsigned)m <= CAM_OPENCV ? cm_all_names[m] : "?";
}

static void cm_free(cm_model *m) {
    for (int i = 0; i < m->nimg; i++)
        free(m->imgs[i].name);
    free(m->cams);
    free(m->imgs);
    free(m->xyz);
    free(m->rgb);
    memset(m, 0, sizeof *m);
}

void scene_free(pk_scene *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->cams[i].name);
        free(s->cams[i].image_path);
    }
    free(s->cams);
    free(s->xyz);
    free(s->rgb);
    memset(s, 0, sizeof *s);
}

void scene_split_every(pk_scene *s, int every) {
    if (every == 0) every = 8;
    for (int i = 0; i < s->n; i++)
        s->cams[i].is_test = every > 0 && i % every == 0;
    s->file_split = 0;
}

int scene_count_test(const pk_scene *s) {
    int k = 0;
    for (int i = 0; i < s->n; i++)
        k += s->cams[i].is_test;
    return k;
}

static int cmp_cam_id(const void *a, const void *b) {
    const cm_camera *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_cam_name(const void *a, const void *b) {
    const pk_camera *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Checks one camera's model and parameters. */
static pk_status cm_check_camera(const char *name, const cm_camera *c) {
    if (c->model < 0 || c->model > 4) {
        const char *mn = c->model >= 0 && c->model <= 10 ? cm_all_names[c->model] : "unknown";
        return pk_error(PK_ERR_UNSUPPORTED,
                        "%s: camera %d: camera model %d (%s) not supported (expected "
                        "SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV)",
                        name, c->id, c->model, mn);
    }
    if (c->width <= 0 || c->height <= 0 || c->width > 65536 || c->height > 65536)
        return pk_error(PK_ERR_FORMAT, "%s: camera %d: size %lldx%lld, expected 1..65536", name,
                        c->id, c->width, c->height);
    for (int k = 0; k < cm_nparams[c->model]; k++)
        if (!io_finite(c->params[k]))
            return pk_error(PK_ERR_FORMAT, "%s: camera %d: parameter %d is not finite", name, c->id,
                            k);
    if (!(c->params[0] > 0) ||
        (c->model == CAM_PINHOLE || c->model == CAM_OPENCV ? !(c->params[1] > 0) : 0))
        return pk_error(PK_ERR_FORMAT, "%s: camera %d: focal length must be positive", name, c->id);
    return PK_OK;
}

/* Builds the scene from a parsed model: cameras joined to images, sorted by name. */
static pk_status cm_build(const char *name, cm_model *m, const char *images_dir, pk_scene *s) {
    memset(s, 0, sizeof *s);
    if (m->ncam > 1) qsort(m->cams, (size_t)m->ncam, sizeof *m->cams, cmp_cam_id);
    for (int i = 1; i < m->ncam; i++)
        if (m->cams[i].id == m->cams[i - 1].id)
            return pk_error(PK_ERR_FORMAT, "%s: camera id %d appears twice", name, m->cams[i].id);
    for (int i = 0; i < m->ncam; i++)
        PK_TRY(cm_check_camera(name, &m->cams[i]));
    s->cams = calloc((size_t)m->nimg + 1, sizeof *s->cams);
    if (!s->cams) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    for (int i = 0; i < m->nimg; i++) {
        const cm_image *im = &m->imgs[i];
        cm_camera key = {.id = im->camera_id};
        const cm_camera *c =
            m->ncam ? bsearch(&key, m->cams, (size_t)m->ncam, sizeof key, cmp_cam_id) : NULL;
        if (!c) {
            scene_free(s);
            return pk_error(PK_ERR_FORMAT,
                            "%s: image %d (\"%s\") refers to camera %d, which cameras lacks", name,
                            im->id, im->name, im->camera_id);
        }
        double qn = 0;
        int finite = 1;
        for (int k = 0; k < 4; k++)
            qn += im->q[k] * im->q[k], finite &= io_finite(im->q[k]);
        for (int k = 0; k < 3; k++)
            finite &= io_finite(im->t[k]);
        if (!finite || !(qn > 1e-12) || !io_finite(qn)) {
            scene_free(s);
            return pk_error(PK_ERR_FORMAT,
                            "%s: image %d (\"%s\"): pose must be finite with a non-zero "
                            "quaternion",
                            name, im->id, im->name);
        }
        pk_camera *pc = &s->cams[s->n];
        pc->name = io_strdup(im->name);
        pc->image_path = io_path_join(images_dir, im->name);
        s->n++;
        if (!pc->name || !pc->image_path) {
            scene_free(s);
            return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
        }
        const double *p = c->params;
        pc->camera_id = c->id;
        pc->model = (cam_model)c->model;
        pc->width = (int)c->width;
        pc->height = (int)c->height;
        switch (c->model) {
        case CAM_SIMPLE_PINHOLE: pc->fx = pc->fy = p[0], pc->cx = p[1], pc->cy = p[2]; break;
        case CAM_PINHOLE: pc->fx = p[0], pc->fy = p[1], pc->cx = p[2], pc->cy = p[3]; break;
        case CAM_SIMPLE_RADIAL:
            pc->fx = pc->fy = p[0], pc->cx = p[1], pc->cy = p[2], pc->k1 = p[3];
            break;
        case CAM_RADIAL:
            pc->fx = pc->fy = p[0], pc->cx = p[1], pc->cy = p[2], pc->k1 = p[3], pc->k2 = p[4];
            break;
        default:
            pc->fx = p[0], pc->fy = p[1], pc->cx = p[2], pc->cy = p[3];
            pc->k1 = p[4], pc->k2 = p[5], pc->p1 = p[6], pc->p2 = p[7];
        }
        /* R from the unit quaternion (w, x, y, z); COLMAP stores world-to-camera. */
        double s2 = 1.0 / sqrt(qn), w = im->q[0] * s2, x = im->q[1] * s2, y = im->q[2] * s2,
               z = im->q[3] * s2;
        double R[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                       2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                       2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
        for (int r = 0; r < 3; r++) {
            for (int k = 0; k < 3; k++)
                pc->w2c[r * 4 + k] = R[r * 3 + k];
            pc->w2c[r * 4 + 3] = im->t[r];
        }
        pc->w2c[15] = 1;
    }
    if (s->n > 1) qsort(s->cams, (size_t)s->n, sizeof *s->cams, cmp_cam_name);
    for (int i = 1; i < s->n; i++)
        if (!strcmp(s->cams[i].name, s->cams[i - 1].name)) {
            pk_status st = pk_error(PK_ERR_FORMAT, "%s: image name \"%s\" appears twice", name,
                                    s->cams[i].name);
            scene_free(s);
            return st;
        }
    s->n_points = m->npts;
    s->xyz = m->xyz;
    s->rgb = m->rgb;
    m->xyz = NULL;
    m->rgb = NULL;
    m->npts = 0;
    scene_split_every(s, 8);
    return PK_OK;
}

/* ---- binary ---- */

static pk_status cm_bin_cameras(const char *name, const uint8_t *b, size_t n, cm_model *m) {
    io_cursor c = {b, n, 0, 0};
    uint64_t count = cursor_u64(&c);
    if (c.bad) return pk_error(PK_ERR_FORMAT, "%s: cameras.bin: truncated count", name);
    if (count > cursor_left(&c) / 24)
        return pk_error(PK_ERR_FORMAT,
                        "%s: cameras.bin: header says %llu cameras but only %zu bytes follow", name,
                        (unsigned long long)count, cursor_left(&c));
    m->cams = calloc((size_t)count + 1, sizeof *m->cams);
    if (!m->cams) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    for (uint64_t i = 0; i < count; i++) {
        cm_camera *cam = &m->cams[m->ncam++];
        cam->id = cursor_i32(&c);
        cam->model = cursor_i32(&c);
        uint64_t w = cursor_u64(&c), h = cursor_u64(&c);
        cam->width = w > 1u << 30 ? -1 : (long long)w;
        cam->height = h > 1u << 30 ? -1 : (long long)h;
        if (c.bad)
            return pk_error(PK_ERR_FORMAT, "%s: cameras.bin: record %llu truncated", name,
                            (unsigned long long)i);
        if (cam->model < 0 || cam->model > 4) return cm_check_camera(name, cam);
        for (int k = 0; k < cm_nparams[cam->model]; k++)
            cam->params[k] = cursor_f64(&c);
        if (c.bad)
            return pk_error(PK_ERR_FORMAT, "%s: cameras.bin: camera %d: parameters truncated", name,
                            cam->id);
    }
    if (cursor_left(&c))
        return pk_error(PK_ERR_FORMAT, "%s: cameras.bin: %zu unexpected bytes after %llu cameras",
                        name, cursor_left(&c), (unsigned long long)count);
    return PK_OK;
}

static pk_status cm_bin_images(const char *name, const uint8_t *b, size_t n, cm_model *m) {
    io_cursor c = {b, n, 0, 0};
    uint64_t count = cursor_u64(&c);
    if (c.bad) return pk_error(PK_ERR_FORMAT, "%s: images.bin: truncated count", name);
    /* Smallest record: id 4 + pose 56 + camera 4 + name NUL 1 + point count 8. */
    if (count > cursor_left(&c) / 73)
        return pk_error(PK_ERR_FORMAT,
                        "%s: images.bin: header says %llu images but only %zu bytes follow", name,
                        (unsigned long long)count, cursor_left(&c));
    m->imgs = calloc((size_t)count + 1, sizeof *m->imgs);
    if (!m->imgs) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    for (uint64_t i = 0; i < count; i++) {
        cm_image *im = &m->imgs[m->nimg];
        im->id = cursor_i32(&c);
        for (int k = 0; k < 4; k++)
            im->q[k] = cursor_f64(&c);
        for (int k = 0; k < 3; k++)
            im->t[k] = cursor_f64(&c);
        im->camera_id = cursor_i32(&c);
        if (c.bad)
            return pk_error(PK_ERR_FORMAT, "%s: images.bin: record %llu truncated", name,
                            (unsigned long long)i);
        const uint8_t *start = c.p + c.pos;
        const uint8_t *nul = memchr(start, 0, cursor_left(&c));
        if (!nul)
            return pk_error(PK_ERR_FORMAT, "%s: images.bin: image %d: name not NUL-terminated",
                            name, im->id);
        size_t nl = (size_t)(nul - start);
        if (nl == 0)
            return pk_error(PK_ERR_FORMAT, "%s: images.bin: image %d: empty name", name, im->id);
        im->name = malloc(nl + 1);
        if (!im->name) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
        memcpy(im->name, start, nl + 1);
        m->nimg++;
        c.pos += nl + 1;
        uint64_t np = cursor_u64(&c);
        if (c.bad || np > cursor_left(&c) / 24)
            return pk_error(PK_ERR_FORMAT,
                            "%s: images.bin: image %d: %llu 2D points do not fit in the %zu bytes "
                            "left",
                            name, im->id, (unsigned long long)np, cursor_left(&c));
        c.pos += (size_t)np * 24;
    }
    if (cursor_left(&c))
        return pk_error(PK_ERR_FORMAT, "%s: images.bin: %zu unexpected bytes after %llu images",
                        name, cursor_left(&c), (unsigned long long)count);
    return PK_OK;
}

static pk_status cm_bin_points(const char *name, const uint8_t *b, size_t n, cm_model *m) {
    io_cursor c = {b, n, 0, 0};
    uint64_t count = cursor_u64(&c);
    if (c.bad) return pk_error(PK_ERR_FORMAT, "%s: points3D.bin: truncated count", name);
    if (count > cursor_left(&c) / 51) /* id 8 + xyz 24 + rgb 3 + error 8 + track 8 */
        return pk_error(PK_ERR_FORMAT,
                        "%s: points3D.bin: header says %llu points but only %zu bytes follow", name,
                        (unsigned long long)count, cursor_left(&c));
    m->xyz = malloc(sizeof(float) * 3 * ((size_t)count + 1));
    m->rgb = malloc(3 * ((size_t)count + 1));
    if (!m->xyz || !m->rgb) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t id = cursor_u64(&c);
        double p[3];
        for (int k = 0; k < 3; k++)
            p[k] = cursor_f64(&c);
        cursor_read(&c, m->rgb + 3 * i, 3);
        (void)cursor_f64(&c);
        uint64_t tl = cursor_u64(&c);
        if (c.bad)
            return pk_error(PK_ERR_FORMAT, "%s: points3D.bin: record %llu truncated", name,
                            (unsigned long long)i);
        for (int k = 0; k < 3; k++) {
            if (!io_finite(p[k]) || fabs(p[k]) > 3e38)
                return pk_error(PK_ERR_FORMAT,
                                "%s: points3D.bin: point %llu: coordinate %c is "
                                "not finite",
                                name, (unsigned long long)id, "xyz"[k]);
            m->xyz[3 * i + k] = (float)p[k];
        }
        if (tl > cursor_left(&c) / 8)
            return pk_error(PK_ERR_FORMAT,
                            "%s: points3D.bin: point %llu: track of %llu entries past the end",
                            name, (unsigned long long)id, (unsigned long long)tl);
        c.pos += (size_t)tl * 8;
        m->npts++;
    }
    if (cursor_left(&c))
        return pk_error(PK_ERR_FORMAT, "%s: points3D.bin: %zu unexpected bytes after %llu points",
                        name, cursor_left(&c), (unsigned long long)count);
    return PK_OK;
}

pk_status colmap_parse_binary(const char *name, const uint8_t *cams, size_t ncams,
                              const uint8_t *imgs, size_t nimgs, const uint8_t *pts, size_t npts,
                              const char *images_dir, pk_scene *scene) {
    memset(scene, 0, sizeof *scene);
    cm_model m;
    memset(&m, 0, sizeof m);
    pk_status s = cm_bin_cameras(name, cams, ncams, &m);
    if (s == PK_OK) s = cm_bin_images(name, imgs, nimgs, &m);
    if (s == PK_OK && pts) s = cm_bin_points(name, pts, npts, &m);
    if (s == PK_OK) s = cm_build(name, &m, images_dir, scene);
    cm_free(&m);
    if (s == PK_OK) scene->kind = "colmap-binary";
    return s;
}

/* ---- text ---- */

/* Iterates lines of a NUL-terminated text: copies the next line into *line (malloc'd). */
typedef struct text_iter {
    const char *p;
    int lineno;
} text_iter;

static int text_next(text_iter *it, char **line) {
    if (!*it->p) return 0;
    const char *e = strchr(it->p, '\n');
    size_t n = e ? (size_t)(e - it->p) : strlen(it->p);
    *line = malloc(n + 1);
    if (!*line) return -1;
    memcpy(*line, it->p, n);
    (*line)[n] = 0;
    if (n && (*line)[n - 1] == '\r') (*line)[n - 1] = 0;
    it->p += n + (e ? 1 : 0);
    it->lineno++;
    return 1;
}

static int blank_or_comment(const char *l) {
    while (*l == ' ' || *l == '\t')
        l++;
    return *l == 0 || *l == '#';
}

/* Parses up to max doubles from p; returns how many, or -1 on a bad token. */
static int parse_doubles(const char *p, double *out, int max) {
    int k = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) return k;
        char *end;
        double v = strtod(p, &end);
        if (end == p || k == max) return -1;
        out[k++] = v;
        p = end;
    }
}

static pk_status cm_txt_cameras(const char *name, const char *text, cm_model *m) {
    text_iter it = {text, 0};
    char *line;
    int cap = 0, r;
    pk_status s = PK_OK;
    while (s == PK_OK && (r = text_next(&it, &line)) != 0) {
        if (r < 0) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
        if (blank_or_comment(line)) {
            free(line);
            continue;
        }
        if (m->ncam == cap) {
            cap = cap ? cap * 2 : 16;
            cm_camera *n2 = realloc(m->cams, sizeof *n2 * (size_t)cap);
            if (!n2) {
                free(line);
                return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
            }
            m->cams = n2;
        }
        cm_camera *c = &m->cams[m->ncam];
        memset(c, 0, sizeof *c);
        char model[64];
        int used = 0;
        if (sscanf(line, "%d %63s %lld %lld %n", &c->id, model, &c->width, &c->height, &used) < 4) {
            s = pk_error(PK_ERR_FORMAT,
                         "%s: cameras.txt line %d: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS",
                         name, it.lineno);
        } else {
            c->model = -1;
            for (int k = 0; k < 11; k++)
                if (!strcmp(model, cm_all_names[k])) c->model = k;
            if (c->model < 0 || c->model > 4) {
                s = pk_error(PK_ERR_UNSUPPORTED,
                             "%s: cameras.txt line %d: camera model \"%s\" not supported "
                             "(expected SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV)",
                             name, it.lineno, model);
            } else if (parse_doubles(line + used, c->params, 8) != cm_nparams[c->model]) {
                s = pk_error(PK_ERR_FORMAT, "%s: cameras.txt line %d: %s expects %d parameters",
                             name, it.lineno, model, cm_nparams[c->model]);
            } else {
                m->ncam++;
            }
        }
        free(line);
    }
    return s;
}

static pk_status cm_txt_images(const char *name, const char *text, cm_model *m) {
    text_iter it = {text, 0};
    char *line;
    int cap = 0, r;
    pk_status s = PK_OK;
    while (s == PK_OK && (r = text_next(&it, &line)) != 0) {
        if (r < 0) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
        if (blank_or_comment(line)) {
            free(line);
            continue;
        }
        if (m->nimg == cap) {
            cap = cap ? cap * 2 : 16;
            cm_image *n2 = realloc(m->imgs, sizeof *n2 * (size_t)cap);
            if (!n2) {
                free(line);
                return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
            }
            m->imgs = n2;
        }
        cm_image *im = &m->imgs[m->nimg];
        memset(im, 0, sizeof *im);
        int used = 0;
        if (sscanf(line, "%d %lf %lf %lf %lf %lf %lf %lf %d %n", &im->id, &im->q[0], &im->q[1],
                   &im->q[2], &im->q[3], &im->t[0], &im->t[1], &im->t[2], &im->camera_id,
                   &used) < 9 ||
            !line[used]) {
            s = pk_error(PK_ERR_FORMAT,
                         "%s: images.txt line %d: expected IMAGE_ID QW QX QY QZ TX TY TZ "
                         "CAMERA_ID NAME",
                         name, it.lineno);
        } else {
            char *nm = line + used, *e = nm + strlen(nm);
            while (e > nm && (e[-1] == ' ' || e[-1] == '\t'))
                *--e = 0;
            im->name = io_strdup(nm);
            if (!im->name)
                s = PK_ERR_NOMEM;
            else
                m->nimg++;
        }
        free(line);
        /* The next line lists the image's 2D points (it may be empty): skip it. */
        if (s == PK_OK && (r = text_next(&it, &line)) > 0) free(line);
    }
    return s;
}

static pk_status cm_txt_points(const char *name, const char *text, cm_model *m) {
    text_iter it = {text, 0};
    char *line;
    size_t cap = 0;
    int r;
    pk_status s = PK_OK;
    while (s == PK_OK && (r = text_next(&it, &line)) != 0) {
        if (r < 0) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
        if (blank_or_comment(line)) {
            free(line);
            continue;
        }
        if (m->npts == cap) {
            cap = cap ? cap * 2 : 1024;
            float *x2 = realloc(m->xyz, sizeof(float) * 3 * cap);
            if (x2) m->xyz = x2;
            uint8_t *c2 = x2 ? realloc(m->rgb, 3 * cap) : NULL;
            if (c2) m->rgb = c2;
            if (!c2) {
                free(line);
                return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
            }
        }
        long long id;
        double p[3], err;
        int rgb[3];
        if (sscanf(line, "%lld %lf %lf %lf %d %d %d %lf", &id, &p[0], &p[1], &p[2], &rgb[0],
                   &rgb[1], &rgb[2], &err) < 8) {
            s = pk_error(PK_ERR_FORMAT,
                         "%s: points3D.txt line %d: expected POINT3D_ID X Y Z R G B ERROR TRACK",
                         name, it.lineno);
        } else {
            for (int k = 0; k < 3 && s == PK_OK; k++) {
                if (!io_finite(p[k]) || fabs(p[k]) > 3e38)
                    s = pk_error(PK_ERR_FORMAT,
                                 "%s: points3D.txt line %d: coordinate %c is not finite", name,
                                 it.lineno, "xyz"[k]);
                else if (rgb[k] < 0 || rgb[k] > 255)
                    s = pk_error(PK_ERR_FORMAT,
                                 "%s: points3D.txt line %d: colour %d outside 0..255", name,
                                 it.lineno, rgb[k]);
                m->xyz[3 * m->npts + (size_t)k] = (float)p[k];
                m->rgb[3 * m->npts + (size_t)k] = (uint8_t)rgb[k];
            }
            if (s == PK_OK) m->npts++;
        }
        free(line);
    }
    return s;
}

pk_status colmap_parse_text(const char *name, const char *cams, const char *imgs, const char *pts,
                            const char *images_dir, pk_scene *scene) {
    memset(scene, 0, sizeof *scene);
    cm_model m;
    memset(&m, 0, sizeof m);
    pk_status s = cm_txt_cameras(name, cams, &m);
    if (s == PK_OK) s = cm_txt_images(name, imgs, &m);
    if (s == PK_OK && pts) s = cm_txt_points(name, pts, &m);
    if (s == PK_OK) s = cm_build(name, &m, images_dir, scene);
    cm_free(&m);
    if (s == PK_OK) scene->kind = "colmap-text";
    return s;
}

/* Checks that every view's image file exists. */
static pk_status scene_check_images(const char *name, const pk_scene *s) {
    for (int i = 0; i < s->n; i++)
        if (!io_is_file(s->cams[i].image_path))
            return pk_error(PK_ERR_IO, "%s: image \"%s\": file %s is missing", name,
                            s->cams[i].name, s->cams[i].image_path);
    return PK_OK;
}

pk_status colmap_load(const char *dir, const scene_options *opts, pk_scene *scene) {
    memset(scene, 0, sizeof *scene);
    scene_options o = opts ? *opts : (scene_options){0};
    const char *files[2][3] = {{"cameras.bin", "images.bin", "points3D.bin"},
                               {"cameras.txt", "images.txt", "points3D.txt"}};
    char *paths[3] = {0};
    int text = 0;
    paths[0] = io_path_join(dir, files[0][0]);
    if (paths[0] && !io_is_file(paths[0])) {
        free(paths[0]);
        text = 1;
        paths[0] = io_path_join(dir, files[1][0]);
    }
    for (int k = 1; k < 3; k++)
        paths[k] = io_path_join(dir, files[text][k]);
    uint8_t *buf[3] = {0};
    size_t len[3] = {0};
    pk_status s = PK_OK;
    if (!paths[0] || !paths[1] || !paths[2]) s = pk_error(PK_ERR_NOMEM, "%s: out of memory", dir);
    for (int k = 0; k < 3 && s == PK_OK; k++)
        s = io_read_file(paths[k], &buf[k], &len[k]);
    char *images_dir = NULL;
    if (s == PK_OK) {
        if (o.images_dir) {
            images_dir = io_strdup(o.images_dir);
        } else {
            const char *cand[] = {"../../images", "../images", "images"};
            for (int k = 0; k < 3 && !images_dir; k++) {
                char *p = io_path_join(dir, cand[k]);
                if (p && io_is_dir(p))
                    images_dir = p;
                else
                    free(p);
            }
            if (!images_dir)
                s = pk_error(PK_ERR_IO,
                             "%s: no images folder found (looked for ../../images, ../images and "
                             "images next to the model)",
                             dir);
        }
    }
    if (s == PK_OK && !images_dir) s = PK_ERR_NOMEM;
    if (s == PK_OK) {
        if (text)
            s = colmap_parse_text(dir, (char *)buf[0], (char *)buf[1], (char *)buf[2], images_dir,
                                  scene);
        else
            s = colmap_parse_binary(dir, buf[0], len[0], buf[1], len[1], buf[2], len[2], images_dir,
                                    scene);
    }
    if (s == PK_OK && !o.skip_image_check) s = scene_check_images(dir, scene);
    if (s == PK_OK) scene_split_every(scene, o.test_every);
    if (s != PK_OK) scene_free(scene);
    for (int k = 0; k < 3; k++) {
        free(paths[k]);
        free(buf[k]);
    }
    free(images_dir);
    return s;
}

/* ---- transforms.json ---- */

/* Reads an optional number field of obj into *out; returns 0 when present but not finite. */
static int json_num(const cJSON *obj, const char *key, double *out, int *present) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    *present = 0;
    if (!j) return 1;
    if (!cJSON_IsNumber(j) || !io_finite(j->valuedouble)) return 0;
    *out = j->valuedouble;
    *present = 1;
    return 1;
}

typedef struct tf_intr {
    double v[11]; /* angle_x, angle_y, fl_x, fl_y, cx, cy, w, h, k1, k2, p1 */
    double p2;
    int has[12];
} tf_intr;

static const char *const tf_keys[12] = {"camera_angle_x",
                                        "camera_angle_y",
                                        "fl_x",
                                        "fl_y",
                                        "cx",
                                        "cy",
                                        "w",
                                        "h",
                                        "k1",
                                        "k2",
                                        "p1",
                                        "p2"};

static pk_status tf_read_intr(const char *name, const cJSON *obj, const char *where, tf_intr *in) {
    /* Only the OPENCV subset (k1, k2, p1, p2) is undistorted; refuse what would be ignored. */
    static const char *const unsupported[] = {"k3", "k4"};
    for (int k = 0; k < 2; k++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, unsupported[k]);
        if (j && !(cJSON_IsNumber(j) && j->valuedouble == 0))
            return pk_error(PK_ERR_UNSUPPORTED,
                            "%s: %s: distortion coefficient %s is not supported (only k1, k2, p1, "
                            "p2)",
                            name, where, unsupported[k]);
    }
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(obj, "camera_model");
    if (cm && !(cJSON_IsString(cm) &&
                (!strcmp(cm->valuestring, "OPENCV") || !strcmp(cm->valuestring, "PINHOLE"))))
        return pk_error(
            PK_ERR_UNSUPPORTED,
            "%s: %s: camera_model must be OPENCV or PINHOLE (fisheye and equirectangular "
            "are not supported)",
            name, where);
    for (int k = 0; k < 12; k++) {
        double v = 0;
        int has = 0;
        if (!json_num(obj, tf_keys[k], &v, &has))
            return pk_error(PK_ERR_FORMAT, "%s: %s: field %s must be a finite number", name, where,
                            tf_keys[k]);
        if (has) {
            if (k < 11)
                in->v[k] = v;
            else
                in->p2 = v;
            in->has[k] = 1;
        }
    }
    return PK_OK;
}

/* Adds frames of one transforms JSON to scene; split_override: -1 none, 0 train, 1 test. */
static pk_status tf_add(const char *name, const cJSON *root, const char *base_dir, int probe,
                        int split_override, pk_scene *s, int *any_split) {
    if (!cJSON_IsObject(root))
        return pk_error(PK_ERR_FORMAT, "%s: top level must be a JSON object", name);
    tf_intr global;
    memset(&global, 0, sizeof global);
    PK_TRY(tf_read_intr(name, root, "top level", &global));
    const cJSON *frames = cJSON_GetObjectItemCaseSensitive(root, "frames");
    if (!cJSON_IsArray(frames))
        return pk_error(PK_ERR_FORMAT, "%s: field frames missing or not an array", name);
    int nf = cJSON_GetArraySize(frames);
    pk_camera *nc = realloc(s->cams, sizeof *nc * ((size_t)s->n + (size_t)nf + 1));
    if (!nc) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
    s->cams = nc;
    int fi = 0;
    const cJSON *fr;
    cJSON_ArrayForEach(fr, frames) {
        char where[64];
        snprintf(where, sizeof where, "frames[%d]", fi);
        if (!cJSON_IsObject(fr))
            return pk_error(PK_ERR_FORMAT, "%s: %s: expected an object", name, where);
        tf_intr in = global;
        PK_TRY(tf_read_intr(name, fr, where, &in));
        const cJSON *fp = cJSON_GetObjectItemCaseSensitive(fr, "file_path");
        if (!cJSON_IsString(fp) || !fp->valuestring[0])
            return pk_error(PK_ERR_FORMAT, "%s: %s: field file_path missing or not a string", name,
                            where);
        pk_camera *c = &s->cams[s->n];
        memset(c, 0, sizeof *c);
        c->name = io_strdup(fp->valuestring);
        c->image_path = io_path_join(base_dir, fp->valuestring);
        s->n++;
        if (!c->name || !c->image_path) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
        /* Blender-synthetic paths omit the extension ("./train/r_0"). */
        if (probe && !io_is_file(c->image_path)) {
            size_t l = strlen(c->image_path);
            char *p2 = malloc(l + 5);
            if (!p2) return pk_error(PK_ERR_NOMEM, "%s: out of memory", name);
            memcpy(p2, c->image_path, l);
            memcpy(p2 + l, ".png", 5);
            if (io_is_file(p2)) {
                free(c->image_path);
                c->image_path = p2;
            } else {
                free(p2);
                return pk_error(PK_ERR_IO, "%s: %s: image file %s is missing", name, where,
                                c->image_path);
            }
        }
        double w = in.v[6], h = in.v[7];
        if (!in.has[6] || !in.has[7]) {
            int iw, ih, ic;
            if (!probe)
                return pk_error(PK_ERR_FORMAT, "%s: %s: no w/h given and image probing is off",
                                name, where);
            PK_TRY(image_probe(c->image_path, &iw, &ih, &ic));
            if (!in.has[6]) w = iw;
            if (!in.has[7]) h = ih;
        }
        if (!(w >= 1 && w <= 65536 && h >= 1 && h <= 65536) || floor(w) != w || floor(h) != h)
            return pk_error(PK_ERR_FORMAT, "%s: %s: image size %gx%g, expected integers 1..65536",
                            name, where, w, h);
        c->width = (int)w;
        c->height = (int)h;
        if (in.has[2])
            c->fx = in.v[2];
        else if (in.has[0] && in.v[0] > 0 && in.v[0] < M_PI)
            c->fx = 0.5 * w / tan(0.5 * in.v[0]);
        else
            return pk_error(PK_ERR_FORMAT,
                            "%s: %s: focal length missing: need fl_x or camera_angle_x in (0, pi)",
                            name, where);
        if (in.has[3])
            c->fy = in.v[3];
        else if (in.has[1] && in.v[1] > 0 && in.v[1] < M_PI)
            c->fy = 0.5 * h / tan(0.5 * in.v[1]);
        else
            c->fy = c->fx;
        c->cx = in.has[4] ? in.v[4] : 0.5 * w;
        c->cy = in.has[5] ? in.v[5] : 0.5 * h;
        if (!(c->fx > 0) || !(c->fy > 0) || !io_finite(c->fx) || !io_finite(c->fy))
            return pk_error(PK_ERR_FORMAT, "%s: %s: focal length must be positive and finite", name,
                            where);
        c->k1 = in.v[8], c->k2 = in.v[9], c->p1 = in.v[10], c->p2 = in.p2;
        c->model =
            (c->k1 != 0 || c->k2 != 0 || c->p1 != 0 || c->p2 != 0) ? CAM_OPENCV : CAM_PINHOLE;
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(fr, "transform_matrix");
        double M[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        int rows = cJSON_IsArray(tm) ? cJSON_GetArraySize(tm) : 0;
        if (rows != 3 && rows != 4)
            return pk_error(PK_ERR_FORMAT,
                            "%s: %s: field transform_matrix must be a 4x4 (or 3x4) array", name,
                            where);
        for (int r = 0; r < rows; r++) {
            const cJSON *row = cJSON_GetArrayItem(tm, r);
            if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != 4)
                return pk_error(PK_ERR_FORMAT,
                                "%s: %s: transform_matrix row %d must have 4 numbers", name, where,
                                r);
            for (int k = 0; k < 4; k++) {
                const cJSON *v = cJSON_GetArrayItem(row, k);
                if (!cJSON_IsNumber(v) || !io_finite(v->valuedouble))
                    return pk_error(PK_ERR_FORMAT,
                                    "%s: %s: transform_matrix[%d][%d] is not a finite number", name,
                                    where, r, k);
                M[r * 4 + k] = v->valuedouble;
            }
        }
        /* OpenGL camera (x right, y up, z back) to OpenCV (y down, z forward): negate
         * columns 1 and 2 of the camera-to-world rotation. */
        double R[9], t[3];
        for (int r = 0; r < 3; r++) {
            R[r * 3 + 0] = M[r * 4 + 0];
            R[r * 3 + 1] = -M[r * 4 + 1];
            R[r * 3 + 2] = -M[r * 4 + 2];
            t[r] = M[r * 4 + 3];
        }
        /* Rigid check: R^T R = I within 1e-3 (files are written with ~1e-7 float noise). */
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                double d = 0;
                for (int r = 0; r < 3; r++)
                    d += R[r * 3 + a] * R[r * 3 + b];
                if (fabs(d - (a == b)) > 1e-3)
                    return pk_error(PK_ERR_FORMAT,
                                    "%s: %s: transform_matrix rotation is not orthonormal", name,
                                    where);
            }
        if (fabs(M[12]) + fabs(M[13]) + fabs(M[14]) + fabs(M[15] - 1) > 1e-6)
            return pk_error(PK_ERR_FORMAT, "%s: %s: transform_matrix last row must be 0 0 0 1",
                            name, where);
        for (int r = 0; r < 3; r++) {
            double tr = 0;
            for (int k = 0; k < 3; k++) {
                c->w2c[r * 4 + k] = R[k * 3 + r];
                tr -= R[k * 3 + r] * t[k];
            }
            c->w2c[r * 4 + 3] = tr;
        }
        c->w2c[15] = 1;
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(fr, "split");
        if (split_override >= 0) {
            c->is_test = split_override;
            *any_split = 1;
        } else if (sp) {
            if (!cJSON_IsString(sp) ||
                (strcmp(sp->valuestring, "train") && strcmp(sp->valuestring, "test") &&
                 strcmp(sp->valuestring, "val")))
                return pk_error(PK_ERR_FORMAT, "%s: %s: field split must be train, test or val",
                                name, where);
            c->is_test = strcmp(sp->valuestring, "train") != 0;
            *any_split = 1;
        }
        fi++;
    }
    return PK_OK;
}

pk_status transforms_parse(const char *name, const char *text, size_t len, const char *base_dir,
                           int probe, pk_scene *scene) {
    memset(scene, 0, sizeof *scene);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return pk_error(PK_ERR_FORMAT, "%s: not valid JSON", name);
    int any = 0;
    pk_status s = tf_add(name, root, base_dir, probe, -1, scene, &any);
    if (s == PK_OK && probe) {
        const cJSON *pf = cJSON_GetObjectItemCaseSensitive(root, "ply_file_path");
        if (cJSON_IsString(pf)) {
            char *pp = io_path_join(base_dir, pf->valuestring);
            ply_table t;
            s = pp ? ply_read(pp, &t) : PK_ERR_NOMEM;
            if (s == PK_OK) {
                s = ply_table_to_points(pp, &t, &scene->xyz, &scene->rgb);
                if (s == PK_OK) scene->n_points = t.n;
                ply_table_free(&t);
            }
            free(pp);
        }
    }
    cJSON_Delete(root);
    if (s == PK_OK && scene->n == 0) s = pk_error(PK_ERR_FORMAT, "%s: no frames", name);
    if (s != PK_OK) {
        scene_free(scene);
        return s;
    }
    scene->kind = "transforms";
    if (any)
        scene->file_split = 1;
    else
        scene_split_every(scene, 8);
    return PK_OK;
}

/* Returns the folder part of path (malloc'd; "." when none). */
static char *path_dir(const char *path) {
    const char *sl = strrchr(path, '/');
    if (!sl) return io_strdup(".");
    size_t n = (size_t)(sl - path);
    char *d = malloc(n + 2);
    if (!d) return NULL;
    memcpy(d, path, n ? n : 1);
    d[n ? n : 1] = 0;
    return d;
}

pk_status transforms_load(const char *path, const scene_options *opts, pk_scene *scene) {
    memset(scene, 0, sizeof *scene);
    uint8_t *buf;
    size_t len;
    PK_TRY(io_read_file(path, &buf, &len));
    char *dir = path_dir(path);
    pk_status s = dir ? transforms_parse(path, (char *)buf, len, dir, 1, scene) : PK_ERR_NOMEM;
    free(buf);
    free(dir);
    if (s == PK_OK && !scene->file_split && opts && opts->test_every)
        scene_split_every(scene, opts->test_every);
    return s;
}

/* Loads Blender-synthetic transforms_train.json + transforms_test.json from dir. */
static pk_status blender_load(const char *dir, pk_scene *scene) {
    memset(scene, 0, sizeof *scene);
    const char *names[2] = {"transforms_train.json", "transforms_test.json"};
    pk_status s = PK_OK;
    int any = 0;
    for (int k = 0; k < 2 && s == PK_OK; k++) {
        char *p = io_path_join(dir, names[k]);
        uint8_t *buf = NULL;
        size_t len;
        s = p ? io_read_file(p, &buf, &len) : PK_ERR_NOMEM;
        if (s == PK_OK) {
            cJSON *root = cJSON_ParseWithLength((char *)buf, len);
            if (!root)
                s = pk_error(PK_ERR_FORMAT, "%s: not valid JSON", p);
            else
                s = tf_add(p, root, dir, 1, k, scene, &any);
            cJSON_Delete(root);
        }
        free(buf);
        free(p);
    }
    if (s != PK_OK) {
        scene_free(scene);
        return s;
    }
    scene->kind = "transforms";
    scene->file_split = 1;
    return PK_OK;
}

pk_status scene_load(const char *path, const scene_options *opts, pk_scene *scene) {
    memset(scene, 0, sizeof *scene);
    if (io_is_file(path)) return transforms_load(path, opts, scene);
    if (!io_is_dir(path)) return pk_error(PK_ERR_IO, "%s: no such file or folder", path);
    const char *probe[] = {"transforms.json",      "transforms_train.json", "sparse/0/cameras.bin",
                           "sparse/0/cameras.txt", "cameras.bin",           "cameras.txt",
                           "sparse/cameras.bin",   "sparse/cameras.txt"};
    for (int k = 0; k < 8; k++) {
        char *p = io_path_join(path, probe[k]);
        if (!p) return pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
        int found = io_is_file(p);
        free(p);
        if (!found) continue;
        if (k == 0) {
            char *tj = io_path_join(path, probe[0]);
            pk_status s = tj ? transforms_load(tj, opts, scene) : PK_ERR_NOMEM;
            free(tj);
            return s;
        }
        if (k == 1) return blender_load(path, scene);
        const char *sub = k < 4 ? "sparse/0" : k < 6 ? "." : "sparse";
        char *md = io_path_join(path, sub);
        if (!md) return pk_error(PK_ERR_NOMEM, "%s: out of memory", path);
        scene_options o = opts ? *opts : (scene_options){0};
        char *img = NULL;
        if (!o.images_dir && k < 8) {
            img = io_path_join(path, "images");
            if (img && io_is_dir(img)) o.images_dir = img;
        }
        pk_status s = colmap_load(md, &o, scene);
        free(img);
        free(md);
        return s;
    }
    return pk_error(PK_ERR_FORMAT,
                    "%s: not a scene folder (no transforms.json, transforms_train.json, sparse/0/ "
                    "or cameras.bin/.txt)",
                    path);
}

/* ---- images ---- */

pk_camera camera_scaled(const pk_camera *cam, int factor) {
    pk_camera c = *cam;
    if (factor > 1) {
        c.fx /= factor, c.fy /= factor, c.cx /= factor, c.cy /= factor;
        c.width = cam->width / factor;
        c.height = cam->height / factor;
    }
    return c;
}

void camera_distort(const pk_camera *cam, double x, double y, double *xd, double *yd) {
    double r2 = x * x + y * y, radial = cam->k1 * r2 + cam->k2 * r2 * r2;
    *xd = x + x * radial + 2 * cam->p1 * x * y + cam->p2 * (r2 + 2 * x * x);
    *yd = y + y * radial + 2 * cam->p2 * x * y + cam->p1 * (r2 + 2 * y * y);
}

pk_status camera_undistort(const pk_camera *cam, const pk_image *src, pk_image *dst) {
    memset(dst, 0, sizeof *dst);
    PK_TRY(image_create(dst, src->w, src->h, src->c, src->bits));
    int c = src->c;
    for (int v = 0; v < dst->h; v++)
        for (int u = 0; u < dst->w; u++) {
            double x = (u + 0.5 - cam->cx) / cam->fx, y = (v + 0.5 - cam->cy) / cam->fy, xd, yd;
            camera_distort(cam, x, y, &xd, &yd);
            double sx = cam->fx * xd + cam->cx - 0.5, sy = cam->fy * yd + cam->cy - 0.5;
            size_t o = ((size_t)v * (size_t)dst->w + (size_t)u) * (size_t)c;
            if (!(sx > -1 && sy > -1 && sx < src->w && sy < src->h)) continue; /* black */
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double tx = sx - x0, ty = sy - y0;
            for (int k = 0; k < c; k++) {
                double acc = 0, wsum = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int xx = x0 + dx, yy = y0 + dy;
                        if (xx < 0 || yy < 0 || xx >= src->w || yy >= src->h) continue;
                        double wgt = (dx ? tx : 1 - tx) * (dy ? ty : 1 - ty);
                        acc += wgt * image_get(src, xx, yy, k);
                        wsum += wgt;
                    }
                double val = wsum > 0 ? acc / wsum : 0;
                if (dst->bits == 16)
                    ((uint16_t *)dst->data)[o + (size_t)k] = (uint16_t)(val * 65535.0 + 0.5);
                else
                    ((uint8_t *)dst->data)[o + (size_t)k] = (uint8_t)(val * 255.0 + 0.5);
            }
        }
    return PK_OK;
}

pk_status scene_load_image(const pk_scene *scene, int i, int downscale, pk_image *img) {
    memset(img, 0, sizeof *img);
    if (i < 0 || i >= scene->n || downscale < 1)
        return pk_error(PK_ERR_INVALID, "scene_load_image: view %d of %d, downscale %d", i,
                        scene->n, downscale);
    const pk_camera *cam = &scene->cams[i];
    pk_image raw, rgb;
    PK_TRY(image_read(cam->image_path, &raw));
    if (raw.w != cam->width || raw.h != cam->height) {
        pk_status s = pk_error(PK_ERR_FORMAT, "%s: image is %dx%d but its camera says %dx%d",
                               cam->image_path, raw.w, raw.h, cam->width, cam->height);
        image_free(&raw);
        return s;
    }
    pk_status s = PK_OK;
    if (raw.c == 3 && raw.bits == 8) {
        rgb = raw;
    } else {
        pk_image tmp = raw;
        if (raw.bits == 16) { /* scenes train on 8-bit RGB: requantise */
            s = image_create(&tmp, raw.w, raw.h, raw.c, 8);
            size_t n = (size_t)raw.w * raw.h * raw.c;
            for (size_t k = 0; k < n && s == PK_OK; k++)
                ((uint8_t *)tmp.data)[k] =
                    (uint8_t)((((uint16_t *)raw.data)[k] * 255u + 32767u) / 65535u);
            image_free(&raw);
        }
        if (s == PK_OK) s = image_convert_channels(&tmp, 3, &rgb);
        image_free(&tmp);
    }
    if (s != PK_OK) return s;
    if (cam->model != CAM_PINHOLE && cam->model != CAM_SIMPLE_PINHOLE) {
        pk_image und;
        s = camera_undistort(cam, &rgb, &und);
        image_free(&rgb);
        if (s != PK_OK) return s;
        rgb = und;
    }
    if (downscale == 1) {
        *img = rgb;
        return PK_OK;
    }
    s = image_downscale(&rgb, downscale, img);
    image_free(&rgb);
    return s;
}
