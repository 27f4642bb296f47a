/*
 * test_augment.c: the augmentation layers' forward pass (augment.c) against
 * naive references, their identity at inference, and their repeatability.
 *
 * The training-mode output is read through the public API with
 * nt_train_output (a probe dense layer whose kernel gradient is the output
 * exactly).  Warps whose parameters are fixed by a degenerate range
 * ([f, f]) are compared with direct index arithmetic: translations by whole
 * pixels with every fill mode, quarter and half turns, zooms by 2 and by 1
 * (the identity).  Random layers are checked for what any draw must give
 * (a flip of each row, a window of the image, a contrast multiplier or a
 * brightness shift in range, noise of the right spread), for using both
 * choices over enough rows, and for giving the same values for the same
 * seed, other values for another, and the same values and input gradients
 * with 1 and 2 threads on batches large enough to be split.  At inference
 * every layer but random_crop is the identity (predictions equal the model
 * without it), and random_crop takes the centre window.  Gradients are
 * checked in test_layers.c.
 */
#include <math.h>

#include "nn_test.h"

/* Image (H, W, C) index. */
#define AT(i, j, c) (((size_t) (i) * W + (j)) * C + (c))

/* An axis index mapped by a fill mode; -1 for the fill value. */
static int64_t
ref_index(int64_t i, int64_t n, nn_fill_mode mode)
{
	if (i >= 0 && i < n)
		return i;
	switch (mode)
	{
		case NN_FILL_REFLECT:
			/* d c b a | a b c d | d c b a, by walking */
			while (i < 0 || i >= n)
				i = i < 0 ? -i - 1 : 2 * n - 1 - i;
			return i;
		case NN_FILL_WRAP:
			while (i < 0)
				i += n;
			return i % n;
		case NN_FILL_NEAREST:
			return i < 0 ? 0 : n - 1;
		default:
			return -1;
	}
}

/* The input read at integer point (si, sj), by the fill mode. */
static float
ref_read(const float *x, int32_t H, int32_t W, int32_t C, int64_t si,
		 int64_t sj, int32_t c, nn_fill_mode mode, float fill)
{
	int64_t		i = ref_index(si, H, mode),
				j = ref_index(sj, W, mode);

	return i < 0 || j < 0 ? fill : x[AT(i, j, c)];
}

static const char *const fill_names[] = {"reflect", "wrap", "constant", "nearest"};

/* ---------- warps with known parameters ---------- */

/*
 * Translations by whole pixels, with each fill mode: height 0.25 of 8 rows
 * is 2 down and width -0.5 of 4 columns 2 left, so y(i, j) = x(i - 2,
 * j + 2); then a whole height down and 3 columns right, and 7 rows up and
 * a whole width left (every read outside the image).
 */
static void
test_translation_whole_pixels(void **state)
{
	const int32_t H = 8,
				W = 4,
				C = 2,
				B = 2;
	static const float shifts[][2] = {{0.25f, -0.5f}, {1.0f, 0.75f}, {-0.875f, -1.0f}};
	float		x[2 * 8 * 4 * 2];
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 3);
	nt_fill(x, (size_t) B * H * W * C, &rng, -1, 1);
	for (int f = NN_FILL_REFLECT; f <= NN_FILL_NEAREST; f++)
		for (int s = 0; s < 3; s++)
		{
			float		hf = shifts[s][0],
						wf = shifts[s][1];
			nn_layer_spec l[] = {nt_random_translation(hf, hf, wf, wf, (nn_fill_mode) f,
													   0.75f)};
			int64_t		di = (int64_t) (hf * H),
						dj = (int64_t) (wf * W);
			size_t		k;
			float	   *y = nt_train_output(l, 1, 3, H, W, C, x, B, 9, &k);
			double	   *ref = nt_xmalloc(sizeof(double) * B * H * W * C);
			char		what[96];

			assert_int_equal(k, (size_t) H * W * C);
			for (int32_t b = 0; b < B; b++)
				for (int32_t i = 0; i < H; i++)
					for (int32_t j = 0; j < W; j++)
						for (int32_t c = 0; c < C; c++)
							ref[b * k + AT(i, j, c)] =
								ref_read(x + b * k, H, W, C, i - di, j - dj, c,
										 (nn_fill_mode) f, 0.75f);
			snprintf(what, sizeof(what), "translation by (%d, %d) pixels, %s",
					 (int) di, (int) dj, fill_names[f]);
			assert_close_fd(what, y, ref, (size_t) B * k, 1e-6, 1e-6);
			free(y);
			free(ref);
		}
}

