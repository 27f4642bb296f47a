/*
 * plot_demo.c: writes the learning curves of a synthetic 10-epoch history
 * (two versions: epochs 1-6, then 7-10 trained on from version 1) as SVG,
 * so that test/integration/plot_render.sh can be run without PostgreSQL.
 *
 *   plot_demo OUT.svg
 */
#include <stdio.h>
#include <stdlib.h>

#include "nn.h"

#define EPOCHS 10

int
main(int argc, char **argv)
{
	/* a classifier that learns, then starts to overfit a little */
	static const double loss[EPOCHS] = {
		0.912, 0.604, 0.511, 0.462, 0.428, 0.401, 0.372, 0.355, 0.341, 0.330
	};
	static const double val_loss[EPOCHS] = {
		0.655, 0.548, 0.497, 0.471, 0.455, 0.447, 0.431, 0.428, 0.430, 0.436
	};
	static const double accuracy[EPOCHS] = {
		0.682, 0.787, 0.819, 0.836, 0.848, 0.857, 0.867, 0.873, 0.878, 0.882
	};
	static const double val_accuracy[EPOCHS] = {
		0.768, 0.806, 0.824, 0.832, 0.838, 0.841, 0.846, 0.848, 0.847, 0.845
	};
	static const int32_t starts[] = {7};
	nn_plot_history h = {
		.loss = loss, .accuracy = accuracy,
		.val_loss = val_loss, .val_accuracy = val_accuracy,
		.starts = starts, .n_starts = 1, .n_epochs = EPOCHS
	};
	nn_error	err;
	char	   *svg;
	size_t		len;
	FILE	   *f;

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s OUT.svg\n", argv[0]);
		return 2;
	}
	if (nn_plot_render(&svg, &len, "fashion_mlp, version 2", &h,
					   &nn_malloc_alloc, &err) != NN_OK)
	{
		fprintf(stderr, "plot_demo: %s\n", err.message);
		return 1;
	}
	f = fopen(argv[1], "wb");
	if (f == NULL || fwrite(svg, 1, len, f) != len || fclose(f) != 0)
	{
		perror(argv[1]);
		return 1;
	}
	nn_malloc_alloc.free(nn_malloc_alloc.ctx, svg);
	printf("wrote %s (%zu bytes)\n", argv[1], len);
	return 0;
}
