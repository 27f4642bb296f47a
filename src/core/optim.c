/*
 * optim.c: optimizers over the model's flat parameter vector, learning-rate
 * schedules, per-layer L1/L2 penalties and gradient clipping.
 *
 * Update rules as Keras (https://keras.io/api/optimizers/):
 *   sgd       w -= lr g
 *   momentum  v = m v - lr g;  w += v
 *   nesterov  v = m v - lr g;  w += m v - lr g
 *   adagrad   a += g^2;  w -= lr g / (sqrt(a) + eps)
 *   rmsprop   a = rho a + (1 - rho) g^2;  w -= lr g / (sqrt(a) + eps)
 *   adam      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *             w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)
 *   adamw     w -= lr wd w, then adam
 * Penalties add l1 sign(w) + 2 l2 w to kernel gradients; clipvalue clips
 * each element, clipnorm the global norm of all gradients (Keras's
 * global_clipnorm).
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

/* Element-wise updates of fewer parameters are not worth a thread team. */
#define PARALLEL_MIN 65536

/* Keras's defaults; learning_rate <= 0 picks the optimizer's default. */
void
nn_optimizer_spec_init(nn_optimizer_spec *spec, nn_optimizer_kind kind,
					   float learning_rate)
{
	spec->kind = kind;
	spec->learning_rate = learning_rate > 0.0f ? learning_rate :
		(kind == NN_OPT_SGD || kind == NN_OPT_MOMENTUM ||
		 kind == NN_OPT_NESTEROV) ? 0.01f : 0.001f;
	spec->momentum = (kind == NN_OPT_MOMENTUM || kind == NN_OPT_NESTEROV) ?
		0.9f : 0.0f;
	spec->beta1 = 0.9f;
	spec->beta2 = 0.999f;
	spec->epsilon = 1e-7f;
	spec->rho = 0.9f;
	spec->weight_decay = kind == NN_OPT_ADAMW ? 0.004f : 0.0f;
	spec->initial_accumulator = 0.1f;
	spec->clipnorm = 0.0f;
	spec->clipvalue = 0.0f;
	spec->schedule = NN_SCHED_CONSTANT;
	spec->decay_rate = 1.0f;
	spec->decay_steps = 1;
}

#define CHECK(cond, ...) \
	do { if (!(cond)) return nn_fail(err, NN_ERR_SPEC, -1, __VA_ARGS__); } while (0)

/* Validate optimizer settings; the message names the option. */
nn_status
nn_optimizer_spec_check(const nn_optimizer_spec *s, nn_error *err)
{
	CHECK(s->kind >= 1 && s->kind <= NN_OPT_MAX,
		  "unrecognized optimizer %d", (int) s->kind);
	CHECK(isfinite(s->learning_rate) && s->learning_rate > 0.0f,
		  "\"learning_rate\" must be a positive number");
	CHECK(isfinite(s->momentum) && s->momentum >= 0.0f && s->momentum < 1.0f,
		  "\"momentum\" must be in [0, 1)");
	CHECK(isfinite(s->beta1) && s->beta1 >= 0.0f && s->beta1 < 1.0f,
		  "\"beta1\" must be in [0, 1)");
	CHECK(isfinite(s->beta2) && s->beta2 >= 0.0f && s->beta2 < 1.0f,
		  "\"beta2\" must be in [0, 1)");
	CHECK(isfinite(s->epsilon) && s->epsilon > 0.0f,
		  "\"epsilon\" must be a positive number");
	CHECK(isfinite(s->rho) && s->rho >= 0.0f && s->rho < 1.0f,
		  "\"rho\" must be in [0, 1)");
	CHECK(isfinite(s->weight_decay) && s->weight_decay >= 0.0f,
		  "\"weight_decay\" must be a non-negative number");
	CHECK(isfinite(s->initial_accumulator) && s->initial_accumulator >= 0.0f,
		  "\"initial_accumulator\" must be a non-negative number");
	CHECK(isfinite(s->clipnorm) && s->clipnorm >= 0.0f,
		  "\"clipnorm\" must be a non-negative number");
	CHECK(isfinite(s->clipvalue) && s->clipvalue >= 0.0f,
		  "\"clipvalue\" must be a non-negative number");
	CHECK(s->schedule >= NN_SCHED_CONSTANT && s->schedule <= NN_SCHED_EXPONENTIAL,
		  "unrecognized learning rate schedule %d", (int) s->schedule);
	if (s->schedule != NN_SCHED_CONSTANT)
	{
		CHECK(isfinite(s->decay_rate) && s->decay_rate > 0.0f,
			  "\"decay_rate\" must be a positive number");
		CHECK(s->decay_steps > 0, "\"decay_steps\" must be a positive integer");
	}
	return NN_OK;
}

#undef CHECK

