/*
 * layer.c: the layer table.  One row per layer kind (nn_layer_type, defined
 * in the kind's own file) and one row per layer option (nn_options below),
 * and everything that reads them without knowing a kind: names, defaults,
 * option checks, shape inference, and the dispatch of init, forward,
 * backward and buffer sizes.
 *
 * Adding a layer kind is a file that defines its nn_layer_type, its
 * nn_layer_kind value in nn.h and one line in kinds[] below.  Adding an
 * option is a row of nn_options (at the end, with the next model format
 * version, since the rows are the layer records of the model bytes) and a
 * line in the option list of each kind that takes it.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "nn_internal.h"

#define FIELD(f) ((uint16_t) offsetof(nn_layer_spec, f))
#define POSITIVE 1, (double) INT32_MAX

/* The names of the choice options, in the order of their enums (nn.h). */
static const char *const flip_modes[] = {
	"horizontal", "vertical", "horizontal_and_vertical", NULL
};
static const char *const fill_modes[] = {
	"reflect", "wrap", "constant", "nearest", NULL
};

/* The option rows, in the order of the model bytes' layer records. */
const nn_option nn_options[NN_OPTION_COUNT] = {
	[NN_OPTION_ACTIVATION] = {"activation", NN_VAL_ACTIVATION, FIELD(activation),
	0, 1, 0, NN_ACT_MAX, NN_ACT_LINEAR, NULL},
	[NN_OPTION_ALPHA] = {"alpha", NN_VAL_FLOAT, FIELD(alpha), NN_OPTION_SLOPE, 1,
	0, FLT_MAX, 0, NULL},
	[NN_OPTION_UNITS] = {"units", NN_VAL_INT, FIELD(units), 0, 1, POSITIVE, 0, NULL},
	[NN_OPTION_FILTERS] = {"filters", NN_VAL_INT, FIELD(filters), 0, 1,
	POSITIVE, 0, NULL},
	[NN_OPTION_KERNEL_SIZE] = {"kernel_size", NN_VAL_PAIR, FIELD(kernel), 0, 1,
	POSITIVE, 0, NULL},
	[NN_OPTION_STRIDES] = {"strides", NN_VAL_PAIR, FIELD(strides), 0, 1,
	POSITIVE, 0, NULL},
	[NN_OPTION_PADDING] = {"padding", NN_VAL_PADDING, FIELD(same_padding), 0, 1,
	0, 1, 0, NULL},
	[NN_OPTION_USE_BIAS] = {"use_bias", NN_VAL_BOOL, FIELD(use_bias), 0, 1,
	0, 1, 1, NULL},
	[NN_OPTION_SHAPE] = {"shape", NN_VAL_SHAPE, FIELD(shape_rank), 0, 1,
	POSITIVE, 0, NULL},
	[NN_OPTION_RATE] = {"rate", NN_VAL_FLOAT, FIELD(rate), NN_OPTION_MAX_OPEN, 1,
	0, 1, 0, NULL},
	[NN_OPTION_SCALE] = {"scale", NN_VAL_FLOAT, FIELD(scale), 0, 1,
	-FLT_MAX, FLT_MAX, 1, NULL},
	[NN_OPTION_OFFSET] = {"offset", NN_VAL_FLOAT, FIELD(offset), 0, 1,
	-FLT_MAX, FLT_MAX, 0, NULL},
	[NN_OPTION_L1] = {"l1", NN_VAL_FLOAT, FIELD(l1), NN_OPTION_QUIET, 1,
	0, FLT_MAX, 0, NULL},
	[NN_OPTION_L2] = {"l2", NN_VAL_FLOAT, FIELD(l2), NN_OPTION_QUIET, 1,
	0, FLT_MAX, 0, NULL},
	[NN_OPTION_EPSILON] = {"epsilon", NN_VAL_FLOAT, FIELD(epsilon),
	NN_OPTION_MIN_OPEN, 1, 0, FLT_MAX, 1e-7, NULL},
	[NN_OPTION_ADAPTED] = {"adapted", NN_VAL_BOOL, FIELD(adapted),
	NN_OPTION_INTERNAL, 1, 0, 1, 0, NULL},
	[NN_OPTION_MOMENTUM] = {"momentum", NN_VAL_FLOAT, FIELD(momentum), 0, 2,
	0, 1, 0, NULL},
	[NN_OPTION_INPUT_DIM] = {"input_dim", NN_VAL_INT, FIELD(input_dim), 0, 2,
	POSITIVE, 0, NULL},
	[NN_OPTION_OUTPUT_DIM] = {"output_dim", NN_VAL_INT, FIELD(output_dim), 0, 2,
	POSITIVE, 0, NULL},
	[NN_OPTION_RECURRENT_ACTIVATION] = {"recurrent_activation",
		NN_VAL_ACTIVATION, FIELD(recurrent_activation), 0, 2, 0, NN_ACT_MAX,
	NN_ACT_LINEAR, NULL},
	[NN_OPTION_RETURN_SEQUENCES] = {"return_sequences", NN_VAL_BOOL,
	FIELD(return_sequences), 0, 2, 0, 1, 0, NULL},
	/* format version 3: the augmentation layers (augment.c) */
	[NN_OPTION_MODE] = {"mode", NN_VAL_CHOICE, FIELD(mode), 0, 3,
	0, NN_FLIP_BOTH, NN_FLIP_HORIZONTAL, flip_modes},
	/* translation takes [-1, 1], zoom (-1, ...): checked by the kinds */
	[NN_OPTION_HEIGHT_FACTOR] = {"height_factor", NN_VAL_RANGE,
	FIELD(height_factor), 0, 3, -1, FLT_MAX, 0, NULL},
	[NN_OPTION_WIDTH_FACTOR] = {"width_factor", NN_VAL_RANGE,
	FIELD(width_factor), 0, 3, -1, FLT_MAX, 0, NULL},
	[NN_OPTION_FILL_MODE] = {"fill_mode", NN_VAL_CHOICE, FIELD(fill_mode), 0, 3,
	0, NN_FILL_NEAREST, NN_FILL_REFLECT, fill_modes},
	[NN_OPTION_FILL_VALUE] = {"fill_value", NN_VAL_FLOAT, FIELD(fill_value),
	0, 3, -FLT_MAX, FLT_MAX, 0, NULL},
	[NN_OPTION_FACTOR] = {"factor", NN_VAL_RANGE, FIELD(factor), 0, 3,
	-1, 1, 0, NULL},
	[NN_OPTION_HEIGHT] = {"height", NN_VAL_INT, FIELD(height), 0, 3,
	POSITIVE, 0, NULL},
	[NN_OPTION_WIDTH] = {"width", NN_VAL_INT, FIELD(width), 0, 3,
	POSITIVE, 0, NULL},
	[NN_OPTION_VALUE_RANGE] = {"value_range", NN_VAL_RANGE, FIELD(value_range),
	0, 3, -FLT_MAX, FLT_MAX, 0, NULL},
	[NN_OPTION_STDDEV] = {"stddev", NN_VAL_FLOAT, FIELD(stddev), 0, 3,
	0, FLT_MAX, 0, NULL},
	/* weightless kinds hold true, as Keras's layers do */
	[NN_OPTION_TRAINABLE] = {"trainable", NN_VAL_BOOL, FIELD(trainable),
	NN_OPTION_QUIET, 3, 0, 1, 1, NULL},
};

