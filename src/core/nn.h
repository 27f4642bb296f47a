/*
 * nn.h: public interface of the nnpg math core.
 *
 * The core is plain C99 over float32 with libm and CBLAS (OpenBLAS) only: no
 * PostgreSQL header, no globals, no I/O.  The PostgreSQL glue (src/pg/) and
 * the unit tests, fuzzers and benchmarks (test/) are its only callers.
 *
 * Layout: every tensor is batch-major and each sample is contiguous.  Images
 * are (H, W, C), channels last, as Keras; sequences (T, F), timesteps by
 * features (set by a reshape layer or the input shape); a flat vector is (N).  A batch of
 * inputs is therefore (B, in_size) floats, whatever the input rank.
 *
 * Errors: every fallible function returns an nn_status and fills an nn_error
 * with a message in PostgreSQL style (lowercase, no final period).  Nothing
 * here prints, asserts on user input, exits or aborts.
 *
 * Memory: all allocation goes through the caller's nn_alloc, so the glue can
 * bind it to a memory context; buffers are sized once per model and batch
 * size (nn_model_prepare), never per sample or batch.
 */
#ifndef NN_H
#define NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NN_MAX_RANK		3		/* (H, W, C) at most */
#define NN_MAX_LAYERS	256
#define NN_ERRMSG_LEN	256

typedef enum nn_status
{
	NN_OK = 0,
	NN_ERR_SPEC,				/* bad layer spec or option: 22023 */
	NN_ERR_DATA,				/* bad data (length, NaN, label): 22000 */
	NN_ERR_NUMERIC,				/* loss or gradient became NaN/Inf: 2200H-ish, 22000 class */
	NN_ERR_LIMIT,				/* over the byte budget or size overflow: 54000 */
	NN_ERR_MEMORY,				/* allocator returned NULL: 53200 */
	NN_ERR_CORRUPT,				/* bad model bytes: XX001 */
	NN_ERR_INTERNAL,			/* cannot happen */
	NN_ERR_UNSUPPORTED			/* valid, but not for this model or build:
								 * training an int8 model, an ONNX operator
								 * or opset nnpg has no layer for (0A000) */
} nn_status;

typedef struct nn_error
{
	nn_status	status;
	int			layer;			/* 0-based layer index, or -1 */
	int32_t		row;			/* 0-based row of the batch at fault, or -1
								 * (bad embedding ids): the caller knows
								 * which table row that is */
	char		message[NN_ERRMSG_LEN];
	char		detail[NN_ERRMSG_LEN];	/* full sentence, or empty */
} nn_error;

/* Allocation hooks: alloc returns NULL on failure; memory need not be zeroed. */
typedef struct nn_alloc
{
	void	   *(*alloc) (void *ctx, size_t size);
	void		(*free) (void *ctx, void *ptr);
	void	   *ctx;
} nn_alloc;

/* The default allocator: malloc/free (tests, fuzzers, benchmarks). */
extern const nn_alloc nn_malloc_alloc;

/* CRC-32C over bytes, chained: crc = fn(crc, data, len); start ~0, finish ~crc. */
typedef uint32_t (*nn_crc32c_fn) (uint32_t crc, const void *data, size_t len);

/* ---------- random numbers (xoshiro256**, seeded by splitmix64) ---------- */

typedef struct nn_rng
{
	uint64_t	s[4];
} nn_rng;

void		nn_rng_seed(nn_rng *rng, uint64_t seed);
uint64_t	nn_rng_next(nn_rng *rng);
float		nn_rng_uniform(nn_rng *rng);	/* [0, 1) */
uint64_t	nn_rng_below(nn_rng *rng, uint64_t n); /* [0, n), unbiased */
void		nn_rng_shuffle(nn_rng *rng, uint32_t *idx, size_t n);

/* ---------- model spec ---------- */

typedef enum nn_layer_kind
{
	NN_LAYER_DENSE = 1,
	NN_LAYER_CONV2D,
	NN_LAYER_MAXPOOL2D,
	NN_LAYER_AVGPOOL2D,
	NN_LAYER_FLATTEN,
	NN_LAYER_RESHAPE,
	NN_LAYER_DROPOUT,
	NN_LAYER_ACTIVATION,
	NN_LAYER_RESCALE,
	NN_LAYER_NORMALIZE,
	/* format version 2 */
	NN_LAYER_BATCHNORM,
	NN_LAYER_EMBEDDING,
	NN_LAYER_GLOBAL_AVGPOOL,
	NN_LAYER_GLOBAL_MAXPOOL,
	NN_LAYER_SIMPLE_RNN,
	NN_LAYER_LSTM,
	NN_LAYER_GRU,
	/* format version 3: Keras's image augmentation layers (augment.c) */
	NN_LAYER_RANDOM_FLIP,
	NN_LAYER_RANDOM_TRANSLATION,
	NN_LAYER_RANDOM_ROTATION,
	NN_LAYER_RANDOM_ZOOM,
	NN_LAYER_RANDOM_CROP,
	NN_LAYER_RANDOM_CONTRAST,
	NN_LAYER_RANDOM_BRIGHTNESS,
	NN_LAYER_GAUSSIAN_NOISE
} nn_layer_kind;

