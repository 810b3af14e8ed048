/*
 * The af_xdp uplink's XDP program (dn_xdp_filter.bpf.c) and what the master
 * does with it.
 *
 * net_af_xdp's own program hands every frame of the port's queue to the
 * AF_XDP socket, so on an interface that also carries the host's addresses
 * the host is cut off. This one hands over only what the af_packet uplink's
 * socket filter takes (dn_uplink.c): IPv4 for DockNet's subnet, ARP asking
 * for or answering it, IPv6 for its prefix and neighbour solicitations for
 * it. Everything else goes on to the kernel, addresses added after the
 * master started included.
 *
 * The subnet and prefix are known only when the master starts: they live in
 * the program's array map dn_xdp_cfg, filled once the port has attached the
 * program. Until then (on = 0) the program passes every frame on. The entry
 * also names the master that owns the program, so that the next master on
 * the interface can tell a program left behind by a master killed with -9
 * (removed) from one a running master uses (refused).
 */
#ifndef DN_XDP_H
#define DN_XDP_H

#include <linux/types.h>

/* The program's name, as the kernel keeps it (at most 15 characters). */
#define DN_XDP_PROG_NAME "dn_xdp_filter"
#define DN_XDP_CFG_MAP "dn_xdp_cfg"
/* The object file net_af_xdp loads it from (xdp_prog=), beside _lib. */
#define DN_XDP_OBJECT "dn_xdp_filter.o"

struct dn_xdp_cfg {
	__u32 on;		/* 0: pass everything to the kernel */
	__u32 subnet;		/* IPv4, network order, masked */
	__u32 netmask;		/* network order */
	__u32 v6;		/* 1: prefix6/mask6 hold DockNet's prefix */
	__u32 prefix6[4];	/* network order, masked */
	__u32 mask6[4];
	__u32 owner_pid;	/* the master that filled this in */
	__u32 pad;
	__u64 owner_start;	/* its start time (/proc/PID/stat field 22) */
};

#ifndef __bpf__
#include <stdint.h>

struct dn_prefix6;

/* Before the port opens on iface: an XDP program of DockNet's left there
 * by a master that is gone is removed (1 returned); 0 when there is none.
 * -EBUSY when a running master's is there, and with strict (the port is
 * to load DockNet's program) -EEXIST when another program is, each with
 * the reason in dn_last_error. */
int dn_xdp_claim(const char *iface, int strict);

/* Once the port has started with DockNet's program: fill in its
 * configuration (subnet and netmask in host order, p6 with len 0 for no
 * IPv6), this process as its owner. */
int dn_xdp_configure(const char *iface, uint32_t subnet, uint32_t netmask,
	const struct dn_prefix6 *p6);
#endif

#endif /* DN_XDP_H */
