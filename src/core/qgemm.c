/*
 * qgemm.c: int8 matrix products over weights packed in panels (qgemm.h).
 *
 *   C[r][o] = sum_k (xq[r][k] - zero) wq[o][k]            (int32, exact)
 *   Y[r][o] = fmaf((float) C[r][o], xscale * scale[o], b[o])
 *
 * computed as sum_k xq wq - zero * rowsum[o]: the kernels multiply uint8
 * activations by int8 weights, as vpdpbusd does, and the zero point comes
 * off at the end with the row sums packed beside the weights.  Bounds:
 * |xq wq| <= 255 * 127, so for in <= NN_QGEMM_MAX_IN both sums and their
 * difference fit in int32; every path computes them exactly and then the
 * same float expression, so all paths agree bit for bit.
 *
 * Paths (one per packed weights, chosen by nn_qgemm_pack):
 *   - AVX-512 VNNI: vpdpbusd adds four u8 x s8 products per 32-bit lane;
 *     tiles of 8 rows x 32 channels, one row x 64 channels for a single row;
 *   - AVX2: vpmaddubsw would saturate (255 * 127 * 2 > 32767), so both
 *     operands are widened to int16 and vpmaddwd adds pairs of products
 *     into int32, which cannot saturate; tiles of 2 rows x 16 channels;
 *   - portable C.
 * The SIMD paths are compiled with target attributes and run only when
 * __builtin_cpu_supports says the processor has the instructions.
 *
 * Threads: each output value is computed by one thread, over row tiles
 * (batches) or channel panels (a few rows), so the split never changes it.
 *
 * The weight-only product dequantizes blocks of WO_BLOCK channels into a
 * float panel per thread and multiplies by sgemm; up to WO_FUSED_ROWS rows
 * it instead converts the int8 weights in registers, which reads a quarter
 * of the bytes sgemv would.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn_internal.h"
#include "qgemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define QG_X86 1
#include <immintrin.h>
#define QG_AVX2 __attribute__((target("avx2,fma")))
#define QG_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define QG_INLINE static inline __attribute__((always_inline))
#endif

#define PANEL NN_QGEMM_PANEL
#define GROUP NN_QGEMM_GROUP
#define GROUP_BYTES (PANEL * GROUP)		/* one group of a panel: 64 */

/* Weight-only product: channels dequantized at once, rows of one sgemm. */
#define WO_BLOCK 128
#define WO_ROWS 128
/* Up to this many rows, the weight-only product converts in registers. */
#define WO_FUSED_ROWS 2
/* Activations quantized per thread at a time. */
#define QUANT_BLOCK 4096

/* One quantized product: its operands and where its results go. */
typedef struct qjob
{
	const nn_qweights *w;
	const uint8_t *x;			/* (n, ldx) */
	size_t		ldx;
	int32_t		zero;
	float		xscale;
	const float *bias;			/* (out) or NULL */
	float	   *y;				/* (n, ldy) floats, or NULL: */
	int32_t    *c;				/* (n, ldy) exact sums */
	size_t		ldy;
} qjob;

/* One weight-only product. */
typedef struct wjob
{
	const nn_qweights *w;
	const float *x;				/* (n, ldx) */
	size_t		ldx;
	const float *bias;
	float	   *y;				/* (n, ldy) */
	size_t		ldy;
	float	   *work;			/* (threads, min(WO_BLOCK, out), in) */
	int32_t		n;
} wjob;

/* Rows [r0, r1) x panels [p0, p0 + np) of a product. */
typedef void (*qrows_fn) (const qjob *j, int32_t r0, int32_t r1, int32_t p0,
						  int32_t np);
/* Weight-only: row r x panels [p0, p0 + np) by in-register conversion. */
typedef void (*wrow_fn) (const wjob *j, int32_t r, int32_t p0, int32_t np);

typedef struct qkernels
{
	const char *name;
	qrows_fn	rows;
	wrow_fn		wrow;
	int32_t		mr;				/* rows of a tile */
	int32_t		np;				/* panels of a tile (for several rows) */
	int32_t		per_fma;		/* multiply-adds that take the time of one
								 * in sgemm, for nn_par's threshold */
} qkernels;

static const qkernels *kernels_of(nn_qpath path);

/* ---------- paths ---------- */

/* Does this processor run the path? */
bool
nn_qgemm_path_supported(nn_qpath path)
{
	switch (path)
	{
		case NN_QPATH_AUTO:
		case NN_QPATH_C:
			return true;
#ifdef QG_X86
		case NN_QPATH_AVX2:
			return __builtin_cpu_supports("avx2") &&
				__builtin_cpu_supports("fma");
		case NN_QPATH_VNNI:
			return __builtin_cpu_supports("avx512f") &&
				__builtin_cpu_supports("avx512bw") &&
				__builtin_cpu_supports("avx512vl") &&
				__builtin_cpu_supports("avx512vnni") &&
				nn_qgemm_path_supported(NN_QPATH_AVX2);
#endif
		default:
			return false;
	}
}

/* The fastest path this processor runs. */
nn_qpath
nn_qgemm_path_best(void)
{
	if (nn_qgemm_path_supported(NN_QPATH_VNNI))
		return NN_QPATH_VNNI;
	if (nn_qgemm_path_supported(NN_QPATH_AVX2))
		return NN_QPATH_AVX2;
	return NN_QPATH_C;
}

/* The path's name as the tests and benchmarks print it. */
const char *
nn_qgemm_path_name(nn_qpath path)
{
	if (path == NN_QPATH_AUTO)
		return "auto";
	if (path > NN_QPATH_AUTO && path < NN_QPATH_COUNT)
		return kernels_of(path)->name;
	return "unrecognized";
}

/* ---------- quantization ---------- */

