/* Assertions (and a loopback address helper) for the C test programs of tests/capi.rs and others: a failed CHECK prints where, what and
 * errno, and exits with status 1. */
#ifndef IOTH_TEST_CHECK_H
#define IOTH_TEST_CHECK_H
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { \
	if (!(cond)) { \
		int check_errno_ = errno; \
		fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d: %s)\n", \
				__FILE__, __LINE__, #cond, check_errno_, strerror(check_errno_)); \
		exit(1); \
	} \
} while (0)

/* call fails with -1 (or NULL, for pointers: use CHECK_NULL_ERRNO) and errno == err */
#define CHECK_ERRNO(call, err) do { \
	errno = 0; \
	long check_r_ = (long) (call); \
	int check_e_ = errno; \
	if (check_r_ != -1 || check_e_ != (err)) { \
		fprintf(stderr, "%s:%d: %s returned %ld, errno %d (%s); expected -1, errno %d (%s)\n", \
				__FILE__, __LINE__, #call, check_r_, check_e_, strerror(check_e_), \
				(err), strerror(err)); \
		exit(1); \
	} \
} while (0)

#define CHECK_NULL_ERRNO(call, err) do { \
	errno = 0; \
	void *check_p_ = (void *) (call); \
	int check_e_ = errno; \
	if (check_p_ != NULL || check_e_ != (err)) { \
		fprintf(stderr, "%s:%d: %s returned %p, errno %d (%s); expected NULL, errno %d (%s)\n", \
				__FILE__, __LINE__, #call, check_p_, check_e_, strerror(check_e_), \
				(err), strerror(err)); \
		exit(1); \
	} \
} while (0)

typedef struct sockaddr SA;

/* 127.0.0.1:port */
static inline struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

#endif
