/*
 * bench_quantize.c: prediction time of int8 models (nn_model_quantize)
 * against their float model: the wide MLP (784 -> 512 relu -> 512 relu ->
 * 10 softmax) at batches of 256 and 1, and the seed CNN (784 -> conv32 ->
 * pool -> conv64 -> pool -> conv64 -> flatten -> dense64 -> dense10) at
 * batches of 64 and 1, for nnpg.threads = 1 and 2.  Glorot weights;
 * calibration on 256 rows uniform in [0, 1], as the inputs.
 *
 * Each figure is microseconds per row: the median of REPEATS rounds
 * [min-max], a round timing enough nn_model_predict calls for about
 * ROUND_S seconds; the rounds of the three versions alternate (float,
 * weight-only, calibrated, float, ...) so that a neighbour's load on the
 * other core falls on all of them alike.  The speedup is the float
 * median over the version's.  Also printed: each version's model bytes
 * against the float kernels' and biases' bytes (4 per weight).
 *
 * Usage: bench_quantize [repeats]   (make -C test/unit bench-quantize)
 * Keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as the machine sets them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn.h"

#define VERSIONS 3
#define ROUND_S 0.15

static int	REPEATS = 7;
static const char *const names[VERSIONS] = {"float", "weight-only", "calibrated"};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
die(const char *what, const nn_error *err)
{
	fprintf(stderr, "bench_quantize: %s: %s\n", what, err->message);
	exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static nn_layer_spec
layer(nn_layer_kind kind)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, kind);
	return s;
}

static nn_layer_spec
conv(int filters)
{
	nn_layer_spec s = layer(NN_LAYER_CONV2D);

	s.filters = filters;
	s.kernel[0] = s.kernel[1] = 3;
	s.activation = NN_ACT_RELU;
	return s;
}

static nn_layer_spec
dense(int units, nn_activation act)
{
	nn_layer_spec s = layer(NN_LAYER_DENSE);

	s.units = units;
	s.activation = act;
	return s;
}

static nn_model *
create(nn_layer_spec *l, int32_t n)
{
	nn_model_spec spec;
	nn_model   *m;
	nn_error	err;

	memset(&spec, 0, sizeof(spec));
	spec.n_layers = n;
	spec.layers = l;
	spec.input_rank = 1;
	spec.input_shape[0] = 784;
	if (nn_model_create(&m, &spec, 42, 0, &nn_malloc_alloc, &err) != NN_OK)
		die("create", &err);
	return m;
}

/* The seed CNN of the README. */
static nn_model *
seed_cnn(void)
{
	nn_layer_spec l[9];

	l[0] = layer(NN_LAYER_RESHAPE);
	l[0].shape_rank = 3;
	l[0].shape[0] = 28;
	l[0].shape[1] = 28;
	l[0].shape[2] = 1;
	l[1] = conv(32);
	l[2] = layer(NN_LAYER_MAXPOOL2D);
	l[3] = conv(64);
	l[4] = layer(NN_LAYER_MAXPOOL2D);
	l[5] = conv(64);
	l[6] = layer(NN_LAYER_FLATTEN);
	l[7] = dense(64, NN_ACT_RELU);
	l[8] = dense(10, NN_ACT_SOFTMAX);
	return create(l, 9);
}

static nn_model *
wide_mlp(void)
{
	nn_layer_spec l[3] = {dense(512, NN_ACT_RELU), dense(512, NN_ACT_RELU),
	dense(10, NN_ACT_SOFTMAX)};

	return create(l, 3);
}

/* Seconds per call of a batch of n rows, over iters calls. */
static double
time_predict(nn_model *m, float *y, const float *x, int32_t n, int iters)
{
	nn_error	err;
	double		t0;

	if (nn_model_predict(m, y, x, n, &err) != NN_OK)	/* warm */
		die("predict", &err);
	t0 = now();
	for (int i = 0; i < iters; i++)
		if (nn_model_predict(m, y, x, n, &err) != NN_OK)
			die("predict", &err);
	return (now() - t0) / iters;
}

