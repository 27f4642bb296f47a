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

/* Is the option one the user may give (not kept by the core itself)? */
static bool
user_option(const nn_kind_option *ko)
{
	return !(ko->option->flags & NN_OPTION_INTERNAL);
}

/* "units, activation, ..." for a hint; empty when the kind takes none. */
static char *
option_list(const nn_kind_option *opts, int32 n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int32 i = 0; i < n; i++)
	{
		if (!user_option(&opts[i]))
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, nn_kind_option_name(&opts[i]));
	}
	return buf.data;
}

/* "dense, conv2d, ... and gru" for a hint. */
static char *
kind_list(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int k = 1; k <= NN_LAYER_KIND_MAX; k++)
		appendStringInfo(&buf, "%s%s", k == 1 ? "" :
						 k == NN_LAYER_KIND_MAX ? " and " : ", ",
						 nn_layer_kind_name((nn_layer_kind) k));
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
json_int(JsonbValue *v, double lo, double hi, int32 *out)
{
	double		d;

	if (!nnpg_jsonb_number(v, &d))
		return false;
	if (!isfinite(d) || d != floor(d) || d < lo || d > hi)
		return false;
	*out = (int32) d;
	return true;
}

/* An int or [h, w] of ints in the option's range (kernel_size, strides). */
static bool
json_pair(const nn_option *o, JsonbValue *v, int32 out[2])
{
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbContainer *arr = v->val.binary.data;

		if (JsonContainerSize(arr) != 2)
			return false;
		for (int i = 0; i < 2; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

			if (e == NULL || !json_int(e, o->min, o->max, &out[i]))
				return false;
		}
		return true;
	}
	if (!json_int(v, o->min, o->max, &out[0]))
		return false;
	out[1] = out[0];
	return true;
}

/* An array of 1 to NN_MAX_RANK ints in the option's range (shape). */
static bool
json_shape(const nn_option *o, JsonbValue *v, nn_layer_spec *ls)
{
	JsonbContainer *arr;
	int			n;
	int32	   *dims = nn_option_ints(ls, o);

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		return false;
	arr = v->val.binary.data;
	n = JsonContainerSize(arr);
	if (n < 1 || n > NN_MAX_RANK)
		return false;
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

		if (e == NULL || !json_int(e, o->min, o->max, &dims[i]))
			return false;
	}
	nn_option_set(ls, o, n);
	return true;
}

/* A number that is in the option's range as a float. */
static bool
json_float(const nn_option *o, JsonbValue *v, double *out)
{
	double		d;

	if (!nnpg_jsonb_number(v, &d) || !isfinite(d) || fabs(d) > FLT_MAX ||
		!nn_option_in_range(o, (float) d))
		return false;
	*out = d;
	return true;
}

/*
 * A range: a number f >= 0 for [-f, f], or an array [lower, upper]; each
 * bound in the option's range as a float, lower <= upper.
 */
static bool
json_range(const nn_option *o, JsonbValue *v, float out[2])
{
	double		d[2];

	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbContainer *arr = v->val.binary.data;

		if (JsonContainerSize(arr) != 2)
			return false;
		for (int i = 0; i < 2; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(arr, i);

			if (e == NULL || !json_float(o, e, &d[i]))
				return false;
		}
	}
	else
	{
		if (!json_float(o, v, &d[1]) || d[1] < 0)
			return false;
		d[0] = -d[1];
		if (!nn_option_in_range(o, (float) d[0]))
			return false;
	}
	if ((float) d[0] > (float) d[1])
		return false;
	/* [0, 0] rather than [-0, 0] */
	out[0] = d[0] == 0 ? 0.0f : (float) d[0];
	out[1] = d[1] == 0 ? 0.0f : (float) d[1];
	return true;
}

/* A string value as a C string; error otherwise. */
static char *
json_string(const layer_ctx *lc, const char *opt, JsonbValue *v)
{
	if (v->type != jbvString)
		bad_option(lc, opt, "a string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* An activation name. */
static nn_activation
json_activation(const layer_ctx *lc, const char *opt, JsonbValue *v)
{
	char	   *s = json_string(lc, opt, v);
	nn_activation act;

	if (nn_activation_from_name(s, &act) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d (%s): unrecognized activation \"%s\"",
						lc->number, lc->type, s),
				 errhint("Activations are linear, relu, leaky_relu, elu, sigmoid, tanh and softmax.")));
	return act;
}

