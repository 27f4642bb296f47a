/*
 * onnx.c: models to and from ONNX (ModelProto, opset 13 to 17).
 *
 * The protobuf code is generated at build time by protoc-c from Debian's
 * onnx.proto (libonnx-dev) into the build folder; every message and buffer
 * here, protobuf-c's own unpacking included, is allocated through the
 * caller's nn_alloc (an arena of it: see ox_arena).
 *
 * Export writes a graph whose input is nn_predict's flat feature vector
 * (N, in_size) and whose output is (N, out_size).  nnpg's tensors are
 * channels last (images (H, W, C), sequences (T, F)); ONNX's Conv, pools
 * and BatchNormalization are channels first and its recurrent operators
 * time-major, so the exporter keeps the running tensor either flat, as
 * nnpg stores it, or as NCHW, and moves between the two with Reshape,
 * Transpose and Flatten only where a layer needs the other.  Dropout,
 * Gaussian noise and the augmentation layers that are the identity in
 * prediction do not appear.
 *
 * Import walks the nodes in order, keeping one "running" tensor: a chain,
 * as Keras's Sequential models and PyTorch's nn.Sequential-like modules
 * export.  Other tensors are constants (initializers, Constant nodes and
 * the small shape computations exporters emit, folded here; the batch
 * size is a symbol in them).  The running tensor's ONNX axes are tracked
 * against nnpg's storage order, so a Transpose costs nothing, and a
 * Flatten of an NCHW tensor becomes a permutation of the next dense
 * layer's kernel rows instead of a data move.  Imported images are read
 * channels last, as every nnpg model reads them.
 *
 * Left out: branches (residual Adds and Concats of running tensors),
 * bidirectional recurrent layers, dilated or grouped convolutions, LSTM
 * peepholes and clipping, GRU with linear_before_reset=0 (Keras's
 * reset_after=False), external tensor data, and normalize and rescale
 * layers on import.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "nn_internal.h"
#include "onnx.pb-c.h"

#define OX_OPSET_MIN	13
#define OX_OPSET_MAX	17
#define OX_OPSET_WRITE	13
#define OX_IR_WRITE		7		/* the IR version of opset 13 */
#define OX_MAX_DIMS		6
/* The batch size inside folded shape tensors: a symbol, not a number. */
#define OX_BATCH		INT64_MIN

/* ---------- arena over the caller's allocator ---------- */

/*
 * Every allocation of an export or an import, protobuf-c's included, is a
 * block of the caller's allocator chained here and freed at the end.  cap
 * (0: none) bounds the bytes an import may unpack, so huge tensors stop
 * with NN_ERR_LIMIT before the model is built.
 */
typedef union ox_block
{
	union ox_block *next;
	max_align_t align;
} ox_block;

typedef struct ox_arena
{
	const nn_alloc *a;
	ox_block   *head;
	size_t		used;
	size_t		cap;
	bool		over;			/* cap reached */
	bool		failed;			/* the allocator returned NULL */
} ox_arena;

/* A block of n bytes, freed with the arena; NULL when refused. */
static void *
ox_alloc(ox_arena *ar, size_t n)
{
	size_t		total;
	ox_block   *b;

	if (!nn_size_add(&total, n, sizeof(ox_block)) ||
		(ar->cap && (ar->used > ar->cap || total > ar->cap - ar->used)))
	{
		ar->over = true;
		return NULL;
	}
	b = nn_alloc_bytes(ar->a, total);
	if (!b)
	{
		ar->failed = true;
		return NULL;
	}
	b->next = ar->head;
	ar->head = b;
	ar->used += total;
	return b + 1;
}

static void
ox_arena_free(ox_arena *ar)
{
	while (ar->head)
	{
		ox_block   *next = ar->head->next;

		nn_free_bytes(ar->a, ar->head);
		ar->head = next;
	}
}

/* protobuf-c's allocator hooks: blocks of the arena, freed with it. */
static void *
ox_pb_alloc(void *ctx, size_t n)
{
	return ox_alloc(ctx, n);
}

static void
ox_pb_free(void *ctx, void *p)
{
	(void) ctx;
	(void) p;
}

static char *
ox_strdup(ox_arena *ar, const char *s)
{
	size_t		n = strlen(s) + 1;
	char	   *p = ox_alloc(ar, n);

	if (p)
		memcpy(p, s, n);
	return p;
}

static nn_status
ox_nomem(ox_arena *ar, nn_error *err)
{
	if (ar->over)
		return nn_fail(err, NN_ERR_LIMIT, -1,
					   "ONNX model needs more than %zu bytes", ar->cap);
	return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
}

/* ---------- format detection ---------- */

