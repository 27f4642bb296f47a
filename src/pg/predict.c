/*
 * predict.c: using a model.
 *
 * nn_predict and nn_classify run one row through a cached model (see
 * store.c); nn_predict_batch, nn_evaluate and nn_confusion_matrix read a
 * query through data.c and run it through a private copy of the model in
 * batches of NNPG_PREDICT_BATCH rows.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "nnpg.h"

#define NNPG_PREDICT_BATCH 256

/* A one-dimensional real[] of n values. */
static ArrayType *
float_array(const float *v, int n)
{
	Size		nbytes = ARR_OVERHEAD_NONULLS(1) + sizeof(float4) * n;
	ArrayType  *a = palloc0(nbytes);

	SET_VARSIZE(a, nbytes);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = FLOAT4OID;
	ARR_DIMS(a)[0] = n;
	ARR_LBOUND(a)[0] = 1;
	memcpy(ARR_DATA_PTR(a), v, sizeof(float4) * n);
	return a;
}

/*
 * Argument argno (bytea, real[] or double precision[]) as n_in finite
 * floats; noun names a value in errors ("feature", "baseline value").
 */
static float *
floats_arg(FunctionCallInfo fcinfo, int argno, Oid elemtype, int32 n_in,
		   const char *noun)
{
	float	   *x = palloc(sizeof(float) * Max(n_in, 1));
	int			n;

	if (elemtype == BYTEAOID)
	{
		bytea	   *b = PG_GETARG_BYTEA_PP(argno);

		n = VARSIZE_ANY_EXHDR(b);
		if (n != n_in)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("expected %d %ss, not %d", n_in, noun, n)));
		nn_bytes_to_floats(x, (const uint8 *) VARDATA_ANY(b), n);
		return x;
	}
	else
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(argno);

		n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
		if (ARR_HASNULL(a) && array_contains_nulls(a))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%ss must not contain null values", noun)));
		if (n != n_in)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("expected %d %ss, not %d", n_in, noun, n)));
		if (elemtype == FLOAT4OID)
			memcpy(x, ARR_DATA_PTR(a), sizeof(float) * n);
		else
		{
			const double *src = (const double *) ARR_DATA_PTR(a);

			for (int i = 0; i < n; i++)
			{
				if (isfinite(src[i]) && fabs(src[i]) > FLT_MAX)
					ereport(ERROR,
							(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
							 errmsg("%s %d (%g) is out of range for type real",
									noun, i + 1, src[i])));
				x[i] = (float) src[i];
			}
		}
	}
	for (int i = 0; i < n; i++)
	{
		if (!isfinite(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s %d is %s", noun, i + 1,
							isnan(x[i]) ? "NaN" : "infinite")));
	}
	return x;
}

/* The features argument (1) as n_in floats. */
static float *
features_arg(FunctionCallInfo fcinfo, Oid elemtype, int32 n_in)
{
	return floats_arg(fcinfo, 1, elemtype, n_in, "feature");
}

/* The class of an output row: arg-max, or p > 0.5 for a single output. */
static int32
output_class(const float *out, int32 n)
{
	int32		best = 0;

	if (n == 1)
		return out[0] > 0.5f ? 1 : 0;
	for (int32 i = 1; i < n; i++)
	{
		if (out[i] > out[best])
			best = i;
	}
	return best;
}

/* Run one row through the cached model; NULL when model or row is NULL. */
static float *
predict_one(FunctionCallInfo fcinfo, Oid elemtype, int32 *n_out)
{
	nn_model   *model;
	float	   *x;
	float	   *out;
	bool		version_isnull = PG_ARGISNULL(2);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(2);
	nn_error	err;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return NULL;
	model = nnpg_cached_model(fcinfo, PG_GETARG_TEXT_PP(0), version_isnull,
							  version);
	x = features_arg(fcinfo, elemtype, (int32) nn_model_input_size(model));
	*n_out = (int32) nn_model_output_size(model);
	out = palloc(sizeof(float) * *n_out);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_prepare(model, 1, false, nnpg_max_model_bytes(), &err),
			   &err);
	nnpg_check(nn_model_predict(model, out, x, 1, &err), &err);
	return out;
}

/* nn_predict(model, real[], version) */
PG_FUNCTION_INFO_V1(nnpg_predict);
Datum
nnpg_predict(PG_FUNCTION_ARGS)
{
	int32		n;
	float	   *out = predict_one(fcinfo, FLOAT4OID, &n);

	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(float_array(out, n));
}

