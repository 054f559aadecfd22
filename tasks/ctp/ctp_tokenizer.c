/* ctp_tokenizer.c - WordPiece vocabulary learning, encoding and decoding (see ctp_tokenizer.h).
 * Text is treated as bytes: ASCII letters are lower-cased and ASCII punctuation split off;
 * other bytes (UTF-8) stay inside words and become pieces like any letter. */
#define _GNU_SOURCE
#include "ctp_tokenizer.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const specials[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static pk_status vocab_index(ctp_vocab *v) {
    free(v->slot);
    v->nslots = 16;
    while (v->nslots < 2 * v->n + 16)
        v->nslots *= 2;
    v->slot = malloc(sizeof(int) * (size_t)v->nslots);
    if (!v->slot) return pk_error(PK_ERR_NOMEM, "ctp tokenizer: out of host memory");
    for (int i = 0; i < v->nslots; i++)
        v->slot[i] = -1;
    for (int i = 0; i < v->n; i++) {
        uint64_t h = hash_str(v->piece[i]) & (uint64_t)(v->nslots - 1);
        while (v->slot[h] >= 0) {
            if (strcmp(v->piece[v->slot[h]], v->piece[i]) == 0)
                return pk_error(PK_ERR_FORMAT, "ctp tokenizer: piece '%s' appears twice",
                                v->piece[i]);
            h = (h + 1) & (uint64_t)(v->nslots - 1);
        }
        v->slot[h] = i;
    }
    return PK_OK;
}

int ctp_vocab_id(const ctp_vocab *v, const char *piece) {
    if (!v->slot) return -1;
    uint64_t h = hash_str(piece) & (uint64_t)(v->nslots - 1);
    while (v->slot[h] >= 0) {
        if (strcmp(v->piece[v->slot[h]], piece) == 0) return v->slot[h];
        h = (h + 1) & (uint64_t)(v->nslots - 1);
    }
    return -1;
}

void ctp_vocab_free(ctp_vocab *v) {
    for (int i = 0; i < v->n; i++)
        free(v->piece[i]);
    free(v->piece), free(v->slot);
    memset(v, 0, sizeof *v);
}

/* ---- basic tokenisation ---- */

/* Splits text into words: lower-cased, whitespace separated, each ASCII punctuation character
 * its own word. Returns the count; words are malloc'd into *out. */
static int basic_words(const char *text, char ***out) {
    size_t len = strlen(text);
    char **w = malloc(sizeof(char *) * (len + 1));
    int n = 0;
    if (!w) return -1;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        if (isspace(*p) || *p < 32) {
            p++;
            continue;
        }
        if (*p < 128 && ispunct(*p)) {
            w[n++] = strndup((const char *)p, 1);
            p++;
            continue;
        }
        const unsigned char *s = p;
        while (*p && !isspace(*p) && *p >= 32 && !(*p < 128 && ispunct(*p)))
            p++;
        char *word = strndup((const char *)s, (size_t)(p - s));
        for (char *q = word; *q; q++)
            if ((unsigned char)*q < 128) *q = (char)tolower((unsigned char)*q);
        w[n++] = word;
    }
    *out = w;
    return n;
}

static void free_words(char **w, int n) {
    for (int i = 0; i < n; i++)
        free(w[i]);
    free(w);
}

char *ctp_normalize(const char *text) {
    char **w;
    int n = basic_words(text, &w);
    if (n < 0) return NULL;
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(w[i]) + 1;
    char *s = malloc(len);
    if (s) {
        s[0] = 0;
        for (int i = 0; i < n; i++) {
            if (i) strcat(s, " ");
            strcat(s, w[i]);
        }
    }
    free_words(w, n);
    return s;
}

/* ---- learning ---- */

typedef struct wtok {
    int count;
    int nsym;
    char **sym; /* current symbols of the word */
} wtok;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Merged symbol: a followed by b without b's "##". */
static char *merge_sym(const char *a, const char *b) {
    const char *bb = strncmp(b, "##", 2) == 0 ? b + 2 : b;
    size_t la = strlen(a), lb = strlen(bb);
    char *m = malloc(la + lb + 1);
    if (m) memcpy(m, a, la), memcpy(m + la, bb, lb + 1);
    return m;
}

/* A tiny string-keyed count map (open addressing) for symbol and pair counts. */
typedef struct cmap {
    char **key;
    double *val;
    int cap, n;
} cmap;

static void cmap_free(cmap *m) {
    for (int i = 0; i < m->cap; i++)
        free(m->key ? m->key[i] : NULL);
    free(m->key), free(m->val);
    memset(m, 0, sizeof *m);
}

