/*
 * Slave stack: lwIP raw API behind a socket-like interface (see dn_stack.h).
 *
 * lwIP calls back into this file (accept, connected, recv, sent, err); the
 * callbacks only record what happened in per-connection bits and queue the
 * connection once. dn_stack_poll() turns the queue into a batch of events,
 * so a single call from Python serves any number of connections.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "lwip/etharp.h"
#include "lwip/init.h"
#include "lwip/nd6.h"
#include "lwip/ip4_frag.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/prot/icmp.h"
#include "lwip/prot/icmp6.h"
#include "lwip/ip6_addr.h"
#include "lwip/raw.h"
#include "lwip/tcp.h"
#include "lwip/inet_chksum.h"
#include "lwip/timeouts.h"
#include "lwip/udp.h"
#include "lwip/priv/tcp_priv.h"
#include "netif/ethernet.h"

#include "dn_clock.h"
#include "dn_netif.h"
#include "dn_error.h"
#include "dn_fastchan.h"
#include "dn_hooks.h"
#include "dn_link.h"
#include "dn_stack.h"

#define DN_RX_BUDGET 256
#define DN_UDP_QUEUE 256
#define DN_PING_QUEUE 64
/* Below this many free places in the connection table, a SYN to a
 * listener counts the handshakes already under way (dn_stack_accept_room). */
#define DN_ACCEPT_COUNT_BELOW 64
/* Report "writable" again once this much send buffer is free. */
#define DN_WRITABLE_MARK (TCP_SND_BUF / 4)

enum dn_kind { DN_FREE, DN_TCP_LISTEN, DN_TCP, DN_UDP };

#define DN_BIT(kind) (1u << (kind))

struct dn_dgram {
	struct pbuf *p;
	ip_addr_t addr;
	u16_t port;
};

struct dn_udpq {
	struct dn_dgram q[DN_UDP_QUEUE];
	unsigned int head;
	unsigned int len;
	uint64_t dropped;
};

struct dn_conn {
	uint8_t kind;
	uint8_t queued;
	uint8_t connected;
	uint8_t want_writable;
	uint8_t eof;		/* FIN received */
	uint8_t wr_closed;	/* we shut down writing */
	uint8_t family;		/* 4 or 6, for the connection's life */
	uint16_t events;	/* DN_BIT(DN_EV_*) not yet reported */
	int32_t err;		/* errno once the pcb is gone */
	int32_t listener;	/* for accepted connections */
	union {
		struct tcp_pcb *tcp;
		struct udp_pcb *udp;
	} pcb;
	/* Unread data: single pbufs linked through ->next. */
	struct pbuf *rx_head;
	struct pbuf *rx_tail;
	uint16_t rx_off;
	struct dn_udpq *udpq;
	int32_t next_free;
};

struct dn_ping_reply {
	uint16_t seq;
	uint32_t rtt_us;
};

struct dn_stack {
	struct netif netif;
	struct dn_link *link;
	struct dn_conn *conns;
	uint32_t max_conns;
	int32_t free_head;
	uint32_t open;
	int32_t *evq;		/* ring of connection ids with events */
	uint32_t evq_head;
	uint32_t evq_len;
	u32_t last_timers;
	struct raw_pcb *ping_pcb;
	struct raw_pcb *ping6_pcb;
	/* 0: IPv4 only (every IPv6 call refused). */
	uint8_t prefix6_len;
	/* Where destinations off the prefix go; zero: nowhere. */
	ip6_addr_t gw6;
	uint16_t ping_ident;
	uint64_t ping_sent_ns[65536 / 64];	/* by seq % size */
	struct dn_ping_reply pings[DN_PING_QUEUE];
	unsigned int ping_head;
	unsigned int ping_len;
	/* The ephemeral ports this process picks from: its own range when
	 * the endpoint has several processes (dn_switch_link_ports), so that
	 * the switch knows whose the replies are. */
	uint16_t port_lo;
	uint16_t port_hi;
	uint16_t port_next;
};

/* lwIP keeps its state in globals, so there can be one stack a process. */
static struct dn_stack *dn_the_stack;
static int dn_lwip_ready;

u32_t
sys_now(void)
{
	return (u32_t)(dn_clock_ns() / 1000000);
}

static int
dn_err_to_errno(err_t err)
{
	switch (err) {
	case ERR_OK: return 0;
	case ERR_MEM: return ENOMEM;
	case ERR_BUF: return ENOBUFS;
	case ERR_TIMEOUT: return ETIMEDOUT;
	case ERR_RTE: return EHOSTUNREACH;
	case ERR_INPROGRESS: return EINPROGRESS;
	case ERR_VAL: return EINVAL;
	case ERR_WOULDBLOCK: return EWOULDBLOCK;
	case ERR_USE: return EADDRINUSE;
	case ERR_ALREADY: return EALREADY;
	case ERR_ISCONN: return EISCONN;
	case ERR_CONN: return ENOTCONN;
	case ERR_IF: return ENETDOWN;
	case ERR_ABRT: return ECONNABORTED;
	case ERR_RST: return ECONNRESET;
	case ERR_CLSD: return ENOTCONN;
	case ERR_ARG: return EINVAL;
	default: return EIO;
	}
}

/* ---- connection table and event queue ---- */

static struct dn_conn *
dn_conn_get(struct dn_stack *st, int id)
{
	if (id < 0 || (uint32_t)id >= st->max_conns ||
	    st->conns[id].kind == DN_FREE)
		return NULL;
	return &st->conns[id];
}

static int
dn_conn_alloc(struct dn_stack *st, enum dn_kind kind)
{
	int32_t id = st->free_head;
	struct dn_conn *c;

	if (id < 0)
		return dn_error(-EMFILE, "connection table full (%u)",
			st->max_conns);
	c = &st->conns[id];
	st->free_head = c->next_free;
	uint8_t queued = c->queued;
	memset(c, 0, sizeof(*c));
	c->queued = queued;
	c->kind = kind;
	c->family = 4;
	c->listener = -1;
	st->open++;
	return id;
}

static void
dn_rxq_free(struct dn_conn *c)
{
	struct pbuf *p = c->rx_head;

	while (p != NULL) {
		struct pbuf *next = p->next;

		p->next = NULL;
		pbuf_free(p);
		p = next;
	}
	c->rx_head = c->rx_tail = NULL;
	c->rx_off = 0;
}

static void
dn_udpq_free(struct dn_conn *c)
{
	struct dn_udpq *q = c->udpq;

	if (q == NULL)
		return;
	while (q->len > 0) {
		pbuf_free(q->q[q->head].p);
		q->head = (q->head + 1) % DN_UDP_QUEUE;
		q->len--;
	}
	free(q);
	c->udpq = NULL;
}

static void
dn_conn_release(struct dn_stack *st, int id)
{
	struct dn_conn *c = &st->conns[id];

	dn_rxq_free(c);
	dn_udpq_free(c);
	c->kind = DN_FREE;
	c->events = 0;
	c->next_free = st->free_head;
	st->free_head = id;
	st->open--;
}

static void
dn_notify(struct dn_stack *st, int id, int kind)
{
	struct dn_conn *c = &st->conns[id];

	c->events |= DN_BIT(kind);
	if (!c->queued) {
		c->queued = 1;
		st->evq[(st->evq_head + st->evq_len) % st->max_conns] = id;
		st->evq_len++;
	}
}

static inline int
dn_conn_id(struct dn_stack *st, struct dn_conn *c)
{
	return (int)(c - st->conns);
}

const struct ip6_addr *
dn_nd6_gateway(struct netif *netif, const struct ip6_addr *dest)
{
	struct dn_stack *st = dn_the_stack;

	(void)dest;
	if (st == NULL || netif != &st->netif || ip6_addr_isany(&st->gw6))
		return NULL;
	return &st->gw6;
}

int
dn_stack_accept_room(void)
{
	struct dn_stack *st = dn_the_stack;
	struct tcp_pcb *pcb;
	uint32_t room, pending = 0;

	if (st == NULL)
		return 1;
	room = st->max_conns - st->open;
	if (room >= DN_ACCEPT_COUNT_BELOW)
		return 1;
	/* Each handshake under way takes a place when it completes: near
	 * the limit, a SYN that would find none is refused now rather than
	 * reset after the client believes it is connected. Further from it,
	 * more handshakes at once than places left end that way. */
	for (pcb = tcp_active_pcbs; pcb != NULL && pending < room;
	     pcb = pcb->next)
		if (pcb->state == SYN_RCVD)
			pending++;
	return pending < room;
}

/* ---- lwIP callbacks ---- */

static err_t dn_tcp_recv_cb(void *arg, struct tcp_pcb *pcb, struct pbuf *p,
	err_t err);
