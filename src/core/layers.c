/*
 * layers.c: shape inference, initialisation, forward and backward passes of
 * every layer kind.
 *
 * Layout: samples are contiguous, images (H, W, C) channels last.  Dense
 * kernels are (in, units) and conv2d kernels (KH, KW, C, F), as Keras, so
 * both run as one row-major GEMM per batch:
 *   dense   Y (B, U)          = X (B, in) W (in, U) + b
 *   conv2d  Y (B*OH*OW, F)    = col (B*OH*OW, KH*KW*C) W (KH*KW*C, F) + b
 * where col is the im2col expansion of the batch (output rows are already
 * (B, OH, OW, F), channels last); 3x3 stride-1 kernels over enough channels
 * run as Winograd F(4x4, 3x3) instead (winograd.c).  Padding 'same' follows TensorFlow: output
 * ceil(in / stride), the odd padding cell at the bottom/right.  Average
 * pooling with 'same' divides by the number of cells inside the input.
 * Reference definitions: https://keras.io/api/layers/ (Dense, Conv2D,
 * MaxPooling2D, AveragePooling2D, Dropout, Rescaling, Normalization).
 * Batchnorm, embedding and the global pools are in norm.c, the recurrent
 * layers in sequence.c; this file validates them and dispatches to them.
 *
 * Not here: dilation, groups, data_format channels_first.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn_internal.h"

static size_t
shape_size(int32_t rank, const int32_t *shape)
{
	size_t		n = 1;

	for (int i = 0; i < rank; i++)
		if (!nn_size_mul(&n, n, (size_t) shape[i]))
			return 0;
	return n;
}

/* Output length and leading padding of one spatial axis. */
static bool
axis_geometry(int32_t in, int32_t k, int32_t s, bool same, int32_t *out,
			  int32_t *pad)
{
	if (same)
	{
		int64_t		o = ((int64_t) in + s - 1) / s;
		int64_t		total = (o - 1) * s + k - in;

		*out = (int32_t) o;
		*pad = total > 0 ? (int32_t) (total / 2) : 0;
		return true;
	}
	if (in < k)
		return false;
	*out = (in - k) / s + 1;
	*pad = 0;
	return true;
}

#define FAIL(...) return nn_fail(err, NN_ERR_SPEC, index, __VA_ARGS__)

/*
 * Validate a layer's options against its input shape (already set in l) and
 * compute its output shape.  Messages name the layer (1-based) and option.
 */
