/* The load balancer: frontend lookup, conntrack, Maglev, NAT, forwarding. Entry
 * programs call lb_process() and map its enum verdict to their hook's return codes. */
#ifndef XG_LB_H
#define XG_LB_H

#include "common.h"
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "scratch.h"
#include "ctx.h"
#include "csum.h"
#include "hash.h"
#include "parse.h"
#include "stats.h"
#include "conntrack.h"
#include "maglev.h"
#include "nat.h"
#include "reject.h"
#include "fwd.h"
#include "icmp.h"

static __always_inline int is_frontend_addr(const struct pkt *p)
{
	struct vip_key key = {};

	if (!p->have_daddr)
		return 0;
	key.addr = p->tuple.daddr;
	key.family = p->tuple.family;
	return vips.lookup(&key) != NULL;
}

/* Packets we cannot fully parse: ours are dropped with a reason (forwarding them
 * half-understood could only be a mistake), anything else is the kernel's business. */
static __always_inline int on_parse_failure(const struct pkt *p, int result)
{
	int ours = is_frontend_addr(p);

	switch (result) {
	case PARSE_MALFORMED:
		return ours ? drop(DROP_MALFORMED) : pass(PASS_MALFORMED);
	case PARSE_FRAGMENT:
		return ours ? drop(DROP_FRAGMENT) : pass(PASS_FRAGMENT);
	case PARSE_V6_EXT:
		return ours ? drop(DROP_MALFORMED) : pass(PASS_IPV6_EXT);
	}
	return V_PASS;
}

/* Counts a translated packet on its flow, and notes the flow in `p` for a first
 * fragment's frags entry. */
static __always_inline void count_packet(struct pkt *p, __u32 service_id, __u32 backend_id,
					 int inbound, int new_flow)
{
	p->flow_service = service_id;
	p->flow_backend = backend_id;
	p->inbound = inbound;
	count_flow(service_id, backend_id, p->l3_off + p->l3_len, inbound, new_flow);
}

/* A flow without a usable conntrack entry: pick a backend and claim the reverse
 * tuple. On success fills `flow` (which holds the backend; the caller inserts it into
 * ct_fwd once the next hop is known) and returns -1; otherwise returns a verdict. */
static __always_inline int lb_new_flow(CTX *ctx, struct pkt *p, const struct frontend *fe,
				       const struct config *cfg, struct ct_entry *flow, __u64 now)
{
	struct scratch *s = scratch_get();
	struct nat_entry *nat;
	struct ct_key *rk;
	struct backend *found;
	__u32 backend_id;

	if (!s)
		return V_PASS;
	nat = &s->nat;
	rk = &s->reply_key;
	__builtin_memset(nat, 0, sizeof(*nat));
	__builtin_memset(rk, 0, sizeof(*rk));

	if (maglev_pick(fe->id, flow_hash(&p->tuple, cfg->hash_seed, 0), &backend_id) < 0)
		return drop(DROP_NO_TABLE);
	if (backend_id == BACKEND_REJECT) {
		count_rejected(fe->id);
		if (p->tuple.proto == IPPROTO_TCP &&
		    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST)) == TCP_FLAG_SYN)
			return reject_tcp_syn(ctx, p);
		return drop(DROP_REJECT);
	}
	found = backends.lookup(&backend_id);
	if (!found)
		return drop(DROP_NO_BACKEND);
	if (found->family != p->tuple.family)
		return drop(DROP_FAMILY);
	flow->backend = *found;
	flow->backend_gen = generation(GEN_BACKENDS);

	flow->last_seen = now;
	flow->backend_id = backend_id;
	flow->backend_check = backend_check(&flow->backend);
	flow->service_id = fe->id;
	flow->state = ct_tcp_bits(p, 0);

	nat->last_seen = now;
	nat->client_addr = p->tuple.saddr;
	nat->client_port = p->tuple.sport;
	nat->frontend_addr = p->tuple.daddr;
	nat->frontend_port = p->tuple.dport;
	nat->service_id = fe->id;
	nat->backend_id = backend_id;
	nat->state = flow->state;

	if (fe->nat_mode == NAT_DNAT) {
		flow->nat_addr = p->tuple.saddr;
		flow->nat_port = p->tuple.sport;
		ct_reply_key(rk, &flow->backend, &flow->nat_addr, flow->nat_port, p->tuple.proto,
			     p->tuple.family);
		ct_rev.update(rk, nat);
	} else {
		ct_reply_key(rk, &flow->backend, &flow->nat_addr, 0, p->tuple.proto,
			     p->tuple.family);
		if (snat_claim(rk, nat, fe, cfg, p, now) < 0)
			return drop(DROP_SNAT_EXHAUSTED);
		flow->nat_addr = rk->daddr;
		flow->nat_port = rk->dport;
	}
	return -1;
}

