/* Rewriting a TCP/UDP packet's addresses and ports with incremental checksums. */
#ifndef XG_NAT_H
#define XG_NAT_H

#include "common.h"
#include "consts.h"
#include "structs.h"
#include "ctx.h"
#include "csum.h"
#include "parse.h"
#include "scratch.h"

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->tuple.proto == IPPROTO_TCP ? 16 : 6);
}

/* Writes both addresses of the IP header and folds the change into the IPv4 header
 * checksum; returns the delta for the L4 pseudo-header, or -1. The caller's p->tuple
 * is updated so that later steps (FIB lookup) see the packet as it now is. */
static __always_inline __s64 rewrite_addrs(CTX *ctx, struct pkt *p, const union addr *saddr,
					   const union addr *daddr)
{
	__u32 delta;

	if (p->tuple.family == FAMILY_V4) {
		__be32 new[2] = { saddr->w[0], daddr->w[0] };

		delta = csum_word_diff(p->tuple.saddr.w[0], new[0]) +
			csum_word_diff(p->tuple.daddr.w[0], new[1]);
		if (ctx_store(ctx, p->l3_off + offsetof(struct iphdr, saddr), new, sizeof(new)) < 0 ||
		    csum_l3_apply(ctx, p->l3_off + offsetof(struct iphdr, check), delta) < 0)
			return -1;
	} else {
		struct scratch *s = scratch_get();

		if (!s)
			return -1;
		s->addrs_old[0] = p->tuple.saddr;
		s->addrs_old[1] = p->tuple.daddr;
		s->addrs_new[0] = *saddr;
		s->addrs_new[1] = *daddr;
		delta = csum_delta(s->addrs_old, s->addrs_new, sizeof(s->addrs_old), 0);
		if (ctx_store(ctx, p->l3_off + offsetof(struct ipv6hdr, saddr), s->addrs_new,
			      sizeof(s->addrs_new)) < 0)
			return -1;
	}
	p->tuple.saddr = *saddr;
	p->tuple.daddr = *daddr;
	return delta;
}

static __always_inline int nat_rewrite(CTX *ctx, struct pkt *p, const union addr *saddr,
				       __be16 sport, const union addr *daddr, __be16 dport)
{
	int udp = p->tuple.proto == IPPROTO_UDP ? CSUM_UDP : 0;
	__be16 new_ports[2] = { sport, dport };
	__u32 old_word = (__u32)p->tuple.sport | ((__u32)p->tuple.dport << 16);
	__u32 new_word = (__u32)sport | ((__u32)dport << 16);
	__u32 csum_off = l4_csum_off(p);
	__s64 delta;

	delta = rewrite_addrs(ctx, p, saddr, daddr);
	if (delta < 0 || csum_l4_apply(ctx, csum_off, delta, udp | CSUM_PSEUDO) < 0)
		return -1;
	delta = csum_word_diff(old_word, new_word);
	if (ctx_store(ctx, p->l4_off, new_ports, sizeof(new_ports)) < 0 ||
	    csum_l4_apply(ctx, csum_off, delta, udp) < 0)
		return -1;
	p->tuple.sport = sport;
	p->tuple.dport = dport;
	return 0;
}

#endif