/* A shape option is the rank followed by the dimensions. */
_Static_assert(offsetof(nn_layer_spec, shape) ==
			   offsetof(nn_layer_spec, shape_rank) + sizeof(int32_t),
			   "shape must follow shape_rank");

extern const nn_layer_type nn_dense_type,
			nn_conv2d_type,
			nn_maxpool2d_type,
			nn_avgpool2d_type,
			nn_flatten_type,
			nn_reshape_type,
			nn_dropout_type,
			nn_activation_type,
			nn_rescale_type,
			nn_normalize_type,
			nn_batchnorm_type,
			nn_embedding_type,
			nn_global_avgpool_type,
			nn_global_maxpool_type,
			nn_simple_rnn_type,
			nn_lstm_type,
			nn_gru_type,
			nn_random_flip_type,
			nn_random_translation_type,
			nn_random_rotation_type,
			nn_random_zoom_type,
			nn_random_crop_type,
			nn_random_contrast_type,
			nn_random_brightness_type,
			nn_gaussian_noise_type;

/* The layer table, by nn_layer_kind. */
static const nn_layer_type *const kinds[NN_LAYER_KIND_MAX + 1] = {
	[NN_LAYER_DENSE] = &nn_dense_type,
	[NN_LAYER_CONV2D] = &nn_conv2d_type,
	[NN_LAYER_MAXPOOL2D] = &nn_maxpool2d_type,
	[NN_LAYER_AVGPOOL2D] = &nn_avgpool2d_type,
	[NN_LAYER_FLATTEN] = &nn_flatten_type,
	[NN_LAYER_RESHAPE] = &nn_reshape_type,
	[NN_LAYER_DROPOUT] = &nn_dropout_type,
	[NN_LAYER_ACTIVATION] = &nn_activation_type,
	[NN_LAYER_RESCALE] = &nn_rescale_type,
	[NN_LAYER_NORMALIZE] = &nn_normalize_type,
	[NN_LAYER_BATCHNORM] = &nn_batchnorm_type,
	[NN_LAYER_EMBEDDING] = &nn_embedding_type,
	[NN_LAYER_GLOBAL_AVGPOOL] = &nn_global_avgpool_type,
	[NN_LAYER_GLOBAL_MAXPOOL] = &nn_global_maxpool_type,
	[NN_LAYER_SIMPLE_RNN] = &nn_simple_rnn_type,
	[NN_LAYER_LSTM] = &nn_lstm_type,
	[NN_LAYER_GRU] = &nn_gru_type,
	[NN_LAYER_RANDOM_FLIP] = &nn_random_flip_type,
	[NN_LAYER_RANDOM_TRANSLATION] = &nn_random_translation_type,
	[NN_LAYER_RANDOM_ROTATION] = &nn_random_rotation_type,
	[NN_LAYER_RANDOM_ZOOM] = &nn_random_zoom_type,
	[NN_LAYER_RANDOM_CROP] = &nn_random_crop_type,
	[NN_LAYER_RANDOM_CONTRAST] = &nn_random_contrast_type,
	[NN_LAYER_RANDOM_BRIGHTNESS] = &nn_random_brightness_type,
	[NN_LAYER_GAUSSIAN_NOISE] = &nn_gaussian_noise_type,
};

