/*
 * parallel.c: data-parallel training, the aggregate that trains replicas
 * and the rounds nn_fit runs it in (options "workers" and "sync_rows").
 *
 * nnpg.nn_train(model bytea, teacher bytea, round jsonb, row record) is an
 * aggregate whose state is a replica of the model: its transition function
 * collects the rows it sees into batches and steps the optimizer, its
 * combine function merges two replicas (nn_model_average: the mean of
 * parameters, optimizer state and statistics, weighted by the rows each
 * trained on), and its final function returns the merged replica.  nn_fit
 * runs it once per round over its query:
 *
 *     SELECT nnpg.nn_train($1, $2, $3, q) FROM (query) AS q
 *     WHERE nnpg.nn_round_has($3, q)
 *
 * so that the planner runs it as a Partial Aggregate in each parallel
 * worker under a Gather, and Citus as worker_partial_agg on every shard of
 * a distributed table, with the merge in the leader or the coordinator.
 * The next round starts from the merged model.
 *
 * The state is a type of its own, nnpg.nn_replica, not internal: Citus
 * ships partial states as the text of the type's output function and
 * refuses internal ones.  In memory it is an expanded object, as
 * PostgreSQL's arrays have: the deserialized model, the rows waiting in
 * the shuffle buffer and the counters, updated in place.  Its flat form
 * (what a parallel worker sends back, and the bytes behind the text and
 * binary forms) is a header of counters and the model bytes with their
 * optimizer state; the text form is that in base64.  A replica trains the
 * rows still in its buffer before it is flattened, merged or finalized.
 *
 * Rows: every round reads the whole query, and nn_round_has() keeps the
 * rows of round r of an epoch's R rounds: those whose hash, mixed with the
 * epoch, is r modulo R, so each epoch trains on every row once, in a new
 * partition; the rest never reach the aggregate.  With validation_split,
 * rows whose hash falls in the split are validation rows (a parallel scan
 * has no row order to take the last ones from); the same aggregate
 * evaluates them in evaluation rounds, which merge counters and leave the
 * model as it is.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/parallel.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/plannodes.h"
#include "port/pg_bswap.h"
#include "portability/instr_time.h"
#include "utils/expandeddatum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/typcache.h"

#include "nnpg.h"

/* ---------- the state: counters, flat and expanded forms ---------- */

#define REPLICA_MAGIC	0x4E4E5250	/* "NNRP" */
#define REPLICA_VERSION 1
/* the counters, in the order of counts_to_words */
#define N_COUNTS		10
/* magic, version, then the counters as 8-byte big-endian words */
#define REPLICA_HEADER	(2 * 4 + 8 * N_COUNTS)

/* A round's settings, from the round jsonb. */
typedef struct round_settings
{
	bool		evaluate;		/* evaluate the selected rows, do not train */
	int32		batch;
	int32		epoch;
	int32		round;			/* 0-based */
	int32		rounds;
	int64		round_id;		/* unique to the round, see round_start */
	int64		seed;
	double		validation_split;	/* > 0: hashed validation rows */
	bool		validation_rows;	/* select them (evaluate mode) */
	bool		skip_nulls;
	bool		shuffle;
	int32		threads;
	int64		buffer_rows;	/* shuffle buffer bound */
	float		temperature;
	float		distill_alpha;
} round_settings;

/* An expanded replica. */
typedef struct replica
{
	ExpandedObjectHeader hdr;	/* first: its context is the replica's */
	nnpg_replica_counts c;
	nn_model   *model;
	bool		training;		/* set up to take rows (transition calls) */
	instr_time	started;		/* its first row */
	bytea	   *flat;			/* the flat form, while it is current */
	/* the rest is for taking rows */
	round_settings s;
	nn_model   *teacher;
	nnpg_reader r;
	Oid			row_type;
	int32		row_typmod;
	TupleTableSlot *slot;
	HeapTupleHeader row;		/* the row being read, for error context */
	nn_rng		rng;
	int32		n_in;
	int32		y_width;
	bool		bytes;			/* features kept as bytes (bytea columns) */
	size_t		x_bytes;		/* a row's features: n_in bytes or floats */
	char	   *x;				/* (x_bytes) the row's features */
	float	   *y;				/* (y_width) its target */
	/* shuffle buffer: filled rows of cap (grown up to buffer_rows) */
	int64		cap;
	int64		filled;
	char	   *bx;				/* (cap, x_bytes) */
	float	   *by;
	int64	   *brow;
	/* the batch being built */
	int32		k;
	float	   *xbuf;
	float	   *ybuf;
	int64	   *slot_row;
} replica;

static Size replica_get_flat_size(ExpandedObjectHeader *eohptr);
static void replica_flatten_into(ExpandedObjectHeader *eohptr, void *result,
								 Size allocated_size);

static const ExpandedObjectMethods replica_methods =
{
	replica_get_flat_size,
	replica_flatten_into
};

static void
put64(char *p, uint64 v)
{
	v = pg_hton64(v);
	memcpy(p, &v, 8);
}

static uint64
get64(const char *p)
{
	uint64		v;

	memcpy(&v, p, 8);
	return pg_ntoh64(v);
}

static uint64
double_bits(double d)
{
	uint64		u;

	memcpy(&u, &d, 8);
	return u;
}

static double
bits_double(uint64 u)
{
	double		d;

	memcpy(&d, &u, 8);
	return d;
}

static void bad_replica(const char *why) pg_attribute_noreturn();

