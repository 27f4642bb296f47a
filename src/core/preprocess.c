/*
 * preprocess.c: layers that prepare raw features (Keras's Rescaling and
 * Normalization).
 *
 *   rescale    y = x scale + offset
 *   normalize  y = (x - mean) / max(sqrt(variance), epsilon), per feature
 *              (the last axis), with the mean and variance adapted once
 *              from the training rows at the first fit
 *
 * The normalize statistics are the layer's state, not weights: no
 * gradient reaches them.  Adaptation merges each batch's mean and sum of
 * squared deviations into the running ones (Chan et al.'s pairwise
 * update), so that no E[x^2] - mean^2 cancellation happens.
 * https://keras.io/api/layers/preprocessing_layers/numerical/
 */
#include <float.h>
#include <math.h>

#include "nn_internal.h"

static const nn_kind_option rescale_options[] = {
	NN_TAKES(NN_OPTION_SCALE, .def = 1),
	NN_TAKES(NN_OPTION_OFFSET, .def = 0),
};

static const nn_kind_option normalize_options[] = {
	NN_TAKES(NN_OPTION_EPSILON, .def = 1e-7),
	NN_TAKES(NN_OPTION_ADAPTED, .def = 0),
};

static nn_status
rescale_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				nn_rng *rng, nn_error *err)
{
	size_t		total = l->out_size * n;

	(void) m, (void) pass, (void) rng, (void) err;
	for (size_t i = 0; i < total; i++)
		l->ybuf[i] = l->x[i] * l->spec.scale + l->spec.offset;
	return NN_OK;
}

static void
rescale_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	size_t		total = l->out_size * n;

	(void) m;
	if (dx)
		for (size_t i = 0; i < total; i++)
			dx[i] = dy[i] * l->spec.scale;
}

/* One feature per value of the last axis. */
static nn_status
normalize_infer(nn_layer *l, nn_error *err)
{
	(void) err;
	l->channels = l->in_shape[l->in_rank - 1];
	return NN_OK;
}

/* Divisor of a feature: max(sqrt(variance), epsilon), as Keras. */
static inline float
norm_div(const nn_layer *l, const float *var, int32_t c)
{
	float		sd = sqrtf(var[c]);

	return sd > l->spec.epsilon ? sd : l->spec.epsilon;
}

static nn_status
normalize_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				  nn_rng *rng, nn_error *err)
{
	const float *mean = m->state + l->s_off;
	const float *var = mean + l->channels;
	int32_t		C = l->channels;
	size_t		total = l->out_size * n;

	(void) pass, (void) rng, (void) err;
	for (size_t i = 0; i < total; i += C)
		for (int32_t c = 0; c < C; c++)
			l->ybuf[i + c] = (l->x[i + c] - mean[c]) / norm_div(l, var, c);
	return NN_OK;
}

static void
normalize_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	const float *var = m->state + l->s_off + l->channels;
	int32_t		C = l->channels;
	size_t		total = l->out_size * n;

	if (dx == NULL)
		return;
	for (size_t i = 0; i < total; i += C)
		for (int32_t c = 0; c < C; c++)
			dx[i + c] = dy[i + c] / norm_div(l, var, c);
}

/* Mean, variance and count, as Keras counts them. */
static int64_t
normalize_params(const nn_layer *l)
{
	return 2 * (int64_t) l->channels + 1;
}

/*
 * Merge the statistics of n input rows into the running (mean, M2) in
 * l->acc (3 C doubles, the third C the batch mean).
 */
void
nn_normalize_accumulate(nn_layer *l, const float *in, int32_t n)
{
	int32_t		C = l->channels;
	double	   *mean = l->acc,
			   *m2 = l->acc + C,
			   *bmean = l->acc + 2 * C;
	int64_t		nb = (int64_t) (l->in_size / C) * n;
	double		na = (double) l->acc_n,
				tot = na + (double) nb;

	for (int32_t c = 0; c < C; c++)
		bmean[c] = 0.0;
	for (size_t r = 0; r < l->in_size * n; r += C)
		for (int32_t c = 0; c < C; c++)
			bmean[c] += in[r + c];
	for (int32_t c = 0; c < C; c++)
		bmean[c] /= (double) nb;
	for (int32_t c = 0; c < C; c++)
	{
		double		bm2 = 0.0,
					delta = bmean[c] - mean[c];

		for (size_t r = c; r < l->in_size * n; r += C)
			bm2 += (in[r] - bmean[c]) * (in[r] - bmean[c]);
		mean[c] += delta * (double) nb / tot;
		m2[c] += bm2 + delta * delta * na * (double) nb / tot;
	}
	l->acc_n += nb;
}

/* Store the accumulated statistics as floats; they must fit. */
nn_status
nn_normalize_finish(nn_model *m, nn_layer *l, nn_error *err)
{
	float	   *mean = m->state + l->s_off;
	int32_t		C = l->channels;

	if (l->acc == NULL || l->acc_n == 0)
		return nn_fail(err, NN_ERR_DATA, l->index,
					   "layer %d (normalize): no rows to adapt to", l->index + 1);
	for (int32_t c = 0; c < C; c++)
	{
		double		mu = l->acc[c];
		double		var = l->acc[C + c] / l->acc_n;

		/* float32 statistics: a variance past FLT_MAX cannot be stored */
		if (!(fabs(mu) <= FLT_MAX && var <= FLT_MAX))
			return nn_fail(err, NN_ERR_DATA, l->index,
						   "layer %d (normalize): values of feature %d are too large to normalize",
						   l->index + 1, c + 1);
	}
	for (int32_t c = 0; c < C; c++)
	{
		mean[c] = (float) l->acc[c];
		mean[C + c] = (float) (l->acc[C + c] / l->acc_n);
	}
	nn_free_bytes(&m->alloc, l->acc);
	l->acc = NULL;
	l->spec.adapted = m->spec.layers[l->index].adapted = true;
	return NN_OK;
}

const nn_layer_type nn_rescale_type = {
	.name = "rescale", .since = 1, .flags = NN_KIND_KEEPS_IDS,
	.options = rescale_options, .n_options = NN_LENGTH(rescale_options),
	.forward = rescale_forward, .backward = rescale_backward,
};

const nn_layer_type nn_normalize_type = {
	.name = "normalize", .since = 1, .flags = NN_KIND_STATE | NN_KIND_ADAPTS,
	.options = normalize_options, .n_options = NN_LENGTH(normalize_options),
	.infer = normalize_infer, .forward = normalize_forward,
	.backward = normalize_backward, .keras_params = normalize_params,
};
