/*
 * serialize.c: model bytes.  The format is documented in
 * doc/model-format.md; in short, little-endian throughout:
 *
 *   header   magic "NNPGMODL", u32 format version, u32 flags, u64 total length
 *   spec     u32 input rank, 3 x i32 input shape, u32 layer count,
 *            per layer a record: u32 kind, then the option rows of the
 *            layer table (layer.c) that the format version has, in order
 *            (88 bytes, 108 in version 2, 164 in version 3)
 *   tensors  u32 count; per tensor u32 layer, u32 role, u32 rank,
 *            4 x u32 dims, then its float32 values
 *            (version 4, int8 models: an int8 kernel is its bytes, then
 *            its per-channel scales and its input's scale and zero point)
 *   optimizer (flag bit 0) settings, loss, step, lr scale, class weights,
 *            then the slot vectors as tensors
 *   trailer  u32 CRC-32C of every byte before it
 *
 * The reader checks the magic, version, length and checksum first, then
 * every count and shape against the spec rebuilt from the bytes and against
 * the bytes remaining, before it allocates anything; every float must be
 * finite.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn_internal.h"

#define NN_MAGIC		"NNPGMODL"
/*
 * Version 1: the layers up to normalize.  Version 2 adds the batchnorm,
 * embedding, global pool and recurrent layers, their options and the
 * recurrent-kernel tensor role.  Version 3 adds the augmentation layers
 * (augment.c) and their options, among them two value types: a choice
 * (one u32, the index of its name) and a range (two f32, lower then
 * upper; an absent range is two quiet NaNs, 0x7FC00000).  Kinds and
 * options carry the version that added them; a model is written in the
 * lowest version that holds it (so version 1 and 2 models keep their
 * bytes), and the loader insists on that version (canonical form).
 * Version 4 is that of int8 models (quantize.c): their dense and conv2d
 * kernels are int8 bytes with per-channel scales (roles 8 and 9), and a
 * calibrated model's layers have their input's quantization (role 10).
 */
#define NN_FORMAT_VERSION 4
/* The one NaN bit pattern of an absent range. */
#define CANONICAL_NAN	0x7FC00000u
#define FLAG_OPTIMIZER	1u
#define HEADER_BYTES	24
#define TENSOR_HEAD		(7 * 4)

enum tensor_role
{
	ROLE_KERNEL = 0,
	ROLE_BIAS,
	ROLE_MEAN,
	ROLE_VARIANCE,
	ROLE_SLOT,
	ROLE_RECURRENT,				/* version 2 */
	ROLE_SPARSE_KERNEL,			/* version 3: a pruned model's kernel, */
	ROLE_SPARSE_RECURRENT,		/* and recurrent kernel */
	ROLE_INT8_KERNEL,			/* version 4: (F, K) int8, padded to 4 */
	ROLE_INT8_SCALE,			/* (F) per-channel scales */
	ROLE_INT8_INPUT				/* the input's f32 scale, u32 zero point */
};

/* Bytes of an int8 kernel of n values: padded to a whole u32. */
#define INT8_BYTES(n) (((size_t) (n) + 3) / 4 * 4)

/* A pruned tensor's bitmap: u32 words, bit j of word i for value 32 i + j. */
#define BITMAP_WORDS(n) (((size_t) (n) + 31) / 32)

/* u32 fields an option row takes in a layer record. */
static size_t
option_fields(const nn_option *o)
{
	return o->type == NN_VAL_PAIR || o->type == NN_VAL_RANGE ? 2 :
		o->type == NN_VAL_SHAPE ? 1 + NN_MAX_RANK : 1;
}

/* Bytes of one layer record in a format version: the kind, then the rows. */
static size_t
layer_record(uint32_t version)
{
	size_t		n = 1;

	for (int i = 0; i < NN_OPTION_COUNT; i++)
		if (nn_options[i].since <= version)
			n += option_fields(&nn_options[i]);
	return n * 4;
}

/* The format version a model is written in: the lowest that holds it. */
static uint32_t
model_version(const nn_model *m)
{
	uint32_t	v = m->qlayers ? 4 : m->mask ? 3 : 1;	/* int8, sparse */

	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];

		v = l->type->since > v ? l->type->since : v;
		for (int32_t j = 0; j < l->type->n_options; j++)
		{
			const nn_option *o = l->type->options[j].option;

			if (o->since > v && !nn_option_is_unset(&l->spec, o))
				v = o->since;
		}
	}
	return v;
}

/* Kept weights of a pruned tensor. */
static int64_t
kept_count(const nn_model *m, int64_t off, int64_t n)
{
	int64_t		k = 0;

	for (int64_t i = 0; i < n; i++)
		k += nn_mask_kept(m->mask, off + i);
	return k;
}

/* Bytes after the head of a sparse tensor: bitmap, kept values. */
static size_t
sparse_body(const nn_model *m, int64_t off, int64_t n)
{
	return n > 0 ? 4 * BITMAP_WORDS(n) + 4 * (size_t) kept_count(m, off, n) : 0;
}

/* ---------- little-endian writer ---------- */

typedef struct writer
{
	uint8_t    *p;
} writer;

static void
put_u32(writer *w, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		*w->p++ = (uint8_t) (v >> (8 * i));
}

