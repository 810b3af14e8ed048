#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_byteorder.h>

#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_mempool.h>

#include "dn_eal.h"
#include "dn_error.h"
#include "dn_limit.h"
#include "dn_link.h"
#include "dn_linkmem.h"
#include "dn_pktpool.h"
#include "dn_ringmbuf.h"

#define DN_BURST 32
#define DN_SMALL_ROOM 2048

/* One peer link (dn_link.h): its memory, our two rings in it, and which
 * flags are ours for the role we play. */
struct dn_peer {
	uint64_t id;
	struct dn_linkmem mem;
	struct dn_fr tx_ring;
	struct dn_fr rx_ring;
	_Atomic uint32_t *asleep;	/* ours */
	_Atomic uint32_t *attached;	/* ours */
	_Atomic uint32_t *peer_asleep;
	_Atomic uint32_t *peer_attached;
	_Atomic uint64_t *peer_wakeups;
	int peer_wake_fd;
	/* The peer wrote something impossible on its ring: we stop reading
	 * it (a ring that never makes sense would keep us from sleeping) and
	 * send through the master until the master takes the link down. */
	int broken;
	uint8_t mac[6];
	uint8_t own_mac[6];
	uint32_t ip;		/* network byte order, as in a frame */
	uint32_t own_ip;
	int ip6_ok;
	uint8_t ip6[16];
	uint8_t own_ip6[16];
};

struct dn_link {
	char name[48];
	struct dn_linkmem mem;
	struct dn_fr tx_ring;	/* to the master */
	struct dn_fr rx_ring;	/* from the master */
	struct rte_mempool *pool;
	uint16_t room;		/* bytes of frame an mbuf holds */
	uint32_t max_frame;
	int wake_fd;
	int peer_wake_fd;
	int down;
	unsigned int pool_low_mark;

	struct rte_mbuf *rx[DN_BURST];
	uint16_t rx_n;
	uint16_t rx_next;

	struct dn_peer *peers[DN_PEERS_MAX];
	unsigned int n_peers;
	struct dn_tokens *peer_egress;	/* the caller's; NULL: no limit */
	uint64_t peer_tx_limited;
	unsigned int rx_turn;	/* 0: the master's ring next, k: peer k-1 */

	uint64_t rx_frames;
	uint64_t tx_frames;
	uint64_t tx_dropped;
	uint64_t rx_dropped;
	uint64_t sleeps;
	uint64_t peer_rx_frames;
	uint64_t peer_tx_frames;
	uint64_t peer_rx_dropped;
	uint64_t peer_tx_detoured;
	uint64_t peers_broken;
};

/* Maps link memory from the master after checking that it is what the
 * master makes: our size, sealed, our magic and version. */
static int
dn_linkmem_open(struct dn_linkmem *mem, int fd, const char *what)
{
	size_t size = dn_linkmem_size(DN_LINK_RING_SIZE);
	struct stat sb;
	void *base;
	int seals;

	/* The master sized the memory for the same ring size; a master of
	 * another version would not have. */
	if (fstat(fd, &sb) < 0)
		return dn_error(-errno, "cannot look at the %s memory from "
			"the master: %s", what, strerror(errno));
	if ((size_t)sb.st_size != size)
		return dn_error(-EPROTO, "%s memory from the master is %lld "
			"bytes, expected %zu (a master of another version?)",
			what, (long long)sb.st_size, size);
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & DN_LINKMEM_SEALS) != DN_LINKMEM_SEALS)
		return dn_error(-EPERM, "%s memory from the master is not "
			"sealed against resizing: refused", what);
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return dn_error(-errno, "cannot map the %s memory: %s", what,
			strerror(errno));
	dn_linkmem_layout(mem, base, DN_LINK_RING_SIZE);
	if (mem->bell->magic != DN_DOORBELL_MAGIC ||
	    mem->bell->version != DN_LINKMEM_VERSION) {
		munmap(base, size);
		return dn_error(-EPROTO, "%s memory from the master has a bad "
			"magic number or version", what);
	}
	return 0;
}

