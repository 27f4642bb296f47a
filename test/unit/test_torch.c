/*
 * test_torch.c: the core against PyTorch reference values.
 *
 * test/fixtures/torch_v1.txt is written by test/fixtures/make_fixtures.py
 * (torch 1.13, float64 references from float32 inputs; the script documents
 * layouts, TensorFlow 'same' padding and where it writes the Keras rule out
 * instead of using torch's).  It is read at run time from $NNPG_FIXTURES
 * (the Makefile sets it), else from test/fixtures relative to the binary;
 * no torch is needed here.  The header line must be exactly
 * "nnpg-torch-fixtures 1".
 *
 * Each case loads its inputs and weights into a model, then compares:
 *   forward outputs        1e-5 absolute + 1e-5 relative
 *   loss                   1e-6 absolute + 1e-5 relative
 *   input and weight grads 1e-5 absolute + 1e-4 relative
 *   optimizer weights      1e-6 absolute + 1e-5 relative, after each of 3 steps
 * The recurrent layers (torch.nn.RNN/LSTM/GRU with Keras's gate order mapped
 * on, also the recurrent-kernel gradient), training-mode batchnorm (also
 * Keras's moving averages and the inference output with them) and
 * embedding (exact rows, table gradient) use the same tolerances.
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>

#include "nn_test.h"

#define FX_VERSION_LINE "nnpg-torch-fixtures 1"

typedef struct fx_tensor
{
	char		name[32];
	size_t		n;
	double	   *v;
} fx_tensor;

typedef struct fx_case
{
	char		name[64];
	int			n_meta;
	char		meta_k[32][32];
	double		meta_v[32];
	int			n_t;
	fx_tensor	t[40];
} fx_case;

static fx_case *cases;
static int	n_cases;
static char fixture_path[4096];

/* ---------- the fixture file ---------- */

