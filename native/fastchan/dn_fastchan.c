#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dn_doorbell.h"
#include "dn_error.h"
#include "dn_fastchan.h"

#define DN_FC_MAGIC 0x646e6663u /* "dnfc" */
#define DN_FC_HEADER 4096
#define DN_FC_RING_MIN 4096u
#define DN_FC_RING_MAX (64u << 20)
/* A peer that could shrink the region would turn every later access into
 * SIGBUS in this process (and in the master, which watches it); one that
 * could grow it would change the layout derived from its size. */
#define DN_FC_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/*
 * Everything in the region is data the other side can rewrite at any
 * moment. The layout (ring size, where each ring's bytes are) therefore
 * comes from the region's sealed size alone, and each side keeps its own
 * position privately: it only ever reads the peer's position from here,
 * and checks it against its own before using it.
 */
struct dn_fc_ring {
	_Alignas(64) _Atomic uint64_t head;	/* bytes ever written */
	_Atomic uint64_t writes;	/* write calls that put bytes in (counted) */
	_Alignas(64) _Atomic uint64_t tail;	/* bytes ever read */
	_Alignas(64) _Atomic uint32_t reader_asleep;
	_Atomic uint32_t writer_asleep;	/* the writer waits for room */
	_Atomic uint32_t eof;		/* the writer shut down */
	_Atomic uint64_t wakeups;
};

struct dn_fc_region {
	uint32_t magic;
	uint32_t ring_size;	/* informational: sides use the sealed size */
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
	uint64_t tx_head;	/* our position as writer: private */
	uint64_t tx_writes;	/* our count of writes: private, published */
	uint64_t rx_tail;	/* our position as reader: private */
	uint32_t mask;
	int side;
	int self_efd;
	int peer_efd;
	int shut;
	int want_room;	/* a write found the ring full */
	int eof_seen;	/* the reader has been told: stop reporting it */
	int reading;	/* this side wants READABLE (dn_fc_want_read) */
	int broken;	/* the peer published an impossible position */
};

static int
dn_fc_valid_ring_size(uint32_t ring_size)
{
	return ring_size >= DN_FC_RING_MIN && ring_size <= DN_FC_RING_MAX &&
		(ring_size & (ring_size - 1)) == 0;
}

/* The ring size of a sealed region, from its size (which nobody can
 * change), or a negative errno with the reason set. */
static int
dn_fc_check_region(int memfd, uint32_t *ring_size)
{
	struct stat sb;
	int seals;
	uint64_t rings;

	seals = fcntl(memfd, F_GET_SEALS);
	if (seals < 0)
		return dn_error(-errno, "cannot read the fast channel's seals "
			"(not a memfd?): %s", strerror(errno));
	if ((seals & DN_FC_SEALS) != DN_FC_SEALS)
		return dn_error(-EPERM, "fast channel region is not sealed "
			"against resizing: refused");
	if (fstat(memfd, &sb) < 0)
		return dn_error(-errno, "cannot look at the fast channel: %s",
			strerror(errno));
	if (sb.st_size <= DN_FC_HEADER)
		return dn_error(-EPROTO, "fast channel region is too small");
	rings = ((uint64_t)sb.st_size - DN_FC_HEADER) / 2;
	if (rings > DN_FC_RING_MAX ||
	    !dn_fc_valid_ring_size((uint32_t)rings) ||
	    (uint64_t)sb.st_size != DN_FC_HEADER + 2 * rings)
		return dn_error(-EPROTO, "fast channel region of %lld bytes "
			"has no valid layout", (long long)sb.st_size);
	*ring_size = (uint32_t)rings;
	return 0;
}

/* After the peer published an impossible position: the stream is lost.
 * Both sides see a reset from now on, as after an abort. */
static int
dn_fc_corrupt(struct dn_fc *fc)
{
	static const uint64_t one = 1;

	if (!fc->broken) {
		fc->broken = 1;
		atomic_store_explicit(&fc->r->reset, 1, memory_order_release);
		if (write(fc->peer_efd, &one, sizeof(one)) < 0)
			(void)0;
	}
	return dn_error(-ECONNRESET, "fast channel reset: the peer wrote an "
		"impossible ring position");
}

int
dn_fc_init(int memfd, uint32_t ring_size)
{
	struct dn_fc_region *r;
	size_t len = DN_FC_HEADER + 2 * (size_t)ring_size;

	if (!dn_fc_valid_ring_size(ring_size))
		return dn_error(-EINVAL, "fast channel ring size %u is not a "
			"power of two from 4 KiB to 64 MiB", ring_size);
	if (ftruncate(memfd, (off_t)len) < 0)
		return dn_error(-errno, "cannot size the fast channel: %s",
			strerror(errno));
	if (fcntl(memfd, F_ADD_SEALS, DN_FC_SEALS) < 0)
		return dn_error(-errno, "cannot seal the fast channel region "
			"(a memfd made without MFD_ALLOW_SEALING?): %s",
			strerror(errno));
	r = mmap(NULL, DN_FC_HEADER, PROT_READ | PROT_WRITE, MAP_SHARED,
		memfd, 0);
	if (r == MAP_FAILED)
		return dn_error(-errno, "cannot map the fast channel: %s",
			strerror(errno));
	memset(r, 0, sizeof(*r));
	r->ring_size = ring_size;
	atomic_thread_fence(memory_order_release);
	r->magic = DN_FC_MAGIC;
	munmap(r, DN_FC_HEADER);
	return 0;
}

int
dn_fc_open(int memfd, int side, int self_efd, int peer_efd,
	struct dn_fc **out)
{
	struct dn_fc *fc;
	uint32_t magic, ring_size;
	void *map;
	size_t len;
	int ret;

	if (side != 0 && side != 1)
		return dn_error(-EINVAL, "fast channel side must be 0 or 1");
	ret = dn_fc_check_region(memfd, &ring_size);
	if (ret < 0)
		return ret;
	if (pread(memfd, &magic, sizeof(magic), 0) != sizeof(magic) ||
	    magic != DN_FC_MAGIC)
		return dn_error(-EPROTO, "not a fast channel region");
	len = DN_FC_HEADER + 2 * (size_t)ring_size;
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
	fc->tx_data = (char *)map + DN_FC_HEADER + (size_t)side * ring_size;
	fc->rx_data = (char *)map + DN_FC_HEADER +
		(size_t)(1 - side) * ring_size;
	fc->mask = ring_size - 1;
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
	uint64_t head = fc->tx_head, tail;
	uint32_t size = fc->mask + 1, room, off, first;

	if (dn_fc_is_reset(fc))
		return dn_error(-ECONNRESET, "fast channel was reset");
	if (fc->shut)
		return dn_error(-EPIPE, "fast channel was shut down for "
			"writing");
	/* Any write answers DN_FC_WRITABLE; a short one asks for it again. */
	fc->want_room = 0;
	tail = atomic_load_explicit(&fc->tx->tail, memory_order_acquire);
	if (head - tail > size)
		return dn_fc_corrupt(fc);
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
	fc->tx_head = head + len;
	/* A count for the master's metrics, on the line head is written to
	 * anyway; kept privately so a peer's scribble cannot make it ours. */
	atomic_store_explicit(&fc->tx->writes, ++fc->tx_writes, memory_order_relaxed);
	atomic_store_explicit(&fc->tx->head, head + len, memory_order_release);
	dn_fc_ring_peer(fc, &fc->tx->reader_asleep, fc->tx);
	return (int)len;
}

int
dn_fc_read(struct dn_fc *fc, void *buf, uint32_t len)
{
	uint64_t head, tail = fc->rx_tail;
	uint32_t avail, off, first, size = fc->mask + 1;

	if (dn_fc_is_reset(fc))
		return dn_error(-ECONNRESET, "fast channel was reset by the "
			"peer");
	head = atomic_load_explicit(&fc->rx->head, memory_order_acquire);
	if (head - tail > size)
		return dn_fc_corrupt(fc);
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
			if (head - tail > size)
				return dn_fc_corrupt(fc);
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
	fc->rx_tail = tail + len;
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
	    fc->rx_tail ||
	    (!fc->eof_seen &&
	     atomic_load_explicit(&fc->rx->eof, memory_order_acquire))))
		bits |= DN_FC_READABLE;
	/* Reported until the caller writes: dn_fc_arm() looks too, and what
	 * it sees must still be there at the next poll. An impossible tail
	 * counts as room too: the write that follows reports the reset. */
	if (fc->want_room &&
	    fc->tx_head - atomic_load_explicit(&fc->tx->tail,
	    memory_order_acquire) != size)
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

