/*
 * augment.c: Keras's image augmentation layers (RandomFlip,
 * RandomTranslation, RandomRotation, RandomZoom, RandomCrop,
 * RandomContrast, RandomBrightness) and GaussianNoise.
 * https://keras.io/api/layers/preprocessing_layers/image_augmentation/
 *
 * Input (H, W, C), channels last (gaussian_noise: any shape).  They are
 * random only when training (a forward of NN_PASS_TRAIN); in prediction,
 * and differentiated as they predict (NN_PASS_DIFF), each is the
 * identity, except random_crop, which takes the centre window.
 * A layer whose ranges are all [0, 0] is the identity in training too
 * (translation, rotation, zoom, contrast; noise at stddev 0), as is a crop
 * as large as the image.
 *
 * Randomness.  Each row (sample) of a batch draws its few parameters, in
 * row order and serially, from the rng forward receives (the fit's rng);
 * u is nn_rng_uniform, in [0, 1), and "draw [a, b]" is a + (b - a) u in
 * double.  The parameters are kept per row in the layer's work buffer
 * (training only) for the backward pass; the rows are then transformed in
 * parallel.  So results depend on the seed only, not on the thread count.
 * gaussian_noise draws one 64-bit seed per row (nn_rng_next), and each row
 * generates its values from its own generator seeded with it.  A range
 * given as a number f is [-f, f].
 *
 * Coordinates: pixel (y, x) is row y, column x; the centre of the image is
 * (cy, cx) = ((H - 1) / 2, (W - 1) / 2), as Keras's transform matrices.
 *
 *   random_flip         mode "horizontal" (default), "vertical" or
 *       "horizontal_and_vertical".  Per row: fw = (u < 1/2) when horizontal
 *       flips are enabled, then fh = (u < 1/2) when vertical ones are.
 *       y(i, j) = x(fh ? H-1-i : i, fw ? W-1-j : j).  A permutation P, its
 *       own inverse: dx = P dy.
 *
 *   random_translation, random_rotation, random_zoom: one warp.  Per row
 *       an affine map A (2 x 2) and a shift t take an output pixel (i, j)
 *       to the input point
 *           sx = cx + A00 (j - cx) + A01 (i - cy) + tx
 *           sy = cy + A10 (j - cx) + A11 (i - cy) + ty
 *       (an inverse mapping), and the output is the bilinear interpolation
 *       of the input there: with x0 = floor(sx), ax = sx - x0 (y0, ay
 *       alike), y(i, j) = sum over the four neighbours (y0 + a, x0 + b),
 *       a, b in {0, 1}, of (a ? ay : 1 - ay) (b ? ax : 1 - ax) times the
 *       input at that neighbour, each neighbour's row and column mapped by
 *       fill_mode first (n = H or W):
 *           reflect   half-sample symmetric about the edge: index i taken
 *                     modulo 2n, then 2n - 1 - i when >= n (d c b a | a b
 *                     c d | d c b a), the default
 *           wrap      i modulo n (a b c d | a b c d | a b c d)
 *           nearest   clamped to [0, n - 1] (a a a a | a b c d | d d d d)
 *           constant  a neighbour outside reads fill_value (k k k k | a b
 *                     c d | k k k k)
 *       Points are clamped to +-2^22 first, so that any factor is safe.
 *       For fixed parameters y = S x + k (k: the constant fill), so the
 *       backward is the transpose: dx = S^T dy, each output's gradient
 *       scattered with the same four weights onto the same neighbours
 *       (nothing onto constant fill), row by row into that row's dx.
 *         random_translation  height_factor, width_factor (required; each
 *             bound in [-1, 1], fractions of the height and width),
 *             fill_mode, fill_value (0).  Per row: dy = H draw
 *             [height_factor], then dx = W draw [width_factor]; A = I,
 *             t = (-dx, -dy): the content moves dy down, dx right.
 *         random_rotation  factor (required; bounds in [-1, 1], fractions
 *             of a full turn), fill_mode, fill_value.  Per row: a =
 *             2 pi draw [factor]; A = [cos a, -sin a; sin a, cos a], t = 0
 *             (about the centre; Keras's matrix, positive is
 *             counter-clockwise).
 *         random_zoom  height_factor (required; bounds > -1), width_factor
 *             (bounds > -1; absent by default), fill_mode, fill_value.
 *             Per row: zh = 1 + draw [height_factor], then zw = 1 + draw
 *             [width_factor] when given, else zw = zh (one draw keeps the
 *             aspect ratio); A = diag(zw, zh), t = 0: a zoom above 1 reads
 *             a larger window, i.e. zooms out.
 *
 *   random_crop         height, width (required, at most the input's).
 *       Output (height, width, C): the window at (top, left) of the input.
 *       Training: top = below(H - height + 1), then left = below(W - width
 *       + 1) (nn_rng_below); inference: top = (H - height) / 2, left =
 *       (W - width) / 2, rounded down (the centre).  dx: dy in the window,
 *       zeros elsewhere.
 *
 *   random_contrast     factor (required; bounds in [-1, 1]).  Per row:
 *       m = 1 + draw [factor]: a number f gives m in [1 - f, 1 + f], as
 *       Keras; [lower, upper] gives m in [1 + lower, 1 + upper].  With
 *       mean_c the mean of channel c over the H W pixels of the row:
 *       y = (x - mean_c) m + mean_c.  dx = m dy + (1 - m) mean_c(dy).
 *
 *   random_brightness   factor (required; bounds in [-1, 1]), value_range
 *       [lo, hi] (default [0, 1], lo < hi).  Per row: d = draw [factor];
 *       y = clip(x + d (hi - lo), lo, hi).  dx = dy where x + d (hi - lo)
 *       is in [lo, hi], 0 where it was clipped.
 *
 *   gaussian_noise      stddev (required, >= 0).  y = x + stddev z, z
 *       standard normal per value, by Marsaglia's polar method in double
 *       from the row's generator: u, v = 2 b 2^-53 - 1 from the top 53
 *       bits b of two draws, again until 0 < q = u^2 + v^2 < 1; then
 *       u f, v f with f = sqrt(-2 ln q / q) are two consecutive values.
 *       dx = dy.
 *
 * Work buffer per row (training): flip 2 floats (fw, fh); warps 6 (A00
 * A01 A10 A11 tx ty); crop 2 (top, left as int32_t); contrast 1 + C (m,
 * then the channel means, in backward mean(dy)); brightness 1 (the shift
 * d (hi - lo)); noise 2 (the uint64_t seed).  A caller that trains without
 * an rng gets one seeded with 0.
 *
 * Where this differs from Keras: random_flip's default mode is
 * "horizontal" (Keras: "horizontal_and_vertical"); random_brightness's
 * value_range defaults to [0, 1] (Keras 3: [0, 255]), for images rescaled
 * to [0, 1]; random_contrast does not clip, and reads [lower, upper] as
 * multipliers [1 + lower, 1 + upper]; the warps map each neighbour by the
 * fill mode (TensorFlow maps the point, then clamps it), interpolate
 * bilinearly only, and take no seed of their own (the fit's seed drives
 * them); random_rotation's factor is bounded to a turn either way; and
 * random_crop at inference takes the centre window without resizing.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

#define TWO_PI 6.283185307179586476925286766559

/* Work floats per row: a warp's A00 A01 A10 A11 tx ty. */
#define WARP_PARAMS 6
/* Input points are clamped to +-LIMIT before their neighbours are found. */
#define LIMIT 4194304.0f

