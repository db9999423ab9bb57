/* The floor of the packet benchmark (bench/packet.py): the least an XDP load balancer
 * does to bounce a frame, swap its MAC addresses and send it back out, with nothing
 * else. Every case of the real program is reported as a multiple of this. The tc
 * variant is the same for the tc ingress reference figures; tc has no XDP_TX, so it
 * redirects to the interface the frame came in on, as bpf/tc_lb.c does for V_TX. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

static __always_inline int swap_macs(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
	return 0;
}

int xdp_mac_swap(struct xdp_md *ctx)
{
	if (swap_macs((void *)(long)ctx->data, (void *)(long)ctx->data_end) < 0)
		return XDP_DROP;
	return XDP_TX;
}

int tc_mac_swap(struct __sk_buff *skb)
{
	if (swap_macs((void *)(long)skb->data, (void *)(long)skb->data_end) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}
