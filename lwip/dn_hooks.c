#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/prot/tcp.h"
#include "lwip/tcp.h"

#include "dn_hooks.h"

/* lwipopts.h's TCP_MAXRTX and TCP_SYNMAXRTX, at lwIP's defaults until
 * dn_stack_open() reads the process's choice. */
unsigned char dn_tcp_maxrtx = 12;
unsigned char dn_tcp_synmaxrtx = 6;

static u8_t
dn_tcp_optbyte(const struct tcp_hdr *hdr, u16_t opt1len, const u8_t *opt2,
	u16_t i)
{
	/* tcp_input() has split the options as tcp_parseopt() reads them:
	 * after the header in the first pbuf, the rest at opt2. */
	if (opt2 == NULL || i < opt1len)
		return ((const u8_t *)hdr + TCP_HLEN)[i];
	return opt2[i - opt1len];
}

/* The walk tcp_parseopt() makes, with every byte it would read inside
 * optlen: a kind other than EOL and NOP needs a length byte, at least 2,
 * that does not run past the options. */
static int
dn_tcp_opts_ok(const struct tcp_hdr *hdr, u16_t optlen, u16_t opt1len,
	const u8_t *opt2)
{
	u16_t i = 0;

	while (i < optlen) {
		u8_t kind = dn_tcp_optbyte(hdr, opt1len, opt2, i);
		u8_t len;

		if (kind == LWIP_TCP_OPT_EOL)
			return 1;
		if (kind == LWIP_TCP_OPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= optlen)
			return 0;
		len = dn_tcp_optbyte(hdr, opt1len, opt2, (u16_t)(i + 1));
		if (len < 2 || i + len > optlen)
			return 0;
		i = (u16_t)(i + len);
	}
	return 1;
}

err_t
dn_tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr, u16_t optlen,
	u16_t opt1len, const u8_t *opt2, struct pbuf *p)
{
	u8_t flags = TCPH_FLAGS(hdr);
	struct tcp_pcb *probe;

	(void)p;
	/* lwIP parses the options of everything but resets and segments to
	 * TIME-WAIT: only those it would parse are held to them, so a peer's
	 * reset is taken whatever its options (as the kernel takes it). */
	if (optlen != 0 && !(flags & TCP_RST) && pcb->state != TIME_WAIT &&
	    !dn_tcp_opts_ok(hdr, optlen, opt1len, opt2))
		return ERR_VAL;
	if (pcb->state != LISTEN ||
	    (flags & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)
		return ERR_OK;
	if (dn_stack_accept_room()) {
		/* What tcp_listen_input() is about to try (reclaiming
		 * TIME-WAIT blocks included); it would drop the SYN silently
		 * on failure. Only SYNs to listeners pay for the look. */
		probe = tcp_alloc(pcb->prio);
		if (probe != NULL) {
			tcp_free(probe);
			return ERR_OK;
		}
	}
	/* tcp_input() has turned the header to host order. */
	tcp_rst(NULL, 0, hdr->seqno + 1, ip_current_dest_addr(),
		ip_current_src_addr(), hdr->dest, hdr->src);
	return ERR_ABRT;
}
