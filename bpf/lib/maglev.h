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
	__u32 *id;
	void *table;

	table = maglev_outer.lookup(&service_id);
	if (!table)
		return -1;
	id = bpf_map_lookup_elem(table, &slot);
	if (!id)
		return -1;
	*backend_id = *id;
	return 0;
}

#endif