/* ---------- lookups ---------- */

const nn_layer_type *
nn_layer_type_of(nn_layer_kind kind)
{
	return (int) kind >= 1 && kind <= NN_LAYER_KIND_MAX ? kinds[kind] : NULL;
}

const char *
nn_layer_kind_name(nn_layer_kind kind)
{
	const nn_layer_type *t = nn_layer_type_of(kind);

	return t ? t->name : "?";
}

int
nn_layer_kind_from_name(const char *name, nn_layer_kind *kind)
{
	for (int k = 1; name && k <= NN_LAYER_KIND_MAX; k++)
		if (strcmp(kinds[k]->name, name) == 0)
		{
			*kind = (nn_layer_kind) k;
			return 0;
		}
	return -1;
}

const nn_kind_option *
nn_layer_kind_options(nn_layer_kind kind, int32_t *n)
{
	const nn_layer_type *t = nn_layer_type_of(kind);

	*n = t ? t->n_options : 0;
	return t ? t->options : NULL;
}

const nn_kind_option *
nn_layer_takes(const nn_layer_type *t, const nn_option *opt)
{
	for (int32_t i = 0; i < t->n_options; i++)
		if (t->options[i].option == opt)
			return &t->options[i];
	return NULL;
}

const char *
nn_kind_option_name(const nn_kind_option *ko)
{
	return ko->name ? ko->name : ko->option->name;
}

/* ---------- option values ---------- */

static void *
field(const nn_layer_spec *spec, const nn_option *opt)
{
	return (char *) spec + opt->offset;
}

