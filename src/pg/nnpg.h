/*
 * nnpg.h: shared declarations of the PostgreSQL glue (src/pg).
 *
 * The glue is the only code that touches fmgr, SPI, memory contexts, GUCs,
 * ereport and the model table; the math lives in src/core (nn.h).
 *
 *	nnpg.c		_PG_init, GUCs, allocator, CRC, nn_status -> ereport
 *	spec.c		jsonb layers <-> nn_model_spec, option helpers
 *	data.c		reading query rows (features, target, key) through SPI
 *	store.c		the model table, per-name locks and the model cache
 *	fit.c		nn_fit
 *	predict.c	nn_predict, nn_classify, nn_predict_batch, nn_evaluate,
 *				nn_confusion_matrix
 *	manage.c	nn_create, nn_summary, nn_history, nn_drop, nn_export,
 *				nn_import
 *	parallel.c	the replica aggregate of data-parallel nn_fit, its rounds
 */
#ifndef NNPG_H
#define NNPG_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/palloc.h"

#include "nn.h"

/* ---------- nnpg.c ---------- */

extern int	nnpg_threads;
extern int	nnpg_data_cache_mb;
extern int	nnpg_max_model_mb;
extern int	nnpg_model_cache_mb;

/* Apply nnpg.threads in this backend; every entry point calls it. */
extern void nnpg_apply_threads(void);
/* CPUs online, the default of nnpg.threads. */
extern int	nnpg_online_cpus(void);
/* Use n threads from now on (a replica's share of the cores). */
extern void nnpg_apply_thread_count(int n);

/* Byte budget handed to the core (nnpg.max_model_mb). */
extern size_t nnpg_max_model_bytes(void);
/* Bytes of training data a fit may keep in memory (nnpg.data_cache_mb). */
extern size_t nnpg_data_cache_bytes(void);
/* Bytes a backend's model cache may hold (nnpg.model_cache_mb). */
extern size_t nnpg_model_cache_bytes(void);
/* ERROR 25006 on a standby or in a read-only transaction. */
extern void nnpg_prevent_read_only(const char *what);

/* An allocator bound to a memory context, itself allocated in it. */
extern nn_alloc *nnpg_alloc_create(MemoryContext cxt);

/* 2 MB: the size of a transparent huge page on x86-64 and arm64 */
#define NNPG_HUGE_PAGE ((uintptr_t) 2 * 1024 * 1024)
extern void nnpg_advise_huge(void *p, size_t size);

/* CRC-32C step with PostgreSQL's implementation (nn_crc32c_fn). */
extern uint32_t nnpg_crc32c(uint32_t crc, const void *data, size_t len);

/* Report a core error; never returns. */
extern void nnpg_report(const nn_error *err) pg_attribute_noreturn();

/*
 * Report a core error about one row of a batch, naming its query row:
 * slot_row[i] is the 1-based query row of batch row i.
 */
extern void nnpg_report_row(const nn_error *err, const int64 *slot_row)
			pg_attribute_noreturn();

/* Report a core error when status is not NN_OK. */
static inline void
nnpg_check(nn_status status, const nn_error *err)
{
	if (status != NN_OK)
		nnpg_report(err);
}

/* nnpg_check for a batch whose rows came from a query. */
static inline void
nnpg_check_rows(nn_status status, const nn_error *err, const int64 *slot_row)
{
	if (status != NN_OK)
		nnpg_report_row(err, slot_row);
}

/* A random 63-bit seed for runs without one. */
extern int64 nnpg_random_seed(void);

/* Raise 22004 for a NULL argument that needs a value. */
extern void nnpg_null_argument(const char *argname) pg_attribute_noreturn();

/* ---------- progress.c ---------- */

typedef enum nnpg_fit_phase
{
	NNPG_PHASE_READING,
	NNPG_PHASE_TRAINING,
	NNPG_PHASE_VALIDATING,
	NNPG_PHASE_STORING
} nnpg_fit_phase;

/* nnpg.track_progress */
extern bool nnpg_track_progress;

