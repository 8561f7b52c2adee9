/*
 * ioth.h — the Internet of Threads API, as implemented by ioth (Rust, one host process per stack).
 *
 * Drop-in for the original libioth header: same names, same signatures, same
 * struct ioth_functions for plug-in authors. Link with -lioth.
 *
 * Every ioth_X Berkeley call has the signature and behaviour of X and returns -1 with errno set
 * on error. ioth_X on an fd that ioth did not create fails with EBADF.
 * ioth_newstack* return NULL and set errno on error:
 *   ENOTSUP  plug-in not found          ENOENT   plug-in without ioth_<name>_newstack,
 *   EPERM    licence refused                     or ioth-host binary not found
 *   EINVAL   bad name ('/' or '..') or malformed VNL
 *   ETIMEDOUT the plug-in did not create its stack in time (IOTH_NEWSTACK_TIMEOUT, ms)
 *   ENETDOWN  the plug-in crashed while creating its stack
 * Calls on a stack whose host process died (crash, kill -9, a resource limit) fail with ENETDOWN,
 * including calls that were blocked on it when it died; sockets already created keep working.
 * ioth_delstack of a dead stack succeeds once its sockets are closed (EBUSY before).
 * See the "ioth extensions" section for timeouts, audit trails and docs/faults.md.
 *
 * Proxied fds (user-space stacks such as smoltcp, or plug-ins with their own read/write;
 * docs/proxied.md): every ioth fd is a real fd, and read/write/send/recv/poll/select/epoll work
 * on it with the plain calls. The control calls (bind, connect, listen, accept, getsockname,
 * getpeername, setsockopt, getsockopt, shutdown) must be the ioth_X ones: they go to the stack's
 * host, with X's blocking behaviour (per the fd's O_NONBLOCK) and the stack's errno. ioth_ioctl
 * and ioth_fcntl act on the fd itself. An unconnected UDP socket's records carry an address
 * header: use ioth_sendto/ioth_recvfrom/ioth_sendmsg/ioth_recvmsg (or ioth_read/ioth_recv),
 * not the plain calls. Close with ioth_close: plain close(2) leaves the stack's side open. If the
 * stack's host dies, reads see EOF or ECONNRESET, writes EPIPE, control calls ENETDOWN.
 * A NULL or empty stack name means the process's own kernel stack (no host process).
 */
#ifndef IOTH_H
#define IOTH_H
#ifndef LIBIOTH_H
#define LIBIOTH_H
#endif

#include <stdio.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <fcntl.h>
#include <ifaddrs.h>

#include "ioth_nlinline.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ioth;

/* ioth stack create/destroy */

/* one interface (or no interfaces if vnl == NULL) */
struct ioth *ioth_newstack(const char *stack, const char *vnl);

/* up to several interfaces */
struct ioth *ioth_newstackl(const char *stack, const char *vnl, ... /* (char  *) NULL */);
struct ioth *ioth_newstackv(const char *stack, const char *vnlv[]);
int ioth_delstack(struct ioth *iothstack);

void ioth_set_defstack(struct ioth *iothstack);
struct ioth *ioth_get_defstack(void);

/* licence of the application (SPDX), checked against each plug-in's ioth_<name>_license */
void ioth_set_license(const char *license);

/* communication primitives */
int ioth_msocket(struct ioth *iothstack, int domain, int type, int protocol);
int ioth_socket(int domain, int type, int protocol);
int ioth_close(int fd);

int ioth_bind(int fd, const struct sockaddr *addr, socklen_t addrlen);
int ioth_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
int ioth_listen(int fd, int backlog);
int ioth_accept(int fd, struct sockaddr *addr, socklen_t *addrlen);
int ioth_getsockname(int fd, struct sockaddr *addr, socklen_t *addrlen);
int ioth_getpeername(int fd, struct sockaddr *addr, socklen_t *addrlen);
ssize_t ioth_read(int fd, void *buf, size_t len);
ssize_t ioth_readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t ioth_recv(int fd, void *buf, size_t len, int flags);
ssize_t ioth_recvfrom(int fd, void *buf, size_t len, int flags,
		struct sockaddr *from, socklen_t *fromlen);
ssize_t ioth_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t ioth_write(int fd, const void *buf, size_t len);
ssize_t ioth_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t ioth_send(int fd, const void *buf, size_t len, int flags);
ssize_t ioth_sendto(int fd, const void *buf, size_t len, int flags,
		const struct sockaddr *to, socklen_t tolen);
