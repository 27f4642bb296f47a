/*
 * fit.c: nn_fit, training a model on the rows of a query.
 *
 * Flow: lock the model name (concurrent fits of one model serialize), load
 * the version to continue from (or build it: a model created without an
 * input shape takes it from the first row), read the training rows (and
 * the validation rows), adapt normalize layers, then run the epochs and,
 * only when all of it succeeded, insert the next version with weights,
 * optimizer state, settings and history.  An error or a cancel anywhere
 * stores nothing, and everything allocated lives in the call's "nnpg fit"
 * context, so nothing leaks.
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
	/* class_weight: weights[i] of class[i]; dense arrays use class = i */
	int			n_cw;
	int32	   *cw_class;
	float	   *cw_weight;
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
} fit_state;

/* "epoch 3, batch 17 of model "m"" on errors raised while training. */
static void
fit_error_callback(void *arg)
{
	fit_state  *fs = (fit_state *) arg;

	if (fs->epoch > 0)
		errcontext("training model \"%s\", epoch %d, batch " INT64_FORMAT,
				   fs->name, fs->epoch, fs->batch_no);
}

/* ---------- options ---------- */

static void bad_fit_option(const char *key, const char *what) pg_attribute_noreturn();

/* `option "momentum" must be a number` */
static void
bad_fit_option(const char *key, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be %s", key, what)));
	pg_unreachable();
}

/* A finite number option. */
static double
option_number(const char *key, JsonbValue *v)
{
	double		d;

	if (!nnpg_jsonb_number(v, &d) || !isfinite(d))
		bad_fit_option(key, "a number");
	return d;
}

/* A string option. */
static char *
option_string(const char *key, JsonbValue *v)
{
	if (v->type != jbvString)
		bad_fit_option(key, "a string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* class_weight: [w0, w1, ...] or {"0": w0, "3": w3}. */
static void
parse_class_weight(JsonbValue *v, fit_options *fo)
{
	JsonbContainer *c;
	int			n;

	if (v->type != jbvBinary)
		bad_fit_option("class_weight", "an array of weights or an object of class: weight pairs");
	c = v->val.binary.data;
	n = JsonContainerSize(c);
	fo->n_cw = n;
	fo->cw_class = palloc(sizeof(int32) * Max(n, 1));
	fo->cw_weight = palloc(sizeof(float) * Max(n, 1));
	if (JsonContainerIsArray(c))
	{
		for (int i = 0; i < n; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(c, i);
			double		w;

			if (e == NULL || !nnpg_jsonb_number(e, &w) || !isfinite(w) ||
				w < 0 || w > FLT_MAX)
				bad_fit_option("class_weight", "an array of non-negative numbers");
			fo->cw_class[i] = i;
			fo->cw_weight[i] = (float) w;
		}
	}
	else
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
			double		w;

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
			if (!nnpg_jsonb_number(&val, &w) || !isfinite(w) || w < 0 ||
				w > FLT_MAX)
				bad_fit_option("class_weight", "an object of class: non-negative weight pairs");
			fo->cw_class[i] = (int32) cls;
			fo->cw_weight[i] = (float) w;
			i++;
		}
		fo->n_cw = i;
	}
}