/* Read a varint at *p (< end); false when malformed. */
static bool
ox_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7)
	{
		uint8_t		b = *(*p)++;

		*v |= (uint64_t) (b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/*
 * Do the bytes start as an ONNX ModelProto does: ir_version (field 1, a
 * small varint), then another ModelProto field?  nnpg's own bytes start
 * with "NNPGMODL", which is not a valid start of any protobuf message.
 */
bool
nn_bytes_look_onnx(const uint8_t *buf, size_t len)
{
	const uint8_t *p = buf,
			   *end = buf + len;
	uint64_t	v,
				tag;

	if (len < 4 || buf[0] != 0x08)
		return false;
	p++;
	if (!ox_varint(&p, end, &v) || v < 1 || v > 100)
		return false;
	if (p == end || !ox_varint(&p, end, &tag))
		return false;
	/* opset_import 8, producer 2, 3, domain 4, doc 6, graph 7: length
	 * delimited; model_version 5: varint */
	switch (tag >> 3)
	{
		case 2: case 3: case 4: case 6: case 7: case 8: case 14: case 20:
			return (tag & 7) == 2;
		case 5:
			return (tag & 7) == 0;
		default:
			return false;
	}
}

/* ======================================================================
 * export
 * ====================================================================== */

typedef enum ox_layout
{
	OX_FLAT,					/* (N, size): nnpg's storage order */
	OX_NCHW						/* (N, C, H, W) of an nnpg (H, W, C) */
} ox_layout;

typedef struct ox_exp
{
	ox_arena	ar;
	const nn_model *m;
	Onnx__NodeProto **nodes;
	size_t		n_nodes,
				cap_nodes;
	Onnx__TensorProto **inits;
	size_t		n_inits,
				cap_inits;
	const char *cur;			/* the running tensor */
	ox_layout	layout;
	int			next_name;
	bool		oom;
} ox_exp;

/* A fresh tensor name. */
static const char *
ex_name(ox_exp *e, const char *stem)
{
	char		buf[64];

	snprintf(buf, sizeof(buf), "%s_%d", stem, e->next_name++);
	return ox_strdup(&e->ar, buf);
}

/* A zeroed, initialised message of the arena (NULL: out of memory). */
#define EX_NEW(e, type, INIT) ex_new_msg((e), sizeof(type), &(type) INIT)

static void *
ex_new_msg(ox_exp *e, size_t size, const void *init)
{
	void	   *p = ox_alloc(&e->ar, size);

	if (!p)
	{
		e->oom = true;
		return NULL;
	}
	memcpy(p, init, size);
	return p;
}

/* Append a node op(inputs) -> a fresh output, which it returns. */
static Onnx__NodeProto *
ex_node(ox_exp *e, const char *op, int n_in, const char *const *in)
{
	Onnx__NodeProto *n = EX_NEW(e, Onnx__NodeProto, ONNX__NODE_PROTO__INIT);
	char	  **ins = ox_alloc(&e->ar, sizeof(char *) * (n_in + 1));
	char	  **outs = ox_alloc(&e->ar, sizeof(char *) * 4);

	if (!n || !ins || !outs || e->n_nodes == e->cap_nodes)
	{
		e->oom = true;
		return NULL;
	}
	for (int i = 0; i < n_in; i++)
		ins[i] = (char *) in[i];
	n->n_input = n_in;
	n->input = ins;
	n->op_type = (char *) op;
	n->name = (char *) ex_name(e, op);
	outs[0] = (char *) ex_name(e, "t");
	n->n_output = 1;
	n->output = outs;
	n->attribute = ox_alloc(&e->ar, sizeof(void *) * 8);
	if (!n->name || !outs[0] || !n->attribute)
	{
		e->oom = true;
		return NULL;
	}
	e->nodes[e->n_nodes++] = n;
	return n;
}

/* A node on the running tensor (and constants), which it then becomes. */
static Onnx__NodeProto *
ex_step(ox_exp *e, const char *op, const char *c1, const char *c2,
		const char *c3)
{
	const char *in[4] = {e->cur, c1, c2, c3};
	int			n = c3 ? 4 : c2 ? 3 : c1 ? 2 : 1;
	Onnx__NodeProto *node = ex_node(e, op, n, in);

	if (node)
		e->cur = node->output[0];
	return node;
}

static Onnx__AttributeProto *
ex_attr(ox_exp *e, Onnx__NodeProto *n, const char *name,
		Onnx__AttributeProto__AttributeType type)
{
	Onnx__AttributeProto *a;

	if (!n || n->n_attribute == 8)
		return NULL;
	a = EX_NEW(e, Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
	if (!a)
		return NULL;
	a->name = (char *) name;
	a->has_type = true;
	a->type = type;
	n->attribute[n->n_attribute++] = a;
	return a;
}

static void
ex_attr_i(ox_exp *e, Onnx__NodeProto *n, const char *name, int64_t v)
{
	Onnx__AttributeProto *a = ex_attr(e, n, name,
									  ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);

	if (a)
	{
		a->has_i = true;
		a->i = v;
	}
}

static void
ex_attr_f(ox_exp *e, Onnx__NodeProto *n, const char *name, float v)
{
	Onnx__AttributeProto *a = ex_attr(e, n, name,
									  ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);

	if (a)
	{
		a->has_f = true;
		a->f = v;
	}
}

static void
ex_attr_ints(ox_exp *e, Onnx__NodeProto *n, const char *name, int k,
			 const int64_t *v)
{
	Onnx__AttributeProto *a = ex_attr(e, n, name,
									  ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
	int64_t    *copy = ox_alloc(&e->ar, sizeof(int64_t) * k);

	if (!a || !copy)
	{
		e->oom = true;
		return;
	}
	memcpy(copy, v, sizeof(int64_t) * k);
	a->n_ints = k;
	a->ints = copy;
}

static void
ex_attr_strings(ox_exp *e, Onnx__NodeProto *n, const char *name, int k,
				const char *const *v)
{
	Onnx__AttributeProto *a = ex_attr(e, n, name,
									  ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);
	ProtobufCBinaryData *s = ox_alloc(&e->ar, sizeof(*s) * k);

	if (!a || !s)
	{
		e->oom = true;
		return;
	}
	for (int i = 0; i < k; i++)
	{
		s[i].data = (uint8_t *) v[i];
		s[i].len = strlen(v[i]);
	}
	a->n_strings = k;
	a->strings = s;
}

/* A new initializer of dims; its float or int64 data is the caller's to
 * fill (float_data or int64_data, the element count long). */
static Onnx__TensorProto *
ex_init(ox_exp *e, int rank, const int64_t *dims, bool int64)
{
	Onnx__TensorProto *t = EX_NEW(e, Onnx__TensorProto,
								  ONNX__TENSOR_PROTO__INIT);
	size_t		n = 1;

	if (!t || e->n_inits == e->cap_inits)
	{
		e->oom = true;
		return NULL;
	}
	for (int i = 0; i < rank; i++)
		n *= (size_t) dims[i];
	t->dims = ox_alloc(&e->ar, sizeof(int64_t) * (rank ? rank : 1));
	t->name = (char *) ex_name(e, int64 ? "shape" : "w");
	if (int64)
		t->int64_data = ox_alloc(&e->ar, sizeof(int64_t) * (n ? n : 1));
	else
		t->float_data = ox_alloc(&e->ar, sizeof(float) * (n ? n : 1));
	if (!t->dims || !t->name || !(int64 ? (void *) t->int64_data :
								  (void *) t->float_data))
	{
		e->oom = true;
		return NULL;
	}
	if (rank)
		memcpy(t->dims, dims, sizeof(int64_t) * rank);
	t->n_dims = rank;
	t->has_data_type = true;
	if (int64)
	{
		t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
		t->n_int64_data = n;
	}
	else
	{
		t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
		t->n_float_data = n;
	}
	e->inits[e->n_inits++] = t;
	return t;
}

/* A 1-D int64 initializer of k values; its name. */
static const char *
ex_ints(ox_exp *e, int k, const int64_t *v)
{
	int64_t		d = k;
	Onnx__TensorProto *t = ex_init(e, 1, &d, true);

	if (!t)
		return NULL;
	memcpy(t->int64_data, v, sizeof(int64_t) * k);
	return t->name;
}

/* A float initializer copied from src (n = product of dims). */
static const char *
ex_floats(ox_exp *e, int rank, const int64_t *dims, const float *src)
{
	Onnx__TensorProto *t = ex_init(e, rank, dims, false);

	if (!t)
		return NULL;
	memcpy(t->float_data, src, sizeof(float) * t->n_float_data);
	return t->name;
}

/* The running tensor as nnpg stores it, (N, size). */
static void
ex_to_flat(ox_exp *e)
{
	static const int64_t nhwc[4] = {0, 2, 3, 1};

	if (e->layout == OX_FLAT)
		return;
	ex_attr_ints(e, ex_step(e, "Transpose", NULL, NULL, NULL), "perm", 4, nhwc);
	ex_attr_i(e, ex_step(e, "Flatten", NULL, NULL, NULL), "axis", 1);
	e->layout = OX_FLAT;
}

/* The running tensor (an nnpg (H, W, C)) as (N, C, H, W). */
static void
ex_to_nchw(ox_exp *e, const int32_t *hwc)
{
	static const int64_t nchw[4] = {0, 3, 1, 2};
	int64_t		shape[4] = {0, hwc[0], hwc[1], hwc[2]};

	if (e->layout == OX_NCHW)
		return;
	ex_step(e, "Reshape", ex_ints(e, 4, shape), NULL, NULL);
	ex_attr_ints(e, ex_step(e, "Transpose", NULL, NULL, NULL), "perm", 4, nchw);
	e->layout = OX_NCHW;
}

/* (N, a, b) from the flat running tensor, then axes permuted by perm. */
static void
ex_to_3d(ox_exp *e, int32_t a, int32_t b, const int64_t *perm)
{
	int64_t		shape[3] = {0, a, b};

	ex_to_flat(e);
	ex_step(e, "Reshape", ex_ints(e, 3, shape), NULL, NULL);
	ex_attr_ints(e, ex_step(e, "Transpose", NULL, NULL, NULL), "perm", 3, perm);
}

/* The input's (rank 3 or 2) channel-first form for pools and batchnorm:
 * NCHW for images, (N, F, T) for sequences. */
static void
ex_to_channels_first(ox_exp *e, const nn_layer *l)
{
	static const int64_t nft[3] = {0, 2, 1};

	if (l->in_rank == 3)
		ex_to_nchw(e, l->in_shape);
	else
	{
		ex_to_3d(e, l->in_shape[0], l->in_shape[1], nft);
		e->layout = OX_FLAT;	/* restored by the caller */
	}
}

/* ONNX's operator for an activation (linear: none). */
static const char *
ex_act_op(nn_activation act)
{
	static const char *const ops[] = {
		[NN_ACT_LINEAR] = NULL,[NN_ACT_RELU] = "Relu",
		[NN_ACT_LEAKY_RELU] = "LeakyRelu",[NN_ACT_ELU] = "Elu",
		[NN_ACT_SIGMOID] = "Sigmoid",[NN_ACT_TANH] = "Tanh",
		[NN_ACT_SOFTMAX] = "Softmax"
	};

	return ops[act];
}

/* Apply an activation to the running tensor, whose nnpg shape is l's
 * output; softmax is over nnpg's last axis. */
static void
ex_activation(ox_exp *e, const nn_layer *l, nn_activation act, float alpha)
{
	Onnx__NodeProto *n;

	if (act == NN_ACT_LINEAR)
		return;
	if (act == NN_ACT_SOFTMAX && e->layout == OX_FLAT && l->out_rank > 1)
	{
		int64_t		shape[3] = {0, -1, l->out_shape[l->out_rank - 1]};

		ex_step(e, "Reshape", ex_ints(e, 3, shape), NULL, NULL);
		ex_attr_i(e, ex_step(e, "Softmax", NULL, NULL, NULL), "axis", 2);
		ex_attr_i(e, ex_step(e, "Flatten", NULL, NULL, NULL), "axis", 1);
		return;
	}
	n = ex_step(e, ex_act_op(act), NULL, NULL, NULL);
	if (act == NN_ACT_SOFTMAX)
		ex_attr_i(e, n, "axis", 1);
	else if (act == NN_ACT_LEAKY_RELU)
		ex_attr_f(e, n, "alpha", alpha > 0 ? alpha : 0.2f);
	else if (act == NN_ACT_ELU)
		ex_attr_f(e, n, "alpha", alpha > 0 ? alpha : 1.0f);
}

static const float *
ex_params(ox_exp *e, int64_t off)
{
	return e->m->params + off;
}

/* dense: Gemm(x, kernel (in, units), bias). */
static void
ex_dense(ox_exp *e, const nn_layer *l)
{
	int64_t		kd[2] = {(int64_t) l->in_size, l->spec.units};
	int64_t		bd = l->spec.units;
	const char *b = NULL;

	ex_to_flat(e);
	if (l->b_len)
		b = ex_floats(e, 1, &bd, ex_params(e, l->b_off));
	ex_step(e, "Gemm", ex_floats(e, 2, kd, ex_params(e, l->w_off)), b, NULL);
	ex_activation(e, l, l->spec.activation, 0.0f);
}

/* pads (top, left, bottom, right) of a window with TensorFlow's 'same'. */
static void
ex_pads(const nn_layer *l, int64_t *pads)
{
	nn_window	w = nn_window_of(l);
	int64_t		bottom = (int64_t) (w.OH - 1) * w.SH + w.KH - w.H - l->pad_top;
	int64_t		right = (int64_t) (w.OW - 1) * w.SW + w.KW - w.W - l->pad_left;

	pads[0] = l->pad_top;
	pads[1] = l->pad_left;
	pads[2] = bottom > 0 ? bottom : 0;
	pads[3] = right > 0 ? right : 0;
}

static void
ex_window_attrs(ox_exp *e, Onnx__NodeProto *n, const nn_layer *l)
{
	int64_t		k[2] = {l->spec.kernel[0], l->spec.kernel[1]};
	int64_t		s[2] = {l->spec.strides[0], l->spec.strides[1]};
	int64_t		pads[4];

	ex_pads(l, pads);
	ex_attr_ints(e, n, "kernel_shape", 2, k);
	ex_attr_ints(e, n, "strides", 2, s);
	ex_attr_ints(e, n, "pads", 4, pads);
}

/* conv2d: Conv with the kernel (KH, KW, C, F) as (F, C, KH, KW). */
static void
ex_conv2d(ox_exp *e, const nn_layer *l)
{
	int64_t		KH = l->spec.kernel[0],
				KW = l->spec.kernel[1],
				C = l->in_shape[2],
				F = l->spec.filters;
	int64_t		kd[4] = {F, C, KH, KW};
	int64_t		bd = F;
	Onnx__TensorProto *k = ex_init(e, 4, kd, false);
	const float *src = ex_params(e, l->w_off);
	const char *b = NULL;

	if (!k)
		return;
	for (int64_t f = 0; f < F; f++)
		for (int64_t c = 0; c < C; c++)
			for (int64_t i = 0; i < KH * KW; i++)
				k->float_data[(f * C + c) * KH * KW + i] =
					src[(i * C + c) * F + f];
	ex_to_nchw(e, l->in_shape);
	if (l->b_len)
		b = ex_floats(e, 1, &bd, ex_params(e, l->b_off));
	ex_window_attrs(e, ex_step(e, "Conv", k->name, b, NULL), l);
	ex_activation(e, l, l->spec.activation, 0.0f);
}

static void
ex_pool(ox_exp *e, const nn_layer *l)
{
	bool		max = l->spec.kind == NN_LAYER_MAXPOOL2D;

	ex_to_nchw(e, l->in_shape);
	ex_window_attrs(e, ex_step(e, max ? "MaxPool" : "AveragePool", NULL,
							   NULL, NULL), l);
}

/* global pools: over (H, W) of an image or T of a sequence, to (N, C). */
static void
ex_global_pool(ox_exp *e, const nn_layer *l)
{
	bool		max = l->spec.kind == NN_LAYER_GLOBAL_MAXPOOL;

	ex_to_channels_first(e, l);
	ex_step(e, max ? "GlobalMaxPool" : "GlobalAveragePool", NULL, NULL, NULL);
	ex_attr_i(e, ex_step(e, "Flatten", NULL, NULL, NULL), "axis", 1);
	e->layout = OX_FLAT;
}

/* flatten and reshape relabel nnpg's storage: the flat form is theirs. */
static void
ex_relabel(ox_exp *e, const nn_layer *l)
{
	(void) l;
	ex_to_flat(e);
}

static void
ex_act_layer(ox_exp *e, const nn_layer *l)
{
	ex_activation(e, l, l->spec.activation, l->spec.alpha);
}

static void
ex_identity(ox_exp *e, const nn_layer *l)
{
	(void) e;
	(void) l;
}

/* batchnorm over the last axis, channels first for ONNX. */
static void
ex_batchnorm(ox_exp *e, const nn_layer *l)
{
	static const int64_t ntf[3] = {0, 2, 1};
	int64_t		C = l->channels;
	const float *state = e->m->state + l->s_off;
	const char *mean = ex_floats(e, 1, &C, state);
	const char *var = ex_floats(e, 1, &C, state + C);
	const char *gamma = ex_floats(e, 1, &C, ex_params(e, l->w_off));
	const char *beta = ex_floats(e, 1, &C, ex_params(e, l->b_off));

	if (l->in_rank > 1)
		ex_to_channels_first(e, l);
	ex_attr_f(e, ex_step(e, "BatchNormalization", gamma, beta, mean),
			  "epsilon", l->spec.epsilon);
	if (e->nodes[e->n_nodes - 1] && !e->oom)
	{
		Onnx__NodeProto *n = e->nodes[e->n_nodes - 1];
		char	  **ins = ox_alloc(&e->ar, sizeof(char *) * 5);

		if (!ins)
		{
			e->oom = true;
			return;
		}
		memcpy(ins, n->input, sizeof(char *) * 4);
		ins[4] = (char *) var;
		n->input = ins;
		n->n_input = 5;
	}
	if (l->in_rank == 2)
	{
		ex_attr_ints(e, ex_step(e, "Transpose", NULL, NULL, NULL), "perm", 3,
					 ntf);
		ex_attr_i(e, ex_step(e, "Flatten", NULL, NULL, NULL), "axis", 1);
	}
}

/* embedding: the ids cast to int64 index the table, (N, T, D) flattened. */
static void
ex_embedding(ox_exp *e, const nn_layer *l)
{
	int64_t		td[2] = {l->spec.input_dim, l->spec.output_dim};
	const char *table = ex_floats(e, 2, td, ex_params(e, l->w_off));
	const char *in[2];
	Onnx__NodeProto *n;

	ex_to_flat(e);
	ex_attr_i(e, ex_step(e, "Cast", NULL, NULL, NULL), "to",
			  ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
	in[0] = table;
	in[1] = e->cur;
	n = ex_node(e, "Gather", 2, in);
	if (!n)
		return;
	e->cur = n->output[0];
	ex_attr_i(e, ex_step(e, "Flatten", NULL, NULL, NULL), "axis", 1);
}

/* Gate g of ONNX's order is Keras's gate map[g]: LSTM iofc vs ifco. */
static const int ox_lstm_gates[4] = {0, 3, 1, 2};
static const int ox_same_gates[3] = {0, 1, 2};

static int
ox_gates(nn_layer_kind kind, const int **map)
{
	*map = kind == NN_LAYER_LSTM ? ox_lstm_gates : ox_same_gates;
	return kind == NN_LAYER_LSTM ? 4 : kind == NN_LAYER_GRU ? 3 : 1;
}

/* ONNX's name of an activation inside a recurrent operator. */
static const char *
ex_rnn_act(nn_activation act)
{
	return act == NN_ACT_LINEAR ? "Affine" : ex_act_op(act);
}

/* (1, G H, K) from Keras's (K, G H) with the gates reordered. */
static const char *
ex_rnn_weights(ox_exp *e, const float *src, int64_t K, int64_t H, int G,
			   const int *map)
{
	int64_t		d[3] = {1, G * H, K};
	Onnx__TensorProto *t = ex_init(e, 3, d, false);

	if (!t)
		return NULL;
	for (int g = 0; g < G; g++)
		for (int64_t u = 0; u < H; u++)
			for (int64_t k = 0; k < K; k++)
				t->float_data[(g * H + u) * K + k] =
					src[k * G * H + map[g] * H + u];
	return t->name;
}

/* B (1, 2 G H): input then recurrent biases, gates reordered. */
static const char *
ex_rnn_bias(ox_exp *e, const nn_layer *l, int64_t H, int G, const int *map)
{
	int64_t		d[2] = {1, 2 * G * H};
	Onnx__TensorProto *t;
	const float *b;

	if (!l->b_len)
		return NULL;
	t = ex_init(e, 2, d, false);
	if (!t)
		return NULL;
	b = ex_params(e, l->b_off);
	memset(t->float_data, 0, sizeof(float) * 2 * G * H);
	for (int half = 0; half < (l->spec.kind == NN_LAYER_GRU ? 2 : 1); half++)
		for (int g = 0; g < G; g++)
			for (int64_t u = 0; u < H; u++)
				t->float_data[half * G * H + g * H + u] =
					b[half * G * H + map[g] * H + u];
	return t->name;
}

/* simple_rnn, lstm, gru: RNN, LSTM, GRU over (T, N, F). */
static void
ex_recurrent(ox_exp *e, const nn_layer *l)
{
	static const char *const ops[] = {"RNN", "LSTM", "GRU"};
	static const int64_t tnf[3] = {1, 0, 2};
	static const int64_t ntdh[4] = {2, 0, 1, 3};
	const int  *map;
	int			G = ox_gates(l->spec.kind, &map);
	int64_t		T = l->in_shape[0],
				F = l->in_shape[1],
				H = l->spec.units;
	const char *in[4];
	const char *acts[3];
	int			n_acts;
	Onnx__NodeProto *n;
	int64_t		zero = 0;

	ex_to_3d(e, (int32_t) T, (int32_t) F, tnf);
	in[0] = e->cur;
	in[1] = ex_rnn_weights(e, ex_params(e, l->w_off), F, H, G, map);
	in[2] = ex_rnn_weights(e, ex_params(e, l->r_off), H, H, G, map);
	in[3] = ex_rnn_bias(e, l, H, G, map);
	n = ex_node(e, ops[l->spec.kind - NN_LAYER_SIMPLE_RNN], in[3] ? 4 : 3, in);
	if (!n)
		return;
	n->n_output = 2;
	n->output[1] = (char *) ex_name(e, "t");
	ex_attr_i(e, n, "hidden_size", H);
	acts[0] = ex_rnn_act(l->spec.kind == NN_LAYER_SIMPLE_RNN ?
						 l->spec.activation : l->spec.recurrent_activation);
	acts[1] = acts[2] = ex_rnn_act(l->spec.activation);
	n_acts = l->spec.kind == NN_LAYER_LSTM ? 3 : l->spec.kind == NN_LAYER_GRU ? 2 : 1;
	ex_attr_strings(e, n, "activations", n_acts, acts);
	if (l->spec.kind == NN_LAYER_GRU)
		ex_attr_i(e, n, "linear_before_reset", 1);
	if (l->spec.return_sequences)
	{
		/* Y (T, 1, N, H) to (N, T, 1, H) to (N, T H) */
		e->cur = n->output[0];
		ex_attr_ints(e, ex_step(e, "Transpose", NULL, NULL, NULL), "perm", 4,
					 ntdh);
		ex_attr_i(e, ex_step(e, "Flatten", NULL, NULL, NULL), "axis", 1);
	}
	else
	{
		/* Y_h (1, N, H) to (N, H) */
		e->cur = n->output[1];
		ex_step(e, "Squeeze", ex_ints(e, 1, &zero), NULL, NULL);
	}
	e->layout = OX_FLAT;
}

/* rescale: x scale + offset, two scalar constants. */
static void
ex_rescale(ox_exp *e, const nn_layer *l)
{
	ex_step(e, "Mul", ex_floats(e, 0, NULL, &l->spec.scale), NULL, NULL);
	ex_step(e, "Add", ex_floats(e, 0, NULL, &l->spec.offset), NULL, NULL);
}

/* normalize: (x - mean) / max(sqrt(var), epsilon) per channel, as one Sub
 * and one Div by constants as long as the flat tensor. */
static void
ex_normalize(ox_exp *e, const nn_layer *l)
{
	int64_t		n = (int64_t) l->in_size;
	int64_t		C = l->channels;
	const float *st = e->m->state + l->s_off;
	Onnx__TensorProto *mean,
			   *den;

	ex_to_flat(e);
	mean = ex_init(e, 1, &n, false);
	den = ex_init(e, 1, &n, false);
	if (!mean || !den)
		return;
	for (int64_t i = 0; i < n; i++)
	{
		float		sd = sqrtf(st[C + i % C]);

		mean->float_data[i] = st[i % C];
		den->float_data[i] = sd > l->spec.epsilon ? sd : l->spec.epsilon;
	}
	ex_step(e, "Sub", mean->name, NULL, NULL);
	ex_step(e, "Div", den->name, NULL, NULL);
}

/* random_crop at prediction: the centre window, a Slice of NCHW. */
static void
ex_crop(ox_exp *e, const nn_layer *l)
{
	int64_t		top = (l->in_shape[0] - l->spec.height) / 2,
				left = (l->in_shape[1] - l->spec.width) / 2;
	int64_t		starts[2] = {top, left},
				ends[2] = {top + l->spec.height, left + l->spec.width},
				axes[2] = {2, 3};

	ex_to_nchw(e, l->in_shape);
	ex_step(e, "Slice", ex_ints(e, 2, starts), ex_ints(e, 2, ends),
			ex_ints(e, 2, axes));
}

typedef void (*ex_layer_fn) (ox_exp *e, const nn_layer *l);

/* One exporter per layer kind. */
static const ex_layer_fn ex_kinds[NN_LAYER_KIND_MAX + 1] = {
	[NN_LAYER_DENSE] = ex_dense,
	[NN_LAYER_CONV2D] = ex_conv2d,
	[NN_LAYER_MAXPOOL2D] = ex_pool,
	[NN_LAYER_AVGPOOL2D] = ex_pool,
	[NN_LAYER_FLATTEN] = ex_relabel,
	[NN_LAYER_RESHAPE] = ex_relabel,
	[NN_LAYER_DROPOUT] = ex_identity,
	[NN_LAYER_ACTIVATION] = ex_act_layer,
	[NN_LAYER_RESCALE] = ex_rescale,
	[NN_LAYER_NORMALIZE] = ex_normalize,
	[NN_LAYER_BATCHNORM] = ex_batchnorm,
	[NN_LAYER_EMBEDDING] = ex_embedding,
	[NN_LAYER_GLOBAL_AVGPOOL] = ex_global_pool,
	[NN_LAYER_GLOBAL_MAXPOOL] = ex_global_pool,
	[NN_LAYER_SIMPLE_RNN] = ex_recurrent,
	[NN_LAYER_LSTM] = ex_recurrent,
	[NN_LAYER_GRU] = ex_recurrent,
	[NN_LAYER_RANDOM_FLIP] = ex_identity,
	[NN_LAYER_RANDOM_TRANSLATION] = ex_identity,
	[NN_LAYER_RANDOM_ROTATION] = ex_identity,
	[NN_LAYER_RANDOM_ZOOM] = ex_identity,
	[NN_LAYER_RANDOM_CROP] = ex_crop,
	[NN_LAYER_RANDOM_CONTRAST] = ex_identity,
	[NN_LAYER_RANDOM_BRIGHTNESS] = ex_identity,
	[NN_LAYER_GAUSSIAN_NOISE] = ex_identity,
};

/* A graph input or output (N, size) of floats named name. */
static Onnx__ValueInfoProto *
ex_value_info(ox_exp *e, const char *name, int64_t size)
{
	Onnx__ValueInfoProto *v = EX_NEW(e, Onnx__ValueInfoProto,
									 ONNX__VALUE_INFO_PROTO__INIT);
	Onnx__TypeProto *t = EX_NEW(e, Onnx__TypeProto, ONNX__TYPE_PROTO__INIT);
	Onnx__TypeProto__Tensor *tt = EX_NEW(e, Onnx__TypeProto__Tensor,
										 ONNX__TYPE_PROTO__TENSOR__INIT);
	Onnx__TensorShapeProto *s = EX_NEW(e, Onnx__TensorShapeProto,
									   ONNX__TENSOR_SHAPE_PROTO__INIT);
	Onnx__TensorShapeProto__Dimension *d[2];
	Onnx__TensorShapeProto__Dimension **dims = ox_alloc(&e->ar, sizeof(d));

	for (int i = 0; i < 2; i++)
		d[i] = EX_NEW(e, Onnx__TensorShapeProto__Dimension,
					  ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT);
	if (!v || !t || !tt || !s || !d[0] || !d[1] || !dims)
	{
		e->oom = true;
		return NULL;
	}
	d[0]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
	d[0]->dim_param = "batch";
	d[1]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
	d[1]->dim_value = size;
	dims[0] = d[0];
	dims[1] = d[1];
	s->n_dim = 2;
	s->dim = dims;
	tt->has_elem_type = true;
	tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	tt->shape = s;
	t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	t->tensor_type = tt;
	v->name = (char *) name;
	v->type = t;
	return v;
}

/* The graph of the model's layers, in e's arena. */
static nn_status
ex_graph(ox_exp *e, Onnx__GraphProto *g, nn_error *err)
{
	const nn_model *m = e->m;
	Onnx__ValueInfoProto **io = ox_alloc(&e->ar, sizeof(void *) * 2);

	e->cap_nodes = e->cap_inits = 16 * (size_t) m->n_layers + 16;
	e->nodes = ox_alloc(&e->ar, sizeof(void *) * e->cap_nodes);
	e->inits = ox_alloc(&e->ar, sizeof(void *) * e->cap_inits);
	if (!io || !e->nodes || !e->inits)
		return ox_nomem(&e->ar, err);
	e->cur = "input";
	e->layout = OX_FLAT;
	for (int i = 0; i < m->n_layers && !e->oom; i++)
	{
		const nn_layer *l = &m->layers[i];
		ex_layer_fn fn = ex_kinds[l->spec.kind];

		if (!fn)
			return nn_fail(err, NN_ERR_UNSUPPORTED, i,
						   "layer %d (%s) cannot be exported to ONNX", i + 1,
						   l->type->name);
		fn(e, l);
	}
	ex_to_flat(e);
	/* the last node writes the output; an empty graph gets an Identity */
	if (e->n_nodes == 0 || strcmp(e->cur, e->nodes[e->n_nodes - 1]->output[0]))
		ex_step(e, "Identity", NULL, NULL, NULL);
	if (e->oom)
		return ox_nomem(&e->ar, err);
	e->nodes[e->n_nodes - 1]->output[0] = "output";
	io[0] = ex_value_info(e, "input", (int64_t) nn_model_input_size(m));
	io[1] = ex_value_info(e, "output", (int64_t) nn_model_output_size(m));
	if (e->oom)
		return ox_nomem(&e->ar, err);
	g->name = "nnpg";
	g->n_node = e->n_nodes;
	g->node = e->nodes;
	g->n_initializer = e->n_inits;
	g->initializer = e->inits;
	g->n_input = 1;
	g->input = io;
	g->n_output = 1;
	g->output = io + 1;
	return NN_OK;
}

static nn_status export_float(const nn_model *m, uint8_t **out, size_t *len,
							  const nn_alloc *a, nn_error *err);

nn_status
nn_model_export_onnx(const nn_model *m, uint8_t **out, size_t *len,
					 const nn_alloc *a, nn_error *err)
{
	/* an int8 model is written with its dequantized float kernels */
	if (nn_model_is_quantized(m))
	{
		nn_model   *d;
		nn_status	st = nn_model_dequantize(&d, m, a, err);

		if (st == NN_OK)
			st = nn_model_export_onnx(d, out, len, a, err);
		nn_model_free(d);
		return st;
	}
	return export_float(m, out, len, a, err);
}

/* The ONNX ModelProto of a float model. */
static nn_status
export_float(const nn_model *m, uint8_t **out, size_t *len,
			 const nn_alloc *a, nn_error *err)
{
	ox_exp		e = {.ar = {.a = a},.m = m};
	Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
	Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
	Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
	Onnx__OperatorSetIdProto *opsets[1] = {&opset};
	nn_status	st;
	size_t		size;

	*out = NULL;
	*len = 0;
	st = ex_graph(&e, &graph, err);
	if (st == NN_OK)
	{
		opset.domain = "";
		opset.has_version = true;
		opset.version = OX_OPSET_WRITE;
		model.has_ir_version = true;
		model.ir_version = OX_IR_WRITE;
		model.n_opset_import = 1;
		model.opset_import = opsets;
		model.producer_name = "nnpg";
		model.graph = &graph;
		size = protobuf_c_message_get_packed_size(&model.base);
		*out = a->alloc(a->ctx, size ? size : 1);
		if (!*out)
			st = nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
		else
			*len = protobuf_c_message_pack(&model.base, *out);
	}
	ox_arena_free(&e.ar);
	return st;
}

/* ======================================================================
 * import
 * ====================================================================== */

/*
 * A tensor of the graph as the importer knows it.  A constant has its
 * values (float or int64; OX_BATCH stands for the batch size).  The
 * running tensor (dyn) has its ONNX dims with the batch axis, and order
 * lists its other axes in the order nnpg stores them; after a Flatten of
 * a tensor stored in another order, map[i] is nnpg's position of ONNX's
 * flat element i (and order is unused).  rnn_out marks an output of a
 * recurrent node whose return_sequences is not yet decided: 1 Y, 2 Y_h,
 * 3 Y_c.
 */
typedef struct ox_val
{
	const char *name;
	bool		dyn;
	int			rank;
	int64_t		dims[OX_MAX_DIMS];
	/* constants */
	bool		is_int;
	size_t		n;
	float	   *f;
	int64_t    *i;
	bool		uniform;		/* one value broadcast to dims */
	/* the running tensor */
	int			batch;
	int			order[OX_MAX_DIMS];
	int32_t    *map;
	int			rnn_out;
} ox_val;

/* What the importer builds: a spec and the weights of each layer. */
typedef struct ox_weights
{
	float	   *w,
			   *r,
			   *b,
			   *mean,
			   *var;
	int64_t		w_len,
				r_len,
				b_len,
				s_len;
} ox_weights;

typedef struct ox_imp
{
	ox_arena	ar;
	const Onnx__ModelProto *model;
	const Onnx__NodeProto *node;	/* the node being mapped */
	ox_val	   *vals;
	size_t		n_vals,
				cap_vals;
	const char *input;			/* the graph input's name */
	int64_t		fixed_batch;	/* the input's batch dim, or -1 */
	nn_layer_spec layers[NN_MAX_LAYERS];
	ox_weights	weights[NN_MAX_LAYERS];
	int			n_layers;
	int32_t		in_rank,
				in_shape[NN_MAX_RANK];
	int32_t		cur_rank,		/* nnpg's shape of the running tensor */
				cur_shape[NN_MAX_RANK];
	int			rnn_layer;		/* undecided recurrent layer, or -1 */
	int			act_layer;		/* a layer whose activation is still
								 * linear and ends the chain, or -1 */
	size_t		max_bytes;
} ox_imp;

/* The node that cannot be mapped: NN_ERR_UNSUPPORTED naming it. */
static nn_status
im_unsupported(ox_imp *im, nn_error *err, const char *why)
{
	const Onnx__NodeProto *n = im->node;
	const char *name = n->name && n->name[0] ? n->name : "(unnamed)";

	nn_fail(err, NN_ERR_UNSUPPORTED, -1,
			"cannot import ONNX node \"%s\" (%s)", name, n->op_type);
	nn_detail(err, "%s", why);
	return NN_ERR_UNSUPPORTED;
}

static ox_val *
im_find(ox_imp *im, const char *name)
{
	for (size_t k = im->n_vals; k-- > 0;)
		if (strcmp(im->vals[k].name, name) == 0)
			return &im->vals[k];
	return NULL;
}

/* A new value named name (NULL when out of memory). */
static ox_val *
im_new(ox_imp *im, const char *name)
{
	ox_val	   *v;

	if (im->n_vals == im->cap_vals)
	{
		size_t		cap = im->cap_vals ? 2 * im->cap_vals : 64;
		ox_val	   *vals = ox_alloc(&im->ar, sizeof(ox_val) * cap);

		if (!vals)
			return NULL;
		if (im->n_vals)
			memcpy(vals, im->vals, sizeof(ox_val) * im->n_vals);
		im->vals = vals;
		im->cap_vals = cap;
	}
	v = &im->vals[im->n_vals++];
	memset(v, 0, sizeof(*v));
	v->name = name;
	return v;
}

static size_t
im_count(const int64_t *dims, int rank, bool *ok)
{
	size_t		n = 1;

	for (int i = 0; i < rank; i++)
		if (dims[i] < 0 || !nn_size_mul(&n, n, (size_t) dims[i]))
			*ok = false;
	return n;
}

/* A constant from a TensorProto: float or integer types only. */
static nn_status
im_tensor(ox_imp *im, ox_val *v, const Onnx__TensorProto *t, nn_error *err)
{
	bool		ok = t->n_dims <= OX_MAX_DIMS;
	int			type = t->has_data_type ? t->data_type : 0;
	size_t		n,
				bytes;

	if (!ok)
		return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
					   "ONNX tensor \"%s\" has more than %d dimensions",
					   t->name ? t->name : "", OX_MAX_DIMS);
	v->rank = (int) t->n_dims;
	if (t->n_dims)
		memcpy(v->dims, t->dims, sizeof(int64_t) * t->n_dims);
	n = im_count(v->dims, v->rank, &ok);
	if (!ok || !nn_size_mul(&bytes, n, 8))
		return nn_fail(err, NN_ERR_CORRUPT, -1,
					   "ONNX tensor \"%s\" has invalid dimensions",
					   t->name ? t->name : "");
	if (im->max_bytes && bytes / 2 > im->max_bytes)
		return nn_fail(err, NN_ERR_LIMIT, -1,
					   "ONNX tensor \"%s\" of %zu values is over the limit of %zu bytes",
					   t->name ? t->name : "", n, im->max_bytes);
	if (t->n_external_data || (t->has_data_location && t->data_location))
		return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
					   "ONNX tensor \"%s\" has its data in an external file",
					   t->name ? t->name : "");
	v->n = n;
	if (type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
	{
		v->f = ox_alloc(&im->ar, sizeof(float) * (n ? n : 1));
		if (!v->f)
			return ox_nomem(&im->ar, err);
		if (n == 0)
			;
		else if (t->has_raw_data && t->raw_data.len == 4 * n)
			memcpy(v->f, t->raw_data.data, 4 * n);	/* little-endian host */
		else if (t->n_float_data == n)
			memcpy(v->f, t->float_data, 4 * n);
		else
			return nn_fail(err, NN_ERR_CORRUPT, -1,
						   "ONNX tensor \"%s\" does not hold %zu values",
						   t->name ? t->name : "", n);
		for (size_t k = 0; k < n; k++)
			if (!isfinite(v->f[k]))
				return nn_fail(err, NN_ERR_DATA, -1,
							   "ONNX tensor \"%s\" has a value that is not finite",
							   t->name ? t->name : "");
		return NN_OK;
	}
	if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
		type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32)
	{
		size_t		w = type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : 4;

		v->is_int = true;
		v->i = ox_alloc(&im->ar, sizeof(int64_t) * (n ? n : 1));
		if (!v->i)
			return ox_nomem(&im->ar, err);
		for (size_t k = 0; k < n; k++)
		{
			if (t->has_raw_data && t->raw_data.len == w * n)
			{
				int32_t		i32;

				if (w == 8)
					memcpy(&v->i[k], t->raw_data.data + 8 * k, 8);
				else
				{
					memcpy(&i32, t->raw_data.data + 4 * k, 4);
					v->i[k] = i32;
				}
			}
			else if (w == 8 && t->n_int64_data == n)
				v->i[k] = t->int64_data[k];
			else if (w == 4 && t->n_int32_data == n)
				v->i[k] = t->int32_data[k];
			else
				return nn_fail(err, NN_ERR_CORRUPT, -1,
							   "ONNX tensor \"%s\" does not hold %zu values",
							   t->name ? t->name : "", n);
		}
		return NN_OK;
	}
	return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
				   "ONNX tensor \"%s\" has data type %d, not float or int",
				   t->name ? t->name : "", type);
}

static const Onnx__AttributeProto *
im_attr(const Onnx__NodeProto *n, const char *name)
{
	for (size_t k = 0; k < n->n_attribute; k++)
		if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0)
			return n->attribute[k];
	return NULL;
}

static int64_t
im_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
	const Onnx__AttributeProto *a = im_attr(n, name);

	return a && a->has_i ? a->i : dflt;
}