/* From _PG_init: shared memory for nn_progress when preloaded. */
extern void nnpg_progress_init(void);
/* A fit of model starts; its slot is freed by _end or an abort. */
extern void nnpg_progress_begin(const char *model, int32 epochs);
extern void nnpg_progress_end(void);
/* A phase starts (training: epoch e, rows_total per epoch or -1). */
extern void nnpg_progress_phase(nnpg_fit_phase phase, int32 epoch,
								int64 rows_total);
/* Rows done in the phase, and the epoch's mean loss so far (NaN: none). */
extern void nnpg_progress_rows(int64 rows_done, double loss);

/* ---------- spec.c ---------- */

/* Parse a jsonb array of layer objects; input shape left unset (rank 0). */
extern void nnpg_parse_layers(Jsonb *layers, nn_model_spec *spec,
							  bool allow_empty);
/* Set the input shape from an int[] of 1..3 positive sizes. */
extern void nnpg_parse_input_shape(ArrayType *shape, nn_model_spec *spec);
/* The layers of a spec as a JSON array text (what nn_import stores). */
extern char *nnpg_spec_to_json(const nn_model_spec *spec);
/* The input shape of a spec as a JSON array text. */
extern char *nnpg_shape_to_json(int rank, const int32 *shape);

/* JSON text -> jsonb datum. */
extern Datum nnpg_jsonb_from_cstring(const char *json);
/* Append a double as a JSON number, or null when not finite. */
extern void nnpg_json_number(StringInfo buf, double value);
/* The same for a float, in its shortest form as a float. */
extern void nnpg_json_float(StringInfo buf, float value);

/* Option helpers shared by nn_fit: the value of a jsonb number. */
extern bool nnpg_jsonb_number(JsonbValue *v, double *out);

/* ---------- data.c ---------- */

typedef enum nnpg_col_kind
{
	NNPG_COL_FLOAT4_ARRAY,
	NNPG_COL_FLOAT8_ARRAY,
	NNPG_COL_INT4_ARRAY,
	NNPG_COL_INT2_ARRAY,
	NNPG_COL_INT8_ARRAY,		/* bigint[]: embedding token ids */
	NNPG_COL_BYTEA,
	NNPG_COL_FLOAT4,
	NNPG_COL_FLOAT8,
	NNPG_COL_INT2,
	NNPG_COL_INT4,
	NNPG_COL_INT8,
	NNPG_COL_NUMERIC,
	NNPG_COL_BOOL
} nnpg_col_kind;

/* How the target column is read. */
typedef enum nnpg_target_mode
{
	NNPG_TARGET_NONE,			/* no target (prediction) */
	NNPG_TARGET_CLASS,			/* class index 0..n_classes-1, one float */
	NNPG_TARGET_BINARY,			/* a probability in [0, 1] per output */
	NNPG_TARGET_VALUE			/* any finite numbers, n_out per row */
} nnpg_target_mode;

struct nnpg_reader;

/*
 * Takes a row from nnpg_reader_read: the reader is on the row, and its
 * values are valid only during the call.
 */
typedef void (*nnpg_row_fn) (struct nnpg_reader *r, void *arg);

/*
 * Reads the rows of a user query through an SPI cursor, a chunk at a time,
 * and converts them to model inputs.  Columns: an optional key, features,
 * an optional target (the last column).  SPI must be connected.
 */
typedef struct nnpg_reader
{
	/* configuration, set before nnpg_reader_open */
	const char *label;			/* "query", "validation query" in messages */
	bool		has_key;		/* first column is an integer key */
	bool		has_target;		/* last column is the target */
	bool		skip_nulls;		/* skip rows with NULLs rather than fail */

	/* set once the model is known (0: take from the first row) */
	int32		n_in;
	nnpg_target_mode target_mode;
	int32		n_out;			/* target values per row (vector targets) */
	int32		n_classes;		/* NNPG_TARGET_CLASS */

	/* the query */
	const char *query;
	SPIPlanPtr	plan;
	Portal		portal;
	DestReceiver *dest;			/* fetched rows go to the reader */
	MemoryContext cxt;			/* the reader's own allocations */
	MemoryContext row_cxt;		/* reset for every row */
	int			guc_level;		/* the query's own settings, see open */

	/* the columns */
	int			natts;
	int			first_feature;	/* 0-based attribute number */
	int			n_feature_cols;
	nnpg_col_kind *kinds;		/* natts */
	char	  **colnames;		/* natts */
	int32	   *first_len;		/* values per feature column in the first row */
	bool		bytes_only;		/* every feature column is bytea */
	bool		target_scalar;	/* the target column is a single number */
	Oid			key_type;		/* base type of the key column */

	/* the read under way */
	nnpg_row_fn fn;
	void	   *fn_arg;
	int64		taken;			/* rows passed to fn */
	bool		hold;			/* nnpg_reader_next: copy rows into held */
	TupleTableSlot *held;

	/* position */
	bool		eof;
	int64		row_no;			/* 1-based query row of the current row */
	int64		n_rows;			/* rows accepted since the last open */
	int64		n_skipped;

	/*
	 * The current row: during a row function, or after nnpg_reader_next
	 * returned true until the next read.
	 */
	Datum	   *values;			/* natts, detoasted in row_cxt */
	bool	   *isnull;
	int32	   *lens;			/* natts */
	int32		width;			/* feature values of the current row */
} nnpg_reader;

