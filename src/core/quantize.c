/*
 * quantize.c: int8 models.  nn_model_quantize turns the kernels of the
 * NN_KIND_QUANTIZABLE layers (dense, conv2d) into symmetric int8 with one
 * scale per output channel, packed once for the kernels of qgemm.h:
 *
 *   W (K, F) ~ scale[f] q[f][k],  q in [-127, 127]   (per output channel f)
 *
 * The float kernels leave the parameter vector, which keeps the biases
 * and the tensors of the other layers (batchnorm, embedding, recurrent
 * layers, normalize statistics stay float).  A calibrated model also
 * quantizes each such layer's input, x ~ act.scale (xq - act.zero) with
 * xq in [0, 255], from the min and max (widened to hold 0) that the input
 * took over the calibration rows in the float model's prediction pass;
 * its products are then int8 x int8 with exact int32 sums (nn_qgemm).
 * Without calibration the inputs stay float and the products dequantize
 * the weights in blocks (nn_qgemm_weight_only).  The forward of each kind
 * (dense.c, conv2d.c) reads l->q.
 *
 * An int8 model only predicts: it has no float kernel to train, to
 * differentiate through or to prune, and no optimizer state.  A pruning
 * mask is dropped (its zeros are int8 zeros, which nn_model_sparsity
 * counts).  Model bytes: format version 4 (serialize.c).
 *
 * Left out: int8 outputs chained between layers (every layer's output is
 * float, so activations, pools and batchnorm run as before), per-channel
 * activation scales, and int8 recurrent and embedding layers.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

/* Calibration rows per forward: bounds the buffers whatever the rows. */
#define CALIB_BATCH 64

nn_status
nn_quant_refuse(const nn_model *m, const char *done, const char *detail,
				nn_error *err)
{
	if (m->qlayers == NULL)
		return NN_OK;
	nn_fail(err, NN_ERR_UNSUPPORTED, -1, "model is int8 and cannot be %s",
			done);
	nn_detail(err, "%s", detail);
	return NN_ERR_UNSUPPORTED;
}

bool
nn_model_is_quantized(const nn_model *m)
{
	return m->qlayers != NULL;
}

bool
nn_model_quantized_activations(const nn_model *m)
{
	for (int i = 0; m->qlayers && i < m->n_layers; i++)
		if (m->layers[i].q)
			return m->layers[i].q->acts;
	return false;
}

/* Output channels F and inputs K of a quantizable layer's kernel (K, F). */
static void
kernel_dims(const nn_layer *l, int32_t *out, int32_t *in)
{
	*out = l->out_shape[l->out_rank - 1];
	*in = (int32_t) (l->w_len / *out);
}

void
nn_quant_free(nn_model *m)
{
	if (m->qlayers == NULL)
		return;
	for (int i = 0; i < m->n_layers; i++)
	{
		nn_qgemm_free(&m->qlayers[i].w);
		m->layers[i].q = NULL;
	}
	nn_free_bytes(&m->alloc, m->qlayers);
	m->qlayers = NULL;
}

int64_t
nn_quant_zeros(const nn_qweights *w)
{
	int64_t		zeros = 0;

	for (int32_t o = 0; o < w->out; o++)
		for (int32_t k = 0; k < w->in; k++)
			zeros += nn_quant_weight(w, o, k) == 0;
	return zeros;
}

int32_t
nn_quant_threads(const nn_layer *l)
{
	size_t		one = nn_qgemm_weight_only_work(&l->q->w, 1);
	size_t		t = l->qwork_len / one;
	int32_t		team = nn_team_size();

	if (t < 1)
		return 1;
	return t < (size_t) team ? (int32_t) t : team;
}

