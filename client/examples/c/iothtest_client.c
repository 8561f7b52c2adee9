/* Terminal client on a virtual stack, in C against the drop-in <ioth.h>.
 * usage: iothtest_client STACK [VNL...]
 * 192.168.250.51/24 on vde0; connects to 192.168.250.50:5000; poll() on stdin and on the ioth
 * fd (a real fd); at the end of stdin it half-closes and prints the rest of the echo. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ioth.h>

int main(int argc, const char *argv[]) {
	uint8_t addr[] = {192, 168, 250, 51};
	uint8_t gw[] = {192, 168, 250, 1};
	char buf[BUFSIZ];
	if (argc < 2) {
		fprintf(stderr, "usage: %s stack [vnl ...]\n", argv[0]);
		return 1;
	}
	ioth_set_license("SPDX-License-Identifier: GPL-2.0-or-later");
	struct ioth *stack = ioth_newstackv(argv[1], argv + 2);
	if (stack == NULL) {
		perror("newstack");
		return 1;
	}
	int ifindex = ioth_if_nametoindex(stack, "vde0");
	if (ifindex < 0 || ioth_linksetupdown(stack, ifindex, 1) < 0 ||
			ioth_ipaddr_add(stack, AF_INET, addr, 24, ifindex) < 0 ||
			ioth_iproute_add(stack, AF_INET, NULL, 0, gw, 0) < 0) {
		perror("configure vde0");
		return 1;
	}
	int fd = ioth_msocket(stack, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5000)};
	inet_pton(AF_INET, "192.168.250.50", &sin.sin_addr);
	if (fd < 0 || ioth_connect(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0) {
		perror("connect");
		return 1;
	}
	struct pollfd pfd[] = {{fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
	int nfds = 2;
	for (;;) {
		if (poll(pfd, nfds, -1) < 0)
			break;
		if (nfds == 2 && pfd[1].revents) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				nfds = 1;
				ioth_shutdown(fd, SHUT_WR);
			} else
				ioth_write(fd, buf, n);
		}
		if (pfd[0].revents) {
			ssize_t n = ioth_read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			fwrite(buf, 1, n, stdout);
			fflush(stdout);
		}
	}
	ioth_close(fd);
	ioth_delstack(stack);
	return 0;
}
