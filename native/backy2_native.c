// Tiny system-call helpers Node.js does not expose: page-cache advice, SEEK_DATA/SEEK_HOLE,
// and zeroing a byte range of a file or block device. Synchronous; each call is one syscall.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"fadvise", NULL, fadvise, NULL, NULL, NULL, napi_default, NULL},
      {"fadviseAsync", NULL, fadvise_async, NULL, NULL, NULL, napi_default, NULL},
      {"seek", NULL, seek, NULL, NULL, NULL, napi_default, NULL},
      {"zeroRange", NULL, zero_range, NULL, NULL, NULL, napi_default, NULL},
      {"resident", NULL, resident, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