#define NN_LAYER_KIND_MAX NN_LAYER_GAUSSIAN_NOISE
/* Kinds up to this one are representable in model format version 1. */
#define NN_LAYER_KIND_MAX_V1 NN_LAYER_NORMALIZE

typedef enum nn_activation
{
	NN_ACT_LINEAR = 0,
	NN_ACT_RELU,
	NN_ACT_LEAKY_RELU,			/* alpha = 0.2 (Keras's leaky_relu) unless given */
	NN_ACT_ELU,					/* alpha = 1.0 */
	NN_ACT_SIGMOID,
	NN_ACT_TANH,
	NN_ACT_SOFTMAX				/* over the last axis */
} nn_activation;

#define NN_ACT_MAX NN_ACT_SOFTMAX

/* random_flip's "mode" (the names of the option row, in this order) */
typedef enum nn_flip_mode
{
	NN_FLIP_HORIZONTAL = 0,		/* mirror the width axis */
	NN_FLIP_VERTICAL,			/* mirror the height axis */
	NN_FLIP_BOTH				/* "horizontal_and_vertical": each on its own */
} nn_flip_mode;

/* "fill_mode" of the warps: what is read outside the image */
typedef enum nn_fill_mode
{
	NN_FILL_REFLECT = 0,		/* d c b a | a b c d | d c b a */
	NN_FILL_WRAP,				/* a b c d | a b c d | a b c d */
	NN_FILL_CONSTANT,			/* k k k k | a b c d | k k k k, k = fill_value */
	NN_FILL_NEAREST				/* a a a a | a b c d | d d d d */
} nn_fill_mode;

/*
 * One layer as the user specified it.  Fields a kind does not use are zero.
 * nn_layer_spec_init() fills Keras's defaults for a kind; the glue then sets
 * what the user gave and nn_model_create() validates everything.
 */
typedef struct nn_layer_spec
{
	nn_layer_kind kind;
	nn_activation activation;	/* dense, conv2d, activation, rnn layers */
	float		alpha;			/* leaky_relu / elu slope */
	int32_t		units;			/* dense, simple_rnn, lstm, gru */
	int32_t		filters;		/* conv2d */
	int32_t		kernel[2];		/* conv2d kernel_size, pool pool_size (h, w) */
	int32_t		strides[2];		/* conv2d default 1; pools default pool size */
	bool		same_padding;	/* conv2d, pools: 'same' rather than 'valid' */
	bool		use_bias;		/* dense, conv2d; default true */
	int32_t		shape_rank;		/* reshape */
	int32_t		shape[NN_MAX_RANK];
	float		rate;			/* dropout */
	float		scale;			/* rescale: y = x * scale + offset */
	float		offset;
	float		l1;				/* dense, conv2d kernel penalties */
	float		l2;
	float		epsilon;		/* normalize: variance floor, default 1e-7;
								 * batchnorm: added to the variance, 1e-3 */
	float		momentum;		/* batchnorm: moving average decay, 0.99 */
	int32_t		input_dim;		/* embedding: vocabulary size */
	int32_t		output_dim;		/* embedding: vector length */
	nn_activation recurrent_activation;	/* lstm, gru: sigmoid */
	bool		return_sequences;	/* rnn layers: (T, units) rather than (units) */
	bool		adapted;		/* normalize: statistics adapted (set by the
								 * core, kept in model bytes) */
	/* augmentation layers (format version 3); ranges are [lower, upper] */
	int32_t		mode;			/* random_flip: nn_flip_mode */
	float		height_factor[2];	/* random_translation (fractions of the
									 * height), random_zoom (zoom - 1) */
	float		width_factor[2];	/* the same for the width; random_zoom:
									 * NaN, NaN when absent (one draw for
									 * both axes) */
	int32_t		fill_mode;		/* translation, rotation, zoom: nn_fill_mode */
	float		fill_value;		/* read outside the image when "constant" */
	float		factor[2];		/* random_rotation (turns), random_contrast
								 * (multiplier - 1), random_brightness
								 * (fractions of the value range) */
	int32_t		height;			/* random_crop: window size */
	int32_t		width;
	float		value_range[2]; /* random_brightness: [low, high], default
								 * [0, 1] */
	float		stddev;			/* gaussian_noise */
	bool		trainable;		/* layers with weights: false freezes them
								 * (and a batchnorm's moving statistics) */
} nn_layer_spec;

