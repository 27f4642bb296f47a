/*
 * bench_core.c: training throughput of the math core and how close its
 * dense and conv2d layers come to OpenBLAS sgemm on the same shapes.
 *
 * For nnpg.threads = 1 and 2 (nn_set_threads) and batches of 64 and 128,
 * on random data, in one run:
 *   - training throughput (samples/s, nn_model_train_batch with Adam) of
 *     the seed CNN of API.md and of an MLP 784-512-512-10;
 *   - dense fwd+bwd: GFLOP/s of nn_model_compute_gradients on the MLP
 *     (its GEMM flops over the whole call: loss and activations included),
 *     against OpenBLAS sgemm at the same thread count on exactly the GEMMs
 *     the core issues (forward X W, dW = X^T dZ, dX = dZ W^T, no dX for
 *     the first layer), timed back to back;
 *   - conv2d fwd+bwd: the same for the three conv2d layers of the seed CNN,
 *     each as a one-layer model of its input shape (im2col GEMMs:
 *     col W, col^T dZ, dZ W^T; no dX for the first), against sgemm on
 *     those shapes.
 * Every figure is the median of REPEATS timed rounds, with the range; the
 * model and its sgemm reference alternate (A B A B) so that noise on the
 * shared machine hits both.  Goals: dense >= 70% of sgemm, conv >= 50%.
 *
 * Usage: bench_core [repeats]      (make -C test/unit bench)
 * Keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as the machine sets them.
 */
#include <cblas.h>

#define BENCH_NAME "bench_core"
#include "bench_util.h"

static int	REPEATS = 5;

typedef struct stat3
{
	double		med,
				lo,
				hi;
} stat3;

static stat3
stats(double *v, int n)
{
	stat3		s;

	qsort(v, n, sizeof(double), cmp_double);
	s.med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
	s.lo = v[0];
	s.hi = v[n - 1];
	return s;
}

/* ---------- GEMM shapes ---------- */

typedef struct gemm
{
	CBLAS_TRANSPOSE ta,
				tb;
	int			M,
				N,
				K;
	float	   *a,
			   *b,
			   *c;
} gemm;

typedef struct gemm_set
{
	int			n;
	gemm		g[16];
	double		flops;
} gemm_set;

static void
add_gemm(gemm_set *s, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N,
		 int K, nn_rng *rng)
{
	gemm	   *g = &s->g[s->n++];

	g->ta = ta;
	g->tb = tb;
	g->M = M;
	g->N = N;
	g->K = K;
	g->a = xmalloc(sizeof(float) * M * K);
	g->b = xmalloc(sizeof(float) * K * N);
	g->c = xmalloc(sizeof(float) * M * N);
	fill(g->a, (size_t) M * K, rng, -1, 1);
	fill(g->b, (size_t) K * N, rng, -1, 1);
	s->flops += 2.0 * M * N * K;
}

/* The GEMMs of a dense layer (in -> out) at batch B, as dense.c issues them. */
static void
dense_gemms(gemm_set *s, int B, int in, int out, bool dx, nn_rng *rng)
{
	add_gemm(s, CblasNoTrans, CblasNoTrans, B, out, in, rng);	/* X W */
	add_gemm(s, CblasTrans, CblasNoTrans, in, out, B, rng);	/* X^T dZ */
	if (dx)
		add_gemm(s, CblasNoTrans, CblasTrans, B, in, out, rng);	/* dZ W^T */
}

/* The im2col GEMMs of a conv2d layer: rows = B OH OW, K = KH KW C. */
static void
conv_gemms(gemm_set *s, int rows, int K, int F, bool dx, nn_rng *rng)
{
	add_gemm(s, CblasNoTrans, CblasNoTrans, rows, F, K, rng);	/* col W */
	add_gemm(s, CblasTrans, CblasNoTrans, K, F, rows, rng);	/* col^T dZ */
	if (dx)
		add_gemm(s, CblasNoTrans, CblasTrans, rows, K, F, rng);	/* dZ W^T */
}

static void
run_gemms(const gemm_set *s)
{
	for (int i = 0; i < s->n; i++)
	{
		const gemm *g = &s->g[i];
		int			lda = g->ta == CblasNoTrans ? g->K : g->M;
		int			ldb = g->tb == CblasNoTrans ? g->N : g->K;

		cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->a,
					lda, g->b, ldb, 0.0f, g->c, g->N);
	}
}

static void
free_gemms(gemm_set *s)
{
	for (int i = 0; i < s->n; i++)
	{
		free(s->g[i].a);
		free(s->g[i].b);
		free(s->g[i].c);
	}
	s->n = 0;
	s->flops = 0;
}

/* Seconds per round of the set at `threads` OpenBLAS threads. */
static double
time_gemms(const gemm_set *s, int threads, int iters)
{
	double		t0;

	openblas_set_num_threads(threads);
	run_gemms(s);				/* warm */
	t0 = now();
	for (int i = 0; i < iters; i++)
		run_gemms(s);
	return (now() - t0) / iters;
}

