/*
 * fit.c: nn_fit, training a model on the rows of a query.
 *
 * Flow, in named steps as PostgreSQL's executor runs a node (init, run,
 * end): read and check the arguments and options, lock the model name
 * (concurrent fits of one model serialize), load the version to continue
 * from (or build it: a model created without an input shape takes it from
 * the first row), read the training rows (and the validation rows), adapt
 * normalize layers, then run the epochs and, only when all of it
 * succeeded, insert the next version with weights, optimizer state,
 * settings and history.  An error or a cancel anywhere stores nothing, and
 * everything allocated lives in the call's "nnpg fit" context, so nothing
 * leaks.
 *
 * Data: rows that fit in nnpg.data_cache_mb are kept in memory, compact
 * (one record per row: (in) bytes when every feature column is bytea, else
 * floats, then (width) target floats and the query row), in chunks that
 * are never moved, and shuffled through an index array per epoch, as
 * Keras does.  Larger data is streamed: the cursor is reopened every epoch
 * and rows are shuffled through a bounded buffer (as tf.data's shuffle),
 * so memory stays bounded whatever the table size.  validation_split takes
 * the last rows of the query, as Keras does.
 *
 * Memory: buffers are sized once per fit ((batch, in) inputs, (batch,
 * width) targets) and the core sizes its own once in nn_model_prepare, so
 * nothing is allocated per batch; a row's detoasted values live in the
 * reader's row context, reset for every row, and the in-memory rows in an
 * "nnpg rows" context of their own.
 *
 * Seeds: seed drives shuffling and dropout; a model built here (the first
 * fit of a model created without an input shape, or options.reset) takes
 * its initial weights from nn_create's seed or, on reset, from this seed,
 * so a reset fit with nn_create's seed repeats the first fit.  Both are
 * recorded in the training settings.
 *
 * Not here: restoring the best weights after early stopping (Keras's
 * restore_best_weights), sample weights, multiple inputs or outputs.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/plancache.h"
#include "tcop/utility.h"
#include "utils/tuplestore.h"

#include "nnpg.h"

/* Settings from the options jsonb. */
typedef struct fit_options
{
	nn_optimizer_spec opt;
	bool		plateau;
	double		plateau_factor;
	int32		plateau_patience;
	double		min_lr;
	bool		skip_nulls;
	bool		reset;
	bool		have_rate;		/* decay_rate was given */
	bool		have_steps;		/* decay_steps was given */
	/* class_weight: weights[i] of class[i]; dense arrays use class = i */
	int			n_cw;
	int32	   *cw_class;
	float	   *cw_weight;
	/* distillation: the teacher model (NULL: none) and its settings */
	char	   *teacher;
	bool		have_teacher_version;
	int32		teacher_version;
	bool		have_distill;	/* temperature or distill_alpha given */
	float		temperature;
	float		distill_alpha;
	/* data-parallel training: replicas, and rows between their merges */
	int32		workers;
	bool		have_sync_rows;
	int64		sync_rows;
} fit_options;

/*
 * One query's rows, in memory or streamed.  In memory, each row is one
 * record: x ((in) bytes, or floats), y ((y_width) floats) and its query
 * row; records are packed into chunks of chunk_rows, allocated as rows
 * arrive and never moved, so growing costs no copy.
 */
typedef struct rowsource
{
	nnpg_reader r;
	bool		in_memory;
	bool		bytes;			/* x stored as (in) uint8 */
	int32		n_in;
	int32		y_width;
	int64		n;				/* rows without NULLs */
	/* in-memory rows */
	MemoryContext cxt;			/* "nnpg rows": the chunks */
	int64		max_rows;		/* kept in memory while n is below this */
	size_t		y_off;			/* record layout: x at 0, then y, */
	size_t		row_off;		/* then the 1-based query row (int64) */
	size_t		rec_bytes;
	int64		chunk_rows;		/* records per chunk */
	int64		n_chunks;
	int64		max_chunks;		/* size of chunks[] */
	char	  **chunks;			/* (n_chunks) */
	float	   *scratch_x;		/* (in) a row checked but not kept */
	float	   *scratch_y;		/* (y_width) */
} rowsource;

/* A range [lo, hi) of a source's rows: training or validation. */
typedef struct dataset
{
	rowsource  *src;
	int64		lo;
	int64		hi;
} dataset;

/* What an epoch needs. */
typedef struct fit_state
{
	nn_model   *model;
	nn_loss_kind loss;
	int32		batch;
	bool		shuffle;
	nn_rng		rng;
	float	   *xbuf;			/* (batch, in) */
	float	   *ybuf;			/* (batch, y_width) */
	uint32	   *order;			/* in-memory training permutation */
	int64	   *slot_row;		/* (batch) query row of each batch slot */
	double		loss_sum;
	int64		correct;
	int64		seen;
	/* where training is, for error context */
	const char *name;
	int32		epoch;			/* 0 before training */
	int64		batch_no;		/* 1-based within the epoch */
	int32		round;			/* data-parallel: 1-based within the epoch, */
	int32		rounds;			/* of rounds (0: training here) */
	/* progress of a verbose fit within a long epoch */
	bool		verbose;
	int32		epochs;
	int64		epoch_rows;		/* training rows per epoch */
	instr_time	epoch_start;
	double		noticed;		/* seconds into the epoch of the last NOTICE */
} fit_state;

/* Error context while training: the model, epoch and batch. */
static void
fit_error_callback(void *arg)
{
	fit_state  *fs = (fit_state *) arg;

	if (fs->epoch > 0 && fs->rounds > 0)
		errcontext("training model \"%s\", epoch %d, round %d of %d",
				   fs->name, fs->epoch, fs->round, fs->rounds);
	else if (fs->epoch > 0)
		errcontext("training model \"%s\", epoch %d, batch " INT64_FORMAT,
				   fs->name, fs->epoch, fs->batch_no);
}

/* ---------- options ---------- */

static void bad_fit_option(const char *key, const char *what) pg_attribute_noreturn();

/* Raise `option "key" must be <what>` (22023). */
static void
bad_fit_option(const char *key, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be %s", key, what)));
	pg_unreachable();
}

/* The value of a finite number option. */
static double
option_number(const char *key, JsonbValue *v)
{
	double		d;

	if (!nnpg_jsonb_number(v, &d) || !isfinite(d))
		bad_fit_option(key, "a number");
	return d;
}

/* The value of a string option, palloc'd. */
static char *
option_string(const char *key, JsonbValue *v)
{
	if (v->type != jbvString)
		bad_fit_option(key, "a string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A non-negative class weight that a float holds; false if it is not one. */
static bool
class_weight_value(JsonbValue *v, float *w)
{
	double		d;

	if (v == NULL || !nnpg_jsonb_number(v, &d) || !isfinite(d) || d < 0 ||
		d > FLT_MAX)
		return false;
	*w = (float) d;
	return true;
}

/* class_weight as an array [w0, w1, ...]: class i weighs wi. */
static void
parse_class_weight_array(JsonbContainer *c, fit_options *fo)
{
	for (int i = 0; i < fo->n_cw; i++)
	{
		if (!class_weight_value(getIthJsonbValueFromContainer(c, i),
								&fo->cw_weight[i]))
			bad_fit_option("class_weight", "an array of non-negative numbers");
		fo->cw_class[i] = i;
	}
}

/* class_weight as an object {"0": w0, "3": w3}: listed classes only. */
static void
parse_class_weight_object(JsonbContainer *c, fit_options *fo)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	k;
	JsonbValue	val;
	JsonbIteratorToken tok;
	int			i = 0;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		char	   *end;
		long		cls;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		key = pnstrdup(k.val.string.val, k.val.string.len);
		errno = 0;
		cls = strtol(key, &end, 10);
		if (*key == '\0' || *end != '\0' || errno != 0 || cls < 0 ||
			cls > PG_INT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"class_weight\" has key \"%s\", which is not a class index",
							key)));
		if (!class_weight_value(&val, &fo->cw_weight[i]))
			bad_fit_option("class_weight", "an object of class: non-negative weight pairs");
		fo->cw_class[i] = (int32) cls;
		i++;
	}
	fo->n_cw = i;
}

/* The class_weight option: an array of weights or an object of pairs. */
static void
parse_class_weight(const char *key, JsonbValue *v, fit_options *fo)
{
	JsonbContainer *c;

	if (v->type != jbvBinary)
		bad_fit_option(key, "an array of weights or an object of class: weight pairs");
	c = v->val.binary.data;
	fo->n_cw = JsonContainerSize(c);
	fo->cw_class = palloc(sizeof(int32) * Max(fo->n_cw, 1));
	fo->cw_weight = palloc(sizeof(float) * Max(fo->n_cw, 1));
	if (JsonContainerIsArray(c))
		parse_class_weight_array(c, fo);
	else
		parse_class_weight_object(c, fo);
}

/* The learning-rate schedules by name; plateau is a constant rate cut by fit. */
static const struct
{
	const char *name;
	nn_schedule_kind schedule;
	bool		plateau;
}			lr_schedules[] =
{
	{"constant", NN_SCHED_CONSTANT, false},
	{"step", NN_SCHED_STEP, false},
	{"exponential", NN_SCHED_EXPONENTIAL, false},
	{"plateau", NN_SCHED_CONSTANT, true},
};

/* The lr_schedule option: one of lr_schedules by name. */
static void
parse_lr_schedule(const char *key, JsonbValue *v, fit_options *fo)
{
	char	   *s = option_string(key, v);

	for (int i = 0; i < lengthof(lr_schedules); i++)
	{
		if (strcmp(s, lr_schedules[i].name) == 0)
		{
			fo->opt.schedule = lr_schedules[i].schedule;
			fo->plateau = lr_schedules[i].plateau;
			return;
		}
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized lr_schedule \"%s\"", s),
			 errhint("Schedules are constant, step, exponential and plateau.")));
}

/* The on_null option: "error" fails on a row with a NULL, "skip" skips it. */
static void
parse_on_null(const char *key, JsonbValue *v, fit_options *fo)
{
	char	   *s = option_string(key, v);

	if (strcmp(s, "error") == 0)
		fo->skip_nulls = false;
	else if (strcmp(s, "skip") == 0)
		fo->skip_nulls = true;
	else
		bad_fit_option(key, "\"error\" or \"skip\"");
}