static double *cmap_get(cmap *m, const char *k, bool add) {
    if (add && 2 * (m->n + 1) > m->cap) {
        cmap old = *m;
        m->cap = m->cap ? 2 * m->cap : 1024;
        m->key = calloc((size_t)m->cap, sizeof(char *));
        m->val = calloc((size_t)m->cap, sizeof(double));
        m->n = 0;
        for (int i = 0; i < old.cap; i++)
            if (old.key[i]) {
                *cmap_get(m, old.key[i], true) = old.val[i];
            }
        cmap_free(&old);
    }
    if (!m->cap) return NULL;
    uint64_t h = hash_str(k) & (uint64_t)(m->cap - 1);
    while (m->key[h]) {
        if (strcmp(m->key[h], k) == 0) return &m->val[h];
        h = (h + 1) & (uint64_t)(m->cap - 1);
    }
    if (!add) return NULL;
    m->key[h] = strdup(k);
    m->val[h] = 0;
    m->n++;
    return &m->val[h];
}

static pk_status vocab_push(ctp_vocab *v, int *cap, const char *piece) {
    if (v->n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        char **np = realloc(v->piece, sizeof(char *) * (size_t)*cap);
        if (!np) return pk_error(PK_ERR_NOMEM, "ctp tokenizer: out of host memory");
        v->piece = np;
    }
    v->piece[v->n++] = strdup(piece);
    return PK_OK;
}

pk_status ctp_vocab_learn(const char *const *texts, int n, int size, ctp_vocab *v) {
    memset(v, 0, sizeof *v);
    int vcap = 0;
    for (int i = 0; i < 5; i++)
        PK_TRY(vocab_push(v, &vcap, specials[i]));
    /* word counts */
    int nall = 0, acap = 0;
    char **all = NULL;
    for (int t = 0; t < n; t++) {
        char **w;
        int k = basic_words(texts[t], &w);
        if (k < 0) return pk_error(PK_ERR_NOMEM, "ctp tokenizer: out of host memory");
        if (nall + k > acap) {
            acap = 2 * (nall + k) + 64;
            all = realloc(all, sizeof(char *) * (size_t)acap);
        }
        memcpy(all + nall, w, sizeof(char *) * (size_t)k);
        nall += k;
        free(w);
    }
    qsort(all, (size_t)nall, sizeof(char *), cmp_str);
    int nw = 0;
    wtok *words = calloc((size_t)(nall ? nall : 1), sizeof(wtok));
    for (int i = 0; i < nall;) {
        int e = i + 1;
        while (e < nall && strcmp(all[e], all[i]) == 0)
            e++;
        wtok *w = &words[nw++];
        w->count = e - i;
        size_t L = strlen(all[i]);
        w->sym = malloc(sizeof(char *) * (L ? L : 1));
        for (size_t c = 0; c < L; c++) {
            char buf[8];
            snprintf(buf, sizeof buf, c ? "##%c" : "%c", all[i][c]);
            w->sym[w->nsym++] = strdup(buf);
        }
        i = e;
    }
    free_words(all, nall);
    /* the alphabet, sorted, so the vocabulary does not depend on the caption order */
    cmap seen = {0};
    for (int i = 0; i < nw; i++)
        for (int k = 0; k < words[i].nsym; k++)
            cmap_get(&seen, words[i].sym[k], true);
    char **alpha = malloc(sizeof(char *) * (size_t)(seen.n ? seen.n : 1));
    int na = 0;
    for (int i = 0; i < seen.cap; i++)
        if (seen.key[i]) alpha[na++] = seen.key[i];
    qsort(alpha, (size_t)na, sizeof(char *), cmp_str);
    pk_status st = PK_OK;
    for (int i = 0; i < na && st == PK_OK; i++)
        st = vocab_push(v, &vcap, alpha[i]);
    free(alpha);
    cmap_free(&seen);
    /* merges */
    while (st == PK_OK && v->n < size) {
        cmap sc = {0}, pc = {0};
        for (int i = 0; i < nw; i++) {
            wtok *w = &words[i];
            for (int k = 0; k < w->nsym; k++) {
                *cmap_get(&sc, w->sym[k], true) += w->count;
                if (k + 1 < w->nsym) {
                    char *pk = NULL;
                    if (asprintf(&pk, "%s %s", w->sym[k], w->sym[k + 1]) < 0) break;
                    *cmap_get(&pc, pk, true) += w->count;
                    free(pk);
                }
            }
        }
        const char *best = NULL;
        double bscore = -1;
        for (int i = 0; i < pc.cap; i++) {
            if (!pc.key[i]) continue;
            char *sp = strchr(pc.key[i], ' ');
            *sp = 0;
            double ca = *cmap_get(&sc, pc.key[i], false), cb = *cmap_get(&sc, sp + 1, false);
            *sp = ' ';
            double score = pc.val[i] / (ca * cb);
            /* ties broken by the pair text, so the result is deterministic */
            if (score > bscore || (score == bscore && strcmp(pc.key[i], best) < 0))
                bscore = score, best = pc.key[i];
        }
        if (!best) {
            cmap_free(&sc), cmap_free(&pc);
            break;
        }
        char *pair = strdup(best);
        char *sp = strchr(pair, ' ');
        *sp = 0;
        char *m = merge_sym(pair, sp + 1);
        for (int i = 0; i < nw; i++) {
            wtok *w = &words[i];
            int o = 0;
            for (int k = 0; k < w->nsym; k++) {
                if (k + 1 < w->nsym && strcmp(w->sym[k], pair) == 0 &&
                    strcmp(w->sym[k + 1], sp + 1) == 0) {
                    free(w->sym[k]), free(w->sym[k + 1]);
                    w->sym[o++] = strdup(m);
                    k++;
                } else
                    w->sym[o++] = w->sym[k];
            }
            w->nsym = o;
        }
        if (ctp_vocab_id(v, m) < 0) { /* index is rebuilt below; a linear check is fine here */
            bool dup = false;
            for (int i = 0; i < v->n && !dup; i++)
                dup = strcmp(v->piece[i], m) == 0;
            if (!dup) st = vocab_push(v, &vcap, m);
        }
        free(m), free(pair);
        cmap_free(&sc), cmap_free(&pc);
    }
    for (int i = 0; i < nw; i++) {
        for (int k = 0; k < words[i].nsym; k++)
            free(words[i].sym[k]);
        free(words[i].sym);
    }
    free(words);
    if (st == PK_OK) st = vocab_index(v);
    if (st != PK_OK) ctp_vocab_free(v);
    return st;
}

