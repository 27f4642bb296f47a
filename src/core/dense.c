/*
 * dense.c: the fully connected layer (Keras's Dense).
 *
 *   Y (B, U) = act(X (B, in) W (in, U) + b)
 *   dW = X^T dZ,  db = column sums of dZ,  dX = dZ W^T
 *
 * with dZ the gradient w.r.t. the pre-activation.  The kernel is (in, U),
 * as Keras, so the batch is one row-major GEMM; each thread takes a slice
 * of the rows.  The input must be flat: a flatten goes after convolutions.
 * In an int8 model (quantize.c) the product runs on the int8 kernel:
 * Y = act(dequant(Xq) dequant(Wq) + b), or X dequant(Wq) + b weight-only.
 * https://keras.io/api/layers/core_layers/dense/
 */
#include <cblas.h>

#include "nn_internal.h"

static const nn_kind_option dense_options[] = {
	NN_TAKES(NN_OPTION_UNITS, .required = true),
	NN_TAKES(NN_OPTION_ACTIVATION, .def = NN_ACT_LINEAR),
	NN_TAKES(NN_OPTION_ALPHA, .def = 0),
	NN_TAKES(NN_OPTION_USE_BIAS, .def = 1),
	NN_TAKES(NN_OPTION_L1, .def = 0),
	NN_TAKES(NN_OPTION_L2, .def = 0),	NN_TAKES(NN_OPTION_TRAINABLE, .def = 1),
};

/* Output (units) and tensor lengths; the input must be flat. */
static nn_status
dense_infer(nn_layer *l, nn_error *err)
{
	if (l->in_rank != 1)
		return NN_LAYER_FAIL(l, err, "input must be flat, not of rank %d",
							 l->in_rank);
	l->out_shape[0] = l->spec.units;
	l->w_len = (int64_t) l->in_size * l->spec.units;
	l->b_len = l->spec.use_bias ? l->spec.units : 0;
	return NN_OK;
}

/* Glorot-uniform kernel, zero bias. */
static bool
dense_init(nn_model *m, nn_layer *l, nn_rng *rng)
{
	nn_glorot_uniform(m->params + l->w_off, l->w_len, (double) l->in_size,
					  l->spec.units, rng);
	for (int64_t i = 0; i < l->b_len; i++)
		m->params[l->b_off + i] = 0.0f;
	return true;
}

/*
 * The int8 product (qgemm.c splits it over the team), then the activation
 * by slices of the rows.  A calibrated layer quantizes its input first.
 */
static void
dense_forward_int8(nn_model *m, nn_layer *l, int32_t n)
{
	const nn_qlayer *q = l->q;
	const float *b = l->b_len ? m->params + l->b_off : NULL;
	size_t		K = l->in_size;
	int			U = l->spec.units;

	if (q->acts)
	{
		nn_qgemm_quantize_acts(l->xq, l->x, q->act, K * n);
		nn_qgemm(l->ybuf, l->xq, &q->w, b, q->act, n, K, U);
	}
	else
		nn_qgemm_weight_only(l->ybuf, l->x, &q->w, b, l->qwork,
							 nn_quant_threads(l), n, K, U);
#pragma omp parallel if (nn_par((double) n * U * 8, n))
	{
		int32_t		r0,
					r1;

		nn_thread_rows(n, &r0, &r1);
		if (r1 > r0)
			nn_affine_finish(l, l->ybuf + (size_t) r0 * U,
							 l->logits ? l->logits + (size_t) r0 * U : NULL,
							 NULL, r1 - r0, U);
	}
}

/* Y = act(X W + b), a slice of the rows per thread. */
static nn_status
dense_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
			  nn_rng *rng, nn_error *err)
{
	const float *x = l->x;
	const float *b = l->b_len ? m->params + l->b_off : NULL;
	int			K = (int) l->in_size,
				U = l->spec.units;

	(void) pass, (void) rng, (void) err;
	if (l->q)
	{
		dense_forward_int8(m, l, n);
		return NN_OK;
	}
#pragma omp parallel if (nn_par((double) n * K * U, n))
	{
		int32_t		r0,
					r1;

		nn_thread_rows(n, &r0, &r1);
		if (r1 > r0)
		{
			/*
			 * One row (a per-row prediction) by sgemv, which reads the
			 * weights once: sgemm would first pack all of them into its
			 * own buffer.
			 */
			if (r1 - r0 == 1)
				cblas_sgemv(CblasRowMajor, CblasTrans, K, U, 1.0f,
							m->params + l->w_off, U, x + (size_t) r0 * K, 1,
							0.0f, l->ybuf + (size_t) r0 * U, 1);
			else
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
							r1 - r0, U, K, 1.0f, x + (size_t) r0 * K, K,
							m->params + l->w_off, U, 0.0f,
							l->ybuf + (size_t) r0 * U, U);
			nn_affine_finish(l, l->ybuf + (size_t) r0 * U,
							 l->logits ? l->logits + (size_t) r0 * U : NULL,
							 b, r1 - r0, U);
		}
	}
	return NN_OK;
}

/* dW, db from dZ (dy) when training; dX = dZ W^T. */
static void
dense_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	int			K = (int) l->in_size,
				U = l->spec.units;

	if (nn_layer_param_grads(l))
		nn_affine_grads(m, l, l->x, dy, K, U, (size_t) n);
	if (dx == NULL)
		return;
#pragma omp parallel if (nn_par((double) n * K * U, n))
	{
		int32_t		r0,
					r1;

		nn_thread_rows(n, &r0, &r1);
		if (r1 > r0)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
						r1 - r0, K, U, 1.0f, dy + (size_t) r0 * U, U,
						m->params + l->w_off, U, 0.0f,
						dx + (size_t) r0 * K, K);
	}
}

/* An int8 layer's quantized input or weight-only scratch. */
static void
dense_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	(void) pass;
	if (l->q && l->q->acts)
		b->qbytes = l->in_size;
	else if (l->q)
		b->qwork = nn_qgemm_weight_only_work(&l->q->w, nn_team_size());
}

const nn_layer_type nn_dense_type = {
	.name = "dense",
	.since = 1,
	.flags = NN_KIND_ACTIVATES | NN_KIND_PRUNABLE | NN_KIND_QUANTIZABLE,
	.options = dense_options,
	.n_options = NN_LENGTH(dense_options),
	.infer = dense_infer,
	.init = dense_init,
	.forward = dense_forward,
	.backward = dense_backward,
	.buffers = dense_buffers,
};
