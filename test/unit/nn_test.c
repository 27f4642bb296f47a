/*
 * nn_test.c: the helpers declared in nn_test.h.
 *
 * Only the public interface (nn.h) is used, so the helpers test the core as
 * its callers see it.  Gradient checks perturb in float (the core's type)
 * but form every difference quotient in double from the step actually
 * taken, (float) (v + h) - v, not the nominal h.
 */
#include <float.h>
#include <math.h>

#include "nn_test.h"

bool		nt_quiet = false;

/* ---------- comparisons ---------- */

/* Per-element tolerance check in double, reporting the first and worst mismatch. */
bool
nt_close_d(const char *label, const double *a, const double *e, size_t n,
		   double atol, double rtol)
{
	size_t		first = (size_t) -1,
				worst = 0,
				bad = 0;
	double		worst_diff = -1.0;

	for (size_t i = 0; i < n; i++)
	{
		double		d = fabs(a[i] - e[i]);
		bool		ok = !isnan(a[i]) && !isnan(e[i]) &&
			(d <= atol + rtol * fabs(e[i]) || a[i] == e[i]);

		if (isnan(d))
			d = HUGE_VAL;
		if (d > worst_diff)
		{
			worst_diff = d;
			worst = i;
		}
		if (!ok)
		{
			if (first == (size_t) -1)
				first = i;
			bad++;
		}
	}
	if (bad == 0)
		return true;
	if (!nt_quiet)
		print_error("%s: %zu of %zu values out of tolerance (atol %g, rtol %g); "
					"first at [%zu]: actual %.9g, expected %.9g; "
					"worst difference %.3g at [%zu]: actual %.9g, expected %.9g\n",
					label, bad, n, atol, rtol, first, a[first], e[first],
					worst_diff, worst, a[worst], e[worst]);
	return false;
}

/* nt_close_d on float tensors. */
bool
nt_close_f(const char *label, const float *a, const float *e, size_t n,
		   double atol, double rtol)
{
	double	   *da = nt_xmalloc(sizeof(double) * (n ? n : 1));
	double	   *de = nt_xmalloc(sizeof(double) * (n ? n : 1));
	bool		ok;

	for (size_t i = 0; i < n; i++)
	{
		da[i] = a[i];
		de[i] = e[i];
	}
	ok = nt_close_d(label, da, de, n, atol, rtol);
	free(da);
	free(de);
	return ok;
}

/* nt_close_d of a float tensor against a double reference. */
bool
nt_close_fd(const char *label, const float *a, const double *e, size_t n,
			double atol, double rtol)
{
	double	   *da = nt_xmalloc(sizeof(double) * (n ? n : 1));
	bool		ok;

	for (size_t i = 0; i < n; i++)
		da[i] = a[i];
	ok = nt_close_d(label, da, e, n, atol, rtol);
	free(da);
	return ok;
}

/* malloc that aborts the test program when memory runs out. */
void *
nt_xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "nt_xmalloc: out of memory\n");
		abort();
	}
	return p;
}

/* ---------- spec builders ---------- */

/* A dense layer of units with an activation (Keras defaults otherwise). */
nn_layer_spec
nt_dense(int32_t units, nn_activation act)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_DENSE);
	s.units = units;
	s.activation = act;
	return s;
}

/* A dense layer without bias. */
nn_layer_spec
nt_dense_nobias(int32_t units, nn_activation act)
{
	nn_layer_spec s = nt_dense(units, act);

	s.use_bias = false;
	return s;
}

/* A conv2d layer: filters, kernel (kh, kw), strides (sh, sw), padding. */
nn_layer_spec
nt_conv(int32_t filters, int32_t kh, int32_t kw, int32_t sh, int32_t sw,
		bool same, nn_activation act)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_CONV2D);
	s.filters = filters;
	s.kernel[0] = kh;
	s.kernel[1] = kw;
	s.strides[0] = sh;
	s.strides[1] = sw;
	s.same_padding = same;
	s.activation = act;
	return s;
}

/* A max or average pooling layer; strides 0, 0 default to the pool size. */
nn_layer_spec
nt_pool(nn_layer_kind kind, int32_t kh, int32_t kw, int32_t sh, int32_t sw,
		bool same)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, kind);
	s.kernel[0] = kh;
	s.kernel[1] = kw;
	s.strides[0] = sh;
	s.strides[1] = sw;
	s.same_padding = same;
	return s;
}

