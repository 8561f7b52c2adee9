/* The C ABI on proxied fds (docs/proxied.md): a smoltcp stack (proxied, 10.0.0.1, fd00::1) and a
 * vdestack stack (native, 10.0.0.2, fd00::2) on the switch named by argv[1], both configured with
 * the ioth netlink calls. TCP echo both ways (IPv4 and IPv6) with plain read/write and poll,
 * half-close; UDP with sendto/recvfrom/sendmsg/recvmsg and connected send/recv; a non-blocking
 * connect and accept driven by epoll; dup; the errnos of bad arguments. Needs root (vdestack).
 * Prints "ok" at the end; a failed CHECK prints where and exits 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <ioth.h>
#include "check.h"


#define WAIT_MS 20000

static struct sockaddr_in sin4(const char *ip, uint16_t port) {
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
	return a;
}

static struct sockaddr_in6 sin6(const char *ip, uint16_t port) {
	struct sockaddr_in6 a;
	memset(&a, 0, sizeof a);
	a.sin6_family = AF_INET6;
	a.sin6_port = htons(port);
	CHECK(inet_pton(AF_INET6, ip, &a.sin6_addr) == 1);
	return a;
}

static int readable(int fd, int ms) {
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1 && (p.revents & (POLLIN | POLLHUP));
}

/* reads exactly n bytes with plain read(2), waiting with poll(2) */
static void read_all(int fd, char *buf, size_t n) {
	size_t got = 0;
	while (got < n) {
		CHECK(readable(fd, WAIT_MS));
		ssize_t r = read(fd, buf + got, n - got);
		CHECK(r > 0);
		got += (size_t) r;
	}
}

/* waits, as a program does, until the IPv6 address a6 of stack s is usable: binding to it fails
 * with EADDRNOTAVAIL while it is in duplicate address detection (vdestack; smoltcp does none);
 * retried every 20 ms, for 10 s at most */
static void wait_usable(struct ioth *s, const struct in6_addr *a6) {
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = *a6 };
	for (int i = 0; ; i++) {
		int fd = ioth_msocket(s, AF_INET6, SOCK_DGRAM, 0);
		CHECK(fd >= 0);
		int r = ioth_bind(fd, (SA *) &a, sizeof a);
		int e = errno;
		CHECK(ioth_close(fd) == 0);
		if (r == 0)
			return;
		errno = e;
		CHECK(e == EADDRNOTAVAIL && i < 500);
		poll(NULL, 0, 20);
	}
}

static struct ioth *configure(const char *name, const char *vnl, int n) {
	struct ioth *s = ioth_newstack(name, vnl);
	CHECK(s != NULL);
	int idx = ioth_if_nametoindex(s, "vde0");
	CHECK(idx > 1);
	CHECK(ioth_linksetupdown(s, idx, 1) == 0);
	uint8_t a4[4] = {10, 0, 0, n};
	struct in6_addr a6;
	char v6[32];
	snprintf(v6, sizeof v6, "fd00::%d", n);
	CHECK(inet_pton(AF_INET6, v6, &a6) == 1);
	CHECK(ioth_ipaddr_add(s, AF_INET, a4, 24, idx) == 0);
	CHECK(ioth_ipaddr_add(s, AF_INET6, &a6, 64, idx) == 0);
	wait_usable(s, &a6);
	return s;
}

/* a connection from stack c to the listening fd lfd (of the other stack) at a */
static void connect_accept(struct ioth *c, int lfd, const SA *a, socklen_t al, int *cfd, int *afd) {
	*cfd = ioth_msocket(c, a->sa_family, SOCK_STREAM, 0);
	CHECK(*cfd >= 0);
	/* blocking connect: for a proxied fd the library waits for POLLOUT, then asks SO_ERROR */
	CHECK(ioth_connect(*cfd, a, al) == 0);
	CHECK(readable(lfd, WAIT_MS));
	struct sockaddr_storage peer;
	socklen_t pl = sizeof peer;
	*afd = ioth_accept(lfd, (SA *) &peer, &pl);
	CHECK(*afd >= 0);
	CHECK(pl == al && peer.ss_family == a->sa_family);
	/* accept(2) makes fds without close-on-exec */
	CHECK((fcntl(*afd, F_GETFD) & FD_CLOEXEC) == 0);
}

