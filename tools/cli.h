/* cli.h - what the subcommands of the `polyak` CLI share: option parsing helpers, the
 * failure report, progress lines. Only tools/ prints errors and chooses exit codes. */
#ifndef POLYAK_CLI_H
#define POLYAK_CLI_H
#include <stdbool.h>
#include <stdint.h>

#include "run.h"

/* A subcommand: argv[0] is the subcommand's name. Returns the process exit code. */
typedef int (*cli_cmd_fn)(int argc, char **argv);

/* Prints "polyak <cmd>: <what>: <polyak_error()>" to stderr and returns 1. */
int cli_fail(const char *cmd, const char *what);

/* Prints a usage error for cmd to stderr and returns 2. */
int cli_usage(const char *cmd, const char *usage, const char *problem);

/* Reports that option `opt` came last without its value; prints usage and returns 2. */
int cli_missing(const char *cmd, const char *usage, const char *opt);

/* True when argv[1..] asks for help (-h or --help); the command then prints its usage to
 * stdout and exits 0. */
bool cli_wants_help(int argc, char **argv);

/* Parses a base-10 integer option value; false (with a usage message) when malformed. */
bool cli_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);

/* Parses a float option value; false (with a usage message) when malformed. */
bool cli_float(const char *cmd, const char *opt, const char *val, double *out);

/* One `else if` branch of an option loop (locals: `a` the option, `v` its value, `n` a long):
 * NAME as an int in [LO, HI] into FIELD, or the command's message and exit code 2. */
#define CLI_INT_OPT(CMD, NAME, FIELD, LO, HI)                                                      \
    else if (strcmp(a, NAME) == 0) {                                                               \
        if (!cli_int(CMD, a, v, LO, HI, &n)) return 2;                                             \
        FIELD = (int)n;                                                                            \
    }

/* One `else if` branch (locals `a`, `v`, `d` a double): NAME as a number > 0 into FIELD. */
#define CLI_POS_OPT(CMD, USAGE, NAME, FIELD)                                                       \
    else if (strcmp(a, NAME) == 0) {                                                               \
        if (!cli_float(CMD, a, v, &d) || !(d > 0))                                                 \
            return cli_usage(CMD, USAGE, NAME " must be > 0");                                     \
        FIELD = d;                                                                                 \
    }

/* Parses "a" or "a,b,..." (at most max numbers, each >= 0) into out, their count in *n; false
 * (with a usage message) when malformed. */
bool cli_floats(const char *cmd, const char *opt, const char *val, double *out, int max, int *n);

/* Seconds since an arbitrary fixed point (monotonic clock). */
double cli_now(void);

/* Progress reporting on stderr: the harness's progress line (tasks/common/run.h) - a
 * rewritten line with ETA on a terminal, plain periodic lines otherwise. */
typedef run_progress_line cli_progress;

/* Starts progress reporting for `total` units of work. */
void cli_progress_start(cli_progress *p, const char *label, int64_t total);

/* Reports that `done` units are finished; `extra` is appended (e.g. "loss 0.41"). */
void cli_progress_update(cli_progress *p, int64_t done, const char *extra);

/* Ends the progress line. */
void cli_progress_end(cli_progress *p);

#endif
