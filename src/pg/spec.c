/*
 * spec.c: the layers jsonb of nn_create <-> the core's nn_model_spec.
 *
 * Each layer object has a "type" and options.  A layer starts from Keras's
 * defaults (nn_layer_spec_init) and takes the options given; unrecognized
 * types and options, wrong JSON types and out-of-range values are errors
 * (22023) naming the 1-based layer, its type and the option.  Shapes are
 * checked by the core (nn_spec_check / nn_model_create), which names the
 * layer too.  nnpg_spec_to_json goes the other way for nn_import.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/numeric.h"

#include "nnpg.h"

/* Options, as bits, so each layer kind lists the ones it takes. */
#define OPT_UNITS		(1 << 0)
#define OPT_ACTIVATION	(1 << 1)
#define OPT_USE_BIAS	(1 << 2)
#define OPT_L1			(1 << 3)
#define OPT_L2			(1 << 4)
#define OPT_ALPHA		(1 << 5)
#define OPT_FILTERS		(1 << 6)
#define OPT_KERNEL_SIZE	(1 << 7)
#define OPT_STRIDES		(1 << 8)
#define OPT_PADDING		(1 << 9)
#define OPT_POOL_SIZE	(1 << 10)
#define OPT_SHAPE		(1 << 11)
#define OPT_RATE		(1 << 12)
#define OPT_SCALE		(1 << 13)
#define OPT_OFFSET		(1 << 14)
#define OPT_EPSILON		(1 << 15)
#define OPT_MOMENTUM	(1 << 16)
#define OPT_INPUT_DIM	(1 << 17)
#define OPT_OUTPUT_DIM	(1 << 18)
#define OPT_RECURRENT_ACTIVATION (1 << 19)
#define OPT_RETURN_SEQUENCES (1 << 20)

typedef struct option_def
{
	const char *name;
	int			bit;
} option_def;

static const option_def option_defs[] = {
	{"units", OPT_UNITS},
	{"filters", OPT_FILTERS},
	{"kernel_size", OPT_KERNEL_SIZE},
	{"pool_size", OPT_POOL_SIZE},
	{"strides", OPT_STRIDES},
	{"padding", OPT_PADDING},
	{"activation", OPT_ACTIVATION},
	{"alpha", OPT_ALPHA},
	{"use_bias", OPT_USE_BIAS},
	{"l1", OPT_L1},
	{"l2", OPT_L2},
	{"shape", OPT_SHAPE},
	{"rate", OPT_RATE},
	{"scale", OPT_SCALE},
	{"offset", OPT_OFFSET},
	{"epsilon", OPT_EPSILON},
	{"momentum", OPT_MOMENTUM},
	{"input_dim", OPT_INPUT_DIM},
	{"output_dim", OPT_OUTPUT_DIM},
	{"recurrent_activation", OPT_RECURRENT_ACTIVATION},
	{"return_sequences", OPT_RETURN_SEQUENCES},
};

/* The options each layer kind accepts (index: nn_layer_kind). */
static int
kind_options(nn_layer_kind kind)
{
	switch (kind)
	{
		case NN_LAYER_DENSE:
			return OPT_UNITS | OPT_ACTIVATION | OPT_ALPHA | OPT_USE_BIAS |
				OPT_L1 | OPT_L2;
		case NN_LAYER_CONV2D:
			return OPT_FILTERS | OPT_KERNEL_SIZE | OPT_STRIDES | OPT_PADDING |
				OPT_ACTIVATION | OPT_ALPHA | OPT_USE_BIAS | OPT_L1 | OPT_L2;
		case NN_LAYER_MAXPOOL2D:
		case NN_LAYER_AVGPOOL2D:
			return OPT_POOL_SIZE | OPT_STRIDES | OPT_PADDING;
		case NN_LAYER_FLATTEN:
			return 0;
		case NN_LAYER_RESHAPE:
			return OPT_SHAPE;
		case NN_LAYER_DROPOUT:
			return OPT_RATE;
		case NN_LAYER_ACTIVATION:
			return OPT_ACTIVATION | OPT_ALPHA;
		case NN_LAYER_RESCALE:
			return OPT_SCALE | OPT_OFFSET;
		case NN_LAYER_NORMALIZE:
			return OPT_EPSILON;
		case NN_LAYER_BATCHNORM:
			return OPT_MOMENTUM | OPT_EPSILON;
		case NN_LAYER_EMBEDDING:
			return OPT_INPUT_DIM | OPT_OUTPUT_DIM;
		case NN_LAYER_GLOBAL_AVGPOOL:
		case NN_LAYER_GLOBAL_MAXPOOL:
			return 0;
		case NN_LAYER_SIMPLE_RNN:
			return OPT_UNITS | OPT_ACTIVATION | OPT_ALPHA | OPT_USE_BIAS |
				OPT_RETURN_SEQUENCES;
		case NN_LAYER_LSTM:
		case NN_LAYER_GRU:
			return OPT_UNITS | OPT_ACTIVATION | OPT_ALPHA | OPT_USE_BIAS |
				OPT_RECURRENT_ACTIVATION | OPT_RETURN_SEQUENCES;
	}
	elog(ERROR, "unrecognized layer kind: %d", (int) kind);
	return 0;
}

