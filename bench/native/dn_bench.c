#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "dn_bench.h"
#include "dn_clock.h"
#include "dn_error.h"
#include "dn_fastchan.h"
#include "dn_link.h"
#include "dn_spin.h"
#include "dn_stack.h"

#define DN_BENCH_EVENTS 256
#define DN_BENCH_MAX_CONNS 4096
#define DN_BENCH_BUF (256 * 1024)
#define DN_BENCH_SAMPLES (1u << 22)


static volatile sig_atomic_t dn_bench_stop;

static void
dn_bench_on_signal(int sig)
{
	(void)sig;
	dn_bench_stop = 1;
}

/* A loop's idle state: the one policy every DockNet poller follows
 * (dn_spin.h). The loops measure the path, not the habit: they neither
 * learn from misses nor look at the host's load. */
struct dn_idle {
	struct dn_spin spin;
	uint64_t sleeps;
};

static void
dn_idle_open(struct dn_idle *idle, unsigned int spin_us)
{
	memset(idle, 0, sizeof(*idle));
	dn_spin_open(&idle->spin, (uint64_t)spin_us * 1000, UINT_MAX, 0);
}

static void
dn_idle_reset(struct dn_idle *idle)
{
	dn_spin_work(&idle->spin);
}

/* An idle pass: spins (yielding) or sleeps on the doorbell, as the policy
 * says. */
static void
dn_idle_step(struct dn_stack *st, struct dn_idle *idle, int max_ms)
{
	struct pollfd pfd;
	int verdict, t;

	verdict = dn_spin_idle(&idle->spin, 0, 0);
	if (verdict == DN_SPIN_ON || dn_stack_arm(st))
		return;
	t = dn_stack_timeout_ms(st);
	if (t < 0 || t > max_ms)
		t = max_ms;
	pfd.fd = dn_stack_fileno(st);
	pfd.events = POLLIN;
	idle->sleeps++;
	dn_spin_asleep(&idle->spin, idle->spin.now, verdict);
	poll(&pfd, 1, t);
	dn_spin_woke(&idle->spin, dn_clock_ns());
	dn_stack_disarm(st);
}

/* ---- server ---- */

struct dn_srv_conn {
	int mode;		/* 0 unknown, 'R', 'S' */
	uint64_t count;
	uint32_t pending;	/* echo bytes not yet sent */
	uint32_t off;
	char *buf;
	int eof;
};

static void
dn_srv_flush(struct dn_stack *st, int id, struct dn_srv_conn *c)
{
	while (c->pending > 0) {
		int n = dn_send(st, id, c->buf + c->off, c->pending);

		if (n <= 0)
			return;
		c->off += (uint32_t)n;
		c->pending -= (uint32_t)n;
	}
	c->off = 0;
}

static void
dn_srv_read(struct dn_stack *st, int id, struct dn_srv_conn *c, char *tmp)
{
	for (;;) {
		char *dst;
		uint32_t room;
		int n;

		if (c->mode == 'R') {
			/* Echo: read only what we can hold until it is sent,
			 * so a slow reader slows the writer. */
			if (c->pending > 0)
				dn_srv_flush(st, id, c);
			if (c->pending > 0)
				return;
			dst = c->buf;
			room = DN_BENCH_BUF;
		} else {
			dst = tmp;
			room = DN_BENCH_BUF;
		}
		n = dn_recv(st, id, dst, room);
		if (n < 0)
			return;
		if (n == 0) {
			c->eof = 1;
			if (c->mode == 'S') {
				unsigned char be[8];
				int i;

				for (i = 0; i < 8; i++)
					be[i] = (unsigned char)(c->count >> (56 - 8 * i));
				dn_send(st, id, be, 8);
			}
			dn_close(st, id);
			free(c->buf);
			memset(c, 0, sizeof(*c));
			return;
		}
		if (c->mode == 0) {
			c->mode = dst[0];
			if (c->mode != 'R' && c->mode != 'S')
				c->mode = 'R';
			memmove(dst, dst + 1, (size_t)n - 1);
			n--;
		}
		if (c->mode == 'S') {
			c->count += (uint64_t)n;
		} else {
			c->pending = (uint32_t)n;
			c->off = 0;
			dn_srv_flush(st, id, c);
		}
	}
}

