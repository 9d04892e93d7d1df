{
  "targets": [
    {
      "target_name": "backy2_native",
      "sources": ["native/backy2_native.c", "native/crc32.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
