/* The errno cases of the C ABI. Expects $HOME/.ioth/ioth_nonew.so (a plug-in without newstack).
 * At the end it leaves one kernel stack with an open socket and prints "leftover_pid=N": its host
 * must exit by itself once this program has gone. Prints "ok" when every check passed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <ioth.h>
#include "check.h"

/* every ioth_X on fd fails with EBADF */
static void all_ebadf(int fd)
{
	char buf[8] = "x";
	struct sockaddr_in a = loopback(0);
	socklen_t al = sizeof a;
	int v = 1;
	socklen_t vl = sizeof v;
	struct iovec iov = { buf, sizeof buf };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	int avail;

	CHECK_ERRNO(ioth_bind(fd, (SA *) &a, sizeof a), EBADF);
	CHECK_ERRNO(ioth_connect(fd, (SA *) &a, sizeof a), EBADF);
	CHECK_ERRNO(ioth_listen(fd, 1), EBADF);
	CHECK_ERRNO(ioth_accept(fd, (SA *) &a, &al), EBADF);
	CHECK_ERRNO(ioth_getsockname(fd, (SA *) &a, &al), EBADF);
	CHECK_ERRNO(ioth_getpeername(fd, (SA *) &a, &al), EBADF);
	CHECK_ERRNO(ioth_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v), EBADF);
	CHECK_ERRNO(ioth_getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &vl), EBADF);
	CHECK_ERRNO(ioth_shutdown(fd, SHUT_RDWR), EBADF);
	CHECK_ERRNO(ioth_ioctl(fd, FIONREAD, &avail), EBADF);
	CHECK_ERRNO(ioth_fcntl(fd, F_SETFL, O_NONBLOCK), EBADF);
	CHECK_ERRNO(ioth_fcntl(fd, F_DUPFD, 0), EBADF);
	CHECK_ERRNO(ioth_read(fd, buf, sizeof buf), EBADF);
	CHECK_ERRNO(ioth_readv(fd, &iov, 1), EBADF);
	CHECK_ERRNO(ioth_recv(fd, buf, sizeof buf, MSG_DONTWAIT), EBADF);
	CHECK_ERRNO(ioth_recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (SA *) &a, &al), EBADF);
	CHECK_ERRNO(ioth_recvmsg(fd, &m, MSG_DONTWAIT), EBADF);
	CHECK_ERRNO(ioth_write(fd, buf, 1), EBADF);
	CHECK_ERRNO(ioth_writev(fd, &iov, 1), EBADF);
	CHECK_ERRNO(ioth_send(fd, buf, 1, 0), EBADF);
	CHECK_ERRNO(ioth_sendto(fd, buf, 1, 0, (SA *) &a, sizeof a), EBADF);
	CHECK_ERRNO(ioth_sendmsg(fd, &m, 0), EBADF);
	CHECK_ERRNO(ioth_close(fd), EBADF);
}

/* ioth_X on an fd ioth did not create: EBADF, and the fd is left as it was */
static void not_ioth_fd(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	int fl = fcntl(fd, F_GETFL);
	all_ebadf(fd);
	all_ebadf(-1);
	all_ebadf(9999);
	/* still open, not bound, not listening, flags and options unchanged */
	CHECK(fcntl(fd, F_GETFD) >= 0);
	CHECK(fcntl(fd, F_GETFL) == fl);
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	CHECK(getsockname(fd, (SA *) &a, &al) == 0 && a.sin_port == 0);
	int v = -1;
	socklen_t vl = sizeof v;
	CHECK(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 0);
	CHECK(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &vl) == 0 && v == 0);
	CHECK(close(fd) == 0);
}

/* a short sockaddr length is EINVAL, a NULL address EFAULT; the socket stays usable */
static void bad_addresses(struct ioth *s)
{
	int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = loopback(0);
	CHECK_ERRNO(ioth_bind(fd, (SA *) &a, sizeof a - 1), EINVAL);
	CHECK_ERRNO(ioth_bind(fd, (SA *) &a, 2), EINVAL);
	CHECK_ERRNO(ioth_bind(fd, NULL, sizeof a), EFAULT);
	/* the failed binds left the socket unbound */
	CHECK(ioth_bind(fd, (SA *) &a, sizeof a) == 0);
	CHECK_ERRNO(ioth_connect(fd, (SA *) &a, 3), EINVAL);
	CHECK_ERRNO(ioth_sendto(fd, "x", 1, 0, (SA *) &a, 3), EINVAL);
	CHECK(ioth_close(fd) == 0);
	CHECK_ERRNO(ioth_close(fd), EBADF);
	CHECK_ERRNO(ioth_read(fd, &a, 1), EBADF);
}

static void busy(void)
{
	struct ioth *s = ioth_newstack("kernel", NULL);
	CHECK(s != NULL);
	int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	CHECK_ERRNO(ioth_delstack(s), EBUSY);
	/* the failed delstack left stack and socket as they were */
	struct sockaddr_in a = loopback(0);
	CHECK(ioth_bind(fd, (SA *) &a, sizeof a) == 0);
	int fd2 = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
	CHECK(fd2 >= 0);
	CHECK(ioth_close(fd) == 0);
	CHECK_ERRNO(ioth_delstack(s), EBUSY);
	CHECK(ioth_close(fd2) == 0);
	CHECK(ioth_delstack(s) == 0);
}

