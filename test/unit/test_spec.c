/*
 * test_spec.c: spec validation, shapes and parameter counts, size limits
 * and allocation failures.
 *
 * - Every class of bad spec is NN_ERR_SPEC from nn_spec_check and from
 *   nn_model_create (which then allocates nothing), with err.layer set to
 *   the 0-based index of the culprit (-1 for model-level errors) and the
 *   1-based "layer N" in the message.
 * - The seed CNN of API.md has Keras's 93,322 parameters and shapes.
 * - max_bytes: over budget is NN_ERR_LIMIT before any allocation (counting
 *   allocator); sizes that overflow are rejected, never wrapped.
 * - An allocator failing at its k-th call, for every k over a whole model
 *   life (create, prepare, adapt, train, serialize, load, predict), gives
 *   NN_ERR_MEMORY at that step and leaks nothing.
 */
#include <limits.h>
#include <math.h>

#include "nn_test.h"

/* The seed CNN of API.md. */
static nn_layer_spec seed_cnn[9];

static nn_model_spec
seed_cnn_spec(void)
{
	seed_cnn[0] = nt_reshape3(28, 28, 1);
	seed_cnn[1] = nt_conv(32, 3, 3, 1, 1, false, NN_ACT_RELU);
	seed_cnn[2] = nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false);
	seed_cnn[3] = nt_conv(64, 3, 3, 1, 1, false, NN_ACT_RELU);
	seed_cnn[4] = nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false);
	seed_cnn[5] = nt_conv(64, 3, 3, 1, 1, false, NN_ACT_RELU);
	seed_cnn[6] = nt_plain(NN_LAYER_FLATTEN);
	seed_cnn[7] = nt_dense(64, NN_ACT_RELU);
	seed_cnn[8] = nt_dense(10, NN_ACT_SOFTMAX);
	return nt_spec(1, 784, 0, 0, seed_cnn, 9);
}

/* ---------- shapes and counts ---------- */

static void
test_seed_cnn_params(void **state)
{
	nn_model_spec spec = seed_cnn_spec();
	nn_model   *m = nt_create(&spec, 42);
	static const int32_t shapes[9][3] = {
		{28, 28, 1}, {26, 26, 32}, {13, 13, 32}, {11, 11, 64}, {5, 5, 64},
		{3, 3, 64}, {576, 0, 0}, {64, 0, 0}, {10, 0, 0}
	};
	static const int32_t ranks[9] = {3, 3, 3, 3, 3, 3, 1, 1, 1};
	/* Keras: kh kw c f + f for conv, in u + u for dense */
	static const int64_t params[9] = {0, 320, 0, 18496, 0, 36928, 0, 36928, 650};

	(void) state;
	assert_int_equal(nn_model_param_count(m), 93322);
	assert_int_equal(nt_flat_params(m), 93322);
	assert_int_equal(nn_model_input_size(m), 784);
	assert_int_equal(nn_model_output_size(m), 10);
	assert_int_equal(nn_model_output_activation(m), NN_ACT_SOFTMAX);
	for (int i = 0; i < 9; i++)
	{
		nn_layer_info info;

		nn_model_layer_info(m, i, &info);
		assert_int_equal(info.kind, seed_cnn[i].kind);
		assert_int_equal(info.rank, ranks[i]);
		for (int d = 0; d < ranks[i]; d++)
			assert_int_equal(info.shape[d], shapes[i][d]);
		assert_int_equal(info.params, params[i]);
	}
	nn_model_free(m);
}

/* Glorot-uniform kernels within sqrt(6 / (fan_in + fan_out)), zero biases. */
static void
test_initialisation(void **state)
{
	nn_model_spec spec = seed_cnn_spec();
	nn_model   *m = nt_create(&spec, 42);
	nn_model   *m2 = nt_create(&spec, 42);
	nn_model   *m3 = nt_create(&spec, 43);

	(void) state;
	for (int i = 0; i < 9; i++)
	{
		int64_t		ko,
					kl,
					bo,
					bl;
		double		fan_in,
					fan_out,
					limit,
					mx = 0,
					sum2 = 0;
		const float *p = nn_model_params(m);

		nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
		if (kl == 0)
			continue;
		if (seed_cnn[i].kind == NN_LAYER_CONV2D)
		{
			nn_layer_info prev;

			nn_model_layer_info(m, i - 1, &prev);
			fan_in = 9.0 * prev.shape[2];
			fan_out = 9.0 * seed_cnn[i].filters;
		}
		else
		{
			fan_in = (double) kl / seed_cnn[i].units;
			fan_out = seed_cnn[i].units;
		}
		limit = sqrt(6.0 / (fan_in + fan_out));
		for (int64_t j = 0; j < kl; j++)
		{
			mx = fmax(mx, fabs(p[ko + j]));
			sum2 += (double) p[ko + j] * p[ko + j];
		}
		assert_true(mx <= limit);
		assert_true(mx > 0.9 * limit);
		/* variance of U(-a, a) is a^2 / 3 */
		assert_true(fabs(sum2 / kl - limit * limit / 3) < 0.25 * limit * limit / 3);
		for (int64_t j = 0; j < bl; j++)
			assert_true(p[bo + j] == 0.0f);
	}
	assert_memory_equal(nn_model_params(m), nn_model_params(m2), 93322 * 4);
	assert_memory_not_equal(nn_model_params(m), nn_model_params(m3), 93322 * 4);
	nn_model_free(m);
	nn_model_free(m2);
	nn_model_free(m3);
}

/* Normalize layers count 2C + 1 as Keras (mean, variance, count). */
static void
test_normalize_param_count(void **state)
{
	nn_layer_spec l[] = {nt_plain(NN_LAYER_NORMALIZE),
	nt_conv(2, 1, 1, 1, 1, false, NN_ACT_LINEAR)};
	nn_model_spec spec = nt_spec(3, 4, 4, 3, l, 2);
	nn_model   *m = nt_create(&spec, 1);
	nn_layer_info info;

	(void) state;
	nn_model_layer_info(m, 0, &info);
	assert_int_equal(info.params, 7);
	assert_int_equal(nn_model_param_count(m), 7 + 8);
	assert_int_equal(nt_flat_params(m), 8);
	nn_model_free(m);
}

/*
 * Keras's parameter counts (model.summary()) of the new layers:
 * LSTM 4 (u (in + u) + u), GRU (reset_after) 3 (u (in + u) + 2 u),
 * SimpleRNN u (in + u) + u, BatchNormalization 4 C (2 C non-trainable),
 * Embedding input_dim output_dim, global pools 0.
 */
