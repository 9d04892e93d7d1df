// Tiny system-call helpers Node.js does not expose: page-cache advice, SEEK_DATA/SEEK_HOLE,
// and zeroing a byte range of a file or block device. Synchronous; each call is one syscall.
// Also AES-256-GCM between caller-given buffers, through the OpenSSL that Node.js itself
// carries: node:crypto returns a new buffer per call, which the block workers would otherwise
// allocate and leave to the garbage collector for every 4 MiB block. And a CRC-32 that folds
// with carry-less multiplication (crc32.c), three times as fast as zlib's here.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <node_api.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"

static napi_value throw_errno(napi_env env, const char *call, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s failed: %s", call, strerror(err));
  const char *code = "EIO";
  switch (err) {
    case EBADF: code = "EBADF"; break;
    case EINVAL: code = "EINVAL"; break;
    case ENXIO: code = "ENXIO"; break;
    case EOPNOTSUPP: code = "EOPNOTSUPP"; break;
    case ENOSPC: code = "ENOSPC"; break;
    case EPERM: code = "EPERM"; break;
    case EACCES: code = "EACCES"; break;
    case ESPIPE: code = "ESPIPE"; break;
    case ENOTTY: code = "ENOTTY"; break;
    default: break;
  }
  napi_throw_error(env, code, message);
  return NULL;
}

static int args(napi_env env, napi_callback_info info, size_t want, double *out) {
  napi_value argv[4];
  size_t argc = 4;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "wrong number of arguments");
    return 0;
  }
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_double(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "arguments must be numbers");
      return 0;
    }
  }
  return 1;
}

// fadvise(fd, offset, length, advice): posix_fadvise; advice 4 = POSIX_FADV_DONTNEED.
static napi_value fadvise(napi_env env, napi_callback_info info) {
  double a[4];
  if (!args(env, info, 4, a)) return NULL;
  int err = posix_fadvise((int)a[0], (off_t)a[1], (off_t)a[2], (int)a[3]);
  if (err != 0) return throw_errno(env, "posix_fadvise", err);
  return NULL;
}

// fadviseAsync(fd, offset, length, advice) -> Promise: the same in the libuv thread pool, because
// dropping pages takes about 0.5 ms per 4 MiB and must not block the event loop.
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd, advice, err;
  off_t offset, length;
} fadvise_job;

static void fadvise_execute(napi_env env, void *data) {
  (void)env;
  fadvise_job *job = data;
  job->err = posix_fadvise(job->fd, job->offset, job->length, job->advice);
}

static void fadvise_complete(napi_env env, napi_status status, void *data) {
  fadvise_job *job = data;
  napi_value result;
  if (status == napi_ok && job->err == 0) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    napi_value message, code;
    napi_create_string_utf8(env, strerror(job->err ? job->err : EIO), NAPI_AUTO_LENGTH, &message);
    napi_create_string_utf8(env, "EIO", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, message, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value fadvise_async(napi_env env, napi_callback_info info) {
  double a[4];
  if (!args(env, info, 4, a)) return NULL;
  fadvise_job *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_errno(env, "calloc", ENOMEM);
  job->fd = (int)a[0];
  job->offset = (off_t)a[1];
  job->length = (off_t)a[2];
  job->advice = (int)a[3];
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "backy2:fadvise", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, fadvise_execute, fadvise_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

// seek(fd, offset, whence): lseek with SEEK_DATA (3) or SEEK_HOLE (4); -1 when past the data (ENXIO).
static napi_value seek(napi_env env, napi_callback_info info) {
  double a[3];
  if (!args(env, info, 3, a)) return NULL;
  off_t r = lseek((int)a[0], (off_t)a[1], (int)a[2]);
  if (r < 0 && errno != ENXIO) return throw_errno(env, "lseek", errno);
  napi_value out;
  napi_create_double(env, r < 0 ? -1.0 : (double)r, &out);
  return out;
}

// zeroRange(fd, offset, length): makes the range read as zeros without writing data:
// BLKZEROOUT on a block device, a punched hole in a regular file.
static napi_value zero_range(napi_env env, napi_callback_info info) {
  double a[3];
  if (!args(env, info, 3, a)) return NULL;
  int fd = (int)a[0];
  struct stat st;
  if (fstat(fd, &st) != 0) return throw_errno(env, "fstat", errno);
  if (S_ISBLK(st.st_mode)) {
    uint64_t range[2] = {(uint64_t)a[1], (uint64_t)a[2]};
    if (ioctl(fd, BLKZEROOUT, range) != 0) return throw_errno(env, "ioctl(BLKZEROOUT)", errno);
  } else if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)a[1], (off_t)a[2]) != 0) {
    return throw_errno(env, "fallocate(PUNCH_HOLE)", errno);
  }
  return NULL;
}

