/* ioth_foo.c: a plug-in written as the original libioth README shows it, built with
 *     gcc -o ioth_foo.so -fPIC -shared ioth_foo.c -I client/include
 * It is the kernel stack in disguise, with a log: its first VNL names a file (the stack data keeps
 * the name) where it writes one line per call, so the test can see what it was asked to do. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libioth.h>

#define FOO_MAGIC 0x10f00f00u

struct foo_stack {
	unsigned int magic;
	int nsockets;
	char logfile[4096];
};

static typeof(getstackdata_prototype) *getstackdata;

static void foo_log(struct foo_stack *stackdata, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(stackdata->logfile, "a");
	if (f == NULL)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

void *ioth_foo_newstack(const char *vnlv[], struct ioth_functions *ioth_f)
{
	if (vnlv == NULL || vnlv[0] == NULL || strlen(vnlv[0]) >= sizeof(((struct foo_stack *) 0)->logfile)) {
		errno = EINVAL;
		return NULL;
	}
	struct foo_stack *stackdata = calloc(1, sizeof(*stackdata));
	if (stackdata == NULL)
		return NULL;
	stackdata->magic = FOO_MAGIC;
	strcpy(stackdata->logfile, vnlv[0]);
	FILE *f = fopen(stackdata->logfile, "a");
	if (f == NULL) {
		free(stackdata);
		return NULL;
	}
	fprintf(f, "newstack");
	for (int i = 0; vnlv[i] != NULL; i++)
		fprintf(f, " %s", vnlv[i]);
	fprintf(f, "\n");
	fclose(f);

	/* save getstackdata for the other functions */
	getstackdata = ioth_f->getstackdata;

	/* example 1 of the README: use the system calls */
	ioth_f->close = close;
	ioth_f->bind = bind;
	ioth_f->connect = connect;
	ioth_f->listen = listen;
	ioth_f->accept = accept;
	ioth_f->getsockname = getsockname;
	ioth_f->getpeername = getpeername;
	ioth_f->setsockopt = setsockopt;
	ioth_f->getsockopt = getsockopt;
	ioth_f->shutdown = shutdown;
	ioth_f->ioctl = ioctl;
	ioth_f->fcntl = fcntl;
	ioth_f->read = read;
	ioth_f->readv = readv;
	ioth_f->recv = recv;
	ioth_f->recvfrom = recvfrom;
	ioth_f->recvmsg = recvmsg;
	ioth_f->write = write;
	ioth_f->writev = writev;
	ioth_f->send = send;
	ioth_f->sendto = sendto;
	ioth_f->sendmsg = sendmsg;
	/* socket: implicit assignment of ioth_foo_socket */
	return stackdata;
}

int ioth_foo_delstack(void *stackdata)
{
	struct foo_stack *foo = stackdata;
	if (foo == NULL || foo->magic != FOO_MAGIC) {
		errno = EINVAL;
		return -1;
	}
	foo_log(foo, "delstack after %d sockets\n", foo->nsockets);
	free(foo);
	return 0;
}

int ioth_foo_socket(int domain, int type, int protocol)
{
	struct foo_stack *stackdata = getstackdata();
	if (stackdata == NULL || stackdata->magic != FOO_MAGIC) {
		errno = EFAULT;
		return -1;
	}
	stackdata->nsockets++;
	foo_log(stackdata, "socket %d domain %d\n", stackdata->nsockets, domain);
	return socket(domain, type, protocol);
}

const char *ioth_foo_license = "SPDX-License-Identifier: GPL-2.0-or-later";
/* It appends to its log (named by its VNL) after newstack: the host's sandbox must allow that
 * (docs/security.md). */
const char *ioth_foo_sandbox = "write=@vnl";
