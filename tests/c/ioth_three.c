/* A plug-in in the form of the original libioth's own modules and of third-party ones: the
 * three-argument newstack, void *ioth_three_newstack(const char *vnlv[], const char *options,
 * struct ioth_functions *f). Kernel sockets (the C library's functions) but its own socket,
 * which checks that getstackdata returns this stack.
 *
 * newstack writes the options it received, verbatim, to the file named by its first VNL, so
 * that the application can compare them with the stack name it gave.
 * Built with -DIOTH_THREE_DECOY it refuses every stack (ELIBBAD): installed as ioth_three.so
 * beside the real ioth_three-r.so, it shows which file was loaded. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <ioth.h>
#include "libc_functions.h"

const char *ioth_three_license = "SPDX-License-Identifier: LGPL-2.1-or-later";

struct three {
	unsigned int magic;
	char options[128];
};

static struct three the_stack;
static void *(*getstackdata)(void);

static int three_socket(int domain, int type, int protocol) {
	struct three *t = getstackdata ? getstackdata() : NULL;
	if (t != &the_stack || t->magic != 0x3e3e3e3e)
		return errno = EINVAL, -1;
	return socket(domain, type, protocol);
}

#ifdef IOTH_THREE_DECOY
void *ioth_three_newstack(const char *vnlv[], const char *options, struct ioth_functions *f) {
	(void) vnlv; (void) options; (void) f; (void) three_socket;
	return errno = ELIBBAD, NULL;
}
#else
void *ioth_three_newstack(const char *vnlv[], const char *options, struct ioth_functions *f) {
	if (vnlv[0] != NULL) {
		int fd = open(vnlv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return NULL;
		ssize_t n = write(fd, options, strlen(options));
		close(fd);
		if (n != (ssize_t) strlen(options))
			return errno = EIO, NULL;
	}
	getstackdata = f->getstackdata;
	snprintf(the_stack.options, sizeof the_stack.options, "%s", options);
	the_stack.magic = 0x3e3e3e3e;
	f->socket = three_socket;
	set_libc_functions(f);
	return &the_stack;
}
#endif
