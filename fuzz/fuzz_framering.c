/*
 * libFuzzer harness: a frame ring (native/dn_framering.h) whose other side
 * is hostile, as an endpoint is to the master's switch (it consumes the
 * slave->master ring) and the switch may be to a slave.
 *
 * The ring's bytes and both shared positions are each a heap allocation of
 * exactly their size, so AddressSanitizer stops any access outside them.
 * The input is a ring configuration and then a list of operations: the
 * hostile side writes any bytes anywhere in the ring and publishes any
 * head or tail, possible or not, between the honest side's calls; the
 * honest side consumes (peek/next/skip_all/release) or produces
 * (reserve/commit/publish) and checks that what it is given lies inside
 * the ring and keeps to its own configuration.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dn_framering.h"

enum dn_fzr_op {
	DN_FZR_WRITE,		/* hostile bytes into the ring */
	DN_FZR_HEAD,		/* hostile head: any value */
	DN_FZR_HEAD_NEAR,	/* hostile head: the consumer's plus a delta */
	DN_FZR_TAIL,		/* hostile tail: any value */
	DN_FZR_TAIL_NEAR,	/* hostile tail: the producer's less a delta */
	DN_FZR_CONSUME,		/* honest consumer: drain up to n frames */
	DN_FZR_PRODUCE,		/* honest producer: write a frame */
	DN_FZR_RECORD,		/* a well-formed record, written by hand */
	DN_FZR_N_OPS
};

#define DN_FZR_CANARY 16

#define dn_fzr_fail(...) do { \
	fprintf(stderr, "fuzz_framering: " __VA_ARGS__); \
	fputc('\n', stderr); \
	abort(); \
} while (0)

/* Input reader: whatever is missing reads as zeros. */
struct dn_fzr_in {
	const uint8_t *p;
	size_t left;
};

static uint64_t
dn_fzr_take(struct dn_fzr_in *in, unsigned int n)
{
	uint64_t v = 0;
	unsigned int i;

	for (i = 0; i < n; i++) {
		v |= (uint64_t)(in->left > 0 ? *in->p : 0) << (8 * i);
		if (in->left > 0) {
			in->p++;
			in->left--;
		}
	}
	return v;
}

static void
dn_fzr_check_frame(const struct dn_fr *r, const uint8_t *frame, uint32_t len)
{
	volatile uint8_t sink = 0;
	uint32_t i;

	if (len == 0 || len > r->max_frame)
		dn_fzr_fail("frame of %u bytes (max %u)", len, r->max_frame);
	if (frame < r->data + DN_FR_HDR ||
	    frame + len > r->data + r->size)
		dn_fzr_fail("frame at %td, %u bytes, outside a ring of %u",
			frame - r->data, len, r->size);
	/* Touch every byte: the switch copies the whole frame out. */
	for (i = 0; i < len; i++)
		sink ^= frame[i];
	(void)sink;
}

static void
dn_fzr_consume(struct dn_fr *r, unsigned int max)
{
	const uint8_t *frame;
	uint32_t len;
	unsigned int n;
	int got;

	for (n = 0; n < max; n++) {
		got = dn_fr_peek(r, &frame, &len);
		if (got == 0)
			break;
		if (got < 0) {
			if (got != -EBADMSG)
				dn_fzr_fail("peek returned %d", got);
			dn_fr_skip_all(r);
			break;
		}
		dn_fzr_check_frame(r, frame, len);
		dn_fr_next(r, len);
	}
	dn_fr_release(r);
	(void)dn_fr_pending(r);
}

static void
dn_fzr_produce(struct dn_fr *r, uint32_t len, uint8_t fill)
{
	uint8_t *p = dn_fr_reserve(r, len);

	if (p == NULL) {
		dn_fr_publish(r);
		return;
	}
	if (len == 0 || len > r->max_frame)
		dn_fzr_fail("reserved %u bytes (max %u)", len, r->max_frame);
	if (p < r->data + DN_FR_HDR || p + len > r->data + r->size)
		dn_fzr_fail("reserved %u bytes at %td in a ring of %u",
			len, p - r->data, r->size);
	memset(p, fill, len);
	dn_fr_commit(r, len);
	dn_fr_publish(r);
}

