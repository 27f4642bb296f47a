/*
 * data.c: reading model inputs from the rows of a user query.
 *
 * The query runs through SPI with the caller's rights, as a read-only
 * cursor fetched a chunk at a time, so memory does not grow with the number
 * of rows.  The fetched rows go to the reader's own DestReceiver, which
 * checks each one in the executor's slot and hands it to the caller's row
 * function, so no tuple is copied into an SPI tuple table.  The columns
 * are: an optional integer key (nn_predict_batch), the features,
 * concatenated in column order (arrays flattened row-major, bytea one
 * unsigned byte per value, numeric scalars one value), and an optional
 * target, the last column.  Every row is checked here: NULLs,
 * NaN/Inf, the feature count, ragged columns, and target ranges; errors
 * name the 1-based row and the column.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "tcop/pquery.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/portal.h"

#include "nnpg.h"

/* rows per cursor fetch */
#define NNPG_FETCH_ROWS 1000

/* A column's kind, or false when the type is not supported. */
static bool
column_kind(Oid typid, nnpg_col_kind *kind)
{
	switch (getBaseType(typid))
	{
		case FLOAT4ARRAYOID:
			*kind = NNPG_COL_FLOAT4_ARRAY;
			return true;
		case FLOAT8ARRAYOID:
			*kind = NNPG_COL_FLOAT8_ARRAY;
			return true;
		case INT4ARRAYOID:
			*kind = NNPG_COL_INT4_ARRAY;
			return true;
		case INT2ARRAYOID:
			*kind = NNPG_COL_INT2_ARRAY;
			return true;
		case INT8ARRAYOID:
			*kind = NNPG_COL_INT8_ARRAY;
			return true;
		case BYTEAOID:
			*kind = NNPG_COL_BYTEA;
			return true;
		case FLOAT4OID:
			*kind = NNPG_COL_FLOAT4;
			return true;
		case FLOAT8OID:
			*kind = NNPG_COL_FLOAT8;
			return true;
		case INT2OID:
			*kind = NNPG_COL_INT2;
			return true;
		case INT4OID:
			*kind = NNPG_COL_INT4;
			return true;
		case INT8OID:
			*kind = NNPG_COL_INT8;
			return true;
		case NUMERICOID:
			*kind = NNPG_COL_NUMERIC;
			return true;
		case BOOLOID:
			*kind = NNPG_COL_BOOL;
			return true;
		default:
			return false;
	}
}

/* Arrays have an element count; bytea a byte count; scalars one value. */
static bool
kind_is_scalar(nnpg_col_kind kind)
{
	return kind >= NNPG_COL_FLOAT4;
}

/* Open a cursor on the prepared plan. */
static void
open_portal(nnpg_reader *r)
{
	r->portal = SPI_cursor_open(NULL, r->plan, NULL, NULL, true);
	if (r->portal == NULL)
		elog(ERROR, "could not open a cursor: %s",
			 SPI_result_code_string(SPI_result));
	r->eof = false;
	r->row_no = 0;
	r->n_rows = 0;
	r->n_skipped = 0;
}

static bool reader_receive(TupleTableSlot *slot, DestReceiver *self);

/* The reader's DestReceiver: fetched rows go to reader_receive. */
typedef struct reader_dest
{
	DestReceiver pub;
	nnpg_reader *reader;
} reader_dest;

/* Nothing to set up per fetch: the reader was set up by open. */
static void
reader_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

/* Nothing to tear down per fetch. */
static void
reader_shutdown(DestReceiver *self)
{
}

/* Nothing to free: the receiver lives in the reader's context. */
static void
reader_destroy(DestReceiver *self)
{
}