static int
dn_link_map(struct dn_link *link, int fd, uint16_t mtu)
{
	int ret;

	ret = dn_linkmem_open(&link->mem, fd, "link");
	if (ret < 0)
		return ret;
	link->max_frame = dn_frame_room(mtu);
	dn_fr_attach(&link->tx_ring, &link->mem.rings->to_master,
		link->mem.to_master, DN_LINK_RING_SIZE, link->max_frame, 1);
	dn_fr_attach(&link->rx_ring, &link->mem.rings->to_slave,
		link->mem.to_slave, DN_LINK_RING_SIZE, link->max_frame, 0);
	atomic_store_explicit(&link->mem.rings->slave_attached, 1,
		memory_order_release);
	return 0;
}

/* ---- peer links ---- */

static void
dn_peer_free(struct dn_peer *p)
{
	atomic_store_explicit(p->attached, 0, memory_order_release);
	munmap(p->mem.bell, p->mem.size);
	close(p->peer_wake_fd);
	free(p);
}

int
dn_link_peer_add(struct dn_link *link, const struct dn_peer_config *cfg)
{
	struct dn_linkmem_rings *r;
	struct dn_peer *p;
	unsigned int i;
	int ret;

	if (cfg->role != 0 && cfg->role != 1)
		return dn_error(-EINVAL, "peer link role %d is neither 0 nor 1",
			cfg->role);
	if (link->down)
		return dn_error(-ENOTCONN, "the master is gone: no peer links");
	for (i = 0; i < link->n_peers; i++)
		if (link->peers[i]->id == cfg->id)
			return dn_error(-EEXIST, "peer link %llu is already up",
				(unsigned long long)cfg->id);
	if (link->n_peers == DN_PEERS_MAX)
		return dn_error(-ENOSPC, "already %d peer links",
			DN_PEERS_MAX);
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return dn_error(-ENOMEM, "out of memory for a peer link");
	p->peer_wake_fd = fcntl(cfg->peer_wake_fd, F_DUPFD_CLOEXEC, 0);
	if (p->peer_wake_fd < 0) {
		ret = dn_error(-errno, "cannot keep the peer's eventfd: %s",
			strerror(errno));
		free(p);
		return ret;
	}
	ret = dn_linkmem_open(&p->mem, cfg->shm_fd, "peer link");
	if (ret < 0) {
		close(p->peer_wake_fd);
		free(p);
		return ret;
	}
	r = p->mem.rings;
	p->id = cfg->id;
	memcpy(p->mac, cfg->mac, 6);
	memcpy(p->own_mac, cfg->own_mac, 6);
	p->ip = rte_cpu_to_be_32(cfg->ip);
	p->own_ip = rte_cpu_to_be_32(cfg->own_ip);
	p->ip6_ok = cfg->ip6_ok;
	memcpy(p->ip6, cfg->ip6, 16);
	memcpy(p->own_ip6, cfg->own_ip6, 16);
	if (cfg->role == 0) {
		dn_fr_attach(&p->tx_ring, &r->to_master, p->mem.to_master,
			DN_LINK_RING_SIZE, link->max_frame, 1);
		dn_fr_attach(&p->rx_ring, &r->to_slave, p->mem.to_slave,
			DN_LINK_RING_SIZE, link->max_frame, 0);
		p->asleep = &p->mem.bell->slave_asleep;
		p->peer_asleep = &p->mem.bell->master_asleep;
		p->peer_wakeups = &p->mem.bell->master_wakeups;
		p->attached = &r->slave_attached;
		p->peer_attached = &r->master_attached;
	} else {
		dn_fr_attach(&p->tx_ring, &r->to_slave, p->mem.to_slave,
			DN_LINK_RING_SIZE, link->max_frame, 1);
		dn_fr_attach(&p->rx_ring, &r->to_master, p->mem.to_master,
			DN_LINK_RING_SIZE, link->max_frame, 0);
		p->asleep = &p->mem.bell->master_asleep;
		p->peer_asleep = &p->mem.bell->slave_asleep;
		p->peer_wakeups = &p->mem.bell->slave_wakeups;
		p->attached = &r->master_attached;
		p->peer_attached = &r->slave_attached;
	}
	atomic_store_explicit(p->attached, 1, memory_order_release);
	link->peers[link->n_peers++] = p;
	return 0;
}

int
dn_link_peer_remove(struct dn_link *link, uint64_t id)
{
	unsigned int i;

	for (i = 0; i < link->n_peers; i++) {
		if (link->peers[i]->id != id)
			continue;
		dn_peer_free(link->peers[i]);
		link->peers[i] = link->peers[--link->n_peers];
		link->peers[link->n_peers] = NULL;
		link->rx_turn = 0;
		return 0;
	}
	return dn_error(-ENOENT, "no peer link %llu", (unsigned long long)id);
}

