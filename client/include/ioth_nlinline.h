/*
 * ioth_nlinline.h — network configuration over netlink in inline functions: the nlinline API
 * (link up/down, MAC, MTU, addresses, routes, links), written for ioth.
 *
 * <ioth.h> includes this header, so a program written for the original libioth, whose <ioth.h>
 * includes <nlinline+.h>, finds the same names here:
 *   - the headers nlinline brings in: <stdio.h>, <unistd.h>, <errno.h>, <string.h>,
 *     <sys/types.h>, <sys/socket.h>, <linux/if.h>, <linux/if_link.h>, <linux/if_addr.h>,
 *     <linux/netlink.h>, <linux/rtnetlink.h>;
 *   - struct nl_iplink_data, nl_iplink_strdata(), nl_addrdata2prefix(), nl_routedata2prefix()
 *     (same encoding as nlinline's: a value built by either header means the same to both);
 *   - the nlinline_* functions, on the process's own kernel stack;
 *   - msocket_t and the macros NLINLINE_LIB, NLINLINE_LIBCOMP, NLINLINE_LIBMULTI and
 *     NLINLINE_LIBMULTICOMP, which define the same functions on any socket library
 *     (ioth.h defines the ioth_* family with NLINLINE_LIBMULTI(ioth_)).
 * A program may include nlinline's own <nlinline.h> or <nlinline+.h> before or after this
 * header: whichever comes first defines the shared names, and the other skips them.
 *
 * Every function opens a NETLINK_ROUTE socket, sends one request, reads the answer and closes
 * the socket. It returns 0 (if_nametoindex: the index; ioth_nldialog/nlinline_nldialog: the
 * answer's value) or -1 with errno: the stack's errno for a refused request (EEXIST, ENODEV,
 * EADDRNOTAVAIL, ...), EINVAL for a family that is neither AF_INET nor AF_INET6, EMSGSIZE for a
 * request that does not fit in IOTH_NL_MAXMSG bytes, EPROTO for an answer that is not netlink.
 */
#ifndef IOTH_NLINLINE_H
#define IOTH_NLINLINE_H

#include <stdio.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- shared with nlinline.h */
#ifndef NLINLINE_H
#define NLINLINE_H
#define IOTH_NLINLINE_DEFINES_BASE
#define IOTH_NLINLINE_DATA
#elif !defined(NLINLINE_ADDRDATA2PREFIX_MAGIC)
/* nlinline.h of a release before nl_addrdata2prefix and struct nl_iplink_data came first
 * (Debian's 0.2.2, say): it defined its nlinline_* functions; the newer names come from here. */
#define IOTH_NLINLINE_DATA
#endif

#ifdef IOTH_NLINLINE_DATA

/* One attribute of IFLA_INFO_DATA for iplink_add: tag, length of data, data. */
struct nl_iplink_data {
	int tag;
	int len;
	const void *data;
};

/* A string attribute for iplink_add, as the last two arguments (ifd, nifd). C only. */
#define nl_iplink_strdata(t, s) &(struct nl_iplink_data) {(t), (int) strlen(s) + 1, (s)}, 1

/* The prefix length argument of ipaddr_add/del and iproute_add/del may carry more: an address's
 * flags (IFA_F_*) and scope, a route's type (RTN_*) and scope. Bits 24-31 hold a mark that says
 * so (0x70 for addresses, 0x60 for routes), bits 16-23 the flags or type, bits 8-15 the scope,
 * bits 0-7 the prefix length. A plain prefix length (< 256) means flags 0 (type unicast) and
 * the universe scope. */
#define NLINLINE_ADDRDATA2PREFIX_MAGIC 0x70
#define NLINLINE_ROUTEDATA2PREFIX_MAGIC 0x60

static inline int nl_addrdata2prefix(unsigned char prefixlen, unsigned char flags, unsigned char scope) {
	return (int) ((unsigned int) NLINLINE_ADDRDATA2PREFIX_MAGIC << 24 |
			(unsigned int) flags << 16 | (unsigned int) scope << 8 | prefixlen);
}

static inline int nl_routedata2prefix(unsigned char prefixlen, unsigned char type, unsigned char scope) {
	return (int) ((unsigned int) NLINLINE_ROUTEDATA2PREFIX_MAGIC << 24 |
			(unsigned int) type << 16 | (unsigned int) scope << 8 | prefixlen);
}
#endif /* IOTH_NLINLINE_DATA */

/* ---------------------------------------------------------------- the implementation */