/* Apply one option, of a type and range its row gives, to a layer spec. */
static void
apply_option(const layer_ctx *lc, nn_layer_spec *ls, const nn_option *o,
			 const char *key, JsonbValue *v)
{
	char		what[160];
	int32		x;
	double		d;
	bool		ok = true;

	nn_option_describe(what, sizeof(what), o);
	switch (o->type)
	{
		case NN_VAL_INT:
			if ((ok = json_int(v, o->min, o->max, &x)))
				nn_option_set(ls, o, x);
			break;
		case NN_VAL_FLOAT:
			if ((ok = json_float(o, v, &d)))
				nn_option_set(ls, o, d);
			break;
		case NN_VAL_BOOL:
			if ((ok = v->type == jbvBool))
				nn_option_set(ls, o, v->val.boolean);
			break;
		case NN_VAL_ACTIVATION:
			nn_option_set(ls, o, json_activation(lc, key, v));
			break;
		case NN_VAL_PAIR:
			ok = json_pair(o, v, nn_option_ints(ls, o));
			break;
		case NN_VAL_SHAPE:
			ok = json_shape(o, v, ls);
			break;
		case NN_VAL_PADDING:
			{
				char	   *s = json_string(lc, key, v);

				ok = strcmp(s, "valid") == 0 || strcmp(s, "same") == 0;
				nn_option_set(ls, o, strcmp(s, "same") == 0);
				break;
			}
		case NN_VAL_CHOICE:
			{
				int32		i = nn_option_choice_index(o, json_string(lc, key, v));

				if ((ok = i >= 0))
					nn_option_set(ls, o, i);
				break;
			}
		case NN_VAL_RANGE:
			ok = json_range(o, v, nn_option_floats(ls, o));
			break;
	}
	if (!ok)
		bad_option(lc, key, what);
}

/* The kind's entry for a JSON key, or NULL. */
static int
find_option(const nn_kind_option *opts, int32 n, const char *key)
{
	for (int32 i = 0; i < n; i++)
		if (user_option(&opts[i]) &&
			strcmp(nn_kind_option_name(&opts[i]), key) == 0)
			return i;
	return -1;
}

/* The layer's "type" as a kind; errors name the layer. */
static nn_layer_kind
parse_type(int number, JsonbContainer *obj, char **type)
{
	JsonbValue	tv;
	nn_layer_kind kind;

	if (getKeyJsonValueFromContainer(obj, "type", 4, &tv) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d has no \"type\"", number)));
	if (tv.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d: \"type\" must be a string", number)));
	*type = pnstrdup(tv.val.string.val, tv.val.string.len);
	if (nn_layer_kind_from_name(*type, &kind) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d: unrecognized layer type \"%s\"", number, *type),
				 errhint("Layer types are %s.", kind_list())));
	return kind;
}

/* The slope belongs to the activation: Keras's defaults, or an error. */
static void
resolve_alpha(const layer_ctx *lc, nn_layer_spec *ls, bool given)
{
	if (given)
	{
		if (!nn_activation_has_alpha(ls->activation))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("layer %d (%s): \"alpha\" applies only to the leaky_relu and elu activations",
							lc->number, lc->type)));
	}
	else if (ls->activation == NN_ACT_LEAKY_RELU)
		ls->alpha = 0.3f;
	else if (ls->activation == NN_ACT_ELU)
		ls->alpha = 1.0f;
}

