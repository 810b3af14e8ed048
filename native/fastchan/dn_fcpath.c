/*
 * aiodocknet._fcpath: the per-message path of DockNet's stream transports,
 * written against CPython's C API. This file has the module, the poller's
 * state, the transport's core and the pass over fast channels;
 * dn_lwpath.c the pass over an lwIP stack's events (dn_pypath.h).
 *
 * Everything else about fast channels goes through cffi (fastchan.py). A
 * small message cost about 25 Python calls through that path: the poller's
 * pass, the transport's read, the channel's read, the slice that makes the
 * bytes, the write and the kick. That cost, not the ring, set the limit on a
 * Python ping-pong. Here the common case makes one call into Python per
 * message: the protocol's data_received(). The bytes object is filled
 * from the ring (or lwIP's pbufs) directly, and a write that fits goes
 * straight onto the ring (or into lwIP). A buffered protocol (TLS's:
 * uvloop's SSLProtocol is one) gets the bytes read straight into the buffer
 * it gives, for two calls into it per message. Anything out of the
 * ordinary goes back to the Python transport, which stays the one place
 * that knows the asyncio contract: end of stream, reset, a paused reader, a
 * full ring, rate limits, errors.
 *
 * Which way each message may go follows from the transport's state, a set
 * of DN_TS_* bits that lives here (the Python transport reads and writes
 * it as `state`, through this object): there is no second copy to keep in
 * step. `reader` is the protocol's data_received, or `get_buffer` and
 * `buffer_updated` a buffered protocol's, taken once per protocol.
 */
#include "dn_pypath.h"

#include <structmember.h>
#include <time.h>

#include "dn_clock.h"

#define PollerState_Type dn_pypath_poller_type
#define TransportCore_Type dn_pypath_core_type

static double
dn_fcpath_monotonic(void)
{
	return dn_clock_s();
}

/* ---- PollerState ---- */

static int
PollerState_init(PollerState *self, PyObject *args, PyObject *kwds)
{
	PyObject *kick;

	if (!PyArg_ParseTuple(args, "O:PollerState", &kick))
		return -1;
	if (!PyCallable_Check(kick)) {
		PyErr_SetString(PyExc_TypeError, "kick must be callable");
		return -1;
	}
	Py_INCREF(kick);
	Py_XSETREF(self->kick, kick);
	return 0;
}

static int
PollerState_traverse(PollerState *self, visitproc visit, void *arg)
{
	Py_VISIT(self->kick);
	return 0;
}

static int
PollerState_clear(PollerState *self)
{
	Py_CLEAR(self->kick);
	return 0;
}

static void
PollerState_dealloc(PollerState *self)
{
	PyObject_GC_UnTrack(self);
	PollerState_clear(self);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef PollerState_members[] = {
	{"scheduled", T_BOOL, offsetof(PollerState, scheduled), 0,
	 "a pass of the poller is due (call_soon'd or running)"},
	{"sleeping", T_BOOL, offsetof(PollerState, sleeping), 0,
	 "the poller waits on the doorbell"},
	{"active", T_DOUBLE, offsetof(PollerState, active), 0,
	 "time.monotonic() of the last send or receive"},
	{NULL}
};

PyTypeObject PollerState_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "aiodocknet._fcpath.PollerState",
	.tp_doc = "What a transport's write needs to know about its poller.",
	.tp_basicsize = sizeof(PollerState),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)PollerState_init,
	.tp_traverse = (traverseproc)PollerState_traverse,
	.tp_clear = (inquiry)PollerState_clear,
	.tp_dealloc = (destructor)PollerState_dealloc,
	.tp_members = PollerState_members,
};

/* A send just went out: the poller must look soon (and spin, since the
 * answer is likely on its way). A pass already due covers it; otherwise
 * the poller's own kick() decides. */
static int
dn_fcpath_kick(PollerState *ps)
{
	PyObject *res;

	ps->active = dn_fcpath_monotonic();
	if (ps->scheduled && !ps->sleeping)
		return 0;
	res = PyObject_CallNoArgs(ps->kick);
	if (res == NULL)
		return -1;
	Py_DECREF(res);
	return 0;
}

/* ---- TransportCore ---- */