/* nn_predict(model, double precision[], version) */
PG_FUNCTION_INFO_V1(nnpg_predict_float8);
Datum
nnpg_predict_float8(PG_FUNCTION_ARGS)
{
	int32		n;
	float	   *out = predict_one(fcinfo, FLOAT8OID, &n);

	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(float_array(out, n));
}

/* nn_predict(model, bytea, version) */
PG_FUNCTION_INFO_V1(nnpg_predict_bytea);
Datum
nnpg_predict_bytea(PG_FUNCTION_ARGS)
{
	int32		n;
	float	   *out = predict_one(fcinfo, BYTEAOID, &n);

	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(float_array(out, n));
}

/* nn_classify(model, real[], version) */
PG_FUNCTION_INFO_V1(nnpg_classify);
Datum
nnpg_classify(PG_FUNCTION_ARGS)
{
	int32		n;
	float	   *out = predict_one(fcinfo, FLOAT4OID, &n);

	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT32(output_class(out, n));
}

/* nn_classify(model, double precision[], version) */
PG_FUNCTION_INFO_V1(nnpg_classify_float8);
Datum
nnpg_classify_float8(PG_FUNCTION_ARGS)
{
	int32		n;
	float	   *out = predict_one(fcinfo, FLOAT8OID, &n);

	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT32(output_class(out, n));
}

/* nn_classify(model, bytea, version) */
PG_FUNCTION_INFO_V1(nnpg_classify_bytea);
Datum
nnpg_classify_bytea(PG_FUNCTION_ARGS)
{
	int32		n;
	float	   *out = predict_one(fcinfo, BYTEAOID, &n);

	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT32(output_class(out, n));
}

/* ---------- query-driven functions ---------- */

/* State shared by the query-driven functions. */
typedef struct query_run
{
	MemoryContext cxt;
	MemoryContext oldcxt;
	nnpg_model_row row;
	nn_model   *model;
	nnpg_reader r;
	int32		n_in;
	int32		n_out;
	int32		y_width;		/* target floats per row */
	float	   *x;				/* (B, in) */
	float	   *y;				/* (B, y_width) */
	float	   *pred;			/* (B, out) */
	int32		k;				/* rows in the batch being read */
	int64	   *rows;			/* (B) query row of each batch row */
	int64	   *keys;			/* (B) nn_predict_batch */
	bool	   *keynull;		/* (B) */
} query_run;

/* Connect SPI, load the model, open the query (arguments 0, 1, version). */
static void
query_run_begin(FunctionCallInfo fcinfo, query_run *qr, bool has_key,
				bool has_target, int version_arg)
{
	char	   *name = nnpg_text_to_cstring_arg(fcinfo, 0, "model");
	char	   *query = nnpg_text_to_cstring_arg(fcinfo, 1, "query");
	bool		version_isnull = PG_ARGISNULL(version_arg);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(version_arg);
	nn_error	err;

	nnpg_apply_threads();
	InitMaterializedSRF(fcinfo, 0);
	memset(qr, 0, sizeof(*qr));
	qr->cxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg query run",
									ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	qr->oldcxt = MemoryContextSwitchTo(qr->cxt);

	nnpg_fetch_model(name, version_isnull, version, true, false, qr->cxt,
					 &qr->row);
	if (qr->row.weights == NULL)
		nnpg_model_not_built(name);
	qr->model = nnpg_load_model(qr->row.weights, qr->cxt);
	nn_model_release_training(qr->model);
	qr->n_in = (int32) nn_model_input_size(qr->model);
	qr->n_out = (int32) nn_model_output_size(qr->model);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_prepare(qr->model, NNPG_PREDICT_BATCH, false,
								nnpg_max_model_bytes(), &err), &err);

	qr->r.label = "query";
	qr->r.has_key = has_key;
	qr->r.has_target = has_target;
	qr->r.n_in = qr->n_in;
	nnpg_reader_open(&qr->r, query);
	qr->x = MemoryContextAllocHuge(qr->cxt, sizeof(float) * NNPG_PREDICT_BATCH * (size_t) qr->n_in);
	qr->pred = MemoryContextAllocHuge(qr->cxt, sizeof(float) * NNPG_PREDICT_BATCH * (size_t) qr->n_out);
	qr->rows = palloc(sizeof(int64) * NNPG_PREDICT_BATCH);
	if (has_key)
	{
		qr->keys = palloc(sizeof(int64) * NNPG_PREDICT_BATCH);
		qr->keynull = palloc(sizeof(bool) * NNPG_PREDICT_BATCH);
	}
}