/* Bounded by the ring: a read of what this reports then finds any
 * impossible position and resets the channel. */
uint32_t
dn_fc_rx_queued(const struct dn_fc *fc)
{
	uint64_t n = atomic_load(&fc->rx->head) - fc->rx_tail;

	return n > fc->mask + 1 ? fc->mask + 1 : (uint32_t)n;
}

uint32_t
dn_fc_tx_queued(const struct dn_fc *fc)
{
	uint64_t n = fc->tx_head - atomic_load(&fc->tx->tail);

	return n > fc->mask + 1 ? fc->mask + 1 : (uint32_t)n;
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
	struct dn_fc_region *r;
	uint32_t ring_size;
};

int
dn_fc_watch_open(int memfd, struct dn_fc_watch **out)
{
	struct dn_fc_watch *w;
	uint32_t ring_size;
	void *map;
	int ret;

	/* Truncating a region the master maps would kill the master. */
	ret = dn_fc_check_region(memfd, &ring_size);
	if (ret < 0)
		return ret;
	/* Writable for dn_fc_watch_reset() alone. */
	map = mmap(NULL, DN_FC_HEADER, PROT_READ | PROT_WRITE, MAP_SHARED,
		memfd, 0);
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
	w->ring_size = ring_size;
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
		out->writes[s] = atomic_load_explicit(&r->ring[s].writes,
			memory_order_relaxed);
		out->closed[s] = atomic_load_explicit(&r->closed[s],
			memory_order_acquire);
		out->eof[s] = atomic_load_explicit(&r->ring[s].eof,
			memory_order_relaxed);
	}
	out->reset = atomic_load_explicit(&r->reset, memory_order_relaxed);
	out->ring_size = w->ring_size;
}

void
dn_fc_watch_reset(struct dn_fc_watch *w)
{
	atomic_store_explicit(&w->r->reset, 1, memory_order_release);
}

void
dn_fc_watch_close(struct dn_fc_watch *w)
{
	munmap(w->r, DN_FC_HEADER);
	free(w);
}