static void
dn_link_peers_close(struct dn_link *link)
{
	while (link->n_peers > 0) {
		link->n_peers--;
		dn_peer_free(link->peers[link->n_peers]);
		link->peers[link->n_peers] = NULL;
	}
	link->rx_turn = 0;
}

static inline int
dn_is_ip4(const uint8_t *f)
{
	return f[12] == 0x08 && f[13] == 0x00;
}

static inline int
dn_is_ip6(const uint8_t *f)
{
	return f[12] == 0x86 && f[13] == 0xdd;
}

/* The peer whose hardware address a frame (its first bytes) is for, if
 * the frame is IP of a family the link carries: other frames (ARP, and
 * multicast, which is no peer's address) go through the master. */
static struct dn_peer *
dn_link_peer_for(struct dn_link *link, const struct dn_iov *first)
{
	const uint8_t *f = first->base;
	struct dn_peer *p;
	unsigned int i;

	if (first->len < 14 || !(dn_is_ip4(f) || dn_is_ip6(f)))
		return NULL;
	for (i = 0; i < link->n_peers; i++) {
		p = link->peers[i];
		if (memcmp(f, p->mac, 6) != 0)
			continue;
		if (p->broken || (dn_is_ip6(f) && !p->ip6_ok))
			return NULL;
		return p;
	}
	return NULL;
}

/* Whether a frame in our own copy is one the peer may send us. */
static int
dn_peer_frame_ok(const struct dn_peer *p, const struct rte_mbuf *m)
{
	const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t src, dst;

	if (m->data_len < 14 || memcmp(f, p->own_mac, 6) != 0 ||
	    memcmp(f + 6, p->mac, 6) != 0)
		return 0;
	if (dn_is_ip6(f))
		return p->ip6_ok && m->data_len >= 14 + 40 &&
			(f[14] >> 4) == 6 && memcmp(f + 22, p->ip6, 16) == 0 &&
			memcmp(f + 38, p->own_ip6, 16) == 0;
	if (!dn_is_ip4(f) || m->data_len < 14 + 20 || (f[14] >> 4) != 4)
		return 0;
	memcpy(&src, f + 26, 4);
	memcpy(&dst, f + 30, 4);
	return src == p->ip && dst == p->own_ip;
}

/* A burst from peer k's ring, each frame checked. */
static uint16_t
dn_peer_fill(struct dn_link *link, struct dn_peer *p)
{
	uint64_t bad = 0;
	uint16_t got, i, n = 0;

	if (p->broken)
		return 0;
	got = dn_fr_get_mbufs(&p->rx_ring, link->pool, link->room, link->rx,
		DN_BURST, &link->peer_rx_dropped, &bad);
	if (bad != 0) {
		p->broken = 1;
		link->peers_broken++;
		link->peer_rx_dropped += bad;
	}
	for (i = 0; i < got; i++) {
		if (dn_peer_frame_ok(p, link->rx[i]))
			link->rx[n++] = link->rx[i];
		else {
			rte_pktmbuf_free(link->rx[i]);
			link->peer_rx_dropped++;
		}
	}
	link->peer_rx_frames += n;
	return n;
}

int
dn_link_open(const struct dn_link_config *cfg, struct dn_link **out)
{
	struct dn_link *link;
	char pool[64];
	int ret;

	ret = dn_eal_register_thread();
	if (ret < 0)
		return ret;
	link = calloc(1, sizeof(*link));
	if (link == NULL)
		return dn_error(-ENOMEM, "out of memory for the link");
	snprintf(link->name, sizeof(link->name), "%s",
		cfg->name ? cfg->name : "dnslave");
	link->wake_fd = cfg->wake_fd;
	link->peer_wake_fd = cfg->peer_wake_fd;
	link->room = cfg->small ? DN_SMALL_ROOM : dn_frame_room(cfg->mtu);

	snprintf(pool, sizeof(pool), "pool_%s", link->name);
	ret = dn_pktpool_create(pool, cfg->n_mbufs, cfg->priv_size,
		link->room, &link->pool);
	if (ret < 0)
		goto fail_free;
	link->pool_low_mark = cfg->n_mbufs / 4;
	ret = dn_link_map(link, cfg->shm_fd, cfg->mtu);
	if (ret < 0)
		goto fail_pool;
	*out = link;
	return 0;

fail_pool:
	rte_mempool_free(link->pool);
fail_free:
	free(link);
	return ret;
}

