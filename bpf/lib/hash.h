/* Flow hashing: Bob Jenkins' lookup3 final mix over three words, seeded. The seed is
 * shared by every node so that all of them map a flow to the same Maglev slot. */
#ifndef XG_HASH_H
#define XG_HASH_H

#include "common.h"
#include "structs.h"

static __always_inline __u32 xg_rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

static __always_inline __u32 hash_3words(__u32 a, __u32 b, __u32 c, __u32 seed)
{
	/* lookup3 initialisation for a 3-word key, then its final() mix. */
	a += 0xdeadbeef + (3 << 2) + seed;
	b += 0xdeadbeef + (3 << 2) + seed;
	c += 0xdeadbeef + (3 << 2) + seed;
	c ^= b; c -= xg_rol32(b, 14);
	a ^= c; a -= xg_rol32(c, 11);
	b ^= a; b -= xg_rol32(a, 25);
	c ^= b; c -= xg_rol32(b, 16);
	a ^= c; a -= xg_rol32(c, 4);
	b ^= a; b -= xg_rol32(a, 14);
	c ^= b; c -= xg_rol32(b, 24);
	return c;
}

static __always_inline __u32 addr_fold(const union addr *a)
{
	return a->w[0] ^ a->w[1] ^ a->w[2] ^ a->w[3];
}

/* Identifies a backend's endpoint, to notice that a backend id changed hands. */
static __always_inline __u32 backend_check(const struct backend *be)
{
	return hash_3words(addr_fold(&be->addr), be->port, be->family, 0);
}

/* Hash of a flow's 5-tuple as the client sent it. `salt` separates uses (backend
 * choice vs. SNAT port choice) so that they are independent. */
static __always_inline __u32 flow_hash(const struct ct_key *k, __u32 seed, __u32 salt)
{
	__u32 ports = ((__u32)k->sport << 16) | k->dport;

	return hash_3words(addr_fold(&k->saddr), addr_fold(&k->daddr) ^ salt,
			   ports ^ k->proto, seed);
}

#endif
