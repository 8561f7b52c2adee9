/* Test plug-in "stray": each socket() first sends a stray datagram on the host's channel (fd 3),
 * so that the application reads it instead of the reply: a protocol error. Used by
 * tests/harden.rs. */
#include <ioth.h>
#include <sys/socket.h>

static int stackdata;

void *ioth_stray_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv; (void) f;
	return &stackdata;
}

int ioth_stray_socket(int domain, int type, int protocol) {
	(void) send(3, "xx", 2, MSG_NOSIGNAL);
	return socket(domain, type, protocol);
}