/* ---------- options ---------- */

static const nn_kind_option flip_options[] = {
	NN_TAKES(NN_OPTION_MODE, .def = NN_FLIP_HORIZONTAL),
};

static const nn_kind_option translation_options[] = {
	NN_TAKES(NN_OPTION_HEIGHT_FACTOR, .def = 0, .required = true),
	NN_TAKES(NN_OPTION_WIDTH_FACTOR, .def = 0, .required = true),
	NN_TAKES(NN_OPTION_FILL_MODE, .def = NN_FILL_REFLECT),
	NN_TAKES(NN_OPTION_FILL_VALUE, .def = 0),
};

static const nn_kind_option rotation_options[] = {
	NN_TAKES(NN_OPTION_FACTOR, .def = 0, .required = true),
	NN_TAKES(NN_OPTION_FILL_MODE, .def = NN_FILL_REFLECT),
	NN_TAKES(NN_OPTION_FILL_VALUE, .def = 0),
};

static const nn_kind_option zoom_options[] = {
	NN_TAKES(NN_OPTION_HEIGHT_FACTOR, .def = 0, .required = true),
	NN_TAKES(NN_OPTION_WIDTH_FACTOR, .def = NAN),
	NN_TAKES(NN_OPTION_FILL_MODE, .def = NN_FILL_REFLECT),
	NN_TAKES(NN_OPTION_FILL_VALUE, .def = 0),
};

static const nn_kind_option crop_options[] = {
	NN_TAKES(NN_OPTION_HEIGHT, .def = 0, .required = true),
	NN_TAKES(NN_OPTION_WIDTH, .def = 0, .required = true),
};

static const nn_kind_option contrast_options[] = {
	NN_TAKES(NN_OPTION_FACTOR, .def = 0, .required = true),
};

static const nn_kind_option brightness_options[] = {
	NN_TAKES(NN_OPTION_FACTOR, .def = 0, .required = true),
	NN_TAKES(NN_OPTION_VALUE_RANGE, .def = NAN),
};

static const nn_kind_option noise_options[] = {
	NN_TAKES(NN_OPTION_STDDEV, .def = 0, .required = true),
};

/* ---------- shared ---------- */

static inline bool
range_zero(const float r[2])
{
	return r[0] == 0.0f && r[1] == 0.0f;
}

/* The fit's rng, or a fixed one when a caller trains without any. */
static nn_rng *
rng_or_fixed(nn_rng *rng, nn_rng *fixed)
{
	if (rng)
		return rng;
	nn_rng_seed(fixed, 0);
	return fixed;
}

/* draw [a, b]: a + (b - a) u in double. */
static double
draw(nn_rng *rng, const float r[2])
{
	return r[0] + ((double) r[1] - r[0]) * nn_rng_uniform(rng);
}

/* Work row b of a layer with k floats per row. */
static inline float *
work_row(const nn_layer *l, int32_t b, size_t k)
{
	return l->work + (size_t) b * k;
}

