/*
 * qgemm.h: int8 matrix products for quantized dense and conv2d layers.
 *
 * Weights are symmetric int8 with one scale per output channel,
 * w ~ scale[o] * q[o][k], q in [-127, 127] (never -128).  Activations are
 * asymmetric uint8 with one scale and zero point per tensor,
 * x ~ xscale * (q - zero), q in [0, 255].  A product
 *
 *   Y (n, out) = X (n, in) W^T + b,   W (out, in): rows are output channels
 *
 * is computed as the exact integer sums
 *
 *   C[r][o] = sum_k (xq[r][k] - zero) * wq[o][k]
 *
 * (int32, no overflow for in <= NN_QGEMM_MAX_IN), then, in float,
 * Y[r][o] = fmaf((float) C[r][o], xscale * scale[o], b[o]).  Every kernel
 * path (AVX-512 VNNI, AVX2, portable C) gives the same C and so the same Y,
 * bit for bit, whatever the number of threads.
 *
 * The weight-only product, for models quantized without calibration, keeps
 * the activations in float: Y = X dequant(W)^T + b, on the same packed
 * weights.  Its float sums are not bit-identical to any other path, but do
 * not depend on the number of threads.
 *
 * Packed weights: output channels in panels of 16, the input in groups of
 * 4; panel p holds, for each group g, the 64 bytes
 *   q[16 p + j][4 g + t] at byte 64 g + 4 j + t  (j < 16, t < 4),
 * zero past the last channel and input.  This is the operand order of
 * vpdpbusd: one 32-bit lane per channel, four inputs per lane.
 *
 * Left out: requantized (int8) outputs, fused activations, and blocking
 * over the input dimension (a panel of 16 channels is read whole from
 * cache, which suits inputs up to a few thousand).
 */
#ifndef NN_QGEMM_H
#define NN_QGEMM_H

#include "nn.h"

/* Longest input: 255 * 127 * 65536 < 2^31, so no int32 sum can overflow. */
#define NN_QGEMM_MAX_IN 65536

/* Channels per panel and inputs per group of the packed layout. */
#define NN_QGEMM_PANEL 16
#define NN_QGEMM_GROUP 4

/* Kernel paths; the packed weights name the one their products use. */
typedef enum nn_qpath
{
	NN_QPATH_AUTO = 0,			/* the fastest this processor runs */
	NN_QPATH_C,					/* portable C */
	NN_QPATH_AVX2,				/* AVX2 and FMA: int16 products (vpmaddwd) */
	NN_QPATH_VNNI,				/* AVX-512 VNNI: u8 x s8 sums (vpdpbusd) */
	NN_QPATH_COUNT
} nn_qpath;

/* Per-tensor activation quantization: x ~ scale * (q - zero). */
typedef struct nn_qparams
{
	float		scale;			/* >= 0; 0 maps every value to zero */
	int32_t		zero;			/* in [0, 255] */
} nn_qparams;

/* Weights quantized and packed for one kernel path (nn_qgemm_pack). */
typedef struct nn_qweights
{
	int32_t		out;			/* output channels */
	int32_t		in;				/* inputs per channel */
	int32_t		groups;			/* ceil(in / 4) */
	int32_t		panels;			/* ceil(out / 16) */
	nn_qpath	path;			/* never NN_QPATH_AUTO */
	int8_t	   *panel;			/* (panels, groups, 16, 4), see above */
	float	   *scale;			/* (panels * 16): per channel, 0 past out */
	int32_t    *rowsum;			/* (panels * 16): sum_k q[o][k] */
	nn_alloc	alloc;			/* what nn_qgemm_free returns them to */
} nn_qweights;

/* Does this processor run the path?  NN_QPATH_AUTO: always. */
bool		nn_qgemm_path_supported(nn_qpath path);
/* The fastest supported path. */
nn_qpath	nn_qgemm_path_best(void);
/* "c", "avx2", "avx512-vnni" ("auto" for NN_QPATH_AUTO). */
const char *nn_qgemm_path_name(nn_qpath path);

/*
 * Symmetric per-channel quantization of the weights w, element (o, k) at
 * w[o * so + k * si] (so = in, si = 1 for (out, in) rows; so = 1,
 * si = out for a Keras kernel (in, out)): scale[o] = max_k |w| / 127,
 * rounded up so that no value needs clamping, q = round(w / scale) to
 * nearest, ties to even, so |w - scale q| <= scale / 2.  A channel of
 * zeros gets scale 0 and q 0.  q is (out, in) row-major.  Fails on a value
 * that is not finite.
 */
nn_status	nn_qgemm_quantize_weights(int8_t *q, float *scale, const float *w,
									  size_t so, size_t si, int32_t out,
									  int32_t in, nn_error *err);

/*
 * Activation parameters for values in [lo, hi] (a calibrated range): the
 * range is widened to hold 0, which stays exact; scale = (hi - lo) / 255
 * and zero = round(-lo / scale).  Values >= 0 (after relu) get zero 0 and
 * all 256 levels.  Fails when lo or hi is not finite or lo > hi.
 */
nn_status	nn_qgemm_range(nn_qparams *p, float lo, float hi, nn_error *err);

/*
 * q[i] = clamp(round(x[i] / scale) + zero, 0, 255), rounding to nearest
 * with ties to even, computed as x * (1 / scale).  NaN maps to 0; a scale
 * of 0 maps everything to zero.
 */
void		nn_qgemm_quantize_acts(uint8_t *q, const float *x, nn_qparams p,
								   size_t n);

/*
 * Pack quantized weights q (out, in) and their scales for a path
 * (NN_QPATH_AUTO: the best).  Allocates once, through alloc; free with
 * nn_qgemm_free.  Fails on sizes out of range, a path this processor does
 * not run, or memory.
 */
nn_status	nn_qgemm_pack(nn_qweights *qw, const int8_t *q, const float *scale,
						  nn_qpath path, int32_t out, int32_t in,
						  const nn_alloc *alloc, nn_error *err);
void		nn_qgemm_free(nn_qweights *qw);

/*
 * y = dequant(xq) dequant(W)^T + bias as above: xq (n, in) with row stride
 * ldx, y (n, out) with row stride ldy, bias (out) or NULL.  Splits row
 * tiles or channel panels over the team (nn_set_threads).
 */
void		nn_qgemm(float *y, const uint8_t *xq, const nn_qweights *w,
					 const float *bias, nn_qparams xp, int32_t n, size_t ldx,
					 size_t ldy);

/* The exact sums c (n, out), row stride ldc: sum_k (xq - zero) q. */
void		nn_qgemm_s32(int32_t *c, const uint8_t *xq, const nn_qweights *w,
						 int32_t zero, int32_t n, size_t ldx, size_t ldc);

/*
 * Weight-only product: y (n, out) = x (n, in) dequant(W)^T + b, bias may
 * be NULL.  work holds nn_qgemm_weight_only_work(w, threads) floats for up
 * to `threads` threads (the team is cut to that many).
 */
void		nn_qgemm_weight_only(float *y, const float *x,
								 const nn_qweights *w, const float *bias,
								 float *work, int32_t threads, int32_t n,
								 size_t ldx, size_t ldy);
size_t		nn_qgemm_weight_only_work(const nn_qweights *w, int32_t threads);

#endif							/* NN_QGEMM_H */
