/*
 * model.c: building a model from a spec, sizing its buffers, inference,
 * training steps and normalize-layer adaptation.
 *
 * A model is a sequential array of layers over one flat parameter vector
 * (kernels, recurrent kernels, then biases, layer by layer), its gradient
 * of the same layout, up to two optimizer slot vectors and a small state
 * vector for normalize statistics and batchnorm moving averages.  Work
 * buffers are sized once by nn_model_prepare() for the largest batch:
 * nothing is allocated per batch.
 */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

/* Validate the model-level fields of a spec. */
static nn_status
check_top(const nn_model_spec *spec, nn_error *err)
{
	if (spec->n_layers < 1 || spec->n_layers > NN_MAX_LAYERS)
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "a model needs 1 to %d layers, not %d", NN_MAX_LAYERS,
					   spec->n_layers);
	if (spec->input_rank < 1 || spec->input_rank > NN_MAX_RANK)
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "input shape must have 1 to %d dimensions, not %d",
					   NN_MAX_RANK, spec->input_rank);
	for (int i = 0; i < spec->input_rank; i++)
		if (spec->input_shape[i] <= 0)
			return nn_fail(err, NN_ERR_SPEC, -1,
						   "input shape dimensions must be positive, not %d",
						   spec->input_shape[i]);
	return NN_OK;
}

/* Infer layer i's shapes from its predecessor (or the input). */
static nn_status
infer_layer(nn_layer *l, const nn_layer *prev, const nn_model_spec *spec,
			int i, nn_error *err)
{
	nn_status	st;

	l->spec = spec->layers[i];
	if (prev)
	{
		l->in_rank = prev->out_rank;
		memcpy(l->in_shape, prev->out_shape, sizeof(l->in_shape));
	}
	else
	{
		l->in_rank = spec->input_rank;
		memset(l->in_shape, 0, sizeof(l->in_shape));
		memcpy(l->in_shape, spec->input_shape,
			   sizeof(int32_t) * spec->input_rank);
	}
	if ((st = nn_layer_infer(l, i, err)) != NN_OK)
		return st;
	/* ids have no gradient: nothing trainable or value-mixing before them */
	if (l->type->flags & NN_KIND_TOKENS)
		for (int j = 0; j < i; j++)
		{
			const nn_layer_type *t = nn_layer_type_of(spec->layers[j].kind);

			if (!(t->flags & NN_KIND_KEEPS_IDS))
				return nn_fail(err, NN_ERR_SPEC, i,
							   "layer %d (%s): must be the first layer (or follow only reshape, flatten and rescale layers), not follow layer %d (%s)",
							   i + 1, l->type->name, j + 1, t->name);
		}
	return NN_OK;
}

/*
 * Validate a spec layer by layer without allocating, and count the
 * trainable parameters and normalize statistics it needs.
 */
nn_status
nn_spec_counts(const nn_model_spec *spec, size_t *n_params, size_t *n_state,
			   nn_error *err)
{
	nn_layer	cur,
				prev;
	nn_status	st;
	size_t		np = 0,
				ns = 0;

	if ((st = check_top(spec, err)) != NN_OK)
		return st;
	for (int i = 0; i < spec->n_layers; i++)
	{
		memset(&cur, 0, sizeof(cur));
		if ((st = infer_layer(&cur, i ? &prev : NULL, spec, i, err)) != NN_OK)
			return st;
		np += (size_t) cur.w_len + (size_t) cur.r_len + (size_t) cur.b_len;
		if (nn_layer_has_state(cur.spec.kind))
			ns += 2 * (size_t) cur.channels;
		if (np > (size_t) INT64_MAX / 16)
			return nn_fail(err, NN_ERR_LIMIT, i, "model has too many parameters");
		prev = cur;
	}
	*n_params = np;
	*n_state = ns;
	return NN_OK;
}

/* Validate a whole spec without allocating. */
nn_status
nn_spec_check(const nn_model_spec *spec, nn_error *err)
{
	size_t		np,
				ns;

	return nn_spec_counts(spec, &np, &ns, err);
}

/*
 * A layer's parameters (kernel, recurrent kernel, bias, in this order):
 * how many, and where the first is (*off).
 */
int64_t
nn_layer_span(const nn_layer *l, int64_t *off)
{
	int64_t		w = l->q ? 0 : l->w_len;	/* an int8 kernel is not there */

	*off = w > 0 ? l->w_off : l->r_len > 0 ? l->r_off : l->b_off;
	return w + l->r_len + l->b_len;
}

void
nn_model_free_buffers(nn_model *m)
{
	const nn_alloc *a = &m->alloc;

	for (int i = 0; i < m->n_layers; i++)
	{
		nn_layer   *l = &m->layers[i];

		nn_free_bytes(a, l->ybuf);
		nn_free_bytes(a, l->logits);
		nn_free_bytes(a, l->col);
		nn_free_bytes(a, l->argmax);
		nn_free_bytes(a, l->mask);
		nn_free_bytes(a, l->work);
		nn_free_bytes(a, l->wt);
		nn_free_bytes(a, l->xq);
		nn_free_bytes(a, l->qwork);
		l->ybuf = l->logits = l->col = l->mask = l->work = l->wt = NULL;
		l->wt_ready = false;
		l->argmax = NULL;
		l->xq = NULL;
		l->qwork = NULL;
		l->qwork_len = 0;
	}
	nn_free_bytes(a, m->dbuf[0]);
	nn_free_bytes(a, m->dbuf[1]);
	nn_free_bytes(a, m->dloss);
	m->dbuf[0] = m->dbuf[1] = m->dloss = NULL;
	m->batch_cap = 0;
	m->pass_cap = NN_PASS_PREDICT;
}

