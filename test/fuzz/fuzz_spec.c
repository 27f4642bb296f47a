/*
 * fuzz_spec.c: libFuzzer target for spec validation and model building.
 *
 * Bytes decode to a model spec (spec_bytes.h), which goes through
 * nn_spec_check and nn_model_create under a small byte budget.  The two
 * must agree (a spec the checker accepts never fails creation with
 * NN_ERR_SPEC and vice versa; a spec too large for any budget is
 * NN_ERR_LIMIT from both), and a model that is built is used end to
 * end at a small batch: adapt its normalize layers (NN_ERR_DATA allowed for
 * values float32 statistics cannot hold), predict, train a step with the
 * encoded loss and optimizer, serialize (NN_ERR_NUMERIC allowed when the
 * step overflowed), load, predict again.
 *
 * Oracles: ASan/UBSan, libFuzzer's memory limits, the checks below.
 * Build and run: make -C test/unit fuzz-smoke.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc_shim.h"
#include "nn.h"
#include "spec_bytes.h"

#define MODEL_BUDGET ((size_t) 4 << 20)
#define BATCH_BUDGET ((size_t) 16 << 20)
#define B 3

static void
check(int cond, const char *what)
{
	if (!cond)
	{
		fprintf(stderr, "fuzz_spec: %s\n", what);
		abort();
	}
}

/* Does the spec have an embedding layer (which refuses ids out of range)? */
static int
has_embedding(const sb_spec *s)
{
	for (int i = 0; i < s->spec.n_layers; i++)
		if (s->spec.layers[i].kind == NN_LAYER_EMBEDDING)
			return 1;
	return 0;
}

static void
use(nn_model *m, const sb_spec *s)
{
	nn_error	err;
	size_t		in = nn_model_input_size(m),
				out = nn_model_output_size(m);
	float	   *x,
			   *y,
			   *t;
	nn_rng		rng;
	nn_optimizer_spec o;
	double		loss = 0;
	int64_t		correct = 0;
	size_t		len;
	uint8_t    *bytes;
	nn_model   *r = NULL;
	nn_status	st;

	if (sb_model_cost(m) > 2e7)
		return;
	if (nn_model_prepare(m, B, true, BATCH_BUDGET, &err) != NN_OK)
	{
		check(err.status == NN_ERR_LIMIT, "prepare failed but not over the limit");
		return;
	}
	x = malloc(sizeof(float) * in * B);
	y = malloc(sizeof(float) * out * B);
	t = calloc(out * B, sizeof(float));
	nn_rng_seed(&rng, s->seed);
	/* small integers: valid token ids for most embeddings, fine elsewhere */
	for (size_t i = 0; i < in * B; i++)
		x[i] = (float) nn_rng_below(&rng, 3);
	while (nn_model_needs_adapt(m))
	{
		st = nn_model_adapt_batch(m, x, B, &err);
		check(st == NN_OK || (st == NN_ERR_DATA && has_embedding(s)),
			  "adapt_batch failed");
		if (st == NN_OK)
			st = nn_model_adapt_finish(m, &err);
		if (st == NN_ERR_DATA)
		{
			free(x);
			free(y);
			free(t);
			return;
		}
		check(st == NN_OK, "adapt_finish failed");
	}
	st = nn_model_predict(m, y, x, B, &err);
	if (st == NN_ERR_DATA && has_embedding(s))
	{
		/* an id past a tiny vocabulary: refused, as it must be */
		free(x);
		free(y);
		free(t);
		return;
	}
	check(st == NN_OK, "predict failed");
	nn_optimizer_spec_init(&o, s->opt, 0);
	check(nn_model_set_training(m, &o, s->loss, NULL, 0, &err) == NN_OK,
		  "set_training failed");
	/* targets: class 0 for sparse losses, zeros otherwise */
	(void) nn_model_train_batch(m, x, t, B, &rng, &loss, &correct, &err);

	len = nn_model_serialized_size(m, true);
	bytes = malloc(len);
	st = nn_model_serialize(m, bytes, len, true, test_crc32c, &err);
	if (st == NN_ERR_NUMERIC)
	{
		/* the step overflowed: refusing to write it is the right answer */
		free(bytes);
		free(x);
		free(y);
		free(t);
		return;
	}
	check(st == NN_OK, "serialize failed");
	check(nn_model_deserialize(&r, bytes, len, 0, &nn_malloc_alloc, test_crc32c,
							   &err) == NN_OK, "own bytes do not load");
	check(nn_model_prepare(r, B, false, BATCH_BUDGET, &err) == NN_OK,
		  "loaded model does not prepare");
	check(nn_model_predict(r, y, x, B, &err) == NN_OK, "loaded model does not predict");
	nn_model_free(r);
	free(bytes);
	free(x);
	free(y);
	free(t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	init;
	sb_spec		s;
	nn_error	e1,
				e2;
	nn_status	st1,
				st2;
	nn_model   *m = NULL;

	if (!init)
	{
		nn_set_threads(1);
		init = 1;
	}
	if (sb_decode(&s, data, size) != 0)
		return 0;
	memset(&e1, 0, sizeof(e1));
	memset(&e2, 0, sizeof(e2));
	st1 = nn_spec_check(&s.spec, &e1);
	st2 = nn_model_create(&m, &s.spec, s.seed, MODEL_BUDGET, &nn_malloc_alloc, &e2);
	/* NN_ERR_LIMIT: more parameters than any budget (about 2^59) */
	check(st1 == NN_OK || st1 == NN_ERR_SPEC || st1 == NN_ERR_LIMIT,
		  "spec check: unexpected status");
	check((st1 == NN_ERR_SPEC) == (st2 == NN_ERR_SPEC),
		  "nn_spec_check and nn_model_create disagree");
	check(st1 != NN_ERR_LIMIT || st2 == NN_ERR_LIMIT,
		  "nn_spec_check finds the spec too large, nn_model_create does not");
	if (st1 == NN_ERR_SPEC)
	{
		check(e1.layer >= -1 && e1.layer < s.spec.n_layers, "bad error layer");
		check(e1.layer == e2.layer && strcmp(e1.message, e2.message) == 0,
			  "create reports another error than the check");
	}
	if (st2 != NN_OK)
	{
		check(m == NULL, "failed create returned a model");
		check(st2 == NN_ERR_SPEC || st2 == NN_ERR_LIMIT || st2 == NN_ERR_MEMORY,
			  "create: unexpected status");
		return 0;
	}
	use(m, &s);
	nn_model_free(m);
	return 0;
}
