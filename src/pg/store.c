/*
 * store.c: the model table (nnpg.models) and the per-backend model cache.
 *
 * Every statement here is schema-qualified, uses OPERATOR(pg_catalog.x),
 * and takes user values as SPI parameters, so neither a hostile
 * search_path nor a quote in a model name can change it.  Row-level
 * security on nnpg.models limits every query to the caller's models.
 *
 * The cache keeps up to NNPG_CACHE_SLOTS deserialized models, each in its
 * own memory context under CacheMemoryContext, within nnpg.model_cache_mb
 * (least recently used first out), keyed by the identity of the
 * table row they came from (name, version, xmin, ctid, and the table's
 * file): a row that changes gets a new xmin/ctid, and a table made anew
 * (DROP and CREATE EXTENSION, TRUNCATE) a new file, whose first rows take
 * the ctids of the old one's again, in the same transaction the same xmin;
 * so a stale model is never used.  A call site keeps
 * in fn_extra the slot it used and the statement it looked it up in, so a
 * per-row call over many rows queries the table once per statement and
 * deserializes at most once; the next statement (new snapshot) looks again
 * and so picks up a newly committed version.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "nnpg.h"

#define NNPG_CACHE_SLOTS 8

/* The key of the per-name advisory locks: "nnpg". */
#define NNPG_LOCK_KEY 0x6e6e7067

/* "model "x" does not exist" (42704) */
void
nnpg_model_not_found(const char *name, bool version_isnull, int32 version)
{
	if (version_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("version %d of model \"%s\" does not exist", version, name)));
	pg_unreachable();
}

/* A model created without an input shape and never fitted. */
void
nnpg_model_not_built(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("model \"%s\" has no weights yet", name),
			 errdetail("It was created without an input shape, which the first nn_fit takes from the data."),
			 errhint("Call nn_fit first, or create the model with input_shape.")));
	pg_unreachable();
}

/* Fetch one model row through SPI (connected) and copy it into cxt. */
void
nnpg_fetch_model(const char *name, bool version_isnull, int32 version,
				 bool with_weights, bool read_only, MemoryContext cxt,
				 nnpg_model_row *row)
{
	static const char *sql_with =
	"SELECT m.name, m.version, m.owner, m.layers, m.training, m.xmin, m.ctid,"
	" m.weights, pg_catalog.pg_relation_filenode(m.tableoid::pg_catalog.regclass)"
	" FROM nnpg.models m"
	" WHERE m.name OPERATOR(pg_catalog.=) $1"
	" AND ($2 IS NULL OR m.version OPERATOR(pg_catalog.=) $2)"
	" ORDER BY m.version DESC LIMIT 1";
	static const char *sql_without =
	"SELECT m.name, m.version, m.owner, m.layers, m.training, m.xmin, m.ctid,"
	" CASE WHEN m.weights IS NULL THEN NULL ELSE '\\x'::pg_catalog.bytea END,"
	" pg_catalog.pg_relation_filenode(m.tableoid::pg_catalog.regclass)"
	" FROM nnpg.models m"
	" WHERE m.name OPERATOR(pg_catalog.=) $1"
	" AND ($2 IS NULL OR m.version OPERATOR(pg_catalog.=) $2)"
	" ORDER BY m.version DESC LIMIT 1";
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	int			rc;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	MemoryContext old;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);
	if (version_isnull)
		nulls[1] = 'n';
	rc = SPI_execute_with_args(with_weights ? sql_with : sql_without,
							   2, argtypes, values, nulls, read_only, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read nnpg.models: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
		nnpg_model_not_found(name, version_isnull, version);

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(cxt);
	memset(row, 0, sizeof(*row));
	row->name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	row->version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	row->owner = pstrdup(NameStr(*DatumGetName(SPI_getbinval(tup, desc, 3, &isnull))));
	row->layers = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
	row->training = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 5, &isnull));
	row->xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, 6, &isnull));
	ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 7, &isnull)),
					&row->ctid);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	if (isnull)
		row->weights = NULL;
	else
		row->weights = DatumGetByteaPCopy(d);
	row->filenode = DatumGetObjectId(SPI_getbinval(tup, desc, 9, &isnull));
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/* Deserialize model bytes into a model whose memory is in cxt. */
nn_model *
nnpg_load_model(const bytea *weights, MemoryContext cxt)
{
	return nnpg_load_model_bytes((const uint8 *) VARDATA_ANY(weights),
								 VARSIZE_ANY_EXHDR(weights), cxt);
}

