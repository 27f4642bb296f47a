/*
 * average.c: the merge step of data-parallel training.
 *
 * Replicas of one model train on different rows from the same starting
 * values; their merge is the row-weighted mean of everything training
 * changes: the parameters, the optimizer's slots (Adam's moments, the
 * accumulators) and the layer statistics (batchnorm's moving averages).
 * Merging two replicas as dst + w (src - dst) with w = src's share of the
 * rows gives, replica by replica, the weighted mean of any number of them
 * in any grouping, and leaves a value that both hold unchanged bit for
 * bit: frozen layers, pruned zeros and normalize statistics stay exact.
 */
#include "nn_internal.h"

/* dst[i] += w (src[i] - dst[i]) over n values. */
static void
move_towards(float *dst, const float *src, int64_t n, float w)
{
	for (int64_t i = 0; i < n; i++)
		dst[i] += w * (src[i] - dst[i]);
}

nn_status
nn_model_average(nn_model *dst, const nn_model *src, double weight,
				 nn_error *err)
{
	float		w = (float) weight;

	if (!(weight >= 0.0 && weight <= 1.0))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "averaging weight %g is not in [0, 1]", weight);
	if (dst->n_params != src->n_params || dst->n_state != src->n_state ||
		dst->n_train != src->n_train || dst->n_slots != src->n_slots ||
		dst->qlayers != NULL || src->qlayers != NULL ||
		(dst->n_slots > 0 && dst->opt.kind != src->opt.kind))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "models to average are not replicas of one model");
	move_towards(dst->params, src->params, dst->n_params, w);
	for (int32_t i = 0; i < dst->n_slots; i++)
		move_towards(dst->slots[i], src->slots[i], dst->n_train, w);
	move_towards(dst->state, src->state, dst->n_state, w);
	return NN_OK;
}

void
nn_model_set_step(nn_model *model, int64_t step)
{
	model->step = step;
}
