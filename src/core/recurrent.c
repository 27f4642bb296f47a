/*
 * recurrent.c: simple_rnn, lstm and gru layers with backpropagation through
 * time.
 *
 * Layout: a sample is a sequence (T, F), timesteps by features, batch-major
 * and contiguous, so a batch is (B*T, F) rows.  Weights are Keras's: kernel
 * W (F, G U), recurrent kernel R (U, G U), bias (G U), gates in Keras order
 * (lstm i f c o, gru z r h); gru is Keras's reset_after=True (PyTorch's GRU)
 * with a (2, 3 U) bias, input bias then recurrent bias:
 *
 *   simple_rnn  h = act(x W + h' R + b)
 *   lstm        [i f g o] = x W + h' R + b; i, f, o = ract(.), g = act(.)
 *               c = f c' + i g; h = o act(c)
 *   gru         [xz xr xh] = x W + b_in; [hz hr hh] = h' R + b_rec
 *               z = ract(xz + hz), r = ract(xr + hr), n = act(xh + r hh)
 *               h = z h' + (1 - z) n
 *
 * with h', c' the previous step's state (zero at t = 0).  References:
 * https://keras.io/api/layers/recurrent_layers/ (SimpleRNN, LSTM, GRU).
 *
 * The input projection of all timesteps is one GEMM (B*T, F) x (F, G U);
 * each step adds one (B, U) x (U, G U) GEMM.  The states of every step are
 * kept in the layer's work buffer for the backward pass, which runs the
 * steps in reverse and ends with one GEMM each for the kernel gradient and
 * the input gradient.  Threads take slices of the batch (each sequence's
 * recurrence is independent), then bands of gate columns for the weight
 * gradients, each calling single-threaded sgemm.  The three kinds differ
 * only in their cell: one step of one sequence, forward and backward.
 *
 * Not here: dropout inside the recurrence, masking, stateful or
 * bidirectional layers, go_backwards, unroll, gru reset_after=False.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "nn_internal.h"

/* Work buffer of one layer, (B, ...) each, B the prepared batch. */
typedef struct rnn_work
{
	float	   *gates;			/* (B, T, G U) pre- then post-activation gates */
	float	   *hs;				/* (B, T, U) hidden states */
	float	   *cs;				/* (B, T, U) lstm cells; gru h' R_h + b_h */
	float	   *rbuf;			/* (B, G U) one step's h' R (+ gru b_rec) */
	float	   *dz;				/* (B, T, G U) pre-activation gradients */
	float	   *dzr;			/* (B, T, G U) gru: w.r.t. h' R + b_rec */
	float	   *dh;				/* (B, U) gradient flowing to h' */
	float	   *dc;				/* (B, U) lstm: gradient flowing to c' */
	float	   *tmp;			/* (B, U) scratch */
} rnn_work;

/* One step t of one sequence b: its rows of the work buffer. */
typedef struct rnn_step
{
	float	   *g;				/* (G U) gates: pre-activations in, then
								 * activations */
	const float *rec;			/* (G U) h' R (+ gru's recurrent bias) */
	float	   *h;				/* (U) */
	const float *hp;			/* (U) previous h, NULL at t = 0 */
	float	   *c;				/* (U) lstm cell; gru h' R_h + b_h */
	const float *cp;			/* (U) previous cell, NULL at t = 0 */
	float	   *dz;				/* (G U) pre-activation gradients */
	float	   *dr;				/* (G U) gru: w.r.t. h' R + b_rec */
	float	   *dh;				/* (U) gradient flowing to h', then h' */
	float	   *dc;				/* (U) lstm: gradient flowing to c' */
	float	   *tmp;			/* (U) scratch */
} rnn_step;

/* What a recurrent kind is: its gates and its cell (the layer's impl). */
typedef struct rnn_cell
{
	int32_t		gates;
	bool		reset_after;	/* gru: a recurrent bias and dh += z dh */
	bool		forget_bias;	/* lstm: forget-gate bias starts at 1 */
	void		(*forward) (const nn_layer *l, const rnn_step *s);
	void		(*backward) (const nn_layer *l, const rnn_step *s);
} rnn_cell;

