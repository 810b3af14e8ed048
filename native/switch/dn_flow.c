/* Per-endpoint connection table for steering (see dn_flow.h). */
#include <stddef.h>

#include "dn_flow.h"

static inline uint32_t
dn_flow_mix(uint32_t a, uint32_t b, uint32_t seed)
{
	uint64_t h = ((uint64_t)a << 32 | b) * 0x9e3779b97f4a7c15ull;

	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull ^ seed;
	return (uint32_t)(h >> 32);
}

/* An IPv6 key hashes apart from its twin's IPv4 one: the seed differs. */
static inline uint32_t
dn_flow_hash(uint32_t rip, uint16_t rport, uint16_t lport, uint8_t v6)
{
	return dn_flow_mix(rip, (uint32_t)rport << 16 | lport,
		v6 ? 0x2545f491u : 0);
}

uint32_t
dn_flow_spread(uint32_t rip, uint16_t rport, uint16_t lport, uint8_t v6)
{
	return dn_flow_mix(rip, (uint32_t)rport << 16 | lport,
		v6 ? 0x68e31da4u : 0x5bd1e995u);
}

static inline int
dn_flow_match(const struct dn_flow *f, uint32_t rip, uint16_t rport,
	uint16_t lport, uint8_t v6)
{
	return f->rip == rip && f->rport == rport && f->lport == lport &&
		f->v6 == v6;
}

struct dn_flow *
dn_flow_find(struct dn_flows *t, uint32_t rip, uint16_t rport,
	uint16_t lport, uint8_t v6)
{
	uint32_t h = dn_flow_hash(rip, rport, lport, v6);
	unsigned int i;

	for (i = 0; i < DN_FLOW_PROBES; i++) {
		struct dn_flow *f = &t->e[(h + i) & (DN_FLOW_ENTRIES - 1)];

		if (f->state == DN_FLOW_EMPTY)
			return NULL;
		if (f->state != DN_FLOW_DEAD && dn_flow_match(f, rip, rport,
		    lport, v6))
			return f;
	}
	return NULL;
}

static int
dn_flow_expired(const struct dn_flow *f, uint32_t now, uint32_t live_links)
{
	uint32_t age = now - f->seen;

	switch (f->state) {
	case DN_FLOW_EMPTY:
	case DN_FLOW_DEAD:
		return 1;
	case DN_FLOW_SYN:
		if (age >= DN_FLOW_SYN_S)
			return 1;
		break;
	case DN_FLOW_CLOSING:
		if (age >= DN_FLOW_CLOSING_S)
			return 1;
		break;
	default:
		if (age >= DN_FLOW_IDLE_S)
			return 1;
		break;
	}
	return !(live_links >> f->link & 1);
}

struct dn_flow *
dn_flow_insert(struct dn_flows *t, uint32_t rip, uint16_t rport,
	uint16_t lport, uint8_t v6, uint8_t link, uint8_t state, uint32_t now,
	uint32_t live_links)
{
	uint32_t h = dn_flow_hash(rip, rport, lport, v6);
	struct dn_flow *spare = NULL, *f = NULL;
	unsigned int i;

	for (i = 0; i < DN_FLOW_PROBES; i++) {
		f = &t->e[(h + i) & (DN_FLOW_ENTRIES - 1)];
		if (f->state != DN_FLOW_EMPTY && f->state != DN_FLOW_DEAD &&
		    dn_flow_match(f, rip, rport, lport, v6))
			break;	/* the key's own entry: replaced */
		if (spare == NULL && dn_flow_expired(f, now, live_links))
			spare = f;
		if (f->state == DN_FLOW_EMPTY)
			break;	/* the key is not further on */
		f = NULL;
	}
	if (f == NULL || (f->state == DN_FLOW_EMPTY && spare != NULL))
		f = spare;
	if (f == NULL)
		return NULL;
	f->rip = rip;
	f->rport = rport;
	f->lport = lport;
	f->v6 = v6;
	f->link = link;
	f->state = state;
	f->seen = now;
	f->ack = 0;
	return f;
}

void
dn_flow_remove(struct dn_flows *t, struct dn_flow *f)
{
	(void)t;
	f->state = DN_FLOW_DEAD;
}

void
dn_flow_forget_link(struct dn_flows *t, uint8_t link)
{
	unsigned int i;

	for (i = 0; i < DN_FLOW_ENTRIES; i++) {
		struct dn_flow *f = &t->e[i];

		if (f->state != DN_FLOW_EMPTY && f->state != DN_FLOW_DEAD &&
		    f->link == link)
			dn_flow_remove(t, f);
	}
}
