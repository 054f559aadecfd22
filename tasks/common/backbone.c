/* backbone.c - timm-layout safetensors in and out of a vit: the strict name/shape check with
 * every problem named, pos_embed resampling for another grid, F16/BF16 conversion, the
 * metadata Polyak writes and the configuration read back from it (or inferred from shapes). */
#include "backbone.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone_features.h"
#include "safetensors.h"

/* ---- problem lists: every offending name, grouped by kind ---- */

typedef struct problems {
    char *text[3]; /* missing, unexpected, misshaped: "a, b, c" */
    size_t len[3], cap[3];
    int count[3];
    bool nomem;
} problems;

enum { PR_MISSING, PR_UNEXPECTED, PR_MISSHAPED };

static void problem_add(problems *p, int kind, const char *fmt, const char *a, const char *b,
                        const char *d) {
    char line[512];
    int n = snprintf(line, sizeof line, fmt, a, b, d);
    size_t need = p->len[kind] + (size_t)n + 3;
    if (need > p->cap[kind]) {
        size_t cap = need * 2;
        char *t = realloc(p->text[kind], cap);
        if (!t) {
            p->nomem = true;
            return;
        }
        p->text[kind] = t;
        p->cap[kind] = cap;
    }
    p->len[kind] +=
        (size_t)sprintf(p->text[kind] + p->len[kind], "%s%s", p->count[kind] ? ", " : "", line);
    p->count[kind]++;
}

/* Records the error: "path: N tensors do not fit NAME: missing (k): ...; unexpected (k): ...;
 * misshaped (k): ..." cut (said so) only past the message's room. */
static pk_status problems_report(problems *p, const char *path, const char *arch, int nparams) {
    static const char *kinds[3] = {"missing", "unexpected", "misshaped"};
    char msg[1900];
    int total = p->count[0] + p->count[1] + p->count[2];
    size_t o;
    bool none = p->count[0] == nparams; /* not one ViT tensor: say so, list what the file holds */
    if (none)
        o = (size_t)snprintf(msg, sizeof msg,
                             "%s: holds none of %s's %d tensors (cls_token, pos_embed, "
                             "blocks.N...): not a timm-layout ViT backbone; it holds (%d): %s",
                             path, arch, nparams, p->count[1],
                             p->count[1] ? p->text[1] : "nothing");
    else
        o = (size_t)snprintf(msg, sizeof msg,
                             "%s: %d tensor%s not fit %s (skip name prefixes with --partial)", path,
                             total, total == 1 ? " does" : "s do", arch);
    for (int k = 0; !none && k < 3 && o < sizeof msg; k++)
        if (p->count[k])
            o += (size_t)snprintf(msg + o, sizeof msg - o, "; %s (%d): %s", kinds[k], p->count[k],
                                  p->text[k]);
    if (o >= sizeof msg - 1) { /* cut at the last full name and say how many names were cut */
        char *cut = msg + sizeof msg - 40;
        while (cut > msg && *cut != ',' && *cut != ';')
            cut--;
        snprintf(cut, 40, ", ... (the rest cut for room)");
    }
    for (int k = 0; k < 3; k++)
        free(p->text[k]);
    if (p->nomem) return pk_error(PK_ERR_NOMEM, "backbone: out of host memory");
    return pk_error(PK_ERR_FORMAT, "%s", msg);
}

static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, ndim == 1 ? ",)" : ")");
    return buf;
}

static bool skipped(const char *name, const char *const *skip, int nskip) {
    for (int i = 0; i < nskip; i++)
        if (skip[i] && *skip[i] && strncmp(name, skip[i], strlen(skip[i])) == 0) return true;
    return false;
}

/* m's name prefix length ("student." -> 8), from cls_token's full name. */
static size_t prefix_len(const vit *m) {
    size_t n = strlen(m->cls_token->name), k = strlen("cls_token");
    return n >= k ? n - k : 0;
}

