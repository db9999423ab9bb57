/* Forwarding a translated packet: FIB lookup, MAC rewrite, TTL, redirect. */
#ifndef XG_FWD_H
#define XG_FWD_H

#include "common.h"
#include "consts.h"
#include "ctx.h"
#include "csum.h"
#include "parse.h"
#include "scratch.h"
#include "stats.h"

static __always_inline int decrement_ttl(CTX *ctx, struct pkt *p)
{
	if (p->tuple.family == FAMILY_V4) {
		/* TTL and protocol form one 16-bit word of the header checksum; the zero
		 * padding lets bpf_csum_diff work on 4 bytes. */
		__u8 old[4] = { p->ttl, p->tuple.proto, 0, 0 };
		__u8 new[4] = { p->ttl - 1, p->tuple.proto, 0, 0 };

		if (ctx_store(ctx, p->l3_off + offsetof(struct iphdr, ttl), &new[0], 1) < 0 ||
		    csum_l3_apply(ctx, p->l3_off + offsetof(struct iphdr, check),
				  csum_delta(old, new, sizeof(old), 0)) < 0)
			return -1;
	} else {
		__u8 hop = p->ttl - 1;

		if (ctx_store(ctx, p->l3_off + offsetof(struct ipv6hdr, hop_limit), &hop, 1) < 0)
			return -1;
	}
	p->ttl--;
	return 0;
}

/* Sends the packet where the FIB says its (already translated) destination lives.
 * An unresolved neighbour goes to the kernel, which resolves it, rather than being
 * dropped: the next packet of the flow takes the fast path. */
static __always_inline int fwd_packet(CTX *ctx, struct pkt *p, __u32 *ifindex)
{
	struct scratch *s = scratch_get();
	__u32 ingress = ctx_ingress_ifindex(ctx);
	struct bpf_fib_lookup *fib;
	__u8 macs[12];
	int rc;

	if (!s)
		return drop(DROP_WRITE);
	fib = &s->fib;
	__builtin_memset(fib, 0, sizeof(*fib));

	fib->family = p->tuple.family == FAMILY_V4 ? AF_INET : AF_INET6;
	fib->l4_protocol = p->tuple.proto;
	fib->sport = p->tuple.sport;
	fib->dport = p->tuple.dport;
	fib->tot_len = p->l3_len;
	fib->ifindex = ingress;
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

	__builtin_memcpy(macs, fib->dmac, 6);
	__builtin_memcpy(macs + 6, fib->smac, 6);
	if (ctx_store(ctx, 0, macs, sizeof(macs)) < 0 || decrement_ttl(ctx, p) < 0)
		return drop(DROP_WRITE);
	*ifindex = fib->ifindex;
	return fib->ifindex == ingress ? V_TX : V_REDIRECT;
}

#endif
