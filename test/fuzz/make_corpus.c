/*
 * make_corpus.c: writes the fuzzers' seed corpus (committed under
 * test/fuzz/corpus/): a few small valid models as bytes for
 * fuzz_model_bytes, and a few valid specs in the spec_bytes.h encoding for
 * fuzz_spec.  Run by `make -C test/unit corpus`; the output is
 * deterministic (fixed seeds, one thread).
 *
 * Usage: make_corpus <corpus directory>
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crc_shim.h"
#include "nn.h"
#include "spec_bytes.h"

static const char *root;

static void
die(const char *what, const nn_error *err)
{
	fprintf(stderr, "make_corpus: %s%s%s\n", what, err ? ": " : "",
			err ? err->message : "");
	exit(1);
}

static void
write_file(const char *sub, const char *name, const uint8_t *b, size_t n)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", root, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		die("cannot create the corpus directory", NULL);
	snprintf(path, sizeof(path), "%s/%s/%s", root, sub, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(b, 1, n, f) != n || fclose(f) != 0)
		die("cannot write a corpus file", NULL);
	printf("%s (%zu bytes)\n", path, n);
}

static nn_layer_spec
layer(nn_layer_kind kind)
{
	nn_layer_spec s;

	nn_layer_spec_init(&s, kind);
	return s;
}

/* Build, optionally adapt and train, then write the model's bytes. */
static void
model_file(const char *name, nn_layer_spec *l, int n, int rank, int d0, int d1,
		   int d2, nn_optimizer_kind opt, nn_loss_kind loss, bool with_opt,
		   double sparsity)
{
	nn_model_spec spec;
	nn_model   *m = NULL;
	nn_error	err;
	nn_rng		rng;
	float	   *x,
			   *y;
	size_t		in,
				out,
				len;
	uint8_t    *buf;
	double		ls = 0;
	int64_t		correct = 0;

	memset(&spec, 0, sizeof(spec));
	spec.n_layers = n;
	spec.layers = l;
	spec.input_rank = rank;
	spec.input_shape[0] = d0;
	spec.input_shape[1] = rank > 1 ? d1 : 0;
	spec.input_shape[2] = rank > 2 ? d2 : 0;
	if (nn_model_create(&m, &spec, 7, 0, &nn_malloc_alloc, &err) != NN_OK)
		die(name, &err);
	in = nn_model_input_size(m);
	out = nn_model_output_size(m);
	x = malloc(sizeof(float) * in * 4);
	y = calloc(out * 4, sizeof(float));
	nn_rng_seed(&rng, 3);
	for (size_t i = 0; i < in * 4; i++)
		x[i] = nn_rng_uniform(&rng);
	for (int r = 0; r < 4; r++)
		y[r * (loss == NN_LOSS_SPARSE_CATEGORICAL_CE ? 1 : out)] = (float) (r % 2);
	if (sparsity >= 0 && nn_model_prune(m, sparsity, &err) != NN_OK)
		die(name, &err);
	if (nn_model_prepare(m, 4, true, 0, &err) != NN_OK)
		die(name, &err);
	while (nn_model_needs_adapt(m))
		if (nn_model_adapt_batch(m, x, 4, &err) != NN_OK ||
			nn_model_adapt_finish(m, &err) != NN_OK)
			die(name, &err);
	if (with_opt)
	{
		nn_optimizer_spec o;
		float		cw[2] = {1.5f, 0.5f};

		nn_optimizer_spec_init(&o, opt, 0);
		if (opt == NN_OPT_MOMENTUM)
		{
			o.schedule = NN_SCHED_STEP;
			o.decay_rate = 0.5f;
			o.decay_steps = 10;
			o.clipnorm = 1.0f;
		}
		if (nn_model_set_training(m, &o, loss, nn_loss_is_classification(loss) ? cw : NULL,
								  nn_loss_is_classification(loss) ? 2 : 0, &err) != NN_OK ||
			nn_model_train_batch(m, x, y, 4, &rng, &ls, &correct, &err) != NN_OK)
			die(name, &err);
	}
	len = nn_model_serialized_size(m, with_opt);
	buf = malloc(len);
	if (nn_model_serialize(m, buf, len, with_opt, test_crc32c, &err) != NN_OK)
		die(name, &err);
	write_file("fuzz_model_bytes", name, buf, len);
	free(buf);
	free(x);
	free(y);
	nn_model_free(m);
}