/*
 * Rotations of a square image about its centre: a quarter turn
 * counter-clockwise gives y(i, j) = x(j, N-1-i), a quarter turn back
 * x(N-1-j, i), a half turn x(N-1-i, N-1-j); on a 5x5 and a 4x4 image (centre
 * between pixels).
 */
static void
test_rotation_quarter_turns(void **state)
{
	(void) state;
	for (int32_t N = 4; N <= 5; N++)
	{
		const int32_t W = N,
					C = 3,
					B = 2;
		float	   *x = nt_xmalloc(sizeof(float) * B * N * N * C);
		static const float turns[] = {0.25f, -0.25f, 0.5f, -0.5f, 1.0f};
		nn_rng		rng;

		nn_rng_seed(&rng, 4);
		nt_fill(x, (size_t) B * N * N * C, &rng, -1, 1);
		for (int t = 0; t < 5; t++)
		{
			nn_layer_spec l[] = {nt_random_rotation(turns[t], turns[t], NN_FILL_CONSTANT, 9.0f)};
			size_t		k;
			float	   *y = nt_train_output(l, 1, 3, N, N, C, x, B, 5, &k);
			double	   *ref = nt_xmalloc(sizeof(double) * B * k);
			char		what[64];

			for (int32_t b = 0; b < B; b++)
				for (int32_t i = 0; i < N; i++)
					for (int32_t j = 0; j < N; j++)
						for (int32_t c = 0; c < C; c++)
						{
							int32_t		si,
										sj;

							if (turns[t] == 0.25f)
								si = j, sj = N - 1 - i;
							else if (turns[t] == -0.25f)
								si = N - 1 - j, sj = i;
							else if (turns[t] == 1.0f)
								si = i, sj = j;
							else
								si = N - 1 - i, sj = N - 1 - j;
							ref[b * k + AT(i, j, c)] = x[b * k + AT(si, sj, c)];
						}
			snprintf(what, sizeof(what), "rotation by %g turns of %dx%d", turns[t],
					 N, N);
			assert_close_fd(what, y, ref, (size_t) B * k, 1e-5, 1e-5);
			free(y);
			free(ref);
		}
		free(x);
	}
}

/*
 * Zooms with known factors on a 5x6 image (centre (2, 2.5)): zoom 0 is the
 * identity; a width factor of 1 (zoom 2, out) with the height unchanged
 * reads column 2 j - 2.5, halfway between two columns, as their mean
 * (mapped by the fill mode); a height factor of 1 alone, absent width, zooms
 * both axes: rows 2 i - 2, columns 2 j - 2.5.
 */
