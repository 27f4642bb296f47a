/*
 * test_serialize.c: model bytes (format in doc/model-format.md).
 *
 * - Round trips are bit-exact: serialize -> deserialize -> serialize gives
 *   the same bytes, for a model with every layer kind (normalize adapted
 *   and not), with and without the state of each optimizer, and the loaded
 *   model predicts bit-identically.
 * - Damage is rejected with NN_ERR_CORRUPT: every truncation length (raw,
 *   and with the header length and checksum rewritten so the structural
 *   checks are reached), every single-bit flip of a small model, a wrong
 *   magic or version, trailing bytes, and hand-made inconsistencies behind
 *   a valid checksum (bad counts, kinds, flags, tensor heads, non-finite
 *   values, negative variances, bad optimizer state).
 * - max_bytes below the loaded size gives NN_ERR_LIMIT.
 * - Training resumed from bytes with optimizer state continues exactly as
 *   uninterrupted training (bit-identical weights), for every optimizer.
 */
#include <math.h>

#include "nn_test.h"

/* Offsets of the format, version 1 (see doc/model-format.md). */
#define OFF_VERSION 8
#define OFF_FLAGS 12
#define OFF_TOTAL 16
#define OFF_RANK 24
#define OFF_DIMS 28
#define OFF_NLAYERS 40
#define OFF_LAYERS 44
#define LAYER_REC 88
#define TENSOR_HEAD 28

static void
put32(uint8_t *b, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[off + i] = (uint8_t) (v >> (8 * i));
}

static uint32_t
get32(const uint8_t *b, size_t off)
{
	return b[off] | (uint32_t) b[off + 1] << 8 | (uint32_t) b[off + 2] << 16 |
		(uint32_t) b[off + 3] << 24;
}

static void
putf(uint8_t *b, size_t off, float f)
{
	uint32_t	v;

	memcpy(&v, &f, 4);
	put32(b, off, v);
}

/* A model with all ten layer kinds; shapes in the comments. */
static nn_layer_spec every_kind[12];

static nn_model_spec
every_kind_spec(void)
{
	every_kind[0] = nt_plain(NN_LAYER_NORMALIZE);	/* (6, 5, 2) */
	every_kind[1] = nt_rescale(0.5f, 0.1f);
	every_kind[2] = nt_conv(3, 3, 2, 2, 1, true, NN_ACT_RELU);	/* (3, 5, 3) */
	every_kind[2].l2 = 0.01f;
	every_kind[3] = nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, true);	/* (2, 3, 3) */
	every_kind[4] = nt_pool(NN_LAYER_AVGPOOL2D, 2, 1, 1, 1, false);	/* (1, 3, 3) */
	every_kind[5] = nt_dropout(0.25f);
	every_kind[6] = nt_plain(NN_LAYER_FLATTEN);	/* (9) */
	every_kind[7] = nt_dense(4, NN_ACT_ELU);
	every_kind[7].alpha = 0.5f;
	every_kind[7].l1 = 0.001f;
	every_kind[8] = nt_act(NN_ACT_LEAKY_RELU);
	every_kind[8].alpha = 0.1f;
	every_kind[9] = nt_reshape3(2, 2, 1);
	every_kind[10] = nt_plain(NN_LAYER_FLATTEN);	/* (4) */
	every_kind[11] = nt_dense_nobias(3, NN_ACT_SOFTMAX);
	return nt_spec(3, 6, 5, 2, every_kind, 12);
}

#define EK_IN (6 * 5 * 2)

/* The every-kind model, adapted on 12 rows and trained 3 steps with opt. */
static nn_model *
make_every_kind(nn_optimizer_kind opt, bool adapt, nn_rng *rng)
{
	nn_model_spec spec = every_kind_spec();
	nn_model   *m = nt_create(&spec, 77);
	float		x[12 * EK_IN];
	float		y[12];
	nn_error	err;

	nt_fill(x, 12 * EK_IN, rng, -2, 3);
	for (int i = 0; i < 12; i++)
		y[i] = (float) (i % 3);
	assert_ok(nn_model_prepare(m, 12, true, 0, &err), &err);
	if (adapt)
	{
		assert_ok(nn_model_adapt_batch(m, x, 12, &err), &err);
		assert_ok(nn_model_adapt_finish(m, &err), &err);
	}
	if (opt)
	{
		nn_optimizer_spec o;
		float		cw[3] = {1.0f, 2.0f, 0.5f};

		nn_optimizer_spec_init(&o, opt, 0.01f);
		o.schedule = NN_SCHED_EXPONENTIAL;
		o.decay_rate = 0.9f;
		o.decay_steps = 5;
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE,
										cw, 3, &err), &err);
		for (int s = 0; s < 3; s++)
		{
			double		loss = 0;
			int64_t		correct = 0;

			assert_ok(nn_model_train_batch(m, x + s * 4 * EK_IN, y + s * 4, 4, rng,
										   &loss, &correct, &err), &err);
		}
		nn_model_scale_lr(m, 0.5f);
	}
	return m;
}

/* A small MLP (2 -> 3 -> 2), for exhaustive damage sweeps. */
static nn_model *
make_small(bool trained)
{
	static nn_layer_spec l[2];
	nn_model_spec spec;
	nn_model   *m;

	l[0] = nt_dense(3, NN_ACT_TANH);
	l[1] = nt_dense(2, NN_ACT_SOFTMAX);
	spec = nt_spec(1, 2, 0, 0, l, 2);
	m = nt_create(&spec, 5);
	if (trained)
	{
		nn_optimizer_spec o;
		nn_error	err;
		float		x[4] = {0.1f, 0.2f, -0.3f, 0.4f},
					y[2] = {0, 1};
		double		loss = 0;
		int64_t		correct = 0;
		float		cw[2] = {1.5f, 0.5f};

		nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.01f);
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, cw,
										2, &err), &err);
		assert_ok(nn_model_prepare(m, 2, true, 0, &err), &err);
		assert_ok(nn_model_train_batch(m, x, y, 2, NULL, &loss, &correct, &err),
				  &err);
	}
	return m;
}

static nn_status
load(const uint8_t *buf, size_t len, size_t max_bytes, nn_model **out,
	 nn_error *err)
{
	return nn_model_deserialize(out, buf, len, max_bytes, &nn_malloc_alloc,
								test_crc32c, err);
}

/* Deserialize and require rejection with one of the given statuses. */
static void
expect_reject(const char *what, const uint8_t *buf, size_t len, nn_status want)
{
	nn_model   *m = (nn_model *) &m;	/* poison: must come back NULL */
	nn_error	err;
	nn_status	st;

	memset(&err, 0, sizeof(err));
	st = load(buf, len, 0, &m, &err);
	if (st != want)
	{
		if (st == NN_OK)
			nn_model_free(m);
		fail_msg("%s: status %d, expected %d (%s)", what, (int) st, (int) want,
				 err.message);
	}
	assert_null(m);
	assert_int_equal(err.status, want);
	assert_true(err.message[0] != '\0');
}

/* ---------- round trips ---------- */

