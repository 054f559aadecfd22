/* ctp_eval.c - evaluation of a `polyak ctp` run (held-out images and captions embedded by the
 * trained model, recall per task and on the tasks seen) and the files it writes beside the
 * harness's (vocab.txt, model.safetensors). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctp_internal.h"
#include "dist.h"

/* ---- evaluation ---- */

typedef struct eval_set {
    int ni, nt;
    int32_t *img;      /* (ni) pair index of each held-out image */
    int32_t *txt;      /* (nt) caption group of each held-out text */
    int32_t *img_text; /* (ni) local text index */
    float *fi, *ft;    /* (ni, E), (nt, E) */
} eval_set;

static void eval_free(eval_set *e) {
    free(e->img), free(e->txt), free(e->img_text), free(e->fi), free(e->ft);
    memset(e, 0, sizeof *e);
}

/* Embeds every held-out image and text of the run's tasks with the trained model. Under
 * mpirun each rank embeds its shard of the images and of the texts and the rows are gathered,
 * so every rank holds them all. */
static pk_status eval_embed(ctp_state *s, eval_set *e) {
    memset(e, 0, sizeof *e);
    int n = s->ps.n, E = s->o.embed, L = s->o.max_len;
    e->img = malloc(sizeof(int32_t) * (size_t)n);
    e->img_text = malloc(sizeof(int32_t) * (size_t)n);
    e->txt = malloc(sizeof(int32_t) * (size_t)s->ps.ntexts);
    int32_t *local = malloc(sizeof(int32_t) * (size_t)s->ps.ntexts);
    if (!e->img || !e->img_text || !e->txt || !local)
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (int g = 0; g < s->ps.ntexts; g++)
        local[g] = -1;
    for (int i = 0; i < n; i++) {
        const ctp_pair *p = &s->ps.p[i];
        if (!p->test || p->task >= s->T) continue;
        if (local[p->text] < 0) local[p->text] = e->nt, e->txt[e->nt++] = p->text;
        e->img_text[e->ni] = local[p->text];
        e->img[e->ni++] = i;
    }
    free(local);
    e->fi = malloc(sizeof(float) * (size_t)e->ni * E);
    e->ft = malloc(sizeof(float) * (size_t)e->nt * E);
    if (!e->fi || !e->ft) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    pk_ctx *c = s->c;
    c->training = false;
    const int chunk = 128;
    int32_t *idx = malloc(sizeof(int32_t) * chunk), *groups = malloc(sizeof(int32_t) * chunk);
    pk_status st = idx && groups ? PK_OK : PK_ERR_NOMEM;
    for (int pass = 0; pass < 2 && st == PK_OK; pass++) {
        int64_t first = 0, mine = 0;
        dist_shard(pass ? e->nt : e->ni, &first, &mine);
        int total = (int)(first + mine);
        for (int a = (int)first; a < total && st == PK_OK; a += chunk) {
            int b = total - a < chunk ? total - a : chunk;
            for (int k = 0; k < b; k++) {
                if (!pass)
                    idx[k] = e->img[a + k];
                else /* any pair of that caption group carries its tokens */
                    for (int i = 0; i < n; i++)
                        if (s->ps.p[i].text == e->txt[a + k]) {
                            idx[k] = i;
                            break;
                        }
            }
            st = pk_step_begin(c);
            bool g = pk_set_grad_enabled(c, false);
            tensor *x, *ids, *mask, *f = NULL;
            if (st == PK_OK) st = ctp_make_batch(s, idx, b, NULL, false, &x, &ids, &mask, groups);
            if (st == PK_OK) {
                f = pass ? ctp_text_embed(c, s->model, ids, mask) : ctp_image_embed(c, s->model, x);
                if (!f) st = PK_ERR_INVALID;
            }
            if (st == PK_OK) st = tensor_download(f, (pass ? e->ft : e->fi) + (size_t)a * E);
            pk_set_grad_enabled(c, g);
        }
        if (st == PK_OK) st = dist_gather_rows_f32(pass ? e->ft : e->fi, pass ? e->nt : e->ni, E);
    }
    (void)L;
    free(idx), free(groups);
    c->training = true;
    return st;
}

/* Recall on the held-out pairs of tasks [lo, hi]. */
static void eval_recall(ctp_state *s, const eval_set *e, int lo, int hi, double i2t[3],
                        double t2i[3]) {
    int E = s->o.embed;
    int32_t *ii = malloc(sizeof(int32_t) * (size_t)(e->ni + 1));
    int32_t *tmap = malloc(sizeof(int32_t) * (size_t)(e->nt + 1));
    int32_t *it = malloc(sizeof(int32_t) * (size_t)(e->ni + 1));
    int ni = 0, nt = 0;
    for (int t = 0; t < e->nt; t++) {
        int task = -1;
        for (int i = 0; i < s->ps.n && task < 0; i++)
            if (s->ps.p[i].text == e->txt[t]) task = s->ps.p[i].task;
        tmap[t] = task >= lo && task <= hi ? nt++ : -1;
    }
    for (int i = 0; i < e->ni; i++)
        if (tmap[e->img_text[i]] >= 0) ii[ni] = i, it[ni++] = tmap[e->img_text[i]];
    float *sim = malloc(sizeof(float) * (size_t)(ni ? ni : 1) * (size_t)(nt ? nt : 1));
    for (int a = 0; a < ni; a++)
        for (int t = 0, k = 0; t < e->nt; t++) {
            if (tmap[t] < 0) continue;
            double d = 0;
            for (int j = 0; j < E; j++)
                d += (double)e->fi[(size_t)ii[a] * E + j] * e->ft[(size_t)t * E + j];
            sim[(size_t)a * nt + k++] = (float)d;
        }
    ctp_recall(sim, it, ni, nt, i2t, t2i);
    free(ii), free(tmap), free(it), free(sim);
}

