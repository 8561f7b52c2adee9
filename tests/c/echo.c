/* TCP and UDP echo on 127.0.0.1 through ioth fds, with poll() on them, and every data call:
 * read/write, recv/send, recvfrom/sendto, readv/writev, recvmsg/sendmsg, plus the control calls.
 * Run on the stack named by argv[1] ("kernel": a host process; "" : the native stack).
 * Prints "host_pid=N" (0 for the native stack) and, at the end, "ok". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <ioth.h>
#include "check.h"

static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	CHECK(poll(&p, 1, 5000) == 1);
	CHECK(p.revents & POLLIN);
}

/* waits (bounded) until at least n bytes can be read from the stream socket fd */
static void wait_avail(int fd, int n)
{
	for (int i = 0; i < 500; i++) {
		int avail = 0;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		CHECK(poll(&p, 1, 10) >= 0);
		CHECK(ioth_ioctl(fd, FIONREAD, &avail) == 0);
		if (avail >= n)
			return;
	}
	CHECK(!"data arrived in time");
}

static void tcp_echo(struct ioth *s)
{
	char buf[64];
	int one = 1, v = 0;
	socklen_t vl = sizeof v;
	int lfd = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
	CHECK(lfd >= 0);
	CHECK(ioth_setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
	CHECK(ioth_getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &v, &vl) == 0);
	CHECK(v == 1 && vl == sizeof v);
	struct sockaddr_in a = loopback(0);
	CHECK(ioth_bind(lfd, (SA *) &a, sizeof a) == 0);
	CHECK(ioth_listen(lfd, 4) == 0);
	socklen_t al = sizeof a;
	CHECK(ioth_getsockname(lfd, (SA *) &a, &al) == 0);
	CHECK(al == sizeof a && a.sin_port != 0);

	/* nothing pending: the listening ioth fd is not readable */
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	CHECK(poll(&p, 1, 0) == 0);

	int cfd = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
	CHECK(cfd >= 0);
	CHECK(ioth_connect(cfd, (SA *) &a, sizeof a) == 0);
	wait_readable(lfd);
	struct sockaddr_in peer;
	socklen_t pl = sizeof peer;
	int afd = ioth_accept(lfd, (SA *) &peer, &pl);
	CHECK(afd >= 0);
	struct sockaddr_in cname, cpeer;
	socklen_t cl = sizeof cname, cpl = sizeof cpeer;
	CHECK(ioth_getsockname(cfd, (SA *) &cname, &cl) == 0);
	CHECK(ioth_getpeername(cfd, (SA *) &cpeer, &cpl) == 0);
	CHECK(peer.sin_port == cname.sin_port);
	CHECK(cpeer.sin_port == a.sin_port);
	CHECK(ioth_setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);

	/* send / recv / write / read */
	CHECK(ioth_send(cfd, "hello", 5, 0) == 5);
	wait_avail(afd, 5);
	CHECK(ioth_recv(afd, buf, sizeof buf, 0) == 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	CHECK(ioth_write(afd, buf, 5) == 5);
	wait_readable(cfd);
	wait_avail(cfd, 5);
	CHECK(ioth_read(cfd, buf, sizeof buf) == 5);
	CHECK(memcmp(buf, "hello", 5) == 0);

	/* writev / readv */
	struct iovec wv[3] = { { "ab", 2 }, { "cde", 3 }, { "f", 1 } };
	CHECK(ioth_writev(cfd, wv, 3) == 6);
	wait_avail(afd, 6);
	char r1[4], r2[8];
	struct iovec rv[2] = { { r1, sizeof r1 }, { r2, sizeof r2 } };
	CHECK(ioth_readv(afd, rv, 2) == 6);
	CHECK(memcmp(r1, "abcd", 4) == 0 && memcmp(r2, "ef", 2) == 0);

	/* sendmsg / recvmsg */
	struct iovec mv[2] = { { "xy", 2 }, { "z", 1 } };
	struct msghdr m = { .msg_iov = mv, .msg_iovlen = 2 };
	CHECK(ioth_sendmsg(afd, &m, 0) == 3);
	wait_avail(cfd, 3);
	struct iovec in = { buf, sizeof buf };
	struct msghdr rm = { .msg_iov = &in, .msg_iovlen = 1 };
	CHECK(ioth_recvmsg(cfd, &rm, 0) == 3);
	CHECK(memcmp(buf, "xyz", 3) == 0);

	/* fcntl: O_NONBLOCK is the fd's own */
	int fl = ioth_fcntl(cfd, F_GETFL, 0);
	CHECK(fl >= 0);
	CHECK(ioth_fcntl(cfd, F_SETFL, fl | O_NONBLOCK) == 0);
	CHECK(ioth_fcntl(cfd, F_GETFL, 0) & O_NONBLOCK);
	errno = 0;
	CHECK(ioth_recv(cfd, buf, sizeof buf, 0) == -1);
	CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
	/* a dup made by ioth_fcntl is an ioth fd of the same stack */
	int dfd = ioth_fcntl(cfd, F_DUPFD_CLOEXEC, 100);
	CHECK(dfd >= 100);
	CHECK(ioth_close(dfd) == 0);

	/* shutdown: the peer reads EOF */
	CHECK(ioth_shutdown(cfd, SHUT_WR) == 0);
	wait_readable(afd);
	CHECK(ioth_read(afd, buf, sizeof buf) == 0);

	CHECK(ioth_close(lfd) == 0);
	CHECK(ioth_close(cfd) == 0);
	/* the accepted socket is still open on the stack, and is an ioth fd */
	CHECK_ERRNO(ioth_delstack(s), EBUSY);
	CHECK(ioth_close(afd) == 0);
	CHECK_ERRNO(ioth_close(afd), EBADF);
}

static void udp_echo(struct ioth *s)
{
	char buf[64];
	int u1 = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	int u2 = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(u1 >= 0 && u2 >= 0);
	struct sockaddr_in a1 = loopback(0), a2 = loopback(0);
	socklen_t l1 = sizeof a1, l2 = sizeof a2;
	CHECK(ioth_bind(u1, (SA *) &a1, sizeof a1) == 0);
	CHECK(ioth_bind(u2, (SA *) &a2, sizeof a2) == 0);
	CHECK(ioth_getsockname(u1, (SA *) &a1, &l1) == 0);
	CHECK(ioth_getsockname(u2, (SA *) &a2, &l2) == 0);

	/* sendto / recvfrom, echoed back */
	CHECK(ioth_sendto(u2, "ping", 4, 0, (SA *) &a1, sizeof a1) == 4);
	wait_readable(u1);
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	CHECK(ioth_recvfrom(u1, buf, sizeof buf, 0, (SA *) &from, &fl) == 4);
	CHECK(memcmp(buf, "ping", 4) == 0);
	CHECK(fl == sizeof from && from.sin_port == a2.sin_port);
	CHECK(ioth_sendto(u1, buf, 4, 0, (SA *) &from, fl) == 4);
	wait_readable(u2);
	fl = sizeof from;
	CHECK(ioth_recvfrom(u2, buf, sizeof buf, 0, (SA *) &from, &fl) == 4);
	CHECK(memcmp(buf, "ping", 4) == 0 && from.sin_port == a1.sin_port);

	/* sendmsg / recvmsg with addresses; a short buffer reports MSG_TRUNC */
	struct iovec v[2] = { { "dg", 2 }, { "ram", 3 } };
	struct msghdr m = { .msg_name = &a1, .msg_namelen = sizeof a1, .msg_iov = v, .msg_iovlen = 2 };
	CHECK(ioth_sendmsg(u2, &m, 0) == 5);
	wait_readable(u1);
	struct iovec in = { buf, 3 };
	struct msghdr rm = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &in, .msg_iovlen = 1 };
	CHECK(ioth_recvmsg(u1, &rm, 0) == 3);
	CHECK(memcmp(buf, "dgr", 3) == 0);
	CHECK(rm.msg_flags & MSG_TRUNC);
	CHECK(from.sin_port == a2.sin_port);

	/* connected UDP: send / recv */
	CHECK(ioth_connect(u2, (SA *) &a1, sizeof a1) == 0);
	CHECK(ioth_send(u2, "c", 1, 0) == 1);
	wait_readable(u1);
	CHECK(ioth_recv(u1, buf, sizeof buf, 0) == 1 && buf[0] == 'c');

	CHECK(ioth_close(u1) == 0);
	CHECK(ioth_close(u2) == 0);
}

int main(int argc, char *argv[])
{
	const char *stackname = argc > 1 ? argv[1] : "kernel";
	struct ioth *s = ioth_newstack(stackname, NULL);
	CHECK(s != NULL);
	pid_t pid = ioth_stack_pid(s);
	CHECK(pid >= 0);
	printf("host_pid=%d\n", (int) pid);
	fflush(stdout);
	tcp_echo(s);
	udp_echo(s);
	CHECK(ioth_delstack(s) == 0);
	printf("ok\n");
	return 0;
}
