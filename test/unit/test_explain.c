/*
 * test_explain.c: the model differentiated as it predicts
 * (nn_model_input_gradient) and integrated gradients (nn_model_explain).
 *
 * - the input gradient against central differences of nn_model_predict,
 *   for every layer kind that has an input gradient, its predictions equal
 *   to nn_model_predict's bit for bit, and nothing in the model changed;
 * - exact attributions of a linear model: w_i (x_i - b_i);
 * - completeness, sum of attributions = F(x) - F(b) within 2% at 64 steps
 *   and closer with more, for an MLP, the seed CNN, a model with
 *   batchnorm, dropout and the augmentation layers, lstm and gru models,
 *   and embedding models (attributions per token);
 * - errors, and a model that predicts and trains after an explanation
 *   exactly as a twin that was never explained;
 * - the same attributions in two runs, and on 1 and 2 threads up to the
 *   order of sums.
 */
#include "nn_test.h"

#include <float.h>
#include <math.h>

/* ---------- helpers ---------- */

/* A model of the layers with perturbed biases and statistics. */
static nn_model *
make(nn_layer_spec *l, int32_t n, int32_t rank, int32_t d0, int32_t d1,
	 int32_t d2, uint64_t seed)
{
	nn_model_spec spec = nt_spec(rank, d0, d1, d2, l, n);
	nn_model   *m = nt_create(&spec, seed);

	nt_perturb(m, seed + 1);
	return m;
}

/* Layer i's kernel times f: larger weights, so that outputs move. */
static void
scale_kernel(nn_model *m, int i, float f)
{
	int64_t		ko,
				kl,
				bo,
				bl;

	nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
	for (int64_t j = 0; j < kl; j++)
		nn_model_params(m)[ko + j] *= f;
}

/* sum_j dout[j] out[j] in double. */
static double
dot(const float *a, const float *b, size_t n)
{
	double		s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double) a[i] * b[i];
	return s;
}

/* The model's bytes, weights and statistics (and optimizer state). */
static uint8_t *
bytes_of(const nn_model *m, bool with_opt, size_t *len)
{
	return nt_serialize(m, with_opt, len);
}

static void
assert_same_bytes(const char *label, uint8_t *a, size_t la, uint8_t *b,
				  size_t lb)
{
	if (la != lb || memcmp(a, b, la) != 0)
		fail_msg("%s: the model's bytes changed", label);
	free(a);
	free(b);
}

/* ---------- the input gradient ---------- */

/* Central difference of sum(dout * predict(x)) in x[i]. */
static double
fd_input(nn_model *m, float *x, size_t i, const float *dout, float *pred,
		 int32_t n, double eps)
{
	size_t		k = nn_model_output_size(m) * (size_t) n;
	float		orig = x[i];
	float		vp = (float) (orig + eps),
				vm = (float) (orig - eps);
	double		fp,
				fm;
	nn_error	err;

	x[i] = vp;
	assert_ok(nn_model_predict(m, pred, x, n, &err), &err);
	fp = dot(dout, pred, k);
	x[i] = vm;
	assert_ok(nn_model_predict(m, pred, x, n, &err), &err);
	fm = dot(dout, pred, k);
	x[i] = orig;
	return (fp - fm) / ((double) vp - (double) vm);
}

/* Central difference of sum(dout * predict(x)) along v, step h. */
static double
fd_along(nn_model *m, const float *x, const float *v, double h,
		 const float *dout, float *xt, float *pred, int32_t n)
{
	size_t		in = nn_model_input_size(m) * (size_t) n;
	size_t		k = nn_model_output_size(m) * (size_t) n;
	double		f[2];
	nn_error	err;

	for (int s = 0; s < 2; s++)
	{
		for (size_t i = 0; i < in; i++)
			xt[i] = (float) (x[i] + (s ? -h : h) * v[i]);
		assert_ok(nn_model_predict(m, pred, xt, n, &err), &err);
		f[s] = dot(dout, pred, k);
	}
	return (f[0] - f[1]) / (2 * h);
}

/* The largest |v[i]|. */
static double
max_abs(const double *v, size_t n)
{
	double		mx = 0.0;

	for (size_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(v[i]));
	return mx;
}

