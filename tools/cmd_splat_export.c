/* cmd_splat_export.c - `polyak splat export --format ply --run DIR`: bakes a trained decoder
 * model (Scaffold-GS or Momentum-GS, whose Gaussians the MLPs decode per view) into a standard
 * 3DGS PLY with colours as SH fitted over the training views (tasks/gs/gs_bake.h), and reports
 * the held-out PSNR of the baked PLY's render against the decoders' own render. The run is
 * rebuilt from DIR/options.json and its newest checkpoint in a scratch folder (DIR is only
 * read; the PLY is written atomically). */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "gs_train.h"
#include "io_util.h"
#include "momentum.h"
#include "ply.h"

static const char *usage =
    "--run DIR [--format ply] [--out FILE (default DIR/baked.ply)] [--sh-degree 0..3 (3)] "
    "[--view-stride S (1: every training view)] [--data SCENE (default: the run's)] "
    "[--threads T]";

/* Number `key` of object j, or def. */
static double num(const cJSON *j, const char *key, double def) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(x) ? x->valuedouble : def;
}

static bool flag(const cJSON *j, const char *key, bool def) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(x) ? cJSON_IsTrue(x) : def;
}

static const char *str(const cJSON *j, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *f) {
    (void)sb, (void)type, (void)f;
    return remove(path);
}

