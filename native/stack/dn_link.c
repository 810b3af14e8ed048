#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_mempool.h>

#include "dn_eal.h"
#include "dn_error.h"
#include "dn_link.h"
#include "dn_linkmem.h"
#include "dn_pktpool.h"
#include "dn_ringmbuf.h"

#define DN_BURST 32
#define DN_SMALL_ROOM 2048

struct dn_link {
	char name[48];
	struct dn_linkmem mem;
	struct dn_fr tx_ring;	/* to the master */
	struct dn_fr rx_ring;	/* from the master */
	struct rte_mempool *pool;
	uint16_t room;		/* bytes of frame an mbuf holds */
	int wake_fd;
	int peer_wake_fd;
	int down;
	unsigned int pool_low_mark;

	struct rte_mbuf *rx[DN_BURST];
	uint16_t rx_n;
	uint16_t rx_next;

	uint64_t rx_frames;
	uint64_t tx_frames;
	uint64_t tx_dropped;
	uint64_t rx_dropped;
	uint64_t sleeps;
};

static int
dn_link_map(struct dn_link *link, int fd, uint16_t mtu)
{
	size_t size = dn_linkmem_size(DN_LINK_RING_SIZE);
	uint32_t max_frame = dn_frame_room(mtu);
	struct stat sb;
	void *base;
	int seals;

	/* The master sized the memory for the same ring size; a master of
	 * another version would not have. */
	if (fstat(fd, &sb) < 0)
		return dn_error(-errno, "cannot look at the link memory from "
			"the master: %s", strerror(errno));
	if ((size_t)sb.st_size != size)
		return dn_error(-EPROTO, "link memory from the master is %lld "
			"bytes, expected %zu (a master of another version?)",
			(long long)sb.st_size, size);
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & DN_LINKMEM_SEALS) != DN_LINKMEM_SEALS)
		return dn_error(-EPERM, "link memory from the master is not "
			"sealed against resizing: refused");
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return dn_error(-errno, "cannot map the link memory: %s",
			strerror(errno));
	dn_linkmem_layout(&link->mem, base, DN_LINK_RING_SIZE);
	if (link->mem.bell->magic != DN_DOORBELL_MAGIC ||
	    link->mem.bell->version != DN_LINKMEM_VERSION) {
		munmap(base, size);
		return dn_error(-EPROTO, "link memory from the master has a bad "
			"magic number or version");
	}
	dn_fr_attach(&link->tx_ring, &link->mem.rings->to_master,
		link->mem.to_master, DN_LINK_RING_SIZE, max_frame, 1);
	dn_fr_attach(&link->rx_ring, &link->mem.rings->to_slave,
		link->mem.to_slave, DN_LINK_RING_SIZE, max_frame, 0);
	atomic_store_explicit(&link->mem.rings->slave_attached, 1,
		memory_order_release);
	return 0;
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
	for (i = link->rx_next; i < link->rx_n; i++)
		rte_pktmbuf_free(link->rx[i]);
	atomic_store_explicit(&link->mem.rings->slave_attached, 0,
		memory_order_release);
	munmap(link->mem.bell, link->mem.size);
	/* Every mbuf is back (the stack freed its pbufs first). */
	rte_mempool_free(link->pool);
	free(link);
}

static void
dn_link_fill(struct dn_link *link)
{
	link->rx_next = 0;
	link->rx_n = dn_fr_get_mbufs(&link->rx_ring, link->pool, link->room,
		link->rx, DN_BURST, &link->rx_dropped, &link->rx_dropped);
	link->rx_frames += link->rx_n;
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

int
dn_link_tx(struct dn_link *link, const struct dn_iov *iov, unsigned int n)
{
	uint32_t len = 0, off = 0;
	unsigned int i;
	uint8_t *dst;

	if (link->down) {
		link->tx_dropped++;
		return -ENOTCONN;
	}
	for (i = 0; i < n; i++)
		len += iov[i].len;
	dst = dn_fr_reserve(&link->tx_ring, len);
	if (dst == NULL) {
		/* The master may not have seen the last burst yet. */
		dn_link_tx_flush(link);
		link->tx_dropped++;
		return len > link->tx_ring.max_frame ? -EMSGSIZE : -ENOBUFS;
	}
	for (i = 0; i < n; i++) {
		rte_memcpy(dst + off, iov[i].base, iov[i].len);
		off += iov[i].len;
	}
	dn_fr_commit(&link->tx_ring, len);
	link->tx_frames++;
	return 0;
}

void
dn_link_tx_flush(struct dn_link *link)
{
	if (dn_fr_publish(&link->tx_ring))
		dn_doorbell_ring(&link->mem.bell->master_asleep,
			&link->mem.bell->master_wakeups, link->peer_wake_fd);
}

void
dn_link_set_down(struct dn_link *link)
{
	link->down = 1;
}

int
dn_link_is_down(const struct dn_link *link)
{
	return link->down;
}

int
dn_link_rx_pending(struct dn_link *link)
{
	return link->rx_next < link->rx_n || dn_fr_pending(&link->rx_ring);
}

int
dn_link_arm(struct dn_link *link)
{
	dn_link_tx_flush(link);
	dn_doorbell_announce(&link->mem.bell->slave_asleep);
	if (link->rx_next < link->rx_n || dn_fr_pending(&link->rx_ring)) {
		dn_doorbell_cancel(&link->mem.bell->slave_asleep);
		return 1;
	}
	link->sleeps++;
	return 0;
}

void
dn_link_disarm(struct dn_link *link)
{
	dn_doorbell_cancel(&link->mem.bell->slave_asleep);
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
}
