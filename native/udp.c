// Batched UDP sockets for pvdns: recvmmsg/sendmmsg on a non-blocking socket
// watched by libuv, so one call into JavaScript carries up to BATCH
// datagrams instead of one. Node's dgram module costs, per datagram, a
// 64 KiB buffer, an address string and an object for the sender, and a
// request object per send; on a DNS forwarder that is most of the CPU. This
// addon only moves octets: parsing and policy stay in JavaScript, which
// also keeps a dgram fallback for when the addon cannot be built.
//
// JavaScript API (see src/native/udp.ts):
//   new UdpSocket(family)                       4 or 6
//   bind(address, port, ipv6Only) -> 0 | -errno
//   connect(address, port)        -> 0 | -errno
//   localPort()                   -> port
//   start(rx, meta, slotSize, onBatch)          rx: Buffer of BATCH slots, meta: Int32Array(BATCH*8)
//        onBatch(n): n > 0 datagrams are in rx/meta; n < 0 is -errno (e.g. ICMP unreachable)
//        meta per datagram: [length, port, family, truncated, a0, a1, a2, a3] (address in network order words)
//   send(buf, port, address)      -> bytes | -errno     address null on a connected socket
//   sendBatch(bufs, meta, count)  -> datagrams sent | -errno   meta as above, for the destinations
//   close()

#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define BATCH 64
#define META 8
#define MAX_ROUNDS 16

typedef struct {
  int fd;
  int family;
  int closing;
  int polling;
  uv_poll_t poll;
  napi_env env;
  napi_ref self;       // strong while open: an open socket is never collected
  napi_ref on_batch;
  napi_ref rx_ref;
  napi_ref meta_ref;
  napi_async_context ctx;
  uint8_t* rx;
  int32_t* meta;
  size_t slot;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_storage addrs[BATCH];
} sock_t;

#define CHECK(call)                                   \
  do {                                                \
    if ((call) != napi_ok) {                          \
      napi_throw_error(env, NULL, "napi: " #call);    \
      return NULL;                                    \
    }                                                 \
  } while (0)

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static sock_t* unwrap(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  napi_value self;
  void* data;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &data) != napi_ok) {
    napi_throw_error(env, NULL, "not a UdpSocket");
    return NULL;
  }
  return (sock_t*)data;
}

// Parses a numeric address (with an optional %zone for IPv6) into `ss`.
static int parse_address(napi_env env, napi_value v, int family, int port, struct sockaddr_storage* ss, socklen_t* len) {
  char text[INET6_ADDRSTRLEN + 32];
  size_t n;
  if (napi_get_value_string_utf8(env, v, text, sizeof text, &n) != napi_ok) return -EINVAL;
  memset(ss, 0, sizeof *ss);
  if (family == 4) {
    struct sockaddr_in* a = (struct sockaddr_in*)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, text, &a->sin_addr) != 1) return -EINVAL;
    *len = sizeof *a;
    return 0;
  }
  struct sockaddr_in6* a6 = (struct sockaddr_in6*)ss;
  if (strchr(text, '%') == NULL) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, text, &a6->sin6_addr) != 1) return -EINVAL;
    *len = sizeof *a6;
    return 0;
  }
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_INET6;
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(text, NULL, &hints, &res) != 0 || res == NULL) return -EINVAL;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  a6->sin6_port = htons((uint16_t)port);
  return 0;
}

// Fills a sockaddr from meta words [port, family, _, a0..a3].
static socklen_t meta_to_addr(const int32_t* m, struct sockaddr_storage* ss) {
  memset(ss, 0, sizeof(struct sockaddr_in6));
  if (m[2] == 4) {
    struct sockaddr_in* a = (struct sockaddr_in*)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)m[1]);
    memcpy(&a->sin_addr, &m[4], 4);
    return sizeof *a;
  }
  struct sockaddr_in6* a6 = (struct sockaddr_in6*)ss;
  a6->sin6_family = AF_INET6;
  a6->sin6_port = htons((uint16_t)m[1]);
  memcpy(&a6->sin6_addr, &m[4], 16);
  return sizeof *a6;
}

static void addr_to_meta(const struct sockaddr_storage* ss, int32_t* m) {
  m[4] = m[5] = m[6] = m[7] = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in* a = (const struct sockaddr_in*)ss;
    m[1] = ntohs(a->sin_port);
    m[2] = 4;
    memcpy(&m[4], &a->sin_addr, 4);
  } else {
    const struct sockaddr_in6* a6 = (const struct sockaddr_in6*)ss;
    m[1] = ntohs(a6->sin6_port);
    m[2] = 6;
    memcpy(&m[4], &a6->sin6_addr, 16);
  }
}