static inline const rnn_cell *
cell_of(const nn_layer *l)
{
	return l->type->impl;
}

/* Floats per sample of the work buffer (the sizes of rnn_work). */
static size_t
work_size(const nn_layer *l, bool backward)
{
	size_t		T = (size_t) l->in_shape[0];
	size_t		U = (size_t) l->spec.units;
	size_t		GU = (size_t) cell_of(l)->gates * U;
	size_t		n = T * GU + 2 * T * U + GU;

	if (backward)
		n += 2 * T * GU + 3 * U;
	return n;
}

/* Carve the work buffer of a batch capacity B. */
static rnn_work
carve(const nn_layer *l, int32_t B)
{
	size_t		T = (size_t) l->in_shape[0];
	size_t		U = (size_t) l->spec.units;
	size_t		GU = (size_t) cell_of(l)->gates * U;
	rnn_work	w;

	w.gates = l->work;
	w.hs = w.gates + B * T * GU;
	w.cs = w.hs + B * T * U;
	w.rbuf = w.cs + B * T * U;
	w.dz = w.rbuf + B * GU;
	w.dzr = w.dz + B * T * GU;
	w.dh = w.dzr + B * T * GU;
	w.dc = w.dh + B * U;
	w.tmp = w.dc + B * U;
	return w;
}

