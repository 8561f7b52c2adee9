/*
 * iothaddr.h — addresses derived from names, as ioth implements them (link with -liothaddr).
 *
 * Drop-in for the original libiothaddr header: same functions, same signatures, same results.
 * Every address is made of the MD5 digest H of the name (one trailing '.' left out), followed by
 * the password when passwd is not NULL, followed by otiptime as 4 big-endian bytes when it is not
 * 0. addr points to a struct in6_addr (16 bytes), mac to 6 bytes. A NULL addr, mac or name makes
 * a call do nothing.
 *
 * Example, name "test.v2.cs.unibo.it", no password, prefix 2000:760::/64
 * (H = 69d62fac095a5a2ee4c2c79f211e57e3):
 *   iothaddr_hash       2000:760::68d6:2fac:95a:5a2e
 *   iothaddr_hashmac    6a:d6:2f:5a:5a:2e   (the first byte of H with the local bit set)
 *   iothaddr_hasheui64  2000:760::68d6:2fff:fe5a:5a2e
 * See iothaddr(3).
 */
#ifndef IOTHADDR_H
#define IOTHADDR_H

#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XORs the last 64 bits of the address at addr with the first 8 bytes of H, then clears the two
 * lowest bits of byte 8 (a local, unicast interface identifier). */
void iothaddr_hash(void *addr, const char *name, const char *passwd, uint32_t otiptime);

/* Writes the MAC address H[0]:H[1]:H[2]:H[5]:H[6]:H[7] (otiptime not used), with the
 * locally-administered bit set and the group bit cleared in its first byte. */
void iothaddr_hashmac(void *mac, const char *name, const char *passwd);

/* Turns the address at addr into the EUI-64 address of the 6-byte MAC at mac: bytes 8-10 become
 * the MAC's first three bytes, 11-12 ff:fe, 13-15 are XORed with its last three, and the
 * universal/local bit of byte 8 is flipped. */
void iothaddr_eui64(void *addr, void *mac);

/* iothaddr_eui64 of the MAC address iothaddr_hashmac gives for name and passwd. */
void iothaddr_hasheui64(void *addr, const char *name, const char *passwd);

/* The time slot of a one-time IP address: 0 when otip_period is 0 (no one-time address), else
 * (seconds since the epoch + otip_offset) / otip_period. A server can give a positive offset to
 * accept clients whose clocks are behind. */
static inline uint32_t iothaddr_otiptime(int otip_period, int otip_offset)
{
	if (otip_period == 0)
		return 0;
	return (uint32_t) ((time(NULL) + otip_offset) / otip_period);
}

#ifdef __cplusplus
}
#endif
#endif /* IOTHADDR_H */
