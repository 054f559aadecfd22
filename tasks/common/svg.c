/* svg.c - the plot writer (svg.h): text buffer and escaping, axis ticks, line plots, stacked
 * horizontal bars, heatmaps and the image gallery, all as XHTML-clean text. */
#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text ---- */

static bool grow(svg_buf *b, size_t more) {
    if (b->oom) return false;
    if (b->len + more + 1 <= b->cap) return true;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + more + 1)
        c *= 2;
    char *s = realloc(b->s, c);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s, b->cap = c;
    return true;
}

void svg_put(svg_buf *b, const char *s, size_t n) {
    if (!grow(b, n)) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void svg_printf(svg_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        svg_put(b, small, (size_t)n);
        return;
    }
    if (!grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void svg_text(svg_buf *b, const char *s) {
    if (!s) return;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        switch (*q) {
        case '&': svg_put(b, "&amp;", 5); break;
        case '<': svg_put(b, "&lt;", 4); break;
        case '>': svg_put(b, "&gt;", 4); break;
        case '"': svg_put(b, "&quot;", 6); break;
        case '\'': svg_put(b, "&#39;", 5); break;
        default:
            if ((*q < 0x20 && *q != '\t' && *q != '\n') || *q == 0x7f)
                svg_put(b, "\xef\xbf\xbd", 3);
            else
                svg_put(b, (const char *)q, 1);
        }
    }
}

void svg_free(svg_buf *b) {
    free(b->s);
    *b = (svg_buf){0};
}

void svg_fmt(double v, int digits, bool short_big, char *buf, size_t n) {
    if (!isfinite(v)) {
        snprintf(buf, n, "n/a");
        return;
    }
    const char *suffix = "";
    if (short_big && fabs(v) >= 1e4) {
        if (fabs(v) >= 1e9)
            v /= 1e9, suffix = "G";
        else if (fabs(v) >= 1e6)
            v /= 1e6, suffix = "M";
        else
            v /= 1e3, suffix = "k";
    }
    char t[64];
    if (fabs(v) >= 1e-4 && fabs(v) < 1e15) {
        /* fixed notation with `digits` significant digits, trailing zeros cut */
        int mag = v == 0 ? 0 : (int)floor(log10(fabs(v)));
        int dec = digits - 1 - mag;
        if (dec < 0) dec = 0;
        snprintf(t, sizeof t, "%.*f", dec, v);
        if (strchr(t, '.')) {
            char *e = t + strlen(t) - 1;
            while (*e == '0')
                *e-- = 0;
            if (*e == '.') *e = 0;
        }
        if (strcmp(t, "-0") == 0) snprintf(t, sizeof t, "0");
    } else
        snprintf(t, sizeof t, "%.*g", digits, v);
    snprintf(buf, n, "%s%s", t, suffix);
}

void svg_base64(svg_buf *b, const unsigned char *d, size_t n) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!grow(b, (n + 2) / 3 * 4)) return;
    char *o = b->s + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        *o++ = al[v >> 18], *o++ = al[(v >> 12) & 63], *o++ = al[(v >> 6) & 63], *o++ = al[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0);
        *o++ = al[v >> 18], *o++ = al[(v >> 12) & 63];
        *o++ = i + 1 < n ? al[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->s);
    b->s[b->len] = 0;
}

/* ---- axes ---- */

/* A 1-2-5 step giving about `want` intervals over `range`. */
static double nice_step(double range, int want) {
    double raw = range / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* Widens [lo, hi] to whole steps; returns the step. A flat range is opened around its value. */
static double nice_range(double *lo, double *hi, int want) {
    if (!(*hi > *lo)) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d, *hi += d;
    }
    double step = nice_step(*hi - *lo, want);
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
    return step;
}

/* Significant digits a tick label needs to tell ticks `step` apart at magnitude `m`. */
static int tick_digits(double step, double m) {
    if (!(step > 0) || !(m > 0)) return 3;
    int d = (int)floor(log10(m)) - (int)floor(log10(step)) + 1;
    return d < 1 ? 1 : d > 10 ? 10 : d;
}

/* The axis label "name [unit]". */
static void axis_label(svg_buf *b, const char *name, const char *unit) {
    svg_text(b, name ? name : "");
    if (unit && *unit) {
        svg_put(b, " [", 2);
        svg_text(b, unit);
        svg_put(b, "]", 1);
    }
}