static bool same_shape(const st_tensor *t, const tensor *p) {
    if (t->ndim != p->ndim) return false;
    for (int i = 0; i < p->ndim; i++)
        if (t->shape[i] != p->shape[i]) return false;
    return true;
}

/* Side of the square grid of a pos_embed with one class token, or 0 when not square. */
static int64_t pos_grid(int64_t tokens) {
    if (tokens < 2) return 0;
    int64_t g = (int64_t)llround(sqrt((double)(tokens - 1)));
    return g * g == tokens - 1 ? g : 0;
}

/* A checkpoint pos_embed (1, 1 + G0*G0, D) that can be resampled to p (1, 1 + G*G, D). */
static bool pos_resamplable(const st_tensor *t, const tensor *p) {
    return t->ndim == 3 && p->ndim == 3 && t->shape[0] == 1 && t->shape[2] == p->shape[2] &&
           pos_grid(t->shape[1]) > 0 && pos_grid(p->shape[1]) > 0;
}

/* src (1 + g0*g0, D) -> dst (1 + g*g, D) as timm's resample_abs_pos_embed (timm >= 0.9):
 * class row kept, each of the D grid planes resized by F.interpolate(bicubic, antialias=True). */
static pk_status pos_resample(const float *src, int64_t g0, int64_t g, int64_t d, float *dst) {
    float *plane = malloc(sizeof(float) * (size_t)(g0 * g0));
    float *tmp = malloc(sizeof(float) * (size_t)(g0 * g));
    float *out = malloc(sizeof(float) * (size_t)(g * g));
    if (!plane || !tmp || !out) {
        free(plane);
        free(tmp);
        free(out);
        return pk_error(PK_ERR_NOMEM, "backbone: out of host memory");
    }
    memcpy(dst, src, sizeof(float) * (size_t)d);
    for (int64_t j = 0; j < d; j++) {
        for (int64_t i = 0; i < g0 * g0; i++)
            plane[i] = src[(1 + i) * d + j];
        features_resize(plane, (int)g0, (int)g0, (int)g, (int)g, tmp, out);
        for (int64_t o = 0; o < g * g; o++)
            dst[(1 + o) * d + j] = out[o];
    }
    free(plane);
    free(tmp);
    free(out);
    return PK_OK;
}

static bool float_dtype(st_dtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16; }