/* A layer with no options (flatten, normalize). */
nn_layer_spec
nt_plain(nn_layer_kind kind)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, kind);
	return s;
}

/* A reshape to (a, b, c). */
nn_layer_spec
nt_reshape3(int32_t a, int32_t b, int32_t c)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RESHAPE);
	s.shape_rank = 3;
	s.shape[0] = a;
	s.shape[1] = b;
	s.shape[2] = c;
	return s;
}

/* A reshape to (a). */
nn_layer_spec
nt_reshape1(int32_t a)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RESHAPE);
	s.shape_rank = 1;
	s.shape[0] = a;
	return s;
}

/* A dropout layer of the given rate. */
nn_layer_spec
nt_dropout(float rate)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_DROPOUT);
	s.rate = rate;
	return s;
}

/* An activation layer. */
nn_layer_spec
nt_act(nn_activation act)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_ACTIVATION);
	s.activation = act;
	return s;
}

/* A recurrent layer with Keras's default activations. */
nn_layer_spec
nt_rnn(nn_layer_kind kind, int32_t units, bool return_sequences)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, kind);
	s.units = units;
	s.return_sequences = return_sequences;
	return s;
}

/* An embedding of input_dim ids into output_dim vectors. */
nn_layer_spec
nt_embedding(int32_t input_dim, int32_t output_dim)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_EMBEDDING);
	s.input_dim = input_dim;
	s.output_dim = output_dim;
	return s;
}

/* A reshape to (a, b). */
nn_layer_spec
nt_reshape2(int32_t a, int32_t b)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RESHAPE);
	s.shape_rank = 2;
	s.shape[0] = a;
	s.shape[1] = b;
	return s;
}

/* ---------- augmentation layers ---------- */

static void
set_range(float *r, float lo, float hi)
{
	r[0] = lo;
	r[1] = hi;
}

/* random_flip in a mode. */
nn_layer_spec
nt_random_flip(nn_flip_mode mode)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RANDOM_FLIP);
	s.mode = mode;
	return s;
}

/* random_translation by [hlo, hhi] heights and [wlo, whi] widths. */
nn_layer_spec
nt_random_translation(float hlo, float hhi, float wlo, float whi,
					  nn_fill_mode fill, float fill_value)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RANDOM_TRANSLATION);
	set_range(s.height_factor, hlo, hhi);
	set_range(s.width_factor, wlo, whi);
	s.fill_mode = fill;
	s.fill_value = fill_value;
	return s;
}

/* random_rotation by [lo, hi] turns. */
nn_layer_spec
nt_random_rotation(float lo, float hi, nn_fill_mode fill, float fill_value)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RANDOM_ROTATION);
	set_range(s.factor, lo, hi);
	s.fill_mode = fill;
	s.fill_value = fill_value;
	return s;
}

/* random_zoom by 1 + [hlo, hhi] (and 1 + [wlo, whi], or NAN: the same). */
nn_layer_spec
nt_random_zoom(float hlo, float hhi, float wlo, float whi, nn_fill_mode fill,
			   float fill_value)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RANDOM_ZOOM);
	set_range(s.height_factor, hlo, hhi);
	set_range(s.width_factor, wlo, whi);
	s.fill_mode = fill;
	s.fill_value = fill_value;
	return s;
}

/* random_crop to (height, width). */
nn_layer_spec
nt_random_crop(int32_t height, int32_t width)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RANDOM_CROP);
	s.height = height;
	s.width = width;
	return s;
}

/* random_contrast with multipliers 1 + [lo, hi]. */
nn_layer_spec
nt_random_contrast(float lo, float hi)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RANDOM_CONTRAST);
	set_range(s.factor, lo, hi);
	return s;
}

/* random_brightness by [lo, hi] of the value range [vlo, vhi]. */
nn_layer_spec
nt_random_brightness(float lo, float hi, float vlo, float vhi)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RANDOM_BRIGHTNESS);
	set_range(s.factor, lo, hi);
	if (!isnan(vlo) || !isnan(vhi))
		set_range(s.value_range, vlo, vhi);
	return s;
}

/* gaussian_noise of a standard deviation. */
nn_layer_spec
nt_gaussian_noise(float stddev)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_GAUSSIAN_NOISE);
	s.stddev = stddev;
	return s;
}

