/*
 * libFuzzer harness: frames into the slave stack (native/dn_stack.c) through
 * the project's netif (lwip/netif/dn_netif.c) and lwIP's input path, with
 * lwIP's timers on a clock the input drives.
 *
 * An input is a sequence of records, each
 *
 *   u16 LE  frame length (low 14 bits)
 *   u8      flags: DN_FZ_FOLLOW, DN_FZ_POOL_LOW
 *   u8      time to let pass before the frame (dn_fz_delay_ms())
 *   u8      what the application does after it (enum dn_fz_op, high bits
 *           an argument)
 *   bytes   the frame, as it would come off the link
 *
 * and a missing tail is taken as zeros, so every input means something.
 * The stack listens on TCP DN_FZ_TCP_PORT and has a UDP socket on
 * DN_FZ_UDP_PORT, each in both families (fd77:d0c::2 beside 10.77.0.2),
 * and the application reads what arrives (unless told to stop), so TCP's
 * state machines, the receive window and the stack's event queue are all
 * reached, and IPv6's header chain, neighbour discovery and ICMPv6 too.
 * DN_FZ_FOLLOW makes a TCP frame (IPv4, or IPv6 with TCP the first next
 * header) answer the last segment the stack sent in the frame's family
 * (ports, addresses, sequence and acknowledgement numbers): a mutator
 * cannot guess an initial sequence number, a peer always knows it.
 *
 * Each input gets a fresh stack (dn_stack_open/dn_stack_close), so an input
 * replays alone as it ran in the fuzzer, apart from lwIP's own globals
 * (ISN counter, IP id) that outlive a stack.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lwip/etharp.h"
#include "lwip/sys.h"
#include "lwip/timeouts.h"
#include "lwip/udp.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/priv/nd6_priv.h"

#include "dn_error.h"
#include "dn_fuzzlink.h"
#include "dn_stack.h"

#define DN_FZ_IP 0x0a4d0002u		/* 10.77.0.2, the stack */
#define DN_FZ_PEER 0x0a4d0003u		/* 10.77.0.3, the fuzzer's side */
#define DN_FZ_GW 0x0a4d0001u
/* fd77:d0c::3, the fuzzer's side in IPv6 (the stack is ::2). */
static const uint8_t dn_fz_peer6[16] = { 0xfd, 0x77, 0x0d, 0x0c, [15] = 0x03 };
static const uint8_t dn_fz_any6[16];
#define DN_FZ_MASK 0xffff0000u
#define DN_FZ_MTU 1500
#define DN_FZ_TCP_PORT 80
#define DN_FZ_UDP_PORT 53
#define DN_FZ_MAX_CONNS 16

#define DN_FZ_HDR 5
#define DN_FZ_FOLLOW 0x01
#define DN_FZ_POOL_LOW 0x02

/* lwIP's TCP timer period: the fake clock never jumps further in one
 * step, so timers run as often as they would in real time. */
#define DN_FZ_STEP_MS 250

enum dn_fz_op {
	DN_FZ_NONE,
	DN_FZ_SEND,		/* arg: how much */
	DN_FZ_SHUTDOWN,		/* arg: how */
	DN_FZ_CLOSE,
	DN_FZ_ABORT,		/* odd arg: the peer's endpoint is gone
				 * (arg & 4: its IPv6 address) */
	DN_FZ_SENDTO,		/* arg: port and size (arg & 16: IPv6) */
	DN_FZ_CONNECT,		/* arg: port (arg & 16: IPv6) */
	DN_FZ_MISC,		/* arg bits: stop/resume reading, keepalive,
				 * nodelay, ping (IPv6 with 16), list the
				 * connections and their names */
};

/* Harness state, for one input at a time. */
struct dn_fz {
	struct dn_stack *st;
	struct dn_link *link;
	int listen_id;
	int udp_id;
	int listen6_id;
	int udp6_id;
	int cur;		/* the connection actions apply to */
	int paused;		/* the application stopped reading */
	uint8_t buf[65536];
};

static struct dn_fz dn_fz;
static u32_t dn_fz_clock;
/* DN_FUZZ_TRACE=1 prints the stack's events and frames, to check what a
 * seed reaches. */
static int dn_fz_trace;

/* lwIP's clock (dn_stack.c's own is renamed away in this build). */
u32_t
sys_now(void)
{
	return dn_fz_clock;
}

static uint32_t
dn_fz_delay_ms(uint8_t d)
{
	/* Fine steps for retransmission and delayed ACKs, coarse ones for
	 * TIME-WAIT, ARP ageing and keepalive. */
	if (d < 128)
		return d * 10u;
	if (d < 224)
		return (d - 127u) * 1000u;
	return (d - 223u) * 60000u;
}

