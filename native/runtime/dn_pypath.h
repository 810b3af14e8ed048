/*
 * The transports' per-message path in CPython's C API (the _fcpath
 * extension): the types its two halves share. dn_fcpath.c has the module,
 * the poller's state and the transport's core, and the pass over fast
 * channels; dn_lwpath.c the pass over an lwIP stack's events. Private to
 * the extension.
 *
 * A TransportCore carries one connection: a fast channel (fc) or a TCP
 * connection of a stack (stack, conn). Its read, write and queued calls go
 * to whichever it has; everything else about it is the same.
 */
#ifndef DN_PYPATH_H
#define DN_PYPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "dn_fastchan.h"
#include "dn_stack.h"

/* The largest single data_received(), as on the Python path. */
#define DN_PYPATH_READ_MAX (256 * 1024)
/* Events taken from a stack per pass, as SlaveStack.poll() takes. */
#define DN_LWPATH_EVENTS 512

/* A stream transport's state (aiodocknet.transports.base.TransportState
 * names the same bits; it takes their values from this module). */
#define DN_TS_STARTED		0x001	/* connection_made has run */
#define DN_TS_READ_PAUSED	0x002	/* pause_reading() */
#define DN_TS_READ_HELD		0x004	/* the ingress limit holds reads */
#define DN_TS_PEER_EOF		0x008	/* end of stream came in */
#define DN_TS_WRITE_EOF		0x010	/* write_eof() was called */
#define DN_TS_CLOSING		0x020	/* close(), abort() or a fatal error */
#define DN_TS_CLOSED		0x040	/* connection_lost() has been called */
#define DN_TS_BUFFERED		0x080	/* the protocol is a BufferedProtocol */
#define DN_TS_INGRESS_LIMIT	0x100	/* every read is counted (a limit) */
#define DN_TS_EGRESS_LIMIT	0x200	/* every write is counted (a limit) */

/* Bits that send a read through the Python transport (STARTED must be
 * set, the others clear; BUFFERED only says which way the bytes go). */
#define DN_TS_READ_MASK (DN_TS_STARTED | DN_TS_READ_PAUSED | DN_TS_READ_HELD | \
	DN_TS_PEER_EOF | DN_TS_CLOSING | DN_TS_CLOSED | DN_TS_INGRESS_LIMIT)
/* Any of these sends a write through the Python transport. */
#define DN_TS_WRITE_SLOW (DN_TS_WRITE_EOF | DN_TS_CLOSING | DN_TS_CLOSED | \
	DN_TS_EGRESS_LIMIT)
/* Any of these: bytes waiting must not count as readable (nor wake us). */
#define DN_TS_NOT_READING (DN_TS_READ_PAUSED | DN_TS_READ_HELD | \
	DN_TS_CLOSING | DN_TS_CLOSED)

/* The poller's state that a write must see: whether a pass is already
 * due, whether the poller sleeps, and when the connection was last busy
 * (the poller spins for a while after that). */
typedef struct {
	PyObject_HEAD
	int scheduled;
	int sleeping;
	double active;
	PyObject *kick;	/* the poller's kick(), for when a pass is not due */
} PollerState;

/* One stack as the transports' path sees it: the calls _lib gave, and the
 * cores of the TCP connections whose reads may go the fast way, by id. */
typedef struct {
	PyObject_HEAD
	struct dn_stack *st;	/* NULL once the stack is closed */
	const struct dn_stack_calls *calls;
	uint32_t max_conns;
	PyObject **cores;	/* max_conns slots: TransportCore or NULL */
	struct dn_event ev[DN_LWPATH_EVENTS];
} StackCore;

typedef struct {
	PyObject_HEAD
	/* One of the two until the transport lets go, then neither. */
	struct dn_fc *fc;	/* a fast channel */
	StackCore *stack;	/* or connection conn of a stack */
	int conn;
	PyObject *transport;
	PyObject *buffer;	/* the transport's write buffer (a bytearray) */
	PyObject *reader;	/* the protocol's data_received, or NULL */
	PyObject *get_buffer;	/* a buffered protocol's, or NULL */
	PyObject *buffer_updated;	/* set with get_buffer */
	PollerState *poller;
	unsigned int state;	/* DN_TS_* */
} TransportCore;

extern PyTypeObject dn_pypath_poller_type;
extern PyTypeObject dn_pypath_core_type;
extern PyTypeObject dn_lwpath_stack_type;
extern PyTypeObject dn_pollpath_type;

/* Whether the transport still has its connection. */
static inline int
dn_pypath_attached(const TransportCore *self)
{
	return self->fc != NULL || self->stack != NULL;
}

/* Whether reads may take the fast way now. */
static inline int
dn_pypath_fast_read(const TransportCore *self)
{
	if (!dn_pypath_attached(self) ||
	    (self->state & DN_TS_READ_MASK) != DN_TS_STARTED)
		return 0;
	if (self->state & DN_TS_BUFFERED)
		return self->get_buffer != NULL && self->buffer_updated != NULL;
	return self->reader != NULL;
}

/* Delivers what is waiting to the protocol. 0, or -1 with SystemExit or
 * KeyboardInterrupt set (anything else the transport's fatal-error path
 * took). */
int dn_pypath_deliver(TransportCore *self);
/* The exception set came from a call for this transport: its fatal-error
 * path takes it. -1 for SystemExit and KeyboardInterrupt, else 0. */
int dn_pypath_contain(TransportCore *self, const char *message);

/* One pass over a poller's fast channels (a list of their cores):
 * delivers what is ready; how many channels had something, or -1 with
 * an exception set. */
long dn_fcpath_pump_cores(PyObject *cores);
/* One pass of a stack: runs it and delivers its events, readable ones the
 * fast way where the transport allows it, the rest through
 * dispatch(kind, id, arg). The number of events, or -1 with an exception
 * set. */
int dn_lwpath_pump(StackCore *self, PyObject *dispatch);

#endif /* DN_PYPATH_H */
