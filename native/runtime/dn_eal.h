/*
 * DPDK EAL life cycle inside a Python process (slave or master).
 *
 * rte_eal_init() can run once per process; the Python side builds the
 * argument list (file prefix, memory, --no-huge decision) and calls this
 * once. Threads other than the initialising one register themselves before
 * touching mempools, so they get an lcore id and a mempool cache.
 */
#ifndef DN_EAL_H
#define DN_EAL_H

/* Initialises the EAL with argv (argv[0] is a program name). Returns 0, or
 * -EALREADY if it was already initialised, or another -errno. */
int dn_eal_init(int argc, char **argv);

/* Registers the calling thread with the EAL if it is not an EAL thread. */
int dn_eal_register_thread(void);

/* Bytes of DPDK heap memory in use and reserved (all sockets). */
int dn_eal_memory(unsigned long long *in_use, unsigned long long *total);

#endif /* DN_EAL_H */
