/* identity.c — incarnations, and who has seen whom (identity.h). */
#include "repl/identity.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "repl/bytes.h"
#include "repl/lease.h"
#include "repl/node.h"
#include "repl/transport.h"

/* Both files: "NKID" u32 version, u32 count, count × (u64, u64), u64 XXH64
 * of what precedes it; little-endian. The incarnation file holds one pair
 * (0, incarnation). */
#define FILE_MAGIC "NKID"
#define FILE_VERSION 1

static void join(char *out, size_t n, const char *dir, const char *name) {
  snprintf(out, n, "%s/%s", dir, name);
}

bool nokv_raft_state_exists(const char *dir) {
  char path[4096];
  join(path, sizeof path, dir, "metadata1");
  if (access(path, F_OK) == 0) return true;
  join(path, sizeof path, dir, "metadata2");
  return access(path, F_OK) == 0;
}

/* Writes pairs to path atomically: a temporary file, synced, renamed over
 * it, and the directory synced. errno on failure. */
static int save_pairs(const char *dir, const char *path, const nokv_seen_member *m, size_t n) {
  size_t len = 12 + n * 16 + 8;
  unsigned char buf[12 + NOKV_SEEN_MAX * 16 + 8];
  memcpy(buf, FILE_MAGIC, 4);
  nokv_put32(buf + 4, FILE_VERSION);
  nokv_put32(buf + 8, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    nokv_put64(buf + 12 + i * 16, m[i].id);
    nokv_put64(buf + 20 + i * 16, m[i].incarnation);
  }
  nokv_put64(buf + len - 8, XXH64(buf, len - 8, 0));
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  if (write(fd, buf, len) != (ssize_t)len) err = errno != 0 ? errno : EIO;
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(tmp, path) != 0) err = errno;
  if (err != 0) {
    unlink(tmp);
    return err;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  if (fsync(dfd) != 0) err = errno;
  close(dfd);
  return err;
}

/* Reads the pairs at path: 0 (with *n = 0 if there is no file), ENOENT never,
 * EBADMSG if it is damaged, another errno if unreadable. */
static int load_pairs(const char *path, nokv_seen_member *m, size_t *n) {
  *n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : errno;
  unsigned char buf[12 + NOKV_SEEN_MAX * 16 + 8 + 1];
  ssize_t got = read(fd, buf, sizeof buf);
  int err = got < 0 ? errno : 0;
  close(fd);
  if (err != 0) return err;
  size_t len = (size_t)got;
  if (len < 20 || memcmp(buf, FILE_MAGIC, 4) != 0 || nokv_get32(buf + 4) != FILE_VERSION) {
    return EBADMSG;
  }
  uint32_t count = nokv_get32(buf + 8);
  if (count > NOKV_SEEN_MAX || len != 12 + (size_t)count * 16 + 8 ||
      nokv_get64(buf + len - 8) != XXH64(buf, len - 8, 0)) {
    return EBADMSG;
  }
  for (uint32_t i = 0; i < count; i++) {
    m[i].id = nokv_get64(buf + 12 + i * 16);
    m[i].incarnation = nokv_get64(buf + 20 + i * 16);
  }
  *n = count;
  return 0;
}

uint64_t nokv_incarnation_peek(const char *dir) {
  char path[4096];
  join(path, sizeof path, dir, NOKV_INCARNATION_FILE);
  nokv_seen_member m[NOKV_SEEN_MAX];
  size_t n = 0;
  if (load_pairs(path, m, &n) != 0 || n != 1) return 0;
  return m[0].incarnation;
}

uint64_t nokv_incarnation(const char *dir, char *err, size_t errlen) {
  char path[4096];
  join(path, sizeof path, dir, NOKV_INCARNATION_FILE);
  nokv_seen_member m[NOKV_SEEN_MAX];
  size_t n = 0;
  int rc = load_pairs(path, m, &n);
  if (rc == 0 && n == 1 && m[0].incarnation != 0) return m[0].incarnation;
  if (rc != 0 || n != 0) {
    snprintf(err, errlen, "%s: %s (remove it only if this node's Raft state is new)", path,
             rc == EBADMSG || rc == 0 ? "damaged" : strerror(rc));
    return 0;
  }
  nokv_seen_member me = {0, 0};
  while (me.incarnation == 0) {
    if (getrandom(&me.incarnation, sizeof me.incarnation, 0) != sizeof me.incarnation) {
      snprintf(err, errlen, "no random number for %s: %s", path, strerror(errno));
      return 0;
    }
  }
  rc = save_pairs(dir, path, &me, 1);
  if (rc != 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(rc));
    return 0;
  }
  return me.incarnation;
}