/*
 * What rounding in the model leaves of a central difference of sum(dout *
 * predict(x)) with step eps: errors of 1e-6 of sum |dout * prediction|
 * (float32 sums, and Winograd's transforms, winograd.c), over the 2 eps.
 */
static double
fd_noise(nn_model *m, const float *x, const float *dout, float *pred,
		 int32_t n, double eps)
{
	size_t		k = nn_model_output_size(m) * (size_t) n;
	double		s = 0.0;
	nn_error	err;

	assert_ok(nn_model_predict(m, pred, x, n, &err), &err);
	for (size_t j = 0; j < k; j++)
		s += fabs((double) dout[j] * pred[j]);
	return 2 * 1e-6 * s / (2 * eps);
}

/*
 * The gradient g of sum(dout * predict(x)) against central differences:
 * each value within 10 tol of itself or of the largest one, or within the
 * rounding of the predictions (fd_noise), and g . v within tol along
 * random directions v, which sum many values' effects.
 */
static void
check_fd(const char *label, nn_model *m, float *x, const float *g,
		 const float *dout, int32_t n, double eps, double tol)
{
	size_t		in = nn_model_input_size(m) * (size_t) n;
	float	   *xt = nt_xmalloc(sizeof(float) * in);
	float	   *v = nt_xmalloc(sizeof(float) * in);
	float	   *pred = nt_xmalloc(sizeof(float) * nn_model_output_size(m) * n);
	double	   *ga = nt_xmalloc(sizeof(double) * in);
	double	   *gf = nt_xmalloc(sizeof(double) * in);
	double		da[8],
				df[8],
				atol;
	nn_rng		rng;

	for (size_t i = 0; i < in; i++)
	{
		ga[i] = g[i];
		gf[i] = fd_input(m, x, i, dout, pred, n, eps);
	}
	assert_true(max_abs(gf, in) > 0.0);
	atol = fmax(10 * tol * max_abs(gf, in), fd_noise(m, x, dout, pred, n, eps));
	if (!nt_close_d(label, ga, gf, in, atol, 10 * tol))
		fail_msg("%s: input gradient and central differences differ", label);
	nn_rng_seed(&rng, 7);
	for (int d = 0; d < 8; d++)
	{
		nt_fill(v, in, &rng, -1.0f, 1.0f);
		df[d] = fd_along(m, x, v, eps, dout, xt, pred, n);
		da[d] = 0.0;
		for (size_t i = 0; i < in; i++)
			da[d] += (double) g[i] * v[i];
	}
	if (!nt_close_d(label, da, df, 8, tol * max_abs(df, 8), tol))
		fail_msg("%s: directional derivatives differ", label);
	free(xt), free(v), free(pred), free(ga), free(gf);
}

/*
 * nn_model_input_gradient of n rows of x for a random dout against central
 * differences of nn_model_predict; its predictions must be
 * nn_model_predict's exactly and the model's bytes must not change.
 */
static void
check_input_gradient(const char *label, nn_model *m, const float *x0,
					 int32_t n, double eps, double tol)
{
	size_t		in = nn_model_input_size(m) * (size_t) n;
	size_t		k = nn_model_output_size(m) * (size_t) n;
	float	   *x = nt_xmalloc(sizeof(float) * in);
	float	   *dx = nt_xmalloc(sizeof(float) * in);
	float	   *dout = nt_xmalloc(sizeof(float) * k);
	float	   *out = nt_xmalloc(sizeof(float) * k);
	float	   *pred = nt_xmalloc(sizeof(float) * k);
	size_t		l0,
				l1;
	uint8_t    *b0,
			   *b1;
	nn_rng		rng;
	nn_error	err;

	memcpy(x, x0, sizeof(float) * in);
	nn_rng_seed(&rng, 99);
	nt_fill(dout, k, &rng, -1.0f, 1.0f);
	assert_ok(nn_model_prepare(m, n, true, 0, &err), &err);
	b0 = bytes_of(m, false, &l0);
	assert_ok(nn_model_input_gradient(m, dx, out, x, dout, n, &err), &err);
	b1 = bytes_of(m, false, &l1);
	assert_same_bytes(label, b0, l0, b1, l1);
	assert_ok(nn_model_predict(m, pred, x, n, &err), &err);
	assert_memory_equal(out, pred, sizeof(float) * k);
	check_fd(label, m, x, dx, dout, n, eps, tol);
	free(x), free(dx), free(dout), free(out), free(pred);
}