static void
test_zoom_known_factors(void **state)
{
	const int32_t H = 5,
				W = 6,
				C = 2,
				B = 2;
	float		x[2 * 5 * 6 * 2];
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 6);
	nt_fill(x, (size_t) B * H * W * C, &rng, -1, 1);
	for (int f = NN_FILL_REFLECT; f <= NN_FILL_NEAREST; f++)
		for (int z = 0; z < 3; z++)
		{
			nn_layer_spec l[1];
			size_t		k;
			float	   *y;
			double	   *ref = nt_xmalloc(sizeof(double) * B * H * W * C);
			char		what[96];

			if (z == 0)
				l[0] = nt_random_zoom(0, 0, 0, 0, (nn_fill_mode) f, 0.5f);
			else if (z == 1)
				l[0] = nt_random_zoom(0, 0, 1, 1, (nn_fill_mode) f, 0.5f);
			else
				l[0] = nt_random_zoom(1, 1, NAN, NAN, (nn_fill_mode) f, 0.5f);
			y = nt_train_output(l, 1, 3, H, W, C, x, B, 7, &k);
			for (int32_t b = 0; b < B; b++)
				for (int32_t i = 0; i < H; i++)
					for (int32_t j = 0; j < W; j++)
						for (int32_t c = 0; c < C; c++)
						{
							const float *xb = x + b * k;
							int64_t		si = z == 2 ? 2 * i - 2 : i;
							double		v;

							if (z == 0)
								v = xb[AT(i, j, c)];
							else
								v = 0.5 * ref_read(xb, H, W, C, si, 2 * j - 3, c,
												   (nn_fill_mode) f, 0.5f) +
									0.5 * ref_read(xb, H, W, C, si, 2 * j - 2, c,
												   (nn_fill_mode) f, 0.5f);
							ref[b * k + AT(i, j, c)] = v;
						}
			snprintf(what, sizeof(what), "zoom case %d, %s", z, fill_names[f]);
			assert_close_fd(what, y, ref, (size_t) B * k, 1e-6, 1e-6);
			free(y);
			free(ref);
		}
}

/*
 * Zoom without a width factor draws once for both axes: on a square image
 * symmetric about its diagonal, every row's output is symmetric too; with a
 * width factor of the same range, drawn on its own, some row is not.
 */
static void
test_zoom_one_draw(void **state)
{
	const int32_t N = 7,
				W = 7,
				C = 1,
				B = 16;
	float	   *x = nt_xmalloc(sizeof(float) * B * N * N);
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 8);
	for (int32_t b = 0; b < B; b++)
		for (int32_t i = 0; i < N; i++)
			for (int32_t j = 0; j <= i; j++)
				x[b * N * N + AT(i, j, 0)] = x[b * N * N + AT(j, i, 0)] =
					nn_rng_uniform(&rng);
	for (int own = 0; own < 2; own++)
	{
		nn_layer_spec l[] = {nt_random_zoom(-0.5f, 0.5f, own ? -0.5f : NAN,
											own ? 0.5f : NAN, NN_FILL_REFLECT, 0)};
		size_t		k;
		float	   *y = nt_train_output(l, 1, 3, N, N, 1, x, B, 21, &k);
		double		worst = 0;

		for (int32_t b = 0; b < B; b++)
			for (int32_t i = 0; i < N; i++)
				for (int32_t j = 0; j < N; j++)
					worst = fmax(worst, fabs((double) y[b * k + AT(i, j, 0)] -
											 y[b * k + AT(j, i, 0)]));
		if (own)
			assert_true(worst > 1e-3);
		else if (worst > 1e-6)
			fail_msg("zoom with the height's draw for the width is not symmetric: %g",
					 worst);
		free(y);
	}
	free(x);
}

/* ---------- random layers: what every draw must give ---------- */

