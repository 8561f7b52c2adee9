/* libiothaddr from C (tests/iothaddr.rs): the original header's worked examples and values
 * computed independently (Python's hashlib MD5, the byte operations done by hand), a password,
 * a one-time address, the trailing '.', iothaddr_otiptime, and NULL arguments. Prints "ok". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <iothaddr.h>

static int failures;

#define EXPECT(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		failures++; \
	} \
} while (0)

static struct in6_addr addr_of(const char *s)
{
	struct in6_addr a;
	if (inet_pton(AF_INET6, s, &a) != 1) {
		fprintf(stderr, "bad address literal %s\n", s);
		exit(1);
	}
	return a;
}

/* a, printed, equals the address literal want (compared as addresses) */
static void expect_addr(int line, const struct in6_addr *a, const char *want)
{
	struct in6_addr w = addr_of(want);
	if (memcmp(a, &w, sizeof w) != 0) {
		char got[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, a, got, sizeof got);
		fprintf(stderr, "%s:%d: got %s, expected %s\n", __FILE__, line, got, want);
		failures++;
	}
}

static void expect_mac(int line, const unsigned char *m, const char *want)
{
	char got[18];
	snprintf(got, sizeof got, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "%s:%d: got MAC %s, expected %s\n", __FILE__, line, got, want);
		failures++;
	}
}

#define NAME "test.v2.cs.unibo.it"

int main(void)
{
	struct in6_addr a;
	unsigned char mac[6];

	/* The original header's examples (its MAC example omits the local bit: 69 is really 6a). */
	a = addr_of("2000:760::");
	iothaddr_hash(&a, NAME, NULL, 0);
	expect_addr(__LINE__, &a, "2000:760::68d6:2fac:95a:5a2e");

	iothaddr_hashmac(mac, NAME, NULL);
	expect_mac(__LINE__, mac, "6a:d6:2f:5a:5a:2e");

	a = addr_of("2000:760::");
	iothaddr_hasheui64(&a, NAME, NULL);
	expect_addr(__LINE__, &a, "2000:760::68d6:2fff:fe5a:5a2e");

	a = addr_of("2000:760::");
	iothaddr_eui64(&a, mac);
	expect_addr(__LINE__, &a, "2000:760::68d6:2fff:fe5a:5a2e");

	/* One trailing '.' is not hashed. */
	a = addr_of("2000:760::");
	iothaddr_hash(&a, NAME ".", NULL, 0);
	expect_addr(__LINE__, &a, "2000:760::68d6:2fac:95a:5a2e");

	/* md5("test.v2.cs.unibo.itsecret") = dcb1b2219d577a25dc5727e50c0690bd */
	a = addr_of("2000:760::");
	iothaddr_hash(&a, NAME, "secret", 0);
	expect_addr(__LINE__, &a, "2000:760::dcb1:b221:9d57:7a25");
	iothaddr_hashmac(mac, NAME, "secret");
	expect_mac(__LINE__, mac, "de:b1:b2:57:7a:25");
	a = addr_of("2000:760::");
	iothaddr_hasheui64(&a, NAME, "secret");
	expect_addr(__LINE__, &a, "2000:760::dcb1:b2ff:fe57:7a25");

	/* md5("test.v2.cs.unibo.it" "\x12\x34\x56\x78") = 5498ab9806feba11d94207198b76f3de */
	a = addr_of("2000:760::");
	iothaddr_hash(&a, NAME, NULL, 0x12345678);
	expect_addr(__LINE__, &a, "2000:760::5498:ab98:6fe:ba11");

	/* password and time slot together, another prefix */
	a = addr_of("fc00:1:2:3::");
	iothaddr_hash(&a, NAME, "secret", 1000000);
	expect_addr(__LINE__, &a, "fc00:1:2:3:24da:2a91:3548:551f");

	/* EUI-64 of a familiar MAC, and of a prefix whose host part is not zero (bytes 8-12 replaced,
	 * 13-15 XORed, as the original does) */
	{
		unsigned char m1[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
		unsigned char m2[6] = { 0x02, 0x00, 0x00, 0x11, 0x22, 0x33 };
		a = addr_of("fe80::");
		iothaddr_eui64(&a, m1);
		expect_addr(__LINE__, &a, "fe80::5054:ff:fe12:3456");
		a = addr_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
		iothaddr_eui64(&a, m2);
		expect_addr(__LINE__, &a, "2001:db8:1:2:0:ff:fedd:ffee");
	}

	/* iothaddr_otiptime: 0 without a period, else (now + offset) / period. The clock may tick
	 * between the two readings: accept the slot of either reading. */
	EXPECT(iothaddr_otiptime(0, 0) == 0);
	EXPECT(iothaddr_otiptime(0, 12345) == 0);
	{
		time_t before = time(NULL);
		uint32_t slot = iothaddr_otiptime(60, 0);
		uint32_t shifted = iothaddr_otiptime(1, -1000);
		time_t after = time(NULL);
		EXPECT(slot >= (uint32_t) (before / 60) && slot <= (uint32_t) (after / 60));
		EXPECT(shifted >= (uint32_t) (before - 1000) && shifted <= (uint32_t) (after - 1000));
	}

	/* NULL pointers: nothing happens, nothing is written. */
	iothaddr_hash(NULL, NAME, NULL, 0);
	iothaddr_hashmac(NULL, NAME, NULL);
	iothaddr_eui64(NULL, mac);
	iothaddr_hasheui64(NULL, NAME, NULL);
	a = addr_of("2000:760::1");
	iothaddr_hash(&a, NULL, NULL, 0);
	iothaddr_hasheui64(&a, NULL, "secret");
	iothaddr_eui64(&a, NULL);
	expect_addr(__LINE__, &a, "2000:760::1");
	memset(mac, 0x55, sizeof mac);
	iothaddr_hashmac(mac, NULL, NULL);
	expect_mac(__LINE__, mac, "55:55:55:55:55:55");

	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