/* A standard normal draw (Box-Muller). */
static double
normal(nn_rng *rng)
{
	double		u1 = 1.0 - (double) nn_rng_uniform(rng);
	double		u2 = (double) nn_rng_uniform(rng);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/*
 * Keras's Orthogonal initializer for a (rows, cols) matrix with rows <=
 * cols: rows orthonormal, from Gaussian rows by modified Gram-Schmidt (in
 * double, twice, which is as accurate as a QR).
 */
static void
orthogonal(float *dst, int32_t rows, int32_t cols, nn_rng *rng, double *q)
{
	for (int32_t i = 0; i < rows; i++)
	{
		double	   *qi = q + (size_t) i * cols;

		for (int attempt = 0; attempt < 8; attempt++)
		{
			double		norm = 0.0;

			for (int32_t j = 0; j < cols; j++)
				qi[j] = normal(rng);
			for (int pass = 0; pass < 2; pass++)
				for (int32_t k = 0; k < i; k++)
				{
					const double *qk = q + (size_t) k * cols;
					double		d = 0.0;

					for (int32_t j = 0; j < cols; j++)
						d += qi[j] * qk[j];
					for (int32_t j = 0; j < cols; j++)
						qi[j] -= d * qk[j];
				}
			for (int32_t j = 0; j < cols; j++)
				norm += qi[j] * qi[j];
			norm = sqrt(norm);
			if (norm > 1e-6)
			{
				for (int32_t j = 0; j < cols; j++)
					qi[j] /= norm;
				break;
			}
		}
	}
	for (size_t i = 0; i < (size_t) rows * cols; i++)
		dst[i] = (float) q[i];
}

/*
 * Keras's initialisation: Glorot-uniform kernel, orthogonal recurrent
 * kernel, zero bias but an lstm forget-gate bias of 1 (unit_forget_bias).
 * The orthogonal factor needs U x G U doubles of scratch; false when they
 * cannot be allocated.
 */
static bool
rnn_init(nn_model *m, nn_layer *l, nn_rng *rng)
{
	int32_t		U = l->spec.units;
	int32_t		GU = cell_of(l)->gates * U;
	int32_t		F = l->in_shape[1];
	float	   *r = m->params + l->r_off;	/* (U, G U) */
	double	   *q;

	nn_glorot_uniform(m->params + l->w_off, l->w_len, F, GU, rng);
	q = nn_alloc_bytes(&m->alloc, sizeof(double) * (size_t) U * GU);
	if (q == NULL)
		return false;
	orthogonal(r, U, GU, rng, q);
	nn_free_bytes(&m->alloc, q);
	if (l->b_len > 0)
	{
		float	   *b = m->params + l->b_off;

		memset(b, 0, sizeof(float) * l->b_len);
		if (cell_of(l)->forget_bias)
			for (int32_t j = U; j < 2 * U; j++)
				b[j] = 1.0f;
	}
	return true;
}

/* y = f(y) in place over k values. */
static inline void
act_vec(nn_activation act, float alpha, float *y, size_t k)
{
	nn_act_forward(act, alpha, y, y, 1, k);
}

/* d = d * f'(.) in place, given f's output y, over k values. */
static inline void
dact_vec(nn_activation act, float alpha, float *d, const float *y, size_t k)
{
	nn_act_backward(act, alpha, d, d, y, 1, k);
}

/* simple_rnn: h = act(x W + h' R + b). */
static void
simple_forward(const nn_layer *l, const rnn_step *s)
{
	int32_t		U = l->spec.units;

	for (int32_t j = 0; j < U; j++)
		s->g[j] += s->rec[j];
	act_vec(l->spec.activation, l->spec.alpha, s->g, U);
	memcpy(s->h, s->g, sizeof(float) * U);
}

/* lstm: gates i f g o, c = f c' + i g, h = o act(c). */
static void
lstm_forward(const nn_layer *l, const rnn_step *s)
{
	nn_activation act = l->spec.activation;
	nn_activation ract = l->spec.recurrent_activation;
	float		alpha = l->spec.alpha;
	int32_t		U = l->spec.units;
	float	   *g = s->g;

	for (int32_t j = 0; j < 4 * U; j++)
		g[j] += s->rec[j];
	act_vec(ract, 0.0f, g, 2 * U);	/* i, f */
	act_vec(act, alpha, g + 2 * U, U);	/* c candidate */
	act_vec(ract, 0.0f, g + 3 * U, U);	/* o */
	for (int32_t j = 0; j < U; j++)
		s->c[j] = (s->cp ? g[U + j] * s->cp[j] : 0.0f) + g[j] * g[2 * U + j];
	memcpy(s->h, s->c, sizeof(float) * U);
	act_vec(act, alpha, s->h, U);
	for (int32_t j = 0; j < U; j++)
		s->h[j] *= g[3 * U + j];
}

/* gru: z, r = ract(.), n = act(xh + r (h' R_h + b_h)), h = z h' + (1 - z) n. */
static void
gru_forward(const nn_layer *l, const rnn_step *s)
{
	int32_t		U = l->spec.units;
	float	   *g = s->g;
	float	   *rh = s->c;		/* (U) h' R_h + b_h */

	for (int32_t j = 0; j < 2 * U; j++)
		g[j] += s->rec[j];
	act_vec(l->spec.recurrent_activation, 0.0f, g, 2 * U);	/* z, r */
	memcpy(rh, s->rec + 2 * U, sizeof(float) * U);
	for (int32_t j = 0; j < U; j++)
		g[2 * U + j] += g[U + j] * rh[j];
	act_vec(l->spec.activation, l->spec.alpha, g + 2 * U, U);	/* n */
	for (int32_t j = 0; j < U; j++)
		s->h[j] = (s->hp ? g[j] * s->hp[j] : 0.0f) +
			(1.0f - g[j]) * g[2 * U + j];
}

/* Step t of sequences [b0, b1), their h' R (rbuf) already computed. */
static void
forward_step(const nn_layer *l, const rnn_work *w, int32_t t, int32_t b0,
			 int32_t b1)
{
	const rnn_cell *cell = cell_of(l);
	int32_t		T = l->in_shape[0],
				U = l->spec.units;
	int32_t		GU = cell->gates * U;

	for (int32_t b = b0; b < b1; b++)
	{
		size_t		bt = (size_t) b * T + t;
		rnn_step	s = {0};

		s.g = w->gates + bt * GU;
		s.rec = w->rbuf + (size_t) b * GU;
		s.h = w->hs + bt * U;
		s.hp = t > 0 ? s.h - U : NULL;
		s.c = w->cs + bt * U;
		s.cp = t > 0 ? s.c - U : NULL;
		cell->forward(l, &s);
	}
}

/*
 * Forward of sequences [b0, b1): their rows of the work buffer and of
 * l->ybuf.  Sequences are independent, so slices run on separate threads.
 */
static void
forward_rows(nn_model *m, nn_layer *l, const float *x, int32_t b0, int32_t b1)
{
	int32_t		T = l->in_shape[0],
				F = l->in_shape[1],
				U = l->spec.units;
	int32_t		GU = cell_of(l)->gates * U;
	const float *W = m->params + l->w_off;	/* (F, G U) */
	const float *R = m->params + l->r_off;	/* (U, G U) */
	const float *bin = l->b_len ? m->params + l->b_off : NULL;	/* (G U) */
	const float *brec = bin && cell_of(l)->reset_after ? bin + GU : NULL;
	rnn_work	w = carve(l, m->batch_cap);
	int32_t		n = b1 - b0;
	size_t		row0 = (size_t) b0 * T;
	size_t		rows = (size_t) n * T;

	/* input projections of every step: (n*T, F) x (F, G U) */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, GU, F,
				1.0f, x + row0 * F, F, W, GU, 0.0f, w.gates + row0 * GU, GU);
	if (bin)
		for (size_t r = row0; r < row0 + rows; r++)
			for (int32_t j = 0; j < GU; j++)
				w.gates[r * GU + j] += bin[j];

	for (int32_t t = 0; t < T; t++)
	{
		/* rbuf (n, G U) = h' (n, U; row stride T U) R */
		if (t > 0)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, GU, U,
						1.0f, w.hs + (row0 + t - 1) * U, T * U, R, GU, 0.0f,
						w.rbuf + (size_t) b0 * GU, GU);
		else
			memset(w.rbuf + (size_t) b0 * GU, 0, sizeof(float) * (size_t) n * GU);
		if (brec)
			for (int32_t b = b0; b < b1; b++)
				for (int32_t j = 0; j < GU; j++)
					w.rbuf[(size_t) b * GU + j] += brec[j];
		forward_step(l, &w, t, b0, b1);
	}

	if (l->spec.return_sequences)
		memcpy(l->ybuf + row0 * U, w.hs + row0 * U, sizeof(float) * rows * U);
	else
		for (int32_t b = b0; b < b1; b++)
			memcpy(l->ybuf + (size_t) b * U,
				   w.hs + ((size_t) b * T + T - 1) * U, sizeof(float) * U);
}