/* Each row is the image or one of its flips the mode allows; all occur. */
static void
test_flip_rows(void **state)
{
	const int32_t H = 3,
				W = 4,
				C = 2,
				B = 32;
	size_t		k = (size_t) H * W * C;
	float	   *x = nt_xmalloc(sizeof(float) * B * k);
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 9);
	nt_fill_distinct(x, B * k, &rng, 0, 1);
	for (int mode = NN_FLIP_HORIZONTAL; mode <= NN_FLIP_BOTH; mode++)
	{
		nn_layer_spec l[] = {nt_random_flip((nn_flip_mode) mode)};
		size_t		ko;
		float	   *y = nt_train_output(l, 1, 3, H, W, C, x, B, 30 + mode, &ko);
		int			seen[4] = {0};

		assert_int_equal(ko, k);
		for (int32_t b = 0; b < B; b++)
		{
			int			which = -1;

			/* variant v: bit 0 width flipped, bit 1 height flipped */
			for (int v = 0; v < 4 && which < 0; v++)
			{
				bool		same = true;

				for (int32_t i = 0; i < H && same; i++)
					for (int32_t j = 0; j < W && same; j++)
						for (int32_t c = 0; c < C && same; c++)
							same = y[b * k + AT(i, j, c)] ==
								x[b * k + AT(v & 2 ? H - 1 - i : i,
											 v & 1 ? W - 1 - j : j, c)];
				if (same)
					which = v;
			}
			if (which < 0)
				fail_msg("mode %d: row %d is not a flip of its input", mode, b);
			seen[which]++;
		}
		print_message("flip mode %d: %d %d %d %d rows as is, width, height, both flipped\n",
					  mode, seen[0], seen[1], seen[2], seen[3]);
		assert_true(seen[0] > 0);
		assert_int_equal(seen[1] > 0, mode != NN_FLIP_VERTICAL);
		assert_int_equal(seen[2] > 0, mode != NN_FLIP_HORIZONTAL);
		assert_int_equal(seen[3] > 0, mode == NN_FLIP_BOTH);
		free(y);
	}
	free(x);
}

