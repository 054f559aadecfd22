/* cmd_splat_train.c - `polyak splat train`: trains a 3D Gaussian splatting scene from posed
 * photos (COLMAP or transforms.json) with tasks/gs, shows progress through the trainer's run
 * (tasks/common/run.h), saves a checkpoint on Ctrl-C, and reports where the PLY, the renders
 * and the held-out PSNR are. A folder of plain photos (or holding one video, or a video file)
 * is first prepared into <folder>/polyak-scene/ with COLMAP (tasks/gs/gs_prepare.h), reused
 * while the images stay the same. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "commands.h"
#include "device.h"
#include "dist.h"
#include "gs_prepare.h"
#include "gs_source.h"
#include "gs_train.h"
#include "image.h"
#include "io_util.h"
#include "momentum.h"

/* True when dir holds a scene scene_load reads (io/scene.c's probe list). */
static bool is_scene_dir(const char *dir) {
    const char *probe[] = {"transforms.json",      "transforms_train.json", "sparse/0/cameras.bin",
                           "sparse/0/cameras.txt", "cameras.bin",           "cameras.txt",
                           "sparse/cameras.bin",   "sparse/cameras.txt"};
    for (int k = 0; k < 8; k++) {
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, probe[k]);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) return true;
    }
    return false;
}

/* The one video file in dir (malloc'd), or NULL when there is none or more than one. */
static char *only_video(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *found = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && gs_prepare_is_video(p) && n++ == 0) found = strdup(p);
    }
    closedir(d);
    if (n != 1) {
        free(found);
        return NULL;
    }
    return found;
}

/* When --data is no scene but photos or a video: prepares <folder>/polyak-scene (or reuses it)
 * and points *data there. Returns 0 to go on, else the exit code. */
static int prepare_if_needed(const char **data, int threads, char *scene, size_t n,
                             bool *prepared) {
    struct stat st;
    if (stat(*data, &st) != 0) return 0; /* scene_load reports it */
    gs_prepare_options po = {.progress = stderr, .threads = threads};
    char *video = NULL;
    if (S_ISREG(st.st_mode)) {
        if (!gs_prepare_is_video(*data)) return 0; /* a transforms.json */
        video = strdup(*data);
        char *dir = strdup(*data), *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        snprintf(scene, n, "%s/polyak-scene", slash ? dir : ".");
        free(dir);
    } else {
        if (is_scene_dir(*data)) return 0;
        snprintf(scene, n, "%s/polyak-scene", *data);
        int images = gs_prepare_count_images(*data);
        if (images <= 0) video = only_video(*data);
        if (images <= 0 && !video) {
            fprintf(stderr,
                    "polyak splat train: %s is no scene (no transforms.json or sparse/0/), and "
                    "holds no photos (.jpg, .jpeg, .png) or single video to prepare one from\n",
                    *data);
            return 2;
        }
        if (!video) {
            po.images = *data;
            bool agree = true;
            if (gs_prepare_sizes_agree(*data, &agree) != PK_OK)
                return cli_fail("splat train", "reading the photos");
            if (!agree) {
                po.camera_per_image = true;
                fprintf(stderr, "polyak splat train: the photos differ in size (portrait and "
                                "landscape?): one camera per image\n");
            }
        }
    }
    po.video = video;
    po.out = scene;
    fprintf(stderr,
            "polyak splat train: %s holds %s, not a posed scene: its COLMAP project is %s "
            "(made by polyak splat prepare unless the images are unchanged since the last time)\n",
            *data, video ? "a video" : "photos", scene);
    gs_prepare_result r;
    pk_status s = gs_prepare_cached(&po, &r);
    if (s == PK_OK) splat_prepare_print(&po, &r);
    fflush(stdout);
    gs_prepare_result_free(&r);
    free(video);
    if (s != PK_OK) return cli_fail("splat train", "preparing the scene from the photos");
    *data = scene;
    *prepared = true;
    return 0;
}

/* The longest side of the largest image in <scene>/images (0 when none can be read). */
static int photos_longest_side(const char *scene) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/images", scene);
    DIR *d = opendir(dir);
    int longest = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[4500];
        int w, h, c;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || image_probe(p, &w, &h, &c) != PK_OK) continue;
        if (w > longest) longest = w;
        if (h > longest) longest = h;
    }
    if (d) closedir(d);
    return longest;
}

