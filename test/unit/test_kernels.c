/*
 * test_kernels.c: each fast kernel against a naive reference in double.
 *
 * The model's forward (nn_model_predict) and backward (parameter gradients
 * and dx_out of nn_model_compute_gradients under mse, whose output gradient
 * 2 (y - t) / (k n) is known exactly) are compared with direct nested loops
 * for dense, conv2d (im2col + GEMM, chunked over samples and threads),
 * max/avg pooling and every activation, on awkward shapes: batch 1 and odd
 * batches, 1x1 images, kernels as large as the input, non-square kernels
 * and strides, 'same' padding with the odd cell at the bottom/right (as
 * TensorFlow), and batches that cross the core's chunk and thread splits.
 *
 * Tolerances: forward 1e-5 absolute + 1e-5 relative; gradients 1e-5 + 1e-4
 * relative (float32 sums of up to a few hundred terms).
 */
#include <math.h>

#include "nn_test.h"

/* mse output gradient in double from float outputs y and targets t. */
static double *
mse_dy(const float *y, const float *t, size_t n_rows, size_t k)
{
	double	   *dy = nt_xmalloc(sizeof(double) * n_rows * k);

	for (size_t i = 0; i < n_rows * k; i++)
		dy[i] = 2.0 * ((double) y[i] - t[i]) / ((double) k * n_rows);
	return dy;
}

/* ---------- dense ---------- */

typedef struct dense_shape
{
	int32_t		B,
				in,
				units;
	bool		bias;
} dense_shape;

/* Dense forward and backward of one shape against direct loops. */
static void
check_dense(const dense_shape *s)
{
	nn_layer_spec l[] = {nt_dense(s->units, NN_ACT_LINEAR)};
	nn_model_spec spec;
	nn_model   *m;
	float	   *x,
			   *t,
			   *y,
			   *dx;
	double	   *ry,
			   *dy,
			   *rdw,
			   *rdb,
			   *rdx;
	const float *w,
			   *b,
			   *g;
	int64_t		ko,
				kl,
				bo,
				bl;
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;
	char		label[120];
	size_t		B = s->B,
				I = s->in,
				U = s->units;

	l[0].use_bias = s->bias;
	spec = nt_spec(1, s->in, 0, 0, l, 1);
	m = nt_create(&spec, 40 + s->B);
	nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
	nn_rng_seed(&rng, 41);
	if (bl)
		nt_fill(nn_model_params(m) + bo, bl, &rng, -0.5f, 0.5f);
	w = nn_model_params(m) + ko;
	b = bl ? nn_model_params(m) + bo : NULL;
	x = nt_xmalloc(sizeof(float) * B * I);
	t = nt_xmalloc(sizeof(float) * B * U);
	y = nt_xmalloc(sizeof(float) * B * U);
	dx = nt_xmalloc(sizeof(float) * B * I);
	ry = nt_xmalloc(sizeof(double) * B * U);
	rdw = calloc(I * U, sizeof(double));
	rdb = calloc(U, sizeof(double));
	rdx = calloc(B * I, sizeof(double));
	nt_fill(x, B * I, &rng, -1, 1);
	nt_fill(t, B * U, &rng, -1, 1);

	for (size_t r = 0; r < B; r++)
		for (size_t u = 0; u < U; u++)
		{
			double		acc = b ? b[u] : 0.0;

			for (size_t i = 0; i < I; i++)
				acc += (double) x[r * I + i] * w[i * U + u];
			ry[r * U + u] = acc;
		}
	assert_ok(nn_model_prepare(m, s->B, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, s->B, &err), &err);
	snprintf(label, sizeof(label), "dense forward B=%d in=%d units=%d bias=%d",
			 s->B, s->in, s->units, s->bias);
	assert_close_fd(label, y, ry, B * U, 1e-5, 1e-5);

	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, s->B);
	assert_ok(nn_model_compute_gradients(m, dx, x, t, s->B, NULL, &loss,
										 &correct, &err), &err);
	dy = mse_dy(y, t, B, U);
	for (size_t r = 0; r < B; r++)
		for (size_t u = 0; u < U; u++)
		{
			double		d = dy[r * U + u];

			rdb[u] += d;
			for (size_t i = 0; i < I; i++)
			{
				rdw[i * U + u] += d * x[r * I + i];
				rdx[r * I + i] += d * w[i * U + u];
			}
		}
	g = nn_model_grads(m);
	snprintf(label, sizeof(label), "dense dW B=%d in=%d units=%d", s->B, s->in,
			 s->units);
	assert_close_fd(label, g + ko, rdw, I * U, 1e-5, 1e-4);
	if (bl)
	{
		snprintf(label, sizeof(label), "dense db B=%d units=%d", s->B, s->units);
		assert_close_fd(label, g + bo, rdb, U, 1e-5, 1e-4);
	}
	snprintf(label, sizeof(label), "dense dx B=%d in=%d units=%d", s->B, s->in,
			 s->units);
	assert_close_fd(label, dx, rdx, B * I, 1e-5, 1e-4);

	nn_model_free(m);
	free(x);
	free(t);
	free(y);
	free(dx);
	free(ry);
	free(dy);
	free(rdw);
	free(rdb);
	free(rdx);
}

