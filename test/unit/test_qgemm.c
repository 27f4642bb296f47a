/*
 * test_qgemm.c: the int8 products of qgemm.c against naive references.
 *
 * Every kernel path this processor runs (portable C, AVX2, AVX-512 VNNI;
 * the others are reported as skipped) is checked on the shapes
 * n, in, out in {1, 3, 7, 15, 16, 17, 31, 33, 64, 65} and with 784 in
 * each place, with padded row strides:
 *   - the int32 sums, bit-exact against sum_k (xq - zero) q in int64;
 *   - the float outputs, bit-exact against fmaf((float) sum, xscale *
 *     scale, bias), so all paths agree with each other bit for bit, and
 *     within the quantization error of the float product X W^T + b:
 *     sum_k |x| scale / 2 + |w| xscale + xscale scale / 2;
 *   - nothing written past the last channel of a row.
 * Then the extremes (every weight +-127 and every activation at 0 or 255
 * over the longest input, where a saturating int16 sum would show),
 * channels of zeros (scale 0, output = bias), the round trip bound
 * |w - scale q| <= scale / 2 from 1e-40 to 1e30, the activation
 * quantization (also split between threads), the weight-only product
 * (float reference on the dequantized weights), the same bits for 1 and
 * 2 threads, and the failures of packing.
 */
#include <float.h>
#include <math.h>

#include "nn_test.h"
#include "qgemm.h"

static const int32_t sizes[] = {1, 3, 7, 15, 16, 17, 31, 33, 64, 65};

#define NSIZES ((int) (sizeof(sizes) / sizeof(sizes[0])))
#define BIG 784
#define SENTINEL_I 0x7f7f7f7f
#define SENTINEL_F (-12345.5f)

/* Paths this processor runs; reports the others once. */
static int
paths_here(nn_qpath *out)
{
	static bool told = false;
	int			n = 0;

	for (int p = NN_QPATH_C; p < NN_QPATH_COUNT; p++)
	{
		if (nn_qgemm_path_supported((nn_qpath) p))
			out[n++] = (nn_qpath) p;
		else if (!told)
			print_message("path %s: not supported here, skipped\n",
						  nn_qgemm_path_name((nn_qpath) p));
	}
	told = true;
	return n;
}

/* ---------- a quantized problem ---------- */

typedef struct qcase
{
	int32_t		n,
				in,
				out;
	size_t		ldx,
				ldy;
	float	   *x;				/* (n, in) */
	float	   *w;				/* (out, in) */
	float	   *bias;			/* (out) */
	int8_t	   *q;				/* (out, in) */
	float	   *sw;				/* (out) */
	uint8_t    *xq;				/* (n, ldx) */
	nn_qparams	xp;
	int32_t    *ref;			/* (n, out) exact sums */
} qcase;

/* Smallest and largest of x. */
static void
min_max(const float *x, size_t n, float *lo, float *hi)
{
	*lo = *hi = n ? x[0] : 0.0f;
	for (size_t i = 1; i < n; i++)
	{
		*lo = fminf(*lo, x[i]);
		*hi = fmaxf(*hi, x[i]);
	}
}

/* sum_k (xq - zero) q in int64, which must fit in int32. */
static void
ref_sums(qcase *c)
{
	for (int32_t r = 0; r < c->n; r++)
		for (int32_t o = 0; o < c->out; o++)
		{
			int64_t		s = 0;

			for (int32_t k = 0; k < c->in; k++)
				s += (int64_t) ((int32_t) c->xq[r * c->ldx + k] - c->xp.zero) *
					c->q[(size_t) o * c->in + k];
			assert_true(s >= INT32_MIN && s <= INT32_MAX);
			c->ref[(size_t) r * c->out + o] = (int32_t) s;
		}
}