static void
put_u64(writer *w, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		*w->p++ = (uint8_t) (v >> (8 * i));
}

static void
put_f32(writer *w, float f)
{
	uint32_t	v;

	memcpy(&v, &f, 4);
	put_u32(w, v);
}

static void
put_tensor(writer *w, uint32_t layer, uint32_t role, const float *data,
		   int64_t n)
{
	put_u32(w, layer);
	put_u32(w, role);
	put_u32(w, 1);
	put_u32(w, (uint32_t) n);
	put_u32(w, 0);
	put_u32(w, 0);
	put_u32(w, 0);
	for (int64_t i = 0; i < n; i++)
		put_f32(w, data[i]);
}

/*
 * A pruned tensor: the head (dims[1] = kept values), the bitmap of kept
 * values, then those values in order.
 */
static void
put_sparse(writer *w, uint32_t layer, uint32_t role, const nn_model *m,
		   int64_t off, int64_t n)
{
	uint32_t	head[7] = {layer, role, 1, (uint32_t) n,
	(uint32_t) kept_count(m, off, n), 0, 0};

	for (int i = 0; i < 7; i++)
		put_u32(w, head[i]);
	for (size_t wd = 0; wd < BITMAP_WORDS(n); wd++)
	{
		uint32_t	bits = 0;

		for (int64_t j = 0; j < 32 && (int64_t) wd * 32 + j < n; j++)
			bits |= (uint32_t) nn_mask_kept(m->mask, off + (int64_t) wd * 32 + j) << j;
		put_u32(w, bits);
	}
	for (int64_t i = 0; i < n; i++)
		if (nn_mask_kept(m->mask, off + i))
			put_f32(w, m->params[off + i]);
}

/* ---------- bounds-checked reader ---------- */

typedef struct reader
{
	const uint8_t *p;
	const uint8_t *end;
	bool		ok;
} reader;

static bool
need(reader *r, size_t n)
{
	if (!r->ok || (size_t) (r->end - r->p) < n)
		r->ok = false;
	return r->ok;
}

static uint32_t
get_u32(reader *r)
{
	uint32_t	v = 0;

	if (!need(r, 4))
		return 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t) r->p[i] << (8 * i);
	r->p += 4;
	return v;
}

static uint64_t
get_u64(reader *r)
{
	uint64_t	v = 0;

	if (!need(r, 8))
		return 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t) r->p[i] << (8 * i);
	r->p += 8;
	return v;
}

static float
get_f32(reader *r)
{
	uint32_t	v = get_u32(r);
	float		f;

	memcpy(&f, &v, 4);
	return f;
}

/* ---------- layout ---------- */

/* Tensors written: kernels and biases, normalize statistics. */
static uint32_t
tensor_count(const nn_model *m)
{
	uint32_t	n = 0;

	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];

		n += (l->w_len > 0) + (l->r_len > 0) + (l->b_len > 0) +
			(nn_layer_has_state(l->spec.kind) ? 2 : 0);
		if (l->q)
			n += 1 + l->q->acts;	/* scales, the input's parameters */
	}
	return n;
}

/* Bytes of the spec part: input shape and layer records. */
static size_t
spec_size(const nn_model *m)
{
	return 4 + 12 + 4 + (size_t) m->n_layers * layer_record(model_version(m));
}

/* Bytes needed; with_optimizer only when training state exists. */
size_t
nn_model_serialized_size(const nn_model *m, bool with_optimizer)
{
	size_t		n = HEADER_BYTES + spec_size(m);

	n += 4 + (size_t) tensor_count(m) * TENSOR_HEAD;
	n += ((size_t) m->n_params + (size_t) m->n_state) * 4;
	for (int i = 0; m->mask && i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];

		if (l->type->flags & NN_KIND_PRUNABLE)
			n = n - ((size_t) l->w_len + l->r_len) * 4 +
				sparse_body(m, l->w_off, l->w_len) +
				sparse_body(m, l->r_off, l->r_len);
	}
	for (int i = 0; m->qlayers && i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];

		/* the float kernel is not among the parameters */
		if (l->q)
			n += INT8_BYTES(l->w_len) + 4 * (size_t) l->q->w.out +
				(l->q->acts ? 8 : 0);
	}
	if (with_optimizer && m->training_set)
	{
		/* kind, 10 floats, schedule, rate, steps, loss, lr scale, step */
		n += 4 + 10 * 4 + 4 + 4 + 8 + 4 + 4 + 8;
		n += 4 + (size_t) m->n_class_weights * 4;
		n += 4 + (size_t) m->n_slots * (TENSOR_HEAD + (size_t) m->n_train * 4);
	}
	return n + 4;
}

/*
 * The value an option row has in a layer's record: the layer's own when
 * its kind takes the option and it applies, else the row's unset value, so
 * that every model has one byte form and the loader can insist on it.
 */