/* An int8 model (format version 4), calibrated on 8 rows or weight-only. */
static void
int8_file(const char *name, nn_layer_spec *l, int n, int rank, int d0, int d1,
		  int d2, bool calibrated)
{
	nn_model_spec spec;
	nn_model   *m = NULL;
	nn_error	err;
	nn_rng		rng;
	float	   *x;
	size_t		in,
				len;
	uint8_t    *buf;

	memset(&spec, 0, sizeof(spec));
	spec.n_layers = n;
	spec.layers = l;
	spec.input_rank = rank;
	spec.input_shape[0] = d0;
	spec.input_shape[1] = rank > 1 ? d1 : 0;
	spec.input_shape[2] = rank > 2 ? d2 : 0;
	if (nn_model_create(&m, &spec, 9, 0, &nn_malloc_alloc, &err) != NN_OK)
		die(name, &err);
	in = nn_model_input_size(m);
	x = malloc(sizeof(float) * in * 8);
	nn_rng_seed(&rng, 5);
	for (size_t i = 0; i < in * 8; i++)
		x[i] = nn_rng_uniform(&rng);
	if (nn_model_quantize(m, calibrated ? x : NULL, calibrated ? 8 : 0,
						  &err) != NN_OK)
		die(name, &err);
	len = nn_model_serialized_size(m, false);
	buf = malloc(len);
	if (nn_model_serialize(m, buf, len, false, test_crc32c, &err) != NN_OK)
		die(name, &err);
	write_file("fuzz_model_bytes", name, buf, len);
	free(buf);
	free(x);
	nn_model_free(m);
}