/* Rows in [lo, hi], values apart (no ties at the max pools). */
static float *
rows_of(size_t n, uint64_t seed, float lo, float hi)
{
	float	   *x = nt_xmalloc(sizeof(float) * n);
	nn_rng		rng;

	nn_rng_seed(&rng, seed);
	nt_fill_distinct(x, n, &rng, 0.0f, 1.0f);
	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * x[i] / (float) n;
	return x;
}

/* Dense layers with smooth activations, softmax output. */
static void
test_gradient_dense(void **state)
{
	nn_layer_spec l[] = {nt_dense(8, NN_ACT_TANH), nt_dense(6, NN_ACT_ELU),
	nt_dense(5, NN_ACT_SIGMOID), nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 6, 0, 0, 1);
	float	   *x = rows_of(6 * 3, 2, -1.0f, 1.0f);

	(void) state;
	check_input_gradient("dense", m, x, 3, 1e-2, 1e-3);
	free(x);
	nn_model_free(m);
}

/*
 * conv2d by im2col (3 channels) and by Winograd (3x3 over 8 channels), an
 * average pool, flatten; a linear output, whose gradients are large enough
 * against the rounding of float predictions.
 */
static void
test_gradient_conv(void **state)
{
	nn_layer_spec l[] = {
		nt_conv(8, 3, 3, 1, 1, true, NN_ACT_TANH),
		nt_conv(8, 3, 3, 1, 1, true, NN_ACT_SIGMOID),
		nt_conv(4, 2, 2, 2, 2, false, NN_ACT_ELU),
		nt_pool(NN_LAYER_AVGPOOL2D, 2, 2, 1, 1, true),
		nt_plain(NN_LAYER_FLATTEN), nt_dense(3, NN_ACT_LINEAR)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 3, 8, 8, 3, 3);
	float	   *x = rows_of(8 * 8 * 3 * 2, 4, -1.0f, 1.0f);

	(void) state;
	check_input_gradient("conv", m, x, 2, 1e-2, 1e-3);
	free(x);
	nn_model_free(m);
}

/*
 * Max pools (a window and global) on inputs 0.1 apart, five times the
 * steps, so that no maximum changes.
 */
static void
test_gradient_maxpool(void **state)
{
	nn_layer_spec l[] = {
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, true),
		nt_conv(3, 1, 1, 1, 1, false, NN_ACT_LINEAR),
		nt_plain(NN_LAYER_GLOBAL_MAXPOOL), nt_dense(2, NN_ACT_LINEAR)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 3, 5, 5, 2, 12);
	float	   *x = rows_of(5 * 5 * 2 * 2, 13, -5.0f, 5.0f);

	(void) state;
	check_input_gradient("max pools", m, x, 2, 2e-2, 1e-3);
	free(x);
	nn_model_free(m);
}

/*
 * The layers that differ between training and prediction: the
 * augmentation layers (identities, random_crop the centre window),
 * gaussian noise, batchnorm (moving statistics), dropout (identity).
 */
static void
test_gradient_inference_layers(void **state)
{
	nn_layer_spec l[] = {
		nt_random_flip(NN_FLIP_BOTH),
		nt_random_translation(-0.2f, 0.2f, -0.2f, 0.2f, NN_FILL_REFLECT, 0),
		nt_random_rotation(-0.1f, 0.1f, NN_FILL_NEAREST, 0),
		nt_random_zoom(-0.2f, 0.2f, NAN, NAN, NN_FILL_CONSTANT, 0.5f),
		nt_random_contrast(-0.3f, 0.3f),
		nt_random_brightness(-0.2f, 0.2f, NAN, NAN),
		nt_gaussian_noise(0.5f),
		nt_random_crop(5, 4),
		nt_conv(4, 3, 3, 1, 1, true, NN_ACT_TANH),
		nt_plain(NN_LAYER_BATCHNORM),
		nt_dropout(0.5f),
		nt_plain(NN_LAYER_GLOBAL_AVGPOOL),
		nt_dense(3, NN_ACT_LINEAR)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 3, 7, 6, 2, 5);
	float	   *x = rows_of(7 * 6 * 2 * 2, 6, 0.0f, 1.0f);

	(void) state;
	check_input_gradient("inference layers", m, x, 2, 1e-2, 1e-3);
	free(x);
	nn_model_free(m);
}