/* Quantize the case's weights and activations, then its reference. */
static void
quantize_case(qcase *c)
{
	nn_error	err;
	float		lo,
				hi;

	assert_ok(nn_qgemm_quantize_weights(c->q, c->sw, c->w, c->in, 1, c->out,
										c->in, &err), &err);
	min_max(c->x, (size_t) c->n * c->in, &lo, &hi);
	assert_ok(nn_qgemm_range(&c->xp, lo, hi, &err), &err);
	for (int32_t r = 0; r < c->n; r++)
		nn_qgemm_quantize_acts(c->xq + r * c->ldx, c->x + (size_t) r * c->in,
							   c->xp, c->in);
	ref_sums(c);
}

/*
 * Random case: channel o's weights scaled by 0.3 (o % 5 + 1), every 13th
 * channel zero; activations in [-1, 2] or, after relu, [0, 3].
 */
static void
make_case(qcase *c, int32_t n, int32_t in, int32_t out, uint64_t seed)
{
	nn_rng		rng;

	nn_rng_seed(&rng, seed);
	c->n = n;
	c->in = in;
	c->out = out;
	c->ldx = in + seed % 3;
	c->ldy = out + (seed % 2) * 5;
	c->x = nt_xmalloc(sizeof(float) * n * in);
	c->w = nt_xmalloc(sizeof(float) * out * in);
	c->bias = nt_xmalloc(sizeof(float) * out);
	c->q = nt_xmalloc((size_t) out * in);
	c->sw = nt_xmalloc(sizeof(float) * out);
	c->xq = nt_xmalloc(c->ldx * n);
	c->ref = nt_xmalloc(sizeof(int32_t) * n * out);
	memset(c->xq, 0xAB, c->ldx * n);	/* padding of the strides */
	nt_fill(c->x, (size_t) n * in, &rng, seed % 2 ? 0.0f : -1.0f,
			seed % 2 ? 3.0f : 2.0f);
	nt_fill(c->w, (size_t) out * in, &rng, -1.0f, 1.0f);
	nt_fill(c->bias, out, &rng, -0.5f, 0.5f);
	for (int32_t o = 0; o < out; o++)
		for (int32_t k = 0; k < in; k++)
			c->w[(size_t) o * in + k] *= o % 13 == 5 ? 0.0f : 0.3f * (o % 5 + 1);
	quantize_case(c);
}

static void
free_case(qcase *c)
{
	free(c->x);
	free(c->w);
	free(c->bias);
	free(c->q);
	free(c->sw);
	free(c->xq);
	free(c->ref);
}

/* Pack the case's weights for a path; fails the test on error. */
static void
pack_case(nn_qweights *qw, const qcase *c, nn_qpath path)
{
	nn_error	err;

	assert_ok(nn_qgemm_pack(qw, c->q, c->sw, path, c->out, c->in,
							&nn_malloc_alloc, &err), &err);
	assert_int_equal(qw->path, path);
}

/* ---------- checks of one path on one case ---------- */

/* The int32 sums, exactly, and nothing past the last channel. */
static void
check_sums(const qcase *c, const nn_qweights *qw, const char *label)
{
	int32_t    *s = nt_xmalloc(sizeof(int32_t) * c->n * c->ldy);

	for (size_t i = 0; i < c->n * c->ldy; i++)
		s[i] = SENTINEL_I;
	nn_qgemm_s32(s, c->xq, qw, c->xp.zero, c->n, c->ldx, c->ldy);
	for (int32_t r = 0; r < c->n; r++)
		for (size_t o = 0; o < c->ldy; o++)
		{
			int32_t		want = o < (size_t) c->out ?
				c->ref[(size_t) r * c->out + o] : SENTINEL_I;

			if (s[r * c->ldy + o] != want)
				fail_msg("%s: sum [%d][%zu] is %d, expected %d", label, r, o,
						 s[r * c->ldy + o], want);
		}
	free(s);
}

/* Quantization error bound of output (r, o) against the float product. */
static double
float_bound(const qcase *c, int32_t r, int32_t o, double *yf)
{
	double		b = 0.0,
				mag = fabs(c->bias[o]),
				sx = c->xp.scale,
				sw = c->sw[o];

	*yf = c->bias[o];
	for (int32_t k = 0; k < c->in; k++)
	{
		double		x = c->x[(size_t) r * c->in + k],
					w = c->w[(size_t) o * c->in + k];

		*yf += x * w;
		mag += fabs(x * w);
		b += fabs(x) * sw / 2 + fabs(w) * sx + sx * sw / 2;
	}
	return b + 1e-5 * mag + 1e-6;
}

