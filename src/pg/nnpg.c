/*
 * nnpg.c: module entry point, settings, and the bindings the core needs
 * from PostgreSQL: an allocator over memory contexts, CRC-32C and the
 * mapping from nn_status to SQLSTATEs.
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "nnpg.h"

PG_MODULE_MAGIC;

int			nnpg_threads = 1;
int			nnpg_data_cache_mb = 1024;
int			nnpg_max_model_mb = 1024;
int			nnpg_model_cache_mb = 256;

void		_PG_init(void);

/* Online CPUs, the default of nnpg.threads. */
int
nnpg_online_cpus(void)
{
	long		n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	if (n > 256)
		return 256;
	return (int) n;
}

/*
 * nnpg.threads is applied lazily, by the next nnpg call in a backend, never
 * in the assign hook: the hook also runs in the postmaster (with
 * shared_preload_libraries) and on a configuration reload, and an OpenMP
 * team started before fork() does not survive into the children.
 */
static int	threads_applied = 0;

/*
 * Hand nnpg.threads to the core if it changed since the last call.  The
 * core starts its threads here; they start with every signal blocked, so
 * the server's signal handlers keep running on the backend's own thread.
 */
void
nnpg_apply_threads(void)
{
	nnpg_apply_thread_count(nnpg_threads);
}

void
nnpg_apply_thread_count(int n)
{
	if (threads_applied != n)
	{
		sigset_t	all,
					old;

		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		nn_set_threads(n);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		threads_applied = n;
	}
}