/* Largest |w| of channel o; false when a weight is not finite (*bad_k). */
static bool
channel_amax(float *amax, int32_t *bad_k, const float *w, size_t so,
			 size_t si, int32_t o, int32_t in)
{
	float		m = 0.0f;

	for (int32_t k = 0; k < in; k++)
	{
		float		v = w[o * so + k * si];

		if (!isfinite(v))
		{
			*bad_k = k;
			return false;
		}
		m = fmaxf(m, fabsf(v));
	}
	*amax = m;
	return true;
}

/*
 * scale = amax / 127, one ulp up when the division rounded down: then
 * |w| / scale <= 127 for every weight, and rounding never needs a clamp.
 */
static float
channel_scale(float amax)
{
	float		s = amax / 127.0f;

	if ((double) s * 127.0 < (double) amax)
		s = nextafterf(s, INFINITY);
	return s;
}

/* Per-channel symmetric int8 weights, q (out, in) and scale (out). */
nn_status
nn_qgemm_quantize_weights(int8_t *q, float *scale, const float *w, size_t so,
						  size_t si, int32_t out, int32_t in, nn_error *err)
{
	for (int32_t o = 0; o < out; o++)
	{
		float		amax,
					s;
		int32_t		bad_k;
		int8_t	   *qo = q + (size_t) o * in;

		if (!channel_amax(&amax, &bad_k, w, so, si, o, in))
			return nn_fail(err, NN_ERR_DATA, -1,
						   "weight %d of output channel %d is not finite",
						   bad_k + 1, o + 1);
		s = amax > 0.0f ? channel_scale(amax) : 0.0f;
		scale[o] = s;
		/* in double: w / s rounds once, so ties are the true ties */
		for (int32_t k = 0; k < in; k++)
			qo[k] = s > 0.0f ?
				(int8_t) nearbyint((double) w[o * so + k * si] / s) : 0;
	}
	return NN_OK;
}

/* Activation scale and zero point for values in [lo, hi]. */
nn_status
nn_qgemm_range(nn_qparams *p, float lo, float hi, nn_error *err)
{
	double		span;

	if (!isfinite(lo) || !isfinite(hi) || lo > hi)
		return nn_fail(err, NN_ERR_DATA, -1,
					   "activation range [%g, %g] is not a finite interval",
					   lo, hi);
	lo = fminf(lo, 0.0f);
	hi = fmaxf(hi, 0.0f);
	span = (double) hi - (double) lo;
	p->scale = (float) (span / 255.0);
	p->zero = 0;
	if (p->scale > 0.0f)
	{
		double		z = nearbyint(-(double) lo / p->scale);

		p->zero = (int32_t) fmin(fmax(z, 0.0), 255.0);
	}
	return NN_OK;
}

/*
 * The clamp comes before the rounding, in float, so that the conversion
 * is exact: v in [-zero, 255 - zero] rounds to an integer in that range.
 * The comparisons send NaN to the lower bound.
 */
static NN_SIMD void
quantize_block(uint8_t *restrict q, const float *restrict x, float inv,
			   float lo, float hi, float zf, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		float		v = x[i] * inv;

		v = v > lo ? v : lo;
		v = v < hi ? v : hi;
		q[i] = (uint8_t) (int32_t) (nearbyintf(v) + zf);
	}
}

/*
 * q = clamp(round(x / scale) + zero, 0, 255), over the team in blocks of
 * QUANT_BLOCK values when there are enough of them (an im2col buffer).
 */
void
nn_qgemm_quantize_acts(uint8_t *q, const float *x, nn_qparams p, size_t n)
{
	float		inv = p.scale > 0.0f ? 1.0f / p.scale : 0.0f;
	float		zf = (float) p.zero;
	size_t		nb = (n + QUANT_BLOCK - 1) / QUANT_BLOCK;

	/* one thread also past what the team splits */
	if (nb > INT32_MAX || !nn_par((double) n, (int32_t) nb))
	{
		quantize_block(q, x, inv, -zf, 255.0f - zf, zf, n);
		return;
	}
#pragma omp parallel
	{
		int32_t		b0,
					b1;
		size_t		i0,
					i1;

		nn_thread_rows((int32_t) nb, &b0, &b1);
		i0 = (size_t) b0 * QUANT_BLOCK;
		i1 = (size_t) b1 * QUANT_BLOCK < n ? (size_t) b1 * QUANT_BLOCK : n;
		if (i1 > i0)
			quantize_block(q + i0, x + i0, inv, -zf, 255.0f - zf, zf, i1 - i0);
	}
}

/* ---------- packing ---------- */

/* Bytes of the packed panels, scales and row sums, or 0 on overflow. */
static size_t
packed_bytes(int32_t panels, int32_t groups, size_t *scale_off,
			 size_t *rowsum_off)
{
	size_t		wbytes,
				cbytes = (size_t) panels * PANEL * sizeof(float),
				total;

	if (!nn_size_mul(&wbytes, (size_t) panels * groups, GROUP_BYTES))
		return 0;
	*scale_off = wbytes;
	*rowsum_off = wbytes + cbytes;
	if (!nn_size_add(&total, wbytes, 2 * cbytes))
		return 0;
	return total;
}

/* Panels, scales (0 past out) and row sums from q (out, in). */
static void
pack_fill(nn_qweights *qw, const int8_t *q, const float *scale)
{
	size_t		pbytes = (size_t) qw->groups * GROUP_BYTES;

	memset(qw->panel, 0, pbytes * qw->panels);
	memset(qw->scale, 0, sizeof(float) * qw->panels * PANEL);
	memset(qw->rowsum, 0, sizeof(int32_t) * qw->panels * PANEL);
	for (int32_t o = 0; o < qw->out; o++)
	{
		int8_t	   *dst = qw->panel + (o / PANEL) * pbytes +
			(o % PANEL) * GROUP;
		const int8_t *src = q + (size_t) o * qw->in;
		int32_t		sum = 0;

		for (int32_t k = 0; k < qw->in; k++)
		{
			dst[(k / GROUP) * GROUP_BYTES + k % GROUP] = src[k];
			sum += src[k];
		}
		qw->rowsum[o] = sum;
		qw->scale[o] = scale[o];
	}
}