/* ---------- models ---------- */

typedef struct bench_model
{
	nn_model   *m;
	int32_t		B;
	float	   *x,
			   *y,
			   *dx;
	bool		sparse;
	bool		want_dx;
} bench_model;

static void
setup(bench_model *bm, nn_layer_spec *l, int n, int rank, int d0, int d1, int d2,
	  int32_t B, nn_loss_kind loss, bool want_dx)
{
	nn_model_spec spec;
	nn_optimizer_spec o;
	nn_error	err;
	nn_rng		rng;
	size_t		in,
				out;

	memset(&spec, 0, sizeof(spec));
	spec.n_layers = n;
	spec.layers = l;
	spec.input_rank = rank;
	spec.input_shape[0] = d0;
	spec.input_shape[1] = d1;
	spec.input_shape[2] = d2;
	if (nn_model_create(&bm->m, &spec, 42, 0, &nn_malloc_alloc, &err) != NN_OK)
		die("create", &err);
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.001f);
	if (nn_model_set_training(bm->m, &o, loss, NULL, 0, &err) != NN_OK ||
		nn_model_prepare(bm->m, B, true, 0, &err) != NN_OK)
		die("prepare", &err);
	in = nn_model_input_size(bm->m);
	out = nn_model_output_size(bm->m);
	bm->B = B;
	bm->sparse = loss == NN_LOSS_SPARSE_CATEGORICAL_CE;
	bm->want_dx = want_dx;
	bm->x = xmalloc(sizeof(float) * in * B);
	bm->y = xmalloc(sizeof(float) * out * B);
	bm->dx = want_dx ? xmalloc(sizeof(float) * in * B) : NULL;
	nn_rng_seed(&rng, 7);
	fill(bm->x, in * B, &rng, 0, 1);
	if (bm->sparse)
		for (int32_t r = 0; r < B; r++)
			bm->y[r] = (float) nn_rng_below(&rng, out);
	else
		fill(bm->y, out * B, &rng, -1, 1);
}

static void
teardown(bench_model *bm)
{
	nn_model_free(bm->m);
	free(bm->x);
	free(bm->y);
	free(bm->dx);
}

/* Seconds per call: train_batch (train) or compute_gradients. */
static double
time_model(bench_model *bm, int threads, bool train, int iters)
{
	nn_error	err;
	nn_rng		rng;
	double		t0 = 0,
				loss = 0;
	int64_t		correct = 0;

	nn_set_threads(threads);
	nn_rng_seed(&rng, 1);
	for (int i = -1; i < iters; i++)
	{
		nn_status	st;

		if (i == 0)
			t0 = now();
		st = train ?
			nn_model_train_batch(bm->m, bm->x, bm->y, bm->B, &rng, &loss,
								 &correct, &err) :
			nn_model_compute_gradients(bm->m, bm->dx, bm->x, bm->y, bm->B, &rng,
									   &loss, &correct, &err);
		if (st != NN_OK)
			die("train", &err);
	}
	return (now() - t0) / iters;
}

/* Iterations so that one timed round takes about `target` seconds. */
static int
calibrate(double per_call, double target)
{
	int			n = (int) (target / (per_call > 1e-6 ? per_call : 1e-6));

	return n < 2 ? 2 : n > 2000 ? 2000 : n;
}

static void
print_stat(const char *fmt, stat3 s)
{
	printf(fmt, s.med, s.lo, s.hi);
}

/* Ratio figures as percentages. */
static void
print_ratio(double *ratio)
{
	stat3		s = stats(ratio, REPEATS);

	printf("ratio %4.0f%% [%3.0f-%3.0f]\n", s.med * 100, s.lo * 100,
		   s.hi * 100);
}

/* ---------- the runs ---------- */

static void
bench_mlp(int threads, int32_t B)
{
	nn_layer_spec l[3] = {dense(512, NN_ACT_RELU), dense(512, NN_ACT_RELU),
	dense(10, NN_ACT_SOFTMAX)};
	bench_model bm;
	gemm_set	gs = {0};
	nn_rng		rng;
	double		train[64],
				fb[64],
				ref[64],
				ratio[64];
	int			it_train,
				it_fb,
				it_ref;

	setup(&bm, l, 3, 1, 784, 0, 0, B, NN_LOSS_SPARSE_CATEGORICAL_CE, false);
	nn_rng_seed(&rng, 3);
	dense_gemms(&gs, B, 784, 512, false, &rng);
	dense_gemms(&gs, B, 512, 512, true, &rng);
	dense_gemms(&gs, B, 512, 10, true, &rng);
	it_train = calibrate(time_model(&bm, threads, true, 3), 0.4);
	it_fb = calibrate(time_model(&bm, threads, false, 3), 0.4);
	it_ref = calibrate(time_gemms(&gs, threads, 3), 0.4);
	for (int r = 0; r < REPEATS; r++)
	{
		double		tr = time_model(&bm, threads, true, it_train);
		double		tf = time_model(&bm, threads, false, it_fb);
		double		tg = time_gemms(&gs, threads, it_ref);

		train[r] = B / tr;
		fb[r] = gs.flops / tf * 1e-9;
		ref[r] = gs.flops / tg * 1e-9;
		ratio[r] = fb[r] / ref[r];
	}
	printf("%7d %5d  MLP 784-512-512-10  ", threads, B);
	print_stat("%8.0f [%6.0f-%6.0f]  ", stats(train, REPEATS));
	print_stat("dense fwd+bwd %6.1f [%5.1f-%5.1f] GFLOP/s  ", stats(fb, REPEATS));
	print_stat("sgemm %6.1f [%5.1f-%5.1f]  ", stats(ref, REPEATS));
	print_ratio(ratio);
	free_gemms(&gs);
	teardown(&bm);
}