/* A rescale layer: y = x scale + offset. */
nn_layer_spec
nt_rescale(float scale, float offset)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, NN_LAYER_RESCALE);
	s.scale = scale;
	s.offset = offset;
	return s;
}

/* A model spec over a caller-owned layer array. */
nn_model_spec
nt_spec(int32_t rank, int32_t d0, int32_t d1, int32_t d2,
		nn_layer_spec *layers, int32_t n)
{
	nn_model_spec s;

	memset(&s, 0, sizeof(s));
	s.input_rank = rank;
	s.input_shape[0] = d0;
	s.input_shape[1] = rank > 1 ? d1 : 0;
	s.input_shape[2] = rank > 2 ? d2 : 0;
	s.layers = layers;
	s.n_layers = n;
	return s;
}

/* Create a model with malloc and no byte limit, failing the test on error. */
nn_model *
nt_create(const nn_model_spec *spec, uint64_t seed)
{
	nn_model   *m = NULL;
	nn_error	err;

	assert_ok(nn_model_create(&m, spec, seed, 0, &nn_malloc_alloc, &err), &err);
	assert_non_null(m);
	return m;
}

/* Length of the trainable vector: the sum of kernel and bias lengths. */
int64_t
nt_flat_params(const nn_model *m)
{
	int64_t		n = 0;

	for (int i = 0; i < nn_model_get_spec(m)->n_layers; i++)
	{
		int64_t		ko,
					kl,
					bo,
					bl,
					ro,
					rl;

		nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
		nn_model_layer_recurrent(m, i, &ro, &rl);
		n += kl + bl + rl;
	}
	return n;
}

/* ---------- data ---------- */

/* Uniform values in [lo, hi). */
void
nt_fill(float *x, size_t n, nn_rng *rng, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * nn_rng_uniform(rng);
}

/* Uniform values in [lo, hi) with |v| >= gap. */
void
nt_fill_away0(float *x, size_t n, nn_rng *rng, float lo, float hi, float gap)
{
	for (size_t i = 0; i < n; i++)
	{
		float		v;

		do
			v = lo + (hi - lo) * nn_rng_uniform(rng);
		while (fabsf(v) < gap);
		x[i] = v;
	}
}

/* A shuffled arithmetic sequence: distinct values, no ties. */
void
nt_fill_distinct(float *x, size_t n, nn_rng *rng, float base, float step)
{
	uint32_t   *idx = nt_xmalloc(sizeof(uint32_t) * (n ? n : 1));

	for (size_t i = 0; i < n; i++)
		idx[i] = (uint32_t) i;
	nn_rng_shuffle(rng, idx, n);
	for (size_t i = 0; i < n; i++)
		x[i] = base + step * (float) idx[i];
	free(idx);
}

/* One-hot rows (n, k) for class indices. */
void
nt_one_hot(float *t, const int *cls, int32_t n, int32_t k)
{
	memset(t, 0, sizeof(float) * (size_t) n * k);
	for (int32_t r = 0; r < n; r++)
		t[(size_t) r * k + cls[r]] = 1.0f;
}

/* ---------- counting allocator ---------- */

#define NT_HDR 16

/* Counting allocation: a size header, statistics, the planned failure. */
static void *
counter_alloc(void *ctx, size_t size)
{
	nt_counter *c = ctx;
	uint8_t    *p;

	if (c->attempts++ == c->fail_at)
	{
		c->failed++;
		return NULL;
	}
	if (size > SIZE_MAX - NT_HDR)
		return NULL;
	p = malloc(size + NT_HDR);
	if (p == NULL)
		return NULL;
	memcpy(p, &size, sizeof(size));
	c->allocs++;
	c->live_bytes += size;
	if (c->live_bytes > c->peak_bytes)
		c->peak_bytes = c->live_bytes;
	if (size > c->max_single)
		c->max_single = size;
	return p + NT_HDR;
}

/* Counting free. */
static void
counter_free(void *ctx, void *ptr)
{
	nt_counter *c = ctx;
	uint8_t    *p = (uint8_t *) ptr - NT_HDR;
	size_t		size;

	memcpy(&size, p, sizeof(size));
	c->frees++;
	c->live_bytes -= size;
	free(p);
}

