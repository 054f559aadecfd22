/* test_run.c - the run harness (tasks/common/run.c): the folder and options.json, log.csv rows
 * and their columns, metrics.json read back with cJSON (escaped strings, replaced keys),
 * checkpoints of device tensors and host arrays (random contents, read back exactly),
 * keep-last, resume refusals and the log restored up to the checkpoint, the stop request of
 * SIGINT, and progress lines. */
#define _GNU_SOURCE /* mkdtemp */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io_util.h"
#include "pk_test.h"
#include "run.h"

static char *tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-run-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

static void rmrf(char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

/* Reads <dir>/<name> into a malloc'd NUL-terminated string. */
static char *slurp(const char *dir, const char *name) {
    char *p = io_path_join(dir, name);
    uint8_t *b = NULL;
    size_t n = 0;
    ck_assert_msg(io_read_file(p, &b, &n) == PK_OK, "%s", polyak_error());
    free(p);
    return (char *)b;
}

static bool exists(const char *dir, const char *name) {
    char *p = io_path_join(dir, name);
    bool e = io_is_file(p);
    free(p);
    return e;
}

static pkt_rng seeded(void) { return (pkt_rng){(uint64_t)time(NULL) * 2654435761u + 1}; }

/* The text a FILE received so far. */
static char *stream_text(FILE *f) {
    fflush(f);
    long n = ftell(f);
    char *t = calloc((size_t)n + 1, 1);
    rewind(f);
    ck_assert_int_eq((long)fread(t, 1, (size_t)n, f), n);
    fseek(f, 0, SEEK_END);
    return t;
}

START_TEST(open_creates_folder_and_echoes_options) {
    char *dir = tmpdir(), out[300];
    snprintf(out, sizeof out, "%s/a/b/run", dir); /* parents created too */
    FILE *prog = tmpfile();
    run_options o = {.out = out,
                     .task = "unit",
                     .options_json = "{\"lr\":0.5,\"name\":\"x\\\"y\",\"steps\":[1,2]}",
                     .progress = prog};
    pk_run *r = NULL;
    ck_assert_msg(run_open(&o, &r) == PK_OK, "%s", polyak_error());
    ck_assert_str_eq(run_dir(r), out);
    char path[400], want[400];
    run_path(r, "x.txt", path, sizeof path);
    snprintf(want, sizeof want, "%s/x.txt", out);
    ck_assert_str_eq(path, want);
    char *text = slurp(out, "options.json");
    cJSON *got = cJSON_Parse(text), *exp = cJSON_Parse(o.options_json);
    ck_assert_ptr_nonnull(got);
    ck_assert(cJSON_Compare(got, exp, true));
    cJSON_Delete(got), cJSON_Delete(exp), free(text);
    run_info(r, "hello %d", 42);
    run_close(r);
    char *said = stream_text(prog);
    ck_assert_msg(strstr(said, "polyak unit: run folder") && strstr(said, "\"lr\":0.5"), "%s",
                  said);
    ck_assert_msg(strstr(said, "polyak unit: hello 42\n"), "%s", said);
    free(said);
    fclose(prog);
    /* options that are not a JSON object are refused, naming the folder */
    o.options_json = "[1, 2]";
    ck_assert_int_ne(run_open(&o, &r), PK_OK);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(polyak_error(), out) && strstr(polyak_error(), "JSON object"), "%s",
                  polyak_error());
    rmrf(dir);
}
END_TEST

/* Parses a log.csv text into its header and rows of numbers. */
static int csv_rows(const char *text, char *header, size_t hn, double vals[][3], int max) {
    const char *nl = strchr(text, '\n');
    ck_assert_ptr_nonnull(nl);
    snprintf(header, hn, "%.*s", (int)(nl - text), text);
    int n = 0;
    for (const char *p = nl + 1; *p && n < max; n++) {
        char *end;
        for (int k = 0; k < 3; k++) {
            vals[n][k] = strtod(p, &end);
            ck_assert_ptr_ne(end, p);
            ck_assert_int_eq(*end, k < 2 ? ',' : '\n');
            p = end + 1;
        }
    }
    return n;
}

