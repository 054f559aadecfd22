/* cmd_splat.c - `polyak splat <job>`: the Gaussian-splatting subcommands. Owns the dispatcher
 * and `render` (a 3DGS PLY through the cameras of a scene into PNGs named after the source
 * images). `train` lives in cmd_splat_train.c (cmd_splat_train); until that file is linked in
 * the symbol is weak and NULL, and `polyak splat train` says so. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd.h"
#include "cli.h"
#include "commands.h"
#include "image.h"
#include "ops/ops_splat.h"
#include "ply.h"
#include "scene.h"

/* Weak: tests that compile this file alone (tests/splat/test_splat_op.c) link neither. */
__attribute__((weak)) int cmd_splat_train(int argc, char **argv);
__attribute__((weak)) int cmd_splat_prepare(int argc, char **argv);
__attribute__((weak)) int cmd_splat_export(int argc, char **argv);

static const char *render_usage =
    "render --model FILE.ply --data SCENE --out DIR [--split test|train|all] [--downscale K] "
    "[--background R,G,B] [--device D]";

typedef struct render_opts {
    const char *model, *data, *out, *device;
    const char *split; /* "test", "train" or "all" */
    long downscale;
    float background[3];
} render_opts;

/* Creates `dir` and its missing parents; false with errno set on failure. */
static bool make_dirs(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return false;
    }
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return false;
        buf[i] = c;
    }
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* out/<image name without folders and extension>.png */
static void png_name(const char *out, const char *image, char *buf, size_t n) {
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    snprintf(buf, n, "%s/%.*s.png", out, len, base);
}

/* The rasterizer's camera for a scene camera (both OpenCV, world-to-camera, pixel centres at
 * integer + 0.5). */
static splat_camera splat_cam_of(const pk_camera *pc) {
    splat_camera c = {.fx = (float)pc->fx,
                      .fy = (float)pc->fy,
                      .cx = (float)pc->cx,
                      .cy = (float)pc->cy,
                      .width = pc->width,
                      .height = pc->height};
    for (int i = 0; i < 16; i++)
        c.world_to_cam[i] = (float)pc->w2c[i];
    return c;
}

/* Uploads the Gaussians of a 3DGS file as tensors in the parameter arena; SH is rearranged
 * from the file's channel-major f_rest into (N, K, 3). */
static pk_status upload_gaussians(pk_ctx *c, const pk_gaussians *g, pk_splat_inputs *in) {
    int64_t n = (int64_t)g->n, K = (int64_t)(g->sh_degree + 1) * (g->sh_degree + 1);
    float *sh = malloc(sizeof(float) * (size_t)(n * K * 3));
    if (!sh) return pk_error(PK_ERR_NOMEM, "out of host memory for %lld Gaussians", (long long)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++)
            for (int ch = 0; ch < 3; ch++)
                sh[(i * K + k) * 3 + ch] = k == 0
                                               ? g->f_dc[i * 3 + ch]
                                               : g->f_rest[i * 3 * (K - 1) + ch * (K - 1) + k - 1];
    *in = (pk_splat_inputs){.sh_degree = g->sh_degree};
    struct {
        tensor **t;
        int ndim;
        int64_t shape[3];
        const float *data;
    } f[5] = {{&in->means, 2, {n, 3}, g->xyz},
              {&in->log_scales, 2, {n, 3}, g->scale},
              {&in->quats, 2, {n, 4}, g->rot},
              {&in->opacity_logits, 1, {n}, g->opacity},
              {&in->sh, 3, {n, K, 3}, sh}};
    pk_status s = PK_OK;
    for (int i = 0; i < 5 && s == PK_OK; i++) {
        *f[i].t = tensor_new(c->params, PK_F32, f[i].ndim, f[i].shape);
        s = *f[i].t ? tensor_upload(*f[i].t, f[i].data) : PK_ERR_NOMEM;
    }
    free(sh);
    return s;
}

