/*
 * conv2d.c: 2-D convolution (Keras's Conv2D), by im2col + GEMM or, for 3x3
 * stride-1 kernels over enough channels, by Winograd F(4x4, 3x3)
 * (winograd.c).
 *
 * Layout: images (H, W, C) channels last, kernels (KH, KW, C, F) as Keras,
 * so a batch is one row-major GEMM on the im2col rows:
 *   Y (B*OH*OW, F) = act(col (B*OH*OW, KH*KW*C) W (KH*KW*C, F) + b)
 *   dW = col^T dZ,  db = column sums of dZ,  dcol = dZ W^T, dX = col2im(dcol)
 * The output rows are already (B, OH, OW, F), channels last.  Padding as
 * spatial.c.  The batch runs in chunks of samples whose im2col rows (about
 * CHUNK_ROWS) and outputs stay in cache while the bias and activation are
 * applied; chunks are scheduled dynamically, so that when another process
 * takes a core the thread still running takes the remaining chunks.
 * https://keras.io/api/layers/convolution_layers/convolution2d/
 *
 * In an int8 model (quantize.c) the GEMM runs on the int8 kernel, never
 * by Winograd.  Calibrated, each chunk's samples are quantized first and
 * expanded as bytes (the padding is the zero point, the byte of 0.0): a
 * sample's values are quantized once rather than once per kernel cell
 * (KH KW times) in the im2col rows, and the rows are a quarter of the
 * bytes.  Weight-only, the float im2col rows meet the dequantized kernel.
 *
 * Not here: dilation, groups, data_format channels_first.
 */
#include <string.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn_internal.h"

#define CHUNK_ROWS 256

static const nn_kind_option conv2d_options[] = {
	NN_TAKES(NN_OPTION_FILTERS, .required = true),
	NN_TAKES(NN_OPTION_KERNEL_SIZE, .required = true),
	NN_TAKES(NN_OPTION_STRIDES, .def = 1),
	NN_TAKES(NN_OPTION_PADDING, .def = 0),
	NN_TAKES(NN_OPTION_ACTIVATION, .def = NN_ACT_LINEAR),
	NN_TAKES(NN_OPTION_ALPHA, .def = 0),
	NN_TAKES(NN_OPTION_USE_BIAS, .def = 1),
	NN_TAKES(NN_OPTION_L1, .def = 0),
	NN_TAKES(NN_OPTION_L2, .def = 0),	NN_TAKES(NN_OPTION_TRAINABLE, .def = 1),
};

/* Output (OH, OW, F), kernel and bias lengths, and the Winograd choice. */
static nn_status
conv2d_infer(nn_layer *l, nn_error *err)
{
	const nn_layer_spec *s = &l->spec;
	nn_status	st;
	size_t		k;

	if ((st = nn_window_infer(l, "kernel_size", err)) != NN_OK)
		return st;
	l->out_shape[2] = s->filters;
	if (!nn_size_mul(&k, (size_t) s->kernel[0] * s->kernel[1],
					 (size_t) l->in_shape[2]) ||
		!nn_size_mul(&k, k, (size_t) s->filters) ||
		k > (size_t) INT64_MAX / 8)
		return NN_LAYER_FAIL(l, err, "kernel size overflows");
	l->w_len = (int64_t) k;
	l->b_len = s->use_bias ? s->filters : 0;
	l->wino = nn_wino_fits(l);
	return NN_OK;
}

/* Glorot-uniform kernel (fans: the receptive field times C or F), zero bias. */
static bool
conv2d_init(nn_model *m, nn_layer *l, nn_rng *rng)
{
	double		rf = (double) l->spec.kernel[0] * l->spec.kernel[1];

	nn_glorot_uniform(m->params + l->w_off, l->w_len, rf * l->in_shape[2],
					  rf * l->spec.filters, rng);
	for (int64_t i = 0; i < l->b_len; i++)
		m->params[l->b_off + i] = 0.0f;
	return true;
}

