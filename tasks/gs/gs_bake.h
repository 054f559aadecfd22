/* gs_bake.h - baking the neural Gaussians of a decoder source (Scaffold-GS, Momentum-GS) into a
 * standard 3DGS set that any 3DGS viewer opens: the decoders make every Gaussian's opacity,
 * scale, rotation and colour a function of the viewing direction, a 3DGS PLY holds one opacity,
 * scale and rotation and a colour as spherical harmonics.
 *
 * The rule (what gs_bake_scaffold does): every anchor is decoded as seen from each sampled view
 * (the training cameras: the directions the decoder was trained on; a view counts for an anchor
 * when the anchor passes the source's frustum test there). Per neural Gaussian, over the views
 * that see its anchor:
 * - position: anchor + offset x exp(scaling[0:3]) (view-independent already);
 * - opacity: the mean of max(o_v, 0) (a view where the decoder gives o <= 0 does not render it);
 * - log scales and rotation: means weighted by max(o_v, 0) (quaternions sign-aligned, then
 *   normalised);
 * - colour: SH coefficients of degree `sh_degree` by weighted least squares over the views,
 *   min sum_v o_v |Y(d_v) f + 0.5 - c_v|^2 + ridge x sum_v o_v x |f_rest|^2, with d_v the unit
 *   direction from the camera centre to the Gaussian and Y the rasterizer's real SH basis;
 * - Gaussians never rendered (opacity <= 0 from every view) are left out.
 * Owns: the accumulation and the fit. Leaves to others: decoding (gs_scaffold.c), files (io/). */
#ifndef POLYAK_GS_BAKE_H
#define POLYAK_GS_BAKE_H
#include "gs_scaffold.h"

/* Options; zero fields take the defaults noted. */
typedef struct gs_bake_options {
    int sh_degree;    /* 0..3 (values outside are clamped) */
    double ridge;     /* 0: 1e-3 */
    int anchor_chunk; /* anchors per pass over the views (memory bound); 0: 4096 */
} gs_bake_options;

/* The real SH basis of degree deg (0..3) at unit direction d into Y ((deg+1)^2 values), in the
 * rasterizer's convention (3DGS computeColorFromSH). */
void gs_sh_basis(int deg, const double d[3], double *Y);

/* Bakes the anchors of s that pass its filter (gs_scaffold_set_filter) as seen from views
 * `views` (n) of cams into g (allocated; g->sh_degree = o->sh_degree). */
pk_status gs_bake_scaffold(gs_scaffold *s, const splat_camera *cams, const int *views, int n,
                           const gs_bake_options *o, pk_gaussians *g);

/* Appends the Gaussians of b to a (both of the same SH degree); b is freed. */
pk_status gs_gaussians_append(pk_gaussians *a, pk_gaussians *b);

#endif