static void tcp_echo(struct ioth *srv, struct ioth *cli, const SA *a, socklen_t al) {
	char buf[256];
	int one = 1;
	int lfd = ioth_msocket(srv, a->sa_family, SOCK_STREAM, 0);
	CHECK(lfd >= 0);
	CHECK(ioth_setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
	CHECK(ioth_bind(lfd, a, al) == 0);
	CHECK(ioth_listen(lfd, 8) == 0);
	struct sockaddr_storage name;
	socklen_t nl = sizeof name;
	CHECK(ioth_getsockname(lfd, (SA *) &name, &nl) == 0);
	CHECK(nl == al && memcmp(&name, a, al) == 0);
	/* a listener is readable exactly when a connection is pending */
	CHECK(!readable(lfd, 0));
	int cfd, afd;
	connect_accept(cli, lfd, a, al, &cfd, &afd);
	CHECK(!readable(lfd, 0));
	nl = sizeof name;
	CHECK(ioth_getpeername(cfd, (SA *) &name, &nl) == 0);
	CHECK(nl == al && memcmp(&name, a, al) == 0);
	for (int i = 0; i < 20; i++) {
		int n = snprintf(buf, sizeof buf, "line %d through two stacks", i);
		CHECK(write(cfd, buf, n) == n);
		char back[256];
		read_all(afd, back, n);
		CHECK(memcmp(back, buf, n) == 0);
		CHECK(ioth_send(afd, back, n, 0) == n);
		read_all(cfd, back, n);
		CHECK(memcmp(back, buf, n) == 0);
	}
	/* half-close: EOF one way, data still flows the other */
	CHECK(ioth_shutdown(cfd, SHUT_WR) == 0);
	CHECK(readable(afd, WAIT_MS));
	CHECK(ioth_read(afd, buf, sizeof buf) == 0);
	CHECK(ioth_write(afd, "late", 4) == 4);
	read_all(cfd, buf, 4);
	CHECK(memcmp(buf, "late", 4) == 0);
	CHECK(ioth_close(afd) == 0);
	CHECK(readable(cfd, WAIT_MS));
	CHECK(ioth_read(cfd, buf, sizeof buf) == 0);
	CHECK(ioth_close(cfd) == 0);
	CHECK(ioth_close(lfd) == 0);
}

static void udp(struct ioth *smol, struct ioth *vde) {
	char buf[256];
	int u = ioth_msocket(smol, AF_INET, SOCK_DGRAM, 0);
	int v = ioth_msocket(vde, AF_INET, SOCK_DGRAM, 0);
	CHECK(u >= 0 && v >= 0);
	struct sockaddr_in ua = sin4("10.0.0.1", 7000), va = sin4("10.0.0.2", 7001);
	CHECK(ioth_bind(u, (SA *) &ua, sizeof ua) == 0);
	CHECK(ioth_bind(v, (SA *) &va, sizeof va) == 0);
	/* unconnected: no destination, no send */
	CHECK_ERRNO(ioth_send(u, "x", 1, 0), EDESTADDRREQ);
	CHECK_ERRNO(ioth_write(u, "x", 1), EDESTADDRREQ);
	CHECK_ERRNO(ioth_sendto(u, "x", 1, 0, NULL, 0), EDESTADDRREQ);
	/* vdestack → smoltcp with recvfrom; retried while neighbours are found (bounded) */
	int got = 0;
	for (int i = 0; i < 10 && !got; i++) {
		CHECK(ioth_sendto(v, "ping", 4, 0, (SA *) &ua, sizeof ua) == 4);
		got = readable(u, 1000);
	}
	CHECK(got);
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	CHECK(ioth_recvfrom(u, buf, sizeof buf, 0, (SA *) &from, &fl) == 4);
	CHECK(memcmp(buf, "ping", 4) == 0);
	CHECK(fl == sizeof from && memcmp(&from, &va, sizeof va) == 0);
	/* smoltcp → vdestack with sendmsg, the address in msg_name */
	struct iovec iv[2] = { { "po", 2 }, { "ng", 2 } };
	struct msghdr m = { .msg_name = &from, .msg_namelen = fl, .msg_iov = iv, .msg_iovlen = 2 };
	CHECK(ioth_sendmsg(u, &m, 0) == 4);
	CHECK(readable(v, WAIT_MS));
	fl = sizeof from;
	CHECK(ioth_recvfrom(v, buf, sizeof buf, 0, (SA *) &from, &fl) == 4);
	CHECK(memcmp(buf, "pong", 4) == 0 && memcmp(&from, &ua, sizeof ua) == 0);
	/* recvmsg with a short buffer: MSG_TRUNC, the source in msg_name */
	CHECK(ioth_sendto(v, "datagram", 8, 0, (SA *) &ua, sizeof ua) == 8);
	CHECK(readable(u, WAIT_MS));
	/* FIONREAD counts the payload, not the address header */
	int avail = -1;
	CHECK(ioth_ioctl(u, FIONREAD, &avail) == 0);
	CHECK(avail == 8);
	struct iovec in = { buf, 3 };
	struct sockaddr_in name;
	struct msghdr rm = { .msg_name = &name, .msg_namelen = sizeof name, .msg_iov = &in, .msg_iovlen = 1 };
	CHECK(ioth_recvmsg(u, &rm, 0) == 3);
	CHECK(memcmp(buf, "dat", 3) == 0);
	CHECK(rm.msg_flags & MSG_TRUNC);
	CHECK(rm.msg_namelen == sizeof name && memcmp(&name, &va, sizeof va) == 0);
	/* read strips the header too */
	CHECK(ioth_sendto(v, "raw", 3, 0, (SA *) &ua, sizeof ua) == 3);
	CHECK(readable(u, WAIT_MS));
	CHECK(ioth_read(u, buf, sizeof buf) == 3 && memcmp(buf, "raw", 3) == 0);
	/* connected: plain send/recv, recvfrom reports the peer */
	CHECK(ioth_connect(u, (SA *) &va, sizeof va) == 0);
	CHECK(send(u, "conn", 4, 0) == 4);
	CHECK(readable(v, WAIT_MS));
	CHECK(ioth_recv(v, buf, sizeof buf, 0) == 4 && memcmp(buf, "conn", 4) == 0);
	CHECK(ioth_sendto(v, "back", 4, 0, (SA *) &ua, sizeof ua) == 4);
	CHECK(readable(u, WAIT_MS));
	fl = sizeof from;
	CHECK(ioth_recvfrom(u, buf, sizeof buf, 0, (SA *) &from, &fl) == 4);
	CHECK(memcmp(buf, "back", 4) == 0 && memcmp(&from, &va, sizeof va) == 0);
	CHECK(ioth_close(u) == 0 && ioth_close(v) == 0);
}

/* non-blocking connect and accept, both ways, driven by one epoll loop */
static void epoll_loop(struct ioth *smol, struct ioth *vde) {
	struct sockaddr_in sa = sin4("10.0.0.1", 5100), va = sin4("10.0.0.2", 5101);
	int one = 1;
	int sl = ioth_msocket(smol, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int vl = ioth_msocket(vde, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK(sl >= 0 && vl >= 0);
	CHECK(fcntl(sl, F_GETFL) & O_NONBLOCK);
	CHECK(ioth_setsockopt(sl, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
	CHECK(ioth_bind(sl, (SA *) &sa, sizeof sa) == 0 && ioth_listen(sl, 16) == 0);
	CHECK(ioth_bind(vl, (SA *) &va, sizeof va) == 0 && ioth_listen(vl, 16) == 0);
	CHECK_ERRNO(ioth_accept(sl, NULL, NULL), EAGAIN);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = sl };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sl, &ev) == 0);
	ev.data.fd = vl;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, vl, &ev) == 0);
	int conns[20], nconn = 0, accepted[20], nacc = 0, done = 0;
	for (int i = 0; i < 10; i++) {
		int c1 = ioth_msocket(smol, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		int c2 = ioth_msocket(vde, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		CHECK(c1 >= 0 && c2 >= 0);
		CHECK_ERRNO(ioth_connect(c1, (SA *) &va, sizeof va), EINPROGRESS);
		CHECK_ERRNO(ioth_connect(c2, (SA *) &sa, sizeof sa), EINPROGRESS);
		conns[nconn++] = c1;
		conns[nconn++] = c2;
		ev.events = EPOLLOUT;
		ev.data.fd = c1;
		CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c1, &ev) == 0);
		ev.data.fd = c2;
		CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c2, &ev) == 0);
	}
	for (int round = 0; round < 200 && (done < 20 || nacc < 20); round++) {
		struct epoll_event evs[16];
		int n = epoll_wait(ep, evs, 16, 100);
		CHECK(n >= 0);
		for (int k = 0; k < n; k++) {
			int fd = evs[k].data.fd;
			if (fd == sl || fd == vl) {
				for (;;) {
					int a = ioth_accept(fd, NULL, NULL);
					if (a < 0) {
						CHECK(errno == EAGAIN);
						break;
					}
					CHECK(nacc < 20);
					accepted[nacc++] = a;
				}
			} else {
				int err = -1;
				socklen_t el = sizeof err;
				CHECK(ioth_getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
				CHECK(err == 0 && el == sizeof err);
				CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0);
				done++;
			}
		}
	}
	CHECK(done == 20 && nacc == 20);
	for (int i = 0; i < 20; i++)
		CHECK(ioth_close(conns[i]) == 0 && ioth_close(accepted[i]) == 0);
	CHECK(ioth_close(sl) == 0 && ioth_close(vl) == 0);
	close(ep);
}

