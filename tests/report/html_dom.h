/* html_dom.h - the report tests' strict HTML checker and small DOM (header-only; the tests of
 * tests/report include it).
 *
 * dom_parse accepts only what `polyak report` promises: "<!DOCTYPE html>" first, then one
 * <html> element holding <head> and <body>; valid UTF-8; tags closed in order; attribute
 * values in double quotes, no attribute twice; '&' only in the entities &amp; &lt; &gt; &quot;
 * &#N; &#xH;; no raw '<' in text or attributes; HTML void elements (meta, img, br, ...)
 * written self-closed and no other HTML element self-closed (inside <svg> any element may be);
 * <script> and <style> hold no '<' or '&' (so the page is also well-formed XML); ids unique.
 * Anything else fails with the byte offset and what was wrong. */
#ifndef POLYAK_HTML_DOM_H
#define POLYAK_HTML_DOM_H
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dom_node {
    char *name; /* element name, or NULL for a text node */
    char *text; /* decoded text of a text node */
    int nattr;
    char **an, **av; /* decoded attribute values */
    struct dom_node *parent;
    struct dom_node **kids;
    int nkids, capkids;
} dom_node;

static void dom_free(dom_node *n) {
    if (!n) return;
    for (int i = 0; i < n->nkids; i++)
        dom_free(n->kids[i]);
    for (int i = 0; i < n->nattr; i++)
        free(n->an[i]), free(n->av[i]);
    free(n->an), free(n->av), free(n->kids), free(n->name), free(n->text);
    free(n);
}

static dom_node *dom_add(dom_node *parent) {
    dom_node *n = calloc(1, sizeof *n);
    n->parent = parent;
    if (parent) {
        if (parent->nkids == parent->capkids) {
            parent->capkids = parent->capkids ? 2 * parent->capkids : 8;
            parent->kids = realloc(parent->kids, sizeof *parent->kids * (size_t)parent->capkids);
        }
        parent->kids[parent->nkids++] = n;
    }
    return n;
}

/* Checks UTF-8 validity of s[0..n). */
static bool dom_utf8_ok(const unsigned char *s, size_t n, size_t *bad) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + (size_t)len > n) return *bad = i, false;
        for (int k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return *bad = i, false;
        i += (size_t)len;
    }
    return true;
}

/* Decodes text with entities into a new string; NULL (and *err) when an '&' is not one of the
 * allowed entities or a '<' appears. */
static char *dom_decode(const char *s, size_t n, const char **err) {
    char *o = malloc(n * 4 + 1), *q = o;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<') {
            *err = "a raw '<' in text or an attribute";
            free(o);
            return NULL;
        }
        if (s[i] != '&') {
            *q++ = s[i];
            continue;
        }
        static const char *const ent[4][2] = {
            {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}};
        bool done = false;
        for (int k = 0; k < 4 && !done; k++) {
            size_t l = strlen(ent[k][0]);
            if (i + l <= n && strncmp(s + i, ent[k][0], l) == 0) {
                *q++ = ent[k][1][0];
                i += l - 1;
                done = true;
            }
        }
        if (!done && i + 2 < n && s[i + 1] == '#') {
            size_t j = i + 2;
            bool hex = s[j] == 'x';
            if (hex) j++;
            unsigned long v = 0;
            size_t d0 = j;
            while (j < n &&
                   (hex ? strchr("0123456789abcdefABCDEF", s[j]) != NULL
                        : (s[j] >= '0' && s[j] <= '9')) &&
                   s[j]) {
                v = v * (hex ? 16 : 10) +
                    (unsigned long)(s[j] <= '9' ? s[j] - '0' : (s[j] | 32) - 'a' + 10);
                j++;
            }
            if (j > d0 && j < n && s[j] == ';' && v > 0 && v < 0x110000) {
                if (v < 0x80)
                    *q++ = (char)v;
                else if (v < 0x800)
                    *q++ = (char)(0xC0 | (v >> 6)), *q++ = (char)(0x80 | (v & 63));
                else if (v < 0x10000)
                    *q++ = (char)(0xE0 | (v >> 12)), *q++ = (char)(0x80 | ((v >> 6) & 63)),
                    *q++ = (char)(0x80 | (v & 63));
                else
                    *q++ = (char)(0xF0 | (v >> 18)), *q++ = (char)(0x80 | ((v >> 12) & 63)),
                    *q++ = (char)(0x80 | ((v >> 6) & 63)), *q++ = (char)(0x80 | (v & 63));
                i = j;
                done = true;
            }
        }
        if (!done) {
            *err = "an '&' that starts no allowed entity";
            free(o);
            return NULL;
        }
    }
    *q = 0;
    return o;
}

