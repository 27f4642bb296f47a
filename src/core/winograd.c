/*
 * winograd.c: 3x3 stride-1 convolutions by Winograd's minimal filtering,
 * F(4x4, 3x3), forward and backward.
 *
 * Each 4x4 block of outputs ("tile") is computed from a 6x6 block of input
 * as  Y = AT [ (G g GT) . (BT d B) ] A,  summed over input channels, where
 * "." is the element-wise product of the 36 transformed positions (Lavin
 * and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016,
 * interpolation points 0, 1, -1, 2, -2 and infinity).  Summing over channels
 * makes every position p one GEMM over the whole batch:
 *   Yt[p] (tiles, F) = V[p] (tiles, C) U[p] (C, F)
 * with V = BT d B (the input, transformed) and U = G g GT (the kernel).
 * That is 36 multiply-adds per tile and channel pair for 16 outputs where
 * im2col needs 144: 4x fewer, plus the cheap transforms.
 *
 * Backward differentiates exactly that computation:
 *   M[p]  = A dY AT per tile (dY: the gradient of the 4x4 outputs),
 *   dU[p] = V[p]^T M[p],  dW = GT dU G  (per channel pair),
 *   dV[p] = M[p] U[p]^T,  dX += B dV BT  (tiles overlap by 2: added up).
 * Every result is written by one thread in a fixed order, so results do not
 * depend on the number of threads.  The transforms' largest coefficients
 * (5 and 8) cost a few bits of float32 precision against im2col: errors of
 * about 1e-6 relative to the largest terms, far below what training notices.
 *
 * Buffers (model.c sizes them from the functions below):
 *   l->col  V, then dV:  (36, B * tiles, C)
 *   l->work Yt, then M:  (36, B * tiles, F)
 *   l->wt   U (36, C, F); the kernel U was made from (3, 3, C, F), so a
 *           forward with unchanged weights (predictions) reuses U; and in
 *           training dU (36, C, F)
 */
#include <string.h>

#include <cblas.h>

#include "nn_internal.h"

#define WG_M 4					/* outputs per tile side */
#define WG_A 6					/* input per tile side: WG_M + 3 - 1 */
#define WG_P (WG_A * WG_A)		/* transformed positions */
#define WG_CB 32				/* channels per transform block */

/* Smallest input channel count worth the transforms. */
#define WG_MIN_CHANNELS 8

static inline int32_t
tiles_of(int32_t n)
{
	return n / WG_M + (n % WG_M != 0);
}

/* Tiles per sample. */
static inline size_t
tile_count(const nn_layer *l)
{
	return (size_t) tiles_of(l->out_shape[0]) * tiles_of(l->out_shape[1]);
}

/*
 * Does this conv2d layer run as Winograd: a 3x3 kernel at stride 1 over
 * enough channels, with outputs that fill the 4x4 tiles well enough that
 * the multiply-adds drop by at least half?
 */
bool
nn_wino_fits(const nn_layer *l)
{
	const nn_layer_spec *s = &l->spec;
	size_t		per_sample,
				col,
				work,
				kernel;

	if (s->kernel[0] != 3 || s->kernel[1] != 3 ||
		s->strides[0] != 1 || s->strides[1] != 1 ||
		l->in_shape[2] < WG_MIN_CHANNELS)
		return false;
	/* the buffers' sizes must not overflow (huge specs use im2col's checks) */
	if (!nn_size_mul(&per_sample, tile_count(l), WG_P) ||
		!nn_size_mul(&col, per_sample, (size_t) l->in_shape[2]) ||
		!nn_size_mul(&work, per_sample, (size_t) s->filters) ||
		!nn_size_mul(&kernel, (size_t) (2 * WG_P + 9) * l->in_shape[2],
					 (size_t) s->filters))
		return false;
	return (double) l->out_shape[0] * l->out_shape[1] * 9 >=
		2.0 * WG_P * tile_count(l);
}

/* Floats per sample of l->col (V) and of l->work (Yt, M). */
size_t
nn_wino_col_size(const nn_layer *l)
{
	return WG_P * tile_count(l) * l->in_shape[2];
}