START_TEST(log_rows_columns_and_mismatch) {
    char *dir = tmpdir();
    run_options o = {.out = dir, .task = "unit", .options_json = "{}"};
    pk_run *r;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    pkt_rng g = seeded();
    const char *names[3] = {"step", "loss", "acc"};
    double rows[5][3];
    for (int i = 0; i < 5; i++) {
        rows[i][0] = i + 1;
        rows[i][1] = sqrt((double)pkt_uniform(&g, 1.0f, 3.0f)); /* a double that is no float */
        rows[i][2] = (double)pkt_uniform(&g, 0.0f, 1.0f);       /* a float */
        ck_assert_msg(run_log(r, 3, names, rows[i]) == PK_OK, "%s", polyak_error());
    }
    char *text = slurp(dir, "log.csv"), header[128];
    double got[8][3];
    ck_assert_int_eq(csv_rows(text, header, sizeof header, got, 8), 5);
    ck_assert_str_eq(header, "step,loss,acc");
    for (int i = 0; i < 5; i++) /* exact: the shortest text that reads back the same value */
        for (int k = 0; k < 3; k++)
            ck_assert_msg(k < 2 ? got[i][k] == rows[i][k] : (float)got[i][k] == (float)rows[i][k],
                          "row %d col %d: %.17g vs %.17g", i, k, got[i][k], rows[i][k]);
    ck_assert_msg(strstr(text, "\n1,") && strstr(text, "\n5,"), "%s", text); /* integers plain */
    free(text);
    /* other columns: refused, naming both sets and the file */
    const char *other[3] = {"step", "loss", "accuracy"};
    ck_assert_int_ne(run_log(r, 3, other, rows[0]), PK_OK);
    const char *e = polyak_error();
    ck_assert_msg(strstr(e, "log.csv") && strstr(e, "step,loss,accuracy") &&
                      strstr(e, "step,loss,acc)"),
                  "%s", e);
    ck_assert_int_ne(run_log(r, 2, names, rows[0]), PK_OK);
    const char *bad[1] = {"a,b"};
    ck_assert_int_ne(run_log(r, 1, bad, rows[0]), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "comma"), "%s", polyak_error());
    run_close(r);
    rmrf(dir);
}
END_TEST

/* A random string of printable ASCII, quotes, backslashes, control characters and UTF-8. */
static void random_string(pkt_rng *g, char *s, int n) {
    static const char *pieces[] = {"\"", "\\", "\n", "\t", "\x01", "\x1f", "\xc3\xa9", "/"};
    int at = 0;
    while (at < n - 8) {
        float u = pkt_uniform(g, 0.0f, 1.0f);
        if (u < 0.3f) {
            const char *p = pieces[(int)(pkt_uniform(g, 0.0f, 7.999f))];
            memcpy(s + at, p, strlen(p));
            at += (int)strlen(p);
        } else
            s[at++] = (char)(' ' + (int)pkt_uniform(g, 0.0f, 94.999f));
    }
    s[at] = 0;
}