/* Forward over n sequences: fills the work buffer and l->ybuf. */
static nn_status
rnn_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass, nn_rng *rng,
			nn_error *err)
{
	const float *x = l->x;
	double		work = (double) n * l->in_shape[0] * l->spec.units *
		cell_of(l)->gates * (l->in_shape[1] + l->spec.units);

	(void) pass, (void) rng, (void) err;
#pragma omp parallel if (nn_par(work, n))
	{
		int32_t		b0,
					b1;

		nn_thread_rows(n, &b0, &b1);
		if (b1 > b0)
			forward_rows(m, l, x, b0, b1);
	}
	return NN_OK;
}

/* simple_rnn: dz = dh act'(.). */
static void
simple_backward(const nn_layer *l, const rnn_step *s)
{
	int32_t		U = l->spec.units;

	memcpy(s->dz, s->dh, sizeof(float) * U);
	dact_vec(l->spec.activation, l->spec.alpha, s->dz, s->g, U);
}

/* lstm: the gates' gradients, and dc becomes the gradient flowing to c'. */
static void
lstm_backward(const nn_layer *l, const rnn_step *s)
{
	nn_activation act = l->spec.activation;
	nn_activation ract = l->spec.recurrent_activation;
	float		alpha = l->spec.alpha;
	int32_t		U = l->spec.units;
	const float *g = s->g;
	float	   *dz = s->dz;
	float	   *tc = s->tmp;	/* (U) act(c) */

	memcpy(tc, s->c, sizeof(float) * U);
	act_vec(act, alpha, tc, U);
	/* do, then dc += dh o act'(c) */
	for (int32_t j = 0; j < U; j++)
	{
		dz[3 * U + j] = s->dh[j] * tc[j];
		dz[j] = s->dh[j] * g[3 * U + j];	/* scratch */
	}
	dact_vec(act, alpha, dz, tc, U);
	for (int32_t j = 0; j < U; j++)
	{
		float		dct = s->dc[j] + dz[j];

		dz[j] = dct * g[2 * U + j];	/* di */
		dz[U + j] = s->cp ? dct * s->cp[j] : 0.0f;	/* df */
		dz[2 * U + j] = dct * g[j];	/* dg */
		s->dc[j] = dct * g[U + j];
	}
	dact_vec(ract, 0.0f, dz, g, 2 * U);
	dact_vec(act, alpha, dz + 2 * U, g + 2 * U, U);
	dact_vec(ract, 0.0f, dz + 3 * U, g + 3 * U, U);
}

