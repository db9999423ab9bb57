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
	__u32 zero = 0, slot;
	__u32 *size, *id;
	void *table;

	table = maglev_outer.lookup(&service_id);
	if (!table)
		return -1;
	size = bpf_map_lookup_elem(table, &zero);
	if (!size || *size == 0)
		return -1;
	/* Slots start at element 1; the lookup checks the index against the inner map's
	 * own max_entries, so a wrong size word can only miss, never read out of bounds. */
	slot = hash % *size + 1;
	id = bpf_map_lookup_elem(table, &slot);
	if (!id)
		return -1;
	*backend_id = *id;
	return 0;
}

#endif