size_t
nn_wino_work_size(const nn_layer *l)
{
	return WG_P * tile_count(l) * l->spec.filters;
}

/* Floats of l->wt: U, the kernel it was made from, and dU when training. */
size_t
nn_wino_kernel_size(const nn_layer *l, bool param_grads)
{
	return ((param_grads ? 2 : 1) * WG_P + 9) *
		(size_t) l->in_shape[2] * l->spec.filters;
}

/*
 * The 1-D transforms, each on n channels at once: out[k * os + c] from
 * in[i * is + c].  B and A are the input and output transforms, G the
 * kernel transform; the "_t" ones are their transposes (backward).
 */
static inline void
bt_1d(float *restrict out, size_t os, const float *restrict in, size_t is,
	  int n)
{
	for (int c = 0; c < n; c++)
	{
		float		d0 = in[c],
					d1 = in[is + c],
					d2 = in[2 * is + c],
					d3 = in[3 * is + c],
					d4 = in[4 * is + c],
					d5 = in[5 * is + c];

		out[c] = 4 * d0 - 5 * d2 + d4;
		out[os + c] = -4 * (d1 + d2) + d3 + d4;
		out[2 * os + c] = 4 * (d1 - d2) - d3 + d4;
		out[3 * os + c] = 2 * (d3 - d1) - d2 + d4;
		out[4 * os + c] = 2 * (d1 - d3) - d2 + d4;
		out[5 * os + c] = 4 * d1 - 5 * d3 + d5;
	}
}

static inline void
bt_t_1d(float *restrict out, size_t os, const float *restrict in, size_t is,
		int n)
{
	for (int c = 0; c < n; c++)
	{
		float		e0 = in[c],
					e1 = in[is + c],
					e2 = in[2 * is + c],
					e3 = in[3 * is + c],
					e4 = in[4 * is + c],
					e5 = in[5 * is + c];

		out[c] = 4 * e0;
		out[os + c] = 4 * (e2 - e1 + e5) + 2 * (e4 - e3);
		out[2 * os + c] = -5 * e0 - 4 * (e1 + e2) - e3 - e4;
		out[3 * os + c] = e1 - e2 + 2 * (e3 - e4) - 5 * e5;
		out[4 * os + c] = e0 + e1 + e2 + e3 + e4;
		out[5 * os + c] = e5;
	}
}

static inline void
at_1d(float *restrict out, size_t os, const float *restrict in, size_t is,
	  int n)
{
	for (int c = 0; c < n; c++)
	{
		float		m0 = in[c],
					m1 = in[is + c],
					m2 = in[2 * is + c],
					m3 = in[3 * is + c],
					m4 = in[4 * is + c],
					m5 = in[5 * is + c];

		out[c] = m0 + m1 + m2 + m3 + m4;
		out[os + c] = m1 - m2 + 2 * (m3 - m4);
		out[2 * os + c] = m1 + m2 + 4 * (m3 + m4);
		out[3 * os + c] = m1 - m2 + 8 * (m3 - m4) + m5;
	}
}

static inline void
at_t_1d(float *restrict out, size_t os, const float *restrict in, size_t is,
		int n)
{
	for (int c = 0; c < n; c++)
	{
		float		g0 = in[c],
					g1 = in[is + c],
					g2 = in[2 * is + c],
					g3 = in[3 * is + c];

		out[c] = g0;
		out[os + c] = g0 + g1 + g2 + g3;
		out[2 * os + c] = g0 - g1 + g2 - g3;
		out[3 * os + c] = g0 + 2 * g1 + 4 * g2 + 8 * g3;
		out[4 * os + c] = g0 - 2 * g1 + 4 * g2 - 8 * g3;
		out[5 * os + c] = g3;
	}
}

