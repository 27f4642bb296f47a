/*
 * reshape.c: flatten and reshape (Keras's Flatten, Reshape).  Both only
 * relabel the values of a sample, which is contiguous, so their output is
 * their input: no buffer, no computation, and the gradient passes through
 * (model.c).
 */
#include <string.h>

#include "nn_internal.h"

static const nn_kind_option reshape_options[] = {
	NN_TAKES(NN_OPTION_SHAPE, .required = true),
};

/* (in_size): the sample as a vector. */
static nn_status
flatten_infer(nn_layer *l, nn_error *err)
{
	if (l->in_size > INT32_MAX)
		return NN_LAYER_FAIL(l, err, "input too large");
	l->out_rank = 1;
	memset(l->out_shape, 0, sizeof(l->out_shape));
	l->out_shape[0] = (int32_t) l->in_size;
	return NN_OK;
}

/* The given shape, which must hold the same number of values. */
static nn_status
reshape_infer(nn_layer *l, nn_error *err)
{
	const nn_layer_spec *s = &l->spec;
	size_t		n = 1;

	for (int i = 0; i < s->shape_rank; i++)
		if (!nn_size_mul(&n, n, (size_t) s->shape[i]))
			n = 0;
	if (n != l->in_size)
		return NN_LAYER_FAIL(l, err, "cannot reshape %zu values into %zu",
							 l->in_size, n);
	l->out_rank = s->shape_rank;
	memset(l->out_shape, 0, sizeof(l->out_shape));
	memcpy(l->out_shape, s->shape, sizeof(int32_t) * s->shape_rank);
	return NN_OK;
}

const nn_layer_type nn_flatten_type = {
	.name = "flatten", .since = 1,
	.flags = NN_KIND_RELABEL | NN_KIND_KEEPS_IDS,
	.infer = flatten_infer,
};

const nn_layer_type nn_reshape_type = {
	.name = "reshape", .since = 1,
	.flags = NN_KIND_RELABEL | NN_KIND_KEEPS_IDS,
	.options = reshape_options, .n_options = NN_LENGTH(reshape_options),
	.infer = reshape_infer,
};
