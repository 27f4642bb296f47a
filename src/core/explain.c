/*
 * explain.c: integrated gradients, the attributions of nn_explain
 * (Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks",
 * 2017, https://arxiv.org/abs/1703.01365).
 *
 * For a row x, a baseline b and one output F of the model (after its
 * activation, as nn_model_predict returns it), feature i gets
 *   a_i = (x_i - b_i) * integral over t in [0, 1] of dF/dx_i (b + t (x - b))
 * and the a_i add up to F(x) - F(b) (completeness).  The integral is the
 * trapezoid rule over S points t_k = k / (S - 1), k = 0 .. S - 1, with the
 * weights 1 / (S - 1) halved at both ends.  Row 0 is b and row S - 1 is x
 * exactly, so F(b) and F(x) come from the same batch.
 *
 * The S rows go through the model as one batch of the differentiation pass
 * (NN_PASS_DIFF, nn_internal.h): one forward and one backward, the layers
 * behaving exactly as they predict (dropout and augmentation the identity,
 * batchnorm on its moving statistics, nothing drawn or updated), the
 * backward starting from dF/dy = the one-hot row of the output and
 * computing no parameter gradients.
 *
 * Token ids cannot be interpolated.  When the model reads them (its first
 * layer with weights is an embedding, after only layers that keep ids), the
 * path runs over the embedded vectors (T, D) instead: x's embeddings, and
 * zero vectors or the embeddings of baseline ids.  The rows enter the model
 * after the embedding, the attributions are computed on the (T, D) values
 * and each token's is the sum of its D.
 *
 * Memory: the path's endpoints (2, R) and its rows and their gradients
 * (S, R) each, R the input size (T D for tokens), from the model's
 * allocator and freed before returning; and the model's buffers for S rows
 * of the pass, which stay when they cover what the model was prepared for
 * before, and are prepared as before otherwise.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

/* The straight path from the baseline to the row, and its gradients. */
typedef struct ig_path
{
	int			first;			/* the layer the rows enter */
	size_t		width;			/* R: floats per row */
	size_t		group;			/* values per feature: 1, or D for tokens */
	int32_t		steps;			/* S */
	float	   *ends;			/* (2, R): the baseline, then the row */
	float	   *rows;			/* (S, R): b + t_k (x - b) */
	float	   *grad;			/* (S, R): dF/d rows */
} ig_path;

/* The first value of v (n) that is not finite, or n. */
static size_t
first_not_finite(const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return i;
	return n;
}

/* steps, target and the values of the row and the baseline. */
static nn_status
check_args(const nn_model *m, const float *x, const float *baseline,
		   int32_t steps, int32_t target, nn_error *err)
{
	size_t		in = nn_model_input_size(m);
	size_t		k = nn_model_output_size(m);
	size_t		bad;

	if (steps < 2)
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "steps must be at least 2, not %d", steps);
	if (target < -1 || (target >= 0 && (size_t) target >= k))
	{
		nn_fail(err, NN_ERR_SPEC, -1,
				"target %d is out of range for a model of %zu outputs",
				target, k);
		nn_detail(err, "Give an output from 0 to %zu, or -1 for the predicted one.",
				  k - 1);
		return NN_ERR_SPEC;
	}
	if ((bad = first_not_finite(x, in)) < in)
		return nn_fail(err, NN_ERR_DATA, -1,
					   "feature %zu is not a finite number: %g", bad + 1,
					   (double) x[bad]);
	if (baseline && (bad = first_not_finite(baseline, in)) < in)
		return nn_fail(err, NN_ERR_DATA, -1,
					   "baseline feature %zu is not a finite number: %g",
					   bad + 1, (double) baseline[bad]);
	return NN_OK;
}

/* Where the rows enter: after the layer that reads token ids, if any. */
static void
path_shape(const nn_model *m, ig_path *p, int32_t steps)
{
	int			n = m->n_layers;

	memset(p, 0, sizeof(*p));
	p->steps = steps;
	p->group = 1;
	/* a model has one at most: only layers that keep ids come before it */
	for (int i = 0; i < n; i++)
		if (m->layers[i].type->flags & NN_KIND_TOKENS)
		{
			p->first = i + 1;
			p->group = (size_t) m->layers[i].spec.output_dim;
			break;
		}
	p->width = p->first < n ? m->layers[p->first].in_size :
		m->layers[n - 1].out_size;
}

