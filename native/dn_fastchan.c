#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dn_doorbell.h"
#include "dn_error.h"
#include "dn_fastchan.h"

#define DN_FC_MAGIC 0x646e6663u /* "dnfc" */
#define DN_FC_HEADER 4096

struct dn_fc_ring {
	_Alignas(64) _Atomic uint64_t head;	/* bytes ever written */
	_Alignas(64) _Atomic uint64_t tail;	/* bytes ever read */
	_Alignas(64) _Atomic uint32_t reader_asleep;
	_Atomic uint32_t writer_asleep;	/* the writer waits for room */
	_Atomic uint32_t eof;		/* the writer shut down */
	_Atomic uint64_t wakeups;
	uint32_t data_off;
};

struct dn_fc_region {
	uint32_t magic;
	uint32_t ring_size;
	_Atomic uint32_t reset;
	_Atomic uint32_t closed[2];	/* side s has let go of the channel */
	struct dn_fc_ring ring[2];	/* ring[s]: written by side s */
};

_Static_assert(sizeof(struct dn_fc_region) <= DN_FC_HEADER,
	"fast channel header must fit its page");

struct dn_fc {
	struct dn_fc_region *r;
	size_t map_len;
	struct dn_fc_ring *tx;
	struct dn_fc_ring *rx;
	char *tx_data;
	char *rx_data;
	uint32_t mask;
	int side;
	int self_efd;
	int peer_efd;
	int shut;
	int want_room;	/* a write found the ring full */
	int eof_seen;	/* the reader has been told: stop reporting it */
	int reading;	/* this side wants READABLE (dn_fc_want_read) */
};

int
dn_fc_init(int memfd, uint32_t ring_size)
{
	struct dn_fc_region *r;
	size_t len = DN_FC_HEADER + 2 * (size_t)ring_size;

	if (ring_size < 4096 || ring_size > (64u << 20) ||
	    (ring_size & (ring_size - 1)) != 0)
		return dn_error(-EINVAL, "fast channel ring size %u is not a "
			"power of two from 4 KiB to 64 MiB", ring_size);
	if (ftruncate(memfd, (off_t)len) < 0)
		return dn_error(-errno, "cannot size the fast channel: %s",
			strerror(errno));
	r = mmap(NULL, DN_FC_HEADER, PROT_READ | PROT_WRITE, MAP_SHARED,
		memfd, 0);
	if (r == MAP_FAILED)
		return dn_error(-errno, "cannot map the fast channel: %s",
			strerror(errno));
	memset(r, 0, sizeof(*r));
	r->ring_size = ring_size;
	r->ring[0].data_off = DN_FC_HEADER;
	r->ring[1].data_off = DN_FC_HEADER + ring_size;
	atomic_thread_fence(memory_order_release);
	r->magic = DN_FC_MAGIC;
	munmap(r, DN_FC_HEADER);
	return 0;
}

int
dn_fc_open(int memfd, int side, int self_efd, int peer_efd,
	struct dn_fc **out)
{
	struct dn_fc_region head;
	struct dn_fc *fc;
	void *map;
	size_t len;

	if (side != 0 && side != 1)
		return dn_error(-EINVAL, "fast channel side must be 0 or 1");
	if (pread(memfd, &head, sizeof(head.magic) + sizeof(head.ring_size),
	    0) != (ssize_t)(sizeof(head.magic) + sizeof(head.ring_size)) ||
	    head.magic != DN_FC_MAGIC)
		return dn_error(-EPROTO, "not a fast channel region");
	len = DN_FC_HEADER + 2 * (size_t)head.ring_size;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (map == MAP_FAILED)
		return dn_error(-errno, "cannot map the fast channel: %s",
			strerror(errno));
	fc = calloc(1, sizeof(*fc));
	if (fc == NULL) {
		munmap(map, len);
		return dn_error(-ENOMEM, "out of memory for a fast channel");
	}
	fc->r = map;
	fc->map_len = len;
	fc->tx = &fc->r->ring[side];
	fc->rx = &fc->r->ring[1 - side];
	fc->tx_data = (char *)map + fc->tx->data_off;
	fc->rx_data = (char *)map + fc->rx->data_off;
	fc->mask = head.ring_size - 1;
	fc->side = side;
	fc->self_efd = self_efd;
	fc->peer_efd = peer_efd;
	fc->reading = 1;
	*out = fc;
	return 0;
}

