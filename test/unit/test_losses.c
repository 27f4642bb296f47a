/*
 * test_losses.c: every loss, through every path the core takes to it.
 *
 * Paths (src/core/loss.c): fused (softmax + categorical/sparse, sigmoid +
 * binary: value from the logits by log-sum-exp, gradient p - t w.r.t. the
 * logits), from logits (a linear last layer), and from probabilities (any
 * other activation, clipped to [1e-7, 1 - 1e-7]), each with and without
 * class weights, with the activation in a dense layer or in a trailing
 * activation layer.
 *
 * For each case:
 * - the loss of nn_model_evaluate_batch and of nn_model_compute_gradients
 *   against a reference computed here in double from the logits (Keras's
 *   definitions, reduced as sum_r w_r L_r / n with L_r the mean over
 *   outputs for mse/mae/huber/binary and the sum over classes for the
 *   categorical ones), tolerance 1e-5 relative;
 * - the correct count against arg-max / thresholding done here;
 * - central-difference gradients of inputs and weights (nt_gradcheck).
 * Targets for mae and huber keep |y - t| away from their kinks (0 and 1).
 */
#include <math.h>

#include "nn_test.h"

#define B 5						/* odd batch */
#define IN 4

typedef struct loss_case
{
	nn_loss_kind loss;
	nn_activation act;
	int32_t		k;				/* outputs */
	bool		act_layer;		/* activation in a trailing activation layer */
	bool		weights;		/* class weights */
	bool		soft;			/* soft targets for categorical (sum 0.6) */
} loss_case;

static const float class_w[3] = {0.5f, 2.0f, 1.25f};

/* Logistic function in double. */
static double
sigm(double z)
{
	return 1.0 / (1.0 + exp(-z));
}

/* The core clips in float: [1e-7f, 1.0f - 1e-7f] (the upper bound rounds). */
static double
clipp(double p)
{
	volatile float hi = 1.0f - 1e-7f;

	return fmin(fmax(p, (double) 1e-7f), (double) hi);
}

/* Output activation in double. */
static double
act_d(nn_activation a, double z)
{
	switch (a)
	{
		case NN_ACT_SIGMOID:
			return sigm(z);
		case NN_ACT_TANH:
			return tanh(z);
		case NN_ACT_RELU:
			return z > 0 ? z : 0;
		default:
			return z;
	}
}

/*
 * Reference mean loss and correct count of rows z (logits), targets t,
 * for output activation a.
 */
