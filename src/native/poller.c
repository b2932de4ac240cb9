/*
 * Poller: a JS class over a libuv uv_poll_t watching one fd for readability on
 * the env's event loop. Owns the handle's life cycle and the call into JS
 * (napi_make_callback with an async context, so microtasks and nextTicks run
 * after the callback as after Node's own I/O callbacks, and a throw becomes an
 * uncaught exception). Does not read the fd: the callback does.
 *
 * Lifetime: the C record is shared by the JS object (napi_wrap) and libuv (the
 * handle). It is freed when both are done: the wrap finalizer has run and the
 * uv_close callback has run, in whichever order. An active poller holds a
 * strong reference to its JS object, as Node's own handles do, so it is never
 * collected while it can still fire; an idle one is collectable, and its
 * finalizer closes the handle.
 */
#include "napi_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <uv.h>

struct poller {
  uv_poll_t handle;
  napi_env env;
  int fd;
  bool linked; /* in open_pollers */
  struct poller *prev, *next;
  napi_ref self;     /* refcount 1 while active, 0 (weak) otherwise */
  napi_ref callback; /* strong */
  napi_async_context async;
  napi_async_cleanup_hook_handle teardown; /* until the handle is closed */
  bool active;      /* watching: uv_poll_start done, no stop since */
  bool closing;     /* uv_close called: the handle is gone for good */
  bool uv_closed;   /* the uv_close callback ran */
  bool finalized;   /* the JS object is gone */
  bool in_callback; /* inside napi_make_callback */
  bool released;    /* self, callback and async released */
};

static const napi_type_tag poller_tag = {0x3c0d9e81b2f64a57ULL,
                                         0x8e47a1d6c95b0f23ULL};

/* Drop the JS-side references. Needs a handle scope, so it runs from a JS
 * call, the finalizer, or the end of on_poll; never from the uv_close
 * callback. */
static void release_js(struct poller *p) {
  if (p->released)
    return;
  p->released = true;
  if (p->callback != NULL)
    napi_delete_reference(p->env, p->callback);
  if (p->self != NULL)
    napi_delete_reference(p->env, p->self);
  if (p->async != NULL)
    napi_async_destroy(p->env, p->async);
}

static void set_active(struct poller *p, bool active) {
  if (p->active == active)
    return;
  p->active = active;
  uint32_t count;
  if (active)
    napi_reference_ref(p->env, p->self, &count);
  else
    napi_reference_unref(p->env, p->self, &count);
}

static void on_close(uv_handle_t *handle) {
  struct poller *p = handle->data;
  p->uv_closed = true;
  /* Lets env teardown go on: Node unloads the addon after that, so this
   * callback must have run by then (see on_teardown). */
  if (p->teardown != NULL)
    napi_remove_async_cleanup_hook(p->teardown);
  p->teardown = NULL;
  if (p->finalized)
    free(p);
}

/* The open (not yet closing) pollers of the process, all loops. libuv's
 * uv_poll_stop drops the fd's epoll registration even when another handle of
 * the loop watches the same fd, silently deafening it; refusing a second open
 * Poller per (loop, fd) turns that into an error at construction. Worker
 * threads have loops of their own, hence the lock. */
static struct poller *open_pollers;
static pthread_mutex_t open_pollers_lock = PTHREAD_MUTEX_INITIALIZER;

/* Link p unless another open poller watches the same fd on the same loop. */
static bool link_open(struct poller *p) {
  bool taken = false;
  pthread_mutex_lock(&open_pollers_lock);
  for (const struct poller *q = open_pollers; q != NULL && !taken; q = q->next)
    taken = q->handle.loop == p->handle.loop && q->fd == p->fd;
  if (!taken) {
    p->prev = NULL;
    p->next = open_pollers;
    if (open_pollers != NULL)
      open_pollers->prev = p;
    open_pollers = p;
    p->linked = true;
  }
  pthread_mutex_unlock(&open_pollers_lock);
  return !taken;
}

static void unlink_open(struct poller *p) {
  if (!p->linked)
    return;
  pthread_mutex_lock(&open_pollers_lock);
  if (p->prev != NULL)
    p->prev->next = p->next;
  else
    open_pollers = p->next;
  if (p->next != NULL)
    p->next->prev = p->prev;
  p->linked = false;
  pthread_mutex_unlock(&open_pollers_lock);
}