int
dn_bench_serve(struct dn_stack *st, uint16_t port, double max_seconds,
	unsigned int spin_us)
{
	struct dn_event ev[DN_BENCH_EVENTS];
	struct dn_srv_conn *conns;
	struct dn_idle idle;
	uint64_t end = dn_clock_ns() + (uint64_t)(max_seconds * 1e9);
	char *tmp;
	int lid, i, n;

	dn_idle_open(&idle, spin_us);
	lid = dn_listen(st, 0, port, 128);
	if (lid < 0)
		return lid;
	conns = calloc(DN_BENCH_MAX_CONNS * 4, sizeof(*conns));
	tmp = malloc(DN_BENCH_BUF);
	if (conns == NULL || tmp == NULL) {
		free(conns);
		free(tmp);
		return dn_error(-ENOMEM, "out of memory for the bench server");
	}
	dn_bench_stop = 0;
	signal(SIGTERM, dn_bench_on_signal);
	signal(SIGINT, dn_bench_on_signal);
	while (!dn_bench_stop && dn_clock_ns() < end) {
		n = dn_stack_poll(st, ev, DN_BENCH_EVENTS);
		if (n == 0) {
			dn_idle_step(st, &idle, 100);
			continue;
		}
		dn_idle_reset(&idle);
		for (i = 0; i < n; i++) {
			int id = ev[i].id;
			struct dn_srv_conn *c;

			if (id >= DN_BENCH_MAX_CONNS * 4)
				continue;
			c = &conns[id];
			switch (ev[i].kind) {
			case DN_EV_ACCEPTED:
				memset(c, 0, sizeof(*c));
				c->buf = malloc(DN_BENCH_BUF);
				break;
			case DN_EV_READABLE:
			case DN_EV_PEER_CLOSED:
				if (c->buf != NULL)
					dn_srv_read(st, id, c, tmp);
				break;
			case DN_EV_WRITABLE:
				if (c->buf != NULL) {
					dn_srv_flush(st, id, c);
					dn_srv_read(st, id, c, tmp);
				}
				break;
			case DN_EV_ERROR:
				dn_close(st, id);
				free(c->buf);
				memset(c, 0, sizeof(*c));
				break;
			}
		}
	}
	dn_close(st, lid);
	free(conns);
	free(tmp);
	return 0;
}

/* ---- clients ---- */

static int
dn_bench_connect(struct dn_stack *st, uint32_t ip, uint16_t port, int *ids,
	uint32_t n, char mode, struct dn_idle *idle)
{
	struct dn_event ev[DN_BENCH_EVENTS];
	uint32_t connected = 0, i;
	uint64_t deadline = dn_clock_ns() + 10000000000ull;

	for (i = 0; i < n; i++) {
		ids[i] = dn_connect(st, ip, port);
		if (ids[i] < 0)
			return ids[i];
	}
	while (connected < n) {
		int k, m = dn_stack_poll(st, ev, DN_BENCH_EVENTS);

		for (k = 0; k < m; k++) {
			if (ev[k].kind == DN_EV_CONNECTED) {
				connected++;
				if (dn_send(st, ev[k].id, &mode, 1) != 1)
					return dn_error(-EIO, "cannot send the "
						"mode byte");
			} else if (ev[k].kind == DN_EV_ERROR) {
				return dn_error(-ev[k].arg, "bench connect "
					"failed: %s", strerror(ev[k].arg));
			}
		}
		if (dn_clock_ns() > deadline)
			return dn_error(-ETIMEDOUT, "bench connect timed out");
		if (m == 0)
			dn_idle_step(st, idle, 10);
	}
	return 0;
}

static int
dn_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double
dn_pct(uint32_t *s, uint64_t n, double p)
{
	uint64_t i;

	if (n == 0)
		return 0;
	i = (uint64_t)(p * (double)(n - 1));
	return s[i] / 1000.0;
}

/* Sorts the samples (ns) and fills the percentiles of out. */
static void
dn_bench_latency(uint32_t *samples, uint64_t n, struct dn_bench_result *out)
{
	if (n > DN_BENCH_SAMPLES)
		n = DN_BENCH_SAMPLES;
	qsort(samples, n, sizeof(*samples), dn_cmp_u32);
	out->p50_us = dn_pct(samples, n, 0.50);
	out->p99_us = dn_pct(samples, n, 0.99);
	out->p999_us = dn_pct(samples, n, 0.999);
}