/* Reset the counter and return allocation hooks bound to it. */
nn_alloc
nt_counter_alloc(nt_counter *c, long fail_at)
{
	nn_alloc	a;

	memset(c, 0, sizeof(*c));
	c->fail_at = fail_at;
	a.alloc = counter_alloc;
	a.free = counter_free;
	a.ctx = c;
	return a;
}

/* ---------- models under test ---------- */

/* SGD training with the given loss, prepared for batch rows. */
void
nt_train_setup(nn_model *m, nn_loss_kind loss, const float *cw, int32_t ncw,
			   int32_t batch)
{
	nn_optimizer_spec o;
	nn_error	err;

	nn_optimizer_spec_init(&o, NN_OPT_SGD, 0.01f);
	assert_ok(nn_model_set_training(m, &o, loss, cw, ncw, &err), &err);
	assert_ok(nn_model_prepare(m, batch, true, 0, &err), &err);
}

/* Mean loss (penalties included) of compute_gradients, the rng re-seeded. */
double
nt_train_loss(nn_model *m, const float *x, const float *y, int32_t n,
			  uint64_t rng_seed)
{
	nn_rng		rng;
	nn_error	err;
	double		loss = 0.0;
	int64_t		correct = 0;

	nn_rng_seed(&rng, rng_seed);
	assert_ok(nn_model_compute_gradients(m, NULL, x, y, n, &rng, &loss,
										 &correct, &err), &err);
	return loss / n;
}

/* Training-mode output of a stack, read from a probe dense layer's gradient. */
float *
nt_train_output(const nn_layer_spec *layers, int32_t n_layers, int32_t rank,
				int32_t d0, int32_t d1, int32_t d2, const float *x, int32_t n,
				uint64_t rng_seed, size_t *out_size)
{
	nn_layer_spec *ls = nt_xmalloc(sizeof(nn_layer_spec) * (n_layers + 2));
	nn_model_spec spec;
	nn_model   *m;
	nn_layer_info info;
	int64_t		ko,
				kl,
				bo,
				bl;
	size_t		k;
	float	   *t,
			   *out;
	const float *g;
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;

	assert_true(n >= 1 && n <= 64 && (n & (n - 1)) == 0);
	memcpy(ls, layers, sizeof(nn_layer_spec) * n_layers);
	ls[n_layers] = nt_plain(NN_LAYER_FLATTEN);
	ls[n_layers + 1] = nt_dense_nobias(n, NN_ACT_LINEAR);
	spec = nt_spec(rank, d0, d1, d2, ls, n_layers + 2);
	m = nt_create(&spec, 1);
	nn_model_layer_info(m, n_layers, &info);
	k = (size_t) info.shape[0];
	nn_model_layer_params(m, n_layers + 1, &ko, &kl, &bo, &bl);
	assert_int_equal(kl, (int64_t) k * n);
	memset(nn_model_params(m) + ko, 0, sizeof(float) * kl);
	nt_train_setup(m, NN_LOSS_MSE, NULL, 0, n);
	t = nt_xmalloc(sizeof(float) * n * n);
	for (int32_t r = 0; r < n; r++)
		for (int32_t j = 0; j < n; j++)
			t[r * n + j] = r == j ? -(float) n * (float) n / 2.0f : 0.0f;
	nn_rng_seed(&rng, rng_seed);
	assert_ok(nn_model_compute_gradients(m, NULL, x, t, n, &rng, &loss,
										 &correct, &err), &err);
	g = nn_model_grads(m) + ko;	/* (k, n): g[i n + r] = out[r][i] */
	out = nt_xmalloc(sizeof(float) * k * n);
	for (int32_t r = 0; r < n; r++)
		for (size_t i = 0; i < k; i++)
			out[(size_t) r * k + i] = g[i * n + r];
	*out_size = k;
	nn_model_free(m);
	free(ls);
	free(t);
	return out;
}

/* ---------- gradient checks ---------- */

/* Default gradient-check settings. */
nt_fd_opts
nt_fd_default(void)
{
	nt_fd_opts	o;

	o.eps = 1e-3;
	o.atol = 1e-3;
	o.rtol = 1e-2;
	o.skip_input = false;
	o.skip_params = false;
	o.rng_seed = 12345;
	return o;
}