static void close_handle(struct poller *p) {
  if (p->closing)
    return;
  p->closing = true;
  unlink_open(p);
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t *)&p->handle, on_close);
}

/* Env teardown (process exit, worker exit) with the handle still open: close
 * it now. Node waits for on_close to remove this hook before it unloads the
 * addon; a close callback left for later would run from unmapped code. The
 * JS references go in the finalizer, which teardown runs afterwards. */
static void on_teardown(napi_async_cleanup_hook_handle handle, void *arg) {
  (void)handle;
  close_handle(arg);
}

/* A callback that threw: report it the way Node reports a throw from an event
 * callback (process 'uncaughtException', else print and exit). */
static void report_uncaught(napi_env env) {
  bool pending = false;
  napi_value exception;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
      napi_get_and_clear_last_exception(env, &exception) == napi_ok)
    napi_fatal_exception(env, exception);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  (void)events;
  struct poller *p = handle->data;
  /* uv_poll_stop already drops pending events; this also covers a stop()
   * from another callback of the same loop iteration. */
  if (!p->active)
    return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok)
    return;
  napi_value recv = NULL, fn = NULL;
  napi_get_reference_value(env, p->self, &recv);
  napi_get_reference_value(env, p->callback, &fn);
  if (status < 0) {
    /* libuv stopped the watcher itself (POLLERR). Mirror it so start() can
     * re-arm; the callback still runs and learns the error from its syscall. */
    uv_poll_stop(&p->handle);
    set_active(p, false);
  }
  if (recv != NULL && fn != NULL) {
    p->in_callback = true;
    napi_status st = napi_make_callback(env, p->async, recv, fn, 0, NULL, NULL);
    p->in_callback = false;
    if (st != napi_ok)
      report_uncaught(env);
    /* close() from inside the callback deferred this to here. */
    if (p->closing)
      release_js(p);
  }
  napi_close_handle_scope(env, scope);
}

static void poller_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct poller *p = data;
  p->finalized = true;
  p->active = false;
  close_handle(p);
  release_js(p);
  if (p->uv_closed)
    free(p);
}

/* A throwaway epoll instance used to test an fd before uv_poll_start: libuv
 * registers the fd later, in the loop, and aborts the process if the kernel
 * refuses it (closed fd, regular file). One per process, made on first use. */
static int probe_epoll(void) {
  static int shared = -1;
  int fd = __atomic_load_n(&shared, __ATOMIC_ACQUIRE);
  if (fd >= 0)
    return fd;
  fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0)
    return -1;
  int expected = -1;
  if (!__atomic_compare_exchange_n(&shared, &expected, fd, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    close(fd);
    return expected;
  }
  return fd;
}

/* 0 if epoll accepts fd, else an errno. */
static int probe_fd(int fd) {
  int ep = probe_epoll();
  if (ep < 0)
    return errno;
  struct epoll_event ev = {.events = EPOLLIN};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
    return errno == EEXIST ? 0 : errno;
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, &ev);
  return 0;
}

/* new Poller(fd, onReadable) */
static napi_value poller_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, target;
  napi_valuetype t;
  int fd;
  NAPI_CALL(env, napi_get_new_target(env, info, &target));
  if (target == NULL) {
    throw_type_error(env, "ERR_CONSTRUCT_CALL_REQUIRED",
                     "Class constructor Poller cannot be invoked without 'new'");
    return NULL;
  }
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  NAPI_CALL(env, napi_typeof(env, argv[1], &t));
  if (t != napi_function) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"onReadable\" argument must be of type function");
    return NULL;
  }
  /* libuv asserts fd >= -1; the kernel would say EBADF anyway. */
  if (fd < 0) {
    throw_errno(env, EBADF, "uv_poll_init");
    return NULL;
  }
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));

  struct poller *p = calloc(1, sizeof *p);
  if (p == NULL) {
    throw_errno(env, ENOMEM, "calloc");
    return NULL;
  }
  p->env = env;
  p->fd = fd;
  p->handle.data = p;
  napi_value name;
  if (napi_create_reference(env, argv[1], 1, &p->callback) != napi_ok ||
      napi_create_reference(env, self, 0, &p->self) != napi_ok ||
      napi_create_string_utf8(env, "VhostPoller", NAPI_AUTO_LENGTH, &name) !=
          napi_ok ||
      napi_async_init(env, self, name, &p->async) != napi_ok) {
    release_js(p);
    free(p);
    throw_napi_failure(env, "Poller references");
    return NULL;
  }
  int err = uv_poll_init(loop, &p->handle, fd);
  if (err < 0) {
    release_js(p);
    free(p);
    throw_errno(env, -err, "uv_poll_init");
    return NULL;
  }
  if (!link_open(p)) {
    p->finalized = true; /* never wrapped: on_close frees */
    close_handle(p);
    release_js(p);
    throw_errno(env, EEXIST, "uv_poll_init");
    return NULL;
  }
  if (napi_add_async_cleanup_hook(env, on_teardown, p, &p->teardown) !=
          napi_ok ||
      napi_type_tag_object(env, self, &poller_tag) != napi_ok ||
      napi_wrap(env, self, p, poller_finalize, NULL, NULL) != napi_ok) {
    /* Not wrapped: no finalizer will come, so on_close frees. */
    p->finalized = true;
    close_handle(p);
    release_js(p);
    throw_napi_failure(env, "napi_wrap");
    return NULL;
  }
  return self;
}

