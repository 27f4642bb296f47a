/*
 * test_layers.c: central-difference gradient checks of every layer kind and
 * every activation, input gradients (dx_out of nn_model_compute_gradients)
 * and parameter gradients (nn_model_grads, perturbing nn_model_params).
 *
 * Each case builds a small model on awkward shapes (odd batches, batch 1,
 * non-square kernels, strides 2, 1x1 images), fills inputs and biases from
 * a fixed seed, and checks with nt_gradcheck: step 1e-3 relative, per
 * element |analytic - fd| <= 1e-3 + 1e-2 |fd| and the whole vector within
 * 2e-2 relative error in the 2-norm.  The loss is mse against random
 * targets unless a case says otherwise (losses have their own suite).
 *
 * Kinks: relu-like inputs and max-pooling windows are kept away from their
 * kinks, and the margin is asserted (nt_kink_margin) before checking, with
 * the seed searched deterministically when a draw lands too close.
 */
#include <math.h>

#include "nn_test.h"

/*
 * Margin to kinks: a step of 1e-3 on one input or weight (all below ~1 in
 * magnitude) moves any pre-activation by at most ~1e-3, and a pooling gap
 * by twice that.
 */
#define KINK_MARGIN 0.004

typedef struct gc_case
{
	const char *label;
	nn_layer_spec *layers;
	int32_t		n_layers;
	int32_t		rank,
				d0,
				d1,
				d2;
	int32_t		batch;
	nn_loss_kind loss;
	float		xlo,
				xhi;
	bool		check_kinks;	/* search seeds until the kink margin holds */
	bool		distinct_x;		/* inputs without ties (max pooling first) */
	bool		away0;			/* inputs away from 0 (relu-like first) */
	nt_fd_opts	fd;
} gc_case;

/* A gradient-check case with mse loss and inputs in [-1, 1]. */
static gc_case
mk(const char *label, nn_layer_spec *layers, int32_t n, int32_t rank,
   int32_t d0, int32_t d1, int32_t d2, int32_t batch)
{
	gc_case		c;

	memset(&c, 0, sizeof(c));
	c.label = label;
	c.layers = layers;
	c.n_layers = n;
	c.rank = rank;
	c.d0 = d0;
	c.d1 = d1;
	c.d2 = d2;
	c.batch = batch;
	c.loss = NN_LOSS_MSE;
	c.xlo = -1.0f;
	c.xhi = 1.0f;
	c.fd = nt_fd_default();
	return c;
}

/* Targets for the case's loss: values, one-hot rows or class indices. */
static float *
make_targets(const gc_case *c, size_t out, nn_rng *rng)
{
	size_t		n = (size_t) c->batch * out;
	float	   *y = nt_xmalloc(sizeof(float) * n);

	if (c->loss == NN_LOSS_SPARSE_CATEGORICAL_CE)
		for (int32_t r = 0; r < c->batch; r++)
			y[r] = (float) nn_rng_below(rng, out);
	else if (c->loss == NN_LOSS_CATEGORICAL_CE)
	{
		int		   *cls = nt_xmalloc(sizeof(int) * c->batch);

		for (int32_t r = 0; r < c->batch; r++)
			cls[r] = (int) nn_rng_below(rng, out);
		nt_one_hot(y, cls, c->batch, (int32_t) out);
		free(cls);
	}
	else if (c->loss == NN_LOSS_BINARY_CE)
		for (size_t i = 0; i < n; i++)
			y[i] = (float) nn_rng_below(rng, 2);
	else
		nt_fill(y, n, rng, -1.0f, 1.0f);
	return y;
}

/* Random non-zero biases, so a forward that drops them is caught. */
static void
randomize_biases(nn_model *m, nn_rng *rng)
{
	for (int i = 0; i < nn_model_get_spec(m)->n_layers; i++)
	{
		int64_t		ko,
					kl,
					bo,
					bl;

		nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
		if (bl > 0)
			nt_fill(nn_model_params(m) + bo, (size_t) bl, rng, -0.2f, 0.2f);
	}
}

/* Build, fill and check one case; returns the values checked. */
static size_t
run_case(const gc_case *c)
{
	nn_model_spec spec = nt_spec(c->rank, c->d0, c->d1, c->d2, c->layers,
								 c->n_layers);
	size_t		checked = 0;

	for (uint64_t seed = 1; seed <= 300; seed++)
	{
		nn_model   *m = nt_create(&spec, seed);
		size_t		in = nn_model_input_size(m);
		size_t		out = nn_model_output_size(m);
		float	   *x = nt_xmalloc(sizeof(float) * in * c->batch);
		float	   *y;
		nn_rng		rng;
		nn_error	err;

		nn_rng_seed(&rng, seed * 7919);
		if (c->distinct_x)
			nt_fill_distinct(x, in * c->batch, &rng, -0.8f,
							 1.6f / (float) (in * c->batch));
		else if (c->away0)
			nt_fill_away0(x, in * c->batch, &rng, c->xlo, c->xhi, 0.05f);
		else
			nt_fill(x, in * c->batch, &rng, c->xlo, c->xhi);
		randomize_biases(m, &rng);
		y = make_targets(c, out, &rng);
		if (c->check_kinks)
		{
			assert_ok(nn_model_prepare(m, c->batch, false, 0, &err), &err);
			if (getenv("NT_DEBUG_MARGIN"))
				print_message("%s seed %llu margin %g\n", c->label,
							  (unsigned long long) seed,
							  nt_kink_margin(m, x, c->batch));
			if (nt_kink_margin(m, x, c->batch) < KINK_MARGIN)
			{
				nn_model_free(m);
				free(x);
				free(y);
				continue;
			}
		}
		nt_train_setup(m, c->loss, NULL, 0, c->batch);
		checked = nt_gradcheck(c->label, m, x, y, c->batch, &c->fd);
		nn_model_free(m);
		free(x);
		free(y);
		assert_true(checked > 0);
		return checked;
	}
	fail_msg("%s: no seed in 1..300 keeps the inputs %g away from kinks",
			 c->label, KINK_MARGIN);
	return 0;
}

/* ---------- the checker itself ---------- */