static void
test_sequence_param_counts(void **state)
{
	nn_layer_spec l[] = {nt_embedding(50, 8), nt_rnn(NN_LAYER_LSTM, 16, true),
		nt_rnn(NN_LAYER_GRU, 12, true), nt_rnn(NN_LAYER_SIMPLE_RNN, 7, true),
		nt_plain(NN_LAYER_BATCHNORM), nt_plain(NN_LAYER_GLOBAL_AVGPOOL),
	nt_dense(3, NN_ACT_SOFTMAX)};
	int64_t		want[] = {400, 4 * (16 * (8 + 16) + 16),
		3 * (12 * (16 + 12) + 2 * 12), 7 * (12 + 7) + 7, 4 * 7, 0, 7 * 3 + 3};
	nn_model_spec spec = nt_spec(1, 10, 0, 0, l, NT_NLAYERS(l));
	nn_model   *m = nt_create(&spec, 1);
	nn_layer_info info;
	int64_t		total = 0,
				off,
				len;

	(void) state;
	for (int i = 0; i < NT_NLAYERS(l); i++)
	{
		nn_model_layer_info(m, i, &info);
		if (info.params != want[i])
			fail_msg("layer %d: %lld parameters, Keras has %lld", i + 1,
					 (long long) info.params, (long long) want[i]);
		total += want[i];
	}
	assert_int_equal(nn_model_param_count(m), total);
	/* batchnorm's moving statistics are not trainable */
	assert_int_equal(nt_flat_params(m), total - 2 * 7);
	nn_model_layer_info(m, 1, &info);
	assert_int_equal(info.rank, 2);
	assert_int_equal(info.shape[0], 10);
	assert_int_equal(info.shape[1], 16);
	nn_model_layer_info(m, 5, &info);
	assert_int_equal(info.rank, 1);
	assert_int_equal(info.shape[0], 7);
	nn_model_layer_recurrent(m, 1, &off, &len);
	assert_int_equal(len, 16 * 64);
	nn_model_layer_recurrent(m, 6, &off, &len);
	assert_int_equal(off, -1);
	assert_int_equal(len, 0);
	nn_model_free(m);

	{
		/* without return_sequences, and without bias */
		nn_layer_spec l2[] = {nt_rnn(NN_LAYER_GRU, 5, false),
		nt_rnn(NN_LAYER_LSTM, 5, false)};
		nn_model_spec spec2 = nt_spec(2, 4, 3, 0, l2, 2);

		l2[1] = nt_reshape1(5);
		l2[1].kind = NN_LAYER_DENSE;
		l2[1] = nt_dense(1, NN_ACT_LINEAR);
		l2[0].use_bias = false;
		m = nt_create(&spec2, 1);
		nn_model_layer_info(m, 0, &info);
		assert_int_equal(info.params, 3 * 5 * (3 + 5));
		assert_int_equal(info.rank, 1);
		assert_int_equal(info.shape[0], 5);
		nn_model_free(m);
	}
}

/* Keras's initialisers of the recurrent, batchnorm and embedding layers. */
static void
test_sequence_init(void **state)
{
	nn_layer_spec l[] = {nt_rnn(NN_LAYER_LSTM, 6, true),
	nt_plain(NN_LAYER_BATCHNORM), nt_rnn(NN_LAYER_GRU, 4, false)};
	nn_model_spec spec = nt_spec(2, 5, 3, 0, l, 3);
	nn_model   *m = nt_create(&spec, 7);
	nn_model   *m2 = nt_create(&spec, 7);
	const float *p = nn_model_params(m);
	int64_t		ko,
				kl,
				bo,
				bl,
				ro,
				rl;
	int32_t		C;
	float	   *st;

	(void) state;
	assert_memory_equal(p, nn_model_params(m2), nt_flat_params(m) * 4);
	/* lstm: orthogonal rows of R (6, 24), forget bias 1, others 0 */
	nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
	nn_model_layer_recurrent(m, 0, &ro, &rl);
	assert_int_equal(kl, 3 * 24);
	assert_int_equal(rl, 6 * 24);
	assert_int_equal(bl, 24);
	assert_true(ko < ro && ro < bo);
	for (int i = 0; i < 6; i++)
		for (int j = 0; j < 6; j++)
		{
			double		d = 0.0;

			for (int k = 0; k < 24; k++)
				d += (double) p[ro + i * 24 + k] * p[ro + j * 24 + k];
			assert_true(fabs(d - (i == j ? 1.0 : 0.0)) < 1e-5);
		}
	for (int j = 0; j < 24; j++)
		assert_true(p[bo + j] == (j >= 6 && j < 12 ? 1.0f : 0.0f));
	for (int64_t j = 0; j < kl; j++)
		assert_true(fabsf(p[ko + j]) <= sqrtf(6.0f / (3 + 24)));
	/* batchnorm: gamma 1, beta 0, moving mean 0, variance 1 */
	nn_model_layer_params(m, 1, &ko, &kl, &bo, &bl);
	assert_int_equal(kl, 6);
	assert_int_equal(bl, 6);
	for (int j = 0; j < 6; j++)
		assert_true(p[ko + j] == 1.0f && p[bo + j] == 0.0f);
	st = nn_model_layer_state(m, 1, &C);
	assert_int_equal(C, 6);
	for (int j = 0; j < 6; j++)
		assert_true(st[j] == 0.0f && st[6 + j] == 1.0f);
	/* gru: (2, 3 u) bias, zeros */
	nn_model_layer_params(m, 2, &ko, &kl, &bo, &bl);
	assert_int_equal(bl, 24);
	nn_model_free(m);
	nn_model_free(m2);
	{
		nn_layer_spec e[] = {nt_embedding(30, 4)};
		nn_model_spec es = nt_spec(1, 3, 0, 0, e, 1);

		m = nt_create(&es, 3);
		nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
		assert_int_equal(kl, 120);
		assert_int_equal(bl, 0);
		for (int j = 0; j < 120; j++)
			assert_true(fabsf(nn_model_params(m)[ko + j]) <= 0.05f);
		nn_model_free(m);
	}
}