static void
check_round_trip(const char *what, nn_model *m, bool with_opt, const float *x,
				 int32_t n)
{
	size_t		len,
				len2;
	uint8_t    *a = nt_serialize(m, with_opt, &len);
	uint8_t    *b;
	nn_model   *r = NULL;
	nn_error	err;
	size_t		out = nn_model_output_size(m);
	float	   *p1 = nt_xmalloc(sizeof(float) * out * n);
	float	   *p2 = nt_xmalloc(sizeof(float) * out * n);
	const nn_model_spec *s1 = nn_model_get_spec(m);
	const nn_model_spec *s2;

	assert_int_equal(len, nn_model_serialized_size(m, with_opt));
	assert_ok(load(a, len, 0, &r, &err), &err);
	b = nt_serialize(r, with_opt, &len2);
	if (len2 != len || memcmp(a, b, len) != 0)
	{
		size_t		i = 0;

		while (i < len && i < len2 && a[i] == b[i])
			i++;
		fail_msg("%s: re-serialized bytes differ (lengths %zu, %zu; first difference at byte %zu)",
				 what, len, len2, i);
	}
	/* same model: spec, parameters, state, predictions */
	s2 = nn_model_get_spec(r);
	assert_int_equal(s1->n_layers, s2->n_layers);
	assert_int_equal(s1->input_rank, s2->input_rank);
	assert_memory_equal(s1->input_shape, s2->input_shape, sizeof(s1->input_shape));
	for (int i = 0; i < s1->n_layers; i++)
		assert_memory_equal(&s1->layers[i], &s2->layers[i], sizeof(nn_layer_spec));
	assert_int_equal(nn_model_param_count(m), nn_model_param_count(r));
	assert_memory_equal(nn_model_params(m), nn_model_params(r),
						sizeof(float) * nt_flat_params(m));
	assert_int_equal(nn_model_needs_adapt(m), nn_model_needs_adapt(r));
	if (with_opt)
	{
		assert_int_equal(nn_model_step_count(m), nn_model_step_count(r));
		assert_true(nn_model_current_lr(m) == nn_model_current_lr(r));
	}
	else
		assert_int_equal(nn_model_step_count(r), 0);
	assert_ok(nn_model_prepare(m, n, false, 0, &err), &err);
	assert_ok(nn_model_prepare(r, n, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, p1, x, n, &err), &err);
	assert_ok(nn_model_predict(r, p2, x, n, &err), &err);
	if (memcmp(p1, p2, sizeof(float) * out * n) != 0)
		fail_msg("%s: predictions of the loaded model differ", what);
	nn_model_free(r);
	free(a);
	free(b);
	free(p1);
	free(p2);
}

static void
test_round_trip_every_kind(void **state)
{
	float		x[5 * EK_IN];
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 1);
	nt_fill(x, 5 * EK_IN, &rng, -2, 3);
	for (int adapt = 0; adapt < 2; adapt++)
	{
		nn_model   *m = make_every_kind(0, adapt, &rng);
		char		what[80];

		snprintf(what, sizeof(what), "every layer kind, %s, no optimizer",
				 adapt ? "adapted" : "not adapted");
		assert_int_equal(nn_model_needs_adapt(m), !adapt);
		check_round_trip(what, m, false, x, 5);
		check_round_trip(what, m, true, x, 5);	/* nothing to write: same */
		assert_int_equal(nn_model_serialized_size(m, true),
						 nn_model_serialized_size(m, false));
		nn_model_free(m);
	}
	for (int k = NN_OPT_SGD; k <= NN_OPT_MAX; k++)
	{
		nn_model   *m = make_every_kind((nn_optimizer_kind) k, true, &rng);
		char		what[80];

		snprintf(what, sizeof(what), "every layer kind, %s state",
				 nn_optimizer_name((nn_optimizer_kind) k));
		check_round_trip(what, m, true, x, 5);
		snprintf(what, sizeof(what), "every layer kind, %s, weights only",
				 nn_optimizer_name((nn_optimizer_kind) k));
		check_round_trip(what, m, false, x, 5);
		assert_true(nn_model_serialized_size(m, true) >
					nn_model_serialized_size(m, false));
		nn_model_free(m);
	}
}

/* The seed CNN of API.md, trained one Adam step, round-trips too. */
static void
test_round_trip_seed_cnn(void **state)
{
	nn_layer_spec l[] = {nt_reshape3(28, 28, 1),
		nt_conv(32, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false),
		nt_conv(64, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false),
		nt_conv(64, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_plain(NN_LAYER_FLATTEN),
		nt_dense(64, NN_ACT_RELU),
	nt_dense(10, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 784, 0, 0, l, 9);
	nn_model   *m = nt_create(&spec, 42);
	float	   *x = nt_xmalloc(sizeof(float) * 4 * 784);
	float		y[4] = {1, 7, 3, 9};
	nn_optimizer_spec o;
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;

	(void) state;
	nn_rng_seed(&rng, 2);
	nt_fill(x, 4 * 784, &rng, 0, 1);
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.001f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0,
									&err), &err);
	assert_ok(nn_model_prepare(m, 4, true, 0, &err), &err);
	assert_ok(nn_model_train_batch(m, x, y, 4, &rng, &loss, &correct, &err), &err);
	check_round_trip("seed CNN with adam state", m, true, x, 4);
	nn_model_free(m);
	free(x);
}

/*
 * The layer records as doc/model-format.md tabulates them: field offsets,
 * the values a kind uses, and the canonical value of every field it does
 * not use (activation 0, alpha 0, sizes 0, use_bias 1, rate 0, scale 1,
 * offset 0, penalties 0, epsilon 1e-7 = 0x33D6BF95, adapted 0).
 */
static void
test_layer_records_as_documented(void **state)
{
	nn_rng		rng;
	nn_model   *m;
	size_t		len;
	uint8_t    *buf;
	nn_model_spec spec;

	(void) state;
	nn_rng_seed(&rng, 9);
	m = make_every_kind(NN_OPT_SGD, true, &rng);
	spec = every_kind_spec();
	buf = nt_serialize(m, false, &len);
	assert_int_equal(get32(buf, OFF_RANK), 3);
	assert_int_equal(get32(buf, OFF_DIMS), 6);
	assert_int_equal(get32(buf, OFF_DIMS + 4), 5);
	assert_int_equal(get32(buf, OFF_DIMS + 8), 2);
	assert_int_equal(get32(buf, OFF_NLAYERS), spec.n_layers);
	for (int i = 0; i < spec.n_layers; i++)
	{
		const nn_layer_spec *l = &spec.layers[i];
		const uint8_t *r = buf + OFF_LAYERS + (size_t) i * LAYER_REC;
		nn_layer_kind k = l->kind;
		bool		conv = k == NN_LAYER_CONV2D;
		bool		spatial = conv || k == NN_LAYER_MAXPOOL2D || k == NN_LAYER_AVGPOOL2D;
		bool		weighted = conv || k == NN_LAYER_DENSE;
		bool		has_act = weighted || k == NN_LAYER_ACTIVATION;
		uint32_t	act = has_act ? (uint32_t) l->activation : 0;
		float		f;

#define F32(off) (memcpy(&f, r + (off), 4), f)
		assert_int_equal(get32(r, 0), k);
		assert_int_equal(get32(r, 4), act);
		assert_true(F32(8) == ((act == NN_ACT_LEAKY_RELU || act == NN_ACT_ELU) ?
							   l->alpha : 0.0f));
		assert_int_equal(get32(r, 12), k == NN_LAYER_DENSE ? (uint32_t) l->units : 0);
		assert_int_equal(get32(r, 16), conv ? (uint32_t) l->filters : 0);
		for (int j = 0; j < 2; j++)
		{
			int32_t		stride = l->strides[j] ? l->strides[j] : l->kernel[j];

			assert_int_equal(get32(r, 20 + 4 * j), spatial ? (uint32_t) l->kernel[j] : 0);
			/* pools store the resolved stride */
			assert_int_equal(get32(r, 28 + 4 * j), spatial ? (uint32_t) stride : 0);
		}
		assert_int_equal(get32(r, 36), spatial && l->same_padding);
		assert_int_equal(get32(r, 40), weighted ? l->use_bias : 1);
		assert_int_equal(get32(r, 44), k == NN_LAYER_RESHAPE ? (uint32_t) l->shape_rank : 0);
		for (int j = 0; j < 3; j++)
			assert_int_equal(get32(r, 48 + 4 * j),
							 k == NN_LAYER_RESHAPE && j < l->shape_rank ?
							 (uint32_t) l->shape[j] : 0);
		assert_true(F32(60) == (k == NN_LAYER_DROPOUT ? l->rate : 0.0f));
		assert_true(F32(64) == (k == NN_LAYER_RESCALE ? l->scale : 1.0f));
		assert_true(F32(68) == (k == NN_LAYER_RESCALE ? l->offset : 0.0f));
		assert_true(F32(72) == (weighted ? l->l1 : 0.0f));
		assert_true(F32(76) == (weighted ? l->l2 : 0.0f));
		if (k != NN_LAYER_NORMALIZE)
			assert_int_equal(get32(r, 80), 0x33D6BF95u);
		assert_int_equal(get32(r, 84), k == NN_LAYER_NORMALIZE ? 1 : 0);
#undef F32
	}
	/* tensors: count, then the first (conv2d kernel of layer 2) */
	{
		size_t		T = OFF_LAYERS + (size_t) spec.n_layers * LAYER_REC;

		/* normalize mean and variance, conv2d and dense kernels and biases, last kernel */
		assert_int_equal(get32(buf, T), 2 + 2 + 2 + 1);
		assert_int_equal(get32(buf, T + 4), 0);	/* layer 0: normalize mean */
		assert_int_equal(get32(buf, T + 8), 2);
		assert_int_equal(get32(buf, T + 12), 1);
		assert_int_equal(get32(buf, T + 16), 2);
	}
	nn_model_free(m);
	free(buf);
}

