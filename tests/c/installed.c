/* Run from an installation (make install PREFIX=...), with no IOTH_* variable: creates a kernel
 * stack and reports where its pieces came from, as "libioth=PATH", "host=PATH" and, if the host
 * loaded one, "plugin=PATH" (none: the installed host has the kernel stack built in), then "ok". */
#include <arpa/inet.h>
#include <ioth.h>
#include "check.h"

/* prints "what=PATH" for the first file mapped in process pid (0: this one) whose path has key */
static void print_mapped(pid_t pid, const char *what, const char *key)
{
	char path[64], line[4096];
	if (pid == 0)
		snprintf(path, sizeof path, "/proc/self/maps");
	else
		snprintf(path, sizeof path, "/proc/%d/maps", (int) pid);
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	while (fgets(line, sizeof line, f) != NULL) {
		char *p = strchr(line, '/');
		if (p != NULL && strstr(p, key) != NULL) {
			p[strcspn(p, "\n")] = 0;
			printf("%s=%s\n", what, p);
			break;
		}
	}
	fclose(f);
}

int main(void)
{
	struct ioth *s = ioth_newstack("kernel", NULL);
	CHECK(s != NULL);
	pid_t pid = ioth_stack_pid(s);
	CHECK(pid > 0);
	print_mapped(0, "libioth", "/libioth.so");
	char path[64], exe[4096];
	snprintf(path, sizeof path, "/proc/%d/exe", (int) pid);
	ssize_t n = readlink(path, exe, sizeof exe - 1);
	CHECK(n > 0);
	exe[n] = 0;
	printf("host=%s\n", exe);
	print_mapped(pid, "plugin", "ioth_kernel.so");
	int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	CHECK(ioth_close(fd) == 0);
	CHECK(ioth_delstack(s) == 0);
	printf("ok\n");
	return 0;
}