static err_t dn_tcp_sent_cb(void *arg, struct tcp_pcb *pcb, u16_t len);
static void dn_tcp_err_cb(void *arg, err_t err);
static void dn_tcp_set_rto(struct tcp_pcb *pcb);

static void
dn_tcp_attach(struct dn_conn *c, struct tcp_pcb *pcb)
{
	c->pcb.tcp = pcb;
	tcp_arg(pcb, c);
	tcp_recv(pcb, dn_tcp_recv_cb);
	tcp_sent(pcb, dn_tcp_sent_cb);
	tcp_err(pcb, dn_tcp_err_cb);
	/* asyncio sets TCP_NODELAY on every TCP transport; do the same. */
	tcp_nagle_disable(pcb);
	dn_tcp_set_rto(pcb);
}

static void
dn_tcp_detach(struct tcp_pcb *pcb)
{
	tcp_arg(pcb, NULL);
	if (pcb->state == LISTEN) {
		/* A listening pcb has only the accept callback (lwIP asserts
		 * on the others). */
		tcp_accept(pcb, NULL);
		return;
	}
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
}

/* Both directions are closed (FIN received, ours sent): lwIP may now take
 * the pcb to TIME-WAIT and free it 2*MSL later without a callback, so it
 * is handed back to lwIP here and the connection stops pointing at it.
 * What is left to read stays on the connection's own queue. */
static void
dn_tcp_release_done(struct dn_conn *c)
{
	struct tcp_pcb *pcb = c->pcb.tcp;

	if (pcb == NULL || !c->eof || !c->wr_closed)
		return;
	dn_tcp_detach(pcb);
	c->pcb.tcp = NULL;
	if (tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
}

static err_t
dn_tcp_accept_cb(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	struct dn_stack *st = dn_the_stack;
	struct dn_conn *l = arg;
	int id;

	if (err != ERR_OK || newpcb == NULL)
		return ERR_VAL;
	id = dn_conn_alloc(st, DN_TCP);
	if (id < 0) {
		/* No room: refuse the way a full backlog would. */
		tcp_abort(newpcb);
		return ERR_ABRT;
	}
	st->conns[id].connected = 1;
	st->conns[id].family = l->family;
	st->conns[id].listener = dn_conn_id(st, l);
	dn_tcp_attach(&st->conns[id], newpcb);
	dn_notify(st, id, DN_EV_ACCEPTED);
	return ERR_OK;
}

static err_t
dn_tcp_connected_cb(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct dn_stack *st = dn_the_stack;
	struct dn_conn *c = arg;

	(void)pcb;
	(void)err; /* always ERR_OK in lwIP 2.1 */
	c->connected = 1;
	dn_notify(st, dn_conn_id(st, c), DN_EV_CONNECTED);
	return ERR_OK;
}

static err_t
dn_tcp_recv_cb(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct dn_stack *st = dn_the_stack;
	struct dn_conn *c = arg;
	struct pbuf *q;

	(void)pcb;
	(void)err;
	if (p == NULL) {
		c->eof = 1;
		dn_notify(st, dn_conn_id(st, c), DN_EV_PEER_CLOSED);
		dn_tcp_release_done(c);
		return ERR_OK;
	}
	/* Split the chain into single pbufs on our own list: a chain's
	 * 16-bit tot_len cannot describe a large receive queue. */
	q = p;
	while (q != NULL) {
		struct pbuf *next = q->next;

		/* The chain's reference to next passes to our list. */
		q->next = NULL;
		q->tot_len = q->len;
		if (q->len == 0) {
			pbuf_free(q);
		} else {
			if (c->rx_tail != NULL)
				c->rx_tail->next = q;
			else
				c->rx_head = q;
			c->rx_tail = q;
		}
		q = next;
	}
	dn_notify(st, dn_conn_id(st, c), DN_EV_READABLE);
	return ERR_OK;
}

static err_t
dn_tcp_sent_cb(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct dn_stack *st = dn_the_stack;
	struct dn_conn *c = arg;

	(void)len;
	if (c->want_writable && pcb->snd_buf >= DN_WRITABLE_MARK) {
		c->want_writable = 0;
		dn_notify(st, dn_conn_id(st, c), DN_EV_WRITABLE);
	}
	return ERR_OK;
}

static void
dn_tcp_err_cb(void *arg, err_t err)
{
	struct dn_stack *st = dn_the_stack;
	struct dn_conn *c = arg;

	/* lwIP has already freed the pcb. */
	c->pcb.tcp = NULL;
	if (err == ERR_RST)
		c->err = c->connected ? ECONNRESET : ECONNREFUSED;
	else if (err == ERR_ABRT)
		c->err = ETIMEDOUT;	/* retransmissions exhausted */
	else
		c->err = dn_err_to_errno(err);
	/* A reset discards what was received, as in the kernel. */
	dn_rxq_free(c);
	dn_notify(st, dn_conn_id(st, c), DN_EV_ERROR);
}

static void
dn_udp_recv_cb(void *arg, struct udp_pcb *pcb, struct pbuf *p,
	const ip_addr_t *addr, u16_t port)
{
	struct dn_stack *st = dn_the_stack;
	struct dn_conn *c = arg;
	struct dn_udpq *q = c->udpq;
	struct dn_dgram *d;

	(void)pcb;
	if (q->len == DN_UDP_QUEUE) {
		/* Like a full socket buffer: the datagram is lost. */
		q->dropped++;
		pbuf_free(p);
		return;
	}
	d = &q->q[(q->head + q->len) % DN_UDP_QUEUE];
	d->p = p;
	ip_addr_copy(d->addr, *addr);
	d->port = port;
	q->len++;
	dn_notify(st, dn_conn_id(st, c), DN_EV_READABLE);
}

static void
dn_ping_record(struct dn_stack *st, uint16_t seq)
{
	uint64_t sent;
	struct dn_ping_reply *r;

	sent = st->ping_sent_ns[seq %
		(sizeof(st->ping_sent_ns) / sizeof(st->ping_sent_ns[0]))];
	if (st->ping_len < DN_PING_QUEUE) {
		r = &st->pings[(st->ping_head + st->ping_len) % DN_PING_QUEUE];
		r->seq = seq;
		r->rtt_us = (uint32_t)((dn_clock_ns() - sent) / 1000);
		st->ping_len++;
	}
}

static u8_t
dn_ping_recv_cb(void *arg, struct raw_pcb *pcb, struct pbuf *p,
	const ip_addr_t *addr)
{
	struct dn_stack *st = arg;
	struct icmp_echo_hdr hdr;
	u16_t hlen = IPH_HL_BYTES((struct ip_hdr *)p->payload);

	(void)pcb;
	(void)addr;
	if (pbuf_copy_partial(p, &hdr, sizeof(hdr), hlen) != sizeof(hdr))
		return 0;
	if (hdr.type != ICMP_ER || hdr.id != lwip_htons(st->ping_ident))
		return 0;	/* not ours: lwIP's ICMP handles it */
	dn_ping_record(st, lwip_ntohs(hdr.seqno));
	pbuf_free(p);
	return 1;
}

/* raw_input() hands IPv6 packets with the IPv6 header and the extension
 * headers ip6_input() has walked in front (their length is
 * ip_current_header_tot_len()), and before icmp6_input() answers
 * neighbour solicitations and echo requests: all but our replies go on.
 * (Router messages never get this far: dn_netif.c drops them.) */
static u8_t
dn_ping6_recv_cb(void *arg, struct raw_pcb *pcb, struct pbuf *p,
	const ip_addr_t *addr)
{
	struct dn_stack *st = arg;
	struct icmp6_echo_hdr hdr;
	u16_t hlen = (u16_t)ip_current_header_tot_len();

	(void)pcb;
	(void)addr;
	if (pbuf_copy_partial(p, &hdr, sizeof(hdr), hlen) != sizeof(hdr))
		return 0;
	if (hdr.type != ICMP6_TYPE_EREP || hdr.id != lwip_htons(st->ping_ident))
		return 0;
	dn_ping_record(st, lwip_ntohs(hdr.seqno));
	pbuf_free(p);
	return 1;
}

/* ---- life cycle ---- */

/* DOCKNET_TCP_RETRIES, DOCKNET_TCP_SYN_RETRIES: the kernel's tcp_retries2
 * and tcp_syn_retries for this process (lwipopts.h). Unset: lwIP's. */
static int
dn_env_retries(const char *name, unsigned char *out)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	/* 0 would end every connection at lwIP's next timer. */
	if (errno != 0 || *end != '\0' || v < 1 || v > 12)
		return dn_error(-EINVAL, "%s=%s: want a number of "
			"retransmissions from 1 to 12", name, s);
	*out = (unsigned char)v;
	return 0;
}