/* Training: windows of the image at many places; inference: the centre. */
static void
test_crop_windows(void **state)
{
	const int32_t H = 6,
				W = 5,
				C = 2,
				B = 32,
				h = 3,
				w = 2;
	size_t		k = (size_t) H * W * C;
	float	   *x = nt_xmalloc(sizeof(float) * B * k);
	nn_layer_spec l[] = {nt_random_crop(h, w)};
	nn_model_spec spec = nt_spec(3, H, W, C, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	size_t		ko;
	float	   *y;
	float	   *p = nt_xmalloc(sizeof(float) * B * h * w * C);
	bool		at[4][4] = {{false}};
	int			places = 0;
	nn_rng		rng;
	nn_error	err;
	nn_layer_info info;

	(void) state;
	nn_rng_seed(&rng, 10);
	nt_fill_distinct(x, B * k, &rng, 0, 1);
	nn_model_layer_info(m, 0, &info);
	assert_int_equal(info.rank, 3);
	assert_int_equal(info.shape[0], h);
	assert_int_equal(info.shape[1], w);
	assert_int_equal(info.shape[2], C);
	y = nt_train_output(l, 1, 3, H, W, C, x, B, 40, &ko);
	assert_int_equal(ko, (size_t) h * w * C);
	for (int32_t b = 0; b < B; b++)
	{
		/* the input value at the window's first cell gives its place */
		int			top = -1,
					left = -1;

		for (int32_t i = 0; i < H; i++)
			for (int32_t j = 0; j < W; j++)
				if (x[b * k + AT(i, j, 0)] == y[b * ko])
					top = i, left = j;
		if (top < 0 || top > H - h || left > W - w)
			fail_msg("row %d does not start a window of its input", b);
		for (int32_t i = 0; i < h; i++)
			for (int32_t j = 0; j < w; j++)
				for (int32_t c = 0; c < C; c++)
					assert_true(y[b * ko + ((size_t) i * w + j) * C + c] ==
								x[b * k + AT(top + i, left + j, c)]);
		places += !at[top][left];
		at[top][left] = true;
	}
	print_message("random_crop: %d of 16 places in %d rows\n", places, B);
	assert_true(places >= 8);

	/* inference: the centre, rows 1..3 and columns 1..2 */
	assert_ok(nn_model_prepare(m, B, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, p, x, B, &err), &err);
	for (int32_t b = 0; b < B; b++)
		for (int32_t i = 0; i < h; i++)
			for (int32_t j = 0; j < w; j++)
				for (int32_t c = 0; c < C; c++)
					assert_true(p[b * ko + ((size_t) i * w + j) * C + c] ==
								x[b * k + AT((H - h) / 2 + i, (W - w) / 2 + j, c)]);
	nn_model_free(m);
	free(y);

	/* the whole image is the identity, training or not */
	{
		nn_layer_spec full[] = {nt_random_crop(H, W)};

		y = nt_train_output(full, 1, 3, H, W, C, x, B, 41, &ko);
		assert_memory_equal(y, x, sizeof(float) * B * k);
		free(y);
	}
	free(p);
	free(x);
}

/*
 * Each row is (x - mean_c) m + mean_c for one m in the range: a number f
 * gives [1 - f, 1 + f], [lower, upper] gives [1 + lower, 1 + upper].
 */
static void
test_contrast_rows(void **state)
{
	const int32_t H = 4,
				W = 3,
				C = 3,
				B = 16;
	size_t		k = (size_t) H * W * C;
	float	   *x = nt_xmalloc(sizeof(float) * B * k);
	static const float ranges[2][2] = {{-0.5f, 0.5f}, {0.2f, 0.6f}};
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 11);
	nt_fill(x, B * k, &rng, 0, 1);
	for (int r = 0; r < 2; r++)
	{
		nn_layer_spec l[] = {nt_random_contrast(ranges[r][0], ranges[r][1])};
		size_t		ko;
		float	   *y = nt_train_output(l, 1, 3, H, W, C, x, B, 50, &ko);
		double		lo = HUGE_VAL,
					hi = -HUGE_VAL;

		for (int32_t b = 0; b < B; b++)
		{
			const float *xb = x + b * k,
					   *yb = y + b * k;
			double		mean[3] = {0, 0, 0},
						num = 0,
						den = 0,
						mult;
			double	   *ref = nt_xmalloc(sizeof(double) * k);

			for (size_t s = 0; s < (size_t) H * W; s++)
				for (int32_t c = 0; c < C; c++)
					mean[c] += xb[s * C + c] / (double) (H * W);
			for (size_t s = 0; s < (size_t) H * W; s++)
				for (int32_t c = 0; c < C; c++)
				{
					num += (yb[s * C + c] - mean[c]) * (xb[s * C + c] - mean[c]);
					den += (xb[s * C + c] - mean[c]) * (xb[s * C + c] - mean[c]);
				}
			mult = num / den;
			for (size_t s = 0; s < (size_t) H * W; s++)
				for (int32_t c = 0; c < C; c++)
					ref[s * C + c] = (xb[s * C + c] - mean[c]) * mult + mean[c];
			assert_close_fd("contrast row", yb, ref, k, 1e-5, 1e-5);
			if (mult < 1 + ranges[r][0] - 1e-5 || mult > 1 + ranges[r][1] + 1e-5)
				fail_msg("contrast multiplier %g outside [%g, %g]", mult,
						 1 + ranges[r][0], 1 + ranges[r][1]);
			lo = fmin(lo, mult);
			hi = fmax(hi, mult);
			free(ref);
		}
		/* the draws spread over the range */
		assert_true(hi - lo > 0.5 * (ranges[r][1] - ranges[r][0]));
		free(y);
	}
	free(x);
}

