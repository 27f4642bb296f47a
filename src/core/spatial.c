/*
 * spatial.c: the window geometry conv2d and the 2-D pools share.
 *
 * Input (H, W, C), channels last.  Padding 'same' follows TensorFlow:
 * output ceil(in / stride), the odd padding cell at the bottom/right;
 * 'valid' has no padding and needs in >= kernel.
 */
#include "nn_internal.h"

/* Largest kernel, pool or stride size along an axis. */
#define MAX_WINDOW 4096

/* Output length and leading padding of one axis; false when it has none. */
static bool
axis_geometry(int32_t in, int32_t k, int32_t s, bool same, int32_t *out,
			  int32_t *pad)
{
	if (same)
	{
		int64_t		o = ((int64_t) in + s - 1) / s;
		int64_t		total = (o - 1) * s + k - in;

		*out = (int32_t) o;
		*pad = total > 0 ? (int32_t) (total / 2) : 0;
		return true;
	}
	if (in < k)
		return false;
	*out = (in - k) / s + 1;
	*pad = 0;
	return true;
}

/* The window of a conv2d or pooling layer whose shapes are inferred. */
nn_window
nn_window_of(const nn_layer *l)
{
	nn_window	g = {l->in_shape[0], l->in_shape[1], l->in_shape[2],
		l->out_shape[0], l->out_shape[1], l->spec.kernel[0], l->spec.kernel[1],
	l->spec.strides[0], l->spec.strides[1]};

	return g;
}

/*
 * Check the window sizes (named size_name) against MAX_WINDOW and the
 * input, which must be an image; set the output height and width and the
 * leading padding.
 */
nn_status
nn_window_infer(nn_layer *l, const char *size_name, nn_error *err)
{
	const nn_layer_spec *s = &l->spec;
	int32_t		oh,
				ow;

	if (s->kernel[0] > MAX_WINDOW || s->kernel[1] > MAX_WINDOW)
		return NN_LAYER_FAIL(l, err, "\"%s\" must be between 1 and %d",
							 size_name, MAX_WINDOW);
	if (s->strides[0] > MAX_WINDOW || s->strides[1] > MAX_WINDOW)
		return NN_LAYER_FAIL(l, err, "\"strides\" must be between 1 and %d",
							 MAX_WINDOW);
	if (l->in_rank != 3)
		return NN_LAYER_FAIL(l, err, "input must be an image (height, width, channels), not of rank %d",
							 l->in_rank);
	if (!axis_geometry(l->in_shape[0], s->kernel[0], s->strides[0],
					   s->same_padding, &oh, &l->pad_top) ||
		!axis_geometry(l->in_shape[1], s->kernel[1], s->strides[1],
					   s->same_padding, &ow, &l->pad_left))
		return NN_LAYER_FAIL(l, err, "\"%s\" %dx%d is larger than the %dx%d input",
							 size_name, s->kernel[0], s->kernel[1],
							 l->in_shape[0], l->in_shape[1]);
	l->out_shape[0] = oh;
	l->out_shape[1] = ow;
	return NN_OK;
}
