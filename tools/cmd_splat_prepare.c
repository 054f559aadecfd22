/* cmd_splat_prepare.c - `polyak splat prepare`: photos or a video to a COLMAP project with
 * COLMAP and ffmpeg (tasks/gs/gs_prepare.h), and the summary; splat_prepare_print is shared
 * with `splat train --data` on a folder of plain images. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "gs_prepare.h"

static const char *usage =
    "(--images DIR | --video FILE [--fps F] [--max-frames N]) --out SCENE "
    "[--matcher exhaustive|sequential|vocab] [--vocab-tree FILE] [--camera-model M] "
    "[--camera-per-image] [--max-image-size PX] [--max-features N] [--threads T]";

void splat_prepare_print(const gs_prepare_options *o, const gs_prepare_result *r) {
    if (r->reused) {
        printf("reusing %s (prepared from the same images before): %d of %d images registered, "
               "%lld points\n",
               o->out, r->registered, r->given, (long long)r->points);
        return;
    }
    printf("prepared %s: %d of %d images registered, %lld points, mean reprojection error "
           "%.3f px%s\n",
           o->out, r->registered, r->given, (long long)r->points, r->mean_reprojection_error,
           r->models > 1 ? " (largest of the models COLMAP made)" : "");
    if (r->models > 1)
        printf("COLMAP made %d separate models; the largest is sparse/0, the others are in "
               "sparse/other-*\n",
               r->models);
    if (r->n_unregistered) {
        printf("not registered (%d):", r->n_unregistered);
        for (int i = 0; i < r->n_unregistered; i++)
            printf(" %s", r->unregistered[i]);
        printf("\n");
    }
    double tw = 0, tc = 0;
    for (int k = 0; k < GS_PREP_STAGES; k++)
        tw += r->seconds[k], tc += r->cpu_seconds[k];
    printf("time (wall / CPU s): input %.1f / %.1f, features %.1f / %.1f, matching (%s) %.1f / "
           "%.1f, mapping %.1f / %.1f, total %.1f / %.1f\n",
           r->seconds[GS_PREP_INPUT], r->cpu_seconds[GS_PREP_INPUT], r->seconds[GS_PREP_FEATURES],
           r->cpu_seconds[GS_PREP_FEATURES], r->matcher, r->seconds[GS_PREP_MATCHING],
           r->cpu_seconds[GS_PREP_MATCHING], r->seconds[GS_PREP_MAPPING],
           r->cpu_seconds[GS_PREP_MAPPING], tw, tc);
    printf("logs: %s/logs/  summary: %s/prepare.json\n", o->out, o->out);
}

int cmd_splat_prepare(int argc, char **argv) {
    const char *C = "splat prepare";
    gs_prepare_options o = {.progress = stderr};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double d;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: polyak splat prepare %s\n", usage);
            return 0;
        } else if (strcmp(a, "--camera-per-image") == 0) {
            o.camera_per_image = true;
            continue;
        }
        if (!v) return cli_missing(C, usage, a);
        if (strcmp(a, "--images") == 0)
            o.images = v;
        else if (strcmp(a, "--video") == 0)
            o.video = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--matcher") == 0) {
            if (strcmp(v, "exhaustive") && strcmp(v, "sequential") && strcmp(v, "vocab"))
                return cli_usage(C, usage, "--matcher expects exhaustive, sequential or vocab");
            o.matcher = v;
        } else if (strcmp(a, "--vocab-tree") == 0)
            o.vocab_tree = v;
        else if (strcmp(a, "--camera-model") == 0)
            o.camera_model = v;
        else if (strcmp(a, "--fps") == 0) {
            if (!cli_float(C, a, v, &d)) return 2;
            if (!(d > 0 && d <= 240))
                return cli_usage(C, usage, "--fps expects a value in (0, 240]");
            o.fps = d;
        } else if (strcmp(a, "--max-frames") == 0) {
            if (!cli_int(C, a, v, 3, 100000, &n)) return 2;
            o.max_frames = (int)n;
        } else if (strcmp(a, "--max-image-size") == 0) {
            if (!cli_int(C, a, v, 100, 100000, &n)) return 2;
            o.max_image_size = (int)n;
        } else if (strcmp(a, "--max-features") == 0) {
            if (!cli_int(C, a, v, 100, 1000000, &n)) return 2;
            o.max_features = (int)n;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_int(C, a, v, 1, 1024, &n)) return 2;
            o.threads = (int)n;
        } else {
            fprintf(stderr, "polyak %s: unknown option '%s'\n", C, a);
            return cli_usage(C, usage, NULL);
        }
        i++;
    }
    if (!o.out || !o.images == !o.video)
        return cli_usage(C, usage, "--out and one of --images or --video are required");
    if (o.images && (o.fps > 0 || o.max_frames > 0))
        return cli_usage(C, usage, "--fps and --max-frames apply to --video only");
    gs_prepare_result r;
    if (gs_prepare(&o, &r) != PK_OK) {
        gs_prepare_result_free(&r);
        return cli_fail(C, "preparing the scene");
    }
    splat_prepare_print(&o, &r);
    fflush(stdout);
    printf("train it: polyak splat train --data %s --out OUT\n", o.out);
    gs_prepare_result_free(&r);
    return 0;
}