static double
ref_loss(const loss_case *c, const double *z, const float *t, int64_t *correct)
{
	double		total = 0;
	int32_t		k = c->k;

	*correct = 0;
	for (int r = 0; r < B; r++)
	{
		const double *zr = z + r * k;
		double		p[8],
					L = 0,
					w = 1;
		double		tv[8];
		int			cls = 0;

		if (c->act == NN_ACT_SOFTMAX)
		{
			double		mx = zr[0],
						s = 0;

			for (int j = 1; j < k; j++)
				mx = fmax(mx, zr[j]);
			for (int j = 0; j < k; j++)
				s += exp(zr[j] - mx);
			for (int j = 0; j < k; j++)
				p[j] = exp(zr[j] - mx) / s;
		}
		else
			for (int j = 0; j < k; j++)
				p[j] = act_d(c->act, zr[j]);
		if (c->loss == NN_LOSS_SPARSE_CATEGORICAL_CE)
		{
			cls = (int) t[r];
			for (int j = 0; j < k; j++)
				tv[j] = j == cls;
		}
		else
		{
			for (int j = 0; j < k; j++)
				tv[j] = t[r * k + j];
			if (c->loss == NN_LOSS_CATEGORICAL_CE)
				for (int j = 1; j < k; j++)
					if (tv[j] > tv[cls])
						cls = j;
			if (c->loss == NN_LOSS_BINARY_CE)
				cls = tv[0] >= 0.5;
		}
		if (c->weights)
			w = cls < 3 ? class_w[cls] : 1.0;

		switch (c->loss)
		{
			case NN_LOSS_MSE:
			case NN_LOSS_MAE:
			case NN_LOSS_HUBER:
				for (int j = 0; j < k; j++)
				{
					double		d = p[j] - tv[j];

					if (c->loss == NN_LOSS_MSE)
						L += d * d;
					else if (c->loss == NN_LOSS_MAE)
						L += fabs(d);
					else
						L += fabs(d) <= 1 ? 0.5 * d * d : fabs(d) - 0.5;
				}
				L /= k;
				break;
			case NN_LOSS_BINARY_CE:
				{
					bool		all = true;

					for (int j = 0; j < k; j++)
					{
						double		pj;

						if (c->act == NN_ACT_SIGMOID || c->act == NN_ACT_LINEAR)
						{
							L += fmax(zr[j], 0) - zr[j] * tv[j] + log1p(exp(-fabs(zr[j])));
							pj = sigm(zr[j]);
						}
						else
						{
							pj = clipp(p[j]);
							L -= tv[j] * log(pj) + (1 - tv[j]) * log(1 - pj);
						}
						if ((pj >= 0.5) != (tv[j] >= 0.5))
							all = false;
					}
					L /= k;
					*correct += all;
					break;
				}
			default:
				{
					int			am = 0;

					for (int j = 0; j < k; j++)
					{
						if (c->act == NN_ACT_SOFTMAX || c->act == NN_ACT_LINEAR)
						{
							double		mx = zr[0],
										s = 0;

							for (int i = 1; i < k; i++)
								mx = fmax(mx, zr[i]);
							for (int i = 0; i < k; i++)
								s += exp(zr[i] - mx);
							L += tv[j] * (mx + log(s) - zr[j]);
						}
						else
							L -= tv[j] * log(clipp(p[j]));
						if (p[j] > p[am])
							am = j;
					}
					*correct += am == cls;
					break;
				}
		}
		total += w * L;
	}
	return total / B;
}

/* A readable name for a loss case. */
static const char *
case_label(const loss_case *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s with %s %s (k=%d)%s%s", nn_loss_name(c->loss),
			 c->act_layer ? "activation layer" : "dense", nn_activation_name(c->act),
			 c->k, c->weights ? ", class weights" : "",
			 c->soft ? ", soft targets" : "");
	return buf;
}

