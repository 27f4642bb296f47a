/*
 * nn_test.h: helpers shared by the core's cmocka suites.
 *
 * - tensor comparisons that name the label, the first failing index, the
 *   actual and expected values and the worst difference;
 * - terse builders for layer and model specs;
 * - a counting allocator that can fail its k-th allocation;
 * - a central-difference gradient checker over the public API
 *   (nn_model_compute_gradients for the analytic side, its loss_sum for
 *   the loss, nn_model_params for perturbing weights);
 * - margins to the kinks of relu-like activations and max pooling, so
 *   gradient checks can assert that no perturbation crosses one.
 *
 * Tensors are laid out as in nn.h: (B, in_size) rows, images (H, W, C).
 * Everything here is deterministic: data come from nn_rng with fixed seeds.
 */
#ifndef NN_TEST_H
#define NN_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crc_shim.h"
#include "nn.h"

/* ---------- comparisons ---------- */

/*
 * True when |a[i] - e[i]| <= atol + rtol * |e[i]| for every i (NaN never
 * passes).  On failure prints the label, the first failing index with its
 * values, and the worst difference with its index, through cmocka.
 */
bool		nt_close_d(const char *label, const double *actual,
					   const double *expected, size_t n, double atol,
					   double rtol);
bool		nt_close_f(const char *label, const float *actual,
					   const float *expected, size_t n, double atol,
					   double rtol);
bool		nt_close_fd(const char *label, const float *actual,
						const double *expected, size_t n, double atol,
						double rtol);

#define assert_close_f(label, a, e, n, atol, rtol) \
	do { if (!nt_close_f((label), (a), (e), (n), (atol), (rtol))) \
			fail_msg("%s: tensors differ (atol %g, rtol %g)", (label), \
					 (double) (atol), (double) (rtol)); } while (0)
#define assert_close_fd(label, a, e, n, atol, rtol) \
	do { if (!nt_close_fd((label), (a), (e), (n), (atol), (rtol))) \
			fail_msg("%s: tensors differ (atol %g, rtol %g)", (label), \
					 (double) (atol), (double) (rtol)); } while (0)
#define assert_close_d(label, a, e, n, atol, rtol) \
	do { if (!nt_close_d((label), (a), (e), (n), (atol), (rtol))) \
			fail_msg("%s: tensors differ (atol %g, rtol %g)", (label), \
					 (double) (atol), (double) (rtol)); } while (0)
#define assert_scalar_close(label, a, e, atol, rtol) \
	do { double _a = (a), _e = (e); \
		if (!nt_close_d((label), &_a, &_e, 1, (atol), (rtol))) \
			fail_msg("%s: %.9g differs from %.9g", (label), _a, _e); } while (0)

/* Quiet variant for tests of the comparison itself. */
extern bool nt_quiet;

/* ---------- status checks ---------- */

