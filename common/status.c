/* status.c - the per-thread last-error message behind pk_error()/polyak_error(). */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char pk_last_error[2048];

pk_status pk_error(pk_status status, const char *fmt, ...) {
    /* format into a local buffer first: callers may pass polyak_error() itself as an argument
     * to wrap the cause in context ("arena 'x': ...: <cause>") */
    char msg[sizeof pk_last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(pk_last_error, msg, sizeof msg);
    return status;
}

const char *polyak_error(void) { return pk_last_error; }

void pk_error_clear(void) { pk_last_error[0] = '\0'; }

const char *pk_status_name(pk_status status) {
    switch (status) {
    case PK_OK: return "ok";
    case PK_ERR_INVALID: return "invalid argument";
    case PK_ERR_IO: return "i/o error";
    case PK_ERR_FORMAT: return "format error";
    case PK_ERR_NOMEM: return "out of memory";
    case PK_ERR_DEVICE: return "device error";
    case PK_ERR_UNSUPPORTED: return "unsupported";
    case PK_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}