int cmd_splat_export(int argc, char **argv) {
    const char *C = "splat export";
    const char *run = NULL, *out = NULL, *data = NULL, *format = "ply";
    long degree = 3, stride = 1, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: polyak splat export %s\n", usage);
            return 0;
        }
        if (!v) return cli_usage(C, usage, "an option is missing its value");
        if (strcmp(a, "--run") == 0)
            run = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--format") == 0)
            format = v;
        else if (strcmp(a, "--sh-degree") == 0) {
            if (!cli_int(C, a, v, 0, 3, &degree)) return 2;
        } else if (strcmp(a, "--view-stride") == 0) {
            if (!cli_int(C, a, v, 1, 1000000, &stride)) return 2;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_int(C, a, v, 1, 1024, &threads)) return 2;
        } else
            return cli_usage(C, usage, "unknown option");
        i++;
    }
    if (!run) return cli_usage(C, usage, "--run is required");
    if (strcmp(format, "ply") != 0)
        return cli_usage(C, usage, "--format: only ply (a standard 3DGS PLY) is written");
    char *opath = io_path_join(run, "options.json");
    size_t len = 0;
    uint8_t *text = NULL;
    if (!opath || io_read_file(opath, &text, &len) != PK_OK) {
        free(opath);
        return cli_fail(C, "reading the run's options.json");
    }
    cJSON *j = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        fprintf(stderr, "polyak %s: %s: not a JSON object\n", C, opath);
        free(opath);
        cJSON_Delete(j);
        return 1;
    }
    const char *model = str(j, "model");
    if (!model || (strcmp(model, "scaffold") != 0 && strcmp(model, "momentum-gs") != 0)) {
        fprintf(stderr,
                "polyak %s: %s: model %s: only decoder models (scaffold, momentum-gs) are baked; "
                "a 3DGS run's point_cloud.ply is a standard PLY already\n",
                C, opath, model ? model : "3dgs");
        free(opath);
        cJSON_Delete(j);
        return 1;
    }
    free(opath);
    /* the run's options, as the resume check compares them */
    gs_train_options o = {0};
    o.data = data ? data : str(j, "data");
    o.iters = (int64_t)num(j, "iters", 0);
    o.seed = (uint64_t)num(j, "seed", 0);
    o.downscale = (int)num(j, "downscale", 1);
    o.test_every = (int)num(j, "test_every", 8);
    o.max_gaussians = (int64_t)num(j, "max_gaussians", 0);
    o.init_points = (int64_t)num(j, "init_points", 0);
    o.densify_from = (int64_t)num(j, "densify_from", 0);
    o.densify_until = (int64_t)num(j, "densify_until", 0);
    o.densify_interval = (int64_t)num(j, "densify_interval", 0);
    o.opacity_reset = (int64_t)num(j, "opacity_reset", 0);
    o.sh_interval = (int64_t)num(j, "sh_interval", 0);
    int nd = (int)num(j, "num_downscales", 0);
    o.num_downscales = nd > 0 ? nd : -1;
    o.resolution_schedule = (int64_t)num(j, "resolution_schedule", 0);
    const cJSON *bg = cJSON_GetObjectItemCaseSensitive(j, "background");
    for (int k = 0; k < 3 && cJSON_GetArraySize(bg) == 3; k++)
        o.background[k] = (float)cJSON_GetArrayItem(bg, k)->valuedouble;
    o.random_background = num(j, "random_background", 0) > 0 ? 1 : -1;
    double pb = num(j, "prune_big_scale", 0);
    o.prune_big_scale = pb > 0 ? pb : -1;
    o.grad_threshold = num(j, "grad_threshold", 0);
    o.model = model;
    o.voxel_size = num(j, "voxel_size", 0);
    const char *dev = str(j, "device");
    o.device = dev && *dev ? dev : NULL;
    o.threads = threads ? (int)threads : (int)num(j, "threads", 0);
    mgs_options mo = {0};
    char *mjson = NULL;
    if (strcmp(model, "momentum-gs") == 0) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "source");
        if (!cJSON_IsObject(s)) {
            cJSON_Delete(j);
            return cli_fail(C, "options.json: the Momentum-GS options (\"source\") are missing");
        }
        mo.blocks = (int)num(s, "blocks", 0);
        mo.block_steps = (int64_t)num(s, "block_steps", 0);
        mo.independent = flag(s, "independent", false);
        mo.no_teacher = !mo.independent && !flag(s, "teacher", true);
        mo.no_weighting = !mo.independent && !flag(s, "weighting", true);
        mo.momentum = num(s, "momentum", 0);
        mo.cons_weight = num(s, "consistency_weight", 0);
        mo.sigma = num(s, "sigma", 0);
        mo.weight_interval = (int64_t)num(s, "weight_interval", 0);
        mo.voxel_size = num(s, "voxel_size", 0);
        mo.margin = num(s, "margin", 0);
        mo.view_share = num(s, "view_share", 0);
        mo.val_views = (int)num(s, "val_views", 0);
        /* the blocks in parallel shape the model; the run's devices do not: every lane runs
         * on the one device here */
        mo.parallel = (int)num(s, "parallel_blocks", 1);
        mo.threads = o.threads;
        mo = mgs_defaults(mo);
        mjson = mgs_options_json(&mo);
        o.make_source = mgs_make_source;
        o.make_source_arg = &mo;
        o.source_json = mjson;
    }
    if (!o.data) {
        cJSON_Delete(j);
        free(mjson);
        return cli_fail(C, "options.json names no scene (\"data\"); give --data");
    }
    /* a scratch run folder holding a link to the newest checkpoint */
    char *cdir = io_path_join(run, "checkpoints");
    int64_t step = -1;
    if (!cdir || checkpoint_find_latest(cdir, &step) != PK_OK || step < 0) {
        fprintf(stderr, "polyak %s: %s: no checkpoint to export\n", C, cdir ? cdir : run);
        free(cdir), free(mjson);
        cJSON_Delete(j);
        return 1;
    }
    char tmp[] = "/tmp/polyak-export-XXXXXX", link[200], src[4200], name[64];
    int rc = 1;
    gs_trainer *t = NULL;
    pk_gaussians g = {0};
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "polyak %s: cannot create a scratch folder in /tmp\n", C);
        goto done;
    }
    snprintf(link, sizeof link, "%s/checkpoints", tmp);
    snprintf(name, sizeof name, "ckpt-%lld.safetensors", (long long)step);
    char *abs = realpath(cdir, NULL);
    snprintf(src, sizeof src, "%s/%s", abs ? abs : cdir, name);
    free(abs);
    if (mkdir(link, 0777) != 0) goto done;
    snprintf(link, sizeof link, "%s/checkpoints/%s", tmp, name);
    if (symlink(src, link) != 0) {
        fprintf(stderr, "polyak %s: cannot link %s\n", C, src);
        goto done;
    }
    o.out = tmp;
    o.resume = true;
    if (gs_trainer_create(&o, &t) != PK_OK) {
        rc = cli_fail(C, "rebuilding the run from its options and newest checkpoint");
        goto done;
    }
    gs_bake_report r;
    if (gs_trainer_bake(t, (int)degree, (int)stride, &g, &r) != PK_OK) {
        rc = cli_fail(C, "baking");
        goto done;
    }
    char def[4200];
    if (!out) {
        snprintf(def, sizeof def, "%s/baked.ply", run);
        out = def;
    }
    if (ply_write_3dgs(out, &g) != PK_OK) {
        rc = cli_fail(C, "writing the PLY");
        goto done;
    }
    printf("baked %lld Gaussians of step %lld (SH degree %d, fitted over %d training views) in "
           "%.1f s: %s\n",
           (long long)r.gaussians, (long long)step, r.sh_degree, r.views, r.seconds, out);
    if (r.images)
        printf("held-out PSNR (%d views): decoders %.2f dB, baked PLY %.2f dB (drop %.2f dB); "
               "SSIM %.4f -> %.4f; baked render against the decoders' render %.2f dB\n",
               r.images, r.psnr_decoder, r.psnr_baked, r.psnr_decoder - r.psnr_baked,
               r.ssim_decoder, r.ssim_baked, r.psnr_vs_decoder);
    rc = 0;
done:
    gaussians_free(&g);
    gs_trainer_destroy(t);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(cdir), free(mjson);
    cJSON_Delete(j);
    return rc;
}
