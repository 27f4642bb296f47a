/*
 * manage.c: creating, inspecting, removing and moving models.
 *
 * nn_create stores version 1 of a model; nn_summary, nn_history show it;
 * nn_drop removes versions; nn_export and nn_import move the model bytes
 * between databases.  nn_import stores the bytes as the next version of the
 * name (version 1 for a new name) unless a version is given, so importing
 * into a database that already has the model adds to its history rather
 * than failing; a version that exists is an error (42710).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "nnpg.h"

/* A model name argument: present and not empty. */
static char *
name_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	char	   *name = nnpg_text_to_cstring_arg(fcinfo, argno, argname);

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
	return name;
}

/* 42710 when the caller already has a model of that name. */
static void
check_no_model(const char *name)
{
	static const char *sql =
	"SELECT 1 FROM nnpg.models m WHERE m.name OPERATOR(pg_catalog.=) $1 LIMIT 1";
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			rc;

	values[0] = CStringGetTextDatum(name);
	rc = SPI_execute_with_args(sql, 1, argtypes, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read nnpg.models: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model \"%s\" already exists", name),
				 errhint("Use replace => true to replace it, or nn_drop() to remove it first.")));
}

/* Delete the caller's versions of a model; returns how many went. */
static uint64
delete_model(const char *name, bool version_isnull, int32 version)
{
	static const char *sql =
	"DELETE FROM nnpg.models m WHERE m.name OPERATOR(pg_catalog.=) $1"
	" AND ($2 IS NULL OR m.version OPERATOR(pg_catalog.=) $2)";
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	int			rc;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);
	if (version_isnull)
		nulls[1] = 'n';
	rc = SPI_execute_with_args(sql, 2, argtypes, values, nulls, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "could not delete from nnpg.models: %s",
			 SPI_result_code_string(rc));
	return SPI_processed;
}

/* The arguments of nn_create. */
typedef struct create_args
{
	char	   *name;
	Jsonb	   *layers;
	ArrayType  *input_shape;	/* NULL: not given */
	int64		seed;
	bool		replace;
	char	   *base;			/* transfer: the base model, or NULL */
	bool		keep_isnull;	/* base_layers not given */
	int32		keep;
	bool		base_version_isnull;
	int32		base_version;
	bool		freeze;
} create_args;

/* Read nn_create's arguments; 0.1.0's SQL passes the first five only. */
static void
create_read_args(FunctionCallInfo fcinfo, create_args *a)
{
	memset(a, 0, sizeof(*a));
	a->name = name_arg(fcinfo, 0, "name");
	if (PG_ARGISNULL(1))
		nnpg_null_argument("layers");
	a->layers = PG_GETARG_JSONB_P(1);
	a->input_shape = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
	a->seed = PG_ARGISNULL(3) ? nnpg_random_seed() : PG_GETARG_INT64(3);
	if (PG_ARGISNULL(4))
		nnpg_null_argument("replace");
	a->replace = PG_GETARG_BOOL(4);
	a->keep_isnull = a->base_version_isnull = true;
	a->freeze = true;
	if (PG_NARGS() < 9 || PG_ARGISNULL(5))
		return;
	a->base = name_arg(fcinfo, 5, "base");
	a->keep_isnull = PG_ARGISNULL(6);
	a->keep = a->keep_isnull ? 0 : PG_GETARG_INT32(6);
	a->base_version_isnull = PG_ARGISNULL(7);
	a->base_version = a->base_version_isnull ? 0 : PG_GETARG_INT32(7);
	if (PG_ARGISNULL(8))
		nnpg_null_argument("freeze_base");
	a->freeze = PG_GETARG_BOOL(8);
}

/* The spec of nn_create's layers and input shape (rank 0: unknown yet). */
static void
create_spec(const create_args *a, nn_model_spec *spec)
{
	nnpg_parse_layers(a->layers, spec, a->base != NULL);
	if (a->input_shape)
		nnpg_parse_input_shape(a->input_shape, spec);
	else if (a->base == NULL && spec->layers[0].kind == NN_LAYER_RESHAPE)
	{
		/* a leading reshape fixes the flat input size */
		int64		size = 1;

		for (int i = 0; i < spec->layers[0].shape_rank; i++)
		{
			size *= spec->layers[0].shape[i];
			if (size > PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("layer 1 (reshape): \"shape\" is too large")));
		}
		spec->input_rank = 1;
		spec->input_shape[0] = (int32) size;
	}
}

