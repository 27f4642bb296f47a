/*
 * nn_internal.h: structures and kernels shared by the core's own files.
 *
 * Not part of the public interface (nn.h).  A model is an array of layers
 * over one flat parameter vector; every layer's work buffers are sized by
 * nn_model_prepare() for the largest batch.
 */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

#include <stdarg.h>

#include "nn.h"
#include "qgemm.h"

/*
 * NN_SIMD on a function with hot loops: on x86-64 it is also compiled for
 * AVX2 and FMA (x86-64-v3), and the dynamic loader picks the version the
 * processor runs (GCC's and clang's function multi-versioning).  The rest
 * of the core stays baseline x86-64; BLAS picks its own kernels.  Mark the
 * function that holds the loops (not one with an OpenMP region in it), so
 * that everything it inlines is compiled for the same target.
 */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define NN_SIMD __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NN_SIMD
#endif

typedef struct nn_layer_type nn_layer_type;

/*
 * The int8 state of a dense or conv2d layer of a quantized model
 * (quantize.c): its kernel as packed int8 with per output channel scales
 * (the float kernel is gone), and, when the model was calibrated, how its
 * input is quantized.  Owned by the model (nn_model.qlayers).
 */
typedef struct nn_qlayer
{
	nn_qweights w;				/* (F, K) int8 and F scales, packed */
	bool		acts;			/* input quantized with act: int8 x int8 */
	nn_qparams	act;			/* the input's scale and zero point */
} nn_qlayer;

/*
 * What a forward pass is for.  The layers that behave differently in
 * training and prediction (dropout, gaussian_noise, the augmentation
 * layers, batchnorm) read it, and it decides what the forward keeps for a
 * backward pass and what that backward computes:
 *   PREDICT  prediction: dropout, noise and augmentation are the identity
 *            (random_crop takes the centre window), batchnorm uses its
 *            moving statistics, nothing is drawn or updated; nothing is
 *            kept for a backward pass.
 *   DIFF     the same function as PREDICT, differentiated: the forward
 *            also keeps what the input gradient needs, and the backward
 *            computes dx only, no parameter gradients.  Model attributions
 *            (explain.c) are made of it.
 *   TRAIN    training: random layers draw from the rng, batchnorm
 *            normalizes with (and updates) batch statistics; the backward
 *            computes parameter gradients and dx.
 * The buffers of each pass include those of the pass before it, so a
 * model prepared for one runs the passes before it too.
 */
typedef enum nn_pass
{
	NN_PASS_PREDICT = 0,
	NN_PASS_DIFF,
	NN_PASS_TRAIN
} nn_pass;

/* One layer of a built model. */
typedef struct nn_layer
{
	nn_layer_spec spec;			/* with derived defaults resolved */
	const nn_layer_type *type;	/* the kind's row of the layer table */
	int32_t		index;			/* 0-based position in the model */
	int32_t		in_rank;
	int32_t		in_shape[NN_MAX_RANK];
	int32_t		out_rank;
	int32_t		out_shape[NN_MAX_RANK];
	size_t		in_size;		/* floats per sample */
	size_t		out_size;
	/* conv2d / pools: geometry resolved from the spec */
	int32_t		pad_top;
	int32_t		pad_left;
	/* trainable tensors in the model's flat vector (-1: none) */
	int64_t		w_off;
	int64_t		w_len;
	int64_t		b_off;
	int64_t		b_len;
	int64_t		r_off;			/* rnn layers: recurrent kernel (units, G units) */
	int64_t		r_len;
	/* all of them, w then r then b, at t_off of the optimizer slots (-1:
	 * frozen or weightless) */
	int64_t		t_off;
	/* normalize, batchnorm: per-channel statistics in the model's state vector */
	int64_t		s_off;			/* mean at s_off, variance at s_off + C */
	int32_t		channels;
	double	   *acc;			/* (3, C): count-free Welford sums while adapting */
	int64_t		acc_n;
	/* forward results of the last batch */
	nn_pass		pass;			/* what that forward was for */
	const float *x;				/* input (B, in_size), not owned */
	float	   *y;				/* output (B, out_size): own buffer or x */
	float	   *ybuf;			/* own output buffer, NULL for identity layers */
	float	   *logits;			/* last layer, softmax/sigmoid: pre-activation */
	float	   *col;			/* conv2d: im2col (B*OH*OW, KH*KW*C), or
								 * Winograd's transformed input */
	bool		wino;			/* conv2d computed by winograd.c */
	float	   *wt;				/* Winograd: transformed kernel (and its
								 * gradient in training), see winograd.c */
	bool		wt_ready;		/* wt holds U and the kernel it came from */
	int32_t    *argmax;			/* max pools: (B, out_size) input offsets */
	float	   *mask;			/* dropout: (B, in_size) scaled keep mask */
	float	   *work;			/* (B, buffers.work) floats, see the kind */
	/* int8 layers of a quantized model (quantize.c) */
	nn_qlayer  *q;				/* NULL: float */
	uint8_t    *xq;				/* (B, buffers.qbytes): quantized input */
	float	   *qwork;			/* weight-only product's scratch, once */
	size_t		qwork_len;		/* its floats */
} nn_layer;