/* nt_close reports mismatches and passes equal vectors. */
static void
test_compare_detects_mismatch(void **state)
{
	double		a[4] = {1.0, 2.0, 3.0, 4.0};
	double		b[4] = {1.0, 2.0, 3.03, 4.0};
	double		nanv[1] = {NAN};

	(void) state;
	nt_quiet = true;
	assert_true(nt_close_d("same", a, a, 4, 0.0, 0.0));
	assert_false(nt_close_d("3.03 vs 3", b, a, 4, 1e-3, 1e-3));
	assert_true(nt_close_d("3.03 vs 3 loose", b, a, 4, 1e-3, 1e-2));
	assert_false(nt_close_d("nan", nanv, a, 1, 1.0, 1.0));
	nt_quiet = false;
}

/*
 * The central differences themselves against the closed form of a linear
 * dense layer under mse: dL/dW[i][u] = 2/(U n) sum_r (y_ru - t_ru) x_ri.
 */
static void
test_fd_matches_closed_form(void **state)
{
	nn_layer_spec layers[] = {nt_dense(3, NN_ACT_LINEAR)};
	nn_model_spec spec = nt_spec(1, 4, 0, 0, layers, 1);
	nn_model   *m = nt_create(&spec, 3);
	float		x[2 * 4],
				t[2 * 3],
				y[2 * 3];
	double		closed[4 * 3 + 3];
	nn_rng		rng;
	nn_error	err;
	const float *g;

	(void) state;
	nn_rng_seed(&rng, 99);
	nt_fill(x, 8, &rng, -1, 1);
	nt_fill(t, 6, &rng, -1, 1);
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, 2);
	assert_ok(nn_model_predict(m, y, x, 2, &err), &err);
	memset(closed, 0, sizeof(closed));
	for (int r = 0; r < 2; r++)
		for (int u = 0; u < 3; u++)
		{
			double		d = 2.0 * ((double) y[r * 3 + u] - t[r * 3 + u]) / (3 * 2);

			for (int i = 0; i < 4; i++)
				closed[i * 3 + u] += d * x[r * 4 + i];
			closed[12 + u] += d;
		}
	nt_gradcheck("dense closed form (fd vs analytic)", m, x, t, 2,
				 &(nt_fd_opts) {1e-3, 1e-4, 1e-3, true, false, 1});
	/* the checker leaves the gradients of its last evaluation: recompute */
	(void) nt_train_loss(m, x, t, 2, 1);
	g = nn_model_grads(m);
	assert_close_fd("dense closed form (analytic vs math)", g, closed, 15,
					1e-6, 1e-5);
	nn_model_free(m);
}

/* ---------- dense ---------- */

static void
test_dense_bias_batch3(void **state)
{
	nn_layer_spec l[] = {nt_dense(4, NN_ACT_LINEAR)};
	gc_case		c = mk("dense 5->4 bias, batch 3", l, 1, 1, 5, 0, 0, 3);

	(void) state;
	run_case(&c);
}

static void
test_dense_nobias_deep(void **state)
{
	nn_layer_spec l[] = {nt_dense_nobias(4, NN_ACT_TANH),
	nt_dense_nobias(3, NN_ACT_SIGMOID), nt_dense(2, NN_ACT_LINEAR)};
	gc_case		c = mk("dense no bias, 3 layers, batch 5", l, 3, 1, 6, 0, 0, 5);

	(void) state;
	run_case(&c);
}

static void
test_dense_batch1_unit1(void **state)
{
	nn_layer_spec l[] = {nt_dense(1, NN_ACT_LINEAR)};
	gc_case		c = mk("dense 3->1, batch 1", l, 1, 1, 3, 0, 0, 1);

	(void) state;
	run_case(&c);
}

/* ---------- conv2d ---------- */

static void
test_conv_valid(void **state)
{
	nn_layer_spec l[] = {nt_conv(3, 3, 3, 1, 1, false, NN_ACT_TANH),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR)};
	gc_case		c = mk("conv2d 3x3 valid on 6x5x2, batch 2", l, 3, 3, 6, 5, 2, 2);

	(void) state;
	run_case(&c);
}

static void
test_conv_same(void **state)
{
	nn_layer_spec l[] = {nt_conv(2, 3, 3, 1, 1, true, NN_ACT_LINEAR)};
	gc_case		c = mk("conv2d 3x3 same on 5x4x3, batch 3", l, 1, 3, 5, 4, 3, 3);

	(void) state;
	run_case(&c);
}

static void
test_conv_same_stride2_nonsquare(void **state)
{
	nn_layer_spec l[] = {nt_conv(3, 3, 2, 2, 2, true, NN_ACT_SIGMOID)};
	gc_case		c = mk("conv2d 3x2 same stride 2 on 7x6x2, batch 3", l, 1, 3, 7,
					   6, 2, 3);

	(void) state;
	run_case(&c);
}

static void
test_conv_valid_stride2_nonsquare(void **state)
{
	nn_layer_spec l[] = {nt_conv(2, 2, 3, 2, 2, false, NN_ACT_LINEAR)};
	gc_case		c = mk("conv2d 2x3 valid stride 2 on 7x8x1, batch 1", l, 1, 3, 7,
					   8, 1, 1);

	(void) state;
	run_case(&c);
}

static void
test_conv_strides_1x3_same(void **state)
{
	nn_layer_spec l[] = {nt_conv(2, 4, 1, 1, 3, true, NN_ACT_TANH)};
	gc_case		c = mk("conv2d 4x1 same strides (1,3) on 5x7x2, batch 2", l, 1, 3,
					   5, 7, 2, 2);

	(void) state;
	run_case(&c);
}

static void
test_conv_1x1_image(void **state)
{
	nn_layer_spec a[] = {nt_conv(4, 1, 1, 1, 1, false, NN_ACT_LINEAR)};
	nn_layer_spec b[] = {nt_conv(2, 3, 3, 2, 2, true, NN_ACT_TANH)};
	gc_case		ca = mk("conv2d 1x1 kernel on a 1x1x3 image, batch 3", a, 1, 3,
						1, 1, 3, 3);
	gc_case		cb = mk("conv2d 3x3 same stride 2 on a 1x1x3 image, batch 2", b,
						1, 3, 1, 1, 3, 2);

	(void) state;
	run_case(&ca);
	run_case(&cb);
}

static void
test_conv_nobias_kernel_equals_input(void **state)
{
	nn_layer_spec l[] = {nt_conv(3, 3, 4, 1, 1, false, NN_ACT_LINEAR)};
	gc_case		c;

	l[0].use_bias = false;
	c = mk("conv2d no bias, kernel 3x4 = input 3x4x2, batch 3", l, 1, 3, 3, 4,
		   2, 3);
	(void) state;
	run_case(&c);
}

/* ---------- pooling ---------- */