static void
bad_replica(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid nn_replica value: %s", why)));
	pg_unreachable();
}

static void
counts_to_words(const nnpg_replica_counts *c, uint64 *w)
{
	w[0] = (uint64) c->rows;
	w[1] = (uint64) c->trained;
	w[2] = (uint64) c->steps;
	w[3] = (uint64) c->correct;
	w[4] = (uint64) c->skipped;
	w[5] = (uint64) c->replicas;
	w[6] = (uint64) c->base_step;
	w[7] = double_bits(c->loss_sum);
	w[8] = double_bits(c->seconds);
	w[9] = double_bits(c->max_seconds);
}

static void
words_to_counts(const uint64 *w, nnpg_replica_counts *c)
{
	c->rows = (int64) w[0];
	c->trained = (int64) w[1];
	c->steps = (int64) w[2];
	c->correct = (int64) w[3];
	c->skipped = (int64) w[4];
	c->replicas = (int64) w[5];
	c->base_step = (int64) w[6];
	c->loss_sum = bits_double(w[7]);
	c->seconds = bits_double(w[8]);
	c->max_seconds = bits_double(w[9]);
}

/*
 * Read a flat replica's header into *c and point at its model bytes;
 * checks the header, not the model (nn_model_deserialize does).
 */
static void
read_flat(const char *data, Size len, nnpg_replica_counts *c,
		  const uint8 **model, size_t *model_len)
{
	uint32		magic,
				version;
	uint64		w[N_COUNTS];

	if (len < REPLICA_HEADER)
		bad_replica("too short");
	memcpy(&magic, data, 4);
	memcpy(&version, data + 4, 4);
	if (pg_ntoh32(magic) != REPLICA_MAGIC)
		bad_replica("bad magic number");
	if (pg_ntoh32(version) != REPLICA_VERSION)
		bad_replica("unknown version");
	for (int i = 0; i < N_COUNTS; i++)
		w[i] = get64(data + 8 + 8 * i);
	words_to_counts(w, c);
	if (c->rows < 0 || c->trained < 0 || c->trained > c->rows ||
		c->steps < 0 || c->correct < 0 || c->correct > c->rows ||
		c->skipped < 0 || c->replicas < 1 || c->base_step < 0 ||
		!isfinite(c->loss_sum) || !(c->seconds >= 0) ||
		!(c->max_seconds >= 0))
		bad_replica("bad counters");
	*model = (const uint8 *) data + REPLICA_HEADER;
	*model_len = len - REPLICA_HEADER;
}

/* Write the header of c at data. */
static void
write_header(char *data, const nnpg_replica_counts *c)
{
	uint32		magic = pg_hton32(REPLICA_MAGIC);
	uint32		version = pg_hton32(REPLICA_VERSION);
	uint64		w[N_COUNTS];

	memcpy(data, &magic, 4);
	memcpy(data + 4, &version, 4);
	counts_to_words(c, w);
	for (int i = 0; i < N_COUNTS; i++)
		put64(data + 8 + 8 * i, w[i]);
}

/* A new, empty expanded replica in a context of its own under parent. */
static replica *
replica_new(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "nnpg replica",
											  ALLOCSET_DEFAULT_SIZES);
	replica    *rp = MemoryContextAllocZero(cxt, sizeof(replica));

	EOH_init_header(&rp->hdr, &replica_methods, cxt);
	return rp;
}

/* An expanded replica of a flat one, in parent. */
static replica *
expand_flat(const bytea *flat, MemoryContext parent)
{
	replica    *rp = replica_new(parent);
	const uint8 *bytes;
	size_t		len;

	read_flat(VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat), &rp->c, &bytes, &len);
	rp->model = nnpg_load_model_bytes(bytes, len, rp->hdr.eoh_context);
	return rp;
}

/*
 * The replica a state datum holds: itself when it is our read-write
 * expanded object, else an expanded copy in parent.
 */
static replica *
replica_of(Datum d, MemoryContext parent)
{
	if (VARATT_IS_EXTERNAL_EXPANDED(DatumGetPointer(d)))
	{
		ExpandedObjectHeader *eoh = DatumGetEOHP(d);

		if (eoh->eoh_methods != &replica_methods)
			bad_replica("not a replica");
		if (VARATT_IS_EXTERNAL_EXPANDED_RW(DatumGetPointer(d)))
			return (replica *) eoh;
		/* a read-only reference: flatten it and expand a copy */
		{
			Size		size = EOH_get_flat_size(eoh);
			bytea	   *flat = palloc(size);

			EOH_flatten_into(eoh, flat, size);
			return expand_flat(flat, parent);
		}
	}
	return expand_flat(DatumGetByteaPP(d), parent);
}

/* ---------- taking rows ---------- */

/*
 * The start of the round (model and teacher bytes), kept per backend.
 * Citus calls the transition function through worker_partial_agg, which
 * wraps each row's arguments in a record and so would copy the model for
 * every row; the round statement therefore passes the model and teacher
 * only while nn_replica_wants() says this backend lacks them.
 */
static struct
{
	int64		round_id;		/* -1: none */
	MemoryContext cxt;
	bytea	   *model;
	bytea	   *teacher;		/* NULL: no teacher */
}			round_start = {-1, NULL, NULL, NULL};


