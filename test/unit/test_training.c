/*
 * test_training.c: end-to-end training sanity and reproducibility.
 *
 * - XOR: a 2-8-1 tanh/sigmoid MLP with Adam reaches 100% accuracy.
 * - A two-class spiral (400 points, made here from a fixed seed) reaches
 *   more than 95% training accuracy with a 2-32-32-2 relu MLP.
 * - The same seed and thread count give bit-identical weights across two
 *   runs (a CNN with dropout and shuffling), for 1 and 2 threads.
 * - Normalize adaptation: several layers adapt in turn; no rows is an error.
 */
#include <math.h>

#include "nn_test.h"

/* Train for epochs over (x, y) in shuffled mini-batches. */
static void
fit(nn_model *m, const float *x, const float *y, int32_t n, int32_t batch,
	int epochs, uint64_t seed, size_t in, size_t ylen)
{
	nn_rng		rng;
	uint32_t   *idx = nt_xmalloc(sizeof(uint32_t) * n);
	float	   *bx = nt_xmalloc(sizeof(float) * in * batch);
	float	   *by = nt_xmalloc(sizeof(float) * ylen * batch);
	nn_error	err;

	nn_rng_seed(&rng, seed);
	for (int32_t i = 0; i < n; i++)
		idx[i] = (uint32_t) i;
	for (int e = 0; e < epochs; e++)
	{
		nn_rng_shuffle(&rng, idx, n);
		for (int32_t b0 = 0; b0 < n; b0 += batch)
		{
			int32_t		nb = n - b0 < batch ? n - b0 : batch;
			double		loss = 0;
			int64_t		correct = 0;

			for (int32_t r = 0; r < nb; r++)
			{
				memcpy(bx + r * in, x + idx[b0 + r] * in, sizeof(float) * in);
				memcpy(by + r * ylen, y + idx[b0 + r] * ylen, sizeof(float) * ylen);
			}
			assert_ok(nn_model_train_batch(m, bx, by, nb, &rng, &loss, &correct,
										   &err), &err);
		}
	}
	free(idx);
	free(bx);
	free(by);
}

static double
accuracy(nn_model *m, const float *x, const float *y, int32_t n,
		 nn_loss_kind loss)
{
	double		l = 0;
	int64_t		correct = 0;
	nn_error	err;

	assert_ok(nn_model_prepare(m, n, false, 0, &err), &err);
	assert_ok(nn_model_evaluate_batch(m, NULL, x, y, n, loss, NULL, 0, &l,
									  &correct, &err), &err);
	return (double) correct / n;
}

static void
test_xor(void **state)
{
	nn_layer_spec l[] = {nt_dense(8, NN_ACT_TANH), nt_dense(1, NN_ACT_SIGMOID)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 2);
	nn_model   *m = nt_create(&spec, 7);
	float		x[8] = {0, 0, 0, 1, 1, 0, 1, 1};
	float		y[4] = {0, 1, 1, 0};
	float		p[4];
	nn_optimizer_spec o;
	nn_error	err;
	double		first = 0,
				last = 0;
	int64_t		correct = 0;

	(void) state;
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.05f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_BINARY_CE, NULL, 0, &err), &err);
	assert_ok(nn_model_prepare(m, 4, true, 0, &err), &err);
	for (int step = 0; step < 500; step++)
	{
		double		loss = 0;

		correct = 0;
		assert_ok(nn_model_train_batch(m, x, y, 4, NULL, &loss, &correct, &err),
				  &err);
		if (step == 0)
			first = loss / 4;
		last = loss / 4;
	}
	assert_ok(nn_model_predict(m, p, x, 4, &err), &err);
	print_message("XOR: loss %.4f -> %.4f, outputs %.3f %.3f %.3f %.3f\n", first,
				  last, p[0], p[1], p[2], p[3]);
	assert_true(p[0] < 0.5f && p[1] > 0.5f && p[2] > 0.5f && p[3] < 0.5f);
	assert_true(accuracy(m, x, y, 4, NN_LOSS_BINARY_CE) == 1.0);
	assert_true(last < 0.1 * first);
	nn_model_free(m);
}

#define SPIRAL_N 200			/* per class */