/* Dense on awkward shapes, from 1x1x1 to thread-split sizes; one row goes
 * through sgemv, more through sgemm. */
static void
test_dense_naive(void **state)
{
	static const dense_shape shapes[] = {
		{1, 1, 1, true}, {3, 5, 4, true}, {2, 1, 9, false}, {67, 33, 17, true},
		{129, 7, 3, false}, {5, 64, 1, true}, {1, 300, 10, true},
		/* over the core's 2^20 multiply-adds: split over threads, odd batch */
		{129, 300, 40, true},
		/* split into one-row shares (sgemv) beside a two-row one (sgemm) */
		{2, 512, 1100, false}, {3, 600, 600, true},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		check_dense(&shapes[i]);
}

/* ---------- conv2d ---------- */

typedef struct conv_shape
{
	int32_t		B,
				H,
				W,
				C,
				F,
				KH,
				KW,
				SH,
				SW;
	bool		same;
	bool		bias;
} conv_shape;

/*
 * conv2d outputs against direct loops, each error measured against the
 * output's scale: the sum of its terms' magnitudes, sum |x w| + |b| (the
 * same convolution of absolute values), or 1 when that is smaller.  A long
 * sum in float32 carries an error proportional to that scale, not to the
 * result, which can be near 0 by cancellation; Winograd's transforms
 * (winograd.c) multiply it by a small constant.
 */
static void
check_conv_forward(const char *label, const float *y, const double *ry,
				   const float *x, const float *w, const float *b,
				   const conv_shape *s, size_t n)
{
	size_t		nx = (size_t) s->B * s->H * s->W * s->C,
				nw = (size_t) s->KH * s->KW * s->C * s->F;
	float	   *ax = nt_xmalloc(sizeof(float) * nx),
			   *aw = nt_xmalloc(sizeof(float) * nw),
			   *ab = nt_xmalloc(sizeof(float) * s->F),
			   *yn = nt_xmalloc(sizeof(float) * n);
	double	   *scale = nt_xmalloc(sizeof(double) * n),
			   *rn = nt_xmalloc(sizeof(double) * n);

	for (size_t i = 0; i < nx; i++)
		ax[i] = fabsf(x[i]);
	for (size_t i = 0; i < nw; i++)
		aw[i] = fabsf(w[i]);
	for (int32_t f = 0; f < s->F; f++)
		ab[f] = b ? fabsf(b[f]) : 0.0f;
	nt_naive_conv(scale, ax, aw, ab, s->B, s->H, s->W, s->C, s->F, s->KH,
				  s->KW, s->SH, s->SW, s->same, NULL, NULL);
	for (size_t i = 0; i < n; i++)
	{
		double		sc = scale[i] > 1.0 ? scale[i] : 1.0;

		yn[i] = (float) (y[i] / sc);
		rn[i] = ry[i] / sc;
	}
	assert_close_fd(label, yn, rn, n, 1e-5, 1e-5);
	free(ax);
	free(aw);
	free(ab);
	free(yn);
	free(scale);
	free(rn);
}

/* conv2d forward and backward of one shape against direct loops. */
static void
check_conv(const conv_shape *s)
{
	nn_layer_spec l[] = {nt_conv(s->F, s->KH, s->KW, s->SH, s->SW, s->same,
								 NN_ACT_LINEAR)};
	nn_model_spec spec;
	nn_model   *m;
	int32_t		OH,
				OW,
				pt,
				pl;
	size_t		in,
				out;
	float	   *x,
			   *t,
			   *y,
			   *y2,
			   *dx;
	double	   *ry,
			   *dy,
			   *rdw,
			   *rdb,
			   *rdx;
	const float *w,
			   *b,
			   *g;
	int64_t		ko,
				kl,
				bo,
				bl;
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;
	char		label[160];
	nn_layer_info info;

	l[0].use_bias = s->bias;
	spec = nt_spec(3, s->H, s->W, s->C, l, 1);
	m = nt_create(&spec, 60 + s->B);
	nt_axis(s->H, s->KH, s->SH, s->same, &OH, &pt);
	nt_axis(s->W, s->KW, s->SW, s->same, &OW, &pl);
	nn_model_layer_info(m, 0, &info);
	assert_int_equal(info.shape[0], OH);
	assert_int_equal(info.shape[1], OW);
	assert_int_equal(info.shape[2], s->F);
	in = (size_t) s->H * s->W * s->C;
	out = (size_t) OH * OW * s->F;
	nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
	assert_int_equal(kl, (int64_t) s->KH * s->KW * s->C * s->F);
	nn_rng_seed(&rng, 61);
	if (bl)
		nt_fill(nn_model_params(m) + bo, bl, &rng, -0.5f, 0.5f);
	w = nn_model_params(m) + ko;
	b = bl ? nn_model_params(m) + bo : NULL;
	x = nt_xmalloc(sizeof(float) * s->B * in);
	t = nt_xmalloc(sizeof(float) * s->B * out);
	y = nt_xmalloc(sizeof(float) * s->B * out);
	y2 = nt_xmalloc(sizeof(float) * s->B * out);
	dx = nt_xmalloc(sizeof(float) * s->B * in);
	ry = nt_xmalloc(sizeof(double) * s->B * out);
	rdw = calloc(kl, sizeof(double));
	rdb = calloc(s->F, sizeof(double));
	rdx = calloc(s->B * in, sizeof(double));
	nt_fill(x, s->B * in, &rng, -1, 1);
	nt_fill(t, s->B * out, &rng, -1, 1);

	nt_naive_conv(ry, x, w, b, s->B, s->H, s->W, s->C, s->F, s->KH, s->KW,
				  s->SH, s->SW, s->same, NULL, NULL);
	assert_ok(nn_model_prepare(m, s->B, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, s->B, &err), &err);
	snprintf(label, sizeof(label),
			 "conv2d forward B=%d %dx%dx%d F=%d k=%dx%d s=%dx%d %s",
			 s->B, s->H, s->W, s->C, s->F, s->KH, s->KW, s->SH, s->SW,
			 s->same ? "same" : "valid");
	check_conv_forward(label, y, ry, x, w, b, s, s->B * out);

	/*
	 * Winograd keeps its transformed kernel between predictions: a changed
	 * weight must show in the next one, and an unchanged model must give
	 * the same bits again.
	 */
	nn_model_params(m)[ko + kl / 2] += 0.25f;
	nt_naive_conv(ry, x, w, b, s->B, s->H, s->W, s->C, s->F, s->KH, s->KW,
				  s->SH, s->SW, s->same, NULL, NULL);
	assert_ok(nn_model_predict(m, y, x, s->B, &err), &err);
	memcpy(label, "conv2d changed", 14);	/* "conv2d changed B=..." */
	check_conv_forward(label, y, ry, x, w, b, s, s->B * out);
	assert_ok(nn_model_predict(m, y2, x, s->B, &err), &err);
	assert_memory_equal(y2, y, sizeof(float) * (size_t) s->B * out);

	/* backward: dW, db, dx by direct loops over every output */
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, s->B);
	assert_ok(nn_model_compute_gradients(m, dx, x, t, s->B, NULL, &loss,
										 &correct, &err), &err);
	dy = mse_dy(y, t, s->B, out);
	for (int32_t n = 0; n < s->B; n++)
		for (int32_t oh = 0; oh < OH; oh++)
			for (int32_t ow = 0; ow < OW; ow++)
				for (int32_t f = 0; f < s->F; f++)
				{
					double		d = dy[(((size_t) n * OH + oh) * OW + ow) * s->F + f];

					rdb[f] += d;
					for (int32_t kh = 0; kh < s->KH; kh++)
						for (int32_t kw = 0; kw < s->KW; kw++)
						{
							int32_t		ih = oh * s->SH - pt + kh;
							int32_t		iw = ow * s->SW - pl + kw;

							if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
								continue;
							for (int32_t c = 0; c < s->C; c++)
							{
								size_t		xi = (((size_t) n * s->H + ih) * s->W + iw) * s->C + c;
								size_t		wi = (((size_t) kh * s->KW + kw) * s->C + c) * s->F + f;

								rdw[wi] += d * x[xi];
								rdx[xi] += d * w[wi];
							}
						}
				}
	g = nn_model_grads(m);
	snprintf(label, sizeof(label), "conv2d dW B=%d %dx%dx%d F=%d k=%dx%d s=%dx%d %s",
			 s->B, s->H, s->W, s->C, s->F, s->KH, s->KW, s->SH, s->SW,
			 s->same ? "same" : "valid");
	assert_close_fd(label, g + ko, rdw, kl, 1e-5, 1e-4);
	if (bl)
		assert_close_fd("conv2d db", g + bo, rdb, s->F, 1e-5, 1e-4);
	label[8] = 'x';				/* "conv2d dx ..." */
	assert_close_fd(label, dx, rdx, s->B * in, 1e-5, 1e-4);

	nn_model_free(m);
	free(x);
	free(t);
	free(y);
	free(y2);
	free(dx);
	free(ry);
	free(dy);
	free(rdw);
	free(rdb);
	free(rdx);
}

