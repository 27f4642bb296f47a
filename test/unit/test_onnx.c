/*
 * test_onnx.c: models to and from ONNX (src/core/onnx.c).
 *
 * - PyTorch's exports (test/fixtures/onnx/, written by make_onnx.py): an
 *   MLP (Gemm with transB, MatMul + Add), the seed CNN (Conv + Relu,
 *   MaxPool, Flatten after NCHW), a CNN with batchnorm, average and global
 *   pooling and three input channels, an LSTM, a GRU and an embedding
 *   model, imported and predicting PyTorch's outputs within 1e-4;
 * - every layer kind exported and imported back, predicting the same;
 *   with NNPG_ONNX_OUT set, the exports are also written there for
 *   onnx.checker (test/fixtures/check_onnx.py, `make onnx-check`);
 * - bad input: garbage and truncated bytes, an unsupported operator, an
 *   opset, a dynamic input dimension, a limit, each its own status;
 * - format detection, and the time of export and import of the
 *   784-512-512-10 MLP.
 */
#include "nn_test.h"

#include <math.h>
#include <time.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"

/* ---------- helpers ---------- */

static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		n;

	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t) n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
	fclose(f);
	*len = (size_t) n;
	return buf;
}

static const char *
fixture_dir(void)
{
	const char *dir = getenv("NNPG_FIXTURES");

	return dir ? dir : "../fixtures";
}

/* Predict n rows of x into a fresh buffer. */
static float *
predict(nn_model *m, const float *x, int32_t n)
{
	nn_error	err;
	float	   *y = malloc(sizeof(float) * n * nn_model_output_size(m));

	assert_ok(nn_model_prepare(m, n, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, n, &err), &err);
	return y;
}

/* Import fixture NAME and check it predicts PyTorch's outputs. */
static void
check_fixture(const char *name)
{
	char		path[1024];
	size_t		len;
	uint8_t    *bytes;
	nn_model   *m;
	nn_error	err;
	FILE	   *f;
	char		head[64];
	int			in,
				out,
				rows;
	float	   *x;
	double	   *want;
	float	   *y;
	float	   *yd;

	snprintf(path, sizeof(path), "%s/onnx/%s.onnx", fixture_dir(), name);
	bytes = read_file(path, &len);
	assert_true(nn_bytes_look_onnx(bytes, len));
	assert_ok(nn_model_import_onnx(&m, bytes, len, 0, &nn_malloc_alloc, &err),
			  &err);
	free(bytes);

	snprintf(path, sizeof(path), "%s/onnx/%s.txt", fixture_dir(), name);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(head, sizeof(head), f));
	assert_string_equal(head, "nnpg-onnx-fixture 1\n");
	while (fgetc(f) == '#')
		while (fgetc(f) != '\n')
			;
	fseek(f, -1, SEEK_CUR);
	assert_int_equal(fscanf(f, " in %d out %d rows %d", &in, &out, &rows), 3);
	assert_int_equal(nn_model_input_size(m), in);
	assert_int_equal(nn_model_output_size(m), out);
	x = malloc(sizeof(float) * in * rows);
	want = malloc(sizeof(double) * out * rows);
	for (int i = 0; i < in * rows; i++)
		assert_int_equal(fscanf(f, "%f", &x[i]), 1);
	for (int i = 0; i < out * rows; i++)
		assert_int_equal(fscanf(f, "%lf", &want[i]), 1);
	fclose(f);
	y = predict(m, x, rows);
	assert_close_fd(name, y, want, (size_t) out * rows, 1e-5, 1e-4);

	/* and the import exports and imports back to the same predictions */
	{
		nn_model   *m2;

		assert_ok(nn_model_export_onnx(m, &bytes, &len, &nn_malloc_alloc, &err),
				  &err);
		assert_ok(nn_model_import_onnx(&m2, bytes, len, 0, &nn_malloc_alloc,
									   &err), &err);
		yd = predict(m2, x, rows);
		assert_close_f(name, yd, y, (size_t) out * rows, 0, 1e-6);
		free(yd);
		free(bytes);
		nn_model_free(m2);
	}
	free(x);
	free(want);
	free(y);
	nn_model_free(m);
}

