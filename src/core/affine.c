/*
 * affine.c: the steps dense and conv2d layers share around their GEMMs.
 *
 * Both are Y (M, F) = X (M, K) W (K, F) + b followed by an activation, with
 * M the batch rows (dense) or the batch's output pixels (conv2d, on the
 * im2col rows).  Their gradients are dW = X^T dZ and db = the column sums
 * of dZ.  Keras's Glorot-uniform initializer draws their kernels.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "nn_internal.h"

/* Columns of dZ that column_sums keeps in registers at once. */
#define DB_COLS 32

/*
 * Glorot-uniform: n weights uniform in +-sqrt(6 / (fan_in + fan_out)).
 * https://keras.io/api/layers/initializers/#glorotuniform-class
 */
void
nn_glorot_uniform(float *w, int64_t n, double fan_in, double fan_out,
				  nn_rng *rng)
{
	double		limit = sqrt(6.0 / (fan_in + fan_out));

	for (int64_t i = 0; i < n; i++)
		w[i] = (float) ((2.0 * nn_rng_uniform(rng) - 1.0) * limit);
}

/*
 * Rows of y (rows x k) that sgemm just wrote: add the bias, keep the
 * logits when asked, apply the activation.  One pass while y is in cache.
 */
void
nn_affine_finish(const nn_layer *l, float *y, float *logits, const float *b,
				 size_t rows, size_t k)
{
	if (b)
		for (size_t r = 0; r < rows; r++)
		{
			float	   *yr = y + r * k;

			for (size_t j = 0; j < k; j++)
				yr[j] += b[j];
		}
	if (logits)
		memcpy(logits, y, sizeof(float) * rows * k);
	nn_act_forward(l->spec.activation, l->spec.alpha, y, y, rows, k);
}

/*
 * out (w) = column sums of the first w <= DB_COLS columns of z (M, ld),
 * added row after row as a scalar loop would: the result does not depend
 * on how the columns are split between threads.  The sums live in a local
 * array that the compiler keeps in registers, not in out.
 */
static void
column_sums(float *restrict out, const float *restrict z, int32_t w,
			size_t ld, size_t M)
{
	float		acc[DB_COLS];

	for (int32_t j = 0; j < w; j++)
		acc[j] = 0.0f;
	if (w == DB_COLS)
		for (size_t r = 0; r < M; r++)
			for (int32_t j = 0; j < DB_COLS; j++)
				acc[j] += z[r * ld + j];
	else
		for (size_t r = 0; r < M; r++)
			for (int32_t j = 0; j < w; j++)
				acc[j] += z[r * ld + j];
	for (int32_t j = 0; j < w; j++)
		out[j] = acc[j];
}

/* db[f0..f1) = the sums of those columns of dZ (M, F). */
static void
bias_band(float *db, const float *dz, int32_t f0, int32_t f1, int F, size_t M)
{
	for (int32_t f = f0; f < f1; f += DB_COLS)
		column_sums(db + f, dz + f, f1 - f < DB_COLS ? f1 - f : DB_COLS, F, M);
}

/* db = column sums of dZ (M, F), each thread taking a band of the columns. */
void
nn_bias_grads(nn_model *m, const nn_layer *l, const float *dz, int F, size_t M)
{
	if (l->b_len == 0)
		return;
#pragma omp parallel if (nn_par((double) F * M, F))
	{
		int32_t		f0,
					f1;

		nn_thread_rows(F, &f0, &f1);
		bias_band(m->grads + l->b_off, dz, f0, f1, F, M);
	}
}

/*
 * Parameter gradients of a GEMM layer: dW (K, F) = X^T (M, K)^T dZ (M, F)
 * and db = column sums of dZ, each thread taking a band of the F columns.
 */
void
nn_affine_grads(nn_model *m, const nn_layer *l, const float *X,
				const float *dz, int K, int F, size_t M)
{
	float	   *dw = m->grads + l->w_off;
	float	   *db = l->b_len ? m->grads + l->b_off : NULL;

#pragma omp parallel if (nn_par((double) K * F * M, F))
	{
		int32_t		f0,
					f1;

		nn_thread_rows(F, &f0, &f1);
		if (f1 > f0)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
						K, f1 - f0, (int) M, 1.0f, X, K, dz + f0, F, 0.0f,
						dw + f0, F);
		if (db)
			bias_band(db, dz, f0, f1, F, M);
	}
}
