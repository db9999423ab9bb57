/* Structs shared with Python (ctl/dataplane/abi.py), checked there against the
 * layout the compiler produced. Fixed width, every pad byte written out. Addresses and
 * ports are in network byte order unless a field says otherwise. A layout change gets
 * a new map name suffix (_v2) instead of changing a pinned map in place. */
#ifndef XG_STRUCTS_H
#define XG_STRUCTS_H

#include "common.h"
#include "consts.h"

/* An IPv4 address uses w[0]; w[1..3] are zero. */
union addr {
	__be32 w[4];
	__u8 b[16];
};

struct frontend_key {
	union addr addr;
	__be16 port;
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family; /* FAMILY_V4 or FAMILY_V6 */
};

struct frontend {
	__u32 id;         /* service id: svc_stats index, maglev_outer key */
	__u8 nat_mode;    /* enum nat_mode */
	__u8 snat_count;  /* addresses in snat_addrs (NAT_SNAT: 1..SNAT_MAX_ADDRS) */
	__u8 pad[2];
	union addr snat_addrs[SNAT_MAX_ADDRS]; /* sources for NAT_SNAT, of the frontend's family */
};

struct backend {
	union addr addr;
	__be16 port;
	__u8 family;
	__u8 pad;
};

/* Key of both conntrack maps: a packet's tuple as it arrives at the gateway. */
struct ct_key {
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/* Where a flow's translated packets go, as bpf_fib_lookup() last said, so that an
 * established flow skips the lookup. Valid while `gen` equals generations[GEN_FIB],
 * which the agent bumps on every route or neighbour change. */
struct next_hop {
	__u32 ifindex;  /* 0: nothing cached */
	__u32 gen;
	__u8 dmac[6];
	__u8 smac[6];
	__u16 mtu;      /* of the egress route; bigger packets take the lookup (FRAG_NEEDED) */
	__u8 pad[2];
};

/* ct_fwd value, keyed by client -> frontend. */
struct ct_entry {
	__u64 last_seen;      /* bpf_ktime_get_coarse_ns(), refreshed at most once per
			       * CT_REFRESH_NS or when the state changes */
	__u32 backend_id;
	__u32 service_id;
	union addr nat_addr;  /* source the backend sees: a SNAT address, or the client (dnat) */
	__be16 nat_port;      /* source port the backend sees */
	__u8 state;           /* CT_* bits */
	__u8 pad;
	__u32 backend_check;  /* backend_check() of the backend chosen: a backend id that
			       * was deleted and given to another endpoint is not ours */
	struct backend backend; /* copy of backends[backend_id], checked against the map
				 * only when generations[GEN_BACKENDS] moved */
	__u32 backend_gen;
	struct next_hop hop;
};

/* ct_rev value, keyed by backend -> nat_addr:nat_port (what a reply looks like). */
struct nat_entry {
	__u64 last_seen;
	union addr client_addr;
	union addr frontend_addr;
	__be16 client_port;
	__be16 frontend_port;
	__u32 service_id;
	__u32 backend_id;
	__u8 state;
	__u8 pad[3];
	struct next_hop hop;
};

/* Runtime options, written by the agent (array of one). */
struct config {
	__u32 hash_seed;          /* shared by every node, so all pick the same backend */
	__u16 snat_port_min;      /* host byte order */
	__u16 snat_port_max;      /* host byte order, inclusive */
	__u32 tcp_syn_timeout;    /* seconds, until the backend has answered */
	__u32 tcp_est_timeout;    /* seconds */
	__u32 tcp_close_timeout;  /* seconds, after RST, or FIN both ways with the client first */
	__u32 udp_timeout;        /* seconds */
	__u32 tcp_time_wait_timeout; /* seconds, FIN both ways with the backend first: the
				      * backend holds TIME_WAIT, its port is not given to
				      * another client meanwhile */
	__u8 snat_keep_port;      /* try the client's own source port first */
	__u8 pad[3];
};

/* Per-CPU counters of a service (frontend) or a backend. */
struct flow_stats {
	__u64 packets_in;   /* client -> backend */
	__u64 bytes_in;
	__u64 packets_out;  /* backend -> client */
	__u64 bytes_out;
	__u64 new_flows;
	__u64 rejected;     /* flows answered with RST or datagrams dropped (invalid share) */
};

/* Key of the frags map: a datagram being forwarded in fragments, as it arrives. IPv4:
 * the header's 16-bit identification (widened as loaded) and protocol; IPv6: the
 * Fragment header's 32-bit identification and next header. */
struct frag_key {
	union addr saddr;
	union addr daddr;
	__be32 id;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/* frags value: the addresses its first fragment was translated to, and the flow it was
 * counted on, so that later fragments are counted there too. */
struct frag_entry {
	union addr saddr;
	union addr daddr;
	__u32 service_id;
	__u32 backend_id;
	__u8 inbound;  /* client -> backend (1) or a reply (0) */
	__u8 pad[3];
};

/* Key of the vips map: a frontend address, to recognise our traffic even when its
 * ports cannot be read (fragments, truncated headers). */
struct vip_key {
	union addr addr;
	__u8 family;
	__u8 pad[3];
};

/* The sizes the pinned maps were created with and ctl/dataplane/abi.py mirrors: a struct
 * that grows or shrinks fails to compile here rather than misreading a pinned map (the
 * loader also compares every field with its mirror at load time). */
_Static_assert(sizeof(union addr) == 16, "union addr: ABI size");
_Static_assert(sizeof(struct frontend_key) == 20, "struct frontend_key: ABI size (frontends_v1 key)");
_Static_assert(sizeof(struct frontend) == 72, "struct frontend: ABI size (frontends_v2 value)");
_Static_assert(sizeof(struct backend) == 20, "struct backend: ABI size (backends_v1 value)");
_Static_assert(sizeof(struct ct_key) == 40, "struct ct_key: ABI size (ct_fwd_v2, ct_rev_v2 key)");
_Static_assert(sizeof(struct next_hop) == 24, "struct next_hop: ABI size (in ct_fwd_v2, ct_rev_v2 values)");
_Static_assert(sizeof(struct ct_entry) == 88, "struct ct_entry: ABI size (ct_fwd_v2 value)");
_Static_assert(sizeof(struct nat_entry) == 80, "struct nat_entry: ABI size (ct_rev_v2 value)");
_Static_assert(sizeof(struct config) == 32, "struct config: ABI size (config_v2 value)");
_Static_assert(sizeof(struct flow_stats) == 48, "struct flow_stats: ABI size (svc_stats_v1, be_stats_v1 value)");
_Static_assert(sizeof(struct vip_key) == 20, "struct vip_key: ABI size (vips_v1 key)");
_Static_assert(sizeof(struct frag_key) == 40, "struct frag_key: ABI size (frags_v2 key)");
_Static_assert(sizeof(struct frag_entry) == 44, "struct frag_entry: ABI size (frags_v2 value)");

#endif
