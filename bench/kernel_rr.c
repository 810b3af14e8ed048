/*
 * kernel_rr: kernel TCP baseline for the aiodocknet benchmarks.
 *
 *   kernel_rr server PORT [--bind ADDR]
 *   kernel_rr rr HOST PORT [--size 64] [--seconds 3] [--conns 1]
 *   kernel_rr stream HOST PORT [--size 65536] [--seconds 3]
 *
 * Protocol: the client's first byte selects the connection's mode.
 *   'R'  echo: the server sends back every byte it receives.
 *   'S'  sink: the server discards everything until EOF, then replies with
 *        the number of bytes received (8 bytes, big-endian) and closes.
 *
 * The server prints "listening PORT" on stdout once it accepts connections
 * (PORT 0 picks a free port), so a harness can wait for that line instead
 * of polling. Clients print one JSON line on stdout. Errors go to stderr and
 * give a non-zero exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MODE_ECHO 'R'
#define MODE_SINK 'S'

#define MAX_EVENTS 64
#define MAX_CONNS 4096
#define MAX_SIZE (64u << 20)
#define ECHO_BUF_SIZE (64u << 10)
#define SINK_BUF_SIZE (256u << 10)

static const char *prog = "kernel_rr";

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_FAILURE);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr,
		"usage: %s server PORT [--bind ADDR]\n"
		"       %s rr HOST PORT [--size N] [--seconds S] [--conns C]\n"
		"       %s stream HOST PORT [--size N] [--seconds S]\n",
		prog, prog, prog);
	exit(2);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		die("fcntl O_NONBLOCK: %s", strerror(errno));
}

/* Without NODELAY, Nagle + delayed ACK turn small request/response into 40 ms steps. */
static void
set_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("setsockopt TCP_NODELAY: %s", strerror(errno));
}

static void
epoll_set(int epfd, int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	if (epoll_ctl(epfd, op, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

/* Blocking write of the whole buffer; false on error (errno set). */
static bool
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool
read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);

		if (n == 0) {
			errno = ECONNRESET;
			return false;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* server                                                                   */
/* ------------------------------------------------------------------------ */

enum conn_state { CONN_HELLO, CONN_ECHO, CONN_SINK };

struct srv_conn {
	int fd;
	enum conn_state state;
	uint64_t sunk;          /* bytes discarded in sink mode */
	size_t pend_off;        /* echo data not yet written back: buf[off, len) */
	size_t pend_len;
	char buf[ECHO_BUF_SIZE];
};

/* Tags for the epoll entries that are not connections. */
static int tag_listen, tag_signal;

static void
srv_close(struct srv_conn *c)
{
	close(c->fd);           /* also removes it from the epoll set */
	free(c);
}

/* Connection resets are the normal end of a benchmark run, not worth a message. */
static void
srv_conn_error(struct srv_conn *c, const char *what)
{
	if (errno != ECONNRESET && errno != EPIPE)
		fprintf(stderr, "%s: %s on connection: %s\n", prog, what, strerror(errno));
	srv_close(c);
}

/*
 * Write back pending echo data. Returns false if the connection was closed.
 * While data is pending we stop reading, so a client that does not read
 * cannot make the server buffer without bound.
 */
static bool
srv_flush(int epfd, struct srv_conn *c)
{
	while (c->pend_len > c->pend_off) {
		ssize_t n = send(c->fd, c->buf + c->pend_off,
				 c->pend_len - c->pend_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				epoll_set(epfd, EPOLL_CTL_MOD, c->fd, EPOLLOUT, c);
				return true;
			}
			srv_conn_error(c, "send");
			return false;
		}
		c->pend_off += (size_t)n;
	}
	c->pend_off = c->pend_len = 0;
	return true;
}

static void
srv_sink_done(struct srv_conn *c)
{
	unsigned char out[8];
	uint64_t v = c->sunk;

	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (unsigned char)v;
	/* 8 bytes into an idle send buffer cannot return EAGAIN. */
	if (send(c->fd, out, sizeof(out), MSG_NOSIGNAL) != (ssize_t)sizeof(out)) {
		srv_conn_error(c, "send count");
		return;
	}
	srv_close(c);
}

static void
srv_readable(int epfd, struct srv_conn *c)
{
	static char sink_buf[SINK_BUF_SIZE];

	for (;;) {
		char *dst = c->state == CONN_SINK ? sink_buf : c->buf;
		size_t cap = c->state == CONN_SINK ? sizeof(sink_buf) : sizeof(c->buf);
		ssize_t n = recv(c->fd, dst, cap, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				srv_conn_error(c, "recv");
			return;
		}
		if (n == 0) {
			if (c->state == CONN_SINK)
				srv_sink_done(c);
			else
				srv_close(c);
			return;
		}

		size_t off = 0;
		if (c->state == CONN_HELLO) {
			if (dst[0] == MODE_ECHO) {
				c->state = CONN_ECHO;
			} else if (dst[0] == MODE_SINK) {
				c->state = CONN_SINK;
			} else {
				fprintf(stderr, "%s: unknown mode byte 0x%02x, closing\n",
					prog, (unsigned char)dst[0]);
				srv_close(c);
				return;
			}
			off = 1;
		}

		if (c->state == CONN_SINK) {
			c->sunk += (uint64_t)n - off;
			continue;
		}

		c->pend_off = off;
		c->pend_len = (size_t)n;
		if (!srv_flush(epfd, c))
			return;
		if (c->pend_len != 0)
			return; /* blocked on output; resume from EPOLLOUT */
	}
}

static int
srv_listen(const char *bind_addr, const char *port)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE,
	};
	struct addrinfo *res, *ai;
	int fd = -1, rc, one = 1, err = 0;

	rc = getaddrinfo(bind_addr, port, &hints, &res);
	if (rc != 0)
		die("bind address %s port %s: %s", bind_addr ? bind_addr : "*",
		    port, gai_strerror(rc));
	/* Prefer IPv4 for the wildcard: the namespaces only have IPv4 addresses. */
	for (int pass = 0; pass < 2 && fd < 0; pass++) {
		for (ai = res; ai != NULL; ai = ai->ai_next) {
			if ((ai->ai_family == AF_INET) != (pass == 0))
				continue;
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, 0);
			if (fd < 0) {
				err = errno;
				continue;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
			    listen(fd, 1024) == 0)
				break;
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		die("cannot listen on %s:%s: %s", bind_addr ? bind_addr : "*",
		    port, strerror(err));
	return fd;
}

static int
srv_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		die("getsockname: %s", strerror(errno));
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void
srv_accept(int epfd, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				fprintf(stderr, "%s: accept: %s\n", prog, strerror(errno));
			return;
		}
		set_nodelay(fd);

		struct srv_conn *c = malloc(sizeof(*c));
		if (c == NULL) {
			fprintf(stderr, "%s: out of memory, dropping connection\n", prog);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = CONN_HELLO;
		c->sunk = 0;
		c->pend_off = c->pend_len = 0;
		epoll_set(epfd, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, c);
	}
}

