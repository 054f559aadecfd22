/* test_ctp.c - `polyak ctp`'s parts: the three pair readers and their errors (file and line
 * named), the vocabulary and tokenizer round trip, ALBEF's contrastive loss and its gradient,
 * the soft targets and CTP's topology loss (masked diagonal) against PyTorch transcriptions
 * (tests/golden/ctp_losses.py), the queue's FIFO order, the compatible momentum update against
 * a direct computation, recall on hand-made similarity matrices; and short runs on a pairs set
 * the test draws (coloured shapes captioned with their names): R@1 far above chance, and a run
 * stopped after task 1 and resumed ends with the same bytes as an uninterrupted one; and a
 * manifest's pictures as labelled image sets (what `polyak pretrain --data` reads); and a
 * --backbone's recorded normalisation used in place of the data's; BERT's masked-language-model
 * loss against a direct computation and the text warm start learning the captions. */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctp.h"
#include "ctp_data.h"
#include "ctp_model.h"
#include "backbone.h"
#include "ctp_tokenizer.h"
#include "image.h"
#include "io_util.h"
#include "pk_test.h"
#include "teacher/teacher.h"

static pkt_rng g_rng;

static void setup(void) {
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)clock() << 20;
    g_rng.s = seed;
    fprintf(stderr, "test_ctp: seed %llu\n", (unsigned long long)seed);
}

static char *tmpdir(void) {
    char *d = strdup("/tmp/test_ctp.XXXXXX");
    ck_assert(mkdtemp(d) != NULL);
    return d;
}

