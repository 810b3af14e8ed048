#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dn_error.h"
#include "dn_fuzzlink.h"

/* The real link's room for a frame past the MTU: Ethernet header and a
 * VLAN tag. */
#define DN_FUZZLINK_L2 18
#define DN_FUZZLINK_TX_MAX 65536
/* Room the harness allows past a frame: none. lwIP 2.1.3's tcp_parseopt()
 * reads an option's length byte even when the kind is the options' last
 * byte, past the frame when the segment carries no data; the input hook
 * (lwip/dn_hooks.c) drops such segments first, and a read past the frame
 * is a finding again (corpus/stack/crash-tcp-option-overread). */
#define DN_FUZZLINK_SLACK 0

/* A segment: its header, the private area the netif keeps its pbuf in,
 * then the frame, each its own allocation so overruns are caught. */
struct dn_fuzzseg {
	struct dn_link *link;
	void *priv;
	uint8_t *data;
	uint32_t len;
};

struct dn_link {
	uint16_t mtu;
	uint16_t priv_size;
	int pool_low;
	int down;
	struct dn_fuzzseg *pending;
	long segs_out;
	uint8_t last_tx[DN_FUZZLINK_TX_MAX];
	uint32_t last_tx_len;
	struct dn_link_stats st;
};

/* Harness-local: the stack keeps its link behind an opaque pointer. */
static struct dn_link *dn_fuzzlink_last;

static void
dn_fuzzseg_free(struct dn_fuzzseg *s)
{
	free(s->priv);
	free(s->data);
	free(s);
}

int
dn_link_open(const struct dn_link_config *cfg, struct dn_link **out)
{
	struct dn_link *link = calloc(1, sizeof(*link));

	if (link == NULL)
		return dn_error(-ENOMEM, "out of memory for the fuzz link");
	link->mtu = cfg->mtu;
	link->priv_size = cfg->priv_size;
	dn_fuzzlink_last = link;
	*out = link;
	return 0;
}

void
dn_link_close(struct dn_link *link)
{
	if (link->pending != NULL)
		dn_fuzzseg_free(link->pending);
	/* The stack must have given every segment back by now: a segment
	 * still out is a pbuf lwIP or the stack forgot. */
	if (link->segs_out != 0) {
		fprintf(stderr, "dn_fuzzlink: %ld received segments never "
			"given back\n", link->segs_out);
		abort();
	}
	if (dn_fuzzlink_last == link)
		dn_fuzzlink_last = NULL;
	free(link);
}

int
dn_link_rx(struct dn_link *link, struct dn_rxseg *seg)
{
	struct dn_fuzzseg *s = link->pending;

	if (s == NULL)
		return 0;
	link->pending = NULL;
	link->segs_out++;
	link->st.rx_frames++;
	seg->seg = s;
	seg->priv = s->priv;
	seg->data = s->data;
	seg->len = (uint16_t)s->len;
	return 1;
}

void
dn_link_free_seg(void *seg)
{
	struct dn_fuzzseg *s = seg;

	s->link->segs_out--;
	dn_fuzzseg_free(s);
}

int
dn_link_tx(struct dn_link *link, const struct dn_iov *iov, unsigned int n)
{
	uint32_t len = 0;
	unsigned int i;

	if (link->down) {
		link->st.tx_dropped++;
		return -ENOTCONN;
	}
	for (i = 0; i < n; i++)
		len += iov[i].len;
	/* The real ring refuses what its records cannot hold. */
	if (len == 0 || len > (uint32_t)link->mtu + DN_FUZZLINK_L2) {
		link->st.tx_dropped++;
		return -EMSGSIZE;
	}
	link->last_tx_len = 0;
	for (i = 0; i < n; i++) {
		memcpy(link->last_tx + link->last_tx_len, iov[i].base,
			iov[i].len);
		link->last_tx_len += iov[i].len;
	}
	link->st.tx_frames++;
	return 0;
}

void
dn_link_tx_flush(struct dn_link *link)
{
}

void
dn_link_set_down(struct dn_link *link)
{
	link->down = 1;
}

int
dn_link_is_down(const struct dn_link *link)
{
	return link->down;
}

/* The harness has one master for a stack's whole life. */
int
dn_link_remap(struct dn_link *link, int shm_fd, uint16_t mtu, int wake_fd,
	int peer_wake_fd)
{
	(void)link;
	(void)shm_fd;
	(void)mtu;
	(void)wake_fd;
	(void)peer_wake_fd;
	return dn_error(-ENOTSUP, "the fuzz link cannot move to another "
		"master");
}

/* Frames reach the harness's stack one way, as if the switch sent them:
 * what a peer link adds is the frame check before that (dn_link.c). */
int
dn_link_peer_add(struct dn_link *link, const struct dn_peer_config *cfg)
{
	(void)link;
	(void)cfg;
	return dn_error(-ENOTSUP, "the fuzz link has no peer links");
}

int
dn_link_peer_remove(struct dn_link *link, uint64_t id)
{
	(void)link;
	return dn_error(-ENOENT, "no peer link %llu", (unsigned long long)id);
}

void
dn_link_set_peer_egress(struct dn_link *link, struct dn_tokens *t)
{
	(void)link;
	(void)t;
}

int
dn_link_rx_pending(struct dn_link *link)
{
	return link->pending != NULL;
}

int
dn_link_arm(struct dn_link *link)
{
	return link->pending != NULL;
}

void
dn_link_disarm(struct dn_link *link)
{
}

int
dn_link_wake_fd(const struct dn_link *link)
{
	return -1;
}

int
dn_link_pool_low(const struct dn_link *link)
{
	return link->pool_low;
}

void
dn_link_stats(const struct dn_link *link, struct dn_link_stats *st)
{
	*st = link->st;
}

struct dn_link *
dn_fuzzlink_current(void)
{
	return dn_fuzzlink_last;
}

int
dn_fuzzlink_push(struct dn_link *link, const void *frame, uint32_t len)
{
	struct dn_fuzzseg *s;

	if (link->pending != NULL)
		return -ENOBUFS;
	/* The real link drops what does not fit its mbufs before the netif
	 * sees it, and never hands over an empty frame. */
	if (len == 0 || len > (uint32_t)link->mtu + DN_FUZZLINK_L2) {
		link->st.rx_dropped++;
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->link = link;
	s->priv = malloc(link->priv_size);
	s->data = calloc(1, len + DN_FUZZLINK_SLACK);
	if (s->priv == NULL || s->data == NULL) {
		dn_fuzzseg_free(s);
		return -ENOMEM;
	}
	memcpy(s->data, frame, len);
	s->len = len;
	link->pending = s;
	return 0;
}

void
dn_fuzzlink_set_pool_low(struct dn_link *link, int low)
{
	link->pool_low = low;
}

const uint8_t *
dn_fuzzlink_last_tx(const struct dn_link *link, uint32_t *len)
{
	*len = link->last_tx_len;
	return link->last_tx_len != 0 ? link->last_tx : NULL;
}

long
dn_fuzzlink_segs_out(const struct dn_link *link)
{
	return link->segs_out;
}