/* Optimizer state vectors per parameter. */
int32_t
nn_optimizer_slots(nn_optimizer_kind kind)
{
	switch (kind)
	{
		case NN_OPT_SGD:
			return 0;
		case NN_OPT_ADAM:
		case NN_OPT_ADAMW:
			return 2;
		default:
			return 1;
	}
}

/* Learning rate for the given step (0-based) before plateau scaling. */
float
nn_schedule_lr(const nn_optimizer_spec *opt, int64_t step)
{
	double		e;

	switch (opt->schedule)
	{
		case NN_SCHED_STEP:
			e = (double) (step / opt->decay_steps);
			break;
		case NN_SCHED_EXPONENTIAL:
			e = (double) step / (double) opt->decay_steps;
			break;
		default:
			return opt->learning_rate;
	}
	return (float) (opt->learning_rate * pow(opt->decay_rate, e));
}

/*
 * Add L1/L2 penalty gradients of trainable kernels; returns the penalty
 * value (frozen kernels add none, as in Keras).
 */
double
nn_penalty_grads(nn_model *m)
{
	double		pen = 0.0;

	for (int i = 0; i < m->n_layers; i++)
	{
		nn_layer   *l = &m->layers[i];
		float		l1 = l->spec.l1,
					l2 = l->spec.l2;
		const float *w;
		float	   *g;

		if (l->w_len <= 0 || l->t_off < 0 || (l1 == 0.0f && l2 == 0.0f))
			continue;
		w = m->params + l->w_off;
		g = m->grads + l->w_off;
		for (int64_t j = 0; j < l->w_len; j++)
		{
			float		sg = w[j] > 0.0f ? 1.0f : (w[j] < 0.0f ? -1.0f : 0.0f);

			pen += l1 * fabsf(w[j]) + l2 * (double) w[j] * w[j];
			g[j] += l1 * sg + 2.0f * l2 * w[j];
		}
	}
	return pen;
}

/* Is x infinite or NaN?  Integer test, so that loops using it vectorize. */
static inline uint32_t
nonfinite(float x)
{
	uint32_t	u;

	memcpy(&u, &x, sizeof(u));
	return ((u >> 23) & 0xFFu) == 0xFFu;
}

/* What one step of an update rule needs besides the arrays. */
typedef struct step_rule
{
	nn_optimizer_kind kind;
	float		lr;				/* sgd ... rmsprop: the learning rate */
	float		lr_t;			/* adam: with the bias corrections */
	float		decay;			/* adamw: lr * weight_decay */
	float		momentum,
				rho,
				b1,
				b2,
				eps;
} step_rule;

/*
 * The update of parameters [i0, i1); returns nonzero when a weight or slot
 * is no longer finite.  One rule per loop, so that each vectorizes, also
 * for AVX2: the step is bound by memory and divisions, not by arithmetic.
 */
static NN_SIMD uint32_t
update_block(const step_rule *r, float *restrict w, const float *restrict g,
			 float *restrict s0, float *restrict s1, int64_t i0, int64_t i1)
{
	float		lr = r->lr,
				eps = r->eps;
	uint32_t	bad = 0;

	switch (r->kind)
	{
		case NN_OPT_SGD:
			for (int64_t i = i0; i < i1; i++)
			{
				w[i] -= lr * g[i];
				bad |= nonfinite(w[i]);
			}
			break;
		case NN_OPT_MOMENTUM:
			for (int64_t i = i0; i < i1; i++)
			{
				s0[i] = r->momentum * s0[i] - lr * g[i];
				w[i] += s0[i];
				bad |= nonfinite(w[i]) | nonfinite(s0[i]);
			}
			break;
		case NN_OPT_NESTEROV:
			for (int64_t i = i0; i < i1; i++)
			{
				s0[i] = r->momentum * s0[i] - lr * g[i];
				w[i] += r->momentum * s0[i] - lr * g[i];
				bad |= nonfinite(w[i]) | nonfinite(s0[i]);
			}
			break;
		case NN_OPT_ADAGRAD:
			for (int64_t i = i0; i < i1; i++)
			{
				s0[i] += g[i] * g[i];
				w[i] -= lr * g[i] / (sqrtf(s0[i]) + eps);
				bad |= nonfinite(w[i]) | nonfinite(s0[i]);
			}
			break;
		case NN_OPT_RMSPROP:
			for (int64_t i = i0; i < i1; i++)
			{
				s0[i] = r->rho * s0[i] + (1.0f - r->rho) * g[i] * g[i];
				w[i] -= lr * g[i] / (sqrtf(s0[i]) + eps);
				bad |= nonfinite(w[i]) | nonfinite(s0[i]);
			}
			break;
		case NN_OPT_ADAM:
		case NN_OPT_ADAMW:
			for (int64_t i = i0; i < i1; i++)
			{
				w[i] -= r->decay * w[i];
				s0[i] = r->b1 * s0[i] + (1.0f - r->b1) * g[i];
				s1[i] = r->b2 * s1[i] + (1.0f - r->b2) * g[i] * g[i];
				w[i] -= r->lr_t * s0[i] / (sqrtf(s1[i]) + eps);
				bad |= nonfinite(w[i]) | nonfinite(s0[i]) | nonfinite(s1[i]);
			}
			break;
	}
	return bad;
}

