/* run.h - the run harness every task uses: one run folder laid out the same way for `splat
 * train`, `man`, `pretrain` and the tasks after them.
 *
 * A run folder holds options.json (the options, echoed also to the progress stream when the
 * run starts), log.csv (one row per logged step or epoch, named columns), metrics.json (a
 * JSON object the task fills key by key), and ckpt-<step>.safetensors checkpoints written
 * atomically (io/checkpoint.h; in the folder or the subfolder run_options.checkpoints names),
 * the newest `keep` kept. log.csv is written row by row and its whole text also lives in
 * memory and in every checkpoint: log every N steps, not every step, in very long runs. A
 * resumed run checks that the checkpoint was written with the same resume-relevant options,
 * reloads the tensors the task names and the log rows up to the checkpoint, so a CPU run
 * continues bit-exactly.
 *
 * Owns: the folder, progress lines (a rewritten line with ETA on a terminal, plain periodic
 * lines otherwise), log/metrics files, checkpoint save/load, and SIGINT/SIGTERM (a stop
 * request the task polls, so Ctrl-C saves a checkpoint instead of losing the run).
 * Leaves to the task: what a step is, which tensors make its state, what the metrics mean.
 * Under mpirun only rank 0 writes and prints (run_is_writer); see run_rank. */
#ifndef POLYAK_RUN_H
#define POLYAK_RUN_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "checkpoint.h"
#include "tensor.h"

typedef struct pk_run pk_run;

/* Options of run_open; zero fields take the defaults noted. */
typedef struct run_options {
    const char *out;          /* run folder (required; created with its parents) */
    const char *task;         /* "splat train", "man", "pretrain": the messages' prefix */
    const char *options_json; /* the run's options as a JSON object text (required) */
    const char *resume_json;  /* the options a resumed run must share; NULL: options_json */
    bool resume;              /* continue from the newest checkpoint in `out` */
    int keep;                 /* checkpoints kept; 0: 2 */
    FILE *progress;           /* where messages and progress go (stderr in the CLI); NULL: none */
    bool catch_signals;       /* SIGINT/SIGTERM request a stop (run_stop_requested); the
                                 first one also restores the default action, so a second
                                 Ctrl-C ends the process at once (a message says so) */
    const char *checkpoints;  /* subfolder of `out` for the checkpoints ("checkpoints" for
                                 splat train); NULL: `out` itself (added to the first draft) */
} run_options;

/* Opens (creates) the run folder, writes options.json and echoes the options. */
pk_status run_open(const run_options *o, pk_run **out);

/* Closes the run, restoring signal handlers; accepts NULL. */
void run_close(pk_run *r);

/* The run folder. */
const char *run_dir(const pk_run *r);

/* Formats "<out>/<name>" into buf (size n). */
void run_path(const pk_run *r, const char *name, char *buf, size_t n);