/* One line per version: batch n on the given threads, alternating rounds. */
static void
bench(nn_model *m[VERSIONS], const float *x, int32_t n, int threads)
{
	double		us[VERSIONS][64];
	int			iters[VERSIONS];
	float	   *y = malloc(sizeof(float) * 10 * n);
	nn_error	err;

	nn_set_threads(threads);
	for (int v = 0; v < VERSIONS; v++)
	{
		if (nn_model_prepare(m[v], n, false, 0, &err) != NN_OK)
			die("prepare", &err);
		iters[v] = (int) (ROUND_S / time_predict(m[v], y, x, n, 2));
		iters[v] = iters[v] < 2 ? 2 : iters[v];
	}
	for (int r = 0; r < REPEATS; r++)
		for (int v = 0; v < VERSIONS; v++)
			us[v][r] = 1e6 * time_predict(m[v], y, x, n, iters[v]) / n;
	for (int v = 0; v < VERSIONS; v++)
		qsort(us[v], REPEATS, sizeof(double), cmp_double);
	for (int v = 0; v < VERSIONS; v++)
		printf("%5d  %7d  %-11s  %9.1f [%9.1f-%9.1f] us per row  %5.2fx\n", n,
			   threads, names[v], us[v][REPEATS / 2], us[v][0],
			   us[v][REPEATS - 1], us[0][REPEATS / 2] / us[v][REPEATS / 2]);
	free(y);
}

/* The float model, then its weight-only and calibrated versions. */
static void
versions(nn_model *m[VERSIONS], nn_model *(*make) (void), const float *calib)
{
	nn_error	err;

	for (int v = 0; v < VERSIONS; v++)
		m[v] = make();
	if (nn_model_quantize(m[1], NULL, 0, &err) != NN_OK ||
		nn_model_quantize(m[2], calib, 256, &err) != NN_OK)
		die("quantize", &err);
}

static void
run(const char *title, nn_model *(*make) (void), const float *x,
	int32_t batch)
{
	nn_model   *m[VERSIONS];
	double		fbytes;

	versions(m, make, x);
	fbytes = 4.0 * (double) nn_model_param_count(m[0]);
	printf("\n%s: model bytes %zu float, %zu weight-only (%.1f%% of the "
		   "float weights' %.0f), %zu calibrated (%.1f%%)\n", title,
		   nn_model_serialized_size(m[0], false),
		   nn_model_serialized_size(m[1], false),
		   100.0 * nn_model_serialized_size(m[1], false) / fbytes, fbytes,
		   nn_model_serialized_size(m[2], false),
		   100.0 * nn_model_serialized_size(m[2], false) / fbytes);
	printf("batch  threads  version       median [min-max]               speedup\n");
	for (int t = 1; t <= 2; t++)
	{
		bench(m, x, batch, t);
		bench(m, x, 1, t);
	}
	for (int v = 0; v < VERSIONS; v++)
		nn_model_free(m[v]);
}

int
main(int argc, char **argv)
{
	const char *ct = getenv("OPENBLAS_CORETYPE");
	const char *l2 = getenv("OPENBLAS_L2_SIZE");
	float	   *x = malloc(sizeof(float) * 256 * 784);
	nn_rng		rng;

	if (argc > 1)
		REPEATS = atoi(argv[1]);
	if (REPEATS < 1 || REPEATS > 64)
		REPEATS = 7;
	nn_rng_seed(&rng, 7);
	for (int i = 0; i < 256 * 784; i++)
		x[i] = nn_rng_uniform(&rng);
	printf("nn_model_predict, float vs int8: medians of %d alternating rounds "
		   "[min-max]; OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", REPEATS,
		   ct ? ct : "(unset)", l2 ? l2 : "(unset)");
	run("wide MLP 784-512-512-10", wide_mlp, x, 256);
	run("seed CNN", seed_cnn, x, 64);
	free(x);
	return 0;
}
