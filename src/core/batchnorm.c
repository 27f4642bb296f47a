/*
 * batchnorm.c: batch normalization (Keras's BatchNormalization) over the
 * last axis.
 *
 * Layout: each sample is contiguous and its last axis is the channel (or
 * feature) axis, so a sample of in_size floats is (S, C) with S = in_size / C
 * positions: (N) flat vectors are S = 1, images (H, W, C) S = H W, sequences
 * (T, F) S = T.
 *
 * In training y = gamma (x - mean_B) / sqrt(var_B + eps) + beta with the
 * statistics of the batch per channel over the B S rows (biased variance,
 * as Keras), and the moving averages become m = m momentum + stat (1 -
 * momentum), Keras's update with the biased variance too; at inference
 * the moving averages replace the batch statistics.  The backward pass is
 * the full batch-norm gradient through the batch statistics; differentiated
 * as it predicts (NN_PASS_DIFF), the layer is the per-channel affine map
 * of the moving statistics, dx = gamma dy / sqrt(var_m + eps).  A frozen
 * layer ("trainable": false) normalizes with the moving averages also in
 * training and leaves them as they are, as Keras does.  gamma is the
 * layer's kernel, beta its bias; the moving mean and variance are its
 * state.
 * https://keras.io/api/layers/normalization_layers/batch_normalization/
 *
 * Not here: center/scale switches, renorm, virtual batches.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

static const nn_kind_option batchnorm_options[] = {
	NN_TAKES(NN_OPTION_EPSILON, .def = 1e-3),
	NN_TAKES(NN_OPTION_MOMENTUM, .def = 0.99),	NN_TAKES(NN_OPTION_TRAINABLE, .def = 1),
};

/* gamma and beta of C channels. */
static nn_status
batchnorm_infer(nn_layer *l, nn_error *err)
{
	(void) err;
	l->channels = l->in_shape[l->in_rank - 1];
	l->w_len = l->b_len = l->channels;
	return NN_OK;
}

/* gamma 1, beta 0. */
static bool
batchnorm_init(nn_model *m, nn_layer *l, nn_rng *rng)
{
	(void) rng;
	for (int64_t i = 0; i < l->w_len; i++)
		m->params[l->w_off + i] = 1.0f;
	memset(m->params + l->b_off, 0, sizeof(float) * l->b_len);
	return true;
}

/* Training keeps xhat (in_size), then (4, C) batch statistics. */
static void
batchnorm_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (pass == NN_PASS_TRAIN)
		b->work = l->in_size + 4 * (size_t) l->channels;
}

/* gamma, beta and the moving statistics, as Keras counts them. */
static int64_t
batchnorm_params(const nn_layer *l)
{
	return 4 * (int64_t) l->channels;
}

/*
 * A frozen layer in training: the moving statistics normalize, as at
 * inference, and stay as they are; xhat and 1 / sqrt(var + eps) are kept
 * for the backward pass.
 */
static void
frozen_forward(nn_model *m, nn_layer *l, int32_t n)
{
	int32_t		C = l->channels;
	size_t		total = l->in_size * n;
	const float *gamma = m->params + l->w_off;
	const float *beta = m->params + l->b_off;
	const float *mmean = m->state + l->s_off;
	const float *mvar = mmean + C;
	float	   *xhat = l->work;
	float	   *istd = l->work + (size_t) m->batch_cap * l->in_size + C;

	for (int32_t c = 0; c < C; c++)
		istd[c] = 1.0f / sqrtf(mvar[c] + l->spec.epsilon);
	for (size_t i = 0; i < total; i += C)
		for (int32_t c = 0; c < C; c++)
		{
			xhat[i + c] = (l->x[i + c] - mmean[c]) * istd[c];
			l->ybuf[i + c] = gamma[c] * xhat[i + c] + beta[c];
		}
}