/* Prints "polyak <task>: <message>" on the progress stream (ends any progress line first). */
void run_info(pk_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts a progress line for `total` units of work, labelled (e.g. "epoch 3/10"). */
void run_progress_start(pk_run *r, const char *label, int64_t total);

/* Reports `done` units finished, with an extra text (e.g. "loss 0.41"); rate-limited. */
void run_progress_update(pk_run *r, int64_t done, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the progress line. */
void run_progress_end(pk_run *r);

/* Appends a row to log.csv: n named values. The first row fixes the columns; later rows must
 * name the same ones. The rows live in memory too and travel in checkpoints, so a resumed
 * run's log.csv holds the rows up to its checkpoint and continues from there. */
pk_status run_log(pk_run *r, int n, const char *const *names, const double *values);

/* Sets a number in metrics.json (a key set again is replaced). Numbers here and in log.csv are
 * written with the fewest digits that read back to the same double (to the same float when
 * the value is a float), integers without a fraction; JSON gets null for NaN and infinities. */
void run_metric(pk_run *r, const char *key, double value);

/* Sets a string in metrics.json. */
void run_metric_str(pk_run *r, const char *key, const char *value);

/* Sets an array of numbers in metrics.json. */
void run_metric_array(pk_run *r, const char *key, const double *values, int n);

/* Sets a JSON value given as text (an object, an array of objects, ...) in metrics.json. */
void run_metric_json(pk_run *r, const char *key, const char *json);

/* Sets metrics.json "vulkan" to the per-step device counters of a training loop
 * (pk_step_counters_json: submissions, host waits, bytes each way, dispatches, descriptor
 * allocations... averaged over the steps after the first) plus "validation_errors" (the
 * validation layer's messages so far; 0 unless POLYAK_VALIDATE=1) when `dev` is a Vulkan
 * device and at least two steps were marked; nothing otherwise (the CPU backend has no queue
 * or bus).
 * Every training command calls it, so `polyak report` and tools/gpu-check.sh find the same
 * block in every run folder. (Added for issue 16.) */
void run_metric_vulkan(pk_run *r, pk_device *dev, const pk_step_counters *sc);

/* Writes metrics.json atomically with every key set so far, in the order first set. */
pk_status run_metrics_write(pk_run *r);

/* A tensor of the task's state: device tensors are downloaded to save and uploaded to load;
 * host arrays (`host`, `numel` floats) are copied. */
typedef struct run_tensor {
    const char *name;
    tensor *t;   /* a device tensor (contiguous f32), or NULL for a host array */
    float *host; /* a host array when t is NULL */
    int64_t numel;
} run_tensor;

/* Writes ckpt-<step>.safetensors: the tensors, the log rows (tensor "run.log": U8, the text
 * of log.csv, header included), `rng` (NULL: zeros) and the resume-relevant options; keeps
 * the newest `keep`. */
pk_status run_checkpoint_save(pk_run *r, int64_t step, const run_tensor *ts, int n,
                              const uint64_t rng[CKPT_RNG_WORDS]);

/* When the run was opened with `resume`: loads the newest checkpoint into the tensors (each
 * must be present with its size; a clear error names the file and the tensor otherwise),
 * restores the log rows and sets *step and rng. *step = -1 when there is no checkpoint or
 * the run does not resume (nothing is touched). */
pk_status run_checkpoint_load(pk_run *r, const run_tensor *ts, int n, int64_t *step,
                              uint64_t rng[CKPT_RNG_WORDS]);

/* run_checkpoint_save plus `extra` tensors written as given (any dtype and shape): state
 * whose size the task decides, such as a set of Gaussians that densification grows. (Added
 * to the first draft.) */
pk_status run_checkpoint_save_ex(pk_run *r, int64_t step, const run_tensor *ts, int n,
                                 const st_write_tensor *extra, int n_extra,
                                 const uint64_t rng[CKPT_RNG_WORDS]);

/* The task's reader of the state it saved as `extra`: called with the opened checkpoint. */
typedef pk_status (*run_restore_fn)(void *user, const ckpt_file *ck, const char *path);

/* run_checkpoint_load plus restore(user, checkpoint, path) for the extra tensors, called
 * after the run_tensors are loaded (restore may be NULL). (Added to the first draft.) */
pk_status run_checkpoint_load_ex(pk_run *r, const run_tensor *ts, int n, run_restore_fn restore,
                                 void *user, int64_t *step, uint64_t rng[CKPT_RNG_WORDS]);

/* Writes run.json (task, command line, host, start and end time, the commit Polyak was built
 * from, `status` such as "finished" or "interrupted") and report.html (report.h: the page about
 * this run folder) into the run folder. Every training command calls it when it ends,
 * finished, stopped by Ctrl-C ("interrupted") or "failed" (then the last error message is
 * kept). A report that cannot be written gets a warning on the progress stream and its
 * status; the run's own result does not depend on it. (Added for `polyak report`.) */
pk_status run_report(pk_run *r, const char *status);

/* True once SIGINT/SIGTERM arrived (with catch_signals): save a checkpoint and return. With
 * several ranks (tasks/common/dist.h) a collective: true on every rank when any rank got the
 * signal, so every rank must call it at the same points of the run. */
bool run_stop_requested(const pk_run *r);

/* This process's rank and the number of ranks (1 without mpirun; tasks/common/dist.h). Only
 * rank 0 (the writer) creates the folder and writes options.json, log.csv, metrics.json and
 * checkpoints, and only it prints; the others keep the same state in memory (run_log rows
 * included) and read the same checkpoints on --resume, so a run resumes with any number of
 * ranks. Files a task writes itself (renders, backbones) follow run_is_writer. */
int run_rank(const pk_run *r);
int run_world(const pk_run *r);
bool run_is_writer(const pk_run *r);

/* A progress line on its own, for commands that write no run folder (`splat render`, `mlp`;
 * tools/cli.h's cli_progress wraps it). run_progress_* use one inside the run. (Added to the
 * first draft.) */
typedef struct run_progress_line {
    FILE *f; /* NULL: silent */
    char label[96];
    int64_t total;
    double start, last_print;
    bool tty;  /* f is a terminal: one line rewritten in place */
    bool open; /* a rewritten line is on the terminal without its newline */
} run_progress_line;

/* Starts a line for `total` units of work on f. */
void run_progress_line_start(run_progress_line *p, FILE *f, const char *label, int64_t total);

/* Reports `done` units finished with an extra text (NULL: none): on a terminal at most 10
 * times a second, otherwise a plain line every 10 s, and always when done reaches total. */
void run_progress_line_update(run_progress_line *p, int64_t done, const char *extra);

/* Ends the line (a newline on a terminal when one is open). */
void run_progress_line_end(run_progress_line *p);

/* Seconds on the monotonic clock since an arbitrary fixed point. */
double run_now(void);

#endif