/* Copy a query row into the batch being read. */
static void
batch_row(nnpg_reader *r, void *arg)
{
	query_run  *qr = (query_run *) arg;

	if (r->has_key)
		qr->keynull[qr->k] = !nnpg_reader_key(r, &qr->keys[qr->k]);
	nnpg_reader_features(r, qr->x + (size_t) qr->k * qr->n_in);
	if (r->has_target)
		nnpg_reader_target(r, qr->y + (size_t) qr->k * qr->y_width);
	qr->rows[qr->k++] = r->row_no;
}

/* Read the next batch of rows; returns how many (0 at the end). */
static int32
read_batch(query_run *qr)
{
	qr->k = 0;
	return (int32) nnpg_reader_read(&qr->r, NNPG_PREDICT_BATCH, batch_row, qr);
}

/* Close the query and SPI; the SRF rows are already in the tuplestore. */
static void
query_run_end(query_run *qr)
{
	nnpg_reader_close(&qr->r);
	MemoryContextSwitchTo(qr->oldcxt);
	SPI_finish();
	MemoryContextDelete(qr->cxt);
}

/* Whether a model's outputs are classes, from its loss or its output. */
static bool
model_is_classifier(query_run *qr)
{
	nn_loss_kind loss;

	if (nnpg_training_loss(qr->row.training, &loss))
		return nn_loss_is_classification(loss);
	switch (nn_model_output_activation(qr->model))
	{
		case NN_ACT_SOFTMAX:
			return true;
		case NN_ACT_SIGMOID:
			return qr->n_out == 1;
		default:
			return false;
	}
}

/* nn_predict_batch(model, query, version): (id, prediction, class) */
PG_FUNCTION_INFO_V1(nnpg_predict_batch);
Datum
nnpg_predict_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	query_run	qr;
	bool		classifier;
	int32		k;
	nn_error	err;

	query_run_begin(fcinfo, &qr, true, false, 2);
	classifier = model_is_classifier(&qr);
	memset(&err, 0, sizeof(err));

	do
	{
		k = read_batch(&qr);
		if (k == 0)
			break;
		CHECK_FOR_INTERRUPTS();
		nnpg_check_rows(nn_model_predict(qr.model, qr.pred, qr.x, k, &err),
						&err, qr.rows);
		for (int32 i = 0; i < k; i++)
		{
			Datum		values[3];
			bool		nulls[3] = {qr.keynull[i], false, !classifier};
			const float *p = qr.pred + (size_t) i * qr.n_out;

			values[0] = Int64GetDatum(qr.keys[i]);
			values[1] = PointerGetDatum(float_array(p, qr.n_out));
			values[2] = Int32GetDatum(classifier ? output_class(p, qr.n_out) : 0);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			pfree(DatumGetPointer(values[1]));
		}
	} while (k == NNPG_PREDICT_BATCH);

	query_run_end(&qr);
	return (Datum) 0;
}

/* Evaluation totals. */
typedef struct eval_totals
{
	bool		classification;
	nn_loss_kind loss;
	int32		n_classes;
	int64	   *confusion;		/* (n_classes, n_classes), actual-major */
	double		loss_sum;
	int64		n;
	/* regression, per output */
	double	   *sum_sq;			/* residual squares */
	double	   *sum_abs;
	double	   *mean;			/* Welford over the targets */
	double	   *m2;
} eval_totals;

/*
 * The loss a query is evaluated with: that of the model's last fit, unless
 * the target says otherwise; the reader then reads targets for it.
 */
static nn_loss_kind
evaluation_loss(query_run *qr)
{
	nn_loss_kind loss;

	if (nnpg_training_loss(qr->row.training, &loss))
	{
		if (nn_loss_sparse_target(loss) && !qr->r.target_scalar)
			loss = NN_LOSS_CATEGORICAL_CE;
		else if (loss == NN_LOSS_CATEGORICAL_CE && qr->r.target_scalar)
			loss = NN_LOSS_SPARSE_CATEGORICAL_CE;
	}
	else
		loss = nnpg_choose_loss(NULL, qr->model, qr->r.target_scalar);
	nnpg_target_setup(&qr->r, qr->model, loss);
	qr->y_width = nnpg_reader_target_width(&qr->r);
	return loss;
}