/* Keras's defaults, and pool strides resolved to the pool size. */
static void
test_spec_defaults(void **state)
{
	nn_layer_spec s;
	nn_layer_spec l[2];
	nn_model_spec spec;
	nn_model   *m;

	(void) state;
	nn_layer_spec_init(&s, NN_LAYER_CONV2D);
	assert_int_equal(s.strides[0], 1);
	assert_int_equal(s.strides[1], 1);
	assert_true(s.use_bias);
	assert_false(s.same_padding);
	assert_int_equal(s.activation, NN_ACT_LINEAR);
	nn_layer_spec_init(&s, NN_LAYER_MAXPOOL2D);
	assert_int_equal(s.kernel[0], 2);
	assert_int_equal(s.kernel[1], 2);
	nn_layer_spec_init(&s, NN_LAYER_RESCALE);
	assert_true(s.scale == 1.0f && s.offset == 0.0f);
	nn_layer_spec_init(&s, NN_LAYER_NORMALIZE);
	assert_true(s.epsilon == 1e-7f);
	nn_layer_spec_init(&s, NN_LAYER_BATCHNORM);
	assert_true(s.epsilon == 1e-3f && s.momentum == 0.99f);
	nn_layer_spec_init(&s, NN_LAYER_LSTM);
	assert_int_equal(s.activation, NN_ACT_TANH);
	assert_int_equal(s.recurrent_activation, NN_ACT_SIGMOID);
	assert_true(s.use_bias && !s.return_sequences);
	nn_layer_spec_init(&s, NN_LAYER_SIMPLE_RNN);
	assert_int_equal(s.activation, NN_ACT_TANH);
	assert_int_equal(s.recurrent_activation, NN_ACT_LINEAR);

	l[0] = nt_pool(NN_LAYER_AVGPOOL2D, 3, 2, 0, 0, false);
	l[1] = nt_plain(NN_LAYER_FLATTEN);
	spec = nt_spec(3, 9, 8, 1, l, 2);
	m = nt_create(&spec, 1);
	assert_int_equal(nn_model_get_spec(m)->layers[0].strides[0], 3);
	assert_int_equal(nn_model_get_spec(m)->layers[0].strides[1], 2);
	assert_int_equal(nn_model_output_size(m), 3 * 4);
	nn_model_free(m);

	/* augmentation layers */
	nn_layer_spec_init(&s, NN_LAYER_RANDOM_FLIP);
	assert_int_equal(s.mode, NN_FLIP_HORIZONTAL);
	nn_layer_spec_init(&s, NN_LAYER_RANDOM_TRANSLATION);
	assert_int_equal(s.fill_mode, NN_FILL_REFLECT);
	assert_true(s.fill_value == 0.0f && s.height_factor[0] == 0.0f &&
				s.width_factor[1] == 0.0f);
	nn_layer_spec_init(&s, NN_LAYER_RANDOM_ZOOM);
	assert_true(isnan(s.width_factor[0]) && isnan(s.width_factor[1]));
	assert_true(s.height_factor[0] == 0.0f && !signbit(s.height_factor[0]));
	nn_layer_spec_init(&s, NN_LAYER_RANDOM_BRIGHTNESS);
	assert_true(isnan(s.value_range[0]) && isnan(s.value_range[1]));
	/* kinds that do not take an option hold its unset value, 0 */
	nn_layer_spec_init(&s, NN_LAYER_DENSE);
	assert_true(s.mode == 0 && s.fill_mode == 0 && s.stddev == 0.0f &&
				s.width_factor[0] == 0.0f && s.value_range[1] == 0.0f &&
				s.height == 0 && s.width == 0);
	/* value_range resolves to [0, 1]; the zoom's width stays absent */
	l[0] = nt_random_brightness(-0.1f, 0.1f, NAN, NAN);
	l[1] = nt_random_zoom(-0.1f, 0.1f, NAN, NAN, NN_FILL_REFLECT, 0);
	spec = nt_spec(3, 4, 4, 1, l, 2);
	m = nt_create(&spec, 1);
	assert_true(nn_model_get_spec(m)->layers[0].value_range[0] == 0.0f &&
				nn_model_get_spec(m)->layers[0].value_range[1] == 1.0f);
	assert_true(isnan(nn_model_get_spec(m)->layers[1].width_factor[0]));
	nn_model_free(m);
}

/* The option rows of the new value types: names, ranges and messages. */
static void
test_augment_options(void **state)
{
	int32_t		n;
	const nn_kind_option *o = nn_layer_kind_options(NN_LAYER_RANDOM_ZOOM, &n);
	const nn_option *fill = NULL,
			   *hf = NULL,
			   *mode,
			   *vr;
	char		buf[160];

	(void) state;
	assert_int_equal(n, 4);
	for (int32_t i = 0; i < n; i++)
	{
		if (strcmp(nn_kind_option_name(&o[i]), "fill_mode") == 0)
			fill = o[i].option;
		if (strcmp(nn_kind_option_name(&o[i]), "height_factor") == 0)
		{
			hf = o[i].option;
			assert_true(o[i].required);
		}
		if (strcmp(nn_kind_option_name(&o[i]), "width_factor") == 0)
			assert_true(isnan(o[i].def) && !o[i].required);
	}
	assert_non_null(fill);
	assert_non_null(hf);
	assert_int_equal(fill->type, NN_VAL_CHOICE);
	assert_int_equal(fill->since, 3);
	assert_string_equal(nn_option_choice_name(fill, NN_FILL_REFLECT), "reflect");
	assert_string_equal(nn_option_choice_name(fill, NN_FILL_NEAREST), "nearest");
	assert_null(nn_option_choice_name(fill, 4));
	assert_null(nn_option_choice_name(fill, -1));
	assert_int_equal(nn_option_choice_index(fill, "wrap"), NN_FILL_WRAP);
	assert_int_equal(nn_option_choice_index(fill, "constant"), NN_FILL_CONSTANT);
	assert_int_equal(nn_option_choice_index(fill, "Wrap"), -1);
	assert_int_equal(nn_option_choice_index(fill, NULL), -1);
	nn_option_describe(buf, sizeof(buf), fill);
	assert_string_equal(buf, "\"reflect\", \"wrap\", \"constant\" or \"nearest\"");
	nn_option_describe(buf, sizeof(buf), hf);
	assert_string_equal(buf, "a number in [0, 1] or an array [lower, upper] of numbers >= -1, lower <= upper");

	o = nn_layer_kind_options(NN_LAYER_RANDOM_FLIP, &n);
	assert_int_equal(n, 1);
	mode = o[0].option;
	nn_option_describe(buf, sizeof(buf), mode);
	assert_string_equal(buf, "\"horizontal\", \"vertical\" or \"horizontal_and_vertical\"");
	assert_int_equal(nn_option_choice_index(mode, "horizontal_and_vertical"), NN_FLIP_BOTH);

	o = nn_layer_kind_options(NN_LAYER_RANDOM_BRIGHTNESS, &n);
	assert_int_equal(n, 2);
	nn_option_describe(buf, sizeof(buf), o[0].option);
	assert_string_equal(buf, "a number in [0, 1] or an array [lower, upper] of numbers in [-1, 1], lower <= upper");
	vr = o[1].option;
	assert_int_equal(vr->type, NN_VAL_RANGE);
	nn_option_describe(buf, sizeof(buf), vr);
	assert_string_equal(buf, "a non-negative number or an array [lower, upper] of finite numbers, lower <= upper");

	/* a number f sets the range [-f, f]; NaN makes it absent */
	{
		nn_layer_spec s;

		nn_layer_spec_init(&s, NN_LAYER_RANDOM_ZOOM);
		nn_option_set(&s, hf, 0.25);
		assert_true(s.height_factor[0] == -0.25f && s.height_factor[1] == 0.25f);
		assert_true(nn_option_get(&s, hf) == -0.25);
		assert_false(nn_option_absent(&s, hf));
		nn_option_set(&s, hf, 0);
		assert_false(signbit(s.height_factor[0]));
		nn_option_set(&s, hf, NAN);
		assert_true(nn_option_absent(&s, hf));
		assert_true(nn_option_floats(&s, hf) == s.height_factor);
	}
	/* the glue's "is required" comes from the table */
	o = nn_layer_kind_options(NN_LAYER_RANDOM_CROP, &n);
	assert_int_equal(n, 2);
	assert_true(o[0].required && o[1].required);
	assert_string_equal(nn_kind_option_name(&o[0]), "height");
	o = nn_layer_kind_options(NN_LAYER_GAUSSIAN_NOISE, &n);
	assert_true(n == 1 && o[0].required);
	assert_string_equal(nn_kind_option_name(&o[0]), "stddev");
}