/* Samples per conv2d chunk of a batch of n. */
static int32_t
conv_chunk(const nn_layer *l, int32_t n)
{
	int64_t		rows = (int64_t) n * l->out_shape[0] * l->out_shape[1];
	int64_t		nchunks = (rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
	int64_t		team = nn_team_size();

	/* a multiple of the team, so that no thread waits for a last chunk */
	nchunks = (nchunks + team - 1) / team * team;
	if (nchunks > n)
		nchunks = n;
	return (int32_t) ((n + nchunks - 1) / nchunks);
}

/*
 * im2col of a sample with few channels (a grey or colour image): per
 * kernel cell, a strided loop along the output row.  Copying row pieces
 * of KW * C floats, as im2col does for more channels, costs a library call
 * per 3 floats here.
 */
static void
im2col_few_channels(float *restrict col, const float *restrict xb,
					const nn_layer *l, const nn_window *gp)
{
	const nn_window g = *gp;
	size_t		K = (size_t) g.KH * g.KW * g.C;

	for (int32_t oh = 0; oh < g.OH; oh++)
	{
		float	   *row = col + (size_t) oh * g.OW * K;

		for (int32_t kh = 0; kh < g.KH; kh++)
		{
			int32_t		ih = oh * g.SH - l->pad_top + kh;
			bool		row_in = ih >= 0 && ih < g.H;

			for (int32_t kw = 0; kw < g.KW; kw++)
			{
				/* outputs [lo, hi) read inside the row, the others padding */
				int32_t		off = kw - l->pad_left;
				int32_t		lo = off >= 0 ? 0 : (-off + g.SW - 1) / g.SW;
				int32_t		hi = g.W - off <= 0 ? 0 :
					(g.W - off + g.SW - 1) / g.SW;

				hi = hi < g.OW ? hi : g.OW;
				lo = row_in && lo < hi ? lo : g.OW;
				hi = row_in ? hi : g.OW;
				for (int32_t c = 0; c < g.C; c++)
				{
					float	   *dst = row + ((size_t) kh * g.KW + kw) * g.C + c;

					for (int32_t ow = 0; ow < lo; ow++)
						dst[(size_t) ow * K] = 0.0f;
					for (int32_t ow = lo; ow < hi; ow++)
						dst[(size_t) ow * K] =
							xb[((size_t) ih * g.W + ow * g.SW + off) * g.C + c];
					for (int32_t ow = hi > lo ? hi : lo; ow < g.OW; ow++)
						dst[(size_t) ow * K] = 0.0f;
				}
			}
		}
	}
}

/* Channels up to which im2col_few_channels is the faster copy. */
#define IM2COL_FEW_CHANNELS 4

/* Expand samples [b0, b1) of (B, H, W, C) into col rows (OH*OW, KH*KW*C). */
static void
im2col(float *col, const float *x, const nn_layer *l, int32_t b0, int32_t b1)
{
	const nn_window g = nn_window_of(l);
	size_t		rowlen = (size_t) g.KW * g.C;

	if (g.C <= IM2COL_FEW_CHANNELS)
	{
		for (int32_t b = b0; b < b1; b++)
			im2col_few_channels(col + (size_t) (b - b0) * g.OH * g.OW *
								g.KH * rowlen,
								x + (size_t) b * g.H * g.W * g.C, l, &g);
		return;
	}
	for (int32_t b = b0; b < b1; b++)
	{
		const float *xb = x + (size_t) b * g.H * g.W * g.C;

		for (int32_t oh = 0; oh < g.OH; oh++)
			for (int32_t ow = 0; ow < g.OW; ow++)
			{
				int32_t		iw0 = ow * g.SW - l->pad_left;
				bool		inside = iw0 >= 0 && iw0 + g.KW <= g.W;

				for (int32_t kh = 0; kh < g.KH; kh++)
				{
					int32_t		ih = oh * g.SH - l->pad_top + kh;

					if (ih < 0 || ih >= g.H)
						for (size_t j = 0; j < rowlen; j++)
							col[j] = 0.0f;
					else if (inside)
					{
						const float *src = xb + ((size_t) ih * g.W + iw0) * g.C;

						for (size_t j = 0; j < rowlen; j++)
							col[j] = src[j];
					}
					else
						for (int32_t kw = 0; kw < g.KW; kw++)
						{
							int32_t		iw = iw0 + kw;
							float	   *dst = col + (size_t) kw * g.C;

							if (iw < 0 || iw >= g.W)
								for (int32_t c = 0; c < g.C; c++)
									dst[c] = 0.0f;
							else
								for (int32_t c = 0; c < g.C; c++)
									dst[c] = xb[((size_t) ih * g.W + iw) * g.C + c];
						}
					col += rowlen;
				}
			}
	}
}

/* Scatter-add col rows of samples [b0, b1) into dx (B, H, W, C), zeroed first. */
static void
col2im(float *dx, const float *col, const nn_layer *l, int32_t b0, int32_t b1)
{
	const nn_window g = nn_window_of(l);

	memset(dx + (size_t) b0 * l->in_size, 0,
		   sizeof(float) * l->in_size * (b1 - b0));
	for (int32_t b = b0; b < b1; b++)
	{
		float	   *xb = dx + (size_t) b * g.H * g.W * g.C;

		for (int32_t oh = 0; oh < g.OH; oh++)
			for (int32_t ow = 0; ow < g.OW; ow++)
				for (int32_t kh = 0; kh < g.KH; kh++)
				{
					int32_t		ih = oh * g.SH - l->pad_top + kh;

					for (int32_t kw = 0; kw < g.KW; kw++)
					{
						int32_t		iw = ow * g.SW - l->pad_left + kw;

						if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W)
						{
							float	   *d = xb + ((size_t) ih * g.W + iw) * g.C;

							for (int32_t c = 0; c < g.C; c++)
								d[c] += col[c];
						}
						col += g.C;
					}
				}
	}
}