static void
put_option(writer *w, const nn_layer *l, const nn_option *o)
{
	nn_layer_spec *s = (nn_layer_spec *) &l->spec;
	bool		own = nn_layer_takes(l->type, o) && nn_option_applies(s, o);
	const int32_t *v = nn_option_ints(s, o);
	int32_t		rank = o->type == NN_VAL_SHAPE ? (int32_t) nn_option_get(s, o) : 0;

	switch (o->type)
	{
		case NN_VAL_PAIR:
			for (int i = 0; i < 2; i++)
				put_u32(w, (uint32_t) (own ? v[i] : (int32_t) o->unset));
			break;
		case NN_VAL_SHAPE:
			put_u32(w, (uint32_t) (own ? rank : (int32_t) o->unset));
			for (int i = 0; i < NN_MAX_RANK; i++)
				put_u32(w, (uint32_t) (own && i < rank ? v[i] : 0));
			break;
		case NN_VAL_FLOAT:
			put_f32(w, (float) (own ? nn_option_get(s, o) : o->unset));
			break;
		case NN_VAL_RANGE:
			for (int i = 0; i < 2; i++)
			{
				if (own && nn_option_absent(s, o))
					put_u32(w, CANONICAL_NAN);
				else
					put_f32(w, own ? nn_option_floats(s, o)[i] : (float) o->unset);
			}
			break;
		default:
			put_u32(w, (uint32_t) (int32_t) (own ? nn_option_get(s, o) :
											  o->unset));
			break;
	}
}

/* A layer record: the kind, then the rows the format version has. */
static void
put_layer(writer *w, const nn_layer *l, uint32_t version)
{
	put_u32(w, (uint32_t) l->spec.kind);
	for (int i = 0; i < NN_OPTION_COUNT; i++)
		if (nn_options[i].since <= version)
			put_option(w, l, &nn_options[i]);
}

/* Input shape and layer records (the spec part after the header). */
static void
put_spec(writer *w, const nn_model *m)
{
	uint32_t	version = model_version(m);

	put_u32(w, (uint32_t) m->spec.input_rank);
	for (int i = 0; i < NN_MAX_RANK; i++)
		put_u32(w, (uint32_t) (i < m->spec.input_rank ? m->spec.input_shape[i] : 0));
	put_u32(w, (uint32_t) m->n_layers);
	for (int i = 0; i < m->n_layers; i++)
		put_layer(w, &m->layers[i], version);
}

/* The loader refuses non-finite values: say so now, not at the next load. */
static nn_status
check_finite(const nn_model *m, bool opt, nn_error *err)
{
	for (int64_t i = 0; i < m->n_params; i++)
		if (!isfinite(m->params[i]))
			return nn_fail(err, NN_ERR_NUMERIC, -1,
						   "cannot save a model whose weights are not finite");
	for (int64_t i = 0; i < m->n_state; i++)
		if (!isfinite(m->state[i]))
			return nn_fail(err, NN_ERR_NUMERIC, -1,
						   "cannot save a model whose normalize statistics are not finite");
	for (int32_t s = 0; opt && s < m->n_slots; s++)
		for (int64_t i = 0; i < m->n_train; i++)
			if (!isfinite(m->slots[s][i]))
				return nn_fail(err, NN_ERR_NUMERIC, -1,
							   "cannot save optimizer state that is not finite");
	return NN_OK;
}

/* An int8 layer's kernel (F, K), scales and input quantization. */
static void
put_int8(writer *w, uint32_t layer, const nn_qlayer *q)
{
	const nn_qweights *qw = &q->w;
	uint32_t	head[7] = {layer, ROLE_INT8_KERNEL, 2, (uint32_t) qw->out,
	(uint32_t) qw->in, 0, 0};
	size_t		n = (size_t) qw->out * qw->in;

	for (int i = 0; i < 7; i++)
		put_u32(w, head[i]);
	for (int32_t o = 0; o < qw->out; o++)
		for (int32_t k = 0; k < qw->in; k++)
			*w->p++ = (uint8_t) nn_quant_weight(qw, o, k);
	for (size_t i = n; i < INT8_BYTES(n); i++)
		*w->p++ = 0;
	put_tensor(w, layer, ROLE_INT8_SCALE, qw->scale, qw->out);
	if (q->acts)
	{
		uint32_t	ahead[7] = {layer, ROLE_INT8_INPUT, 1, 2, 0, 0, 0};

		for (int i = 0; i < 7; i++)
			put_u32(w, ahead[i]);
		put_f32(w, q->act.scale);
		put_u32(w, (uint32_t) q->act.zero);
	}
}

/* Every layer's kernels, biases and statistics, in order. */
static void
put_tensors(writer *w, const nn_model *m)
{
	put_u32(w, tensor_count(m));
	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];

		bool		sparse = m->mask && (l->type->flags & NN_KIND_PRUNABLE);

		if (l->q)
			put_int8(w, i, l->q);
		else if (l->w_len > 0 && sparse)
			put_sparse(w, i, ROLE_SPARSE_KERNEL, m, l->w_off, l->w_len);
		else if (l->w_len > 0)
			put_tensor(w, i, ROLE_KERNEL, m->params + l->w_off, l->w_len);
		if (l->r_len > 0 && sparse)
			put_sparse(w, i, ROLE_SPARSE_RECURRENT, m, l->r_off, l->r_len);
		else if (l->r_len > 0)
			put_tensor(w, i, ROLE_RECURRENT, m->params + l->r_off, l->r_len);
		if (l->b_len > 0)
			put_tensor(w, i, ROLE_BIAS, m->params + l->b_off, l->b_len);
		if (nn_layer_has_state(l->spec.kind))
		{
			put_tensor(w, i, ROLE_MEAN, m->state + l->s_off, l->channels);
			put_tensor(w, i, ROLE_VARIANCE, m->state + l->s_off + l->channels,
					   l->channels);
		}
	}
}