/* Approximate width of a label in the plots' 12-unit font. */
static double text_width(const char *s) { return 6.6 * (double)(s ? strlen(s) : 0); }

/* Writes a label cut to fit `width` (its start and an ellipsis), with the whole label as a
 * tooltip when cut. */
static void clipped(svg_buf *b, const char *s, double width) {
    size_t n = strlen(s), fit = (size_t)(width / 8.0);
    if (n <= fit || fit < 4) {
        svg_text(b, s);
        return;
    }
    svg_printf(b, "<title>");
    svg_text(b, s);
    svg_printf(b, "</title>");
    char cut[256];
    size_t k = fit - 1 < sizeof cut - 1 ? fit - 1 : sizeof cut - 1;
    /* do not split a UTF-8 sequence */
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    memcpy(cut, s, k);
    cut[k] = 0;
    svg_text(b, cut);
    svg_printf(b, "\xe2\x80\xa6");
}

/* Opens an <svg> of kind with n series, its size and its title. */
static void open_svg(svg_buf *b, const char *kind, int nseries, double w, double h,
                     const char *title) {
    svg_printf(b,
               "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot %s\" data-series=\"%d\" "
               "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"",
               kind, nseries, w, h);
    svg_text(b, title ? title : kind);
    svg_printf(b, "\"><title>");
    svg_text(b, title ? title : kind);
    svg_printf(b, "</title>");
    if (title && *title) {
        svg_printf(b, "<text class=\"title\" x=\"%.1f\" y=\"20\">", 12.0);
        svg_text(b, title);
        svg_printf(b, "</text>");
    }
}

/* Legend rows below y0 across width w: returns the height used. Writes when b != NULL. */
static double legend(svg_buf *b, const char *const *names, int n, double x0, double y0, double w) {
    double x = x0, y = y0 + 14;
    for (int i = 0; i < n; i++) {
        double wi = 22 + text_width(names[i]) + 14;
        if (x > x0 && x + wi > x0 + w) x = x0, y += 18;
        if (b) {
            svg_printf(b,
                       "<g class=\"legend s%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"14\" "
                       "height=\"10\" rx=\"2\"/><text x=\"%.1f\" y=\"%.1f\">",
                       i % 12, x, y - 9, x + 18, y);
            svg_text(b, names[i]);
            svg_printf(b, "</text></g>");
        }
        x += wi;
    }
    return n ? y - y0 + 8 : 0;
}

/* ---- line plots ---- */