/* Prepare the query, open a cursor and check its columns. */
void
nnpg_reader_open(nnpg_reader *r, const char *query)
{
	TupleDesc	tupdesc;
	MemoryContext old;
	reader_dest *dest;

	if (r->label == NULL)
		r->label = "query";
	r->query = query;

	/*
	 * Rows come in the table's order, every time: a table larger than a
	 * quarter of shared_buffers would otherwise be scanned from wherever
	 * another scan of it has got to (synchronize_seqscans), and the same
	 * seed would shuffle different rows into each batch.  The setting is
	 * the reader's (its cursor starts again for every streamed epoch) and
	 * is undone at close, or with the (sub)transaction on an error.
	 */
	r->guc_level = NewGUCNestLevel();
	(void) set_config_option("synchronize_seqscans", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	r->cxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg reader",
								   ALLOCSET_DEFAULT_SIZES);
	r->row_cxt = AllocSetContextCreate(r->cxt, "nnpg reader row",
									   ALLOCSET_DEFAULT_SIZES);

	r->plan = SPI_prepare(query, 0, NULL);
	if (r->plan == NULL)
		elog(ERROR, "could not prepare the %s: %s", r->label,
			 SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(r->plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a single SELECT statement", r->label)));
	open_portal(r);

	old = MemoryContextSwitchTo(r->cxt);
	/* a copy: the held slot outlives the portal across rewinds */
	tupdesc = CreateTupleDescCopy(r->portal->tupDesc);
	r->held = MakeSingleTupleTableSlot(tupdesc, &TTSOpsMinimalTuple);
	dest = palloc0(sizeof(reader_dest));
	dest->pub.receiveSlot = reader_receive;
	dest->pub.rStartup = reader_startup;
	dest->pub.rShutdown = reader_shutdown;
	dest->pub.rDestroy = reader_destroy;
	dest->pub.mydest = DestNone;
	dest->reader = r;
	r->dest = &dest->pub;
	MemoryContextSwitchTo(old);
	nnpg_reader_describe(r, tupdesc);
}

/*
 * Set up the columns of rows of type tupdesc: kinds, names, and what the
 * reader needs per row.  Allocates in the reader's context, which the
 * caller creates (with row_cxt) when the rows come from elsewhere.
 */
void
nnpg_reader_describe(nnpg_reader *r, TupleDesc tupdesc)
{
	int			min_cols;
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	r->natts = tupdesc->natts;
	min_cols = 1 + (r->has_key ? 1 : 0) + (r->has_target ? 1 : 0);
	if (r->natts < min_cols)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s returns %d column%s, but at least %d are needed",
						r->label, r->natts, r->natts == 1 ? "" : "s", min_cols),
				 r->has_key ?
				 errdetail("The first column is the key and the others are features.") :
				 r->has_target ?
				 errdetail("The last column is the target and the others are features.") :
				 errdetail("Every column is a feature.")));
	r->first_feature = r->has_key ? 1 : 0;
	r->n_feature_cols = r->natts - r->first_feature - (r->has_target ? 1 : 0);
	r->kinds = palloc0(sizeof(nnpg_col_kind) * r->natts);
	r->colnames = palloc0(sizeof(char *) * r->natts);
	r->first_len = palloc(sizeof(int32) * r->natts);
	r->lens = palloc0(sizeof(int32) * r->natts);
	r->values = palloc0(sizeof(Datum) * r->natts);
	r->isnull = palloc0(sizeof(bool) * r->natts);
	r->bytes_only = true;
	for (int i = 0; i < r->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		Oid			typid = att->atttypid;

		r->colnames[i] = pstrdup(NameStr(att->attname));
		r->first_len[i] = -1;
		if (r->has_key && i == 0)
		{
			Oid			base = getBaseType(typid);

			r->key_type = base;
			if (base != INT2OID && base != INT4OID && base != INT8OID)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("key column \"%s\" has unsupported type %s",
								r->colnames[i], format_type_be(typid)),
						 errhint("The first column must be a smallint, integer or bigint key.")));
			continue;
		}
		if (!column_kind(typid, &r->kinds[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" has unsupported type %s",
							r->colnames[i], format_type_be(typid)),
					 errhint("Columns must be real[], double precision[], integer[], smallint[], bigint[], bytea, or real, double precision, integer, bigint, smallint, numeric or boolean.")));
		if (r->has_target && i == r->natts - 1)
			r->target_scalar = kind_is_scalar(r->kinds[i]);
		else if (r->kinds[i] != NNPG_COL_BYTEA)
			r->bytes_only = false;
	}
	MemoryContextSwitchTo(old);
}

