/* XDP entry: the fast path on every gateway interface, both directions. */
#define LB_HOOK_XDP 1
#include "lib/lb.h"

int xdp_lb(struct xdp_md *ctx)
{
	__u32 ifindex = 0;
	int verdict = count_verdict(HOOK_XDP, lb_process(ctx, 0, &ifindex));

	switch (verdict) {
	case V_DROP:
		return XDP_DROP;
	case V_TX:
		return XDP_TX;
	case V_REDIRECT:
		return bpf_redirect(ifindex, 0);
	}
	return XDP_PASS;
}
