#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rte_alarm.h>
#include <rte_bus_vdev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_interrupts.h>
#include <rte_mbuf.h>

#include "dn_error.h"
#include "dn_memif.h"

#define DN_MEMIF_DESC 1024
#define DN_POOL_CACHE 256

int
dn_pktpool_create(const char *name, unsigned int n, uint16_t priv_size,
	uint16_t data_room, struct rte_mempool **pool)
{
	*pool = rte_pktmbuf_pool_create(name, n, DN_POOL_CACHE,
		RTE_ALIGN(priv_size, RTE_MBUF_PRIV_ALIGN),
		(uint16_t)(data_room + RTE_PKTMBUF_HEADROOM), SOCKET_ID_ANY);
	if (*pool == NULL)
		return dn_error(-rte_errno, "cannot create mbuf pool %s "
			"(%u buffers): %s", name, n, rte_strerror(rte_errno));
	return 0;
}

int
dn_memif_create(const struct dn_memif_config *cfg, struct rte_mempool *pool,
	uint16_t *port_id)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	char args[512];
	char macarg[32] = "";
	int n, ret;

	if (cfg->mac != NULL)
		snprintf(macarg, sizeof(macarg),
			",mac=%02x:%02x:%02x:%02x:%02x:%02x",
			cfg->mac[0], cfg->mac[1], cfg->mac[2],
			cfg->mac[3], cfg->mac[4], cfg->mac[5]);
	n = snprintf(args, sizeof(args),
		"role=%s,id=0,socket=%s,socket-abstract=no,rsize=%u,bsize=%u%s%s%s%s",
		cfg->server ? "server" : "client", cfg->socket,
		cfg->log2_ring, cfg->buffer_size,
		cfg->zero_copy ? ",zero-copy=yes" : "",
		cfg->secret ? ",secret=" : "", cfg->secret ? cfg->secret : "",
		macarg);
	if (n < 0 || (size_t)n >= sizeof(args))
		return dn_error(-ENAMETOOLONG, "memif arguments too long "
			"(socket path %s)", cfg->socket);

	ret = rte_vdev_init(cfg->name, args);
	if (ret < 0)
		return dn_error(ret, "cannot create memif %s (%s): %s",
			cfg->name, args, rte_strerror(-ret));
	ret = rte_eth_dev_get_port_by_name(cfg->name, port_id);
	if (ret < 0) {
		rte_vdev_uninit(cfg->name);
		return dn_error(ret, "memif %s has no ethdev port", cfg->name);
	}

	ret = rte_eth_dev_info_get(*port_id, &info);
	if (ret < 0)
		goto fail;
	memset(&conf, 0, sizeof(conf));
	/* memif reports a 1518-byte max frame yet carries any frame as a chain
	 * of buffers; the MTU is ours to choose, not the ethdev's to check. */
	{
		uint32_t limit = info.max_rx_pktlen - RTE_ETHER_HDR_LEN -
			RTE_ETHER_CRC_LEN;

		conf.rxmode.mtu = cfg->mtu < limit ? cfg->mtu : limit;
	}
	/* Jumbo frames span several memif buffers and mbufs. */
	conf.rxmode.offloads = info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER;
	conf.txmode.offloads = info.tx_offload_capa &
		RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	ret = rte_eth_dev_configure(*port_id, 1, 1, &conf);
	if (ret < 0)
		goto fail;
	ret = rte_eth_rx_queue_setup(*port_id, 0, DN_MEMIF_DESC,
		rte_eth_dev_socket_id(*port_id), NULL, pool);
	if (ret < 0)
		goto fail;
	ret = rte_eth_tx_queue_setup(*port_id, 0, DN_MEMIF_DESC,
		rte_eth_dev_socket_id(*port_id), NULL);
	if (ret < 0)
		goto fail;
	ret = rte_eth_dev_start(*port_id);
	if (ret < 0)
		goto fail;
	return 0;

fail:
	dn_memif_destroy(*port_id, cfg->name);
	return dn_error(ret, "cannot set up memif %s: %s", cfg->name,
		rte_strerror(-ret));
}

uint16_t
dn_memif_buffer_size(uint16_t mtu)
{
	uint32_t frame = (uint32_t)mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;

	return (uint16_t)RTE_ALIGN_CEIL(frame, 1024);
}

int
dn_memif_wait_link(uint16_t port_id, unsigned int timeout_ms)
{
	struct rte_eth_link link;
	struct timespec pause = { 0, 1000 * 1000 };
	unsigned int waited;

	/* The handshake runs on the EAL interrupt thread; all we can do is
	 * look at the link state until it comes up. */
	for (waited = 0; waited <= timeout_ms; waited++) {
		if (rte_eth_link_get_nowait(port_id, &link) == 0 &&
				link.link_status == RTE_ETH_LINK_UP)
			return 0;
		nanosleep(&pause, NULL);
	}
	return dn_error(-ETIMEDOUT, "memif link on port %u did not come up "
		"within %u ms", port_id, timeout_ms);
}

struct dn_memif_close {
	uint16_t port_id;
	const char *name;
	sem_t done;
};

static void
dn_memif_close_now(uint16_t port_id, const char *name)
{
	rte_eth_dev_stop(port_id);
	rte_eth_dev_close(port_id);
	rte_vdev_uninit(name);
}

static void
dn_memif_close_cb(void *arg)
{
	struct dn_memif_close *req = arg;

	dn_memif_close_now(req->port_id, req->name);
	sem_post(&req->done);
}

void
dn_memif_destroy(uint16_t port_id, const char *name)
{
	struct dn_memif_close req = { .port_id = port_id, .name = name };

	/* memif's control channel lives on the EAL interrupt thread: when the
	 * peer dies, that thread tears the connection down. Closing the port
	 * from another thread at the same moment frees what the handler is
	 * using (seen as a SIGSEGV in the master). An alarm runs on the
	 * interrupt thread, so the close is serialised with the handler. */
	if (rte_thread_is_intr()) {
		dn_memif_close_now(port_id, name);
		return;
	}
	if (sem_init(&req.done, 0, 0) != 0 ||
	    rte_eal_alarm_set(1, dn_memif_close_cb, &req) != 0) {
		dn_memif_close_now(port_id, name);
		return;
	}
	while (sem_wait(&req.done) != 0 && errno == EINTR)
		;
	sem_destroy(&req.done);
}