/* Free a model and everything it owns; NULL is ignored. */
void
nn_model_free(nn_model *m)
{
	nn_alloc	a;

	if (m == NULL)
		return;
	a = m->alloc;
	nn_model_free_buffers(m);
	nn_quant_free(m);
	for (int i = 0; i < m->n_layers; i++)
		nn_free_bytes(&a, m->layers[i].acc);
	nn_free_bytes(&a, m->layers);
	nn_free_bytes(&a, m->spec.layers);
	nn_free_bytes(&a, m->params);
	nn_free_bytes(&a, m->grads);
	nn_free_bytes(&a, m->slots[0]);
	nn_free_bytes(&a, m->slots[1]);
	nn_free_bytes(&a, m->state);
	nn_free_bytes(&a, m->class_weights);
	nn_free_bytes(&a, m->distill_buf);
	nn_free_bytes(&a, m->mask);
	nn_free_bytes(&a, m);
}

/*
 * Build the layers, lay out parameters and allocate them, without
 * initialising values.  Shared by nn_model_create and the deserializer.
 */
nn_status
nn_model_build(nn_model **out, const nn_model_spec *spec, size_t max_bytes,
			   const nn_alloc *alloc, nn_error *err)
{
	nn_layer   *layers;
	nn_model   *m;
	size_t		np = 0,
				ns = 0,
				bytes;
	int64_t		nt;
	nn_status	st;

	*out = NULL;
	if ((st = nn_spec_counts(spec, &np, &ns, err)) != NN_OK)
		return st;
	/* parameters, gradients and two optimizer slots, plus state */
	bytes = (np * 4 + ns) * sizeof(float);
	if (max_bytes > 0 && bytes > max_bytes)
	{
		nn_fail(err, NN_ERR_LIMIT, -1,
				"model needs %zu bytes of weights, more than the limit of %zu",
				bytes, max_bytes);
		nn_detail(err, "The model has %zu parameters.", np);
		return NN_ERR_LIMIT;
	}
	layers = nn_alloc_bytes(alloc, sizeof(nn_layer) * spec->n_layers);
	if (layers == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	memset(layers, 0, sizeof(nn_layer) * spec->n_layers);
	np = ns = 0;
	for (int i = 0; i < spec->n_layers; i++)
	{
		nn_layer   *l = &layers[i];

		infer_layer(l, i ? &layers[i - 1] : NULL, spec, i, err);
		if (l->w_len > 0)
		{
			l->w_off = (int64_t) np;
			np += (size_t) l->w_len;
		}
		if (l->r_len > 0)
		{
			l->r_off = (int64_t) np;
			np += (size_t) l->r_len;
		}
		if (l->b_len > 0)
		{
			l->b_off = (int64_t) np;
			np += (size_t) l->b_len;
		}
		if (nn_layer_has_state(l->spec.kind))
		{
			l->s_off = (int64_t) ns;
			ns += 2 * (size_t) l->channels;
		}
	}
	nt = 0;
	for (int i = 0; i < spec->n_layers; i++)
	{
		nn_layer   *l = &layers[i];
		int64_t		off,
					len = nn_layer_span(l, &off);

		l->t_off = len > 0 && l->spec.trainable ? nt : -1;
		nt += l->t_off >= 0 ? len : 0;
	}

	m = nn_alloc_bytes(alloc, sizeof(nn_model));
	if (m == NULL)
	{
		nn_free_bytes(alloc, layers);
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	}
	memset(m, 0, sizeof(*m));
	m->alloc = *alloc;
	m->layers = layers;
	m->n_layers = spec->n_layers;
	m->spec = *spec;
	m->spec.layers = nn_alloc_bytes(alloc, sizeof(nn_layer_spec) * spec->n_layers);
	m->n_params = (int64_t) np;
	m->n_train = nt;
	m->n_state = (int64_t) ns;
	m->params = nn_alloc_bytes(alloc, np * sizeof(float));
	m->grads = nn_alloc_bytes(alloc, np * sizeof(float));
	m->state = nn_alloc_bytes(alloc, ns * sizeof(float));
	m->lr_scale = 1.0f;
	if (!m->spec.layers || !m->params || !m->grads || !m->state)
	{
		nn_model_free(m);
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	}
	for (int i = 0; i < spec->n_layers; i++)
		m->spec.layers[i] = layers[i].spec;	/* with defaults resolved */
	memset(m->grads, 0, np * sizeof(float));
	for (int i = 0; i < m->n_layers; i++)
	{
		nn_layer   *l = &layers[i];

		if (nn_layer_has_state(l->spec.kind))
			for (int32_t c = 0; c < l->channels; c++)
			{
				m->state[l->s_off + c] = 0.0f;
				m->state[l->s_off + l->channels + c] = 1.0f;
			}
	}
	*out = m;
	return NN_OK;
}

/* Build and initialise a model (Glorot-uniform kernels, zero biases). */
nn_status
nn_model_create(nn_model **out, const nn_model_spec *spec, uint64_t seed,
				size_t max_bytes, const nn_alloc *alloc, nn_error *err)
{
	nn_rng		rng;
	nn_status	st;

	if ((st = nn_model_build(out, spec, max_bytes, alloc, err)) != NN_OK)
		return st;
	/* fresh statistics too: they are adapted again at the first fit */
	for (int i = 0; i < (*out)->n_layers; i++)
		(*out)->layers[i].spec.adapted = (*out)->spec.layers[i].adapted = false;
	nn_rng_seed(&rng, seed);
	for (int i = 0; i < (*out)->n_layers; i++)
		if (!nn_layer_init_params(*out, &(*out)->layers[i], &rng))
		{
			nn_model_free(*out);
			*out = NULL;
			return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		}
	return NN_OK;
}

/* The spec of a transfer: keep layers of base, frozen when freeze, then
 * top's; alloc'd layers. */
static nn_status
transfer_spec(nn_model_spec *spec, const nn_model *base, int32_t keep,
			  const nn_model_spec *top, bool freeze, const nn_alloc *alloc,
			  nn_error *err)
{
	int32_t		n = keep + top->n_layers;

	if (keep < 1 || keep > base->n_layers)
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "the base model has %d layers: keep 1 to %d of them, not %d",
					   base->n_layers, base->n_layers, keep);
	if (n > NN_MAX_LAYERS)
		return nn_fail(err, NN_ERR_SPEC, -1, "a model has at most %d layers",
					   NN_MAX_LAYERS);
	*spec = base->spec;
	spec->n_layers = n;
	spec->layers = nn_alloc_bytes(alloc, sizeof(nn_layer_spec) * n);
	if (spec->layers == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	memcpy(spec->layers, base->spec.layers, sizeof(nn_layer_spec) * keep);
	if (top->n_layers > 0)
		memcpy(spec->layers + keep, top->layers,
			   sizeof(nn_layer_spec) * top->n_layers);
	for (int32_t i = 0; i < keep && freeze; i++)
		if (base->layers[i].w_len + base->layers[i].r_len +
			base->layers[i].b_len > 0)
			spec->layers[i].trainable = false;
	return NN_OK;
}

/* A pruned base's mask bits of a copied layer's len parameters. */
static bool
copy_mask(nn_model *m, const nn_model *base, int64_t dst, int64_t src,
		  int64_t len, nn_error *err)
{
	if (m->mask == NULL && (m->mask = nn_mask_alloc(m)) == NULL)
	{
		nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		return false;
	}
	for (int64_t i = 0; i < len; i++)
		if (!nn_mask_kept(base->mask, src + i))
			m->mask[(dst + i) >> 3] &= (uint8_t) ~(1u << ((dst + i) & 7));
	return true;
}

/*
 * A new model made of the first keep layers of base, with their weights,
 * statistics, adaptation and pruning mask (frozen when freeze), followed
 * by top's layers initialised from seed.  The input shape is base's.
 */
nn_status
nn_model_transfer(nn_model **out, const nn_model *base, int32_t keep,
				  const nn_model_spec *top, bool freeze, uint64_t seed,
				  size_t max_bytes, const nn_alloc *alloc, nn_error *err)
{
	nn_model_spec spec;
	nn_model   *m;
	nn_status	st;

	*out = NULL;
	if ((st = nn_quant_refuse(base, "a transfer base",
							  "Transfer from the float version of the model.",
							  err)) != NN_OK)
		return st;
	if ((st = transfer_spec(&spec, base, keep, top, freeze, alloc, err)) != NN_OK)
		return st;
	st = nn_model_create(&m, &spec, seed, max_bytes, alloc, err);
	nn_free_bytes(alloc, spec.layers);
	if (st != NN_OK)
		return st;
	for (int32_t i = 0; i < keep; i++)
	{
		const nn_layer *from = &base->layers[i];
		nn_layer   *to = &m->layers[i];
		int64_t		src,
					dst,
					len = nn_layer_span(from, &src);

		nn_layer_span(to, &dst);
		memcpy(m->params + dst, base->params + src, sizeof(float) * len);
		if (base->mask && !copy_mask(m, base, dst, src, len, err))
		{
			nn_model_free(m);
			return NN_ERR_MEMORY;
		}
		if (nn_layer_has_state(from->spec.kind))
			memcpy(m->state + to->s_off, base->state + from->s_off,
				   sizeof(float) * 2 * from->channels);
		to->spec.adapted = m->spec.layers[i].adapted = from->spec.adapted;
	}
	*out = m;
	return NN_OK;
}

const nn_model_spec *
nn_model_get_spec(const nn_model *m)
{
	return &m->spec;
}

size_t
nn_model_input_size(const nn_model *m)
{
	return m->layers[0].in_size;
}

size_t
nn_model_output_size(const nn_model *m)
{
	return m->layers[m->n_layers - 1].out_size;
}

/* Parameter count as Keras reports it (non-trainable statistics included). */
int64_t
nn_model_param_count(const nn_model *m)
{
	int64_t		n = 0;

	for (int i = 0; i < m->n_layers; i++)
		n += nn_layer_keras_params(&m->layers[i]);
	return n;
}

int64_t
nn_model_trainable_count(const nn_model *m)
{
	return m->n_train;
}

/*
 * The layer whose activation produces the output: the last one, looking
 * through trailing flatten and reshape layers (they only relabel values).
 * Its pre-activation is what a fused loss reads.
 */
static nn_layer *
output_layer(const nn_model *m)
{
	int			i = m->n_layers - 1;

	while (i > 0 && (m->layers[i].type->flags & NN_KIND_RELABEL))
		i--;
	return &m->layers[i];
}

nn_activation
nn_model_output_activation(const nn_model *m)
{
	return nn_layer_out_activation(output_layer(m));
}

void
nn_model_layer_info(const nn_model *m, int i, nn_layer_info *info)
{
	const nn_layer *l = &m->layers[i];

	info->kind = l->spec.kind;
	info->rank = l->out_rank;
	memcpy(info->shape, l->out_shape, sizeof(info->shape));
	info->params = nn_layer_keras_params(l);
	info->has_weights = l->w_len + l->r_len + l->b_len > 0;
	info->trainable = l->t_off >= 0;
}

float *
nn_model_params(nn_model *m)
{
	return m->params;
}

const float *
nn_model_grads(const nn_model *m)
{
	return m->grads;
}

void
nn_model_layer_params(const nn_model *m, int i, int64_t *kernel_off,
					  int64_t *kernel_len, int64_t *bias_off, int64_t *bias_len)
{
	const nn_layer *l = &m->layers[i];

	*kernel_off = l->w_off;
	*kernel_len = l->q ? 0 : l->w_len;	/* an int8 kernel is not there */
	*bias_off = l->b_off;
	*bias_len = l->b_len;
}

/* Offset and length of layer i's recurrent kernel (-1/0 when none). */
void
nn_model_layer_recurrent(const nn_model *m, int i, int64_t *off, int64_t *len)
{
	*off = m->layers[i].r_off;
	*len = m->layers[i].r_len;
}

/* Layer i's non-trainable per-channel statistics (2 C floats), or NULL. */
float *
nn_model_layer_state(nn_model *m, int i, int32_t *channels)
{
	const nn_layer *l = &m->layers[i];

	if (!nn_layer_has_state(l->spec.kind))
	{
		*channels = 0;
		return NULL;
	}
	*channels = l->channels;
	return m->state + l->s_off;
}

/* Sum sizes into *total with overflow checks; false on overflow. */
static bool
add_buffer(size_t *total, size_t count, size_t elem, int32_t batch)
{
	size_t		b;

	return nn_size_mul(&b, count, elem) &&
		nn_size_mul(&b, b, (size_t) batch) &&
		nn_size_add(total, *total, b);
}

#define LAYER_BUFFERS 8

/* One buffer of a layer: its pointer, elements per batch row (or in all
 * when once) and their size. */
typedef struct buffer_plan
{
	void	  **ptr;
	size_t		count;
	size_t		elem;
	bool		once;
} buffer_plan;

/* A layer's buffers for a pass: one list for counting and allocating. */
static void
layer_plan(nn_layer *l, nn_pass pass, buffer_plan p[LAYER_BUFFERS])
{
	nn_layer_buffers b;
	size_t		out = nn_layer_is_identity(l, pass) ? 0 : l->out_size;

	nn_layer_buffers_of(l, pass, &b);
	p[0] = (buffer_plan) {(void **) &l->ybuf, out, sizeof(float), false};
	p[1] = (buffer_plan) {(void **) &l->col, b.col, sizeof(float), false};
	p[2] = (buffer_plan) {(void **) &l->wt, b.kernel, sizeof(float), true};
	p[3] = (buffer_plan) {(void **) &l->argmax, b.argmax, sizeof(int32_t), false};
	p[4] = (buffer_plan) {(void **) &l->work, b.work, sizeof(float), false};
	p[5] = (buffer_plan) {(void **) &l->mask, b.mask, sizeof(float), false};
	p[6] = (buffer_plan) {(void **) &l->xq, b.qbytes, sizeof(uint8_t), false};
	p[7] = (buffer_plan) {(void **) &l->qwork, b.qwork, sizeof(float), true};
}

/* Count one layer's buffers for batches of B rows into *total. */
static bool
count_layer(nn_layer *l, nn_pass pass, int32_t B, size_t *total)
{
	buffer_plan p[LAYER_BUFFERS];

	layer_plan(l, pass, p);
	for (int i = 0; i < LAYER_BUFFERS; i++)
		if (!add_buffer(total, p[i].count, p[i].elem, p[i].once ? 1 : B))
			return false;
	return true;
}

/* Allocate one layer's buffers (already counted) for batches of B rows. */
static bool
alloc_layer(nn_model *m, nn_layer *l, nn_pass pass, int32_t B)
{
	buffer_plan p[LAYER_BUFFERS];

	layer_plan(l, pass, p);
	for (int i = 0; i < LAYER_BUFFERS; i++)
	{
		size_t		n = p[i].count * (p[i].once ? 1 : (size_t) B);

		*p[i].ptr = n > 0 ? nn_alloc_bytes(&m->alloc, n * p[i].elem) : NULL;
		if (n > 0 && *p[i].ptr == NULL)
			return false;
	}
	l->qwork_len = p[7].count;
	return true;
}

/*
 * Does each layer's scratch sized once still hold what it wants?  The
 * weight-only product's grows with the team (nn_set_threads).
 */
static bool
once_buffers_fit(const nn_model *m)
{
	for (int i = 0; i < m->n_layers; i++)
	{
		nn_layer_buffers b;

		nn_layer_buffers_of(&m->layers[i], m->pass_cap, &b);
		if (b.qwork > m->layers[i].qwork_len)
			return false;
	}
	return true;
}

/*
 * Size (and allocate) work buffers for passes of up to max_batch rows: the
 * pass's own and, as they include them, those of the passes before it.
 */
nn_status
nn_model_prepare_pass(nn_model *m, int32_t max_batch, nn_pass pass,
					  size_t max_bytes, nn_error *err)
{
	size_t		total = 0;
	size_t		maxsz = 0;
	bool		ok = true;
	const nn_alloc *a = &m->alloc;
	int32_t		B = max_batch;
	nn_layer   *last = output_layer(m);
	nn_activation oact = nn_model_output_activation(m);
	bool		want_logits = oact == NN_ACT_SOFTMAX || oact == NN_ACT_SIGMOID;
	nn_status	st;

	if (max_batch < 1)
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "batch size must be positive, not %d", max_batch);
	if (pass != NN_PASS_PREDICT &&
		(st = nn_quant_refuse(m, pass == NN_PASS_TRAIN ? "trained" : "differentiated",
							  pass == NN_PASS_TRAIN ?
							  "Train the float version of the model, then quantize it again." :
							  "Differentiate the float version of the model.",
							  err)) != NN_OK)
		return st;
	if (m->batch_cap >= max_batch && m->pass_cap >= pass &&
		once_buffers_fit(m))
		return NN_OK;

	/* count first, so nothing is allocated over the budget */
	for (int i = 0; i < m->n_layers && ok; i++)
	{
		nn_layer   *l = &m->layers[i];

		maxsz = l->in_size > maxsz ? l->in_size : maxsz;
		maxsz = l->out_size > maxsz ? l->out_size : maxsz;
		ok = count_layer(l, pass, B, &total);
	}
	if (ok && want_logits)
		ok = add_buffer(&total, last->out_size, sizeof(float), B);
	if (ok && pass != NN_PASS_PREDICT)
		ok = add_buffer(&total, maxsz, 2 * sizeof(float), B) &&
			add_buffer(&total, last->out_size, sizeof(float), B);
	if (!ok || (max_bytes > 0 && total > max_bytes))
	{
		nn_fail(err, NN_ERR_LIMIT, -1,
				"batch size %d needs more memory than the limit of %zu bytes",
				max_batch, max_bytes);
		nn_detail(err, "Use a smaller batch size.");
		return NN_ERR_LIMIT;
	}

	nn_model_free_buffers(m);
	for (int i = 0; i < m->n_layers && ok; i++)
		ok = alloc_layer(m, &m->layers[i], pass, B);
	if (ok && want_logits)
		ok = (last->logits = nn_alloc_bytes(a, sizeof(float) * last->out_size * B)) != NULL;
	if (ok && pass != NN_PASS_PREDICT)
		ok = (m->dbuf[0] = nn_alloc_bytes(a, sizeof(float) * maxsz * B)) != NULL &&
			(m->dbuf[1] = nn_alloc_bytes(a, sizeof(float) * maxsz * B)) != NULL &&
			(m->dloss = nn_alloc_bytes(a, sizeof(float) * last->out_size * B)) != NULL;
	if (!ok)
	{
		nn_model_free_buffers(m);
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	}
	m->batch_cap = max_batch;
	m->pass_cap = pass;
	m->max_size = maxsz;
	return NN_OK;
}