/* conv2d on awkward shapes: 1x1 images, kernel = input, strides, chunking. */
static void
test_conv_naive(void **state)
{
	static const conv_shape shapes[] = {
		/* B, H, W, C, F, KH, KW, SH, SW, same, bias */
		{1, 1, 1, 1, 1, 1, 1, 1, 1, false, true},
		{3, 1, 1, 3, 4, 3, 3, 2, 2, true, true},	/* 1x1 image, same */
		{2, 7, 5, 3, 4, 3, 2, 2, 1, true, true},
		{3, 6, 9, 2, 5, 4, 4, 3, 3, false, false},
		{5, 5, 5, 1, 3, 5, 5, 1, 1, false, true},	/* kernel = input */
		{2, 4, 7, 3, 2, 1, 7, 1, 1, true, true},
		{37, 3, 4, 2, 3, 2, 2, 1, 1, true, true},	/* many small samples */
		{3, 17, 16, 3, 4, 3, 3, 1, 1, true, true},	/* >= 256 rows a sample */
		{3, 9, 8, 5, 7, 3, 3, 2, 2, true, false},
		{4, 28, 28, 1, 8, 3, 3, 1, 1, false, true},	/* seed CNN first layer */
		{2, 6, 6, 2, 3, 2, 2, 3, 3, true, true},	/* stride > kernel */
		{1, 8, 3, 2, 2, 5, 1, 2, 1, true, true},	/* pad 2 on one side */
		/* over 2^20 multiply-adds: chunks of 1 and of 8 samples on threads */
		{9, 17, 16, 3, 24, 3, 3, 1, 1, true, true},
		{61, 6, 6, 8, 32, 3, 3, 1, 1, true, true},
		/* Winograd (3x3, stride 1, >= 8 channels): partial tiles, padding,
		 * channel blocks with remainders, the seed CNN's second layer */
		{3, 13, 13, 32, 16, 3, 3, 1, 1, false, true},
		{2, 5, 5, 64, 8, 3, 3, 1, 1, false, true},
		{2, 9, 7, 8, 5, 3, 3, 1, 1, true, false},
		{3, 12, 12, 40, 33, 3, 3, 1, 1, true, true},
		{64, 13, 13, 32, 64, 3, 3, 1, 1, false, true},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		check_conv(&shapes[i]);
}

/* ---------- byte input ---------- */

/*
 * nn_bytes_to_floats against the plain cast: every byte value, every length
 * up to a few vector widths from every alignment, and nothing written past
 * the end.
 */
static void
test_bytes_to_floats(void **state)
{
	uint8_t		src[300];
	float		dst[300 + 1];

	(void) state;
	for (int i = 0; i < 300; i++)
		src[i] = (uint8_t) (255 - (i * 7) % 256);
	for (size_t off = 0; off < 4; off++)
		for (size_t n = 0; n + off <= 296; n += (n < 70 ? 1 : 37))
		{
			dst[n] = -1.0f;
			nn_bytes_to_floats(dst, src + off, n);
			for (size_t i = 0; i < n; i++)
				if (dst[i] != (float) src[off + i])
					fail_msg("n=%zu offset %zu: [%zu] is %g, not %d",
							 n, off, i, (double) dst[i], src[off + i]);
			assert_true(dst[n] == -1.0f);
		}
}

/* ---------- pooling ---------- */

typedef struct pool_shape
{
	int32_t		B,
				H,
				W,
				C,
				KH,
				KW,
				SH,
				SW;
	bool		same;
} pool_shape;

/*
 * Pooling forward and backward of one shape against direct loops.  With
 * ties, inputs take four values only, so that many windows hold several
 * maxima: the gradient must go to the first in window order, as the
 * reference's strict comparison does.
 */
static void
check_pool(nn_layer_kind kind, const pool_shape *s, bool ties)
{
	nn_layer_spec l[] = {nt_pool(kind, s->KH, s->KW, s->SH, s->SW, s->same)};
	nn_model_spec spec = nt_spec(3, s->H, s->W, s->C, l, 1);
	nn_model   *m = nt_create(&spec, 3);
	bool		is_max = kind == NN_LAYER_MAXPOOL2D;
	int32_t		OH,
				OW,
				pt,
				pl;
	size_t		in = (size_t) s->H * s->W * s->C,
				out;
	float	   *x,
			   *t,
			   *y,
			   *dx;
	double	   *ry,
			   *dy,
			   *rdx;
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;
	char		label[160];

	nt_axis(s->H, s->KH, s->SH, s->same, &OH, &pt);
	nt_axis(s->W, s->KW, s->SW, s->same, &OW, &pl);
	out = (size_t) OH * OW * s->C;
	assert_int_equal(nn_model_output_size(m), out);
	x = nt_xmalloc(sizeof(float) * s->B * in);
	t = nt_xmalloc(sizeof(float) * s->B * out);
	y = nt_xmalloc(sizeof(float) * s->B * out);
	dx = nt_xmalloc(sizeof(float) * s->B * in);
	ry = nt_xmalloc(sizeof(double) * s->B * out);
	rdx = calloc(s->B * in, sizeof(double));
	nn_rng_seed(&rng, 5);
	/* negative values, so that padding can never win */
	if (ties)
	{
		nt_fill(x, s->B * in, &rng, -3.0f, -1.0f);
		for (size_t i = 0; i < s->B * in; i++)
			x[i] = floorf(x[i] * 2.0f) / 2.0f;
	}
	else
		nt_fill_distinct(x, s->B * in, &rng, -3.0f, 1.0f / 64);
	nt_fill(t, s->B * out, &rng, -1, 1);
	assert_ok(nn_model_prepare(m, s->B, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, s->B, &err), &err);
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, s->B);
	assert_ok(nn_model_compute_gradients(m, dx, x, t, s->B, NULL, &loss,
										 &correct, &err), &err);
	dy = mse_dy(y, t, s->B, out);

	for (int32_t n = 0; n < s->B; n++)
		for (int32_t oh = 0; oh < OH; oh++)
			for (int32_t ow = 0; ow < OW; ow++)
				for (int32_t c = 0; c < s->C; c++)
				{
					double		acc = is_max ? -HUGE_VAL : 0.0;
					size_t		best = 0;
					int			count = 0;
					size_t		o = (((size_t) n * OH + oh) * OW + ow) * s->C + c;

					for (int32_t kh = 0; kh < s->KH; kh++)
						for (int32_t kw = 0; kw < s->KW; kw++)
						{
							int32_t		ih = oh * s->SH - pt + kh;
							int32_t		iw = ow * s->SW - pl + kw;
							size_t		xi;

							if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
								continue;
							xi = (((size_t) n * s->H + ih) * s->W + iw) * s->C + c;
							count++;
							if (!is_max)
								acc += x[xi];
							else if (x[xi] > acc)
							{
								acc = x[xi];
								best = xi;
							}
						}
					assert_true(count > 0);
					ry[o] = is_max ? acc : acc / count;
					/* backward: to the arg-max, or spread over the cells inside */
					if (is_max)
						rdx[best] += dy[o];
					else
						for (int32_t kh = 0; kh < s->KH; kh++)
							for (int32_t kw = 0; kw < s->KW; kw++)
							{
								int32_t		ih = oh * s->SH - pt + kh;
								int32_t		iw = ow * s->SW - pl + kw;

								if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
									continue;
								rdx[(((size_t) n * s->H + ih) * s->W + iw) * s->C + c] +=
									dy[o] / count;
							}
				}
	snprintf(label, sizeof(label), "%s forward B=%d %dx%dx%d k=%dx%d s=%dx%d %s%s",
			 nn_layer_kind_name(kind), s->B, s->H, s->W, s->C, s->KH, s->KW,
			 s->SH, s->SW, s->same ? "same" : "valid", ties ? " ties" : "");
	assert_close_fd(label, y, ry, s->B * out, 1e-6, 1e-6);
	snprintf(label, sizeof(label), "%s dx B=%d %dx%dx%d k=%dx%d s=%dx%d %s%s",
			 nn_layer_kind_name(kind), s->B, s->H, s->W, s->C, s->KH, s->KW,
			 s->SH, s->SW, s->same ? "same" : "valid", ties ? " ties" : "");
	assert_close_fd(label, dx, rdx, s->B * in, 1e-6, 1e-5);
	nn_model_free(m);
	free(x);
	free(t);
	free(y);
	free(dx);
	free(ry);
	free(dy);
	free(rdx);
}

