/* tc (clsact) entries: ingress runs the same load balancer where native XDP is not
 * available; egress reverse-translates replies and ICMP errors that the kernel itself
 * routed or originated. */
#define LB_HOOK_TC 1
#include "lib/lb.h"

static __always_inline int tc_verdict(struct __sk_buff *skb, int verdict, __u32 ifindex,
				      int ingress)
{
	switch (verdict) {
	case V_DROP:
		return TC_ACT_SHOT;
	case V_TX:
		return bpf_redirect(skb->ifindex, 0);
	case V_REDIRECT:
		/* Only from ingress, and only to a veth whose peer is in another namespace:
		 * the kernel drops a peer redirect anywhere else. */
		if (ingress && peer_devs.lookup(&ifindex))
			return bpf_redirect_peer(ifindex, 0);
		return bpf_redirect(ifindex, 0);
	}
	return TC_ACT_OK;
}

int tc_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = 0;
	int verdict = count_verdict(HOOK_TC_INGRESS, lb_process(skb, 0, &ifindex));

	return tc_verdict(skb, verdict, ifindex, 1);
}

int tc_egress(struct __sk_buff *skb)
{
	__u32 ifindex = 0;
	int verdict = count_verdict(HOOK_TC_EGRESS, lb_process(skb, 1, &ifindex));

	return tc_verdict(skb, verdict, ifindex, 0);
}