/* Buffers for prediction, or for training too. */
nn_status
nn_model_prepare(nn_model *m, int32_t max_batch, bool training,
				 size_t max_bytes, nn_error *err)
{
	return nn_model_prepare_pass(m, max_batch,
								 training ? NN_PASS_TRAIN : NN_PASS_PREDICT,
								 max_bytes, err);
}

/* Does a pass of n rows fit the prepared buffers? */
static nn_status
check_batch(const nn_model *m, int32_t n, nn_pass pass, nn_error *err)
{
	static const char *const names[] = {"prediction", "differentiation",
	"training"};

	if (n < 1 || n > m->batch_cap || pass > m->pass_cap)
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "%s of %d rows does not fit the buffers prepared for %s of %d",
					   names[pass], n, names[m->pass_cap], m->batch_cap);
	return NN_OK;
}

/*
 * Forward through layers [first, upto), x being layer first's input,
 * setting *out to the last output (x when first == upto).  Fails only on
 * bad embedding ids.
 */
static nn_status
forward(nn_model *m, const float **out, const float *x, int32_t n, int first,
		int upto, nn_pass pass, nn_rng *rng, nn_error *err)
{
	const float *cur = x;
	nn_status	st;

	for (int i = first; i < upto; i++)
	{
		nn_layer   *l = &m->layers[i];

		l->x = cur;
		st = nn_layer_forward(m, l, n, pass, rng, err);
		if (st != NN_OK)
			return st;
		cur = l->y;
	}
	*out = cur;
	return NN_OK;
}