/* gru: dz w.r.t. the input side, dr w.r.t. h' R + b_rec, dh = z dh. */
static void
gru_backward(const nn_layer *l, const rnn_step *s)
{
	int32_t		U = l->spec.units;
	const float *g = s->g;
	const float *rh = s->c;		/* (U) h' R_h + b_h */
	float	   *dz = s->dz;

	for (int32_t j = 0; j < U; j++)
	{
		dz[j] = s->dh[j] * ((s->hp ? s->hp[j] : 0.0f) - g[2 * U + j]);
		dz[2 * U + j] = s->dh[j] * (1.0f - g[j]);
	}
	dact_vec(l->spec.activation, l->spec.alpha, dz + 2 * U, g + 2 * U, U);
	for (int32_t j = 0; j < U; j++)
		dz[U + j] = dz[2 * U + j] * rh[j];
	dact_vec(l->spec.recurrent_activation, 0.0f, dz, g, 2 * U);
	memcpy(s->dr, dz, sizeof(float) * 2 * U);
	for (int32_t j = 0; j < U; j++)
	{
		s->dr[2 * U + j] = dz[2 * U + j] * g[U + j];
		s->dh[j] *= g[j];		/* the direct path z h' */
	}
}

/* Step t of sequences [b0, b1) backward, adding the output gradient dy. */
static void
backward_step(const nn_layer *l, const rnn_work *w, const float *dy,
			  int32_t t, int32_t b0, int32_t b1)
{
	const rnn_cell *cell = cell_of(l);
	int32_t		T = l->in_shape[0],
				U = l->spec.units;
	int32_t		GU = cell->gates * U;
	bool		seq = l->spec.return_sequences;

	for (int32_t b = b0; b < b1; b++)
	{
		size_t		bt = (size_t) b * T + t;
		const float *gy = seq ? dy + bt * U :
			(t == T - 1 ? dy + (size_t) b * U : NULL);
		rnn_step	s = {0};

		s.g = w->gates + bt * GU;
		s.dz = w->dz + bt * GU;
		s.dr = w->dzr + bt * GU;
		s.dh = w->dh + (size_t) b * U;
		s.dc = w->dc + (size_t) b * U;
		s.tmp = w->tmp + (size_t) b * U;
		s.c = w->cs + bt * U;
		s.cp = t > 0 ? s.c - U : NULL;
		s.hp = t > 0 ? w->hs + (bt - 1) * U : NULL;
		if (gy)
			for (int32_t j = 0; j < U; j++)
				s.dh[j] += gy[j];
		cell->backward(l, &s);
	}
}

/*
 * Backpropagation through time of sequences [b0, b1): their pre-activation
 * gradients dz (and dzr) for every step and, unless dx is NULL, their rows
 * of dx.  dy is the gradient w.r.t. the output (every step's h, or the
 * last one's).
 */