static void
dn_fz_open(void)
{
	struct dn_stack_config cfg = {
		.ip = DN_FZ_IP,
		.netmask = DN_FZ_MASK,
		.gateway = DN_FZ_GW,
		/* fd77:d0c::2, so IPv6 frames to the stack reach ND, ICMPv6
		 * and the transports as IPv4 ones do. */
		.ip6 = { 0xfd, 0x77, 0x0d, 0x0c, [15] = 0x02 },
		.prefix6_len = 64,
		.mac = { 0x02, 0x00, 0x0a, 0x4d, 0x00, 0x02 },
		.mtu = DN_FZ_MTU,
		.n_mbufs = 256,
		.max_conns = DN_FZ_MAX_CONNS,
		.link_fd = -1,
		.wake_fd = -1,
		.master_wake_fd = -1,
	};
	/* The peer is a neighbour the switch already knows, so connecting
	 * out does not wait on an ARP reply the input may never send. */
	static const struct eth_addr peer_mac = {{ 0x02, 0x00, 0x0a, 0x4d,
		0x00, 0x03 }};
	ip4_addr_t peer;

	if (dn_stack_open(&cfg, &dn_fz.st) < 0) {
		fprintf(stderr, "dn_stack_open: %s\n", dn_last_error());
		abort();
	}
	dn_fz.link = dn_fuzzlink_current();
	dn_fz.listen_id = dn_listen(dn_fz.st, DN_FZ_IP, DN_FZ_TCP_PORT, 4);
	dn_fz.udp_id = dn_udp_bind(dn_fz.st, DN_FZ_IP, DN_FZ_UDP_PORT);
	dn_fz.listen6_id = dn_listen6(dn_fz.st, dn_fz_any6, DN_FZ_TCP_PORT, 4);
	dn_fz.udp6_id = dn_udp_bind6(dn_fz.st, dn_fz_any6, DN_FZ_UDP_PORT);
	if (dn_fz.listen_id < 0 || dn_fz.udp_id < 0 || dn_fz.listen6_id < 0 ||
	    dn_fz.udp6_id < 0) {
		fprintf(stderr, "listen/bind: %s\n", dn_last_error());
		abort();
	}
	ip4_addr_set_u32(&peer, lwip_htonl(DN_FZ_PEER));
	etharp_add_static_entry(&peer, (struct eth_addr *)&peer_mac);
	dn_fz.cur = -1;
	dn_fz.paused = 0;
}

static void
dn_fz_drain(int id)
{
	uint32_t ip;
	uint8_t ip6[16];
	uint16_t port;

	if (id == dn_fz.udp_id) {
		while (dn_udp_recvfrom(dn_fz.st, id, dn_fz.buf,
		    sizeof(dn_fz.buf), &ip, &port) >= 0)
			;
		return;
	}
	if (id == dn_fz.udp6_id) {
		while (dn_udp_recvfrom6(dn_fz.st, id, dn_fz.buf,
		    sizeof(dn_fz.buf), ip6, &port) >= 0)
			;
		return;
	}
	if (dn_fz.paused)
		return;
	while (dn_recv(dn_fz.st, id, dn_fz.buf, sizeof(dn_fz.buf)) > 0)
		;
}

/* Runs the stack until it has nothing more to say, acting on its events
 * as an application would. */
static void
dn_fz_poll(void)
{
	struct dn_event ev[32];
	int rounds, n, i;

	for (rounds = 0; rounds < 8; rounds++) {
		n = dn_stack_poll(dn_fz.st, ev, 32);
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			if (dn_fz_trace)
				fprintf(stderr, "t=%u event %d id %d arg %d\n",
					dn_fz_clock, ev[i].kind, ev[i].id,
					ev[i].arg);
			switch (ev[i].kind) {
			case DN_EV_ACCEPTED:
			case DN_EV_CONNECTED:
				dn_fz.cur = ev[i].id;
				break;
			case DN_EV_READABLE:
			case DN_EV_PEER_CLOSED:
				dn_fz_drain(ev[i].id);
				break;
			case DN_EV_ERROR:
				dn_close(dn_fz.st, ev[i].id);
				if (dn_fz.cur == ev[i].id)
					dn_fz.cur = -1;
				break;
			default:
				break;
			}
		}
	}
}

static void
dn_fz_advance(uint32_t ms)
{
	while (ms > 0) {
		uint32_t step = ms < DN_FZ_STEP_MS ? ms : DN_FZ_STEP_MS;

		dn_fz_clock += step;
		ms -= step;
		sys_check_timeouts();
		dn_fz_poll();
	}
}

static uint32_t
dn_fz_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		(uint32_t)p[2] << 8 | p[3];
}