nn_status
nn_model_forward(nn_model *m, const float **out, const float *x, int32_t n,
				 nn_error *err)
{
	nn_status	st;

	if ((st = check_batch(m, n, NN_PASS_PREDICT, err)) != NN_OK)
		return st;
	return forward(m, out, x, n, 0, m->n_layers, NN_PASS_PREDICT, NULL, err);
}

/* A forward of layers [first, upto) that draws nothing (not TRAIN). */
nn_status
nn_model_forward_layers(nn_model *m, const float **out, const float *x,
						int32_t n, int first, int upto, nn_pass pass,
						nn_error *err)
{
	nn_status	st;

	if (pass == NN_PASS_TRAIN)
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "a training forward needs an rng");
	if ((st = check_batch(m, n, pass, err)) != NN_OK)
		return st;
	return forward(m, out, x, n, first, upto, pass, NULL, err);
}

const float *
nn_model_logits(const nn_model *m)
{
	return output_layer(m)->logits;
}

/* Inference on n rows. */
nn_status
nn_model_predict(nn_model *m, float *out, const float *x, int32_t n,
				 nn_error *err)
{
	nn_status	st;
	const float *y;

	if ((st = nn_model_forward(m, &y, x, n, err)) != NN_OK)
		return st;
	memcpy(out, y, sizeof(float) * nn_model_output_size(m) * n);
	return NN_OK;
}