/* The float outputs: the exact expression, and near the float product. */
static void
check_floats(const qcase *c, const nn_qweights *qw, const char *label)
{
	float	   *y = nt_xmalloc(sizeof(float) * c->n * c->ldy);

	for (size_t i = 0; i < c->n * c->ldy; i++)
		y[i] = SENTINEL_F;
	nn_qgemm(y, c->xq, qw, c->bias, c->xp, c->n, c->ldx, c->ldy);
	for (int32_t r = 0; r < c->n; r++)
		for (size_t o = 0; o < c->ldy; o++)
		{
			float		got = y[r * c->ldy + o],
						want = SENTINEL_F;
			double		yf,
						bound;

			if (o < (size_t) c->out)
				want = fmaf((float) c->ref[(size_t) r * c->out + o],
							c->xp.scale * c->sw[o], c->bias[o]);
			if (memcmp(&got, &want, sizeof(float)) != 0)
				fail_msg("%s: y[%d][%zu] is %.9g, expected %.9g", label, r, o,
						 got, want);
			if (o >= (size_t) c->out)
				continue;
			bound = float_bound(c, r, (int32_t) o, &yf);
			if (fabs(got - yf) > bound)
				fail_msg("%s: y[%d][%zu] = %.9g is %.3g from the float %.9g "
						 "(bound %.3g)", label, r, o, got, fabs(got - yf), yf,
						 bound);
		}
	free(y);
}

/* Every path on one shape. */
static void
check_shape(int32_t n, int32_t in, int32_t out, uint64_t seed)
{
	nn_qpath	paths[NN_QPATH_COUNT];
	int			np = paths_here(paths);
	qcase		c;
	char		label[96];

	make_case(&c, n, in, out, seed);
	for (int i = 0; i < np; i++)
	{
		nn_qweights qw;

		snprintf(label, sizeof(label), "%s n=%d in=%d out=%d",
				 nn_qgemm_path_name(paths[i]), n, in, out);
		pack_case(&qw, &c, paths[i]);
		check_sums(&c, &qw, label);
		check_floats(&c, &qw, label);
		nn_qgemm_free(&qw);
	}
	free_case(&c);
}

/* All shapes of the small sizes. */
static void
test_shapes_small(void **state)
{
	(void) state;
	for (int a = 0; a < NSIZES; a++)
		for (int b = 0; b < NSIZES; b++)
			for (int d = 0; d < NSIZES; d++)
				check_shape(sizes[a], sizes[b], sizes[d], 100 + a * 100 + b * 10 + d);
}

/* 784 as n, as in and as out, beside every small size. */
static void
test_shapes_784(void **state)
{
	(void) state;
	for (int a = 0; a < NSIZES; a++)
		for (int b = 0; b < NSIZES; b += 3)
		{
			check_shape(BIG, sizes[a], sizes[b], 7 + a + b);
			check_shape(sizes[a], BIG, sizes[b], 8 + a + b);
			check_shape(sizes[a], sizes[b], BIG, 9 + a + b);
		}
	check_shape(BIG, BIG, 65, 3);
	check_shape(33, BIG, BIG, 4);
}

/* The paths' names and what this processor runs. */
static void
test_paths(void **state)
{
	nn_qpath	paths[NN_QPATH_COUNT];
	int			n = paths_here(paths);

	(void) state;
	assert_true(nn_qgemm_path_supported(NN_QPATH_C));
	assert_true(nn_qgemm_path_supported(nn_qgemm_path_best()));
	assert_int_equal(paths[n - 1], nn_qgemm_path_best());
	for (int i = 0; i < n; i++)
		print_message("path %s: tested\n", nn_qgemm_path_name(paths[i]));
	assert_string_equal(nn_qgemm_path_name(NN_QPATH_C), "c");
	assert_string_equal(nn_qgemm_path_name(NN_QPATH_VNNI), "avx512-vnni");
}