nn_status
nn_quant_set_layer(nn_model *m, int i, const int8_t *q, const float *scale,
				   bool acts, nn_qparams act, nn_error *err)
{
	nn_layer   *l = &m->layers[i];
	nn_qlayer  *ql;
	int32_t		out,
				in;
	nn_status	st;

	if (m->qlayers == NULL)
	{
		m->qlayers = nn_alloc_bytes(&m->alloc, sizeof(nn_qlayer) * m->n_layers);
		if (m->qlayers == NULL)
			return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		memset(m->qlayers, 0, sizeof(nn_qlayer) * m->n_layers);
	}
	ql = &m->qlayers[i];
	kernel_dims(l, &out, &in);
	st = nn_qgemm_pack(&ql->w, q, scale, NN_QPATH_AUTO, out, in, &m->alloc,
					   err);
	if (st != NN_OK)
		return st;
	ql->acts = acts;
	ql->act = act;
	l->q = ql;
	return NN_OK;
}

/*
 * A parameter vector without the int8 layers' kernels: each layer's
 * remaining tensors (nn_layer_span skips an int8 kernel) move down, in
 * order, and their offsets follow.  Nothing changes when out of memory.
 */
static nn_status
compact_params(nn_model *m, nn_error *err)
{
	int64_t		np = 0,
				off,
				cur = 0;
	float	   *p;

	for (int i = 0; i < m->n_layers; i++)
		np += nn_layer_span(&m->layers[i], &off);
	p = nn_alloc_bytes(&m->alloc, sizeof(float) * (np > 0 ? np : 1));
	if (p == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	for (int i = 0; i < m->n_layers; i++)
	{
		nn_layer   *l = &m->layers[i];
		int64_t		len = nn_layer_span(l, &off);

		if (len > 0)
			memcpy(p + cur, m->params + off, sizeof(float) * len);
		if (l->w_len > 0)
			l->w_off = l->q ? -1 : cur;
		cur += l->q ? 0 : l->w_len;
		if (l->r_len > 0)
			l->r_off = cur;
		cur += l->r_len;
		if (l->b_len > 0)
			l->b_off = cur;
		cur += l->b_len;
		l->t_off = -1;			/* nothing is trained */
	}
	nn_free_bytes(&m->alloc, m->params);
	m->params = p;
	m->n_params = np;
	m->n_train = 0;
	return NN_OK;
}

nn_status
nn_quant_finish(nn_model *m, nn_error *err)
{
	nn_status	st;

	if ((st = compact_params(m, err)) != NN_OK)
		return st;
	nn_model_release_training(m);
	nn_free_bytes(&m->alloc, m->mask);
	m->mask = NULL;
	/* the next prepare sizes the int8 layers' buffers */
	nn_model_free_buffers(m);
	return NN_OK;
}

nn_status
nn_model_set_qpath(nn_model *m, nn_qpath path, nn_error *err)
{
	if (path == NN_QPATH_AUTO)
		path = nn_qgemm_path_best();
	if (path < NN_QPATH_AUTO || path >= NN_QPATH_COUNT ||
		!nn_qgemm_path_supported(path))
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "int8 kernel path %d is not supported here", (int) path);
	for (int i = 0; m->qlayers && i < m->n_layers; i++)
		if (m->layers[i].q)
			m->layers[i].q->w.path = path;
	return NN_OK;
}

/* ---------- calibration ---------- */

/* Rows [r0, r0 + n) of the calibration data are finite. */
static nn_status
check_rows(const float *x, int64_t r0, int32_t n, size_t in, nn_error *err)
{
	for (int32_t r = 0; r < n; r++)
		for (size_t j = 0; j < in; j++)
			if (!isfinite(x[(size_t) r * in + j]))
				return nn_fail(err, NN_ERR_DATA, -1,
							   "calibration row %lld has a value that is not finite (feature %zu)",
							   (long long) (r0 + r + 1), j + 1);
	return NN_OK;
}