static void
parse_teacher(const char *key, JsonbValue *v, fit_options *fo)
{
	fo->teacher = option_string(key, v);
	if (fo->teacher[0] == '\0')
		bad_fit_option(key, "a model name");
}

/* How an option's JSON value is read, and the C type it is stored as. */
typedef enum fit_option_type
{
	FOPT_FLOAT,					/* a number, stored and range-checked as float */
	FOPT_DOUBLE,				/* a number */
	FOPT_INT32,					/* an integral number */
	FOPT_INT64,					/* an integral number */
	FOPT_BOOL,					/* true or false */
	FOPT_SPECIAL				/* read by the row's parse function */
} fit_option_type;

/* Range flags of a fit_option_def: bounds are inclusive unless these say. */
#define FOPT_MIN_EXCLUSIVE	0x01
#define FOPT_MAX_EXCLUSIVE	0x02

/* One option of nn_fit's options jsonb, as PostgreSQL's reloptions rows. */
typedef struct fit_option_def
{
	const char *name;			/* the JSON key */
	fit_option_type type;
	int			offset;			/* offsetof the value in fit_options */
	double		min;			/* allowed range of a number */
	double		max;
	int			flags;			/* FOPT_MIN_EXCLUSIVE, FOPT_MAX_EXCLUSIVE */
	const char *what;			/* "must be <what>" outside the range */
	int			seen;			/* offsetof a bool set when given, or -1 */
	void		(*parse) (const char *key, JsonbValue *v, fit_options *fo);
} fit_option_def;

/* Any finite number, stored as a float field of the optimizer spec. */
#define FOPT_OPTIMIZER(key, field) \
	{(key), FOPT_FLOAT, offsetof(fit_options, opt.field), -HUGE_VAL, HUGE_VAL, \
	 0, NULL, -1, NULL}
/* An option read by a parse function of its own. */
#define FOPT_PARSED(key, fn) \
	{(key), FOPT_SPECIAL, 0, 0, 0, 0, NULL, -1, (fn)}

/* The options, in the order the unrecognized-option hint lists them. */
static const fit_option_def fit_option_table[] =
{
	FOPT_OPTIMIZER("momentum", momentum),
	FOPT_OPTIMIZER("beta1", beta1),
	FOPT_OPTIMIZER("beta2", beta2),
	FOPT_OPTIMIZER("epsilon", epsilon),
	FOPT_OPTIMIZER("rho", rho),
	FOPT_OPTIMIZER("weight_decay", weight_decay),
	FOPT_OPTIMIZER("initial_accumulator", initial_accumulator),
	FOPT_OPTIMIZER("clipnorm", clipnorm),
	FOPT_OPTIMIZER("clipvalue", clipvalue),
	FOPT_PARSED("class_weight", parse_class_weight),
	FOPT_PARSED("lr_schedule", parse_lr_schedule),
	{"decay_rate", FOPT_FLOAT, offsetof(fit_options, opt.decay_rate),
	 0, HUGE_VAL, FOPT_MIN_EXCLUSIVE, "a positive number",
	 offsetof(fit_options, have_rate), NULL},
	{"decay_steps", FOPT_INT64, offsetof(fit_options, opt.decay_steps),
	 1, (double) PG_INT64_MAX / 2, 0, "a positive integer",
	 offsetof(fit_options, have_steps), NULL},
	{"plateau_factor", FOPT_DOUBLE, offsetof(fit_options, plateau_factor),
	 0, 1, FOPT_MIN_EXCLUSIVE | FOPT_MAX_EXCLUSIVE, "a number between 0 and 1",
	 -1, NULL},
	{"plateau_patience", FOPT_INT32, offsetof(fit_options, plateau_patience),
	 0, PG_INT32_MAX, 0, "a non-negative integer", -1, NULL},
	{"min_lr", FOPT_DOUBLE, offsetof(fit_options, min_lr),
	 0, HUGE_VAL, 0, "a non-negative number", -1, NULL},
	FOPT_PARSED("on_null", parse_on_null),
	{"reset", FOPT_BOOL, offsetof(fit_options, reset), 0, 0, 0, NULL, -1, NULL},
	FOPT_PARSED("teacher", parse_teacher),
	{"teacher_version", FOPT_INT32, offsetof(fit_options, teacher_version),
	 1, PG_INT32_MAX, 0, "a positive integer",
	 offsetof(fit_options, have_teacher_version), NULL},
	{"temperature", FOPT_FLOAT, offsetof(fit_options, temperature),
	 0, HUGE_VAL, FOPT_MIN_EXCLUSIVE, "a positive number",
	 offsetof(fit_options, have_distill), NULL},
	{"distill_alpha", FOPT_FLOAT, offsetof(fit_options, distill_alpha),
	 0, 1, 0, "a number in [0, 1]", offsetof(fit_options, have_distill), NULL},
	{"workers", FOPT_INT32, offsetof(fit_options, workers),
	 0, PG_INT32_MAX, 0, "a non-negative integer", -1, NULL},
	{"sync_rows", FOPT_INT64, offsetof(fit_options, sync_rows),
	 1, (double) PG_INT64_MAX / 2, 0, "a positive integer",
	 offsetof(fit_options, have_sync_rows), NULL},
};

/* The table row of an option key, or NULL. */
static const fit_option_def *
find_fit_option(const char *key)
{
	for (int i = 0; i < lengthof(fit_option_table); i++)
	{
		if (strcmp(fit_option_table[i].name, key) == 0)
			return &fit_option_table[i];
	}
	return NULL;
}

/* "momentum, beta1, ... on_null and reset": every option key, for a hint. */
static char *
fit_option_names(void)
{
	StringInfoData buf;
	int			n = lengthof(fit_option_table);

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, i == n - 1 ? " and " : ", ");
		appendStringInfoString(&buf, fit_option_table[i].name);
	}
	return buf.data;
}

/* Raise the option's error unless d is in its row's range (and integral). */
static void
check_option_range(const fit_option_def *def, double d)
{
	bool		integral = def->type == FOPT_INT32 || def->type == FOPT_INT64;
	bool		below = (def->flags & FOPT_MIN_EXCLUSIVE) ?
		!(d > def->min) : d < def->min;
	bool		above = (def->flags & FOPT_MAX_EXCLUSIVE) ?
		!(d < def->max) : d > def->max;

	if ((integral && d != floor(d)) || below || above)
		bad_fit_option(def->name, def->what);
}

/* Check an option's value as its row says and store it in fo. */
static void
store_fit_option(const fit_option_def *def, JsonbValue *v, fit_options *fo)
{
	char	   *field = (char *) fo + def->offset;
	double		d;

	switch (def->type)
	{
		case FOPT_SPECIAL:
			def->parse(def->name, v, fo);
			break;
		case FOPT_BOOL:
			if (v->type != jbvBool)
				bad_fit_option(def->name, "a boolean");
			*(bool *) field = v->val.boolean;
			break;
		case FOPT_FLOAT:
			/* the range applies to the float that is stored */
			d = (float) option_number(def->name, v);
			check_option_range(def, d);
			*(float *) field = (float) d;
			break;
		case FOPT_DOUBLE:
			d = option_number(def->name, v);
			check_option_range(def, d);
			*(double *) field = d;
			break;
		case FOPT_INT32:
			d = option_number(def->name, v);
			check_option_range(def, d);
			*(int32 *) field = (int32) d;
			break;
		case FOPT_INT64:
			d = option_number(def->name, v);
			check_option_range(def, d);
			*(int64 *) field = (int64) d;
			break;
	}
	if (def->seen >= 0)
		*(bool *) ((char *) fo + def->seen) = true;
}

/* Parse the options jsonb over the optimizer's defaults. */
static void
parse_options(Jsonb *options, fit_options *fo)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	fo->plateau_factor = 0.1;
	fo->plateau_patience = 10;
	fo->min_lr = 0;
	fo->temperature = 4.0f;
	fo->distill_alpha = 0.1f;

	if (JB_ROOT_IS_SCALAR(options) || !JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));

	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		const fit_option_def *def;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		key = pnstrdup(k.val.string.val, k.val.string.len);
		def = find_fit_option(key);
		if (def == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized option \"%s\"", key),
					 errhint("Options are %s.", fit_option_names())));
		store_fit_option(def, &v, fo);
	}

	if ((fo->opt.schedule == NN_SCHED_STEP ||
		 fo->opt.schedule == NN_SCHED_EXPONENTIAL) &&
		(!fo->have_steps || !fo->have_rate))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lr_schedule \"%s\" needs \"decay_rate\" and \"decay_steps\"",
						fo->opt.schedule == NN_SCHED_STEP ? "step" : "exponential")));
	if (fo->teacher == NULL && (fo->have_teacher_version || fo->have_distill))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options \"teacher_version\", \"temperature\" and \"distill_alpha\" need \"teacher\"")));
}

/* The class weights as a dense array over n_classes (NULL: none given). */
static float *
class_weight_array(const fit_options *fo, int32 n_classes)
{
	float	   *w;

	if (fo->n_cw == 0)
		return NULL;
	w = palloc(sizeof(float) * n_classes);
	for (int32 i = 0; i < n_classes; i++)
		w[i] = 1.0f;
	for (int i = 0; i < fo->n_cw; i++)
	{
		if (fo->cw_class[i] >= n_classes)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"class_weight\" has a weight for class %d, but the model has %d classes",
							fo->cw_class[i], n_classes)));
		w[fo->cw_class[i]] = fo->cw_weight[i];
	}
	return w;
}
/* ---------- data ---------- */

/* Bytes of a chunk of in-memory rows (a row larger than this gets its own). */
#define NNPG_CHUNK_BYTES ((size_t) 4 * 1024 * 1024)

/* In-memory row i's record. */
static inline char *
row_record(const rowsource *s, int64 i)
{
	return s->chunks[i / s->chunk_rows] +
		(size_t) (i % s->chunk_rows) * s->rec_bytes;
}