/* Two interleaved spirals with a little noise, from a fixed seed. */
static void
make_spiral(float *x, float *y)
{
	nn_rng		rng;

	nn_rng_seed(&rng, 2024);
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < SPIRAL_N; i++)
		{
			int			k = c * SPIRAL_N + i;
			double		r = (double) (i + 1) / SPIRAL_N;
			double		t = 1.5 * M_PI * 2 * r * 0.7 + c * M_PI +
				0.15 * (nn_rng_uniform(&rng) - 0.5);

			x[2 * k] = (float) (r * sin(t));
			x[2 * k + 1] = (float) (r * cos(t));
			y[k] = (float) c;
		}
}

static void
test_spiral(void **state)
{
	nn_layer_spec l[] = {nt_dense(32, NN_ACT_RELU), nt_dense(32, NN_ACT_RELU),
	nt_dense(2, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 3);
	nn_model   *m = nt_create(&spec, 11);
	float		x[4 * SPIRAL_N],
				y[2 * SPIRAL_N];
	nn_optimizer_spec o;
	nn_error	err;
	double		acc0,
				acc;

	(void) state;
	make_spiral(x, y);
	acc0 = accuracy(m, x, y, 2 * SPIRAL_N, NN_LOSS_SPARSE_CATEGORICAL_CE);
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.01f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0,
									&err), &err);
	assert_ok(nn_model_prepare(m, 32, true, 0, &err), &err);
	fit(m, x, y, 2 * SPIRAL_N, 32, 150, 5, 2, 1);
	acc = accuracy(m, x, y, 2 * SPIRAL_N, NN_LOSS_SPARSE_CATEGORICAL_CE);
	print_message("spiral: training accuracy %.3f -> %.3f\n", acc0, acc);
	assert_true(acc > 0.95);
	nn_model_free(m);
}

/*
 * A CNN with dropout, trained with shuffling from a fixed seed; big enough
 * (batch 64, 2.4M multiply-adds in the first conv2d, 131k parameters) for
 * the core to split its layers and optimizer updates over threads.
 */
static float *
train_cnn(int threads, int64_t *np)
{
	nn_layer_spec l[] = {nt_reshape3(16, 16, 1),
		nt_conv(16, 3, 3, 1, 1, true, NN_ACT_RELU),
		nt_dropout(0.2f),
		nt_conv(16, 3, 3, 1, 1, true, NN_ACT_RELU),
		nt_plain(NN_LAYER_FLATTEN),
		nt_dense(32, NN_ACT_RELU),
		nt_dropout(0.3f),
	nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 256, 0, 0, l, 8);
	nn_model   *m;
	const int32_t N = 160;
	float	   *x = nt_xmalloc(sizeof(float) * 256 * N);
	float		y[160];
	float	   *w;
	nn_optimizer_spec o;
	nn_rng		rng;
	nn_error	err;
	int			saved = nn_get_threads();

	nn_set_threads(threads);
	m = nt_create(&spec, 3);
	nn_rng_seed(&rng, 8);
	nt_fill(x, 256 * N, &rng, 0, 1);
	for (int i = 0; i < N; i++)
	{
		y[i] = (float) (i % 3);
		x[i * 256 + (i % 3) * 80] += 2.0f;	/* something to learn */
	}
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.01f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0,
									&err), &err);
	assert_ok(nn_model_prepare(m, 64, true, 0, &err), &err);
	fit(m, x, y, N, 64, 3, 99, 256, 1);
	*np = nt_flat_params(m);
	assert_true(*np > 65536);
	w = nt_xmalloc(sizeof(float) * *np);
	memcpy(w, nn_model_params(m), sizeof(float) * *np);
	nn_model_free(m);
	free(x);
	nn_set_threads(saved);
	return w;
}

static void
test_reproducible(void **state)
{
	int64_t		n;
	float	   *a1 = train_cnn(1, &n);
	float	   *b1 = train_cnn(1, &n);
	float	   *a2 = train_cnn(2, &n);
	float	   *b2 = train_cnn(2, &n);

	(void) state;
	if (memcmp(a1, b1, sizeof(float) * n) != 0)
	{
		nt_close_f("1 thread, run 2 vs run 1", b1, a1, n, 0, 0);
		fail_msg("two runs with 1 thread differ");
	}
	if (memcmp(a2, b2, sizeof(float) * n) != 0)
	{
		nt_close_f("2 threads, run 2 vs run 1", b2, a2, n, 0, 0);
		fail_msg("two runs with 2 threads differ");
	}
	/* across thread counts only rounding may differ */
	assert_close_f("2 threads vs 1 thread", a2, a1, n, 1e-4, 1e-3);
	print_message("1 and 2 threads give %s weights\n",
				  memcmp(a1, a2, sizeof(float) * n) ? "slightly different" :
				  "bit-identical");
	free(a1);
	free(b1);
	free(a2);
	free(b2);
}