// resident(fd, offset, length): true when every page of the range is in the page cache
// (mincore over a temporary mapping), so callers can drop only what they brought in.
static napi_value resident(napi_env env, napi_callback_info info) {
  double a[3];
  if (!args(env, info, 3, a)) return NULL;
  long page = sysconf(_SC_PAGESIZE);
  off_t start = (off_t)a[1] & ~((off_t)page - 1);
  size_t length = (size_t)((off_t)a[1] + (off_t)a[2] - start);
  bool all = true;
  if (length > 0) {
    void *map = mmap(NULL, length, PROT_READ, MAP_SHARED, (int)a[0], start);
    if (map == MAP_FAILED) return throw_errno(env, "mmap", errno);
    size_t pages = (length + (size_t)page - 1) / (size_t)page;
    unsigned char *vec = malloc(pages);
    int rc = vec == NULL ? -1 : mincore(map, length, vec);
    int err = errno;
    for (size_t i = 0; rc == 0 && i < pages; i++) {
      if (!(vec[i] & 1)) {
        all = false;
        break;
      }
    }
    free(vec);
    munmap(map, length);
    if (rc != 0) return throw_errno(env, "mincore", err);
  }
  napi_value out;
  napi_get_boolean(env, all, &out);
  return out;
}

static int bytes_of(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  void *at;
  if (napi_get_typedarray_info(env, value, &type, length, &at, &buffer, &offset) != napi_ok || type != napi_uint8_array) return 0;
  *data = at;
  return 1;
}

// aesGcm(encrypt, key, nonce, aad, input, output, tag): AES-256-GCM of input into output (the
// same length; the same memory, or apart: never partly overlapping). Encrypting writes the
// 16-byte tag into tag; decrypting checks it. Returns false when decryption fails to
// authenticate (output is then zeroed), throws on bad arguments or an OpenSSL failure.
static napi_value aes_gcm(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  size_t argc = 7;
  bool encrypt;
  uint8_t *key, *nonce, *aad, *in, *out, *tag;
  size_t key_len, nonce_len, aad_len, in_len, out_len, tag_len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 7 || napi_get_value_bool(env, argv[0], &encrypt) != napi_ok ||
      !bytes_of(env, argv[1], &key, &key_len) || !bytes_of(env, argv[2], &nonce, &nonce_len) || !bytes_of(env, argv[3], &aad, &aad_len) ||
      !bytes_of(env, argv[4], &in, &in_len) || !bytes_of(env, argv[5], &out, &out_len) || !bytes_of(env, argv[6], &tag, &tag_len)) {
    napi_throw_type_error(env, NULL, "aesGcm(encrypt, key, nonce, aad, input, output, tag) takes a boolean and Uint8Arrays");
    return NULL;
  }
  bool partly = in != out && in < out + out_len && out < in + in_len;
  if (key_len != 32 || nonce_len != 12 || tag_len != 16 || out_len < in_len || in_len > INT32_MAX || aad_len > INT32_MAX || partly) {
    napi_throw_range_error(env, NULL, "aesGcm: a 32-byte key, a 12-byte nonce, a 16-byte tag, and an output as long as the input that does not partly overlap it");
    return NULL;
  }
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  int done = 0;
  int ok = ctx != NULL && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) == 1 &&
           (aad_len == 0 || EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1) && EVP_CipherUpdate(ctx, out, &done, in, (int)in_len) == 1;
  if (ok && !encrypt) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
  bool authentic = true;
  if (ok) {
    if (EVP_CipherFinal_ex(ctx, out + done, &n) == 1) {
      if (encrypt) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    } else if (encrypt) {
      ok = 0;
    } else {
      authentic = false;
      memset(out, 0, in_len);
    }
  }
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    napi_throw_error(env, "ECRYPTO", "AES-256-GCM failed in OpenSSL");
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, authentic, &result);
  return result;
}

// crc32(data, value = 0): zlib's crc32 of data, continuing from value.
static napi_value crc32(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  uint8_t *data;
  size_t length;
  uint32_t value = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !bytes_of(env, argv[0], &data, &length) ||
      (argc > 1 && napi_get_value_uint32(env, argv[1], &value) != napi_ok)) {
    napi_throw_type_error(env, NULL, "crc32(data, value) takes a Uint8Array and an unsigned 32-bit number");
    return NULL;
  }
  napi_value result;
  napi_create_uint32(env, backy2_crc32(value, data, length), &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value folds;
  napi_get_boolean(env, backy2_crc32_folds(), &folds);
  napi_property_descriptor props[] = {
      {"fadvise", NULL, fadvise, NULL, NULL, NULL, napi_default, NULL},
      {"fadviseAsync", NULL, fadvise_async, NULL, NULL, NULL, napi_default, NULL},
      {"seek", NULL, seek, NULL, NULL, NULL, napi_default, NULL},
      {"zeroRange", NULL, zero_range, NULL, NULL, NULL, napi_default, NULL},
      {"resident", NULL, resident, NULL, NULL, NULL, napi_default, NULL},
      {"aesGcm", NULL, aes_gcm, NULL, NULL, NULL, napi_default, NULL},
      {"crc32", NULL, crc32, NULL, NULL, NULL, napi_default, NULL},
      {"crc32Folds", NULL, NULL, NULL, NULL, folds, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
