/* The application of the "snoop" plug-in (tests/c/plugins/ioth_snoop.c): creates a snoop stack
 * whose plug-in tries to reach into this process, then checks that its memory, signals and the
 * plug-in's socket are as they should be. argv: log path, file the plug-in tries to create,
 * program it tries to exec. Prints "secret N", "sigusr1 N", "socket ok". Used by tests/harden.rs. */
#include <ioth.h>
#include <signal.h>
#include <unistd.h>
#include "check.h"

static volatile int secret = 42;
static volatile sig_atomic_t usr1;

static void on_usr1(int s) { (void) s; usr1++; }

int main(int argc, char **argv) {
	CHECK(argc == 4);
	signal(SIGUSR1, on_usr1);
	char log[600], poke[64], out[600], exe[600];
	snprintf(log, sizeof log, "log=%s", argv[1]);
	snprintf(poke, sizeof poke, "poke=%lx", (unsigned long) &secret);
	snprintf(out, sizeof out, "out=%s", argv[2]);
	snprintf(exe, sizeof exe, "exec=%s", argv[3]);
	const char *vnlv[] = {log, poke, out, exe, NULL};
	struct ioth *s = ioth_newstackv("snoop", vnlv);
	CHECK(s != NULL);
	int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	/* The plug-in's socket works: a datagram to itself over loopback. */
	struct sockaddr_in a = loopback(0);
	socklen_t len = sizeof a;
	CHECK(ioth_bind(fd, (struct sockaddr *) &a, sizeof a) == 0);
	CHECK(ioth_getsockname(fd, (struct sockaddr *) &a, &len) == 0);
	CHECK(ioth_sendto(fd, "ping", 4, 0, (struct sockaddr *) &a, len) == 4);
	char buf[8];
	CHECK(ioth_recv(fd, buf, sizeof buf, 0) == 4 && memcmp(buf, "ping", 4) == 0);
	printf("secret %d\nsigusr1 %d\nsocket ok\n", secret, (int) usr1);
	CHECK(ioth_close(fd) == 0);
	CHECK(ioth_delstack(s) == 0);
	return 0;
}