/* Options that must be given. */
static int
kind_required(nn_layer_kind kind)
{
	switch (kind)
	{
		case NN_LAYER_DENSE:
			return OPT_UNITS;
		case NN_LAYER_CONV2D:
			return OPT_FILTERS | OPT_KERNEL_SIZE;
		case NN_LAYER_RESHAPE:
			return OPT_SHAPE;
		case NN_LAYER_ACTIVATION:
			return OPT_ACTIVATION;
		case NN_LAYER_EMBEDDING:
			return OPT_INPUT_DIM | OPT_OUTPUT_DIM;
		case NN_LAYER_SIMPLE_RNN:
		case NN_LAYER_LSTM:
		case NN_LAYER_GRU:
			return OPT_UNITS;
		default:
			return 0;
	}
}

/* "units, activation, ..." for a hint. */
static char *
option_list(int bits)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(option_defs); i++)
	{
		if (bits & option_defs[i].bit)
		{
			if (buf.len > 0)
				appendStringInfoString(&buf, ", ");
			appendStringInfoString(&buf, option_defs[i].name);
		}
	}
	return buf.data;
}

/* Where an error is: layer number (1-based) and type. */
typedef struct layer_ctx
{
	int			number;
	const char *type;
} layer_ctx;

static void bad_option(const layer_ctx *lc, const char *opt, const char *what) pg_attribute_noreturn();

/* `layer 3 (conv2d): "filters" must be a positive integer` */
static void
bad_option(const layer_ctx *lc, const char *opt, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("layer %d (%s): \"%s\" must be %s",
					lc->number, lc->type, opt, what)));
	pg_unreachable();
}

/* A jsonb number as a double; false for other JSON types. */
bool
nnpg_jsonb_number(JsonbValue *v, double *out)
{
	if (v->type != jbvNumeric)
		return false;
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v->val.numeric)));
	return true;
}

/* A whole number in [lo, hi]; false otherwise. */
static bool
json_int(JsonbValue *v, int64 lo, int64 hi, int32 *out)
{
	double		d;

	if (!nnpg_jsonb_number(v, &d))
		return false;
	if (!isfinite(d) || d != floor(d) || d < (double) lo || d > (double) hi)
		return false;
	*out = (int32) d;
	return true;
}

/* A finite number in float range; false otherwise. */
static bool
json_float(JsonbValue *v, float *out)
{
	double		d;

	if (!nnpg_jsonb_number(v, &d))
		return false;
	if (!isfinite(d) || fabs(d) > FLT_MAX)
		return false;
	*out = (float) d;
	return true;
}

/* An int or [h, w] of positive ints (kernel_size, strides, pool_size). */
static void
json_pair(const layer_ctx *lc, const char *opt, JsonbValue *v, int32 out[2])
{
	const char *what = "a positive integer or an array of two positive integers";

	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbContainer *arr = v->val.binary.data;

		if (JsonContainerSize(arr) != 2)
			bad_option(lc, opt, what);
		for (int i = 0; i < 2; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

			if (e == NULL || !json_int(e, 1, PG_INT32_MAX, &out[i]))
				bad_option(lc, opt, what);
		}
		return;
	}
	if (!json_int(v, 1, PG_INT32_MAX, &out[0]))
		bad_option(lc, opt, what);
	out[1] = out[0];
}