/* Renders one camera and writes its PNG. */
static pk_status render_one(pk_ctx *c, pk_splat_renderer *r, const pk_splat_inputs *in,
                            const pk_camera *cam, const char *path) {
    splat_camera sc = splat_cam_of(cam);
    int64_t hw = (int64_t)cam->width * cam->height;
    float *rgb = malloc(sizeof(float) * 3 * (size_t)hw);
    if (!rgb)
        return pk_error(PK_ERR_NOMEM, "out of host memory for a %dx%d image", cam->width,
                        cam->height);
    pk_image img = {0};
    pk_status s = PK_OK;
    /* Vulkan: a frame over the rasterizer's pair buffers is rendered again once they grew */
    for (int redo = 1, tries = 0; s == PK_OK && redo && tries < 3; tries++) {
        pk_splat_outputs out;
        s = pk_step_begin(c);
        if (s == PK_OK) s = pk_splat(c, r, &sc, in, &out);
        if (s == PK_OK) s = tensor_download(out.rgb, rgb);
        if (s == PK_OK) s = pk_splat_renderer_check(r, &redo);
    }
    if (s == PK_OK) s = image_create(&img, cam->width, cam->height, 3, 8);
    if (s == PK_OK) {
        uint8_t *px = img.data;
        for (int64_t i = 0; i < hw; i++)
            for (int ch = 0; ch < 3; ch++) {
                float v = rgb[ch * hw + i];
                v = v < 0.f ? 0.f : v > 1.f ? 1.f : v; /* NaN -> 0 too */
                px[i * 3 + ch] = (uint8_t)lrintf(v * 255.f);
            }
        s = png_write(path, &img);
    }
    image_free(&img);
    free(rgb);
    return s;
}

static int splat_render(const render_opts *o) {
    pk_gaussians g = {0};
    if (ply_read_3dgs(o->model, &g) != PK_OK) return cli_fail("splat render", "reading the model");
    pk_scene scene = {0};
    scene_options so = {.skip_image_check = 1};
    if (scene_load(o->data, &so, &scene) != PK_OK) {
        gaussians_free(&g);
        return cli_fail("splat render", "loading the scene");
    }
    int rc = 0;
    pk_ctx *c = NULL;
    pk_splat_renderer *r = NULL;
    pk_ctx_options co = {.device = o->device};
    if (pk_ctx_create(&co, &c) != PK_OK) {
        rc = cli_fail("splat render", "opening the device");
        goto done;
    }
    if (!o->device && !pk_op_get(PK_OP_SPLAT)->forward[c->backend]) {
        /* the default device has no rasterizer kernel yet: render on the CPU backend */
        pk_ctx_destroy(c);
        co.device = "cpu";
        if (pk_ctx_create(&co, &c) != PK_OK) {
            c = NULL;
            rc = cli_fail("splat render", "opening the CPU backend");
            goto done;
        }
    }
    pk_set_grad_enabled(c, false);
    pk_splat_inputs in;
    if (pk_splat_renderer_create(c, &r) != PK_OK || upload_gaussians(c, &g, &in) != PK_OK) {
        rc = cli_fail("splat render", "preparing the Gaussians");
        goto done;
    }
    memcpy(in.background, o->background, sizeof in.background);
    if (!make_dirs(o->out)) {
        fprintf(stderr, "polyak splat render: cannot create folder %s: %s\n", o->out,
                strerror(errno));
        rc = 1;
        goto done;
    }
    int want = 0;
    for (int i = 0; i < scene.n; i++)
        want += strcmp(o->split, "all") == 0 ||
                (strcmp(o->split, "test") == 0) == scene.cams[i].is_test;
    if (want == 0) {
        fprintf(stderr, "polyak splat render: %s has no %s views (%d views in all)\n", o->data,
                o->split, scene.n);
        rc = 1;
        goto done;
    }
    cli_progress p;
    cli_progress_start(&p, "render", want);
    double t0 = cli_now();
    int done_n = 0;
    for (int i = 0; i < scene.n && rc == 0; i++) {
        const pk_camera *src = &scene.cams[i];
        if (strcmp(o->split, "all") != 0 && (strcmp(o->split, "test") == 0) != src->is_test)
            continue;
        pk_camera cam = camera_scaled(src, (int)o->downscale);
        if (cam.width < 1 || cam.height < 1) {
            fprintf(stderr,
                    "polyak splat render: view %s is %dx%d, too small for --downscale %ld\n",
                    src->name, src->width, src->height, o->downscale);
            rc = 1;
            break;
        }
        char path[4096];
        png_name(o->out, src->name, path, sizeof path);
        if (render_one(c, r, &in, &cam, path) != PK_OK) {
            char what[4200];
            snprintf(what, sizeof what, "rendering view %s to %s", src->name, path);
            rc = cli_fail("splat render", what);
            break;
        }
        cli_progress_update(&p, ++done_n, NULL);
    }
    cli_progress_end(&p);
    if (rc == 0)
        printf("rendered %d %s views of %zu Gaussians (SH degree %d) to %s, %.1f ms per view\n",
               done_n, o->split, g.n, g.sh_degree, o->out,
               done_n ? (cli_now() - t0) * 1e3 / done_n : 0.0);
done:
    pk_splat_renderer_destroy(r);
    pk_ctx_destroy(c);
    scene_free(&scene);
    gaussians_free(&g);
    return rc;
}