static const pool_shape pool_shapes[] = {
	/* B, H, W, C, KH, KW, SH, SW, same */
	{1, 1, 1, 2, 2, 2, 2, 2, true},		/* 1x1 image, same */
	{3, 5, 4, 2, 2, 2, 2, 2, false},	/* odd rows dropped */
	{2, 5, 7, 3, 3, 3, 2, 2, true},
	{2, 7, 4, 1, 3, 2, 2, 1, false},	/* overlapping windows */
	{1, 6, 6, 4, 3, 3, 1, 1, true},
	{3, 8, 5, 2, 4, 2, 3, 2, true},
	{5, 4, 4, 3, 4, 4, 4, 4, false},	/* window = image */
	{2, 9, 9, 1, 2, 2, 3, 3, true},		/* stride > pool: gaps */
	{33, 32, 32, 16, 3, 3, 2, 2, true},	/* over 2^20: split over threads */
	/* stride = pool, as in most CNNs: windows tile the input */
	{2, 7, 9, 5, 2, 2, 2, 2, true},		/* last row and column partial */
	{2, 7, 10, 13, 3, 3, 3, 3, false},	/* last row and column dropped */
	{2, 5, 6, 3, 4, 4, 4, 4, true},		/* partial windows on every side */
	{2, 6, 9, 7, 2, 3, 2, 3, false},	/* non-square */
	{3, 11, 11, 64, 2, 2, 2, 2, false},	/* the seed CNN's second pool */
	{64, 26, 26, 32, 2, 2, 2, 2, false},	/* its first: split over threads */
};