/* Central difference of the loss in one float value. */
static double
fd_one(nn_model *m, float *v, const float *x, const float *y, int32_t n,
	   const nt_fd_opts *o)
{
	float		orig = *v;
	double		h = o->eps * fmax(1.0, fabs((double) orig));
	float		vp = (float) (orig + h),
				vm = (float) (orig - h);
	double		lp,
				lm;

	*v = vp;
	lp = nt_train_loss(m, x, y, n, o->rng_seed);
	*v = vm;
	lm = nt_train_loss(m, x, y, n, o->rng_seed);
	*v = orig;
	return (lp - lm) / ((double) vp - (double) vm);
}

/* Relative error of two whole vectors in the 2-norm. */
static double
norm_rel_err(const double *a, const double *b, size_t n)
{
	double		num = 0.0,
				na = 0.0,
				nb = 0.0;

	for (size_t i = 0; i < n; i++)
	{
		num += (a[i] - b[i]) * (a[i] - b[i]);
		na += a[i] * a[i];
		nb += b[i] * b[i];
	}
	if (na == 0.0 && nb == 0.0)
		return 0.0;
	return sqrt(num) / fmax(sqrt(na), sqrt(nb));
}

/* Analytic input and parameter gradients against central differences. */
size_t
nt_gradcheck(const char *label, nn_model *m, const float *x, const float *y,
			 int32_t n, const nt_fd_opts *o)
{
	size_t		in = nn_model_input_size(m) * (size_t) n;
	int64_t		np = nt_flat_params(m);
	float	   *dx = nt_xmalloc(sizeof(float) * in);
	float	   *xc = nt_xmalloc(sizeof(float) * in);
	double	   *ga = nt_xmalloc(sizeof(double) * (np > 0 ? np : 1));
	double	   *gf = nt_xmalloc(sizeof(double) * (np > 0 ? np : 1));
	double	   *xa = nt_xmalloc(sizeof(double) * in);
	double	   *xf = nt_xmalloc(sizeof(double) * in);
	float	   *p = nn_model_params(m);
	nn_rng		rng;
	nn_error	err;
	double		loss = 0.0;
	int64_t		correct = 0;
	size_t		checked = 0;
	char		buf[200];

	assert_ok(nn_model_prepare(m, n, true, 0, &err), &err);
	memcpy(xc, x, sizeof(float) * in);
	nn_rng_seed(&rng, o->rng_seed);
	assert_ok(nn_model_compute_gradients(m, dx, x, y, n, &rng, &loss,
										 &correct, &err), &err);
	for (int64_t i = 0; i < np; i++)
		ga[i] = nn_model_grads(m)[i];
	for (size_t i = 0; i < in; i++)
		xa[i] = dx[i];

	if (!o->skip_params && np > 0)
	{
		for (int64_t i = 0; i < np; i++)
			gf[i] = fd_one(m, &p[i], x, y, n, o);
		snprintf(buf, sizeof(buf), "%s: parameter gradients", label);
		if (!nt_close_d(buf, ga, gf, (size_t) np, o->atol, o->rtol))
			fail_msg("%s: analytic and central-difference gradients differ", buf);
		if (norm_rel_err(ga, gf, (size_t) np) > 2 * o->rtol)
			fail_msg("%s: relative error of the whole gradient %.3g > %.3g",
					 buf, norm_rel_err(ga, gf, (size_t) np), 2 * o->rtol);
		checked += (size_t) np;
	}
	if (!o->skip_input)
	{
		for (size_t i = 0; i < in; i++)
			xf[i] = fd_one(m, &xc[i], xc, y, n, o);
		snprintf(buf, sizeof(buf), "%s: input gradients", label);
		if (!nt_close_d(buf, xa, xf, in, o->atol, o->rtol))
			fail_msg("%s: analytic and central-difference gradients differ", buf);
		if (norm_rel_err(xa, xf, in) > 2 * o->rtol)
			fail_msg("%s: relative error of the whole gradient %.3g > %.3g",
					 buf, norm_rel_err(xa, xf, in), 2 * o->rtol);
		checked += in;
	}
	free(dx);
	free(xc);
	free(ga);
	free(gf);
	free(xa);
	free(xf);
	return checked;
}

/* ---------- kink margins ---------- */

/* Output size and leading padding of one axis, as TensorFlow. */
void
nt_axis(int32_t in, int32_t k, int32_t s, bool same, int32_t *out,
		int32_t *pad)
{
	if (same)
	{
		int32_t		o = (in + s - 1) / s;
		int32_t		total = (o - 1) * s + k - in;

		*out = o;
		*pad = total > 0 ? total / 2 : 0;
	}
	else
	{
		*out = (in - k) / s + 1;
		*pad = 0;
	}
}

