/*
 * The slave poller's turn in CPython's C API (part of the _fcpath
 * extension; dn_pypath.h).
 *
 * While traffic flows, aiodocknet/poller.py's StackPoller runs a turn on
 * every turn of the loop: passes over its fast channels and its stack, the
 * spin-or-sleep decision, a wait in C for the next bit of work, and its
 * own re-scheduling. In Python that was half a dozen calls, clock reads
 * and attribute look-ups per turn, and a service pays a turn or more for
 * every message it gets. PollerCore.poll() is the whole turn; the loop
 * calls it directly (call_soon of a C method runs no Python frame), and
 * PollerCore.on_doorbell() is the reader of the stack's eventfd. Python
 * keeps what happens once per sleep (arming, lwIP's timer) and every
 * event the passes do not deliver themselves.
 *
 * The spin policy's state (struct dn_spin) lives here; its code is
 * dn_spin.c, compiled into the extension as the channel code is. The
 * stack's calls come through _lib's table (dn_stack_calls).
 */
#include "dn_clock.h"
#include "dn_pypath.h"
#include "dn_spin.h"

#define PollerCore_Type dn_pollpath_type

typedef struct {
	PyObject_HEAD
	StackCore *stack;
	PollerState *state;
	PyObject *cores;	/* the ChannelSet's list of channel cores */
	PyObject *dispatch;	/* the events the passes do not deliver */
	PyObject *sleep;	/* sleep(now) -> bool: arm everything */
	PyObject *call_soon;	/* the loop's */
	PyObject *poll;		/* this object's poll, bound once */
	struct dn_spin spin;
	int spin_open;
	struct dn_fc **fcs;	/* the channels, for the calls over them */
	Py_ssize_t fcs_cap;
	/* The poller's tuning (poller.py has the why of each). */
	unsigned int stack_every;
	unsigned int inner;
	unsigned int slack_switch;
	unsigned int slack_channels;
	double stack_hot;
	uint32_t chunk_ns;
	uint32_t yield_switch_ns;
	uint32_t yield_channels_ns;
	unsigned long long passes;
	double stack_active;	/* when the stack last had events */
	int closed;
} PollerCore;

static int
PollerCore_init(PollerCore *self, PyObject *args, PyObject *kwds)
{
	static char *kw[] = {"stack", "state", "channels", "dispatch", "sleep",
		"call_soon", "spin_ns", "spin_misses", "stack_every",
		"stack_hot", "inner", "chunk_ns", "yield_switch_ns",
		"yield_channels_ns", "slack_switch", "slack_channels", NULL};
	PyObject *stack, *state, *cores, *dispatch, *sleep, *call_soon;
	long long spin_ns;
	int misses, every, inner, chunk, ysw, ych, ssw, sch;
	double hot;

	/* "i" and "L", not their unsigned kin: those take -1 silently. */
	if (!PyArg_ParseTupleAndKeywords(args, kwds,
	    "O!O!O!OOO$Liidiiiiii:PollerCore", kw,
	    &dn_lwpath_stack_type, &stack, &dn_pypath_poller_type, &state,
	    &PyList_Type, &cores, &dispatch, &sleep, &call_soon, &spin_ns,
	    &misses, &every, &hot, &inner, &chunk, &ysw, &ych, &ssw, &sch))
		return -1;
	if (self->stack != NULL) {
		PyErr_SetString(PyExc_RuntimeError, "PollerCore is set up once");
		return -1;
	}
	if (!PyCallable_Check(dispatch) || !PyCallable_Check(sleep) ||
	    !PyCallable_Check(call_soon)) {
		PyErr_SetString(PyExc_TypeError,
			"dispatch, sleep and call_soon must be callable");
		return -1;
	}
	if (every < 1 || inner < 1) {
		PyErr_SetString(PyExc_ValueError,
			"stack_every and inner must be at least 1");
		return -1;
	}
	if (spin_ns < 0 || misses < 0 || chunk < 0 || ysw < 0 || ych < 0 ||
	    ssw < 0 || sch < 0 || !(hot >= 0.0)) {
		PyErr_SetString(PyExc_ValueError,
			"the poller's tuning is never negative (nor NaN)");
		return -1;
	}
	self->poll = PyObject_GetAttrString((PyObject *)self, "poll");
	if (self->poll == NULL)
		return -1;
	Py_INCREF(stack);
	self->stack = (StackCore *)stack;
	Py_INCREF(state);
	self->state = (PollerState *)state;
	Py_INCREF(cores);
	self->cores = cores;
	Py_INCREF(dispatch);
	self->dispatch = dispatch;
	Py_INCREF(sleep);
	self->sleep = sleep;
	Py_INCREF(call_soon);
	self->call_soon = call_soon;
	self->stack_every = (unsigned int)every;
	self->stack_hot = hot;
	self->inner = (unsigned int)inner;
	self->chunk_ns = (uint32_t)chunk;
	self->yield_switch_ns = (uint32_t)ysw;
	self->yield_channels_ns = (uint32_t)ych;
	self->slack_switch = (unsigned int)ssw;
	self->slack_channels = (unsigned int)sch;
	dn_spin_open(&self->spin, (uint64_t)spin_ns, (unsigned int)misses, 1);
	self->spin_open = 1;
	return 0;
}