/* Parse the options jsonb over the optimizer's defaults. */
static void
parse_options(Jsonb *options, fit_options *fo)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		have_rate = false;
	bool		have_steps = false;

	fo->plateau_factor = 0.1;
	fo->plateau_patience = 10;
	fo->min_lr = 0;

	if (JB_ROOT_IS_SCALAR(options) || !JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));

	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		key = pnstrdup(k.val.string.val, k.val.string.len);

		if (strcmp(key, "momentum") == 0)
			fo->opt.momentum = (float) option_number(key, &v);
		else if (strcmp(key, "beta1") == 0)
			fo->opt.beta1 = (float) option_number(key, &v);
		else if (strcmp(key, "beta2") == 0)
			fo->opt.beta2 = (float) option_number(key, &v);
		else if (strcmp(key, "epsilon") == 0)
			fo->opt.epsilon = (float) option_number(key, &v);
		else if (strcmp(key, "rho") == 0)
			fo->opt.rho = (float) option_number(key, &v);
		else if (strcmp(key, "weight_decay") == 0)
			fo->opt.weight_decay = (float) option_number(key, &v);
		else if (strcmp(key, "initial_accumulator") == 0)
			fo->opt.initial_accumulator = (float) option_number(key, &v);
		else if (strcmp(key, "clipnorm") == 0)
			fo->opt.clipnorm = (float) option_number(key, &v);
		else if (strcmp(key, "clipvalue") == 0)
			fo->opt.clipvalue = (float) option_number(key, &v);
		else if (strcmp(key, "class_weight") == 0)
			parse_class_weight(&v, fo);
		else if (strcmp(key, "lr_schedule") == 0)
		{
			char	   *s = option_string(key, &v);

			fo->plateau = false;
			if (strcmp(s, "constant") == 0)
				fo->opt.schedule = NN_SCHED_CONSTANT;
			else if (strcmp(s, "step") == 0)
				fo->opt.schedule = NN_SCHED_STEP;
			else if (strcmp(s, "exponential") == 0)
				fo->opt.schedule = NN_SCHED_EXPONENTIAL;
			else if (strcmp(s, "plateau") == 0)
			{
				fo->opt.schedule = NN_SCHED_CONSTANT;
				fo->plateau = true;
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unrecognized lr_schedule \"%s\"", s),
						 errhint("Schedules are constant, step, exponential and plateau.")));
		}
		else if (strcmp(key, "decay_rate") == 0)
		{
			fo->opt.decay_rate = (float) option_number(key, &v);
			if (!(fo->opt.decay_rate > 0))
				bad_fit_option(key, "a positive number");
			have_rate = true;
		}
		else if (strcmp(key, "decay_steps") == 0)
		{
			double		d = option_number(key, &v);

			if (d != floor(d) || d < 1 || d > (double) PG_INT64_MAX / 2)
				bad_fit_option(key, "a positive integer");
			fo->opt.decay_steps = (int64) d;
			have_steps = true;
		}
		else if (strcmp(key, "plateau_factor") == 0)
		{
			fo->plateau_factor = option_number(key, &v);
			if (!(fo->plateau_factor > 0 && fo->plateau_factor < 1))
				bad_fit_option(key, "a number between 0 and 1");
		}
		else if (strcmp(key, "plateau_patience") == 0)
		{
			double		d = option_number(key, &v);

			if (d != floor(d) || d < 0 || d > PG_INT32_MAX)
				bad_fit_option(key, "a non-negative integer");
			fo->plateau_patience = (int32) d;
		}
		else if (strcmp(key, "min_lr") == 0)
		{
			fo->min_lr = option_number(key, &v);
			if (fo->min_lr < 0)
				bad_fit_option(key, "a non-negative number");
		}
		else if (strcmp(key, "on_null") == 0)
		{
			char	   *s = option_string(key, &v);

			if (strcmp(s, "error") == 0)
				fo->skip_nulls = false;
			else if (strcmp(s, "skip") == 0)
				fo->skip_nulls = true;
			else
				bad_fit_option(key, "\"error\" or \"skip\"");
		}
		else if (strcmp(key, "reset") == 0)
		{
			if (v.type != jbvBool)
				bad_fit_option(key, "a boolean");
			fo->reset = v.val.boolean;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized option \"%s\"", key),
					 errhint("Options are momentum, beta1, beta2, epsilon, rho, weight_decay, initial_accumulator, clipnorm, clipvalue, class_weight, lr_schedule, decay_rate, decay_steps, plateau_factor, plateau_patience, min_lr, on_null and reset.")));
	}

	if (fo->opt.schedule == NN_SCHED_STEP || fo->opt.schedule == NN_SCHED_EXPONENTIAL)
	{
		if (!have_steps || !have_rate)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("lr_schedule \"%s\" needs \"decay_rate\" and \"decay_steps\"",
							fo->opt.schedule == NN_SCHED_STEP ? "step" : "exponential")));
	}
}