/* Loss value, accuracy and gradients of one case against the references. */
static void
run_loss_case(const loss_case *c)
{
	nn_layer_spec two[] = {nt_dense(c->k, NN_ACT_LINEAR), nt_act(c->act)};
	nn_layer_spec one[] = {nt_dense(c->k, c->act)};
	nn_model_spec spec = c->act_layer ? nt_spec(1, IN, 0, 0, two, 2) :
		nt_spec(1, IN, 0, 0, one, 1);
	nn_model   *m = nt_create(&spec, 31 + c->loss * 7 + c->act);
	float		x[B * IN],
				t[B * 8],
				y[B * 8];
	double		z[B * 8],
				ref,
				ev = 0,
				tr = 0;
	int64_t		ref_correct,
				ev_correct = 0,
				tr_correct = 0;
	float	   *zf;
	nn_rng		rng;
	nn_error	err;
	nn_layer_info info;
	char		label[160];
	nt_fd_opts	o = nt_fd_default();
	int64_t		ko,
				kl,
				bo,
				bl;

	case_label(c, label, sizeof(label));
	nn_rng_seed(&rng, 1000 + c->loss * 10 + c->act);
	nt_fill(x, B * IN, &rng, -1.5f, 1.5f);
	nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
	nt_fill(nn_model_params(m) + bo, bl, &rng, -0.3f, 0.3f);
	assert_ok(nn_model_prepare(m, B, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, B, &err), &err);
	zf = nt_prefix_output(m, x, B, 1, true, &info);
	for (int i = 0; i < B * c->k; i++)
		z[i] = zf[i];
	free(zf);

	/* targets */
	for (int r = 0; r < B; r++)
	{
		int			cls = (int) nn_rng_below(&rng, c->k);

		for (int j = 0; j < c->k; j++)
		{
			float	   *tj = &t[r * c->k + j];
			float		d = 0.1f + 0.4f * nn_rng_uniform(&rng);

			switch (c->loss)
			{
				case NN_LOSS_MSE:
					*tj = -1 + 2 * nn_rng_uniform(&rng);
					break;
				case NN_LOSS_MAE:
					*tj = y[r * c->k + j] + (nn_rng_uniform(&rng) < 0.5f ? -d : d);
					break;
				case NN_LOSS_HUBER:
					/* |d| in [0.1, 0.5] or [1.6, 2.0]: away from 0 and 1 */
					if (nn_rng_uniform(&rng) < 0.5f)
						d += 1.5f;
					*tj = y[r * c->k + j] + (nn_rng_uniform(&rng) < 0.5f ? -d : d);
					break;
				case NN_LOSS_BINARY_CE:
					*tj = (float) nn_rng_below(&rng, 2);
					break;
				case NN_LOSS_CATEGORICAL_CE:
					*tj = c->soft ? (j == cls ? 0.4f : 0.2f / (c->k - 1)) :
						(float) (j == cls);
					break;
				default:
					break;
			}
		}
		if (c->loss == NN_LOSS_SPARSE_CATEGORICAL_CE)
			t[r] = (float) cls;
	}

	ref = ref_loss(c, z, t, &ref_correct);
	assert_ok(nn_model_evaluate_batch(m, NULL, x, t, B, c->loss,
									  c->weights ? class_w : NULL,
									  c->weights ? 3 : 0, &ev, &ev_correct,
									  &err), &err);
	nt_train_setup(m, c->loss, c->weights ? class_w : NULL, c->weights ? 3 : 0,
				   B);
	{
		nn_rng		r2;

		nn_rng_seed(&r2, 1);
		assert_ok(nn_model_compute_gradients(m, NULL, x, t, B, &r2, &tr,
											 &tr_correct, &err), &err);
	}
	if (!nt_close_d(label, &(double) {ev / B}, &ref, 1, 1e-6, 1e-5))
		fail_msg("%s: evaluate_batch loss %.9g, reference %.9g", label, ev / B,
				 ref);
	if (!nt_close_d(label, &(double) {tr / B}, &ref, 1, 1e-6, 1e-5))
		fail_msg("%s: compute_gradients loss %.9g, reference %.9g", label,
				 tr / B, ref);
	if (nn_loss_is_classification(c->loss))
	{
		if (ev_correct != ref_correct || tr_correct != ref_correct)
			fail_msg("%s: correct rows %lld (evaluate), %lld (train), reference %lld",
					 label, (long long) ev_correct, (long long) tr_correct,
					 (long long) ref_correct);
	}
	nt_gradcheck(label, m, x, t, B, &o);
	nn_model_free(m);
}

/* Every activation, both layer forms and (for classification) class weights. */
static void
run_cases(nn_loss_kind loss, const nn_activation *acts, int n_acts, int32_t k,
		  bool classification)
{
	for (int a = 0; a < n_acts; a++)
		for (int layer = 0; layer < 2; layer++)
			for (int w = 0; w < (classification ? 2 : 1); w++)
			{
				loss_case	c = {loss, acts[a], k, layer, w, false};

				run_loss_case(&c);
			}
}

/* Mean squared error. */
static void
test_mse(void **state)
{
	nn_activation acts[] = {NN_ACT_LINEAR, NN_ACT_SIGMOID, NN_ACT_TANH,
	NN_ACT_SOFTMAX};

	(void) state;
	run_cases(NN_LOSS_MSE, acts, 4, 3, false);
}

