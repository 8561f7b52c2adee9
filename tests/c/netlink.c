/*
 * Netlink configuration through the C ABI of libioth.so, on a kernel stack.
 *
 * Run it under `unshare -n` (tests/netlink.rs does): the program and its stack's host then share
 * a private network namespace, so glibc's own getifaddrs() and `ip` are independent witnesses of
 * what ioth_getifaddrs() reports. Prints "ALL OK" and exits 0 on success; on the first failed
 * check prints what failed and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ioth.h"

static int failures;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK(%s) failed (errno %d: %s)\n", \
				__FILE__, __LINE__, #cond, errno, strerror(errno)); \
		exit(1); \
	} \
} while (0)

/* expect `call` to return -1 with errno `e` */
#define FAILS(call, e) do { \
	errno = 0; \
	int r_ = (call); \
	if (r_ != -1 || errno != (e)) { \
		fprintf(stderr, "%s:%d: %s returned %d errno %d (%s), expected -1 errno %d (%s)\n", \
				__FILE__, __LINE__, #call, r_, errno, strerror(errno), (e), strerror(e)); \
		exit(1); \
	} \
} while (0)

/* nlinline's packing, from ioth.h */
#define addrdata2prefix nl_addrdata2prefix

/* one getifaddrs entry, in words: "name family address netmask flags" */
static void describe(const struct ifaddrs *i, char *out, size_t len) {
	char a[INET6_ADDRSTRLEN] = "-", m[INET6_ADDRSTRLEN] = "-";
	int family = i->ifa_addr ? i->ifa_addr->sa_family : -1;
	if (family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, a, sizeof a);
		if (i->ifa_netmask)
			inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_netmask)->sin_addr, m, sizeof m);
	} else if (family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *) i->ifa_addr)->sin6_addr, a, sizeof a);
		if (i->ifa_netmask)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) i->ifa_netmask)->sin6_addr, m, sizeof m);
	} else if (family == AF_PACKET) {
		struct sockaddr_ll *ll = (struct sockaddr_ll *) i->ifa_addr;
		char *p = a;
		for (int k = 0; k < ll->sll_halen && k < 8; k++)
			p += sprintf(p, k ? ":%02x" : "%02x", ll->sll_addr[k]);
		snprintf(m, sizeof m, "idx%d", ll->sll_ifindex);
	}
	snprintf(out, len, "%s %d %s %s 0x%x", i->ifa_name, family, a, m, i->ifa_flags);
}

static int count(struct ifaddrs *list) {
	int n = 0;
	for (; list; list = list->ifa_next)
		n++;
	return n;
}

/* every entry of `a` is in `b` (same name, family, address, netmask, flags) */
static int contained(struct ifaddrs *a, struct ifaddrs *b) {
	char da[256], db[256];
	for (struct ifaddrs *i = a; i; i = i->ifa_next) {
		int found = 0;
		describe(i, da, sizeof da);
		for (struct ifaddrs *j = b; j && !found; j = j->ifa_next) {
			describe(j, db, sizeof db);
			found = strcmp(da, db) == 0;
		}
		if (!found) {
			fprintf(stderr, "entry not found: %s\n", da);
			return 0;
		}
	}
	return 1;
}

static struct ifaddrs *find(struct ifaddrs *list, const char *name, int family) {
	for (; list; list = list->ifa_next)
		if (strcmp(list->ifa_name, name) == 0 && list->ifa_addr && list->ifa_addr->sa_family == family)
			return list;
	return NULL;
}

