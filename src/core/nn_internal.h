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

/* One layer of a built model. */
typedef struct nn_layer
{
	nn_layer_spec spec;
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
	/* normalize, batchnorm: per-channel statistics in the model's state vector */
	int64_t		s_off;			/* mean at s_off, variance at s_off + C */
	int32_t		channels;
	bool		adapted;
	double	   *acc;			/* (3, C): count-free Welford sums while adapting */
	int64_t		acc_n;
	/* forward results of the last batch */
	const float *x;				/* input (B, in_size), not owned */
	float	   *y;				/* output (B, out_size): own buffer or x */
	float	   *ybuf;			/* own output buffer, NULL for identity layers */
	float	   *logits;			/* last layer, softmax/sigmoid: pre-activation */
	float	   *col;			/* conv2d: im2col (B*OH*OW, KH*KW*C), or
								 * Winograd's transformed input */
	bool		wino;			/* conv2d computed by winograd.c */
	float	   *wt;				/* Winograd: transformed kernel (and its
								 * gradient when training), see winograd.c */
	bool		wt_ready;		/* wt holds U and the kernel it came from */
	int32_t    *argmax;			/* maxpool2d: (B, out_size) input offsets */
	float	   *mask;			/* dropout: (B, in_size) scaled keep mask */
	float	   *work;			/* B x nn_layer_work_size() floats, see there */
} nn_layer;

struct nn_model
{
	nn_alloc	alloc;
	nn_model_spec spec;			/* layers array owned */
	nn_layer   *layers;
	int32_t		n_layers;
	int64_t		n_params;
	float	   *params;
	float	   *grads;
	float	   *slots[2];		/* optimizer state, n_params each */
	int32_t		n_slots;
	int64_t		n_state;		/* non-trainable values (normalize) */
	float	   *state;
	/* work buffers */
	int32_t		batch_cap;
	bool		train_cap;
	float	   *dbuf[2];		/* (B, max size) gradient ping-pong */
	float	   *dloss;			/* (B, out_size) */
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
};

/* spec validation with parameter and statistics counts (model.c) */
nn_status	nn_spec_counts(const nn_model_spec *spec, size_t *n_params,
						   size_t *n_state, nn_error *err);
nn_status	nn_model_build(nn_model **out, const nn_model_spec *spec,
						   size_t max_bytes, const nn_alloc *alloc,
						   nn_error *err);

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

/* work splitting (layers.c): is it worth the team; rows [r0, r1) of n */
bool		nn_par(double work, int32_t pieces);
void		nn_thread_rows(int32_t n, int32_t *r0, int32_t *r1);

/* layer geometry and kernels (layers.c) */
nn_status	nn_layer_infer(nn_layer *l, int index, nn_error *err);
/* NN_ERR_DATA only for embedding ids that are not valid */
nn_status	nn_layer_forward(nn_model *m, nn_layer *l, int index, int32_t n,
							 bool training, nn_rng *rng, nn_error *err);
/* dx may be NULL when the input gradient is not needed */
void		nn_layer_backward(nn_model *m, nn_layer *l, float *dx, float *dy,
							  int32_t n, bool fused);
/* false only when scratch memory cannot be allocated */
bool		nn_layer_init_params(nn_model *m, nn_layer *l, nn_rng *rng);
/* Floats of l->work per sample (0: none) for the mode. */
size_t		nn_layer_work_size(const nn_layer *l, bool training);
/* Does the kind keep non-trainable per-channel statistics (2 C floats)? */
bool		nn_layer_has_state(nn_layer_kind kind);

/* rnn layers (sequence.c): gates of a kind, forward and backward (BPTT) */
int32_t		nn_rnn_gates(nn_layer_kind kind);
bool		nn_rnn_init_params(nn_model *m, nn_layer *l, nn_rng *rng);
size_t		nn_rnn_work_size(const nn_layer *l, bool training);
void		nn_rnn_forward(nn_model *m, nn_layer *l, const float *x, int32_t n);
void		nn_rnn_backward(nn_model *m, nn_layer *l, float *dx, const float *dy,
							int32_t n);

/* 3x3 stride-1 conv2d by Winograd F(4x4, 3x3) (winograd.c) */
bool		nn_wino_fits(const nn_layer *l);
size_t		nn_wino_col_size(const nn_layer *l);	/* per sample */
size_t		nn_wino_work_size(const nn_layer *l);	/* per sample */
size_t		nn_wino_kernel_size(const nn_layer *l, bool training);
void		nn_wino_forward(nn_model *m, nn_layer *l, const float *x, int32_t n);
void		nn_wino_backward(nn_model *m, nn_layer *l, float *dx,
							 const float *dz, int32_t n);

/* batchnorm, embedding, global pools (norm.c) */
void		nn_batchnorm_forward(nn_model *m, nn_layer *l, const float *x,
								 int32_t n, bool training);
void		nn_batchnorm_backward(nn_model *m, nn_layer *l, float *dx,
								  const float *dy, int32_t n);
nn_status	nn_embedding_forward(nn_model *m, nn_layer *l, int index,
								 const float *x, int32_t n, nn_error *err);
void		nn_embedding_backward(nn_model *m, nn_layer *l, float *dx,
								  const float *dy, int32_t n);
void		nn_global_pool_forward(nn_layer *l, const float *x, int32_t n);
void		nn_global_pool_backward(nn_layer *l, float *dx, const float *dy,
									int32_t n);

/* losses (loss.c): value and gradient w.r.t. the output (or logits if fused) */
bool		nn_loss_fused(nn_loss_kind loss, nn_activation out_act);
nn_status	nn_loss_compute(nn_loss_kind loss, nn_activation out_act,
							float *dout, const float *y, const float *logits,
							const float *t, int32_t n, size_t k,
							const float *class_weights, int32_t n_cw,
							double *loss_sum, int64_t *correct, nn_error *err);

/* optimizer (optim.c) */
int32_t		nn_optimizer_slots(nn_optimizer_kind kind);
float		nn_schedule_lr(const nn_optimizer_spec *opt, int64_t step);
bool		nn_optimizer_step(nn_model *m);
double		nn_penalty_grads(nn_model *m);

#endif							/* NN_INTERNAL_H */
