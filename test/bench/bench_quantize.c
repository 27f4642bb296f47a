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
#define BENCH_NAME "bench_quantize"
#include "bench_util.h"

#define VERSIONS 3
#define ROUND_S 0.15

static int	REPEATS = 7;
static const char *const names[VERSIONS] = {"float", "weight-only", "calibrated"};

static nn_model *
wide_mlp(void)
{
	nn_layer_spec l[3] = {dense(512, NN_ACT_RELU), dense(512, NN_ACT_RELU),
	dense(10, NN_ACT_SOFTMAX)};

	return create_784(l, 3);
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
