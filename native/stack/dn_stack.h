/*
 * The slave stack: lwIP TCP/UDP/ICMP over one link to the master, with a small
 * socket-like API and batched events.
 *
 * One stack per process (lwIP keeps its state in globals), owned by the
 * thread that polls it: every call must come from that thread. Connection
 * ids are small integers, valid from the call or event that created them
 * until dn_close(). Calls return >= 0 on success or a negative errno, with
 * the reason in dn_last_error(). IPv4 addresses and ports are in host byte
 * order; IPv6 addresses are 16 bytes in network order (the *6 calls).
 *
 * Every connection has one family, fixed when it is made (an accepted one
 * takes its listener's): the IPv4 calls refuse an IPv6 connection and the
 * *6 calls an IPv4 one with EAFNOSUPPORT, so a caller that does not keep
 * the family can try one call and then the other. On a stack opened with
 * prefix6_len 0 (an IPv4-only endpoint) every *6 call fails with
 * EAFNOSUPPORT.
 */
#ifndef DN_STACK_H
#define DN_STACK_H

#include "dn_export.h"
#include "dn_link.h"

#include <stdint.h>

struct dn_stack;

struct dn_stack_config {
	uint32_t ip;
	uint32_t netmask;
	uint32_t gateway;
	/* The endpoint's IPv6 address, network order, on the netif with
	 * the on-link prefix's length; prefix6_len 0: IPv4 only. The IPv6
	 * gateway, where destinations off the prefix go, is derived as the
	 * master derives it: the prefix with gateway's host part (gateway &
	 * ~netmask) in the low 32 bits. */
	uint8_t ip6[16];
	uint8_t prefix6_len;
	uint8_t mac[6];
	uint16_t mtu;
	unsigned int n_mbufs;
	unsigned int max_conns;
	int link_fd;		/* the link's memory, from the master */
	int wake_fd;
	int master_wake_fd;
	/* Generate and check TCP/UDP/IP checksums on the link, which it
	 * otherwise skips: for links the switch is told to corrupt. */
	int checksums;
};

/* Event kinds. For DN_EV_ACCEPTED, id is the new connection and arg the
 * listener; for DN_EV_ERROR arg is the errno (ECONNRESET, ECONNREFUSED,
 * ETIMEDOUT, ECONNABORTED): the connection is dead but its id stays valid
 * until dn_close(). DN_EV_PING_REPLY: id is the sequence, arg the round
 * trip in microseconds. */
#define DN_EV_ACCEPTED 1
#define DN_EV_CONNECTED 2
#define DN_EV_READABLE 3
#define DN_EV_WRITABLE 4
#define DN_EV_PEER_CLOSED 5
#define DN_EV_ERROR 6
#define DN_EV_PING_REPLY 7

struct dn_event {
	int32_t kind;
	int32_t id;
	int32_t arg;
};

#define DN_SHUT_RD 0
#define DN_SHUT_WR 1
#define DN_SHUT_RDWR 2

struct dn_stack_stats {
	struct dn_link_stats link;	/* the link's, peer links' included */
	unsigned int conns_open;
};

int dn_stack_open(const struct dn_stack_config *cfg, struct dn_stack **out);
void dn_stack_close(struct dn_stack *st);
/* After the master restarted: the stack moves to the new master's link
 * (cfg's link_fd, wake_fd, master_wake_fd; its address, which may have
 * changed). n_mbufs and max_conns are ignored; the MTU must be the same.
 * Listeners and UDP sockets stay; TCP connections ended when the master
 * went (dn_reset_peer with 0). */
int dn_stack_relink(struct dn_stack *st, const struct dn_stack_config *cfg);

/* Receives, runs lwIP (input, timers), sends, and fills ev with up to max
 * events. Returns the number of events. */
DN_EXPORT int dn_stack_poll(struct dn_stack *st, struct dn_event *ev, int max);
/* Before blocking on dn_stack_fileno(): returns 1 if work is already
 * waiting (poll again instead), 0 if the caller may sleep. */
DN_EXPORT int dn_stack_arm(struct dn_stack *st);
/* After waking (or when not sleeping after all). */
DN_EXPORT void dn_stack_disarm(struct dn_stack *st);
DN_EXPORT int dn_stack_fileno(const struct dn_stack *st);
/* Milliseconds until lwIP's next timer, or -1 when none is due. */
DN_EXPORT int dn_stack_timeout_ms(struct dn_stack *st);
void dn_stack_stats(const struct dn_stack *st, struct dn_stack_stats *out);