/* Max pooling on every shape of pool_shapes, without and with ties. */
static void
test_maxpool_naive(void **state)
{
	(void) state;
	for (size_t i = 0; i < sizeof(pool_shapes) / sizeof(pool_shapes[0]); i++)
	{
		check_pool(NN_LAYER_MAXPOOL2D, &pool_shapes[i], false);
		check_pool(NN_LAYER_MAXPOOL2D, &pool_shapes[i], true);
	}
}

/* Average pooling on every shape of pool_shapes. */
static void
test_avgpool_naive(void **state)
{
	(void) state;
	for (size_t i = 0; i < sizeof(pool_shapes) / sizeof(pool_shapes[0]); i++)
		check_pool(NN_LAYER_AVGPOOL2D, &pool_shapes[i], false);
}

/* Max pooling of all-negative windows is the largest negative, not 0 or -FLT_MAX. */
static void
test_maxpool_negative(void **state)
{
	nn_layer_spec l[] = {nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, true)};
	nn_model_spec spec = nt_spec(3, 3, 3, 1, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	float		x[9] = {-5, -4, -3, -2, -1, -6, -7, -8, -9};
	float		expect[4] = {-1, -3, -7, -9};
	float		y[4];
	nn_error	err;

	(void) state;
	assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, 1, &err), &err);
	assert_close_f("maxpool same on negatives", y, expect, 4, 0, 0);
	nn_model_free(m);
}