static double mean6(const double a[3], const double b[3]) {
    return (a[0] + a[1] + a[2] + b[0] + b[1] + b[2]) / 6.0;
}

/* Fills row `stage` of the recall matrix (after training up to task `hi`). */
pk_status ctp_evaluate(ctp_state *s, int stage, int hi, double *rm_seen, double i2t[3],
                       double t2i[3]) {
    eval_set e;
    pk_status st = eval_embed(s, &e);
    if (st == PK_OK) {
        int row = s->o.method == CTP_METHOD_JOINT ? s->T - 1 : stage;
        for (int j = 0; j <= hi; j++) {
            double a[3], b[3];
            eval_recall(s, &e, j, j, a, b);
            s->recall[row * s->T + j] = (float)mean6(a, b);
        }
        eval_recall(s, &e, 0, hi, i2t, t2i);
        *rm_seen = mean6(i2t, t2i);
    }
    eval_free(&e);
    return st;
}

pk_status ctp_evaluate_prefixes(ctp_state *s, double *out) {
    eval_set e;
    pk_status st = eval_embed(s, &e);
    for (int i = 0; i < s->T && st == PK_OK; i++) {
        double a[3], b[3];
        eval_recall(s, &e, 0, i, a, b);
        out[i] = mean6(a, b);
    }
    eval_free(&e);
    return st;
}

pk_status ctp_save_model(ctp_state *s) {
    int np = s->model->nparams;
    st_write_tensor *w = calloc((size_t)np + 1, sizeof *w);
    float **data = calloc((size_t)np, sizeof(float *));
    int64_t(*shapes)[PK_MAX_DIMS] = calloc((size_t)np + 1, sizeof *shapes);
    size_t vlen = 0;
    char *vtext = ctp_vocab_text(&s->vocab, &vlen);
    pk_status st = w && data && shapes && vtext ? PK_OK : pk_error(PK_ERR_NOMEM, "ctp: no memory");
    for (int i = 0; i < np && st == PK_OK; i++) {
        tensor *p = s->model->params[i];
        data[i] = ctp_download_new(p);
        if (!data[i]) st = pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
        memcpy(shapes[i], p->shape, sizeof(int64_t) * (size_t)p->ndim);
        w[i] = (st_write_tensor){
            .name = p->name, .dtype = ST_F32, .ndim = p->ndim, .shape = shapes[i], .data = data[i]};
    }
    if (st == PK_OK) {
        shapes[np][0] = (int64_t)vlen;
        w[np] = (st_write_tensor){
            .name = "vocab", .dtype = ST_U8, .ndim = 1, .shape = shapes[np], .data = vtext};
        char path[1024], meta_v[5][32];
        const char *keys[5] = {"format", "max_len", "embed", "txt_dim", "txt_depth"};
        snprintf(meta_v[0], 32, "polyak-ctp");
        snprintf(meta_v[1], 32, "%d", s->o.max_len);
        snprintf(meta_v[2], 32, "%d", s->o.embed);
        snprintf(meta_v[3], 32, "%d", s->o.txt_dim);
        snprintf(meta_v[4], 32, "%d", s->o.txt_depth);
        const char *vals[5] = {meta_v[0], meta_v[1], meta_v[2], meta_v[3], meta_v[4]};
        run_path(s->run, "model.safetensors", path, sizeof path);
        st = safetensors_write(path, w, np + 1, keys, vals, 5);
    }
    for (int i = 0; i < np; i++)
        free(data ? data[i] : NULL);
    free(w), free(data), free(shapes), free(vtext);
    return st;
}

pk_status ctp_write_vocab(ctp_state *s) {
    char path[1024];
    run_path(s->run, "vocab.txt", path, sizeof path);
    size_t len = 0;
    char *text = ctp_vocab_text(&s->vocab, &len);
    if (!text) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    io_atomic a;
    pk_status st = io_atomic_open(&a, path);
    if (st == PK_OK) {
        if (fwrite(text, 1, len, a.f) != len) {
            io_atomic_abort(&a);
            st = pk_error(PK_ERR_IO, "%s: write failed", path);
        } else
            st = io_atomic_commit(&a);
    }
    free(text);
    return st;
}