/* Batch (training) or moving-average (inference) batch normalization. */
static nn_status
batchnorm_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				  nn_rng *rng, nn_error *err)
{
	const float *x = l->x;
	int32_t		C = l->channels;
	size_t		total = l->in_size * n;
	size_t		rows = total / C;
	const float *gamma = m->params + l->w_off;
	const float *beta = m->params + l->b_off;
	float	   *mmean = m->state + l->s_off;	/* (C) moving mean */
	float	   *mvar = mmean + C;	/* (C) moving variance */
	float		eps = l->spec.epsilon;

	(void) rng, (void) err;
	if (pass != NN_PASS_TRAIN)
	{
		for (size_t i = 0; i < total; i += C)
			for (int32_t c = 0; c < C; c++)
				l->ybuf[i + c] = gamma[c] * (x[i + c] - mmean[c]) /
					sqrtf(mvar[c] + eps) + beta[c];
		return NN_OK;
	}
	if (!l->spec.trainable)
	{
		frozen_forward(m, l, n);
		return NN_OK;
	}
	{
		float	   *xhat = l->work;	/* (B, in_size) normalized input */
		float	   *mean = l->work + (size_t) m->batch_cap * l->in_size;	/* (C) */
		float	   *istd = mean + C;	/* (C) 1 / sqrt(var + eps) */
		float		mom = l->spec.momentum;

		/* two passes in double: no E[x^2] - mean^2 cancellation */
		for (int32_t c = 0; c < C; c++)
		{
			double		s = 0.0,
						ss = 0.0,
						mu,
						var;

			for (size_t i = c; i < total; i += C)
				s += x[i];
			mu = s / (double) rows;
			for (size_t i = c; i < total; i += C)
				ss += (x[i] - mu) * (x[i] - mu);
			var = ss / (double) rows;
			mean[c] = (float) mu;
			istd[c] = (float) (1.0 / sqrt(var + eps));
			mmean[c] = mmean[c] * mom + (float) mu * (1.0f - mom);
			mvar[c] = mvar[c] * mom + (float) var * (1.0f - mom);
		}
		for (size_t i = 0; i < total; i += C)
			for (int32_t c = 0; c < C; c++)
			{
				float		h = (x[i + c] - mean[c]) * istd[c];

				xhat[i + c] = h;
				l->ybuf[i + c] = gamma[c] * h + beta[c];
			}
	}
	return NN_OK;
}

/* dx = gamma dy / sqrt(var_m + eps): the input gradient of prediction. */
static void
predict_backward(nn_model *m, nn_layer *l, float *dx, const float *dy,
				 int32_t n)
{
	int32_t		C = l->channels;
	size_t		total = l->in_size * n;
	const float *gamma = m->params + l->w_off;
	const float *mvar = m->state + l->s_off + C;

	for (int32_t c = 0; c < C; c++)
	{
		float		k = gamma[c] * (1.0f / sqrtf(mvar[c] + l->spec.epsilon));

		for (size_t i = c; i < total; i += C)
			dx[i] = k * dy[i];
	}
}

/*
 * Backward of training-mode batchnorm, per channel over R rows:
 * dgamma = sum dy xhat, dbeta = sum dy,
 * dx = gamma istd / R (R dy - dbeta - xhat dgamma);
 * frozen (fixed statistics): dx = gamma istd dy.
 */
static void
train_backward(nn_model *m, nn_layer *l, float *dx, const float *dy,
			   int32_t n)
{
	int32_t		C = l->channels;
	size_t		total = l->in_size * n;
	double		rows = (double) (total / C);
	const float *gamma = m->params + l->w_off;
	float	   *dgamma = m->grads + l->w_off;
	float	   *dbeta = m->grads + l->b_off;
	const float *xhat = l->work;	/* (B, in_size) */
	const float *istd = l->work + (size_t) m->batch_cap * l->in_size + C;

	for (int32_t c = 0; c < C; c++)
	{
		double		dg = 0.0,
					db = 0.0;

		for (size_t i = c; i < total; i += C)
		{
			dg += (double) dy[i] * xhat[i];
			db += dy[i];
		}
		dgamma[c] = (float) dg;
		dbeta[c] = (float) db;
		if (dx && !l->spec.trainable)
			for (size_t i = c; i < total; i += C)
				dx[i] = gamma[c] * istd[c] * dy[i];
		else if (dx)
		{
			double		k = (double) gamma[c] * istd[c] / rows;

			for (size_t i = c; i < total; i += C)
				dx[i] = (float) (k * (rows * dy[i] - db - xhat[i] * dg));
		}
	}
}

/* After a training forward, or (dx only) a DIFF one. */
static void
batchnorm_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	if (nn_layer_param_grads(l))
		train_backward(m, l, dx, dy, n);
	else if (dx)
		predict_backward(m, l, dx, dy, n);
}

const nn_layer_type nn_batchnorm_type = {
	.name = "batchnorm", .since = 2, .flags = NN_KIND_STATE,
	.options = batchnorm_options, .n_options = NN_LENGTH(batchnorm_options),
	.infer = batchnorm_infer, .init = batchnorm_init,
	.forward = batchnorm_forward, .backward = batchnorm_backward,
	.buffers = batchnorm_buffers, .keras_params = batchnorm_params,
};