/* int32_t values (crop windows) kept in the float work buffer. */
static inline void
put_i32(float *p, int32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline int32_t
get_i32(const float *p)
{
	int32_t		v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Only images: (H, W, C). */
static nn_status
image_infer(nn_layer *l, nn_error *err)
{
	if (l->in_rank != 3)
		return NN_LAYER_FAIL(l, err, "input must be an image (height, width, channels), not of rank %d",
							 l->in_rank);
	return NN_OK;
}

/* ---------- random_flip ---------- */

static bool
flip_identity(const nn_layer *l, nn_pass pass)
{
	(void) l;
	return pass != NN_PASS_TRAIN;
}

/* Two flags per row: width flipped, height flipped. */
static void
flip_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (!flip_identity(l, pass))
		b->work = 2;
}

/*
 * dst(i, j) = src(fh ? H-1-i : i, fw ? W-1-j : j): the flip, and its
 * transpose, which is itself.
 */
static NN_SIMD void
flip_image(float *restrict dst, const float *restrict src, int32_t H,
		   int32_t W, int32_t C, bool fw, bool fh)
{
	size_t		ws = (size_t) W * C;

	for (int32_t i = 0; i < H; i++)
	{
		const float *s = src + (size_t) (fh ? H - 1 - i : i) * ws;
		float	   *d = dst + (size_t) i * ws;

		if (!fw)
		{
			memcpy(d, s, sizeof(float) * ws);
			continue;
		}
		if (C == 1)
			for (int32_t j = 0; j < W; j++)
				d[j] = s[W - 1 - j];
		else
			for (int32_t j = 0; j < W; j++)
				memcpy(d + (size_t) j * C, s + (size_t) (W - 1 - j) * C,
					   sizeof(float) * C);
	}
}

static nn_status
flip_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass, nn_rng *rng,
			 nn_error *err)
{
	nn_rng		fixed;
	int32_t		H = l->in_shape[0],
				W = l->in_shape[1],
				C = l->in_shape[2];
	bool		hor = l->spec.mode != NN_FLIP_VERTICAL,
				ver = l->spec.mode != NN_FLIP_HORIZONTAL;

	(void) m, (void) pass, (void) err;
	rng = rng_or_fixed(rng, &fixed);
	for (int32_t b = 0; b < n; b++)
	{
		float	   *p = work_row(l, b, 2);

		p[0] = hor && nn_rng_uniform(rng) < 0.5f;
		p[1] = ver && nn_rng_uniform(rng) < 0.5f;
	}
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->out_size, n))
	for (int32_t b = 0; b < n; b++)
	{
		const float *p = work_row(l, b, 2);

		flip_image(l->ybuf + (size_t) b * l->out_size,
				   l->x + (size_t) b * l->in_size, H, W, C, p[0] != 0.0f,
				   p[1] != 0.0f);
	}
	return NN_OK;
}

static void
flip_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	int32_t		H = l->in_shape[0],
				W = l->in_shape[1],
				C = l->in_shape[2];

	(void) m;
	if (dx == NULL)
		return;
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->out_size, n))
	for (int32_t b = 0; b < n; b++)
	{
		const float *p = work_row(l, b, 2);

		flip_image(dx + (size_t) b * l->in_size, dy + (size_t) b * l->out_size,
				   H, W, C, p[0] != 0.0f, p[1] != 0.0f);
	}
}

/* ---------- the warp: random_translation, random_rotation, random_zoom ---------- */

/* A kind's parameters of one row: A00 A01 A10 A11 tx ty. */
typedef void (*warp_draw_fn) (const nn_layer *l, nn_rng *rng, float *p);

typedef struct warp_impl
{
	warp_draw_fn draw;
} warp_impl;

typedef struct warp_geom
{
	int32_t		H,
				W,
				C;
	float		cy,
				cx;
	int32_t		fill_mode;
	float		fill_value;
} warp_geom;

/* The four neighbours of an input point: float offsets (-1: fill) and
 * bilinear weights, in the order (y0, x0), (y0, x1), (y1, x0), (y1, x1). */
typedef struct warp_taps
{
	int64_t		at[4];
	float		w[4];
} warp_taps;

static warp_geom
warp_geom_of(const nn_layer *l)
{
	warp_geom	g;

	g.H = l->in_shape[0];
	g.W = l->in_shape[1];
	g.C = l->in_shape[2];
	g.cy = (float) (((double) g.H - 1.0) / 2.0);
	g.cx = (float) (((double) g.W - 1.0) / 2.0);
	g.fill_mode = l->spec.fill_mode;
	g.fill_value = l->spec.fill_value;
	return g;
}

/* Index i on an axis of n pixels, by the fill mode; -1: the fill value. */
static inline int64_t
fill_index(int64_t i, int64_t n, int32_t mode)
{
	if ((uint64_t) i < (uint64_t) n)
		return i;
	switch (mode)
	{
		case NN_FILL_REFLECT:
			{
				int64_t		p = 2 * n;

				/* within one image of the edge (the common case) no division */
				if (i < -n || i >= p)
				{
					i %= p;
					i = i < 0 ? i + p : i;
				}
				else if (i < 0)
					i += p;
				return i < n ? i : p - 1 - i;
			}
		case NN_FILL_WRAP:
			if (i < -n || i >= 2 * n)
			{
				i %= n;
				return i < 0 ? i + n : i;
			}
			return i < 0 ? i + n : i - n;
		case NN_FILL_NEAREST:
			return i < 0 ? 0 : n - 1;
		default:
			return -1;
	}
}

