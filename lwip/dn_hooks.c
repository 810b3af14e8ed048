#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/prot/tcp.h"
#include "lwip/tcp.h"

#include "dn_hooks.h"

err_t
dn_tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr, struct pbuf *p)
{
	struct tcp_pcb *probe;

	(void)p;
	if (pcb->state != LISTEN ||
	    (TCPH_FLAGS(hdr) & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)
		return ERR_OK;
	/* What tcp_listen_input() is about to try (reclaiming TIME-WAIT
	 * blocks included); it would drop the SYN silently on failure. Only
	 * SYNs to listeners pay for the look. */
	probe = tcp_alloc(pcb->prio);
	if (probe != NULL) {
		tcp_free(probe);
		return ERR_OK;
	}
	/* tcp_input() has turned the header to host order. */
	tcp_rst(NULL, 0, hdr->seqno + 1, ip_current_dest_addr(),
		ip_current_src_addr(), hdr->dest, hdr->src);
	return ERR_ABRT;
}
