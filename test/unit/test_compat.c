/*
 * test_compat.c: model bytes written by an earlier core still load, and
 * predict bit-identically.
 *
 * test/fixtures/compat/ holds, for a few small trained models, their bytes
 * (NAME.bin) and the predictions of the code that wrote them (NAME.txt,
 * format at the top of test/fixtures/make_compat.c, which writes both; the
 * committed files come from commit bea3cbe and must never be regenerated on
 * later code).  For each model this test checks that:
 *
 * - the bytes load (nn_model_deserialize) and serialize back to exactly
 *   the same bytes, optimizer state included;
 * - nn_model_predict on the stored inputs, in batches of the stored sizes
 *   (7 rows, then 1 row), gives the stored outputs bit for bit;
 * - a model saved with optimizer state takes one more training step
 *   (nn_model_train_batch) on the stored targets: the step count goes up,
 *   the loss is finite and the weights move.
 *
 * The directory is the first argument, else $NNPG_FIXTURES/compat (the
 * Makefile sets NNPG_FIXTURES), else test/fixtures/compat relative to the
 * binary.  Everything runs on one thread, as the fixtures were written, and
 * with OPENBLAS_CORETYPE=Haswell: the expected bits are those of OpenBLAS's
 * Haswell kernels, as CI pins them (scripts/lib.sh), and this program runs
 * itself again with that setting when the environment lacks it (other
 * kernels round differently).  The bits also assume Debian 12's OpenBLAS
 * 0.3.21: another BLAS build may need fixtures written anew on bea3cbe.
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <unistd.h>

#include "nn_test.h"

#define CX_HEADER "nnpg-compat 1"
#define CX_CORETYPE "Haswell"
#define CX_MAX_BATCHES 2
#define CX_MAX_REPORTS 10		/* mismatching outputs listed per batch */
#define CX_FLAGS_OFFSET 12		/* header flags; bit 0: optimizer state */

/* One nn_model_predict call: n rows of inputs and expected outputs. */
typedef struct cx_batch
{
	int32_t		n;
	float	   *x;
	float	   *y;
} cx_batch;

/* One fixture: its name, then what NAME.txt says. */
typedef struct cx_fixture
{
	const char *name;
	size_t		in;
	size_t		out;
	size_t		tw;				/* target floats per row; 0: no training */
	int			n_batches;
	cx_batch	batch[CX_MAX_BATCHES];
	int32_t		n_targets;
	float	   *t;
} cx_fixture;

static char compat_dir[4096];

static cx_fixture fixtures[] = {
	{.name = "cnn_adam"},
	{.name = "mlp_momentum"},
	{.name = "rnn_adamw"},
	{.name = "batchnorm_adagrad"},
	{.name = "normalize_sgd"},
	{.name = "embedding_rmsprop"},
};

/* ---------- reading the fixtures ---------- */

/* The path of NAME.ext in the fixture directory. */
static void
fixture_path(char *path, size_t size, const char *name, const char *ext)
{
	snprintf(path, size, "%s/%s.%s", compat_dir, name, ext);
}

/* Open a fixture file, failing the test when it cannot be. */
static FILE *
open_fixture(const char *name, const char *ext, const char *mode)
{
	char		path[4200];
	FILE	   *f;

	fixture_path(path, sizeof(path), name, ext);
	f = fopen(path, mode);
	if (f == NULL)
		fail_msg("cannot open \"%s\": %s", path, strerror(errno));
	return f;
}

/* The whole of NAME.bin in a malloc'd buffer. */
static uint8_t *
read_bin(const char *name, size_t *len)
{
	FILE	   *f = open_fixture(name, "bin", "rb");
	uint8_t    *buf;
	long		size = -1;

	if (fseek(f, 0, SEEK_END) == 0)
		size = ftell(f);
	if (size <= 0 || fseek(f, 0, SEEK_SET) != 0)
		fail_msg("%s.bin: cannot get its size", name);
	buf = nt_xmalloc((size_t) size);
	if (fread(buf, 1, (size_t) size, f) != (size_t) size)
		fail_msg("%s.bin: short read", name);
	fclose(f);
	*len = (size_t) size;
	return buf;
}

