/* cli.c - shared helpers of the CLI subcommands: errors, option values, and the progress line
 * (a thin wrapper of the run harness's). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* tests/splat/test_splat_op.c includes this file and uses access() */

#include "dist.h"
#include "status.h"

int cli_fail(const char *cmd, const char *what) {
    if (dist_size() > 1) /* under mpirun: say which rank failed */
        fprintf(stderr, "polyak %s: rank %d of %d: %s: %s\n", cmd, dist_rank(), dist_size(), what,
                polyak_error());
    else
        fprintf(stderr, "polyak %s: %s: %s\n", cmd, what, polyak_error());
    return 1;
}

int cli_usage(const char *cmd, const char *usage, const char *problem) {
    if (problem) fprintf(stderr, "polyak %s: %s\n", cmd, problem);
    fprintf(stderr, "usage: polyak %s %s\n", cmd, usage);
    return 2;
}

int cli_missing(const char *cmd, const char *usage, const char *opt) {
    char why[128];
    snprintf(why, sizeof why, "%s needs a value", opt);
    return cli_usage(cmd, usage, why);
}

bool cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return true;
    return false;
}

bool cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || errno || !end || *end || end == val || v < lo || v > hi) {
        fprintf(stderr, "polyak %s: %s expects an integer in %ld..%ld, got '%s'\n", cmd, opt, lo,
                hi, val ? val : "(nothing)");
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *cmd, const char *opt, const char *val, double *out) {
    char *end = NULL;
    errno = 0;
    double v = val ? strtod(val, &end) : 0;
    if (!val || errno || !end || *end || end == val) {
        fprintf(stderr, "polyak %s: %s expects a number, got '%s'\n", cmd, opt,
                val ? val : "(nothing)");
        return false;
    }
    *out = v;
    return true;
}

bool cli_floats(const char *cmd, const char *opt, const char *val, double *out, int max, int *n) {
    *n = 0;
    const char *p = val ? val : "";
    for (;;) {
        char *end = NULL;
        errno = 0;
        double v = strtod(p, &end);
        if (errno || end == p || (*end && *end != ',') || *n >= max || !(v >= 0)) {
            fprintf(stderr,
                    "polyak %s: %s expects 1 to %d numbers >= 0 separated by commas, got '%s'\n",
                    cmd, opt, max, val ? val : "(nothing)");
            return false;
        }
        out[(*n)++] = v;
        if (!*end) return true;
        p = end + 1;
    }
}

double cli_now(void) { return run_now(); }

void cli_progress_start(cli_progress *p, const char *label, int64_t total) {
    run_progress_line_start(p, stderr, label, total);
}

void cli_progress_update(cli_progress *p, int64_t done, const char *extra) {
    run_progress_line_update(p, done, extra);
}

void cli_progress_end(cli_progress *p) { run_progress_line_end(p); }