/* A string value as a C string; error otherwise. */
static char *
json_string(const layer_ctx *lc, const char *opt, JsonbValue *v)
{
	if (v->type != jbvString)
		bad_option(lc, opt, "a string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Apply one option to a layer spec. */
static void
apply_option(const layer_ctx *lc, nn_layer_spec *ls, int bit, const char *opt,
			 JsonbValue *v)
{
	switch (bit)
	{
		case OPT_UNITS:
			if (!json_int(v, 1, PG_INT32_MAX, &ls->units))
				bad_option(lc, opt, "a positive integer");
			break;
		case OPT_FILTERS:
			if (!json_int(v, 1, PG_INT32_MAX, &ls->filters))
				bad_option(lc, opt, "a positive integer");
			break;
		case OPT_KERNEL_SIZE:
		case OPT_POOL_SIZE:
			json_pair(lc, opt, v, ls->kernel);
			break;
		case OPT_STRIDES:
			json_pair(lc, opt, v, ls->strides);
			break;
		case OPT_PADDING:
			{
				char	   *s = json_string(lc, opt, v);

				if (strcmp(s, "valid") == 0)
					ls->same_padding = false;
				else if (strcmp(s, "same") == 0)
					ls->same_padding = true;
				else
					bad_option(lc, opt, "\"valid\" or \"same\"");
				break;
			}
		case OPT_ACTIVATION:
		case OPT_RECURRENT_ACTIVATION:
			{
				char	   *s = json_string(lc, opt, v);
				nn_activation act;

				if (nn_activation_from_name(s, &act) != 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("layer %d (%s): unrecognized activation \"%s\"",
									lc->number, lc->type, s),
							 errhint("Activations are linear, relu, leaky_relu, elu, sigmoid, tanh and softmax.")));
				if (bit == OPT_ACTIVATION)
					ls->activation = act;
				else
					ls->recurrent_activation = act;
				break;
			}
		case OPT_MOMENTUM:
			{
				double		d;

				if (!nnpg_jsonb_number(v, &d) || !(d >= 0 && d <= 1))
					bad_option(lc, opt, "a number in [0, 1]");
				ls->momentum = (float) d;
				break;
			}
		case OPT_INPUT_DIM:
			if (!json_int(v, 1, PG_INT32_MAX, &ls->input_dim))
				bad_option(lc, opt, "a positive integer");
			break;
		case OPT_OUTPUT_DIM:
			if (!json_int(v, 1, PG_INT32_MAX, &ls->output_dim))
				bad_option(lc, opt, "a positive integer");
			break;
		case OPT_RETURN_SEQUENCES:
			if (v->type != jbvBool)
				bad_option(lc, opt, "a boolean");
			ls->return_sequences = v->val.boolean;
			break;
		case OPT_ALPHA:
			if (!json_float(v, &ls->alpha) || ls->alpha < 0)
				bad_option(lc, opt, "a non-negative number");
			break;
		case OPT_USE_BIAS:
			if (v->type != jbvBool)
				bad_option(lc, opt, "a boolean");
			ls->use_bias = v->val.boolean;
			break;
		case OPT_L1:
			if (!json_float(v, &ls->l1) || ls->l1 < 0)
				bad_option(lc, opt, "a non-negative number");
			break;
		case OPT_L2:
			if (!json_float(v, &ls->l2) || ls->l2 < 0)
				bad_option(lc, opt, "a non-negative number");
			break;
		case OPT_SHAPE:
			{
				const char *what = "an array of 1 to 3 positive integers";
				JsonbContainer *arr;
				int			n;

				if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
					bad_option(lc, opt, what);
				arr = v->val.binary.data;
				n = JsonContainerSize(arr);
				if (n < 1 || n > NN_MAX_RANK)
					bad_option(lc, opt, what);
				for (int i = 0; i < n; i++)
				{
					JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

					if (e == NULL || !json_int(e, 1, PG_INT32_MAX, &ls->shape[i]))
						bad_option(lc, opt, what);
				}
				ls->shape_rank = n;
				break;
			}
		case OPT_RATE:
			{
				double		d;

				if (!nnpg_jsonb_number(v, &d) || !(d >= 0 && d < 1))
					bad_option(lc, opt, "a number in [0, 1)");
				ls->rate = (float) d;
				break;
			}
		case OPT_SCALE:
			if (!json_float(v, &ls->scale))
				bad_option(lc, opt, "a finite number");
			break;
		case OPT_OFFSET:
			if (!json_float(v, &ls->offset))
				bad_option(lc, opt, "a finite number");
			break;
		case OPT_EPSILON:
			if (!json_float(v, &ls->epsilon) || !(ls->epsilon > 0))
				bad_option(lc, opt, "a positive number");
			break;
		default:
			elog(ERROR, "unrecognized layer option bit: %d", bit);
	}
}

/* Parse one layer object (1-based number) into ls. */
static void
parse_layer(int number, JsonbValue *elem, nn_layer_spec *ls)
{
	JsonbContainer *obj;
	JsonbValue	tv;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	layer_ctx	lc;
	nn_layer_kind kind;
	int			allowed;
	int			given = 0;
	char	   *type;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d must be a JSON object", number)));
	obj = elem->val.binary.data;

	if (getKeyJsonValueFromContainer(obj, "type", 4, &tv) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d has no \"type\"", number)));
	if (tv.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d: \"type\" must be a string", number)));
	type = pnstrdup(tv.val.string.val, tv.val.string.len);
	if (nn_layer_kind_from_name(type, &kind) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d: unrecognized layer type \"%s\"", number, type),
				 errhint("Layer types are dense, conv2d, maxpool2d, avgpool2d, flatten, reshape, dropout, activation, rescale, normalize, batchnorm, embedding, global_avgpool, global_maxpool, simple_rnn, lstm and gru.")));

	lc.number = number;
	lc.type = type;
	nn_layer_spec_init(ls, kind);
	allowed = kind_options(kind);

	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		int			bit = 0;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (tok != WJB_VALUE)
			elog(ERROR, "unexpected jsonb token: %d", (int) tok);
		key = pnstrdup(k.val.string.val, k.val.string.len);
		if (strcmp(key, "type") == 0)
			continue;
		for (int i = 0; i < lengthof(option_defs); i++)
		{
			if (strcmp(key, option_defs[i].name) == 0)
			{
				bit = option_defs[i].bit;
				break;
			}
		}
		if (bit == 0 || (allowed & bit) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("layer %d (%s): unrecognized option \"%s\"",
							number, type, key),
					 allowed ? errhint("Options of %s layers: %s.", type,
									   option_list(allowed)) :
					 errhint("%s layers take no options.", type)));
		apply_option(&lc, ls, bit, key, &v);
		given |= bit;
	}

	if ((kind_required(kind) & ~given) != 0)
	{
		int			missing = kind_required(kind) & ~given;

		for (int i = 0; i < lengthof(option_defs); i++)
		{
			if (missing & option_defs[i].bit)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("layer %d (%s): \"%s\" is required",
								number, type, option_defs[i].name)));
		}
	}

	/* pools stride by their size unless told otherwise, as Keras */
	if ((kind == NN_LAYER_MAXPOOL2D || kind == NN_LAYER_AVGPOOL2D) &&
		!(given & OPT_STRIDES))
	{
		ls->strides[0] = ls->kernel[0];
		ls->strides[1] = ls->kernel[1];
	}

	/* the slope belongs to the activation: Keras's defaults, or an error */
	if (given & OPT_ALPHA)
	{
		if (ls->activation != NN_ACT_LEAKY_RELU && ls->activation != NN_ACT_ELU)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("layer %d (%s): \"alpha\" applies only to the leaky_relu and elu activations",
							number, type)));
	}
	else if (ls->activation == NN_ACT_LEAKY_RELU)
		ls->alpha = 0.3f;
	else if (ls->activation == NN_ACT_ELU)
		ls->alpha = 1.0f;
}

