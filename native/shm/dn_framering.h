/*
 * A single-producer, single-consumer ring of Ethernet frames in memory that
 * two processes share (one direction of a master-slave link).
 *
 * Frames are stored whole and back to back as records: an 8-byte header
 * (the frame's length) and the frame, padded to 16 bytes. A record never
 * wraps; when the end of the ring is too close, the producer writes a wrap
 * mark and starts again at offset 0. Each side keeps its position in its
 * own memory and publishes it once per burst, so the shared cache lines
 * move once per burst, not once per frame.
 *
 * The other side may be buggy or hostile: a consumer checks every record
 * against what the producer has published and against the ring's bounds
 * before it touches the bytes, so a bad ring costs its own frames and never
 * reads or writes outside the mapping.
 */
#ifndef DN_FRAMERING_H
#define DN_FRAMERING_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define DN_FR_HDR 8u
#define DN_FR_ALIGN 16u
#define DN_FR_WRAP 0xffffffffu

/* The shared part: only the two positions, each on its own cache line. */
struct dn_fr_shared {
	_Alignas(64) _Atomic uint64_t head;	/* bytes ever produced */
	_Alignas(64) _Atomic uint64_t tail;	/* bytes ever consumed */
};

/* One side's private view. size, mask and max_frame come from the side's
 * own configuration, never from the shared memory. */
struct dn_fr {
	struct dn_fr_shared *sh;
	uint8_t *data;
	uint32_t size;		/* power of two, multiple of DN_FR_ALIGN */
	uint32_t max_frame;
	uint64_t pos;		/* producer: head; consumer: tail */
	uint64_t peer;		/* last seen position of the other side */
	uint64_t published;	/* producer: head as last published */
};

static inline uint32_t
dn_fr_record(uint32_t len)
{
	return (DN_FR_HDR + len + DN_FR_ALIGN - 1) & ~(DN_FR_ALIGN - 1);
}

static inline void
dn_fr_attach(struct dn_fr *r, struct dn_fr_shared *sh, uint8_t *data,
	uint32_t size, uint32_t max_frame, int producer)
{
	r->sh = sh;
	r->data = data;
	r->size = size;
	r->max_frame = max_frame;
	/* Every true position is a multiple of DN_FR_ALIGN: one that is not
	 * would put a record's header across the ring's end. */
	r->pos = atomic_load_explicit(producer ? &sh->head : &sh->tail,
		memory_order_acquire) & ~(uint64_t)(DN_FR_ALIGN - 1);
	r->peer = atomic_load_explicit(producer ? &sh->tail : &sh->head,
		memory_order_acquire);
	r->published = r->pos;
}

/* ---- producer ---- */

/* Room for a frame of len bytes, or NULL when the ring is full (or the
 * consumer published a position that cannot be true: then the ring counts
 * as full until it makes sense again). Write the frame there, then
 * dn_fr_commit(). */
static inline void *
dn_fr_reserve(struct dn_fr *r, uint32_t len)
{
	uint32_t need = dn_fr_record(len);
	uint32_t off = (uint32_t)(r->pos & (r->size - 1));
	uint32_t skip = r->size - off < need ? r->size - off : 0;

	if (len == 0 || len > r->max_frame || need > r->size)
		return NULL;
	/* The consumer's last position is re-read while it is impossible
	 * too: a tail ahead of the producer, kept, would make the room look
	 * larger than the ring. */
	if (r->pos - r->peer > r->size ||
	    r->pos + skip + need - r->peer > r->size) {
		r->peer = atomic_load_explicit(&r->sh->tail,
			memory_order_acquire);
		if (r->pos - r->peer > r->size ||
		    r->pos + skip + need - r->peer > r->size)
			return NULL;
	}
	if (skip != 0) {
		*(uint32_t *)(r->data + off) = DN_FR_WRAP;
		r->pos += skip;
		off = 0;
	}
	return r->data + off + DN_FR_HDR;
}

static inline void
dn_fr_commit(struct dn_fr *r, uint32_t len)
{
	*(uint32_t *)(r->data + (r->pos & (r->size - 1))) = len;
	r->pos += dn_fr_record(len);
}

/* Makes the committed frames visible; returns 1 if there were any. */
static inline int
dn_fr_publish(struct dn_fr *r)
{
	if (r->pos == r->published)
		return 0;
	atomic_store_explicit(&r->sh->head, r->pos, memory_order_release);
	r->published = r->pos;
	return 1;
}

/* ---- consumer ---- */

/* The next frame: 1 with *frame and *len set, 0 when the ring is empty,
 * -EBADMSG when the producer wrote something impossible (the caller drops
 * everything published so far with dn_fr_skip_all()). */
static inline int
dn_fr_peek(struct dn_fr *r, const uint8_t **frame, uint32_t *len)
{
	uint32_t off, n;

	for (;;) {
		if (r->pos == r->peer) {
			r->peer = atomic_load_explicit(&r->sh->head,
				memory_order_acquire);
			if (r->pos == r->peer)
				return 0;
		}
		if (r->peer - r->pos > r->size ||
		    (r->peer & (DN_FR_ALIGN - 1)) != 0)
			return -EBADMSG;
		off = (uint32_t)(r->pos & (r->size - 1));
		n = *(volatile uint32_t *)(r->data + off);
		if (n != DN_FR_WRAP)
			break;
		/* A wrap mark is only written where a record cannot fit. */
		if (r->size - off >= dn_fr_record(r->max_frame) ||
		    r->peer - r->pos < r->size - off)
			return -EBADMSG;
		r->pos += r->size - off;
	}
	if (n == 0 || n > r->max_frame || dn_fr_record(n) > r->size - off ||
	    dn_fr_record(n) > r->peer - r->pos)
		return -EBADMSG;
	*frame = r->data + off + DN_FR_HDR;
	*len = n;
	return 1;
}

static inline void
dn_fr_next(struct dn_fr *r, uint32_t len)
{
	r->pos += dn_fr_record(len);
}

/* Gives the space read so far back to the producer. */
static inline void
dn_fr_release(struct dn_fr *r)
{
	atomic_store_explicit(&r->sh->tail, r->pos, memory_order_release);
}

/* After -EBADMSG: forget everything the producer has published. */
static inline void
dn_fr_skip_all(struct dn_fr *r)
{
	/* Only aligned positions are ever taken: a head that is not stays
	 * bad (the next peek says so again) until the producer behaves. */
	r->pos = r->peer & ~(uint64_t)(DN_FR_ALIGN - 1);
	dn_fr_release(r);
}

/* True when a frame may be waiting (a cheap look, for going to sleep). */
static inline int
dn_fr_pending(struct dn_fr *r)
{
	return r->pos != atomic_load_explicit(&r->sh->head,
		memory_order_acquire);
}

#endif /* DN_FRAMERING_H */