/* Error context of a replica at work: where, and the row being read. */
static void
replica_error_callback(void *arg)
{
	replica    *rp = (replica *) arg;

	if (rp->row != NULL)
	{
		char	   *s = OidOutputFunctionCall(F_RECORD_OUT,
												 PointerGetDatum(rp->row));

		if (strlen(s) > 200)
			strcpy(s + 190, "...)");
		errcontext("row %s of this replica's share", s);
	}
	errcontext("%s a replica of the model in round %d of %d of epoch %d",
			   rp->s.evaluate ? "evaluating" : "training",
			   rp->s.round + 1, rp->s.rounds, rp->s.epoch);
}

/* A number the round settings must have. */
static double
setting_number(Jsonb *s, const char *key)
{
	JsonbValue	vbuf;
	JsonbValue *v = getKeyJsonValueFromContainer(&s->root, key, strlen(key),
												 &vbuf);
	double		d;

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("round settings lack \"%s\"", key)));
	if (v->type == jbvBool)
		return v->val.boolean ? 1 : 0;
	if (!nnpg_jsonb_number(v, &d) || !isfinite(d))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("round setting \"%s\" is not valid", key)));
	return d;
}

/* Read the round settings (made by nnpg_round_settings) into s. */
static void
read_settings(Jsonb *j, round_settings *s)
{
	s->evaluate = setting_number(j, "evaluate") != 0;
	s->batch = (int32) setting_number(j, "batch_size");
	s->epoch = (int32) setting_number(j, "epoch");
	s->round = (int32) setting_number(j, "round");
	s->rounds = (int32) setting_number(j, "rounds");
	s->round_id = (int64) setting_number(j, "round_id");
	s->seed = (int64) setting_number(j, "seed");
	s->validation_split = setting_number(j, "validation_split");
	s->validation_rows = setting_number(j, "validation_rows") != 0;
	s->skip_nulls = setting_number(j, "skip_nulls") != 0;
	s->shuffle = setting_number(j, "shuffle") != 0;
	s->threads = (int32) setting_number(j, "threads");
	s->buffer_rows = (int64) setting_number(j, "buffer_rows");
	s->temperature = (float) setting_number(j, "temperature");
	s->distill_alpha = (float) setting_number(j, "distill_alpha");
	if (s->batch < 1 || s->rounds < 1 || s->round < 0 ||
		s->round >= s->rounds || s->threads < 1 || s->buffer_rows < 1 ||
		!(s->validation_split >= 0 && s->validation_split < 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("round settings are not valid")));
}

/*
 * The query's column names from the settings' "columns", for messages:
 * Citus sends the shards the row as ROW(a, b), whose columns are f1, f2.
 */
static void
name_columns(nnpg_reader *r, Jsonb *settings)
{
	JsonbValue	vbuf;
	JsonbValue *v = getKeyJsonValueFromContainer(&settings->root, "columns",
												 strlen("columns"), &vbuf);
	JsonbValue *e;

	if (v == NULL || v->type != jbvBinary ||
		!JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerSize(v->val.binary.data) != (uint32) r->natts)
		return;
	for (int i = 0; i < r->natts; i++)
	{
		e = getIthJsonbValueFromContainer(v->val.binary.data, i);
		if (e != NULL && e->type == jbvString)
			r->colnames[i] = pnstrdup(e->val.string.val, e->val.string.len);
	}
}

/* Set a new replica up to take rows of the given type. */
static void
replica_setup(replica *rp, HeapTupleHeader row, Jsonb *settings)
{
	MemoryContext old = MemoryContextSwitchTo(rp->hdr.eoh_context);
	round_settings *s = &rp->s;
	nn_error	err;
	TupleDesc	desc;
	size_t		batch;

	nnpg_apply_thread_count(s->threads);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_prepare(rp->model, s->batch, true,
								nnpg_max_model_bytes(), &err), &err);
	if (round_start.teacher != NULL && !s->evaluate)
	{
		bytea	   *t = round_start.teacher;

		rp->teacher = nnpg_load_model(t, rp->hdr.eoh_context);
		nnpg_check(nn_model_prepare(rp->teacher, s->batch, false,
									nnpg_max_model_bytes(), &err), &err);
		nnpg_check(nn_model_set_teacher(rp->model, rp->teacher, s->temperature,
										s->distill_alpha, &err), &err);
	}
	nn_rng_seed(&rp->rng, (uint64) s->seed ^
				hash_bytes_uint32((uint32) (s->epoch * 65599 + s->round)) ^
				((uint64) (ParallelWorkerNumber >= 0 ? ParallelWorkerNumber :
						   MyProcPid) << 32));

	/* the reader converts and checks the rows' columns */
	rp->row_type = HeapTupleHeaderGetTypeId(row);
	rp->row_typmod = HeapTupleHeaderGetTypMod(row);
	desc = lookup_rowtype_tupdesc_copy(rp->row_type, rp->row_typmod);
	rp->r.label = "query";
	rp->r.has_target = true;
	rp->r.skip_nulls = s->skip_nulls;
	rp->r.n_in = (int32) nn_model_input_size(rp->model);
	rp->r.cxt = rp->hdr.eoh_context;
	rp->r.row_cxt = AllocSetContextCreate(rp->hdr.eoh_context, "nnpg replica row",
										  ALLOCSET_DEFAULT_SIZES);
	nnpg_reader_describe(&rp->r, desc);
	name_columns(&rp->r, settings);
	nnpg_target_setup(&rp->r, rp->model, nn_model_loss(rp->model));
	rp->slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);

	rp->n_in = rp->r.n_in;
	rp->y_width = nnpg_reader_target_width(&rp->r);
	/* as one backend keeps them: a quarter of the memory to move */
	rp->bytes = rp->r.bytes_only;
	rp->x_bytes = (size_t) rp->n_in * (rp->bytes ? 1 : sizeof(float));
	batch = (size_t) s->batch;
	rp->x = palloc(rp->x_bytes);
	rp->y = palloc(sizeof(float) * rp->y_width);
	rp->xbuf = MemoryContextAllocHuge(rp->hdr.eoh_context,
									  sizeof(float) * batch * rp->n_in);
	rp->ybuf = palloc(sizeof(float) * batch * rp->y_width);
	rp->slot_row = palloc(sizeof(int64) * batch);
	rp->training = true;
	MemoryContextSwitchTo(old);
}

