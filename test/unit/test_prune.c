/*
 * test_prune.c: magnitude pruning.  The smallest weights of every dense,
 * conv2d and recurrent kernel become zero and stay zero through training;
 * pruned models are stored sparsely, load back to the same model, and
 * damaged sparse tensors are refused.
 */
#include "nn_test.h"
#include "crc_shim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IN 12
#define BATCH 8

/* dense 12 -> 30 tanh, dense 30 -> 4 softmax; seed 5. */
static nn_model *
mlp(void)
{
	nn_layer_spec l[] = {nt_dense(30, NN_ACT_TANH), nt_dense(4, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 2);

	return nt_create(&spec, 5);
}

/* reshape (4, 3), lstm 6, dense 2 softmax. */
static nn_model *
rnn(void)
{
	nn_layer_spec l[] = {nt_reshape2(4, 3), nt_rnn(NN_LAYER_LSTM, 6, false),
	nt_dense(2, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 3);

	return nt_create(&spec, 6);
}

static void
data(float *x, float *y, int32_t classes)
{
	nn_rng		rng;

	nn_rng_seed(&rng, 4);
	nt_fill(x, IN * BATCH, &rng, -1.0f, 1.0f);
	for (int r = 0; r < BATCH; r++)
		y[r] = (float) (r % classes);
}

/*
 * Tensor [off, off + n) of the pruned model against its values before:
 * exactly floor(s n) zeros, and every kept weight at least as large in
 * magnitude as every pruned one.
 */
static void
check_tensor(const float *before, const float *after, int64_t n, double s)
{
	int64_t		zeros = 0;
	float		max_pruned = 0.0f,
				min_kept = INFINITY;

	for (int64_t i = 0; i < n; i++)
		if (after[i] == 0.0f)
		{
			zeros++;
			max_pruned = fmaxf(max_pruned, fabsf(before[i]));
		}
		else
		{
			assert_true(after[i] == before[i]);
			min_kept = fminf(min_kept, fabsf(before[i]));
		}
	assert_int_equal(zeros, (int64_t) floor(s * (double) n));
	assert_true(max_pruned <= min_kept);
}

static void
test_prune_magnitudes(void **state)
{
	nn_model   *m = mlp();
	int64_t		np = nt_flat_params(m);
	float	   *before = nt_xmalloc(sizeof(float) * np);
	nn_error	err;

	(void) state;
	memcpy(before, nn_model_params(m), sizeof(float) * np);
	assert_false(nn_model_is_pruned(m));
	assert_ok(nn_model_prune(m, 0.8, &err), &err);
	assert_true(nn_model_is_pruned(m));
	for (int i = 0; i < 2; i++)
	{
		int64_t		ko, kl, bo, bl;

		nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
		check_tensor(before + ko, nn_model_params(m) + ko, kl, 0.8);
		assert_memory_equal(before + bo, nn_model_params(m) + bo,
							sizeof(float) * bl);
	}
	assert_scalar_close("sparsity", nn_model_sparsity(m),
						(floor(0.8 * 360) + floor(0.8 * 120)) / 480.0, 1e-12, 0);
	free(before);
	nn_model_free(m);
}

/* A recurrent layer's kernel and recurrent kernel are pruned apiece. */
static void
test_prune_recurrent(void **state)
{
	nn_model   *m = rnn();
	int64_t		np = nt_flat_params(m);
	float	   *before = nt_xmalloc(sizeof(float) * np);
	int64_t		ro, rl, ko, kl, bo, bl;
	nn_error	err;

	(void) state;
	memcpy(before, nn_model_params(m), sizeof(float) * np);
	assert_ok(nn_model_prune(m, 0.5, &err), &err);
	nn_model_layer_params(m, 1, &ko, &kl, &bo, &bl);
	nn_model_layer_recurrent(m, 1, &ro, &rl);
	check_tensor(before + ko, nn_model_params(m) + ko, kl, 0.5);
	check_tensor(before + ro, nn_model_params(m) + ro, rl, 0.5);
	assert_memory_equal(before + bo, nn_model_params(m) + bo, sizeof(float) * bl);
	free(before);
	nn_model_free(m);
}

/* Training keeps pruned weights at zero, with penalties and clipping. */
static void
test_zeros_stay(void **state)
{
	nn_layer_spec l[] = {nt_dense(30, NN_ACT_TANH), nt_dense(4, NN_ACT_SOFTMAX)};
	nn_model_spec spec;
	nn_model   *m;
	nn_optimizer_spec o;
	float		x[IN * BATCH],
				y[BATCH];
	int64_t		np;
	float	   *pruned;
	nn_rng		rng;
	nn_error	err;

	(void) state;
	l[0].l1 = 0.01f;
	l[0].l2 = 0.01f;
	spec = nt_spec(1, IN, 0, 0, l, 2);
	m = nt_create(&spec, 5);
	np = nt_flat_params(m);
	data(x, y, 4);
	assert_ok(nn_model_prune(m, 0.6, &err), &err);
	pruned = nt_xmalloc(sizeof(float) * np);
	memcpy(pruned, nn_model_params(m), sizeof(float) * np);
	for (int k = 1; k <= NN_OPT_MAX; k++)
	{
		nn_optimizer_spec_init(&o, (nn_optimizer_kind) k, 0.05f);
		o.clipnorm = 0.5f;
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE,
										NULL, 0, &err), &err);
		assert_ok(nn_model_prepare(m, BATCH, true, 0, &err), &err);
		nn_rng_seed(&rng, 1);
		for (int s = 0; s < 5; s++)
		{
			double		loss = 0;
			int64_t		c = 0;

			assert_ok(nn_model_train_batch(m, x, y, BATCH, &rng, &loss, &c,
										   &err), &err);
		}
		nn_model_release_training(m);
	}
	{
		int64_t		moved = 0,
					zeros = 0;

		for (int layer = 0; layer < 2; layer++)
		{
			int64_t		ko, kl, bo, bl;

			nn_model_layer_params(m, layer, &ko, &kl, &bo, &bl);
			for (int64_t i = ko; i < ko + kl; i++)
				if (pruned[i] == 0.0f)
				{
					assert_true(nn_model_params(m)[i] == 0.0f);
					zeros++;
				}
		}
		for (int64_t i = 0; i < np; i++)
			moved += nn_model_params(m)[i] != pruned[i];
		assert_int_equal(zeros, (int64_t) (floor(0.6 * 360) + floor(0.6 * 120)));
		assert_true(moved > np / 4);
	}
	free(pruned);
	nn_model_free(m);
}