/* size bytes in cxt for a chunk, starting on a huge page boundary. */
static char *
alloc_chunk(MemoryContext cxt, size_t size)
{
	size_t		huge = TYPEALIGN(NNPG_HUGE_PAGE, size);
	char	   *block = MemoryContextAllocHuge(cxt, huge + NNPG_HUGE_PAGE);
	char	   *start = (char *) TYPEALIGN(NNPG_HUGE_PAGE, block);

	/*
	 * All of the chunk can then be backed by huge pages (nnpg_advise_huge),
	 * which makes filling it faster.  The head skipped for the alignment is
	 * never touched, so it costs address space only.
	 */
	nnpg_advise_huge(start, huge);
	return start;
}

/* Add a chunk for rows n.. (fewer than chunk_rows if the budget ends). */
static void
add_chunk(rowsource *s)
{
	int64		rows = Min(s->chunk_rows, s->max_rows - s->n);

	if (s->n_chunks == s->max_chunks)
	{
		s->max_chunks = Max(s->max_chunks * 2, 16);
		if (s->chunks == NULL)
			s->chunks = MemoryContextAlloc(s->cxt,
										   sizeof(char *) * s->max_chunks);
		else
			s->chunks = repalloc(s->chunks, sizeof(char *) * s->max_chunks);
	}
	s->chunks[s->n_chunks++] = alloc_chunk(s->cxt,
										   (size_t) rows * s->rec_bytes);
}

/* Free the in-memory rows: the data is streamed from now on. */
static void
drop_rows(rowsource *s)
{
	MemoryContextReset(s->cxt);
	s->chunks = NULL;
	s->n_chunks = 0;
	s->max_chunks = 0;
	s->in_memory = false;
}

/* Keep a row in memory while the rows fit, else only check it. */
static void
keep_row(nnpg_reader *r, void *arg)
{
	rowsource  *s = (rowsource *) arg;

	/* too big: stream it, but check every row now */
	if (s->in_memory && s->n >= s->max_rows)
		drop_rows(s);
	if (s->in_memory)
	{
		char	   *rec;

		if (s->n == s->n_chunks * s->chunk_rows)
			add_chunk(s);
		rec = row_record(s, s->n);
		if (s->bytes)
			nnpg_reader_features_bytes(r, (uint8 *) rec);
		else
			nnpg_reader_features(r, (float *) rec);
		nnpg_reader_target(r, (float *) (rec + s->y_off));
		*(int64 *) (rec + s->row_off) = r->row_no;
	}
	else
	{
		nnpg_reader_features(r, s->scratch_x);
		nnpg_reader_target(r, s->scratch_y);
	}
	s->n++;
	nnpg_progress_rows(s->n, NAN);
}

/* Read and check all rows once, keeping them while they fit; bytes kept. */
static size_t
load_rows(rowsource *s, size_t budget, float *scratch_x, float *scratch_y)
{
	size_t		x_bytes;

	/* the reader is on the first row; budget bounds the bytes kept */
	s->bytes = s->r.bytes_only;
	s->n_in = s->r.n_in;
	s->y_width = nnpg_reader_target_width(&s->r);
	x_bytes = (size_t) s->n_in * (s->bytes ? 1 : sizeof(float));
	s->y_off = INTALIGN(x_bytes);
	s->row_off = MAXALIGN(s->y_off + (size_t) s->y_width * sizeof(float));
	s->rec_bytes = s->row_off + sizeof(int64);
	s->chunk_rows = Max((int64) (NNPG_CHUNK_BYTES / s->rec_bytes), 1);
	/* the epoch order is a uint32 permutation */
	s->max_rows = Min((int64) (budget / s->rec_bytes), (int64) PG_UINT32_MAX);
	s->cxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg rows",
								   ALLOCSET_DEFAULT_SIZES);
	s->scratch_x = scratch_x;
	s->scratch_y = scratch_y;
	s->in_memory = true;
	s->n = 0;

	keep_row(&s->r, s);
	(void) nnpg_reader_read(&s->r, PG_INT64_MAX, keep_row, s);
	return s->in_memory ? (size_t) s->n * s->rec_bytes : 0;
}

/* Copy in-memory row i into a batch slot; returns its query row. */
static int64
gather_row(const rowsource *s, int64 i, float *x, float *y)
{
	const char *rec = row_record(s, i);

	if (s->bytes)
		nn_bytes_to_floats(x, (const uint8 *) rec, s->n_in);
	else
		memcpy(x, rec, sizeof(float) * s->n_in);
	memcpy(y, rec + s->y_off, sizeof(float) * s->y_width);
	return *(const int64 *) (rec + s->row_off);
}

/* What a pass does with each batch: train, evaluate or adapt on it. */
typedef void (*batch_fn) (fit_state *fs, const float *x, const float *y,
						  int32 n, void *arg);

/* A pass over streamed rows: where they go. */
typedef struct stream_pass
{
	fit_state  *fs;
	rowsource  *src;
	int32		k;				/* rows in the batch being built */
	/* train_epoch's bounded shuffle; cap 0 sends rows straight on */
	int64		cap;
	int64		filled;
	float	   *bx;				/* (cap, in) */
	float	   *by;				/* (cap, y_width) */
	int64	   *brow;			/* (cap) query row of each buffered row */
} stream_pass;

/* Convert a streamed row into the next batch slot. */
static void
stream_row(nnpg_reader *r, void *arg)
{
	stream_pass *sp = (stream_pass *) arg;
	fit_state  *fs = sp->fs;

	nnpg_reader_features(r, fs->xbuf + (size_t) sp->k * sp->src->n_in);
	nnpg_reader_target(r, fs->ybuf + (size_t) sp->k * sp->src->y_width);
	fs->slot_row[sp->k++] = r->row_no;
}

/* Read a dataset's rows again through row_fn; run fn on each full batch. */
static void
stream_dataset(fit_state *fs, dataset *ds, stream_pass *sp,
			   nnpg_row_fn row_fn, batch_fn fn, void *arg)
{
	nnpg_reader *r = &ds->src->r;
	int64		left = ds->hi - ds->lo;

	/*
	 * row_fn adds at most one row to the batch per row read, and each read
	 * asks for no more rows than the batch has room for, so the batch is run
	 * here and not from inside the executor.
	 */
	nnpg_reader_rewind(r);
	/* the rows before the range are checked, not converted */
	(void) nnpg_reader_read(r, ds->lo, NULL, NULL);
	while (left > 0)
	{
		/* rows that fill the shuffle buffer do not reach the batch */
		int64		want = sp->filled < sp->cap ? sp->cap - sp->filled :
			fs->batch - sp->k;
		int64		got;

		want = Min(want, left);
		got = nnpg_reader_read(r, want, row_fn, sp);
		left -= got;
		if (sp->k == fs->batch)
		{
			fn(fs, fs->xbuf, fs->ybuf, sp->k, arg);
			sp->k = 0;
		}
		if (got < want)
			break;
	}
}

/* Run fn over the rows of a dataset in order, a batch at a time. */
static void
dataset_pass(fit_state *fs, dataset *ds, batch_fn fn, void *arg)
{
	rowsource  *s = ds->src;
	int32		k = 0;

	if (s->in_memory)
	{
		for (int64 i = ds->lo; i < ds->hi; i++)
		{
			fs->slot_row[k] = gather_row(s, i, fs->xbuf + (size_t) k * s->n_in,
										 fs->ybuf + (size_t) k * s->y_width);
			if (++k == fs->batch)
			{
				fn(fs, fs->xbuf, fs->ybuf, k, arg);
				k = 0;
			}
		}
	}
	else
	{
		stream_pass sp;

		memset(&sp, 0, sizeof(sp));
		sp.fs = fs;
		sp.src = s;
		stream_dataset(fs, ds, &sp, stream_row, fn, arg);
		k = sp.k;
	}
	if (k > 0)
		fn(fs, fs->xbuf, fs->ybuf, k, arg);
}

/* Seconds since start. */
static double
seconds_since(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_DOUBLE(now);
}

/* Seconds between NOTICEs on the progress within a long epoch. */
#define PROGRESS_NOTICE_SECS 10.0

/*
 * After a training batch: the epoch's progress for nn_progress, and for a
 * verbose fit a NOTICE every 10 s of a long epoch.
 */
static void
report_progress(fit_state *fs)
{
	double		loss = fs->loss_sum / (double) Max(fs->seen, 1);
	double		secs;

	nnpg_progress_rows(fs->seen, loss);
	if (!fs->verbose ||
		(secs = seconds_since(fs->epoch_start)) < fs->noticed + PROGRESS_NOTICE_SECS)
		return;
	fs->noticed = secs;
	ereport(NOTICE,
			(errmsg_internal("epoch %d/%d: " INT64_FORMAT "/" INT64_FORMAT " rows (%.0f%%) loss=%.4f, %.0f s, epoch eta %.0f s",
							 fs->epoch, fs->epochs, fs->seen, fs->epoch_rows,
							 100.0 * fs->seen / Max(fs->epoch_rows, 1), loss, secs,
							 secs * (fs->epoch_rows - fs->seen) / Max(fs->seen, 1))));
}

/* One optimizer step on a batch. */
static void
train_step(fit_state *fs, const float *x, const float *y, int32 n, void *arg)
{
	double		loss_sum = 0;
	int64_t		correct = 0;
	nn_error	err;

	/* once per batch, so a cancel stops training */
	CHECK_FOR_INTERRUPTS();
	fs->batch_no++;
	memset(&err, 0, sizeof(err));
	nnpg_check_rows(nn_model_train_batch(fs->model, x, y, n, &fs->rng,
										 &loss_sum, &correct, &err),
					&err, fs->slot_row);
	fs->loss_sum += loss_sum;
	fs->correct += correct;
	fs->seen += n;
	report_progress(fs);
}

/* Loss and correct count of a validation batch. */
static void
eval_step(fit_state *fs, const float *x, const float *y, int32 n, void *arg)
{
	double		loss_sum = 0;
	int64_t		correct = 0;
	nn_error	err;

	CHECK_FOR_INTERRUPTS();
	memset(&err, 0, sizeof(err));
	nnpg_check_rows(nn_model_evaluate_batch(fs->model, NULL, x, y, n, fs->loss,
											NULL, 0, &loss_sum, &correct, &err),
					&err, fs->slot_row);
	fs->loss_sum += loss_sum;
	fs->correct += correct;
	fs->seen += n;
}