/* TransportCore(fc_address, transport, poller) for a fast channel, or
 * TransportCore(stack_core, transport, poller, conn) for a TCP connection
 * of a stack. */
static int
TransportCore_init(TransportCore *self, PyObject *args, PyObject *kwds)
{
	PyObject *target, *transport;
	PollerState *poller;
	int conn = -1;

	if (!PyArg_ParseTuple(args, "OOO!|i:TransportCore", &target,
	    &transport, &PollerState_Type, &poller, &conn))
		return -1;
	if (PyObject_TypeCheck(target, &dn_lwpath_stack_type)) {
		StackCore *sc = (StackCore *)target;

		if (sc->st == NULL) {
			PyErr_SetString(PyExc_ValueError, "the stack is closed");
			return -1;
		}
		if (conn < 0 || (uint32_t)conn >= sc->max_conns) {
			PyErr_Format(PyExc_ValueError,
				"no connection %d on this stack", conn);
			return -1;
		}
		Py_INCREF(sc);
		Py_XSETREF(self->stack, sc);
		self->fc = NULL;
		self->conn = conn;
	} else {
		unsigned long long addr = PyLong_AsUnsignedLongLong(target);

		if (addr == (unsigned long long)-1 && PyErr_Occurred())
			return -1;
		if (addr == 0) {
			PyErr_SetString(PyExc_ValueError, "no fast channel");
			return -1;
		}
		Py_CLEAR(self->stack);
		self->fc = (struct dn_fc *)(uintptr_t)addr;
		self->conn = -1;
	}
	Py_INCREF(transport);
	Py_XSETREF(self->transport, transport);
	Py_INCREF(poller);
	Py_XSETREF(self->poller, poller);
	return 0;
}

/* The connection's three calls, whichever kind it is. A stack's core
 * also checks that the stack is still open: SlaveStack.close() detaches
 * it before freeing the stack. */
static inline int
dn_pypath_live(const TransportCore *self)
{
	return self->fc != NULL || (self->stack != NULL && self->stack->st != NULL);
}

static inline int
dn_pypath_queued(TransportCore *self)
{
	if (self->fc != NULL)
		return (int)dn_fc_rx_queued(self->fc);
	return self->stack->calls->recv_queued(self->stack->st, self->conn);
}

static inline int
dn_pypath_read(TransportCore *self, void *buf, uint32_t len)
{
	if (self->fc != NULL)
		return dn_fc_read(self->fc, buf, len);
	return self->stack->calls->recv(self->stack->st, self->conn, buf, len);
}

static inline int
dn_pypath_write(TransportCore *self, const void *buf, uint32_t len)
{
	if (self->fc != NULL)
		return dn_fc_write(self->fc, buf, len);
	return self->stack->calls->send(self->stack->st, self->conn, buf, len);
}

static int
TransportCore_traverse(TransportCore *self, visitproc visit, void *arg)
{
	Py_VISIT(self->transport);
	Py_VISIT(self->buffer);
	Py_VISIT(self->reader);
	Py_VISIT(self->get_buffer);
	Py_VISIT(self->buffer_updated);
	Py_VISIT(self->poller);
	Py_VISIT(self->stack);
	return 0;
}

static int
TransportCore_clear(TransportCore *self)
{
	Py_CLEAR(self->transport);
	Py_CLEAR(self->buffer);
	Py_CLEAR(self->reader);
	Py_CLEAR(self->get_buffer);
	Py_CLEAR(self->buffer_updated);
	Py_CLEAR(self->poller);
	Py_CLEAR(self->stack);
	return 0;
}

