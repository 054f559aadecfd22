/* run.c - the run harness (run.h): the run folder and options.json, progress lines,
 * log.csv (rows kept as text in memory and in checkpoints), metrics.json, checkpoints with
 * their resume checks, and the SIGINT/SIGTERM stop request. */
#include "run.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "io_util.h"
#include "pk_commit.h"
#include "report.h"

/* One metrics.json entry: its key and its value as JSON text. */
typedef struct run_metric_entry {
    char *key, *json;
} run_metric_entry;

struct pk_run {
    char *out, *task, *options_json, *resume_json, *ckpt_dir;
    int keep;
    bool resume;
    bool writer; /* rank 0: the one rank that writes files and prints */
    int rank, world;
    FILE *progress;
    run_progress_line line;
    /* log.csv: the columns, and the file's whole text (header and rows) */
    int ncols;
    char **cols;
    char *log;
    size_t log_len, log_cap;
    FILE *log_f; /* open for appending once the text is on disk */
    /* metrics.json */
    run_metric_entry *metrics;
    int nmetrics, metrics_cap;
    char *metrics_error; /* the first bad run_metric_json value, reported by the write */
    /* run.json: when the run was opened (seconds since the epoch) and its command line */
    double started;
    char *command;
    /* signals */
    bool signals;
    struct sigaction old_int, old_term;
};

/* ---- signals ---- */

static volatile sig_atomic_t g_stop;      /* a stop was requested */
static volatile sig_atomic_t g_installed; /* a run holds the handlers */
static int g_msg_fd = -1;                 /* where the handler writes its notice */
static char g_msg[256];
static size_t g_msg_len;

/* Async-signal-safe: sets the flag and writes a fixed notice. SA_RESETHAND has already put
 * back the default action, so the next Ctrl-C ends the process. */
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
    if (g_msg_fd >= 0 && g_msg_len) {
        ssize_t w = write(g_msg_fd, g_msg, g_msg_len);
        (void)w;
    }
}

static pk_status install_signals(pk_run *r) {
    if (g_installed)
        return pk_error(PK_ERR_INVALID, "%s: another run already catches SIGINT/SIGTERM", r->out);
    g_stop = 0;
    g_msg_fd = r->progress ? fileno(r->progress) : -1;
    int n = r->world > 1 /* under mpirun a signal may also be mpirun ending the job */
                ? snprintf(g_msg, sizeof g_msg,
                           "\npolyak %s: rank %d: stop requested: every rank stops after this "
                           "step and rank 0 saves a checkpoint (unless mpirun is ending the "
                           "job)\n",
                           r->task, r->rank)
                : snprintf(g_msg, sizeof g_msg,
                           "\npolyak %s: stop requested: saving a checkpoint at the end of this "
                           "step (Ctrl-C again quits at once)\n",
                           r->task);
    g_msg_len = n > 0 && (size_t)n < sizeof g_msg ? (size_t)n : 0;
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &r->old_int) != 0)
        return pk_error(PK_ERR_INVALID, "cannot catch SIGINT: %s", strerror(errno));
    if (sigaction(SIGTERM, &sa, &r->old_term) != 0) {
        int e = errno;
        sigaction(SIGINT, &r->old_int, NULL);
        return pk_error(PK_ERR_INVALID, "cannot catch SIGTERM: %s", strerror(e));
    }
    r->signals = true;
    g_installed = 1;
    return PK_OK;
}

static void restore_signals(pk_run *r) {
    if (!r->signals) return;
    sigaction(SIGINT, &r->old_int, NULL);
    sigaction(SIGTERM, &r->old_term, NULL);
    r->signals = false;
    g_installed = 0;
    g_msg_fd = -1;
}

bool run_stop_requested(const pk_run *r) {
    bool mine = r && r->signals && g_stop;
    if (!r || r->world <= 1) return mine;
    /* every rank must stop at the same step: the request of any rank stops them all */
    bool any = mine;
    if (dist_any(mine, &any) != PK_OK) dist_abort(1, polyak_error());
    return any;
}

int run_rank(const pk_run *r) { return r->rank; }

int run_world(const pk_run *r) { return r->world; }

bool run_is_writer(const pk_run *r) { return r->writer; }

/* ---- progress ---- */

double run_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void run_progress_line_start(run_progress_line *p, FILE *f, const char *label, int64_t total) {
    p->f = f;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->start = p->last_print = run_now();
    p->tty = f && isatty(fileno(f));
    p->open = false;
}