typedef struct nn_model_spec
{
	int32_t		n_layers;
	nn_layer_spec *layers;
	int32_t		input_rank;		/* 1..3 */
	int32_t		input_shape[NN_MAX_RANK];
} nn_model_spec;

/* Names <-> enums; return 0 / -1 on an unrecognized name. */
const char *nn_layer_kind_name(nn_layer_kind kind);
int			nn_layer_kind_from_name(const char *name, nn_layer_kind *kind);
const char *nn_activation_name(nn_activation act);
int			nn_activation_from_name(const char *name, nn_activation *act);
/* Does the activation take a slope ("alpha": leaky_relu, elu)? */
bool		nn_activation_has_alpha(nn_activation act);

/* ---------- layer options (the layer table, layer.c) ---------- */

/*
 * Every layer option is one row: its JSON name, value type, field of
 * nn_layer_spec, allowed range, the value it holds in a kind that does not
 * take it, and the model format version that added it.  The rows are in
 * the order of the layer records of the model bytes.  A layer kind lists
 * the rows it takes with its defaults.  Spec parsing and JSON output (the
 * glue), defaults (nn_layer_spec_init), validation and "not an option of
 * this layer" errors (nn_spec_check) and model bytes all read these rows.
 */
typedef enum nn_value_type
{
	NN_VAL_INT,					/* int32_t in [min, max] */
	NN_VAL_FLOAT,				/* finite float in [min, max] */
	NN_VAL_BOOL,
	NN_VAL_ACTIVATION,			/* nn_activation, named in JSON */
	NN_VAL_PAIR,				/* int32_t[2] each in [min, max]; JSON: n or
								 * [h, w] */
	NN_VAL_SHAPE,				/* int32_t rank then int32_t[NN_MAX_RANK]
								 * dimensions in [min, max] */
	NN_VAL_PADDING,				/* bool: JSON "same" (true) or "valid" */
	/* format version 3 */
	NN_VAL_CHOICE,				/* int32_t index into the row's names (min 0,
								 * max the last index); JSON: the name */
	NN_VAL_RANGE				/* float[2] lower <= upper, each in [min,
								 * max]; JSON: f (for [-f, f]) or [lower,
								 * upper]; NaN, NaN is "absent", allowed
								 * only where the kind's default is NaN */
} nn_value_type;

#define NN_OPTION_MIN_OPEN	0x01	/* the range excludes min */
#define NN_OPTION_MAX_OPEN	0x02	/* the range excludes max */
#define NN_OPTION_QUIET		0x04	/* JSON output omits it at its default */
#define NN_OPTION_SLOPE		0x08	/* applies only when the activation has
									 * a slope (nn_activation_has_alpha) */
#define NN_OPTION_INTERNAL	0x10	/* set by the core, not a JSON option */

typedef struct nn_option
{
	const char *name;			/* JSON key */
	nn_value_type type;
	uint16_t	offset;			/* offsetof(nn_layer_spec, field) */
	uint8_t		flags;			/* NN_OPTION_* */
	uint8_t		since;			/* model format version that added it */
	double		min;
	double		max;
	double		unset;			/* its value in a kind that does not take it */
	const char *const *names;	/* NN_VAL_CHOICE: the names, NULL-ended */
} nn_option;

/* An option as a kind takes it. */
typedef struct nn_kind_option
{
	const nn_option *option;
	double		def;			/* default (both values of a pair; a range
								 * [-def, def]; NaN: a range absent unless
								 * given, which the kind's resolve may
								 * derive) */
	bool		required;		/* must be given in JSON */
	const char *name;			/* JSON name when not the row's, or NULL */
} nn_kind_option;

/* The options of a kind in the order they are listed to users; NULL, 0
 * for an unrecognized kind. */
const nn_kind_option *nn_layer_kind_options(nn_layer_kind kind, int32_t *n);
/* The JSON name under which a kind takes an option. */
const char *nn_kind_option_name(const nn_kind_option *ko);

/* A scalar option's value (int, float, bool, activation, padding,
 * choice); a range's lower bound. */
double		nn_option_get(const nn_layer_spec *spec, const nn_option *opt);
/* Set a scalar option, or both values of a pair, or a range to [-v, v]
 * (NaN: absent). */