int
dn_bench_rr(struct dn_stack *st, uint32_t ip, uint16_t port, uint32_t size,
	uint32_t conns, double seconds, unsigned int spin_us,
	struct dn_bench_result *out)
{
	struct dn_event ev[DN_BENCH_EVENTS];
	struct dn_idle idle;
	int *ids = NULL;
	uint32_t *got = NULL, *samples = NULL, i;
	uint64_t *sent_at = NULL, nsamples = 0, start, end, now;
	char *msg = NULL, *rbuf = NULL;
	int *slot_of = NULL;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	dn_idle_open(&idle, spin_us);
	if (conns == 0 || conns > DN_BENCH_MAX_CONNS || size == 0 ||
	    size > DN_BENCH_BUF)
		return dn_error(-EINVAL, "bench: 1..%d connections and "
			"1..%d bytes", DN_BENCH_MAX_CONNS, DN_BENCH_BUF);
	ids = calloc(conns, sizeof(*ids));
	got = calloc(conns, sizeof(*got));
	sent_at = calloc(conns, sizeof(*sent_at));
	samples = malloc(DN_BENCH_SAMPLES * sizeof(*samples));
	msg = malloc(size);
	rbuf = malloc(DN_BENCH_BUF);
	slot_of = malloc(DN_BENCH_MAX_CONNS * 4 * sizeof(*slot_of));
	if (!ids || !got || !sent_at || !samples || !msg || !rbuf || !slot_of) {
		ret = dn_error(-ENOMEM, "out of memory for the bench");
		goto out;
	}
	memset(msg, 'x', size);
	ret = dn_bench_connect(st, ip, port, ids, conns, 'R', &idle);
	if (ret < 0)
		goto out;
	for (i = 0; i < DN_BENCH_MAX_CONNS * 4; i++)
		slot_of[i] = -1;
	for (i = 0; i < conns; i++)
		slot_of[ids[i]] = (int)i;

	start = dn_clock_ns();
	end = start + (uint64_t)(seconds * 1e9);
	for (i = 0; i < conns; i++) {
		sent_at[i] = dn_clock_ns();
		if (dn_send(st, ids[i], msg, size) != (int)size) {
			ret = dn_error(-EIO, "bench: short send");
			goto out;
		}
	}
	for (;;) {
		int k, m = dn_stack_poll(st, ev, DN_BENCH_EVENTS);

		if (m == 0) {
			dn_idle_step(st, &idle, 10);
			if (dn_clock_ns() >= end)
				break;
			continue;
		}
		dn_idle_reset(&idle);
		now = 0;
		for (k = 0; k < m; k++) {
			int c;

			if (ev[k].kind == DN_EV_ERROR) {
				ret = dn_error(-ev[k].arg, "bench connection "
					"failed: %s", strerror(ev[k].arg));
				goto out;
			}
			if (ev[k].kind != DN_EV_READABLE ||
			    ev[k].id >= DN_BENCH_MAX_CONNS * 4)
				continue;
			c = slot_of[ev[k].id];
			if (c < 0)
				continue;
			for (;;) {
				int r = dn_recv(st, ids[c], rbuf,
					size - got[c]);

				if (r <= 0)
					break;
				got[c] += (uint32_t)r;
				if (got[c] < size)
					continue;
				now = dn_clock_ns();
				if (nsamples < DN_BENCH_SAMPLES)
					samples[nsamples] =
						(uint32_t)(now - sent_at[c]);
				nsamples++;
				got[c] = 0;
				if (now < end) {
					sent_at[c] = now;
					dn_send(st, ids[c], msg, size);
				}
			}
		}
		if (now >= end && now != 0)
			break;
	}
	now = dn_clock_ns();
	out->round_trips = nsamples;
	out->seconds = (double)(now - start) / 1e9;
	dn_bench_latency(samples, nsamples, out);
	out->sleeps = idle.sleeps;
	for (i = 0; i < conns; i++)
		dn_close(st, ids[i]);
out:
	free(ids);
	free(got);
	free(sent_at);
	free(samples);
	free(msg);
	free(rbuf);
	free(slot_of);
	return ret;
}

int
dn_bench_stream(struct dn_stack *st, uint32_t ip, uint16_t port,
	uint32_t size, double seconds, unsigned int spin_us,
	struct dn_bench_result *out)
{
	struct dn_event ev[DN_BENCH_EVENTS];
	struct dn_idle idle;
	unsigned char reply[8];
	uint32_t have = 0, off = 0;
	uint64_t start, end, sent = 0, count = 0;
	char *buf;
	int id, ret, i;