/* Pack q (out, in) and its scales for a path, in one allocation. */
nn_status
nn_qgemm_pack(nn_qweights *qw, const int8_t *q, const float *scale,
			  nn_qpath path, int32_t out, int32_t in, const nn_alloc *alloc,
			  nn_error *err)
{
	size_t		total,
				scale_off,
				rowsum_off;
	uint8_t    *block;

	memset(qw, 0, sizeof(*qw));
	if (in < 1 || in > NN_QGEMM_MAX_IN || out < 1)
		return nn_fail(err, NN_ERR_LIMIT, -1,
					   "cannot quantize a layer of %d inputs and %d outputs",
					   in, out);
	if (path == NN_QPATH_AUTO)
		path = nn_qgemm_path_best();
	if (path < NN_QPATH_AUTO || path >= NN_QPATH_COUNT ||
		!nn_qgemm_path_supported(path))
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "int8 kernel path %d is not supported here", path);
	qw->out = out;
	qw->in = in;
	qw->groups = (in + GROUP - 1) / GROUP;
	qw->panels = (out + PANEL - 1) / PANEL;
	qw->path = path;
	total = packed_bytes(qw->panels, qw->groups, &scale_off, &rowsum_off);
	block = total ? nn_alloc_bytes(alloc, total) : NULL;
	if (block == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	qw->panel = (int8_t *) block;
	qw->scale = (float *) (block + scale_off);
	qw->rowsum = (int32_t *) (block + rowsum_off);
	qw->alloc = *alloc;
	pack_fill(qw, q, scale);
	return NN_OK;
}

/* Free packed weights; a zeroed or freed struct is ignored. */
void
nn_qgemm_free(nn_qweights *qw)
{
	if (qw->panel)
		nn_free_bytes(&qw->alloc, qw->panel);
	memset(qw, 0, sizeof(*qw));
}

/* ---------- helpers shared by the paths ---------- */

/* The last k (1 to 3) bytes of a row as a word, zero-padded. */
static inline uint32_t
tail4(const uint8_t *p, int32_t k)
{
	uint32_t	v = p[0];

	if (k > 1)
		v |= (uint32_t) p[1] << 8;
	if (k > 2)
		v |= (uint32_t) p[2] << 16;
	return v;
}

/* Four bytes of a row as one word. */
static inline uint32_t
load4(const uint8_t *p)
{
	uint32_t	v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Row r of the operand, the rows past m repeating the last (tail tiles). */
static inline const uint8_t *
tile_row(const qjob *j, int32_t r0, int32_t r, int32_t m)
{
	return j->x + (size_t) (r0 + (r < m ? r : m - 1)) * j->ldx;
}

/* Channels of panel p that exist: 16 but in the last panel. */
static inline int32_t
panel_width(const nn_qweights *w, int32_t p)
{
	int32_t		left = w->out - p * PANEL;

	return left < PANEL ? left : PANEL;
}

static inline int32_t
min32(int32_t a, int32_t b)
{
	return a < b ? a : b;
}

/* ---------- portable C ---------- */

/* The sums of one row and panel: acc[j] = sum_k x[k] q[16 p + j][k]. */
static void
c_row_panel(int32_t *acc, const uint8_t *x, const int8_t *wp, int32_t in)
{
	int32_t		full = in / GROUP;
	uint8_t		last[GROUP] = {0};

	for (int j = 0; j < PANEL; j++)
		acc[j] = 0;
	for (int32_t g = 0; g <= full; g++)
	{
		const uint8_t *xg = x + g * GROUP;
		const int8_t *wg = wp + (size_t) g * GROUP_BYTES;

		if (g == full)
		{
			if (in % GROUP == 0)
				break;
			memcpy(last, xg, (size_t) (in % GROUP));
			xg = last;
		}
		for (int j = 0; j < PANEL; j++)
			acc[j] += xg[0] * wg[4 * j] + xg[1] * wg[4 * j + 1] +
				xg[2] * wg[4 * j + 2] + xg[3] * wg[4 * j + 3];
	}
}

/* Store one row's sums of panel p, less the zero point, as the job asks. */
static void
c_store(const qjob *j, int32_t r, int32_t p, const int32_t *acc)
{
	const nn_qweights *w = j->w;
	int32_t		o0 = p * PANEL,
				cnt = panel_width(w, p);

	for (int32_t jj = 0; jj < cnt; jj++)
	{
		int32_t		o = o0 + jj,
					v = acc[jj] - j->zero * w->rowsum[o];

		if (j->y)
			j->y[r * j->ldy + o] = fmaf((float) v, j->xscale * w->scale[o],
										j->bias ? j->bias[o] : 0.0f);
		else
			j->c[r * j->ldy + o] = v;
	}
}

/* Rows in plain C, one row and panel at a time. */
static void
c_rows(const qjob *j, int32_t r0, int32_t r1, int32_t p0, int32_t np)
{
	const nn_qweights *w = j->w;
	int32_t		acc[PANEL];

	for (int32_t p = p0; p < p0 + np; p++)
		for (int32_t r = r0; r < r1; r++)
		{
			c_row_panel(acc, j->x + r * j->ldx,
						w->panel + (size_t) p * w->groups * GROUP_BYTES, w->in);
			c_store(j, r, p, acc);
		}
}

/* One row of a weight-only product from its panel partial sums t (64). */
static void
wo_finish(const wjob *j, int32_t r, int32_t p, const float *t)
{
	const nn_qweights *w = j->w;
	int32_t		o0 = p * PANEL,
				cnt = panel_width(w, p);

	for (int32_t jj = 0; jj < cnt; jj++)
	{
		const float *tj = t + jj * GROUP;
		float		s = (tj[0] + tj[1]) + (tj[2] + tj[3]);

		j->y[r * j->ldy + o0 + jj] = fmaf(s, w->scale[o0 + jj],
										  j->bias ? j->bias[o0 + jj] : 0.0f);
	}
}

/* The last k < 4 floats of a row, zero-padded to a group. */
static inline void
tail4f(float *dst, const float *x, int32_t k)
{
	for (int32_t t = 0; t < GROUP; t++)
		dst[t] = t < k ? x[t] : 0.0f;
}

/*
 * Weight-only row r by panels in plain C: t[4 j + t'] sums the products
 * of input t' of every group with channel j, the layout of a group.
 */
static void
c_wrow(const wjob *j, int32_t r, int32_t p0, int32_t np)
{
	const nn_qweights *w = j->w;
	const float *x = j->x + r * j->ldx;
	int32_t		full = w->in / GROUP;

	for (int32_t p = p0; p < p0 + np; p++)
	{
		const int8_t *wp = w->panel + (size_t) p * w->groups * GROUP_BYTES;
		float		t[GROUP_BYTES] = {0};
		float		xg[GROUP];

		for (int32_t g = 0; g < w->groups; g++)
		{
			const int8_t *wg = wp + (size_t) g * GROUP_BYTES;

			if (g < full)
				memcpy(xg, x + g * GROUP, sizeof(xg));
			else
				tail4f(xg, x + g * GROUP, w->in - g * GROUP);
			for (int i = 0; i < GROUP_BYTES; i++)
				t[i] += xg[i % GROUP] * (float) wg[i];
		}
		wo_finish(j, r, p, t);
	}
}

#ifdef QG_X86

/* ---------- AVX2 ---------- */

/*
 * Chunk c of a group (bytes 16 c .. 16 c + 15: channels 4 c .. 4 c + 3,
 * four inputs each) is widened to 16 int16; vpmaddwd with the group's
 * four inputs (int16, repeated) leaves two int32 partial sums per channel
 * (inputs 0-1 and 2-3) in adjacent lanes.  acc[r][p][c] collects them;
 * the store adds the pairs.  |x w| <= 255 * 127, so no sum saturates.
 */
#define AVX2_MR 2				/* rows of a tile */
#define AVX2_WIDE 2				/* panels of a one-row tile */
#define AVX2_CHUNKS 4			/* ymm registers per panel and row */

/* A group's four inputs as int16, repeated over the register. */
QG_INLINE QG_AVX2 __m256i
avx2_inputs(uint32_t v)
{
	return _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128((int) v)));
}

