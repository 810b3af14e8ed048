/*
 * The master's side of the af_xdp uplink's XDP program (dn_xdp.h): finding
 * it on the interface, removing one left behind, and configuring it.
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dn_addr6.h"
#include "dn_error.h"
#include "dn_xdp.h"

#define DN_XDP_MAX_MAPS 16

/* The program attached to the interface: its descriptor (name filled in),
 * -ENOENT when there is none, or another negative errno. */
static int
dn_xdp_attached(int ifindex, char *name, size_t len)
{
	struct bpf_prog_info info;
	__u32 id = 0, ilen = sizeof(info);
	int fd, ret;

	ret = bpf_xdp_query_id(ifindex, 0, &id);
	if (ret < 0)
		return ret;
	if (id == 0)
		return -ENOENT;
	fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return -errno;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &ilen) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	snprintf(name, len, "%s", info.name);
	return fd;
}

/* The configuration map of the program (a descriptor), or -ENOENT: only
 * DockNet's program has one of that name and size. */
static int
dn_xdp_cfg_map(int prog_fd)
{
	struct bpf_prog_info info;
	__u32 ids[DN_XDP_MAX_MAPS], ilen = sizeof(info), i, n;

	memset(&info, 0, sizeof(info));
	info.nr_map_ids = DN_XDP_MAX_MAPS;
	info.map_ids = (__u64)(unsigned long)ids;
	if (bpf_obj_get_info_by_fd(prog_fd, &info, &ilen) < 0)
		return -errno;
	n = info.nr_map_ids < DN_XDP_MAX_MAPS ? info.nr_map_ids :
		DN_XDP_MAX_MAPS;
	for (i = 0; i < n; i++) {
		struct bpf_map_info mi;
		__u32 mlen = sizeof(mi);
		int mfd = bpf_map_get_fd_by_id(ids[i]);

		if (mfd < 0)
			continue;
		memset(&mi, 0, sizeof(mi));
		if (bpf_obj_get_info_by_fd(mfd, &mi, &mlen) == 0 &&
		    strcmp(mi.name, DN_XDP_CFG_MAP) == 0 &&
		    mi.type == BPF_MAP_TYPE_ARRAY &&
		    mi.value_size == sizeof(struct dn_xdp_cfg))
			return mfd;
		close(mfd);
	}
	return -ENOENT;
}

/* A process's start time in clock ticks since boot (field 22 of
 * /proc/PID/stat), or 0: with the pid it names one process for good. */
static __u64
dn_proc_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	FILE *f;
	size_t n;
	int field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The name (field 2) may hold spaces and parentheses: count from
	 * its last ')'. */
	p = strrchr(buf, ')');
	for (field = 2; p != NULL && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (p != NULL)
		start = strtoull(p + 1, NULL, 10);
	return start;
}

static int
dn_xdp_owner_alive(const struct dn_xdp_cfg *c)
{
	if (c->owner_pid == 0 || (kill((pid_t)c->owner_pid, 0) < 0 &&
	    errno != EPERM))
		return 0;
	return dn_proc_start((pid_t)c->owner_pid) == c->owner_start;
}

int
dn_xdp_claim(const char *iface, int strict)
{
	char name[BPF_OBJ_NAME_LEN];
	struct dn_xdp_cfg c;
	__u32 key = 0;
	int ifindex = (int)if_nametoindex(iface), fd, mfd, ret;

	if (ifindex == 0)
		return 0;	/* the port says so when it opens */
	fd = dn_xdp_attached(ifindex, name, sizeof(name));
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return dn_error(fd, "uplink %s: cannot ask for its XDP "
			"program: %s", iface, strerror(-fd));
	mfd = strcmp(name, DN_XDP_PROG_NAME) == 0 ? dn_xdp_cfg_map(fd) :
		-ENOENT;
	close(fd);
	if (mfd < 0 && !strict)
		return 0;	/* net_af_xdp's own program copes, or says why */
	if (mfd < 0)
		return dn_error(-EEXIST, "uplink %s already has an XDP program "
			"(%s) that is not DockNet's, and af_xdp needs its own: "
			"'ip link set dev %s xdp off' removes it", iface,
			name[0] ? name : "unnamed", iface);
	memset(&c, 0, sizeof(c));
	ret = bpf_map_lookup_elem(mfd, &key, &c) < 0 ? -errno : 0;
	close(mfd);
	if (ret == 0 && dn_xdp_owner_alive(&c))
		return dn_error(-EBUSY, "uplink %s: another DockNet master "
			"(pid %u) has its af_xdp uplink there", iface,
			c.owner_pid);
	if (bpf_xdp_detach(ifindex, 0, NULL) < 0)
		return dn_error(-errno, "uplink %s: cannot remove the XDP "
			"program a stopped master left there: %s", iface,
			strerror(errno));
	return 1;
}

int
dn_xdp_configure(const char *iface, uint32_t subnet, uint32_t netmask,
	const struct dn_prefix6 *p6)
{
	char name[BPF_OBJ_NAME_LEN];
	struct dn_xdp_cfg c;
	__u32 key = 0;
	int ifindex = (int)if_nametoindex(iface), fd, mfd, i, ret;

	fd = ifindex ? dn_xdp_attached(ifindex, name, sizeof(name)) : -ENODEV;
	mfd = fd >= 0 && strcmp(name, DN_XDP_PROG_NAME) == 0 ?
		dn_xdp_cfg_map(fd) : -ENOENT;
	if (fd >= 0)
		close(fd);
	if (mfd < 0)
		return dn_error(-ENOENT, "uplink %s: the af_xdp port did not "
			"attach DockNet's XDP program", iface);
	memset(&c, 0, sizeof(c));
	c.subnet = htonl(subnet & netmask);
	c.netmask = htonl(netmask);
	c.v6 = p6->len != 0;
	for (i = 0; i < 4 && c.v6; i++) {
		c.mask6[i] = htonl(dn_prefix6_mask(p6, i));
		c.prefix6[i] = htonl(dn_prefix6_word(p6, i));
	}
	c.owner_pid = (__u32)getpid();
	c.owner_start = dn_proc_start(getpid());
	c.on = 1;
	ret = bpf_map_update_elem(mfd, &key, &c, BPF_ANY) < 0 ? -errno : 0;
	close(mfd);
	if (ret < 0)
		return dn_error(ret, "uplink %s: cannot configure its XDP "
			"program: %s", iface, strerror(-ret));
	return 0;
}