/* Weights-only bytes load without training state. */
static void
test_weights_only_has_no_training_state(void **state)
{
	nn_model   *m = make_small(true);
	nn_model   *r = NULL;
	size_t		len;
	uint8_t    *buf = nt_serialize(m, false, &len);
	nn_error	err;
	float		x[2] = {0.1f, 0.2f},
				y[1] = {1};
	double		loss = 0;
	int64_t		correct = 0;

	(void) state;
	assert_int_equal(get32(buf, OFF_FLAGS), 0);
	assert_ok(load(buf, len, 0, &r, &err), &err);
	assert_ok(nn_model_prepare(r, 1, true, 0, &err), &err);
	assert_int_equal(nn_model_step_count(r), 0);
	assert_int_not_equal(nn_model_train_batch(r, x, y, 1, NULL, &loss, &correct,
											  &err), NN_OK);
	nn_model_free(r);
	nn_model_free(m);
	free(buf);
}

/*
 * A model released for prediction predicts as before, serializes as the
 * weights-only bytes, refuses a training step until it is configured
 * again, and then trains from fresh optimizer state.
 */
static void
test_release_training(void **state)
{
	nn_model   *m = make_small(true);
	size_t		len,
				len_r;
	uint8_t    *weights = nt_serialize(m, false, &len);
	uint8_t    *released;
	nn_optimizer_spec o;
	nn_error	err;
	float		x[2] = {0.1f, 0.2f},
				y[1] = {1},
				before[2],
				after[2];
	double		loss = 0;
	int64_t		correct = 0;

	(void) state;
	assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, before, x, 1, &err), &err);
	nn_model_release_training(m);
	assert_null(nn_model_grads(m));
	assert_ok(nn_model_predict(m, after, x, 1, &err), &err);
	assert_memory_equal(before, after, sizeof(before));
	released = nt_serialize(m, true, &len_r);
	assert_int_equal(len_r, len);
	assert_memory_equal(released, weights, len);
	assert_int_not_equal(nn_model_train_batch(m, x, y, 1, NULL, &loss,
											  &correct, &err), NN_OK);
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.01f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL,
									0, &err), &err);
	assert_ok(nn_model_train_batch(m, x, y, 1, NULL, &loss, &correct, &err),
			  &err);
	assert_int_equal(nn_model_step_count(m), 1);
	nn_model_free(m);
	free(weights);
	free(released);
}

/* A buffer shorter than the serialized size is refused, not overrun. */
static void
test_serialize_small_buffer(void **state)
{
	nn_model   *m = make_small(true);
	size_t		need = nn_model_serialized_size(m, true);
	uint8_t    *buf = nt_xmalloc(need - 1);
	nn_error	err;

	(void) state;
	assert_int_not_equal(nn_model_serialize(m, buf, need - 1, true, test_crc32c,
											&err), NN_OK);
	nn_model_free(m);
	free(buf);
}

/* ---------- damage ---------- */

static void
test_every_truncation(void **state)
{
	(void) state;
	for (int trained = 0; trained < 2; trained++)
	{
		nn_model   *m = make_small(trained);
		size_t		len;
		uint8_t    *buf = nt_serialize(m, true, &len);
		uint8_t    *cut = nt_xmalloc(len);

		for (size_t l = 0; l < len; l++)
		{
			char		what[80];

			snprintf(what, sizeof(what), "truncated to %zu of %zu bytes", l, len);
			expect_reject(what, buf, l, NN_ERR_CORRUPT);
			/* the same cut with a consistent header and checksum */
			if (l >= 28)
			{
				memcpy(cut, buf, l - 4);
				nt_fix_bytes(cut, l);
				snprintf(what, sizeof(what),
						 "truncated to %zu of %zu bytes, length and checksum fixed",
						 l, len);
				expect_reject(what, cut, l, NN_ERR_CORRUPT);
			}
		}
		nn_model_free(m);
		free(buf);
		free(cut);
	}
}

/* Allocations above 1 MB fail: a flipped size must not allocate it first. */
static void *
capped_alloc(void *ctx, size_t size)
{
	(void) ctx;
	return size > (1 << 20) ? NULL : malloc(size);
}

static void
capped_free(void *ctx, void *p)
{
	(void) ctx;
	free(p);
}

static const nn_alloc capped = {capped_alloc, capped_free, NULL};

/*
 * Every single-bit flip of a small model with optimizer state is rejected.
 * Behind a rewritten checksum the flip reaches the structural checks: a
 * flipped weight may well be a valid model, but nothing may allocate more
 * than the bytes can hold (the allocator refuses over 1 MB), and anything
 * that loads must serialize back to exactly the same bytes (one encoding
 * per model).
 */
static void
test_every_bit_flip(void **state)
{
	nn_model   *m = make_small(true);
	size_t		len;
	uint8_t    *buf = nt_serialize(m, true, &len);
	uint8_t    *f = nt_xmalloc(len);
	size_t		accepted = 0,
				memory = 0,
				noncanon = 0;
	char		where[400] = "";

	(void) state;
	for (size_t bit = 0; bit < len * 8; bit++)
	{
		char		what[80];
		nn_model   *r = NULL;
		nn_error	err;
		nn_status	st;

		buf[bit / 8] ^= (uint8_t) (1u << (bit % 8));
		snprintf(what, sizeof(what), "bit %zu (byte %zu) flipped", bit, bit / 8);
		expect_reject(what, buf, len, NN_ERR_CORRUPT);

		memcpy(f, buf, len);
		nt_fix_bytes(f, len);
		st = nn_model_deserialize(&r, f, len, 0, &capped, test_crc32c, &err);
		if (st == NN_OK)
		{
			size_t		l2;
			uint8_t    *again = nt_serialize(r, true, &l2);

			accepted++;
			if (l2 != len || memcmp(again, f, len) != 0)
			{
				if (noncanon++ < 8)
					snprintf(where + strlen(where), sizeof(where) - strlen(where),
							 " byte %zu bit %zu;", bit / 8, bit % 8);
			}
			free(again);
			nn_model_free(r);
		}
		else if (st == NN_ERR_MEMORY)
		{
			if (memory++ < 8)
				print_error("%s behind a valid checksum: allocated over 1 MB "
							"before rejecting (%s)\n", what, err.message);
		}
		else if (st != NN_ERR_CORRUPT)
			fail_msg("%s behind a valid checksum: status %d (%s)", what, (int) st,
					 err.message);
		buf[bit / 8] ^= (uint8_t) (1u << (bit % 8));
	}
	print_message("%zu of %zu flips behind a valid checksum load; %zu of them "
				  "serialize differently;%s\n", accepted, len * 8, noncanon,
				  where);
	if (memory > 0)
		fail_msg("%zu flips behind a valid checksum made the loader allocate "
				 "over 1 MB for a %zu-byte model", memory, len);
	if (noncanon > 0)
		fail_msg("%zu flips load but serialize to other bytes:%s", noncanon,
				 where);
	nn_model_free(m);
	free(buf);
	free(f);
}

/*
 * A 700-byte model claiming a 2^24-unit layer: the loader must find that
 * the tensors cannot be in the bytes before allocating for them (STYLE.md:
 * "checks every length against the bytes remaining before allocating").
 */
static void
test_huge_claim_allocates_nothing_big(void **state)
{
	nn_model   *m = make_small(false);
	size_t		len;
	uint8_t    *buf = nt_serialize(m, false, &len);
	nt_counter	c;
	nn_alloc	a = nt_counter_alloc(&c, -1);
	nn_model   *r = NULL;
	nn_error	err;

	(void) state;
	put32(buf, OFF_LAYERS + 12, 1u << 24);	/* layer 0 units */
	nt_fix_bytes(buf, len);
	assert_status(nn_model_deserialize(&r, buf, len, 0, &a, test_crc32c, &err),
				  NN_ERR_CORRUPT, &err);
	assert_null(r);
	assert_int_equal(c.live_bytes, 0);
	if (c.peak_bytes > 65536)
		fail_msg("loader allocated %zu bytes (largest %zu) for a %zu-byte model "
				 "before rejecting it", c.peak_bytes, c.max_single, len);
	nn_model_free(m);
	free(buf);
}

