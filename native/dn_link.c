#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "dn_doorbell.h"
#include "dn_eal.h"
#include "dn_error.h"
#include "dn_link.h"
#include "dn_memif.h"

#define DN_BURST 32
/* 512 descriptors a direction: 58 jumbo frames fill a 512 KiB window. */
#define DN_LINK_LOG2_RING 9

struct dn_link {
	char name[48];
	uint16_t port_id;
	struct rte_mempool *pool;
	struct dn_doorbell *bell;
	int wake_fd;
	int peer_wake_fd;
	unsigned int pool_low_mark;

	struct rte_mbuf *rx[DN_BURST];
	uint16_t rx_n;
	uint16_t rx_next;

	struct rte_mbuf *tx[DN_BURST];
	uint16_t tx_n;

	uint64_t rx_frames;
	uint64_t tx_frames;
	uint64_t tx_dropped;
	uint64_t sleeps;
};

int
dn_link_open(const struct dn_link_config *cfg, struct dn_link **out)
{
	struct dn_memif_config mc = {
		.name = NULL,
		.socket = cfg->socket,
		.secret = cfg->secret,
		.server = 0,
		.mtu = cfg->mtu,
		.log2_ring = DN_LINK_LOG2_RING,
		.buffer_size = dn_memif_buffer_size(cfg->mtu),
		.mac = cfg->mac,
		/* Zero copy needs the mbufs in file-backed hugepage memory the
		 * master can map. */
		.zero_copy = !cfg->small && rte_eal_has_hugepages() &&
			getenv("DOCKNET_MEMIF_COPY") == NULL,
	};
	struct dn_link *link;
	void *page;
	int ret;

	ret = dn_eal_register_thread();
	if (ret < 0)
		return ret;
	link = calloc(1, sizeof(*link));
	if (link == NULL)
		return dn_error(-ENOMEM, "out of memory for the link");
	snprintf(link->name, sizeof(link->name), "net_memif_%s",
		cfg->name ? cfg->name : "dnslave");
	mc.name = link->name;

	page = mmap(NULL, DN_DOORBELL_SIZE, PROT_READ | PROT_WRITE,
		MAP_SHARED, cfg->doorbell_fd, 0);
	if (page == MAP_FAILED) {
		ret = dn_error(-errno, "cannot map the doorbell page: %s",
			strerror(errno));
		goto fail_free;
	}
	link->bell = page;
	if (link->bell->magic != DN_DOORBELL_MAGIC) {
		ret = dn_error(-EPROTO, "doorbell page from the master has "
			"a bad magic number");
		goto fail_unmap;
	}
	link->wake_fd = cfg->wake_fd;
	link->peer_wake_fd = cfg->peer_wake_fd;

	/* A whole frame in one mbuf: in zero-copy mode the mbufs are the memif
	 * buffers, and frames chained over several buffers are what memif
	 * handles worst. */
	{
		char pool[64];

		snprintf(pool, sizeof(pool), "pool_%s", link->name);
		ret = dn_pktpool_create(pool, cfg->n_mbufs, cfg->priv_size,
			cfg->small ? 2048 : mc.buffer_size, &link->pool);
	}
	if (ret < 0)
		goto fail_unmap;
	link->pool_low_mark = cfg->n_mbufs / 4;

	ret = dn_memif_create(&mc, link->pool, &link->port_id);
	if (ret < 0)
		goto fail_pool;
	ret = dn_memif_wait_link(link->port_id, cfg->link_timeout_ms);
	if (ret < 0) {
		dn_memif_destroy(link->port_id, link->name);
		goto fail_pool;
	}
	*out = link;
	return 0;

fail_pool:
	rte_mempool_free(link->pool);
fail_unmap:
	munmap(page, DN_DOORBELL_SIZE);
fail_free:
	free(link);
	return ret;
}

void
dn_link_close(struct dn_link *link)
{
	uint16_t i;

	dn_link_tx_flush(link);
	for (i = 0; i < link->tx_n; i++)
		rte_pktmbuf_free(link->tx[i]);
	for (i = link->rx_next; i < link->rx_n; i++)
		rte_pktmbuf_free(link->rx[i]);
	dn_memif_destroy(link->port_id, link->name);
	/* Every mbuf is back (the stack freed its pbufs first). */
	rte_mempool_free(link->pool);
	munmap(link->bell, DN_DOORBELL_SIZE);
	free(link);
}

static inline void
dn_link_fill(struct dn_link *link)
{
	link->rx_n = rte_eth_rx_burst(link->port_id, 0, link->rx, DN_BURST);
	link->rx_next = 0;
	link->rx_frames += link->rx_n;
}

