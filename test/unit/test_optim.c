/*
 * test_optim.c: optimizer steps, clipping, learning-rate schedules and
 * optimizer settings.
 *
 * Each optimizer takes three steps on a small dense model; before every
 * step the gradients the core computed (nn_model_grads) are read and the
 * update is recomputed here in double from the rules as Keras states them
 * (https://keras.io/api/optimizers/, as listed at the top of
 * src/core/optim.c):
 *   sgd       w -= lr g
 *   momentum  v = m v - lr g;  w += v
 *   nesterov  v = m v - lr g;  w += m v - lr g
 *   adagrad   a += g^2;  w -= lr g / (sqrt(a) + eps)      (a0 = 0.1)
 *   rmsprop   a = rho a + (1 - rho) g^2;  w -= lr g / (sqrt(a) + eps)
 *   adam      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *             w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)
 *   adamw     w -= lr wd w, then adam
 * with clipvalue (element-wise) and clipnorm (global norm) applied first
 * and the schedule lr0 rate^(step / steps) (floored for "step") at the
 * 0-based step.  Tolerance: 1e-6 absolute + 1e-5 relative on the weights.
 * PyTorch's reference steps are in test_torch.c.
 */
#include <math.h>

#include "nn_test.h"

#define IN 4
#define OUT 3
#define BATCH 4
#define NP (IN * OUT + OUT)

typedef struct ref_state
{
	double		w[NP];
	double		s0[NP];
	double		s1[NP];
	int64_t		t;
} ref_state;

/* Learning rate of a schedule at a 0-based step. */
static double
ref_lr(const nn_optimizer_spec *o, int64_t step, double scale)
{
	double		e;

	switch (o->schedule)
	{
		case NN_SCHED_STEP:
			e = (double) (step / o->decay_steps);
			break;
		case NN_SCHED_EXPONENTIAL:
			e = (double) step / (double) o->decay_steps;
			break;
		default:
			e = 0;
	}
	return o->learning_rate * pow(o->decay_rate, e) * scale;
}

/* One step of the reference on gradients g (clipped here). */
static void
ref_step(const nn_optimizer_spec *o, ref_state *s, const float *gf, double scale)
{
	double		g[NP];
	double		lr = ref_lr(o, s->t, scale);
	double		m = o->momentum,
				eps = o->epsilon;

	for (int i = 0; i < NP; i++)
		g[i] = gf[i];
	if (o->clipvalue > 0)
		for (int i = 0; i < NP; i++)
			g[i] = fmin(fmax(g[i], -(double) o->clipvalue), o->clipvalue);
	if (o->clipnorm > 0)
	{
		double		ss = 0;

		for (int i = 0; i < NP; i++)
			ss += g[i] * g[i];
		if (sqrt(ss) > o->clipnorm)
			for (int i = 0; i < NP; i++)
				g[i] *= o->clipnorm / sqrt(ss);
	}
	s->t++;
	for (int i = 0; i < NP; i++)
	{
		double	   *w = &s->w[i],
				   *a = &s->s0[i],
				   *v = &s->s1[i];

		switch (o->kind)
		{
			case NN_OPT_SGD:
				*w -= lr * g[i];
				break;
			case NN_OPT_MOMENTUM:
				*a = m * *a - lr * g[i];
				*w += *a;
				break;
			case NN_OPT_NESTEROV:
				*a = m * *a - lr * g[i];
				*w += m * *a - lr * g[i];
				break;
			case NN_OPT_ADAGRAD:
				*a += g[i] * g[i];
				*w -= lr * g[i] / (sqrt(*a) + eps);
				break;
			case NN_OPT_RMSPROP:
				*a = o->rho * *a + (1 - (double) o->rho) * g[i] * g[i];
				*w -= lr * g[i] / (sqrt(*a) + eps);
				break;
			case NN_OPT_ADAM:
			case NN_OPT_ADAMW:
				{
					double		b1 = o->beta1,
								b2 = o->beta2;
					double		lr_t = lr * sqrt(1 - pow(b2, (double) s->t)) /
						(1 - pow(b1, (double) s->t));

					if (o->kind == NN_OPT_ADAMW)
						*w -= lr * o->weight_decay * *w;
					*a = b1 * *a + (1 - b1) * g[i];
					*v = b2 * *v + (1 - b2) * g[i] * g[i];
					*w -= lr_t * *a / (sqrt(*v) + eps);
					break;
				}
		}
	}
}