static void
test_header_damage(void **state)
{
	nn_model   *m = make_small(true);
	size_t		len;
	uint8_t    *buf = nt_serialize(m, true, &len);
	uint8_t    *b = nt_xmalloc(len + 16);

	(void) state;
	assert_memory_equal(buf, "NNPGMODL", 8);
	assert_int_equal(get32(buf, OFF_VERSION), 1);
	assert_int_equal(get32(buf, OFF_FLAGS), 1);
	assert_int_equal(get32(buf, OFF_TOTAL), len);

	/* bad magic, with or without a valid checksum */
	memcpy(b, buf, len);
	b[0] = 'X';
	expect_reject("bad magic", b, len, NN_ERR_CORRUPT);
	nt_fix_bytes(b, len);
	expect_reject("bad magic, checksum fixed", b, len, NN_ERR_CORRUPT);
	/* other versions */
	for (uint32_t v = 0; v < 4; v++)
	{
		if (v == 1)
			continue;
		memcpy(b, buf, len);
		put32(b, OFF_VERSION, v);
		nt_fix_bytes(b, len);
		expect_reject("other format version", b, len, NN_ERR_CORRUPT);
	}
	memcpy(b, buf, len);
	put32(b, OFF_VERSION, 0xFFFFFFFFu);
	nt_fix_bytes(b, len);
	expect_reject("version 2^32-1", b, len, NN_ERR_CORRUPT);
	/* unknown flag bits */
	memcpy(b, buf, len);
	put32(b, OFF_FLAGS, 3);
	nt_fix_bytes(b, len);
	expect_reject("unknown flag bit", b, len, NN_ERR_CORRUPT);
	/* flag says no optimizer, bytes have one */
	memcpy(b, buf, len);
	put32(b, OFF_FLAGS, 0);
	nt_fix_bytes(b, len);
	expect_reject("optimizer bytes without the flag", b, len, NN_ERR_CORRUPT);
	/* trailing bytes: after the checksum, and inside it (length, crc fixed) */
	memcpy(b, buf, len);
	memset(b + len, 0, 16);
	expect_reject("4 bytes after the checksum", b, len + 4, NN_ERR_CORRUPT);
	memcpy(b, buf, len - 4);
	memset(b + len - 4, 0, 8);
	nt_fix_bytes(b, len + 4);
	expect_reject("4 trailing bytes before the checksum", b, len + 4,
				  NN_ERR_CORRUPT);
	memcpy(b, buf, len - 4);
	memset(b + len - 4, 0, 8);
	put32(b, OFF_TOTAL, (uint32_t) len + 4);
	expect_reject("trailing bytes, length fixed, checksum not", b, len + 4,
				  NN_ERR_CORRUPT);
	/* header length disagrees with the buffer */
	memcpy(b, buf, len);
	put32(b, OFF_TOTAL, (uint32_t) len - 1);
	expect_reject("header length too small", b, len, NN_ERR_CORRUPT);
	put32(b, OFF_TOTAL, (uint32_t) len);
	put32(b, OFF_TOTAL + 4, 1);
	expect_reject("header length 2^32 too large", b, len, NN_ERR_CORRUPT);
	/* checksum itself */
	memcpy(b, buf, len);
	b[len - 1] ^= 0x80;
	expect_reject("checksum bit flipped", b, len, NN_ERR_CORRUPT);

	nn_model_free(m);
	free(buf);
	free(b);
}

/*
 * Inconsistencies behind a valid checksum, one field at a time, on the
 * small trained model: layers at 44 and 132, tensors from 220.
 */
static void
test_structural_damage(void **state)
{
	nn_model   *m = make_small(true);
	size_t		len;
	uint8_t    *buf = nt_serialize(m, true, &len);
	uint8_t    *b = nt_xmalloc(len);
	size_t		L0 = OFF_LAYERS,
				L1 = OFF_LAYERS + LAYER_REC,
				T = OFF_LAYERS + 2 * LAYER_REC;
	size_t		T0 = T + 4;		/* first tensor: layer 0 kernel (2x3) */
	size_t		T1 = T0 + TENSOR_HEAD + 6 * 4;	/* layer 0 bias (3) */
	size_t		opt = T + 4 + 4 * TENSOR_HEAD + (6 + 3 + 6 + 2) * 4;

#define DAMAGE(what, stmt) \
	do { memcpy(b, buf, len); stmt; nt_fix_bytes(b, len); \
		expect_reject(what, b, len, NN_ERR_CORRUPT); } while (0)

	(void) state;
	/* sanity of the offsets: kinds, tensor count, optimizer kind */
	assert_int_equal(get32(buf, L0), NN_LAYER_DENSE);
	assert_int_equal(get32(buf, L1), NN_LAYER_DENSE);
	assert_int_equal(get32(buf, T), 4);
	assert_int_equal(get32(buf, T0 + 12), 6);
	assert_int_equal(get32(buf, T1 + 4), 1);	/* role bias */
	assert_int_equal(get32(buf, opt), NN_OPT_ADAM);

	DAMAGE("input rank 0", put32(b, OFF_RANK, 0));
	DAMAGE("input rank 4", put32(b, OFF_RANK, 4));
	DAMAGE("input size 3", put32(b, OFF_DIMS, 3));
	DAMAGE("input size 0", put32(b, OFF_DIMS, 0));
	DAMAGE("input size negative", put32(b, OFF_DIMS, 0x80000000u));
	DAMAGE("0 layers", put32(b, OFF_NLAYERS, 0));
	DAMAGE("1 layer", put32(b, OFF_NLAYERS, 1));
	DAMAGE("3 layers", put32(b, OFF_NLAYERS, 3));
	DAMAGE("257 layers", put32(b, OFF_NLAYERS, 257));
	DAMAGE("2^32-1 layers", put32(b, OFF_NLAYERS, 0xFFFFFFFFu));
	DAMAGE("layer kind 0", put32(b, L0, 0));
	DAMAGE("layer kind 11", put32(b, L1, 11));
	DAMAGE("layer kind conv2d on a vector", put32(b, L0, NN_LAYER_CONV2D));
	DAMAGE("activation 7", put32(b, L0 + 4, 7));
	DAMAGE("activation -1", put32(b, L1 + 4, 0xFFFFFFFFu));
	DAMAGE("units 4 (tensor sizes disagree)", put32(b, L0 + 12, 4));
	DAMAGE("units 0", put32(b, L0 + 12, 0));
	DAMAGE("units -3", put32(b, L1 + 12, (uint32_t) -3));
	DAMAGE("padding flag 2", put32(b, L0 + 36, 2));
	DAMAGE("bias flag 2", put32(b, L0 + 40, 2));
	DAMAGE("bias flag 0 (one tensor too many)", put32(b, L0 + 40, 0));
	DAMAGE("adapted flag 2", put32(b, L0 + 84, 2));
	DAMAGE("alpha NaN", putf(b, L0 + 8, NAN));
	DAMAGE("alpha negative", putf(b, L0 + 8, -1.0f));
	DAMAGE("l2 infinite", putf(b, L1 + 76, INFINITY));
	DAMAGE("l1 negative", putf(b, L1 + 72, -0.5f));
	DAMAGE("tensor count 3", put32(b, T, 3));
	DAMAGE("tensor count 5", put32(b, T, 5));
	DAMAGE("tensor layer 1 first", put32(b, T0, 1));
	DAMAGE("tensor role bias first", put32(b, T0 + 4, 1));
	DAMAGE("tensor rank 2", put32(b, T0 + 8, 2));
	DAMAGE("tensor length 5", put32(b, T0 + 12, 5));
	DAMAGE("tensor length 2^32-1", put32(b, T0 + 12, 0xFFFFFFFFu));
	DAMAGE("tensor spare dim", put32(b, T0 + 16, 1));
	DAMAGE("weight NaN", putf(b, T0 + TENSOR_HEAD, NAN));
	DAMAGE("weight +Inf", putf(b, T0 + TENSOR_HEAD + 8, INFINITY));
	DAMAGE("bias -Inf", putf(b, T1 + TENSOR_HEAD, -INFINITY));
	DAMAGE("optimizer kind 0", put32(b, opt, 0));
	DAMAGE("optimizer kind 8", put32(b, opt, 8));
	DAMAGE("optimizer kind sgd (slot count)", put32(b, opt, NN_OPT_SGD));
	DAMAGE("learning rate 0", putf(b, opt + 4, 0.0f));
	DAMAGE("learning rate NaN", putf(b, opt + 4, NAN));
	DAMAGE("beta1 1", putf(b, opt + 12, 1.0f));
	DAMAGE("epsilon -1", putf(b, opt + 20, -1.0f));
	DAMAGE("schedule 9", put32(b, opt + 44, 9));
	DAMAGE("loss 0", put32(b, opt + 60, 0));
	DAMAGE("loss 7", put32(b, opt + 60, 7));
	DAMAGE("lr scale 0", putf(b, opt + 64, 0.0f));
	DAMAGE("lr scale NaN", putf(b, opt + 64, NAN));
	DAMAGE("step negative", put32(b, opt + 72, 0x80000000u));
	DAMAGE("class weights 3 (2 stored)", put32(b, opt + 76, 3));
	DAMAGE("class weights 2^32-1", put32(b, opt + 76, 0xFFFFFFFFu));
	DAMAGE("class weight negative", putf(b, opt + 80, -1.0f));
	DAMAGE("class weight NaN", putf(b, opt + 84, NAN));
	DAMAGE("slot count 1", put32(b, opt + 88, 1));
	DAMAGE("slot count 3", put32(b, opt + 88, 3));
	DAMAGE("slot 0 tagged as slot 1", put32(b, opt + 92, 1));
	DAMAGE("slot role kernel", put32(b, opt + 96, 0));
	DAMAGE("slot length short", put32(b, opt + 104, 16));
	DAMAGE("slot value NaN", putf(b, opt + 92 + TENSOR_HEAD, NAN));
	/* Adam's second moment (slot 1, after 17 first moments) is a mean of squares */
	assert_int_equal(get32(b, opt + 92 + TENSOR_HEAD + 17 * 4), 1);
	DAMAGE("adam second moment negative",
		   putf(b, opt + 92 + 2 * TENSOR_HEAD + 17 * 4, -1.0f));
#undef DAMAGE
	nn_model_free(m);
	free(buf);
	free(b);
}