/* DOCKNET_TCP_RTO_MS: the retransmission timeout of a connection before
 * any round trip was measured, which lwIP fixes at 3 s in tcp_alloc()
 * (the kernel's is 1 s). lwIP derives every later timeout from sv, so sv
 * starts there too: the first timeout and its backoff follow it until
 * measured round trips take over. 0: lwIP's. */
static s16_t dn_tcp_rto_ticks;

static int
dn_env_rto(const char *name, s16_t *out)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	/* From the kernel's floor for any timeout (TCP_RTO_MIN), counted in
	 * lwIP's slow ticks, rounded up; above a minute a lost SYN would
	 * wait longer than any caller does. */
	if (errno != 0 || *end != '\0' || v < 200 || v > 60000)
		return dn_error(-EINVAL, "%s=%s: want milliseconds from 200 "
			"to 60000", name, s);
	*out = (s16_t)((v + TCP_SLOW_INTERVAL - 1) / TCP_SLOW_INTERVAL);
	return 0;
}

static void
dn_tcp_set_rto(struct tcp_pcb *pcb)
{
	if (dn_tcp_rto_ticks != 0)
		pcb->rto = pcb->sv = dn_tcp_rto_ticks;
}

/* What the master gives must be an endpoint's address, checked before
 * the stack changes anything. */
static int
dn_stack_check_ip6(const struct dn_stack_config *cfg)
{
	ip6_addr_t a;

	if (cfg->prefix6_len == 0)
		return 0;
	if (cfg->prefix6_len < 64 || cfg->prefix6_len > 96)
		return dn_error(-EINVAL, "bad IPv6 prefix length %u "
			"(64..96, or 0 for none)", cfg->prefix6_len);
	memcpy(&a.addr, cfg->ip6, sizeof(a.addr));
	ip6_addr_clear_zone(&a);
	if (ip6_addr_isany(&a) || ip6_addr_ismulticast(&a) ||
	    ip6_addr_isloopback(&a) || ip6_addr_islinklocal(&a))
		return dn_error(-EINVAL, "the master's IPv6 address is not "
			"an endpoint's");
	return 0;
}

/* The master assigns the address and the switch answers neighbour
 * solicitations for the prefix, so it is usable at once (no DAD). The
 * address sits in slot 0, which lwIP's neighbour solicitations take as
 * their source. */
static void
dn_stack_set_ip6(struct dn_stack *st, const struct dn_stack_config *cfg)
{
	uint32_t host = cfg->gateway & ~cfg->netmask;
	uint8_t gw[16];
	ip6_addr_t a;
	int i;

	netif_ip6_addr_set_state(&st->netif, 0, IP6_ADDR_INVALID);
	st->prefix6_len = cfg->prefix6_len;
	ip6_addr_set_zero(&st->gw6);
	if (cfg->prefix6_len == 0)
		return;
	/* The gateway's IPv6 address by the master's rule (IPV6.md): the
	 * prefix, then the IPv4 gateway's host part in the low 32 bits. */
	memcpy(gw, cfg->ip6, sizeof(gw));
	for (i = 0; i < 16; i++) {
		int keep = cfg->prefix6_len - i * 8;

		if (keep <= 0)
			gw[i] = 0;
		else if (keep < 8)
			gw[i] &= (uint8_t)(0xff << (8 - keep));
	}
	for (i = 0; i < 4; i++)
		gw[12 + i] |= (uint8_t)(host >> (24 - 8 * i));
	if (host != 0) {
		memcpy(&st->gw6.addr, gw, sizeof(st->gw6.addr));
		ip6_addr_clear_zone(&st->gw6);
	}
	memcpy(&a.addr, cfg->ip6, sizeof(a.addr));
	ip6_addr_clear_zone(&a);
	netif_ip6_addr_set(&st->netif, 0, &a);
	netif_ip6_addr_set_state(&st->netif, 0, IP6_ADDR_PREFERRED);
}

int
dn_stack_open(const struct dn_stack_config *cfg, struct dn_stack **out)
{
	struct dn_link_config lc = {
		.shm_fd = cfg->link_fd,
		.mtu = cfg->mtu,
		.n_mbufs = cfg->n_mbufs,
		.priv_size = DN_NETIF_PRIV_SIZE,
		.wake_fd = cfg->wake_fd,
		.peer_wake_fd = cfg->master_wake_fd,
	};
	struct dn_stack *st;
	ip4_addr_t ip, mask, gw;
	uint32_t i;
	int ret;

	if (dn_the_stack != NULL)
		return dn_error(-EBUSY, "this process already has a DockNet "
			"stack (lwIP allows one per process)");
	if (cfg->max_conns == 0 || cfg->mtu < 576)
		return dn_error(-EINVAL, "bad stack configuration (max_conns "
			"%u, mtu %u)", cfg->max_conns, cfg->mtu);
	ret = dn_stack_check_ip6(cfg);
	if (ret < 0)
		return ret;
	ret = dn_env_retries("DOCKNET_TCP_RETRIES", &dn_tcp_maxrtx);
	if (ret == 0)
		ret = dn_env_retries("DOCKNET_TCP_SYN_RETRIES",
			&dn_tcp_synmaxrtx);
	if (ret == 0)
		ret = dn_env_rto("DOCKNET_TCP_RTO_MS", &dn_tcp_rto_ticks);
	if (ret < 0)
		return ret;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return dn_error(-ENOMEM, "out of memory for the stack");
	st->max_conns = cfg->max_conns;
	st->conns = calloc(st->max_conns, sizeof(st->conns[0]));
	st->evq = calloc(st->max_conns, sizeof(st->evq[0]));
	if (st->conns == NULL || st->evq == NULL) {
		ret = dn_error(-ENOMEM, "out of memory for %u connections",
			st->max_conns);
		goto fail;
	}
	for (i = 0; i < st->max_conns; i++)
		st->conns[i].next_free = (i + 1 < st->max_conns) ?
			(int32_t)(i + 1) : -1;
	st->free_head = 0;

	ret = dn_link_open(&lc, &st->link);
	if (ret < 0)
		goto fail;

	if (!dn_lwip_ready) {
		uint32_t seed;

		/* lwIP draws ISNs and ephemeral ports from LWIP_RAND(): two
		 * processes must not share a sequence. */
		if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			seed = (uint32_t)dn_clock_ns() ^ (uint32_t)getpid();
		srandom(seed);
		lwip_init();
		dn_lwip_ready = 1;
	}
	dn_stack_set_port_range(st, DN_STACK_PORT_LO, 65535);
	ip4_addr_set_u32(&ip, lwip_htonl(cfg->ip));
	ip4_addr_set_u32(&mask, lwip_htonl(cfg->netmask));
	ip4_addr_set_u32(&gw, lwip_htonl(cfg->gateway));
	memcpy(st->netif.hwaddr, cfg->mac, 6);
	st->netif.mtu = cfg->mtu;
	if (netif_add(&st->netif, &ip, &mask, &gw, st->link, dn_netif_init,
	    ethernet_input) == NULL) {
		dn_link_close(st->link);
		ret = dn_error(-EIO, "lwIP refused the network interface");
		goto fail;
	}
	st->netif.mtu = cfg->mtu;
	dn_stack_set_ip6(st, cfg);
	if (cfg->checksums)
		NETIF_SET_CHECKSUM_CTRL(&st->netif, NETIF_CHECKSUM_ENABLE_ALL);
	netif_set_default(&st->netif);
	netif_set_up(&st->netif);
	netif_set_link_up(&st->netif);

	st->ping_pcb = raw_new(IP_PROTO_ICMP);
	if (st->ping_pcb != NULL)
		raw_recv(st->ping_pcb, dn_ping_recv_cb, st);
	st->ping6_pcb = raw_new_ip_type(IPADDR_TYPE_V6, IP6_NEXTH_ICMP6);
	if (st->ping6_pcb != NULL) {
		/* ICMPv6's checksum covers a pseudo-header lwIP fills in
		 * when it sends (RFC 3542's IPV6_CHECKSUM). */
		st->ping6_pcb->chksum_reqd = 1;
		st->ping6_pcb->chksum_offset = 2;
		raw_recv(st->ping6_pcb, dn_ping6_recv_cb, st);
	}
	st->ping_ident = (uint16_t)(random() & 0xffff);
	st->last_timers = sys_now();
	dn_the_stack = st;
	*out = st;
	return 0;

fail:
	free(st->conns);
	free(st->evq);
	free(st);
	return ret;
}