static void
test_fixture_mlp(void **state)
{
	(void) state;
	check_fixture("mlp");
}

static void
test_fixture_cnn(void **state)
{
	(void) state;
	check_fixture("cnn");
}

static void
test_fixture_bn_cnn(void **state)
{
	(void) state;
	check_fixture("bn_cnn");
}

static void
test_fixture_lstm(void **state)
{
	(void) state;
	check_fixture("lstm");
}

static void
test_fixture_gru(void **state)
{
	(void) state;
	check_fixture("gru");
}

static void
test_fixture_embedding(void **state)
{
	(void) state;
	check_fixture("embedding");
}

/* With NNPG_ONNX_OUT set, write an export there for onnx.checker. */
static void
keep_export(const char *name, const uint8_t *bytes, size_t len)
{
	const char *outdir = getenv("NNPG_ONNX_OUT");
	char		path[1024];
	FILE	   *f;

	if (outdir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/%s.onnx", outdir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bytes, 1, len, f), len);
	fclose(f);
}

/*
 * Export the model of these layers, import it back, and compare the
 * predictions of 3 rows; ids: inputs are token ids below vocab.
 */
static void
round_trip(const char *name, nn_model_spec spec, int vocab)
{
	nn_model   *m = nt_create(&spec, 7),
			   *m2;
	nn_error	err;
	uint8_t    *bytes;
	size_t		len;
	size_t		in = nn_model_input_size(m);
	float	   *x = malloc(sizeof(float) * 3 * in);
	float	   *y,
			   *y2;
	nn_rng		rng;

	nt_perturb(m, 11);
	nn_rng_seed(&rng, 3);
	for (size_t i = 0; i < 3 * in; i++)
		x[i] = vocab ? (float) nn_rng_below(&rng, (uint64_t) vocab) :
			nn_rng_uniform(&rng) * 2.0f - 1.0f;
	assert_ok(nn_model_export_onnx(m, &bytes, &len, &nn_malloc_alloc, &err),
			  &err);
	assert_true(nn_bytes_look_onnx(bytes, len));
	keep_export(name, bytes, len);
	assert_ok(nn_model_import_onnx(&m2, bytes, len, 0, &nn_malloc_alloc, &err),
			  &err);
	assert_int_equal(nn_model_input_size(m2), in);
	assert_int_equal(nn_model_output_size(m2), nn_model_output_size(m));
	y = predict(m, x, 3);
	y2 = predict(m2, x, 3);
	assert_close_f(name, y2, y, 3 * nn_model_output_size(m), 1e-6, 1e-5);
	free(x);
	free(y);
	free(y2);
	free(bytes);
	nn_model_free(m);
	nn_model_free(m2);
}

static void
test_round_trip_dense(void **state)
{
	nn_layer_spec l[] = {
		nt_dense(8, NN_ACT_RELU), nt_dropout(0.5f), nt_dense(6, NN_ACT_TANH),
		nt_dense_nobias(5, NN_ACT_SIGMOID), nt_dense(4, NN_ACT_ELU),
		nt_dense(3, NN_ACT_LEAKY_RELU), nt_act(NN_ACT_LEAKY_RELU),
		nt_dense(3, NN_ACT_SOFTMAX),
	};

	(void) state;
	l[6].alpha = 0.3f;
	round_trip("dense", nt_spec(1, 7, 0, 0, l, NT_NLAYERS(l)), 0);
}

static void
test_round_trip_cnn(void **state)
{
	nn_layer_spec l[] = {
		nt_conv(4, 3, 3, 1, 1, true, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 2, 2, false),
		nt_conv(5, 3, 2, 2, 1, true, NN_ACT_LINEAR),
		nt_act(NN_ACT_SOFTMAX),
		nt_pool(NN_LAYER_AVGPOOL2D, 3, 3, 2, 2, true),
		nt_random_flip(NN_FLIP_HORIZONTAL),
		nt_plain(NN_LAYER_FLATTEN),
		nt_dense(4, NN_ACT_RELU),
		nt_reshape2(2, 2),
		nt_act(NN_ACT_SOFTMAX),
		nt_reshape3(2, 1, 2),
		nt_conv(3, 1, 1, 1, 1, false, NN_ACT_TANH),
		nt_plain(NN_LAYER_FLATTEN),
		nt_dense(2, NN_ACT_LINEAR),
	};

	(void) state;
	round_trip("cnn", nt_spec(3, 11, 9, 2, l, NT_NLAYERS(l)), 0);
}

static void
test_round_trip_batchnorm(void **state)
{
	nn_layer_spec img[] = {
		nt_conv(3, 3, 3, 1, 1, false, NN_ACT_RELU),
		nt_plain(NN_LAYER_BATCHNORM),
		nt_plain(NN_LAYER_GLOBAL_AVGPOOL),
		nt_plain(NN_LAYER_BATCHNORM),
		nt_dense(2, NN_ACT_LINEAR),
	};
	nn_layer_spec seq[] = {
		nt_plain(NN_LAYER_BATCHNORM),
		nt_plain(NN_LAYER_GLOBAL_MAXPOOL),
		nt_dense(2, NN_ACT_LINEAR),
	};
	nn_layer_spec img_max[] = {
		nt_plain(NN_LAYER_GLOBAL_MAXPOOL),
		nt_dense(2, NN_ACT_SIGMOID),
	};

	(void) state;
	round_trip("batchnorm", nt_spec(3, 6, 5, 2, img, NT_NLAYERS(img)), 0);
	round_trip("batchnorm_seq", nt_spec(2, 4, 3, 0, seq, NT_NLAYERS(seq)), 0);
	round_trip("global_max", nt_spec(3, 4, 3, 2, img_max, NT_NLAYERS(img_max)), 0);
}

static void
test_round_trip_embedding(void **state)
{
	nn_layer_spec l[] = {
		nt_embedding(9, 3), nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR),
	};
	nn_layer_spec r[] = {
		nt_embedding(7, 4), nt_rnn(NN_LAYER_LSTM, 3, false),
		nt_dense(2, NN_ACT_LINEAR),
	};

	(void) state;
	round_trip("embedding", nt_spec(1, 5, 0, 0, l, NT_NLAYERS(l)), 9);
	round_trip("embedding_lstm", nt_spec(1, 6, 0, 0, r, NT_NLAYERS(r)), 7);
}

