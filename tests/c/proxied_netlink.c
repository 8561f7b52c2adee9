/* Netlink configuration through the C ABI on a stack with one VNL: argv[1] names the plug-in
 * (vdestack: a kernel stack in its namespace; smoltcp: a user-space stack that emulates
 * rtnetlink on proxied fds), argv[2] the VNL. The checks of tests/c/netlink.c that apply to a
 * stack whose only link is vde0: link up/down, MTU, MAC, addresses, routes and their errnos,
 * getifaddrs. Prints "ok" at the end; a failed CHECK prints where and exits 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stdint.h>
#include <ioth.h>
#include "check.h"

static struct ifaddrs *find(struct ifaddrs *list, const char *name, int family) {
	for (; list; list = list->ifa_next)
		if (strcmp(list->ifa_name, name) == 0 && list->ifa_addr && list->ifa_addr->sa_family == family)
			return list;
	return NULL;
}

static int has_addr6(struct ifaddrs *list, const struct in6_addr *a) {
	for (; list; list = list->ifa_next)
		if (list->ifa_addr && list->ifa_addr->sa_family == AF_INET6 &&
				memcmp(&((struct sockaddr_in6 *) list->ifa_addr)->sin6_addr, a, 16) == 0)
			return 1;
	return 0;
}

int main(int argc, char *argv[]) {
	CHECK(argc == 3);
	struct ioth *s = ioth_newstack(argv[1], argv[2]);
	CHECK(s != NULL);
	CHECK(ioth_if_nametoindex(s, "lo") == 1);
	int idx = ioth_if_nametoindex(s, "vde0");
	CHECK(idx > 1);
	CHECK_ERRNO(ioth_if_nametoindex(s, "nosuch0"), ENODEV);

	/* up, MTU, MAC */
	CHECK(ioth_linksetupdown(s, idx, 1) == 0);
	CHECK(ioth_linksetmtu(s, idx, 1400) == 0);
	unsigned char mac[6] = {0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01}, got[6] = {0};
	CHECK(ioth_linksetaddr(s, idx, mac) == 0);
	CHECK(ioth_linkgetaddr(s, idx, got) == 0);
	CHECK(memcmp(mac, got, 6) == 0);
	CHECK_ERRNO(ioth_linksetupdown(s, 4242, 1), ENODEV);
	CHECK_ERRNO(ioth_linksetmtu(s, 4242, 1400), ENODEV);
	CHECK_ERRNO(ioth_linkgetaddr(s, 4242, got), ENODEV);

	/* addresses */
	uint8_t a4[4] = {10, 55, 0, 1}, gw4[4] = {10, 55, 0, 254}, net4[4] = {10, 66, 0, 0};
	uint8_t other[4] = {10, 55, 0, 99};
	struct in6_addr a6, gw6;
	inet_pton(AF_INET6, "fd00:55::1", &a6);
	inet_pton(AF_INET6, "fd00:55::fe", &gw6);
	CHECK(ioth_ipaddr_add(s, AF_INET, a4, 24, idx) == 0);
	CHECK(ioth_ipaddr_add(s, AF_INET6, &a6, 64, idx) == 0);
	CHECK_ERRNO(ioth_ipaddr_add(s, AF_INET, a4, 24, idx), EEXIST);
	CHECK_ERRNO(ioth_ipaddr_add(s, AF_INET, a4, 33, idx), EINVAL);
	struct in6_addr a6x;
	inet_pton(AF_INET6, "fd00:55::2", &a6x);
	CHECK_ERRNO(ioth_ipaddr_add(s, AF_INET6, &a6x, 129, idx), EINVAL);
	CHECK_ERRNO(ioth_ipaddr_add(s, AF_UNIX, a4, 24, idx), EINVAL);
	CHECK_ERRNO(ioth_ipaddr_add(s, AF_INET, a4, 24, 4242), ENODEV);
	CHECK_ERRNO(ioth_ipaddr_del(s, AF_INET, other, 24, idx), EADDRNOTAVAIL);

	/* routes */
	CHECK(ioth_iproute_add(s, AF_INET, NULL, 0, gw4, 0) == 0);
	CHECK(ioth_iproute_add(s, AF_INET, net4, 16, gw4, 0) == 0);
	CHECK(ioth_iproute_add(s, AF_INET6, NULL, 0, &gw6, idx) == 0);
	CHECK_ERRNO(ioth_iproute_add(s, AF_INET, NULL, 0, gw4, 0), EEXIST);
	CHECK_ERRNO(ioth_iproute_add(s, AF_INET, net4, 40, gw4, 0), EINVAL);
	CHECK_ERRNO(ioth_iproute_add(s, AF_INET, NULL, 0, NULL, 0), ENODEV); /* the kernel's: no gateway, no device */

	/* getifaddrs */
	struct ifaddrs *mine = NULL;
	CHECK(ioth_getifaddrs(s, &mine) == 0);
	CHECK(mine != NULL);
	struct ifaddrs *p = find(mine, "vde0", AF_PACKET);
	CHECK(p != NULL);
	struct sockaddr_ll *ll = (struct sockaddr_ll *) p->ifa_addr;
	CHECK(ll->sll_ifindex == idx && ll->sll_halen == 6 && memcmp(ll->sll_addr, mac, 6) == 0);
	CHECK(p->ifa_flags & IFF_UP);
	struct ifaddrs *i4 = find(mine, "vde0", AF_INET);
	CHECK(i4 != NULL);
	CHECK(memcmp(&((struct sockaddr_in *) i4->ifa_addr)->sin_addr, a4, 4) == 0);
	CHECK(((struct sockaddr_in *) i4->ifa_netmask)->sin_addr.s_addr == htonl(0xffffff00));
	CHECK(has_addr6(mine, &a6));
	struct ifaddrs *lo4 = find(mine, "lo", AF_INET);
	CHECK(lo4 != NULL);
	CHECK(((struct sockaddr_in *) lo4->ifa_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
	CHECK(find(mine, "lo", AF_INET6) != NULL);
	ioth_freeifaddrs(mine);

	/* undo everything */
	CHECK(ioth_iproute_del(s, AF_INET, NULL, 0, gw4, 0) == 0);
	CHECK(ioth_iproute_del(s, AF_INET, net4, 16, gw4, 0) == 0);
	CHECK(ioth_iproute_del(s, AF_INET6, NULL, 0, &gw6, 0) == 0);
	CHECK_ERRNO(ioth_iproute_del(s, AF_INET, NULL, 0, gw4, 0), ESRCH);
	CHECK(ioth_ipaddr_del(s, AF_INET, a4, 24, idx) == 0);
	CHECK(ioth_ipaddr_del(s, AF_INET6, &a6, 64, idx) == 0);
	CHECK_ERRNO(ioth_ipaddr_del(s, AF_INET, a4, 24, idx), EADDRNOTAVAIL);
	struct ifaddrs *left = NULL;
	CHECK(ioth_getifaddrs(s, &left) == 0);
	CHECK(find(left, "vde0", AF_INET) == NULL);
	CHECK(!has_addr6(left, &a6));
	ioth_freeifaddrs(left);
	CHECK(ioth_delstack(s) == 0);
	printf("ok\n");
	return 0;
}
