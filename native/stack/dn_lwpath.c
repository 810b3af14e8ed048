/*
 * The per-message path of TCP transports over the slave stack, in
 * CPython's C API (part of the _fcpath extension; dn_pypath.h).
 *
 * Through cffi a small message on the stack cost a dozen Python calls and
 * objects: the poller's pass, a list of Event tuples, the handler lookup,
 * the transport's event method, the read, the bytes slice of a scratch
 * buffer, and a second read that finds nothing. Here the poller's pass is
 * one call (StackCore.pump): it runs the stack, and a readable event for a
 * connection whose transport may read now goes straight from lwIP's pbufs
 * into a bytes object for data_received (or into a buffered protocol's
 * buffer). Every other event goes to the poller's Python dispatch in the
 * order the stack gave it, where the transport handles end of stream,
 * errors, accepts and writability as before.
 *
 * The stack is _lib's (cffi): its calls come as a table from _lib
 * (dn_stack_calls), so this extension never holds a second lwIP.
 */
#include "dn_pypath.h"

#define StackCore_Type dn_lwpath_stack_type

static int
StackCore_init(StackCore *self, PyObject *args, PyObject *kwds)
{
	unsigned long long st_addr, calls_addr;
	const struct dn_stack_calls *calls;
	struct dn_stack *st;
	int max;

	if (!PyArg_ParseTuple(args, "KK:StackCore", &st_addr, &calls_addr))
		return -1;
	if (self->cores != NULL) {
		PyErr_SetString(PyExc_RuntimeError, "StackCore is set up once");
		return -1;
	}
	if (st_addr == 0 || calls_addr == 0) {
		PyErr_SetString(PyExc_ValueError, "no stack");
		return -1;
	}
	st = (struct dn_stack *)(uintptr_t)st_addr;
	calls = (const struct dn_stack_calls *)(uintptr_t)calls_addr;
	max = calls->max_conns(st);
	if (max <= 0) {
		PyErr_SetString(PyExc_ValueError, "a stack with no connections");
		return -1;
	}
	self->cores = PyMem_Calloc((size_t)max, sizeof(*self->cores));
	if (self->cores == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	self->st = st;
	self->calls = calls;
	self->max_conns = (uint32_t)max;
	return 0;
}

static int
StackCore_traverse(StackCore *self, visitproc visit, void *arg)
{
	uint32_t i;

	if (self->cores == NULL)
		return 0;
	for (i = 0; i < self->max_conns; i++)
		Py_VISIT(self->cores[i]);
	return 0;
}

static int
StackCore_clear(StackCore *self)
{
	uint32_t i;

	if (self->cores == NULL)
		return 0;
	for (i = 0; i < self->max_conns; i++)
		Py_CLEAR(self->cores[i]);
	return 0;
}

static void
StackCore_dealloc(StackCore *self)
{
	PyObject_GC_UnTrack(self);
	StackCore_clear(self);
	PyMem_Free(self->cores);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
dn_lwpath_conn_arg(StackCore *self, PyObject *arg, int *conn)
{
	long v = PyLong_AsLong(arg);

	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < 0 || (unsigned long)v >= self->max_conns) {
		PyErr_Format(PyExc_ValueError, "no connection %ld on this "
			"stack", v);
		return -1;
	}
	*conn = (int)v;
	return 0;
}

static PyObject *
StackCore_register(StackCore *self, PyObject *const *args, Py_ssize_t n)
{
	TransportCore *core;
	int conn;

	if (n != 2) {
		PyErr_SetString(PyExc_TypeError,
			"register(conn, core) takes two arguments");
		return NULL;
	}
	if (dn_lwpath_conn_arg(self, args[0], &conn) < 0)
		return NULL;
	if (!PyObject_TypeCheck(args[1], &dn_pypath_core_type)) {
		PyErr_SetString(PyExc_TypeError, "core must be a TransportCore");
		return NULL;
	}
	core = (TransportCore *)args[1];
	/* A core of another stack or connection would read someone else's
	 * bytes. */
	if (core->stack != self || core->conn != conn) {
		PyErr_Format(PyExc_ValueError, "that core is not connection "
			"%d's on this stack", conn);
		return NULL;
	}
	Py_INCREF(core);
	Py_XSETREF(self->cores[conn], (PyObject *)core);
	Py_RETURN_NONE;
}

static PyObject *
StackCore_unregister(StackCore *self, PyObject *arg)
{
	int conn;

	if (dn_lwpath_conn_arg(self, arg, &conn) < 0)
		return NULL;
	Py_CLEAR(self->cores[conn]);
	Py_RETURN_NONE;
}

static PyObject *
StackCore_detach(StackCore *self, PyObject *unused)
{
	/* Before the stack is freed: no core may call into it again. */
	self->st = NULL;
	StackCore_clear(self);
	Py_RETURN_NONE;
}

int
dn_lwpath_pump(StackCore *self, PyObject *dispatch)
{
	int i, n;

	if (self->st == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "the stack is closed");
		return -1;
	}
	n = self->calls->poll(self->st, self->ev, DN_LWPATH_EVENTS);
	for (i = 0; i < n; i++) {
		const struct dn_event *ev = &self->ev[i];
		TransportCore *core = NULL;
		int rc;

		/* A callback may have closed the stack: the rest of the batch
		 * has nobody to go to. */
		if (self->st == NULL)
			break;
		if (ev->kind == DN_EV_READABLE && ev->id >= 0 &&
		    (uint32_t)ev->id < self->max_conns)
			core = (TransportCore *)self->cores[ev->id];
		if (core != NULL && dn_pypath_fast_read(core)) {
			Py_INCREF(core);
			rc = dn_pypath_deliver(core);
			Py_DECREF(core);
			if (rc < 0)
				return -1;
		} else {
			PyObject *argv[3], *res;
			int k;

			argv[0] = PyLong_FromLong(ev->kind);
			argv[1] = PyLong_FromLong(ev->id);
			argv[2] = PyLong_FromLong(ev->arg);
			if (argv[0] == NULL || argv[1] == NULL || argv[2] == NULL)
				res = NULL;
			else
				res = PyObject_Vectorcall(dispatch, argv, 3, NULL);
			for (k = 0; k < 3; k++)
				Py_XDECREF(argv[k]);
			/* The dispatch contains a handler's failure itself:
			 * what comes out stops the loop (SystemExit), as
			 * from the Python path. */
			if (res == NULL)
				return -1;
			Py_DECREF(res);
		}
	}
	return n;
}