static void
test_maxpool_valid(void **state)
{
	nn_layer_spec l[] = {nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(3, NN_ACT_LINEAR)};
	gc_case		c = mk("maxpool2d 2x2 valid on 5x4x2 (odd rows), batch 3", l, 3,
					   3, 5, 4, 2, 3);

	(void) state;
	c.distinct_x = true;
	c.check_kinks = true;
	run_case(&c);
}

static void
test_maxpool_same_stride2(void **state)
{
	nn_layer_spec l[] = {nt_pool(NN_LAYER_MAXPOOL2D, 3, 3, 2, 2, true),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR)};
	gc_case		c = mk("maxpool2d 3x3 same stride 2 on 5x7x2, batch 2", l, 3, 3,
					   5, 7, 2, 2);

	(void) state;
	c.distinct_x = true;
	c.check_kinks = true;
	run_case(&c);
}

static void
test_maxpool_overlap_nonsquare(void **state)
{
	nn_layer_spec l[] = {nt_pool(NN_LAYER_MAXPOOL2D, 3, 2, 2, 1, false),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR)};
	gc_case		c = mk("maxpool2d 3x2 valid strides (2,1) on 7x4x1, batch 1", l,
					   3, 3, 7, 4, 1, 1);

	(void) state;
	c.distinct_x = true;
	c.check_kinks = true;
	run_case(&c);
}

static void
test_conv_maxpool(void **state)
{
	nn_layer_spec l[] = {nt_conv(3, 3, 3, 1, 1, true, NN_ACT_LINEAR),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, true),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR)};
	gc_case		c = mk("conv2d same -> maxpool2d 2x2 same on 5x5x2, batch 2", l,
					   4, 3, 5, 5, 2, 2);

	(void) state;
	c.check_kinks = true;
	run_case(&c);
}

static void
test_avgpool_valid(void **state)
{
	nn_layer_spec l[] = {nt_pool(NN_LAYER_AVGPOOL2D, 2, 2, 0, 0, false),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(3, NN_ACT_LINEAR)};
	gc_case		c = mk("avgpool2d 2x2 valid on 5x4x2, batch 3", l, 3, 3, 5, 4, 2,
					   3);

	(void) state;
	run_case(&c);
}

static void
test_avgpool_same_stride2(void **state)
{
	nn_layer_spec l[] = {nt_pool(NN_LAYER_AVGPOOL2D, 3, 3, 2, 2, true)};
	gc_case		c = mk("avgpool2d 3x3 same stride 2 on 5x6x3, batch 2", l, 1, 3,
					   5, 6, 3, 2);

	(void) state;
	run_case(&c);
}

static void
test_avgpool_nonsquare_same(void **state)
{
	nn_layer_spec l[] = {nt_conv(2, 1, 1, 1, 1, false, NN_ACT_LINEAR),
	nt_pool(NN_LAYER_AVGPOOL2D, 2, 3, 1, 2, true)};
	gc_case		c = mk("conv 1x1 -> avgpool2d 2x3 same strides (1,2) on 4x5x2, batch 3",
					   l, 2, 3, 4, 5, 2, 3);

	(void) state;
	run_case(&c);
}

/* ---------- shape layers, dropout, rescale, normalize ---------- */

static void
test_reshape_flatten(void **state)
{
	nn_layer_spec l[] = {nt_reshape3(3, 5, 2),
		nt_conv(2, 2, 2, 1, 1, false, NN_ACT_TANH),
		nt_plain(NN_LAYER_FLATTEN), nt_reshape1(16),
	nt_dense(3, NN_ACT_LINEAR)};
	gc_case		c = mk("reshape 30 -> 3x5x2 -> conv -> flatten -> reshape -> dense",
					   l, 5, 1, 30, 0, 0, 3);

	(void) state;
	run_case(&c);
}

static void
test_dropout_fixed_rng(void **state)
{
	nn_layer_spec l[] = {nt_dense(6, NN_ACT_TANH), nt_dropout(0.4f),
	nt_dense(3, NN_ACT_LINEAR)};
	gc_case		c = mk("dense -> dropout 0.4 -> dense, batch 3 (fixed mask)", l, 3,
					   1, 5, 0, 0, 3);
	nn_model_spec spec = nt_spec(1, 5, 0, 0, l, 3);
	nn_model   *m = nt_create(&spec, 5);
	float		x[3 * 5],
				y[3 * 3];
	double		l1,
				l2,
				l3;
	nn_rng		rng;
	nn_error	err;

	(void) state;
	run_case(&c);

	/* the mask matters: another seed gives another loss, inference none */
	nn_rng_seed(&rng, 8);
	nt_fill(x, 15, &rng, -1, 1);
	nt_fill(y, 9, &rng, -1, 1);
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, 3);
	l1 = nt_train_loss(m, x, y, 3, 100);
	l2 = nt_train_loss(m, x, y, 3, 100);
	l3 = nt_train_loss(m, x, y, 3, 101);
	assert_true(l1 == l2);
	assert_true(l1 != l3);
	{
		double		ev = 0.0;
		int64_t		corr = 0;

		assert_ok(nn_model_evaluate_batch(m, NULL, x, y, 3, NN_LOSS_MSE, NULL, 0,
										  &ev, &corr, &err), &err);
		assert_true(ev / 3 != l1);
	}
	nn_model_free(m);
}

static void
test_dropout_rate0_is_identity(void **state)
{
	nn_layer_spec l[] = {nt_dropout(0.0f), nt_dense(3, NN_ACT_LINEAR)};
	gc_case		c = mk("dropout 0 first, then dense, batch 2", l, 2, 1, 4, 0, 0, 2);

	(void) state;
	run_case(&c);
}

/* ---------- augmentation layers (random in training, rng fixed) ---------- */

/*
 * Each augmentation layer first on a (5, 4, 2) image, then flatten and a
 * tanh dense layer: for the parameters one seed draws, the layer is linear
 * in x (piecewise, for brightness's clip), so central differences are exact
 * up to rounding and check the backward of exactly what forward drew.  The
 * same seed for every evaluation (nt_fd_opts.rng_seed) fixes the draws.
 */
static void
run_augment(const char *label, nn_layer_spec aug, int32_t batch, float xlo,
			float xhi)
{
	nn_layer_spec l[] = {aug, nt_plain(NN_LAYER_FLATTEN),
	nt_dense(3, NN_ACT_TANH)};
	gc_case		c = mk(label, l, 3, 3, 5, 4, 2, batch);

	c.xlo = xlo;
	c.xhi = xhi;
	run_case(&c);
}

