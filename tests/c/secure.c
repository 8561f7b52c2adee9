/* Creates a kernel stack and a socket on it; prints "stack ok" or the errno. Run setuid-root
 * as another user by tests/harden.rs, with IOTH_HOST and IOTH_PLUGIN_PATH set by the caller,
 * which the library must ignore (AT_SECURE). */
#include <ioth.h>
#include "check.h"

int main(void) {
	struct ioth *s = ioth_newstack("kernel", NULL);
	if (s == NULL) {
		printf("stack failed %s\n", strerror(errno));
		return 0;
	}
	int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	CHECK(ioth_close(fd) == 0);
	CHECK(ioth_delstack(s) == 0);
	printf("stack ok\n");
	return 0;
}
