/* svg.h - Polyak's small plot writer: a growing text buffer with XML escaping, and inline SVG
 * plots for HTML reports (line plots with axes, ticks, units and hover values; horizontal bar
 * plots, stacked or not; heatmaps with their numbers) plus an HTML image gallery of embedded
 * PNG/JPEG thumbnails.
 *
 * The output is well-formed XML (XHTML-clean): every element closed, attribute values quoted
 * and escaped. Colours come from CSS classes (.s0 .. .s7 for series, .axis, .grid, ...) that
 * the page's style sheet defines for light and dark themes, except heatmap cells, which carry
 * their own fill. Each plot states what it draws for tests and scripts: the <svg> has
 * class="plot <kind>" and data-series="N"; each series is a <g class="series sK"> with
 * data-name and data-n (points or bars drawn) and, for lines, data-v holding the drawn values
 * "x,y x,y ..." as numbers (the hover script reads them). */
#ifndef POLYAK_SVG_H
#define POLYAK_SVG_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* A growing NUL-terminated text; `oom` is set once an allocation failed (later writes are
 * dropped, so callers check once at the end). */
typedef struct svg_buf {
    char *s;
    size_t len, cap;
    bool oom;
} svg_buf;

/* Appends printf-formatted text as is (no escaping). */
void svg_printf(svg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends n bytes as is. */
void svg_put(svg_buf *b, const char *s, size_t n);

/* Appends text with &, <, >, " and ' escaped (for element text and attribute values);
 * control characters other than tab and newline become U+FFFD. NULL appends nothing. */
void svg_text(svg_buf *b, const char *s);

/* Frees the text and empties the buffer. */
void svg_free(svg_buf *b);

/* Formats v briefly for a label: up to `digits` significant digits, no trailing zeros,
 * thousands as "12k"/"3.4M" when `short_big`; "n/a" for NaN and infinities. */
void svg_fmt(double v, int digits, bool short_big, char *buf, size_t n);

/* One series of a line plot: n points (x[i], y[i]); points with a non-finite coordinate are
 * skipped (a gap-free line through the rest). */
typedef struct svg_series {
    const char *name;
    const double *x, *y;
    int n;
} svg_series;

/* A plot's labels. Units are shown after the axis label in brackets. */
typedef struct svg_plot {
    const char *title;
    const char *xlabel, *xunit;
    const char *ylabel, *yunit;
    bool y_from_zero; /* the y axis includes 0 */
    bool x_from_zero; /* the x axis includes 0 (time axes) */
    int max_points;   /* per series; 0: 1200 (longer series are thinned evenly, first and last
                         kept) */
} svg_plot;

/* A line plot of ns series in one frame, with a legend when ns > 1. A plot with no finite
 * point draws its frame and says "no data". */
void svg_line(svg_buf *b, const svg_plot *p, const svg_series *s, int ns);

/* Horizontal bars: one row per category (ncat), each made of nstack segments stacked left to
 * right; v is (ncat, nstack) row-major, non-finite or negative segments drawn as 0. Each
 * row's total is written at its end; a legend names the stacks when nstack > 1. Series are
 * the stacks (data-n = ncat each). */
void svg_bars(svg_buf *b, const svg_plot *p, const char *const *cats, int ncat,
              const char *const *stacks, int nstack, const double *v);

/* A heatmap of an (rows, cols) matrix v, row-major, with NaN for empty cells; each filled
 * cell shows its value formatted with `fmt` applied to v * scale (e.g. "%.1f" and 100 for
 * percent). lo..hi is the colour range (viridis). One series "cells" with data-n = the
 * number of filled cells; each cell is a <rect> with data-v holding its value. */
void svg_heatmap(svg_buf *b, const char *title, const char *const *row_names,
                 const char *const *col_names, int rows, int cols, const double *v, double lo,
                 double hi, const char *fmt, double scale, const char *row_label,
                 const char *col_label);

/* One image of a gallery: an encoded image (PNG or JPEG, by `mime`) and its caption. */
typedef struct svg_image {
    const char *caption;
    const char *mime; /* "image/png" or "image/jpeg" */
    const unsigned char *data;
    size_t len;
} svg_image;

/* An HTML grid of images embedded as base64 data: URLs (class="gallery", data-n = n), each a
 * <figure> whose image the page's script enlarges on click. */
void svg_gallery(svg_buf *b, const svg_image *img, int n);

/* Appends the base64 encoding of n bytes. */
void svg_base64(svg_buf *b, const unsigned char *data, size_t n);

#endif