/* Largest request built here, and the room for an answer. */
#define IOTH_NL_MAXMSG 4096
#define IOTH_NL_MAXREPLY 32768

typedef int iothnl_msocket_fn(void *, int, int, int);

/* How a request reaches a stack: msocket(mstack, ...) when msocket is set, else socket(...);
 * then bind, send, recv and close on the fd. (Plain prototypes, not __typeof__ of the C
 * library's: those carry a transparent union in C with _GNU_SOURCE and noexcept in C++.) */
struct iothnl_ops {
	iothnl_msocket_fn *msocket;
	void *mstack;
	int (*socket)(int, int, int);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*recv)(int, void *, size_t, int);
	int (*close)(int);
};

/* A request being built. */
struct iothnl_req {
	union {
		struct nlmsghdr h;
		unsigned char b[IOTH_NL_MAXMSG];
	} u;
	int overflow;
};

static inline void *iothnl_begin(struct iothnl_req *r, unsigned short type, unsigned short flags,
		const void *hdr, size_t hdrlen) {
	memset(&r->u.h, 0, sizeof(r->u.h));
	r->overflow = 0;
	r->u.h.nlmsg_len = NLMSG_LENGTH(hdrlen);
	r->u.h.nlmsg_type = type;
	r->u.h.nlmsg_flags = (unsigned short) (NLM_F_REQUEST | flags);
	r->u.h.nlmsg_seq = 1;
	memcpy(NLMSG_DATA(&r->u.h), hdr, hdrlen);
	return NLMSG_DATA(&r->u.h);
}

/* Appends attribute type with len bytes of data; returns its offset (for iothnl_nest_end). */
static inline unsigned int iothnl_attr(struct iothnl_req *r, unsigned short type, const void *data, size_t len) {
	unsigned int off = NLMSG_ALIGN(r->u.h.nlmsg_len);
	size_t total = NLA_HDRLEN + len;
	if (r->overflow || off + NLA_ALIGN(total) > sizeof(r->u.b)) {
		r->overflow = 1;
		return 0;
	}
	struct nlattr *a = (struct nlattr *) (r->u.b + off);
	a->nla_len = (unsigned short) total;
	a->nla_type = type;
	if (len > 0)
		memcpy(r->u.b + off + NLA_HDRLEN, data, len);
	memset(r->u.b + off + total, 0, NLA_ALIGN(total) - total);
	r->u.h.nlmsg_len = off + (unsigned int) NLA_ALIGN(total);
	return off;
}

static inline void iothnl_nest_end(struct iothnl_req *r, unsigned int off) {
	if (!r->overflow) {
		struct nlattr *a = (struct nlattr *) (r->u.b + off);
		a->nla_len = (unsigned short) (r->u.h.nlmsg_len - off);
	}
}

static inline int iothnl_family_len(int family) {
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

static inline int iothnl_close_keep_errno(const struct iothnl_ops *ops, int fd) {
	int e = errno;
	ops->close(fd);
	errno = e;
	return -1;
}

/* Opens a NETLINK_ROUTE socket on the stack and sends msg; returns the fd or -1. */
static inline int iothnl_open_send(const struct iothnl_ops *ops, const struct nlmsghdr *msg) {
	struct sockaddr_nl sanl;
	int fd;
	memset(&sanl, 0, sizeof(sanl));
	sanl.nl_family = AF_NETLINK;
	if (msg->nlmsg_len < NLMSG_HDRLEN)
		return errno = EINVAL, -1;
	if (ops->msocket)
		fd = ops->msocket(ops->mstack, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	else
		fd = ops->socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -1;
	if (ops->bind(fd, (struct sockaddr *) &sanl, sizeof(sanl)) < 0)
		return iothnl_close_keep_errno(ops, fd);
	if (ops->send(fd, msg, msg->nlmsg_len, 0) < 0)
		return iothnl_close_keep_errno(ops, fd);
	return fd;
}

/* Reads the answers on fd until one settles the request: an NLMSG_ERROR (returns its code, 0
 * for an acknowledgement, or -1 with errno) or a message of type want (copied to out, which has
 * room for outlen bytes; returns 0 and sets *got to the length copied, else *got is 0). */
static inline int iothnl_answer(const struct iothnl_ops *ops, int fd, unsigned short want,
		void *out, size_t outlen, size_t *got) {
	const int rounds = 16;
	unsigned char buf[IOTH_NL_MAXREPLY];
	*got = 0;
	for (int round = 0; round < rounds; round++) {
		ssize_t n = ops->recv(fd, buf, sizeof(buf), 0);
		if (n < 0)
			return -1;
		if (n == 0)
			return errno = EPROTO, -1;
		int left = (int) n;
		for (struct nlmsghdr *h = (struct nlmsghdr *) buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
					return errno = EPROTO, -1;
				struct nlmsgerr *e = (struct nlmsgerr *) NLMSG_DATA(h);
				if (e->error < 0)
					return errno = -e->error, -1;
				return e->error;
			}
			if (h->nlmsg_type == NLMSG_DONE)
				return errno = ENOENT, -1;
			if (want != 0 && h->nlmsg_type == want) {
				size_t len = h->nlmsg_len < outlen ? h->nlmsg_len : outlen;
				memcpy(out, h, len);
				*got = len;
				return 0;
			}
		}
	}
	return errno = EPROTO, -1;
}

/* Sends msg to the stack and returns its answer: the index of the link of an RTM_NEWLINK
 * answer, or the code of an NLMSG_ERROR answer (0 for an acknowledgement), or -1 with errno. */
static inline int iothnl_dialog(const struct iothnl_ops *ops, const void *msg) {
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} link;
	size_t got;
	int fd = iothnl_open_send(ops, (const struct nlmsghdr *) msg);
	if (fd < 0)
		return -1;
	int r = iothnl_answer(ops, fd, RTM_NEWLINK, &link, sizeof(link), &got);
	if (r >= 0 && got > 0)
		r = got >= sizeof(link) ? link.i.ifi_index : (errno = EPROTO, -1);
	if (r < 0)
		return iothnl_close_keep_errno(ops, fd);
	ops->close(fd);
	return r;
}

