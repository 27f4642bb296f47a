/*
 * test_frozen.c: layers with "trainable": false.  Their weights (and a
 * batchnorm's moving statistics) stay as they are, no optimizer state is
 * kept or stored for them, the trainable layers learn exactly as they
 * would beside unfrozen ones, and the gradients through a frozen
 * batchnorm match central differences.
 */
#include "nn_test.h"
#include "crc_shim.h"

#include <math.h>
#include <string.h>

/* dense tanh (3 -> 5), batchnorm, dense (5 -> 4), dense softmax (4 -> 3) */
#define N_LAYERS 4
#define IN 3
#define BATCH 6

static void
layers(nn_layer_spec *l)
{
	l[0] = nt_dense(5, NN_ACT_TANH);
	l[1] = nt_plain(NN_LAYER_BATCHNORM);
	l[2] = nt_dense(4, NN_ACT_RELU);
	l[3] = nt_dense(3, NN_ACT_SOFTMAX);
}

/* A model of the layers, with batchnorm statistics that are not the
 * identity, set up for training. */
static nn_model *
make_from(nn_layer_spec *l, nn_optimizer_kind opt, uint64_t seed)
{
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, N_LAYERS);
	nn_model   *m = nt_create(&spec, seed);
	nn_optimizer_spec o;
	nn_error	err;
	int32_t		C;
	float	   *st = nn_model_layer_state(m, 1, &C);

	for (int32_t c = 0; c < C; c++)
	{
		st[c] = 0.1f * (float) (c - 2);
		st[C + c] = 0.5f + 0.25f * (float) c;
	}
	nn_optimizer_spec_init(&o, opt, 0.05f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL,
									0, &err), &err);
	assert_ok(nn_model_prepare(m, BATCH, true, 0, &err), &err);
	return m;
}

/* The model with the layers whose bit is set in `frozen` frozen. */
static nn_model *
make(unsigned frozen, nn_optimizer_kind opt, uint64_t seed)
{
	nn_layer_spec l[N_LAYERS];

	layers(l);
	for (int i = 0; i < N_LAYERS; i++)
		l[i].trainable = !(frozen & (1u << i));
	return make_from(l, opt, seed);
}

static void
data(float *x, float *y)
{
	nn_rng		rng;

	nn_rng_seed(&rng, 77);
	nt_fill(x, IN * BATCH, &rng, -1.5f, 1.5f);
	for (int r = 0; r < BATCH; r++)
		y[r] = (float) (r % 3);
}

static void
train(nn_model *m, const float *x, const float *y, int steps)
{
	nn_rng		rng;
	nn_error	err;

	nn_rng_seed(&rng, 5);
	for (int s = 0; s < steps; s++)
	{
		double		loss = 0.0;
		int64_t		correct = 0;

		assert_ok(nn_model_train_batch(m, x, y, BATCH, &rng, &loss, &correct,
									   &err), &err);
	}
}

/* Layer i's parameters (kernel, recurrent kernel, bias) as one span. */
static const float *
span(nn_model *m, int i, int64_t *len)
{
	int64_t		ko, kl, bo, bl;

	nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
	*len = kl + bl;
	return nn_model_params(m) + ko;
}

/*
 * After one Adam step the trainable layers hold exactly what they hold in
 * the model without frozen layers (the same gradients, element-wise
 * updates); the frozen ones hold their initial values.  The optimizer
 * state covers the trainable parameters only.  Every set of frozen dense
 * layers.
 */
static void
test_one_step_matches(void **state)
{
	float		x[IN * BATCH],
				y[BATCH];

	(void) state;
	data(x, y);
	for (unsigned frozen = 1; frozen < (1u << N_LAYERS); frozen++)
	{
		/* (a frozen batchnorm normalizes differently: not comparable) */
		if (frozen & (1u << 1))
			continue;
		nn_model   *all = make(0, NN_OPT_ADAM, 3);
		nn_model   *part = make(frozen, NN_OPT_ADAM, 3);
		nn_model   *init = make(0, NN_OPT_ADAM, 3);
		int64_t		expect = 0;

		train(all, x, y, 1);
		train(part, x, y, 1);
		for (int i = 0; i < N_LAYERS; i++)
		{
			int64_t		len;
			const float *p = span(part, i, &len);
			const float *want = span(frozen & (1u << i) ? init : all, i, &len);

			assert_memory_equal(p, want, sizeof(float) * len);
			expect += frozen & (1u << i) ? 0 : len;
		}
		assert_int_equal(nn_model_trainable_count(part), expect);
		assert_int_equal(nn_model_trainable_count(all),
						 nn_model_trainable_count(init));
		nn_model_free(all);
		nn_model_free(part);
		nn_model_free(init);
	}
}

