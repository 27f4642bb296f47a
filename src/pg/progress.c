/*
 * progress.c: the live state of every running nn_fit, for the nn_progress
 * view.
 *
 * With nnpg in shared_preload_libraries, shared memory holds one slot per
 * backend (indexed by MyBackendId).  Only the backend that owns a slot
 * writes it, after every batch and at every phase change; readers copy it
 * with the change-count protocol of PostgreSQL's backend status array (the
 * count is odd while a write is under way, and a reader retries until it
 * sees the same even count before and after its copy), so nobody waits on
 * a lock.  A slot is freed when its fit ends, when the transaction or
 * subtransaction running it aborts (an error or a cancel), and when the
 * backend exits (pg_terminate_backend included).  Without the preload every call here is
 * a no-op and only the view reports that it has nothing to read.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "nnpg.h"

#define MODEL_BYTES 128			/* of the model name shown */

typedef struct fit_slot
{
	pg_atomic_uint32 changecount;	/* odd while the owner writes */
	int32		pid;			/* 0: no fit */
	Oid			userid;
	char		model[MODEL_BYTES];
	nnpg_fit_phase phase;
	int32		epoch;
	int32		epochs;
	int64		rows_done;
	int64		rows_total;		/* -1: not known yet */
	double		loss;			/* NaN: none yet */
	TimestampTz started;		/* the fit */
	TimestampTz epoch_started;
} fit_slot;

static const char *const phase_names[] = {
	[NNPG_PHASE_READING] = "reading",
	[NNPG_PHASE_TRAINING] = "training",
	[NNPG_PHASE_VALIDATING] = "validating",
	[NNPG_PHASE_STORING] = "storing",
};

static fit_slot *slots;			/* MaxBackends of them; NULL without preload */
static fit_slot *mine;			/* this backend's, while it fits */
static bool hooks_set;		/* the cleanups are registered */
static shmem_request_hook_type prev_shmem_request;
static shmem_startup_hook_type prev_shmem_startup;

bool		nnpg_track_progress = true;

static Size
slots_size(void)
{
	return mul_size(MaxBackends, sizeof(fit_slot));
}

static void
progress_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(slots_size());
}

static void
progress_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	slots = ShmemInitStruct("nnpg fit progress", slots_size(), &found);
	if (!found)
	{
		memset(slots, 0, slots_size());
		for (int i = 0; i < MaxBackends; i++)
			pg_atomic_init_u32(&slots[i].changecount, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init: ask for the slots when preloaded. */
void
nnpg_progress_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = progress_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = progress_shmem_startup;
}

/* Writes to this backend's slot happen between these two. */
static inline void
write_begin(void)
{
	pg_atomic_add_fetch_u32(&mine->changecount, 1);
	pg_write_barrier();
}

static inline void
write_end(void)
{
	pg_write_barrier();
	pg_atomic_add_fetch_u32(&mine->changecount, 1);
}

/* Free this backend's slot; safe to call when it has none. */
static void
progress_clear(void)
{
	if (mine == NULL)
		return;
	write_begin();
	mine->pid = 0;
	write_end();
	mine = NULL;
}

static void
clear_at_exit(int code, Datum arg)
{
	progress_clear();
}

static void
clear_on_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		progress_clear();
}

static void
clear_on_subabort(SubXactEvent event, SubTransactionId sub,
				  SubTransactionId parent, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		progress_clear();
}

/*
 * A fit starts: take this backend's slot until nnpg_progress_end, or until
 * the (sub)transaction aborts or the backend exits.
 */
void
nnpg_progress_begin(const char *model, int32 epochs)
{
	if (slots == NULL || !nnpg_track_progress || MyBackendId == InvalidBackendId)
		return;
	if (!hooks_set)
	{
		before_shmem_exit(clear_at_exit, (Datum) 0);
		RegisterXactCallback(clear_on_abort, NULL);
		RegisterSubXactCallback(clear_on_subabort, NULL);
		hooks_set = true;
	}
	mine = &slots[MyBackendId - 1];
	write_begin();
	mine->pid = MyProcPid;
	mine->userid = GetUserId();
	strlcpy(mine->model, model, MODEL_BYTES);
	mine->phase = NNPG_PHASE_READING;
	mine->epoch = 0;
	mine->epochs = epochs;
	mine->rows_done = 0;
	mine->rows_total = -1;
	mine->loss = NAN;
	mine->started = mine->epoch_started = GetCurrentTimestamp();
	write_end();
}