/* simple_rnn, lstm and gru, with and without sequences out. */
static void
test_gradient_recurrent(void **state)
{
	nn_layer_spec l[] = {
		nt_rnn(NN_LAYER_LSTM, 4, true), nt_rnn(NN_LAYER_GRU, 5, true),
		nt_rnn(NN_LAYER_SIMPLE_RNN, 3, false), nt_dense(2, NN_ACT_SIGMOID)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 2, 5, 3, 0, 7);
	float	   *x = rows_of(5 * 3 * 3, 8, -1.0f, 1.0f);

	(void) state;
	check_input_gradient("recurrent", m, x, 3, 1e-2, 1e-3);
	free(x);
	nn_model_free(m);
}

/* rescale, normalize, an activation layer, the global max pool, reshape. */
static void
test_gradient_preprocess(void **state)
{
	nn_layer_spec l[] = {
		nt_rescale(0.5f, 0.1f), nt_plain(NN_LAYER_NORMALIZE),
		nt_reshape2(4, 3), nt_act(NN_ACT_TANH),
		nt_plain(NN_LAYER_GLOBAL_MAXPOOL), nt_dense(2, NN_ACT_LINEAR)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 12, 0, 0, 9);
	float	   *x = rows_of(12 * 2, 10, -1.0f, 1.0f);

	(void) state;
	check_input_gradient("preprocess", m, x, 2, 1e-2, 1e-3);
	free(x);
	nn_model_free(m);
}

/* Token ids have a zero gradient; the model does not change. */
static void
test_gradient_tokens(void **state)
{
	nn_layer_spec l[] = {nt_embedding(10, 3), nt_rnn(NN_LAYER_GRU, 4, false),
	nt_dense(2, NN_ACT_SOFTMAX)};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 5, 0, 0, 11);
	float		x[10] = {1, 4, 9, 0, 2, 3, 3, 7, 8, 5};
	float		dout[4] = {1, -1, 0.5f, 2},
				dx[10],
				out[4],
				zero[10] = {0};
	nn_error	err;

	(void) state;
	assert_ok(nn_model_prepare(m, 2, true, 0, &err), &err);
	assert_ok(nn_model_input_gradient(m, dx, out, x, dout, 2, &err), &err);
	assert_memory_equal(dx, zero, sizeof(dx));
	nn_model_free(m);
}

/* ---------- exactness and completeness ---------- */

typedef struct explained
{
	float	   *attr;			/* (in_size) */
	float		f_x,
				f_b;
	int32_t		target;
	double		gap;			/* |sum attr - (f_x - f_b)| / |f_x - f_b| */
} explained;

/* Explain x from b at steps; the gap to completeness. */
static explained
explain(nn_model *m, const float *x, const float *b, int32_t target,
		int32_t steps)
{
	explained	e;
	size_t		in = nn_model_input_size(m);
	double		sum = 0.0;
	nn_error	err;

	e.attr = nt_xmalloc(sizeof(float) * in);
	assert_ok(nn_model_explain(m, e.attr, &e.f_x, &e.f_b, &e.target, x, b,
							   target, steps, 0, &err), &err);
	for (size_t i = 0; i < in; i++)
		sum += e.attr[i];
	e.gap = fabs(sum - ((double) e.f_x - e.f_b)) /
		fabs((double) e.f_x - e.f_b);
	return e;
}

/* F(v) of one output, by nn_model_predict. */
static float
predict_one(nn_model *m, const float *v, int32_t target)
{
	float	   *out = nt_xmalloc(sizeof(float) * nn_model_output_size(m));
	float		f;
	nn_error	err;

	assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, out, v, 1, &err), &err);
	f = out[target];
	free(out);
	return f;
}

/* The largest output of v. */
static int32_t
predicted(nn_model *m, const float *v)
{
	size_t		k = nn_model_output_size(m);
	float	   *out = nt_xmalloc(sizeof(float) * k);
	int32_t		best = 0;
	nn_error	err;

	assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, out, v, 1, &err), &err);
	for (size_t j = 1; j < k; j++)
		if (out[j] > out[best])
			best = (int32_t) j;
	free(out);
	return best;
}