/* Each row is clip(x + d (hi - lo), lo, hi) for one d in the range. */
static void
test_brightness_rows(void **state)
{
	const int32_t H = 3,
				W = 3,
				C = 2,
				B = 16;
	size_t		k = (size_t) H * W * C;
	float	   *x = nt_xmalloc(sizeof(float) * B * k);
	static const float cases[2][4] = {{-0.3f, 0.3f, NAN, NAN}, {0.1f, 0.2f, 0, 255}};
	nn_rng		rng;

	(void) state;
	for (int r = 0; r < 2; r++)
	{
		nn_layer_spec l[] = {nt_random_brightness(cases[r][0], cases[r][1],
												  cases[r][2], cases[r][3])};
		float		vlo = r ? 0.0f : 0.0f,
					vhi = r ? 255.0f : 1.0f;
		size_t		ko;
		float	   *y;
		int			clipped = 0;

		nn_rng_seed(&rng, 12);
		nt_fill(x, B * k, &rng, vlo, vhi);
		y = nt_train_output(l, 1, 3, H, W, C, x, B, 60, &ko);
		for (int32_t b = 0; b < B; b++)
		{
			const float *xb = x + b * k,
					   *yb = y + b * k;
			double		shift = NAN;

			/* the shift from a value that was not clipped */
			for (size_t i = 0; i < k && isnan(shift); i++)
				if (yb[i] > vlo && yb[i] < vhi)
					shift = (double) yb[i] - xb[i];
			assert_false(isnan(shift));
			if (shift < cases[r][0] * (vhi - vlo) - 1e-4 ||
				shift > cases[r][1] * (vhi - vlo) + 1e-4)
				fail_msg("brightness shift %g outside the range", shift);
			for (size_t i = 0; i < k; i++)
			{
				double		v = fmin(fmax(xb[i] + shift, vlo), vhi);

				if (fabs(yb[i] - v) > 1e-4 * (vhi - vlo))
					fail_msg("brightness row %d value %zu: %g, expected %g", b, i,
							 yb[i], v);
				clipped += yb[i] == vlo || yb[i] == vhi;
			}
		}
		assert_true(clipped > 0);
		free(y);
	}
	free(x);
}

/* Noise of mean 0 and the given spread, another in every row. */
static void
test_noise_stats(void **state)
{
	const int32_t H = 32,
				W = 32,
				C = 1,
				B = 16;
	size_t		k = (size_t) H * W * C;
	float	   *x = nt_xmalloc(sizeof(float) * B * k);
	nn_layer_spec l[] = {nt_gaussian_noise(0.2f)};
	size_t		ko;
	float	   *y;
	double		sum = 0,
				sum2 = 0,
				sum4 = 0,
				n = (double) B * k;
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 13);
	nt_fill(x, B * k, &rng, -1, 1);
	y = nt_train_output(l, 1, 3, H, W, C, x, B, 70, &ko);
	for (size_t i = 0; i < B * k; i++)
	{
		double		d = (double) y[i] - x[i];

		sum += d;
		sum2 += d * d;
		sum4 += d * d * d * d;
	}
	print_message("gaussian_noise 0.2: mean %.5f, sd %.5f, kurtosis %.3f over %.0f values\n",
				  sum / n, sqrt(sum2 / n), sum4 / n / (sum2 / n) / (sum2 / n), n);
	assert_true(fabs(sum / n) < 0.005);
	assert_true(fabs(sqrt(sum2 / n) - 0.2) < 0.004);
	/* a normal's kurtosis is 3 (a uniform's 1.8) */
	assert_true(fabs(sum4 / n / (sum2 / n) / (sum2 / n) - 3.0) < 0.2);
	/* rows differ */
	assert_true(y[0] - x[0] != y[k] - x[k] || y[1] - x[1] != y[k + 1] - x[k + 1]);
	free(y);
	free(x);
}

/* ---------- inference ---------- */

/*
 * At inference the layers (but random_crop) are the identity: predictions
 * equal those of the model without them, bit for bit, and they allocate
 * no output buffer.
 */