void		nn_option_set(nn_layer_spec *spec, const nn_option *opt, double v);
/* The int32_t values of a pair, or the dimensions of a shape. */
int32_t    *nn_option_ints(nn_layer_spec *spec, const nn_option *opt);
/* The two floats of a range option: [lower, upper]. */
float	   *nn_option_floats(nn_layer_spec *spec, const nn_option *opt);
/* Is a range option absent (NaN, NaN: not given, no default)? */
bool		nn_option_absent(const nn_layer_spec *spec, const nn_option *opt);
/* A choice's name by index (NULL when out of range), or its index by name
 * (-1 when not one of the names). */
const char *nn_option_choice_name(const nn_option *opt, int32_t v);
int32_t		nn_option_choice_index(const nn_option *opt, const char *name);
/* Is v (a number, a pair element, a dimension, a choice index or a bound
 * of a range) in the option's range? */
bool		nn_option_in_range(const nn_option *opt, double v);
/* "a positive integer", "a number in [0, 1)", ...: what a value must be. */
void		nn_option_describe(char *buf, size_t len, const nn_option *opt);
/* Does the option apply to this layer (NN_OPTION_SLOPE)? */
bool		nn_option_applies(const nn_layer_spec *spec, const nn_option *opt);

/* Keras's defaults for a kind, from the layer table. */
void		nn_layer_spec_init(nn_layer_spec *spec, nn_layer_kind kind);

/* ---------- losses and optimizers ---------- */

typedef enum nn_loss_kind
{
	NN_LOSS_MSE = 1,
	NN_LOSS_MAE,
	NN_LOSS_HUBER,				/* delta = 1 */
	NN_LOSS_BINARY_CE,
	NN_LOSS_CATEGORICAL_CE,
	NN_LOSS_SPARSE_CATEGORICAL_CE
} nn_loss_kind;

#define NN_LOSS_MAX NN_LOSS_SPARSE_CATEGORICAL_CE

const char *nn_loss_name(nn_loss_kind kind);
int			nn_loss_from_name(const char *name, nn_loss_kind *kind);

/* True when targets are one class index per row rather than a vector. */
bool		nn_loss_sparse_target(nn_loss_kind kind);
/* True when the loss is a classification loss (accuracy is reported). */
bool		nn_loss_is_classification(nn_loss_kind kind);

typedef enum nn_optimizer_kind
{
	NN_OPT_SGD = 1,
	NN_OPT_MOMENTUM,
	NN_OPT_NESTEROV,
	NN_OPT_ADAGRAD,
	NN_OPT_RMSPROP,
	NN_OPT_ADAM,
	NN_OPT_ADAMW
} nn_optimizer_kind;

#define NN_OPT_MAX NN_OPT_ADAMW

const char *nn_optimizer_name(nn_optimizer_kind kind);
int			nn_optimizer_from_name(const char *name, nn_optimizer_kind *kind);

typedef enum nn_schedule_kind
{
	NN_SCHED_CONSTANT = 0,
	NN_SCHED_STEP,				/* lr * rate ^ floor(step / steps) */
	NN_SCHED_EXPONENTIAL		/* lr * rate ^ (step / steps) */
} nn_schedule_kind;

/* Optimizer settings; nn_optimizer_spec_init() fills Keras's defaults. */
typedef struct nn_optimizer_spec
{
	nn_optimizer_kind kind;
	float		learning_rate;	/* 0.001 (adam) / 0.01 (sgd...) */
	float		momentum;		/* momentum, nesterov: 0.9; rmsprop: 0 */
	float		beta1;			/* 0.9 */
	float		beta2;			/* 0.999 */
	float		epsilon;		/* 1e-7 as Keras */
	float		rho;			/* rmsprop: 0.9 */
	float		weight_decay;	/* adamw: 0.004 as Keras */
	float		initial_accumulator;	/* adagrad: 0.1 */
	float		clipnorm;		/* > 0: clip the global gradient norm */
	float		clipvalue;		/* > 0: clip each gradient element */
	nn_schedule_kind schedule;
	float		decay_rate;
	int64_t		decay_steps;
} nn_optimizer_spec;

void		nn_optimizer_spec_init(nn_optimizer_spec *spec, nn_optimizer_kind kind,
								   float learning_rate);
/* Validate settings; the error names the option. */
nn_status	nn_optimizer_spec_check(const nn_optimizer_spec *spec, nn_error *err);

/* ---------- the model ---------- */

typedef struct nn_model nn_model;

/*
 * Build a model from a spec: validate every layer (errors name the layer
 * index and option), infer shapes, check that parameters plus optimizer
 * slots fit in max_bytes (0: no limit) before allocating, and initialise
 * weights as Keras does (Glorot-uniform kernels, zero biases) from seed.
 */
nn_status	nn_model_create(nn_model **out, const nn_model_spec *spec,
							uint64_t seed, size_t max_bytes,
							const nn_alloc *alloc, nn_error *err);
