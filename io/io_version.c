/* io_version.c - the io/ library's format version, recorded in checkpoints. */
#include "io.h"

/* Returns the version of Polyak's on-disk formats (checkpoint metadata). */
int pk_io_format_version(void) { return 1; }