/* The messages of the augmentation layers name the layer and option. */
static void
test_augment_messages(void **state)
{
	typedef struct msg_case
	{
		nn_layer_spec l;
		const char *needle;
	} msg_case;
	msg_case	cases[8];
	const msg_case *c;
	int			n = 0;

	(void) state;
	cases[n++] = (msg_case) {nt_random_translation(0, 0, -0.5f, 1.5f, NN_FILL_REFLECT, 0),
	"layer 1 (random_translation): \"width_factor\" bounds must be in [-1, 1], not [-0.5, 1.5]"};
	cases[n++] = (msg_case) {nt_random_zoom(-1, 0, NAN, NAN, NN_FILL_REFLECT, 0),
	"layer 1 (random_zoom): \"height_factor\" bounds must be above -1"};
	cases[n++] = (msg_case) {nt_random_crop(9, 2),
	"layer 1 (random_crop): \"height\" 9 is larger than the input's height 4"};
	cases[n++] = (msg_case) {nt_random_rotation(0.5f, 0.1f, NN_FILL_REFLECT, 0),
	"layer 1 (random_rotation): \"factor\" must be a number in [0, 1] or an array [lower, upper] of numbers in [-1, 1], lower <= upper, not [0.5, 0.1]"};
	cases[n++] = (msg_case) {nt_random_brightness(0, 0, 1, 1),
	"layer 1 (random_brightness): \"value_range\" must have its low below its high, not [1, 1]"};
	for (int i = 0; i < n; i++)
	{
		nn_model_spec spec;
		nn_error	err;

		c = &cases[i];
		spec = nt_spec(3, 4, 4, 1, (nn_layer_spec *) &c->l, 1);
		assert_status(nn_spec_check(&spec, &err), NN_ERR_SPEC, &err);
		if (strstr(err.message, c->needle) == NULL)
			fail_msg("message \"%s\" lacks \"%s\"", err.message, c->needle);
	}
	{
		nn_layer_spec l = nt_random_flip(NN_FLIP_BOTH);
		nn_model_spec spec = nt_spec(1, 16, 0, 0, &l, 1);
		nn_error	err;

		assert_status(nn_spec_check(&spec, &err), NN_ERR_SPEC, &err);
		assert_string_equal(err.message,
							"layer 1 (random_flip): input must be an image (height, width, channels), not of rank 1");
	}
}

static void
test_names(void **state)
{
	nn_layer_kind k;
	nn_activation a;
	nn_loss_kind l;
	nn_optimizer_kind o;

	(void) state;
	for (int i = 1; i <= NN_LAYER_KIND_MAX; i++)
	{
		assert_int_equal(nn_layer_kind_from_name(nn_layer_kind_name((nn_layer_kind) i), &k), 0);
		assert_int_equal(k, i);
	}
	for (int i = 0; i <= NN_ACT_MAX; i++)
	{
		assert_int_equal(nn_activation_from_name(nn_activation_name((nn_activation) i), &a), 0);
		assert_int_equal(a, i);
	}
	for (int i = 1; i <= NN_LOSS_MAX; i++)
	{
		assert_int_equal(nn_loss_from_name(nn_loss_name((nn_loss_kind) i), &l), 0);
		assert_int_equal(l, i);
	}
	for (int i = 1; i <= NN_OPT_MAX; i++)
	{
		assert_int_equal(nn_optimizer_from_name(nn_optimizer_name((nn_optimizer_kind) i), &o), 0);
		assert_int_equal(o, i);
	}
	/* the names of API.md */
	assert_string_equal(nn_layer_kind_name(NN_LAYER_MAXPOOL2D), "maxpool2d");
	assert_string_equal(nn_activation_name(NN_ACT_LEAKY_RELU), "leaky_relu");
	assert_string_equal(nn_loss_name(NN_LOSS_SPARSE_CATEGORICAL_CE),
						"sparse_categorical_crossentropy");
	assert_string_equal(nn_optimizer_name(NN_OPT_ADAMW), "adamw");
	assert_int_equal(nn_layer_kind_from_name("Dense", &k), -1);
	assert_int_equal(nn_layer_kind_from_name("", &k), -1);
	assert_int_equal(nn_layer_kind_from_name(NULL, &k), -1);
	assert_int_equal(nn_activation_from_name("gelu", &a), -1);
	assert_int_equal(nn_loss_from_name("bce", &l), -1);
	assert_int_equal(nn_optimizer_from_name("lbfgs", &o), -1);
	assert_string_equal(nn_layer_kind_name((nn_layer_kind) 0), "?");
	assert_string_equal(nn_layer_kind_name((nn_layer_kind) (NN_LAYER_KIND_MAX + 1)), "?");
	assert_string_equal(nn_layer_kind_name((nn_layer_kind) 18), "random_flip");
	assert_string_equal(nn_layer_kind_name(NN_LAYER_RANDOM_TRANSLATION),
						"random_translation");
	assert_string_equal(nn_layer_kind_name(NN_LAYER_RANDOM_BRIGHTNESS),
						"random_brightness");
	assert_string_equal(nn_layer_kind_name(NN_LAYER_GAUSSIAN_NOISE), "gaussian_noise");
	assert_int_equal(NN_LAYER_GAUSSIAN_NOISE, 25);
	assert_string_equal(nn_layer_kind_name(NN_LAYER_GRU), "gru");
	assert_string_equal(nn_layer_kind_name(NN_LAYER_GLOBAL_MAXPOOL),
						"global_maxpool");
	assert_string_equal(nn_activation_name((nn_activation) 7), "?");
	assert_true(nn_loss_sparse_target(NN_LOSS_SPARSE_CATEGORICAL_CE));
	assert_false(nn_loss_sparse_target(NN_LOSS_CATEGORICAL_CE));
	assert_true(nn_loss_is_classification(NN_LOSS_BINARY_CE));
	assert_false(nn_loss_is_classification(NN_LOSS_HUBER));
}

/* ---------- bad specs ---------- */

typedef struct bad_case
{
	const char *what;
	int32_t		rank,
				d0,
				d1,
				d2;
	int			n;
	nn_layer_spec l[3];
	int			layer;			/* expected err.layer */
} bad_case;

static void
expect_bad(const bad_case *c, nn_status want)
{
	nn_model_spec spec = nt_spec(c->rank, c->d0, c->d1, c->d2,
								 (nn_layer_spec *) c->l, c->n);
	nn_error	err;
	nn_model   *m = (nn_model *) &m;
	nt_counter	cnt;
	nn_alloc	a = nt_counter_alloc(&cnt, -1);
	nn_status	st;
	char		needle[32];

	memset(&err, 0, sizeof(err));
	st = nn_spec_check(&spec, &err);
	if (st != want)
		fail_msg("%s: nn_spec_check returned %d, expected %d (%s)", c->what,
				 (int) st, (int) want, err.message);
	if (err.layer != c->layer)
		fail_msg("%s: error names layer %d, expected %d (%s)", c->what, err.layer,
				 c->layer, err.message);
	if (err.message[0] == '\0')
		fail_msg("%s: empty message", c->what);
	if (c->layer >= 0)
	{
		snprintf(needle, sizeof(needle), "layer %d", c->layer + 1);
		if (strstr(err.message, needle) == NULL)
			fail_msg("%s: message does not say \"%s\": %s", c->what, needle,
					 err.message);
	}
	memset(&err, 0, sizeof(err));
	st = nn_model_create(&m, &spec, 1, 0, &a, &err);
	if (st != want || m != NULL || err.layer != c->layer)
		fail_msg("%s: nn_model_create returned %d, layer %d (%s)", c->what,
				 (int) st, err.layer, err.message);
	if (cnt.attempts != 0)
		fail_msg("%s: nn_model_create allocated %ld times for a bad spec",
				 c->what, cnt.attempts);
}