void		nn_model_free(nn_model *model);

/*
 * Transfer learning: a new model of base's first keep layers (1 ..
 * layers), with their weights and statistics, frozen ("trainable": false)
 * when freeze, followed by the layers of top (may have none) initialised
 * from seed as nn_model_create does.  The input shape is base's; top's is
 * ignored.  NN_ERR_SPEC when keep is out of range or the layers do not fit.
 */
nn_status	nn_model_transfer(nn_model **out, const nn_model *base,
							  int32_t keep, const nn_model_spec *top,
							  bool freeze, uint64_t seed, size_t max_bytes,
							  const nn_alloc *alloc, nn_error *err);

/*
 * Validate a spec and infer shapes without allocating weights: NN_ERR_SPEC
 * naming the layer, or NN_ERR_LIMIT when sizes overflow.
 */
nn_status	nn_spec_check(const nn_model_spec *spec, nn_error *err);

/* The spec the model was built from (owned by the model). */
const nn_model_spec *nn_model_get_spec(const nn_model *model);
size_t		nn_model_input_size(const nn_model *model);
size_t		nn_model_output_size(const nn_model *model);
int64_t		nn_model_param_count(const nn_model *model);
/* Parameters the optimizer updates: those of the layers not frozen. */
int64_t		nn_model_trainable_count(const nn_model *model);
/* Activation of the last layer that has one (for loss inference). */
nn_activation nn_model_output_activation(const nn_model *model);

typedef struct nn_layer_info
{
	nn_layer_kind kind;
	int32_t		rank;
	int32_t		shape[NN_MAX_RANK];		/* output shape */
	int64_t		params;
	bool		has_weights;	/* a kernel, recurrent kernel or bias */
	bool		trainable;		/* has weights and is not frozen */
} nn_layer_info;

void		nn_model_layer_info(const nn_model *model, int layer, nn_layer_info *info);

/*
 * Size the work buffers for batches of up to max_batch rows (training
 * buffers too when training).  Checks max_bytes (0: no limit) first.
 * Called once per fit or prediction run; calling again with a batch no
 * larger and the same mode is free.
 */
nn_status	nn_model_prepare(nn_model *model, int32_t max_batch, bool training,
							 size_t max_bytes, nn_error *err);

/* Inference: out (n, out_size) from x (n, in_size), n <= prepared batch. */
nn_status	nn_model_predict(nn_model *model, float *out, const float *x,
							 int32_t n, nn_error *err);

/*
 * Training configuration; must be set before nn_model_train_batch.  Keeps
 * optimizer state across calls (and across serialize/deserialize when the
 * bytes include it).  class_weights (n_class_weights floats, copied) weight
 * each row by its target class; NULL for none.
 */
nn_status	nn_model_set_training(nn_model *model, const nn_optimizer_spec *opt,
								  nn_loss_kind loss, const float *class_weights,
								  int32_t n_class_weights, nn_error *err);

/* Discard optimizer state (step count and slots). */
void		nn_model_reset_optimizer(nn_model *model);

/*
 * Magnitude pruning: in the kernel and the recurrent kernel of every
 * dense, conv2d and recurrent layer, zero the fraction sparsity (in [0,
 * 1)) of weights of smallest magnitude (ties: the first ones), and keep
 * them zero through later training: the mask is part of the model and of
 * its bytes, which then store those tensors sparsely.  Drops the training
 * state (fine-tuning starts with fresh optimizer state).  NN_ERR_SPEC for
 * a sparsity out of range.
 */
nn_status	nn_model_prune(nn_model *model, double sparsity, nn_error *err);
/* Does the model carry a pruning mask? */
bool		nn_model_is_pruned(const nn_model *model);
/* The fraction of zero weights over the kernels nn_model_prune prunes
 * (0 when the model has none). */
double		nn_model_sparsity(const nn_model *model);

/*
 * int8 quantization (quantize.c): the kernels of the dense and conv2d
 * layers become symmetric int8 with one scale per output channel (biases
 * and every other layer stay float), and their products run on the int8
 * kernels of qgemm.h.  With calibration rows calib_x (n_calib, in_size),
 * run through the float model in prediction mode, the input of each of
 * those layers is quantized too (uint8, one scale and zero point per
 * layer from the rows' min and max) and the products are int8 x int8;
 * with calib_x NULL and n_calib 0 they are weight-only (float inputs,
 * weights dequantized in blocks).  The float kernels are freed, and so
 * are the training state and a pruning mask (pruned weights stay zero).
 * A quantized model predicts, evaluates and serializes (format version
 * 4); training, differentiation (nn_model_explain), pruning and transfer
 * refuse it with NN_ERR_UNSUPPORTED.  NN_ERR_SPEC when the model is
 * already int8, has no dense or conv2d layer, or n_calib < 1 with rows;
 * NN_ERR_DATA naming the row for a calibration value that is not finite;
 * NN_ERR_LIMIT for a layer of more than 65536 inputs.  On error the model
 * is unchanged.
 */