	memset(out, 0, sizeof(*out));
	dn_idle_open(&idle, spin_us);
	if (size == 0 || size > DN_BENCH_BUF)
		return dn_error(-EINVAL, "bench: 1..%d bytes per write",
			DN_BENCH_BUF);
	buf = malloc(size);
	if (buf == NULL)
		return dn_error(-ENOMEM, "out of memory for the bench");
	memset(buf, 's', size);
	ret = dn_bench_connect(st, ip, port, &id, 1, 'S', &idle);
	if (ret < 0)
		goto out;
	start = dn_clock_ns();
	end = start + (uint64_t)(seconds * 1e9);
	/* Write whenever there is room; poll in between to take ACKs. */
	while (dn_clock_ns() < end) {
		int n = dn_send(st, id, buf + off, size - off);
		int m;

		if (n > 0) {
			sent += (uint64_t)n;
			off = (off + (uint32_t)n) % size;
		} else if (n != -EAGAIN) {
			ret = n;
			goto out;
		}
		m = dn_stack_poll(st, ev, DN_BENCH_EVENTS);
		for (i = 0; i < m; i++) {
			if (ev[i].kind == DN_EV_ERROR) {
				ret = dn_error(-ev[i].arg, "stream failed: %s",
					strerror(ev[i].arg));
				goto out;
			}
		}
		if (n <= 0 && m == 0)
			dn_idle_step(st, &idle, 10);
		else if (m > 0)
			dn_idle_reset(&idle);
	}
	ret = dn_shutdown(st, id, DN_SHUT_WR);
	if (ret < 0)
		goto out;
	while (have < 8) {
		int n, m = dn_stack_poll(st, ev, DN_BENCH_EVENTS);

		for (i = 0; i < m; i++) {
			if (ev[i].kind == DN_EV_ERROR) {
				ret = dn_error(-ev[i].arg, "stream failed: %s",
					strerror(ev[i].arg));
				goto out;
			}
		}
		n = dn_recv(st, id, reply + have, 8 - have);
		if (n > 0)
			have += (uint32_t)n;
		else if (n == 0)
			break;
		else if (m == 0)
			dn_idle_step(st, &idle, 10);
	}
	if (have < 8) {
		ret = dn_error(-EPROTO, "sink closed before its count");
		goto out;
	}
	for (i = 0; i < 8; i++)
		count = (count << 8) | reply[i];
	if (count != sent) {
		ret = dn_error(-EPROTO, "sink counted %llu bytes of %llu sent",
			(unsigned long long)count, (unsigned long long)sent);
		goto out;
	}
	out->bytes = count;
	out->seconds = (double)(dn_clock_ns() - start) / 1e9;
	out->sleeps = idle.sleeps;
	dn_close(st, id);
out:
	free(buf);
	return ret;
}

/* ---- switch forwarding rate ---- */

