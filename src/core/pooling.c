/*
 * pooling.c: max and average pooling over windows (Keras's MaxPooling2D,
 * AveragePooling2D) and over all positions (GlobalAveragePooling,
 * GlobalMaxPooling).
 *
 * Layout: images (H, W, C), channels last, so each window cell is a
 * contiguous channel vector and the loops work on whole vectors.  Window
 * geometry as spatial.c; average pooling with 'same' divides by the number
 * of cells inside the input.  Max pooling keeps, for a backward pass (in
 * training or differentiation, not prediction), the input offset of each
 * maximum (the first one wins ties).
 * Global pools read a sample of in_size floats as (S, C), with C the last
 * axis (S = 1, H W or T positions): (S, C) -> (C).
 * https://keras.io/api/layers/pooling_layers/
 */
#include <string.h>

#include "nn_internal.h"

/* impl of the max and the mean kinds */
static const bool pool_max = true,
			pool_mean = false;

static inline bool
pool_is_max(const nn_layer *l)
{
	return *(const bool *) l->type->impl;
}

static const nn_kind_option pool2d_options[] = {
	NN_TAKES(NN_OPTION_KERNEL_SIZE, .def = 2, .name = "pool_size"),
	NN_TAKES(NN_OPTION_STRIDES, .def = 0),
	NN_TAKES(NN_OPTION_PADDING, .def = 0),
};

/* Strides default to the pool size, as Keras. */
static void
pool_resolve(nn_layer_spec *s)
{
	if (s->strides[0] == 0 && s->strides[1] == 0)
	{
		s->strides[0] = s->kernel[0];
		s->strides[1] = s->kernel[1];
	}
}

/* Output (OH, OW, C). */
static nn_status
pool_infer(nn_layer *l, nn_error *err)
{
	return nn_window_infer(l, "pool_size", err);
}

/* Max pools keep their argmax for a backward pass. */
static void
pool_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (pass != NN_PASS_PREDICT && pool_is_max(l))
		b->argmax = l->out_size;
}

/*
 * Maxpool of one full 2x2 window, the common case: the generic loop of
 * pool_sample with its four cells (at i0 in xb (H, W, C), row stride
 * ws = W * C) unrolled.  The cells are four pointers, not an index table,
 * which the compiler would turn into gathers.
 */
static inline void
max_2x2(float *restrict y, int32_t *restrict am, const float *restrict xb,
		int32_t i0, int32_t ws, int32_t C)
{
	const float *p0 = xb + i0,
			   *p1 = p0 + C,
			   *p2 = p0 + ws,
			   *p3 = p2 + C;

	/* first maximum wins, as in the generic loop; branch-free selects */
	if (am == NULL)
		for (int32_t c = 0; c < C; c++)
		{
			float		m = p0[c];

			m = p1[c] > m ? p1[c] : m;
			m = p2[c] > m ? p2[c] : m;
			y[c] = p3[c] > m ? p3[c] : m;
		}
	else
		for (int32_t c = 0; c < C; c++)
		{
			float		m = p0[c];
			int32_t		a = i0 + c;

			a = p1[c] > m ? i0 + C + c : a;
			m = p1[c] > m ? p1[c] : m;
			a = p2[c] > m ? i0 + ws + c : a;
			m = p2[c] > m ? p2[c] : m;
			a = p3[c] > m ? i0 + ws + C + c : a;
			y[c] = p3[c] > m ? p3[c] : m;
			am[c] = a;
		}
}

