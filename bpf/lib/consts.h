/* Compile-time sizes and options. Each may be overridden with -D by the loader; the
 * Python side (ctl/dataplane/abi.py) mirrors the enums below. */
#ifndef XG_CONSTS_H
#define XG_CONSTS_H

/* Where maps are pinned (a bpffs directory). The loader always passes its own. */
#ifndef PIN_DIR
#define PIN_DIR "/sys/fs/bpf/xdp-gateway"
#endif

/* Capacity, from ctl/capacity.py (their one source); the loader always passes them:
 *   MAGLEV_SIZE   most slots in a service's Maglev table (each has its own size); prime
 *   MAX_SERVICES  service ids index svc_stats, so they are bounded by this
 *   MAX_BACKENDS  backend ids index be_stats; id 0 is the reject share in a Maglev table
 *   CT_SIZE       conntrack capacity (LRU: the least recently used flow goes first) */
#if !defined(MAGLEV_SIZE) || !defined(MAX_SERVICES) || !defined(MAX_BACKENDS) || !defined(CT_SIZE)
#error "MAGLEV_SIZE, MAX_SERVICES, MAX_BACKENDS and CT_SIZE come from the loader (ctl/capacity.py)"
#endif

/* How many ports of the SNAT range a new flow probes on each SNAT address, after the
 * client's own port, before it gives up (DROP_SNAT_EXHAUSTED). */
#ifndef SNAT_PROBES
#define SNAT_PROBES 16
#endif

/* Datagrams whose later fragments can be followed at once (frags map, LRU). */
#ifndef FRAG_SIZE
#define FRAG_SIZE 8192
#endif

/* Interfaces the peer_devs map can mark. */
#define PEER_DEVS_SIZE 256

/* SNAT addresses a frontend can use (struct frontend.snat_addrs). */
#define SNAT_MAX_ADDRS 4

/* A conntrack entry's last_seen, and its partner entry (forward <-> reverse), are
 * refreshed at most this often (or at once when the TCP state changes), so that the
 * common packet of an established flow writes nothing. */
#define CT_REFRESH_NS 1000000000ULL

/* Indexes of the generations map. */
#define GEN_FIB 0       /* routes or neighbours changed: cached next hops are stale */
#define GEN_BACKENDS 1  /* a backend was deleted or changed: check cached copies */
#define GEN_MAX 2

#define XG_NSEC_PER_SEC 1000000000ULL

/* Backend id that a Maglev slot holds for the share of invalid backendRefs. */
#define BACKEND_REJECT 0

#define FAMILY_V4 4
#define FAMILY_V6 6

enum nat_mode {
	NAT_SNAT = 0, /* source becomes snat_addr and a port chosen per flow */
	NAT_DNAT = 1, /* client address kept; backends route replies via the gateway */
};

/* Conntrack state bits (struct ct_entry.state, struct nat_entry.state). */
#define CT_SEEN_REPLY 0x01
#define CT_FIN_FWD    0x02 /* client sent FIN */
#define CT_FIN_REV    0x04 /* backend sent FIN */
#define CT_RST        0x08
#define CT_REV_CLOSED_FIRST 0x10 /* the backend's FIN came first: it holds TIME_WAIT */

/* Why a packet was dropped, or handed to the kernel instead of being forwarded.
 * Indexes the per-CPU `reasons` array. Keep in sync with abi.Reason. */
enum reason {
	REASON_NONE = 0,
	DROP_MALFORMED,       /* addressed to a frontend address, but unparsable/truncated */
	DROP_FRAGMENT,        /* IP fragment addressed to a frontend address */
	DROP_NO_TABLE,        /* frontend without a Maglev table */
	DROP_NO_BACKEND,      /* Maglev slot names a backend that does not exist */
	DROP_REJECT,          /* invalid-backend share: UDP datagram or non-SYN TCP segment */
	DROP_SNAT_EXHAUSTED,  /* no free SNAT port after SNAT_PROBES tries */
	DROP_NO_ROUTE,        /* FIB says blackhole, unreachable or prohibited */
	DROP_FAMILY,          /* backend family differs from the frontend's */
	DROP_WRITE,           /* a packet rewrite helper failed */
	PASS_MALFORMED,       /* unparsable and not ours: the kernel decides */
	PASS_FRAGMENT,        /* fragment not addressed to a frontend address */
	PASS_NO_NEIGH,        /* translated, neighbour unresolved: the kernel resolves it */
	PASS_FIB,             /* translated, FIB says local/needs fragmenting/forwarding off */
	PASS_TTL,             /* TTL/hop limit would expire: the kernel answers ICMP */
	PASS_IPV6_EXT,        /* IPv6 extension headers we do not walk */
	REASON_MAX,
};

/* Which program counted a verdict. */
enum hook {
	HOOK_XDP = 0,
	HOOK_TC_INGRESS = 1,
	HOOK_TC_EGRESS = 2,
	HOOK_MAX,
};

enum verdict {
	V_PASS = 0,
	V_DROP = 1,
	V_TX = 2,       /* back out of the interface it came in on */
	V_REDIRECT = 3, /* out of the interface that the FIB chose */
	V_MAX,
};

#endif