/* acc += group g of NP panels times the inputs xb of MR rows. */
QG_INLINE QG_AVX2 void
avx2_step(__m256i acc[AVX2_MR][AVX2_WIDE][AVX2_CHUNKS], const int8_t *wg,
		  size_t ps, const __m256i *xb, const int MR, const int NP)
{
	for (int p = 0; p < NP; p++)
		for (int c = 0; c < AVX2_CHUNKS; c++)
		{
			__m256i		wv = _mm256_cvtepi8_epi16(_mm_load_si128(
				(const __m128i *) (wg + p * ps + c * 16)));

			for (int r = 0; r < MR; r++)
				acc[r][p][c] = _mm256_add_epi32(acc[r][p][c],
												_mm256_madd_epi16(wv, xb[r]));
		}
}

/* What the stores of eight channels from o need, once per row range. */
typedef struct avx2_out
{
	__m256i		comp;			/* zero * rowsum */
	__m256		scale;			/* xscale * scale */
	__m256		bias;
	__m256i		mask;			/* the channels that exist */
	bool		full;			/* all eight: plain stores (a masked one
								 * is microcoded on some processors) */
} avx2_out;

QG_INLINE QG_AVX2 avx2_out
avx2_out_of(const qjob *j, int32_t o)
{
	const nn_qweights *w = j->w;
	avx2_out	e;

	e.full = w->out - o >= 8;
	e.mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(w->out - o),
								_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
	e.comp = _mm256_mullo_epi32(_mm256_set1_epi32(j->zero),
								_mm256_load_si256((const __m256i *) (w->rowsum + o)));
	e.scale = _mm256_mul_ps(_mm256_set1_ps(j->xscale),
							_mm256_load_ps(w->scale + o));
	e.bias = j->bias ? _mm256_maskload_ps(j->bias + o, e.mask) :
		_mm256_setzero_ps();
	return e;
}

/* Eight sums of row r from channel o, less the zero point, stored. */
QG_INLINE QG_AVX2 void
avx2_store8(const qjob *j, const avx2_out *e, int32_t r, int32_t o, __m256i v)
{
	size_t		at = r * j->ldy + o;

	v = _mm256_sub_epi32(v, e->comp);
	if (j->y)
	{
		__m256		f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), e->scale, e->bias);

		if (e->full)
			_mm256_storeu_ps(j->y + at, f);
		else
			_mm256_maskstore_ps(j->y + at, e->mask, f);
	}
	else if (e->full)
		_mm256_storeu_si256((__m256i *) (j->c + at), v);
	else
		_mm256_maskstore_epi32((int *) (j->c + at), e->mask, v);
}

/* One row and panel: add the lane pairs into channel order, then store. */
QG_INLINE QG_AVX2 void
avx2_store(const qjob *j, const avx2_out *e, int32_t r, int32_t p,
		   const __m256i *a)
{
	__m256i		lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[0], a[1]), 0xD8),
				hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[2], a[3]), 0xD8);

	avx2_store8(j, &e[0], r, p * PANEL, lo);
	if (panel_width(j->w, p) > 8)
		avx2_store8(j, &e[1], r, p * PANEL + 8, hi);
}

/*
 * MR rows x NP panels.  Sixteen inputs (four groups) are widened by one
 * instruction and each group picked out by vpermd; the last groups go
 * one at a time, the final one zero-padded.
 */
