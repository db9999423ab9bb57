/* One library, two hooks: the rest of bpf/lib sees only CTX and these accessors, so
 * the same code builds for XDP (LB_HOOK_XDP) and tc (LB_HOOK_TC). Packet access is by
 * offset through ctx_load()/ctx_store(), which keeps the verifier's pointer bookkeeping
 * out of the logic and stays valid after helpers that move packet data. */
#ifndef XG_CTX_H
#define XG_CTX_H

#include "common.h"

#define CSUM_PSEUDO 0x1 /* the change is to the L4 pseudo-header (addresses) */
#define CSUM_UDP    0x2 /* a zero checksum means "none" and stays zero */

#if defined(LB_HOOK_XDP)
#define CTX struct xdp_md

static __always_inline __u32 ctx_len(CTX *ctx)
{
	/* Not data_end - data: the verifier forbids arithmetic on pkt_end. */
	return bpf_xdp_get_buff_len(ctx);
}

static __always_inline __u32 ctx_ingress_ifindex(CTX *ctx)
{
	return ctx->ingress_ifindex;
}

/* Bytes in the frame's linear part are copied directly, after a bounds check, instead
 * of through bpf_xdp_load_bytes()/bpf_xdp_store_bytes(): a forwarded packet makes about
 * fifteen accesses, and each helper call costs more than the copy (bench/packet.py).
 * Anything else (offsets past XDP_DIRECT_MAX, ranges past data_end) still goes through
 * the helper, so results and errors are the helper's. `len` is a constant at every call
 * site, so the copy is inlined; pointers are re-read from ctx on each call, so they are
 * never stale after a helper that moves packet data. */
#define XDP_DIRECT_MAX 0x3fff

static __always_inline int ctx_load(CTX *ctx, __u32 off, void *to, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (off <= XDP_DIRECT_MAX && data + off + len <= data_end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return bpf_xdp_load_bytes(ctx, off, to, len);
}

static __always_inline int ctx_store(CTX *ctx, __u32 off, const void *from, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (off <= XDP_DIRECT_MAX && data + off + len <= data_end) {
		__builtin_memcpy(data + off, from, len);
		return 0;
	}
	return bpf_xdp_store_bytes(ctx, off, (void *)from, len);
}

/* Whether the frame holds at least `end` bytes: a pointer comparison for the linear
 * part, bpf_xdp_get_buff_len() (a helper call) only beyond it. */
static __always_inline int ctx_has(CTX *ctx, __u32 end)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (end <= XDP_DIRECT_MAX && data + end <= data_end)
		return 1;
	return end <= ctx_len(ctx);
}

/* XDP has no checksum helpers and no skb checksum state: the frame's checksums are
 * complete, so update them by RFC 1624 arithmetic. */
static __always_inline int csum_apply(CTX *ctx, __u32 off, __s64 diff, int flags)
{
	__u16 check;
	__u32 sum;

	if (ctx_load(ctx, off, &check, 2) < 0)
		return -1;
	if ((flags & CSUM_UDP) && check == 0)
		return 0;
	sum = (__u16)~check;
	sum += (__u32)diff & 0xffff;
	sum += (__u32)diff >> 16;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	check = ~sum;
	if ((flags & CSUM_UDP) && check == 0)
		check = 0xffff;
	return ctx_store(ctx, off, &check, 2);
}

static __always_inline int csum_l3_apply(CTX *ctx, __u32 off, __s64 diff)
{
	return csum_apply(ctx, off, diff, 0);
}

static __always_inline int csum_l4_apply(CTX *ctx, __u32 off, __s64 diff, int flags)
{
	return csum_apply(ctx, off, diff, flags);
}

/* Grow (>0) or shrink (<0) the frame at its tail. */
static __always_inline int ctx_adjust_tail(CTX *ctx, int delta)
{
	return bpf_xdp_adjust_tail(ctx, delta);
}

#elif defined(LB_HOOK_TC)
#define CTX struct __sk_buff

static __always_inline __u32 ctx_len(CTX *ctx)
{
	return ctx->len;
}

static __always_inline __u32 ctx_ingress_ifindex(CTX *ctx)
{
	return ctx->ifindex;
}

static __always_inline int ctx_load(CTX *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, to, len);
}

static __always_inline int ctx_store(CTX *ctx, __u32 off, const void *from, __u32 len)
{
	return bpf_skb_store_bytes(ctx, off, (void *)from, len, 0);
}

static __always_inline int ctx_has(CTX *ctx, __u32 end)
{
	return end <= ctx->len;
}

/* The kernel helpers also keep skb->csum right and handle CHECKSUM_PARTIAL packets,
 * whose L4 field holds only the pseudo-header sum. */
static __always_inline int csum_l3_apply(CTX *ctx, __u32 off, __s64 diff)
{
	return bpf_l3_csum_replace(ctx, off, 0, diff, 0);
}

static __always_inline int csum_l4_apply(CTX *ctx, __u32 off, __s64 diff, int flags)
{
	__u64 f = 0;

	if (flags & CSUM_PSEUDO)
		f |= BPF_F_PSEUDO_HDR;
	if (flags & CSUM_UDP)
		f |= BPF_F_MARK_MANGLED_0;
	return bpf_l4_csum_replace(ctx, off, 0, diff, f);
}

static __always_inline int ctx_adjust_tail(CTX *ctx, int delta)
{
	return bpf_skb_change_tail(ctx, ctx->len + delta, 0);
}

#else
#error "define LB_HOOK_XDP or LB_HOOK_TC"
#endif

/* Difference between two equally long byte runs (multiples of 4), for csum_*_apply. */
static __always_inline __s64 csum_diff(void *from, __u32 from_len, void *to, __u32 to_len)
{
	return bpf_csum_diff(from, from_len, to, to_len, 0);
}

#endif
