/*
 * loss.c: loss values, their gradients and classification accuracy.
 *
 * Definitions as Keras (https://keras.io/api/losses/).  For one row of k
 * outputs y with targets t (d = y - t, p the probabilities, z the logits):
 *
 *   mse       L = 1/k sum_j d_j^2             dL/dy_j = 2 d_j / k
 *   mae       L = 1/k sum_j |d_j|             dL/dy_j = sign(d_j) / k
 *   huber     L = 1/k sum_j h(d_j)            dL/dy_j = h'(d_j) / k
 *             h(d) = d^2 / 2 if |d| <= 1, else |d| - 1/2 (delta 1)
 *             h'(d) = d if |d| <= 1, else sign(d)
 *   binary cross-entropy, from probabilities p = clip(y):
 *             L = -1/k sum_j [t_j log p_j + (1 - t_j) log(1 - p_j)]
 *             dL/dy_j = (p_j - t_j) / (p_j (1 - p_j)) / k
 *   binary cross-entropy, from logits (p = sigmoid(z)):
 *             L = 1/k sum_j [max(z_j, 0) - z_j t_j + log(1 + exp(-|z_j|))]
 *             dL/dz_j = (p_j - t_j) / k
 *   categorical cross-entropy, from probabilities p = clip(y):
 *             L = -sum_j t_j log p_j          dL/dy_j = -t_j / p_j
 *   categorical cross-entropy, from logits (p = softmax(z)):
 *             L = sum_j t_j (lse(z) - z_j),   lse(z) = log sum_i exp(z_i)
 *             dL/dz_j = p_j sum_i t_i - t_j   (p_j - t_j for one-hot t)
 *   sparse categorical cross-entropy: categorical with t one-hot at the
 *             row's class index.
 *
 * Clipping is to [1e-7, 1 - 1e-7]; the gradients from probabilities are
 * taken at the clipped p.  The batch is reduced as Keras's "sum over batch
 * size": loss = sum_r w_r L_r / n, whose gradient is w_r / n times the
 * row's.  w_r is the class weight of the row's target class c_r (1 without
 * weights, for regression losses and for classes past the weights given):
 * the index (sparse), argmax t (categorical), t >= 0.5 (binary with one
 * output), 0 (binary with several).
 *
 * Paths: a softmax (sigmoid) last layer is fused with categorical (binary)
 * cross-entropy: the value comes from the pre-activation logits through
 * log-sum-exp and the gradient is w.r.t. the logits.  A linear last layer
 * is read as logits (from_logits=True in Keras terms).  Any other output is
 * taken as probabilities.
 *
 * Accuracy: a binary row is correct when every output's p >= 0.5 agrees
 * with t >= 0.5; a categorical row when argmax y is the target class.
 */
#include <math.h>

#include "nn_internal.h"

#define PROB_EPS 1e-7f

/*
 * One row of the batch as the per-loss functions see it.  A forward keeps
 * in it what its backward reads (the fused softmax's lse and target sum).
 */
typedef struct loss_row
{
	const float *y;				/* outputs (k) */
	const float *z;				/* logits (k): pre-activation if fused, else y */
	const float *t;				/* targets (k), NULL for a class index */
	size_t		cls;			/* target class */
	size_t		k;
	float		w;				/* class weight */
	float		inv_n;			/* 1 / n */
	float		inv_k;			/* 1 / k */
	float		lse;			/* fused softmax: log-sum-exp of z */
	float		tsum;			/* fused softmax: sum of the targets */
} loss_row;

/* Value L_r of a row (before its class weight); *hit: classified right. */
typedef double (*loss_forward_fn) (bool *hit, loss_row *r);

/* Gradient of w_r L_r / n w.r.t. the row's outputs (logits if fused). */
typedef void (*loss_backward_fn) (float *restrict g, const loss_row *r);

/* A loss's forward and backward, run in that order on each row. */
typedef struct loss_pair
{
	loss_forward_fn forward;
	loss_backward_fn backward;
} loss_pair;

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

/* Index of the first largest of v[0..k). */
static size_t
argmax(const float *v, size_t k)
{
	size_t		best = 0;

	for (size_t j = 1; j < k; j++)
		if (v[j] > v[best])
			best = j;
	return best;
}

/* p clipped to [PROB_EPS, 1 - PROB_EPS]. */
static inline float
clip_prob(float p)
{
	return p < PROB_EPS ? PROB_EPS : (p > 1.0f - PROB_EPS ? 1.0f - PROB_EPS : p);
}

/* Logistic function, without overflow on either side. */
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

