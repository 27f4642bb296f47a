/*
 * crc_shim.c: CRC-32C for the tests, fuzzers and benchmark, from PostgreSQL's
 * own implementation (libpgport's COMP_CRC32C), so model bytes written here
 * are the bytes the extension writes.
 *
 * The core calls it chained: crc = fn(crc, data, len), starting from
 * 0xFFFFFFFF and finishing with crc ^ 0xFFFFFFFF (INIT_CRC32C / FIN_CRC32C).
 */
#include "postgres_fe.h"

#include "port/pg_crc32c.h"

#include "crc_shim.h"

/* One chained CRC-32C step over len bytes. */
uint32_t
test_crc32c(uint32_t crc, const void *data, size_t len)
{
	pg_crc32c	c = crc;

	COMP_CRC32C(c, data, len);
	return c;
}
