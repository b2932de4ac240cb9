/*
 * Entry point of the vhost_native addon: registers each module's exports.
 * Mechanism only (syscalls and the libuv poller); every policy lives in
 * TypeScript, whose typed face is src/native/index.ts.
 */
#include "napi_util.h"

static napi_value init(napi_env env, napi_value exports) {
  if (!register_sockets(env, exports) || !register_messages(env, exports) ||
      !register_memory(env, exports) || !register_eventfd(env, exports) ||
      !register_poller(env, exports) || !register_uring(env, exports) ||
      !register_fileops(env, exports)) {
    throw_napi_failure(env, "vhost_native init");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
