#include <stdarg.h>
#include <stdio.h>

#include "dn_error.h"

static __thread char dn_errmsg[DN_ERRMSG_LEN];

int
dn_error(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dn_errmsg, sizeof(dn_errmsg), fmt, ap);
	va_end(ap);
	return code;
}

const char *
dn_last_error(void)
{
	return dn_errmsg;
}