int main(void) {
	struct ioth *s = ioth_newstack("kernel", NULL);
	CHECK(s != NULL);
	CHECK(ioth_stack_pid(s) > 0);

	/* lo everywhere; NULL = the default stack (here the process's own kernel stack, which
	 * shares the namespace) */
	CHECK(ioth_if_nametoindex(s, "lo") == 1);
	CHECK(ioth_if_nametoindex(NULL, "lo") == 1);
	FAILS(ioth_if_nametoindex(s, "nosuch0"), ENODEV);
	CHECK(ioth_linksetupdown(s, 1, 1) == 0);

	/* links: a bridge, and one made with an IFLA_INFO_DATA attribute (nlinline's
	 * struct nl_iplink_data) */
	CHECK(ioth_iplink_add(s, "cbr0", 0, "bridge", NULL, 0) == 0);
	int br = ioth_if_nametoindex(s, "cbr0");
	CHECK(br > 1);
	CHECK(if_nametoindex("cbr0") == (unsigned) br); /* glibc agrees */
	uint32_t delay = 1000;
	struct nl_iplink_data fwd = {IFLA_BR_FORWARD_DELAY, sizeof delay, &delay};
	CHECK(ioth_iplink_add(s, "cbr1", 0, "bridge", &fwd, 1) == 0);
	CHECK(ioth_if_nametoindex(s, "cbr1") > br);
	CHECK(system("ip -d link show cbr1 | grep -q 'forward_delay 1000 '") == 0);
	FAILS(ioth_iplink_add(s, "cbr0", 0, "bridge", NULL, 0), EEXIST);
	FAILS(ioth_iplink_add(s, "cx0", 0, NULL, NULL, 0), EINVAL);
	/* a raw request through ioth_nldialog: RTM_GETLINK of cbr0 answers its index */
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} get;
	memset(&get, 0, sizeof get);
	get.h.nlmsg_len = sizeof get;
	get.h.nlmsg_type = RTM_GETLINK;
	get.h.nlmsg_flags = NLM_F_REQUEST;
	get.i.ifi_index = br;
	CHECK(ioth_nldialog(s, &get) == br);
	get.i.ifi_index = 4242;
	FAILS(ioth_nldialog(s, &get), ENODEV);

	/* up, MTU, MAC */
	CHECK(ioth_linksetupdown(s, br, 1) == 0);
	CHECK(ioth_linksetmtu(s, br, 1400) == 0);
	unsigned char mac[6] = {0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01}, got[6] = {0};
	CHECK(ioth_linksetaddr(s, br, mac) == 0);
	CHECK(ioth_linkgetaddr(s, br, got) == 0);
	CHECK(memcmp(mac, got, 6) == 0);
	char macs[MAC_ADDRSTRLEN];
	printf("cbr0 mac %s\n", ioth_ntomac(got, macs, sizeof macs));
	FAILS(ioth_linksetupdown(s, 4242, 1), ENODEV);
	FAILS(ioth_linksetmtu(s, 4242, 1400), ENODEV);
	FAILS(ioth_linkgetaddr(s, 4242, got), ENODEV);

	/* addresses */
	uint8_t a4[4] = {10, 55, 0, 1}, gw4[4] = {10, 55, 0, 254}, net4[4] = {10, 66, 0, 0};
	struct in6_addr a6, gw6;
	inet_pton(AF_INET6, "fd00:55::1", &a6);
	inet_pton(AF_INET6, "fd00:55::fe", &gw6);
	CHECK(ioth_ipaddr_add(s, AF_INET, a4, 24, br) == 0);
	/* a test of the flag: nlinline's packing carries IFA_F_NODAD, and the kernel has it */
	CHECK(ioth_ipaddr_add(s, AF_INET6, &a6, addrdata2prefix(64, IFA_F_NODAD, 0), br) == 0);
	CHECK(system("ip -6 addr show dev cbr0 | grep 'fd00:55::1/64' | grep -q nodad") == 0);
	FAILS(ioth_ipaddr_add(s, AF_INET, a4, 24, br), EEXIST);
	FAILS(ioth_ipaddr_add(s, AF_INET, a4, 33, br), EINVAL);
	struct in6_addr a6x;
	inet_pton(AF_INET6, "fd00:55::2", &a6x);
	FAILS(ioth_ipaddr_add(s, AF_INET6, &a6x, 129, br), EINVAL);
	FAILS(ioth_ipaddr_add(s, AF_UNIX, a4, 24, br), EINVAL);
	FAILS(ioth_ipaddr_add(s, AF_INET, a4, 24, 4242), ENODEV);
	uint8_t other[4] = {10, 55, 0, 99};
	FAILS(ioth_ipaddr_del(s, AF_INET, other, 24, br), EADDRNOTAVAIL);

	/* routes: default via a gateway on the bridge's subnet, a network, IPv6 default */
	CHECK(ioth_iproute_add(s, AF_INET, NULL, 0, gw4, 0) == 0);
	CHECK(ioth_iproute_add(s, AF_INET, net4, 16, gw4, 0) == 0);
	CHECK(ioth_iproute_add(s, AF_INET6, NULL, 0, &gw6, br) == 0);
	FAILS(ioth_iproute_add(s, AF_INET, NULL, 0, gw4, 0), EEXIST);
	FAILS(ioth_iproute_add(s, AF_INET, net4, 40, gw4, 0), EINVAL);
	FAILS(ioth_iproute_add(s, AF_INET, NULL, 0, NULL, 0), ENODEV); /* the kernel: no gateway, no device */

	fflush(stdout);
	CHECK(system("ip -o addr show dev cbr0; ip route; ip -6 route show default") == 0);
	fflush(stdout);

	/* getifaddrs, checked against glibc's own in the same namespace */
	struct ifaddrs *mine = NULL, *theirs = NULL;
	CHECK(ioth_getifaddrs(s, &mine) == 0);
	CHECK(mine != NULL);
	CHECK(getifaddrs(&theirs) == 0);
	char line[256];
	for (struct ifaddrs *i = mine; i; i = i->ifa_next) {
		describe(i, line, sizeof line);
		printf("ifaddr %s\n", line);
		CHECK(i->ifa_data == NULL);
	}
	CHECK(count(mine) == count(theirs));
	CHECK(contained(mine, theirs));
	CHECK(contained(theirs, mine));

	struct ifaddrs *p = find(mine, "cbr0", AF_PACKET);
	CHECK(p != NULL);
	struct sockaddr_ll *ll = (struct sockaddr_ll *) p->ifa_addr;
	CHECK(ll->sll_ifindex == br && ll->sll_halen == 6 && memcmp(ll->sll_addr, mac, 6) == 0);
	CHECK(p->ifa_flags & IFF_UP);
	CHECK(p->ifa_broadaddr != NULL);
	CHECK(memcmp(((struct sockaddr_ll *) p->ifa_broadaddr)->sll_addr, "\xff\xff\xff\xff\xff\xff", 6) == 0);
	struct ifaddrs *i4 = find(mine, "cbr0", AF_INET);
	CHECK(i4 != NULL);
	CHECK(memcmp(&((struct sockaddr_in *) i4->ifa_addr)->sin_addr, a4, 4) == 0);
	CHECK(((struct sockaddr_in *) i4->ifa_netmask)->sin_addr.s_addr == htonl(0xffffff00));
	struct ifaddrs *i6 = find(mine, "cbr0", AF_INET6);
	int seen_a6 = 0;
	for (struct ifaddrs *i = mine; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET6 &&
				memcmp(&((struct sockaddr_in6 *) i->ifa_addr)->sin6_addr, &a6, 16) == 0)
			seen_a6 = 1;
	CHECK(i6 != NULL && seen_a6);
	CHECK(find(mine, "cbr1", AF_PACKET) != NULL);
	CHECK(find(mine, "lo", AF_INET) != NULL);
	ioth_freeifaddrs(mine);
	freeifaddrs(theirs);
	ioth_freeifaddrs(NULL);

	/* undo everything */
	CHECK(ioth_iproute_del(s, AF_INET, NULL, 0, gw4, 0) == 0);
	CHECK(ioth_iproute_del(s, AF_INET, net4, 16, gw4, 0) == 0);
	CHECK(ioth_iproute_del(s, AF_INET6, NULL, 0, &gw6, 0) == 0);
	FAILS(ioth_iproute_del(s, AF_INET, NULL, 0, gw4, 0), ESRCH);
	CHECK(ioth_ipaddr_del(s, AF_INET, a4, 24, br) == 0);
	CHECK(ioth_ipaddr_del(s, AF_INET6, &a6, 64, br) == 0);
	FAILS(ioth_ipaddr_del(s, AF_INET, a4, 24, br), EADDRNOTAVAIL);
	CHECK(ioth_iplink_del(s, "cbr1", 0) == 0);
	FAILS(ioth_if_nametoindex(s, "cbr1"), ENODEV);
	CHECK(ioth_iplink_del(s, NULL, br) == 0);
	FAILS(ioth_iplink_del(s, "cbr0", 0), ENODEV);
	FAILS(ioth_iplink_del(s, NULL, 0), EINVAL);

	struct ifaddrs *left = NULL;
	CHECK(ioth_getifaddrs(s, &left) == 0);
	for (struct ifaddrs *i = left; i; i = i->ifa_next)
		CHECK(strcmp(i->ifa_name, "lo") == 0);
	ioth_freeifaddrs(left);

	CHECK(ioth_delstack(s) == 0);
	if (failures == 0)
		printf("ALL OK\n");
	return failures != 0;
}