/* The next word; '#' comment lines are skipped. */
static void
next_word(FILE *f, const char *name, char *word)
{
	while (fscanf(f, "%63s", word) == 1)
	{
		int			ch;

		if (word[0] != '#')
			return;
		while ((ch = fgetc(f)) != EOF && ch != '\n')
			;
	}
	fail_msg("%s.txt ends before \"end\"", name);
}

/* Expect the next word to be want. */
static void
expect_word(FILE *f, const char *name, const char *want)
{
	char		word[64];

	next_word(f, name, word);
	if (strcmp(word, want) != 0)
		fail_msg("%s.txt: \"%s\" where \"%s\" was expected", name, word, want);
}

/* A size, a batch or row count: a non-negative integer below 2^20. */
static size_t
read_count(FILE *f, const char *name)
{
	char		word[64];
	char	   *end;
	unsigned long v;

	next_word(f, name, word);
	v = strtoul(word, &end, 10);
	if (*end != '\0' || end == word || v >= (1UL << 20))
		fail_msg("%s.txt: bad count \"%s\"", name, word);
	return (size_t) v;
}

/* rows lines of "tag" and width hex bit patterns into v (malloc'd). */
static float *
read_rows(FILE *f, const char *name, const char *tag, size_t rows,
		  size_t width)
{
	float	   *v = nt_xmalloc(sizeof(float) * rows * width);

	for (size_t r = 0; r < rows; r++)
	{
		expect_word(f, name, tag);
		for (size_t j = 0; j < width; j++)
		{
			unsigned int bits;
			uint32_t	b;

			if (fscanf(f, " %8x", &bits) != 1)
				fail_msg("%s.txt: row %zu of \"%s\" is short", name, r, tag);
			b = bits;
			memcpy(&v[r * width + j], &b, sizeof(b));
		}
	}
	return v;
}

/* A "batch N" section: N input rows, N output rows. */
static void
read_batch(FILE *f, cx_fixture *fx)
{
	cx_batch   *b;

	if (fx->n_batches == CX_MAX_BATCHES)
		fail_msg("%s.txt: more than %d batches", fx->name, CX_MAX_BATCHES);
	b = &fx->batch[fx->n_batches++];
	b->n = (int32_t) read_count(f, fx->name);
	if (b->n < 1)
		fail_msg("%s.txt: an empty batch", fx->name);
	b->x = read_rows(f, fx->name, "x", (size_t) b->n, fx->in);
	b->y = read_rows(f, fx->name, "y", (size_t) b->n, fx->out);
}

/* The "model" and "sizes" lines after the header. */
static void
read_head(FILE *f, cx_fixture *fx)
{
	char		line[64];

	if (fgets(line, sizeof(line), f) == NULL ||
		strcmp(line, CX_HEADER "\n") != 0)
		fail_msg("%s.txt: the first line is not \"%s\"", fx->name, CX_HEADER);
	expect_word(f, fx->name, "model");
	expect_word(f, fx->name, fx->name);
	expect_word(f, fx->name, "sizes");
	fx->in = read_count(f, fx->name);
	fx->out = read_count(f, fx->name);
	fx->tw = read_count(f, fx->name);
	if (fx->in == 0 || fx->out == 0)
		fail_msg("%s.txt: zero input or output size", fx->name);
}