/* Feed a batch to the statistics of normalize layers. */
static void
adapt_step(fit_state *fs, const float *x, const float *y, int32 n, void *arg)
{
	nn_error	err;

	CHECK_FOR_INTERRUPTS();
	memset(&err, 0, sizeof(err));
	nnpg_check_rows(nn_model_adapt_batch(fs->model, x, n, &err), &err,
					fs->slot_row);
}

/* Add a row to the batch being built; train when it is full. */
static inline void
batch_add(fit_state *fs, int32 *k)
{
	if (++(*k) == fs->batch)
	{
		train_step(fs, fs->xbuf, fs->ybuf, *k, NULL);
		*k = 0;
	}
}

/* Buffer a streamed row for the bounded shuffle, evicting one to the batch. */
static void
shuffle_row(nnpg_reader *r, void *arg)
{
	stream_pass *sp = (stream_pass *) arg;
	fit_state  *fs = sp->fs;
	int32		n_in = sp->src->n_in;
	int32		y_width = sp->src->y_width;
	int64		j;

	/* once the buffer is full, the row takes a random buffered row's place */
	if (sp->filled < sp->cap)
		j = sp->filled++;
	else
	{
		j = (int64) nn_rng_below(&fs->rng, (uint64) sp->cap);
		memcpy(fs->xbuf + (size_t) sp->k * n_in, sp->bx + j * n_in,
			   sizeof(float) * n_in);
		memcpy(fs->ybuf + (size_t) sp->k * y_width, sp->by + j * y_width,
			   sizeof(float) * y_width);
		fs->slot_row[sp->k++] = sp->brow[j];
	}
	nnpg_reader_features(r, sp->bx + j * n_in);
	nnpg_reader_target(r, sp->by + j * y_width);
	sp->brow[j] = r->row_no;
}


/* Emit the rows left in a bounded-shuffle buffer in random order. */
static void
drain_shuffle_buffer(fit_state *fs, stream_pass *sp)
{
	rowsource  *s = sp->src;
	uint32	   *rest = palloc(sizeof(uint32) * sp->filled);

	for (int64 i = 0; i < sp->filled; i++)
		rest[i] = (uint32) i;
	nn_rng_shuffle(&fs->rng, rest, (size_t) sp->filled);
	for (int64 i = 0; i < sp->filled; i++)
	{
		memcpy(fs->xbuf + (size_t) sp->k * s->n_in, sp->bx + rest[i] * s->n_in,
			   sizeof(float) * s->n_in);
		memcpy(fs->ybuf + (size_t) sp->k * s->y_width,
			   sp->by + rest[i] * s->y_width,
			   sizeof(float) * s->y_width);
		fs->slot_row[sp->k] = sp->brow[rest[i]];
		batch_add(fs, &sp->k);
	}
	pfree(rest);
}

/* One epoch over streamed rows, shuffled through a bounded buffer. */
static void
train_epoch_streamed(fit_state *fs, dataset *ds)
{
	rowsource  *s = ds->src;
	int64		n = ds->hi - ds->lo;
	size_t		row_bytes = sizeof(float) * ((size_t) s->n_in + s->y_width);
	int64		cap = (int64) (nnpg_data_cache_bytes() / row_bytes);
	stream_pass sp;

	/*
	 * Fill a buffer, then emit a random buffered row for each new one; what
	 * remains goes out in random order.
	 */
	cap = Max(cap, (int64) fs->batch);
	cap = Min(cap, Min(n, (int64) (1 << 20)));
	cap = Max(cap, 1);
	memset(&sp, 0, sizeof(sp));
	sp.fs = fs;
	sp.src = s;
	sp.cap = cap;
	sp.bx = MemoryContextAllocHuge(CurrentMemoryContext, (size_t) cap * s->n_in * sizeof(float));
	sp.by = MemoryContextAllocHuge(CurrentMemoryContext, (size_t) cap * s->y_width * sizeof(float));
	sp.brow = MemoryContextAllocHuge(CurrentMemoryContext, (size_t) cap * sizeof(int64));

	stream_dataset(fs, ds, &sp, shuffle_row, train_step, NULL);
	drain_shuffle_buffer(fs, &sp);
	pfree(sp.bx);
	pfree(sp.by);
	pfree(sp.brow);
	if (sp.k > 0)
		train_step(fs, fs->xbuf, fs->ybuf, sp.k, NULL);
}

/* One epoch of training over a dataset. */
static void
train_epoch(fit_state *fs, dataset *ds)
{
	rowsource  *s = ds->src;
	int64		n = ds->hi - ds->lo;
	int32		k = 0;

	if (!s->in_memory)
	{
		if (fs->shuffle)
			train_epoch_streamed(fs, ds);
		else
			dataset_pass(fs, ds, train_step, NULL);
		return;
	}
	if (fs->shuffle)
		nn_rng_shuffle(&fs->rng, fs->order, (size_t) n);
	for (int64 i = 0; i < n; i++)
	{
		fs->slot_row[k] = gather_row(s, fs->order[i],
									 fs->xbuf + (size_t) k * s->n_in,
									 fs->ybuf + (size_t) k * s->y_width);
		batch_add(fs, &k);
	}
	if (k > 0)
		train_step(fs, fs->xbuf, fs->ybuf, k, NULL);
}

/* ---------- helpers ---------- */

/* The "seed" recorded in a training jsonb; false if none. */
static bool
training_seed(Jsonb *training, int64 *seed)
{
	JsonbValue	v;

	if (training == NULL || !JB_ROOT_IS_OBJECT(training))
		return false;
	if (getKeyJsonValueFromContainer(&training->root, "seed", 4, &v) == NULL ||
		v.type != jbvNumeric)
		return false;
	*seed = DatumGetInt64(DirectFunctionCall1(numeric_int8,
											  NumericGetDatum(v.val.numeric)));
	return true;
}

/* A JSON object being written: its text and how many fields it has. */
typedef struct json_obj
{
	StringInfo	buf;
	int			fields;
} json_obj;

/* Start an object in buf. */
static void
jo_begin(json_obj *o, StringInfo buf)
{
	o->buf = buf;
	o->fields = 0;
	appendStringInfoChar(buf, '{');
}

/* Write a field's key; its value comes next. */
static void
jo_key(json_obj *o, const char *key)
{
	if (o->fields++ > 0)
		appendStringInfoString(o->buf, ", ");
	appendStringInfo(o->buf, "\"%s\": ", key);
}

/* "key": "string" */
static void
jo_string(json_obj *o, const char *key, const char *value)
{
	jo_key(o, key);
	escape_json(o->buf, value);
}

/* "key": number, or null when isnull or not finite. */
static void
jo_number(json_obj *o, const char *key, double value, bool isnull)
{
	jo_key(o, key);
	if (isnull)
		appendStringInfoString(o->buf, "null");
	else
		nnpg_json_number(o->buf, value);
}

/* "key": float, in its shortest form as a float. */
static void
jo_float(json_obj *o, const char *key, float value)
{
	jo_key(o, key);
	nnpg_json_float(o->buf, value);
}

/* "key": integer */
static void
jo_int(json_obj *o, const char *key, int64 value)
{
	jo_key(o, key);
	appendStringInfo(o->buf, INT64_FORMAT, value);
}

/* "key": true or false */
static void
jo_bool(json_obj *o, const char *key, bool value)
{
	jo_key(o, key);
	appendStringInfoString(o->buf, value ? "true" : "false");
}

/* "key": JSON text as it is */
static void
jo_raw(json_obj *o, const char *key, const char *json)
{
	jo_key(o, key);
	appendStringInfoString(o->buf, json);
}

/* End the object. */
static void
jo_end(json_obj *o)
{
	appendStringInfoChar(o->buf, '}');
}

/* ---------- nn_fit ---------- */

/* Positions of nn_fit's arguments, as the extension script declares them. */
typedef enum fit_argno
{
	FIT_ARG_MODEL,
	FIT_ARG_QUERY,
	FIT_ARG_EPOCHS,
	FIT_ARG_BATCH_SIZE,
	FIT_ARG_OPTIMIZER,
	FIT_ARG_LEARNING_RATE,
	FIT_ARG_LOSS,
	FIT_ARG_VALIDATION_QUERY,
	FIT_ARG_VALIDATION_SPLIT,
	FIT_ARG_SHUFFLE,
	FIT_ARG_SEED,
	FIT_ARG_EARLY_STOPPING_PATIENCE,
	FIT_ARG_OPTIONS,
	FIT_ARG_VERBOSE,
	FIT_ARG_VERSION
} fit_argno;

/* The SQL names of nn_fit's arguments, for errors about them. */
static const char *const fit_arg_names[] =
{
	[FIT_ARG_MODEL] = "model",
	[FIT_ARG_QUERY] = "query",
	[FIT_ARG_EPOCHS] = "epochs",
	[FIT_ARG_BATCH_SIZE] = "batch_size",
	[FIT_ARG_OPTIMIZER] = "optimizer",
	[FIT_ARG_LEARNING_RATE] = "learning_rate",
	[FIT_ARG_LOSS] = "loss",
	[FIT_ARG_VALIDATION_QUERY] = "validation_query",
	[FIT_ARG_VALIDATION_SPLIT] = "validation_split",
	[FIT_ARG_SHUFFLE] = "shuffle",
	[FIT_ARG_SEED] = "seed",
	[FIT_ARG_EARLY_STOPPING_PATIENCE] = "early_stopping_patience",
	[FIT_ARG_OPTIONS] = "options",
	[FIT_ARG_VERBOSE] = "verbose",
	[FIT_ARG_VERSION] = "version",
};

/* nn_fit's arguments, read once. */
typedef struct fit_args
{
	char	   *name;
	char	   *query;
	int32		epochs;
	int32		batch;
	char	   *optname;
	nn_optimizer_kind optkind;	/* optname, once checked */
	double		lr;
	char	   *lossname;		/* NULL: inferred */
	char	   *val_query;		/* NULL: none */
	double		val_split;
	bool		shuffle;
	int64		seed;			/* given, or random */
	bool		have_patience;
	int32		patience;
	Jsonb	   *options;
	bool		verbose;
	bool		version_isnull;
	int32		version;
} fit_args;