/*
 * The input point of output pixel (i, j): x0, y0 and the fractions ax, ay.
 * Also true when all four neighbours are inside the image (no fill).
 */
static inline bool
warp_point(const warp_geom *g, const float *p, int32_t i, int32_t j,
		   int32_t *x0, int32_t *y0, float *ax, float *ay)
{
	float		dj = (float) j - g->cx,
				di = (float) i - g->cy;
	float		sx = g->cx + p[0] * dj + p[1] * di + p[4];
	float		sy = g->cy + p[2] * dj + p[3] * di + p[5];
	float		fx,
				fy;

	/* branch-free clamps (a library call each as fminf and fmaxf) */
	sx = sx > -LIMIT ? sx : -LIMIT;
	sx = sx < LIMIT ? sx : LIMIT;
	sy = sy > -LIMIT ? sy : -LIMIT;
	sy = sy < LIMIT ? sy : LIMIT;
	/* floor by conversion (floorf is a library call without SSE4.1) */
	*x0 = (int32_t) sx;
	*x0 -= (float) *x0 > sx;
	*y0 = (int32_t) sy;
	*y0 -= (float) *y0 > sy;
	fx = (float) *x0;
	fy = (float) *y0;
	*ax = sx - fx;
	*ay = sy - fy;
	return *x0 >= 0 && *x0 < g->W - 1 && *y0 >= 0 && *y0 < g->H - 1;
}

/* The four neighbours of a point near or past the edge, by the fill mode. */
static inline void
warp_edge_taps(warp_taps *t, const warp_geom *g, int32_t x0, int32_t y0,
			   float ax, float ay)
{
	int64_t		xs[2],
				ys[2];

	xs[0] = fill_index(x0, g->W, g->fill_mode);
	xs[1] = fill_index((int64_t) x0 + 1, g->W, g->fill_mode);
	ys[0] = fill_index(y0, g->H, g->fill_mode);
	ys[1] = fill_index((int64_t) y0 + 1, g->H, g->fill_mode);
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < 2; b++)
			t->at[2 * a + b] = ys[a] < 0 || xs[b] < 0 ? -1 :
				(ys[a] * g->W + xs[b]) * g->C;
	t->w[0] = (1.0f - ay) * (1.0f - ax);
	t->w[1] = (1.0f - ay) * ax;
	t->w[2] = ay * (1.0f - ax);
	t->w[3] = ay * ax;
}

/*
 * One image: y (H, W, C) sampled from x with the row's parameters p.
 * Points whose four neighbours are inside read them directly; the others
 * go through the fill mode (the same weights, the same sum order).
 */
static NN_SIMD void
warp_image(const warp_geom *gp, const float *p, const float *restrict x,
		   float *restrict y)
{
	const warp_geom g = *gp;
	/* private, so that stores through y cannot alias it */
	const int32_t C = g.C;
	const size_t ws = (size_t) g.W * C;

	for (int32_t i = 0; i < g.H; i++)
		for (int32_t j = 0; j < g.W; j++)
		{
			float	   *restrict o = y + ((size_t) i * g.W + j) * C;
			int32_t		x0,
						y0;
			float		ax,
						ay;
			warp_taps	t;

			if (warp_point(&g, p, i, j, &x0, &y0, &ax, &ay))
			{
				const float *s0 = x + (size_t) y0 * ws + (size_t) x0 * C,
						   *s1 = s0 + ws;
				float		w0 = (1.0f - ay) * (1.0f - ax),
							w1 = (1.0f - ay) * ax,
							w2 = ay * (1.0f - ax),
							w3 = ay * ax;

				if (C == 1)
					o[0] = w0 * s0[0] + w1 * s0[1] + w2 * s1[0] + w3 * s1[1];
				else
					for (int32_t c = 0; c < C; c++)
						o[c] = w0 * s0[c] + w1 * s0[C + c] + w2 * s1[c] +
							w3 * s1[C + c];
				continue;
			}
			warp_edge_taps(&t, &g, x0, y0, ax, ay);
			for (int32_t c = 0; c < C; c++)
			{
				float		v = 0.0f;

				for (int k = 0; k < 4; k++)
					v += t.w[k] * (t.at[k] < 0 ? g.fill_value : x[t.at[k] + c]);
				o[c] = v;
			}
		}
}

