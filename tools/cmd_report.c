/* cmd_report.c - `polyak report RUN_DIR... [--out FILE.html]`: one self-contained HTML page
 * about one or several run folders (tasks/common/report.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "io_util.h"
#include "report.h"

int cmd_report(int argc, char **argv) {
    const char *usage =
        "RUN_DIR... [--out FILE.html]\n"
        "  one HTML page (inline SVG plots, embedded renders, no network) about the run\n"
        "  folders; several folders are compared (curves overlaid, a row per run).\n"
        "  --out: where to write it (default: RUN_DIR/report.html for one folder,\n"
        "         report.html in the current folder for several)";
    const char *out = NULL;
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    if (!dirs) return cli_fail("report", "out of memory");
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: polyak report %s\n", usage);
            free(dirs);
            return 0;
        }
        if (strcmp(argv[i], "--out") == 0) {
            if (i + 1 >= argc) {
                free(dirs);
                return cli_usage("report", usage, "--out needs a file name");
            }
            out = argv[++i];
        } else if (strncmp(argv[i], "--", 2) == 0) {
            free(dirs);
            return cli_usage("report", usage, "unknown option");
        } else
            dirs[n++] = argv[i];
    }
    if (!n) {
        free(dirs);
        return cli_usage("report", usage, "name at least one run folder");
    }
    char *own = NULL;
    if (!out) {
        own = n == 1 ? io_path_join(dirs[0], "report.html") : io_strdup("report.html");
        out = own;
    }
    int rc = 0;
    if (!out || report_write(dirs, n, out) != PK_OK)
        rc = cli_fail("report", "writing the report");
    else
        printf("report: %s\n", out);
    free(own);
    free(dirs);
    return rc;
}