START_TEST(metrics_json_valid_escaped_replaced) {
    char *dir = tmpdir();
    run_options o = {.out = dir, .task = "unit", .options_json = "{}"};
    pk_run *r;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    pkt_rng g = seeded();
    char s1[80], key[40];
    random_string(&g, s1, sizeof s1);
    random_string(&g, key, sizeof key);
    double acc = sqrt((double)pkt_uniform(&g, 0.1f, 0.9f)), arr[4]; /* not a float */
    for (int i = 0; i < 4; i++)
        arr[i] = (double)pkt_uniform(&g, -100.0f, 100.0f);
    run_metric(r, "accuracy", 0.25);
    run_metric(r, "iters", 300);
    run_metric_str(r, "name", s1);
    run_metric(r, key, 1.5);
    run_metric_array(r, "each", arr, 4);
    run_metric_json(r, "views", "[{\"name\": \"v0\", \"psnr\": 21.5}]");
    run_metric(r, "missing", NAN);
    run_metric(r, "accuracy", acc); /* replaced, keeps its place */
    ck_assert_msg(run_metrics_write(r) == PK_OK, "%s", polyak_error());
    char *text = slurp(dir, "metrics.json");
    cJSON *j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "metrics.json is not JSON:\n%s", text);
    ck_assert_int_eq(cJSON_GetArraySize(j), 7);
    ck_assert_str_eq(j->child->string, "accuracy"); /* first set, first written */
    ck_assert(cJSON_GetObjectItemCaseSensitive(j, "accuracy")->valuedouble == acc);
    ck_assert(cJSON_GetObjectItemCaseSensitive(j, "iters")->valuedouble == 300);
    ck_assert_msg(strstr(text, "\"iters\": 300,"), "%s", text);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring, s1);
    ck_assert(cJSON_GetObjectItemCaseSensitive(j, key)->valuedouble == 1.5);
    const cJSON *ea = cJSON_GetObjectItemCaseSensitive(j, "each");
    ck_assert_int_eq(cJSON_GetArraySize(ea), 4);
    for (int i = 0; i < 4; i++) /* floats come back as the same float */
        ck_assert((float)cJSON_GetArrayItem(ea, i)->valuedouble == (float)arr[i]);
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "views"), 0);
    ck_assert(cJSON_GetObjectItemCaseSensitive(v, "psnr")->valuedouble == 21.5);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "missing")));
    cJSON_Delete(j);
    free(text);
    /* a value that is not JSON: the write fails naming the key and the file */
    run_metric_json(r, "broken", "{\"a\": ");
    ck_assert_int_ne(run_metrics_write(r), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "broken") && strstr(polyak_error(), "metrics.json"), "%s",
                  polyak_error());
    run_close(r);
    rmrf(dir);
}
END_TEST