/*
 * The predicted class explained at 64 steps: the explained output is
 * nn_model_predict's at x (and at b when b is a row of features, not
 * token ids with zero vectors for a baseline), and the gap is below 2%.
 */
static explained
check_complete(const char *label, nn_model *m, const float *x,
			   const float *b, bool b_predicts)
{
	explained	e = explain(m, x, b, -1, 64);
	float		zeros[1024] = {0};

	assert_true(nn_model_input_size(m) <= 1024);
	assert_int_equal(e.target, predicted(m, x));
	assert_scalar_close(label, e.f_x, predict_one(m, x, e.target), 1e-6, 1e-5);
	if (b_predicts)
		assert_scalar_close(label, e.f_b, predict_one(m, b ? b : zeros,
													  e.target), 1e-6, 1e-5);
	if (!(e.gap < 0.02))
		fail_msg("%s: attributions add up to %g of F(x) - F(b) = %g off (%.3g%%)",
				 label, e.gap, (double) e.f_x - e.f_b, 100 * e.gap);
	print_message("%s: F(x) %.4f F(b) %.4f, completeness gap %.3g%% at 64 steps\n",
				  label, e.f_x, e.f_b, 100 * e.gap);
	return e;
}

/* A single linear output: attribution_i = w_i (x_i - b_i), at any steps. */
static void
test_linear_exact(void **state)
{
	nn_layer_spec l[] = {nt_dense(3, NN_ACT_LINEAR)};
	nn_model   *m = make(l, 1, 1, 7, 0, 0, 21);
	const float *w = nn_model_params(m);	/* (7, 3) */
	float	   *x = rows_of(7, 22, -2.0f, 2.0f);
	float	   *b = rows_of(7, 23, -1.0f, 1.0f);
	int32_t		steps[3] = {2, 5, 64};

	(void) state;
	for (int s = 0; s < 3; s++)
		for (int t = 0; t < 3; t++)
			for (int withb = 0; withb < 2; withb++)
			{
				explained	e = explain(m, x, withb ? b : NULL, t, steps[s]);
				double		want[7];

				for (int i = 0; i < 7; i++)
					want[i] = (double) w[i * 3 + t] *
						((double) x[i] - (withb ? b[i] : 0.0));
				assert_int_equal(e.target, t);
				assert_close_fd("linear attributions", e.attr, want, 7,
								1e-6, 1e-5);
				assert_true(e.gap < 1e-5);
				free(e.attr);
			}
	free(x), free(b);
	nn_model_free(m);
}

/* A tanh MLP: within 2% at 64 steps, closer at 256, 16 times at least. */
static void
test_complete_mlp(void **state)
{
	nn_layer_spec l[] = {nt_dense(16, NN_ACT_TANH), nt_dense(8, NN_ACT_TANH),
	nt_dense(4, NN_ACT_SOFTMAX)};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 20, 0, 0, 31);
	float	   *x = rows_of(20, 32, -2.0f, 2.0f);
	explained	e64 = check_complete("mlp", m, x, NULL, true);
	explained	e256 = explain(m, x, NULL, -1, 256);
	explained	e16 = explain(m, x, NULL, -1, 16);

	(void) state;
	print_message("mlp: gap %.3g%% at 16 steps, %.3g%% at 64, %.3g%% at 256\n",
				  100 * e16.gap, 100 * e64.gap, 100 * e256.gap);
	assert_true(e64.gap < e16.gap);
	assert_true(e256.gap < e64.gap);
	assert_true(e256.gap < 0.001);
	free(x), free(e64.attr), free(e256.attr), free(e16.attr);
	nn_model_free(m);
}