pk_status backbone_load(pk_ctx *c, vit *m, const char *path, const char *const *skip, int nskip) {
    (void)c;
    st_file f;
    PK_TRY(safetensors_open(path, &f));
    int np = 0;
    tensor *const *params = vit_params(m, &np);
    size_t pl = prefix_len(m);
    const st_tensor **src = calloc((size_t)np, sizeof *src); /* file tensor per parameter */
    bool *used = calloc((size_t)(f.n ? f.n : 1), sizeof *used);
    problems pr = {.nomem = false};
    if (!src || !used) {
        free(src);
        free(used);
        safetensors_close(&f);
        return pk_error(PK_ERR_NOMEM, "backbone: out of host memory");
    }
    char se[64], sf[64];
    for (int i = 0; i < np; i++) {
        const char *name = params[i]->name + pl;
        const st_tensor *t = safetensors_find(&f, name);
        if (t) used[t - f.tensors] = true;
        bool skip_it = skipped(name, skip, nskip);
        if (!t) {
            if (!skip_it) problem_add(&pr, PR_MISSING, "%s%s%s", name, "", "");
            continue;
        }
        if (!float_dtype(t->dtype)) {
            if (!skip_it)
                problem_add(&pr, PR_MISSHAPED, "%s has dtype %s%s (expected F32, F16 or BF16)",
                            name, st_dtype_name(t->dtype), "");
            continue;
        }
        bool resample = params[i] == m->pos_embed && pos_resamplable(t, params[i]);
        if (!same_shape(t, params[i]) && !resample) {
            if (!skip_it)
                problem_add(&pr, PR_MISSHAPED, "%s expected %s, found %s", name,
                            shape_str(params[i]->shape, params[i]->ndim, se, sizeof se),
                            shape_str(t->shape, t->ndim, sf, sizeof sf));
            continue;
        }
        src[i] = t;
    }
    for (int j = 0; j < f.n; j++)
        if (!used[j] && !skipped(f.tensors[j].name, skip, nskip))
            problem_add(&pr, PR_UNEXPECTED, "%s %s%s", f.tensors[j].name,
                        shape_str(f.tensors[j].shape, f.tensors[j].ndim, sf, sizeof sf), "");
    pk_status s = PK_OK;
    if (pr.count[0] + pr.count[1] + pr.count[2] || pr.nomem)
        s = problems_report(&pr, path, m->cfg.name, np);
    for (int i = 0; s == PK_OK && i < np; i++) {
        if (!src[i]) continue;
        int64_t n = tensor_numel(params[i]);
        size_t fn = st_tensor_numel(src[i]);
        float *h = malloc(sizeof(float) * (size_t)n);
        float *raw = malloc(sizeof(float) * (fn ? fn : 1));
        if (!h || !raw) s = pk_error(PK_ERR_NOMEM, "backbone: out of host memory");
        if (s == PK_OK) s = st_tensor_to_f32(src[i], raw);
        if (s == PK_OK) {
            if ((int64_t)fn == n && same_shape(src[i], params[i]))
                memcpy(h, raw, sizeof(float) * (size_t)n);
            else /* pos_embed for another grid */
                s = pos_resample(raw, pos_grid(src[i]->shape[1]), pos_grid(params[i]->shape[1]),
                                 params[i]->shape[2], h);
        }
        if (s == PK_OK) s = tensor_upload(params[i], h);
        free(h);
        free(raw);
    }
    free(src);
    free(used);
    safetensors_close(&f);
    return s;
}

/* ---- writing ---- */

/* The shortest text that reads back as the same float ("1e-06", not "9.99999997e-07"). */
static void float_text(char *buf, size_t n, float x) {
    snprintf(buf, n, "%g", (double)x);
    if (strtof(buf, NULL) != x) snprintf(buf, n, "%.9g", (double)x);
}

pk_status backbone_save(const vit *m, const char *path, const backbone_norm *norm) {
    int np = 0;
    tensor *const *params = vit_params(m, &np);
    size_t pl = prefix_len(m);
    st_write_tensor *wt = calloc((size_t)np, sizeof *wt);
    float **data = calloc((size_t)np, sizeof *data);
    pk_status s = (wt && data) ? PK_OK : pk_error(PK_ERR_NOMEM, "backbone: out of host memory");
    for (int i = 0; s == PK_OK && i < np; i++) {
        data[i] = malloc(sizeof(float) * (size_t)tensor_numel(params[i]));
        if (!data[i]) {
            s = pk_error(PK_ERR_NOMEM, "backbone: out of host memory");
            break;
        }
        s = tensor_download(params[i], data[i]);
        wt[i] = (st_write_tensor){.name = params[i]->name + pl,
                                  .dtype = ST_F32,
                                  .ndim = params[i]->ndim,
                                  .shape = params[i]->shape,
                                  .data = data[i]};
    }
    if (s == PK_OK) {
        const vit_config *g = &m->cfg;
        char v[10][32], mean[96] = "", std[96] = "", crop[32] = "";
        int ints[] = {g->img_size, g->patch, g->in_chans,   g->dim,
                      g->depth,    g->heads, g->mlp_hidden, g->num_classes};
        for (int i = 0; i < 8; i++)
            snprintf(v[i], sizeof v[i], "%d", ints[i]);
        float_text(v[8], sizeof v[8], g->ln_eps);
        const char *keys[14] = {"format",     "arch",        "img_size", "patch",
                                "in_chans",   "embed_dim",   "depth",    "num_heads",
                                "mlp_hidden", "num_classes", "ln_eps"};
        const char *vals[14] = {"pt", g->name, v[0], v[1], v[2], v[3],
                                v[4], v[5],    v[6], v[7], v[8]};
        int nm = 11;
        if (norm && norm->present) {
            size_t om = 0, os = 0;
            for (int i = 0; i < 3; i++) {
                char a[32], b[32];
                float_text(a, sizeof a, norm->mean[i]);
                float_text(b, sizeof b, norm->std[i]);
                om += (size_t)snprintf(mean + om, sizeof mean - om, i ? ",%s" : "%s", a);
                os += (size_t)snprintf(std + os, sizeof std - os, i ? ",%s" : "%s", b);
            }
            keys[nm] = "mean";
            vals[nm++] = mean;
            keys[nm] = "std";
            vals[nm++] = std;
            if (norm->crop_pct > 0.0f) {
                float_text(crop, sizeof crop, norm->crop_pct);
                keys[nm] = "crop_pct";
                vals[nm++] = crop;
            }
        }
        s = safetensors_write(path, wt, np, keys, vals, nm);
    }
    for (int i = 0; data && i < np; i++)
        free(data[i]);
    free(data);
    free(wt);
    return s;
}