static inline void
g_1d(float *restrict out, size_t os, const float *restrict in, size_t is,
	 int n)
{
	for (int c = 0; c < n; c++)
	{
		float		g0 = in[c],
					g1 = in[is + c],
					g2 = in[2 * is + c];

		out[c] = g0 / 4;
		out[os + c] = -(g0 + g1 + g2) / 6;
		out[2 * os + c] = -(g0 - g1 + g2) / 6;
		out[3 * os + c] = g0 / 24 + g1 / 12 + g2 / 6;
		out[4 * os + c] = g0 / 24 - g1 / 12 + g2 / 6;
		out[5 * os + c] = g2;
	}
}

static inline void
g_t_1d(float *restrict out, size_t os, const float *restrict in, size_t is,
	   int n)
{
	for (int c = 0; c < n; c++)
	{
		float		h0 = in[c],
					h1 = in[is + c],
					h2 = in[2 * is + c],
					h3 = in[3 * is + c],
					h4 = in[4 * is + c],
					h5 = in[5 * is + c];

		out[c] = h0 / 4 - (h1 + h2) / 6 + (h3 + h4) / 24;
		out[os + c] = (h2 - h1) / 6 + (h3 - h4) / 12;
		out[2 * os + c] = (h3 + h4 - h1 - h2) / 6 + h5;
	}
}

typedef void (*transform_1d) (float *restrict out, size_t os,
							  const float *restrict in, size_t is, int n);

/*
 * out (no x no) = T in (ni x ni) T^T for a 1-D transform T (ni -> no), on
 * blocks of n <= WG_CB channels: element (i, j) of a block is at
 * (i * side + j) * WG_CB.  tmp holds no x ni.
 */
static inline void
apply_2d(transform_1d t, float *restrict out, const float *restrict in,
		 float *restrict tmp, int ni, int no, int n)
{
	for (int j = 0; j < ni; j++)	/* columns: tmp[k][j] = T in[.][j] */
		t(tmp + j * WG_CB, (size_t) ni * WG_CB, in + j * WG_CB,
		  (size_t) ni * WG_CB, n);
	for (int k = 0; k < no; k++)	/* rows: out[k][l] = T tmp[k][.] */
		t(out + k * no * WG_CB, WG_CB, tmp + k * ni * WG_CB, WG_CB, n);
}

/* n floats; a full block is a fixed-size copy the compiler inlines. */
static inline void
copy_block(float *restrict dst, const float *restrict src, int n)
{
	if (n == WG_CB)
		memcpy(dst, src, sizeof(float) * WG_CB);
	else
		memcpy(dst, src, sizeof(float) * n);
}

/* Geometry of a Winograd conv2d layer over a batch of n. */
typedef struct wgeom
{
	int32_t		H,
				W,
				C,
				OH,
				OW,
				F,
				TW;				/* tiles per row */
	int32_t		pt,
				pl;				/* padding top, left */
	size_t		T;				/* tiles per sample */
	size_t		rows;			/* n * T: rows of every position's matrix */
	size_t		vstep;			/* floats per position of V: rows * C */
	size_t		ystep;			/* of Yt and M: rows * F */
} wgeom;

static wgeom
geometry(const nn_layer *l, int32_t n)
{
	wgeom		g;

	g.H = l->in_shape[0];
	g.W = l->in_shape[1];
	g.C = l->in_shape[2];
	g.OH = l->out_shape[0];
	g.OW = l->out_shape[1];
	g.F = l->spec.filters;
	g.TW = tiles_of(g.OW);
	g.pt = l->pad_top;
	g.pl = l->pad_left;
	g.T = tile_count(l);
	g.rows = (size_t) n * g.T;
	g.vstep = g.rows * g.C;
	g.ystep = g.rows * g.F;
	return g;
}

/* Is work of this many multiply-adds spread over pieces worth the team? */
#define PAR(work, pieces) if (nn_par((double) (work), (pieces)))

