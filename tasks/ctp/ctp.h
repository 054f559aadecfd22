/* ctp.h - `polyak ctp`: continual vision-language pretraining over a sequence of tasks
 * (domains) of image-text pairs, with CTP (compatible momentum contrast + topology
 * preservation), its two ablations, sequential fine-tuning and joint training; retrieval
 * recall after every task on the held-out pairs of the tasks seen.
 *
 * Under mpirun (tasks/common/dist.h) each rank embeds its shard of every batch and the losses
 * span the whole global batch (the other ranks' features gathered as constants, see
 * ctp_run.c); only rank 0 writes the run folder.
 *
 * Owns: the options and the result. The run (tasks/ctp/ctp_run.c) uses tasks/common/run.h's
 * folder, log, metrics and checkpoints. */
#ifndef POLYAK_CTP_H
#define POLYAK_CTP_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ctp_data.h"

typedef enum ctp_method {
    CTP_METHOD_CTP = 0, /* compatible momentum + topology preservation */
    CTP_METHOD_SEQF,    /* sequential fine-tuning, ordinary momentum model */
    CTP_METHOD_JOINT,   /* all tasks at once (upper bound) */
    CTP_METHOD_NO_TOPO, /* CTP without topology preservation */
    CTP_METHOD_NO_CM    /* CTP without the compatible momentum update */
} ctp_method;

/* Options; zero fields take the defaults noted. */
typedef struct ctp_options {
    const char *data; /* manifest file or folder (required) */
    const char *out;  /* run folder (required) */
    ctp_method method;
    int epochs;            /* per task; 0: 5 */
    int batch;             /* 0: 32 */
    double lr;             /* peak AdamW lr; 0: 1e-4 (CTP's init_lr) */
    double weight_decay;   /* 0: 0.05 (CTP's configs/base_seqF.yaml) */
    int warmup_steps;      /* linear warm-up steps at each task start; 0: none (CTP's
                              cosine_scheduler is called without one) */
    double min_lr_ratio;   /* each task's cosine ends at lr * this; 0: 0.01 (CTP: 1e-4 -> 1e-6) */
    bool keep_optimizer;   /* one AdamW state across all tasks; false: a new AdamW at every task
                              start, as CTP's train_*.py create one per task */
    int img_size;          /* 0: 32 */
    int patch;             /* 0: 4 */
    int dim, depth, heads; /* image ViT; 0: 96, 3, 4 */
    int txt_dim, txt_depth, txt_heads; /* 0: 96, 2, 4 */
    int max_len;                       /* tokens per caption; 0: 32 */
    int vocab_size;                    /* 0: 1000 */
    int embed;                         /* 0: 256 */
    int queue;                         /* 0: 1024 */
    double temp;                       /* 0: 0.07 */
    double alpha;           /* ALBEF's distillation weight in the momentum contrast (soft targets);
                               0 or negative: none, hard targets as CTP's code (its default) */
    double momentum;        /* ordinary momentum; 0: 0.995 */
    double topo_weight;     /* 0: 1 */
    double ita_weight;      /* weight of ALBEF's ITA (momentum keys and queue); 0: 1; negative: 0 */
    bool no_inbatch;        /* drop the in-batch ITC (ALBEF's ITA against the momentum features and
                               queue alone) */
    const char *backbone;   /* ViT initialisation (polyak pretrain / timm safetensors) */
    int text_mlm_epochs;    /* > 0: before task 1, the text encoder is pretrained for this many
                               epochs with BERT's masked-language-model loss on the training
                               captions of the run's tasks (a stand-in for CTP's pretrained
                               BERT); 0: none */
    double text_mlm_lr;     /* its AdamW's peak lr; 0: 5e-4 (not the run's --lr, so the text start
                               stays the same when the continual lr changes) */
    double text_mlm_wd;     /* its weight decay; 0: 0.02 */
    const char *task_field; /* manifest key of the task */
    double test_fraction;   /* when the manifest has no split; 0: 0.2 */
    const char *task_order; /* comma-separated task names or indices; NULL: file order,
                               or a seeded permutation when order_seed > 0 */
    uint64_t order_seed;    /* 0: file order */
    uint64_t seed;
    int threads;
    const char *device;
    int max_tasks;       /* stop after this many tasks (0: all) */
    int stop_after_task; /* tests: return after this many tasks, resumable (0: never) */
    bool resume;
    FILE *progress;
    bool catch_signals;
} ctp_options;

typedef struct ctp_result {
    int ntasks;
    double recall[CTP_MAX_TASKS][CTP_MAX_TASKS]; /* R_m of task j after task i (NaN if j > i) */
    double r_m, bwt;
    /* CTP's eval.py: R_m on the held-out pairs of tasks 0..i pooled, by the model right after
     * task i (seen) and by the final model (seen_final); bwt_cumulative = mean over i < T - 1
     * of seen_final - seen (eval.py prints its negative). NaN for joint. */
    double seen[CTP_MAX_TASKS], seen_final[CTP_MAX_TASKS], bwt_cumulative;
    double i2t[3], t2i[3];
    double train_seconds, train_cpu_seconds;
} ctp_result;

/* The method's name ("ctp", "seqf", "joint", "ctp-no-topo", "ctp-no-cm"). */
const char *ctp_method_name(ctp_method m);

/* Parses a method name; false when unknown. */
bool ctp_method_parse(const char *s, ctp_method *m);

/* Runs (or resumes) the experiment; fills res. */
pk_status ctp_run(const ctp_options *o, ctp_result *res);

#endif