static float
im_attr_f(const Onnx__NodeProto *n, const char *name, float dflt)
{
	const Onnx__AttributeProto *a = im_attr(n, name);

	return a && a->has_f ? a->f : dflt;
}

/* An ints attribute of k values (all = dflt when absent); false when it
 * has another count. */
static bool
im_attr_ints(const Onnx__NodeProto *n, const char *name, int k,
			 int64_t *out, int64_t dflt)
{
	const Onnx__AttributeProto *a = im_attr(n, name);

	for (int j = 0; j < k; j++)
		out[j] = dflt;
	if (!a)
		return true;
	if ((int) a->n_ints != k)
		return false;
	memcpy(out, a->ints, sizeof(int64_t) * k);
	return true;
}

/* Input k of the node: its value, or NULL when absent or empty. */
static ox_val *
im_in(ox_imp *im, int k)
{
	const Onnx__NodeProto *n = im->node;

	if ((size_t) k >= n->n_input || !n->input[k] || !n->input[k][0])
		return NULL;
	return im_find(im, n->input[k]);
}

/* ---------- the nnpg side ---------- */

/* Append a layer of kind; NULL when the model is full. */
static nn_layer_spec *
im_layer(ox_imp *im, nn_layer_kind kind)
{
	nn_layer_spec *s;

	if (im->n_layers == NN_MAX_LAYERS)
		return NULL;
	s = &im->layers[im->n_layers];
	nn_layer_spec_init(s, kind);
	memset(&im->weights[im->n_layers], 0, sizeof(ox_weights));
	im->n_layers++;
	im->act_layer = -1;
	return s;
}