/* Set optimizer, loss and class weights; keeps state of the same optimizer. */
nn_status
nn_model_set_training(nn_model *m, const nn_optimizer_spec *opt,
					  nn_loss_kind loss, const float *class_weights,
					  int32_t n_class_weights, nn_error *err)
{
	nn_status	st;
	int32_t		ns;
	const nn_alloc *a = &m->alloc;

	if ((st = nn_quant_refuse(m, "trained",
							  "Train the float version of the model, then quantize it again.",
							  err)) != NN_OK)
		return st;
	if ((st = nn_optimizer_spec_check(opt, err)) != NN_OK)
		return st;
	if (loss < 1 || loss > NN_LOSS_MAX)
		return nn_fail(err, NN_ERR_SPEC, -1, "unrecognized loss %d", (int) loss);
	if (n_class_weights < 0 || (n_class_weights > 0 && class_weights == NULL))
		return nn_fail(err, NN_ERR_SPEC, -1, "invalid class weights");
	for (int32_t i = 0; i < n_class_weights; i++)
		if (!(class_weights[i] >= 0.0f) || !isfinite(class_weights[i]))
			return nn_fail(err, NN_ERR_SPEC, -1,
						   "class weight %d must be a non-negative number", i);

	if (m->grads == NULL)
	{
		m->grads = nn_alloc_bytes(a, sizeof(float) * m->n_params);
		if (m->grads == NULL)
			return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		memset(m->grads, 0, sizeof(float) * m->n_params);
	}
	ns = nn_optimizer_slots(opt->kind);
	if (!m->training_set || m->opt.kind != opt->kind || m->n_slots != ns)
	{
		nn_free_bytes(a, m->slots[0]);
		nn_free_bytes(a, m->slots[1]);
		m->slots[0] = m->slots[1] = NULL;
		m->n_slots = 0;
		m->step = 0;
		for (int32_t i = 0; i < ns; i++)
		{
			float		init = opt->kind == NN_OPT_ADAGRAD ?
				opt->initial_accumulator : 0.0f;

			m->slots[i] = nn_alloc_bytes(a, sizeof(float) * m->n_train);
			if (m->slots[i] == NULL)
				return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
			for (int64_t j = 0; j < m->n_train; j++)
				m->slots[i][j] = init;
		}
		m->n_slots = ns;
	}
	nn_free_bytes(a, m->class_weights);
	m->class_weights = NULL;
	m->n_class_weights = 0;
	if (n_class_weights > 0)
	{
		m->class_weights = nn_alloc_bytes(a, sizeof(float) * n_class_weights);
		if (m->class_weights == NULL)
			return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		memcpy(m->class_weights, class_weights, sizeof(float) * n_class_weights);
		m->n_class_weights = n_class_weights;
	}
	m->opt = *opt;
	m->loss = loss;
	m->training_set = true;
	return NN_OK;
}