/* Parses "R,G,B" with components in [0, 1]. */
static bool parse_rgb(const char *s, float out[3]) {
    double v[3];
    char tail;
    if (!s || sscanf(s, "%lf,%lf,%lf%c", &v[0], &v[1], &v[2], &tail) != 3) return false;
    for (int i = 0; i < 3; i++) {
        if (!(v[i] >= 0 && v[i] <= 1)) return false;
        out[i] = (float)v[i];
    }
    return true;
}

static int cmd_splat_render(int argc, char **argv) {
    const char *cmd = "splat render";
    render_opts o = {.split = "test", .downscale = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage("splat", render_usage, "an option is missing its value");
        if (strcmp(a, "--model") == 0)
            o.model = v;
        else if (strcmp(a, "--data") == 0)
            o.data = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--device") == 0)
            o.device = v;
        else if (strcmp(a, "--split") == 0) {
            if (strcmp(v, "test") && strcmp(v, "train") && strcmp(v, "all"))
                return cli_usage("splat", render_usage, "--split expects test, train or all");
            o.split = v;
        } else if (strcmp(a, "--downscale") == 0) {
            if (!cli_int(cmd, "--downscale", v, 1, 64, &o.downscale)) return 2;
        } else if (strcmp(a, "--background") == 0) {
            if (!parse_rgb(v, o.background))
                return cli_usage("splat", render_usage,
                                 "--background expects R,G,B with components in [0, 1]");
        } else {
            fprintf(stderr, "polyak %s: unknown option '%s'\n", cmd, a);
            return cli_usage("splat", render_usage, NULL);
        }
        i++;
    }
    if (!o.model || !o.data || !o.out)
        return cli_usage("splat", render_usage, "--model, --data and --out are required");
    return splat_render(&o);
}

int cmd_splat(int argc, char **argv) {
    const char *usage = "prepare|render|train|export [options] (polyak splat <job> --help)";
    if (argc < 2) return cli_usage("splat", usage, "which job?");
    if (strcmp(argv[1], "render") == 0) {
        if (argc == 3 && strcmp(argv[2], "--help") == 0) {
            printf("usage: polyak splat %s\n", render_usage);
            return 0;
        }
        return cmd_splat_render(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "prepare") == 0) {
        if (!cmd_splat_prepare) {
            fprintf(stderr, "polyak splat: 'prepare' is not built into this binary (it comes "
                            "with tools/cmd_splat_prepare.c)\n");
            return 2;
        }
        return cmd_splat_prepare(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "train") == 0) {
        if (!cmd_splat_train) {
            fprintf(stderr, "polyak splat: 'train' is not built into this binary (it comes with "
                            "tools/cmd_splat_train.c)\n");
            return 2;
        }
        return cmd_splat_train(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "export") == 0) {
        if (!cmd_splat_export) {
            fprintf(stderr, "polyak splat: 'export' is not built into this binary (it comes with "
                            "tools/cmd_splat_export.c)\n");
            return 2;
        }
        return cmd_splat_export(argc - 1, argv + 1);
    }
    return cli_usage("splat", usage, "unknown job");
}
