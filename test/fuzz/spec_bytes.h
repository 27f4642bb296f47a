/*
 * spec_bytes.h: a compact byte encoding of model specs for fuzz_spec.c and
 * the seed corpus written by make_corpus.c.
 *
 * Every byte string decodes to some spec: small values mostly, plus a few
 * byte values that map to extremes (0, negative, INT32_MAX, NaN, Inf) so
 * that validation and overflow checks are reached.  Layout:
 *
 *   header (8 bytes)
 *     [0] layer count - 1 (mod 8)
 *     [1] input rank: 1 + b % 3
 *     [2..4] input dims (sb_count)
 *     [5] loss kind: 1 + b % 6      [6] optimizer: 1 + b % 7
 *     [7] seed for the data rows
 *   per layer (24 bytes)
 *     [0] kind: b % (NN_LAYER_KIND_MAX + 2) (0 and the last are invalid)
 *     [1] activation: b % 9 - 1 (-1 and 7 invalid)
 *     [2] units  [3] filters               (sb_count)
 *     [4] kernel h [5] kernel w            (sb_small)
 *     [6] stride h [7] stride w            (b % 5, 255: 5000)
 *     [8] bit 0 same padding, bit 1 no bias
 *     [9] reshape rank: b % 5
 *     [10..12] reshape dims                (sb_count)
 *     [13] rate  [14] scale  [15] offset  [16] alpha
 *     [17] l1  [18] l2  [19] epsilon       (sb_real; 100, i.e. 0, stands
 *                                           for 1e-7, its unset value)
 *     [20] momentum (sb_real)  [21] input_dim [22] output_dim (sb_count)
 *     [23] bits 0-3 recurrent activation: b % 9 - 1, bit 4 return_sequences
 *   then, optionally, the augmentation options (format version 3) of each
 *   layer in turn (9 bytes a layer; bytes past the input read as 0), where
 *   a byte 0 keeps what nn_layer_spec_init gave (so inputs without them
 *   decode as before):
 *     [0] bits 0-1 mode: b % 4 (3 invalid), bits 2-4 fill_mode:
 *         (b >> 2) % 6 (4 and 5 invalid)
 *     [1] height_factor [2] width_factor [3] factor [4] value_range
 *         (sb_range: odd b gives [-v, v], even [v - 0.5, v], v = sb_real(b);
 *         252, NaN, gives the absent range)
 *     [5] fill_value [6] stddev            (sb_real)
 *     [7] height [8] width                 (sb_count)
 */
#ifndef SPEC_BYTES_H
#define SPEC_BYTES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn.h"

#define SB_HEADER 8
#define SB_LAYER 24
#define SB_EXT 9
#define SB_MAX_LAYERS 8

/* Sizes: b % 40 mostly; 250..255 are extremes. */
static inline int32_t
sb_count(uint8_t b)
{
	switch (b)
	{
		case 250:
			return -1;
		case 251:
			return 4096;
		case 252:
			return 65536;
		case 253:
			return 1 << 24;
		case 254:
			return INT32_MAX - 1;
		case 255:
			return INT32_MAX;
		default:
			return b % 40;
	}
}

/* Kernel sizes: b % 8 mostly; 255: 5000 (over the 4096 limit). */
static inline int32_t
sb_small(uint8_t b)
{
	return b == 255 ? 5000 : b == 254 ? 4096 : b % 8;
}

/* Reals: (b - 100) / 100 mostly; 252..255: NaN, Inf, -Inf, 1e30. */
static inline float
sb_real(uint8_t b)
{
	switch (b)
	{
		case 252:
			return NAN;
		case 253:
			return INFINITY;
		case 254:
			return -INFINITY;
		case 255:
			return 1e30f;
		default:
			return (float) ((int) b - 100) / 100.0f;
	}
}

/* A range from a byte: odd [-v, v], even [v - 0.5, v], v = sb_real(b). */
static inline void
sb_range(float *r, uint8_t b)
{
	float		v = sb_real(b);

	r[0] = b & 1 ? -v : v - 0.5f;
	r[1] = v;
}

/* Inverse of sb_real for the corpus: r in [-1, 1.5] to its byte. */
static inline uint8_t
sb_real_byte(float r)
{
	return (uint8_t) lrintf(r * 100.0f + 100.0f);
}

typedef struct sb_spec
{
	nn_model_spec spec;
	nn_layer_spec layers[SB_MAX_LAYERS];
	nn_loss_kind loss;
	nn_optimizer_kind opt;
	uint8_t		seed;
} sb_spec;