nn_status	nn_model_quantize(nn_model *model, const float *calib_x,
							  int64_t n_calib, nn_error *err);
/* Are the model's kernels int8? */
bool		nn_model_is_quantized(const nn_model *model);
/*
 * The float model an int8 one computes with its dequantized kernels
 * (scale times the int8 value; the rest copied), for what int8 models
 * cannot do themselves: explaining them.  Activation quantization is not
 * part of it.
 */
nn_status	nn_model_dequantize(nn_model **out, const nn_model *model,
								const nn_alloc *alloc, nn_error *err);
/* Are its dense and conv2d inputs quantized too (it was calibrated)? */
bool		nn_model_quantized_activations(const nn_model *model);

/*
 * Knowledge distillation: from now on each training batch also runs
 * teacher (forward only, not owned, outliving its use) and the loss
 * becomes alpha (the loss) + (1 - alpha) T^2 KL(softmax(teacher logits /
 * T) || softmax(student logits / T)).  Both need the same input and output
 * sizes and a softmax or linear last layer (the student's softmax with a
 * cross-entropy loss); NN_ERR_SPEC otherwise.  NULL stops distilling.
 * Call after nn_model_set_training.
 */
nn_status	nn_model_set_teacher(nn_model *model, nn_model *teacher,
								 float temperature, float alpha,
								 nn_error *err);

/*
 * Free the gradients, optimizer state and class weights of a model that
 * will only predict; nn_model_set_training brings them back (optimizer
 * state starting afresh).
 */
void		nn_model_release_training(nn_model *model);

/*
 * One optimizer step on a mini-batch.  x (n, in_size); y is (n) class
 * indices stored as floats for sparse losses, else (n, out_size).
 * Reports the mean (weighted) loss, summed over rows in *loss_sum, and the
 * number of correctly classified rows in *correct (classification only).
 * Dropout masks come from rng.
 */
nn_status	nn_model_train_batch(nn_model *model, const float *x, const float *y,
								 int32_t n, nn_rng *rng, double *loss_sum,
								 int64_t *correct, nn_error *err);

/*
 * Loss and correct count of a batch without training (evaluation).  The
 * model must have been prepared with a batch >= n.  pred_out, when not NULL,
 * receives the (n, out_size) predictions.
 */
nn_status	nn_model_evaluate_batch(nn_model *model, float *pred_out,
									const float *x, const float *y, int32_t n,
									nn_loss_kind loss, const float *class_weights,
									int32_t n_class_weights,
									double *loss_sum, int64_t *correct,
									nn_error *err);

/* Current learning rate after the schedule; lr multiplier for plateaus. */
float		nn_model_current_lr(const nn_model *model);
void		nn_model_scale_lr(nn_model *model, float factor);
int64_t		nn_model_step_count(const nn_model *model);
/* The loss set for training (nn_model_set_training, or the bytes). */
nn_loss_kind nn_model_loss(const nn_model *model);

/*
 * Data-parallel training (average.c): move model's parameters, optimizer
 * slots and layer statistics the fraction weight (in [0, 1]) of the way
 * to src's, src being a replica of the same model (same spec and
 * optimizer) trained on other rows: merging replicas one at a time with
 * weight = src's rows / (rows merged so far + src's rows) gives their
 * row-weighted mean, and a value both hold stays unchanged bit for bit.
 * NN_ERR_SPEC for a weight outside [0, 1] or models that do not match
 * (int8 models are not trained, so not averaged).
 */
nn_status	nn_model_average(nn_model *model, const nn_model *src,
							 double weight, nn_error *err);
/* Set the optimizer's step count (merged replicas: the steps of all). */
void		nn_model_set_step(nn_model *model, int64_t step);

/* ---------- introspection (tests, gradient checks) ---------- */

/*
 * Flat trainable parameter vector, writable: the sum of every layer's
 * kernel, recurrent kernel and bias lengths (nn_model_layer_params,
 * nn_model_layer_recurrent), which is less than nn_model_param_count when
 * normalize statistics or batchnorm moving averages are counted there.
 */
float	   *nn_model_params(nn_model *model);
/* Gradients of the last nn_model_compute_gradients, same layout. */
const float *nn_model_grads(const nn_model *model);