int
dn_stack_relink(struct dn_stack *st, const struct dn_stack_config *cfg)
{
	ip4_addr_t ip, mask, gw;
	int ret;

	if (cfg->mtu != st->netif.mtu)
		return dn_error(-EINVAL, "the master's MTU changed (%u, was %u): "
			"the stack cannot move to it", cfg->mtu, st->netif.mtu);
	ret = dn_stack_check_ip6(cfg);
	if (ret < 0)
		return ret;
	ret = dn_link_remap(st->link, cfg->link_fd, cfg->mtu, cfg->wake_fd,
		cfg->master_wake_fd);
	if (ret < 0)
		return ret;
	/* Neighbours' hardware addresses come from the new switch. */
	etharp_cleanup_netif(&st->netif);
	nd6_cleanup_netif(&st->netif);
	ip4_addr_set_u32(&ip, lwip_htonl(cfg->ip));
	ip4_addr_set_u32(&mask, lwip_htonl(cfg->netmask));
	ip4_addr_set_u32(&gw, lwip_htonl(cfg->gateway));
	/* A new address moves listeners to it; connections were already
	 * ended when the old master went. */
	netif_set_addr(&st->netif, &ip, &mask, &gw);
	dn_stack_set_ip6(st, cfg);
	memcpy(st->netif.hwaddr, cfg->mac, 6);
	return 0;
}

void
dn_stack_close(struct dn_stack *st)
{
	uint32_t i;

	for (i = 0; i < st->max_conns; i++) {
		struct dn_conn *c = &st->conns[i];

		if (c->kind == DN_FREE)
			continue;
		dn_abort(st, (int)i);
		dn_close(st, (int)i);
	}
	if (st->ping_pcb != NULL)
		raw_remove(st->ping_pcb);
	if (st->ping6_pcb != NULL)
		raw_remove(st->ping6_pcb);
	/* lwIP's TIME-WAIT pcbs still point at the netif's address. */
	while (tcp_tw_pcbs != NULL)
		tcp_abort(tcp_tw_pcbs);
	netif_set_down(&st->netif);
	netif_remove(&st->netif);
	dn_link_close(st->link);
	free(st->conns);
	free(st->evq);
	free(st);
	dn_the_stack = NULL;
}

/* ---- polling ---- */

static int
dn_emit(struct dn_stack *st, struct dn_event *ev, int max)
{
	int n = 0;

	while (st->ping_len > 0 && n < max) {
		struct dn_ping_reply *r = &st->pings[st->ping_head];

		ev[n].kind = DN_EV_PING_REPLY;
		ev[n].id = r->seq;
		ev[n].arg = (int32_t)r->rtt_us;
		n++;
		st->ping_head = (st->ping_head + 1) % DN_PING_QUEUE;
		st->ping_len--;
	}
	while (st->evq_len > 0 && n < max) {
		int id = st->evq[st->evq_head];
		struct dn_conn *c = &st->conns[id];

		while (c->events != 0 && n < max) {
			int kind = __builtin_ctz(c->events);

			c->events &= (uint16_t)~DN_BIT(kind);
			ev[n].kind = kind;
			ev[n].id = id;
			ev[n].arg = 0;
			if (kind == DN_EV_ACCEPTED)
				ev[n].arg = c->listener;
			else if (kind == DN_EV_ERROR)
				ev[n].arg = c->err;
			n++;
		}
		if (c->events != 0)
			break;	/* out of room: keep it at the head */
		c->queued = 0;
		st->evq_head = (st->evq_head + 1) % st->max_conns;
		st->evq_len--;
	}
	return n;
}

int
dn_stack_poll(struct dn_stack *st, struct dn_event *ev, int max)
{
	u32_t now;

	dn_netif_poll(&st->netif, DN_RX_BUDGET);
	netif_poll(&st->netif);
	/* lwIP's timers need millisecond resolution at most; checking them on
	 * every poll would cost more than the work they do. */
	now = sys_now();
	if (now != st->last_timers) {
		st->last_timers = now;
		sys_check_timeouts();
	}
	dn_link_tx_flush(st->link);
	return dn_emit(st, ev, max);
}

static int
dn_stack_has_work(struct dn_stack *st, struct dn_fc *const *fcs, int n)
{
	int i;

	if (st->evq_len > 0 || st->ping_len > 0 || dn_link_rx_pending(st->link) ||
	    st->netif.loop_first != NULL)
		return 1;
	for (i = 0; i < n; i++)
		if (dn_fc_ready(fcs[i]))
			return 1;
	return 0;
}

int
dn_stack_spin(struct dn_stack *st, struct dn_fc *const *fcs, int n,
	uint32_t max_ns, uint32_t yield_ns)
{
	uint64_t start = dn_clock_ns(), now, last_yield = start;
	unsigned int looks = 0;

	for (;;) {
		if (dn_stack_has_work(st, fcs, n))
			return 1;
		/* The clock every 8 looks: a vDSO read costs more than a look. */
		if ((++looks & 7) != 0)
			continue;
		now = dn_clock_ns();
		if (now - start >= max_ns)
			return 0;
		if (yield_ns != 0 && now - last_yield >= yield_ns) {
			sched_yield();
			last_yield = now;
		}
	}
}

int
dn_stack_arm(struct dn_stack *st)
{
	/* Packets to the stack's own addresses wait on the netif's loopback
	 * queue for the next poll, which no doorbell announces. */
	if (st->evq_len > 0 || st->ping_len > 0 || st->netif.loop_first != NULL)
		return 1;
	return dn_link_arm(st->link);
}

void
dn_stack_disarm(struct dn_stack *st)
{
	dn_link_disarm(st->link);
}

int
dn_stack_sleep(struct dn_stack *st, struct dn_fc *const *fcs, int n)
{
	if (dn_stack_arm(st) != 0)
		return -2;
	if (!dn_fc_arm_set(fcs, n)) {
		dn_stack_disarm(st);
		return -2;
	}
	return dn_stack_timeout_ms(st);
}

void
dn_stack_wake(struct dn_stack *st, struct dn_fc *const *fcs, int n)
{
	/* The channels share the link's eventfd, drained once here. */
	dn_fc_disarm_set(fcs, n);
	dn_stack_disarm(st);
}

int
dn_stack_fileno(const struct dn_stack *st)
{
	return dn_link_wake_fd(st->link);
}

int
dn_stack_timeout_ms(struct dn_stack *st)
{
	u32_t t;

	(void)st;
	t = sys_timeouts_sleeptime();
	if (t == SYS_TIMEOUTS_SLEEPTIME_INFINITE)
		return -1;
	return (int)t;
}

void
dn_stack_stats(const struct dn_stack *st, struct dn_stack_stats *out)
{
	dn_link_stats(st->link, &out->link);
	out->conns_open = st->open;
}

int
dn_stack_peer_add(struct dn_stack *st, int shm_fd, int peer_wake_fd,
	int role, uint64_t id, const uint8_t *peer_mac, uint32_t peer_ip,
	const uint8_t *peer_ip6)
{
	struct dn_peer_config pc = {
		.shm_fd = shm_fd,
		.peer_wake_fd = peer_wake_fd,
		.role = role,
		.id = id,
		.ip = peer_ip,
		.own_ip = lwip_ntohl(ip4_addr_get_u32(netif_ip4_addr(&st->netif))),
	};

	memcpy(pc.mac, peer_mac, 6);
	memcpy(pc.own_mac, st->netif.hwaddr, 6);
	if (pc.ip == pc.own_ip || memcmp(pc.mac, pc.own_mac, 6) == 0)
		return dn_error(-EINVAL, "a peer link to this endpoint itself");
	if (peer_ip6 != NULL && st->prefix6_len != 0) {
		pc.ip6_ok = 1;
		memcpy(pc.ip6, peer_ip6, 16);
		memcpy(pc.own_ip6, netif_ip6_addr(&st->netif, 0)->addr, 16);
		if (memcmp(pc.ip6, pc.own_ip6, 16) == 0)
			return dn_error(-EINVAL, "a peer link to this "
				"endpoint's own IPv6 address");
	}
	return dn_link_peer_add(st->link, &pc);
}

int
dn_stack_peer_remove(struct dn_stack *st, uint64_t id)
{
	return dn_link_peer_remove(st->link, id);
}

void
dn_stack_set_peer_egress(struct dn_stack *st, struct dn_tokens *t)
{
	dn_link_set_peer_egress(st->link, t);
}

/* ---- TCP ---- */

static void
dn_ip_set(ip_addr_t *a, uint32_t ip)
{
	ip_addr_set_ip4_u32(a, lwip_htonl(ip));
}

static void
dn_ip6_set(ip_addr_t *a, const uint8_t *ip6)
{
	ip_addr_set_zero_ip6(a);
	memcpy(ip_2_ip6(a)->addr, ip6, 16);
	ip6_addr_clear_zone(ip_2_ip6(a));
}