/* Normalize variance must be non-negative and finite. */
static void
test_normalize_damage(void **state)
{
	static nn_layer_spec l[2];
	nn_model_spec spec;
	nn_model   *m;
	size_t		len;
	uint8_t    *buf,
			   *b;
	size_t		T;
	float		x[6] = {1, 2, 3, 4, 5, 7};
	nn_error	err;

	(void) state;
	l[0] = nt_plain(NN_LAYER_NORMALIZE);
	l[1] = nt_dense(1, NN_ACT_LINEAR);
	spec = nt_spec(1, 2, 0, 0, l, 2);
	m = nt_create(&spec, 1);
	assert_ok(nn_model_prepare(m, 3, false, 0, &err), &err);
	assert_ok(nn_model_adapt_batch(m, x, 3, &err), &err);
	assert_ok(nn_model_adapt_finish(m, &err), &err);
	buf = nt_serialize(m, false, &len);
	b = nt_xmalloc(len);
	T = OFF_LAYERS + 2 * LAYER_REC + 4;	/* mean tensor of layer 0 */
	assert_int_equal(get32(buf, T + 4), 2);	/* role mean */
	assert_int_equal(get32(buf, T + TENSOR_HEAD + 8 + 4), 3);	/* variance */
	memcpy(b, buf, len);
	putf(b, T + 2 * TENSOR_HEAD + 8 + 4, -1.0f);
	nt_fix_bytes(b, len);
	expect_reject("negative variance", b, len, NN_ERR_CORRUPT);
	memcpy(b, buf, len);
	putf(b, T + TENSOR_HEAD, NAN);
	nt_fix_bytes(b, len);
	expect_reject("NaN mean", b, len, NN_ERR_CORRUPT);
	memcpy(b, buf, len);
	put32(b, OFF_LAYERS + 80, 0);	/* epsilon 0 */
	nt_fix_bytes(b, len);
	expect_reject("normalize epsilon 0", b, len, NN_ERR_CORRUPT);
	nn_model_free(m);
	free(buf);
	free(b);
}

/* A model larger than max_bytes once loaded: NN_ERR_LIMIT. */
static void
test_max_bytes(void **state)
{
	nn_rng		rng;
	nn_model   *m;
	nn_model   *r = NULL;
	size_t		len,
				weights;
	uint8_t    *buf;
	nn_error	err;

	(void) state;
	nn_rng_seed(&rng, 3);
	m = make_every_kind(NN_OPT_ADAM, true, &rng);
	buf = nt_serialize(m, true, &len);
	/* parameters, gradients and two slots, plus normalize statistics */
	weights = (size_t) (nt_flat_params(m) * 4 + 2 * 2) * sizeof(float);
	assert_status(load(buf, len, weights - 1, &r, &err), NN_ERR_LIMIT, &err);
	assert_null(r);
	assert_status(load(buf, len, 1, &r, &err), NN_ERR_LIMIT, &err);
	assert_ok(load(buf, len, weights, &r, &err), &err);
	nn_model_free(r);
	nn_model_free(m);
	free(buf);
}

/* ---------- resumed training ---------- */

static void
test_resume_matches_uninterrupted(void **state)
{
	(void) state;
	for (int k = NN_OPT_SGD; k <= NN_OPT_MAX; k++)
		for (int again = 0; again < 2; again++)
		{
			nn_rng		rng,
						r_a,
						r_b;
			nn_model   *a = NULL,
					   *b = NULL;
			float		x[12 * EK_IN],
						y[12];
			size_t		len;
			uint8_t    *buf;
			nn_error	err;
			char		what[80];

			nn_rng_seed(&rng, 100 + k);
			a = make_every_kind((nn_optimizer_kind) k, true, &rng);
			nt_fill(x, 12 * EK_IN, &rng, -2, 3);
			for (int i = 0; i < 12; i++)
				y[i] = (float) ((i * 7) % 3);
			buf = nt_serialize(a, true, &len);
			assert_ok(load(buf, len, 0, &b, &err), &err);
			assert_ok(nn_model_prepare(b, 4, true, 0, &err), &err);
			if (again)
			{
				/* the glue sets the same training options again: state kept */
				nn_optimizer_spec o;
				float		cw[3] = {1.0f, 2.0f, 0.5f};

				nn_optimizer_spec_init(&o, (nn_optimizer_kind) k, 0.01f);
				o.schedule = NN_SCHED_EXPONENTIAL;
				o.decay_rate = 0.9f;
				o.decay_steps = 5;
				assert_ok(nn_model_set_training(b, &o, NN_LOSS_SPARSE_CATEGORICAL_CE,
												cw, 3, &err), &err);
			}
			r_a = rng;
			r_b = rng;
			for (int s = 0; s < 3; s++)
			{
				double		la = 0,
							lb = 0;
				int64_t		ca = 0,
							cb = 0;

				assert_ok(nn_model_train_batch(a, x + s * 4 * EK_IN, y + s * 4, 4,
											   &r_a, &la, &ca, &err), &err);
				assert_ok(nn_model_train_batch(b, x + s * 4 * EK_IN, y + s * 4, 4,
											   &r_b, &lb, &cb, &err), &err);
				snprintf(what, sizeof(what), "%s%s: loss of step %d after loading",
						 nn_optimizer_name((nn_optimizer_kind) k),
						 again ? " (options set again)" : "", s + 4);
				if (la != lb || ca != cb)
					fail_msg("%s: %.9g vs %.9g uninterrupted", what, lb, la);
			}
			snprintf(what, sizeof(what), "%s%s: weights after 3 + 3 steps",
					 nn_optimizer_name((nn_optimizer_kind) k),
					 again ? " (options set again)" : "");
			if (memcmp(nn_model_params(a), nn_model_params(b),
					   sizeof(float) * nt_flat_params(a)) != 0)
			{
				nt_close_f(what, nn_model_params(b), nn_model_params(a),
						   nt_flat_params(a), 0, 0);
				fail_msg("%s differ from uninterrupted training", what);
			}
			assert_int_equal(nn_model_step_count(a), nn_model_step_count(b));
			nn_model_free(a);
			nn_model_free(b);
			free(buf);
		}
}