void
dn_fc_close(struct dn_fc *fc)
{
	/* For the master's books (dn_fc_watch): this side is done. */
	atomic_store_explicit(&fc->r->closed[fc->side], 1,
		memory_order_release);
	munmap(fc->r, fc->map_len);
	free(fc);
}

static void
dn_fc_ring_peer(struct dn_fc *fc, _Atomic uint32_t *flag,
	struct dn_fc_ring *ring)
{
	dn_doorbell_ring(flag, &ring->wakeups, fc->peer_efd);
}

static inline int
dn_fc_is_reset(const struct dn_fc *fc)
{
	return atomic_load_explicit(&fc->r->reset, memory_order_acquire) != 0;
}

int
dn_fc_write(struct dn_fc *fc, const void *buf, uint32_t len)
{
	uint64_t head, tail;
	uint32_t size = fc->mask + 1, room, off, first;

	if (dn_fc_is_reset(fc))
		return dn_error(-ECONNRESET, "fast channel was reset");
	if (fc->shut)
		return dn_error(-EPIPE, "fast channel was shut down for "
			"writing");
	/* Any write answers DN_FC_WRITABLE; a short one asks for it again. */
	fc->want_room = 0;
	head = atomic_load_explicit(&fc->tx->head, memory_order_relaxed);
	tail = atomic_load_explicit(&fc->tx->tail, memory_order_acquire);
	room = size - (uint32_t)(head - tail);
	if (len > room) {
		/* Not all of it fits: the caller waits for DN_FC_WRITABLE. */
		len = room;
		fc->want_room = 1;
	}
	if (len == 0)
		return 0;
	off = (uint32_t)head & fc->mask;
	first = len < size - off ? len : size - off;
	memcpy(fc->tx_data + off, buf, first);
	memcpy(fc->tx_data, (const char *)buf + first, len - first);
	atomic_store_explicit(&fc->tx->head, head + len, memory_order_release);
	dn_fc_ring_peer(fc, &fc->tx->reader_asleep, fc->tx);
	return (int)len;
}

int
dn_fc_read(struct dn_fc *fc, void *buf, uint32_t len)
{
	uint64_t head, tail;
	uint32_t avail, off, first, size = fc->mask + 1;

	if (dn_fc_is_reset(fc))
		return dn_error(-ECONNRESET, "fast channel was reset by the "
			"peer");
	tail = atomic_load_explicit(&fc->rx->tail, memory_order_relaxed);
	head = atomic_load_explicit(&fc->rx->head, memory_order_acquire);
	avail = (uint32_t)(head - tail);
	if (avail == 0) {
		if (atomic_load_explicit(&fc->rx->eof, memory_order_acquire)) {
			/* eof is set after the last head store: re-check. */
			head = atomic_load_explicit(&fc->rx->head,
				memory_order_acquire);
			if (head == tail) {
				fc->eof_seen = 1;
				return 0;
			}
			avail = (uint32_t)(head - tail);
		} else {
			return -EAGAIN;
		}
	}
	if (len > avail)
		len = avail;
	off = (uint32_t)tail & fc->mask;
	first = len < size - off ? len : size - off;
	memcpy(buf, fc->rx_data + off, first);
	memcpy((char *)buf + first, fc->rx_data, len - first);
	atomic_store_explicit(&fc->rx->tail, tail + len, memory_order_release);
	/* Room for a writer that found the ring full. */
	dn_fc_ring_peer(fc, &fc->rx->writer_asleep, fc->rx);
	return (int)len;
}

int
dn_fc_shutdown(struct dn_fc *fc)
{
	if (dn_fc_is_reset(fc))
		return dn_error(-ECONNRESET, "fast channel was reset");
	if (!fc->shut) {
		static const uint64_t one = 1;

		fc->shut = 1;
		atomic_store_explicit(&fc->tx->eof, 1, memory_order_release);
		/* Rare enough to ring unconditionally. */
		if (write(fc->peer_efd, &one, sizeof(one)) < 0)
			(void)0;
	}
	return 0;
}

void
dn_fc_reset(struct dn_fc *fc)
{
	static const uint64_t one = 1;

	atomic_store_explicit(&fc->r->reset, 1, memory_order_release);
	/* Always ring: the peer must learn even if it is busy elsewhere. */
	if (write(fc->peer_efd, &one, sizeof(one)) < 0)
		(void)0;	/* a saturated counter wakes it anyway */
}