/*
 * Free what only training needs: the gradient vector, the optimizer slots,
 * class weights and the teacher's scratch.  A model kept for prediction holds its weights and
 * statistics only (an Adam model a quarter of its trained size).  A later
 * nn_model_set_training allocates them again, with fresh optimizer state.
 */
void
nn_model_release_training(nn_model *m)
{
	const nn_alloc *a = &m->alloc;

	nn_free_bytes(a, m->grads);
	nn_free_bytes(a, m->slots[0]);
	nn_free_bytes(a, m->slots[1]);
	nn_free_bytes(a, m->class_weights);
	m->grads = m->slots[0] = m->slots[1] = m->class_weights = NULL;
	m->n_slots = 0;
	m->n_class_weights = 0;
	m->step = 0;
	m->lr_scale = 1.0f;
	m->training_set = false;
	nn_free_bytes(a, m->distill_buf);
	m->distill_buf = NULL;
	m->teacher = NULL;
}

/* Forget optimizer state: the next set_training starts afresh. */
void
nn_model_reset_optimizer(nn_model *m)
{
	m->step = 0;
	m->lr_scale = 1.0f;
	for (int32_t i = 0; i < m->n_slots; i++)
	{
		float		init = m->opt.kind == NN_OPT_ADAGRAD ?
			m->opt.initial_accumulator : 0.0f;

		for (int64_t j = 0; j < m->n_train; j++)
			m->slots[i][j] = init;
	}
}