int
dn_link_rx(struct dn_link *link, struct dn_rxseg *segs, unsigned int max)
{
	struct rte_mbuf *m, *s, *next;
	unsigned int n = 0;

	if (link->rx_next == link->rx_n) {
		dn_link_fill(link);
		if (link->rx_n == 0)
			return 0;
	}
	m = link->rx[link->rx_next++];
	if (m->nb_segs > max) {
		rte_pktmbuf_free(m);
		return -EMSGSIZE;
	}
	/* Each segment goes to a pbuf of its own, which frees it alone. */
	for (s = m; s != NULL; s = next) {
		next = s->next;
		s->next = NULL;
		s->nb_segs = 1;
		segs[n].seg = s;
		segs[n].priv = rte_mbuf_to_priv(s);
		segs[n].data = rte_pktmbuf_mtod(s, void *);
		segs[n].len = s->data_len;
		n++;
	}
	return (int)n;
}

void
dn_link_free_seg(void *seg)
{
	rte_pktmbuf_free_seg(seg);
}

int
dn_link_tx(struct dn_link *link, const struct dn_iov *iov, unsigned int n)
{
	struct rte_mbuf *head, *cur;
	unsigned int i;

	if (link->tx_n == DN_BURST) {
		dn_link_tx_flush(link);
		if (link->tx_n == DN_BURST) {
			link->tx_dropped++;
			return -ENOBUFS;
		}
	}
	head = rte_pktmbuf_alloc(link->pool);
	if (head == NULL) {
		link->tx_dropped++;
		return -ENOBUFS;
	}
	cur = head;
	for (i = 0; i < n; i++) {
		const char *src = iov[i].base;
		uint32_t left = iov[i].len;

		while (left > 0) {
			uint16_t room = rte_pktmbuf_tailroom(cur);
			uint32_t chunk;

			if (room == 0) {
				struct rte_mbuf *next =
					rte_pktmbuf_alloc(link->pool);

				if (next == NULL ||
				    rte_pktmbuf_chain(head, next) < 0) {
					rte_pktmbuf_free(next);
					rte_pktmbuf_free(head);
					link->tx_dropped++;
					return -ENOBUFS;
				}
				cur = next;
				room = rte_pktmbuf_tailroom(cur);
			}
			chunk = left < room ? left : room;
			memcpy(rte_pktmbuf_mtod_offset(cur, char *,
				cur->data_len), src, chunk);
			cur->data_len += chunk;
			if (cur != head)
				head->pkt_len += chunk;
			else
				head->pkt_len = cur->data_len;
			src += chunk;
			left -= chunk;
		}
	}
	link->tx[link->tx_n++] = head;
	return 0;
}

void
dn_link_tx_flush(struct dn_link *link)
{
	uint16_t sent;

	if (link->tx_n == 0)
		return;
	sent = rte_eth_tx_burst(link->port_id, 0, link->tx, link->tx_n);
	if (sent < link->tx_n) {
		struct rte_eth_link state;

		/* The ring is full, or the master is gone. Frames for a dead
		 * link would be "pending" forever and keep the poller from
		 * sleeping: drop them (TCP will report the failure). */
		if (rte_eth_link_get_nowait(link->port_id, &state) == 0 &&
		    state.link_status == RTE_ETH_LINK_DOWN) {
			link->tx_dropped += link->tx_n - sent;
			rte_pktmbuf_free_bulk(&link->tx[sent], link->tx_n - sent);
			link->tx_n = sent;
		}
		memmove(link->tx, link->tx + sent,
			(link->tx_n - sent) * sizeof(link->tx[0]));
	}
	link->tx_n -= sent;
	link->tx_frames += sent;
	if (sent > 0)
		dn_doorbell_ring(&link->bell->master_asleep,
			&link->bell->master_wakeups, link->peer_wake_fd);
}

int
dn_link_arm(struct dn_link *link)
{
	dn_link_tx_flush(link);
	dn_doorbell_announce(&link->bell->slave_asleep);
	if (link->rx_next < link->rx_n || link->tx_n > 0) {
		dn_doorbell_cancel(&link->bell->slave_asleep);
		return 1;
	}
	dn_link_fill(link);
	if (link->rx_n > 0) {
		dn_doorbell_cancel(&link->bell->slave_asleep);
		return 1;
	}
	link->sleeps++;
	return 0;
}

void
dn_link_disarm(struct dn_link *link)
{
	dn_doorbell_cancel(&link->bell->slave_asleep);
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
	st->wakeups_sent = atomic_load(&link->bell->master_wakeups);
	st->sleeps = link->sleeps;
	st->pool_free = rte_mempool_avail_count(link->pool);
}