static void
test_round_trip_recurrent(void **state)
{
	nn_layer_spec l[] = {
		nt_rnn(NN_LAYER_LSTM, 4, true), nt_rnn(NN_LAYER_GRU, 3, true),
		nt_rnn(NN_LAYER_SIMPLE_RNN, 2, false), nt_dense(2, NN_ACT_LINEAR),
	};
	nn_layer_spec g[] = {
		nt_rnn(NN_LAYER_GRU, 3, false), nt_dense(2, NN_ACT_LINEAR),
	};
	nn_layer_spec flat[] = {
		nt_reshape2(5, 2), nt_rnn(NN_LAYER_LSTM, 3, true),
		nt_plain(NN_LAYER_FLATTEN), nt_dense(2, NN_ACT_LINEAR),
	};

	(void) state;
	l[2].activation = NN_ACT_RELU;
	g[0].use_bias = false;
	round_trip("recurrent", nt_spec(2, 5, 3, 0, l, NT_NLAYERS(l)), 0);
	round_trip("gru", nt_spec(2, 4, 2, 0, g, NT_NLAYERS(g)), 0);
	round_trip("lstm_flat", nt_spec(1, 10, 0, 0, flat, NT_NLAYERS(flat)), 0);
}

/* Layers that export but do not import back (Mul, Sub, Div, Slice). */
static void
test_export_only(void **state)
{
	nn_layer_spec l[] = {
		nt_rescale(0.5f, 0.1f), nt_plain(NN_LAYER_NORMALIZE),
		nt_gaussian_noise(0.1f), nt_dense(2, NN_ACT_LINEAR),
	};
	nn_layer_spec crop[] = {
		nt_random_crop(2, 2), nt_plain(NN_LAYER_FLATTEN),
		nt_dense(2, NN_ACT_LINEAR),
	};
	nn_model_spec spec = nt_spec(1, 4, 0, 0, l, NT_NLAYERS(l));
	nn_model_spec cs = nt_spec(3, 3, 3, 1, crop, NT_NLAYERS(crop));
	nn_model   *m = nt_create(&spec, 1),
			   *m2;
	nn_error	err;
	uint8_t    *bytes;
	size_t		len;

	(void) state;
	assert_ok(nn_model_export_onnx(m, &bytes, &len, &nn_malloc_alloc, &err),
			  &err);
	keep_export("rescale_normalize", bytes, len);
	assert_status(nn_model_import_onnx(&m2, bytes, len, 0, &nn_malloc_alloc,
									   &err), NN_ERR_UNSUPPORTED, &err);
	assert_non_null(strstr(err.message, "\"Mul\""));
	free(bytes);
	nn_model_free(m);
	/* random_crop: its centre window as a Slice, which import does not map */
	m = nt_create(&cs, 1);
	assert_ok(nn_model_export_onnx(m, &bytes, &len, &nn_malloc_alloc, &err),
			  &err);
	keep_export("random_crop", bytes, len);
	assert_status(nn_model_import_onnx(&m2, bytes, len, 0, &nn_malloc_alloc,
									   &err), NN_ERR_UNSUPPORTED, &err);
	assert_non_null(strstr(err.message, "\"Slice\""));
	free(bytes);
	nn_model_free(m);
}

