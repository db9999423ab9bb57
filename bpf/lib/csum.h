/* Checksum arithmetic on stack buffers (the packet-side updates live in ctx.h). */
#ifndef XG_CSUM_H
#define XG_CSUM_H

#include "common.h"

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Running sum of `len` bytes (a multiple of 4) added to `seed`. */
static __always_inline __u32 csum_add_bytes(void *buf, __u32 len, __u32 seed)
{
	return bpf_csum_diff(NULL, 0, buf, len, seed);
}

/* Difference from old to new (len a multiple of 4), chained onto `seed`. */
static __always_inline __u32 csum_delta(void *old, void *new, __u32 len, __u32 seed)
{
	return bpf_csum_diff(old, len, new, len, seed);
}

/* The difference of replacing the 32-bit word `old` by `new` (as loaded from packet
 * memory), in the form bpf_csum_diff() returns, computed inline: on the per-packet path
 * a helper call costs more than these few additions. Sums of up to eight fit in 32 bits. */
static __always_inline __u32 csum_word_diff(__u32 old, __u32 new)
{
	__u32 inverted = ~old;

	return (inverted & 0xffff) + (inverted >> 16) + (new & 0xffff) + (new >> 16);
}

/* Applies a delta to a checksum value held on the stack (RFC 1624). */
static __always_inline __u16 csum_apply_value(__u16 check, __u32 delta)
{
	__u32 sum = (__u16)~check;

	sum += delta & 0xffff;
	sum += delta >> 16;
	return csum_fold(sum);
}

#endif