/* Read the query in batches and add up loss, confusion or errors. */
static void
evaluate_query(FunctionCallInfo fcinfo, query_run *qr, eval_totals *t,
			   bool need_classes)
{
	int32		k;
	nn_error	err;

	query_run_begin(fcinfo, qr, false, true, 2);
	t->loss = evaluation_loss(qr);
	t->classification = nn_loss_is_classification(t->loss);
	if (need_classes && !t->classification)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" is not a classifier", qr->row.name),
				 errdetail("Its loss is %s.", nn_loss_name(t->loss))));
	qr->y = MemoryContextAllocHuge(qr->cxt, sizeof(float) * NNPG_PREDICT_BATCH * (size_t) qr->y_width);

	if (t->classification)
	{
		t->n_classes = nnpg_loss_classes(qr->model, t->loss);
		if ((Size) t->n_classes * t->n_classes > MaxAllocHugeSize / sizeof(int64))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many classes (%d) for a confusion matrix",
							t->n_classes)));
		t->confusion = MemoryContextAllocHuge(CurrentMemoryContext,
											  sizeof(int64) * t->n_classes * t->n_classes);
		memset(t->confusion, 0, sizeof(int64) * t->n_classes * t->n_classes);
	}
	else
	{
		t->sum_sq = palloc0(sizeof(double) * qr->n_out);
		t->sum_abs = palloc0(sizeof(double) * qr->n_out);
		t->mean = palloc0(sizeof(double) * qr->n_out);
		t->m2 = palloc0(sizeof(double) * qr->n_out);
	}

	memset(&err, 0, sizeof(err));
	do
	{
		double		loss_sum = 0;
		int64_t		correct = 0;

		k = read_batch(qr);
		if (k == 0)
			break;
		CHECK_FOR_INTERRUPTS();
		nnpg_check_rows(nn_model_evaluate_batch(qr->model, qr->pred, qr->x,
												qr->y, k, t->loss, NULL, 0,
												&loss_sum, &correct, &err),
						&err, qr->rows);
		t->loss_sum += loss_sum;
		for (int32 i = 0; i < k; i++)
		{
			const float *p = qr->pred + (size_t) i * qr->n_out;
			const float *y = qr->y + (size_t) i * qr->y_width;

			if (t->classification)
			{
				if (t->loss == NN_LOSS_BINARY_CE)
				{
					/* each output is a yes/no decision */
					for (int32 j = 0; j < qr->n_out; j++)
					{
						int			a = y[j] > 0.5f ? 1 : 0;
						int			b = p[j] > 0.5f ? 1 : 0;

						t->confusion[a * 2 + b]++;
					}
				}
				else
				{
					int32		a = nn_loss_sparse_target(t->loss) ? (int32) y[0] :
						output_class(y, qr->n_out);
					int32		b = output_class(p, qr->n_out);

					t->confusion[(size_t) a * t->n_classes + b]++;
				}
			}
			else
			{
				int64		n = t->n + 1;

				for (int32 j = 0; j < qr->n_out; j++)
				{
					double		d = (double) p[j] - (double) y[j];
					double		delta = y[j] - t->mean[j];

					t->sum_sq[j] += d * d;
					t->sum_abs[j] += fabs(d);
					t->mean[j] += delta / n;
					t->m2[j] += delta * (y[j] - t->mean[j]);
				}
			}
			t->n++;
		}
	} while (k == NNPG_PREDICT_BATCH);
	if (t->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query returned no rows to evaluate")));
}