/* base_layers: 1 to the base's layers, by default all but its last. */
static int32
transfer_keep(const create_args *a, const nnpg_model_row *row, int32 n)
{
	int32		keep = a->keep_isnull ? n - 1 : a->keep;

	if (keep < 1 || keep > n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("base_layers must be between 1 and %d, not %d", n, keep),
				 errdetail("Version %d of model \"%s\" has %d layers.",
						   row->version, row->name, n)));
	return keep;
}

/* Error context of a transfer: the layers are numbered in the new model. */
static void
transfer_context(void *arg)
{
	const nnpg_model_row *row = arg;

	errcontext("creating a model from version %d of model \"%s\"",
			   row->version, row->name);
}

/*
 * Version 1 from a base model: its first layers with their weights, then
 * the given layers.  *layers becomes the whole spec, and the training
 * settings name the base.
 */
static nn_model *
create_from_base(const create_args *a, const nn_model_spec *top,
				 MemoryContext cxt, Jsonb **layers, StringInfo training)
{
	nnpg_model_row row;
	nn_model   *base;
	nn_model   *model = NULL;
	int32		keep;
	nn_error	err;
	const nn_model_spec *bs;
	ErrorContextCallback ctx;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	base = nnpg_load_named_model(a->base, a->base_version_isnull,
								 a->base_version, cxt, &row);
	SPI_finish();
	bs = nn_model_get_spec(base);
	keep = transfer_keep(a, &row, bs->n_layers);
	if (top->input_rank > 0 &&
		(top->input_rank != bs->input_rank ||
		 memcmp(top->input_shape, bs->input_shape,
				sizeof(int32) * bs->input_rank) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("input_shape must be the base model's, %s",
						nnpg_shape_to_json(bs->input_rank, bs->input_shape)),
				 errhint("Leave input_shape out when creating from a base model.")));
	memset(&err, 0, sizeof(err));
	ctx.callback = transfer_context;
	ctx.arg = &row;
	ctx.previous = error_context_stack;
	error_context_stack = &ctx;
	nnpg_check(nn_model_transfer(&model, base, keep, top, a->freeze,
								 (uint64) a->seed, nnpg_max_model_bytes(),
								 nnpg_alloc_create(cxt), &err), &err);
	error_context_stack = ctx.previous;
	*layers = DatumGetJsonbP(nnpg_jsonb_from_cstring(
						nnpg_spec_to_json(nn_model_get_spec(model))));
	appendStringInfoString(training, ", \"base\": {\"model\": ");
	escape_json(training, row.name);
	appendStringInfo(training, ", \"version\": %d, \"layers\": %d, \"frozen\": %s}",
					 row.version, keep, a->freeze ? "true" : "false");
	return model;
}

/* The model bytes of version 1, or NULL while the input shape is unknown. */
static bytea *
create_weights(const create_args *a, Jsonb **layers, StringInfo training,
			   nnpg_model_facts *facts)
{
	nn_model_spec spec;
	nn_model   *model = NULL;
	bytea	   *weights = NULL;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "nnpg create",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	create_spec(a, &spec);
	appendStringInfo(training, "{\"seed\": " INT64_FORMAT, a->seed);
	if (a->base)
		model = create_from_base(a, &spec, cxt, layers, training);
	else if (spec.input_rank > 0)
	{
		nn_error	err;

		/* build now when the input shape is known: every check happens here */
		memset(&err, 0, sizeof(err));
		nnpg_check(nn_model_create(&model, &spec, (uint64) a->seed,
								   nnpg_max_model_bytes(),
								   nnpg_alloc_create(cxt), &err), &err);
	}
	MemoryContextSwitchTo(old);
	if (model)
	{
		const nn_model_spec *ms = nn_model_get_spec(model);

		appendStringInfo(training, ", \"input_shape\": %s}",
						 nnpg_shape_to_json(ms->input_rank, ms->input_shape));
		weights = nnpg_serialize_model(model, false);
		nnpg_model_facts_of(model, facts);
	}
	else
		appendStringInfoString(training, ", \"input_shape\": null}");
	if (a->base)				/* the whole spec, made in cxt */
		*layers = (Jsonb *) PG_DETOAST_DATUM_COPY(JsonbPGetDatum(*layers));
	MemoryContextDelete(cxt);
	return weights;
}

