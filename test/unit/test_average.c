/*
 * test_average.c: merging replicas for data-parallel training
 * (nn_model_average).  The merge is dst + w (src - dst) over parameters,
 * optimizer slots and layer statistics; merging replicas one at a time
 * gives their row-weighted mean; values both replicas hold (frozen
 * layers) stay bit for bit; and with momentum, merging the halves of a
 * batch's step gives the whole batch's step, velocities included.
 */
#include "nn_test.h"
#include "crc_shim.h"

#include <math.h>
#include <string.h>

/* dense tanh (4 -> 6), batchnorm, dense softmax (6 -> 3) */
#define IN 4
#define OUT 3
#define ROWS 8

static void
layers(nn_layer_spec *l)
{
	l[0] = nt_dense(6, NN_ACT_TANH);
	l[1] = nt_plain(NN_LAYER_BATCHNORM);
	l[2] = nt_dense(OUT, NN_ACT_SOFTMAX);
}

/* A model (layer 0 frozen when asked) set up for training. */
static nn_model *
make(nn_optimizer_kind opt, bool freeze_first)
{
	nn_layer_spec l[3];
	nn_model_spec spec;
	nn_model   *m;
	nn_optimizer_spec o;
	nn_error	err;

	layers(l);
	l[0].trainable = !freeze_first;
	spec = nt_spec(1, IN, 0, 0, l, 3);
	m = nt_create(&spec, 7);
	nn_optimizer_spec_init(&o, opt, 0.05f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL,
									0, &err), &err);
	assert_ok(nn_model_prepare(m, ROWS, true, 0, &err), &err);
	return m;
}

/* A replica: the model through its bytes, optimizer state included. */
static nn_model *
replica(const nn_model *m)
{
	size_t		len;
	uint8_t    *b = nt_serialize(m, true, &len);
	nn_model   *r;
	nn_error	err;

	assert_ok(nn_model_deserialize(&r, b, len, 0, &nn_malloc_alloc,
								   test_crc32c, &err), &err);
	free(b);
	assert_ok(nn_model_prepare(r, ROWS, true, 0, &err), &err);
	return r;
}

/* Rows x (n, IN) and class targets y (n) from seed. */
static void
data(float *x, float *y, int32_t n, uint64_t seed)
{
	nn_rng		rng;

	nn_rng_seed(&rng, seed);
	nt_fill(x, (size_t) n * IN, &rng, -1.0f, 1.0f);
	for (int32_t i = 0; i < n; i++)
		y[i] = (float) nn_rng_below(&rng, OUT);
}

/* Train steps batches of n rows from seed. */
static void
train(nn_model *m, int steps, int32_t n, uint64_t seed)
{
	float		x[ROWS * IN];
	float		y[ROWS];
	nn_rng		rng;
	double		loss = 0;
	int64_t		correct = 0;
	nn_error	err;

	nn_rng_seed(&rng, seed);
	for (int s = 0; s < steps; s++)
	{
		data(x, y, n, seed * 100 + (uint64_t) s);
		assert_ok(nn_model_train_batch(m, x, y, n, &rng, &loss, &correct,
									   &err), &err);
	}
}

/* Everything the merge touches, as one malloc'd vector of *n floats. */
static float *
snapshot(nn_model *m, int64_t *n)
{
	int64_t		np = nn_model_param_count(m);
	int32_t		C;
	float	   *st = nn_model_layer_state(m, 1, &C);
	float	   *v = nt_xmalloc(sizeof(float) * (size_t) (np + 2 * C));

	memcpy(v, nn_model_params(m), sizeof(float) * (size_t) nt_flat_params(m));
	memcpy(v + nt_flat_params(m), st, sizeof(float) * 2 * (size_t) C);
	*n = nt_flat_params(m) + 2 * C;
	return v;
}