/* The transpose: dx (H, W, C) = S^T dy, onto the same neighbours. */
static NN_SIMD void
warp_image_back(const warp_geom *gp, const float *p, const float *restrict dy,
				float *restrict dx)
{
	const warp_geom g = *gp;
	const int32_t C = g.C;
	const size_t ws = (size_t) g.W * C;

	memset(dx, 0, sizeof(float) * (size_t) g.H * ws);
	for (int32_t i = 0; i < g.H; i++)
		for (int32_t j = 0; j < g.W; j++)
		{
			const float *go = dy + ((size_t) i * g.W + j) * C;
			int32_t		x0,
						y0;
			float		ax,
						ay;
			warp_taps	t;

			if (warp_point(&g, p, i, j, &x0, &y0, &ax, &ay))
			{
				float	   *d0 = dx + (size_t) y0 * ws + (size_t) x0 * C,
						   *d1 = d0 + ws;
				float		w0 = (1.0f - ay) * (1.0f - ax),
							w1 = (1.0f - ay) * ax,
							w2 = ay * (1.0f - ax),
							w3 = ay * ax;

				if (C == 1)
				{
					d0[0] += w0 * go[0];
					d0[1] += w1 * go[0];
					d1[0] += w2 * go[0];
					d1[1] += w3 * go[0];
				}
				else
					for (int32_t c = 0; c < C; c++)
					{
						d0[c] += w0 * go[c];
						d0[C + c] += w1 * go[c];
						d1[c] += w2 * go[c];
						d1[C + c] += w3 * go[c];
					}
				continue;
			}
			warp_edge_taps(&t, &g, x0, y0, ax, ay);
			for (int k = 0; k < 4; k++)
			{
				float	   *d;
				float		w = t.w[k];

				if (t.at[k] < 0)
					continue;
				d = dx + t.at[k];
				for (int32_t c = 0; c < C; c++)
					d[c] += w * go[c];
			}
		}
}

/* Bilinear sampling: about this many operations per output value. */
#define WARP_COST 24.0

static nn_status
warp_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass, nn_rng *rng,
			 nn_error *err)
{
	const warp_impl *impl = l->type->impl;
	const warp_geom g = warp_geom_of(l);
	nn_rng		fixed;

	(void) m, (void) pass, (void) err;
	rng = rng_or_fixed(rng, &fixed);
	for (int32_t b = 0; b < n; b++)
		impl->draw(l, rng, work_row(l, b, WARP_PARAMS));
#pragma omp parallel for schedule(static) \
	if (nn_par((double) n * l->out_size * WARP_COST, n))
	for (int32_t b = 0; b < n; b++)
		warp_image(&g, work_row(l, b, WARP_PARAMS),
				   l->x + (size_t) b * l->in_size,
				   l->ybuf + (size_t) b * l->out_size);
	return NN_OK;
}

static void
warp_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	const warp_geom g = warp_geom_of(l);

	(void) m;
	if (dx == NULL)
		return;
#pragma omp parallel for schedule(static) \
	if (nn_par((double) n * l->out_size * WARP_COST, n))
	for (int32_t b = 0; b < n; b++)
		warp_image_back(&g, work_row(l, b, WARP_PARAMS),
						dy + (size_t) b * l->out_size,
						dx + (size_t) b * l->in_size);
}

static void
warp_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (!nn_layer_is_identity(l, pass))
		b->work = WARP_PARAMS;
}

/* random_translation: A = I, t = (-W draw [width], -H draw [height]). */
static void
translation_draw(const nn_layer *l, nn_rng *rng, float *p)
{
	double		dy = draw(rng, l->spec.height_factor) * l->in_shape[0];
	double		dx = draw(rng, l->spec.width_factor) * l->in_shape[1];

	p[0] = 1.0f;
	p[1] = p[2] = 0.0f;
	p[3] = 1.0f;
	p[4] = (float) -dx;
	p[5] = (float) -dy;
}

static bool
translation_identity(const nn_layer *l, nn_pass pass)
{
	return pass != NN_PASS_TRAIN || (range_zero(l->spec.height_factor) &&
						 range_zero(l->spec.width_factor));
}

/* Images; shifts within the image: bounds in [-1, 1]. */
static nn_status
translation_infer(nn_layer *l, nn_error *err)
{
	const float *f[2] = {l->spec.height_factor, l->spec.width_factor};
	static const char *const names[2] = {"height_factor", "width_factor"};

	nn_status	st = image_infer(l, err);

	for (int i = 0; st == NN_OK && i < 2; i++)
		if (f[i][0] < -1.0f || f[i][1] > 1.0f)
			return NN_LAYER_FAIL(l, err, "\"%s\" bounds must be in [-1, 1], not [%g, %g]",
								 names[i], f[i][0], f[i][1]);
	return st;
}

/* random_rotation: A = [cos a, -sin a; sin a, cos a], a = 2 pi draw. */
static void
rotation_draw(const nn_layer *l, nn_rng *rng, float *p)
{
	double		a = TWO_PI * draw(rng, l->spec.factor);
	double		c = cos(a),
				s = sin(a);

	p[0] = (float) c;
	p[1] = (float) -s;
	p[2] = (float) s;
	p[3] = (float) c;
	p[4] = p[5] = 0.0f;
}

static bool
rotation_identity(const nn_layer *l, nn_pass pass)
{
	return pass != NN_PASS_TRAIN || range_zero(l->spec.factor);
}

/* random_zoom: A = diag(zw, zh), zh = 1 + draw, zw the same or drawn. */
static void
zoom_draw(const nn_layer *l, nn_rng *rng, float *p)
{
	double		zh = 1.0 + draw(rng, l->spec.height_factor);
	double		zw = isnan(l->spec.width_factor[0]) ? zh :
		1.0 + draw(rng, l->spec.width_factor);

	p[0] = (float) zw;
	p[1] = p[2] = 0.0f;
	p[3] = (float) zh;
	p[4] = p[5] = 0.0f;
}

static bool
zoom_identity(const nn_layer *l, nn_pass pass)
{
	return pass != NN_PASS_TRAIN || (range_zero(l->spec.height_factor) &&
						 (isnan(l->spec.width_factor[0]) ||
						  range_zero(l->spec.width_factor)));
}