/* Append (metric, value) to the result; NaN becomes NULL. */
static void
put_metric(ReturnSetInfo *rsinfo, const char *metric, double value)
{
	Datum		values[2];
	bool		nulls[2] = {false, isnan(value)};

	values[0] = CStringGetTextDatum(metric);
	values[1] = Float8GetDatum(value);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* nn_evaluate(model, query, version): (metric, value) */
PG_FUNCTION_INFO_V1(nnpg_evaluate);
Datum
nnpg_evaluate(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	query_run	qr;
	eval_totals t;

	memset(&t, 0, sizeof(t));
	evaluate_query(fcinfo, &qr, &t, false);

	put_metric(rsinfo, "loss", t.loss_sum / (double) t.n);
	if (t.classification)
	{
		int32		k = t.n_classes;
		int64		total = 0;
		int64		diag = 0;
		double		psum = 0;
		double		rsum = 0;
		double		fsum = 0;
		int32		labels = 0;

		/* macro averages over the classes that occur, as scikit-learn */
		for (int32 c = 0; c < k; c++)
		{
			int64		tp = t.confusion[(size_t) c * k + c];
			int64		actual = 0;
			int64		predicted = 0;
			double		prec;
			double		rec;

			for (int32 j = 0; j < k; j++)
			{
				actual += t.confusion[(size_t) c * k + j];
				predicted += t.confusion[(size_t) j * k + c];
			}
			total += actual;
			diag += tp;
			if (actual == 0 && predicted == 0)
				continue;
			prec = predicted > 0 ? (double) tp / predicted : 0;
			rec = actual > 0 ? (double) tp / actual : 0;
			psum += prec;
			rsum += rec;
			fsum += (prec + rec) > 0 ? 2 * prec * rec / (prec + rec) : 0;
			labels++;
		}
		put_metric(rsinfo, "accuracy", (double) diag / (double) Max(total, 1));
		put_metric(rsinfo, "precision", psum / Max(labels, 1));
		put_metric(rsinfo, "recall", rsum / Max(labels, 1));
		put_metric(rsinfo, "f1", fsum / Max(labels, 1));
	}
	else
	{
		double		sq = 0;
		double		ab = 0;
		double		r2 = 0;
		double		cells = (double) t.n * qr.n_out;

		for (int32 j = 0; j < qr.n_out; j++)
		{
			sq += t.sum_sq[j];
			ab += t.sum_abs[j];
			/* scikit-learn's r2_score, uniform average, finite */
			if (t.m2[j] > 0)
				r2 += 1.0 - t.sum_sq[j] / t.m2[j];
			else
				r2 += t.sum_sq[j] == 0 ? 1.0 : 0.0;
		}
		put_metric(rsinfo, "mse", sq / cells);
		put_metric(rsinfo, "rmse", sqrt(sq / cells));
		put_metric(rsinfo, "mae", ab / cells);
		put_metric(rsinfo, "r2", r2 / qr.n_out);
	}
	put_metric(rsinfo, "n", (double) t.n);

	query_run_end(&qr);
	return (Datum) 0;
}

/* nn_confusion_matrix(model, query, version): (actual, predicted, count) */
PG_FUNCTION_INFO_V1(nnpg_confusion_matrix);
Datum
nnpg_confusion_matrix(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	query_run	qr;
	eval_totals t;

	memset(&t, 0, sizeof(t));
	evaluate_query(fcinfo, &qr, &t, true);
	for (int32 a = 0; a < t.n_classes; a++)
	{
		for (int32 b = 0; b < t.n_classes; b++)
		{
			int64		count = t.confusion[(size_t) a * t.n_classes + b];
			Datum		values[3];
			bool		nulls[3] = {false, false, false};

			if (count == 0)
				continue;
			values[0] = Int32GetDatum(a);
			values[1] = Int32GetDatum(b);
			values[2] = Int64GetDatum(count);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	query_run_end(&qr);
	return (Datum) 0;
}

/* ---------- permutation importance ---------- */

/* A query's rows in memory, for nn_feature_importance. */
typedef struct row_table
{
	query_run  *qr;
	int64		n;
	int64		cap;			/* rows that fit in nnpg.data_cache_mb */
	float	   *x;				/* (cap, n_in) */
	float	   *y;				/* (cap, y_width) */
} row_table;

/* Keep a row (the reader checks that columns keep their lengths). */
static void
table_row(nnpg_reader *r, void *arg)
{
	row_table  *t = (row_table *) arg;

	if (t->n == t->cap)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the query has more rows than nnpg.data_cache_mb holds (" INT64_FORMAT ")",
						t->cap),
				 errhint("Raise nnpg.data_cache_mb, or pass a sample of the rows.")));
	nnpg_reader_features(r, t->x + (size_t) t->n * t->qr->n_in);
	nnpg_reader_target(r, t->y + (size_t) t->n * t->qr->y_width);
	t->n++;
}