/* Module load: define the settings. */
void
_PG_init(void)
{
	DefineCustomIntVariable("nnpg.threads",
							"Threads used by the nnpg math kernels.",
							NULL,
							&nnpg_threads,
							nnpg_online_cpus(), 1, 256,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("nnpg.data_cache_mb",
							"Training data a fit may keep in memory.",
							"Above this size, data is streamed from the query in every epoch.",
							&nnpg_data_cache_mb,
							1024, 0, INT_MAX / 2,
							PGC_USERSET,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("nnpg.max_model_mb",
							"Largest model (parameters, optimizer state and work buffers) nnpg builds or loads.",
							NULL,
							&nnpg_max_model_mb,
							1024, 1, INT_MAX / 2,
							PGC_USERSET,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("nnpg.model_cache_mb",
							"Memory a backend's cache of loaded models may hold.",
							"Beyond it the least recently used models are dropped; the model in use is always kept.",
							&nnpg_model_cache_mb,
							256, 0, INT_MAX / 2,
							PGC_USERSET,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("nnpg.track_progress",
							 "Shows running fits in the nn_progress view.",
							 "Needs nnpg in shared_preload_libraries.",
							 &nnpg_track_progress,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	nnpg_progress_init();
	MarkGUCPrefixReserved("nnpg");
}

/* Bytes a backend's model cache may hold (nnpg.model_cache_mb). */
size_t
nnpg_model_cache_bytes(void)
{
	return (size_t) nnpg_model_cache_mb * 1024 * 1024;
}

/*
 * Functions that store or remove models fail at once on a standby, before
 * any work, and in a read-only transaction.
 */
void
nnpg_prevent_read_only(const char *what)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot run %s on a standby server", what),
				 errhint("Run it on the primary server; models reach standbys by replication.")));
	PreventCommandIfReadOnly(what);
}

/* The byte budget of one model. */
size_t
nnpg_max_model_bytes(void)
{
	return (size_t) nnpg_max_model_mb * 1024 * 1024;
}

/* The byte budget of cached training data. */
size_t
nnpg_data_cache_bytes(void)
{
	return (size_t) nnpg_data_cache_mb * 1024 * 1024;
}

/*
 * Ask for transparent huge pages under the 2 MB-aligned part of size bytes
 * at p (Linux, also in its default madvise mode).  Every fresh 4 kB page
 * costs a fault of a few microseconds, more than filling it: a fit's
 * layer buffers, the rows it keeps and a model's bytes are written once
 * into fresh memory, so with small pages the faults took longer than the
 * work.  Only advice: where it fails, small pages work as well.
 */
void
nnpg_advise_huge(void *p, size_t size)
{
#ifdef MADV_HUGEPAGE
	uintptr_t	start = TYPEALIGN(NNPG_HUGE_PAGE, (uintptr_t) p);
	uintptr_t	end = TYPEALIGN_DOWN(NNPG_HUGE_PAGE, (uintptr_t) p + size);

	if (end > start)
		(void) madvise((void *) start, end - start, MADV_HUGEPAGE);
#endif
}

/* nn_alloc hook: huge and no-OOM, so the core sees NULL and says so. */
static void *
context_alloc(void *ctx, size_t size)
{
	void	   *p;

	if (size == 0)
		size = 1;
	if (size > MaxAllocHugeSize)
		return NULL;
	p = MemoryContextAllocExtended((MemoryContext) ctx, size,
								   MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (p != NULL && size >= 2 * NNPG_HUGE_PAGE)
		nnpg_advise_huge(p, size);
	return p;
}

/* nn_alloc hook: pfree finds the context from the chunk. */
static void
context_free(void *ctx, void *ptr)
{
	if (ptr != NULL)
		pfree(ptr);
}

/* An allocator bound to cxt; it lives in cxt, as long as what it allocates. */
nn_alloc *
nnpg_alloc_create(MemoryContext cxt)
{
	nn_alloc   *alloc = MemoryContextAlloc(cxt, sizeof(nn_alloc));

	alloc->alloc = context_alloc;
	alloc->free = context_free;
	alloc->ctx = cxt;
	return alloc;
}

/* One chained CRC-32C step (the core applies the initial and final ~). */
uint32_t
nnpg_crc32c(uint32_t crc, const void *data, size_t len)
{
	pg_crc32c	c = crc;

	COMP_CRC32C(c, data, len);
	return c;
}

/* The SQLSTATE of a core status. */
static int
status_errcode(nn_status status)
{
	switch (status)
	{
		case NN_ERR_SPEC:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case NN_ERR_DATA:
			return ERRCODE_DATA_EXCEPTION;
		case NN_ERR_NUMERIC:
			return ERRCODE_FLOATING_POINT_EXCEPTION;
		case NN_ERR_LIMIT:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		case NN_ERR_MEMORY:
			return ERRCODE_OUT_OF_MEMORY;
		case NN_ERR_CORRUPT:
			return ERRCODE_DATA_CORRUPTED;
		case NN_ERR_UNSUPPORTED:
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case NN_OK:
		case NN_ERR_INTERNAL:
			break;
	}
	return ERRCODE_INTERNAL_ERROR;
}

/* Turn a core error into an ereport(ERROR). */
void
nnpg_report(const nn_error *err)
{
	nnpg_report_row(err, NULL);
}

/* The same, prefixing "row N: " when the core named a row of the batch. */
void
nnpg_report_row(const nn_error *err, const int64 *slot_row)
{
	const char *message = err->message[0] ? err->message : "unexpected error in nnpg core";
	const char *hint = NULL;

	if (slot_row != NULL && err->row >= 0)
		message = psprintf("row " INT64_FORMAT ": %s", slot_row[err->row],
						   message);

	if (err->status == NN_ERR_NUMERIC && err->detail[0] == '\0')
		hint = "Lower the learning rate, rescale the inputs or clip the gradients.";
	else if (err->status == NN_ERR_LIMIT || err->status == NN_ERR_MEMORY)
		hint = "Raise nnpg.max_model_mb, or use a smaller model or batch size.";

	ereport(ERROR,
			(errcode(status_errcode(err->status)),
			 errmsg_internal("%s", message),
			 err->detail[0] ? errdetail_internal("%s", err->detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}

/* A random seed in [0, 2^63). */
int64
nnpg_random_seed(void)
{
	uint64		seed;

	if (!pg_strong_random(&seed, sizeof(seed)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random seed")));
	return (int64) (seed & PG_INT64_MAX);
}

/* NULL where a value is required. */
void
nnpg_null_argument(const char *argname)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", argname)));
	pg_unreachable();
}

/* A text argument as a C string; NULL is an error naming the argument. */
char *
nnpg_text_to_cstring_arg(FunctionCallInfo fcinfo, int argno,
						 const char *argname)
{
	if (PG_ARGISNULL(argno))
		nnpg_null_argument(argname);
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}