static void
TransportCore_dealloc(TransportCore *self)
{
	PyObject_GC_UnTrack(self);
	TransportCore_clear(self);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The transport's write(): what fits goes onto the ring here, the rest
 * (and every unusual case) through the transport's Python write path. */
static PyObject *
TransportCore_write(TransportCore *self, PyObject *data)
{
	const char *buf = NULL;
	Py_ssize_t len = 0;
	int n;

	if (self->transport == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "the transport is gone");
		return NULL;
	}
	/* Exact bytes and bytearray only: their storage cannot move while the
	 * GIL is held, so no buffer export is needed. */
	if (PyBytes_CheckExact(data)) {
		buf = PyBytes_AS_STRING(data);
		len = PyBytes_GET_SIZE(data);
	} else if (PyByteArray_CheckExact(data)) {
		buf = PyByteArray_AS_STRING(data);
		len = PyByteArray_GET_SIZE(data);
	}
	if (len == 0 || len > INT32_MAX || !dn_pypath_live(self) ||
	    (self->state & DN_TS_WRITE_SLOW) || self->buffer == NULL ||
	    PyByteArray_GET_SIZE(self->buffer) != 0)
		return PyObject_CallMethod(self->transport, "_write_slow", "O",
			data);
	n = dn_pypath_write(self, buf, (uint32_t)len);
	if (n < 0)	/* the Python path meets the same error and closes */
		return PyObject_CallMethod(self->transport, "_write_slow", "O",
			data);
	if (dn_fcpath_kick(self->poller) < 0)
		return NULL;
	if (n < len)
		return PyObject_CallMethod(self->transport, "_write_rest",
			"On", data, (Py_ssize_t)n);
	Py_RETURN_NONE;
}

/* A call into the transport or its protocol raised (the exception is
 * set): the transport's one fatal-error path takes it, which reports it to
 * the loop and closes this transport only. Returns -1 for SystemExit and
 * KeyboardInterrupt (they stop the loop, as from the Python path), else 0:
 * the other channels of the pass are still served. */
int
dn_pypath_contain(TransportCore *self, const char *message)
{
	PyObject *type, *value, *tb, *res;

	if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
	    PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
		return -1;
	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (tb != NULL)
		PyException_SetTraceback(value, tb);
	res = PyObject_CallMethod(self->transport, "_fatal_error", "Os",
		value, message);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	if (res != NULL) {
		Py_DECREF(res);
		return 0;
	}
	if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
	    PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
		return -1;
	/* The fatal-error path itself failed: said, and the pass goes on. */
	PyErr_WriteUnraisable(self->transport);
	return 0;
}

/* Reads up to avail bytes into the buffer a buffered protocol gives and
 * tells it how many. Returns the bytes given (0: the ring said otherwise,
 * the Python path is to look), or -1 with the protocol's exception set. */
static Py_ssize_t
dn_fcpath_deliver_buffered(TransportCore *self, uint32_t avail)
{
	PyObject *get_buffer = self->get_buffer;
	PyObject *updated = self->buffer_updated;
	PyObject *hint, *buf, *nbytes, *res;
	Py_buffer view;
	Py_ssize_t n;
	int r;

	/* The protocol may change underneath (set_protocol from a callback). */
	Py_INCREF(get_buffer);
	Py_INCREF(updated);
	n = -1;
	hint = PyLong_FromUnsignedLong(avail);
	if (hint == NULL)
		goto out;
	buf = PyObject_CallOneArg(get_buffer, hint);
	Py_DECREF(hint);
	if (buf == NULL)
		goto out;
	r = PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE);
	Py_DECREF(buf);
	if (r < 0)
		goto out;
	if (view.len == 0) {
		PyBuffer_Release(&view);
		PyErr_SetString(PyExc_RuntimeError,
			"get_buffer() returned an empty buffer");
		goto out;
	}
	n = view.len < (Py_ssize_t)avail ? view.len : (Py_ssize_t)avail;
	r = dn_pypath_live(self) ? dn_pypath_read(self, view.buf, (uint32_t)n) : -1;
	PyBuffer_Release(&view);
	if (r != (int)n) {
		n = 0;	/* a reset came in between */
		goto out;
	}
	nbytes = PyLong_FromSsize_t(n);
	if (nbytes == NULL) {
		n = -1;
		goto out;
	}
	res = PyObject_CallOneArg(updated, nbytes);
	Py_DECREF(nbytes);
	if (res == NULL)
		n = -1;
	else
		Py_DECREF(res);
out:
	Py_DECREF(get_buffer);
	Py_DECREF(updated);
	return n;
}

/* Reads what is waiting into bytes objects for the protocol. Returns 0,
 * or -1 with SystemExit or KeyboardInterrupt set. */