static bool dom_is_void(const char *n) {
    static const char *const v[] = {"area",  "base", "br",   "col",   "embed",  "hr",    "img",
                                    "input", "link", "meta", "param", "source", "track", "wbr"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (strcmp(n, v[i]) == 0) return true;
    return false;
}

static bool dom_in_svg(const dom_node *n) {
    for (; n; n = n->parent)
        if (n->name && strcmp(n->name, "svg") == 0) return true;
    return false;
}

static bool dom_name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (!first && ((c >= '0' && c <= '9') || c == '-' || c == ':' || c == '_'));
}

/* Parses and checks a page; returns the document node (children: the <html> element) or NULL
 * with a message in err (size cap). */
static dom_node *dom_parse(const char *s, char *err, size_t cap) {
    size_t n = strlen(s), bad = 0;
    const char *e = NULL;
    if (!dom_utf8_ok((const unsigned char *)s, n, &bad)) {
        snprintf(err, cap, "byte %zu: invalid UTF-8", bad);
        return NULL;
    }
    const char *doctype = "<!DOCTYPE html>";
    if (strncmp(s, doctype, strlen(doctype)) != 0) {
        snprintf(err, cap, "the page does not start with <!DOCTYPE html>");
        return NULL;
    }
    dom_node *doc = dom_add(NULL), *cur = doc;
    size_t i = strlen(doctype);
    char **ids = NULL;
    int nids = 0;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        int w_ = snprintf(err, cap, "byte %zu: ", i);                                              \
        snprintf(err + w_, cap - (size_t)w_, __VA_ARGS__);                                         \
        goto fail;                                                                                 \
    } while (0)
    while (i < n) {
        if (s[i] != '<') {
            size_t j = i;
            while (j < n && s[j] != '<')
                j++;
            char *t = dom_decode(s + i, j - i, &e);
            if (!t) FAIL("%s", e);
            bool blank = strspn(t, " \t\r\n") == strlen(t);
            if (cur == doc && !blank) {
                free(t);
                FAIL("text outside <html>");
            }
            dom_node *tn = dom_add(cur);
            tn->text = t;
            i = j;
            continue;
        }
        if (s[i + 1] == '/') { /* a closing tag */
            size_t j = i + 2;
            while (j < n && dom_name_char(s[j], j == i + 2))
                j++;
            if (j >= n || s[j] != '>') FAIL("a malformed closing tag");
            if (cur == doc || strlen(cur->name) != j - i - 2 ||
                strncmp(cur->name, s + i + 2, j - i - 2) != 0)
                FAIL("</%.*s> closes <%s>", (int)(j - i - 2), s + i + 2,
                     cur == doc ? "(nothing)" : cur->name);
            cur = cur->parent;
            i = j + 1;
            continue;
        }
        if (s[i + 1] == '!') FAIL("a comment or declaration after the doctype");
        size_t j = i + 1;
        if (!dom_name_char(s[j], true)) FAIL("a '<' that starts no tag");
        while (j < n && dom_name_char(s[j], false))
            j++;
        dom_node *el = dom_add(cur);
        el->name = strndup(s + i + 1, j - i - 1);
        if (cur == doc && strcmp(el->name, "html") != 0) FAIL("the root element is <%s>", el->name);
        if (cur == doc && doc->nkids > 1) {
            for (int k = 0; k < doc->nkids - 1; k++)
                if (doc->kids[k]->name) FAIL("a second root element");
        }
        bool self = false;
        for (;;) {
            size_t ws = j;
            while (j < n && strchr(" \t\r\n", s[j]) && s[j])
                j++;
            if (j >= n) FAIL("the page ends inside a tag");
            if (s[j] == '>') {
                j++;
                break;
            }
            if (s[j] == '/' && s[j + 1] == '>') {
                self = true;
                j += 2;
                break;
            }
            if (ws == j) FAIL("attributes of <%s> not separated by a space", el->name);
            size_t a0 = j;
            while (j < n && dom_name_char(s[j], j == a0))
                j++;
            if (j == a0) FAIL("a malformed attribute in <%s>", el->name);
            if (s[j] != '=' || s[j + 1] != '"')
                FAIL("attribute %.*s of <%s> is not name=\"value\"", (int)(j - a0), s + a0,
                     el->name);
            size_t v0 = j + 2, v1 = v0;
            while (v1 < n && s[v1] != '"')
                v1++;
            if (v1 >= n) FAIL("an unterminated attribute value");
            char *an = strndup(s + a0, j - a0);
            for (int k = 0; k < el->nattr; k++)
                if (strcmp(el->an[k], an) == 0) {
                    free(an);
                    FAIL("attribute %s twice in <%s>", el->an[k], el->name);
                }
            char *av = dom_decode(s + v0, v1 - v0, &e);
            if (!av) {
                free(an);
                i = v0;
                FAIL("%s (attribute of <%s>)", e, el->name);
            }
            el->an = realloc(el->an, sizeof(char *) * (size_t)(el->nattr + 1));
            el->av = realloc(el->av, sizeof(char *) * (size_t)(el->nattr + 1));
            el->an[el->nattr] = an, el->av[el->nattr] = av;
            el->nattr++;
            if (strcmp(an, "id") == 0) {
                for (int k = 0; k < nids; k++)
                    if (strcmp(ids[k], av) == 0) FAIL("id \"%s\" twice", av);
                ids = realloc(ids, sizeof(char *) * (size_t)(nids + 1));
                ids[nids++] = av;
            }
            j = v1 + 1;
        }
        bool svg = dom_in_svg(el);
        if (dom_is_void(el->name) && !svg && !self)
            FAIL("void element <%s> not self-closed", el->name);
        if (!dom_is_void(el->name) && !svg && self) FAIL("<%s/> self-closed", el->name);
        i = j;
        if (self) continue;
        if (strcmp(el->name, "script") == 0 || strcmp(el->name, "style") == 0) {
            char close[16];
            snprintf(close, sizeof close, "</%s>", el->name);
            const char *end = strstr(s + i, close);
            if (!end) FAIL("<%s> is not closed", el->name);
            for (const char *q = s + i; q < end; q++)
                if (*q == '<' || *q == '&') {
                    i = (size_t)(q - s);
                    FAIL("a '%c' inside <%s>", *q, el->name);
                }
            dom_node *tn = dom_add(el);
            tn->text = strndup(s + i, (size_t)(end - (s + i)));
            i = (size_t)(end - s) + strlen(close);
            continue;
        }
        cur = el;
    }
    if (cur != doc) FAIL("<%s> is not closed at the end of the page", cur->name);
    {
        dom_node *html = NULL;
        for (int k = 0; k < doc->nkids; k++)
            if (doc->kids[k]->name) html = doc->kids[k];
        if (!html) FAIL("no <html> element");
        int el = 0;
        const char *want[2] = {"head", "body"};
        for (int k = 0; k < html->nkids; k++) {
            if (!html->kids[k]->name) continue;
            if (el >= 2 || strcmp(html->kids[k]->name, want[el]) != 0)
                FAIL("<html> must hold <head> then <body>, found <%s>", html->kids[k]->name);
            el++;
        }
        if (el != 2) FAIL("<html> must hold <head> and <body>");
    }
    free(ids);