static int
PollerCore_traverse(PollerCore *self, visitproc visit, void *arg)
{
	Py_VISIT(self->stack);
	Py_VISIT(self->state);
	Py_VISIT(self->cores);
	Py_VISIT(self->dispatch);
	Py_VISIT(self->sleep);
	Py_VISIT(self->call_soon);
	Py_VISIT(self->poll);
	return 0;
}

static int
PollerCore_clear(PollerCore *self)
{
	Py_CLEAR(self->stack);
	Py_CLEAR(self->state);
	Py_CLEAR(self->cores);
	Py_CLEAR(self->dispatch);
	Py_CLEAR(self->sleep);
	Py_CLEAR(self->call_soon);
	Py_CLEAR(self->poll);
	return 0;
}

static void
PollerCore_dealloc(PollerCore *self)
{
	PyObject_GC_UnTrack(self);
	PollerCore_clear(self);
	if (self->spin_open)
		dn_spin_close(&self->spin);
	PyMem_Free(self->fcs);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static uint64_t
dn_pollpath_ns(double s)
{
	return s > 0.0 ? (uint64_t)(s * 1e9) : 0;
}

/* Whether the object can run a turn; an exception if not. */
static int
dn_pollpath_ready(PollerCore *self)
{
	if (self->stack == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "PollerCore is not set up");
		return 0;
	}
	return 1;
}

/* The channels' native halves, for a call over all of them: their count,
 * or -1 with an exception set. A core that let go of its channel is left
 * out (its mapping may be gone). */
static int
dn_pollpath_channels(PollerCore *self)
{
	Py_ssize_t i, n = PyList_GET_SIZE(self->cores);
	int k = 0;

	if (n > self->fcs_cap) {
		struct dn_fc **grown = PyMem_Realloc(self->fcs,
			(size_t)n * 2 * sizeof(*grown));

		if (grown == NULL) {
			PyErr_NoMemory();
			return -1;
		}
		self->fcs = grown;
		self->fcs_cap = n * 2;
	}
	for (i = 0; i < n && k < INT32_MAX; i++) {
		PyObject *item = PyList_GET_ITEM(self->cores, i);

		if (PyObject_TypeCheck(item, &dn_pypath_core_type) &&
		    ((TransportCore *)item)->fc != NULL)
			self->fcs[k++] = ((TransportCore *)item)->fc;
	}
	return k;
}

/* One pass: the channels, then the stack (every stack_every passes while
 * only channels are busy). 1 if anything had work, 0, or -1 with an
 * exception set. */
static int
dn_pollpath_pass(PollerCore *self, double now)
{
	int busy = 0, n;

	self->passes++;
	if (PyList_GET_SIZE(self->cores) > 0) {
		long acted = dn_fcpath_pump_cores(self->cores);

		if (acted < 0)
			return -1;
		busy = acted > 0;
	}
	/* An empty channel pass is no reason to poll the stack: in a
	 * ping-pong over a channel most passes are empty (the peer is
	 * thinking), and the stack's poll costs several channel polls. */
	if (PyList_GET_SIZE(self->cores) == 0 ||
	    self->passes % self->stack_every == 0 ||
	    now - self->stack_active < self->stack_hot) {
		n = dn_lwpath_pump(self->stack, self->dispatch);
		if (n < 0)
			return -1;
		if (n > 0) {
			self->stack_active = now;
			busy = 1;
		}
	}
	return busy;
}

