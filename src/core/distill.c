/*
 * distill.c: knowledge distillation (Hinton, Vinyals and Dean, 2015, as
 * Keras's Distiller example trains it).
 *
 * With a teacher set, the loss of a training batch becomes
 *
 *   alpha L(y, s) + (1 - alpha) T^2 KL(softmax(t / T) || softmax(s / T))
 *
 * per row, s the student's logits, t the teacher's on the same batch, T
 * the temperature; its gradient with respect to s adds
 * (1 - alpha) T (softmax(s / T) - softmax(t / T)) to alpha dL/ds.  The
 * student's loss gradient must therefore be with respect to its logits:
 * a softmax output with a fused cross-entropy, or a linear output.
 *
 * The teacher runs forward only, in inference mode, on the batch the
 * student sees after its leading layers that are random only in training
 * (augmentation, dropout, noise) and relabellings: the same augmented
 * images.
 */
#include <math.h>

#include "nn_internal.h"

/* The teacher's logits: its output layer's pre-activation, or its output. */
static bool
logits_of(const nn_model *m, nn_activation *act)
{
	*act = nn_model_output_activation(m);
	return *act == NN_ACT_SOFTMAX || *act == NN_ACT_LINEAR;
}

/*
 * Distil from teacher in the training passes that follow (NULL: stop).
 * The teacher must outlive its use; it is prepared for the student's batch.
 */
nn_status
nn_model_set_teacher(nn_model *m, nn_model *teacher, float temperature,
					 float alpha, nn_error *err)
{
	nn_activation sact,
				tact;

	m->teacher = NULL;
	nn_free_bytes(&m->alloc, m->distill_buf);
	m->distill_buf = NULL;
	if (teacher == NULL)
		return NN_OK;
	if (!m->training_set)
		return nn_fail(err, NN_ERR_INTERNAL, -1, "training is not configured");
	if (!(temperature > 0.0f) || !isfinite(temperature))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "\"temperature\" must be a positive number");
	if (!(alpha >= 0.0f && alpha <= 1.0f))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "\"distill_alpha\" must be a number in [0, 1]");
	if (nn_model_output_size(teacher) != nn_model_output_size(m))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "the teacher has %zu outputs, the student %zu",
					   nn_model_output_size(teacher), nn_model_output_size(m));
	if (nn_model_input_size(teacher) != nn_model_input_size(m))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "the teacher takes %zu input values, the student %zu",
					   nn_model_input_size(teacher), nn_model_input_size(m));
	if (!logits_of(teacher, &tact))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "the teacher's last layer must be softmax or linear, not %s",
					   nn_activation_name(tact));
	if (!logits_of(m, &sact) ||
		(sact == NN_ACT_SOFTMAX && !nn_loss_fused(m->loss, sact)))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "the student needs a softmax last layer with a cross-entropy loss, or a linear last layer");
	m->distill_buf = nn_alloc_bytes(&m->alloc,
									3 * sizeof(double) * nn_model_output_size(m));
	if (m->distill_buf == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	m->teacher = teacher;
	m->temperature = temperature;
	m->distill_alpha = alpha;
	return NN_OK;
}

/*
 * The batch as the student's first layers made it in this training pass:
 * the output of its leading layers that are the identity at inference
 * (they keep the input's size), or x.
 */
static const float *
augmented_input(const nn_model *m, const float *x)
{
	const float *cur = x;

	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];

		if (!nn_layer_is_identity(l, NN_PASS_PREDICT))
			break;
		cur = l->y;
	}
	return cur;
}

/* softmax(z / T) of one row into q; returns log sum exp(z / T). */
static double
soft_row(const float *z, float T, size_t k, double *q)
{
	double		mx = -HUGE_VAL,
				sum = 0.0;

	for (size_t j = 0; j < k; j++)
		mx = fmax(mx, z[j] / (double) T);
	for (size_t j = 0; j < k; j++)
		sum += q[j] = exp(z[j] / (double) T - mx);
	for (size_t j = 0; j < k; j++)
		q[j] /= sum;
	return mx + log(sum);
}

/*
 * KL(softmax(t / T) || softmax(s / T)) of one row, and T (qs - qt) into g.
 * qs and qt are scratch space of k doubles each.
 */
static double
kl_row(const float *s, const float *t, float T, size_t k, double *qs,
	   double *qt, double *g)
{
	double		ls = soft_row(s, T, k, qs),
				lt = soft_row(t, T, k, qt),
				kl = 0.0;

	for (size_t j = 0; j < k; j++)
	{
		/* log qt - log qs = (t - s) / T - lt + ls */
		if (qt[j] > 0.0)
			kl += qt[j] * ((t[j] - (double) s[j]) / T - lt + ls);
		g[j] = T * (qs[j] - qt[j]);
	}
	return kl;
}

/*
 * After the student's training forward pass and loss: run the teacher on
 * the batch, add the distillation gradient to the loss gradient and the
 * term to the batch's summed loss.
 */
nn_status
nn_distill_batch(nn_model *m, const float *x, int32_t n, double *batch_loss,
				 nn_error *err)
{
	nn_model   *t = m->teacher;
	size_t		k = nn_model_output_size(m);
	const float *s = nn_model_output_activation(m) == NN_ACT_SOFTMAX ?
		nn_model_logits(m) : m->layers[m->n_layers - 1].y;
	const float *tout;
	const float *tl;
	double	   *qs = m->distill_buf,
			   *qt = qs + k,
			   *g = qt + k;
	double		a = m->distill_alpha,
				T = m->temperature,
				kl = 0.0;
	nn_status	st;

	if ((st = nn_model_prepare(t, m->batch_cap, false, 0, err)) != NN_OK ||
		(st = nn_model_forward(t, &tout, augmented_input(m, x), n, err)) != NN_OK)
		return st;
	tl = nn_model_output_activation(t) == NN_ACT_SOFTMAX ?
		nn_model_logits(t) : tout;
	for (int32_t r = 0; r < n; r++)
	{
		float	   *d = m->dloss + (size_t) r * k;

		kl += kl_row(s + (size_t) r * k, tl + (size_t) r * k, (float) T, k,
					 qs, qt, g);
		for (size_t j = 0; j < k; j++)
			d[j] = (float) (a * d[j] + (1.0 - a) * g[j] / n);
	}
	*batch_loss = a * *batch_loss + (1.0 - a) * T * T * kl;
	return NN_OK;
}