/* Parse the layers array of nn_create. */
void
nnpg_parse_layers(Jsonb *layers, nn_model_spec *spec)
{
	int			n;

	if (JB_ROOT_IS_SCALAR(layers) || !JB_ROOT_IS_ARRAY(layers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layers must be a JSON array of layer objects")));
	n = JB_ROOT_COUNT(layers);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a model needs at least one layer")));
	if (n > NN_MAX_LAYERS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a model can have at most %d layers, not %d",
						NN_MAX_LAYERS, n)));

	memset(spec, 0, sizeof(*spec));
	spec->n_layers = n;
	spec->layers = palloc0(sizeof(nn_layer_spec) * n);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&layers->root, i);

		if (elem == NULL)
			elog(ERROR, "missing array element %d", i);
		parse_layer(i + 1, elem, &spec->layers[i]);
	}
}

/* input_shape of nn_create: 1..3 positive sizes. */
void
nnpg_parse_input_shape(ArrayType *shape, nn_model_spec *spec)
{
	int			n;
	int32	   *dims;

	if (ARR_ELEMTYPE(shape) != INT4OID)
		elog(ERROR, "unexpected input_shape element type: %u",
			 ARR_ELEMTYPE(shape));
	n = ArrayGetNItems(ARR_NDIM(shape), ARR_DIMS(shape));
	if (ARR_NDIM(shape) != 1 || ARR_HASNULL(shape) || n < 1 || n > NN_MAX_RANK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("input_shape must be an array of 1 to %d positive sizes",
						NN_MAX_RANK)));
	dims = (int32 *) ARR_DATA_PTR(shape);
	for (int i = 0; i < n; i++)
	{
		if (dims[i] < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("input_shape must be an array of 1 to %d positive sizes",
							NN_MAX_RANK),
					 errdetail("Size %d is %d.", i + 1, dims[i])));
		spec->input_shape[i] = dims[i];
	}
	spec->input_rank = n;
}