/* nn_create(name, layers, input_shape, seed, replace, base, base_layers,
 * base_version, freeze_base): version 1 */
PG_FUNCTION_INFO_V1(nnpg_create);
Datum
nnpg_create(PG_FUNCTION_ARGS)
{
	create_args a;
	bytea	   *weights;
	nnpg_model_facts facts;
	Jsonb	   *layers;
	StringInfoData training;
	int32		version;

	nnpg_prevent_read_only("nn_create()");
	nnpg_apply_threads();
	create_read_args(fcinfo, &a);
	layers = a.layers;
	initStringInfo(&training);
	weights = create_weights(&a, &layers, &training, &facts);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nnpg_lock_model_name(a.name);
	if (a.replace)
		(void) delete_model(a.name, true, 0);
	else
		check_no_model(a.name);
	version = nnpg_insert_model(a.name, false, 1, NULL, JsonbPGetDatum(layers),
								nnpg_jsonb_from_cstring(training.data),
								(Datum) 0, true, (Datum) 0, true,
								weights, weights ? &facts : NULL);
	SPI_finish();
	PG_RETURN_INT32(version);
}

/* nn_summary(model, version): (layer, type, output_shape, params, trainable) */
PG_FUNCTION_INFO_V1(nnpg_summary);
Datum
nnpg_summary(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		version_isnull = PG_ARGISNULL(1);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(1);
	nn_model   *model;
	const nn_model_spec *spec;

	if (PG_ARGISNULL(0))
		nnpg_null_argument("model");
	InitMaterializedSRF(fcinfo, 0);
	model = nnpg_cached_model(fcinfo, PG_GETARG_TEXT_PP(0), version_isnull,
							  version);
	spec = nn_model_get_spec(model);
	for (int i = 0; i < spec->n_layers; i++)
	{
		nn_layer_info info;
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		Datum		dims[NN_MAX_RANK];

		nn_model_layer_info(model, i, &info);
		for (int j = 0; j < info.rank; j++)
			dims[j] = Int32GetDatum(info.shape[j]);
		values[0] = Int32GetDatum(i + 1);
		values[1] = CStringGetTextDatum(nn_layer_kind_name(info.kind));
		values[2] = PointerGetDatum(construct_array(dims, info.rank, INT4OID,
													sizeof(int32), true,
													TYPALIGN_INT));
		values[3] = Int64GetDatum(info.params);
		/* NULL for a layer without weights; absent under 0.1.0's SQL */
		values[4] = BoolGetDatum(info.trainable);
		nulls[4] = !info.has_weights;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* nn_history(model, version): the epochs of every (or one) version */
PG_FUNCTION_INFO_V1(nnpg_history);
Datum
nnpg_history(PG_FUNCTION_ARGS)
{
	static const char *sql =
	"SELECT m.version,"
	" (h.e OPERATOR(pg_catalog.->>) 'epoch')::pg_catalog.int4,"
	" (h.e OPERATOR(pg_catalog.->>) 'loss')::pg_catalog.float8,"
	" (h.e OPERATOR(pg_catalog.->>) 'accuracy')::pg_catalog.float8,"
	" (h.e OPERATOR(pg_catalog.->>) 'val_loss')::pg_catalog.float8,"
	" (h.e OPERATOR(pg_catalog.->>) 'val_accuracy')::pg_catalog.float8,"
	" (h.e OPERATOR(pg_catalog.->>) 'seconds')::pg_catalog.float8"
	" FROM nnpg.models m CROSS JOIN LATERAL pg_catalog.jsonb_array_elements("
	"  CASE WHEN pg_catalog.jsonb_typeof(m.history) OPERATOR(pg_catalog.=) 'array'"
	"  THEN m.history ELSE '[]'::pg_catalog.jsonb END) WITH ORDINALITY AS h(e, i)"
	" WHERE m.name OPERATOR(pg_catalog.=) $1"
	" AND ($2 IS NULL OR m.version OPERATOR(pg_catalog.=) $2)"
	" ORDER BY m.version, h.i";
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = nnpg_text_to_cstring_arg(fcinfo, 0, "model");
	bool		version_isnull = PG_ARGISNULL(1);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(1);
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	nnpg_model_row row;
	int			rc;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* raises 42704 for a model the caller does not have */
	nnpg_fetch_model(name, version_isnull, version, false, true,
					 CurrentMemoryContext, &row);

	args[0] = CStringGetTextDatum(name);
	args[1] = Int32GetDatum(version);
	if (version_isnull)
		nulls[1] = 'n';
	rc = SPI_execute_with_args(sql, 2, argtypes, args, nulls, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read nnpg.models: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[7];
		bool		isnull[7];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
						  values, isnull);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	SPI_finish();
	return (Datum) 0;
}

/* nn_drop(model, version): rows removed */
PG_FUNCTION_INFO_V1(nnpg_drop);
Datum
nnpg_drop(PG_FUNCTION_ARGS)
{
	char	   *name = nnpg_text_to_cstring_arg(fcinfo, 0, "model");
	bool		version_isnull = PG_ARGISNULL(1);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(1);
	uint64		n;

	nnpg_prevent_read_only("nn_drop()");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nnpg_lock_model_name(name);
	n = delete_model(name, version_isnull, version);
	if (n == 0)
		nnpg_model_not_found(name, version_isnull, version);
	SPI_finish();
	PG_RETURN_INT32((int32) n);
}

/* The format argument argno of nn_export/nn_import: true for "onnx". */
static bool
format_is_onnx(FunctionCallInfo fcinfo, int argno, bool *given)
{
	char	   *f;

	*given = PG_NARGS() > argno && !PG_ARGISNULL(argno);
	if (!*given)
		return false;
	f = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(f, "onnx") != 0 && strcmp(f, "nnpg") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("format must be \"nnpg\" or \"onnx\", not \"%s\"", f)));
	return strcmp(f, "onnx") == 0;
}