static int
run_server(int argc, char **argv)
{
	const char *port = NULL, *bind_addr = NULL;
	struct epoll_event events[MAX_EVENTS];
	sigset_t mask;
	int lfd, sfd, epfd;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc)
			bind_addr = argv[++i];
		else if (port == NULL && argv[i][0] != '-')
			port = argv[i];
		else
			usage();
	}
	if (port == NULL)
		usage();

	/* SIGTERM arrives through the epoll set, so shutdown happens between events. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		die("sigprocmask: %s", strerror(errno));
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		die("signalfd: %s", strerror(errno));

	lfd = srv_listen(bind_addr, port);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	epoll_set(epfd, EPOLL_CTL_ADD, lfd, EPOLLIN, &tag_listen);
	epoll_set(epfd, EPOLL_CTL_ADD, sfd, EPOLLIN, &tag_signal);

	printf("listening %d\n", srv_bound_port(lfd));
	fflush(stdout);

	for (;;) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			void *p = events[i].data.ptr;
			uint32_t ev = events[i].events;

			if (p == &tag_signal) {
				/* Open connections are torn down by exit(). */
				close(lfd);
				return EXIT_SUCCESS;
			}
			if (p == &tag_listen) {
				srv_accept(epfd, lfd);
				continue;
			}

			struct srv_conn *c = p;
			if (c->pend_len != 0) {
				/* Only EPOLLOUT is armed; ERR/HUP come anyway and the send reports them. */
				if (!srv_flush(epfd, c))
					continue;
				if (c->pend_len != 0)
					continue;
				epoll_set(epfd, EPOLL_CTL_MOD, c->fd,
					  EPOLLIN | EPOLLRDHUP, c);
			}
			/*
			 * Read on errors too: recv() reports the error or EOF and
			 * frees the connection, so no later event in this batch
			 * can refer to it (each fd appears at most once per batch).
			 */
			if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				srv_readable(epfd, c);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* clients                                                                  */