/* Append a float in its shortest exact form. */
static void
append_float(StringInfo buf, float f)
{
	char		s[FLOAT_SHORTEST_DECIMAL_LEN + 1];

	float_to_shortest_decimal_buf(f, s);
	appendStringInfoString(buf, s);
}

/* Append a double as a JSON number (shortest exact form), or null. */
void
nnpg_json_number(StringInfo buf, double value)
{
	char		s[DOUBLE_SHORTEST_DECIMAL_LEN + 1];

	if (!isfinite(value))
	{
		appendStringInfoString(buf, "null");
		return;
	}
	double_to_shortest_decimal_buf(value, s);
	appendStringInfoString(buf, s);
}

/* Append a float as a JSON number (shortest exact form), or null. */
void
nnpg_json_float(StringInfo buf, float value)
{
	if (!isfinite(value))
	{
		appendStringInfoString(buf, "null");
		return;
	}
	append_float(buf, value);
}

/* [h, w] */
static void
append_pair(StringInfo buf, const char *key, const int32 v[2])
{
	appendStringInfo(buf, ", \"%s\": [%d, %d]", key, v[0], v[1]);
}

/* activation and its slope */
static void
append_activation(StringInfo buf, const nn_layer_spec *ls)
{
	appendStringInfoString(buf, ", \"activation\": ");
	escape_json(buf, nn_activation_name(ls->activation));
	if (ls->activation == NN_ACT_LEAKY_RELU || ls->activation == NN_ACT_ELU)
	{
		appendStringInfoString(buf, ", \"alpha\": ");
		append_float(buf, ls->alpha);
	}
}

/* kernel penalties, when set */
static void
append_penalties(StringInfo buf, const nn_layer_spec *ls)
{
	appendStringInfo(buf, ", \"use_bias\": %s", ls->use_bias ? "true" : "false");
	if (ls->l1 != 0)
	{
		appendStringInfoString(buf, ", \"l1\": ");
		append_float(buf, ls->l1);
	}
	if (ls->l2 != 0)
	{
		appendStringInfoString(buf, ", \"l2\": ");
		append_float(buf, ls->l2);
	}
}