/* The same from len bytes at bytes. */
nn_model *
nnpg_load_model_bytes(const uint8 *bytes, size_t len, MemoryContext cxt)
{
	nn_model   *model = NULL;
	nn_error	err;

	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_deserialize(&model, bytes, len, nnpg_max_model_bytes(),
									nnpg_alloc_create(cxt), nnpg_crc32c, &err),
			   &err);
	return model;
}

/*
 * Load another model a call uses (a transfer's base, a teacher) with the
 * caller's rights: the version given or the latest, into cxt.  SPI must be
 * connected.  42704 when the role sees no such model; 55000 when it has no
 * weights yet.
 */
nn_model *
nnpg_load_named_model(const char *name, bool version_isnull, int32 version,
					  MemoryContext cxt, nnpg_model_row *row)
{
	nnpg_fetch_model(name, version_isnull, version, true, true, cxt, row);
	if (row->weights == NULL)
		nnpg_model_not_built(name);
	return nnpg_load_model(row->weights, cxt);
}

/* Model bytes as a bytea in the current context. */
bytea *
nnpg_serialize_model(const nn_model *model, bool with_optimizer)
{
	size_t		len = nn_model_serialized_size(model, with_optimizer);
	bytea	   *b;
	nn_error	err;

	if (len > MaxAllocHugeSize - VARHDRSZ || len > (size_t) (MaxAllocSize - VARHDRSZ))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model of %zu bytes is too large to store", len),
				 errdetail("A bytea value holds at most 1 GB.")));
	b = palloc(VARHDRSZ + len);
	SET_VARSIZE(b, VARHDRSZ + len);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_model_serialize(model, (uint8_t *) VARDATA(b), len,
								  with_optimizer, nnpg_crc32c, &err),
			   &err);
	return b;
}

/* Does nnpg.models have the columns of 0.2.0 (format, sparsity)? */
static bool
table_has_facts(void)
{
	static const char *sql =
	"SELECT 1 FROM pg_catalog.pg_attribute a"
	" WHERE a.attrelid OPERATOR(pg_catalog.=) 'nnpg.models'::pg_catalog.regclass"
	" AND a.attname OPERATOR(pg_catalog.=) 'sparsity' AND NOT a.attisdropped";

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the columns of nnpg.models");
	return SPI_processed > 0;
}

void
nnpg_model_facts_of(const nn_model *model, nnpg_model_facts *f)
{
	f->params = nn_model_param_count(model);
	f->sparsity = nn_model_sparsity(model);
	f->format = nn_model_is_quantized(model) ? "int8" : "float32";
}

/* Insert a model version; returns the version stored. */
int32
nnpg_insert_model(const char *name, bool version_isnull, int32 version,
				  const char *owner, Datum layers, Datum training,
				  Datum metrics, bool metrics_isnull, Datum history,
				  bool history_isnull, bytea *weights,
				  const nnpg_model_facts *facts)
{
	static const char *sql =
	"INSERT INTO nnpg.models AS m"
	" (name, version, owner, layers, training, metrics, history, weights, params%s)"
	" VALUES ($1,"
	" COALESCE($2, (SELECT COALESCE(pg_catalog.max(v.version), 0) OPERATOR(pg_catalog.+) 1"
	"  FROM nnpg.models v WHERE v.name OPERATOR(pg_catalog.=) $1)),"
	" COALESCE($3, CURRENT_USER), $4, $5, $6, $7, $8, $9%s)"
	" ON CONFLICT (name, version) DO NOTHING"
	" RETURNING m.version";
	/* before ALTER EXTENSION nnpg UPDATE the table has 0.1.0's columns */
	bool		with_facts = table_has_facts();
	int			nargs = with_facts ? 11 : 9;
	Oid			argtypes[11] = {TEXTOID, INT4OID, NAMEOID, JSONBOID, JSONBOID,
	JSONBOID, JSONBOID, BYTEAOID, INT8OID, TEXTOID, FLOAT4OID};
	ParamListInfo args;
	SPIPlanPtr	plan;
	NameData   *ownername = palloc0(sizeof(NameData));
	int			rc;
	bool		isnull;
	int32		stored;

	args = makeParamList(nargs);
	for (int i = 0; i < nargs; i++)
	{
		args->params[i].ptype = argtypes[i];
		args->params[i].pflags = PARAM_FLAG_CONST;
		args->params[i].isnull = facts == NULL && i >= 8;
	}
	/*
	 * Not a constant to the planner, which would copy the value into the
	 * plan: a model's bytes can be many megabytes.
	 */
	args->params[7].pflags = 0;

	args->params[0].value = CStringGetTextDatum(name);
	args->params[1].value = Int32GetDatum(version);
	args->params[1].isnull = version_isnull;
	if (owner != NULL)
		namestrcpy(ownername, owner);
	args->params[2].value = NameGetDatum(ownername);
	args->params[2].isnull = owner == NULL;
	args->params[3].value = layers;
	args->params[4].value = training;
	args->params[5].value = metrics;
	args->params[5].isnull = metrics_isnull;
	args->params[6].value = history;
	args->params[6].isnull = history_isnull;
	args->params[7].value = PointerGetDatum(weights);
	args->params[7].isnull = weights == NULL;
	if (facts)
		args->params[8].value = Int64GetDatum(facts->params);
	if (facts && with_facts)
	{
		args->params[9].value = CStringGetTextDatum(facts->format);
		args->params[10].value = Float4GetDatum((float4) facts->sparsity);
	}

	plan = SPI_prepare(psprintf(sql, with_facts ? ", format, sparsity" : "",
								with_facts ? ", COALESCE($10, 'float32'), $11" : ""),
					   nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the insert into nnpg.models: %s",
			 SPI_result_code_string(SPI_result));
	rc = SPI_execute_plan_with_paramlist(plan, args, false, 1);
	SPI_freeplan(plan);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into nnpg.models: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		if (version_isnull || version == 1)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("model \"%s\" already exists", name)));
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("version %d of model \"%s\" already exists",
						version, name)));
	}
	stored = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return stored;
}

