/* cmd_features.c - `polyak features`: the final-norm class token of every image of a data set
 * under a frozen ViT backbone (timm's model.safetensors or Polyak's own), written as a
 * safetensors file (`features` (N, D) f32, `labels` (N) i32). Parses options, states the
 * preprocessing it chose, shows progress; the work is tasks/common's (backbone.h,
 * backbone_features.h, dataset_dir.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone.h"
#include "backbone_features.h"
#include "cli.h"
#include "commands.h"
#include "dataset_dir.h"
#include "safetensors.h"

static const char *usage =
    "--backbone FILE.safetensors --data DIR --out FILE.safetensors [--arch NAME]\n"
    "       [--split train|test] [--image-size S] [--crop-pct P] [--mean m1,m2,m3]\n"
    "       [--std s1,s2,s3] [--batch B] [--partial PREFIX[,PREFIX...]] [--limit N]\n"
    "       [--probe-blocks N] [--probe-avgpool] [--device D] [--threads T]\n"
    "Writes `features` (N, D) f32, the final-norm class token of every image of the split\n"
    "(default test), and `labels` (N) i32 when the data set has labels.\n"
    "  --probe-blocks N  DINO eval_linear's feature instead: the class tokens of the last N\n"
    "              blocks, each through the final norm, in block order (N D columns; the last\n"
    "              D are the final class token, which `polyak probe`'s k-NN uses); default 1\n"
    "  --probe-avgpool  append the mean of the last block's patch tokens (D columns)\n"
    "  --backbone  timm-layout safetensors (timm's model.safetensors, F32/F16/BF16, or one\n"
    "              Polyak wrote); a missing, unexpected or misshaped tensor is an error naming\n"
    "              each, unless --partial lists a name prefix to skip (e.g. head.)\n"
    "  --arch      a configuration name; optional when the file's metadata names it (Polyak's\n"
    "              backbones), else inferred from the shapes (heads = dim / 64, as timm's\n"
    "              vit_*_patch16 models). Known: vit_tiny_patch16_224, vit_small_patch16_224,\n"
    "              vit_base_patch16_224, vit_nano_patch4_28, vit_pico_patch7_28,\n"
    "              vit_tiny_patch4_28, vit_nano_patch4_32, vit_tiny_patch4_32\n"
    "  --data      Fashion-MNIST/MNIST IDX files, CIFAR-10/100 binary, or image folders\n"
    "              <split>/<class>/ (test falls back to val/)\n"
    "Preprocessing (timm's default evaluation transform): pixels / 255; shorter side resized\n"
    "to floor(S / crop_pct) with bicubic (antialiased, PIL's filter, as\n"
    "F.interpolate(bicubic, antialias=True); on float pixels, PIL would round to 8 bits;\n"
    "image folders are first read at that size with bilinear shrinking); centre crop S x S;\n"
    "(x - mean) / std. 1-channel data with a 3-channel backbone: the channel is replicated;\n"
    "3-channel data with a 1-channel backbone: luma 0.299 R + 0.587 G + 0.114 B.\n"
    "Defaults: S = the backbone's img_size; crop_pct, mean and std from the backbone's\n"
    "metadata when Polyak wrote them, else crop_pct 1.0 for Polyak's backbones and 0.875 for\n"
    "timm files (augreg in21k checkpoints were made with 0.9: pass --crop-pct 0.9), mean =\n"
    "std = 0.5 per channel (timm's in21k / augreg models; ImageNet-1k ones use --mean\n"
    "0.485,0.456,0.406 --std 0.229,0.224,0.225).";

/* Parses "a" or "a,b,c" into out[3] (one number is used for every channel). */
static bool triple(const char *opt, const char *v, float out[3]) {
    int n = 0;
    const char *p = v;
    while (n < 3) {
        char *end;
        double d = strtod(p, &end);
        if (end == p) break;
        out[n++] = (float)d;
        p = end;
        if (*p != ',') break;
        p++;
    }
    if (*p || (n != 1 && n != 3)) {
        fprintf(stderr, "polyak features: %s expects 1 or 3 numbers 'a,b,c', got '%s'\n", opt, v);
        return false;
    }
    if (n == 1) out[1] = out[2] = out[0];
    return true;
}

static void on_progress(void *user, int done, int total) {
    cli_progress_update(user, done, "images");
    (void)total;
}