/* The layers of a spec in the form nn_create accepts. */
char *
nnpg_spec_to_json(const nn_model_spec *spec)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < spec->n_layers; i++)
	{
		const nn_layer_spec *ls = &spec->layers[i];

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"type\": ");
		escape_json(&buf, nn_layer_kind_name(ls->kind));
		switch (ls->kind)
		{
			case NN_LAYER_DENSE:
				appendStringInfo(&buf, ", \"units\": %d", ls->units);
				append_activation(&buf, ls);
				append_penalties(&buf, ls);
				break;
			case NN_LAYER_CONV2D:
				appendStringInfo(&buf, ", \"filters\": %d", ls->filters);
				append_pair(&buf, "kernel_size", ls->kernel);
				append_pair(&buf, "strides", ls->strides);
				appendStringInfo(&buf, ", \"padding\": \"%s\"",
								 ls->same_padding ? "same" : "valid");
				append_activation(&buf, ls);
				append_penalties(&buf, ls);
				break;
			case NN_LAYER_MAXPOOL2D:
			case NN_LAYER_AVGPOOL2D:
				append_pair(&buf, "pool_size", ls->kernel);
				append_pair(&buf, "strides", ls->strides);
				appendStringInfo(&buf, ", \"padding\": \"%s\"",
								 ls->same_padding ? "same" : "valid");
				break;
			case NN_LAYER_FLATTEN:
				break;
			case NN_LAYER_RESHAPE:
				appendStringInfoString(&buf, ", \"shape\": ");
				appendStringInfoString(&buf,
									   nnpg_shape_to_json(ls->shape_rank, ls->shape));
				break;
			case NN_LAYER_DROPOUT:
				appendStringInfoString(&buf, ", \"rate\": ");
				append_float(&buf, ls->rate);
				break;
			case NN_LAYER_ACTIVATION:
				append_activation(&buf, ls);
				break;
			case NN_LAYER_RESCALE:
				appendStringInfoString(&buf, ", \"scale\": ");
				append_float(&buf, ls->scale);
				appendStringInfoString(&buf, ", \"offset\": ");
				append_float(&buf, ls->offset);
				break;
			case NN_LAYER_NORMALIZE:
				appendStringInfoString(&buf, ", \"epsilon\": ");
				append_float(&buf, ls->epsilon);
				break;
			case NN_LAYER_BATCHNORM:
				appendStringInfoString(&buf, ", \"momentum\": ");
				append_float(&buf, ls->momentum);
				appendStringInfoString(&buf, ", \"epsilon\": ");
				append_float(&buf, ls->epsilon);
				break;
			case NN_LAYER_EMBEDDING:
				appendStringInfo(&buf, ", \"input_dim\": %d, \"output_dim\": %d",
								 ls->input_dim, ls->output_dim);
				break;
			case NN_LAYER_GLOBAL_AVGPOOL:
			case NN_LAYER_GLOBAL_MAXPOOL:
				break;
			case NN_LAYER_SIMPLE_RNN:
			case NN_LAYER_LSTM:
			case NN_LAYER_GRU:
				appendStringInfo(&buf, ", \"units\": %d", ls->units);
				append_activation(&buf, ls);
				if (ls->kind != NN_LAYER_SIMPLE_RNN)
				{
					appendStringInfoString(&buf, ", \"recurrent_activation\": ");
					escape_json(&buf, nn_activation_name(ls->recurrent_activation));
				}
				appendStringInfo(&buf, ", \"use_bias\": %s, \"return_sequences\": %s",
								 ls->use_bias ? "true" : "false",
								 ls->return_sequences ? "true" : "false");
				break;
			default:
				elog(ERROR, "unrecognized layer kind: %d", (int) ls->kind);
		}
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* [28, 28, 1] */
char *
nnpg_shape_to_json(int rank, const int32 *shape)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < rank; i++)
		appendStringInfo(&buf, "%s%d", i > 0 ? ", " : "", shape[i]);
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* JSON text to a jsonb datum. */
Datum
nnpg_jsonb_from_cstring(const char *json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}