/* Non-default settings, so that a hard-coded default is caught. */
static nn_optimizer_spec
opt_spec(nn_optimizer_kind kind)
{
	nn_optimizer_spec o;

	nn_optimizer_spec_init(&o, kind, 0.05f);
	o.momentum = (kind == NN_OPT_MOMENTUM || kind == NN_OPT_NESTEROV) ? 0.8f : 0.0f;
	o.beta1 = 0.85f;
	o.beta2 = 0.99f;
	o.epsilon = 1e-4f;
	o.rho = 0.8f;
	o.weight_decay = kind == NN_OPT_ADAMW ? 0.01f : 0.0f;
	o.initial_accumulator = 0.2f;
	return o;
}

/* Three steps of o on a dense model against the reference. */
static void
run_opt(const nn_optimizer_spec *o, const char *what, double lr_scale)
{
	nn_layer_spec l[] = {nt_dense(OUT, NN_ACT_TANH)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 2);
	float		x[BATCH * IN],
				t[BATCH * OUT];
	ref_state	s;
	nn_rng		rng;
	nn_error	err;
	char		label[120];

	assert_int_equal(nt_flat_params(m), NP);
	nn_rng_seed(&rng, 3);
	nt_fill(x, BATCH * IN, &rng, -1, 1);
	nt_fill(t, BATCH * OUT, &rng, -1, 1);
	memset(&s, 0, sizeof(s));
	for (int i = 0; i < NP; i++)
	{
		s.w[i] = nn_model_params(m)[i];
		s.s0[i] = o->kind == NN_OPT_ADAGRAD ? (double) o->initial_accumulator : 0;
	}
	assert_ok(nn_model_set_training(m, o, NN_LOSS_MSE, NULL, 0, &err), &err);
	assert_ok(nn_model_prepare(m, BATCH, true, 0, &err), &err);
	if (lr_scale != 1.0)
		nn_model_scale_lr(m, (float) lr_scale);
	for (int step = 0; step < 3; step++)
	{
		double		loss = 0;
		int64_t		correct = 0;
		float		g[NP];

		assert_int_equal(nn_model_step_count(m), step);
		assert_scalar_close("current lr", nn_model_current_lr(m),
							ref_lr(o, step, lr_scale), 0, 1e-6);
		assert_ok(nn_model_compute_gradients(m, NULL, x, t, BATCH, &rng, &loss,
											 &correct, &err), &err);
		memcpy(g, nn_model_grads(m), sizeof(g));
		ref_step(o, &s, g, lr_scale);
		assert_ok(nn_model_apply_gradients(m, &err), &err);
		snprintf(label, sizeof(label), "%s %s, weights after step %d",
				 nn_optimizer_name(o->kind), what, step + 1);
		assert_close_fd(label, nn_model_params(m), s.w, NP, 1e-6, 1e-5);
	}
	assert_int_equal(nn_model_step_count(m), 3);
	nn_model_free(m);
}

static void
test_each_optimizer(void **state)
{
	(void) state;
	for (int k = NN_OPT_SGD; k <= NN_OPT_MAX; k++)
	{
		nn_optimizer_spec o = opt_spec((nn_optimizer_kind) k);

		run_opt(&o, "plain", 1.0);
	}
}

/* Keras's defaults, unchanged (eps 1e-7 is where float rounding bites). */
static void
test_each_optimizer_defaults(void **state)
{
	(void) state;
	for (int k = NN_OPT_SGD; k <= NN_OPT_MAX; k++)
	{
		nn_optimizer_spec o;

		nn_optimizer_spec_init(&o, (nn_optimizer_kind) k, 0);
		run_opt(&o, "defaults", 1.0);
	}
}

static void
test_clipping_and_schedules(void **state)
{
	(void) state;
	for (int k = NN_OPT_SGD; k <= NN_OPT_MAX; k++)
	{
		nn_optimizer_spec a = opt_spec((nn_optimizer_kind) k);
		nn_optimizer_spec b = opt_spec((nn_optimizer_kind) k);

		/* small enough to bind on these gradients */
		a.clipvalue = 0.02f;
		a.schedule = NN_SCHED_STEP;
		a.decay_rate = 0.5f;
		a.decay_steps = 2;
		run_opt(&a, "clipvalue 0.02, step decay 0.5 / 2", 1.0);
		b.clipnorm = 0.05f;
		b.schedule = NN_SCHED_EXPONENTIAL;
		b.decay_rate = 0.7f;
		b.decay_steps = 3;
		run_opt(&b, "clipnorm 0.05, exponential decay 0.7 / 3, lr x 0.5", 0.5);
	}
}

