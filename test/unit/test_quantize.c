/*
 * test_quantize.c: int8 models (quantize.c).  Quantized predictions stay
 * close to the float model's, calibrated (int8 x int8) and weight-only;
 * calibrated ones do not depend on the batch, the thread count or the
 * kernel path, bit for bit; model bytes (format version 4) round-trip and
 * every damaged field is refused; training, differentiation, pruning and
 * quantizing twice are refused; calibration errors leave the model float.
 */
#include "nn_test.h"
#include "crc_shim.h"
#include "nn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_CALIB 200
#define N_TEST 64

/* 64 -> dense 128 relu -> dropout 0.2 -> dense 10 softmax. */
static nn_model *
mlp(void)
{
	nn_layer_spec l[] = {nt_dense(128, NN_ACT_RELU), nt_dropout(0.2f),
	nt_dense(10, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 64, 0, 0, l, NT_NLAYERS(l));

	return nt_create(&spec, 11);
}

/* (12, 12, 1) -> conv 8 3x3 relu -> maxpool 2 -> conv 16 3x3 same relu
 * (a Winograd shape in float) -> flatten -> dense 10 softmax. */
static nn_model *
cnn(void)
{
	nn_layer_spec l[] = {nt_conv(8, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, false),
		nt_conv(16, 3, 3, 1, 1, true, NN_ACT_RELU),
		nt_plain(NN_LAYER_FLATTEN), nt_dense(10, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(3, 12, 12, 1, l, NT_NLAYERS(l));

	return nt_create(&spec, 12);
}

/* 64 -> dense 32 -> batchnorm -> relu -> dropout 0.3 -> dense 4 softmax,
 * with moving statistics away from their initial values. */
static nn_model *
bn_model(void)
{
	nn_layer_spec l[] = {nt_dense(32, NN_ACT_LINEAR),
		nt_plain(NN_LAYER_BATCHNORM), nt_act(NN_ACT_RELU), nt_dropout(0.3f),
	nt_dense(4, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 64, 0, 0, l, NT_NLAYERS(l));
	nn_model   *m = nt_create(&spec, 13);
	int32_t		c;
	float	   *st = nn_model_layer_state(m, 1, &c);

	for (int32_t i = 0; i < c; i++)
	{
		st[i] = 0.05f * (float) (i % 5);
		st[c + i] = 0.5f + 0.1f * (float) (i % 7);
	}
	return m;
}

/* n rows of in values uniform in [0, 1]. */
static float *
rows(size_t n, size_t in, uint64_t seed)
{
	float	   *x = nt_xmalloc(sizeof(float) * n * in);
	nn_rng		rng;

	nn_rng_seed(&rng, seed);
	nt_fill(x, n * in, &rng, 0.0f, 1.0f);
	return x;
}

/* Predictions (n, out) of n rows, as one batch. */
static float *
predict(nn_model *m, const float *x, int32_t n)
{
	float	   *y = nt_xmalloc(sizeof(float) * n * nn_model_output_size(m));
	nn_error	err;

	assert_ok(nn_model_prepare(m, n, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, n, &err), &err);
	return y;
}

/* The same predictions, one row at a time. */
static float *
predict_rows(nn_model *m, const float *x, int32_t n)
{
	size_t		in = nn_model_input_size(m),
				out = nn_model_output_size(m);
	float	   *y = nt_xmalloc(sizeof(float) * n * out);
	nn_error	err;

	assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
	for (int32_t r = 0; r < n; r++)
		assert_ok(nn_model_predict(m, y + r * out, x + r * in, 1, &err), &err);
	return y;
}

/* A copy through model bytes. */
static nn_model *
copy(const nn_model *m)
{
	size_t		len;
	uint8_t    *b = nt_serialize(m, false, &len);
	nn_model   *c;
	nn_error	err;

	assert_ok(nn_model_deserialize(&c, b, len, 0, &nn_malloc_alloc,
								   test_crc32c, &err), &err);
	free(b);
	return c;
}

/* Quantize m, calibrated on N_CALIB rows or weight-only. */
static void
quantize(nn_model *m, bool calibrated)
{
	float	   *cx = rows(N_CALIB, nn_model_input_size(m), 21);
	nn_error	err;

	assert_ok(nn_model_quantize(m, calibrated ? cx : NULL,
								calibrated ? N_CALIB : 0, &err), &err);
	assert_true(nn_model_is_quantized(m));
	assert_int_equal(nn_model_quantized_activations(m), calibrated);
	free(cx);
}

/*
 * int8 probabilities against the float model's on N_TEST rows: within
 * tol everywhere, and the same class for all but a few rows.
 */
static void
check_close(nn_model *(*make) (void), bool calibrated, double tol)
{
	nn_model   *f = make(),
			   *q = make();
	size_t		out = nn_model_output_size(f);
	float	   *x = rows(N_TEST, nn_model_input_size(f), 31);
	float	   *yf = predict(f, x, N_TEST),
			   *yq;
	int			same = 0;

	quantize(q, calibrated);
	yq = predict(q, x, N_TEST);
	assert_close_f(calibrated ? "calibrated" : "weight-only", yq, yf,
				   N_TEST * out, tol, 0.0);
	for (int r = 0; r < N_TEST; r++)
	{
		size_t		af = 0,
					aq = 0;

		for (size_t j = 1; j < out; j++)
		{
			af = yf[r * out + j] > yf[r * out + af] ? j : af;
			aq = yq[r * out + j] > yq[r * out + aq] ? j : aq;
		}
		same += af == aq;
	}
	assert_true(same >= N_TEST * 9 / 10);
	free(x);
	free(yf);
	free(yq);
	nn_model_free(f);
	nn_model_free(q);
}

static void
test_close_mlp(void **state)
{
	(void) state;
	check_close(mlp, true, 0.005);
	check_close(mlp, false, 0.005);
}

static void
test_close_cnn(void **state)
{
	(void) state;
	check_close(cnn, true, 0.003);
	check_close(cnn, false, 0.003);
}

static void
test_close_batchnorm(void **state)
{
	(void) state;
	check_close(bn_model, true, 0.012);
	check_close(bn_model, false, 0.012);
}

/* Calibrated: a batch and its rows one by one agree bit for bit. */
static void
check_rows(nn_model *(*make) (void), bool calibrated)
{
	nn_model   *q = make();
	float	   *x = rows(N_TEST, nn_model_input_size(q), 41);
	float	   *yb,
			   *yr;
	size_t		out = nn_model_output_size(q);

	quantize(q, calibrated);
	yb = predict(q, x, N_TEST);
	yr = predict_rows(q, x, N_TEST);
	if (calibrated)
		assert_memory_equal(yb, yr, sizeof(float) * N_TEST * out);
	else						/* float sums in another order */
		assert_close_f("weight-only rows", yr, yb, N_TEST * out, 1e-6, 1e-5);
	free(x);
	free(yb);
	free(yr);
	nn_model_free(q);
}

static void
test_batch_rows(void **state)
{
	(void) state;
	check_rows(mlp, true);
	check_rows(cnn, true);
	check_rows(mlp, false);
	check_rows(cnn, false);
}

/* Predictions of a fresh copy of q on 1 and 2 threads agree bit for bit. */
static void
check_threads(const nn_model *q, const float *x, int32_t n)
{
	nn_model   *a = copy(q),
			   *b = copy(q);
	size_t		out = nn_model_output_size(q);
	float	   *y1,
			   *y2;

	nn_set_threads(1);
	y1 = predict(a, x, n);
	nn_set_threads(2);
	y2 = predict(b, x, n);
	if (memcmp(y1, y2, sizeof(float) * n * out) != 0)
		fail_msg("%s %s model, %d rows: 1 and 2 threads differ",
				 nn_model_quantized_activations(q) ? "calibrated" : "weight-only",
				 nn_model_get_spec(q)->input_rank == 3 ? "cnn" : "mlp", n);
	free(y1);
	free(y2);
	nn_model_free(a);
	nn_model_free(b);
}

static void
test_threads(void **state)
{
	nn_model *(*makes[]) (void) = {mlp, cnn};

	(void) state;
	for (int i = 0; i < 2; i++)
		for (int c = 0; c < 2; c++)
		{
			nn_model   *q = makes[i]();
			float	   *x = rows(256, nn_model_input_size(q), 51);

			quantize(q, c == 1);
			check_threads(q, x, 256);
			check_threads(q, x, 1);
			free(x);
			nn_model_free(q);
		}
	/* prepared on one thread, then the team grows: the scratch follows */
	{
		nn_model   *q = cnn();
		float	   *x = rows(64, nn_model_input_size(q), 52);
		float	   *y1,
				   *y2;

		quantize(q, false);
		nn_set_threads(1);
		y1 = predict(q, x, 64);
		nn_set_threads(2);
		y2 = predict(q, x, 64);
		assert_true(nn_quant_threads(&q->layers[0]) == 2);
		assert_memory_equal(y1, y2, sizeof(float) * 64 * 10);
		free(y1);
		free(y2);
		free(x);
		nn_model_free(q);
	}
	nt_setup_threads();
}

/* Every kernel path this processor runs, batch and single row. */
static void
check_paths(nn_model *(*make) (void), bool calibrated)
{
	nn_model   *q = make();
	float	   *x = rows(N_TEST, nn_model_input_size(q), 61);
	size_t		out = nn_model_output_size(q);
	float	   *ref = NULL,
			   *ref1 = NULL;
	nn_error	err;

	quantize(q, calibrated);
	for (int p = NN_QPATH_C; p < NN_QPATH_COUNT; p++)
	{
		float	   *y,
				   *y1;

		if (!nn_qgemm_path_supported((nn_qpath) p))
		{
			assert_int_equal(nn_model_set_qpath(q, (nn_qpath) p, &err),
							 NN_ERR_INTERNAL);
			continue;
		}
		assert_ok(nn_model_set_qpath(q, (nn_qpath) p, &err), &err);
		y = predict(q, x, N_TEST);
		y1 = predict_rows(q, x, 2);
		if (ref == NULL)
		{
			ref = y;
			ref1 = y1;
			continue;
		}
		if (calibrated)
		{
			assert_memory_equal(y, ref, sizeof(float) * N_TEST * out);
			assert_memory_equal(y1, ref1, sizeof(float) * 2 * out);
		}
		else
		{
			assert_close_f("weight-only path", y, ref, N_TEST * out, 1e-6, 1e-5);
			assert_close_f("weight-only path, rows", y1, ref1, 2 * out,
						   1e-6, 1e-5);
		}
		free(y);
		free(y1);
	}
	free(ref);
	free(ref1);
	free(x);
	nn_model_free(q);
}

static void
test_paths(void **state)
{
	(void) state;
	check_paths(mlp, true);
	check_paths(cnn, true);
	check_paths(mlp, false);
	check_paths(cnn, false);
}

/* Bytes: version 4, exact size, same bytes and predictions back. */
static void
check_bytes(nn_model *(*make) (void), bool calibrated)
{
	nn_model   *q = make(),
			   *back;
	float	   *x = rows(N_TEST, nn_model_input_size(q), 71);
	float	   *y,
			   *yb;
	size_t		len,
				len2;
	uint8_t    *b,
			   *b2;
	uint32_t	version;
	int64_t		weights = nn_model_param_count(q);

	quantize(q, calibrated);
	b = nt_serialize(q, true, &len);	/* no optimizer state to add */
	assert_int_equal(len, nn_model_serialized_size(q, false));
	memcpy(&version, b + 8, 4);
	assert_int_equal(version, 4);
	/* the MLP's weights are mostly its kernels: int8 is near a quarter */
	if (nn_model_get_spec(q)->input_rank == 1)
		assert_true((double) len <= 0.30 * 4.0 * (double) weights);
	back = copy(q);
	assert_true(nn_model_is_quantized(back));
	assert_int_equal(nn_model_quantized_activations(back), calibrated);
	b2 = nt_serialize(back, false, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(b, b2, len);
	y = predict(q, x, N_TEST);
	yb = predict(back, x, N_TEST);
	assert_memory_equal(y, yb, sizeof(float) * N_TEST * nn_model_output_size(q));
	free(b);
	free(b2);
	free(x);
	free(y);
	free(yb);
	nn_model_free(q);
	nn_model_free(back);
}

static void
test_bytes(void **state)
{
	(void) state;
	check_bytes(mlp, true);
	check_bytes(mlp, false);
	check_bytes(cnn, true);
	check_bytes(cnn, false);
}

/* Float models still write versions 1 to 3, and their bytes load as float. */
static void
test_float_bytes(void **state)
{
	nn_model   *m = mlp(),
			   *back;
	size_t		len;
	uint8_t    *b = nt_serialize(m, false, &len);
	uint32_t	version;

	(void) state;
	memcpy(&version, b + 8, 4);
	assert_int_equal(version, 1);
	back = copy(m);
	assert_false(nn_model_is_quantized(back));
	free(b);
	nn_model_free(m);
	nn_model_free(back);
}

/* 6 -> dense 3 relu -> dense 2 softmax: the first kernel has 18 values,
 * two bytes of padding. */
static nn_model *
small(void)
{
	nn_layer_spec l[] = {nt_dense(3, NN_ACT_RELU), nt_dense(2, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 6, 0, 0, l, 2);

	return nt_create(&spec, 14);
}

typedef struct damage
{
	const char *what;
	size_t		off;
	uint32_t	xor;			/* a u32 at off, or */
	int			byte;			/* >= 0: the byte at off set to this */
} damage;

static void
test_damage(void **state)
{
	nn_model   *q = small(),
			   *back;
	size_t		len;
	uint8_t    *buf,
			   *b;
	nn_error	err;
	/* layer 0: int8 kernel (28 + 20), scales (28 + 12), input (28 + 8) */
	size_t		k0 = 44 + 2 * 168 + 4,
				s0 = k0 + 48,
				a0 = s0 + 40;
	float		nan = NAN,
				neg = -1.0f;
	uint32_t	nanbits,
				negbits;
	damage		cases[] = {
		{"float kernel role", k0 + 4, 8, -1},
		{"rank 1", k0 + 8, 3, -1},
		{"channels", k0 + 12, 1, -1},
		{"inputs", k0 + 16, 1, -1},
		{"spare dimension", k0 + 20, 1, -1},
		{"-128", k0 + 28 + 5, 0, 0x80},
		{"padding", k0 + 28 + 18, 0, 1},
		{"scale role", s0 + 4, 1, -1},
		{"scales count", s0 + 12, 1, -1},
		{"zero scale of a channel of values", s0 + 28, 0, -2},
		{"input role", a0 + 4, 1, -1},
		{"input zero point 256", a0 + 32, 0, -3},
		{"version 3", 8, 7, -1},
		{"optimizer flag", 12, 1, -1},
	};

	(void) state;
	memcpy(&nanbits, &nan, 4);
	memcpy(&negbits, &neg, 4);
	quantize(q, true);
	buf = nt_serialize(q, false, &len);
	b = nt_xmalloc(len);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		uint32_t	v;

		memcpy(b, buf, len);
		memcpy(&v, b + cases[i].off, 4);
		if (cases[i].byte >= 0)
			b[cases[i].off] = (uint8_t) cases[i].byte;
		else if (cases[i].byte == -2)
			memset(b + cases[i].off, 0, 4);
		else if (cases[i].byte == -3)
		{
			v = 256;
			memcpy(b + cases[i].off, &v, 4);
		}
		else
		{
			v ^= cases[i].xor;
			memcpy(b + cases[i].off, &v, 4);
		}
		nt_fix_bytes(b, len);
		if (nn_model_deserialize(&back, b, len, 0, &nn_malloc_alloc,
								 test_crc32c, &err) != NN_ERR_CORRUPT)
			fail_msg("%s: loaded", cases[i].what);
	}
	/* non-finite and negative scales, of a weight and of an input */
	{
		size_t		offs[] = {s0 + 28, a0 + 28};
		uint32_t	bad[] = {nanbits, negbits};

		for (int o = 0; o < 2; o++)
			for (int k = 0; k < 2; k++)
			{
				memcpy(b, buf, len);
				memcpy(b + offs[o], &bad[k], 4);
				nt_fix_bytes(b, len);
				assert_int_equal(nn_model_deserialize(&back, b, len, 0,
													  &nn_malloc_alloc,
													  test_crc32c, &err),
								 NN_ERR_CORRUPT);
			}
	}
	/* truncated after the first int8 kernel */
	assert_int_equal(nn_model_deserialize(&back, buf, k0 + 30, 0,
										  &nn_malloc_alloc, test_crc32c, &err),
					 NN_ERR_CORRUPT);
	free(b);
	free(buf);
	nn_model_free(q);
}

/* Training, differentiation, pruning, transfer and a second quantization. */
static void
test_refused(void **state)
{
	nn_model   *q = mlp(),
			   *t;
	nn_optimizer_spec opt;
	nn_error	err;
	float		x[64] = {0},
				attr[64],
				fx,
				fb;
	nn_layer_spec top[] = {nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model_spec tspec = nt_spec(1, 1, 0, 0, top, 1);

	(void) state;
	quantize(q, false);
	nn_optimizer_spec_init(&opt, NN_OPT_ADAM, 0.001f);
	assert_int_equal(nn_model_set_training(q, &opt, NN_LOSS_SPARSE_CATEGORICAL_CE,
										   NULL, 0, &err), NN_ERR_UNSUPPORTED);
	assert_string_equal(err.message, "model is int8 and cannot be trained");
	assert_string_equal(err.detail,
						"Train the float version of the model, then quantize it again.");
	assert_int_equal(nn_model_prepare(q, 8, true, 0, &err), NN_ERR_UNSUPPORTED);
	assert_int_equal(nn_model_explain(q, attr, &fx, &fb, NULL, x, NULL, -1, 4,
									  0, &err), NN_ERR_UNSUPPORTED);
	assert_string_equal(err.message, "model is int8 and cannot be explained");
	assert_int_equal(nn_model_prune(q, 0.5, &err), NN_ERR_UNSUPPORTED);
	assert_int_equal(nn_model_transfer(&t, q, 1, &tspec, true, 1, 0,
									   &nn_malloc_alloc, &err),
					 NN_ERR_UNSUPPORTED);
	assert_int_equal(nn_model_quantize(q, NULL, 0, &err), NN_ERR_SPEC);
	assert_string_equal(err.message, "model is already int8");
	nn_model_free(q);
}

/* Calibration errors name the problem and leave the float model as it was. */
static void
test_calibration_errors(void **state)
{
	nn_model   *m = mlp();
	float	   *cx = rows(10, 64, 81);
	float	   *x = rows(4, 64, 82);
	float	   *before = predict(m, x, 4),
			   *after;
	nn_error	err;
	nn_layer_spec l[] = {nt_plain(NN_LAYER_FLATTEN), nt_act(NN_ACT_RELU)};
	nn_model_spec spec = nt_spec(1, 4, 0, 0, l, 2);
	nn_model   *none = nt_create(&spec, 1);

	(void) state;
	cx[3 * 64 + 7] = NAN;
	assert_int_equal(nn_model_quantize(m, cx, 10, &err), NN_ERR_DATA);
	assert_string_equal(err.message,
						"calibration row 4 has a value that is not finite (feature 8)");
	cx[3 * 64 + 7] = INFINITY;
	assert_int_equal(nn_model_quantize(m, cx, 10, &err), NN_ERR_DATA);
	assert_int_equal(nn_model_quantize(m, cx, 0, &err), NN_ERR_SPEC);
	assert_int_equal(nn_model_quantize(m, cx, -1, &err), NN_ERR_SPEC);
	assert_int_equal(nn_model_quantize(m, NULL, 5, &err), NN_ERR_SPEC);
	assert_false(nn_model_is_quantized(m));
	after = predict(m, x, 4);
	assert_memory_equal(before, after, sizeof(float) * 4 * 10);
	assert_int_equal(nn_model_quantize(none, NULL, 0, &err), NN_ERR_SPEC);
	assert_string_equal(err.message,
						"model has no dense or conv2d layer to quantize");
	free(cx);
	free(x);
	free(before);
	free(after);
	nn_model_free(m);
	nn_model_free(none);
}

/* A pruned model: its zeros stay zero, the mask goes, sparsity counts them. */
static void
test_pruned(void **state)
{
	nn_model   *m = cnn(),
			   *back;
	nn_error	err;
	double		s;

	(void) state;
	assert_ok(nn_model_prune(m, 0.6, &err), &err);
	s = nn_model_sparsity(m);
	quantize(m, true);
	assert_false(nn_model_is_pruned(m));
	/* small weights may round to zero too */
	assert_true(nn_model_sparsity(m) >= s);
	assert_true(nn_model_sparsity(m) < s + 0.05);
	back = copy(m);
	assert_true(nn_model_sparsity(back) == nn_model_sparsity(m));
	nn_model_free(back);
	nn_model_free(m);
	check_close(cnn, true, 0.003);
}

/* The int8 kernel is not in the parameter vector; the biases are. */
/*
 * The float twin of a weight-only int8 model computes what it computes
 * (the same dequantized weights; sums in another order), for the MLP, the
 * CNN and the batchnorm model, and leaves the int8 model as it was.
 */
static void
test_dequantize(void **state)
{
	nn_model   *(*makes[]) (void) = {mlp, cnn, bn_model};

	(void) state;
	for (int k = 0; k < 3; k++)
	{
		nn_model   *m = makes[k]();
		size_t		in = nn_model_input_size(m),
					out = nn_model_output_size(m);
		float	   *x = rows(N_TEST, in, 31);
		nn_model   *d;
		float	   *yq,
				   *yd;
		nn_error	err;

		quantize(m, false);
		assert_ok(nn_model_dequantize(&d, m, &nn_malloc_alloc, &err), &err);
		assert_false(nn_model_is_quantized(d));
		yq = predict(m, x, N_TEST);
		yd = predict(d, x, N_TEST);
		assert_close_f("dequantized twin", yd, yq, N_TEST * out, 1e-5, 1e-4);
		free(x);
		free(yq);
		free(yd);
		nn_model_free(d);
		nn_model_free(m);
	}
}

static void
test_params(void **state)
{
	nn_model   *f = mlp(),
			   *q = mlp();
	int64_t		ko,
				kl,
				bo,
				bl,
				fko,
				fkl,
				fbo,
				fbl;

	(void) state;
	quantize(q, true);
	assert_int_equal(nn_model_param_count(q), nn_model_param_count(f));
	assert_int_equal(nn_model_trainable_count(q), 0);
	for (int i = 0; i < 3; i += 2)
	{
		nn_model_layer_params(q, i, &ko, &kl, &bo, &bl);
		nn_model_layer_params(f, i, &fko, &fkl, &fbo, &fbl);
		assert_int_equal(ko, -1);
		assert_int_equal(kl, 0);
		assert_int_equal(bl, fbl);
		assert_memory_equal(nn_model_params(q) + bo, nn_model_params(f) + fbo,
							sizeof(float) * bl);
	}
	nn_model_free(f);
	nn_model_free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_close_mlp),
		cmocka_unit_test(test_close_cnn),
		cmocka_unit_test(test_close_batchnorm),
		cmocka_unit_test(test_batch_rows),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_float_bytes),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_calibration_errors),
		cmocka_unit_test(test_pruned),
		cmocka_unit_test(test_dequantize),
		cmocka_unit_test(test_params),
	};

	return NT_RUN(tests);
}
