/* Misuse of the C API that must fail cleanly, never crash. argv[1] selects the case:
 *   registry  a deleted or unknown struct ioth * is EINVAL (delstack twice, msocket after)
 *   default   threads calling ioth_socket() while the main thread deletes the default stack;
 *             afterwards the process's own stack is the default again
 *   fork      a child of fork() gets ENETDOWN on its parent's stack and its delstack leaves the
 *             parent's stack alone
 *   stdio     stdin and stdout closed: a stack still starts
 *   addr      smoltcp: a 2-byte AF_INET address in bind/connect is EINVAL
 *   stray     a plug-in that corrupts the channel: the link is reset (ENETDOWN, delstack ok)
 * Exits 0 when every check holds. Used by tests/harden.rs. */
#include <ioth.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

static volatile int stop;

static void *hammer(void *arg) {
	long *made = arg;
	while (!stop) {
		int fd = ioth_socket(AF_INET, SOCK_DGRAM, 0);
		if (fd >= 0) {
			(*made)++;
			ioth_close(fd);
		}
	}
	return NULL;
}

int main(int argc, char **argv) {
	CHECK(argc == 2);
	const char *c = argv[1];
	if (strcmp(c, "registry") == 0) {
		struct ioth *s = ioth_newstack("kernel", NULL);
		CHECK(s != NULL);
		CHECK(ioth_delstack(s) == 0);
		CHECK_ERRNO(ioth_delstack(s), EINVAL);
		CHECK_ERRNO(ioth_msocket(s, AF_INET, SOCK_DGRAM, 0), EINVAL);
		CHECK_ERRNO(ioth_stack_pid(s), EINVAL);
		CHECK_ERRNO(ioth_delstack((struct ioth *) 0x1234), EINVAL);
		CHECK_ERRNO(ioth_if_nametoindex((struct ioth *) 0x1234, "lo"), EINVAL);
	} else if (strcmp(c, "default") == 0) {
		for (int round = 0; round < 20; round++) {
			struct ioth *s = ioth_newstack("kernel", NULL);
			CHECK(s != NULL);
			ioth_set_defstack(s);
			stop = 0;
			pthread_t t[4];
			long made[4] = {0};
			for (int i = 0; i < 4; i++)
				CHECK(pthread_create(&t[i], NULL, hammer, &made[i]) == 0);
			usleep(2000);
			int r = -1;
			for (int i = 0; i < 100000 && r != 0; i++)
				r = ioth_delstack(s); /* EBUSY while a thread holds a socket */
			CHECK(r == 0);
			stop = 1;
			for (int i = 0; i < 4; i++)
				pthread_join(t[i], NULL);
			CHECK(ioth_get_defstack() == NULL);
			int fd = ioth_socket(AF_INET, SOCK_DGRAM, 0);
			CHECK(fd >= 0);
			CHECK(ioth_close(fd) == 0);
		}
	} else if (strcmp(c, "fork") == 0) {
		struct ioth *s = ioth_newstack("kernel", NULL);
		CHECK(s != NULL);
		pid_t host = ioth_stack_pid(s);
		pid_t child = fork();
		CHECK(child >= 0);
		if (child == 0) {
			for (int i = 0; i < 100; i++)
				CHECK_ERRNO(ioth_msocket(s, AF_INET, SOCK_DGRAM, 0), ENETDOWN);
			CHECK(ioth_delstack(s) == 0);
			_exit(0);
		}
		for (int i = 0; i < 100; i++) {
			int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
			CHECK(fd >= 0);
			int ty = 0;
			socklen_t len = sizeof ty;
			CHECK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &ty, &len) == 0 && ty == SOCK_DGRAM);
			CHECK(ioth_close(fd) == 0);
		}
		int st;
		CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
		CHECK(kill(host, 0) == 0);
		int fd = ioth_msocket(s, AF_INET, SOCK_STREAM, 0);
		CHECK(fd >= 0);
		CHECK(ioth_close(fd) == 0);
		CHECK(ioth_delstack(s) == 0);
	} else if (strcmp(c, "stdio") == 0) {
		close(0);
		close(1);
		struct ioth *s = ioth_newstack("kernel", NULL);
		CHECK(s != NULL);
		int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
		CHECK(fd >= 0);
		CHECK(ioth_close(fd) == 0);
		CHECK(ioth_delstack(s) == 0);
	} else if (strcmp(c, "addr") == 0) {
		struct ioth *s = ioth_newstack("smoltcp", NULL);
		CHECK(s != NULL);
		int fd = ioth_msocket(s, AF_INET, SOCK_DGRAM, 0);
		CHECK(fd >= 0);
		sa_family_t fam = AF_INET;
		CHECK_ERRNO(ioth_bind(fd, (struct sockaddr *) &fam, sizeof fam), EINVAL);
		CHECK_ERRNO(ioth_connect(fd, (struct sockaddr *) &fam, sizeof fam), EINVAL);
		struct sockaddr_in a = loopback(0);
		CHECK(ioth_bind(fd, (struct sockaddr *) &a, sizeof a) == 0);
		CHECK(ioth_close(fd) == 0);
		CHECK(ioth_delstack(s) == 0);
	} else if (strcmp(c, "stray") == 0) {
		struct ioth *s = ioth_newstack("stray", NULL);
		CHECK(s != NULL);
		pid_t host = ioth_stack_pid(s);
		CHECK_ERRNO(ioth_msocket(s, AF_INET, SOCK_DGRAM, 0), EPROTO);
		CHECK_ERRNO(ioth_msocket(s, AF_INET, SOCK_DGRAM, 0), ENETDOWN);
		CHECK_ERRNO(ioth_msocket(s, AF_INET, SOCK_STREAM, 0), ENETDOWN);
		CHECK(ioth_delstack(s) == 0);
		CHECK_ERRNO(kill(host, 0), ESRCH);
	} else {
		fprintf(stderr, "unknown case %s\n", c);
		return 2;
	}
	fprintf(stderr, "%s ok\n", c);
	return 0;
}