nn_status
nn_layer_infer(nn_layer *l, int index, nn_error *err)
{
	nn_layer_spec *s = &l->spec;
	int			no = index + 1;
	const char *kn = nn_layer_kind_name(s->kind);

	if ((int) s->activation < 0 || s->activation > NN_ACT_MAX)
		FAIL("layer %d (%s): unrecognized activation %d", no, kn,
			 (int) s->activation);
	if (!isfinite(s->alpha) || s->alpha < 0.0f)
		FAIL("layer %d (%s): \"alpha\" must be a non-negative number", no, kn);
	if (!isfinite(s->l1) || !isfinite(s->l2) || s->l1 < 0.0f || s->l2 < 0.0f)
		FAIL("layer %d (%s): \"l1\" and \"l2\" must be non-negative numbers",
			 no, kn);

	l->in_size = shape_size(l->in_rank, l->in_shape);
	if (l->in_size == 0)
		FAIL("layer %d (%s): input size overflows", no, kn);
	l->out_rank = l->in_rank;
	memcpy(l->out_shape, l->in_shape, sizeof(l->out_shape));
	l->w_off = l->b_off = l->s_off = l->r_off = -1;
	l->w_len = l->b_len = l->r_len = 0;
	if ((int) s->recurrent_activation < 0 ||
		s->recurrent_activation > NN_ACT_MAX)
		FAIL("layer %d (%s): unrecognized recurrent activation %d", no, kn,
			 (int) s->recurrent_activation);

	switch (s->kind)
	{
		case NN_LAYER_DENSE:
			if (s->units <= 0)
				FAIL("layer %d (dense): \"units\" must be a positive integer, not %d",
					 no, s->units);
			if (l->in_rank != 1)
				FAIL("layer %d (dense): input must be flat, not of rank %d",
					 no, l->in_rank);
			l->out_rank = 1;
			l->out_shape[0] = s->units;
			l->w_len = (int64_t) l->in_size * s->units;
			l->b_len = s->use_bias ? s->units : 0;
			break;
		case NN_LAYER_CONV2D:
		case NN_LAYER_MAXPOOL2D:
		case NN_LAYER_AVGPOOL2D:
			{
				bool		conv = s->kind == NN_LAYER_CONV2D;
				int32_t		oh,
							ow;
				const char *ko = conv ? "kernel_size" : "pool_size";

				if (conv && s->filters <= 0)
					FAIL("layer %d (conv2d): \"filters\" must be a positive integer, not %d",
						 no, s->filters);
				if (s->kernel[0] <= 0 || s->kernel[1] <= 0 ||
					s->kernel[0] > 4096 || s->kernel[1] > 4096)
					FAIL("layer %d (%s): \"%s\" must be between 1 and 4096", no,
						 kn, ko);
				if (!conv && s->strides[0] == 0 && s->strides[1] == 0)
				{
					s->strides[0] = s->kernel[0];
					s->strides[1] = s->kernel[1];
				}
				if (s->strides[0] <= 0 || s->strides[1] <= 0 ||
					s->strides[0] > 4096 || s->strides[1] > 4096)
					FAIL("layer %d (%s): \"strides\" must be between 1 and 4096",
						 no, kn);
				if (l->in_rank != 3)
					FAIL("layer %d (%s): input must be an image (height, width, channels), not of rank %d",
						 no, kn, l->in_rank);
				if (!axis_geometry(l->in_shape[0], s->kernel[0], s->strides[0],
								   s->same_padding, &oh, &l->pad_top) ||
					!axis_geometry(l->in_shape[1], s->kernel[1], s->strides[1],
								   s->same_padding, &ow, &l->pad_left))
					FAIL("layer %d (%s): \"%s\" %dx%d is larger than the %dx%d input",
						 no, kn, ko, s->kernel[0], s->kernel[1],
						 l->in_shape[0], l->in_shape[1]);
				l->out_shape[0] = oh;
				l->out_shape[1] = ow;
				if (conv)
				{
					size_t		k;

					l->out_shape[2] = s->filters;
					if (!nn_size_mul(&k, (size_t) s->kernel[0] * s->kernel[1],
									 (size_t) l->in_shape[2]) ||
						!nn_size_mul(&k, k, (size_t) s->filters) ||
						k > (size_t) INT64_MAX / 8)
						FAIL("layer %d (conv2d): kernel size overflows", no);
					l->w_len = (int64_t) k;
					l->b_len = s->use_bias ? s->filters : 0;
					l->wino = nn_wino_fits(l);
				}
				break;
			}
		case NN_LAYER_FLATTEN:
			l->out_rank = 1;
			l->out_shape[0] = (int32_t) (l->in_size > INT32_MAX ? 0 : l->in_size);
			l->out_shape[1] = l->out_shape[2] = 0;
			if (l->out_shape[0] == 0)
				FAIL("layer %d (flatten): input too large", no);
			break;
		case NN_LAYER_RESHAPE:
			{
				size_t		n;

				if (s->shape_rank < 1 || s->shape_rank > NN_MAX_RANK)
					FAIL("layer %d (reshape): \"shape\" must have 1 to %d dimensions",
						 no, NN_MAX_RANK);
				for (int i = 0; i < s->shape_rank; i++)
					if (s->shape[i] <= 0)
						FAIL("layer %d (reshape): \"shape\" dimensions must be positive",
							 no);
				n = shape_size(s->shape_rank, s->shape);
				if (n != l->in_size)
					FAIL("layer %d (reshape): cannot reshape %zu values into %zu",
						 no, l->in_size, n);
				l->out_rank = s->shape_rank;
				memset(l->out_shape, 0, sizeof(l->out_shape));
				memcpy(l->out_shape, s->shape, sizeof(int32_t) * s->shape_rank);
				break;
			}
		case NN_LAYER_DROPOUT:
			if (!(s->rate >= 0.0f && s->rate < 1.0f))
				FAIL("layer %d (dropout): \"rate\" must be in [0, 1)", no);
			break;
		case NN_LAYER_ACTIVATION:
			break;
		case NN_LAYER_RESCALE:
			if (!isfinite(s->scale) || !isfinite(s->offset))
				FAIL("layer %d (rescale): \"scale\" and \"offset\" must be finite",
					 no);
			break;
		case NN_LAYER_NORMALIZE:
			if (!(s->epsilon > 0.0f) || !isfinite(s->epsilon))
				FAIL("layer %d (normalize): \"epsilon\" must be positive", no);
			l->channels = l->in_shape[l->in_rank - 1];
			break;
		case NN_LAYER_BATCHNORM:
			if (!(s->epsilon > 0.0f) || !isfinite(s->epsilon))
				FAIL("layer %d (batchnorm): \"epsilon\" must be positive", no);
			if (!(s->momentum >= 0.0f && s->momentum <= 1.0f))
				FAIL("layer %d (batchnorm): \"momentum\" must be in [0, 1]", no);
			l->channels = l->in_shape[l->in_rank - 1];
			l->w_len = l->b_len = l->channels;	/* gamma, beta */
			break;
		case NN_LAYER_EMBEDDING:
			if (s->input_dim <= 0)
				FAIL("layer %d (embedding): \"input_dim\" must be a positive integer, not %d",
					 no, s->input_dim);
			if (s->output_dim <= 0)
				FAIL("layer %d (embedding): \"output_dim\" must be a positive integer, not %d",
					 no, s->output_dim);
			if (l->in_rank != 1)
				FAIL("layer %d (embedding): input must be a flat sequence of token ids, not of rank %d",
					 no, l->in_rank);
			if ((double) s->input_dim * s->output_dim > (double) INT32_MAX)
				FAIL("layer %d (embedding): table size overflows", no);
			l->out_rank = 2;
			l->out_shape[0] = l->in_shape[0];
			l->out_shape[1] = s->output_dim;
			l->w_len = (int64_t) s->input_dim * s->output_dim;
			break;
		case NN_LAYER_GLOBAL_AVGPOOL:
		case NN_LAYER_GLOBAL_MAXPOOL:
			if (l->in_rank < 2)
				FAIL("layer %d (%s): input must be a sequence (timesteps, features) or an image (height, width, channels), not flat",
					 no, kn);
			l->channels = l->in_shape[l->in_rank - 1];
			l->out_rank = 1;
			memset(l->out_shape, 0, sizeof(l->out_shape));
			l->out_shape[0] = l->channels;
			break;
		case NN_LAYER_SIMPLE_RNN:
		case NN_LAYER_LSTM:
		case NN_LAYER_GRU:
			{
				int64_t		g = nn_rnn_gates(s->kind);
				int64_t		u = s->units;

				if (s->units <= 0)
					FAIL("layer %d (%s): \"units\" must be a positive integer, not %d",
						 no, kn, s->units);
				if (l->in_rank != 2)
					FAIL("layer %d (%s): input must be a sequence (timesteps, features), not of rank %d",
						 no, kn, l->in_rank);
				if (s->activation == NN_ACT_SOFTMAX ||
					s->recurrent_activation == NN_ACT_SOFTMAX)
					FAIL("layer %d (%s): softmax cannot be a recurrent layer's activation",
						 no, kn);
				if (s->kind == NN_LAYER_SIMPLE_RNN &&
					s->recurrent_activation != NN_ACT_LINEAR)
					FAIL("layer %d (%s): \"recurrent_activation\" is not an option of this layer",
						 no, kn);
				if ((double) g * u * (u + l->in_shape[1] + 2) > (double) INT32_MAX)
					FAIL("layer %d (%s): weight size overflows", no, kn);
				l->w_len = (int64_t) l->in_shape[1] * g * u;
				l->r_len = u * g * u;
				l->b_len = s->use_bias ?
					(s->kind == NN_LAYER_GRU ? 2 * g * u : g * u) : 0;
				if (s->return_sequences)
				{
					l->out_rank = 2;
					l->out_shape[0] = l->in_shape[0];
					l->out_shape[1] = s->units;
				}
				else
				{
					l->out_rank = 1;
					memset(l->out_shape, 0, sizeof(l->out_shape));
					l->out_shape[0] = s->units;
				}
				break;
			}
		default:
			FAIL("layer %d: unrecognized layer type %d", no, (int) s->kind);
	}
	/* softmax applies over the last axis (channels for conv2d), as Keras */
	if (s->kind != NN_LAYER_ACTIVATION && s->kind != NN_LAYER_DENSE &&
		s->kind != NN_LAYER_CONV2D && s->kind != NN_LAYER_SIMPLE_RNN &&
		s->kind != NN_LAYER_LSTM && s->kind != NN_LAYER_GRU &&
		s->activation != NN_ACT_LINEAR)
		FAIL("layer %d (%s): \"activation\" is not an option of this layer",
			 no, kn);
	if (s->kind != NN_LAYER_LSTM && s->kind != NN_LAYER_GRU &&
		s->recurrent_activation != NN_ACT_LINEAR)
		FAIL("layer %d (%s): \"recurrent_activation\" is not an option of this layer",
			 no, kn);
	l->out_size = shape_size(l->out_rank, l->out_shape);
	if (l->out_size == 0)
		FAIL("layer %d (%s): output size overflows", no, kn);
	return NN_OK;
}

