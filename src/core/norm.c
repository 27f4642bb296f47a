/*
 * norm.c: batchnorm, embedding and the global pools.
 *
 * Layout: each sample is contiguous and its last axis is the channel (or
 * feature) axis, so a sample of in_size floats is (S, C) with S = in_size / C
 * positions: (N) flat vectors are S = 1, images (H, W, C) S = H W, sequences
 * (T, F) S = T.
 *
 * batchnorm (https://keras.io/api/layers/normalization_layers/batch_normalization/):
 * in training y = gamma (x - mean_B) / sqrt(var_B + eps) + beta with the
 * statistics of the batch per channel over the B S rows (biased variance,
 * as Keras), and the moving averages become m = m momentum + stat (1 -
 * momentum), Keras's update with the biased variance too; at inference
 * the moving averages replace the batch statistics.  The backward pass is
 * the full batch-norm gradient through the batch statistics.
 *
 * embedding: ids (T) -> vectors (T, output_dim), rows of the (input_dim,
 * output_dim) table; an id that is not a whole number in [0, input_dim) is
 * an NN_ERR_DATA.  Ids have no gradient.
 *
 * global pools: (S, C) -> (C), mean or max over the positions.
 *
 * Not here: batchnorm's center/scale switches, renorm, virtual batches;
 * embedding's mask_zero.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

/* Batch (training) or moving-average (inference) batch normalization. */
void
nn_batchnorm_forward(nn_model *m, nn_layer *l, const float *x, int32_t n,
					 bool training)
{
	int32_t		C = l->channels;
	size_t		total = l->in_size * n;
	size_t		rows = total / C;
	const float *gamma = m->params + l->w_off;
	const float *beta = m->params + l->b_off;
	float	   *mmean = m->state + l->s_off;	/* (C) moving mean */
	float	   *mvar = mmean + C;	/* (C) moving variance */
	float		eps = l->spec.epsilon;

	if (!training)
	{
		for (size_t i = 0; i < total; i += C)
			for (int32_t c = 0; c < C; c++)
				l->ybuf[i + c] = gamma[c] * (x[i + c] - mmean[c]) /
					sqrtf(mvar[c] + eps) + beta[c];
		return;
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
}

/*
 * Backward of training-mode batchnorm, per channel over R rows:
 * dgamma = sum dy xhat, dbeta = sum dy,
 * dx = gamma istd / R (R dy - dbeta - xhat dgamma).
 */
void
nn_batchnorm_backward(nn_model *m, nn_layer *l, float *dx, const float *dy,
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
		if (dx)
		{
			double		k = (double) gamma[c] * istd[c] / rows;

			for (size_t i = c; i < total; i += C)
				dx[i] = (float) (k * (rows * dy[i] - db - xhat[i] * dg));
		}
	}
}

/* Look up the vectors of n rows of ids; NN_ERR_DATA names a bad id. */
nn_status
nn_embedding_forward(nn_model *m, nn_layer *l, int index, const float *x,
					 int32_t n, nn_error *err)
{
	size_t		ids = l->in_size * n;
	int32_t		D = l->spec.output_dim;
	const float *table = m->params + l->w_off;	/* (input_dim, D) */

	for (size_t i = 0; i < ids; i++)
	{
		float		v = x[i];

		if (!(v >= 0.0f && (double) v < (double) l->spec.input_dim && v == floorf(v)))
		{
			nn_fail(err, NN_ERR_DATA, index,
					"layer %d (embedding): token id %g is not an integer in [0, %d)",
					index + 1, (double) v, l->spec.input_dim);
			nn_detail(err, "Token ids must be whole numbers from 0 to input_dim - 1.");
			if (err)
				err->row = (int32_t) (i / l->in_size);
			return NN_ERR_DATA;
		}
		memcpy(l->ybuf + i * D, table + (size_t) v * D, sizeof(float) * D);
	}
	return NN_OK;
}

/* Table gradient: the output gradient rows scattered onto their ids. */
void
nn_embedding_backward(nn_model *m, nn_layer *l, float *dx, const float *dy,
					  int32_t n)
{
	size_t		ids = l->in_size * n;
	int32_t		D = l->spec.output_dim;
	float	   *dw = m->grads + l->w_off;	/* (input_dim, D) */

	memset(dw, 0, sizeof(float) * l->w_len);
	for (size_t i = 0; i < ids; i++)
	{
		float	   *row = dw + (size_t) l->x[i] * D;
		const float *g = dy + i * D;

		for (int32_t d = 0; d < D; d++)
			row[d] += g[d];
	}
	/* ids are discrete: their gradient is zero */
	if (dx)
		memset(dx, 0, sizeof(float) * ids);
}

/* Mean or max over the positions of each channel: (S, C) -> (C). */
void
nn_global_pool_forward(nn_layer *l, const float *x, int32_t n)
{
	int32_t		C = l->channels;
	size_t		S = l->in_size / C;
	bool		is_max = l->spec.kind == NN_LAYER_GLOBAL_MAXPOOL;

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
}

/* Input gradient of a global pool: spread evenly, or onto the maxima. */
void
nn_global_pool_backward(nn_layer *l, float *dx, const float *dy, int32_t n)
{
	int32_t		C = l->channels;
	size_t		S = l->in_size / C;

	for (int32_t b = 0; b < n; b++)
	{
		float	   *db = dx + (size_t) b * l->in_size;	/* (S, C) */
		const float *g = dy + (size_t) b * C;	/* (C) */

		if (l->spec.kind == NN_LAYER_GLOBAL_MAXPOOL)
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