static u8_t
dn_ip_type(int family)
{
	return family == 6 ? IPADDR_TYPE_V6 : IPADDR_TYPE_V4;
}

/* Every IPv6 call starts here. */
static int
dn_v6_ok(struct dn_stack *st)
{
	if (st->prefix6_len == 0)
		return dn_error(-EAFNOSUPPORT, "this endpoint has no IPv6 "
			"address (its master gave it IPv4 only)");
	return 0;
}

/* An address for a message, in its family's notation (a static buffer:
 * one use per message). */
static const char *
dn_ip_str(const ip_addr_t *a)
{
	static char buf[IP6ADDR_STRLEN_MAX];

	return ipaddr_ntoa_r(a, buf, sizeof(buf)) != NULL ? buf : "?";
}

/* The connection's family must be want's. */
static int
dn_family_ok(const struct dn_conn *c, int id, int want)
{
	if (c->family != want)
		return dn_error(-EAFNOSUPPORT, "connection %d is IPv%d, not "
			"IPv%d", id, c->family, want);
	return 0;
}

static int
dn_listen_at(struct dn_stack *st, const ip_addr_t *addr, int family,
	uint16_t port, int backlog)
{
	struct tcp_pcb *pcb, *lpcb;
	err_t err;
	u8_t bl = backlog <= 0 ? 1 : (backlog > 255 ? 255 : (u8_t)backlog);
	int id;

	id = dn_conn_alloc(st, DN_TCP_LISTEN);
	if (id < 0)
		return id;
	st->conns[id].family = (uint8_t)family;
	/* One family a pcb: lwIP lets an IPv4 and an IPv6 listener hold the
	 * same port (its bind compares versions), as IPV6_V6ONLY does. */
	pcb = tcp_new_ip_type(dn_ip_type(family));
	if (pcb == NULL) {
		dn_conn_release(st, id);
		return dn_error(-ENOMEM, "no TCP control block left");
	}
	/* Servers set SO_REUSEADDR (asyncio does): a restart must not wait
	 * for TIME-WAIT to pass. */
	ip_set_option(pcb, SOF_REUSEADDR);
	err = tcp_bind(pcb, addr, port);
	if (err != ERR_OK) {
		tcp_close(pcb);
		dn_conn_release(st, id);
		return dn_error(-dn_err_to_errno(err), "cannot bind TCP port "
			"%u: %s", port, err == ERR_USE ?
			"address already in use" : "bind failed");
	}
	lpcb = tcp_listen_with_backlog_and_err(pcb, bl, &err);
	if (lpcb == NULL) {
		tcp_close(pcb);
		dn_conn_release(st, id);
		return dn_error(-dn_err_to_errno(err), "cannot listen on TCP "
			"port %u", port);
	}
	st->conns[id].pcb.tcp = lpcb;
	tcp_arg(lpcb, &st->conns[id]);
	tcp_accept(lpcb, dn_tcp_accept_cb);
	return id;
}

int
dn_listen(struct dn_stack *st, uint32_t ip, uint16_t port, int backlog)
{
	ip_addr_t addr;

	dn_ip_set(&addr, ip);
	return dn_listen_at(st, &addr, 4, port, backlog);
}

int
dn_listen6(struct dn_stack *st, const uint8_t *ip6, uint16_t port,
	int backlog)
{
	ip_addr_t addr;
	int ret = dn_v6_ok(st);

	if (ret < 0)
		return ret;
	dn_ip6_set(&addr, ip6);
	return dn_listen_at(st, &addr, 6, port, backlog);
}

int
dn_stack_set_port_range(struct dn_stack *st, uint16_t lo, uint16_t hi)
{
	if (lo == 0 || hi < lo)
		return dn_error(-EINVAL, "bad ephemeral port range %u..%u", lo,
			hi);
	st->port_lo = lo;
	st->port_hi = hi;
	/* Where in the range to start is as random as lwIP's own start. */
	st->port_next = (uint16_t)(lo + (uint32_t)random() % (hi - lo + 1u));
	return 0;
}

static err_t
dn_tcp_try_port(void *pcb, const ip_addr_t *addr, uint16_t port)
{
	return tcp_bind(pcb, addr, port);
}

static err_t
dn_udp_try_port(void *pcb, const ip_addr_t *addr, uint16_t port)
{
	return udp_bind(pcb, addr, port);
}

/* Binds pcb to a free port of the stack's range. lwIP's own choice cannot
 * follow a range given at run time (its cursor is a static, put in range
 * once by tcp_init; a process may get another range when it re-attaches),
 * so the stack picks the port itself. */
static int
dn_bind_ephemeral(struct dn_stack *st,
	err_t (*bind)(void *, const ip_addr_t *, uint16_t), void *pcb,
	const ip_addr_t *addr)
{
	uint32_t n = (uint32_t)st->port_hi - st->port_lo + 1u, i;

	if (st->port_next < st->port_lo || st->port_next > st->port_hi)
		st->port_next = st->port_lo;
	for (i = 0; i < n; i++) {
		uint16_t port = st->port_next;
		err_t err;

		st->port_next = port == st->port_hi ? st->port_lo :
			(uint16_t)(port + 1);
		err = bind(pcb, addr, port);
		if (err == ERR_OK)
			return 0;
		if (err != ERR_USE)
			return dn_error(-dn_err_to_errno(err), "cannot bind "
				"local port %u", port);
	}
	return dn_error(-EADDRNOTAVAIL, "all %u local ports of this process "
		"(%u..%u) are in use", n, st->port_lo, st->port_hi);
}

static int
dn_connect_to(struct dn_stack *st, const ip_addr_t *addr, int family,
	uint16_t port)
{
	struct tcp_pcb *pcb;
	uint32_t tries;
	err_t err;
	int id, ret;

	/* No master, no switch: fail now rather than after SYN retries. */
	if (dn_link_is_down(st->link))
		return dn_error(-EHOSTUNREACH, "the DockNet master is gone "
			"(waiting for it to come back)");
	if (family == 6 && (ip_addr_isany(addr) || ip_addr_ismulticast(addr)))
		return dn_error(-EADDRNOTAVAIL, "cannot connect to %s",
			dn_ip_str(addr));
	id = dn_conn_alloc(st, DN_TCP);
	if (id < 0)
		return id;
	st->conns[id].family = (uint8_t)family;
	/* A local port is shared by connections to different peers (as the
	 * kernel shares them), TIME-WAIT included: SOF_REUSEADDR on every
	 * connecting pcb, and lwIP's tcp_connect refuses a 4-tuple in use,
	 * which moves on to the next port. */
	for (tries = (uint32_t)st->port_hi - st->port_lo + 1u; ; tries--) {
		pcb = tcp_new_ip_type(dn_ip_type(family));
		if (pcb == NULL) {
			dn_conn_release(st, id);
			return dn_error(-ENOMEM, "no TCP control block left");
		}
		ip_set_option(pcb, SOF_REUSEADDR);
		dn_tcp_attach(&st->conns[id], pcb);
		ret = dn_bind_ephemeral(st, dn_tcp_try_port, pcb,
			family == 6 ? IP6_ADDR_ANY : IP4_ADDR_ANY);
		if (ret < 0) {
			dn_tcp_detach(pcb);
			tcp_abort(pcb);
			dn_conn_release(st, id);
			return ret;
		}
		err = tcp_connect(pcb, addr, port, dn_tcp_connected_cb);
		if (err != ERR_USE || tries == 1)
			break;
		dn_tcp_detach(pcb);
		tcp_abort(pcb);
	}
	if (err != ERR_OK) {
		dn_tcp_detach(pcb);
		tcp_abort(pcb);
		dn_conn_release(st, id);
		return dn_error(-dn_err_to_errno(err), "cannot connect to "
			"%s port %u", dn_ip_str(addr), port);
	}
	dn_link_tx_flush(st->link);
	return id;
}

int
dn_connect(struct dn_stack *st, uint32_t ip, uint16_t port)
{
	ip_addr_t addr;

	dn_ip_set(&addr, ip);
	return dn_connect_to(st, &addr, 4, port);
}

int
dn_connect6(struct dn_stack *st, const uint8_t *ip6, uint16_t port)
{
	ip_addr_t addr;
	int ret = dn_v6_ok(st);

	if (ret < 0)
		return ret;
	dn_ip6_set(&addr, ip6);
	return dn_connect_to(st, &addr, 6, port);
}

static struct dn_conn *
dn_tcp_conn(struct dn_stack *st, int id, int *ret)
{
	struct dn_conn *c = dn_conn_get(st, id);

	if (c == NULL || c->kind != DN_TCP) {
		*ret = dn_error(-EBADF, "no TCP connection with id %d", id);
		return NULL;
	}
	if (c->pcb.tcp == NULL) {
		*ret = dn_error(-(c->err ? c->err : ENOTCONN),
			"connection %d is %s", id,
			c->err ? strerror(c->err) : "closed");
		return NULL;
	}
	return c;
}