/* One nn_fit call: what its steps share, from the arguments to the store. */
typedef struct fit_call
{
	fit_args	a;
	fit_options fo;
	ReturnSetInfo *rsinfo;
	MemoryContext cxt;			/* "nnpg fit": everything of the call */
	nn_alloc   *alloc;			/* the core's allocations, in cxt */
	nnpg_model_row row;			/* the version training starts from */
	nn_model   *model;
	nnpg_model_row teacher_row;	/* distillation: the teacher's row */
	nn_model   *teacher;
	bool		built_now;		/* built here, from init_seed */
	int64		init_seed;
	bool		classification;
	int32		n_classes;		/* classification only */
	rowsource  *train_src;
	rowsource  *val_src;		/* validation_query's rows, or NULL */
	dataset		train;
	dataset		val;			/* when has_val */
	bool		has_val;
	fit_state	fs;
	/* the epochs */
	StringInfoData history;		/* JSON array of every epoch's metrics */
	StringInfoData metrics;		/* JSON object of the last epoch's */
	double		best_monitor;	/* early stopping: best loss, epochs since */
	int32		wait;
	double		plateau_best;	/* plateau schedule: the same */
	int32		plateau_wait;
	int32		epochs_run;
	double		secs_run;		/* their seconds */
	bool		stopped_early;
	/* data-parallel training (options.workers); round_plan NULL: none */
	SPIPlanPtr	round_plan;		/* the rounds over the training query */
	nnpg_round_kind round_kind;	/* where they train */
	SPIPlanPtr	val_plan;		/* evaluation rounds of validation_query */
	int			guc_level;		/* the planner settings of the rounds */
	int32		rounds;			/* per epoch */
	int32		round_threads;	/* nnpg.threads of each replica */
	int64		buffer_rows;	/* a replica's shuffle buffer */
	int64		max_replicas;	/* most replicas merged in a round */
	int64		par_skipped;	/* rows with NULLs skipped in an epoch */
	bytea	   *teacher_bytes;
	char	   *train_columns;	/* JSON arrays of the queries' column names */
	char	   *val_columns;
	int64		round_id0;		/* a random first round id (see parallel.c) */
	int64		rounds_run;
	/* where the rounds' time went: all of it, the slowest replica of
	 * each round (rows read and trained), merging in this process */
	double		round_secs;
	double		compute_secs;
	double		merge_secs;
} fit_call;

/* One epoch's figures. */
typedef struct epoch_result
{
	int32		epoch;
	double		loss;
	double		acc;			/* classification only */
	double		vloss;			/* with validation data only */
	double		vacc;
	double		secs;
} epoch_result;

/* The value of an argument that must not be NULL. */
static Datum
required_arg(FunctionCallInfo fcinfo, fit_argno argno)
{
	if (PG_ARGISNULL(argno))
		nnpg_null_argument(fit_arg_names[argno]);
	return PG_GETARG_DATUM(argno);
}

/* A text argument that may be NULL, as a C string or NULL. */
static char *
optional_text_arg(FunctionCallInfo fcinfo, fit_argno argno)
{
	if (PG_ARGISNULL(argno))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* Read nn_fit's arguments, in order; a NULL where one is needed fails. */
static void
fit_read_args(FunctionCallInfo fcinfo, fit_args *a)
{
	a->name = nnpg_text_to_cstring_arg(fcinfo, FIT_ARG_MODEL,
									   fit_arg_names[FIT_ARG_MODEL]);
	a->query = nnpg_text_to_cstring_arg(fcinfo, FIT_ARG_QUERY,
										fit_arg_names[FIT_ARG_QUERY]);
	a->epochs = DatumGetInt32(required_arg(fcinfo, FIT_ARG_EPOCHS));
	a->batch = DatumGetInt32(required_arg(fcinfo, FIT_ARG_BATCH_SIZE));
	a->optname = nnpg_text_to_cstring_arg(fcinfo, FIT_ARG_OPTIMIZER,
										  fit_arg_names[FIT_ARG_OPTIMIZER]);
	a->lr = DatumGetFloat8(required_arg(fcinfo, FIT_ARG_LEARNING_RATE));
	a->lossname = optional_text_arg(fcinfo, FIT_ARG_LOSS);
	a->val_query = optional_text_arg(fcinfo, FIT_ARG_VALIDATION_QUERY);
	a->val_split = DatumGetFloat8(required_arg(fcinfo, FIT_ARG_VALIDATION_SPLIT));
	a->shuffle = DatumGetBool(required_arg(fcinfo, FIT_ARG_SHUFFLE));
	a->seed = PG_ARGISNULL(FIT_ARG_SEED) ? nnpg_random_seed() :
		PG_GETARG_INT64(FIT_ARG_SEED);
	a->have_patience = !PG_ARGISNULL(FIT_ARG_EARLY_STOPPING_PATIENCE);
	if (a->have_patience)
		a->patience = PG_GETARG_INT32(FIT_ARG_EARLY_STOPPING_PATIENCE);
	a->options = DatumGetJsonbP(required_arg(fcinfo, FIT_ARG_OPTIONS));
	a->verbose = DatumGetBool(required_arg(fcinfo, FIT_ARG_VERBOSE));
	a->version_isnull = PG_ARGISNULL(FIT_ARG_VERSION);
	if (!a->version_isnull)
		a->version = PG_GETARG_INT32(FIT_ARG_VERSION);
}

/* Check the arguments' values before any work: ranges, names, the caller. */
static void
fit_check_args(FunctionCallInfo fcinfo, fit_args *a)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (a->epochs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("epochs must be at least 1, not %d", a->epochs)));
	if (a->batch < 1 || a->batch > 1048576)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and 1048576, not %d", a->batch)));
	if (!(a->lr > 0) || !isfinite(a->lr) || a->lr > FLT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("learning_rate must be a positive number, not %g", a->lr)));
	if (!(a->val_split >= 0 && a->val_split < 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("validation_split must be at least 0 and less than 1, not %g",
						a->val_split)));
	if (a->val_split > 0 && a->val_query != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("validation_split and validation_query cannot be used together")));
	if (a->have_patience && a->patience < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("early_stopping_patience must not be negative, not %d",
						a->patience)));
	if (nn_optimizer_from_name(a->optname, &a->optkind) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized optimizer \"%s\"", a->optname),
				 errhint("Optimizers are sgd, momentum, nesterov, adagrad, rmsprop, adam and adamw.")));
	/* a named loss is checked now, before any data is read */
	if (a->lossname != NULL)
		(void) nnpg_choose_loss(a->lossname, NULL, false);
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
}

/* The optimizer settings: the optimizer's defaults, then the options. */
static void
fit_read_options(const fit_args *a, fit_options *fo)
{
	nn_error	err;

	nn_optimizer_spec_init(&fo->opt, a->optkind, (float) a->lr);
	parse_options(a->options, fo);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_optimizer_spec_check(&fo->opt, &err), &err);
	if (fo->workers > max_parallel_workers)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"workers\" must be at most max_parallel_workers (%d), not %d",
						max_parallel_workers, fo->workers),
				 errhint("Raise max_parallel_workers (and max_worker_processes) to train on more workers.")));
	if (fo->have_sync_rows && fo->workers == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"sync_rows\" needs \"workers\"")));
	if (fo->have_sync_rows && fo->sync_rows < a->batch)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"sync_rows\" must be at least batch_size (%d), not " INT64_FORMAT,
						a->batch, fo->sync_rows)));
}

/* Lock the model name, fetch the version to train and load it, or reset it. */
static void
fit_load_model(fit_call *fc)
{
	nn_model   *fresh = NULL;
	nn_error	err;

	/* concurrent fits of one model take turns; then see the latest */
	nnpg_lock_model_name(fc->a.name);
	nnpg_fetch_model(fc->a.name, fc->a.version_isnull, fc->a.version, true,
					 false, fc->cxt, &fc->row);
	if (fc->row.weights == NULL)
		return;					/* built from the first training row */

	fc->model = nnpg_load_model(fc->row.weights, fc->cxt);
	if (nn_model_is_quantized(fc->model))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("version %d of model \"%s\" is int8 and cannot be trained",
						fc->row.version, fc->a.name),
				 errhint("Train the float version it was quantized from (see \"from_version\" in nn_models.training) with nn_fit's version argument, then quantize it again.")));
	if (!fc->fo.reset)
		return;
	fc->init_seed = fc->a.seed;
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_create(&fresh, nn_model_get_spec(fc->model),
							   (uint64) fc->init_seed,
							   nnpg_max_model_bytes(), fc->alloc, &err),
			   &err);
	nn_model_free(fc->model);
	fc->model = fresh;
	fc->built_now = true;
}

/* A source of query's rows, its reader on the first; *has_row if any. */
static rowsource *
open_source(const char *label, const char *query, int32 n_in,
			bool skip_nulls, bool *has_row)
{
	rowsource  *src = palloc0(sizeof(rowsource));

	src->r.label = label;
	src->r.has_target = true;
	src->r.skip_nulls = skip_nulls;
	src->r.n_in = n_in;
	nnpg_reader_open(&src->r, query);
	*has_row = nnpg_reader_next(&src->r);
	return src;
}

/* Open the training query on its first row, which a model yet unbuilt needs. */
static void
fit_open_training(fit_call *fc)
{
	bool		has_row;
	int32		n_in = fc->model ? (int32) nn_model_input_size(fc->model) : 0;

	fc->train_src = open_source("query", fc->a.query, n_in, fc->fo.skip_nulls,
								&has_row);
	if (!has_row)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query returned no rows to train on"),
				 fc->train_src->r.n_skipped > 0 ?
				 errdetail("All " INT64_FORMAT " rows had null values and were skipped.",
						   fc->train_src->r.n_skipped) : 0));
}

/* Build a model created without an input shape, sized by the first row. */
static void
fit_build_model(fit_call *fc)
{
	nnpg_reader *r = &fc->train_src->r;
	nn_model_spec spec;
	nn_error	err;

	if (fc->model != NULL)
		return;
	if (r->width < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("row " INT64_FORMAT ": no feature values", r->row_no)));
	nnpg_parse_layers(fc->row.layers, &spec, false);
	spec.input_rank = 1;
	spec.input_shape[0] = r->width;
	if (!training_seed(fc->row.training, &fc->init_seed))
		fc->init_seed = fc->a.seed;
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_create(&fc->model, &spec, (uint64) fc->init_seed,
							   nnpg_max_model_bytes(), fc->alloc, &err),
			   &err);
	r->n_in = r->width;
	fc->built_now = true;
}