/* An ONNX ModelProto of model bytes, as a bytea. */
static bytea *
onnx_of(const bytea *weights)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "nnpg onnx export",
											  ALLOCSET_DEFAULT_SIZES);
	nn_model   *model = nnpg_load_model(weights, cxt);
	uint8_t    *buf;
	size_t		len;
	bytea	   *out;
	nn_error	err;

	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_export_onnx(model, &buf, &len, nnpg_alloc_create(cxt),
									&err), &err);
	if (len > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("ONNX model of %zu bytes is too large for a bytea", len)));
	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), buf, len);
	MemoryContextDelete(cxt);
	return out;
}

/* nn_export(model, version, format): the model bytes, or an ONNX model */
PG_FUNCTION_INFO_V1(nnpg_export);
Datum
nnpg_export(PG_FUNCTION_ARGS)
{
	char	   *name = nnpg_text_to_cstring_arg(fcinfo, 0, "model");
	bool		version_isnull = PG_ARGISNULL(1);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(1);
	bool		given;
	bool		onnx = format_is_onnx(fcinfo, 2, &given);
	MemoryContext caller = CurrentMemoryContext;
	nnpg_model_row row;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nnpg_fetch_model(name, version_isnull, version, true, true, caller, &row);
	SPI_finish();
	if (row.weights == NULL)
		nnpg_model_not_built(name);
	PG_RETURN_BYTEA_P(onnx ? onnx_of(row.weights) : row.weights);
}

/*
 * The model in import data (cxt): nnpg's model bytes, or an ONNX model
 * when the format says so or, with no format, when the bytes are one.
 */