/* The merge is dst + w (src - dst), statistics included; src unchanged. */
static void
test_merge_formula(void **state)
{
	nn_model   *a = make(NN_OPT_ADAM, false);
	nn_model   *b = replica(a);
	float	   *va,
			   *vb,
			   *vm,
			   *vb2;
	int64_t		n;
	nn_error	err;

	(void) state;
	train(a, 3, ROWS, 1);
	train(b, 5, ROWS, 2);
	va = snapshot(a, &n);
	vb = snapshot(b, &n);
	assert_ok(nn_model_average(a, b, 0.25, &err), &err);
	vm = snapshot(a, &n);
	vb2 = snapshot(b, &n);
	assert_memory_equal(vb, vb2, sizeof(float) * (size_t) n);
	for (int64_t i = 0; i < n; i++)
	{
		float		want = va[i] + 0.25f * (vb[i] - va[i]);

		assert_true(vm[i] == want);
	}
	/* the replicas differ, so the merge moved something */
	assert_false(memcmp(va, vb, sizeof(float) * (size_t) n) == 0);
	free(va);
	free(vb);
	free(vm);
	free(vb2);
	nn_model_free(a);
	nn_model_free(b);
}

/* Merging a model with a replica of itself changes none of its bytes,
 * optimizer state included. */
static void
test_self_merge(void **state)
{
	nn_model   *a = make(NN_OPT_ADAM, false);
	nn_model   *b;
	size_t		la,
				lb;
	uint8_t    *ba,
			   *bb;
	nn_error	err;

	(void) state;
	train(a, 2, ROWS, 3);
	b = replica(a);
	assert_ok(nn_model_average(a, b, 0.3, &err), &err);
	ba = nt_serialize(a, true, &la);
	bb = nt_serialize(b, true, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ba, bb, la);
	free(ba);
	free(bb);
	nn_model_free(a);
	nn_model_free(b);
}

/* Merging three replicas one at a time gives the row-weighted mean. */
static void
test_weighted_mean(void **state)
{
	nn_model   *r[3];
	float	   *v[3],
			   *vm;
	double		rows[3] = {10, 20, 30};
	double		merged = rows[0];
	int64_t		n;
	nn_error	err;

	(void) state;
	r[0] = make(NN_OPT_MOMENTUM, false);
	r[1] = replica(r[0]);
	r[2] = replica(r[0]);
	for (int i = 0; i < 3; i++)
	{
		train(r[i], 2 + i, ROWS, 10 + (uint64_t) i);
		v[i] = snapshot(r[i], &n);
	}
	for (int i = 1; i < 3; i++)
	{
		assert_ok(nn_model_average(r[0], r[i], rows[i] / (merged + rows[i]),
								   &err), &err);
		merged += rows[i];
	}
	vm = snapshot(r[0], &n);
	for (int64_t j = 0; j < n; j++)
	{
		double		want = (10 * v[0][j] + 20 * (double) v[1][j] +
							30 * (double) v[2][j]) / 60;

		assert_true(fabs(vm[j] - want) <= 1e-6 * (1 + fabs(want)));
	}
	for (int i = 0; i < 3; i++)
	{
		free(v[i]);
		nn_model_free(r[i]);
	}
	free(vm);
}

/* A frozen layer's weights are the same in both replicas: bit for bit
 * after the merge, whatever the weight. */
static void
test_frozen_exact(void **state)
{
	nn_model   *a = make(NN_OPT_RMSPROP, true);
	nn_model   *b = replica(a);
	int64_t		ko,
				kl,
				bo,
				bl;
	float	   *before;
	nn_error	err;

	(void) state;
	nn_model_layer_params(a, 0, &ko, &kl, &bo, &bl);
	before = nt_xmalloc(sizeof(float) * (size_t) (kl + bl));
	memcpy(before, nn_model_params(a) + ko, sizeof(float) * (size_t) (kl + bl));
	train(a, 3, ROWS, 5);
	train(b, 4, ROWS, 6);
	assert_ok(nn_model_average(a, b, 1.0 / 3.0, &err), &err);
	assert_memory_equal(before, nn_model_params(a) + ko,
						sizeof(float) * (size_t) (kl + bl));
	free(before);
	nn_model_free(a);
	nn_model_free(b);
}

