/* Per-CPU scratch space for bulky temporaries. bcc inlines every function into its
 * entry program (no BPF-to-BPF calls), and the inlined frames together would exceed
 * the 512-byte stack. Each user owns its own member, so nesting never aliases. An
 * array lookup is inlined by the verifier: this costs an address computation. */
#ifndef XG_SCRATCH_H
#define XG_SCRATCH_H

#include "common.h"
#include "structs.h"

struct icmp_rewrite {
	union addr outer[2];  /* new outer source, destination */
	union addr inner[2];  /* new inner source, destination */
	__be16 inner_ports[2];
};

struct pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct pseudo6 {
	union addr saddr;
	union addr daddr;
	__be32 len;
	__u8 zero[3];
	__u8 proto;
};

struct scratch {
	struct bpf_fib_lookup fib;             /* fwd_packet */
	union addr addrs_old[2];               /* rewrite_addrs */
	union addr addrs_new[2];
	struct nat_entry nat;                  /* lb_new_flow */
	struct ct_entry flow;                  /* lb_forward, lb_new_flow */
	struct ct_key flow_key;                /* lb_forward */
	struct frag_key frag;                  /* note_fragment, frag_remember, frag_forward */
	struct frag_entry frag_to;             /* frag_remember */
	struct ct_key reply_key;               /* lb_new_flow, lb_forward */
	struct ct_key quoted;                  /* icmp_error_nat */
	struct ct_key icmp_key;                /* icmp_plan */
	struct icmp_rewrite rw;                /* icmp_error_nat */
	struct ipv6hdr rst_ip6;                /* reject_tcp_syn */
	struct pseudo6 rst_ph6;
};

BPF_PERCPU_ARRAY(scratch_map, struct scratch, 1);

static __always_inline struct scratch *scratch_get(void)
{
	__u32 zero = 0;

	return scratch_map.lookup(&zero);
}

#endif