ssize_t ioth_sendmsg(int fd, const struct msghdr *msg, int flags);
int ioth_setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen);
int ioth_getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen);
int ioth_shutdown(int fd, int how);
int ioth_ioctl(int fd, unsigned long cmd, void *argp);
int ioth_fcntl(int fd, int cmd, long val);

/* netlink configuration: the nlinline functions on a given stack (ioth_nlinline.h), defined
 * inline on the calls above, as in the original:
 *   int ioth_if_nametoindex(void *stack, const char *ifname);
 *   int ioth_linksetupdown(void *stack, unsigned int ifindex, int updown);
 *   int ioth_linksetaddr(void *stack, unsigned int ifindex, void *macaddr);
 *   int ioth_linkgetaddr(void *stack, unsigned int ifindex, void *macaddr);
 *   int ioth_linksetmtu(void *stack, unsigned int ifindex, unsigned int mtu);
 *   int ioth_ipaddr_add(void *stack, int family, void *addr, int prefixlen, int ifindex);
 *   int ioth_ipaddr_del(void *stack, int family, void *addr, int prefixlen, int ifindex);
 *   int ioth_iproute_add(void *stack, int family, void *dst_addr, int dst_prefixlen,
 *       void *gw_addr, unsigned int ifindex);
 *   int ioth_iproute_del(void *stack, int family, void *dst_addr, int dst_prefixlen,
 *       void *gw_addr, unsigned int ifindex);
 *   int ioth_iplink_add(void *stack, const char *ifname, unsigned int ifindex,
 *       const char *type, struct nl_iplink_data *ifd, int nifd);
 *   int ioth_iplink_del(void *stack, const char *ifname, unsigned int ifindex);
 *   int ioth_nldialog(void *stack, void *msg);
 * (stack: a struct ioth *, NULL for the default stack). nl_addrdata2prefix(prefixlen, flags,
 * scope) and nl_routedata2prefix(prefixlen, type, scope) pack more into the prefix length. */
static inline int iothnl_msocket(void *stack, int domain, int type, int protocol) {
	return ioth_msocket((struct ioth *) stack, domain, type, protocol);
}
__IOTH_NL_LIBMULTI(ioth_, iothnl_msocket, ioth_)

int ioth_getifaddrs(struct ioth *stack, struct ifaddrs **ifap);
void ioth_freeifaddrs(struct ifaddrs *ifa);

/* ----------------------------------- ioth extensions (not in the original API) */

/* pid of the host process serving the stack; 0 for the native kernel stack,
 * -1 (errno EINVAL) for a NULL stack */
pid_t ioth_stack_pid(struct ioth *iothstack);

/* start program argv[0] (searched in PATH; argv NULL-terminated) with every socket it creates
 * on stack (NULL: the default stack), as ioth-run(1) does: inside a vdestack stack's namespaces,
 * through the preload library on a proxied stack (smoltcp; a static program fails with ENOEXEC).
 * resolvconf: NULL, or the text the program sees as /etc/resolv.conf. Returns the program's
 * pid (reap it with waitpid), -1 with errno on error. See ioth_run(3). */
pid_t ioth_run(struct ioth *stack, const char *resolvconf, char *const argv[]);

/* Environment read when a stack is created (ioth_newstack*):
 *   IOTH_NEWSTACK_TIMEOUT  ms the plug-in may take to create its stack (default 5000); past it
 *                          the host is killed and ioth_newstack* fails with ETIMEDOUT.
 *   IOTH_REQUEST_TIMEOUT   ms each later request (ioth_msocket, ...) may take (default: no bound);
 *                          past it the host is killed, the call fails with ETIMEDOUT and later
 *                          calls with ENETDOWN.
 *   IOTH_AUDIT             audit trail written by the host, one JSON line per request served:
 *                          a directory (one file <plugin>-<host pid>.jsonl per stack) or a file
 *                          (appended). Format in docs/faults.md. */

/* ----------------------------------- for ioth plugins */

/* A plug-in for stack NAME exports ioth_NAME_newstack with this prototype (the original's);
 * the older two-argument form void *(const char *vnlv[], struct ioth_functions *ioth_f) loads
 * too. options: what follows the first comma of the stack name ("NAME,OPTIONS"), "" if none. */