static void
dn_blast_frame(unsigned char *f, uint16_t len, uint32_t src, uint32_t dst)
{
	static const unsigned char udp_hdr[8] = { 0x13, 0x89, 0x00, 0x09 };
	uint16_t ip_len = (uint16_t)(len - 14);
	uint32_t sum = 0;
	int i;

	memset(f, 0, len);
	f[0] = 0x02; f[1] = 0x00;
	f[2] = dst >> 24; f[3] = dst >> 16; f[4] = dst >> 8; f[5] = dst;
	f[6] = 0x02; f[7] = 0x00;
	f[8] = src >> 24; f[9] = src >> 16; f[10] = src >> 8; f[11] = src;
	f[12] = 0x08; f[13] = 0x00;
	f[14] = 0x45; f[16] = ip_len >> 8; f[17] = ip_len & 0xff;
	f[22] = 64; f[23] = 17;
	f[26] = src >> 24; f[27] = src >> 16; f[28] = src >> 8; f[29] = src;
	f[30] = dst >> 24; f[31] = dst >> 16; f[32] = dst >> 8; f[33] = dst;
	for (i = 14; i < 34; i += 2)
		sum += (uint32_t)(f[i] << 8 | f[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	f[24] = (unsigned char)(~sum >> 8);
	f[25] = (unsigned char)~sum;
	memcpy(f + 34, udp_hdr, sizeof(udp_hdr));
	f[38] = (unsigned char)((ip_len - 20) >> 8);
	f[39] = (unsigned char)(ip_len - 20);
}

int
dn_bench_blast(struct dn_link **links, const uint32_t *ips, int k,
	uint16_t frame_len, double seconds, struct dn_bench_result *out)
{
	unsigned char (*frames)[2048];
	unsigned char *reached;
	struct dn_rxseg seg;
	uint64_t start, end, got = 0, sent = 0;
	int i, j;

	memset(out, 0, sizeof(*out));
	if (k <= 0 || frame_len < 60 || frame_len > 2000)
		return dn_error(-EINVAL, "blast: at least one link and 60 to 2000 "
			"byte frames");
	frames = malloc((size_t)k * sizeof(*frames));
	reached = calloc((size_t)k, 1);
	if (frames == NULL || reached == NULL) {
		free(frames);
		free(reached);
		return dn_error(-ENOMEM, "out of memory for the blast");
	}
	for (i = 0; i < k; i++)
		dn_blast_frame(frames[i], frame_len, ips[i], ips[(i + 1) % k]);
	start = dn_clock_ns();
	end = start + (uint64_t)(seconds * 1e9);
	while (dn_clock_ns() < end) {
		for (i = 0; i < k; i++) {
			struct dn_iov iov = { frames[i], frame_len };

			for (j = 0; j < 32; j++)
				if (dn_link_tx(links[i], &iov, 1) == 0)
					sent++;
			dn_link_tx_flush(links[i]);
		}
		for (i = 0; i < k; i++) {
			while (dn_link_rx(links[i], &seg) != 0) {
				dn_link_free_seg(seg.seg);
				got++;
				reached[i] = 1;
			}
		}
	}
	for (i = 0; i < k; i++)
		out->links_reached += reached[i];
	free(reached);
	out->round_trips = got;
	out->bytes = sent;	/* frames offered */
	out->seconds = (double)(dn_clock_ns() - start) / 1e9;
	free(frames);
	return 0;
}

/* Fast channels: the floor under the Python numbers. Both ends spin (with
 * a yield when idle for a while): a benchmark runs for a fixed time. */

static void
dn_fc_idle(unsigned int *empty)
{
	if (++*empty % 64 == 0)
		sched_yield();
}

int
dn_bench_fc_echo(struct dn_fc *fc, double max_seconds)
{
	char buf[65536];
	uint64_t end = dn_clock_ns() + (uint64_t)(max_seconds * 1e9);
	unsigned int empty = 0;
	int n, w, off;

	while (dn_clock_ns() < end) {
		n = dn_fc_read(fc, buf, sizeof(buf));
		if (n == -EAGAIN) {
			dn_fc_idle(&empty);
			continue;
		}
		if (n <= 0)
			return n == 0 ? 0 : n;	/* end of stream, or reset */
		for (off = 0; off < n; off += w) {
			w = dn_fc_write(fc, buf + off, (uint32_t)(n - off));
			if (w < 0)
				return w;
		}
	}
	return 0;
}

int
dn_bench_fc_ping(struct dn_fc *fc, uint32_t size, double seconds,
	struct dn_bench_result *out)
{
	char msg[65536], buf[65536];
	uint32_t *samples;
	uint64_t start, end, sent, n = 0;
	uint32_t got;
	unsigned int empty = 0;
	int r;

	if (size == 0 || size > sizeof(msg))
		return dn_error(-EINVAL, "message size must be 1..65536");
	samples = malloc(sizeof(*samples) * DN_BENCH_SAMPLES);
	if (samples == NULL)
		return dn_error(-ENOMEM, "out of memory for samples");
	memset(msg, 'p', size);
	start = dn_clock_ns();
	end = start + (uint64_t)(seconds * 1e9);
	while ((sent = dn_clock_ns()) < end) {
		r = dn_fc_write(fc, msg, size);
		if (r != (int)size) {
			free(samples);
			return dn_error(r < 0 ? r : -ENOBUFS,
				"fast channel write failed");
		}
		for (got = 0; got < size; ) {
			r = dn_fc_read(fc, buf, sizeof(buf));
			if (r == -EAGAIN) {
				dn_fc_idle(&empty);
				continue;
			}
			if (r <= 0) {
				free(samples);
				return dn_error(r < 0 ? r : -ECONNRESET,
					"the echo side went away");
			}
			got += (uint32_t)r;
		}
		if (n < DN_BENCH_SAMPLES)
			samples[n] = (uint32_t)(dn_clock_ns() - sent);
		n++;
	}
	out->round_trips = n;
	out->bytes = n * size;
	out->seconds = (double)(dn_clock_ns() - start) / 1e9;
	dn_bench_latency(samples, n, out);
	out->sleeps = 0;
	free(samples);
	dn_fc_shutdown(fc);
	return 0;
}
