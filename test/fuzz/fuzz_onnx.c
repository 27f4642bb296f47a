/*
 * fuzz_onnx.c: libFuzzer target for nn_model_import_onnx.
 *
 * Each input is imported with a byte budget.  A model that imports is
 * then used: prepared, asked for one prediction on a zero row, and
 * exported; its export must import again, to a model with the same input
 * and output sizes.  nn_bytes_look_onnx runs on every input too.
 *
 * Oracles: ASan/UBSan, libFuzzer's -malloc_limit_mb and -rss_limit_mb
 * (the budget bounds what the protobuf unpacking and the model may take),
 * and the explicit checks below (abort).  The seed corpus is
 * test/fuzz/corpus/fuzz_onnx: small exports of nnpg's and PyTorch's.
 * Build and run: make -C test/unit fuzz-smoke.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

#define BUDGET ((size_t) 16 << 20)

/* Predict one zero row and export; the export must import back. */
static void
use_model(nn_model *m)
{
	nn_error	err;
	size_t		in = nn_model_input_size(m),
				out = nn_model_output_size(m);
	float	   *x = calloc(in, sizeof(float));
	float	   *y = calloc(out, sizeof(float));
	uint8_t    *bytes;
	size_t		len;
	nn_model   *back;

	if (x && y && nn_model_prepare(m, 1, false, BUDGET, &err) == NN_OK)
		(void) nn_model_predict(m, y, x, 1, &err);
	free(x);
	free(y);
	if (nn_model_export_onnx(m, &bytes, &len, &nn_malloc_alloc, &err) != NN_OK)
	{
		if (err.status != NN_ERR_MEMORY)
			abort();			/* every imported kind exports */
		return;
	}
	if (nn_model_import_onnx(&back, bytes, len, 0, &nn_malloc_alloc, &err) != NN_OK)
	{
		fprintf(stderr, "export does not import: %s\n", err.message);
		abort();
	}
	if (nn_model_input_size(back) != in || nn_model_output_size(back) != out)
		abort();
	nn_model_free(back);
	free(bytes);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nn_model   *m = NULL;
	nn_error	err;

	(void) nn_bytes_look_onnx(data, size);
	if (nn_model_import_onnx(&m, data, size, BUDGET, &nn_malloc_alloc, &err) == NN_OK)
	{
		use_model(m);
		nn_model_free(m);
	}
	else if (m != NULL)
		abort();				/* a failed import leaves nothing */
	return 0;
}