/* Writes state (a device tensor and a host array) at step and logs rows up to it. */
START_TEST(checkpoint_roundtrip_keep_last_and_resume) {
    char *dir = tmpdir();
    pk_ctx *c = pkt_ctx("cpu");
    pkt_rng g = seeded();
    float w[24], h[7];
    pkt_fill_uniform(&g, w, 24, -2, 2);
    pkt_fill_uniform(&g, h, 7, -2, 2);
    tensor *t = pkt_param(c, 2, (int64_t[]){4, 6}, w);
    run_options o = {.out = dir, .task = "unit", .options_json = "{\"seed\":3}", .keep = 2};
    pk_run *r;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    run_tensor ts[2] = {{.name = "w", .t = t}, {.name = "h", .host = h, .numel = 7}};
    const char *names[2] = {"step", "x"};
    uint64_t rng[CKPT_RNG_WORDS] = {0x0123456789abcdefull, 42, ~0ull, 7};
    for (int s = 1; s <= 5; s++) {
        double row[2] = {s, (double)pkt_uniform(&g, 0, 1)};
        ck_assert_int_eq(run_log(r, 2, names, row), PK_OK);
        if (s <= 3)
            ck_assert_msg(run_checkpoint_save(r, s, ts, 2, rng) == PK_OK, "%s", polyak_error());
    }
    ck_assert(!exists(dir, "ckpt-1.safetensors")); /* keep 2 */
    ck_assert(exists(dir, "ckpt-2.safetensors") && exists(dir, "ckpt-3.safetensors"));
    char *full = slurp(dir, "log.csv");
    run_close(r);
    /* the rows up to step 3, as written then */
    const char *cut = full;
    for (int i = 0; i < 4; i++)
        cut = strchr(cut, '\n') + 1;
    size_t upto = (size_t)(cut - full);

    /* not resuming: nothing is loaded */
    float z[24] = {0}, hz[7] = {0};
    tensor *t2 = pkt_param(c, 2, (int64_t[]){4, 6}, z);
    run_tensor ts2[2] = {{.name = "w", .t = t2}, {.name = "h", .host = hz, .numel = 7}};
    int64_t step = 0;
    uint64_t rng2[CKPT_RNG_WORDS] = {0};
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert_int_eq(run_checkpoint_load(r, ts2, 2, &step, rng2), PK_OK);
    ck_assert_int_eq(step, -1);
    ck_assert_float_eq(hz[0], 0);
    run_close(r);

    /* resuming: state, rng and log rows up to the checkpoint */
    o.resume = true;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert_msg(run_checkpoint_load(r, ts2, 2, &step, rng2) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(step, 3);
    ck_assert_mem_eq(rng, rng2, sizeof rng);
    float *back = pkt_download(t2);
    ck_assert_mem_eq(back, w, sizeof w);
    ck_assert_mem_eq(hz, h, sizeof h);
    free(back);
    char *resumed = slurp(dir, "log.csv");
    ck_assert_uint_eq(strlen(resumed), upto);
    ck_assert(memcmp(resumed, full, upto) == 0);
    free(resumed);
    /* the log continues with its columns */
    double row[2] = {4, 0.5};
    ck_assert_int_ne(run_log(r, 1, names, row), PK_OK);
    ck_assert_int_eq(run_log(r, 2, names, row), PK_OK);
    resumed = slurp(dir, "log.csv");
    ck_assert(memcmp(resumed, full, upto) == 0);
    ck_assert_str_eq(resumed + upto, "4,0.5\n");
    free(resumed);
    run_close(r);

    /* other options: refused, naming the file and both option sets */
    o.options_json = "{\"seed\":4}";
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert_int_ne(run_checkpoint_load(r, ts2, 2, &step, rng2), PK_OK);
    const char *e = polyak_error();
    ck_assert_msg(strstr(e, "ckpt-3.safetensors") && strstr(e, "{\"seed\":3}") &&
                      strstr(e, "{\"seed\":4}"),
                  "%s", e);
    run_close(r);
    /* only the resume-relevant options count */
    o.options_json = "{\"seed\":3,\"threads\":2}";
    o.resume_json = "{\"seed\":3}";
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert_msg(run_checkpoint_load(r, ts2, 2, &step, rng2) == PK_OK, "%s", polyak_error());
    run_close(r);

    /* a tensor the checkpoint lacks, and one of another size: errors name file and tensor */
    run_tensor more[3] = {ts2[0], ts2[1], {.name = "velocity", .host = hz, .numel = 7}};
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert_int_ne(run_checkpoint_load(r, more, 3, &step, rng2), PK_OK);
    e = polyak_error();
    ck_assert_msg(strstr(e, "ckpt-3.safetensors") && strstr(e, "velocity") && strstr(e, "missing"),
                  "%s", e);
    run_tensor small[1] = {{.name = "h", .host = hz, .numel = 6}};
    ck_assert_int_ne(run_checkpoint_load(r, small, 1, &step, rng2), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "tensor h") && strstr(polyak_error(), "6 elements"), "%s",
                  polyak_error());
    run_close(r);
    free(full);
    pkt_ctx_done(c);
    rmrf(dir);
}
END_TEST

/* Extra tensors of any dtype and size, read back by the task's restore callback, in a
 * checkpoints subfolder. */
static pk_status restore_extra(void *user, const ckpt_file *ck, const char *path) {
    const st_tensor *t = safetensors_find(&ck->st, "order");
    if (!t || t->dtype != ST_I32) return pk_error(PK_ERR_FORMAT, "%s: tensor order missing", path);
    memcpy(user, t->data, t->nbytes);
    return PK_OK;
}

