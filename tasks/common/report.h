/* report.h - `polyak report`: one self-contained HTML page (inline SVG plots from svg.h,
 * embedded thumbnails, no network, light and dark) about one or several run folders.
 *
 * Reads what the run harness (run.h) leaves in a folder: options.json, metrics.json (its
 * "kind": splat, man, pretrain, cl, ctp; inferred from the keys when absent), log.csv,
 * run.json (command, start and end time, commit, status; written by run_report) and, for
 * splat runs, renders/ PNGs (held-out ground truth | render). Per run: the run's facts, a
 * metrics table, curves from log.csv against step and against time, and the plots of its kind.
 * Several folders: the curves overlaid and one table with a row per run first.
 * A missing, unreadable or malformed file is named in the page (what is missing and why);
 * it never stops the report. */
#ifndef POLYAK_REPORT_H
#define POLYAK_REPORT_H
#include "status.h"
#include "svg.h"

/* Appends the HTML page about the n run folders to *out. Fails only when out of memory. */
pk_status report_html(const char *const *dirs, int n, svg_buf *out);

/* Writes the page about the n run folders to out_path (atomically). */
pk_status report_write(const char *const *dirs, int n, const char *out_path);

/* The kind of a run from its metrics.json object (NULL allowed), its options.json object and
 * its log.csv header (NULL allowed): "kind" when present, else inferred from the keys;
 * "unknown" when nothing fits. `inferred` (may be NULL) says whether it was inferred. */
const char *report_kind(const void *metrics_cjson, const void *options_cjson,
                        const char *log_header, bool *inferred);

#endif
