/* gs_prepare.h - from a folder of photos or a video to a COLMAP project that the trainer
 * reads (`polyak splat prepare`, and `splat train --data` on a folder of plain images). Polyak
 * writes no structure from motion of its own: it runs COLMAP (CPU SIFT features, matching,
 * mapping) and ffmpeg (frame extraction) as child processes (posix_spawn with argument
 * vectors, never a shell), keeps each tool's log in SCENE/logs/, shows progress per stage
 * (the harness's progress line, tasks/common/run.h), picks the sharpest video frame of each
 * window by the variance of the Laplacian, writes EXIF-rotated photos upright, keeps the
 * largest model as SCENE/sparse/0 and summarises it.
 *
 * SCENE layout: images/ (hard links to the photos, upright PNG copies of EXIF-rotated ones,
 * or the frames kept from a video), database.db (COLMAP's), sparse/0/ (the largest model;
 * smaller ones in sparse/other-K/), logs/ (every tool's output, one .log each), prepare.json (the
 * summary and the hash of the sources, written last). */
#ifndef POLYAK_GS_PREPARE_H
#define POLYAK_GS_PREPARE_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

/* Options; zero fields take the defaults noted. Exactly one of images and video. */
typedef struct gs_prepare_options {
    const char *images;       /* folder of photos (.jpg, .jpeg, .png; subfolders ignored) */
    const char *video;        /* a video file ffmpeg decodes */
    const char *out;          /* the scene folder to write (created) */
    double fps;               /* video: frames kept per second of video; 0: 2 */
    int max_frames;           /* video: at most this many frames kept; 0: 300 */
    int window;               /* video: candidates per kept frame, the sharpest kept; 0: 3 */
    const char *matcher;      /* "exhaustive", "sequential", "vocab"; NULL: chosen automatically */
    const char *vocab_tree;   /* COLMAP vocabulary tree file for the "vocab" matcher */
    const char *camera_model; /* COLMAP camera model; NULL: SIMPLE_RADIAL */
    bool camera_per_image;    /* one camera per image (required when sizes differ) */
    int max_image_size;       /* SIFT works on images downscaled to this longest side; 0: 1600 */
    int max_features;         /* SIFT features per image at most; 0: 4096 (CPU matching time
                                 grows with its square) */
    int threads;              /* COLMAP threads; 0: all cores */
    const char *colmap;       /* the colmap program; NULL: "colmap" on PATH */
    const char *ffmpeg;       /* the ffmpeg program; NULL: "ffmpeg" on PATH (ffprobe beside) */
    FILE *progress;           /* stage messages and progress lines; NULL: silent */
} gs_prepare_options;

/* Stages, in order; seconds[] of gs_prepare_result is indexed by them. */
enum {
    GS_PREP_INPUT,    /* listing and copying photos / ffmpeg frames and sharpness */
    GS_PREP_FEATURES, /* colmap feature_extractor */
    GS_PREP_MATCHING, /* colmap *_matcher */
    GS_PREP_MAPPING,  /* colmap mapper, model choice, model_analyzer */
    GS_PREP_STAGES
};

/* What prepare did. */
typedef struct gs_prepare_result {
    int given;                      /* images given to COLMAP */
    int registered;                 /* images in the kept model */
    int64_t points;                 /* 3D points in the kept model */
    double mean_reprojection_error; /* pixels (COLMAP's model_analyzer) */
    int models;                     /* models the mapper made */
    char **unregistered;            /* names of the images that did not register */
    int n_unregistered;
    const char *matcher;                /* the matcher used */
    double seconds[GS_PREP_STAGES];     /* wall time per stage */
    double cpu_seconds[GS_PREP_STAGES]; /* user+sys CPU time of the children per stage */
    bool reused;                        /* gs_prepare_cached: the folder was current, nothing ran */
} gs_prepare_result;

/* Prepares o->out from the photos or the video. Errors name the problem and what to try:
 * too few images, mixed sizes without camera_per_image, colmap/ffmpeg missing, no model. */
pk_status gs_prepare(const gs_prepare_options *o, gs_prepare_result *res);

/* gs_prepare unless o->out already holds a finished preparation of the same sources (names,
 * sizes and modification times of the images or the video, and the options): then nothing
 * runs and res->reused is set (res holds the summary prepare.json kept). */
pk_status gs_prepare_cached(const gs_prepare_options *o, gs_prepare_result *res);

/* Frees the result's lists. */
void gs_prepare_result_free(gs_prepare_result *res);

/* Counts the image files (.jpg, .jpeg, .png, any case) directly in dir; -1 when dir cannot be
 * read. */
int gs_prepare_count_images(const char *dir);

/* True when path names a file whose extension is a video container ffmpeg reads (.mp4, .mov,
 * .m4v, .avi, .mkv, .webm, .mts). */
bool gs_prepare_is_video(const char *path);

/* The sizes of the images in dir: true when all share one size. */
pk_status gs_prepare_sizes_agree(const char *dir, bool *agree);

/* Variance of the 3x3 Laplacian of an 8-bit image's luma (the sharpness score): the image is
 * first area-downscaled to at most 640 px on its longest side. */
pk_status gs_sharpness(const char *path, double *score);

#endif
