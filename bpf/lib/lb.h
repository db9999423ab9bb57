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

/* A flow without a usable conntrack entry: pick a backend and record the flow. On
 * success fills `flow` and `be`; otherwise returns a verdict (>= 0). */
static __always_inline int lb_new_flow(CTX *ctx, struct pkt *p, const struct frontend *fe,
			  struct ct_entry *flow, struct backend *be)
{
	struct scratch *s = scratch_get();
	__u64 now = flow->last_seen;
	struct nat_entry *nat;
	struct ct_key *rk;
	struct config *cfg;
	struct backend *found;
	__u32 backend_id, zero = 0;

	cfg = config.lookup(&zero);
	if (!cfg || !s)
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
	*be = *found;

	flow->last_seen = now;
	flow->backend_id = backend_id;
	flow->backend_check = backend_check(be);
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
		ct_reply_key(rk, be, &flow->nat_addr, flow->nat_port, p->tuple.proto,
			     p->tuple.family);
		ct_rev.update(rk, nat);
	} else {
		flow->nat_addr = fe->snat_addr;
		ct_reply_key(rk, be, &flow->nat_addr, 0, p->tuple.proto, p->tuple.family);
		flow->nat_port = snat_claim(rk, nat, cfg, p, now);
		if (!flow->nat_port)
			return drop(DROP_SNAT_EXHAUSTED);
	}
	ct_fwd.update(&p->tuple, flow);
	return -1;
}

/* Client -> frontend. */
static __always_inline int lb_forward(CTX *ctx, struct pkt *p, const struct frontend *fe,
				      const struct config *cfg, int egress, __u32 *ifindex)
{
	__u64 now = bpf_ktime_get_ns();
	struct ct_entry *ct = ct_fwd.lookup(&p->tuple);
	struct ct_entry flow = {};
	struct backend be = {};
	__u8 bits = ct_tcp_bits(p, 0);
	int new_flow = 0;

	if (p->ttl <= 1)
		return pass(PASS_TTL);
	if (ct) {
		int syn = (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
		struct backend *found = backends.lookup(&ct->backend_id);

		/* A new SYN on a closing tuple, an expired entry, or a deleted backend
		 * (its id gone, or given to another endpoint since): the flow starts over.
		 * Weight-0 backends keep theirs. */
		if (!found || ct->service_id != fe->id || ct->backend_check != backend_check(found) ||
		    ct_expired(cfg, p->tuple.proto, ct->state, ct->last_seen, now) ||
		    (syn && (ct->state & (CT_FIN_FWD | CT_FIN_REV | CT_RST)))) {
			ct = NULL;
		} else {
			__u64 last = ct->last_seen;

			ct->last_seen = now;
			ct->state |= bits;
			flow = *ct;
			be = *found;
			if (bits || now - last > CT_PARTNER_REFRESH_NS) {
				struct scratch *s = scratch_get();
				struct nat_entry *nat = NULL;

				if (s) {
					ct_reply_key(&s->reply_key, &be, &flow.nat_addr,
						     flow.nat_port, p->tuple.proto,
						     p->tuple.family);
					nat = ct_rev.lookup(&s->reply_key);
				}
				if (nat) {
					nat->last_seen = now;
					nat->state |= flow.state;
				}
			}
		}
	}
	if (!ct) {
		int verdict;

		flow.last_seen = now;
		verdict = lb_new_flow(ctx, p, fe, &flow, &be);

		if (verdict >= 0)
			return verdict;
		new_flow = 1;
	}
	count_flow(flow.service_id, flow.backend_id, ctx_len(ctx), 1, new_flow);
	if (nat_rewrite(ctx, p, &flow.nat_addr, flow.nat_port, &be.addr, be.port) < 0)
		return drop(DROP_WRITE);
	return fwd_packet(ctx, p, ifindex);
}

/* Backend -> NAT address: a reply, back to the client from the frontend. */
static __always_inline int lb_reverse(CTX *ctx, struct pkt *p, struct nat_entry *nat,
				      int egress, __u32 *ifindex)
{
	__u64 now = bpf_ktime_get_ns();
	__u8 bits = ct_tcp_bits(p, 1);
	struct nat_entry back;
	__u64 last = nat->last_seen;

	nat->last_seen = now;
	if (!(nat->state & CT_SEEN_REPLY) || bits || now - last > CT_PARTNER_REFRESH_NS) {
		struct ct_key fk = {};
		struct ct_entry *ct;

		nat->state |= bits | CT_SEEN_REPLY;
		ct_client_key(&fk, nat, p->tuple.proto, p->tuple.family);
		ct = ct_fwd.lookup(&fk);
		if (ct) {
			ct->last_seen = now;
			ct->state |= nat->state;
		}
	}
	back = *nat;
	count_flow(back.service_id, back.backend_id, ctx_len(ctx), 0, 0);
	if (!egress && p->ttl <= 1)
		return pass(PASS_TTL);
	if (nat_rewrite(ctx, p, &back.frontend_addr, back.frontend_port, &back.client_addr,
			back.client_port) < 0)
		return drop(DROP_WRITE);
	if (egress)
		return V_PASS;
	return fwd_packet(ctx, p, ifindex);
}

/* `egress`: the packet is leaving through tc egress, already routed by the kernel;
 * only replies and ICMP errors are translated there, in place. */
static __always_inline int lb_process(CTX *ctx, int egress, __u32 *ifindex)
{
	struct pkt p = {};
	struct nat_entry *nat;
	struct config *cfg;
	__u32 zero = 0;
	int rc;

	rc = parse_packet(ctx, &p);
	if (rc != PARSE_OK)
		return on_parse_failure(&p, rc);
	cfg = config.lookup(&zero);
	if (!cfg)
		return V_PASS;
	if (p.icmp_error) {
		rc = icmp_error_nat(ctx, &p, egress, ifindex);
		return rc < 0 ? V_PASS : rc;
	}
	if (!egress) {
		struct frontend_key fk = {};
		struct frontend *fe;

		fk.addr = p.tuple.daddr;
		fk.port = p.tuple.dport;
		fk.proto = p.tuple.proto;
		fk.family = p.tuple.family;
		fe = frontends.lookup(&fk);
		if (fe)
			return lb_forward(ctx, &p, fe, cfg, egress, ifindex);
	}
	nat = ct_rev.lookup(&p.tuple);
	if (nat)
		return lb_reverse(ctx, &p, nat, egress, ifindex);
	return V_PASS;
}

#endif