static void call_js(sock_t* s, int n) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, arg, result;
  if (napi_get_reference_value(env, s->on_batch, &fn) == napi_ok && fn != NULL) {
    napi_get_global(env, &recv); // make_callback wants an object as `this`
    arg = num(env, n);
    // make_callback drains microtasks afterwards, like any I/O callback in Node.
    if (napi_make_callback(env, s->ctx, recv, fn, 1, &arg, &result) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t* handle, int status, int events) {
  sock_t* s = (sock_t*)handle->data;
  (void)events;
  if (status < 0) {
    // libuv turns POLLERR into UV_EBADF and stops the handle: report the
    // socket's real error (ECONNREFUSED after an ICMP port unreachable) and
    // keep listening.
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0) err = -status;
    call_js(s, -err);
    if (!s->closing) uv_poll_start(&s->poll, UV_READABLE, on_readable);
    return;
  }
  for (int round = 0; round < MAX_ROUNDS && !s->closing; round++) {
    for (int i = 0; i < BATCH; i++) {
      s->iov[i].iov_base = s->rx + (size_t)i * s->slot;
      s->iov[i].iov_len = s->slot;
      memset(&s->msgs[i].msg_hdr, 0, sizeof(struct msghdr));
      s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
      s->msgs[i].msg_hdr.msg_iovlen = 1;
      s->msgs[i].msg_hdr.msg_name = &s->addrs[i];
      s->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    }
    int n = recvmmsg(s->fd, s->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) call_js(s, -errno);
      return;
    }
    for (int i = 0; i < n; i++) {
      int32_t* m = s->meta + (size_t)i * META;
      m[0] = (int32_t)s->msgs[i].msg_len;
      m[3] = (s->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
      addr_to_meta(&s->addrs[i], m);
    }
    call_js(s, n);
    if (n < BATCH) return;
  }
}

static void finalize(napi_env env, void* data, void* hint) {
  (void)hint;
  sock_t* s = (sock_t*)data;
  if (s->fd >= 0) close(s->fd);
  if (s->ctx) napi_async_destroy(env, s->ctx);
  free(s);
}

static napi_value js_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  int32_t family = 4;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (argc > 0) napi_get_value_int32(env, argv[0], &family);
  sock_t* s = calloc(1, sizeof(sock_t));
  if (!s) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  s->family = family == 6 ? 6 : 4;
  s->env = env;
  s->fd = socket(s->family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    int e = errno;
    free(s);
    napi_throw_error(env, NULL, strerror(e));
    return NULL;
  }
  int size = 4 * 1024 * 1024;
  setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  napi_value name;
  napi_create_string_utf8(env, "pvdns:udp", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, self, name, &s->ctx);
  CHECK(napi_wrap(env, self, s, finalize, NULL, NULL));
  CHECK(napi_create_reference(env, self, 1, &s->self));
  return self;
}

// Applies bind or connect to the (address, port) in argv[0], argv[1].
static napi_value with_address(napi_env env, sock_t* s, napi_value* argv, int (*op)(int, const struct sockaddr*, socklen_t)) {
  int32_t port = 0;
  napi_get_value_int32(env, argv[1], &port);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = parse_address(env, argv[0], s->family, port, &ss, &len);
  if (r == 0 && op(s->fd, (struct sockaddr*)&ss, len) < 0) r = -errno;
  return num(env, r);
}

static napi_value js_bind(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  sock_t* s = unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  bool v6only = false;
  if (argc > 2) napi_get_value_bool(env, argv[2], &v6only);
  if (s->family == 6) {
    int on = v6only ? 1 : 0;
    setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  }
  return with_address(env, s, argv, bind);
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  sock_t* s = unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  return with_address(env, s, argv, connect);
}