/* ------------------------------------------------------------------------ */

struct client_opts {
	const char *host;
	const char *port;
	size_t size;
	double seconds;
	int conns;
};

static void
parse_client_args(int argc, char **argv, struct client_opts *o)
{
	int pos = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		char *end;

		if (strcmp(a, "--size") == 0 && i + 1 < argc) {
			unsigned long long v = strtoull(argv[++i], &end, 10);
			if (*end != '\0' || v == 0 || v > MAX_SIZE)
				die("--size must be 1..%u", MAX_SIZE);
			o->size = (size_t)v;
		} else if (strcmp(a, "--seconds") == 0 && i + 1 < argc) {
			o->seconds = strtod(argv[++i], &end);
			if (*end != '\0' || !(o->seconds > 0 && o->seconds < 86400))
				die("--seconds must be a positive number");
		} else if (strcmp(a, "--conns") == 0 && i + 1 < argc) {
			long v = strtol(argv[++i], &end, 10);
			if (*end != '\0' || v < 1 || v > MAX_CONNS)
				die("--conns must be 1..%d", MAX_CONNS);
			o->conns = (int)v;
		} else if (a[0] != '-' && pos == 0) {
			o->host = a;
			pos++;
		} else if (a[0] != '-' && pos == 1) {
			o->port = a;
			pos++;
		} else {
			usage();
		}
	}
	if (pos != 2)
		usage();
}

/* Connected blocking socket with NODELAY that has already sent its mode byte. */
static int
client_connect(const struct client_opts *o, char mode)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int fd = -1, rc, err = 0;

	rc = getaddrinfo(o->host, o->port, &hints, &res);
	if (rc != 0)
		die("resolve %s:%s: %s", o->host, o->port, gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		die("connect %s:%s: %s", o->host, o->port, strerror(err));
	set_nodelay(fd);
	if (!write_all(fd, &mode, 1))
		die("send mode byte: %s", strerror(errno));
	return fd;
}

struct rr_conn {
	int fd;
	size_t sent;
	size_t rcvd;
	uint64_t t_start;
	bool want_out;          /* EPOLLOUT registered */
};

struct lat_log {
	uint32_t *ns;           /* 32 bits is 4 s per round trip: plenty */
	size_t len, cap;
};