/* ---- configuration ---- */

/* Parses a positive integer metadata field into *v when present. */
static pk_status meta_int(const st_file *f, const char *path, const char *key, int *v) {
    const char *s = safetensors_meta(f, key);
    if (!s) return PK_OK;
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s || *end || x < 0 || x > 1 << 24)
        return pk_error(PK_ERR_FORMAT, "%s: metadata %s = '%s' (expected a non-negative integer)",
                        path, key, s);
    *v = (int)x;
    return PK_OK;
}

/* Parses "a,b,c" (1 or 3 numbers) into out[3]. */
static pk_status meta_floats(const char *path, const char *key, const char *s, float *out) {
    int n = 0;
    const char *p = s;
    while (*p && n < 3) {
        char *end;
        out[n++] = strtof(p, &end);
        if (end == p) break;
        p = end;
        if (*p == ',')
            p++;
        else
            break;
    }
    if (*p || n < 1)
        return pk_error(PK_ERR_FORMAT, "%s: metadata %s = '%s' (expected 1 or 3 numbers m1,m2,m3)",
                        path, key, s);
    for (int i = n; i < 3; i++)
        out[i] = out[n - 1];
    return PK_OK;
}

/* Shapes that no name implies: in_chans and patch from patch_embed, img_size from pos_embed,
 * num_classes from head. */
static pk_status shape_overrides(const st_file *f, const char *path, vit_config *cfg) {
    const st_tensor *pe = safetensors_find(f, "patch_embed.proj.weight");
    const st_tensor *pos = safetensors_find(f, "pos_embed");
    const st_tensor *head = safetensors_find(f, "head.weight");
    if (pe && pe->ndim == 4) cfg->in_chans = (int)pe->shape[1];
    if (pos && pos->ndim == 3 && pos_grid(pos->shape[1]) > 0)
        cfg->img_size = (int)pos_grid(pos->shape[1]) * cfg->patch;
    cfg->num_classes = head && head->ndim == 2 ? (int)head->shape[0] : 0;
    (void)path;
    return PK_OK;
}