/* Decode; returns 0, or -1 when the bytes are too short for the header. */
static inline int
sb_decode(sb_spec *out, const uint8_t *d, size_t n)
{
	int			nl;

	if (n < SB_HEADER)
		return -1;
	memset(out, 0, sizeof(*out));
	nl = 1 + d[0] % SB_MAX_LAYERS;
	out->spec.input_rank = 1 + d[1] % 3;
	for (int i = 0; i < out->spec.input_rank; i++)
		out->spec.input_shape[i] = sb_count(d[2 + i]);
	out->loss = (nn_loss_kind) (1 + d[5] % 6);
	out->opt = (nn_optimizer_kind) (1 + d[6] % 7);
	out->seed = d[7];
	d += SB_HEADER;
	n -= SB_HEADER;
	if ((size_t) nl * SB_LAYER > n)
		nl = (int) (n / SB_LAYER);
	for (int i = 0; i < nl; i++, d += SB_LAYER)
	{
		nn_layer_spec *s = &out->layers[i];
		int			kind = d[0] % (NN_LAYER_KIND_MAX + 2);

		if (kind >= 1 && kind <= NN_LAYER_KIND_MAX)
			nn_layer_spec_init(s, (nn_layer_kind) kind);
		else
		{
			memset(s, 0, sizeof(*s));
			s->kind = (nn_layer_kind) kind;
		}
		s->activation = (nn_activation) ((int) (d[1] % 9) - 1);
		s->units = sb_count(d[2]);
		s->filters = sb_count(d[3]);
		s->kernel[0] = sb_small(d[4]);
		s->kernel[1] = sb_small(d[5]);
		s->strides[0] = d[6] == 255 ? 5000 : d[6] % 5;
		s->strides[1] = d[7] == 255 ? 5000 : d[7] % 5;
		s->same_padding = d[8] & 1;
		s->use_bias = !(d[8] & 2);
		s->shape_rank = d[9] % 5;
		for (int j = 0; j < 3; j++)
			s->shape[j] = sb_count(d[10 + j]);
		s->rate = sb_real(d[13]);
		s->scale = sb_real(d[14]);
		s->offset = sb_real(d[15]);
		s->alpha = sb_real(d[16]);
		s->l1 = sb_real(d[17]);
		s->l2 = sb_real(d[18]);
		s->epsilon = d[19] == 100 ? 1e-7f : sb_real(d[19]);
		s->momentum = sb_real(d[20]);
		s->input_dim = sb_count(d[21]);
		s->output_dim = sb_count(d[22]);
		s->recurrent_activation = (nn_activation) ((int) ((d[23] & 15) % 9) - 1);
		s->return_sequences = (d[23] & 16) != 0;
	}
	/* the augmentation options, when the input goes on */
	for (int i = 0; i < nl; i++)
	{
		nn_layer_spec *s = &out->layers[i];
		uint8_t		e[SB_EXT];

		for (int j = 0; j < SB_EXT; j++)
		{
			size_t		at = (size_t) i * SB_EXT + j;

			e[j] = at < n - (size_t) nl * SB_LAYER ? d[at] : 0;
		}
		if (e[0])
		{
			s->mode = e[0] % 4;
			s->fill_mode = (e[0] >> 2) % 6;
		}
		if (e[1])
			sb_range(s->height_factor, e[1]);
		if (e[2])
			sb_range(s->width_factor, e[2]);
		if (e[3])
			sb_range(s->factor, e[3]);
		if (e[4])
			sb_range(s->value_range, e[4]);
		if (e[5])
			s->fill_value = sb_real(e[5]);
		if (e[6])
			s->stddev = sb_real(e[6]);
		if (e[7])
			s->height = sb_count(e[7]);
		if (e[8])
			s->width = sb_count(e[8]);
	}
	out->spec.n_layers = nl;
	out->spec.layers = out->layers;
	return 0;
}

/*
 * Multiply-adds per sample of a built model's conv2d, pooling and dense
 * layers: the fuzzers skip running models too slow to be worth it (a
 * 4096-cell pooling window is valid, just not a fuzzing target).
 */
static inline double
sb_model_cost(const nn_model *m)
{
	const nn_model_spec *s = nn_model_get_spec(m);
	double		cost = 0;
	int32_t		c_in = s->input_rank == 3 ? s->input_shape[2] : 1;

	for (int i = 0; i < s->n_layers; i++)
	{
		const nn_layer_spec *l = &s->layers[i];
		nn_layer_info info;
		double		out = 1;

		nn_model_layer_info(m, i, &info);
		for (int d = 0; d < info.rank; d++)
			out *= info.shape[d];
		if (l->kind == NN_LAYER_CONV2D)
			cost += out * l->kernel[0] * l->kernel[1] * c_in;
		else if (l->kind == NN_LAYER_MAXPOOL2D || l->kind == NN_LAYER_AVGPOOL2D)
			cost += out * l->kernel[0] * l->kernel[1];
		else
			cost += out + (double) info.params;
		c_in = info.rank == 3 ? info.shape[2] : 1;
	}
	return cost;
}

#endif							/* SPEC_BYTES_H */
