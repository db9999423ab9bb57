/* Every map, pinned under PIN_DIR so that gwctl reads them and a restarted or
 * upgraded agent keeps live flows. Names carry the layout version. */
#ifndef XG_MAPS_H
#define XG_MAPS_H

#include "common.h"
#include "consts.h"
#include "structs.h"

/* (address, port, protocol) -> service. */
BPF_TABLE_PINNED("hash", struct frontend_key, struct frontend, frontends, MAX_SERVICES,
		 PIN_DIR "/frontends_v2");

/* Frontend addresses (value: number of frontends on it), see struct vip_key. */
BPF_TABLE_PINNED("hash", struct vip_key, __u32, vips, MAX_SERVICES, PIN_DIR "/vips_v1");

/* backend id -> address and port. */
BPF_TABLE_PINNED("hash", __u32, struct backend, backends, MAX_BACKENDS,
		 PIN_DIR "/backends_v1");

/* service id -> that service's Maglev table: an array of u32 whose element 0 is the
 * table's size (prime) and elements 1..size its slots (backend ids). Each service has
 * its own size (ctl/dataplane/maglev.py: table_size), which BPF_F_INNER_MAP allows: inner
 * maps may then differ in max_entries (the template's is the cap, --maglev-size + 1).
 * BPF_F_MMAPABLE lets the agent write a new table with one copy into its pages instead
 * of one update per slot. Swapping the inner map is one update, so no packet ever sees a
 * half-written table, and size and slots always come from the same table.
 * The template is pinned so that the control plane creates its inner maps like it, type
 * information included (some kernels compare that too). */
BPF_TABLE_PINNED("array", __u32, __u32, maglev_inner, MAGLEV_SIZE + 1,
		 PIN_DIR "/maglev_template_v2", BPF_F_INNER_MAP | BPF_F_MMAPABLE);
BPF_TABLE_PINNED("hash_of_maps$maglev_inner", __u32, int, maglev_outer, MAX_SERVICES,
		 PIN_DIR "/maglev_v3");

/* Conntrack, forward (client -> frontend) and reverse (backend -> NAT address). */
BPF_TABLE_PINNED("lru_hash", struct ct_key, struct ct_entry, ct_fwd, CT_SIZE,
		 PIN_DIR "/ct_fwd_v2");
BPF_TABLE_PINNED("lru_hash", struct ct_key, struct nat_entry, ct_rev, CT_SIZE,
		 PIN_DIR "/ct_rev_v2");

BPF_TABLE_PINNED("array", __u32, struct config, config, 1, PIN_DIR "/config_v2");

/* IP fragments: (source, destination, IP or Fragment header id, protocol) -> how the
 * datagram's first fragment was translated. */
BPF_TABLE_PINNED("lru_hash", struct frag_key, struct frag_entry, frags, FRAG_SIZE,
		 PIN_DIR "/frags_v2");

/* Generation numbers (GEN_*), bumped by the agent; kept apart from config so that the
 * netlink watcher and the reconciler never overwrite each other's writes. */
BPF_TABLE_PINNED("array", __u32, __u32, generations, GEN_MAX, PIN_DIR "/generations_v1");

/* Interfaces (ifindex -> 1) that are veths whose peer lives in another network
 * namespace, marked by the agent when it attaches the tc programs: tc ingress hands a
 * packet for such a next hop straight to the peer (bpf_redirect_peer), skipping this
 * side's transmit and the backlog queue between the two ends. */
BPF_TABLE_PINNED("hash", __u32, __u32, peer_devs, PEER_DEVS_SIZE, PIN_DIR "/peer_devs_v1");

/* Counters: per service id, per backend id, per enum reason, per hook x verdict. */
BPF_TABLE_PINNED("percpu_array", __u32, struct flow_stats, svc_stats, MAX_SERVICES,
		 PIN_DIR "/svc_stats_v1");
BPF_TABLE_PINNED("percpu_array", __u32, struct flow_stats, be_stats, MAX_BACKENDS,
		 PIN_DIR "/be_stats_v1");
BPF_TABLE_PINNED("percpu_array", __u32, __u64, reasons, REASON_MAX, PIN_DIR "/reasons_v1");
BPF_TABLE_PINNED("percpu_array", __u32, __u64, verdicts, HOOK_MAX * V_MAX,
		 PIN_DIR "/verdicts_v1");

#endif