int
dn_pypath_deliver(TransportCore *self)
{
	PyObject *res;
	int first = 1;

	for (;;) {
		uint32_t avail;
		PyObject *bytes, *reader;
		int r;

		if (!dn_pypath_live(self) || !dn_pypath_fast_read(self))
			return 0;	/* closed or paused by the protocol */
		r = dn_pypath_queued(self);
		avail = r > 0 ? (uint32_t)r : 0;
		if (avail == 0) {
			if (!first)
				return 0;
			/* End of stream: the Python path tells the protocol. */
			res = PyObject_CallMethod(self->transport, "_read_ready",
				NULL);
			break;
		}
		if (avail > DN_PYPATH_READ_MAX)
			avail = DN_PYPATH_READ_MAX;
		if (self->state & DN_TS_BUFFERED) {
			Py_ssize_t n = dn_fcpath_deliver_buffered(self, avail);

			if (n < 0) {
				res = NULL;
				break;
			}
			if (n == 0) {
				/* A reset came in between: as below. */
				res = PyObject_CallMethod(self->transport,
					"_read_ready", NULL);
				break;
			}
			if (n == (Py_ssize_t)avail && avail < DN_PYPATH_READ_MAX)
				return 0;
			first = 0;	/* a smaller buffer, or more waiting */
			continue;
		}
		bytes = PyBytes_FromStringAndSize(NULL, avail);
		if (bytes == NULL)
			return -1;
		r = dn_pypath_read(self, PyBytes_AS_STRING(bytes), avail);
		if (r != (int)avail) {
			/* A reset came in between: the Python path reports it. */
			Py_DECREF(bytes);
			res = PyObject_CallMethod(self->transport, "_read_ready",
				NULL);
			break;
		}
		reader = self->reader;
		Py_INCREF(reader);	/* the protocol may change underneath */
		res = PyObject_CallOneArg(reader, bytes);
		Py_DECREF(reader);
		Py_DECREF(bytes);
		if (res == NULL)
			break;
		Py_DECREF(res);
		if (avail < DN_PYPATH_READ_MAX)
			return 0;	/* that was all: the poller looks again */
		first = 0;
	}
	if (res != NULL) {
		Py_DECREF(res);
		return 0;
	}
	/* The protocol raised: the transport closes as asyncio's do. */
	return dn_pypath_contain(self,
		"Fatal error: protocol.data_received() call failed.");
}

static PyObject *
TransportCore_detach(TransportCore *self, PyObject *unused)
{
	/* Before the channel is unmapped or the connection closed: nothing
	 * here may touch it again (a stack reuses the id). */
	self->fc = NULL;
	Py_CLEAR(self->stack);
	Py_CLEAR(self->reader);
	Py_CLEAR(self->get_buffer);
	Py_CLEAR(self->buffer_updated);
	Py_CLEAR(self->buffer);
	Py_RETURN_NONE;
}

static PyObject *
TransportCore_get_reader(TransportCore *self, void *closure)
{
	return Py_NewRef(self->reader != NULL ? self->reader : Py_None);
}

static int
TransportCore_set_reader(TransportCore *self, PyObject *value, void *closure)
{
	if (value == NULL || value == Py_None || !dn_pypath_attached(self)) {
		Py_CLEAR(self->reader);
		return 0;
	}
	if (!PyCallable_Check(value)) {
		PyErr_SetString(PyExc_TypeError, "reader must be callable");
		return -1;
	}
	Py_INCREF(value);
	Py_XSETREF(self->reader, value);
	return 0;
}

static PyObject *
TransportCore_get_buffered(TransportCore *self, void *closure)
{
	if (self->get_buffer == NULL || self->buffer_updated == NULL)
		Py_RETURN_NONE;
	return PyTuple_Pack(2, self->get_buffer, self->buffer_updated);
}

static int
TransportCore_set_buffered(TransportCore *self, PyObject *value,
    void *closure)
{
	PyObject *get_buffer, *updated;

	if (value == NULL || value == Py_None || !dn_pypath_attached(self)) {
		Py_CLEAR(self->get_buffer);
		Py_CLEAR(self->buffer_updated);
		return 0;
	}
	if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 2 ||
	    !PyCallable_Check(PyTuple_GET_ITEM(value, 0)) ||
	    !PyCallable_Check(PyTuple_GET_ITEM(value, 1))) {
		PyErr_SetString(PyExc_TypeError, "buffered must be None or "
			"(get_buffer, buffer_updated)");
		return -1;
	}
	get_buffer = PyTuple_GET_ITEM(value, 0);
	updated = PyTuple_GET_ITEM(value, 1);
	Py_INCREF(get_buffer);
	Py_INCREF(updated);
	Py_XSETREF(self->get_buffer, get_buffer);
	Py_XSETREF(self->buffer_updated, updated);
	return 0;
}