/* Mean loss of the model over the table's rows. */
static double
table_loss(row_table *t, nn_loss_kind loss)
{
	query_run  *qr = t->qr;
	double		sum = 0;
	nn_error	err;

	memset(&err, 0, sizeof(err));
	for (int64 i = 0; i < t->n; i += NNPG_PREDICT_BATCH)
	{
		int32		k = (int32) Min(t->n - i, NNPG_PREDICT_BATCH);
		int64_t		correct = 0;

		CHECK_FOR_INTERRUPTS();
		nnpg_check(nn_model_evaluate_batch(qr->model, NULL,
										   t->x + (size_t) i * qr->n_in,
										   t->y + (size_t) i * qr->y_width,
										   k, loss, NULL, 0, &sum, &correct,
										   &err), &err);
	}
	return sum / (double) t->n;
}

/*
 * The loss with the values [off, off + w) of every row taken from another
 * row, by a permutation drawn from rng; the table is restored after.
 */
static double
permuted_loss(row_table *t, nn_loss_kind loss, int32 off, int32 w,
			  nn_rng *rng, float *saved, uint32 *perm)
{
	int32		in = t->qr->n_in;
	double		l;

	for (int64 i = 0; i < t->n; i++)
	{
		perm[i] = (uint32) i;
		memcpy(saved + (size_t) i * w, t->x + (size_t) i * in + off,
			   sizeof(float) * w);
	}
	nn_rng_shuffle(rng, perm, (size_t) t->n);
	for (int64 i = 0; i < t->n; i++)
		memcpy(t->x + (size_t) i * in + off, saved + (size_t) perm[i] * w,
			   sizeof(float) * w);
	l = table_loss(t, loss);
	for (int64 i = 0; i < t->n; i++)
		memcpy(t->x + (size_t) i * in + off, saved + (size_t) i * w,
			   sizeof(float) * w);
	return l;
}

/* One feature column's result. */
typedef struct importance
{
	int			col;
	const char *name;
	double		mean;
	double		sd;
} importance;

/* Largest rise first; ties in column order. */
static int
importance_cmp(const void *a, const void *b)
{
	const importance *x = a;
	const importance *y = b;

	if (x->mean != y->mean)
		return x->mean < y->mean ? 1 : -1;
	return x->col - y->col;
}