/*
 * Make nnpg's running shape (rank, shape): the same values relabelled, by
 * the input shape when no layer came yet, else a flatten or reshape layer.
 */
static nn_status
im_shape(ox_imp *im, int rank, const int32_t *shape, nn_error *err)
{
	nn_layer_spec *s;

	if (rank == im->cur_rank &&
		memcmp(shape, im->cur_shape, sizeof(int32_t) * rank) == 0)
		return NN_OK;
	if (im->n_layers == 0)
	{
		im->in_rank = rank;
		memcpy(im->in_shape, shape, sizeof(int32_t) * rank);
	}
	else
	{
		int			act = im->act_layer;

		s = im_layer(im, rank == 1 ? NN_LAYER_FLATTEN : NN_LAYER_RESHAPE);
		if (!s)
			return im_unsupported(im, err, "The model has too many layers.");
		if (rank > 1)
		{
			s->shape_rank = rank;
			memcpy(s->shape, shape, sizeof(int32_t) * rank);
		}
		im->act_layer = act;	/* a relabel keeps the activation open */
	}
	im->cur_rank = rank;
	memset(im->cur_shape, 0, sizeof(im->cur_shape));
	memcpy(im->cur_shape, shape, sizeof(int32_t) * rank);
	return NN_OK;
}

/*
 * Check that the running tensor v, read along the ONNX axes want[0..k),
 * is what nnpg stores (axes of size 1 may sit anywhere), and set nnpg's
 * shape to those dims.
 */
static nn_status
im_need(ox_imp *im, const ox_val *v, int k, const int *want, nn_error *err)
{
	int			a = 0,
				b = 0,
				nd = v->rank - 1;
	int32_t		shape[NN_MAX_RANK];

	if (v->map)
		return im_unsupported(im, err,
							  "Its input is a flattened tensor of another layout.");
	for (;;)
	{
		while (a < nd && v->dims[v->order[a]] == 1)
			a++;
		while (b < k && v->dims[want[b]] == 1)
			b++;
		if (a == nd || b == k)
			break;
		if (v->order[a] != want[b])
			return im_unsupported(im, err,
								  "Its input's axes are not in the order nnpg stores them.");
		a++;
		b++;
	}
	if (a != nd || b != k || k > NN_MAX_RANK)
		return im_unsupported(im, err, "Its input has an unexpected rank.");
	for (int j = 0; j < k; j++)
	{
		if (v->dims[want[j]] > INT32_MAX || v->dims[want[j]] < 1)
			return im_unsupported(im, err, "Its input has an invalid size.");
		shape[j] = (int32_t) v->dims[want[j]];
	}
	return im_shape(im, k, shape, err);
}

/* The output of the node: a new running tensor copying v's shape. */
static ox_val *
im_out(ox_imp *im, int k, const ox_val *like)
{
	ox_val	   *v;

	if ((size_t) k >= im->node->n_output || !im->node->output[k][0])
		return NULL;
	v = im_new(im, im->node->output[k]);
	if (v && like)
	{
		const char *name = v->name;

		*v = *like;
		v->name = name;
	}
	return v;
}

/* Set every non-batch axis of v in storage order (as ONNX stores it). */
static void
im_plain(ox_val *v)
{
	int			j = 0;

	for (int a = 0; a < v->rank; a++)
		if (a != v->batch)
			v->order[j++] = a;
	v->map = NULL;
}

/* The running input of the node (input 0 unless k), which must exist. */
static nn_status
im_dyn_in(ox_imp *im, int k, ox_val **out, nn_error *err)
{
	ox_val	   *v = im_in(im, k);

	if (!v || !v->dyn)
		return im_unsupported(im, err,
							  "Its input is not the tensor that runs through the model.");
	if (v->rnn_out)
	{
		/* this use decides the recurrent layer's output */
		nn_layer_spec *s = &im->layers[im->rnn_layer];
		int32_t		shape[2];

		if (v->rnn_out == 3 || im->rnn_layer < 0)
			return im_unsupported(im, err,
								  "nnpg's recurrent layers output no cell state.");
		s->return_sequences = v->rnn_out == 1;
		shape[0] = s->return_sequences ? v->dims[0] : s->units;
		shape[1] = s->units;
		im->cur_rank = s->return_sequences ? 2 : 1;
		memcpy(im->cur_shape, shape, sizeof(shape));
		im->rnn_layer = -1;
		for (size_t j = 0; j < im->n_vals; j++)
			if (im->vals[j].rnn_out)
			{
				if (im->vals[j].rnn_out != v->rnn_out)
					im->vals[j].dyn = false;	/* no longer usable */
				im->vals[j].rnn_out = 0;
			}
	}
	*out = v;
	return NN_OK;
}

/* A constant input k of the node, float unless is_int. */
static nn_status
im_const_in(ox_imp *im, int k, bool is_int, ox_val **out, nn_error *err)
{
	ox_val	   *v = im_in(im, k);

	if (!v || v->dyn || v->is_int != is_int || v->uniform)
		return im_unsupported(im, err,
							  is_int ? "One of its inputs is not a constant integer tensor." :
							  "One of its inputs is not a constant float tensor.");
	*out = v;
	return NN_OK;
}

static float *
im_floats(ox_imp *im, size_t n)
{
	return ox_alloc(&im->ar, sizeof(float) * (n ? n : 1));
}

/* ---------- mapping of each operator ---------- */

typedef nn_status (*im_op_fn) (ox_imp *im, nn_error *err);

/* An activation: fused into the layer before it when that layer ends
 * with a linear activation, else an activation layer. */
static nn_status
im_activation(ox_imp *im, nn_activation act, float alpha, nn_error *err)
{
	ox_val	   *x;
	nn_status	st = im_dyn_in(im, 0, &x, err);
	nn_layer_spec *s;
	bool		dflt_alpha = (act == NN_ACT_LEAKY_RELU && alpha == 0.2f) ||
		(act == NN_ACT_ELU && alpha == 1.0f) || !nn_activation_has_alpha(act);

	if (st != NN_OK)
		return st;
	if (act == NN_ACT_SOFTMAX)
	{
		int64_t		axis = im_attr_i(im->node, "axis", -1);
		int			nd = x->rank - 1;

		if (axis < 0)
			axis += x->rank;
		if (axis == x->batch || (!x->map && x->order[nd - 1] != axis &&
								 x->dims[x->order[nd - 1]] != 1))
			return im_unsupported(im, err,
								  "nnpg's softmax is over the last axis it stores.");
		if (x->map || im->cur_shape[im->cur_rank - 1] != x->dims[axis])
		{
			int32_t		c = (int32_t) x->dims[axis];

			if (x->map)
				return im_unsupported(im, err,
									  "Its input is a flattened tensor of another layout.");
			if (im_need(im, x, nd, x->order, err) != NN_OK ||
				im->cur_shape[im->cur_rank - 1] != c)
				return im_unsupported(im, err,
									  "nnpg's softmax is over the last axis it stores.");
		}
	}
	if (im->act_layer >= 0 && im->act_layer == im->n_layers - 1 && dflt_alpha)
		im->layers[im->act_layer].activation = act;
	else
	{
		s = im_layer(im, NN_LAYER_ACTIVATION);
		if (!s)
			return im_unsupported(im, err, "The model has too many layers.");
		s->activation = act;
		if (nn_activation_has_alpha(act))
			s->alpha = alpha;
	}
	im->act_layer = -1;
	return im_out(im, 0, x) ? NN_OK : ox_nomem(&im->ar, err);
}

static nn_status
im_relu(ox_imp *im, nn_error *err)
{
	return im_activation(im, NN_ACT_RELU, 0, err);
}

static nn_status
im_leaky(ox_imp *im, nn_error *err)
{
	return im_activation(im, NN_ACT_LEAKY_RELU,
						 im_attr_f(im->node, "alpha", 0.01f), err);
}

static nn_status
im_elu(ox_imp *im, nn_error *err)
{
	return im_activation(im, NN_ACT_ELU, im_attr_f(im->node, "alpha", 1.0f),
						 err);
}

static nn_status
im_sigmoid(ox_imp *im, nn_error *err)
{
	return im_activation(im, NN_ACT_SIGMOID, 0, err);
}

static nn_status
im_tanh(ox_imp *im, nn_error *err)
{
	return im_activation(im, NN_ACT_TANH, 0, err);
}

static nn_status
im_softmax(ox_imp *im, nn_error *err)
{
	return im_activation(im, NN_ACT_SOFTMAX, 0, err);
}

/*
 * A dense layer on the flat running tensor x (N, K): kernel[r][u] from
 * w (K, units) or, transposed, (units, K), scaled by alpha; rows follow
 * x's map.  The output becomes the running tensor.
 */
static nn_status
im_dense(ox_imp *im, ox_val *x, const ox_val *w, bool trans, float alpha,
		 nn_error *err)
{
	int64_t		K,
				U;
	nn_layer_spec *s;
	ox_weights *wt;
	ox_val	   *y;
	int			one = 1;
	int32_t		k32;

	if (x->rank != 2 || x->batch != 0 || w->rank != 2)
		return im_unsupported(im, err,
							  "nnpg's dense layer takes a flat (batch, features) input.");
	K = trans ? w->dims[1] : w->dims[0];
	U = trans ? w->dims[0] : w->dims[1];
	if (K != x->dims[1] || U < 1 || U > INT32_MAX)
		return im_unsupported(im, err, "Its weights do not fit its input.");
	if (x->map)
	{
		k32 = (int32_t) K;
		if (im_shape(im, 1, &k32, err) != NN_OK)
			return NN_ERR_UNSUPPORTED;
	}
	else if (im_need(im, x, 1, &one, err) != NN_OK)
		return NN_ERR_UNSUPPORTED;
	s = im_layer(im, NN_LAYER_DENSE);
	if (!s)
		return im_unsupported(im, err, "The model has too many layers.");
	s->units = (int32_t) U;
	s->use_bias = false;
	s->activation = NN_ACT_LINEAR;
	wt = &im->weights[im->n_layers - 1];
	wt->w_len = K * U;
	wt->w = im_floats(im, (size_t) (K * U));
	if (!wt->w)
		return ox_nomem(&im->ar, err);
	for (int64_t k = 0; k < K; k++)
	{
		int64_t		r = x->map ? x->map[k] : k;

		for (int64_t u = 0; u < U; u++)
			wt->w[r * U + u] = alpha * (trans ? w->f[u * K + k] : w->f[k * U + u]);
	}
	y = im_out(im, 0, NULL);
	if (!y)
		return ox_nomem(&im->ar, err);
	y->dyn = true;
	y->rank = 2;
	y->dims[0] = x->dims[0];
	y->dims[1] = U;
	y->batch = 0;
	im_plain(y);
	im->cur_rank = 1;
	im->cur_shape[0] = (int32_t) U;
	im->act_layer = im->n_layers - 1;
	return NN_OK;
}