static PyObject *
StackCore_pump(StackCore *self, PyObject *dispatch)
{
	int n = dn_lwpath_pump(self, dispatch);

	return n < 0 ? NULL : PyLong_FromLong(n);
}

static PyMethodDef StackCore_methods[] = {
	{"register", (PyCFunction)(void (*)(void))StackCore_register,
	 METH_FASTCALL, "register(conn, core): conn's readable events go to "
	 "core (the fast way, while its transport may read)."},
	{"unregister", (PyCFunction)StackCore_unregister, METH_O,
	 "unregister(conn): conn's events go to the dispatch again."},
	{"pump", (PyCFunction)StackCore_pump, METH_O,
	 "pump(dispatch) -> int: run the stack once and deliver its events."},
	{"detach", (PyCFunction)StackCore_detach, METH_NOARGS,
	 "Forget the stack (before it is closed)."},
	{NULL}
};

PyTypeObject StackCore_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "aiodocknet._fcpath.StackCore",
	.tp_doc = "StackCore(stack_address, calls_address): a slave stack's "
		"events, delivered per pass.",
	.tp_basicsize = sizeof(StackCore),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)StackCore_init,
	.tp_traverse = (traverseproc)StackCore_traverse,
	.tp_clear = (inquiry)StackCore_clear,
	.tp_dealloc = (destructor)StackCore_dealloc,
	.tp_methods = StackCore_methods,
};