/* Close the cursor and open it again at the first row. */
void
nnpg_reader_rewind(nnpg_reader *r)
{
	SPI_cursor_close(r->portal);
	open_portal(r);
}

/* Release the cursor and the reader's memory. */
void
nnpg_reader_close(nnpg_reader *r)
{
	if (r->portal != NULL)
		SPI_cursor_close(r->portal);
	r->portal = NULL;
	if (r->plan != NULL)
		SPI_freeplan(r->plan);
	r->plan = NULL;
	ExecDropSingleTupleTableSlot(r->held);
	r->held = NULL;
	MemoryContextDelete(r->cxt);
	r->cxt = NULL;
	AtEOXact_GUC(true, r->guc_level);
}

static void null_value(nnpg_reader *r, int col, bool element) pg_attribute_noreturn();

/* A NULL where a value is needed. */
static void
null_value(nnpg_reader *r, int col, bool element)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 element ?
			 errmsg("row " INT64_FORMAT ": null element in column \"%s\"",
					r->row_no, r->colnames[col]) :
			 errmsg("row " INT64_FORMAT ": null value in column \"%s\"",
					r->row_no, r->colnames[col]),
			 r->has_target ?
			 errhint("Filter out rows with nulls in the query, or use options => '{\"on_null\": \"skip\"}' with nn_fit.") : 0));
	pg_unreachable();
}

/* A vector target must have one value per output. */
static void
check_target_length(nnpg_reader *r)
{
	int			col = r->natts - 1;

	if (r->has_target && !r->target_scalar &&
		r->target_mode != NNPG_TARGET_NONE &&
		r->lens[col] != r->n_out)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("row " INT64_FORMAT ": target has %d values, but the model has %d outputs",
						r->row_no, r->lens[col], r->n_out)));
}

/*
 * Detoast a fetched row's columns and count their values; false when the
 * row has a NULL and NULLs are skipped.
 */
static bool
load_row(nnpg_reader *r, TupleTableSlot *slot)
{
	int64		width = 0;
	int			target_col = r->has_target ? r->natts - 1 : -1;

	slot_getallattrs(slot);
	for (int i = 0; i < r->natts; i++)
	{
		r->values[i] = slot->tts_values[i];
		r->isnull[i] = slot->tts_isnull[i];
		if (r->isnull[i])
		{
			if (r->has_key && i == 0)
				continue;		/* a NULL key gives a NULL id */
			if (r->skip_nulls)
				return false;
			null_value(r, i, false);
		}
		if (r->has_key && i == 0)
		{
			r->lens[i] = 0;
			continue;
		}
		switch (r->kinds[i])
		{
			case NNPG_COL_FLOAT4_ARRAY:
			case NNPG_COL_FLOAT8_ARRAY:
			case NNPG_COL_INT4_ARRAY:
			case NNPG_COL_INT2_ARRAY:
			case NNPG_COL_INT8_ARRAY:
				{
					ArrayType  *a = DatumGetArrayTypeP(r->values[i]);

					if (ARR_HASNULL(a) && array_contains_nulls(a))
					{
						if (r->skip_nulls)
							return false;
						null_value(r, i, true);
					}
					r->values[i] = PointerGetDatum(a);
					r->lens[i] = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
					break;
				}
			case NNPG_COL_BYTEA:
				{
					bytea	   *b = DatumGetByteaPP(r->values[i]);
					size_t		len = VARSIZE_ANY_EXHDR(b);

					r->values[i] = PointerGetDatum(b);
					if (len > (size_t) PG_INT32_MAX)
						ereport(ERROR,
								(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
								 errmsg("row " INT64_FORMAT ": column \"%s\" has too many values",
										r->row_no, r->colnames[i])));
					r->lens[i] = (int32) len;
					break;
				}
			default:
				r->lens[i] = 1;
				break;
		}
		if (i != target_col)
			width += r->lens[i];
	}

	if (width > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row " INT64_FORMAT ": too many features (" INT64_FORMAT ")",
						r->row_no, width)));
	r->width = (int32) width;
	if (r->n_in > 0 && r->width != r->n_in)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("row " INT64_FORMAT ": expected %d features, not %d",
						r->row_no, r->n_in, r->width)));

	/* the same total can hide columns of changing length */
	for (int i = r->first_feature; i < r->first_feature + r->n_feature_cols; i++)
	{
		if (r->first_len[i] < 0)
			r->first_len[i] = r->lens[i];
		else if (r->lens[i] != r->first_len[i])
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("row " INT64_FORMAT ": column \"%s\" has %d values, not %d as in the first row",
							r->row_no, r->colnames[i], r->lens[i],
							r->first_len[i])));
	}

	check_target_length(r);
	return true;
}

