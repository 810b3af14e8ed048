/*
 * Error reporting shared by every native component.
 *
 * Functions return 0 (or a count) on success and a negative errno on
 * failure; the human-readable reason is kept per thread in dn_errmsg so that
 * the Python side can raise OSError(errno, message) without each call
 * carrying a buffer.
 */
#ifndef DN_ERROR_H
#define DN_ERROR_H

#include "dn_export.h"

#define DN_ERRMSG_LEN 256

/* Records the reason for the calling thread and returns code (a -errno). */
DN_EXPORT int dn_error(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The reason recorded by the last failing call on this thread. */
const char *dn_last_error(void);

#endif /* DN_ERROR_H */