static inline int iothnl_send_req(const struct iothnl_ops *ops, struct iothnl_req *r) {
	if (r->overflow)
		return errno = EMSGSIZE, -1;
	return iothnl_dialog(ops, &r->u.h);
}

static inline int iothnl_link(const struct iothnl_ops *ops, unsigned short type, unsigned short flags,
		int ifindex, unsigned int ifflags, unsigned int change, const char *ifname) {
	struct iothnl_req r;
	struct ifinfomsg i;
	memset(&i, 0, sizeof(i));
	i.ifi_family = AF_UNSPEC;
	i.ifi_index = ifindex;
	i.ifi_flags = ifflags;
	i.ifi_change = change;
	iothnl_begin(&r, type, flags, &i, sizeof(i));
	if (ifname)
		iothnl_attr(&r, IFLA_IFNAME, ifname, strlen(ifname) + 1);
	return iothnl_send_req(ops, &r);
}

static inline int iothnl_if_nametoindex(const struct iothnl_ops *ops, const char *ifname) {
	if (ifname == NULL)
		return errno = EINVAL, -1;
	char name[IFNAMSIZ];
	snprintf(name, sizeof(name), "%s", ifname);
	return iothnl_link(ops, RTM_GETLINK, NLM_F_ACK, 0, 0, 0, name);
}

static inline int iothnl_linksetupdown(const struct iothnl_ops *ops, unsigned int ifindex, int updown) {
	return iothnl_link(ops, RTM_SETLINK, NLM_F_ACK, (int) ifindex, updown ? IFF_UP : 0, IFF_UP, NULL);
}

static inline int iothnl_linkset(const struct iothnl_ops *ops, unsigned int ifindex,
		unsigned short attr, const void *data, size_t len) {
	struct iothnl_req r;
	struct ifinfomsg i;
	memset(&i, 0, sizeof(i));
	i.ifi_family = AF_UNSPEC;
	i.ifi_index = (int) ifindex;
	iothnl_begin(&r, RTM_NEWLINK, NLM_F_ACK, &i, sizeof(i));
	iothnl_attr(&r, attr, data, len);
	return iothnl_send_req(ops, &r);
}

static inline int iothnl_linksetaddr(const struct iothnl_ops *ops, unsigned int ifindex, void *macaddr) {
	if (macaddr == NULL)
		return errno = EINVAL, -1;
	return iothnl_linkset(ops, ifindex, IFLA_ADDRESS, macaddr, 6);
}

static inline int iothnl_linksetmtu(const struct iothnl_ops *ops, unsigned int ifindex, unsigned int mtu) {
	return iothnl_linkset(ops, ifindex, IFLA_MTU, &mtu, sizeof(mtu));
}