static void
models(void)
{
	nn_layer_spec mlp[2],
				every[12],
				cnn[4],
				reg[1];

	mlp[0] = layer(NN_LAYER_DENSE);
	mlp[0].units = 5;
	mlp[0].activation = NN_ACT_TANH;
	mlp[1] = layer(NN_LAYER_DENSE);
	mlp[1].units = 3;
	mlp[1].activation = NN_ACT_SOFTMAX;
	model_file("mlp_adam.bin", mlp, 2, 1, 4, 0, 0, NN_OPT_ADAM,
			   NN_LOSS_SPARSE_CATEGORICAL_CE, true, -1);

	every[0] = layer(NN_LAYER_NORMALIZE);
	every[1] = layer(NN_LAYER_RESCALE);
	every[1].scale = 0.5f;
	every[2] = layer(NN_LAYER_CONV2D);
	every[2].filters = 2;
	every[2].kernel[0] = 3;
	every[2].kernel[1] = 2;
	every[2].strides[0] = 2;
	every[2].same_padding = true;
	every[2].activation = NN_ACT_RELU;
	every[2].l2 = 0.01f;
	every[3] = layer(NN_LAYER_MAXPOOL2D);
	every[3].same_padding = true;
	every[4] = layer(NN_LAYER_AVGPOOL2D);
	every[4].kernel[1] = 1;
	every[4].strides[0] = every[4].strides[1] = 1;
	every[5] = layer(NN_LAYER_DROPOUT);
	every[5].rate = 0.25f;
	every[6] = layer(NN_LAYER_FLATTEN);
	every[7] = layer(NN_LAYER_DENSE);
	every[7].units = 4;
	every[7].activation = NN_ACT_ELU;
	every[8] = layer(NN_LAYER_ACTIVATION);
	every[8].activation = NN_ACT_LEAKY_RELU;
	every[9] = layer(NN_LAYER_RESHAPE);
	every[9].shape_rank = 3;
	every[9].shape[0] = 2;
	every[9].shape[1] = 2;
	every[9].shape[2] = 1;
	every[10] = layer(NN_LAYER_FLATTEN);
	every[11] = layer(NN_LAYER_DENSE);
	every[11].units = 2;
	every[11].use_bias = false;
	every[11].activation = NN_ACT_SIGMOID;
	model_file("every_kind_rmsprop.bin", every, 12, 3, 6, 5, 2, NN_OPT_RMSPROP,
			   NN_LOSS_BINARY_CE, true, -1);

	cnn[0] = layer(NN_LAYER_CONV2D);
	cnn[0].filters = 3;
	cnn[0].kernel[0] = cnn[0].kernel[1] = 3;
	cnn[0].activation = NN_ACT_RELU;
	cnn[1] = layer(NN_LAYER_MAXPOOL2D);
	cnn[2] = layer(NN_LAYER_FLATTEN);
	cnn[3] = layer(NN_LAYER_DENSE);
	cnn[3].units = 3;
	cnn[3].activation = NN_ACT_SOFTMAX;
	model_file("cnn_weights_only.bin", cnn, 4, 3, 8, 8, 1, NN_OPT_SGD,
			   NN_LOSS_CATEGORICAL_CE, false, -1);
	/* format version 4: int8 kernels, with and without input parameters */
	int8_file("cnn_int8.bin", cnn, 4, 3, 8, 8, 1, true);
	int8_file("mlp_int8_weight_only.bin", mlp, 2, 1, 4, 0, 0, false);

	reg[0] = layer(NN_LAYER_DENSE);
	reg[0].units = 1;
	reg[0].l1 = 0.01f;
	model_file("regression_momentum.bin", reg, 1, 1, 3, 0, 0, NN_OPT_MOMENTUM,
			   NN_LOSS_HUBER, true, -1);

	/* format version 3: a frozen kernel, whose optimizer state is not kept */
	reg[0].trainable = false;
	{
		nn_layer_spec fz[2] = {reg[0], layer(NN_LAYER_DENSE)};

		fz[0].units = 4;
		fz[1].units = 1;
		model_file("frozen_adam.bin", fz, 2, 1, 3, 0, 0, NN_OPT_ADAM,
				   NN_LOSS_MSE, true, -1);
		/* and a pruned one, its kernels stored sparsely */
		model_file("pruned_adam.bin", fz, 2, 1, 3, 0, 0, NN_OPT_ADAM,
				   NN_LOSS_MSE, true, 0.5);
	}

	/* format version 3: every augmentation kind in front of a small CNN */
	{
		nn_layer_spec aug[11];

		aug[0] = layer(NN_LAYER_RANDOM_FLIP);
		aug[0].mode = NN_FLIP_BOTH;
		aug[1] = layer(NN_LAYER_RANDOM_TRANSLATION);
		aug[1].height_factor[0] = -0.2f;
		aug[1].height_factor[1] = 0.2f;
		aug[1].width_factor[0] = -0.1f;
		aug[1].width_factor[1] = 0.3f;
		aug[1].fill_mode = NN_FILL_CONSTANT;
		aug[1].fill_value = 0.5f;
		aug[2] = layer(NN_LAYER_RANDOM_ROTATION);
		aug[2].factor[0] = -0.1f;
		aug[2].factor[1] = 0.1f;
		aug[2].fill_mode = NN_FILL_WRAP;
		aug[3] = layer(NN_LAYER_RANDOM_ZOOM);	/* width absent */
		aug[3].height_factor[0] = -0.2f;
		aug[3].height_factor[1] = 0.3f;
		aug[4] = layer(NN_LAYER_RANDOM_CROP);
		aug[4].height = 5;
		aug[4].width = 4;
		aug[5] = layer(NN_LAYER_RANDOM_CONTRAST);
		aug[5].factor[0] = -0.3f;
		aug[5].factor[1] = 0.3f;
		aug[6] = layer(NN_LAYER_RANDOM_BRIGHTNESS);	/* value_range [0, 1] */
		aug[6].factor[0] = -0.1f;
		aug[6].factor[1] = 0.2f;
		aug[7] = layer(NN_LAYER_GAUSSIAN_NOISE);
		aug[7].stddev = 0.05f;
		aug[8] = layer(NN_LAYER_CONV2D);
		aug[8].filters = 2;
		aug[8].kernel[0] = aug[8].kernel[1] = 2;
		aug[8].activation = NN_ACT_RELU;
		aug[9] = layer(NN_LAYER_FLATTEN);
		aug[10] = layer(NN_LAYER_DENSE);
		aug[10].units = 2;
		aug[10].activation = NN_ACT_SOFTMAX;
		model_file("augment_adam.bin", aug, 11, 3, 6, 5, 2, NN_OPT_ADAM,
				   NN_LOSS_SPARSE_CATEGORICAL_CE, true, -1);
	}
}

/* ---------- spec corpus (spec_bytes.h encoding) ---------- */

typedef struct sl
{
	int			kind,
				act,
				units,
				filters,
				kh,
				kw,
				sh,
				sw;
	bool		same,
				nobias;
	int			srank,
				s0,
				s1,
				s2;
	float		rate,
				scale,
				offset,
				alpha,
				l1,
				l2,
				eps;
	uint8_t		ext[SB_EXT];	/* augmentation options, raw (spec_bytes.h) */
} sl;

