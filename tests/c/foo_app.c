/* Uses the C plug-in ioth_foo (from $HOME/.ioth) with argv[1] as its log file: its licence is
 * refused until the application declares a compatible one; then it serves sockets through its
 * implicit ioth_foo_socket. Leaves a foo stack open at exit and prints "leftover_pid=N".
 * Prints "ok" when every check passed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ioth.h>
#include "check.h"

int main(int argc, char *argv[])
{
	CHECK(argc == 2);
	const char *log = argv[1];

	/* GPL-2.0-or-later plug-in, no application licence: refused before it runs */
	CHECK_NULL_ERRNO(ioth_newstack("foo", log), EPERM);
	CHECK(access(log, F_OK) == -1);
	ioth_set_license("SPDX-License-Identifier: MIT");
	CHECK_NULL_ERRNO(ioth_newstack("foo", log), EPERM);
	CHECK(access(log, F_OK) == -1);

	ioth_set_license("SPDX-License-Identifier: GPL-2.0-or-later");
	struct ioth *s = ioth_newstackl("foo", log, "second", "third", (char *) NULL);
	CHECK(s != NULL);
	CHECK(ioth_stack_pid(s) > 0);
	int u = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(u >= 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(ioth_bind(u, (struct sockaddr *) &a, sizeof a) == 0);
	socklen_t al = sizeof a;
	CHECK(ioth_getsockname(u, (struct sockaddr *) &a, &al) == 0 && a.sin_port != 0);
	CHECK(ioth_sendto(u, "self", 4, 0, (struct sockaddr *) &a, al) == 4);
	char buf[8];
	CHECK(ioth_recv(u, buf, sizeof buf, 0) == 4 && memcmp(buf, "self", 4) == 0);
	int t = ioth_msocket(s, AF_INET6, SOCK_STREAM, 0);
	CHECK(t >= 0 || errno == EAFNOSUPPORT);
	if (t >= 0)
		CHECK(ioth_close(t) == 0);
	CHECK(ioth_close(u) == 0);
	CHECK(ioth_delstack(s) == 0);

	/* a plug-in without newstack */
	CHECK_NULL_ERRNO(ioth_newstack("nonew", NULL), ENOENT);

	/* a second foo stack, left open at exit */
	struct ioth *left = ioth_newstack("foo", log);
	CHECK(left != NULL);
	CHECK(ioth_msocket(left, AF_INET, SOCK_DGRAM, 0) >= 0);
	printf("leftover_pid=%d\n", (int) ioth_stack_pid(left));
	printf("ok\n");
	return 0;
}