/* Widen [lo, hi] of each quantizable layer to its input over n rows. */
static nn_status
record_ranges(const nn_model *m, float *lo, float *hi, int32_t n,
			  nn_error *err)
{
	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];
		size_t		len = l->in_size * (size_t) n;

		if (!(l->type->flags & NN_KIND_QUANTIZABLE))
			continue;
		for (size_t j = 0; j < len; j++)
		{
			float		v = l->x[j];

			if (!isfinite(v))
				return nn_fail(err, NN_ERR_NUMERIC, i,
							   "layer %d (%s): input is not finite on the calibration rows",
							   i + 1, l->type->name);
			lo[i] = v < lo[i] ? v : lo[i];
			hi[i] = v > hi[i] ? v : hi[i];
		}
	}
	return NN_OK;
}

/*
 * act (n_layers) of the quantizable layers from the float model's
 * prediction pass over the rows x (rows, in_size), CALIB_BATCH at a time.
 */
static nn_status
calibrate(nn_model *m, nn_qparams *act, const float *x, int64_t rows,
		  nn_error *err)
{
	size_t		in = nn_model_input_size(m);
	int32_t		B = rows < CALIB_BATCH ? (int32_t) rows : CALIB_BATCH;
	float	   *lo = nn_alloc_bytes(&m->alloc, sizeof(float) * 2 * m->n_layers);
	float	   *hi = lo + m->n_layers;
	nn_status	st;

	if (lo == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	memset(lo, 0, sizeof(float) * 2 * m->n_layers);	/* 0 is in every range */
	st = nn_model_prepare_pass(m, B, NN_PASS_PREDICT, 0, err);
	for (int64_t r0 = 0; st == NN_OK && r0 < rows; r0 += B)
	{
		int32_t		n = rows - r0 < B ? (int32_t) (rows - r0) : B;
		const float *out;

		st = check_rows(x + (size_t) r0 * in, r0, n, in, err);
		if (st == NN_OK)
			st = nn_model_forward(m, &out, x + (size_t) r0 * in, n, err);
		if (st == NN_OK)
			st = record_ranges(m, lo, hi, n, err);
	}
	for (int i = 0; st == NN_OK && i < m->n_layers; i++)
		if (m->layers[i].type->flags & NN_KIND_QUANTIZABLE)
			st = nn_qgemm_range(&act[i], lo[i], hi[i], err);
	nn_free_bytes(&m->alloc, lo);
	return st;
}

/* ---------- quantization ---------- */

/* What makes a model unfit to quantize, before anything changes. */
static nn_status
check_quantize(const nn_model *m, const float *calib_x, int64_t n_calib,
			   nn_error *err)
{
	int			found = 0;

	if (m->qlayers)
		return nn_fail(err, NN_ERR_SPEC, -1, "model is already int8");
	if (calib_x ? n_calib < 1 : n_calib != 0)
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "calibration needs at least one row and its values, not %lld rows",
					   (long long) n_calib);
	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];
		int32_t		out,
					in;

		if (!(l->type->flags & NN_KIND_QUANTIZABLE))
			continue;
		found++;
		kernel_dims(l, &out, &in);
		if (in > NN_QGEMM_MAX_IN)
			return nn_fail(err, NN_ERR_LIMIT, i,
						   "layer %d (%s): cannot quantize a kernel of %d inputs per output, more than %d",
						   i + 1, l->type->name, in, NN_QGEMM_MAX_IN);
	}
	if (found == 0)
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "model has no dense or conv2d layer to quantize");
	return NN_OK;
}

/* The largest kernel of the quantizable layers: values, channels. */
static void
largest_kernel(const nn_model *m, size_t *values, int32_t *channels)
{
	*values = 0;
	*channels = 0;
	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];
		int32_t		out,
					in;

		if (!(l->type->flags & NN_KIND_QUANTIZABLE))
			continue;
		kernel_dims(l, &out, &in);
		*values = (size_t) l->w_len > *values ? (size_t) l->w_len : *values;
		*channels = out > *channels ? out : *channels;
	}
}