/* Mean absolute error. */
static void
test_mae(void **state)
{
	nn_activation acts[] = {NN_ACT_LINEAR, NN_ACT_SIGMOID};

	(void) state;
	run_cases(NN_LOSS_MAE, acts, 2, 3, false);
}

/* Huber (delta 1). */
static void
test_huber(void **state)
{
	nn_activation acts[] = {NN_ACT_LINEAR, NN_ACT_TANH};

	(void) state;
	run_cases(NN_LOSS_HUBER, acts, 2, 3, false);
}

/* sigmoid: fused; linear: from logits; softmax: probabilities. */
static void
test_binary_ce(void **state)
{
	nn_activation acts[] = {NN_ACT_SIGMOID, NN_ACT_LINEAR, NN_ACT_SOFTMAX};

	(void) state;
	run_cases(NN_LOSS_BINARY_CE, acts, 3, 1, true);
	run_cases(NN_LOSS_BINARY_CE, acts, 3, 3, false);	/* multi-label */
}

/* softmax: fused; linear: from logits; sigmoid: probabilities. */
static void
test_categorical_ce(void **state)
{
	nn_activation acts[] = {NN_ACT_SOFTMAX, NN_ACT_LINEAR, NN_ACT_SIGMOID};

	(void) state;
	run_cases(NN_LOSS_CATEGORICAL_CE, acts, 3, 3, true);
	for (int a = 0; a < 3; a++)
	{
		loss_case	c = {NN_LOSS_CATEGORICAL_CE, acts[a], 3, false, true, true};

		run_loss_case(&c);
	}
}

/* Sparse categorical cross-entropy, fused, from logits, from probabilities. */
static void
test_sparse_ce(void **state)
{
	nn_activation acts[] = {NN_ACT_SOFTMAX, NN_ACT_LINEAR, NN_ACT_SIGMOID};

	(void) state;
	run_cases(NN_LOSS_SPARSE_CATEGORICAL_CE, acts, 3, 3, true);
	run_cases(NN_LOSS_SPARSE_CATEGORICAL_CE, acts, 3, 5, false);
}

