// Raw sockets for pvdns's network sources, in the same addon as the batched
// UDP sockets (udp.c calls raw_init): an rtnetlink socket subscribed to link
// and address changes, and a raw ICMPv6 socket that lets through Router
// Advertisements only. Node has neither socket family. Like udp.c, this only
// moves octets: rtnetlink and RA parsing stay in JavaScript.
//
// JavaScript API (see src/native/raw.ts):
//   new RawSocket('netlink', groups[, rcvbuf])  NETLINK_ROUTE bound to the multicast groups (RTMGRP_* bits);
//                                       rcvbuf: the receive queue in bytes (8 MiB; tests make it tiny)
//   new RawSocket('icmp6', icmpType)    ICMPv6 raw socket passing only that type (needs CAP_NET_RAW)
//        throws an Error (code: the errno name) naming what failed
//   portId()          -> the netlink port id the kernel gave this socket (0 for icmp6)
//   send(buf)         -> bytes | -errno    netlink: a request to the kernel (a dump)
//   start(onMessage)  -> 0 | -errno
//        onMessage(buf, meta) once per datagram; meta.last marks the last
//        datagram of one wake-up (so JavaScript can coalesce per batch);
//        icmp6 meta also has source (text), ifindex, hopLimit;
//        on a receive error buf is null and meta is { error: -errno, last: true },
//        with overrun: true for ENOBUFS on netlink (events were lost: dump again)
//   close()

#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// Datagrams read per wake-up before JavaScript runs; more wait for the next.
#define RAW_BATCH 64
// A netlink dump datagram is at most 32 KiB; an RA fits an MTU.
#define RAW_SLOT 65536

enum { KIND_NETLINK = 1, KIND_ICMP6 = 2 };

typedef struct {
  int fd;
  int kind;
  int closing;
  int polling;
  uv_poll_t poll;
  napi_env env;
  napi_ref self;  // strong while open, as in udp.c
  napi_ref on_message;
  napi_async_context ctx;
  uint8_t* rx;
} raw_t;

#define RCHECK(call)                                  \
  do {                                                \
    if ((call) != napi_ok) {                          \
      napi_throw_error(env, NULL, "napi: " #call);    \
      return NULL;                                    \
    }                                                 \
  } while (0)

static napi_value rnum(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static const char* errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    default: return NULL;
  }
}

static void throw_errno(napi_env env, const char* what, int e) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, errno_name(e), msg);
}

static raw_t* raw_unwrap(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  napi_value self;
  void* data;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &data) != napi_ok) {
    napi_throw_error(env, NULL, "not a RawSocket");
    return NULL;
  }
  return (raw_t*)data;
}

static void set_bool(napi_env env, napi_value obj, const char* key, bool v) {
  napi_value b;
  napi_get_boolean(env, v, &b);
  napi_set_named_property(env, obj, key, b);
}

static void set_num(napi_env env, napi_value obj, const char* key, double v) {
  napi_set_named_property(env, obj, key, rnum(env, v));
}

static void raw_call(raw_t* s, napi_value buf, napi_value meta) {
  napi_env env = s->env;
  napi_value fn, recv, result, argv[2] = {buf, meta};
  if (napi_get_reference_value(env, s->on_message, &fn) != napi_ok || fn == NULL) return;
  napi_get_global(env, &recv);
  if (napi_make_callback(env, s->ctx, recv, fn, 2, argv, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

static void raw_report_error(raw_t* s, int e) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value meta, nul;
  napi_create_object(env, &meta);
  napi_get_null(env, &nul);
  set_num(env, meta, "error", -e);
  set_bool(env, meta, "last", true);
  if (e == ENOBUFS && s->kind == KIND_NETLINK) set_bool(env, meta, "overrun", true);
  raw_call(s, nul, meta);
  napi_close_handle_scope(env, scope);
}

// Reads one datagram into s->rx and makes its Buffer and meta object;
// returns the length, or -errno (-EAGAIN when there is none).
static int raw_read_one(raw_t* s, napi_value* buf, napi_value* meta) {
  napi_env env = s->env;
  struct sockaddr_storage from;
  struct iovec iov = {s->rx, RAW_SLOT};
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int)) + 64];
  } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (s->kind == KIND_ICMP6) {
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof control.space;
  }
  ssize_t n;
  do {
    n = recvmsg(s->fd, &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  if (napi_create_buffer_copy(env, (size_t)n, s->rx, NULL, buf) != napi_ok) return -ENOMEM;
  napi_create_object(env, meta);
  if (msg.msg_flags & MSG_TRUNC) set_bool(env, *meta, "truncated", true);
  if (s->kind == KIND_ICMP6) {
    int ifindex = 0, hops = -1;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != IPPROTO_IPV6) continue;
      if (c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
        struct in6_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        ifindex = (int)pi.ipi6_ifindex;
      } else if (c->cmsg_type == IPV6_HOPLIMIT && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        memcpy(&hops, CMSG_DATA(c), sizeof hops);
      }
    }
    char text[INET6_ADDRSTRLEN] = "";
    if (from.ss_family == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6*)&from)->sin6_addr, text, sizeof text);
    napi_value src;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &src);
    napi_set_named_property(env, *meta, "source", src);
    set_num(env, *meta, "ifindex", ifindex);
    set_num(env, *meta, "hopLimit", hops);
  }
  return (int)n;
}