/* Output (n, out) of the first `upto` layers of m, activation of the last forced linear. */
float *
nt_prefix_output(nn_model *m, const float *x, int32_t n, int upto, bool linear_last,
			  nn_layer_info *info)
{
	const nn_model_spec *spec = nn_model_get_spec(m);
	nn_layer_spec *ls = nt_xmalloc(sizeof(nn_layer_spec) * upto);
	nn_model_spec ps = *spec;
	nn_model   *pm;
	nn_error	err;
	float	   *out;
	int64_t		np;

	memcpy(ls, spec->layers, sizeof(nn_layer_spec) * upto);
	if (linear_last)
		ls[upto - 1].activation = NN_ACT_LINEAR;
	ps.layers = ls;
	ps.n_layers = upto;
	pm = nt_create(&ps, 1);
	np = nt_flat_params(pm);
	memcpy(nn_model_params(pm), nn_model_params(m), sizeof(float) * np);
	assert_ok(nn_model_prepare(pm, n, false, 0, &err), &err);
	out = nt_xmalloc(sizeof(float) * nn_model_output_size(pm) * n);
	assert_ok(nn_model_predict(pm, out, x, n, &err), &err);
	nn_model_layer_info(pm, upto - 1, info);
	nn_model_free(pm);
	free(ls);
	return out;
}

/* Smallest distance of the forward pass to a relu-like or max-pool kink. */
double
nt_kink_margin(nn_model *m, const float *x, int32_t n)
{
	const nn_model_spec *spec = nn_model_get_spec(m);
	double		margin = HUGE_VAL;

	for (int i = 0; i < spec->n_layers; i++)
	{
		const nn_layer_spec *s = &spec->layers[i];
		nn_layer_info info;

		if ((s->kind == NN_LAYER_DENSE || s->kind == NN_LAYER_CONV2D ||
			 s->kind == NN_LAYER_ACTIVATION) &&
			(s->activation == NN_ACT_RELU || s->activation == NN_ACT_LEAKY_RELU ||
			 s->activation == NN_ACT_ELU))
		{
			float	   *z = nt_prefix_output(m, x, n, i + 1, true, &info);
			size_t		len = 1;

			for (int d = 0; d < info.rank; d++)
				len *= (size_t) info.shape[d];
			for (size_t j = 0; j < len * n; j++)
				margin = fmin(margin, fabs((double) z[j]));
			free(z);
		}
		else if (s->kind == NN_LAYER_MAXPOOL2D)
		{
			const float *in;
			float	   *buf = NULL;
			int32_t		H,
						W,
						C,
						OH,
						OW,
						pt,
						pl;

			if (i == 0)
			{
				in = x;
				H = spec->input_shape[0];
				W = spec->input_shape[1];
				C = spec->input_shape[2];
			}
			else
			{
				buf = nt_prefix_output(m, x, n, i, false, &info);
				in = buf;
				H = info.shape[0];
				W = info.shape[1];
				C = info.shape[2];
			}
			nt_axis(H, s->kernel[0], s->strides[0], s->same_padding, &OH, &pt);
			nt_axis(W, s->kernel[1], s->strides[1], s->same_padding, &OW, &pl);
			for (int32_t b = 0; b < n; b++)
				for (int32_t oh = 0; oh < OH; oh++)
					for (int32_t ow = 0; ow < OW; ow++)
						for (int32_t c = 0; c < C; c++)
						{
							double		best = -HUGE_VAL,
										second = -HUGE_VAL;

							for (int32_t kh = 0; kh < s->kernel[0]; kh++)
								for (int32_t kw = 0; kw < s->kernel[1]; kw++)
								{
									int32_t		ih = oh * s->strides[0] - pt + kh;
									int32_t		iw = ow * s->strides[1] - pl + kw;
									double		v;

									if (ih < 0 || ih >= H || iw < 0 || iw >= W)
										continue;
									v = in[(((size_t) b * H + ih) * W + iw) * C + c];
									if (v > best)
									{
										second = best;
										best = v;
									}
									else if (v > second)
										second = v;
								}
							if (second > -HUGE_VAL)
								margin = fmin(margin, best - second);
						}
			free(buf);
		}
	}
	return margin;
}

