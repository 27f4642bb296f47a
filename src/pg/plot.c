/*
 * plot.c: nn_plot, a model version's learning curves as an SVG image.
 *
 * The curves are those of the version's lineage: the epochs of the
 * versions it was trained from (training's from_version, back to the
 * first), then its own, numbered 1..N across them, with a thin line where
 * a later version's training started.  The core draws the picture
 * (nn_plot_render); this file reads the history with the caller's rights.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "nnpg.h"

/* A lineage's epochs, oldest first. */
typedef struct plot_data
{
	int32		version;		/* the version drawn */
	int32		n;
	double	   *loss,
			   *acc,
			   *vloss,
			   *vacc;
	int32	   *starts;			/* 1-based epochs where a version begins */
	int32		n_starts;
} plot_data;

/*
 * The lineage of the version asked for (the latest when NULL), one row
 * per epoch: version, loss, accuracy, val_loss, val_accuracy.
 */
static const char *const lineage_sql =
"WITH RECURSIVE chain(version, from_version, depth) AS ("
"  (SELECT m.version, (m.training OPERATOR(pg_catalog.->>) 'from_version')::pg_catalog.int4, 0"
"   FROM nnpg.models m WHERE m.name OPERATOR(pg_catalog.=) $1"
"   AND ($2 IS NULL OR m.version OPERATOR(pg_catalog.=) $2)"
"   ORDER BY m.version DESC LIMIT 1)"
"  UNION ALL"
"  SELECT m.version, (m.training OPERATOR(pg_catalog.->>) 'from_version')::pg_catalog.int4,"
"   c.depth OPERATOR(pg_catalog.+) 1"
"  FROM chain c JOIN nnpg.models m ON m.name OPERATOR(pg_catalog.=) $1"
"   AND m.version OPERATOR(pg_catalog.=) c.from_version"
"   AND m.version OPERATOR(pg_catalog.<) c.version)"
" SELECT c.version,"
"  (h.e OPERATOR(pg_catalog.->>) 'loss')::pg_catalog.float8,"
"  (h.e OPERATOR(pg_catalog.->>) 'accuracy')::pg_catalog.float8,"
"  (h.e OPERATOR(pg_catalog.->>) 'val_loss')::pg_catalog.float8,"
"  (h.e OPERATOR(pg_catalog.->>) 'val_accuracy')::pg_catalog.float8"
" FROM chain c JOIN nnpg.models m ON m.name OPERATOR(pg_catalog.=) $1"
"  AND m.version OPERATOR(pg_catalog.=) c.version"
" CROSS JOIN LATERAL pg_catalog.jsonb_array_elements("
"  CASE WHEN pg_catalog.jsonb_typeof(m.history) OPERATOR(pg_catalog.=) 'array'"
"  THEN m.history ELSE '[]'::pg_catalog.jsonb END) WITH ORDINALITY AS h(e, i)"
" ORDER BY c.depth DESC, h.i";

/* A float8 column of the current SPI row; NaN when NULL. */
static double
column_value(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NAN : DatumGetFloat8(d);
}

/* The version's lineage: 42704 when there is no such version. */
static void
read_lineage(const char *name, bool version_isnull, int32 version,
			 plot_data *p)
{
	static const char *const newest =
	"SELECT m.version FROM nnpg.models m WHERE m.name OPERATOR(pg_catalog.=) $1"
	" AND ($2 IS NULL OR m.version OPERATOR(pg_catalog.=) $2)"
	" ORDER BY m.version DESC LIMIT 1";
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {CStringGetTextDatum(name), Int32GetDatum(version)};
	char		nulls[2] = {' ', version_isnull ? 'n' : ' '};
	bool		isnull;
	int32		prev = -1;

	if (SPI_execute_with_args(newest, 2, argtypes, args, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read nnpg.models");
	if (SPI_processed == 0)
		nnpg_model_not_found(name, version_isnull, version);
	p->version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	if (SPI_execute_with_args(lineage_sql, 2, argtypes, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the history of model \"%s\"", name);
	if (SPI_processed > NN_PLOT_MAX_EPOCHS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model \"%s\" has " UINT64_FORMAT " epochs, more than a plot shows (%d)",
						name, SPI_processed, NN_PLOT_MAX_EPOCHS)));
	p->n = (int32) SPI_processed;
	p->loss = palloc(sizeof(double) * (p->n + 1));
	p->acc = palloc(sizeof(double) * (p->n + 1));
	p->vloss = palloc(sizeof(double) * (p->n + 1));
	p->vacc = palloc(sizeof(double) * (p->n + 1));
	p->starts = palloc(sizeof(int32) * (p->n + 1));
	p->n_starts = 0;
	for (int32 i = 0; i < p->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int32		v = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));

		if (i > 0 && v != prev)
			p->starts[p->n_starts++] = i + 1;
		prev = v;
		p->loss[i] = column_value(tup, desc, 2);
		p->acc[i] = column_value(tup, desc, 3);
		p->vloss[i] = column_value(tup, desc, 4);
		p->vacc[i] = column_value(tup, desc, 5);
	}
}

/* nn_plot(model, version): the learning curves as an SVG document */
PG_FUNCTION_INFO_V1(nnpg_plot);
Datum
nnpg_plot(PG_FUNCTION_ARGS)
{
	char	   *name = nnpg_text_to_cstring_arg(fcinfo, 0, "model");
	bool		version_isnull = PG_ARGISNULL(1);
	int32		version = version_isnull ? 0 : PG_GETARG_INT32(1);
	plot_data	p;
	nn_plot_history h;
	char	   *title;
	char	   *svg;
	size_t		len;
	nn_error	err;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	read_lineage(name, version_isnull, version, &p);
	SPI_finish();
	if (p.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("version %d of model \"%s\" has not been trained",
						p.version, name),
				 errdetail("It has no training history to plot."),
				 errhint("Call nn_fit first.")));

	h = (nn_plot_history)
	{
		.loss = p.loss, .accuracy = p.acc, .val_loss = p.vloss,
			.val_accuracy = p.vacc, .starts = p.starts,
			.n_starts = p.n_starts, .n_epochs = p.n
	};
	title = psprintf("%s, version %d", name, p.version);
	title = pg_server_to_any(title, strlen(title), PG_UTF8);
	memset(&err, 0, sizeof(err));
	nnpg_check(nn_plot_render(&svg, &len, title, &h,
							  nnpg_alloc_create(CurrentMemoryContext), &err),
			   &err);
	PG_RETURN_TEXT_P(cstring_to_text(pg_any_to_server(svg, (int) len, PG_UTF8)));
}