/*
 * Clipping thresholds straddling the actual gradient: global norm N with
 * clipnorm 0.5 N, 0.9 N (clipped to the bound) and 1.1 N (untouched);
 * clipvalue between the smallest and largest |g|.  SGD with lr 1 makes the
 * step the clipped gradient itself.
 */
static void
test_clipping_thresholds(void **state)
{
	nn_layer_spec l[] = {nt_dense(OUT, NN_ACT_TANH)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 1);
	float		x[BATCH * IN],
				t[BATCH * OUT],
				g[NP],
				w0[NP];
	double		norm = 0,
				gmax = 0;
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;

	(void) state;
	nn_rng_seed(&rng, 3);
	nt_fill(x, BATCH * IN, &rng, -1, 1);
	nt_fill(t, BATCH * OUT, &rng, -1, 1);
	{
		nn_model   *m = nt_create(&spec, 2);

		nt_train_setup(m, NN_LOSS_MSE, NULL, 0, BATCH);
		assert_ok(nn_model_compute_gradients(m, NULL, x, t, BATCH, NULL, &loss,
											 &correct, &err), &err);
		memcpy(g, nn_model_grads(m), sizeof(g));
		memcpy(w0, nn_model_params(m), sizeof(w0));
		nn_model_free(m);
	}
	for (int i = 0; i < NP; i++)
	{
		norm += (double) g[i] * g[i];
		gmax = fmax(gmax, fabs(g[i]));
	}
	norm = sqrt(norm);
	assert_true(norm > 0);
	for (int c = 0; c < 4; c++)
	{
		static const double f[4] = {0.5, 0.9, 1.1, -0.5};
		nn_model   *m = nt_create(&spec, 2);
		nn_optimizer_spec o;
		double		expect[NP];
		char		label[80];

		nn_optimizer_spec_init(&o, NN_OPT_SGD, 1.0f);
		if (f[c] > 0)
			o.clipnorm = (float) (f[c] * norm);
		else
			o.clipvalue = (float) (-f[c] * gmax);	/* half the largest |g| */
		for (int i = 0; i < NP; i++)
		{
			double		gi = g[i];

			if (o.clipnorm > 0 && norm > o.clipnorm)
				gi *= o.clipnorm / norm;
			if (o.clipvalue > 0)
				gi = fmin(fmax(gi, -(double) o.clipvalue), o.clipvalue);
			expect[i] = w0[i] - gi;
		}
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
		assert_ok(nn_model_prepare(m, BATCH, true, 0, &err), &err);
		assert_ok(nn_model_train_batch(m, x, t, BATCH, NULL, &loss, &correct, &err),
				  &err);
		snprintf(label, sizeof(label), "sgd step with %s %.3g (gradient norm %.3g, max %.3g)",
				 f[c] > 0 ? "clipnorm" : "clipvalue",
				 f[c] > 0 ? (double) o.clipnorm : (double) o.clipvalue, norm, gmax);
		assert_close_fd(label, nn_model_params(m), expect, NP, 1e-7, 1e-5);
		nn_model_free(m);
	}
}

/* Keras's documented defaults. */
static void
test_spec_defaults(void **state)
{
	nn_optimizer_spec o;
	nn_error	err;

	(void) state;
	for (int k = NN_OPT_SGD; k <= NN_OPT_MAX; k++)
	{
		bool		sgd_family = k == NN_OPT_SGD || k == NN_OPT_MOMENTUM ||
			k == NN_OPT_NESTEROV;

		nn_optimizer_spec_init(&o, (nn_optimizer_kind) k, 0);
		assert_ok(nn_optimizer_spec_check(&o, &err), &err);
		assert_true(o.learning_rate == (sgd_family ? 0.01f : 0.001f));
		assert_true(o.momentum == ((k == NN_OPT_MOMENTUM || k == NN_OPT_NESTEROV) ? 0.9f : 0.0f));
		assert_true(o.beta1 == 0.9f && o.beta2 == 0.999f);
		assert_true(o.epsilon == 1e-7f);
		assert_true(o.rho == 0.9f);
		assert_true(o.weight_decay == (k == NN_OPT_ADAMW ? 0.004f : 0.0f));
		assert_true(o.initial_accumulator == 0.1f);
		assert_true(o.clipnorm == 0 && o.clipvalue == 0);
		assert_int_equal(o.schedule, NN_SCHED_CONSTANT);
		nn_optimizer_spec_init(&o, (nn_optimizer_kind) k, 0.25f);
		assert_true(o.learning_rate == 0.25f);
	}
}