void run_progress_line_update(run_progress_line *p, int64_t done, const char *extra) {
    if (!p->f) return;
    double now = run_now();
    /* a terminal gets a fresh line 10 times a second; logs every 10 s */
    double every = p->tty ? 0.1 : 10.0;
    if (done < p->total && now - p->last_print < every) return;
    p->last_print = now;
    double el = now - p->start, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    fprintf(p->f, "%s%s %lld/%lld (%.0f%%) %.2f it/s ETA %.0fs %s%s", p->tty ? "\r\033[K" : "",
            p->label, (long long)done, (long long)p->total,
            p->total ? 100.0 * (double)done / (double)p->total : 100.0, rate, eta,
            extra ? extra : "", p->tty ? "" : "\n");
    fflush(p->f);
    p->open = p->tty;
}

void run_progress_line_end(run_progress_line *p) {
    if (p->f && p->open) {
        fputc('\n', p->f);
        fflush(p->f);
    }
    p->open = false;
}

void run_progress_start(pk_run *r, const char *label, int64_t total) {
    run_progress_line_end(&r->line);
    run_progress_line_start(&r->line, r->progress, label, total);
}

void run_progress_update(pk_run *r, int64_t done, const char *fmt, ...) {
    char extra[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    run_progress_line_update(&r->line, done, extra);
}

void run_progress_end(pk_run *r) { run_progress_line_end(&r->line); }

void run_info(pk_run *r, const char *fmt, ...) {
    if (!r->progress) return;
    run_progress_line_end(&r->line);
    fprintf(r->progress, "polyak %s: ", r->task);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->progress, fmt, ap);
    va_end(ap);
    fputc('\n', r->progress);
    fflush(r->progress);
}

/* ---- small helpers ---- */

static char *dup_str(const char *s) { return io_strdup(s ? s : ""); }

/* mkdir -p: creates path and its missing parents. */
static pk_status make_dirs(const char *path) {
    char *p = dup_str(path);
    if (!p) return PK_ERR_NOMEM;
    pk_status s = PK_OK;
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q) continue;
        char c = *q;
        *q = 0;
        if (mkdir(p, 0777) != 0 && !(errno == EEXIST && io_is_dir(p))) {
            s = pk_error(PK_ERR_IO, "%s: cannot create the folder: %s", p, strerror(errno));
            break;
        }
        *q = c;
        if (!c) break;
        while (q[1] == '/')
            q++;
        if (!q[1]) break;
    }
    free(p);
    return s;
}

/* Writes text to path atomically. */
static pk_status write_atomic(const char *path, const char *text, size_t len) {
    io_atomic a;
    PK_TRY(io_atomic_open(&a, path));
    if (len && fwrite(text, 1, len, a.f) != len) {
        io_atomic_abort(&a);
        return pk_error(PK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    return io_atomic_commit(&a);
}

/* Formats a finite number exactly and briefly: integers without a fraction, others with the
 * fewest digits that read back to the same value (to the same float when v is one). */
static void format_number(double v, char *buf, size_t n) {
    if (v == floor(v) && fabs(v) < 1e17) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    bool is_float = (double)(float)v == v;
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        double back = strtod(buf, NULL);
        if (is_float ? (float)back == (float)v : back == v) return;
    }
}

/* Appends s to a growing buffer. */
static pk_status buf_add(char **b, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n + 1)
            c *= 2;
        char *nb = realloc(*b, c);
        if (!nb) return pk_error(PK_ERR_NOMEM, "out of memory");
        *b = nb, *cap = c;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = 0;
    return PK_OK;
}

/* A JSON string literal for s (quotes, backslashes and control characters escaped). */
static char *json_string(const char *s) {
    char *b = NULL;
    size_t len = 0, cap = 0;
    if (buf_add(&b, &len, &cap, "\"", 1) != PK_OK) return NULL;
    for (const unsigned char *q = (const unsigned char *)(s ? s : ""); *q; q++) {
        char e[8];
        const char *out = e;
        size_t n = 2;
        switch (*q) {
        case '"': out = "\\\""; break;
        case '\\': out = "\\\\"; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        case '\b': out = "\\b"; break;
        case '\f': out = "\\f"; break;
        default:
            if (*q < 0x20 || *q == 0x7f)
                n = (size_t)snprintf(e, sizeof e, "\\u%04x", *q);
            else
                e[0] = (char)*q, n = 1;
        }
        if (buf_add(&b, &len, &cap, out, n) != PK_OK) {
            free(b);
            return NULL;
        }
    }
    if (buf_add(&b, &len, &cap, "\"", 1) != PK_OK) {
        free(b);
        return NULL;
    }
    return b;
}