/*
 * im2col of quantized samples [b0, b1) of xq (B, H, W, C) into col rows
 * (OH*OW, KH*KW*C) of bytes, padding with pad.
 */
static void
im2col_u8(uint8_t *restrict col, const uint8_t *restrict xq,
		  const nn_layer *l, int32_t b0, int32_t b1, uint8_t pad)
{
	const nn_window g = nn_window_of(l);
	size_t		rowlen = (size_t) g.KW * g.C;

	for (int32_t b = b0; b < b1; b++)
	{
		const uint8_t *xb = xq + (size_t) b * g.H * g.W * g.C;

		for (int32_t oh = 0; oh < g.OH; oh++)
			for (int32_t ow = 0; ow < g.OW; ow++)
			{
				int32_t		iw0 = ow * g.SW - l->pad_left;
				bool		inside = iw0 >= 0 && iw0 + g.KW <= g.W;

				for (int32_t kh = 0; kh < g.KH; kh++, col += rowlen)
				{
					int32_t		ih = oh * g.SH - l->pad_top + kh;

					if (ih < 0 || ih >= g.H)
						memset(col, pad, rowlen);
					else if (inside)
						memcpy(col, xb + ((size_t) ih * g.W + iw0) * g.C, rowlen);
					else
						for (int32_t kw = 0; kw < g.KW; kw++)
						{
							int32_t		iw = iw0 + kw;

							if (iw < 0 || iw >= g.W)
								memset(col + (size_t) kw * g.C, pad, g.C);
							else
								memcpy(col + (size_t) kw * g.C,
									   xb + ((size_t) ih * g.W + iw) * g.C, g.C);
						}
				}
			}
	}
}