/* ---------- naive references ---------- */

/* Direct nested-loop conv2d in double (reference). */
void
nt_naive_conv(double *y, const float *x, const float *k, const float *b,
			  int32_t B, int32_t H, int32_t W, int32_t C, int32_t F,
			  int32_t KH, int32_t KW, int32_t SH, int32_t SW, bool same,
			  int32_t *OHp, int32_t *OWp)
{
	int32_t		OH,
				OW,
				pt,
				pl;

	nt_axis(H, KH, SH, same, &OH, &pt);
	nt_axis(W, KW, SW, same, &OW, &pl);
	for (int32_t n = 0; n < B; n++)
		for (int32_t oh = 0; oh < OH; oh++)
			for (int32_t ow = 0; ow < OW; ow++)
				for (int32_t f = 0; f < F; f++)
				{
					double		acc = b ? b[f] : 0.0;

					for (int32_t kh = 0; kh < KH; kh++)
						for (int32_t kw = 0; kw < KW; kw++)
						{
							int32_t		ih = oh * SH - pt + kh;
							int32_t		iw = ow * SW - pl + kw;

							if (ih < 0 || ih >= H || iw < 0 || iw >= W)
								continue;
							for (int32_t c = 0; c < C; c++)
								acc += (double) x[(((size_t) n * H + ih) * W + iw) * C + c] *
									k[(((size_t) kh * KW + kw) * C + c) * F + f];
						}
					y[(((size_t) n * OH + oh) * OW + ow) * F + f] = acc;
				}
	if (OHp)
		*OHp = OH;
	if (OWp)
		*OWp = OW;
}

/* ---------- threads ---------- */

/* nn_set_threads from NNPG_TEST_THREADS (default 2). */
int
nt_setup_threads(void)
{
	const char *v = getenv("NNPG_TEST_THREADS");
	int			n = v ? atoi(v) : 2;

	if (n < 1)
		n = 1;
	nn_set_threads(n);
	print_message("nn_set_threads(%d)\n", n);
	return n;
}

/* ---------- model bytes ---------- */

uint8_t *
nt_serialize(const nn_model *m, bool with_opt, size_t *len)
{
	size_t		n = nn_model_serialized_size(m, with_opt);
	uint8_t    *buf = nt_xmalloc(n);
	nn_error	err;

	assert_ok(nn_model_serialize(m, buf, n, with_opt, test_crc32c, &err), &err);
	*len = n;
	return buf;
}

/* Rewrite the header length and trailing CRC-32C of edited model bytes. */
void
nt_fix_bytes(uint8_t *buf, size_t len)
{
	uint32_t	c;

	if (len < 28)
		return;
	for (int i = 0; i < 8; i++)
		buf[16 + i] = (uint8_t) ((uint64_t) len >> (8 * i));
	c = test_crc32c(0xFFFFFFFFu, buf, len - 4) ^ 0xFFFFFFFFu;
	for (int i = 0; i < 4; i++)
		buf[len - 4 + i] = (uint8_t) (c >> (8 * i));
}

/* Biases, batchnorm gammas and normalize/batchnorm statistics away from
 * their initial values. */
void
nt_perturb(nn_model *m, uint64_t seed)
{
	const nn_model_spec *spec = nn_model_get_spec(m);
	nn_rng		rng;

	nn_rng_seed(&rng, seed);
	for (int i = 0; i < spec->n_layers; i++)
	{
		int64_t		ko,
					kl,
					bo,
					bl;
		int32_t		C;
		float	   *st = nn_model_layer_state(m, i, &C);

		nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
		if (bl > 0)
			nt_fill(nn_model_params(m) + bo, (size_t) bl, &rng, -0.2f, 0.2f);
		if (spec->layers[i].kind == NN_LAYER_BATCHNORM)
		{
			nt_fill(nn_model_params(m) + ko, (size_t) kl, &rng, 0.5f, 1.5f);
			nt_fill(st, (size_t) C, &rng, -0.3f, 0.3f);
			nt_fill(st + C, (size_t) C, &rng, 0.5f, 2.0f);
		}
		else if (spec->layers[i].kind == NN_LAYER_NORMALIZE)
		{
			nt_fill(st, (size_t) C, &rng, -0.3f, 0.3f);
			nt_fill(st + C, (size_t) C, &rng, 0.5f, 2.0f);
		}
	}
}
