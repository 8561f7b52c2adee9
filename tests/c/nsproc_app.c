/* Plug-ins in the two styles of the original's own modules, in a sandboxed host, run in a
 * private network namespace (unshare -n, where "lo" is down):
 * - ioth_nsproc (like the original's vdestack: a helper process in its own user and network
 *   namespace creates the sockets): configured through netlink on the stack — lo up, an
 *   address — and used (TCP over that address), while the application's namespace has neither;
 *   ioth_delstack reaps the helper (a helper that did not end would hang it);
 * - ioth_three (like the original's kernel module: the C library's socket in the host's own
 *   namespace, no sandbox declaration): its sockets work, and so does configuring the host's
 *   namespace (which is this one): a plug-in without a declaration keeps CAP_NET_ADMIN and
 *   CAP_NET_RAW (docs/security.md).
 * Prints "nsproc_pid=N" (its host) and "ok". */
#include <ifaddrs.h>
#include <ioth.h>
#include <unistd.h>
#include "check.h"

static struct sockaddr_in addr_of(const char *ip, uint16_t port) {
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
	return a;
}

/* whether the list has the IPv4 address ip */
static int has_addr(struct ifaddrs *ifa, const uint8_t ip[4]) {
	for (struct ifaddrs *p = ifa; p != NULL; p = p->ifa_next)
		if (p->ifa_addr != NULL && p->ifa_addr->sa_family == AF_INET &&
				memcmp(&((struct sockaddr_in *) p->ifa_addr)->sin_addr, ip, 4) == 0)
			return 1;
	return 0;
}

/* TCP from ip to itself on stack s: a listener, a connection, a few bytes each way */
static void tcp_self(struct ioth *s, const char *ip) {
	int l = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
	CHECK(l >= 0);
	struct sockaddr_in a = addr_of(ip, 0);
	CHECK(ioth_bind(l, (SA *) &a, sizeof a) == 0);
	CHECK(ioth_listen(l, 1) == 0);
	socklen_t al = sizeof a;
	CHECK(ioth_getsockname(l, (SA *) &a, &al) == 0);
	int c = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
	CHECK(c >= 0);
	CHECK(ioth_connect(c, (SA *) &a, sizeof a) == 0);
	int x = ioth_accept(l, NULL, NULL);
	CHECK(x >= 0);
	char buf[8];
	CHECK(ioth_write(c, "ping", 4) == 4);
	CHECK(ioth_read(x, buf, sizeof buf) == 4 && memcmp(buf, "ping", 4) == 0);
	CHECK(ioth_write(x, "pong", 4) == 4);
	CHECK(ioth_read(c, buf, sizeof buf) == 4 && memcmp(buf, "pong", 4) == 0);
	CHECK(ioth_close(x) == 0);
	CHECK(ioth_close(c) == 0);
	CHECK(ioth_close(l) == 0);
}

int main(void) {
	struct ioth *n = ioth_newstack("nsproc", NULL);
	CHECK(n != NULL);
	printf("nsproc_pid=%d\n", (int) ioth_stack_pid(n));
	int lo = ioth_if_nametoindex(n, "lo");
	CHECK(lo > 0);
	CHECK(ioth_linksetupdown(n, lo, 1) == 0);
	uint8_t ip[] = {10, 0, 0, 1};
	CHECK(ioth_ipaddr_add(n, AF_INET, ip, 24, lo) == 0);
	tcp_self(n, "127.0.0.1");
	tcp_self(n, "10.0.0.1");
	/* the stack's namespace, not the application's: only the stack has the address */
	struct ifaddrs *ifa;
	CHECK(ioth_getifaddrs(n, &ifa) == 0);
	CHECK(has_addr(ifa, ip));
	ioth_freeifaddrs(ifa);
	CHECK(getifaddrs(&ifa) == 0);
	CHECK(!has_addr(ifa, ip));
	freeifaddrs(ifa);

	struct ioth *t = ioth_newstack("three", NULL);
	CHECK(t != NULL);
	int s = ioth_msocket(t, AF_INET, SOCK_DGRAM, 0);
	CHECK(s >= 0);
	CHECK(ioth_close(s) == 0);
	CHECK(ioth_linksetupdown(t, 1, 1) == 0);
	CHECK(ioth_ipaddr_add(t, AF_INET, ip, 24, 1) == 0);
	CHECK(getifaddrs(&ifa) == 0);
	CHECK(has_addr(ifa, ip)); /* the host's namespace is this one */
	freeifaddrs(ifa);

	CHECK(ioth_delstack(t) == 0);
	CHECK(ioth_delstack(n) == 0);
	printf("ok\n");
	return 0;
}