/* Images; zooms 1 + factor above 0: bounds above -1. */
static nn_status
zoom_infer(nn_layer *l, nn_error *err)
{
	const float *f[2] = {l->spec.height_factor, l->spec.width_factor};
	static const char *const names[2] = {"height_factor", "width_factor"};

	nn_status	st = image_infer(l, err);

	for (int i = 0; st == NN_OK && i < 2; i++)
		if (f[i][0] <= -1.0f)
			return NN_LAYER_FAIL(l, err, "\"%s\" bounds must be above -1 (the zoom is 1 + factor), not [%g, %g]",
								 names[i], f[i][0], f[i][1]);
	return st;
}

static const warp_impl translation_impl = {translation_draw},
			rotation_impl = {rotation_draw},
			zoom_impl = {zoom_draw};

/* ---------- random_crop ---------- */

static bool
crop_identity(const nn_layer *l, nn_pass pass)
{
	(void) pass;
	return l->spec.height == l->in_shape[0] && l->spec.width == l->in_shape[1];
}

/* Images at least as large as the window; output (height, width, C). */
static nn_status
crop_infer(nn_layer *l, nn_error *err)
{
	nn_status	st = image_infer(l, err);

	if (st != NN_OK)
		return st;
	if (l->spec.height > l->in_shape[0])
		return NN_LAYER_FAIL(l, err, "\"height\" %d is larger than the input's height %d",
							 l->spec.height, l->in_shape[0]);
	if (l->spec.width > l->in_shape[1])
		return NN_LAYER_FAIL(l, err, "\"width\" %d is larger than the input's width %d",
							 l->spec.width, l->in_shape[1]);
	l->out_shape[0] = l->spec.height;
	l->out_shape[1] = l->spec.width;
	return NN_OK;
}

/* The window's top and left of each row, when training. */
static void
crop_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (pass == NN_PASS_TRAIN && !crop_identity(l, pass))
		b->work = 2;
}

/* The window at (top, left) of img (H, W, C): into win, or back into img. */
static void
crop_window(float *img, float *win, const nn_layer *l, int32_t top,
			int32_t left, bool to_image)
{
	int32_t		W = l->in_shape[1],
				C = l->in_shape[2];
	size_t		row = (size_t) l->spec.width * C;

	for (int32_t i = 0; i < l->spec.height; i++)
	{
		float	   *in = img + ((size_t) (top + i) * W + left) * C;
		float	   *out = win + (size_t) i * row;

		if (to_image)
			memcpy(in, out, sizeof(float) * row);
		else
			memcpy(out, in, sizeof(float) * row);
	}
}

/* Row b's window: drawn in training, else the centre one. */
static void
crop_origin(const nn_layer *l, nn_pass pass, int32_t b, int32_t *top,
			int32_t *left)
{
	if (pass == NN_PASS_TRAIN)
	{
		const float *p = work_row(l, b, 2);

		*top = get_i32(p);
		*left = get_i32(p + 1);
		return;
	}
	*top = (l->in_shape[0] - l->spec.height) / 2;
	*left = (l->in_shape[1] - l->spec.width) / 2;
}

static nn_status
crop_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass, nn_rng *rng,
			 nn_error *err)
{
	nn_rng		fixed;

	(void) m, (void) err;
	if (pass == NN_PASS_TRAIN)
	{
		rng = rng_or_fixed(rng, &fixed);
		for (int32_t b = 0; b < n; b++)
		{
			float	   *p = work_row(l, b, 2);

			put_i32(p, (int32_t) nn_rng_below(rng, (uint64_t) (l->in_shape[0] - l->spec.height + 1)));
			put_i32(p + 1, (int32_t) nn_rng_below(rng, (uint64_t) (l->in_shape[1] - l->spec.width + 1)));
		}
	}
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->out_size, n))
	for (int32_t b = 0; b < n; b++)
	{
		int32_t		top,
					left;

		crop_origin(l, pass, b, &top, &left);
		crop_window((float *) l->x + (size_t) b * l->in_size,
					l->ybuf + (size_t) b * l->out_size, l, top, left, false);
	}
	return NN_OK;
}

static void
crop_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	(void) m;
	if (dx == NULL)
		return;
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->in_size, n))
	for (int32_t b = 0; b < n; b++)
	{
		float	   *db = dx + (size_t) b * l->in_size;
		int32_t		top,
					left;

		crop_origin(l, l->pass, b, &top, &left);
		memset(db, 0, sizeof(float) * l->in_size);
		crop_window(db, dy + (size_t) b * l->out_size, l, top, left, true);
	}
}

/* ---------- random_contrast ---------- */

static bool
contrast_identity(const nn_layer *l, nn_pass pass)
{
	return pass != NN_PASS_TRAIN || range_zero(l->spec.factor);
}

/* Per row: m, then C floats of scratch (channel means or sums). */
static void
contrast_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (!contrast_identity(l, pass))
		b->work = 1 + (size_t) l->in_shape[2];
}

/* mean[c] = the mean of channel c of v (S, C). */
static NN_SIMD void
channel_means(float *restrict mean, const float *restrict v, size_t S,
			  int32_t C)
{
	for (int32_t c = 0; c < C; c++)
		mean[c] = 0.0f;
	for (size_t s = 0; s < S; s++)
		for (int32_t c = 0; c < C; c++)
			mean[c] += v[s * C + c];
	for (int32_t c = 0; c < C; c++)
		mean[c] /= (float) S;
}