/*
 * A frozen batchnorm normalises with its moving statistics in training too
 * and leaves them as they are: the training loss is the inference loss.
 */
static void
test_frozen_batchnorm(void **state)
{
	float		x[IN * BATCH],
				y[BATCH],
				p[3 * BATCH],
				before[10];
	nn_model   *m = make(1u << 1, NN_OPT_MOMENTUM, 9);
	const float *st;
	double		want = 0.0,
				got;
	int32_t		C;
	nn_error	err;

	(void) state;
	data(x, y);
	st = nn_model_layer_state(m, 1, &C);
	assert_int_equal(C, 5);
	memcpy(before, st, sizeof(float) * 2 * C);
	assert_ok(nn_model_predict(m, p, x, BATCH, &err), &err);
	for (int r = 0; r < BATCH; r++)
		want -= log(p[r * 3 + (int) y[r]]);
	got = nt_train_loss(m, x, y, BATCH, 1);
	assert_scalar_close("training loss = inference loss", got, want / BATCH,
						1e-6, 1e-5);
	train(m, x, y, 5);
	assert_memory_equal(st, before, sizeof(float) * 2 * C);
	nn_model_free(m);
}

/* Gradients through a frozen batchnorm against central differences. */
static void
test_frozen_batchnorm_gradients(void **state)
{
	float		x[IN * BATCH],
				y[BATCH];
	nt_fd_opts	o = nt_fd_default();
	nn_model   *m = make(1u << 1, NN_OPT_SGD, 4);

	(void) state;
	data(x, y);
	assert_true(nt_gradcheck("dense -> frozen batchnorm -> dense", m, x, y,
							 BATCH, &o) > 0);
	nn_model_free(m);
}

/*
 * Stored bytes: the slots of frozen layers are not written, the flag is,
 * and the bytes load back to the same model that keeps training as it
 * would have.
 */
static void
test_bytes(void **state)
{
	float		x[IN * BATCH],
				y[BATCH];
	nn_model   *all = make(0, NN_OPT_ADAM, 3);
	nn_model   *part = make(1u << 0 | 1u << 2, NN_OPT_ADAM, 3);
	nn_model   *back;
	size_t		la,
				lp,
				lb;
	uint8_t    *ba,
			   *bp,
			   *bb;
	int64_t		frozen = nn_model_trainable_count(all) -
		nn_model_trainable_count(part);
	nn_error	err;

	(void) state;
	data(x, y);
	train(all, x, y, 2);
	train(part, x, y, 2);
	ba = nt_serialize(all, true, &la);
	bp = nt_serialize(part, true, &lp);
	/* two slots of 4 bytes a parameter fewer; the flag needs version 3,
	 * whose layer records are 60 bytes longer than version 2's */
	assert_int_equal((int64_t) lp, (int64_t) la - 2 * 4 * frozen + 4 * 60);
	assert_ok(nn_model_deserialize(&back, bp, lp, 0, &nn_malloc_alloc,
								   test_crc32c, &err), &err);
	assert_false(nn_model_get_spec(back)->layers[0].trainable);
	assert_true(nn_model_get_spec(back)->layers[1].trainable);
	assert_false(nn_model_get_spec(back)->layers[2].trainable);
	bb = nt_serialize(back, true, &lb);
	assert_int_equal(lb, lp);
	assert_memory_equal(bb, bp, lp);
	free(bb);
	assert_ok(nn_model_prepare(back, BATCH, true, 0, &err), &err);
	train(part, x, y, 3);
	train(back, x, y, 3);
	assert_memory_equal(nn_model_params(back), nn_model_params(part),
						sizeof(float) * nt_flat_params(part));
	nn_model_free(all);
	nn_model_free(part);
	nn_model_free(back);
	free(ba);
	free(bp);
}

/* Every layer frozen: training runs and changes nothing. */
static void
test_all_frozen(void **state)
{
	float		x[IN * BATCH],
				y[BATCH];
	nn_model   *m = make(0xF, NN_OPT_ADAM, 2);
	int64_t		n = nt_flat_params(m);
	float	   *before = nt_xmalloc(sizeof(float) * n);

	(void) state;
	data(x, y);
	memcpy(before, nn_model_params(m), sizeof(float) * n);
	train(m, x, y, 3);
	assert_int_equal(nn_model_trainable_count(m), 0);
	assert_memory_equal(nn_model_params(m), before, sizeof(float) * n);
	free(before);
	nn_model_free(m);
}

