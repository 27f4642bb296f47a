/*
 * fuzz_model_bytes.c: libFuzzer target for nn_model_deserialize.
 *
 * Each input is tried twice: as given (almost always stopped by the length
 * or CRC-32C check), and with the header length and trailing checksum
 * rewritten, so that mutations reach the structural validation behind
 * them.  A model that loads is then used: prepared (with a byte budget),
 * asked for one prediction on a zero row, trained one step when the bytes
 * carry training state, and serialized again (unless the core refuses with
 * NN_ERR_NUMERIC because the step overflowed); those bytes must load, and
 * serialize to themselves.
 *
 * Oracles: ASan/UBSan, libFuzzer's -malloc_limit_mb and -rss_limit_mb (a
 * few kilobytes of input must not make the loader allocate more than
 * their contents can describe), and the explicit checks below (abort).
 * Build and run: make -C test/unit fuzz-smoke.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc_shim.h"
#include "nn.h"
#include "spec_bytes.h"

#define BUDGET ((size_t) 64 << 20)

/*
 * Counting allocator for the loads: the loader may allocate what the bytes
 * can describe (parameters, gradients, slots: a few times their size) and
 * per-layer bookkeeping, never more.
 */
static size_t live,
			peak;

static void *
count_alloc(void *ctx, size_t size)
{
	size_t	   *p = malloc(size + 16);

	(void) ctx;
	if (p == NULL)
		return NULL;
	*p = size;
	live += size;
	if (live > peak)
		peak = live;
	return (char *) p + 16;
}

static void
count_free(void *ctx, void *ptr)
{
	size_t	   *p = (size_t *) ((char *) ptr - 16);

	(void) ctx;
	live -= *p;
	free(p);
}

static const nn_alloc counting = {count_alloc, count_free, NULL};

static void
check(int cond, const char *what)
{
	if (!cond)
	{
		fprintf(stderr, "fuzz_model_bytes: %s\n", what);
		abort();
	}
}

static void
exercise(nn_model *m)
{
	nn_error	err;
	size_t		in = nn_model_input_size(m);
	size_t		out = nn_model_output_size(m);
	size_t		len,
				len2;
	uint8_t    *a,
			   *b;
	nn_model   *r = NULL;
	nn_status	st;

	bool		run = in <= (1 << 20) && out <= (1 << 20) && sb_model_cost(m) <= 2e7;

	if (run && nn_model_prepare(m, 1, false, BUDGET, &err) == NN_OK)
	{
		float	   *x = calloc(in, sizeof(float));
		float	   *y = calloc(out, sizeof(float));

		check(nn_model_predict(m, y, x, 1, &err) == NN_OK, "predict failed");
		free(x);
		free(y);
	}
	if (run && nn_model_step_count(m) > 0 &&
		nn_model_prepare(m, 1, true, BUDGET, &err) == NN_OK)
	{
		float	   *x = calloc(in, sizeof(float));
		float	   *t = calloc(out, sizeof(float));
		nn_rng		rng;
		double		loss = 0;
		int64_t		correct = 0;

		nn_rng_seed(&rng, 1);
		(void) nn_model_train_batch(m, x, t, 1, &rng, &loss, &correct, &err);
		free(x);
		free(t);
	}

	/* the model's own bytes load and are a fixed point */
	len = nn_model_serialized_size(m, true);
	a = malloc(len);
	st = nn_model_serialize(m, a, len, true, test_crc32c, &err);
	if (st == NN_ERR_NUMERIC)
	{
		/* a step overflowed: the core refuses to write what nobody can read */
		free(a);
		return;
	}
	check(st == NN_OK, "serialize failed");
	if (nn_model_deserialize(&r, a, len, 0, &nn_malloc_alloc, test_crc32c,
							 &err) != NN_OK)
	{
		fprintf(stderr, "fuzz_model_bytes: %s (%s)\n", err.message, err.detail);
		check(0, "own bytes do not load");
	}
	len2 = nn_model_serialized_size(r, true);
	b = malloc(len2);
	check(nn_model_serialize(r, b, len2, true, test_crc32c, &err) == NN_OK,
		  "second serialize failed");
	check(len == len2 && memcmp(a, b, len) == 0,
		  "serialize(deserialize(bytes)) is not a fixed point");
	nn_model_free(r);
	free(a);
	free(b);
}

static void
try_load(const uint8_t *data, size_t size)
{
	nn_model   *m = NULL;
	nn_error	err;
	nn_status	st;
	size_t		base;

	memset(&err, 0, sizeof(err));
	base = peak = live;
	st = nn_model_deserialize(&m, data, size, BUDGET, &counting, test_crc32c,
							  &err);
	if (peak - base > 64 * size + ((size_t) 1 << 20))
	{
		fprintf(stderr, "fuzz_model_bytes: loading %zu bytes allocated %zu "
				"bytes (status %d: %s)\n", size, peak - base, (int) st,
				err.message);
		check(0, "the loader allocated far more than the bytes can hold");
	}
	if (st != NN_OK)
	{
		check(m == NULL, "failed load returned a model");
		check(st == NN_ERR_CORRUPT || st == NN_ERR_LIMIT || st == NN_ERR_MEMORY,
			  "unexpected status");
		check(err.status == st && err.message[0] != '\0', "error not filled in");
		return;
	}
	check(m != NULL, "successful load without a model");
	exercise(m);
	nn_model_free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	init;

	if (!init)
	{
		nn_set_threads(1);
		init = 1;
	}
	try_load(data, size);
	if (size >= 28 && size <= (1 << 20))
	{
		uint8_t    *d = malloc(size);
		uint32_t	c;

		memcpy(d, data, size);
		for (int i = 0; i < 8; i++)
			d[16 + i] = (uint8_t) ((uint64_t) size >> (8 * i));
		c = test_crc32c(0xFFFFFFFFu, d, size - 4) ^ 0xFFFFFFFFu;
		for (int i = 0; i < 4; i++)
			d[size - 4 + i] = (uint8_t) (c >> (8 * i));
		try_load(d, size);
		free(d);
	}
	return 0;
}