static void
test_random_flip(void **state)
{
	(void) state;
	run_augment("random_flip horizontal, batch 5", nt_random_flip(NN_FLIP_HORIZONTAL),
				5, -1, 1);
	run_augment("random_flip vertical, batch 5", nt_random_flip(NN_FLIP_VERTICAL),
				5, -1, 1);
	run_augment("random_flip horizontal_and_vertical, batch 6",
				nt_random_flip(NN_FLIP_BOTH), 6, -1, 1);
}

/* Every fill mode; shifts of up to about two pixels either way. */
static void
test_random_translation(void **state)
{
	static const char *const names[] = {"reflect", "wrap", "constant", "nearest"};

	(void) state;
	for (int f = NN_FILL_REFLECT; f <= NN_FILL_NEAREST; f++)
	{
		char		label[96];

		snprintf(label, sizeof(label), "random_translation %s, batch 4", names[f]);
		run_augment(label, nt_random_translation(-0.5f, 0.3f, -0.4f, 0.6f,
												 (nn_fill_mode) f, 0.25f),
					4, -1, 1);
	}
	/* beyond the image: reflections and wraps more than one period away */
	run_augment("random_translation reflect, whole height", nt_random_translation(-1, 1, -1, 1, NN_FILL_REFLECT, 0),
				4, -1, 1);
	run_augment("random_translation wrap, whole width", nt_random_translation(0.9f, 1, -1, -0.9f, NN_FILL_WRAP, 0),
				4, -1, 1);
}

static void
test_random_rotation(void **state)
{
	static const char *const names[] = {"reflect", "wrap", "constant", "nearest"};

	(void) state;
	for (int f = NN_FILL_REFLECT; f <= NN_FILL_NEAREST; f++)
	{
		char		label[96];

		snprintf(label, sizeof(label), "random_rotation %s, batch 4", names[f]);
		run_augment(label, nt_random_rotation(-0.3f, 0.4f, (nn_fill_mode) f, -0.5f),
					4, -1, 1);
	}
}

/* Zooms in and out, one draw for both axes or one each. */
static void
test_random_zoom(void **state)
{
	(void) state;
	run_augment("random_zoom, width follows height, batch 4",
				nt_random_zoom(-0.4f, 0.6f, NAN, NAN, NN_FILL_REFLECT, 0), 4, -1, 1);
	run_augment("random_zoom, own width, constant, batch 4",
				nt_random_zoom(-0.5f, 0.2f, 0.1f, 2.0f, NN_FILL_CONSTANT, 0.3f), 4, -1, 1);
	run_augment("random_zoom, own width, wrap, batch 3",
				nt_random_zoom(0.5f, 3.0f, -0.7f, -0.2f, NN_FILL_WRAP, 0), 3, -1, 1);
}

/* Random windows when training: the gradient lands in the window only. */
static void
test_random_crop(void **state)
{
	(void) state;
	run_augment("random_crop 3x2 of 5x4, batch 5", nt_random_crop(3, 2), 5, -1, 1);
	run_augment("random_crop 5x1 of 5x4, batch 3", nt_random_crop(5, 1), 3, -1, 1);
}

static void
test_random_contrast(void **state)
{
	(void) state;
	run_augment("random_contrast 0.5, batch 4", nt_random_contrast(-0.5f, 0.5f),
				4, -1, 1);
	run_augment("random_contrast [0.2, 1], batch 3", nt_random_contrast(0.2f, 1.0f),
				3, 0, 1);
}

/*
 * The shift of [0.25, 0.25] is 0.25 for every row, so the clip points are
 * known: inputs in [-0.5, 1] are clipped below -0.25 and above 0.75, and
 * the seeds used keep every input more than a step away from both.  A
 * random shift over a value range without clipping checks the draws.
 */
static void
test_random_brightness(void **state)
{
	(void) state;
	run_augment("random_brightness 0.25 over [0, 1], clipping, batch 4",
				nt_random_brightness(0.25f, 0.25f, NAN, NAN), 4, -0.5f, 1.0f);
	run_augment("random_brightness [-0.5, 0.5] over [-10, 10], batch 4",
				nt_random_brightness(-0.5f, 0.5f, -10.0f, 10.0f), 4, -1, 1);
}

static void
test_gaussian_noise(void **state)
{
	nn_layer_spec l[] = {nt_dense(4, NN_ACT_TANH), nt_gaussian_noise(0.5f),
	nt_dense(3, NN_ACT_TANH)};
	gc_case		c = mk("dense -> gaussian_noise 0.5 -> dense, batch 3", l, 3,
					   1, 5, 0, 0, 3);

	(void) state;
	run_augment("gaussian_noise 0.3 on an image, batch 4", nt_gaussian_noise(0.3f),
				4, -1, 1);
	run_case(&c);
}

/* The augmentation of the seed CNN in front of a convolution. */
static void
test_augment_chain(void **state)
{
	nn_layer_spec l[] = {nt_random_flip(NN_FLIP_HORIZONTAL),
		nt_random_translation(-0.1f, 0.1f, -0.1f, 0.1f, NN_FILL_REFLECT, 0),
		nt_random_rotation(-0.05f, 0.05f, NN_FILL_REFLECT, 0),
		nt_conv(2, 3, 3, 1, 1, false, NN_ACT_TANH),
		nt_plain(NN_LAYER_FLATTEN),
	nt_dense(3, NN_ACT_LINEAR)};
	gc_case		c = mk("flip -> translation 0.1 -> rotation 0.05 -> conv2d, batch 4",
					   l, 6, 3, 7, 6, 1, 4);

	(void) state;
	run_case(&c);
}

static void
test_rescale(void **state)
{
	nn_layer_spec l[] = {nt_rescale(0.5f, 0.25f), nt_dense(3, NN_ACT_TANH),
	nt_rescale(-2.0f, 1.0f)};
	gc_case		c = mk("rescale -> dense -> rescale, batch 3", l, 3, 1, 4, 0, 0, 3);

	(void) state;
	run_case(&c);
}