/* One chunk of an int8 layer: samples [b0, b1), work for `threads`. */
static void
conv2d_chunk_int8(nn_model *m, nn_layer *l, int32_t b0, int32_t b1,
				  float *work, int32_t threads)
{
	const nn_qlayer *q = l->q;
	const float *b = l->b_len ? m->params + l->b_off : NULL;
	int32_t		per = l->out_shape[0] * l->out_shape[1];
	size_t		K = (size_t) l->spec.kernel[0] * l->spec.kernel[1] *
		l->in_shape[2];
	int			F = l->spec.filters;
	size_t		row0 = (size_t) b0 * per;
	int32_t		rows = (b1 - b0) * per;

	if (q->acts)
	{
		/* (B, in_size) quantized input, then (B*OH*OW, K) byte rows */
		uint8_t    *xq = l->xq;
		uint8_t    *col = l->xq + (size_t) m->batch_cap * l->in_size;

		nn_qgemm_quantize_acts(xq + (size_t) b0 * l->in_size,
							   l->x + (size_t) b0 * l->in_size, q->act,
							   (size_t) (b1 - b0) * l->in_size);
		im2col_u8(col + row0 * K, xq, l, b0, b1, (uint8_t) q->act.zero);
		nn_qgemm(l->ybuf + row0 * F, col + row0 * K, &q->w, b, q->act, rows,
				 K, F);
	}
	else
	{
		im2col(l->col + row0 * K, l->x, l, b0, b1);
		nn_qgemm_weight_only(l->ybuf + row0 * F, l->col + row0 * K, &q->w, b,
							 work, threads, rows, K, F);
	}
	nn_affine_finish(l, l->ybuf + row0 * F,
					 l->logits ? l->logits + row0 * F : NULL, NULL, rows, F);
}

/*
 * Chunks of about CHUNK_ROWS rows over the team, each thread's int8
 * products on one thread (weight-only: its own slice of the scratch); a
 * single chunk (one sample) lets the product split its channels instead.
 * Unlike the float path's, the chunks do not depend on the team: the
 * weight-only product's float sums depend on the rows of each call.
 */
static void
conv2d_forward_int8(nn_model *m, nn_layer *l, int32_t n)
{
	int32_t		per = l->out_shape[0] * l->out_shape[1];
	int32_t		chunk = per < CHUNK_ROWS ? CHUNK_ROWS / per : 1;
	int32_t		nchunks;
	int32_t		threads = l->q->acts ? nn_team_size() : nn_quant_threads(l);
	size_t		slice = nn_qgemm_weight_only_work(&l->q->w, 1);
	double		work = (double) n * per * l->w_len;

	chunk = chunk < n ? chunk : n;
	nchunks = (n + chunk - 1) / chunk;
	if (nchunks == 1 || !nn_par(work, nchunks))
	{
		for (int32_t c = 0; c < nchunks; c++)
			conv2d_chunk_int8(m, l, c * chunk,
							  c * chunk + chunk < n ? c * chunk + chunk : n,
							  l->qwork, threads);
		return;
	}
#pragma omp parallel for schedule(dynamic) num_threads(threads)
	for (int32_t c = 0; c < nchunks; c++)
	{
#ifdef _OPENMP
		size_t		me = (size_t) omp_get_thread_num();
#else
		size_t		me = 0;
#endif

		conv2d_chunk_int8(m, l, c * chunk,
						  c * chunk + chunk < n ? c * chunk + chunk : n,
						  l->qwork ? l->qwork + me * slice : NULL, 1);
	}
}