/* ---------- extremes ---------- */

/*
 * Weights of +-127 only and activations at one end, over the longest
 * input: |sum| = 255 * 127 * 65536, just below 2^31.  Channel o has the
 * sign (-1)^o, or alternates sign along the input when o % 3 == 2.
 */
static void
extreme_case(qcase *c, int32_t n, int32_t in, int32_t out, uint8_t xval,
			 int32_t zero)
{
	memset(c, 0, sizeof(*c));
	c->n = n;
	c->in = in;
	c->out = out;
	c->ldx = in;
	c->ldy = out;
	c->q = nt_xmalloc((size_t) out * in);
	c->sw = nt_xmalloc(sizeof(float) * out);
	c->xq = nt_xmalloc((size_t) n * in);
	c->ref = nt_xmalloc(sizeof(int32_t) * n * out);
	c->bias = calloc(out, sizeof(float));
	for (int32_t o = 0; o < out; o++)
	{
		c->sw[o] = 1.0f / 127;
		for (int32_t k = 0; k < in; k++)
			c->q[(size_t) o * in + k] = (int8_t) (o % 3 == 2 ?
												  (k % 2 ? -127 : 127) :
												  (o % 2 ? -127 : 127));
	}
	memset(c->xq, xval, (size_t) n * in);
	c->xp.scale = 1.0f / 255;
	c->xp.zero = zero;
	ref_sums(c);
}

static void
test_extremes(void **state)
{
	static const struct
	{
		uint8_t		x;
		int32_t		zero;
	}			ends[] = {{255, 0}, {0, 255}, {255, 128}, {0, 0}, {255, 255}};
	static const int32_t ins[] = {NN_QGEMM_MAX_IN, 65535, 4093};
	nn_qpath	paths[NN_QPATH_COUNT];
	int			np = paths_here(paths);
	char		label[96];

	(void) state;
	for (size_t e = 0; e < sizeof(ends) / sizeof(ends[0]); e++)
		for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++)
		{
			qcase		c;

			extreme_case(&c, 3, ins[i], 19, ends[e].x, ends[e].zero);
			if (ins[i] == NN_QGEMM_MAX_IN && e == 0)
				assert_int_equal(c.ref[0], 255 * 127 * 65536);
			for (int p = 0; p < np; p++)
			{
				nn_qweights qw;

				snprintf(label, sizeof(label), "%s extremes x=%d zero=%d in=%d",
						 nn_qgemm_path_name(paths[p]), ends[e].x, ends[e].zero,
						 ins[i]);
				pack_case(&qw, &c, paths[p]);
				check_sums(&c, &qw, label);
				nn_qgemm_free(&qw);
			}
			free(c.q);
			free(c.sw);
			free(c.xq);
			free(c.ref);
			free(c.bias);
		}
}

/* ---------- channels of zeros ---------- */

/*
 * Channels whose weights are all 0 get scale 0 (no division by it) and
 * output exactly their bias; so do rows of zero activations (each input
 * at the zero point), and every row when all activations are 0
 * (activation scale 0).
 */
static void
test_zero_channels(void **state)
{
	nn_qpath	paths[NN_QPATH_COUNT];
	int			np = paths_here(paths);
	qcase		c;

	(void) state;
	for (int all_zero_x = 0; all_zero_x < 2; all_zero_x++)
	{
		make_case(&c, 9, 37, 35, 77);
		for (int32_t o = 0; o < c.out; o++)
			if (o % 4 == 1)
				memset(c.w + (size_t) o * c.in, 0, sizeof(float) * c.in);
		for (int32_t r = 0; r < c.n; r++)
			if (all_zero_x || r % 3 == 1)
				memset(c.x + (size_t) r * c.in, 0, sizeof(float) * c.in);
		quantize_case(&c);
		if (all_zero_x)
			assert_true(c.xp.scale == 0.0f && c.xp.zero == 0);
		for (int p = 0; p < np; p++)
		{
			nn_qweights qw;
			float	   *y = nt_xmalloc(sizeof(float) * c.n * c.ldy);

			pack_case(&qw, &c, paths[p]);
			nn_qgemm(y, c.xq, &qw, c.bias, c.xp, c.n, c.ldx, c.ldy);
			for (int32_t r = 0; r < c.n; r++)
				for (int32_t o = 0; o < c.out; o++)
				{
					assert_true(isfinite(y[r * c.ldy + o]));
					if (o % 4 == 1)
						assert_true(c.sw[o] == 0.0f);
					if (o % 4 == 1 || r % 3 == 1 || all_zero_x)
						assert_true(y[r * c.ldy + o] == c.bias[o]);
				}
			check_floats(&c, &qw, nn_qgemm_path_name(paths[p]));
			nn_qgemm_free(&qw);
			free(y);
		}
		free_case(&c);
	}
}

