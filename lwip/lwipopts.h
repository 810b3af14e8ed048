/*
 * aiodocknet's lwIP configuration.
 *
 * One lwIP instance per slave process, driven from the thread that runs the
 * event loop (NO_SYS=1, raw API, no locks). The link is a pair of rings between
 * processes on one host: frames are never corrupted in flight, so TCP/UDP
 * checksums are switched off per netif (the master fills them in where a
 * frame leaves the host). Sizes are for thousands of connections with large,
 * scaled windows.
 */
#ifndef DN_LWIPOPTS_H
#define DN_LWIPOPTS_H

#define NO_SYS                          1
#define SYS_LIGHTWEIGHT_PROT            0
#define LWIP_SOCKET                     0
#define LWIP_NETCONN                    0
#define LWIP_ALTCP                      0
#define LWIP_TIMERS                     1

#define LWIP_IPV4                       1
/* Dual stack. The master assigns every address and the switch answers
 * neighbour solicitations for the whole prefix (IPV6.md): nothing on the
 * link routes, advertises or listens to multicast groups, so lwIP's
 * autoconfiguration, router solicitation, duplicate address detection and
 * MLD are off, and an address is set PREFERRED at once. Fragments are
 * dropped as for IPv4 (the MSS follows the link MTU). */
#define LWIP_IPV6                       1
#define LWIP_ICMP6                      1
#define LWIP_IPV6_MLD                   0
#define LWIP_IPV6_AUTOCONFIG            0
#define LWIP_IPV6_ADDRESS_LIFETIMES     0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT   0
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS   0
#define LWIP_IPV6_DHCP6                 0
#define LWIP_IPV6_FRAG                  0
#define LWIP_IPV6_REASS                 0
#define LWIP_IPV6_FORWARD               0
#define LWIP_IPV6_NUM_ADDRESSES         3
#define LWIP_ND6_ALLOW_RA_UPDATES       0
/* Frames waiting for a neighbour, as many as ARP's below. nd6.c walks
 * its neighbour and destination caches with a signed byte (a larger cache
 * loops forever in nd6_tmr()). */
#define LWIP_ND6_QUEUEING               1
#define MEMP_NUM_ND6_QUEUE              1024
#define LWIP_ND6_NUM_NEIGHBORS          64
#define LWIP_ND6_NUM_DESTINATIONS       64
#if LWIP_ND6_NUM_NEIGHBORS > 127 || LWIP_ND6_NUM_DESTINATIONS > 127
#error "nd6.c indexes its caches with s8_t"
#endif
#define LWIP_ARP                        1
#define LWIP_ETHERNET                   1
#define LWIP_ICMP                       1
#define LWIP_RAW                        1
#define LWIP_UDP                        1
#define LWIP_TCP                        1
#define LWIP_DHCP                       0
#define LWIP_AUTOIP                     0
#define LWIP_IGMP                       0
#define LWIP_DNS                        0
#define IP_REASSEMBLY                   0
#define IP_FRAG                         0
#define LWIP_SINGLE_NETIF               1
/* Connections to different peers share local ports, TIME-WAIT included,
 * as on the kernel (dn_stack.c sets SOF_REUSEADDR on connecting pcbs):
 * with a process's own range of ports (several per endpoint) TIME-WAIT
 * alone would otherwise cap how fast it can open connections. */
#define SO_REUSE                        1
#define LWIP_HAVE_LOOPIF                0
/* A service may connect to its own DockNet address. */
#define LWIP_NETIF_LOOPBACK             1
#define LWIP_LOOPBACK_MAX_PBUFS         0

/* PBUF_RAM (TCP send data, headers) comes from malloc; fixed-size control
 * blocks come from pools. Received frames are pbuf_custom over mbufs and use
 * neither. */
#define MEM_LIBC_MALLOC                 1
/* The fuzz build (fuzz/build.sh) takes control blocks from malloc too, so
 * AddressSanitizer sees a control block used after it was freed. */