int
dn_link_remap(struct dn_link *link, int shm_fd, uint16_t mtu, int wake_fd,
	int peer_wake_fd)
{
	struct dn_linkmem old = link->mem;
	int ret;

	dn_link_peers_close(link);
	/* Frames read from the old rings but not yet taken go with them. */
	while (link->rx_next < link->rx_n)
		rte_pktmbuf_free(link->rx[link->rx_next++]);
	ret = dn_link_map(link, shm_fd, mtu);
	if (ret < 0)
		return ret;
	atomic_store_explicit(&old.rings->slave_attached, 0,
		memory_order_release);
	munmap(old.bell, old.size);
	link->wake_fd = wake_fd;
	link->peer_wake_fd = peer_wake_fd;
	link->down = 0;
	return 0;
}

void
dn_link_close(struct dn_link *link)
{
	uint16_t i;

	dn_link_tx_flush(link);
	dn_link_peers_close(link);
	for (i = link->rx_next; i < link->rx_n; i++)
		rte_pktmbuf_free(link->rx[i]);
	atomic_store_explicit(&link->mem.rings->slave_attached, 0,
		memory_order_release);
	munmap(link->mem.bell, link->mem.size);
	/* Every mbuf is back (the stack freed its pbufs first). */
	rte_mempool_free(link->pool);
	free(link);
}

/* The next burst, from the master's ring and each peer's in turn, so a
 * busy source cannot starve the others. */
static void
dn_link_fill(struct dn_link *link)
{
	unsigned int k, src = 0;

	link->rx_next = 0;
	link->rx_n = 0;
	for (k = 0; k <= link->n_peers && link->rx_n == 0; k++) {
		src = (link->rx_turn + k) % (link->n_peers + 1);
		if (src == 0) {
			link->rx_n = dn_fr_get_mbufs(&link->rx_ring, link->pool,
				link->room, link->rx, DN_BURST,
				&link->rx_dropped, &link->rx_dropped);
			link->rx_frames += link->rx_n;
		} else
			link->rx_n = dn_peer_fill(link, link->peers[src - 1]);
	}
	link->rx_turn = (src + 1) % (link->n_peers + 1);
}

int
dn_link_rx(struct dn_link *link, struct dn_rxseg *seg)
{
	struct rte_mbuf *m;

	if (link->rx_next == link->rx_n) {
		dn_link_fill(link);
		if (link->rx_n == 0)
			return 0;
	}
	m = link->rx[link->rx_next++];
	seg->seg = m;
	seg->priv = rte_mbuf_to_priv(m);
	seg->data = rte_pktmbuf_mtod(m, void *);
	seg->len = m->data_len;
	return 1;
}

void
dn_link_free_seg(void *seg)
{
	rte_pktmbuf_free_seg(seg);
}

static void
dn_link_copy(uint8_t *dst, const struct dn_iov *iov, unsigned int n)
{
	uint32_t off = 0;
	unsigned int i;

	for (i = 0; i < n; i++) {
		rte_memcpy(dst + off, iov[i].base, iov[i].len);
		off += iov[i].len;
	}
}

int
dn_link_tx(struct dn_link *link, const struct dn_iov *iov, unsigned int n)
{
	uint32_t len = 0;
	unsigned int i;
	uint8_t *dst;

	if (link->down) {
		link->tx_dropped++;
		return -ENOTCONN;
	}
	for (i = 0; i < n; i++)
		len += iov[i].len;
	if (link->n_peers > 0 && n > 0) {
		struct dn_tokens *t = link->peer_egress;
		struct dn_peer *p = dn_link_peer_for(link, &iov[0]);

		if (p != NULL) {
			int admitted = t == NULL || dn_tokens_admit(t, len);

			dst = NULL;
			if (admitted && atomic_load_explicit(p->peer_attached,
			    memory_order_acquire))
				dst = dn_fr_reserve(&p->tx_ring, len);
			if (dst != NULL) {
				dn_link_copy(dst, iov, n);
				dn_fr_commit(&p->tx_ring, len);
				if (t != NULL)
					dn_tokens_charge(t, len);
				link->peer_tx_frames++;
				return 0;
			}
			/* The master still forwards it. */
			if (admitted)
				link->peer_tx_detoured++;
			else
				link->peer_tx_limited++;
		}
		/* The switch holds this frame to the limit on its own; charged
		 * here as well, it keeps the peer links from adding to that. */
		if (t != NULL)
			dn_tokens_charge(t, len);
	}
	dst = dn_fr_reserve(&link->tx_ring, len);
	if (dst == NULL) {
		/* The master may not have seen the last burst yet. */
		dn_link_tx_flush(link);
		link->tx_dropped++;
		return len > link->tx_ring.max_frame ? -EMSGSIZE : -ENOBUFS;
	}
	dn_link_copy(dst, iov, n);
	dn_fr_commit(&link->tx_ring, len);
	link->tx_frames++;
	return 0;
}