/* A peer link from the master (dn_link.h) to the endpoint at peer_ip
 * (host byte order) with hardware address peer_mac, and at peer_ip6 (16
 * bytes; NULL: IPv4 only, as is a stack without IPv6); role 0 or 1 as the
 * master assigned. The stack keeps its own copies of the descriptors. IP
 * frames to peer_mac go on it from the next one on. */
int dn_stack_peer_add(struct dn_stack *st, int shm_fd, int peer_wake_fd,
	int role, uint64_t id, const uint8_t *peer_mac, uint32_t peer_ip,
	const uint8_t *peer_ip6);
int dn_stack_peer_remove(struct dn_stack *st, uint64_t id);
/* The endpoint's egress limit on its peer links (dn_link_set_peer_egress):
 * the tokens are the caller's; NULL: none. */
void dn_stack_set_peer_egress(struct dn_stack *st, struct dn_tokens *t);

/* TCP */
DN_EXPORT int dn_listen(struct dn_stack *st, uint32_t ip, uint16_t port, int backlog);
DN_EXPORT int dn_connect(struct dn_stack *st, uint32_t ip, uint16_t port);
/* The ephemeral ports connect and an unbound UDP endpoint pick from
 * (DN_STACK_PORT_LO .. 65535 unless set: the switch's link 0 range). */
#define DN_STACK_PORT_LO 49152
int dn_stack_set_port_range(struct dn_stack *st, uint16_t lo, uint16_t hi);
DN_EXPORT int dn_send(struct dn_stack *st, int id, const void *buf, uint32_t len);
DN_EXPORT int dn_recv(struct dn_stack *st, int id, void *buf, uint32_t len);
DN_EXPORT int dn_shutdown(struct dn_stack *st, int id, int how);
DN_EXPORT int dn_close(struct dn_stack *st, int id);
int dn_abort(struct dn_stack *st, int id);
int dn_set_nodelay(struct dn_stack *st, int id, int on);
int dn_sockname(struct dn_stack *st, int id, uint32_t *ip, uint16_t *port);
int dn_peername(struct dn_stack *st, int id, uint32_t *ip, uint16_t *port);
struct dn_conn_info {
	int32_t id;
	int32_t kind;		/* 1 TCP listener, 2 TCP, 3 UDP */
	int32_t state;		/* lwIP's enum tcp_state (-1: closed, error) */
	uint32_t local_ip;	/* IPv4 rows; 0 in IPv6 rows */
	uint16_t local_port;
	uint32_t remote_ip;
	uint16_t remote_port;
	uint32_t recv_queued;	/* received, not yet read */
	uint32_t send_queued;	/* in lwIP, not yet acknowledged */
	/* After the IPv4 fields, so that a reader of those finds them where
	 * they were: the row's family, and its addresses when it is 6. */
	int32_t family;		/* 4 or 6 */
	uint8_t local_ip6[16];	/* network order; zero in IPv4 rows */
	uint8_t remote_ip6[16];
};

/* Fills out with up to max open connections (like `ss`); returns how many. */
int dn_stack_conns(struct dn_stack *st, struct dn_conn_info *out, int max);

struct dn_fc;

/* Waits for work without leaving C: spins on the cheap "anything there?"
 * looks at the link and at n fast channels until one has something, or
 * max_ns pass, giving the core away every yield_ns (0: never). Returns 1
 * when work is waiting, 0 when none came. A look costs tens of
 * nanoseconds here against a microsecond or more for a pass of the Python
 * poller, so work is found sooner and an idle spin costs less. */
int dn_stack_spin(struct dn_stack *st, struct dn_fc *const *fcs, int n,
	uint32_t max_ns, uint32_t yield_ns);

/* Going to sleep on dn_stack_fileno() with the poller's n fast channels:
 * arms the link and every channel in one call. Returns the ms until lwIP's
 * next timer (-1: none pending) when the caller may sleep, or -2 when work
 * is already waiting (all disarmed again: poll instead). */
int dn_stack_sleep(struct dn_stack *st, struct dn_fc *const *fcs, int n);
/* Awake again (the doorbell rang, or the caller stopped waiting): cancels
 * the sleep flags of the link and the channels, drains the eventfd. */
void dn_stack_wake(struct dn_stack *st, struct dn_fc *const *fcs, int n);

/* The endpoint at ip is gone (its process died): every TCP connection to
 * it ends now with DN_EV_ERROR ECONNRESET, as a reset from it would. An ip
 * of 0 ends every connection and drops what is still sent: the master
 * itself is gone. */
