{
  "targets": [
    {
      "target_name": "backy2_native",
      "sources": ["native/backy2_native.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