/* errnos of bad arguments and closed fds; dup shares the socket */
static void errnos(struct ioth *smol) {
	char buf[8];
	int s = ioth_msocket(smol, AF_INET, SOCK_STREAM, 0);
	CHECK(s >= 0);
	struct sockaddr_in a = sin4("10.0.0.1", 5200);
	CHECK_ERRNO(ioth_bind(s, NULL, sizeof a), EFAULT);
	CHECK_ERRNO(ioth_bind(s, (SA *) &a, 1), EINVAL);
	CHECK_ERRNO(ioth_bind(s, (SA *) &a, 4096), EINVAL);
	CHECK_ERRNO(ioth_getpeername(s, (SA *) &a, NULL), EFAULT);
	socklen_t al = sizeof a;
	CHECK_ERRNO(ioth_getpeername(s, (SA *) &a, &al), ENOTCONN);
	CHECK_ERRNO(ioth_shutdown(s, SHUT_WR), ENOTCONN);
	CHECK_ERRNO(ioth_accept(s, NULL, NULL), EINVAL);
	CHECK_ERRNO(ioth_setsockopt(s, 4242, 1, buf, sizeof buf), ENOPROTOOPT);
	int t = 0;
	socklen_t tl = sizeof t;
	CHECK(ioth_getsockopt(s, SOL_SOCKET, SO_TYPE, &t, &tl) == 0);
	CHECK(t == SOCK_STREAM && tl == sizeof t);
	/* a dup is the same socket: closing one leaves the other working */
	int d = ioth_fcntl(s, F_DUPFD_CLOEXEC, 0);
	CHECK(d >= 0);
	CHECK(ioth_close(s) == 0);
	tl = sizeof t;
	CHECK(ioth_getsockopt(d, SOL_SOCKET, SO_TYPE, &t, &tl) == 0);
	CHECK(ioth_close(d) == 0);
	CHECK_ERRNO(ioth_close(d), EBADF);
	CHECK_ERRNO(ioth_listen(d, 1), EBADF);
	CHECK_ERRNO(ioth_read(d, buf, 1), EBADF);
}