/* Every bad setting is NN_ERR_SPEC and the message names the option. */
static void
test_spec_check_rejects(void **state)
{
	nn_optimizer_spec o;
	nn_error	err;
	const float bad_unit[] = {-0.1f, 1.0f, NAN, INFINITY};
	const float bad_pos[] = {0.0f, -1.0f, NAN, INFINITY};
	const float bad_nonneg[] = {-0.5f, NAN, INFINITY};

	(void) state;
#define EXPECT_BAD(field, values, word) \
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) \
	{ \
		nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0); \
		o.field = values[i]; \
		assert_status(nn_optimizer_spec_check(&o, &err), NN_ERR_SPEC, &err); \
		if (strstr(err.message, word) == NULL) \
			fail_msg("message for %s = %g does not name it: %s", #field, \
					 (double) values[i], err.message); \
	}
	EXPECT_BAD(learning_rate, bad_pos, "learning_rate");
	EXPECT_BAD(epsilon, bad_pos, "epsilon");
	EXPECT_BAD(momentum, bad_unit, "momentum");
	EXPECT_BAD(beta1, bad_unit, "beta1");
	EXPECT_BAD(beta2, bad_unit, "beta2");
	EXPECT_BAD(rho, bad_unit, "rho");
	EXPECT_BAD(weight_decay, bad_nonneg, "weight_decay");
	EXPECT_BAD(initial_accumulator, bad_nonneg, "initial_accumulator");
	EXPECT_BAD(clipnorm, bad_nonneg, "clipnorm");
	EXPECT_BAD(clipvalue, bad_nonneg, "clipvalue");
#undef EXPECT_BAD

	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0);
	o.kind = (nn_optimizer_kind) 0;
	assert_status(nn_optimizer_spec_check(&o, &err), NN_ERR_SPEC, &err);
	o.kind = (nn_optimizer_kind) (NN_OPT_MAX + 1);
	assert_status(nn_optimizer_spec_check(&o, &err), NN_ERR_SPEC, &err);
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0);
	o.schedule = (nn_schedule_kind) 7;
	assert_status(nn_optimizer_spec_check(&o, &err), NN_ERR_SPEC, &err);
	o.schedule = NN_SCHED_STEP;
	o.decay_rate = 0.0f;
	assert_status(nn_optimizer_spec_check(&o, &err), NN_ERR_SPEC, &err);
	assert_non_null(strstr(err.message, "decay_rate"));
	o.decay_rate = 0.5f;
	o.decay_steps = 0;
	assert_status(nn_optimizer_spec_check(&o, &err), NN_ERR_SPEC, &err);
	assert_non_null(strstr(err.message, "decay_steps"));
	o.decay_steps = 10;
	assert_ok(nn_optimizer_spec_check(&o, &err), &err);
}

/*
 * Optimizer state: set_training again with the same optimizer keeps the
 * slots and step; another optimizer starts afresh; reset_optimizer clears
 * both (adagrad back to its initial accumulator).
 */