/* Train on (or evaluate) the batch built so far. */
static void
run_batch(replica *rp)
{
	double		loss_sum = 0;
	int64_t		correct = 0;
	nn_error	err;

	if (rp->k == 0)
		return;
	CHECK_FOR_INTERRUPTS();
	memset(&err, 0, sizeof(err));
	if (rp->s.evaluate)
		nnpg_check_rows(nn_model_evaluate_batch(rp->model, NULL, rp->xbuf,
												rp->ybuf, rp->k,
												nn_model_loss(rp->model),
												NULL, 0, &loss_sum, &correct,
												&err), &err, rp->slot_row);
	else
	{
		nnpg_check_rows(nn_model_train_batch(rp->model, rp->xbuf, rp->ybuf,
											 rp->k, &rp->rng, &loss_sum,
											 &correct, &err), &err, rp->slot_row);
		rp->c.steps++;
		rp->c.trained += rp->k;
	}
	rp->c.rows += rp->k;
	rp->c.loss_sum += loss_sum;
	rp->c.correct += correct;
	rp->k = 0;
}

/* Put a row (x, y, its number) into the batch; run it when full. */
static void
batch_put(replica *rp, const char *x, const float *y, int64 row_no)
{
	float	   *dst = rp->xbuf + (size_t) rp->k * rp->n_in;

	if (rp->bytes)
		nn_bytes_to_floats(dst, (const uint8 *) x, rp->n_in);
	else
		memcpy(dst, x, rp->x_bytes);
	memcpy(rp->ybuf + (size_t) rp->k * rp->y_width, y,
		   sizeof(float) * rp->y_width);
	rp->slot_row[rp->k++] = row_no;
	if (rp->k == rp->s.batch)
		run_batch(rp);
}

/* Grow the shuffle buffer (doubling, up to buffer_rows); false when full. */
static bool
grow_buffer(replica *rp)
{
	int64		cap = Min(Max(rp->cap * 2, 1024), rp->s.buffer_rows);
	MemoryContext cxt = rp->hdr.eoh_context;

	if (cap <= rp->cap)
		return false;
	if (rp->bx == NULL)
	{
		rp->bx = MemoryContextAllocHuge(cxt, rp->x_bytes * cap);
		rp->by = MemoryContextAllocHuge(cxt, sizeof(float) * cap * rp->y_width);
		rp->brow = MemoryContextAllocHuge(cxt, sizeof(int64) * cap);
	}
	else
	{
		rp->bx = repalloc_huge(rp->bx, rp->x_bytes * cap);
		rp->by = repalloc_huge(rp->by, sizeof(float) * cap * rp->y_width);
		rp->brow = repalloc_huge(rp->brow, sizeof(int64) * cap);
	}
	rp->cap = cap;
	return true;
}

/*
 * Keep the current row in the shuffle buffer; once the buffer is full, a
 * random buffered row goes to the batch and the new one takes its place.
 */
static void
buffer_put(replica *rp)
{
	int64		j;

	if (rp->filled < rp->cap || grow_buffer(rp))
		j = rp->filled++;
	else
	{
		j = (int64) nn_rng_below(&rp->rng, (uint64) rp->cap);
		batch_put(rp, rp->bx + j * rp->x_bytes, rp->by + j * rp->y_width,
				  rp->brow[j]);
	}
	memcpy(rp->bx + j * rp->x_bytes, rp->x, rp->x_bytes);
	memcpy(rp->by + j * rp->y_width, rp->y, sizeof(float) * rp->y_width);
	rp->brow[j] = rp->r.row_no;
}

/* A record datum's tuple, as the executor's slots and deforming take it. */
static void
row_tuple(HeapTupleHeader row, HeapTupleData *tuple)
{
	tuple->t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = InvalidOid;
	tuple->t_data = row;
}

/* Take one row of the aggregate's input. */
static void
replica_take(replica *rp, HeapTupleHeader row)
{
	HeapTupleData tuple;
	bool		taken = false;

	if (HeapTupleHeaderGetTypeId(row) != rp->row_type ||
		HeapTupleHeaderGetTypMod(row) != rp->row_typmod)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("rows of a replica must all be of one row type")));
	row_tuple(row, &tuple);
	ExecStoreHeapTuple(&tuple, rp->slot, false);
	rp->row = row;
	if (nnpg_reader_take(&rp->r, rp->slot))
	{
		if (rp->bytes)
			nnpg_reader_features_bytes(&rp->r, (uint8 *) rp->x);
		else
			nnpg_reader_features(&rp->r, (float *) rp->x);
		nnpg_reader_target(&rp->r, rp->y);
		taken = true;
	}
	else
		rp->c.skipped++;
	rp->row = NULL;
	ExecClearTuple(rp->slot);
	if (!taken)
		return;
	rp->flat = NULL;
	if (rp->s.evaluate || !rp->s.shuffle)
		batch_put(rp, rp->x, rp->y, rp->r.row_no);
	else
		buffer_put(rp);
}