/* The first layer with trainable parameters, or n_layers. */
static int
first_trainable(const nn_model *m)
{
	for (int i = 0; i < m->n_layers; i++)
		if (m->layers[i].t_off >= 0)
			return i;
	return m->n_layers;
}

/*
 * Backward through layers [first, n_layers) after a forward of the same
 * rows from layer first.  dy (n, out_size) is the gradient w.r.t. the
 * output, or w.r.t. the output layer's pre-activation when fused; it is
 * overwritten.  dx_out (n, layers[first].in_size) receives the input
 * gradient unless NULL; without it the pass stops at the first trainable
 * layer, since nothing below needs input gradients.
 */
static void
backward(nn_model *m, float *dx_out, float *dy, int32_t n, int first,
		 bool fused)
{
	nn_layer   *last = output_layer(m);
	int			ft = first_trainable(m);

	for (int i = m->n_layers - 1; i >= first; i--)
	{
		nn_layer   *l = &m->layers[i];
		bool		need_dx = dx_out != NULL || i > ft;
		float	   *dx = NULL;

		if (!need_dx && i < ft)
			break;
		if (l->y == l->x)		/* identity: the gradient passes through */
		{
			if (i == first && dx_out)
				memcpy(dx_out, dy, sizeof(float) * l->in_size * n);
			continue;
		}
		if (need_dx)
			dx = i == first ? dx_out :
				(dy == m->dbuf[0] ? m->dbuf[1] : m->dbuf[0]);
		nn_layer_backward(m, l, dx, dy, n, fused && l == last);
		dy = dx;
	}
}

/* Forward, loss and backward of a batch; gradients into m->grads. */
nn_status
nn_model_compute_gradients(nn_model *m, float *dx_out, const float *x,
						   const float *y, int32_t n, nn_rng *rng,
						   double *loss_sum, int64_t *correct, nn_error *err)
{
	nn_status	st;
	nn_layer   *last = output_layer(m);
	nn_activation oact = nn_model_output_activation(m);
	bool		fused;
	double		batch_loss = 0.0;

	if (!m->training_set)
		return nn_fail(err, NN_ERR_INTERNAL, -1, "training is not configured");
	if ((st = check_batch(m, n, NN_PASS_TRAIN, err)) != NN_OK)
		return st;
	fused = nn_loss_fused(m->loss, oact);

	{
		const float *unused;

		if ((st = forward(m, &unused, x, n, 0, m->n_layers, NN_PASS_TRAIN, rng,
						  err)) != NN_OK)
			return st;
	}
	{
		nn_loss_batch lb = {
			.y = last->y, .logits = last->logits, .t = y, .n = n,
			.k = last->out_size, .class_weights = m->class_weights,
			.n_cw = m->n_class_weights, .out_act = oact, .loss = m->loss
		};

		st = nn_loss_compute(m->dloss, &batch_loss, correct, &lb, err);
	}
	if (st == NN_OK && m->teacher)
		st = nn_distill_batch(m, x, n, &batch_loss, err);
	if (st != NN_OK)
	{
		if (st == NN_ERR_NUMERIC)
			nn_detail(err, "Lower the learning rate or rescale the inputs.");
		return st;
	}

	backward(m, dx_out, m->dloss, n, 0, fused);
	m->penalty = nn_penalty_grads(m);
	for (int64_t i = 0; i < m->n_params; i++)
		if (!isfinite(m->grads[i]))
		{
			nn_fail(err, NN_ERR_NUMERIC, -1, "gradient is not finite");
			nn_detail(err, "Lower the learning rate or rescale the inputs.");
			return NN_ERR_NUMERIC;
		}
	*loss_sum += batch_loss + m->penalty * n;
	return NN_OK;
}

/*
 * After a DIFF forward of n rows from layer first: dx (n, layers[first].
 * in_size) from dy (n, out_size), the gradient w.r.t. the output after its
 * activation, which is overwritten.  No parameter gradients.
 */
void
nn_model_diff_backward(nn_model *m, float *dx, float *dy, int32_t n,
					   int first)
{
	if (first == m->n_layers)	/* no layers: the output is the input */
		memcpy(dx, dy, sizeof(float) * nn_model_output_size(m) * n);
	else
		backward(m, dx, dy, n, first, false);
}

