/* Packet parsing into a stack copy of the headers we need. Every read is a bounded
 * load, so a short or lying packet yields an error code, never a wild read. */
#ifndef XG_PARSE_H
#define XG_PARSE_H

#include "common.h"
#include "consts.h"
#include "structs.h"
#include "ctx.h"
#include "scratch.h"

#define ETH_HDR_LEN 14
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define IP_MF     0x2000
#define IP_OFFSET 0x1fff

enum parse_result {
	PARSE_OK = 0,     /* TCP, UDP or an ICMP error: p is filled in */
	PARSE_NOT_OURS,   /* not IP, or an L4 we never handle: pass quietly */
	PARSE_MALFORMED,  /* bad or truncated; p->have_daddr says if daddr was read */
	PARSE_FRAGMENT,   /* IP fragment; daddr is known */
	PARSE_V6_EXT,     /* IPv6 extension headers not walked (parse_ipv6_ext); daddr is known */
};

struct pkt {
	struct ct_key tuple;  /* as received */
	__u32 l3_off;
	__u32 l4_off;
	__u32 l3_len;         /* IP packet length, header included */
	__be32 tcp_seq;
	__u8 tcp_flags;
	__u8 tcp_hdr_len;     /* bytes */
	__u8 ttl;             /* TTL or hop limit */
	__u8 icmp_error;      /* an ICMP(v6) error: the tuple's ports are unset */
	__u8 have_daddr;
	__u8 frag;            /* FRAG_NONE, FRAG_FIRST (ports known), FRAG_LATER */
	__u8 inbound;         /* set with flow_*: client -> backend (1) or a reply (0) */
	__u32 flow_service;   /* the flow a translated packet was counted on, for the */
	__u32 flow_backend;   /* frags entry of a first fragment */
};

/* The IPv6 Fragment extension header (RFC 8200 4.5). */
struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;      /* offset in 8-byte units << 3 | M (more fragments) */
	__be32 id;
};

#define IP6_MF     0x0001
#define IP6_OFFSET 0xfff8

#define FRAG_NONE  0
#define FRAG_FIRST 1
#define FRAG_LATER 2

/* A fragment: its frags key (the tuple read so far, and the identification) into
 * scratch, for the first fragment's frags entry or a later one's lookup. Written here,
 * on the fragment's own branch, rather than by the caller before translating: a branch
 * there made the compiler duplicate the translation's start for first fragments, and
 * the verifier then walked it twice (the XDP program went past its limit). */
static __always_inline void note_fragment(struct pkt *p, __be32 id)
{
	struct scratch *s = scratch_get();

	if (!s)
		return;
	s->frag.saddr = p->tuple.saddr;
	s->frag.daddr = p->tuple.daddr;
	s->frag.id = id;
	s->frag.proto = p->tuple.proto;
	s->frag.family = p->tuple.family;
	s->frag.pad[0] = 0;
	s->frag.pad[1] = 0;
}

static __always_inline int parse_l4(CTX *ctx, struct pkt *p)
{
	__u32 l4_len = p->l3_len - (p->l4_off - p->l3_off);

	if (p->tuple.proto == IPPROTO_TCP) {
		struct tcphdr th;

		if (l4_len < sizeof(th) || ctx_load(ctx, p->l4_off, &th, sizeof(th)) < 0)
			return PARSE_MALFORMED;
		p->tcp_hdr_len = th.doff * 4;
		if (p->tcp_hdr_len < sizeof(th) || p->tcp_hdr_len > l4_len)
			return PARSE_MALFORMED;
		p->tuple.sport = th.source;
		p->tuple.dport = th.dest;
		p->tcp_seq = th.seq;
		p->tcp_flags = ((__u8 *)&th)[13];
		return PARSE_OK;
	}
	if (p->tuple.proto == IPPROTO_UDP) {
		struct udphdr uh;

		if (l4_len < sizeof(uh) || ctx_load(ctx, p->l4_off, &uh, sizeof(uh)) < 0)
			return PARSE_MALFORMED;
		p->tuple.sport = uh.source;
		p->tuple.dport = uh.dest;
		return PARSE_OK;
	}
	if (p->tuple.proto == IPPROTO_ICMP || p->tuple.proto == IPPROTO_ICMPV6) {
		__u8 type;

		if (l4_len < 8 || ctx_load(ctx, p->l4_off, &type, 1) < 0)
			return PARSE_MALFORMED;
		if (p->tuple.proto == IPPROTO_ICMP)
			p->icmp_error = type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
					type == ICMP_PARAMETERPROB;
		else
			p->icmp_error = type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
		return p->icmp_error ? PARSE_OK : PARSE_NOT_OURS;
	}
	return PARSE_NOT_OURS;
}

static __always_inline int parse_ipv4(CTX *ctx, struct pkt *p)
{
	struct iphdr ip;
	__u32 hdr_len;

	if (ctx_load(ctx, p->l3_off, &ip, sizeof(ip)) < 0)
		return PARSE_MALFORMED;
	p->tuple.family = FAMILY_V4;
	p->tuple.daddr.w[0] = ip.daddr;
	p->have_daddr = 1;
	hdr_len = ip.ihl * 4;
	p->l3_len = bpf_ntohs(ip.tot_len);
	if (ip.version != 4 || hdr_len < sizeof(ip) || p->l3_len < hdr_len ||
	    !ctx_has(ctx, p->l3_off + p->l3_len))
		return PARSE_MALFORMED;
	p->tuple.saddr.w[0] = ip.saddr;
	p->tuple.proto = ip.protocol;
	p->ttl = ip.ttl;
	p->l4_off = p->l3_off + hdr_len;
	if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		/* The first fragment carries the ports and is handled like a whole
		 * datagram (its L4 checksum covers the datagram; an incremental update
		 * stays right); later ones follow it through the frags map. */
		int rc;

		note_fragment(p, ip.id);
		if (ip.frag_off & bpf_htons(IP_OFFSET)) {
			p->frag = FRAG_LATER;
			return PARSE_FRAGMENT;
		}
		p->frag = FRAG_FIRST;
		rc = parse_l4(ctx, p);
		return rc == PARSE_OK && !p->icmp_error ? PARSE_OK : PARSE_FRAGMENT;
	}
	return parse_l4(ctx, p);
}