/* ---------- weight quantization ---------- */

/* |w - scale q| <= scale / 2, |q| <= 127, and 127 at the largest |w|. */
static void
check_round_trip(const float *w, int32_t out, int32_t in)
{
	int8_t	   *q = nt_xmalloc((size_t) out * in),
			   *qt = nt_xmalloc((size_t) out * in);
	float	   *s = nt_xmalloc(sizeof(float) * out),
			   *st = nt_xmalloc(sizeof(float) * out),
			   *wt = nt_xmalloc(sizeof(float) * out * in);
	nn_error	err;

	assert_ok(nn_qgemm_quantize_weights(q, s, w, in, 1, out, in, &err), &err);
	for (int32_t o = 0; o < out; o++)
	{
		int			qmax = 0;

		assert_true(s[o] >= 0.0f && isfinite(s[o]));
		for (int32_t k = 0; k < in; k++)
		{
			double		d = fabs((double) w[o * in + k] -
								 (double) s[o] * q[o * in + k]);

			if (d > (double) s[o] / 2)
				fail_msg("channel %d input %d: |%.9g - %.9g * %d| = %.3g > "
						 "scale / 2", o, k, w[o * in + k], s[o], q[o * in + k], d);
			assert_true(q[o * in + k] >= -127 && q[o * in + k] <= 127);
			qmax = abs(q[o * in + k]) > qmax ? abs(q[o * in + k]) : qmax;
		}
		assert_true(qmax == 127 || s[o] == 0.0f || s[o] < FLT_MIN);
	}
	/* a Keras kernel (in, out) through the strides gives the same */
	for (int32_t o = 0; o < out; o++)
		for (int32_t k = 0; k < in; k++)
			wt[k * out + o] = w[o * in + k];
	assert_ok(nn_qgemm_quantize_weights(qt, st, wt, 1, out, out, in, &err), &err);
	assert_memory_equal(q, qt, (size_t) out * in);
	assert_memory_equal(s, st, sizeof(float) * out);
	free(q);
	free(qt);
	free(s);
	free(st);
	free(wt);
}

/*
 * Channels of magnitudes 1e-40 (subnormal) to 1e30, halves of the step
 * (ties), a lone value, and zeros; non-finite weights are refused.
 */
static void
test_weight_round_trip(void **state)
{
	enum
	{
		OUT = 12, IN = 301
	};
	static const float mags[OUT] = {1e-40f, 1e-38f, 1e-20f, 1e-3f, 0.1f, 1.0f,
	3.0f, 1e3f, 1e20f, 1e30f, 0.0f, 1.0f};
	float	   *w = nt_xmalloc(sizeof(float) * OUT * IN);
	int8_t		q[IN];
	float		s;
	nn_rng		rng;
	nn_error	err;

	(void) state;
	nn_rng_seed(&rng, 5);
	nt_fill(w, OUT * IN, &rng, -1.0f, 1.0f);
	for (int o = 0; o < OUT; o++)
		for (int k = 0; k < IN; k++)
			w[o * IN + k] *= mags[o];
	for (int k = 0; k < IN; k++)
		w[11 * IN + k] = (k % 255 - 127) / 127.0f + (k % 2 ? 0.5f : -0.5f) / 127;
	w[5 * IN + 17] = 7.0f;		/* one value far above the rest */
	check_round_trip(w, OUT, IN);

	w[3] = NAN;
	assert_status(nn_qgemm_quantize_weights(q, &s, w, IN, 1, 1, IN, &err),
				  NN_ERR_DATA, &err);
	assert_string_equal(err.message, "weight 4 of output channel 1 is not finite");
	w[3] = -INFINITY;
	assert_status(nn_qgemm_quantize_weights(q, &s, w, IN, 1, 1, IN, &err),
				  NN_ERR_DATA, &err);
	free(w);
}