static inline int iothnl_linkgetaddr(const struct iothnl_ops *ops, unsigned int ifindex, void *macaddr) {
	struct iothnl_req r;
	struct ifinfomsg i;
	unsigned char answer[4096];
	size_t got;
	if (macaddr == NULL)
		return errno = EINVAL, -1;
	memset(&i, 0, sizeof(i));
	i.ifi_family = AF_UNSPEC;
	i.ifi_index = (int) ifindex;
	iothnl_begin(&r, RTM_GETLINK, 0, &i, sizeof(i));
	int fd = iothnl_open_send(ops, &r.u.h);
	if (fd < 0)
		return -1;
	/* the attributes past the first 4 KiB are not needed: IFLA_ADDRESS comes early */
	if (iothnl_answer(ops, fd, RTM_NEWLINK, answer, sizeof(answer), &got) < 0)
		return iothnl_close_keep_errno(ops, fd);
	ops->close(fd);
	if (got < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
		return errno = got == 0 ? ENODEV : EPROTO, -1;
	int left = (int) (got - NLMSG_LENGTH(sizeof(struct ifinfomsg)));
	struct rtattr *a = IFLA_RTA((struct ifinfomsg *) NLMSG_DATA((struct nlmsghdr *) answer));
	for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
		if (a->rta_type == IFLA_ADDRESS && RTA_PAYLOAD(a) >= 6) {
			memcpy(macaddr, RTA_DATA(a), 6);
			return 0;
		}
	}
	return errno = ENOENT, -1;
}

static inline int iothnl_ipaddr(const struct iothnl_ops *ops, unsigned short type, unsigned short flags,
		int family, void *addr, int prefixlen, unsigned int ifindex) {
	int alen = iothnl_family_len(family);
	struct iothnl_req r;
	struct ifaddrmsg a;
	if (alen == 0)
		return errno = EINVAL, -1;
	if (addr == NULL)
		return errno = EINVAL, -1;
	memset(&a, 0, sizeof(a));
	a.ifa_family = (unsigned char) family;
	a.ifa_prefixlen = (unsigned char) prefixlen;
	a.ifa_scope = RT_SCOPE_UNIVERSE;
	a.ifa_index = ifindex;
	if (((unsigned int) prefixlen >> 24) == NLINLINE_ADDRDATA2PREFIX_MAGIC) {
		a.ifa_scope = (unsigned char) ((unsigned int) prefixlen >> 8);
		a.ifa_flags = (unsigned char) ((unsigned int) prefixlen >> 16);
	}
	iothnl_begin(&r, type, (unsigned short) (NLM_F_ACK | flags), &a, sizeof(a));
	iothnl_attr(&r, IFA_LOCAL, addr, (size_t) alen);
	iothnl_attr(&r, IFA_ADDRESS, addr, (size_t) alen);
	return iothnl_send_req(ops, &r);
}

static inline int iothnl_iproute(const struct iothnl_ops *ops, unsigned short type, unsigned short flags,
		int family, void *dst_addr, int dst_prefixlen, void *gw_addr, unsigned int ifindex) {
	int alen = iothnl_family_len(family);
	struct iothnl_req r;
	struct rtmsg m;
	if (alen == 0)
		return errno = EINVAL, -1;
	memset(&m, 0, sizeof(m));
	m.rtm_family = (unsigned char) family;
	m.rtm_dst_len = (unsigned char) dst_prefixlen;
	m.rtm_table = RT_TABLE_MAIN;
	m.rtm_protocol = RTPROT_BOOT;
	m.rtm_scope = RT_SCOPE_UNIVERSE;
	m.rtm_type = RTN_UNICAST;
	if (((unsigned int) dst_prefixlen >> 24) == NLINLINE_ROUTEDATA2PREFIX_MAGIC) {
		m.rtm_scope = (unsigned char) ((unsigned int) dst_prefixlen >> 8);
		m.rtm_type = (unsigned char) ((unsigned int) dst_prefixlen >> 16);
	}
	iothnl_begin(&r, type, (unsigned short) (NLM_F_ACK | flags), &m, sizeof(m));
	if (ifindex != 0)
		iothnl_attr(&r, RTA_OIF, &ifindex, sizeof(ifindex));
	if (m.rtm_dst_len > 0) {
		if (dst_addr == NULL)
			return errno = EINVAL, -1;
		iothnl_attr(&r, RTA_DST, dst_addr, (size_t) alen);
	}
	if (gw_addr != NULL)
		iothnl_attr(&r, RTA_GATEWAY, gw_addr, (size_t) alen);
	return iothnl_send_req(ops, &r);
}

