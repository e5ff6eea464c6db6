{
  "targets": [
    {
      "target_name": "pvdns_udp",
      "sources": ["native/udp.c", "native/raw.c", "native/memory.cc"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [["OS!='linux'", { "sources!": ["native/udp.c", "native/raw.c", "native/memory.cc"], "type": "none" }]]
    }
  ]
}