/* ---------- bad input ---------- */

/* The exported bytes of a small MLP. */
static uint8_t *
mlp_bytes(size_t *len)
{
	nn_layer_spec l[] = {nt_dense(4, NN_ACT_RELU), nt_dense(2, NN_ACT_LINEAR)};
	nn_model_spec spec = nt_spec(1, 3, 0, 0, l, NT_NLAYERS(l));
	nn_model   *m = nt_create(&spec, 1);
	nn_error	err;
	uint8_t    *bytes;

	assert_ok(nn_model_export_onnx(m, &bytes, len, &nn_malloc_alloc, &err),
			  &err);
	nn_model_free(m);
	return bytes;
}

/* Unpack, edit with fn, repack; then import and expect status want. */
static void
edited(void (*fn) (Onnx__ModelProto *), nn_status want, size_t max_bytes,
	   const char *needle)
{
	size_t		len;
	uint8_t    *bytes = mlp_bytes(&len);
	Onnx__ModelProto *pm = onnx__model_proto__unpack(NULL, len, bytes);
	uint8_t    *out;
	size_t		n;
	nn_model   *m = NULL;
	nn_error	err;

	assert_non_null(pm);
	if (fn)
		fn(pm);
	out = malloc(protobuf_c_message_get_packed_size(&pm->base));
	n = protobuf_c_message_pack(&pm->base, out);
	assert_status(nn_model_import_onnx(&m, out, n, max_bytes, &nn_malloc_alloc,
									   &err), want, &err);
	assert_null(m);
	if (!strstr(err.message, needle))
		fail_msg("\"%s\" does not name %s", err.message, needle);
	onnx__model_proto__free_unpacked(pm, NULL);
	free(bytes);
	free(out);
}

static void
edit_operator(Onnx__ModelProto *pm)
{
	/* protobuf-c's default allocator is malloc */
	free(pm->graph->node[1]->op_type);
	pm->graph->node[1]->op_type = strdup("Sin");
}

static void
edit_opset(Onnx__ModelProto *pm)
{
	pm->opset_import[0]->version = 7;
}

static void
edit_dynamic(Onnx__ModelProto *pm)
{
	Onnx__TensorShapeProto__Dimension *d =
		pm->graph->input[0]->type->tensor_type->shape->dim[1];

	d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
	d->dim_param = strdup("features");
}

