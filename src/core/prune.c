/*
 * prune.c: magnitude pruning (Zhu and Gupta's "to prune, or not to prune"
 * criterion, applied once): the smallest weights of each kernel become
 * zero and stay zero.
 *
 * A pruned model carries a bitmap over its flat parameter vector, 1 where
 * a weight is kept.  Only the kernels and recurrent kernels of the
 * NN_KIND_PRUNABLE kinds (dense, conv2d, the recurrent layers) have zeros
 * in it.  Training keeps pruned weights at zero by zeroing their gradients
 * before each step: with their optimizer state zero too (pruning drops
 * the training state), no update rule, penalty or clipping moves them.
 * An int8 model (quantize.c) is not pruned further; its sparsity counts
 * the zeros of its int8 kernels.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

uint8_t *
nn_mask_alloc(const nn_model *m)
{
	size_t		bytes = (size_t) (m->n_params + 7) / 8;
	uint8_t    *mask = nn_alloc_bytes(&m->alloc, bytes > 0 ? bytes : 1);

	if (mask)
		memset(mask, 0xFF, bytes > 0 ? bytes : 1);
	return mask;
}

static void
mask_clear(uint8_t *mask, int64_t i)
{
	mask[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

void
nn_mask_gradients(nn_model *m)
{
	for (int64_t i = 0; i < m->n_params; i++)
		if (!nn_mask_kept(m->mask, i))
			m->grads[i] = 0.0f;
}

static int
abs_cmp(const void *a, const void *b)
{
	float		x = fabsf(*(const float *) a),
				y = fabsf(*(const float *) b);

	return x < y ? -1 : x > y;
}

/*
 * Prune the k smallest-magnitude weights of w[0, n) at parameter offset
 * off: those below the k-th smallest magnitude, then ties in order.
 * scratch holds n floats.
 */
static void
prune_tensor(nn_model *m, int64_t off, int64_t n, int64_t k, float *scratch)
{
	float	   *w = m->params + off;
	float		t;
	int64_t		done = 0;

	if (k <= 0)
		return;
	memcpy(scratch, w, sizeof(float) * n);
	qsort(scratch, (size_t) n, sizeof(float), abs_cmp);
	t = fabsf(scratch[k - 1]);
	for (int64_t i = 0; i < n; i++)
		if (fabsf(w[i]) < t)
		{
			w[i] = 0.0f;
			mask_clear(m->mask, off + i);
			done++;
		}
	for (int64_t i = 0; i < n && done < k; i++)
		if (fabsf(w[i]) == t && nn_mask_kept(m->mask, off + i))
		{
			w[i] = 0.0f;
			mask_clear(m->mask, off + i);
			done++;
		}
}

/* The pruned tensors of layer l: kernel, recurrent kernel. */
static int
prunable_tensors(const nn_layer *l, int64_t off[2], int64_t len[2])
{
	int			n = 0;

	if (!(l->type->flags & NN_KIND_PRUNABLE))
		return 0;
	if (l->w_len > 0)
	{
		off[n] = l->w_off;
		len[n++] = l->w_len;
	}
	if (l->r_len > 0)
	{
		off[n] = l->r_off;
		len[n++] = l->r_len;
	}
	return n;
}

nn_status
nn_model_prune(nn_model *m, double sparsity, nn_error *err)
{
	int64_t		largest = 0;
	float	   *scratch;
	nn_status	st;

	if ((st = nn_quant_refuse(m, "pruned",
							  "Prune the float version of the model, then quantize it again.",
							  err)) != NN_OK)
		return st;
	if (!(sparsity >= 0.0 && sparsity < 1.0))
		return nn_fail(err, NN_ERR_SPEC, -1,
					   "sparsity must be at least 0 and less than 1, not %g",
					   sparsity);
	for (int i = 0; i < m->n_layers; i++)
	{
		int64_t		off[2],
					len[2];

		for (int t = prunable_tensors(&m->layers[i], off, len); t-- > 0;)
			largest = len[t] > largest ? len[t] : largest;
	}
	if (m->mask == NULL && (m->mask = nn_mask_alloc(m)) == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	scratch = nn_alloc_bytes(&m->alloc, sizeof(float) * (largest > 0 ? largest : 1));
	if (scratch == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	nn_model_release_training(m);
	for (int i = 0; i < m->n_layers; i++)
	{
		int64_t		off[2],
					len[2];

		for (int t = prunable_tensors(&m->layers[i], off, len); t-- > 0;)
			prune_tensor(m, off[t], len[t],
						 (int64_t) floor(sparsity * (double) len[t]), scratch);
		m->layers[i].wt_ready = false;	/* cached transformed kernels */
	}
	nn_free_bytes(&m->alloc, scratch);
	return NN_OK;
}

bool
nn_model_is_pruned(const nn_model *m)
{
	return m->mask != NULL;
}

double
nn_model_sparsity(const nn_model *m)
{
	int64_t		zeros = 0,
				total = 0;

	for (int i = 0; i < m->n_layers; i++)
	{
		const nn_layer *l = &m->layers[i];
		int64_t		off[2],
					len[2];

		if (l->q)
		{
			zeros += nn_quant_zeros(&l->q->w);
			total += l->w_len;
			continue;
		}
		for (int t = prunable_tensors(l, off, len); t-- > 0;)
		{
			for (int64_t j = 0; j < len[t]; j++)
				zeros += m->params[off[t] + j] == 0.0f;
			total += len[t];
		}
	}
	return total > 0 ? (double) zeros / (double) total : 0.0;
}