/* ---------- activation quantization ---------- */

/* q of one value as qgemm.h defines it, in scalar C. */
static uint8_t
ref_quant(float x, nn_qparams p)
{
	float		inv = p.scale > 0.0f ? 1.0f / p.scale : 0.0f;
	float		v = x * inv;

	if (!(v > (float) -p.zero))
		v = (float) -p.zero;
	if (!(v < 255.0f - p.zero))
		v = 255.0f - p.zero;
	return (uint8_t) (int32_t) (nearbyintf(v) + p.zero);
}

/* Over a million values, split between threads with a partial block. */
static void
check_big_quantize(nn_qparams p)
{
	size_t		n = (1 << 20) + 12345;
	float	   *x = nt_xmalloc(sizeof(float) * n);
	uint8_t    *q = nt_xmalloc(n);
	nn_rng		rng;

	nn_rng_seed(&rng, 10);
	nt_fill(x, n, &rng, -2.0f, 3.0f);
	nn_qgemm_quantize_acts(q, x, p, n);
	for (size_t i = 0; i < n; i++)
		if (q[i] != ref_quant(x[i], p))
			fail_msg("q[%zu] of %.9g is %d, expected %d", i, x[i], q[i],
					 ref_quant(x[i], p));
	free(x);
	free(q);
}