static PyObject *
TransportCore_get_state(TransportCore *self, void *closure)
{
	return PyLong_FromUnsignedLong(self->state);
}

static int
TransportCore_set_state(TransportCore *self, PyObject *value, void *closure)
{
	unsigned long state;

	if (value == NULL) {
		PyErr_SetString(PyExc_TypeError, "state cannot be deleted");
		return -1;
	}
	state = PyLong_AsUnsignedLong(value);
	if (state == (unsigned long)-1 && PyErr_Occurred())
		return -1;
	if (state > UINT_MAX) {
		PyErr_SetString(PyExc_ValueError, "state out of range");
		return -1;
	}
	self->state = (unsigned int)state;
	/* The channel's own reading flag (it decides whether waiting bytes
	 * wake us) follows from the state, here and nowhere else. Once the
	 * transport is closed the channel is being let go: left alone. */
	if (self->fc != NULL && !(self->state & DN_TS_CLOSED))
		dn_fc_want_read(self->fc, !(self->state & DN_TS_NOT_READING));
	return 0;
}

static PyObject *
TransportCore_get_buffer(TransportCore *self, void *closure)
{
	return Py_NewRef(self->buffer != NULL ? self->buffer : Py_None);
}

static int
TransportCore_set_buffer(TransportCore *self, PyObject *value, void *closure)
{
	if (value == NULL || value == Py_None) {
		Py_CLEAR(self->buffer);
		return 0;
	}
	if (!PyByteArray_CheckExact(value)) {
		PyErr_SetString(PyExc_TypeError, "buffer must be a bytearray");
		return -1;
	}
	Py_INCREF(value);
	Py_XSETREF(self->buffer, value);
	return 0;
}

static PyMethodDef TransportCore_methods[] = {
	{"write", (PyCFunction)TransportCore_write, METH_O,
	 "The transport's write(): onto the ring if it fits, else the "
	 "transport's _write_slow()/_write_rest()."},
	{"detach", (PyCFunction)TransportCore_detach, METH_NOARGS,
	 "Forget the channel (before it is closed)."},
	{NULL}
};

static PyGetSetDef TransportCore_getset[] = {
	{"reader", (getter)TransportCore_get_reader,
	 (setter)TransportCore_set_reader,
	 "data_received of the protocol while bytes may go straight to it, "
	 "else None", NULL},
	{"buffered", (getter)TransportCore_get_buffered,
	 (setter)TransportCore_set_buffered,
	 "(get_buffer, buffer_updated) of a buffered protocol while bytes may "
	 "go straight into its buffer, else None", NULL},
	{"state", (getter)TransportCore_get_state,
	 (setter)TransportCore_set_state,
	 "the transport's state (DN_TS_* bits, TransportState in Python)",
	 NULL},
	{"buffer", (getter)TransportCore_get_buffer,
	 (setter)TransportCore_set_buffer,
	 "the transport's write buffer: a write waits behind it", NULL},
	{NULL}
};

PyTypeObject TransportCore_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "aiodocknet._fcpath.TransportCore",
	.tp_doc = "TransportCore(fc_address, transport, poller_state), or "
		"TransportCore(stack_core, transport, poller_state, conn): the "
		"per-message half of a stream transport.",
	.tp_basicsize = sizeof(TransportCore),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)TransportCore_init,
	.tp_traverse = (traverseproc)TransportCore_traverse,
	.tp_clear = (inquiry)TransportCore_clear,
	.tp_dealloc = (destructor)TransportCore_dealloc,
	.tp_methods = TransportCore_methods,
	.tp_getset = TransportCore_getset,
};

/* ---- the poller's pass over its channels ---- */