/* Pool sample b of x into l->ybuf; maxpool fills l->argmax if kept. */
static NN_SIMD void
pool_sample(const nn_layer *l, const nn_window *gp, const float *xb, int32_t b)
{
	const nn_window g = *gp;
	bool		is_max = pool_is_max(l);
	/* private, so that stores through y and am cannot alias it */
	const int32_t C = g.C;

	for (int32_t oh = 0; oh < g.OH; oh++)
	{
		int32_t		h0 = oh * g.SH - l->pad_top;
		int32_t		h1 = h0 + g.KH;

		h0 = h0 < 0 ? 0 : h0;
		h1 = h1 > g.H ? g.H : h1;
		for (int32_t ow = 0; ow < g.OW; ow++)
		{
			int32_t		w0 = ow * g.SW - l->pad_left;
			int32_t		w1 = w0 + g.KW;
			size_t		o = (((size_t) b * g.OH + oh) * g.OW + ow) * g.C;
			float	   *restrict y = l->ybuf + o;
			int32_t    *restrict am = l->argmax ? l->argmax + o : NULL;
			int32_t		first;

			w0 = w0 < 0 ? 0 : w0;
			w1 = w1 > g.W ? g.W : w1;
			/* channels are contiguous: work on whole channel vectors */
			first = (h0 * g.W + w0) * C;
			if (is_max && h1 - h0 == 2 && w1 - w0 == 2)
			{
				max_2x2(y, am, xb, first, g.W * C, C);
				continue;
			}
			for (int32_t c = 0; c < C; c++)
				y[c] = xb[first + c];
			if (am)
				for (int32_t c = 0; c < C; c++)
					am[c] = first + c;
			for (int32_t ih = h0; ih < h1; ih++)
				for (int32_t iw = w0; iw < w1; iw++)
				{
					int32_t		i = (ih * g.W + iw) * C;
					const float *v = xb + i;

					if (i == first)
						continue;
					if (!is_max)
						for (int32_t c = 0; c < C; c++)
							y[c] += v[c];
					else if (am)
					{
						/* branch-free so that it vectorizes */
						for (int32_t c = 0; c < C; c++)
						{
							int32_t		gt = v[c] > y[c];

							y[c] = v[c] > y[c] ? v[c] : y[c];
							am[c] += gt * (i + c - am[c]);
						}
					}
					else
						for (int32_t c = 0; c < C; c++)
							y[c] = v[c] > y[c] ? v[c] : y[c];
				}
			if (!is_max)
			{
				float		inv = 1.0f / (float) ((h1 - h0) * (w1 - w0));

				for (int32_t c = 0; c < C; c++)
					y[c] *= inv;
			}
		}
	}
}

/* Pool x (B, H, W, C) into (B, OH, OW, C), a sample per iteration. */
static nn_status
pool_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass, nn_rng *rng,
			 nn_error *err)
{
	const nn_window g = nn_window_of(l);
	const float *x = l->x;

	(void) m, (void) pass, (void) rng, (void) err;
#pragma omp parallel for schedule(dynamic) \
	if (nn_par((double) n * l->out_size * g.KH * g.KW, n))
	for (int32_t b = 0; b < n; b++)
		pool_sample(l, &g, x + (size_t) b * l->in_size, b);
	return NN_OK;
}

/* dX: onto the maxima, or spread evenly over each window. */
static void
pool_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	const nn_window g = nn_window_of(l);
	bool		is_max = pool_is_max(l);

	(void) m;
	if (dx == NULL)
		return;
#pragma omp parallel for schedule(dynamic) \
	if (nn_par((double) n * l->out_size * g.KH * g.KW, n))
	for (int32_t b = 0; b < n; b++)
	{
		float	   *db = dx + (size_t) b * l->in_size;
		const float *gb = dy + (size_t) b * l->out_size;
		/* private, so that stores through db cannot alias it */
		const int32_t C = g.C;

		memset(db, 0, sizeof(float) * l->in_size);
		if (is_max)
		{
			const int32_t *ab = l->argmax + (size_t) b * l->out_size;

			for (size_t o = 0; o < l->out_size; o++)
				db[ab[o]] += gb[o];
			continue;
		}
		for (int32_t oh = 0; oh < g.OH; oh++)
		{
			int32_t		h0 = oh * g.SH - l->pad_top;
			int32_t		h1 = h0 + g.KH;

			h0 = h0 < 0 ? 0 : h0;
			h1 = h1 > g.H ? g.H : h1;
			for (int32_t ow = 0; ow < g.OW; ow++)
			{
				int32_t		w0 = ow * g.SW - l->pad_left;
				int32_t		w1 = w0 + g.KW;
				const float *go = gb + ((size_t) oh * g.OW + ow) * C;
				float		inv;

				w0 = w0 < 0 ? 0 : w0;
				w1 = w1 > g.W ? g.W : w1;
				inv = 1.0f / (float) ((h1 - h0) * (w1 - w0));
				for (int32_t ih = h0; ih < h1; ih++)
					for (int32_t iw = w0; iw < w1; iw++)
					{
						float	   *d = db + ((size_t) ih * g.W + iw) * C;

						for (int32_t c = 0; c < C; c++)
							d[c] += go[c] * inv;
					}
			}
		}
	}
}