double
nn_option_get(const nn_layer_spec *spec, const nn_option *opt)
{
	void	   *p = field(spec, opt);

	switch (opt->type)
	{
		case NN_VAL_INT:
			return *(int32_t *) p;
		case NN_VAL_FLOAT:
			return *(float *) p;
		case NN_VAL_BOOL:
		case NN_VAL_PADDING:
			return *(bool *) p;
		case NN_VAL_ACTIVATION:
			return (int) *(nn_activation *) p;
		case NN_VAL_RANGE:
			return *(float *) p;	/* the lower bound */
		case NN_VAL_PAIR:
		case NN_VAL_SHAPE:
		case NN_VAL_CHOICE:
			break;
	}
	return *(int32_t *) p;		/* the first value, the rank or the index */
}

void
nn_option_set(nn_layer_spec *spec, const nn_option *opt, double v)
{
	void	   *p = field(spec, opt);

	switch (opt->type)
	{
		case NN_VAL_INT:
		case NN_VAL_SHAPE:		/* the rank */
		case NN_VAL_CHOICE:
			*(int32_t *) p = (int32_t) v;
			break;
		case NN_VAL_RANGE:
			if (isnan(v))
				((float *) p)[0] = ((float *) p)[1] = NAN;
			else
			{
				/* [-v, v], and [0, 0] rather than [-0, 0] */
				((float *) p)[0] = v == 0 ? 0.0f : (float) -v;
				((float *) p)[1] = (float) v;
			}
			break;
		case NN_VAL_FLOAT:
			*(float *) p = (float) v;
			break;
		case NN_VAL_BOOL:
		case NN_VAL_PADDING:
			*(bool *) p = v != 0;
			break;
		case NN_VAL_ACTIVATION:
			*(nn_activation *) p = (nn_activation) (int) v;
			break;
		case NN_VAL_PAIR:
			((int32_t *) p)[0] = ((int32_t *) p)[1] = (int32_t) v;
			break;
	}
}

int32_t *
nn_option_ints(nn_layer_spec *spec, const nn_option *opt)
{
	int32_t    *p = field(spec, opt);

	return opt->type == NN_VAL_SHAPE ? p + 1 : p;
}

float *
nn_option_floats(nn_layer_spec *spec, const nn_option *opt)
{
	return field(spec, opt);
}

bool
nn_option_absent(const nn_layer_spec *spec, const nn_option *opt)
{
	const float *f = field(spec, opt);

	return opt->type == NN_VAL_RANGE && isnan(f[0]) && isnan(f[1]);
}

const char *
nn_option_choice_name(const nn_option *opt, int32_t v)
{
	if (opt->type != NN_VAL_CHOICE || v < opt->min || v > opt->max)
		return NULL;
	return opt->names[v];
}

int32_t
nn_option_choice_index(const nn_option *opt, const char *name)
{
	for (int32_t i = 0; name && opt->type == NN_VAL_CHOICE && opt->names[i]; i++)
		if (strcmp(opt->names[i], name) == 0)
			return i;
	return -1;
}

bool
nn_option_in_range(const nn_option *opt, double v)
{
	if (isnan(v))
		return false;
	if (opt->flags & NN_OPTION_MIN_OPEN ? v <= opt->min : v < opt->min)
		return false;
	if (opt->flags & NN_OPTION_MAX_OPEN ? v >= opt->max : v > opt->max)
		return false;
	return opt->type != NN_VAL_INT && opt->type != NN_VAL_PAIR &&
		opt->type != NN_VAL_SHAPE && opt->type != NN_VAL_CHOICE ? true :
		v == floor(v);
}

/* "a number in [0, 1)" and the like, from a float option's range. */
static void
describe_float(char *buf, size_t len, const nn_option *opt)
{
	bool		lo = opt->min > -FLT_MAX,
				hi = opt->max < FLT_MAX;

	if (lo && !hi && opt->min == 0)
		snprintf(buf, len, "a %s number",
				 opt->flags & NN_OPTION_MIN_OPEN ? "positive" : "non-negative");
	else if (lo && hi)
		snprintf(buf, len, "a number in %c%g, %g%c",
				 opt->flags & NN_OPTION_MIN_OPEN ? '(' : '[', opt->min, opt->max,
				 opt->flags & NN_OPTION_MAX_OPEN ? ')' : ']');
	else
		snprintf(buf, len, "a finite number");
}