/* Quantize and pack every quantizable layer's kernel; act NULL: weight-only. */
static nn_status
quantize_layers(nn_model *m, const nn_qparams *act, nn_error *err)
{
	size_t		values;
	int32_t		channels;
	int8_t	   *q;
	float	   *scale;
	nn_status	st = NN_OK;
	nn_qparams	none = {0.0f, 0};

	largest_kernel(m, &values, &channels);
	q = nn_alloc_bytes(&m->alloc, values);
	scale = nn_alloc_bytes(&m->alloc, sizeof(float) * channels);
	if (q == NULL || scale == NULL)
		st = nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	for (int i = 0; st == NN_OK && i < m->n_layers; i++)
	{
		nn_layer   *l = &m->layers[i];
		int32_t		out,
					in;

		if (!(l->type->flags & NN_KIND_QUANTIZABLE))
			continue;
		kernel_dims(l, &out, &in);
		/* the kernel is (K, F): channel f at stride 1, input k at F */
		st = nn_qgemm_quantize_weights(q, scale, m->params + l->w_off, 1,
									   (size_t) out, out, in, err);
		if (st == NN_OK)
			st = nn_quant_set_layer(m, i, q, scale, act != NULL,
									act ? act[i] : none, err);
	}
	nn_free_bytes(&m->alloc, q);
	nn_free_bytes(&m->alloc, scale);
	return st;
}

nn_status
nn_model_quantize(nn_model *m, const float *calib_x, int64_t n_calib,
				  nn_error *err)
{
	nn_qparams *act = NULL;
	nn_status	st;

	if ((st = check_quantize(m, calib_x, n_calib, err)) != NN_OK)
		return st;
	if (calib_x)
	{
		act = nn_alloc_bytes(&m->alloc, sizeof(nn_qparams) * m->n_layers);
		if (act == NULL)
			return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		memset(act, 0, sizeof(nn_qparams) * m->n_layers);
		st = calibrate(m, act, calib_x, n_calib, err);
	}
	if (st == NN_OK)
		st = quantize_layers(m, act, err);
	if (st == NN_OK)
		st = nn_quant_finish(m, err);
	if (st != NN_OK)
		nn_quant_free(m);		/* the float model stays as it was */
	nn_free_bytes(&m->alloc, act);
	return st;
}

/* Layer i of the float twin d from the int8 model q: kernel dequantized. */
static void
dequantize_layer(nn_model *d, const nn_model *q, int i)
{
	const nn_layer *ql = &q->layers[i];
	nn_layer   *dl = &d->layers[i];
	const nn_qweights *w = &ql->q->w;
	int64_t		qoff,
				doff,
				len = nn_layer_span(ql, &qoff);

	/* the rest of the span (recurrent kernel, bias) as it is */
	nn_layer_span(dl, &doff);
	memcpy(d->params + doff + dl->w_len, q->params + qoff, sizeof(float) * len);
	/* kernels are (K inputs, F outputs), outputs fastest, as Keras's */
	for (int32_t k = 0; k < w->in; k++)
		for (int32_t o = 0; o < w->out; o++)
			d->params[dl->w_off + (int64_t) k * w->out + o] =
				w->scale[o] * (float) nn_quant_weight(w, o, k);
}

nn_status
nn_model_dequantize(nn_model **out, const nn_model *q, const nn_alloc *alloc,
					nn_error *err)
{
	nn_model   *d;
	nn_status	st;

	*out = NULL;
	if ((st = nn_model_build(&d, &q->spec, 0, alloc, err)) != NN_OK)
		return st;
	for (int i = 0; i < q->n_layers; i++)
	{
		const nn_layer *ql = &q->layers[i];
		int64_t		qoff,
					doff,
					len = nn_layer_span(ql, &qoff);

		if (ql->q)
			dequantize_layer(d, q, i);
		else if (len > 0)
		{
			nn_layer_span(&d->layers[i], &doff);
			memcpy(d->params + doff, q->params + qoff, sizeof(float) * len);
		}
	}
	memcpy(d->state, q->state, sizeof(float) * q->n_state);
	*out = d;
	return NN_OK;
}