void svg_line(svg_buf *b, const svg_plot *p, const svg_series *s, int ns) {
    const double W = 480, ml = 70, mr = 16, mt = 34, ph = 190;
    int maxp = p->max_points > 1 ? p->max_points : 1200;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    bool any = isfinite(xlo);
    if (!any) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    if (p->y_from_zero) ylo = fmin(ylo, 0), yhi = fmax(yhi, 0);
    if (p->x_from_zero) xlo = fmin(xlo, 0), xhi = fmax(xhi, 0);
    /* x values that are all whole numbers (steps, epochs, tasks) get whole-number ticks */
    bool whole = any;
    for (int k = 0; whole && k < ns; k++)
        for (int i = 0; whole && i < s[k].n; i++)
            whole = !isfinite(s[k].x[i]) || s[k].x[i] == floor(s[k].x[i]);
    double xstep = nice_range(&xlo, &xhi, 5), ystep = nice_range(&ylo, &yhi, 4);
    if (whole && xstep < 1) {
        xstep = 1;
        xlo = floor(xlo), xhi = ceil(xhi);
    }
    const char **names = calloc((size_t)(ns ? ns : 1), sizeof *names);
    if (!names) {
        b->oom = true;
        return;
    }
    for (int k = 0; k < ns; k++)
        names[k] = s[k].name ? s[k].name : "";
    double pw = W - ml - mr, axis_b = mt + ph;
    double leg = ns > 1 ? legend(NULL, names, ns, ml, axis_b + 42, pw) : 0;
    double H = axis_b + 44 + leg;
    open_svg(b, "line", ns, W, H, p->title);
    svg_printf(b,
               "<g class=\"frame\" data-x0=\"%.1f\" data-x1=\"%.1f\" data-y0=\"%.1f\" "
               "data-y1=\"%.1f\" data-xname=\"",
               ml, ml + pw, mt, axis_b);
    svg_text(b, p->xlabel ? p->xlabel : "x");
    if (p->xunit && *p->xunit) {
        svg_put(b, " [", 2);
        svg_text(b, p->xunit);
        svg_put(b, "]", 1);
    }
    svg_printf(b, "\">");
#define PX(v) (ml + ((v)-xlo) / (xhi - xlo) * pw)
#define PY(v) (axis_b - ((v)-ylo) / (yhi - ylo) * ph)
    /* grid, ticks and tick labels */
    int xd = tick_digits(xstep, fmax(fabs(xlo), fabs(xhi))),
        yd = tick_digits(ystep, fmax(fabs(ylo), fabs(yhi)));
    for (int i = 0;; i++) {
        double v = ylo + i * ystep;
        if (v > yhi + ystep * 1e-6) break;
        char t[32];
        svg_fmt(fabs(v) < ystep * 1e-9 ? 0 : v, yd, true, t, sizeof t);
        svg_printf(b,
                   "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/><text "
                   "class=\"tick y\" x=\"%.1f\" y=\"%.1f\">%s</text>",
                   ml, ml + pw, PY(v), PY(v), ml - 6, PY(v) + 4, t);
    }
    for (int i = 0;; i++) {
        double v = xlo + i * xstep;
        if (v > xhi + xstep * 1e-6) break;
        char t[32];
        svg_fmt(fabs(v) < xstep * 1e-9 ? 0 : v, xd, true, t, sizeof t);
        svg_printf(b,
                   "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/><text "
                   "class=\"tick x\" x=\"%.1f\" y=\"%.1f\">%s</text>",
                   PX(v), PX(v), mt, axis_b, PX(v), axis_b + 16, t);
    }
    svg_printf(b,
               "<path class=\"axis\" d=\"M%.1f %.1fV%.1fH%.1f\"/><text class=\"label x\" "
               "x=\"%.1f\" y=\"%.1f\">",
               ml, mt, axis_b, ml + pw, ml + pw / 2, axis_b + 36);
    axis_label(b, p->xlabel, p->xunit);
    svg_printf(b, "</text><text class=\"label y\" transform=\"translate(14 %.1f) rotate(-90)\">",
               mt + ph / 2);
    axis_label(b, p->ylabel, p->yunit);
    svg_printf(b, "</text></g>");
    if (!any)
        svg_printf(b, "<text class=\"nodata\" x=\"%.1f\" y=\"%.1f\">no data</text>", ml + pw / 2,
                   mt + ph / 2);
    /* the series */
    for (int k = 0; k < ns; k++) {
        int fin = 0;
        for (int i = 0; i < s[k].n; i++)
            fin += isfinite(s[k].x[i]) && isfinite(s[k].y[i]);
        int draw = fin > maxp ? maxp : fin;
        svg_printf(b, "<g class=\"series s%d\" data-name=\"", k % 12);
        svg_text(b, names[k]);
        svg_printf(b, "\" data-n=\"%d\" data-total=\"%d\" data-v=\"", draw, fin);
        /* the kept points: finite point j of fin is kept when it is the round(m*(fin-1)/
         * (draw-1))-th for some m */
        for (int pass = 0; pass < 2; pass++) {
            int j = 0, m = 0;
            bool first = true;
            for (int i = 0; i < s[k].n && m < draw; i++) {
                double x = s[k].x[i], y = s[k].y[i];
                if (!isfinite(x) || !isfinite(y)) continue;
                long want = draw > 1 ? lround((double)m * (fin - 1) / (draw - 1)) : 0;
                if (j++ != want) continue;
                m++;
                if (pass == 0) {
                    char xs[40], ys[40];
                    snprintf(xs, sizeof xs, "%.9g", x);
                    snprintf(ys, sizeof ys, "%.9g", y);
                    svg_printf(b, "%s%s,%s", first ? "" : " ", xs, ys);
                } else
                    svg_printf(b, "%s%.1f,%.1f", first ? "" : " ", PX(x), PY(y));
                first = false;
            }
            if (pass == 0)
                svg_printf(b, "\"><polyline points=\"");
            else
                svg_printf(b, "\"/>");
        }
        if (draw <= 40) /* short series show their points as dots */
            for (int i = 0; i < s[k].n; i++)
                if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
                    svg_printf(b, "<circle r=\"%s\" cx=\"%.1f\" cy=\"%.1f\"/>",
                               draw > 12 ? "2" : "3", PX(s[k].x[i]), PY(s[k].y[i]));
        svg_printf(b, "</g>");
    }
#undef PX
#undef PY
    if (ns > 1) legend(b, names, ns, ml, axis_b + 42, pw);
    svg_printf(b, "</svg>");
    free(names);
}

