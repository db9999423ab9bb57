/* ICMP errors about a tracked flow (fragmentation needed, packet too big, port
 * unreachable, time exceeded) are translated like the packet they quote, so that path
 * MTU discovery and fast failure work through the gateway in both directions.
 *
 * The quoted (inner) packet travelled the other way, so the reverse of its tuple is a
 * conntrack key: in ct_rev when it quotes a packet we sent to a backend, in ct_fwd when
 * it quotes a reply we sent to a client. The inner transport checksum is left alone:
 * it is usually not quoted in full, and receivers do not check it. */
#ifndef XG_ICMP_H
#define XG_ICMP_H

#include "common.h"
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "ctx.h"
#include "csum.h"
#include "parse.h"
#include "scratch.h"
#include "stats.h"
#include "conntrack.h"
#include "fwd.h"
#include "nat.h"

/* Fills `rw` from conntrack for the quoted tuple `quoted`; returns -1 if untracked. */
static __always_inline int icmp_plan(const struct pkt *p, const struct ct_key *quoted,
				     struct icmp_rewrite *rw)
{
	struct scratch *s = scratch_get();
	struct nat_entry *nat;
	struct ct_entry *ct;
	struct backend *be;
	struct ct_key *key;

	if (!s)
		return -1;
	key = &s->icmp_key;
	__builtin_memset(key, 0, sizeof(*key));
	key->saddr = quoted->daddr;
	key->daddr = quoted->saddr;
	key->sport = quoted->dport;
	key->dport = quoted->sport;
	key->proto = quoted->proto;
	key->family = quoted->family;

	nat = ct_rev.lookup(key);
	if (nat) {
		/* Quotes gateway -> backend: make it quote client -> frontend. */
		rw->inner[0] = nat->client_addr;
		rw->inner[1] = nat->frontend_addr;
		rw->inner_ports[0] = nat->client_port;
		rw->inner_ports[1] = nat->frontend_port;
		rw->outer[1] = nat->client_addr;
		rw->outer[0] = addr_equal(&p->tuple.saddr, &quoted->daddr) ? nat->frontend_addr
									   : p->tuple.saddr;
		return 0;
	}
	ct = ct_fwd.lookup(key);
	if (!ct)
		return -1;
	be = backends.lookup(&ct->backend_id);
	if (!be)
		return -1;
	/* Quotes frontend -> client: make it quote backend -> NAT address. */
	rw->inner[0] = be->addr;
	rw->inner[1] = ct->nat_addr;
	rw->inner_ports[0] = be->port;
	rw->inner_ports[1] = ct->nat_port;
	rw->outer[1] = be->addr;
	rw->outer[0] = addr_equal(&ct->nat_addr, &key->saddr) ? p->tuple.saddr : ct->nat_addr;
	return 0;
}

/* Returns a verdict, or -1 when the error is about no flow of ours. */
static __always_inline int icmp_error_nat(CTX *ctx, struct pkt *p, int egress, __u32 *ifindex)
{
	__u32 inner_l3 = p->l4_off + 8, inner_l4, addrs_off, delta;
	struct scratch *s = scratch_get();
	struct icmp_rewrite *rw;
	struct ct_key *quoted;
	__be16 ports[2];
	__u16 inner_check = 0, new_check;
	int v4 = p->tuple.family == FAMILY_V4;

	if (!s)
		return -1;
	rw = &s->rw;
	quoted = &s->quoted;
	__builtin_memset(rw, 0, sizeof(*rw));
	__builtin_memset(quoted, 0, sizeof(*quoted));
	quoted->family = p->tuple.family;
	if (v4) {
		struct iphdr ip;

		if (ctx_load(ctx, inner_l3, &ip, sizeof(ip)) < 0 || ip.version != 4 || ip.ihl < 5)
			return -1;
		inner_l4 = inner_l3 + ip.ihl * 4;
		addrs_off = inner_l3 + offsetof(struct iphdr, saddr);
		quoted->saddr.w[0] = ip.saddr;
		quoted->daddr.w[0] = ip.daddr;
		quoted->proto = ip.protocol;
		inner_check = ip.check;
	} else {
		struct ipv6hdr ip6;

		if (ctx_load(ctx, inner_l3, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
			return -1;
		inner_l4 = inner_l3 + sizeof(ip6);
		addrs_off = inner_l3 + offsetof(struct ipv6hdr, saddr);
		__builtin_memcpy(&quoted->saddr, &ip6.saddr, 16);
		__builtin_memcpy(&quoted->daddr, &ip6.daddr, 16);
		quoted->proto = ip6.nexthdr;
	}
	if (quoted->proto != IPPROTO_TCP && quoted->proto != IPPROTO_UDP)
		return -1;
	if (ctx_load(ctx, inner_l4, ports, sizeof(ports)) < 0)
		return -1;
	quoted->sport = ports[0];
	quoted->dport = ports[1];
	if (icmp_plan(p, quoted, rw) < 0)
		return -1;

	/* Inner addresses (and the inner IPv4 header checksum that covers them), inner
	 * ports: all inside the ICMP message, so all feed the ICMP checksum delta. */
	if (v4) {
		__be32 old[2] = { quoted->saddr.w[0], quoted->daddr.w[0] };
		__be32 new[2] = { rw->inner[0].w[0], rw->inner[1].w[0] };
		__u16 old_word[2] = { inner_check, 0 }, new_word[2] = { 0, 0 };

		delta = csum_delta(old, new, sizeof(old), 0);
		new_check = csum_apply_value(inner_check, delta);
		new_word[0] = new_check;
		delta = csum_delta(old_word, new_word, sizeof(old_word), delta);
		if (ctx_store(ctx, addrs_off, new, sizeof(new)) < 0 ||
		    ctx_store(ctx, inner_l3 + offsetof(struct iphdr, check), &new_check, 2) < 0)
			return drop(DROP_WRITE);
	} else {
		union addr old[2] = { quoted->saddr, quoted->daddr };

		delta = csum_delta(old, rw->inner, sizeof(old), 0);
		if (ctx_store(ctx, addrs_off, rw->inner, sizeof(rw->inner)) < 0)
			return drop(DROP_WRITE);
	}
	delta = csum_delta(ports, rw->inner_ports, sizeof(ports), delta);
	if (ctx_store(ctx, inner_l4, rw->inner_ports, sizeof(ports)) < 0 ||
	    csum_l4_apply(ctx, p->l4_off + 2, delta, 0) < 0)
		return drop(DROP_WRITE);

	/* Outer addresses: the IPv4 header checksum, or the ICMPv6 pseudo-header. */
	{
		__s64 outer = rewrite_addrs(ctx, p, &rw->outer[0], &rw->outer[1]);

		if (outer < 0 || (!v4 && csum_l4_apply(ctx, p->l4_off + 2, outer, CSUM_PSEUDO) < 0))
			return drop(DROP_WRITE);
	}
	if (egress)
		return V_PASS;
	if (p->ttl <= 1)
		return pass(PASS_TTL);
	return fwd_packet(ctx, p, NULL, ifindex);
}

#endif