/* ---------- format version 2: the sequence and normalisation layers ---------- */

/*
 * A version 2 model with every new kind: ids (6) -> embedding (6, 4) ->
 * lstm (6, 5) -> batchnorm -> gru (6, 3) -> simple_rnn (6, 2) ->
 * global_maxpool (2) ... and a second branch kind, global_avgpool, before
 * a dense softmax.
 */
static nn_model *
make_v2(nn_optimizer_kind opt, nn_rng *rng, float *x, int32_t n)
{
	static nn_layer_spec l[8];
	nn_model_spec spec;
	nn_model   *m;
	nn_error	err;
	float		y[8];

	l[0] = nt_embedding(9, 4);
	l[1] = nt_rnn(NN_LAYER_LSTM, 5, true);
	l[2] = nt_plain(NN_LAYER_BATCHNORM);
	l[2].momentum = 0.9f;
	l[3] = nt_rnn(NN_LAYER_GRU, 3, true);
	l[3].recurrent_activation = NN_ACT_TANH;
	l[4] = nt_rnn(NN_LAYER_SIMPLE_RNN, 4, true);
	l[4].activation = NN_ACT_LEAKY_RELU;
	l[4].alpha = 0.1f;
	l[4].use_bias = false;
	l[5] = nt_plain(NN_LAYER_GLOBAL_MAXPOOL);	/* (4) */
	l[6] = nt_reshape3(2, 2, 1);
	l[7] = nt_plain(NN_LAYER_GLOBAL_AVGPOOL);	/* (1) */
	spec = nt_spec(1, 6, 0, 0, l, 8);
	m = nt_create(&spec, 11);
	for (int i = 0; i < n * 6; i++)
		x[i] = (float) nn_rng_below(rng, 9);
	for (int i = 0; i < n; i++)
		y[i] = (float) (i % 2);
	if (opt)
	{
		nn_optimizer_spec o;

		nn_optimizer_spec_init(&o, opt, 0.01f);
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
		assert_ok(nn_model_prepare(m, n, true, 0, &err), &err);
		for (int s = 0; s < 2; s++)
		{
			double		loss = 0;
			int64_t		correct = 0;

			assert_ok(nn_model_train_batch(m, x, y, n, rng, &loss, &correct,
										   &err), &err);
		}
	}
	return m;
}

/* Round trips, the version field and the 108-byte records of version 2. */
static void
test_v2_round_trip(void **state)
{
	nn_rng		rng;
	float		x[8 * 6];

	(void) state;
	nn_rng_seed(&rng, 4);
	for (int k = 0; k <= NN_OPT_MAX; k++)
	{
		nn_model   *m = make_v2((nn_optimizer_kind) k, &rng, x, 8);
		size_t		len;
		uint8_t    *buf = nt_serialize(m, true, &len);
		char		what[80];
		int32_t		C;
		const float *st;

		assert_int_equal(get32(buf, OFF_VERSION), 2);
		assert_int_equal(get32(buf, OFF_NLAYERS), 8);
		/* layer 2 (lstm): kind, units, return_sequences at 104 */
		assert_int_equal(get32(buf, OFF_LAYERS + 108), NN_LAYER_LSTM);
		assert_int_equal(get32(buf, OFF_LAYERS + 108 + 12), 5);
		assert_int_equal(get32(buf, OFF_LAYERS + 108 + 104), 1);
		assert_int_equal(get32(buf, OFF_LAYERS + 108 + 100), NN_ACT_SIGMOID);
		/* layer 1 (embedding): input_dim, output_dim at 92, 96 */
		assert_int_equal(get32(buf, OFF_LAYERS + 92), 9);
		assert_int_equal(get32(buf, OFF_LAYERS + 96), 4);
		/* the tensors start after 8 records of 108 bytes: 1 (embedding) */
		assert_int_equal(get32(buf, OFF_LAYERS + 8 * 108), 1 + 3 + 4 + 3 + 2);
		/* lstm: kernel, recurrent (role 5), bias */
		{
			size_t		t = OFF_LAYERS + 8 * 108 + 4 + TENSOR_HEAD + 9 * 4 * 4;

			assert_int_equal(get32(buf, t), 1);
			assert_int_equal(get32(buf, t + 4), 0);
			t += TENSOR_HEAD + 4 * 20 * 4;
			assert_int_equal(get32(buf, t + 4), 5);
			assert_int_equal(get32(buf, t + 12), 5 * 20);
		}
		if (k)
		{
			/* batchnorm's moving statistics moved and are saved */
			st = nn_model_layer_state(m, 2, &C);
			assert_int_equal(C, 5);
			assert_true(st[0] != 0.0f && st[C] != 1.0f);
		}
		snprintf(what, sizeof(what), "version 2 model, %s",
				 k ? nn_optimizer_name((nn_optimizer_kind) k) : "untrained");
		check_round_trip(what, m, true, x, 8);
		check_round_trip(what, m, false, x, 8);
		/* version 1 cannot hold these kinds */
		put32(buf, OFF_VERSION, 1);
		nt_fix_bytes(buf, len);
		expect_reject("version 2 model labelled version 1", buf, len,
					  NN_ERR_CORRUPT);
		free(buf);
		nn_model_free(m);
	}
}

/* Every bit flip of a small version 2 model (embedding, gru, batchnorm). */
static void
test_v2_bit_flips(void **state)
{
	nn_layer_spec l[] = {nt_embedding(3, 2), nt_rnn(NN_LAYER_GRU, 2, false),
	nt_plain(NN_LAYER_BATCHNORM)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 3);
	nn_model   *m = nt_create(&spec, 3);
	size_t		len;
	uint8_t    *buf = nt_serialize(m, false, &len);
	uint8_t    *f = nt_xmalloc(len);
	size_t		accepted = 0;

	(void) state;
	for (size_t bit = 0; bit < len * 8; bit++)
	{
		nn_model   *r = NULL;
		nn_error	err;
		nn_status	st;
		char		what[80];

		buf[bit / 8] ^= (uint8_t) (1u << (bit % 8));
		snprintf(what, sizeof(what), "v2 bit %zu flipped", bit);
		expect_reject(what, buf, len, NN_ERR_CORRUPT);
		memcpy(f, buf, len);
		nt_fix_bytes(f, len);
		st = nn_model_deserialize(&r, f, len, 0, &capped, test_crc32c, &err);
		if (st == NN_OK)
		{
			size_t		l2;
			uint8_t    *again = nt_serialize(r, false, &l2);

			accepted++;
			if (l2 != len || memcmp(again, f, len) != 0)
				fail_msg("%s: loads but serializes differently", what);
			free(again);
			nn_model_free(r);
		}
		else if (st != NN_ERR_CORRUPT)
			fail_msg("%s behind a valid checksum: status %d (%s)", what,
					 (int) st, err.message);
		buf[bit / 8] ^= (uint8_t) (1u << (bit % 8));
	}
	assert_true(accepted > 0);
	nn_model_free(m);
	free(buf);
	free(f);
}

/* ---------- format version 3: the augmentation layers ---------- */

/* Version 3 records: 41 fields; offsets of the fields version 3 added. */
#define LAYER_REC_V3 168
#define R_MODE 108
#define R_HEIGHT_FACTOR 112
#define R_WIDTH_FACTOR 120
#define R_FILL_MODE 128
#define R_FILL_VALUE 132
#define R_FACTOR 136
#define R_HEIGHT 144
#define R_WIDTH 148
#define R_VALUE_RANGE 152
#define R_STDDEV 160
#define R_TRAINABLE 164

static float
getf(const uint8_t *b, size_t off)
{
	uint32_t	v = get32(b, off);
	float		f;

	memcpy(&f, &v, 4);
	return f;
}

/*
 * A version 3 model with every augmentation kind in front of a small CNN:
 * (6, 5, 2) -> flip -> translation -> rotation -> zoom (own width) -> zoom
 * (width absent) -> crop (5, 4, 2) -> contrast -> brightness -> noise ->
 * conv2d (4, 3, 3) -> flatten -> dense softmax; trained two steps with opt.
 */