/* "\"a\", \"b\" or \"c\"": the names of a choice. */
static void
describe_choice(char *buf, size_t len, const nn_option *opt)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (int32_t i = 0; opt->names[i] && used < len; i++)
		used += (size_t) snprintf(buf + used, len - used, "%s\"%s\"",
								  i == 0 ? "" : opt->names[i + 1] ? ", " : " or ",
								  opt->names[i]);
}

/*
 * "a number in [0, 1] or an array [lower, upper] of numbers in [-1, 1],
 * lower <= upper": a single number f stands for [-f, f].
 */
static void
describe_range(char *buf, size_t len, const nn_option *opt)
{
	double		f = fmin(-opt->min, opt->max);
	char		one[48],
				each[48];

	if (f >= FLT_MAX)
		snprintf(one, sizeof(one), "a non-negative number");
	else
		snprintf(one, sizeof(one), "a number in [0, %g]", f);
	if (opt->min <= -FLT_MAX && opt->max >= FLT_MAX)
		snprintf(each, sizeof(each), "finite numbers");
	else if (opt->max >= FLT_MAX)
		snprintf(each, sizeof(each), "numbers >= %g", opt->min);
	else
		snprintf(each, sizeof(each), "numbers in [%g, %g]", opt->min, opt->max);
	snprintf(buf, len, "%s or an array [lower, upper] of %s, lower <= upper",
			 one, each);
}

void
nn_option_describe(char *buf, size_t len, const nn_option *opt)
{
	bool		positive = opt->min == 1 && opt->max == INT32_MAX;

	switch (opt->type)
	{
		case NN_VAL_INT:
			if (positive)
				snprintf(buf, len, "a positive integer");
			else
				snprintf(buf, len, "an integer in [%g, %g]", opt->min, opt->max);
			break;
		case NN_VAL_FLOAT:
			describe_float(buf, len, opt);
			break;
		case NN_VAL_BOOL:
			snprintf(buf, len, "a boolean");
			break;
		case NN_VAL_ACTIVATION:
			snprintf(buf, len, "an activation");
			break;
		case NN_VAL_PAIR:
			snprintf(buf, len, "a positive integer or an array of two positive integers");
			break;
		case NN_VAL_SHAPE:
			snprintf(buf, len, "an array of 1 to %d positive integers",
					 NN_MAX_RANK);
			break;
		case NN_VAL_PADDING:
			snprintf(buf, len, "\"valid\" or \"same\"");
			break;
		case NN_VAL_CHOICE:
			describe_choice(buf, len, opt);
			break;
		case NN_VAL_RANGE:
			describe_range(buf, len, opt);
			break;
	}
}

bool
nn_option_applies(const nn_layer_spec *spec, const nn_option *opt)
{
	return !(opt->flags & NN_OPTION_SLOPE) ||
		nn_activation_has_alpha(spec->activation);
}

/* Every option unset, then the kind's defaults. */
void
nn_layer_spec_init(nn_layer_spec *spec, nn_layer_kind kind)
{
	const nn_layer_type *t = nn_layer_type_of(kind);

	memset(spec, 0, sizeof(*spec));
	for (int i = 0; i < NN_OPTION_COUNT; i++)
		nn_option_set(spec, &nn_options[i], nn_options[i].unset);
	spec->kind = kind;
	for (int32_t i = 0; t && i < t->n_options; i++)
		nn_option_set(spec, t->options[i].option, t->options[i].def);
}

/* ---------- checks and shapes ---------- */

/* Does an option hold the value it has in kinds that do not take it? */
bool
nn_option_is_unset(const nn_layer_spec *spec, const nn_option *opt)
{
	const int32_t *v = nn_option_ints((nn_layer_spec *) spec, opt);

	switch (opt->type)
	{
		case NN_VAL_PAIR:
			return v[0] == opt->unset && v[1] == opt->unset;
		case NN_VAL_SHAPE:
			for (int i = 0; i < NN_MAX_RANK; i++)
				if (v[i] != opt->unset)
					return false;
			return nn_option_get(spec, opt) == opt->unset;
		case NN_VAL_FLOAT:
			return (float) nn_option_get(spec, opt) == (float) opt->unset;
		case NN_VAL_RANGE:
			{
				const float *f = nn_option_floats((nn_layer_spec *) spec, opt);

				return f[0] == (float) opt->unset && f[1] == (float) opt->unset;
			}
		default:
			return nn_option_get(spec, opt) == opt->unset;
	}
}