QG_INLINE QG_AVX2 void
avx2_kernel(const qjob *j, const avx2_out (*e)[2], int32_t r0, int32_t m,
			int32_t p0, const int MR, const int NP)
{
	const nn_qweights *w = j->w;
	size_t		ps = (size_t) w->groups * GROUP_BYTES;
	const int8_t *wp = w->panel + p0 * ps;
	const uint8_t *xr[AVX2_MR];
	__m256i		acc[AVX2_MR][AVX2_WIDE][AVX2_CHUNKS];
	__m256i		xb[AVX2_MR];
	int32_t		full = w->in / GROUP,
				g = 0;

	for (int r = 0; r < MR; r++)
	{
		xr[r] = tile_row(j, r0, r, m);
		for (int p = 0; p < NP; p++)
			for (int c = 0; c < AVX2_CHUNKS; c++)
				acc[r][p][c] = _mm256_setzero_si256();
	}
	for (; g + 4 <= full; g += 4)
		for (int i = 0; i < 4; i++)
		{
			__m256i		sel = _mm256_setr_epi32(2 * i, 2 * i + 1, 2 * i, 2 * i + 1,
											2 * i, 2 * i + 1, 2 * i, 2 * i + 1);

			for (int r = 0; r < MR; r++)
				xb[r] = _mm256_permutevar8x32_epi32(_mm256_cvtepu8_epi16(
					_mm_loadu_si128((const __m128i *) (xr[r] + g * GROUP))), sel);
			avx2_step(acc, wp + (size_t) (g + i) * GROUP_BYTES, ps, xb, MR, NP);
		}
	for (; g < w->groups; g++)
	{
		for (int r = 0; r < MR; r++)
			xb[r] = avx2_inputs(g < full ? load4(xr[r] + g * GROUP) :
								tail4(xr[r] + g * GROUP, w->in - g * GROUP));
		avx2_step(acc, wp + (size_t) g * GROUP_BYTES, ps, xb, MR, NP);
	}
	for (int p = 0; p < NP; p++)
		for (int r = 0; r < MR && r < m; r++)
			avx2_store(j, e[p], r0 + r, p0 + p, acc[r][p]);
}

/* Rows [r0, r1) x NP panels from p0, in tiles of MR rows. */
QG_INLINE QG_AVX2 void
avx2_panels(const qjob *j, int32_t r0, int32_t r1, int32_t p0, const int MR,
			const int NP)
{
	avx2_out	e[AVX2_WIDE][2];

	for (int p = 0; p < NP; p++)
		for (int h = 0; h < 2; h++)
			e[p][h] = avx2_out_of(j, (p0 + p) * PANEL + 8 * h);
	for (int32_t r = r0; r < r1; r += MR)
		avx2_kernel(j, (const avx2_out (*)[2]) e, r, min32(MR, r1 - r), p0,
					MR, NP);
}

/* Rows by AVX2: tiles of 2 rows x 1 panel; a single row 2 panels. */
static QG_AVX2 void
avx2_rows(const qjob *j, int32_t r0, int32_t r1, int32_t p0, int32_t np)
{
	for (int32_t p = p0; p < p0 + np;)
	{
		if (r1 - r0 > 1)
			avx2_panels(j, r0, r1, p++, AVX2_MR, 1);
		else if (p + 2 <= p0 + np)
		{
			avx2_panels(j, r0, r1, p, 1, 2);
			p += 2;
		}
		else
			avx2_panels(j, r0, r1, p++, 1, 1);
	}
}

/*
 * Weight-only row r by AVX2: eight bytes (two channels, four inputs each)
 * converted to float and multiplied by the group's inputs, repeated.
 */
static QG_AVX2 void
avx2_wrow(const wjob *j, int32_t r, int32_t p0, int32_t np)
{
	const nn_qweights *w = j->w;
	const float *x = j->x + r * j->ldx;
	int32_t		full = w->in / GROUP;

	for (int32_t p = p0; p < p0 + np; p++)
	{
		const int8_t *wp = w->panel + (size_t) p * w->groups * GROUP_BYTES;
		__m256		acc[8];
		float		t[GROUP_BYTES] __attribute__((aligned(32)));
		float		xg[GROUP];

		for (int c = 0; c < 8; c++)
			acc[c] = _mm256_setzero_ps();
		for (int32_t g = 0; g < w->groups; g++)
		{
			__m128		x4;

			if (g < full)
				x4 = _mm_loadu_ps(x + g * GROUP);
			else
			{
				tail4f(xg, x + g * GROUP, w->in - g * GROUP);
				x4 = _mm_loadu_ps(xg);
			}
			for (int c = 0; c < 8; c++)
				acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
					_mm_loadl_epi64((const __m128i *) (wp + (size_t) g * GROUP_BYTES + 8 * c)))),
										 _mm256_set_m128(x4, x4), acc[c]);
		}
		for (int c = 0; c < 8; c++)
			_mm256_store_ps(t + 8 * c, acc[c]);
		wo_finish(j, r, p, t);
	}
}

/* ---------- AVX-512 VNNI ---------- */

/*
 * A group of a panel is one zmm: 16 channels x 4 inputs, as vpdpbusd wants
 * its signed operand; the row's four inputs are broadcast as one 32-bit
 * word.  Tiles: 8 rows x 2 panels (16 sums in registers, 2 weight loads and
 * 8 broadcasts per 16 vpdpbusd), or 1 row x 4 panels for a single row.
 */
#define VNNI_MR 8				/* rows of a tile */
#define VNNI_NP 2				/* panels of a tile */
#define VNNI_WIDE 4				/* panels of a one-row tile */

/*
 * acc += u8 x s8 dot products of four bytes per lane.  GCC 12 copies the
 * accumulator before and after each intrinsic (it does not tie the operand
 * to the result), which halves the kernel's speed; the asm ties it.
 */
QG_INLINE QG_VNNI __m512i
vnni_dot(__m512i acc, __m512i u8, __m512i s8)
{
#ifdef __clang__
	return _mm512_dpbusd_epi32(acc, u8, s8);
#else
	__asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "vm"(s8));
	return acc;
#endif
}