/* Read NAME.txt into fx. */
static void
read_txt(cx_fixture *fx)
{
	FILE	   *f = open_fixture(fx->name, "txt", "r");
	char		word[64];

	read_head(f, fx);
	for (;;)
	{
		next_word(f, fx->name, word);
		if (strcmp(word, "end") == 0)
			break;
		else if (strcmp(word, "batch") == 0)
			read_batch(f, fx);
		else if (strcmp(word, "targets") == 0 && fx->tw > 0 && fx->t == NULL)
		{
			fx->n_targets = (int32_t) read_count(f, fx->name);
			fx->t = read_rows(f, fx->name, "t", (size_t) fx->n_targets, fx->tw);
		}
		else
			fail_msg("%s.txt: unexpected \"%s\"", fx->name, word);
	}
	fclose(f);
	if (fx->n_batches == 0 || (fx->tw > 0 && fx->t == NULL))
		fail_msg("%s.txt: no batch, or no targets for training", fx->name);
}

/* Free what read_txt allocated. */
static void
free_fixture(cx_fixture *fx)
{
	for (int i = 0; i < fx->n_batches; i++)
	{
		free(fx->batch[i].x);
		free(fx->batch[i].y);
	}
	free(fx->t);
	fx->n_batches = 0;
	fx->t = NULL;
}

/* ---------- the checks ---------- */

/* Load the bytes; serializing the model must give them back exactly. */
static nn_model *
load_round_trip(const cx_fixture *fx, const uint8_t *buf, size_t len)
{
	nn_model   *m = NULL;
	nn_error	err;
	uint8_t    *again;
	size_t		again_len;
	size_t		i = 0;

	assert_ok(nn_model_deserialize(&m, buf, len, 0, &nn_malloc_alloc,
								   test_crc32c, &err), &err);
	again = nt_serialize(m, true, &again_len);
	while (i < len && i < again_len && again[i] == buf[i])
		i++;
	free(again);
	if (i < len || again_len != len)
		fail_msg("%s: the loaded model serializes to other bytes (%zu, "
				 "%s.bin has %zu), the first difference at offset %zu",
				 fx->name, again_len, fx->name, len, i);
	return m;
}

/* Report mismatching outputs of one batch; returns how many there are. */
static size_t
report_mismatches(const cx_fixture *fx, int bi, const float *actual,
				  const float *expected, size_t n)
{
	size_t		bad = 0;

	for (size_t i = 0; i < n; i++)
	{
		uint32_t	a,
					e;

		memcpy(&a, &actual[i], sizeof(a));
		memcpy(&e, &expected[i], sizeof(e));
		if (a != e && bad++ < CX_MAX_REPORTS)
			print_error("%s batch %d (%d rows): output %zu (row %zu, column %zu) "
						"is %a (0x%08x), expected %a (0x%08x)\n",
						fx->name, bi, (int) fx->batch[bi].n, i, i / fx->out,
						i % fx->out, (double) actual[i], (unsigned) a,
						(double) expected[i], (unsigned) e);
	}
	return bad;
}

/*
 * Predict every stored batch and compare each output's bits; the model is
 * prepared once for the largest batch, as make_compat.c prepared it.
 */
static void
check_predictions(const cx_fixture *fx, nn_model *m)
{
	nn_error	err;
	size_t		bad = 0;
	int32_t		most = 0;

	assert_int_equal(nn_model_input_size(m), fx->in);
	assert_int_equal(nn_model_output_size(m), fx->out);
	for (int bi = 0; bi < fx->n_batches; bi++)
		most = fx->batch[bi].n > most ? fx->batch[bi].n : most;
	assert_ok(nn_model_prepare(m, most, false, 0, &err), &err);
	for (int bi = 0; bi < fx->n_batches; bi++)
	{
		const cx_batch *b = &fx->batch[bi];
		size_t		n = (size_t) b->n * fx->out;
		float	   *out = nt_xmalloc(sizeof(float) * n);

		assert_ok(nn_model_predict(m, out, b->x, b->n, &err), &err);
		bad += report_mismatches(fx, bi, out, b->y, n);
		free(out);
	}
	if (bad > 0)
		fail_msg("%s: %zu outputs differ from the stored ones", fx->name, bad);
}