static void
dn_fz_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Offset of the TCP header in an Ethernet/IPv4/TCP or Ethernet/IPv6/TCP
 * frame (*family 4 or 6), or 0; *ip_len is the IP packet's length. */
static uint32_t
dn_fz_tcp_off(const uint8_t *f, uint32_t len, uint32_t *ip_len, int *family)
{
	uint32_t ihl;

	if (len >= 14 + 40 + 20 && f[12] == 0x86 && f[13] == 0xdd &&
	    f[14 + 6] == 6) {
		*family = 6;
		*ip_len = 40 + ((uint32_t)f[18] << 8 | f[19]);
		return 14 + 40;
	}
	*family = 4;
	if (len < 14 + 20 || f[12] != 0x08 || f[13] != 0x00 ||
	    f[14 + 9] != 6)
		return 0;
	ihl = (f[14] & 0x0fu) * 4;
	if (ihl < 20 || 14 + ihl + 20 > len)
		return 0;
	*ip_len = (uint32_t)f[16] << 8 | f[17];
	return 14 + ihl;
}

/* Makes a TCP frame the peer's answer to the stack's last segment. */
static void
dn_fz_follow(uint8_t *f, uint32_t len)
{
	const uint8_t *tx;
	uint32_t tx_len, to, fo, tx_ip_len, ip_len, hl, seg, ack;
	int tx_family, family;

	tx = dn_fuzzlink_last_tx(dn_fz.link, &tx_len);
	if (tx == NULL ||
	    (to = dn_fz_tcp_off(tx, tx_len, &tx_ip_len, &tx_family)) == 0 ||
	    (fo = dn_fz_tcp_off(f, len, &ip_len, &family)) == 0 ||
	    family != tx_family)
		return;
	hl = (tx[to + 12] >> 4) * 4u;
	seg = tx_ip_len > to - 14 + hl ? tx_ip_len - (to - 14) - hl : 0;
	ack = dn_fz_get32(tx + to + 4) + seg;
	if (tx[to + 13] & 0x02)		/* SYN */
		ack++;
	if (tx[to + 13] & 0x01)		/* FIN */
		ack++;
	memcpy(f + 0, tx + 6, 6);		/* MACs swapped */
	memcpy(f + 6, tx + 0, 6);
	if (family == 6) {			/* IPs swapped */
		memcpy(f + 14 + 8, tx + 14 + 24, 16);
		memcpy(f + 14 + 24, tx + 14 + 8, 16);
	} else {
		memcpy(f + 14 + 12, tx + 14 + 16, 4);
		memcpy(f + 14 + 16, tx + 14 + 12, 4);
	}
	memcpy(f + fo, tx + to + 2, 2);		/* ports swapped */
	memcpy(f + fo + 2, tx + to, 2);
	if (tx[to + 13] & 0x10)			/* their ACK is our seq */
		memcpy(f + fo + 4, tx + to + 8, 4);
	dn_fz_put32(f + fo + 8, ack);
}

static void
dn_fz_act(uint8_t a)
{
	unsigned int arg = a >> 3;
	int id = dn_fz.cur;

	switch ((enum dn_fz_op)(a & 7)) {
	case DN_FZ_NONE:
		break;
	case DN_FZ_SEND:
		if (id >= 0) {
			memset(dn_fz.buf, 'x', sizeof(dn_fz.buf));
			dn_send(dn_fz.st, id, dn_fz.buf, (arg + 1) * 1999u);
		}
		break;
	case DN_FZ_SHUTDOWN:
		if (id >= 0)
			dn_shutdown(dn_fz.st, id, (int)(arg % 3));
		break;
	case DN_FZ_CLOSE:
		if (id >= 0) {
			dn_close(dn_fz.st, id);
			dn_fz.cur = -1;
		}
		break;
	case DN_FZ_ABORT:
		if ((arg & 5) == 5)
			dn_reset_peer6(dn_fz.st, dn_fz_peer6);
		else if (arg & 1)
			dn_reset_peer(dn_fz.st, (arg & 2) ? 0 : DN_FZ_PEER);
		else if (id >= 0)
			dn_abort(dn_fz.st, id);
		break;
	case DN_FZ_SENDTO:
		memset(dn_fz.buf, 'u', sizeof(dn_fz.buf));
		if (arg & 16)
			dn_udp_sendto6(dn_fz.st, dn_fz.udp6_id, dn_fz.buf,
				arg * 47u, dn_fz_peer6, (uint16_t)(1000 + arg));
		else
			dn_udp_sendto(dn_fz.st, dn_fz.udp_id, dn_fz.buf,
				arg * 47u, DN_FZ_PEER, (uint16_t)(1000 + arg));
		break;
	case DN_FZ_CONNECT:
		if (arg & 16)
			id = dn_connect6(dn_fz.st, dn_fz_peer6,
				(uint16_t)(8000 + (arg & 15)));
		else
			id = dn_connect(dn_fz.st, DN_FZ_PEER,
				(uint16_t)(8000 + arg));
		if (id >= 0)
			dn_fz.cur = id;
		break;
	case DN_FZ_MISC:
		if (arg & 1)
			dn_fz.paused = !dn_fz.paused;
		if ((arg & 2) && id >= 0)
			dn_set_keepalive(dn_fz.st, id, 1);
		if ((arg & 4) && id >= 0)
			dn_set_nodelay(dn_fz.st, id, 1);
		if ((arg & 24) == 24)
			dn_ping6(dn_fz.st, dn_fz_peer6, (uint16_t)arg,
				(uint16_t)(arg * 16));
		else if (arg & 8)
			dn_ping(dn_fz.st, DN_FZ_PEER, (uint16_t)arg,
				(uint16_t)(arg * 16));
		if (arg & 16) {
			struct dn_conn_info ci[DN_FZ_MAX_CONNS];
			uint8_t ip6[16];
			uint32_t ip;
			uint16_t port;

			dn_stack_conns(dn_fz.st, ci, DN_FZ_MAX_CONNS);
			if (id >= 0 && dn_conn_family(dn_fz.st, id) == 6) {
				dn_names6(dn_fz.st, id, 0, ip6, &port);
				dn_names6(dn_fz.st, id, 1, ip6, &port);
			} else if (id >= 0) {
				dn_sockname(dn_fz.st, id, &ip, &port);
				dn_peername(dn_fz.st, id, &ip, &port);
			}
		}
		break;
	}
	dn_fz_poll();
}