/* acc += group wg of NP panels times the input words xv of MR rows. */
QG_INLINE QG_VNNI void
vnni_step(__m512i acc[VNNI_MR][VNNI_WIDE], const int8_t *wg, size_t ps,
		  const uint32_t *xv, const int MR, const int NP)
{
	__m512i		wv[VNNI_WIDE];

	for (int p = 0; p < NP; p++)
		wv[p] = _mm512_load_si512((const void *) (wg + p * ps));
	for (int r = 0; r < MR; r++)
	{
		__m512i		xb = _mm512_set1_epi32((int) xv[r]);

		for (int p = 0; p < NP; p++)
			acc[r][p] = vnni_dot(acc[r][p], xb, wv[p]);
	}
}

/* What the stores of one panel need, once per row range. */
typedef struct vnni_out
{
	__m512i		comp;			/* zero * rowsum */
	__m512		scale;			/* xscale * scale */
	__m512		bias;
	__mmask16	mask;			/* the panel's channels */
} vnni_out;

QG_INLINE QG_VNNI vnni_out
vnni_out_of(const qjob *j, int32_t p)
{
	const nn_qweights *w = j->w;
	int32_t		o = p * PANEL;
	vnni_out	e;

	e.mask = (__mmask16) ((1u << panel_width(w, p)) - 1);
	e.comp = _mm512_mullo_epi32(_mm512_set1_epi32(j->zero),
								_mm512_load_si512((const void *) (w->rowsum + o)));
	e.scale = _mm512_mul_ps(_mm512_set1_ps(j->xscale),
							_mm512_load_ps(w->scale + o));
	e.bias = j->bias ? _mm512_maskz_loadu_ps(e.mask, j->bias + o) :
		_mm512_setzero_ps();
	return e;
}

/* Sixteen sums of row r, panel p, less the zero point, stored as asked. */
QG_INLINE QG_VNNI void
vnni_store(const qjob *j, const vnni_out *e, int32_t r, int32_t p, __m512i v)
{
	size_t		at = r * j->ldy + p * PANEL;

	v = _mm512_sub_epi32(v, e->comp);
	if (j->y)
		_mm512_mask_storeu_ps(j->y + at, e->mask,
							  _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), e->scale,
											  e->bias));
	else
		_mm512_mask_storeu_epi32(j->c + at, e->mask, v);
}

/* MR rows x NP panels; the last group's inputs zero-padded. */
QG_INLINE QG_VNNI void
vnni_kernel(const qjob *j, const vnni_out *e, int32_t r0, int32_t m,
			int32_t p0, const int MR, const int NP)
{
	const nn_qweights *w = j->w;
	size_t		ps = (size_t) w->groups * GROUP_BYTES;
	const int8_t *wp = w->panel + p0 * ps;
	const uint8_t *xr[VNNI_MR];
	__m512i		acc[VNNI_MR][VNNI_WIDE];
	uint32_t	xv[VNNI_MR];
	int32_t		full = w->in / GROUP;

	for (int r = 0; r < MR; r++)
	{
		xr[r] = tile_row(j, r0, r, m);
		for (int p = 0; p < NP; p++)
			acc[r][p] = _mm512_setzero_si512();
	}
	for (int32_t g = 0; g < full; g++)
	{
		for (int r = 0; r < MR; r++)
			xv[r] = load4(xr[r] + g * GROUP);
		vnni_step(acc, wp + (size_t) g * GROUP_BYTES, ps, xv, MR, NP);
	}
	if (full < w->groups)
	{
		for (int r = 0; r < MR; r++)
			xv[r] = tail4(xr[r] + full * GROUP, w->in - full * GROUP);
		vnni_step(acc, wp + (size_t) full * GROUP_BYTES, ps, xv, MR, NP);
	}
	for (int p = 0; p < NP; p++)
		for (int r = 0; r < MR && r < m; r++)
			vnni_store(j, &e[p], r0 + r, p0 + p, acc[r][p]);
}

/*
 * One row x NP panels, for a single row: even and odd groups go to two
 * sums, two dependency chains per panel instead of one (integer sums: the
 * order does not change them).
 */
QG_INLINE QG_VNNI void
vnni_row_kernel(const qjob *j, const vnni_out *e, int32_t r, int32_t p0,
				const int NP)
{
	const nn_qweights *w = j->w;
	size_t		ps = (size_t) w->groups * GROUP_BYTES;
	const int8_t *wp = w->panel + p0 * ps;
	const uint8_t *x = j->x + r * j->ldx;
	__m512i		acc[2][VNNI_WIDE];
	int32_t		full = w->in / GROUP,
				g = 0;

	for (int h = 0; h < 2; h++)
		for (int p = 0; p < NP; p++)
			acc[h][p] = _mm512_setzero_si512();
	for (; g < w->groups; g += 2)
		for (int h = 0; h < 2 && g + h < w->groups; h++)
		{
			int32_t		gh = g + h;
			uint32_t	v = gh < full ? load4(x + gh * GROUP) :
				tail4(x + gh * GROUP, w->in - gh * GROUP);
			__m512i		xb = _mm512_set1_epi32((int) v);

			for (int p = 0; p < NP; p++)
				acc[h][p] = vnni_dot(acc[h][p], xb, _mm512_load_si512(
					(const void *) (wp + p * ps + (size_t) gh * GROUP_BYTES)));
		}
	for (int p = 0; p < NP; p++)
		vnni_store(j, &e[p], r, p0 + p, _mm512_add_epi32(acc[0][p], acc[1][p]));
}

/* Rows [r0, r1) x NP panels from p0, in tiles of MR rows. */
QG_INLINE QG_VNNI void
vnni_panels(const qjob *j, int32_t r0, int32_t r1, int32_t p0, const int MR,
			const int NP)
{
	vnni_out	e[VNNI_WIDE];

	for (int p = 0; p < NP; p++)
		e[p] = vnni_out_of(j, p0 + p);
	for (int32_t r = r0; r < r1; r += MR)
		if (MR == 1)
			vnni_row_kernel(j, e, r, p0, NP);
		else
			vnni_kernel(j, e, r, min32(MR, r1 - r), p0, MR, NP);
}