int
dn_fc_ready(struct dn_fc *fc)
{
	int bits = 0;
	uint32_t size = fc->mask + 1;

	if (dn_fc_is_reset(fc))
		return DN_FC_READABLE | DN_FC_WRITABLE;
	if (fc->reading &&
	    (atomic_load_explicit(&fc->rx->head, memory_order_acquire) !=
	    atomic_load_explicit(&fc->rx->tail, memory_order_relaxed) ||
	    (!fc->eof_seen &&
	     atomic_load_explicit(&fc->rx->eof, memory_order_acquire))))
		bits |= DN_FC_READABLE;
	/* Reported until the caller writes: dn_fc_arm() looks too, and what
	 * it sees must still be there at the next poll. */
	if (fc->want_room &&
	    (uint32_t)(atomic_load_explicit(&fc->tx->head,
	    memory_order_relaxed) - atomic_load_explicit(&fc->tx->tail,
	    memory_order_acquire)) < size)
		bits |= DN_FC_WRITABLE;
	return bits;
}

void
dn_fc_want_read(struct dn_fc *fc, int on)
{
	fc->reading = on != 0;
	if (!fc->reading)
		dn_doorbell_cancel(&fc->rx->reader_asleep);
}

int
dn_fc_arm(struct dn_fc *fc)
{
	int bits;

	if (fc->reading)
		dn_doorbell_announce(&fc->rx->reader_asleep);
	if (fc->want_room)
		dn_doorbell_announce(&fc->tx->writer_asleep);
	bits = dn_fc_ready(fc);
	if (bits) {
		dn_doorbell_cancel(&fc->rx->reader_asleep);
		dn_doorbell_cancel(&fc->tx->writer_asleep);
	}
	return bits;
}

void
dn_fc_disarm(struct dn_fc *fc)
{
	dn_doorbell_cancel(&fc->rx->reader_asleep);
	dn_doorbell_cancel(&fc->tx->writer_asleep);
	dn_doorbell_drain(fc->self_efd);
}

int
dn_fc_fileno(const struct dn_fc *fc)
{
	return fc->self_efd;
}

uint32_t
dn_fc_rx_queued(const struct dn_fc *fc)
{
	return (uint32_t)(atomic_load(&fc->rx->head) -
		atomic_load(&fc->rx->tail));
}

uint32_t
dn_fc_tx_queued(const struct dn_fc *fc)
{
	return (uint32_t)(atomic_load(&fc->tx->head) -
		atomic_load(&fc->tx->tail));
}

int
dn_fc_arm_set(struct dn_fc *const *fcs, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		if (dn_fc_arm(fcs[i])) {
			dn_fc_disarm_set(fcs, i);
			return 0;
		}
	}
	return 1;
}

void
dn_fc_disarm_set(struct dn_fc *const *fcs, int n)
{
	int i;

	/* No drain here: a poller's channels share its endpoint's eventfd,
	 * which it drains once. */
	for (i = 0; i < n; i++) {
		dn_doorbell_cancel(&fcs[i]->rx->reader_asleep);
		dn_doorbell_cancel(&fcs[i]->tx->writer_asleep);
	}
}

struct dn_fc_watch {
	const struct dn_fc_region *r;
};

int
dn_fc_watch_open(int memfd, struct dn_fc_watch **out)
{
	struct dn_fc_watch *w;
	void *map;

	map = mmap(NULL, DN_FC_HEADER, PROT_READ, MAP_SHARED, memfd, 0);
	if (map == MAP_FAILED)
		return dn_error(-errno, "cannot map the fast channel: %s",
			strerror(errno));
	if (((const struct dn_fc_region *)map)->magic != DN_FC_MAGIC) {
		munmap(map, DN_FC_HEADER);
		return dn_error(-EPROTO, "not a fast channel region");
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		munmap(map, DN_FC_HEADER);
		return dn_error(-ENOMEM, "out of memory for a fast channel");
	}
	w->r = map;
	*out = w;
	return 0;
}

void
dn_fc_watch_read(const struct dn_fc_watch *w, struct dn_fc_stats *out)
{
	const struct dn_fc_region *r = w->r;
	int s;

	for (s = 0; s < 2; s++) {
		out->bytes[s] = atomic_load_explicit(&r->ring[s].head,
			memory_order_relaxed);
		out->closed[s] = atomic_load_explicit(&r->closed[s],
			memory_order_acquire);
		out->eof[s] = atomic_load_explicit(&r->ring[s].eof,
			memory_order_relaxed);
	}
	out->reset = atomic_load_explicit(&r->reset, memory_order_relaxed);
	out->ring_size = r->ring_size;
}

void
dn_fc_watch_close(struct dn_fc_watch *w)
{
	munmap((void *)w->r, DN_FC_HEADER);
	free(w);
}