static const char *usage =
    "--data SCENE|PHOTOS_DIR|VIDEO [--out DIR (default: <data>/polyak)] [--iters N] [--downscale "
    "K] [--eval-every-nth 8] "
    "[--eval-interval N] [--device D] [--resume] [--save-every N] [--seed S] "
    "[--max-gaussians N] [--init-points N] [--threads T] [--num-downscales N] "
    "[--resolution-schedule S] [--densify-from N] [--densify-until N] [--densify-interval N] "
    "[--densify-grad-threshold G] [--opacity-reset N] [--sh-interval N] [--background R,G,B] "
    "[--random-background] [--prune-big-scale F] [--model 3dgs|scaffold|momentum-gs] "
    "[--voxel-size V] [--anchor-interval N] [--blocks N] [--block-steps S] [--no-teacher] "
    "[--no-weighting] "
    "[--independent] [--consistency-weight W] [--weight-sigma S] [--devices LIST] "
    "[--parallel-blocks G] [--weight-interval N] [--consistency-grad all|features] "
    "[--consistency-terms LIST]";

int cmd_splat_train(int argc, char **argv) {
    gs_train_options o = {.seed = 0};
    mgs_options mo = {0}; /* Momentum-GS (--model momentum-gs) */
    const char *C = "splat train";
    bool fixed_background = false; /* --background: a fixed colour unless --random-background */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: polyak splat train %s\n", usage);
            return 0;
        } else if (strcmp(a, "--data") == 0 && v)
            o.data = v, i++;
        else if (strcmp(a, "--out") == 0 && v)
            o.out = v, i++;
        else if (strcmp(a, "--device") == 0 && v)
            o.device = v, i++;
        else if (strcmp(a, "--resume") == 0)
            o.resume = true;
        else if (strcmp(a, "--iters") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.iters = n, i++;
        } else if (strcmp(a, "--downscale") == 0) {
            if (!cli_int(C, a, v, 1, 64, &n)) return cli_usage(C, usage, NULL);
            o.downscale = (int)n, i++;
        } else if (strcmp(a, "--eval-every-nth") == 0) {
            if (!cli_int(C, a, v, 0, 1000000, &n)) return cli_usage(C, usage, NULL);
            o.test_every = n ? (int)n : -1, i++; /* 0: hold nothing out */
        } else if (strcmp(a, "--eval-interval") == 0) {
            if (!cli_int(C, a, v, 0, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.eval_interval = n, i++;
        } else if (strcmp(a, "--save-every") == 0) {
            if (!cli_int(C, a, v, 0, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.save_every = n, i++;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_int(C, a, v, 0, 1L << 62, &n)) return cli_usage(C, usage, NULL);
            o.seed = (uint64_t)n, i++;
        } else if (strcmp(a, "--max-gaussians") == 0) {
            if (!cli_int(C, a, v, 1, 1L << 40, &n)) return cli_usage(C, usage, NULL);
            o.max_gaussians = n, i++;
        } else if (strcmp(a, "--init-points") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.init_points = n, i++;
        } else if (strcmp(a, "--num-downscales") == 0) {
            if (!cli_int(C, a, v, 0, 8, &n)) return cli_usage(C, usage, NULL);
            o.num_downscales = n ? (int)n : -1, i++; /* 0: always full size */
        } else if (strcmp(a, "--resolution-schedule") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.resolution_schedule = n, i++;
        } else if (strcmp(a, "--densify-from") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.densify_from = n, i++;
        } else if (strcmp(a, "--densify-until") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.densify_until = n, i++;
        } else if (strcmp(a, "--densify-interval") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.densify_interval = n, i++;
        } else if (strcmp(a, "--densify-grad-threshold") == 0) {
            double g;
            if (!cli_float(C, a, v, &g)) return cli_usage(C, usage, NULL);
            if (!(g > 0)) return cli_usage(C, usage, "--densify-grad-threshold must be > 0");
            o.grad_threshold = g, i++;
        } else if (strcmp(a, "--prune-big-scale") == 0) {
            double g;
            if (!cli_float(C, a, v, &g)) return cli_usage(C, usage, NULL);
            if (!(g >= 0)) return cli_usage(C, usage, "--prune-big-scale must be >= 0 (0: never)");
            o.prune_big_scale = g > 0 ? g : -1, i++;
        } else if (strcmp(a, "--opacity-reset") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.opacity_reset = n, i++;
        } else if (strcmp(a, "--sh-interval") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            o.sh_interval = n, i++;
        } else if (strcmp(a, "--background") == 0 && v) {
            float *b = o.background;
            char tail;
            if (sscanf(v, "%f,%f,%f%c", &b[0], &b[1], &b[2], &tail) != 3)
                return cli_usage(C, usage, "--background expects R,G,B (each in [0, 1])");
            fixed_background = true, i++;
        } else if (strcmp(a, "--model") == 0 && v) {
            if (strcmp(v, "3dgs") != 0 && strcmp(v, "scaffold") != 0 &&
                strcmp(v, "momentum-gs") != 0)
                return cli_usage(C, usage, "--model expects 3dgs, scaffold or momentum-gs");
            o.model = v, i++;
        } else if (strcmp(a, "--blocks") == 0) {
            if (!cli_int(C, a, v, 1, 256, &n)) return cli_usage(C, usage, NULL);
            mo.blocks = (int)n, i++;
        } else if (strcmp(a, "--block-steps") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            mo.block_steps = n, i++;
        } else if (strcmp(a, "--devices") == 0 && v) {
            mo.devices = v, i++;
        } else if (strcmp(a, "--weight-interval") == 0) {
            if (!cli_int(C, a, v, 1, 100000000L, &n)) return cli_usage(C, usage, NULL);
            mo.weight_interval = n, i++;
        } else if (strcmp(a, "--parallel-blocks") == 0) {
            if (!cli_int(C, a, v, 1, 256, &n)) return cli_usage(C, usage, NULL);
            mo.parallel = (int)n, i++;
        } else if (strcmp(a, "--no-teacher") == 0) {
            mo.no_teacher = true;
        } else if (strcmp(a, "--no-weighting") == 0) {
            mo.no_weighting = true;
        } else if (strcmp(a, "--independent") == 0) {
            mo.independent = true;
        } else if (strcmp(a, "--consistency-terms") == 0 && v) {
            /* a diagnostic: a comma list of opacity, colour, scale, rotation */
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            mo.cons_terms = 0;
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                int bit = strcmp(t, "opacity") == 0    ? GS_CONS_OPACITY
                          : strcmp(t, "colour") == 0   ? GS_CONS_COLOUR
                          : strcmp(t, "scale") == 0    ? GS_CONS_SCALE
                          : strcmp(t, "rotation") == 0 ? GS_CONS_ROTATION
                                                       : 0;
                if (!bit)
                    return cli_usage(C, usage,
                                     "--consistency-terms: a comma list of opacity, colour, "
                                     "scale, rotation");
                mo.cons_terms |= bit;
            }
            i++;
        } else if (strcmp(a, "--consistency-grad") == 0 && v) {
            if (strcmp(v, "features") != 0 && strcmp(v, "all") != 0)
                return cli_usage(C, usage, "--consistency-grad must be all or features");
            mo.cons_features = strcmp(v, "features") == 0, i++;
        } else if (strcmp(a, "--consistency-weight") == 0 && v) {
            char *end;
            double g = strtod(v, &end);
            if (*end || !(g > 0)) return cli_usage(C, usage, "--consistency-weight must be > 0");
            mo.cons_weight = g, i++;
        } else if (strcmp(a, "--weight-sigma") == 0 && v) {
            char *end;
            double g = strtod(v, &end);
            if (*end || !(g > 0)) return cli_usage(C, usage, "--weight-sigma must be > 0");
            mo.sigma = g, i++;
        } else if (strcmp(a, "--voxel-size") == 0 && v) {
            char *end;
            double g = strtod(v, &end);
            if (*end || !(g >= 0)) return cli_usage(C, usage, "--voxel-size must be >= 0");
            o.voxel_size = g, i++;
        } else if (strcmp(a, "--anchor-interval") == 0) {
            if (!cli_int(C, a, v, 1, 1000000, &n)) return cli_usage(C, usage, NULL);
            o.scaffold_interval = n, i++;
        } else if (strcmp(a, "--random-background") == 0) {
            o.random_background = 1;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_int(C, a, v, 1, 1024, &n)) return cli_usage(C, usage, NULL);
            o.threads = (int)n, i++;
        } else
            return cli_usage(C, usage, "unknown option or missing value");
    }
    if (!o.data) return cli_usage(C, usage, "--data is required");
    /* "photos/" and "photos" name the same folder */
    char data[4096];
    snprintf(data, sizeof data, "%s", o.data);
    for (size_t n = strlen(data); n > 1 && data[n - 1] == '/'; n--)
        data[n - 1] = 0;
    o.data = data;
    char out[4200];
    if (!o.out) {
        /* default: <folder>/polyak (for a video file, beside it) */
        struct stat st;
        const char *slash = strrchr(data, '/');
        if (stat(data, &st) == 0 && S_ISREG(st.st_mode))
            snprintf(out, sizeof out, "%.*s/polyak", slash ? (int)(slash - data) : 1,
                     slash ? data : ".");
        else
            snprintf(out, sizeof out, "%s/polyak", data);
        o.out = out;
    }
    char scene[4096];
    if (!o.resume) {
        bool prepared = false;
        int prc = prepare_if_needed(&o.data, o.threads, scene, sizeof scene, &prepared);
        if (prc) return prc;
        if (prepared && !o.downscale) {
            /* 3DGS's rule for photos: train at most 1600 px wide (--downscale 1 keeps all) */
            int longest = photos_longest_side(scene);
            o.downscale = longest > 1600 ? (longest + 1599) / 1600 : 1;
            if (o.downscale > 1)
                fprintf(stderr,
                        "polyak splat train: photos of %d px: trained at 1/%d of the size "
                        "(at most 1600 px, as 3DGS; --downscale K chooses)\n",
                        longest, o.downscale);
        }
    } else if (!is_scene_dir(o.data)) {
        /* a resumed run of a prepared folder trains the prepared scene again */
        snprintf(scene, sizeof scene, "%s/polyak-scene", o.data);
        if (is_scene_dir(scene)) o.data = scene;
    }
    if (fixed_background && !o.random_background) o.random_background = -1;
    char *mjson = NULL;
    bool momentum = o.model && strcmp(o.model, "momentum-gs") == 0;
    char devs[8][64];
    if (momentum && mo.devices) { /* the trainer's context is the first device */
        int nd = 0;
        if (pk_device_list_parse(mo.devices, devs, 8, PK_DEVICE_LIST_REPEATS, &nd) != PK_OK)
            return cli_usage(C, usage, polyak_error());
        if (o.device && strcmp(o.device, devs[0]) != 0)
            return cli_usage(C, usage, "--device and the first of --devices differ");
        o.device = devs[0];
    }
    if (momentum && o.resume && !mo.parallel) {
        /* the blocks in parallel are the run's (they shape the model), whatever the devices and
         * ranks of the resumed run */
        char *path = io_path_join(o.out, "options.json");
        uint8_t *text = NULL;
        size_t len = 0;
        if (path && io_read_file(path, &text, &len) != PK_OK) text = NULL;
        cJSON *j = text ? cJSON_ParseWithLength((const char *)text, len) : NULL;
        const cJSON *g = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "source"), "parallel_blocks");
        if (cJSON_IsNumber(g)) mo.parallel = (int)g->valuedouble;
        cJSON_Delete(j);
        free(text), free(path);
    }
    if (momentum) {
        mo.voxel_size = o.voxel_size;
        mo.threads = o.threads;
        mo = mgs_defaults(mo);
        mjson = mgs_options_json(&mo);
        if (!mjson) return cli_fail(C, "out of memory");
        o.make_source = mgs_make_source;
        o.make_source_arg = &mo;
        o.source_json = mjson;
    } else if (mo.blocks || mo.block_steps || mo.no_teacher || mo.no_weighting || mo.independent ||
               mo.devices || mo.parallel || mo.weight_interval || mo.cons_features || mo.cons_terms)
        return cli_usage(C, usage, "--blocks and the Momentum-GS options need --model momentum-gs");
    o = gs_train_defaults(o);
    o.progress = stderr;
    o.catch_signals = true; /* Ctrl-C saves a checkpoint */
    gs_trainer *t = NULL;
    if (gs_trainer_create(&o, &t) != PK_OK) return cli_fail(C, "preparing the run");
    pk_run *run = gs_trainer_run(t);
    gs_train_info info = gs_trainer_info(t);
    run_info(run,
             "%s scene %s: %d training + %d held-out images of %dx%d, extent "
             "%.3f, %lld Gaussians (%s), device %s",
             info.scene_kind, o.data, info.train_images, info.test_images, info.width, info.height,
             info.extent, (long long)info.gaussians,
             info.start_step    ? "resumed"
             : info.from_points ? "from SfM points"
                                : "random",
             info.device_name);
    if (momentum) {
        mgs_info mi = mgs_source_info(gs_trainer_source(t));
        run_info(run, "Momentum-GS: %d blocks (%s%s%s), %lld steps per block in turn", mi.blocks,
                 mo.independent ? "independent blocks" : "shared decoder",
                 mo.independent || mo.no_teacher ? "" : ", teacher",
                 mo.independent || mo.no_weighting ? "" : ", block weights",
                 (long long)mo.block_steps);
        for (int b = 0; b < mi.blocks; b++)
            run_info(run,
                     "block %d: %lld anchors, %d training views, %d validation views, device %d", b,
                     (long long)mi.anchors[b], mi.train_views[b], mi.val_views[b], mi.device_of[b]);
        if (mi.lanes > 1)
            run_info(run,
                     "%d blocks in parallel (lanes) on %d rank%s x %d device%s (%s): the shared "
                     "decoder steps once per step on the mean of their weighted gradients",
                     mi.lanes, dist_size(), dist_size() > 1 ? "s" : "", mi.devices,
                     mi.devices > 1 ? "s" : "", mo.devices ? mo.devices : "the trainer's");
    }
    if (info.photos && !info.start_step)
        run_info(run,
                 "settings for photos: %s background, densification from "
                 "step %lld to %lld, %s (--background R,G,B, --densify-from N, --densify-until N, "
                 "--prune-big-scale F change them)",
                 info.random_background ? "random" : "fixed", (long long)info.densify_from,
                 (long long)info.densify_until,
                 info.prune_big_scale > 0 ? "world-size prune" : "no world-size prune");
    if (info.levels)
        run_info(run,
                 "coarse to fine: steps 1-%lld at 1/%d of the size, doubled "
                 "every %lld steps; held-out evaluation at full size",
                 (long long)info.resolution_schedule, 1 << info.levels,
                 (long long)info.resolution_schedule);
    if (info.device_fallback)
        run_info(run, "the default device has no Gaussian rasterizer "
                      "kernels yet; training on the CPU backend");
    int rc = 1;
    const char *status = "failed"; /* run.json's status and report.html's, written at the end */
    gs_eval ev;
    if (!info.start_step && info.test_images) {
        if (gs_trainer_evaluate(t, false, &ev) != PK_OK) {
            rc = cli_fail(C, "evaluating the initial Gaussians");
            goto done;
        }
        run_info(run, "held-out PSNR before training %.2f dB", ev.psnr);
    }
    int64_t first = gs_trainer_step_count(t);
    run_progress_start(run, "steps", o.iters - first);
    while (gs_trainer_step_count(t) < o.iters) {
        if (run_stop_requested(run)) {
            run_progress_end(run);
            if (gs_trainer_checkpoint(t) != PK_OK) {
                rc = cli_fail(C, "saving the checkpoint");
                goto done;
            }
            run_info(run,
                     "interrupted at step %lld: checkpoint saved in %s/checkpoints; "
                     "continue with --resume",
                     (long long)gs_trainer_step_count(t), o.out);
            rc = 130;
            status = "interrupted";
            goto done;
        }
        gs_step_result r;
        if (gs_trainer_step(t, &r) != PK_OK) {
            run_progress_end(run);
            rc = cli_fail(C, "training step");
            goto done;
        }
        if (r.evaluated)
            run_info(run, "step %lld held-out PSNR %.2f dB SSIM %.4f%s", (long long)r.step,
                     r.eval_psnr, r.eval_ssim,
                     r.opacity_reset ? " (just after an opacity reset: it recovers within a few "
                                       "hundred steps)"
                                     : "");
        if (r.anchors)
            run_progress_update(run, r.step - first,
                                "step %lld loss %.4f psnr %.2f anchors %lld (x10 Gaussians)",
                                (long long)r.step, r.loss, r.psnr, (long long)r.anchors);
        else
            run_progress_update(run, r.step - first, "step %lld loss %.4f psnr %.2f gaussians %lld",
                                (long long)r.step, r.loss, r.psnr, (long long)r.gaussians);
    }
    run_progress_end(run);
    if (gs_trainer_finish(t, &ev) != PK_OK) {
        rc = cli_fail(C, "writing the outputs");
        goto done;
    }
    if (momentum) {
        mgs_info mi = mgs_source_info(gs_trainer_source(t));
        char buf[8192];
        size_t at = (size_t)snprintf(buf, sizeof buf, "[");
        for (int b = 0; b < mi.blocks && at < sizeof buf - 200; b++) {
            at += (size_t)snprintf(buf + at, sizeof buf - at,
                                   "%s{\"anchors\": %lld, \"train_views\": %d, "
                                   "\"val_views\": %d, \"weight\": %.6f",
                                   b ? ", " : "", (long long)mi.anchors[b], mi.train_views[b],
                                   mi.val_views[b], mi.weights[b]);
            /* the latest validation behind the weight (weighting runs only) */
            if (mi.val_psnr)
                at += (size_t)snprintf(buf + at, sizeof buf - at,
                                       ", \"val_psnr\": %.4f, \"val_ssim\": %.5f", mi.val_psnr[b],
                                       mi.val_ssim[b]);
            at += (size_t)snprintf(buf + at, sizeof buf - at, "}");
        }
        snprintf(buf + at, sizeof buf - at, "]");
        run_metric_json(run, "blocks", buf);
        run_metric_str(run, "model", "momentum-gs");
        run_metric(run, "devices", mi.devices);
        run_metric(run, "parallel_blocks", mi.lanes);
        run_metric(run, "ranks", dist_size());
        if (dist_size() > 1) {
            char cj[200];
            snprintf(cj, sizeof cj, "{\"seconds\": %.3f, \"bytes\": %lld, \"calls\": %lld}",
                     mi.comm_seconds, (long long)mi.comm_bytes, (long long)mi.comm_calls);
            run_metric_json(run, "momentum_comm", cj);
        }
        char *bdir = io_path_join(o.out, "blocks");
        pk_status bs = !dist_is_root() ? PK_OK /* rank 0 writes the run folder */
                       : bdir          ? mgs_write_blocks(gs_trainer_source(t), bdir)
                                       : PK_ERR_NOMEM;
        free(bdir);
        if (bs != PK_OK) {
            rc = cli_fail(C, "writing the block checkpoints");
            goto done;
        }
        if (run_metrics_write(run) != PK_OK) {
            rc = cli_fail(C, "writing metrics.json");
            goto done;
        }
    }
    gs_timing tm = gs_trainer_timing(t);
    double per = tm.steps ? 1e3 / (double)tm.steps : 0;
    printf("trained %lld steps: %lld Gaussians\n", (long long)o.iters,
           (long long)gs_trainer_info(t).gaussians);
    if (ev.images)
        printf("held-out PSNR %.2f dB, SSIM %.4f on %d images\n", ev.psnr, ev.ssim, ev.images);
    const gs_phases *ph[2] = {&tm.wall, &tm.cpu};
    const char *clock[2] = {"ms per step (wall)", "ms per step (CPU) "};
    for (int k = 0; k < 2; k++)
        printf("%s: %.1f = raster fwd %.1f + bwd %.1f, loss fwd %.1f + bwd %.1f, optimizer %.1f, "
               "densify %.1f + stats %.1f, data %.1f, params in %.1f + grads out %.1f, other "
               "%.1f\n",
               clock[k], ph[k]->total * per, ph[k]->raster_fwd * per, ph[k]->raster_bwd * per,
               ph[k]->loss_fwd * per, ph[k]->loss_bwd * per, ph[k]->optimizer * per,
               ph[k]->densify * per, ph[k]->stats * per, ph[k]->data * per, ph[k]->params_in * per,
               ph[k]->grads_out * per, ph[k]->other * per);
    printf("PLY:     %s/point_cloud.ply\nrenders: %s/renders/ (ground truth | render)\n"
           "metrics: %s/metrics.json\nlog:     %s/log.csv\n",
           o.out, o.out, o.out, o.out);
    rc = 0;
    status = "finished";
done:
    run_report(run, status);
    gs_trainer_destroy(t);
    free(mjson);
    return rc;
}