/* ---- bars ---- */

void svg_bars(svg_buf *b, const svg_plot *p, const char *const *cats, int ncat,
              const char *const *stacks, int nstack, const double *v) {
    const double W = 480, mr = 56, mt = 34, row = 26;
    double lw = 40;
    for (int i = 0; i < ncat; i++)
        lw = fmax(lw, text_width(cats[i]) + 12);
    lw = fmin(lw, 170);
    double hi = 0;
    for (int i = 0; i < ncat; i++) {
        double t = 0;
        for (int k = 0; k < nstack; k++) {
            double x = v[(size_t)i * nstack + k];
            t += isfinite(x) && x > 0 ? x : 0;
        }
        hi = fmax(hi, t);
    }
    double lo = 0;
    double step = nice_range(&lo, &hi, 4);
    double pw = W - lw - mr, axis_b = mt + row * ncat + 4;
    double leg = nstack > 1 ? legend(NULL, stacks, nstack, lw, axis_b + 42, pw) : 0;
    double H = axis_b + 44 + leg;
    open_svg(b, "bar", nstack, W, H, p->title);
#define BX(x) (lw + (x) / hi * pw)
    int d = tick_digits(step, hi);
    svg_printf(b, "<g class=\"frame\">");
    for (int i = 0;; i++) {
        double x = i * step;
        if (x > hi + step * 1e-6) break;
        char t[32];
        svg_fmt(x, d, true, t, sizeof t);
        svg_printf(b,
                   "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/><text "
                   "class=\"tick x\" x=\"%.1f\" y=\"%.1f\">%s</text>",
                   BX(x), BX(x), mt, axis_b, BX(x), axis_b + 16, t);
    }
    for (int i = 0; i < ncat; i++) {
        svg_printf(b, "<text class=\"tick y\" x=\"%.1f\" y=\"%.1f\">", lw - 6,
                   mt + row * i + row / 2 + 4);
        clipped(b, cats[i], lw - 12);
        svg_printf(b, "</text>");
    }
    svg_printf(b, "<path class=\"axis\" d=\"M%.1f %.1fV%.1fH%.1f\"/>", lw, mt, axis_b, lw + pw);
    svg_printf(b, "<text class=\"label x\" x=\"%.1f\" y=\"%.1f\">", lw + pw / 2, axis_b + 36);
    axis_label(b, p->xlabel ? p->xlabel : p->ylabel, p->xlabel ? p->xunit : p->yunit);
    svg_printf(b, "</text></g>");
    for (int k = 0; k < nstack; k++) {
        svg_printf(b, "<g class=\"series s%d\" data-name=\"", k % 12);
        svg_text(b, stacks[k]);
        svg_printf(b, "\" data-n=\"%d\">", ncat);
        for (int i = 0; i < ncat; i++) {
            double x0 = 0;
            for (int q = 0; q < k; q++) {
                double x = v[(size_t)i * nstack + q];
                x0 += isfinite(x) && x > 0 ? x : 0;
            }
            double x = v[(size_t)i * nstack + k];
            double w = isfinite(x) && x > 0 ? x : 0;
            char t[32];
            svg_fmt(x, 4, false, t, sizeof t);
            svg_printf(b,
                       "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" "
                       "data-v=\"%.9g\"><title>",
                       BX(x0), mt + row * i + 4, BX(w) - lw, row - 8, x);
            svg_text(b, cats[i]);
            svg_printf(b, ", ");
            svg_text(b, stacks[k]);
            svg_printf(b, ": %s", t);
            if (p->xunit || p->yunit) {
                svg_printf(b, " ");
                svg_text(b, p->xunit ? p->xunit : p->yunit);
            }
            svg_printf(b, "</title></rect>");
        }
        svg_printf(b, "</g>");
    }
    for (int i = 0; i < ncat; i++) {
        double t = 0;
        for (int k = 0; k < nstack; k++) {
            double x = v[(size_t)i * nstack + k];
            t += isfinite(x) && x > 0 ? x : 0;
        }
        char s[32];
        svg_fmt(t, 4, false, s, sizeof s);
        svg_printf(b, "<text class=\"value\" x=\"%.1f\" y=\"%.1f\">%s</text>", BX(t) + 4,
                   mt + row * i + row / 2 + 4, s);
    }
#undef BX
    if (nstack > 1) legend(b, stacks, nstack, lw, axis_b + 42, pw);
    svg_printf(b, "</svg>");
}