/*
 * Pruned bytes: version 3, smaller by the pruned values less the bitmaps,
 * the same bytes again after loading, the same predictions and mask.
 */
static void
test_bytes(void **state)
{
	nn_model   *m = mlp();
	nn_model   *back;
	size_t		dense_len,
				len,
				len2;
	uint8_t    *dense = nt_serialize(m, false, &dense_len);
	uint8_t    *buf,
			   *buf2;
	float		x[IN * BATCH],
				y[BATCH],
				p1[4 * BATCH],
				p2[4 * BATCH];
	nn_error	err;

	(void) state;
	data(x, y, 4);
	assert_ok(nn_model_prune(m, 0.8, &err), &err);
	buf = nt_serialize(m, false, &len);
	assert_int_equal(buf[8], 3);
	/* 288 + 96 values gone; bitmaps of 12 + 4 words; version 3 layer
	 * records (168 bytes) instead of version 1's (88), two of them */
	assert_int_equal((int64_t) len,
					 (int64_t) dense_len - 4 * (288 + 96) + 4 * (12 + 4) + 2 * 80);
	assert_ok(nn_model_deserialize(&back, buf, len, 0, &nn_malloc_alloc,
								   test_crc32c, &err), &err);
	assert_true(nn_model_is_pruned(back));
	buf2 = nt_serialize(back, false, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(buf2, buf, len);
	assert_ok(nn_model_prepare(m, BATCH, false, 0, &err), &err);
	assert_ok(nn_model_prepare(back, BATCH, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, p1, x, BATCH, &err), &err);
	assert_ok(nn_model_predict(back, p2, x, BATCH, &err), &err);
	assert_memory_equal(p1, p2, sizeof(p1));
	free(dense);
	free(buf);
	free(buf2);
	nn_model_free(m);
	nn_model_free(back);
}

/* Damaged sparse tensors are refused. */
static void
test_damage(void **state)
{
	nn_model   *m = rnn();
	size_t		len;
	uint8_t    *buf,
			   *b;
	size_t		first;
	nn_model   *back;
	nn_error	err;
	uint32_t	v;

	(void) state;
	assert_ok(nn_model_prune(m, 0.5, &err), &err);
	buf = nt_serialize(m, false, &len);
	b = nt_xmalloc(len);
	/* the first tensor (the lstm kernel, layer 1) follows the 3 records */
	first = 44 + 3 * 168 + 4;
	memcpy(&v, buf + first + 4, 4);
	assert_int_equal(v, 6);		/* a sparse kernel */
	{
		struct
		{
			const char *what;
			size_t		off;
			uint32_t	xor;
		}			cases[] = {
			{"kept count one more", first + 16, 1},
			{"a bitmap bit flipped", first + 28, 1},
			{"a padding bit set", first + 28 + 4 * 2, 0x80000000u},
			{"dense role in a pruned model", first + 4, 6},
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		{
			memcpy(b, buf, len);
			memcpy(&v, b + cases[i].off, 4);
			v ^= cases[i].xor;
			memcpy(b + cases[i].off, &v, 4);
			nt_fix_bytes(b, len);
			if (nn_model_deserialize(&back, b, len, 0, &nn_malloc_alloc,
									 test_crc32c, &err) != NN_ERR_CORRUPT)
				fail_msg("%s: loaded", cases[i].what);
		}
	}
	free(b);
	free(buf);
	nn_model_free(m);
}

/* A model made from a pruned base keeps the copied layers' mask. */
static void
test_transfer_keeps_mask(void **state)
{
	nn_model   *base = mlp();
	nn_layer_spec head[1] = {nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model_spec top = nt_spec(1, 1, 0, 0, head, 1);
	nn_model   *m;
	nn_optimizer_spec o;
	float		x[IN * BATCH],
				y[BATCH];
	int64_t		ko, kl, bo, bl, zeros = 0;
	nn_error	err;

	(void) state;
	data(x, y, 3);
	assert_ok(nn_model_prune(base, 0.7, &err), &err);
	assert_ok(nn_model_transfer(&m, base, 1, &top, false, 2, 0, &nn_malloc_alloc,
								&err), &err);
	assert_true(nn_model_is_pruned(m));
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.05f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL,
									0, &err), &err);
	assert_ok(nn_model_prepare(m, BATCH, true, 0, &err), &err);
	for (int s = 0; s < 3; s++)
	{
		double		loss = 0;
		int64_t		c = 0;

		assert_ok(nn_model_train_batch(m, x, y, BATCH, NULL, &loss, &c, &err),
				  &err);
	}
	nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
	for (int64_t i = ko; i < ko + kl; i++)
		zeros += nn_model_params(m)[i] == 0.0f;
	assert_int_equal(zeros, (int64_t) floor(0.7 * 360));
	nn_model_free(m);
	nn_model_free(base);
}

static void
test_checks(void **state)
{
	nn_model   *m = mlp();
	nn_error	err;

	(void) state;
	assert_int_equal(nn_model_prune(m, 1.0, &err), NN_ERR_SPEC);
	assert_string_equal(err.message,
						"sparsity must be at least 0 and less than 1, not 1");
	assert_int_equal(nn_model_prune(m, -0.1, &err), NN_ERR_SPEC);
	assert_int_equal(nn_model_prune(m, NAN, &err), NN_ERR_SPEC);
	assert_false(nn_model_is_pruned(m));
	/* 0: a mask that keeps everything; pruning again goes further */
	assert_ok(nn_model_prune(m, 0.0, &err), &err);
	assert_true(nn_model_is_pruned(m));
	assert_true(nn_model_sparsity(m) == 0.0);
	assert_ok(nn_model_prune(m, 0.5, &err), &err);
	assert_ok(nn_model_prune(m, 0.9, &err), &err);
	assert_scalar_close("sparsity", nn_model_sparsity(m),
						(floor(0.9 * 360) + floor(0.9 * 120)) / 480.0, 1e-12, 0);
	nn_model_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prune_magnitudes),
		cmocka_unit_test(test_prune_recurrent),
		cmocka_unit_test(test_zeros_stay),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_transfer_keeps_mask),
		cmocka_unit_test(test_checks),
	};

	return NT_RUN(tests);
}