void
nnpg_progress_end(void)
{
	progress_clear();
}

/* A new phase; epoch and rows_total (-1: unknown) when training begins. */
void
nnpg_progress_phase(nnpg_fit_phase phase, int32 epoch, int64 rows_total)
{
	if (mine == NULL)
		return;
	write_begin();
	if (phase == NNPG_PHASE_TRAINING)
	{
		mine->epoch = epoch;
		mine->rows_total = rows_total;
		mine->rows_done = 0;
		mine->loss = NAN;
		mine->epoch_started = GetCurrentTimestamp();
	}
	mine->phase = phase;
	write_end();
}

/* Rows done in this phase, and the epoch's mean loss so far (NaN: none). */
void
nnpg_progress_rows(int64 rows_done, double loss)
{
	if (mine == NULL)
		return;
	write_begin();
	mine->rows_done = rows_done;
	mine->loss = loss;
	write_end();
}

/* A consistent copy of slot i; false when it holds no fit. */
static bool
read_slot(int i, fit_slot *copy)
{
	fit_slot   *s = &slots[i];

	for (;;)
	{
		uint32		before = pg_atomic_read_u32(&s->changecount);

		pg_read_barrier();
		memcpy((char *) copy + sizeof(pg_atomic_uint32),
			   (char *) s + sizeof(pg_atomic_uint32),
			   sizeof(fit_slot) - sizeof(pg_atomic_uint32));
		pg_read_barrier();
		if (before % 2 == 0 && before == pg_atomic_read_u32(&s->changecount))
			return copy->pid != 0;
		CHECK_FOR_INTERRUPTS();
	}
}

/* Seconds from a to b. */
static double
seconds_between(TimestampTz a, TimestampTz b)
{
	return (double) (b - a) / USECS_PER_SEC;
}

/* One row of the view from a slot copy. */
static void
put_slot(ReturnSetInfo *rsinfo, const fit_slot *s, TimestampTz now)
{
	Datum		v[12];
	bool		n[12] = {0};
	double		epoch_secs = seconds_between(s->epoch_started, now);
	double		rate = s->phase != NNPG_PHASE_READING && s->rows_done > 0 &&
		epoch_secs > 0 ? s->rows_done / epoch_secs : NAN;
	char	   *user = GetUserNameFromId(s->userid, true);

	v[0] = Int32GetDatum(s->pid);
	n[1] = user == NULL;
	if (user)
		v[1] = DirectFunctionCall1(namein, CStringGetDatum(user));
	v[2] = CStringGetTextDatum(s->model);
	v[3] = CStringGetTextDatum(phase_names[s->phase]);
	v[4] = Int32GetDatum(s->epoch);
	n[4] = s->epoch == 0;
	v[5] = Int32GetDatum(s->epochs);
	v[6] = Int64GetDatum(s->rows_done);
	v[7] = Int64GetDatum(s->rows_total);
	n[7] = s->rows_total < 0;
	v[8] = Float8GetDatum(s->loss);
	n[8] = isnan(s->loss);
	v[9] = Float8GetDatum(rate);
	n[9] = isnan(rate);
	v[10] = Float8GetDatum(seconds_between(s->started, now));
	/* rows left in this epoch and the later ones, at this epoch's rate */
	n[11] = isnan(rate) || s->rows_total < 0 || s->epoch == 0;
	if (!n[11])
		v[11] = Float8GetDatum((Max(s->rows_total - s->rows_done, 0) +
								(double) (s->epochs - s->epoch) * s->rows_total) / rate);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
}

/* nnpg.fit_progress(): the fits the current role may see (nn_progress). */
PG_FUNCTION_INFO_V1(nnpg_fit_progress);
Datum
nnpg_fit_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	bool		all;
	fit_slot	s;

	if (slots == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("nn_progress needs nnpg in shared_preload_libraries"),
				 errhint("Add nnpg to shared_preload_libraries in postgresql.conf and restart the server; every other nnpg function works without it.")));
	InitMaterializedSRF(fcinfo, 0);
	all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	for (int i = 0; i < MaxBackends; i++)
		if (read_slot(i, &s) &&
			(all || has_privs_of_role(GetUserId(), s.userid)))
			put_slot(rsinfo, &s, now);
	return (Datum) 0;
}
