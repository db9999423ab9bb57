/* Forwarding a translated packet: next hop (cached per flow, or from the FIB), MAC
 * rewrite, TTL, redirect. */
#ifndef XG_FWD_H
#define XG_FWD_H

#include "common.h"
#include "consts.h"
#include "ctx.h"
#include "maps.h"
#include "csum.h"
#include "parse.h"
#include "scratch.h"
#include "stats.h"

static __always_inline int decrement_ttl(CTX *ctx, struct pkt *p)
{
	if (p->tuple.family == FAMILY_V4) {
		/* TTL and protocol form one 16-bit word of the header checksum. */
		__u8 ttl = p->ttl - 1;
		__u32 old = (__u32)p->ttl | ((__u32)p->tuple.proto << 8);
		__u32 new = (__u32)ttl | ((__u32)p->tuple.proto << 8);

		if (ctx_store(ctx, p->l3_off + offsetof(struct iphdr, ttl), &ttl, 1) < 0 ||
		    csum_l3_apply(ctx, p->l3_off + offsetof(struct iphdr, check),
				  csum_word_diff(old, new)) < 0)
			return -1;
	} else {
		__u8 hop = p->ttl - 1;

		if (ctx_store(ctx, p->l3_off + offsetof(struct ipv6hdr, hop_limit), &hop, 1) < 0)
			return -1;
	}
	p->ttl--;
	return 0;
}

static __always_inline __u32 generation(__u32 which)
{
	__u32 *gen = generations.lookup(&which);

	return gen ? *gen : 0;
}

static __always_inline int fwd_to(CTX *ctx, struct pkt *p, const struct next_hop *hop,
				  __u32 *ifindex)
{
	if (ctx_store(ctx, 0, hop->dmac, 12) < 0 || decrement_ttl(ctx, p) < 0)
		return drop(DROP_WRITE);
	*ifindex = hop->ifindex;
	return hop->ifindex == ctx_ingress_ifindex(ctx) ? V_TX : V_REDIRECT;
}

/* Sends the packet where the FIB says its (already translated) destination lives.
 * An unresolved neighbour goes to the kernel, which resolves it, rather than being
 * dropped: the next packet of the flow takes the fast path. `hop` is the flow's cache:
 * used while its generation is current and the packet fits its MTU, refilled from the
 * FIB otherwise (the caller's map entry, so the next packet finds it). */
static __always_inline int fwd_packet(CTX *ctx, struct pkt *p, struct next_hop *hop,
				      __u32 *ifindex)
{
	__u32 gen = generation(GEN_FIB);
	struct scratch *s;
	struct bpf_fib_lookup *fib;
	int rc;

	if (hop && hop->ifindex && hop->gen == gen && p->l3_len <= hop->mtu)
		return fwd_to(ctx, p, hop, ifindex);
	s = scratch_get();
	if (!s)
		return drop(DROP_WRITE);
	fib = &s->fib;
	__builtin_memset(fib, 0, sizeof(*fib));

	fib->family = p->tuple.family == FAMILY_V4 ? AF_INET : AF_INET6;
	fib->l4_protocol = p->tuple.proto;
	fib->sport = p->tuple.sport;
	fib->dport = p->tuple.dport;
	fib->tot_len = p->l3_len;
	fib->ifindex = ctx_ingress_ifindex(ctx);
	if (p->tuple.family == FAMILY_V4) {
		fib->ipv4_src = p->tuple.saddr.w[0];
		fib->ipv4_dst = p->tuple.daddr.w[0];
	} else {
		__builtin_memcpy(fib->ipv6_src, &p->tuple.saddr, 16);
		__builtin_memcpy(fib->ipv6_dst, &p->tuple.daddr, 16);
	}
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return pass(PASS_NO_NEIGH);
	if (rc == BPF_FIB_LKUP_RET_BLACKHOLE || rc == BPF_FIB_LKUP_RET_UNREACHABLE ||
	    rc == BPF_FIB_LKUP_RET_PROHIBIT)
		return drop(DROP_NO_ROUTE);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return pass(PASS_FIB);

	{
		struct next_hop found = {};

		found.ifindex = fib->ifindex;
		found.gen = gen;
		found.mtu = fib->mtu_result;
		__builtin_memcpy(found.dmac, fib->dmac, 6);
		__builtin_memcpy(found.smac, fib->smac, 6);
		if (hop)
			*hop = found;
		return fwd_to(ctx, p, &found, ifindex);
	}
}

#endif