/*
 * Where layer i's tensors live in the flat vector: offsets and lengths of
 * its kernel (or normalize mean) and bias (or normalize variance); -1/0 when
 * absent.  Dense kernels are (in, units); conv2d kernels (KH, KW, C, F), as
 * Keras.  The int8 kernels of a quantized model are not in the vector
 * (-1/0).
 */
void		nn_model_layer_params(const nn_model *model, int layer,
								  int64_t *kernel_off, int64_t *kernel_len,
								  int64_t *bias_off, int64_t *bias_len);

/*
 * The recurrent kernel of a simple_rnn, lstm or gru layer: (units, G units)
 * with G gates (1, 4: i f c o, 3: z r h), as Keras; -1/0 for other layers.
 * Their kernel is (in, G units); the bias (G units), for gru (2, 3 units):
 * input bias then recurrent bias (Keras's reset_after=True).  batchnorm's
 * kernel is gamma and its bias beta; embedding's kernel its (input_dim,
 * output_dim) table.
 */
void		nn_model_layer_recurrent(const nn_model *model, int layer,
									 int64_t *off, int64_t *len);

/*
 * Non-trainable state of layer i (normalize statistics, batchnorm moving
 * mean then moving variance): pointer to 2 C floats and C; NULL/0 if none.
 */
float	   *nn_model_layer_state(nn_model *model, int layer, int32_t *channels);

/*
 * Forward and backward without an optimizer step: fills the gradients of
 * the mean loss (penalties included) and, when dx_out is not NULL, the
 * input gradient (n, in_size).  Needs nn_model_set_training and a training
 * nn_model_prepare.  Same reporting as nn_model_train_batch.
 */
nn_status	nn_model_compute_gradients(nn_model *model, float *dx_out,
									   const float *x, const float *y,
									   int32_t n, nn_rng *rng,
									   double *loss_sum, int64_t *correct,
									   nn_error *err);
/* The optimizer step on the gradients computed last. */
nn_status	nn_model_apply_gradients(nn_model *model, nn_error *err);

/*
 * The model differentiated as it predicts: out (n, out_size), unless NULL,
 * receives the predictions of x (n, in_size), and dx (n, in_size) the
 * gradient w.r.t. x of sum over rows r and outputs j of dout[r, j]
 * out[r, j] (a one-hot dout row: one output's gradient).  Dropout, noise
 * and augmentation layers are the identity (random_crop the centre crop),
 * batchnorm uses its moving statistics; nothing is drawn and nothing in
 * the model changes, parameter gradients included.  Token ids get a zero
 * gradient.  Needs a training nn_model_prepare for n rows (its buffers
 * include this pass's).
 */
nn_status	nn_model_input_gradient(nn_model *model, float *dx, float *out,
									const float *x, const float *dout,
									int32_t n, nn_error *err);

/* ---------- attributions (explain.c) ---------- */

/*
 * Integrated gradients of output target for the row x (in_size), from
 * baseline (in_size; NULL: zeros) to x: attributions (in_size) receives
 * (x_i - b_i) times the mean gradient of the output along the straight
 * path, by the trapezoid rule over steps points (>= 2), which add up to
 * *f_x - *f_baseline, the output at x and at the baseline, up to the rule's
 * error.  The output is taken after its activation (a softmax
 * probability), target -1 being the largest output of x (0 for a single
 * output); *target_out (may be NULL) receives the one explained.  The
 * model is differentiated as it predicts (see nn_model_input_gradient),
 * the steps rows as one batch.  When the model reads token ids (an
 * embedding layer), the path runs over their embedded vectors, from zero
 * vectors or the baseline ids' embeddings, and a token's attribution sums
 * its vector's.  The path and the model's buffers for steps rows must fit
 * max_bytes (0: no limit; NN_ERR_LIMIT); the model stays prepared for what
 * it was before.  NN_ERR_SPEC for steps < 2 or a target out of range,
 * NN_ERR_DATA for a value that is not finite (or a bad token id),
 * NN_ERR_NUMERIC when the output or an attribution overflows.
 */
nn_status	nn_model_explain(nn_model *model, float *attributions, float *f_x,
							 float *f_baseline, int32_t *target_out,
							 const float *x, const float *baseline,
							 int32_t target, int32_t steps, size_t max_bytes,
							 nn_error *err);

/* ---------- normalize layers: statistics adapted once from data ---------- */

/* True when the model has normalize layers that have not been adapted. */
bool		nn_model_needs_adapt(const nn_model *model);
/* Accumulate statistics from a batch of inputs (call for all training rows). */
nn_status	nn_model_adapt_batch(nn_model *model, const float *x, int32_t n,
								 nn_error *err);
/* Freeze the statistics; with no rows seen, an error. */
nn_status	nn_model_adapt_finish(nn_model *model, nn_error *err);