static void
test_inference_identity(void **state)
{
	nn_layer_spec with[] = {nt_random_flip(NN_FLIP_BOTH),
		nt_random_translation(-0.2f, 0.2f, -0.3f, 0.1f, NN_FILL_WRAP, 0),
		nt_random_rotation(-0.1f, 0.3f, NN_FILL_CONSTANT, 1),
		nt_random_zoom(-0.2f, 0.4f, NAN, NAN, NN_FILL_NEAREST, 0),
		nt_random_contrast(-0.4f, 0.4f),
		nt_random_brightness(-0.2f, 0.2f, NAN, NAN),
		nt_gaussian_noise(0.3f),
		nt_random_crop(6, 5),
		nt_conv(3, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_plain(NN_LAYER_FLATTEN),
	nt_dense(4, NN_ACT_SOFTMAX)};
	nn_layer_spec without[] = {with[8], with[9], with[10]};
	nn_model_spec s1 = nt_spec(3, 6, 5, 2, with, 11),
				s2 = nt_spec(3, 6, 5, 2, without, 3);
	nn_model   *m1 = nt_create(&s1, 3),
			   *m2 = nt_create(&s2, 4);
	const int32_t B = 7;
	float		x[7 * 60],
				p1[7 * 4],
				p2[7 * 4];
	nn_rng		rng;
	nn_error	err;

	(void) state;
	assert_int_equal(nt_flat_params(m1), nt_flat_params(m2));
	memcpy(nn_model_params(m2), nn_model_params(m1),
		   sizeof(float) * nt_flat_params(m1));
	nn_rng_seed(&rng, 14);
	nt_fill(x, B * 60, &rng, 0, 1);
	assert_ok(nn_model_prepare(m1, B, false, 0, &err), &err);
	assert_ok(nn_model_prepare(m2, B, false, 0, &err), &err);
	assert_ok(nn_model_predict(m1, p1, x, B, &err), &err);
	assert_ok(nn_model_predict(m2, p2, x, B, &err), &err);
	assert_memory_equal(p1, p2, sizeof(p1));
	/* after training buffers were made, and a training step, still so */
	nt_train_setup(m1, NN_LOSS_CATEGORICAL_CE, NULL, 0, B);
	{
		float		t[7 * 4] = {0};
		double		loss = 0;
		int64_t		correct = 0;

		for (int r = 0; r < B; r++)
			t[r * 4 + r % 4] = 1;
		assert_ok(nn_model_compute_gradients(m1, NULL, x, t, B, &rng, &loss,
											 &correct, &err), &err);
	}
	assert_ok(nn_model_predict(m1, p1, x, B, &err), &err);
	assert_memory_equal(p1, p2, sizeof(p1));
	nn_model_free(m1);
	nn_model_free(m2);
}

/* ---------- repeatability ---------- */

/* Every kind with non-trivial ranges, for an image of C channels. */
static int
every_augment(nn_layer_spec *l, int32_t H, int32_t W)
{
	int			n = 0;

	l[n++] = nt_random_flip(NN_FLIP_BOTH);
	l[n++] = nt_random_translation(-0.2f, 0.3f, -0.25f, 0.25f, NN_FILL_REFLECT, 0);
	l[n++] = nt_random_rotation(-0.2f, 0.2f, NN_FILL_CONSTANT, 0.5f);
	l[n++] = nt_random_zoom(-0.3f, 0.3f, -0.1f, 0.5f, NN_FILL_WRAP, 0);
	l[n++] = nt_random_crop(H - 3, W - 2);
	l[n++] = nt_random_contrast(-0.5f, 0.5f);
	l[n++] = nt_random_brightness(-0.2f, 0.2f, NAN, NAN);
	l[n++] = nt_gaussian_noise(0.1f);
	return n;
}

/*
 * Same seed, same output; another seed, other output; for each kind and
 * for all of them in a stack.
 */
static void
test_same_seed(void **state)
{
	const int32_t H = 9,
				W = 8,
				C = 3,
				B = 8;
	size_t		k = (size_t) H * W * C;
	float	   *x = nt_xmalloc(sizeof(float) * B * k);
	nn_layer_spec l[8];
	int			n = every_augment(l, H, W);
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 15);
	nt_fill(x, B * k, &rng, 0, 1);
	for (int i = 0; i <= n; i++)
	{
		/* i < n: layer i alone; i == n: the whole stack */
		const nn_layer_spec *ls = i < n ? &l[i] : l;
		int32_t		nl = i < n ? 1 : n;
		size_t		k1,
					k2,
					k3;
		float	   *y1 = nt_train_output(ls, nl, 3, H, W, C, x, B, 100, &k1);
		float	   *y2 = nt_train_output(ls, nl, 3, H, W, C, x, B, 100, &k2);
		float	   *y3 = nt_train_output(ls, nl, 3, H, W, C, x, B, 101, &k3);
		const char *what = i < n ? nn_layer_kind_name(l[i].kind) : "the stack";

		assert_int_equal(k1, k2);
		if (memcmp(y1, y2, sizeof(float) * k1 * B) != 0)
			fail_msg("%s: same seed, other output", what);
		if (memcmp(y1, y3, sizeof(float) * k1 * B) == 0)
			fail_msg("%s: another seed, same output", what);
		free(y1);
		free(y2);
		free(y3);
	}
	free(x);
}