/* The seed CNN: 784 -> conv32 -> pool -> conv64 -> pool -> conv64 -> dense. */
static void
test_complete_seed_cnn(void **state)
{
	nn_layer_spec l[] = {
		nt_reshape3(28, 28, 1),
		nt_conv(32, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, false),
		nt_conv(64, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, false),
		nt_conv(64, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_plain(NN_LAYER_FLATTEN), nt_dense(64, NN_ACT_RELU),
		nt_dense(10, NN_ACT_SOFTMAX)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 784, 0, 0, 41);
	float	   *x = rows_of(784, 42, 0.0f, 1.0f);
	explained	e;

	(void) state;
	scale_kernel(m, 8, 8.0f);
	e = check_complete("seed cnn", m, x, NULL, true);
	free(e.attr);
	free(x);
	nn_model_free(m);
}

/* Batchnorm, dropout, noise and augmentation: as they predict. */
static void
test_complete_inference_layers(void **state)
{
	nn_layer_spec l[] = {
		nt_random_flip(NN_FLIP_BOTH),
		nt_random_rotation(-0.2f, 0.2f, NN_FILL_REFLECT, 0),
		nt_random_crop(10, 10),
		nt_random_contrast(-0.5f, 0.5f),
		nt_gaussian_noise(1.0f),
		nt_conv(8, 3, 3, 1, 1, false, NN_ACT_TANH),
		nt_plain(NN_LAYER_BATCHNORM),
		nt_dropout(0.5f),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, false),
		nt_plain(NN_LAYER_FLATTEN),
		nt_dense(16, NN_ACT_TANH), nt_plain(NN_LAYER_BATCHNORM),
		nt_dropout(0.3f), nt_dense(4, NN_ACT_SOFTMAX)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 3, 12, 12, 2, 51);
	float	   *x = rows_of(12 * 12 * 2, 52, 0.0f, 1.0f);
	float	   *b = rows_of(12 * 12 * 2, 53, 0.0f, 0.3f);
	explained	e = check_complete("inference layers", m, x, b, true);

	(void) state;
	free(e.attr), free(x), free(b);
	nn_model_free(m);
}

/* lstm and gru models over sequences (T, F). */
static void
test_complete_recurrent(void **state)
{
	nn_layer_kind kinds[2] = {NN_LAYER_LSTM, NN_LAYER_GRU};

	(void) state;
	for (int i = 0; i < 2; i++)
	{
		nn_layer_spec l[] = {nt_reshape2(8, 3), nt_rnn(kinds[i], 12, true),
			nt_rnn(kinds[i], 8, false), nt_dense(3, NN_ACT_SOFTMAX)};
		nn_model   *m = make(l, NT_NLAYERS(l), 1, 24, 0, 0, 61 + i);
		float	   *x = rows_of(24, 63, -2.0f, 2.0f);
		float	   *b = rows_of(24, 64, -2.0f, 2.0f);
		explained	e;

		scale_kernel(m, 1, 2.0f);
		scale_kernel(m, 3, 10.0f);
		e = check_complete(i ? "gru" : "lstm", m, x, b, true);
		free(e.attr), free(x), free(b);
		nn_model_free(m);
	}
}

/*
 * Token ids, after layers that keep them: the path runs over the embedded
 * vectors (from zero vectors, or from a baseline's ids), one attribution
 * per token; tokens equal to the baseline's get none.
 */
static void
test_complete_tokens(void **state)
{
	nn_layer_spec l[] = {nt_rescale(1.0f, 1.0f), nt_reshape1(8),
		nt_embedding(12, 6), nt_rnn(NN_LAYER_LSTM, 8, false),
	nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 8, 0, 0, 71);
	float		x[8] = {3, 0, 7, 7, 10, 1, 5, 2};
	float		b[8] = {3, 4, 4, 7, 0, 0, 5, 9};
	explained	e;

	(void) state;
	scale_kernel(m, 2, 30.0f);	/* Keras's initial vectors are tiny */
	e = check_complete("tokens, zero vectors", m, x, NULL, false);
	free(e.attr);
	e = check_complete("tokens, baseline ids", m, x, b, true);
	assert_true(e.attr[0] == 0.0f && e.attr[3] == 0.0f && e.attr[6] == 0.0f);
	assert_true(e.attr[1] != 0.0f && e.attr[7] != 0.0f);
	free(e.attr);
	nn_model_free(m);
}

/* ---------- errors ---------- */

/* nn_model_explain's status for the arguments, attributions discarded. */
static nn_status
explain_status(nn_model *m, const float *x, const float *b, int32_t target,
			   int32_t steps, size_t max_bytes, nn_error *err)
{
	float		a[16],
				fx,
				fb;

	assert_true(nn_model_input_size(m) <= 16);
	return nn_model_explain(m, a, &fx, &fb, NULL, x, b, target, steps,
							max_bytes, err);
}

