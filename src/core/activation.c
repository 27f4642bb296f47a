/*
 * activation.c: element-wise activations and the row-wise softmax, forward
 * and backward, and the activation layer (Keras's Activation) that applies
 * one on its own.  Backward passes use only the output y (every activation
 * here has a derivative expressible through its output), so layers keep no
 * pre-activation copy.
 *
 * Definitions as Keras: leaky_relu(x) = x > 0 ? x : alpha x (alpha 0.2),
 * elu(x) = x > 0 ? x : alpha (e^x - 1) (alpha 1), softmax over the last axis
 * computed with the row maximum subtracted.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

static const nn_kind_option activation_options[] = {
	NN_TAKES(NN_OPTION_ACTIVATION, .required = true),
	NN_TAKES(NN_OPTION_ALPHA, .def = 0),
};

/* Does the activation take a slope? */
bool
nn_activation_has_alpha(nn_activation act)
{
	return act == NN_ACT_LEAKY_RELU || act == NN_ACT_ELU;
}

static inline float
alpha_or(float alpha, float dflt)
{
	return alpha > 0.0f ? alpha : dflt;
}

/* y = f(x) over rows x k values; in place allowed. */
void
nn_act_forward(nn_activation act, float alpha, float *y, const float *x,
			   size_t rows, size_t k)
{
	size_t		n = rows * k;

	switch (act)
	{
		case NN_ACT_LINEAR:
			if (y != x)
				for (size_t i = 0; i < n; i++)
					y[i] = x[i];
			break;
		case NN_ACT_RELU:
			for (size_t i = 0; i < n; i++)
				y[i] = x[i] > 0.0f ? x[i] : 0.0f;
			break;
		case NN_ACT_LEAKY_RELU:
			alpha = alpha_or(alpha, 0.2f);
			for (size_t i = 0; i < n; i++)
				y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
			break;
		case NN_ACT_ELU:
			alpha = alpha_or(alpha, 1.0f);
			for (size_t i = 0; i < n; i++)
				y[i] = x[i] > 0.0f ? x[i] : alpha * expm1f(x[i]);
			break;
		case NN_ACT_SIGMOID:
			for (size_t i = 0; i < n; i++)
			{
				float		v = x[i];

				/* split by sign so exp never overflows */
				if (v >= 0.0f)
					y[i] = 1.0f / (1.0f + expf(-v));
				else
				{
					float		e = expf(v);

					y[i] = e / (1.0f + e);
				}
			}
			break;
		case NN_ACT_TANH:
			for (size_t i = 0; i < n; i++)
				y[i] = tanhf(x[i]);
			break;
		case NN_ACT_SOFTMAX:
			for (size_t r = 0; r < rows; r++)
			{
				const float *xr = x + r * k;
				float	   *yr = y + r * k;
				float		mx = xr[0];
				float		sum = 0.0f;

				for (size_t j = 1; j < k; j++)
					if (xr[j] > mx)
						mx = xr[j];
				for (size_t j = 0; j < k; j++)
				{
					yr[j] = expf(xr[j] - mx);
					sum += yr[j];
				}
				for (size_t j = 0; j < k; j++)
					yr[j] /= sum;
			}
			break;
	}
}

/* dz = dy * f'(x), from the output y; dz may equal dy. */
void
nn_act_backward(nn_activation act, float alpha, float *dz, const float *dy,
				const float *y, size_t rows, size_t k)
{
	size_t		n = rows * k;

	switch (act)
	{
		case NN_ACT_LINEAR:
			if (dz != dy)
				for (size_t i = 0; i < n; i++)
					dz[i] = dy[i];
			break;
		case NN_ACT_RELU:
			for (size_t i = 0; i < n; i++)
			{
				float		g = dy[i];

				dz[i] = y[i] > 0.0f ? g : 0.0f;
			}
			break;
		case NN_ACT_LEAKY_RELU:
			alpha = alpha_or(alpha, 0.2f);
			for (size_t i = 0; i < n; i++)
				dz[i] = y[i] > 0.0f ? dy[i] : alpha * dy[i];
			break;
		case NN_ACT_ELU:
			/* for x <= 0, f'(x) = alpha e^x = y + alpha */
			alpha = alpha_or(alpha, 1.0f);
			for (size_t i = 0; i < n; i++)
				dz[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + alpha);
			break;
		case NN_ACT_SIGMOID:
			for (size_t i = 0; i < n; i++)
				dz[i] = dy[i] * y[i] * (1.0f - y[i]);
			break;
		case NN_ACT_TANH:
			for (size_t i = 0; i < n; i++)
				dz[i] = dy[i] * (1.0f - y[i] * y[i]);
			break;
		case NN_ACT_SOFTMAX:
			/* Jacobian-vector product: dz_j = y_j (dy_j - sum_i dy_i y_i) */
			for (size_t r = 0; r < rows; r++)
			{
				const float *yr = y + r * k;
				const float *gr = dy + r * k;
				float	   *zr = dz + r * k;
				float		dot = 0.0f;

				for (size_t j = 0; j < k; j++)
					dot += gr[j] * yr[j];
				for (size_t j = 0; j < k; j++)
					zr[j] = yr[j] * (gr[j] - dot);
			}
			break;
	}
}

/* y = f(x); the last layer keeps x as logits for a fused loss. */
static nn_status
activation_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				   nn_rng *rng, nn_error *err)
{
	size_t		total = l->out_size * n;
	size_t		k = l->out_shape[l->out_rank - 1];

	(void) m, (void) pass, (void) rng, (void) err;
	if (l->logits)
		memcpy(l->logits, l->x, sizeof(float) * total);
	nn_act_forward(l->spec.activation, l->spec.alpha, l->ybuf, l->x,
				   total / k, k);
	return NN_OK;
}

/* dy is already dz (the dispatcher applied f'): dx = dz. */
static void
activation_backward(nn_model *m, nn_layer *l, float *dx, float *dy,
					int32_t n)
{
	(void) m;
	if (dx)
		memcpy(dx, dy, sizeof(float) * l->out_size * n);
}

const nn_layer_type nn_activation_type = {
	.name = "activation", .since = 1, .flags = NN_KIND_ACTIVATES,
	.options = activation_options, .n_options = NN_LENGTH(activation_options),
	.forward = activation_forward, .backward = activation_backward,
};
