#include <errno.h>
#include <netinet/in.h>

#include "dn_policy.h"

int
dn_policy_set(struct dn_policy *p, uint16_t from, uint16_t to, uint16_t port,
	int allow)
{
	unsigned int i;

	if (from >= DN_MAX_TENANTS || to >= DN_MAX_TENANTS)
		return -EINVAL;
	if (port == 0) {
		p->any[from][to] = allow ? 1 : 0;
		return 0;
	}
	for (i = 0; i < p->n_rules; i++) {
		struct dn_port_rule *r = &p->rules[i];

		if (r->from == from && r->to == to && r->port == port) {
			if (!allow)
				*r = p->rules[--p->n_rules];
			return 0;
		}
	}
	if (!allow)
		return 0;
	if (p->n_rules == DN_MAX_PORT_RULES)
		return -ENOSPC;
	p->rules[p->n_rules++] = (struct dn_port_rule){ from, to, port };
	return 0;
}

static int
dn_rule(const struct dn_policy *p, uint16_t from, uint16_t to, uint16_t port)
{
	unsigned int i;

	if (p->any[from][to])
		return 1;
	for (i = 0; i < p->n_rules; i++) {
		const struct dn_port_rule *r = &p->rules[i];

		if (r->from == from && r->to == to && r->port == port)
			return 1;
	}
	return 0;
}

int
dn_policy_allows(const struct dn_policy *p, uint16_t from, uint16_t to,
	uint8_t proto, uint16_t sport, uint16_t dport, int syn_only)
{
	int ported = proto == IPPROTO_TCP || proto == IPPROTO_UDP;

	if (from == to)
		return 1;
	if (dn_rule(p, from, to, ported ? dport : 0))
		return 1;
	/* A reply to a connection the other side was allowed to open. */
	if (!syn_only && dn_rule(p, to, from, ported ? sport : 0))
		return 1;
	return 0;
}