static void
test_state_lifecycle(void **state)
{
	nn_layer_spec l[] = {nt_dense(OUT, NN_ACT_TANH)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 1);
	nn_model   *a = nt_create(&spec, 2);
	nn_model   *b = nt_create(&spec, 2);
	nn_optimizer_spec adam = opt_spec(NN_OPT_ADAM);
	nn_optimizer_spec ada = opt_spec(NN_OPT_ADAGRAD);
	float		x[BATCH * IN],
				t[BATCH * OUT];
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;

	(void) state;
	nn_rng_seed(&rng, 3);
	nt_fill(x, BATCH * IN, &rng, -1, 1);
	nt_fill(t, BATCH * OUT, &rng, -1, 1);
	assert_ok(nn_model_prepare(a, BATCH, true, 0, &err), &err);
	assert_ok(nn_model_prepare(b, BATCH, true, 0, &err), &err);
	assert_ok(nn_model_set_training(a, &adam, NN_LOSS_MSE, NULL, 0, &err), &err);
	assert_ok(nn_model_set_training(b, &adam, NN_LOSS_MSE, NULL, 0, &err), &err);
	for (int i = 0; i < 2; i++)
	{
		assert_ok(nn_model_train_batch(a, x, t, BATCH, &rng, &loss, &correct, &err), &err);
		assert_ok(nn_model_train_batch(b, x, t, BATCH, &rng, &loss, &correct, &err), &err);
	}
	/* a: same optimizer again keeps its state; both continue identically */
	assert_ok(nn_model_set_training(a, &adam, NN_LOSS_MSE, NULL, 0, &err), &err);
	assert_int_equal(nn_model_step_count(a), 2);
	assert_ok(nn_model_train_batch(a, x, t, BATCH, &rng, &loss, &correct, &err), &err);
	assert_ok(nn_model_train_batch(b, x, t, BATCH, &rng, &loss, &correct, &err), &err);
	assert_memory_equal(nn_model_params(a), nn_model_params(b), NP * sizeof(float));

	/* another optimizer: step 0 and a fresh accumulator */
	assert_ok(nn_model_set_training(a, &ada, NN_LOSS_MSE, NULL, 0, &err), &err);
	assert_int_equal(nn_model_step_count(a), 0);
	{
		ref_state	s;
		float		g[NP];

		memset(&s, 0, sizeof(s));
		for (int i = 0; i < NP; i++)
		{
			s.w[i] = nn_model_params(a)[i];
			s.s0[i] = ada.initial_accumulator;
		}
		assert_ok(nn_model_compute_gradients(a, NULL, x, t, BATCH, &rng, &loss,
											 &correct, &err), &err);
		memcpy(g, nn_model_grads(a), sizeof(g));
		ref_step(&ada, &s, g, 1.0);
		assert_ok(nn_model_apply_gradients(a, &err), &err);
		assert_close_fd("adagrad after switching from adam", nn_model_params(a),
						s.w, NP, 1e-6, 1e-5);

		/* reset: the same first step again from the current weights */
		nn_model_reset_optimizer(a);
		assert_int_equal(nn_model_step_count(a), 0);
		nn_model_scale_lr(a, 0.5f);
		nn_model_reset_optimizer(a);
		assert_true(nn_model_current_lr(a) == ada.learning_rate);
		memset(&s, 0, sizeof(s));
		for (int i = 0; i < NP; i++)
		{
			s.w[i] = nn_model_params(a)[i];
			s.s0[i] = ada.initial_accumulator;
		}
		assert_ok(nn_model_compute_gradients(a, NULL, x, t, BATCH, &rng, &loss,
											 &correct, &err), &err);
		memcpy(g, nn_model_grads(a), sizeof(g));
		ref_step(&ada, &s, g, 1.0);
		assert_ok(nn_model_apply_gradients(a, &err), &err);
		assert_close_fd("adagrad after reset", nn_model_params(a), s.w, NP,
						1e-6, 1e-5);
	}
	nn_model_free(a);
	nn_model_free(b);
}

/* Training needs nn_model_set_training and a training prepare. */
static void
test_training_preconditions(void **state)
{
	nn_layer_spec l[] = {nt_dense(OUT, NN_ACT_TANH)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 2);
	nn_optimizer_spec o = opt_spec(NN_OPT_SGD);
	float		x[BATCH * IN] = {0},
				t[BATCH * OUT] = {0};
	float		bad_cw[2] = {1.0f, -1.0f};
	float		nan_cw[1] = {NAN};
	double		loss = 0;
	int64_t		correct = 0;
	nn_rng		rng;
	nn_error	err;

	(void) state;
	nn_rng_seed(&rng, 1);
	assert_ok(nn_model_prepare(m, BATCH, true, 0, &err), &err);
	assert_int_not_equal(nn_model_train_batch(m, x, t, BATCH, &rng, &loss,
											  &correct, &err), NN_OK);
	assert_int_not_equal(nn_model_apply_gradients(m, &err), NN_OK);
	assert_status(nn_model_set_training(m, &o, (nn_loss_kind) 0, NULL, 0, &err),
				  NN_ERR_SPEC, &err);
	assert_status(nn_model_set_training(m, &o, (nn_loss_kind) 99, NULL, 0, &err),
				  NN_ERR_SPEC, &err);
	assert_status(nn_model_set_training(m, &o, NN_LOSS_MSE, bad_cw, 2, &err),
				  NN_ERR_SPEC, &err);
	assert_status(nn_model_set_training(m, &o, NN_LOSS_MSE, nan_cw, 1, &err),
				  NN_ERR_SPEC, &err);
	assert_status(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 3, &err),
				  NN_ERR_SPEC, &err);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
	/* batches larger than prepared, or training on an inference prepare */
	assert_int_not_equal(nn_model_train_batch(m, x, t, BATCH + 1, &rng, &loss,
											  &correct, &err), NN_OK);
	assert_int_not_equal(nn_model_train_batch(m, x, t, 0, &rng, &loss,
											  &correct, &err), NN_OK);
	nn_model_free(m);
	m = nt_create(&spec, 2);
	assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
	assert_ok(nn_model_prepare(m, BATCH, false, 0, &err), &err);
	assert_int_not_equal(nn_model_train_batch(m, x, t, 1, &rng, &loss, &correct,
											  &err), NN_OK);
	assert_status(nn_model_prepare(m, 0, true, 0, &err), NN_ERR_SPEC, &err);
	nn_model_free(m);
}