/*
 * Check a fetched row and, when it is usable, hand it to the row function
 * of the read under way.  The row's values point into the executor's slot
 * or into row_cxt, so they are valid only until the next row.
 */
static bool
reader_receive(TupleTableSlot *slot, DestReceiver *self)
{
	nnpg_reader *r = ((reader_dest *) self)->reader;

	/* nnpg_reader_next keeps its row after the fetch */
	if (r->hold)
		slot = ExecCopySlot(r->held, slot);
	if (nnpg_reader_take(r, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(r->row_cxt);

		r->taken++;
		if (r->fn != NULL)
			r->fn(r, r->fn_arg);
		MemoryContextSwitchTo(old);
	}
	/* false would end the fetch and mark the cursor as at its end */
	return true;
}

/*
 * Make slot's row the current one: the next row number, checked and
 * detoasted into row_cxt (reset first).  False, and counted as skipped,
 * when it has a NULL and NULLs are skipped.
 */
bool
nnpg_reader_take(nnpg_reader *r, TupleTableSlot *slot)
{
	MemoryContext old;
	bool		usable;

	r->row_no++;
	MemoryContextReset(r->row_cxt);
	old = MemoryContextSwitchTo(r->row_cxt);
	usable = load_row(r, slot);
	MemoryContextSwitchTo(old);
	if (usable)
		r->n_rows++;
	else
		r->n_skipped++;
	return usable;
}

/*
 * Read rows until fn has taken max_rows of them or the query ends, and
 * return how many it took (fn NULL: the rows are only checked).  Each
 * fetch asks for no more rows than are still wanted, so none is lost.
 */
int64
nnpg_reader_read(nnpg_reader *r, int64 max_rows, nnpg_row_fn fn, void *arg)
{
	r->fn = fn;
	r->fn_arg = arg;
	r->taken = 0;
	while (!r->eof && r->taken < max_rows)
	{
		long		want = (long) Min(max_rows - r->taken, NNPG_FETCH_ROWS);

		/* once per fetch, so a cancel stops a long read */
		CHECK_FOR_INTERRUPTS();
		if (PortalRunFetch(r->portal, FETCH_FORWARD, want,
						   r->dest) < (uint64) want)
			r->eof = true;
	}
	return r->taken;
}

/* Advance to the next row that has no NULLs (or fail on one), and keep it. */
bool
nnpg_reader_next(nnpg_reader *r)
{
	int64		got;

	r->hold = true;
	got = nnpg_reader_read(r, 1, NULL, NULL);
	r->hold = false;
	return got == 1;
}

static void bad_value(nnpg_reader *r, int col, double v) pg_attribute_noreturn();

/* NaN, infinity, or a number a float cannot hold. */
static void
bad_value(nnpg_reader *r, int col, double v)
{
	if (isnan(v))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("row " INT64_FORMAT ": column \"%s\" contains NaN",
						r->row_no, r->colnames[col])));
	if (isinf(v))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("row " INT64_FORMAT ": column \"%s\" contains infinity",
						r->row_no, r->colnames[col])));
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("row " INT64_FORMAT ": value %g in column \"%s\" is out of range for type real",
					r->row_no, v, r->colnames[col])));
	pg_unreachable();
}

/* A finite double that fits a float. */
static inline float
to_float(nnpg_reader *r, int col, double v)
{
	if (unlikely(!isfinite(v) || fabs(v) > FLT_MAX))
		bad_value(r, col, v);
	return (float) v;
}

