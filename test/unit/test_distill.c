/*
 * test_distill.c: knowledge distillation in the core.  The combined loss's
 * parameter gradients against central differences through a two-layer
 * student, the teacher reading the student's augmented batch, and the
 * checks of nn_model_set_teacher.  (Values against PyTorch: test_torch.)
 */
#include "nn_test.h"
#include "nn_internal.h"

#include <string.h>

#define IN 6
#define K 3
#define BATCH 5

static nn_model *
student(nn_layer_spec *l, int32_t n, nn_loss_kind loss)
{
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, n);
	nn_model   *m = nt_create(&spec, 21);
	nn_optimizer_spec o;
	nn_error	err;

	nn_optimizer_spec_init(&o, NN_OPT_SGD, 0.01f);
	assert_ok(nn_model_set_training(m, &o, loss, NULL, 0, &err), &err);
	return m;
}

static nn_model *
teacher(nn_activation last)
{
	nn_layer_spec l[] = {nt_dense(8, NN_ACT_RELU), nt_dense(K, last)};
	nn_model_spec spec = nt_spec(1, IN, 0, 0, l, 2);

	return nt_create(&spec, 99);
}

static void
data(float *x, float *y)
{
	nn_rng		rng;

	nn_rng_seed(&rng, 8);
	nt_fill(x, IN * BATCH, &rng, -1.0f, 1.0f);
	for (int r = 0; r < BATCH; r++)
		y[r] = (float) ((r * 2) % K);
}

/* Parameter gradients of the distillation objective, T 2.5, alpha 0.3. */
static void
test_gradients(void **state)
{
	nn_layer_spec l[] = {nt_dense(5, NN_ACT_TANH), nt_dense(K, NN_ACT_SOFTMAX)};
	nn_model   *s = student(l, 2, NN_LOSS_SPARSE_CATEGORICAL_CE);
	nn_model   *t = teacher(NN_ACT_SOFTMAX);
	nt_fd_opts	o = nt_fd_default();
	float		x[IN * BATCH],
				y[BATCH];
	nn_error	err;

	(void) state;
	data(x, y);
	/* the teacher's output depends on x too: a constant target only for
	 * the parameters */
	o.skip_input = true;
	assert_ok(nn_model_set_teacher(s, t, 2.5f, 0.3f, &err), &err);
	assert_ok(nn_model_prepare(s, BATCH, true, 0, &err), &err);
	assert_true(nt_gradcheck("dense tanh -> dense softmax, distilled", s, x, y,
							 BATCH, &o) > 0);
	nn_model_free(s);
	nn_model_free(t);
}

/*
 * The teacher sees the batch after the student's noise layer: the loss
 * with a noise layer of stddev 0 differs from the one with noise, and the
 * latter equals the loss of a noise-free student on the noised rows.
 */
static void
test_teacher_sees_augmented_batch(void **state)
{
	nn_layer_spec ln[] = {nt_gaussian_noise(0.5f), nt_dense(K, NN_ACT_LINEAR)};
	nn_layer_spec lp[] = {nt_dense(K, NN_ACT_LINEAR)};
	nn_model   *noisy = student(ln, 2, NN_LOSS_MSE);
	nn_model   *plain = student(lp, 1, NN_LOSS_MSE);
	nn_model   *t = teacher(NN_ACT_LINEAR);
	float		x[IN * BATCH],
				xn[IN * BATCH],
				y[BATCH * K];
	double		ln_loss = 0.0,
				lp_loss = 0.0;
	int64_t		c = 0;
	nn_rng		rng;
	nn_error	err;

	(void) state;
	data(x, y);
	for (int i = 0; i < BATCH * K; i++)
		y[i] = 0.1f * (float) (i % 7);
	/* the same dense weights in both students */
	memcpy(nn_model_params(plain), nn_model_params(noisy),
		   sizeof(float) * nt_flat_params(plain));
	assert_ok(nn_model_set_teacher(noisy, t, 2.0f, 0.0f, &err), &err);
	assert_ok(nn_model_set_teacher(plain, t, 2.0f, 0.0f, &err), &err);
	assert_ok(nn_model_prepare(noisy, BATCH, true, 0, &err), &err);
	assert_ok(nn_model_prepare(plain, BATCH, true, 0, &err), &err);
	nn_rng_seed(&rng, 3);
	assert_ok(nn_model_compute_gradients(noisy, NULL, x, y, BATCH, &rng,
										 &ln_loss, &c, &err), &err);
	/* the noised rows: the input of the student's dense layer */
	memcpy(xn, noisy->layers[0].y, sizeof(xn));
	assert_memory_not_equal(xn, x, sizeof(x));
	assert_ok(nn_model_compute_gradients(plain, NULL, xn, y, BATCH, NULL,
										 &lp_loss, &c, &err), &err);
	assert_scalar_close("distillation loss on the noised rows", ln_loss,
						lp_loss, 1e-9, 1e-6);
	nn_model_free(noisy);
	nn_model_free(plain);
	nn_model_free(t);
}

/* Settings and models that cannot be distilled. */
static void
test_checks(void **state)
{
	nn_layer_spec ls[] = {nt_dense(K, NN_ACT_SOFTMAX)};
	nn_layer_spec l2[] = {nt_dense(K + 1, NN_ACT_SOFTMAX)};
	nn_layer_spec lg[] = {nt_dense(K, NN_ACT_SIGMOID)};
	nn_model   *s = student(ls, 1, NN_LOSS_SPARSE_CATEGORICAL_CE);
	nn_model   *mse = student(ls, 1, NN_LOSS_MSE);
	nn_model   *wide = student(l2, 1, NN_LOSS_SPARSE_CATEGORICAL_CE);
	nn_model   *sig = student(lg, 1, NN_LOSS_BINARY_CE);
	nn_model   *t = teacher(NN_ACT_SOFTMAX);
	nn_model   *ts = teacher(NN_ACT_SIGMOID);
	nn_error	err;

	(void) state;
	assert_int_equal(nn_model_set_teacher(s, t, 0.0f, 0.1f, &err), NN_ERR_SPEC);
	assert_string_equal(err.message, "\"temperature\" must be a positive number");
	assert_int_equal(nn_model_set_teacher(s, t, 4.0f, 1.5f, &err), NN_ERR_SPEC);
	assert_string_equal(err.message, "\"distill_alpha\" must be a number in [0, 1]");
	assert_int_equal(nn_model_set_teacher(wide, t, 4.0f, 0.1f, &err), NN_ERR_SPEC);
	assert_string_equal(err.message, "the teacher has 3 outputs, the student 4");
	assert_int_equal(nn_model_set_teacher(s, ts, 4.0f, 0.1f, &err), NN_ERR_SPEC);
	assert_string_equal(err.message,
						"the teacher's last layer must be softmax or linear, not sigmoid");
	assert_int_equal(nn_model_set_teacher(mse, t, 4.0f, 0.1f, &err), NN_ERR_SPEC);
	assert_int_equal(nn_model_set_teacher(sig, t, 4.0f, 0.1f, &err), NN_ERR_SPEC);
	assert_ok(nn_model_set_teacher(s, t, 4.0f, 0.0f, &err), &err);
	assert_ok(nn_model_set_teacher(s, NULL, 0.0f, 0.0f, &err), &err);
	nn_model_free(s);
	nn_model_free(mse);
	nn_model_free(wide);
	nn_model_free(sig);
	nn_model_free(t);
	nn_model_free(ts);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gradients),
		cmocka_unit_test(test_teacher_sees_augmented_batch),
		cmocka_unit_test(test_checks),
	};

	return NT_RUN(tests);
}
