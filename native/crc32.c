// CRC-32 by folding: the buffer is reduced 64 bytes at a time with carry-less multiplications
// (PCLMULQDQ) by powers of x modulo the polynomial, then to 32 bits by a Barrett reduction.
// The method is the one Intel published ("Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ", 2009), in the bit-reflected form CRC-32 uses. zlib's crc32 goes about 7 GB/s
// here; this about three times that.
#include "crc32.h"

// PCLMULQDQ is x86's: elsewhere (or built with BACKY2_CRC32_BYTEWISE) this CRC goes byte by byte,
// and JavaScript uses zlib's instead (native.ts).
#if (defined(__x86_64__) || defined(__i386__)) && !defined(BACKY2_CRC32_BYTEWISE)
#define FOLDS_ON_THIS_ARCH 1
#include <immintrin.h>
#endif

// The constants, each the bit-reflected remainder of a power of x modulo P = 0x104C11DB7,
// shifted left by one (a reflected product lands one bit low):
//   FOLD_4_LO = x^(4*128+32) mod P, FOLD_4_HI = x^(4*128-32) mod P: fold 64 bytes onto the next 64;
//   FOLD_1_LO = x^(128+32) mod P,   FOLD_1_HI = x^(128-32) mod P:   fold 16 bytes onto the next 16;
//   FOLD_64 = x^64 mod P: 64 bits to 32;
// and for the Barrett reduction MU = floor(x^64 / P) and P itself, both reflected (33 bits).
#define FOLD_4_LO 0x154442bd4ULL
#define FOLD_4_HI 0x1c6e41596ULL
#define FOLD_1_LO 0x1751997d0ULL
#define FOLD_1_HI 0x0ccaa009eULL
#define FOLD_64 0x163cd6124ULL
#define MU 0x1f7011641ULL
#define POLY 0x1db710641ULL

static uint32_t table[256];
static bool folds;

__attribute__((constructor)) static void init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
#ifdef FOLDS_ON_THIS_ARCH
  __builtin_cpu_init();
  folds = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
}

bool backy2_crc32_folds(void) { return folds; }

// The raw (not inverted) CRC state over p[0..len), one byte at a time.
static uint32_t bytewise(uint32_t state, const uint8_t *p, size_t len) {
  while (len--) state = table[(state ^ *p++) & 0xff] ^ (state >> 8);
  return state;
}

#ifdef FOLDS_ON_THIS_ARCH
// a * b where a is one 64-bit half of x (imm bit 0) and b one half of k (imm bit 4).
#define CLMUL(x, k, imm) _mm_clmulepi64_si128((x), (k), (imm))

// Folds `x` (the state so far, 128 bits) onto the next 128 bits `next` by the distance `k` holds.
__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i x, __m128i k, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(CLMUL(x, k, 0x00), CLMUL(x, k, 0x11)), next);
}

// The raw CRC state over p[0..len), len a multiple of 16 and at least 64.
__attribute__((target("pclmul,sse4.1"))) static uint32_t folded(uint32_t state, const uint8_t *p, size_t len) {
  __m128i x0 = _mm_loadu_si128((const __m128i *)p);
  __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
  __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
  __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
  x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)state));
  p += 64;
  len -= 64;
  __m128i k = _mm_set_epi64x((long long)FOLD_4_HI, (long long)FOLD_4_LO);
  for (; len >= 64; p += 64, len -= 64) {
    x0 = fold(x0, k, _mm_loadu_si128((const __m128i *)p));
    x1 = fold(x1, k, _mm_loadu_si128((const __m128i *)(p + 16)));
    x2 = fold(x2, k, _mm_loadu_si128((const __m128i *)(p + 32)));
    x3 = fold(x3, k, _mm_loadu_si128((const __m128i *)(p + 48)));
  }
  k = _mm_set_epi64x((long long)FOLD_1_HI, (long long)FOLD_1_LO);
  __m128i x = fold(fold(fold(x0, k, x1), k, x2), k, x3);
  for (; len >= 16; p += 16, len -= 16) x = fold(x, k, _mm_loadu_si128((const __m128i *)p));
  // 128 bits to 64: the low half times x^(128-32), onto the high half.
  x = _mm_xor_si128(_mm_srli_si128(x, 8), CLMUL(x, k, 0x10));
  // 64 bits to 32: the low 32 bits times x^64, onto the rest.
  const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
  x = _mm_xor_si128(_mm_srli_si128(x, 4), CLMUL(_mm_and_si128(x, low32), _mm_set_epi64x(0, (long long)FOLD_64), 0x00));
  // Barrett reduction to the 32-bit remainder.
  const __m128i barrett = _mm_set_epi64x((long long)MU, (long long)POLY);
  __m128i t = CLMUL(_mm_and_si128(x, low32), barrett, 0x10);
  t = CLMUL(_mm_and_si128(t, low32), barrett, 0x00);
  return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x, t), 1);
}
#endif

uint32_t backy2_crc32(uint32_t crc, const uint8_t *p, size_t len) {
  uint32_t state = ~crc;
#ifdef FOLDS_ON_THIS_ARCH
  if (folds && len >= 64) {
    size_t whole = len & ~(size_t)15;
    state = folded(state, p, whole);
    p += whole;
    len -= whole;
  }
#endif
  return ~bytewise(state, p, len);
}