static nn_model *
import_model(FunctionCallInfo fcinfo, const bytea *data, MemoryContext cxt,
			 bool *from_onnx)
{
	bool		given;
	nn_model   *model = NULL;
	nn_error	err;

	*from_onnx = format_is_onnx(fcinfo, 3, &given);
	if (!given)
		*from_onnx = nn_bytes_look_onnx((const uint8_t *) VARDATA_ANY(data),
										VARSIZE_ANY_EXHDR(data));
	if (!*from_onnx)
		return nnpg_load_model(data, cxt);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_import_onnx(&model, (const uint8_t *) VARDATA_ANY(data),
									VARSIZE_ANY_EXHDR(data),
									nnpg_max_model_bytes(),
									nnpg_alloc_create(cxt), &err), &err);
	return model;
}

/* nn_import(name, data, version, format): store as a new version */
PG_FUNCTION_INFO_V1(nnpg_import);
Datum
nnpg_import(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "name");
	bytea	   *data;
	bool		version_isnull = PG_ARGISNULL(2);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(2);
	MemoryContext cxt;
	nn_model   *model;
	const nn_model_spec *spec;
	char	   *layers;
	StringInfoData training;
	nnpg_model_facts facts;
	bool		onnx;
	int32		stored;

	nnpg_prevent_read_only("nn_import()");
	if (PG_ARGISNULL(1))
		nnpg_null_argument("data");
	data = PG_GETARG_BYTEA_P(1);
	if (!version_isnull && version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version must be positive, not %d", version)));

	/* every check of the loader, before anything is stored */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg import",
								ALLOCSET_DEFAULT_SIZES);
	model = import_model(fcinfo, data, cxt, &onnx);
	spec = nn_model_get_spec(model);
	layers = nnpg_spec_to_json(spec);
	nnpg_model_facts_of(model, &facts);
	if (onnx)
		data = nnpg_serialize_model(model, false);
	initStringInfo(&training);
	appendStringInfo(&training, "{\"imported\": %s, \"input_shape\": %s}",
					 onnx ? "\"onnx\"" : "true",
					 nnpg_shape_to_json(spec->input_rank, spec->input_shape));
	MemoryContextDelete(cxt);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nnpg_lock_model_name(name);
	stored = nnpg_insert_model(name, version_isnull, version, NULL,
							   nnpg_jsonb_from_cstring(layers),
							   nnpg_jsonb_from_cstring(training.data),
							   (Datum) 0, true, (Datum) 0, true, data, &facts);
	SPI_finish();
	PG_RETURN_INT32(stored);
}

/*
 * Store model, made from version row of name, as the next version (no
 * optimizer state, the row's layers and owner); training is the JSON of
 * its settings, to which from_version and input_shape are added.  SPI must
 * be connected.
 */
static int32
store_derived(const char *name, const nnpg_model_row *row,
			  const nn_model *model, StringInfo training)
{
	const nn_model_spec *spec = nn_model_get_spec(model);
	nnpg_model_facts facts;

	appendStringInfo(training, ", \"from_version\": %d, \"input_shape\": %s}",
					 row->version,
					 nnpg_shape_to_json(spec->input_rank, spec->input_shape));
	nnpg_model_facts_of(model, &facts);
	return nnpg_insert_model(name, true, 0, row->owner,
							 JsonbPGetDatum(row->layers),
							 nnpg_jsonb_from_cstring(training->data),
							 (Datum) 0, true, (Datum) 0, true,
							 nnpg_serialize_model(model, false), &facts);
}

/* nn_prune(model, sparsity, version): the version pruned, as the next one */
PG_FUNCTION_INFO_V1(nnpg_prune);
Datum
nnpg_prune(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "model");
	bool		version_isnull = PG_ARGISNULL(2);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(2);
	double		sparsity;
	MemoryContext cxt;
	nnpg_model_row row;
	nn_model   *model;
	StringInfoData training;
	nn_error	err;
	int32		stored;

	nnpg_prevent_read_only("nn_prune()");
	nnpg_apply_threads();
	if (PG_ARGISNULL(1))
		nnpg_null_argument("sparsity");
	sparsity = PG_GETARG_FLOAT8(1);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg prune",
								ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* fits and prunes of one model take turns; then see the latest */
	nnpg_lock_model_name(name);
	model = nnpg_load_named_model(name, version_isnull, version, cxt, &row);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_prune(model, sparsity, &err), &err);
	initStringInfo(&training);
	appendStringInfo(&training, "{\"pruned\": true, \"sparsity\": ");
	nnpg_json_number(&training, sparsity);
	stored = store_derived(name, &row, model, &training);
	SPI_finish();
	MemoryContextDelete(cxt);
	PG_RETURN_INT32(stored);
}