/* Whether bytes serialized from m (with optimizer state) load back. */
static bool
bytes_load_back(nn_model *m, char *why, size_t whylen)
{
	size_t		len = nn_model_serialized_size(m, true);
	uint8_t    *buf = nt_xmalloc(len);
	nn_model   *r = NULL;
	nn_error	err;
	bool		ok;

	if (nn_model_serialize(m, buf, len, true, test_crc32c, &err) != NN_OK)
	{
		free(buf);
		return true;			/* refusing to write is fine too */
	}
	ok = nn_model_deserialize(&r, buf, len, 0, &nn_malloc_alloc, test_crc32c,
							  &err) == NN_OK;
	if (!ok)
		snprintf(why, whylen, "%s", err.message);
	nn_model_free(r);
	free(buf);
	return ok;
}

/*
 * A step that overflows float must not pass silently: the gradient is
 * finite, but w - lr g (SGD, lr 1e30) is -Inf, or Adam's second moment
 * (1 - b2) g^2 overflows for |g| ~ 1e21.  train_batch must report
 * NN_ERR_NUMERIC (or leave a finite model), and whatever state is left,
 * nn_model_serialize must either refuse it or write bytes that load: a
 * saved model that nn_model_deserialize rejects as corrupt is lost.
 */
static void
test_overflowing_step(void **state)
{
	struct
	{
		nn_optimizer_kind kind;
		float		lr;
		float		x;
	}			cases[] = {
		{NN_OPT_SGD, 1e30f, 1e5f},		/* weight overflows */
		{NN_OPT_ADAM, 0.001f, 3e10f},	/* second moment overflows */
		{NN_OPT_RMSPROP, 0.001f, 3e10f},	/* accumulator overflows */
	};
	int			bad = 0;

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		nn_layer_spec l[] = {nt_dense(1, NN_ACT_LINEAR)};
		nn_model_spec spec = nt_spec(1, 1, 0, 0, l, 1);
		nn_model   *m = nt_create(&spec, 1);
		nn_optimizer_spec o;
		float		x = cases[i].x,
					t = 0;
		double		loss = 0;
		int64_t		correct = 0;
		nn_error	err;
		nn_status	st;
		char		why[NN_ERRMSG_LEN] = "";

		nn_model_params(m)[0] = 1.0f;
		nn_optimizer_spec_init(&o, cases[i].kind, cases[i].lr);
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
		assert_ok(nn_model_prepare(m, 1, true, 0, &err), &err);
		st = nn_model_train_batch(m, &x, &t, 1, NULL, &loss, &correct, &err);
		/* whatever the step said, bytes the core agrees to write must load */
		if (!bytes_load_back(m, why, sizeof(why)))
		{
			print_error("%s, lr %g, gradient %g: train_batch returned %d "
						"(weight now %g); nn_model_serialize wrote bytes that do "
						"not load: %s\n",
						nn_optimizer_name(cases[i].kind), (double) cases[i].lr,
						2.0 * x * x, (int) st, (double) nn_model_params(m)[0], why);
			bad++;
		}
		if (st != NN_OK)
			assert_int_equal(st, NN_ERR_NUMERIC);
		nn_model_free(m);
	}
	if (bad)
		fail_msg("%d of 3 overflowing steps left a model that cannot be loaded",
				 bad);
}

/* Run the optimizer suite. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_optimizer),
		cmocka_unit_test(test_each_optimizer_defaults),
		cmocka_unit_test(test_clipping_and_schedules),
		cmocka_unit_test(test_clipping_thresholds),
		cmocka_unit_test(test_spec_defaults),
		cmocka_unit_test(test_spec_check_rejects),
		cmocka_unit_test(test_state_lifecycle),
		cmocka_unit_test(test_training_preconditions),
		cmocka_unit_test(test_overflowing_step),
	};

	return NT_RUN(tests);
}