/* Parameters per update_block call: the threads take whole blocks. */
#define STEP_BLOCK 4096

/*
 * A run of trainable parameters: n of them from parameter p, with their
 * optimizer state from slot element s.  Frozen layers have no slots, so a
 * run ends where one lies between; a model without frozen layers is one
 * run.
 */
typedef struct run
{
	int64_t		p,
				s,
				n;
} run;

/* The run that starts at the first trainable layer from *i on; *i moves
 * past it.  False when no trainable layer is left. */
static bool
next_run(const nn_model *m, int *i, run *r)
{
	while (*i < m->n_layers && m->layers[*i].t_off < 0)
		(*i)++;
	if (*i >= m->n_layers)
		return false;
	r->s = m->layers[*i].t_off;
	r->n = nn_layer_span(&m->layers[*i], &r->p);
	for ((*i)++; *i < m->n_layers; (*i)++)
	{
		const nn_layer *l = &m->layers[*i];
		int64_t		off,
					len = nn_layer_span(l, &off);

		if (len == 0)
			continue;
		if (l->t_off != r->s + r->n || off != r->p + r->n)
			break;
		r->n += len;
	}
	return true;
}

/* clipvalue on each gradient, then clipnorm on their global norm. */
static void
clip_gradients(nn_model *m)
{
	const nn_optimizer_spec *o = &m->opt;
	double		ss = 0.0;
	float		f;
	run			r;

	if (o->clipvalue > 0.0f)
		for (int i = 0; next_run(m, &i, &r);)
			for (int64_t j = r.p; j < r.p + r.n; j++)
				m->grads[j] = fminf(fmaxf(m->grads[j], -o->clipvalue), o->clipvalue);
	if (o->clipnorm <= 0.0f)
		return;
	for (int i = 0; next_run(m, &i, &r);)
		for (int64_t j = r.p; j < r.p + r.n; j++)
			ss += (double) m->grads[j] * m->grads[j];
	if (sqrt(ss) <= o->clipnorm)
		return;
	f = (float) (o->clipnorm / sqrt(ss));
	for (int i = 0; next_run(m, &i, &r);)
		for (int64_t j = r.p; j < r.p + r.n; j++)
			m->grads[j] *= f;
}

/* The update of one run, in blocks over the threads. */
static uint32_t
update_run(const step_rule *rule, nn_model *m, const run *r)
{
	float	   *w = m->params + r->p;
	float	   *g = m->grads + r->p;
	float	   *s0 = m->n_slots > 0 ? m->slots[0] + r->s : NULL;
	float	   *s1 = m->n_slots > 1 ? m->slots[1] + r->s : NULL;
	int64_t		blocks = (r->n + STEP_BLOCK - 1) / STEP_BLOCK;
	uint32_t	bad = 0;

#pragma omp parallel for schedule(static) reduction(|:bad) if (r->n > PARALLEL_MIN)
	for (int64_t b = 0; b < blocks; b++)
		bad |= update_block(rule, w, g, s0, s1, b * STEP_BLOCK,
							b == blocks - 1 ? r->n : (b + 1) * STEP_BLOCK);
	return bad;
}

/*
 * Clipping, then one update of every trainable parameter.  Returns false
 * when an updated weight or optimizer slot is no longer finite (the caller
 * reports it; the model is then unusable and is not to be saved).
 */
bool
nn_optimizer_step(nn_model *m)
{
	const nn_optimizer_spec *o = &m->opt;
	float		lr = nn_schedule_lr(o, m->step) * m->lr_scale;
	step_rule	rule = {.kind = o->kind, .lr = lr, .momentum = o->momentum,
	.rho = o->rho, .b1 = o->beta1, .b2 = o->beta2, .eps = o->epsilon};
	uint32_t	bad = 0;
	run			r;

	if (m->mask)
		nn_mask_gradients(m);
	clip_gradients(m);
	m->step++;
	if (o->kind == NN_OPT_ADAM || o->kind == NN_OPT_ADAMW)
	{
		double		t = (double) m->step;

		rule.lr_t = (float) (lr * sqrt(1.0 - pow(o->beta2, t)) /
							 (1.0 - pow(o->beta1, t)));
		rule.decay = o->kind == NN_OPT_ADAMW ? lr * o->weight_decay : 0.0f;
	}
	for (int i = 0; next_run(m, &i, &r);)
		bad |= update_run(&rule, m, &r);
	return bad == 0;
}
