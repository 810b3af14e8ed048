/*
 * Native benchmark loops over the slave stack: no Python between frames.
 *
 * Built as their own extension, bench._dnbench (bench/native/build.py),
 * which calls the stack in aiodocknet.native._lib: no service process
 * loads them.
 *
 * The same wire protocol as bench/kernel_rr.c, so either side can be
 * compared with the kernel path: a connection's first byte is 'R' (echo
 * every byte back) or 'S' (sink until EOF, then reply with the count as 8
 * bytes big-endian). The loops poll the stack and, when idle, follow the
 * pollers' policy (dn_spin.h): spin for spin_us after the last event, then
 * sleep on the doorbell; they do not learn from misses nor look at the
 * host's load, so a run measures the path.
 */
#ifndef DN_BENCH_H
#define DN_BENCH_H

#include <stdint.h>

struct dn_stack;

struct dn_bench_result {
	uint64_t round_trips;
	uint64_t bytes;
	double seconds;
	double p50_us;
	double p99_us;
	double p999_us;
	uint64_t sleeps;
	uint64_t links_reached;	/* blast: links that received a frame */
};

/* Serves echo and sink connections on port until SIGTERM/SIGINT or
 * max_seconds. */
int dn_bench_serve(struct dn_stack *st, uint16_t port, double max_seconds,
	unsigned int spin_us);

/* size-byte request/response on conns connections for seconds. */
int dn_bench_rr(struct dn_stack *st, uint32_t ip, uint16_t port,
	uint32_t size, uint32_t conns, double seconds, unsigned int spin_us,
	struct dn_bench_result *out);

/* Streams size-byte writes for seconds, then waits for the sink's count. */
int dn_bench_stream(struct dn_stack *st, uint32_t ip, uint16_t port,
	uint32_t size, double seconds, unsigned int spin_us,
	struct dn_bench_result *out);

struct dn_link;

/* The switch's forwarding rate: k links (endpoints, no TCP/IP) each send
 * frame_len-byte UDP frames to the next one's address as fast as they can
 * for seconds; out->round_trips counts the frames that came back out of
 * the switch, out->links_reached the links that received any. */
int dn_bench_blast(struct dn_link **links, const uint32_t *ips, int k,
	uint16_t frame_len, double seconds, struct dn_bench_result *out);

struct dn_fc;

/* Fast channels without Python: echo everything until end of stream or
 * max_seconds; and size-byte ping-pong for seconds (then end of stream). */
int dn_bench_fc_echo(struct dn_fc *fc, double max_seconds);
int dn_bench_fc_ping(struct dn_fc *fc, uint32_t size, double seconds,
	struct dn_bench_result *out);

#endif /* DN_BENCH_H */