/* nnpg.model_sparsity(weights): the sparsity nn_models shows of model bytes */
PG_FUNCTION_INFO_V1(nnpg_model_sparsity);
Datum
nnpg_model_sparsity(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "nnpg sparsity",
											  ALLOCSET_DEFAULT_SIZES);
	double		s = nn_model_sparsity(nnpg_load_model(PG_GETARG_BYTEA_PP(0), cxt));

	MemoryContextDelete(cxt);
	PG_RETURN_FLOAT4((float4) s);
}

/* A calibration query's feature rows, in memory within nnpg.data_cache_mb. */
typedef struct calib_rows
{
	int32		n_in;
	int64		n;
	int64		alloc;			/* rows x has room for */
	int64		cap;			/* rows the budget allows */
	float	   *x;				/* (alloc, n_in) */
} calib_rows;

static void
calib_row(nnpg_reader *r, void *arg)
{
	calib_rows *c = (calib_rows *) arg;

	if (c->n == c->cap)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the calibration query has more rows than nnpg.data_cache_mb holds (" INT64_FORMAT ")",
						c->cap),
				 errhint("A few thousand representative rows are enough: add a LIMIT.")));
	if (c->n == c->alloc)
	{
		c->alloc = Min(c->alloc * 2, c->cap);
		c->x = repalloc_huge(c->x, sizeof(float) * (size_t) c->alloc * c->n_in);
	}
	nnpg_reader_features(r, c->x + (size_t) c->n * c->n_in);
	c->n++;
}

/* Read the calibration query: feature columns only, as nn_predict_batch's. */
static void
read_calibration(const char *query, int32 n_in, calib_rows *c)
{
	nnpg_reader r;

	memset(&r, 0, sizeof(r));
	r.label = "calibration query";
	r.n_in = n_in;
	c->n_in = n_in;
	c->n = 0;
	c->cap = Max((int64) (nnpg_data_cache_bytes() / (sizeof(float) * n_in)), 1);
	c->alloc = Min(c->cap, 256);
	c->x = MemoryContextAllocHuge(CurrentMemoryContext,
								  sizeof(float) * (size_t) c->alloc * n_in);
	nnpg_reader_open(&r, query);
	(void) nnpg_reader_read(&r, PG_INT64_MAX, calib_row, c);
	nnpg_reader_close(&r);
	if (c->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("calibration query returned no rows")));
}

/* nn_quantize(model, calibration_query, version): the version in int8 */
PG_FUNCTION_INFO_V1(nnpg_quantize);
Datum
nnpg_quantize(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "model");
	char	   *query = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		version_isnull = PG_ARGISNULL(2);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(2);
	MemoryContext cxt;
	nnpg_model_row row;
	nn_model   *model;
	calib_rows	calib = {0};
	StringInfoData training;
	nn_error	err;
	int32		stored;

	nnpg_prevent_read_only("nn_quantize()");
	nnpg_apply_threads();
	cxt = AllocSetContextCreate(CurrentMemoryContext, "nnpg quantize",
								ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nnpg_lock_model_name(name);
	model = nnpg_load_named_model(name, version_isnull, version, cxt, &row);
	if (query)
		read_calibration(query, (int32) nn_model_input_size(model), &calib);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_quantize(model, calib.x, calib.n, &err), &err);
	initStringInfo(&training);
	appendStringInfo(&training, "{\"quantized\": \"int8\", \"calibration_rows\": " INT64_FORMAT,
					 calib.n);
	stored = store_derived(name, &row, model, &training);
	SPI_finish();
	MemoryContextDelete(cxt);
	PG_RETURN_INT32(stored);
}