static void remove_dir(const char *d) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ck_assert(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* A w x w RGB picture of a shape (0 circle, 1 square, 2 triangle, 3 cross) in a colour, at a
 * random offset and size, on white. */
static void write_shape(const char *path, int w, int shape, const uint8_t rgb[3], pkt_rng *r) {
    pk_image im;
    ck_assert_int_eq(image_create(&im, w, w, 3, 8), PK_OK);
    uint8_t *d = im.data;
    float cx = w / 2.0f + pkt_uniform(r, -2, 2), cy = w / 2.0f + pkt_uniform(r, -2, 2);
    float rad = w * pkt_uniform(r, 0.28f, 0.4f);
    for (int y = 0; y < w; y++)
        for (int x = 0; x < w; x++) {
            float dx = x + 0.5f - cx, dy = y + 0.5f - cy;
            bool in = shape == 0   ? dx * dx + dy * dy < rad * rad
                      : shape == 1 ? fabsf(dx) < rad * 0.8f && fabsf(dy) < rad * 0.8f
                      : shape == 2 ? dy > -rad && dy < rad && fabsf(dx) < (dy + rad) * 0.5f
                                   : (fabsf(dx) < rad * 0.3f || fabsf(dy) < rad * 0.3f) &&
                                         fabsf(dx) < rad && fabsf(dy) < rad;
            for (int k = 0; k < 3; k++)
                d[(y * w + x) * 3 + k] = in ? rgb[k] : 255;
        }
    ck_assert_int_eq(png_write(path, &im), PK_OK);
    image_free(&im);
}

/* ---- readers ---- */

static void expect_error(const char *path, const ctp_read_options *o, const char *a,
                         const char *b) {
    ctp_pairs ps;
    pk_status s = ctp_pairs_read(path, o, &ps);
    ck_assert_msg(s != PK_OK, "%s read without error", path);
    const char *e = polyak_error();
    ck_assert_msg(strstr(e, a) && (!b || strstr(e, b)), "error '%s' lacks '%s' / '%s'", e, a,
                  b ? b : "");
}

START_TEST(readers_read_all_three_formats) {
    char *d = tmpdir();
    const uint8_t red[3] = {220, 30, 30};
    char p[512];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/im%d.png", d, i);
        write_shape(p, 16, i, red, &g_rng);
    }
    write_text(d, "pairs.jsonl",
               "{\"image\": \"im0.png\", \"caption\": \"a red circle\", \"task\": \"round\"}\n"
               "\n"
               "{\"image\": \"im1.png\", \"caption\": [\"a red square\", \"red box\"], \"task\": "
               "\"angular\"}\n"
               "{\"image\": \"im2.png\", \"caption\": \"a red circle\", \"task\": \"round\"}\n");
    ctp_read_options o = {.test_fraction = 0.5, .seed = 3};
    ctp_pairs ps;
    snprintf(p, sizeof p, "%s/pairs.jsonl", d);
    ck_assert_msg(ctp_pairs_read(p, &o, &ps) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(ps.n, 4);
    ck_assert_int_eq(ps.ntasks, 2);
    ck_assert_str_eq(ps.task_names[0], "round");
    ck_assert_int_eq(ps.p[1].task, 1);
    ck_assert_int_eq(ps.ntexts, 3); /* "a red circle" twice is one caption group */
    ck_assert_int_eq(ps.p[0].text, ps.p[3].text);
    ck_assert_int_eq(ps.p[0].test, ps.p[3].test); /* a group's images stay together */
    ck_assert_str_eq(ps.p[2].caption, "red box");
    int held = 0;
    for (int i = 0; i < ps.n; i++)
        held += ps.p[i].test;
    ck_assert(held >= 1 && held <= 3);
    ctp_pairs_free(&ps);

    /* COCO: one task named after the file, split from the images entries */
    write_text(d, "captions_val.json",
               "{\"images\": [{\"id\": 7, \"file_name\": \"im0.png\", \"split\": \"test\"}, "
               "{\"id\": 9, \"file_name\": \"im3.png\", \"split\": \"train\"}],"
               " \"annotations\": [{\"image_id\": 9, \"caption\": \"a red cross\"}, "
               "{\"image_id\": 7, \"caption\": \"a red circle\"}, {\"image_id\": 7, "
               "\"caption\": \"round and red\"}]}");
    snprintf(p, sizeof p, "%s/captions_val.json", d);
    ck_assert_msg(ctp_pairs_read(p, NULL, &ps) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(ps.n, 3);
    ck_assert_int_eq(ps.ntasks, 1);
    ck_assert_str_eq(ps.task_names[0], "captions_val");
    ck_assert(!ps.p[0].test && ps.p[1].test && ps.p[2].test);
    ck_assert(strstr(ps.p[0].image, "im3.png") != NULL);
    ctp_pairs_free(&ps);

    /* CSV with a header, quoting (a comma and a doubled quote inside a caption) */
    write_text(d, "pairs.csv",
               "image,caption,task,split\n"
               "im0.png,\"a circle, red\",round,train\n"
               "im1.png,\"the \"\"square\"\"\",angular,test\n"
               "im2.png,plain words,round,test\r\n");
    snprintf(p, sizeof p, "%s/pairs.csv", d);
    ck_assert_msg(ctp_pairs_read(p, NULL, &ps) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(ps.n, 3);
    ck_assert_str_eq(ps.p[0].caption, "a circle, red");
    ck_assert_str_eq(ps.p[1].caption, "the \"square\"");
    ck_assert(ps.p[1].test && !ps.p[0].test);
    int order[2] = {1, 0};
    ck_assert_int_eq(ctp_pairs_order_tasks(&ps, order), PK_OK);
    ck_assert_str_eq(ps.task_names[0], "angular");
    ck_assert_int_eq(ps.p[1].task, 0);
    ctp_pairs_free(&ps);
    remove_dir(d);
    free(d);
}
END_TEST

/* A 16 x 16 RGBA picture of random colours and random alpha (0, 255 or between); the
 * expected 8 x 8 RGB (alpha over white, 2 x 2 mean) is computed here in doubles. */
static void write_rgba(const char *path, pkt_rng *r, double expect[8 * 8 * 3]) {
    pk_image im;
    ck_assert_int_eq(image_create(&im, 16, 16, 4, 8), PK_OK);
    uint8_t *d = im.data;
    memset(expect, 0, sizeof(double) * 8 * 8 * 3);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            uint8_t *px = d + (y * 16 + x) * 4;
            for (int k = 0; k < 3; k++)
                px[k] = (uint8_t)pkt_uniform(r, 0, 255.99f);
            float u = pkt_uniform(r, 0, 1);
            px[3] = u < 0.3f ? 0 : u < 0.6f ? 255 : (uint8_t)pkt_uniform(r, 0, 255.99f);
            double a = px[3] / 255.0;
            for (int k = 0; k < 3; k++)
                expect[((y / 2) * 8 + x / 2) * 3 + k] += (px[k] * a + 255.0 * (1 - a)) / 4.0;
        }
    ck_assert_int_eq(png_write(path, &im), PK_OK);
    image_free(&im);
}

START_TEST(manifest_pictures_for_image_tasks) {
    char *d = tmpdir();
    char p[512];
    double expect[5][8 * 8 * 3];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/im%d.png", d, i);
        write_rgba(p, &g_rng, expect[i]);
    }
    /* im0: two captions (one picture); im3: a training and a held-out pair (training);
     * im2, im4: held out only */
    write_text(d, "pairs.jsonl",
               "{\"image\": \"im0.png\", \"caption\": [\"one\", \"uno\"], \"task\": \"a\", "
               "\"split\": \"train\"}\n"
               "{\"image\": \"im1.png\", \"caption\": \"two\", \"task\": \"b\", \"split\": "
               "\"train\"}\n"
               "{\"image\": \"im2.png\", \"caption\": \"three\", \"task\": \"a\", \"split\": "
               "\"test\"}\n"
               "{\"image\": \"im3.png\", \"caption\": \"four\", \"task\": \"b\", \"split\": "
               "\"test\"}\n"
               "{\"image\": \"im3.png\", \"caption\": \"vier\", \"task\": \"b\", \"split\": "
               "\"train\"}\n"
               "{\"image\": \"im4.png\", \"caption\": \"five\", \"task\": \"b\", \"split\": "
               "\"test\"}\n");
    ck_assert(ctp_is_manifest(d));
    snprintf(p, sizeof p, "%s/pairs.jsonl", d);
    ck_assert(ctp_is_manifest(p));
    snprintf(p, sizeof p, "%s/im0.png", d);
    ck_assert(!ctp_is_manifest(p));
    char *empty = tmpdir();
    ck_assert(!ctp_is_manifest(empty));
    remove_dir(empty);
    free(empty);

    pk_dataset tr, te;
    ck_assert_msg(ctp_pairs_images(d, NULL, 8, &tr, &te) == PK_OK, "%s", polyak_error());
    const int want_tr[3] = {0, 1, 3}, want_te[2] = {2, 4};
    const int lab_tr[3] = {0, 1, 1}, lab_te[2] = {0, 1};
    ck_assert_int_eq(tr.n, 3);
    ck_assert_int_eq(te.n, 2);
    ck_assert(tr.w == 8 && tr.h == 8 && tr.c == 3 && te.w == 8 && te.c == 3);
    ck_assert_int_eq(tr.num_classes, 2);
    ck_assert_str_eq(tr.class_names[1], "b");
    for (int s = 0; s < 2; s++) {
        const pk_dataset *ds = s ? &te : &tr;
        for (int i = 0; i < ds->n; i++) {
            int src = s ? want_te[i] : want_tr[i];
            ck_assert_int_eq(ds->labels[i], s ? lab_te[i] : lab_tr[i]);
            for (int k = 0; k < 8 * 8 * 3; k++) {
                /* composited to 8 bits, then the 2 x 2 mean rounded: within 1 of the exact */
                double got = ds->images[(size_t)i * 192 + (size_t)k];
                ck_assert_msg(fabs(got - expect[src][k]) <= 1.01,
                              "picture %d value %d: %g, expected %g", src, k, got, expect[src][k]);
            }
        }
    }
    dataset_free(&tr), dataset_free(&te);

    /* no held-out picture: an error naming the manifest */
    write_text(d, "pairs.jsonl",
               "{\"image\": \"im0.png\", \"caption\": \"one\", \"split\": \"train\"}\n"
               "{\"image\": \"im0.png\", \"caption\": \"two\", \"split\": \"test\"}\n");
    ck_assert(ctp_pairs_images(d, NULL, 8, &tr, &te) != PK_OK);
    ck_assert_msg(strstr(polyak_error(), "0 held-out pictures") != NULL, "%s", polyak_error());
    ck_assert(tr.images == NULL && te.images == NULL);
    remove_dir(d);
    free(d);
}
END_TEST

START_TEST(readers_name_file_and_line) {
    char *d = tmpdir();
    const uint8_t blue[3] = {20, 40, 220};
    char p[512];
    snprintf(p, sizeof p, "%s/a.png", d);
    write_shape(p, 8, 0, blue, &g_rng);
    const char *good = "{\"image\": \"a.png\", \"caption\": \"x\", \"task\": \"t\"}\n";
    char text[1024];
    snprintf(p, sizeof p, "%s/bad.jsonl", d);
    /* a missing image on line 2 */
    snprintf(text, sizeof text, "%s{\"image\": \"nope.png\", \"caption\": \"y\"}\n", good);
    write_text(d, "bad.jsonl", text);
    expect_error(p, NULL, "bad.jsonl: line 2", "nope.png");
    /* an empty caption on line 3 */
    snprintf(text, sizeof text, "%s%s{\"image\": \"a.png\", \"caption\": \"  \"}\n", good, good);
    write_text(d, "bad.jsonl", text);
    expect_error(p, NULL, "bad.jsonl: line 3", "empty caption");
    /* not JSON */
    snprintf(text, sizeof text, "%s{\"image\": \"a.png\", \"caption\": \n", good);
    write_text(d, "bad.jsonl", text);
    expect_error(p, NULL, "bad.jsonl: line 2", "not a JSON object");
    /* an unknown task when the tasks are given */
    snprintf(text, sizeof text, "%s{\"image\": \"a.png\", \"caption\": \"z\", \"task\": \"u\"}\n",
             good);
    write_text(d, "bad.jsonl", text);
    const char *tasks[] = {"t"};
    ctp_read_options o = {.tasks = tasks, .ntasks = 1};
    expect_error(p, &o, "bad.jsonl: line 2", "unknown task 'u'");
    /* CSV: unbalanced quotes on line 3, too many fields on line 2 */
    write_text(d, "bad.csv", "a.png,ok\na.png,\"broken\n");
    snprintf(p, sizeof p, "%s/bad.csv", d);
    expect_error(p, NULL, "bad.csv: line 2", "quotes");
    write_text(d, "bad.csv", "a.png,ok\na.png,b,c,train,e\n");
    expect_error(p, NULL, "bad.csv: line 2", "5 fields");
    write_text(d, "bad.csv", "a.png,ok\n\nmissing.png,x\n");
    expect_error(p, NULL, "bad.csv: line 3", "missing.png");
    /* COCO: an annotation of an unknown image */
    write_text(d, "captions_x.json",
               "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\"}], \"annotations\": "
               "[{\"image_id\": 1, \"caption\": \"c\"}, {\"image_id\": 2, \"caption\": \"d\"}]}");
    snprintf(p, sizeof p, "%s/captions_x.json", d);
    expect_error(p, NULL, "captions_x.json: annotations[1]", "image_id 2");
    remove_dir(d);
    free(d);
}
END_TEST

/* ---- tokenizer ---- */

START_TEST(tokenizer_round_trips) {
    /* random captions over a small word list, with punctuation and capitals */
    const char *words[] = {"Red",   "circle", "circles",  "square", "squared",  "blue",
                           "green", "cross",  "crossing", "tri",    "triangle", "shape"};
    enum { N = 60 };
    char *texts[N];
    for (int i = 0; i < N; i++) {
        char buf[256] = "";
        int nw = 2 + (int)(pkt_uniform(&g_rng, 0, 5));
        for (int k = 0; k < nw; k++) {
            strcat(buf, words[(int)pkt_uniform(&g_rng, 0, 11.999f)]);
            strcat(buf, k == 0 && i % 3 == 0 ? ", " : k == 1 && i % 4 == 0 ? "! " : " ");
        }
        texts[i] = strdup(buf);
    }
    ctp_vocab v;
    ck_assert_int_eq(ctp_vocab_learn((const char *const *)texts, N, 40, &v), PK_OK);
    ck_assert_str_eq(v.piece[0], "[PAD]");
    ck_assert_str_eq(v.piece[2], "[CLS]");
    ck_assert(v.n >= 30 && v.n <= 40); /* the alphabet plus merges up to the size */
    for (int i = 0; i < N; i++) {
        int32_t ids[64];
        int real = ctp_encode(&v, texts[i], 64, ids);
        ck_assert_int_eq(ids[0], CTP_CLS);
        ck_assert_int_eq(ids[real - 1], CTP_SEP);
        for (int k = real; k < 64; k++)
            ck_assert_int_eq(ids[k], CTP_PAD);
        char *back = ctp_decode(&v, ids, 64), *norm = ctp_normalize(texts[i]);
        ck_assert_str_eq(back, norm);
        free(back), free(norm);
    }
    /* an unseen word of known letters is spelled with pieces; an unknown letter is [UNK] */
    int32_t ids[16];
    ctp_encode(&v, "crossed squares", 16, ids);
    char *back = ctp_decode(&v, ids, 16);
    ck_assert_str_eq(back, "crossed squares");
    free(back);
    ctp_encode(&v, "zebra circle", 16, ids);
    ck_assert_int_eq(ids[1], CTP_UNK);
    /* truncation keeps [SEP] last */
    ck_assert_int_eq(ctp_encode(&v, texts[0], 3, ids), 3);
    ck_assert_int_eq(ids[2], CTP_SEP);
    /* the saved text reads back to the same vocabulary */
    size_t len;
    char *text = ctp_vocab_text(&v, &len);
    ctp_vocab w;
    ck_assert_int_eq(ctp_vocab_parse("vocab.txt", text, &w), PK_OK);
    ck_assert_int_eq(w.n, v.n);
    for (int i = 0; i < v.n; i++)
        ck_assert_int_eq(ctp_vocab_id(&w, v.piece[i]), i);
    ctp_vocab_free(&w);
    ck_assert(ctp_vocab_parse("bad.txt", "[UNK]\n[PAD]\n", &w) != PK_OK);
    ck_assert(strstr(polyak_error(), "bad.txt: line 1") != NULL);
    /* learning does not depend on the caption order */
    ctp_vocab u;
    char *rev[N];
    for (int i = 0; i < N; i++)
        rev[i] = texts[N - 1 - i];
    ck_assert_int_eq(ctp_vocab_learn((const char *const *)rev, N, 40, &u), PK_OK);
    ck_assert_int_eq(u.n, v.n);
    for (int i = 0; i < v.n; i++)
        ck_assert_str_eq(u.piece[i], v.piece[i]);
    ctp_vocab_free(&u), ctp_vocab_free(&v), ctp_vocab_free(&w);
    free(text);
    for (int i = 0; i < N; i++)
        free(texts[i]);
}
END_TEST

/* ---- losses against PyTorch ---- */

static const float *G(const pkt_golden *g, const char *pre, int i, const char *f) {
    char n[64];
    snprintf(n, sizeof n, "%s%d.%s", pre, i, f);
    return pkt_golden_get(g, n)->data;
}

START_TEST(contrastive_loss_matches_pytorch) {
    pkt_golden *g = pkt_golden_load("ctp/losses.bin");
    pk_ctx *c = pkt_ctx("cpu");
    for (int i = 0; i < 3; i++) {
        const float *cfg = G(g, "contrast", i, "cfg");
        int b = (int)cfg[0], n = (int)cfg[1], e = (int)cfg[2];
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        tensor *q = pkt_param(c, 2, (int64_t[]){b, e}, G(g, "contrast", i, "q"));
        tensor *k = pkt_param(c, 2, (int64_t[]){n, e}, G(g, "contrast", i, "k"));
        tensor *t = pkt_const(c, PK_F32, 2, (int64_t[]){b, n}, G(g, "contrast", i, "targets"));
        tensor *loss = ctp_contrastive_loss(c, q, k, t, cfg[3]);
        ck_assert_msg(loss != NULL, "%s", polyak_error());
        ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
        float *lv = pkt_download(loss), *gq = pkt_download(q->grad), *gk = pkt_download(k->grad);
        float want = G(g, "contrast", i, "loss")[0];
        ck_assert_msg(fabsf(lv[0] - want) <= 1e-5f * fabsf(want),
                      "case %d: loss %.8g, PyTorch %.8g", i, lv[0], want);
        double eq = pkt_nerr(gq, G(g, "contrast", i, "grad_q"), (int64_t)b * e);
        double ek = pkt_nerr(gk, G(g, "contrast", i, "grad_k"), (int64_t)n * e);
        ck_assert_msg(eq < 1e-5 && ek < 1e-5, "case %d: gradient errors %g (q), %g (k)", i, eq, ek);
        free(lv), free(gq), free(gk);

        /* the soft targets of the same sizes */
        const float *tc = G(g, "targets", i, "cfg");
        int tb = (int)tc[0], tn = (int)tc[1], te = (int)tc[2];
        int32_t qid[64], kid[64];
        for (int j = 0; j < tb; j++)
            qid[j] = (int32_t)G(g, "targets", i, "qid")[j];
        for (int j = 0; j < tn; j++)
            kid[j] = (int32_t)G(g, "targets", i, "kid")[j];
        float *tg = malloc(sizeof(float) * (size_t)tb * tn);
        ctp_soft_targets(G(g, "targets", i, "qm"), G(g, "targets", i, "km"), qid, kid, tb, tn, te,
                         tc[4], tc[3], tg);
        double et = pkt_nerr(tg, G(g, "targets", i, "out"), (int64_t)tb * tn);
        ck_assert_msg(et < 1e-6, "case %d: soft targets error %g", i, et);
        free(tg);
    }
    pkt_ctx_done(c);
    pkt_golden_free(g);
}
END_TEST

START_TEST(topology_loss_matches_pytorch) {
    pkt_golden *g = pkt_golden_load("ctp/losses.bin");
    pk_ctx *c = pkt_ctx("cpu");
    for (int i = 0; i < 3; i++) {
        const float *cfg = G(g, "topo", i, "cfg");
        int b = (int)cfg[0], e = (int)cfg[1];
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        int64_t sh[2] = {b, e};
        tensor *img = pkt_param(c, 2, sh, G(g, "topo", i, "img"));
        tensor *txt = pkt_param(c, 2, sh, G(g, "topo", i, "txt"));
        tensor *ir = pkt_const(c, PK_F32, 2, sh, G(g, "topo", i, "img_ref"));
        tensor *tr = pkt_const(c, PK_F32, 2, sh, G(g, "topo", i, "txt_ref"));
        tensor *loss = ctp_topology_loss(c, img, txt, ir, tr, cfg[2]);
        ck_assert_msg(loss != NULL, "%s", polyak_error());
        ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
        float *lv = pkt_download(loss), *gi = pkt_download(img->grad),
              *gt = pkt_download(txt->grad);
        float want = G(g, "topo", i, "loss")[0];
        ck_assert_msg(fabsf(lv[0] - want) <= 2e-5f * fabsf(want) + 1e-7f,
                      "case %d: loss %.8g, PyTorch %.8g", i, lv[0], want);
        double ei = pkt_nerr(gi, G(g, "topo", i, "grad_img"), (int64_t)b * e);
        double et = pkt_nerr(gt, G(g, "topo", i, "grad_txt"), (int64_t)b * e);
        ck_assert_msg(ei < 1e-4 && et < 1e-4, "case %d: gradient errors %g, %g", i, ei, et);
        free(lv), free(gi), free(gt);
        /* the reference itself: zero loss and gradient */
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        tensor *i2 = pkt_param(c, 2, sh, G(g, "topo", i, "img_ref"));
        tensor *t2 = pkt_param(c, 2, sh, G(g, "topo", i, "txt_ref"));
        ir = pkt_const(c, PK_F32, 2, sh, G(g, "topo", i, "img_ref"));
        tr = pkt_const(c, PK_F32, 2, sh, G(g, "topo", i, "txt_ref"));
        loss = ctp_topology_loss(c, i2, t2, ir, tr, cfg[2]);
        lv = pkt_download(loss);
        ck_assert_msg(fabsf(lv[0]) < 1e-6f, "case %d: loss against itself %g", i, lv[0]);
        free(lv);
    }
    pkt_ctx_done(c);
    pkt_golden_free(g);
}
END_TEST

/* ---- queue, momentum, recall ---- */

START_TEST(queue_is_fifo) {
    ctp_queue q;
    pk_rng r = {g_rng.s};
    ck_assert_int_eq(ctp_queue_init(&q, 5, 4, &r), PK_OK);
    for (int i = 0; i < 5; i++) { /* random unit vectors to start, id -1 */
        double n2 = 0;
        for (int d = 0; d < 4; d++)
            n2 += q.feat[i * 4 + d] * q.feat[i * 4 + d];
        ck_assert(fabs(n2 - 1) < 1e-5);
        ck_assert(q.ids[i] == -1.0f);
    }
    float f[8 * 4];
    int32_t ids[8];
    for (int i = 0; i < 8; i++) {
        ids[i] = 100 + i;
        for (int d = 0; d < 4; d++)
            f[i * 4 + d] = (float)(i * 10 + d);
    }
    ctp_queue_push(&q, f, ids, 3); /* 0 1 2 at slots 0..2 */
    ck_assert_int_eq(q.ptr, 3);
    ctp_queue_push(&q, f + 12, ids + 3, 3); /* 3 4 at slots 3, 4; 5 wraps to slot 0 */
    ck_assert_int_eq(q.ptr, 1);
    const int want[5] = {5, 1, 2, 3, 4};
    for (int s = 0; s < 5; s++) {
        ck_assert(q.ids[s] == 100.0f + want[s]);
        for (int d = 0; d < 4; d++)
            ck_assert(q.feat[s * 4 + d] == (float)(want[s] * 10 + d));
    }
    ctp_queue_push(&q, f + 24, ids + 6, 2); /* 6 7 replace the oldest: slots 1, 2 */
    ck_assert(q.ids[1] == 106.0f && q.ids[2] == 107.0f && q.ids[0] == 105.0f);
    ck_assert_int_eq(q.ptr, 3);
    ctp_queue_free(&q);
}
END_TEST

START_TEST(compatible_momentum_matches_direct) {
    pk_ctx *c = pkt_ctx("cpu");
    /* parameters of several shapes (sizes not multiples of the 64-float alignment) */
    const int64_t sizes[4] = {7, 130, 64, 1};
    tensor *p[4];
    float *h[4], *m0[4], *prev0[4];
    for (int i = 0; i < 4; i++) {
        h[i] = malloc(sizeof(float) * (size_t)sizes[i]);
        pkt_fill_uniform(&g_rng, h[i], sizes[i], -1, 1);
        static const char *const names[4] = {"p0", "p1", "p2", "p3"}; /* kept, not copied */
        p[i] = pk_param_new(c, names[i], 1, &sizes[i]);
        ck_assert_int_eq(tensor_upload(p[i], h[i]), PK_OK);
    }
    pk_teacher *mom, *ref;
    ck_assert_int_eq(teacher_create(c, &(pk_teacher_options){.name = "m"}, p, 4, &mom), PK_OK);
    ck_assert_int_eq(teacher_create(c, &(pk_teacher_options){.name = "r"}, p, 4, &ref), PK_OK);
    tensor *rp[4];
    for (int i = 0; i < 4; i++)
        rp[i] = teacher_tensor(ref, i);
    /* move the model and the momentum model apart from the reference */
    for (int i = 0; i < 4; i++) {
        prev0[i] = pkt_download(p[i]);
        m0[i] = malloc(sizeof(float) * (size_t)sizes[i]);
        pkt_fill_uniform(&g_rng, m0[i], sizes[i], -1, 1);
        ck_assert_int_eq(tensor_upload(teacher_tensor(mom, i), m0[i]), PK_OK);
        pkt_fill_uniform(&g_rng, h[i], sizes[i], -1, 1);
        ck_assert_int_eq(tensor_upload(p[i], h[i]), PK_OK);
    }
    ck_assert_msg(ctp_compatible_update(mom, p, rp) == PK_OK, "%s", polyak_error());
    for (int i = 0; i < 4; i++) {
        float *got = pkt_download(teacher_tensor(mom, i));
        for (int64_t j = 0; j < sizes[i]; j++) {
            double want = 0.9 * m0[i][j] + 0.05 * h[i][j] + 0.05 * prev0[i][j];
            ck_assert_msg(fabs(got[j] - want) < 1e-6, "tensor %d[%lld]: %g, expected %g", i,
                          (long long)j, got[j], want);
        }
        free(got);
    }
    /* a copy: the reference takes the model's current values */
    ck_assert_int_eq(ctp_teacher_copy(ref, p), PK_OK);
    for (int i = 0; i < 4; i++) {
        float *got = pkt_download(rp[i]);
        ck_assert(memcmp(got, h[i], sizeof(float) * (size_t)sizes[i]) == 0);
        free(got), free(h[i]), free(m0[i]), free(prev0[i]);
    }
    teacher_destroy(mom), teacher_destroy(ref);
    pkt_ctx_done(c);
}
END_TEST

/* The per-task schedule against CTP's utils.cosine_scheduler written out (warm-up 0:
 * min + 0.5 (init - min) (1 + cos(pi i / n)) for i in 0..n-1), and the warm-up's ramp. */
START_TEST(task_lr_is_ctps_cosine) {
    for (int it = 0; it < 20; it++) {
        int64_t n = 1 + (int64_t)pkt_uniform(&g_rng, 0, 400);
        double lr = 1e-5 + 1e-3 * pkt_uniform(&g_rng, 0, 1), ratio = pkt_uniform(&g_rng, 0.001f, 1);
        double lo = lr * ratio;
        for (int64_t i = 0; i < n; i++) {
            double want = lo + 0.5 * (lr - lo) * (1 + cos(3.141592653589793 * (double)i / n));
            double got = ctp_task_lr(i, n, lr, 0, ratio);
            ck_assert_msg(fabs(got - want) <= 1e-12 * lr, "n %lld i %lld: %.12g, expected %.12g",
                          (long long)n, (long long)i, got, want);
        }
        /* starts at the peak (no warm-up) */
        ck_assert(fabs(ctp_task_lr(0, n, lr, 0, ratio) - lr) <= 1e-15 * lr);
        /* with a warm-up of w steps: lr (i + 1) / w, then the same cosine */
        int w = 1 + (int)pkt_uniform(&g_rng, 0, 30);
        for (int64_t i = 0; i < n + 5; i++) {
            double want = i < w
                              ? lr * (double)(i + 1) / w
                              : lo + 0.5 * (lr - lo) * (1 + cos(3.141592653589793 * (double)i / n));
            ck_assert(fabs(ctp_task_lr(i, n, lr, w, ratio) - want) <= 1e-12 * lr);
        }
    }
}
END_TEST

/* After ctp_optimizer_reset an AdamW steps exactly as a new one created on the same parameter
 * values (CTP creates a new AdamW at every task start); without the reset it does not. */
START_TEST(optimizer_reset_is_a_new_adamw) {
    pk_ctx *c = pkt_ctx("cpu");
    const int64_t sa[2] = {3, 70}, sb[1] = {9};
    tensor *p[3][2];
    pk_optimizer *o[3];
    for (int k = 0; k < 3; k++) {
        static const char *const na[3] = {"a0", "a1", "a2"}, *const nb[3] = {"b0", "b1", "b2"};
        p[k][0] = pk_param_new(c, na[k], 2, sa);
        p[k][1] = pk_param_new(c, nb[k], 1, sb);
        pk_param_group g[2] = {
            {.name = "decay", .params = &p[k][0], .n = 1, .lr = 1e-2, .weight_decay = 0.05},
            {.name = "no_decay", .params = &p[k][1], .n = 1, .lr = 1e-2}};
        pk_optim_options oo = {.kind = PK_OPTIM_ADAMW,
                               .adamw = optim_adamw_defaults((pk_adamw_params){0})};
        ck_assert_int_eq(optim_create(c, &oo, g, 2, &o[k]), PK_OK);
    }
    /* optimizers 0 and 1 take a few steps of random gradients (a first task) */
    for (int step = 0; step < 4; step++)
        for (int k = 0; k < 2; k++) {
            for (int j = 0; j < 2; j++) {
                int64_t n = tensor_numel(p[k][j]);
                float *h = malloc(sizeof(float) * (size_t)n);
                pkt_rng r = {1000 + 10 * (uint64_t)step + (uint64_t)j};
                pkt_fill_uniform(&r, h, n, -1, 1);
                ck_assert_int_eq(tensor_upload(p[k][j]->grad, h), PK_OK);
                free(h);
            }
            ck_assert_int_eq(optim_step(o[k]), PK_OK);
        }
    ck_assert_int_eq(ctp_optimizer_reset(o[0]), PK_OK);
    ck_assert_int_eq(optim_steps(o[0]), 0);
    /* all three at the same parameters; one step of the same gradient */
    for (int j = 0; j < 2; j++) {
        int64_t n = tensor_numel(p[0][j]);
        float *h = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
        pkt_fill_uniform(&g_rng, h, n, -1, 1);
        pkt_fill_uniform(&g_rng, g, n, -1, 1);
        for (int k = 0; k < 3; k++) {
            ck_assert_int_eq(tensor_upload(p[k][j], h), PK_OK);
            ck_assert_int_eq(tensor_upload(p[k][j]->grad, g), PK_OK);
        }
        free(h), free(g);
    }
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(optim_step(o[k]), PK_OK);
    bool kept_differs = false;
    for (int j = 0; j < 2; j++) {
        int64_t n = tensor_numel(p[0][j]);
        float *reset = pkt_download(p[0][j]), *kept = pkt_download(p[1][j]),
              *fresh = pkt_download(p[2][j]);
        ck_assert_msg(memcmp(reset, fresh, sizeof(float) * (size_t)n) == 0,
                      "tensor %d: the reset optimizer's step differs from a new one's", j);
        kept_differs |= memcmp(kept, fresh, sizeof(float) * (size_t)n) != 0;
        free(reset), free(kept), free(fresh);
    }
    ck_assert_msg(kept_differs, "the optimizer that kept its state stepped as a new one");
    for (int k = 0; k < 3; k++)
        optim_destroy(o[k]);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(recall_on_hand_made_similarities) {
    /* 4 images, 3 texts; images 0 and 1 show text 0, image 2 text 1, image 3 text 2 */
    const int32_t it[4] = {0, 0, 1, 2};
    const float sim[4 * 3] = {
        0.9f, 0.1f, 0.2f, /* image 0: its text first */
        0.3f, 0.5f, 0.4f, /* image 1: its text third */
        0.8f, 0.7f, 0.1f, /* image 2: its text second */
        0.2f, 0.1f, 0.6f, /* image 3: first */
    };
    double i2t[3], t2i[3];
    ctp_recall(sim, it, 4, 3, i2t, t2i);
    ck_assert(fabs(i2t[0] - 0.5) < 1e-12); /* images 0, 3 */
    ck_assert(fabs(i2t[1] - 1.0) < 1e-12); /* everything within 5 of 3 */
    ck_assert(fabs(i2t[2] - 1.0) < 1e-12);
    /* text 0: column (0.9, 0.3, 0.8, 0.2): image 0 first; text 1: (0.1, 0.5, 0.7, 0.1): image 2
     * first; text 2: (0.2, 0.4, 0.1, 0.6): image 3 first */
    ck_assert(fabs(t2i[0] - 1.0) < 1e-12);
    /* a larger case: random scores, positives forced to rank exactly r */
    enum { NI = 30 };
    float s2[NI * NI];
    int32_t id[NI];
    for (int i = 0; i < NI; i++) {
        id[i] = i;
        for (int t = 0; t < NI; t++)
            s2[i * NI + t] = pkt_uniform(&g_rng, 0, 1);
        /* image i's own text ranks i % 12 (so 1/12 at rank 0, ranks 0..4 5/12, 0..9 10/12) */
        float v[NI];
        memcpy(v, s2 + i * NI, sizeof v);
        for (int a = 0; a < NI; a++) /* sort descending */
            for (int b = a + 1; b < NI; b++)
                if (v[b] > v[a]) {
                    float t = v[a];
                    v[a] = v[b], v[b] = t;
                }
        int r = i % 12, own = -1;
        for (int t = 0; t < NI; t++)
            if (s2[i * NI + t] == v[r]) own = t;
        s2[i * NI + own] = s2[i * NI + i];
        s2[i * NI + i] = v[r];
    }
    ctp_recall(s2, id, NI, NI, i2t, t2i);
    int h1 = 0, h5 = 0, h10 = 0;
    for (int i = 0; i < NI; i++)
        h1 += i % 12 < 1, h5 += i % 12 < 5, h10 += i % 12 < 10;
    ck_assert(fabs(i2t[0] - h1 / 30.0) < 1e-12);
    ck_assert(fabs(i2t[1] - h5 / 30.0) < 1e-12);
    ck_assert(fabs(i2t[2] - h10 / 30.0) < 1e-12);
}
END_TEST

/* ---- runs ---- */

/* Writes a pairs set of coloured shapes: 2 tasks (round: circle, cross; angular: square,
 * triangle) x 4 colours = 8 captions a task, `per` pictures each, the last 2 held out. */
static void make_shapes(const char *d, int per) {
    const char *names[4] = {"circle", "square", "triangle", "cross"};
    const int task_of[4] = {0, 1, 1, 0};
    const char *colours[4] = {"red", "green", "blue", "yellow"};
    const uint8_t rgb[4][3] = {{220, 30, 30}, {30, 180, 40}, {30, 50, 220}, {230, 210, 20}};
    char p[512];
    snprintf(p, sizeof p, "%s/pairs.jsonl", d);
    FILE *f = fopen(p, "w");
    ck_assert(f != NULL);
    pkt_rng r = {12345}; /* the same set for every run of the test */
    for (int s = 0; s < 4; s++)
        for (int col = 0; col < 4; col++)
            for (int k = 0; k < per; k++) {
                snprintf(p, sizeof p, "%s/%s_%s_%d.png", d, colours[col], names[s], k);
                write_shape(p, 16, s, rgb[col], &r);
                fprintf(f,
                        "{\"image\": \"%s_%s_%d.png\", \"caption\": \"a %s %s\", \"task\": "
                        "\"%s\", \"split\": \"%s\"}\n",
                        colours[col], names[s], k, colours[col], names[s],
                        task_of[s] ? "angular" : "round", k >= per - 2 ? "test" : "train");
            }
    fclose(f);
}

static ctp_options tiny_options(const char *data, const char *out, ctp_method m) {
    return (ctp_options){.data = data,
                         .out = out,
                         .method = m,
                         .epochs = 60,
                         .batch = 16,
                         .lr = 2e-3,
                         .img_size = 16,
                         .patch = 4,
                         .dim = 32,
                         .depth = 1,
                         .heads = 2,
                         .txt_dim = 32,
                         .txt_depth = 1,
                         .txt_heads = 2,
                         .max_len = 8,
                         .vocab_size = 60,
                         .embed = 32,
                         .queue = 64,
                         .momentum = 0.9,
                         .seed = 5,
                         .threads = 1};
}

START_TEST(short_run_beats_chance) {
    char *d = tmpdir(), out[512];
    make_shapes(d, 8);
    snprintf(out, sizeof out, "%s/run", d);
    ctp_options o = tiny_options(d, out, CTP_METHOD_CTP);
    ctp_result r;
    ck_assert_msg(ctp_run(&o, &r) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(r.ntasks, 2);
    /* 16 held-out pictures of 8 captions per task, 16 captions in all: chance R@1 is 1/16 */
    fprintf(stderr, "test_ctp: R@1 i2t %.3f t2i %.3f, R_m %.3f, matrix %.3f %.3f %.3f\n", r.i2t[0],
            r.t2i[0], r.r_m, r.recall[0][0], r.recall[1][0], r.recall[1][1]);
    ck_assert_msg(r.i2t[0] > 3.0 / 16 && r.t2i[0] > 3.0 / 16,
                  "R@1 %.3f / %.3f is not far above chance (1/16)", r.i2t[0], r.t2i[0]);
    ck_assert(isnan(r.recall[0][1]) && !isnan(r.recall[1][0]));
    ck_assert(fabs(r.bwt - (r.recall[1][0] - r.recall[0][0])) < 1e-6);
    /* CTP's eval.py pools tasks 0..i: for i = 0 that is task 0's own pairs, so the pooled
     * values of the first task are the matrix's column 0; the last pooled value after the last
     * task is the final R_m; BWT over the pooled sets is their difference */
    ck_assert(fabs(r.seen[0] - r.recall[0][0]) < 1e-6 &&
              fabs(r.seen_final[0] - r.recall[1][0]) < 1e-6);
    ck_assert(fabs(r.seen[1] - r.r_m) < 1e-6 && fabs(r.seen_final[1] - r.r_m) < 1e-6);
    ck_assert(fabs(r.bwt_cumulative - (r.seen_final[0] - r.seen[0])) < 1e-6);
    /* the metrics file holds the fixed names */
    char p[600];
    snprintf(p, sizeof p, "%s/metrics.json", out);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(io_read_file(p, &buf, &len), PK_OK);
    const char *keys[] = {"\"kind\": \"ctp\"",
                          "\"recall_matrix\"",
                          "\"R_m\"",
                          "\"BWT\"",
                          "\"i2t\"",
                          "\"t2i\"",
                          "\"r10\"",
                          "\"task_names\"",
                          "\"method\": \"ctp\"",
                          "\"R_m_seen\"",
                          "\"R_m_seen_final\"",
                          "\"BWT_cumulative\""};
    char *text = strndup((char *)buf, len);
    for (int k = 0; k < 12; k++)
        ck_assert_msg(strstr(text, keys[k]) != NULL, "metrics.json lacks %s:\n%s", keys[k], text);
    free(text), free(buf);
    remove_dir(d);
    free(d);
}
END_TEST

static uint8_t *slurp(const char *dir, const char *name, size_t *len) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    uint8_t *b = NULL;
    ck_assert_msg(io_read_file(p, &b, len) == PK_OK, "%s", polyak_error());
    return b;
}

START_TEST(resume_across_a_task_boundary) {
    char *d = tmpdir(), a[512], b[512];
    make_shapes(d, 4);
    snprintf(a, sizeof a, "%s/a", d);
    snprintf(b, sizeof b, "%s/b", d);
    ctp_options o = tiny_options(d, a, CTP_METHOD_CTP);
    o.epochs = 2;
    ctp_result r1, r2;
    ck_assert_msg(ctp_run(&o, &r1) == PK_OK, "%s", polyak_error());
    o.out = b;
    o.stop_after_task = 1;
    ck_assert_msg(ctp_run(&o, &r2) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(r2.ntasks, -1);
    o.stop_after_task = 0;
    o.resume = true;
    ck_assert_msg(ctp_run(&o, &r2) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(r2.ntasks, 2);
    size_t la, lb;
    uint8_t *ma = slurp(a, "model.safetensors", &la), *mb = slurp(b, "model.safetensors", &lb);
    ck_assert_msg(la == lb && memcmp(ma, mb, la) == 0, "the resumed model differs");
    free(ma), free(mb);
    ma = slurp(a, "log.csv", &la), mb = slurp(b, "log.csv", &lb);
    /* the seconds column differs; compare the losses and recall of the last row */
    ck_assert(r1.r_m == r2.r_m && r1.bwt == r2.bwt);
    for (int k = 0; k < 3; k++)
        ck_assert(r1.i2t[k] == r2.i2t[k] && r1.t2i[k] == r2.t2i[k]);
    free(ma), free(mb);
    /* a changed option is refused on resume */
    o.lr = 1e-3;
    ck_assert(ctp_run(&o, &r2) != PK_OK);
    remove_dir(d);
    free(d);
}
END_TEST

/* BERT's MLM loss (tied decoder) and its gradients against a direct float64 computation:
 * tokens (B, L, D), M distinct masked positions, tok_embed (V, D). */
START_TEST(mlm_loss_matches_direct) {
    pk_ctx *c = pkt_ctx("cpu");
    for (int it = 0; it < 3; it++) {
        int B = 2 + it, L = 5, D = 8, V = 11 + 3 * it, M = 3 + it;
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        float *ht = malloc(sizeof(float) * (size_t)B * L * D), *he = malloc(sizeof(float) * V * D);
        for (int i = 0; i < B * L * D; i++)
            ht[i] = pkt_uniform(&g_rng, -1.5f, 1.5f);
        for (int i = 0; i < V * D; i++)
            he[i] = pkt_uniform(&g_rng, -1.5f, 1.5f);
        int32_t pos[8], lab[8];
        for (int q = 0; q < M; q++) {
            bool dup;
            do { /* distinct positions */
                pos[q] = (int32_t)pkt_uniform(&g_rng, 0, (float)(B * L) - 0.01f);
                dup = false;
                for (int j = 0; j < q; j++)
                    dup = dup || pos[j] == pos[q];
            } while (dup);
            lab[q] = (int32_t)pkt_uniform(&g_rng, 0, (float)V - 0.01f);
        }
        tensor *tok = pkt_param(c, 3, (int64_t[]){B, L, D}, ht);
        tensor *emb = pkt_param(c, 2, (int64_t[]){V, D}, he);
        tensor *tp = tensor_new(c->step, PK_I32, 1, (int64_t[]){M});
        tensor *tl = tensor_new(c->step, PK_I32, 1, (int64_t[]){M});
        ck_assert(tp && tl && tensor_upload(tp, pos) == PK_OK && tensor_upload(tl, lab) == PK_OK);
        ctp_model m = {.cfg = {.txt_dim = D}, .text = {.tok_embed = emb}};
        tensor *loss = ctp_mlm_loss(c, &m, tok, tp, tl);
        ck_assert_msg(loss != NULL, "%s", polyak_error());
        ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
        float *lv = pkt_download(loss), *gt = pkt_download(tok->grad),
              *ge = pkt_download(emb->grad);
        double want = 0, *wt = calloc((size_t)B * L * D, sizeof(double)),
               *we = calloc((size_t)V * D, sizeof(double)), *pr = malloc(sizeof(double) * V);
        for (int q = 0; q < M; q++) {
            const float *h = ht + (size_t)pos[q] * D;
            double mx = -INFINITY, z = 0;
            for (int v = 0; v < V; v++) {
                pr[v] = 0;
                for (int d = 0; d < D; d++)
                    pr[v] += (double)h[d] * he[v * D + d];
                if (pr[v] > mx) mx = pr[v];
            }
            double lg = pr[lab[q]];
            for (int v = 0; v < V; v++)
                z += pr[v] = exp(pr[v] - mx);
            want += (mx + log(z) - lg) / M;
            for (int v = 0; v < V; v++) {
                double gv = (pr[v] / z - (v == lab[q])) / M;
                for (int d = 0; d < D; d++) {
                    wt[(size_t)pos[q] * D + d] += gv * he[v * D + d];
                    we[v * D + d] += gv * h[d];
                }
            }
        }
        ck_assert_msg(fabs(lv[0] - want) <= 1e-5 * fabs(want), "loss %.8g, direct %.8g", lv[0],
                      want);
        double et = 0, ee = 0, nt = 0, ne = 0;
        for (int i = 0; i < B * L * D; i++)
            et += (gt[i] - wt[i]) * (gt[i] - wt[i]), nt += wt[i] * wt[i];
        for (int i = 0; i < V * D; i++)
            ee += (ge[i] - we[i]) * (ge[i] - we[i]), ne += we[i] * we[i];
        ck_assert_msg(sqrt(et / nt) < 1e-5 && sqrt(ee / ne) < 1e-5,
                      "gradient errors %g (tokens), %g (embedding)", sqrt(et / nt), sqrt(ee / ne));
        free(lv), free(gt), free(ge), free(wt), free(we), free(pr), free(ht), free(he);
    }
    pkt_ctx_done(c);
}
END_TEST

/* --text-mlm-epochs: the text encoder learns the captions' masked pieces (in "a <colour>
 * <shape>" the article is certain and the colour or shape one of four: about half is the
 * best accuracy, 1 / vocabulary chance) and the run goes on from it. */
START_TEST(text_mlm_warm_start_learns) {
    char *d = tmpdir(), out[512];
    make_shapes(d, 4);
    snprintf(out, sizeof out, "%s/run", d);
    ctp_options o = tiny_options(d, out, CTP_METHOD_SEQF);
    o.epochs = 1;
    o.text_mlm_epochs = 60;
    o.batch = 8;
    ctp_result r;
    ck_assert_msg(ctp_run(&o, &r) == PK_OK, "%s", polyak_error());
    size_t len;
    uint8_t *buf = slurp(out, "metrics.json", &len);
    char *text = strndup((char *)buf, len);
    const char *p = strstr(text, "\"text_mlm_accuracy\"");
    ck_assert_msg(p != NULL, "no text_mlm_accuracy in %s", text);
    double acc = strtod(strchr(p, ':') + 1, NULL);
    fprintf(stderr, "test_ctp: MLM masked-piece accuracy %.3f\n", acc);
    ck_assert_msg(acc > 0.3, "masked-piece accuracy %g after 60 epochs", acc);
    free(text), free(buf);
    remove_dir(d);
    free(d);
}
END_TEST

/* The number after "key": [ in a metrics text (the first element of an array), NAN if absent. */
static double first_of(const char *text, const char *key) {
    const char *p = strstr(text, key);
    if (!p) return NAN;
    p = strchr(p + strlen(key), '[');
    return p ? strtod(p + 1, NULL) : NAN;
}

/* --backbone: the image encoder starts from the file's weights and the pictures are normalised
 * with the mean/std its metadata records (what it was trained on), not the data's own. */
START_TEST(backbone_brings_its_normalisation) {
    char *d = tmpdir(), out[512], bb[512];
    make_shapes(d, 3);
    snprintf(bb, sizeof bb, "%s/backbone.safetensors", d);
    vit_config vc = {.name = "test_vit",
                     .img_size = 16,
                     .patch = 4,
                     .in_chans = 3,
                     .dim = 32,
                     .depth = 1,
                     .heads = 2,
                     .mlp_hidden = 128,
                     .ln_eps = 1e-6f};
    pk_ctx *c;
    ck_assert_int_eq(pk_ctx_create(&(pk_ctx_options){.device = "cpu", .threads = 1}, &c), PK_OK);
    pk_rng rng = {g_rng.s | 1};
    vit *v;
    ck_assert_int_eq(vit_create(c, &vc, "", &rng, &v), PK_OK);
    backbone_norm nm = {.present = true};
    for (int k = 0; k < 3; k++)
        nm.mean[k] = pkt_uniform(&g_rng, 0.1f, 0.5f), nm.std[k] = pkt_uniform(&g_rng, 0.2f, 0.8f);
    ck_assert_msg(backbone_save(v, bb, &nm) == PK_OK, "%s", polyak_error());
    vit_destroy(v);
    pk_ctx_destroy(c);
    for (int with = 0; with < 2; with++) {
        snprintf(out, sizeof out, "%s/run%d", d, with);
        ctp_options o = tiny_options(d, out, CTP_METHOD_SEQF);
        o.epochs = 1;
        if (with) o.backbone = bb;
        ctp_result r;
        ck_assert_msg(ctp_run(&o, &r) == PK_OK, "%s", polyak_error());
        size_t len;
        uint8_t *buf = slurp(out, "metrics.json", &len);
        char *text = strndup((char *)buf, len);
        double m0 = first_of(text, "\"image_mean\""), s0 = first_of(text, "\"image_std\"");
        if (with) {
            ck_assert_msg(fabs(m0 - nm.mean[0]) < 1e-6 && fabs(s0 - nm.std[0]) < 1e-6,
                          "image_mean %g / std %g, the backbone's %g / %g", m0, s0, nm.mean[0],
                          nm.std[0]);
            ck_assert(strstr(text, "\"image_norm\": \"backbone\"") != NULL);
        } else {
            /* the shapes lie on white: the data's own mean is far above any drawn here */
            ck_assert_msg(m0 > 0.6 && m0 < 1.0, "data mean %g", m0);
            ck_assert(strstr(text, "\"image_norm\": \"training images\"") != NULL);
        }
        free(text), free(buf);
    }
    remove_dir(d);
    free(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ctp");
    TCase *unit = tcase_create("parts");
    tcase_add_checked_fixture(unit, setup, NULL);
    tcase_set_timeout(unit, 60);
    tcase_add_test(unit, readers_read_all_three_formats);
    tcase_add_test(unit, readers_name_file_and_line);
    tcase_add_test(unit, manifest_pictures_for_image_tasks);
    tcase_add_test(unit, tokenizer_round_trips);
    tcase_add_test(unit, contrastive_loss_matches_pytorch);
    tcase_add_test(unit, topology_loss_matches_pytorch);
    tcase_add_test(unit, queue_is_fifo);
    tcase_add_test(unit, compatible_momentum_matches_direct);
    tcase_add_test(unit, recall_on_hand_made_similarities);
    tcase_add_test(unit, task_lr_is_ctps_cosine);
    tcase_add_test(unit, optimizer_reset_is_a_new_adamw);
    tcase_add_test(unit, mlm_loss_matches_direct);
    suite_add_tcase(s, unit);
    TCase *runs = tcase_create("runs");
    tcase_add_checked_fixture(runs, setup, NULL);
    tcase_set_timeout(runs, 300);
    tcase_add_test(runs, short_run_beats_chance);
    tcase_add_test(runs, resume_across_a_task_boundary);
    tcase_add_test(runs, backbone_brings_its_normalisation);
    tcase_add_test(runs, text_mlm_warm_start_learns);
    suite_add_tcase(s, runs);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