static nn_layer_spec
with_units(int32_t u)
{
	return nt_dense(u, NN_ACT_LINEAR);
}

static void
test_bad_specs(void **state)
{
	nn_layer_spec conv = nt_conv(2, 3, 3, 1, 1, false, NN_ACT_RELU);
	nn_layer_spec pool = nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false);
	nn_layer_spec flat = nt_plain(NN_LAYER_FLATTEN);
	nn_layer_spec d2 = nt_dense(2, NN_ACT_LINEAR);
	nn_layer_spec t;
	bad_case	cases[160];
	int			n = 0;

#define ADD(w, r, a, b, c, layer_, ...) \
	do { cases[n] = (bad_case) {w, r, a, b, c, 0, {__VA_ARGS__}, layer_}; \
		cases[n].n = (int) (sizeof((nn_layer_spec[]) {__VA_ARGS__}) / sizeof(nn_layer_spec)); \
		n++; } while (0)

	(void) state;
	ADD("dense units 0", 1, 4, 0, 0, 0, with_units(0));
	ADD("dense units -5", 1, 4, 0, 0, 1, d2, with_units(-5));
	ADD("dense on an image", 3, 4, 4, 1, 0, d2);
	ADD("dense after conv2d without flatten", 3, 5, 5, 1, 1, conv, d2);
	t = conv;
	t.filters = 0;
	ADD("conv2d filters 0", 3, 5, 5, 1, 0, t);
	t = conv;
	t.kernel[1] = 0;
	ADD("conv2d kernel width 0", 3, 5, 5, 1, 0, t);
	t = conv;
	t.kernel[0] = 4097;
	ADD("conv2d kernel 4097", 3, 5, 5, 1, 0, t);
	t = conv;
	t.kernel[0] = 6;
	ADD("conv2d kernel larger than the input (valid)", 3, 5, 5, 1, 0, t);
	ADD("conv2d kernel larger than the shrunk input", 3, 5, 5, 1, 2, conv, pool, conv);
	t = conv;
	t.strides[0] = 0;
	ADD("conv2d stride 0", 3, 5, 5, 1, 0, t);
	t = conv;
	t.strides[1] = 4097;
	ADD("conv2d stride 4097", 3, 5, 5, 1, 0, t);
	ADD("conv2d on a vector", 1, 25, 0, 0, 0, conv);
	ADD("conv2d after flatten", 3, 5, 5, 1, 1, flat, conv);
	t = pool;
	t.kernel[0] = 3;
	t.kernel[1] = 3;
	ADD("maxpool larger than the input", 3, 2, 5, 1, 0, t);
	t = pool;
	t.strides[0] = 0;
	t.strides[1] = 2;
	ADD("maxpool one stride 0", 3, 4, 4, 1, 0, t);
	t = nt_pool(NN_LAYER_AVGPOOL2D, 2, 2, -1, -1, false);
	ADD("avgpool negative strides", 3, 4, 4, 1, 0, t);
	t = nt_pool(NN_LAYER_AVGPOOL2D, 0, 2, 0, 0, false);
	ADD("avgpool pool height 0", 3, 4, 4, 1, 0, t);
	ADD("avgpool on a vector", 1, 16, 0, 0, 0, nt_pool(NN_LAYER_AVGPOOL2D, 2, 2, 0, 0, false));
	t = pool;
	t.activation = NN_ACT_RELU;
	ADD("maxpool with an activation", 3, 4, 4, 1, 0, t);
	ADD("reshape size mismatch", 1, 12, 0, 0, 0, nt_reshape3(2, 2, 2));
	t = nt_reshape1(12);
	t.shape_rank = 0;
	ADD("reshape rank 0", 1, 12, 0, 0, 0, t);
	t.shape_rank = 4;
	ADD("reshape rank 4", 1, 12, 0, 0, 0, t);
	ADD("reshape dimension 0", 1, 12, 0, 0, 0, nt_reshape3(12, 0, 1));
	ADD("reshape negative dimensions", 1, 12, 0, 0, 0, nt_reshape3(-2, -6, 1));
	ADD("reshape overflowing product", 1, 12, 0, 0, 0,
		nt_reshape3(INT32_MAX, INT32_MAX, INT32_MAX));
	ADD("dropout rate 1", 1, 4, 0, 0, 1, d2, nt_dropout(1.0f));
	ADD("dropout rate -0.1", 1, 4, 0, 0, 0, nt_dropout(-0.1f));
	ADD("dropout rate NaN", 1, 4, 0, 0, 0, nt_dropout(NAN));
	ADD("activation 7", 1, 4, 0, 0, 0, nt_act((nn_activation) 7));
	ADD("activation -1", 1, 4, 0, 0, 0, nt_act((nn_activation) -1));
	t = nt_dense(2, NN_ACT_LEAKY_RELU);
	t.alpha = -0.1f;
	ADD("alpha negative", 1, 4, 0, 0, 0, t);
	t.alpha = NAN;
	ADD("alpha NaN", 1, 4, 0, 0, 0, t);
	t = d2;
	t.l1 = -0.01f;
	ADD("l1 negative", 1, 4, 0, 0, 0, t);
	t = d2;
	t.l2 = INFINITY;
	ADD("l2 infinite", 1, 4, 0, 0, 0, t);
	ADD("rescale scale infinite", 1, 4, 0, 0, 0, nt_rescale(INFINITY, 0));
	ADD("rescale offset NaN", 1, 4, 0, 0, 0, nt_rescale(1, NAN));
	t = nt_plain(NN_LAYER_NORMALIZE);
	t.epsilon = 0;
	ADD("normalize epsilon 0", 1, 4, 0, 0, 0, t);
	t.epsilon = NAN;
	ADD("normalize epsilon NaN", 1, 4, 0, 0, 0, t);
	t = d2;
	t.kind = (nn_layer_kind) 0;
	ADD("layer kind 0", 1, 4, 0, 0, 0, t);
	t.kind = (nn_layer_kind) (NN_LAYER_KIND_MAX + 1);
	ADD("layer kind past the last", 1, 4, 0, 0, 1, d2, t);
	ADD("input rank 0", 0, 4, 0, 0, -1, d2);
	ADD("input rank 4", 4, 4, 1, 1, -1, d2);
	ADD("input dimension 0", 3, 4, 0, 1, -1, conv);
	ADD("input dimension negative", 1, -4, 0, 0, -1, d2);
	ADD("input size overflows", 3, INT32_MAX, INT32_MAX, INT32_MAX, 0, flat);
	ADD("flatten over 2^31 values", 3, 65536, 65536, 1, 0, flat);
	t = nt_conv(INT32_MAX, 4096, 4096, 1, 1, true, NN_ACT_LINEAR);
	ADD("conv2d kernel size overflows", 3, 4, 4, INT32_MAX, 0, t);
	/* sequence and normalisation layers */
	ADD("lstm units 0", 2, 4, 3, 0, 0, nt_rnn(NN_LAYER_LSTM, 0, false));
	ADD("gru units -1", 2, 4, 3, 0, 0, nt_rnn(NN_LAYER_GRU, -1, false));
	ADD("lstm on flat input", 1, 12, 0, 0, 0, nt_rnn(NN_LAYER_LSTM, 4, false));
	ADD("simple_rnn on an image", 3, 4, 4, 2, 0,
		nt_rnn(NN_LAYER_SIMPLE_RNN, 4, false));
	ADD("lstm after lstm without return_sequences", 2, 4, 3, 0, 1,
		nt_rnn(NN_LAYER_LSTM, 4, false), nt_rnn(NN_LAYER_LSTM, 4, false));
	ADD("dense after return_sequences", 2, 4, 3, 0, 1,
		nt_rnn(NN_LAYER_GRU, 4, true), d2);
	t = nt_rnn(NN_LAYER_LSTM, 4, false);
	t.activation = NN_ACT_SOFTMAX;
	ADD("lstm softmax activation", 2, 4, 3, 0, 0, t);
	t = nt_rnn(NN_LAYER_GRU, 4, false);
	t.recurrent_activation = (nn_activation) 9;
	ADD("gru recurrent activation 9", 2, 4, 3, 0, 0, t);
	t = nt_rnn(NN_LAYER_SIMPLE_RNN, 4, false);
	t.recurrent_activation = NN_ACT_SIGMOID;
	ADD("simple_rnn recurrent activation", 2, 4, 3, 0, 0, t);
	t = d2;
	t.recurrent_activation = NN_ACT_SIGMOID;
	ADD("dense recurrent activation", 1, 4, 0, 0, 0, t);
	ADD("embedding input_dim 0", 1, 4, 0, 0, 0, nt_embedding(0, 3));
	ADD("embedding output_dim 0", 1, 4, 0, 0, 0, nt_embedding(10, 0));
	ADD("embedding on a sequence", 2, 4, 3, 0, 0, nt_embedding(10, 3));
	ADD("embedding after dense", 1, 4, 0, 0, 1, nt_dense(4, NN_ACT_LINEAR),
		nt_embedding(10, 3));
	ADD("embedding table overflows", 1, 4, 0, 0, 0,
		nt_embedding(INT32_MAX, INT32_MAX));
	t = nt_plain(NN_LAYER_BATCHNORM);
	t.epsilon = 0.0f;
	ADD("batchnorm epsilon 0", 1, 4, 0, 0, 0, t);
	t = nt_plain(NN_LAYER_BATCHNORM);
	t.momentum = 1.5f;
	ADD("batchnorm momentum 1.5", 1, 4, 0, 0, 0, t);
	t.momentum = NAN;
	ADD("batchnorm momentum NaN", 1, 4, 0, 0, 0, t);
	ADD("global_avgpool on flat input", 1, 4, 0, 0, 0,
		nt_plain(NN_LAYER_GLOBAL_AVGPOOL));
	ADD("global_maxpool on flat input", 1, 4, 0, 0, 0,
		nt_plain(NN_LAYER_GLOBAL_MAXPOOL));
	t = nt_plain(NN_LAYER_GLOBAL_MAXPOOL);
	t.activation = NN_ACT_RELU;
	ADD("global_maxpool with an activation", 2, 4, 3, 0, 0, t);
	/* augmentation layers: images only, ranges, choices, windows */
	ADD("random_flip on a vector", 1, 12, 0, 0, 0, nt_random_flip(NN_FLIP_BOTH));
	ADD("random_rotation on a sequence", 2, 4, 3, 0, 0,
		nt_random_rotation(-0.1f, 0.1f, NN_FILL_REFLECT, 0));
	ADD("random_contrast after flatten", 3, 4, 4, 1, 1, flat,
		nt_random_contrast(-0.1f, 0.1f));
	ADD("random_brightness on a vector", 1, 4, 0, 0, 0,
		nt_random_brightness(-0.1f, 0.1f, NAN, NAN));
	ADD("random_crop on a vector", 1, 16, 0, 0, 0, nt_random_crop(2, 2));
	t = nt_random_flip(NN_FLIP_BOTH);
	t.mode = 3;
	ADD("random_flip mode 3", 3, 4, 4, 1, 0, t);
	t.mode = -1;
	ADD("random_flip mode -1", 3, 4, 4, 1, 0, t);
	ADD("random_translation lower above upper", 3, 4, 4, 1, 0,
		nt_random_translation(0.5f, 0.2f, 0, 0, NN_FILL_REFLECT, 0));
	ADD("random_translation height below -1", 3, 4, 4, 1, 0,
		nt_random_translation(-1.5f, 0, 0, 0, NN_FILL_REFLECT, 0));
	ADD("random_translation width above 1", 3, 4, 4, 1, 0,
		nt_random_translation(0, 0, 0, 1.5f, NN_FILL_REFLECT, 0));
	ADD("random_translation height NaN", 3, 4, 4, 1, 0,
		nt_random_translation(NAN, NAN, 0, 0, NN_FILL_REFLECT, 0));
	ADD("random_translation width infinite", 3, 4, 4, 1, 0,
		nt_random_translation(0, 0, 0, INFINITY, NN_FILL_REFLECT, 0));
	ADD("random_translation fill_mode 4", 3, 4, 4, 1, 0,
		nt_random_translation(0, 0, 0, 0, (nn_fill_mode) 4, 0));
	ADD("random_translation fill_value NaN", 3, 4, 4, 1, 0,
		nt_random_translation(0, 0, 0, 0, NN_FILL_CONSTANT, NAN));
	ADD("random_rotation factor above 1", 3, 4, 4, 1, 0,
		nt_random_rotation(0, 1.5f, NN_FILL_REFLECT, 0));
	ADD("random_rotation factor reversed", 3, 4, 4, 1, 0,
		nt_random_rotation(0.2f, -0.2f, NN_FILL_REFLECT, 0));
	ADD("random_zoom height -1", 3, 4, 4, 1, 0,
		nt_random_zoom(-1, 0, NAN, NAN, NN_FILL_REFLECT, 0));
	ADD("random_zoom width -1", 3, 4, 4, 1, 0,
		nt_random_zoom(-0.5f, 0, -1, 0, NN_FILL_REFLECT, 0));
	ADD("random_zoom width half absent", 3, 4, 4, 1, 0,
		nt_random_zoom(-0.5f, 0, NAN, 0.5f, NN_FILL_REFLECT, 0));
	ADD("random_zoom height absent", 3, 4, 4, 1, 0,
		nt_random_zoom(NAN, NAN, NAN, NAN, NN_FILL_REFLECT, 0));
	ADD("random_crop height 0", 3, 4, 4, 1, 0, nt_random_crop(0, 2));
	ADD("random_crop width -1", 3, 4, 4, 1, 0, nt_random_crop(2, -1));
	ADD("random_crop taller than the image", 3, 4, 5, 1, 0, nt_random_crop(5, 2));
	ADD("random_crop wider than the image", 3, 4, 5, 1, 1,
		nt_random_flip(NN_FLIP_BOTH), nt_random_crop(4, 6));
	ADD("random_contrast factor below -1", 3, 4, 4, 1, 0,
		nt_random_contrast(-1.5f, 0.5f));
	ADD("random_brightness factor above 1", 3, 4, 4, 1, 0,
		nt_random_brightness(0, 2, NAN, NAN));
	ADD("random_brightness value_range empty", 3, 4, 4, 1, 0,
		nt_random_brightness(-0.1f, 0.1f, 1, 1));
	ADD("random_brightness value_range reversed", 3, 4, 4, 1, 0,
		nt_random_brightness(-0.1f, 0.1f, 1, 0));
	ADD("random_brightness value_range infinite", 3, 4, 4, 1, 0,
		nt_random_brightness(-0.1f, 0.1f, 0, INFINITY));
	ADD("gaussian_noise stddev -1", 1, 4, 0, 0, 0, nt_gaussian_noise(-1));
	ADD("gaussian_noise stddev NaN", 1, 4, 0, 0, 0, nt_gaussian_noise(NAN));
	t = d2;
	t.stddev = 0.1f;
	ADD("dense with a stddev", 1, 4, 0, 0, 0, t);
	t = d2;
	t.fill_mode = NN_FILL_WRAP;
	ADD("dense with a fill_mode", 1, 4, 0, 0, 0, t);
	t = nt_random_flip(NN_FLIP_BOTH);
	t.factor[1] = 0.5f;
	ADD("random_flip with a factor", 3, 4, 4, 1, 0, t);
	t = nt_random_rotation(-0.1f, 0.1f, NN_FILL_REFLECT, 0);
	t.height_factor[0] = NAN;
	t.height_factor[1] = NAN;
	ADD("random_rotation with an absent height_factor", 3, 4, 4, 1, 0, t);
	t = nt_random_crop(2, 2);
	t.rate = 0.5f;
	ADD("random_crop with a rate", 3, 4, 4, 1, 0, t);
