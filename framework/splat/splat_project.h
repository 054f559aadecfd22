/* splat_project.h - per-Gaussian projection (forward and backward) shared by the CPU
 * rasterizer; internal to framework/splat/. Blending, binning and threading live in splat.c. */
#ifndef POLYAK_SPLAT_PROJECT_H
#define POLYAK_SPLAT_PROJECT_H
#include "splat.h"

/* Camera quantities derived once per render. */
typedef struct splat_cam_derived {
    float R[9], t[3]; // world-to-camera rotation (3, 3) row-major and translation (3)
    float campos[3];  // camera centre in world space, -R^T t
    float fx, fy, cx, cy;
    float limx, limy; // 1.3 * tan(fov / 2), 3DGS's view-space clamp
    float near;
    int width, height, tiles_x, tiles_y;
} splat_cam_derived;

/* One projected Gaussian. */
typedef struct splat_proj {
    float xy[2];    // mean2D in pixels
    float conic[3]; // inverse of the dilated 2D covariance: (a, b, c) = [[a, b], [b, c]]
    float depth;    // view-space z
    float opacity;  // sigmoid(logit)
    float rgb[3];   // colour after the SH clamp
    int radius;     // 0 when culled
    int rect[4];    // touched tiles [x0, x1) x [y0, y1)
} splat_proj;

/* Per-Gaussian gradient gathered from the blend: d mean2D (2), d conic (3), d opacity (1),
 * d colour (3), d depth (1). */
#define SPLAT_GRAD_STRIDE 10

/* Fills the derived camera; checks the camera's values. */
pk_status splat_cam_derive(const splat_camera *cam, splat_cam_derived *cd);

/* Projects Gaussian g; returns 1 and fills *p when it touches a tile, else 0 (radius 0). */
int splat_project_one(const splat_cam_derived *cd, const splat_scene_view *s, int g, splat_proj *p);

/* Backward of splat_project_one for a visible Gaussian g: chains d (SPLAT_GRAD_STRIDE)
 * through the projection and adds into grads. */
void splat_project_back_one(const splat_cam_derived *cd, const splat_scene_view *s, int g,
                            const float *d, const splat_grads *grads);

#endif