/* Two normalize layers adapt one after the other; no rows is an error. */
static void
test_adaptation(void **state)
{
	nn_layer_spec l[] = {nt_plain(NN_LAYER_NORMALIZE), nt_rescale(3.0f, 1.0f),
	nt_plain(NN_LAYER_NORMALIZE)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 3);
	nn_model   *m = nt_create(&spec, 1);
	float		x[8] = {1, 10, 2, 20, 3, 30, 6, 60};
	float		y[8];
	nn_error	err;

	(void) state;
	assert_ok(nn_model_prepare(m, 4, false, 0, &err), &err);
	assert_true(nn_model_needs_adapt(m));
	/* finishing with no rows names the layer */
	assert_status(nn_model_adapt_finish(m, &err), NN_ERR_DATA, &err);
	assert_int_equal(err.layer, 0);
	assert_ok(nn_model_adapt_batch(m, x, 4, &err), &err);
	assert_ok(nn_model_adapt_finish(m, &err), &err);
	assert_true(nn_model_needs_adapt(m));	/* the second one is pending */
	assert_status(nn_model_adapt_finish(m, &err), NN_ERR_DATA, &err);
	assert_int_equal(err.layer, 2);
	assert_ok(nn_model_adapt_batch(m, x, 2, &err), &err);
	assert_ok(nn_model_adapt_batch(m, x + 4, 2, &err), &err);
	assert_ok(nn_model_adapt_finish(m, &err), &err);
	assert_false(nn_model_needs_adapt(m));
	assert_ok(nn_model_adapt_batch(m, x, 4, &err), &err);	/* no-op now */
	assert_ok(nn_model_predict(m, y, x, 4, &err), &err);
	/* the second layer sees standardized data: mean 0, variance 1 again */
	for (int c = 0; c < 2; c++)
	{
		double		mu = 0,
					var = 0;

		for (int r = 0; r < 4; r++)
			mu += y[r * 2 + c] / 4.0;
		for (int r = 0; r < 4; r++)
			var += (y[r * 2 + c] - mu) * (y[r * 2 + c] - mu) / 4.0;
		assert_scalar_close("mean after two normalize layers", mu, 0.0, 1e-5, 0);
		assert_scalar_close("variance after two normalize layers", var, 1.0, 1e-4,
							1e-4);
	}
	nn_model_free(m);
}

