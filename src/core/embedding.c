/*
 * embedding.c: token ids to vectors (Keras's Embedding).
 *
 * Ids (T) -> vectors (T, output_dim), rows of the (input_dim, output_dim)
 * table; an id that is not a whole number in [0, input_dim) is an
 * NN_ERR_DATA naming the row.  The table's gradient is the output gradient
 * scattered onto the ids' rows; ids themselves have none, so nothing that
 * mixes values may come before the layer (model.c checks).
 * https://keras.io/api/layers/core_layers/embedding/
 *
 * Not here: mask_zero.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

static const nn_kind_option embedding_options[] = {
	NN_TAKES(NN_OPTION_INPUT_DIM, .required = true),
	NN_TAKES(NN_OPTION_OUTPUT_DIM, .required = true),	NN_TAKES(NN_OPTION_TRAINABLE, .def = 1),
};

/* (T) ids -> (T, output_dim). */
static nn_status
embedding_infer(nn_layer *l, nn_error *err)
{
	const nn_layer_spec *s = &l->spec;

	if (l->in_rank != 1)
		return NN_LAYER_FAIL(l, err, "input must be a flat sequence of token ids, not of rank %d",
							 l->in_rank);
	if ((double) s->input_dim * s->output_dim > (double) INT32_MAX)
		return NN_LAYER_FAIL(l, err, "table size overflows");
	l->out_rank = 2;
	l->out_shape[0] = l->in_shape[0];
	l->out_shape[1] = s->output_dim;
	l->w_len = (int64_t) s->input_dim * s->output_dim;
	return NN_OK;
}

/* Keras's embeddings_initializer: uniform(-0.05, 0.05). */
static bool
embedding_init(nn_model *m, nn_layer *l, nn_rng *rng)
{
	float	   *w = m->params + l->w_off;

	for (int64_t i = 0; i < l->w_len; i++)
		w[i] = (float) ((2.0 * nn_rng_uniform(rng) - 1.0) * 0.05);
	return true;
}

/* Look up the vectors of n rows of ids; NN_ERR_DATA names a bad id. */
static nn_status
embedding_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				  nn_rng *rng, nn_error *err)
{
	const float *x = l->x;
	int			index = l->index;
	size_t		ids = l->in_size * n;
	int32_t		D = l->spec.output_dim;
	const float *table = m->params + l->w_off;	/* (input_dim, D) */

	(void) pass, (void) rng;
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
static void
table_grads(nn_model *m, nn_layer *l, const float *dy, int32_t n)
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
}

/* The table gradient when training; ids are discrete: dx is zero. */
static void
embedding_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	if (nn_layer_param_grads(l))
		table_grads(m, l, dy, n);
	if (dx)
		memset(dx, 0, sizeof(float) * l->in_size * n);
}

const nn_layer_type nn_embedding_type = {
	.name = "embedding", .since = 2, .flags = NN_KIND_TOKENS,
	.options = embedding_options, .n_options = NN_LENGTH(embedding_options),
	.infer = embedding_infer, .init = embedding_init,
	.forward = embedding_forward, .backward = embedding_backward,
};
