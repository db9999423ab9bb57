/* Lets frames in. veth drops XDP_TX/XDP_REDIRECT frames unless the receiving peer runs
 * an XDP program, so test topologies attach this to the far ends. */
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