/* ---------- activations ---------- */

/* Element-wise activation in double. */
static double
ref_act(nn_activation a, double v, double alpha)
{
	switch (a)
	{
		case NN_ACT_LINEAR:
			return v;
		case NN_ACT_RELU:
			return v > 0 ? v : 0;
		case NN_ACT_LEAKY_RELU:
			return v > 0 ? v : alpha * v;
		case NN_ACT_ELU:
			return v > 0 ? v : alpha * expm1(v);
		case NN_ACT_SIGMOID:
			return 1.0 / (1.0 + exp(-v));
		case NN_ACT_TANH:
			return tanh(v);
		default:
			return NAN;
	}
}

/*
 * Every activation's forward against libm in double, with Keras's default
 * slopes (leaky_relu 0.2 as keras.activations.leaky_relu, elu 1) and given
 * ones; softmax per row over the last axis.
 */
static void
test_activation_forward(void **state)
{
	const int32_t B = 4,
				K = 7;
	float		x[4 * 7],
				y[4 * 7];
	double		r[4 * 7];
	nn_rng		rng;
	nn_error	err;

	(void) state;
	nn_rng_seed(&rng, 77);
	nt_fill(x, B * K, &rng, -4, 4);
	x[3] = 0.0f;
	for (int a = NN_ACT_LINEAR; a <= NN_ACT_SOFTMAX; a++)
		for (int with_alpha = 0; with_alpha < 2; with_alpha++)
		{
			nn_layer_spec l[] = {nt_act((nn_activation) a)};
			nn_model_spec spec = nt_spec(1, K, 0, 0, l, 1);
			nn_model   *m;
			double		alpha = a == NN_ACT_ELU ? 1.0 : 0.2;
			char		label[80];

			if (with_alpha)
			{
				if (a != NN_ACT_LEAKY_RELU && a != NN_ACT_ELU)
					continue;
				l[0].alpha = 0.7f;
				alpha = (double) 0.7f;
			}
			m = nt_create(&spec, 1);
			assert_ok(nn_model_prepare(m, B, false, 0, &err), &err);
			assert_ok(nn_model_predict(m, y, x, B, &err), &err);
			if (a == NN_ACT_SOFTMAX)
				for (int32_t row = 0; row < B; row++)
				{
					double		s = 0;

					for (int32_t j = 0; j < K; j++)
						s += exp((double) x[row * K + j]);
					for (int32_t j = 0; j < K; j++)
						r[row * K + j] = exp((double) x[row * K + j]) / s;
				}
			else
				for (int32_t i = 0; i < B * K; i++)
					r[i] = ref_act((nn_activation) a, x[i], alpha);
			snprintf(label, sizeof(label), "activation %s%s forward",
					 nn_activation_name((nn_activation) a),
					 with_alpha ? " alpha 0.7" : "");
			assert_close_fd(label, y, r, B * K, 1e-6, 1e-6);
			nn_model_free(m);
		}
}