static void
spec_file(const char *name, int rank, int d0, int d1, int d2, int loss, int opt,
		  const sl *l, int n)
{
	uint8_t		b[SB_HEADER + SB_MAX_LAYERS * (SB_LAYER + SB_EXT)];
	size_t		len = SB_HEADER + (size_t) n * SB_LAYER;
	bool		ext = false;

	memset(b, 0, sizeof(b));
	b[0] = (uint8_t) (n - 1);
	b[1] = (uint8_t) (rank - 1);
	b[2] = (uint8_t) d0;
	b[3] = (uint8_t) d1;
	b[4] = (uint8_t) d2;
	b[5] = (uint8_t) (loss - 1);
	b[6] = (uint8_t) (opt - 1);
	b[7] = 42;
	for (int i = 0; i < n; i++)
	{
		uint8_t    *d = b + SB_HEADER + i * SB_LAYER;

		d[0] = (uint8_t) l[i].kind;
		d[1] = (uint8_t) (l[i].act + 1);
		d[2] = (uint8_t) l[i].units;
		d[3] = (uint8_t) l[i].filters;
		d[4] = (uint8_t) l[i].kh;
		d[5] = (uint8_t) l[i].kw;
		d[6] = (uint8_t) l[i].sh;
		d[7] = (uint8_t) l[i].sw;
		d[8] = (uint8_t) ((l[i].same ? 1 : 0) | (l[i].nobias ? 2 : 0));
		d[9] = (uint8_t) l[i].srank;
		d[10] = (uint8_t) l[i].s0;
		d[11] = (uint8_t) l[i].s1;
		d[12] = (uint8_t) l[i].s2;
		d[13] = sb_real_byte(l[i].rate);
		d[14] = sb_real_byte(l[i].scale != 0 ? l[i].scale : 1.0f);
		d[15] = sb_real_byte(l[i].offset);
		d[16] = sb_real_byte(l[i].alpha);
		d[17] = sb_real_byte(l[i].l1);
		d[18] = sb_real_byte(l[i].l2);
		/* 100 stands for 1e-7, epsilon's unset value (spec_bytes.h) */
		d[19] = l[i].eps != 0 ? sb_real_byte(l[i].eps) :
			l[i].kind == NN_LAYER_NORMALIZE || l[i].kind == NN_LAYER_BATCHNORM ?
			sb_real_byte(0.01f) : 100;
		d[20] = sb_real_byte(0);	/* momentum unset */
		d[23] = 1;				/* recurrent activation linear, unset */
		for (int j = 0; j < SB_EXT; j++)
			ext |= l[i].ext[j] != 0;
	}
	/* the augmentation options only when a layer has some */
	if (ext)
	{
		for (int i = 0; i < n; i++)
			memcpy(b + len + (size_t) i * SB_EXT, l[i].ext, SB_EXT);
		len += (size_t) n * SB_EXT;
	}
	/* the encoding must decode to a valid spec */
	{
		sb_spec		s;
		nn_error	err;

		if (sb_decode(&s, b, len) != 0 || nn_spec_check(&s.spec, &err) != NN_OK)
			die(name, &err);
	}
	write_file("fuzz_spec", name, b, len);
}

/*
 * scale 0 stands for 1, epsilon 0 for 0.01 (normalize) or unset (see
 * spec_file); .ext bytes as spec_bytes.h: [0] mode | fill_mode << 2,
 * [1..4] height_factor, width_factor, factor, value_range (odd b: [-v, v],
 * even: [v - 0.5, v], v = (b - 100) / 100), [5] fill_value, [6] stddev,
 * [7] height, [8] width.
 */
#define L(...) ((sl) {__VA_ARGS__})