/* Range of every value of an option the layer takes. */
static nn_status
check_value(const nn_layer *l, const nn_kind_option *ko, nn_error *err)
{
	const nn_option *o = ko->option;
	const char *name = nn_kind_option_name(ko);
	int32_t    *v = nn_option_ints((nn_layer_spec *) &l->spec, o);
	double		x = nn_option_get(&l->spec, o);
	char		what[160];

	nn_option_describe(what, sizeof(what), o);
	switch (o->type)
	{
		case NN_VAL_PAIR:
			for (int i = 0; i < 2; i++)
				if (!nn_option_in_range(o, v[i]))
					return NN_LAYER_FAIL(l, err, "\"%s\" must be %s, not %d",
										 name, what, v[i]);
			return NN_OK;
		case NN_VAL_SHAPE:
			if (x < 1 || x > NN_MAX_RANK)
				return NN_LAYER_FAIL(l, err, "\"%s\" must have 1 to %d dimensions",
									 name, NN_MAX_RANK);
			for (int i = 0; i < (int) x; i++)
				if (!nn_option_in_range(o, v[i]))
					return NN_LAYER_FAIL(l, err, "\"%s\" dimensions must be positive",
										 name);
			return NN_OK;
		case NN_VAL_ACTIVATION:
			if (!nn_option_in_range(o, x))
				return NN_LAYER_FAIL(l, err, "unrecognized %s %d", name, (int) x);
			return NN_OK;
		case NN_VAL_RANGE:
			{
				const float *f = nn_option_floats((nn_layer_spec *) &l->spec, o);

				/* absent: only where the kind has no default */
				if (nn_option_absent(&l->spec, o) && isnan(ko->def))
					return NN_OK;
				if (!nn_option_in_range(o, f[0]) ||
					!nn_option_in_range(o, f[1]) || f[0] > f[1])
					return NN_LAYER_FAIL(l, err, "\"%s\" must be %s, not [%g, %g]",
										 name, what, f[0], f[1]);
				return NN_OK;
			}
		default:
			if (!nn_option_in_range(o, x))
				return NN_LAYER_FAIL(l, err, "\"%s\" must be %s, not %g",
									 name, what, x);
			return NN_OK;
	}
}

/* The options a layer takes are in range; the others are unset. */
static nn_status
check_options(const nn_layer *l, nn_error *err)
{
	for (int i = 0; i < NN_OPTION_COUNT; i++)
	{
		const nn_option *o = &nn_options[i];
		const nn_kind_option *ko = nn_layer_takes(l->type, o);
		nn_status	st;

		if (ko == NULL && !nn_option_is_unset(&l->spec, o))
			return NN_LAYER_FAIL(l, err, "\"%s\" is not an option of this layer",
								 o->name);
		if (ko && nn_option_applies(&l->spec, o) &&
			(st = check_value(l, ko, err)) != NN_OK)
			return st;
	}
	return NN_OK;
}

/* Values in a shape, 0 when the product overflows. */
static size_t
shape_size(int32_t rank, const int32_t *shape)
{
	size_t		n = 1;

	for (int i = 0; i < rank; i++)
		if (!nn_size_mul(&n, n, (size_t) shape[i]))
			return 0;
	return n;
}

/*
 * Validate a layer's options against its input shape (already set in l)
 * and compute its output shape and tensor lengths.  Messages name the
 * layer (1-based), its kind and the option.
 */