/* Optimizer settings, loss, step, class weights, then the slots. */
static void
put_optimizer(writer *w, const nn_model *m)
{
	const nn_optimizer_spec *o = &m->opt;

	put_u32(w, (uint32_t) o->kind);
	put_f32(w, o->learning_rate);
	put_f32(w, o->momentum);
	put_f32(w, o->beta1);
	put_f32(w, o->beta2);
	put_f32(w, o->epsilon);
	put_f32(w, o->rho);
	put_f32(w, o->weight_decay);
	put_f32(w, o->initial_accumulator);
	put_f32(w, o->clipnorm);
	put_f32(w, o->clipvalue);
	put_u32(w, (uint32_t) o->schedule);
	put_f32(w, o->decay_rate);
	put_u64(w, (uint64_t) o->decay_steps);
	put_u32(w, (uint32_t) m->loss);
	put_f32(w, m->lr_scale);
	put_u64(w, (uint64_t) m->step);
	put_u32(w, (uint32_t) m->n_class_weights);
	for (int32_t i = 0; i < m->n_class_weights; i++)
		put_f32(w, m->class_weights[i]);
	put_u32(w, (uint32_t) m->n_slots);
	for (int32_t i = 0; i < m->n_slots; i++)
		put_tensor(w, (uint32_t) i, ROLE_SLOT, m->slots[i], m->n_train);
}

/* Serialize into buf; len must be nn_model_serialized_size(). */
nn_status
nn_model_serialize(const nn_model *m, uint8_t *buf, size_t len,
				   bool with_optimizer, nn_crc32c_fn crc, nn_error *err)
{
	writer		w = {buf};
	bool		opt = with_optimizer && m->training_set;
	size_t		need_len = nn_model_serialized_size(m, with_optimizer);
	nn_status	st;

	if (len < need_len)
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "serialization buffer of %zu bytes is too small for %zu",
					   len, need_len);
	if ((st = check_finite(m, opt, err)) != NN_OK)
		return st;
	memcpy(w.p, NN_MAGIC, 8);
	w.p += 8;
	put_u32(&w, model_version(m));
	put_u32(&w, opt ? FLAG_OPTIMIZER : 0);
	put_u64(&w, need_len);
	put_spec(&w, m);
	put_tensors(&w, m);
	if (opt)
		put_optimizer(&w, m);
	put_u32(&w, crc(0xFFFFFFFFu, buf, (size_t) (w.p - buf)) ^ 0xFFFFFFFFu);
	if ((size_t) (w.p - buf) != need_len)
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "serialized %zu bytes, expected %zu",
					   (size_t) (w.p - buf), need_len);
	return NN_OK;
}

#define CORRUPT(...) nn_fail(err, NN_ERR_CORRUPT, -1, __VA_ARGS__)

/* Read one float block of a tensor whose head must match the expectation. */
static bool
get_tensor(reader *r, uint32_t layer, uint32_t role, float *dst, int64_t n)
{
	uint32_t	h[7];

	for (int i = 0; i < 7; i++)
		h[i] = get_u32(r);
	if (!r->ok || h[0] != layer || h[1] != role || h[2] != 1 ||
		(int64_t) h[3] != n || h[4] || h[5] || h[6])
		return false;
	if (!need(r, (size_t) n * 4))
		return false;
	for (int64_t i = 0; i < n; i++)
	{
		dst[i] = get_f32(r);
		if (!isfinite(dst[i]))
			return false;
	}
	return true;
}

/*
 * Read a pruned tensor into the model's parameters and mask: the bitmap's
 * padding bits are 0, it has as many bits set as the head says, and the
 * kept values are finite.
 */
static bool
get_sparse(reader *r, uint32_t layer, uint32_t role, nn_model *m,
		   int64_t off, int64_t n)
{
	uint32_t	h[7];
	int64_t		kept = 0;

	for (int i = 0; i < 7; i++)
		h[i] = get_u32(r);
	if (!r->ok || h[0] != layer || h[1] != role || h[2] != 1 ||
		(int64_t) h[3] != n || (int64_t) h[4] > n || h[5] || h[6] ||
		!need(r, 4 * BITMAP_WORDS(n) + 4 * (size_t) h[4]))
		return false;
	for (size_t wd = 0; wd < BITMAP_WORDS(n); wd++)
	{
		uint32_t	bits = get_u32(r);

		for (int64_t j = 0; j < 32; j++)
		{
			int64_t		i = (int64_t) wd * 32 + j;

			if (i >= n)
			{
				if ((bits >> j) & 1)
					return false;	/* padding */
				continue;
			}
			if ((bits >> j) & 1)
				kept++;
			else
				m->mask[(off + i) >> 3] &= (uint8_t) ~(1u << ((off + i) & 7));
		}
	}
	if (kept != (int64_t) h[4])
		return false;
	for (int64_t i = 0; i < n; i++)
	{
		m->params[off + i] = nn_mask_kept(m->mask, off + i) ? get_f32(r) : 0.0f;
		if (!isfinite(m->params[off + i]))
			return false;
	}
	return true;
}