/* Predictions and the input gradient of sum(dout * predictions). */
nn_status
nn_model_input_gradient(nn_model *m, float *dx, float *out, const float *x,
						const float *dout, int32_t n, nn_error *err)
{
	size_t		k = nn_model_output_size(m);
	const float *y;
	nn_status	st;

	if ((st = nn_quant_refuse(m, "differentiated",
							  "Differentiate the float version of the model.",
							  err)) != NN_OK)
		return st;
	st = nn_model_forward_layers(m, &y, x, n, 0, m->n_layers, NN_PASS_DIFF,
								 err);
	if (st != NN_OK)
		return st;
	if (out)
		memcpy(out, y, sizeof(float) * k * n);
	memcpy(m->dloss, dout, sizeof(float) * k * n);
	nn_model_diff_backward(m, dx, m->dloss, n, 0);
	return NN_OK;
}

/* One optimizer step on the last computed gradients. */
nn_status
nn_model_apply_gradients(nn_model *m, nn_error *err)
{
	if (!m->training_set)
		return nn_fail(err, NN_ERR_INTERNAL, -1, "training is not configured");
	if (!nn_optimizer_step(m))
	{
		nn_fail(err, NN_ERR_NUMERIC, -1, "weights are not finite after the update");
		nn_detail(err, "Lower the learning rate or clip the gradients.");
		return NN_ERR_NUMERIC;
	}
	return NN_OK;
}

/* One training step on a mini-batch. */
nn_status
nn_model_train_batch(nn_model *m, const float *x, const float *y, int32_t n,
					 nn_rng *rng, double *loss_sum, int64_t *correct,
					 nn_error *err)
{
	nn_status	st;

	st = nn_model_compute_gradients(m, NULL, x, y, n, rng, loss_sum, correct,
									err);
	if (st != NN_OK)
		return st;
	return nn_model_apply_gradients(m, err);
}

/* Loss and accuracy of a batch, without training. */
nn_status
nn_model_evaluate_batch(nn_model *m, float *pred_out, const float *x,
						const float *y, int32_t n, nn_loss_kind loss,
						const float *class_weights, int32_t n_class_weights,
						double *loss_sum, int64_t *correct, nn_error *err)
{
	nn_status	st;
	nn_layer   *last = output_layer(m);
	const float *out;

	if ((st = check_batch(m, n, NN_PASS_PREDICT, err)) != NN_OK)
		return st;
	if (loss < 1 || loss > NN_LOSS_MAX)
		return nn_fail(err, NN_ERR_SPEC, -1, "unrecognized loss %d", (int) loss);
	if ((st = forward(m, &out, x, n, 0, m->n_layers, NN_PASS_PREDICT, NULL,
					  err)) != NN_OK)
		return st;
	{
		nn_loss_batch lb = {
			.y = out, .logits = last->logits, .t = y, .n = n,
			.k = last->out_size, .class_weights = class_weights,
			.n_cw = n_class_weights,
			.out_act = nn_model_output_activation(m), .loss = loss
		};

		st = nn_loss_compute(NULL, loss_sum, correct, &lb, err);
	}
	if (st != NN_OK)
		return st;
	if (pred_out)
		memcpy(pred_out, out, sizeof(float) * last->out_size * n);
	return NN_OK;
}

float
nn_model_current_lr(const nn_model *m)
{
	return nn_schedule_lr(&m->opt, m->step) * m->lr_scale;
}

void
nn_model_scale_lr(nn_model *m, float factor)
{
	m->lr_scale *= factor;
}

int64_t
nn_model_step_count(const nn_model *m)
{
	return m->step;
}

nn_loss_kind
nn_model_loss(const nn_model *m)
{
	return m->loss;
}

/* ---------- normalize adaptation ---------- */

/* The first layer whose statistics still come from the data, or -1. */
static int
pending_adapt(const nn_model *m)
{
	for (int i = 0; i < m->n_layers; i++)
		if ((m->layers[i].type->flags & NN_KIND_ADAPTS) &&
			!m->layers[i].spec.adapted)
			return i;
	return -1;
}

bool
nn_model_needs_adapt(const nn_model *m)
{
	return pending_adapt(m) >= 0;
}

/*
 * Accumulate per-channel statistics for the first normalize layer not yet
 * adapted, from its input (the rows forwarded through earlier layers).
 * Several normalize layers adapt one pass over the data each.
 */
nn_status
nn_model_adapt_batch(nn_model *m, const float *x, int32_t n, nn_error *err)
{
	int			i = pending_adapt(m);
	nn_layer   *l;
	const float *in;
	nn_status	st;

	if (i < 0)
		return NN_OK;
	if ((st = check_batch(m, n, NN_PASS_PREDICT, err)) != NN_OK)
		return st;
	l = &m->layers[i];
	if (l->acc == NULL)
	{
		l->acc = nn_alloc_bytes(&m->alloc, sizeof(double) * 3 * l->channels);
		if (l->acc == NULL)
			return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		memset(l->acc, 0, sizeof(double) * 3 * l->channels);
		l->acc_n = 0;
	}
	if ((st = forward(m, &in, x, n, 0, i, NN_PASS_PREDICT, NULL, err)) != NN_OK)
		return st;
	nn_normalize_accumulate(l, in, n);
	return NN_OK;
}

/* Freeze the statistics of the layer being adapted. */
nn_status
nn_model_adapt_finish(nn_model *m, nn_error *err)
{
	int			i = pending_adapt(m);

	if (i < 0)
		return NN_OK;
	return nn_normalize_finish(m, &m->layers[i], err);
}
