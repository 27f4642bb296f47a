/*
 * loss.c: loss values, their gradients and classification accuracy.
 *
 * Definitions as Keras (https://keras.io/api/losses/), reduced as
 * "sum over batch size": loss = sum_r w_r L_r / n, with L_r the mean over
 * the row's outputs for mse, mae, huber (delta 1) and binary cross-entropy,
 * and the sum over classes for the categorical ones.  w_r is the class
 * weight of the row's target class (1 without weights).
 *
 * Stability: a softmax (sigmoid) last layer is fused with categorical
 * (binary) cross-entropy: the value comes from the pre-activation logits
 * through log-sum-exp, and the gradient w.r.t. the logits is p - t.  A linear
 * last layer is read as logits (from_logits=True in Keras terms).  Any other
 * output is taken as probabilities, clipped to [1e-7, 1 - 1e-7].
 */
#include <math.h>

#include "nn_internal.h"

#define PROB_EPS 1e-7f

/* Is the last layer's activation folded into this loss? */
bool
nn_loss_fused(nn_loss_kind loss, nn_activation out_act)
{
	if (loss == NN_LOSS_CATEGORICAL_CE || loss == NN_LOSS_SPARSE_CATEGORICAL_CE)
		return out_act == NN_ACT_SOFTMAX;
	if (loss == NN_LOSS_BINARY_CE)
		return out_act == NN_ACT_SIGMOID;
	return false;
}

static size_t
argmax(const float *v, size_t k)
{
	size_t		best = 0;

	for (size_t j = 1; j < k; j++)
		if (v[j] > v[best])
			best = j;
	return best;
}

static inline float
clip_prob(float p)
{
	return p < PROB_EPS ? PROB_EPS : (p > 1.0f - PROB_EPS ? 1.0f - PROB_EPS : p);
}

static inline float
sigmoidf(float z)
{
	if (z >= 0.0f)
		return 1.0f / (1.0f + expf(-z));
	else
	{
		float		e = expf(z);

		return e / (1.0f + e);
	}
}

/*
 * Loss of n rows of k outputs.  y are the outputs, logits the last layer's
 * pre-activation (needed when fused), t the targets: (n) class indices for
 * the sparse loss, else (n, k).  Adds sum_r w_r L_r to *loss_sum and the
 * number of correctly classified rows to *correct; when dout is not NULL
 * writes the gradient of the batch-mean loss w.r.t. the outputs (w.r.t. the
 * logits when fused).
 */