/* The role of the tensor whose head r is at (or ~0u past the end). */
static uint32_t
peek_role(const reader *r)
{
	const uint8_t *p = r->p + 4;

	if (!r->ok || r->end - r->p < TENSOR_HEAD)
		return ~0u;
	return p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
		(uint32_t) p[3] << 24;
}

/* A tensor head: layer, role, rank, then four dimensions. */
static bool
get_head(reader *r, const uint32_t want[7])
{
	bool		same = true;

	for (int i = 0; i < 7; i++)
		same &= get_u32(r) == want[i];
	return r->ok && same;
}

/*
 * An int8 kernel q (F, K) and its scales: no -128 (the range is
 * symmetric), zero padding, and scale[f] finite, >= 0, and 0 exactly for
 * a channel of zeros.
 */
static bool
get_int8_kernel(reader *r, uint32_t layer, int8_t *q, float *scale,
				int32_t out, int32_t in)
{
	uint32_t	head[7] = {layer, ROLE_INT8_KERNEL, 2, (uint32_t) out,
	(uint32_t) in, 0, 0};
	size_t		n = (size_t) out * in;

	if (!get_head(r, head) || !need(r, INT8_BYTES(n)))
		return false;
	memcpy(q, r->p, n);
	for (size_t i = n; i < INT8_BYTES(n); i++)
		if (r->p[i] != 0)
			return false;
	r->p += INT8_BYTES(n);
	if (!get_tensor(r, layer, ROLE_INT8_SCALE, scale, out))
		return false;
	for (int32_t o = 0; o < out; o++)
	{
		bool		zeros = true;

		for (int32_t k = 0; k < in; k++)
		{
			if (q[(size_t) o * in + k] == INT8_MIN)
				return false;
			zeros &= q[(size_t) o * in + k] == 0;
		}
		if (!(scale[o] >= 0.0f) || (scale[o] == 0.0f) != zeros)
			return false;
	}
	return true;
}

/* An int8 layer's input quantization: scale finite >= 0, zero 0 to 255
 * (0 when the scale is). */
static bool
get_int8_input(reader *r, uint32_t layer, nn_qparams *act)
{
	uint32_t	head[7] = {layer, ROLE_INT8_INPUT, 1, 2, 0, 0, 0};
	uint32_t	zero;

	if (!get_head(r, head))
		return false;
	act->scale = get_f32(r);
	zero = get_u32(r);
	act->zero = (int32_t) zero;
	return r->ok && isfinite(act->scale) && act->scale >= 0.0f &&
		zero <= 255 && (act->scale > 0.0f || zero == 0);
}

/*
 * The int8 kernel of layer i of a version 4 model, its scales and (all
 * calibrated or none: *form is -1 before the first, then 1 or 0) its
 * input quantization, installed in the model.  The bytes are checked to
 * be there before anything is allocated.
 */
static nn_status
get_int8_layer(reader *r, nn_model *m, int i, int *form, nn_error *err)
{
	nn_layer   *l = &m->layers[i];
	int32_t		out = l->out_shape[l->out_rank - 1],
				in = (int32_t) (l->w_len / out);
	int8_t	   *q;
	float	   *scale;
	nn_qparams	act = {0.0f, 0};
	bool		ok;
	nn_status	st;

	if ((size_t) (r->end - r->p) < INT8_BYTES(l->w_len) + 4 * (size_t) out)
		return CORRUPT("model bytes have a bad tensor in layer %d", i + 1);
	q = nn_alloc_bytes(&m->alloc, (size_t) l->w_len);
	scale = nn_alloc_bytes(&m->alloc, sizeof(float) * out);
	if (q == NULL || scale == NULL)
	{
		nn_free_bytes(&m->alloc, q);
		nn_free_bytes(&m->alloc, scale);
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	}
	ok = get_int8_kernel(r, i, q, scale, out, in);
	if (ok && *form < 0)
		*form = peek_role(r) == ROLE_INT8_INPUT;
	if (ok && *form)
		ok = get_int8_input(r, i, &act);
	st = ok ? nn_quant_set_layer(m, i, q, scale, *form == 1, act, err) :
		CORRUPT("model bytes have a bad tensor in layer %d", i + 1);
	nn_free_bytes(&m->alloc, q);
	nn_free_bytes(&m->alloc, scale);
	return st;
}

/*
 * A layer's kernel and recurrent kernel.  A pruned model's prunable
 * layers have them sparse (its mask allocated when the first is read),
 * and every other model's dense: *form is -1 before the first, then 0
 * (dense) or 1 (sparse), and the others must agree.
 */
static nn_status
get_kernels(reader *r, uint32_t version, nn_model *m, int i, int *form,
			nn_error *err)
{
	nn_layer   *l = &m->layers[i];
	bool		ok;

	if (l->type->flags & NN_KIND_PRUNABLE)
	{
		/* version 4 models have int8 kernels, and no mask */
		int			sparse = version == 3 && peek_role(r) == ROLE_SPARSE_KERNEL;

		if (*form >= 0 && sparse != *form)
			return CORRUPT("model bytes mix sparse and dense kernels (layer %d)",
						   i + 1);
		*form = sparse;
		if (sparse && m->mask == NULL && (m->mask = nn_mask_alloc(m)) == NULL)
			return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	}
	if (m->mask && (l->type->flags & NN_KIND_PRUNABLE))
		ok = get_sparse(r, i, ROLE_SPARSE_KERNEL, m, l->w_off, l->w_len) &&
			(l->r_len == 0 ||
			 get_sparse(r, i, ROLE_SPARSE_RECURRENT, m, l->r_off, l->r_len));
	else
		ok = (l->w_len == 0 ||
			  get_tensor(r, i, ROLE_KERNEL, m->params + l->w_off, l->w_len)) &&
			(l->r_len == 0 ||
			 get_tensor(r, i, ROLE_RECURRENT, m->params + l->r_off, l->r_len));
	return ok ? NN_OK :
		CORRUPT("model bytes have a bad tensor in layer %d", i + 1);
}