/* A constant feature: variance 0, divided by epsilon, output 0 not NaN. */
static void
test_adaptation_constant_feature(void **state)
{
	nn_layer_spec l[] = {nt_plain(NN_LAYER_NORMALIZE)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	float		x[6] = {5, 1, 5, 2, 5, 3};
	float		y[6];
	nn_error	err;

	(void) state;
	assert_ok(nn_model_prepare(m, 3, false, 0, &err), &err);
	assert_ok(nn_model_adapt_batch(m, x, 3, &err), &err);
	assert_ok(nn_model_adapt_finish(m, &err), &err);
	assert_ok(nn_model_predict(m, y, x, 3, &err), &err);
	for (int r = 0; r < 3; r++)
	{
		assert_true(isfinite(y[r * 2]));
		assert_true(fabsf(y[r * 2]) < 1e-3f);
	}
	assert_scalar_close("standardized feature", y[1], -sqrt(1.5), 1e-5, 1e-5);
	nn_model_free(m);
}

/*
 * Statistics of a feature far from 0: mean 1e6, variance ~1 (float32 holds
 * such values to 1/16).  E[x^2] - mean^2 loses everything to cancellation
 * here (an error of ~1e12 x 1e-16 x rows); Keras combines per-batch means
 * and variances instead.  The normalized outputs must match the two-pass
 * statistics computed here in double, up to the float32 rounding of the
 * stored mean (0.04 absolute; the cancellation costs ~0.7).
 */
static void
test_adaptation_large_offset(void **state)
{
	nn_layer_spec l[] = {nt_plain(NN_LAYER_NORMALIZE)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	const int32_t N = 60000;
	float	   *x = nt_xmalloc(sizeof(float) * 2 * N);
	float	   *y = nt_xmalloc(sizeof(float) * 2 * 1000);
	double	   *ref = nt_xmalloc(sizeof(double) * 2 * 1000);
	double		mu[2] = {0, 0},
				var[2] = {0, 0};
	nn_rng		rng;
	nn_error	err;

	(void) state;
	nn_rng_seed(&rng, 31);
	for (int32_t i = 0; i < N; i++)
	{
		x[2 * i] = (float) (1e6 + 1.7320508 * (2 * nn_rng_uniform(&rng) - 1));
		x[2 * i + 1] = (float) (-3e5 + 40 * (2 * nn_rng_uniform(&rng) - 1));
	}
	for (int32_t i = 0; i < 2 * N; i++)
		mu[i % 2] += x[i] / (double) N;
	for (int32_t i = 0; i < 2 * N; i++)
		var[i % 2] += (x[i] - mu[i % 2]) * (x[i] - mu[i % 2]) / N;
	assert_ok(nn_model_prepare(m, 1000, false, 0, &err), &err);
	for (int32_t b = 0; b < N; b += 1000)
		assert_ok(nn_model_adapt_batch(m, x + 2 * b, 1000, &err), &err);
	assert_ok(nn_model_adapt_finish(m, &err), &err);
	assert_ok(nn_model_predict(m, y, x, 1000, &err), &err);
	for (int i = 0; i < 2000; i++)
		ref[i] = (x[i] - mu[i % 2]) / sqrt(var[i % 2]);
	/* the stored float32 mean is within half an ulp of 1e6 (0.031) */
	assert_close_fd("normalize adapted at mean 1e6 / -3e5", y, ref, 2000, 0.04,
					1e-3);
	nn_model_free(m);
	free(x);
	free(y);
	free(ref);
}

/*
 * Adapting to values whose variance float32 cannot hold (uniform in
 * +-4e19: 5.3e38 > FLT_MAX), or to a constant 1e30 feature: adapt_finish
 * may refuse (NN_ERR_DATA), but a model it accepts must predict finite
 * values and serialize to bytes that load.
 */
static void
test_adaptation_extreme_values(void **state)
{
	(void) state;
	for (int k = 0; k < 2; k++)
	{
		nn_layer_spec l[] = {nt_plain(NN_LAYER_NORMALIZE), nt_dense(1, NN_ACT_LINEAR)};
		nn_model_spec spec = nt_spec(1, 1, 0, 0, l, 2);
		nn_model   *m = nt_create(&spec, 1);
		float		x[64],
					y[64];
		nn_rng		rng;
		nn_error	err;
		nn_status	st;
		const char *what = k ? "constant 1e30" : "uniform +-4e19";

		nn_rng_seed(&rng, 2);
		for (int i = 0; i < 64; i++)
			x[i] = k ? 1e30f : 4e19f * (2 * nn_rng_uniform(&rng) - 1);
		assert_ok(nn_model_prepare(m, 64, false, 0, &err), &err);
		assert_ok(nn_model_adapt_batch(m, x, 64, &err), &err);
		st = nn_model_adapt_finish(m, &err);
		if (st == NN_OK)
		{
			size_t		len = nn_model_serialized_size(m, false);
			uint8_t    *buf = nt_xmalloc(len);
			nn_model   *r = NULL;

			assert_ok(nn_model_predict(m, y, x, 64, &err), &err);
			for (int i = 0; i < 64; i++)
				if (!isfinite(y[i]))
					fail_msg("%s: adapted, then predicts %g", what, (double) y[i]);
			if (nn_model_serialize(m, buf, len, false, test_crc32c, &err) == NN_OK &&
				nn_model_deserialize(&r, buf, len, 0, &nn_malloc_alloc,
									 test_crc32c, &err) != NN_OK)
				fail_msg("%s: adapted and saved, but the bytes do not load: %s",
						 what, err.message);
			nn_model_free(r);
			free(buf);
		}
		else
			assert_int_equal(st, NN_ERR_DATA);
		nn_model_free(m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xor),
		cmocka_unit_test(test_spiral),
		cmocka_unit_test(test_reproducible),
		cmocka_unit_test(test_adaptation),
		cmocka_unit_test(test_adaptation_constant_feature),
		cmocka_unit_test(test_adaptation_large_offset),
		cmocka_unit_test(test_adaptation_extreme_values),
	};

	return NT_RUN(tests);
}