/* Mean or max over the positions of each channel: (S, C) -> (C). */
static nn_status
global_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
			   nn_rng *rng, nn_error *err)
{
	const float *x = l->x;
	int32_t		C = l->channels;
	size_t		S = l->in_size / C;
	bool		is_max = pool_is_max(l);

	(void) m, (void) pass, (void) rng, (void) err;
	for (int32_t b = 0; b < n; b++)
	{
		const float *xb = x + (size_t) b * l->in_size;	/* (S, C) */
		float	   *y = l->ybuf + (size_t) b * C;	/* (C) */
		int32_t    *am = l->argmax ? l->argmax + (size_t) b * C : NULL;	/* (C) */

		memcpy(y, xb, sizeof(float) * C);
		if (am)
			for (int32_t c = 0; c < C; c++)
				am[c] = c;
		for (size_t s = 1; s < S; s++)
		{
			const float *v = xb + s * C;

			if (!is_max)
				for (int32_t c = 0; c < C; c++)
					y[c] += v[c];
			else
				for (int32_t c = 0; c < C; c++)
					if (v[c] > y[c])
					{
						y[c] = v[c];
						if (am)
							am[c] = (int32_t) (s * C + c);
					}
		}
		if (!is_max)
			for (int32_t c = 0; c < C; c++)
				y[c] /= (float) S;
	}
	return NN_OK;
}

/* Input gradient of a global pool: spread evenly, or onto the maxima. */
static void
global_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	int32_t		C = l->channels;
	size_t		S = l->in_size / C;

	(void) m;
	if (dx == NULL)
		return;
	for (int32_t b = 0; b < n; b++)
	{
		float	   *db = dx + (size_t) b * l->in_size;	/* (S, C) */
		const float *g = dy + (size_t) b * C;	/* (C) */

		if (pool_is_max(l))
		{
			const int32_t *am = l->argmax + (size_t) b * C;

			memset(db, 0, sizeof(float) * l->in_size);
			for (int32_t c = 0; c < C; c++)
				db[am[c]] += g[c];
		}
		else
			for (size_t s = 0; s < S; s++)
				for (int32_t c = 0; c < C; c++)
					db[s * C + c] = g[c] / (float) S;
	}
}

/* Output (C) from a sequence or an image. */
static nn_status
global_infer(nn_layer *l, nn_error *err)
{
	if (l->in_rank < 2)
		return NN_LAYER_FAIL(l, err, "input must be a sequence (timesteps, features) or an image (height, width, channels), not flat");
	l->channels = l->in_shape[l->in_rank - 1];
	l->out_rank = 1;
	memset(l->out_shape, 0, sizeof(l->out_shape));
	l->out_shape[0] = l->channels;
	return NN_OK;
}

const nn_layer_type nn_maxpool2d_type = {
	.name = "maxpool2d", .since = 1, .impl = &pool_max,
	.options = pool2d_options, .n_options = NN_LENGTH(pool2d_options),
	.resolve = pool_resolve, .infer = pool_infer, .forward = pool_forward,
	.backward = pool_backward, .buffers = pool_buffers,
};

const nn_layer_type nn_avgpool2d_type = {
	.name = "avgpool2d", .since = 1, .impl = &pool_mean,
	.options = pool2d_options, .n_options = NN_LENGTH(pool2d_options),
	.resolve = pool_resolve, .infer = pool_infer, .forward = pool_forward,
	.backward = pool_backward, .buffers = pool_buffers,
};

const nn_layer_type nn_global_avgpool_type = {
	.name = "global_avgpool", .since = 2, .impl = &pool_mean,
	.infer = global_infer, .forward = global_forward,
	.backward = global_backward, .buffers = pool_buffers,
};

const nn_layer_type nn_global_maxpool_type = {
	.name = "global_maxpool", .since = 2, .impl = &pool_max,
	.infer = global_infer, .forward = global_forward,
	.backward = global_backward, .buffers = pool_buffers,
};
