/*
 * transport.h — libraft's TCP transport, with host names.
 *
 * libraft 0.15's TCP transport takes IPv4 literals only, while a cluster on
 * Kubernetes names its peers by DNS (a StatefulSet's pod IPs change when a pod
 * moves, its names do not). This transport wraps libraft's: before each
 * connection it resolves the peer's host name on the event loop
 * (uv_getaddrinfo: afresh every time, so a moved peer is found) and hands the
 * address to libraft's transport; everything else passes through.
 */
#ifndef NOKV_REPL_TRANSPORT_H
#define NOKV_REPL_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>

typedef struct nokv_dns_transport nokv_dns_transport;

/* The transport (its first member is the struct raft_uv_transport to hand to
 * raft_uv_init); NULL when out of memory. */
nokv_dns_transport *nokv_dns_transport_new(uv_loop_t *loop, int *rv);
struct raft_uv_transport *nokv_dns_transport_raft(nokv_dns_transport *d);
/* As raft_uv_tcp_set_bind_address; needed when this node's own address is a
 * host name (then it is 0.0.0.0 and the address's port by default). */
int nokv_dns_transport_set_bind_address(nokv_dns_transport *d, const char *address);
/* Frees it, once libraft closed it (raft_close's callback). */
void nokv_dns_transport_free(nokv_dns_transport *d);

/* address (host:port) split into host and port; false if malformed or either
 * part does not fit. */
bool nokv_split_address(const char *address, char *host, size_t hlen, char *port, size_t plen);

/* Whether address (host:port) has an IPv4 literal for host. */
bool nokv_is_ipv4_address(const char *address);

#endif /* NOKV_REPL_TRANSPORT_H */