int main(int argc, char *argv[]) {
	CHECK(argc == 2);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct ioth *smol = configure("smoltcp", argv[1], 1);
	struct ioth *vde = configure("vdestack", argv[1], 2);
	printf("smoltcp host_pid=%d vdestack host_pid=%d\n", (int) ioth_stack_pid(smol),
			(int) ioth_stack_pid(vde));
	struct sockaddr_in s4 = sin4("10.0.0.1", 5000), v4 = sin4("10.0.0.2", 5001);
	struct sockaddr_in6 s6 = sin6("fd00::1", 5002), v6 = sin6("fd00::2", 5003);
	tcp_echo(smol, vde, (SA *) &s4, sizeof s4);
	tcp_echo(vde, smol, (SA *) &v4, sizeof v4);
	tcp_echo(smol, vde, (SA *) &s6, sizeof s6);
	tcp_echo(vde, smol, (SA *) &v6, sizeof v6);
	printf("tcp ok\n");
	udp(smol, vde);
	printf("udp ok\n");
	epoll_loop(smol, vde);
	printf("epoll ok\n");
	errnos(smol);
	/* every socket closed: both stacks can go */
	CHECK(ioth_delstack(smol) == 0);
	CHECK(ioth_delstack(vde) == 0);
	printf("ok\n");
	return 0;
}