nn_status
nn_loss_compute(nn_loss_kind loss, nn_activation out_act, float *dout,
				const float *y, const float *logits, const float *t,
				int32_t n, size_t k, const float *class_weights, int32_t n_cw,
				double *loss_sum, int64_t *correct, nn_error *err)
{
	bool		fused = nn_loss_fused(loss, out_act);
	bool		from_logits = fused || out_act == NN_ACT_LINEAR;
	const float *z = fused ? logits : y;
	double		total = 0.0;
	int64_t		hits = 0;
	float		inv_n = 1.0f / (float) n;
	float		inv_k = 1.0f / (float) k;

	for (int32_t r = 0; r < n; r++)
	{
		const float *yr = y + (size_t) r * k;
		const float *zr = z + (size_t) r * k;
		const float *tr = nn_loss_sparse_target(loss) ? NULL : t + (size_t) r * k;
		float	   *gr = dout ? dout + (size_t) r * k : NULL;
		double		lr = 0.0;
		float		w = 1.0f;
		size_t		cls = 0;

		/* target class, for the class weight and accuracy */
		if (loss == NN_LOSS_SPARSE_CATEGORICAL_CE)
		{
			float		c = t[r];

			if (!(c >= 0.0f && c < (float) k && c == floorf(c)))
			{
				nn_fail(err, NN_ERR_DATA, -1,
						"class index %g is out of range for %zu outputs",
						(double) c, k);
				if (err)
					err->row = r;
				return NN_ERR_DATA;
			}
			cls = (size_t) c;
		}
		else if (loss == NN_LOSS_CATEGORICAL_CE)
			cls = argmax(tr, k);
		else if (loss == NN_LOSS_BINARY_CE && k == 1)
			cls = tr[0] >= 0.5f ? 1 : 0;
		if (class_weights && nn_loss_is_classification(loss) &&
			cls < (size_t) n_cw)
			w = class_weights[cls];

		switch (loss)
		{
			case NN_LOSS_MSE:
			case NN_LOSS_MAE:
			case NN_LOSS_HUBER:
				for (size_t j = 0; j < k; j++)
				{
					float		d = yr[j] - tr[j];
					float		ad = fabsf(d);
					float		g;

					if (loss == NN_LOSS_MSE)
					{
						lr += (double) d * d;
						g = 2.0f * d;
					}
					else if (loss == NN_LOSS_MAE)
					{
						lr += ad;
						g = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
					}
					else if (ad <= 1.0f)
					{
						lr += 0.5 * (double) d * d;
						g = d;
					}
					else
					{
						lr += ad - 0.5;
						g = d > 0.0f ? 1.0f : -1.0f;
					}
					if (gr)
						gr[j] = g * inv_k * w * inv_n;
				}
				lr *= inv_k;
				break;
			case NN_LOSS_BINARY_CE:
				{
					bool		all = true;

					for (size_t j = 0; j < k; j++)
					{
						float		p,
									g;

						if (from_logits)
						{
							float		zj = zr[j];

							lr += fmaxf(zj, 0.0f) - zj * tr[j] +
								log1pf(expf(-fabsf(zj)));
							p = sigmoidf(zj);
							g = p - tr[j];
						}
						else
						{
							p = clip_prob(yr[j]);
							lr -= tr[j] * logf(p) + (1.0f - tr[j]) * logf(1.0f - p);
							g = (p - tr[j]) / (p * (1.0f - p));
						}
						if ((p >= 0.5f) != (tr[j] >= 0.5f))
							all = false;
						if (gr)
							gr[j] = g * inv_k * w * inv_n;
					}
					lr *= inv_k;
					hits += all;
					break;
				}
			case NN_LOSS_CATEGORICAL_CE:
			case NN_LOSS_SPARSE_CATEGORICAL_CE:
				{
					bool		sparse = tr == NULL;

					if (from_logits)
					{
						float		mx = zr[argmax(zr, k)];
						double		se = 0.0;
						float		lse;
						float		tsum = 0.0f;

						for (size_t j = 0; j < k; j++)
							se += exp((double) (zr[j] - mx));
						lse = mx + (float) log(se);
						for (size_t j = 0; j < k; j++)
						{
							float		tj = sparse ? (j == cls) : tr[j];

							lr += (double) tj * (lse - zr[j]);
							tsum += tj;
						}
						if (gr)
							for (size_t j = 0; j < k; j++)
							{
								float		tj = sparse ? (j == cls) : tr[j];
								float		p = expf(zr[j] - lse);

								gr[j] = (p * tsum - tj) * w * inv_n;
							}
					}
					else
					{
						for (size_t j = 0; j < k; j++)
						{
							float		tj = sparse ? (j == cls) : tr[j];
							float		p = clip_prob(yr[j]);

							lr -= (double) tj * logf(p);
							if (gr)
								gr[j] = -tj / p * w * inv_n;
						}
					}
					hits += argmax(yr, k) == cls;
					break;
				}
			default:
				return nn_fail(err, NN_ERR_INTERNAL, -1,
							   "unrecognized loss: %d", (int) loss);
		}
		total += w * lr;
	}
	if (!isfinite(total))
		return nn_fail(err, NN_ERR_NUMERIC, -1, "loss is not finite");
	*loss_sum += total;
	if (correct)
		*correct += hits;
	return NN_OK;
}