#undef ADD
	for (int i = 0; i < n; i++)
		expect_bad(&cases[i], NN_ERR_SPEC);

	/* model-level: layer counts */
	{
		nn_layer_spec many[257];
		bad_case	c;
		nn_model_spec spec;
		nn_error	err;

		for (int i = 0; i < 257; i++)
			many[i] = nt_plain(NN_LAYER_FLATTEN);
		spec = nt_spec(1, 4, 0, 0, many, 257);
		assert_status(nn_spec_check(&spec, &err), NN_ERR_SPEC, &err);
		assert_int_equal(err.layer, -1);
		spec.n_layers = 0;
		assert_status(nn_spec_check(&spec, &err), NN_ERR_SPEC, &err);
		spec.n_layers = 256;
		assert_ok(nn_spec_check(&spec, &err), &err);
		(void) c;
	}
}

/* ---------- size limits ---------- */

static void
test_create_over_budget(void **state)
{
	nn_model_spec spec = seed_cnn_spec();
	/* parameters, gradients and two optimizer slots */
	size_t		need = (size_t) 93322 * 4 * sizeof(float);
	nt_counter	c;
	nn_alloc	a = nt_counter_alloc(&c, -1);
	nn_model   *m = NULL;
	nn_error	err;

	(void) state;
	assert_status(nn_model_create(&m, &spec, 1, need - 1, &a, &err),
				  NN_ERR_LIMIT, &err);
	assert_null(m);
	assert_int_equal(err.layer, -1);
	assert_int_equal(c.live_bytes, 0);
	if (c.attempts != 0)
		fail_msg("nn_model_create allocated %ld times (%zu bytes at the peak) "
				 "before finding the weights over the limit", c.attempts,
				 c.peak_bytes);
	assert_ok(nn_model_create(&m, &spec, 1, need, &a, &err), &err);
	nn_model_free(m);
	assert_int_equal(c.live_bytes, 0);
}

