/* test_inspect.c - `polyak inspect` (tools/cmd_inspect.c, compiled in here since the CLI's main
 * lives elsewhere): what it prints for each kind of input and exit 1 with the message on bad
 * input. */
#include "../../tools/cmd_inspect.c"
#include "io_testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

/* Runs cmd_inspect on one path with stdout and stderr captured; returns its exit code. */
static int run_inspect(const char *path, char **out, char **err) {
    char *dir = tu_tmpdir();
    char *po = tu_path(dir, "out"), *pe = tu_path(dir, "err");
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600),
        fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    char *argv[] = {"inspect", (char *)path, NULL};
    int rc = cmd_inspect(2, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(fo), close(fe), close(so), close(se);
    size_t n;
    *out = (char *)tu_read(po, &n);
    (*out)[n] = 0;
    *err = (char *)tu_read(pe, &n);
    (*err)[n] = 0;
    tu_rmrf(dir);
    free(po), free(pe), free(dir);
    return rc;
}

static void expect(const char *path, int rc, const char *needle) {
    char *out, *err;
    int got = run_inspect(path, &out, &err);
    ck_assert_msg(got == rc, "%s: rc %d want %d; out: %s err: %s", path, got, rc, out, err);
    ck_assert_msg(strstr(rc ? err : out, needle), "%s: \"%s\" not in: %s%s", path, needle, out,
                  err);
    free(out);
    free(err);
}

START_TEST(inspect_written_files) {
    char *dir = tu_tmpdir();
    char need[256];
    /* a PLY written by Polyak */
    pk_gaussians g;
    size_t n = (size_t)tu_int(1, 500);
    int deg = tu_int(0, 3);
    ck_assert_int_eq(gaussians_create(&g, n, deg), PK_OK);
    for (size_t i = 0; i < n * 4; i++)
        g.rot[i] = (float)tu_uniform(-1, 1);
    char *ply = tu_path(dir, "scene.ply");
    ck_assert_int_eq(ply_write_3dgs(ply, &g), PK_OK);
    snprintf(need, sizeof need, "%zu Gaussians, SH degree %d", n, deg);
    expect(ply, 0, need);
    gaussians_free(&g);
    /* a checkpoint and a checkpoint folder */
    char ck[512];
    int64_t step = tu_int(1, 1 << 30);
    checkpoint_path(dir, step, ck, sizeof ck);
    int64_t shape[2] = {tu_int(1, 9), tu_int(1, 9)};
    float w[81] = {0};
    st_write_tensor t = {
        .name = "block.0.weight", .dtype = ST_F32, .ndim = 2, .shape = shape, .data = w};
    ckpt_meta m = {.step = step, .options_json = "{\"task\":\"man\"}"};
    ck_assert_int_eq(checkpoint_write(ck, &t, 1, &m), PK_OK);
    snprintf(need, sizeof need, "step %lld", (long long)step);
    expect(ck, 0, need);
    snprintf(need, sizeof need, "[%lld, %lld]", (long long)shape[0], (long long)shape[1]);
    expect(ck, 0, need);
    expect(ck, 0, "\"task\":\"man\"");
    /* an image */
    pk_image img;
    int iw = tu_int(1, 50), ih = tu_int(1, 50);
    ck_assert_int_eq(image_create(&img, iw, ih, 2, 16), PK_OK);
    char *png = tu_path(dir, "x.png");
    ck_assert_int_eq(png_write(png, &img), PK_OK);
    snprintf(need, sizeof need, "PNG image, %d x %d, 2 channels, 16 bits", iw, ih);
    expect(png, 0, need);
    image_free(&img);
    /* CIFAR-10 batch */
    char *cif = tu_path(dir, "data_batch_1.bin");
    int nrec = tu_int(1, 5);
    uint8_t *rec = calloc((size_t)nrec, 3073);
    for (int r = 0; r < nrec; r++)
        rec[r * 3073] = 3;
    tu_write(cif, rec, (size_t)nrec * 3073);
    snprintf(need, sizeof need, "class 3: %d", nrec);
    expect(cif, 0, need);
    free(rec);
    /* bad inputs: exit 1, message on stderr naming the file */
    char *junk = tu_path(dir, "junk.dat");
    tu_write_str(junk, "hello");
    expect(junk, 1, "junk.dat: unknown file type");
    char *badply = tu_path(dir, "bad.ply");
    tu_write_str(badply,
                 "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1\n");
    expect(badply, 1, "bad.ply");
    expect("/nonexistent/file.ply", 1, "no such file");
    char *args[] = {"inspect", NULL};
    ck_assert_int_eq(cmd_inspect(1, args), 1);
    free(ply), free(png), free(cif), free(junk), free(badply);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(inspect_shared_data) {
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist", &st) == 0) {
        expect("/usr/share/datasets/fashion-mnist", 0, "60000 labels, 10 classes");
        expect("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", 0, "class 9: 6000");
    }
    const char *mouse = POLYAK_SOURCE_DIR "/../shared/datasets/mouse-photos";
    if (stat(mouse, &st) != 0) mouse = "/work/shared/datasets/mouse-photos";
    if (stat(mouse, &st) == 0) expect(mouse, 0, "56 images (49 train, 7 test");
}
END_TEST

int main(void) {
    Suite *s = suite_create("io/inspect");
    TCase *tc = tcase_create("inspect");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, inspect_written_files);
    tcase_add_test(tc, inspect_shared_data);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