/* Each bad argument, and the model predicting as before each failure. */
static void
test_errors(void **state)
{
	nn_layer_spec l[] = {nt_dense(4, NN_ACT_TANH), nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 5, 0, 0, 81);
	nn_layer_spec tl[] = {nt_embedding(6, 2), nt_plain(NN_LAYER_FLATTEN),
	nt_dense(2, NN_ACT_SOFTMAX)};
	nn_model   *tm = make(tl, NT_NLAYERS(tl), 1, 3, 0, 0, 82);
	float		x[5] = {0.1f, -0.4f, 0.3f, 0.9f, -1.0f},
				b[5] = {0},
				before[3],
				after[3];
	float		ids[3] = {1, 2, 3},
				bad_ids[3] = {1, 6, 3};
	nn_error	err;

	(void) state;
	assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, before, x, 1, &err), &err);
	assert_status(explain_status(m, x, NULL, -1, 1, 0, &err), NN_ERR_SPEC,
				  &err);
	assert_string_equal(err.message, "steps must be at least 2, not 1");
	assert_status(explain_status(m, x, NULL, 3, 8, 0, &err), NN_ERR_SPEC, &err);
	assert_string_equal(err.message,
						"target 3 is out of range for a model of 3 outputs");
	assert_status(explain_status(m, x, NULL, -2, 8, 0, &err), NN_ERR_SPEC,
				  &err);
	x[2] = NAN;
	assert_status(explain_status(m, x, NULL, -1, 8, 0, &err), NN_ERR_DATA,
				  &err);
	assert_string_equal(err.message, "feature 3 is not a finite number: nan");
	x[2] = 0.3f;
	b[4] = -INFINITY;
	assert_status(explain_status(m, x, b, -1, 8, 0, &err), NN_ERR_DATA, &err);
	assert_string_equal(err.message,
						"baseline feature 5 is not a finite number: -inf");
	assert_status(explain_status(m, x, NULL, -1, 1000000, 1 << 20, &err),
				  NN_ERR_LIMIT, &err);
	assert_string_equal(err.message,
						"1000000 steps need more memory than the limit of 1048576 bytes");
	/* the path fits, the model's buffers for the steps do not */
	assert_status(explain_status(m, x, NULL, -1, 1000, 50000, &err),
				  NN_ERR_LIMIT, &err);
	assert_string_equal(err.message,
						"1000 steps need more memory than the limit of 50000 bytes");
	assert_ok(nn_model_predict(m, after, x, 1, &err), &err);
	assert_memory_equal(before, after, sizeof(before));
	assert_status(explain_status(tm, ids, bad_ids, -1, 8, 0, &err),
				  NN_ERR_DATA, &err);
	nn_model_free(m);
	nn_model_free(tm);
}

/* ---------- the model after an explanation ---------- */

/* A small image model with every kind of state that training changes. */
static nn_model *
twin(void)
{
	nn_layer_spec l[] = {
		nt_random_flip(NN_FLIP_HORIZONTAL), nt_gaussian_noise(0.1f),
		nt_conv(4, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_plain(NN_LAYER_BATCHNORM), nt_dropout(0.25f),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, false),
		nt_plain(NN_LAYER_FLATTEN), nt_dense(3, NN_ACT_SOFTMAX)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 3, 6, 6, 1, 91);
	nn_optimizer_spec o;
	nn_error	err;

	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.01f);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL,
									0, &err), &err);
	assert_ok(nn_model_prepare(m, 8, true, 0, &err), &err);
	return m;
}

/* Three training steps on 8 rows. */
static void
train3(nn_model *m, const float *x, const float *y)
{
	nn_rng		rng;
	nn_error	err;

	nn_rng_seed(&rng, 5);
	for (int s = 0; s < 3; s++)
	{
		double		loss = 0.0;
		int64_t		correct = 0;

		assert_ok(nn_model_train_batch(m, x, y, 8, &rng, &loss, &correct,
									   &err), &err);
	}
}

/*
 * An explanation changes nothing: the bytes (weights, statistics,
 * optimizer state) stay, the model stays prepared for training, and it
 * trains and predicts exactly as its twin that was never explained.
 */