/* What a layer needs besides its output buffer, per sample unless noted. */
typedef struct nn_layer_buffers
{
	size_t		col;			/* floats: conv2d im2col or Winograd input */
	size_t		argmax;			/* int32_t: max pools' argmax (backward) */
	size_t		mask;			/* floats: dropout mask (training) */
	size_t		work;			/* floats: the kind's scratch */
	size_t		kernel;			/* floats, once: Winograd's kernel */
	size_t		qbytes;			/* uint8_t: an int8 layer's quantized input */
	size_t		qwork;			/* floats, once: weight-only scratch */
} nn_layer_buffers;

/* Kind flags (nn_layer_type.flags). */
#define NN_KIND_RELABEL		0x01	/* output is the input relabelled: flatten,
									 * reshape (always an identity) */
#define NN_KIND_ACTIVATES	0x02	/* applies spec.activation to its output,
									 * which a loss may fuse with */
#define NN_KIND_STATE		0x04	/* keeps per-channel mean and variance */
#define NN_KIND_TOKENS		0x08	/* reads token ids: only NN_KIND_KEEPS_IDS
									 * kinds may come before it */
#define NN_KIND_KEEPS_IDS	0x10	/* passes token ids on unmixed */
#define NN_KIND_ADAPTS		0x20	/* its state is adapted from the training
									 * data before the first fit */
#define NN_KIND_PRUNABLE	0x40	/* nn_model_prune prunes its kernel and
									 * recurrent kernel */
#define NN_KIND_QUANTIZABLE	0x80	/* nn_model_quantize makes its kernel
									 * int8 (it has one, and no recurrent
									 * kernel); the forward reads l->q */

/*
 * A row of the layer table (layer.c): everything about one layer kind.
 * The functions see a layer whose spec passed the option checks and whose
 * input shape, in_size and default output shape (the input's) are set.
 */