/* Normalize after adaptation: per channel on images, per feature on vectors. */
static void
check_normalize(const char *label, nn_layer_spec *l, int32_t nl, int32_t rank,
				int32_t d0, int32_t d1, int32_t d2)
{
	nn_model_spec spec = nt_spec(rank, d0, d1, d2, l, nl);
	nn_model   *m = nt_create(&spec, 17);
	size_t		in = nn_model_input_size(m);
	size_t		out = nn_model_output_size(m);
	float	   *data = nt_xmalloc(sizeof(float) * in * 20);
	float	   *y = nt_xmalloc(sizeof(float) * out * 3);
	nn_rng		rng;
	nn_error	err;
	nt_fd_opts	o = nt_fd_default();

	nn_rng_seed(&rng, 4);
	/* scaled, shifted data so the statistics are far from (0, 1) */
	nt_fill(data, in * 20, &rng, -1, 1);
	for (size_t i = 0; i < in * 20; i++)
		data[i] = 3.0f * data[i] + 2.0f;
	assert_true(nn_model_needs_adapt(m));
	assert_ok(nn_model_prepare(m, 10, false, 0, &err), &err);
	assert_ok(nn_model_adapt_batch(m, data, 10, &err), &err);
	assert_ok(nn_model_adapt_batch(m, data + in * 10, 10, &err), &err);
	assert_ok(nn_model_adapt_finish(m, &err), &err);
	assert_false(nn_model_needs_adapt(m));
	nt_fill(y, out * 3, &rng, -1, 1);
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, 3);
	nt_gradcheck(label, m, data, y, 3, &o);
	nn_model_free(m);
	free(data);
	free(y);
}

/* Normalize layers after adaptation, per channel and per feature. */
static void
test_normalize_adapted(void **state)
{
	nn_layer_spec a[] = {nt_plain(NN_LAYER_NORMALIZE),
		nt_conv(2, 2, 2, 1, 1, false, NN_ACT_TANH),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR)};
	nn_layer_spec b[] = {nt_plain(NN_LAYER_NORMALIZE),
	nt_dense(3, NN_ACT_LINEAR)};

	(void) state;
	check_normalize("normalize (per channel) on 4x3x2 -> conv -> dense", a, 4, 3,
					4, 3, 2);
	check_normalize("normalize (per feature) on 5 -> dense", b, 2, 1, 5, 0, 0);
}

/* ---------- activations ---------- */

static const nn_activation all_acts[] = {
	NN_ACT_LINEAR, NN_ACT_RELU, NN_ACT_LEAKY_RELU, NN_ACT_ELU, NN_ACT_SIGMOID,
	NN_ACT_TANH, NN_ACT_SOFTMAX
};

/* Activation layer straight on the input: input gradients only. */
static void
test_activation_layer_each(void **state)
{
	(void) state;
	for (size_t i = 0; i < sizeof(all_acts) / sizeof(all_acts[0]); i++)
	{
		nn_layer_spec l[] = {nt_act(all_acts[i])};
		char		label[80];
		gc_case		c;

		snprintf(label, sizeof(label), "activation layer %s on 6 features, batch 3",
				 nn_activation_name(all_acts[i]));
		c = mk(label, l, 1, 1, 6, 0, 0, 3);
		c.away0 = true;
		c.xlo = -2.0f;
		c.xhi = 2.0f;
		run_case(&c);
	}
}

/* The same activation inside a dense layer: parameter gradients too. */
static void
test_dense_activation_each(void **state)
{
	(void) state;
	for (size_t i = 0; i < sizeof(all_acts) / sizeof(all_acts[0]); i++)
	{
		nn_layer_spec l[] = {nt_dense(4, all_acts[i]), nt_dense(2, NN_ACT_LINEAR)};
		char		label[80];
		gc_case		c;

		snprintf(label, sizeof(label), "dense %s -> dense, batch 3",
				 nn_activation_name(all_acts[i]));
		c = mk(label, l, 2, 1, 5, 0, 0, 3);
		c.check_kinks = true;
		run_case(&c);
	}
}

/* Non-default slopes: leaky_relu alpha 0.1, elu alpha 0.5 (C0 kink at 0). */
static void
test_activation_alpha(void **state)
{
	nn_layer_spec a[] = {nt_dense(4, NN_ACT_LEAKY_RELU), nt_dense(2, NN_ACT_LINEAR)};
	nn_layer_spec b[] = {nt_dense(4, NN_ACT_ELU), nt_dense(2, NN_ACT_LINEAR)};
	gc_case		ca,
				cb;

	(void) state;
	a[0].alpha = 0.1f;
	b[0].alpha = 0.5f;
	ca = mk("dense leaky_relu alpha 0.1", a, 2, 1, 5, 0, 0, 3);
	cb = mk("dense elu alpha 0.5", b, 2, 1, 5, 0, 0, 3);
	ca.check_kinks = cb.check_kinks = true;
	run_case(&ca);
	run_case(&cb);
}

/* Softmax over the channel axis of a conv2d output. */
static void
test_conv_softmax_channels(void **state)
{
	nn_layer_spec l[] = {nt_conv(3, 2, 2, 1, 1, false, NN_ACT_SOFTMAX)};
	gc_case		c = mk("conv2d softmax over channels on 3x3x2, batch 2", l, 1, 3,
					   3, 3, 2, 2);

	(void) state;
	run_case(&c);
}

/* ---------- a small CNN with relu and max pooling, softmax + sparse CE ---------- */

/* A small relu CNN under sparse categorical cross-entropy. */
static void
test_small_cnn(void **state)
{
	nn_layer_spec l[] = {nt_reshape3(6, 7, 1),
		nt_conv(2, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false),
		nt_conv(2, 2, 2, 1, 1, true, NN_ACT_RELU),
		nt_plain(NN_LAYER_FLATTEN),
		nt_dense(4, NN_ACT_RELU),
	nt_dense(3, NN_ACT_SOFTMAX)};
	gc_case		c = mk("small CNN (conv relu, maxpool, conv same relu, dense relu, softmax), batch 2",
					   l, 7, 1, 42, 0, 0, 2);

	(void) state;
	c.loss = NN_LOSS_SPARSE_CATEGORICAL_CE;
	c.check_kinks = true;
	run_case(&c);
}

/* ---------- penalties ---------- */

/* Weights pushed away from 0, where the l1 penalty has its kink. */
static void
push_weights_from_zero(nn_model *m)
{
	float	   *p = nn_model_params(m);

	for (int64_t i = 0; i < nt_flat_params(m); i++)
		if (fabsf(p[i]) < 0.02f)
			p[i] = p[i] < 0 ? -0.02f - p[i] : 0.02f + p[i];
}

