#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "dn_eal.h"
#include "dn_error.h"

static atomic_int dn_eal_state; /* 0 none, 1 initialising, 2 ready */

int
dn_eal_init(int argc, char **argv)
{
	int expected = 0;
	int ret;

	if (!atomic_compare_exchange_strong(&dn_eal_state, &expected, 1))
		return dn_error(-EALREADY, "DPDK EAL is already initialised "
			"in this process");
	ret = rte_eal_init(argc, argv);
	if (ret < 0) {
		int err = rte_errno ? rte_errno : EINVAL;

		/* The EAL cannot be initialised twice, even after a failure. */
		atomic_store(&dn_eal_state, 3);
		return dn_error(-err, "rte_eal_init failed: %s",
			rte_strerror(err));
	}
	atomic_store(&dn_eal_state, 2);
	return 0;
}

int
dn_eal_register_thread(void)
{
	if (atomic_load(&dn_eal_state) != 2)
		return dn_error(-ENODEV, "DPDK EAL is not initialised");
	if (rte_lcore_id() != LCORE_ID_ANY)
		return 0;
	if (rte_thread_register() < 0)
		return dn_error(-rte_errno, "rte_thread_register failed: %s",
			rte_strerror(rte_errno));
	return 0;
}

int
dn_eal_memory(unsigned long long *in_use, unsigned long long *total)
{
	struct rte_malloc_socket_stats st;
	unsigned int socket;

	*in_use = 0;
	*total = 0;
	for (socket = 0; socket < RTE_MAX_NUMA_NODES; socket++) {
		if (rte_malloc_get_socket_stats(socket, &st) < 0)
			continue;
		*in_use += st.heap_allocsz_bytes;
		*total += st.heap_totalsz_bytes;
	}
	return 0;
}