/* Logistic of z given e = exp(-|z|): as sigmoidf, reusing the exponential. */
static inline float
sigmoid_of_exp(float z, float e)
{
	return z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

/* Target j of a row: t_j, or one-hot at the class index. */
static inline float
target_at(const loss_row *r, size_t j)
{
	return r->t ? r->t[j] : (float) (j == r->cls);
}

/* Gradient g of the row mean over outputs, scaled by w_r / n. */
static inline float
mean_grad(float g, const loss_row *r)
{
	return g * r->inv_k * r->w * r->inv_n;
}

/* mse: mean of d^2. */
static double
mse_forward(bool *hit, loss_row *r)
{
	double		lr = 0.0;

	*hit = false;
	for (size_t j = 0; j < r->k; j++)
	{
		float		d = r->y[j] - r->t[j];

		lr += (double) d * d;
	}
	return lr * r->inv_k;
}

/* mse: 2 d / k. */
static void
mse_backward(float *restrict g, const loss_row *r)
{
	for (size_t j = 0; j < r->k; j++)
	{
		float		d = r->y[j] - r->t[j];

		g[j] = mean_grad(2.0f * d, r);
	}
}

/* mae: mean of |d|. */
static double
mae_forward(bool *hit, loss_row *r)
{
	double		lr = 0.0;

	*hit = false;
	for (size_t j = 0; j < r->k; j++)
		lr += fabsf(r->y[j] - r->t[j]);
	return lr * r->inv_k;
}

/* mae: sign(d) / k, 0 at d = 0. */
static void
mae_backward(float *restrict g, const loss_row *r)
{
	for (size_t j = 0; j < r->k; j++)
	{
		float		d = r->y[j] - r->t[j];

		g[j] = mean_grad(d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f), r);
	}
}

/* huber (delta 1): mean of d^2 / 2 inside [-1, 1], |d| - 1/2 outside. */
static double
huber_forward(bool *hit, loss_row *r)
{
	double		lr = 0.0;

	*hit = false;
	for (size_t j = 0; j < r->k; j++)
	{
		float		d = r->y[j] - r->t[j];
		float		ad = fabsf(d);

		if (ad <= 1.0f)
			lr += 0.5 * (double) d * d;
		else
			lr += ad - 0.5;
	}
	return lr * r->inv_k;
}

/* huber: d / k inside [-1, 1], sign(d) / k outside. */
static void
huber_backward(float *restrict g, const loss_row *r)
{
	for (size_t j = 0; j < r->k; j++)
	{
		float		d = r->y[j] - r->t[j];

		if (fabsf(d) <= 1.0f)
			g[j] = mean_grad(d, r);
		else
			g[j] = mean_grad(d > 0.0f ? 1.0f : -1.0f, r);
	}
}

/* Binary cross-entropy from probabilities: mean of the clipped log terms. */
static double
binary_ce_forward(bool *hit, loss_row *r)
{
	double		lr = 0.0;
	bool		all = true;

	for (size_t j = 0; j < r->k; j++)
	{
		float		p = clip_prob(r->y[j]);
		float		tj = r->t[j];

		lr -= tj * logf(p) + (1.0f - tj) * logf(1.0f - p);
		if ((p >= 0.5f) != (tj >= 0.5f))
			all = false;
	}
	*hit = all;
	return lr * r->inv_k;
}

/* Binary cross-entropy from probabilities: (p - t) / (p (1 - p)) / k. */
static void
binary_ce_backward(float *restrict g, const loss_row *r)
{
	for (size_t j = 0; j < r->k; j++)
	{
		float		p = clip_prob(r->y[j]);

		g[j] = mean_grad((p - r->t[j]) / (p * (1.0f - p)), r);
	}
}

/* Sigmoid + binary cross-entropy from logits z, without exp overflow. */
static double
sigmoid_binary_ce_forward(bool *hit, loss_row *r)
{
	double		lr = 0.0;
	bool		all = true;

	for (size_t j = 0; j < r->k; j++)
	{
		float		zj = r->z[j];
		float		tj = r->t[j];
		float		e = expf(-fabsf(zj));

		lr += fmaxf(zj, 0.0f) - zj * tj + log1pf(e);
		if ((sigmoid_of_exp(zj, e) >= 0.5f) != (tj >= 0.5f))
			all = false;
	}
	*hit = all;
	return lr * r->inv_k;
}

/* Sigmoid + binary cross-entropy: (sigmoid(z) - t) / k w.r.t. the logits. */
static void
sigmoid_binary_ce_backward(float *restrict g, const loss_row *r)
{
	for (size_t j = 0; j < r->k; j++)
		g[j] = mean_grad(sigmoidf(r->z[j]) - r->t[j], r);
}

/* Categorical cross-entropy from probabilities: -sum t log clip(y). */
static double
categorical_ce_forward(bool *hit, loss_row *r)
{
	double		lr = 0.0;

	for (size_t j = 0; j < r->k; j++)
		lr -= (double) target_at(r, j) * logf(clip_prob(r->y[j]));
	*hit = argmax(r->y, r->k) == r->cls;
	return lr;
}

/* Categorical cross-entropy from probabilities: -t / clip(y). */
static void
categorical_ce_backward(float *restrict g, const loss_row *r)
{
	for (size_t j = 0; j < r->k; j++)
	{
		float		tj = target_at(r, j);
		float		p = clip_prob(r->y[j]);

		g[j] = -tj / p * r->w * r->inv_n;
	}
}

