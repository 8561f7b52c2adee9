/* Echo server on a virtual stack, in C against the drop-in <ioth.h>.
 * usage: iothtest_server STACK [VNL...]
 * 192.168.250.50/24 on vde0, default route via 192.168.250.1, TCP echo on port 5000,
 * a thread per connection. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <netinet/in.h>
#include <ioth.h>

static void *serve_conn(void *arg) {
	int fd = (int) (intptr_t) arg;
	char buf[BUFSIZ];
	ssize_t n;
	printf("new conn %d\n", fd);
	while ((n = ioth_recv(fd, buf, sizeof(buf), 0)) > 0) {
		printf("GOT: %.*s", (int) n, buf);
		if (ioth_send(fd, buf, n, 0) < 0)
			break;
	}
	printf("close conn %d\n", fd);
	ioth_close(fd);
	return NULL;
}

static struct ioth *setup(const char *argv[]) {
	uint8_t addr[] = {192, 168, 250, 50};
	uint8_t gw[] = {192, 168, 250, 1};
	struct ioth *stack = ioth_newstackv(argv[0], argv + 1);
	if (stack == NULL)
		return NULL;
	int ifindex = ioth_if_nametoindex(stack, "vde0");
	if (ifindex < 0) {
		perror("nametoindex");
		return stack;
	}
	if (ioth_linksetupdown(stack, ifindex, 1) < 0)
		perror("link up");
	if (ioth_ipaddr_add(stack, AF_INET, addr, 24, ifindex) < 0)
		perror("addr ipv4");
	if (ioth_iproute_add(stack, AF_INET, NULL, 0, gw, 0) < 0)
		perror("route ipv4");
	return stack;
}

int main(int argc, const char *argv[]) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s stack [vnl ...]\n", argv[0]);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ioth_set_license("SPDX-License-Identifier: GPL-2.0-or-later");
	struct ioth *stack = setup(argv + 1);
	if (stack == NULL) {
		perror("newstack");
		return 1;
	}
	int fd = ioth_msocket(stack, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5000)};
	int one = 1;
	ioth_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || ioth_bind(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0 ||
			ioth_listen(fd, 5) < 0) {
		perror("listen");
		return 1;
	}
	printf("listening on 192.168.250.50:5000 (host pid %d)\n", (int) ioth_stack_pid(stack));
	fflush(stdout);
	for (;;) {
		pthread_t t;
		int conn = ioth_accept(fd, NULL, NULL);
		if (conn < 0)
			break;
		pthread_create(&t, NULL, serve_conn, (void *) (intptr_t) conn);
		pthread_detach(t);
	}
	ioth_close(fd);
	ioth_delstack(stack);
	return 0;
}