/* A scalar column as a double (checked by the caller). */
static double
scalar_value(nnpg_reader *r, int col)
{
	Datum		d = r->values[col];

	switch (r->kinds[col])
	{
		case NNPG_COL_FLOAT4:
			return DatumGetFloat4(d);
		case NNPG_COL_FLOAT8:
			return DatumGetFloat8(d);
		case NNPG_COL_INT2:
			return DatumGetInt16(d);
		case NNPG_COL_INT4:
			return DatumGetInt32(d);
		case NNPG_COL_INT8:
			return (double) DatumGetInt64(d);
		case NNPG_COL_NUMERIC:
			return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, d));
		case NNPG_COL_BOOL:
			return DatumGetBool(d) ? 1.0 : 0.0;
		default:
			elog(ERROR, "unexpected column kind: %d", (int) r->kinds[col]);
	}
	return 0;
}

/* Convert one column's values to floats. */
static void
column_floats(nnpg_reader *r, int col, float *out)
{
	int32		n = r->lens[col];

	switch (r->kinds[col])
	{
		case NNPG_COL_FLOAT4_ARRAY:
			{
				ArrayType  *a = DatumGetArrayTypeP(r->values[col]);

				/* no NULLs (checked), so the data is a plain float array */
				memcpy(out, ARR_DATA_PTR(a), sizeof(float) * n);
				for (int32 j = 0; j < n; j++)
				{
					if (unlikely(!isfinite(out[j])))
						bad_value(r, col, out[j]);
				}
				break;
			}
		case NNPG_COL_FLOAT8_ARRAY:
			{
				ArrayType  *a = DatumGetArrayTypeP(r->values[col]);
				const double *src = (const double *) ARR_DATA_PTR(a);

				for (int32 j = 0; j < n; j++)
					out[j] = to_float(r, col, src[j]);
				break;
			}
		case NNPG_COL_INT4_ARRAY:
			{
				ArrayType  *a = DatumGetArrayTypeP(r->values[col]);
				const int32 *src = (const int32 *) ARR_DATA_PTR(a);

				for (int32 j = 0; j < n; j++)
					out[j] = (float) src[j];
				break;
			}
		case NNPG_COL_INT2_ARRAY:
			{
				ArrayType  *a = DatumGetArrayTypeP(r->values[col]);
				const int16 *src = (const int16 *) ARR_DATA_PTR(a);

				for (int32 j = 0; j < n; j++)
					out[j] = (float) src[j];
				break;
			}
		case NNPG_COL_INT8_ARRAY:
			{
				/* exact up to 2^24, which covers any embedding table */
				ArrayType  *a = DatumGetArrayTypeP(r->values[col]);
				const int64 *src = (const int64 *) ARR_DATA_PTR(a);

				for (int32 j = 0; j < n; j++)
					out[j] = (float) src[j];
				break;
			}
		case NNPG_COL_BYTEA:
			{
				bytea	   *b = (bytea *) DatumGetPointer(r->values[col]);

				nn_bytes_to_floats(out, (const uint8 *) VARDATA_ANY(b), n);
				break;
			}
		default:
			out[0] = to_float(r, col, scalar_value(r, col));
			break;
	}
}

/* The current row's features as floats (width values). */
void
nnpg_reader_features(nnpg_reader *r, float *x)
{
	for (int i = r->first_feature; i < r->first_feature + r->n_feature_cols; i++)
	{
		column_floats(r, i, x);
		x += r->lens[i];
	}
}

/* The current row's features as bytes; every feature column is bytea. */
void
nnpg_reader_features_bytes(nnpg_reader *r, uint8 *x)
{
	Assert(r->bytes_only);
	for (int i = r->first_feature; i < r->first_feature + r->n_feature_cols; i++)
	{
		bytea	   *b = (bytea *) DatumGetPointer(r->values[i]);

		memcpy(x, VARDATA_ANY(b), r->lens[i]);
		x += r->lens[i];
	}
}

/* Floats per row of target. */
int32
nnpg_reader_target_width(const nnpg_reader *r)
{
	return r->target_mode == NNPG_TARGET_CLASS ? 1 : r->n_out;
}