/* ---------- model bytes (format in doc/model-format.md) ---------- */

/* Exact size of the serialized model, with or without optimizer state. */
size_t		nn_model_serialized_size(const nn_model *model, bool with_optimizer);
/* Write into buf (len >= nn_model_serialized_size()). */
nn_status	nn_model_serialize(const nn_model *model, uint8_t *buf, size_t len,
							   bool with_optimizer, nn_crc32c_fn crc,
							   nn_error *err);
/*
 * Read and validate model bytes: magic, version, checksum, every length and
 * shape, before allocating; rejects anything truncated, corrupted or larger
 * than max_bytes once loaded (0: no limit).
 */
nn_status	nn_model_deserialize(nn_model **out, const uint8_t *buf, size_t len,
								 size_t max_bytes, const nn_alloc *alloc,
								 nn_crc32c_fn crc, nn_error *err);

/* ---------- ONNX (onnx.c) ---------- */

/*
 * The model as an ONNX ModelProto (opset 13) whose input is the flat
 * feature vector nn_model_predict takes, (batch, in_size) floats, and
 * whose output is (batch, out_size).  *out (*len bytes) comes from
 * a->alloc: the caller frees it with a->free.  Dropout, noise and the
 * augmentation layers that are the identity in prediction do not appear.
 * NN_ERR_UNSUPPORTED for a layer kind it cannot write (random_crop).
 */
nn_status	nn_model_export_onnx(const nn_model *m, uint8_t **out, size_t *len,
								 const nn_alloc *a, nn_error *err);

/*
 * A model from an ONNX ModelProto (opsets 13 to 17) made of operators
 * nnpg has layers for, in one chain from one input to one output.  Its
 * input is the flat feature vector, images channels last (H, W, C)
 * whatever the ONNX layout.  The model is a fresh one: trainable, with no
 * optimizer state.  NN_ERR_CORRUPT for bytes that are not a ModelProto,
 * NN_ERR_UNSUPPORTED naming the first node (operator and name) it cannot
 * map or an opset it does not read, NN_ERR_DATA for an input dimension
 * or shape it cannot resolve (naming the input), NN_ERR_LIMIT when the
 * tensors or the model are over max_bytes (0: no limit).
 */
nn_status	nn_model_import_onnx(nn_model **out, const uint8_t *buf, size_t len,
								 size_t max_bytes, const nn_alloc *a,
								 nn_error *err);

/* Do the bytes look like an ONNX model rather than nnpg's own (a cheap
 * test of the first fields, for a format left unsaid)? */
bool		nn_bytes_look_onnx(const uint8_t *buf, size_t len);

/* ---------- input ---------- */

/* dst[i] = src[i] for n bytes (raw pixels as stored in bytea, say). */
void		nn_bytes_to_floats(float *dst, const uint8_t *src, size_t n);

/* ---------- threads ---------- */

/*
 * Threads for the math kernels (OpenMP, with single-threaded OpenBLAS
 * inside); n >= 1.  Starts the threads before it returns.
 */
void		nn_set_threads(int n);
int			nn_get_threads(void);

/* ---------- learning-curve plots (plot.c) ---------- */

#define NN_PLOT_MAX_EPOCHS	100000	/* epochs in one plot */
#define NN_PLOT_MAX_TITLE	1024	/* bytes of the title */
#define NN_PLOT_MAX_ABS		1e300	/* largest magnitude of a value */

/*
 * A model's history as one run of epochs 1..n_epochs over its versions.
 * Each series is (n_epochs) values, NaN where an epoch has none; NULL for
 * a series with none at all.  starts (n_starts) lists the epochs at which a
 * later version's training started (those outside 2..n_epochs are ignored).
 */
typedef struct nn_plot_history
{
	const double *loss;
	const double *accuracy;
	const double *val_loss;
	const double *val_accuracy;
	const int32_t *starts;
	int32_t		n_starts;
	int32_t		n_epochs;
} nn_plot_history;

/*
 * The learning curves as a standalone SVG 1.1 document: a loss panel, and
 * an accuracy panel when some accuracy is present, over the epochs; title
 * is UTF-8 text (the model and version, say).  *svg is NUL-terminated,
 * *len bytes without the NUL (len may be NULL), from alloc->alloc: the
 * caller frees it with alloc->free.  The same input gives the same bytes.
 * NN_ERR_DATA for a bad title or value (NaN is missing, anything else must
 * be finite and within NN_PLOT_MAX_ABS), NN_ERR_LIMIT over the bounds.
 */
nn_status	nn_plot_render(char **svg, size_t *len, const char *title,
						   const nn_plot_history *history,
						   const nn_alloc *alloc, nn_error *err);

#endif							/* NN_H */