int cmd_features(int argc, char **argv) {
    const char *backbone = NULL, *arch = NULL, *data = NULL, *out = NULL, *split = "test";
    const char *device = NULL, *partial = NULL;
    long image_size = 0, batch = 64, threads = 0, limit = 0, blocks = 1;
    bool avgpool = false;
    double crop = 0;
    float mean[3], std[3];
    bool have_mean = false, have_std = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: polyak features %s\n", usage);
            return 0;
        }
        if (strcmp(a, "--probe-avgpool") == 0) {
            avgpool = true;
            continue;
        }
        if (!v) return cli_missing("features", usage, a);
        i++;
        if (strcmp(a, "--backbone") == 0)
            backbone = v;
        else if (strcmp(a, "--arch") == 0)
            arch = v;
        else if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else if (strcmp(a, "--device") == 0)
            device = v;
        else if (strcmp(a, "--partial") == 0)
            partial = v;
        else if (strcmp(a, "--split") == 0) {
            if (strcmp(v, "train") && strcmp(v, "test"))
                return cli_usage("features", usage, "--split expects train or test");
            split = v;
        } else if (strcmp(a, "--image-size") == 0) {
            if (!cli_int("features", a, v, 1, 4096, &image_size)) return 2;
        } else if (strcmp(a, "--probe-blocks") == 0) {
            if (!cli_int("features", a, v, 1, VIT_MAX_PROBE_BLOCKS, &blocks)) return 2;
        } else if (strcmp(a, "--batch") == 0) {
            if (!cli_int("features", a, v, 1, 65536, &batch)) return 2;
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_int("features", a, v, 1, 1024, &threads)) return 2;
        } else if (strcmp(a, "--limit") == 0) {
            if (!cli_int("features", a, v, 1, 1L << 30, &limit)) return 2;
        } else if (strcmp(a, "--crop-pct") == 0) {
            if (!cli_float("features", a, v, &crop) || !(crop > 0 && crop <= 1))
                return cli_usage("features", usage, "--crop-pct must be in (0, 1]");
        } else if (strcmp(a, "--mean") == 0) {
            if (!triple(a, v, mean)) return 2;
            have_mean = true;
        } else if (strcmp(a, "--std") == 0) {
            if (!triple(a, v, std)) return 2;
            for (int k = 0; k < 3; k++)
                if (!(std[k] > 0)) return cli_usage("features", usage, "--std must be > 0");
            have_std = true;
        } else
            return cli_usage("features", usage, "unknown option");
    }
    if (!backbone) return cli_usage("features", usage, "--backbone FILE is required");
    if (!data) return cli_usage("features", usage, "--data DIR is required");
    if (!out) return cli_usage("features", usage, "--out FILE is required");

    /* the configuration: --arch, the metadata, or the shapes */
    vit_config cfg;
    backbone_norm bn = {0};
    const char *source = arch ? "--arch" : "metadata";
    pk_status cs = backbone_config(backbone, arch, &cfg, &bn);
    if (cs != PK_OK) {
        /* an unreadable file or a bad --arch is final; a file that names no usable
         * configuration gets one inferred from its shapes */
        if (arch || cs == PK_ERR_IO) return cli_fail("features", "backbone configuration");
        char first[512];
        snprintf(first, sizeof first, "%s", polyak_error());
        if (backbone_infer_config(backbone, &cfg) != PK_OK) {
            fprintf(stderr, "polyak features: %s\n", first);
            return cli_fail("features", "inferring the configuration from the shapes");
        }
        source = "inferred from the shapes";
    }
    bool polyak_file = !arch && strcmp(source, "metadata") == 0;
    features_options fo = {.image_size = image_size ? (int)image_size : cfg.img_size,
                           .batch = (int)batch,
                           .blocks = (int)blocks,
                           .avgpool = avgpool};
    if (blocks > cfg.depth) {
        fprintf(stderr, "polyak features: --probe-blocks %ld exceeds %s's depth %d\n", blocks,
                cfg.name, cfg.depth);
        return 2;
    }
    int fdim = features_dim(&fo, cfg.dim);
    fo.crop_pct = crop > 0          ? (float)crop
                  : bn.crop_pct > 0 ? bn.crop_pct
                  : polyak_file     ? 1.0f
                                    : 0.875f;
    for (int k = 0; k < 3; k++) {
        fo.mean[k] = have_mean ? mean[k] : bn.present ? bn.mean[k] : 0.5f;
        fo.std[k] = have_std ? std[k] : bn.present ? bn.std[k] : 0.5f;
    }
    if (fo.image_size % cfg.patch) {
        fprintf(stderr, "polyak features: image size %d is not a multiple of %s's patch %d\n",
                fo.image_size, cfg.name, cfg.patch);
        return 2;
    }
    int scale = (int)floor((double)fo.image_size / fo.crop_pct + 1e-9);
    fprintf(stderr,
            "polyak features: backbone %s: %s (%s): img %d patch %d in_chans %d dim %d depth %d "
            "heads %d mlp %d\n",
            backbone, cfg.name, source, cfg.img_size, cfg.patch, cfg.in_chans, cfg.dim, cfg.depth,
            cfg.heads, cfg.mlp_hidden);
    fprintf(stderr,
            "polyak features: preprocessing: resize shorter side to %d (bicubic, antialiased), "
            "centre crop %d (crop_pct %g%s), mean %g,%g,%g std %g,%g,%g (%s)\n",
            scale, fo.image_size, (double)fo.crop_pct,
            crop > 0          ? ", --crop-pct"
            : bn.crop_pct > 0 ? ", metadata"
                              : ", default",
            (double)fo.mean[0], (double)fo.mean[1], (double)fo.mean[2], (double)fo.std[0],
            (double)fo.std[1], (double)fo.std[2],
            have_mean || have_std ? "options"
            : bn.present          ? "metadata"
                                  : "default, timm's in21k");

    pk_dataset ds;
    dataset_kind kind;
    if (dataset_open_dir(data, split, scale, &ds, &kind) != PK_OK)
        return cli_fail("features", "reading the data set");
    if (limit > 0 && limit < ds.n) ds.n = (int)limit;
    fprintf(stderr, "polyak features: %s split of %s (%s): %d images %dx%dx%d%s\n", split, data,
            dataset_kind_name(kind), ds.n, ds.h, ds.w, ds.c, ds.labels ? ", labelled" : "");

    pk_ctx *c = NULL;
    vit *m = NULL;
    float *feat = NULL;
    int rc = 0;
    pk_ctx_options co = {.device = device, .seed = 1, .threads = (int)threads};
    if (pk_ctx_create(&co, &c) != PK_OK) {
        rc = cli_fail("features", "opening the device");
        goto done;
    }
    pk_rng rng = {1};
    if (vit_create(c, &cfg, "", &rng, &m) != PK_OK) {
        rc = cli_fail("features", "creating the model");
        goto done;
    }
    /* --partial: comma-separated name prefixes */
    char pbuf[1024] = "";
    const char *skip[32];
    int nskip = 0;
    if (partial) {
        snprintf(pbuf, sizeof pbuf, "%s", partial);
        for (char *tok = strtok(pbuf, ","); tok && nskip < 32; tok = strtok(NULL, ","))
            skip[nskip++] = tok;
    }
    if (backbone_load(c, m, backbone, skip, nskip) != PK_OK) {
        rc = cli_fail("features", "loading the backbone");
        goto done;
    }
    feat = malloc(sizeof(float) * (size_t)ds.n * (size_t)fdim + 4);
    if (!feat) {
        fprintf(stderr, "polyak features: out of memory for %d x %d features\n", ds.n, fdim);
        rc = 1;
        goto done;
    }
    cli_progress bar;
    cli_progress_start(&bar, "features", ds.n);
    fo.progress = on_progress;
    fo.user = &bar;
    double t0 = cli_now();
    pk_status s = features_extract(c, m, &ds, &fo, feat);
    cli_progress_end(&bar);
    if (s != PK_OK) {
        rc = cli_fail("features", "extracting features");
        goto done;
    }
    double secs = cli_now() - t0;
    /* the file: features, labels, and what made them */
    st_write_tensor wt[2] = {
        {.name = "features",
         .dtype = ST_F32,
         .ndim = 2,
         .shape = (int64_t[]){ds.n, fdim},
         .data = feat},
        {.name = "labels",
         .dtype = ST_I32,
         .ndim = 1,
         .shape = (int64_t[]){ds.n},
         .data = ds.labels},
    };
    char v_size[16], v_crop[32], v_mean[96], v_std[96];
    snprintf(v_size, sizeof v_size, "%d", fo.image_size);
    snprintf(v_crop, sizeof v_crop, "%g", (double)fo.crop_pct);
    snprintf(v_mean, sizeof v_mean, "%g,%g,%g", (double)fo.mean[0], (double)fo.mean[1],
             (double)fo.mean[2]);
    snprintf(v_std, sizeof v_std, "%g,%g,%g", (double)fo.std[0], (double)fo.std[1],
             (double)fo.std[2]);
    /* the column layout: `polyak probe` takes the k-NN's final class token from it */
    char v_dim[16], v_blocks[16], v_knn[48];
    snprintf(v_dim, sizeof v_dim, "%d", cfg.dim);
    snprintf(v_blocks, sizeof v_blocks, "%ld", blocks);
    snprintf(v_knn, sizeof v_knn, "%ld,%d", (blocks - 1) * cfg.dim, cfg.dim);
    const char *keys[] = {"backbone",   "arch",         "data",          "split",
                          "image_size", "crop_pct",     "mean",          "std",
                          "embed_dim",  "probe_blocks", "probe_avgpool", "knn_columns"};
    const char *vals[] = {backbone,
                          cfg.name,
                          data,
                          split,
                          v_size,
                          v_crop,
                          v_mean,
                          v_std,
                          v_dim,
                          v_blocks,
                          avgpool ? "1" : "0",
                          v_knn};
    if (safetensors_write(out, wt, ds.labels ? 2 : 1, keys, vals, 12) != PK_OK) {
        rc = cli_fail("features", "writing the features");
        goto done;
    }
    printf("%d features of dimension %d (%s, %.1f images/s) written to %s%s\n", ds.n, fdim,
           cfg.name, secs > 0 ? ds.n / secs : 0.0, out, ds.labels ? " with labels" : "");
done:
    free(feat);
    vit_destroy(m);
    pk_ctx_destroy(c);
    dataset_free(&ds);
    return rc;
}
