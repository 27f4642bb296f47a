/*
 * dropout.c: Keras's Dropout.  When training, each value is kept with
 * probability 1 - rate and scaled by 1 / (1 - rate), or zeroed; the mask
 * is kept for the backward pass, dX = dY mask.  Outside training, or at
 * rate 0, the layer is the identity.
 * https://keras.io/api/layers/regularization_layers/dropout/
 */
#include "nn_internal.h"

static const nn_kind_option dropout_options[] = {
	NN_TAKES(NN_OPTION_RATE, .def = 0),
};

static bool
dropout_identity(const nn_layer *l, nn_pass pass)
{
	return pass != NN_PASS_TRAIN || l->spec.rate <= 0.0f;
}

/* Draw the mask and apply it; serial, so the mask does not depend on the
 * thread count. */
static nn_status
dropout_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				nn_rng *rng, nn_error *err)
{
	float		keep = 1.0f / (1.0f - l->spec.rate);
	size_t		total = l->out_size * n;

	(void) m, (void) pass, (void) err;
	for (size_t i = 0; i < total; i++)
	{
		l->mask[i] = nn_rng_uniform(rng) >= l->spec.rate ? keep : 0.0f;
		l->ybuf[i] = l->x[i] * l->mask[i];
	}
	return NN_OK;
}

static void
dropout_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	size_t		total = l->out_size * n;

	(void) m;
	if (dx)
		for (size_t i = 0; i < total; i++)
			dx[i] = dy[i] * l->mask[i];
}

/* The mask, when the layer is not the identity. */
static void
dropout_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	if (!dropout_identity(l, pass))
		b->mask = l->in_size;
}

const nn_layer_type nn_dropout_type = {
	.name = "dropout", .since = 1,
	.options = dropout_options, .n_options = NN_LENGTH(dropout_options),
	.forward = dropout_forward,
	.backward = dropout_backward, .buffers = dropout_buffers,
	.identity = dropout_identity,
};
