/*
 * ioth_newstackl: the one C-variadic function of libioth.so (stable Rust cannot define one).
 * Collects its VNL arguments, up to the terminating NULL, into a NULL-terminated vector and
 * hands it to ioth_newstackv (Rust, client/src/capi/mod.rs). Compiled into libioth.so by
 * client/capi/build.rs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <ioth.h>

struct ioth *ioth_newstackl(const char *stack, const char *vnl, ...)
{
	va_list ap;
	size_t n = 0;
	const char **vnlv;
	struct ioth *iothstack;
	int saved_errno;

	if (vnl != NULL) {
		n = 1;
		va_start(ap, vnl);
		while (va_arg(ap, const char *) != NULL)
			n++;
		va_end(ap);
	}
	vnlv = calloc(n + 1, sizeof(*vnlv));
	if (vnlv == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	if (vnl != NULL) {
		size_t i = 1;
		vnlv[0] = vnl;
		va_start(ap, vnl);
		for (; i < n; i++)
			vnlv[i] = va_arg(ap, const char *);
		va_end(ap);
	}
	vnlv[n] = NULL;
	iothstack = ioth_newstackv(stack, vnlv);
	saved_errno = errno;
	free(vnlv);
	errno = saved_errno;
	return iothstack;
}