/* Rows by VNNI: tiles of 8 rows x 2 panels; a single row 4 panels. */
static QG_VNNI void
vnni_rows(const qjob *j, int32_t r0, int32_t r1, int32_t p0, int32_t np)
{
	for (int32_t p = p0, left = np; left > 0;)
	{
		int32_t		step;

		if (r1 - r0 > 1)
		{
			step = left >= VNNI_NP ? VNNI_NP : 1;
			if (step == VNNI_NP)
				vnni_panels(j, r0, r1, p, VNNI_MR, VNNI_NP);
			else
				vnni_panels(j, r0, r1, p, VNNI_MR, 1);
		}
		else
		{
			step = left >= VNNI_WIDE ? VNNI_WIDE : left >= 2 ? 2 : 1;
			if (step == VNNI_WIDE)
				vnni_panels(j, r0, r1, p, 1, VNNI_WIDE);
			else if (step == 2)
				vnni_panels(j, r0, r1, p, 1, 2);
			else
				vnni_panels(j, r0, r1, p, 1, 1);
		}
		p += step;
		left -= step;
	}
}

/*
 * Weight-only row r by AVX-512: a group's 16 bytes of four channels are
 * converted to 16 floats and multiplied by the four inputs, repeated.
 */
static QG_VNNI void
vnni_wrow(const wjob *j, int32_t r, int32_t p0, int32_t np)
{
	const nn_qweights *w = j->w;
	const float *x = j->x + r * j->ldx;
	int32_t		full = w->in / GROUP;

	for (int32_t p = p0; p < p0 + np; p++)
	{
		const int8_t *wp = w->panel + (size_t) p * w->groups * GROUP_BYTES;
		__m512		acc[4];
		float		t[GROUP_BYTES] __attribute__((aligned(64)));
		float		xg[GROUP];

		for (int c = 0; c < 4; c++)
			acc[c] = _mm512_setzero_ps();
		for (int32_t g = 0; g < w->groups; g++)
		{
			__m512		xb;

			if (g < full)
				xb = _mm512_broadcast_f32x4(_mm_loadu_ps(x + g * GROUP));
			else
			{
				tail4f(xg, x + g * GROUP, w->in - g * GROUP);
				xb = _mm512_broadcast_f32x4(_mm_loadu_ps(xg));
			}
			for (int c = 0; c < 4; c++)
				acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
					_mm_load_si128((const __m128i *) (wp + (size_t) g * GROUP_BYTES + 16 * c)))),
										 xb, acc[c]);
		}
		for (int c = 0; c < 4; c++)
			_mm512_store_ps(t + 16 * c, acc[c]);
		wo_finish(j, r, p, t);
	}
}

#endif							/* QG_X86 */

/* ---------- dispatch and threads ---------- */

static const qkernels qkernel_table[NN_QPATH_COUNT] = {
	[NN_QPATH_AUTO] = {"auto", NULL, NULL, 1, 1, 1},
	[NN_QPATH_C] = {"c", c_rows, c_wrow, 4, 1, 1},
#ifdef QG_X86
	[NN_QPATH_AVX2] = {"avx2", avx2_rows, avx2_wrow, AVX2_MR, 1, 1},
	[NN_QPATH_VNNI] = {"avx512-vnni", vnni_rows, vnni_wrow, VNNI_MR, VNNI_NP, 4},
#else
	[NN_QPATH_AVX2] = {"avx2", NULL, NULL, 1, 1, 1},
	[NN_QPATH_VNNI] = {"avx512-vnni", NULL, NULL, 1, 1, 1},
#endif
};

/* The kernels of a path (a packed one: never AUTO). */
static const qkernels *
kernels_of(nn_qpath path)
{
	return &qkernel_table[path];
}

/*
 * Rows [r0, r1) x panels [p0, p1): a few panels at a time, so that their
 * weights stay in L1 while every row tile passes over them.  A single row
 * takes all its panels in one call (the one-row kernels).
 */
static void
qgemm_block(const qjob *j, const qkernels *k, int32_t r0, int32_t r1,
			int32_t p0, int32_t p1)
{
	int32_t		step = r1 - r0 == 1 ? p1 - p0 : k->np;

	for (int32_t p = p0; p < p1; p += step)
		k->rows(j, r0, r1, p, min32(step, p1 - p));
}

/*
 * The product over the team: row tiles when there are enough for every
 * thread twice over, else panels (a few rows: every thread reads only its
 * share of the weights).  A small product stays on the calling thread,
 * outside any parallel region: entering one costs time even when it
 * does not start the team, which a one-row product would notice.
 */
static void
qgemm_run(const qjob *j, int32_t n)
{
	const qkernels *k = kernels_of(j->w->path);
	int32_t		tiles = (n + k->mr - 1) / k->mr,
				panels = j->w->panels;
	bool		by_rows = tiles >= 2 * nn_team_size();
	double		work = (double) n * j->w->in * j->w->out / k->per_fma;

	if (n < 1)
		return;
	if (!nn_par(work, by_rows ? tiles : panels))
	{
		qgemm_block(j, k, 0, n, 0, panels);
		return;
	}
#pragma omp parallel
	{
		int32_t		a,
					b;

		nn_thread_rows(by_rows ? tiles : panels, &a, &b);
		if (a < b && by_rows)
			qgemm_block(j, k, a * k->mr, min32(b * k->mr, n), 0, panels);
		else if (a < b)
			qgemm_block(j, k, 0, n, a, b);
	}
}