static void
lat_add(struct lat_log *l, uint64_t ns)
{
	if (l->len == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1u << 16;
		l->ns = realloc(l->ns, l->cap * sizeof(*l->ns));
		if (l->ns == NULL)
			die("out of memory for latency samples");
	}
	l->ns[l->len++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted log, in microseconds. */
static double
lat_pct_us(const struct lat_log *l, unsigned int pct)
{
	if (l->len == 0)
		return 0.0;
	size_t rank = (l->len * pct + 99) / 100;
	if (rank < 1)
		rank = 1;
	return l->ns[rank - 1] / 1000.0;
}

/* Sends what it can of the current request; false on a fatal error. */
static bool
rr_send(int epfd, struct rr_conn *c, const char *msg, size_t size)
{
	while (c->sent < size) {
		ssize_t n = send(c->fd, msg + c->sent, size - c->sent, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return false;
			if (!c->want_out) {
				epoll_set(epfd, EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLOUT, c);
				c->want_out = true;
			}
			return true;
		}
		c->sent += (size_t)n;
	}
	if (c->want_out) {
		epoll_set(epfd, EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
		c->want_out = false;
	}
	return true;
}

static void
rr_start(int epfd, struct rr_conn *c, const char *msg, size_t size)
{
	c->sent = c->rcvd = 0;
	c->t_start = now_ns();
	if (!rr_send(epfd, c, msg, size))
		die("send: %s", strerror(errno));
}

static int
run_rr(int argc, char **argv)
{
	struct client_opts o = { .size = 64, .seconds = 3.0, .conns = 1 };
	struct epoll_event events[MAX_EVENTS];
	struct lat_log lat = { 0 };
	struct rr_conn *conns;
	char *msg, *rbuf;
	size_t rbuf_size;
	uint64_t start, deadline, end;
	int epfd;

	parse_client_args(argc, argv, &o);

	msg = malloc(o.size);
	rbuf_size = o.size < SINK_BUF_SIZE ? o.size : SINK_BUF_SIZE;
	rbuf = malloc(rbuf_size);
	conns = calloc((size_t)o.conns, sizeof(*conns));
	if (msg == NULL || rbuf == NULL || conns == NULL)
		die("out of memory");
	for (size_t i = 0; i < o.size; i++)
		msg[i] = (char)('a' + i % 26);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));

	/* Connection setup (and ARP) stays outside the measured interval. */
	for (int i = 0; i < o.conns; i++) {
		conns[i].fd = client_connect(&o, MODE_ECHO);
		set_nonblock(conns[i].fd);
		epoll_set(epfd, EPOLL_CTL_ADD, conns[i].fd, EPOLLIN, &conns[i]);
	}

	start = now_ns();
	deadline = start + (uint64_t)(o.seconds * 1e9);
	for (int i = 0; i < o.conns; i++)
		rr_start(epfd, &conns[i], msg, o.size);

	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline)
			break;
		int timeout_ms = (int)((deadline - now) / 1000000u) + 1;
		int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			struct rr_conn *c = events[i].data.ptr;

			if ((events[i].events & EPOLLOUT) && !rr_send(epfd, c, msg, o.size))
				die("send: %s", strerror(errno));
			if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				continue;

			for (;;) {
				size_t want = o.size - c->rcvd;
				ssize_t r = recv(c->fd, rbuf, want < rbuf_size ? want : rbuf_size, 0);

				if (r < 0) {
					if (errno == EINTR)
						continue;
					if (errno == EAGAIN)
						break;
					die("recv: %s", strerror(errno));
				}
				if (r == 0)
					die("server closed the connection");
				c->rcvd += (size_t)r;
				if (c->rcvd < o.size)
					continue;

				uint64_t t = now_ns();
				if (t >= deadline)
					break; /* finished after the interval: not counted */
				lat_add(&lat, t - c->t_start);
				rr_start(epfd, c, msg, o.size);
				/* The echo cannot be here yet; waiting in epoll is cheaper than an EAGAIN recv. */
				break;
			}
		}
	}
	end = now_ns();

	for (int i = 0; i < o.conns; i++)
		close(conns[i].fd);
	close(epfd);

	double secs = (double)(end - start) / 1e9;
	qsort(lat.ns, lat.len, sizeof(*lat.ns), cmp_u32);
	printf("{\"mode\":\"rr\",\"size\":%zu,\"conns\":%d,\"round_trips\":%zu,"
	       "\"seconds\":%.6f,\"rt_per_s\":%.1f,\"p50_us\":%.2f,\"p99_us\":%.2f}\n",
	       o.size, o.conns, lat.len, secs, (double)lat.len / secs,
	       lat_pct_us(&lat, 50), lat_pct_us(&lat, 99));
	free(lat.ns);
	free(conns);
	free(rbuf);
	free(msg);
	return EXIT_SUCCESS;
}

static int
run_stream(int argc, char **argv)
{
	struct client_opts o = { .size = 65536, .seconds = 3.0, .conns = 1 };
	unsigned char cnt[8];
	uint64_t start, deadline, end, sent = 0, got = 0;
	char *chunk;
	int fd;

	parse_client_args(argc, argv, &o);
	if (o.conns != 1)
		die("stream mode uses exactly one connection");

	chunk = malloc(o.size);
	if (chunk == NULL)
		die("out of memory");
	memset(chunk, 'x', o.size);

	fd = client_connect(&o, MODE_SINK);

	start = now_ns();
	deadline = start + (uint64_t)(o.seconds * 1e9);
	while (now_ns() < deadline) {
		if (!write_all(fd, chunk, o.size))
			die("send: %s", strerror(errno));
		sent += o.size;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown: %s", strerror(errno));
	/* The interval ends when the server has counted everything, not when our buffer took it. */
	if (!read_all(fd, cnt, sizeof(cnt)))
		die("reading the server's byte count: %s", strerror(errno));
	end = now_ns();
	close(fd);

	for (int i = 0; i < 8; i++)
		got = got << 8 | cnt[i];
	if (got != sent)
		die("server counted %" PRIu64 " bytes, client sent %" PRIu64, got, sent);

	double secs = (double)(end - start) / 1e9;
	printf("{\"mode\":\"stream\",\"size\":%zu,\"bytes\":%" PRIu64 ",\"seconds\":%.6f,"
	       "\"gbit_per_s\":%.3f}\n",
	       o.size, got, secs, (double)got * 8.0 / secs / 1e9);
	free(chunk);
	return EXIT_SUCCESS;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "server") == 0)
		return run_server(argc - 2, argv + 2);
	if (strcmp(argv[1], "rr") == 0)
		return run_rr(argc - 2, argv + 2);
	if (strcmp(argv[1], "stream") == 0)
		return run_stream(argc - 2, argv + 2);
	usage();
}
