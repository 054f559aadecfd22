/* scene.h - multi-view scenes: COLMAP sparse models (text and binary) and nerfstudio/Blender
 * transforms.json, as one scene object with pinhole cameras (OpenCV convention, world-to-camera),
 * image paths loaded on demand (undistorted when the source camera has distortion), SfM points
 * and a train/test split. */
#ifndef POLYAK_SCENE_H
#define POLYAK_SCENE_H
#include "image.h"

/* Source camera models; images of the distorted ones are undistorted on load. */
typedef enum cam_model {
    CAM_SIMPLE_PINHOLE = 0,
    CAM_PINHOLE = 1,
    CAM_SIMPLE_RADIAL = 2,
    CAM_RADIAL = 3,
    CAM_OPENCV = 4
} cam_model;

/* One view. Intrinsics are those of the (undistorted) pinhole image scene_load_image returns;
 * pixel centres sit at integer + 0.5 (COLMAP's convention). Camera axes: x right, y down,
 * z forward (OpenCV). */
typedef struct pk_camera {
    double fx, fy, cx, cy;
    int width, height;
    double w2c[16];        /* row-major 4x4 world-to-camera */
    char *name;            /* image name as the model gives it */
    char *image_path;      /* full path of the image file */
    int is_test;           /* 1: held out for evaluation */
    cam_model model;       /* the source model */
    double k1, k2, p1, p2; /* source distortion (zero for pinhole models) */
    int camera_id;         /* COLMAP camera id (0 for transforms.json) */
} pk_camera;

typedef struct pk_scene {
    int n;
    pk_camera *cams; /* sorted by image name */
    size_t n_points;
    float *xyz;       /* (n_points, 3) */
    uint8_t *rgb;     /* (n_points, 3) */
    const char *kind; /* "colmap-binary", "colmap-text" or "transforms" */
    int file_split;   /* 1 when the split came from the file, 0 from test_every */
} pk_scene;

/* Options; zero-initialise: (scene_options){ .test_every = 8 }. */
typedef struct scene_options {
    const char *images_dir; /* COLMAP: image folder; default: found next to the model */
    int test_every;         /* every Nth view (by name, from 0) is a test view; 0 -> 8; <0 none */
    int skip_image_check;   /* 1: do not require every image file to exist at load */
} scene_options;

/* Returns COLMAP's name for a camera model ("PINHOLE", ...). */
const char *camera_model_name(cam_model m);
/* Loads a scene from a folder holding transforms.json, transforms_{train,test}.json,
 * sparse/0/ or a COLMAP model, or from a transforms*.json file. */
pk_status scene_load(const char *path, const scene_options *opts, pk_scene *scene);
/* Loads a COLMAP model folder (cameras/images/points3D, .bin preferred over .txt). */
pk_status colmap_load(const char *model_dir, const scene_options *opts, pk_scene *scene);
/* Parses binary COLMAP files held in memory; image paths are joined to images_dir. */
pk_status colmap_parse_binary(const char *name, const uint8_t *cams, size_t ncams,
                              const uint8_t *imgs, size_t nimgs, const uint8_t *pts, size_t npts,
                              const char *images_dir, pk_scene *scene);
/* Parses text COLMAP files held in memory (NUL-terminated). */
pk_status colmap_parse_text(const char *name, const char *cams, const char *imgs, const char *pts,
                            const char *images_dir, pk_scene *scene);
/* Loads a transforms.json file (image sizes probed from files when the JSON lacks w/h). */
pk_status transforms_load(const char *path, const scene_options *opts, pk_scene *scene);
/* Parses transforms.json text; base_dir resolves file_path; probe=0 never touches files. */
pk_status transforms_parse(const char *name, const char *text, size_t len, const char *base_dir,
                           int probe, pk_scene *scene);
/* Frees a scene (accepts NULL). */
void scene_free(pk_scene *scene);
/* Applies the train/test split: every Nth view (0 -> 8, <0 -> all train). */
void scene_split_every(pk_scene *scene, int every);
/* Counts the test views. */
int scene_count_test(const pk_scene *scene);

/* Loads view i as 8-bit RGB, undistorted to its pinhole camera, downscaled by an integer factor
 * (area filter). The intrinsics for that image are camera_scaled(cam, downscale). */
pk_status scene_load_image(const pk_scene *scene, int i, int downscale, pk_image *img);
/* Copies cam with intrinsics and size for an image downscaled by `factor` (strings shared). */
pk_camera camera_scaled(const pk_camera *cam, int factor);
/* Maps an undistorted normalised point (x, y) through the camera's distortion model. */
void camera_distort(const pk_camera *cam, double x, double y, double *xd, double *yd);
/* Undistorts a source image of the camera's size to its pinhole camera (bilinear, black
 * outside). Output pixel u samples the source at f*distort((u+0.5-c)/f)+c-0.5. */
pk_status camera_undistort(const pk_camera *cam, const pk_image *src, pk_image *dst);

#endif
