/* Measurement harness of bench/packet.py, not part of the data path.
 *
 * BPF_PROG_TEST_RUN with repeat=N runs a program N times on ONE buffer: every
 * repetition sees what the previous one wrote. A load balancer rewrites the packet it
 * forwards, so from the second repetition on it would be timing a different packet
 * (the translated one, which it merely passes). This wrapper first writes the pristine
 * frame back from `replay_frame`, optionally gives it a fresh TCP/UDP source port (so
 * that every repetition is a new flow), then tail-calls the program under test (slot 0
 * of `replay_xdp_target` or `replay_tc_target`). Its own cost is measured by wrapping
 * the floor program, whose cost does not depend on the frame, and subtracted. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

#ifndef REPLAY_LEN
#define REPLAY_LEN 64
#endif

struct replay_frame {
	__u8 data[REPLAY_LEN];  /* the frame every repetition starts from */
	__u32 vary_off;         /* offset of a 16-bit port to vary, or 0 */
	__u32 vary_base;        /* ports vary_base .. vary_base + vary_span - 1 */
	__u32 vary_span;
	__u32 counter;          /* repetitions so far (this map is written by one CPU) */
};

BPF_ARRAY(replay_frame, struct replay_frame, 1);
/* One per hook: a program array belongs to the program type that first uses it. */
BPF_PROG_ARRAY(replay_xdp_target, 1);
BPF_PROG_ARRAY(replay_tc_target, 1);

static __always_inline __u16 next_port(struct replay_frame *f)
{
	__u32 n = f->counter++;

	return __builtin_bswap16((__u16)(f->vary_base + n % f->vary_span));
}

int xdp_replay(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct replay_frame *f = replay_frame.lookup(&zero);

	if (!f || bpf_xdp_store_bytes(ctx, 0, f->data, REPLAY_LEN) < 0)
		return XDP_ABORTED;
	if (f->vary_off && f->vary_span) {
		__u16 port = next_port(f);

		if (bpf_xdp_store_bytes(ctx, f->vary_off & 0x3f, &port, sizeof(port)) < 0)
			return XDP_ABORTED;
	}
	replay_xdp_target.call(ctx, 0);
	return XDP_ABORTED;
}

int tc_replay(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct replay_frame *f = replay_frame.lookup(&zero);

	if (!f || bpf_skb_store_bytes(skb, 0, f->data, REPLAY_LEN, 0) < 0)
		return TC_ACT_SHOT;
	if (f->vary_off && f->vary_span) {
		__u16 port = next_port(f);

		if (bpf_skb_store_bytes(skb, f->vary_off & 0x3f, &port, sizeof(port), 0) < 0)
			return TC_ACT_SHOT;
	}
	replay_tc_target.call(skb, 0);
	return TC_ACT_SHOT;
}