/* Parse one layer object (1-based number) into ls. */
static void
parse_layer(int number, JsonbValue *elem, nn_layer_spec *ls)
{
	JsonbContainer *obj;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	layer_ctx	lc;
	const nn_kind_option *opts;
	int32		n;
	uint64		given = 0;
	char	   *type;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layer %d must be a JSON object", number)));
	obj = elem->val.binary.data;
	nn_layer_spec_init(ls, parse_type(number, obj, &type));
	opts = nn_layer_kind_options(ls->kind, &n);
	lc.number = number;
	lc.type = type;

	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		int			i;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (tok != WJB_VALUE)
			elog(ERROR, "unexpected jsonb token: %d", (int) tok);
		key = pnstrdup(k.val.string.val, k.val.string.len);
		if (strcmp(key, "type") == 0)
			continue;
		if ((i = find_option(opts, n, key)) < 0)
		{
			char	   *list = option_list(opts, n);

			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("layer %d (%s): unrecognized option \"%s\"",
							number, type, key),
					 list[0] ? errhint("Options of %s layers: %s.", type, list) :
					 errhint("%s layers take no options.", type)));
		}
		apply_option(&lc, ls, opts[i].option, key, &v);
		given |= UINT64CONST(1) << i;
	}

	for (int32 i = 0; i < n; i++)
		if (opts[i].required && !(given & (UINT64CONST(1) << i)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("layer %d (%s): \"%s\" is required",
							number, type, nn_kind_option_name(&opts[i]))));
	for (int32 i = 0; i < n; i++)
		if (opts[i].option->flags & NN_OPTION_SLOPE)
			resolve_alpha(&lc, ls, (given & (UINT64CONST(1) << i)) != 0);
}

/* Parse the layers array of nn_create; an empty one only when allow_empty. */
void
nnpg_parse_layers(Jsonb *layers, nn_model_spec *spec, bool allow_empty)
{
	int			n;

	if (JB_ROOT_IS_SCALAR(layers) || !JB_ROOT_IS_ARRAY(layers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("layers must be a JSON array of layer objects")));
	n = JB_ROOT_COUNT(layers);
	if (n == 0 && !allow_empty)
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

/* The value of one option as JSON. */
static void
append_option(StringInfo buf, const nn_layer_spec *ls, const nn_option *o)
{
	double		x = nn_option_get(ls, o);
	const int32 *v = nn_option_ints((nn_layer_spec *) ls, o);

	switch (o->type)
	{
		case NN_VAL_INT:
			appendStringInfo(buf, "%d", (int32) x);
			break;
		case NN_VAL_FLOAT:
			append_float(buf, (float) x);
			break;
		case NN_VAL_BOOL:
			appendStringInfoString(buf, x != 0 ? "true" : "false");
			break;
		case NN_VAL_ACTIVATION:
			escape_json(buf, nn_activation_name((nn_activation) (int) x));
			break;
		case NN_VAL_PAIR:
			appendStringInfo(buf, "[%d, %d]", v[0], v[1]);
			break;
		case NN_VAL_SHAPE:
			appendStringInfoString(buf, nnpg_shape_to_json((int) x, v));
			break;
		case NN_VAL_PADDING:
			appendStringInfoString(buf, x != 0 ? "\"same\"" : "\"valid\"");
			break;
		case NN_VAL_CHOICE:
			{
				const char *name = nn_option_choice_name(o, (int32) x);

				if (name == NULL)
					elog(ERROR, "unrecognized \"%s\" value: %d", o->name, (int32) x);
				escape_json(buf, name);
				break;
			}
		case NN_VAL_RANGE:
			{
				const float *f = nn_option_floats((nn_layer_spec *) ls, o);

				appendStringInfoChar(buf, '[');
				append_float(buf, f[0]);
				appendStringInfoString(buf, ", ");
				append_float(buf, f[1]);
				appendStringInfoChar(buf, ']');
				break;
			}
	}
}

/* One layer in the form nn_create accepts: its type and every option it
 * takes that applies, but quiet ones at their default. */
static void
append_layer(StringInfo buf, const nn_layer_spec *ls)
{
	int32		n;
	const nn_kind_option *opts = nn_layer_kind_options(ls->kind, &n);

	if (strcmp(nn_layer_kind_name(ls->kind), "?") == 0)
		elog(ERROR, "unrecognized layer kind: %d", (int) ls->kind);
	appendStringInfoString(buf, "{\"type\": ");
	escape_json(buf, nn_layer_kind_name(ls->kind));
	for (int32 i = 0; i < n; i++)
	{
		const nn_option *o = opts[i].option;

		if (!user_option(&opts[i]) || !nn_option_applies(ls, o) ||
			nn_option_absent(ls, o) ||
			((o->flags & NN_OPTION_QUIET) && nn_option_get(ls, o) == opts[i].def))
			continue;
		appendStringInfoString(buf, ", ");
		escape_json(buf, nn_kind_option_name(&opts[i]));
		appendStringInfoString(buf, ": ");
		append_option(buf, ls, o);
	}
	appendStringInfoChar(buf, '}');
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
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		append_layer(&buf, &spec->layers[i]);
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