/* Y = act(conv(X, W) + b), by Winograd or by chunks of im2col + GEMM. */
static nn_status
conv2d_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
			   nn_rng *rng, nn_error *err)
{
	const float *x = l->x;
	const float *b = l->b_len ? m->params + l->b_off : NULL;
	int32_t		per = l->out_shape[0] * l->out_shape[1];
	int			K = l->spec.kernel[0] * l->spec.kernel[1] * l->in_shape[2];
	int			F = l->spec.filters;
	int32_t		chunk = conv_chunk(l, n);
	int32_t		nchunks = (n + chunk - 1) / chunk;

	(void) pass, (void) rng, (void) err;
	if (l->q)
	{
		conv2d_forward_int8(m, l, n);
		return NN_OK;
	}
	if (l->wino)
	{
		nn_wino_forward(m, l, x, n);
#pragma omp parallel for if (nn_par((double) n * per * F * 4, n))
		for (int32_t i = 0; i < n; i++)
			nn_affine_finish(l, l->ybuf + (size_t) i * l->out_size,
							 l->logits ? l->logits + (size_t) i * l->out_size :
							 NULL, NULL, per, F);
		return NN_OK;
	}

#pragma omp parallel for schedule(dynamic) \
	if (nn_par((double) n * per * K * F, nchunks))
	for (int32_t c = 0; c < nchunks; c++)
	{
		int32_t		b0 = c * chunk;
		int32_t		b1 = b0 + chunk < n ? b0 + chunk : n;
		size_t		row0 = (size_t) b0 * per;
		size_t		rows = (size_t) (b1 - b0) * per;
		float	   *col = l->col + row0 * K;

		im2col(col, x, l, b0, b1);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
					(int) rows, F, K, 1.0f, col, K, m->params + l->w_off, F,
					0.0f, l->ybuf + row0 * F, F);
		nn_affine_finish(l, l->ybuf + row0 * F,
						 l->logits ? l->logits + row0 * F : NULL, b, rows, F);
	}
	return NN_OK;
}

/* dW, db from dZ (dy) when training; dX by col2im of dZ W^T, chunk by
 * chunk. */
static void
conv2d_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	int32_t		per = l->out_shape[0] * l->out_shape[1];
	int			K = l->spec.kernel[0] * l->spec.kernel[1] * l->in_shape[2];
	int			F = l->spec.filters;
	int32_t		chunk = conv_chunk(l, n);
	int32_t		nchunks = (n + chunk - 1) / chunk;

	if (l->wino)
	{
		nn_wino_backward(m, l, dx, dy, n);
		if (nn_layer_param_grads(l))
			nn_bias_grads(m, l, dy, F, (size_t) n * per);
		return;
	}
	if (nn_layer_param_grads(l))
		nn_affine_grads(m, l, l->col, dy, K, F, (size_t) n * per);
	if (dx == NULL)
		return;
#pragma omp parallel for schedule(dynamic) \
	if (nn_par((double) n * per * K * F, nchunks))
	for (int32_t c = 0; c < nchunks; c++)
	{
		int32_t		b0 = c * chunk;
		int32_t		b1 = b0 + chunk < n ? b0 + chunk : n;
		size_t		row0 = (size_t) b0 * per;
		float	   *col = l->col + row0 * K;

		/* the columns are no longer needed: reuse them */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
					(b1 - b0) * per, K, F, 1.0f, dy + row0 * F,
					F, m->params + l->w_off, F, 0.0f, col, K);
		col2im(dx, col, l, b0, b1);
	}
}

/* The im2col rows (or Winograd's input tiles), kernel and scratch. */
static void
conv2d_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	size_t		rows = (size_t) l->out_shape[0] * l->out_shape[1];
	size_t		K = (size_t) l->spec.kernel[0] * l->spec.kernel[1] *
		l->in_shape[2];

	if (l->q && l->q->acts)
	{
		b->qbytes = l->in_size + rows * K;
		return;
	}
	if (l->q)
	{
		b->col = rows * K;
		b->qwork = nn_qgemm_weight_only_work(&l->q->w, nn_team_size());
		return;
	}
	if (l->wino)
	{
		b->col = nn_wino_col_size(l);
		b->kernel = nn_wino_kernel_size(l, pass == NN_PASS_TRAIN);
		b->work = nn_wino_work_size(l);
		return;
	}
	b->col = (size_t) l->out_shape[0] * l->out_shape[1] *
		l->spec.kernel[0] * l->spec.kernel[1] * l->in_shape[2];
}

const nn_layer_type nn_conv2d_type = {
	.name = "conv2d",
	.since = 1,
	.flags = NN_KIND_ACTIVATES | NN_KIND_PRUNABLE | NN_KIND_QUANTIZABLE,
	.options = conv2d_options,
	.n_options = NN_LENGTH(conv2d_options),
	.infer = conv2d_infer,
	.init = conv2d_init,
	.forward = conv2d_forward,
	.backward = conv2d_backward,
	.buffers = conv2d_buffers,
};
