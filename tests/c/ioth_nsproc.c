/* A plug-in built like the original libioth's vdestack module, without the VDE part: its
 * three-argument newstack clones a helper process into a new user and network namespace that
 * shares the host's fd table (CLONE_FILES), and every socket of the stack is created by that
 * helper, on request over a SEQPACKET pair; so the stack is the helper's namespace, which has
 * only "lo". The helper ends when the pair is closed (delstack, which reaps it) or when the
 * process that created it is gone (checked at least once a second, as the original does).
 * The plug-in declares no sandbox needs: what it does after newstack is done by the helper. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ioth.h>
#include "libc_functions.h"

const char *ioth_nsproc_license = "SPDX-License-Identifier: LGPL-2.1-or-later";

#define HELPER_STACK_SIZE (256 * 1024)
#define APP_END 0
#define HELPER_END 1

struct nsproc {
	pid_t helper;
	pid_t creator;
	int pair[2];
	pthread_mutex_t lock;
	char *helper_stack;
};

struct request { int domain, type, protocol; };
struct reply { int fd, err; };

static void *(*getstackdata)(void);

static int helper_main(void *arg) {
	struct nsproc *p = arg;
	struct pollfd pfd = {p->pair[HELPER_END], POLLIN, 0};
	for (;;) {
		int n = poll(&pfd, 1, 1000);
		if (n < 0 && errno != EINTR)
			break;
		if (kill(p->creator, 0) < 0 && errno == ESRCH)
			break;
		if (n <= 0)
			continue;
		struct request rq;
		if (read(p->pair[HELPER_END], &rq, sizeof rq) != (ssize_t) sizeof rq)
			break;
		struct reply rp;
		rp.fd = socket(rq.domain, rq.type, rq.protocol);
		rp.err = rp.fd < 0 ? errno : 0;
		if (write(p->pair[HELPER_END], &rp, sizeof rp) != (ssize_t) sizeof rp)
			break;
	}
	_exit(0);
}

static int nsproc_socket(int domain, int type, int protocol) {
	struct nsproc *p = getstackdata();
	struct request rq = {domain, type, protocol};
	struct reply rp = {-1, EIO};
	pthread_mutex_lock(&p->lock);
	int ok = write(p->pair[APP_END], &rq, sizeof rq) == (ssize_t) sizeof rq &&
		read(p->pair[APP_END], &rp, sizeof rp) == (ssize_t) sizeof rp;
	pthread_mutex_unlock(&p->lock);
	if (!ok)
		return errno = EIO, -1;
	if (rp.fd < 0)
		errno = rp.err;
	return rp.fd;
}

void *ioth_nsproc_newstack(const char *vnlv[], const char *options, struct ioth_functions *f) {
	(void) vnlv; (void) options;
	struct nsproc *p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	p->creator = getpid();
	pthread_mutex_init(&p->lock, NULL);
	p->helper_stack = mmap(NULL, HELPER_STACK_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->helper_stack == MAP_FAILED)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p->pair) < 0)
		goto fail_map;
	p->helper = clone(helper_main, p->helper_stack + HELPER_STACK_SIZE,
			CLONE_FILES | CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD, p);
	if (p->helper < 0)
		goto fail_pair;
	getstackdata = f->getstackdata;
	f->socket = nsproc_socket;
	set_libc_functions(f);
	return p;
fail_pair: {
		int e = errno;
		close(p->pair[0]);
		close(p->pair[1]);
		errno = e;
	}
fail_map:
	munmap(p->helper_stack, HELPER_STACK_SIZE);
fail:
	free(p);
	return NULL;
}

int ioth_nsproc_delstack(void *stackdata) {
	struct nsproc *p = stackdata;
	/* The fd table is shared: the helper sees its end of the pair hang up. */
	close(p->pair[APP_END]);
	close(p->pair[HELPER_END]);
	waitpid(p->helper, NULL, 0);
	munmap(p->helper_stack, HELPER_STACK_SIZE);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return 0;
}
