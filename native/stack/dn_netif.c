#include <string.h>

#include "lwip/etharp.h"
#include "lwip/ip.h"
#include "lwip/pbuf.h"
#include "lwip/snmp.h"
#include "netif/ethernet.h"

#include "dn_link.h"
#include "dn_netif.h"

/* Most a frame may span: 64 KiB in 2 KiB mbufs, with room to spare. */
#define DN_MAX_SEGS 40

struct dn_rxpbuf {
	struct pbuf_custom pc;
	void *seg;
};

_Static_assert(sizeof(struct dn_rxpbuf) <= DN_NETIF_PRIV_SIZE,
	"pbuf wrapper must fit the mbuf private area");

static void
dn_rxpbuf_free(struct pbuf *p)
{
	struct dn_rxpbuf *rp = (struct dn_rxpbuf *)p;

	dn_link_free_seg(rp->seg);
}

static err_t
dn_netif_output(struct netif *netif, struct pbuf *p)
{
	struct dn_iov iov[DN_MAX_SEGS];
	struct pbuf *q;
	unsigned int n = 0;

	for (q = p; q != NULL; q = q->next) {
		if (q->len == 0)
			continue;
		if (n == DN_MAX_SEGS)
			return ERR_BUF;
		iov[n].base = q->payload;
		iov[n].len = q->len;
		n++;
	}
	if (dn_link_tx(netif->state, iov, n) < 0)
		return ERR_MEM;
	return ERR_OK;
}

err_t
dn_netif_init(struct netif *netif)
{
	netif->name[0] = 'd';
	netif->name[1] = 'n';
	netif->output = etharp_output;
	netif->linkoutput = dn_netif_output;
	netif->hwaddr_len = ETH_HWADDR_LEN;
	netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP |
		NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
	/* frames on the link rings cannot be corrupted between processes: no TCP/UDP
	 * checksums on this link. IP and ICMP keep theirs (cheap, and a ping
	 * from a kernel host through an uplink expects them). */
	NETIF_SET_CHECKSUM_CTRL(netif, NETIF_CHECKSUM_GEN_IP |
		NETIF_CHECKSUM_GEN_ICMP | NETIF_CHECKSUM_CHECK_ICMP);
	return ERR_OK;
}

static struct pbuf *
dn_netif_wrap(struct dn_rxseg *segs, int n, int copy)
{
	struct pbuf *head = NULL;
	int i;

	if (copy) {
		/* The pool is low: hold the bytes in heap memory and give the
		 * mbufs straight back so the link keeps receiving. */
		u16_t total = 0;

		for (i = 0; i < n; i++)
			total += segs[i].len;
		head = pbuf_alloc(PBUF_RAW, total, PBUF_RAM);
		if (head != NULL) {
			u16_t off = 0;

			for (i = 0; i < n; i++) {
				pbuf_take_at(head, segs[i].data, segs[i].len,
					off);
				off += segs[i].len;
			}
		}
		for (i = 0; i < n; i++)
			dn_link_free_seg(segs[i].seg);
		return head;
	}
	for (i = 0; i < n; i++) {
		struct dn_rxpbuf *rp = segs[i].priv;
		struct pbuf *p;

		rp->pc.custom_free_function = dn_rxpbuf_free;
		rp->seg = segs[i].seg;
		p = pbuf_alloced_custom(PBUF_RAW, segs[i].len, PBUF_REF,
			&rp->pc, segs[i].data, segs[i].len);
		if (head == NULL)
			head = p;
		else
			pbuf_cat(head, p);
	}
	return head;
}

/* lwIP checks neither that an IPv4 frame holds an IP header before
 * ip4_input() reads its length field, nor that an ARP frame holds the
 * whole ARP message before etharp_input() reads its addresses, so a frame
 * shorter than its headers would be read past its end (a hostile endpoint
 * can send one: the switch forwards frames of any length). */
static int
dn_netif_runt(const struct dn_rxseg *seg)
{
	const uint8_t *f = seg->data;

	if (seg->len < SIZEOF_ETH_HDR)
		return 1;
	if (f[12] == 0x08 && f[13] == 0x00)
		return seg->len < SIZEOF_ETH_HDR + IP_HLEN;
	if (f[12] == 0x08 && f[13] == 0x06)
		return seg->len < SIZEOF_ETH_HDR + SIZEOF_ETHARP_HDR;
	return 0;
}

int
dn_netif_poll(struct netif *netif, int budget)
{
	struct dn_link *link = netif->state;
	struct dn_rxseg segs[DN_MAX_SEGS];
	int done = 0;
	int copy = -1;

	while (done < budget) {
		struct pbuf *p;
		int n = dn_link_rx(link, segs, DN_MAX_SEGS);

		if (n == 0)
			break;
		/* Once per burst, and only when there is one: counting free
		 * mbufs walks every lcore's cache. */
		if (copy < 0)
			copy = dn_link_pool_low(link);
		done++;
		if (n < 0)
			continue;	/* oversized frame, already dropped */
		if (dn_netif_runt(&segs[0])) {
			int i;

			for (i = 0; i < n; i++)
				dn_link_free_seg(segs[i].seg);
			continue;
		}
		p = dn_netif_wrap(segs, n, copy);
		if (p == NULL)
			continue;
		if (netif->input(p, netif) != ERR_OK)
			pbuf_free(p);
	}
	return done;
}