/* Class weights beyond the given ones count as 1; zero weights drop rows. */
static void
test_class_weight_semantics(void **state)
{
	nn_layer_spec l[] = {nt_act(NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 3, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	float		x[3 * 3] = {1, 2, 3, 0, 0, 1, -1, 4, 0};
	float		t[3] = {2, 0, 1};
	float		cw2[2] = {0.0f, 3.0f};
	double		l_plain = 0,
				l_w = 0,
				row[3];
	nn_error	err;

	(void) state;
	assert_ok(nn_model_prepare(m, 3, false, 0, &err), &err);
	for (int r = 0; r < 3; r++)
	{
		double		s = 0;

		for (int j = 0; j < 3; j++)
			s += exp((double) x[r * 3 + j]);
		row[r] = log(s) - x[r * 3 + (int) t[r]];
	}
	assert_ok(nn_model_evaluate_batch(m, NULL, x, t, 3,
									  NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0,
									  &l_plain, NULL, &err), &err);
	assert_ok(nn_model_evaluate_batch(m, NULL, x, t, 3,
									  NN_LOSS_SPARSE_CATEGORICAL_CE, cw2, 2,
									  &l_w, NULL, &err), &err);
	assert_scalar_close("unweighted sum", l_plain, row[0] + row[1] + row[2],
						1e-6, 1e-6);
	/* class 2 has no weight (1), class 0 weight 0, class 1 weight 3 */
	assert_scalar_close("weighted sum", l_w, row[0] + 0 * row[1] + 3 * row[2],
						1e-6, 1e-6);
	nn_model_free(m);
}

/* Bad class indices: NN_ERR_DATA, from evaluation and training alike. */
static void
test_sparse_label_out_of_range(void **state)
{
	nn_layer_spec l[] = {nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	float		x[2] = {0.5f, -0.5f};
	float		bad[] = {3.0f, -1.0f, 1.5f, NAN, INFINITY, 1e10f};
	nn_error	err;

	(void) state;
	nt_train_setup(m, NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		double		loss = 0;
		int64_t		correct = 0;
		nn_rng		rng;

		nn_rng_seed(&rng, 1);
		assert_status(nn_model_evaluate_batch(m, NULL, x, &bad[i], 1,
											  NN_LOSS_SPARSE_CATEGORICAL_CE,
											  NULL, 0, &loss, &correct, &err),
					  NN_ERR_DATA, &err);
		assert_status(nn_model_train_batch(m, x, &bad[i], 1, &rng, &loss,
										   &correct, &err),
					  NN_ERR_DATA, &err);
	}
	nn_model_free(m);
}

/* A loss that overflows float is NN_ERR_NUMERIC and leaves weights alone. */
static void
test_non_finite_loss(void **state)
{
	nn_layer_spec l[] = {nt_dense(1, NN_ACT_LINEAR)};
	nn_model_spec spec = nt_spec(1, 1, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	float		x[1] = {1.0f},
				t[1] = {-3e38f};
	float		before[2];
	double		loss = 0;
	int64_t		correct = 0;
	nn_rng		rng;
	nn_error	err;

	(void) state;
	nn_model_params(m)[0] = 3e38f;
	memcpy(before, nn_model_params(m), sizeof(before));
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, 1);
	nn_rng_seed(&rng, 1);
	assert_status(nn_model_train_batch(m, x, t, 1, &rng, &loss, &correct, &err),
				  NN_ERR_NUMERIC, &err);
	assert_memory_equal(before, nn_model_params(m), sizeof(before));
	assert_status(nn_model_evaluate_batch(m, NULL, x, t, 1, NN_LOSS_MSE, NULL,
										  0, &loss, &correct, &err),
				  NN_ERR_NUMERIC, &err);
	nn_model_free(m);
}

/*
 * A softmax output followed by a shape-only layer (flatten) is still a
 * softmax output: nn.h documents nn_model_output_activation as "activation
 * of the last layer that has one", and Keras computes categorical
 * cross-entropy on those probabilities, -log p[target].
 */
static void
test_softmax_behind_flatten(void **state)
{
	nn_layer_spec l[] = {nt_dense(3, NN_ACT_SOFTMAX), nt_plain(NN_LAYER_FLATTEN)};
	nn_model_spec spec = nt_spec(1, 2, 0, 0, l, 2);
	nn_model   *m = nt_create(&spec, 4);
	float		x[2] = {0.3f, -0.7f},
				t[1] = {1.0f},
				p[3];
	double		loss = 0;
	int64_t		correct = 0;
	nn_error	err;

	(void) state;
	assert_ok(nn_model_prepare(m, 1, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, p, x, 1, &err), &err);
	assert_ok(nn_model_evaluate_batch(m, NULL, x, t, 1,
									  NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0,
									  &loss, &correct, &err), &err);
	assert_scalar_close("cross-entropy of softmax behind flatten", loss,
						-log((double) p[1]), 1e-6, 1e-5);
	assert_int_equal(nn_model_output_activation(m), NN_ACT_SOFTMAX);
	nn_model_free(m);
}

/* Run the loss suite. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mse),
		cmocka_unit_test(test_mae),
		cmocka_unit_test(test_huber),
		cmocka_unit_test(test_binary_ce),
		cmocka_unit_test(test_categorical_ce),
		cmocka_unit_test(test_sparse_ce),
		cmocka_unit_test(test_class_weight_semantics),
		cmocka_unit_test(test_sparse_label_out_of_range),
		cmocka_unit_test(test_non_finite_loss),
		cmocka_unit_test(test_softmax_behind_flatten),
	};

	return NT_RUN(tests);
}
