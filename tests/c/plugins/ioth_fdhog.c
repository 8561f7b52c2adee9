/* Test plug-in "fdhog": each socket() first opens (and keeps) up to 4096 more files; when the
 * host's open-files limit stops it, socket() fails with the errno it got (EMFILE).
 * Used by tests/faults.rs. */
#include <errno.h>
#include <fcntl.h>
#include <ioth.h>

static int stackdata;

void *ioth_fdhog_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv; (void) f;
	return &stackdata;
}

int ioth_fdhog_socket(int domain, int type, int protocol) {
	for (int i = 0; i < 4096; i++) {
		if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0)
			return -1; /* errno from open: EMFILE under a low RLIMIT_NOFILE */
	}
	return socket(domain, type, protocol);
}

/* It opens /dev/null after newstack (docs/security.md). */
const char *ioth_fdhog_sandbox = "read=/dev/null";
