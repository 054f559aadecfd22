/* cli.c - shared helpers of the CLI subcommands: errors, option values, progress lines. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "status.h"

int cli_fail(const char *cmd, const char *what) {
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

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_start(cli_progress *p, const char *label, int64_t total) {
    p->label = label;
    p->total = total;
    p->start = p->last_print = cli_now();
    p->tty = isatty(STDERR_FILENO);
}

void cli_progress_update(cli_progress *p, int64_t done, const char *extra) {
    double now = cli_now();
    /* a terminal gets a fresh line 10 times a second; logs every 10 s */
    double every = p->tty ? 0.1 : 10.0;
    if (done < p->total && now - p->last_print < every) return;
    p->last_print = now;
    double el = now - p->start, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    fprintf(stderr, "%s%s %lld/%lld (%.0f%%) %.2f it/s ETA %.0fs %s%s", p->tty ? "\r\033[K" : "",
            p->label, (long long)done, (long long)p->total,
            p->total ? 100.0 * (double)done / (double)p->total : 100.0, rate, eta,
            extra ? extra : "", p->tty ? "" : "\n");
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (p->tty) fputc('\n', stderr);
}
