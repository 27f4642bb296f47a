/*
 * threads.c: how the core splits work over OpenMP threads.
 *
 * Each parallel loop hands whole samples (or whole output columns) to the
 * threads, and every thread calls single-threaded sgemm on its share, so no
 * two threads write the same value and results do not depend on
 * scheduling.  OpenBLAS therefore runs single-threaded: its own threads on
 * top would oversubscribe the cores.
 */
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn_internal.h"

/*
 * Below this many multiply-adds (or element operations) a loop stays on
 * the calling thread: waking the team costs more than it saves, and a
 * single-row prediction must not wait for a busy core.
 */
#define PAR_MIN_WORK ((double) (1 << 20))

/* Is work of this size worth the thread team? */
bool
nn_par(double work, int32_t pieces)
{
	return pieces > 1 && work >= PAR_MIN_WORK;
}

/* Rows [r0, r1) of samples [0, n) split evenly over the team. */
void
nn_thread_rows(int32_t n, int32_t *r0, int32_t *r1)
{
#ifdef _OPENMP
	int			t = omp_get_thread_num(),
				nt = omp_get_num_threads();
#else
	int			t = 0,
				nt = 1;
#endif

	*r0 = (int32_t) ((int64_t) n * t / nt);
	*r1 = (int32_t) ((int64_t) n * (t + 1) / nt);
}

/* Threads a parallel region would have. */
int32_t
nn_team_size(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}

/*
 * Threads for the math kernels.  The team is started here, so that a
 * caller can start it with signals blocked (a server process wants its
 * signals handled on its main thread only).
 */
void
nn_set_threads(int n)
{
	openblas_set_num_threads(1);
#ifdef _OPENMP
	omp_set_num_threads(n < 1 ? 1 : n);
#pragma omp parallel
	{
		/* start the team now */
	}
#else
	(void) n;
#endif
}

int
nn_get_threads(void)
{
	return nn_team_size();
}