/* Transaction-level advisory lock on a model name. */
void
nnpg_lock_model_name(const char *name)
{
	LOCKTAG		tag;
	uint32		h = hash_bytes((const unsigned char *) name, strlen(name));

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, NNPG_LOCK_KEY, h, 2);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* The loss recorded by the last fit, if any. */
bool
nnpg_training_loss(Jsonb *training, nn_loss_kind *loss)
{
	JsonbValue	v;
	char	   *name;

	if (training == NULL || !JB_ROOT_IS_OBJECT(training))
		return false;
	if (getKeyJsonValueFromContainer(&training->root, "loss", 4, &v) == NULL ||
		v.type != jbvString)
		return false;
	name = pnstrdup(v.val.string.val, v.val.string.len);
	return nn_loss_from_name(name, loss) == 0;
}

/* ---------- the cache ---------- */

typedef struct cache_slot
{
	bool		used;
	uint64		generation;		/* changes whenever the slot is reused */
	uint64		last_used;
	char	   *name;			/* in cxt */
	int32		version;
	TransactionId xmin;
	ItemPointerData ctid;
	Oid			filenode;		/* of nnpg.models when the row was read */
	MemoryContext cxt;			/* holds the model; child of CacheMemoryContext */
	nn_model   *model;
} cache_slot;

static cache_slot cache_slots[NNPG_CACHE_SLOTS];
static uint64 cache_clock = 0;

/* What a call site remembers in fn_extra. */
typedef struct call_cache
{
	bool		valid;
	/* the statement: same snapshot, command and user see the same rows */
	LocalTransactionId lxid;
	CommandId	curcid;
	uint64		completion;
	TransactionId snap_xmin;
	TransactionId snap_xmax;
	Oid			userid;
	/* the request */
	char	   *name;
	bool		version_isnull;
	int32		version;
	/* the answer */
	int			slot;
	uint64		generation;
} call_cache;

/* Fill the statement identity; false when there is no active snapshot. */
static bool
statement_key(call_cache *key)
{
	Snapshot	snap;

	if (!ActiveSnapshotSet())
		return false;
	snap = GetActiveSnapshot();
	key->lxid = MyProc->lxid;
	key->curcid = snap->curcid;
	key->completion = snap->snapXactCompletionCount;
	key->snap_xmin = snap->xmin;
	key->snap_xmax = snap->xmax;
	key->userid = GetUserId();
	return true;
}

/* Same statement, same request, and the slot still holds that model. */
static bool
call_cache_hit(const call_cache *cc, const call_cache *now, const char *name,
			   bool version_isnull, int32 version)
{
	const cache_slot *slot;

	if (!cc->valid)
		return false;
	if (cc->lxid != now->lxid || cc->curcid != now->curcid ||
		cc->completion != now->completion || cc->snap_xmin != now->snap_xmin ||
		cc->snap_xmax != now->snap_xmax || cc->userid != now->userid)
		return false;
	if (cc->version_isnull != version_isnull ||
		(!version_isnull && cc->version != version) ||
		strcmp(cc->name, name) != 0)
		return false;
	slot = &cache_slots[cc->slot];
	return slot->used && slot->generation == cc->generation;
}