struct nn_layer_type
{
	const char *name;
	uint8_t		since;			/* model format version that added it */
	uint8_t		flags;			/* NN_KIND_* */
	const nn_kind_option *options;
	int32_t		n_options;
	const void *impl;			/* the family's own data, or NULL */
	/* derived defaults before the checks, or NULL */
	void		(*resolve) (nn_layer_spec *spec);
	/* kind checks, output shape and tensor lengths (w, r, b, channels);
	 * NULL: the output is the input's shape and there are no tensors */
	nn_status	(*infer) (nn_layer *l, nn_error *err);
	/* initial weights; false when scratch memory cannot be had; or NULL */
	bool		(*init) (nn_model *m, nn_layer *l, nn_rng *rng);
	/* l->ybuf from l->x over n rows (NN_ERR_DATA only for bad input ids) */
	nn_status	(*forward) (nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
							nn_rng *rng, nn_error *err);
	/* after a forward that was not PREDICT: dx (NULL: not needed) from dy
	 * (n, out_size), and the parameter gradients after a TRAIN forward */
	void		(*backward) (nn_model *m, nn_layer *l, float *dx, float *dy,
							 int32_t n);
	/* buffers besides the output (zeroed by the caller), or NULL */
	void		(*buffers) (const nn_layer *l, nn_pass pass,
							nn_layer_buffers *b);
	/* is the forward a pass-through of the input?  NULL: never */
	bool		(*identity) (const nn_layer *l, nn_pass pass);
	/* parameters as Keras counts them; NULL: w_len + r_len + b_len */
	int64_t		(*keras_params) (const nn_layer *l);
};

/* Option rows, in model-bytes order (nn_options[] in layer.c). */
typedef enum nn_option_id
{
	NN_OPTION_ACTIVATION,
	NN_OPTION_ALPHA,
	NN_OPTION_UNITS,
	NN_OPTION_FILTERS,
	NN_OPTION_KERNEL_SIZE,
	NN_OPTION_STRIDES,
	NN_OPTION_PADDING,
	NN_OPTION_USE_BIAS,
	NN_OPTION_SHAPE,
	NN_OPTION_RATE,
	NN_OPTION_SCALE,
	NN_OPTION_OFFSET,
	NN_OPTION_L1,
	NN_OPTION_L2,
	NN_OPTION_EPSILON,
	NN_OPTION_ADAPTED,
	NN_OPTION_MOMENTUM,
	NN_OPTION_INPUT_DIM,
	NN_OPTION_OUTPUT_DIM,
	NN_OPTION_RECURRENT_ACTIVATION,
	NN_OPTION_RETURN_SEQUENCES,
	/* format version 3: the augmentation layers */
	NN_OPTION_MODE,
	NN_OPTION_HEIGHT_FACTOR,
	NN_OPTION_WIDTH_FACTOR,
	NN_OPTION_FILL_MODE,
	NN_OPTION_FILL_VALUE,
	NN_OPTION_FACTOR,
	NN_OPTION_HEIGHT,
	NN_OPTION_WIDTH,
	NN_OPTION_VALUE_RANGE,
	NN_OPTION_STDDEV,
	NN_OPTION_TRAINABLE,
	NN_OPTION_COUNT
} nn_option_id;

extern const nn_option nn_options[NN_OPTION_COUNT];

/* Elements of an array. */
#define NN_LENGTH(a) ((int32_t) (sizeof(a) / sizeof((a)[0])))

/* A kind's option list entry for option row id: NN_TAKES(ID, .def = 1). */
#define NN_TAKES(id, ...) {&nn_options[id], __VA_ARGS__}