/* Train the rows still buffered, in random order, and the last batch. */
static void
replica_finish(replica *rp)
{
	ErrorContextCallback cb;

	if (!rp->training || (rp->filled == 0 && rp->k == 0))
		return;
	cb.callback = replica_error_callback;
	cb.arg = rp;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	for (int64 i = rp->filled; i > 0; i--)
	{
		int64		j = (int64) nn_rng_below(&rp->rng, (uint64) i);

		batch_put(rp, rp->bx + j * rp->x_bytes, rp->by + j * rp->y_width,
				  rp->brow[j]);
		/* the last buffered row fills the hole */
		memcpy(rp->bx + j * rp->x_bytes, rp->bx + (i - 1) * rp->x_bytes,
			   rp->x_bytes);
		memcpy(rp->by + j * rp->y_width, rp->by + (i - 1) * rp->y_width,
			   sizeof(float) * rp->y_width);
		rp->brow[j] = rp->brow[i - 1];
	}
	rp->filled = 0;
	run_batch(rp);
	error_context_stack = cb.previous;
	rp->flat = NULL;
}

/* ---------- flattening ---------- */

/* The flat form, made once while the replica does not change. */
static bytea *
replica_flat(replica *rp)
{
	size_t		len;
	bytea	   *flat;
	nn_error	err;

	replica_finish(rp);
	if (rp->flat != NULL)
		return rp->flat;
	if (rp->training)
	{
		instr_time	now;

		/* the replica's own time: its rows, read and trained */
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, rp->started);
		rp->c.seconds = rp->c.max_seconds = INSTR_TIME_GET_DOUBLE(now);
	}
	len = nn_model_serialized_size(rp->model, true);
	if (len > MaxAllocSize - VARHDRSZ - REPLICA_HEADER)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model of %zu bytes is too large for a replica", len)));
	flat = MemoryContextAlloc(rp->hdr.eoh_context,
							  VARHDRSZ + REPLICA_HEADER + len);
	SET_VARSIZE(flat, VARHDRSZ + REPLICA_HEADER + len);
	write_header(VARDATA(flat), &rp->c);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_serialize(rp->model,
								  (uint8 *) VARDATA(flat) + REPLICA_HEADER,
								  len, true, nnpg_crc32c, &err), &err);
	rp->flat = flat;
	return flat;
}

static Size
replica_get_flat_size(ExpandedObjectHeader *eohptr)
{
	return VARSIZE(replica_flat((replica *) eohptr));
}

static void
replica_flatten_into(ExpandedObjectHeader *eohptr, void *result,
					 Size allocated_size)
{
	bytea	   *flat = replica_flat((replica *) eohptr);

	Assert(allocated_size == VARSIZE(flat));
	memcpy(result, flat, VARSIZE(flat));
}

/* A state datum's flat form (palloc'd, or the datum itself). */
static bytea *
flat_of(Datum d)
{
	if (VARATT_IS_EXTERNAL_EXPANDED(DatumGetPointer(d)))
	{
		ExpandedObjectHeader *eoh = DatumGetEOHP(d);

		if (eoh->eoh_methods != &replica_methods)
			bad_replica("not a replica");
		return replica_flat((replica *) eoh);
	}
	return DatumGetByteaPP(d);
}

/* ---------- the aggregate's functions ---------- */

static MemoryContext
agg_context(FunctionCallInfo fcinfo, const char *fn)
{
	MemoryContext cxt;

	if (!AggCheckCallContext(fcinfo, &cxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s can only be called as part of an aggregate", fn)));
	return cxt;
}

/* A copy of a bytea argument in the round start's context. */
static bytea *
keep_bytea(FunctionCallInfo fcinfo, int argno)
{
	bytea	   *b = PG_GETARG_BYTEA_P(argno);
	bytea	   *copy = MemoryContextAlloc(round_start.cxt, VARSIZE(b));

	memcpy(copy, b, VARSIZE(b));
	return copy;
}

/* Keep the round's start when the call brings it; it must be there. */
static void
keep_round_start(FunctionCallInfo fcinfo, int64 round_id)
{
	if (!PG_ARGISNULL(1) && round_start.round_id != round_id)
	{
		if (round_start.cxt == NULL)
			round_start.cxt = AllocSetContextCreate(TopMemoryContext,
													"nnpg round start",
													ALLOCSET_DEFAULT_SIZES);
		MemoryContextReset(round_start.cxt);
		round_start.round_id = -1;
		round_start.model = keep_bytea(fcinfo, 1);
		round_start.teacher = PG_ARGISNULL(2) ? NULL : keep_bytea(fcinfo, 2);
		round_start.round_id = round_id;
	}
	if (round_start.round_id != round_id)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the model of round " INT64_FORMAT " has not reached this replica",
						round_id),
				 errhint("Pass the model while nnpg.nn_replica_wants() is true.")));
}

/* nn_replica_wants(round_id): does this backend lack the round's start? */
PG_FUNCTION_INFO_V1(nnpg_replica_wants);
Datum
nnpg_replica_wants(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(round_start.round_id != PG_GETARG_INT64(0));
}

