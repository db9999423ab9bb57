/* Conntrack: a forward entry per client flow (ct_fwd) and a reverse entry per
 * translated tuple (ct_rev). Each direction refreshes its own entry on every packet
 * and its partner at most once per CT_PARTNER_REFRESH_NS, or at once on FIN/RST. */
#ifndef XG_CONNTRACK_H
#define XG_CONNTRACK_H

#include "common.h"
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "hash.h"
#include "parse.h"

static __always_inline __u64 ct_lifetime_ns(const struct config *cfg, __u8 proto, __u8 state)
{
	__u32 secs = cfg->udp_timeout;

	if (proto == IPPROTO_TCP) {
		if ((state & CT_RST) || ((state & CT_FIN_FWD) && (state & CT_FIN_REV)))
			secs = cfg->tcp_close_timeout;
		else if (!(state & CT_SEEN_REPLY))
			secs = cfg->tcp_syn_timeout;
		else
			secs = cfg->tcp_est_timeout;
	}
	return (__u64)secs * XG_NSEC_PER_SEC;
}

static __always_inline int ct_expired(const struct config *cfg, __u8 proto, __u8 state,
				      __u64 last_seen, __u64 now)
{
	/* Another CPU may have refreshed the entry after we read the clock: a flow seen
	 * "in the future" is live, and the unsigned difference would wrap. */
	if (last_seen >= now)
		return 0;
	return now - last_seen > ct_lifetime_ns(cfg, proto, state);
}

/* State bits a TCP segment contributes; `reply` when it comes from the backend. */
static __always_inline __u8 ct_tcp_bits(const struct pkt *p, int reply)
{
	__u8 bits = 0;

	if (p->tuple.proto != IPPROTO_TCP)
		return 0;
	if (p->tcp_flags & TCP_FLAG_FIN)
		bits |= reply ? CT_FIN_REV : CT_FIN_FWD;
	if (p->tcp_flags & TCP_FLAG_RST)
		bits |= CT_RST;
	return bits;
}

static __always_inline int addr_equal(const union addr *a, const union addr *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] &&
	       a->w[3] == b->w[3];
}

/* What a backend's reply to this flow looks like on arrival. */
static __always_inline void ct_reply_key(struct ct_key *rk, const struct backend *be,
					 const union addr *nat_addr, __be16 nat_port,
					 __u8 proto, __u8 family)
{
	rk->saddr = be->addr;
	rk->sport = be->port;
	rk->daddr = *nat_addr;
	rk->dport = nat_port;
	rk->proto = proto;
	rk->family = family;
}

/* The client's tuple for a reverse entry. */
static __always_inline void ct_client_key(struct ct_key *fk, const struct nat_entry *nat,
					  __u8 proto, __u8 family)
{
	fk->saddr = nat->client_addr;
	fk->sport = nat->client_port;
	fk->daddr = nat->frontend_addr;
	fk->dport = nat->frontend_port;
	fk->proto = proto;
	fk->family = family;
}

/* Claims a SNAT port for a new flow by inserting its reverse entry with NOEXIST, so
 * that two CPUs can never hand out the same (backend, address, port). A port held by
 * an expired flow is taken over. Returns the port (network order), or 0. */
static __always_inline __be16 snat_claim(struct ct_key *rk, struct nat_entry *nat,
					 const struct config *cfg, const struct pkt *p, __u64 now)
{
	__u32 lo = cfg->snat_port_min, hi = cfg->snat_port_max;
	__u32 start, range;
	int i;

	if (lo == 0 || hi < lo)
		return 0;
	range = hi - lo + 1;
	start = flow_hash(&p->tuple, cfg->hash_seed, 0x9e3779b9);
	for (i = 0; i < SNAT_PROBES; i++) {
		struct nat_entry *held;

		rk->dport = bpf_htons((__u16)(lo + (start + i) % range));
		if (ct_rev.insert(rk, nat) == 0)
			return rk->dport;
		held = ct_rev.lookup(rk);
		if (held && ct_expired(cfg, rk->proto, held->state, held->last_seen, now)) {
			ct_rev.update(rk, nat);
			return rk->dport;
		}
	}
	return 0;
}

#endif