static void bad_stacks(void)
{
	CHECK_NULL_ERRNO(ioth_newstack("no_such_plugin_here", NULL), ENOTSUP);
	CHECK_NULL_ERRNO(ioth_newstack("nonew", NULL), ENOENT);
	CHECK_NULL_ERRNO(ioth_newstack("../kernel", NULL), EINVAL);
	CHECK_NULL_ERRNO(ioth_newstack("..", NULL), EINVAL);
	CHECK_NULL_ERRNO(ioth_newstack("a/b", NULL), EINVAL);
	CHECK_NULL_ERRNO(ioth_newstack("/kernel", NULL), EINVAL);
	CHECK_NULL_ERRNO(ioth_newstack("..kernel", NULL), EINVAL);
	CHECK_ERRNO(ioth_delstack(NULL), EINVAL);
	CHECK_ERRNO(ioth_stack_pid(NULL), EINVAL);
	/* the kernel plug-in takes no VNL */
	CHECK_NULL_ERRNO(ioth_newstack("kernel", "vde:///tmp/nowhere"), EINVAL);
}

/* NULL or "" names the process's own kernel stack: no host */
static void native(void)
{
	struct ioth *n = ioth_newstack(NULL, NULL);
	CHECK(n != NULL);
	CHECK(ioth_stack_pid(n) == 0);
	int fd = ioth_msocket(n, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = loopback(0);
	CHECK(ioth_bind(fd, (SA *) &a, sizeof a) == 0);
	CHECK_ERRNO(ioth_delstack(n), EBUSY);
	CHECK(ioth_close(fd) == 0);
	CHECK(ioth_delstack(n) == 0);

	struct ioth *e = ioth_newstackv("", NULL);
	CHECK(e != NULL && ioth_stack_pid(e) == 0);
	CHECK(ioth_delstack(e) == 0);
	/* the native stack takes no VNL */
	CHECK_NULL_ERRNO(ioth_newstackl(NULL, "vde:///tmp/nowhere", (char *) NULL), EINVAL);
}

static void defstack(void)
{
	CHECK(ioth_get_defstack() == NULL);
	/* default stack NULL: ioth_socket is the native stack */
	int fd = ioth_socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	CHECK(ioth_close(fd) == 0);

	struct ioth *s = ioth_newstack("kernel", NULL);
	CHECK(s != NULL);
	ioth_set_defstack(s);
	CHECK(ioth_get_defstack() == s);
	fd = ioth_socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	int fd2 = ioth_msocket(NULL, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd2 >= 0);
	/* both sockets are on s */
	CHECK_ERRNO(ioth_delstack(s), EBUSY);
	CHECK(ioth_close(fd) == 0);
	CHECK_ERRNO(ioth_delstack(s), EBUSY);
	CHECK(ioth_close(fd2) == 0);
	ioth_set_defstack(NULL);
	CHECK(ioth_get_defstack() == NULL);
	ioth_set_defstack(s);
	/* deleting the default stack reverts the default to the native stack */
	CHECK(ioth_delstack(s) == 0);
	CHECK(ioth_get_defstack() == NULL);
	fd = ioth_socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0);
	CHECK(ioth_close(fd) == 0);
}

static void newstackl(void)
{
	struct ioth *s = ioth_newstackl("kernel", NULL);
	CHECK(s != NULL);
	CHECK(ioth_stack_pid(s) > 0);
	CHECK(ioth_delstack(s) == 0);
	/* the arguments arrive: the kernel plug-in refuses VNLs */
	CHECK_NULL_ERRNO(ioth_newstackl("kernel", "vde:///tmp/a", (char *) NULL), EINVAL);
	CHECK_NULL_ERRNO(ioth_newstackl("kernel", "vde:///tmp/a", "vde:///tmp/b",
				"vde:///tmp/c", (char *) NULL), EINVAL);
	CHECK_NULL_ERRNO(ioth_newstackl("no_such_plugin_here", "x", "y", (char *) NULL), ENOTSUP);
}

static void stack_pid(void)
{
	struct ioth *s = ioth_newstack("kernel", NULL);
	struct ioth *t = ioth_newstack("kernel", NULL);
	CHECK(s != NULL && t != NULL);
	pid_t ps = ioth_stack_pid(s), pt = ioth_stack_pid(t);
	CHECK(ps > 0 && pt > 0 && ps != pt);
	char path[64];
	snprintf(path, sizeof path, "/proc/%d", (int) ps);
	CHECK(access(path, F_OK) == 0);
	CHECK(ioth_delstack(s) == 0);
	CHECK(ioth_delstack(t) == 0);
}

int main(void)
{
	not_ioth_fd();
	busy();
	bad_stacks();
	native();
	defstack();
	newstackl();
	stack_pid();

	struct ioth *s = ioth_newstack("kernel", NULL);
	CHECK(s != NULL);
	bad_addresses(s);
	int fd = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	printf("leftover_pid=%d\n", (int) ioth_stack_pid(s));
	printf("ok\n");
	return 0;
}