/* U[p] (C, F) = G g GT for the kernel (3, 3, C, F) at input channel c. */
static NN_SIMD void
kernel_transform_row(float *U, const float *w, int32_t C, int32_t F, int32_t c)
{
	float		in[9 * WG_CB],
				tmp[WG_A * 3 * WG_CB],
				out[WG_P * WG_CB];

	for (int32_t f0 = 0; f0 < F; f0 += WG_CB)
	{
		int			nf = F - f0 < WG_CB ? F - f0 : WG_CB;

		for (int k = 0; k < 9; k++)
			copy_block(in + k * WG_CB, w + ((size_t) k * C + c) * F + f0, nf);
		apply_2d(g_1d, out, in, tmp, 3, WG_A, nf);
		for (int p = 0; p < WG_P; p++)
			copy_block(U + ((size_t) p * C + c) * F + f0, out + p * WG_CB, nf);
	}
}

/* dW (3, 3, C, F) = GT dU[p] G at input channel c. */
static NN_SIMD void
kernel_grad_row(float *dw, const float *dU, int32_t C, int32_t F, int32_t c)
{
	float		in[WG_P * WG_CB],
				tmp[3 * WG_A * WG_CB],
				out[9 * WG_CB];

	for (int32_t f0 = 0; f0 < F; f0 += WG_CB)
	{
		int			nf = F - f0 < WG_CB ? F - f0 : WG_CB;

		for (int p = 0; p < WG_P; p++)
			copy_block(in + p * WG_CB, dU + ((size_t) p * C + c) * F + f0, nf);
		apply_2d(g_t_1d, out, in, tmp, WG_A, 3, nf);
		for (int k = 0; k < 9; k++)
			copy_block(dw + ((size_t) k * C + c) * F + f0, out + k * WG_CB, nf);
	}
}

/* V = BT d B for every tile of sample b (x: its image). */
static NN_SIMD void
input_sample(const wgeom *g, float *V, const float *x, int32_t b)
{
	float		d[WG_P * WG_CB],
				tmp[WG_P * WG_CB],
				v[WG_P * WG_CB];

	for (size_t t = 0; t < g->T; t++)
	{
		int32_t		ih0 = (int32_t) (t / g->TW) * WG_M - g->pt,
					iw0 = (int32_t) (t % g->TW) * WG_M - g->pl;
		float	   *vrow = V + ((size_t) b * g->T + t) * g->C;

		for (int32_t c0 = 0; c0 < g->C; c0 += WG_CB)
		{
			int			nc = g->C - c0 < WG_CB ? g->C - c0 : WG_CB;

			for (int i = 0; i < WG_A; i++)
				for (int j = 0; j < WG_A; j++)
				{
					int32_t		ih = ih0 + i,
								iw = iw0 + j;
					float	   *dst = d + (i * WG_A + j) * WG_CB;

					if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
						memset(dst, 0, sizeof(float) * WG_CB);
					else
						copy_block(dst, x + ((size_t) ih * g->W + iw) * g->C + c0, nc);
				}
			apply_2d(bt_1d, v, d, tmp, WG_A, WG_A, nc);
			for (int p = 0; p < WG_P; p++)
				copy_block(vrow + p * g->vstep + c0, v + p * WG_CB, nc);
		}
	}
}

/* Outputs of sample b (y: its image) = AT Yt A + bias, inside the image. */
static NN_SIMD void
output_sample(const wgeom *g, float *y, const float *Y, const float *bias,
			  int32_t b)
{
	float		yt[WG_P * WG_CB],
				tmp[WG_M * WG_A * WG_CB],
				o[WG_M * WG_M * WG_CB];

	for (size_t t = 0; t < g->T; t++)
	{
		int32_t		oh0 = (int32_t) (t / g->TW) * WG_M,
					ow0 = (int32_t) (t % g->TW) * WG_M;
		const float *yrow = Y + ((size_t) b * g->T + t) * g->F;

		for (int32_t f0 = 0; f0 < g->F; f0 += WG_CB)
		{
			int			nf = g->F - f0 < WG_CB ? g->F - f0 : WG_CB;

			for (int p = 0; p < WG_P; p++)
				copy_block(yt + p * WG_CB, yrow + p * g->ystep + f0, nf);
			apply_2d(at_1d, o, yt, tmp, WG_A, WG_M, nf);
			for (int i = 0; i < WG_M && oh0 + i < g->OH; i++)
				for (int j = 0; j < WG_M && ow0 + j < g->OW; j++)
				{
					float	   *dst = y + ((size_t) (oh0 + i) * g->OW + ow0 + j) * g->F + f0;
					const float *src = o + (i * WG_M + j) * WG_CB;

					if (bias)
						for (int f = 0; f < nf; f++)
							dst[f] = src[f] + bias[f0 + f];
					else
						copy_block(dst, src, nf);
				}
		}
	}
}

