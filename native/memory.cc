// Memory handed back after a burst of work (issue 19). Under a flood V8
// grows its heap (pages it keeps committed once empty) and its GC and
// compiler threads grow glibc's malloc arenas; neither returns much to the
// system by itself, so an idle pvdns stayed 60-90 MiB above its size before
// the flood. reclaim() asks V8 for its low-memory collection (a full,
// compacting GC that also releases the empty pages it pools and shrinks the
// young generation) and glibc to trim every arena (free pages go back with
// MADV_DONTNEED). pvdns calls it when it has been quiet a moment after
// growing (src/server/reclaim.ts): it blocks the loop for some milliseconds,
// so never while queries come.
//
// JavaScript API (see src/native/memory.ts):
//   reclaim()   -> undefined

#include <node_api.h>
#include <v8.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static napi_value js_reclaim(napi_env env, napi_callback_info info) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->LowMemoryNotification();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  return nullptr;
}

extern "C" napi_value memory_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "reclaim", NAPI_AUTO_LENGTH, js_reclaim, nullptr, &fn) == napi_ok) {
    napi_set_named_property(env, exports, "reclaim", fn);
  }
  return exports;
}