static napi_value js_local_port(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  sock_t* s = unwrap(env, info, &argc, NULL);
  if (!s) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(s->fd, (struct sockaddr*)&ss, &len) < 0) return num(env, -errno);
  int32_t m[META];
  addr_to_meta(&ss, m);
  return num(env, m[1]);
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  sock_t* s = unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  if (s->polling) return num(env, -EALREADY);
  size_t rx_len, meta_len;
  void* rx;
  void* meta;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  uint32_t slot;
  CHECK(napi_get_buffer_info(env, argv[0], &rx, &rx_len));
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &meta_len, &meta, &ab, &offset));
  CHECK(napi_get_value_uint32(env, argv[2], &slot));
  if (type != napi_int32_array || meta_len < BATCH * META || slot == 0 || rx_len < (size_t)BATCH * slot) {
    napi_throw_range_error(env, NULL, "start: rx must hold BATCH slots and meta BATCH*8 int32");
    return NULL;
  }
  s->rx = rx;
  s->meta = meta;
  s->slot = slot;
  CHECK(napi_create_reference(env, argv[0], 1, &s->rx_ref));
  CHECK(napi_create_reference(env, argv[1], 1, &s->meta_ref));
  CHECK(napi_create_reference(env, argv[3], 1, &s->on_batch));
  uv_loop_t* loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  int r = uv_poll_init_socket(loop, &s->poll, s->fd);
  if (r == 0) {
    s->poll.data = s;
    r = uv_poll_start(&s->poll, UV_READABLE, on_readable);
  }
  if (r == 0) s->polling = 1;
  return num(env, r);
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  sock_t* s = unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  void* data;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[0], &data, &len));
  napi_valuetype t = napi_null;
  if (argc > 2) napi_typeof(env, argv[2], &t);
  ssize_t r;
  if (t == napi_string) {
    int32_t port = 0;
    napi_get_value_int32(env, argv[1], &port);
    struct sockaddr_storage ss;
    socklen_t alen;
    int e = parse_address(env, argv[2], s->family, port, &ss, &alen);
    if (e < 0) return num(env, e);
    r = sendto(s->fd, data, len, MSG_DONTWAIT, (struct sockaddr*)&ss, alen);
  } else {
    r = send(s->fd, data, len, MSG_DONTWAIT);
  }
  return num(env, r < 0 ? -errno : (double)r);
}

static napi_value js_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  sock_t* s = unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  uint32_t count;
  CHECK(napi_get_value_uint32(env, argv[2], &count));
  napi_typedarray_type type;
  size_t meta_len, offset;
  void* meta;
  napi_value ab;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &meta_len, &meta, &ab, &offset));
  if (count > BATCH || type != napi_int32_array || meta_len < count * META) {
    napi_throw_range_error(env, NULL, "sendBatch: at most BATCH datagrams, meta as int32 BATCH*8");
    return NULL;
  }
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_storage addrs[BATCH];
  for (uint32_t i = 0; i < count; i++) {
    napi_value buf;
    void* data;
    size_t len;
    CHECK(napi_get_element(env, argv[0], i, &buf));
    CHECK(napi_get_buffer_info(env, buf, &data, &len));
    iov[i].iov_base = data;
    iov[i].iov_len = len;
    memset(&msgs[i].msg_hdr, 0, sizeof(struct msghdr));
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &addrs[i];
    msgs[i].msg_hdr.msg_namelen = meta_to_addr((int32_t*)meta + (size_t)i * META, &addrs[i]);
  }
  uint32_t sent = 0;
  while (sent < count) {
    int n = sendmmsg(s->fd, msgs + sent, count - sent, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      // The first datagram failed (e.g. ENOBUFS, or unreachable): skip it, keep the rest.
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      sent++;
      continue;
    }
    sent += (uint32_t)n;
  }
  return num(env, sent);
}

static void on_closed(uv_handle_t* handle) {
  sock_t* s = (sock_t*)handle->data;
  napi_env env = s->env;
  close(s->fd);
  s->fd = -1;
  if (s->on_batch) napi_delete_reference(env, s->on_batch);
  if (s->rx_ref) napi_delete_reference(env, s->rx_ref);
  if (s->meta_ref) napi_delete_reference(env, s->meta_ref);
  s->on_batch = s->rx_ref = s->meta_ref = NULL;
  napi_reference_unref(env, s->self, NULL);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  sock_t* s = unwrap(env, info, &argc, NULL);
  if (!s || s->closing) return NULL;
  s->closing = 1;
  // The fd (and its port) goes as soon as libuv lets go of the poll handle;
  // the memory when JavaScript lets go of the object.
  if (s->polling) {
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t*)&s->poll, on_closed);
  } else {
    close(s->fd);
    s->fd = -1;
    napi_reference_unref(env, s->self, NULL);
  }
  return NULL;
}

// native/raw.c: the netlink and ICMPv6 raw sockets, registered on the same exports.
napi_value raw_init(napi_env env, napi_value exports);
// native/memory.cc: reclaim(), memory handed back after a burst of work.
napi_value memory_init(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"bind", NULL, js_bind, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"localPort", NULL, js_local_port, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"sendBatch", NULL, js_send_batch, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  CHECK(napi_define_class(env, "UdpSocket", NAPI_AUTO_LENGTH, js_new, NULL, sizeof methods / sizeof methods[0], methods, &cls));
  CHECK(napi_set_named_property(env, exports, "UdpSocket", cls));
  napi_value batch;
  napi_create_uint32(env, BATCH, &batch);
  napi_set_named_property(env, exports, "BATCH", batch);
  return memory_init(env, raw_init(env, exports));
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
