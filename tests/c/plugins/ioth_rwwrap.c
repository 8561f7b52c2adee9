/* ioth_rwwrap.c: a plug-in whose sockets are kernel sockets of the host's own namespace (the
 * tests use 127.0.0.1 only), but which reads and writes them with its OWN functions, counting
 * the bytes: its read/recv/recvfrom/write/send/sendto are not libc's, so the host serves it as
 * "proxied, host pump" (docs/proxied.md) and pumps each socket through these functions. Its
 * control functions are libc's, except getsockopt, which also answers a private option:
 *   getsockopt(fd, RWWRAP_LEVEL, RWWRAP_COUNTS, uint64_t[2], 16) -> {bytes read, bytes written}
 * (of the whole stack), so a test can see that the data really went through the plug-in.
 *   gcc -o ioth_rwwrap.so -fPIC -shared ioth_rwwrap.c -I client/include */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <libioth.h>

#define RWWRAP_LEVEL 0x7277
#define RWWRAP_COUNTS 1

struct rwwrap {
	_Atomic uint64_t in, out;
};

static typeof(getstackdata_prototype) *getstackdata;

static struct rwwrap *me(void) {
	return getstackdata ? getstackdata() : NULL;
}

static void count(ssize_t n, int out) {
	struct rwwrap *s = me();
	if (s != NULL && n > 0)
		atomic_fetch_add(out ? &s->out : &s->in, (uint64_t) n);
}

ssize_t ioth_rwwrap_read(int fd, void *buf, size_t len) {
	ssize_t n = read(fd, buf, len);
	count(n, 0);
	return n;
}

ssize_t ioth_rwwrap_recv(int fd, void *buf, size_t len, int flags) {
	ssize_t n = recv(fd, buf, len, flags);
	count(n, 0);
	return n;
}

ssize_t ioth_rwwrap_recvfrom(int fd, void *buf, size_t len, int flags,
		struct sockaddr *from, socklen_t *fromlen) {
	ssize_t n = recvfrom(fd, buf, len, flags, from, fromlen);
	count(n, 0);
	return n;
}

ssize_t ioth_rwwrap_write(int fd, const void *buf, size_t len) {
	ssize_t n = write(fd, buf, len);
	count(n, 1);
	return n;
}

ssize_t ioth_rwwrap_send(int fd, const void *buf, size_t len, int flags) {
	ssize_t n = send(fd, buf, len, flags);
	count(n, 1);
	return n;
}

ssize_t ioth_rwwrap_sendto(int fd, const void *buf, size_t len, int flags,
		const struct sockaddr *to, socklen_t tolen) {
	ssize_t n = sendto(fd, buf, len, flags, to, tolen);
	count(n, 1);
	return n;
}

int ioth_rwwrap_getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
	if (level == RWWRAP_LEVEL && name == RWWRAP_COUNTS) {
		struct rwwrap *s = me();
		uint64_t v[2];
		if (s == NULL || val == NULL || len == NULL || *len < sizeof v) {
			errno = EINVAL;
			return -1;
		}
		v[0] = atomic_load(&s->in);
		v[1] = atomic_load(&s->out);
		memcpy(val, v, sizeof v);
		*len = sizeof v;
		return 0;
	}
	return getsockopt(fd, level, name, val, len);
}

void *ioth_rwwrap_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv;
	struct rwwrap *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	getstackdata = f->getstackdata;
	f->socket = socket;
	f->close = close;
	f->bind = bind;
	f->connect = connect;
	f->listen = listen;
	f->accept = accept;
	f->getsockname = getsockname;
	f->getpeername = getpeername;
	f->setsockopt = setsockopt;
	f->shutdown = shutdown;
	f->ioctl = ioctl;
	f->fcntl = fcntl;
	/* read, recv, recvfrom, write, send, sendto, getsockopt: ioth_rwwrap_<fn>, assigned
	 * implicitly; readv, recvmsg, writev, sendmsg: unset. */
	return s;
}

int ioth_rwwrap_delstack(void *stackdata) {
	free(stackdata);
	return 0;
}