static nn_model *
make_v3(nn_optimizer_kind opt, nn_rng *rng, float *x, int32_t n)
{
	static nn_layer_spec l[12];
	nn_model_spec spec;
	nn_model   *m;
	nn_error	err;
	float		y[8];

	l[0] = nt_random_flip(NN_FLIP_BOTH);
	l[1] = nt_random_translation(-0.2f, 0.3f, -0.1f, 0.1f, NN_FILL_CONSTANT, 0.5f);
	l[2] = nt_random_rotation(-0.1f, 0.2f, NN_FILL_WRAP, 0);
	l[3] = nt_random_zoom(-0.2f, 0.3f, 0.0f, 0.5f, NN_FILL_NEAREST, 0);
	l[4] = nt_random_zoom(-0.1f, 0.1f, NAN, NAN, NN_FILL_REFLECT, 0);
	l[5] = nt_random_crop(5, 4);
	l[6] = nt_random_contrast(-0.3f, 0.3f);
	l[7] = nt_random_brightness(-0.1f, 0.1f, NAN, NAN);
	l[8] = nt_gaussian_noise(0.05f);
	l[9] = nt_conv(3, 2, 2, 1, 1, false, NN_ACT_TANH);
	l[9].trainable = false;
	l[10] = nt_plain(NN_LAYER_FLATTEN);
	l[11] = nt_dense(3, NN_ACT_SOFTMAX);
	spec = nt_spec(3, 6, 5, 2, l, 12);
	m = nt_create(&spec, 13);
	nt_fill(x, (size_t) n * 60, rng, 0, 1);
	for (int i = 0; i < n; i++)
		y[i] = (float) (i % 3);
	if (opt)
	{
		nn_optimizer_spec o;

		nn_optimizer_spec_init(&o, opt, 0.01f);
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0,
										&err), &err);
		assert_ok(nn_model_prepare(m, n, true, 0, &err), &err);
		for (int s = 0; s < 2; s++)
		{
			double		loss = 0;
			int64_t		correct = 0;

			assert_ok(nn_model_train_batch(m, x, y, n, rng, &loss, &correct,
										   &err), &err);
		}
	}
	return m;
}

/*
 * Round trips of the version 3 model with each optimizer's state; the
 * version field, the 164-byte records and the new fields where
 * doc/model-format.md puts them (an absent range as two 0x7FC00000, the
 * fields a kind does not use as 0); version 2 cannot hold these kinds.
 */
static void
test_v3_round_trip(void **state)
{
	nn_rng		rng;
	float		x[8 * 60];

	(void) state;
	nn_rng_seed(&rng, 5);
	for (int k = 0; k <= NN_OPT_MAX; k++)
	{
		nn_model   *m = make_v3((nn_optimizer_kind) k, &rng, x, 8);
		size_t		len;
		uint8_t    *buf = nt_serialize(m, true, &len);
		const uint8_t *r;
		char		what[80];

#define REC(i) (buf + OFF_LAYERS + (size_t) (i) * LAYER_REC_V3)
		assert_int_equal(get32(buf, OFF_VERSION), 3);
		assert_int_equal(get32(buf, OFF_NLAYERS), 12);
		/* flip: kind 18, mode 2, the other new fields 0 */
		r = REC(0);
		assert_int_equal(get32(r, 0), NN_LAYER_RANDOM_FLIP);
		assert_int_equal(get32(r, 0), 18);
		assert_int_equal(get32(r, R_MODE), NN_FLIP_BOTH);
		for (size_t off = R_HEIGHT_FACTOR; off < R_TRAINABLE; off += 4)
			assert_int_equal(get32(r, off), 0);
		assert_int_equal(get32(r, R_TRAINABLE), 1);
		/* the version 1 and 2 fields keep their places and unset values */
		assert_int_equal(get32(r, 40), 1);	/* use_bias */
		assert_int_equal(get32(r, 80), 0x33D6BF95u);	/* epsilon */
		/* translation: ranges, fill mode and value */
		r = REC(1);
		assert_int_equal(get32(r, 0), 19);
		assert_true(getf(r, R_HEIGHT_FACTOR) == -0.2f && getf(r, R_HEIGHT_FACTOR + 4) == 0.3f);
		assert_true(getf(r, R_WIDTH_FACTOR) == -0.1f && getf(r, R_WIDTH_FACTOR + 4) == 0.1f);
		assert_int_equal(get32(r, R_FILL_MODE), NN_FILL_CONSTANT);
		assert_true(getf(r, R_FILL_VALUE) == 0.5f);
		assert_int_equal(get32(r, R_MODE), 0);
		assert_int_equal(get32(r, R_FACTOR), 0);
		/* rotation: factor */
		r = REC(2);
		assert_true(getf(r, R_FACTOR) == -0.1f && getf(r, R_FACTOR + 4) == 0.2f);
		assert_int_equal(get32(r, R_FILL_MODE), NN_FILL_WRAP);
		/* zoom with and without a width factor */
		r = REC(3);
		assert_true(getf(r, R_WIDTH_FACTOR) == 0.0f && getf(r, R_WIDTH_FACTOR + 4) == 0.5f);
		assert_int_equal(get32(r, R_FILL_MODE), NN_FILL_NEAREST);
		r = REC(4);
		assert_int_equal(get32(r, R_WIDTH_FACTOR), 0x7FC00000u);
		assert_int_equal(get32(r, R_WIDTH_FACTOR + 4), 0x7FC00000u);
		assert_true(getf(r, R_HEIGHT_FACTOR) == -0.1f);
		/* crop, contrast, brightness (value_range resolved), noise */
		r = REC(5);
		assert_int_equal(get32(r, R_HEIGHT), 5);
		assert_int_equal(get32(r, R_WIDTH), 4);
		r = REC(6);
		assert_int_equal(get32(r, 0), NN_LAYER_RANDOM_CONTRAST);
		assert_true(getf(r, R_FACTOR) == -0.3f && getf(r, R_FACTOR + 4) == 0.3f);
		r = REC(7);
		assert_true(getf(r, R_VALUE_RANGE) == 0.0f && getf(r, R_VALUE_RANGE + 4) == 1.0f);
		r = REC(8);
		assert_int_equal(get32(r, 0), 25);
		assert_true(getf(r, R_STDDEV) == 0.05f);
		/* conv2d: every augmentation field 0, frozen */
		r = REC(9);
		for (size_t off = R_MODE; off < R_TRAINABLE; off += 4)
			assert_int_equal(get32(r, off), 0);
		assert_int_equal(get32(r, R_TRAINABLE), 0);
		assert_int_equal(get32(REC(11), R_TRAINABLE), 1);
		/* tensors after 12 records: conv2d and dense kernels and biases */
		assert_int_equal(get32(REC(12), 0), 4);
		assert_int_equal(get32(REC(12), 4), 9);
#undef REC
		snprintf(what, sizeof(what), "version 3 model, %s",
				 k ? nn_optimizer_name((nn_optimizer_kind) k) : "untrained");
		check_round_trip(what, m, true, x, 8);
		check_round_trip(what, m, false, x, 8);
		/* version 2 cannot hold these kinds; version 4 is unknown */
		put32(buf, OFF_VERSION, 2);
		nt_fix_bytes(buf, len);
		expect_reject("version 3 model labelled version 2", buf, len,
					  NN_ERR_CORRUPT);
		put32(buf, OFF_VERSION, 4);
		nt_fix_bytes(buf, len);
		expect_reject("version 3 model labelled version 4", buf, len,
					  NN_ERR_CORRUPT);
		free(buf);
		nn_model_free(m);
	}
}

/* Models of the earlier kinds keep their version 1 and 2 bytes. */
static void
test_v3_keeps_old_versions(void **state)
{
	nn_rng		rng;
	float		x[8 * 6];
	nn_model   *m;
	size_t		len;
	uint8_t    *buf;

	(void) state;
	nn_rng_seed(&rng, 6);
	m = make_every_kind(NN_OPT_ADAM, true, &rng);
	buf = nt_serialize(m, true, &len);
	assert_int_equal(get32(buf, OFF_VERSION), 1);
	assert_int_equal(get32(buf, OFF_NLAYERS) * LAYER_REC + OFF_LAYERS,
					 OFF_LAYERS + 12 * 88);
	/* the tensor count follows 12 records of 88 bytes */
	assert_int_equal(get32(buf, OFF_LAYERS + 12 * LAYER_REC), 7);
	free(buf);
	nn_model_free(m);
	m = make_v2(NN_OPT_SGD, &rng, x, 8);
	buf = nt_serialize(m, true, &len);
	assert_int_equal(get32(buf, OFF_VERSION), 2);
	assert_int_equal(get32(buf, OFF_LAYERS + 8 * 108), 1 + 3 + 4 + 3 + 2);
	free(buf);
	nn_model_free(m);
}

