/* lwIP architecture glue for Linux/x86-64 and aarch64 userspace. */
#ifndef DN_ARCH_CC_H
#define DN_ARCH_CC_H

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>

#define LWIP_NO_STDINT_H        0
#define LWIP_NO_INTTYPES_H      0
#define LWIP_NO_LIMITS_H        0
#define LWIP_NO_CTYPE_H         0

/* DPDK's headers bring glibc's byte-order functions; lwIP must not define
 * its own macros over them. */
#define LWIP_DONT_PROVIDE_BYTEORDER_FUNCTIONS 1
#define lwip_htons(x) ((u16_t)__builtin_bswap16((u16_t)(x)))
#define lwip_htonl(x) ((u32_t)__builtin_bswap32((u32_t)(x)))

#define LWIP_RAND() ((u32_t)random())

#define LWIP_PLATFORM_DIAG(x) do { printf x; } while (0)
/* An lwIP assertion means corrupted stack state: stop the process loudly
 * rather than let it send garbage. */
#define LWIP_PLATFORM_ASSERT(x) do { \
	fprintf(stderr, "lwIP assertion \"%s\" failed at %s:%d\n", \
		x, __FILE__, __LINE__); \
	fflush(stderr); \
	abort(); \
} while (0)

#define LWIP_ERRNO_STDINCLUDE   1

#endif /* DN_ARCH_CC_H */