/* The slot to reuse: a free one, else the least recently used. */
static int
victim_slot(void)
{
	int			best = 0;

	for (int i = 0; i < NNPG_CACHE_SLOTS; i++)
	{
		if (!cache_slots[i].used)
			return i;
		if (cache_slots[i].last_used < cache_slots[best].last_used)
			best = i;
	}
	return best;
}

/*
 * Keep the models cached by this backend within nnpg.model_cache_mb in
 * all, dropping the least recently used ones but never keep_slot.
 */
static void
evict_over_budget(int keep_slot)
{
	for (;;)
	{
		Size		total = 0;
		int			lru = -1;

		for (int i = 0; i < NNPG_CACHE_SLOTS; i++)
		{
			if (!cache_slots[i].used)
				continue;
			total += MemoryContextMemAllocated(cache_slots[i].cxt, true);
			if (i != keep_slot &&
				(lru < 0 || cache_slots[i].last_used < cache_slots[lru].last_used))
				lru = i;
		}
		if (total <= nnpg_model_cache_bytes() || lru < 0)
			return;
		cache_slots[lru].used = false;
		MemoryContextDelete(cache_slots[lru].cxt);
		cache_slots[lru].cxt = NULL;
		cache_slots[lru].model = NULL;
	}
}

/* The model for this call, from the cache or loaded into it. */
nn_model *
nnpg_cached_model(FunctionCallInfo fcinfo, text *name_text,
				  bool version_isnull, int32 version)
{
	call_cache *cc = (call_cache *) fcinfo->flinfo->fn_extra;
	call_cache	now;
	bool		have_key;
	char	   *name = text_to_cstring(name_text);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext tmp;
	MemoryContext modelcxt;
	nnpg_model_row row;
	int			found = -1;
	cache_slot *slot;
	nn_model   *model;

	nnpg_apply_threads();
	if (cc == NULL)
	{
		cc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(call_cache));
		fcinfo->flinfo->fn_extra = cc;
	}
	memset(&now, 0, sizeof(now));
	have_key = statement_key(&now);
	if (have_key && call_cache_hit(cc, &now, name, version_isnull, version))
	{
		slot = &cache_slots[cc->slot];
		slot->last_used = ++cache_clock;
		return slot->model;
	}
	cc->valid = false;

	/* look the row up: identity only, then the bytes on a miss */
	tmp = AllocSetContextCreate(caller, "nnpg model lookup",
								ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	nnpg_fetch_model(name, version_isnull, version, false, true, tmp, &row);
	if (row.weights == NULL)
		nnpg_model_not_built(name);
	for (int i = 0; i < NNPG_CACHE_SLOTS; i++)
	{
		slot = &cache_slots[i];
		if (slot->used && slot->version == row.version &&
			TransactionIdEquals(slot->xmin, row.xmin) &&
			ItemPointerEquals(&slot->ctid, &row.ctid) &&
			slot->filenode == row.filenode &&
			strcmp(slot->name, row.name) == 0)
		{
			found = i;
			break;
		}
	}
	if (found < 0)
	{
		/* build in a transient context; keep it only once it is valid */
		nnpg_fetch_model(name, version_isnull, version, true, true, tmp, &row);
		if (row.weights == NULL)
			nnpg_model_not_built(name);
		modelcxt = AllocSetContextCreate(caller, "nnpg cached model",
										 ALLOCSET_DEFAULT_SIZES);
		model = nnpg_load_model(row.weights, modelcxt);
		/* it only predicts: keep weights, not gradients and optimizer state */
		nn_model_release_training(model);
		found = victim_slot();
		slot = &cache_slots[found];
		if (slot->used)
		{
			slot->used = false;
			MemoryContextDelete(slot->cxt);
		}
		MemoryContextSetParent(modelcxt, CacheMemoryContext);
		slot->cxt = modelcxt;
		slot->model = model;
		slot->name = MemoryContextStrdup(modelcxt, row.name);
		slot->version = row.version;
		slot->xmin = row.xmin;
		slot->ctid = row.ctid;
		slot->filenode = row.filenode;
		slot->generation++;
		slot->used = true;
	}
	/* within the budget, this model included, also after a lower SET */
	evict_over_budget(found);
	SPI_finish();
	MemoryContextDelete(tmp);

	slot = &cache_slots[found];
	slot->last_used = ++cache_clock;
	if (have_key)
	{
		char	   *oldname = cc->name;

		*cc = now;
		cc->name = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, name);
		if (oldname != NULL)
			pfree(oldname);
		cc->version_isnull = version_isnull;
		cc->version = version;
		cc->slot = found;
		cc->generation = slot->generation;
		cc->valid = true;
	}
	return slot->model;
}