/* M = A dY AT for every tile of sample b (dz: its output gradient). */
static NN_SIMD void
grad_sample(const wgeom *g, float *M, const float *dz, int32_t b)
{
	float		gy[WG_M * WG_M * WG_CB],
				tmp[WG_A * WG_M * WG_CB],
				mt[WG_P * WG_CB];

	for (size_t t = 0; t < g->T; t++)
	{
		int32_t		oh0 = (int32_t) (t / g->TW) * WG_M,
					ow0 = (int32_t) (t % g->TW) * WG_M;
		float	   *mrow = M + ((size_t) b * g->T + t) * g->F;

		for (int32_t f0 = 0; f0 < g->F; f0 += WG_CB)
		{
			int			nf = g->F - f0 < WG_CB ? g->F - f0 : WG_CB;

			/* outputs beyond the image count as 0 */
			for (int i = 0; i < WG_M; i++)
				for (int j = 0; j < WG_M; j++)
				{
					float	   *dst = gy + (i * WG_M + j) * WG_CB;

					if (oh0 + i >= g->OH || ow0 + j >= g->OW)
						memset(dst, 0, sizeof(float) * WG_CB);
					else
						copy_block(dst, dz + ((size_t) (oh0 + i) * g->OW + ow0 + j) * g->F + f0, nf);
				}
			apply_2d(at_t_1d, mt, gy, tmp, WG_M, WG_A, nf);
			for (int p = 0; p < WG_P; p++)
				copy_block(mrow + p * g->ystep + f0, mt + p * WG_CB, nf);
		}
	}
}

/* dx of sample b = sum over its tiles of B dV BT, inside the image. */
static NN_SIMD void
dx_sample(const wgeom *g, float *dx, const float *dV, int32_t b)
{
	float		dv[WG_P * WG_CB],
				tmp[WG_P * WG_CB],
				dd[WG_P * WG_CB];

	memset(dx, 0, sizeof(float) * g->H * g->W * g->C);
	for (size_t t = 0; t < g->T; t++)
	{
		int32_t		ih0 = (int32_t) (t / g->TW) * WG_M - g->pt,
					iw0 = (int32_t) (t % g->TW) * WG_M - g->pl;
		const float *vrow = dV + ((size_t) b * g->T + t) * g->C;

		for (int32_t c0 = 0; c0 < g->C; c0 += WG_CB)
		{
			int			nc = g->C - c0 < WG_CB ? g->C - c0 : WG_CB;

			for (int p = 0; p < WG_P; p++)
				copy_block(dv + p * WG_CB, vrow + p * g->vstep + c0, nc);
			apply_2d(bt_t_1d, dd, dv, tmp, WG_A, WG_A, nc);
			for (int i = 0; i < WG_A; i++)
				for (int j = 0; j < WG_A; j++)
				{
					int32_t		ih = ih0 + i,
								iw = iw0 + j;
					float	   *dst;
					const float *src = dd + (i * WG_A + j) * WG_CB;

					if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
						continue;
					dst = dx + ((size_t) ih * g->W + iw) * g->C + c0;
					for (int c = 0; c < nc; c++)
						dst[c] += src[c];
				}
		}
	}
}

/* The 36 GEMMs of one pass, one position per thread at a time. */
static void
position_gemms(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
			   const float *A, size_t a_step, int lda,
			   const float *B, size_t b_step, int ldb,
			   float *C, size_t c_step, int ldc)
{
#pragma omp parallel for schedule(dynamic) PAR((double) M * N * K * WG_P, WG_P)
	for (int p = 0; p < WG_P; p++)
		cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A + p * a_step, lda,
					B + p * b_step, ldb, 0.0f, C + p * c_step, ldc);
}