/* Extension headers walked before the transport header, at most: Hop-by-Hop, Destination
 * Options and one Fragment header, in RFC 8200 4.1 order (Hop-by-Hop, Destination Options,
 * Fragment, Destination Options) that is four. The walk is unrolled, a short copy per
 * step, so the verifier meets no loop, and a packet without extension headers never
 * enters it. Anything past the bound is not walked (PARSE_V6_EXT). */
#define IPV6_EXT_MAX 4

static __always_inline int ipv6_ext_header(__u8 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
	       nexthdr == IPPROTO_FRAGMENT || nexthdr == IPPROTO_DSTOPTS;
}

/* An IPv6 packet with extension headers: p's addresses, hop limit and l4_off (right
 * after the fixed header) are set, tuple.proto is the fixed header's next header.
 * Hop-by-Hop (first only, as RFC 8200 requires) and Destination Options are skipped;
 * they stay in place through translation and the L4 checksum does not cover them. A
 * Routing header is not walked: its final destination, not ours, is what the L4
 * checksum's pseudo-header covers, and a packet still being source-routed is not for us
 * yet. AH and ESP are not ours (parse_l4). As for IPv4, the first fragment carries the
 * transport header and is handled like a whole datagram; later ones follow it. Both
 * are keyed by the Fragment header's next header, which is the same in every
 * fragment. An atomic fragment (offset 0, no more fragments: RFC 6946) is a whole
 * datagram. */
static __always_inline int parse_ipv6_ext(CTX *ctx, struct pkt *p)
{
	__u32 end = p->l3_off + p->l3_len;
	__u32 off = p->l4_off;
	__u8 next = p->tuple.proto;
	struct ipv6_frag fh = {};
	int fragmented = 0;
	int i, rc;

#pragma unroll
	for (i = 0; i < IPV6_EXT_MAX; i++) {
		if ((next == IPPROTO_HOPOPTS && i == 0) || next == IPPROTO_DSTOPTS) {
			__u8 opts[2]; /* next header, length in 8 bytes beyond the first 8 */

			if (off + 8 > end || ctx_load(ctx, off, opts, sizeof(opts)) < 0)
				return PARSE_MALFORMED;
			next = opts[0];
			off += ((__u32)opts[1] + 1) * 8;
		} else if (next == IPPROTO_FRAGMENT && !fragmented) {
			if (off + sizeof(fh) > end || ctx_load(ctx, off, &fh, sizeof(fh)) < 0)
				return PARSE_MALFORMED;
			fragmented = 1;
			next = fh.nexthdr;
			off += sizeof(fh);
			if (fh.frag_off & bpf_htons(IP6_OFFSET))
				break; /* what follows is the middle of the datagram */
		} else {
			break;
		}
	}
	if (fragmented) {
		p->tuple.proto = fh.nexthdr;
		note_fragment(p, fh.id);
		if (fh.frag_off & bpf_htons(IP6_OFFSET)) {
			p->frag = FRAG_LATER;
			return PARSE_FRAGMENT;
		}
	}
	if (off > end)
		return PARSE_MALFORMED;
	if (ipv6_ext_header(next))
		return PARSE_V6_EXT;
	p->tuple.proto = next;
	p->l4_off = off;
	rc = parse_l4(ctx, p);
	if (!fragmented || !(fh.frag_off & bpf_htons(IP6_MF)))
		return rc;
	p->frag = FRAG_FIRST;
	return rc == PARSE_OK && !p->icmp_error ? PARSE_OK : PARSE_FRAGMENT;
}

static __always_inline int parse_ipv6(CTX *ctx, struct pkt *p)
{
	struct ipv6hdr ip6;

	if (ctx_load(ctx, p->l3_off, &ip6, sizeof(ip6)) < 0)
		return PARSE_MALFORMED;
	p->tuple.family = FAMILY_V6;
	__builtin_memcpy(&p->tuple.daddr, &ip6.daddr, 16);
	p->have_daddr = 1;
	p->l3_len = sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	if (ip6.version != 6 || !ctx_has(ctx, p->l3_off + p->l3_len))
		return PARSE_MALFORMED;
	__builtin_memcpy(&p->tuple.saddr, &ip6.saddr, 16);
	p->tuple.proto = ip6.nexthdr;
	p->ttl = ip6.hop_limit;
	p->l4_off = p->l3_off + sizeof(ip6);
	if (ipv6_ext_header(ip6.nexthdr))
		return parse_ipv6_ext(ctx, p);
	return parse_l4(ctx, p);
}

/* A fragment leaves its frags key in scratch (note_fragment). */
static __always_inline int parse_packet(CTX *ctx, struct pkt *p)
{
	__be16 proto;

	p->l3_off = ETH_HDR_LEN;
	if (ctx_load(ctx, 12, &proto, sizeof(proto)) < 0)
		return PARSE_NOT_OURS;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(ctx, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(ctx, p);
	return PARSE_NOT_OURS;
}

#endif