/* The class weights as a dense array over n_classes. */
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

/*
 * size bytes in cxt for a chunk, starting on a huge page boundary so that
 * all of it can be backed by huge pages (nnpg_advise_huge): reading 60,000
 * rows of 784 bytes took 39 ms with small pages against 21 ms with huge
 * ones.  The head skipped for the alignment is never touched, so it costs
 * address space only.
 */
static char *
alloc_chunk(MemoryContext cxt, size_t size)
{
	size_t		huge = TYPEALIGN(NNPG_HUGE_PAGE, size);
	char	   *block = MemoryContextAllocHuge(cxt, huge + NNPG_HUGE_PAGE);
	char	   *start = (char *) TYPEALIGN(NNPG_HUGE_PAGE, block);

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
}

/*
 * Read all rows once (the reader is on the first row): check every one,
 * and keep them in memory while they fit in budget bytes.  Returns the
 * bytes kept.
 */
static size_t
load_rows(rowsource *s, size_t budget, float *scratch_x, float *scratch_y)
{
	size_t		x_bytes;

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

/*
 * Read the rows of a dataset again through row_fn, which adds at most one
 * row to the batch per row read, and run fn on each full batch.  Each read
 * asks for no more rows than the batch has room for, so the batch is run
 * here and not from inside the executor.
 */
static void
stream_dataset(fit_state *fs, dataset *ds, stream_pass *sp,
			   nnpg_row_fn row_fn, batch_fn fn, void *arg)
{
	nnpg_reader *r = &ds->src->r;
	int64		left = ds->hi - ds->lo;

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

/* One optimizer step. */
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

/* Statistics of normalize layers. */
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

/*
 * Buffer a streamed row (the bounded shuffle); once the buffer is full,
 * the row takes the place of a random buffered one, which joins the batch.
 */
static void
shuffle_row(nnpg_reader *r, void *arg)
{
	stream_pass *sp = (stream_pass *) arg;
	fit_state  *fs = sp->fs;
	int32		n_in = sp->src->n_in;
	int32		y_width = sp->src->y_width;
	int64		j;

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

/* One epoch of training over a dataset. */
static void
train_epoch(fit_state *fs, dataset *ds)
{
	rowsource  *s = ds->src;
	int64		n = ds->hi - ds->lo;
	int32		k = 0;

	if (s->in_memory)
	{
		if (fs->shuffle)
			nn_rng_shuffle(&fs->rng, fs->order, (size_t) n);
		for (int64 i = 0; i < n; i++)
		{
			fs->slot_row[k] = gather_row(s, fs->order[i],
										 fs->xbuf + (size_t) k * s->n_in,
										 fs->ybuf + (size_t) k * s->y_width);
			batch_add(fs, &k);
		}
	}
	else if (!fs->shuffle)
	{
		dataset_pass(fs, ds, train_step, NULL);
		return;
	}
	else
	{
		/*
		 * Bounded shuffle: fill a buffer, then emit a random buffered row
		 * for each new one; what remains goes out in random order.
		 */
		size_t		row_bytes = sizeof(float) * ((size_t) s->n_in + s->y_width);
		int64		cap = (int64) (nnpg_data_cache_bytes() / row_bytes);
		stream_pass sp;
		uint32	   *rest;

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
		k = sp.k;
		rest = palloc(sizeof(uint32) * sp.filled);
		for (int64 i = 0; i < sp.filled; i++)
			rest[i] = (uint32) i;
		nn_rng_shuffle(&fs->rng, rest, (size_t) sp.filled);
		for (int64 i = 0; i < sp.filled; i++)
		{
			memcpy(fs->xbuf + (size_t) k * s->n_in, sp.bx + rest[i] * s->n_in,
				   sizeof(float) * s->n_in);
			memcpy(fs->ybuf + (size_t) k * s->y_width, sp.by + rest[i] * s->y_width,
				   sizeof(float) * s->y_width);
			fs->slot_row[k] = sp.brow[rest[i]];
			batch_add(fs, &k);
		}
		pfree(rest);
		pfree(sp.bx);
		pfree(sp.by);
		pfree(sp.brow);
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

/* "key": number-or-null */
static void
json_field(StringInfo buf, const char *key, double value, bool isnull)
{
	appendStringInfo(buf, ", \"%s\": ", key);
	if (isnull)
		appendStringInfoString(buf, "null");
	else
		nnpg_json_number(buf, value);
}

/* Elapsed seconds since start. */
static double
seconds_since(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_DOUBLE(now);
}

/* ---------- nn_fit ---------- */

/* nn_fit(model, query, epochs, ...): train and store a new version. */
PG_FUNCTION_INFO_V1(nnpg_fit);
Datum
nnpg_fit(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	char	   *query;
	int32		epochs;
	int32		batch;
	char	   *optname;
	double		lr;
	char	   *lossname = NULL;
	char	   *val_query = NULL;
	double		val_split;
	bool		shuffle;
	int64		seed;
	bool		seed_given;
	bool		have_patience;
	int32		patience = 0;
	Jsonb	   *options;
	bool		verbose;
	bool		version_isnull;
	int32		version = 0;
	nn_optimizer_kind optkind;
	fit_options fo;
	MemoryContext fitcxt;
	MemoryContext oldcxt;
	nnpg_model_row row;
	nn_model   *model = NULL;
	nn_alloc   *alloc;
	nn_error	err;
	rowsource  *train_src;
	rowsource  *val_src = NULL;
	dataset		train;
	dataset		val;
	bool		has_val = false;
	fit_state	fs;
	float	   *cw;
	int32		n_classes = 0;
	bool		classification;
	int64		init_seed = 0;
	bool		built_now = false;
	StringInfoData history;
	StringInfoData metrics;
	StringInfoData training;
	double		best_monitor = get_float8_infinity();
	int32		wait = 0;
	double		plateau_best = get_float8_infinity();
	int32		plateau_wait = 0;
	int32		epochs_run = 0;
	bool		stopped_early = false;
	bytea	   *weights;
	int32		new_version;
	float	   *scratch_x;
	float	   *scratch_y;
	ErrorContextCallback errcallback;
	size_t		cache_left;

	/* training ends by storing a version: fail before it, not after */
	PreventCommandIfReadOnly("nn_fit()");
	nnpg_apply_threads();

	/* arguments */
	name = nnpg_text_to_cstring_arg(fcinfo, 0, "model");
	query = nnpg_text_to_cstring_arg(fcinfo, 1, "query");
	if (PG_ARGISNULL(2))
		nnpg_null_argument("epochs");
	epochs = PG_GETARG_INT32(2);
	if (PG_ARGISNULL(3))
		nnpg_null_argument("batch_size");
	batch = PG_GETARG_INT32(3);
	optname = nnpg_text_to_cstring_arg(fcinfo, 4, "optimizer");
	if (PG_ARGISNULL(5))
		nnpg_null_argument("learning_rate");
	lr = PG_GETARG_FLOAT8(5);
	if (!PG_ARGISNULL(6))
		lossname = text_to_cstring(PG_GETARG_TEXT_PP(6));
	if (!PG_ARGISNULL(7))
		val_query = text_to_cstring(PG_GETARG_TEXT_PP(7));
	if (PG_ARGISNULL(8))
		nnpg_null_argument("validation_split");
	val_split = PG_GETARG_FLOAT8(8);
	if (PG_ARGISNULL(9))
		nnpg_null_argument("shuffle");
	shuffle = PG_GETARG_BOOL(9);
	seed_given = !PG_ARGISNULL(10);
	seed = seed_given ? PG_GETARG_INT64(10) : nnpg_random_seed();
	have_patience = !PG_ARGISNULL(11);
	if (have_patience)
		patience = PG_GETARG_INT32(11);
	if (PG_ARGISNULL(12))
		nnpg_null_argument("options");
	options = PG_GETARG_JSONB_P(12);
	if (PG_ARGISNULL(13))
		nnpg_null_argument("verbose");
	verbose = PG_GETARG_BOOL(13);
	version_isnull = PG_ARGISNULL(14);
	if (!version_isnull)
		version = PG_GETARG_INT32(14);

	if (epochs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("epochs must be at least 1, not %d", epochs)));
	if (batch < 1 || batch > 1048576)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and 1048576, not %d", batch)));
	if (!(lr > 0) || !isfinite(lr) || lr > FLT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("learning_rate must be a positive number, not %g", lr)));
	if (!(val_split >= 0 && val_split < 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("validation_split must be at least 0 and less than 1, not %g",
						val_split)));
	if (val_split > 0 && val_query != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("validation_split and validation_query cannot be used together")));
	if (have_patience && patience < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("early_stopping_patience must not be negative, not %d",
						patience)));
	if (nn_optimizer_from_name(optname, &optkind) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized optimizer \"%s\"", optname),
				 errhint("Optimizers are sgd, momentum, nesterov, adagrad, rmsprop, adam and adamw.")));
	/* a named loss is checked now, before any data is read */
	if (lossname != NULL)
		(void) nnpg_choose_loss(lossname, NULL, false);
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));

	memset(&fo, 0, sizeof(fo));
	memset(&fs, 0, sizeof(fs));
	nn_optimizer_spec_init(&fo.opt, optkind, (float) lr);
	parse_options(options, &fo);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_optimizer_spec_check(&fo.opt, &err), &err);

	InitMaterializedSRF(fcinfo, 0);

	fitcxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg fit",
								   ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	oldcxt = MemoryContextSwitchTo(fitcxt);
	alloc = nnpg_alloc_create(fitcxt);

	/* concurrent fits of one model take turns; then see the latest */
	nnpg_lock_model_name(name);
	nnpg_fetch_model(name, version_isnull, version, true, false, fitcxt, &row);

	if (row.weights != NULL)
	{
		model = nnpg_load_model(row.weights, fitcxt);
		if (fo.reset)
		{
			nn_model   *fresh = NULL;

			init_seed = seed;
			nnpg_check(nn_model_create(&fresh, nn_model_get_spec(model),
									   (uint64) init_seed,
									   nnpg_max_model_bytes(), alloc, &err),
					   &err);
			nn_model_free(model);
			model = fresh;
			built_now = true;
		}
	}

	/* the training rows; the first one sizes a model not built yet */
	train_src = palloc0(sizeof(rowsource));
	train_src->r.label = "query";
	train_src->r.has_target = true;
	train_src->r.skip_nulls = fo.skip_nulls;
	train_src->r.n_in = model ? (int32) nn_model_input_size(model) : 0;
	nnpg_reader_open(&train_src->r, query);
	if (!nnpg_reader_next(&train_src->r))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query returned no rows to train on"),
				 train_src->r.n_skipped > 0 ?
				 errdetail("All " INT64_FORMAT " rows had null values and were skipped.",
						   train_src->r.n_skipped) : 0));
	if (model == NULL)
	{
		nn_model_spec spec;

		if (train_src->r.width < 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("row " INT64_FORMAT ": no feature values",
							train_src->r.row_no)));
		nnpg_parse_layers(row.layers, &spec);
		spec.input_rank = 1;
		spec.input_shape[0] = train_src->r.width;
		if (!training_seed(row.training, &init_seed))
			init_seed = seed;
		nnpg_check(nn_model_create(&model, &spec, (uint64) init_seed,
								   nnpg_max_model_bytes(), alloc, &err),
				   &err);
		train_src->r.n_in = train_src->r.width;
		built_now = true;
	}

	/* the loss, and how it reads targets */
	fs.loss = nnpg_choose_loss(lossname, model, train_src->r.target_scalar);
	nnpg_target_setup(&train_src->r, model, fs.loss);
	classification = nn_loss_is_classification(fs.loss);
	if (classification)
		n_classes = nnpg_loss_classes(model, fs.loss);
	if (fo.n_cw > 0 && !classification)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"class_weight\" needs a classification loss, not %s",
						nn_loss_name(fs.loss))));
	cw = class_weight_array(&fo, n_classes);

	nnpg_check(nn_model_set_training(model, &fo.opt, fs.loss, cw,
									 cw ? n_classes : 0, &err), &err);
	if (fo.reset)
		nn_model_reset_optimizer(model);
	nnpg_check(nn_model_prepare(model, batch, true, nnpg_max_model_bytes(),
								&err), &err);

	fs.model = model;
	fs.batch = batch;
	fs.shuffle = shuffle;
	nn_rng_seed(&fs.rng, (uint64) seed);
	fs.xbuf = MemoryContextAllocHuge(fitcxt, sizeof(float) * (size_t) batch *
									 nn_model_input_size(model));
	fs.ybuf = MemoryContextAllocHuge(fitcxt, sizeof(float) * (size_t) batch *
									 nnpg_reader_target_width(&train_src->r));
	fs.slot_row = MemoryContextAllocHuge(fitcxt, sizeof(int64) * (size_t) batch);
	scratch_x = palloc(sizeof(float) * nn_model_input_size(model));
	scratch_y = palloc(sizeof(float) * nnpg_reader_target_width(&train_src->r));

	/* the training rows first; validation rows get what is left */
	cache_left = nnpg_data_cache_bytes();
	cache_left -= load_rows(train_src, cache_left, scratch_x, scratch_y);
	train.src = train_src;
	train.lo = 0;
	train.hi = train_src->n;

	if (val_split > 0)
	{
		int64		n_train = (int64) floor((double) train_src->n * (1.0 - val_split));

		if (n_train == train_src->n || n_train < 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("too few rows for validation_split %g", val_split),
					 errdetail("The query returned " INT64_FORMAT " rows, which leaves " INT64_FORMAT " for training and " INT64_FORMAT " for validation.",
							   train_src->n, n_train, train_src->n - n_train)));
		train.hi = n_train;
		val.src = train_src;
		val.lo = n_train;
		val.hi = train_src->n;
		has_val = true;
	}
	else if (val_query != NULL)
	{
		val_src = palloc0(sizeof(rowsource));
		val_src->r.label = "validation query";
		val_src->r.has_target = true;
		val_src->r.skip_nulls = fo.skip_nulls;
		val_src->r.n_in = (int32) nn_model_input_size(model);
		nnpg_reader_open(&val_src->r, val_query);
		if (!nnpg_reader_next(&val_src->r))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("validation query returned no rows")));
		if (val_src->r.target_scalar != train_src->r.target_scalar)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("the targets of the validation query and the query are of different kinds")));
		nnpg_target_setup(&val_src->r, model, fs.loss);
		(void) load_rows(val_src, cache_left, scratch_x, scratch_y);
		val.src = val_src;
		val.lo = 0;
		val.hi = val_src->n;
		has_val = true;
	}

	if (train_src->in_memory)
	{
		int64		n = train.hi - train.lo;

		fs.order = MemoryContextAllocHuge(fitcxt, sizeof(uint32) * (size_t) n);
		for (int64 i = 0; i < n; i++)
			fs.order[i] = (uint32) (train.lo + i);
	}

	/* normalize layers learn their statistics from the training rows */
	if (nn_model_needs_adapt(model))
	{
		dataset_pass(&fs, &train, adapt_step, NULL);
		nnpg_check(nn_model_adapt_finish(model, &err), &err);
	}

	initStringInfo(&history);
	initStringInfo(&metrics);
	appendStringInfoChar(&history, '[');

	fs.name = name;
	fs.epoch = 0;
	errcallback.callback = fit_error_callback;
	errcallback.arg = &fs;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	for (int32 e = 1; e <= epochs; e++)
	{
		instr_time	start;
		double		loss;
		double		acc = 0;
		double		vloss = 0;
		double		vacc = 0;
		double		secs;
		double		monitor;
		Datum		values[6];
		bool		nulls[6] = {false, false, !classification, !has_val,
		!has_val || !classification, false};

		INSTR_TIME_SET_CURRENT(start);
		fs.epoch = e;
		fs.batch_no = 0;
		fs.loss_sum = 0;
		fs.correct = 0;
		fs.seen = 0;
		train_epoch(&fs, &train);
		loss = fs.loss_sum / (double) Max(fs.seen, 1);
		if (classification)
			acc = (double) fs.correct / (double) Max(fs.seen, 1);

		if (has_val)
		{
			fs.loss_sum = 0;
			fs.correct = 0;
			fs.seen = 0;
			dataset_pass(&fs, &val, eval_step, NULL);
			vloss = fs.loss_sum / (double) Max(fs.seen, 1);
			if (classification)
				vacc = (double) fs.correct / (double) Max(fs.seen, 1);
		}
		secs = seconds_since(start);
		epochs_run = e;

		values[0] = Int32GetDatum(e);
		values[1] = Float8GetDatum(loss);
		values[2] = Float8GetDatum(acc);
		values[3] = Float8GetDatum(vloss);
		values[4] = Float8GetDatum(vacc);
		values[5] = Float8GetDatum(secs);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

		resetStringInfo(&metrics);
		appendStringInfo(&metrics, "{\"epoch\": %d", e);
		json_field(&metrics, "loss", loss, false);
		json_field(&metrics, "accuracy", acc, !classification);
		json_field(&metrics, "val_loss", vloss, !has_val);
		json_field(&metrics, "val_accuracy", vacc, !has_val || !classification);
		json_field(&metrics, "seconds", secs, false);
		appendStringInfoString(&metrics, ", \"learning_rate\": ");
		nnpg_json_float(&metrics, nn_model_current_lr(model));
		appendStringInfoChar(&metrics, '}');
		if (e > 1)
			appendStringInfoString(&history, ", ");
		appendBinaryStringInfo(&history, metrics.data, metrics.len);

		if (verbose)
		{
			StringInfoData msg;

			initStringInfo(&msg);
			appendStringInfo(&msg, "epoch %d/%d: loss=%.4f", e, epochs, loss);
			if (classification)
				appendStringInfo(&msg, " accuracy=%.4f", acc);
			if (has_val)
			{
				appendStringInfo(&msg, " val_loss=%.4f", vloss);
				if (classification)
					appendStringInfo(&msg, " val_accuracy=%.4f", vacc);
			}
			appendStringInfo(&msg, " (%.1f s)", secs);
			ereport(NOTICE, (errmsg_internal("%s", msg.data)));
			pfree(msg.data);
		}

		/* early stopping and plateaus watch val_loss, else loss */
		monitor = has_val ? vloss : loss;
		if (monitor < best_monitor)
		{
			best_monitor = monitor;
			wait = 0;
		}
		else
			wait++;
		if (fo.plateau)
		{
			if (monitor < plateau_best)
			{
				plateau_best = monitor;
				plateau_wait = 0;
			}
			else if (++plateau_wait >= fo.plateau_patience)
			{
				double		cur = nn_model_current_lr(model);
				double		next = Max(cur * fo.plateau_factor, fo.min_lr);

				if (next < cur && cur > 0)
				{
					nn_model_scale_lr(model, (float) (next / cur));
					if (verbose)
						ereport(NOTICE,
								(errmsg_internal("epoch %d: reducing the learning rate to %g",
												 e, next)));
				}
				plateau_wait = 0;
			}
		}
		if (have_patience && wait > 0 && wait >= patience && e < epochs)
		{
			stopped_early = true;
			if (verbose)
				ereport(NOTICE,
						(errmsg_internal("epoch %d: stopping early, %s has not improved for %d epochs",
										 e, has_val ? "val_loss" : "loss", wait)));
			break;
		}
	}
	appendStringInfoChar(&history, ']');
	error_context_stack = errcallback.previous;

	if (verbose && (train_src->r.n_skipped > 0 ||
					(val_src && val_src->r.n_skipped > 0)))
		ereport(NOTICE,
				(errmsg("skipped " INT64_FORMAT " rows with null values",
						train_src->r.n_skipped +
						(val_src ? val_src->r.n_skipped : 0))));

	/* settings, for the record and for nn_evaluate */
	initStringInfo(&training);
	appendStringInfoString(&training, "{\"optimizer\": ");
	escape_json(&training, nn_optimizer_name(optkind));
	json_field(&training, "learning_rate", lr, false);
	appendStringInfoString(&training, ", \"loss\": ");
	escape_json(&training, nn_loss_name(fs.loss));
	appendStringInfo(&training, ", \"epochs\": %d, \"epochs_run\": %d, \"batch_size\": %d",
					 epochs, epochs_run, batch);
	appendStringInfo(&training, ", \"seed\": " INT64_FORMAT, seed);
	if (built_now)
		appendStringInfo(&training, ", \"init_seed\": " INT64_FORMAT, init_seed);
	appendStringInfo(&training, ", \"shuffle\": %s", shuffle ? "true" : "false");
	appendStringInfoString(&training, ", \"query\": ");
	escape_json(&training, query);
	if (val_query != NULL)
	{
		appendStringInfoString(&training, ", \"validation_query\": ");
		escape_json(&training, val_query);
	}
	json_field(&training, "validation_split", val_split, false);
	if (have_patience)
		appendStringInfo(&training, ", \"early_stopping_patience\": %d", patience);
	appendStringInfo(&training, ", \"stopped_early\": %s",
					 stopped_early ? "true" : "false");
	appendStringInfo(&training, ", \"rows\": " INT64_FORMAT ", \"validation_rows\": " INT64_FORMAT,
					 train.hi - train.lo, has_val ? val.hi - val.lo : (int64) 0);
	appendStringInfo(&training, ", \"from_version\": %d", row.version);
	appendStringInfoString(&training, ", \"input_shape\": ");
	appendStringInfoString(&training,
						   nnpg_shape_to_json(nn_model_get_spec(model)->input_rank,
											  nn_model_get_spec(model)->input_shape));
	appendStringInfoString(&training, ", \"options\": ");
	appendStringInfoString(&training,
						   JsonbToCString(NULL, &options->root, VARSIZE(options)));
	appendStringInfoChar(&training, '}');

	/* only now, with everything done, store the new version */
	weights = nnpg_serialize_model(model, true);
	new_version = nnpg_insert_model(name, true, 0, row.owner,
									PointerGetDatum(row.layers),
									nnpg_jsonb_from_cstring(training.data),
									nnpg_jsonb_from_cstring(metrics.data), false,
									nnpg_jsonb_from_cstring(history.data), false,
									weights, nn_model_param_count(model));
	if (verbose)
		ereport(NOTICE,
				(errmsg("stored version %d of model \"%s\"", new_version, name)));

	if (val_src)
		nnpg_reader_close(&val_src->r);
	nnpg_reader_close(&train_src->r);
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	MemoryContextDelete(fitcxt);
	return (Datum) 0;
}