static void
test_bad_input(void **state)
{
	static const uint8_t garbage[] = "\x08\x07\x12\xff\xff\xff\xff\x0f garbage";
	size_t		len;
	uint8_t    *bytes = mlp_bytes(&len);
	nn_model   *m = NULL;
	nn_error	err;

	(void) state;
	assert_status(nn_model_import_onnx(&m, garbage, sizeof(garbage), 0,
									   &nn_malloc_alloc, &err),
				  NN_ERR_CORRUPT, &err);
	for (size_t cut = 1; cut < len; cut += 7)
	{
		nn_status	st = nn_model_import_onnx(&m, bytes, cut, 0,
											  &nn_malloc_alloc, &err);

		assert_true(st != NN_OK);
		assert_null(m);
	}
	assert_status(nn_model_import_onnx(&m, bytes, len / 2, 0,
									   &nn_malloc_alloc, &err),
				  NN_ERR_CORRUPT, &err);
	free(bytes);
	edited(edit_operator, NN_ERR_UNSUPPORTED, 0, "\"Sin\"");
	edited(edit_opset, NN_ERR_UNSUPPORTED, 0, "opset version 7");
	edited(edit_dynamic, NN_ERR_DATA, 0, "\"input\"");
	edited(NULL, NN_ERR_LIMIT, 40, "bytes");
}

/* ---------- detection and speed ---------- */

static void
test_detect(void **state)
{
	nn_layer_spec l[] = {nt_dense(2, NN_ACT_LINEAR)};
	nn_model_spec spec = nt_spec(1, 3, 0, 0, l, 1);
	nn_model   *m = nt_create(&spec, 1);
	size_t		len;
	uint8_t    *own = nt_serialize(m, false, &len);
	uint8_t    *onnx = mlp_bytes(&len);

	(void) state;
	assert_false(nn_bytes_look_onnx(own, 64));
	assert_true(nn_bytes_look_onnx(onnx, len));
	assert_false(nn_bytes_look_onnx(onnx, 2));
	free(own);
	free(onnx);
	nn_model_free(m);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
test_wide_mlp_speed(void **state)
{
	nn_layer_spec l[] = {
		nt_dense(512, NN_ACT_RELU), nt_dense(512, NN_ACT_RELU),
		nt_dense(10, NN_ACT_SOFTMAX),
	};
	nn_model_spec spec = nt_spec(1, 784, 0, 0, l, NT_NLAYERS(l));
	nn_model   *m = nt_create(&spec, 5),
			   *m2;
	nn_error	err;
	uint8_t    *bytes;
	size_t		len;
	double		t0,
				t1,
				t2;

	(void) state;
	t0 = now_ms();
	assert_ok(nn_model_export_onnx(m, &bytes, &len, &nn_malloc_alloc, &err),
			  &err);
	t1 = now_ms();
	assert_ok(nn_model_import_onnx(&m2, bytes, len, 0, &nn_malloc_alloc, &err),
			  &err);
	t2 = now_ms();
	print_message("784-512-512-10 MLP (%zu bytes): export %.1f ms, import %.1f ms\n",
				  len, t1 - t0, t2 - t1);
	assert_memory_equal(nn_model_params(m2), nn_model_params(m),
						sizeof(float) * nt_flat_params(m));
	/* 100 ms each is the goal; sanitized builds run several times slower */
	assert_true(t1 - t0 < 1000 && t2 - t1 < 1000);
	free(bytes);
	nn_model_free(m);
	nn_model_free(m2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_mlp),
		cmocka_unit_test(test_fixture_cnn),
		cmocka_unit_test(test_fixture_bn_cnn),
		cmocka_unit_test(test_fixture_lstm),
		cmocka_unit_test(test_fixture_gru),
		cmocka_unit_test(test_fixture_embedding),
		cmocka_unit_test(test_round_trip_dense),
		cmocka_unit_test(test_round_trip_cnn),
		cmocka_unit_test(test_round_trip_batchnorm),
		cmocka_unit_test(test_round_trip_embedding),
		cmocka_unit_test(test_round_trip_recurrent),
		cmocka_unit_test(test_export_only),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_wide_mlp_speed),
	};

	return NT_RUN(tests);
}
