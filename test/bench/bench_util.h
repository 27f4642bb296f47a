/*
 * bench_util.h: what the benchmark programs share: a monotonic clock, a
 * qsort comparison for figures, exiting on a core error or out of
 * memory, random inputs, and the models they time (the seed CNN of the
 * README among them).
 *
 * Define BENCH_NAME (the program's name, for error messages) before
 * including it.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn.h"

static inline double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static inline void
die(const char *what, const nn_error *err)
{
	fprintf(stderr, BENCH_NAME ": %s: %s\n", what, err->message);
	exit(1);
}

static inline void *
xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, BENCH_NAME ": out of memory\n");
		exit(1);
	}
	return p;
}

/* n values uniform in [lo, hi). */
static inline void
fill(float *x, size_t n, nn_rng *rng, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * nn_rng_uniform(rng);
}

static inline nn_layer_spec
layer(nn_layer_kind kind)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, kind);
	return s;
}

/* A 3x3 conv2d layer. */
static inline nn_layer_spec
conv(int filters, nn_activation act)
{
	nn_layer_spec s = layer(NN_LAYER_CONV2D);

	s.filters = filters;
	s.kernel[0] = s.kernel[1] = 3;
	s.activation = act;
	return s;
}

static inline nn_layer_spec
dense(int units, nn_activation act)
{
	nn_layer_spec s = layer(NN_LAYER_DENSE);

	s.units = units;
	s.activation = act;
	return s;
}

/* The 9 layers of the seed CNN on 784 inputs: reshape 28x28x1 -> conv32
 * -> pool -> conv64 -> pool -> conv64 -> flatten -> dense64 -> dense10. */
static inline void
seed_cnn_layers(nn_layer_spec l[9])
{
	l[0] = layer(NN_LAYER_RESHAPE);
	l[0].shape_rank = 3;
	l[0].shape[0] = 28;
	l[0].shape[1] = 28;
	l[0].shape[2] = 1;
	l[1] = conv(32, NN_ACT_RELU);
	l[2] = layer(NN_LAYER_MAXPOOL2D);
	l[3] = conv(64, NN_ACT_RELU);
	l[4] = layer(NN_LAYER_MAXPOOL2D);
	l[5] = conv(64, NN_ACT_RELU);
	l[6] = layer(NN_LAYER_FLATTEN);
	l[7] = dense(64, NN_ACT_RELU);
	l[8] = dense(10, NN_ACT_SOFTMAX);
}

/* A model of n layers on 784 inputs, weights from seed 42. */
static inline nn_model *
create_784(nn_layer_spec *l, int32_t n)
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

/* The seed CNN of the README, weights from seed 42. */
static inline nn_model *
seed_cnn(void)
{
	nn_layer_spec l[9];

	seed_cnn_layers(l);
	return create_784(l, 9);
}

#endif							/* BENCH_UTIL_H */