/* Set the bias of the last layer (dense or conv2d) from c, broadcast from
 * one value or (units) values; beta scales it. */
static nn_status
im_bias(ox_imp *im, const ox_val *c, int64_t units, float beta, nn_error *err)
{
	ox_weights *wt = &im->weights[im->n_layers - 1];

	if (c->n != 1 && c->n != (size_t) units)
		return im_unsupported(im, err, "Its bias is not one value per unit.");
	wt->b_len = units;
	wt->b = im_floats(im, (size_t) units);
	if (!wt->b)
		return ox_nomem(&im->ar, err);
	for (int64_t u = 0; u < units; u++)
		wt->b[u] = beta * c->f[c->n == 1 ? 0 : u];
	im->layers[im->n_layers - 1].use_bias = true;
	return NN_OK;
}

/* Gemm: y = alpha x B + beta C, with B transposed when transB. */
static nn_status
im_gemm(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *w,
			   *c = im_in(im, 2);
	nn_status	st;

	if ((st = im_dyn_in(im, 0, &x, err)) != NN_OK ||
		(st = im_const_in(im, 1, false, &w, err)) != NN_OK)
		return st;
	if (im_attr_i(im->node, "transA", 0))
		return im_unsupported(im, err, "transA is not supported.");
	if (c && (c->dyn || c->is_int || c->uniform))
		return im_unsupported(im, err, "Its bias is not a constant.");
	st = im_dense(im, x, w, im_attr_i(im->node, "transB", 0) != 0,
				  im_attr_f(im->node, "alpha", 1.0f), err);
	if (st == NN_OK && c)
		st = im_bias(im, c, im->layers[im->n_layers - 1].units,
					 im_attr_f(im->node, "beta", 1.0f), err);
	return st;
}

static nn_status
im_matmul(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *w;
	nn_status	st;

	if ((st = im_dyn_in(im, 0, &x, err)) != NN_OK ||
		(st = im_const_in(im, 1, false, &w, err)) != NN_OK)
		return st;
	return im_dense(im, x, w, false, 1.0f, err);
}

/* Add of a constant: the bias of the dense or conv2d layer just before,
 * when it has none yet. */
static nn_status
im_add(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *c;
	nn_status	st;
	nn_layer_spec *s;

	if ((st = im_dyn_in(im, 0, &x, err)) != NN_OK ||
		(st = im_const_in(im, 1, false, &c, err)) != NN_OK)
		return st;
	s = im->n_layers ? &im->layers[im->n_layers - 1] : NULL;
	if (!s || im->act_layer != im->n_layers - 1 || s->use_bias ||
		(s->kind != NN_LAYER_DENSE && s->kind != NN_LAYER_CONV2D))
		return im_unsupported(im, err,
							  "nnpg maps Add only as the bias of a MatMul or Conv without one.");
	if (s->kind == NN_LAYER_CONV2D && c->n != 1 &&
		!(c->rank >= 3 && c->n == (size_t) c->dims[c->rank - 3]))
		return im_unsupported(im, err, "Its bias is not one value per channel.");
	st = im_bias(im, c, s->kind == NN_LAYER_DENSE ? s->units : s->filters,
				 1.0f, err);
	if (st == NN_OK && !im_out(im, 0, x))
		return ox_nomem(&im->ar, err);
	return st;
}

/*
 * The window of Conv and the pools: kernel, strides and pads against
 * nnpg's 'valid' or TensorFlow's 'same' (false when neither).
 */
static bool
im_window(ox_imp *im, nn_layer_spec *s, const ox_val *x, const int64_t *k)
{
	const Onnx__NodeProto *n = im->node;
	int64_t		st[2],
				pads[4],
				dil[2];
	const Onnx__AttributeProto *ap = im_attr(n, "auto_pad");
	bool		same_upper = ap && ap->has_s && ap->s.len == 10 &&
		memcmp(ap->s.data, "SAME_UPPER", 10) == 0;
	bool		valid = true,
				same = true;

	if (ap && ap->has_s && !same_upper &&
		!(ap->s.len == 5 && memcmp(ap->s.data, "VALID", 5) == 0) &&
		!(ap->s.len == 6 && memcmp(ap->s.data, "NOTSET", 6) == 0))
		return false;
	if (!im_attr_ints(n, "strides", 2, st, 1) ||
		!im_attr_ints(n, "pads", 4, pads, 0) ||
		!im_attr_ints(n, "dilations", 2, dil, 1) ||
		dil[0] != 1 || dil[1] != 1 || im_attr_i(n, "ceil_mode", 0) ||
		st[0] < 1 || st[1] < 1 || st[0] > INT32_MAX || st[1] > INT32_MAX ||
		k[0] < 1 || k[1] < 1 || k[0] > INT32_MAX || k[1] > INT32_MAX)
		return false;
	for (int a = 0; a < 2; a++)
	{
		int64_t		in = x->dims[2 + a];
		int64_t		out = (in + st[a] - 1) / st[a];
		int64_t		total = (out - 1) * st[a] + k[a] - in;

		if (total < 0)
			total = 0;
		if (pads[a] || pads[a + 2])
			valid = false;
		if (pads[a] != total / 2 || pads[a + 2] != total - total / 2)
			same = false;
	}
	s->kernel[0] = (int32_t) k[0];
	s->kernel[1] = (int32_t) k[1];
	s->strides[0] = (int32_t) st[0];
	s->strides[1] = (int32_t) st[1];
	s->same_padding = same_upper || (!valid && same);
	return same_upper || valid || same;
}

static const int ox_hwc[3] = {2, 3, 1};

/* The output (N, C, OH, OW) of a window over x, stored (OH, OW, C). */
static nn_status
im_window_out(ox_imp *im, const ox_val *x, const nn_layer_spec *s, int64_t C,
			  nn_error *err)
{
	ox_val	   *y = im_out(im, 0, x);

	if (!y)
		return ox_nomem(&im->ar, err);
	for (int a = 0; a < 2; a++)
	{
		int64_t		in = x->dims[2 + a];

		y->dims[2 + a] = s->same_padding ?
			(in + s->strides[a] - 1) / s->strides[a] :
			(in - s->kernel[a]) / s->strides[a] + 1;
		if (y->dims[2 + a] < 1)
			return im_unsupported(im, err, "Its window is larger than its input.");
	}
	y->dims[1] = C;
	memcpy(y->order, ox_hwc, sizeof(ox_hwc));
	im->cur_shape[0] = (int32_t) y->dims[2];
	im->cur_shape[1] = (int32_t) y->dims[3];
	im->cur_shape[2] = (int32_t) C;
	return NN_OK;
}

/* The running tensor as an NCHW image stored (H, W, C). */
static nn_status
im_image_in(ox_imp *im, ox_val **x, nn_error *err)
{
	nn_status	st = im_dyn_in(im, 0, x, err);

	if (st != NN_OK)
		return st;
	if ((*x)->rank != 4 || (*x)->batch != 0)
		return im_unsupported(im, err, "Its input is not an NCHW image.");
	return im_need(im, *x, 3, ox_hwc, err);
}

/* Conv: conv2d, the kernel (F, C, KH, KW) as (KH, KW, C, F). */
static nn_status
im_conv(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *w,
			   *b = im_in(im, 2);
	nn_status	st;
	nn_layer_spec *s;
	ox_weights *wt;
	int64_t		F,
				C,
				KH,
				KW;

	if ((st = im_image_in(im, &x, err)) != NN_OK ||
		(st = im_const_in(im, 1, false, &w, err)) != NN_OK)
		return st;
	if (w->rank != 4 || w->dims[1] != x->dims[1] || im_attr_i(im->node, "group", 1) != 1)
		return im_unsupported(im, err, "Its kernel does not fit its input, or it is grouped.");
	F = w->dims[0];
	C = w->dims[1];
	KH = w->dims[2];
	KW = w->dims[3];
	if (F < 1 || F > INT32_MAX)
		return im_unsupported(im, err, "Its filter count is invalid.");
	s = im_layer(im, NN_LAYER_CONV2D);
	if (!s)
		return im_unsupported(im, err, "The model has too many layers.");
	if (!im_window(im, s, x, &w->dims[2]))
		return im_unsupported(im, err,
							  "Its padding, dilations or rounding are neither 'valid' nor 'same'.");
	s->filters = (int32_t) F;
	s->use_bias = false;
	s->activation = NN_ACT_LINEAR;
	wt = &im->weights[im->n_layers - 1];
	wt->w_len = F * C * KH * KW;
	wt->w = im_floats(im, (size_t) wt->w_len);
	if (!wt->w)
		return ox_nomem(&im->ar, err);
	for (int64_t f = 0; f < F; f++)
		for (int64_t c = 0; c < C; c++)
			for (int64_t i = 0; i < KH * KW; i++)
				wt->w[(i * C + c) * F + f] = w->f[(f * C + c) * KH * KW + i];
	if (b && (b->dyn || b->is_int || b->uniform))
		return im_unsupported(im, err, "Its bias is not a constant.");
	if (b && (st = im_bias(im, b, F, 1.0f, err)) != NN_OK)
		return st;
	if ((st = im_window_out(im, x, s, F, err)) != NN_OK)
		return st;
	im->act_layer = im->n_layers - 1;
	return NN_OK;
}

static nn_status
im_pool(ox_imp *im, nn_error *err)
{
	bool		max = strcmp(im->node->op_type, "MaxPool") == 0;
	ox_val	   *x;
	nn_status	st;
	nn_layer_spec *s;
	int64_t		k[2];

	if ((st = im_image_in(im, &x, err)) != NN_OK)
		return st;
	if (im->node->n_output > 1 && im->node->output[1][0])
		return im_unsupported(im, err, "nnpg's pools output no indices.");
	s = im_layer(im, max ? NN_LAYER_MAXPOOL2D : NN_LAYER_AVGPOOL2D);
	if (!s)
		return im_unsupported(im, err, "The model has too many layers.");
	if (!im_attr_ints(im->node, "kernel_shape", 2, k, 0) ||
		im_attr_i(im->node, "storage_order", 0) ||
		!im_window(im, s, x, k))
		return im_unsupported(im, err,
							  "Its window, padding or rounding are neither 'valid' nor 'same'.");
	if (!max && s->same_padding && im_attr_i(im->node, "count_include_pad", 0))
		return im_unsupported(im, err,
							  "nnpg's average pools count only the cells inside the image.");
	return im_window_out(im, x, s, x->dims[1], err);
}

/* GlobalAveragePool, GlobalMaxPool: (N, C, ...) to (N, C, 1, ...). */
static nn_status
im_global_pool(ox_imp *im, nn_error *err)
{
	bool		max = strcmp(im->node->op_type, "GlobalMaxPool") == 0;
	ox_val	   *x,
			   *y;
	nn_status	st;
	int			want[OX_MAX_DIMS];
	int			k = 0;

	if ((st = im_dyn_in(im, 0, &x, err)) != NN_OK)
		return st;
	if (x->batch != 0 || x->rank < 3 || x->rank > 4)
		return im_unsupported(im, err, "Its input is not (batch, channels, ...).");
	for (int a = 2; a < x->rank; a++)
		want[k++] = a;
	want[k++] = 1;
	if ((st = im_need(im, x, k, want, err)) != NN_OK)
		return st;
	if (!im_layer(im, max ? NN_LAYER_GLOBAL_MAXPOOL : NN_LAYER_GLOBAL_AVGPOOL))
		return im_unsupported(im, err, "The model has too many layers.");
	y = im_out(im, 0, x);
	if (!y)
		return ox_nomem(&im->ar, err);
	for (int a = 2; a < x->rank; a++)
		y->dims[a] = 1;
	im->cur_rank = 1;
	im->cur_shape[0] = (int32_t) x->dims[1];
	return NN_OK;
}

/* BatchNormalization in inference mode over channel axis 1. */
static nn_status
im_batchnorm(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *c[4];
	nn_status	st;
	int			want[OX_MAX_DIMS];
	int			k = 0;
	int64_t		C;
	nn_layer_spec *s;
	ox_weights *wt;
	float	   *dst[4];

	if ((st = im_dyn_in(im, 0, &x, err)) != NN_OK)
		return st;
	for (int j = 0; j < 4; j++)
		if ((st = im_const_in(im, j + 1, false, &c[j], err)) != NN_OK)
			return st;
	if (x->batch != 0 || x->rank < 2 || im_attr_i(im->node, "training_mode", 0) ||
		(im->node->n_output > 1 && im->node->output[1][0]))
		return im_unsupported(im, err, "Only inference mode over (batch, channels, ...) maps.");
	C = x->dims[1];
	for (int j = 0; j < 4; j++)
		if (c[j]->n != (size_t) C)
			return im_unsupported(im, err, "Its statistics are not one value per channel.");
	for (int a = 2; a < x->rank; a++)
		want[k++] = a;
	want[k++] = 1;
	if ((st = im_need(im, x, k, want, err)) != NN_OK)
		return st;
	s = im_layer(im, NN_LAYER_BATCHNORM);
	if (!s)
		return im_unsupported(im, err, "The model has too many layers.");
	s->epsilon = im_attr_f(im->node, "epsilon", 1e-5f);
	s->momentum = im_attr_f(im->node, "momentum", 0.9f);
	wt = &im->weights[im->n_layers - 1];
	wt->w_len = wt->b_len = wt->s_len = C;
	dst[0] = wt->w = im_floats(im, (size_t) C);
	dst[1] = wt->b = im_floats(im, (size_t) C);
	dst[2] = wt->mean = im_floats(im, (size_t) C);
	dst[3] = wt->var = im_floats(im, (size_t) C);
	for (int j = 0; j < 4; j++)
	{
		if (!dst[j])
			return ox_nomem(&im->ar, err);
		memcpy(dst[j], c[j]->f, sizeof(float) * C);
	}
	for (int64_t j = 0; j < C; j++)
		if (wt->var[j] < 0)
			return im_unsupported(im, err, "Its variance is negative.");
	return im_out(im, 0, x) ? NN_OK : ox_nomem(&im->ar, err);
}