/* A new replica of the round's model. */
static replica *
replica_start(MemoryContext aggcxt)
{
	replica    *rp = replica_new(aggcxt);

	rp->model = nnpg_load_model(round_start.model, rp->hdr.eoh_context);
	rp->c.replicas = 1;
	rp->c.base_step = nn_model_step_count(rp->model);
	INSTR_TIME_SET_CURRENT(rp->started);
	return rp;
}

/* nn_replica_step(state, model, teacher, settings, row): take a row. */
PG_FUNCTION_INFO_V1(nnpg_replica_step);
Datum
nnpg_replica_step(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "nn_replica_step()");
	replica    *rp;
	HeapTupleHeader row;
	ErrorContextCallback cb;

	if (PG_ARGISNULL(3))
		nnpg_null_argument("settings");
	if (PG_ARGISNULL(0))
	{
		round_settings s;

		/* keep what the call brings, even without a row */
		read_settings(PG_GETARG_JSONB_P(3), &s);
		keep_round_start(fcinfo, s.round_id);
		if (PG_ARGISNULL(4))
			PG_RETURN_NULL();	/* no replica without a row */
		rp = replica_start(aggcxt);
		rp->s = s;
	}
	else
		rp = replica_of(PG_GETARG_DATUM(0), aggcxt);
	if (PG_ARGISNULL(4))
		PG_RETURN_DATUM(EOHPGetRWDatum(&rp->hdr));
	row = PG_GETARG_HEAPTUPLEHEADER(4);

	cb.callback = replica_error_callback;
	cb.arg = rp;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	if (!rp->training)
	{
		/* a state that arrived flat has no settings yet */
		if (rp->s.rounds == 0)
			read_settings(PG_GETARG_JSONB_P(3), &rp->s);
		replica_setup(rp, row, PG_GETARG_JSONB_P(3));
	}
	replica_take(rp, row);
	error_context_stack = cb.previous;
	PG_RETURN_DATUM(EOHPGetRWDatum(&rp->hdr));
}

/* Merge src into dst: counters add, models average by rows trained. */
static void
replica_merge(replica *dst, const nnpg_replica_counts *c, nn_model *src)
{
	int64		trained = dst->c.trained + c->trained;
	nn_error	err;

	if (c->base_step != dst->c.base_step)
		bad_replica("replicas of different rounds");
	if (c->trained > 0)
	{
		double		w = (double) c->trained / (double) trained;

		memset(&err, 0, sizeof(err));
		nnpg_check(nn_model_average(dst->model, src, w, &err), &err);
		/* the replicas stepped side by side: their mean count of steps */
		dst->c.steps = (int64) rint(dst->c.steps + w * (c->steps - dst->c.steps));
		nn_model_set_step(dst->model, dst->c.base_step + dst->c.steps);
	}
	dst->c.rows += c->rows;
	dst->c.trained = trained;
	dst->c.correct += c->correct;
	dst->c.skipped += c->skipped;
	dst->c.replicas += c->replicas;
	dst->c.loss_sum += c->loss_sum;
	dst->c.seconds += c->seconds;
	dst->c.max_seconds = Max(dst->c.max_seconds, c->max_seconds);
	dst->flat = NULL;
}

/* Seconds this process spent merging replicas since the last round began. */
static double merge_seconds;

/* nn_replica_merge(a, b): the combine function. */
PG_FUNCTION_INFO_V1(nnpg_replica_merge);
Datum
nnpg_replica_merge(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "nn_replica_merge()");
	replica    *dst;
	nnpg_replica_counts c;
	const uint8 *bytes;
	size_t		len;
	bytea	   *flat;
	MemoryContext tmp;
	MemoryContext old;
	nn_model   *src = NULL;
	instr_time	start,
				end;

	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	if (PG_ARGISNULL(0))
	{
		flat = flat_of(PG_GETARG_DATUM(1));
		dst = expand_flat(flat, aggcxt);
		PG_RETURN_DATUM(EOHPGetRWDatum(&dst->hdr));
	}
	INSTR_TIME_SET_CURRENT(start);
	dst = replica_of(PG_GETARG_DATUM(0), aggcxt);
	replica_finish(dst);
	flat = flat_of(PG_GETARG_DATUM(1));
	read_flat(VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat), &c, &bytes, &len);
	tmp = AllocSetContextCreate(CurrentMemoryContext, "nnpg replica merge",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);
	if (c.trained > 0)
		src = nnpg_load_model_bytes(bytes, len, tmp);
	replica_merge(dst, &c, src);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, start);
	merge_seconds += INSTR_TIME_GET_DOUBLE(end);
	PG_RETURN_DATUM(EOHPGetRWDatum(&dst->hdr));
}

/* nn_replica_final(state): the merged replica, its rows all trained. */
PG_FUNCTION_INFO_V1(nnpg_replica_final);
Datum
nnpg_replica_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(DatumGetByteaPCopy(PointerGetDatum(flat_of(PG_GETARG_DATUM(0)))));
}

/* nn_replica_model(replica): its model bytes, as nn_import takes them. */
PG_FUNCTION_INFO_V1(nnpg_replica_model);
Datum
nnpg_replica_model(PG_FUNCTION_ARGS)
{
	bytea	   *flat = flat_of(PG_GETARG_DATUM(0));
	nnpg_replica_counts c;
	const uint8 *bytes;
	size_t		len;
	bytea	   *out;

	read_flat(VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat), &c, &bytes, &len);
	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), bytes, len);
	PG_RETURN_BYTEA_P(out);
}