/* Readers that are open at once close in the reverse order. */
extern void nnpg_reader_open(nnpg_reader *r, const char *query);
extern void nnpg_reader_rewind(nnpg_reader *r);
extern void nnpg_reader_close(nnpg_reader *r);
/* Columns of rows of type tupdesc (open does it for the query's rows). */
extern void nnpg_reader_describe(nnpg_reader *r, TupleDesc tupdesc);
/* Make a row from elsewhere current; false when skipped for a NULL. */
extern bool nnpg_reader_take(nnpg_reader *r, TupleTableSlot *slot);
/* Advance to the next usable row and keep it current; false at the end. */
extern bool nnpg_reader_next(nnpg_reader *r);
/*
 * Pass the next usable rows to fn until it has taken max_rows or the query
 * ends (fn NULL: only check them); returns how many it took.
 */
extern int64 nnpg_reader_read(nnpg_reader *r, int64 max_rows, nnpg_row_fn fn,
							  void *arg);
/* Copy the current row's features (n_in values). */
extern void nnpg_reader_features(nnpg_reader *r, float *x);
extern void nnpg_reader_features_bytes(nnpg_reader *r, uint8 *x);
/* Copy the current row's target: 1 float for classes, else n_out. */
extern void nnpg_reader_target(nnpg_reader *r, float *y);
/* The current row's key; false when it is NULL. */
extern bool nnpg_reader_key(nnpg_reader *r, int64 *key);
/* Floats per row that nnpg_reader_target writes. */
extern int32 nnpg_reader_target_width(const nnpg_reader *r);

/*
 * The loss for a model and target: the given name, or inferred from the
 * output activation and whether the target is a single number.
 */
extern nn_loss_kind nnpg_choose_loss(const char *name, nn_model *model,
									 bool target_scalar);
/* How a loss reads the target column, and the classes it counts. */
extern void nnpg_target_setup(nnpg_reader *r, nn_model *model,
							  nn_loss_kind loss);
/* Number of classes a classification loss distinguishes. */
extern int32 nnpg_loss_classes(nn_model *model, nn_loss_kind loss);

/* ---------- store.c ---------- */

/* One row of nnpg.models, copied out of SPI memory. */
typedef struct nnpg_model_row
{
	char	   *name;
	int32		version;
	char	   *owner;
	Jsonb	   *layers;
	Jsonb	   *training;
	bytea	   *weights;		/* NULL until the model is built */
	TransactionId xmin;
	ItemPointerData ctid;
	Oid			filenode;		/* file of nnpg.models holding the row */
} nnpg_model_row;

/*
 * Fetch a model row (the latest version when version_isnull).  SPI must be
 * connected; results are copied into cxt.  Raises 42704 when there is none.
 * read_only as SPI: false takes a new snapshot (after waiting for a lock).
 */
extern void nnpg_fetch_model(const char *name, bool version_isnull,
							 int32 version, bool with_weights, bool read_only,
							 MemoryContext cxt, nnpg_model_row *row);
extern void nnpg_model_not_found(const char *name, bool version_isnull,
								 int32 version) pg_attribute_noreturn();
extern void nnpg_model_not_built(const char *name) pg_attribute_noreturn();