#undef FAIL

/*
 * Glorot-uniform kernel, zero bias (Keras defaults); see the other kinds.
 * False only when the recurrent layers' scratch cannot be allocated.
 */
bool
nn_layer_init_params(nn_model *m, nn_layer *l, nn_rng *rng)
{
	double		fan_in,
				fan_out,
				limit;
	float	   *w;

	if (l->w_len <= 0)
		return true;
	switch (l->spec.kind)
	{
		case NN_LAYER_SIMPLE_RNN:
		case NN_LAYER_LSTM:
		case NN_LAYER_GRU:
			return nn_rnn_init_params(m, l, rng);
		case NN_LAYER_BATCHNORM:
			/* gamma 1, beta 0 */
			for (int64_t i = 0; i < l->w_len; i++)
				m->params[l->w_off + i] = 1.0f;
			memset(m->params + l->b_off, 0, sizeof(float) * l->b_len);
			return true;
		case NN_LAYER_EMBEDDING:
			/* Keras's embeddings_initializer: uniform(-0.05, 0.05) */
			w = m->params + l->w_off;
			for (int64_t i = 0; i < l->w_len; i++)
				w[i] = (float) ((2.0 * nn_rng_uniform(rng) - 1.0) * 0.05);
			return true;
		default:
			break;
	}
	if (l->spec.kind == NN_LAYER_DENSE)
	{
		fan_in = (double) l->in_size;
		fan_out = l->spec.units;
	}
	else
	{
		double		rf = (double) l->spec.kernel[0] * l->spec.kernel[1];

		fan_in = rf * l->in_shape[2];
		fan_out = rf * l->spec.filters;
	}
	limit = sqrt(6.0 / (fan_in + fan_out));
	w = m->params + l->w_off;
	for (int64_t i = 0; i < l->w_len; i++)
		w[i] = (float) ((2.0 * nn_rng_uniform(rng) - 1.0) * limit);
	if (l->b_len > 0)
		memset(m->params + l->b_off, 0, sizeof(float) * l->b_len);
	return true;
}