/* L1/L2 penalties of a frozen kernel do not count (as in Keras). */
static void
test_frozen_penalty(void **state)
{
	float		x[IN * BATCH],
				y[BATCH];
	nn_layer_spec l[N_LAYERS];
	nn_model   *a = make(1u << 2, NN_OPT_SGD, 6);
	nn_model   *b;

	(void) state;
	data(x, y);
	layers(l);
	l[2].trainable = false;
	l[2].l1 = 0.5f;
	l[2].l2 = 0.5f;
	b = make_from(l, NN_OPT_SGD, 6);
	assert_true(nt_train_loss(a, x, y, BATCH, 1) ==
				nt_train_loss(b, x, y, BATCH, 1));
	l[2].trainable = true;
	nn_model_free(b);
	b = make_from(l, NN_OPT_SGD, 6);
	assert_true(nt_train_loss(a, x, y, BATCH, 1) <
				nt_train_loss(b, x, y, BATCH, 1));
	nn_model_free(a);
	nn_model_free(b);
}

/*
 * nn_model_transfer: the kept layers bring their weights and statistics
 * (the prefix computes what the base's does) and are frozen; the new head
 * is initialised; keep out of range is refused.
 */
static void
test_transfer(void **state)
{
	float		x[IN * BATCH],
				y[BATCH];
	nn_model   *base = make(0, NN_OPT_ADAM, 3);
	nn_layer_spec head[1] = {nt_dense(2, NN_ACT_SOFTMAX)};
	nn_model_spec top = nt_spec(1, 1, 0, 0, head, 1);
	nn_model   *m;
	float	   *a,
			   *b;
	nn_layer_info info;
	nn_error	err;

	(void) state;
	data(x, y);
	train(base, x, y, 4);
	assert_ok(nn_model_transfer(&m, base, 3, &top, true, 5, 0, &nn_malloc_alloc,
								&err), &err);
	assert_int_equal(nn_model_get_spec(m)->n_layers, 4);
	for (int i = 0; i < 3; i++)
	{
		nn_model_layer_info(m, i, &info);
		assert_true(info.has_weights && !info.trainable);
	}
	nn_model_layer_info(m, 3, &info);
	assert_true(info.trainable);
	assert_int_equal(info.shape[0], 2);
	assert_int_equal(nn_model_trainable_count(m), 4 * 2 + 2);
	a = nt_prefix_output(base, x, BATCH, 3, false, &info);
	b = nt_prefix_output(m, x, BATCH, 3, false, &info);
	assert_memory_equal(a, b, sizeof(float) * BATCH * 4);
	free(a);
	free(b);
	nn_model_free(m);
	/* unfrozen: the same weights, all trainable */
	assert_ok(nn_model_transfer(&m, base, 4, &top, false, 5, 0,
								&nn_malloc_alloc, &err), &err);
	assert_int_equal(nn_model_trainable_count(m),
					 nn_model_trainable_count(base) + 3 * 2 + 2);
	nn_model_free(m);
	assert_int_equal(nn_model_transfer(&m, base, 0, &top, true, 5, 0,
									   &nn_malloc_alloc, &err), NN_ERR_SPEC);
	assert_int_equal(nn_model_transfer(&m, base, 5, &top, true, 5, 0,
									   &nn_malloc_alloc, &err), NN_ERR_SPEC);
	assert_string_equal(err.message,
						"the base model has 4 layers: keep 1 to 4 of them, not 5");
	assert_null(m);
	nn_model_free(base);
}

/* Only layers with weights take the flag. */
static void
test_spec_checks(void **state)
{
	nn_layer_spec l[2] = {nt_dropout(0.5f), nt_dense(2, NN_ACT_LINEAR)};
	nn_model_spec spec = nt_spec(1, 3, 0, 0, l, 2);
	nn_error	err;

	(void) state;
	l[0].trainable = false;
	assert_int_equal(nn_spec_check(&spec, &err), NN_ERR_SPEC);
	assert_string_equal(err.message,
						"layer 1 (dropout): \"trainable\" is not an option of this layer");
	l[0].trainable = true;
	l[1].trainable = false;
	assert_int_equal(nn_spec_check(&spec, &err), NN_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_step_matches),
		cmocka_unit_test(test_frozen_batchnorm),
		cmocka_unit_test(test_frozen_batchnorm_gradients),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_all_frozen),
		cmocka_unit_test(test_frozen_penalty),
		cmocka_unit_test(test_transfer),
		cmocka_unit_test(test_spec_checks),
	};

	return NT_RUN(tests);
}