/* Whether an established flow's entry still holds: its backend (checked against the
 * backends map only when a backend changed since the entry last looked), its service,
 * its lifetime, and not a new SYN on a closing tuple. */
static __always_inline int ct_usable(struct ct_entry *ct, const struct pkt *p,
				     const struct frontend *fe, const struct config *cfg, __u64 now)
{
	int syn = (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	__u32 gen = generation(GEN_BACKENDS);

	if (ct->service_id != fe->id ||
	    ct_expired(cfg, p->tuple.proto, ct->state, ct->last_seen, now) ||
	    (syn && (ct->state & (CT_FIN_FWD | CT_FIN_REV | CT_RST))))
		return 0;
	if (ct->backend_gen != gen) {
		/* A backend was deleted or changed: is ours still there, the same endpoint?
		 * Weight-0 backends keep their flows. */
		struct backend *found = backends.lookup(&ct->backend_id);

		if (!found || ct->backend_check != backend_check(found))
			return 0;
		ct->backend_gen = gen;
	}
	return 1;
}

/* Client -> frontend. */
static __always_inline int lb_forward(CTX *ctx, struct pkt *p, const struct frontend *fe,
				      const struct config *cfg, __u32 *ifindex)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	struct ct_entry *ct = ct_fwd.lookup(&p->tuple);
	__u8 bits = ct_tcp_bits(p, 0);
	struct scratch *s = NULL; /* set for a new flow only */
	struct next_hop *hop;
	struct backend *be;
	int verdict;

	if (p->ttl <= 1)
		return pass(PASS_TTL);
	if (ct && ct_usable(ct, p, fe, cfg, now)) {
		if ((bits & ~ct->state) || now - ct->last_seen > CT_REFRESH_NS) {
			struct scratch *refresh = scratch_get();
			struct nat_entry *nat = NULL;

			ct->last_seen = now;
			ct->state |= bits;
			if (refresh) {
				ct_reply_key(&refresh->reply_key, &ct->backend, &ct->nat_addr,
					     ct->nat_port, p->tuple.proto, p->tuple.family);
				nat = ct_rev.lookup(&refresh->reply_key);
			}
			if (nat) {
				nat->last_seen = now;
				nat->state |= ct->state;
			}
		}
		be = &ct->backend;
		hop = &ct->hop;
	} else {
		s = scratch_get();
		if (!s)
			return V_PASS;
		__builtin_memset(&s->flow, 0, sizeof(s->flow));
		verdict = lb_new_flow(ctx, p, fe, cfg, &s->flow, now);
		if (verdict >= 0)
			return verdict;
		s->flow_key = p->tuple;
		ct = &s->flow;
		be = &ct->backend;
		hop = &ct->hop;
	}
	count_packet(p, ct->service_id, ct->backend_id, 1, !!s);
	if (nat_rewrite(ctx, p, &ct->nat_addr, ct->nat_port, &be->addr, be->port) < 0)
		return drop(DROP_WRITE);
	verdict = fwd_packet(ctx, p, hop, ifindex);
	/* A new flow's entry goes in with the FIB result already cached (one write). */
	if (s)
		ct_fwd.update(&s->flow_key, &s->flow);
	return verdict;
}

/* Backend -> NAT address: a reply, back to the client from the frontend. */
static __always_inline int lb_reverse(CTX *ctx, struct pkt *p, struct nat_entry *nat,
				      int egress, __u32 *ifindex)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	__u8 bits = ct_tcp_bits(p, 1);

	if ((bits & CT_FIN_REV) && !(nat->state & (CT_FIN_FWD | CT_FIN_REV)))
		bits |= CT_REV_CLOSED_FIRST;
	bits |= CT_SEEN_REPLY;
	if ((bits & ~nat->state) || now - nat->last_seen > CT_REFRESH_NS) {
		struct ct_key fk = {};
		struct ct_entry *ct;

		nat->last_seen = now;
		nat->state |= bits;
		ct_client_key(&fk, nat, p->tuple.proto, p->tuple.family);
		ct = ct_fwd.lookup(&fk);
		if (ct) {
			ct->last_seen = now;
			ct->state |= nat->state;
		}
	}
	count_packet(p, nat->service_id, nat->backend_id, 0, 0);
	if (!egress && p->ttl <= 1)
		return pass(PASS_TTL);
	if (nat_rewrite(ctx, p, &nat->frontend_addr, nat->frontend_port, &nat->client_addr,
			nat->client_port) < 0)
		return drop(DROP_WRITE);
	if (egress)
		return V_PASS;
	return fwd_packet(ctx, p, &nat->hop, ifindex);
}