/* Extreme inputs stay finite: split sigmoid, max-shifted softmax. */
static void
test_activation_extremes(void **state)
{
	float		x[6] = {1000.0f, 999.0f, -1000.0f, 88.0f, -88.0f, -1e30f};
	float		y[6];
	nn_error	err;

	(void) state;
	for (int a = NN_ACT_LINEAR; a <= NN_ACT_SOFTMAX; a++)
	{
		nn_layer_spec l[] = {nt_act((nn_activation) a)};
		nn_model_spec spec = nt_spec(1, 6, 0, 0, l, 1);
		nn_model   *m = nt_create(&spec, 1);

		assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
		assert_ok(nn_model_predict(m, y, x, 1, &err), &err);
		for (int i = 0; i < 6; i++)
			if (!isfinite(y[i]))
				fail_msg("activation %s of %g is %g",
						 nn_activation_name((nn_activation) a), (double) x[i],
						 (double) y[i]);
		if (a == NN_ACT_SOFTMAX)
		{
			double		e0 = 1.0 / (1.0 + exp(-1.0));

			assert_scalar_close("softmax(1000 | 999)", y[0], e0, 1e-6, 1e-6);
			assert_scalar_close("softmax(999 | 1000)", y[1], 1 - e0, 1e-6, 1e-6);
		}
		if (a == NN_ACT_SIGMOID)
		{
			assert_scalar_close("sigmoid(1000)", y[0], 1.0, 0, 0);
			assert_scalar_close("sigmoid(-1000)", y[2], 0.0, 0, 0);
		}
		if (a == NN_ACT_ELU)
			assert_scalar_close("elu(-1000)", y[2], -1.0, 0, 0);
		nn_model_free(m);
	}
}

/* ---------- rescale, normalize, shapes ---------- */

/* Rescale then adapted normalize against statistics computed here. */
static void
test_rescale_normalize_forward(void **state)
{
	nn_layer_spec l[] = {nt_rescale(1.0f / 255, -0.5f), nt_plain(NN_LAYER_NORMALIZE)};
	nn_model_spec spec = nt_spec(3, 2, 3, 2, l, 2);
	nn_model   *m = nt_create(&spec, 1);
	float		data[10 * 12],
				y[3 * 12];
	double		mean[2] = {0, 0},
				var[2] = {0, 0},
				r[3 * 12];
	nn_rng		rng;
	nn_error	err;

	(void) state;
	nn_rng_seed(&rng, 8);
	nt_fill(data, 120, &rng, 0, 255);
	for (int i = 0; i < 120; i += 2)
		data[i] = data[i] * 0.2f + 100;	/* channel 0: narrower, shifted */
	/* reference statistics per channel of the rescaled data, in double */
	for (int i = 0; i < 120; i++)
		mean[i % 2] += (data[i] * (double) (1.0f / 255) - 0.5) / 60;
	for (int i = 0; i < 120; i++)
	{
		double		d = data[i] * (double) (1.0f / 255) - 0.5 - mean[i % 2];

		var[i % 2] += d * d / 60;
	}
	assert_ok(nn_model_prepare(m, 10, false, 0, &err), &err);
	assert_true(nn_model_needs_adapt(m));
	assert_ok(nn_model_adapt_batch(m, data, 4, &err), &err);
	assert_ok(nn_model_adapt_batch(m, data + 48, 6, &err), &err);
	assert_ok(nn_model_adapt_finish(m, &err), &err);
	assert_ok(nn_model_predict(m, y, data, 3, &err), &err);
	for (int i = 0; i < 36; i++)
		r[i] = (data[i] * (double) (1.0f / 255) - 0.5 - mean[i % 2]) /
			fmax(sqrt(var[i % 2]), 1e-7);
	assert_close_fd("rescale -> normalize forward", y, r, 36, 1e-5, 1e-4);
	nn_model_free(m);
}

/* Flatten and reshape keep the (H, W, C) order: they are views. */
static void
test_shapes_are_views(void **state)
{
	nn_layer_spec l[] = {nt_reshape3(2, 3, 4), nt_plain(NN_LAYER_FLATTEN),
	nt_reshape3(4, 3, 2), nt_plain(NN_LAYER_FLATTEN)};
	nn_model_spec spec = nt_spec(1, 24, 0, 0, l, 4);
	nn_model   *m = nt_create(&spec, 1);
	float		x[2 * 24],
				y[2 * 24];
	nn_error	err;

	(void) state;
	for (int i = 0; i < 48; i++)
		x[i] = (float) i;
	assert_ok(nn_model_prepare(m, 2, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, 2, &err), &err);
	assert_close_f("reshape/flatten round trip", y, x, 48, 0, 0);
	nn_model_free(m);
}

/* ---------- batching and threads ---------- */

/*
 * A CNN's predictions do not depend on how rows are batched or on the
 * thread count (up to float rounding of different GEMM shapes).
 */
