/* For the C test plug-ins whose sockets are kernel sockets: every function of
 * struct ioth_functions but socket set to the C library's own, as the original's kernel module
 * does by hand (tests/c/ioth_foo.c, the README-style plug-in, keeps writing it out). */
#ifndef IOTH_TEST_LIBC_FUNCTIONS_H
#define IOTH_TEST_LIBC_FUNCTIONS_H
#include <ioth.h>

static inline void set_libc_functions(struct ioth_functions *f) {
	f->close = close;
	f->bind = bind;
	f->connect = connect;
	f->listen = listen;
	f->accept = accept;
	f->getsockname = getsockname;
	f->getpeername = getpeername;
	f->setsockopt = setsockopt;
	f->getsockopt = getsockopt;
	f->shutdown = shutdown;
	f->ioctl = ioctl;
	f->fcntl = fcntl;
	f->read = read;
	f->readv = readv;
	f->recv = recv;
	f->recvfrom = recvfrom;
	f->recvmsg = recvmsg;
	f->write = write;
	f->writev = writev;
	f->send = send;
	f->sendto = sendto;
	f->sendmsg = sendmsg;
}
#endif