int
dn_send(struct dn_stack *st, int id, const void *buf, uint32_t len)
{
	struct dn_conn *c;
	struct tcp_pcb *pcb;
	const char *p = buf;
	uint32_t done = 0;
	int ret;

	c = dn_tcp_conn(st, id, &ret);
	if (c == NULL)
		return ret;
	if (c->wr_closed)
		return dn_error(-EPIPE, "connection %d was shut down for "
			"writing", id);
	if (!c->connected)
		return dn_error(-ENOTCONN, "connection %d is not yet "
			"connected", id);
	pcb = c->pcb.tcp;
	while (done < len) {
		/* tcp_write takes 16-bit lengths, and tcp_sndbuf() clamps at
		 * 64 KiB with window scaling: read snd_buf itself. */
		uint32_t room = pcb->snd_buf;
		uint32_t chunk = len - done;
		err_t err;

		if (chunk > room)
			chunk = room;
		if (chunk > 0xffff)
			chunk = 0xffff;
		if (chunk == 0 || pcb->snd_queuelen >= TCP_SND_QUEUELEN - 1)
			break;
		err = tcp_write(pcb, p + done, (u16_t)chunk,
			TCP_WRITE_FLAG_COPY |
			(done + chunk < len ? TCP_WRITE_FLAG_MORE : 0));
		if (err == ERR_MEM)
			break;
		if (err != ERR_OK)
			return dn_error(-dn_err_to_errno(err), "send on "
				"connection %d failed", id);
		done += chunk;
	}
	if (done < len)
		c->want_writable = 1;
	if (done > 0) {
		tcp_output(pcb);
		dn_link_tx_flush(st->link);
	}
	if (done == 0)
		return dn_error(-EAGAIN, "send buffer of connection %d is "
			"full", id);
	return (int)done;
}

int
dn_recv(struct dn_stack *st, int id, void *buf, uint32_t len)
{
	struct dn_conn *c = dn_conn_get(st, id);
	char *out = buf;
	uint32_t done = 0;

	if (c == NULL || c->kind != DN_TCP)
		return dn_error(-EBADF, "no TCP connection with id %d", id);
	while (done < len && c->rx_head != NULL) {
		struct pbuf *p = c->rx_head;
		uint32_t avail = p->len - c->rx_off;
		uint32_t chunk = len - done < avail ? len - done : avail;

		memcpy(out + done, (char *)p->payload + c->rx_off, chunk);
		done += chunk;
		c->rx_off += chunk;
		if (c->rx_off == p->len) {
			c->rx_head = p->next;
			if (c->rx_head == NULL)
				c->rx_tail = NULL;
			p->next = NULL;
			pbuf_free(p);
			c->rx_off = 0;
		}
	}
	if (done > 0) {
		uint32_t left = done;

		/* Open the window only as the application reads: a slow
		 * reader slows the sender, nothing piles up here. */
		while (c->pcb.tcp != NULL && left > 0) {
			u16_t step = left > 0xffff ? 0xffff : (u16_t)left;

			tcp_recved(c->pcb.tcp, step);
			left -= step;
		}
		return (int)done;
	}
	if (c->pcb.tcp == NULL && c->err)
		return dn_error(-c->err, "connection %d: %s", id,
			strerror(c->err));
	if (c->eof)
		return 0;
	return dn_error(-EAGAIN, "nothing to read on connection %d", id);
}

int
dn_recv_queued(struct dn_stack *st, int id)
{
	struct dn_conn *c = dn_conn_get(st, id);
	const struct pbuf *p;
	uint32_t n = 0;

	if (c == NULL || c->kind != DN_TCP || c->rx_head == NULL)
		return 0;
	/* The window bounds the queue, so the walk is short. */
	for (p = c->rx_head; p != NULL; p = p->next)
		n += p->len;
	n -= c->rx_off;
	return n > INT32_MAX ? INT32_MAX : (int)n;
}

int
dn_stack_max_conns(const struct dn_stack *st)
{
	return (int)st->max_conns;
}

static const struct dn_stack_calls dn_calls = {
	.poll = dn_stack_poll,
	.recv_queued = dn_recv_queued,
	.recv = dn_recv,
	.send = dn_send,
	.max_conns = dn_stack_max_conns,
	.spin = dn_stack_spin,
	.wake = dn_stack_wake,
};

const struct dn_stack_calls *
dn_stack_calls(void)
{
	return &dn_calls;
}

int
dn_shutdown(struct dn_stack *st, int id, int how)
{
	struct dn_conn *c;
	err_t err;
	int ret;

	c = dn_tcp_conn(st, id, &ret);
	if (c == NULL)
		return ret;
	if (how == DN_SHUT_RD || how == DN_SHUT_RDWR)
		dn_rxq_free(c);
	if ((how == DN_SHUT_WR || how == DN_SHUT_RDWR) && !c->wr_closed) {
		err = tcp_shutdown(c->pcb.tcp, 0, 1);
		if (err != ERR_OK)
			return dn_error(-dn_err_to_errno(err), "shutdown of "
				"connection %d failed", id);
		c->wr_closed = 1;
		dn_tcp_release_done(c);
		dn_link_tx_flush(st->link);
	}
	return 0;
}

int
dn_close(struct dn_stack *st, int id)
{
	struct dn_conn *c = dn_conn_get(st, id);

	if (c == NULL)
		return dn_error(-EBADF, "no connection with id %d", id);
	switch (c->kind) {
	case DN_TCP:
	case DN_TCP_LISTEN:
		if (c->pcb.tcp != NULL) {
			struct tcp_pcb *pcb = c->pcb.tcp;

			dn_tcp_detach(pcb);
			/* lwIP sends RST itself when unread data remains, as
			 * the kernel does. */
			if (tcp_close(pcb) != ERR_OK)
				tcp_abort(pcb);
		}
		break;
	case DN_UDP:
		if (c->pcb.udp != NULL)
			udp_remove(c->pcb.udp);
		break;
	}
	dn_conn_release(st, id);
	dn_link_tx_flush(st->link);
	return 0;
}

int
dn_abort(struct dn_stack *st, int id)
{
	struct dn_conn *c = dn_conn_get(st, id);

	if (c == NULL)
		return dn_error(-EBADF, "no connection with id %d", id);
	if ((c->kind == DN_TCP || c->kind == DN_TCP_LISTEN) &&
	    c->pcb.tcp != NULL) {
		struct tcp_pcb *pcb = c->pcb.tcp;

		dn_tcp_detach(pcb);
		if (pcb->state == LISTEN)
			tcp_close(pcb);
		else
			tcp_abort(pcb);	/* sends RST */
		c->pcb.tcp = NULL;
		c->err = ECONNABORTED;
		dn_rxq_free(c);
		dn_link_tx_flush(st->link);
	}
	return 0;
}

int
dn_set_nodelay(struct dn_stack *st, int id, int on)
{
	struct dn_conn *c;
	int ret;

	c = dn_tcp_conn(st, id, &ret);
	if (c == NULL)
		return ret;
	if (on)
		tcp_nagle_disable(c->pcb.tcp);
	else
		tcp_nagle_enable(c->pcb.tcp);
	return 0;
}

int
dn_set_keepalive(struct dn_stack *st, int id, int on)
{
	struct dn_conn *c;
	int ret;

	c = dn_tcp_conn(st, id, &ret);
	if (c == NULL)
		return ret;
	if (on)
		ip_set_option(c->pcb.tcp, SOF_KEEPALIVE);
	else
		ip_reset_option(c->pcb.tcp, SOF_KEEPALIVE);
	return 0;
}

int
dn_set_keepalive_times(struct dn_stack *st, int id, uint32_t idle_ms,
	uint32_t interval_ms, uint32_t count)
{
	struct dn_conn *c;
	int ret;

	c = dn_tcp_conn(st, id, &ret);
	if (c == NULL)
		return ret;
	/* lwIP checks them on its 500 ms timer and multiplies count by
	 * interval in 32 bits. */
	if ((count != 0 && interval_ms != 0 &&
	     (uint64_t)count * interval_ms > UINT32_MAX / 2) ||
	    idle_ms > UINT32_MAX / 2)
		return dn_error(-EINVAL, "keepalive times too long (idle %u ms, "
			"%u probes every %u ms)", idle_ms, count, interval_ms);
	if (idle_ms != 0)
		c->pcb.tcp->keep_idle = idle_ms;
	if (interval_ms != 0)
		c->pcb.tcp->keep_intvl = interval_ms;
	if (count != 0)
		c->pcb.tcp->keep_cnt = count;
	return 0;
}