/* Softmax + categorical cross-entropy: sum t (lse(z) - z); keeps lse, sum t. */
static double
softmax_categorical_ce_forward(bool *hit, loss_row *r)
{
	float		mx = r->z[argmax(r->z, r->k)];
	double		se = 0.0;
	double		lr = 0.0;
	float		tsum = 0.0f;

	for (size_t j = 0; j < r->k; j++)
		se += exp((double) (r->z[j] - mx));
	r->lse = mx + (float) log(se);
	for (size_t j = 0; j < r->k; j++)
	{
		float		tj = target_at(r, j);

		lr += (double) tj * (r->lse - r->z[j]);
		tsum += tj;
	}
	r->tsum = tsum;
	*hit = argmax(r->y, r->k) == r->cls;
	return lr;
}

/* Softmax + categorical cross-entropy: softmax(z) sum t - t w.r.t. logits. */
static void
softmax_categorical_ce_backward(float *restrict g, const loss_row *r)
{
	for (size_t j = 0; j < r->k; j++)
	{
		float		p = expf(r->z[j] - r->lse);

		g[j] = (p * r->tsum - target_at(r, j)) * r->w * r->inv_n;
	}
}

/* Each loss's pair from the outputs as they are, and from logits. */
static const struct
{
	loss_pair	probs;
	loss_pair	logits;
}			loss_table[NN_LOSS_MAX + 1] = {
	[NN_LOSS_MSE] = {
		{mse_forward, mse_backward}, {mse_forward, mse_backward}
	},
	[NN_LOSS_MAE] = {
		{mae_forward, mae_backward}, {mae_forward, mae_backward}
	},
	[NN_LOSS_HUBER] = {
		{huber_forward, huber_backward}, {huber_forward, huber_backward}
	},
	[NN_LOSS_BINARY_CE] = {
		{binary_ce_forward, binary_ce_backward},
		{sigmoid_binary_ce_forward, sigmoid_binary_ce_backward}
	},
	[NN_LOSS_CATEGORICAL_CE] = {
		{categorical_ce_forward, categorical_ce_backward},
		{softmax_categorical_ce_forward, softmax_categorical_ce_backward}
	},
	[NN_LOSS_SPARSE_CATEGORICAL_CE] = {
		{categorical_ce_forward, categorical_ce_backward},
		{softmax_categorical_ce_forward, softmax_categorical_ce_backward}
	},
};

/* Points r at row i of z (what the loss reads); its class, weight from cw. */
static nn_status
row_setup(loss_row *r, const nn_loss_batch *b, const float *z,
		  const float *cw, int32_t i, nn_error *err)
{
	size_t		k = b->k;

	r->y = b->y + (size_t) i * k;
	r->z = z + (size_t) i * k;
	r->t = NULL;
	r->cls = 0;
	r->w = 1.0f;
	if (b->loss == NN_LOSS_SPARSE_CATEGORICAL_CE)
	{
		float		c = b->t[i];

		if (!(c >= 0.0f && c < (float) k && c == floorf(c)))
		{
			nn_fail(err, NN_ERR_DATA, -1,
					"class index %g is out of range for %zu outputs",
					(double) c, k);
			if (err)
				err->row = i;
			return NN_ERR_DATA;
		}
		r->cls = (size_t) c;
	}
	else
		r->t = b->t + (size_t) i * k;
	if (b->loss == NN_LOSS_CATEGORICAL_CE)
		r->cls = argmax(r->t, k);
	else if (b->loss == NN_LOSS_BINARY_CE && k == 1)
		r->cls = r->t[0] >= 0.5f ? 1 : 0;
	if (cw && r->cls < (size_t) b->n_cw)
		r->w = cw[r->cls];
	return NN_OK;
}

/* Loss, accuracy and (into dout if not NULL) gradient of a batch. */
nn_status
nn_loss_compute(float *dout, double *loss_sum, int64_t *correct,
				const nn_loss_batch *b, nn_error *err)
{
	bool		fused = nn_loss_fused(b->loss, b->out_act);
	const float *z = fused ? b->logits : b->y;
	const float *cw = nn_loss_is_classification(b->loss) ?
		b->class_weights : NULL;
	const loss_pair *pair;
	loss_row	row;
	double		total = 0.0;
	int64_t		hits = 0;

	if (b->loss < 1 || b->loss > NN_LOSS_MAX)
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "unrecognized loss: %d", (int) b->loss);
	pair = (fused || b->out_act == NN_ACT_LINEAR) ?
		&loss_table[b->loss].logits : &loss_table[b->loss].probs;
	row.k = b->k;
	row.inv_n = 1.0f / (float) b->n;
	row.inv_k = 1.0f / (float) b->k;
	for (int32_t i = 0; i < b->n; i++)
	{
		nn_status	st = row_setup(&row, b, z, cw, i, err);
		bool		hit;
		double		lr;

		if (st != NN_OK)
			return st;
		lr = pair->forward(&hit, &row);
		if (dout)
			pair->backward(dout + (size_t) i * b->k, &row);
		total += row.w * lr;
		hits += hit;
	}
	if (!isfinite(total))
		return nn_fail(err, NN_ERR_NUMERIC, -1, "loss is not finite");
	*loss_sum += total;
	if (correct)
		*correct += hits;
	return NN_OK;
}