static void
bench_cnn(int threads, int32_t B)
{
	nn_layer_spec l[9];
	bench_model bm;
	double		train[64];
	int			it;

	seed_cnn_layers(l);
	setup(&bm, l, 9, 1, 784, 0, 0, B, NN_LOSS_SPARSE_CATEGORICAL_CE, false);
	it = calibrate(time_model(&bm, threads, true, 2), 0.5);
	for (int r = 0; r < REPEATS; r++)
		train[r] = B / time_model(&bm, threads, true, it);
	printf("%7d %5d  seed CNN (93,322)   ", threads, B);
	print_stat("%8.0f [%6.0f-%6.0f]\n", stats(train, REPEATS));
	teardown(&bm);
}

/* The three conv2d layers of the seed CNN, one model each. */
static void
bench_conv(int threads, int32_t B)
{
	static const int shapes[3][4] = {	/* H (= W), C, F, needs dx */
		{28, 1, 32, 0}, {13, 32, 64, 1}, {5, 64, 64, 1}
	};
	bench_model bm[3];
	gemm_set	gs[3] = {{0}};
	nn_rng		rng;
	double		flops = 0,
				fb[64],
				ref[64],
				ratio[64];
	int			it_fb[3],
				it_ref[3];

	nn_rng_seed(&rng, 5);
	for (int i = 0; i < 3; i++)
	{
		nn_layer_spec l[1] = {conv(shapes[i][2], NN_ACT_RELU)};
		int			H = shapes[i][0],
					O = H - 2;

		setup(&bm[i], l, 1, 3, H, H, shapes[i][1], B, NN_LOSS_MSE, shapes[i][3]);
		conv_gemms(&gs[i], B * O * O, 9 * shapes[i][1], shapes[i][2],
				   shapes[i][3], &rng);
		flops += gs[i].flops;
		it_fb[i] = calibrate(time_model(&bm[i], threads, false, 3), 0.15);
		it_ref[i] = calibrate(time_gemms(&gs[i], threads, 3), 0.15);
	}
	for (int r = 0; r < REPEATS; r++)
	{
		double		tf = 0,
					tg = 0;

		for (int i = 0; i < 3; i++)
		{
			tf += time_model(&bm[i], threads, false, it_fb[i]);
			tg += time_gemms(&gs[i], threads, it_ref[i]);
		}
		fb[r] = flops / tf * 1e-9;
		ref[r] = flops / tg * 1e-9;
		ratio[r] = fb[r] / ref[r];
	}
	printf("%7d %5d  seed CNN conv2d x3  %26s", threads, B, "");
	print_stat("conv fwd+bwd  %6.1f [%5.1f-%5.1f] GFLOP/s  ", stats(fb, REPEATS));
	print_stat("sgemm %6.1f [%5.1f-%5.1f]  ", stats(ref, REPEATS));
	print_ratio(ratio);
	for (int i = 0; i < 3; i++)
	{
		free_gemms(&gs[i]);
		teardown(&bm[i]);
	}
}

int
main(int argc, char **argv)
{
	const char *ct = getenv("OPENBLAS_CORETYPE");
	const char *l2 = getenv("OPENBLAS_L2_SIZE");
	static const int threads[2] = {1, 2};
	static const int32_t batches[2] = {64, 128};

	if (argc > 1)
		REPEATS = atoi(argv[1]);
	if (REPEATS < 1 || REPEATS > 64)
		REPEATS = 5;
	printf("nnpg core benchmark: medians of %d rounds [min-max]; "
		   "OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s; %s\n",
		   REPEATS, ct ? ct : "(unset)", l2 ? l2 : "(unset)", openblas_get_config());
	printf("threads batch  model               train samples/s\n");
	for (int t = 0; t < 2; t++)
		for (int b = 0; b < 2; b++)
		{
			bench_cnn(threads[t], batches[b]);
			bench_mlp(threads[t], batches[b]);
			bench_conv(threads[t], batches[b]);
		}
	printf("goals: dense fwd+bwd >= 70%% of sgemm, conv2d fwd+bwd >= 50%%\n");
	return 0;
}