static int
load_fixtures(void)
{
	FILE	   *f = fopen(fixture_path, "r");
	char		line[256];
	fx_case    *c = NULL;

	if (f == NULL)
	{
		print_error("cannot open fixtures \"%s\": %s\n", fixture_path,
					strerror(errno));
		return -1;
	}
	if (!fgets(line, sizeof(line), f) || strncmp(line, FX_VERSION_LINE,
												 strlen(FX_VERSION_LINE)) != 0 ||
		(line[strlen(FX_VERSION_LINE)] != '\n' && line[strlen(FX_VERSION_LINE)] != '\0'))
	{
		print_error("fixtures \"%s\": header is not \"%s\"\n", fixture_path,
					FX_VERSION_LINE);
		fclose(f);
		return -1;
	}
	cases = calloc(256, sizeof(fx_case));
	while (fscanf(f, "%255s", line) == 1)
	{
		if (line[0] == '#')
		{
			int			ch;

			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
		}
		else if (strcmp(line, "case") == 0)
		{
			if (n_cases == 256)
				break;
			c = &cases[n_cases++];
			if (fscanf(f, "%63s", c->name) != 1)
				break;
		}
		else if (strcmp(line, "meta") == 0 && c && c->n_meta < 32)
		{
			if (fscanf(f, "%31s %lf", c->meta_k[c->n_meta], &c->meta_v[c->n_meta]) != 2)
				break;
			c->n_meta++;
		}
		else if (strcmp(line, "tensor") == 0 && c && c->n_t < 40)
		{
			fx_tensor  *t = &c->t[c->n_t++];

			if (fscanf(f, "%31s %zu", t->name, &t->n) != 2)
				break;
			t->v = nt_xmalloc(sizeof(double) * (t->n ? t->n : 1));
			for (size_t i = 0; i < t->n; i++)
				if (fscanf(f, "%lf", &t->v[i]) != 1)
				{
					print_error("fixtures: tensor %s of case %s is short\n",
								t->name, c->name);
					fclose(f);
					return -1;
				}
		}
		else if (strcmp(line, "end") == 0)
			c = NULL;
		else
		{
			print_error("fixtures: unexpected \"%s\"\n", line);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return n_cases > 0 ? 0 : -1;
}

static const fx_case *
fx_get(const char *name)
{
	for (int i = 0; i < n_cases; i++)
		if (strcmp(cases[i].name, name) == 0)
			return &cases[i];
	fail_msg("fixture case \"%s\" is missing from %s", name, fixture_path);
	return NULL;
}

static double
fx_meta(const fx_case *c, const char *k)
{
	for (int i = 0; i < c->n_meta; i++)
		if (strcmp(c->meta_k[i], k) == 0)
			return c->meta_v[i];
	fail_msg("fixture case \"%s\" has no meta \"%s\"", c->name, k);
	return NAN;
}

static int
fx_int(const fx_case *c, const char *k)
{
	return (int) lround(fx_meta(c, k));
}

static const fx_tensor *
fx_find(const fx_case *c, const char *k)
{
	for (int i = 0; i < c->n_t; i++)
		if (strcmp(c->t[i].name, k) == 0)
			return &c->t[i];
	return NULL;
}

/* The tensor k of case c, which must hold n values. */
static const double *
fx_t(const fx_case *c, const char *k, size_t n)
{
	const fx_tensor *t = fx_find(c, k);

	if (t == NULL)
		fail_msg("fixture case \"%s\" has no tensor \"%s\"", c->name, k);
	if (t->n != n)
		fail_msg("fixture %s.%s has %zu values, expected %zu", c->name, k, t->n, n);
	return t->v;
}

/* Copy a fixture tensor into floats (inputs are float32-exact). */
static float *
fx_f(const fx_case *c, const char *k, size_t n)
{
	const double *v = fx_t(c, k, n);
	float	   *f = nt_xmalloc(sizeof(float) * n);

	for (size_t i = 0; i < n; i++)
		f[i] = (float) v[i];
	return f;
}

/* Set layer i's kernel and bias from fixture tensors (bias may be NULL). */
static void
set_layer(nn_model *m, int i, const fx_case *c, const char *kname,
		  const char *bname)
{
	int64_t		ko,
				kl,
				bo,
				bl;
	const double *k,
			   *b;

	nn_model_layer_params(m, i, &ko, &kl, &bo, &bl);
	k = fx_t(c, kname, kl);
	for (int64_t j = 0; j < kl; j++)
		nn_model_params(m)[ko + j] = (float) k[j];
	if (bname)
	{
		b = fx_t(c, bname, bl);
		for (int64_t j = 0; j < bl; j++)
			nn_model_params(m)[bo + j] = (float) b[j];
	}
	else
		assert_int_equal(bl, 0);
}

static char *
lbl(const fx_case *c, const char *what)
{
	static char buf[160];

	snprintf(buf, sizeof(buf), "torch %s: %s", c->name, what);
	return buf;
}

/*
 * Forward, loss, dx and parameter gradients of model m (parameters already
 * set) against case c.  grads lists (layer, tensor name, kernel?) triples.
 */
typedef struct grad_ref
{
	int			layer;
	const char *kname;
	const char *bname;
} grad_ref;

static void
check_case(nn_model *m, const fx_case *c, int32_t B, nn_loss_kind loss,
		   const float *cw, int32_t ncw, const grad_ref *g, int ng)
{
	size_t		in = nn_model_input_size(m),
				out = nn_model_output_size(m);
	float	   *x = fx_f(c, "x", B * in);
	float	   *y = nt_xmalloc(sizeof(float) * B * out);
	float	   *dx = nt_xmalloc(sizeof(float) * B * in);
	const fx_tensor *tt = fx_find(c, "target");
	float	   *t = fx_f(c, "target", tt ? tt->n : 0);
	double		ev = 0,
				tr = 0;
	int64_t		ev_c = 0,
				tr_c = 0;
	nn_error	err;
	nn_rng		rng;

	assert_ok(nn_model_prepare(m, B, false, 0, &err), &err);
	assert_ok(nn_model_predict(m, y, x, B, &err), &err);
	assert_close_fd(lbl(c, "forward"), y, fx_t(c, "y", B * out), B * out, 1e-5,
					1e-5);
	assert_ok(nn_model_evaluate_batch(m, NULL, x, t, B, loss, cw, ncw, &ev, &ev_c,
									  &err), &err);
	assert_scalar_close(lbl(c, "loss (evaluate)"), ev / B, fx_t(c, "loss", 1)[0],
						1e-6, 1e-5);
	{
		nn_optimizer_spec o;

		nn_optimizer_spec_init(&o, NN_OPT_SGD, 0.01f);
		assert_ok(nn_model_set_training(m, &o, loss, cw, ncw, &err), &err);
	}
	assert_ok(nn_model_prepare(m, B, true, 0, &err), &err);
	nn_rng_seed(&rng, 1);
	assert_ok(nn_model_compute_gradients(m, dx, x, t, B, &rng, &tr, &tr_c, &err),
			  &err);
	assert_scalar_close(lbl(c, "loss (compute_gradients)"), tr / B,
						fx_t(c, "loss", 1)[0], 1e-6, 1e-5);
	assert_close_fd(lbl(c, "input gradient"), dx, fx_t(c, "dx", B * in), B * in,
					1e-5, 1e-4);
	for (int i = 0; i < ng; i++)
	{
		int64_t		ko,
					kl,
					bo,
					bl;
		const float *gr = nn_model_grads(m);

		nn_model_layer_params(m, g[i].layer, &ko, &kl, &bo, &bl);
		assert_close_fd(lbl(c, g[i].kname), gr + ko, fx_t(c, g[i].kname, kl), kl,
						1e-5, 1e-4);
		if (g[i].bname)
			assert_close_fd(lbl(c, g[i].bname), gr + bo, fx_t(c, g[i].bname, bl),
							bl, 1e-5, 1e-4);
	}
	if (nn_loss_is_classification(loss))
	{
		int64_t		want = fx_int(c, "correct");

		if (ev_c != want || tr_c != want)
			fail_msg("%s: correct %lld / %lld, torch %lld", lbl(c, "accuracy"),
					 (long long) ev_c, (long long) tr_c, (long long) want);
	}
	free(x);
	free(y);
	free(dx);
	free(t);
}

/* ---------- cases ---------- */

static void
test_header(void **state)
{
	FILE	   *f = fopen(fixture_path, "r");
	char		line[128] = "";

	(void) state;
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_string_equal(line, FX_VERSION_LINE "\n");
	assert_true(n_cases >= 62);
}

static void
test_dense(void **state)
{
	const char *names[] = {"dense", "dense_nobias_batch1", "dense_wide"};

	(void) state;
	for (int i = 0; i < 3; i++)
	{
		const fx_case *c = fx_get(names[i]);
		bool		bias = fx_int(c, "bias");
		nn_layer_spec l[] = {bias ? nt_dense(fx_int(c, "units"), NN_ACT_LINEAR) :
		nt_dense_nobias(fx_int(c, "units"), NN_ACT_LINEAR)};
		nn_model_spec spec = nt_spec(1, fx_int(c, "in"), 0, 0, l, 1);
		nn_model   *m = nt_create(&spec, 1);
		grad_ref	g = {0, "dkernel", bias ? "dbias" : NULL};

		set_layer(m, 0, c, "kernel", bias ? "bias" : NULL);
		check_case(m, c, fx_int(c, "B"), NN_LOSS_MSE, NULL, 0, &g, 1);
		nn_model_free(m);
	}
}

static void
test_conv2d(void **state)
{
	const char *names[] = {"conv2d_valid", "conv2d_same", "conv2d_same_stride2",
		"conv2d_valid_stride2x1", "conv2d_same_even_kernel",
	"conv2d_1x1_image_same"};

	(void) state;
	for (int i = 0; i < 6; i++)
	{
		const fx_case *c = fx_get(names[i]);
		nn_layer_spec l[] = {nt_conv(fx_int(c, "F"), fx_int(c, "KH"),
									 fx_int(c, "KW"), fx_int(c, "SH"),
									 fx_int(c, "SW"), fx_int(c, "same"),
									 NN_ACT_LINEAR)};
		nn_model_spec spec = nt_spec(3, fx_int(c, "H"), fx_int(c, "W"),
									 fx_int(c, "C"), l, 1);
		nn_model   *m = nt_create(&spec, 1);
		grad_ref	g = {0, "dkernel", "dbias"};
		nn_layer_info info;

		nn_model_layer_info(m, 0, &info);
		assert_int_equal(info.shape[0], fx_int(c, "OH"));
		assert_int_equal(info.shape[1], fx_int(c, "OW"));
		set_layer(m, 0, c, "kernel", "bias");
		check_case(m, c, fx_int(c, "B"), NN_LOSS_MSE, NULL, 0, &g, 1);
		nn_model_free(m);
	}
}

static void
test_pools(void **state)
{
	const char *names[] = {"maxpool_valid", "maxpool_same_stride2",
		"maxpool_overlap", "avgpool_valid", "avgpool_same_stride2",
	"avgpool_same_2x3"};

	(void) state;
	for (int i = 0; i < 6; i++)
	{
		const fx_case *c = fx_get(names[i]);
		nn_layer_spec l[] = {nt_pool(fx_int(c, "max") ? NN_LAYER_MAXPOOL2D :
									 NN_LAYER_AVGPOOL2D, fx_int(c, "KH"),
									 fx_int(c, "KW"), fx_int(c, "SH"),
									 fx_int(c, "SW"), fx_int(c, "same"))};
		nn_model_spec spec = nt_spec(3, fx_int(c, "H"), fx_int(c, "W"),
									 fx_int(c, "C"), l, 1);
		nn_model   *m = nt_create(&spec, 1);
		nn_layer_info info;

		nn_model_layer_info(m, 0, &info);
		assert_int_equal(info.shape[0], fx_int(c, "OH"));
		assert_int_equal(info.shape[1], fx_int(c, "OW"));
		check_case(m, c, fx_int(c, "B"), NN_LOSS_MSE, NULL, 0, NULL, 0);
		nn_model_free(m);
	}
}

static void
test_activations(void **state)
{
	const char *names[] = {"act_linear", "act_relu", "act_leaky_relu", "act_elu",
		"act_sigmoid", "act_tanh", "act_softmax", "act_leaky_relu_alpha",
	"act_elu_alpha"};

	(void) state;
	for (int i = 0; i < 9; i++)
	{
		const fx_case *c = fx_get(names[i]);
		nn_layer_spec l[] = {nt_act((nn_activation) fx_int(c, "act"))};
		nn_model_spec spec;
		nn_model   *m;

		l[0].alpha = (float) fx_meta(c, "alpha");
		spec = nt_spec(1, fx_int(c, "K"), 0, 0, l, 1);
		m = nt_create(&spec, 1);
		check_case(m, c, fx_int(c, "B"), NN_LOSS_MSE, NULL, 0, NULL, 0);
		nn_model_free(m);
	}
}

static void
test_losses(void **state)
{
	(void) state;
	for (int i = 0; i < n_cases; i++)
	{
		const fx_case *c = &cases[i];
		nn_layer_spec l[1];
		nn_model_spec spec;
		nn_model   *m;
		const fx_tensor *w;
		float	   *cw = NULL;

		if (strncmp(c->name, "loss_", 5) != 0)
			continue;
		l[0] = nt_act((nn_activation) fx_int(c, "act"));
		spec = nt_spec(1, fx_int(c, "K"), 0, 0, l, 1);
		m = nt_create(&spec, 1);
		w = fx_find(c, "class_weights");
		if (w)
			cw = fx_f(c, "class_weights", w->n);
		check_case(m, c, fx_int(c, "B"), (nn_loss_kind) fx_int(c, "loss"), cw,
				   w ? (int32_t) w->n : 0, NULL, 0);
		free(cw);
		nn_model_free(m);
	}
}

/*
 * Distillation: the student is an activation layer on the logits x, the
 * teacher a dense layer (kernel from the case) on the same rows; loss and
 * input gradient of the combined objective against torch.
 */
static void
test_distill_torch(void **state)
{
	int			seen = 0;

	(void) state;
	for (int i = 0; i < n_cases; i++)
	{
		const fx_case *c = &cases[i];
		int32_t		B,
					K;
		nn_layer_spec sl[1],
					tl[1];
		nn_model_spec ss,
					ts;
		nn_model   *s,
				   *t;
		nn_optimizer_spec o;
		nn_error	err;
		float	   *x,
				   *y,
				   *dx,
				   *k;
		double		loss = 0.0;
		int64_t		correct = 0,
					ko,
					kl,
					bo,
					bl;

		if (strncmp(c->name, "distill_", 8) != 0)
			continue;
		seen++;
		B = fx_int(c, "B");
		K = fx_int(c, "K");
		sl[0] = nt_act((nn_activation) fx_int(c, "act"));
		tl[0] = nt_dense_nobias(K, (nn_activation) fx_int(c, "teacher_act"));
		ss = nt_spec(1, K, 0, 0, sl, 1);
		ts = nt_spec(1, K, 0, 0, tl, 1);
		s = nt_create(&ss, 1);
		t = nt_create(&ts, 1);
		nn_model_layer_params(t, 0, &ko, &kl, &bo, &bl);
		k = fx_f(c, "teacher_kernel", kl);
		memcpy(nn_model_params(t) + ko, k, sizeof(float) * kl);
		x = fx_f(c, "x", B * K);
		y = fx_f(c, "target", fx_find(c, "target")->n);
		dx = nt_xmalloc(sizeof(float) * B * K);
		nn_optimizer_spec_init(&o, NN_OPT_SGD, 0.01f);
		assert_ok(nn_model_set_training(s, &o, (nn_loss_kind) fx_int(c, "loss"),
										NULL, 0, &err), &err);
		assert_ok(nn_model_set_teacher(s, t, (float) fx_meta(c, "temperature"),
									   (float) fx_meta(c, "alpha"), &err), &err);
		assert_ok(nn_model_prepare(s, B, true, 0, &err), &err);
		assert_ok(nn_model_compute_gradients(s, dx, x, y, B, NULL, &loss,
											 &correct, &err), &err);
		assert_scalar_close(lbl(c, "loss"), loss / B, fx_t(c, "loss", 1)[0],
							1e-6, 1e-5);
		assert_close_fd(lbl(c, "input gradient"), dx, fx_t(c, "dx", B * K),
						B * K, 1e-5, 1e-4);
		free(k);
		free(x);
		free(y);
		free(dx);
		nn_model_free(s);
		nn_model_free(t);
	}
	assert_int_equal(seen, 5);
}

/* conv2d same stride 2 relu -> maxpool -> flatten -> dense softmax, sparse CE. */
static void
test_cnn_end_to_end(void **state)
{
	const fx_case *c = fx_get("cnn_end_to_end");
	nn_layer_spec l[] = {nt_conv(4, 3, 3, 2, 2, true, NN_ACT_RELU),
		nt_pool(NN_LAYER_MAXPOOL2D, 2, 2, 0, 0, false),
		nt_plain(NN_LAYER_FLATTEN),
	nt_dense(3, NN_ACT_SOFTMAX)};
	nn_model_spec spec = nt_spec(3, fx_int(c, "H"), fx_int(c, "W"), fx_int(c, "C"),
								 l, 4);
	nn_model   *m = nt_create(&spec, 1);
	grad_ref	g[2] = {{0, "dk1", "db1"}, {3, "dk2", "db2"}};

	(void) state;
	set_layer(m, 0, c, "k1", "b1");
	set_layer(m, 3, c, "k2", "b2");
	check_case(m, c, fx_int(c, "B"), NN_LOSS_SPARSE_CATEGORICAL_CE, NULL, 0, g, 2);
	nn_model_free(m);
}

static void
test_optimizers(void **state)
{
	(void) state;
	for (int i = 0; i < n_cases; i++)
	{
		const fx_case *c = &cases[i];
		nn_layer_spec l[1];
		nn_model_spec spec;
		nn_model   *m;
		nn_optimizer_spec o;
		int32_t		B;
		float	   *x,
				   *t;
		nn_error	err;
		int64_t		ko,
					kl,
					bo,
					bl;
		int			steps;

		if (strncmp(c->name, "opt_", 4) != 0)
			continue;
		B = fx_int(c, "B");
		l[0] = nt_dense(fx_int(c, "units"), NN_ACT_LINEAR);
		spec = nt_spec(1, fx_int(c, "in"), 0, 0, l, 1);
		m = nt_create(&spec, 1);
		set_layer(m, 0, c, "kernel", "bias");
		nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
		nn_optimizer_spec_init(&o, (nn_optimizer_kind) fx_int(c, "opt"),
							   (float) fx_meta(c, "lr"));
		if (o.kind == NN_OPT_MOMENTUM || o.kind == NN_OPT_NESTEROV)
			o.momentum = (float) fx_meta(c, "momentum");
		o.rho = (float) fx_meta(c, "rho");
		o.epsilon = (float) fx_meta(c, "epsilon");
		o.beta1 = (float) fx_meta(c, "beta1");
		o.beta2 = (float) fx_meta(c, "beta2");
		o.initial_accumulator = (float) fx_meta(c, "initial_accumulator");
		if (o.kind == NN_OPT_ADAMW)
			o.weight_decay = (float) fx_meta(c, "weight_decay");
		x = fx_f(c, "x", B * fx_int(c, "in"));
		t = fx_f(c, "target", B * fx_int(c, "units"));
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
		assert_ok(nn_model_prepare(m, B, true, 0, &err), &err);
		steps = fx_int(c, "steps");
		for (int s = 1; s <= steps; s++)
		{
			double		loss = 0;
			int64_t		correct = 0;
			char		k[32],
						b[32],
						ls[32];

			assert_ok(nn_model_train_batch(m, x, t, B, NULL, &loss, &correct, &err),
					  &err);
			snprintf(k, sizeof(k), "kernel_%d", s);
			snprintf(b, sizeof(b), "bias_%d", s);
			snprintf(ls, sizeof(ls), "loss_%d", s);
			assert_scalar_close(lbl(c, ls), loss / B, fx_t(c, ls, 1)[0], 1e-6, 1e-5);
			assert_close_fd(lbl(c, k), nn_model_params(m) + ko, fx_t(c, k, kl), kl,
							1e-6, 1e-5);
			assert_close_fd(lbl(c, b), nn_model_params(m) + bo, fx_t(c, b, bl), bl,
							1e-6, 1e-5);
		}
		free(x);
		free(t);
		nn_model_free(m);
	}
}


/* ---------- recurrent layers, batchnorm, embedding ---------- */

/* simple_rnn, lstm, gru: forward, loss, dx, kernel/recurrent/bias grads. */
static void
test_recurrent(void **state)
{
	static const struct
	{
		const char *name;
		nn_layer_kind kind;
	}			rc[] = {
		{"simple_rnn", NN_LAYER_SIMPLE_RNN},
		{"simple_rnn_seq_nobias", NN_LAYER_SIMPLE_RNN},
		{"lstm", NN_LAYER_LSTM},
		{"lstm_seq_batch1", NN_LAYER_LSTM},
		{"lstm_t1", NN_LAYER_LSTM},
		{"gru", NN_LAYER_GRU},
		{"gru_seq_nobias", NN_LAYER_GRU},
		{"gru_t1_batch1", NN_LAYER_GRU},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(rc) / sizeof(rc[0]); i++)
	{
		const fx_case *c = fx_get(rc[i].name);
		bool		bias = fx_int(c, "bias");
		nn_layer_spec l[1];
		nn_model_spec spec;
		nn_model   *m;
		grad_ref	g = {0, "dkernel", bias ? "dbias" : NULL};
		int64_t		ro,
					rl;
		const double *rv;

		l[0] = nt_rnn(rc[i].kind, fx_int(c, "units"), fx_int(c, "seq"));
		l[0].use_bias = bias;
		spec = nt_spec(2, fx_int(c, "T"), fx_int(c, "F"), 0, l, 1);
		m = nt_create(&spec, 1);
		set_layer(m, 0, c, "kernel", bias ? "bias" : NULL);
		nn_model_layer_recurrent(m, 0, &ro, &rl);
		rv = fx_t(c, "recurrent", rl);
		for (int64_t j = 0; j < rl; j++)
			nn_model_params(m)[ro + j] = (float) rv[j];
		check_case(m, c, fx_int(c, "B"), NN_LOSS_MSE, NULL, 0, &g, 1);
		assert_close_fd(lbl(c, "drecurrent"), nn_model_grads(m) + ro,
						fx_t(c, "drecurrent", rl), rl, 1e-5, 1e-4);
		nn_model_free(m);
	}
}

/*
 * batchnorm in training mode (batch statistics, full backward), Keras's
 * moving averages after the step, and inference with them.
 */
static void
test_batchnorm_torch(void **state)
{
	const char *names[] = {"batchnorm_flat", "batchnorm_image", "batchnorm_seq"};

	(void) state;
	for (int i = 0; i < 3; i++)
	{
		const fx_case *c = fx_get(names[i]);
		int32_t		B = fx_int(c, "B");
		nn_layer_spec l[1];
		nn_model_spec spec;
		nn_model   *m;
		size_t		in;
		float	   *x,
				   *t,
				   *y,
				   *dx;
		int64_t		ko,
					kl,
					bo,
					bl,
					correct = 0;
		int32_t		C;
		double		loss = 0;
		nn_error	err;
		nn_optimizer_spec o;
		const float *st;

		l[0] = nt_plain(NN_LAYER_BATCHNORM);
		if (i == 1)
			l[0].momentum = 0.9f;
		if (i == 2)
			l[0].epsilon = 0.01f;
		spec = nt_spec(fx_int(c, "rank"), fx_int(c, "d0"), fx_int(c, "d1"),
					   fx_int(c, "d2"), l, 1);
		m = nt_create(&spec, 1);
		in = nn_model_input_size(m);
		x = fx_f(c, "x", B * in);
		t = fx_f(c, "target", B * in);
		y = nt_xmalloc(sizeof(float) * B * in);
		dx = nt_xmalloc(sizeof(float) * B * in);
		set_layer(m, 0, c, "gamma", "beta");
		nn_optimizer_spec_init(&o, NN_OPT_SGD, 0.01f);
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
		assert_ok(nn_model_prepare(m, B, true, 0, &err), &err);
		assert_ok(nn_model_compute_gradients(m, dx, x, t, B, NULL, &loss,
											 &correct, &err), &err);
		assert_scalar_close(lbl(c, "loss"), loss / B, fx_t(c, "loss", 1)[0],
							1e-6, 1e-5);
		assert_close_fd(lbl(c, "dx"), dx, fx_t(c, "dx", B * in), B * in, 1e-5,
						1e-4);
		nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
		assert_close_fd(lbl(c, "dgamma"), nn_model_grads(m) + ko,
						fx_t(c, "dgamma", kl), kl, 1e-5, 1e-4);
		assert_close_fd(lbl(c, "dbeta"), nn_model_grads(m) + bo,
						fx_t(c, "dbeta", bl), bl, 1e-5, 1e-4);
		st = nn_model_layer_state(m, 0, &C);
		assert_int_equal(C, fx_int(c, "C"));
		assert_close_fd(lbl(c, "moving mean"), st, fx_t(c, "moving_mean", C), C,
						1e-6, 1e-5);
		assert_close_fd(lbl(c, "moving variance"), st + C,
						fx_t(c, "moving_var", C), C, 1e-6, 1e-5);
		assert_ok(nn_model_predict(m, y, x, B, &err), &err);
		assert_close_fd(lbl(c, "inference"), y, fx_t(c, "y_infer", B * in),
						B * in, 1e-5, 1e-5);
		nn_model_free(m);
		free(x);
		free(t);
		free(y);
		free(dx);
	}
}

/* embedding: looked-up rows, loss and the scattered table gradient. */
static void
test_embedding_torch(void **state)
{
	const char *names[] = {"embedding", "embedding_batch1"};

	(void) state;
	for (int i = 0; i < 2; i++)
	{
		const fx_case *c = fx_get(names[i]);
		int32_t		B = fx_int(c, "B"),
					T = fx_int(c, "T"),
					D = fx_int(c, "output_dim");
		nn_layer_spec l[] = {nt_embedding(fx_int(c, "input_dim"), D)};
		nn_model_spec spec = nt_spec(1, T, 0, 0, l, 1);
		nn_model   *m = nt_create(&spec, 1);
		float	   *x = fx_f(c, "x", B * T);
		float	   *t = fx_f(c, "target", B * T * D);
		float	   *y = nt_xmalloc(sizeof(float) * B * T * D);
		double		loss = 0;
		int64_t		correct = 0,
					ko,
					kl,
					bo,
					bl;
		nn_error	err;
		nn_optimizer_spec o;

		set_layer(m, 0, c, "kernel", NULL);
		assert_ok(nn_model_prepare(m, B, false, 0, &err), &err);
		assert_ok(nn_model_predict(m, y, x, B, &err), &err);
		/* exact rows, up to the fixture's 10 printed digits */
		assert_close_fd(lbl(c, "forward"), y, fx_t(c, "y", B * T * D), B * T * D,
						1e-10, 1e-8);
		nn_optimizer_spec_init(&o, NN_OPT_SGD, 0.01f);
		assert_ok(nn_model_set_training(m, &o, NN_LOSS_MSE, NULL, 0, &err), &err);
		assert_ok(nn_model_prepare(m, B, true, 0, &err), &err);
		assert_ok(nn_model_compute_gradients(m, NULL, x, t, B, NULL, &loss,
											 &correct, &err), &err);
		assert_scalar_close(lbl(c, "loss"), loss / B, fx_t(c, "loss", 1)[0],
							1e-6, 1e-5);
		nn_model_layer_params(m, 0, &ko, &kl, &bo, &bl);
		assert_close_fd(lbl(c, "dkernel"), nn_model_grads(m) + ko,
						fx_t(c, "dkernel", kl), kl, 1e-6, 1e-4);
		nn_model_free(m);
		free(x);
		free(t);
		free(y);
	}
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_dense),
		cmocka_unit_test(test_conv2d),
		cmocka_unit_test(test_pools),
		cmocka_unit_test(test_activations),
		cmocka_unit_test(test_losses),
		cmocka_unit_test(test_cnn_end_to_end),
		cmocka_unit_test(test_distill_torch),
		cmocka_unit_test(test_optimizers),
		cmocka_unit_test(test_recurrent),
		cmocka_unit_test(test_batchnorm_torch),
		cmocka_unit_test(test_embedding_torch),
	};
	const char *dir = getenv("NNPG_FIXTURES");
	int			rc;

	if (argc > 1)
		snprintf(fixture_path, sizeof(fixture_path), "%s", argv[1]);
	else if (dir)
		snprintf(fixture_path, sizeof(fixture_path), "%s/torch_v1.txt", dir);
	else
	{
		char		self[4096];

		snprintf(self, sizeof(self), "%s", argv[0]);
		/* test/unit/build/<variant>/test_torch -> test/fixtures */
		snprintf(fixture_path, sizeof(fixture_path),
				 "%s/../../../fixtures/torch_v1.txt", dirname(self));
	}
	if (load_fixtures() != 0)
	{
		fprintf(stderr, "test_torch: could not load %s\n", fixture_path);
		return 1;
	}
	rc = NT_RUN(tests);
	for (int i = 0; i < n_cases; i++)
		for (int j = 0; j < cases[i].n_t; j++)
			free(cases[i].t[j].v);
	free(cases);
	return rc;
}