/* want NULL: every connection. */
static int
dn_reset_matching(struct dn_stack *st, const ip_addr_t *want)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < st->max_conns; i++) {
		struct dn_conn *c = &st->conns[i];
		struct tcp_pcb *pcb = c->pcb.tcp;

		if (c->kind != DN_TCP || pcb == NULL ||
		    (want != NULL && !ip_addr_cmp(&pcb->remote_ip, want)))
			continue;
		dn_tcp_detach(pcb);
		/* No RST: nobody is there to receive it. */
		tcp_abandon(pcb, 0);
		c->pcb.tcp = NULL;
		c->err = c->connected ? ECONNRESET : ECONNREFUSED;
		dn_rxq_free(c);
		dn_notify(st, (int)i, DN_EV_ERROR);
		n++;
	}
	return n;
}

int
dn_reset_peer(struct dn_stack *st, uint32_t ip)
{
	ip_addr_t want;

	if (ip == 0) {
		dn_link_set_down(st->link);
		return dn_reset_matching(st, NULL);
	}
	dn_ip_set(&want, ip);
	return dn_reset_matching(st, &want);
}

int
dn_reset_peer6(struct dn_stack *st, const uint8_t *ip6)
{
	ip_addr_t want;
	int ret = dn_v6_ok(st);

	if (ret < 0)
		return ret;
	dn_ip6_set(&want, ip6);
	if (ip_addr_isany(&want))
		return dn_error(-EINVAL, "no endpoint has the IPv6 address :: "
			"(dn_reset_peer with 0 ends every connection)");
	return dn_reset_matching(st, &want);
}

static int
dn_names_addr(struct dn_stack *st, int id, int peer, const ip_addr_t **ap,
	uint16_t *port)
{
	struct dn_conn *c = dn_conn_get(st, id);
	const ip_addr_t *a;

	if (c == NULL)
		return dn_error(-EBADF, "no connection with id %d", id);
	if (c->kind == DN_UDP) {
		if (peer)
			return dn_error(-ENOTCONN, "UDP endpoint %d has no "
				"peer", id);
		a = &c->pcb.udp->local_ip;
		*port = c->pcb.udp->local_port;
	} else {
		if (c->pcb.tcp == NULL)
			return dn_error(-ENOTCONN, "connection %d is closed",
				id);
		a = peer ? &c->pcb.tcp->remote_ip : &c->pcb.tcp->local_ip;
		*port = peer ? c->pcb.tcp->remote_port :
			c->pcb.tcp->local_port;
	}
	*ap = a;
	return 0;
}

static int
dn_names(struct dn_stack *st, int id, int peer, uint32_t *ip, uint16_t *port)
{
	const ip_addr_t *a;
	int ret = dn_names_addr(st, id, peer, &a, port);

	if (ret < 0)
		return ret;
	/* ip_addr_t is a union of both families: this call gives IPv4. */
	if (!IP_IS_V4(a))
		return dn_error(-EAFNOSUPPORT, "connection %d is not IPv4",
			id);
	*ip = lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(a)));
	if (*ip == 0 && !peer)
		*ip = lwip_ntohl(ip4_addr_get_u32(netif_ip4_addr(&st->netif)));
	return 0;
}

int
dn_names6(struct dn_stack *st, int id, int peer, uint8_t *ip6,
	uint16_t *port)
{
	const ip_addr_t *a;
	int ret = dn_names_addr(st, id, peer, &a, port);

	if (ret < 0)
		return ret;
	if (!IP_IS_V6(a))
		return dn_error(-EAFNOSUPPORT, "connection %d is not IPv6",
			id);
	/* Bound to :: the connection still has one address: the stack's. */
	if (ip6_addr_isany(ip_2_ip6(a)) && !peer)
		a = &st->netif.ip6_addr[0];
	memcpy(ip6, ip_2_ip6(a)->addr, 16);
	return 0;
}

int
dn_conn_family(struct dn_stack *st, int id)
{
	struct dn_conn *c = dn_conn_get(st, id);

	if (c == NULL)
		return dn_error(-EBADF, "no connection with id %d", id);
	return c->family;
}

int
dn_stack_ip6(struct dn_stack *st, uint8_t *ip6)
{
	int ret = dn_v6_ok(st);

	if (ret < 0)
		return ret;
	memcpy(ip6, netif_ip6_addr(&st->netif, 0)->addr, 16);
	return 0;
}

int
dn_sockname(struct dn_stack *st, int id, uint32_t *ip, uint16_t *port)
{
	return dn_names(st, id, 0, ip, port);
}

int
dn_peername(struct dn_stack *st, int id, uint32_t *ip, uint16_t *port)
{
	return dn_names(st, id, 1, ip, port);
}

int
dn_send_queued(struct dn_stack *st, int id)
{
	struct dn_conn *c;
	int ret;

	c = dn_tcp_conn(st, id, &ret);
	if (c == NULL)
		return ret;
	return (int)(TCP_SND_BUF - c->pcb.tcp->snd_buf);
}

/* ---- UDP ---- */

static int
dn_udp_bind_at(struct dn_stack *st, const ip_addr_t *addr, int family,
	uint16_t port)
{
	struct udp_pcb *pcb;
	err_t err;
	int id, ret;

	id = dn_conn_alloc(st, DN_UDP);
	if (id < 0)
		return id;
	st->conns[id].family = (uint8_t)family;
	st->conns[id].udpq = calloc(1, sizeof(struct dn_udpq));
	/* One family a pcb, so that a datagram's source is always of the
	 * endpoint's family. */
	pcb = udp_new_ip_type(dn_ip_type(family));
	if (pcb == NULL || st->conns[id].udpq == NULL) {
		if (pcb != NULL)
			udp_remove(pcb);
		dn_conn_release(st, id);
		return dn_error(-ENOMEM, "no UDP control block left");
	}
	if (port == 0) {
		ret = dn_bind_ephemeral(st, dn_udp_try_port, pcb, addr);
		if (ret < 0) {
			udp_remove(pcb);
			dn_conn_release(st, id);
			return ret;
		}
		err = ERR_OK;
	} else {
		err = udp_bind(pcb, addr, port);
	}
	if (err != ERR_OK) {
		udp_remove(pcb);
		dn_conn_release(st, id);
		return dn_error(-dn_err_to_errno(err), "cannot bind UDP port "
			"%u", port);
	}
	st->conns[id].pcb.udp = pcb;
	udp_recv(pcb, dn_udp_recv_cb, &st->conns[id]);
	return id;
}

int
dn_udp_bind(struct dn_stack *st, uint32_t ip, uint16_t port)
{
	ip_addr_t addr;

	dn_ip_set(&addr, ip);
	return dn_udp_bind_at(st, &addr, 4, port);
}

int
dn_udp_bind6(struct dn_stack *st, const uint8_t *ip6, uint16_t port)
{
	ip_addr_t addr;
	int ret = dn_v6_ok(st);

	if (ret < 0)
		return ret;
	dn_ip6_set(&addr, ip6);
	return dn_udp_bind_at(st, &addr, 6, port);
}

static int
dn_udp_sendto_addr(struct dn_stack *st, int id, const void *buf,
	uint32_t len, const ip_addr_t *addr, int family, uint16_t port)
{
	struct dn_conn *c = dn_conn_get(st, id);
	/* IPv4 and UDP headers, or IPv6's (no options either way). */
	uint32_t hdrs = family == 6 ? 48 : 28;
	struct pbuf *p;
	err_t err;
	int ret;

	if (c == NULL || c->kind != DN_UDP)
		return dn_error(-EBADF, "no UDP endpoint with id %d", id);
	ret = dn_family_ok(c, id, family);
	if (ret < 0)
		return ret;
	if (dn_link_is_down(st->link))
		return dn_error(-EHOSTUNREACH, "the DockNet master is gone "
			"(waiting for it to come back)");
	if (len > (uint32_t)st->netif.mtu - hdrs)
		return dn_error(-EMSGSIZE, "datagram of %u bytes exceeds the "
			"link MTU %u less headers", len, st->netif.mtu);
	p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)len, PBUF_RAM);
	if (p == NULL)
		return dn_error(-ENOBUFS, "no buffer for a datagram");
	memcpy(p->payload, buf, len);
	err = udp_sendto(c->pcb.udp, p, addr, port);
	pbuf_free(p);
	if (err != ERR_OK)
		return dn_error(-dn_err_to_errno(err), "UDP send to %s "
			"failed", dn_ip_str(addr));
	dn_link_tx_flush(st->link);
	return (int)len;
}