/* Fail with NN_ERR_SPEC naming layer l: "layer 3 (conv2d): ...". */
#define NN_LAYER_FAIL(l, err, fmt, ...) \
	nn_fail((err), NN_ERR_SPEC, (l)->index, "layer %d (%s): " fmt, \
			(l)->index + 1, (l)->type->name, ##__VA_ARGS__)

/* The table's row of a kind, NULL when the kind is not valid. */
const nn_layer_type *nn_layer_type_of(nn_layer_kind kind);
/* The kind's entry for an option row, NULL when it does not take it. */
const nn_kind_option *nn_layer_takes(const nn_layer_type *t,
									 const nn_option *opt);
/* Does the option hold the value it has in kinds that do not take it? */
bool		nn_option_is_unset(const nn_layer_spec *spec, const nn_option *opt);

struct nn_model
{
	nn_alloc	alloc;
	nn_model_spec spec;			/* layers array owned */
	nn_layer   *layers;
	int32_t		n_layers;
	int64_t		n_params;
	float	   *params;
	float	   *grads;
	float	   *slots[2];		/* optimizer state, n_train each */
	int32_t		n_slots;
	int64_t		n_train;		/* parameters of the trainable layers */
	int64_t		n_state;		/* non-trainable values (normalize) */
	float	   *state;
	/* work buffers */
	int32_t		batch_cap;
	nn_pass		pass_cap;		/* the pass they were sized for */
	float	   *dbuf[2];		/* (B, max size) gradient ping-pong */
	float	   *dloss;			/* (B, out_size) gradient of the output */
	size_t		max_size;
	/* training configuration */
	bool		training_set;
	nn_optimizer_spec opt;
	nn_loss_kind loss;
	float	   *class_weights;
	int32_t		n_class_weights;
	int64_t		step;
	float		lr_scale;		/* reduce-on-plateau multiplier */
	double		penalty;		/* L1/L2 of the last gradient computation */
	/* pruning (prune.c): bit i of the parameters is 1 where a weight is
	 * kept, 0 where it is pruned (and stays 0); NULL: not pruned */
	uint8_t    *mask;
	/* distillation (distill.c): the teacher, not owned; 3 k doubles */
	nn_model   *teacher;
	float		temperature;
	float		distill_alpha;
	double	   *distill_buf;
	/* int8 quantization (quantize.c): one entry per layer, used by the
	 * NN_KIND_QUANTIZABLE ones; NULL: a float model */
	nn_qlayer  *qlayers;
};

/* spec validation with parameter and statistics counts (model.c) */
nn_status	nn_spec_counts(const nn_model_spec *spec, size_t *n_params,
						   size_t *n_state, nn_error *err);
nn_status	nn_model_build(nn_model **out, const nn_model_spec *spec,
						   size_t max_bytes, const nn_alloc *alloc,
						   nn_error *err);
/* Buffers for passes of up to max_batch rows (nn_model_prepare). */
nn_status	nn_model_prepare_pass(nn_model *m, int32_t max_batch, nn_pass pass,
								  size_t max_bytes, nn_error *err);
/* Inference forward of n rows; *out is the output layer's buffer. */
nn_status	nn_model_forward(nn_model *m, const float **out, const float *x,
							 int32_t n, nn_error *err);
/*
 * Forward of n rows through layers [first, upto) in a pass that draws
 * nothing (PREDICT or DIFF): x is layer first's input, *out the last
 * output (x when first == upto).
 */
nn_status	nn_model_forward_layers(nn_model *m, const float **out,
									const float *x, int32_t n, int first,
									int upto, nn_pass pass, nn_error *err);
/*
 * After a DIFF forward of n rows from layer first (to the last): dx (n,
 * layers[first].in_size) from dy (n, out_size), the gradient w.r.t. the
 * output after its activation, which is overwritten.
 */
void		nn_model_diff_backward(nn_model *m, float *dx, float *dy,
								   int32_t n, int first);
/* The output layer's pre-activation of the last forward (softmax and
 * sigmoid outputs), else NULL. */
const float *nn_model_logits(const nn_model *m);
/* Pruning (prune.c): is parameter i kept?  Zero the gradients of the
 * pruned ones, so that they stay zero. */
static inline bool
nn_mask_kept(const uint8_t *mask, int64_t i)
{
	return (mask[i >> 3] >> (i & 7)) & 1;
}
void		nn_mask_gradients(nn_model *m);
/* A mask of every parameter kept, or NULL when out of memory. */
uint8_t    *nn_mask_alloc(const nn_model *m);

/* Free work buffers; the next nn_model_prepare_pass allocates them. */
void		nn_model_free_buffers(nn_model *m);

/* int8 models (quantize.c) */
/* NN_ERR_UNSUPPORTED when the model is int8: "model is int8 and cannot be
 * <done>", with detail as the error's detail; else NN_OK. */
nn_status	nn_quant_refuse(const nn_model *m, const char *done,
							const char *detail, nn_error *err);
/* Install layer i's int8 kernel q (F, K) and scales (F), and its input's
 * quantization when acts; allocates m->qlayers at the first. */
nn_status	nn_quant_set_layer(nn_model *m, int i, const int8_t *q,
							   const float *scale, bool acts, nn_qparams act,
							   nn_error *err);
/* After every quantizable layer is set: drop the float kernels from the
 * parameter vector, and the training state, mask and work buffers. */
nn_status	nn_quant_finish(nn_model *m, nn_error *err);
/* Free the int8 state. */
void		nn_quant_free(nn_model *m);
/* Value (o, k) of a packed int8 kernel. */
static inline int8_t
nn_quant_weight(const nn_qweights *w, int32_t o, int32_t k)
{
	return w->panel[((size_t) (o / NN_QGEMM_PANEL) * w->groups + k / NN_QGEMM_GROUP) *
					NN_QGEMM_PANEL * NN_QGEMM_GROUP +
					(o % NN_QGEMM_PANEL) * NN_QGEMM_GROUP + k % NN_QGEMM_GROUP];
}
/* Zero weights of an int8 kernel. */
int64_t		nn_quant_zeros(const nn_qweights *w);
/* Threads a weight-only product of l may use with its scratch. */
int32_t		nn_quant_threads(const nn_layer *l);
/* Run every int8 product on a kernel path (tests: every path gives the
 * same results); NN_ERR_INTERNAL when the processor lacks it. */
nn_status	nn_model_set_qpath(nn_model *m, nn_qpath path, nn_error *err);

/* The teacher's part of a training batch (distill.c). */
nn_status	nn_distill_batch(nn_model *m, const float *x, int32_t n,
							 double *batch_loss, nn_error *err);
/* A layer's parameters: their count, the first at *off. */
int64_t		nn_layer_span(const nn_layer *l, int64_t *off);

/* errors */
nn_status	nn_fail(nn_error *err, nn_status status, int layer,
					const char *fmt,...) __attribute__((format(printf, 4, 5)));
void		nn_detail(nn_error *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* checked size arithmetic: false on overflow */
bool		nn_size_mul(size_t *out, size_t a, size_t b);
bool		nn_size_add(size_t *out, size_t a, size_t b);

/* allocation through the model's hooks */
void	   *nn_alloc_bytes(const nn_alloc *a, size_t size);
void		nn_free_bytes(const nn_alloc *a, void *p);

/* activations over rows of width k (softmax is per row) */
void		nn_act_forward(nn_activation act, float alpha, float *y,
						   const float *x, size_t rows, size_t k);
/* dz = dy * f'(.) given the output y; in place allowed */
void		nn_act_backward(nn_activation act, float alpha, float *dz,
							const float *dy, const float *y, size_t rows,
							size_t k);

/* work splitting (threads.c): is it worth the team; rows [r0, r1) of n */
bool		nn_par(double work, int32_t pieces);
void		nn_thread_rows(int32_t n, int32_t *r0, int32_t *r1);
int32_t		nn_team_size(void);

/* GEMM layers' shared steps (affine.c) */
void		nn_glorot_uniform(float *w, int64_t n, double fan_in,
							  double fan_out, nn_rng *rng);
void		nn_affine_finish(const nn_layer *l, float *y, float *logits,
							 const float *b, size_t rows, size_t k);
void		nn_affine_grads(nn_model *m, const nn_layer *l, const float *X,
							const float *dz, int K, int F, size_t M);
void		nn_bias_grads(nn_model *m, const nn_layer *l, const float *dz,
						  int F, size_t M);

/* image windows of conv2d and the pools (spatial.c) */
typedef struct nn_window
{
	int32_t		H,
				W,
				C;				/* input */
	int32_t		OH,
				OW;				/* output */
	int32_t		KH,
				KW;				/* kernel or pool size */
	int32_t		SH,
				SW;				/* strides */
} nn_window;

nn_window	nn_window_of(const nn_layer *l);
/* Checks sizes and input rank; sets out_shape[0..1] and the padding. */
nn_status	nn_window_infer(nn_layer *l, const char *size_name, nn_error *err);

/* layer dispatch through the table (layer.c) */
nn_status	nn_layer_infer(nn_layer *l, int index, nn_error *err);
nn_status	nn_layer_forward(nn_model *m, nn_layer *l, int32_t n,
							 nn_pass pass, nn_rng *rng, nn_error *err);
/* dx may be NULL when the input gradient is not needed */
void		nn_layer_backward(nn_model *m, nn_layer *l, float *dx, float *dy,
							  int32_t n, bool fused);
bool		nn_layer_init_params(nn_model *m, nn_layer *l, nn_rng *rng);
void		nn_layer_buffers_of(const nn_layer *l, nn_pass pass,
								nn_layer_buffers *b);
bool		nn_layer_is_identity(const nn_layer *l, nn_pass pass);
/* Does the backward compute parameter gradients (after a TRAIN forward)? */
static inline bool
nn_layer_param_grads(const nn_layer *l)
{
	return l->pass == NN_PASS_TRAIN;
}
/* The activation applied at the layer's output (linear when none). */
nn_activation nn_layer_out_activation(const nn_layer *l);
int64_t		nn_layer_keras_params(const nn_layer *l);
/* Does the kind keep non-trainable per-channel statistics (2 C floats)? */
bool		nn_layer_has_state(nn_layer_kind kind);

/* 3x3 stride-1 conv2d by Winograd F(4x4, 3x3) (winograd.c) */
bool		nn_wino_fits(const nn_layer *l);
size_t		nn_wino_col_size(const nn_layer *l);	/* per sample */
size_t		nn_wino_work_size(const nn_layer *l);	/* per sample */
size_t		nn_wino_kernel_size(const nn_layer *l, bool param_grads);
void		nn_wino_forward(nn_model *m, nn_layer *l, const float *x, int32_t n);
void		nn_wino_backward(nn_model *m, nn_layer *l, float *dx,
							 const float *dz, int32_t n);

/* normalize statistics from the data (preprocess.c) */
void		nn_normalize_accumulate(nn_layer *l, const float *in, int32_t n);
nn_status	nn_normalize_finish(nn_model *m, nn_layer *l, nn_error *err);

/* losses (loss.c): value and gradient w.r.t. the output (or logits if fused) */

/* A batch of n rows of k outputs for nn_loss_compute. */
typedef struct nn_loss_batch
{
	const float *y;				/* outputs (n, k) */
	const float *logits;		/* pre-activation (n, k), read when fused */
	const float *t;				/* targets: (n) class indices if sparse,
								 * else (n, k) */
	int32_t		n;
	size_t		k;
	const float *class_weights; /* (n_cw) by class, or NULL */
	int32_t		n_cw;
	nn_activation out_act;		/* the last layer's activation */
	nn_loss_kind loss;
} nn_loss_batch;

bool		nn_loss_fused(nn_loss_kind loss, nn_activation out_act);

/*
 * Adds sum_r w_r L_r to *loss_sum and the number of correctly classified
 * rows to *correct (if not NULL); when dout is not NULL writes into it the
 * gradient (n, k) of the batch-mean loss w.r.t. the outputs (w.r.t. the
 * logits when fused).  Fails on a bad class index or a non-finite loss.
 */
nn_status	nn_loss_compute(float *dout, double *loss_sum, int64_t *correct,
							const nn_loss_batch *b, nn_error *err);

/* optimizer (optim.c) */
int32_t		nn_optimizer_slots(nn_optimizer_kind kind);
float		nn_schedule_lr(const nn_optimizer_spec *opt, int64_t step);
bool		nn_optimizer_step(nn_model *m);
double		nn_penalty_grads(nn_model *m);

#endif							/* NN_INTERNAL_H */