/*
 * Hand-made inconsistencies in version 3 records behind a valid checksum:
 * a NaN of another bit pattern for an absent range, an absent range where
 * the kind has a default, a half-absent range, a range reversed or out of
 * bounds, choices out of range, a crop larger than its input, a new
 * option on an old kind.
 */
static void
test_v3_damage(void **state)
{
	nn_layer_spec l[] = {nt_random_zoom(-0.2f, 0.2f, NAN, NAN, NN_FILL_REFLECT, 0),
		nt_random_translation(-0.1f, 0.1f, 0, 0, NN_FILL_WRAP, 0),
		nt_random_crop(3, 2),
		nt_random_brightness(-0.1f, 0.1f, NAN, NAN),
		nt_plain(NN_LAYER_FLATTEN),
	nt_dense(2, NN_ACT_LINEAR)};
	nn_model_spec spec = nt_spec(3, 4, 3, 1, l, 6);
	nn_model   *m = nt_create(&spec, 2);
	size_t		len;
	uint8_t    *buf = nt_serialize(m, false, &len);
	uint8_t    *b = nt_xmalloc(len);
	const size_t L0 = OFF_LAYERS,
				L1 = OFF_LAYERS + LAYER_REC_V3,
				L2 = OFF_LAYERS + 2 * LAYER_REC_V3,
				L3 = OFF_LAYERS + 3 * LAYER_REC_V3,
				L5 = OFF_LAYERS + 5 * LAYER_REC_V3;
	static const struct
	{
		const char *what;
		size_t		rec;
		size_t		off;
		uint32_t	v;
	}			cases[] = {
		{"absent range with another NaN", 0, R_WIDTH_FACTOR, 0x7FC00001u},
		{"absent range with a negative NaN", 0, R_WIDTH_FACTOR + 4, 0xFFC00000u},
		{"half-absent range", 0, R_WIDTH_FACTOR, 0x3F000000u},	/* 0.5, NaN */
		{"absent range where the kind has a default", 1, R_HEIGHT_FACTOR, 0x7FC00000u},
		{"range reversed", 1, R_HEIGHT_FACTOR, 0x3F000000u},	/* [0.5, 0.1] */
		{"translation bound above 1", 1, R_WIDTH_FACTOR + 4, 0x40000000u},	/* 2 */
		{"zoom bound -1", 0, R_HEIGHT_FACTOR, 0xBF800000u},
		{"range infinite", 1, R_WIDTH_FACTOR + 4, 0x7F800000u},
		{"fill_mode 4", 1, R_FILL_MODE, 4},
		{"fill_mode 2^31", 1, R_FILL_MODE, 0x80000000u},
		{"mode on a translation", 1, R_MODE, 1},
		{"fill_value NaN", 1, R_FILL_VALUE, 0x7FC00000u},
		{"crop taller than the input", 2, R_HEIGHT, 5},
		{"crop width 0", 2, R_WIDTH, 0},
		{"stddev on a crop", 2, R_STDDEV, 0x3F000000u},
		{"trainable 0 on a crop", 2, R_TRAINABLE, 0},
		{"trainable 2 on a dense layer", 5, R_TRAINABLE, 2},
		{"factor on a dense layer", 5, R_FACTOR + 4, 0x3F000000u},
		{"value_range half absent", 3, R_VALUE_RANGE, 0x7FC00000u},
		{"value_range empty", 3, R_VALUE_RANGE, 0x3F800000u},	/* [1, 1] */
		{"kind past the last", 2, 0, NN_LAYER_KIND_MAX + 1},
	};
	size_t		recs[6] = {L0, L1, L2, L3, OFF_LAYERS + 4 * LAYER_REC_V3, L5};

	(void) state;
	assert_int_equal(get32(buf, OFF_VERSION), 3);
	assert_int_equal(get32(buf, L0 + R_WIDTH_FACTOR), 0x7FC00000u);
	assert_int_equal(get32(buf, L3 + R_VALUE_RANGE + 4), 0x3F800000u);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		memcpy(b, buf, len);
		put32(b, recs[cases[i].rec] + cases[i].off, cases[i].v);
		nt_fix_bytes(b, len);
		expect_reject(cases[i].what, b, len, NN_ERR_CORRUPT);
	}
	/* value_range is stored resolved: absent in the bytes is not canonical */
	memcpy(b, buf, len);
	put32(b, L3 + R_VALUE_RANGE, 0x7FC00000u);
	put32(b, L3 + R_VALUE_RANGE + 4, 0x7FC00000u);
	nt_fix_bytes(b, len);
	expect_reject("value_range absent", b, len, NN_ERR_CORRUPT);
	/* and the bytes themselves load */
	{
		nn_model   *r = NULL;
		nn_error	err;

		assert_ok(load(buf, len, 0, &r, &err), &err);
		assert_true(isnan(nn_model_get_spec(r)->layers[0].width_factor[0]));
		nn_model_free(r);
	}
	free(b);
	free(buf);
	nn_model_free(m);
}

/* Every bit flip of a small version 3 model (zoom without width, crop). */
static void
test_v3_bit_flips(void **state)
{
	nn_layer_spec l[] = {nt_random_zoom(-0.2f, 0.2f, NAN, NAN, NN_FILL_REFLECT, 0),
		nt_random_crop(1, 2),
	nt_random_brightness(-0.1f, 0.1f, NAN, NAN)};
	nn_model_spec spec = nt_spec(3, 2, 2, 1, l, 3);
	nn_model   *m = nt_create(&spec, 3);
	size_t		len;
	uint8_t    *buf = nt_serialize(m, false, &len);
	uint8_t    *f = nt_xmalloc(len);
	size_t		accepted = 0;

	(void) state;
	assert_int_equal(get32(buf, OFF_VERSION), 3);
	for (size_t bit = 0; bit < len * 8; bit++)
	{
		nn_model   *r = NULL;
		nn_error	err;
		nn_status	st;
		char		what[80];

		buf[bit / 8] ^= (uint8_t) (1u << (bit % 8));
		snprintf(what, sizeof(what), "v3 bit %zu flipped", bit);
		expect_reject(what, buf, len, NN_ERR_CORRUPT);
		memcpy(f, buf, len);
		nt_fix_bytes(f, len);
		st = nn_model_deserialize(&r, f, len, 0, &capped, test_crc32c, &err);
		if (st == NN_OK)
		{
			size_t		l2;
			uint8_t    *again = nt_serialize(r, false, &l2);

			accepted++;
			if (l2 != len || memcmp(again, f, len) != 0)
				fail_msg("%s: loads but serializes differently", what);
			free(again);
			nn_model_free(r);
		}
		else if (st != NN_ERR_CORRUPT)
			fail_msg("%s behind a valid checksum: status %d (%s)", what,
					 (int) st, err.message);
		buf[bit / 8] ^= (uint8_t) (1u << (bit % 8));
	}
	print_message("version 3: %zu of %zu bit flips load behind a fixed checksum\n",
				  accepted, len * 8);
	assert_true(accepted > 0);
	nn_model_free(m);
	free(buf);
	free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_kind),
		cmocka_unit_test(test_round_trip_seed_cnn),
		cmocka_unit_test(test_layer_records_as_documented),
		cmocka_unit_test(test_weights_only_has_no_training_state),
		cmocka_unit_test(test_release_training),
		cmocka_unit_test(test_serialize_small_buffer),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_every_bit_flip),
		cmocka_unit_test(test_huge_claim_allocates_nothing_big),
		cmocka_unit_test(test_header_damage),
		cmocka_unit_test(test_structural_damage),
		cmocka_unit_test(test_normalize_damage),
		cmocka_unit_test(test_max_bytes),
		cmocka_unit_test(test_resume_matches_uninterrupted),
		cmocka_unit_test(test_v2_round_trip),
		cmocka_unit_test(test_v2_bit_flips),
		cmocka_unit_test(test_v3_round_trip),
		cmocka_unit_test(test_v3_keeps_old_versions),
		cmocka_unit_test(test_v3_damage),
		cmocka_unit_test(test_v3_bit_flips),
	};

	return NT_RUN(tests);
}
