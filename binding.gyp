{
  "targets": [
    {
      "target_name": "vhost_native",
      "sources": [
        "src/native/binding.c",
        "src/native/napi_util.c",
        "src/native/sockets.c",
        "src/native/messages.c",
        "src/native/memory.c",
        "src/native/eventfd.c",
        "src/native/poller.c",
        "src/native/iovec.c",
        "src/native/uring.c",
        "src/native/fileops.c"
      ],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11", "-fvisibility=hidden"]
    }
  ]
}
