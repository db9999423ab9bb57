/* Active refusal: a TCP SYN that lands on the invalid-backend share is answered with a
 * RST from the frontend, rebuilt in place and sent back out of the same interface, so
 * the client fails at once instead of timing out (Gateway API: "MUST be rejected"). */
#ifndef XG_REJECT_H
#define XG_REJECT_H

#include "common.h"
#include "consts.h"
#include "ctx.h"
#include "csum.h"
#include "parse.h"
#include "scratch.h"
#include "stats.h"

static __always_inline int reject_tcp_syn(CTX *ctx, struct pkt *p)
{
	__u32 payload = p->l3_len - (p->l4_off - p->l3_off) - p->tcp_hdr_len;
	struct tcphdr th = {};
	__u8 macs[12], swapped[12];
	__u32 new_len, sum;
	int i;

	if (ctx_load(ctx, 0, macs, sizeof(macs)) < 0)
		return drop(DROP_WRITE);
	for (i = 0; i < 6; i++) {
		swapped[i] = macs[i + 6];
		swapped[i + 6] = macs[i];
	}
	th.source = p->tuple.dport;
	th.dest = p->tuple.sport;
	/* RFC 9293: a RST answering a segment without ACK has seq 0 and acknowledges the
	 * whole segment (SYN counts one). */
	th.ack_seq = bpf_htonl(bpf_ntohl(p->tcp_seq) + 1 + payload);
	th.doff = 5;
	th.rst = 1;
	th.ack = 1;

	if (p->tuple.family == FAMILY_V4) {
		struct iphdr ip = {};
		struct pseudo4 ph = {};

		ip.version = 4;
		ip.ihl = 5;
		ip.tot_len = bpf_htons(sizeof(ip) + sizeof(th));
		ip.frag_off = bpf_htons(0x4000); /* DF */
		ip.ttl = 64;
		ip.protocol = IPPROTO_TCP;
		ip.saddr = p->tuple.daddr.w[0];
		ip.daddr = p->tuple.saddr.w[0];
		ip.check = csum_fold(csum_add_bytes(&ip, sizeof(ip), 0));
		ph.saddr = ip.saddr;
		ph.daddr = ip.daddr;
		ph.proto = IPPROTO_TCP;
		ph.len = bpf_htons(sizeof(th));
		sum = csum_add_bytes(&ph, sizeof(ph), 0);
		th.check = csum_fold(csum_add_bytes(&th, sizeof(th), sum));
		new_len = ETH_HDR_LEN + sizeof(ip) + sizeof(th);
		if (ctx_store(ctx, ETH_HDR_LEN, &ip, sizeof(ip)) < 0 ||
		    ctx_store(ctx, ETH_HDR_LEN + sizeof(ip), &th, sizeof(th)) < 0)
			return drop(DROP_WRITE);
	} else {
		struct scratch *s = scratch_get();
		struct ipv6hdr *ip6;
		struct pseudo6 *ph;

		if (!s)
			return drop(DROP_WRITE);
		ip6 = &s->rst_ip6;
		ph = &s->rst_ph6;
		__builtin_memset(ip6, 0, sizeof(*ip6));
		__builtin_memset(ph, 0, sizeof(*ph));

		ip6->version = 6;
		ip6->payload_len = bpf_htons(sizeof(th));
		ip6->nexthdr = IPPROTO_TCP;
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, &p->tuple.daddr, 16);
		__builtin_memcpy(&ip6->daddr, &p->tuple.saddr, 16);
		ph->saddr = p->tuple.daddr;
		ph->daddr = p->tuple.saddr;
		ph->len = bpf_htonl(sizeof(th));
		ph->proto = IPPROTO_TCP;
		sum = csum_add_bytes(ph, sizeof(*ph), 0);
		th.check = csum_fold(csum_add_bytes(&th, sizeof(th), sum));
		new_len = ETH_HDR_LEN + sizeof(*ip6) + sizeof(th);
		if (ctx_store(ctx, ETH_HDR_LEN, ip6, sizeof(*ip6)) < 0 ||
		    ctx_store(ctx, ETH_HDR_LEN + sizeof(*ip6), &th, sizeof(th)) < 0)
			return drop(DROP_WRITE);
	}
	if (ctx_store(ctx, 0, swapped, sizeof(swapped)) < 0 ||
	    ctx_adjust_tail(ctx, (int)new_len - (int)ctx_len(ctx)) < 0)
		return drop(DROP_WRITE);
	return V_TX;
}

#endif