static void
test_model_unchanged(void **state)
{
	nn_model   *a = twin(),
			   *b = twin();
	float	   *x = rows_of(36 * 8, 92, 0.0f, 1.0f);
	float		y[8] = {0, 1, 2, 0, 1, 2, 0, 1},
				pa[24],
				pb[24];
	size_t		l0,
				l1;
	uint8_t    *b0,
			   *b1;
	explained	e;
	nn_error	err;

	(void) state;
	train3(a, x, y);
	train3(b, x, y);
	b0 = bytes_of(a, true, &l0);
	e = explain(a, x, NULL, -1, 64);
	free(e.attr);
	e = explain(a, x + 36, x, 1, 3);
	free(e.attr);
	b1 = bytes_of(a, true, &l1);
	assert_same_bytes("explained", b0, l0, b1, l1);
	train3(a, x, y);
	train3(b, x, y);
	b0 = bytes_of(a, true, &l0);
	b1 = bytes_of(b, true, &l1);
	assert_same_bytes("trained after explaining", b0, l0, b1, l1);
	assert_ok(nn_model_predict(a, pa, x, 8, &err), &err);
	assert_ok(nn_model_predict(b, pb, x, 8, &err), &err);
	assert_memory_equal(pa, pb, sizeof(pa));
	nn_model_free(a);
	nn_model_free(b);
	free(x);
}

/* A model kept for prediction only (no gradient vector) explains too. */
static void
test_prediction_only(void **state)
{
	nn_model   *m = twin();
	float	   *x = rows_of(36, 93, 0.0f, 1.0f);
	explained	e1,
				e2;

	(void) state;
	e1 = explain(m, x, NULL, 2, 32);
	nn_model_release_training(m);
	e2 = explain(m, x, NULL, 2, 32);
	assert_memory_equal(e1.attr, e2.attr, sizeof(float) * 36);
	assert_true(e1.f_x == e2.f_x && e1.f_b == e2.f_b);
	free(e1.attr), free(e2.attr), free(x);
	nn_model_free(m);
}

/*
 * The seed CNN's attributions: the same in two runs on 2 threads, bit for
 * bit, and on 1 thread up to the order of sums.
 */
static void
test_threads(void **state)
{
	nn_layer_spec l[] = {
		nt_reshape3(28, 28, 1),
		nt_conv(32, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, false),
		nt_conv(64, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_plain(NN_LAYER_FLATTEN), nt_dense(10, NN_ACT_SOFTMAX)
	};
	nn_model   *m = make(l, NT_NLAYERS(l), 1, 784, 0, 0, 101);
	float	   *x = rows_of(784, 102, 0.0f, 1.0f);
	int			saved = nn_get_threads();
	explained	e1,
				e2a,
				e2b;

	(void) state;
	nn_set_threads(1);
	e1 = explain(m, x, NULL, 3, 64);
	nn_set_threads(2);
	e2a = explain(m, x, NULL, 3, 64);
	e2b = explain(m, x, NULL, 3, 64);
	nn_set_threads(saved);
	assert_memory_equal(e2a.attr, e2b.attr, sizeof(float) * 784);
	assert_close_f("2 threads vs 1", e2a.attr, e1.attr, 784, 1e-7, 1e-4);
	free(e1.attr), free(e2a.attr), free(e2b.attr), free(x);
	nn_model_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gradient_dense),
		cmocka_unit_test(test_gradient_conv),
		cmocka_unit_test(test_gradient_maxpool),
		cmocka_unit_test(test_gradient_inference_layers),
		cmocka_unit_test(test_gradient_recurrent),
		cmocka_unit_test(test_gradient_preprocess),
		cmocka_unit_test(test_gradient_tokens),
		cmocka_unit_test(test_linear_exact),
		cmocka_unit_test(test_complete_mlp),
		cmocka_unit_test(test_complete_seed_cnn),
		cmocka_unit_test(test_complete_inference_layers),
		cmocka_unit_test(test_complete_recurrent),
		cmocka_unit_test(test_complete_tokens),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_model_unchanged),
		cmocka_unit_test(test_prediction_only),
		cmocka_unit_test(test_threads),
	};

	return NT_RUN(tests);
}