struct ioth_functions;
void *newstack_prototype(const char *vnlv[], const char *options,
		struct ioth_functions *ioth_f);
int delstack_prototype(void *stackdata);
void *getstackdata_prototype(void);

/* C++ looks the names up at file scope, so that the fields may be named like the functions. */
#ifdef __cplusplus
#define IOTH_GLOBAL_NAME(name) ::name
#else
#define IOTH_GLOBAL_NAME(name) name
#endif

/* libc + _GNU_SOURCE uses a transparent union for sockaddr: ioth_X is used as the prototype of
 * every X of the Berkeley sockets API that takes a sockaddr. */

struct ioth_functions {
	__typeof__(IOTH_GLOBAL_NAME(getstackdata_prototype)) *getstackdata;
	__typeof__(IOTH_GLOBAL_NAME(newstack_prototype)) *newstack;
	__typeof__(IOTH_GLOBAL_NAME(delstack_prototype)) *delstack;
	__typeof__(IOTH_GLOBAL_NAME(socket)) *socket;
	__typeof__(IOTH_GLOBAL_NAME(close)) *close;
	__typeof__(IOTH_GLOBAL_NAME(ioth_bind)) *bind;
	__typeof__(IOTH_GLOBAL_NAME(ioth_connect)) *connect;
	__typeof__(IOTH_GLOBAL_NAME(listen)) *listen;
	__typeof__(IOTH_GLOBAL_NAME(ioth_accept)) *accept;
	__typeof__(IOTH_GLOBAL_NAME(ioth_getsockname)) *getsockname;
	__typeof__(IOTH_GLOBAL_NAME(ioth_getpeername)) *getpeername;
	__typeof__(IOTH_GLOBAL_NAME(setsockopt)) *setsockopt;
	__typeof__(IOTH_GLOBAL_NAME(getsockopt)) *getsockopt;
	__typeof__(IOTH_GLOBAL_NAME(shutdown)) *shutdown;
	__typeof__(IOTH_GLOBAL_NAME(ioctl)) *ioctl;
	__typeof__(IOTH_GLOBAL_NAME(fcntl)) *fcntl;
	__typeof__(IOTH_GLOBAL_NAME(read)) *read;
	__typeof__(IOTH_GLOBAL_NAME(readv)) *readv;
	__typeof__(IOTH_GLOBAL_NAME(recv)) *recv;
	__typeof__(IOTH_GLOBAL_NAME(ioth_recvfrom)) *recvfrom;
	__typeof__(IOTH_GLOBAL_NAME(recvmsg)) *recvmsg;
	__typeof__(IOTH_GLOBAL_NAME(write)) *write;
	__typeof__(IOTH_GLOBAL_NAME(writev)) *writev;
	__typeof__(IOTH_GLOBAL_NAME(send)) *send;
	__typeof__(IOTH_GLOBAL_NAME(ioth_sendto)) *sendto;
	__typeof__(IOTH_GLOBAL_NAME(sendmsg)) *sendmsg;
};

/* ------------------ MAC address conversions --------------- */

#define MAC_ADDRSTRLEN 18

/* Formats a 6-byte MAC address as "xx:xx:xx:xx:xx:xx"; dst holds at least MAC_ADDRSTRLEN bytes. */
static inline const char *ioth_ntomac(const void *src, char *dst, size_t size) {
	const unsigned char *mac = (const unsigned char *) src;
	snprintf(dst, size, "%02x:%02x:%02x:%02x:%02x:%02x",
			mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	return dst;
}

/* Parses "xx:xx:xx:xx:xx:xx" or "xx-xx-xx-xx-xx-xx" into 6 bytes; returns 1 on success, 0 if not. */
static inline int ioth_macton(const char *src, void *dst) {
	unsigned char *mac = (unsigned char *) dst;
	if (sscanf(src, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx",
				mac, mac + 1, mac + 2, mac + 3, mac + 4, mac + 5) == 6)
		return 1;
	if (sscanf(src, "%hhx-%hhx-%hhx-%hhx-%hhx-%hhx",
				mac, mac + 1, mac + 2, mac + 3, mac + 4, mac + 5) == 6)
		return 1;
	return 0;
}

#ifdef __cplusplus
}
#endif
#endif /* IOTH_H */
