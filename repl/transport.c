/* transport.c — resolving peers' host names before libraft connects, and
 * sending without Nagle's delay (transport.h). */
#include "repl/transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nokv_dns_transport {
  struct raft_uv_transport t; /* first: what libraft holds */
  struct raft_uv_transport tcp;
  uv_loop_t *loop;
  unsigned resolving;  /* lookups under way */
  bool closing;
  raft_uv_transport_close_cb close_cb;
  raft_uv_accept_cb accept_cb; /* libraft's */
};

/* A connection attempt, wrapped to set up the stream libraft gets. */
typedef struct connecting {
  struct raft_uv_connect req; /* ours, to the TCP transport */
  struct raft_uv_connect *outer;
  raft_uv_connect_cb cb;
} connecting;

typedef struct lookup {
  uv_getaddrinfo_t gai;
  nokv_dns_transport *d;
  struct raft_uv_connect *req;
  raft_id id;
  raft_uv_connect_cb cb;
  char port[8];
} lookup;

bool nokv_split_address(const char *address, char *host, size_t hlen, char *port, size_t plen) {
  const char *colon = strrchr(address, ':');
  if (colon == NULL || colon == address || (size_t)(colon - address) >= hlen ||
      strlen(colon + 1) >= plen || colon[1] == '\0') {
    return false;
  }
  memcpy(host, address, (size_t)(colon - address));
  host[colon - address] = '\0';
  strcpy(port, colon + 1);
  return true;
}

bool nokv_is_ipv4_address(const char *address) {
  char host[256], port[8];
  struct in_addr a;
  return nokv_split_address(address, host, sizeof host, port, sizeof port) && inet_pton(AF_INET, host, &a) == 1;
}

/* libraft 0.15 splits "host:port" with strtok, whose state is one per process:
 * two nodes in one process (the tests') parsing at once raced on it (found by
 * ThreadSanitizer). Every call into the TCP transport that parses an address
 * takes this lock. */
static pthread_mutex_t parse_mu = PTHREAD_MUTEX_INITIALIZER;

/* Raft messages go out as written: with Nagle's algorithm a large append
 * followed by a small message waited for the peer's delayed ACK (about 40 ms
 * at the 99th percentile of writes). */
static void no_delay(struct uv_stream_s *stream) {
  if (stream != NULL && stream->type == UV_TCP) uv_tcp_nodelay((uv_tcp_t *)stream, 1);
}

static void accepted(struct raft_uv_transport *tcp, raft_id id, const char *address,
                     struct uv_stream_s *stream) {
  nokv_dns_transport *d = (nokv_dns_transport *)((char *)tcp - offsetof(nokv_dns_transport, tcp));
  no_delay(stream);
  d->accept_cb(tcp, id, address, stream);
}

static void connected(struct raft_uv_connect *req, struct uv_stream_s *stream, int status) {
  connecting *c = (connecting *)req;
  if (status == 0) no_delay(stream);
  c->cb(c->outer, stream, status);
  free(c);
}

/* The TCP transport's connect, through connected(). */
static int tcp_connect(nokv_dns_transport *d, struct raft_uv_connect *req, raft_id id,
                       const char *address, raft_uv_connect_cb cb) {
  connecting *c = calloc(1, sizeof *c);
  if (c == NULL) return RAFT_NOMEM;
  c->outer = req;
  c->cb = cb;
  d->tcp.data = d->t.data;
  pthread_mutex_lock(&parse_mu);
  int rv = d->tcp.connect(&d->tcp, &c->req, id, address, connected);
  pthread_mutex_unlock(&parse_mu);
  if (rv != 0) free(c);
  return rv;
}

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address) {
  nokv_dns_transport *d = (nokv_dns_transport *)t;
  d->tcp.data = t->data;
  return d->tcp.init(&d->tcp, id, address);
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb) {
  nokv_dns_transport *d = (nokv_dns_transport *)t;
  d->tcp.data = t->data;  /* libraft's accept callback finds its I/O there */
  d->accept_cb = cb;
  pthread_mutex_lock(&parse_mu);
  int rv = d->tcp.listen(&d->tcp, accepted);
  pthread_mutex_unlock(&parse_mu);
  return rv;
}

static void finish_close(nokv_dns_transport *d);

static void resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res) {
  lookup *l = gai->data;
  nokv_dns_transport *d = l->d;
  d->resolving--;
  int rv = RAFT_NOCONNECTION;
  if (status == 0 && !d->closing && res != NULL) {
    char ip[INET_ADDRSTRLEN], address[INET_ADDRSTRLEN + 8];
    const struct sockaddr_in *sin = (const struct sockaddr_in *)res->ai_addr;
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
    snprintf(address, sizeof address, "%s:%s", ip, l->port);
    rv = tcp_connect(d, l->req, l->id, address, l->cb);
  } else if (d->closing) {
    rv = RAFT_CANCELED;
  }
  if (res != NULL) uv_freeaddrinfo(res);
  if (rv != 0) l->cb(l->req, NULL, rv);
  free(l);
  if (d->closing && d->resolving == 0) finish_close(d);
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb) {
  nokv_dns_transport *d = (nokv_dns_transport *)t;
  if (nokv_is_ipv4_address(address)) return tcp_connect(d, req, id, address, cb);
  char host[256];
  lookup *l = calloc(1, sizeof *l);
  if (l == NULL) return RAFT_NOMEM;
  if (!nokv_split_address(address, host, sizeof host, l->port, sizeof l->port)) {
    free(l);
    return RAFT_NOCONNECTION;
  }
  l->d = d;
  l->req = req;
  l->id = id;
  l->cb = cb;
  l->gai.data = l;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
  if (uv_getaddrinfo(d->loop, &l->gai, resolved, host, l->port, &hints) != 0) {
    free(l);
    return RAFT_NOCONNECTION;
  }
  d->resolving++;
  return 0;
}

static void tcp_closed(struct raft_uv_transport *tcp) {
  nokv_dns_transport *d = (nokv_dns_transport *)((char *)tcp - offsetof(nokv_dns_transport, tcp));
  if (d->close_cb != NULL) d->close_cb(&d->t);
}

static void finish_close(nokv_dns_transport *d) { d->tcp.close(&d->tcp, tcp_closed); }

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb) {
  nokv_dns_transport *d = (nokv_dns_transport *)t;
  d->closing = true;
  d->close_cb = cb;
  /* Lookups under way end first (cancelled, or answered RAFT_CANCELED). */
  if (d->resolving == 0) finish_close(d);
}

nokv_dns_transport *nokv_dns_transport_new(uv_loop_t *loop, int *rv) {
  nokv_dns_transport *d = calloc(1, sizeof *d);
  if (d == NULL) {
    *rv = RAFT_NOMEM;
    return NULL;
  }
  *rv = raft_uv_tcp_init(&d->tcp, loop);
  if (*rv != 0) {
    free(d);
    return NULL;
  }
  d->loop = loop;
  d->t.init = t_init;
  d->t.listen = t_listen;
  d->t.connect = t_connect;
  d->t.close = t_close;
  return d;
}

struct raft_uv_transport *nokv_dns_transport_raft(nokv_dns_transport *d) { return &d->t; }

int nokv_dns_transport_set_bind_address(nokv_dns_transport *d, const char *address) {
  pthread_mutex_lock(&parse_mu);
  int rv = raft_uv_tcp_set_bind_address(&d->tcp, address);
  pthread_mutex_unlock(&parse_mu);
  return rv;
}

void nokv_dns_transport_free(nokv_dns_transport *d) {
  if (d == NULL) return;
  raft_uv_tcp_close(&d->tcp);
  free(d);
}