static void raw_on_readable(uv_poll_t* handle, int status, int events) {
  raw_t* s = (raw_t*)handle->data;
  (void)events;
  if (status < 0) {
    // POLLERR: libuv stops the handle; report the socket's error (ENOBUFS
    // after a netlink overrun) and listen on.
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0) err = -status;
    raw_report_error(s, err);
    if (!s->closing) uv_poll_start(&s->poll, UV_READABLE, raw_on_readable);
    return;
  }
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  // Read the whole wake-up's datagrams first, so the last can say it is.
  napi_value bufs[RAW_BATCH], metas[RAW_BATCH];
  int count = 0, err = 0;
  while (count < RAW_BATCH) {
    int r = raw_read_one(s, &bufs[count], &metas[count]);
    if (r < 0) {
      if (r != -EAGAIN && r != -EWOULDBLOCK) err = -r;
      break;
    }
    count++;
  }
  for (int i = 0; i < count && !s->closing; i++) {
    set_bool(env, metas[i], "last", i == count - 1 && err == 0);
    raw_call(s, bufs[i], metas[i]);
  }
  napi_close_handle_scope(env, scope);
  if (err != 0 && !s->closing) raw_report_error(s, err);
}

static void raw_finalize(napi_env env, void* data, void* hint) {
  (void)hint;
  raw_t* s = (raw_t*)data;
  if (s->fd >= 0) close(s->fd);
  if (s->ctx) napi_async_destroy(env, s->ctx);
  free(s->rx);
  free(s);
}

static int open_netlink(uint32_t groups, int size) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return -1;
  // A burst of changes (a VPN bringing up links, a dump answered while events
  // keep coming) must not overrun the queue; FORCE passes rmem_max as root.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = groups;
  if (bind(fd, (struct sockaddr*)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static int open_icmp6(int type) {
  int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMPV6);
  if (fd < 0) return -1;
  // The kernel drops every other ICMPv6 type before it is queued (RFC 3542 §3.2).
  struct icmp6_filter filter;
  ICMP6_FILTER_SETBLOCKALL(&filter);
  ICMP6_FILTER_SETPASS(type, &filter);
  int on = 1;
  if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) < 0 ||
      setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) < 0 ||
      setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static napi_value raw_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  RCHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  int32_t rcvbuf = 8 * 1024 * 1024;
  if (argc > 2) {
    napi_valuetype t;
    napi_typeof(env, argv[2], &t);
    if (t == napi_number) napi_get_value_int32(env, argv[2], &rcvbuf);
  }
  char kind[16] = "";
  size_t klen;
  int64_t arg = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], kind, sizeof kind, &klen) != napi_ok ||
      napi_get_value_int64(env, argv[1], &arg) != napi_ok) {
    napi_throw_type_error(env, NULL, "RawSocket: expected ('netlink', groups) or ('icmp6', icmpType)");
    return NULL;
  }
  int fd, k;
  if (strcmp(kind, "netlink") == 0) {
    k = KIND_NETLINK;
    fd = open_netlink((uint32_t)arg, rcvbuf);
    if (fd < 0) {
      throw_errno(env, "rtnetlink socket", errno);
      return NULL;
    }
  } else if (strcmp(kind, "icmp6") == 0) {
    if (arg < 0 || arg > 255) {
      napi_throw_range_error(env, NULL, "RawSocket: an ICMPv6 type is 0-255");
      return NULL;
    }
    k = KIND_ICMP6;
    fd = open_icmp6((int)arg);
    if (fd < 0) {
      int e = errno;
      if (e == EPERM || e == EACCES) {
        char msg[160];
        snprintf(msg, sizeof msg, "raw ICMPv6 socket needs CAP_NET_RAW (%s)", strerror(e));
        napi_throw_error(env, errno_name(e), msg);
      } else {
        throw_errno(env, "raw ICMPv6 socket", e);
      }
      return NULL;
    }
  } else {
    napi_throw_type_error(env, NULL, "RawSocket: the kind is 'netlink' or 'icmp6'");
    return NULL;
  }
  raw_t* s = calloc(1, sizeof(raw_t));
  uint8_t* rx = malloc(RAW_SLOT);
  if (!s || !rx) {
    free(s);
    free(rx);
    close(fd);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  s->fd = fd;
  s->kind = k;
  s->env = env;
  s->rx = rx;
  napi_value name;
  napi_create_string_utf8(env, k == KIND_NETLINK ? "pvdns:netlink" : "pvdns:icmp6", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, self, name, &s->ctx);
  RCHECK(napi_wrap(env, self, s, raw_finalize, NULL, NULL));
  RCHECK(napi_create_reference(env, self, 1, &s->self));
  return self;
}