int dn_reset_peer(struct dn_stack *st, uint32_t ip);
/* SO_KEEPALIVE. */
int dn_set_keepalive(struct dn_stack *st, int id, int on);
/* TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (milliseconds, not the kernel's
 * seconds; 0 leaves a value as it is). A connection whose probes all go
 * unanswered ends with ETIMEDOUT, as in the kernel. */
int dn_set_keepalive_times(struct dn_stack *st, int id, uint32_t idle_ms,
	uint32_t interval_ms, uint32_t count);

/* Bytes queued in lwIP and not yet acknowledged by the peer. */
int dn_send_queued(struct dn_stack *st, int id);

/* UDP */
int dn_udp_bind(struct dn_stack *st, uint32_t ip, uint16_t port);
int dn_udp_sendto(struct dn_stack *st, int id, const void *buf, uint32_t len,
	uint32_t ip, uint16_t port);
int dn_udp_recvfrom(struct dn_stack *st, int id, void *buf, uint32_t len,
	uint32_t *ip, uint16_t *port);

/* Sends a raw Ethernet frame as given (diagnostics and tests: what the
 * switch does with malformed or spoofed frames). */
int dn_send_frame(struct dn_stack *st, const void *frame, uint32_t len);

/* ICMP echo request; the reply comes as DN_EV_PING_REPLY. */
int dn_ping(struct dn_stack *st, uint32_t ip, uint16_t seq, uint16_t size);

/* IPv6: the IPv4 calls above for the connection's other family, with
 * the same errors, plus EAFNOSUPPORT on an IPv4-only stack or connection.
 * A listener or UDP endpoint on :: (all zero) takes IPv6 only, and may
 * share its port with an IPv4 one. */
int dn_listen6(struct dn_stack *st, const uint8_t *ip6,
	uint16_t port, int backlog);
int dn_connect6(struct dn_stack *st, const uint8_t *ip6,
	uint16_t port);
int dn_udp_bind6(struct dn_stack *st, const uint8_t *ip6, uint16_t port);
int dn_udp_sendto6(struct dn_stack *st, int id, const void *buf,
	uint32_t len, const uint8_t *ip6, uint16_t port);
/* The datagram's source in ip6 and port. */
int dn_udp_recvfrom6(struct dn_stack *st, int id, void *buf, uint32_t len,
	uint8_t *ip6, uint16_t *port);
/* The local (peer 0) or remote (peer 1) address of an IPv6 connection. */
int dn_names6(struct dn_stack *st, int id, int peer, uint8_t *ip6,
	uint16_t *port);
/* 4 or 6, for any connection id that is valid (closed ones too). */
int dn_conn_family(struct dn_stack *st, int id);
/* dn_reset_peer for an endpoint's IPv6 address (not 0: dn_reset_peer(st,
 * 0) ends every connection of both families). */
int dn_reset_peer6(struct dn_stack *st, const uint8_t *ip6);
/* ICMPv6 echo request; the reply comes as DN_EV_PING_REPLY as for IPv4
 * (one sequence space for both). */
int dn_ping6(struct dn_stack *st, const uint8_t *ip6, uint16_t seq,
	uint16_t size);
/* The stack's IPv6 address (16 bytes): 0, or EAFNOSUPPORT when it has
 * none. */
int dn_stack_ip6(struct dn_stack *st, uint8_t *ip6);

/* Bytes received on TCP connection id and not yet read; 0 for anything
 * else (a closed, free or UDP id). */
int dn_recv_queued(struct dn_stack *st, int id);
/* The largest connection id plus one. */
int dn_stack_max_conns(const struct dn_stack *st);

/* What the transports' per-message path (the _fcpath extension) calls on
 * a stack: _lib hands it this table, so that it calls the one copy of
 * lwIP that _lib holds, with no symbol exported for it. */
struct dn_stack_calls {
	int (*poll)(struct dn_stack *st, struct dn_event *ev, int max);
	int (*recv_queued)(struct dn_stack *st, int id);
	int (*recv)(struct dn_stack *st, int id, void *buf, uint32_t len);
	int (*send)(struct dn_stack *st, int id, const void *buf,
		uint32_t len);
	int (*max_conns)(const struct dn_stack *st);
	int (*spin)(struct dn_stack *st, struct dn_fc *const *fcs, int n,
		uint32_t max_ns, uint32_t yield_ns);
	void (*wake)(struct dn_stack *st, struct dn_fc *const *fcs, int n);
};
const struct dn_stack_calls *dn_stack_calls(void);

#endif /* DN_STACK_H */