static void
test_huge_dims(void **state)
{
	nn_layer_spec dense = nt_dense(INT32_MAX, NN_ACT_LINEAR);
	nn_layer_spec l[1];
	nn_model_spec spec;
	nt_counter	c;
	nn_alloc	a = nt_counter_alloc(&c, -1);
	nn_model   *m = NULL;
	nn_error	err;
	nn_status	st;

	(void) state;
	/* 2^62 weights: over any limit, or too many, never a wrapped size */
	l[0] = dense;
	spec = nt_spec(1, INT32_MAX, 0, 0, l, 1);
	st = nn_model_create(&m, &spec, 1, 0, &a, &err);
	if (st != NN_ERR_LIMIT)
		fail_msg("2^62 weights: status %d (%s)", (int) st, err.message);
	assert_null(m);
	assert_true(c.max_single < ((size_t) 1 << 20));
	assert_int_equal(c.live_bytes, 0);
	st = nn_model_create(&m, &spec, 1, (size_t) 1 << 30, &a, &err);
	assert_int_equal(st, NN_ERR_LIMIT);
	assert_true(c.max_single < ((size_t) 1 << 20));

	/* a conv2d kernel of 4096 x 4096 x 65535 x 65535 weights */
	l[0] = nt_conv(65535, 4096, 4096, 1, 1, true, NN_ACT_LINEAR);
	spec = nt_spec(3, 4096, 4096, 65535, l, 1);
	st = nn_model_create(&m, &spec, 1, (size_t) 1 << 30, &a, &err);
	if (st != NN_ERR_LIMIT && st != NN_ERR_SPEC)
		fail_msg("huge conv2d: status %d (%s)", (int) st, err.message);
	assert_true(c.max_single < ((size_t) 1 << 20));
	assert_int_equal(c.live_bytes, 0);
}

/* prepare over budget: NN_ERR_LIMIT, nothing allocated, still usable. */
static void
test_prepare_over_budget(void **state)
{
	nn_model_spec spec = seed_cnn_spec();
	nt_counter	c;
	nn_alloc	a = nt_counter_alloc(&c, -1);
	nn_model   *m = NULL;
	nn_error	err;
	long		before;
	float	   *x = calloc(784, sizeof(float));
	float		y[10];

	(void) state;
	assert_ok(nn_model_create(&m, &spec, 1, 0, &a, &err), &err);
	before = c.attempts;
	assert_status(nn_model_prepare(m, 1000, true, 1 << 20, &err), NN_ERR_LIMIT,
				  &err);
	assert_int_equal(c.attempts, before);
	assert_status(nn_model_prepare(m, 64, false, 1 << 20, &err), NN_ERR_LIMIT,
				  &err);
	assert_int_equal(c.attempts, before);
	assert_status(nn_model_prepare(m, INT32_MAX, true, (size_t) 1 << 30, &err),
				  NN_ERR_LIMIT, &err);
	assert_int_equal(c.attempts, before);
	assert_ok(nn_model_prepare(m, 2, false, 4 << 20, &err), &err);
	assert_ok(nn_model_predict(m, y, x, 1, &err), &err);
	nn_model_free(m);
	assert_int_equal(c.live_bytes, 0);
	free(x);
}

static void
test_prepare_overflow_without_weights(void **state)
{
	nn_layer_spec l[2];
	nn_model_spec spec;
	nn_model   *m;
	nn_error	err;

	(void) state;
	/*
	 * Two rescales of 2^31 - 1 floats: at a batch of 2^31 - 1 their output
	 * buffers add up to more than 2^64 bytes.  Sizes that overflow size_t
	 * are a limit even without a budget, never a wrapped allocation.
	 */
	l[0] = nt_rescale(2.0f, 0.0f);
	l[1] = nt_rescale(2.0f, 0.0f);
	spec = nt_spec(1, INT32_MAX, 0, 0, l, 2);
	m = nt_create(&spec, 1);
	assert_status(nn_model_prepare(m, INT32_MAX, false, 0, &err), NN_ERR_LIMIT,
				  &err);
	assert_status(nn_model_prepare(m, INT32_MAX, true, 0, &err), NN_ERR_LIMIT,
				  &err);
	nn_model_free(m);
}

