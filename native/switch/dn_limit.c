#include "dn_limit.h"

#define DN_JUMBO 9018

void
dn_bucket_configure(struct dn_bucket *b, uint64_t bits_per_s,
	uint64_t pkts_per_s, uint64_t burst_bytes, uint64_t burst_pkts)
{
	b->rate_bytes = bits_per_s / 8;
	b->rate_pkts = pkts_per_s;
	if (burst_bytes == 0) {
		burst_bytes = b->rate_bytes / 100;
		if (burst_bytes < 2 * DN_JUMBO)
			burst_bytes = 2 * DN_JUMBO;
	}
	if (burst_pkts == 0) {
		burst_pkts = b->rate_pkts / 100;
		if (burst_pkts < 2)
			burst_pkts = 2;
	}
	b->burst_bytes = (int64_t)burst_bytes;
	b->burst_pkts = (int64_t)burst_pkts;
	/* A new limit starts with a full bucket, as a fresh one would. */
	b->tokens_bytes = b->burst_bytes;
	b->tokens_pkts = b->burst_pkts;
	b->carry_bytes = 0;
	b->carry_pkts = 0;
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
	if ((b->rate_bytes && b->tokens_bytes < (int64_t)m->pkt_len) ||
	    (b->rate_pkts && b->tokens_pkts < 1))
		return NULL;
	b->tokens_bytes -= m->pkt_len;
	b->tokens_pkts -= 1;
	b->head = (uint16_t)((b->head + 1) % DN_LIMIT_QUEUE);
	b->len--;
	return m;
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
dn_bucket_refill(struct dn_bucket *b, uint64_t elapsed_us)
{
	if (b->rate_bytes)
		dn_refill_one(&b->tokens_bytes, &b->carry_bytes, b->rate_bytes,
			b->burst_bytes, elapsed_us);
	if (b->rate_pkts)
		dn_refill_one(&b->tokens_pkts, &b->carry_pkts, b->rate_pkts,
			b->burst_pkts, elapsed_us);
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
