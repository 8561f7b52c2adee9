/* Run as an unprivileged user by tests/vdestack.rs: a vdestack stack without VNLs must come up
 * in a user namespace of its own (the host enters CLONE_NEWUSER|CLONE_NEWNET when it is not
 * privileged). Prints the user and network namespaces of this process and of the stack's host. */
#include <ioth.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void ns(const char *what, int pid, const char *kind) {
	char path[64], link[128] = "";
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, kind);
	else
		snprintf(path, sizeof(path), "/proc/self/ns/%s", kind);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	printf("%s %s %s\n", what, kind, n > 0 ? link : "?");
}

int main(void) {
	struct ioth *s = ioth_newstack("vdestack", NULL);
	if (s == NULL) {
		printf("newstack failed: %s\n", strerror(errno));
		return 1;
	}
	int fd = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
	int lo = ioth_if_nametoindex(s, "lo");
	pid_t pid = ioth_stack_pid(s);
	printf("socket %s lo %d\n", fd >= 0 ? "ok" : strerror(errno), lo);
	ns("app", 0, "user");
	ns("host", pid, "user");
	ns("app", 0, "net");
	ns("host", pid, "net");
	ioth_close(fd);
	return ioth_delstack(s) == 0 ? 0 : 2;
}