/* y = dequant(xq) dequant(W)^T + bias. */
void
nn_qgemm(float *y, const uint8_t *xq, const nn_qweights *w, const float *bias,
		 nn_qparams xp, int32_t n, size_t ldx, size_t ldy)
{
	qjob		j = {.w = w, .x = xq, .ldx = ldx, .zero = xp.zero,
	.xscale = xp.scale, .bias = bias, .y = y, .ldy = ldy};

	qgemm_run(&j, n);
}

/* c = (xq - zero) q^T, exactly. */
void
nn_qgemm_s32(int32_t *c, const uint8_t *xq, const nn_qweights *w,
			 int32_t zero, int32_t n, size_t ldx, size_t ldc)
{
	qjob		j = {.w = w, .x = xq, .ldx = ldx, .zero = zero, .c = c,
	.ldy = ldc};

	qgemm_run(&j, n);
}

/* ---------- weight-only ---------- */

/* Channels [o0, o0 + nb) dequantized as rows of dst (nb, in). */
static NN_SIMD void
wo_dequant(float *restrict dst, const nn_qweights *w, int32_t o0, int32_t nb)
{
	int32_t		in = w->in,
				full = in / GROUP;

	for (int32_t jo = 0; jo < nb; jo++)
	{
		int32_t		o = o0 + jo;
		const int8_t *src = w->panel +
			(size_t) (o / PANEL) * w->groups * GROUP_BYTES + (o % PANEL) * GROUP;
		float		s = w->scale[o];
		float	   *d = dst + (size_t) jo * in;

		for (int32_t g = 0; g < full; g++)
			for (int t = 0; t < GROUP; t++)
				d[g * GROUP + t] = s * (float) src[(size_t) g * GROUP_BYTES + t];
		for (int32_t k = full * GROUP; k < in; k++)
			d[k] = s * (float) src[(size_t) full * GROUP_BYTES + k % GROUP];
	}
}

/* Add the bias to rows x channels [o0, o0 + nb) of y. */
static void
wo_bias(const wjob *j, int32_t r0, int32_t rows, int32_t o0, int32_t nb)
{
	for (int32_t r = r0; r < r0 + rows; r++)
	{
		float	   *yr = j->y + r * j->ldy + o0;

		for (int32_t k = 0; k < nb; k++)
			yr[k] += j->bias[o0 + k];
	}
}

/* Task t of the blocked product: rows chunk x channel block, by sgemm. */
static void
wo_task(const wjob *j, float *panel, int32_t *have, int32_t t, int32_t chunks)
{
	const nn_qweights *w = j->w;
	int32_t		blk = t / chunks,
				o0 = blk * WO_BLOCK,
				nb = min32(WO_BLOCK, w->out - o0),
				r0 = (t % chunks) * WO_ROWS,
				rows = min32(WO_ROWS, j->n - r0);

	if (blk != *have)
		wo_dequant(panel, w, o0, nb);
	*have = blk;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nb, w->in,
				1.0f, j->x + r0 * j->ldx, (int) j->ldx, panel, w->in, 0.0f,
				j->y + r0 * j->ldy + o0, (int) j->ldy);
	if (j->bias)
		wo_bias(j, r0, rows, o0, nb);
}

/*
 * Tasks of WO_ROWS rows x WO_BLOCK channels, channel-major, split into
 * contiguous runs, so that a thread dequantizes each block it meets once.
 * The sgemm calls do not depend on the split.
 */
static void
wo_blocked(const wjob *j, int32_t threads)
{
	int32_t		blocks = (j->w->out + WO_BLOCK - 1) / WO_BLOCK,
				chunks = (j->n + WO_ROWS - 1) / WO_ROWS,
				tasks = blocks * chunks;
	double		work = (double) j->n * j->w->in * j->w->out;

	int32_t		have = -1;

	if (!nn_par(work, tasks))
	{
		for (int32_t t = 0; t < tasks; t++)
			wo_task(j, j->work, &have, t, chunks);
		return;
	}
#pragma omp parallel num_threads(threads) firstprivate(have)
	{
		int32_t		a,
					b;
#ifdef _OPENMP
		size_t		me = (size_t) omp_get_thread_num();
#else
		size_t		me = 0;
#endif
		float	   *panel = j->work + me * min32(WO_BLOCK, j->w->out) * j->w->in;

		nn_thread_rows(tasks, &a, &b);
		for (int32_t t = a; t < b; t++)
			wo_task(j, panel, &have, t, chunks);
	}
}

/* A few rows: the path's in-register conversion, panels over threads. */
static void
wo_fused(const wjob *j, int32_t threads)
{
	const qkernels *k = kernels_of(j->w->path);
	int32_t		panels = j->w->panels;
	double		work = (double) j->n * j->w->in * j->w->out;

	if (!nn_par(work, panels))
	{
		for (int32_t r = 0; r < j->n; r++)
			k->wrow(j, r, 0, panels);
		return;
	}
#pragma omp parallel num_threads(threads)
	{
		int32_t		p0,
					p1;

		nn_thread_rows(panels, &p0, &p1);
		for (int32_t r = 0; r < j->n && p0 < p1; r++)
			k->wrow(j, r, p0, p1 - p0);
	}
}

/* y = x dequant(W)^T + bias with float activations. */
void
nn_qgemm_weight_only(float *y, const float *x, const nn_qweights *w,
					 const float *bias, float *work, int32_t threads,
					 int32_t n, size_t ldx, size_t ldy)
{
	wjob		j = {.w = w, .x = x, .ldx = ldx, .bias = bias, .y = y,
	.ldy = ldy, .work = work, .n = n};

	threads = min32(threads < 1 ? 1 : threads, nn_team_size());
	if (n < 1)
		return;
	if (n <= WO_FUSED_ROWS)
		wo_fused(&j, threads);
	else
		wo_blocked(&j, threads);
}

/* Floats of work for the weight-only product on up to `threads` threads. */
size_t
nn_qgemm_weight_only_work(const nn_qweights *w, int32_t threads)
{
	return (size_t) (threads < 1 ? 1 : threads) *
		min32(WO_BLOCK, w->out) * w->in;
}
