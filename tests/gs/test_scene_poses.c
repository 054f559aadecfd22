/* test_scene_poses.c - the bundled scene's cameras are exact: the centres of the self-lit
 * marker spheres of assets/scene.pov, projected through each view of
 * assets/scene/transforms.json (as io/scene.c loads it), land on the centroid of the
 * marker-coloured pixels POV-Ray drew. A wrong handedness, axis flip, focal length or
 * half-pixel offset moves the centroids by pixels. */
#define _GNU_SOURCE /* M_PI */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "pk_test.h"
#include "scene.h"

#define SCENE_DIR POLYAK_SOURCE_DIR "/assets/scene"

/* World (right-handed, z up) centres and colours; scene.pov lists them as (x, z, y). */
static const double markers[4][6] = {{1.5, -0.2, 0.1, 1, 0, 1},
                                     {-1.5, -0.3, 0.1, 0, 1, 1},
                                     {0.2, 1.5, 0.1, 1, 0, 1},
                                     {0.2, -1.5, 0.1, 0, 1, 1}};

START_TEST(markers_reproject) {
    pk_scene sc;
    ck_assert_msg(scene_load(SCENE_DIR, &(scene_options){.test_every = 8}, &sc) == PK_OK, "%s",
                  polyak_error());
    ck_assert_int_ge(sc.n, 40);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < sc.n; i++) {
        const pk_camera *cam = &sc.cams[i];
        pk_image img;
        ck_assert_int_eq(scene_load_image(&sc, i, 1, &img), PK_OK);
        for (int k = 0; k < 4; k++) {
            const double *m = markers[k];
            double p[3];
            for (int r = 0; r < 3; r++)
                p[r] = cam->w2c[r * 4] * m[0] + cam->w2c[r * 4 + 1] * m[1] +
                       cam->w2c[r * 4 + 2] * m[2] + cam->w2c[r * 4 + 3];
            ck_assert(p[2] > 0);
            double u = cam->fx * p[0] / p[2] + cam->cx, v = cam->fy * p[1] / p[2] + cam->cy;
            int x0 = (int)u - 12, y0 = (int)v - 12;
            if (x0 < 0 || y0 < 0 || x0 + 25 > img.w || y0 + 25 > img.h) continue;
            /* weight: how close a pixel is to the marker's flat colour (anti-aliased rims
             * count partially) */
            double sw = 0, su = 0, sv = 0;
            for (int y = y0; y < y0 + 25; y++)
                for (int x = x0; x < x0 + 25; x++) {
                    double d = 0;
                    for (int ch = 0; ch < 3; ch++)
                        d = fmax(d, fabs(image_get(&img, x, y, ch) - m[3 + ch]));
                    double w = fmax(0, 1 - 3 * d);
                    sw += w, su += w * (x + 0.5), sv += w * (y + 0.5);
                }
            /* skip views where another object hides part of the marker: its disk should
             * cover about pi (f r / z)^2 pixels (r = 0.1) */
            double expect = M_PI * pow(cam->fx * 0.1 / p[2], 2);
            if (sw < 0.85 * expect) continue;
            double du = su / sw - u, dv = sv / sw - v;
            worst = fmax(worst, hypot(du, dv));
            /* a half-pixel convention error alone would give 0.5 */
            ck_assert_msg(hypot(du, dv) < 0.3,
                          "%s marker %d: projected (%.2f, %.2f), drawn at "
                          "(%.2f, %.2f)",
                          cam->name, k, u, v, su / sw, sv / sw);
            checked++;
        }
        image_free(&img);
    }
    /* most of the 4 x N markers must have been measured for the test to mean anything */
    ck_assert_int_ge(checked, 2 * sc.n);
    fprintf(stderr, "test_scene_poses: %d markers, worst offset %.3f px\n", checked, worst);
    scene_free(&sc);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gs_scene_poses");
    TCase *t = tcase_create("poses");
    tcase_add_test(t, markers_reproject);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