/* Flatten (axis 1) or a Reshape to (batch, n) of the running tensor. */
static nn_status
im_flatten_val(ox_imp *im, ox_val *x, nn_error *err)
{
	ox_val	   *y;
	int			nd = x->rank - 1;
	bool		plain = true;
	int64_t		n = 1;
	int			last = -1;

	if (x->batch != 0)
		return im_unsupported(im, err, "It would merge the batch axis.");
	for (int a = 1; a < x->rank; a++)
		if (__builtin_mul_overflow(n, x->dims[a], &n))
			return im_unsupported(im, err, "Its input is too large.");
	y = im_out(im, 0, x);
	if (!y)
		return ox_nomem(&im->ar, err);
	y->rank = 2;
	y->dims[1] = n;
	y->order[0] = 1;
	if (x->map)
		return NN_OK;
	for (int j = 0; j < nd; j++)
		if (x->dims[x->order[j]] != 1)
		{
			if (x->order[j] < last)
				plain = false;
			last = x->order[j];
		}
	y->map = NULL;
	if (plain)
		return NN_OK;
	/* ONNX's element i (row-major over dims 1..) is stored at map[i] */
	if (n > INT32_MAX)
		return im_unsupported(im, err, "Its input is too large.");
	y->map = ox_alloc(&im->ar, sizeof(int32_t) * (size_t) n);
	if (!y->map)
		return ox_nomem(&im->ar, err);
	{
		int64_t		stride[OX_MAX_DIMS];
		int64_t		s = 1;

		for (int j = nd - 1; j >= 0; j--)
		{
			stride[x->order[j]] = s;
			s *= x->dims[x->order[j]];
		}
		for (int64_t i = 0; i < n; i++)
		{
			int64_t		rem = i,
						pos = 0;

			for (int a = x->rank - 1; a >= 1; a--)
			{
				pos += (rem % x->dims[a]) * stride[a];
				rem /= x->dims[a];
			}
			y->map[i] = (int32_t) pos;
		}
	}
	return NN_OK;
}

static nn_status
im_flatten(ox_imp *im, nn_error *err)
{
	ox_val	   *x;
	nn_status	st = im_dyn_in(im, 0, &x, err);

	if (st != NN_OK)
		return st;
	if (im_attr_i(im->node, "axis", 1) != 1)
		return im_unsupported(im, err, "Only Flatten with axis 1 maps.");
	return im_flatten_val(im, x, err);
}

/* Reshape keeping the batch axis first; the other dims follow nnpg's
 * storage, or the result is (batch, n) (a Flatten). */
static nn_status
im_reshape(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *s,
			   *y;
	nn_status	st;
	int64_t		dims[OX_MAX_DIMS];
	int64_t		total = 1,
				known = 1;
	int			infer = -1;

	if ((st = im_dyn_in(im, 0, &x, err)) != NN_OK ||
		(st = im_const_in(im, 1, true, &s, err)) != NN_OK)
		return st;
	if (x->batch != 0 || s->n < 2 || s->n > OX_MAX_DIMS)
		return im_unsupported(im, err, "It must keep the batch axis first.");
	for (int a = 1; a < x->rank; a++)
		if (__builtin_mul_overflow(total, x->dims[a], &total))
			return im_unsupported(im, err, "Its input is too large.");
	if (!(s->i[0] == 0 || s->i[0] == OX_BATCH ||
		  (s->i[0] == im->fixed_batch && im->fixed_batch > 0) ||
		  (s->i[0] == -1 && s->n >= 2)))
		return im_unsupported(im, err, "It must keep the batch axis first.");
	for (size_t j = 1; j < s->n; j++)
	{
		int64_t		d = s->i[j];

		if (d == OX_BATCH)
			return nn_fail(err, NN_ERR_DATA, -1,
						   "cannot resolve the shape of node \"%s\" from input \"%s\"",
						   im->node->name ? im->node->name : "", im->input);
		if (d == 0)
			d = (int) j < x->rank ? x->dims[j] : -2;
		if (d == -1 && infer < 0)
			infer = (int) j;
		else if (d < 1 || d > INT32_MAX ||
				 __builtin_mul_overflow(known, d, &known))
			return im_unsupported(im, err, "Its target shape is invalid.");
		dims[j] = d;
	}
	if (s->i[0] == -1 && infer >= 0)
		return im_unsupported(im, err, "It must keep the batch axis first.");
	if (infer >= 0)
		dims[infer] = known ? total / known : 0;
	if (infer >= 0 ? known * dims[infer] != total : known != total)
		return im_unsupported(im, err, "Its target shape does not hold its input.");
	if (s->n == 2)
		return im_flatten_val(im, x, err);
	if (x->map)
		return im_unsupported(im, err, "Its input is a flattened tensor of another layout.");
	/* relabelling needs nnpg's storage to be ONNX's row-major order */
	{
		int			last = -1;

		for (int j = 0; j < x->rank - 1; j++)
			if (x->dims[x->order[j]] != 1)
			{
				if (x->order[j] < last)
					return im_unsupported(im, err,
										  "Its input's axes are not in the order nnpg stores them.");
				last = x->order[j];
			}
	}
	y = im_out(im, 0, x);
	if (!y)
		return ox_nomem(&im->ar, err);
	y->rank = (int) s->n;
	for (int j = 1; j < y->rank; j++)
		y->dims[j] = dims[j];
	im_plain(y);
	return NN_OK;
}

/* The axes input (opset 13) or attribute of Squeeze and Unsqueeze. */
static nn_status
im_axes(ox_imp *im, int64_t *axes, int *k, nn_error *err)
{
	ox_val	   *a = im_in(im, 1);
	const Onnx__AttributeProto *at = im_attr(im->node, "axes");

	*k = 0;
	if (a)
	{
		if (a->dyn || !a->is_int || a->uniform || a->n > OX_MAX_DIMS)
			return im_unsupported(im, err, "Its axes are not constant.");
		*k = (int) a->n;
		memcpy(axes, a->i, sizeof(int64_t) * a->n);
	}
	else if (at)
	{
		if (at->n_ints > OX_MAX_DIMS)
			return im_unsupported(im, err, "It has too many axes.");
		*k = (int) at->n_ints;
		memcpy(axes, at->ints, sizeof(int64_t) * at->n_ints);
	}
	return NN_OK;
}

/* Drop axis a (of size 1, not the batch) of the running tensor v. */
static void
im_drop_axis(ox_val *v, int a)
{
	int			j = 0;

	for (int k = 0; k < v->rank - 1; k++)
		if (v->order[k] != a)
			v->order[j++] = v->order[k] > a ? v->order[k] - 1 : v->order[k];
	for (int k = a; k < v->rank - 1; k++)
		v->dims[k] = v->dims[k + 1];
	if (v->batch > a)
		v->batch--;
	v->rank--;
}

static nn_status
im_squeeze_dyn(ox_imp *im, ox_val *x, int k, const int64_t *axes,
			   nn_error *err)
{
	ox_val	   *y = im_out(im, 0, x);
	bool		drop[OX_MAX_DIMS] = {false};

	if (!y)
		return ox_nomem(&im->ar, err);
	for (int j = 0; j < k; j++)
	{
		int64_t		a = axes[j] < 0 ? axes[j] + x->rank : axes[j];

		if (a < 0 || a >= x->rank || a == x->batch || x->dims[a] != 1)
			return im_unsupported(im, err, "It squeezes an axis that is not of size 1.");
		drop[a] = true;
	}
	if (k == 0)
		for (int a = 0; a < x->rank; a++)
			drop[a] = a != x->batch && x->dims[a] == 1;
	if (y->map && k)
		return im_unsupported(im, err, "Its input is a flattened tensor of another layout.");
	for (int a = x->rank - 1; a >= 0; a--)
		if (drop[a])
			im_drop_axis(y, a);
	return NN_OK;
}

/* ---------- constants: the shape computations exporters emit ---------- */

/* A new constant output 0 of the node with rank and dims. */
static ox_val *
im_const_out(ox_imp *im, bool is_int, int rank, const int64_t *dims,
			 size_t n)
{
	ox_val	   *v = im_out(im, 0, NULL);

	if (!v)
		return NULL;
	v->is_int = is_int;
	v->rank = rank;
	memcpy(v->dims, dims, sizeof(int64_t) * rank);
	v->n = n;
	if (is_int)
		v->i = ox_alloc(&im->ar, sizeof(int64_t) * (n ? n : 1));
	else
		v->f = im_floats(im, n);
	return (is_int ? (void *) v->i : (void *) v->f) ? v : NULL;
}

static nn_status
im_squeeze(ox_imp *im, nn_error *err)
{
	ox_val	   *x = im_in(im, 0),
			   *y;
	int64_t		axes[OX_MAX_DIMS],
				dims[OX_MAX_DIMS];
	int			k,
				r = 0;
	nn_status	st = im_axes(im, axes, &k, err);

	if (st != NN_OK)
		return st;
	if (x && x->dyn)
		return im_dyn_in(im, 0, &x, err) != NN_OK ? NN_ERR_UNSUPPORTED :
			im_squeeze_dyn(im, x, k, axes, err);
	if (!x || x->uniform)
		return im_unsupported(im, err, "Its input is not a constant.");
	for (int a = 0; a < x->rank; a++)
	{
		bool		drop = k == 0 && x->dims[a] == 1;

		for (int j = 0; j < k; j++)
			drop |= axes[j] == a || axes[j] + x->rank == a;
		if (!drop)
			dims[r++] = x->dims[a];
	}
	y = im_out(im, 0, x);
	if (!y)
		return ox_nomem(&im->ar, err);
	y->rank = r;
	memcpy(y->dims, dims, sizeof(int64_t) * r);
	return NN_OK;
}

static nn_status
im_unsqueeze(ox_imp *im, nn_error *err)
{
	ox_val	   *x = im_in(im, 0),
			   *y;
	int64_t		axes[OX_MAX_DIMS],
				dims[OX_MAX_DIMS];
	int			k,
				r;
	nn_status	st = im_axes(im, axes, &k, err);

	if (st != NN_OK)
		return st;
	if (!x || x->map || x->uniform || x->rank + k > OX_MAX_DIMS)
		return im_unsupported(im, err, "Its input cannot be unsqueezed here.");
	if (x->dyn && (st = im_dyn_in(im, 0, &x, err)) != NN_OK)
		return st;
	r = x->rank + k;
	for (int a = 0, src = 0; a < r; a++)
	{
		bool		ins = false;

		for (int j = 0; j < k; j++)
			ins |= axes[j] == a || axes[j] + r == a;
		dims[a] = ins ? 1 : x->dims[src++];
	}
	y = im_out(im, 0, x);
	if (!y)
		return ox_nomem(&im->ar, err);
	y->rank = r;
	memcpy(y->dims, dims, sizeof(int64_t) * r);
	if (x->dyn)
	{
		/* the batch and the stored axes keep their order */
		int			j = 0;

		y->batch = -1;
		for (int a = 0, src = 0; a < r; a++)
		{
			bool		ins = false;

			for (int q = 0; q < k; q++)
				ins |= axes[q] == a || axes[q] + r == a;
			if (ins)
				continue;
			if (src == x->batch)
				y->batch = a;
			src++;
		}
		for (int q = 0; q < x->rank - 1; q++)
		{
			int			old = x->order[q],
						pos = 0;

			for (int a = 0, src = 0; a < r; a++)
			{
				bool		ins = false;

				for (int t = 0; t < k; t++)
					ins |= axes[t] == a || axes[t] + r == a;
				if (!ins && src++ == old)
					pos = a;
			}
			y->order[j++] = pos;
		}
		for (int a = 0; a < r; a++)
		{
			bool		ins = false;

			for (int t = 0; t < k; t++)
				ins |= axes[t] == a || axes[t] + r == a;
			if (ins)
				y->order[j++] = a;
		}
	}
	return NN_OK;
}

/* Transpose of the running tensor: the storage stays, the labels move. */
static nn_status
im_transpose(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *y;
	nn_status	st = im_dyn_in(im, 0, &x, err);
	int64_t		perm[OX_MAX_DIMS] = {0};
	int			inv[OX_MAX_DIMS];

	if (st != NN_OK)
		return st;
	if (!im_attr_ints(im->node, "perm", x->rank, perm, -1) ||
		(x->map && !(perm[0] == 0 && perm[1] == 1)))
		return im_unsupported(im, err, "Its permutation does not fit its input.");
	if (perm[0] == -1)
		for (int a = 0; a < x->rank; a++)
			perm[a] = x->rank - 1 - a;
	for (int a = 0; a < x->rank; a++)
		inv[a] = -1;
	for (int a = 0; a < x->rank; a++)
	{
		if (perm[a] < 0 || perm[a] >= x->rank || inv[perm[a]] >= 0)
			return im_unsupported(im, err, "Its permutation is invalid.");
		inv[perm[a]] = a;
	}
	y = im_out(im, 0, x);
	if (!y)
		return ox_nomem(&im->ar, err);
	for (int a = 0; a < x->rank; a++)
		y->dims[a] = x->dims[perm[a]];
	y->batch = inv[x->batch];
	for (int j = 0; j < x->rank - 1; j++)
		y->order[j] = inv[x->order[j]];
	return NN_OK;
}

