/* test_gs_export.c - `polyak splat export --format ply` (tools/cmd_splat_export.c): a finished
 * Scaffold-GS run and a Momentum-GS run on two CPU devices are rebuilt from their options.json
 * and newest checkpoint, baked at the asked SH degree into a PLY that io/ply reads, whose
 * Gaussians equal those of gs_trainer_bake on the live trainer bit for bit (the rebuild restores
 * exactly the trained state); the run folder is left as it was; a 3DGS run and a missing run
 * are refused with a message. */
#define _GNU_SOURCE /* mkdtemp */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_testscene.h"
#include "gs_train.h"
#include "io_util.h"
#include "momentum.h"
#include "pk_test.h"
#include "ply.h"

#include "../../tools/cli.c"
#include "../../tools/cmd_splat_export.c"

/* Number of entries of a folder. */
static int entries(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Trains `iters` steps, finishes, and bakes in memory at `degree` into *g. */
static void train_and_bake(gs_train_options o, int degree, pk_gaussians *g) {
    o = gs_train_defaults(o);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    gs_step_result r;
    while (gs_trainer_step_count(t) < o.iters)
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
    gs_eval ev;
    ck_assert_int_eq(gs_trainer_finish(t, &ev), PK_OK);
    ck_assert_int_eq(gs_trainer_bake(t, degree, 1, g, NULL), PK_OK);
    gs_trainer_destroy(t);
}

/* Runs the command and compares its PLY with g. */
static void export_matches(const char *run, const char *ply, const char *degree,
                           const pk_gaussians *g) {
    int before = entries(run);
    char *argv[] = {"export",    "--format",    "ply",          "--run",     (char *)run, "--out",
                    (char *)ply, "--sh-degree", (char *)degree, "--threads", "1",         NULL};
    ck_assert_int_eq(cmd_splat_export(11, argv), 0);
    ck_assert_int_eq(entries(run), before); /* nothing added to the run */
    pk_gaussians b;
    ck_assert_msg(ply_read_3dgs(ply, &b) == PK_OK, "%s", polyak_error());
    ck_assert_uint_eq(b.n, g->n);
    ck_assert_int_eq(b.sh_degree, g->sh_degree);
    size_t rest = (size_t)3 * ((size_t)(g->sh_degree + 1) * (g->sh_degree + 1) - 1);
    ck_assert(memcmp(b.xyz, g->xyz, sizeof(float) * 3 * g->n) == 0);
    ck_assert(memcmp(b.f_dc, g->f_dc, sizeof(float) * 3 * g->n) == 0);
    if (rest) ck_assert(memcmp(b.f_rest, g->f_rest, sizeof(float) * rest * g->n) == 0);
    ck_assert(memcmp(b.opacity, g->opacity, sizeof(float) * g->n) == 0);
    ck_assert(memcmp(b.scale, g->scale, sizeof(float) * 3 * g->n) == 0);
    ck_assert(memcmp(b.rot, g->rot, sizeof(float) * 4 * g->n) == 0);
    gaussians_free(&b);
}

START_TEST(export_scaffold_and_momentum_runs) {
    char dir[64] = "/tmp/polyak-export-test-XXXXXX", data[200], run[200], ply[260];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/scene", dir);
    mkdir(data, 0777);
    ts_make(data);
    /* Scaffold-GS */
    snprintf(run, sizeof run, "%s/scaffold", dir);
    gs_train_options o = {.data = data,
                          .out = run,
                          .device = "cpu",
                          .iters = 30,
                          .test_every = 4,
                          .seed = 9,
                          .threads = 1,
                          .init_points = 2000,
                          .model = "scaffold",
                          .voxel_size = 0.05};
    pk_gaussians g;
    train_and_bake(o, 2, &g);
    ck_assert_int_gt((int64_t)g.n, 100);
    snprintf(ply, sizeof ply, "%s/scaffold.ply", dir);
    export_matches(run, ply, "2", &g);
    gaussians_free(&g);
    /* Momentum-GS, 2 blocks on two CPU contexts (the checkpoint holds both replicas) */
    snprintf(run, sizeof run, "%s/mgs", dir);
    mgs_options mo = mgs_defaults((mgs_options){.blocks = 2,
                                                .block_steps = 4,
                                                .voxel_size = 0.05,
                                                .view_share = 0.1,
                                                .devices = "cpu,cpu",
                                                .threads = 1});
    char *json = mgs_options_json(&mo);
    o.out = run;
    o.iters = 14;
    o.model = "momentum-gs";
    o.make_source = mgs_make_source;
    o.make_source_arg = &mo;
    o.source_json = json;
    train_and_bake(o, 1, &g);
    free(json);
    snprintf(ply, sizeof ply, "%s/mgs.ply", dir);
    export_matches(run, ply, "1", &g);
    gaussians_free(&g);
    /* refusals */
    snprintf(run, sizeof run, "%s/3dgs", dir);
    o = (gs_train_options){.data = data,
                           .out = run,
                           .device = "cpu",
                           .iters = 2,
                           .test_every = 4,
                           .threads = 1,
                           .init_points = 500};
    o = gs_train_defaults(o);
    gs_trainer *t;
    ck_assert_int_eq(gs_trainer_create(&o, &t), PK_OK);
    gs_eval ev;
    gs_step_result r;
    while (gs_trainer_step_count(t) < o.iters)
        ck_assert_int_eq(gs_trainer_step(t, &r), PK_OK);
    ck_assert_int_eq(gs_trainer_finish(t, &ev), PK_OK);
    gs_trainer_destroy(t);
    char *a3[] = {"export", "--run", run, NULL};
    ck_assert_int_ne(cmd_splat_export(3, a3), 0);
    char missing[260];
    snprintf(missing, sizeof missing, "%s/none", dir);
    char *a4[] = {"export", "--run", missing, NULL};
    ck_assert_int_ne(cmd_splat_export(3, a4), 0);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gs_export");
    TCase *t = tcase_create("export");
    tcase_add_test(t, export_scaffold_and_momentum_runs);
    tcase_set_timeout(t, 300);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