/*
 * The header: magic, a version this build reads, the length and the
 * checksum.  Leaves r at the spec part and r->end before the checksum.
 */
static nn_status
read_header(reader *r, const uint8_t *buf, size_t len, nn_crc32c_fn crc,
			uint32_t *version, uint32_t *flags, nn_error *err)
{
	uint64_t	total;
	const uint8_t *cb = buf + len - 4;
	uint32_t	stored_crc;

	if (len < HEADER_BYTES + 4 || memcmp(buf, NN_MAGIC, 8) != 0)
		return CORRUPT("model bytes have no nnpg header");
	r->p += 8;
	*version = get_u32(r);
	*flags = get_u32(r);
	total = get_u64(r);
	if (*version < 1 || *version > NN_FORMAT_VERSION)
	{
		CORRUPT("unsupported model format version %u", *version);
		nn_detail(err, "This build reads format versions 1 to %d.",
				  NN_FORMAT_VERSION);
		return NN_ERR_CORRUPT;
	}
	if (total != len)
		return CORRUPT("model bytes are %zu bytes long, header says %llu",
					   len, (unsigned long long) total);
	stored_crc = cb[0] | (uint32_t) cb[1] << 8 | (uint32_t) cb[2] << 16 |
		(uint32_t) cb[3] << 24;
	if ((crc(0xFFFFFFFFu, buf, len - 4) ^ 0xFFFFFFFFu) != stored_crc)
		return CORRUPT("model bytes fail their checksum");
	if (*flags & ~FLAG_OPTIMIZER)
		return CORRUPT("unrecognized model flags %u", *flags);
	r->end = cb;
	return NN_OK;
}

/* One option row of a layer record into the spec; false for a bad flag. */
static bool
get_option(reader *r, nn_layer_spec *s, const nn_option *o)
{
	int32_t    *v = nn_option_ints(s, o);
	uint32_t	x;

	switch (o->type)
	{
		case NN_VAL_PAIR:
			for (int i = 0; i < 2; i++)
				v[i] = (int32_t) get_u32(r);
			return true;
		case NN_VAL_SHAPE:
			nn_option_set(s, o, (int32_t) get_u32(r));
			for (int i = 0; i < NN_MAX_RANK; i++)
				v[i] = (int32_t) get_u32(r);
			return true;
		case NN_VAL_FLOAT:
			nn_option_set(s, o, get_f32(r));
			return true;
		case NN_VAL_RANGE:
			for (int i = 0; i < 2; i++)
				nn_option_floats(s, o)[i] = get_f32(r);
			return true;
		case NN_VAL_BOOL:
		case NN_VAL_PADDING:
			if ((x = get_u32(r)) > 1)
				return false;
			nn_option_set(s, o, x);
			return true;
		default:
			nn_option_set(s, o, (int32_t) get_u32(r));
			return true;
	}
}

/* One layer record: a kind of the version, then its option rows. */
static nn_status
get_layer(reader *r, uint32_t version, uint32_t i, nn_layer_spec *s,
		  nn_error *err)
{
	const nn_layer_type *t;

	/* rows newer than the version hold their unset values */
	memset(s, 0, sizeof(*s));
	for (int j = 0; j < NN_OPTION_COUNT; j++)
		nn_option_set(s, &nn_options[j], nn_options[j].unset);
	s->kind = (nn_layer_kind) get_u32(r);
	t = nn_layer_type_of(s->kind);
	if (t == NULL || t->since > version)
		return CORRUPT("model bytes have an unrecognized layer type %d in layer %u",
					   (int) s->kind, i + 1);
	for (int j = 0; j < NN_OPTION_COUNT; j++)
		if (nn_options[j].since <= version &&
			!get_option(r, s, &nn_options[j]))
			return CORRUPT("model bytes have a bad \"%s\" flag in layer %u",
						   nn_options[j].name, i + 1);
	return NN_OK;
}