/* y = (x - mean) m + mean, per channel, over one image. */
static NN_SIMD void
contrast_image(float *restrict y, const float *restrict x,
			   const float *restrict mean, float mf, size_t S, int32_t C)
{
	for (size_t s = 0; s < S; s++)
		for (int32_t c = 0; c < C; c++)
			y[s * C + c] = (x[s * C + c] - mean[c]) * mf + mean[c];
}

/* dx = m dy + (1 - m) mean(dy), per channel, over one image. */
static NN_SIMD void
contrast_image_back(float *restrict dx, const float *restrict dy,
					const float *restrict mean, float mf, size_t S, int32_t C)
{
	for (size_t s = 0; s < S; s++)
		for (int32_t c = 0; c < C; c++)
			dx[s * C + c] = mf * dy[s * C + c] + (1.0f - mf) * mean[c];
}

static nn_status
contrast_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				 nn_rng *rng, nn_error *err)
{
	int32_t		C = l->in_shape[2];
	size_t		k = 1 + (size_t) C,
				S = l->in_size / C;
	nn_rng		fixed;

	(void) m, (void) pass, (void) err;
	rng = rng_or_fixed(rng, &fixed);
	for (int32_t b = 0; b < n; b++)
		work_row(l, b, k)[0] = (float) (1.0 + draw(rng, l->spec.factor));
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->in_size * 3, n))
	for (int32_t b = 0; b < n; b++)
	{
		float	   *p = work_row(l, b, k);
		const float *xb = l->x + (size_t) b * l->in_size;

		channel_means(p + 1, xb, S, C);
		contrast_image(l->ybuf + (size_t) b * l->out_size, xb, p + 1, p[0], S, C);
	}
	return NN_OK;
}

static void
contrast_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	int32_t		C = l->in_shape[2];
	size_t		k = 1 + (size_t) C,
				S = l->in_size / C;

	(void) m;
	if (dx == NULL)
		return;
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->in_size * 3, n))
	for (int32_t b = 0; b < n; b++)
	{
		float	   *p = work_row(l, b, k);
		const float *g = dy + (size_t) b * l->out_size;

		/* the means are spent: the scratch takes mean(dy) */
		channel_means(p + 1, g, S, C);
		contrast_image_back(dx + (size_t) b * l->in_size, g, p + 1, p[0], S, C);
	}
}

/* ---------- random_brightness ---------- */

static bool
brightness_identity(const nn_layer *l, nn_pass pass)
{
	(void) l;
	return pass != NN_PASS_TRAIN;
}

/* value_range defaults to [0, 1]. */
static void
brightness_resolve(nn_layer_spec *s)
{
	if (isnan(s->value_range[0]) && isnan(s->value_range[1]))
	{
		s->value_range[0] = 0.0f;
		s->value_range[1] = 1.0f;
	}
}

static nn_status
brightness_infer(nn_layer *l, nn_error *err)
{
	const float *r = l->spec.value_range;
	nn_status	st = image_infer(l, err);

	if (st == NN_OK && !(r[0] < r[1]))
		return NN_LAYER_FAIL(l, err, "\"value_range\" must have its low below its high, not [%g, %g]",
							 r[0], r[1]);
	return st;
}

/* Per row: the shift d (hi - lo). */
static void
brightness_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (!brightness_identity(l, pass))
		b->work = 1;
}

/* y = clip(x + shift, lo, hi) over k values. */
static NN_SIMD void
brightness_values(float *restrict y, const float *restrict x, size_t k,
				  float shift, float lo, float hi)
{
	for (size_t i = 0; i < k; i++)
	{
		float		v = x[i] + shift;

		v = v > lo ? v : lo;
		y[i] = v < hi ? v : hi;
	}
}

/* dx = dy where lo <= x + shift <= hi, else 0. */
static NN_SIMD void
brightness_values_back(float *restrict dx, const float *restrict dy,
					   const float *restrict x, size_t k, float shift,
					   float lo, float hi)
{
	for (size_t i = 0; i < k; i++)
	{
		float		v = x[i] + shift;

		dx[i] = v >= lo && v <= hi ? dy[i] : 0.0f;
	}
}

static nn_status
brightness_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				   nn_rng *rng, nn_error *err)
{
	float		lo = l->spec.value_range[0],
				hi = l->spec.value_range[1];
	nn_rng		fixed;

	(void) m, (void) pass, (void) err;
	rng = rng_or_fixed(rng, &fixed);
	for (int32_t b = 0; b < n; b++)
		*work_row(l, b, 1) = (float) (draw(rng, l->spec.factor) *
									  ((double) hi - lo));
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->in_size * 2, n))
	for (int32_t b = 0; b < n; b++)
		brightness_values(l->ybuf + (size_t) b * l->out_size,
						  l->x + (size_t) b * l->in_size, l->in_size,
						  *work_row(l, b, 1), lo, hi);
	return NN_OK;
}

