#include <rte_mbuf.h>

#include "dn_clock.h"
#include "dn_limit.h"

#define DN_JUMBO 9018
/* A clock refill after this long fills any bucket a limit allows (the
 * burst is 10 ms of the rate) and keeps rate * elapsed within 64 bits at
 * the highest rate the master takes. */
#define DN_REFILL_MAX_US 10000000ull

void
dn_tokens_configure(struct dn_tokens *t, uint64_t bits_per_s,
	uint64_t pkts_per_s, uint64_t burst_bytes, uint64_t burst_pkts)
{
	t->rate_bytes = bits_per_s / 8;
	t->rate_pkts = pkts_per_s;
	if (burst_bytes == 0)
		burst_bytes = t->rate_bytes / 100;
	/* Smaller, a jumbo frame could never pass. */
	if (burst_bytes < 2 * DN_JUMBO)
		burst_bytes = 2 * DN_JUMBO;
	if (burst_bytes > INT64_MAX / 2)
		burst_bytes = INT64_MAX / 2;
	if (burst_pkts == 0) {
		burst_pkts = t->rate_pkts / 100;
		if (burst_pkts < 2)
			burst_pkts = 2;
	}
	t->burst_bytes = (int64_t)burst_bytes;
	t->burst_pkts = (int64_t)burst_pkts;
	t->bytes = t->burst_bytes;
	t->pkts = t->burst_pkts;
	t->carry_bytes = 0;
	t->carry_pkts = 0;
	t->stamp_ns = dn_clock_ns();
}

static void
dn_refill_one(int64_t *tokens, uint64_t *carry, uint64_t rate,
	int64_t burst, uint64_t elapsed_us)
{
	uint64_t scaled = rate * elapsed_us + *carry;

	*tokens += (int64_t)(scaled / 1000000);
	*carry = scaled % 1000000;
	if (*tokens > burst) {
		*tokens = burst;
		*carry = 0;
	}
}

void
dn_tokens_refill(struct dn_tokens *t, uint64_t elapsed_us)
{
	if (t->rate_bytes)
		dn_refill_one(&t->bytes, &t->carry_bytes, t->rate_bytes,
			t->burst_bytes, elapsed_us);
	if (t->rate_pkts)
		dn_refill_one(&t->pkts, &t->carry_pkts, t->rate_pkts,
			t->burst_pkts, elapsed_us);
}

static void
dn_tokens_clock_refill(struct dn_tokens *t)
{
	uint64_t now = dn_clock_ns(), us;

	us = (now - t->stamp_ns) / 1000;
	/* The sub-microsecond rest stays for the next refill. */
	t->stamp_ns += us * 1000;
	dn_tokens_refill(t, us < DN_REFILL_MAX_US ? us : DN_REFILL_MAX_US);
}

uint32_t
dn_tokens_allowance(struct dn_tokens *t, uint32_t want)
{
	int64_t n = want;

	dn_tokens_clock_refill(t);
	if (t->rate_bytes && t->bytes < n)
		n = t->bytes;
	if (t->rate_pkts && t->pkts * DN_LIMIT_SEGMENT < n)
		n = t->pkts * DN_LIMIT_SEGMENT;
	return n > 0 ? (uint32_t)n : 0;
}

void
dn_tokens_spend(struct dn_tokens *t, uint32_t n)
{
	if (t->rate_bytes)
		t->bytes -= n;
	if (t->rate_pkts)
		t->pkts -= (n + DN_LIMIT_SEGMENT - 1) / DN_LIMIT_SEGMENT;
}

double
dn_tokens_delay(const struct dn_tokens *t)
{
	double wait = 0, w;

	if (t->rate_bytes) {
		int64_t need = t->burst_bytes < DN_LIMIT_SEGMENT ?
			t->burst_bytes : DN_LIMIT_SEGMENT;

		w = ((double)need - (double)t->bytes -
			(double)t->carry_bytes / 1e6) / (double)t->rate_bytes;
		if (w > wait)
			wait = w;
	}
	if (t->rate_pkts) {
		w = (1.0 - (double)t->pkts - (double)t->carry_pkts / 1e6) /
			(double)t->rate_pkts;
		if (w > wait)
			wait = w;
	}
	return wait > 0.0005 ? wait : 0.0005;
}

void
dn_bucket_configure(struct dn_bucket *b, uint64_t bits_per_s,
	uint64_t pkts_per_s, uint64_t burst_bytes, uint64_t burst_pkts)
{
	dn_tokens_configure(&b->tokens, bits_per_s, pkts_per_s, burst_bytes,
		burst_pkts);
}

int
dn_bucket_enqueue(struct dn_bucket *b, struct rte_mbuf *m)
{
	if (b->len == DN_LIMIT_QUEUE) {
		b->dropped++;
		return -1;
	}
	b->q[(b->head + b->len) % DN_LIMIT_QUEUE] = m;
	b->len++;
	b->delayed++;
	return 0;
}

struct rte_mbuf *
dn_bucket_dequeue(struct dn_bucket *b)
{
	struct rte_mbuf *m;

	if (b->len == 0)
		return NULL;
	m = b->q[b->head];
	if (!dn_tokens_take(&b->tokens, m->pkt_len))
		return NULL;
	b->head = (uint16_t)((b->head + 1) % DN_LIMIT_QUEUE);
	b->len--;
	return m;
}

void
dn_bucket_flush(struct dn_bucket *b)
{
	while (b->len > 0) {
		rte_pktmbuf_free(b->q[b->head]);
		b->head = (uint16_t)((b->head + 1) % DN_LIMIT_QUEUE);
		b->len--;
	}
}

int
dn_tokens_admit(struct dn_tokens *t, uint32_t len)
{
	dn_tokens_clock_refill(t);
	return (!t->rate_bytes || t->bytes >= (int64_t)len) &&
		(!t->rate_pkts || t->pkts >= 1);
}

void
dn_tokens_charge(struct dn_tokens *t, uint32_t len)
{
	if (t->rate_bytes)
		t->bytes -= len;
	if (t->rate_pkts)
		t->pkts -= 1;
}
