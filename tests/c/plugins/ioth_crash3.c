/* Test plug-in "crash3": a kernel-socket stack that aborts on its third socket().
 * Used by tests/faults.rs. */
#include <stdlib.h>
#include <ioth.h>

static int stackdata;
static int calls;

void *ioth_crash3_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv; (void) f;
	return &stackdata;
}

int ioth_crash3_socket(int domain, int type, int protocol) {
	if (++calls == 3)
		abort(); /* SIGABRT */
	return socket(domain, type, protocol);
}