/*
 * Momentum: after one step on each half of a batch, the merged model (its
 * velocities included) takes the same second step as a model that took
 * both on the whole batch, since gradients and velocities are linear in
 * the rows' contributions.
 */
static void
test_momentum_equivalence(void **state)
{
	nn_layer_spec l[2] = {nt_dense(5, NN_ACT_TANH),
	nt_dense(OUT, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 2);
	nn_model   *whole = nt_create(&spec, 11);
	nn_model   *h1,
			   *h2;
	nn_optimizer_spec o;
	float		x[ROWS * IN];
	float		y[ROWS];
	nn_rng		rng;
	double		loss = 0;
	int64_t		correct = 0;
	nn_error	err;

	(void) state;
	nn_optimizer_spec_init(&o, NN_OPT_MOMENTUM, 0.5f);
	assert_ok(nn_model_set_training(whole, &o, NN_LOSS_SPARSE_CATEGORICAL_CE,
									NULL, 0, &err), &err);
	assert_ok(nn_model_prepare(whole, ROWS, true, 0, &err), &err);
	h1 = replica(whole);
	h2 = replica(whole);
	data(x, y, ROWS, 21);
	nn_rng_seed(&rng, 1);
	assert_ok(nn_model_train_batch(whole, x, y, ROWS, &rng, &loss, &correct,
								   &err), &err);
	assert_ok(nn_model_train_batch(h1, x, y, ROWS / 2, &rng, &loss, &correct,
								   &err), &err);
	assert_ok(nn_model_train_batch(h2, x + ROWS / 2 * IN, y + ROWS / 2,
								   ROWS / 2, &rng, &loss, &correct, &err), &err);
	assert_ok(nn_model_average(h1, h2, 0.5, &err), &err);
	/* the second step from the merged velocities */
	data(x, y, ROWS, 22);
	assert_ok(nn_model_train_batch(whole, x, y, ROWS, &rng, &loss, &correct,
								   &err), &err);
	assert_ok(nn_model_train_batch(h1, x, y, ROWS, &rng, &loss, &correct,
								   &err), &err);
	assert_true(nt_close_f("momentum halves", nn_model_params(h1),
						   nn_model_params(whole),
						   (size_t) nt_flat_params(whole), 1e-6, 1e-5));
	nn_model_free(whole);
	nn_model_free(h1);
	nn_model_free(h2);
}

/* Models that are not replicas, and weights outside [0, 1], are refused. */
static void
test_refusals(void **state)
{
	nn_model   *a = make(NN_OPT_ADAM, false);
	nn_model   *sgd = make(NN_OPT_SGD, false);
	nn_layer_spec l[1] = {nt_dense(OUT, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 1);
	nn_model   *other = nt_create(&spec, 1);
	nn_error	err;

	(void) state;
	assert_int_equal(nn_model_average(a, other, 0.5, &err), NN_ERR_SPEC);
	assert_string_equal(err.message,
						"models to average are not replicas of one model");
	assert_int_equal(nn_model_average(a, sgd, 0.5, &err), NN_ERR_SPEC);
	assert_int_equal(nn_model_average(a, a, 1.5, &err), NN_ERR_SPEC);
	assert_string_equal(err.message, "averaging weight 1.5 is not in [0, 1]");
	assert_int_equal(nn_model_average(a, a, NAN, &err), NN_ERR_SPEC);
	assert_int_equal(nn_model_average(a, a, -0.1, &err), NN_ERR_SPEC);
	nn_model_free(a);
	nn_model_free(sgd);
	nn_model_free(other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_formula),
		cmocka_unit_test(test_self_merge),
		cmocka_unit_test(test_weighted_mean),
		cmocka_unit_test(test_frozen_exact),
		cmocka_unit_test(test_momentum_equivalence),
		cmocka_unit_test(test_refusals),
	};

	return NT_RUN(tests);
}
