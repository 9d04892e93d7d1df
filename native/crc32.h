// CRC-32 as zlib computes it (ISO-HDLC: polynomial 0x04C11DB7, reflected, pre- and
// post-inverted), folded with carry-less multiplication where the CPU has it.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Whether this CPU folds (PCLMULQDQ); without it backy2_crc32 goes byte by byte.
bool backy2_crc32_folds(void);

// The CRC-32 of p[0..len), continuing from the CRC of what came before it (0 to start), as
// zlib's crc32(crc, p, len).
uint32_t backy2_crc32(uint32_t crc, const uint8_t *p, size_t len);