/* Gradient check and loss difference of a model with l1/l2 penalties. */
static void
check_penalty(const char *label, nn_layer_spec *l, int32_t nl, int32_t rank,
			  int32_t d0, int32_t d1, int32_t d2)
{
	nn_model_spec spec = nt_spec(rank, d0, d1, d2, l, nl);
	nn_model_spec plain_spec;
	nn_layer_spec *pl = nt_xmalloc(sizeof(nn_layer_spec) * nl);
	nn_model   *m = nt_create(&spec, 21);
	nn_model   *p;
	size_t		in = nn_model_input_size(m);
	size_t		out = nn_model_output_size(m);
	float	   *x = nt_xmalloc(sizeof(float) * in * 3);
	float	   *y = nt_xmalloc(sizeof(float) * out * 3);
	nt_fd_opts	o = nt_fd_default();
	nn_rng		rng;
	double		pen = 0.0,
				lp,
				l0;
	const float *w = nn_model_params(m);

	nn_rng_seed(&rng, 6);
	nt_fill(x, in * 3, &rng, -1, 1);
	nt_fill(y, out * 3, &rng, -1, 1);
	push_weights_from_zero(m);
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, 3);
	nt_gradcheck(label, m, x, y, 3, &o);

	/* the loss includes l1 sum|w| + l2 sum w^2 of each kernel */
	for (int i = 0; i < nl; i++)
	{
		int64_t		ko,
					kl,
					bo,
					bl;

		nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
		for (int64_t j = 0; j < kl; j++)
			pen += l[i].l1 * fabs((double) w[ko + j]) +
				l[i].l2 * (double) w[ko + j] * w[ko + j];
	}
	memcpy(pl, l, sizeof(nn_layer_spec) * nl);
	for (int i = 0; i < nl; i++)
		pl[i].l1 = pl[i].l2 = 0.0f;
	plain_spec = nt_spec(rank, d0, d1, d2, pl, nl);
	p = nt_create(&plain_spec, 21);
	memcpy(nn_model_params(p), w, sizeof(float) * nt_flat_params(m));
	nt_train_setup(p, NN_LOSS_MSE, NULL, 0, 3);
	lp = nt_train_loss(m, x, y, 3, 1);
	l0 = nt_train_loss(p, x, y, 3, 1);
	assert_true(pen > 0.0);
	assert_scalar_close("loss with penalty - loss without", lp - l0, pen, 1e-6,
						1e-5);
	nn_model_free(m);
	nn_model_free(p);
	free(pl);
	free(x);
	free(y);
}

/* l1 and l2 penalties on dense and conv2d kernels. */
static void
test_penalties(void **state)
{
	nn_layer_spec d[] = {nt_dense(4, NN_ACT_TANH), nt_dense(2, NN_ACT_LINEAR)};
	nn_layer_spec c[] = {nt_conv(2, 2, 3, 1, 1, true, NN_ACT_TANH),
	nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR)};

	(void) state;
	d[0].l1 = 0.01f;
	d[0].l2 = 0.02f;
	d[1].l2 = 0.05f;
	check_penalty("dense l1 0.01 + l2 0.02, dense l2 0.05", d, 2, 1, 5, 0, 0);
	c[0].l1 = 0.03f;
	c[0].l2 = 0.01f;
	c[2].l1 = 0.02f;
	check_penalty("conv2d l1 0.03 + l2 0.01, dense l1 0.02", c, 3, 3, 4, 3, 2);
}

/* Run the layer gradient-check suite. */

/* ---------- sequence and normalisation layers ---------- */

/* Recurrent layers with Keras's default activations, (T, F) inputs. */
static void
test_simple_rnn(void **state)
{
	nn_layer_spec a[] = {nt_rnn(NN_LAYER_SIMPLE_RNN, 3, false)};
	nn_layer_spec b[] = {nt_rnn(NN_LAYER_SIMPLE_RNN, 4, true)};
	gc_case		ca = mk("simple_rnn 3 units on 4x3, batch 3", a, 1, 2, 4, 3,
						0, 3);
	gc_case		cb;

	(void) state;
	b[0].activation = NN_ACT_SIGMOID;
	cb = mk("simple_rnn sigmoid, return_sequences, on 5x2, batch 1", b, 1, 2,
			5, 2, 0, 1);
	run_case(&ca);
	run_case(&cb);
}

static void
test_lstm(void **state)
{
	nn_layer_spec a[] = {nt_rnn(NN_LAYER_LSTM, 4, true)};
	nn_layer_spec b[] = {nt_rnn(NN_LAYER_LSTM, 3, false)};
	nn_layer_spec c[] = {nt_rnn(NN_LAYER_LSTM, 2, false)};
	gc_case		ca = mk("lstm 4 units, return_sequences, on 5x2, batch 2", a,
						1, 2, 5, 2, 0, 2);
	gc_case		cb = mk("lstm 3 units on 1x3 (T = 1), batch 3", b, 1, 2, 1, 3,
						0, 3);
	gc_case		cc;

	(void) state;
	c[0].use_bias = false;
	cc = mk("lstm 2 units no bias on 6x1, batch 1", c, 1, 2, 6, 1, 0, 1);
	run_case(&ca);
	run_case(&cb);
	run_case(&cc);
}

static void
test_gru(void **state)
{
	nn_layer_spec a[] = {nt_rnn(NN_LAYER_GRU, 3, false)};
	nn_layer_spec b[] = {nt_rnn(NN_LAYER_GRU, 4, true)};
	nn_layer_spec c[] = {nt_rnn(NN_LAYER_GRU, 2, false)};
	gc_case		ca = mk("gru 3 units on 4x4, batch 1", a, 1, 2, 4, 4, 0, 1);
	gc_case		cb = mk("gru 4 units, return_sequences, on 3x2, batch 3", b, 1,
						2, 3, 2, 0, 3);
	gc_case		cc;

	(void) state;
	c[0].use_bias = false;
	cc = mk("gru 2 units no bias on 1x3 (T = 1), batch 2", c, 1, 2, 1, 3, 0, 2);
	run_case(&ca);
	run_case(&cb);
	run_case(&cc);
}

/* Stacked: reshape from flat, lstm -> gru -> simple_rnn -> dense. */
static void
test_rnn_stack(void **state)
{
	nn_layer_spec l[] = {nt_reshape2(4, 3), nt_rnn(NN_LAYER_LSTM, 3, true),
		nt_rnn(NN_LAYER_GRU, 3, true), nt_rnn(NN_LAYER_SIMPLE_RNN, 2, false),
	nt_dense(2, NN_ACT_LINEAR)};
	gc_case		c = mk("reshape 4x3, lstm, gru, simple_rnn, dense, batch 3", l,
					   5, 1, 12, 0, 0, 3);

	(void) state;
	run_case(&c);
}

