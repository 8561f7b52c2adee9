/* Test plug-in "memhog": each socket() allocates and touches 512 MiB without checking malloc's
 * result, as a careless plug-in would: under a lower address-space limit malloc returns NULL and
 * the plug-in dies of SIGSEGV. Used by tests/faults.rs (only ever with a limit). */
#include <stdlib.h>
#include <ioth.h>

#define HOG ((size_t) 512 << 20)

static int stackdata;

void *ioth_memhog_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv; (void) f;
	return &stackdata;
}

int ioth_memhog_socket(int domain, int type, int protocol) {
	volatile char *p = malloc(HOG);
	for (size_t i = 0; i < HOG; i += 4096)
		p[i] = 1; /* touch every page; SIGSEGV when p is NULL */
	return socket(domain, type, protocol);
}
