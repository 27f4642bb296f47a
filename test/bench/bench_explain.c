/*
 * bench_explain.c: time of nn_model_explain on the seed CNN (784 ->
 * conv32 -> pool -> conv64 -> pool -> conv64 -> flatten -> dense64 ->
 * dense10 softmax, Glorot weights), for nnpg.threads = 1 and 2.
 *
 * Each figure is milliseconds per explained row at the given steps: the
 * median of REPEATS rounds [min-max], a round timing enough calls for
 * about 0.3 s.  "warm" calls find the model's buffers prepared for the
 * steps, as every call after the first one on a model does; "cold" calls
 * find it prepared for predictions of 256 rows (as nn_predict over a
 * query leaves its cached model), which the buffers for the steps do not
 * cover, so each call prepares those and then the prediction buffers
 * again.  Goal: under 50 ms per row at 64 steps on 2 threads.
 *
 * Usage: bench_explain [repeats [steps]]   (make -C test/unit bench-explain)
 * Keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as the machine sets them.
 */
#define BENCH_NAME "bench_explain"
#include "bench_util.h"

static int	REPEATS = 5;
static int32_t STEPS = 64;

/* Seconds per explanation, over iters calls; cold: prediction buffers
 * for 256 rows prepared before each call (not timed). */
static double
time_explain(nn_model *m, const float *x, bool cold, int iters)
{
	float		attr[784],
				fx,
				fb;
	nn_error	err;
	double		t = 0.0;

	for (int i = -1; i < iters; i++)
	{
		double		t0;

		if (cold && nn_model_prepare(m, 256, false, 0, &err) != NN_OK)
			die("prepare", &err);
		t0 = now();
		if (nn_model_explain(m, attr, &fx, &fb, NULL, x, NULL, -1, STEPS, 0,
							 &err) != NN_OK)
			die("explain", &err);
		if (i >= 0)
			t += now() - t0;
	}
	return t / iters;
}

/* One line: the median and range of REPEATS rounds, in ms per row. */
static void
bench(nn_model *m, const float *x, int threads, bool cold)
{
	double		ms[64];
	int			iters;

	nn_set_threads(threads);
	iters = (int) (0.3 / time_explain(m, x, cold, 2));
	iters = iters < 2 ? 2 : iters;
	for (int r = 0; r < REPEATS; r++)
		ms[r] = 1e3 * time_explain(m, x, cold, iters);
	qsort(ms, REPEATS, sizeof(double), cmp_double);
	printf("%7d  %-4s  %6.1f [%5.1f-%5.1f] ms per row\n", threads,
		   cold ? "cold" : "warm", ms[REPEATS / 2], ms[0], ms[REPEATS - 1]);
}

int
main(int argc, char **argv)
{
	const char *ct = getenv("OPENBLAS_CORETYPE");
	const char *l2 = getenv("OPENBLAS_L2_SIZE");
	nn_model   *m = seed_cnn();
	float		x[784];
	nn_rng		rng;

	if (argc > 1)
		REPEATS = atoi(argv[1]);
	if (REPEATS < 1 || REPEATS > 64)
		REPEATS = 5;
	if (argc > 2)
		STEPS = atoi(argv[2]);
	if (STEPS < 2)
		STEPS = 64;
	nn_rng_seed(&rng, 7);
	for (int i = 0; i < 784; i++)
		x[i] = nn_rng_uniform(&rng);
	printf("nn_model_explain, seed CNN, %d steps: medians of %d rounds [min-max]; "
		   "OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", STEPS, REPEATS,
		   ct ? ct : "(unset)", l2 ? l2 : "(unset)");
	printf("threads  buffers\n");
	for (int t = 1; t <= 2; t++)
	{
		bench(m, x, t, false);
		bench(m, x, t, true);
	}
	nn_model_free(m);
	return 0;
}