/* Seconds since the epoch on the real-time clock. */
static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This process's command line from /proc/self/cmdline, arguments joined by spaces and quoted
 * when they hold a space or quote (NULL where /proc is absent). */
static char *command_line(void) {
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return NULL;
    char raw[8192];
    size_t n = fread(raw, 1, sizeof raw - 1, f);
    fclose(f);
    raw[n] = 0;
    char *b = NULL;
    size_t len = 0, cap = 0;
    for (size_t at = 0; at < n;) {
        const char *a = raw + at;
        size_t l = strlen(a);
        bool quote = !*a || strpbrk(a, " \t'\"$");
        if (len) buf_add(&b, &len, &cap, " ", 1);
        if (quote) buf_add(&b, &len, &cap, "'", 1);
        for (const char *q = a; *q; q++)
            if (*q == '\'')
                buf_add(&b, &len, &cap, "'\\''", 4);
            else
                buf_add(&b, &len, &cap, q, 1);
        if (quote) buf_add(&b, &len, &cap, "'", 1);
        at += l + 1;
    }
    return b;
}

/* ---- open / close ---- */

/* Parses text as a JSON object; `what` names it in the message. */
static pk_status check_object(const char *out, const char *what, const char *text) {
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    bool ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok) return pk_error(PK_ERR_INVALID, "%s: %s is not a JSON object", out, what);
    return PK_OK;
}

pk_status run_open(const run_options *o, pk_run **out) {
    *out = NULL;
    if (!o || !o->out || !*o->out)
        return pk_error(PK_ERR_INVALID, "run: the run folder (out) is required");
    PK_TRY(check_object(o->out, "the run's options", o->options_json));
    if (o->resume_json) PK_TRY(check_object(o->out, "the resume options", o->resume_json));
    if (o->keep < 0)
        return pk_error(PK_ERR_INVALID, "%s: checkpoints to keep must be >= 1, got %d", o->out,
                        o->keep);
    pk_run *r = calloc(1, sizeof *r);
    if (!r) return pk_error(PK_ERR_NOMEM, "out of memory");
    r->out = dup_str(o->out);
    r->task = dup_str(o->task ? o->task : "run");
    r->options_json = dup_str(o->options_json);
    r->resume_json = dup_str(o->resume_json ? o->resume_json : o->options_json);
    r->ckpt_dir =
        o->checkpoints && *o->checkpoints ? io_path_join(o->out, o->checkpoints) : dup_str(o->out);
    r->keep = o->keep ? o->keep : 2;
    r->resume = o->resume;
    r->started = wall_now();
    r->command = command_line();
    r->rank = dist_rank(), r->world = dist_size();
    r->writer = r->rank == 0;
    r->progress = r->writer ? o->progress : NULL; /* one rank prints */
    pk_status s = PK_OK;
    if (!r->out || !r->task || !r->options_json || !r->resume_json || !r->ckpt_dir)
        s = pk_error(PK_ERR_NOMEM, "out of memory");
    if (s == PK_OK && r->writer) s = make_dirs(r->out);
    if (s == PK_OK && r->writer) s = make_dirs(r->ckpt_dir);
    /* options.json: the options as given, indented */
    cJSON *j = s == PK_OK ? cJSON_Parse(r->options_json) : NULL;
    char *pretty = j ? cJSON_Print(j) : NULL;
    char *flat = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (s == PK_OK && (!pretty || !flat)) s = pk_error(PK_ERR_NOMEM, "out of memory");
    if (s == PK_OK && r->writer) {
        char path[4096];
        run_path(r, "options.json", path, sizeof path);
        size_t n = strlen(pretty);
        char *text = malloc(n + 2);
        if (!text)
            s = pk_error(PK_ERR_NOMEM, "out of memory");
        else {
            memcpy(text, pretty, n);
            text[n] = '\n', text[n + 1] = 0;
            s = write_atomic(path, text, n + 1);
            free(text);
        }
    }
    if (s == PK_OK)
        run_info(r, "%s %s, options %s", r->resume ? "resuming in" : "run folder", r->out, flat);
    if (s == PK_OK && r->world > 1)
        run_info(r,
                 "%d ranks (MPI): each trains on 1/%d of every global batch; rank 0 writes the "
                 "run folder",
                 r->world, r->world);
    int64_t earlier = -1;
    if (s == PK_OK && !r->resume && checkpoint_find_latest(r->ckpt_dir, &earlier) == PK_OK &&
        earlier >= 0)
        run_info(r,
                 "warning: %s holds checkpoints of an earlier run (the newest is step %lld); this "
                 "run starts afresh, and a later --resume continues from the newest checkpoint",
                 r->ckpt_dir, (long long)earlier);
    free(pretty);
    free(flat);
    if (s == PK_OK && o->catch_signals) s = install_signals(r);
    if (s != PK_OK) {
        run_close(r);
        return s;
    }
    *out = r;
    return PK_OK;
}