static void
specs(void)
{
	sl			mlp[] = {
		L(.kind = NN_LAYER_DENSE, .act = NN_ACT_RELU, .units = 6),
		L(.kind = NN_LAYER_DROPOUT, .rate = 0.2f),
		L(.kind = NN_LAYER_DENSE, .act = NN_ACT_SOFTMAX, .units = 3),
	};
	sl			cnn[] = {
		L(.kind = NN_LAYER_CONV2D, .act = NN_ACT_RELU, .filters = 4, .kh = 3, .kw = 3,
		  .sh = 1, .sw = 1, .same = true),
		L(.kind = NN_LAYER_MAXPOOL2D, .kh = 2, .kw = 2),
		L(.kind = NN_LAYER_AVGPOOL2D, .kh = 2, .kw = 1, .sh = 1, .sw = 1),
		L(.kind = NN_LAYER_CONV2D, .act = NN_ACT_TANH, .filters = 2, .kh = 2, .kw = 2,
		  .sh = 2, .sw = 1, .nobias = true),
		L(.kind = NN_LAYER_FLATTEN),
		L(.kind = NN_LAYER_DENSE, .act = NN_ACT_SIGMOID, .units = 2),
	};
	sl			misc[] = {
		L(.kind = NN_LAYER_NORMALIZE),
		L(.kind = NN_LAYER_RESCALE, .scale = 0.5f, .offset = 0.25f),
		L(.kind = NN_LAYER_RESHAPE, .srank = 3, .s0 = 2, .s1 = 3, .s2 = 2),
		L(.kind = NN_LAYER_CONV2D, .act = NN_ACT_ELU, .filters = 2, .kh = 2, .kw = 2,
		  .sh = 1, .sw = 1, .l2 = 0.01f),
		L(.kind = NN_LAYER_FLATTEN),
		L(.kind = NN_LAYER_ACTIVATION, .act = NN_ACT_LEAKY_RELU, .alpha = 0.1f),
		L(.kind = NN_LAYER_DENSE, .act = NN_ACT_LINEAR, .units = 1, .l1 = 0.01f),
	};

	spec_file("mlp.bin", 1, 8, 0, 0, NN_LOSS_SPARSE_CATEGORICAL_CE, NN_OPT_ADAM,
			  mlp, 3);
	spec_file("cnn.bin", 3, 8, 8, 1, NN_LOSS_BINARY_CE, NN_OPT_MOMENTUM, cnn, 6);
	spec_file("normalize_reshape.bin", 1, 12, 0, 0, NN_LOSS_MSE, NN_OPT_ADAGRAD,
			  misc, 7);

	{
		/* (8, 8, 2): flip, translation, rotation, zoom, crop (6, 5) */
		sl			aug[] = {
			L(.kind = NN_LAYER_RANDOM_FLIP, .ext = {NN_FLIP_BOTH}),
			L(.kind = NN_LAYER_RANDOM_TRANSLATION,
			  .ext = {NN_FILL_CONSTANT << 2, 121, 111, 0, 0, 150}),
			L(.kind = NN_LAYER_RANDOM_ROTATION, .ext = {NN_FILL_WRAP << 2, 0, 0, 105}),
			L(.kind = NN_LAYER_RANDOM_ZOOM, .ext = {NN_FILL_NEAREST << 2, 121}),
			L(.kind = NN_LAYER_RANDOM_CROP, .ext = {0, 0, 0, 0, 0, 0, 0, 6, 5}),
			L(.kind = NN_LAYER_FLATTEN),
			L(.kind = NN_LAYER_DENSE, .act = NN_ACT_RELU, .units = 4),
			L(.kind = NN_LAYER_DENSE, .act = NN_ACT_LINEAR, .units = 1),
		};
		/* (6, 6, 3): contrast, brightness, noise, zoom with a width, conv2d */
		sl			aug2[] = {
			L(.kind = NN_LAYER_RANDOM_CONTRAST, .ext = {0, 0, 0, 131}),
			L(.kind = NN_LAYER_RANDOM_BRIGHTNESS, .ext = {0, 0, 0, 110}),
			L(.kind = NN_LAYER_GAUSSIAN_NOISE, .ext = {0, 0, 0, 0, 0, 0, 110}),
			L(.kind = NN_LAYER_RANDOM_ZOOM, .ext = {NN_FILL_WRAP << 2, 120, 131}),
			L(.kind = NN_LAYER_CONV2D, .act = NN_ACT_RELU, .filters = 2, .kh = 3,
			  .kw = 3, .sh = 1, .sw = 1),
			L(.kind = NN_LAYER_FLATTEN),
			L(.kind = NN_LAYER_DENSE, .act = NN_ACT_SOFTMAX, .units = 3),
		};

		spec_file("augment.bin", 3, 8, 8, 2, NN_LOSS_MSE, NN_OPT_ADAM, aug, 8);
		spec_file("augment_cnn.bin", 3, 6, 6, 3, NN_LOSS_SPARSE_CATEGORICAL_CE,
				  NN_OPT_RMSPROP, aug2, 7);
	}
}

int
main(int argc, char **argv)
{
	if (argc != 2)
	{
		fprintf(stderr, "usage: make_corpus <corpus directory>\n");
		return 2;
	}
	root = argv[1];
	nn_set_threads(1);
	if (mkdir(root, 0755) != 0 && errno != EEXIST)
		die("cannot create the corpus directory", NULL);
	models();
	specs();
	return 0;
}
