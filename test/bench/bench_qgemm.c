/*
 * bench_qgemm.c: the int8 products of qgemm.c against float sgemm and
 * oneDNN's int8 GEMM, on the shapes nnpg's quantized layers will run.
 *
 * Shapes (rows n x inputs -> outputs):
 *   - the MLP 784-512-512-10 at a batch of 256 and at one row;
 *   - the seed CNN's conv2d layers as im2col GEMMs at a batch of 64:
 *     43264 x 9 -> 32, 7744 x 288 -> 64, 576 x 576 -> 64.
 * Methods, each at 1 and 2 threads:
 *   sgemm      the float product as dense.c computes it: X (n, in) W (in,
 *              out), rows split over the core's OpenMP team, each share by
 *              single-threaded OpenBLAS sgemm (sgemv for a one-row share);
 *              OpenBLAS's own threads would compete with the team's
 *              spinning threads, as threads.c explains;
 *   qgemm P    nn_qgemm on path P (avx512-vnni, avx2, c), float outputs
 *              with scales and bias, on the core's OpenMP team;
 *   s32 vnni   nn_qgemm_s32 on the best path: the int32 sums only;
 *   onednn     dnnl_gemm_u8s8s32 (int32 sums, zero point of A, B
 *              transposed as our (out, in) weights), on its OpenMP team;
 *   wonly      nn_qgemm_weight_only: float activations, int8 weights;
 *   quant x    nn_qgemm_quantize_acts of the float input (one thread).
 * Each figure comes from ROUNDS timed rounds; in every round each method
 * runs in turn (the starting method rotates), repeated to last about
 * TARGET_MS, so that noise on the shared machine hits all alike.  The
 * table shows the median and the fastest round in microseconds per call;
 * GOPS (2 n in out operations per call) and the speed-up over sgemm come
 * from the medians.  The int32 sums of onednn and qgemm are compared once
 * per shape.
 *
 * Usage: bench_qgemm [rounds]        (make -C test/unit bench-qgemm)
 * Run with OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512, as CI does.
 */
#include <cblas.h>
#include <dnnl.h>

#define BENCH_NAME "bench_qgemm"
#include "bench_util.h"
#include "nn_internal.h"
#include "qgemm.h"

#define TARGET_MS 3.0

static int	ROUNDS = 7;

typedef struct shape
{
	const char *name;
	int32_t		n,
				in,
				out;
} shape;

static const shape shapes[] = {
	{"mlp 784->512 n=256", 256, 784, 512},
	{"mlp 512->512 n=256", 256, 512, 512},
	{"mlp 512->10 n=256", 256, 512, 10},
	{"mlp 784->512 n=1", 1, 784, 512},
	{"mlp 512->512 n=1", 1, 512, 512},
	{"mlp 512->10 n=1", 1, 512, 10},
	{"conv1 43264x9->32", 64 * 26 * 26, 9, 32},
	{"conv2 7744x288->64", 64 * 11 * 11, 288, 64},
	{"conv3 576x576->64", 64 * 3 * 3, 576, 64},
};

enum method
{
	M_SGEMM, M_VNNI, M_AVX2, M_C, M_S32, M_ONEDNN, M_WONLY, M_QUANT, M_COUNT
};

static const char *method_names[M_COUNT] = {
	"sgemm", "qgemm avx512-vnni", "qgemm avx2", "qgemm c", "s32 avx512-vnni",
	"onednn u8s8s32", "wonly", "quant x",
};

/* One shape's operands, float and quantized. */
typedef struct operands
{
	shape		s;
	float	   *x,				/* (n, in) */
			   *w,				/* (in, out), as a Keras kernel */
			   *bias,
			   *y;				/* (n, out) */
	uint8_t    *xq;
	int8_t	   *q;				/* (out, in) */
	float	   *sw;
	nn_qparams	xp;
	int32_t    *c,
			   *c_ref;
	nn_qweights qw[NN_QPATH_COUNT];
	float	   *work;
} operands;

static void
check(nn_status st, const nn_error *err)
{
	if (st != NN_OK)
	{
		fprintf(stderr, "bench_qgemm: %s\n", err->message);
		exit(1);
	}
}