long
dn_fcpath_pump_cores(PyObject *cores)
{
	Py_ssize_t i;
	long acted = 0;

	if (!PyList_CheckExact(cores)) {
		PyErr_SetString(PyExc_TypeError, "pump() takes a list");
		return -1;
	}
	/* Callbacks may add or remove channels: the list is read afresh at
	 * each step, and a channel moved past is seen on the next pass. */
	for (i = 0; i < PyList_GET_SIZE(cores); i++) {
		PyObject *item = PyList_GET_ITEM(cores, i);
		TransportCore *core;
		int bits, rc;

		if (!PyObject_TypeCheck(item, &TransportCore_Type)) {
			PyErr_SetString(PyExc_TypeError,
				"pump() takes TransportCore objects");
			return -1;
		}
		core = (TransportCore *)item;
		if (core->fc == NULL || core->transport == NULL)
			continue;
		bits = dn_fc_ready(core->fc);
		if (bits == 0)
			continue;
		acted++;
		Py_INCREF(core);
		if (bits == DN_FC_READABLE && dn_pypath_fast_read(core)) {
			rc = dn_pypath_deliver(core);
		} else {
			PyObject *res = PyObject_CallMethod(core->transport,
				"_fc_ready", "i", bits);

			if (res != NULL) {
				Py_DECREF(res);
				rc = 0;
			} else {
				rc = dn_pypath_contain(core, "Fatal error: "
					"fast channel event handler failed.");
			}
		}
		Py_DECREF(core);
		if (rc < 0)
			return -1;
	}
	return acted;
}

static PyObject *
dn_fcpath_pump(PyObject *module, PyObject *cores)
{
	long acted = dn_fcpath_pump_cores(cores);

	return acted < 0 ? NULL : PyLong_FromLong(acted);
}

static PyMethodDef dn_fcpath_methods[] = {
	{"pump", dn_fcpath_pump, METH_O,
	 "pump(cores) -> int: one pass over a poller's channels; delivers "
	 "what is ready and returns how many channels had something."},
	{NULL}
};

static struct PyModuleDef dn_fcpath_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "aiodocknet._fcpath",
	.m_doc = "The per-message path of DockNet's stream transports.",
	.m_size = -1,
	.m_methods = dn_fcpath_methods,
};

PyMODINIT_FUNC
PyInit__fcpath(void)
{
	PyObject *m;

	if (PyType_Ready(&PollerState_Type) < 0 ||
	    PyType_Ready(&TransportCore_Type) < 0 ||
	    PyType_Ready(&dn_lwpath_stack_type) < 0 ||
	    PyType_Ready(&dn_pollpath_type) < 0)
		return NULL;
	m = PyModule_Create(&dn_fcpath_module);
	if (m == NULL)
		return NULL;
	if (PyModule_AddType(m, &PollerState_Type) < 0 ||
	    PyModule_AddType(m, &TransportCore_Type) < 0 ||
	    PyModule_AddType(m, &dn_lwpath_stack_type) < 0 ||
	    PyModule_AddType(m, &dn_pollpath_type) < 0 ||
	    PyModule_AddIntConstant(m, "TS_STARTED", DN_TS_STARTED) < 0 ||
	    PyModule_AddIntConstant(m, "TS_READ_PAUSED", DN_TS_READ_PAUSED) < 0 ||
	    PyModule_AddIntConstant(m, "TS_READ_HELD", DN_TS_READ_HELD) < 0 ||
	    PyModule_AddIntConstant(m, "TS_PEER_EOF", DN_TS_PEER_EOF) < 0 ||
	    PyModule_AddIntConstant(m, "TS_WRITE_EOF", DN_TS_WRITE_EOF) < 0 ||
	    PyModule_AddIntConstant(m, "TS_CLOSING", DN_TS_CLOSING) < 0 ||
	    PyModule_AddIntConstant(m, "TS_CLOSED", DN_TS_CLOSED) < 0 ||
	    PyModule_AddIntConstant(m, "TS_BUFFERED", DN_TS_BUFFERED) < 0 ||
	    PyModule_AddIntConstant(m, "TS_INGRESS_LIMIT",
		DN_TS_INGRESS_LIMIT) < 0 ||
	    PyModule_AddIntConstant(m, "TS_EGRESS_LIMIT",
		DN_TS_EGRESS_LIMIT) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
