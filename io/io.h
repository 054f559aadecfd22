/* io.h - umbrella header for io/: files in and out, host memory only, no Vulkan. */
#ifndef POLYAK_IO_H
#define POLYAK_IO_H
#include "status.h"
#include "image.h"
#include "dataset.h"
#include "scene.h"
#include "ply.h"
#include "safetensors.h"
#include "checkpoint.h"

/* Returns the version of Polyak's on-disk formats (checkpoint metadata). */
int pk_io_format_version(void);

#endif