/* ---------- the type's text and binary forms ---------- */

/* A flat replica of len bytes at data, checked, as a new varlena. */
static bytea *
checked_flat(const char *data, size_t len)
{
	nnpg_replica_counts c;
	const uint8 *bytes;
	size_t		model_len;
	bytea	   *flat;

	read_flat(data, len, &c, &bytes, &model_len);
	flat = palloc(VARHDRSZ + len);
	SET_VARSIZE(flat, VARHDRSZ + len);
	memcpy(VARDATA(flat), data, len);
	return flat;
}

PG_FUNCTION_INFO_V1(nnpg_replica_in);
Datum
nnpg_replica_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	size_t		slen = strlen(s);
	int			max = pg_b64_dec_len((int) Min(slen, (size_t) PG_INT32_MAX));
	char	   *buf = palloc(max + 1);
	int			len = pg_b64_decode(s, (int) slen, buf, max);

	if (slen > (size_t) PG_INT32_MAX || len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type nn_replica"),
				 errdetail("The text form is base64.")));
	PG_RETURN_BYTEA_P(checked_flat(buf, (size_t) len));
}

PG_FUNCTION_INFO_V1(nnpg_replica_out);
Datum
nnpg_replica_out(PG_FUNCTION_ARGS)
{
	bytea	   *flat = flat_of(PG_GETARG_DATUM(0));
	int			len = (int) VARSIZE_ANY_EXHDR(flat);
	int			max = pg_b64_enc_len(len);
	char	   *out = palloc(max + 1);
	int			n = pg_b64_encode(VARDATA_ANY(flat), len, out, max);

	if (n < 0)
		elog(ERROR, "could not encode an nn_replica value");
	out[n] = '\0';
	PG_RETURN_CSTRING(out);
}

PG_FUNCTION_INFO_V1(nnpg_replica_recv);
Datum
nnpg_replica_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			len = buf->len - buf->cursor;
	const char *data = pq_getmsgbytes(buf, len);

	PG_RETURN_BYTEA_P(checked_flat(data, (size_t) len));
}

PG_FUNCTION_INFO_V1(nnpg_replica_send);
Datum
nnpg_replica_send(PG_FUNCTION_ARGS)
{
	bytea	   *flat = flat_of(PG_GETARG_DATUM(0));
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* ---------- which rows a round takes ---------- */

/* splitmix64's finalizer: the bits of x, well mixed. */
static uint64
mix64(uint64 x)
{
	x = (x ^ (x >> 30)) * UINT64CONST(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64CONST(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* What nn_round_has keeps between rows: the settings and the row type. */
typedef struct round_filter
{
	Jsonb	   *settings;		/* a copy of the argument they were read from */
	round_settings s;
	Oid			row_type;
	int32		row_typmod;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
} round_filter;

/* The filter state of this call site, for these settings and row type. */
static round_filter *
filter_of(FunctionCallInfo fcinfo, Jsonb *settings, HeapTupleHeader row)
{
	round_filter *f = fcinfo->flinfo->fn_extra;
	Oid			type = HeapTupleHeaderGetTypeId(row);
	int32		typmod = HeapTupleHeaderGetTypMod(row);
	MemoryContext old;

	if (f == NULL)
		f = fcinfo->flinfo->fn_extra =
			MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(round_filter));
	/* the same settings, nearly always: compared by their bytes */
	if (f->settings == NULL || VARSIZE(f->settings) != VARSIZE(settings) ||
		memcmp(f->settings, settings, VARSIZE(settings)) != 0)
	{
		read_settings(settings, &f->s);
		if (f->settings != NULL)
			pfree(f->settings);
		f->settings = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt,
										 VARSIZE(settings));
		memcpy(f->settings, settings, VARSIZE(settings));
	}
	if (f->desc == NULL || f->row_type != type || f->row_typmod != typmod)
	{
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		f->desc = lookup_rowtype_tupdesc_copy(type, typmod);
		f->values = palloc(sizeof(Datum) * f->desc->natts);
		f->nulls = palloc(sizeof(bool) * f->desc->natts);
		f->row_type = type;
		f->row_typmod = typmod;
		MemoryContextSwitchTo(old);
	}
	return f;
}

/* A hash of a row's values from seed: each column's bytes, NULLs marked. */
static uint64
row_hash(round_filter *f, HeapTupleHeader row, uint64 seed)
{
	HeapTupleData tuple;
	uint64		h = seed;

	row_tuple(row, &tuple);
	heap_deform_tuple(&tuple, f->desc, f->values, f->nulls);
	for (int i = 0; i < f->desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(f->desc, i);
		Datum		v = f->values[i];

		if (f->nulls[i])
			h = mix64(h + 1);
		else if (att->attbyval)
			h = hash_bytes_extended((const unsigned char *) &v, sizeof(v), h);
		else if (att->attlen == -1)
		{
			struct varlena *d = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(v));

			h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(d),
									VARSIZE_ANY_EXHDR(d), h);
		}
		else
			h = hash_bytes_extended((const unsigned char *) DatumGetPointer(v),
									att->attlen > 0 ? att->attlen :
									strlen(DatumGetCString(v)), h);
	}
	return h;
}

/*
 * nn_round_has(settings, row): does the round take the row?  With
 * validation_split, the rows whose hash (under the fit's seed) falls in
 * the fraction are validation rows, the same ones every epoch: evaluation
 * rounds take them, training rounds the others.  A training round takes a
 * row when the hash, mixed with the epoch, is its number modulo rounds.
 */