/* Training-mode batchnorm: flat, per image channel, per sequence feature. */
static void
test_batchnorm(void **state)
{
	nn_layer_spec a[] = {nt_dense(5, NN_ACT_TANH), nt_plain(NN_LAYER_BATCHNORM),
	nt_dense(2, NN_ACT_LINEAR)};
	nn_layer_spec b[] = {nt_plain(NN_LAYER_BATCHNORM), nt_plain(NN_LAYER_FLATTEN),
	nt_dense(3, NN_ACT_LINEAR)};
	nn_layer_spec c[] = {nt_plain(NN_LAYER_BATCHNORM), nt_plain(NN_LAYER_FLATTEN),
	nt_dense(2, NN_ACT_TANH)};
	gc_case		ca = mk("dense -> batchnorm -> dense on 4, batch 4", a, 3, 1, 4,
						0, 0, 4);
	gc_case		cb = mk("batchnorm on 3x2x3 images, batch 2", b, 3, 3, 3, 2, 3,
						2);
	gc_case		cc = mk("batchnorm on 5x3 sequences (per feature), batch 1",
						c, 3, 2, 5, 3, 0, 1);

	(void) state;
	run_case(&ca);
	run_case(&cb);
	run_case(&cc);
}

/*
 * Batchnorm's moving averages: after one training batch they are
 * momentum m + (1 - momentum) stat with the biased variance, and inference
 * uses them, not the batch.
 */
static void
test_batchnorm_moving(void **state)
{
	nn_layer_spec l[] = {nt_plain(NN_LAYER_BATCHNORM)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	float		x[3 * 2] = {1, 10, 2, 20, 6, 60};
	float		t[3 * 2] = {0};
	float		y[3 * 2];
	float	   *st;
	int32_t		C;
	nn_error	err;

	(void) state;
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, 3);
	(void) nt_train_loss(m, x, t, 3, 1);
	st = nn_model_layer_state(m, 0, &C);
	assert_int_equal(C, 2);
	/* mean 3, 30; biased variance 14/3, 1400/3 */
	assert_scalar_close("moving mean 0", st[0], 0.01 * 3.0, 1e-6, 1e-5);
	assert_scalar_close("moving mean 1", st[1], 0.01 * 30.0, 1e-6, 1e-5);
	assert_scalar_close("moving var 0", st[2], 0.99 + 0.01 * 14.0 / 3, 1e-6, 1e-5);
	assert_scalar_close("moving var 1", st[3], 0.99 + 0.01 * 1400.0 / 3, 1e-5,
						1e-5);
	assert_ok(nn_model_predict(m, y, x, 3, &err), &err);
	assert_scalar_close("inference output", y[0],
						(1.0 - st[0]) / sqrt(st[2] + 1e-3), 1e-5, 1e-5);
	nn_model_free(m);
}

static void
test_global_pools(void **state)
{
	nn_layer_spec a[] = {nt_plain(NN_LAYER_GLOBAL_AVGPOOL),
	nt_dense(2, NN_ACT_LINEAR)};
	nn_layer_spec b[] = {nt_plain(NN_LAYER_GLOBAL_MAXPOOL),
	nt_dense(2, NN_ACT_LINEAR)};
	nn_layer_spec c[] = {nt_conv(3, 2, 2, 1, 1, false, NN_ACT_TANH),
	nt_plain(NN_LAYER_GLOBAL_MAXPOOL)};
	gc_case		ca = mk("global_avgpool on 4x3x2 images, batch 2", a, 2, 3, 4, 3,
						2, 2);
	gc_case		cb = mk("global_maxpool on 5x3 sequences, batch 3", b, 2, 2, 5,
						3, 0, 3);
	gc_case		cc = mk("conv2d -> global_maxpool on 3x3x1, batch 1", c, 2, 3, 3,
						3, 1, 1);

	(void) state;
	cb.distinct_x = true;
	run_case(&ca);
	run_case(&cb);
	run_case(&cc);
}

/*
 * Embedding: ids (T) -> (T, D).  The table gradient against central
 * differences (ids have none), then lstm above it; bad ids are NN_ERR_DATA.
 */
static void
test_embedding(void **state)
{
	nn_layer_spec l[] = {nt_embedding(7, 3), nt_rnn(NN_LAYER_LSTM, 2, false),
	nt_dense(2, NN_ACT_LINEAR)};
	nn_layer_spec r[] = {nt_rescale(1.0f, 1.0f), nt_embedding(7, 2),
	nt_plain(NN_LAYER_GLOBAL_AVGPOOL)};
	nn_model_spec spec = nt_spec(1, 4, 0, 0, l, 3);
	nn_model   *m = nt_create(&spec, 5);
	float		x[3 * 4] = {0, 6, 3, 3, 1, 1, 2, 5, 6, 0, 4, 2};
	float		t[3 * 2];
	float		y[3 * 2];
	float		bad[] = {7.0f, 0.5f, -1.0f, NAN};
	nn_rng		rng;
	nn_error	err;
	nt_fd_opts	o = nt_fd_default();

	(void) state;
	nn_rng_seed(&rng, 3);
	nt_fill(t, 6, &rng, -1, 1);
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, 3);
	o.skip_input = true;
	assert_true(nt_gradcheck("embedding 7x3 -> lstm -> dense, batch 3", m, x,
							 t, 3, &o) > 0);
	/* the table rows of the ids, in order */
	assert_ok(nn_model_prepare(m, 3, false, 0, &err), &err);
	for (int i = 0; i < 4; i++)
	{
		float		xb[3 * 4];

		memcpy(xb, x, sizeof(xb));
		xb[5] = bad[i];
		memset(&err, 0, sizeof(err));
		assert_status(nn_model_predict(m, y, xb, 3, &err), NN_ERR_DATA, &err);
		assert_non_null(strstr(err.message, "token id"));
		assert_int_equal(err.layer, 0);
		assert_int_equal(err.row, 1);	/* x[5] is in the second row */
		assert_status(nn_model_compute_gradients(m, NULL, xb, t, 3, &rng,
												 &(double) {0}, &(int64_t) {0},
												 &err), NN_ERR_DATA, &err);
	}
	nn_model_free(m);

	/* after rescale: ids x + 1, and the lookup is exact */
	spec = nt_spec(1, 2, 0, 0, r, 3);
	m = nt_create(&spec, 5);
	{
		float		ids[2] = {0, 5};
		float		out[2];
		int64_t		ko,
					kl,
					bo,
					bl;
		const float *p = nn_model_params(m);

		nn_model_layer_params(m, 1, &ko, &kl, &bo, &bl);
		assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
		assert_ok(nn_model_predict(m, out, ids, 1, &err), &err);
		for (int d = 0; d < 2; d++)
			assert_scalar_close("embedding mean", out[d],
								((double) p[ko + 1 * 2 + d] + p[ko + 6 * 2 + d]) / 2,
								1e-7, 1e-6);
		ids[1] = 6;
		assert_status(nn_model_predict(m, out, ids, 1, &err), NN_ERR_DATA, &err);
	}
	nn_model_free(m);
}

