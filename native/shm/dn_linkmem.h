/*
 * The shared memory of one master-slave link: a memfd the master creates
 * for each endpoint and hands to the slave at attach.
 *
 *   page 0      the doorbell (dn_doorbell.h)
 *   page 1      the two rings' positions (slave->master, master->slave)
 *   then        the slave->master ring's bytes, the master->slave ring's
 *
 * The same layout serves a peer link: a link the master sets up between two
 * slaves, each side reading and writing as one of the two roles.
 *
 * The master owns the memory: it maps it when the endpoint is added and
 * unmaps it only after its switch thread has let go of the endpoint, so a
 * slave that dies or closes at any moment can never pull the rings out
 * from under the switch. (With memif ports it could: the PMD unmapped a
 * departed peer's regions on DPDK's interrupt thread while the switch
 * thread was reading them.)
 */
#ifndef DN_LINKMEM_H
#define DN_LINKMEM_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>

#include "dn_doorbell.h"
#include "dn_framering.h"

#define DN_LINKMEM_VERSION 2
/* The master seals each link's memory once sized: a slave that could
 * shrink it would turn the switch thread's next access into SIGBUS. */
#define DN_LINKMEM_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
/* 1 MiB a direction holds more than lwIP's 512 KiB send window. */
#define DN_LINK_RING_SIZE (1u << 20)

struct dn_linkmem_rings {
	struct dn_fr_shared to_master;
	struct dn_fr_shared to_slave;
	/* Set by the slave once it has mapped the link, cleared when it
	 * closes it: the master's "link up". */
	_Alignas(64) _Atomic uint32_t slave_attached;
	uint32_t ring_size;	/* informational: each side uses its own */
	uint32_t max_frame;
	/* A peer link (dn_link.h) between two slaves has the same layout;
	 * the slave in the master's place sets this one. The switch never
	 * does. */
	_Atomic uint32_t master_attached;
};

_Static_assert(sizeof(struct dn_linkmem_rings) <= 4096,
	"ring positions must fit their page");

struct dn_linkmem {
	struct dn_doorbell *bell;
	struct dn_linkmem_rings *rings;
	uint8_t *to_master;
	uint8_t *to_slave;
	size_t size;
};

static inline size_t
dn_linkmem_size(uint32_t ring_size)
{
	return 2 * 4096 + 2 * (size_t)ring_size;
}

static inline void
dn_linkmem_layout(struct dn_linkmem *lm, void *base, uint32_t ring_size)
{
	uint8_t *b = base;

	lm->bell = base;
	lm->rings = (struct dn_linkmem_rings *)(b + 4096);
	lm->to_master = b + 2 * 4096;
	lm->to_slave = lm->to_master + ring_size;
	lm->size = dn_linkmem_size(ring_size);
}

#endif /* DN_LINKMEM_H */