/* The spec part: input shape, layer count and records (into spec). */
static nn_status
read_layers(reader *r, uint32_t version, nn_model_spec *spec,
			const nn_alloc *alloc, nn_error *err)
{
	uint32_t	n_layers;
	nn_status	st;

	memset(spec, 0, sizeof(*spec));
	spec->input_rank = (int32_t) get_u32(r);
	for (int i = 0; i < NN_MAX_RANK; i++)
		spec->input_shape[i] = (int32_t) get_u32(r);
	n_layers = get_u32(r);
	if (!r->ok || n_layers < 1 || n_layers > NN_MAX_LAYERS ||
		!need(r, (size_t) n_layers * layer_record(version)))
		return CORRUPT("model bytes have a bad layer table");
	spec->layers = nn_alloc_bytes(alloc, sizeof(nn_layer_spec) * n_layers);
	if (spec->layers == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	spec->n_layers = (int32_t) n_layers;
	for (uint32_t i = 0; i < n_layers; i++)
		if ((st = get_layer(r, version, i, &spec->layers[i], err)) != NN_OK)
			return st;
	return NN_OK;
}

/*
 * Build the model of the spec read.  The weights the spec implies must be
 * in the bytes before anything is allocated for them: a damaged size
 * cannot make us allocate.  An invalid spec is a corrupt model.
 */
static nn_status
build_model(nn_model **m, const reader *r, uint32_t version,
			const nn_model_spec *spec,
			size_t max_bytes, const nn_alloc *alloc, nn_error *err)
{
	size_t		np,
				ns;
	nn_error	sub;
	nn_status	st;

	/* version 3 kernels may be sparse: a bit each at least */
	if (nn_spec_counts(spec, &np, &ns, &sub) == NN_OK &&
		(size_t) (r->end - r->p) < (version >= 3 ? (np + ns + 7) / 8 : (np + ns) * 4))
		return CORRUPT("model bytes are too short for the %zu weights their layers need",
					   np + ns);
	st = nn_model_build(m, spec, max_bytes, alloc, err);
	if (st == NN_ERR_SPEC)
	{
		nn_detail(err, "Model bytes hold an invalid model: %s.", err->message);
		snprintf(err->message, sizeof(err->message),
				 "model bytes hold an invalid model");
		err->status = st = NN_ERR_CORRUPT;
	}
	return st;
}

/* One byte form per model: options a layer does not use must be unset. */
static nn_status
check_canonical(const nn_model *m, const uint8_t *buf, uint32_t version,
				nn_error *err)
{
	size_t		n = spec_size(m);
	uint8_t    *canon = nn_alloc_bytes(&m->alloc, n);
	writer		cw = {canon};
	bool		same;

	if (canon == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	put_spec(&cw, m);
	same = version == model_version(m) &&
		memcmp(canon, buf + HEADER_BYTES, n) == 0;
	nn_free_bytes(&m->alloc, canon);
	if (!same)
		return CORRUPT("model bytes have a layer record that is not in canonical form");
	return NN_OK;
}

/*
 * The tensor count a float model's spec implies, with in version 4 the
 * int8 layers' scales: their inputs' parameters are known only once the
 * first int8 layer is read, and the count is checked again after.
 */
static uint32_t
tensors_before(const nn_model *m, uint32_t version)
{
	uint32_t	n = tensor_count(m);

	for (int i = 0; version >= 4 && i < m->n_layers; i++)
		n += (m->layers[i].type->flags & NN_KIND_QUANTIZABLE) != 0;
	return n;
}

/* The tensors: every layer's kernels, biases and statistics, in order. */
static nn_status
read_tensors(reader *r, uint32_t version, nn_model *m, nn_error *err)
{
	uint32_t	n_tensors = get_u32(r);
	uint32_t	want = tensors_before(m, version);
	int			form = -1,
				acts = -1;
	nn_status	st;

	/* version 4: the inputs' parameters may add one per int8 layer */
	if (!r->ok || n_tensors < want ||
		n_tensors > want + (want - tensor_count(m)))
		return CORRUPT("model bytes have %u tensors, the model needs %u",
					   n_tensors, want);
	for (int i = 0; i < m->n_layers; i++)
	{
		nn_layer   *l = &m->layers[i];
		bool		ok = true;

		if (version >= 4 && (l->type->flags & NN_KIND_QUANTIZABLE))
			st = get_int8_layer(r, m, i, &acts, err);
		else
			st = get_kernels(r, version, m, i, &form, err);
		if (st != NN_OK)
			return st;
		if (l->b_len > 0)
			ok = get_tensor(r, i, ROLE_BIAS, m->params + l->b_off, l->b_len);
		if (ok && nn_layer_has_state(l->spec.kind))
		{
			float	   *var = m->state + l->s_off + l->channels;

			ok = get_tensor(r, i, ROLE_MEAN, m->state + l->s_off, l->channels) &&
				get_tensor(r, i, ROLE_VARIANCE, var, l->channels);
			for (int32_t c = 0; ok && c < l->channels; c++)
				ok = var[c] >= 0.0f;
		}
		if (!ok)
			return CORRUPT("model bytes have a bad tensor in layer %d", i + 1);
	}
	if (n_tensors != tensor_count(m))
		return CORRUPT("model bytes have %u tensors, the model needs %u",
					   n_tensors, tensor_count(m));
	/* without the float kernels, which were never read */
	return m->qlayers ? nn_quant_finish(m, err) : NN_OK;
}

/* The optimizer settings up to the class weights (into o and m). */
static void
get_optimizer_settings(reader *r, nn_optimizer_spec *o, nn_loss_kind *loss,
					   float *lr_scale, int64_t *step)
{
	o->kind = (nn_optimizer_kind) get_u32(r);
	o->learning_rate = get_f32(r);
	o->momentum = get_f32(r);
	o->beta1 = get_f32(r);
	o->beta2 = get_f32(r);
	o->epsilon = get_f32(r);
	o->rho = get_f32(r);
	o->weight_decay = get_f32(r);
	o->initial_accumulator = get_f32(r);
	o->clipnorm = get_f32(r);
	o->clipvalue = get_f32(r);
	o->schedule = (nn_schedule_kind) get_u32(r);
	o->decay_rate = get_f32(r);
	o->decay_steps = (int64_t) get_u64(r);
	*loss = (nn_loss_kind) get_u32(r);
	*lr_scale = get_f32(r);
	*step = (int64_t) get_u64(r);
}

/* The slot vectors; accumulators of squares cannot be negative. */
static nn_status
read_slots(reader *r, nn_model *m, nn_error *err)
{
	nn_optimizer_kind k = m->opt.kind;
	uint32_t	nslots = get_u32(r);

	if (!r->ok || nslots != (uint32_t) m->n_slots)
		return CORRUPT("model bytes have %u optimizer slots, %s needs %d",
					   nslots, nn_optimizer_name(k), m->n_slots);
	for (uint32_t i = 0; i < nslots; i++)
	{
		bool		squares = (k == NN_OPT_ADAGRAD || k == NN_OPT_RMSPROP) ?
			i == 0 : (k == NN_OPT_ADAM || k == NN_OPT_ADAMW) && i == 1;
		bool		ok = get_tensor(r, i, ROLE_SLOT, m->slots[i], m->n_train);

		for (int64_t j = 0; ok && squares && j < m->n_train; j++)
			ok = m->slots[i][j] >= 0.0f;
		if (!ok)
			return CORRUPT("model bytes have a bad optimizer slot %u", i);
	}
	return NN_OK;
}

/* The optimizer section: settings, loss, step, class weights, slots. */
static nn_status
read_optimizer(reader *r, nn_model *m, nn_error *err)
{
	nn_optimizer_spec o;
	nn_loss_kind loss;
	float		lr_scale;
	int64_t		step;
	uint32_t	ncw;
	float	   *cw = NULL;
	nn_error	sub;
	nn_status	st;

	get_optimizer_settings(r, &o, &loss, &lr_scale, &step);
	ncw = get_u32(r);
	if (!r->ok || step < 0 || !(lr_scale > 0.0f) || !isfinite(lr_scale) ||
		ncw > 65536 || o.kind < 1 || o.kind > NN_OPT_MAX ||
		(size_t) (r->end - r->p) / 4 < ncw + 1 +
		(size_t) nn_optimizer_slots(o.kind) * ((size_t) m->n_train + 7))
		return CORRUPT("model bytes have a bad optimizer state");
	if (ncw > 0 && (cw = nn_alloc_bytes(&m->alloc, sizeof(float) * ncw)) == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	for (uint32_t i = 0; i < ncw; i++)
		cw[i] = get_f32(r);
	st = nn_model_set_training(m, &o, loss, cw, (int32_t) ncw, &sub);
	nn_free_bytes(&m->alloc, cw);
	if (st == NN_ERR_MEMORY)
	{
		*err = sub;
		return st;
	}
	if (st != NN_OK)
		return CORRUPT("model bytes have a bad optimizer state: %s", sub.message);
	if ((st = read_slots(r, m, err)) != NN_OK)
		return st;
	m->step = step;
	m->lr_scale = lr_scale;
	return NN_OK;
}

/* Read the sections after the spec into the built model. */
static nn_status
read_weights(reader *r, nn_model *m, const uint8_t *buf, uint32_t version,
			 uint32_t flags, nn_error *err)
{
	nn_status	st;

	/* the tensors first: a pruned model's mask decides its version */
	if ((st = read_tensors(r, version, m, err)) != NN_OK ||
		(st = check_canonical(m, buf, version, err)) != NN_OK)
		return st;
	if ((flags & FLAG_OPTIMIZER) && m->qlayers)
		return CORRUPT("model bytes of an int8 model have optimizer state");
	if ((flags & FLAG_OPTIMIZER) && (st = read_optimizer(r, m, err)) != NN_OK)
		return st;
	if (!r->ok || r->p != r->end)
		return CORRUPT("model bytes have %s data", r->ok ? "trailing" : "truncated");
	return NN_OK;
}

/*
 * Validate and load model bytes, section by section: header, layers,
 * canonical form, tensors, optimizer state.
 */
nn_status
nn_model_deserialize(nn_model **out, const uint8_t *buf, size_t len,
					 size_t max_bytes, const nn_alloc *alloc, nn_crc32c_fn crc,
					 nn_error *err)
{
	reader		r = {buf, buf + len, true};
	nn_model_spec spec = {0};
	nn_model   *m = NULL;
	uint32_t	version = 0,
				flags = 0;
	nn_status	st;

	*out = NULL;
	if ((st = read_header(&r, buf, len, crc, &version, &flags, err)) != NN_OK)
		return st;
	st = read_layers(&r, version, &spec, alloc, err);
	if (st == NN_OK)
		st = build_model(&m, &r, version, &spec, max_bytes, alloc, err);
	nn_free_bytes(alloc, spec.layers);
	if (st == NN_OK)
		st = read_weights(&r, m, buf, version, flags, err);
	if (st != NN_OK)
	{
		nn_model_free(m);
		return st;
	}
	*out = m;
	return NN_OK;
}