void
dn_link_tx_flush(struct dn_link *link)
{
	unsigned int i;

	if (dn_fr_publish(&link->tx_ring))
		dn_doorbell_ring(&link->mem.bell->master_asleep,
			&link->mem.bell->master_wakeups, link->peer_wake_fd);
	for (i = 0; i < link->n_peers; i++) {
		struct dn_peer *p = link->peers[i];

		if (dn_fr_publish(&p->tx_ring))
			dn_doorbell_ring(p->peer_asleep, p->peer_wakeups,
				p->peer_wake_fd);
	}
}

void
dn_link_set_down(struct dn_link *link)
{
	link->down = 1;
	dn_link_peers_close(link);
}

int
dn_link_is_down(const struct dn_link *link)
{
	return link->down;
}

int
dn_link_rx_pending(struct dn_link *link)
{
	unsigned int i;

	if (link->rx_next < link->rx_n || dn_fr_pending(&link->rx_ring))
		return 1;
	for (i = 0; i < link->n_peers; i++)
		if (!link->peers[i]->broken &&
		    dn_fr_pending(&link->peers[i]->rx_ring))
			return 1;
	return 0;
}

static void
dn_link_cancel(struct dn_link *link)
{
	unsigned int i;

	dn_doorbell_cancel(&link->mem.bell->slave_asleep);
	for (i = 0; i < link->n_peers; i++)
		dn_doorbell_cancel(link->peers[i]->asleep);
}

int
dn_link_arm(struct dn_link *link)
{
	unsigned int i;

	dn_link_tx_flush(link);
	/* Every flag first, then every ring: a frame put on any ring after
	 * its flag is seen set rings the eventfd we sleep on. */
	dn_doorbell_announce(&link->mem.bell->slave_asleep);
	for (i = 0; i < link->n_peers; i++)
		dn_doorbell_announce(link->peers[i]->asleep);
	if (dn_link_rx_pending(link)) {
		dn_link_cancel(link);
		return 1;
	}
	link->sleeps++;
	return 0;
}

void
dn_link_disarm(struct dn_link *link)
{
	dn_link_cancel(link);
	dn_doorbell_drain(link->wake_fd);
}

int
dn_link_wake_fd(const struct dn_link *link)
{
	return link->wake_fd;
}

int
dn_link_pool_low(const struct dn_link *link)
{
	return rte_mempool_avail_count(link->pool) < link->pool_low_mark;
}

void
dn_link_stats(const struct dn_link *link, struct dn_link_stats *st)
{
	st->rx_frames = link->rx_frames;
	st->tx_frames = link->tx_frames;
	st->tx_dropped = link->tx_dropped;
	st->rx_dropped = link->rx_dropped;
	st->wakeups_sent = atomic_load(&link->mem.bell->master_wakeups);
	st->sleeps = link->sleeps;
	st->pool_free = rte_mempool_avail_count(link->pool);
	st->peers = link->n_peers;
	st->peer_rx_frames = link->peer_rx_frames;
	st->peer_tx_frames = link->peer_tx_frames;
	st->peer_rx_dropped = link->peer_rx_dropped;
	st->peer_tx_detoured = link->peer_tx_detoured;
	st->peers_broken = link->peers_broken;
	st->peer_tx_limited = link->peer_tx_limited;
}

void
dn_link_set_peer_egress(struct dn_link *link, struct dn_tokens *t)
{
	link->peer_egress = t != NULL && dn_tokens_limited(t) ? t : NULL;
}