/*
 * Work splitting.  Each parallel loop hands whole samples (or whole output
 * columns) to OpenMP threads, and every thread calls single-threaded sgemm
 * on its share, so no two threads write the same value and results do not
 * depend on scheduling.  Loops over samples and chunks are scheduled
 * dynamically: when another process takes a core, the thread still running
 * takes the remaining chunks (seed CNN with one core busy: 2,580 to 2,956
 * samples/s; unchanged on an idle machine).  Convolutions run in chunks of samples whose
 * im2col rows (about CHUNK_ROWS) and outputs stay in cache while the bias
 * and activation are applied.
 */
#define CHUNK_ROWS 256

/*
 * Below this many multiply-adds (or element operations) a loop stays on
 * the calling thread: waking the team costs more than it saves, and a
 * single-row prediction must not wait for a busy core.
 */
#define PAR_MIN_WORK ((double) (1 << 20))

/* Is work of this size worth the thread team? */
bool
nn_par(double work, int32_t pieces)
{
	return pieces > 1 && work >= PAR_MIN_WORK;
}

/* Samples per conv2d chunk of a batch of n. */
static int32_t
conv_chunk(const nn_layer *l, int32_t n)
{
	int64_t		rows = (int64_t) n * l->out_shape[0] * l->out_shape[1];
	int64_t		nchunks = (rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
#ifdef _OPENMP
	int64_t		team = omp_get_max_threads();
#else
	int64_t		team = 1;
#endif

	/* a multiple of the team, so that no thread waits for a last chunk */
	nchunks = (nchunks + team - 1) / team * team;
	if (nchunks > n)
		nchunks = n;
	return (int32_t) ((n + nchunks - 1) / nchunks);
}

/* Geometry of a conv2d or pooling window over (H, W, C) input. */
typedef struct window
{
	int32_t		H,
				W,
				C;				/* input */
	int32_t		OH,
				OW;				/* output */
	int32_t		KH,
				KW;				/* kernel or pool size */
	int32_t		SH,
				SW;				/* strides */
} window;

static inline window
window_of(const nn_layer *l)
{
	window		g = {l->in_shape[0], l->in_shape[1], l->in_shape[2],
		l->out_shape[0], l->out_shape[1], l->spec.kernel[0], l->spec.kernel[1],
	l->spec.strides[0], l->spec.strides[1]};

	return g;
}

/*
 * im2col of a sample with few channels (a grey or colour image): per
 * kernel cell, a strided loop along the output row.  Copying row pieces
 * of KW * C floats, as im2col does for more channels, costs a library call
 * per 3 floats here.
 */
static void
im2col_few_channels(float *restrict col, const float *restrict xb,
					const nn_layer *l, const window *gp)
{
	const window g = *gp;
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
	const window g = window_of(l);
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
	const window g = window_of(l);

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
 * Rows of y (rows x k) that sgemm just wrote: add the bias, keep the
 * logits when asked, apply the activation.  One pass while y is in cache.
 */
static void
finish_rows(const nn_layer *l, float *y, float *logits, const float *b,
			size_t rows, size_t k)
{
	if (b)
		for (size_t r = 0; r < rows; r++)
		{
			float	   *yr = y + r * k;

			for (size_t j = 0; j < k; j++)
				yr[j] += b[j];
		}
	if (logits)
		memcpy(logits, y, sizeof(float) * rows * k);
	nn_act_forward(l->spec.activation, l->spec.alpha, y, y, rows, k);
}

/* Rows [r0, r1) of samples [0, n) split evenly over the team. */
void
nn_thread_rows(int32_t n, int32_t *r0, int32_t *r1)
{
#ifdef _OPENMP
	int			t = omp_get_thread_num(),
				nt = omp_get_num_threads();
#else
	int			t = 0,
				nt = 1;
#endif

	*r0 = (int32_t) ((int64_t) n * t / nt);
	*r1 = (int32_t) ((int64_t) n * (t + 1) / nt);
}

/* Columns of dZ that column_sums keeps in registers at once. */
#define DB_COLS 32

/*
 * out (w) = column sums of the first w <= DB_COLS columns of z (M, ld),
 * added row after row as a scalar loop would: the result does not depend
 * on how the columns are split between threads.  The sums live in a local
 * array that the compiler keeps in registers, not in out.
 */
static void
column_sums(float *restrict out, const float *restrict z, int32_t w,
			size_t ld, size_t M)
{
	float		acc[DB_COLS];

	for (int32_t j = 0; j < w; j++)
		acc[j] = 0.0f;
	if (w == DB_COLS)
		for (size_t r = 0; r < M; r++)
			for (int32_t j = 0; j < DB_COLS; j++)
				acc[j] += z[r * ld + j];
	else
		for (size_t r = 0; r < M; r++)
			for (int32_t j = 0; j < w; j++)
				acc[j] += z[r * ld + j];
	for (int32_t j = 0; j < w; j++)
		out[j] = acc[j];
}

/* db[f0..f1) = the sums of those columns of dZ (M, F). */
static void
bias_band(float *db, const float *dz, int32_t f0, int32_t f1, int F, size_t M)
{
	for (int32_t f = f0; f < f1; f += DB_COLS)
		column_sums(db + f, dz + f, f1 - f < DB_COLS ? f1 - f : DB_COLS, F, M);
}

/* db = column sums of dZ (M, F), each thread taking a band of the columns. */
static void
bias_grads(nn_model *m, const nn_layer *l, const float *dz, int F, size_t M)
{
	if (l->b_len == 0)
		return;
#pragma omp parallel if (nn_par((double) F * M, F))
	{
		int32_t		f0,
					f1;

		nn_thread_rows(F, &f0, &f1);
		bias_band(m->grads + l->b_off, dz, f0, f1, F, M);
	}
}

/*
 * Parameter gradients of a GEMM layer: dW (K, F) = X^T (M, K)^T dZ (M, F)
 * and db = column sums of dZ, each thread taking a band of the F columns.
 */
static void
weight_grads(nn_model *m, const nn_layer *l, const float *X, const float *dz,
			 int K, int F, size_t M)
{
	float	   *dw = m->grads + l->w_off;
	float	   *db = l->b_len ? m->grads + l->b_off : NULL;

#pragma omp parallel if (nn_par((double) K * F * M, F))
	{
		int32_t		f0,
					f1;

		nn_thread_rows(F, &f0, &f1);
		if (f1 > f0)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
						K, f1 - f0, (int) M, 1.0f, X, K, dz + f0, F, 0.0f,
						dw + f0, F);
		if (db)
			bias_band(db, dz, f0, f1, F, M);
	}
}

static void
dense_forward(nn_model *m, nn_layer *l, const float *x, int32_t n)
{
	const float *b = l->b_len ? m->params + l->b_off : NULL;
	int			K = (int) l->in_size,
				U = l->spec.units;

#pragma omp parallel if (nn_par((double) n * K * U, n))
	{
		int32_t		r0,
					r1;

		nn_thread_rows(n, &r0, &r1);
		if (r1 > r0)
		{
			/*
			 * One row (a per-row prediction) by sgemv, which reads the
			 * weights once: sgemm would first pack all of them into its
			 * own buffer.
			 */
			if (r1 - r0 == 1)
				cblas_sgemv(CblasRowMajor, CblasTrans, K, U, 1.0f,
							m->params + l->w_off, U, x + (size_t) r0 * K, 1,
							0.0f, l->ybuf + (size_t) r0 * U, 1);
			else
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
							r1 - r0, U, K, 1.0f, x + (size_t) r0 * K, K,
							m->params + l->w_off, U, 0.0f,
							l->ybuf + (size_t) r0 * U, U);
			finish_rows(l, l->ybuf + (size_t) r0 * U,
						l->logits ? l->logits + (size_t) r0 * U : NULL,
						b, r1 - r0, U);
		}
	}
}