/* ---- heatmap ---- */

/* Viridis at t in [0, 1], from five stops. */
static void viridis(double t, int rgb[3]) {
    static const int stop[5][3] = {
        {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double f = t * 4;
    int i = (int)f;
    if (i > 3) i = 3;
    f -= i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (int)lround(stop[i][c] + (stop[i + 1][c] - stop[i][c]) * f);
}

void svg_heatmap(svg_buf *b, const char *title, const char *const *row_names,
                 const char *const *col_names, int rows, int cols, const double *v, double lo,
                 double hi, const char *fmt, double scale, const char *row_label,
                 const char *col_label) {
    double lw = 30;
    for (int i = 0; i < rows; i++)
        lw = fmax(lw, text_width(row_names[i]) + 10);
    lw = fmin(lw, 160) + 20;
    double cell = fmin(56, fmax(26, (480 - lw - 10) / (cols ? cols : 1)));
    double mt = 54, W = fmax(480, lw + cell * cols + 10), H = mt + cell * rows + 10;
    int filled = 0;
    for (int i = 0; i < rows * cols; i++)
        filled += isfinite(v[i]);
    open_svg(b, "heatmap", 1, W, H, title);
    svg_printf(b, "<text class=\"label\" x=\"%.1f\" y=\"%.1f\">", lw + cell * cols / 2, 36.0);
    svg_text(b, col_label ? col_label : "");
    svg_printf(b, "</text><text class=\"label y\" transform=\"translate(12 %.1f) rotate(-90)\">",
               mt + cell * rows / 2);
    svg_text(b, row_label ? row_label : "");
    svg_printf(b, "</text>");
    for (int j = 0; j < cols; j++) {
        svg_printf(b, "<text class=\"tick x\" x=\"%.1f\" y=\"%.1f\">", lw + cell * (j + 0.5),
                   mt - 4);
        svg_text(b, col_names[j]);
        svg_printf(b, "</text>");
    }
    for (int i = 0; i < rows; i++) {
        svg_printf(b, "<text class=\"tick y\" x=\"%.1f\" y=\"%.1f\">", lw - 6,
                   mt + cell * (i + 0.5) + 4);
        svg_text(b, row_names[i]);
        svg_printf(b, "</text>");
    }
    svg_printf(b, "<g class=\"series cells\" data-name=\"cells\" data-n=\"%d\">", filled);
    double fs = cell >= 40 ? 12 : 10;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double x = v[(size_t)i * cols + j];
            if (!isfinite(x)) continue;
            int c[3];
            double t = hi > lo ? (x - lo) / (hi - lo) : 1;
            viridis(t, c);
            char num[48];
            snprintf(num, sizeof num, fmt, x * scale);
            double cx = lw + cell * j, cy = mt + cell * i;
            svg_printf(b,
                       "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"#%02x%02x%02x\" data-v=\"%.9g\"/><text class=\"cell%s\" "
                       "x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\">",
                       cx + 1, cy + 1, cell - 2, cell - 2, c[0], c[1], c[2], x,
                       t > 0.62 ? " dark" : "", cx + cell / 2, cy + cell / 2 + fs * 0.35, fs);
            svg_text(b, num);
            svg_printf(b, "</text>");
        }
    svg_printf(b, "</g></svg>");
}

/* ---- gallery ---- */

void svg_gallery(svg_buf *b, const svg_image *img, int n) {
    svg_printf(b, "<div class=\"gallery\" data-n=\"%d\">", n);
    for (int i = 0; i < n; i++) {
        svg_printf(b, "<figure><img loading=\"lazy\" alt=\"");
        svg_text(b, img[i].caption);
        svg_printf(b, "\" src=\"data:%s;base64,", img[i].mime);
        svg_base64(b, img[i].data, img[i].len);
        svg_printf(b, "\"/><figcaption>");
        svg_text(b, img[i].caption);
        svg_printf(b, "</figcaption></figure>");
    }
    svg_printf(b, "</div>");
}