/* Random operands (activations in [0, 1], as after relu), quantized. */
static void
setup(operands *o, const shape *s)
{
	nn_rng		rng;
	nn_error	err;
	size_t		nx = (size_t) s->n * s->in,
				nw = (size_t) s->in * s->out,
				ny = (size_t) s->n * s->out;

	memset(o, 0, sizeof(*o));
	o->s = *s;
	nn_rng_seed(&rng, 11);
	o->x = xmalloc(sizeof(float) * nx);
	o->w = xmalloc(sizeof(float) * nw);
	o->bias = xmalloc(sizeof(float) * s->out);
	o->y = xmalloc(sizeof(float) * ny);
	o->xq = xmalloc(nx);
	o->q = xmalloc(nw);
	o->sw = xmalloc(sizeof(float) * s->out);
	o->c = xmalloc(sizeof(int32_t) * ny);
	o->c_ref = xmalloc(sizeof(int32_t) * ny);
	fill(o->x, nx, &rng, 0.0f, 1.0f);
	fill(o->w, nw, &rng, -0.1f, 0.1f);
	fill(o->bias, s->out, &rng, -0.1f, 0.1f);
	check(nn_qgemm_quantize_weights(o->q, o->sw, o->w, 1, s->out, s->out,
									s->in, &err), &err);
	check(nn_qgemm_range(&o->xp, 0.0f, 1.0f, &err), &err);
	nn_qgemm_quantize_acts(o->xq, o->x, o->xp, nx);
	for (int p = NN_QPATH_C; p < NN_QPATH_COUNT; p++)
		if (nn_qgemm_path_supported((nn_qpath) p))
			check(nn_qgemm_pack(&o->qw[p], o->q, o->sw, (nn_qpath) p, s->out,
								s->in, &nn_malloc_alloc, &err), &err);
	o->work = xmalloc(sizeof(float) *
					  nn_qgemm_weight_only_work(&o->qw[nn_qgemm_path_best()], 2));
}

static void
teardown(operands *o)
{
	for (int p = 0; p < NN_QPATH_COUNT; p++)
		nn_qgemm_free(&o->qw[p]);
	free(o->x);
	free(o->w);
	free(o->bias);
	free(o->y);
	free(o->xq);
	free(o->q);
	free(o->sw);
	free(o->c);
	free(o->c_ref);
	free(o->work);
}

/* oneDNN: C = (Xq - zero) Q^T, Q (out, in) read transposed. */
static void
run_onednn(operands *o, int32_t *c)
{
	const shape *s = &o->s;
	const int32_t co = 0;

	if (dnnl_gemm_u8s8s32('N', 'T', 'F', s->n, s->out, s->in, 1.0f, o->xq,
						  s->in, (uint8_t) o->xp.zero, o->q, s->in, 0, 0.0f,
						  c, s->out, &co) != dnnl_success)
	{
		fprintf(stderr, "bench_qgemm: dnnl_gemm_u8s8s32 failed\n");
		exit(1);
	}
}

/* The float product as dense.c computes it, on the core's team. */
static void
run_sgemm(operands *o)
{
	const shape *s = &o->s;
	int			K = s->in,
				U = s->out;

#pragma omp parallel if (nn_par((double) s->n * K * U, s->n))
	{
		int32_t		r0,
					r1;

		nn_thread_rows(s->n, &r0, &r1);
		if (r1 - r0 == 1)
			cblas_sgemv(CblasRowMajor, CblasTrans, K, U, 1.0f, o->w, U,
						o->x + (size_t) r0 * K, 1, 0.0f, o->y + (size_t) r0 * U, 1);
		else if (r1 > r0)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, U,
						K, 1.0f, o->x + (size_t) r0 * K, K, o->w, U, 0.0f,
						o->y + (size_t) r0 * U, U);
	}
}

/* Is the method available here? */
static bool
available(int m)
{
	switch (m)
	{
		case M_VNNI:
		case M_S32:
			return nn_qgemm_path_supported(NN_QPATH_VNNI);
		case M_AVX2:
			return nn_qgemm_path_supported(NN_QPATH_AVX2);
		default:
			return true;
	}
}

/* One call of a method. */
static void
run(operands *o, int m, int threads)
{
	const shape *s = &o->s;
	nn_qpath	best = nn_qgemm_path_best();

	switch (m)
	{
		case M_SGEMM:
			run_sgemm(o);
			break;
		case M_VNNI:
		case M_AVX2:
		case M_C:
			nn_qgemm(o->y, o->xq, &o->qw[m == M_VNNI ? NN_QPATH_VNNI :
										 m == M_AVX2 ? NN_QPATH_AVX2 : NN_QPATH_C],
					 o->bias, o->xp, s->n, s->in, s->out);
			break;
		case M_S32:
			nn_qgemm_s32(o->c, o->xq, &o->qw[NN_QPATH_VNNI], o->xp.zero, s->n,
						 s->in, s->out);
			break;
		case M_ONEDNN:
			run_onednn(o, o->c_ref);
			break;
		case M_WONLY:
			nn_qgemm_weight_only(o->y, o->x, &o->qw[best], o->bias, o->work,
								 threads, s->n, s->in, s->out);
			break;
		case M_QUANT:
			nn_qgemm_quantize_acts(o->xq, o->x, o->xp, (size_t) s->n * s->in);
			break;
	}
}