/* ifindex (unsigned) -1 asks the stack for the new link's index as the answer. */
static inline int iothnl_iplink_add(const struct iothnl_ops *ops, const char *ifname, unsigned int ifindex,
		const char *type, const struct nl_iplink_data *ifd, int nifd) {
	struct iothnl_req r;
	struct ifinfomsg i;
	if (type == NULL || nifd < 0 || (nifd > 0 && ifd == NULL))
		return errno = EINVAL, -1;
	memset(&i, 0, sizeof(i));
	i.ifi_family = AF_UNSPEC;
	i.ifi_index = ifindex == (unsigned int) -1 ? 0 : (int) ifindex;
	iothnl_begin(&r, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &i, sizeof(i));
	if (ifname)
		iothnl_attr(&r, IFLA_IFNAME, ifname, strlen(ifname) + 1);
	if (ifindex == (unsigned int) -1)
		iothnl_attr(&r, IFLA_NEW_IFINDEX, "", 1);
	unsigned int info = iothnl_attr(&r, IFLA_LINKINFO, NULL, 0);
	iothnl_attr(&r, IFLA_INFO_KIND, type, strlen(type) + 1);
	if (nifd > 0) {
		unsigned int data = iothnl_attr(&r, IFLA_INFO_DATA, NULL, 0);
		for (int k = 0; k < nifd; k++) {
			if (ifd[k].len < 0 || (ifd[k].len > 0 && ifd[k].data == NULL))
				return errno = EINVAL, -1;
			iothnl_attr(&r, (unsigned short) ifd[k].tag, ifd[k].data, (size_t) ifd[k].len);
		}
		iothnl_nest_end(&r, data);
	}
	iothnl_nest_end(&r, info);
	return iothnl_send_req(ops, &r);
}

static inline int iothnl_iplink_del(const struct iothnl_ops *ops, const char *ifname, unsigned int ifindex) {
	char name[IFNAMSIZ];
	if (ifname)
		snprintf(name, sizeof(name), "%s", ifname);
	return iothnl_link(ops, RTM_DELLINK, NLM_F_ACK, (int) ifindex, 0, 0, ifname ? name : NULL);
}

/* ---------------------------------------------------------------- function families */
#define __IOTH_NL_OPS(MSOCKET, MSTACK, SOCKET, Y) \
	struct iothnl_ops ops; \
	ops.msocket = (MSOCKET); \
	ops.mstack = (MSTACK); \
	ops.socket = (SOCKET); \
	ops.bind = Y ## bind; \
	ops.send = Y ## send; \
	ops.recv = Y ## recv; \
	ops.close = Y ## close

/* NAME##if_nametoindex(...) and the rest, with socket from X##socket and bind, send, recv, close
 * from Y##bind ... (Y empty: the C library's). */