/* One training step on the stored targets must work and move the weights. */
static void
check_training(const cx_fixture *fx, nn_model *m)
{
	int64_t		np = nt_flat_params(m);
	float	   *before = nt_xmalloc(sizeof(float) * (size_t) np);
	int64_t		step = nn_model_step_count(m);
	nn_rng		rng;
	nn_error	err;
	double		loss = 0;
	int64_t		correct = 0;

	memcpy(before, nn_model_params(m), sizeof(float) * (size_t) np);
	nn_rng_seed(&rng, 5);
	assert_ok(nn_model_prepare(m, fx->n_targets, true, 0, &err), &err);
	assert_ok(nn_model_train_batch(m, fx->batch[0].x, fx->t, fx->n_targets,
								   &rng, &loss, &correct, &err), &err);
	assert_true(isfinite(loss));
	assert_int_equal(nn_model_step_count(m), step + 1);
	if (memcmp(before, nn_model_params(m), sizeof(float) * (size_t) np) == 0)
		fail_msg("%s: a training step after loading left the weights as they were",
				 fx->name);
	free(before);
}

/* Every check on one fixture (the state is its cx_fixture). */
static void
test_fixture(void **state)
{
	cx_fixture *fx = *state;
	size_t		len;
	uint8_t    *buf;
	nn_model   *m;

	read_txt(fx);
	buf = read_bin(fx->name, &len);
	/* optimizer state in the bytes exactly when the text has targets */
	assert_true(len > CX_FLAGS_OFFSET);
	assert_int_equal(buf[CX_FLAGS_OFFSET] & 1, fx->tw > 0 ? 1 : 0);
	m = load_round_trip(fx, buf, len);
	check_predictions(fx, m);
	if (fx->tw > 0)
		check_training(fx, m);
	nn_model_free(m);
	free(buf);
	free_fixture(fx);
}

/* ---------- setup ---------- */

/*
 * OpenBLAS reads OPENBLAS_CORETYPE when it loads, so when it is not the one
 * the fixtures were written with, run this program again with it set.
 */
static void
pin_coretype(char **argv)
{
	const char *ct = getenv("OPENBLAS_CORETYPE");

	if (ct != NULL && strcmp(ct, CX_CORETYPE) == 0)
		return;
	fprintf(stderr, "test_compat: running again with OPENBLAS_CORETYPE=%s (was %s)\n",
			CX_CORETYPE, ct ? ct : "unset");
	if (setenv("OPENBLAS_CORETYPE", CX_CORETYPE, 1) == 0)
		execv("/proc/self/exe", argv);
	fprintf(stderr, "test_compat: cannot run again: %s\n", strerror(errno));
}

/* Where the fixtures are: argument, $NNPG_FIXTURES, or beside the binary. */
static void
find_compat_dir(int argc, char **argv)
{
	const char *dir = getenv("NNPG_FIXTURES");
	char		self[4096];

	if (argc > 1)
		snprintf(compat_dir, sizeof(compat_dir), "%s", argv[1]);
	else if (dir)
		snprintf(compat_dir, sizeof(compat_dir), "%s/compat", dir);
	else
	{
		/* test/unit/build/<variant>/test_compat -> test/fixtures/compat */
		snprintf(self, sizeof(self), "%s", argv[0]);
		snprintf(compat_dir, sizeof(compat_dir),
				 "%s/../../../fixtures/compat", dirname(self));
	}
}

#define CX_N_FIXTURES ((int) (sizeof(fixtures) / sizeof(fixtures[0])))

int
main(int argc, char **argv)
{
	struct CMUnitTest tests[CX_N_FIXTURES];

	/* one test per fixture, named after it, its cx_fixture as the state */
	for (int i = 0; i < CX_N_FIXTURES; i++)
		tests[i] = (struct CMUnitTest) {
			fixtures[i].name, test_fixture, NULL, NULL, &fixtures[i]
		};
	pin_coretype(argv);
	find_compat_dir(argc, argv);
	print_message("fixtures in %s, nn_set_threads(1)\n", compat_dir);
	nn_set_threads(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