/* Seconds per call over iters calls. */
static double
timed(operands *o, int m, int threads, int iters)
{
	double		t0 = now();

	for (int i = 0; i < iters; i++)
		run(o, m, threads);
	return (now() - t0) / iters;
}

/* Calls per timed batch: about TARGET_MS each. */
static int
calibrate(operands *o, int m, int threads)
{
	double		t;

	run(o, m, threads);			/* warm caches and oneDNN's JIT */
	t = timed(o, m, threads, 1);
	t = TARGET_MS * 1e-3 / (t > 1e-9 ? t : 1e-9);
	return t < 1 ? 1 : t > 100000 ? 100000 : (int) t;
}

/* Median and least seconds per call of every method, methods rotating. */
static void
bench_shape(operands *o, int threads, double *med, double *best)
{
	int			iters[M_COUNT];
	double	   *t = xmalloc(sizeof(double) * ROUNDS * M_COUNT);

	for (int m = 0; m < M_COUNT; m++)
		iters[m] = available(m) ? calibrate(o, m, threads) : 0;
	for (int r = 0; r < ROUNDS; r++)
		for (int i = 0; i < M_COUNT; i++)
		{
			int			m = (i + r) % M_COUNT;

			if (iters[m])
				t[m * ROUNDS + r] = timed(o, m, threads, iters[m]);
		}
	for (int m = 0; m < M_COUNT; m++)
	{
		med[m] = best[m] = 0;
		if (!iters[m])
			continue;
		qsort(t + m * ROUNDS, ROUNDS, sizeof(double), cmp_double);
		best[m] = t[m * ROUNDS];
		med[m] = ROUNDS % 2 ? t[m * ROUNDS + ROUNDS / 2] :
			0.5 * (t[m * ROUNDS + ROUNDS / 2 - 1] + t[m * ROUNDS + ROUNDS / 2]);
	}
	free(t);
}

/* Do oneDNN's int32 sums equal ours? */
static bool
same_sums(operands *o)
{
	size_t		ny = (size_t) o->s.n * o->s.out;

	run(o, M_S32, 1);
	if (!available(M_S32))
		nn_qgemm_s32(o->c, o->xq, &o->qw[NN_QPATH_C], o->xp.zero, o->s.n,
					 o->s.in, o->s.out);
	run(o, M_ONEDNN, 1);
	return memcmp(o->c, o->c_ref, sizeof(int32_t) * ny) == 0;
}

/* One cell group: median and least microseconds, GOPS, speed-up. */
static void
print_cell(const operands *o, const double *med, const double *best, int m)
{
	double		ops = 2.0 * o->s.n * o->s.in * o->s.out;

	if (med[m] <= 0)
		printf(" %8s %8s %6s %6s |", "-", "-", "-", "-");
	else if (m == M_QUANT)
		printf(" %8.1f %8.1f %6s %6s |", med[m] * 1e6, best[m] * 1e6, "-", "-");
	else
		printf(" %8.1f %8.1f %6.1f %5.2fx |", med[m] * 1e6, best[m] * 1e6,
			   ops / med[m] * 1e-9, med[M_SGEMM] / med[m]);
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		ROUNDS = atoi(argv[1]) > 0 ? atoi(argv[1]) : ROUNDS;
	printf("bench_qgemm: best path %s, %d rounds, median per call\n",
		   nn_qgemm_path_name(nn_qgemm_path_best()), ROUNDS);
	printf("| %-20s | %-17s | %8s %8s %6s %6s | %8s %8s %6s %6s |\n",
		   "shape", "method", "1T med", "1T min", "GOPS", "vs f32", "2T med",
		   "2T min", "GOPS", "vs f32");
	printf("|%s|%s|%s|%s|\n", "----------------------", "-------------------",
		   "--------------------------------", "--------------------------------");
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
	{
		operands	o;
		double		med[2][M_COUNT],
					best[2][M_COUNT];

		setup(&o, &shapes[i]);
		if (!same_sums(&o))
			printf("WARNING: %s: oneDNN's sums differ from qgemm's\n",
				   shapes[i].name);
		for (int t = 0; t < 2; t++)
		{
			nn_set_threads(t + 1);
			bench_shape(&o, t + 1, med[t], best[t]);
		}
		for (int m = 0; m < M_COUNT; m++)
		{
			printf("| %-20s | %-17s |", m == 0 ? shapes[i].name : "",
				   method_names[m]);
			print_cell(&o, med[0], best[0], m);
			print_cell(&o, med[1], best[1], m);
			printf("\n");
		}
		teardown(&o);
	}
	return 0;
}