static napi_value raw_port_id(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  raw_t* s = raw_unwrap(env, info, &argc, NULL);
  if (!s) return NULL;
  if (s->kind != KIND_NETLINK || s->fd < 0) return rnum(env, 0);
  struct sockaddr_nl sa;
  socklen_t len = sizeof sa;
  if (getsockname(s->fd, (struct sockaddr*)&sa, &len) < 0) return rnum(env, -errno);
  return rnum(env, sa.nl_pid);
}

static napi_value raw_send(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  raw_t* s = raw_unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  if (s->kind != KIND_NETLINK) return rnum(env, -EOPNOTSUPP);
  if (s->fd < 0) return rnum(env, -EBADF);
  void* data;
  size_t len;
  RCHECK(napi_get_buffer_info(env, argv[0], &data, &len));
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  ssize_t r;
  do {
    r = sendto(s->fd, data, len, MSG_DONTWAIT, (struct sockaddr*)&kernel, sizeof kernel);
  } while (r < 0 && errno == EINTR);
  return rnum(env, r < 0 ? -errno : (double)r);
}

static napi_value raw_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  raw_t* s = raw_unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  if (s->polling) return rnum(env, -EALREADY);
  if (s->closing) return rnum(env, -EBADF);
  napi_valuetype t = napi_undefined;
  if (argc > 0) napi_typeof(env, argv[0], &t);
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "start: expected a function");
    return NULL;
  }
  RCHECK(napi_create_reference(env, argv[0], 1, &s->on_message));
  uv_loop_t* loop;
  RCHECK(napi_get_uv_event_loop(env, &loop));
  int r = uv_poll_init_socket(loop, &s->poll, s->fd);
  if (r == 0) {
    s->poll.data = s;
    r = uv_poll_start(&s->poll, UV_READABLE, raw_on_readable);
  }
  if (r == 0) s->polling = 1;
  return rnum(env, r);
}

static void raw_on_closed(uv_handle_t* handle) {
  raw_t* s = (raw_t*)handle->data;
  napi_env env = s->env;
  close(s->fd);
  s->fd = -1;
  if (s->on_message) napi_delete_reference(env, s->on_message);
  s->on_message = NULL;
  napi_reference_unref(env, s->self, NULL);
}

static napi_value raw_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  raw_t* s = raw_unwrap(env, info, &argc, NULL);
  if (!s || s->closing) return NULL;
  s->closing = 1;
  if (s->polling) {
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t*)&s->poll, raw_on_closed);
  } else {
    close(s->fd);
    s->fd = -1;
    napi_reference_unref(env, s->self, NULL);
  }
  return NULL;
}

// Called from udp.c's module init: one .node file carries both classes.
napi_value raw_init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"portId", NULL, raw_port_id, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, raw_send, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, raw_start, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, raw_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  RCHECK(napi_define_class(env, "RawSocket", NAPI_AUTO_LENGTH, raw_new, NULL, sizeof methods / sizeof methods[0], methods, &cls));
  RCHECK(napi_set_named_property(env, exports, "RawSocket", cls));
  return exports;
}