/* Schedules the next turn. 0, or -1 with an exception set. */
static int
dn_pollpath_again(PollerCore *self)
{
	PyObject *res = PyObject_CallOneArg(self->call_soon, self->poll);

	if (res == NULL)
		return -1;
	Py_DECREF(res);
	return 0;
}

/* A callback raised (the loop reports it): the next turn is due all the
 * same, or the poller would stop for good. */
static PyObject *
dn_pollpath_failed(PollerCore *self)
{
	PyObject *type, *value, *tb;

	PyErr_Fetch(&type, &value, &tb);
	if (!self->closed && dn_pollpath_again(self) < 0)
		PyErr_Clear();	/* the callback's exception says more */
	PyErr_Restore(type, value, tb);
	return NULL;
}

static PyObject *
PollerCore_poll(PollerCore *self, PyObject *unused)
{
	PollerState *st;
	unsigned int i, passes;
	int channels_only, busy = 0, verdict;
	double now;

	if (!dn_pollpath_ready(self))
		return NULL;
	st = self->state;
	/* state.scheduled stays set through the turn (a write in it needs no
	 * new turn) and after, unless the poller goes to sleep. */
	if (self->closed) {
		st->scheduled = 0;
		Py_RETURN_NONE;
	}
	/* Only fast channels in flight: a few passes here before going back
	 * to the loop (a turn of it costs more than a pass: an epoll_wait).
	 * Traffic through the switch needs the master's thread to run too:
	 * one pass per turn, and the wait in C gives the core away more
	 * often. */
	now = dn_clock_s();
	channels_only = PyList_GET_SIZE(self->cores) > 0 &&
		now - self->stack_active >= self->stack_hot;
	passes = channels_only ? self->inner : 1;
	for (i = 0; i < passes; i++) {
		busy = dn_pollpath_pass(self, now);
		if (busy < 0)
			return dn_pollpath_failed(self);
		if (busy || self->closed)
			break;
		now = dn_clock_s();
	}
	if (self->closed) {
		st->scheduled = 0;
		Py_RETURN_NONE;
	}
	if (busy) {
		st->active = now;
	} else if ((verdict = dn_spin_decide(&self->spin, dn_pollpath_ns(now),
	    dn_pollpath_ns(st->active), channels_only ? self->slack_channels :
	    self->slack_switch)) != DN_SPIN_ON) {
		PyObject *arg = PyFloat_FromDouble(now), *res;
		int slept;

		res = arg == NULL ? NULL : PyObject_CallOneArg(self->sleep, arg);
		Py_XDECREF(arg);
		if (res == NULL)
			return dn_pollpath_failed(self);
		slept = PyObject_IsTrue(res);
		Py_DECREF(res);
		if (slept < 0)
			return dn_pollpath_failed(self);
		if (slept) {
			dn_spin_asleep(&self->spin, dn_pollpath_ns(now), verdict);
			Py_RETURN_NONE;
		}
	} else {
		/* Spinning with nothing to do: wait in C, where a look at
		 * every ring costs tens of nanoseconds, not a pass. What the
		 * wait found is served now, not after another turn of the
		 * loop; one pass, so the loop still turns. */
		struct dn_stack *stack = self->stack->st;
		int n = dn_pollpath_channels(self), got;

		if (n < 0)
			return dn_pollpath_failed(self);
		if (stack == NULL) {
			PyErr_SetString(PyExc_RuntimeError,
				"the stack is closed");
			return dn_pollpath_failed(self);
		}
		Py_BEGIN_ALLOW_THREADS
		got = self->stack->calls->spin(stack, self->fcs, n,
			self->chunk_ns, channels_only ?
			self->yield_channels_ns : self->yield_switch_ns);
		Py_END_ALLOW_THREADS
		if (got) {
			now = dn_clock_s();
			busy = dn_pollpath_pass(self, now);
			if (busy < 0)
				return dn_pollpath_failed(self);
			if (busy)
				st->active = now;
		}
	}
	if (self->closed)
		st->scheduled = 0;
	else if (dn_pollpath_again(self) < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* Undoes the poller's sleep: disarms the link and the channels and drains
 * the eventfd (also after a late ring while awake: the reader would fire
 * again at once). lwIP's timer stays set: it fires at most once per
 * deadline, cheaper than a cancel per wake. 0, or -1 with an exception
 * set. */
static int
dn_pollpath_wake(PollerCore *self)
{
	int n;

	if (!dn_pollpath_ready(self))
		return -1;
	if (self->stack->st == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "the stack is closed");
		return -1;
	}
	self->state->sleeping = 0;
	n = dn_pollpath_channels(self);
	if (n < 0)
		return -1;
	self->stack->calls->wake(self->stack->st, self->fcs, n);
	return 0;
}

static PyObject *
PollerCore_wake(PollerCore *self, PyObject *unused)
{
	if (dn_pollpath_wake(self) < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* The stack's eventfd is readable: the master rang, a channel's peer
 * wrote, or a late ring came while awake. */
static PyObject *
PollerCore_on_doorbell(PollerCore *self, PyObject *unused)
{
	PollerState *st;

	if (!dn_pollpath_ready(self))
		return NULL;
	st = self->state;
	if (self->closed)
		Py_RETURN_NONE;
	if (st->sleeping && self->stack->st != NULL)
		dn_spin_woke(&self->spin, dn_clock_ns());
	if (dn_pollpath_wake(self) < 0)
		return NULL;
	if (st->scheduled)
		Py_RETURN_NONE;
	st->scheduled = 1;
	return PollerCore_poll(self, NULL);
}

static PyObject *
PollerCore_close(PollerCore *self, PyObject *unused)
{
	/* Only marks it: close() may come from a callback inside a turn,
	 * which still holds what it uses. */
	self->closed = 1;
	if (self->spin_open) {
		dn_spin_close(&self->spin);
		self->spin_open = 0;
	}
	Py_RETURN_NONE;
}

static PyObject *
PollerCore_get_passes(PollerCore *self, void *closure)
{
	return PyLong_FromUnsignedLongLong(self->passes);
}

static PyObject *
PollerCore_get_stack_active(PollerCore *self, void *closure)
{
	return PyFloat_FromDouble(self->stack_active);
}

static PyObject *
PollerCore_get_closed(PollerCore *self, void *closure)
{
	return PyBool_FromLong(self->closed);
}

static PyMethodDef PollerCore_methods[] = {
	{"poll", (PyCFunction)PollerCore_poll, METH_NOARGS,
	 "One turn: passes, then spin, sleep or schedule the next turn."},
	{"on_doorbell", (PyCFunction)PollerCore_on_doorbell, METH_NOARGS,
	 "The stack's eventfd is readable: wake and take a turn."},
	{"wake", (PyCFunction)PollerCore_wake, METH_NOARGS,
	 "Undo the poller's sleep (and drain the eventfd)."},
	{"close", (PyCFunction)PollerCore_close, METH_NOARGS,
	 "No more turns."},
	{NULL}
};

static PyGetSetDef PollerCore_getset[] = {
	{"passes", (getter)PollerCore_get_passes, NULL,
	 "Passes so far.", NULL},
	{"stack_active", (getter)PollerCore_get_stack_active, NULL,
	 "When the stack last had events (time.monotonic()).", NULL},
	{"closed", (getter)PollerCore_get_closed, NULL,
	 "Whether close() was called.", NULL},
	{NULL}
};

PyTypeObject PollerCore_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "aiodocknet._fcpath.PollerCore",
	.tp_doc = "PollerCore(stack, state, channels, dispatch, sleep, "
		"call_soon, *, tuning...): a slave poller's turn.",
	.tp_basicsize = sizeof(PollerCore),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)PollerCore_init,
	.tp_traverse = (traverseproc)PollerCore_traverse,
	.tp_clear = (inquiry)PollerCore_clear,
	.tp_dealloc = (destructor)PollerCore_dealloc,
	.tp_methods = PollerCore_methods,
	.tp_getset = PollerCore_getset,
};
