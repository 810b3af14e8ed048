/*
 * Fast channels: a TCP-like byte stream between two processes on one host
 * over shared memory, for connections whose ends are endpoints of the same
 * master (the master brokers them; see aiodocknet/fastchan.py).
 *
 * A region (a memfd) holds two single-producer/single-consumer byte rings,
 * one per direction, and the flags that carry half-close and reset. Each
 * side sleeps on an eventfd of its own; the other side writes it only when
 * the sleeper said so (the doorbell pattern of the master's links), so
 * while bytes flow no syscall is made.
 */
#ifndef DN_FASTCHAN_H
#define DN_FASTCHAN_H

#include "dn_export.h"

#include <stdint.h>

struct dn_fc;

/* Lays out a fresh region in memfd (sized here) with rings of ring_size
 * bytes each (a power of two, 4 KiB .. 64 MiB). */
int dn_fc_init(int memfd, uint32_t ring_size);

/* Maps the region as side 0 or 1. self_efd is this side's eventfd (the
 * peer writes it), peer_efd the other's. The fds stay the caller's. */
int dn_fc_open(int memfd, int side, int self_efd, int peer_efd,
	struct dn_fc **out);
void dn_fc_close(struct dn_fc *fc);

/* Bytes taken (0 when the ring is full: DN_FC_WRITABLE follows), -EPIPE
 * after shutdown, -ECONNRESET after a reset. */
DN_EXPORT int dn_fc_write(struct dn_fc *fc, const void *buf, uint32_t len);
/* Bytes read, 0 at end of stream, -EAGAIN when empty, -ECONNRESET. */
DN_EXPORT int dn_fc_read(struct dn_fc *fc, void *buf, uint32_t len);
/* Half-close: the peer reads what is queued, then end of stream. */
DN_EXPORT int dn_fc_shutdown(struct dn_fc *fc);
/* Abort: both sides see -ECONNRESET from now on. */
void dn_fc_reset(struct dn_fc *fc);

#define DN_FC_READABLE 1	/* bytes, end of stream or reset to see */
#define DN_FC_WRITABLE 2	/* room again after a full ring (until the
				 * next dn_fc_write, which may be empty) */

/* Whether this side wants to read (1 at open). While it does not (its
 * protocol paused reading, or a rate limit holds it back) waiting bytes are
 * not reported READABLE, and a sleeping reader is not rung for them: a
 * paused reader sleeps. A reset is reported all the same. */
void dn_fc_want_read(struct dn_fc *fc, int on);

/* What is ready now (DN_FC_* bits), without waiting. */
int dn_fc_ready(struct dn_fc *fc);
/* Going to sleep on dn_fc_fileno(): returns the ready bits if something
 * is already there (do not sleep), 0 if the peer will ring. */
int dn_fc_arm(struct dn_fc *fc);
void dn_fc_disarm(struct dn_fc *fc);
int dn_fc_fileno(const struct dn_fc *fc);

/* A poller's channels at once (dn_stack_sleep and dn_stack_wake): arm
 * all (1: may sleep; 0: one had something, all are disarmed again); disarm
 * all (the flags only: the channels share the endpoint's eventfd, which
 * the poller drains once). */
int dn_fc_arm_set(struct dn_fc *const *fcs, int n);
void dn_fc_disarm_set(struct dn_fc *const *fcs, int n);

/* Bytes waiting to be read / queued and not yet read by the peer. */
uint32_t dn_fc_rx_queued(const struct dn_fc *fc);
uint32_t dn_fc_tx_queued(const struct dn_fc *fc);

/* The master's read-only view of a channel it brokered: bytes each way
 * and which sides have closed, so it can count and release channels. */
struct dn_fc_watch;
struct dn_fc_stats {
	uint64_t bytes[2];	/* written by side 0 / side 1 */
	uint64_t writes[2];	/* write calls that put bytes in, each side */
	uint32_t closed[2];
	uint32_t eof[2];
	uint32_t reset;
	uint32_t ring_size;
};

int dn_fc_watch_open(int memfd, struct dn_fc_watch **out);
void dn_fc_watch_read(const struct dn_fc_watch *w, struct dn_fc_stats *out);
/* Resets the channel for both sides (the master's, for a side that will
 * never serve it); the caller rings the side still there. */
void dn_fc_watch_reset(struct dn_fc_watch *w);
void dn_fc_watch_close(struct dn_fc_watch *w);

#endif /* DN_FASTCHAN_H */
