/* Test plug-in "hang": its socket() never returns. Before it blocks it creates the file
 * "hang-<pid>" in the directory the plug-in was loaded from, so that a test knows the host is
 * inside the call. Used by tests/faults.rs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <ioth.h>

static int stackdata;

void *ioth_hang_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv; (void) f;
	return &stackdata;
}

int ioth_hang_socket(int domain, int type, int protocol) {
	(void) domain; (void) type; (void) protocol;
	Dl_info info;
	if (dladdr((void *) ioth_hang_socket, &info) && info.dli_fname) {
		char path[4096];
		const char *slash = strrchr(info.dli_fname, '/');
		int dirlen = slash ? (int) (slash - info.dli_fname) : 1;
		snprintf(path, sizeof path, "%.*s/hang-%d", dirlen, slash ? info.dli_fname : ".",
				(int) getpid());
		int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	for (;;)
		pause();
}

/* It creates its marker file in its own directory after newstack (docs/security.md). */
const char *ioth_hang_sandbox = "write=@plugin";