void run_close(pk_run *r) {
    if (!r) return;
    restore_signals(r);
    run_progress_line_end(&r->line);
    if (r->log_f) fclose(r->log_f);
    for (int i = 0; i < r->ncols; i++)
        free(r->cols[i]);
    free(r->cols);
    free(r->log);
    for (int i = 0; i < r->nmetrics; i++)
        free(r->metrics[i].key), free(r->metrics[i].json);
    free(r->metrics);
    free(r->metrics_error);
    free(r->out), free(r->task), free(r->options_json), free(r->resume_json), free(r->ckpt_dir);
    free(r->command);
    free(r);
}

const char *run_dir(const pk_run *r) { return r->out; }

void run_path(const pk_run *r, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", r->out, name);
}

/* ---- log.csv ---- */

/* A column name CSV needs no quoting for. */
static bool plain_name(const char *s) {
    if (!s || !*s) return false;
    for (; *s; s++)
        if (*s == ',' || *s == '"' || *s == '\n' || *s == '\r') return false;
    return true;
}

/* "a,b,c" of n names into buf. */
static void join_names(int n, const char *const *names, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? "," : "", names[i]);
}

pk_status run_log(pk_run *r, int n, const char *const *names, const double *values) {
    char path[4096];
    run_path(r, "log.csv", path, sizeof path);
    if (n < 1) return pk_error(PK_ERR_INVALID, "%s: a row needs at least one column", path);
    for (int i = 0; i < n; i++)
        if (!plain_name(names[i]))
            return pk_error(PK_ERR_INVALID,
                            "%s: column %d: name '%s' is empty or holds a comma, quote or newline",
                            path, i + 1, names[i] ? names[i] : "(null)");
    if (r->ncols == 0) {
        r->cols = calloc((size_t)n, sizeof *r->cols);
        if (!r->cols) return pk_error(PK_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n; i++)
            if (!(r->cols[i] = dup_str(names[i]))) {
                for (int k = 0; k < i; k++)
                    free(r->cols[k]);
                free(r->cols);
                r->cols = NULL;
                return PK_ERR_NOMEM;
            }
        r->ncols = n;
        char head[4096];
        join_names(n, names, head, sizeof head);
        size_t hl = strlen(head);
        head[hl++] = '\n';
        PK_TRY(buf_add(&r->log, &r->log_len, &r->log_cap, head, hl));
    } else {
        bool same = n == r->ncols;
        for (int i = 0; same && i < n; i++)
            same = strcmp(names[i], r->cols[i]) == 0;
        if (!same) {
            char got[2048], want[2048];
            join_names(n, names, got, sizeof got);
            join_names(r->ncols, (const char *const *)r->cols, want, sizeof want);
            return pk_error(PK_ERR_INVALID, "%s: a row names the columns (%s); the log has (%s)",
                            path, got, want);
        }
    }
    char row[64 * 40];
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        char num[40];
        if (isfinite(values[i]))
            format_number(values[i], num, sizeof num);
        else
            snprintf(num, sizeof num, "%s",
                     isnan(values[i]) ? "nan"
                     : values[i] > 0  ? "inf"
                                      : "-inf");
        size_t l = strlen(num);
        if (at + l + 2 > sizeof row) {
            PK_TRY(buf_add(&r->log, &r->log_len, &r->log_cap, row, at));
            at = 0;
        }
        if (i) row[at++] = ',';
        memcpy(row + at, num, l);
        at += l;
    }
    row[at++] = '\n';
    size_t before = r->log_len;
    PK_TRY(buf_add(&r->log, &r->log_len, &r->log_cap, row, at));
    if (!r->writer) return PK_OK; /* the rows travel in rank 0's checkpoints */
    /* the file follows the text: the first write of this run writes it whole */
    const char *w = r->log + before;
    size_t wl = r->log_len - before;
    if (!r->log_f) {
        r->log_f = fopen(path, "w");
        if (!r->log_f) return pk_error(PK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        w = r->log, wl = r->log_len;
    }
    if (fwrite(w, 1, wl, r->log_f) != wl || fflush(r->log_f) != 0)
        return pk_error(PK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return PK_OK;
}

/* Takes the log text of a checkpoint (header and rows) as this run's log and rewrites
 * log.csv with it. */
static pk_status restore_log(pk_run *r, const char *ckpt, const char *text, size_t len) {
    char path[4096];
    run_path(r, "log.csv", path, sizeof path);
    if (r->log_f) fclose(r->log_f);
    r->log_f = NULL;
    for (int i = 0; i < r->ncols; i++)
        free(r->cols[i]);
    free(r->cols);
    r->cols = NULL;
    r->ncols = 0;
    r->log_len = 0;
    if (len == 0) {
        if (!r->writer) return PK_OK;
        if (remove(path) != 0 && errno != ENOENT)
            return pk_error(PK_ERR_IO, "%s: cannot delete: %s", path, strerror(errno));
        return PK_OK;
    }
    const char *nl = memchr(text, '\n', len);
    if (!nl || text[len - 1] != '\n' || memchr(text, 0, len))
        return pk_error(PK_ERR_FORMAT, "%s: tensor run.log: expected CSV lines (a header first)",
                        ckpt);
    int n = 1;
    for (const char *q = text; q < nl; q++)
        n += *q == ',';
    r->cols = calloc((size_t)n, sizeof *r->cols);
    if (!r->cols) return pk_error(PK_ERR_NOMEM, "out of memory");
    const char *q = text;
    for (int i = 0; i < n; i++) {
        const char *e = q;
        while (e < nl && *e != ',')
            e++;
        r->cols[i] = malloc((size_t)(e - q) + 1);
        if (!r->cols[i]) {
            r->ncols = i;
            return pk_error(PK_ERR_NOMEM, "out of memory");
        }
        memcpy(r->cols[i], q, (size_t)(e - q));
        r->cols[i][e - q] = 0;
        q = e + 1;
    }
    r->ncols = n;
    PK_TRY(buf_add(&r->log, &r->log_len, &r->log_cap, text, len));
    if (!r->writer) return PK_OK;
    PK_TRY(write_atomic(path, r->log, r->log_len));
    r->log_f = fopen(path, "a");
    if (!r->log_f) return pk_error(PK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return PK_OK;
}

/* ---- metrics.json ---- */

/* Sets key to the JSON text (taken over). */
static void set_metric(pk_run *r, const char *key, char *json) {
    if (!json) {
        if (!r->metrics_error) r->metrics_error = dup_str(key);
        return;
    }
    for (int i = 0; i < r->nmetrics; i++)
        if (strcmp(r->metrics[i].key, key) == 0) {
            free(r->metrics[i].json);
            r->metrics[i].json = json;
            return;
        }
    if (r->nmetrics == r->metrics_cap) {
        int cap = r->metrics_cap ? 2 * r->metrics_cap : 32;
        run_metric_entry *m = realloc(r->metrics, sizeof *m * (size_t)cap);
        if (!m) {
            free(json);
            if (!r->metrics_error) r->metrics_error = dup_str(key);
            return;
        }
        r->metrics = m, r->metrics_cap = cap;
    }
    char *k = dup_str(key);
    if (!k) {
        free(json);
        if (!r->metrics_error) r->metrics_error = dup_str(key);
        return;
    }
    r->metrics[r->nmetrics++] = (run_metric_entry){k, json};
}

/* A JSON number (null when not finite). */
static void number_json(double v, char *buf, size_t n) {
    if (isfinite(v))
        format_number(v, buf, n);
    else
        snprintf(buf, n, "null");
}

void run_metric(pk_run *r, const char *key, double value) {
    char num[40];
    number_json(value, num, sizeof num);
    set_metric(r, key, dup_str(num));
}

void run_metric_str(pk_run *r, const char *key, const char *value) {
    set_metric(r, key, json_string(value));
}

void run_metric_array(pk_run *r, const char *key, const double *values, int n) {
    char *b = NULL;
    size_t len = 0, cap = 0;
    bool ok = buf_add(&b, &len, &cap, "[", 1) == PK_OK;
    for (int i = 0; ok && i < n; i++) {
        char num[48];
        number_json(values[i], num, sizeof num);
        if (i) ok = buf_add(&b, &len, &cap, ", ", 2) == PK_OK;
        if (ok) ok = buf_add(&b, &len, &cap, num, strlen(num)) == PK_OK;
    }
    if (ok) ok = buf_add(&b, &len, &cap, "]", 1) == PK_OK;
    if (!ok) free(b), b = NULL;
    set_metric(r, key, b);
}

void run_metric_json(pk_run *r, const char *key, const char *json) {
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    bool ok = j != NULL;
    cJSON_Delete(j);
    if (!ok) {
        if (!r->metrics_error) r->metrics_error = dup_str(key);
        return;
    }
    set_metric(r, key, dup_str(json));
}

void run_metric_vulkan(pk_run *r, pk_device *dev, const pk_step_counters *sc) {
    char vk[560];
    if (!dev || pk_device_backend(dev) != PK_BACKEND_VK ||
        !pk_step_counters_json(sc, vk, sizeof vk - 40))
        return;
    size_t n = strlen(vk); /* ..."}" -> ..., "validation_errors": N} */
    snprintf(vk + n - 1, sizeof vk - (n - 1), ", \"validation_errors\": %d}",
             pk_device_validation_errors(dev));
    run_metric_json(r, "vulkan", vk);
}

pk_status run_metrics_write(pk_run *r) {
    char path[4096];
    run_path(r, "metrics.json", path, sizeof path);
    if (r->metrics_error)
        return pk_error(PK_ERR_INVALID, "%s: the value of key \"%s\" is not valid JSON", path,
                        r->metrics_error);
    if (!r->writer) return PK_OK;
    char *b = NULL;
    size_t len = 0, cap = 0;
    pk_status s = buf_add(&b, &len, &cap, "{", 1);
    for (int i = 0; s == PK_OK && i < r->nmetrics; i++) {
        char *k = json_string(r->metrics[i].key);
        if (!k) {
            s = pk_error(PK_ERR_NOMEM, "out of memory");
            break;
        }
        s = buf_add(&b, &len, &cap, i ? ",\n  " : "\n  ", i ? 4 : 3);
        if (s == PK_OK) s = buf_add(&b, &len, &cap, k, strlen(k));
        if (s == PK_OK) s = buf_add(&b, &len, &cap, ": ", 2);
        if (s == PK_OK) s = buf_add(&b, &len, &cap, r->metrics[i].json, strlen(r->metrics[i].json));
        free(k);
    }
    if (s == PK_OK) s = buf_add(&b, &len, &cap, "\n}\n", 3);
    if (s == PK_OK) s = write_atomic(path, b, len);
    free(b);
    return s;
}

/* ---- checkpoints ---- */

/* Data parallel (dist.h): every rank must hold the same model, teachers and optimizer state
 * when rank 0 saves it for all. Compares a hash of the bits of the device tensors (host arrays
 * hold per-rank timings) across the ranks; a difference is an error naming the checkpoint. */
static pk_status same_on_every_rank(pk_run *r, const char *path, const run_tensor *ts, int n) {
    uint64_t h = 1469598103934665603ull;
    float *buf = NULL;
    size_t cap = 0;
    pk_status s = PK_OK;
    for (int i = 0; i < n && s == PK_OK; i++) {
        const tensor *t = ts[i].t;
        if (!t || t->dtype != PK_F32 || !tensor_is_contiguous(t)) continue;
        size_t m = (size_t)tensor_numel(t);
        if (m > cap) {
            float *b = realloc(buf, sizeof(float) * m);
            if (!b) {
                s = pk_error(PK_ERR_NOMEM, "out of memory");
                break;
            }
            buf = b, cap = m;
        }
        s = tensor_download(t, buf);
        const unsigned char *p = (const unsigned char *)buf;
        for (size_t k = 0; s == PK_OK && k < m * sizeof(float); k++)
            h = (h ^ p[k]) * 1099511628211ull;
    }
    free(buf);
    PK_TRY(s);
    if (dist_check_same(h, "the state to checkpoint") != PK_OK)
        return pk_error(PK_ERR_INVALID,
                        "%s: rank %d of %d holds other parameters, teachers or optimizer state "
                        "than another rank (data-parallel ranks diverged)",
                        path, r->rank, r->world);
    return PK_OK;
}

pk_status run_checkpoint_save(pk_run *r, int64_t step, const run_tensor *ts, int n,
                              const uint64_t rng[CKPT_RNG_WORDS]) {
    return run_checkpoint_save_ex(r, step, ts, n, NULL, 0, rng);
}

pk_status run_checkpoint_save_ex(pk_run *r, int64_t step, const run_tensor *ts, int n,
                                 const st_write_tensor *extra, int n_extra,
                                 const uint64_t rng[CKPT_RNG_WORDS]) {
    char path[4096];
    checkpoint_path(r->ckpt_dir, step, path, sizeof path);
    if (step < 0) return pk_error(PK_ERR_INVALID, "%s: step must be >= 0", path);
    if (r->world > 1) PK_TRY(same_on_every_rank(r, path, ts, n));
    if (!r->writer) return PK_OK; /* every rank holds the same state; rank 0 keeps it */
    int total = n + n_extra + 1;
    st_write_tensor *w = calloc((size_t)total, sizeof *w);
    float **bufs = calloc((size_t)(n ? n : 1), sizeof *bufs);
    int64_t(*shapes)[1] = calloc((size_t)total, sizeof *shapes);
    pk_status s = w && bufs && shapes ? PK_OK : pk_error(PK_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n && s == PK_OK; i++) {
        const run_tensor *t = &ts[i];
        if (!t->name || (!t->t && !t->host)) {
            s = pk_error(PK_ERR_INVALID, "%s: state tensor %d (%s) has no data", path, i,
                         t->name ? t->name : "unnamed");
            break;
        }
        if (t->t) {
            if (t->t->dtype != PK_F32 || !tensor_is_contiguous(t->t)) {
                s = pk_error(PK_ERR_INVALID, "%s: tensor %s: expected a contiguous F32 tensor",
                             path, t->name);
                break;
            }
            int64_t numel = tensor_numel(t->t);
            bufs[i] = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
            if (!bufs[i]) {
                s = pk_error(PK_ERR_NOMEM, "%s: out of memory for tensor %s", path, t->name);
                break;
            }
            s = tensor_download(t->t, bufs[i]);
            w[k++] = (st_write_tensor){t->name, ST_F32, t->t->ndim, t->t->shape, bufs[i]};
        } else {
            shapes[k][0] = t->numel;
            w[k] = (st_write_tensor){t->name, ST_F32, 1, shapes[k], t->host};
            k++;
        }
    }
    for (int i = 0; i < n_extra && s == PK_OK; i++)
        w[k++] = extra[i];
    if (s == PK_OK && r->log_len) {
        shapes[k][0] = (int64_t)r->log_len;
        w[k] = (st_write_tensor){"run.log", ST_U8, 1, shapes[k], r->log};
        k++;
    }
    for (int i = 0; i < k && s == PK_OK; i++)
        for (int j = i + 1; j < k && s == PK_OK; j++)
            if (strcmp(w[i].name, w[j].name) == 0)
                s = pk_error(PK_ERR_INVALID, "%s: two state tensors are named %s", path, w[i].name);
    if (s == PK_OK) {
        ckpt_meta meta = {.step = step, .options_json = r->resume_json};
        if (rng) memcpy(meta.rng, rng, sizeof meta.rng);
        s = checkpoint_write(path, w, k, &meta);
    }
    if (s == PK_OK) s = checkpoint_keep_last(r->ckpt_dir, r->keep);
    for (int i = 0; bufs && i < n; i++)
        free(bufs[i]);
    free(bufs), free(w), free(shapes);
    return s;
}

pk_status run_checkpoint_load(pk_run *r, const run_tensor *ts, int n, int64_t *step,
                              uint64_t rng[CKPT_RNG_WORDS]) {
    return run_checkpoint_load_ex(r, ts, n, NULL, NULL, step, rng);
}

/* Loads one state tensor from the checkpoint at path. */
static pk_status load_tensor(const ckpt_file *ck, const char *path, const run_tensor *t) {
    int64_t want = t->t ? tensor_numel(t->t) : t->numel;
    const st_tensor *s = safetensors_find(&ck->st, t->name);
    if (!s)
        return pk_error(PK_ERR_FORMAT, "%s: tensor %s is missing (expected F32 with %lld elements)",
                        path, t->name, (long long)want);
    if (s->dtype != ST_F32 || (int64_t)st_tensor_numel(s) != want)
        return pk_error(PK_ERR_FORMAT,
                        "%s: tensor %s: expected F32 with %lld elements, found %s "
                        "with %lld",
                        path, t->name, (long long)want, st_dtype_name(s->dtype),
                        (long long)st_tensor_numel(s));
    if (!t->t) return st_tensor_to_f32(s, t->host);
    if (t->t->dtype != PK_F32 || !tensor_is_contiguous(t->t))
        return pk_error(PK_ERR_INVALID, "%s: tensor %s: the task's tensor is not contiguous F32",
                        path, t->name);
    float *h = malloc(sizeof(float) * (size_t)(want ? want : 1));
    if (!h) return pk_error(PK_ERR_NOMEM, "%s: out of memory for tensor %s", path, t->name);
    pk_status st = st_tensor_to_f32(s, h);
    if (st == PK_OK) st = tensor_upload(t->t, h);
    free(h);
    return st;
}

pk_status run_checkpoint_load_ex(pk_run *r, const run_tensor *ts, int n, run_restore_fn restore,
                                 void *user, int64_t *step, uint64_t rng[CKPT_RNG_WORDS]) {
    *step = -1;
    if (!r->resume) return PK_OK;
    int64_t latest = -1;
    PK_TRY(checkpoint_find_latest(r->ckpt_dir, &latest));
    if (latest < 0) return PK_OK;
    char path[4096];
    checkpoint_path(r->ckpt_dir, latest, path, sizeof path);
    ckpt_file ck;
    PK_TRY(checkpoint_open(path, &ck));
    cJSON *a = cJSON_Parse(ck.options_json), *b = cJSON_Parse(r->resume_json);
    bool same = a && b && cJSON_Compare(a, b, true);
    cJSON_Delete(a);
    cJSON_Delete(b);
    pk_status s = PK_OK;
    if (!same)
        s = pk_error(PK_ERR_INVALID,
                     "%s: written by a run with the options %s; this run has %s: resume with the "
                     "same options, or start the new run in another folder",
                     path, ck.options_json, r->resume_json);
    for (int i = 0; i < n && s == PK_OK; i++)
        s = load_tensor(&ck, path, &ts[i]);
    if (s == PK_OK && restore) s = restore(user, &ck, path);
    if (s == PK_OK) {
        const st_tensor *lg = safetensors_find(&ck.st, "run.log");
        if (lg && (lg->dtype != ST_U8 || lg->ndim != 1))
            s = pk_error(PK_ERR_FORMAT, "%s: tensor run.log: expected U8 text", path);
        else
            s = restore_log(r, path, lg ? lg->data : "", lg ? lg->nbytes : 0);
    }
    if (s == PK_OK) {
        *step = ck.step;
        if (rng) memcpy(rng, ck.rng, sizeof ck.rng);
        run_info(r, "resuming from %s (step %lld)", path, (long long)ck.step);
    }
    checkpoint_close(&ck);
    return s;
}

/* ---- run.json and report.html ---- */

static pk_status write_report(pk_run *r, const char *status);

pk_status run_report(pk_run *r, const char *status) {
    if (!r || !r->writer) return PK_OK; /* rank 0 writes the run folder */
    /* a failed run's message stays the last error whatever happens here */
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", polyak_error());
    pk_status s = write_report(r, status);
    if (s != PK_OK) run_info(r, "warning: report.html not written: %s", polyak_error());
    if (status && strcmp(status, "failed") == 0) pk_error(PK_ERR_INVALID, "%s", saved);
    return s;
}

/* run_report's body. */
static pk_status write_report(pk_run *r, const char *status) {
    char path[4096];
    cJSON *j = cJSON_CreateObject();
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    double now = wall_now();
    char t0[40], t1[40];
    time_t s0 = (time_t)r->started, s1 = (time_t)now;
    struct tm tm;
    strftime(t0, sizeof t0, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&s0, &tm));
    strftime(t1, sizeof t1, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&s1, &tm));
    bool ok = j && cJSON_AddStringToObject(j, "task", r->task) &&
              cJSON_AddStringToObject(j, "command", r->command ? r->command : "") &&
              cJSON_AddStringToObject(j, "host", host) &&
              cJSON_AddStringToObject(j, "started", t0) &&
              cJSON_AddStringToObject(j, "finished", t1) &&
              cJSON_AddNumberToObject(j, "started_unix", round(r->started * 1e3) / 1e3) &&
              cJSON_AddNumberToObject(j, "finished_unix", round(now * 1e3) / 1e3) &&
              cJSON_AddStringToObject(j, "status", status ? status : "finished") &&
              cJSON_AddStringToObject(j, "commit", POLYAK_COMMIT);
    char *text = ok ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) return pk_error(PK_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    char *t = realloc(text, n + 2);
    if (!t) {
        free(text);
        return pk_error(PK_ERR_NOMEM, "out of memory");
    }
    t[n] = '\n', t[n + 1] = 0;
    run_path(r, "run.json", path, sizeof path);
    pk_status s = write_atomic(path, t, n + 1);
    free(t);
    PK_TRY(s);
    run_path(r, "report.html", path, sizeof path);
    const char *dirs[1] = {r->out};
    PK_TRY(report_write(dirs, 1, path));
    run_info(r, "report: %s", path);
    return PK_OK;
}