/* A closed stack leaves nothing in lwIP: a control block still listed
 * would carry this input's state into the next one, and in a service it
 * is a connection nobody can reach. */
static void
dn_fz_check_closed(void)
{
	const char *left = NULL;

	if (tcp_active_pcbs != NULL)
		left = "an active TCP control block";
	else if (tcp_tw_pcbs != NULL)
		left = "a TIME-WAIT TCP control block";
	else if (tcp_listen_pcbs.listen_pcbs != NULL)
		left = "a listening TCP control block";
	else if (tcp_bound_pcbs != NULL)
		left = "a bound TCP control block";
	else if (udp_pcbs != NULL)
		left = "a UDP control block";
	if (left != NULL) {
		fprintf(stderr, "fuzz_stack: dn_stack_close() left %s\n",
			left);
		abort();
	}
}

/* What only a router can teach lwIP (a default router, an on-link prefix)
 * must never be learnt from the link: nothing there routes, and anything
 * that claims to is another tenant (dn_stack.c drops router messages). */
static void
dn_fz_check_no_router(void)
{
	int i;

	for (i = 0; i < LWIP_ND6_NUM_ROUTERS; i++)
		if (default_router_list[i].neighbor_entry != NULL) {
			fprintf(stderr, "fuzz_stack: a frame installed an "
				"IPv6 default router\n");
			abort();
		}
	for (i = 0; i < LWIP_ND6_NUM_PREFIXES; i++)
		if (prefix_list[i].netif != NULL) {
			fprintf(stderr, "fuzz_stack: a frame installed an "
				"IPv6 on-link prefix\n");
			abort();
		}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	dn_fz_trace = getenv("DN_FUZZ_TRACE") != NULL;
	/* The first stack of a process initialises lwIP and its timers. */
	dn_fz_open();
	dn_stack_close(dn_fz.st);
	dn_fz_check_closed();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[16384];
	size_t off = 0;

	/* ISNs, ephemeral ports and the ping identifier come from random():
	 * the same input makes the same ones. */
	srandom(1);
	dn_fz_open();
	while (off + DN_FZ_HDR <= size) {
		uint32_t len = (data[off] | (uint32_t)data[off + 1] << 8) &
			0x3fff;
		uint8_t flags = data[off + 2];
		uint8_t delay = data[off + 3];
		uint8_t action = data[off + 4];

		off += DN_FZ_HDR;
		memset(frame, 0, len);
		memcpy(frame, data + off, len < size - off ? len : size - off);
		off += len < size - off ? len : size - off;

		dn_fz_advance(dn_fz_delay_ms(delay));
		if (len > 0) {
			if (flags & DN_FZ_FOLLOW)
				dn_fz_follow(frame, len);
			dn_fuzzlink_set_pool_low(dn_fz.link,
				(flags & DN_FZ_POOL_LOW) != 0);
			dn_fuzzlink_push(dn_fz.link, frame, len);
			dn_fz_poll();
		}
		dn_fz_act(action);
	}
	dn_fz_check_no_router();
	dn_stack_close(dn_fz.st);
	dn_fz_check_closed();
	return 0;
}
