{
  "targets": [
    {
      "target_name": "vhost_native",
      "sources": ["src/native/binding.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
    }
  ]
}