/* The current row's target, checked against the loss. */
void
nnpg_reader_target(nnpg_reader *r, float *y)
{
	int			col = r->natts - 1;

	Assert(r->has_target);
	if (r->target_mode == NNPG_TARGET_CLASS)
	{
		double		v = scalar_value(r, col);

		if (isnan(v) || isinf(v))
			bad_value(r, col, v);
		if (v != floor(v))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("row " INT64_FORMAT ": class index %g is not an integer",
							r->row_no, v)));
		if (v < 0 || v >= r->n_classes)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("row " INT64_FORMAT ": class index %.0f is out of range for %d outputs",
							r->row_no, v, r->n_classes),
					 errhint("Class indexes run from 0 to the number of outputs minus one.")));
		y[0] = (float) v;
		return;
	}

	column_floats(r, col, y);
	if (r->target_mode == NNPG_TARGET_BINARY)
	{
		for (int32 j = 0; j < r->n_out; j++)
		{
			if (y[j] < 0 || y[j] > 1)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("row " INT64_FORMAT ": target %g is not between 0 and 1",
								r->row_no, (double) y[j]),
						 errhint("Binary cross-entropy needs targets that are 0, 1 or probabilities.")));
		}
	}
}

/* The current row's key. */
bool
nnpg_reader_key(nnpg_reader *r, int64 *key)
{
	Assert(r->has_key);
	if (r->isnull[0])
		return false;
	if (r->key_type == INT2OID)
		*key = DatumGetInt16(r->values[0]);
	else if (r->key_type == INT4OID)
		*key = DatumGetInt32(r->values[0]);
	else
		*key = DatumGetInt64(r->values[0]);
	return true;
}

/*
 * The loss given by name (model may then be NULL), or the one that fits the
 * output activation and the kind of target.
 */
nn_loss_kind
nnpg_choose_loss(const char *name, nn_model *model, bool target_scalar)
{
	nn_loss_kind loss;

	if (name != NULL)
	{
		if (nn_loss_from_name(name, &loss) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized loss \"%s\"", name),
					 errhint("Losses are mse, mae, huber, binary_crossentropy, categorical_crossentropy and sparse_categorical_crossentropy.")));
		return loss;
	}
	switch (nn_model_output_activation(model))
	{
		case NN_ACT_SOFTMAX:
			return target_scalar ? NN_LOSS_SPARSE_CATEGORICAL_CE :
				NN_LOSS_CATEGORICAL_CE;
		case NN_ACT_SIGMOID:
			return NN_LOSS_BINARY_CE;
		default:
			return NN_LOSS_MSE;
	}
}

/* Classes a classification loss distinguishes per output row. */
int32
nnpg_loss_classes(nn_model *model, nn_loss_kind loss)
{
	size_t		out = nn_model_output_size(model);

	if (loss == NN_LOSS_BINARY_CE)
		return 2;
	return (int32) out;
}

/* Set how the reader checks and converts the target for this loss. */
void
nnpg_target_setup(nnpg_reader *r, nn_model *model, nn_loss_kind loss)
{
	int32		out = (int32) nn_model_output_size(model);
	const char *col = r->colnames[r->natts - 1];

	r->n_out = out;
	if (nn_loss_sparse_target(loss))
	{
		if (!r->target_scalar)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("loss %s needs a class index target, but column \"%s\" is an array",
							nn_loss_name(loss), col),
					 errhint("Use an integer target column, or loss categorical_crossentropy for one-hot arrays.")));
		r->target_mode = NNPG_TARGET_CLASS;
		r->n_classes = out;
		return;
	}
	r->target_mode = loss == NN_LOSS_BINARY_CE ? NNPG_TARGET_BINARY :
		NNPG_TARGET_VALUE;
	/* the reader may already be on its first row */
	if (r->row_no > 0 && r->n_rows > 0)
		check_target_length(r);
	if (r->target_scalar && out != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("target column \"%s\" has one value per row, but the model has %d outputs",
						col, out),
				 loss == NN_LOSS_CATEGORICAL_CE ?
				 errhint("Use loss sparse_categorical_crossentropy for class index targets.") :
				 errhint("Use an array target with one value per output.")));
}