static void
brightness_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	float		lo = l->spec.value_range[0],
				hi = l->spec.value_range[1];

	(void) m;
	if (dx == NULL)
		return;
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->in_size * 2, n))
	for (int32_t b = 0; b < n; b++)
		brightness_values_back(dx + (size_t) b * l->in_size,
							   dy + (size_t) b * l->out_size,
							   l->x + (size_t) b * l->in_size, l->in_size,
							   *work_row(l, b, 1), lo, hi);
}

/* ---------- gaussian_noise ---------- */

static bool
noise_identity(const nn_layer *l, nn_pass pass)
{
	return pass != NN_PASS_TRAIN || l->spec.stddev == 0.0f;
}

/* Per row: its generator's 64-bit seed. */
static void
noise_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (!noise_identity(l, pass))
		b->work = 2;
}

/* y = x + sd z over k values, z standard normal from the row's seed. */
static void
noise_values(float *restrict y, const float *restrict x, size_t k, double sd,
			 uint64_t seed)
{
	nn_rng		r;

	nn_rng_seed(&r, seed);
	for (size_t i = 0; i < k; i += 2)
	{
		double		u,
					v,
					q,
					f;

		/* Marsaglia's polar method: (u, v) uniform in the unit disc */
		do
		{
			u = (double) (nn_rng_next(&r) >> 11) * 0x1p-52 - 1.0;
			v = (double) (nn_rng_next(&r) >> 11) * 0x1p-52 - 1.0;
			q = u * u + v * v;
		} while (q >= 1.0 || q == 0.0);
		f = sd * sqrt(-2.0 * log(q) / q);
		y[i] = x[i] + (float) (u * f);
		if (i + 1 < k)
			y[i + 1] = x[i + 1] + (float) (v * f);
	}
}

static nn_status
noise_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass, nn_rng *rng,
			  nn_error *err)
{
	nn_rng		fixed;

	(void) m, (void) pass, (void) err;
	rng = rng_or_fixed(rng, &fixed);
	for (int32_t b = 0; b < n; b++)
	{
		uint64_t	seed = nn_rng_next(rng);

		memcpy(work_row(l, b, 2), &seed, sizeof(seed));
	}
#pragma omp parallel for schedule(static) if (nn_par((double) n * l->in_size * 16, n))
	for (int32_t b = 0; b < n; b++)
	{
		uint64_t	seed;

		memcpy(&seed, work_row(l, b, 2), sizeof(seed));
		noise_values(l->ybuf + (size_t) b * l->out_size,
					 l->x + (size_t) b * l->in_size, l->in_size,
					 l->spec.stddev, seed);
	}
	return NN_OK;
}

static void
noise_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	(void) m;
	if (dx)
		memcpy(dx, dy, sizeof(float) * l->in_size * n);
}

/* ---------- the kinds ---------- */

const nn_layer_type nn_random_flip_type = {
	.name = "random_flip", .since = 3,
	.options = flip_options, .n_options = NN_LENGTH(flip_options),
	.infer = image_infer, .forward = flip_forward,
	.backward = flip_backward, .buffers = flip_buffers,
	.identity = flip_identity,
};

const nn_layer_type nn_random_translation_type = {
	.name = "random_translation", .since = 3, .impl = &translation_impl,
	.options = translation_options,
	.n_options = NN_LENGTH(translation_options),
	.infer = translation_infer, .forward = warp_forward,
	.backward = warp_backward, .buffers = warp_buffers,
	.identity = translation_identity,
};

const nn_layer_type nn_random_rotation_type = {
	.name = "random_rotation", .since = 3, .impl = &rotation_impl,
	.options = rotation_options, .n_options = NN_LENGTH(rotation_options),
	.infer = image_infer, .forward = warp_forward,
	.backward = warp_backward, .buffers = warp_buffers,
	.identity = rotation_identity,
};

const nn_layer_type nn_random_zoom_type = {
	.name = "random_zoom", .since = 3, .impl = &zoom_impl,
	.options = zoom_options, .n_options = NN_LENGTH(zoom_options),
	.infer = zoom_infer, .forward = warp_forward,
	.backward = warp_backward, .buffers = warp_buffers,
	.identity = zoom_identity,
};

const nn_layer_type nn_random_crop_type = {
	.name = "random_crop", .since = 3,
	.options = crop_options, .n_options = NN_LENGTH(crop_options),
	.infer = crop_infer, .forward = crop_forward,
	.backward = crop_backward, .buffers = crop_buffers,
	.identity = crop_identity,
};

const nn_layer_type nn_random_contrast_type = {
	.name = "random_contrast", .since = 3,
	.options = contrast_options, .n_options = NN_LENGTH(contrast_options),
	.infer = image_infer, .forward = contrast_forward,
	.backward = contrast_backward, .buffers = contrast_buffers,
	.identity = contrast_identity,
};

const nn_layer_type nn_random_brightness_type = {
	.name = "random_brightness", .since = 3,
	.options = brightness_options, .n_options = NN_LENGTH(brightness_options),
	.resolve = brightness_resolve, .infer = brightness_infer,
	.forward = brightness_forward, .backward = brightness_backward,
	.buffers = brightness_buffers, .identity = brightness_identity,
};

const nn_layer_type nn_gaussian_noise_type = {
	.name = "gaussian_noise", .since = 3,
	.options = noise_options, .n_options = NN_LENGTH(noise_options),
	.forward = noise_forward, .backward = noise_backward,
	.buffers = noise_buffers, .identity = noise_identity,
};