#define assert_ok(call, errp) \
	do { nn_status _st = (call); \
		if (_st != NN_OK) \
			fail_msg("%s returned %d: %s (%s)", #call, (int) _st, (errp)->message, (errp)->detail); \
	} while (0)

#define assert_status(call, want, errp) \
	do { nn_status _st = (call); \
		if (_st != (want)) \
			fail_msg("%s returned %d, expected %d (%s)", #call, (int) _st, \
					 (int) (want), (errp)->message); \
	} while (0)

/* ---------- spec builders ---------- */

nn_layer_spec nt_dense(int32_t units, nn_activation act);
nn_layer_spec nt_dense_nobias(int32_t units, nn_activation act);
nn_layer_spec nt_conv(int32_t filters, int32_t kh, int32_t kw, int32_t sh,
					  int32_t sw, bool same, nn_activation act);
nn_layer_spec nt_pool(nn_layer_kind kind, int32_t kh, int32_t kw, int32_t sh,
					  int32_t sw, bool same);
nn_layer_spec nt_plain(nn_layer_kind kind);	/* flatten, normalize */
nn_layer_spec nt_reshape3(int32_t a, int32_t b, int32_t c);
nn_layer_spec nt_reshape1(int32_t a);
nn_layer_spec nt_dropout(float rate);
nn_layer_spec nt_act(nn_activation act);
nn_layer_spec nt_rescale(float scale, float offset);
/* simple_rnn, lstm or gru with Keras's default activations */
nn_layer_spec nt_rnn(nn_layer_kind kind, int32_t units, bool return_sequences);
nn_layer_spec nt_embedding(int32_t input_dim, int32_t output_dim);
nn_layer_spec nt_reshape2(int32_t a, int32_t b);

/*
 * The augmentation layers (format version 3).  Ranges are [lo, hi]; a zoom
 * width of NAN, NAN is absent (the height's draw is used).
 */
nn_layer_spec nt_random_flip(nn_flip_mode mode);
nn_layer_spec nt_random_translation(float hlo, float hhi, float wlo, float whi,
									nn_fill_mode fill, float fill_value);
nn_layer_spec nt_random_rotation(float lo, float hi, nn_fill_mode fill,
								 float fill_value);
nn_layer_spec nt_random_zoom(float hlo, float hhi, float wlo, float whi,
							 nn_fill_mode fill, float fill_value);
nn_layer_spec nt_random_crop(int32_t height, int32_t width);
nn_layer_spec nt_random_contrast(float lo, float hi);
/* value_range [0, 1] (the default) when vlo, vhi are NAN */
nn_layer_spec nt_random_brightness(float lo, float hi, float vlo, float vhi);
nn_layer_spec nt_gaussian_noise(float stddev);

/* A model spec over a caller-owned layer array; unused dims are 0. */
nn_model_spec nt_spec(int32_t rank, int32_t d0, int32_t d1, int32_t d2,
					  nn_layer_spec *layers, int32_t n);

#define NT_NLAYERS(arr) ((int32_t) (sizeof(arr) / sizeof((arr)[0])))

/* Create a model with malloc and no limit; fails the test on error. */
nn_model   *nt_create(const nn_model_spec *spec, uint64_t seed);
/* Biases, batchnorm gammas and statistics away from their initial values. */
void		nt_perturb(nn_model *m, uint64_t seed);

/* Length of the flat trainable vector (sum of kernel and bias lengths). */
int64_t		nt_flat_params(const nn_model *m);

/* ---------- data ---------- */

void		nt_fill(float *x, size_t n, nn_rng *rng, float lo, float hi);
/* Uniform in [lo, hi] with |v| >= gap (values away from 0). */
void		nt_fill_away0(float *x, size_t n, nn_rng *rng, float lo, float hi,
						  float gap);
/* A random permutation of {0, 1, ..., n-1} * step + base: no ties. */
void		nt_fill_distinct(float *x, size_t n, nn_rng *rng, float base,
							 float step);
/* One-hot rows (n, k) for the given class indices. */
void		nt_one_hot(float *t, const int *cls, int32_t n, int32_t k);

void	   *nt_xmalloc(size_t n);

/* ---------- counting allocator ---------- */

typedef struct nt_counter
{
	long		allocs;			/* successful allocations */
	long		frees;
	long		attempts;		/* allocation calls, failed ones included */
	long		fail_at;		/* fail the attempt with this 0-based index; -1 never */
	long		failed;
	size_t		live_bytes;
	size_t		peak_bytes;
	size_t		max_single;
} nt_counter;

/* Reset the counter and return hooks bound to it. */
nn_alloc	nt_counter_alloc(nt_counter *c, long fail_at);

/* ---------- models under test ---------- */

/* SGD (lr 0.01) training with the given loss and optional class weights. */
void		nt_train_setup(nn_model *m, nn_loss_kind loss, const float *cw,
						   int32_t ncw, int32_t batch);

/* Mean loss (penalties included) of compute_gradients, rng re-seeded. */
double		nt_train_loss(nn_model *m, const float *x, const float *y,
						  int32_t n, uint64_t rng_seed);

/*
 * The training-mode output (n, *out_size) of a stack of layers on x,
 * with the rng seeded with rng_seed, through the public API: the stack
 * is followed by flatten and a dense layer of n units, no bias, zero
 * kernel, and mse targets -n^2/2 on the diagonal, so that the output
 * gradient is the identity and the dense kernel's gradient is the
 * stack's output, transposed, exactly.  n must be a power of two (1 to
 * 64).  malloc'd.
 */
float	   *nt_train_output(const nn_layer_spec *layers, int32_t n_layers,
							int32_t rank, int32_t d0, int32_t d1, int32_t d2,
							const float *x, int32_t n, uint64_t rng_seed,
							size_t *out_size);

/* ---------- gradient checks ---------- */

typedef struct nt_fd_opts
{
	double		eps;			/* step: eps * max(1, |v|) */
	double		atol;			/* per-element tolerances */
	double		rtol;
	bool		skip_input;		/* no input gradient check */
	bool		skip_params;	/* no parameter gradient check */
	uint64_t	rng_seed;		/* dropout masks: same seed every evaluation */
} nt_fd_opts;

/* Defaults: eps 1e-3, atol 1e-3, rtol 1e-2. */
nt_fd_opts	nt_fd_default(void);

/*
 * Compare the analytic input gradient (dx_out) and parameter gradients
 * (nn_model_grads) of the mean loss with central differences; fails the
 * test with a report on the first mismatch.  Training must be configured
 * (nt_train_setup).  Returns the number of values checked.
 */
size_t		nt_gradcheck(const char *label, nn_model *m, const float *x,
						 const float *y, int32_t n, const nt_fd_opts *o);

/*
 * Smallest distance to a kink over the forward pass of m on x: |z| for the
 * pre-activations of relu, leaky_relu and elu layers, and the gap between
 * the two largest values of every max-pooling window.  Built from prefix
 * models sharing m's weights (models with normalize layers unsupported).
 * Returns HUGE_VAL when there is no kink.
 */
double		nt_kink_margin(nn_model *m, const float *x, int32_t n);

/*
 * Inference output (n, out) of m's first `upto` layers, with the last one's
 * activation forced to linear when linear_last (pre-activations, logits);
 * info receives that layer's shape.  malloc'd.
 */
float	   *nt_prefix_output(nn_model *m, const float *x, int32_t n, int upto,
							 bool linear_last, nn_layer_info *info);

/* ---------- naive references (double) ---------- */

/* y (B, OH, OW, F) = conv of x (B, H, W, C) with k (KH, KW, C, F) + b. */
void		nt_naive_conv(double *y, const float *x, const float *k,
						  const float *b, int32_t B, int32_t H, int32_t W,
						  int32_t C, int32_t F, int32_t KH, int32_t KW,
						  int32_t SH, int32_t SW, bool same, int32_t *OH,
						  int32_t *OW);
/* Geometry of one axis as TensorFlow: output size and leading pad. */
void		nt_axis(int32_t in, int32_t k, int32_t s, bool same, int32_t *out,
					int32_t *pad);

/* ---------- model bytes ---------- */

/* Serialize into a fresh malloc'd buffer; fails the test on error. */
uint8_t    *nt_serialize(const nn_model *m, bool with_opt, size_t *len);
/* Rewrite the header length and the trailing CRC after an edit. */
void		nt_fix_bytes(uint8_t *buf, size_t len);

/* nn_set_threads(NNPG_TEST_THREADS, default 2); returns the count. */
int			nt_setup_threads(void);

/* Set the threads, then run the group (exit status: failed tests). */
#define NT_RUN(tests) \
	(nt_setup_threads(), cmocka_run_group_tests(tests, NULL, NULL))

#endif							/* NN_TEST_H */