/* Identity, Dropout (inference), Cast of the running tensor. */
static nn_status
im_identity(ox_imp *im, nn_error *err)
{
	ox_val	   *x = im_in(im, 0),
			   *y;

	if (x && x->dyn && im_dyn_in(im, 0, &x, err) != NN_OK)
		return NN_ERR_UNSUPPORTED;
	if (!x)
		return im_unsupported(im, err, "Its input is unknown.");
	if (im->node->n_output > 1 && im->node->output[1][0] &&
		strcmp(im->node->op_type, "Dropout") == 0)
		return im_unsupported(im, err, "nnpg's dropout outputs no mask.");
	y = im_out(im, 0, x);
	return y ? NN_OK : ox_nomem(&im->ar, err);
}

/* Pad with zero pads only: the identity. */
static nn_status
im_pad(ox_imp *im, nn_error *err)
{
	ox_val	   *p = im_in(im, 1);

	if (!p || p->dyn || !p->is_int)
		return im_unsupported(im, err, "Its pads are not constant.");
	for (size_t k = 0; k < p->n; k++)
		if (p->i[k] != 0)
			return im_unsupported(im, err, "Only Pad with zero pads maps.");
	return im_identity(im, err);
}

/* Shape of the running tensor: its dims, the batch a symbol. */
static nn_status
im_shape_op(ox_imp *im, nn_error *err)
{
	ox_val	   *x,
			   *y;
	nn_status	st = im_dyn_in(im, 0, &x, err);
	int64_t		d;

	if (st != NN_OK)
		return st;
	if (im_attr(im->node, "start") || im_attr(im->node, "end"))
		return im_unsupported(im, err, "Shape with start or end does not map.");
	d = x->rank;
	y = im_const_out(im, true, 1, &d, (size_t) x->rank);
	if (!y)
		return ox_nomem(&im->ar, err);
	for (int a = 0; a < x->rank; a++)
		y->i[a] = a == x->batch ? OX_BATCH : x->dims[a];
	return NN_OK;
}

static nn_status
im_constant(ox_imp *im, nn_error *err)
{
	const Onnx__AttributeProto *a = im_attr(im->node, "value");
	ox_val	   *y;
	int64_t		one = 1;

	if (a && a->t)
	{
		y = im_out(im, 0, NULL);
		return y ? im_tensor(im, y, a->t, err) : ox_nomem(&im->ar, err);
	}
	if ((a = im_attr(im->node, "value_int")) && a->has_i)
	{
		y = im_const_out(im, true, 0, &one, 1);
		if (y)
			y->i[0] = a->i;
	}
	else if ((a = im_attr(im->node, "value_float")) && a->has_f)
	{
		y = im_const_out(im, false, 0, &one, 1);
		if (y)
			y->f[0] = a->f;
	}
	else if ((a = im_attr(im->node, "value_ints")))
	{
		int64_t		n = (int64_t) a->n_ints;

		y = im_const_out(im, true, 1, &n, a->n_ints);
		if (y)
			memcpy(y->i, a->ints, sizeof(int64_t) * a->n_ints);
	}
	else
		return im_unsupported(im, err, "Only tensor and number constants map.");
	return y ? NN_OK : ox_nomem(&im->ar, err);
}

/* Gather: an embedding (constant table, running ids), a size-1 axis of
 * the running tensor, or constant indexing of a shape. */
static nn_status
im_gather(ox_imp *im, nn_error *err)
{
	ox_val	   *d = im_in(im, 0),
			   *ix = im_in(im, 1),
			   *y;
	int64_t		axis = im_attr_i(im->node, "axis", 0);
	nn_status	st;

	if (!d || !ix)
		return im_unsupported(im, err, "Its inputs are unknown.");
	if (ix->dyn && !d->dyn && !d->is_int && d->rank == 2 && axis == 0)
	{
		/* embedding: ids (N, T) of nnpg's (T) to (N, T, D) */
		nn_layer_spec *s;
		ox_weights *wt;
		int			one = 1;

		if ((st = im_dyn_in(im, 1, &ix, err)) != NN_OK)
			return st;
		if (ix->rank != 2 || ix->batch != 0 || ix->map ||
			(st = im_need(im, ix, 1, &one, err)) != NN_OK ||
			d->dims[0] > INT32_MAX || d->dims[1] > INT32_MAX ||
			d->dims[0] < 1 || d->dims[1] < 1)
			return im_unsupported(im, err, "nnpg's embedding reads (batch, timesteps) ids.");
		s = im_layer(im, NN_LAYER_EMBEDDING);
		if (!s)
			return im_unsupported(im, err, "The model has too many layers.");
		s->input_dim = (int32_t) d->dims[0];
		s->output_dim = (int32_t) d->dims[1];
		wt = &im->weights[im->n_layers - 1];
		wt->w = d->f;
		wt->w_len = (int64_t) d->n;
		y = im_out(im, 0, ix);
		if (!y)
			return ox_nomem(&im->ar, err);
		y->rank = 3;
		y->dims[2] = d->dims[1];
		im_plain(y);
		im->cur_rank = 2;
		im->cur_shape[0] = (int32_t) ix->dims[1];
		im->cur_shape[1] = s->output_dim;
		return NN_OK;
	}
	if (ix->dyn || ix->uniform || !ix->is_int || ix->n != 1)
		return im_unsupported(im, err, "Only embeddings and constant indices map.");
	if (d->dyn)
	{
		int64_t		a = axis < 0 ? axis + d->rank : axis;

		if ((st = im_dyn_in(im, 0, &d, err)) != NN_OK)
			return st;
		if (a < 0 || a >= d->rank || a == d->batch || d->dims[a] != 1 ||
			(ix->i[0] != 0 && ix->i[0] != -1))
			return im_unsupported(im, err, "It takes a slice nnpg has no layer for.");
		if (ix->rank == 0)
			return im_squeeze_dyn(im, d, 1, &a, err);
		return im_identity(im, err);
	}
	if (!d->is_int || d->rank != 1 || axis != 0)
		return im_unsupported(im, err, "Only indexing of a shape maps.");
	{
		int64_t		k = ix->i[0] < 0 ? ix->i[0] + (int64_t) d->n : ix->i[0];

		if (k < 0 || k >= (int64_t) d->n)
			return im_unsupported(im, err, "Its index is out of range.");
		y = im_const_out(im, true, ix->rank, ix->dims, 1);
		if (!y)
			return ox_nomem(&im->ar, err);
		y->i[0] = d->i[k];
	}
	return NN_OK;
}

/* Concat of constant int64 vectors (shapes). */
static nn_status
im_concat(ox_imp *im, nn_error *err)
{
	size_t		n = 0;
	ox_val	   *y;
	int64_t		d;

	for (size_t k = 0; k < im->node->n_input; k++)
	{
		ox_val	   *v = im_in(im, (int) k);

		if (!v || v->dyn || !v->is_int || v->uniform || v->rank != 1)
			return im_unsupported(im, err, "Only concatenation of constant shapes maps.");
		n += v->n;
	}
	d = (int64_t) n;
	y = im_const_out(im, true, 1, &d, n);
	if (!y)
		return ox_nomem(&im->ar, err);
	n = 0;
	for (size_t k = 0; k < im->node->n_input; k++)
	{
		ox_val	   *v = im_in(im, (int) k);

		memcpy(y->i + n, v->i, sizeof(int64_t) * v->n);
		n += v->n;
	}
	return NN_OK;
}

/* Expand of a one-value constant: that value over a shape (the zero
 * initial states of recurrent layers). */
static nn_status
im_expand(ox_imp *im, nn_error *err)
{
	ox_val	   *x = im_in(im, 0),
			   *s = im_in(im, 1),
			   *y;

	if (!x || !s || x->dyn || s->dyn || !s->is_int || s->uniform ||
		x->n == 0 || s->n > OX_MAX_DIMS)
		return im_unsupported(im, err, "Only expansion of one constant value maps.");
	for (size_t k = 1; k < x->n; k++)
		if (x->is_int ? x->i[k] != x->i[0] : x->f[k] != x->f[0])
			return im_unsupported(im, err, "Only expansion of one constant value maps.");
	y = im_out(im, 0, x);
	if (!y)
		return ox_nomem(&im->ar, err);
	y->uniform = true;
	y->rank = (int) s->n;
	memcpy(y->dims, s->i, sizeof(int64_t) * s->n);
	return NN_OK;
}

/* ConstantOfShape: a uniform constant. */
static nn_status
im_constant_of_shape(ox_imp *im, nn_error *err)
{
	ox_val	   *s = im_in(im, 0),
			   *y;
	const Onnx__AttributeProto *a = im_attr(im->node, "value");
	int64_t		one = 1;

	if (!s || s->dyn || !s->is_int || s->uniform || s->n > OX_MAX_DIMS)
		return im_unsupported(im, err, "Its shape is not constant.");
	y = im_const_out(im, false, 0, &one, 1);
	if (!y)
		return ox_nomem(&im->ar, err);
	y->f[0] = 0;
	if (a && a->t)
	{
		ox_val		tmp = {0};
		nn_status	st = im_tensor(im, &tmp, a->t, err);

		if (st != NN_OK)
			return st;
		if (tmp.n != 1)
			return im_unsupported(im, err, "Its value is not one number.");
		y->is_int = tmp.is_int;
		y->i = tmp.i;
		y->f = tmp.is_int ? y->f : tmp.f;
	}
	y->uniform = true;
	y->rank = (int) s->n;
	memcpy(y->dims, s->i, sizeof(int64_t) * s->n);
	return NN_OK;
}

/* Is an optional input absent or all zeros? */
static bool
im_zero_or_absent(ox_imp *im, int k)
{
	ox_val	   *v = im_in(im, k);

	if ((size_t) k >= im->node->n_input || !im->node->input[k][0])
		return true;
	if (!v || v->dyn)
		return false;
	for (size_t j = 0; j < v->n; j++)
		if (v->is_int ? v->i[j] != 0 : v->f[j] != 0.0f)
			return false;
	return true;
}

/* An ONNX recurrent activation name as nnpg's, -1 when none matches. */
static int
im_rnn_act(const ProtobufCBinaryData *s)
{
	static const struct
	{
		const char *name;
		nn_activation act;
	}			acts[] = {
		{"Relu", NN_ACT_RELU}, {"Tanh", NN_ACT_TANH},
		{"Sigmoid", NN_ACT_SIGMOID}, {"Affine", NN_ACT_LINEAR},
	};

	for (int k = 0; k < NN_LENGTH(acts); k++)
		if (s->len == strlen(acts[k].name) &&
			memcmp(s->data, acts[k].name, s->len) == 0)
			return acts[k].act;
	return -1;
}

/* The recurrent kernel or kernel (K, G H) of Keras from ONNX's
 * (1, G H, K), gates reordered. */
static float *
im_rnn_weights(ox_imp *im, const ox_val *w, int64_t K, int64_t H, int G,
			   const int *map)
{
	float	   *dst = im_floats(im, (size_t) (K * G * H));

	if (!dst)
		return NULL;
	for (int g = 0; g < G; g++)
		for (int64_t u = 0; u < H; u++)
			for (int64_t k = 0; k < K; k++)
				dst[k * G * H + map[g] * H + u] = w->f[(g * H + u) * K + k];
	return dst;
}

/* RNN, LSTM, GRU: simple_rnn, lstm, gru over (T, N, F). */
static nn_status
im_recurrent(ox_imp *im, nn_error *err)
{
	const Onnx__NodeProto *n = im->node;
	nn_layer_kind kind = n->op_type[0] == 'L' ? NN_LAYER_LSTM :
		n->op_type[0] == 'G' ? NN_LAYER_GRU : NN_LAYER_SIMPLE_RNN;
	const int  *map;
	int			G = ox_gates(kind, &map);
	ox_val	   *x,
			   *w,
			   *r,
			   *b = im_in(im, 3),
			   *y;
	nn_status	st;
	int64_t		H = im_attr_i(n, "hidden_size", 0),
				T,
				F;
	int			tf[2];
	nn_layer_spec *s;
	ox_weights *wt;
	const Onnx__AttributeProto *acts = im_attr(n, "activations");
	const Onnx__AttributeProto *dir = im_attr(n, "direction");
	int			layout = (int) im_attr_i(n, "layout", 0);

	if ((st = im_dyn_in(im, 0, &x, err)) != NN_OK ||
		(st = im_const_in(im, 1, false, &w, err)) != NN_OK ||
		(st = im_const_in(im, 2, false, &r, err)) != NN_OK)
		return st;
	if (x->rank != 3 || x->batch != (layout ? 0 : 1) || H < 1 || H > INT32_MAX)
		return im_unsupported(im, err, "Its input is not a (timesteps, batch, features) sequence.");
	if ((dir && dir->has_s && !(dir->s.len == 7 && memcmp(dir->s.data, "forward", 7) == 0)) ||
		im_attr(n, "clip") || im_attr_i(n, "input_forget", 0) ||
		(kind == NN_LAYER_GRU && im_attr_i(n, "linear_before_reset", 0) != 1))
		return im_unsupported(im, err,
							  "nnpg maps forward layers without clipping (and GRU with linear_before_reset=1) only.");
	if (!im_zero_or_absent(im, 4) && im_in(im, 4))
		return im_unsupported(im, err, "Sequence lengths do not map.");
	for (int k = 5; k < 8; k++)
		if (!im_zero_or_absent(im, k))
			return im_unsupported(im, err, "Initial states and peepholes other than zero do not map.");
	T = x->dims[layout ? 1 : 0];
	F = x->dims[2];
	tf[0] = layout ? 1 : 0;
	tf[1] = 2;
	if (F < 1 || F > INT32_MAX || T < 1 || T > INT32_MAX ||
		w->n / (size_t) (G * H) != (size_t) F || w->n % (size_t) (G * H) ||
		r->n / (size_t) (G * H) != (size_t) H || r->n % (size_t) (G * H) ||
		(b && b->n != (size_t) (2 * G * H)))
		return im_unsupported(im, err, "Its weights do not fit its input.");
	if ((st = im_need(im, x, 2, tf, err)) != NN_OK)
		return st;
	s = im_layer(im, kind);
	if (!s)
		return im_unsupported(im, err, "The model has too many layers.");
	s->units = (int32_t) H;
	s->use_bias = b != NULL;
	if (acts)
	{
		int			want = kind == NN_LAYER_LSTM ? 3 : kind == NN_LAYER_GRU ? 2 : 1;
		int			a[3];

		if ((int) acts->n_strings != want || im_attr(n, "activation_alpha"))
			return im_unsupported(im, err, "Its activations do not map.");
		for (int k = 0; k < want; k++)
			if ((a[k] = im_rnn_act(&acts->strings[k])) < 0)
				return im_unsupported(im, err, "Its activations do not map.");
		if (kind == NN_LAYER_LSTM && a[1] != a[2])
			return im_unsupported(im, err, "nnpg's lstm uses one activation for g and h.");
		s->activation = (nn_activation) a[want - 1];
		if (kind != NN_LAYER_SIMPLE_RNN)
			s->recurrent_activation = (nn_activation) a[0];
	}
	wt = &im->weights[im->n_layers - 1];
	wt->w_len = F * G * H;
	wt->r_len = H * G * H;
	wt->w = im_rnn_weights(im, w, F, H, G, map);
	wt->r = im_rnn_weights(im, r, H, H, G, map);
	if (!wt->w || !wt->r)
		return ox_nomem(&im->ar, err);
	if (b)
	{
		bool		gru = kind == NN_LAYER_GRU;

		wt->b_len = gru ? 2 * G * H : G * H;
		wt->b = im_floats(im, (size_t) wt->b_len);
		if (!wt->b)
			return ox_nomem(&im->ar, err);
		for (int half = 0; half < 2; half++)
			for (int g = 0; g < G; g++)
				for (int64_t u = 0; u < H; u++)
				{
					float		v = b->f[half * G * H + g * H + u];
					int64_t		at = map[g] * H + u;

					if (gru)
						wt->b[half * G * H + at] = v;
					else
						wt->b[at] = half ? wt->b[at] + v : v;
				}
	}
	/* Y (T, 1, N, H) and Y_h (1, N, H): the first use decides which */
	im->rnn_layer = im->n_layers - 1;
	for (int k = 0; k < 3; k++)
	{
		y = im_out(im, k, NULL);
		if (!y)
			continue;
		y->dyn = true;
		y->rnn_out = k + 1;
		if (k == 0)
		{
			int64_t		d[4] = {T, 1, x->dims[x->batch], H};

			y->rank = 4;
			memcpy(y->dims, d, sizeof(d));
			y->batch = 2;
			y->order[0] = 0;
			y->order[1] = 1;
			y->order[2] = 3;
		}
		else
		{
			int64_t		d[3] = {1, x->dims[x->batch], H};

			y->rank = 3;
			memcpy(y->dims, d, sizeof(d));
			y->batch = 1;
			y->order[0] = 0;
			y->order[1] = 2;
		}
	}
	return NN_OK;
}