/* Choose the loss, set the model up for training and size its buffers. */
static void
fit_prepare_model(fit_call *fc)
{
	nnpg_reader *r = &fc->train_src->r;
	nn_model   *model = fc->model;
	float	   *cw;
	nn_error	err;

	/* the loss, and how it reads targets */
	fc->fs.loss = nnpg_choose_loss(fc->a.lossname, model, r->target_scalar);
	nnpg_target_setup(r, model, fc->fs.loss);
	fc->classification = nn_loss_is_classification(fc->fs.loss);
	if (fc->classification)
		fc->n_classes = nnpg_loss_classes(model, fc->fs.loss);
	if (fc->fo.n_cw > 0 && !fc->classification)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"class_weight\" needs a classification loss, not %s",
						nn_loss_name(fc->fs.loss))));
	cw = class_weight_array(&fc->fo, fc->n_classes);

	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_set_training(model, &fc->fo.opt, fc->fs.loss, cw,
									 cw ? fc->n_classes : 0, &err), &err);
	if (fc->fo.reset)
		nn_model_reset_optimizer(model);
	nnpg_check(nn_model_prepare(model, fc->a.batch, true,
								nnpg_max_model_bytes(), &err), &err);
}

/* Distillation: load the teacher once and attach it to the model. */
static void
fit_load_teacher(fit_call *fc)
{
	const fit_options *fo = &fc->fo;
	nn_error	err;

	if (fo->teacher == NULL)
		return;
	if (strcmp(fo->teacher, fc->a.name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" cannot be its own teacher", fc->a.name),
				 errhint("Distil from another model, or copy a version with nn_export() and nn_import().")));
	fc->teacher = nnpg_load_named_model(fo->teacher, !fo->have_teacher_version,
										fo->teacher_version, fc->cxt,
										&fc->teacher_row);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_prepare(fc->teacher, fc->a.batch, false,
								nnpg_max_model_bytes(), &err), &err);
	if (nn_model_set_teacher(fc->model, fc->teacher, fo->temperature,
							 fo->distill_alpha, &err) != NN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" cannot learn from teacher \"%s\": %s",
						fc->a.name, fo->teacher, err.message)));
}

/* Set up what every epoch uses: the model, seeded rng and batch buffers. */
static void
fit_init_state(fit_call *fc)
{
	fit_state  *fs = &fc->fs;
	size_t		batch = (size_t) fc->a.batch;

	fs->model = fc->model;
	fs->batch = fc->a.batch;
	fs->shuffle = fc->a.shuffle;
	fs->verbose = fc->a.verbose;
	fs->epochs = fc->a.epochs;
	nn_rng_seed(&fs->rng, (uint64) fc->a.seed);
	fs->xbuf = MemoryContextAllocHuge(fc->cxt, sizeof(float) * batch *
									  nn_model_input_size(fc->model));
	fs->ybuf = MemoryContextAllocHuge(fc->cxt, sizeof(float) * batch *
									  nnpg_reader_target_width(&fc->train_src->r));
	fs->slot_row = MemoryContextAllocHuge(fc->cxt, sizeof(int64) * batch);
}

/* Take the last val_split of the training rows for validation. */
static void
fit_split_validation(fit_call *fc)
{
	rowsource  *s = fc->train_src;
	int64		n_train = (int64) floor((double) s->n * (1.0 - fc->a.val_split));

	if (n_train == s->n || n_train < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("too few rows for validation_split %g", fc->a.val_split),
				 errdetail("The query returned " INT64_FORMAT " rows, which leaves " INT64_FORMAT " for training and " INT64_FORMAT " for validation.",
						   s->n, n_train, s->n - n_train)));
	fc->train.hi = n_train;
	fc->val.src = s;
	fc->val.lo = n_train;
	fc->val.hi = s->n;
	fc->has_val = true;
}

/* Read the validation query's rows, within what the cache has left. */
static void
fit_load_validation(fit_call *fc, size_t cache_left, float *scratch_x,
					float *scratch_y)
{
	bool		has_row;
	rowsource  *v;

	fc->val_src = open_source("validation query", fc->a.val_query,
							  (int32) nn_model_input_size(fc->model),
							  fc->fo.skip_nulls, &has_row);
	v = fc->val_src;
	if (!has_row)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("validation query returned no rows")));
	if (v->r.target_scalar != fc->train_src->r.target_scalar)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the targets of the validation query and the query are of different kinds")));
	nnpg_target_setup(&v->r, fc->model, fc->fs.loss);
	(void) load_rows(v, cache_left, scratch_x, scratch_y);
	fc->val.src = v;
	fc->val.lo = 0;
	fc->val.hi = v->n;
	fc->has_val = true;
}

/* Read the training and validation rows, and the epoch order of the first. */
static void
fit_load_data(fit_call *fc)
{
	rowsource  *s = fc->train_src;
	float	   *scratch_x = palloc(sizeof(float) * nn_model_input_size(fc->model));
	float	   *scratch_y = palloc(sizeof(float) * nnpg_reader_target_width(&s->r));
	size_t		cache_left = nnpg_data_cache_bytes();

	/* the training rows first; validation rows get what is left */
	cache_left -= load_rows(s, cache_left, scratch_x, scratch_y);
	fc->train.src = s;
	fc->train.lo = 0;
	fc->train.hi = s->n;
	if (fc->a.val_split > 0)
		fit_split_validation(fc);
	else if (fc->a.val_query != NULL)
		fit_load_validation(fc, cache_left, scratch_x, scratch_y);

	fc->fs.epoch_rows = fc->train.hi - fc->train.lo;
	if (s->in_memory)
	{
		int64		n = fc->train.hi - fc->train.lo;

		fc->fs.order = MemoryContextAllocHuge(fc->cxt, sizeof(uint32) * (size_t) n);
		for (int64 i = 0; i < n; i++)
			fc->fs.order[i] = (uint32) (fc->train.lo + i);
	}
}

/* Let normalize layers learn their statistics from the training rows. */
static void
fit_adapt(fit_call *fc)
{
	nn_error	err;

	if (!nn_model_needs_adapt(fc->model))
		return;
	dataset_pass(&fc->fs, &fc->train, adapt_step, NULL);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_adapt_finish(fc->model, &err), &err);
}

/* ---------- data-parallel training: rounds ---------- */

/*
 * Rows between merges when options.sync_rows is not given: 8192 per
 * worker, and at most 8 rounds an epoch, since every round reads the whole
 * query (doc/scaling.md has the measurements behind both).
 */
#define DEFAULT_SYNC_ROWS_PER_WORKER 8192
#define DEFAULT_MAX_ROUNDS 8

/*
 * With options.workers, plan the training rounds; false, with a NOTICE,
 * when the planner would run them in one process, and training then
 * happens here as without the option.
 */
static bool
fit_plan_rounds(fit_call *fc)
{
	nnpg_round_kind val_kind;

	if (fc->fo.workers == 0)
		return false;
	fc->guc_level = NewGUCNestLevel();
	fc->round_plan = nnpg_round_prepare(fc->a.query, fc->fo.workers,
										&fc->round_kind);
	if (fc->round_kind == NNPG_ROUNDS_NONE)
	{
		SPI_freeplan(fc->round_plan);
		fc->round_plan = NULL;
		AtEOXact_GUC(true, fc->guc_level);
		/* one worker without a leader costs the planner what one backend does */
		if (fc->fo.workers == 1)
			return false;
		ereport(NOTICE,
				(errmsg("training on one backend: the training query cannot run in parallel"),
				 errdetail("The planner gave the query no parallel workers, for example because it calls a function that is not PARALLEL SAFE or reads a temporary table."),
				 errhint("Read the rows from a table, or a view of one, with parallel safe expressions.")));
		return false;
	}
	/* validation rows are evaluated wherever that query's plan runs */
	if (fc->a.val_query != NULL)
		fc->val_plan = nnpg_round_prepare(fc->a.val_query, fc->fo.workers,
										  &val_kind);
	return true;
}

/* The column names of rows of type desc, as a JSON array (text). */
static char *
column_names_json(TupleDesc desc)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; desc != NULL && i < desc->natts; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, NameStr(TupleDescAttr(desc, i)->attname));
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* The same for a query the rounds read without a reader of their own. */
static char *
query_column_names_json(const char *query)
{
	SPIPlanPtr	plan = SPI_prepare(query, 0, NULL);
	char	   *json;

	if (plan == NULL)
		elog(ERROR, "could not prepare the query: %s",
			 SPI_result_code_string(SPI_result));
	json = column_names_json(((CachedPlanSource *)
							  linitial(SPI_plan_get_plan_sources(plan)))->resultDesc);
	SPI_freeplan(plan);
	return json;
}

/* The number of rows query returns, counted in parallel. */
static int64
count_rows(const char *query)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(psprintf("SELECT pg_catalog.count(*) FROM (%s) AS q",
												   query),
										  0, NULL, CURSOR_OPT_PARALLEL_OK);
	bool		isnull;
	int64		n;

	if (plan == NULL || SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count the rows of the query");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	SPI_freeplan(plan);
	return n;
}

/*
 * Size the rounds from the query's row count: rounds per epoch, each
 * replica's threads and shuffle buffer; the training rows are streamed
 * (for normalize adaptation), never kept here.
 */