/*
 * Forward over n samples: l->ybuf gets the convolution plus the bias, before
 * the activation (the caller applies it).
 */
void
nn_wino_forward(nn_model *m, nn_layer *l, const float *x, int32_t n)
{
	const wgeom g = geometry(l, n);
	const float *w = m->params + l->w_off;
	const float *bias = l->b_len ? m->params + l->b_off : NULL;
	size_t		w_bytes = sizeof(float) * 9 * g.C * g.F;
	float	   *w_of_u = l->wt + (size_t) WG_P * g.C * g.F;

	/* bytewise equal weights give the same U */
	if (!l->wt_ready || memcmp(w_of_u, w, w_bytes) != 0)
	{
#pragma omp parallel for PAR((double) g.C * g.F * WG_P * 4, g.C)
		for (int32_t c = 0; c < g.C; c++)
			kernel_transform_row(l->wt, w, g.C, g.F, c);
		memcpy(w_of_u, w, w_bytes);
		l->wt_ready = true;
	}

#pragma omp parallel for schedule(dynamic) PAR(g.vstep * WG_P * 4, n)
	for (int32_t b = 0; b < n; b++)
		input_sample(&g, l->col, x + (size_t) b * l->in_size, b);

	position_gemms(CblasNoTrans, CblasNoTrans, (int) g.rows, g.F, g.C,
				   l->col, g.vstep, g.C, l->wt, (size_t) g.C * g.F, g.F,
				   l->work, g.ystep, g.F);

#pragma omp parallel for schedule(dynamic) PAR(g.ystep * WG_P * 4, n)
	for (int32_t b = 0; b < n; b++)
		output_sample(&g, l->ybuf + (size_t) b * l->out_size, l->work, bias, b);
}

/* dU[p] (C, F) = V[p]^T M[p] (the forward's V, backward's M), then dW. */
static void
kernel_grads(nn_model *m, const nn_layer *l, const wgeom *gp)
{
	const wgeom g = *gp;
	float	   *dU = l->wt + (size_t) (WG_P + 9) * g.C * g.F;
	float	   *dw = m->grads + l->w_off;

	position_gemms(CblasTrans, CblasNoTrans, g.C, g.F, (int) g.rows,
				   l->col, g.vstep, g.C, l->work, g.ystep, g.F,
				   dU, (size_t) g.C * g.F, g.F);
#pragma omp parallel for PAR((double) g.C * g.F * WG_P * 4, g.C)
	for (int32_t c = 0; c < g.C; c++)
		kernel_grad_row(dw, dU, g.C, g.F, c);
}

/*
 * Backward over n samples, after nn_wino_forward on the same batch: dz
 * (n, OH, OW, F) is the gradient of the pre-activation.  Writes the kernel
 * gradient (not the bias's) after a training forward and, unless dx is
 * NULL, dx (n, H, W, C).
 */
void
nn_wino_backward(nn_model *m, nn_layer *l, float *dx, const float *dz,
				 int32_t n)
{
	const wgeom g = geometry(l, n);
	float	   *U = l->wt;

#pragma omp parallel for schedule(dynamic) PAR(g.ystep * WG_P * 4, n)
	for (int32_t b = 0; b < n; b++)
		grad_sample(&g, l->work, dz + (size_t) b * l->out_size, b);

	if (nn_layer_param_grads(l))
		kernel_grads(m, l, &g);
	if (dx == NULL)
		return;

	/* dV[p] = M[p] U[p]^T, over V, which is no longer needed */
	position_gemms(CblasNoTrans, CblasTrans, (int) g.rows, g.C, g.F,
				   l->work, g.ystep, g.F, U, (size_t) g.C * g.F, g.F,
				   l->col, g.vstep, g.C);

#pragma omp parallel for schedule(dynamic) PAR(g.vstep * WG_P * 4, n)
	for (int32_t b = 0; b < n; b++)
		dx_sample(&g, dx + (size_t) b * l->in_size, l->col, b);
}
