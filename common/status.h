/* status.h - the status codes and last-error message shared by framework/ and io/.
 * Library code returns a pk_status and records a message with pk_error(); only
 * tools/ turns a failure into stderr text and an exit code. */
#ifndef POLYAK_STATUS_H
#define POLYAK_STATUS_H

typedef enum pk_status {
    PK_OK = 0,
    PK_ERR_INVALID = 1, /* bad argument, shape or option */
    PK_ERR_IO = 2,      /* a file could not be opened, read or written */
    PK_ERR_FORMAT = 3,  /* a file's contents are not what its format requires */
    PK_ERR_NOMEM = 4,   /* host or device memory exhausted */
    PK_ERR_DEVICE = 5,  /* a Vulkan call failed or no such device */
    PK_ERR_UNSUPPORTED = 6,
    PK_ERR_INTERRUPTED = 7
} pk_status;

#if defined(__GNUC__)
#define PK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PK_PRINTF(a, b)
#endif

/* Records a formatted message as this thread's last error and returns `status`. */
pk_status pk_error(pk_status status, const char *fmt, ...) PK_PRINTF(2, 3);

/* Returns this thread's last recorded error message ("" when none). */
const char *polyak_error(void);

/* Clears this thread's last error message. */
void pk_error_clear(void);

/* Returns a short name for a status code, e.g. "format error". */
const char *pk_status_name(pk_status status);

/* Evaluates `expr` (a pk_status) and returns it from the enclosing function on failure. */
#define PK_TRY(expr)                                                                               \
    do {                                                                                           \
        pk_status pk_try_s_ = (expr);                                                              \
        if (pk_try_s_ != PK_OK) return pk_try_s_;                                                  \
    } while (0)

#endif