static void
dn_fzr_check_canary(const uint8_t *ring, uint32_t ring_size, unsigned int op)
{
	uint32_t i;

	for (i = 0; i < DN_FZR_CANARY; i++)
		if (ring[ring_size + i] != 0xa5)
			dn_fzr_fail("byte %u past a ring of %u written (op %u)",
				i, ring_size, op);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dn_fzr_in in = { data, size };
	struct dn_fr_shared *sh;
	struct dn_fr cons, prod;
	uint32_t ring_size, max_frame;
	uint8_t *ring;
	unsigned int ops = 0;

	/* Rings from 64 bytes to 64 KiB: small ones wrap often. The largest
	 * frame is the side's own configuration and may exceed the ring. */
	ring_size = 64u << (dn_fzr_take(&in, 1) % 11);
	max_frame = 1 + (uint32_t)(dn_fzr_take(&in, 2) % 65535);
	/* The positions sit on their own cache lines, as in the link memory. */
	sh = aligned_alloc(_Alignof(struct dn_fr_shared), sizeof(*sh));
	/* A canary after the ring: ASan checks a 4-byte store by its first
	 * byte, so an unaligned one that spills past the end would go
	 * unseen. */
	ring = malloc(ring_size + DN_FZR_CANARY);
	if (sh == NULL || ring == NULL)
		abort();
	memset(ring, 0, ring_size);
	memset(ring + ring_size, 0xa5, DN_FZR_CANARY);
	atomic_store(&sh->head, dn_fzr_take(&in, 1) & 1 ?
		dn_fzr_take(&in, 8) : 0);
	atomic_store(&sh->tail, atomic_load(&sh->head));
	/* Each honest side has its own view, as the two processes do. */
	dn_fr_attach(&cons, sh, ring, ring_size, max_frame, 0);
	dn_fr_attach(&prod, sh, ring, ring_size, max_frame, 1);

	while (in.left > 0 && ops++ < 4096) {
		unsigned int op = (unsigned int)dn_fzr_take(&in, 1) %
			DN_FZR_N_OPS;

		switch ((enum dn_fzr_op)op) {
		case DN_FZR_WRITE: {
			uint32_t at = (uint32_t)dn_fzr_take(&in, 2) &
				(ring_size - 1);
			uint32_t n = (uint32_t)dn_fzr_take(&in, 1);

			if (n > ring_size - at)
				n = ring_size - at;
			if (n > in.left)
				n = (uint32_t)in.left;
			memcpy(ring + at, in.p, n);
			in.p += n;
			in.left -= n;
			break;
		}
		case DN_FZR_HEAD:
			atomic_store(&sh->head, dn_fzr_take(&in, 8));
			break;
		case DN_FZR_HEAD_NEAR:
			atomic_store(&sh->head, cons.pos +
				(uint64_t)(int16_t)dn_fzr_take(&in, 2));
			break;
		case DN_FZR_TAIL:
			atomic_store(&sh->tail, dn_fzr_take(&in, 8));
			break;
		case DN_FZR_TAIL_NEAR:
			atomic_store(&sh->tail, prod.pos -
				(uint64_t)(int16_t)dn_fzr_take(&in, 2));
			break;
		case DN_FZR_CONSUME:
			dn_fzr_consume(&cons, 1 + (unsigned int)
				dn_fzr_take(&in, 1) % 64);
			break;
		case DN_FZR_PRODUCE:
			dn_fzr_produce(&prod, (uint32_t)dn_fzr_take(&in, 2),
				(uint8_t)op);
			break;
		case DN_FZR_RECORD: {
			/* A record a sloppy producer might write: a length
			 * header at its own position, head moved past it. */
			uint32_t len = (uint32_t)dn_fzr_take(&in, 2);
			uint64_t pos = atomic_load(&sh->head);
			uint32_t at = (uint32_t)(pos & (ring_size - 1));

			if (ring_size - at >= 4)
				memcpy(ring + at, &len, 4);
			atomic_store(&sh->head, pos + dn_fr_record(len));
			break;
		}
		case DN_FZR_N_OPS:
			break;
		}
		dn_fzr_check_canary(ring, ring_size, op);
	}
	dn_fzr_consume(&cons, 64);
	dn_fzr_check_canary(ring, ring_size, DN_FZR_CONSUME);
	free(ring);
	free(sh);
	return 0;
}