static void
fit_size_rounds(fit_call *fc)
{
	rowsource  *s = fc->train_src;
	int32		workers = fc->fo.workers;
	int64		n = count_rows(fc->a.query);
	int64		n_train = (int64) ceil((double) n * (1.0 - fc->a.val_split));
	int64		sync = fc->fo.have_sync_rows ? fc->fo.sync_rows :
		(int64) DEFAULT_SYNC_ROWS_PER_WORKER * workers;
	size_t		row_bytes;

	fc->rounds = (int32) Min((n_train + sync - 1) / sync, PG_INT32_MAX);
	if (!fc->fo.have_sync_rows)
		fc->rounds = Min(fc->rounds, DEFAULT_MAX_ROUNDS);
	fc->rounds = Max(fc->rounds, 1);
	/* workers x threads within the cores; a Citus node's cores are its own */
	fc->round_threads = fc->round_kind == NNPG_ROUNDS_CITUS ? 1 :
		Max(1, Min(nnpg_threads, nnpg_online_cpus() / workers));

	s->n_in = s->r.n_in;
	s->y_width = nnpg_reader_target_width(&s->r);
	s->in_memory = false;
	/* a replica keeps a row's features as bytes when every column is bytea */
	row_bytes = (size_t) s->n_in * (s->r.bytes_only ? 1 : sizeof(float)) +
		sizeof(float) * s->y_width + sizeof(int64);
	fc->buffer_rows = Min((n_train + fc->rounds - 1) / fc->rounds,
						  (int64) (nnpg_data_cache_bytes() / workers / row_bytes));
	fc->buffer_rows = Max(fc->buffer_rows, fc->a.batch);
	fc->train.src = s;
	fc->train.lo = 0;
	fc->train.hi = PG_INT64_MAX;
	fc->has_val = fc->a.val_split > 0 || fc->a.val_query != NULL;
	fc->fs.epoch_rows = n_train;
	fc->round_id0 = nnpg_random_seed() >> 16;
	fc->train_columns = column_names_json(s->r.held->tts_tupleDescriptor);
	if (fc->a.val_query != NULL)
		fc->val_columns = query_column_names_json(fc->a.val_query);
	if (fc->teacher)
		fc->teacher_bytes = nnpg_serialize_model(fc->teacher, false);
}

/*
 * The batch of each replica: batch_size over the replicas (the workers, or
 * as many as the last round merged), so that the merge of their steps is a
 * step of batch_size rows, as one backend takes.
 */
static int32
replica_batch(fit_call *fc)
{
	int64		replicas = fc->max_replicas > 0 ? fc->max_replicas :
		fc->fo.workers;

	return (int32) Max((fc->a.batch + replicas - 1) / replicas, 1);
}

/* The settings of round r of epoch e, for the replicas. */
static Jsonb *
round_settings(fit_call *fc, int32 e, int32 r, bool evaluate)
{
	StringInfoData buf;
	json_obj	o;

	initStringInfo(&buf);
	jo_begin(&o, &buf);
	jo_bool(&o, "evaluate", evaluate);
	jo_int(&o, "batch_size", replica_batch(fc));
	jo_int(&o, "epoch", e);
	jo_int(&o, "round", r);
	jo_int(&o, "rounds", evaluate ? 1 : fc->rounds);
	jo_int(&o, "round_id", fc->round_id0 + fc->rounds_run);
	jo_int(&o, "seed", fc->a.seed);
	jo_number(&o, "validation_split", fc->a.val_split, false);
	/* evaluation rounds take the validation rows, training rounds not */
	jo_bool(&o, "validation_rows", evaluate);
	jo_bool(&o, "skip_nulls", fc->fo.skip_nulls);
	jo_bool(&o, "shuffle", fc->a.shuffle);
	jo_int(&o, "threads", fc->round_threads);
	jo_int(&o, "buffer_rows", fc->buffer_rows);
	jo_float(&o, "temperature", fc->fo.temperature);
	jo_float(&o, "distill_alpha", fc->fo.distill_alpha);
	jo_raw(&o, "columns", evaluate && fc->val_columns ? fc->val_columns :
		   fc->train_columns);
	jo_end(&o);
	return DatumGetJsonbP(nnpg_jsonb_from_cstring(buf.data));
}

/* Run a round from the current model; add its counters to sum. */
static void
fit_round(fit_call *fc, SPIPlanPtr plan, Jsonb *settings,
		  nnpg_replica_counts *sum)
{
	instr_time	start;
	bytea	   *model;
	bytea	   *flat;
	double		merge_secs;
	nnpg_replica_counts c;
	const uint8 *bytes;
	size_t		len;
	nn_model   *merged;

	INSTR_TIME_SET_CURRENT(start);
	model = nnpg_serialize_model(fc->model, true);
	flat = nnpg_round_run(plan, model, fc->teacher_bytes, settings,
						  fc->round_id0 + fc->rounds_run, &merge_secs);
	pfree(model);
	fc->rounds_run++;
	fc->merge_secs += merge_secs;
	if (flat == NULL)
	{
		fc->round_secs += seconds_since(start);
		return;					/* no replica had a row */
	}
	nnpg_replica_read(flat, &c, &bytes, &len);
	fc->compute_secs += c.max_seconds;
	if (c.trained > 0)
	{
		merged = nnpg_load_model_bytes(bytes, len, fc->cxt);
		nn_model_free(fc->model);
		fc->model = fc->fs.model = merged;
	}
	pfree(flat);
	fc->round_secs += seconds_since(start);
	sum->rows += c.rows;
	sum->correct += c.correct;
	sum->loss_sum += c.loss_sum;
	sum->skipped += c.skipped;
	fc->max_replicas = Max(fc->max_replicas, c.replicas);
}

/* Epoch e in rounds of replicas, then their evaluation of the validation rows. */
static void
fit_epoch_rounds(fit_call *fc, int32 e, epoch_result *er)
{
	nnpg_replica_counts t;
	nnpg_replica_counts v;

	memset(&t, 0, sizeof(t));
	fc->fs.rounds = fc->rounds;
	for (int32 r = 0; r < fc->rounds; r++)
	{
		fc->fs.round = r + 1;
		fit_round(fc, fc->round_plan, round_settings(fc, e, r, false), &t);
		nnpg_progress_rows(t.rows, t.loss_sum / (double) Max(t.rows, 1));
	}
	if (t.rows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query returned no rows to train on")));
	fc->train.hi = t.rows;
	fc->par_skipped = t.skipped;
	er->loss = t.loss_sum / (double) t.rows;
	if (fc->classification)
		er->acc = (double) t.correct / (double) t.rows;
	if (!fc->has_val)
		return;

	memset(&v, 0, sizeof(v));
	nnpg_progress_phase(NNPG_PHASE_VALIDATING, e, -1);
	fit_round(fc, fc->val_plan ? fc->val_plan : fc->round_plan,
			  round_settings(fc, e, 0, true), &v);
	if (v.rows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s returned no rows", fc->val_plan ?
						"validation query" : "validation_split left no validation")));
	fc->val.lo = 0;
	fc->val.hi = v.rows;
	er->vloss = v.loss_sum / (double) v.rows;
	if (fc->classification)
		er->vacc = (double) v.correct / (double) v.rows;
}

/* Zero the running sums of an epoch's pass. */
static void
reset_sums(fit_state *fs)
{
	fs->loss_sum = 0;
	fs->correct = 0;
	fs->seen = 0;
}

/* Train epoch e, then evaluate the validation rows; the figures in er. */
static void
fit_epoch(fit_call *fc, int32 e, epoch_result *er)
{
	fit_state  *fs = &fc->fs;
	instr_time	start;

	memset(er, 0, sizeof(*er));
	er->epoch = e;
	INSTR_TIME_SET_CURRENT(start);
	fs->epoch = e;
	fs->batch_no = 0;
	fs->epoch_start = start;
	fs->noticed = 0;
	reset_sums(fs);
	nnpg_progress_phase(NNPG_PHASE_TRAINING, e, fs->epoch_rows);
	if (fc->round_plan)
	{
		fit_epoch_rounds(fc, e, er);
		er->secs = seconds_since(start);
		return;
	}
	train_epoch(fs, &fc->train);
	er->loss = fs->loss_sum / (double) Max(fs->seen, 1);
	if (fc->classification)
		er->acc = (double) fs->correct / (double) Max(fs->seen, 1);

	if (fc->has_val)
	{
		reset_sums(fs);
		nnpg_progress_phase(NNPG_PHASE_VALIDATING, e, -1);
		dataset_pass(fs, &fc->val, eval_step, NULL);
		er->vloss = fs->loss_sum / (double) Max(fs->seen, 1);
		if (fc->classification)
			er->vacc = (double) fs->correct / (double) Max(fs->seen, 1);
	}
	er->secs = seconds_since(start);
}

/* Return an epoch as a row of nn_fit's result. */
static void
epoch_put_row(fit_call *fc, const epoch_result *er)
{
	Datum		values[6];
	bool		nulls[6] = {false, false, !fc->classification, !fc->has_val,
	!fc->has_val || !fc->classification, false};

	values[0] = Int32GetDatum(er->epoch);
	values[1] = Float8GetDatum(er->loss);
	values[2] = Float8GetDatum(er->acc);
	values[3] = Float8GetDatum(er->vloss);
	values[4] = Float8GetDatum(er->vacc);
	values[5] = Float8GetDatum(er->secs);
	tuplestore_putvalues(fc->rsinfo->setResult, fc->rsinfo->setDesc,
						 values, nulls);
}

/* Write an epoch's metrics object and append it to the history array. */
static void
epoch_history(fit_call *fc, const epoch_result *er)
{
	json_obj	o;

	resetStringInfo(&fc->metrics);
	jo_begin(&o, &fc->metrics);
	jo_int(&o, "epoch", er->epoch);
	jo_number(&o, "loss", er->loss, false);
	jo_number(&o, "accuracy", er->acc, !fc->classification);
	jo_number(&o, "val_loss", er->vloss, !fc->has_val);
	jo_number(&o, "val_accuracy", er->vacc,
			  !fc->has_val || !fc->classification);
	jo_number(&o, "seconds", er->secs, false);
	jo_float(&o, "learning_rate", nn_model_current_lr(fc->model));
	jo_end(&o);
	if (er->epoch > 1)
		appendStringInfoString(&fc->history, ", ");
	appendBinaryStringInfo(&fc->history, fc->metrics.data, fc->metrics.len);
}