int nokv_seen_load(nokv_seen *s, const char *dir, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  join(s->path, sizeof s->path, dir, NOKV_SEEN_FILE);
  int rc = load_pairs(s->path, s->m, &s->n);
  if (rc == 0) return NOKV_OK;
  snprintf(err, errlen, "%s: %s (it records the peers this node has seen; removing it "
           "disables the check for peers that lost their state)", s->path,
           rc == EBADMSG ? "damaged" : strerror(rc));
  return rc == EBADMSG ? NOKV_ECORRUPT : NOKV_EIO;
}

uint64_t nokv_seen_get(const nokv_seen *s, uint64_t id) {
  for (size_t i = 0; i < s->n; i++) {
    if (s->m[i].id == id) return s->m[i].incarnation;
  }
  return 0;
}

int nokv_seen_save(const nokv_seen *s) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", s->path);
  char *slash = strrchr(dir, '/');
  if (slash != NULL) *slash = '\0';
  return save_pairs(dir, s->path, s->m, s->n);
}

int nokv_seen_set(nokv_seen *s, uint64_t id, uint64_t incarnation, uint64_t *before) {
  *before = nokv_seen_get(s, id);
  if (*before == incarnation || id == 0 || incarnation == 0) return 0;
  size_t i = 0;
  while (i < s->n && s->m[i].id != id) i++;
  if (i == s->n) {
    if (s->n == NOKV_SEEN_MAX) return -1;
    s->n++;
  }
  s->m[i] = (nokv_seen_member){id, incarnation};
  return 1;
}

bool nokv_seen_keep(nokv_seen *s, const uint64_t *ids, size_t n) {
  size_t kept = 0;
  for (size_t i = 0; i < s->n; i++) {
    bool member = false;
    for (size_t j = 0; j < n && !member; j++) member = ids[j] == s->m[i].id;
    if (member) s->m[kept++] = s->m[i];
  }
  bool changed = kept != s->n;
  s->n = kept;
  return changed;
}

/* ---- asking the peers ---- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool resolve(const char *address, struct sockaddr_in *sa) {
  char host[256], port[8];
  if (!nokv_split_address(address, host, sizeof host, port, sizeof port)) return false;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res = NULL;
  if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) return false;
  memcpy(sa, res->ai_addr, sizeof *sa);
  freeaddrinfo(res);
  return true;
}

bool nokv_seen_elsewhere(const nokv_repl_peer *peers, size_t n, uint64_t self, uint64_t mine,
                         unsigned wait_ms, uint64_t *who, uint64_t *known) {
  *who = *known = 0;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool answered[NOKV_REPL_MAX_MEMBERS] = {false}, resolved[NOKV_REPL_MAX_MEMBERS] = {false};
  struct sockaddr_in sa[NOKV_REPL_MAX_MEMBERS];
  size_t asked = n < NOKV_REPL_MAX_MEMBERS ? n : NOKV_REPL_MAX_MEMBERS, waiting = 0;
  for (size_t i = 0; i < asked; i++) {
    answered[i] = peers[i].id == self;  /* not asked */
    if (!answered[i]) waiting++;
  }
  nokv_lease_msg ask = {.kind = NOKV_LEASE_ASK, .from = self, .incarnation = mine,
                        .subject = self};
  uint8_t out[NOKV_LEASE_MSG_SIZE];
  nokv_lease_encode(&ask, out);
  uint64_t deadline = now_ms() + wait_ms, next_round = 0;
  bool seen = false;
  while (waiting > 0 && !seen) {
    uint64_t now = now_ms();
    if (now >= deadline) break;
    if (now >= next_round) {  /* again every 100 ms: UDP may lose either message */
      for (size_t i = 0; i < asked; i++) {
        if (answered[i]) continue;
        ask.seq = i + 1;
        nokv_lease_encode(&ask, out);
        if (!resolved[i]) resolved[i] = resolve(peers[i].address, &sa[i]);  /* once */
        if (resolved[i]) {
          (void)sendto(fd, out, sizeof out, 0, (const struct sockaddr *)&sa[i], sizeof sa[i]);
        }
      }
      next_round = now + 100;
    }
    uint64_t until = next_round < deadline ? next_round : deadline;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(until - now)) <= 0) continue;
    uint8_t in[NOKV_LEASE_MSG_SIZE + 1];
    ssize_t got = recv(fd, in, sizeof in, 0);
    nokv_lease_msg m;
    if (got <= 0 || !nokv_lease_decode(in, (size_t)got, &m) || m.kind != NOKV_LEASE_SEEN ||
        m.subject != self || m.seq == 0 || m.seq > asked || answered[m.seq - 1] ||
        peers[m.seq - 1].id != m.from) {
      continue;
    }
    answered[m.seq - 1] = true;
    waiting--;
    if (m.known != 0 && m.known != mine) {
      *who = m.from;
      *known = m.known;
      seen = true;
    }
  }
  close(fd);
  return seen;
}
