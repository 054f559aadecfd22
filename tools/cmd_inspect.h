/* cmd_inspect.h - `polyak inspect FILE_OR_FOLDER...`: says what each path is and what it holds. */
#ifndef POLYAK_CMD_INSPECT_H
#define POLYAK_CMD_INSPECT_H

/* Runs the subcommand: argv[0] is "inspect", argv[1..argc-1] are paths. Prints a summary of each
 * to stdout; returns 0 when all were read, 1 on bad input (polyak_error() text on stderr). */
int cmd_inspect(int argc, char **argv);

#endif