pk_status backbone_config(const char *path, const char *arch, vit_config *cfg,
                          backbone_norm *norm) {
    st_file f;
    PK_TRY(safetensors_open(path, &f));
    pk_status s = PK_OK;
    const char *meta_arch = safetensors_meta(&f, "arch");
    if (norm) memset(norm, 0, sizeof *norm);
    if (arch && *arch) {
        s = vit_config_by_name(arch, cfg);
        if (s == PK_OK) s = shape_overrides(&f, path, cfg);
    } else if (meta_arch) {
        memset(cfg, 0, sizeof *cfg);
        cfg->ln_eps = 1e-6f;
        cfg->in_chans = 3;
        if (vit_config_by_name(meta_arch, cfg) != PK_OK) pk_error_clear();
        snprintf(cfg->name, sizeof cfg->name, "%s", meta_arch);
        const char *keys[] = {"img_size", "patch",     "in_chans",   "embed_dim",
                              "depth",    "num_heads", "mlp_hidden", "num_classes"};
        int *dst[] = {&cfg->img_size, &cfg->patch, &cfg->in_chans,   &cfg->dim,
                      &cfg->depth,    &cfg->heads, &cfg->mlp_hidden, &cfg->num_classes};
        for (int i = 0; s == PK_OK && i < 8; i++)
            s = meta_int(&f, path, keys[i], dst[i]);
        const char *eps = safetensors_meta(&f, "ln_eps");
        if (s == PK_OK && eps) cfg->ln_eps = strtof(eps, NULL);
        if (s == PK_OK && (cfg->dim <= 0 || cfg->heads <= 0 || cfg->patch <= 0))
            s = pk_error(PK_ERR_FORMAT,
                         "%s: metadata arch '%s' is not a known configuration (%s) and the "
                         "metadata lacks embed_dim/num_heads/patch; pass --arch",
                         path, meta_arch, vit_config_names());
    } else {
        s = pk_error(PK_ERR_INVALID,
                     "%s: no __metadata__ 'arch' (not written by Polyak); pass --arch NAME (%s)",
                     path, vit_config_names());
    }
    if (s == PK_OK && norm) {
        const char *mn = safetensors_meta(&f, "mean"), *sd = safetensors_meta(&f, "std");
        if (mn && sd) {
            s = meta_floats(path, "mean", mn, norm->mean);
            if (s == PK_OK) s = meta_floats(path, "std", sd, norm->std);
            norm->present = s == PK_OK;
        }
        const char *cp = safetensors_meta(&f, "crop_pct");
        if (s == PK_OK && cp) {
            char *end;
            norm->crop_pct = strtof(cp, &end);
            if (end == cp || *end || !(norm->crop_pct > 0.0f && norm->crop_pct <= 1.0f))
                s = pk_error(PK_ERR_FORMAT,
                             "%s: metadata crop_pct = '%s' (expected a number in "
                             "(0, 1])",
                             path, cp);
        }
    }
    safetensors_close(&f);
    return s;
}

pk_status backbone_infer_config(const char *path, vit_config *cfg) {
    st_file f;
    PK_TRY(safetensors_open(path, &f));
    memset(cfg, 0, sizeof *cfg);
    const st_tensor *pe = safetensors_find(&f, "patch_embed.proj.weight");
    const st_tensor *fc1 = safetensors_find(&f, "blocks.0.mlp.fc1.weight");
    pk_status s = PK_OK;
    if (!pe || pe->ndim != 4 || pe->shape[2] != pe->shape[3] || !fc1 || fc1->ndim != 2)
        s = pk_error(PK_ERR_FORMAT,
                     "%s: cannot infer a ViT: needs patch_embed.proj.weight (D, C, P, P) and "
                     "blocks.0.mlp.fc1.weight (hidden, D)",
                     path);
    if (s == PK_OK) {
        cfg->patch = (int)pe->shape[2];
        cfg->dim = (int)pe->shape[0];
        cfg->mlp_hidden = (int)fc1->shape[0];
        cfg->heads = cfg->dim % 64 == 0 ? cfg->dim / 64 : 1;
        cfg->ln_eps = 1e-6f;
        char key[64];
        for (;;) {
            snprintf(key, sizeof key, "blocks.%d.norm1.weight", cfg->depth);
            if (!safetensors_find(&f, key)) break;
            cfg->depth++;
        }
        s = shape_overrides(&f, path, cfg);
        if (s == PK_OK && cfg->img_size == 0)
            s = pk_error(PK_ERR_FORMAT, "%s: pos_embed missing or not (1, 1 + G*G, D)", path);
        snprintf(cfg->name, sizeof cfg->name, "vit_inferred_patch%d_%d", cfg->patch, cfg->img_size);
    }
    safetensors_close(&f);
    return s;
}
