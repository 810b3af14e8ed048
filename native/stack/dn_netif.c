#include <string.h>

#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/ip.h"
#include "lwip/prot/icmp6.h"
#include "lwip/prot/ip6.h"
#include "lwip/pbuf.h"
#include "lwip/snmp.h"
#include "netif/ethernet.h"

#include "dn_link.h"
#include "dn_netif.h"

/* Most pieces a pbuf chain lwIP sends may have (headers, then the data
 * of the segments it joined), with room to spare. */
#define DN_TX_PIECES 40

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
	struct dn_iov iov[DN_TX_PIECES];
	struct pbuf *q;
	unsigned int n = 0;

	for (q = p; q != NULL; q = q->next) {
		if (q->len == 0)
			continue;
		if (n == DN_TX_PIECES)
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
	netif->output_ip6 = ethip6_output;
	netif->linkoutput = dn_netif_output;
	netif->hwaddr_len = ETH_HWADDR_LEN;
	netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP |
		NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
	/* frames on the link rings cannot be corrupted between processes: no TCP/UDP
	 * checksums on this link. IP, ICMP and ICMPv6 keep theirs (cheap, and
	 * a ping or neighbour solicitation from a kernel host through an
	 * uplink expects them). */
	NETIF_SET_CHECKSUM_CTRL(netif, NETIF_CHECKSUM_GEN_IP |
		NETIF_CHECKSUM_GEN_ICMP | NETIF_CHECKSUM_CHECK_ICMP |
		NETIF_CHECKSUM_GEN_ICMP6 | NETIF_CHECKSUM_CHECK_ICMP6);
	return ERR_OK;
}

static struct pbuf *
dn_netif_wrap(struct dn_rxseg *seg, int copy)
{
	struct dn_rxpbuf *rp = seg->priv;
	struct pbuf *p;

	if (copy) {
		/* The pool is low: hold the bytes in heap memory and give the
		 * mbuf straight back so the link keeps receiving. */
		p = pbuf_alloc(PBUF_RAW, seg->len, PBUF_RAM);
		if (p != NULL)
			pbuf_take(p, seg->data, seg->len);
		dn_link_free_seg(seg->seg);
		return p;
	}
	rp->pc.custom_free_function = dn_rxpbuf_free;
	rp->seg = seg->seg;
	return pbuf_alloced_custom(PBUF_RAW, seg->len, PBUF_REF, &rp->pc,
		seg->data, seg->len);
}

/* IPv6 packets lwIP must not see, found by walking the extension headers
 * as ip6_input() (lwIP 2.1.3) does:
 *
 * - a header chain that ends early, or an option whose length byte lies
 *   past its header: ip6_input() reads each header's first two bytes
 *   (next header, length) before it checks that they are in the packet,
 *   and the length byte of an option whose type is a header's last byte,
 *   so it would read past the frame's end;
 * - router solicitations, advertisements and redirects: nothing on DockNet
 *   routes (IPV6.md), so one can only come from another tenant, and lwIP
 *   would take it to install a default router, an on-link prefix or a new
 *   first hop for a destination. They are found behind any extension
 *   headers, where lwIP's ICMPv6 input also finds them.
 *
 * What ip6_input() checks itself is left to it. f is the IPv6 header, len
 * what the frame holds of the packet. */
static int
dn_netif_ip6_drop(const uint8_t *f, uint32_t len)
{
	uint32_t plen = (uint32_t)f[4] << 8 | f[5];
	uint32_t off = IP6_HLEN, end, hlen, i;
	uint8_t nh = f[6];

	/* ip6_input() drops a packet longer than its frame and cuts the
	 * frame's padding off. */
	if (IP6_HLEN + plen > len)
		return 0;
	end = IP6_HLEN + plen;
	for (;;) {
		switch (nh) {
		case IP6_NEXTH_HOPBYHOP:
		case IP6_NEXTH_DESTOPTS:
		case IP6_NEXTH_ROUTING:
		case IP6_NEXTH_FRAGMENT:
			break;
		case IP6_NEXTH_ICMP6:
			if (off >= end)
				return 0;
			return f[off] == ICMP6_TYPE_RS || f[off] == ICMP6_TYPE_RA ||
				f[off] == ICMP6_TYPE_RD;
		default:
			return 0;
		}
		if (off + 8 > end)
			return 1;
		hlen = nh == IP6_NEXTH_FRAGMENT ? 8 : 8u * (1u + f[off + 1]);
		if (off + hlen > end)
			return 0;	/* ip6_input() checks that */
		if (nh == IP6_NEXTH_HOPBYHOP || nh == IP6_NEXTH_DESTOPTS) {
			/* Options after the two header bytes: Pad1 is one
			 * byte, the others have a length byte. */
			for (i = 2; i < hlen; ) {
				if (f[off + i] == IP6_PAD1_OPTION) {
					i++;
					continue;
				}
				if (i + 1 >= hlen)
					return 1;
				i += 2u + f[off + i + 1];
			}
		}
		nh = f[off];
		off += hlen;
	}
}

/* lwIP checks neither that an IPv4 (or IPv6) frame holds an IP header
 * before ip4_input() reads its length field, nor that an ARP frame holds the
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
	/* ip6_input() reads the version before it checks the length. */
	if (f[12] == 0x86 && f[13] == 0xdd)
		return seg->len < SIZEOF_ETH_HDR + IP6_HLEN ||
			dn_netif_ip6_drop(f + SIZEOF_ETH_HDR,
				seg->len - SIZEOF_ETH_HDR);
	return 0;
}

int
dn_netif_poll(struct netif *netif, int budget)
{
	struct dn_link *link = netif->state;
	struct dn_rxseg seg;
	int done = 0;
	int copy = -1;

	while (done < budget) {
		struct pbuf *p;

		if (dn_link_rx(link, &seg) == 0)
			break;
		/* Once per burst, and only when there is one: counting free
		 * mbufs walks every lcore's cache. */
		if (copy < 0)
			copy = dn_link_pool_low(link);
		done++;
		if (dn_netif_runt(&seg)) {
			dn_link_free_seg(seg.seg);
			continue;
		}
		p = dn_netif_wrap(&seg, copy);
		if (p == NULL)
			continue;
		if (netif->input(p, netif) != ERR_OK)
			pbuf_free(p);
	}
	return done;
}