/* A later fragment (IPv4, or IPv6 with a Fragment header): translated like its
 * datagram's first fragment (addresses only: it has no transport header) and counted
 * on the same flow, or, untracked (its first lost, or still to come: fragments are not
 * buffered), dropped and counted when addressed to a frontend. */
static __always_inline int frag_forward(CTX *ctx, struct pkt *p, int egress, __u32 *ifindex)
{
	struct scratch *s = scratch_get();
	struct frag_entry *to;

	if (!s)
		return V_PASS;
	to = frags.lookup(&s->frag);

	if (!to)
		return on_parse_failure(p, PARSE_FRAGMENT);
	if (!egress && p->ttl <= 1)
		return pass(PASS_TTL);
	if (rewrite_addrs(ctx, p, &to->saddr, &to->daddr) < 0)
		return drop(DROP_WRITE);
	count_flow(to->service_id, to->backend_id, p->l3_off + p->l3_len, to->inbound, 0);
	if (egress)
		return V_PASS;
	return fwd_packet(ctx, p, NULL, ifindex);
}

static __always_inline int lb_translate(CTX *ctx, struct pkt *p, const struct config *cfg,
					int egress, __u32 *ifindex)
{
	struct nat_entry *nat;

	if (!egress) {
		struct frontend_key fk = {};
		struct frontend *fe;

		fk.addr = p->tuple.daddr;
		fk.port = p->tuple.dport;
		fk.proto = p->tuple.proto;
		fk.family = p->tuple.family;
		fe = frontends.lookup(&fk);
		if (fe)
			return lb_forward(ctx, p, fe, cfg, ifindex);
	}
	nat = ct_rev.lookup(&p->tuple);
	if (nat)
		return lb_reverse(ctx, p, nat, egress, ifindex);
	return V_PASS;
}

/* A first fragment was translated: remember how, for the later ones (key: how it
 * arrived, left in scratch by note_fragment). */
static __always_inline void frag_remember(const struct pkt *p)
{
	struct scratch *s = scratch_get();

	if (!s || (addr_equal(&p->tuple.saddr, &s->frag.saddr) &&
		   addr_equal(&p->tuple.daddr, &s->frag.daddr)))
		return; /* not translated (not ours, or handed to the kernel as it was) */
	__builtin_memset(&s->frag_to, 0, sizeof(s->frag_to));
	s->frag_to.saddr = p->tuple.saddr;
	s->frag_to.daddr = p->tuple.daddr;
	s->frag_to.service_id = p->flow_service;
	s->frag_to.backend_id = p->flow_backend;
	s->frag_to.inbound = p->inbound;
	frags.update(&s->frag, &s->frag_to);
}

/* `egress`: the packet is leaving through tc egress, already routed by the kernel;
 * only replies and ICMP errors are translated there, in place. */
static __always_inline int lb_process(CTX *ctx, int egress, __u32 *ifindex)
{
	struct pkt p = {};
	struct config *cfg;
	__u32 zero = 0;
	int rc;

	rc = parse_packet(ctx, &p);
	if (rc == PARSE_FRAGMENT && p.frag == FRAG_LATER)
		return frag_forward(ctx, &p, egress, ifindex);
	if (rc != PARSE_OK)
		return on_parse_failure(&p, rc);
	cfg = config.lookup(&zero);
	if (!cfg)
		return V_PASS;
	if (p.icmp_error) {
		rc = icmp_error_nat(ctx, &p, egress, ifindex);
		return rc < 0 ? V_PASS : rc;
	}
	/* Whole datagrams and first fragments share the one inlined translation. */
	rc = lb_translate(ctx, &p, cfg, egress, ifindex);
	if (p.frag == FRAG_FIRST)
		frag_remember(&p);
	return rc;
}

#endif
