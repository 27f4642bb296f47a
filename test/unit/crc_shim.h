/*
 * crc_shim.h: PostgreSQL's CRC-32C (libpgport) behind the core's
 * nn_crc32c_fn signature.  Kept apart from nn_test.h because the shim is
 * the only file compiled with the PostgreSQL include path.
 */
#ifndef CRC_SHIM_H
#define CRC_SHIM_H

#include <stddef.h>
#include <stdint.h>

uint32_t	test_crc32c(uint32_t crc, const void *data, size_t len);

#endif							/* CRC_SHIM_H */