/*
 * The same outputs and input gradients with 1 and 2 threads, bit for bit,
 * on batches large enough that every layer splits its rows (64x64x16
 * images, 32 rows: two million values).  The gradients are of the layer
 * alone, as the model's output (a dense layer's own sgemm after it may
 * round differently with another split).
 */
static void
test_threads(void **state)
{
	const int32_t H = 64,
				W = 64,
				C = 16,
				B = 32;
	size_t		k = (size_t) H * W * C;
	float	   *x = nt_xmalloc(sizeof(float) * B * k);
	nn_layer_spec l[8];
	int			n = every_augment(l, H, W);
	int			saved = nn_get_threads();
	nn_rng		rng;

	(void) state;
	nn_rng_seed(&rng, 16);
	nt_fill(x, B * k, &rng, 0, 1);
	for (int i = 0; i < n; i++)
	{
		/* the layer alone under mse: dx is its backward of dy = 2 (y - t) / k n */
		nn_model_spec spec = nt_spec(3, H, W, C, &l[i], 1);
		nn_model   *m = nt_create(&spec, 5);
		float	   *y[2],
				   *dx[2],
				   *t = nt_xmalloc(sizeof(float) * B * nn_model_output_size(m));
		size_t		ko;

		nt_fill(t, B * nn_model_output_size(m), &rng, -1, 1);
		nt_train_setup(m, NN_LOSS_MSE, NULL, 0, B);
		for (int r = 0; r < 2; r++)
		{
			nn_rng		fr;
			nn_error	err;
			double		loss = 0;
			int64_t		correct = 0;

			nn_set_threads(r + 1);
			y[r] = nt_train_output(&l[i], 1, 3, H, W, C, x, B, 200, &ko);
			dx[r] = nt_xmalloc(sizeof(float) * B * k);
			nn_rng_seed(&fr, 201);
			assert_ok(nn_model_compute_gradients(m, dx[r], x, t, B, &fr, &loss,
												 &correct, &err), &err);
		}
		if (memcmp(y[0], y[1], sizeof(float) * ko * B) != 0)
			fail_msg("%s: outputs differ with 1 and 2 threads",
					 nn_layer_kind_name(l[i].kind));
		if (memcmp(dx[0], dx[1], sizeof(float) * k * B) != 0)
			fail_msg("%s: input gradients differ with 1 and 2 threads",
					 nn_layer_kind_name(l[i].kind));
		for (int r = 0; r < 2; r++)
		{
			free(y[r]);
			free(dx[r]);
		}
		free(t);
		nn_model_free(m);
	}
	nn_set_threads(saved);
	free(x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_translation_whole_pixels),
		cmocka_unit_test(test_rotation_quarter_turns),
		cmocka_unit_test(test_zoom_known_factors),
		cmocka_unit_test(test_zoom_one_draw),
		cmocka_unit_test(test_flip_rows),
		cmocka_unit_test(test_crop_windows),
		cmocka_unit_test(test_contrast_rows),
		cmocka_unit_test(test_brightness_rows),
		cmocka_unit_test(test_noise_stats),
		cmocka_unit_test(test_inference_identity),
		cmocka_unit_test(test_same_seed),
		cmocka_unit_test(test_threads),
	};

	return NT_RUN(tests);
}
