{
  "targets": [
    {
      "target_name": "pvdns_udp",
      "sources": ["native/udp.c", "native/raw.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", { "sources!": ["native/udp.c", "native/raw.c"], "type": "none" }]]
    }
  ]
}
