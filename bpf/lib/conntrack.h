/* Conntrack: a forward entry per client flow (ct_fwd) and a reverse entry per
 * translated tuple (ct_rev). An established flow's packets write nothing: each
 * direction refreshes its own entry, and its partner, at most once per CT_REFRESH_NS,
 * or at once when the TCP state changes (FIN, RST, first reply). */
#ifndef XG_CONNTRACK_H
#define XG_CONNTRACK_H

#include "common.h"
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "hash.h"
#include "parse.h"

/* How long a flow lives without packets. A closed TCP flow keeps its tuple (and so
 * its SNAT port) only as long as the backend may still hold state about it: a backend
 * that closed first holds TIME_WAIT (60 s on Linux), during which a SYN from another
 * client on that tuple could be taken for an old duplicate (PAWS, sequence check);
 * after a RST, or when the client closed first, the backend forgets the tuple as soon
 * as the last ACK arrives, so tcp_close_timeout only covers retransmissions. */
static __always_inline __u64 ct_lifetime_ns(const struct config *cfg, __u8 proto, __u8 state)
{
	__u32 secs = cfg->udp_timeout;

	if (proto == IPPROTO_TCP) {
		if (state & CT_RST)
			secs = cfg->tcp_close_timeout;
		else if ((state & CT_FIN_FWD) && (state & CT_FIN_REV))
			secs = (state & CT_REV_CLOSED_FIRST) ? cfg->tcp_time_wait_timeout
							     : cfg->tcp_close_timeout;
		else if (!(state & CT_SEEN_REPLY))
			secs = cfg->tcp_syn_timeout;
		else
			secs = cfg->tcp_est_timeout;
	}
	return (__u64)secs * XG_NSEC_PER_SEC;
}

static __always_inline int ct_closed(__u8 state)
{
	return (state & CT_RST) || ((state & CT_FIN_FWD) && (state & CT_FIN_REV));
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

/* Takes over the reverse entry `held` (at key rk) for a new flow `nat` when its flow
 * has expired, or when it is the same client tuple starting over on a closed flow (its
 * new SYN continues the old one's sequence and timestamps, so a backend in TIME_WAIT
 * accepts it, as with Linux NAT). Several CPUs may find the same entry at once: only
 * the one whose compare-and-swap of last_seen succeeds rewrites it; the others see it
 * live and move on. (Deleting it, then inserting with NOEXIST, is not enough: a CPU
 * that read the expired entry before another took it over could then delete the
 * winner's fresh entry and insert its own.) */
static __always_inline int snat_take_over(struct ct_key *rk, struct nat_entry *held,
					  struct nat_entry *nat,
					  const struct config *cfg, __u64 now)
{
	__u64 seen = *(volatile __u64 *)&held->last_seen;
	int same_client = ct_closed(held->state) &&
			  held->client_port == nat->client_port &&
			  held->frontend_port == nat->frontend_port &&
			  addr_equal(&held->client_addr, &nat->client_addr) &&
			  addr_equal(&held->frontend_addr, &nat->frontend_addr);

	if (!same_client && !ct_expired(cfg, rk->proto, held->state, seen, now))
		return -1;
	if (__sync_val_compare_and_swap(&held->last_seen, seen, now) != seen)
		return -1;
	ct_rev.update(rk, nat);
	return 0;
}

static __always_inline int snat_try(struct ct_key *rk, struct nat_entry *nat,
				    const struct config *cfg, __u64 now)
{
	struct nat_entry *held;

	if (ct_rev.insert(rk, nat) == 0)
		return 0;
	held = ct_rev.lookup(rk);
	return held ? snat_take_over(rk, held, nat, cfg, now) : -1;
}

/* Claims a SNAT address and port for a new flow by inserting its reverse entry with
 * NOEXIST, so that two CPUs can never hand out the same (backend, address, port).
 * Order, as Linux NAT: the client's own port on each of the frontend's SNAT
 * addresses (the first chosen by the flow hash), then SNAT_PROBES pseudo-random ports
 * of the SNAT range on each. On success rk->daddr and rk->dport hold the claim. */
static __always_inline int snat_claim(struct ct_key *rk, struct nat_entry *nat,
				      const struct frontend *fe, const struct config *cfg,
				      const struct pkt *p, __u64 now)
{
	__u32 lo = cfg->snat_port_min, hi = cfg->snat_port_max;
	__u32 n = fe->snat_count, hash, range, first, i;

	if (n == 0 || n > SNAT_MAX_ADDRS)
		return -1;
	range = hi >= lo && lo ? hi - lo + 1 : 0;
	hash = flow_hash(&p->tuple, cfg->hash_seed, 0x9e3779b9);
	first = hash % n;
	/* Attempt i: round i / SNAT_MAX_ADDRS (0: the client's port, then the probes) on
	 * address i % SNAT_MAX_ADDRS after the first. Not unrolled: the verifier walks a
	 * loop far more cheaply than 68 copies of its body. */
#pragma clang loop unroll(disable)
	for (i = 0; i < (SNAT_PROBES + 1) * SNAT_MAX_ADDRS; i++) {
		__u32 round = i / SNAT_MAX_ADDRS, a = i % SNAT_MAX_ADDRS;
		__be16 port;

		if (a >= n)
			continue;
		if (round == 0) {
			if (!cfg->snat_keep_port || !p->tuple.sport)
				continue;
			port = p->tuple.sport;
		} else {
			if (!range)
				break;
			port = bpf_htons((__u16)(lo + hash_3words(hash, round, 0, 0) % range));
		}
		rk->daddr = fe->snat_addrs[(first + a) % n & (SNAT_MAX_ADDRS - 1)];
		rk->dport = port;
		if (snat_try(rk, nat, cfg, now) == 0)
			return 0;
	}
	return -1;
}

#endif