/*
 * The recurrent layers split the batch, then the gate columns, over
 * threads once the work is large enough: the same outputs, input and
 * parameter gradients with 1 and 3 threads (batch 37, uneven slices).
 */
static void
test_rnn_threads(void **state)
{
	nn_layer_kind kinds[] = {NN_LAYER_SIMPLE_RNN, NN_LAYER_LSTM, NN_LAYER_GRU};
	int			saved = nn_get_threads();

	(void) state;
	for (int k = 0; k < 3; k++)
		for (int seq = 0; seq < 2; seq++)
		{
			nn_layer_spec l[] = {nt_rnn(kinds[k], 48, seq), nt_plain(NN_LAYER_FLATTEN)};
			nn_model_spec spec = nt_spec(2, 20, 16, 0, l, 2);
			nn_model   *m = nt_create(&spec, 9);
			int32_t		B = 37;
			size_t		in = nn_model_input_size(m),
						out = nn_model_output_size(m);
			int64_t		np = nt_flat_params(m);
			float	   *x = nt_xmalloc(sizeof(float) * B * in);
			float	   *t = nt_xmalloc(sizeof(float) * B * out);
			float	   *y[2],
					   *dx[2],
					   *g[2];
			nn_rng		rng;
			nn_error	err;
			char		what[80];

			nn_rng_seed(&rng, 5);
			nt_fill(x, B * in, &rng, -1, 1);
			nt_fill(t, B * out, &rng, -1, 1);
			nt_train_setup(m, NN_LOSS_MSE, NULL, 0, B);
			for (int r = 0; r < 2; r++)
			{
				double		loss = 0;
				int64_t		correct = 0;

				nn_set_threads(r == 0 ? 1 : 3);
				y[r] = nt_xmalloc(sizeof(float) * B * out);
				dx[r] = nt_xmalloc(sizeof(float) * B * in);
				g[r] = nt_xmalloc(sizeof(float) * np);
				assert_ok(nn_model_predict(m, y[r], x, B, &err), &err);
				assert_ok(nn_model_compute_gradients(m, dx[r], x, t, B, &rng, &loss,
													 &correct, &err), &err);
				memcpy(g[r], nn_model_grads(m), sizeof(float) * np);
			}
			snprintf(what, sizeof(what), "%s%s, 1 vs 3 threads: output",
					 nn_layer_kind_name(kinds[k]), seq ? " return_sequences" : "");
			assert_close_f(what, y[1], y[0], B * out, 1e-6, 1e-5);
			snprintf(what, sizeof(what), "%s%s, 1 vs 3 threads: dx",
					 nn_layer_kind_name(kinds[k]), seq ? " return_sequences" : "");
			assert_close_f(what, dx[1], dx[0], B * in, 1e-7, 1e-4);
			snprintf(what, sizeof(what), "%s%s, 1 vs 3 threads: gradients",
					 nn_layer_kind_name(kinds[k]), seq ? " return_sequences" : "");
			assert_close_f(what, g[1], g[0], np, 1e-7, 1e-4);
			for (int r = 0; r < 2; r++)
			{
				free(y[r]);
				free(dx[r]);
				free(g[r]);
			}
			free(x);
			free(t);
			nn_model_free(m);
		}
	nn_set_threads(saved);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compare_detects_mismatch),
		cmocka_unit_test(test_fd_matches_closed_form),
		cmocka_unit_test(test_dense_bias_batch3),
		cmocka_unit_test(test_dense_nobias_deep),
		cmocka_unit_test(test_dense_batch1_unit1),
		cmocka_unit_test(test_conv_valid),
		cmocka_unit_test(test_conv_same),
		cmocka_unit_test(test_conv_same_stride2_nonsquare),
		cmocka_unit_test(test_conv_valid_stride2_nonsquare),
		cmocka_unit_test(test_conv_strides_1x3_same),
		cmocka_unit_test(test_conv_1x1_image),
		cmocka_unit_test(test_conv_nobias_kernel_equals_input),
		cmocka_unit_test(test_maxpool_valid),
		cmocka_unit_test(test_maxpool_same_stride2),
		cmocka_unit_test(test_maxpool_overlap_nonsquare),
		cmocka_unit_test(test_conv_maxpool),
		cmocka_unit_test(test_avgpool_valid),
		cmocka_unit_test(test_avgpool_same_stride2),
		cmocka_unit_test(test_avgpool_nonsquare_same),
		cmocka_unit_test(test_reshape_flatten),
		cmocka_unit_test(test_dropout_fixed_rng),
		cmocka_unit_test(test_dropout_rate0_is_identity),
		cmocka_unit_test(test_random_flip),
		cmocka_unit_test(test_random_translation),
		cmocka_unit_test(test_random_rotation),
		cmocka_unit_test(test_random_zoom),
		cmocka_unit_test(test_random_crop),
		cmocka_unit_test(test_random_contrast),
		cmocka_unit_test(test_random_brightness),
		cmocka_unit_test(test_gaussian_noise),
		cmocka_unit_test(test_augment_chain),
		cmocka_unit_test(test_rescale),
		cmocka_unit_test(test_normalize_adapted),
		cmocka_unit_test(test_activation_layer_each),
		cmocka_unit_test(test_dense_activation_each),
		cmocka_unit_test(test_activation_alpha),
		cmocka_unit_test(test_conv_softmax_channels),
		cmocka_unit_test(test_small_cnn),
		cmocka_unit_test(test_penalties),
		cmocka_unit_test(test_simple_rnn),
		cmocka_unit_test(test_lstm),
		cmocka_unit_test(test_gru),
		cmocka_unit_test(test_rnn_stack),
		cmocka_unit_test(test_batchnorm),
		cmocka_unit_test(test_batchnorm_moving),
		cmocka_unit_test(test_global_pools),
		cmocka_unit_test(test_embedding),
		cmocka_unit_test(test_rnn_threads),
	};

	return NT_RUN(tests);
}