typedef struct im_op
{
	const char *name;
	im_op_fn	fn;
} im_op;

/* One mapping per ONNX operator. */
static const im_op im_ops[] = {
	{"Gemm", im_gemm},
	{"MatMul", im_matmul},
	{"Add", im_add},
	{"Conv", im_conv},
	{"MaxPool", im_pool},
	{"AveragePool", im_pool},
	{"GlobalAveragePool", im_global_pool},
	{"GlobalMaxPool", im_global_pool},
	{"Relu", im_relu},
	{"LeakyRelu", im_leaky},
	{"Elu", im_elu},
	{"Sigmoid", im_sigmoid},
	{"Tanh", im_tanh},
	{"Softmax", im_softmax},
	{"Flatten", im_flatten},
	{"Reshape", im_reshape},
	{"Transpose", im_transpose},
	{"BatchNormalization", im_batchnorm},
	{"Dropout", im_identity},
	{"Identity", im_identity},
	{"Cast", im_identity},
	{"Pad", im_pad},
	{"Gather", im_gather},
	{"RNN", im_recurrent},
	{"LSTM", im_recurrent},
	{"GRU", im_recurrent},
	{"Squeeze", im_squeeze},
	{"Unsqueeze", im_unsqueeze},
	{"Shape", im_shape_op},
	{"Constant", im_constant},
	{"Concat", im_concat},
	{"Expand", im_expand},
	{"ConstantOfShape", im_constant_of_shape},
};

/* The opset of the default domain, which must be one this build reads. */
static nn_status
im_opset(const Onnx__ModelProto *m, nn_error *err)
{
	for (size_t k = 0; k < m->n_opset_import; k++)
	{
		const Onnx__OperatorSetIdProto *o = m->opset_import[k];

		if (o->domain && o->domain[0] && strcmp(o->domain, "ai.onnx") != 0)
			continue;
		if (o->version < OX_OPSET_MIN || o->version > OX_OPSET_MAX)
		{
			nn_fail(err, NN_ERR_UNSUPPORTED, -1,
					"unsupported ONNX opset version %lld",
					(long long) o->version);
			nn_detail(err, "This build reads opsets %d to %d.", OX_OPSET_MIN,
					  OX_OPSET_MAX);
			return NN_ERR_UNSUPPORTED;
		}
		return NN_OK;
	}
	return nn_fail(err, NN_ERR_CORRUPT, -1,
				   "ONNX model imports no opset of the default domain");
}

/* The initializers and the one real input, (batch, fixed dims...). */
static nn_status
im_inputs(ox_imp *im, const Onnx__GraphProto *g, nn_error *err)
{
	const Onnx__ValueInfoProto *in = NULL;
	ox_val	   *v;
	nn_status	st;

	for (size_t k = 0; k < g->n_initializer; k++)
	{
		if (!g->initializer[k]->name)
			return nn_fail(err, NN_ERR_CORRUPT, -1, "ONNX initializer has no name");
		v = im_new(im, g->initializer[k]->name);
		if (!v)
			return ox_nomem(&im->ar, err);
		if ((st = im_tensor(im, v, g->initializer[k], err)) != NN_OK)
			return st;
	}
	for (size_t k = 0; k < g->n_input; k++)
		if (g->input[k]->name && !im_find(im, g->input[k]->name))
		{
			if (in)
				return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
							   "ONNX model has more than one input");
			in = g->input[k];
		}
	if (!in || g->n_output != 1 || !g->output[0]->name)
		return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
					   "ONNX model must have one input and one output");
	im->input = in->name;
	if (!in->type || in->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
		!in->type->tensor_type->shape ||
		in->type->tensor_type->shape->n_dim < 2 ||
		in->type->tensor_type->shape->n_dim > 4)
		return nn_fail(err, NN_ERR_DATA, -1,
					   "cannot resolve the shape of ONNX input \"%s\"", in->name);
	v = im_new(im, in->name);
	if (!v)
		return ox_nomem(&im->ar, err);
	v->dyn = true;
	v->rank = (int) in->type->tensor_type->shape->n_dim;
	for (int a = 0; a < v->rank; a++)
	{
		const Onnx__TensorShapeProto__Dimension *d =
			in->type->tensor_type->shape->dim[a];
		bool		known = d->value_case ==
			ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0;

		if (a == 0)
			im->fixed_batch = known ? d->dim_value : -1;
		else if (!known || d->dim_value > INT32_MAX)
			return nn_fail(err, NN_ERR_DATA, -1,
						   "cannot resolve dimension %d of ONNX input \"%s\"",
						   a, in->name);
		v->dims[a] = a == 0 ? 1 : d->dim_value;
	}
	im_plain(v);
	/* an NCHW image is read as nnpg reads every image, channels last */
	if (v->rank == 4)
		memcpy(v->order, ox_hwc, sizeof(ox_hwc));
	return NN_OK;
}

/* Map every node in order. */
static nn_status
im_nodes(ox_imp *im, const Onnx__GraphProto *g, nn_error *err)
{
	for (size_t k = 0; k < g->n_node; k++)
	{
		const Onnx__NodeProto *n = g->node[k];
		im_op_fn	fn = NULL;
		nn_status	st;

		im->node = n;
		if (!n->op_type)
			return nn_fail(err, NN_ERR_CORRUPT, -1, "ONNX node has no operator");
		if (!n->domain || !n->domain[0] || strcmp(n->domain, "ai.onnx") == 0)
			for (int j = 0; j < NN_LENGTH(im_ops); j++)
				if (strcmp(im_ops[j].name, n->op_type) == 0)
					fn = im_ops[j].fn;
		if (!fn)
		{
			nn_fail(err, NN_ERR_UNSUPPORTED, -1,
					"unsupported ONNX operator \"%s\" in node \"%s\"",
					n->op_type, n->name ? n->name : "");
			nn_detail(err, "nnpg has no layer for this operator.");
			return NN_ERR_UNSUPPORTED;
		}
		for (size_t j = 0; j < n->n_input; j++)
			if (n->input[j][0] && !im_find(im, n->input[j]))
				return nn_fail(err, NN_ERR_CORRUPT, -1,
							   "ONNX node \"%s\" reads \"%s\", which is not defined before it",
							   n->name ? n->name : "", n->input[j]);
		if ((st = fn(im, err)) != NN_OK)
			return st;
	}
	return NN_OK;
}

/* The graph's output must be the running tensor in nnpg's storage order. */
static nn_status
im_output(ox_imp *im, const Onnx__GraphProto *g, nn_error *err)
{
	static Onnx__NodeProto out_node = ONNX__NODE_PROTO__INIT;
	char	   *ins[1] = {g->output[0]->name};
	ox_val	   *v;
	int			want[OX_MAX_DIMS];
	nn_status	st;

	out_node.name = "output";
	out_node.op_type = "output";
	out_node.n_input = 1;
	out_node.input = ins;
	im->node = &out_node;
	st = im_dyn_in(im, 0, &v, err);
	im->node = NULL;
	if (st != NN_OK || v->batch != 0 || v->map)
		return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
					   "ONNX output \"%s\" is not in a layout nnpg can produce",
					   g->output[0]->name);
	for (int a = 1; a < v->rank; a++)
		want[a - 1] = a;
	for (int a = 0, j = 0; a < v->rank - 1; a++)
		if (v->dims[v->order[a]] != 1 && v->order[a] != want[j++])
			return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
						   "ONNX output \"%s\" is not in a layout nnpg can produce",
						   g->output[0]->name);
	if (im->n_layers == 0)
		return nn_fail(err, NN_ERR_UNSUPPORTED, -1,
					   "ONNX model has no operator nnpg maps to a layer");
	return NN_OK;
}

/* Every weight and statistic of the imported model is finite. */
static nn_status
im_check_finite(const nn_model *m, nn_error *err)
{
	for (int64_t i = 0; i < m->n_params; i++)
		if (!isfinite(m->params[i]))
			return nn_fail(err, NN_ERR_DATA, -1,
						   "the ONNX model's weights are not finite once its attributes are applied");
	for (int64_t i = 0; i < m->n_state; i++)
		if (!isfinite(m->state[i]))
			return nn_fail(err, NN_ERR_DATA, -1,
						   "the ONNX model's statistics are not finite");
	return NN_OK;
}

/* Build the model of the spec and copy the imported weights in. */
static nn_status
im_build(ox_imp *im, nn_model **out, const nn_alloc *a, nn_error *err)
{
	nn_model_spec spec = {0};
	nn_model   *m;
	nn_status	st;

	spec.n_layers = im->n_layers;
	spec.layers = im->layers;
	spec.input_rank = im->in_rank;
	memcpy(spec.input_shape, im->in_shape, sizeof(spec.input_shape));
	st = nn_model_create(&m, &spec, 0, im->max_bytes, a, err);
	if (st != NN_OK)
		return st;
	for (int k = 0; k < m->n_layers; k++)
	{
		nn_layer   *l = &m->layers[k];
		ox_weights *w = &im->weights[k];

		if (l->w_len != w->w_len || l->r_len != w->r_len ||
			l->b_len != w->b_len || (w->s_len && l->channels != w->s_len))
		{
			nn_model_free(m);
			return nn_fail(err, NN_ERR_INTERNAL, k,
						   "imported weights of layer %d do not fit", k + 1);
		}
		if (w->w_len)
			memcpy(m->params + l->w_off, w->w, sizeof(float) * w->w_len);
		if (w->r_len)
			memcpy(m->params + l->r_off, w->r, sizeof(float) * w->r_len);
		if (w->b_len)
			memcpy(m->params + l->b_off, w->b, sizeof(float) * w->b_len);
		if (w->s_len)
		{
			memcpy(m->state + l->s_off, w->mean, sizeof(float) * w->s_len);
			memcpy(m->state + l->s_off + w->s_len, w->var,
				   sizeof(float) * w->s_len);
		}
	}
	/* attributes folded in (Gemm's alpha, a bias's beta) may overflow */
	if ((st = im_check_finite(m, err)) != NN_OK)
	{
		nn_model_free(m);
		return st;
	}
	*out = m;
	return NN_OK;
}

nn_status
nn_model_import_onnx(nn_model **out, const uint8_t *buf, size_t len,
					 size_t max_bytes, const nn_alloc *a, nn_error *err)
{
	ox_imp	   *im;
	ox_arena	ar = {.a = a};
	ProtobufCAllocator pa;
	Onnx__ModelProto *model;
	nn_status	st;

	*out = NULL;
	/* protobuf-c's allocations count too: a tensor unpacks to about its
	 * own bytes, an int64 list to at most eight times its bytes */
	if (max_bytes)
		ar.cap = max_bytes + 8 * len + 65536;
	im = ox_alloc(&ar, sizeof(ox_imp));
	if (!im)
		return ox_nomem(&ar, err);
	memset(im, 0, sizeof(*im));
	im->ar = ar;
	im->max_bytes = max_bytes;
	im->rnn_layer = -1;
	im->act_layer = -1;
	pa.alloc = ox_pb_alloc;
	pa.free = ox_pb_free;
	pa.allocator_data = &im->ar;
	model = onnx__model_proto__unpack(&pa, len, buf);
	if (!model)
	{
		if (im->ar.over || im->ar.failed)
			st = ox_nomem(&im->ar, err);
		else
			st = nn_fail(err, NN_ERR_CORRUPT, -1,
						 "invalid ONNX model: the bytes are not a ModelProto");
	}
	else if (!model->graph)
		st = nn_fail(err, NN_ERR_CORRUPT, -1, "invalid ONNX model: no graph");
	else if ((st = im_opset(model, err)) == NN_OK &&
			 (st = im_inputs(im, model->graph, err)) == NN_OK &&
			 (st = im_nodes(im, model->graph, err)) == NN_OK &&
			 (st = im_output(im, model->graph, err)) == NN_OK)
		st = im_build(im, out, a, err);
	ar = im->ar;
	ox_arena_free(&ar);
	return st;
}