/* The per-epoch NOTICE of a verbose fit: "epoch e/n: loss=...". */
static void
epoch_notice(fit_call *fc, const epoch_result *er)
{
	StringInfoData msg;

	initStringInfo(&msg);
	appendStringInfo(&msg, "epoch %d/%d: loss=%.4f", er->epoch, fc->a.epochs,
					 er->loss);
	if (fc->classification)
		appendStringInfo(&msg, " accuracy=%.4f", er->acc);
	if (fc->has_val)
	{
		appendStringInfo(&msg, " val_loss=%.4f", er->vloss);
		if (fc->classification)
			appendStringInfo(&msg, " val_accuracy=%.4f", er->vacc);
	}
	if (fc->round_plan)
		appendStringInfo(&msg, " [%d round%s, " INT64_FORMAT " replica%s]",
						 fc->rounds, fc->rounds == 1 ? "" : "s",
						 fc->max_replicas, fc->max_replicas == 1 ? "" : "s");
	appendStringInfo(&msg, " (%.1f s", er->secs);
	if (er->epoch < fc->a.epochs)
		appendStringInfo(&msg, ", eta %.0f s",
						 fc->secs_run / er->epoch * (fc->a.epochs - er->epoch));
	appendStringInfoString(&msg, ")");
	ereport(NOTICE, (errmsg_internal("%s", msg.data)));
	pfree(msg.data);
}

/* The plateau schedule: cut the rate when monitor has not improved long enough. */
static void
plateau_step(fit_call *fc, int32 e, double monitor)
{
	double		cur;
	double		next;

	if (monitor < fc->plateau_best)
	{
		fc->plateau_best = monitor;
		fc->plateau_wait = 0;
		return;
	}
	if (++fc->plateau_wait < fc->fo.plateau_patience)
		return;
	cur = nn_model_current_lr(fc->model);
	next = Max(cur * fc->fo.plateau_factor, fc->fo.min_lr);
	if (next < cur && cur > 0)
	{
		nn_model_scale_lr(fc->model, (float) (next / cur));
		if (fc->a.verbose)
			ereport(NOTICE,
					(errmsg_internal("epoch %d: reducing the learning rate to %g",
									 e, next)));
	}
	fc->plateau_wait = 0;
}

/* Early stopping: true when monitor has not improved for patience epochs. */
static bool
early_stop(fit_call *fc, int32 e, double monitor)
{
	if (monitor < fc->best_monitor)
	{
		fc->best_monitor = monitor;
		fc->wait = 0;
	}
	else
		fc->wait++;
	if (!fc->a.have_patience || fc->wait == 0 || fc->wait < fc->a.patience ||
		e >= fc->a.epochs)
		return false;
	fc->stopped_early = true;
	if (fc->a.verbose)
		ereport(NOTICE,
				(errmsg_internal("epoch %d: stopping early, %s has not improved for %d epochs",
								 e, fc->has_val ? "val_loss" : "loss", fc->wait)));
	return true;
}

/* Run the epochs: each a result row, a history entry and a NOTICE. */
static void
fit_run_epochs(fit_call *fc)
{
	ErrorContextCallback errcallback;

	initStringInfo(&fc->history);
	initStringInfo(&fc->metrics);
	appendStringInfoChar(&fc->history, '[');
	fc->best_monitor = get_float8_infinity();
	fc->plateau_best = get_float8_infinity();

	fc->fs.name = fc->a.name;
	fc->fs.epoch = 0;
	errcallback.callback = fit_error_callback;
	errcallback.arg = &fc->fs;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	for (int32 e = 1; e <= fc->a.epochs; e++)
	{
		epoch_result er;
		double		monitor;

		fit_epoch(fc, e, &er);
		fc->epochs_run = e;
		fc->secs_run += er.secs;
		epoch_put_row(fc, &er);
		epoch_history(fc, &er);
		if (fc->a.verbose)
			epoch_notice(fc, &er);

		/* early stopping and plateaus watch val_loss, else loss */
		monitor = fc->has_val ? er.vloss : er.loss;
		if (fc->fo.plateau)
			plateau_step(fc, e, monitor);
		if (early_stop(fc, e, monitor))
			break;
	}
	appendStringInfoChar(&fc->history, ']');
	error_context_stack = errcallback.previous;
}

/* The NOTICE of a verbose fit that skipped rows with nulls. */
static void
fit_report_skipped(fit_call *fc)
{
	int64		skipped = fc->train_src->r.n_skipped + fc->par_skipped +
		(fc->val_src ? fc->val_src->r.n_skipped : 0);

	if (fc->a.verbose && skipped > 0)
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " rows with null values",
						skipped)));
}

/* How a data-parallel fit ran, as JSON text for its training settings. */
static char *
fit_parallel_json(fit_call *fc)
{
	StringInfoData buf;
	json_obj	o;

	initStringInfo(&buf);
	jo_begin(&o, &buf);
	jo_int(&o, "workers", fc->fo.workers);
	jo_string(&o, "on", fc->round_kind == NNPG_ROUNDS_CITUS ? "citus" :
			  "parallel workers");
	jo_int(&o, "rounds_per_epoch", fc->rounds);
	jo_int(&o, "replicas", fc->max_replicas);
	jo_int(&o, "threads_per_replica", fc->round_threads);
	jo_int(&o, "rounds_run", fc->rounds_run);
	jo_number(&o, "round_seconds", fc->round_secs, false);
	jo_number(&o, "replica_seconds", fc->compute_secs, false);
	jo_number(&o, "merge_seconds", fc->merge_secs, false);
	jo_end(&o);
	return buf.data;
}

/* The training settings as JSON text, for the record and for nn_evaluate. */
static char *
fit_settings_json(fit_call *fc)
{
	const fit_args *a = &fc->a;
	const nn_model_spec *spec = nn_model_get_spec(fc->model);
	StringInfoData buf;
	json_obj	o;

	initStringInfo(&buf);
	jo_begin(&o, &buf);
	jo_string(&o, "optimizer", nn_optimizer_name(a->optkind));
	jo_number(&o, "learning_rate", a->lr, false);
	jo_string(&o, "loss", nn_loss_name(fc->fs.loss));
	jo_int(&o, "epochs", a->epochs);
	jo_int(&o, "epochs_run", fc->epochs_run);
	jo_int(&o, "batch_size", a->batch);
	jo_int(&o, "seed", a->seed);
	if (fc->built_now)
		jo_int(&o, "init_seed", fc->init_seed);
	jo_bool(&o, "shuffle", a->shuffle);
	jo_string(&o, "query", a->query);
	if (a->val_query != NULL)
		jo_string(&o, "validation_query", a->val_query);
	jo_number(&o, "validation_split", a->val_split, false);
	if (a->have_patience)
		jo_int(&o, "early_stopping_patience", a->patience);
	jo_bool(&o, "stopped_early", fc->stopped_early);
	jo_int(&o, "rows", fc->train.hi - fc->train.lo);
	jo_int(&o, "validation_rows", fc->has_val ? fc->val.hi - fc->val.lo : 0);
	jo_int(&o, "from_version", fc->row.version);
	jo_raw(&o, "input_shape",
		   nnpg_shape_to_json(spec->input_rank, spec->input_shape));
	jo_raw(&o, "options",
		   JsonbToCString(NULL, &a->options->root, VARSIZE(a->options)));
	if (fc->round_plan)
		jo_raw(&o, "parallel", fit_parallel_json(fc));
	if (fc->teacher)
	{
		StringInfoData t;
		json_obj	to;

		initStringInfo(&t);
		jo_begin(&to, &t);
		jo_string(&to, "model", fc->teacher_row.name);
		jo_int(&to, "version", fc->teacher_row.version);
		jo_float(&to, "temperature", fc->fo.temperature);
		jo_float(&to, "distill_alpha", fc->fo.distill_alpha);
		jo_end(&to);
		jo_raw(&o, "teacher", t.data);
	}
	jo_end(&o);
	return buf.data;
}

/* Insert the trained model as the next version, with settings and history. */
static void
fit_store(fit_call *fc)
{
	char	   *training = fit_settings_json(fc);
	bytea	   *weights = nnpg_serialize_model(fc->model, true);
	nnpg_model_facts facts;
	int32		new_version;

	nnpg_model_facts_of(fc->model, &facts);
	new_version = nnpg_insert_model(fc->a.name, true, 0, fc->row.owner,
									PointerGetDatum(fc->row.layers),
									nnpg_jsonb_from_cstring(training),
									nnpg_jsonb_from_cstring(fc->metrics.data), false,
									nnpg_jsonb_from_cstring(fc->history.data), false,
									weights, &facts);
	if (fc->a.verbose)
		ereport(NOTICE,
				(errmsg("stored version %d of model \"%s\"", new_version,
						fc->a.name)));
}

/* Close the readers, in the reverse order of opening. */
static void
fit_close_sources(fit_call *fc)
{
	if (fc->val_src)
		nnpg_reader_close(&fc->val_src->r);
	nnpg_reader_close(&fc->train_src->r);
}

/* nn_fit(model, query, epochs, ...): train and store a new version. */
PG_FUNCTION_INFO_V1(nnpg_fit);
Datum
nnpg_fit(PG_FUNCTION_ARGS)
{
	fit_call	fc;
	MemoryContext oldcxt;

	/* training ends by storing a version: fail before it, not after */
	nnpg_prevent_read_only("nn_fit()");
	nnpg_apply_threads();

	memset(&fc, 0, sizeof(fc));
	fit_read_args(fcinfo, &fc.a);
	fit_check_args(fcinfo, &fc.a);
	fit_read_options(&fc.a, &fc.fo);
	InitMaterializedSRF(fcinfo, 0);
	fc.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	fc.cxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg fit",
								   ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	oldcxt = MemoryContextSwitchTo(fc.cxt);
	fc.alloc = nnpg_alloc_create(fc.cxt);
	nnpg_progress_begin(fc.a.name, fc.a.epochs);

	/* init: the model, the rows and the state of the epochs */
	fit_load_model(&fc);
	fit_open_training(&fc);
	fit_build_model(&fc);
	fit_prepare_model(&fc);
	fit_load_teacher(&fc);
	fit_init_state(&fc);
	if (fit_plan_rounds(&fc))
		fit_size_rounds(&fc);
	else
		fit_load_data(&fc);
	fit_adapt(&fc);

	/* run */
	fit_run_epochs(&fc);

	/* end: store the new version, then release everything */
	fit_report_skipped(&fc);
	nnpg_progress_phase(NNPG_PHASE_STORING, 0, -1);
	fit_store(&fc);
	if (fc.round_plan)
		AtEOXact_GUC(true, fc.guc_level);
	fit_close_sources(&fc);
	nnpg_progress_end();
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	MemoryContextDelete(fc.cxt);
	return (Datum) 0;
}