PG_FUNCTION_INFO_V1(nnpg_round_has);
Datum
nnpg_round_has(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(1);
	round_filter *f = filter_of(fcinfo, PG_GETARG_JSONB_P(0), row);
	const round_settings *s = &f->s;
	uint64		h = row_hash(f, row, (uint64) s->seed);

	if (s->validation_split > 0 &&
		((double) (h >> 11) * 0x1.0p-53 < s->validation_split) != s->validation_rows)
		PG_RETURN_BOOL(false);
	if (s->evaluate)
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(mix64(h + (uint64) s->epoch) % (uint64) s->rounds ==
				   (uint64) s->round);
}

/* ---------- the leader: rounds ---------- */

/* A flat replica's counters and model bytes (nn_fit reads a round's). */
void
nnpg_replica_read(const bytea *flat, nnpg_replica_counts *c,
				  const uint8 **model, size_t *len)
{
	read_flat(VARDATA_ANY(flat), VARSIZE_ANY_EXHDR(flat), c, model, len);
}

/* Where the plan trains: one process, parallel workers, or Citus nodes. */
static nnpg_round_kind
plan_kind(Plan *plan)
{
	nnpg_round_kind k;

	if (plan == NULL)
		return NNPG_ROUNDS_NONE;
	if (IsA(plan, Gather) || IsA(plan, GatherMerge))
		return NNPG_ROUNDS_WORKERS;
	if (IsA(plan, CustomScan) &&
		strncmp(((CustomScan *) plan)->methods->CustomName, "Citus", 5) == 0)
		return NNPG_ROUNDS_CITUS;
	k = plan_kind(plan->lefttree);
	return k != NNPG_ROUNDS_NONE ? k : plan_kind(plan->righttree);
}

/* Planner settings of the rounds: every worker asked for, whatever the
 * table's size, and none of the leader's time spent on a replica. */
static const char *const round_planner_settings[][2] =
{
	{"parallel_leader_participation", "off"},
	{"min_parallel_table_scan_size", "0"},
	{"parallel_setup_cost", "0"},
	{"parallel_tuple_cost", "0"},
};

/* Set a planner setting until the caller's GUC nest level ends. */
static void
set_round_setting(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Prepare query's round statement under the settings that make the
 * planner give it workers parallel workers, the leader only merging.
 */
SPIPlanPtr
nnpg_round_prepare(const char *query, int32 workers, nnpg_round_kind *kind)
{
	char	   *sql = psprintf("SELECT nnpg.nn_train("
							   "CASE WHEN nnpg.nn_replica_wants($4) THEN $1 END, "
							   "CASE WHEN nnpg.nn_replica_wants($4) THEN $2 END, "
							   "$3, q) FROM (%s) AS q WHERE nnpg.nn_round_has($3, q)",
							   query);
	Oid			argtypes[4] = {BYTEAOID, BYTEAOID, JSONBOID, INT8OID};
	char		n[16];
	SPIPlanPtr	plan;
	CachedPlan *cp;
	ListCell   *lc;

	/* the leader merges; each worker trains one replica */
	snprintf(n, sizeof(n), "%d", workers);
	set_round_setting("max_parallel_workers_per_gather", n);
	for (int i = 0; i < lengthof(round_planner_settings); i++)
		set_round_setting(round_planner_settings[i][0],
						  round_planner_settings[i][1]);
	plan = SPI_prepare_cursor(sql, 4, argtypes, CURSOR_OPT_PARALLEL_OK);
	if (plan == NULL)
		elog(ERROR, "could not prepare the training rounds: %s",
			 SPI_result_code_string(SPI_result));
	*kind = NNPG_ROUNDS_NONE;
	cp = SPI_plan_get_cached_plan(plan);
	if (cp != NULL)
	{
		foreach(lc, cp->stmt_list)
		{
			PlannedStmt *ps = lfirst_node(PlannedStmt, lc);

			if (*kind == NNPG_ROUNDS_NONE)
				*kind = plan_kind(ps->planTree);
		}
		ReleaseCachedPlan(cp, NULL);	/* an unsaved plan's has no owner */
	}
	return plan;
}

/*
 * Run a round: the replicas start from model (with its optimizer state)
 * and teacher (NULL: none); the merged replica's flat form, in the
 * current context, or NULL when no replica took a row.  round_id, in
 * settings too, must be new for every round.  *merge_secs: the
 * time this process (the leader, Citus's coordinator) spent merging.
 */
bytea *
nnpg_round_run(SPIPlanPtr plan, bytea *model, bytea *teacher, Jsonb *settings,
			   int64 round_id, double *merge_secs)
{
	Datum		values[4];
	char		nulls[4] = {' ', teacher ? ' ' : 'n', ' ', ' '};
	bool		isnull;
	Datum		d;
	int			rc;
	bytea	   *result = NULL;

	values[0] = PointerGetDatum(model);
	values[1] = PointerGetDatum(teacher);
	values[2] = JsonbPGetDatum(settings);
	values[3] = Int64GetDatum(round_id);
	merge_seconds = 0;
	rc = SPI_execute_plan(plan, values, nulls, true, 0);
	*merge_secs = merge_seconds;
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "training round failed: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		result = DatumGetByteaPCopy(d);
	SPI_freetuptable(SPI_tuptable);
	return result;
}