static void
backward_rows(nn_model *m, nn_layer *l, float *dx, const float *dy,
			  int32_t b0, int32_t b1)
{
	bool		reset_after = cell_of(l)->reset_after;
	int32_t		T = l->in_shape[0],
				F = l->in_shape[1],
				U = l->spec.units;
	int32_t		GU = cell_of(l)->gates * U;
	const float *W = m->params + l->w_off;	/* (F, G U) */
	const float *R = m->params + l->r_off;	/* (U, G U) */
	rnn_work	w = carve(l, m->batch_cap);
	float	   *dzr = reset_after ? w.dzr : w.dz;
	int32_t		n = b1 - b0;
	size_t		row0 = (size_t) b0 * T;

	memset(w.dh + (size_t) b0 * U, 0, sizeof(float) * (size_t) n * U);
	memset(w.dc + (size_t) b0 * U, 0, sizeof(float) * (size_t) n * U);
	for (int32_t t = T - 1; t >= 0; t--)
	{
		backward_step(l, &w, dy, t, b0, b1);
		/* dh (n, U) = dzr_t (n, G U; row stride T G U) R^T (+ gru direct) */
		if (t > 0)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, U, GU,
						1.0f, dzr + (row0 + t) * GU, T * GU, R, GU,
						reset_after ? 1.0f : 0.0f,
						w.dh + (size_t) b0 * U, U);
	}

	/* dx (n*T, F) = dZ (n*T, G U) W^T */
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n * T, F, GU,
					1.0f, w.dz + row0 * GU, GU, W, GU, 0.0f, dx + row0 * F, F);
}

/*
 * Weight gradients of columns [j0, j1) of the G U gate columns, summed over
 * the batch: dW (F, G U) = X^T dZ, dR (U, G U) = sum over t >= 1 of
 * h_{t-1}^T dzr_t, db = column sums of dZ (and of dzr for gru's recurrent
 * bias).  Column bands are disjoint, so bands run on separate threads.
 */
static void
weight_cols(nn_model *m, nn_layer *l, int32_t n, int32_t j0, int32_t j1)
{
	int32_t		T = l->in_shape[0],
				F = l->in_shape[1],
				U = l->spec.units;
	int32_t		GU = cell_of(l)->gates * U;
	int32_t		nc = j1 - j0;
	rnn_work	w = carve(l, m->batch_cap);
	bool		gru = cell_of(l)->reset_after;
	const float *dzr = gru ? w.dzr : w.dz;
	float	   *dW = m->grads + l->w_off;	/* (F, G U) */
	float	   *dR = m->grads + l->r_off;	/* (U, G U) */
	size_t		rows = (size_t) n * T;

	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, F, nc, (int) rows,
				1.0f, l->x, F, w.dz + j0, GU, 0.0f, dW + j0, GU);
	for (int32_t u = 0; u < U; u++)
		memset(dR + (size_t) u * GU + j0, 0, sizeof(float) * nc);
	for (int32_t t = 1; t < T; t++)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, U, nc, n, 1.0f,
					w.hs + (size_t) (t - 1) * U, T * U,
					dzr + (size_t) t * GU + j0, T * GU, 1.0f, dR + j0, GU);
	if (l->b_len > 0)
	{
		float	   *db = m->grads + l->b_off;	/* (G U), gru (2, G U) */

		for (int32_t j = j0; j < j1; j++)
			db[j] = 0.0f;
		for (size_t r = 0; r < rows; r++)
			for (int32_t j = j0; j < j1; j++)
				db[j] += w.dz[r * GU + j];
		if (gru)
		{
			for (int32_t j = j0; j < j1; j++)
				db[GU + j] = 0.0f;
			for (size_t r = 0; r < rows; r++)
				for (int32_t j = j0; j < j1; j++)
					db[GU + j] += w.dzr[r * GU + j];
		}
	}
}

/*
 * Backpropagation through time over n sequences: dy (n, out_size) is the
 * gradient w.r.t. the output (every step's h, or the last one's).  Fills,
 * unless dx is NULL, dx (n, T, F) and, after a training forward, the
 * kernel, recurrent kernel and bias gradients.  Sequences split over
 * threads first, then gate columns.
 */
static void
rnn_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n)
{
	int32_t		GU = cell_of(l)->gates * l->spec.units;
	double		work = (double) n * l->in_shape[0] * GU *
		(l->in_shape[1] + l->spec.units);

#pragma omp parallel if (nn_par(work, n))
	{
		int32_t		b0,
					b1;

		nn_thread_rows(n, &b0, &b1);
		if (b1 > b0)
			backward_rows(m, l, dx, dy, b0, b1);
	}
	if (!nn_layer_param_grads(l))
		return;
#pragma omp parallel if (nn_par(work, GU))
	{
		int32_t		j0,
					j1;

		nn_thread_rows(GU, &j0, &j1);
		if (j1 > j0)
			weight_cols(m, l, n, j0, j1);
	}
}

