/* Backend selection: the service's Maglev table, indexed by the flow hash. */
#ifndef XG_MAGLEV_H
#define XG_MAGLEV_H

#include "common.h"
#include "consts.h"
#include "maps.h"

/* Returns 0 and the backend id (BACKEND_REJECT for the invalid share), or -1 when the
 * service has no table. */
static __always_inline int maglev_pick(__u32 service_id, __u32 hash, __u32 *backend_id)
{
	__u32 slot = hash % MAGLEV_SIZE;
	__u32 zero = 0;
	struct maglev_table *value;
	void *table;

	table = maglev_outer.lookup(&service_id);
	if (!table)
		return -1;
	value = bpf_map_lookup_elem(table, &zero);
	if (!value)
		return -1;
	/* The verifier does not derive a bound from the modulo; hide the slot from the
	 * compiler so that it keeps the explicit check. */
	asm volatile("" : "+r"(slot));
	if (slot >= MAGLEV_SIZE)
		return -1;
	*backend_id = value->slots[slot];
	return 0;
}

#endif