/* Deserialize and validate model bytes into a model allocated in cxt. */
extern nn_model *nnpg_load_model(const bytea *weights, MemoryContext cxt);
extern nn_model *nnpg_load_model_bytes(const uint8 *bytes, size_t len,
									   MemoryContext cxt);
/* Fetch and load a model by name (the latest version when version_isnull)
 * into cxt with the caller's rights; row receives its row. */
extern nn_model *nnpg_load_named_model(const char *name, bool version_isnull,
									   int32 version, MemoryContext cxt,
									   nnpg_model_row *row);
/* Serialize a model into a palloc'd bytea. */
extern bytea *nnpg_serialize_model(const nn_model *model, bool with_optimizer);

/* What nn_models shows of a version besides its rows' values. */
typedef struct nnpg_model_facts
{
	int64		params;			/* as nn_summary counts them */
	double		sparsity;		/* zero weights of the prunable kernels */
	const char *format;			/* "float32" or "int8" */
} nnpg_model_facts;

/* The facts of a model. */
extern void nnpg_model_facts_of(const nn_model *model, nnpg_model_facts *f);

/*
 * Insert a model version (version_isnull: the next one, 1 for a new name)
 * and return its version; 42710 when it exists.  owner NULL: the current
 * user; facts NULL (with weights NULL): a model not built yet.  SPI must be
 * connected.
 */
extern int32 nnpg_insert_model(const char *name, bool version_isnull,
							   int32 version, const char *owner,
							   Datum layers, Datum training, Datum metrics,
							   bool metrics_isnull, Datum history,
							   bool history_isnull, bytea *weights,
							   const nnpg_model_facts *facts);

/* Serialize fits and creates of one model name until the transaction ends. */
extern void nnpg_lock_model_name(const char *name);

/*
 * The model a call site uses, cached per backend and looked up once per
 * statement; owned by the cache, valid until the call returns.
 */
extern nn_model *nnpg_cached_model(FunctionCallInfo fcinfo, text *name,
								   bool version_isnull, int32 version);

/* The loss recorded in a model's training settings; false if none. */
extern bool nnpg_training_loss(Jsonb *training, nn_loss_kind *loss);

/* ---------- utilities ---------- */

extern char *nnpg_text_to_cstring_arg(FunctionCallInfo fcinfo, int argno,
									  const char *argname);

/* ---------- parallel.c ---------- */

/* What a replica (or the merge of several) did in a round. */
typedef struct nnpg_replica_counts
{
	int64		rows;			/* rows trained on or evaluated */
	int64		trained;		/* rows trained on: the merge's weight */
	int64		steps;			/* optimizer steps (merged replicas: their
								 * row-weighted mean) */
	int64		correct;		/* correctly classified rows */
	int64		skipped;		/* rows with NULLs skipped */
	int64		replicas;		/* replicas merged */
	int64		base_step;		/* the model's step count at the start */
	double		loss_sum;
	double		seconds;		/* the replicas' time on their rows, summed */
	double		max_seconds;	/* the longest replica's */
} nnpg_replica_counts;

/* A round's result: its counters and the merged model's bytes. */
extern void nnpg_replica_read(const bytea *flat, nnpg_replica_counts *c,
							  const uint8 **model, size_t *len);
/* Where a round's plan trains its replicas. */
typedef enum nnpg_round_kind
{
	NNPG_ROUNDS_NONE,			/* in one process: not worth rounds */
	NNPG_ROUNDS_WORKERS,		/* PostgreSQL's parallel workers */
	NNPG_ROUNDS_CITUS			/* the shards of a Citus table, on its nodes */
} nnpg_round_kind;

/*
 * The round statement over query, planned for workers parallel workers
 * (the settings stay until the caller's GUC nest level ends), and where
 * its plan trains.
 */
extern SPIPlanPtr nnpg_round_prepare(const char *query, int32 workers,
									 nnpg_round_kind *kind);
/* Run a round; the merged replica, or NULL when no replica took a row. */
extern bytea *nnpg_round_run(SPIPlanPtr plan, bytea *model, bytea *teacher,
							 Jsonb *settings, int64 round_id,
							 double *merge_secs);

#endif							/* NNPG_H */