/* Read the query into a table within nnpg.data_cache_mb. */
static void
table_read(query_run *qr, row_table *t)
{
	size_t		row_bytes = sizeof(float) * ((size_t) qr->n_in + qr->y_width);

	memset(t, 0, sizeof(*t));
	t->qr = qr;
	t->cap = Max((int64) (nnpg_data_cache_bytes() / row_bytes), 1);
	t->cap = Min(t->cap, (int64) PG_UINT32_MAX);
	t->x = MemoryContextAllocHuge(qr->cxt, sizeof(float) * (size_t) t->cap * qr->n_in);
	t->y = MemoryContextAllocHuge(qr->cxt, sizeof(float) * (size_t) t->cap * qr->y_width);
	(void) nnpg_reader_read(&qr->r, PG_INT64_MAX, table_row, t);
	if (t->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query returned no rows to evaluate")));
}

/* Column c's importance: repeats shuffles of its w values at off. */
static void
column_importance(row_table *t, nn_loss_kind loss, double base, int32 off,
				  int32 w, int32 repeats, nn_rng *rng, importance *imp)
{
	query_run  *qr = t->qr;
	float	   *saved = MemoryContextAllocHuge(qr->cxt, sizeof(float) * (size_t) t->n * w);
	uint32	   *perm = MemoryContextAllocHuge(qr->cxt, sizeof(uint32) * (size_t) t->n);
	double		sum = 0,
				sq = 0;

	for (int32 k = 0; k < repeats; k++)
	{
		double		d = permuted_loss(t, loss, off, w, rng, saved, perm) - base;

		sum += d;
		sq += d * d;
	}
	imp->mean = sum / repeats;
	imp->sd = repeats > 1 ?
		sqrt(Max(sq - sum * sum / repeats, 0) / (repeats - 1)) : 0;
	pfree(saved);
	pfree(perm);
}

/*
 * nn_feature_importance(model, query, repeats, seed, version):
 * (feature, importance, stddev), the mean rise of the loss over `repeats`
 * shuffles of each feature column, largest first.
 */
PG_FUNCTION_INFO_V1(nnpg_feature_importance);
Datum
nnpg_feature_importance(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		repeats;
	int64		seed;
	query_run	qr;
	row_table	t;
	nn_loss_kind loss;
	double		base;
	importance *imp;
	int32		off = 0;

	if (PG_ARGISNULL(2))
		nnpg_null_argument("repeats");
	repeats = PG_GETARG_INT32(2);
	if (repeats < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("repeats must be at least 1, not %d", repeats)));
	seed = PG_ARGISNULL(3) ? nnpg_random_seed() : PG_GETARG_INT64(3);
	query_run_begin(fcinfo, &qr, false, true, 4);
	loss = evaluation_loss(&qr);
	table_read(&qr, &t);
	base = table_loss(&t, loss);
	imp = palloc0(sizeof(importance) * qr.r.n_feature_cols);
	for (int c = 0; c < qr.r.n_feature_cols; c++)
	{
		nn_rng		rng;

		nn_rng_seed(&rng, (uint64) seed + (uint64) c * UINT64CONST(0x9E3779B97F4A7C15));
		imp[c].col = c;
		imp[c].name = qr.r.colnames[qr.r.first_feature + c];
		column_importance(&t, loss, base, off, qr.r.first_len[c], repeats,
						  &rng, &imp[c]);
		off += qr.r.first_len[c];
	}
	qsort(imp, qr.r.n_feature_cols, sizeof(importance), importance_cmp);
	for (int c = 0; c < qr.r.n_feature_cols; c++)
	{
		Datum		v[3] = {CStringGetTextDatum(imp[c].name),
		Float8GetDatum(imp[c].mean), Float8GetDatum(imp[c].sd)};
		bool		n[3] = {false, false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	query_run_end(&qr);
	return (Datum) 0;
}

/* ---------- integrated gradients ---------- */

/*
 * nn_explain(model, features, target, baseline, steps, version):
 * (feature, value, attribution) per input feature, 1-based.
 */
static Datum
explain_row(FunctionCallInfo fcinfo, Oid elemtype)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		version_isnull = PG_ARGISNULL(5);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(5);
	int32		target = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT32(2);
	nn_model   *model;
	int32		n_in;
	float	   *x,
			   *baseline = NULL,
			   *attr;
	float		fx,
				fb;
	nn_error	err;

	if (PG_ARGISNULL(0))
		nnpg_null_argument("model");
	if (PG_ARGISNULL(1))
		nnpg_null_argument("features");
	if (PG_ARGISNULL(4))
		nnpg_null_argument("steps");
	nnpg_apply_threads();
	InitMaterializedSRF(fcinfo, 0);
	model = nnpg_cached_model(fcinfo, PG_GETARG_TEXT_PP(0), version_isnull,
							  version);
	n_in = (int32) nn_model_input_size(model);
	x = features_arg(fcinfo, elemtype, n_in);
	if (!PG_ARGISNULL(3))
		baseline = floats_arg(fcinfo, 3, FLOAT4OID, n_in, "baseline value");
	if (!PG_ARGISNULL(2) && (target < 0 || target >= (int32) nn_model_output_size(model)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target must be an output of the model, 0 to %d, not %d",
						(int) nn_model_output_size(model) - 1, target)));
	attr = palloc(sizeof(float) * n_in);
	memset(&err, 0, sizeof(err));
	/* an int8 model is explained through its dequantized kernels */
	if (nn_model_is_quantized(model))
		nnpg_check(nn_model_dequantize(&model, model,
									   nnpg_alloc_create(CurrentMemoryContext),
									   &err), &err);
	nnpg_check(nn_model_explain(model, attr, &fx, &fb, NULL, x, baseline,
								target, PG_GETARG_INT32(4),
								nnpg_max_model_bytes(), &err), &err);
	for (int32 i = 0; i < n_in; i++)
	{
		Datum		v[3] = {Int32GetDatum(i + 1), Float4GetDatum(x[i]),
		Float4GetDatum(attr[i])};
		bool		n[3] = {false, false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(nnpg_explain);
Datum
nnpg_explain(PG_FUNCTION_ARGS)
{
	return explain_row(fcinfo, FLOAT4OID);
}

PG_FUNCTION_INFO_V1(nnpg_explain_float8);
Datum
nnpg_explain_float8(PG_FUNCTION_ARGS)
{
	return explain_row(fcinfo, FLOAT8OID);
}

PG_FUNCTION_INFO_V1(nnpg_explain_bytea);
Datum
nnpg_explain_bytea(PG_FUNCTION_ARGS)
{
	return explain_row(fcinfo, BYTEAOID);
}