static void
test_batching_and_threads(void **state)
{
	nn_layer_spec l[] = {nt_reshape3(9, 8, 2),
		nt_conv(4, 3, 3, 1, 1, true, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false),
		nt_conv(3, 2, 2, 1, 1, false, NN_ACT_TANH),
		nt_plain(NN_LAYER_FLATTEN),
	nt_dense(5, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 144, 0, 0, l, 6);
	nn_model   *m = nt_create(&spec, 9);
	const int32_t N = 23;
	float	   *x = nt_xmalloc(sizeof(float) * N * 144);
	float		all[23 * 5],
				one[23 * 5],
				t1[23 * 5];
	nn_rng		rng;
	nn_error	err;
	int			threads = nn_get_threads();

	(void) state;
	nn_rng_seed(&rng, 10);
	nt_fill(x, N * 144, &rng, -1, 1);
	assert_ok(nn_model_prepare(m, N, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, all, x, N, &err), &err);
	for (int32_t r = 0; r < N; r++)
		assert_ok(nn_model_predict(m, one + r * 5, x + r * 144, 1, &err), &err);
	assert_close_f("batch of 23 vs 23 single rows", all, one, N * 5, 1e-6, 1e-5);
	nn_set_threads(1);
	assert_ok(nn_model_predict(m, t1, x, N, &err), &err);
	nn_set_threads(threads);
	assert_close_f("1 thread vs the test's thread count", t1, all, N * 5, 1e-6,
				   1e-5);
	nn_model_free(m);
	free(x);
}

/*
 * A CNN large enough for every layer to split over threads (the core keeps
 * work under 2^20 multiply-adds on one thread): forward, loss, parameter
 * and input gradients at the test's thread count match one thread.
 */
static void
test_threaded_gradients(void **state)
{
	nn_layer_spec l[] = {nt_reshape3(32, 32, 3),
		nt_conv(16, 3, 3, 1, 1, true, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false),
		nt_conv(16, 3, 3, 1, 1, true, NN_ACT_TANH),
		nt_pool(NN_LAYER_AVGPOOL2D, 2, 2, 0, 0, false),
		nt_plain(NN_LAYER_FLATTEN),
		nt_dense(300, NN_ACT_ELU),
	nt_dense(10, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 3072, 0, 0, l, 8);
	nn_model   *m = nt_create(&spec, 4);
	const int32_t N = 67;
	int64_t		np = nt_flat_params(m);
	float	   *x = nt_xmalloc(sizeof(float) * N * 3072);
	float	   *dx1 = nt_xmalloc(sizeof(float) * N * 3072);
	float	   *dx2 = nt_xmalloc(sizeof(float) * N * 3072);
	float	   *g1 = nt_xmalloc(sizeof(float) * np);
	float		y[67],
				p1[67 * 10],
				p2[67 * 10];
	double		l1 = 0,
				l2 = 0;
	int64_t		c1 = 0,
				c2 = 0;
	nn_rng		rng;
	nn_error	err;
	int			threads = nn_get_threads();

	(void) state;
	nn_rng_seed(&rng, 12);
	nt_fill(x, (size_t) N * 3072, &rng, -1, 1);
	for (int i = 0; i < N; i++)
		y[i] = (float) (i % 10);
	nt_train_setup(m, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0, N);
	nn_set_threads(1);
	assert_ok(nn_model_predict(m, p1, x, N, &err), &err);
	assert_ok(nn_model_compute_gradients(m, dx1, x, y, N, NULL, &l1, &c1, &err),
			  &err);
	memcpy(g1, nn_model_grads(m), sizeof(float) * np);
	nn_set_threads(threads > 1 ? threads : 2);
	assert_ok(nn_model_predict(m, p2, x, N, &err), &err);
	assert_ok(nn_model_compute_gradients(m, dx2, x, y, N, NULL, &l2, &c2, &err),
			  &err);
	nn_set_threads(threads);
	assert_close_f("threads: predictions", p2, p1, N * 10, 1e-6, 1e-5);
	assert_scalar_close("threads: loss", l2, l1, 1e-6, 1e-6);
	assert_int_equal(c1, c2);
	assert_close_f("threads: parameter gradients", nn_model_grads(m), g1, np,
				   1e-6, 1e-4);
	assert_close_f("threads: input gradients", dx2, dx1, (size_t) N * 3072, 1e-7,
				   1e-4);
	nn_model_free(m);
	free(x);
	free(dx1);
	free(dx2);
	free(g1);
}

/* Run the kernel suite. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dense_naive),
		cmocka_unit_test(test_conv_naive),
		cmocka_unit_test(test_bytes_to_floats),
		cmocka_unit_test(test_maxpool_naive),
		cmocka_unit_test(test_avgpool_naive),
		cmocka_unit_test(test_maxpool_negative),
		cmocka_unit_test(test_activation_forward),
		cmocka_unit_test(test_activation_extremes),
		cmocka_unit_test(test_rescale_normalize_forward),
		cmocka_unit_test(test_shapes_are_views),
		cmocka_unit_test(test_batching_and_threads),
		cmocka_unit_test(test_threaded_gradients),
	};

	return NT_RUN(tests);
}