#define __IOTH_NL_LIB(NAME, X, Y) \
	static inline int NAME ## if_nametoindex(const char *ifname) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); return iothnl_if_nametoindex(&ops, ifname); } \
	static inline int NAME ## linksetupdown(unsigned int ifindex, int updown) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); return iothnl_linksetupdown(&ops, ifindex, updown); } \
	static inline int NAME ## linksetaddr(unsigned int ifindex, void *macaddr) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); return iothnl_linksetaddr(&ops, ifindex, macaddr); } \
	static inline int NAME ## linkgetaddr(unsigned int ifindex, void *macaddr) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); return iothnl_linkgetaddr(&ops, ifindex, macaddr); } \
	static inline int NAME ## linksetmtu(unsigned int ifindex, unsigned int mtu) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); return iothnl_linksetmtu(&ops, ifindex, mtu); } \
	static inline int NAME ## ipaddr_add(int family, void *addr, int prefixlen, unsigned int ifindex) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); \
		return iothnl_ipaddr(&ops, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, family, addr, prefixlen, ifindex); } \
	static inline int NAME ## ipaddr_del(int family, void *addr, int prefixlen, unsigned int ifindex) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); \
		return iothnl_ipaddr(&ops, RTM_DELADDR, 0, family, addr, prefixlen, ifindex); } \
	static inline int NAME ## iproute_add(int family, void *dst_addr, int dst_prefixlen, void *gw_addr, unsigned int ifindex) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); \
		return iothnl_iproute(&ops, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, family, dst_addr, dst_prefixlen, gw_addr, ifindex); } \
	static inline int NAME ## iproute_del(int family, void *dst_addr, int dst_prefixlen, void *gw_addr, unsigned int ifindex) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); \
		return iothnl_iproute(&ops, RTM_DELROUTE, 0, family, dst_addr, dst_prefixlen, gw_addr, ifindex); } \
	static inline int NAME ## iplink_add(const char *ifname, unsigned int ifindex, const char *type, struct nl_iplink_data *ifd, int nifd) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); return iothnl_iplink_add(&ops, ifname, ifindex, type, ifd, nifd); } \
	static inline int NAME ## iplink_del(const char *ifname, unsigned int ifindex) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); return iothnl_iplink_del(&ops, ifname, ifindex); } \
	static inline int NAME ## nldialog(const char *ifname, void *msg) { \
		__IOTH_NL_OPS(NULL, NULL, X ## socket, Y); (void) ifname; return iothnl_dialog(&ops, msg); }

/* The same functions with a stack as first argument: sockets from MSOCKET(mstack, ...). */
#define __IOTH_NL_LIBMULTI(X, MSOCKET, Y) \
	static inline int X ## if_nametoindex(void *mstack, const char *ifname) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_if_nametoindex(&ops, ifname); } \
	static inline int X ## linksetupdown(void *mstack, unsigned int ifindex, int updown) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_linksetupdown(&ops, ifindex, updown); } \
	static inline int X ## linksetaddr(void *mstack, unsigned int ifindex, void *macaddr) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_linksetaddr(&ops, ifindex, macaddr); } \
	static inline int X ## linkgetaddr(void *mstack, unsigned int ifindex, void *macaddr) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_linkgetaddr(&ops, ifindex, macaddr); } \
	static inline int X ## linksetmtu(void *mstack, unsigned int ifindex, unsigned int mtu) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_linksetmtu(&ops, ifindex, mtu); } \
	static inline int X ## ipaddr_add(void *mstack, int family, void *addr, int prefixlen, int ifindex) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); \
		return iothnl_ipaddr(&ops, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, family, addr, prefixlen, (unsigned int) ifindex); } \
	static inline int X ## ipaddr_del(void *mstack, int family, void *addr, int prefixlen, int ifindex) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); \
		return iothnl_ipaddr(&ops, RTM_DELADDR, 0, family, addr, prefixlen, (unsigned int) ifindex); } \
	static inline int X ## iproute_add(void *mstack, int family, void *dst_addr, int dst_prefixlen, void *gw_addr, unsigned int ifindex) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); \
		return iothnl_iproute(&ops, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, family, dst_addr, dst_prefixlen, gw_addr, ifindex); } \
	static inline int X ## iproute_del(void *mstack, int family, void *dst_addr, int dst_prefixlen, void *gw_addr, unsigned int ifindex) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); \
		return iothnl_iproute(&ops, RTM_DELROUTE, 0, family, dst_addr, dst_prefixlen, gw_addr, ifindex); } \
	static inline int X ## iplink_add(void *mstack, const char *ifname, unsigned int ifindex, const char *type, struct nl_iplink_data *ifd, int nifd) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_iplink_add(&ops, ifname, ifindex, type, ifd, nifd); } \
	static inline int X ## iplink_del(void *mstack, const char *ifname, unsigned int ifindex) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_iplink_del(&ops, ifname, ifindex); } \
	static inline int X ## nldialog(void *mstack, void *msg) { \
		__IOTH_NL_OPS(MSOCKET, mstack, NULL, Y); return iothnl_dialog(&ops, msg); }

/* ---------------------------------------------------------------- the nlinline+ surface */
#ifndef NLINLINEPLUS_H
#define NLINLINEPLUS_H

typedef int msocket_t(void *, int, int, int);

#define NLINLINE_LIB(X) __IOTH_NL_LIB(X, X, X)
#define NLINLINE_LIBCOMP(X) __IOTH_NL_LIB(X, X, )
#define NLINLINE_LIBMULTI(X) __IOTH_NL_LIBMULTI(X, (msocket_t *) X ## msocket, X)
#define NLINLINE_LIBMULTICOMP(X) __IOTH_NL_LIBMULTI(X, (msocket_t *) X ## msocket, )

/* nlinline_*: the same functions on the process's own kernel stack. Defined here unless
 * nlinline's own <nlinline.h> came first and defined them. */
#ifdef IOTH_NLINLINE_DEFINES_BASE
__IOTH_NL_LIB(nlinline_, , )
#endif
#endif /* NLINLINEPLUS_H */

#ifdef __cplusplus
}
#endif
#endif /* IOTH_NLINLINE_H */
