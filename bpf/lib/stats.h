/* Per-CPU counters: no atomics needed, gwctl sums the CPUs. */
#ifndef XG_STATS_H
#define XG_STATS_H

#include "common.h"
#include "consts.h"
#include "structs.h"
#include "maps.h"

static __always_inline void count_reason(__u32 reason)
{
	__u64 *n = reasons.lookup(&reason);

	if (n)
		*n += 1;
}

static __always_inline int count_verdict(__u32 hook, int verdict)
{
	__u32 idx = hook * V_MAX + verdict;
	__u64 *n = verdicts.lookup(&idx);

	if (n)
		*n += 1;
	return verdict;
}

/* Counts a packet that arrived from the client (inbound) or from the backend. */
static __always_inline void count_flow(__u32 service_id, __u32 backend_id, __u32 bytes,
				       int inbound, int new_flow)
{
	struct flow_stats *svc = svc_stats.lookup(&service_id);
	struct flow_stats *be = be_stats.lookup(&backend_id);

	if (svc) {
		if (inbound) {
			svc->packets_in++;
			svc->bytes_in += bytes;
		} else {
			svc->packets_out++;
			svc->bytes_out += bytes;
		}
		svc->new_flows += new_flow;
	}
	if (be) {
		if (inbound) {
			be->packets_in++;
			be->bytes_in += bytes;
		} else {
			be->packets_out++;
			be->bytes_out += bytes;
		}
		be->new_flows += new_flow;
	}
}

static __always_inline void count_rejected(__u32 service_id)
{
	struct flow_stats *svc = svc_stats.lookup(&service_id);

	if (svc)
		svc->rejected++;
}

/* Shorthands that count the reason and yield the verdict. */
static __always_inline int drop(__u32 reason)
{
	count_reason(reason);
	return V_DROP;
}

static __always_inline int pass(__u32 reason)
{
	count_reason(reason);
	return V_PASS;
}

#endif
