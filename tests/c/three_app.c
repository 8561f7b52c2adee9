/* Both plug-in ABIs side by side in one application: ioth_three (the original's three-argument
 * newstack, installed in $HOME/.ioth as ioth_three-r.so beside a decoy ioth_three.so) and
 * ioth_foo (the older two-argument form), with "NAME,OPTIONS" stack names; argv[1] is a
 * scratch directory. Prints "ok" when every check passed. */
#include <fcntl.h>
#include <ioth.h>
#include "check.h"

/* the options file written by ioth_three's newstack */
static void expect_options(const char *path, const char *want) {
	char got[256] = "";
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	ssize_t n = read(fd, got, sizeof got - 1);
	close(fd);
	CHECK(n >= 0);
	got[n] = 0;
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "options: got \"%s\", expected \"%s\"\n", got, want);
		exit(1);
	}
	unlink(path);
}

/* a UDP datagram to itself on a socket of stack s */
static void udp_self(struct ioth *s) {
	int u = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(u >= 0);
	struct sockaddr_in a = loopback(0);
	CHECK(ioth_bind(u, (SA *) &a, sizeof a) == 0);
	socklen_t al = sizeof a;
	CHECK(ioth_getsockname(u, (SA *) &a, &al) == 0);
	CHECK(ioth_sendto(u, "x3", 2, 0, (SA *) &a, al) == 2);
	char buf[4];
	CHECK(ioth_recv(u, buf, sizeof buf, 0) == 2 && memcmp(buf, "x3", 2) == 0);
	CHECK(ioth_close(u) == 0);
}

int main(int argc, char *argv[]) {
	CHECK(argc == 2);
	char opts[512], log[512];
	snprintf(opts, sizeof opts, "%s/options", argv[1]);
	snprintf(log, sizeof log, "%s/foo.log", argv[1]);

	/* options verbatim, everything after the first comma */
	struct ioth *t = ioth_newstack("three,eth,ip=10.0.0.1/24,x=a,b", opts);
	CHECK(t != NULL);
	expect_options(opts, "eth,ip=10.0.0.1/24,x=a,b");
	udp_self(t);
	/* no options: "" (ioth_three-r.so was chosen, the decoy ioth_three.so refuses) */
	struct ioth *t2 = ioth_newstackl("three", opts, (char *) NULL);
	CHECK(t2 != NULL);
	expect_options(opts, "");
	const char *vnlv[] = {opts, NULL};
	struct ioth *t3 = ioth_newstackv("three,", vnlv);
	CHECK(t3 != NULL);
	expect_options(opts, "");

	/* the two-argument plug-in in the same process, beside them */
	ioth_set_license("SPDX-License-Identifier: GPL-2.0-or-later");
	struct ioth *f = ioth_newstack("foo", log);
	CHECK(f != NULL);
	udp_self(f);
	udp_self(t);
	/* ... but it cannot take options: it would take them for its struct ioth_functions */
	CHECK_NULL_ERRNO(ioth_newstack("foo,x", log), EINVAL);

	/* our own plug-ins: no options */
	CHECK_NULL_ERRNO(ioth_newstack("kernel,x", NULL), EINVAL);
	struct ioth *k = ioth_newstack("kernel,", NULL);
	CHECK(k != NULL);
	udp_self(k);

	CHECK(ioth_delstack(k) == 0);
	CHECK(ioth_delstack(f) == 0);
	CHECK(ioth_delstack(t3) == 0);
	CHECK(ioth_delstack(t2) == 0);
	CHECK(ioth_delstack(t) == 0);
	printf("ok\n");
	return 0;
}