/* Bytes of the path's buffers, (2 S + 2) R floats; false on overflow. */
static bool
path_bytes(const ig_path *p, size_t *bytes)
{
	size_t		rows = 2 * (size_t) p->steps + 2;

	return nn_size_mul(bytes, rows, p->width) &&
		nn_size_mul(bytes, *bytes, sizeof(float));
}

/* The error of a path that does not fit max_bytes. */
static nn_status
too_many_steps(const ig_path *p, size_t max_bytes, nn_error *err)
{
	nn_fail(err, NN_ERR_LIMIT, -1,
			"%d steps need more memory than the limit of %zu bytes",
			p->steps, max_bytes);
	nn_detail(err, "Use fewer steps.");
	return NN_ERR_LIMIT;
}

/*
 * The path's buffers, one allocation within max_bytes (0: no limit); *left
 * is what remains of the limit for the model's buffers (0: no limit, so
 * the path must leave at least a byte).
 */
static nn_status
path_alloc(nn_model *m, ig_path *p, size_t max_bytes, size_t *left,
		   nn_error *err)
{
	size_t		bytes;

	if (!path_bytes(p, &bytes) || (max_bytes > 0 && bytes >= max_bytes))
		return too_many_steps(p, max_bytes, err);
	*left = max_bytes > 0 ? max_bytes - bytes : 0;
	p->ends = nn_alloc_bytes(&m->alloc, bytes);
	if (p->ends == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	p->rows = p->ends + 2 * p->width;
	p->grad = p->rows + (size_t) p->steps * p->width;
	return NN_OK;
}

/* The model's buffers for S rows of the pass, within left of max_bytes. */
static nn_status
prepare(nn_model *m, const ig_path *p, size_t max_bytes, size_t left,
		nn_error *err)
{
	nn_status	st;

	st = nn_model_prepare_pass(m, p->steps, NN_PASS_DIFF, left, err);
	return st == NN_ERR_LIMIT ? too_many_steps(p, max_bytes, err) : st;
}

/*
 * Prepare the model again for what it was prepared for before (cap rows
 * of pass), when its buffers no longer cover that; st is the explanation's
 * status, the error to report if there was one.
 */
static nn_status
restore(nn_model *m, int32_t cap, nn_pass pass, nn_status st, nn_error *err)
{
	nn_error	ignored;

	if (cap == 0 || (m->batch_cap >= cap && m->pass_cap >= pass))
		return st;
	if (st != NN_OK)
	{
		nn_model_prepare_pass(m, cap, pass, 0, &ignored);
		return st;
	}
	return nn_model_prepare_pass(m, cap, pass, 0, err);
}

/*
 * The endpoints: b and x, or their embedded vectors when the rows enter
 * after an embedding (ids checked there; a missing baseline is zeros).
 */
static nn_status
path_ends(nn_model *m, ig_path *p, const float *x, const float *baseline,
		  nn_error *err)
{
	size_t		R = p->width;
	const float *src[2] = {baseline, x};
	const float *out;
	nn_status	st;

	for (int e = 0; e < 2; e++)
	{
		float	   *dst = p->ends + e * R;

		if (src[e] == NULL)
			memset(dst, 0, sizeof(float) * R);
		else if (p->first == 0)
			memcpy(dst, src[e], sizeof(float) * R);
		else
		{
			st = nn_model_forward_layers(m, &out, src[e], 1, 0, p->first,
										 NN_PASS_PREDICT, err);
			if (st != NN_OK)
				return st;
			memcpy(dst, out, sizeof(float) * R);
		}
	}
	return NN_OK;
}

/* Row k = b + t_k (x - b), t_k = k / (S - 1); the ends exactly b and x. */
static void
path_rows(ig_path *p)
{
	size_t		R = p->width;
	const float *b = p->ends,
			   *x = p->ends + R;
	int32_t		S = p->steps;

	for (int32_t k = 0; k < S; k++)
	{
		float	   *row = p->rows + (size_t) k * R;
		double		t = (double) k / (S - 1);

		if (k == 0 || k == S - 1)
			memcpy(row, k == 0 ? b : x, sizeof(float) * R);
		else
			for (size_t i = 0; i < R; i++)
				row[i] = (float) (b[i] + t * ((double) x[i] - b[i]));
	}
}

/* The output to explain: target, or the largest output of x (row S - 1). */
static int32_t
resolve_target(const float *out, size_t k, int32_t S, int32_t target)
{
	const float *fx = out + (size_t) (S - 1) * k;
	int32_t		best = 0;

	if (target >= 0)
		return target;
	for (size_t j = 1; j < k; j++)
		if (fx[j] > fx[best])
			best = (int32_t) j;
	return best;
}

/*
 * Forward the rows as one DIFF batch, pick the target, and backward from
 * dF/dy: a one-hot row per step.  p->grad receives dF/d rows.
 */
static nn_status
path_gradients(nn_model *m, ig_path *p, int32_t *target, float *f_x,
			   float *f_b, nn_error *err)
{
	size_t		k = nn_model_output_size(m);
	int32_t		S = p->steps;
	const float *out;
	nn_status	st;

	st = nn_model_forward_layers(m, &out, p->rows, S, p->first, m->n_layers,
								 NN_PASS_DIFF, err);
	if (st != NN_OK)
		return st;
	*target = resolve_target(out, k, S, *target);
	*f_b = out[*target];
	*f_x = out[(size_t) (S - 1) * k + *target];
	memset(m->dloss, 0, sizeof(float) * k * S);
	for (int32_t r = 0; r < S; r++)
		m->dloss[(size_t) r * k + *target] = 1.0f;
	nn_model_diff_backward(m, p->grad, m->dloss, S, p->first);
	return NN_OK;
}

/*
 * a_j = sum over its group's values i of (x_i - b_i) sum_k w_k g_k,i with
 * the trapezoid weights w_k; NN_ERR_NUMERIC unless all are finite.
 */
static nn_status
path_attribute(const ig_path *p, float *attributions, size_t n_features,
			   nn_error *err)
{
	size_t		R = p->width;
	const float *b = p->ends,
			   *x = p->ends + R;
	int32_t		S = p->steps;
	const float *last = p->grad + (size_t) (S - 1) * R;
	double		w = 1.0 / (S - 1);

	for (size_t j = 0; j < n_features; j++)
	{
		double		a = 0.0;

		for (size_t i = j * p->group; i < (j + 1) * p->group; i++)
		{
			double		g = 0.5 * ((double) p->grad[i] + last[i]);

			for (int32_t s = 1; s < S - 1; s++)
				g += p->grad[(size_t) s * R + i];
			a += ((double) x[i] - b[i]) * g * w;
		}
		attributions[j] = (float) a;
		if (!isfinite(attributions[j]))
		{
			nn_fail(err, NN_ERR_NUMERIC, -1,
					"attribution of feature %zu is not finite", j + 1);
			nn_detail(err, "The model's output or its gradient overflows along the path.");
			return NN_ERR_NUMERIC;
		}
	}
	return NN_OK;
}

/* The steps after the buffers: endpoints, rows, gradients, attributions. */
static nn_status
explain_path(nn_model *m, ig_path *p, float *attributions, float *f_x,
			 float *f_b, int32_t *target, const float *x,
			 const float *baseline, nn_error *err)
{
	nn_status	st;

	if ((st = path_ends(m, p, x, baseline, err)) != NN_OK)
		return st;
	path_rows(p);
	if ((st = path_gradients(m, p, target, f_x, f_b, err)) != NN_OK)
		return st;
	if (!isfinite(*f_x) || !isfinite(*f_b))
		return nn_fail(err, NN_ERR_NUMERIC, -1,
					   "output %d is not finite at the row or the baseline",
					   *target);
	return path_attribute(p, attributions, nn_model_input_size(m), err);
}

/* Integrated gradients of one output for one row. */
nn_status
nn_model_explain(nn_model *m, float *attributions, float *f_x,
				 float *f_baseline, int32_t *target_out, const float *x,
				 const float *baseline, int32_t target, int32_t steps,
				 size_t max_bytes, nn_error *err)
{
	ig_path		p;
	size_t		left;
	int32_t		cap = m->batch_cap;
	nn_pass		pass = m->pass_cap;
	nn_status	st;

	if ((st = nn_quant_refuse(m, "explained",
							  "Explain the float version of the model.",
							  err)) != NN_OK ||
		(st = check_args(m, x, baseline, steps, target, err)) != NN_OK)
		return st;
	path_shape(m, &p, steps);
	if ((st = path_alloc(m, &p, max_bytes, &left, err)) != NN_OK)
		return st;
	st = prepare(m, &p, max_bytes, left, err);
	if (st == NN_OK)
		st = explain_path(m, &p, attributions, f_x, f_baseline, &target, x,
						  baseline, err);
	nn_free_bytes(&m->alloc, p.ends);
	st = restore(m, cap, pass, st, err);
	if (st == NN_OK && target_out)
		*target_out = target;
	return st;
}