nn_status
nn_layer_infer(nn_layer *l, int index, nn_error *err)
{
	nn_status	st;

	l->index = index;
	l->type = nn_layer_type_of(l->spec.kind);
	if (l->type == NULL)
		return nn_fail(err, NN_ERR_SPEC, index,
					   "layer %d: unrecognized layer type %d", index + 1,
					   (int) l->spec.kind);
	if (l->type->resolve)
		l->type->resolve(&l->spec);
	if ((st = check_options(l, err)) != NN_OK)
		return st;
	l->in_size = shape_size(l->in_rank, l->in_shape);
	if (l->in_size == 0)
		return NN_LAYER_FAIL(l, err, "input size overflows");
	l->out_rank = l->in_rank;
	memcpy(l->out_shape, l->in_shape, sizeof(l->out_shape));
	l->w_off = l->b_off = l->s_off = l->r_off = -1;
	l->w_len = l->b_len = l->r_len = 0;
	if (l->type->infer && (st = l->type->infer(l, err)) != NN_OK)
		return st;
	l->out_size = shape_size(l->out_rank, l->out_shape);
	if (l->out_size == 0)
		return NN_LAYER_FAIL(l, err, "output size overflows");
	return NN_OK;
}

/* ---------- dispatch ---------- */

/* Initial weights of a layer that has any. */
bool
nn_layer_init_params(nn_model *m, nn_layer *l, nn_rng *rng)
{
	if (l->w_len <= 0 || l->type->init == NULL)
		return true;
	return l->type->init(m, l, rng);
}

bool
nn_layer_is_identity(const nn_layer *l, nn_pass pass)
{
	if (l->type->flags & NN_KIND_RELABEL)
		return true;
	return l->type->identity && l->type->identity(l, pass);
}

/*
 * Forward one layer over n rows: reads l->x, sets l->y and records the pass
 * for the backward.  Identity layers (flatten, reshape, dropout outside
 * training or at rate 0) pass their input on.
 */
nn_status
nn_layer_forward(nn_model *m, nn_layer *l, int32_t n, nn_pass pass,
				 nn_rng *rng, nn_error *err)
{
	l->pass = pass;
	if (nn_layer_is_identity(l, pass))
	{
		l->y = (float *) l->x;
		return NN_OK;
	}
	l->y = l->ybuf;
	return l->type->forward(m, l, n, pass, rng, err);
}

/* dz = dy * f'(.) in place over n rows, split over threads. */
static void
act_backward_rows(const nn_layer *l, float *dy, int32_t n)
{
	size_t		k = l->out_shape[l->out_rank - 1];
	size_t		rows_per = l->out_size / k;

#pragma omp parallel if (nn_par((double) n * l->out_size, n))
	{
		int32_t		r0,
					r1;

		nn_thread_rows(n, &r0, &r1);
		if (r1 > r0)
		{
			size_t		off = (size_t) r0 * l->out_size;

			nn_act_backward(l->spec.activation, l->spec.alpha, dy + off,
							dy + off, l->y + off, rows_per * (r1 - r0), k);
		}
	}
}

/*
 * Backward one layer over n rows, after its TRAIN or DIFF forward.  dy
 * (n, out_size) is the gradient of the loss (or of whatever is being
 * differentiated) w.r.t. the layer output, or, when fused (the last layer
 * with its activation folded into the loss), w.r.t. its pre-activation; it
 * may be modified.  Fills dx (n, in_size) unless dx is NULL, and after a
 * TRAIN forward the parameter gradients in m->grads.  Identity layers are
 * handled by the caller.
 */
void
nn_layer_backward(nn_model *m, nn_layer *l, float *dx, float *dy, int32_t n,
				  bool fused)
{
	if (nn_layer_out_activation(l) != NN_ACT_LINEAR && !fused)
		act_backward_rows(l, dy, n);
	l->type->backward(m, l, dx, dy, n);
}

void
nn_layer_buffers_of(const nn_layer *l, nn_pass pass, nn_layer_buffers *b)
{
	memset(b, 0, sizeof(*b));
	if (l->type->buffers)
		l->type->buffers(l, pass, b);
}

nn_activation
nn_layer_out_activation(const nn_layer *l)
{
	return l->type->flags & NN_KIND_ACTIVATES ? l->spec.activation :
		NN_ACT_LINEAR;
}

int64_t
nn_layer_keras_params(const nn_layer *l)
{
	if (l->type->keras_params)
		return l->type->keras_params(l);
	return l->w_len + l->r_len + l->b_len;
}

bool
nn_layer_has_state(nn_layer_kind kind)
{
	const nn_layer_type *t = nn_layer_type_of(kind);

	return t && (t->flags & NN_KIND_STATE);
}