#undef FAIL
    return doc;
fail:
    free(ids);
    dom_free(doc);
    return NULL;
}

/* The value of attribute a, or NULL. */
static const char *dom_attr(const dom_node *n, const char *a) {
    for (int i = 0; n && i < n->nattr; i++)
        if (strcmp(n->an[i], a) == 0) return n->av[i];
    return NULL;
}

/* Whether the class attribute holds the word c. */
static bool dom_has_class(const dom_node *n, const char *c) {
    const char *cl = dom_attr(n, "class");
    size_t l = strlen(c);
    for (const char *q = cl; q && *q;) {
        while (*q == ' ')
            q++;
        const char *e = q;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - q) == l && strncmp(q, c, l) == 0) return true;
        q = e;
    }
    return false;
}

/* Collects (in document order) the elements under n named `name` (NULL: any) that have class
 * `cls` (NULL: any), up to max; returns the count. */
static int dom_find(const dom_node *n, const char *name, const char *cls, const dom_node **out,
                    int max) {
    int c = 0;
    for (int i = 0; i < n->nkids; i++) {
        const dom_node *k = n->kids[i];
        if (!k->name) continue;
        if ((!name || strcmp(k->name, name) == 0) && (!cls || dom_has_class(k, cls))) {
            if (c < max) out[c] = k;
            c++;
        }
        c += dom_find(k, name, cls, c < max ? out + c : out, c < max ? max - c : 0);
    }
    return c;
}

/* The text content of n (its text nodes concatenated) into buf. */
static void dom_text(const dom_node *n, char *buf, size_t cap) {
    size_t at = strlen(buf);
    if (n->text) {
        snprintf(buf + at, cap > at ? cap - at : 0, "%s", n->text);
        return;
    }
    for (int i = 0; i < n->nkids; i++)
        dom_text(n->kids[i], buf, cap);
}

#endif