/* Ranges, their zero points, and q against the scalar definition. */
static void
test_activations(void **state)
{
	enum
	{
		N = 1003
	};
	float		x[N];
	uint8_t		q[N];
	nn_qparams	p;
	nn_rng		rng;
	nn_error	err;

	(void) state;
	assert_ok(nn_qgemm_range(&p, 0.0f, 6.0f, &err), &err);
	assert_int_equal(p.zero, 0);
	assert_true(p.scale == (float) (6.0 / 255));
	assert_ok(nn_qgemm_range(&p, 2.0f, 6.0f, &err), &err);	/* holds 0 */
	assert_int_equal(p.zero, 0);
	assert_ok(nn_qgemm_range(&p, -3.0f, -1.0f, &err), &err);
	assert_int_equal(p.zero, 255);
	assert_ok(nn_qgemm_range(&p, -1.0f, 3.0f, &err), &err);
	assert_int_equal(p.zero, 64);	/* 63.75 */
	assert_ok(nn_qgemm_range(&p, 0.0f, 0.0f, &err), &err);
	assert_true(p.scale == 0.0f && p.zero == 0);
	assert_status(nn_qgemm_range(&p, 1.0f, -1.0f, &err), NN_ERR_DATA, &err);
	assert_string_equal(err.message,
						"activation range [1, -1] is not a finite interval");
	assert_status(nn_qgemm_range(&p, NAN, 1.0f, &err), NN_ERR_DATA, &err);
	assert_status(nn_qgemm_range(&p, 0.0f, INFINITY, &err), NN_ERR_DATA, &err);

	nn_rng_seed(&rng, 9);
	nt_fill(x, N, &rng, -1.5f, 2.5f);
	x[0] = 0.0f;
	x[1] = NAN;
	x[2] = -1e30f;
	x[3] = 1e30f;
	assert_ok(nn_qgemm_range(&p, -1.0f, 2.0f, &err), &err);
	nn_qgemm_quantize_acts(q, x, p, N);
	assert_int_equal(q[0], p.zero);
	assert_int_equal(q[1], 0);
	assert_int_equal(q[2], 0);
	assert_int_equal(q[3], 255);
	for (int i = 0; i < N; i++)
	{
		double		lo = -(double) p.scale * p.zero,
					hi = (double) p.scale * (255 - p.zero);

		assert_int_equal(q[i], ref_quant(x[i], p));
		if (x[i] >= lo && x[i] <= hi)
			assert_true(fabs(x[i] - (double) p.scale * (q[i] - p.zero)) <=
						p.scale * 0.5 * (1 + 1e-6));
	}
	check_big_quantize(p);
	p.scale = 0.0f;
	nn_qgemm_quantize_acts(q, x, p, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(q[i], i == 1 ? 0 : p.zero);	/* NaN: 0 */
}

/* ---------- weight-only ---------- */

/* y (n, ldy) of the weight-only product on the case, work sized for 2. */
static float *
weight_only(const qcase *c, const nn_qweights *qw)
{
	float	   *y = nt_xmalloc(sizeof(float) * c->n * c->ldy);
	float	   *work = nt_xmalloc(sizeof(float) * nn_qgemm_weight_only_work(qw, 2));

	for (size_t i = 0; i < c->n * c->ldy; i++)
		y[i] = SENTINEL_F;
	nn_qgemm_weight_only(y, c->x, qw, c->bias, work, 2, c->n, c->in, c->ldy);
	free(work);
	return y;
}

/* Against x dequant(W)^T + b in double; padding untouched. */
static void
check_weight_only(const qcase *c, const nn_qweights *qw, const char *label)
{
	float	   *y = weight_only(c, qw);

	for (int32_t r = 0; r < c->n; r++)
		for (size_t o = 0; o < c->ldy; o++)
		{
			double		want = c->bias[o < (size_t) c->out ? o : 0],
						mag = fabs(want);
			float		got = y[r * c->ldy + o];

			if (o >= (size_t) c->out)
			{
				if (got != SENTINEL_F)
					fail_msg("%s: y[%d][%zu] past the channels was written",
							 label, r, o);
				continue;
			}
			for (int32_t k = 0; k < c->in; k++)
			{
				double		t = (double) c->x[(size_t) r * c->in + k] *
					((double) c->sw[o] * c->q[(size_t) o * c->in + k]);

				want += t;
				mag += fabs(t);
			}
			if (!(fabs(got - want) <= 2e-6 * mag + 1e-7))
				fail_msg("%s: y[%d][%zu] is %.9g, expected %.9g", label, r, o,
						 got, want);
		}
	free(y);
}

/*
 * Each path's in-register product (n <= 2) and the blocked sgemm (more
 * rows, blocks of 128 channels and chunks of 128 rows crossed).
 */
static void
test_weight_only(void **state)
{
	static const int32_t shapes[][3] = {
		{1, 1, 1}, {1, 7, 17}, {2, 33, 65}, {1, 784, 300}, {2, 65, 16},
		{3, 1, 1}, {3, 7, 17}, {17, 33, 300}, {600, 65, 129}, {64, 784, 10},
		{1025, 9, 32},
	};
	nn_qpath	paths[NN_QPATH_COUNT];
	int			np = paths_here(paths);
	char		label[96];

	(void) state;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
	{
		qcase		c;

		make_case(&c, shapes[i][0], shapes[i][1], shapes[i][2], 50 + i);
		for (int p = 0; p < np; p++)
		{
			nn_qweights qw;

			snprintf(label, sizeof(label), "weight-only %s n=%d in=%d out=%d",
					 nn_qgemm_path_name(paths[p]), c.n, c.in, c.out);
			pack_case(&qw, &c, paths[p]);
			check_weight_only(&c, &qw, label);
			nn_qgemm_free(&qw);
		}
		free_case(&c);
	}
}

/* ---------- threads ---------- */

/*
 * The same bits on 1 and 2 threads: qgemm split by row tiles (300, 700
 * rows) and by panels (5 rows), the weight-only product by panels (2 rows)
 * and by tasks (the rest); one row stays on one thread.
 */
static void
test_threads(void **state)
{
	static const int32_t shapes[][3] = {
		{300, 784, 130}, {1, 784, 512}, {2, 2048, 1024}, {5, 2048, 1024},
		{700, 64, 300},
	};
	nn_qpath	paths[NN_QPATH_COUNT];
	int			np = paths_here(paths);

	(void) state;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
	{
		qcase		c;

		make_case(&c, shapes[i][0], shapes[i][1], shapes[i][2], 90 + i);
		for (int p = 0; p < np; p++)
		{
			nn_qweights qw;
			float	   *y[2],
					   *yw[2];
			size_t		bytes = sizeof(float) * c.n * c.ldy;

			pack_case(&qw, &c, paths[p]);
			for (int t = 0; t < 2; t++)
			{
				nn_set_threads(t + 1);
				y[t] = nt_xmalloc(bytes);
				memset(y[t], 0, bytes);
				nn_qgemm(y[t], c.xq, &qw, c.bias, c.xp, c.n, c.ldx, c.ldy);
				yw[t] = weight_only(&c, &qw);
			}
			assert_memory_equal(y[0], y[1], bytes);
			assert_memory_equal(yw[0], yw[1], bytes);
			for (int t = 0; t < 2; t++)
			{
				free(y[t]);
				free(yw[t]);
			}
			nn_qgemm_free(&qw);
		}
		free_case(&c);
	}
	nt_setup_threads();
}

/* ---------- packing ---------- */

/* Sizes out of range, a path not run here, memory; frees everything. */
static void
test_pack_failures(void **state)
{
	int8_t		q[8] = {1, -2, 3, -4, 5, -6, 7, -8};
	float		s[2] = {0.5f, 0.25f};
	nn_qweights qw;
	nt_counter	cnt;
	nn_alloc	a = nt_counter_alloc(&cnt, 0);
	nn_error	err;

	(void) state;
	assert_status(nn_qgemm_pack(&qw, q, s, NN_QPATH_C, 2, 0, &a, &err),
				  NN_ERR_LIMIT, &err);
	assert_status(nn_qgemm_pack(&qw, q, s, NN_QPATH_C, 0, 4, &a, &err),
				  NN_ERR_LIMIT, &err);
	assert_status(nn_qgemm_pack(&qw, q, s, NN_QPATH_C, 1,
								NN_QGEMM_MAX_IN + 1, &a, &err),
				  NN_ERR_LIMIT, &err);
	assert_string_equal(err.message,
						"cannot quantize a layer of 65537 inputs and 1 outputs");
	assert_status(nn_qgemm_pack(&qw, q, s, NN_QPATH_COUNT, 2, 4, &a, &err),
				  NN_ERR_INTERNAL, &err);
	assert_status(nn_qgemm_pack(&qw, q, s, NN_QPATH_C, 2, 4, &a, &err),
				  NN_ERR_MEMORY, &err);
	assert_null(qw.panel);
	nn_qgemm_free(&qw);			/* a failed pack frees nothing twice */
	a = nt_counter_alloc(&cnt, -1);
	assert_ok(nn_qgemm_pack(&qw, q, s, NN_QPATH_AUTO, 2, 4, &a, &err), &err);
	assert_int_equal(qw.path, nn_qgemm_path_best());
	assert_int_equal(cnt.allocs, 1);
	assert_int_equal(qw.rowsum[0], -2);
	assert_int_equal(qw.rowsum[1], -2);
	assert_int_equal(qw.rowsum[2], 0);
	assert_true(qw.scale[1] == 0.25f && qw.scale[2] == 0.0f);
	nn_qgemm_free(&qw);
	nn_qgemm_free(&qw);
	assert_int_equal(cnt.frees, 1);
	assert_int_equal(cnt.live_bytes, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_weight_round_trip),
		cmocka_unit_test(test_activations),
		cmocka_unit_test(test_pack_failures),
		cmocka_unit_test(test_shapes_small),
		cmocka_unit_test(test_shapes_784),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_zero_channels),
		cmocka_unit_test(test_weight_only),
		cmocka_unit_test(test_threads),
	};

	return NT_RUN(tests);
}