START_TEST(extra_tensors_and_subfolder) {
    char *dir = tmpdir();
    pkt_rng g = seeded();
    int32_t order[9], back[9] = {0};
    for (int i = 0; i < 9; i++)
        order[i] = (int32_t)pkt_uniform(&g, -1000, 1000);
    run_options o = {.out = dir, .options_json = "{}", .checkpoints = "checkpoints"};
    pk_run *r;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    st_write_tensor ex = {"order", ST_I32, 1, (int64_t[]){9}, order};
    ck_assert_int_eq(run_checkpoint_save_ex(r, 11, NULL, 0, &ex, 1, NULL), PK_OK);
    ck_assert(exists(dir, "checkpoints/ckpt-11.safetensors"));
    /* a name the harness uses itself is refused */
    const char *nm[1] = {"v"};
    double one = 1;
    ck_assert_int_eq(run_log(r, 1, nm, &one), PK_OK);
    st_write_tensor dup = {"run.log", ST_I32, 1, (int64_t[]){9}, order};
    ck_assert_int_ne(run_checkpoint_save_ex(r, 12, NULL, 0, &dup, 1, NULL), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "run.log"), "%s", polyak_error());
    run_close(r);
    o.resume = true;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    int64_t step;
    ck_assert_int_eq(run_checkpoint_load_ex(r, NULL, 0, restore_extra, back, &step, NULL), PK_OK);
    ck_assert_int_eq(step, 11);
    ck_assert_mem_eq(back, order, sizeof order);
    ck_assert(!exists(dir, "log.csv")); /* no rows at step 11: the later row is gone */
    run_close(r);
    rmrf(dir);
}
END_TEST

START_TEST(sigint_requests_a_stop) {
    char *dir = tmpdir();
    FILE *prog = tmpfile();
    struct sigaction before;
    sigaction(SIGINT, NULL, &before);
    run_options o = {.out = dir, .task = "unit", .options_json = "{}", .progress = prog};
    pk_run *r;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert(!run_stop_requested(r)); /* signals not caught: never */
    run_close(r);
    o.catch_signals = true;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert(!run_stop_requested(r));
    ck_assert_int_eq(raise(SIGINT), 0);
    ck_assert(run_stop_requested(r));
    /* the first signal put back the default action: a second Ctrl-C ends the process */
    struct sigaction now;
    sigaction(SIGINT, NULL, &now);
    ck_assert_ptr_eq((void *)now.sa_handler, (void *)SIG_DFL);
    /* a second run cannot catch them at the same time */
    pk_run *r2;
    ck_assert_int_ne(run_open(&o, &r2), PK_OK);
    run_close(r);
    sigaction(SIGINT, NULL, &now);
    ck_assert_ptr_eq((void *)now.sa_handler, (void *)before.sa_handler);
    char *said = stream_text(prog);
    ck_assert_msg(strstr(said, "stop requested") && strstr(said, "Ctrl-C again"), "%s", said);
    free(said);
    /* SIGTERM too, in a fresh run; close restores what was there */
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    ck_assert(!run_stop_requested(r));
    ck_assert_int_eq(raise(SIGTERM), 0);
    ck_assert(run_stop_requested(r));
    run_close(r);
    fclose(prog);
    rmrf(dir);
}
END_TEST

START_TEST(progress_lines_plain_off_terminal) {
    char *dir = tmpdir();
    FILE *prog = tmpfile();
    run_options o = {.out = dir, .task = "unit", .options_json = "{}", .progress = prog};
    pk_run *r;
    ck_assert_int_eq(run_open(&o, &r), PK_OK);
    run_progress_start(r, "epoch 1/2", 50);
    for (int i = 1; i <= 50; i++)
        run_progress_update(r, i, "loss %.2f", 1.0 / i);
    run_progress_end(r);
    run_close(r);
    char *said = stream_text(prog);
    /* not a terminal: no carriage returns; the last unit always printed, plain line */
    ck_assert_ptr_null(strchr(said, '\r'));
    ck_assert_msg(strstr(said, "epoch 1/2 50/50 (100%)") && strstr(said, "loss 0.02\n"), "%s",
                  said);
    ck_assert_msg(strstr(said, "ETA"), "%s", said);
    free(said);
    fclose(prog);
    rmrf(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("run");
    TCase *t = tcase_create("harness");
    tcase_add_test(t, open_creates_folder_and_echoes_options);
    tcase_add_test(t, log_rows_columns_and_mismatch);
    tcase_add_test(t, metrics_json_valid_escaped_replaced);
    tcase_add_test(t, checkpoint_roundtrip_keep_last_and_resume);
    tcase_add_test(t, extra_tensors_and_subfolder);
    tcase_add_test(t, sigint_requests_a_stop);
    tcase_add_test(t, progress_lines_plain_off_terminal);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