static struct poller *this_poller(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_valuetype t;
  bool tagged = false;
  void *p = NULL;
  size_t argc = 0;
  if (napi_get_cb_info(env, info, &argc, NULL, &self, NULL) != napi_ok ||
      napi_typeof(env, self, &t) != napi_ok || t != napi_object ||
      napi_check_object_type_tag(env, self, &poller_tag, &tagged) != napi_ok ||
      !tagged || napi_unwrap(env, self, &p) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_THIS", "Value of \"this\" must be a Poller");
    return NULL;
  }
  return p;
}

/* start(): watch for readability. Idempotent; a no-op after close(). */
static napi_value poller_start(napi_env env, napi_callback_info info) {
  struct poller *p = this_poller(env, info);
  if (p == NULL)
    return NULL;
  if (p->closing || p->active)
    return make_undefined(env);
  int err = probe_fd(p->fd);
  if (err != 0) {
    throw_errno(env, err, "epoll_ctl");
    return NULL;
  }
  err = uv_poll_start(&p->handle, UV_READABLE, on_poll);
  if (err < 0) {
    throw_errno(env, -err, "uv_poll_start");
    return NULL;
  }
  set_active(p, true);
  return make_undefined(env);
}

/* stop(): no callback after this returns. Idempotent. */
static napi_value poller_stop(napi_env env, napi_callback_info info) {
  struct poller *p = this_poller(env, info);
  if (p == NULL)
    return NULL;
  if (p->active) {
    uv_poll_stop(&p->handle);
    set_active(p, false);
  }
  return make_undefined(env);
}

/* close(): stop and release the handle. Idempotent. */
static napi_value poller_close(napi_env env, napi_callback_info info) {
  struct poller *p = this_poller(env, info);
  if (p == NULL)
    return NULL;
  if (p->closing)
    return make_undefined(env);
  set_active(p, false);
  close_handle(p);
  /* Inside the callback the async context is still in use: on_poll releases
   * the references once napi_make_callback has returned. */
  if (!p->in_callback)
    release_js(p);
  return make_undefined(env);
}

static napi_value poller_ref(napi_env env, napi_callback_info info) {
  struct poller *p = this_poller(env, info);
  if (p == NULL)
    return NULL;
  if (!p->closing)
    uv_ref((uv_handle_t *)&p->handle);
  return make_undefined(env);
}

static napi_value poller_unref(napi_env env, napi_callback_info info) {
  struct poller *p = this_poller(env, info);
  if (p == NULL)
    return NULL;
  if (!p->closing)
    uv_unref((uv_handle_t *)&p->handle);
  return make_undefined(env);
}

bool register_poller(napi_env env, napi_value exports) {
  const napi_property_descriptor methods[] = {
      {"start", NULL, poller_start, NULL, NULL, NULL, napi_default_method, NULL},
      {"stop", NULL, poller_stop, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, poller_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, poller_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, poller_unref, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  return napi_define_class(env, "Poller", NAPI_AUTO_LENGTH, poller_new, NULL,
                           sizeof methods / sizeof methods[0], methods,
                           &cls) == napi_ok &&
         napi_set_named_property(env, exports, "Poller", cls) == napi_ok;
}