static void
conv_forward(nn_model *m, nn_layer *l, const float *x, int32_t n)
{
	const float *b = l->b_len ? m->params + l->b_off : NULL;
	int32_t		per = l->out_shape[0] * l->out_shape[1];
	int			K = l->spec.kernel[0] * l->spec.kernel[1] * l->in_shape[2];
	int			F = l->spec.filters;
	int32_t		chunk = conv_chunk(l, n);
	int32_t		nchunks = (n + chunk - 1) / chunk;

	if (l->wino)
	{
		nn_wino_forward(m, l, x, n);
#pragma omp parallel for if (nn_par((double) n * per * F * 4, n))
		for (int32_t i = 0; i < n; i++)
			finish_rows(l, l->ybuf + (size_t) i * l->out_size,
						l->logits ? l->logits + (size_t) i * l->out_size : NULL,
						NULL, per, F);
		return;
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
		finish_rows(l, l->ybuf + row0 * F,
					l->logits ? l->logits + row0 * F : NULL, b, rows, F);
	}
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
pool_sample(const nn_layer *l, const window *gp, const float *xb, int32_t b)
{
	const window g = *gp;
	bool		is_max = l->spec.kind == NN_LAYER_MAXPOOL2D;
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
static void
pool_forward(nn_layer *l, const float *x, int32_t n)
{
	const window g = window_of(l);

#pragma omp parallel for schedule(dynamic) \
	if (nn_par((double) n * l->out_size * g.KH * g.KW, n))
	for (int32_t b = 0; b < n; b++)
		pool_sample(l, &g, x + (size_t) b * l->in_size, b);
}

static void
pool_backward(nn_layer *l, float *dx, const float *dy, int32_t n)
{
	const window g = window_of(l);
	bool		is_max = l->spec.kind == NN_LAYER_MAXPOOL2D;

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

/* Divisor of a normalize channel: max(sqrt(variance), epsilon), as Keras. */
static inline float
norm_div(const nn_layer *l, const float *var, int32_t c)
{
	float		sd = sqrtf(var[c]);

	return sd > l->spec.epsilon ? sd : l->spec.epsilon;
}

/*
 * Forward one layer over n rows: reads l->x, sets l->y.  Identity layers
 * (flatten, reshape, dropout at inference or rate 0) pass their input on.
 */
nn_status
nn_layer_forward(nn_model *m, nn_layer *l, int index, int32_t n,
				 bool training, nn_rng *rng, nn_error *err)
{
	const float *x = l->x;
	const nn_layer_spec *s = &l->spec;
	size_t		total = l->out_size * n;
	size_t		k = l->out_shape[l->out_rank - 1];

	l->y = l->ybuf;
	switch (s->kind)
	{
		case NN_LAYER_DENSE:
			dense_forward(m, l, x, n);
			return NN_OK;
		case NN_LAYER_CONV2D:
			conv_forward(m, l, x, n);
			return NN_OK;
		case NN_LAYER_MAXPOOL2D:
		case NN_LAYER_AVGPOOL2D:
			pool_forward(l, x, n);
			return NN_OK;
		case NN_LAYER_FLATTEN:
		case NN_LAYER_RESHAPE:
			l->y = (float *) x;
			return NN_OK;
		case NN_LAYER_DROPOUT:
			if (!training || s->rate <= 0.0f)
				l->y = (float *) x;
			else
			{
				/* serial: the mask must not depend on the thread count */
				float		keep = 1.0f / (1.0f - s->rate);

				for (size_t i = 0; i < total; i++)
				{
					l->mask[i] = nn_rng_uniform(rng) >= s->rate ? keep : 0.0f;
					l->ybuf[i] = x[i] * l->mask[i];
				}
			}
			return NN_OK;
		case NN_LAYER_ACTIVATION:
			if (l->logits)
				memcpy(l->logits, x, sizeof(float) * total);
			nn_act_forward(s->activation, s->alpha, l->ybuf, x, total / k, k);
			return NN_OK;
		case NN_LAYER_RESCALE:
			for (size_t i = 0; i < total; i++)
				l->ybuf[i] = x[i] * s->scale + s->offset;
			return NN_OK;
		case NN_LAYER_NORMALIZE:
			{
				const float *mean = m->state + l->s_off;
				const float *var = mean + l->channels;
				int32_t		C = l->channels;

				for (size_t i = 0; i < total; i += C)
					for (int32_t c = 0; c < C; c++)
						l->ybuf[i + c] = (x[i + c] - mean[c]) / norm_div(l, var, c);
				return NN_OK;
			}
		case NN_LAYER_BATCHNORM:
			nn_batchnorm_forward(m, l, x, n, training);
			return NN_OK;
		case NN_LAYER_EMBEDDING:
			return nn_embedding_forward(m, l, index, x, n, err);
		case NN_LAYER_GLOBAL_AVGPOOL:
		case NN_LAYER_GLOBAL_MAXPOOL:
			nn_global_pool_forward(l, x, n);
			return NN_OK;
		case NN_LAYER_SIMPLE_RNN:
		case NN_LAYER_LSTM:
		case NN_LAYER_GRU:
			nn_rnn_forward(m, l, x, n);
			return NN_OK;
	}
	return NN_OK;
}

/* dz = dy * f'(.) in place over n rows, split over threads. */
static void
act_backward_rows(const nn_layer *l, float *dy, int32_t n)
{
	size_t		k = l->out_shape[l->out_rank - 1];
	size_t		rows_per = l->out_size / k;

#pragma omp parallel if (nn_par((double) n * l->out_size, n))
	{
		int32_t		r0,
					r1;

		nn_thread_rows(n, &r0, &r1);
		if (r1 > r0)
		{
			size_t		off = (size_t) r0 * l->out_size;

			nn_act_backward(l->spec.activation, l->spec.alpha, dy + off,
							dy + off, l->y + off, rows_per * (r1 - r0), k);
		}
	}
}

/*
 * Backward one layer over n rows.  dy (n, out_size) is the gradient of the
 * loss w.r.t. the layer output, or, when fused (the last layer with its
 * activation folded into the loss), w.r.t. its pre-activation; it may be
 * modified.  Fills parameter gradients in m->grads and dx (n, in_size)
 * unless dx is NULL.  Identity layers are handled by the caller.
 */
void
nn_layer_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n,
				  bool fused)
{
	const nn_layer_spec *s = &l->spec;
	size_t		total = l->out_size * n;

	/* rnn layers apply their activations inside the recurrence */
	if (s->activation != NN_ACT_LINEAR && !fused &&
		nn_rnn_gates(s->kind) == 0)
		act_backward_rows(l, dy, n);

	switch (s->kind)
	{
		case NN_LAYER_DENSE:
			{
				int			K = (int) l->in_size,
							U = s->units;

				weight_grads(m, l, l->x, dy, K, U, (size_t) n);
				if (dx)
#pragma omp parallel if (nn_par((double) n * K * U, n))
				{
					int32_t		r0,
								r1;

					nn_thread_rows(n, &r0, &r1);
					if (r1 > r0)
						cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
									r1 - r0, K, U, 1.0f, dy + (size_t) r0 * U, U,
									m->params + l->w_off, U, 0.0f,
									dx + (size_t) r0 * K, K);
				}
				break;
			}
		case NN_LAYER_CONV2D:
			{
				int32_t		per = l->out_shape[0] * l->out_shape[1];
				int			K = s->kernel[0] * s->kernel[1] * l->in_shape[2];
				int			F = s->filters;
				int32_t		chunk = conv_chunk(l, n);
				int32_t		nchunks = (n + chunk - 1) / chunk;

				if (l->wino)
				{
					nn_wino_backward(m, l, dx, dy, n);
					bias_grads(m, l, dy, F, (size_t) n * per);
					break;
				}
				weight_grads(m, l, l->col, dy, K, F, (size_t) n * per);
				if (dx)
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
				break;
			}
		case NN_LAYER_MAXPOOL2D:
		case NN_LAYER_AVGPOOL2D:
			if (dx)
				pool_backward(l, dx, dy, n);
			break;
		case NN_LAYER_DROPOUT:
			if (dx)
				for (size_t i = 0; i < total; i++)
					dx[i] = dy[i] * l->mask[i];
			break;
		case NN_LAYER_ACTIVATION:
			if (dx)
				memcpy(dx, dy, sizeof(float) * total);
			break;
		case NN_LAYER_RESCALE:
			if (dx)
				for (size_t i = 0; i < total; i++)
					dx[i] = dy[i] * s->scale;
			break;
		case NN_LAYER_NORMALIZE:
			if (dx)
			{
				const float *var = m->state + l->s_off + l->channels;
				int32_t		C = l->channels;

				for (size_t i = 0; i < total; i += C)
					for (int32_t c = 0; c < C; c++)
						dx[i + c] = dy[i + c] / norm_div(l, var, c);
			}
			break;
		case NN_LAYER_BATCHNORM:
			nn_batchnorm_backward(m, l, dx, dy, n);
			break;
		case NN_LAYER_EMBEDDING:
			nn_embedding_backward(m, l, dx, dy, n);
			break;
		case NN_LAYER_GLOBAL_AVGPOOL:
		case NN_LAYER_GLOBAL_MAXPOOL:
			if (dx)
				nn_global_pool_backward(l, dx, dy, n);
			break;
		case NN_LAYER_SIMPLE_RNN:
		case NN_LAYER_LSTM:
		case NN_LAYER_GRU:
			nn_rnn_backward(m, l, dx, dy, n);
			break;
		case NN_LAYER_FLATTEN:
		case NN_LAYER_RESHAPE:
			break;
	}
}

/* Floats of l->work per sample for the mode (0: the layer needs none). */
size_t
nn_layer_work_size(const nn_layer *l, bool training)
{
	switch (l->spec.kind)
	{
		case NN_LAYER_BATCHNORM:
			/* training: xhat (in_size), then (4, C) batch statistics */
			return training ? l->in_size + 4 * (size_t) l->channels : 0;
		case NN_LAYER_SIMPLE_RNN:
		case NN_LAYER_LSTM:
		case NN_LAYER_GRU:
			return nn_rnn_work_size(l, training);
		case NN_LAYER_CONV2D:
			return l->wino ? nn_wino_work_size(l) : 0;
		default:
			return 0;
	}
}

/* Kinds with per-channel statistics in the state vector. */
bool
nn_layer_has_state(nn_layer_kind kind)
{
	return kind == NN_LAYER_NORMALIZE || kind == NN_LAYER_BATCHNORM;
}