#ifndef MEMP_MEM_MALLOC
#define MEMP_MEM_MALLOC                 0
#endif
#define MEM_ALIGNMENT                   8
#define MEMP_NUM_TCP_PCB                8192
#define MEMP_NUM_TCP_PCB_LISTEN         256
#define MEMP_NUM_TCP_SEG                32768
#define MEMP_NUM_UDP_PCB                512
#define MEMP_NUM_RAW_PCB                16
#define MEMP_NUM_PBUF                   4096
#define MEMP_NUM_ARP_QUEUE              1024
#define PBUF_POOL_SIZE                  256
/* Received frames are pbuf_custom wrappers around mbufs. */
#define LWIP_SUPPORT_CUSTOM_PBUF        1
#define ARP_TABLE_SIZE                  256
#define ARP_QUEUEING                    1
/* Frames sent before the first ARP reply wait, as the kernel lets them. */
#define ARP_QUEUE_LEN                   64
#define ETHARP_SUPPORT_STATIC_ENTRIES   1
#define LWIP_NETIF_HWADDRHINT           1

/* The link MTU is set by the master at attach; the MSS follows it through
 * TCP_CALCULATE_EFF_SEND_MSS, this is the upper bound. */
#ifndef DN_TCP_MSS
#define DN_TCP_MSS                      8960
#endif
#define TCP_MSS                         DN_TCP_MSS
#define TCP_CALCULATE_EFF_SEND_MSS      1
#define LWIP_WND_SCALE                  1
#define TCP_RCV_SCALE                   4
#define TCP_WND                         (512 * 1024)
#define TCP_SND_BUF                     (512 * 1024)
#define TCP_SND_QUEUELEN                (4 * TCP_SND_BUF / TCP_MSS)
/* lwIP's sanity check wants the low-water mark 4*MSS below 64 KiB even with
 * window scaling. */
#define TCP_SNDLOWAT                    (2 * TCP_MSS + 1)
#define TCP_QUEUE_OOSEQ                 1
#define TCP_LISTEN_BACKLOG              0
#define LWIP_TCP_KEEPALIVE              1
/* Retransmissions before a connection (a SYN) is given up with ETIMEDOUT,
 * like the kernel's tcp_retries2 and tcp_syn_retries: variables rather than
 * constants, so that a process can choose them when its stack opens
 * (DOCKNET_TCP_RETRIES, DOCKNET_TCP_SYN_RETRIES; dn_stack.c). Defined in
 * dn_hooks.c with lwIP's defaults. lwIP's backoff table bounds both to 12;
 * init.c's compile-time check of that bound sees these names as 0, and
 * dn_stack.c checks the values instead. */
extern unsigned char dn_tcp_maxrtx;
extern unsigned char dn_tcp_synmaxrtx;
#define TCP_MAXRTX                      dn_tcp_maxrtx
#define TCP_SYNMAXRTX                   dn_tcp_synmaxrtx
#define LWIP_TCP_TIMESTAMPS             0
#define TCP_TTL                         64
/* RX pbufs are custom pbufs over mbufs, not PBUF_POOL, so the check that the
 * pool can hold a window does not apply. */
#define LWIP_DISABLE_TCP_SANITY_CHECKS  1

#define LWIP_CHECKSUM_CTRL_PER_NETIF    1
#define CHECKSUM_GEN_IP                 1
#define CHECKSUM_GEN_UDP                1
#define CHECKSUM_GEN_TCP                1
#define CHECKSUM_GEN_ICMP               1
#define CHECKSUM_CHECK_IP               1
#define CHECKSUM_CHECK_UDP              1
#define CHECKSUM_CHECK_TCP              1
#define CHECKSUM_CHECK_ICMP             1
#define LWIP_CHECKSUM_ON_COPY           0

#define LWIP_NETIF_STATUS_CALLBACK      0
#define LWIP_NETIF_LINK_CALLBACK        0
#define LWIP_NETIF_TX_SINGLE_PBUF       0
#define ETH_PAD_SIZE                    0
#define LWIP_STATS                      0
#define LWIP_DEBUG                      0
#define MEMP_OVERFLOW_CHECK             0
#define MEMP_SANITY_CHECK               0

#define LWIP_HOOK_FILENAME              "dn_hooks.h"
#define LWIP_HOOK_TCP_INPACKET_PCB(pcb, hdr, optlen, opt1len, opt2, p) \
	dn_tcp_inpacket((pcb), (hdr), (optlen), (opt1len), (opt2), (p))
/* IPv6 destinations off the prefix go to the gateway the configuration
 * gives (dn_hooks.h): no router is ever learnt from the link. */
#define LWIP_HOOK_ND6_GET_GW(netif, dest) dn_nd6_gateway((netif), (dest))

#endif /* DN_LWIPOPTS_H */