int
dn_udp_sendto(struct dn_stack *st, int id, const void *buf, uint32_t len,
	uint32_t ip, uint16_t port)
{
	ip_addr_t addr;

	dn_ip_set(&addr, ip);
	return dn_udp_sendto_addr(st, id, buf, len, &addr, 4, port);
}

int
dn_udp_sendto6(struct dn_stack *st, int id, const void *buf, uint32_t len,
	const uint8_t *ip6, uint16_t port)
{
	ip_addr_t addr;
	int ret = dn_v6_ok(st);

	if (ret < 0)
		return ret;
	dn_ip6_set(&addr, ip6);
	return dn_udp_sendto_addr(st, id, buf, len, &addr, 6, port);
}

/* The next datagram of family's endpoint id, its source in *from. */
static int
dn_udp_recv_addr(struct dn_stack *st, int id, void *buf, uint32_t len,
	int family, ip_addr_t *from, uint16_t *port)
{
	struct dn_conn *c = dn_conn_get(st, id);
	struct dn_udpq *q;
	struct dn_dgram *d;
	uint16_t n;

	if (c == NULL || c->kind != DN_UDP)
		return dn_error(-EBADF, "no UDP endpoint with id %d", id);
	q = c->udpq;
	if (q->len == 0)
		return dn_error(-EAGAIN, "no datagram waiting on %d", id);
	d = &q->q[q->head];
	/* The pcb takes one family, so this is the endpoint's; checked
	 * before the datagram is taken, so the other call still gets it. */
	if ((family == 6) != (IP_IS_V6(&d->addr) != 0))
		return dn_error(-EAFNOSUPPORT, "UDP endpoint %d is IPv%d, not "
			"IPv%d", id, c->family, family);
	/* Like recvfrom(): a short buffer truncates the datagram. */
	n = pbuf_copy_partial(d->p, buf,
		(u16_t)(len < d->p->tot_len ? len : d->p->tot_len), 0);
	ip_addr_copy(*from, d->addr);
	*port = d->port;
	pbuf_free(d->p);
	q->head = (q->head + 1) % DN_UDP_QUEUE;
	q->len--;
	return n;
}

int
dn_udp_recvfrom(struct dn_stack *st, int id, void *buf, uint32_t len,
	uint32_t *ip, uint16_t *port)
{
	ip_addr_t from;
	int n = dn_udp_recv_addr(st, id, buf, len, 4, &from, port);

	if (n >= 0)
		*ip = lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(&from)));
	return n;
}

int
dn_udp_recvfrom6(struct dn_stack *st, int id, void *buf, uint32_t len,
	uint8_t *ip6, uint16_t *port)
{
	ip_addr_t from;
	int n = dn_udp_recv_addr(st, id, buf, len, 6, &from, port);

	if (n >= 0)
		memcpy(ip6, ip_2_ip6(&from)->addr, 16);
	return n;
}

/* ---- ICMP ---- */

int
dn_ping(struct dn_stack *st, uint32_t ip, uint16_t seq, uint16_t size)
{
	struct icmp_echo_hdr *hdr;
	ip_addr_t addr;
	struct pbuf *p;
	err_t err;
	u16_t total = (u16_t)(sizeof(*hdr) + size);

	if (st->ping_pcb == NULL)
		return dn_error(-ENOMEM, "no raw control block for ICMP");
	p = pbuf_alloc(PBUF_IP, total, PBUF_RAM);
	if (p == NULL)
		return dn_error(-ENOBUFS, "no buffer for an echo request");
	hdr = p->payload;
	ICMPH_TYPE_SET(hdr, ICMP_ECHO);
	ICMPH_CODE_SET(hdr, 0);
	hdr->id = lwip_htons(st->ping_ident);
	hdr->seqno = lwip_htons(seq);
	memset((char *)p->payload + sizeof(*hdr), 0xa5, size);
	hdr->chksum = 0;
	hdr->chksum = inet_chksum(hdr, total);
	st->ping_sent_ns[seq % (sizeof(st->ping_sent_ns) /
		sizeof(st->ping_sent_ns[0]))] = dn_clock_ns();
	dn_ip_set(&addr, ip);
	err = raw_sendto(st->ping_pcb, p, &addr);
	pbuf_free(p);
	if (err != ERR_OK)
		return dn_error(-dn_err_to_errno(err), "echo request failed");
	dn_link_tx_flush(st->link);
	return 0;
}

int
dn_ping6(struct dn_stack *st, const uint8_t *ip6, uint16_t seq, uint16_t size)
{
	struct icmp6_echo_hdr *hdr;
	ip_addr_t addr;
	struct pbuf *p;
	err_t err;
	u16_t total = (u16_t)(sizeof(*hdr) + size);
	int ret = dn_v6_ok(st);

	if (ret < 0)
		return ret;
	if (st->ping6_pcb == NULL)
		return dn_error(-ENOMEM, "no raw control block for ICMPv6");
	if ((uint32_t)size + sizeof(*hdr) + IP6_HLEN > st->netif.mtu)
		return dn_error(-EMSGSIZE, "echo request of %u bytes exceeds "
			"the link MTU %u", size, st->netif.mtu);
	dn_ip6_set(&addr, ip6);
	if (ip_addr_isany(&addr))
		return dn_error(-EADDRNOTAVAIL, "cannot ping ::");
	p = pbuf_alloc(PBUF_IP, total, PBUF_RAM);
	if (p == NULL)
		return dn_error(-ENOBUFS, "no buffer for an echo request");
	hdr = p->payload;
	hdr->type = ICMP6_TYPE_EREQ;
	hdr->code = 0;
	hdr->chksum = 0;	/* raw_sendto fills it (chksum_reqd) */
	hdr->id = lwip_htons(st->ping_ident);
	hdr->seqno = lwip_htons(seq);
	memset((char *)p->payload + sizeof(*hdr), 0xa5, size);
	st->ping_sent_ns[seq % (sizeof(st->ping_sent_ns) /
		sizeof(st->ping_sent_ns[0]))] = dn_clock_ns();
	err = raw_sendto(st->ping6_pcb, p, &addr);
	pbuf_free(p);
	if (err != ERR_OK)
		return dn_error(-dn_err_to_errno(err), "echo request to %s "
			"failed", dn_ip_str(&addr));
	dn_link_tx_flush(st->link);
	return 0;
}

int
dn_send_frame(struct dn_stack *st, const void *frame, uint32_t len)
{
	struct dn_iov iov = { frame, len };
	int ret;

	if (len == 0 || len > (uint32_t)st->netif.mtu + 18)
		return dn_error(-EMSGSIZE, "frame of %u bytes does not fit the "
			"link (MTU %u)", len, st->netif.mtu);
	ret = dn_link_tx(st->link, &iov, 1);
	if (ret < 0)
		return dn_error(ret, "no buffer for the frame");
	dn_link_tx_flush(st->link);
	return (int)len;
}

static void
dn_conn_info_ip(struct dn_conn_info *o, int remote, const ip_addr_t *a)
{
	if (IP_IS_V6(a)) {
		memcpy(remote ? o->remote_ip6 : o->local_ip6,
			ip_2_ip6(a)->addr, 16);
		return;
	}
	*(remote ? &o->remote_ip : &o->local_ip) =
		lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(a)));
}

int
dn_stack_conns(struct dn_stack *st, struct dn_conn_info *out, int max)
{
	uint32_t i;
	int n = 0;

	for (i = 0; i < st->max_conns && n < max; i++) {
		struct dn_conn *c = &st->conns[i];
		struct dn_conn_info *o = &out[n];
		struct pbuf *p;

		if (c->kind == DN_FREE)
			continue;
		memset(o, 0, sizeof(*o));
		o->id = (int32_t)i;
		o->kind = c->kind;
		o->state = -1;
		o->family = c->family;
		if (c->kind == DN_UDP && c->pcb.udp != NULL) {
			dn_conn_info_ip(o, 0, &c->pcb.udp->local_ip);
			o->local_port = c->pcb.udp->local_port;
		} else if (c->kind != DN_UDP && c->pcb.tcp != NULL) {
			struct tcp_pcb *pcb = c->pcb.tcp;

			o->state = pcb->state;
			dn_conn_info_ip(o, 0, &pcb->local_ip);
			o->local_port = pcb->local_port;
			if (c->kind == DN_TCP) {
				dn_conn_info_ip(o, 1, &pcb->remote_ip);
				o->remote_port = pcb->remote_port;
				o->send_queued = TCP_SND_BUF - pcb->snd_buf;
			}
		}
		for (p = c->rx_head; p != NULL; p = p->next)
			o->recv_queued += p->len;
		o->recv_queued -= c->rx_head ? c->rx_off : 0;
		n++;
	}
	return n;
}