pk_status ctp_vocab_parse(const char *name, const char *text, ctp_vocab *v) {
    memset(v, 0, sizeof *v);
    int cap = 0;
    const char *p = text;
    pk_status s = PK_OK;
    while (*p && s == PK_OK) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *piece = strndup(p, len);
        if (!*piece)
            s = pk_error(PK_ERR_FORMAT, "%s: line %d: an empty piece", name, v->n + 1);
        else if (v->n < 5 && strcmp(piece, specials[v->n]) != 0)
            s = pk_error(PK_ERR_FORMAT, "%s: line %d: '%s'; expected the special token %s", name,
                         v->n + 1, piece, specials[v->n]);
        else
            s = vocab_push(v, &cap, piece);
        free(piece);
        p += len;
        if (*p == '\n') p++;
    }
    if (s == PK_OK && v->n < 5)
        s = pk_error(PK_ERR_FORMAT, "%s: %d pieces; the 5 special tokens come first", name, v->n);
    if (s == PK_OK) s = vocab_index(v);
    if (s != PK_OK) ctp_vocab_free(v);
    return s;
}

char *ctp_vocab_text(const ctp_vocab *v, size_t *len) {
    size_t L = 0;
    for (int i = 0; i < v->n; i++)
        L += strlen(v->piece[i]) + 1;
    char *s = malloc(L + 1), *q = s;
    if (!s) return NULL;
    for (int i = 0; i < v->n; i++) {
        size_t l = strlen(v->piece[i]);
        memcpy(q, v->piece[i], l);
        q += l;
        *q++ = '\n';
    }
    *q = 0;
    *len = L;
    return s;
}

/* ---- encoding ---- */

int ctp_encode(const ctp_vocab *v, const char *text, int max_len, int32_t *ids) {
    char **w;
    int nw = basic_words(text, &w);
    int n = 0;
    if (max_len < 2) return 0;
    ids[n++] = CTP_CLS;
    char buf[512];
    for (int i = 0; i < nw && n < max_len - 1; i++) {
        const char *word = w[i];
        size_t L = strlen(word), start = 0;
        int32_t pieces[128];
        int np = 0;
        bool bad = L >= sizeof buf - 3;
        while (!bad && start < L) {
            size_t end = L;
            int found = -1;
            while (end > start) {
                snprintf(buf, sizeof buf, "%s%.*s", start ? "##" : "", (int)(end - start),
                         word + start);
                found = ctp_vocab_id(v, buf);
                if (found >= 0) break;
                end--;
            }
            if (found < 0 || np == 128)
                bad = true;
            else
                pieces[np++] = found, start = end;
        }
        if (bad) pieces[0] = CTP_UNK, np = 1; /* BERT: an unknown word is one [UNK] */
        for (int k = 0; k < np && n < max_len - 1; k++)
            ids[n++] = pieces[k];
    }
    free_words(w, nw);
    ids[n++] = CTP_SEP;
    int real = n;
    while (n < max_len)
        ids[n++] = CTP_PAD;
    return real;
}

char *ctp_decode(const ctp_vocab *v, const int32_t *ids, int n) {
    size_t L = 1;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < v->n) L += strlen(v->piece[ids[i]]) + 1;
    char *s = malloc(L), *q = s;
    if (!s) return NULL;
    bool first = true;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= v->n || (id != CTP_UNK && id < 5)) continue;
        const char *p = v->piece[id];
        if (strncmp(p, "##", 2) == 0 && !first)
            p += 2;
        else if (!first)
            *q++ = ' ';
        size_t l = strlen(p);
        memcpy(q, p, l);
        q += l;
        first = false;
    }
    *q = 0;
    return s;
}