/* Output (T, units) or (units); kernel (F, G U), recurrent (U, G U), bias. */
static nn_status
rnn_infer(nn_layer *l, nn_error *err)
{
	const nn_layer_spec *s = &l->spec;
	const rnn_cell *cell = cell_of(l);
	int64_t		g = cell->gates;
	int64_t		u = s->units;

	if (l->in_rank != 2)
		return NN_LAYER_FAIL(l, err, "input must be a sequence (timesteps, features), not of rank %d",
							 l->in_rank);
	if (s->activation == NN_ACT_SOFTMAX ||
		s->recurrent_activation == NN_ACT_SOFTMAX)
		return NN_LAYER_FAIL(l, err, "softmax cannot be a recurrent layer's activation");
	if ((double) g * u * (u + l->in_shape[1] + 2) > (double) INT32_MAX)
		return NN_LAYER_FAIL(l, err, "weight size overflows");
	l->w_len = (int64_t) l->in_shape[1] * g * u;
	l->r_len = u * g * u;
	l->b_len = s->use_bias ? (cell->reset_after ? 2 * g * u : g * u) : 0;
	memset(l->out_shape, 0, sizeof(l->out_shape));
	l->out_rank = s->return_sequences ? 2 : 1;
	l->out_shape[0] = s->return_sequences ? l->in_shape[0] : s->units;
	l->out_shape[1] = s->return_sequences ? s->units : 0;
	return NN_OK;
}

static void
rnn_buffers(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	b->work = work_size(l, pass != NN_PASS_PREDICT);
}

static const nn_kind_option simple_rnn_options[] = {
	NN_TAKES(NN_OPTION_UNITS, .required = true),
	NN_TAKES(NN_OPTION_ACTIVATION, .def = NN_ACT_TANH),
	NN_TAKES(NN_OPTION_ALPHA, .def = 0),
	NN_TAKES(NN_OPTION_USE_BIAS, .def = 1),
	NN_TAKES(NN_OPTION_RETURN_SEQUENCES, .def = 0),	NN_TAKES(NN_OPTION_TRAINABLE, .def = 1),
};

static const nn_kind_option gated_options[] = {
	NN_TAKES(NN_OPTION_UNITS, .required = true),
	NN_TAKES(NN_OPTION_ACTIVATION, .def = NN_ACT_TANH),
	NN_TAKES(NN_OPTION_ALPHA, .def = 0),
	NN_TAKES(NN_OPTION_USE_BIAS, .def = 1),
	NN_TAKES(NN_OPTION_RECURRENT_ACTIVATION, .def = NN_ACT_SIGMOID),
	NN_TAKES(NN_OPTION_RETURN_SEQUENCES, .def = 0),	NN_TAKES(NN_OPTION_TRAINABLE, .def = 1),
};

static const rnn_cell simple_cell = {1, false, false, simple_forward,
simple_backward};
static const rnn_cell lstm_cell = {4, false, true, lstm_forward,
lstm_backward};
static const rnn_cell gru_cell = {3, true, false, gru_forward, gru_backward};

#define RNN_TYPE(kind_name, cell, opts) { \
	.name = kind_name, .since = 2, .impl = &cell, .flags = NN_KIND_PRUNABLE, \
	.options = opts, .n_options = NN_LENGTH(opts), \
	.infer = rnn_infer, .init = rnn_init, .forward = rnn_forward, \
	.backward = rnn_backward, .buffers = rnn_buffers }

const nn_layer_type nn_simple_rnn_type =
RNN_TYPE("simple_rnn", simple_cell, simple_rnn_options);
const nn_layer_type nn_lstm_type = RNN_TYPE("lstm", lstm_cell, gated_options);
const nn_layer_type nn_gru_type = RNN_TYPE("gru", gru_cell, gated_options);
