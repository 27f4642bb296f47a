/*
 * util.c: errors, checked sizes, allocation, the seeded RNG, the name tables
 * of activations, losses and optimizers, and byte input.
 *
 * The RNG is xoshiro256** seeded through splitmix64
 * (https://prng.di.unimi.it/), so a seed gives the same stream everywhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

/* Record an error: status, layer index and a printf-style message. */
nn_status
nn_fail(nn_error *err, nn_status status, int layer, const char *fmt,...)
{
	va_list		ap;

	if (err)
	{
		err->status = status;
		err->layer = layer;
		err->row = -1;
		err->detail[0] = '\0';
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return status;
}

/* Attach a detail sentence to the error recorded last. */
void
nn_detail(nn_error *err, const char *fmt,...)
{
	va_list		ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
}

/* out = a * b, false on overflow */
bool
nn_size_mul(size_t *out, size_t a, size_t b)
{
	return !__builtin_mul_overflow(a, b, out);
}

/* out = a + b, false on overflow */
bool
nn_size_add(size_t *out, size_t a, size_t b)
{
	return !__builtin_add_overflow(a, b, out);
}

static void *
malloc_hook(void *ctx, size_t size)
{
	(void) ctx;
	return malloc(size ? size : 1);
}

static void
free_hook(void *ctx, void *p)
{
	(void) ctx;
	free(p);
}

const nn_alloc nn_malloc_alloc = {malloc_hook, free_hook, NULL};

/*
 * Every core buffer starts on a cache line, whatever the caller's allocator
 * promises (palloc gives 8 bytes), so that vector loads in the element-wise
 * loops never straddle two lines.  The pointer the hook returned is kept
 * just below the aligned block.
 */
#define NN_ALIGN 64

/* Allocate through the hooks, aligned to NN_ALIGN; NULL on failure. */
void *
nn_alloc_bytes(const nn_alloc *a, size_t size)
{
	size_t		total;
	uint8_t    *raw;
	uintptr_t	p;

	if (!nn_size_add(&total, size, NN_ALIGN + sizeof(void *)))
		return NULL;
	raw = a->alloc(a->ctx, total);
	if (raw == NULL)
		return NULL;
	p = ((uintptr_t) raw + sizeof(void *) + NN_ALIGN - 1) & ~(uintptr_t) (NN_ALIGN - 1);
	((void **) p)[-1] = raw;
	return (void *) p;
}

/* Free what nn_alloc_bytes returned; NULL is ignored. */
void
nn_free_bytes(const nn_alloc *a, void *p)
{
	if (p)
		a->free(a->ctx, ((void **) p)[-1]);
}

/* ---------- RNG ---------- */

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Seed the generator; every seed (0 included) gives a valid state. */
void
nn_rng_seed(nn_rng *rng, uint64_t seed)
{
	uint64_t	x = seed;

	for (int i = 0; i < 4; i++)
		rng->s[i] = splitmix64(&x);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* Next 64 random bits. */
uint64_t
nn_rng_next(nn_rng *rng)
{
	uint64_t   *s = rng->s;
	uint64_t	result = rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform float in [0, 1) from the top 24 bits. */
float
nn_rng_uniform(nn_rng *rng)
{
	return (float) (nn_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n) by rejection (Lemire-free, simple and unbiased). */
uint64_t
nn_rng_below(nn_rng *rng, uint64_t n)
{
	uint64_t	limit;
	uint64_t	r;

	if (n <= 1)
		return 0;
	limit = UINT64_MAX - (UINT64_MAX % n);
	do
		r = nn_rng_next(rng);
	while (r >= limit);
	return r % n;
}

/* Fisher-Yates shuffle of an index array. */
void
nn_rng_shuffle(nn_rng *rng, uint32_t *idx, size_t n)
{
	for (size_t i = n; i > 1; i--)
	{
		size_t		j = (size_t) nn_rng_below(rng, i);
		uint32_t	t = idx[i - 1];

		idx[i - 1] = idx[j];
		idx[j] = t;
	}
}

/* ---------- name tables ---------- */

static const char *const act_names[] = {
	"linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax"
};

static const char *const loss_names[] = {
	NULL, "mse", "mae", "huber", "binary_crossentropy",
	"categorical_crossentropy", "sparse_categorical_crossentropy"
};

static const char *const opt_names[] = {
	NULL, "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"
};

/* Index of name in table[lo..hi], or -1. */
static int
lookup(const char *const *table, int lo, int hi, const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = lo; i <= hi; i++)
		if (strcmp(table[i], name) == 0)
			return i;
	return -1;
}

const char *
nn_activation_name(nn_activation act)
{
	return ((int) act >= 0 && act <= NN_ACT_MAX) ? act_names[act] : "?";
}

int
nn_activation_from_name(const char *name, nn_activation *act)
{
	int			i = lookup(act_names, 0, NN_ACT_MAX, name);

	if (i < 0)
		return -1;
	*act = (nn_activation) i;
	return 0;
}

const char *
nn_loss_name(nn_loss_kind kind)
{
	return (kind >= 1 && kind <= NN_LOSS_MAX) ? loss_names[kind] : "?";
}

int
nn_loss_from_name(const char *name, nn_loss_kind *kind)
{
	int			i = lookup(loss_names, 1, NN_LOSS_MAX, name);

	if (i < 0)
		return -1;
	*kind = (nn_loss_kind) i;
	return 0;
}

bool
nn_loss_sparse_target(nn_loss_kind kind)
{
	return kind == NN_LOSS_SPARSE_CATEGORICAL_CE;
}

bool
nn_loss_is_classification(nn_loss_kind kind)
{
	return kind == NN_LOSS_BINARY_CE || kind == NN_LOSS_CATEGORICAL_CE ||
		kind == NN_LOSS_SPARSE_CATEGORICAL_CE;
}

const char *
nn_optimizer_name(nn_optimizer_kind kind)
{
	return (kind >= 1 && kind <= NN_OPT_MAX) ? opt_names[kind] : "?";
}

int
nn_optimizer_from_name(const char *name, nn_optimizer_kind *kind)
{
	int			i = lookup(opt_names, 1, NN_OPT_MAX, name);

	if (i < 0)
		return -1;
	*kind = (nn_optimizer_kind) i;
	return 0;
}

/* ---------- input ---------- */

/* A plain loop, which the compiler vectorizes (8 bytes at a time on AVX2). */
static NN_SIMD void
bytes_to_floats(float *restrict dst, const uint8_t *restrict src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (float) src[i];
}

/* Not multi-versioned itself: clang names an exported clone differently. */
void
nn_bytes_to_floats(float *dst, const uint8_t *src, size_t n)
{
	bytes_to_floats(dst, src, n);
}
