/*
 * Tenant isolation for the switch: who may send to whom.
 *
 * Traffic within a tenant always passes. Between tenants it passes only
 * where a rule allows it: "A may reach B" (any port) or "A may reach B on
 * port P". The switch keeps no connection state, so replies are recognised
 * by their shape: a frame from B to A passes under A's rule unless it opens
 * a connection (a TCP SYN without ACK), so B still cannot start one.
 */
#ifndef DN_POLICY_H
#define DN_POLICY_H

#include <stdint.h>

#define DN_MAX_TENANTS 256
#define DN_MAX_PORT_RULES 256

struct dn_port_rule {
	uint16_t from;
	uint16_t to;
	uint16_t port;
};

struct dn_policy {
	uint8_t any[DN_MAX_TENANTS][DN_MAX_TENANTS];	/* from, to */
	struct dn_port_rule rules[DN_MAX_PORT_RULES];
	unsigned int n_rules;
};

/* Adds (allow = 1) or removes a rule; port 0 means any port. Returns 0,
 * -EINVAL for a tenant id out of range, -ENOSPC when the table is full. */
int dn_policy_set(struct dn_policy *p, uint16_t from, uint16_t to,
	uint16_t port, int allow);

/* May a frame of protocol proto (IPPROTO_*) from tenant `from` to tenant
 * `to` pass? syn_only: a TCP SYN without ACK. */
int dn_policy_allows(const struct dn_policy *p, uint16_t from, uint16_t to,
	uint8_t proto, uint16_t sport, uint16_t dport, int syn_only);

#endif /* DN_POLICY_H */
