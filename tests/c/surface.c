/*
 * The surface a C program gets from the original's <ioth.h>, compiled with -Wall -Werror against
 * an installed ioth (tests/header.rs), as C and as C++, alone and with nlinline's own headers
 * included before or after it (-DNLINLINE_FIRST / -DNLINLINE_AFTER; C only: nlinline's headers
 * are not C++).
 *
 * Run it in a private network namespace (`unshare -n`): it configures the namespace's kernel
 * stack with nlinline_* (the process's own stack) and with ioth_* on a `kernel` stack, whose
 * host shares the namespace. Prints "ok" when every check passed.
 */
#ifdef NLINLINE_FIRST
#include <nlinline+.h>
#endif
#include <ioth.h>
#ifdef NLINLINE_AFTER
#include <nlinline.h>
#include <nlinline+.h>
#endif
#include <arpa/inet.h>
#include <stdlib.h>

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d: %s)\n", \
				__FILE__, __LINE__, #cond, errno, strerror(errno)); \
		exit(1); \
	} \
} while (0)

/* the headers the original brings in: errno and its codes (ETIME, as iothconf uses), string.h,
 * stdio.h, linux/if.h, if_link.h, if_addr.h, netlink.h, rtnetlink.h */
static const int transitive[] = {
	ETIME, IFNAMSIZ, IFF_UP, IFLA_IFNAME, IFLA_LINKINFO, IFA_F_NODAD, IFA_LOCAL, NETLINK_ROUTE,
	NLM_F_REQUEST, RTM_NEWADDR, RTA_GATEWAY, RT_SCOPE_UNIVERSE, RTN_UNICAST,
	(int) sizeof(struct ifinfomsg), (int) sizeof(struct ifaddrmsg), (int) sizeof(struct rtmsg),
	(int) sizeof(struct nlmsgerr),
};

/* msocket_t: the type of a stack's socket-creating function */
static int counted;
static int my_msocket(void *stack, int domain, int type, int protocol) {
	counted++;
	return ioth_msocket((struct ioth *) stack, domain, type, protocol);
}

/* NLINLINE_LIB(X): the family on any socket library; here counting wrappers of the C library */
static int lib_calls;
static int my_socket(int d, int t, int p) { lib_calls++; return socket(d, t, p); }
static int my_bind(int fd, const struct sockaddr *a, socklen_t l) { lib_calls++; return bind(fd, a, l); }
static ssize_t my_send(int fd, const void *b, size_t n, int f) { lib_calls++; return send(fd, b, n, f); }
static ssize_t my_recv(int fd, void *b, size_t n, int f) { lib_calls++; return recv(fd, b, n, f); }
static int my_close(int fd) { lib_calls++; return close(fd); }
NLINLINE_LIB(my_)

static int has_flag(const char *dev, const char *addr, const char *flag) {
	char cmd[256];
	snprintf(cmd, sizeof cmd, "ip -6 addr show dev %s | grep -F '%s' | grep -qw %s", dev, addr, flag);
	return system(cmd) == 0;
}

int main(void) {
	CHECK(transitive[0] == ETIME && strlen(strerror(ETIME)) > 0);

	/* nlinline_* on the process's own kernel stack */
	CHECK(nlinline_if_nametoindex("lo") == 1);
	CHECK(nlinline_linksetupdown(1, 1) == 0);
	CHECK(nlinline_if_nametoindex("nosuch0") == -1 && errno == ENODEV);

	/* ioth_* on a kernel stack (its host shares this namespace) */
	struct ioth *k = ioth_newstack("kernel", NULL);
	CHECK(k != NULL);
	CHECK(ioth_iplink_add(k, "sbr0", 0, "bridge", NULL, 0) == 0);
	int br = ioth_if_nametoindex(k, "sbr0");
	CHECK(br > 1 && nlinline_if_nametoindex("sbr0") == br);
	CHECK(ioth_linksetupdown(k, br, 1) == 0);

	/* nl_addrdata2prefix: the address really has IFA_F_NODAD (and one without has not) */
	struct in6_addr a1, a2;
	inet_pton(AF_INET6, "fd00:77::1", &a1);
	inet_pton(AF_INET6, "fd00:77::2", &a2);
	CHECK(ioth_ipaddr_add(k, AF_INET6, &a1, nl_addrdata2prefix(64, IFA_F_NODAD, 0), br) == 0);
	CHECK(ioth_ipaddr_add(k, AF_INET6, &a2, 64, br) == 0);
	CHECK(has_flag("sbr0", "fd00:77::1/64", "nodad"));
	CHECK(!has_flag("sbr0", "fd00:77::2/64", "nodad"));
#if !defined(NLINLINE_FIRST)
	/* nlinline's own (older) nlinline_ipaddr_add does not decode the packing: ours does */
	struct in6_addr a3;
	inet_pton(AF_INET6, "fd00:77::3", &a3);
	CHECK(nlinline_ipaddr_add(AF_INET6, &a3, nl_addrdata2prefix(64, IFA_F_NODAD, 0), br) == 0);
	CHECK(has_flag("sbr0", "fd00:77::3/64", "nodad"));
#endif

	/* ioth_nldialog: a raw request; RTM_GETLINK answers the link's index */
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} get;
	memset(&get, 0, sizeof get);
	get.h.nlmsg_len = sizeof get;
	get.h.nlmsg_type = RTM_GETLINK;
	get.h.nlmsg_flags = NLM_F_REQUEST;
	get.i.ifi_index = br;
	CHECK(ioth_nldialog(k, &get) == br);

	/* msocket_t */
	msocket_t *ms = my_msocket;
	int fd = ms(k, AF_INET, SOCK_DGRAM, 0);
	CHECK(fd >= 0 && counted == 1);
	CHECK(ioth_close(fd) == 0);

	/* NLINLINE_LIB(my_) */
	CHECK(my_if_nametoindex("sbr0") == br);
	CHECK(lib_calls >= 5);

	CHECK(ioth_iplink_del(k, "sbr0", 0) == 0);
	CHECK(ioth_delstack(k) == 0);
	printf("ok\n");
	return 0;
}