/* ---------- allocation failures ---------- */

/* A whole model life; returns the first failing status and the step. */
static nn_status
life(const nn_alloc *a, int *step, nn_error *err, int variant)
{
	bool		sequence = variant == 1;

	static nn_layer_spec l[8];
	nn_model_spec spec;
	nn_model   *m = NULL,
			   *r = NULL;
	nn_status	st;
	float		x[6 * 48],
				y[6];
	float		out[6 * 3];
	float		cw[3] = {1, 2, 3};
	nn_rng		rng;
	nn_optimizer_spec o;
	double		loss = 0;
	int64_t		correct = 0;
	uint8_t    *buf = NULL;
	size_t		len = 0;

	l[0] = nt_plain(NN_LAYER_NORMALIZE);
	l[1] = nt_conv(2, 3, 3, 1, 1, true, NN_ACT_RELU);
	l[2] = nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false);
	l[3] = nt_dropout(0.3f);
	l[4] = nt_plain(NN_LAYER_FLATTEN);
	l[5] = nt_dense(4, NN_ACT_TANH);
	l[6] = nt_dense(3, NN_ACT_SOFTMAX);
	spec = nt_spec(3, 4, 4, 3, l, 7);
	nn_rng_seed(&rng, 5);
	nt_fill(x, 6 * 48, &rng, -1, 1);
	if (sequence)
	{
		/* ids (48) -> (48, 3) -> lstm (48, 4) -> batchnorm -> gru (3) -> dense */
		l[0] = nt_rescale(1.0f, 0.0f);
		l[1] = nt_embedding(5, 3);
		l[2] = nt_rnn(NN_LAYER_LSTM, 4, true);
		l[3] = nt_plain(NN_LAYER_BATCHNORM);
		l[4] = nt_rnn(NN_LAYER_GRU, 3, false);
		l[5] = nt_dense(3, NN_ACT_SOFTMAX);
		spec = nt_spec(1, 48, 0, 0, l, 6);
		for (int i = 0; i < 6 * 48; i++)
			x[i] = (float) nn_rng_below(&rng, 5);
	}
	if (variant == 2)
	{
		/* (4, 4, 3) -> augmentation -> crop (3, 3, 3) -> conv -> dense */
		l[0] = nt_random_flip(NN_FLIP_BOTH);
		l[1] = nt_random_translation(-0.2f, 0.2f, -0.2f, 0.2f, NN_FILL_REFLECT, 0);
		l[2] = nt_random_crop(3, 3);
		l[3] = nt_random_contrast(-0.2f, 0.2f);
		l[4] = nt_gaussian_noise(0.1f);
		l[5] = nt_conv(2, 2, 2, 1, 1, false, NN_ACT_RELU);
		l[6] = nt_plain(NN_LAYER_FLATTEN);
		l[7] = nt_dense(3, NN_ACT_SOFTMAX);
		spec = nt_spec(3, 4, 4, 3, l, 8);
	}
	for (int i = 0; i < 6; i++)
		y[i] = (float) (i % 3);
	nn_optimizer_spec_init(&o, NN_OPT_ADAM, 0.01f);

#define STEP(n, call) do { *step = (n); if ((st = (call)) != NN_OK) goto out; } while (0)
	STEP(1, nn_model_create(&m, &spec, 1, 0, a, err));
	STEP(2, nn_model_prepare(m, 6, true, 0, err));
	if (!sequence)
	{
		STEP(3, nn_model_adapt_batch(m, x, 6, err));
		STEP(4, nn_model_adapt_finish(m, err));
	}
	STEP(5, nn_model_set_training(m, &o, NN_LOSS_SPARSE_CATEGORICAL_CE, cw, 3, err));
	STEP(6, nn_model_train_batch(m, x, y, 6, &rng, &loss, &correct, err));
	len = nn_model_serialized_size(m, true);
	buf = malloc(len);
	STEP(7, nn_model_serialize(m, buf, len, true, test_crc32c, err));
	STEP(8, nn_model_deserialize(&r, buf, len, 0, a, test_crc32c, err));
	STEP(9, nn_model_prepare(r, 3, false, 0, err));
	STEP(10, nn_model_predict(r, out, x, 3, err));
	STEP(11, nn_model_prepare(r, 6, true, 0, err));
	STEP(12, nn_model_train_batch(r, x, y, 6, &rng, &loss, &correct, err));
	*step = 0;
#undef STEP
out:
	nn_model_free(m);
	nn_model_free(r);
	free(buf);
	return st;
}

static void
every_allocation_failure(int variant)
{
	nt_counter	c;
	nn_alloc	a = nt_counter_alloc(&c, -1);
	nn_error	err;
	int			step;
	long		total;

	assert_ok(life(&a, &step, &err, variant), &err);
	assert_int_equal(step, 0);
	assert_int_equal(c.live_bytes, 0);
	assert_int_equal(c.allocs, c.frees);
	total = c.attempts;
	assert_true(total > 20);
	for (long k = 0; k < total; k++)
	{
		nn_status	st;

		a = nt_counter_alloc(&c, k);
		memset(&err, 0, sizeof(err));
		st = life(&a, &step, &err, variant);
		if (c.failed != 1)
			fail_msg("allocation %ld of %ld was never made", k, total);
		if (st != NN_ERR_MEMORY)
			fail_msg("allocation %ld of %ld failed in step %d: status %d (%s), "
					 "expected NN_ERR_MEMORY", k, total, step, (int) st,
					 err.message);
		if (err.status != NN_ERR_MEMORY || err.message[0] == '\0')
			fail_msg("allocation %ld: error not filled in (%d, \"%s\")", k,
					 (int) err.status, err.message);
		if (c.live_bytes != 0 || c.allocs != c.frees)
			fail_msg("allocation %ld failed in step %d: %zu bytes in %ld blocks leaked",
					 k, step, c.live_bytes, c.allocs - c.frees);
	}
	print_message("%ld allocations, each failed once: NN_ERR_MEMORY, no leak\n",
				  total);
}

static void
test_every_allocation_failure(void **state)
{
	(void) state;
	every_allocation_failure(0);
}

/* The same with embedding, lstm, batchnorm and gru layers. */
static void
test_every_allocation_failure_sequence(void **state)
{
	(void) state;
	every_allocation_failure(1);
}

/* The same with augmentation layers (their work buffers, when training). */
static void
test_every_allocation_failure_augment(void **state)
{
	(void) state;
	every_allocation_failure(2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_cnn_params),
		cmocka_unit_test(test_initialisation),
		cmocka_unit_test(test_normalize_param_count),
		cmocka_unit_test(test_spec_defaults),
		cmocka_unit_test(test_sequence_param_counts),
		cmocka_unit_test(test_sequence_init),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_augment_options),
		cmocka_unit_test(test_augment_messages),
		cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_create_over_budget),
		cmocka_unit_test(test_huge_dims),
		cmocka_unit_test(test_prepare_over_budget),
		cmocka_unit_test(test_prepare_overflow_without_weights),
		cmocka_unit_test(test_every_allocation_failure),
		cmocka_unit_test(test_every_allocation_failure_sequence),
		cmocka_unit_test(test_every_allocation_failure_augment),
	};

	return NT_RUN(tests);
}
